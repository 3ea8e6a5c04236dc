"""Core scaling read from the records: what each variant delivers with k CPUs given to the server, how much of
the ideal linear gain each added core brings, where that gain runs out (the knee), and 3.14t against 3.14 at
each k. Analysis only: typed values, no text for another module to match on, no Markdown, no charts.

The records are those of cells with a `cpus` dimension (record.cell.cpus = k); the server was pinned to
the first k CPUs, the load generator to all the others (processes.server_cpus)."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from gilfree.core import stats
from gilfree.study.instruments import FIRST_POINTS, loadgen_threads
from gilfree.study.record import Record
from gilfree.study.schema import free_threaded, gil_name

# The knee: the first k after which the next measured step brings less than this share of the ideal gain. The
# ideal gain of a step from k to k' is (k' - k) x RPS(1), the slope of the ideal line k x RPS(1); so at 0.5 the
# added cores, together, do less than half of what the first core did alone. Half is far outside the run-to-run
# noise of a cell (stats.RSD_LIMIT flags a relative standard deviation of 5%), yet a curve that merely bends is
# not called stopped: with Amdahl's law and a 5% serial share, the steps 1->2, 2->4, 4->8, 8->16 bring 0.91, 0.79,
# 0.61, 0.40 of the ideal gain, so its knee is k=8, where its speed-up (5.9) is 74% of linear.
KNEE_MARGINAL_EFFICIENCY = 0.5
BYTES_PER_GB = 1e9  # RPS per GB of PSS counts decimal gigabytes, as memory is sold


class PointStatus(enum.Enum):
    OK = "ok"
    FAILED = "failed"  # a run of the cell failed; the record holds why
    INCOMPLETE = "incomplete"  # fewer successful runs than asked for
    MISSING = "not run"  # planned, but no record is stored


@dataclass(frozen=True)
class Curve:
    """One line of the scaling chart: an app's endpoint on one interpreter variant."""

    app: str
    endpoint: str
    variant: str


@dataclass(frozen=True)
class Point:
    """One cell of a curve: the server on k CPUs. Every figure is None unless the cell is OK, and None where it
    is unknown even then (p99 from a load generator that gives none, PSS the kernel did not give): never 0."""

    curve: Curve
    k: int
    status: PointStatus
    failure: str | None = None
    rps: float | None = None  # the median over the cell's successful runs
    p99_ms: float | None = None
    cores_used: float | None = None  # the server tree's CPU use, in cores, over the load
    pss_bytes: int | None = None  # the whole tree's PSS as the load ended
    efficiency: float | None = None  # RPS(k) / (k x RPS(1)); None without an OK k=1 point
    loadgen_saturated: bool = False  # the load generator, not the server, may have set the pace

    @property
    def rps_per_gb_pss(self) -> float | None:
        """Requests per second per GB (1e9 bytes) of the tree's PSS; None where either is unknown."""
        if self.rps is None or not self.pss_bytes:
            return None
        return self.rps / (self.pss_bytes / BYTES_PER_GB)


class KneeKind(enum.Enum):
    STOPS = "stops"  # Knee.k is the last k whose next step brought at least the knee's share of the ideal
    SCALES = "scales"  # no step fell below the share, up to Knee.k, the largest k measured in a row from k=1
    NOT_ENOUGH_POINTS = "not enough points"  # no OK k=1 and k=2 in a row: no slope to judge


@dataclass(frozen=True)
class Knee:
    """Where a curve stops scaling. `gap` is the first point, past Knee.k, that was planned but is not OK (the
    walk stops there: a step over a hole is not judged). `paced_by_loadgen`: the step that fell short ended on a
    point where the load generator was saturated, so the knee may be the load generator's, not the server's."""

    curve: Curve
    kind: KneeKind
    k: int | None = None
    step_to: int | None = None  # STOPS: the k of the step that fell short
    marginal_efficiency: float | None = None  # STOPS: the share of the ideal gain that step brought
    gap: Point | None = None
    paced_by_loadgen: bool = False


@dataclass(frozen=True)
class VariantRatio:
    """One variant's RPS over its baseline's (3.14t / 3.14) for one app's endpoint on k CPUs. None unless both
    points are OK; their statuses say why."""

    app: str
    endpoint: str
    k: int
    over: Point
    under: Point

    @property
    def value(self) -> float | None:
        if self.over.rps is None or self.under.rps is None:
            return None
        return self.over.rps / self.under.rps


@dataclass(frozen=True)
class Analysis:
    points: tuple[Point, ...]  # by app, endpoint, variant, then k
    knees: tuple[Knee, ...]
    ratios: tuple[VariantRatio, ...]

    def curves(self) -> tuple[Curve, ...]:
        return tuple(dict.fromkeys(point.curve for point in self.points))

    def curve(self, curve: Curve) -> tuple[Point, ...]:
        return tuple(point for point in self.points if point.curve == curve)


