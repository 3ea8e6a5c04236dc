"""Each load generator's report becomes the same figures. The reports are real output, recorded: where and how
each was made is in recorded/README.md. The tools themselves run for real in test_integration."""

import json
from pathlib import Path

import pytest

from gilfree.run.loadgen import LOADGENS, PERCENTILES, LoadGenError, LoadResult, run_load

RECORDED = Path(__file__).with_name("recorded")
REWRK = RECORDED / "rewrk-0.3.2"  # real rewrk 0.3.2 against Granian 2.5.5 on CPython 3.14.7t


def test_rewrk_text_report_with_errors():
    result = LOADGENS["rewrk"].parse((RECORDED / "rewrk-0.3.2-rpxy.txt").read_text())
    assert (result.rps, result.latency_avg_ms, result.latency_max_ms) == (43666.56, 11.65, 205.93)
    assert (result.requests, result.errors, result.non_2xx) == (654978, 512, None)  # rewrk cannot tell
    assert result.latency_percentiles_ms is None  # that report's --pct table is no percentile


def test_rewrk_normal_report():
    result = LOADGENS["rewrk"].parse((REWRK / "normal.stdout").read_text())
    assert (result.rps, result.latency_avg_ms, result.latency_max_ms) == (7773.66, 8.22, 21.20)
    assert (result.requests, result.errors, result.non_2xx, result.latency_percentiles_ms) == (23295, 0, None, None)


def test_rewrk_pct_table_is_not_read_as_percentiles():
    """Its "50%" row, 9.60ms, is above the mean, 8.34ms: it is the mean of the slowest half, not a median."""
    text = (REWRK / "pct.stdout").read_text()
    assert "|       50%       |     9.60ms      |" in text
    result = LOADGENS["rewrk"].parse(text)
    assert (result.rps, result.latency_avg_ms, result.latency_max_ms, result.requests) == (7649.09, 8.34, 20.42, 22951)
    assert result.latency_percentiles_ms is None and result.errors == 0


def test_rewrk_counts_the_errors_of_a_server_killed_during_the_load():
    result = LOADGENS["rewrk"].parse((REWRK / "server-killed.stdout").read_text())
    assert (result.requests, result.errors, result.rps) == (9255, 64, 1542.43)  # rewrk still exited 0
    assert (REWRK / "server-killed.exit").read_text().strip() == "exit 0"


def test_rewrk_without_a_server_is_an_error_not_a_measurement():
    assert (REWRK / "no-server.exit").read_text().strip() == "exit 0"  # rewrk says all is well
    with pytest.raises(LoadGenError, match="no report"):
        LOADGENS["rewrk"].parse((REWRK / "no-server.stdout").read_text())


def test_rewrk_sums_every_error_line_and_ignores_colour():
    text = (RECORDED / "rewrk-0.3.2-rpxy.txt").read_text().replace(
        "Req/Sec: 43666.56", "Req/Sec: \x1b[36m43666.56\x1b[0m"
    ) + "7 Errors: connection reset\n"
    assert LOADGENS["rewrk"].parse(text).errors == 519


def test_rewrk_without_a_report_is_an_error():
    with pytest.raises(LoadGenError, match="no report"):
        LOADGENS["rewrk"].parse("Beginning round 1...\nNo requests completed successfully\n")


def test_oha_1_16_report_with_percentiles():
    result = LOADGENS["oha"].parse((RECORDED / "oha-1.16.0-json.json").read_text())
    assert result.requests == 13544 and result.rps == pytest.approx(13544 / 1.003098519)
    assert (result.latency_avg_ms, result.latency_max_ms) == (pytest.approx(4.710525), pytest.approx(12.525682))
    assert result.latency_percentiles_ms == pytest.approx(
        {"50": 4.522305, "90": 5.79983, "99": 10.276677, "99.9": 12.029251}
    )
    assert (result.errors, result.non_2xx) == (0, 0)  # 64 requests cut at the deadline are neither
    assert result.inconsistencies(LOADGENS["oha"].resolution_ms) == []


def test_oha_without_any_response_is_an_error():
    report = json.loads((RECORDED / "oha-1.16.0-json.json").read_text())
    report["statusCodeDistribution"] = {}
    report["errorDistribution"] = {"connection refused": 5}
    with pytest.raises(LoadGenError, match="no response.*connection refused"):
        LOADGENS["oha"].parse(json.dumps(report))


