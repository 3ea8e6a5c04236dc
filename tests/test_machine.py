"""One benchmark per machine at a time, and no process outliving its caller: real harnesses, real nox."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from conftest import ROOT, base_python, free_port, harness_command, in_order, wait_for
from test_faults import load_processes

from gilfree.run import machine_lock, runner
from gilfree.run.interpreters import Interpreter
from gilfree.run.processes import wait_exit
from gilfree.study.studies import article

SESSIONS = article().sessions


def start(session, python, results_dir, *extra):
    return subprocess.Popen(
        harness_command(session, python, results_dir, free_port(), *extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )


def runs(results_dir: Path, session: str, table: str) -> list[dict]:
    return [
        run
        for cell in SESSIONS[session].cells()
        if cell.table == table
        for run in json.loads((results_dir / "raw" / table / f"{cell.key}.json").read_text())["runs"]
    ]


def test_the_same_session_twice_at_once_measures_once_and_loses_nothing(environments, tmp_path):
    python = environments["asgi"]
    first = start("asgi-3.14", python, tmp_path, "--table", "asgi-json")
    holder = wait_for(lambda: machine_lock.holder(), timeout=60)
    second = start("asgi-3.14", python, tmp_path, "--table", "asgi-json")
    _, first_err = first.communicate(timeout=180)
    _, second_err = second.communicate(timeout=180)
    assert (first.returncode, second.returncode) == (0, 0), first_err + second_err
    assert holder.pid == first.pid and holder.session == "asgi-3.14"
    assert f"waiting for the machine: pid {first.pid} (session asgi-3.14, since {holder.since})" in second_err
    assert "kept 2 stored run(s)" in second_err and "[1/" not in second_err  # it found the first one's runs
    assert len(runs(tmp_path, "asgi-3.14", "asgi-json")) == first_err.count("gilfree: [") == 2
    assert sorted(p.name for p in (tmp_path / "logs" / "asgi-json").iterdir()) == [
        f"{cell.key}.run1.log" for cell in SESSIONS["asgi-3.14"].cells() if cell.table == "asgi-json"
    ]
    assert machine_lock.holder() is None, (first.pid, second.pid, second_err)  # released, sidecar gone


def test_two_sessions_at_once_never_overlap_their_measurements(environments, tmp_path):
    first = start("asgi-3.14", environments["asgi"], tmp_path / "a", "--table", "asgi-json")
    wait_for(lambda: machine_lock.holder(), timeout=60)
    second = start("wsgi-3.14", environments["wsgi"], tmp_path / "b", "--table", "wsgi-json")
    _, first_err = first.communicate(timeout=180)
    _, second_err = second.communicate(timeout=180)
    assert (first.returncode, second.returncode) == (0, 0), first_err + second_err
    assert f"waiting for the machine: pid {first.pid} (session asgi-3.14" in second_err
    firsts, seconds = runs(tmp_path / "a", "asgi-3.14", "asgi-json"), runs(tmp_path / "b", "wsgi-3.14", "wsgi-json")
    assert len(firsts) == len(seconds) == 2  # every run of both sessions stored
    assert max(run["finished_at"] for run in firsts) < min(run["started_at"] for run in seconds)


@pytest.mark.parametrize("where", ["isolated", "default"])
def test_no_wait_refuses_at_once_naming_the_holder(tmp_path, monkeypatch, where):
    if where == "default":  # the real machine-wide place, as every user's sessions share it
        monkeypatch.delenv(machine_lock.DIR_ENV)
    with machine_lock.held("test-holder", wait=False) as me:
        completed = subprocess.run(
            harness_command("asgi-3.14", "/nonexistent/python", tmp_path, free_port(), "--no-wait"),
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
        )
    lock = machine_lock.state_dir() / "machine.lock"
    assert completed.returncode == 2
    assert completed.stderr == (
        f"gilfree: error: the machine is busy: pid {os.getpid()} (session test-holder, since "
        f"{me.since}) holds {lock}; wait for it to finish (leave out --no-wait to queue "
        f"behind it)\n"
    )
    assert where == "isolated" or lock.parent == machine_lock.DEFAULT_DIR


def granian_on(port):
    return [
        p
        for p in psutil.process_iter(["cmdline"])
        if any(part.endswith("/bin/granian") for part in p.info["cmdline"] or []) and str(port) in p.info["cmdline"]
    ]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_nox_killed_mid_load_takes_the_harness_granian_and_the_load_with_it(tmp_path, signum):
    """A signal to nox itself (not its group): the harness (run through uv, so not nox's child) sees its
    caller gone, stops Granian and wrk, keeps the finished run, and exits; all within seconds."""
    port, results_dir = free_port(), tmp_path / "results"
    nox = subprocess.Popen(
        [
            "nox",
            "--envdir",
            str(tmp_path / "nox"),
            "-s",
            "asgi-3.14",
            "--",
            "--loadgen",
            "wrk",
            "--duration",
            "4s",
            "--table",
            "asgi-json",
            "--port",
            str(port),
            "--results-dir",
            str(results_dir),
        ],
        env={**os.environ, "GILFREE_PYTHON_3_14": base_python()},
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        stored = results_dir / "raw" / "asgi-json"  # the rounds' order is shuffled: either cell may be first
        [first] = wait_for(lambda: list(stored.glob("*.json")), timeout=150)
        load = wait_for(lambda: load_processes(port), timeout=30)
        harness = [
            p
            for p in psutil.process_iter(["cmdline"])
            if (p.info["cmdline"] or [])[1:4] == ["-m", "gilfree", "run"] and str(port) in p.info["cmdline"]
        ]
        server = granian_on(port)
        assert harness and server and load
        nox.send_signal(signum)
        output, _ = nox.communicate(timeout=60)  # its end: every process holding nox's output has exited
        _, alive = psutil.wait_procs(harness + server + load, timeout=15)
        assert alive == []
        assert "gilfree: terminated; the servers are stopped and finished cells are kept" in output, output
        assert json.loads(first.read_text())["status"] == "ok"
        assert list(stored.glob("*.json")) == [first]  # the cell under load when nox died is not stored
        assert machine_lock.holder() is None
    finally:
        nox.kill()
        for process in granian_on(port) + load_processes(port):
            process.kill()


def test_the_post_release_warning_is_printed_when_the_interpreter_is_checked(monkeypatch, capsys, tmp_path):
    """Not a stand-in, but not the post's patch release: said on the console, not only in the tables' notes."""
    interpreter = Interpreter(
        executable="/opt/py314/bin/python3.14",
        version="3.14.7",
        implementation="CPython",
        free_threaded_build=False,
        gil_enabled=True,
        packages={},
        variant="3.14",
        label="3.14",
    )
    monkeypatch.setattr(runner, "probe", lambda *args: interpreter)
    monkeypatch.setattr(runner, "check", lambda variant, found: found)
    monkeypatch.setattr(runner, "check_lock", lambda lock, packages: None)
    options = runner.Options(
        session=SESSIONS["asgi-3.14"],
        pythons={("asgi", "3.14"): interpreter.executable},
        duration_s=1,
        loadgen="wrk",
        results_dir=tmp_path,
        port=free_port(),
        profile="article",
    )
    runner.interpreters(options)
    said = "CPython 3.14.7 is not the 3.14.0 that profile article asks for"
    assert f"gilfree: WARNING 3.14: {said}\n" in capsys.readouterr().err
    assert [warning.message for warning in runner.interpreter_warnings(interpreter, options)] == [said]


def test_a_harness_whose_caller_dies_stops_even_when_its_parent_lives_on(environments, tmp_path):
    """The caller named in GILFREE_CALLER dies, SIGKILLed, while the harness's own parent (a shell here, uv
    under nox) lives on: the harness notices, stops the server and the load, keeps the finished run."""
    port = free_port()
    command = " ".join(
        harness_command("asgi-3.14", environments["asgi"], tmp_path, port, "--duration", "4s", "--table", "asgi-json")
    )
    caller = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"""
