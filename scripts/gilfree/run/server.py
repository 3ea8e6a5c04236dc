"""Granian's lifecycle for one cell: a free port, the post's flags, readiness, verified answers, clean stop."""

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
from pathlib import Path

import psutil
from packaging.version import Version

from gilfree.run import granian_counters, machine_lock
from gilfree.run.processes import GroupReaper, dies_with_parent, finish, pinned, signal_group
from gilfree.study.studies import App, Cell, Endpoint

DEFAULT_BIND = "127.0.0.1"  # Granian's own default, made explicit; any other address must be asked for
DEFAULT_PORT = 8000
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 1.0  # Granian stops in ~0.03 s when idle; some 2-worker stops hang until killed
STARTING_STOP_TIMEOUT_S = 0.5
KILLED_GONE_TIMEOUT_S = 5.0
# Granian logs this when a worker (a process on GIL builds, a thread on free-threaded ones) dies.
WORKER_EXIT = "Unexpected exit from worker"
# Loopback checks must not go through an http_proxy from the environment.
LOCAL = urllib.request.build_opener(urllib.request.ProxyHandler({}))
# Settings that would change the server behind the flags' back: Granian reads GRANIAN_* and
# CPython reads PYTHON_GIL (which can re-enable the GIL on a free-threaded build).
SCRUBBED_ENV = ("PYTHON_GIL", "PYTHONPATH", "PYTHONWARNINGS")  # warnings: the GIL re-enable warning must show


class ServerError(Exception):
    """The server could not be started, did not answer as expected, or died."""


def granian_command(granian: str, cell: Cell, app: App, port: int, bind: str = DEFAULT_BIND,
                    metrics_port: int | None = None) -> list[str]:
    """The one Granian command line: the cell's settings in the post's order (interface, loop, workers, blocking
    threads), then any others it sets, with Granian's host (default 127.0.0.1) and port made explicit; its
    counters' exporter on `metrics_port` where asked (granian_counters)."""
    command = [granian, "--interface", cell.interface]
    if cell.loop is not None:
        command += ["--loop", cell.loop]
    command += ["--workers", str(cell.workers)]
    for flag, value in (("--blocking-threads", cell.blocking_threads), ("--runtime-mode", cell.runtime_mode),
                        ("--runtime-threads", cell.runtime_threads)):
        if value is not None:
            command += [flag, str(value)]
    metrics = granian_counters.flags(metrics_port) if metrics_port else []
    return command + [*cell.flags, *metrics, "--host", bind, "--port", str(port), app.target]


def resolved_loop(cell: Cell, auto_loop: str | None) -> str | None:
    """The event loop Granian ran: the cell's, or for `auto` (Granian's default) the one Granian's own loop
    registry picked in the environment under test (the probe's `granian_auto_loop`); None for WSGI."""
    if cell.interface == "wsgi":
        return None
    return auto_loop if cell.loop in (None, "auto") else cell.loop


def resolved_runtime_mode(cell: Cell, granian_version: str) -> str:
    """The runtime mode Granian ran, by its own rule for `auto` (read in its sources): 2.5 defaults to st; 2.6
    picks mt for WSGI or HTTP/2; 2.7 and later pick st only for RSGI on one runtime thread without HTTP/2."""
    if cell.runtime_mode is not None:
        return cell.runtime_mode
    version, http2 = Version(granian_version), flag_value(cell.flags, "--http") == "2"
    if version < Version("2.6"):
        return "st"
    if version < Version("2.7"):
        return "mt" if cell.interface == "wsgi" or http2 else "st"
    single = cell.interface == "rsgi" and (cell.runtime_threads or 1) == 1 and not http2
    return "st" if single else "mt"


def flag_value(flags: tuple[str, ...], name: str) -> str | None:
    """The value a command line gives an option, as `--name value` or `--name=value`; the last one wins."""
    found = None
    for index, flag in enumerate(flags):
        if flag == name and index + 1 < len(flags):
            found = flags[index + 1]
        elif flag.startswith(name + "="):
            found = flag.split("=", 1)[1]
    return found


