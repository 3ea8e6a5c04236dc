"""What a run's evidence supports about each ratio a study claims or compares: the engine, for any study.

A claim (study/claims.py, written in the study file) rests on ratios, each with a band it must fall in. A ratio
is judged on its interval over the runs where there are enough, and only when the rows behind it could show
what the claim is about: an I/O row that was CPU-bound, a "not held" from a server that had fewer cores than
the claim needs, or a row the load itself makes doubtful gives "inconclusive", with the reason as a typed
value. Nothing here formats text for a reader: the reports do.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum

from gilfree.core import stats
from gilfree.study import results
from gilfree.study.claims import Claim, Ratio, Verdict
from gilfree.study.figures import FIGURES, memory_figure, positive
from gilfree.study.instruments import loadgen_threads
from gilfree.study.record import Interpreter, Record
from gilfree.study.schema import RatioSpec, free_threaded
from gilfree.study.studies import Cell, Study

LITTLE_TOLERANCE = 0.01  # rps x latency avg may miss the connections by this share (the post's sound rows)
STALL_LIMIT = 0.05  # stalled connections from this share on make a row's RPS doubtful (half the on-par band)


# --- what makes one measured row doubtful ---------------------------------------------------------------


class FlagKind(Enum):
    """Why a measured row is doubtful: (what it is, whether verdicts resting on the row become inconclusive)."""

    STALLED = ("stalled connections", True)
    FEW_STALLED = ("a few stalled connections", False)
    OVERFULL = ("more in flight than connections: RPS and latency disagree", False)
    LOADGEN_SATURATED = ("load generator saturated: likely the bottleneck", True)
    LOAD_ERRORS = ("load errors", True)
    NON_2XX = ("non-2xx answers", True)
    NEAR_CEILING = ("load generator near its calibrated ceiling: it, not the server, may have set the pace", True)
    RSS_GROWING = ("RSS still growing over the last half of the load", False)
    GIL_ENABLED = ("the GIL re-enabled in a free-threaded row: it measured a GIL build", True)

    def __init__(self, label: str, doubtful: bool):
        self.label, self.doubtful = label, doubtful


@dataclass(frozen=True)
class Flag:
    kind: FlagKind
    value: float  # what was measured: connections, cores or answers
    limit: float  # where the flag starts
    bias: float | None = None  # the most it can have lowered the row's RPS, as a share; None: no bound known


def in_flight(rps: float, latency_avg_ms: float) -> float:
    """Little's law: in a closed loop, requests per second x mean latency = connections busy on average."""
    return rps * latency_avg_ms / 1000


def stalled(cell: Cell, record: Record) -> Flag | None:
    missing = cell.concurrency - in_flight(record.load.rps, record.load.latency_avg_ms)
    for kind, share in ((FlagKind.STALLED, STALL_LIMIT), (FlagKind.FEW_STALLED, LITTLE_TOLERANCE)):
        if missing >= cell.concurrency * share:  # idle connections lower RPS by at most their share
            return Flag(kind, missing, cell.concurrency * share, missing / cell.concurrency)
    return None


def overfull(cell: Cell, record: Record) -> Flag | None:
    extra = in_flight(record.load.rps, record.load.latency_avg_ms) - cell.concurrency
    limit = cell.concurrency * LITTLE_TOLERANCE
    return Flag(FlagKind.OVERFULL, extra, limit) if extra > limit else None


def loadgen_saturated(cell: Cell, record: Record) -> Flag | None:
    """Only for a tool of a fixed thread count (rewrk, wrk: one); oha spreads over as many cores as it likes."""
    threads = loadgen_threads(record.load.generator)
    cores = record.load.loadgen_cpu_cores
    if not stats.loadgen_saturated(cores, threads):
        return None
    return Flag(FlagKind.LOADGEN_SATURATED, cores, stats.LOADGEN_SATURATED_CORES * threads)


def load_errors(cell: Cell, record: Record) -> Flag | None:
    errors = record.load.errors
    return Flag(FlagKind.LOAD_ERRORS, errors, 1) if errors else None


def non_2xx(cell: Cell, record: Record) -> Flag | None:
    answers = record.load.non_2xx  # None: the tool cannot tell (rewrk), which is not a fault
    return Flag(FlagKind.NON_2XX, answers, 1) if answers else None


