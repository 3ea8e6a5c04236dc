"""Walk a session's cells: verify each interpreter, then run every cell `repeat` times, round by round so that
drift hits every cell (and, in the two-variant sessions, both variants) alike. A run starts Granian, verifies
its answers, loads it while sampling its process tree, and stops it. Each cell's record is rewritten after
every run; a failed run is stored as failed.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sys
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import psutil

from gilfree.core import warnings
from gilfree.core.warnings import StudyWarning, WarningKind
from gilfree.run import granian_counters, readiness, rounds
from gilfree.run.child import DEFAULT_BIND, READY_POLL_S, ServerError, free_port, url
from gilfree.run.hosts import LoadHost, LocalHost
from gilfree.run.interpreters import Interpreter, check, check_lock, probe
from gilfree.run.loadgen import LOADGENS, LoadGenerator, LoadGenError, LoadResult
from gilfree.run.processes import TooFewCpus, available_cpus, points_for, split_cpus
from gilfree.run.rounds import AutoRepeat
from gilfree.run.sampler import OthersBusy, TreeSampler
from gilfree.run.server import GranianServer, granian_command, resolved_loop, resolved_runtime_mode
from gilfree.study import results, summary
from gilfree.study.readiness import Readiness, Status
from gilfree.study.schema import gil_name
from gilfree.study.studies import App, Cell, Session

# A GIL re-enabled at run time (by a module imported after the probe) is announced on stderr like this.
GIL_REENABLED = "The global interpreter lock (GIL) has been enabled"
SKIPPED_FOLDERS = ("__pycache__", "node_modules", "venv", "site-packages")  # not the app's own sources
SETUP_ESTIMATE_S = 3.0
# The exit status of a session whose results' file system filled up (0 all measured, 1 a cell failed).
EXIT_STORAGE_FULL = 3


@dataclass(frozen=True)
class Options:
    session: Session
    pythons: dict[tuple[str, str], str]  # (app, variant) -> interpreter of its environment under test
    duration_s: int
    loadgen: str
    results_dir: Path
    port: int
    keep_going: bool = False
    force: bool = False
    table: str | None = None
    profile: str | None = None  # None: the study's first (or GILFREE_PROFILE)
    repeat: int = 1  # rounds; with `auto`, the least that --repeat auto runs (rounds.MIN_ROUNDS)
    auto: AutoRepeat | None = None  # --repeat auto: rounds until the compared intervals are settled
    order_seed: int = field(default_factory=lambda: random.SystemRandom().randrange(2**32))  # each round's order
    warmup_s: int = 0
    pin: int | None = None  # CPUs for the load generator; the server gets the others
    rate: float | None = None  # open loop: requests per second offered; None: closed loop, as the post
    bind: str = DEFAULT_BIND  # the one address Granian listens on
    load_host: LoadHost = LocalHost()  # where the load generator runs
    metrics: bool = False  # Granian's own counters for every cell (--metrics); a table may ask for them too

    @property
    def study(self):
        return self.session.study

    @cached_property
    def profile_name(self) -> str:
        return self.study.profile(self.profile).name

    def lock(self, app: str) -> Path:
        """The lock the app's environment under test was installed from; refused if it was never made."""
        path = self.study.lock_path(self.profile_name, app)
        if not path.is_file():
            raise ValueError(
                f"app {app} of {self.study.path.name} has no lock {path}: make it with "
                f"`nox -s lock -- {self.study.path}`"
            )
        return path

    def environment(self, app: str) -> dict:
        """Where the app's environment under test came from: the profile, and the lock file (named relative to
        the study file, where the checkout may move) with the hash of its content."""
        return self._environments[app]

    @cached_property
    def _environments(self) -> dict[str, dict]:
        """Every app's lock, read and hashed once per session rather than at every run."""
        return {
            app: {
                "profile": self.profile_name,
                "lock": os.path.relpath(lock, self.study.path.parent),
                "lock_sha256": hashlib.sha256(lock.read_bytes()).hexdigest(),
            }
            for app in self.session.apps
            for lock in [self.lock(app)]
        }

    @cached_property
    def app_sources(self) -> dict[str, str]:
        """Every app's sources, hashed once per session (app_sources_sha256)."""
        return {app: app_sources_sha256(self.study.apps[app]) for app in self.session.apps}

    @cached_property
    def settings(self) -> dict:
        """How every run of this session is measured; reading it refuses a --pin the machine cannot honour."""
        server, loadgen = split_cpus(self.pin) if self.pin else (None, None)
        return {
            "duration_s": self.duration_s,
            "loadgen": self.loadgen,
            "port": self.port,
            "repeat": "auto" if self.auto else self.repeat,
            "warmup_s": self.warmup_s,
            "server_cpus": server,
            "loadgen_cpus": loadgen,
            "rate_rps": self.rate,
            "bind": self.bind,
            "loadgen_host": self.load_host.destination,
        }

    def settings_for(self, cell: Cell) -> dict:
        """How this cell's runs are measured: the session's settings, and for a cell that sets the server's CPUs,
        `cpus` of this machine's for the server and the load generator's where its host places it (the others
        here; none of them for a load host, whose CPUs are its own)."""
        counted = (
            {"granian_metrics": True} if self.metrics or self.study.tables_by_id[cell.table].metrics else {}
        )  # absent when off: runs stored before counters existed keep their fingerprint
        if cell.cpus is None:
            return self.settings | counted
        server, loadgen = self.load_host.cpus_for_server(cell.cpus)
        return {**self.settings, "server_cpus": server, "loadgen_cpus": loadgen} | counted

    @cached_property
    def cells(self) -> list[Cell]:
        """The cells to run: the session's (or its one table's); of those that set the server's CPUs, the ones
        this machine can give beside the load generator's. Refuses, before anything starts, a curve of CPU points
        of which fewer than two fit (points_for), one CPU count that does not fit, and --pin beside cells that
        pin themselves."""
        cells = [cell for cell in self.session.cells() if self.table in (None, cell.table)]
        asked = sorted({cell.cpus for cell in cells if cell.cpus is not None})
        if not asked:
            return cells
        if self.pin:
            raise ValueError(
                f"session {self.session.name} gives each cell its own CPUs (the study's `cpus`); leave --pin out"
            )
        needed = self.load_host.cpus_needed_here(LOADGENS[self.loadgen])
        largest = len(available_cpus()) - needed
        if len(asked) == 1 and asked[0] > largest:  # one pinned size, not a curve: it must fit
            raise ValueError(
                f"session {self.session.name} gives the server {asked[0]} CPU(s), and this machine has "
                f"{largest + needed}, {needed} of them for the load generator"
            )
        try:
            fitting = points_for(asked, largest + needed, needed) if len(asked) > 1 else asked
        except TooFewCpus as refusal:
            raise ValueError(f"session {self.session.name}: {refusal}") from None
        if dropped := [k for k in asked if k not in fitting]:
            say(
                f"this machine cannot give the server {', '.join(f'k={k}' for k in dropped)} CPUs beside the load "
                f"generator's {needed}: those cells are left out"
            )
        return [cell for cell in cells if cell.cpus is None or cell.cpus in fitting]

    @cached_property
    def machine_readiness(self) -> Readiness:
        """The machine's state, read once per session: its cells' pinnings checked against the SMT siblings."""
        pinnings = {
            (settings["server_cpus"], settings["loadgen_cpus"]) for settings in map(self.settings_for, self.cells)
        }
        return readiness.read(pinnings=sorted(pinnings, key=str))


