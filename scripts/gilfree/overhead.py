"""What the harness itself costs, measured on this machine: a benchmark with figures in its output, not a test.

    python -m gilfree.overhead --python ENV/bin/python [--cells 5] [--pairs 5] [--duration 2s] [--loadgen wrk]

(`nox -s overhead -- ...` builds the _asgi() environment and runs it.) It prints:
1. the fixed overhead per cell: from starting Granian to starting the measured load, plus the teardown;
2. the sampler's own CPU use, as a share of one core;
3. RPS with the sampler on over RPS with it off, against one server, alternating on/off and off/on;
4. RPS with Granian's counters (--metrics) on over off, a fresh server each run, alternating (Granian 2.7.0 and
   later: GILFREE_PROFILE=latest; the post's 2.5.5 has none, and the line says so).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path

from gilfree.cli import guarded
from gilfree.core.arguments import OneLineParser, count, duration, interpreter_path
from gilfree.run import granian_counters
from gilfree.run.child import free_port, url
from gilfree.run.interpreters import check, probe
from gilfree.run.loadgen import LOADGENS, require, run_load
from gilfree.run.runner import Options, measure
from gilfree.run.sampler import TreeSampler
from gilfree.run.server import DEFAULT_PORT, GranianServer, granian_command
from gilfree.study import results
from gilfree.study.studies import App, article


def _asgi() -> App:
    """The post's ASGI app, the one whose cells the overhead is measured on."""
    return article().apps["asgi"]


TARGET_OVERHEAD_S = 1.0
TARGET_SAMPLER_SHARE = 0.01
TARGET_RPS_RATIO = 0.99


def cell_overhead(options: Options, cells: int) -> list[dict]:
    """Measure real cells (_asgi() /json, 1 worker, c=128) and keep their timings and sampler cost."""
    facts = probe(options.pythons["asgi", article().variants[0]], _asgi())
    variant = article().variants[1] if facts["free_threaded_build"] else article().variants[0]
    interpreter = check(variant, facts)
    cell = next(c for c in article().tables_by_id["asgi-json"].cells if c.variant == variant and c.workers == 1)
    runs = [measure(cell, interpreter, LOADGENS[options.loadgen], options) for _ in range(cells)]
    failed = [run["failure"] for run in runs if not results.succeeded(run)]
    if failed:
        raise SystemExit(f"gilfree: error: a cell failed, so its overhead means nothing: {failed[0]}")
    return runs


def sampling_ratio(options: Options, pairs: int) -> tuple[list[float], list[float]]:
    """RPS with and without the sampler against the same server, alternating which goes first."""
    generator = LOADGENS[options.loadgen]
    cell = article().tables_by_id["asgi-json"].cells[0]
    granian = str(Path(options.pythons["asgi", article().variants[0]]).parent / "granian")
    command = generator.command(url(options.port, _asgi().endpoints["json"].path), options.duration_s, cell.concurrency)
    on, off = [], []
    with GranianServer(granian_command(granian, cell, _asgi(), options.port), _asgi(), options.port,
                       options.results_dir / "sampling.log") as server:
        server.wait_ready()
        server.verify()
        for pair in range(pairs):
            for sampled in ((True, False) if pair % 2 == 0 else (False, True)):
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
    load_command = generator.command(url(options.port, _asgi().endpoints["json"].path), options.duration_s,
                                     cell.concurrency)
    on, off = [], []
    for pair in range(pairs):
        for counted in ((True, False) if pair % 2 == 0 else (False, True)):
            command = granian_command(granian, cell, _asgi(), options.port, metrics_port=free_port() if counted else None)
            with GranianServer(command, _asgi(), options.port, options.results_dir / "metrics.log") as server:
                server.wait_ready()
                server.verify()
                load, _ = run_load(generator, load_command, options.duration_s)
            (on if counted else off).append(load.rps)
    return on, off


def verdict(met: bool) -> str:
    return "meets the target" if met else "MISSES the target"


def metrics_line(measured: tuple[list[float], list[float]] | str) -> str:
    if isinstance(measured, str):
        return f"RPS with Granian's --metrics on / off: not measured: {measured}"
    on, off = measured
    return (f"RPS with Granian's --metrics on / off: {statistics.median(on) / statistics.median(off):.4f} (medians "
            f"{statistics.median(on):.0f} / {statistics.median(off):.0f} over {len(on)} fresh servers each)")


def report(runs: list[dict], on: list[float], off: list[float]) -> str:
    setups = [run["timings"]["setup_s"] for run in runs]
    teardowns = [run["timings"]["teardown_s"] for run in runs]
    overheads = [s + t for s, t in zip(setups, teardowns)]
    shares = [run["resources"]["sampler_cpu_s"] / run["resources"]["window_s"] for run in runs]
    ratio = statistics.median(on) / statistics.median(off)
    killed = sum(run["stopped_by"] != "SIGTERM" for run in runs)
    return "\n".join([
        f"per-cell overhead over {len(runs)} cells: mean {statistics.mean(overheads):.3f}s, "
        f"max {max(overheads):.3f}s (setup mean {statistics.mean(setups):.3f}s, "
        f"teardown mean {statistics.mean(teardowns):.3f}s, {killed} stop(s) needed SIGKILL); "
        f"target <= {TARGET_OVERHEAD_S:.1f}s: "
        f"{verdict(max(overheads) <= TARGET_OVERHEAD_S)}",
        f"sampler CPU: mean {statistics.mean(shares):.3%} of one core, max {max(shares):.3%}; "
        f"target <= {TARGET_SAMPLER_SHARE:.0%}: {verdict(max(shares) <= TARGET_SAMPLER_SHARE)}",
        f"RPS sampling on / off: {ratio:.4f} (medians {statistics.median(on):.0f} / {statistics.median(off):.0f} "
        f"over {len(on)} runs each; on {', '.join(f'{x:.0f}' for x in on)}; off {', '.join(f'{x:.0f}' for x in off)}); "
        f"target >= {TARGET_RPS_RATIO}: {verdict(ratio >= TARGET_RPS_RATIO)}",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="gilfree.overhead", description=__doc__.splitlines()[0])
    parser.add_argument("--python", required=True, type=interpreter_path,
                        help="interpreter of an _asgi() environment under test")
    parser.add_argument("--cells", type=count, default=5)
    parser.add_argument("--pairs", type=count, default=5)
    parser.add_argument("--duration", type=duration, default="2s")
    parser.add_argument("--loadgen", choices=LOADGENS, default="wrk")
    args = parser.parse_args(argv)
    require(LOADGENS[args.loadgen])
    with tempfile.TemporaryDirectory(prefix="gilfree-overhead-") as scratch:
        options = Options(session=article().sessions["asgi-3.14"], pythons={("asgi", article().variants[0]): args.python},
                          duration_s=args.duration,
                          loadgen=args.loadgen, results_dir=Path(scratch), port=DEFAULT_PORT)
        runs = cell_overhead(options, args.cells)
        on, off = sampling_ratio(options, args.pairs)
        counters = metrics_ratio(options, args.pairs, runs[0]["granian"]["version"])
    print(report(runs, on, off))
    print(metrics_line(counters))
    return 0


if __name__ == "__main__":
    sys.exit(guarded(main))
