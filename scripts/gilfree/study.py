"""Walk a session's cells: verify the interpreter, then for each cell start Granian, verify its answers,
load it while sampling its process tree, stop it, and store the record. A failed cell is stored as failed.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from . import render, results
from .interpreters import Interpreter, check, probe
from .loadgen import LOADGENS, LoadGenError, LoadGenerator, LoadResult, require, run_load
from .matrix import APPS, SESSIONS, Cell
from .sampler import TreeSampler
from .server import GranianServer, ServerError, granian_command, url

# A GIL re-enabled at run time (by a module imported after the probe) is announced on stderr like this.
GIL_REENABLED = "The global interpreter lock (GIL) has been enabled"
SETUP_ESTIMATE_S = 3.0


@dataclass(frozen=True)
class Options:
    session: str
    python: str
    duration_s: int
    loadgen: str
    results_dir: Path
    port: int
    keep_going: bool
    force: bool
    table: str | None = None
    profile: str = "article"
    lock: Path | None = None

    def environment(self) -> dict:
        """Where the environment under test came from: the profile, and the lock file with its hash."""
        digest = hashlib.sha256(self.lock.read_bytes()).hexdigest() if self.lock else None
        return {"profile": self.profile, "lock": str(self.lock) if self.lock else None, "lock_sha256": digest}


def say(message: str) -> None:
    print(f"gilfree: {message}", file=sys.stderr, flush=True)


def fingerprint(interpreter: Interpreter, options: Options) -> str:
    """What must match for a stored result to stand for a new run of the same cell."""
    identity = {
        "python": [interpreter.executable, interpreter.version, interpreter.free_threaded_build],
        "packages": interpreter.packages,
        "loadgen": options.loadgen,
        "duration_s": options.duration_s,
        "environment": options.environment(),
        "machine": results.machine()["hostname"],
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def run(options: Options) -> int:
    """Run one session; return the exit status (0 all cells measured, 1 some failed)."""
    session = SESSIONS[options.session]
    generator = LOADGENS[options.loadgen]
    require(generator)
    interpreter = check(session.variant, probe(options.python, APPS[session.interface]))
    if interpreter.stand_in:
        say(f"WARNING: CPython {interpreter.version} ({interpreter.executable}) stands in for {session.variant}; "
            f"its rows are labelled {interpreter.label}, not {session.variant}. They are not the post's numbers.")
    stamp = fingerprint(interpreter, options)
    cells = [cell for cell in session.cells() if options.table in (None, cell.table)]
    failed = 0
    for index, cell in enumerate(cells):
        path = results.cell_path(options.results_dir, cell)
        left = (len(cells) - index) * (options.duration_s + SETUP_ESTIMATE_S)
        if not options.force and _kept(path, stamp):
            say(f"[{index + 1}/{len(cells)}] {cell.table} {cell.key}: kept the stored result (--force re-runs it)")
            continue
        say(f"[{index + 1}/{len(cells)}] {cell.table} {interpreter.label} workers={cell.workers} "
            f"threads={cell.blocking_threads or 'default'} /{cell.endpoint} c={cell.concurrency}, "
            f"{generator.name} {options.duration_s}s; about {left:.0f}s left in this session")
        record = measure(cell, interpreter, generator, options)
        record["fingerprint"] = stamp
        results.write_atomic(path, record)
        if record["status"] != "ok":
            failed += 1
            say(f"cell {cell.key} FAILED: {record['failure']}")
            if not options.keep_going:
                break
    written = render.write_all(options.results_dir)
    say(f"tables written: {', '.join(str(path) for path in written)}")
    return 1 if failed else 0


def _kept(path: Path, stamp: str) -> bool:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return record.get("status") == "ok" and record.get("fingerprint") == stamp


def measure(cell: Cell, interpreter: Interpreter, generator: LoadGenerator, options: Options) -> dict:
    """One cell, end to end. Never raises for a failure of the server or the load: records it."""
    granian = str(Path(interpreter.executable).parent / "granian")
    server_command = granian_command(granian, cell, options.port)
    load_command = generator.command(url(options.port, cell.endpoint), options.duration_s, cell.concurrency)
    record = {
        "schema": results.SCHEMA,
        "cell": cell.as_dict(),
        "commands": {"server": server_command, "load": load_command},
        "settings": {"duration_s": options.duration_s, "loadgen": generator.name, "port": options.port},
        "interpreter": interpreter.as_dict(),
        "environment": options.environment(),
        "machine": results.machine(),
        "harness": {"python": sys.version.split()[0]},
        "started_at": results.now(),
        "status": "failed",
        "failure": None,
        "load": None,
        "resources": None,
    }
    log = results.log_path(options.results_dir, cell)
    try:
        with GranianServer(server_command, options.port, log) as server:
            record["ready_s"] = server.wait_ready()
            server.verify()
            sampler = TreeSampler(server.pid)
            sampler.start()
            try:
                load, loadgen_usage = run_load(generator, load_command, options.duration_s)
            finally:
                usage = sampler.stop()
            record["load"] = {**load.as_dict(), **loadgen_usage}
            record["resources"] = usage.as_dict()
            _check_server_after_load(server, interpreter, load)
        record["status"] = "ok"
    except (ServerError, LoadGenError) as error:
        record["failure"] = str(error)
    record["finished_at"] = results.now()
    return record


def _check_server_after_load(server: GranianServer, interpreter: Interpreter, load: LoadResult) -> None:
    """A row is clean only if every process survived, every answer was 2xx and the GIL stayed off."""
    lost = server.workers_lost()
    if lost:
        raise server.fail(f"{lost} server process(es) died during the load "
                          f"({load.errors} requests failed); Granian does not respawn workers by default")
    server.check_alive()
    if load.non_2xx:
        raise server.fail(f"{load.non_2xx} of {load.requests} responses during the load were not 2xx")
    if interpreter.free_threaded_build and GIL_REENABLED in server.log_tail(200):
        raise server.fail("the GIL was re-enabled while serving: these would be GIL numbers")
