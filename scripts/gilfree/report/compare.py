"""COMPARISON.md for any study: the answer and every comparison (answers.py), one verdict per claim the study
makes (decided in verdicts.py, only formatted here) with footnotes and the ratio chart; for a study that
transcribes its source (the post's), whether this machine can test it and the source's rows beside this run's;
and diagnostics. MACHINES.md: several results folders of one study side by side.

Absolute numbers move with the hardware, so outcomes and verdicts judge ratios only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tabulate import tabulate

from gilfree.core import stats
from gilfree.report import answers, charts, outcomes, render, verdicts
from gilfree.report.answers import Machine
from gilfree.report.outcomes import Straddles
from gilfree.report.verdicts import (
    LITTLE_TOLERANCE,
    STALL_LIMIT,
    ClaimVerdict,
    CpuBound,
    Estimate,
    TooFewCores,
    Verdict,
)
from gilfree.report.words import (
    band_text,
    build_text,
    figure_name,
    flag_text,
    ratio_name,
    reason_text,
    runs_text,
    value_text,
)
from gilfree.study import ceiling, results
from gilfree.study.figures import FIGURES, PUBLISHED_COLUMNS, PUBLISHED_RATIOS
from gilfree.study.instruments import LOADGEN_THREADS
from gilfree.study.published import Figures, source_figures
from gilfree.study.record import Record
from gilfree.study.studies import Cell, Study, Table

ONE_THREAD = " and ".join(sorted(name for name, threads in LOADGEN_THREADS.items() if threads == 1))  # "rewrk and wrk"
RULES = f"""\
- Intervals: with {stats.MIN_RUNS_FOR_INTERVAL} or more runs per cell, a {stats.CONFIDENCE:.0%} Student t interval for
  the ratio of the geometric means over runs, on the logarithms: on the round-by-round ratios where the session
  interleaved the runs in pairs, else Welch's t on each cell's runs. Held: the interval lies inside the band;
  not held: outside it; inconclusive: it straddles an edge. With 3 runs the t quantile is 4.3, so the interval
  is wide: three runs on a noisy machine rarely settle a 10% band. With fewer than 3 runs there is no interval,
  the claim is judged on the one value, and the verdict says "single run" or "2 runs".
- Memory: where it was recorded, judged on PSS at the end of the load, which splits the pages Granian's
  processes share; the post's RAM is peak RSS summed over the processes, which counts them once per process
  and so inflates multi-process 3.14 against 3.14t (workers as threads). The summed-RSS ratio is shown beside.
- A ratio that needs I/O efficiency is judged only on rows reaching that share of the ideal throughput (slots /
  the endpoint's wait). A ratio that needs cores counts a "not held" only when the server could have had them
  (the machine's logical CPUs less the load generator's use, or its pinned CPUs); a "held" stands anywhere.
- Rows: a load generator at {stats.LOADGEN_SATURATED_CORES:.0%} or more of its threads' cores ({ONE_THREAD} run
  one; the others are not judged), {STALL_LIMIT:.0%} or more of the connections stalled (Little's law: RPS x mean
  latency against the connections), load errors or non-2xx answers make every verdict resting on the row
  inconclusive.
- Comparable: a ratio is only judged between rows measured alike (same settings but port and runs, profile,
  lock, machine and load generator) on interpreters built with the same optimisations (PGO, LTO, JIT);
  otherwise "not comparable"."""


def tolerances(study: Study) -> str:
    """Each claim's bands and why, from the study file, then the rules every verdict follows."""
    claims = []
    for claim in study.claims:
        bands = ", ".join(dict.fromkeys(f"{figure_name(r.figure)} {band_text(r.band)}" for r in claim.ratios))
        claims.append(f"- {claim.text}: {bands or 'no ratio'}." + (f" {claim.why}" if claim.why else ""))
    return "\n".join(claims) + "\n" + RULES


