"""How many rounds a session runs, and in which order.

A session runs its cells round by round, every cell once per round, so that slow drift of the machine hits every
cell alike. Each round's order is shuffled with a recorded seed (as google/benchmark interleaves repetitions at
random), so a periodic disturbance cannot favour one variant. `--repeat N` runs N rounds. `--repeat auto` adds
rounds until every compared ratio (or, with one variant, every cell's RPS) has an interval narrower than the
target, or lies clearly outside the on-par band, or a cap (rounds, time) is reached; it records why it stopped.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass

from gilfree.core import stats
from gilfree.study import results
from gilfree.study.claims import Comparison
from gilfree.study.instruments import Stop
from gilfree.study.studies import Cell

MIN_ROUNDS = stats.MIN_RUNS_FOR_INTERVAL  # below this, no interval: auto always runs at least these


@dataclass(frozen=True)
class AutoRepeat:
    """--repeat auto's rule: the defaults give a ±10% on-par band and intervals at most half as wide."""

    target_width: float = 0.10  # an interval's high / low - 1
    band: float = 0.10  # on par: a ratio within 1 ± band (the study's comparison band)
    max_rounds: int = 10
    budget_s: float | None = None  # None: no time limit but max_rounds

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Compared:
    """One compared figure after a round: a ratio between variants, or one cell's RPS with a single variant."""

    label: str
    interval: tuple[float, float] | None
    is_ratio: bool

    @property
    def width(self) -> float | None:
        return None if self.interval is None else self.interval[1] / self.interval[0] - 1

    def settled(self, rule: AutoRepeat) -> bool:
        return self.width is not None and self.width <= rule.target_width

    def outside_band(self, rule: AutoRepeat) -> bool:
        """The whole interval beyond 1 ± band: the outcome cannot change with more rounds."""
        low, high = self.interval or (None, None)
        return self.is_ratio and low is not None and (low > 1 + rule.band or high < 1 - rule.band)


def round_order(cells: list[Cell], done: dict[Cell, int], round_: int, seed: int) -> list[Cell]:
    """The cells still due in this round (a cell with more runs stored is skipped), in an order shuffled by the
    session's seed and the round's number: the same seed gives the same order again."""
    due = [cell for cell in cells if done[cell] <= round_]
    random.Random(f"{seed}:{round_}").shuffle(due)
    return due


def compared(cells: list[Cell], records: dict[Cell, dict], comparison: Comparison) -> list[Compared]:
    """What --repeat auto settles: each ratio the study compares (Comparison.pairs: its interval paired where
    the runs were interleaved); where the session holds no such pair, each cell's RPS."""
    ratios = [_ratio(over, under, records) for over, under in comparison.pairs(cells)]
    if ratios:
        return ratios
    return [Compared(cell.key, stats.mean_interval(_rps(records[cell])), False) for cell in cells]


def _rps(record: dict) -> list[float]:
    return [run["load"]["rps"] for run in results.ok_runs(record)]


def _ratio(over: Cell, under: Cell, records: dict[Cell, dict]) -> Compared:
    runs_over, runs_under = ([results.span(run) for run in results.ok_runs(records[cell])] for cell in (over, under))
    interval = stats.ratio_interval(
        _rps(records[over]), _rps(records[under]), paired=results.paired(runs_over, runs_under)
    )
    return Compared(f"{over.key} / {under.key}", interval, True)


def decide(found: list[Compared], rule: AutoRepeat, rounds: int, elapsed_s: float, round_s: float) -> Stop | None:
    """Whether to stop after `rounds` rounds; None: run another."""
    if rounds < MIN_ROUNDS:
        return None
    open_ = [item for item in found if not item.settled(rule) and not item.outside_band(rule)]
    if not open_:
        return Stop.SETTLED if all(item.settled(rule) for item in found) else Stop.DECIDED
    if rounds >= rule.max_rounds:
        return Stop.MAX_ROUNDS
    if rule.budget_s is not None and elapsed_s + round_s > rule.budget_s:
        return Stop.BUDGET
    return None


def summary(
    rule: AutoRepeat | None, repeat: int, seed: int, rounds: int, stop: Stop | None, found: list[Compared]
) -> dict:
    """What a record keeps of how its session chose its rounds: --repeat N or auto's rule, the seed, the rounds
    run so far, and why auto stopped."""
    return {
        "repeat": "auto" if rule else repeat,
        "order_seed": seed,
        "rounds_run": rounds,
        "auto": rule.as_dict() if rule else None,
        "stopped_by": stop.key if stop else None,
        "widths": {item.label: item.width for item in found} if rule else None,
    }
