"""Shared fixtures: made-up records for renderer tests, and real environments for the integration tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from gilfree.run import rounds
from gilfree.run.child import free_port  # noqa: F401  (the tests' free port, as the harness finds one)
from gilfree.study import results, summary
from gilfree.study.record import Record
from gilfree.study.schema import override_variable
from gilfree.study.studies import Cell

ROOT = Path(__file__).resolve().parents[1]


def make_record(
    cell: Cell,
    *,
    label: str | None = None,
    rps: float = 30415.4,
    status: str = "ok",
    failure: str | None = None,
    errors: int = 0,
    non_2xx: int = 0,
    version: str = "3.14.0",
    percentiles: dict | None = None,
) -> dict:
    """A result record as the harness stores it (its JSON), with made-up figures for one run: the record's medians,
    spread and status derived from that run by the code the runner uses (summary.derived), and the whole checked
    against the typed record the reports read."""
    free_threaded = cell.variant.endswith("t")
    label = label or cell.variant
    measured = status == "ok"
    load = {
        "rps": rps,
        "latency_avg_ms": 4.204,
        "latency_max_ms": 45.287,
        "requests": int(rps * 30),
        "errors": errors,
        "non_2xx": non_2xx,
        "generator": "rewrk",
        "loadgen_cpu_cores": 0.5,
        "loadgen_wall_s": 30.0,
        "latency_percentiles_ms": percentiles,
        "offered_rps": None,
    }
    resources = {
        "cpu_cores": 0.4216,
        "peak_rss_bytes": 90 * 2**20 + 1000,
        "peak_processes": 2,
        "peak_threads": 5,
        "samples": 120,
        "interval_s": 0.25,
        "window_s": 30.0,
        "sampler_cpu_s": 0.2,
    }
    run = {
        "status": status,
        "failure": failure,
        "load": load if measured else None,
        "resources": resources if measured else None,
        "warnings": [],
    }
    record = {
        "schema": results.SCHEMA,
        "study": "article",
        "cell": cell.as_dict(),
        "settings": {"duration_s": 30, "loadgen": "rewrk", "port": 8000, "repeat": 1},
        "runs": [run] if measured else [],
        "failed_runs": [] if measured else [run],
        "warnings": [],
        "interpreter": {
            "executable": "/x/bin/python",
            "version": version,
            "implementation": "CPython",
            "free_threaded_build": free_threaded,
            "gil_enabled": not free_threaded,
            "packages": {"granian": "2.5.5"},
            "variant": cell.variant,
            "label": label,
            "stand_in": label != cell.variant,
        },
        "machine": {"cpu_model": "AMD Ryzen 7 5700X", "logical_cores": 16},
        **summary.derived([run], 1),
    }
    Record.read(record)
    return record


def typed(stored: dict) -> dict:
    """Stored records by (table, key), as the reports read them (results.load): typed."""
    return {key: Record.read(record) for key, record in stored.items()}


@pytest.fixture(autouse=True)
def machine_lock_dir(tmp_path_factory, monkeypatch) -> Path:
    """Each test's own machine lock (and records of running servers): other test runs on this machine, in
    other checkouts, neither block these nor are blocked by them. Harnesses started by a test inherit it."""
    directory = tmp_path_factory.mktemp("machine")
    monkeypatch.setenv("GILFREE_LOCK_DIR", str(directory))
    monkeypatch.delenv("GILFREE_CALLER", raising=False)  # set when the suite runs under `nox -s tests`
    return directory


def base_python() -> str:
    """A GIL interpreter that is here: GILFREE_TEST_PYTHON, else the one running the tests."""
    return os.environ.get("GILFREE_TEST_PYTHON", getattr(sys, "_base_executable", sys.executable))


@pytest.fixture(scope="session")
def real_pythons() -> dict[str, str]:
    """The real CPython 3.13.5 and 3.13.5t that `nox -s tests` builds once per machine (tests/build-cpython) and
    hands over as GILFREE_PYTHON_3_13 and GILFREE_PYTHON_3_13T. Where they are missing, the tests that need them
    fail: they are never skipped."""
    found = {variant: os.environ.get(override_variable(variant), "") for variant in ("3.13", "3.13t")}
    missing = [override_variable(variant) for variant, path in found.items() if not os.access(path, os.X_OK)]
    if missing:
        pytest.fail(
            f"{' and '.join(missing)} name no interpreter: run the suite with `nox -s tests`, which builds "
            f"them, or point them at a CPython 3.13 and a free-threaded 3.13t"
        )
    return found


# The post's two apps as a study file declares them, with absolute paths (a format template: {root}).
POST_APPS_TOML = {
    app: f"""
[apps.{app}]
interface = "{app}"
target = "{target}"
directory = "{{root}}/apps"
requirements = "{{root}}/requirements/{app}.in"
endpoints.json = {{{{ json = {{{{ message = "Hello, World!" }}}} }}}}
"""
    for app, target in (("asgi", "impl_fastapi:app"), ("wsgi", "impl_flask:app"))
}


# A study's head for the post's apps on the real 3.13 and 3.13t (real_environments), after its title line (a format
# template: {root}); the apps (POST_APPS_TOML) and the tables follow.
REAL_313_HEAD = """variants = ["3.13", "3.13t"]
duration = "1s"
results = "out"
locks = "{root}/locks"

