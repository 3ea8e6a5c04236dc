"""Helpers for the child processes the harness starts: cleanup that a second Ctrl-C cannot cut short, CPU
pinning that a child inherits from its very first instruction, and lifetimes tied to the caller's: no child
outlives the harness, and the harness does not outlive its caller."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from .machine_lock import CALLER_ENV, process_started

PR_SET_PDEATHSIG = 1  # linux/prctl.h
CALLER_POLL_S = 0.5
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None


def _set_death_signal(signum: int) -> None:
    if _LIBC is not None and _LIBC.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")


def dies_with_parent(signum: int) -> Callable[[], None] | None:
    """A preexec_fn: the child gets `signum` when the thread that spawned it exits (Linux only; spawn from
    the main thread, whose end is the harness's end). On other systems, None."""
    return (lambda: _set_death_signal(signum)) if _LIBC is not None else None


def exit_with_caller(say: Callable[[str], None]) -> None:
    """Have SIGTERM sent to this process when its parent dies, or when the caller named in GILFREE_CALLER
    (pid:start time, set by the noxfile, which runs the harness through uv) is gone. The SIGTERM handler
    then stops the servers and keeps finished runs, as for any SIGTERM."""
    parent = os.getppid()
    if _LIBC is not None:
        _set_death_signal(signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before the death signal was set
            os.kill(os.getpid(), signal.SIGTERM)
    pid, _, started = os.environ.get(CALLER_ENV, "").partition(":")
    if pid.isdigit() and started:
        threading.Thread(target=_watch, args=(int(pid), float(started), say), daemon=True,
                         name="caller-watch").start()


def _watch(pid: int, started: float, say: Callable[[str], None]) -> None:
    while process_started(pid) == started:  # a pid reused by another process has another start time
        time.sleep(CALLER_POLL_S)
    say(f"the caller (pid {pid}) has exited: stopping the server and the load, keeping finished runs")
    os.kill(os.getpid(), signal.SIGTERM)


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