@dataclass(frozen=True)
class Side:
    """One side of the per-table comparison: figures by cell, the interpreter that produced each, and the
    stored record behind each (none for the post's, whose rows count as measured alike)."""

    figures: dict[Cell, Figures]
    labels: dict[Cell, str]
    records: dict[Cell, Record] = field(default_factory=dict)

    def not_alike(self, cells: list[Cell]) -> list[str]:
        return render.condition_differences([self.records[cell] for cell in cells if cell in self.records])


def post_side(study: Study) -> Side:
    cells = [cell for table in study.tables for cell in table.cells]
    published = source_figures(study)
    return Side(
        {cell: published[(cell.table, cell.key)] for cell in cells if (cell.table, cell.key) in published},
        {cell: cell.variant for cell in cells},
    )


def measured_figures(record: Record) -> Figures:
    """A measured row in the source's terms (its units: the post's RAM in MB), to set beside the source's."""
    return Figures(
        **{
            figure.published: None if (value := figure.of(record)) is None else value / figure.published_unit
            for figure in PUBLISHED_COLUMNS
        }
    )


def measured_side(stored: dict[tuple[str, str], Record]) -> Side:
    """This run's cells that were measured; failed ones are left out, as if not run."""
    ok = verdicts.measured(stored)
    return Side(
        {cell: measured_figures(record) for cell, record in ok.items()},
        {cell: record.interpreter.shown for cell, record in ok.items()},
        ok,
    )


# --- can this machine test the post? --------------------------------------------------------------------


def _distinct(values, none: str = "-") -> str:
    return ", ".join(dict.fromkeys(str(value) for value in values)) or none


def _range(values: list[float], digits: int = 1) -> str:
    if not values:
        return "unknown"
    low, high = min(values), max(values)
    return f"{low:.{digits}f}" if round(low, digits) == round(high, digits) else f"{low:.{digits}f}-{high:.{digits}f}"


def _interpreters(records: list[Record], variant: str) -> str:
    return _distinct(
        [
            f"CPython {r.interpreter.version}{'t' if r.interpreter.free_threaded_build else ''}"
            f" ({r.interpreter.label}), {build_text(r.interpreter.optimisations)}"
            for r in records
            if r.cell.variant == variant
        ],
        none="not run",
    )


def _runs(records: list[Record]) -> str:
    counts = sorted({len(record.ok_runs) for record in records})
    return "-".join(str(n) for n in (counts[0], counts[-1]) if n) if len(counts) > 1 else str(counts[0])


def _builds_warning(study: Study, records: list[Record]) -> str:
    if len(study.variants) != 2:
        return ""
    gil, threaded = study.variants
    builds = {
        variant: {
            build_text(r.interpreter.optimisations)
            for r in records
            if r.cell.variant == variant and r.interpreter.optimisations
        }
        for variant in study.variants
    }
    interpreters = {
        variant: [r.interpreter for r in records if r.cell.variant == variant] for variant in study.variants
    }
    if any(results.builds_differ(one, other) for one in interpreters[gil] for other in interpreters[threaded]):
        return (
            f"\n**WARNING: {gil} and {threaded} were built with different optimisations ({gil}: "
            f"{'; '.join(sorted(builds[gil]))}; {threaded}: {'; '.join(sorted(builds[threaded]))}). Every "
            f"{threaded} / {gil} ratio measures the builds as much as free-threading; those verdicts are not "
            f"comparable.**\n"
        )
    return ""


