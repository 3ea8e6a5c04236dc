"""What a record derives from its runs, as the harness stores it: the median run figure by figure, each
figure's spread, and the warnings of one run and of a cell's runs together. The runner writes these; the tests
build their records with the same functions (tests/conftest.make_record).
"""

from __future__ import annotations

import statistics

from gilfree.core import stats
from gilfree.core.warnings import StudyWarning, WarningKind

LOAD_FIGURES = ("rps", "latency_avg_ms", "latency_max_ms")
SUMMED = ("errors", "non_2xx")  # a fault in any run must show in the summary, not vanish under a median
RESOURCE_FIGURES = ("cpu_cores", "peak_rss_bytes")


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
    load = {name: _middle(name, [run["load"][name] for run in runs]) for name in runs[0]["load"] if name != "generator"}
    load["generator"] = runs[0]["load"]["generator"]
    resources = {name: _middle(name, [run["resources"].get(name) for run in runs]) for name in runs[0]["resources"]}
    spreads = {name: stats.spread(figure_values(runs, name)) for name in LOAD_FIGURES + RESOURCE_FIGURES}
    return load, resources, spreads


def figure_values(runs: list[dict], name: str) -> list:
    """One figure (of LOAD_FIGURES or RESOURCE_FIGURES) of every run."""
    return [run["load" if name in LOAD_FIGURES else "resources"][name] for run in runs]


def rate_shortfall(load: dict | None) -> StudyWarning | None:
    """An open-loop run (`offered_rps` set) that completed fewer requests per second than it offered, beyond
    stats.RATE_TOLERANCE: the server (or the load generator) could not keep up, and the requests never sent are in no
    latency figure."""
    offered = (load or {}).get("offered_rps")
    if offered is None or load["rps"] >= offered * (1 - stats.RATE_TOLERANCE):
        return None
    return StudyWarning(
        WarningKind.RATE_SHORTFALL,
        {
            "offered_rps": offered,
            "achieved_rps": load["rps"],
            "share": load["rps"] / offered,
            "tolerance": stats.RATE_TOLERANCE,
        },
    )


def run_warnings(run: dict, busy_share: float, cores: int, loadgen_threads: int | None = 1) -> list[StudyWarning]:
    """What makes one run doubtful: a busy machine, a saturated load generator, errors. A load generator
    of no fixed thread count (oha) cannot be judged saturated from its CPU use."""
    warnings = []
    if stats.machine_busy(busy_share):
        warnings.append(
            StudyWarning(
                WarningKind.MACHINE_BUSY, {"busy_share": busy_share, "cores": cores, "limit": stats.BUSY_LIMIT}
            )
        )
    load = run.get("load") or {}
    if stats.loadgen_saturated(load.get("loadgen_cpu_cores"), loadgen_threads):
        warnings.append(
            StudyWarning(
                WarningKind.LOADGEN_SATURATED, {"cores": load["loadgen_cpu_cores"], "threads": loadgen_threads}
            )
        )
    if load.get("errors"):
        warnings.append(StudyWarning(WarningKind.LOAD_ERRORS, {"errors": load["errors"]}))
    shortfall = rate_shortfall(run.get("load"))
    if shortfall:
        warnings.append(shortfall)
    return warnings


def cell_warnings(spreads: dict, stable: dict, runs: int) -> list[StudyWarning]:
    """What makes a cell's runs doubtful together: a spread above stats.RSD_LIMIT, outlier runs, a drift."""
    said = []
    rsd = spreads["rps"]["rsd"]
    if rsd is not None and rsd > stats.RSD_LIMIT:
        said.append(StudyWarning(WarningKind.RPS_SPREAD, {"rsd": rsd, "runs": runs, "limit": stats.RSD_LIMIT}))
    said += [
        StudyWarning(
            WarningKind.OUTLIER_RUN,
            {**outlier, "runs": runs, "median": spreads["rps"]["median"], "limit": stats.OUTLIER_ROBUST_SDS},
        )
        for outlier in stable["outliers"]
    ]
    moved = stable["drift"]
    if moved and moved["beyond_noise"]:
        said.append(
            StudyWarning(
                WarningKind.DRIFT,
                {name: moved[name] for name in ("runs_per_part", "first_mean", "last_mean", "change", "p_value")},
            )
        )
    return said


OK = "ok"  # the status of a record, or a run, that measured


def succeeded(item: dict | None) -> bool:
    """A stored record, or one of its runs, that measured: the one test of success every layer uses (the typed
    record's `ok` too)."""
    return bool(item) and item["status"] == OK


def derived(runs: list[dict], wanted: int) -> dict:
    """What a record derives from its runs alone: its status and failure, the median figures, their spread and
    the stability of its RPS. `wanted`: the runs asked for; fewer that measured leave the cell incomplete."""
    ok = [run for run in runs if succeeded(run)]
    failures = [run["failure"] for run in runs if not succeeded(run)]
    status = "failed" if failures else OK if len(ok) >= wanted else "incomplete"
    fields = {"status": status, "failure": failures[-1] if failures else None}
    fields |= {"load": None, "resources": None, "spread": None, "stability": None}
    if ok:
        fields["load"], fields["resources"], fields["spread"] = summarise(ok)
        fields["stability"] = stats.stability(figure_values(ok, "rps"))
    return fields
