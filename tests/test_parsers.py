"""Each load generator's report becomes the same figures. rewrk and oha output is recorded (see recorded/README.md)."""

from pathlib import Path

import pytest

from gilfree.loadgen import LOADGENS, LoadGenError, run_load

RECORDED = Path(__file__).with_name("recorded")


def test_rewrk_text_report_with_errors():
    result = LOADGENS["rewrk"].parse((RECORDED / "rewrk-0.3.2-rpxy.txt").read_text())
    assert (result.rps, result.latency_avg_ms, result.latency_max_ms) == (43666.56, 11.65, 205.93)
    assert (result.requests, result.errors, result.non_2xx) == (654978, 512, None)  # rewrk cannot tell


def test_rewrk_sums_every_error_line_and_ignores_colour():
    text = (RECORDED / "rewrk-0.3.2-rpxy.txt").read_text().replace(
        "Req/Sec: 43666.56", "Req/Sec: \x1b[36m43666.56\x1b[0m") + "7 Errors: connection reset\n"
    assert LOADGENS["rewrk"].parse(text).errors == 519


def test_rewrk_without_a_report_is_an_error():
    with pytest.raises(LoadGenError, match="no report"):
        LOADGENS["rewrk"].parse("Beginning round 1...\nNo requests completed successfully\n")


def test_oha_report_counts_deadline_aborts_as_neither_requests_nor_errors():
    result = LOADGENS["oha"].parse((RECORDED / "oha-lambda-dispatch.json").read_text())
    assert result.requests == 27117
    assert result.rps == pytest.approx(27117 / 10.00201409)
    assert result.latency_avg_ms == pytest.approx(7.3664044)
    assert result.latency_max_ms == pytest.approx(213.890559)
    assert (result.errors, result.non_2xx) == (0, 0)


def test_oha_counts_non_2xx_and_real_errors():
    text = (RECORDED / "oha-lambda-dispatch.json").read_text().replace(
        '{ "200": 27117 }', '{ "200": 27000, "503": 117 }').replace(
        '{ "aborted due to deadline": 20 }', '{ "aborted due to deadline": 20, "connection reset": 3 }')
    result = LOADGENS["oha"].parse(text)
    assert (result.requests, result.non_2xx, result.errors) == (27117, 117, 3)


def test_wrk_lua_report():
    # The line our wrk_report.lua prints, as wrk 4.1.0 printed it on this machine.
    stdout = ("Running 1s test @ http://127.0.0.1:8000/json\n...\n"
              '{"duration_us": 1001550, "requests": 21765, "bytes": 3308280, "latency_mean_us": 733.079, '
              '"latency_max_us": 1725, "errors_connect": 1, "errors_read": 2, "errors_write": 0, '
              '"errors_timeout": 4, "errors_status": 9}\n')
    result = LOADGENS["wrk"].parse(stdout)
    assert result.rps == pytest.approx(21765 / 1.00155)
    assert (result.latency_avg_ms, result.latency_max_ms) == (pytest.approx(0.733079), 1.725)
    assert (result.requests, result.errors, result.non_2xx) == (21765, 7, 9)


@pytest.mark.parametrize("tool", ["wrk", "oha"])
def test_garbage_is_an_error_naming_the_tool(tool):
    with pytest.raises(LoadGenError, match=tool):
        LOADGENS[tool].parse("Segmentation fault\n")


def test_a_failing_load_generator_is_an_error_carrying_its_stderr():
    # Real wrk, given an option it does not know: it exits non-zero and says why on stderr.
    with pytest.raises(LoadGenError, match=r"wrk exited with status \d+: .*") as failure:
        run_load(LOADGENS["wrk"], ["wrk", "--no-such-option", "http://127.0.0.1:9/"], duration_s=1)
    assert "Usage: wrk" in str(failure.value) or "unrecognized option" in str(failure.value)
