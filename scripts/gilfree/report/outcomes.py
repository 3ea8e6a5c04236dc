"""The comparison any study gets with no claims written: for every group of cells that differ in the study's
compared setting only (study/claims.Comparison), each figure of each cell over its baseline's, with one plain
outcome and, where it cannot be given, the typed reason.

Faster or slower (better or worse) only where the whole interval lies outside the on-par band; on par only
where the whole interval lies inside it (an equivalence test, not "no difference found"); can't tell
otherwise. Nothing here makes a sentence: answers.py does.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from enum import Enum

from gilfree.core import stats
from gilfree.report import verdicts
from gilfree.report.verdicts import Estimate, Missing, NotRecorded
from gilfree.study.claims import Band, Ratio, Verdict, named_settings, on_par
from gilfree.study.figures import COMPARED
from gilfree.study.record import Record
from gilfree.study.studies import Cell, Study

ANSWERED = ("rps", "latency_p99", "cpu_per_1k", "pss")  # the answer's figures; pss falls back to rss


class Outcome(Enum):
    BETTER = "better"
    WORSE = "worse"
    ON_PAR = "on par"
    CANT_TELL = "can't tell"
    NOT_MEASURED = "not measured"


@dataclass(frozen=True)
class TooFewRuns:
    runs: int
    needed: int = stats.MIN_RUNS_FOR_INTERVAL


@dataclass(frozen=True)
class Straddles:
    """The interval reaches both inside and outside the on-par band: more runs, or a quieter machine, may tell."""

    interval: tuple[float, float]
    band: Band


@dataclass(frozen=True)
class Finding:
    """One figure of one cell over its baseline's, and what it shows."""

    ratio: Ratio
    outcome: Outcome
    estimate: Estimate | None = None
    reasons: tuple = ()

    @property
    def change(self) -> float | None:
        return None if self.estimate is None else self.estimate.value - 1


def pairs(study: Study) -> list[tuple[Cell, Cell]]:
    return study.comparison.pairs(cell for table in study.tables for cell in table.cells)


def uncompared(study: Study) -> list[Cell]:
    """The cells in no pair: their group lacks the baseline value (or holds only them)."""
    paired = {cell for pair in pairs(study) for cell in pair}
    return [cell for table in study.tables for cell in table.cells if cell not in paired]


def ratios(study: Study, figure: str) -> list[Ratio]:
    """Each pair's ratio of the figure, named by the settings that tell the pairs of its table apart."""
    found, setting = pairs(study), study.comparison.setting
    named = {
        table.id: named_settings(
            [cell for pair in found for cell in pair if cell.table == table.id], leaving_out=(setting,)
        )
        for table in study.tables
    }
    return [
        Ratio(over, under, figure, on_par(study.comparison.band), named[over.table], (setting,))
        for over, under in found
    ]


def judge(study: Study, ratio: Ratio, records: dict[Cell, Record]) -> Finding:
    """The ratio's outcome on the measured records (verdicts.measured)."""
    if missing := tuple(cell for cell in (ratio.over, ratio.under) if cell not in records):
        return Finding(
            ratio, Outcome.NOT_MEASURED, reasons=(Missing(missing, verdicts.sessions_measuring(study, missing)),)
        )
    if reasons := verdicts.incomparable((ratio,), records):
        return Finding(ratio, Outcome.CANT_TELL, reasons=reasons)
    estimate = verdicts.estimate(ratio, records[ratio.over], records[ratio.under])
    if estimate is None:
        return Finding(ratio, Outcome.NOT_MEASURED, reasons=(NotRecorded(ratio),))
    if estimate.interval is None:
        return Finding(ratio, Outcome.CANT_TELL, estimate, (TooFewRuns(estimate.runs), *estimate.reasons))
    if estimate.outcome == Verdict.INCONCLUSIVE:
        return Finding(
            ratio, Outcome.CANT_TELL, estimate, estimate.reasons or (Straddles(estimate.interval, ratio.band),)
        )
    if estimate.outcome == Verdict.HELD:
        return Finding(ratio, Outcome.ON_PAR, estimate)
    better = (estimate.value > 1) == ratio.higher_is_better
    return Finding(ratio, Outcome.BETTER if better else Outcome.WORSE, estimate)