def machine_section(study: Study, stored: dict[tuple[str, str], Record], judged: list[ClaimVerdict]) -> str:
    records = list(verdicts.measured(stored).values())
    if not records:
        return "## Can this machine test the post?\n\nNothing measured yet.\n"
    cores = [c for r in records if (c := verdicts.server_cores(r)) is not None]
    post_setup = study.post_setup
    rows = [
        ["CPU", post_setup["cpu_model"], _distinct(r.machine.cpu_model for r in records if r.machine)],
        [
            "Cores: physical / logical",
            f"{post_setup['physical_cores']} / {post_setup['logical_cores']}",
            _distinct(f"{r.machine.physical_cores} / {r.machine.logical_cores}" for r in records if r.machine),
        ],
        [
            "Cores the server could have had",
            "up to 16, less the load generator's (not stated)",
            f"{_range(cores)} (logical CPUs less the load generator's use, or the pinned set)",
        ],
        [
            "Load generator",
            post_setup["load_generator"],
            _distinct((r.load_generator.version if r.load_generator else None) or r.settings.loadgen for r in records),
        ],
        [
            "Duration per run",
            f"{post_setup['duration_s']}s",
            _distinct(f"{r.settings.duration_s}s" for r in records),
        ],
        ["Runs per cell", str(post_setup["runs_per_cell"]), _runs(records)],
        *[
            [f"Python {variant}", post_setup["pythons"][variant], _interpreters(records, variant)]
            for variant in study.variants
        ],
    ]
    return "\n".join(
        [
            "## Can this machine test the post?",
            "",
            tabulate(rows, headers=["", "Post", "This run"], tablefmt="github", disable_numparse=True),
            "",
            render.readiness_section(records, "###"),
            _builds_warning(study, records),
            bigger_machine(judged),
            "",
        ]
    )


def bigger_machine(judged: list[ClaimVerdict]) -> str:
    """Ratio by ratio, the verdicts this machine cannot give, and how much more it would take."""
    lines = []
    for judgement in judged:
        for estimate in judgement.estimates:
            where = f"- {judgement.claim.text} ({ratio_name(estimate.ratio)})"
            for reason in estimate.reasons:
                if isinstance(reason, TooFewCores):
                    lines.append(
                        f"{where}: needs ≥ {reason.needed:.1f} free cores for the server; this run had "
                        f"{reason.available:.1f}."
                    )
            if cpu_bound := [r for r in estimate.reasons if isinstance(r, CpuBound)]:
                reached = ", ".join(f"{r.cell.variant} {r.efficiency:.0%}" for r in cpu_bound)
                lines.append(
                    f"{where}: needs both rows at ≥ {cpu_bound[0].needed:.0%} of the ideal I/O throughput, "
                    f"which takes more free CPU than this run had; it reached {reached}."
                )
    if not lines:
        return "Every verdict below stands on this machine's cores."
    return "Verdicts that need a bigger machine:\n\n" + "\n".join(lines)


# --- verdicts -------------------------------------------------------------------------------------------


def estimate_notes(estimate: Estimate) -> list[str]:
    name = ratio_name(estimate.ratio, estimate.on_pss)
    notes = []
    if estimate.interval and estimate.outcome == Verdict.INCONCLUSIVE and not estimate.reasons:
        notes.append(f"{name}: {reason_text(Straddles(estimate.interval, estimate.ratio.band))}")
    if estimate.pairwise:
        notes.append(f"{name}: ratio round by round {', '.join(f'{r:.2f}' for r in estimate.pairwise)}.")
    return notes + [reason_text(reason) for reason in estimate.reasons]


def interleaved(study: Study) -> str:
    names = [f"`{name}`" for name, session in study.sessions.items() if len(session.variants) > 1]
    return f" (the interleaved sessions: {', '.join(names)})" if names else ""


def claim_notes(study: Study, judgement: ClaimVerdict) -> list[str]:
    notes = [reason_text(reason) for reason in judgement.reasons]
    if judgement.stand_ins:
        notes.append(f"measured on a stand-in ({', '.join(judgement.stand_ins)}), not the study's interpreter.")
    if judgement.runs is not None and judgement.runs < stats.MIN_RUNS_FOR_INTERVAL:
        notes.append(
            f"{runs_text(judgement.runs)} per cell, so no interval: on a noisy machine one run can "
            f"land anywhere in the spread. `--repeat 3` gives one{interleaved(study)}."
        )
    return notes + [note for estimate in judgement.estimates for note in estimate_notes(estimate)]


def verdict_text(judgement: ClaimVerdict) -> str:
    words = [judgement.verdict.value]
    if judgement.runs is not None and judgement.runs < stats.MIN_RUNS_FOR_INTERVAL:
        words.append(runs_text(judgement.runs))
    if judgement.stand_ins:
        words.append(f"stand-in {', '.join(judgement.stand_ins)}")
    return ", ".join(words)