def near_ceiling(cell: Cell, record: Record) -> Flag | None:
    """The row's RPS against the load generator's calibrated ceiling, which ceiling.with_ceilings() put beside it."""
    check = stats.CeilingCheck(record.load.rps, record.ceiling_rps)
    return Flag(FlagKind.NEAR_CEILING, check.share, stats.CEILING_SHARE) if check.near_ceiling else None


def rss_growing(cell: Cell, record: Record) -> Flag | None:
    growth = record.resources.growth
    return (
        Flag(FlagKind.RSS_GROWING, growth.relative, stats.RSS_GROWTH_LIMIT) if growth and growth.still_growing else None
    )


def gil_enabled(cell: Cell, record: Record) -> Flag | None:
    interpreter = record.interpreter
    on = free_threaded(cell.variant) and interpreter.free_threaded_build and interpreter.gil_enabled
    return Flag(FlagKind.GIL_ENABLED, 1, 1) if on else None


# One check per flag kind: adding a kind is one member of FlagKind and one check here.
ROW_CHECKS: tuple[Callable[[Cell, Record], Flag | None], ...] = (
    stalled,
    overfull,
    loadgen_saturated,
    load_errors,
    non_2xx,
    near_ceiling,
    rss_growing,
    gil_enabled,
)


def row_flags(cell: Cell, record: Record) -> list[Flag]:
    return [flag for check in ROW_CHECKS if (flag := check(cell, record))]


def ideal_io_rps(cell: Cell, io_wait_s: float) -> float:
    """What an I/O endpoint could serve if only its wait counted: one request per wait per slot that can wait."""
    slots = (
        cell.concurrency if cell.interface == "asgi" else min(cell.concurrency, cell.workers * cell.blocking_threads)
    )
    return slots / io_wait_s


def io_efficiency(cell: Cell, rps: float, io_wait_s: float) -> float:
    return rps / ideal_io_rps(cell, io_wait_s)


def server_cores(record: Record) -> float | None:
    """The CPU the server could have had: its pinned CPUs, else the machine's logical CPUs less what the load
    generator used there (nothing when it ran on another host); None when the record does not say."""
    settings = record.settings
    if cpus := settings.server_cpus:
        return float(len(cpus))
    logical = record.machine.logical_cores if record.machine else None
    loadgen = 0.0 if settings.loadgen_host else record.load.loadgen_cpu_cores
    return None if logical is None or loadgen is None else logical - loadgen


# --- why a verdict is what it is ------------------------------------------------------------------------


@dataclass(frozen=True)
class Missing:
    """Cells not measured (or failed), and the sessions that would measure them."""

    cells: tuple[Cell, ...]
    sessions: tuple[str, ...]


@dataclass(frozen=True)
class NotAlike:
    """The rows of a ratio were measured under different conditions: each condition that differs, with its
    values (results.condition_differences)."""

    differences: tuple[tuple[str, list], ...]


@dataclass(frozen=True)
class BuildsDiffer:
    """The two interpreters of a ratio were built with different optimisations: the build, not free-threading,
    would be measured."""

    ratio: Ratio
    over: dict[str, bool] | None
    under: dict[str, bool] | None


@dataclass(frozen=True)
class CpuBound:
    """An I/O row below the share of its ideal throughput the ratio needs: it measured CPU, not waiting."""

    ratio: Ratio
    cell: Cell
    efficiency: float
    needed: float


@dataclass(frozen=True)
class TooFewCores:
    """The server could have had fewer cores than the claim needs to show."""

    ratio: Ratio
    available: float
    needed: float


@dataclass(frozen=True)
class DoubtfulRow:
    ratio: Ratio
    cell: Cell
    flag: Flag


@dataclass(frozen=True)
class NoSuchCells:
    """A ratio group whose selectors match no cell of the study."""

    group: RatioSpec


@dataclass(frozen=True)
class NotRecorded:
    """A ratio whose figure some run of its rows did not record (no percentiles from rewrk, say)."""

    ratio: Ratio


Reason = Missing | NotAlike | BuildsDiffer | CpuBound | TooFewCores | DoubtfulRow | NoSuchCells | NotRecorded


@dataclass(frozen=True)
class Estimate:
    """One ratio as measured: its value, the interval from the runs (None below stats.MIN_RUNS_FOR_INTERVAL),
    the per-round ratios when the runs were paired, and its outcome once the preconditions are applied."""

    ratio: Ratio
    value: float
    runs: int
    interval: tuple[float, float] | None
    pairwise: tuple[float, ...]
    outcome: Verdict
    reasons: tuple[Reason, ...]
    on_pss: bool = False  # a memory ratio judged on PSS; then summed_rss is the post-compatible one beside it
    summed_rss: float | None = None


