"""Many runs of one cell summarised: the median of each figure, its spread, and the warnings that say when a
result should not be trusted."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

# A cell whose RPS moves more than this across its runs (max - min over the median) is flagged.
VARIATION_LIMIT = 0.10
# wrk and rewrk drive the load from one thread: near a full core, they, not the server, set the pace.
LOADGEN_SATURATED_CORES = 0.9
# Busy before the run: system-wide CPU use above this share, measured just before the server starts.
BUSY_LIMIT = 0.15
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
    resources = {name: _middle(name, [run["resources"][name] for run in runs]) for name in runs[0]["resources"]}
    spreads = {name: spread([run["load"][name] for run in runs]) for name in LOAD_FIGURES}
    spreads |= {name: spread([run["resources"][name] for run in runs]) for name in RESOURCE_FIGURES}
    return load, resources, spreads


def percentile_ms(load: dict | None, percentile: str) -> float | None:
    """One latency percentile of a record's (or a run's) load, such as "99"; None where the load generator gave
    none (rewrk), the run failed, or the record predates percentiles."""
    return ((load or {}).get("latency_percentiles_ms") or {}).get(percentile)


@dataclass(frozen=True)
class RateShortfall:
    """An open-loop run that completed fewer requests per second than it offered: the server (or the load
    generator) could not keep up, and the requests never sent are in no latency figure."""

    offered_rps: float
    achieved_rps: float

    def __str__(self) -> str:
        return (f"achieved {self.achieved_rps:.0f} RPS of the {self.offered_rps:.10g} offered "
                f"({self.achieved_rps / self.offered_rps:.0%}, tolerance {RATE_TOLERANCE:.0%}): the server, or the "
                f"load generator, could not keep up, and the requests never sent are in no latency figure")


def rate_shortfall(load: dict | None) -> RateShortfall | None:
    """The shortfall of an open-loop run (`offered_rps` set) below its offered rate, beyond RATE_TOLERANCE."""
    offered = (load or {}).get("offered_rps")
    if offered is None or load["rps"] >= offered * (1 - RATE_TOLERANCE):
        return None
    return RateShortfall(offered, load["rps"])


def variation(spreads: dict) -> float:
    rps = spreads["rps"]
    return (rps["max"] - rps["min"]) / rps["median"] if rps["median"] else 0.0


def run_warnings(run: dict, busy_share: float, cores: int, loadgen_threads: int | None = 1) -> list[str]:
    """What makes one run doubtful: a busy machine, a saturated load generator, errors. A load generator
    of no fixed thread count (oha) cannot be judged saturated from its CPU use."""
    warnings = []
    if busy_share > BUSY_LIMIT:
        warnings.append(f"machine busy before the run: {busy_share:.0%} CPU use across {cores} cores "
                        f"(limit {BUSY_LIMIT:.0%})")
    load = run.get("load") or {}
    if loadgen_threads and (load.get("loadgen_cpu_cores") or 0) >= LOADGEN_SATURATED_CORES * loadgen_threads:
        warnings.append(f"load generator used {load['loadgen_cpu_cores']:.2f} cores from {loadgen_threads} "
                        f"thread(s): it may be the bottleneck")
    if load.get("errors"):
        warnings.append(f"{load['errors']} errors during the load")
    shortfall = rate_shortfall(run.get("load"))
    if shortfall:
        warnings.append(str(shortfall))
    return warnings


def variation_warning(spreads: dict, runs: int) -> list[str]:
    spread_rps = variation(spreads)
    if runs > 1 and spread_rps > VARIATION_LIMIT:
        return [f"RPS varied {spread_rps:.0%} across {runs} runs (limit {VARIATION_LIMIT:.0%})"]
    return []
