"""Markdown tables that mirror the post's, rendered from the raw JSON only (re-rendering runs nothing)."""

from __future__ import annotations

import os
from pathlib import Path

from tabulate import tabulate

from gilfree.core import stats, warnings
from gilfree.core.warnings import WarningKind
from gilfree.report import charts, scaling, scaling_report, words
from gilfree.report.words import difference_text, endpoint_name
from gilfree.study import ceiling, readiness, results
from gilfree.study.figures import BY_COLUMN, COUNTED, PUBLISHED_COLUMNS
from gilfree.study.instruments import PERCENTILES, SAMPLE_INTERVAL_S
from gilfree.study.published import Figures
from gilfree.study.record import Record
from gilfree.study.studies import Cell, Study, Table

SETTING_HEADERS = {
    "python": "Python",
    "workers": "Workers",
    "threads": "Threads",
    "endpoint": "Endpoint",
    "loop": "Loop",
    "runtime_mode": "Runtime mode",
    "runtime_threads": "Runtime threads",
    "cpus": "Server CPUs",
    "concurrency": "Connections",
}
HEADERS = SETTING_HEADERS | {column: figure.header for column, figure in BY_COLUMN.items()}
FOOTNOTE = """\
- RPS: requests per second as the load generator reports it over its window; Latency avg / max: its mean and
  maximum response time.
- CPU: mean cores used by the server's whole process tree (Granian's main process, its workers and all their
  threads) over the load window: growth of user+system CPU seconds divided by wall time, sampled with psutil.
- RAM: peak of the tree's summed resident set size (RSS) during the load, in MiB (2^20 bytes), sampled every
  {interval}s; memory shared between processes counts once per process.
- Python: the interpreter that really ran. A label other than the post's (3.14, 3.14t) marks a stand-in.
- GIL wait, Blocking busy (where the table asks for Granian's counters): the share of the blocking threads' busy
  time they spent waiting for the GIL before running Python (Granian's py_wait over its blocking busy time; 0 on
  a free-threaded build), and the share of their time they were busy (busy time over blocking threads x the
  load's duration, the thread count as Granian reports it after the load), summed over the workers (the median
  over the runs); "not counted" where the runs had no counters, "no blocking time" where the threads never ran.
- Loop, Runtime mode: as Granian resolved them; `auto (uvloop)` is Granian's `auto` picking uvloop, which its
  loop registry does when uvloop imports and rloop does not.
- RSS still growing: a least-squares line through the RSS samples of the second half of the load rises by more
  than {growth:.0%} over that half (the median over the runs): memory that keeps climbing under a steady load
  (a leak, or a garbage collector falling behind), not memory that the concurrency needs.
- The load generator may have set this pace: the row's RPS is at {ceiling:.0%} or more of what the same load
  generator pushed, at the same concurrency on this machine, against nginx answering the same JSON
  (`nox -s calibrate`).
- Outlier: a run whose RPS lies more than {outlier:.0f} robust standard deviations (1.4826 x the median absolute
  deviation) from the cell's median, as hyperfine judges them. Drift: from {drift_runs} runs, the RPS of the
  first third of the runs (2 at least, in the order measured) against the last third's, noted where a t-test on
  their logarithms puts the change beyond the noise within them (p < {significance}) and it exceeds
  {change:.0%}.
- With several runs per cell (--repeat), every figure is the median of the runs, figure by figure; RPS range
  gives the lowest and highest run (every run is kept in the JSON), the relative standard deviation of the runs
  (RSD: their standard deviation over their mean; noted above {rsd:.0%}) and, from 3 runs, a 95% Student t
  interval for the geometric mean RPS, on the logarithms (wide with few runs: with 3, the t quantile is 4.3)."""
PERCENTILE_FOOTNOTE = """\
- p50 ... p99.9: latency percentiles as the load generator reports them (after the post's columns, which it
  did not report); n/a where the tool gives none: rewrk (the rows of its --pct table are means of its slowest
  requests, not percentiles) and, for p99.9, hey."""


def published_cells(post: Figures | None) -> dict[str, str]:
    """A source's row as the tables print one: 30415, 4.20ms, 0.42, 90MiB (CPU and RAM where it has them; RAM in
    MiB as the legend says, the post's own "MB" included, since it does not say which it meant)."""
    cells = {}
    for figure in PUBLISHED_COLUMNS:
        value = getattr(post, figure.published) if post else None
        cells[figure.column] = "not published" if value is None else figure.text(value * figure.published_unit)
    return cells


