"""The post's study file is the post: six tables, their rows in the post's order, each cell run by one session."""

import dataclasses
from collections import Counter

from gilfree.study.studies import article

SESSIONS, STUDY = article().sessions, article().default_sessions


def rows(table_id):
    return [
        (c.variant, c.workers, c.blocking_threads, c.endpoint, c.concurrency)
        for c in article().tables_by_id[table_id].cells
    ]


def test_six_tables_in_the_posts_order():
    assert [t.id for t in article().tables] == [
        "asgi-json",
        "asgi-io",
        "wsgi-threads-gil",
        "wsgi-workers-threads-ft",
        "wsgi-json",
        "wsgi-io",
    ]
    assert [t.number for t in article().tables] == [1, 2, 3, 4, 5, 6]


def test_variant_tables_alternate_interpreters_within_worker_counts():
    assert rows("asgi-json") == [
        ("3.14", 1, None, "json", 128),
        ("3.14t", 1, None, "json", 128),
        ("3.14", 2, None, "json", 256),
        ("3.14t", 2, None, "json", 256),
    ]
    assert rows("wsgi-io") == [
        ("3.14", 1, 64, "io", 128),
        ("3.14t", 1, 64, "io", 128),
        ("3.14", 2, 64, "io", 256),
        ("3.14t", 2, 64, "io", 256),
    ]


def test_gil_threads_table():
    assert rows("wsgi-threads-gil") == [
        ("3.14", 1, threads, endpoint, 128) for endpoint in ("json", "io") for threads in (1, 8, 32, 128)
    ]


def test_free_threaded_workers_table():
    assert [(w, t) for _, w, t, _, _ in rows("wsgi-workers-threads-ft")] == [(1, 2), (2, 1), (1, 4), (4, 1), (2, 2)]
    assert {(v, e, c) for v, _, _, e, c in rows("wsgi-workers-threads-ft")} == {("3.14t", "json", 128)}


def test_every_cell_is_run_by_exactly_one_study_session():
    runs = Counter((cell.table, cell.key) for name in STUDY for cell in SESSIONS[name].cells())
    assert set(runs) == {(t.id, c.key) for t in article().tables for c in t.cells}
    assert set(runs.values()) == {1}


def test_sessions_run_one_app_on_their_variants():
    for session in SESSIONS.values():
        assert len(session.apps) == 1 and {c.interface for c in session.cells()} == set(session.apps)
        assert {c.variant for c in session.cells()} == set(session.variants)


def test_two_variant_sessions_alternate_the_variants_run_by_run():
    for name, tables in (("asgi", ("asgi-json", "asgi-io")), ("wsgi", ("wsgi-json", "wsgi-io"))):
        cells = SESSIONS[name].cells()
        assert [c.table for c in cells] == [t for t in tables for _ in range(4)]
        assert [c.variant for c in cells] == ["3.14", "3.14t"] * 4


def test_cells_keep_the_names_their_stored_results_have():
    assert [c.key for c in article().tables_by_id["asgi-json"].cells] == [
        "3.14-w1-tdefault-json-c128",
        "3.14t-w1-tdefault-json-c128",
        "3.14-w2-tdefault-json-c256",
        "3.14t-w2-tdefault-json-c256",
    ]
    assert article().tables_by_id["wsgi-io"].cells[3].key == "3.14t-w2-t64-io-c256"


def test_variants_pair_by_what_else_the_cells_share_never_by_position():
    pairs = article().tables_by_id["wsgi-json"].variant_pairs("3.14", "3.14t")
    assert [(gil.workers, threaded.workers) for gil, threaded in pairs] == [(1, 1), (2, 2)]
    assert all(dataclasses.replace(gil, variant=threaded.variant) == threaded for gil, threaded in pairs)