import os, subprocess, sys
from gilfree.run import machine_lock
shell = subprocess.Popen(["sh", "-c", {command!r} + "; echo harness exited $? >&2"], env={{**os.environ, **machine_lock.caller_env()}})
shell.wait()
""",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    first, second = in_order(cell for cell in SESSIONS["asgi-3.14"].cells() if cell.table == "asgi-json")
    try:
        wait_for((tmp_path / "raw" / first.table / f"{first.key}.json").exists, timeout=120)
        load = wait_for(lambda: load_processes(port), timeout=30)
        server = granian_on(port)
        caller.kill()
        _, stderr = caller.communicate(timeout=60)  # the shell and the harness hold its stderr to their end
        _, alive = psutil.wait_procs(server + load, timeout=15)
        assert alive == []
        assert f"the caller (pid {caller.pid}) has exited: stopping the server and the load" in stderr
        assert "harness exited 143" in stderr
        assert json.loads((tmp_path / "raw" / first.table / f"{first.key}.json").read_text())["status"] == "ok"
        assert not (tmp_path / "raw" / second.table / f"{second.key}.json").exists()
    finally:
        for process in granian_on(port) + load_processes(port):
            process.kill()


def test_the_same_nox_session_twice_at_once_builds_and_measures_in_turn(tmp_path):
    """Two `nox -s asgi-3.14` at once, one environment folder, one results directory: the second builds its
    environment only once the first has finished measuring from it, and finds the first one's runs stored."""
    results_dir = tmp_path / "results"
    command = [
        "nox",
        "--envdir",
        str(tmp_path / "nox"),
        "-s",
        "asgi-3.14",
        "--",
        "--loadgen",
        "wrk",
        "--duration",
        "1s",
        "--table",
        "asgi-json",
        "--results-dir",
        str(results_dir),
    ]
    env = {**os.environ, "GILFREE_PYTHON_3_14": base_python()}
    first = subprocess.Popen(
        command + ["--port", str(free_port())],
        env=env,
        cwd=ROOT,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    holder = wait_for(lambda: machine_lock.holder(), timeout=60)
    second = subprocess.Popen(
        command + ["--port", str(free_port())],
        env=env,
        cwd=ROOT,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    first_out, _ = first.communicate(timeout=240)
    second_out, _ = second.communicate(timeout=240)
    assert (first.returncode, second.returncode) == (0, 0), first_out + second_out
    assert holder.pid == first.pid
    waited = second_out.index(f"waiting for the machine: pid {first.pid} (session asgi-3.14")
    assert waited < second_out.index("uv venv --clear")  # no environment built under a running measurement
    assert "kept 2 stored run(s)" in second_out and "gilfree: [" not in second_out
    assert len(runs(results_dir, "asgi-3.14", "asgi-json")) == first_out.count("gilfree: [") == 2


def test_waiting_for_an_exit_returns_once_it_exits_and_times_out_while_it_runs():
    ignoring = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, time; signal.signal(signal.SIGTERM, "
            "signal.SIG_IGN); print('ready', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert ignoring.stdout.readline() == b"ready\n"  # SIGTERM is ignored from here on
        ignoring.terminate()
        with pytest.raises(subprocess.TimeoutExpired):
            wait_exit(ignoring, 0.2)
        assert ignoring.poll() is None
        ignoring.kill()
        wait_exit(ignoring, 5)
        assert ignoring.returncode == -signal.SIGKILL
    finally:
        ignoring.kill()
        ignoring.wait()
        ignoring.stdout.close()
