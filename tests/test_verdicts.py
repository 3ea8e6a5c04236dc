"""Verdict logic on made-up runs: intervals against bands, the preconditions, and what makes a verdict
inconclusive or not comparable. Made-up records only (rendering and real data: test_compare, test_verdicts_recorded)."""

import copy

import numpy
import pytest
import scipy.stats
from conftest import make_record, typed

from gilfree.core import stats
from gilfree.report import verdicts
from gilfree.report.verdicts import BuildsDiffer, CpuBound, DoubtfulRow, FlagKind, Missing, TooFewCores
from gilfree.run.interpreters import optimisations
from gilfree.study import results
from gilfree.study.claims import Band, Verdict
from gilfree.study.record import Record
from gilfree.study.studies import article

ASGI_JSON, ASGI_IO, _, WSGI_JSON, _, THREADS, WORKERS = article().claims
GIL_W1, THREADED_W1, GIL_W2, THREADED_W2 = article().tables_by_id["asgi-json"].cells


def with_runs(cell, rps_runs, round_offset=0, logical_cores=16, **options):
    """A record of several runs, run i made in round i (alternating with the other variant's run i)."""
    record = make_record(cell, rps=rps_runs[0], **options)
    record["machine"]["logical_cores"] = logical_cores
    runs = []
    for number, rps in enumerate(rps_runs):
        run = copy.deepcopy(record["runs"][0])
        run["load"]["rps"] = rps
        run["resources"]["end_pss_bytes"] = 80 * 2**20
        minute = 2 * number + round_offset
        run["started_at"], run["finished_at"] = (
            f"2026-01-01T10:{minute:02d}:00+00:00",
            f"2026-01-01T10:{minute:02d}:40+00:00",
        )
        runs.append(run)
    record["runs"] = runs
    record["load"]["rps"] = sorted(rps_runs)[len(rps_runs) // 2]
    record["load"]["latency_avg_ms"] = cell.concurrency / record["load"]["rps"] * 1000  # Little's law: no stall
    return record


def spans(record):
    return [run.span for run in Record.read(record).ok_runs]


def stored(*records):
    return {(r["cell"]["table"], f"{verdicts.Cell(**r['cell']).key}"): r for r in records}


def asgi_json(gil_runs, threaded_runs, **options):
    """Both worker counts of table 1; 3.14t's runs interleaved with 3.14's, round by round."""
    return stored(
        with_runs(GIL_W1, gil_runs, **options),
        with_runs(THREADED_W1, threaded_runs, 1, **options),
        with_runs(GIL_W2, gil_runs, **options),
        with_runs(THREADED_W2, threaded_runs, 1, **options),
    )


@pytest.mark.parametrize(
    "threaded, expected",
    [
        ([8000, 8100, 7900], Verdict.HELD),  # ratio 0.79-0.81: inside 0.70-0.90
        ([8000, 9500, 8500], Verdict.INCONCLUSIVE),  # 0.80-0.95: straddles 0.90
        ([10000, 10200, 9900], Verdict.NOT_HELD),  # about 1.0: outside
    ],
)
def test_the_interval_over_three_runs_against_the_band(threaded, expected):
    judged = verdicts.judge(article(), ASGI_JSON, typed(asgi_json([10000, 10000, 10000], threaded)))
    assert judged.verdict == expected
    estimate = judged.estimates[0]
    assert estimate.runs == 3 and estimate.interval is not None
    low, high = estimate.interval
    # a t interval over 3 runs (quantile 4.3) is wider than the range of the round-by-round ratios
    assert low < min(estimate.pairwise) <= estimate.value <= max(estimate.pairwise) < high
    assert estimate.pairwise == pytest.approx([t / 10000 for t in threaded])


def test_a_single_run_gets_no_interval_and_is_judged_on_its_one_value():
    judged = verdicts.judge(article(), ASGI_JSON, typed(asgi_json([10000], [8000])))
    assert (judged.verdict, judged.runs) == (Verdict.HELD, 1)
    assert [e.interval for e in judged.estimates] == [None, None]
    assert [e.pairwise for e in judged.estimates] == [(), ()]


def test_two_runs_get_no_interval_either():
    judged = verdicts.judge(article(), ASGI_JSON, typed(asgi_json([10000, 10000], [8000, 8200])))
    assert judged.runs == 2 and judged.estimates[0].interval is None


def t_interval_by_hand(over, under, paired):
    """The 95% interval of the ratio, worked out here from the textbook formulas on the logarithms: a one-sample
    t on the round-by-round log ratios, or Welch's t with the Welch-Satterthwaite degrees of freedom."""
    logs_over, logs_under = numpy.log(over), numpy.log(under)
    if paired:
        differences = logs_over - logs_under
        centre, error = differences.mean(), differences.std(ddof=1) / numpy.sqrt(len(differences))
        freedom = len(differences) - 1
    else:
        centre = logs_over.mean() - logs_under.mean()
        shares = [logs.var(ddof=1) / len(logs) for logs in (logs_over, logs_under)]
        error = numpy.sqrt(sum(shares))
        freedom = sum(shares) ** 2 / sum(
            share**2 / (len(logs) - 1) for share, logs in zip(shares, (logs_over, logs_under))
        )
    quantile = scipy.stats.t.ppf(0.975, freedom)
    return numpy.exp(centre - quantile * error), numpy.exp(centre + quantile * error)


@pytest.mark.parametrize(
    "over, under, paired",
    [
        ([8000.0, 9500, 8500], [10000.0, 9000, 11000], True),
        ([8000.0, 9500, 8500], [10000.0, 9000, 11000], False),
        ([8000.0, 9500, 8500, 8800], [10000.0, 9000, 11000], False),  # unequal runs: fractional degrees of freedom
    ],
)
def test_the_ratio_interval_is_a_t_interval_on_the_logarithms(over, under, paired):
    expected = t_interval_by_hand(over, under, paired)
    if len(over) == len(under):  # these runs tell the two apart (paired 0.57-1.33, Welch 0.70-1.08)
        assert expected != pytest.approx(t_interval_by_hand(over, under, not paired), rel=0.01)
    assert stats.ratio_interval(over, under, paired=paired) == pytest.approx(expected)


def test_runs_not_made_in_the_same_rounds_are_resampled_apart():
    gil = with_runs(GIL_W1, [10000, 10000, 10000])
    threaded = with_runs(THREADED_W1, [8000, 8100, 7900], round_offset=30)  # a later session
    assert not results.paired(spans(threaded), spans(gil))
    assert results.paired(spans(with_runs(THREADED_W1, [1, 2, 3], 1)), spans(gil))


@pytest.mark.parametrize(
    "band, interval, expected",
    [
        (Band(0.9, 1.1), (0.95, 1.05), Verdict.HELD),
        (Band(0.9, 1.1), (0.85, 1.05), Verdict.INCONCLUSIVE),
        (Band(0.9, 1.1), (1.2, 1.3), Verdict.NOT_HELD),
        (Band(1.5), (1.6, 1.6), Verdict.HELD),
        (Band(0.0, 0.95), (0.96, 0.99), Verdict.NOT_HELD),
    ],
)
def test_band_judges_an_interval(band, interval, expected):
    assert band.judge(*interval) == expected


def io_pair(table_id, gil_rps, threaded_rps):
    gil, threaded = article().tables_by_id[table_id].cells[:2]
    return stored(with_runs(gil, [gil_rps]), with_runs(threaded, [threaded_rps], 1))


def test_an_io_claim_on_cpu_bound_rows_is_inconclusive_naming_the_efficiency():
    records = io_pair("asgi-io", 4096, 7168)  # 32% and 56% of 128 / 10 ms
    estimate = verdicts.estimate(
        ASGI_IO.ratios[0],
        *(verdicts.measured(typed(records))[c] for c in (ASGI_IO.ratios[0].over, ASGI_IO.ratios[0].under)),
    )
    assert estimate.outcome == Verdict.INCONCLUSIVE
    assert [(r.cell.variant, round(r.efficiency, 2)) for r in estimate.reasons] == [("3.14", 0.32), ("3.14t", 0.56)]
    assert all(isinstance(r, CpuBound) for r in estimate.reasons)


def test_an_io_claim_on_rows_near_the_ideal_is_judged():
    records = io_pair("asgi-io", 11300, 11400)
    ratio = ASGI_IO.ratios[0]
    estimate = verdicts.estimate(ratio, *(verdicts.measured(typed(records))[c] for c in (ratio.over, ratio.under)))
    assert (estimate.outcome, estimate.reasons) == (Verdict.HELD, ())


def wsgi_json(gil_rps, threaded_rps, loadgen_cores=0.15, logical_cores=2):
    records = []
    for gil, threaded in article().tables_by_id["wsgi-json"].variant_pairs(*article().variants):
        records += [
            with_runs(gil, [gil_rps], logical_cores=logical_cores),
            with_runs(threaded, [threaded_rps], 1, logical_cores=logical_cores),
        ]
    for record in records:
        record["load"]["loadgen_cpu_cores"] = loadgen_cores
    return stored(*records)


def test_not_far_faster_on_too_few_cores_is_inconclusive_with_both_figures():
    judged = verdicts.judge(article(), WSGI_JSON, typed(wsgi_json(7000, 4600)))
    assert judged.verdict == Verdict.INCONCLUSIVE
    reasons = judged.all_reasons
    assert [(r.needed, round(r.available, 2)) for r in reasons] == [(6.50, 1.85), (6.56, 1.85)]
    assert all(isinstance(r, TooFewCores) for r in reasons)


def test_far_faster_held_stands_on_any_machine_and_not_held_counts_with_the_posts_cores():
    assert verdicts.judge(article(), WSGI_JSON, typed(wsgi_json(7000, 14000))).verdict == Verdict.HELD
    assert (
        verdicts.judge(article(), WSGI_JSON, typed(wsgi_json(7000, 4600, logical_cores=16))).verdict == Verdict.NOT_HELD
    )


def test_pinned_cpus_are_the_cores_the_server_could_have_had():
    record = with_runs(GIL_W1, [1000])
    record["settings"]["server_cpus"] = [0, 1, 2]
    assert verdicts.server_cores(Record.read(record)) == 3.0
    record["settings"]["server_cpus"] = None
    assert verdicts.server_cores(Record.read(record)) == 15.5  # 16 logical CPUs less the load generator's 0.5
    record["settings"]["loadgen_host"] = "loader.example"
    assert verdicts.server_cores(Record.read(record)) == 16.0  # the load ran on another machine


@pytest.mark.parametrize(
    "edit, kind",
    [
        (lambda r: r["load"].update(loadgen_cpu_cores=0.95), FlagKind.LOADGEN_SATURATED),
        (lambda r: r["load"].update(errors=3), FlagKind.LOAD_ERRORS),
        (lambda r: r["load"].update(non_2xx=2), FlagKind.NON_2XX),
        (lambda r: r["load"].update(latency_avg_ms=r["load"]["latency_avg_ms"] / 2), FlagKind.STALLED),
    ],
)
def test_a_doubtful_row_makes_a_held_verdict_inconclusive(edit, kind):
    records = asgi_json([30000], [24000])
    assert verdicts.judge(article(), ASGI_JSON, typed(records)).verdict == Verdict.HELD
    edit(records[(GIL_W1.table, GIL_W1.key)])
    judged = verdicts.judge(article(), ASGI_JSON, typed(records))
    assert judged.verdict == Verdict.INCONCLUSIVE
    assert [(type(r), r.flag.kind, r.cell) for r in judged.all_reasons] == [(DoubtfulRow, kind, GIL_W1)]


def test_oha_is_never_judged_saturated_for_want_of_a_thread_count():
    record = with_runs(GIL_W1, [1000])
    record["load"].update(generator="oha", loadgen_cpu_cores=3.5)
    assert FlagKind.LOADGEN_SATURATED not in [flag.kind for flag in verdicts.row_flags(GIL_W1, Record.read(record))]


def test_a_stall_too_small_to_cross_the_band_leaves_the_verdict_standing():
    cells = {(c.endpoint, c.blocking_threads): c for c in article().tables_by_id["wsgi-threads-gil"].cells}
    records = [
        with_runs(cells[("io", 1)], [78]),
        with_runs(cells[("io", 128)], [3000]),
        with_runs(cells[("json", 1)], [19000]),
        with_runs(cells[("json", 128)], [9000]),
    ]
    records[0]["load"]["latency_avg_ms"] = 1400  # 78 x 1.4 s = 109 of 128 connections: 15% stalled
    judged = verdicts.judge(article(), THREADS, typed(stored(*records)))
    assert [flag.kind for flag in verdicts.row_flags(cells[("io", 1)], Record.read(records[0]))] == [FlagKind.STALLED]
    assert (judged.verdict, judged.all_reasons) == (Verdict.HELD, [])  # 38x: a 15% stall cannot make it < 1.1


def test_interpreters_built_with_different_optimisations_are_not_comparable():
    records = asgi_json([10000], [8000])
    for record in records.values():
        pgo = record["cell"]["variant"] == "3.14"
        record["interpreter"]["optimisations"] = {"pgo": pgo, "lto": False, "jit": False}
    judged = verdicts.judge(article(), ASGI_JSON, typed(records))
    assert judged.verdict == Verdict.NOT_COMPARABLE
    assert [type(r) for r in judged.reasons] == [BuildsDiffer, BuildsDiffer]


def test_unknown_build_flags_do_not_block_a_verdict():
    records = asgi_json([10000], [8000])
    for record in records.values():
        record["interpreter"]["optimisations"] = None
    assert verdicts.judge(article(), ASGI_JSON, typed(records)).verdict == Verdict.HELD


@pytest.mark.parametrize(
    "config_args, expected",
    [
        ("'--enable-optimizations' '--with-lto' '--prefix=/opt/x'", {"pgo": True, "lto": True, "jit": False}),
        ("'--disable-gil' '--prefix=/opt/py314t'", {"pgo": False, "lto": False, "jit": False}),
        ("'--with-lto=no' '--enable-experimental-jit=yes'", {"pgo": False, "lto": False, "jit": True}),
        ("'--enable-experimental-jit=yes-off'", {"pgo": False, "lto": False, "jit": False}),
        (None, None),
    ],
)
def test_optimisations_are_read_from_configure_arguments(config_args, expected):
    assert optimisations(config_args) == expected


def test_not_measured_names_the_session_that_would_measure_it():
    judged = verdicts.judge(article(), ASGI_JSON, typed(stored(with_runs(GIL_W1, [1000]))))
    assert judged.verdict == Verdict.NOT_MEASURED
    (missing,) = judged.reasons
    assert isinstance(missing, Missing) and missing.sessions == ("asgi",)
    assert verdicts.sessions_measuring(article(), [THREADED_W1, THREADED_W2]) == ("asgi-3.14t", "asgi")
    assert verdicts.judge(article(), WORKERS, typed({})).reasons[0].sessions == ("wsgi-workers-3.14t",)


def test_a_memory_verdict_uses_pss_where_recorded_and_keeps_summed_rss_beside_it():
    memory = article().claims[2].ratios[0]
    gil, threaded = with_runs(memory.under, [1000]), with_runs(memory.over, [1000], 1)
    gil["runs"][0]["resources"].update(end_pss_bytes=100 * 2**20, peak_rss_bytes=150 * 2**20)
    threaded["runs"][0]["resources"].update(end_pss_bytes=90 * 2**20, peak_rss_bytes=90 * 2**20)
    estimate = verdicts.estimate(memory, Record.read(threaded), Record.read(gil))
    assert (estimate.on_pss, estimate.value, estimate.summed_rss) == (True, pytest.approx(0.9), pytest.approx(0.6))
    del gil["runs"][0]["resources"]["end_pss_bytes"]
    assert verdicts.estimate(memory, Record.read(threaded), Record.read(gil)).value == pytest.approx(
        0.6
    )  # no PSS: summed RSS, as the post


def test_the_posts_own_figures_fall_inside_every_band():
    assert all(
        ratio.band.judge(verdicts.post_value(article(), ratio), verdicts.post_value(article(), ratio)) == Verdict.HELD
        for claim in article().claims
        for ratio in claim.ratios
    )
