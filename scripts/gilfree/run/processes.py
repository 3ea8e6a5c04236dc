"""Helpers for the child processes the harness starts: cleanup that a second Ctrl-C cannot cut short, CPU
pinning that a child inherits from its very first instruction, and lifetimes tied to the caller's: no child
outlives the harness, and the harness does not outlive its caller."""

from __future__ import annotations

import ctypes
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from gilfree.run.machine_lock import CALLER_ENV, process_started
from gilfree.study.instruments import FIRST_POINTS

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


# Run by a separate small process (see GroupReaper): it waits on a pipe whose only write end the harness holds.
# A byte means a clean stop, nothing to do; end of file means the harness died without stopping the group.
_REAPER = """
import os, signal, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
pgid, grace = int(sys.argv[1]), float(sys.argv[2])
if not sys.stdin.buffer.read(1):
    try:
        os.killpg(pgid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            os.killpg(pgid, 0)
            time.sleep(0.05)
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
"""


class GroupReaper:
    """Stops a server's whole process group if the harness dies without stopping it, SIGKILL included.

    A death signal reaches only the direct child, and Granian sometimes ignores SIGTERM (while starting, and in
    some stops under load), which would leave it and its workers serving. The reaper, a small process outside
    that group, sends the group SIGTERM and then SIGKILL after `grace_s` when its pipe from the harness closes
    without a word: whatever killed the harness, the kernel closes that pipe."""

    def __init__(self, pgid: int, grace_s: float):
        self._process = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _REAPER, str(pgid), str(grace_s)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def release(self) -> None:
        """The group was stopped cleanly: tell the reaper so, and let it go."""
        pipe = self._process.stdin
        assert pipe is not None  # opened with stdin=PIPE
        try:
            pipe.write(b"x")
            pipe.close()
        except (BrokenPipeError, ValueError):
            pass
        self._process.wait()


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
        threading.Thread(target=_watch, args=(int(pid), float(started), say), daemon=True, name="caller-watch").start()


def _watch(pid: int, started: float, say: Callable[[str], None]) -> None:
    while process_started(pid) == started:  # a pid reused by another process has another start time
        time.sleep(CALLER_POLL_S)
    say(f"the caller (pid {pid}) has exited: stopping the server and the load, keeping finished runs")
    os.kill(os.getpid(), signal.SIGTERM)


def signal_group(pgid: int, signum: int) -> None:
    """Signal a whole process group; one already gone is not an error."""
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        pass


def wait_exit(process: subprocess.Popen, timeout_s: float) -> None:
    """process.wait(timeout_s), woken by the kernel as the process exits (a pidfd, Linux 5.3 and later) rather
    than by Popen's polling, which adds up to 50 ms to a stop; raises subprocess.TimeoutExpired as wait does."""
    try:
        pidfd = os.pidfd_open(process.pid)
    except (AttributeError, OSError):  # no pidfd here, or the process is already reaped
        process.wait(timeout_s)
        return
    try:
        if not select.select([pidfd], [], [], timeout_s)[0]:
            raise subprocess.TimeoutExpired(process.args, timeout_s)
    finally:
        os.close(pidfd)
    process.wait()


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


def available_cpus() -> tuple[int, ...]:
    """The CPUs this process may use, in order of their ids."""
    return tuple(sorted(os.sched_getaffinity(0)))


def _split_at(available: tuple[int, ...], server_count: int) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """The first `server_count` CPUs for the server, the rest for the load generator; None when either side
    would get none (the one check both splits share)."""
    if not 1 <= server_count < len(available):
        return None
    return available[:server_count], available[server_count:]


def split_cpus(loadgen_cpus: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Disjoint CPU sets: the last `loadgen_cpus` of those available for the load generator, the rest for the
    server. Raises ValueError when the machine has too few CPUs for the split."""
    available = available_cpus()
    split = _split_at(available, len(available) - loadgen_cpus)
    if split is None:
        raise ValueError(
            f"--pin {loadgen_cpus} cannot split {len(available)} available CPU(s) into at least one for the server "
            f"and {loadgen_cpus} for the load generator; use --pin 1 to {len(available) - 1}, or leave --pin out"
            if len(available) > 1
            else f"--pin needs at least 2 CPUs and this machine offers {len(available)}; leave --pin out"
        )
    return split


def server_cpus(k: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Disjoint CPU sets for core scaling: the first `k` of those available (by id) for the server, all the
    others for the load generator. Raises ValueError when k is below 1 or leaves no CPU for the load generator."""
    available = available_cpus()
    split = _split_at(available, k)
    if split is None:
        count = len(available)
        fix = (
            f"choose k from 1 to {count - 1}"
            if count > 2
            else "choose k=1"
            if count == 2
            else "core scaling needs at least 2 CPUs, one for the server and one for the load generator"
        )
        raise ValueError(
            f"k={k} CPUs for the server cannot be given on {count} available CPU(s) with at least one "
            f"left for the load generator; {fix}"
        )
    return split


class TooFewCpus(Exception):
    """A refusal before anything starts: the machine cannot give the server k=1 and k=2 with the load
    generator on other CPUs."""

    def __init__(self, available: int, loadgen_needed: int):
        self.available = available
        self.loadgen_needed = loadgen_needed
        super().__init__(
            f"this machine has {available} CPU{'s' * (available != 1)}; the load generator needs {loadgen_needed}; "
            f"core scaling needs at least {len(FIRST_POINTS)} points (k=1 and k=2), "
            f"so at least {loadgen_needed + FIRST_POINTS[-1]} CPUs"
        )


def points_for(ks_requested: Sequence[int] | None, available_cpus: int, loadgen_cpus_needed: int) -> tuple[int, ...]:
    """The k (CPUs for the server) that fit beside the load generator, in order. None asks for the default:
    1, 2, 4 ... doubling, and the largest k that fits, so that the curve reaches the whole machine.

    Raises TooFewCpus when fewer than two points fit, and ValueError for a request without k=1 (the efficiency
    of every point is measured against it) or with a k below 1."""
    largest = available_cpus - loadgen_cpus_needed
    if ks_requested is None:
        doubling = {min(2**n, largest) for n in range(largest.bit_length() + 1)}  # 1, 2, 4 ... and the largest
        ks_requested = sorted(doubling) if largest >= 1 else []
    if bad := [k for k in ks_requested if not isinstance(k, int) or k < 1]:
        raise ValueError(f"k={bad[0]!r} is not a number of CPUs; give whole numbers of at least 1, such as 1, 2, 4")
    fitting = tuple(sorted({k for k in ks_requested if k <= largest}))
    if len(fitting) < len(FIRST_POINTS):
        raise TooFewCpus(available_cpus, loadgen_cpus_needed)
    if 1 not in fitting:
        raise ValueError(
            f"the points {list(ks_requested)} lack k=1, against which every point's efficiency is measured; add 1"
        )
    return fitting