def _figures(record: Record) -> dict[str, str]:
    cells = {
        column: "not recorded" if (value := figure.of(record)) is None else figure.text(value)
        for column, figure in BY_COLUMN.items()
        if column not in COUNTED
    }
    return cells | counted(record)


def counted(record: Record) -> dict[str, str]:
    """Granian's own counters, as shares of the blocking threads' time."""
    if not (record.granian or {}).get("counted_runs"):
        return dict.fromkeys(COUNTED, "not counted")
    return {
        column: "no blocking time" if (value := BY_COLUMN[column].of(record)) is None else BY_COLUMN[column].text(value)
        for column in COUNTED
    }


def _resolved(configured: str | None, resolved: str | None) -> str:
    """A setting as the study gave it, and what Granian made of it where that differs."""
    shown = configured or "default"
    return shown if resolved in (None, configured) else f"{shown} ({resolved})"


def growth_note(growth: stats.RssGrowth | None) -> list[str]:
    if growth is None or not growth.still_growing:
        return []
    return [
        f"RSS still growing: {growth.relative:+.1%} over the last half of the load, fitted "
        f"({growth.bytes_per_s / 2**20:+.2f} MiB/s; limit {stats.RSS_GROWTH_LIMIT:.0%})"
    ]


def ceiling_note(check: stats.CeilingCheck, generator: str) -> list[str]:
    if not check.near_ceiling:
        return []
    return [
        f"the load generator, not the server, may have set this pace: RPS at {check.share:.0%} of "
        f"{generator}'s ceiling here ({check.ceiling_rps:.0f} against nginx; limit {stats.CEILING_SHARE:.0%})"
    ]


def ceiling_line(records: list[Record], calibrations: list[dict]) -> str:
    """Which ceilings the measured rows were checked against, and for which the check was not made."""
    ceilings = {(r.generator, r.cell.concurrency): r.ceiling_rps for r in records if r.ok}
    checked = [
        f"{name} at c={concurrency}: {rps:.0f} RPS"
        for (name, concurrency), rps in sorted(ceilings.items())
        if rps is not None
    ]
    unchecked = sorted({name for (name, _), rps in ceilings.items() if rps is None})
    missing = [f"c={concurrency}" for (_, concurrency), rps in sorted(ceilings.items()) if rps is None]
    parts = [f"Load generator ceiling (against nginx, this machine): {'; '.join(checked)}."] if checked else []
    if checked and (doubts := ceiling.doubts([r for r in records if r.ok], calibrations)):
        parts.append(
            f"That calibration has {len(doubts)} warning(s), so its ceiling may be low: "
            f"{doubts[0].message}{'; ...' if len(doubts) > 1 else ''} (all in the calibration's JSON)."
        )
    if missing:
        parts.append(
            f"**Load generator ceiling not checked** for {', '.join(unchecked)} at {', '.join(missing)}: "
            "no calibration of that load generator, version, machine and pinning is stored (run `nox -s "
            f"calibrate -- --loadgen {unchecked[0]}`), so nothing says whether it set the pace."
        )
    return " ".join(parts)


# Warnings a row's notes leave out: the errors have a note of their own (below), and the machine's readiness is
# the machine's, shown once under each table and in full in its own section.
ROW_NOTED_ELSEWHERE = (WarningKind.LOAD_ERRORS, WarningKind.MACHINE_NOT_READY)


def _notes(record: dict) -> list[str]:
    notes = []
    if record.status == "failed":
        notes.append("FAILED: " + (record.failure or "no reason stored").splitlines()[0])
    if record.status == "incomplete":
        notes.append(f"{len(record.ok_runs)} of {record.settings.repeat} runs")
    notes += [warning.message for warning in warnings.read(record.warnings) if warning.kind not in ROW_NOTED_ELSEWHERE]
    load = record.load
    if load and load.errors:
        notes.append(f"{load.errors} errors")
    if load and load.non_2xx:
        notes.append(f"{load.non_2xx} non-2xx")
    if record.interpreter.stand_in:
        notes.append(f"CPython {record.interpreter.version} stands in for {record.cell.variant}")
    if record.ok and load and record.resources:
        notes += growth_note(record.resources.growth)
        notes += ceiling_note(stats.CeilingCheck(load.rps, record.ceiling_rps), record.generator)
    return notes


