"""Markdown tables from stored JSON: the post's columns and formats, failures and gaps shown as such."""

from pathlib import Path

import pytest
from conftest import make_record

from gilfree.report import render
from gilfree.study import results
from gilfree.study.studies import Cell, article


def table_lines(results_dir, table_id):
    return (results_dir / "tables" / f"{table_id}.md").read_text().splitlines()


def store(results_dir, record):
    results.write_record(results.cell_path(results_dir, Cell(**record["cell"])), record)


def test_rows_use_the_posts_formats_in_the_posts_order(tmp_path):
    for cell in article().tables_by_id["asgi-json"].cells:
        store(tmp_path, make_record(cell))
    render.write_all(tmp_path, article())
    rows = [line for line in table_lines(tmp_path, "asgi-json") if line.startswith("| 3.14")]
    assert [row.split("|")[1].strip() for row in rows] == ["3.14", "3.14t", "3.14", "3.14t"]
    assert [cell.strip() for cell in rows[0].split("|")[1:-1]] == [
        "3.14",
        "1",
        "30415",
        "4.20ms",
        "45.29ms",
        "0.42",
        "90MiB",
    ]


def test_unmeasured_cells_say_not_run(tmp_path):
    store(tmp_path, make_record(article().tables_by_id["asgi-io"].cells[0]))
    render.write_all(tmp_path, article())
    rows = [line for line in table_lines(tmp_path, "asgi-io") if line.startswith("| 3.14")]
    assert "not run" not in rows[0] and "not run" in rows[1]


def test_failed_cell_is_failed_with_its_reason_never_zero(tmp_path):
    cell = article().tables_by_id["wsgi-json"].cells[1]
    store(tmp_path, make_record(cell, status="failed", failure="Granian exited with status 1\nlog lines"))
    render.write_all(tmp_path, article())
    row = next(line for line in table_lines(tmp_path, "wsgi-json") if line.startswith("| 3.14t"))
    assert "failed" in row and "FAILED: Granian exited with status 1" in row
    assert "| 0 " not in row and "log lines" not in row


def test_errors_and_stand_ins_are_noted_beside_the_row(tmp_path):
    cell = article().tables_by_id["wsgi-threads-gil"].cells[4]
    store(tmp_path, make_record(cell, label="3.12", version="3.12.1", errors=5, non_2xx=2))
    render.write_all(tmp_path, article())
    lines = table_lines(tmp_path, "wsgi-threads-gil")
    header = next(line for line in lines if line.startswith("| Endpoint"))
    assert [h.strip() for h in header.split("|")[1:-1]] == [
        "Endpoint",
        "Threads",
        "RPS",
        "Latency avg",
        "Latency max",
        "Notes",
    ]
    row = next(line for line in lines if line.startswith("| I/O") and "| 1 " in line)
    assert "5 errors" in row and "2 non-2xx" in row and "CPython 3.12.1 stands in for 3.14" in row


def test_all_tables_in_one_file_and_rerendering_needs_only_json(tmp_path):
    store(tmp_path, make_record(article().tables_by_id["wsgi-workers-threads-ft"].cells[3]))
    written = render.write_all(tmp_path, article())
    everything = (tmp_path / "TABLES.md").read_text()
    assert [line for line in everything.splitlines() if line.startswith("## Table")] == [
        f"## Table {t.number}: {t.title}" for t in article().tables_by_id.values()
    ]
    assert len(written) == 7
    (tmp_path / "tables" / "wsgi-io.md").unlink()
    render.write_all(tmp_path, article())
    assert (tmp_path / "tables" / "wsgi-io.md").exists()


def test_a_normal_314_against_314t_table_names_both_interpreters_without_a_mismatch(tmp_path):
    for cell in article().tables_by_id["asgi-json"].cells:
        store(tmp_path, make_record(cell))
    render.write_all(tmp_path, article())
    measured = next(line for line in table_lines(tmp_path, "asgi-json") if line.startswith("Measured with"))
    assert measured == (
        "Measured with: rewrk 30s on AMD Ryzen 7 5700X (16 logical cores), Granian 2.5.5. "
        "Interpreters: CPython 3.14.0; CPython 3.14.0 free-threaded."
    )


def test_rows_measured_under_different_conditions_are_marked(tmp_path):
    gil, threaded = article().tables_by_id["asgi-json"].cells[:2]
    short = make_record(gil, version="3.12.1", label="3.12")
    short["settings"] |= {"duration_s": 3, "port": 8123, "repeat": 3}  # port and repeat do not count
    short["load_generator"] = {"name": "rewrk", "version": "rewrk 0.3.2"}
    store(tmp_path, short)
    store(tmp_path, make_record(threaded))
    render.write_all(tmp_path, article())
    measured = next(line for line in table_lines(tmp_path, "asgi-json") if line.startswith("Measured with"))
    assert measured.endswith(
        "Interpreters: CPython 3.12.1; CPython 3.14.0 free-threaded. **Rows were measured "
        "under different settings: duration 3s vs 30s; load generator rewrk 0.3.2 vs none.**"
    )


