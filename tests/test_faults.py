"""Faults with real processes: a taken or forbidden port, a Granian that fails or dies, signals, a killed
harness, a full disk, a corrupt record."""

import contextlib
import json
import os
import signal
import socket
import subprocess
from pathlib import Path

import psutil
import pytest
from conftest import ROOT, assert_port_free, free_port, harness_command, in_order, leftovers, run_session, wait_for

from gilfree.run.child import ServerError
from gilfree.run.server import GranianServer
from gilfree.study.studies import article

SESSIONS = article().sessions


def granian_processes(python):
    return [p for p in leftovers(python) if "granian" in " ".join(p.cmdline())]


def load_processes(port):
    """wrk processes loading this test's port (other tests may run wrk elsewhere at the same time)."""
    return [
        p
        for p in psutil.process_iter(["name", "cmdline"])
        if p.info["name"] == "wrk" and any(f":{port}/" in part for part in p.info["cmdline"] or [])
    ]


def under_load(port):
    """The wrk loading this port once the server has answered it: it holds open connections to the port and has
    read 64 KiB from them (some hundreds of answers; what it reads before its load is a few small files)."""

    def answered(process):
        try:
            return process.io_counters().read_chars > 64 * 2**10 and any(
                c.status == psutil.CONN_ESTABLISHED and c.raddr and c.raddr.port == port
                for c in process.net_connections("tcp")
            )
        except psutil.NoSuchProcess:
            return False

    return wait_for(
        lambda: [p for p in load_processes(port) if answered(p)],
        timeout=60,
        what=f"wrk to get answers from port {port}",
    )


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
        completed = subprocess.run(
            harness_command("asgi-3.14", environments["asgi"], tmp_path, port),
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
        )
    assert completed.returncode == 2
    assert f"port {port} on 127.0.0.1 is already in use by pid {os.getpid()}" in completed.stderr
    assert not (tmp_path / "raw").exists()


def test_granian_that_cannot_start_fails_with_its_log(environments, tmp_path):
    granian = environments["wsgi"].replace("/python", "/granian")
    command = [granian, "--interface", "wsgi", "--port", str(free_port()), "impl_missing:app"]
    with GranianServer(command, article().apps["wsgi"], int(command[4]), tmp_path / "server.log") as server:
        with pytest.raises(ServerError, match="Granian exited with status") as failure:
            server.wait_ready(timeout_s=20)
    assert "impl_missing" in str(failure.value)  # the server's own last words are in the reason
    assert granian_processes(environments["wsgi"]) == []


def test_non_2xx_answer_fails_before_any_load(environments, tmp_path):
    # A real wrong answer: the Flask (WSGI) app served through Granian's ASGI interface answers 500.
    granian = environments["wsgi"].replace("/python", "/granian")
    port = free_port()
    command = [granian, "--interface", "asgi", "--port", str(port), "impl_flask:app"]
    with GranianServer(command, article().apps["wsgi"], port, tmp_path / "server.log") as server:
        server.wait_ready(timeout_s=20)
        with pytest.raises(ServerError, match=r"GET /json answered status 500, expected 200 \(before any load\)"):
            server.verify()
    assert_port_free(port)


def kill_a_worker_during_load(python, port):
    main = wait_for(lambda: [p for p in granian_processes(python) if p.children()])[0]
    under_load(port)
    main.children()[0].kill()


