"""Command line: `python -m gilfree run SESSION --python PATH [options]`, `tables`, `compare`, `lock STUDY`
(its apps' locks, for `nox -s lock`), and `machine` (the machine's readiness, for `nox -s machine`).

Exit status: 0 every run measured; 1 a cell failed (stored as failed); 2 bad input or a refusal (wrong
interpreter, missing load generator, taken port, too little disk space, the machine busy with --no-wait), with
one line, before any server starts; 3 the results' disk filled up (one line names the file and the measured
runs that could not be stored; every file stored before is intact); 130 Ctrl-C and 143 SIGTERM (or the
caller gone), after the server and the load are stopped. A session holds the machine lock from start to end.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import signal
import sys
from pathlib import Path

from gilfree.core.arguments import (
    OneLineParser,
    bind_address,
    count,
    duration,
    existing_file,
    interpreter_path,
    port,
    rate,
    repeat,
    seed,
    width,
    writable_dir,
)
from gilfree.guard import HARNESS_ERRORS
from gilfree.report import compare, render
from gilfree.run import environments, machine_lock, readiness, runner
from gilfree.run.child import DEFAULT_BIND, ServerError, ensure_port_free, stop_left_behind
from gilfree.run.hosts import LoadHost, LocalHost
from gilfree.run.loadgen import LOADGENS
from gilfree.run.processes import exit_with_caller, split_cpus
from gilfree.run.remote import SshHost, valid_destination
from gilfree.run.rounds import MIN_ROUNDS, AutoRepeat
from gilfree.run.server import DEFAULT_PORT
from gilfree.study import results, schema, studies


def destination(text: str) -> str:
    if not valid_destination(text):
        raise argparse.ArgumentTypeError(
            f"invalid --loadgen-host {text!r}: give [user@]host as ssh takes it, such as bench@10.0.0.2"
        )
    return text


def run_arguments(run: argparse.ArgumentParser, python_required: bool) -> None:
    """The options of `run`; `prepare` takes the same, its interpreters not yet built."""
    run.add_argument("session", help="which part of which study (a nox session name: `nox -l` lists them)")
    run.add_argument(
        "--study",
        type=studies.study_file,
        metavar="FILE",
        help="the study file the session is in (default: the one in studies/ that has it)",
    )
    run.add_argument(
        "--python",
        required=python_required,
        action="append",
        metavar="[[APP:]VARIANT=]PATH",
        help="the interpreter of the environment under test; VARIANT=PATH once per variant in the "
        "sessions of several variants (asgi, wsgi), APP:VARIANT=PATH in those of several apps",
    )
    run.add_argument("--duration", type=duration, help="load duration per cell (default: the study's; the post's 30s)")
    run.add_argument(
        "--loadgen",
        choices=LOADGENS,
        help="load generator (default: the study's; rewrk, the post's, where it names none)",
    )
    run.add_argument("--port", type=port, default=DEFAULT_PORT, help=f"server port (default {DEFAULT_PORT})")
    run.add_argument("--results-dir", type=writable_dir, help="default: the study's (results/ for the post's)")
    run.add_argument(
        "--profile",
        help="the study's profile the environments were installed from, whose locks "
        "they must hold (default: GILFREE_PROFILE, else the study's first)",
    )
    run.add_argument("--table", help="run only this table of the session")
    run.add_argument(
        "--repeat",
        type=repeat,
        help="rounds (runs per cell; tables show the median), or auto: rounds until every compared "
        "interval is settled (default: the study's, else 1)",
    )
    run.add_argument("--max-rounds", type=count, help="--repeat auto: the most rounds (default 10)")
    run.add_argument(
        "--target-width",
        type=width,
        help="--repeat auto: how wide an interval may be, high over low less 1 (default 0.10: half "
        "the ±10%% on-par band)",
    )
    run.add_argument(
        "--budget",
        type=duration,
        help="--repeat auto: no round starts that would end past this time (default: none but --max-rounds)",
    )
    run.add_argument(
        "--order-seed",
        type=seed,
        help="the seed each round's order is shuffled by (default: a new one per session, recorded)",
    )
    run.add_argument("--warmup", type=duration, default=0, help="load before each measured run (default none)")
    run.add_argument(
        "--pin", type=count, metavar="N", help="pin the load generator to the last N CPUs and the server to the others"
    )
    run.add_argument(
        "--rate",
        type=rate,
        metavar="RPS",
        help="open loop: offer this many requests per second, whatever the answers (--loadgen oha); "
        "default: closed loop, as the post",
    )
    run.add_argument(
        "--bind",
        type=bind_address,
        default=DEFAULT_BIND,
        help=f"the one address Granian listens on (default {DEFAULT_BIND}); another is never chosen for you",
    )
    run.add_argument(
        "--loadgen-host",
        type=destination,
        metavar="[USER@]HOST",
        help="run the load generator on this host through ssh (needs --bind with an address it reaches)",
    )
    run.add_argument("--ssh-identity", type=existing_file, metavar="FILE", help="ssh's -i for --loadgen-host")
    run.add_argument(
        "--ssh-known-hosts", metavar="FILE", help="ssh's UserKnownHostsFile for --loadgen-host (default: ssh's own)"
    )
    run.add_argument(
        "--ssh-accept-new",
        action="store_true",
        help="trust the load host's key the first time it is seen (default: only known keys)",
    )
    run.add_argument(
        "--metrics",
        action="store_true",
        help="Granian's own counters per run: GIL wait, blocking pool, requests handled (Granian 2.7.0 "
        "and later; a study or table may ask with `metrics = true`)",
    )
    run.add_argument("--keep-going", action="store_true", help="go on to the next cell after a failed one")
    run.add_argument("--force", action="store_true", help="re-run cells whose results are already stored")
    run.add_argument(
        "--no-wait",
        action="store_true",
        help="refuse (exit 2) instead of waiting when another session holds the machine",
    )


def parser() -> argparse.ArgumentParser:
    main = OneLineParser(prog="gilfree", description=__doc__.splitlines()[0])
    commands = main.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    run_arguments(commands.add_parser("run", help="run one session's cells and render the tables"), True)
    run_arguments(
        commands.add_parser(
            "prepare",
            help="check a session's options and install its load generator, "
            "before any environment is built (the noxfile's first step)",
        ),
        False,
    )
    tables = commands.add_parser("tables", help="re-render the Markdown tables from the raw JSON")
    tables.add_argument(
        "--study", type=studies.study_file, metavar="FILE", help="default: the post's, studies/article.toml"
    )
    tables.add_argument("--results-dir", type=writable_dir, help="default: the study's")
    report = commands.add_parser(
        "compare",
        help="write COMPARISON.md and charts: the answer, every ratio with its "
        "interval and outcome, the study's claims; with several "
        "--results-dir, MACHINES.md: each machine's side by side",
    )
    report.add_argument(
        "--study", type=studies.study_file, metavar="FILE", help="default: the post's, studies/article.toml"
    )
    report.add_argument(
        "--results-dir",
        type=writable_dir,
        action="append",
        metavar="DIR",
        help="default: the study's; give it again for each other machine's results folder",
    )
    report.add_argument(
        "--out",
        type=writable_dir,
        metavar="DIR",
        help="where MACHINES.md goes, with several --results-dir (default: the first)",
    )
    lock = commands.add_parser("lock", help="lock a study's apps with hashes, under its profile (uv pip compile)")
    lock.add_argument("study", type=studies.study_file, metavar="FILE", nargs="?", default=str(schema.ARTICLE_FILE))
    lock.add_argument("--profile", help="default: GILFREE_PROFILE, else the study's first")
    machine = commands.add_parser(
        "machine",
        help="the machine's readiness to measure, item by item, with the "
        "command that fixes each item that makes ratios drift",
    )
    machine.add_argument(
        "--pin", type=count, metavar="N", help="check the split --pin N would make against the SMT siblings"
    )
    machine.add_argument("--json", action="store_true", help="print the reading as the records store it")
    return main


def interpreters_by_variant(session: studies.Session, given: list[str]) -> dict[tuple[str, str], str]:
    """(app, variant) -> interpreter. `--python PATH` for a session of one app and one variant; VARIANT=PATH for
    one app; APP:VARIANT=PATH for several."""
    apps, variants = session.apps, session.variants
    wanted = [(app, variant) for app in apps for variant in variants]
    if len(given) == 1 and "=" not in given[0] and len(wanted) == 1:
        return {wanted[0]: interpreter_path(given[0])}
    pythons = {}
    for item in given:
        name, _, path = item.partition("=") if "=" in item else ("", "", item)
        app, _, variant = name.rpartition(":")
        pythons[app or (apps[0] if len(apps) == 1 else ""), variant] = interpreter_path(path)
    if len(pythons) != len(given) or set(pythons) != set(wanted):
        form = " ".join(f"--python {app + ':' if len(apps) > 1 else ''}{variant}=PATH" for app, variant in wanted)
        raise ValueError(
            f"session {session.name!r} needs one interpreter per "
            f"{'app and ' if len(apps) > 1 else ''}variant, as {form}; got {' '.join(given)}"
        )
    return pythons


def options_from(args: argparse.Namespace) -> runner.Options:
    """Check what argparse cannot check alone; a ValueError is a refusal."""
    session = studies.find_session(args.session, args.study.path if args.study else None)
    args.loadgen = args.loadgen or session.study.loadgen
    if args.rate is not None and not LOADGENS[args.loadgen].open_loop:
        open_loop = ", ".join(name for name, tool in LOADGENS.items() if tool.open_loop)
        raise ValueError(
            f"--rate {args.rate:.10g} needs an open-loop load generator, and {args.loadgen} runs a closed "
            f"loop only: add --loadgen {open_loop}"
        )
    if args.table and args.table not in session.tables:
        raise ValueError(
            f"table {args.table!r} is not part of session {session.name!r} (its tables: {', '.join(session.tables)})"
        )
    options = runner.Options(
        bind=args.bind,
        load_host=load_host(args),
        session=session,
        pythons=interpreters_by_variant(session, args.python) if args.python else {},
        duration_s=args.duration or session.study.duration_s,
        loadgen=args.loadgen,
        results_dir=args.results_dir or writable_dir(str(session.study.results_dir)),
        port=args.port,
        keep_going=args.keep_going,
        force=args.force,
        table=args.table,
        profile=args.profile,
        warmup_s=args.warmup,
        pin=args.pin,
        rate=args.rate,
        metrics=args.metrics,
        **rounds_from(args, session),
    )
    options.profile_name  # noqa: B018 -- refuses a profile the study lacks
    for app in session.apps:
        options.lock(app)  # refuses an app without a lock
    options.settings  # noqa: B018 -- refuses a --pin this machine cannot honour
    options.cells  # noqa: B018 -- refuses CPU points this machine cannot give
    return options


def rounds_from(args: argparse.Namespace, session: studies.Session) -> dict:
    """--repeat N, or --repeat auto with its rule; the study's repeat where none is given."""
    repeat = args.repeat or session.study.repeat
    given = [name for name in ("max_rounds", "target_width", "budget") if getattr(args, name) is not None]
    if repeat != "auto" and given:
        raise ValueError(f"--{given[0].replace('_', '-')} is for --repeat auto; add that, or leave it out")
    chosen = {} if args.order_seed is None else {"order_seed": args.order_seed}
    if repeat != "auto":
        return chosen | {"repeat": repeat}
    comparison = session.study.comparison
    if comparison is None:  # every study read from its file has one
        raise ValueError(f"study {session.study.name} has no comparison, whose band --repeat auto needs")
    defaults = AutoRepeat()
    rule = AutoRepeat(
        target_width=args.target_width or defaults.target_width,
        band=comparison.band,
        max_rounds=args.max_rounds or defaults.max_rounds,
        budget_s=args.budget,
    )
    if rule.max_rounds < MIN_ROUNDS:
        raise ValueError(
            f"--max-rounds {rule.max_rounds} is below the {MIN_ROUNDS} rounds an interval needs; give "
            f"at least {MIN_ROUNDS}"
        )
    return chosen | {"repeat": MIN_ROUNDS, "auto": rule}