def test_this_runs_commands_are_shown_with_the_executables_by_name(tmp_path):
    record = make_record(article().tables_by_id["wsgi-io"].cells[0])
    record["commands"] = {
        "server": ["/venvs/wsgi/bin/granian", "--interface", "wsgi", "impl_flask:app"],
        "load": ["/usr/local/bin/wrk", "-t", "1", "http://127.0.0.1:8000/io"],
    }
    store(tmp_path, record)
    render.write_all(tmp_path, article())
    lines = table_lines(tmp_path, "wsgi-io")
    assert lines[2].startswith("The post's commands: `granian --interface wsgi")
    assert lines[4] == (
        "This run's commands: `granian --interface wsgi impl_flask:app` / `wrk -t 1 http://127.0.0.1:8000/io`."
    )
    assert not any(line.startswith("This run's") for line in table_lines(tmp_path, "asgi-io"))  # nothing ran


def test_tables_are_written_whole_or_not_at_all(tmp_path, monkeypatch):
    store(tmp_path, make_record(article().tables_by_id["asgi-io"].cells[0]))
    render.write_all(tmp_path, article())
    table = tmp_path / "tables" / "asgi-io.md"
    before = table.read_text()
    assert before.endswith("with 3, the t quantile is 4.3).\n")
    assert list(tmp_path.rglob("*.tmp")) == []

    replace = render.os.replace

    def interrupted(source, target):  # stopped between writing the new table and putting it in place
        if Path(target) == table:
            raise OSError("interrupted")
        replace(source, target)

    monkeypatch.setattr(render.os, "replace", interrupted)
    store(tmp_path, make_record(article().tables_by_id["asgi-io"].cells[0], rps=1.0))
    with pytest.raises(OSError, match="interrupted"):
        render.write_all(tmp_path, article())
    assert table.read_text() == before
    assert list(tmp_path.rglob("*.tmp")) == []


def test_percentiles_follow_the_posts_columns_and_a_tool_without_them_says_n_a(tmp_path):
    gil, threaded = article().tables_by_id["asgi-json"].cells[:2]
    store(tmp_path, make_record(gil, percentiles={"50": 3.9, "90": 6.25, "99": 20.0, "99.9": None}))
    store(tmp_path, make_record(threaded))  # rewrk: no percentiles
    render.write_all(tmp_path, article())
    lines = table_lines(tmp_path, "asgi-json")
    header = next(line for line in lines if line.startswith("| Python"))
    assert [h.strip() for h in header.split("|")[1:-1]] == [
        "Python",
        "Workers",
        "RPS",
        "Latency avg",
        "Latency max",
        "CPU",
        "RAM",
        "p50",
        "p90",
        "p99",
        "p99.9",
    ]
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in lines if line.startswith("| 3.14")]
    assert rows[0][2:] == ["30415", "4.20ms", "45.29ms", "0.42", "90MiB", "3.90ms", "6.25ms", "20.00ms", "n/a"]
    assert rows[1][7:] == ["n/a"] * 4 and rows[2][7:] == ["not run"] * 4
    assert any("rewrk (the rows of its --pct table are means of its slowest" in line for line in lines)


def test_without_percentiles_the_table_keeps_the_posts_columns_only(tmp_path):
    store(tmp_path, make_record(article().tables_by_id["asgi-json"].cells[0]))
    render.write_all(tmp_path, article())
    text = (tmp_path / "tables" / "asgi-json.md").read_text()
    assert "p50" not in text and "--pct" not in text


def test_a_schema_2_record_has_no_percentiles_and_was_closed_loop(tmp_path):
    record = make_record(article().tables_by_id["asgi-json"].cells[0])
    record["schema"] = 2
    for load in (record["load"], record["runs"][0]["load"]):
        del load["latency_percentiles_ms"], load["offered_rps"]
    store(tmp_path, record)
    [migrated] = results.load(tmp_path).values()
    assert migrated.load.latency_percentiles_ms is None and migrated.runs[0].load.offered_rps is None
    assert migrated.settings.rate_rps is None
    render.write_all(tmp_path, article())
    assert "p50" not in (tmp_path / "tables" / "asgi-json.md").read_text()


def test_tables_md_explains_the_columns_once_and_each_table_file_in_full(tmp_path):
    store(tmp_path, make_record(article().tables_by_id["asgi-io"].cells[0]))
    render.write_all(tmp_path, article())
    assert (tmp_path / "TABLES.md").read_text().count("- RPS: requests per second") == 1
    for path in (tmp_path / "tables").glob("*.md"):
        assert path.read_text().count("- RPS: requests per second") == 1
