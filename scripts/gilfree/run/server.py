"""Granian for one cell: its command line with the post's flags, its environment, what it ran, its answers
checked against the study's, and its lost workers; its lifecycle is child.ManagedServer's."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from packaging.version import Version

from gilfree.run import granian_counters
from gilfree.run.child import DEFAULT_BIND, ManagedServer, still_running
from gilfree.study.studies import App, Cell, Endpoint

DEFAULT_PORT = 8000
# Granian logs this when a worker (a process on GIL builds, a thread on free-threaded ones) dies.
WORKER_EXIT = "Unexpected exit from worker"
# Settings that would change the server behind the flags' back: Granian reads GRANIAN_* and
# CPython reads PYTHON_GIL (which can re-enable the GIL on a free-threaded build).
SCRUBBED_ENV = ("PYTHON_GIL", "PYTHONPATH", "PYTHONWARNINGS")  # warnings: the GIL re-enable warning must show


def granian_command(
    granian: str, cell: Cell, app: App, port: int, bind: str = DEFAULT_BIND, metrics_port: int | None = None
) -> list[str]:
    """The one Granian command line: the cell's settings in the post's order (interface, loop, workers, blocking
    threads), then any others it sets, with Granian's host (default 127.0.0.1) and port made explicit; its
    counters' exporter on `metrics_port` where asked (granian_counters)."""
    command = [granian, "--interface", cell.interface]
    if cell.loop is not None:
        command += ["--loop", cell.loop]
    command += ["--workers", str(cell.workers)]
    for flag, value in (
        ("--blocking-threads", cell.blocking_threads),
        ("--runtime-mode", cell.runtime_mode),
        ("--runtime-threads", cell.runtime_threads),
    ):
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


def answer_problem(endpoint: Endpoint, status: int, body: bytes) -> str | None:
    """What is wrong with an answer, against what the study expects of the endpoint; None if nothing."""
    if status != endpoint.status:
        return f"status {status}, expected {endpoint.status}"
    if endpoint.json_body is not None and _json_or_none(body) != endpoint.json_body:
        return f"body {body[:200]!r}, expected the JSON {endpoint.json_body}"
    if endpoint.text is not None and body.decode(errors="replace") != endpoint.text:
        return f"body {body[:200]!r}, expected the text {endpoint.text[:200]!r}"
    return None


def server_env(gil_forced_off: bool = False) -> dict[str, str]:
    """The environment a server (or the probe) starts with: nothing of the caller's that changes what runs, but
    PYTHON_GIL=0 where the study forces the GIL off for the variant."""
    kept = {
        name: value
        for name, value in os.environ.items()
        if name not in SCRUBBED_ENV and not name.startswith("GRANIAN_")
    }
    return kept | ({"PYTHON_GIL": "0"} if gil_forced_off else {})


class GranianServer(ManagedServer):
    """A Granian process group serving one cell; use as a context manager so it is always stopped."""

    name = "Granian"
    ready_timeout_s = 30.0
    stop_timeout_s = 1.0  # Granian stops in ~0.03 s when idle; some 2-worker stops hang until killed
    starting_stop_timeout_s = 0.5  # Granian 2.5 ignores SIGTERM while it starts up: not waited for
    death_signal = signal.SIGTERM  # Granian stops its workers on SIGTERM
    recorded = True  # its processes keep their command line, by which a left-behind one is found

    def __init__(
        self,
        command: list[str],
        app: App,
        port: int,
        log_path: Path,
        cpus: tuple[int, ...] | None = None,
        bind: str = DEFAULT_BIND,
        gil_forced_off: bool = False,
    ):
        super().__init__(
            command,
            port,
            log_path,
            app.first_endpoint.path,
            cwd=app.directory,
            env=server_env(gil_forced_off),
            cpus=cpus,
            bind=bind,
        )
        self.app = app

    def verify(self, when: str = "before any load") -> None:
        """Every endpoint of the app answers as the study expects (the TechEmpower habit): before any load, and
        after it, since a load generator may not look at what it got."""
        for endpoint in self.app.endpoints.values():
            status, _, body = self.get(endpoint.path, when)
            if problem := answer_problem(endpoint, status, body):
                raise self.fail(f"GET {endpoint.path} answered {problem} ({when})")

    def workers_lost(self) -> int:
        """How many workers died: processes seen at readiness that are gone (GIL builds), or worker exits in
        the log (free-threaded builds run workers as threads). Granian does not respawn them by default."""
        gone = sum(1 for member in self._members if not still_running(member))
        return max(gone, self.log_tail(None).count(WORKER_EXIT))


def _json_or_none(body: bytes):
    try:
        return json.loads(body)
    except ValueError:
        return None