def load_host(args: argparse.Namespace) -> LoadHost:
    """Where the load generator runs; refuses what makes no sense with (or without) a remote one."""
    ssh_options = [name for name in ("ssh_identity", "ssh_known_hosts", "ssh_accept_new") if getattr(args, name)]
    if not args.loadgen_host:
        if ssh_options:
            raise ValueError(
                f"--{ssh_options[0].replace('_', '-')} is for --loadgen-host; give that too, or leave it out"
            )
        return LocalHost()
    if ipaddress.ip_address(args.bind).is_loopback:
        raise ValueError(
            f"--loadgen-host {args.loadgen_host} cannot reach this machine's loopback address "
            f"{args.bind}; give --bind with this machine's address on a network that host reaches"
        )
    if args.pin:
        raise ValueError(
            f"--pin places the load generator on this machine's CPUs, but with --loadgen-host it runs on "
            f"{args.loadgen_host}; leave --pin out"
        )
    known_hosts = Path(args.ssh_known_hosts).resolve() if args.ssh_known_hosts else None
    return SshHost(args.loadgen_host, args.ssh_identity, known_hosts, args.ssh_accept_new)


def prepare(args: argparse.Namespace) -> int:
    """What a session can refuse before its environments are built (its options, its CPU points, its locks, its
    port); then its load generator, installed where its host can (LoadHost.prepare)."""
    try:
        options = options_from(args)
        ensure_port_free(options.port, options.bind)
    except (ValueError, argparse.ArgumentTypeError, ServerError) as refusal:
        print(f"gilfree: error: {refusal}", file=sys.stderr)
        return 2
    return options.load_host.prepare(options.loadgen)


