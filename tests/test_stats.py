"""Several runs of a cell: medians, spread, and the warnings that say a result should not be trusted."""

import pytest

from gilfree.core import stats
from gilfree.core.stats import DRIFT_SIGNIFICANCE
from gilfree.core.warnings import WarningKind
from gilfree.study import summary
from gilfree.study.record import Load, Resources
from gilfree.study.studies import article


def made_up_run(rps, errors=0, loadgen_cpu=0.5, rss=100):
    return {
        "status": "ok",
        "warnings": [],
        "load": {
            "rps": rps,
            "latency_avg_ms": 128_000 / rps,
            "latency_max_ms": 50.0,
            "requests": int(rps * 30),
            "errors": errors,
            "non_2xx": 0,
            "generator": "wrk",
            "loadgen_cpu_cores": loadgen_cpu,
            "loadgen_wall_s": 30.0,
        },
        "resources": {
            "cpu_cores": 1.0,
            "peak_rss_bytes": rss,
            "peak_processes": 2,
            "peak_threads": 5,
            "samples": 120,
            "interval_s": 0.25,
            "window_s": 30.0,
            "sampler_cpu_s": 0.1,
        },
    }


def test_median_figure_by_figure_and_spread():
    load, resources, spread = summary.summarise(
        [made_up_run(100, rss=300), made_up_run(300, rss=100), made_up_run(200, rss=200)]
    )
    assert load["rps"] == 200 and resources["peak_rss_bytes"] == 200
    assert spread["rps"] == {"min": 100, "q1": 150, "median": 200, "q3": 250, "max": 300, "rsd": 0.5}


def test_errors_in_any_run_are_summed_not_hidden_by_the_median():
    load, _, _ = summary.summarise([made_up_run(100), made_up_run(100, errors=7), made_up_run(100)])
    assert load["errors"] == 7


def cell_warnings(rps: list[float]):
    _, _, spreads = summary.summarise([made_up_run(value) for value in rps])
    return summary.cell_warnings(spreads, stats.stability(rps), len(rps))


def test_the_spread_warning_fires_above_the_relative_standard_deviation_limit_only():
    assert cell_warnings([1000, 1040, 1090]) == []  # RSD 4.3%
    [spread] = cell_warnings([1000, 1100, 1200])  # RSD 9.1%
    assert (spread.kind, spread.values["runs"], round(spread.values["rsd"], 4)) == (WarningKind.RPS_SPREAD, 3, 0.0909)
    assert spread.message == "RPS spread 9.1% (relative standard deviation) across 3 runs (limit 5%)"
    assert cell_warnings([1000]) == [] and stats.relative_sd([1000]) is None  # one run: no spread to judge


STEADY = [1012, 987, 1003, 995, 1021, 979, 1008, 992]  # RSD 1.4%


def test_a_run_far_from_the_median_is_named_with_its_value():
    assert stats.outliers(STEADY) == []
    hit = STEADY[:5] + [420] + STEADY[6:]  # run 6 disturbed
    assert stats.outliers(hit) == [5]
    assert stats.stability(hit)["outliers"] == [{"run": 6, "rps": 420}]
    [outlier] = [w for w in cell_warnings(hit) if w.kind is WarningKind.OUTLIER_RUN]
    assert outlier.message.startswith("run 6 of 8 is an outlier: 420 RPS against a median of 999, more than 10 ")


def test_outliers_need_more_than_ordinary_noise_and_equal_runs_leave_any_other_one_out():
    assert stats.outliers([1000, 1150, 880, 1010]) == []  # noisy, but none 10 robust standard deviations out
    assert stats.outliers([1000, 1000, 1000, 1000, 1003]) == [4]  # no deviation at all but one: as hyperfine
    assert stats.outliers([1000, 1000]) == [] and stats.outliers([1000]) == []


def test_a_step_between_rounds_is_a_drift_and_flat_noise_is_not():
    step = [1012, 987, 1003, 995, 610, 585, 603, 597]  # a CPU hog from round 5
    found = stats.drift(step)
    assert found.runs_per_part == 2  # the first and last third
    assert (found.first_mean, found.last_mean) == pytest.approx((999.4, 600.0), abs=0.1)  # geometric means
    assert found.change == pytest.approx(-0.3997, abs=1e-4) and found.p_value < 0.01 and found.beyond_noise
    [drifted] = [w for w in cell_warnings(step) if w.kind is WarningKind.DRIFT]
    assert drifted.message.startswith(
        "RPS drifted -40% from the first 2 runs (geometric mean 999) to the last 2 "
        "(600), beyond the noise within them (t-test, p=0.00"
    )
    noisy_flat = [1000, 1150, 880, 1010, 1120, 905, 990, 1100, 920]  # RSD 9.5%, no trend
    assert not stats.drift(noisy_flat).beyond_noise
    assert [w.kind for w in cell_warnings(noisy_flat)] == [WarningKind.RPS_SPREAD]