def row(table: Table, cell: Cell, record: Record | None) -> tuple[list[str], list[str]]:
    """The cells of one row, and its notes; a measured record carries its ceiling (ceiling.with_ceilings)."""
    ran = (record.granian if record else None) or {}
    identity = {
        "python": record.interpreter.shown if record else cell.variant,
        "workers": str(cell.workers),
        "threads": "default" if cell.blocking_threads is None else str(cell.blocking_threads),
        "endpoint": endpoint_name(cell.endpoint),
        "loop": _resolved(cell.loop, ran.get("loop")),
        "runtime_mode": _resolved(cell.runtime_mode, ran.get("runtime_mode")),
        "runtime_threads": str(cell.runtime_threads or "default"),
        "cpus": str(cell.cpus or "all"),
        "concurrency": str(cell.concurrency),
    }
    if record is None:
        figures, notes = dict.fromkeys(BY_COLUMN, "not run"), []
    elif record.ok:
        figures, notes = _figures(record), _notes(record)
    else:
        figures, notes = dict.fromkeys(BY_COLUMN, record.status), _notes(record)
    values = {**identity, **figures}
    return [values[column] for column in table.columns], notes


def _percentile_cells(record: Record | None) -> list[str]:
    """p50 ... p99.9 of a row, in the post's latency format; n/a where the load generator gives none."""
    if record is None or not record.ok or not record.load:
        return [record.status if record else "not run"] * len(PERCENTILES)
    values = [record.load.percentile_ms(q) for q in PERCENTILES]
    return ["n/a" if value is None else f"{value:.2f}ms" for value in values]


def _rps_range(record: Record | None) -> str:
    """min-max of RPS over the runs and their relative standard deviation, for a row that is a median of several;
    from 3 runs, the 95% interval of the geometric mean as well (stats.mean_interval)."""
    if not record or not record.ok or len(record.ok_runs) < 2 or not record.spread:
        return ""
    rps = record.spread["rps"]
    interval = stats.mean_interval([run.load.rps for run in record.ok_runs if run.load])
    mean = f", geometric mean 95% CI {interval[0]:.0f}-{interval[1]:.0f}" if interval else ""
    return f"{rps['min']:.0f}-{rps['max']:.0f} (n={len(record.ok_runs)}, RSD {rps['rsd']:.1%}{mean})"


def condition_differences(records: list[Record]) -> list[str]:
    """What differs between the records' conditions, one short phrase per condition: 'loadgen wrk vs rewrk'."""
    return [difference_text(name, values) for name, values in results.condition_differences(records)]


def _python(record: Record) -> str:
    interpreter = record.interpreter
    return f"CPython {interpreter.version}{' free-threaded' if interpreter.free_threaded_build else ''}"


def setups(records: list[Record]) -> str:
    """Load generator, duration and machine of the records: 'wrk 3s on AMD EPYC (2 logical cores)', and
    where the load came from when it crossed a network."""
    return "; ".join(
        sorted(
            {
                f"{r.settings.loadgen} {r.settings.duration_s:g}s on "
                f"{r.machine.cpu_model if r.machine else '?'} ({r.machine.logical_cores if r.machine else '?'} "
                "logical cores)"
                f"{_load_host(r)}"
                for r in records
            }
        )
    )


def _load_host(record: Record) -> str:
    host = record.settings.loadgen_host
    if not host:
        return ""
    there = (record.load_generator.machine if record.load_generator else None) or {}
    return (
        f", the load sent across the network from {host} ({there.get('cpu_model') or 'unknown CPU'}, "
        f"{there.get('logical_cores') or 'unknown'} logical cores) to {record.settings.bind}"
    )


def _measured_with(records: list[Record]) -> str:
    """The conditions the rows share, the interpreters (which differ by design), and a loud mark when the
    conditions do not match."""
    if not records:
        return "Nothing measured yet."
    granians = sorted({r.interpreter.packages.get("granian", "?") for r in records})
    pythons = sorted({_python(r) for r in records})
    differences = condition_differences(records)
    mixed = f" **Rows were measured under different settings: {'; '.join(differences)}.**" if differences else ""
    return (
        f"Measured with: {setups(records)}, Granian {', '.join(granians)}. Interpreters: {'; '.join(pythons)}.{mixed}"
    )


NOT_RECORDED = "not recorded (measured by a harness older than the readiness check)"


