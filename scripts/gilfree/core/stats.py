"""Many runs of one cell summarised: the median of each figure, its spread, and the warnings that say when a
result should not be trusted."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import numpy

# A cell whose RPS has a relative standard deviation (over its runs) above this is flagged. The range over the
# median, flagged above 10% before, grows with the number of runs; for three runs of normal noise 10% of range is
# about 6% RSD.
RSD_LIMIT = 0.05
# A run whose RPS is more than this many robust standard deviations (1.4826 x the median absolute deviation) from
# the cell's median is an outlier: hyperfine's rule (src/outlier_detection.rs, OUTLIER_THRESHOLD = 1.4826 x 10).
# Iglewicz and Hoaglin's 3.5 flags some run in 12% to 29% of cells of 3 to 10 runs of pure normal noise
# (simulated), so nearly every table would carry an outlier note; 10 flags 1% from 6 runs (11% with 3).
OUTLIER_ROBUST_SDS = 10.0
MAD_TO_SD = 1.4826  # the median absolute deviation of normal noise times this is its standard deviation
# Drift: the first third of a cell's runs against the last third (at least 2 runs each, so from 4 runs).
MIN_RUNS_FOR_DRIFT = 4
DRIFT_SIGNIFICANCE = 0.05  # a t-test of the two parts: a change beyond the noise within them
DRIFT_MIN_CHANGE = 0.05  # and a change beyond this share: a real but immaterial drift is no warning
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


def spread(values: list[float]) -> dict[str, float | None]:
    """min, max, the quartiles (the inclusive method, so that three runs give their own values) and the relative
    standard deviation."""
    quartiles = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else [values[0]] * 3
    return {
        "min": min(values),
        "q1": quartiles[0],
        "median": statistics.median(values),
        "q3": quartiles[2],
        "max": max(values),
        "rsd": relative_sd(values),
    }


def relative_sd(values: list[float]) -> float | None:
    """The sample standard deviation over the mean; None for one run (no spread to measure) or a mean of 0."""
    mean = statistics.fmean(values)
    return statistics.stdev(values) / mean if len(values) > 1 and mean else None


def outliers(values: list[float]) -> list[int]:
    """The positions of the values more than OUTLIER_ROBUST_SDS robust standard deviations from their median. As
    hyperfine does, a median absolute deviation of 0 (most values equal) makes every value off the median one."""
    middle = statistics.median(values)
    deviations = [abs(value - middle) for value in values]
    robust_sd = MAD_TO_SD * statistics.median(deviations)
    return [
        i
        for i, deviation in enumerate(deviations)
        if deviation > 0 and (robust_sd == 0 or deviation > OUTLIER_ROBUST_SDS * robust_sd)
    ]


@dataclass(frozen=True)
class Drift:
    """The RPS of a cell's first runs against its last (in the order measured: round by round in an interleaved
    session): their geometric means, and the t-test of the two on the logarithms."""

    runs_per_part: int
    first_mean: float
    last_mean: float
    p_value: float

    @property
    def change(self) -> float:
        return self.last_mean / self.first_mean - 1

    @property
    def beyond_noise(self) -> bool:
        """The two parts differ by more than the noise within them, and by more than DRIFT_MIN_CHANGE."""
        return self.p_value < DRIFT_SIGNIFICANCE and abs(self.change) > DRIFT_MIN_CHANGE

    def as_dict(self) -> dict:
        return {
            "runs_per_part": self.runs_per_part,
            "first_mean": self.first_mean,
            "last_mean": self.last_mean,
            "change": self.change,
            "p_value": self.p_value,
            "beyond_noise": self.beyond_noise,
        }


def drift(values: list[float]) -> Drift | None:
    """The first third of the values against the last third (2 each from 4 to 8 values): the middle third is where
    a step may lie, and the two ends say how far the session moved. Student's t-test on the logarithms judges the
    change against the noise within the ends: a run's noise is a share of its RPS, so on the logarithms a
    disturbance that halves the RPS leaves the noise alike in both, and the pooled test keeps its 2k - 2 degrees
    of freedom (Welch's falls towards 1 when one end happens to be quieter, and with 2 runs a side would call
    almost nothing). None below MIN_RUNS_FOR_DRIFT: two runs, or three, cannot tell a drift from noise."""
    if len(values) < MIN_RUNS_FOR_DRIFT:
        return None
    part = max(2, len(values) // 3)
    first, last = numpy.log(values[:part]), numpy.log(values[-part:])
    if first.var() == last.var() == 0:  # no noise at all: the t-test has no answer, the change alone decides
        p_value = 0.0 if first[0] != last[0] else 1.0
    else:
        p_value = float(_scipy_stats().ttest_ind(first, last).pvalue)
    return Drift(part, statistics.geometric_mean(values[:part]), statistics.geometric_mean(values[-part:]), p_value)


def stability(rps: list[float]) -> dict:
    """A cell's outlier runs (numbered from 1, in the order measured) and its drift (None: too few runs to
    judge), from the RPS of its measured runs."""
    found = drift(rps)
    return {
        "outliers": [{"run": i + 1, "rps": rps[i]} for i in outliers(rps)],
        "drift": found.as_dict() if found else None,
    }


def loadgen_saturated(cores: float | None, threads: int | None) -> bool:
    """A tool of a fixed thread count near that many cores, not the server, may have set the pace. Unknown cores,
    or a tool of no fixed thread count (oha, hey), are never judged."""
    return bool(threads) and cores is not None and cores >= LOADGEN_SATURATED_CORES * threads


def machine_busy(busy_share: float) -> bool:
    """Other work on the machine, before a run, beyond what a measurement tolerates."""
    return busy_share > BUSY_LIMIT


@dataclass(frozen=True)
class RssGrowth:
    """How the server tree's RSS moved over the second half of the load, from a least-squares line through
    those samples (a line, not two end points, so one sample caught mid-allocation does not decide)."""

    relative: float  # the line's rise over the half, over its value at the half's start: 0.07 is +7%
    bytes_per_s: float

    @property
    def still_growing(self) -> bool:
        return self.relative > RSS_GROWTH_LIMIT


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
    """A 95% Student t interval for the geometric mean of one cell's runs, on their logarithms as the ratio
    intervals are: never below zero, however much the runs vary. None below MIN_RUNS_FOR_INTERVAL."""
    if len(values) < MIN_RUNS_FOR_INTERVAL:
        return None
    logs = numpy.log(values)
    low, high = _t_interval(_scipy_stats().ttest_1samp(logs, 0.0), float(numpy.mean(logs)))
    return float(numpy.exp(low)), float(numpy.exp(high))


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
