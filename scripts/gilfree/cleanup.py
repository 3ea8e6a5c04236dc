"""Cleanup that a second Ctrl-C or SIGTERM cannot cut short."""

from __future__ import annotations

from typing import Callable


def finish(cleanup: Callable[[], None]) -> None:
    """Run an idempotent cleanup to its end, retrying it if interrupted; then re-raise the interrupt."""
    interrupted: BaseException | None = None
    while True:
        try:
            cleanup()
            break
        except (KeyboardInterrupt, SystemExit) as signal_exit:
            interrupted = signal_exit
    if interrupted is not None:
        raise interrupted
