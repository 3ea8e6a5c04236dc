"""Granian's own counters (--metrics, Granian 2.7.0 and later) and what Granian really ran: the parser and the
window on recorded real output, then real Granian 2.8.9 (the `latest` lock) loaded by real wrk, on this machine's
GIL interpreter and on the real free-threaded 3.13t."""

import json
import subprocess
import sys
from dataclasses import replace

import pytest
from conftest import POST_APPS_TOML, ROOT, base_python, build_environment, free_port

from gilfree.run import granian_counters
from gilfree.run.server import resolved_runtime_mode
from gilfree.study.studies import article

RECORDED = ROOT / "tests" / "recorded"
VARIANT = (
    "import sys, sysconfig; "  # the variant an interpreter is: 3.12, 3.13t ...
    "print(f'3.{sys.version_info[1]}' + ('t' if sysconfig.get_config_var('Py_GIL_DISABLED') else ''))"
)
STUDY = """title = "Granian's counters"
variants = ["{variant}"]
duration = "2s"
results = "out"
locks = "{locks}"
{metrics}
[profiles.latest]
python = {{ "{variant}" = "{variant}" }}
"""
APPS = {
    "wsgi": POST_APPS_TOML["wsgi"]
    + """
[tables.wsgi]
number = 1
title = "Flask, 2 workers x 4 blocking threads"
columns = ["python", "workers", "threads", "runtime_mode", "rps", "gil_wait", "blocking"]
cell = {{ app = "wsgi", endpoint = "json", variant = "{variant}", workers = 2, blocking_threads = 4, concurrency = 32 }}
rows = [{{}}]
""",
    "asgi": POST_APPS_TOML["asgi"]
    + """
[tables.asgi]
number = 1
title = "FastAPI, Granian's auto loop"
columns = ["python", "loop", "runtime_mode", "rps"]
cell = {{ app = "asgi", endpoint = "json", variant = "{variant}", workers = 1, concurrency = 16 }}
rows = [{{ loop = "auto" }}]
""",
}


def test_the_window_on_granians_real_output_per_worker_and_summed():
    before = granian_counters.parse((RECORDED / "granian-2.8.9-metrics-before.txt").read_text())
    after = granian_counters.parse((RECORDED / "granian-2.8.9-metrics-after.txt").read_text())
    counted = granian_counters.window(before, after, 2.0)
    assert counted["workers"]["1"]["requests_handled"] == 2801 and counted["workers"]["2"]["requests_handled"] == 3326
    assert counted["workers"]["2"]["py_wait_us"] == 3486193 - 7
    total = counted["total"]
    assert total["requests_handled"] == 6127 and total["blocking_threads"] == 8
    assert total["gil_wait_share"] == pytest.approx((3887741 + 3486186) / (6462359 + 5797068 - 6379))
    assert total["blocking_utilisation"] == pytest.approx((6462359 + 5797068 - 6379) / (8 * 2.0e6))


def test_a_gap_between_granians_count_and_the_load_generators_beyond_the_connections_is_a_warning():
    cell = article().tables_by_id["wsgi-json"].cells[0]  # c=128
    counted = {"total": {"requests_handled": 10_000}}
    assert granian_counters.requests_gap(counted, 9_782, cell) is None  # gap 218; allowed 128 + 1% of 9782 = 225
    gap = granian_counters.requests_gap(counted, 9_000, cell)
    assert gap.kind.key == "requests_gap" and gap.values == {"handled": 10_000, "counted": 9_000, "allowed": 128 + 90}


def test_the_runtime_mode_granian_resolves_by_its_version():
    asgi, wsgi = article().tables_by_id["asgi-json"].cells[0], article().tables_by_id["wsgi-json"].cells[0]
    assert resolved_runtime_mode(asgi, "2.5.5") == resolved_runtime_mode(wsgi, "2.5.5") == "st"  # 2.5's default
    assert (resolved_runtime_mode(asgi, "2.6.1"), resolved_runtime_mode(wsgi, "2.6.1")) == ("st", "mt")
    assert resolved_runtime_mode(asgi, "2.8.9") == resolved_runtime_mode(wsgi, "2.8.9") == "mt"
    rsgi = replace(asgi, interface="rsgi")
    assert resolved_runtime_mode(rsgi, "2.8.9") == "st"  # 2.7+: RSGI on one runtime thread, HTTP/1
    for http2 in (("--http", "2"), ("--http=2",)):
        assert resolved_runtime_mode(replace(rsgi, flags=http2), "2.8.9") == "mt"
        assert resolved_runtime_mode(replace(asgi, flags=http2), "2.6.1") == "mt"
    assert resolved_runtime_mode(replace(asgi, flags=("--http", "1", "--backlog", "2")), "2.6.1") == "st"
    assert resolved_runtime_mode(replace(rsgi, runtime_threads=2), "2.8.9") == "mt"
    assert resolved_runtime_mode(replace(wsgi, runtime_mode="st"), "2.8.9") == "st"  # as the cell sets it


