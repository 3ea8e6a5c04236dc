"""The load generator's ceiling: a real calibration against a real nginx with real wrk, and the flags it drives
in the tables (made-up records and calibrations there); RSS growth flags and timeline charts from made-up
records; older records read with the new fields unknown."""

import json
import os
import signal
import subprocess
import sys

import psutil
import pytest
from conftest import ROOT, assert_port_free, free_port, make_record, wait_for

from gilfree.report import charts, compare, render, verdicts
from gilfree.study import ceiling, results
from gilfree.study.record import Record
from gilfree.study.studies import Cell, article

CELL = article().tables_by_id["asgi-json"].cells[0]  # 3.14, 1 worker, c=128
WRK = {"name": "wrk", "version": "wrk 4.1.0"}


def calibrate(results_dir, *extra, port=None):
    port = port or free_port()
    command = [
        sys.executable,
        "-m",
        "gilfree.calibrate",
        "--loadgen",
        "wrk",
        "--duration",
        "1s",
        "--repeat",
        "1",
        "--concurrency",
        "32",
        "--port",
        str(port),
        "--results-dir",
        str(results_dir),
        *extra,
    ]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=120), port


def nginx_left(folder: str) -> list[psutil.Process]:
    """nginx processes still running from a calibration's temporary folder."""
    return [
        process
        for process in psutil.process_iter(["cmdline"])
        if any(folder in part for part in process.info["cmdline"] or [])
    ]


def named(processes: list[psutil.Process], name: str) -> bool:
    return any(process.info["name"] == name for process in psutil.process_iter(["name"]) if process in processes)


def test_calibrate_measures_wrk_against_a_real_nginx_and_stores_the_ceiling(tmp_path):
    completed, port = calibrate(tmp_path)
    assert completed.returncode == 0, completed.stderr
    record = json.loads((tmp_path / "calibration" / "wrk.json").read_text())
    (point,) = record["ceilings"]
    assert point["concurrency"] == 32 and point["rps"] == point["runs"][0]["rps"] > 0
    assert point["runs"][0]["errors"] == 0 and point["runs"][0]["non_2xx"] == 0
    assert point["runs"][0]["nginx_cpu_cores"] > 0 and point["runs"][0]["loadgen_cpu_cores"] > 0
    assert record["server"]["version"].startswith("nginx/")
    assert record["server"]["body"] == '{"message":"Hello, World!"}' and len(record["server"]["body"]) == 27
    assert record["machine"] == results.machine() and record["load_generator"]["name"] == "wrk"
    assert record["settings"] == {"duration_s": 1, "repeat": 1, "server_cpus": None, "loadgen_cpus": None}
    assert "ceiling" in completed.stdout and "c=32" in completed.stdout
    folder = record["server"]["command"][2]
    assert nginx_left(folder) == [] and not os.path.exists(folder)
    assert_port_free(port)
    # Calibrating again keeps the first one, set aside.
    again, _ = calibrate(tmp_path)
    assert again.returncode == 0, again.stderr
    assert len(list((tmp_path / "calibration" / "superseded").glob("wrk.*.json"))) == 1


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupted_calibration_stops_nginx_and_stores_nothing(tmp_path, signum, status):
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "gilfree.calibrate",
        "--loadgen",
        "wrk",
        "--duration",
        "20s",
        "--repeat",
        "1",
        "--concurrency",
        "32",
        "--port",
        str(port),
        "--results-dir",
        str(tmp_path),
    ]
    harness = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def children_once_wrk_runs() -> list[psutil.Process] | None:
        assert harness.poll() is None, harness.communicate()  # it ended before its load began
        children = psutil.Process(harness.pid).children(recursive=True)  # unreaped, so still there
        return children if named(children, "wrk") else None

    children = wait_for(children_once_wrk_runs, 60, "the calibration to start wrk", interval=0.1)
    assert named(children, "nginx"), harness.communicate()
    harness.send_signal(signum)
    _, stderr = harness.communicate(timeout=30)
    assert harness.returncode == status, stderr
    _, alive = psutil.wait_procs(children, timeout=5)
    assert alive == []
    assert not (tmp_path / "calibration" / "wrk.json").exists()
    assert_port_free(port)


@pytest.mark.parametrize(
    "option, message",
    [
        (["--pin", "64"], "--pin"),
        (["--duration", "0s"], "invalid duration '0s'"),
        (["--concurrency", "0"], "invalid count '0'"),
    ],
)
def test_bad_input_is_refused_in_one_line_before_nginx_starts(tmp_path, option, message):
    completed, _ = calibrate(tmp_path, *option)
    assert completed.returncode == 2 and message in completed.stderr
    assert len(completed.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "calibration").exists()