def test_oha_open_loop_command_corrects_latency():
    assert LOADGENS["oha"].command("http://h/json", 2, 64, rate=5000.0) == [
        "oha",
        "-z",
        "2s",
        "-c",
        "64",
        "-q",
        "5000",
        "--latency-correction",
        "--no-tui",
        "--output-format",
        "json",
        "http://h/json",
    ]
    assert "-q" not in LOADGENS["oha"].command("http://h/json", 2, 64)
    assert LOADGENS["oha"].command("http://h/json", 2, 64, rate=2.5)[5:7] == ["-q", "2.5"]


@pytest.mark.parametrize("tool", ["rewrk", "wrk", "hey"])
def test_closed_loop_tools_refuse_a_rate(tool):
    with pytest.raises(LoadGenError, match="closed loop"):
        LOADGENS[tool].command("http://h/json", 2, 64, rate=100.0)


def test_hey_report():
    result = LOADGENS["hey"].parse((RECORDED / "hey-0.1.4-json.txt").read_text())
    assert result.rps == pytest.approx(10780 / 1.0067)  # not hey's Requests/sec, which counts failures too
    assert (result.latency_avg_ms, result.latency_max_ms) == (pytest.approx(5.9), pytest.approx(13.2))
    assert result.latency_percentiles_ms == pytest.approx({"50": 5.8, "90": 7.7, "99": 10.4, "99.9": None})
    assert (result.requests, result.errors, result.non_2xx) == (10780, 0, 0)
    assert result.inconsistencies(LOADGENS["hey"].resolution_ms) == []


def test_hey_counts_non_2xx_from_its_status_code_distribution():
    result = LOADGENS["hey"].parse((RECORDED / "hey-0.1.4-404.txt").read_text())
    assert (result.requests, result.non_2xx, result.errors) == (10733, 10733, 0)


def test_hey_without_a_server_is_an_error_naming_hey_s_own_error():
    with pytest.raises(LoadGenError, match=r"hey got no response \(\d+ errors: .*connection refused"):
        LOADGENS["hey"].parse((RECORDED / "hey-0.1.4-no-server.txt").read_text())


def test_hey_errors_beside_responses_are_counted():
    text = (RECORDED / "hey-0.1.4-json.txt").read_text() + (
        '\nError distribution:\n  [3]\tGet "http://127.0.0.1:8000/json": EOF\n'
        '  [2]\tGet "http://127.0.0.1:8000/json": read: connection reset by peer\n'
    )
    result = LOADGENS["hey"].parse(text)
    assert (result.requests, result.errors) == (10780, 5)


def test_hey_beyond_the_million_latencies_it_keeps_is_refused():
    text = (RECORDED / "hey-0.1.4-json.txt").read_text().replace("[200]\t10780 responses", "[200]\t1000001 responses")
    with pytest.raises(LoadGenError, match="first 1000000 only.*shorter --duration"):
        LOADGENS["hey"].parse(text)


def made_up(avg, top, percentiles):
    return LoadResult(
        rps=1000.0,
        latency_avg_ms=avg,
        latency_max_ms=top,
        requests=1000,
        errors=0,
        non_2xx=0,
        latency_percentiles_ms=dict(zip(PERCENTILES, percentiles)),
    )


@pytest.mark.parametrize(
    "avg, top, percentiles, problem",
    [
        (5.0, 50.0, (4.0, 9.0, 8.0, 20.0), "p90 9.000ms above p99 8.000ms"),
        (5.0, 50.0, (4.0, 9.0, 30.0, 60.0), "p99.9 60.000ms above the maximum 50.000ms"),
        (60.0, 50.0, (4.0, 9.0, 30.0, 40.0), "mean 60.000ms above the maximum"),
        (5.0, 50.0, (11.0, 12.0, 30.0, 40.0), "p50 11.000ms needs a mean of at least 5.500ms"),
        (1.0, 5000.0, (1.0, 2.0, 3.0, 4000.0), "p99.9 4000.000ms needs a mean of at least 4.000ms"),
        (30.0, 50.0, (4.0, 9.0, 30.0, 40.0), "mean 30.000ms above (p50 + max) / 2 = 27.000ms"),
    ],
)
def test_impossible_percentiles_are_named(avg, top, percentiles, problem):
    assert problem in "; ".join(made_up(avg, top, percentiles).inconsistencies(0.001))