@pytest.mark.parametrize("keep_going", [False, True])
def test_killed_worker_fails_the_cell_and_the_session(environments, tmp_path, keep_going):
    python = environments["wsgi"]
    port = free_port()
    extra = ["--duration", "3s"] + (["--keep-going"] if keep_going else [])
    harness = subprocess.Popen(
        harness_command("wsgi-3.14", python, tmp_path, port, *extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    kill_a_worker_during_load(python, port)
    _, stderr = harness.communicate(timeout=120)
    assert harness.returncode == 1
    records = stored(tmp_path, "wsgi-3.14")
    killed = in_order(SESSIONS["wsgi-3.14"].cells())[0]  # under load when its worker was killed
    first = records[killed.key]
    assert first["status"] == "failed"
    assert "died during the load" in first["failure"] and "Unexpected exit from worker" in first["failure"]
    assert first["load"] is None  # a failed cell has no figures to show...
    assert first["runs"][-1]["load"]["errors"] > 0  # ...but the failed run's lost requests are kept in the JSON
    assert f"({first['runs'][-1]['load']['errors']} requests failed)" in first["failure"]
    assert len(records) == (4 if keep_going else 1)
    assert [r["status"] for r in records.values()].count("ok") == (3 if keep_going else 0)
    assert "| failed" in (tmp_path / "tables" / f"{killed.table}.md").read_text()
    assert granian_processes(python) == []


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_stops_everything_and_keeps_finished_cells(environments, tmp_path, signum, status):
    python = environments["asgi"]
    cells = in_order(SESSIONS["asgi-3.14"].cells())
    port = free_port()
    harness = subprocess.Popen(
        harness_command("asgi-3.14", python, tmp_path, port, "--duration", "3s"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    first = tmp_path / "raw" / cells[0].table / f"{cells[0].key}.json"
    wait_for(first.exists, timeout=60)
    wait_for(lambda: [p for p in granian_processes(python) if p.children()])  # the second cell is up
    under_load(port)  # and under load (the first cell's wrk ended before its record was written)
    harness.send_signal(signum)
    harness.communicate(timeout=30)
    assert harness.returncode == status  # and the session's later cells were never run: only the first is stored
    assert granian_processes(python) == []
    assert load_processes(port) == []
    records = stored(tmp_path, "asgi-3.14")
    assert list(records) == [cells[0].key] and records[cells[0].key]["status"] == "ok"


def test_a_worker_exit_in_the_log_counts_as_lost(tmp_path):
    # On free-threaded builds Granian's workers are threads: their death shows only in its log.
    log = tmp_path / "server.log"
    log.write_text("[INFO] Started worker-1\n[ERROR] Unexpected exit from worker-1\n")
    assert GranianServer(["granian"], article().apps["wsgi"], 8000, log).workers_lost() == 1


# --- a harness killed with SIGKILL -------------------------------------------------------------------------


def start_harness(python, results_dir, port, *extra, session="asgi-3.14", own_group=False):
    return subprocess.Popen(
        harness_command(session, python, results_dir, port, *extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        start_new_session=own_group,
    )


def server_on(port):
    """Granian's main process for this port (the one with workers), and its whole tree."""

    def serving(cmdline):
        return any(part.endswith("/bin/granian") for part in cmdline) and str(port) in cmdline

    main = wait_for(
        lambda: [p for p in psutil.process_iter(["cmdline"]) if serving(p.info["cmdline"] or []) and p.children()]
    )[0]
    return main, [main, *main.children(recursive=True)]


@pytest.mark.parametrize("granian", ["stops on SIGTERM", "ignores SIGTERM"])
def test_killed_harness_takes_granian_and_the_load_with_it(environments, tmp_path, granian):
    python, port = environments["asgi"], free_port()
    harness = start_harness(python, tmp_path, port, "--duration", "5s", "--table", "asgi-json")
    _, server = server_on(port)
    load = wait_for(lambda: load_processes(port))
    if granian == "ignores SIGTERM":
        server[-1].suspend()  # a frozen worker keeps Granian from stopping on SIGTERM, as it sometimes does
    harness.kill()  # SIGKILL: the harness runs no cleanup at all
    harness.communicate()
    _, alive = psutil.wait_procs(server + load, timeout=15)
    # wrk got SIGKILL from the kernel; Granian SIGTERM from the kernel, then SIGKILL from the group reaper
    assert alive == []
    again = subprocess.run(
        harness_command("asgi-3.14", python, tmp_path, port, "--table", "asgi-json"),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert again.returncode == 0, again.stderr
    assert "stopped Granian" not in again.stderr


def test_granian_left_by_a_killed_harness_is_stopped_by_the_next_run(environments, tmp_path):
    python, port = environments["asgi"], free_port()
    harness = start_harness(python, tmp_path, port, "--duration", "5s", "--table", "asgi-json", own_group=True)
    main, server = server_on(port)
    try:
        server[-1].suspend()  # a worker that cannot stop keeps Granian from stopping on SIGTERM: it stays
        os.killpg(harness.pid, signal.SIGKILL)  # the harness and its group reaper at once, as `kill -9 -PGID`
        harness.communicate()
        # Granian got its death signal (SIGTERM) and began to stop: what stays now is what it cannot stop
        [log] = (tmp_path / "logs").rglob("*.log")
        wait_for(lambda: "Shutting down granian" in log.read_text(errors="replace"), what="Granian's SIGTERM")
        left = [process for process in server if process.is_running() and process.status() != "zombie"]
        assert left, "Granian stopped by itself: nothing was left behind to test with"
        again = subprocess.run(
            harness_command("asgi-3.14", python, tmp_path, port, "--table", "asgi-json"),
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=120,
        )
        assert again.returncode == 0, again.stderr
        assert (
            f"stopped Granian pid {main.pid} on port {port} ({len(left)} process(es)), left running by an "
            f"earlier harness (pid {harness.pid})"
        ) in again.stderr
        assert not any(process.is_running() and process.status() != "zombie" for process in server)
    finally:
        for process in server:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()


def test_a_process_that_reuses_a_recorded_pid_is_never_stopped(environments, tmp_path, machine_lock_dir):
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        started = psutil.Process(bystander.pid).create_time()
        gone = subprocess.Popen(["true"])  # a harness that no longer exists
        gone.wait()
        records = machine_lock_dir / "servers"
        records.mkdir()
        granian = [environments["asgi"].replace("/python", "/granian"), "--port", "1"]
        for name, pid_started, command in [("older", started - 100, ["sleep", "60"]), ("other", started, granian)]:
            (records / f"{name}.json").write_text(
                json.dumps(
                    {
                        "pid": bystander.pid,
                        "started": pid_started,
                        "command": command,
                        "port": 1,
                        "harness_pid": gone.pid,
                        "harness_started": 0.0,
                    }
                )
            )
        with socket.socket() as holder:  # the run stops after its check of left-behind servers
            holder.bind(("127.0.0.1", 0))
            holder.listen()
            completed = subprocess.run(
                harness_command("asgi-3.14", environments["asgi"], tmp_path, holder.getsockname()[1]),
                capture_output=True,
                text=True,
                cwd=ROOT,
                timeout=60,
            )
        assert completed.returncode == 2 and "already in use" in completed.stderr
        assert bystander.poll() is None and "stopped Granian" not in completed.stderr
        assert list(records.iterdir()) == []  # the stale records are gone
    finally:
        bystander.kill()
        bystander.wait()


# --- a full disk -------------------------------------------------------------------------------------------


@contextlib.contextmanager
def tmpfs(path: Path, size: str):
    """A small file system of its own (the tests run as root, as CI does), always unmounted."""
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()}


def test_too_small_a_disk_is_refused_before_anything_runs(environments, tmp_path):
    with tmpfs(tmp_path / "small", "64k") as results_dir:
        completed, _ = run_session("asgi-3.14", environments["asgi"], results_dir, "--table", "asgi-json")
        assert completed.returncode == 2
        assert (
            completed.stderr.strip()
            .splitlines()[-1]
            .startswith(f"gilfree: error: results directory {results_dir} has 64 KiB free, and this session writes")
        )
        assert "Traceback" not in completed.stderr and snapshot(results_dir) == {}
    assert leftovers(environments["asgi"]) == []


def fill(directory: Path) -> None:
    with contextlib.suppress(OSError), open(directory / "filler", "wb", buffering=0) as filler:
        while True:
            filler.write(b"x" * 4096)


def test_a_disk_that_fills_during_a_run_loses_only_that_run_and_says_so(environments, tmp_path):
    python, port = environments["asgi"], free_port()
    with tmpfs(tmp_path / "disk", "512k") as results_dir:
        first = subprocess.run(
            harness_command("asgi-3.14", python, results_dir, port, "--table", "asgi-json"),
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=120,
        )
        assert first.returncode == 0, first.stderr
        stored = snapshot(results_dir)
        harness = start_harness(python, results_dir, port, "--table", "asgi-json", "--repeat", "2")
        server_on(port)
        fill(results_dir)  # while the run is measured: its record is what cannot be written
        _, stderr = harness.communicate(timeout=120)
        assert harness.returncode == 3, stderr
        errors = [line for line in stderr.splitlines() if "error" in line]
        cell = in_order(cell for cell in SESSIONS["asgi-3.14"].cells() if cell.table == "asgi-json")[0]
        assert errors == [
            f"gilfree: error: no space left on the device for "
            f"{results_dir / 'raw' / cell.table / (cell.key + '.json')}: 1 measured run(s) could not "
            f"be stored; the files stored before are intact. Free some space (or choose another "
            f"--results-dir) and run it again: stored runs are kept"
        ]
        assert "Traceback" not in stderr
        now = snapshot(results_dir)
        assert {name: now[name] for name in stored} == stored  # every stored file intact, tables included
        assert not [name for name in now if name.endswith(".tmp")]
    assert granian_processes(python) == []


# --- a corrupt record --------------------------------------------------------------------------------------


def test_unreadable_record_is_set_aside_as_such_and_keeps_its_log(environments, tmp_path):
    python = environments["asgi"]
    first, _ = run_session("asgi-3.14", python, tmp_path, "--table", "asgi-json")
    assert first.returncode == 0, first.stderr
    cell = SESSIONS["asgi-3.14"].cells()[0]
    path = tmp_path / "raw" / cell.table / f"{cell.key}.json"
    old_log = Path(json.loads(path.read_text())["runs"][0]["log"])
    old_log_text = old_log.read_text()
    truncated = path.read_text()[:200]
    path.write_text(truncated)
    again, _ = run_session("asgi-3.14", python, tmp_path, "--table", "asgi-json")
    assert again.returncode == 0, again.stderr
    assert f"set {cell.table} {cell.key}'s stored result aside (it cannot be read): " in again.stderr
    assert "other conditions" not in again.stderr and "kept 1 stored run(s)" in again.stderr
    [aside] = (tmp_path / "raw" / cell.table / "unreadable").glob(f"{cell.key}.*.json")
    assert aside.read_text() == truncated
    new_log = Path(json.loads(path.read_text())["runs"][0]["log"])
    assert old_log.name.endswith(".run1.log") and new_log.name.endswith(".run2.log")
    assert old_log.read_text() == old_log_text  # the set-aside record's log is its own still


# --- a port the user may not bind --------------------------------------------------------------------------


def test_a_privileged_port_is_refused_as_not_allowed_not_as_taken(tmp_path):
    start = int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text())
    assert start > 1, "this machine lets anyone bind any port: there is no privileged port to test with"
    port = min(80, start - 1)
    # As root, drop the capability to bind low ports (CI runs as root); as another user there is none to drop.
    unprivileged = (
        ["setpriv", "--inh-caps=-net_bind_service", "--bounding-set=-net_bind_service"] if os.geteuid() == 0 else []
    )
    completed = subprocess.run(
        unprivileged + harness_command("asgi-3.14", "/nonexistent/python", tmp_path, port),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert completed.returncode == 2
    assert completed.stderr == (
        f"gilfree: error: port {port} on 127.0.0.1 cannot be bound: permission denied (on "
        f"this machine ports below {start} need root or CAP_NET_BIND_SERVICE); choose a "
        f"port of {start} or above with --port\n"
    )