def _readings(records: list[Record]) -> tuple[list[tuple[readiness.Readiness, list[str]]], list[str]]:
    """The records' machine readiness, one per session (as read at its start, with the throttling of all its
    runs), each with the tables it measured; and the tables of records that hold none (older schemas)."""
    sessions: dict[str, tuple[list[readiness.Readiness], list[str]]] = {}
    unrecorded = []
    for record in records:
        stored = record.machine.readiness if record.machine else None
        if stored is None:
            unrecorded.append(record.cell.table)
            continue
        read, tables = sessions.setdefault(stored["read_at"], ([], []))
        read.append(readiness.Readiness.from_dict(stored))
        tables.append(record.cell.table)
    return (
        [(readiness.merged(read), list(dict.fromkeys(tables))) for _, (read, tables) in sorted(sessions.items())],
        list(dict.fromkeys(unrecorded)),
    )


def readiness_line(records: list[Record]) -> str:
    """One line under a table: what of the machine's state could make its ratios drift, what could not be read."""
    readings, unrecorded = _readings(records)
    if not readings:
        return f"Machine readiness: {NOT_RECORDED}." if unrecorded else ""
    warned = dict.fromkeys(item.title for reading, _ in readings for item in reading.with_status(readiness.Status.WARN))
    unknown = dict.fromkeys(
        item.title for reading, _ in readings for item in reading.with_status(readiness.Status.UNKNOWN)
    )
    parts = [
        f"could make ratios drift: {', '.join(warned)}" if warned else "nothing read makes ratios drift",
        *([f"cannot be read on this machine: {', '.join(unknown)}"] if unknown else []),
        *([f"{NOT_RECORDED} for some rows"] if unrecorded else []),
    ]
    return f"Machine readiness at the session's start ({'; '.join(parts)}): see the machine's state."


def _cell(text: str) -> str:
    return text.replace("|", "\\|")  # a pipe, even in a code span, would end a Markdown table's cell


def readiness_section(records: list[Record], heading: str = "##") -> str:
    """The machine's state as each session read it at its start (`nox -s machine` reads it now): item, status,
    what was read, and the fix of each item that makes ratios drift; "not recorded" for older records."""
    readings, unrecorded = _readings(records)
    if not readings and not unrecorded:
        return ""
    lines = [f"{heading} The machine's state", ""]
    for reading, tables in readings:
        rows = [
            [
                item.title,
                f"**{item.status.value}**" if item.status is readiness.Status.WARN else item.status.value,
                _cell(item.read),
                _cell(item.fix) if item.fix and item.status is readiness.Status.WARN else "",
            ]
            for item in reading.items
        ]
        lines += [
            f"Read at {reading.read_at}, at the start of the session that measured {', '.join(tables)} "
            f"(unknown: this machine does not expose the item):",
            "",
            tabulate(rows, headers=["Item", "Status", "Read", "Fix"], tablefmt="github", disable_numparse=True),
            "",
        ]
    if unrecorded:
        lines += [f"Machine readiness of {', '.join(unrecorded)}: {NOT_RECORDED}.", ""]
    return "\n".join(lines)


def _executable_named(command: list[str]) -> str:
    """A stored command with its executable shortened to its name (granian, not /long/venv/bin/granian)."""
    return " ".join([os.path.basename(command[0]), *command[1:]])


def _this_run(records: list[Record]) -> str:
    commands = next((r.commands for r in records if r.commands), None)
    if not commands:
        return ""
    return (
        f"\nThis run's commands: `{_executable_named(commands['server'])}` / "
        f"`{_executable_named(commands['load'])}`.{_rounds_line(records)}\n"
    )


def _rounds_line(records: list[Record]) -> str:
    """How the session chose its rounds and their order (records before rounds were recorded: nothing)."""
    chosen = next((r.rounds for r in records if r.rounds), None)
    if chosen is None:
        return ""
    order = f" Each round's order was shuffled (seed {chosen['order_seed']})."
    rule = chosen["auto"]
    if rule is None:
        return order
    widths = [w for w in (chosen["widths"] or {}).values() if w is not None]
    widest = f"; widest interval {max(widths):.1%}" if widths else ""
    stop = words.stop_text(chosen["stopped_by"])
    return (
        f" --repeat auto: {chosen['rounds_run']} round(s), stopped because {stop} (target width "
        f"{rule['target_width']:.0%}, on-par band ±{rule['band']:.0%}, at most {rule['max_rounds']} rounds"
        f"{widest}).{order}"
    )


def _source_commands(table: Table, study: Study) -> list[str]:
    """The commands the study's source printed for this table, where it has them."""
    if not table.post_command:
        return []
    load = f", loaded by `{study.post_load_command}`" if study.post_load_command else ""
    return [f"The post's commands: `{table.post_command}`{load}."]


def _with_percentiles(records: list[Record]) -> bool:
    return any(record.load and record.load.percentile_ms("50") is not None for record in records)