def test_percentiles_within_rounding_and_missing_ones_are_accepted():
    assert made_up(5.0, 50.0, (4.0, 9.0, 30.0, None)).inconsistencies(0.001) == []
    assert made_up(5.0, 50.0, (4.0, 9.05, 9.0, 50.05)).inconsistencies(0.1) == []  # hey prints 0.1 ms steps


def test_a_report_that_cannot_be_right_fails_the_run(tmp_path):
    report = json.loads((RECORDED / "oha-1.16.0-json.json").read_text())
    report["latencyPercentiles"]["p99"] = 1.0  # 1 s, above the slowest request
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report))
    with pytest.raises(LoadGenError, match=r"oha's report cannot be right: p99 1000.000ms above p99.9"):
        run_load(LOADGENS["oha"], ["cat", str(path)], duration_s=1)


def test_oha_report_counts_deadline_aborts_as_neither_requests_nor_errors():
    result = LOADGENS["oha"].parse((RECORDED / "oha-lambda-dispatch.json").read_text())
    assert result.requests == 27117
    assert result.rps == pytest.approx(27117 / 10.00201409)
    assert result.latency_avg_ms == pytest.approx(7.3664044)
    assert result.latency_max_ms == pytest.approx(213.890559)
    assert (result.errors, result.non_2xx) == (0, 0)


def test_oha_counts_non_2xx_and_real_errors():
    text = (
        (RECORDED / "oha-lambda-dispatch.json")
        .read_text()
        .replace('{ "200": 27117 }', '{ "200": 27000, "503": 117 }')
        .replace('{ "aborted due to deadline": 20 }', '{ "aborted due to deadline": 20, "connection reset": 3 }')
    )
    result = LOADGENS["oha"].parse(text)
    assert (result.requests, result.non_2xx, result.errors) == (27117, 117, 3)


# The line our wrk_report.lua printed from wrk 4.1.0 (Debian) on the development VM, against Granian 2.5.5
# (FastAPI, 1 worker, CPython 3.12.1), `wrk -t 1 -c 64 -d 1s`.
WRK_LINE = (
    '{"duration_us": 1001422, "requests": 20494, "bytes": 3115088, "latency_mean_us": 3164.842, '
    '"latency_max_us": 12277, "latency_percentiles_us": {"50": 2633, "90": 4559, "99": 8179, "99.9": 11991}, '
    '"errors_connect": 0, "errors_read": 0, "errors_write": 0, "errors_timeout": 0, "errors_status": 0}'
)


def test_wrk_lua_report():
    errors = {"errors_connect": 1, "errors_read": 2, "errors_timeout": 4, "errors_status": 9}  # edited from 0
    stdout = "Running 1s test @ http://127.0.0.1:18231/json\n...\n" + json.dumps(json.loads(WRK_LINE) | errors)
    result = LOADGENS["wrk"].parse(stdout)
    assert result.rps == pytest.approx(20494 / 1.001422)
    assert (result.latency_avg_ms, result.latency_max_ms) == (pytest.approx(3.164842), 12.277)
    assert (result.requests, result.errors, result.non_2xx) == (20494, 7, 9)
    assert result.latency_percentiles_ms == pytest.approx({"50": 2.633, "90": 4.559, "99": 8.179, "99.9": 11.991})
    assert result.inconsistencies(LOADGENS["wrk"].resolution_ms) == []


def test_wrk_without_a_response_is_an_error():
    with pytest.raises(LoadGenError, match="wrk got no response"):
        LOADGENS["wrk"].parse(json.dumps(json.loads(WRK_LINE) | {"requests": 0, "errors_connect": 64}))


@pytest.mark.parametrize("tool", ["wrk", "oha", "hey", "rewrk"])
def test_garbage_is_an_error_naming_the_tool(tool):
    with pytest.raises(LoadGenError, match=tool):
        LOADGENS[tool].parse("Segmentation fault\n")


def test_a_failing_load_generator_is_an_error_carrying_its_stderr():
    # Real wrk, given an option it does not know: it exits non-zero and says why on stderr.
    with pytest.raises(LoadGenError, match=r"wrk exited with status \d+: .*") as failure:
        run_load(LOADGENS["wrk"], ["wrk", "--no-such-option", "http://127.0.0.1:9/"], duration_s=1)
    assert "Usage: wrk" in str(failure.value) or "unrecognized option" in str(failure.value)
