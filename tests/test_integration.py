"""Real cells: real Granian serving the real apps on a GIL interpreter that is here, loaded by real wrk.

They run the harness's command line as the nox sessions do, for 1 s per cell, on a free loopback port.
"""

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from conftest import (
    ROOT,
    free_port,
    harness_command,
    leftovers,
    listening_on,
    run_session,
    spinning,
    stands_in,
    wait_for,
)

from gilfree.core import stats
from gilfree.study.studies import article

SESSIONS = article().sessions


@dataclass
class Measured:
    """A session run once, for the tests that each read one thing of it: its outcome, its results and what it
    left running, read as it ended (before any other test could start or stop a process)."""

    session: str
    python: str
    results_dir: Path
    completed: subprocess.CompletedProcess
    left_running: list[psutil.Process]
    listening: list

    def records(self):
        """(cell, its stored record) for every cell of the session."""
        for cell in SESSIONS[self.session].cells():
            yield cell, json.loads((self.results_dir / "raw" / cell.table / f"{cell.key}.json").read_text())


@pytest.fixture(scope="module", params=["asgi-3.14", "wsgi-3.14", "wsgi-threads-3.14"])
def measured(request, environments, tmp_path_factory) -> Measured:
    """Each session, run once for all the tests below that take it."""
    session = request.param
    python = environments[SESSIONS[session].apps[0]]
    results_dir = tmp_path_factory.mktemp(f"measured-{session}")
    # A proxy that answers nothing: the harness's own checks of the server must not go through it.
    completed, port = run_session(session, python, results_dir, env={"http_proxy": "http://127.0.0.1:9"})
    return Measured(session, python, results_dir, completed, leftovers(python), listening_on(port))


def test_session_succeeds(measured):
    assert measured.completed.returncode == 0, measured.completed.stderr


def test_session_says_whether_its_interpreter_stands_in_for_3_14(measured):
    stand_in = stands_in(measured.python)
    assert ("stands in for 3.14" in measured.completed.stderr) == stand_in
    assert all(record["interpreter"]["stand_in"] == stand_in for _, record in measured.records())


def test_every_cell_is_measured_without_errors(measured):
    for _, record in measured.records():
        assert record["status"] == "ok", record["failure"]
        assert record["load"]["rps"] > 0 and record["load"]["requests"] > 0
        assert record["load"]["errors"] == 0 and record["load"]["non_2xx"] == 0


def test_every_cell_records_the_servers_resources(measured):
    for cell, record in measured.records():
        assert record["resources"]["cpu_cores"] > 0 and record["resources"]["peak_rss_bytes"] > 20 * 2**20
        assert record["resources"]["peak_processes"] == 1 + cell.workers  # main process and its workers


def test_every_cell_keeps_every_sample_of_its_timeline(measured):
    for _, record in measured.records():
        timeline = record["runs"][0]["timeline"]  # every sample kept, in parallel lists
        assert len(timeline["t_s"]) == len(timeline["rss_bytes"]) == record["resources"]["samples"] >= 4
        assert max(timeline["rss_bytes"]) == record["resources"]["peak_rss_bytes"]


