"""How every command line of the harness ends: its own refusals and failures as one line (exit 2), anything
else as one line too, with its traceback only under --debug. Each command's `__main__` runs through guarded()."""

from __future__ import annotations

import sys
from collections.abc import Callable

from gilfree.run import machine_lock
from gilfree.run.child import ServerError
from gilfree.run.interpreters import InterpreterError
from gilfree.run.loadgen import LoadGenError
from gilfree.study import schema

# What the harness refuses or fails with on purpose: each already one line that says what to do.
HARNESS_ERRORS = (InterpreterError, LoadGenError, ServerError, machine_lock.MachineBusy, schema.StudyError)


def guarded(command: Callable[[list[str]], int], argv: list[str] | None = None) -> int:
    """Run a command line's main so that nothing reaches the user as a traceback: the harness's own errors as
    their one line (exit 2), a programming error as one line too, its traceback only with --debug."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [arg for arg in argv if arg != "--debug"]
    try:
        return command(argv)
    except HARNESS_ERRORS as error:
        if debug:
            raise
        print(f"gilfree: error: {error}", file=sys.stderr)
        return 2
    except Exception as error:
        if debug:
            raise
        print(
            f"gilfree: internal error: {type(error).__name__}: {error}; this is gilfree's bug: run again with "
            f"--debug for the traceback and report it",
            file=sys.stderr,
        )
        return 70