def verdict_section(study: Study, judged: list[ClaimVerdict]) -> str:
    rows, notes = [], []
    with_post = any(verdicts.post_value(study, ratio) is not None for claim in study.claims for ratio in claim.ratios)
    for judgement in judged:
        estimates = {e.ratio: e for e in judgement.estimates}
        these_notes = claim_notes(study, judgement)
        if these_notes:
            notes.append(f"{len(notes) + 1}. **{judgement.claim.text}**: " + " ".join(these_notes))
        mark = f" [{len(notes)}]" if these_notes else ""
        for index, ratio in enumerate(judgement.claim.ratios):
            estimate = estimates.get(ratio)
            first = index == 0
            post = verdicts.post_value(study, ratio)
            rows.append(
                [
                    judgement.claim.text if first else "",
                    ratio_name(ratio, estimate and estimate.on_pss),
                    band_text(ratio.band),
                    *([f"{post:.2f}" if post else "-"] if with_post else []),
                    value_text(estimate) if estimate else "-",
                    str(estimate.runs) if estimate else "-",
                    estimate.outcome.value if estimate else "-",
                    f"**{verdict_text(judgement)}**{mark}" if first else "",
                ]
            )
        if not judgement.claim.ratios:
            rows.append(
                [
                    judgement.claim.text,
                    "-",
                    "-",
                    *(["-"] if with_post else []),
                    "-",
                    "-",
                    "-",
                    f"**{verdict_text(judgement)}**{mark}",
                ]
            )
    headers = [
        "Claim",
        "Ratio",
        "Band",
        *(["Post"] if with_post else []),
        "Yours [95% interval]",
        "Runs",
        "This ratio",
        "Verdict",
    ]
    table = tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)
    variants = f"{study.variants[-1]} / {study.variants[0]}"
    return "\n".join(
        [
            "## Verdicts",
            "",
            f"The study's claims. Ratios are {variants} unless the ratio names the settings it divides "
            f"(over/under). docs/reading-results.md explains each verdict word.",
            "",
            table,
            "",
            *notes,
            "",
            "![The claims' ratios, the source's beside yours, with each claim's band](charts/ratios.png)",
            "",
            "Bands, intervals and preconditions, and why:",
            "",
            tolerances(study),
            "",
        ]
    )


def claims_chart(results_dir: Path, study: Study, judged: list[ClaimVerdict]) -> Path:
    rows = []
    for judgement in judged:
        estimates = {e.ratio: e for e in judgement.estimates}
        for ratio in judgement.claim.ratios:
            estimate = estimates.get(ratio)
            rows.append(
                charts.RatioRow(
                    f"{judgement.claim.text.split(':')[0]}: {ratio_name(ratio, estimate and estimate.on_pss)}",
                    ratio.band.low,
                    ratio.band.high,
                    verdicts.post_value(study, ratio),
                    estimate.value if estimate else None,
                    estimate.interval if estimate else None,
                )
            )
    return charts.draw_ratios(
        results_dir / "charts" / "ratios.png",
        rows,
        "The ratios behind the study's claims",
        "ratio (as each claim names it), log scale",
    )


def post_values(study: Study, table: Table, cell: Cell) -> list[str]:
    """The source's row as printed; "not published" in the figures of a row it gives none for."""
    figures = source_figures(study).get((cell.table, cell.key))
    formats = render.published_cells(figures)
    cells, _ = render.row(table, cell, None)
    return [formats.get(column, value) for column, value in zip(table.columns, cells)]