def test_a_significant_but_small_change_is_no_drift():
    small = stats.drift([1000, 1001, 999, 1000, 1030, 1031])  # +3%, far beyond noise this small
    assert small.p_value < DRIFT_SIGNIFICANCE and not small.beyond_noise


def test_fewer_than_four_runs_give_no_drift_verdict_at_all():
    assert stats.drift([1000, 1000, 500]) is None
    assert stats.stability([1000, 1000, 500])["drift"] is None
    assert stats.drift([1000, 1000, 500, 500]).beyond_noise  # no noise within the parts: the change decides


def test_run_warnings_busy_machine_saturated_load_generator_and_errors():
    assert summary.run_warnings(made_up_run(100), busy_share=0.05, cores=2) == []
    warnings = summary.run_warnings(made_up_run(100, errors=3, loadgen_cpu=0.97), busy_share=0.6, cores=2)
    assert [(warning.kind, warning.values) for warning in warnings] == [
        (WarningKind.MACHINE_BUSY, {"busy_share": 0.6, "cores": 2, "limit": stats.BUSY_LIMIT}),
        (WarningKind.LOADGEN_SATURATED, {"cores": 0.97, "threads": 1}),
        (WarningKind.LOAD_ERRORS, {"errors": 3}),
    ]
    assert [warning.message for warning in warnings] == [
        "machine busy before the run: 60% CPU use across 2 cores (limit 15%)",
        "load generator used 0.97 cores from 1 thread(s): it may be the bottleneck",
        "3 errors during the load",
    ]


def test_a_load_generator_of_many_threads_is_not_judged_saturated():
    assert summary.run_warnings(made_up_run(100, loadgen_cpu=1.5), busy_share=0.0, cores=2, loadgen_threads=None) == []
    assert summary.run_warnings(made_up_run(100, loadgen_cpu=1.5), busy_share=0.0, cores=2, loadgen_threads=2) == []


def test_counts_stay_whole_numbers():
    load, resources, _ = summary.summarise([made_up_run(100), made_up_run(110)])
    assert isinstance(load["requests"], int) and isinstance(resources["peak_processes"], int)


def test_spread_of_one_run_is_that_run():
    _, _, spread = summary.summarise([made_up_run(100)])
    assert spread["rps"] == {"min": 100, "q1": 100, "median": 100, "q3": 100, "max": 100, "rsd": None}


def test_a_figure_the_tool_cannot_give_stays_unknown_not_zero():
    runs = [made_up_run(100), made_up_run(110)]
    for run in runs:
        run["load"]["non_2xx"] = None  # as rewrk reports it
    load, _, _ = summary.summarise(runs)
    assert load["non_2xx"] is None and load["errors"] == 0


MiB = 2**20
TIMES = [i * 0.25 for i in range(41)]  # a 10 s load sampled every 0.25 s


def test_rss_still_growing_over_the_second_half_is_flagged():
    growth = stats.rss_growth(TIMES, [int(100 * MiB + 2 * MiB * t) for t in TIMES])
    assert growth.relative == pytest.approx(10 / 110)  # 110 MiB at 5 s, 120 MiB at 10 s
    assert growth.bytes_per_s == pytest.approx(2 * MiB) and growth.still_growing


def test_flat_rss_and_growth_that_stopped_in_the_first_half_are_not_flagged():
    noisy_flat = stats.rss_growth(TIMES, [100 * MiB + (MiB if i % 2 else -MiB) for i in range(len(TIMES))])
    settled = stats.rss_growth(TIMES, [int(min(60 + 20 * t, 140) * MiB) for t in TIMES])  # flat from 4 s
    for growth in (noisy_flat, settled):
        assert abs(growth.relative) < 0.01 and not growth.still_growing


def test_growth_just_below_the_limit_is_not_flagged_and_just_above_it_is():
    def over_half(share):  # RSS that rises by `share` of its mid-load value over the second half
        return [int(MiB * (100 + max(0.0, t - 5) * 100 * share / 5)) for t in TIMES]

    assert not stats.rss_growth(TIMES, over_half(0.049)).still_growing
    assert stats.rss_growth(TIMES, over_half(0.051)).still_growing


def test_too_few_samples_leave_the_growth_unknown():
    assert stats.rss_growth([], []) is None
    assert stats.rss_growth([0.0, 0.25, 0.5, 0.75, 1.0], [MiB, 2 * MiB, 3 * MiB, 4 * MiB, 5 * MiB]) is None
    assert Resources(rss_growth_last_half=None, rss_growth_bytes_per_s=None).growth is None
    assert Resources(peak_rss_bytes=MiB).growth is None  # a record from before timelines


