"""Every load generator for real, against real Granian serving the FastAPI app on a GIL interpreter that is here:
rewrk 0.3.2 and oha 1.16.0 (`nox -s tools`), wrk and hey (apt). Then oha's open loop, at a rate the server holds
and at one far above what it can serve. 1-2 s per cell, on a free loopback port, as the nox sessions run them.
"""

import json

import pytest
from conftest import assert_port_free, free_port, leftovers, run_session

from gilfree.run.loadgen import LOADGENS, PERCENTILES, LoadGenError, run_load
from gilfree.study.studies import article

CELLS = article().tables_by_id["asgi-json"].cells[::2]  # the GIL rows: 1 worker at c=128, 2 workers at c=256
VERSIONS = {"rewrk": "ReWrk 0.3.1", "oha": "oha 1.16.0", "wrk": "4.1.0", "hey": "hey 0.1.4"}  # rewrk 0.3.2 says 0.3.1


def records(results_dir):
    return [json.loads((results_dir / "raw" / cell.table / f"{cell.key}.json").read_text()) for cell in CELLS]


def assert_possible(load: dict, resolution_ms: float) -> None:
    """What is true of any latencies: percentiles in order and within the maximum; at least half the requests
    took p50 or more, so the mean is at least p50 / 2; the mean is within the maximum."""
    percentiles = load["latency_percentiles_ms"]
    known = [percentiles[q] for q in PERCENTILES if percentiles[q] is not None]
    assert known == sorted(known) and known[-1] <= load["latency_max_ms"] + resolution_ms
    assert percentiles["50"] / 2 <= load["latency_avg_ms"] + resolution_ms
    assert 0 < load["latency_avg_ms"] <= load["latency_max_ms"]


@pytest.mark.parametrize("tool", ["rewrk", "oha", "wrk", "hey"])
def test_each_load_generator_measures_real_granian(tool, environments, tmp_path):
    python = environments["asgi"]
    completed, port = run_session("asgi-3.14", python, tmp_path, "--table", "asgi-json", "--loadgen", tool)
    assert completed.returncode == 0, completed.stderr
    for record in records(tmp_path):
        assert record["status"] == "ok", record["failure"]
        assert record["load_generator"]["name"] == tool and VERSIONS[tool] in record["load_generator"]["version"]
        assert record["commands"]["load"][0] == tool
        load = record["load"]
        assert load["rps"] > 0 and load["requests"] > 0 and load["errors"] == 0
        assert load["offered_rps"] is None and record["settings"]["rate_rps"] is None  # closed loop, as the post
        if tool == "rewrk":
            assert load["non_2xx"] is None and load["latency_percentiles_ms"] is None  # it gives neither
        else:
            assert load["non_2xx"] == 0
            assert_possible(load, LOADGENS[tool].resolution_ms)
            assert (load["latency_percentiles_ms"]["99.9"] is None) == (tool == "hey")  # hey stops at p99
    table = (tmp_path / "tables" / "asgi-json.md").read_text()
    assert ("| p50 " in table) == (tool != "rewrk")
    assert leftovers(python) == []
    assert_port_free(port)


def test_open_loop_at_a_rate_the_server_holds_and_far_above_it(environments, tmp_path):
    python = environments["asgi"]
    held, _ = run_session(
        "asgi-3.14",
        python,
        tmp_path / "held",
        "--table",
        "asgi-json",
        "--loadgen",
        "oha",
        "--rate",
        "100",
        "--duration",
        "2s",
    )
    assert held.returncode == 0, held.stderr
    for record in records(tmp_path / "held"):
        assert record["settings"]["rate_rps"] == 100
        assert record["commands"]["load"][5:8] == ["-q", "100", "--latency-correction"]
        load = record["load"]
        assert load["offered_rps"] == 100 and 95 <= load["rps"] <= 101
        assert not any(warning["kind"] == "rate_shortfall" for warning in record["warnings"])
        assert_possible(load, LOADGENS["oha"].resolution_ms)

    above, _ = run_session(
        "asgi-3.14", python, tmp_path / "above", "--table", "asgi-json", "--loadgen", "oha", "--rate", "1000000"
    )
    assert above.returncode == 0, above.stderr  # measured, and honest about it: not a failure
    assert above.stderr.count("of the 1000000 offered") == len(CELLS)
    for record in records(tmp_path / "above"):
        load = record["load"]
        assert load["offered_rps"] == 1_000_000 and 0 < load["rps"] < 950_000
        assert any(
            warning["kind"] == "rate_shortfall"
            and warning["values"]["achieved_rps"] == load["rps"]
            and warning["message"].startswith(f"achieved {load['rps']:.0f} RPS of the 1000000 offered")
            for warning in record["warnings"]
        )
        # The requests that waited behind the busy server count from when they were due: far above the held run.
        assert (
            load["latency_percentiles_ms"]["50"]
            > 10 * records(tmp_path / "held")[0]["load"]["latency_percentiles_ms"]["50"]
        )
    assert "of the 1000000 offered" in (tmp_path / "above" / "tables" / "asgi-json.md").read_text()
    assert leftovers(python) == []


@pytest.mark.parametrize("tool", ["rewrk", "oha", "wrk", "hey"])
def test_no_server_is_an_error_never_a_measurement(tool):
    """rewrk exits 0 without a report, oha and hey exit 0 with only errors, wrk exits 1: all are errors."""
    generator = LOADGENS[tool]
    with pytest.raises(LoadGenError, match=rf"^{tool}.*(no report|no response|status 1).*refused"):
        run_load(generator, generator.command(f"http://127.0.0.1:{free_port()}/json", 1, 8), duration_s=1)
