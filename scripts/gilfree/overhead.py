"""What the harness itself costs, measured on this machine: a benchmark with figures in its output, not a test.

    python -m gilfree.overhead --python ENV/bin/python [--cells 5] [--pairs 5] [--duration 2s] [--loadgen wrk]

(`nox -s overhead -- ...` builds the _asgi() environment and runs it.) It runs a session of one real cell
(_asgi() /json, 1 worker, c=128) `--cells` times through the runner, as `nox -s asgi-3.14` would, and prints:
1. where a run's time went, phase by phase (run["timings"]), and the session's own fixed costs;
2. the harness's own time as a share of the post's whole study at its 30 s per cell: everything but the load
   windows and Granian's own start and stop, projected from the measured phases (the formula is printed);
   `--duration 30s` measures it at the post's length instead;
3. the sampler's own CPU use, as a share of one core;
4. RPS with the sampler on over RPS with it off, against one server, alternating on/off and off/on;
5. RPS with Granian's counters (--metrics) on over off, a fresh server each run, alternating (Granian 2.7.0 and
   later: GILFREE_PROFILE=latest; the post's 2.5.5 has none, and the line says so).

Granian's own start is counted from its spawn to its first answer, less READY_POLL_S (the most our polling can
add: Granian may have been ready just after a poll); its own stop from SIGTERM to its exit (or to SIGKILL).
"""

from __future__ import annotations

import dataclasses
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gilfree.cli import render_tables
from gilfree.core.arguments import OneLineParser, count, duration, interpreter_path
from gilfree.guard import guarded
from gilfree.run import granian_counters, runner
from gilfree.run.child import free_port, url
from gilfree.run.interpreters import probe
from gilfree.run.loadgen import LOADGENS, require, run_load
from gilfree.run.runner import Options
from gilfree.run.sampler import TreeSampler
from gilfree.run.server import DEFAULT_PORT, GranianServer, granian_command
from gilfree.study import results
from gilfree.study.studies import App, article


def _asgi() -> App:
    """The post's ASGI app, the one whose cells the overhead is measured on."""
    return article().apps["asgi"]


POST_DURATION_S = 30  # the post's rewrk -d 30s, one run per cell
TARGET_HARNESS_SHARE = 0.01
TARGET_SAMPLER_SHARE = 0.005
TARGET_RPS_RATIO = 0.99


@dataclasses.dataclass(frozen=True)
class SessionCost:
    """A measured session of one cell run `len(runs)` times: its runs, and the wall seconds of each of its parts."""

    runs: list[dict]
    start_s: float  # the harness's own start (`python -m gilfree`: imports), once per session
    readiness_s: float  # the machine's readiness, read once per session (its load sampled for 0.5 s)
    prepare_s: float  # runner.prepare of one interpreter, the readiness aside: probed, its records found
    run_s: float  # runner.run: every run, its record written, its progress said
    render_s: float  # the tables rendered once the runs end


def harness_start_s() -> float:
    """Wall seconds of a harness process that starts and exits at once: what every session pays for its imports."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "gilfree", "--help"], check=True, capture_output=True)
    return time.perf_counter() - started


def session_cost(options: Options, cells: int) -> SessionCost:
    """Run the asgi-json cell on one worker `cells` times as a session runs it (prepare, run, render), timed."""
    facts = probe(options.pythons["asgi", article().variants[0]], _asgi())
    variant = article().variants[1] if facts["free_threaded_build"] else article().variants[0]
    options = dataclasses.replace(
        options,
        session=article().sessions[f"asgi-{variant}"],
        table="asgi-json",
        pythons={("asgi", variant): options.pythons["asgi", article().variants[0]]},
        repeat=cells,
    )
    start_s = harness_start_s()
    reading = time.perf_counter()
    options.machine_readiness  # noqa: B018 -- read once per session (cached), so that prepare below is one interpreter's part
    started = time.perf_counter()
    plan = runner.prepare(options)
    prepared = time.perf_counter()
    cell = next(c for c in options.cells if c.workers == 1)
    plan = dataclasses.replace(plan, records={cell: plan.records[cell]})  # that cell alone, `cells` rounds
    status = runner.run(plan)
    ran = time.perf_counter()
    render_tables(options, status)
    runs = plan.records[cell]["runs"]
    failed = [run["failure"] for run in runs if not results.succeeded(run)]
    if failed:
        raise SystemExit(f"gilfree: error: a cell failed, so its overhead means nothing: {failed[0]}")
    return SessionCost(runs, start_s, started - reading, prepared - started, ran - prepared, time.perf_counter() - ran)


def load_window_s(run: dict, duration_s: int, warmup_s: int) -> float:
    """The load windows asked for (the measured one and any warmup); the load generator's start and exit beyond
    them are the harness's."""
    phases = run["timings"]["phases_s"]
    return min(phases["load_s"], duration_s) + min(phases.get("warmup_s", 0.0), warmup_s)