def rows_section(study: Study, table: Table, stored: dict[tuple[str, str], Record]) -> str:
    rows = []
    for cell in table.cells:
        cells, notes = render.row(table, cell, stored.get((table.id, cell.key)))
        posted = post_values(study, table, cell)
        rows.append([*posted[:2], "post", *posted[2:], ""])
        rows.append([*cells[:2], "yours", *cells[2:], "; ".join(notes)])
    headers = (
        [render.HEADERS[c] for c in table.columns[:2]]
        + ["Source"]
        + [render.HEADERS[c] for c in table.columns[2:]]
        + ["Notes"]
    )
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def ratio_text(gil: Cell, threaded: Cell, field: str, side: Side) -> str:
    if gil not in side.figures or threaded not in side.figures:
        return "-"
    if reasons := side.not_alike([gil, threaded]):
        return f"n/c ({'; '.join(reasons)})"
    ratio = getattr(side.figures[threaded], field) / getattr(side.figures[gil], field)
    labels = (side.labels[threaded], side.labels[gil])
    return f"{ratio:.2f}" + ("" if labels == (threaded.variant, gil.variant) else f" ({labels[0]} / {labels[1]})")


def p99_ratio_text(gil: Cell, threaded: Cell, yours: Side) -> str:
    """The 3.14t / 3.14 ratio of p99 latency (the post gives none): beside the ratio of averages."""
    if gil not in yours.records or threaded not in yours.records:
        return "-"
    p99s = [FIGURES["latency_p99"].of(yours.records[cell]) for cell in (threaded, gil)]
    return "unknown (no percentiles from this load generator)" if None in p99s else f"{p99s[0] / p99s[1]:.2f}"


def ratios_section(study: Study, table: Table, post: Side, yours: Side) -> str:
    headers = (
        ["Workers"]
        + [f"{figure.header} {side}" for figure in PUBLISHED_RATIOS for side in ("post", "yours")]
        + ["Latency p99 yours"]
    )
    rows = [
        [gil.workers]
        + [ratio_text(gil, threaded, figure.published, side) for figure in PUBLISHED_RATIOS for side in (post, yours)]
        + [p99_ratio_text(gil, threaded, yours)]
        for gil, threaded in table.variant_pairs(*study.variants)
    ]
    return (
        f"{study.variants[-1]} / {study.variants[0]}, per worker count, of the median figures (RAM: peak summed RSS); the verdicts use the "
        "mean over runs, and PSS where recorded:\n\n"
        + tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)
    )


def timeline_links(table: Table, stored: dict[tuple[str, str], Record], results_dir: Path) -> str:
    """Links to the RSS timelines drawn for this table's cells (both variants on one chart)."""
    paths = dict.fromkeys(
        charts.timeline_path(results_dir, cell) for cell in table.cells if (table.id, cell.key) in stored
    )
    links = [f"[{path.stem}]({path.relative_to(results_dir)})" for path in paths if path.exists()]
    return f"RSS and CPU over the load, both variants: {', '.join(links)}." if links else ""


def table_section(
    study: Study, table: Table, stored: dict[tuple[str, str], Record], post: Side, yours: Side, results_dir: Path
) -> str:
    parts = [
        f"## Table {table.number}: {table.title}",
        f"![Table {table.number}](charts/{table.id}.png)",
        rows_section(study, table, stored),
    ]
    if "cpu" in table.columns and len(study.variants) == 2:
        parts += [ratios_section(study, table, post, yours), timeline_links(table, stored, results_dir)]
    return "\n\n".join(part for part in parts if part) + "\n"


def mebibytes(size: float | None) -> str:
    return "unknown" if size is None else f"{size / 2**20:.0f} MiB"


