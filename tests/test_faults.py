"""Faults with real processes: a taken port, a Granian that fails or dies, signals, a killed harness."""

import json
import os
import signal
import socket
import subprocess
import time

import psutil
import pytest

from gilfree.matrix import SESSIONS
from gilfree.server import GranianServer, ServerError
from conftest import ROOT, assert_port_free, free_port, harness_command, leftovers, run_session


def granian_processes(python):
    return [p for p in leftovers(python) if "granian" in " ".join(p.cmdline())]


def wait_for(condition, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


def load_processes(port):
    """wrk processes loading this test's port (other tests may run wrk elsewhere at the same time)."""
    return [p for p in psutil.process_iter(["name", "cmdline"])
            if p.info["name"] == "wrk" and any(f":{port}/" in part for part in p.info["cmdline"] or [])]


def stored(results_dir, session):
    records = {}
    for cell in SESSIONS[session].cells():
        path = results_dir / "raw" / cell.table / f"{cell.key}.json"
        if path.exists():
            records[cell.key] = json.loads(path.read_text())
    return records


def test_taken_port_is_refused_naming_the_holder(environments, tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        completed = subprocess.run(harness_command("asgi-3.14", environments["asgi"], tmp_path, port),
                                   capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert completed.returncode == 2
    assert f"port {port} on 127.0.0.1 is already in use by pid {os.getpid()}" in completed.stderr
    assert not (tmp_path / "raw").exists()


def test_granian_that_cannot_start_fails_with_its_log(environments, tmp_path):
    granian = environments["wsgi"].replace("/python", "/granian")
    command = [granian, "--interface", "wsgi", "--port", str(free_port()), "impl_missing:app"]
    with GranianServer(command, int(command[4]), tmp_path / "server.log") as server:
        with pytest.raises(ServerError, match="Granian exited with status") as failure:
            server.wait_ready(timeout_s=20)
    assert "impl_missing" in str(failure.value)  # the server's own last words are in the reason
    assert granian_processes(environments["wsgi"]) == []


def test_non_2xx_answer_fails_before_any_load(environments, tmp_path):
    # A real wrong answer: the Flask (WSGI) app served through Granian's ASGI interface answers 500.
    granian = environments["wsgi"].replace("/python", "/granian")
    port = free_port()
    command = [granian, "--interface", "asgi", "--port", str(port), "impl_flask:app"]
    with GranianServer(command, port, tmp_path / "server.log") as server:
        server.wait_ready(timeout_s=20)
        with pytest.raises(ServerError, match="GET /json answered 500"):
            server.verify()
    assert_port_free(port)


def kill_a_worker_during_load(python):
    main = wait_for(lambda: [p for p in granian_processes(python) if p.children()])[0]
    time.sleep(1.0)  # into the load
    main.children()[0].kill()


@pytest.mark.parametrize("keep_going", [False, True])
def test_killed_worker_fails_the_cell_and_the_session(environments, tmp_path, keep_going):
    python = environments["wsgi"]
    port = free_port()
    extra = ["--duration", "3s"] + (["--keep-going"] if keep_going else [])
    harness = subprocess.Popen(harness_command("wsgi-3.14", python, tmp_path, port, *extra),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    kill_a_worker_during_load(python)
    _, stderr = harness.communicate(timeout=120)
    assert harness.returncode == 1
    records = stored(tmp_path, "wsgi-3.14")
    first = records[SESSIONS["wsgi-3.14"].cells()[0].key]
    assert first["status"] == "failed"
    assert "died during the load" in first["failure"] and "Unexpected exit from worker" in first["failure"]
    assert first["load"] is None  # a failed cell has no figures to show...
    assert first["runs"][-1]["load"]["errors"] > 0  # ...but the failed run's lost requests are kept in the JSON
    assert f"({first['runs'][-1]['load']['errors']} requests failed)" in first["failure"]
    assert len(records) == (4 if keep_going else 1)
    assert [r["status"] for r in records.values()].count("ok") == (3 if keep_going else 0)
    assert "| failed" in (tmp_path / "tables" / "wsgi-json.md").read_text()
    assert granian_processes(python) == []


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_stops_everything_and_keeps_finished_cells(environments, tmp_path, signum, status):
    python = environments["asgi"]
    cells = SESSIONS["asgi-3.14"].cells()
    port = free_port()
    harness = subprocess.Popen(harness_command("asgi-3.14", python, tmp_path, port, "--duration", "3s"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    first = tmp_path / "raw" / cells[0].table / f"{cells[0].key}.json"
    wait_for(first.exists, timeout=60)
    wait_for(lambda: [p for p in granian_processes(python) if p.children()])  # the second cell is up
    time.sleep(1.5)  # and under load
    harness.send_signal(signum)
    started = time.monotonic()
    harness.communicate(timeout=30)
    assert harness.returncode == status
    assert time.monotonic() - started < 5
    assert granian_processes(python) == []
    assert load_processes(port) == []
    records = stored(tmp_path, "asgi-3.14")
    assert list(records) == [cells[0].key] and records[cells[0].key]["status"] == "ok"


def test_server_left_by_a_killed_harness_is_reported_next_time(environments, tmp_path):
    python = environments["asgi"]
    port = free_port()
    harness = subprocess.Popen(harness_command("asgi-3.14", python, tmp_path, port, "--duration", "3s"),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    try:
        orphan = wait_for(lambda: [p for p in granian_processes(python) if p.children()])[0]
        time.sleep(0.5)
        harness.kill()  # SIGKILL: no cleanup at all
        harness.wait()
        again = subprocess.run(harness_command("asgi-3.14", python, tmp_path, port),
                               capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert again.returncode == 2
        assert f"port {port} on 127.0.0.1 is already in use by pid {orphan.pid}" in again.stderr
        for path in (tmp_path / "raw").glob("*/*"):
            json.loads(path.read_text())  # never a truncated file
    finally:
        for process in granian_processes(python):
            process.kill()
        for process in load_processes(port):
            process.kill()


def test_a_worker_exit_in_the_log_counts_as_lost(tmp_path):
    # On free-threaded builds Granian's workers are threads: their death shows only in its log.
    log = tmp_path / "server.log"
    log.write_text("[INFO] Started worker-1\n[ERROR] Unexpected exit from worker-1\n")
    assert GranianServer(["granian"], 8000, log).workers_lost() == 1