def legend(records: list[Record]) -> str:
    """What the columns mean; the percentiles' explanation where some record has them."""
    interval = next((r.resources.interval_s for r in records if r.resources and r.resources.interval_s), None)
    interval = interval or SAMPLE_INTERVAL_S
    percentiles = _with_percentiles(records)
    return FOOTNOTE.format(
        interval=interval,
        growth=stats.RSS_GROWTH_LIMIT,
        ceiling=stats.CEILING_SHARE,
        rsd=stats.RSD_LIMIT,
        outlier=stats.OUTLIER_ROBUST_SDS,
        drift_runs=stats.MIN_RUNS_FOR_DRIFT,
        significance=stats.DRIFT_SIGNIFICANCE,
        change=stats.DRIFT_MIN_CHANGE,
    ) + ("\n" + PERCENTILE_FOOTNOTE if percentiles else "")


def table_markdown(
    table: Table,
    study: Study,
    stored: dict[tuple[str, str], Record],
    calibrations: list[dict] = (),
    with_legend: bool = True,
) -> str:
    """One table; with_legend adds the column legend (TABLES.md gives it once, after all six)."""
    rows, notes, present = [], [], []
    for cell in table.cells:
        record = stored.get((table.id, cell.key))
        cells, row_notes = row(table, cell, record)
        if record:
            present.append(record)
        rows.append(cells + ["; ".join(row_notes)])
        notes.append(row_notes)
    headers = [HEADERS[column] for column in table.columns]
    if any(len(record.ok_runs) > 1 for record in present):
        at = table.columns.index("rps") + 1
        headers.insert(at, "RPS range")
        for cells, cell in zip(rows, table.cells):
            cells.insert(at, _rps_range(stored.get((table.id, cell.key))))
    with_percentiles = _with_percentiles(present)
    if with_percentiles:
        headers += [f"p{q}" for q in PERCENTILES]
        for cells, cell in zip(rows, table.cells):
            cells[-1:-1] = _percentile_cells(stored.get((table.id, cell.key)))
    if not any(notes):
        rows = [cells[:-1] for cells in rows]
    else:
        headers.append("Notes")
    return "\n".join(
        [
            f"## Table {table.number}: {table.title}",
            "",
            *_source_commands(table, study),
            _this_run(present),
            tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True),
            "",
            _measured_with(present),
            "",
            *([line, ""] if (line := readiness_line(present)) else []),
            *([line, ""] if (line := ceiling_line(present, calibrations)) else []),
            *([section] if with_legend and (section := readiness_section(present, "###")) else []),
            *([legend(present), ""] if with_legend else []),
        ]
    )


def write_all(results_dir: Path, study: Study) -> list[Path]:
    """Write one Markdown file per table of the study and TABLES.md with all of them, in the study's order."""
    calibrations = ceiling.load_all(results_dir)
    stored = ceiling.with_ceilings(results.load(results_dir), calibrations)
    out = results_dir / "tables"
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for table in study.tables:
        path = out / f"{table.id}.md"
        results.write_text_atomic(path, table_markdown(table, study, stored, calibrations))
        written.append(path)
    everything = results_dir / "TABLES.md"
    sections = [table_markdown(table, study, stored, calibrations, with_legend=False) for table in study.tables]
    results.write_text_atomic(
        everything,
        f"# {study.title}: the tables, as measured here\n\n"
        + "\n".join(sections)
        + "\n"
        + (readiness_section(list(stored.values())) or "")
        + "\n## Columns\n\n"
        + legend(list(stored.values()))
        + "\n",
    )
    return [everything, *written, *write_scaling(results_dir, study, stored)]


def write_scaling(results_dir: Path, study: Study, stored: dict[tuple[str, str], Record]) -> list[Path]:
    """SCALING.md and its two charts, for a study whose cells give the server several numbers of CPUs."""
    cells = [cell for table in study.tables for cell in table.cells if cell.cpus is not None]
    if len({cell.cpus for cell in cells}) < 2:
        return []
    records = [stored[cell.table, cell.key] for cell in cells if (cell.table, cell.key) in stored]
    if not records:
        return []
    comparison = study.comparison
    baseline = str(comparison.baseline) if comparison.setting == "variant" else None
    analysis = scaling.analyse(records, sorted({r.cell.cpus for r in records if r.cell.cpus}), study.variants, baseline)
    return [
        scaling_report.write(results_dir / "SCALING.md", analysis),
        charts.scaling_rps(results_dir / "charts", analysis),
        charts.scaling_memory(results_dir / "charts", analysis),
    ]