def diagnostic_row(study: Study, table: Table, cell: Cell, record: Record, memory: bool, counted: bool) -> list[str]:
    """One measured row's diagnostics; with memory, its peak summed RSS beside its PSS at the end of the load;
    with counted, Granian's GIL-wait share and blocking utilisation."""
    load, usage = record.load, record.resources
    assert load and usage, "a measured row has its load and resources"
    post, wait = source_figures(study).get((cell.table, cell.key)), study.io_wait_s(cell)
    post_efficiency = f"{verdicts.io_efficiency(cell, post.rps, wait):.0%}" if post and wait else "n/a"
    post_in_flight = f"{verdicts.in_flight(post.rps, post.latency_avg_ms):.1f}" if post else "n/a"
    efficiency = f"{verdicts.io_efficiency(cell, load.rps, wait):.0%} ({post_efficiency})" if wait else ""
    threads = cell.blocking_threads or "default"
    cores = verdicts.server_cores(record)
    sizes = [mebibytes(usage.peak_rss_bytes), mebibytes(usage.end_pss_bytes)] if memory else []
    return [
        str(table.number),
        record.interpreter.shown,
        f"/{cell.endpoint}, workers {cell.workers}, threads {threads}",
        str(cell.concurrency),
        f"{verdicts.in_flight(load.rps, load.latency_avg_ms):.1f} ({post_in_flight})",
        efficiency,
        "unknown" if load.loadgen_cpu_cores is None else f"{load.loadgen_cpu_cores:.2f}",
        "unknown" if cores is None else f"{cores:.1f}",
        "unknown" if load.errors is None else str(load.errors),
        "unknown" if load.non_2xx is None else str(load.non_2xx),
        *sizes,
        *(render.counted(record).values() if counted else []),
        "; ".join(flag_text(flag) for flag in verdicts.row_flags(cell, record)),
    ]


def diagnostics_section(study: Study, stored: dict[tuple[str, str], Record]) -> str:
    measured = [
        (table, cell, record)
        for table in study.tables
        for cell in table.cells
        if (record := stored.get((table.id, cell.key))) and record.ok
    ]
    memory = any(record.resources and "end_pss_bytes" in record.resources.model_fields_set for *_, record in measured)
    counted = any((record.granian or {}).get("counted_runs") for _, _, record in measured)
    rows = [diagnostic_row(study, table, cell, record, memory, counted) for table, cell, record in measured]
    headers = (
        [
            "Table",
            "Python",
            "Row",
            "Connections",
            "In flight (post)",
            "I/O efficiency (post)",
            "Load generator CPU",
            "Server cores",
            "Errors",
            "Non-2xx",
        ]
        + (["Peak RSS", "PSS at end"] if memory else [])
        + (["GIL wait", "Blocking busy"] if counted else [])
        + ["Flags"]
    )
    return "\n".join(
        [
            "## Diagnostics of the measured rows",
            "",
            "- In flight: RPS x latency avg (Little's law); in a closed loop it equals the connections. Fewer means",
            "  connections sat stalled (the post's 3.14 WSGI JSON rows, 27 s max latency, show 13 and 49);",
            "  more means the load generator's RPS and latency cannot both be right. Flagged from "
            f"{LITTLE_TOLERANCE:.0%}; from {STALL_LIMIT:.0%} it makes verdicts inconclusive.",
            "- I/O efficiency: RPS over the ideal for an endpoint that waits (its io_wait_ms), slots / wait, where slots are the",
            "  connections (ASGI) or min(connections, workers x blocking threads) (WSGI).",
            f"- Load generator CPU: cores used by the load generator. {ONE_THREAD} run one thread: near 1.0 they, not",
            "  the server, set the pace. Server cores: what the server could have had (logical CPUs less that, or",
            "  its pinned CPUs).",
            "- Peak RSS / PSS at end (where recorded): summed RSS counts pages shared between the server's processes",
            "  once per process; PSS splits them, so it compares one multi-process run with one multi-thread run fairly.",
            "- GIL wait / Blocking busy (runs with Granian's counters, `--metrics`): the share of the blocking threads'",
            "  busy time spent waiting for the GIL (the cause behind a 3.14 row), and the share of their time they were",
            "  busy, summed over the workers; a free-threaded row waits 0%.",
            "- Flags: what was measured, and where the flag starts. Near its ceiling: the row's RPS as a share of what",
            f"  the same load generator pushed against nginx here (`nox -s calibrate`), from {stats.CEILING_SHARE:.0%};",
            f"  RSS still growing: the fitted rise over the last half of the load, from {stats.RSS_GROWTH_LIMIT:.0%}.",
            "",
            tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)
            if rows
            else "Nothing measured yet.",
            "",
        ]
    )


