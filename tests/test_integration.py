"""Real cells: real Granian serving the real apps on a GIL interpreter that is here, loaded by real wrk.

They run the harness's command line as the nox sessions do, for 1 s per cell, on a free loopback port.
"""

import json

import pytest

from gilfree.matrix import SESSIONS
from conftest import assert_port_free, leftovers, run_session


@pytest.mark.parametrize("session", ["asgi-3.14", "wsgi-3.14", "wsgi-threads-3.14"])
def test_session_measures_every_cell(session, environments, tmp_path):
    python = environments[SESSIONS[session].interface]
    completed, port = run_session(session, python, tmp_path)
    assert completed.returncode == 0, completed.stderr
    assert "stands in for 3.14" in completed.stderr
    for cell in SESSIONS[session].cells():
        record = json.loads((tmp_path / "raw" / cell.table / f"{cell.key}.json").read_text())
        assert record["status"] == "ok", record["failure"]
        assert record["load"]["rps"] > 0 and record["load"]["requests"] > 0
        assert record["load"]["errors"] == 0 and record["load"]["non_2xx"] == 0
        assert record["resources"]["cpu_cores"] > 0 and record["resources"]["peak_rss_bytes"] > 20 * 2**20
        assert record["resources"]["peak_processes"] == 1 + cell.workers  # main process and its workers
        assert record["interpreter"]["stand_in"] and not record["interpreter"]["free_threaded_build"]
        assert record["commands"]["server"][1:3] == ["--interface", cell.interface]
    for table in SESSIONS[session].tables:
        rows = [line for line in (tmp_path / "tables" / f"{table}.md").read_text().splitlines()
                if line.startswith("| ") and "stands in" in line]
        assert rows and all("not run" not in row and "failed" not in row for row in rows)
    assert leftovers(python) == []
    assert_port_free(port)


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
    assert again.stderr.count("kept the stored result") == 4
    forced, _ = run_session("asgi-3.14", python, tmp_path, "--force")
    assert "kept the stored result" not in forced.stderr