[profiles.article]
python = {{ "3.13" = "3.13.5", "3.13t" = "3.13.5t" }}
"""


def build_environment(location: Path, interpreter: str, lock, *extra: str) -> str:
    """An environment under test, as the noxfile builds one: the interpreter, then the lock (a path, or one under
    locks/), hashes required, bytecode compiled; then any `extra` packages. Its interpreter's path."""
    subprocess.run(["uv", "venv", "-q", "--python", interpreter, str(location)], check=True)
    subprocess.run(
        [
            "uv",
            "pip",
            "sync",
            "-q",
            "--require-hashes",
            "--compile-bytecode",
            "--python",
            str(location),
            str(ROOT / "locks" / lock),
        ],
        check=True,
    )
    if extra:
        subprocess.run(["uv", "pip", "install", "-q", "--python", str(location), *map(str, extra)], check=True)
    return str(location / "bin" / "python")


@pytest.fixture(scope="session")
def environments(tmp_path_factory) -> dict[str, str]:
    """Real environments under test, built as the nox sessions build them: uv, from the article lock."""
    return {
        app: build_environment(tmp_path_factory.mktemp(f"env-{app}"), base_python(), f"article/{app}.txt")
        for app in ("asgi", "wsgi")
    }


@pytest.fixture(scope="session")
def real_environments(real_pythons, tmp_path_factory) -> dict[tuple[str, str], str]:
    """(app, variant) -> the interpreter of an environment under test on the real 3.13 and 3.13t, from the post's
    locks, as the nox sessions build them."""
    return {
        (app, variant): build_environment(
            tmp_path_factory.mktemp(f"env-{app}-{variant}"), interpreter, f"article/{app}.txt"
        )
        for app in ("asgi", "wsgi")
        for variant, interpreter in real_pythons.items()
    }


# Each round's order is shuffled by a seed; the tests give one, so that they know which cell runs when.
ORDER_SEED = "0"


def in_order(cells) -> list:
    """The cells of a session's first round, in the order the tests' seed runs them."""
    cells = list(cells)
    return rounds.round_order(cells, dict.fromkeys(cells, 0), 0, int(ORDER_SEED))


def harness_command(session: str, python: str, results_dir: Path, port: int, *extra: str) -> list[str]:
    """The harness's command line as the nox sessions give it, with wrk and 1 s cells unless overridden."""
    return [
        sys.executable,
        "-m",
        "gilfree",
        "run",
        session,
        "--python",
        python,
        "--loadgen",
        "wrk",
        "--duration",
        "1s",
        "--port",
        str(port),
        "--results-dir",
        str(results_dir),
        "--order-seed",
        ORDER_SEED,
        *extra,
    ]


def run_session(session: str, python: str, results_dir: Path, *extra: str, env: dict | None = None):
    port = free_port()
    completed = subprocess.run(
        harness_command(session, python, results_dir, port, *extra),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=180,
        env={**os.environ, **(env or {})},
    )
    return completed, port


def stands_in(python: str) -> bool:
    """Whether the interpreter under test is another minor version than the post's 3.14."""
    version = subprocess.run(
        [python, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True, text=True, check=True
    ).stdout.strip()
    return version != "(3, 14)"


def leftovers(python: str) -> list[psutil.Process]:
    """Processes still running from the environment under test."""
    env_dir = str(python).rsplit("/bin/", 1)[0]
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if any(env_dir in part for part in process.info["cmdline"] or []):
            found.append(process)
    return found


def listening_on(port: int) -> list:
    """The TCP sockets listening on this port, on any address."""
    return [c for c in psutil.net_connections("tcp") if c.laddr.port == port and c.status == psutil.CONN_LISTEN]


def assert_port_free(port: int) -> None:
    assert listening_on(port) == []


def wait_for(condition, timeout: float = 30.0, what="the condition", interval: float = 0.05):
    """Poll `condition` every `interval` seconds until it returns something true, and return that: tests wait on
    the event itself, never for a fixed time. Fails after `timeout` seconds, naming what never happened: `what`,
    or what it returns if it is callable (called then, so that it can tell the last thing the condition saw)."""
    deadline = time.monotonic() + timeout
    while True:
        found = condition()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what() if callable(what) else what}")
        time.sleep(interval)


def cpu_seconds(*processes: psutil.Process) -> float:
    """User plus system CPU seconds of these processes, all their threads, as the kernel counts them."""
    return sum(sum(process.cpu_times()[:2]) for process in processes)


def spinning(process: psutil.Process, timeout: float = 30.0) -> None:
    """Wait until a process that should be busy has been seen using CPU (it has started, and got a core)."""
    used = cpu_seconds(process)
    wait_for(lambda: cpu_seconds(process) > used + 0.02, timeout, f"pid {process.pid} to use CPU")
