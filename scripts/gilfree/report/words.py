"""The words for the typed values the verdicts and the comparison give: names of cells and ratios, bands, and
one sentence per kind of reason. Every report that shows a verdict or an outcome takes its words from here."""

from __future__ import annotations

from gilfree.report import verdicts
from gilfree.report.outcomes import Finding, Outcome, Straddles, TooFewRuns
from gilfree.report.verdicts import (
    BuildsDiffer,
    CpuBound,
    DoubtfulRow,
    Estimate,
    Flag,
    Missing,
    NoSuchCells,
    NotAlike,
    NotRecorded,
    TooFewCores,
)
from gilfree.study.claims import Band, Ratio
from gilfree.study.figures import FIGURES
from gilfree.study.instruments import OPTIMISATION_FLAGS, Stop
from gilfree.study.studies import Cell

ENDPOINT_NAMES = {"json": "JSON", "io": "I/O"}


def endpoint_name(endpoint: str) -> str:
    """The post's names for its endpoints (JSON, I/O); any other endpoint by its own name."""
    return ENDPOINT_NAMES.get(endpoint, endpoint)


def figure_name(figure: str) -> str:
    return FIGURES[figure].words


def condition_value(name: str, value) -> str:
    if value is None:
        return "none"
    if name.endswith("_s"):
        return f"{value}s"
    if name == "lock":
        return value[:12]
    if name == "load_generator":  # its version is the tool's own first line, which often names it already
        tool, version = str(value.get("name") or "?"), str(value.get("version") or "?")
        return version if version.startswith(tool) else f"{tool} {version}"
    return str(value)


def difference_text(name: str, values: list) -> str:
    """One condition that differs, in short: 'loadgen wrk vs rewrk'."""
    shown = dict.fromkeys(condition_value(name, value) for value in values)
    return f"{name.removesuffix('_s').replace('_', ' ')} {' vs '.join(shown)}"


def setting_text(setting: str, value) -> str:
    """A setting's value as a ratio's name shows it: w2, t64, c128, JSON."""
    if setting == "endpoint":
        return endpoint_name(value)
    short = {
        "workers": "w",
        "blocking_threads": "t",
        "concurrency": "c",
        "runtime_threads": "rth",
        "runtime_mode": "rt",
    }
    if setting == "cpus":
        return f"{value} CPUs"
    if setting == "blocking_threads" and value is None:
        return "t default"
    return f"{short.get(setting, '')}{value}"


def pair_name(ratio: Ratio) -> str:
    """The ratio's cells by what tells them apart: 'JSON w1', and 'I/O w1 t128/t1' where the ratio divides
    other settings than the variant."""
    named = " ".join(setting_text(s, getattr(ratio.over, s)) for s in ratio.named if s not in ratio.compared)
    if ratio.compared == ("variant",):
        return named
    over, under = (
        " ".join(setting_text(s, getattr(cell, s)) for s in ratio.compared) for cell in (ratio.over, ratio.under)
    )
    return f"{named} {over}/{under}".strip()


def ratio_name(ratio: Ratio, pss: bool = False) -> str:
    return f"{'PSS' if pss else figure_name(ratio.figure)} {pair_name(ratio)}"


def cell_name(cell: Cell) -> str:
    threads = (
        f", {cell.blocking_threads} thread{'s' if cell.blocking_threads > 1 else ''}" if cell.blocking_threads else ""
    )
    return f"{cell.variant} /{cell.endpoint} {cell.workers} worker{'s' if cell.workers > 1 else ''}{threads}"


def band_text(band: Band) -> str:
    if band.low <= 0:
        return f"≤ {band.high:.2f}"
    return f"≥ {band.low:.2f}" if band.high == float("inf") else f"{band.low:.2f}-{band.high:.2f}"


def runs_text(runs: int) -> str:
    return "single run" if runs == 1 else f"{runs} runs"


def value_text(estimate: Estimate) -> str:
    interval = f" [{estimate.interval[0]:.2f}, {estimate.interval[1]:.2f}]" if estimate.interval else ""
    rss = f" (summed RSS {estimate.summed_rss:.2f})" if estimate.on_pss else ""
    return f"{estimate.value:.2f}{interval}{rss}"


