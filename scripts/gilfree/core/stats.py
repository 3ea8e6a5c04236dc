"""Many runs of one cell summarised: the median of each figure, its spread, and the warnings that say when a
result should not be trusted."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import numpy

from gilfree.core.warnings import StudyWarning, WarningKind

# A cell whose RPS moves more than this across its runs (max - min over the median) is flagged.
VARIATION_LIMIT = 0.10
# wrk and rewrk drive the load from one thread: near a full core, they, not the server, set the pace.
LOADGEN_SATURATED_CORES = 0.9
# Busy before the run: other processes' CPU use above this share of all cores, read while the server starts.
BUSY_LIMIT = 0.15
# RSS that still grows by more than this over the second half of a steady load is flagged: a leak, or a
# garbage collector falling behind, rather than memory that a higher concurrency simply needs.
RSS_GROWTH_LIMIT = 0.05
RSS_GROWTH_MIN_SAMPLES = 4  # fewer samples in the second half (a load under about 2 s): growth unknown
# A row at this share of the load generator's ceiling (its RPS against nginx, `nox -s calibrate`) or above
# may have been paced by the load generator, not by the server.
CEILING_SHARE = 0.70
# An open-loop run whose achieved rate falls short of the offered one by more than this share is flagged.
RATE_TOLERANCE = 0.05

LOAD_FIGURES = ("rps", "latency_avg_ms", "latency_max_ms")
SUMMED = ("errors", "non_2xx")  # a fault in any run must show in the summary, not vanish under a median
RESOURCE_FIGURES = ("cpu_cores", "peak_rss_bytes")


def spread(values: list[float]) -> dict[str, float]:
    """min, max and the quartiles (the inclusive method, so that three runs give their own values)."""
    quartiles = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else [values[0]] * 3
    return {"min": min(values), "q1": quartiles[0], "median": statistics.median(values), "q3": quartiles[2],
            "max": max(values)}


def _middle(name: str, values: list) -> float | dict | None:
    """Sum the fault counts; otherwise the median, kept whole for whole numbers (a count of requests), and for
    a group of figures (the latency percentiles) the median of each. A figure the tool could not give in some
    run (None) stays unknown: it is never taken as zero."""
    if None in values:
        return None
    if all(isinstance(v, dict) for v in values):
        return {key: _middle(key, [v.get(key) for v in values]) for key in values[0]}
    if name in SUMMED:
        return sum(values)
    return statistics.median_low(values) if all(isinstance(v, int) for v in values) else statistics.median(values)


def summarise(runs: list[dict]) -> tuple[dict, dict, dict]:
    """The median run (figure by figure), and the spread of each figure, over runs that succeeded."""
    load = {name: _middle(name, [run["load"][name] for run in runs])
            for name in runs[0]["load"] if name != "generator"}
    load["generator"] = runs[0]["load"]["generator"]
    resources = {name: _middle(name, [run["resources"].get(name) for run in runs]) for name in runs[0]["resources"]}
    spreads = {name: spread([run["load"][name] for run in runs]) for name in LOAD_FIGURES}
    spreads |= {name: spread([run["resources"][name] for run in runs]) for name in RESOURCE_FIGURES}
    return load, resources, spreads


def percentile_ms(load: dict | None, percentile: str) -> float | None:
    """One latency percentile of a record's (or a run's) load, such as "99"; None where the load generator gave
    none (rewrk), the run failed, or the record predates percentiles."""
    return ((load or {}).get("latency_percentiles_ms") or {}).get(percentile)


def rate_shortfall(load: dict | None) -> StudyWarning | None:
    """An open-loop run (`offered_rps` set) that completed fewer requests per second than it offered, beyond
    RATE_TOLERANCE: the server (or the load generator) could not keep up, and the requests never sent are in no
    latency figure."""
    offered = (load or {}).get("offered_rps")
    if offered is None or load["rps"] >= offered * (1 - RATE_TOLERANCE):
        return None
    return StudyWarning(WarningKind.RATE_SHORTFALL, {"offered_rps": offered, "achieved_rps": load["rps"],
                                                     "share": load["rps"] / offered, "tolerance": RATE_TOLERANCE})


def variation(spreads: dict) -> float:
    rps = spreads["rps"]
    return (rps["max"] - rps["min"]) / rps["median"] if rps["median"] else 0.0


def loadgen_saturated(cores: float | None, threads: int | None) -> bool:
    """A tool of a fixed thread count near that many cores, not the server, may have set the pace. Unknown cores,
    or a tool of no fixed thread count (oha, hey), are never judged."""
    return bool(threads) and cores is not None and cores >= LOADGEN_SATURATED_CORES * threads


def machine_busy(busy_share: float) -> bool:
    """Other work on the machine, before a run, beyond what a measurement tolerates."""
    return busy_share > BUSY_LIMIT


def run_warnings(run: dict, busy_share: float, cores: int, loadgen_threads: int | None = 1) -> list[StudyWarning]:
    """What makes one run doubtful: a busy machine, a saturated load generator, errors. A load generator
    of no fixed thread count (oha) cannot be judged saturated from its CPU use."""
    warnings = []
    if machine_busy(busy_share):
        warnings.append(StudyWarning(WarningKind.MACHINE_BUSY, {"busy_share": busy_share, "cores": cores,
                                                                "limit": BUSY_LIMIT}))
    load = run.get("load") or {}
    if loadgen_saturated(load.get("loadgen_cpu_cores"), loadgen_threads):
        warnings.append(StudyWarning(WarningKind.LOADGEN_SATURATED, {"cores": load["loadgen_cpu_cores"],
                                                                     "threads": loadgen_threads}))
    if load.get("errors"):
        warnings.append(StudyWarning(WarningKind.LOAD_ERRORS, {"errors": load["errors"]}))
    shortfall = rate_shortfall(run.get("load"))
    if shortfall:
        warnings.append(shortfall)
    return warnings


def variation_warning(spreads: dict, runs: int) -> list[StudyWarning]:
    spread_rps = variation(spreads)
    if runs > 1 and spread_rps > VARIATION_LIMIT:
        return [StudyWarning(WarningKind.RPS_VARIED, {"variation": spread_rps, "runs": runs, "limit": VARIATION_LIMIT})]
    return []


@dataclass(frozen=True)
class RssGrowth:
    """How the server tree's RSS moved over the second half of the load, from a least-squares line through
    those samples (a line, not two end points, so one sample caught mid-allocation does not decide)."""

    relative: float  # the line's rise over the half, over its value at the half's start: 0.07 is +7%
    bytes_per_s: float

    @property
    def still_growing(self) -> bool:
        return self.relative > RSS_GROWTH_LIMIT

    @classmethod
    def of(cls, resources: dict | None) -> RssGrowth | None:
        """The growth a record's resources hold; None where it is unknown (a short load, an older record)."""
        resources = resources or {}
        relative, slope = resources.get("rss_growth_last_half"), resources.get("rss_growth_bytes_per_s")
        return None if relative is None or slope is None else cls(relative, slope)


