"""The comparison report on made-up results: verdicts within their tolerances, stand-ins named, diagnostics, charts."""

import pytest

from gilfree import compare, results
from gilfree.matrix import TABLES_BY_ID, Cell

from conftest import make_record

ASGI_JSON = "ASGI JSON: about 20% slower on 3.14t"
WSGI_IO = "WSGI I/O: on par, with more memory on 3.14t"
THREADS = "WSGI on 3.14 (table 3): more threads help I/O and hurt JSON"


def store(results_dir, cell, rps=20000.0, ram_mb=100, loadgen_cores=0.5, **options):
    record = make_record(cell, rps=rps, **options)
    if record["status"] == "ok":
        record["resources"]["peak_rss_bytes"] = ram_mb * 2**20
        record["load"]["loadgen_cpu_cores"] = loadgen_cores
    results.write_atomic(results.cell_path(results_dir, cell), record)


def store_variants(results_dir, table_id, gil_rps=30000.0, ratio=1.0, gil_ram=100, ram_ratio=1.0, **gil_options):
    """Both worker counts of a variant table, 3.14t at the given ratios to 3.14."""
    for cell in TABLES_BY_ID[table_id].cells:
        if cell.variant == "3.14":
            store(results_dir, cell, gil_rps, gil_ram, **gil_options)
        else:
            store(results_dir, cell, gil_rps * ratio, gil_ram * ram_ratio)


def verdict(results_dir, claim):
    return compare.verdicts(compare.measured_side(results.load(results_dir)))[claim]


def report_line(results_dir, *parts):
    compare.write_report(results_dir)
    text = (results_dir / "COMPARISON.md").read_text()
    return next(line for line in text.splitlines() if all(part in line for part in parts))


def report_row(results_dir, *parts):
    return [cell.strip() for cell in report_line(results_dir, *parts).split("|")[1:-1]]


@pytest.mark.parametrize("ratio, expected", [(0.8, "held"), (0.72, "held"), (1.5, "not held"), (1.0, "not held"),
                                             (0.6, "not held")])
def test_asgi_json_slowdown_is_judged_on_the_rps_ratio(tmp_path, ratio, expected):
    store_variants(tmp_path, "asgi-json", ratio=ratio)
    assert verdict(tmp_path, ASGI_JSON) == expected
    assert report_row(tmp_path, f"| {ASGI_JSON}")[-1] == expected


def test_missing_or_failed_free_threaded_cells_are_not_measured(tmp_path):
    gil, threaded_w1, _, threaded_w2 = TABLES_BY_ID["asgi-json"].cells
    store(tmp_path, gil)
    assert verdict(tmp_path, ASGI_JSON) == "not measured"
    store(tmp_path, threaded_w1, rps=16000)
    store(tmp_path, threaded_w2, status="failed", failure="Granian exited with status 1")
    assert verdict(tmp_path, ASGI_JSON) == "not measured"
    assert report_row(tmp_path, f"| {ASGI_JSON}")[3] == (
        "missing or failed: 3.14-w2-tdefault-json-c256, 3.14t-w2-tdefault-json-c256")


def test_a_stand_in_is_named_in_the_verdict_the_row_and_the_ratio(tmp_path):
    store_variants(tmp_path, "asgi-json", ratio=0.8, label="3.12", version="3.12.1")
    assert verdict(tmp_path, ASGI_JSON) == "held (stand-in: 3.12)"
    assert report_row(tmp_path, "| 3.12", "yours")[:4] == ["3.12", "1", "yours", "30000"]
    assert "0.80 (3.14t / 3.12)" in report_line(tmp_path, "| 1 ", "0.80 (3.14t / 3.12)")


def test_the_posts_own_figures_hold_every_claim():
    assert set(compare.verdicts(compare.post_side()).values()) == {"held"}


@pytest.mark.parametrize("ratio, ram_ratio, expected", [(1.02, 1.6, "held"), (1.02, 0.9, "not held"),
                                                        (0.5, 1.6, "not held")])
def test_wsgi_io_needs_both_par_throughput_and_more_memory(tmp_path, ratio, ram_ratio, expected):
    store_variants(tmp_path, "wsgi-io", ratio=ratio, ram_ratio=ram_ratio)
    assert verdict(tmp_path, WSGI_IO) == expected


@pytest.mark.parametrize("io_128, json_128, expected", [(11000, 15000, "held"), (11000, 19000, "not held"),
                                                        (100, 15000, "not held")])
def test_threads_claim_compares_128_threads_with_1(tmp_path, io_128, json_128, expected):
    figures = {("io", 1): 94, ("io", 128): io_128, ("json", 1): 19400, ("json", 128): json_128}
    for cell in TABLES_BY_ID["wsgi-threads-gil"].cells:
        store(tmp_path, cell, rps=figures.get((cell.endpoint, cell.blocking_threads), 1000))
    assert verdict(tmp_path, THREADS) == expected


def test_diagnostics_little_law_io_efficiency_load_generator_and_errors(tmp_path):
    cell = TABLES_BY_ID["asgi-io"].cells[0]  # c=128, so the ideal is 128 / 10 ms = 12800 RPS
    # make_record's mean latency is 4.204 ms: 64 connections in flight at this RPS, so 64 stalled
    store(tmp_path, cell, rps=64 / 0.004204, loadgen_cores=0.95, errors=7, non_2xx=3)
    assert report_row(tmp_path, "| 2 ", "/io")[3:] == ["128", "64.0 (127.8)", "119% (89%)", "0.95", "7", "3",
                       "stalled connections: 64; load generator saturated: likely the bottleneck"]


def test_more_in_flight_than_connections_is_flagged_and_a_sound_row_is_not(tmp_path):
    over, sound = TABLES_BY_ID["wsgi-threads-gil"].cells[:2]
    store(tmp_path, over, rps=200 / 0.004204)
    store(tmp_path, sound, rps=128 / 0.004204)
    assert report_row(tmp_path, "| 3 ", "threads 1 ")[-1] == (
        "more in flight than connections, by 72: RPS and latency disagree")
    assert report_row(tmp_path, "| 3 ", "threads 8 ")[-1] == ""


@pytest.mark.parametrize("cell, ideal", [
    (Cell("asgi-io", "3.14", "asgi", 2, None, "io", 256), 25600),
    (Cell("wsgi-io", "3.14", "wsgi", 2, 64, "io", 256), 12800),
    (Cell("wsgi-threads-gil", "3.14", "wsgi", 1, 1, "io", 128), 100),
])
def test_ideal_io_throughput_counts_the_slots_that_can_wait(cell, ideal):
    assert compare.ideal_io_rps(cell) == pytest.approx(ideal)


def test_report_links_one_png_chart_per_table(tmp_path):
    store_variants(tmp_path, "wsgi-json", ratio=3.0)
    written = compare.write_report(tmp_path)
    assert written[0] == tmp_path / "COMPARISON.md"
    text = written[0].read_text()
    assert [path.name for path in written[1:]] == [f"{table_id}.png" for table_id in TABLES_BY_ID]
    for path in written[1:]:
        assert path.parent == tmp_path / "charts"
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"](charts/{path.name})" in text