def granian_own_s(run: dict) -> float:
    return run["timings"]["granian_start_s"] + run["timings"]["granian_stop_s"]


def study_share(harness_s: float, granian_s: float, cost: SessionCost, duration_s: float) -> tuple[float, str]:
    """The harness's share of the post's default sessions, cells of `duration_s` each, one run per cell; and the
    formula it came from, with its figures. A session starts the harness once per variant (the noxfile's
    interpreter lookup) and twice more (prepare, run), probes each app on each variant, and renders once."""
    sessions = [article().sessions[name] for name in article().default_sessions]
    cells = sum(len(session.cells()) for session in sessions)
    starts = sum(2 + len(session.variants) for session in sessions)
    probes = sum(len(session.apps) * len(session.variants) for session in sessions)
    harness = (
        cells * harness_s
        + starts * cost.start_s
        + probes * cost.prepare_s
        + len(sessions) * (cost.readiness_s + cost.render_s)
    )
    share = harness / (harness + cells * (granian_s + duration_s))
    formula = (
        f"h / (h + N*(G + D)), h = N*H + T*A + P*Q + K*(M + R); N={cells} cells in K={len(sessions)} sessions "
        f"({', '.join(session.name for session in sessions)}), H={harness_s:.3f}s harness per run, "
        f"T={starts} harness starts of A={cost.start_s:.3f}s, P={probes} interpreters prepared at "
        f"Q={cost.prepare_s:.3f}s, M={cost.readiness_s:.3f}s reading the machine's readiness and "
        f"R={cost.render_s:.3f}s rendering per session, G={granian_s:.3f}s "
        f"Granian's own start+stop per run, D={duration_s:g}s load window per run"
    )
    return share, formula


def sampling_ratio(options: Options, pairs: int) -> tuple[list[float], list[float]]:
    """RPS with and without the sampler against the same server, alternating which goes first."""
    generator = LOADGENS[options.loadgen]
    cell = article().tables_by_id["asgi-json"].cells[0]
    granian = str(Path(options.pythons["asgi", article().variants[0]]).parent / "granian")
    command = generator.command(url(options.port, _asgi().endpoints["json"].path), options.duration_s, cell.concurrency)
    on: list[float] = []
    off: list[float] = []
    with GranianServer(
        granian_command(granian, cell, _asgi(), options.port),
        _asgi(),
        options.port,
        options.results_dir / "sampling.log",
    ) as server:
        server.wait_ready()
        server.verify()
        for pair in range(pairs):
            for sampled in (True, False) if pair % 2 == 0 else (False, True):
                sampler = TreeSampler(server.pid) if sampled else None
                if sampler:
                    sampler.start()
                load, _ = run_load(generator, command, options.duration_s)
                if sampler:
                    sampler.stop()
                (on if sampled else off).append(load.rps)
    return on, off


def metrics_ratio(options: Options, pairs: int, granian_version: str) -> tuple[list[float], list[float]] | str:
    """RPS with Granian's counters on over off, each run a fresh server, alternating which goes first; or why it
    was not measured (a Granian without --metrics)."""
    try:
        granian_counters.check_supported(granian_version, "the environment under test")
    except granian_counters.MetricsUnsupported as unsupported:
        return str(unsupported)
    generator, cell = LOADGENS[options.loadgen], article().tables_by_id["asgi-json"].cells[0]
    granian = str(Path(options.pythons["asgi", article().variants[0]]).parent / "granian")
    load_command = generator.command(
        url(options.port, _asgi().endpoints["json"].path), options.duration_s, cell.concurrency
    )
    on: list[float] = []
    off: list[float] = []
    for pair in range(pairs):
        for counted in (True, False) if pair % 2 == 0 else (False, True):
            command = granian_command(
                granian, cell, _asgi(), options.port, metrics_port=free_port() if counted else None
            )
            with GranianServer(command, _asgi(), options.port, options.results_dir / "metrics.log") as server:
                server.wait_ready()
                server.verify()
                load, _ = run_load(generator, load_command, options.duration_s)
            (on if counted else off).append(load.rps)
    return on, off


def verdict(met: bool) -> str:
    return "PASS" if met else "MISS"


def metrics_line(measured: tuple[list[float], list[float]] | str) -> str:
    if isinstance(measured, str):
        return f"RPS with Granian's --metrics on / off: not measured: {measured}"
    on, off = measured
    return (
        f"RPS with Granian's --metrics on / off: {statistics.median(on) / statistics.median(off):.4f} (medians "
        f"{statistics.median(on):.0f} / {statistics.median(off):.0f} over {len(on)} fresh servers each)"
    )


