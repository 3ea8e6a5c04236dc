"""Markdown tables from stored JSON: the post's columns and formats, failures and gaps shown as such."""

from gilfree import render, results
from gilfree.matrix import TABLES_BY_ID, Cell

from conftest import make_record


def table_lines(results_dir, table_id):
    return (results_dir / "tables" / f"{table_id}.md").read_text().splitlines()


def store(results_dir, record):
    results.write_atomic(results.cell_path(results_dir, Cell(**record["cell"])), record)


def test_rows_use_the_posts_formats_in_the_posts_order(tmp_path):
    for cell in TABLES_BY_ID["asgi-json"].cells:
        store(tmp_path, make_record(cell))
    render.write_all(tmp_path)
    rows = [line for line in table_lines(tmp_path, "asgi-json") if line.startswith("| 3.14")]
    assert [row.split("|")[1].strip() for row in rows] == ["3.14", "3.14t", "3.14", "3.14t"]
    assert [cell.strip() for cell in rows[0].split("|")[1:-1]] == [
        "3.14", "1", "30415", "4.20ms", "45.29ms", "0.42", "90MB"]


def test_unmeasured_cells_say_not_run(tmp_path):
    store(tmp_path, make_record(TABLES_BY_ID["asgi-io"].cells[0]))
    render.write_all(tmp_path)
    rows = [line for line in table_lines(tmp_path, "asgi-io") if line.startswith("| 3.14")]
    assert "not run" not in rows[0] and "not run" in rows[1]


def test_failed_cell_is_failed_with_its_reason_never_zero(tmp_path):
    cell = TABLES_BY_ID["wsgi-json"].cells[1]
    store(tmp_path, make_record(cell, status="failed", failure="Granian exited with status 1\nlog lines"))
    render.write_all(tmp_path)
    row = next(line for line in table_lines(tmp_path, "wsgi-json") if line.startswith("| 3.14t"))
    assert "failed" in row and "FAILED: Granian exited with status 1" in row
    assert "| 0 " not in row and "log lines" not in row


def test_errors_and_stand_ins_are_noted_beside_the_row(tmp_path):
    cell = TABLES_BY_ID["wsgi-threads-gil"].cells[4]
    store(tmp_path, make_record(cell, label="3.12", version="3.12.1", errors=5, non_2xx=2))
    render.write_all(tmp_path)
    lines = table_lines(tmp_path, "wsgi-threads-gil")
    header = next(line for line in lines if line.startswith("| Endpoint"))
    assert [h.strip() for h in header.split("|")[1:-1]] == [
        "Endpoint", "Threads", "RPS", "Latency avg", "Latency max", "Notes"]
    row = next(line for line in lines if line.startswith("| I/O") and "| 1 " in line)
    assert "5 errors" in row and "2 non-2xx" in row and "CPython 3.12.1 stands in for 3.14" in row


def test_all_tables_in_one_file_and_rerendering_needs_only_json(tmp_path):
    store(tmp_path, make_record(TABLES_BY_ID["wsgi-workers-threads-ft"].cells[3]))
    written = render.write_all(tmp_path)
    everything = (tmp_path / "TABLES.md").read_text()
    assert [line for line in everything.splitlines() if line.startswith("## Table")] == [
        f"## Table {t.number}: {t.title}" for t in TABLES_BY_ID.values()]
    assert len(written) == 7
    (tmp_path / "tables" / "wsgi-io.md").unlink()
    render.write_all(tmp_path)
    assert (tmp_path / "tables" / "wsgi-io.md").exists()