def made_up_calibration(record: dict, rps: float, **changes) -> dict:
    """A calibration as calibrate stores it, with a made-up ceiling, for the row's machine and load generator."""
    calibration = {
        "kind": ceiling.KIND,
        "schema": ceiling.SCHEMA,
        "machine": dict(record["machine"]),
        "load_generator": dict(record["load_generator"]),
        "warnings": [],
        "settings": {"duration_s": 10, "repeat": 3, "server_cpus": None, "loadgen_cpus": None},
        "ceilings": [{"concurrency": record["cell"]["concurrency"], "rps": rps, "runs": []}],
    }
    for key, value in changes.items():
        calibration[key] = {**calibration[key], **value}
    return calibration


def measured(rps: float, **resources) -> dict:
    record = make_record(CELL, rps=rps)
    record["load_generator"] = WRK
    record["machine"] |= {"hostname": "bench", "kernel": "6.1.0"}
    record["resources"] |= resources
    return record


def rendered(tmp_path, record: dict, *calibrations: dict) -> tuple[str, str]:
    """The row of CELL, and the table's text, rendered from stored JSON."""
    results.write_record(results.cell_path(tmp_path, CELL), record)
    for number, calibration in enumerate(calibrations):
        results.write_atomic(tmp_path / "calibration" / f"wrk-{number}.json", calibration)
    render.write_all(tmp_path, article())
    text = (tmp_path / "tables" / "asgi-json.md").read_text()
    return next(line for line in text.splitlines() if line.startswith("| 3.14 ")), text


@pytest.mark.parametrize("rps, flagged", [(8000, True), (7000, True), (6900, False), (2000, False)])
def test_a_row_at_70_percent_of_the_ceiling_is_flagged(tmp_path, rps, flagged):
    record = measured(rps)
    row, text = rendered(tmp_path, record, made_up_calibration(record, 10000))
    assert ("the load generator, not the server, may have set this pace" in row) == flagged
    assert "Load generator ceiling (against nginx, this machine): wrk at c=128: 10000 RPS." in text
    assert "not checked" not in text and "warning" not in text


def test_a_doubtful_calibration_is_said_so_beside_its_ceiling(tmp_path):
    record = measured(5000)
    calibration = made_up_calibration(record, 10000)
    calibration["schema"] = 1  # sentences, as schema 1 stored them: read back into their kinds
    calibration["warnings"] = ["machine busy before the run at c=128: 86% CPU use (limit 15%)", "another"]
    _, text = rendered(tmp_path, record, calibration)
    assert (
        "That calibration has 2 warning(s), so its ceiling may be low: machine busy before the run at c=128: "
        "86% CPU use (limit 15%); ... (all in the calibration's JSON)."
    ) in text


@pytest.mark.parametrize(
    "changes",
    [
        {},  # no calibration at all
        {"machine": {"cpu_model": "another"}},
        {"machine": {"kernel": "6.12.0"}},
        {"load_generator": {"version": "wrk 4.2.0"}},
        {"settings": {"loadgen_cpus": [1]}},
    ],
)
def test_without_a_matching_calibration_the_check_is_said_not_made(tmp_path, changes):
    record = measured(9000)
    row, text = rendered(tmp_path, record, *([made_up_calibration(record, 10000, **changes)] if changes else []))
    assert "**Load generator ceiling not checked** for wrk at c=128" in text
    assert "`nox -s calibrate -- --loadgen wrk`" in text and "may have set this pace" not in row


def test_a_calibration_at_another_concurrency_does_not_check_this_one(tmp_path):
    record = measured(9000)
    calibration = made_up_calibration(record, 10000)
    calibration["ceilings"][0]["concurrency"] = 256
    _, text = rendered(tmp_path, record, calibration)
    assert "not checked** for wrk at c=128" in text


def test_an_unreadable_calibration_is_named_not_skipped(tmp_path):
    (tmp_path / "calibration").mkdir()
    (tmp_path / "calibration" / "wrk.json").write_text("{half")
    with pytest.raises(ValueError, match="wrk.json is not a gilfree calibration"):
        render.write_all(tmp_path, article())


@pytest.mark.parametrize("growth, flagged", [(0.08, True), (0.051, True), (0.03, False), (None, False)])
def test_a_row_whose_rss_still_grows_over_the_last_half_is_flagged(tmp_path, growth, flagged):
    slope = None if growth is None else growth * 2**20
    row, _ = rendered(tmp_path, measured(5000, rss_growth_last_half=growth, rss_growth_bytes_per_s=slope))
    assert ("RSS still growing" in row) == flagged
    if flagged:
        assert f"RSS still growing: +{growth:.1%} over the last half of the load" in row


def test_a_schema_2_record_reads_with_timeline_and_growth_unknown(tmp_path):
    record = make_record(CELL)
    record["schema"] = 2
    migrated = results.migrate(json.loads(json.dumps(record)), tmp_path / "x.json")
    assert migrated["resources"]["rss_growth_last_half"] is None
    assert migrated["runs"][0]["resources"]["rss_growth_bytes_per_s"] is None
    assert migrated["runs"][0]["timeline"] is None
    row, text = rendered(tmp_path, record)
    assert "RSS still growing" not in row and "not checked" in text
    assert charts.write_timelines(tmp_path, article(), results.load(tmp_path)) == []  # no series, no chart


