"""The study's matrix is the post's: six tables, their rows in the post's order, each cell run by one session."""

from collections import Counter

import pytest

from gilfree.matrix import SESSIONS, STUDY, TABLES, TABLES_BY_ID, Cell


def rows(table_id):
    return [(c.variant, c.workers, c.blocking_threads, c.endpoint, c.concurrency) for c in TABLES_BY_ID[table_id].cells]


def test_six_tables_in_the_posts_order():
    assert [t.id for t in TABLES] == [
        "asgi-json", "asgi-io", "wsgi-threads-gil", "wsgi-workers-threads-ft", "wsgi-json", "wsgi-io"]
    assert [t.number for t in TABLES] == [1, 2, 3, 4, 5, 6]


def test_variant_tables_alternate_interpreters_within_worker_counts():
    assert rows("asgi-json") == [
        ("3.14", 1, None, "json", 128), ("3.14t", 1, None, "json", 128),
        ("3.14", 2, None, "json", 256), ("3.14t", 2, None, "json", 256)]
    assert rows("wsgi-io") == [
        ("3.14", 1, 64, "io", 128), ("3.14t", 1, 64, "io", 128),
        ("3.14", 2, 64, "io", 256), ("3.14t", 2, 64, "io", 256)]


def test_gil_threads_table():
    assert rows("wsgi-threads-gil") == [
        ("3.14", 1, threads, endpoint, 128) for endpoint in ("json", "io") for threads in (1, 8, 32, 128)]


def test_free_threaded_workers_table():
    assert [(w, t) for _, w, t, _, _ in rows("wsgi-workers-threads-ft")] == [(1, 2), (2, 1), (1, 4), (4, 1), (2, 2)]
    assert {(v, e, c) for v, _, _, e, c in rows("wsgi-workers-threads-ft")} == {("3.14t", "json", 128)}


def test_every_cell_is_run_by_exactly_one_study_session():
    runs = Counter((cell.table, cell.key) for name in STUDY for cell in SESSIONS[name].cells())
    assert set(runs) == {(t.id, c.key) for t in TABLES for c in t.cells}
    assert set(runs.values()) == {1}


def test_sessions_run_one_interface_on_their_variants():
    for session in SESSIONS.values():
        assert {c.interface for c in session.cells()} == {session.interface}
        assert {c.variant for c in session.cells()} == set(session.variants)


def test_two_variant_sessions_alternate_the_variants_run_by_run():
    for name, tables in (("asgi", ("asgi-json", "asgi-io")), ("wsgi", ("wsgi-json", "wsgi-io"))):
        cells = SESSIONS[name].cells()
        assert [c.table for c in cells] == [t for t in tables for _ in range(4)]
        assert [c.variant for c in cells] == ["3.14", "3.14t"] * 4


@pytest.mark.parametrize("field, value", [("workers", 0), ("blocking_threads", 0), ("concurrency", -1)])
def test_a_cell_below_one_is_refused_naming_the_field(field, value):
    values = {**TABLES_BY_ID["wsgi-json"].cells[0].as_dict(), field: value}
    with pytest.raises(ValueError, match=f"{field} must be a whole number of at least 1, not {value}"):
        Cell(**values)
