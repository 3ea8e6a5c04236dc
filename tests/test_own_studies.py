"""Studies beyond the post, for real: the two worked examples in studies/ and a user's study whose app lives outside
the repository, each run through the harness's command line on a GIL interpreter that is here, with real Granian
and real wrk, 1 s per cell."""

import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT, base_python, build_environment, free_port, leftovers

from gilfree.study.studies import load

EVENT_LOOPS = load(ROOT / "studies" / "event-loops.toml")
WSGI_THREADS = load(ROOT / "studies" / "wsgi-threads.toml")


def build(location, lock) -> str:
    return build_environment(location, base_python(), lock)


def harness(*args, timeout=600):
    return subprocess.run(
        [sys.executable, "-m", "gilfree", *args], capture_output=True, text=True, cwd=ROOT, timeout=timeout
    )


def run(session, study, python, results_dir, *extra):
    return harness(
        "run",
        session,
        "--study",
        str(study.path),
        "--python",
        python,
        "--loadgen",
        "wrk",
        "--duration",
        "1s",
        "--port",
        str(free_port()),
        "--results-dir",
        str(results_dir),
        *extra,
    )


def records(results_dir):
    return {path.stem: json.loads(path.read_text()) for path in (results_dir / "raw").glob("*/*.json")}


@pytest.fixture(scope="module")
def event_loops_python(tmp_path_factory):
    return build(tmp_path_factory.mktemp("env-event-loops"), EVENT_LOOPS.lock_path("default", "fastapi"))


def test_the_event_loops_study_runs_each_loop_on_the_gil_variant(event_loops_python, tmp_path):
    completed = run("event-loops-3.14", EVENT_LOOPS, event_loops_python, tmp_path)
    assert completed.returncode == 0, completed.stderr
    stored = records(tmp_path)
    cells = EVENT_LOOPS.sessions["event-loops-3.14"].cells()
    assert sorted(stored) == sorted(cell.key for cell in cells) and len(cells) == 6
    for cell in cells:
        record = stored[cell.key]
        assert record["status"] == "ok", record["failure"]
        assert record["study"] == "event-loops" and record["load"]["rps"] > 0
        server = record["commands"]["server"]
        assert server[server.index("--loop") + 1] == cell.loop
        assert record["environment"]["lock"] == "../locks/event-loops/default/fastapi.txt"
    assert {stored[c.key]["interpreter"]["packages"]["uvloop"] for c in cells} == {"0.23.0"}
    table = (tmp_path / "tables" / "loops-io.md").read_text()
    assert "## Table 2: FastAPI /io (10 ms wait) by event loop, 1 worker, c=128" in table
    rows = [line for line in table.splitlines() if line.startswith("| 3.")]
    assert [row.split("|")[2].strip() for row in rows] == ["asyncio", "asyncio", "uvloop", "uvloop", "rloop", "rloop"]
    assert sum("not run" in row for row in rows) == 3  # the 3.14t rows, run by the other session
    assert leftovers(event_loops_python) == []


@pytest.mark.parametrize("study, session", [(EVENT_LOOPS, "event-loops-3.14t"), (WSGI_THREADS, "wsgi-threads-ft")])
def test_their_free_threaded_sessions_refuse_a_gil_build(study, session, environments, event_loops_python, tmp_path):
    python = event_loops_python if study is EVENT_LOOPS else environments["wsgi"]
    completed = run(session, study, python, tmp_path)
    assert completed.returncode == 2
    assert (
        "variant 3.14t needs a free-threaded build" in completed.stderr and "GILFREE_PYTHON_3_14T" in completed.stderr
    )
    assert not (tmp_path / "raw").exists()


# A user's service: a plain ASGI app (no framework), its own requirements, outside the repository.
SERVICE = """\
async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while (message := await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    found = scope["path"] == "/hello"
    await send({"type": "http.response.start", "status": 200 if found else 404,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"hello, " + scope["query_string"] if found else b"no"})
"""

MINE = """\
title = "My service"
variants = ["3.14", "3.14t"]
duration = "1s"
results = "out"

[apps.service]
interface = "asgi"
target = "app:app"
directory = "service"
requirements = "service/requirements.in"
endpoints.hello = { path = "/hello?world", text = "hello, world" }
endpoints.gone = { status = 404 }

[tables.hello]
number = 1
title = "My service, /hello"
columns = ["python", "workers", "concurrency", "rps", "latency_avg", "latency_max", "cpu", "ram"]
cell = { app = "service", endpoint = "hello" }
rows = [
    { variant = "3.14", workers = 1, concurrency = 16 },
    { variant = "3.14t", workers = 1, concurrency = 16 },
    { variant = "3.14", workers = 2, concurrency = 32 },
    { variant = "3.14t", workers = 2, concurrency = 32 },
]
"""