def free_port(bind: str = DEFAULT_BIND) -> int:
    with socket.socket(socket.AF_INET6 if ":" in bind else socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((bind, 0))
        return probe.getsockname()[1]


def url(port: int, path: str, bind: str = DEFAULT_BIND) -> str:
    host = f"[{bind}]" if ":" in bind else bind  # an IPv6 address is bracketed in a URL
    return f"http://{host}:{port}{path}"


def answer_problem(endpoint: Endpoint, status: int, body: bytes) -> str | None:
    """What is wrong with an answer, against what the study expects of the endpoint; None if nothing."""
    if status != endpoint.status:
        return f"status {status}, expected {endpoint.status}"
    if endpoint.json_body is not None and _json_or_none(body) != endpoint.json_body:
        return f"body {body[:200]!r}, expected the JSON {endpoint.json_body}"
    if endpoint.text is not None and body.decode(errors="replace") != endpoint.text:
        return f"body {body[:200]!r}, expected the text {endpoint.text[:200]!r}"
    return None


def port_holder(port: int) -> str:
    """Who listens on the port, as far as psutil can tell. A server's worker holding the socket is
    traced up to the parent running the same command (Granian's main process), the one to stop."""
    try:
        pids = sorted(c.pid for c in psutil.net_connections(kind="tcp")
                      if c.laddr and c.laddr.port == port and c.status == psutil.CONN_LISTEN and c.pid)
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
    """Bind the port as Granian will, and say the real cause if that fails: in use, or not allowed."""
    with socket.socket(socket.AF_INET6 if ":" in bind else socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As Granian binds: with SO_REUSEADDR, so only a listener (not TIME_WAIT leftovers) is a conflict.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((bind, port))
        except OSError as error:
            if error.errno == errno.EADDRNOTAVAIL:
                raise ServerError(f"address {bind} is not one of this machine's; give --bind an address of "
                                  f"one of its interfaces (`ip -brief address` lists them)") from None
            if error.errno == errno.EADDRINUSE:
                raise ServerError(f"port {port} on {bind} is already in use by {port_holder(port)}; "
                                  f"stop that process or choose another port with --port") from None
            if error.errno in (errno.EACCES, errno.EPERM):
                start = _unprivileged_port_start()
                raise ServerError(f"port {port} on {bind} cannot be bound: permission denied (on this machine "
                                  f"ports below {start} need root or CAP_NET_BIND_SERVICE); "
                                  f"choose a port of {start} or above with --port") from None
            raise ServerError(f"port {port} on {bind} cannot be bound: {error.strerror}; "
                              f"choose another port with --port") from None


def server_env(gil_forced_off: bool = False) -> dict[str, str]:
    """The environment a server (or the probe) starts with: nothing of the caller's that changes what runs, but
    PYTHON_GIL=0 where the study forces the GIL off for the variant."""
    kept = {name: value for name, value in os.environ.items()
            if name not in SCRUBBED_ENV and not name.startswith("GRANIAN_")}
    return kept | ({"PYTHON_GIL": "0"} if gil_forced_off else {})


class GranianServer:
    """A Granian process group serving one cell; use as a context manager so it is always stopped."""

    def __init__(self, command: list[str], app: App, port: int, log_path: Path,
                 cpus: tuple[int, ...] | None = None, bind: str = DEFAULT_BIND, gil_forced_off: bool = False):
        self.command = command
        self.gil_forced_off = gil_forced_off
        self.app = app
        self.cpus = cpus
        self.port = port
        self.bind = bind
        self.log_path = log_path
        self.process: subprocess.Popen | None = None
        self.stopped_by: str | None = None
        self._members: set[psutil.Process] = set()
        self._record: Path | None = None

    def __enter__(self) -> GranianServer:
        ensure_port_free(self.port, self.bind)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log, pinned(self.cpus):
            try:
                self.process = subprocess.Popen(
                    self.command, cwd=self.app.directory, env=server_env(self.gil_forced_off), stdin=subprocess.DEVNULL,
                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                    preexec_fn=dies_with_parent(signal.SIGTERM),  # Granian stops its workers on SIGTERM
                )
            except OSError as error:
                raise ServerError(f"cannot start {self.command[0]}: {error.strerror}") from None
        self._reaper = GroupReaper(self.process.pid, STOP_TIMEOUT_S)
        self._record = record_server(self.process.pid, self.command, self.port)
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, lines: int | None = 15) -> str:
        """The last lines of the server's log (all of it with None)."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines if lines else 0:])
        except OSError:
            return ""

    def fail(self, reason: str) -> ServerError:
        tail = self.log_tail()
        return ServerError(f"{reason}\n--- last server log lines ({self.log_path}) ---\n{tail}" if tail else reason)

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise self.fail(f"Granian exited with status {self.process.returncode}")

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> float:
        """Poll until the app's first endpoint answers at all; return the seconds it took."""
        started = time.perf_counter()
        while True:
            self.check_alive()
            try:
                with LOCAL.open(url(self.port, self.app.first_endpoint.path, self.bind), timeout=1):
                    break
            except urllib.error.HTTPError:
                break  # it answers; whether rightly is verify()'s question
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.perf_counter() - started > timeout_s:
                    raise self.fail(f"Granian did not answer on {self.bind} port {self.port} within {timeout_s:.0f}s")
                time.sleep(0.05)
        self._members = self._tree()
        return time.perf_counter() - started

    def verify(self, when: str = "before any load") -> None:
        """Every endpoint of the app answers as the study expects (the TechEmpower habit): before any load, and
        after it, since a load generator may not look at what it got."""
        for endpoint in self.app.endpoints.values():
            try:
                with LOCAL.open(url(self.port, endpoint.path, self.bind), timeout=5) as response:
                    status, body = response.status, response.read()
            except urllib.error.HTTPError as error:
                status, body = error.code, error.read()
            except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
                raise self.fail(f"GET {endpoint.path} failed {when}: {error}")
            if problem := answer_problem(endpoint, status, body):
                raise self.fail(f"GET {endpoint.path} answered {problem} ({when})")

    def workers_lost(self) -> int:
        """How many workers died: processes seen at readiness that are gone (GIL builds), or worker exits in
        the log (free-threaded builds run workers as threads). Granian does not respawn them by default."""
        gone = sum(1 for member in self._members if not _running(member))
        return max(gone, self.log_tail(None).count(WORKER_EXIT))

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
            self._reaper.release()
            if self._record is not None:
                self._record.unlink(missing_ok=True)

    def _stop_group(self) -> None:
        members = self._members | self._tree()
        signal_group(self.pid, signal.SIGTERM)
        # Granian 2.5 ignores SIGTERM while it starts up: one that never got ready is not waited for.
        timeout = STOP_TIMEOUT_S if self._members else STARTING_STOP_TIMEOUT_S
        try:
            self.process.wait(timeout)
            self.stopped_by = "SIGTERM"
        except subprocess.TimeoutExpired:
            self.stopped_by = f"SIGKILL, {timeout:g}s after SIGTERM"
        signal_group(self.pid, signal.SIGKILL)  # the group's stragglers, or all of it after the timeout
        self.process.wait()
        _wait_gone(members)


def _records_dir() -> Path:
    return machine_lock.state_dir() / "servers"


def record_server(pid: int, command: list[str], port: int) -> Path | None:
    """Note a started server (pid, start time, command, and the harness that owns it) where the next run
    looks for servers left behind by a harness killed with SIGKILL. Best effort: None if it cannot be noted."""
    path = _records_dir() / f"{pid}.json"
    try:
        me = psutil.Process()  # a Granian that has already exited has no start time: nothing to note
        record = {"pid": pid, "started": psutil.Process(pid).create_time(), "command": command, "port": port,
                  "harness_pid": me.pid, "harness_started": me.create_time()}
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
            if (os.getpgid(process.pid) == record["pid"] and process.info["create_time"] >= record["started"]
                    and process.info["cmdline"][-len(record["command"]):] == record["command"]):
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
            say(f"stopped Granian pid {record['pid']} on port {record['port']} ({len(processes)} process(es)), "
                f"left running by an earlier harness (pid {record['harness_pid']}) that did not stop it")
        path.unlink(missing_ok=True)


def _wait_gone(members: set[psutil.Process]) -> None:
    """Wait until every member has exited. A zombie counts as gone: it runs nothing, and its reaping is up to
    init once its parent has died, which can take a second or more."""
    deadline = time.monotonic() + KILLED_GONE_TIMEOUT_S
    while time.monotonic() < deadline:
        running = [member for member in members if _running(member)]
        if not running:
            return
        for member in running:
            member.kill()
        time.sleep(0.01)
    raise ServerError(f"server processes {[member.pid for member in running]} survived SIGKILL")


def _running(process: psutil.Process) -> bool:
    """Alive and not a zombie: a zombie runs nothing, whoever has yet to reap it."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _json_or_none(body: bytes):
    try:
        return json.loads(body)
    except ValueError:
        return None
