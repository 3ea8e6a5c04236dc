"""One benchmark per machine at a time. Two measurements on one machine contaminate each other whatever their
results directories, so a session holds a machine-wide lock from before its environment is built until its
last server is stopped; a second session waits for it (or refuses, with --no-wait). A sidecar file says who
holds it. Standard library and filelock only: the noxfile, which runs in nox's own environment, uses it too.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from filelock import FileLock, Timeout

# Where the lock, its sidecar and the records of running servers live. One fixed place for every user and
# every checkout (not TMPDIR, which is per user on some systems); tests point it elsewhere.
DIR_ENV = "GILFREE_LOCK_DIR"
DEFAULT_DIR = Path("/tmp/gilfree")
# Set by the caller that starts the harness (the noxfile): "pid:start time". The harness exits when that
# process is gone, and runs under the lock when that process holds it.
CALLER_ENV = "GILFREE_CALLER"


class MachineBusy(Exception):
    """Another session holds the machine and the caller chose not to wait."""


@dataclass(frozen=True)
class Holder:
    """Who holds the machine: enough for the one who waits to find it, and to tell it from a reused pid."""

    pid: int
    started: float  # the holder's process start time (seconds since the epoch), as /proc tells it
    session: str
    since: str  # when it took the lock, UTC

    def __str__(self) -> str:
        return f"pid {self.pid} (session {self.session}, since {self.since})"

    def alive(self) -> bool:
        return process_started(self.pid) == self.started


def state_dir() -> Path:
    """The machine-wide folder, made writable for every user the first time (sticky, as /tmp is)."""
    path = Path(os.environ.get(DIR_ENV) or DEFAULT_DIR)
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True)
        if path == DEFAULT_DIR:
            try:
                path.chmod(0o1777)
            except OSError:
                pass
    return path


def process_started(pid: int) -> float | None:
    """A process's start time in seconds since the epoch, or None if there is no such process or it has exited
    (a zombie waiting for its parent to reap it). Read from /proc (psutil's way, without psutil, which nox's
    environment lacks): a pid reused later starts later."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        boot = next(
            float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime")
        )
    except (OSError, StopIteration, IndexError):
        return None
    if fields[0] in ("Z", "X"):
        return None
    return round(boot + int(fields[19]) / os.sysconf("SC_CLK_TCK"), 2)


def _sidecar(directory: Path) -> Path:
    return directory / "machine.lock.holder.json"


def holder(directory: Path | None = None) -> Holder | None:
    """Who the sidecar names, if it is still running: a holder killed outright leaves its sidecar behind, but
    not the lock, which dies with it (the lock itself is the truth; the sidecar only names it)."""
    try:
        named = Holder(**json.loads(_sidecar(directory or state_dir()).read_text()))
    except (OSError, ValueError, TypeError):
        return None
    return named if named.alive() else None


def _write_sidecar(directory: Path, me: Holder) -> None:
    temporary = _sidecar(directory).with_name(f".holder.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(asdict(me)))
    os.chmod(temporary, 0o644)
    os.replace(temporary, _sidecar(directory))


def caller_env() -> dict[str, str]:
    """What a caller gives the harness it starts so that the harness never outlives it: its pid and start time."""
    return {CALLER_ENV: f"{os.getpid()}:{process_started(os.getpid())}"}


def _held_by_caller(directory: Path) -> Holder | None:
    """The holder, when it is the caller named in CALLER_ENV and one of this process's ancestors."""
    current = holder(directory)
    if current is None or os.environ.get(CALLER_ENV) != f"{current.pid}:{current.started}" or not current.alive():
        return None
    pid = os.getpid()
    while pid > 1:
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            return None
        if pid == current.pid:
            return current
    return None


@contextmanager
def held(session: str, wait: bool = True, say: Callable[[str], None] = print) -> Iterator[Holder]:
    """Hold the machine for the duration of the block. Waits (saying once who holds it) or, with
    wait=False, raises MachineBusy naming the holder. Inside a caller that holds it already, holds nothing."""
    directory = state_dir()
    caller = _held_by_caller(directory)
    if caller is not None:
        yield caller
        return
    lock = FileLock(str(directory / "machine.lock"), mode=0o666)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        current = holder(directory) or "another process (it has not said who yet)"
        if not wait:
            raise MachineBusy(
                f"the machine is busy: {current} holds {directory / 'machine.lock'}; wait for it "
                f"to finish (leave out --no-wait to queue behind it)"
            ) from None
        say(f"waiting for the machine: {current} is measuring on it")
        lock.acquire()
    me = Holder(
        pid=os.getpid(),
        started=process_started(os.getpid()) or time.time(),
        session=session,
        since=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    try:
        _write_sidecar(directory, me)
        yield me
    finally:
        if holder(directory) == me:
            _sidecar(directory).unlink(missing_ok=True)
        lock.release()