def test_a_study_of_ones_own_app_outside_the_repository_with_its_own_lock(tmp_path):
    (tmp_path / "service").mkdir()
    (tmp_path / "service" / "app.py").write_text(SERVICE)
    (tmp_path / "service" / "requirements.in").write_text("granian==2.5.5\n")
    study_file = tmp_path / "mine.toml"
    study_file.write_text(MINE)
    locked = subprocess.run(
        ["nox", "-s", "lock", "--", str(study_file)], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert locked.returncode == 0, locked.stderr
    lock = tmp_path / "mine-locks" / "default" / "service.txt"  # beside the study file, under its profile
    assert "granian==2.5.5" in lock.read_text() and "--hash=sha256:" in lock.read_text()
    python = build(tmp_path / "env", lock)
    completed = harness(
        "run",
        "mine-3.14",
        "--study",
        str(study_file),
        "--python",
        python,
        "--loadgen",
        "wrk",
        "--port",
        str(free_port()),
    )
    assert completed.returncode == 0, completed.stderr
    stored = records(tmp_path / "out")  # the study's own results folder, relative to its file
    assert sorted(stored) == ["3.14-w1-tdefault-hello-c16", "3.14-w2-tdefault-hello-c32"]
    for record in stored.values():
        assert record["status"] == "ok", record["failure"]
        assert record["study"] == "mine" and record["settings"]["duration_s"] == 1  # the study's duration
        assert record["load"]["non_2xx"] == 0 and record["load"]["rps"] > 0
        assert record["commands"]["server"][-1] == "app:app"
        assert record["commands"]["load"][-1].endswith("/hello?world")
        assert record["environment"] == {
            "profile": "default",
            "lock": "mine-locks/default/service.txt",
            "lock_sha256": record["environment"]["lock_sha256"],
        }
    assert "## Table 1: My service, /hello" in (tmp_path / "out" / "TABLES.md").read_text()
    assert not (ROOT / "results" / "mine").exists()


def test_an_app_that_answers_otherwise_than_its_study_says_fails_before_any_load(tmp_path, environments):
    """The study's expected answer is checked as the post's is: here it expects a text the app never sends."""
    study_file = tmp_path / "wrong.toml"
    study_file.write_text(
        MINE.replace('text = "hello, world"', 'text = "goodbye"')
        .replace('directory = "service"', f'directory = "{ROOT / "apps"}"')
        .replace('target = "app:app"', 'target = "impl_fastapi:app"')
        .replace("endpoints.gone = { status = 404 }\n", "")
    )
    lock = tmp_path / "wrong-locks" / "default" / "service.txt"
    lock.parent.mkdir(parents=True)
    lock.write_text((ROOT / "locks" / "article" / "asgi.txt").read_text())
    completed = harness(
        "run",
        "wrong-3.14",
        "--study",
        str(study_file),
        "--python",
        environments["asgi"],
        "--loadgen",
        "wrk",
        "--port",
        str(free_port()),
        "--table",
        "hello",
    )
    assert completed.returncode == 1
    [stored] = (tmp_path / "out" / "raw" / "hello").glob("*.json")  # the first cell run failed; none ran after it
    record = json.loads(stored.read_text())
    assert record["status"] == "failed" and record["runs"][0]["load"] is None
    assert "GET /hello?world answered status 404, expected 200 (before any load)" in record["failure"]


def on_two_cpus():
    """Run a child on CPUs 0 and 1 alone, so that it sees a 2-CPU machine whatever this one has."""
    return lambda: os.sched_setaffinity(0, {0, 1})


def test_core_scaling_refuses_a_machine_too_small_for_two_points_before_anything_starts(tmp_path):
    pythons = [
        arg
        for app in ("asgi", "wsgi")
        for variant in ("3.14", "3.14t")
        for arg in ("--python", f"{app}:{variant}=/nonexistent/python")
    ]
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "gilfree",
            "run",
            "scaling",
            *pythons,
            "--loadgen",
            "wrk",
            "--results-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        preexec_fn=on_two_cpus(),
        timeout=60,
    )
    assert completed.returncode == 2
    assert completed.stderr == (
        "gilfree: error: session scaling: this machine has 2 CPUs; the load generator needs 1; "
        "core scaling needs at least 2 points (k=1 and k=2), so at least 3 CPUs\n"
    )
    assert not (tmp_path / "raw").exists()


def test_a_cell_given_one_cpu_runs_on_it_with_the_load_generator_on_the_other(tmp_path, environments):
    study_file = tmp_path / "pinned.toml"
    study_file.write_text(
        MINE.replace('directory = "service"', f'directory = "{ROOT / "apps"}"')
        .replace('target = "app:app"', 'target = "impl_fastapi:app"')
        .replace(
            'endpoints.hello = { path = "/hello?world", text = "hello, world" }\nendpoints.gone = { status = 404 }\n',
            "endpoints.json = {}\n",
        )
        .replace(
            'cell = { app = "service", endpoint = "hello" }', 'cell = { app = "service", endpoint = "json", cpus = 1 }'
        )
    )
    lock = tmp_path / "pinned-locks" / "default" / "service.txt"
    lock.parent.mkdir(parents=True)
    lock.write_text((ROOT / "locks" / "article" / "asgi.txt").read_text())
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "gilfree",
            "run",
            "pinned-3.14",
            "--study",
            str(study_file),
            "--python",
            environments["asgi"],
            "--loadgen",
            "wrk",
            "--port",
            str(free_port()),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        preexec_fn=on_two_cpus(),
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr
    stored = records(tmp_path / "out")
    assert sorted(stored) == ["3.14-w1-tdefault-json-c16-k1", "3.14-w2-tdefault-json-c32-k1"]
    for record in stored.values():
        assert record["status"] == "ok", record["failure"]
        assert (record["settings"]["server_cpus"], record["settings"]["loadgen_cpus"]) == ([0], [1])
        assert record["cell"]["cpus"] == 1