def findings(study: Study, stored: dict[tuple[str, str], Record]) -> dict[str, list[Finding]]:
    """Every figure's findings, by figure, in the study's order."""
    records = verdicts.measured(stored)
    return {figure: [judge(study, ratio, records) for ratio in ratios(study, figure)] for figure in COMPARED}


@dataclass(frozen=True)
class Tally:
    """One figure's outcomes for one compared value against the baseline, for the answer."""

    figure: str
    value: str | int
    counts: dict[Outcome, int]
    largest: dict[Outcome, Finding]  # the largest change of each of BETTER and WORSE
    why: dict[Outcome, dict[type, int]]  # the reasons behind the can't-tells and the not-measured, by kind

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def tallies(study: Study, found: dict[str, list[Finding]]) -> list[Tally]:
    """The answer's figures, per compared value: how many configurations came out each way, and the largest."""
    setting = study.comparison.setting
    answered = [("rss" if figure == "pss" and not _any_measured(found["pss"]) else figure) for figure in ANSWERED]
    out = []
    for value in dict.fromkeys(getattr(f.ratio.over, setting) for f in found["rps"]):
        for figure in answered:
            these = [f for f in found[figure] if getattr(f.ratio.over, setting) == value]
            counts = {outcome: sum(f.outcome == outcome for f in these) for outcome in Outcome}
            largest = {
                outcome: max(chosen, key=lambda f: abs(f.change))
                for outcome in (Outcome.BETTER, Outcome.WORSE)
                if (chosen := [f for f in these if f.outcome == outcome])
            }
            why: dict[Outcome, dict[type, int]] = {Outcome.CANT_TELL: {}, Outcome.NOT_MEASURED: {}}
            for finding in (f for f in these if f.outcome in why):
                for kind in dict.fromkeys(type(reason) for reason in finding.reasons):
                    why[finding.outcome][kind] = why[finding.outcome].get(kind, 0) + 1
            out.append(Tally(figure, value, counts, largest, why))
    return out


def _any_measured(found: list[Finding]) -> bool:
    return any(f.outcome != Outcome.NOT_MEASURED for f in found)


@dataclass(frozen=True)
class Best:
    """The measured cell with the most RPS for one app, endpoint and compared value; and, where the study sets a
    p99 budget, the one with the most RPS among those within it (None: none was, or no p99 was recorded)."""

    app: str
    endpoint: str
    value: str | int
    cell: Cell
    rps: float
    within_budget: Cell | None
    within_budget_rps: float | None
    p99_known: bool


def _rps(record: Record) -> float:
    return statistics.geometric_mean([run.load.rps for run in record.ok_runs if run.load])


def _p99(record: Record) -> float | None:
    return record.load.percentile_ms("99") if record.load else None


def best(study: Study, stored: dict[tuple[str, str], Record]) -> list[Best]:
    setting, budget = study.comparison.setting, study.comparison.p99_budget_ms
    records = verdicts.measured(stored)
    groups: dict[tuple, list[Cell]] = {}
    for cell in (cell for table in study.tables for cell in table.cells if cell in records):
        groups.setdefault((cell.app, cell.endpoint, getattr(cell, setting)), []).append(cell)
    out = []
    for (app, endpoint, value), cells in groups.items():
        top = max(cells, key=lambda cell: _rps(records[cell]))
        known = [cell for cell in cells if _p99(records[cell]) is not None]
        within = [cell for cell in known if budget is not None and _p99(records[cell]) <= budget]
        chosen = max(within, key=lambda cell: _rps(records[cell]), default=None)
        out.append(
            Best(
                app,
                endpoint,
                value,
                top,
                _rps(records[top]),
                chosen,
                _rps(records[chosen]) if chosen else None,
                bool(known),
            )
        )
    return out
