"""What a study claims and what it compares, as data: ratios between cells chosen by their settings.

A claim (a study's `[[claims]]`) is its words and the ratios it rests on. Each ratio group names a figure, the
cells it ranges over, what is divided by what (`over` and `under`: the same settings with other values), the
band the ratio must lie in and what the rows must allow. studies.py resolves every group to the cells it
names when the study is read; the verdicts (report layer) judge them on the records. A study's `[comparison]`
names the setting `compare` sets side by side for any study, and its on-par band.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from enum import Enum
from typing import TYPE_CHECKING

from gilfree.study.figures import FIGURES
from gilfree.study.schema import ClaimSpec, ComparisonSpec, PostFigures, RatioSpec, band_numbers

if TYPE_CHECKING:
    from gilfree.study.studies import Cell

# The settings a ratio's name may show, in the order shown: the endpoint and the workers always, the others
# where they tell the claim's cells apart.
NAMED_SETTINGS = (
    "endpoint",
    "workers",
    "app",
    "blocking_threads",
    "loop",
    "runtime_mode",
    "runtime_threads",
    "cpus",
    "concurrency",
    "variant",
)
ALWAYS_NAMED = ("endpoint", "workers")


class Verdict(Enum):
    HELD = "held"
    NOT_HELD = "not held"
    INCONCLUSIVE = "inconclusive"
    NOT_MEASURED = "not measured"
    NOT_COMPARABLE = "not comparable"


@dataclass(frozen=True)
class Band:
    """Where a ratio must lie for the claim to hold: [low, high], either end open."""

    low: float = 0.0
    high: float = math.inf

    def judge(self, low: float, high: float) -> Verdict:
        """Held when the whole interval (a point: low == high) lies inside, not held when it lies outside."""
        if self.low <= low and high <= self.high:
            return Verdict.HELD
        if high < self.low or low > self.high:
            return Verdict.NOT_HELD
        return Verdict.INCONCLUSIVE

    @classmethod
    def written(cls, text: str, par: float) -> Band:
        """A band as a study writes it (schema.BAND_FORMS); "faster" and "slower" leave the on-par band."""
        numbers = band_numbers(text)
        if text == "on par":
            return on_par(par)
        if text in ("faster", "slower"):
            return cls(1 + par) if text == "faster" else cls(0.0, 1 - par)
        if text.startswith("at least"):
            return cls(numbers[0])
        return cls(0.0, numbers[0]) if text.startswith("at most") else cls(*numbers)


def on_par(par: float) -> Band:
    return Band(1 - par, 1 + par)


@dataclass(frozen=True)
class Ratio:
    """One figure of one cell over the same figure of another, the band it must lie in, and what the rows must
    allow for the ratio to be judged at all."""

    over: Cell
    under: Cell
    figure: str  # one of figures.RATIO_FIGURES
    band: Band
    named: tuple[str, ...] = ()  # the settings its name shows (the report names it)
    compared: tuple[str, ...] = ("variant",)  # the settings over and under differ in
    io_efficiency: float | None = None  # judged only when both rows reach this share of the ideal I/O throughput
    io_wait_s: float | None = None  # what the endpoint waits per request: the ideal I/O throughput's unit
    parallel_cores: float | None = None  # a "not held" counts only when the server could have had this many

    @property
    def higher_is_better(self) -> bool:
        return bool(FIGURES[self.figure].higher_is_better)


@dataclass(frozen=True)
class Claim:
    text: str
    ratios: tuple[Ratio, ...]
    why: str | None = None
    unmatched: tuple[RatioSpec, ...] = ()  # ratio groups whose selectors match no cell of the study

    @property
    def cells(self) -> list[Cell]:
        return list(dict.fromkeys(cell for ratio in self.ratios for cell in (ratio.under, ratio.over)))


@dataclass(frozen=True)
class Comparison:
    """What `compare` sets side by side for any study: the cells that differ in `setting` only, each over the
    one with the baseline value, judged against the on-par band 1 ± band."""

    setting: str
    baseline: str | int
    band: float
    p99_budget_ms: float | None

    def pairs(self, cells: Iterable[Cell]) -> list[tuple[Cell, Cell]]:
        return compared_pairs(self.setting, self.baseline, cells)


def matches(cell: Cell, selector: dict) -> bool:
    return all(getattr(cell, key) == value for key, value in selector.items())


def named_settings(cells: Iterable[Cell], leaving_out: Iterable[str] = ()) -> tuple[str, ...]:
    """The settings that name each of these cells: the endpoint and workers, then each other one that tells
    them apart and is not already told by those before it (concurrency that follows the workers is not)."""
    cells, named = list(cells), []
    for setting in (s for s in NAMED_SETTINGS if s not in leaving_out):
        told = {}
        for cell in cells:
            told.setdefault(tuple(getattr(cell, s) for s in named), set()).add(getattr(cell, setting))
        if setting in ALWAYS_NAMED or any(len(values) > 1 for values in told.values()):
            named.append(setting)
    return tuple(named)


def _needed_cores(spec: RatioSpec, over: Cell, under: Cell, published: dict[Cell, PostFigures]) -> float | None:
    wanted = spec.needs.cores
    if wanted == "post":
        figures = published.get(over)
        if figures is None or figures.cpu is None:
            raise ValueError(f'needs.cores = "post", but the source publishes no CPU for {over.key}')
        return figures.cpu
    if wanted == "workers_x_threads":
        return float(max(cell.workers * (cell.blocking_threads or 1) for cell in (over, under)))
    return wanted


def _io_wait_s(spec: RatioSpec, cell: Cell, io_wait_s: Callable[[Cell], float | None]) -> float | None:
    if spec.needs.io_efficiency is None:
        return None
    wait = io_wait_s(cell)
    if wait is None:
        raise ValueError(f"needs.io_efficiency, but app {cell.app}'s endpoint {cell.endpoint} sets no io_wait_ms")
    return wait


def pairs(spec: RatioSpec, cells: tuple[Cell, ...]) -> list[tuple[Cell, Cell]]:
    """(over, under) for each cell of the range matching `over` whose counterpart (`under`'s values instead)
    the study has, in the study's order."""
    known = set(cells)
    found = []
    for cell in (c for c in cells if matches(c, spec.cells) and matches(c, spec.over)):
        counterpart = replace(cell, **spec.under)
        if counterpart in known:
            found.append((cell, counterpart))
    return found


def resolve(
    spec: ClaimSpec,
    cells: tuple[Cell, ...],
    published: dict[Cell, PostFigures],
    io_wait_s: Callable[[Cell], float | None],
    par: float,
) -> Claim:
    """The claim with each ratio group turned into the study's ratios; ValueError (with the group's index) where a
    group's needs cannot be met by the study as written."""
    groups = [(index, group, pairs(group, cells)) for index, group in enumerate(spec.ratios)]
    claim_cells = [cell for _, _, found in groups for pair in found for cell in pair]
    ratios = []
    for index, group, found in groups:
        named = named_settings(claim_cells, leaving_out=group.over)
        try:
            ratios += [
                Ratio(
                    over,
                    under,
                    group.figure,
                    Band.written(group.band, par),
                    named,
                    tuple(group.over),
                    group.needs.io_efficiency,
                    _io_wait_s(group, over, io_wait_s),
                    _needed_cores(group, over, under, published),
                )
                for over, under in found
            ]
        except ValueError as error:
            raise ValueError(f"ratios.{index}: {error}") from None
    return Claim(spec.text, tuple(ratios), spec.why, tuple(group for _, group, found in groups if not found))


def comparison(spec: ComparisonSpec, cells: tuple[Cell, ...]) -> Comparison:
    """The study's comparison, its baseline checked against the values its cells take."""
    values = list(dict.fromkeys(getattr(cell, spec.setting) for cell in cells))
    baseline = spec.baseline if spec.baseline is not None else values[0]
    if baseline not in values:
        raise ValueError(
            f"baseline: {baseline!r} is not a value of {spec.setting} in the study's cells "
            f"({', '.join(map(repr, values))})"
        )
    return Comparison(spec.setting, baseline, spec.band, spec.p99_budget_ms)


def compared_pairs(setting: str, baseline, cells: Iterable[Cell]) -> list[tuple[Cell, Cell]]:
    """(cell, its baseline) for every cell whose group (the same table and settings but `setting`) holds the
    baseline value, in the cells' order: what `compare`, `--repeat auto` and the post's variant pairs set side by
    side."""
    groups: dict[Cell, list[Cell]] = {}
    for cell in cells:
        groups.setdefault(replace(cell, **{setting: None}), []).append(cell)
    found = []
    for group in groups.values():
        under = next((cell for cell in group if getattr(cell, setting) == baseline), None)
        found += [(cell, under) for cell in group if under is not None and cell is not under]
    return found