def test_every_cell_records_how_its_interpreter_was_built(measured):
    built = subprocess.run(
        [measured.python, "-c", "import sysconfig; print(sysconfig.get_config_var('CONFIG_ARGS'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    for _, record in measured.records():
        assert not record["interpreter"]["free_threaded_build"]
        assert record["interpreter"]["config_args"] == built  # how it was built, from the interpreter itself
        assert set(record["interpreter"]["optimisations"]) == {"pgo", "lto", "jit"}


def test_every_cell_records_its_commands_and_how_its_server_was_stopped(measured):
    for cell, record in measured.records():
        assert record["load_generator"]["name"] == "wrk" and "4." in record["load_generator"]["version"]
        assert record["commands"]["server"][1:3] == ["--interface", cell.interface]
        assert record["runs"][0]["stopped_by"].startswith(("SIGTERM", "SIGKILL"))


def test_every_cell_records_the_machines_readiness_and_warns_of_what_is_not_ready(measured):
    for _, record in measured.records():
        readiness = record["machine"]["readiness"]  # the machine's state, as the session read it at its start
        assert [item["key"] for item in readiness["items"]] == [
            "governor",
            "turbo",
            "smt",
            "aslr",
            "isolation",
            "irqbalance",
            "swap",
            "load",
            "throttling",
        ]
        assert {item["status"] for item in readiness["items"]} <= {"ok", "warn", "unknown"}
        aslr = next(item for item in readiness["items"] if item["key"] == "aslr")
        assert aslr["value"] == int(open("/proc/sys/kernel/randomize_va_space").read())
        throttling = next(item for item in readiness["items"] if item["key"] == "throttling")
        assert throttling["value"]["runs"] == len(record["runs"]) == 1
        assert "throttle_events" in record["runs"][0]
        not_ready = {w["values"]["item"] for w in record["warnings"] if w["kind"] == "machine_not_ready"}
        assert not_ready == {item["key"] for item in readiness["items"] if item["status"] == "warn"} - {"throttling"}


def test_every_table_shows_its_rows_and_notes(measured):
    for table in SESSIONS[measured.session].tables:
        text = (measured.results_dir / "tables" / f"{table}.md").read_text()
        rows = [
            line for line in text.splitlines() if line.startswith(("| 3.", "| JSON", "| I/O")) and "not run" not in line
        ]
        assert rows and all("not run" not in row and "failed" not in row for row in rows)
        assert "**Load generator ceiling not checked** for wrk at c=128" in text  # no calibration stored
        assert "Machine readiness at the session's start (" in text and "### The machine's state" in text


def test_session_leaves_no_process_running_and_its_port_free(measured):
    assert measured.left_running == [] and measured.listening == []


def test_gil_build_is_refused_as_free_threaded(environments, tmp_path):
    completed, _ = run_session("asgi-3.14t", environments["asgi"], tmp_path)
    assert completed.returncode == 2
    assert "variant 3.14t needs a free-threaded build" in completed.stderr
    assert "GILFREE_PYTHON_3_14T" in completed.stderr
    assert not (tmp_path / "raw").exists()
    assert leftovers(environments["asgi"]) == []


def test_stored_results_are_kept_unless_forced(environments, tmp_path):
    python = environments["asgi"]
    first, _ = run_session("asgi-3.14", python, tmp_path)
    assert first.returncode == 0, first.stderr
    again, _ = run_session("asgi-3.14", python, tmp_path)
    # The second session read the machine again (another time, another load): its readiness is no condition.
    assert "kept 4 stored run(s)" in again.stderr and "[1/" not in again.stderr
    forced, _ = run_session("asgi-3.14", python, tmp_path, "--force")
    assert "stored run(s)" not in forced.stderr and "[4/4]" in forced.stderr
    assert forced.stderr.count("stored result aside (--force)") == 4
    changed, _ = run_session("asgi-3.14", python, tmp_path, "--table", "asgi-io", "--duration", "2s")
    assert changed.stderr.count("stored result aside (it was measured under other conditions)") == 2
    assert len(list((tmp_path / "raw" / "asgi-io" / "superseded").glob("*.json"))) == 4  # nothing lost
    assert {
        json.loads(p.read_text())["settings"]["duration_s"] for p in (tmp_path / "raw" / "asgi-io").glob("*.json")
    } == {2}


def test_repeated_runs_give_medians_and_spread(environments, tmp_path):
    completed, _ = run_session("asgi-3.14", environments["asgi"], tmp_path, "--table", "asgi-io", "--repeat", "3")
    assert completed.returncode == 0, completed.stderr
    assert "run 3/3" in completed.stderr
    for cell in SESSIONS["asgi-3.14"].cells()[2:]:
        record = json.loads((tmp_path / "raw" / cell.table / f"{cell.key}.json").read_text())
        assert len(record["runs"]) == 3 and record["settings"]["repeat"] == 3
        assert (record["rounds"]["repeat"], record["rounds"]["rounds_run"], record["rounds"]["auto"]) == (3, 3, None)
        assert [run["round"] for run in record["runs"]] == [0, 1, 2]
        rps = sorted(run["load"]["rps"] for run in record["runs"])
        assert record["load"]["rps"] == rps[1]
        assert record["spread"]["rps"]["min"] == rps[0] and record["spread"]["rps"]["max"] == rps[2]
    table = (tmp_path / "tables" / "asgi-io.md").read_text()
    assert "RPS range" in table
    rows = [line for line in table.splitlines() if line.startswith("| 3.") and "not run" not in line]
    assert len(rows) == 2 and all(
        "(n=3, RSD " in row and "%, geometric mean 95% CI " in row for row in rows
    )  # each its own


RUN_PHASES = {
    "commands_s",
    "spawn_s",
    "ready_s",
    "verify_s",
    "busy_check_s",
    "sampler_start_s",
    "load_s",
    "sampler_stop_s",
    "after_load_checks_s",
    "stop_s",
    "warnings_s",
}


def test_a_runs_timings_cover_its_phases_and_add_up_to_no_more_than_it_took(environments, tmp_path):
    started = time.perf_counter()
    completed, _ = run_session("asgi-3.14", environments["asgi"], tmp_path, "--table", "asgi-json", "--repeat", "2")
    session_s = time.perf_counter() - started
    assert completed.returncode == 0, completed.stderr
    records = [json.loads(path.read_text()) for path in (tmp_path / "raw" / "asgi-json").glob("*.json")]
    runs = [run for record in records for run in record["runs"]]
    assert len(runs) == 4
    for run in runs:
        timings, phases = run["timings"], run["timings"]["phases_s"]
        assert set(phases) == RUN_PHASES and all(seconds >= 0 for seconds in phases.values())
        assert sum(phases.values()) <= timings["total_s"]
        assert phases["load_s"] >= records[0]["settings"]["duration_s"]  # the load window lies within its phase
        assert 0 <= timings["granian_start_s"] <= phases["spawn_s"] + phases["ready_s"]
        assert 0 <= timings["granian_stop_s"] <= phases["stop_s"]
    # The first run of each cell was written again with the second, its record's write timed by then.
    assert sum("record_s" in run["timings"] for run in runs) >= 2
    assert sum(run["timings"]["total_s"] + run["timings"].get("record_s", 0) for run in runs) < session_s


def test_pinning_puts_server_and_load_generator_on_disjoint_cpus(environments, tmp_path):
    python = environments["wsgi"]
    port = free_port()
    harness = subprocess.Popen(
        harness_command(
            "wsgi-threads-3.14", python, tmp_path, port, "--pin", "1", "--table", "wsgi-threads-gil", "--duration", "2s"
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    seen = {}

    def both_seen_or_harness_done() -> bool:
        for process in psutil.process_iter(["name", "cmdline"]):
            cmdline = " ".join(process.info["cmdline"] or [])
            try:
                if f"--port {port}" in cmdline and "granian" in cmdline and process.children():
                    seen["server"] = {tuple(p.cpu_affinity()) for p in [process, *process.children()]}
                elif process.info["name"] == "wrk" and f":{port}/" in cmdline:
                    seen["loadgen"] = {tuple(process.cpu_affinity())}
            except psutil.NoSuchProcess:
                pass
        return len(seen) == 2 or harness.poll() is not None  # the assert below says which was never seen

    wait_for(both_seen_or_harness_done, 180, "the pinned server and load generator")
    harness.kill()
    harness.communicate()
    cpus = sorted(os.sched_getaffinity(0))
    assert seen == {"server": {tuple(cpus[:-1])}, "loadgen": {(cpus[-1],)}}
    for process in leftovers(python):
        process.kill()


def test_a_busy_machine_is_warned_about(environments, tmp_path):
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 1)]
    try:
        for burner in burners:  # every core busy before the harness looks
            spinning(psutil.Process(burner.pid))
        completed, _ = run_session("asgi-3.14", environments["asgi"], tmp_path, "--table", "asgi-json")
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()
    assert "machine busy before the run" in completed.stderr
    record = json.loads(next((tmp_path / "raw" / "asgi-json").glob("*.json")).read_text())
    assert any(
        warning["kind"] == "machine_busy" and warning["values"]["busy_share"] > 0.15 for warning in record["warnings"]
    )
    assert "machine busy before the run" in (tmp_path / "tables" / "asgi-json.md").read_text()


def test_warmup_loads_the_server_before_the_measured_run(environments, tmp_path):
    completed, _ = run_session("asgi-3.14", environments["asgi"], tmp_path, "--table", "asgi-json", "--warmup", "1s")
    assert completed.returncode == 0, completed.stderr
    for path in (tmp_path / "raw" / "asgi-json").glob("*.json"):
        record = json.loads(path.read_text())
        assert record["settings"]["warmup_s"] == 1
        assert record["runs"][0]["warmup"]["requests"] > 0 and record["runs"][0]["load"]["requests"] > 0


def hogs_on(cpus: list[int], per_cpu: int) -> list[psutil.Process]:
    """Busy loops pinned to these CPUs, seen spinning before this returns. Each in a session of its own, as Granian
    is: with the kernel's autogroups, CPU time is shared between sessions, so hogs sharing one would weigh as one."""
    started = []
    for cpu in cpus:
        for _ in range(per_cpu):
            hog = psutil.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)
            hog.cpu_affinity([cpu])
            started.append(hog)
    for hog in started:
        spinning(hog)
    return started


def test_a_cpu_hog_started_between_rounds_shows_as_drift_in_the_record_and_the_table(environments, tmp_path):
    python, port = environments["asgi"], free_port()
    harness = subprocess.Popen(
        harness_command("asgi-3.14", python, tmp_path, port, "--table", "asgi-json", "--repeat", "4"),
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    cells = SESSIONS["asgi-3.14"].cells()[:2]
    paths = [tmp_path / "raw" / cell.table / f"{cell.key}.json" for cell in cells]

    def runs_stored(path) -> int:
        return len(json.loads(path.read_text())["runs"]) if path.exists() else 0

    hogs = []
    try:
        wait_for(lambda: all(runs_stored(path) == 2 for path in paths), timeout=120, what="two rounds of both cells")
        hogs = hogs_on(sorted(os.sched_getaffinity(0)), per_cpu=8)  # rounds 3 and 4 share the CPUs with them
        _, stderr = harness.communicate(timeout=180)
    finally:
        for process in hogs + [harness]:
            process.kill()
            process.wait()
    assert harness.returncode == 0, stderr
    table = (tmp_path / "tables" / "asgi-json.md").read_text()
    drifted = []
    for cell, path in zip(cells, paths):
        record = json.loads(path.read_text())
        drift, rsd = record["stability"]["drift"], record["spread"]["rps"]["rsd"]
        rps = [run["load"]["rps"] for run in record["runs"]]
        assert drift["runs_per_part"] == 2 and drift["change"] < -0.3, rps  # rounds 3 and 4 slower
        [spread] = [w for w in record["warnings"] if w["kind"] == "rps_spread"]
        warned = [w for w in record["warnings"] if w["kind"] == "drift"]
        assert spread["values"]["rsd"] == rsd > stats.RSD_LIMIT
        assert [w["values"]["change"] for w in warned] == ([drift["change"]] if drift["beyond_noise"] else [])
        [row] = [
            line
            for line in table.splitlines()
            if line.startswith("| 3.") and "not run" not in line and line.split("|")[2].strip() == str(cell.workers)
        ]
        assert f"(n=4, RSD {rsd:.1%}" in row and all(w["message"] in row for w in [spread, *warned])
        drifted += warned
    # A clean round that some other load on the machine slowed as much can hide one cell's drift in its noise:
    # the two cells are two chances for the hog's.
    assert drifted, "neither cell's drift stood out of its noise"
    assert leftovers(python) == []