def say(message: str) -> None:
    print(f"gilfree: {message}", file=sys.stderr, flush=True)


def fingerprint(cell: Cell, interpreter: Interpreter, options: Options, load_generator: dict) -> str:
    """What must match for stored runs to count as runs of the same measurement: not where the environment or
    the checkout lives (the one- and two-variant sessions build the same environment in different folders), nor
    the host's name (a new container on the same machine measures the same thing)."""
    environment = options.environment(cell.app)
    app = options.study.apps[cell.app]
    identity = {
        "cell": {name: value for name, value in cell.as_dict().items() if name != "table"},
        "app": [app.target, repr(app.endpoints[cell.endpoint]), options.app_sources[cell.app]],
        "python": [
            interpreter.version,
            interpreter.free_threaded_build,
            *(["gil_forced_off"] if interpreter.gil_forced_off else []),
        ],
        "load_generator": load_generator["version"],
        "packages": interpreter.packages,
        "settings": results.measured_settings(options.settings_for(cell)),
        "environment": [environment["profile"], environment["lock_sha256"]],
        "machine": results.machine_identity(results.machine()),
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def app_sources_sha256(app: App) -> str:
    """The app's Python sources, hashed: runs of an app whose code changed are not runs of the same measurement.
    Every .py file under its directory, leaving out hidden folders, virtual environments and caches."""
    digest = hashlib.sha256()
    for folder, subfolders, files in os.walk(app.directory):
        subfolders[:] = sorted(
            d
            for d in subfolders
            if not d.startswith(".") and d not in SKIPPED_FOLDERS and not (Path(folder) / d / "pyvenv.cfg").exists()
        )
        for name in sorted(f for f in files if f.endswith(".py")):
            path = Path(folder) / name
            digest.update(str(path.relative_to(app.directory)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def interpreters(options: Options) -> dict[tuple[str, str], Interpreter]:
    """Probe and check the interpreter of each of the session's apps and variants against the variant and the
    app's lock; warn loudly about stand-ins."""
    found = {}
    for app in options.session.apps:
        for variant in options.session.variants:
            interpreter = check(
                variant,
                probe(options.pythons[app, variant], options.study.apps[app], variant in options.study.gil_forced_off),
            )
            check_lock(options.lock(app), interpreter.packages)
            if interpreter.stand_in:
                say(
                    f"WARNING: CPython {interpreter.version} ({interpreter.executable}) stands in for {variant}; "
                    f"its rows are labelled {interpreter.label}, not {variant}. They are not the post's numbers."
                )
            for warning in interpreter_warnings(interpreter, options):
                say(f"WARNING {variant}: {warning}")
            found[app, variant] = interpreter
    return found


def interpreter_warnings(interpreter: Interpreter, options: Options) -> list[StudyWarning]:
    """What every row of this interpreter carries: a patch release other than the exact one the profile asks for
    (the article profile asks for the post's 3.14.0), and a GIL forced off."""
    wanted = gil_name(options.study.profiles[options.profile_name].python[interpreter.variant])
    said = []
    if wanted.count(".") == 2 and not interpreter.stand_in and interpreter.version != wanted:  # an exact release
        said.append(
            StudyWarning(
                WarningKind.OTHER_RELEASE,
                {"version": interpreter.version, "wanted": wanted, "profile": options.profile_name},
            )
        )
    if interpreter.gil_forced_off:
        said.append(StudyWarning(WarningKind.GIL_FORCED_OFF))
    return said


@dataclass(frozen=True)
class Plan:
    """A session checked and ready: what runs where, in which order, onto which stored records."""

    options: Options
    load_generator: dict
    interpreters: dict[tuple[str, str], Interpreter]
    records: dict[Cell, dict]


def prepare(options: Options) -> Plan:
    """Everything a session refuses before any server starts: the load generator where it runs, the
    interpreters, Granian's counters where asked, the stored records, the space the results need."""
    load_generator = options.load_host.describe(LOADGENS[options.loadgen])
    checked = interpreters(options)
    cells = options.cells
    announce_readiness(options.machine_readiness)
    for cell in cells:  # Granian's counters where asked: refused, before anything runs, where Granian has none
        if options.settings_for(cell).get("granian_metrics"):
            interpreter = checked[cell.app, cell.variant]
            granian_counters.check_supported(
                interpreter.packages["granian"],  # the probe imported it
                f"the environment of {cell.app} on {cell.variant}",
            )
    records = {
        cell: _stored(options, cell, fingerprint(cell, checked[cell.app, cell.variant], options, load_generator))
        for cell in cells
    }
    most = options.auto.max_rounds if options.auto else options.repeat
    kept = sum(min(len(record["runs"]), most) for record in records.values())
    if kept:
        say(f"kept {kept} stored run(s) of this session (--force re-runs them)")
    results.ensure_space(options.results_dir, sum(max(0, most - len(record["runs"])) for record in records.values()))
    return Plan(options, load_generator, checked, records)


def announce_readiness(ready: Readiness) -> None:
    """Once, at the session's start: each item that makes ratios drift, with its fix; what cannot be read here."""
    for warning in ready.warnings():
        say(f"WARNING {warning.message}")
    if unknown := ready.with_status(Status.UNKNOWN):
        say(
            f"machine readiness: cannot read {', '.join(item.key for item in unknown)} here (`nox -s machine` shows "
            f"every item)"
        )


def run(plan: Plan) -> int:
    """Run a prepared session and store its records; return the exit status (0 every run measured, 1 some
    failed, EXIT_STORAGE_FULL the results' disk filled up). Rendering is the caller's, once the records are stored."""
    options, cells, status = plan.options, list(plan.records), 0
    done = {cell: len(record["runs"]) for cell, record in plan.records.items()}
    planned = None if options.auto else sum(max(0, options.repeat - runs) for runs in done.values())
    started, round_, number = time.monotonic(), 0, 0
    try:
        while (stop := _enough(plan, round_, time.monotonic() - started)) is False:
            for cell in rounds.round_order(cells, done, round_, options.order_seed):
                interpreter = plan.interpreters[cell.app, cell.variant]
                number += 1
                _progress(number, planned, round_, cell, interpreter, options)
                done[cell] += 1
                if not _run_once(plan.records[cell], cell, interpreter, plan.load_generator, options, round_):
                    status = 1
                    if not options.keep_going:
                        return status
            round_ += 1
        if options.auto:
            _record_rounds(plan, round_, stop)
    except results.StorageFull as full:
        say(f"error: {full}")
        status = EXIT_STORAGE_FULL
    return status


def _enough(plan: Plan, rounds_run: int, elapsed_s: float) -> rounds.Stop | None | bool:
    """False: run another round. Otherwise the session has its rounds: --repeat N's, or --repeat auto's reason."""
    options = plan.options
    if not options.auto:
        return None if rounds_run >= options.repeat else False
    round_s = elapsed_s / rounds_run if rounds_run else 0.0
    stop = rounds.decide(
        rounds.compared(list(plan.records), plan.records, options.study.comparison),
        options.auto,
        rounds_run,
        elapsed_s,
        round_s,
    )
    return False if stop is None else stop


def _record_rounds(plan: Plan, rounds_run: int, stop: rounds.Stop) -> None:
    """--repeat auto's decision, said and kept in every record of the session."""
    found = rounds.compared(list(plan.records), plan.records, plan.options.study.comparison)
    say(f"--repeat auto stopped after {rounds_run} round(s): {stop.sentence}")
    for cell, record in plan.records.items():
        record["rounds"] = rounds.summary(
            plan.options.auto, plan.options.repeat, plan.options.order_seed, rounds_run, stop, found
        )
        results.write_record(results.cell_path(plan.options.results_dir, cell), record)


def _run_once(
    record: dict, cell: Cell, interpreter: Interpreter, load_generator: dict, options: Options, round_: int
) -> bool:
    """Measure the cell once and store its record before anything else is written; False if the run failed.
    Warnings are printed as they arise: the run's own, and those the cell gains with it (its spread, outliers,
    drift)."""
    record["load_generator"] = load_generator
    known = (
        set(warnings.read(record.get("warnings", [])))
        | set(interpreter_warnings(interpreter, options))
        | set(options.machine_readiness.warnings())
    )  # said once, at the session's start
    throttled = readiness.throttle_counts()
    placed = {"round": round_, "order_seed": options.order_seed}  # where in the shuffled rounds it ran
    record["runs"].append(measure(cell, interpreter, LOADGENS[load_generator["name"]], options) | placed)
    readiness.note_throttling(record["runs"][-1], throttled)
    stored = time.perf_counter()
    _refresh(record, cell, interpreter, options, round_ + 1)
    try:
        results.write_record(results.cell_path(options.results_dir, cell), record)
    except results.StorageFull as full:
        full.unstored = 1  # this run; the cell's earlier runs are in the file as it was
        raise
    last = record["runs"][-1]
    last["timings"]["record_s"] = time.perf_counter() - stored  # on disk from the cell's next write
    own = warnings.read(last["warnings"])
    for warning in own + [w for w in warnings.read(record["warnings"]) if w not in known | set(own)]:
        say(f"WARNING {cell.table} {cell.key}: {warning.message}")
    if not results.succeeded(last):
        say(f"cell {cell.key} FAILED: {last['failure']}")
    return results.succeeded(last)


def _check_from_load_host(
    server: GranianServer, generator: LoadGenerator, target: str, options: Options, when: str
) -> None:
    """The answer check from where the load comes from (server.verify checks from this machine)."""
    failure = options.load_host.check(generator, target)
    if failure:
        raise server.fail(
            f"the load host {options.load_host.destination} got no clean answers from {target} "
            f"{when} ({failure}); can it reach {options.bind} port {options.port}?"
        )


def _progress(
    number: int, planned: int | None, round_: int, cell: Cell, interpreter: Interpreter, options: Options
) -> None:
    """One line per run: which, and how long is left (with --repeat auto, the round: the rounds are not known)."""
    each = options.duration_s + options.warmup_s + SETUP_ESTIMATE_S
    what = f"{cell.table} {interpreter.label} {cell.key}"
    if planned is None:
        say(f"[round {round_ + 1}, --repeat auto] {what}, {options.loadgen} {options.duration_s}s")
        return
    repeat = f" run {round_ + 1}/{options.repeat}" if options.repeat > 1 else ""
    say(
        f"[{number}/{planned}] {what}{repeat}, {options.loadgen} {options.duration_s}s; "
        f"about {(planned - number + 1) * each:.0f}s left in this session"
    )


def _stored(options: Options, cell: Cell, stamp: str) -> dict:
    """The cell's record with the runs already stored for the same measurement, or a new one. A stored result
    of other conditions (or any, with --force) is set aside, never overwritten; failed runs are kept apart."""
    path = results.cell_path(options.results_dir, cell)
    record, why = results.read_record(path), None
    if record is results.UNREADABLE:
        why = results.SetAside.UNREADABLE
    elif record is not None and (options.force or record.get("fingerprint") != stamp):
        why = results.SetAside.FORCED if options.force else results.SetAside.OTHER_CONDITIONS
    elif record is not None:
        try:
            record = results.migrate(record, path)  # runs stored by an older harness go on in today's schema
        except ValueError:
            why = results.SetAside.OTHER_CONDITIONS
    if why is not None:
        say(f"set {cell.table} {cell.key}'s stored result aside ({why.value}): {results.set_aside(path, why)}")
        record = None
    record = record or {"runs": []}
    record["failed_runs"] = record.get("failed_runs", []) + [r for r in record["runs"] if not results.succeeded(r)]
    record["runs"] = results.ok_runs(record)
    record["fingerprint"] = stamp
    return record


def _refresh(record: dict, cell: Cell, interpreter: Interpreter, options: Options, rounds_run: int) -> None:
    """Everything but the runs is derived: status, the median figures, their spread, the warnings, the rounds."""
    runs = record["runs"]
    ok = [run for run in runs if results.succeeded(run)]
    record.update(
        schema=results.SCHEMA,
        study=options.study.name,
        cell=cell.as_dict(),
        commands=runs[-1]["commands"],
        interpreter=interpreter.as_dict(),
        settings=options.settings_for(cell),
        environment=options.environment(cell.app),
        machine={**results.machine(), "readiness": options.machine_readiness.for_runs(runs).as_dict()},
        harness={"python": sys.version.split()[0]},
        **summary.derived(runs, rounds_run if options.auto else options.repeat),
    )
    record["granian"] = granian_counters.summary(ok or runs)
    record["rounds"] = rounds.summary(options.auto, options.repeat, options.order_seed, rounds_run, None, [])
    record["warnings"] = warnings.stored(
        [w for run in runs for w in warnings.read(run["warnings"])]
        + (summary.cell_warnings(record["spread"], record["stability"], len(ok)) if ok else [])
        + interpreter_warnings(interpreter, options)
        + options.machine_readiness.warnings()
    )


class Laps:
    """A run's wall time cut into phases, each timed from the end of the one before, so they add up to the whole
    run (run["timings"]["phases_s"]); a phase that comes again (Granian's counters) adds up."""

    def __init__(self, phases: dict[str, float]):
        self.phases = phases
        self._last = time.perf_counter()

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.phases[phase] = self.phases.get(phase, 0.0) + now - self._last
        self._last = now


def measure(cell: Cell, interpreter: Interpreter, generator: LoadGenerator, options: Options) -> dict:
    """One run of one cell, end to end. Never raises for a failure of the server or the load: records it.
    run["timings"] holds where its time went (the overhead benchmark splits it into load windows, Granian's own
    start and stop, and the harness's time)."""
    started = time.perf_counter()
    timings: dict = {"phases_s": {}}
    laps = Laps(timings["phases_s"])
    settings = options.settings_for(cell)
    granian = str(Path(interpreter.executable).parent / "granian")
    app = options.study.apps[cell.app]
    counted = settings.get("granian_metrics")
    metrics_port = free_port() if counted else None
    server_command = granian_command(granian, cell, app, options.port, options.bind, metrics_port)
    target = url(options.port, app.endpoints[cell.endpoint].path, options.bind)
    load_command = generator.command(target, options.duration_s, cell.concurrency, options.rate)
    run = {
        "status": "failed",
        "failure": None,
        "load": None,
        "resources": None,
        "timeline": None,
        "timings": timings,
        "commands": {"server": server_command, "load": options.load_host.shown(load_command)},
        "granian": granian_ran(cell, interpreter),
        "started_at": results.now(),
    }
    log = results.new_log(options.results_dir, cell)
    run["log"] = str(log)
    laps.lap("commands_s")
    busy, others = None, OthersBusy()  # read while Granian starts, before any load
    try:
        with GranianServer(
            server_command,
            app,
            options.port,
            log,
            cpus=settings["server_cpus"],
            bind=options.bind,
            gil_forced_off=interpreter.gil_forced_off,
        ) as server:
            laps.lap("spawn_s")
            timings["ready_s"] = server.wait_ready()
            timings["granian_start_s"] = max(0.0, time.perf_counter() - server.spawned_at - READY_POLL_S)
            laps.lap("ready_s")
            server.verify()
            _check_from_load_host(server, generator, target, options, "before any load")
            laps.lap("verify_s")
            busy = others.share()
            laps.lap("busy_check_s")
            if options.warmup_s:
                warmup, _ = options.load_host.run_load(
                    generator,
                    generator.command(target, options.warmup_s, cell.concurrency, options.rate),
                    options.warmup_s,
                    settings["loadgen_cpus"],
                )
                run["warmup"] = warmup.as_dict()
                laps.lap("warmup_s")
            before = granian_counters.settled(metrics_port) if counted else None
            if counted:
                laps.lap("counters_s")
            sampler = TreeSampler(server.pid)
            sampler.start()
            laps.lap("sampler_start_s")
            try:
                load, loadgen_usage = options.load_host.run_load(
                    generator, load_command, options.duration_s, settings["loadgen_cpus"]
                )
                laps.lap("load_s")
            finally:
                usage = sampler.stop()
            laps.lap("sampler_stop_s")
            if counted:
                run["granian"]["counters"] = granian_counters.window(
                    before, granian_counters.settled(metrics_port), options.duration_s
                )
                laps.lap("counters_s")
            run["load"] = {**load.as_dict(), **loadgen_usage, "offered_rps": options.rate}  # rps: achieved
            run["resources"] = usage.as_dict()
            run["timeline"] = sampler.timeline().as_dict()
            _check_server_after_load(server, interpreter, load)
            _check_from_load_host(server, generator, target, options, "after the load")
            run["status"] = "ok"
            laps.lap("after_load_checks_s")
        laps.lap("stop_s")
        timings["granian_stop_s"] = server.stopping_s
        run["stopped_by"] = server.stopped_by
    except (ServerError, LoadGenError, granian_counters.CountersUnavailable) as error:
        run["status"], run["failure"] = "failed", str(error)
    run["finished_at"] = results.now()
    gap = granian_counters.requests_gap(run["granian"].get("counters"), (run["load"] or {}).get("requests"), cell)
    busy = others.share() if busy is None else busy  # a failed start: read until now
    run["warnings"] = warnings.stored(
        summary.run_warnings(run, busy, psutil.cpu_count(), generator.threads) + ([gap] if gap else [])
    )
    laps.lap("warnings_s")
    timings["total_s"] = time.perf_counter() - started
    return run


def granian_ran(cell: Cell, interpreter: Interpreter) -> dict:
    """What Granian really ran: its version, and the loop and runtime mode it resolved the cell's settings to."""
    version = interpreter.packages.get("granian")
    return {
        "version": version,
        "loop": resolved_loop(cell, interpreter.granian_auto_loop),
        "runtime_mode": resolved_runtime_mode(cell, version) if version else None,
    }


def _check_server_after_load(server: GranianServer, interpreter: Interpreter, load: LoadResult) -> None:
    """A row is clean only if every process survived, every answer was 2xx and the GIL stayed off."""
    lost = server.workers_lost()
    if lost:
        raise server.fail(
            f"{lost} server process(es) died during the load "
            f"({load.errors} requests failed); Granian does not respawn workers by default"
        )
    server.check_alive()
    if load.non_2xx:
        raise server.fail(f"{load.non_2xx} of {load.requests} responses during the load were not 2xx")
    server.verify("after the load")  # rewrk cannot see status codes: check the answers once more
    if interpreter.free_threaded_build and GIL_REENABLED in server.log_tail(None):
        raise server.fail("the GIL was re-enabled while serving: these would be GIL numbers")