def run(tmp_path, app: str, python: str, *extra: str, metrics: str = "metrics = true", locks=ROOT / "locks"):
    """A study of one app, its table run once by the harness under the `latest` profile; (result, record)."""
    variant = subprocess.run([python, "-c", VARIANT], capture_output=True, text=True, check=True).stdout.strip()
    study = tmp_path / "counted.toml"
    study.write_text((STUDY + APPS[app]).format(root=ROOT, variant=variant, metrics=metrics, locks=locks))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "gilfree",
            "run",
            "counted",
            "--study",
            str(study),
            "--python",
            python,
            "--loadgen",
            "wrk",
            "--port",
            str(free_port()),
            "--profile",
            "latest",
            *extra,
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    stored = list((tmp_path / "out" / "raw").glob("*/*.json"))
    return done, json.loads(stored[0].read_text()) if stored else None


@pytest.fixture(scope="module")
def latest(tmp_path_factory) -> dict:
    """Granian 2.8.9 and the apps from the `latest` locks, on this machine's GIL interpreter."""
    return {
        app: build_environment(tmp_path_factory.mktemp(f"latest-{app}"), base_python(), f"latest/{app}.txt")
        for app in ("wsgi", "asgi")
    }


def test_counters_per_worker_show_the_gil_wait_of_a_gil_build_and_match_the_load_generator(latest, tmp_path):
    done, record = run(tmp_path, "wsgi", latest["wsgi"])
    assert done.returncode == 0, done.stderr
    ran = record["runs"][-1]
    counters = ran["granian"]["counters"]
    assert sorted(counters["workers"]) == ["1", "2"]  # per worker: Granian's two worker processes
    for worker in counters["workers"].values():
        assert worker["requests_handled"] > 0 and worker["blocking_threads"] == 4
    assert counters["total"]["py_wait_us"] > 0  # four threads of one GIL process wait for it under load
    assert 0 < counters["total"]["gil_wait_share"] <= 1
    handled, counted = counters["total"]["requests_handled"], ran["load"]["requests"]
    assert abs(handled - counted) <= 32 + 0.01 * counted  # the connections in flight when wrk stopped
    assert not [warning for warning in ran["warnings"] if warning["kind"] == "requests_gap"]
    command = ran["commands"]["server"]
    at = command.index("--metrics")
    assert command[at : at + 6] == [
        "--metrics",
        "--metrics-scrape-interval",
        "1",
        "--metrics-address",
        "127.0.0.1",
        "--metrics-port",
    ]
    assert (ran["granian"]["version"], ran["granian"]["runtime_mode"]) == ("2.8.9", "mt")
    tables = (tmp_path / "out" / "TABLES.md").read_text()
    assert "default (mt)" in tables and f"| {record['granian']['gil_wait_share']:.0%} " in tables


def test_an_auto_loop_is_recorded_as_the_loop_granian_picked(latest, tmp_path_factory):
    """Granian's `--loop auto` takes uvloop where it is installed (and rloop is not), asyncio where not."""
    with_uvloop = build_environment(
        tmp_path_factory.mktemp("latest-uvloop"), base_python(), "latest/asgi.txt", "uvloop"
    )
    for python, loop in ((latest["asgi"], "asyncio"), (with_uvloop, "uvloop")):
        folder = tmp_path_factory.mktemp(loop)
        done, record = run(folder, "asgi", python, metrics="")
        assert done.returncode == 0, done.stderr
        assert record["runs"][-1]["granian"]["loop"] == loop
        assert f"| auto ({loop}) " in (folder / "out" / "TABLES.md").read_text()


def test_the_posts_granian_refuses_metrics_in_one_line_naming_its_version(environments, tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "gilfree",
            "run",
            "wsgi-3.14",
            "--python",
            environments["wsgi"],
            "--loadgen",
            "wrk",
            "--duration",
            "1s",
            "--port",
            str(free_port()),
            "--results-dir",
            str(tmp_path),
            "--metrics",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert done.returncode == 2
    [line] = [line for line in done.stderr.splitlines() if "error" in line]
    assert "--metrics needs Granian 2.7.0 or later" in line and "holds Granian 2.5.5" in line
    assert not list(tmp_path.glob("raw/*/*.json"))  # refused before any run


def test_a_free_threaded_build_never_waits_for_the_gil(real_pythons, tmp_path_factory):
    """Granian 2.8 ships no cp313t wheel; 2.7.4, the last that does, has the counters: its own lock here."""
    locks = tmp_path_factory.mktemp("locks")
    (locks / "latest").mkdir()
    (locks / "wsgi.in").write_text("granian==2.7.4\nflask==3.1.2\n")
    subprocess.run(
        [
            "uv",
            "pip",
            "compile",
            "-q",
            "--generate-hashes",
            "--python",
            real_pythons["3.13t"],
            str(locks / "wsgi.in"),
            "-o",
            str(locks / "latest" / "wsgi.txt"),
        ],
        check=True,
    )
    python = build_environment(
        tmp_path_factory.mktemp("wsgi-313t"), real_pythons["3.13t"], locks / "latest" / "wsgi.txt"
    )
    done, record = run(tmp_path_factory.mktemp("counted-313t"), "wsgi", python, locks=locks)
    assert done.returncode == 0, done.stderr
    assert record["interpreter"]["free_threaded_build"] and not record["interpreter"]["gil_enabled"]
    counters = record["runs"][-1]["granian"]["counters"]
    assert sorted(counters["workers"]) == ["1", "2"]  # two workers, threads of one process, counted apart
    assert counters["total"]["requests_handled"] > 0 and counters["total"]["blocking_busy_us"] > 0
    assert counters["total"]["py_wait_us"] == 0 and counters["total"]["gil_wait_share"] == 0
