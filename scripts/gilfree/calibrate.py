"""The load generator's ceiling on this machine: what it pushes against a server that costs next to nothing per
request (nginx, answering the apps' 27-byte JSON on loopback), at each concurrency of the study.

    python -m gilfree.calibrate [--loadgen rewrk] [--duration 10s] [--repeat 3] [--pin N] [--results-dir DIR]

(`nox -s calibrate -- ...`). nginx runs as a child of this process, from a configuration generated in a
temporary folder, on 127.0.0.1 and a free port; it is always stopped, Ctrl-C included. The ceiling, the median
RPS of the runs at each concurrency, is stored with the machine's facts in
results/calibration/<loadgen>[-pin<N>].json (see ceiling.py). A study row at 70% of the ceiling or more, for
the same load generator, machine, pinning and concurrency, is flagged in the tables (stats.CeilingCheck).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
from pathlib import Path

from gilfree.core import warnings
from gilfree.core.arguments import OneLineParser, count, duration, port, writable_dir
from gilfree.core.stats import BUSY_LIMIT, loadgen_saturated, machine_busy
from gilfree.core.warnings import StudyWarning, WarningKind
from gilfree.guard import guarded
from gilfree.run import machine_lock
from gilfree.run.child import ServerError, free_port
from gilfree.run.loadgen import LOADGENS, LoadGenerator, LoadGenError, require, run_load, version
from gilfree.run.nginx import Nginx, NginxError, nginx_binary, nginx_version
from gilfree.run.processes import exit_with_caller, split_cpus
from gilfree.run.sampler import OthersBusy, TreeSampler
from gilfree.study import ceiling, results
from gilfree.study.studies import article


# The apps' answer byte for byte: FastAPI and Flask both send it without spaces.
def posts_json() -> str:
    """The post's /json answer, as nginx serves it."""
    return json.dumps(article().apps["asgi"].endpoints["json"].json_body, separators=(",", ":"))


def concurrencies() -> tuple[int, ...]:
    """Every concurrency of the post's study."""
    return tuple(sorted({cell.concurrency for table in article().tables for cell in table.cells}))


def measure(
    generator: LoadGenerator, nginx: Nginx, concurrency: int, duration_s: int, cpus: tuple[int, ...] | None
) -> dict:
    """One run at one concurrency: the load generator's figures and CPU, nginx's CPU, how busy the machine was."""
    busy = OthersBusy().share()  # the rest of the machine, as each session's run reads it
    sampler = TreeSampler(nginx.pid)
    sampler.start()
    try:
        load, usage = run_load(
            generator, generator.command(nginx.json_url, duration_s, concurrency), duration_s, cpus=cpus
        )
    finally:
        served = sampler.stop()
    if load.errors or load.non_2xx:
        raise nginx.fail(
            f"{generator.name} at c={concurrency} saw {load.errors} errors and {load.non_2xx} non-2xx "
            "answers from nginx: its RPS would not be a ceiling"
        )
    return {
        "concurrency": concurrency,
        **load.as_dict(),
        **usage,
        "nginx_cpu_cores": served.cpu_cores,
        "busy_share": busy,
    }


def ceilings(runs: list[dict]) -> list[dict]:
    """Per concurrency, the median RPS of its runs (a low run on a shared machine flags more rows, not fewer,
    than the maximum would), with every run kept."""
    by_concurrency: dict[int, list[dict]] = {}
    for run in runs:
        by_concurrency.setdefault(run["concurrency"], []).append(run)
    return [
        {"concurrency": concurrency, "rps": statistics.median(run["rps"] for run in own), "runs": own}
        for concurrency, own in sorted(by_concurrency.items())
    ]


def ceiling_warnings(runs: list[dict], generator: LoadGenerator) -> list[StudyWarning]:
    """What makes the ceiling doubtful: a busy machine, a one-thread generator that was not its own limit."""
    found = [
        StudyWarning(
            WarningKind.CALIBRATION_BUSY,
            {"concurrency": run["concurrency"], "busy_share": run["busy_share"], "limit": BUSY_LIMIT},
        )
        for run in runs
        if machine_busy(run["busy_share"])
    ]
    if generator.threads:
        found += [
            StudyWarning(
                WarningKind.CEILING_NOT_LOADGEN_BOUND,
                {
                    "generator": generator.name,
                    "cores": run["loadgen_cpu_cores"],
                    "threads": generator.threads,
                    "concurrency": run["concurrency"],
                    "nginx_cores": run["nginx_cpu_cores"],
                },
            )
            for run in runs
            if not loadgen_saturated(run["loadgen_cpu_cores"], generator.threads)
        ]
    return found


