"""Every figure a study measures, in one registry: its name, where it sits in a record, its unit, whether more
of it is better, its column header, the words reports use for it, and why it can be missing.

The tables' columns, the claims' and comparisons' ratios, the post's published figures and the reports' words
all read FIGURES: adding a figure is one entry here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gilfree.study.record import Measured

MIB = 2**20
NO_FIGURE = "a run without this figure"
NO_PERCENTILES = "the load generator gives no percentiles: rewrk"


@dataclass(frozen=True)
class Figure:
    name: str  # as a study file, a record's ratio and a report name it
    words: str  # in a sentence: "p99 latency"
    unit: str
    of: Callable[[Measured], float | None]  # its value in a run (or a record's medians); None where not recorded
    higher_is_better: bool | None = None  # None: never a ratio (a share Granian counts, a maximum)
    directions: tuple[str, str] = ("more", "less")  # a ratio above 1, below 1, in words
    missing_why: str = NO_FIGURE
    column: str | None = None  # the table column that shows it (a study's `columns`)
    header: str | None = None
    text: Callable[[float], str] = "{:.2f}".format  # a table cell
    published: str | None = None  # the field of the source's rows that holds it (schema.PostFigures)
    published_unit: float = 1  # what one of the source's units is in this figure's: the post's RAM "MB", as MiB
    compared: bool = True  # in every comparison; False: only where a claim names it

    @property
    def ratio(self) -> bool:
        """A claim or a comparison may divide it."""
        return self.higher_is_better is not None


def _load(name: str) -> Callable[[Measured], float | None]:
    return lambda part: getattr(part.load, name) if part.load else None


def _resources(name: str) -> Callable[[Measured], float | None]:
    return lambda part: getattr(part.resources, name) if part.resources else None


def _percentile(percentile: str) -> Callable[[Measured], float | None]:
    return lambda part: part.load.percentile_ms(percentile) if part.load else None


def _cpu_per_1k(part: Measured) -> float | None:
    if not part.load or not part.resources or part.resources.cpu_cores is None or not part.load.rps:
        return None
    return part.resources.cpu_cores * 1000 / part.load.rps


def _granian(name: str) -> Callable[[Measured], float | None]:
    return lambda record: (getattr(record, "granian", None) or {}).get(name)


def _unresolved(part: Measured) -> float | None:
    return None  # "memory" is PSS or summed RSS, chosen per ratio by the verdicts (memory_figure)


_FIGURES = (
    Figure(
        "rps",
        "RPS",
        "requests/s",
        _load("rps"),
        True,
        ("faster", "slower"),
        column="rps",
        header="RPS",
        text="{:.0f}".format,
        published="rps",
    ),
    Figure("latency_p50", "p50 latency", "ms", _percentile("50"), False, ("higher", "lower"), NO_PERCENTILES),
    Figure("latency_p99", "p99 latency", "ms", _percentile("99"), False, ("higher", "lower"), NO_PERCENTILES),
    Figure(
        "latency_avg",
        "mean latency",
        "ms",
        _load("latency_avg_ms"),
        False,
        ("higher", "lower"),
        column="latency_avg",
        header="Latency avg",
        text="{:.2f}ms".format,
        published="latency_avg_ms",
    ),
    Figure("cpu", "CPU", "cores", _resources("cpu_cores"), False, column="cpu", header="CPU", published="cpu"),
    Figure("cpu_per_1k", "CPU per 1,000 requests", "core-seconds", _cpu_per_1k, False),
    Figure(
        "pss",
        "PSS",
        "bytes",
        _resources("end_pss_bytes"),
        False,
        missing_why="PSS needs /proc/PID/smaps_rollup, and records of older harnesses lack it",
    ),
    Figure(
        "rss",
        "peak RSS",
        "bytes",
        _resources("peak_rss_bytes"),
        False,
        column="ram",
        header="RAM",
        text=lambda rss: f"{rss / MIB:.0f}MiB",
        published="ram_mb",
        published_unit=MIB,
    ),
    Figure("memory", "RAM", "bytes", _unresolved, False, published="ram_mb", published_unit=MIB, compared=False),
    Figure(
        "latency_max",
        "maximum latency",
        "ms",
        _load("latency_max_ms"),
        column="latency_max",
        header="Latency max",
        text="{:.2f}ms".format,
        published="latency_max_ms",
        compared=False,
    ),
    Figure(
        "gil_wait",
        "GIL wait",
        "share",
        _granian("gil_wait_share"),
        column="gil_wait",
        header="GIL wait",
        text="{:.0%}".format,
        compared=False,
    ),
    Figure(
        "blocking",
        "blocking threads busy",
        "share",
        _granian("blocking_utilisation"),
        column="blocking",
        header="Blocking busy",
        text="{:.0%}".format,
        compared=False,
    ),
)
FIGURES: dict[str, Figure] = {figure.name: figure for figure in _FIGURES}
BY_COLUMN: dict[str, Figure] = {figure.column: figure for figure in _FIGURES if figure.column}
RATIO_FIGURES = tuple(name for name, figure in FIGURES.items() if figure.ratio)  # a claim's `figure`
COMPARED = tuple(name for name, figure in FIGURES.items() if figure.ratio and figure.compared)
COLUMNS = tuple(BY_COLUMN)  # a table's figure columns
# The source's columns (schema.PostFigures), and the ratios of a table set beside the source's: each figure
# that is a column, a ratio and published.
PUBLISHED_COLUMNS = tuple(f for f in _FIGURES if f.column and f.published)
PUBLISHED_RATIOS = tuple(f for f in PUBLISHED_COLUMNS if f.ratio)
COUNTED = ("gil_wait", "blocking")  # Granian's own counters: columns only where the runs counted them


def memory_figure(on_pss: bool) -> str:
    """What "memory" is judged on: PSS where every run of both rows recorded it, else peak summed RSS."""
    return "pss" if on_pss else "rss"


def positive(part: Measured, figure: str) -> float | None:
    """A figure of a run (or a record) where it is above zero; None where it was not recorded, or is 0, since a
    ratio of it would mean nothing."""
    value = FIGURES[figure].of(part)
    return value if value else None