def show_machine(args: argparse.Namespace) -> int:
    """Print the machine's readiness, as a session reads it at its start; it changes nothing on the system."""
    try:
        pinnings = [split_cpus(args.pin)] if args.pin else []
    except ValueError as refusal:
        print(f"gilfree: error: {refusal}", file=sys.stderr)
        return 2
    ready = readiness.read(pinnings=pinnings)
    if args.json:
        print(json.dumps(ready.as_dict(), indent=2))
    else:
        print(f"Machine readiness, read from /sys, /proc and psutil at {ready.read_at} (gilfree changes nothing):")
        print(ready.text())
    return 0


def _value_options(main: argparse.ArgumentParser) -> set[str]:
    """Every option, in every subcommand, that takes a value."""
    commands = next(a for a in main._actions if isinstance(a, argparse._SubParsersAction)).choices.values()
    return {
        option
        for command in commands
        for action in command._actions
        if action.nargs != 0
        for option in action.option_strings
    }


def _attach_values(argv: list[str], value_options: set[str]) -> list[str]:
    """`--duration -5s` as `--duration=-5s`, so argparse judges the value instead of calling it an option."""
    attached, values = [], iter(argv)
    for arg in values:
        if arg in value_options:
            arg = f"{arg}={next(values, '')}"
        attached.append(arg)
    return attached