def with_timeline(cell: Cell, rss_mib: list[float], growth: float | None) -> dict:
    record = make_record(cell)
    t_s = [i * 0.25 for i in range(len(rss_mib))]
    record["runs"][0]["timeline"] = {
        "t_s": t_s,
        "cores": [None] + [0.9] * (len(t_s) - 1),
        "rss_bytes": [int(size * 2**20) for size in rss_mib],
        "threads": [5] * len(t_s),
    }
    record["runs"][0]["resources"] |= {"rss_growth_last_half": growth, "rss_growth_bytes_per_s": None}
    return record


def test_one_rss_timeline_per_cell_holds_both_variants(tmp_path):
    gil, threaded = article().tables_by_id["wsgi-io"].cells[:2]
    for record in (
        with_timeline(gil, [80, 90, 95, 95, 95, 95], 0.0),
        with_timeline(threaded, [70, 90, 110, 130, 150, 170], 0.31),
    ):
        results.write_record(results.cell_path(tmp_path, Cell(**record["cell"])), record)
    written = charts.write_timelines(tmp_path, article(), results.load(tmp_path))
    assert written == [charts.timeline_path(tmp_path, gil)] == [charts.timeline_path(tmp_path, threaded)]
    assert written[0].name == "wsgi-io-w1-t64-io-c128.png"
    assert written[0].read_bytes().startswith(b"\x89PNG") and list(tmp_path.rglob("*.tmp")) == []


def unstalled(record: dict) -> dict:
    """As Little's law wants it in a closed loop: every connection busy, so no stall flag."""
    record["load"]["latency_avg_ms"] = CELL.concurrency / record["load"]["rps"] * 1000
    return record


def test_the_comparison_flags_a_row_near_its_ceiling_and_its_verdict_turns_inconclusive(tmp_path):
    gil, threaded = (unstalled(measured(rps)) for rps in (30000, 24000))  # a ratio of 0.80: "about 20% slower"
    threaded["cell"] = {**threaded["cell"], "variant": "3.14t"}
    threaded["interpreter"] |= {"variant": "3.14t", "label": "3.14t", "free_threaded_build": True, "gil_enabled": False}
    for record in (gil, threaded):
        results.write_record(results.cell_path(tmp_path, Cell(**record["cell"])), record)
    claim = article().claims[0]
    ratio = next(r for r in claim.ratios if r.under == CELL)
    assert verdicts.estimate(ratio, Record.read(threaded), Record.read(gil)).outcome == verdicts.Verdict.HELD
    results.write_atomic(tmp_path / "calibration" / "wrk.json", made_up_calibration(gil, 40000))  # 75%: near
    compare.write_report(tmp_path, article())
    report = (tmp_path / "COMPARISON.md").read_text()
    assert "load generator near its calibrated ceiling" in report
    stored = ceiling.with_ceilings(results.load(tmp_path), ceiling.load_all(tmp_path))
    key = (CELL.table, CELL.key)
    assert [flag.kind for flag in verdicts.row_flags(CELL, stored[key])] == [verdicts.FlagKind.NEAR_CEILING]
    threaded_key = (CELL.table, Cell(**threaded["cell"]).key)
    assert verdicts.estimate(ratio, stored[threaded_key], stored[key]).outcome == verdicts.Verdict.INCONCLUSIVE


def test_the_comparison_flags_rss_still_growing_and_gives_the_p99_ratio(tmp_path):
    gil = unstalled(measured(30000, rss_growth_last_half=0.12, rss_growth_bytes_per_s=2**20))
    threaded = unstalled(measured(24000, rss_growth_last_half=0.01, rss_growth_bytes_per_s=1000))
    threaded["cell"] = {**threaded["cell"], "variant": "3.14t"}
    threaded["interpreter"] |= {"variant": "3.14t", "label": "3.14t", "free_threaded_build": True, "gil_enabled": False}
    for record, p99 in ((gil, 10.0), (threaded, 15.0)):
        record["load"] |= {
            "generator": "wrk",
            "latency_percentiles_ms": {"50": 4.0, "90": 6.0, "99": p99, "99.9": 30.0},
        }
        results.write_record(results.cell_path(tmp_path, Cell(**record["cell"])), record)
    compare.write_report(tmp_path, article())
    report = (tmp_path / "COMPARISON.md").read_text()
    stored = results.load(tmp_path)
    assert [flag.kind for flag in verdicts.row_flags(CELL, stored[(CELL.table, CELL.key)])] == [
        verdicts.FlagKind.RSS_GROWING
    ]
    assert "RSS still growing over the last half of the load (0.12; from 0.05)" in report
    assert "| 1.50 " in report.split("Latency p99 yours", 1)[1].split("\n\n", 1)[0]  # 15 ms / 10 ms