def chart(results_dir: Path, study: Study, table: Table, stored: dict[tuple[str, str], Record], yours: Side) -> Path:
    names = []
    for cell in table.cells:
        record = stored.get((table.id, cell.key))
        ran = "not run" if record is None else "failed" if not record.ok else yours.labels[cell]
        leading = render.row(table, cell, None)[0][:2]
        names.append(", ".join(leading) + ("" if ran == cell.variant else f"\nyours: {ran}"))
    return charts.draw(
        results_dir / "charts" / f"{table.id}.png",
        table,
        names,
        [source_figures(study).get((table.id, cell.key)) for cell in table.cells],
        [yours.figures.get(cell) for cell in table.cells],
        ", ".join(render.HEADERS[column] for column in table.columns[:2]),
    )


def write_report(results_dir: Path, study: Study) -> list[Path]:
    """Write COMPARISON.md and its charts for any study: the answer, every comparison, the claims' verdicts where
    the study makes claims, and the source's rows beside this run's where the study transcribes them. Return
    their paths, the report first."""
    stored = stored_of(results_dir, study)
    found = outcomes.findings(study, stored)
    records = list(verdicts.measured(stored).values())
    judged = verdicts.judge_all(study, stored)
    post, yours = post_side(study), measured_side(stored)
    compared_chart = answers.ratio_chart(results_dir / "charts" / "compared-rps.png", study, found["rps"])
    chart_paths = (
        ([claims_chart(results_dir, study, judged)] if study.claims else [])
        + ([compared_chart] if compared_chart else [])
        + [chart(results_dir, study, table, stored, yours) for table in study.tables]
        + charts.write_timelines(results_dir, study, stored)
    )
    report = "\n".join(
        [
            f"# {study.title}: what this run shows",
            "",
            f"This run: {render.setups(list(stored.values())) or 'nothing measured yet'}. Absolute numbers move with the "
            f"hardware; the outcomes and verdicts rest on ratios only.",
            "",
            answers.answer_section(study, outcomes.tallies(study, found), outcomes.best(study, stored), records),
            machine_section(study, stored, judged) if study.post_setup else render.readiness_section(records),
            verdict_section(study, judged) if study.claims else "",
            answers.figures_section(study, found),
            "![RPS ratios with their 95% intervals and the on-par band](charts/compared-rps.png)\n"
            if compared_chart
            else "",
            *(
                table_section(study, table, stored, post, yours, results_dir)
                for table in study.tables
                if study.published
            ),
            diagnostics_section(study, stored),
        ]
    )
    path = results_dir / "COMPARISON.md"
    results.write_text_atomic(path, report)
    return [path, *chart_paths]


def stored_of(results_dir: Path, study: Study) -> dict[tuple[str, str], dict]:
    """The folder's records, each with the calibrated ceiling that applies to it; ValueError naming the folder
    when it holds results of cells the study does not have."""
    stored = ceiling.with_ceilings(results.load(results_dir), ceiling.load_all(results_dir))
    known = {(cell.table, cell.key) for table in study.tables for cell in table.cells}
    if stray := sorted(key for key in stored if key not in known):
        raise ValueError(
            f"{results_dir} holds results of another study (table {stray[0][0]!r}, cell {stray[0][1]}, "
            f"is not one of {study.path.name}'s): give --study the file it was run with"
        )
    return stored


def machine(results_dir: Path, study: Study) -> Machine:
    """One results folder, checked to be this study's and not empty."""
    stored = stored_of(results_dir, study)
    records = list(verdicts.measured(stored).values())
    if not records:
        raise ValueError(f"{results_dir} holds no measured cell of {study.path.name}: run the study there first")
    return Machine(
        results_dir, answers.machines_text(records), outcomes.findings(study, stored), verdicts.judge_all(study, stored)
    )


def write_machines(folders: list[Path], study: Study, out: Path) -> list[Path]:
    """MACHINES.md in `out`: every ratio, outcome and verdict of the study, one column per results folder."""
    path = out / "MACHINES.md"
    results.write_text_atomic(path, answers.machines_section(study, [machine(folder, study) for folder in folders]))
    return [path]