@dataclass(frozen=True)
class ClaimVerdict:
    claim: Claim
    verdict: Verdict
    estimates: tuple[Estimate, ...] = ()
    reasons: tuple[Reason, ...] = ()
    stand_ins: tuple[str, ...] = ()

    @property
    def runs(self) -> int | None:
        """The fewest runs behind any of the claim's ratios."""
        return min((estimate.runs for estimate in self.estimates), default=None)

    @property
    def all_reasons(self) -> list[Reason]:
        return list(self.reasons) + [reason for estimate in self.estimates for reason in estimate.reasons]


# --- judging --------------------------------------------------------------------------------------------


def measured(stored: dict[tuple[str, str], Record]) -> dict[Cell, Record]:
    """The cells whose every run succeeded; failed ones count as not measured."""
    return {record.cell: record for record in stored.values() if record.ok}


def _on_pss(*records: Record) -> bool:
    return all(positive(run, "pss") for record in records for run in record.ok_runs)


def run_values(record: Record, figure: str) -> list[float] | None:
    """The figure of every succeeded run; None where a run lacks it."""
    values = [positive(run, figure) for run in record.ok_runs]
    return None if None in values else values  # type: ignore[return-value]


def sessions_measuring(study: Study, cells: Iterable[Cell]) -> tuple[str, ...]:
    """The sessions that run all these cells (the fewest cells first); else one per cell that none covers alone;
    none for a cell that no session of the study runs."""
    cells = set(cells)
    sessions = study.sessions.values()
    covering = sorted((s for s in sessions if cells <= set(s.cells())), key=lambda s: len(s.cells()))
    if covering:
        return tuple(s.name for s in covering)
    return tuple(
        dict.fromkeys(
            name
            for cell in sorted(cells, key=lambda c: (c.table, c.key))
            for name in [next((s.name for s in sessions if cell in s.cells()), None)]
            if name
        )
    )


def _could_change(ratio: Ratio, flag: Flag, cell: Cell, interval: tuple[float, float], outcome: Verdict) -> bool:
    """Whether the flagged row could have moved the ratio across the band's edge: always, unless the flag bounds
    its bias and the interval widened by that bias gets the same word (a 34x ratio survives a 14% stall)."""
    if flag.bias is None or ratio.figure != "rps":
        return True
    low, high = interval
    shift = 1 / (1 - flag.bias)  # the row's RPS could have been up to this much higher
    widened = (low, high * shift) if cell == ratio.over else (low / shift, high)
    return ratio.band.judge(*widened) != outcome


def _preconditions(
    ratio: Ratio, over: Record, under: Record, interval: tuple[float, float], outcome: Verdict
) -> list[Reason]:
    reasons: list[Reason] = [
        DoubtfulRow(ratio, cell, flag)
        for cell, record in ((ratio.under, under), (ratio.over, over))
        for flag in row_flags(cell, record)
        if flag.kind.doubtful and _could_change(ratio, flag, cell, interval, outcome)
    ]
    if ratio.io_efficiency:
        reasons += [
            CpuBound(ratio, cell, efficiency, ratio.io_efficiency)
            for cell, record in ((ratio.under, under), (ratio.over, over))
            if (efficiency := io_efficiency(cell, record.load.rps, ratio.io_wait_s)) < ratio.io_efficiency
        ]
    cores = [server_cores(record) for record in (over, under)]
    if ratio.parallel_cores and outcome != Verdict.HELD and None not in cores and min(cores) < ratio.parallel_cores:
        reasons.append(TooFewCores(ratio, min(cores), ratio.parallel_cores))
    return reasons


