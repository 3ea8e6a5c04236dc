"""Helpers for the child processes the harness starts: cleanup that a second Ctrl-C cannot cut short, and
CPU pinning that a child inherits from its very first instruction."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager


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


@contextmanager
def pinned(cpus: tuple[int, ...] | None) -> Iterator[None]:
    """Pin the calling thread while a child is spawned: the child (and its own children, such as Granian's
    workers) inherit the CPU set before they run any code. None leaves the affinity alone."""
    if cpus is None:
        yield
        return
    previous = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, previous)


def split_cpus(loadgen_cpus: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Disjoint CPU sets: the last `loadgen_cpus` of those available for the load generator, the rest for the
    server. Raises ValueError when the machine has too few CPUs for the split."""
    available = tuple(sorted(os.sched_getaffinity(0)))
    if not 1 <= loadgen_cpus < len(available):
        raise ValueError(
            f"--pin {loadgen_cpus} cannot split {len(available)} available CPU(s) into at least one for the server "
            f"and {loadgen_cpus} for the load generator; use --pin 1 to {len(available) - 1}, or leave --pin out"
            if len(available) > 1 else
            f"--pin needs at least 2 CPUs and this machine offers {len(available)}; leave --pin out"
        )
    return available[:-loadgen_cpus], available[-loadgen_cpus:]