def run_then_render(options: runner.Options) -> int:
    """Run the session, then re-render its tables from what is stored, an interrupted session included; a
    session refused before any run writes nothing."""
    plan = runner.prepare(options)
    status = 1  # what an interrupted run leaves: its exception goes on once the tables are written
    try:
        status = runner.run(plan)
    finally:
        status = render_tables(options, status)
    return status


def render_tables(options: runner.Options, status: int) -> int:
    """Re-render the tables (after every record is stored: they are optional); a full disk keeps the records."""
    try:
        written = render.write_all(options.results_dir, options.study)
    except results.StorageFull as full:
        if status != runner.EXIT_STORAGE_FULL:
            runner.say(f"error: {full}; the tables were not re-rendered: run `nox -s tables` once there is space")
        return runner.EXIT_STORAGE_FULL
    runner.say(f"tables written: {', '.join(str(path) for path in written)}")
    return status


def _terminate(signum, frame):
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    main_parser = parser()
    args = main_parser.parse_args(_attach_values(sys.argv[1:] if argv is None else argv, _value_options(main_parser)))
    if args.command == "lock":
        try:
            return environments.lock(args.study, args.profile)
        except schema.StudyError as error:
            print(f"gilfree: error: {error}", file=sys.stderr)
            return 2
    if args.command in ("tables", "compare"):
        chosen = args.study or studies.article()
        folders = (args.results_dir if args.command == "compare" else [args.results_dir]) or [None]
        folders = [folder or writable_dir(str(chosen.results_dir)) for folder in folders]
        if getattr(args, "out", None) and len(folders) == 1:
            print(
                "gilfree: error: --out is for MACHINES.md, with several --results-dir; COMPARISON.md goes into "
                "the one results folder",
                file=sys.stderr,
            )
            return 2
        results_dir = getattr(args, "out", None) or folders[0]
        try:
            with results.full_disk_refused(results_dir):  # a folder the reports make, say
                written = (
                    render.write_all(results_dir, chosen)
                    if args.command == "tables"
                    else compare.write_report(results_dir, chosen)
                    if len(folders) == 1
                    else compare.write_machines(folders, chosen, results_dir)
                )
            print("\n".join(str(path) for path in written))
        except ValueError as unreadable:
            print(f"gilfree: error: {unreadable}", file=sys.stderr)
            return 2
        except results.StorageFull as full:
            print(f"gilfree: error: {full}", file=sys.stderr)
            return runner.EXIT_STORAGE_FULL
        return 0
    if args.command == "prepare":
        return prepare(args)
    if args.command == "machine":
        return show_machine(args)
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even where a parent shell ignored it
    exit_with_caller(runner.say)
    try:
        options = options_from(args)
    except (ValueError, argparse.ArgumentTypeError) as refusal:
        print(f"gilfree: error: {refusal}", file=sys.stderr)
        return 2
    try:
        with machine_lock.held(options.session.name, wait=not args.no_wait, say=runner.say):
            stop_left_behind(runner.say)
            ensure_port_free(options.port, options.bind)
            return run_then_render(options)
    except HARNESS_ERRORS as error:
        print(f"gilfree: error: {error}", file=sys.stderr)
        return 2
    except results.StorageFull as full:  # before any run: setting a stored result aside, say
        print(f"gilfree: error: {full}", file=sys.stderr)
        return runner.EXIT_STORAGE_FULL
    except ValueError as unreadable:  # a stored result the tables cannot read; what was measured is stored
        print(f"gilfree: error: {unreadable}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gilfree: interrupted; the servers are stopped and finished cells are kept", file=sys.stderr)
        return 130
    except SystemExit as terminated:
        if terminated.code == 128 + signal.SIGTERM:
            print("gilfree: terminated; the servers are stopped and finished cells are kept", file=sys.stderr)
        raise


if __name__ == "__main__":
    sys.exit(main())