def breakdown(cost: SessionCost) -> str:
    """Where the time went: each phase of a run (mean over the runs), and what each session pays once."""
    runs, mean = cost.runs, statistics.mean
    phases = list(dict.fromkeys(phase for run in runs for phase in run["timings"]["phases_s"]))
    shown = []
    for phase in phases:
        line = f"{phase} {mean(run['timings']['phases_s'].get(phase, 0.0) for run in runs):.3f}"
        own = {"ready_s": "granian_start_s", "stop_s": "granian_stop_s"}.get(phase)
        if own:
            line += f" (Granian's own {own.split('_')[1]} {mean(run['timings'][own] for run in runs):.3f})"
        shown.append(line)
    between = (cost.run_s - sum(run["timings"]["total_s"] + run["timings"]["record_s"] for run in runs)) / len(runs)
    shown += [f"record_s {mean(run['timings']['record_s'] for run in runs):.3f}", f"between runs {between:.3f}"]
    return (
        f"where a run's time went, mean seconds over {len(runs)} runs: {', '.join(shown)}; each session once: "
        f"harness start {cost.start_s:.3f}, readiness {cost.readiness_s:.3f}, prepare {cost.prepare_s:.3f}, "
        f"render {cost.render_s:.3f}"
    )


def report(cost: SessionCost, options: Options, on: list[float], off: list[float]) -> str:
    runs = cost.runs
    loads = [load_window_s(run, options.duration_s, options.warmup_s) for run in runs]
    granian = statistics.mean(granian_own_s(run) for run in runs)
    harness = (cost.run_s - sum(loads)) / len(runs) - granian  # between the runs included
    share, formula = study_share(harness, granian, cost, POST_DURATION_S + options.warmup_s)
    how = (
        "measured at the post's 30 s"
        if options.duration_s == POST_DURATION_S
        else f"H measured with {options.duration_s}s loads, projected to the post's {POST_DURATION_S}s"
    )
    samplers = [run["resources"]["sampler_cpu_s"] / run["resources"]["window_s"] for run in runs]
    ratio = statistics.median(on) / statistics.median(off)
    killed = sum(run["stopped_by"] != "SIGTERM" for run in runs)
    return "\n".join(
        [
            breakdown(cost),
            f"harness time per run: {harness:.3f}s beyond the load window and Granian's own start and stop "
            f"({granian:.3f}s; {killed} stop(s) needed SIGKILL)",
            f"harness share of the post's study: {share:.2%} = {formula}; {how}; "
            f"target < {TARGET_HARNESS_SHARE:.0%}: {verdict(share < TARGET_HARNESS_SHARE)}",
            f"sampler CPU: mean {statistics.mean(samplers):.3%} of one core, max {max(samplers):.3%}, over "
            f"{options.duration_s}s windows (one sample every {runs[0]['resources']['interval_s']}s); "
            f"target < {TARGET_SAMPLER_SHARE:.1%}: {verdict(statistics.mean(samplers) < TARGET_SAMPLER_SHARE)}",
            f"RPS sampling on / off: {ratio:.4f} (medians {statistics.median(on):.0f} / {statistics.median(off):.0f} "
            f"over {len(on)} runs each; on {', '.join(f'{x:.0f}' for x in on)}; off {', '.join(f'{x:.0f}' for x in off)}); "
            f"target >= {TARGET_RPS_RATIO}: {verdict(ratio >= TARGET_RPS_RATIO)}",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="gilfree.overhead", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--python", required=True, type=interpreter_path, help="interpreter of an _asgi() environment under test"
    )
    parser.add_argument("--cells", type=count, default=5, help="runs of the one cell (default 5)")
    parser.add_argument("--pairs", type=count, default=5)
    parser.add_argument("--duration", type=duration, default="2s", help="each load (default 2s; the post's: 30s)")
    parser.add_argument("--loadgen", choices=LOADGENS, default="wrk")
    args = parser.parse_args(argv)
    require(LOADGENS[args.loadgen])
    with tempfile.TemporaryDirectory(prefix="gilfree-overhead-") as scratch:
        options = Options(
            session=article().sessions["asgi-3.14"],
            pythons={("asgi", article().variants[0]): args.python},
            duration_s=args.duration,
            loadgen=args.loadgen,
            results_dir=Path(scratch),
            port=DEFAULT_PORT,
        )
        cost = session_cost(options, args.cells)
        on, off = sampling_ratio(options, args.pairs)
        counters = metrics_ratio(options, args.pairs, cost.runs[0]["granian"]["version"])
    print(report(cost, options, on, off))
    print(metrics_line(counters))
    return 0


if __name__ == "__main__":
    sys.exit(guarded(main))