def rss_growth(t_s: list[float], rss_bytes: list[int]) -> RssGrowth | None:
    """Growth over the samples of the second half of the window; None with too few samples to fit a line."""
    if not t_s:
        return None
    half = [(t, rss) for t, rss in zip(t_s, rss_bytes) if t >= t_s[-1] / 2]
    if len(half) < RSS_GROWTH_MIN_SAMPLES:
        return None
    times, sizes = zip(*half)
    fit = statistics.linear_regression(times, sizes)
    start = fit.intercept + fit.slope * times[0]
    if start <= 0:
        return None
    return RssGrowth(float(fit.slope * (times[-1] - times[0]) / start), float(fit.slope))


@dataclass(frozen=True)
class CeilingCheck:
    """A row's RPS against what the load generator pushed at the same concurrency against nginx on this
    machine. Without a matching calibration the check was not made: ceiling_rps is None."""

    rps: float
    ceiling_rps: float | None

    @property
    def checked(self) -> bool:
        return self.ceiling_rps is not None

    @property
    def share(self) -> float | None:
        return self.rps / self.ceiling_rps if self.checked else None

    @property
    def near_ceiling(self) -> bool:
        """The load generator, not the server, may have set this pace."""
        return self.checked and self.share >= CEILING_SHARE


# Confidence in a ratio between two cells, from their runs.
MIN_RUNS_FOR_INTERVAL = 3  # with fewer, the spread of the runs says too little: no interval at all
CONFIDENCE = 0.95


def _scipy_stats():
    """scipy.stats, imported where an interval is computed: it takes over a second, which every harness start
    would otherwise pay."""
    import scipy.stats

    return scipy.stats


def _t_interval(test, point: float) -> tuple[float, float]:
    """The test's interval; runs that did not vary at all give the point itself (a zero-width interval)."""
    low, high = test.confidence_interval(CONFIDENCE)
    return (float(low), float(high)) if numpy.isfinite(low) and numpy.isfinite(high) else (point, point)


def mean_interval(values: list[float]) -> tuple[float, float] | None:
    """A 95% Student t interval for the mean of one cell's runs; None below MIN_RUNS_FOR_INTERVAL."""
    if len(values) < MIN_RUNS_FOR_INTERVAL:
        return None
    return _t_interval(_scipy_stats().ttest_1samp(values, 0.0), statistics.fmean(values))


def geometric_ratio(over: list[float], under: list[float]) -> float:
    """The ratio of the geometric means: the point estimate the interval below is about."""
    return statistics.geometric_mean(over) / statistics.geometric_mean(under)


def ratio_interval(over: list[float], under: list[float], paired: bool) -> tuple[float, float] | None:
    """A 95% Student t interval for geometric_ratio(over, under), computed on the logarithms: a one-sample t on
    the round-by-round log ratios when the runs were made in pairs (the interleaved sessions), else Welch's t
    on each cell's runs. None below MIN_RUNS_FOR_INTERVAL runs on either side. With 3 runs the t quantile is 4.3:
    the interval is wide, as three runs deserve (a bootstrap would give only their range)."""
    if min(len(over), len(under)) < MIN_RUNS_FOR_INTERVAL:
        return None
    logs_over, logs_under = numpy.log(over), numpy.log(under)
    if paired:
        test = _scipy_stats().ttest_1samp(logs_over - logs_under, 0.0)
    else:
        test = _scipy_stats().ttest_ind(logs_over, logs_under, equal_var=False)
    low, high = _t_interval(test, float(numpy.log(geometric_ratio(over, under))))
    return float(numpy.exp(low)), float(numpy.exp(high))