def test_the_rows_growth_is_the_median_of_its_runs_and_unknown_if_any_run_lacks_it():
    runs = [made_up_run(100), made_up_run(100), made_up_run(100)]
    for run, growth in zip(runs, (0.01, 0.09, 0.07)):
        run["resources"] |= {"rss_growth_last_half": growth, "rss_growth_bytes_per_s": growth * MiB}
    _, resources, _ = summary.summarise(runs)
    assert Resources(**resources).growth == stats.RssGrowth(0.07, 0.07 * MiB)
    runs[2]["resources"]["rss_growth_last_half"] = None  # a load too short to tell
    _, resources, _ = summary.summarise(runs)
    assert Resources(**resources).growth is None


def test_a_row_at_70_percent_of_the_ceiling_or_more_is_near_it():
    assert stats.CeilingCheck(rps=7000, ceiling_rps=10000).near_ceiling
    assert not stats.CeilingCheck(rps=6999, ceiling_rps=10000).near_ceiling
    unchecked = stats.CeilingCheck(rps=50000, ceiling_rps=None)
    assert not unchecked.checked and unchecked.share is None and not unchecked.near_ceiling


def with_percentiles(run, p50, p99):
    run["load"]["latency_percentiles_ms"] = {"50": p50, "90": p50 * 1.5, "99": p99, "99.9": None}
    return run


def test_percentiles_are_summarised_percentile_by_percentile():
    load, _, _ = summary.summarise(
        [
            with_percentiles(made_up_run(100), 4.0, 30.0),
            with_percentiles(made_up_run(100), 5.0, 10.0),
            with_percentiles(made_up_run(100), 3.0, 20.0),
        ]
    )
    assert load["latency_percentiles_ms"] == {"50": 4.0, "90": 6.0, "99": 20.0, "99.9": None}
    assert Load(**load).percentile_ms("99") == 20.0 and Load(**load).percentile_ms("99.9") is None


def test_percentiles_missing_from_one_run_stay_unknown():
    runs = [with_percentiles(made_up_run(100), 4.0, 30.0), made_up_run(100)]
    runs[1]["load"]["latency_percentiles_ms"] = None  # as rewrk reports them
    load, _, _ = summary.summarise(runs)
    assert load["latency_percentiles_ms"] is None
    assert Load(**load).percentile_ms("99") is None


def open_loop_run(offered, achieved):
    run = made_up_run(achieved)
    run["load"]["offered_rps"] = offered
    return run


def test_an_open_loop_run_short_of_its_offered_rate_is_flagged_with_a_typed_warning():
    assert summary.rate_shortfall(open_loop_run(200.0, 199.2)["load"]) is None
    assert summary.rate_shortfall(open_loop_run(200.0, 190.0)["load"]) is None  # 5% short: within the tolerance
    assert summary.rate_shortfall(made_up_run(100)["load"]) is None  # closed loop: nothing was offered
    short = open_loop_run(100000.0, 19387.0)
    shortfall = summary.rate_shortfall(short["load"])
    assert shortfall.kind is WarningKind.RATE_SHORTFALL
    assert (shortfall.values["offered_rps"], shortfall.values["achieved_rps"]) == (100000.0, 19387.0)
    [warning] = summary.run_warnings(short, busy_share=0.0, cores=2, loadgen_threads=None)
    assert warning == shortfall
    assert warning.message.startswith("achieved 19387 RPS of the 100000 offered (19%, tolerance 5%)")


def test_a_schema_4_records_sentences_are_read_back_into_their_kinds(tmp_path):
    """Records stored before warnings had kinds migrate in memory; a sentence of no known template stays text."""
    from conftest import make_record

    from gilfree.study import results

    record = make_record(article().tables_by_id["asgi-json"].cells[0])
    record["schema"] = 4
    record["warnings"] = [
        "RPS varied 18% across 3 runs (limit 10%)",
        "CPython 3.14.7 is not the post's 3.14.0",
        "something else",
    ]
    record["runs"][0]["warnings"] = ["machine busy before the run: 60% CPU use across 2 cores (limit 15%)"]
    migrated = results.migrate(record, tmp_path / "x.json")
    assert [(w["kind"], w["values"]) for w in migrated["warnings"]] == [
        ("rps_varied", {"variation": 0.18, "runs": 3, "limit": 0.10}),
        ("other_release", {"version": "3.14.7", "wanted": "3.14.0", "profile": "article"}),
        ("unsorted", {"text": "something else"}),
    ]
    [busy] = migrated["runs"][0]["warnings"]
    assert busy["kind"] == "machine_busy" and busy["values"]["busy_share"] == 0.6
    assert busy["message"] == "machine busy before the run: 60% CPU use across 2 cores (limit 15%)"