def estimate(ratio: Ratio, over: Record, under: Record) -> Estimate | None:
    """The ratio from the runs of both cells, its interval, and its outcome: the band's word unless a
    precondition fails (a "held" stands with too few cores: fewer cores can only hide a gain). None where a run
    of either row did not record the figure."""
    pss = ratio.figure == "memory" and _on_pss(over, under)
    figure = memory_figure(pss) if ratio.figure == "memory" else ratio.figure
    tops, bottoms = run_values(over, figure), run_values(under, figure)
    if tops is None or bottoms is None:
        return None
    value = stats.geometric_ratio(tops, bottoms)
    pairs = results.paired([run.span for run in over.ok_runs], [run.span for run in under.ok_runs])
    interval = stats.ratio_interval(tops, bottoms, pairs)
    outcome = ratio.band.judge(*(interval or (value, value)))
    reasons = _preconditions(ratio, over, under, interval or (value, value), outcome)
    if reasons and not (outcome == Verdict.HELD and all(isinstance(r, TooFewCores) for r in reasons)):
        outcome = Verdict.INCONCLUSIVE
    rss = stats.geometric_ratio(run_values(over, "rss"), run_values(under, "rss")) if pss else None
    return Estimate(
        ratio,
        value,
        min(len(tops), len(bottoms)),
        interval,
        tuple(top / bottom for top, bottom in zip(tops, bottoms)) if pairs and len(tops) > 1 else (),
        outcome,
        tuple(reasons),
        pss,
        rss,
    )


def builds_differ(ratio: Ratio, over: Interpreter, under: Interpreter) -> BuildsDiffer | None:
    if not results.builds_differ(over, under):
        return None
    return BuildsDiffer(ratio, over.optimisations, under.optimisations)


def incomparable(ratios: Iterable[Ratio], records: dict[Cell, Record]) -> tuple[Reason, ...]:
    """Why the ratios' rows cannot be set side by side: conditions that differ (all of them, once), and builds
    that differ (per ratio); nothing where they can."""
    ratios = list(ratios)
    differences: dict[str, tuple[str, list]] = {}
    for ratio in ratios:
        for name, values in results.condition_differences([records[ratio.under], records[ratio.over]]):
            differences.setdefault(json.dumps([name, values], sort_keys=True), (name, values))
    builds = tuple(
        differ
        for ratio in ratios
        if (differ := builds_differ(ratio, records[ratio.over].interpreter, records[ratio.under].interpreter))
    )
    return ((NotAlike(tuple(differences.values())),) if differences else ()) + builds


def judge(study: Study, claim: Claim, stored: dict[tuple[str, str], Record]) -> ClaimVerdict:
    """One claim on this run's records."""
    records = measured(stored)
    if claim.unmatched:
        return ClaimVerdict(claim, Verdict.NOT_MEASURED, reasons=tuple(NoSuchCells(group) for group in claim.unmatched))
    if missing := tuple(cell for cell in claim.cells if cell not in records):
        return ClaimVerdict(
            claim, Verdict.NOT_MEASURED, reasons=(Missing(missing, sessions_measuring(study, missing)),)
        )
    stand_ins = tuple(
        sorted(
            {records[cell].interpreter.label for cell in claim.cells if records[cell].interpreter.label != cell.variant}
        )
    )
    if reasons := incomparable(claim.ratios, records):
        return ClaimVerdict(claim, Verdict.NOT_COMPARABLE, reasons=reasons, stand_ins=stand_ins)
    estimates = tuple(estimate(ratio, records[ratio.over], records[ratio.under]) for ratio in claim.ratios)
    if unrecorded := tuple(ratio for ratio, found in zip(claim.ratios, estimates) if found is None):
        return ClaimVerdict(
            claim, Verdict.NOT_MEASURED, reasons=tuple(NotRecorded(r) for r in unrecorded), stand_ins=stand_ins
        )
    return ClaimVerdict(claim, combined([e.outcome for e in estimates]), estimates, stand_ins=stand_ins)


def combined(outcomes: list[Verdict]) -> Verdict:
    """A claim needs every ratio: one ratio clearly outside its band refutes it; one in doubt leaves it open."""
    if all(outcome == Verdict.HELD for outcome in outcomes):
        return Verdict.HELD
    return Verdict.NOT_HELD if Verdict.NOT_HELD in outcomes else Verdict.INCONCLUSIVE


def judge_all(study: Study, stored: dict[tuple[str, str], Record]) -> list[ClaimVerdict]:
    return [judge(study, claim, stored) for claim in study.claims]


def post_value(study: Study, ratio: Ratio) -> float | None:
    """The ratio in the source's own tables (the post's RAM is summed RSS; it has one run per cell); None where
    the source publishes no such figure for both rows."""
    field = FIGURES[ratio.figure].published
    over, under = (study.published.get((cell.table, cell.key)) for cell in (ratio.over, ratio.under))
    if field is None or over is None or under is None or not getattr(over, field) or not getattr(under, field):
        return None
    return getattr(over, field) / getattr(under, field)