def calibrate(
    generator: LoadGenerator,
    folder: Path,
    port: int,
    duration_s: int,
    repeat: int,
    concurrencies: tuple[int, ...],
    pin: int | None,
) -> dict:
    """Start nginx, check its answer, load it round by round (every concurrency once, then again), stop it."""
    server_cpus, loadgen_cpus = split_cpus(pin) if pin else (None, None)
    workers = len(server_cpus or os.sched_getaffinity(0))
    binary = nginx_binary()
    plan = [concurrency for _ in range(repeat) for concurrency in concurrencies]
    runs = []
    with Nginx(binary, folder, port, workers, posts_json(), server_cpus) as nginx:
        nginx.wait_ready()
        nginx.verify("before the load")
        for index, concurrency in enumerate(plan):
            say(f"[{index + 1}/{len(plan)}] {generator.name} c={concurrency} {duration_s}s against nginx")
            runs.append(measure(generator, nginx, concurrency, duration_s, loadgen_cpus))
        nginx.verify("after the load")
        command = nginx.command
    return {
        "kind": ceiling.KIND,
        "schema": ceiling.SCHEMA,
        "measured_at": results.now(),
        "machine": results.machine(),
        "load_generator": {"name": generator.name, "version": version(generator)},
        "server": {
            "name": "nginx",
            "version": nginx_version(binary),
            "worker_processes": workers,
            "command": command,
            "body": posts_json(),
        },
        "settings": {
            "duration_s": duration_s,
            "repeat": repeat,
            "server_cpus": server_cpus,
            "loadgen_cpus": loadgen_cpus,
        },
        "ceilings": ceilings(runs),
        "warnings": warnings.stored(ceiling_warnings(runs, generator)),
    }


def say(message: str) -> None:
    print(f"gilfree.calibrate: {message}", file=sys.stderr, flush=True)


def summary(record: dict) -> str:
    lines = [
        f"{record['load_generator']['version']} against {record['server']['version']} "
        f"({record['server']['worker_processes']} worker(s)) on {record['machine']['cpu_model']}, "
        f"{record['settings']['duration_s']}s x {record['settings']['repeat']}:"
    ]
    for point in record["ceilings"]:
        runs = point["runs"]
        each = ", ".join(f"{run['rps']:.0f}" for run in runs)
        lines.append(
            f"  c={point['concurrency']}: ceiling {point['rps']:.0f} RPS (runs {each}); load generator "
            f"{statistics.median(run['loadgen_cpu_cores'] for run in runs):.2f} cores, nginx "
            f"{statistics.median(run['nginx_cpu_cores'] for run in runs):.2f} cores"
        )
    return "\n".join(lines + [f"  WARNING: {warning.message}" for warning in warnings.read(record["warnings"])])


def parser() -> argparse.ArgumentParser:
    main = OneLineParser(prog="gilfree.calibrate", description=__doc__.splitlines()[0])
    main.add_argument("--loadgen", choices=LOADGENS, default="rewrk", help="load generator (default rewrk)")
    main.add_argument("--duration", type=duration, default="10s", help="load per run (default 10s)")
    main.add_argument("--repeat", type=count, default=3, help="runs per concurrency; the ceiling is their median")
    main.add_argument(
        "--concurrency",
        type=count,
        action="append",
        help=f"a concurrency to measure (default the study's: {', '.join(map(str, concurrencies()))})",
    )
    main.add_argument(
        "--pin",
        type=count,
        metavar="N",
        help="as the study's --pin: the load generator on the last N CPUs, nginx on the others",
    )
    main.add_argument("--port", type=port, help="nginx's port (default a free one)")
    main.add_argument("--results-dir", type=writable_dir, default=str(article().results_dir))
    return main


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))  # nginx is stopped on the way out
    signal.signal(signal.SIGINT, signal.default_int_handler)
    exit_with_caller(say)
    generator = LOADGENS[args.loadgen]
    try:
        split_cpus(args.pin) if args.pin else None
        require(generator)
        nginx_binary()
    except (ValueError, LoadGenError, NginxError) as refusal:
        print(f"gilfree.calibrate: error: {refusal}", file=sys.stderr)
        return 2
    target = ceiling.path(args.results_dir, generator.name, args.pin)
    try:
        # One benchmark per machine: a calibration beside a study would slow both.
        with machine_lock.held("calibrate", say=say), tempfile.TemporaryDirectory(prefix="gilfree-nginx-") as folder:
            record = calibrate(
                generator,
                Path(folder),
                args.port or free_port(),
                args.duration,
                args.repeat,
                tuple(args.concurrency or concurrencies()),
                args.pin,
            )
    except (NginxError, LoadGenError) as error:
        print(f"gilfree.calibrate: error: {error}", file=sys.stderr)
        return 1
    except ServerError as error:  # the port is taken (nginx's own failures are NginxError, above)
        print(f"gilfree.calibrate: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gilfree.calibrate: interrupted; nginx is stopped and nothing was stored", file=sys.stderr)
        return 130
    if target.exists():
        say(f"set the previous calibration aside: {results.set_aside(target)}")
    results.write_atomic(target, record)
    print(summary(record))
    print(target)
    return 0


if __name__ == "__main__":
    sys.exit(guarded(main))