def build_text(optimisations: dict[str, bool] | None) -> str:
    if optimisations is None:
        return "build flags unknown (not recorded by this harness version)"
    return ", ".join(f"{name.upper()} {'yes' if optimisations.get(name) else 'no'}" for name in OPTIMISATION_FLAGS)


def flag_text(flag: Flag) -> str:
    return f"{flag.kind.label} ({flag.value:.3g}; from {flag.limit:.3g})"


def selector_text(selector: dict) -> str:
    return "{" + ", ".join(f"{key} = {value!r}" for key, value in selector.items()) + "}"


def reason_text(reason) -> str:
    match reason:
        case Missing(cells, sessions):
            runs = (
                f"{' or '.join(f'`nox -s {s}`' for s in sessions)} measures {'them' if len(cells) > 1 else 'it'}"
                if sessions
                else "no session of the study runs them"
            )
            return f"not measured (not run, or failed): {', '.join(cell_name(c) for c in cells)}; {runs}."
        case NoSuchCells(group):
            return (
                f"not measured: no cell of the study matches cells {selector_text(group.cells)} with over "
                f"{selector_text(group.over)} and under {selector_text(group.under)}."
            )
        case NotRecorded(ratio):
            return f"{ratio_name(ratio)}: not recorded in every run of both rows ({FIGURES[ratio.figure].missing_why})."
        case NotAlike(differences):
            phrases = "; ".join(difference_text(name, values) for name, values in differences)
            return f"the rows were measured under different conditions: {phrases}."
        case BuildsDiffer(ratio, over, under):
            return (
                f"{ratio_name(ratio)}: {ratio.over.variant} was built with {build_text(over)}, "
                f"{ratio.under.variant} with {build_text(under)}: the ratio would measure the builds."
            )
        case CpuBound(ratio, cell, efficiency, needed):
            return (
                f"{ratio_name(ratio)}: {cell_name(cell)} reached {efficiency:.0%} of the ideal "
                f"{verdicts.ideal_io_rps(cell, ratio.io_wait_s):.0f} RPS (needs {needed:.0%}): CPU-bound, so the "
                f"row measured CPU, not I/O waiting."
            )
        case TooFewCores(ratio, available, needed):
            return (
                f"{ratio_name(ratio)}: needs ≥ {needed:.1f} free cores for the server to show it; this run had "
                f"{available:.1f}."
            )
        case DoubtfulRow(ratio, cell, flag):
            return f"{ratio_name(ratio)}: {cell_name(cell)} had {flag_text(flag)}."
        case TooFewRuns(runs, needed):
            return f"{runs_text(runs)} per cell: an interval needs {needed}."
        case Straddles(interval, band):
            return f"the interval [{interval[0]:.2f}, {interval[1]:.2f}] straddles the band's edge ({band_text(band)})."
    raise TypeError(f"no text for {reason!r}")


# Why can't-tell, in a word or two, for the answer's counts.
REASON_WORDS = {
    TooFewRuns: "too few runs",
    Straddles: "interval straddles the band",
    DoubtfulRow: "doubtful rows",
    NotAlike: "rows not measured alike",
    BuildsDiffer: "builds differ",
    Missing: "cells not run or failed",
    NotRecorded: "not recorded",
}


def outcome_text(finding: Finding) -> str:
    """'faster by 41%', 'on par', "can't tell", 'not measured'."""
    if finding.outcome in (Outcome.BETTER, Outcome.WORSE):
        above, below = FIGURES[finding.ratio.figure].directions
        return f"{above if finding.change > 0 else below} by {abs(finding.change):.0%}"
    return finding.outcome.value


def percent_interval(interval: tuple[float, float]) -> str:
    return f"{interval[0] - 1:+.0%} to {interval[1] - 1:+.0%}"


def stop_text(stopped_by: str | None) -> str:
    """Why --repeat auto stopped, from a record's rounds.stopped_by (None: the session was interrupted)."""
    return next((stop.sentence for stop in Stop if stop.key == stopped_by), "it was interrupted")
