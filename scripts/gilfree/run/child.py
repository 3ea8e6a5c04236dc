"""A server the harness runs as its child, Granian for a cell (server.py) or nginx for the ceiling (nginx.py), and
its one lifecycle: a port checked free, its own process group, readiness polled until it answers or dies, its
answers fetched for checking, a stop that leaves nothing behind (a second Ctrl-C included), and the records by
which the next run stops a server that a harness killed with SIGKILL left running."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from email.message import Message
from pathlib import Path
from typing import Self

import psutil

from gilfree.run import machine_lock
from gilfree.run.processes import GroupReaper, dies_with_parent, finish, pinned, signal_group, wait_exit

DEFAULT_BIND = "127.0.0.1"  # Granian's own default, made explicit; any other address must be asked for
READY_POLL_S = 0.01  # the most a poll adds to a server's start
KILLED_GONE_TIMEOUT_S = 5.0
# Loopback checks must not go through an http_proxy from the environment.
LOCAL = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ServerError(Exception):
    """The server could not be started, did not answer as expected, or died."""


def free_port(bind: str = DEFAULT_BIND) -> int:
    with socket.socket(socket.AF_INET6 if ":" in bind else socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((bind, 0))
        return probe.getsockname()[1]


def url(port: int, path: str, bind: str = DEFAULT_BIND) -> str:
    host = f"[{bind}]" if ":" in bind else bind  # an IPv6 address is bracketed in a URL
    return f"http://{host}:{port}{path}"


def port_holder(port: int) -> str:
    """Who listens on the port, as far as psutil can tell. A server's worker holding the socket is
    traced up to the parent running the same command (Granian's main process), the one to stop."""
    try:
        pids = sorted(
            c.pid
            for c in psutil.net_connections(kind="tcp")
            if c.laddr and c.laddr.port == port and c.status == psutil.CONN_LISTEN and c.pid
        )
        holder = top = psutil.Process(pids[0])
        while (parent := top.parent()) is not None and parent.cmdline() == holder.cmdline():
            top = parent
        through = f", through its child pid {holder.pid}" if top.pid != holder.pid else ""
        return f"pid {top.pid} ({' '.join(top.cmdline())[:120]}){through}"
    except (psutil.Error, IndexError):
        return "a process psutil cannot name"


def _unprivileged_port_start() -> str:
    try:
        return Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text().strip()
    except OSError:
        return "1024"


def ensure_port_free(port: int, bind: str = DEFAULT_BIND) -> None:
    """Bind the port as the server will, and say the real cause if that fails: in use, or not allowed."""
    with socket.socket(socket.AF_INET6 if ":" in bind else socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As Granian and nginx bind: with SO_REUSEADDR, so only a listener (not TIME_WAIT leftovers) is a conflict.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((bind, port))
        except OSError as error:
            if error.errno == errno.EADDRNOTAVAIL:
                raise ServerError(
                    f"address {bind} is not one of this machine's; give --bind an address of "
                    f"one of its interfaces (`ip -brief address` lists them)"
                ) from None
            if error.errno == errno.EADDRINUSE:
                raise ServerError(
                    f"port {port} on {bind} is already in use by {port_holder(port)}; "
                    f"stop that process or choose another port with --port"
                ) from None
            if error.errno in (errno.EACCES, errno.EPERM):
                start = _unprivileged_port_start()
                raise ServerError(
                    f"port {port} on {bind} cannot be bound: permission denied (on this machine "
                    f"ports below {start} need root or CAP_NET_BIND_SERVICE); "
                    f"choose a port of {start} or above with --port"
                ) from None
            raise ServerError(
                f"port {port} on {bind} cannot be bound: {error.strerror}; choose another port with --port"
            ) from None


class ManagedServer:
    """A server process group the harness started; use as a context manager so it is always stopped.

    A subclass names the server and sets how it is handled: how long it may take to answer, how long a stop may
    take, the signal it gets when the harness's main thread ends, the error its failures raise, and whether it
    is recorded for the next run to stop if the harness is killed without stopping it."""

    name: str
    ready_timeout_s: float
    stop_timeout_s: float  # then SIGKILL
    starting_stop_timeout_s: float | None = None  # for one stopped before it answered; None: stop_timeout_s
    death_signal: signal.Signals
    recorded = False
    error: type[ServerError] = ServerError

    def __init__(
        self,
        command: list[str],
        port: int,
        log_path: Path,
        ready_path: str,
        *,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        cpus: tuple[int, ...] | None = None,
        bind: str = DEFAULT_BIND,
    ):
        self.command = command
        self.port = port
        self.log_path = log_path
        self.ready_path = ready_path
        self.cwd = cwd
        self.env = env
        self.cpus = cpus
        self.bind = bind
        self.process: subprocess.Popen | None = None
        self.stopped_by: str | None = None
        self.spawned_at: float | None = None  # perf_counter() once the process was spawned: its own start begins
        self.stopping_s: float | None = None  # SIGTERM until it exited or was killed: its own stop
        self._members: set[psutil.Process] = set()  # the group's processes once it answered
        self._reaper: GroupReaper | None = None
        self._record: Path | None = None

    def __enter__(self) -> Self:
        ensure_port_free(self.port, self.bind)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log, pinned(self.cpus):
            try:
                self.process = subprocess.Popen(
                    self.command,
                    cwd=self.cwd,
                    env=self.env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=dies_with_parent(self.death_signal),
                )
            except OSError as error:
                raise self.error(f"cannot start {self.command[0]}: {error.strerror}") from None
        self.spawned_at = time.perf_counter()
        try:
            self._reaper = GroupReaper(self.process.pid, self.stop_timeout_s)
            if self.recorded:
                self._record = record_server(self.name, self.process.pid, self.command, self.port)
        except BaseException:  # a Ctrl-C here would skip __exit__ and leave the server running
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def _running(self) -> subprocess.Popen:
        """The server's process, from __enter__ until stop()."""
        if self.process is None:
            raise self.error(f"{self.name} is not running (not started yet, or stopped)")
        return self.process

    @property
    def pid(self) -> int:
        return self._running().pid

    @property
    def log_paths(self) -> tuple[Path, ...]:
        return (self.log_path,)

    def log_tail(self, lines: int | None = 15) -> str:
        """The last lines of each of the server's logs (all of them with None)."""
        tails = []
        for path in self.log_paths:
            try:
                tails += path.read_text(errors="replace").splitlines()[-lines if lines else 0 :]
            except OSError:
                continue
        return "\n".join(tails)

    def fail(self, reason: str) -> ServerError:
        """The error for `reason`, with the server's last log lines, to raise."""
        tail = self.log_tail()
        logs = ", ".join(map(str, self.log_paths))
        return self.error(f"{reason}\n--- last server log lines ({logs}) ---\n{tail}" if tail else reason)

    def check_alive(self) -> None:
        process = self._running()
        if process.poll() is not None:
            raise self.fail(f"{self.name} exited with status {process.returncode}")

    def wait_ready(self, timeout_s: float | None = None) -> float:
        """Poll until the ready path answers at all, or the server dies; return the seconds it took."""
        timeout_s = self.ready_timeout_s if timeout_s is None else timeout_s
        started = time.perf_counter()
        while True:
            self.check_alive()
            try:
                with LOCAL.open(url(self.port, self.ready_path, self.bind), timeout=1):
                    break
            except urllib.error.HTTPError:
                break  # it answers; whether rightly is the caller's verify()'s question
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.perf_counter() - started > timeout_s:
                    raise self.fail(
                        f"{self.name} did not answer on {self.bind} port {self.port} within {timeout_s:.0f}s"
                    ) from None
                time.sleep(READY_POLL_S)
        self._members = self._tree()
        return time.perf_counter() - started

    def get(self, path: str, when: str) -> tuple[int, Message, bytes]:
        """One GET from this machine: the status, headers and body of the answer, an error status included."""
        try:
            with LOCAL.open(url(self.port, path, self.bind), timeout=5) as response:
                return response.status, response.headers, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.headers, error.read()
        except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
            raise self.fail(f"GET {path} failed {when}: {error}") from None

    def _tree(self) -> set[psutil.Process]:
        try:
            root = psutil.Process(self.pid)
            return {root, *root.children(recursive=True)}
        except psutil.NoSuchProcess:
            return set()

    def stop(self) -> None:
        """SIGTERM to the group, SIGKILL after a timeout, then make sure no member is left."""
        if self.process is not None:
            finish(self._stop_group)
            self.process = None
            if self._reaper is not None:
                self._reaper.release()
            if self._record is not None:
                self._record.unlink(missing_ok=True)

    def _stop_group(self) -> None:
        process = self._running()
        members = self._members | self._tree()
        signal_group(process.pid, signal.SIGTERM)
        terminated = time.perf_counter()
        timeout = self.stop_timeout_s
        if not self._members and self.starting_stop_timeout_s is not None:  # stopped before it answered
            timeout = self.starting_stop_timeout_s
        try:
            wait_exit(process, timeout)
            self.stopped_by = "SIGTERM"
        except subprocess.TimeoutExpired:
            self.stopped_by = f"SIGKILL, {timeout:g}s after SIGTERM"
        self.stopping_s = time.perf_counter() - terminated
        signal_group(process.pid, signal.SIGKILL)  # the group's stragglers, or all of it after the timeout
        process.wait()
        _wait_gone(members)


def _records_dir() -> Path:
    return machine_lock.state_dir() / "servers"


def record_server(name: str, pid: int, command: list[str], port: int) -> Path | None:
    """Note a started server (pid, start time, command, and the harness that owns it) where the next run
    looks for servers left behind by a harness killed with SIGKILL. Best effort: None if it cannot be noted."""
    path = _records_dir() / f"{pid}.json"
    try:
        me = psutil.Process()  # a server that has already exited has no start time: nothing to note
        record = {
            "name": name,
            "pid": pid,
            "started": psutil.Process(pid).create_time(),
            "command": command,
            "port": port,
            "harness_pid": me.pid,
            "harness_started": me.create_time(),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(record))
        os.replace(temporary, path)
    except (OSError, psutil.Error):
        return None
    return path


def _owner_alive(record: dict) -> bool:
    try:
        return psutil.Process(record["harness_pid"]).create_time() == record["harness_started"]
    except psutil.Error:
        return False


def _left_behind(record: dict) -> list[psutil.Process]:
    """The recorded server's processes still running: its process group (a pid still used as a group id is
    never handed out again), started no earlier than it, running its command. A process that merely reuses
    its pid fails these checks and is never touched."""
    found = []
    for process in psutil.process_iter(["cmdline", "create_time"]):
        try:
            if (
                os.getpgid(process.pid) == record["pid"]
                and process.info["create_time"] >= record["started"]
                and process.info["cmdline"][-len(record["command"]) :] == record["command"]
            ):
                found.append(process)
        except (OSError, TypeError, psutil.Error):
            continue
    return found


def stop_left_behind(say) -> None:
    """Stop every server that a harness killed without cleanup (SIGKILL, a crash) left running, and say so.
    Call it while holding the machine lock: then no other harness is measuring with them."""
    for path in sorted(_records_dir().glob("*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            path.unlink(missing_ok=True)
            continue
        if _owner_alive(record):
            continue
        processes = _left_behind(record)
        for process in processes:
            try:
                process.kill()
            except psutil.NoSuchProcess:
                pass
        if processes:
            _wait_gone(set(processes))
            name = record.get("name", "Granian")  # records written before they named the server were Granian's
            say(
                f"stopped {name} pid {record['pid']} on port {record['port']} ({len(processes)} process(es)), "
                f"left running by an earlier harness (pid {record['harness_pid']}) that did not stop it"
            )
        path.unlink(missing_ok=True)


def _wait_gone(members: set[psutil.Process]) -> None:
    """Wait until every member has exited. A zombie counts as gone: it runs nothing, and its reaping is up to
    init once its parent has died, which can take a second or more."""
    deadline = time.monotonic() + KILLED_GONE_TIMEOUT_S
    while time.monotonic() < deadline:
        running = [member for member in members if still_running(member)]
        if not running:
            return
        for member in running:
            member.kill()
        time.sleep(0.01)
    raise ServerError(f"server processes {[member.pid for member in running]} survived SIGKILL")


def still_running(process: psutil.Process) -> bool:
    """Alive, or a zombie whose other threads are still exiting: a thread group's leader shows as a zombie before
    its last thread has gone, and until then the process holds its files, the server's listening socket among
    them. A zombie alone runs nothing, whoever has yet to reap it."""
    try:
        if not process.is_running():
            return False
        if process.status() != psutil.STATUS_ZOMBIE:
            return True
        return len(os.listdir(f"/proc/{process.pid}/task")) > 1
    except (psutil.NoSuchProcess, FileNotFoundError):
        return False