def _status(record: Record | None) -> PointStatus:
    return PointStatus.MISSING if record is None else PointStatus(record.status)


def _point(curve: Curve, k: int, record: Record | None, rps_1: float | None) -> Point:
    status = _status(record)
    if record is None or status is not PointStatus.OK or not record.load or not record.resources:
        return Point(curve, k, status, failure=record.failure if record else None)
    load, resources = record.load, record.resources
    return Point(
        curve,
        k,
        status,
        rps=load.rps,
        p99_ms=load.percentile_ms("99"),
        cores_used=resources.cpu_cores,
        pss_bytes=resources.end_pss_bytes,
        efficiency=load.rps / (k * rps_1) if rps_1 else None,
        loadgen_saturated=stats.loadgen_saturated(load.loadgen_cpu_cores, loadgen_threads(load.generator)),
    )


def _curve_of(record: Record) -> Curve:
    return Curve(record.cell.app, record.cell.endpoint, record.cell.variant)


def points(records: Iterable[Record], ks: Sequence[int] = (), variants: Sequence[str] = ()) -> tuple[Point, ...]:
    """One point per curve and k, for every k in `ks` (the plan) and every k stored, and for every variant in
    `variants` (the plan) and every variant stored, on each app's endpoint stored: a cell planned but not
    stored shows as missing. Records without a `cpus` dimension are not part of the study."""
    stored = {(_curve_of(r), r.cell.cpus): r for r in records if r.cell.cpus is not None}
    all_ks = sorted({*ks, *(k for _, k in stored)})
    all_variants = {*variants, *(curve.variant for curve, _ in stored)}
    curves = sorted(
        {Curve(c.app, c.endpoint, v) for c, _ in stored for v in all_variants},
        key=lambda c: (c.app, c.endpoint, c.variant),
    )
    found = []
    for curve in curves:
        first = stored.get((curve, 1))
        rps_1 = first.load.rps if first and first.load and _status(first) is PointStatus.OK else None
        found += [_point(curve, k, stored.get((curve, k)), rps_1) for k in all_ks]
    return tuple(found)


def marginal_efficiency(before: Point, after: Point, rps_1: float) -> float:
    """The share of the ideal gain, (k' - k) x RPS(1), that a step from k to k' brought."""
    return (after.rps - before.rps) / ((after.k - before.k) * rps_1)


def knee(curve: Curve, line: Sequence[Point]) -> Knee:
    """Walk the curve's OK points from k=1 in order of k, up to the first that is not OK; see
    KNEE_MARGINAL_EFFICIENCY for the rule."""
    walked = []
    gap = None
    for point in sorted(line, key=lambda p: p.k):
        if point.status is not PointStatus.OK:
            gap = point
            break
        walked.append(point)
    if len(walked) < len(FIRST_POINTS) or walked[0].k != 1:
        return Knee(curve, KneeKind.NOT_ENOUGH_POINTS, gap=gap)
    for before, after in zip(walked, walked[1:]):
        share = marginal_efficiency(before, after, walked[0].rps)
        if share < KNEE_MARGINAL_EFFICIENCY:
            return Knee(curve, KneeKind.STOPS, before.k, after.k, share, paced_by_loadgen=after.loadgen_saturated)
    return Knee(curve, KneeKind.SCALES, walked[-1].k, gap=gap)


def partner(variant: str, baseline: str | None) -> str | None:
    """The variant one is compared with: the study's baseline (its `[comparison]` of the variant), else the GIL
    build of the same name (3.14t -> 3.14); none for the baseline itself."""
    if baseline is not None:
        return baseline if variant != baseline else None
    return gil_name(variant) if free_threaded(variant) else None


def ratios(found: Sequence[Point], baseline: str | None = None) -> tuple[VariantRatio, ...]:
    """Each variant over its partner, per app, endpoint and k."""
    by_key = {(p.curve, p.k): p for p in found}
    pairs = []
    for point in found:
        base = partner(point.curve.variant, baseline)
        if base is None:
            continue
        other = Curve(point.curve.app, point.curve.endpoint, base)
        under = by_key.get((other, point.k), Point(other, point.k, PointStatus.MISSING))
        pairs.append(VariantRatio(point.curve.app, point.curve.endpoint, point.k, point, under))
    return tuple(pairs)


def analyse(
    records: Iterable[Record], ks: Sequence[int] = (), variants: Sequence[str] = (), baseline: str | None = None
) -> Analysis:
    """Points, knees and ratios of the stored scaling records; the plan's `ks` and `variants` make cells that
    were never run show as such; `baseline`: the variant every other is divided by (see partner)."""
    found = points(records, ks, variants)
    curves = dict.fromkeys(point.curve for point in found)
    knees = tuple(knee(curve, [p for p in found if p.curve == curve]) for curve in curves)
    return Analysis(found, knees, ratios(found, baseline))
