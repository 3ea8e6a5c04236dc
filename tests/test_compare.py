"""The comparison report on made-up results: verdicts within their bands, stand-ins named, diagnostics, charts.
The verdict logic itself: test_verdicts.py."""

import pytest
from conftest import make_record

from gilfree.report import compare, verdicts
from gilfree.study import results
from gilfree.study.studies import Cell, article

ASGI_JSON = "ASGI JSON: about 20% slower on 3.14t"
WSGI_IO = "WSGI I/O: on par, with more memory on 3.14t"
THREADS = "WSGI on 3.14 (table 3): more threads help I/O and hurt JSON"


def store(results_dir, cell, rps=20000.0, ram_mb=100, loadgen_cores=0.5, edit=None, latency_ms=None, **options):
    """Store a made-up record; `edit` changes it in place first (how it was measured, say). Its mean latency
    keeps every connection busy (Little's law) unless latency_ms says otherwise."""
    record = make_record(cell, rps=rps, **options)
    if record["status"] == "ok":
        record["resources"]["peak_rss_bytes"] = ram_mb * 2**20
        record["runs"][0]["resources"]["peak_rss_bytes"] = ram_mb * 2**20
        record["load"]["loadgen_cpu_cores"] = loadgen_cores
        record["load"]["latency_avg_ms"] = latency_ms or cell.concurrency / rps * 1000
    if edit:
        edit(record)
    results.write_record(results.cell_path(results_dir, cell), record)


def store_variants(results_dir, table_id, gil_rps=30000.0, ratio=1.0, gil_ram=100, ram_ratio=1.0, **gil_options):
    """Both worker counts of a variant table, 3.14t at the given ratios to 3.14."""
    for cell in article().tables_by_id[table_id].cells:
        if cell.variant == "3.14":
            store(results_dir, cell, gil_rps, gil_ram, **gil_options)
        else:
            store(results_dir, cell, gil_rps * ratio, gil_ram * ram_ratio)


def verdict(results_dir, claim):
    judged = {j.claim.text: j for j in verdicts.judge_all(article(), results.load(results_dir))}[claim]
    return compare.verdict_text(judged)


def report_line(results_dir, *parts):
    compare.write_report(results_dir, article())
    text = (results_dir / "COMPARISON.md").read_text()
    return next(line for line in text.splitlines() if all(part in line for part in parts))


def report_row(results_dir, *parts):
    return [cell.strip() for cell in report_line(results_dir, *parts).split("|")[1:-1]]


@pytest.mark.parametrize(
    "ratio, expected", [(0.8, "held"), (0.72, "held"), (1.5, "not held"), (1.0, "not held"), (0.6, "not held")]
)
def test_asgi_json_slowdown_is_judged_on_the_rps_ratio(tmp_path, ratio, expected):
    store_variants(tmp_path, "asgi-json", ratio=ratio)
    assert verdict(tmp_path, ASGI_JSON) == f"{expected}, single run"
    row = report_row(tmp_path, f"| {ASGI_JSON}")
    assert row[1:7] == ["RPS JSON w1", "0.70-0.90", "0.80", f"{ratio:.2f}", "1", expected]
    assert row[-1] == f"**{expected}, single run** [1]"
    assert (
        "1. **ASGI JSON: about 20% slower on 3.14t**: single run per cell, so no interval"
        in (tmp_path / "COMPARISON.md").read_text()
    )


def test_missing_or_failed_free_threaded_cells_are_not_measured(tmp_path):
    gil, threaded_w1, _, threaded_w2 = article().tables_by_id["asgi-json"].cells
    store(tmp_path, gil)
    assert verdict(tmp_path, ASGI_JSON) == "not measured"
    store(tmp_path, threaded_w1, rps=16000)
    store(tmp_path, threaded_w2, status="failed", failure="Granian exited with status 1")
    assert verdict(tmp_path, ASGI_JSON) == "not measured"
    assert report_row(tmp_path, f"| {ASGI_JSON}")[4:] == ["-", "-", "-", "**not measured** [1]"]
    assert report_line(tmp_path, "1. **ASGI JSON").endswith(
        "not measured (not run, or failed): 3.14 /json 2 workers, 3.14t /json 2 workers; `nox -s asgi` measures them."
    )


def test_a_stand_in_is_named_in_the_verdict_the_row_and_the_ratio(tmp_path):
    store_variants(tmp_path, "asgi-json", ratio=0.8, label="3.12", version="3.12.1")
    assert verdict(tmp_path, ASGI_JSON) == "held, single run, stand-in 3.12"
    assert report_row(tmp_path, "| 3.12", "yours")[:4] == ["3.12", "1", "yours", "30000"]
    assert "0.80 (3.14t / 3.12)" in report_line(tmp_path, "| 1 ", "0.80 (3.14t / 3.12)")


@pytest.mark.parametrize(
    "ratio, ram_ratio, expected", [(1.02, 1.6, "held"), (1.02, 0.9, "not held"), (0.5, 1.6, "not held")]
)
def test_wsgi_io_needs_both_par_throughput_and_more_memory(tmp_path, ratio, ram_ratio, expected):
    store_variants(tmp_path, "wsgi-io", ratio=ratio, ram_ratio=ram_ratio)
    assert verdict(tmp_path, WSGI_IO) == f"{expected}, single run"


@pytest.mark.parametrize(
    "io_128, json_128, expected", [(11000, 15000, "held"), (11000, 19000, "not held"), (100, 15000, "not held")]
)
def test_threads_claim_compares_128_threads_with_1(tmp_path, io_128, json_128, expected):
    figures = {("io", 1): 94, ("io", 128): io_128, ("json", 1): 19400, ("json", 128): json_128}
    for cell in article().tables_by_id["wsgi-threads-gil"].cells:
        store(tmp_path, cell, rps=figures.get((cell.endpoint, cell.blocking_threads), 1000))
    assert verdict(tmp_path, THREADS) == f"{expected}, single run"


def test_diagnostics_little_law_io_efficiency_load_generator_and_errors(tmp_path):
    cell = article().tables_by_id["asgi-io"].cells[0]  # c=128, so the ideal is 128 / 10 ms = 12800 RPS
    # make_record's mean latency is 4.204 ms: 64 connections in flight at this RPS, so 64 stalled
    store(tmp_path, cell, rps=64 / 0.004204, loadgen_cores=0.95, errors=7, non_2xx=3, latency_ms=4.204)
    assert report_row(tmp_path, "| 2 ", "/io")[3:] == [
        "128",
        "64.0 (127.8)",
        "119% (89%)",
        "0.95",
        "15.1",
        "7",
        "3",
        "stalled connections (64; from 6.4); load generator saturated: likely the bottleneck (0.95; "
        "from 0.9); load errors (7; from 1); non-2xx answers (3; from 1)",
    ]


def test_more_in_flight_than_connections_is_flagged_and_a_sound_row_is_not(tmp_path):
    over, sound = article().tables_by_id["wsgi-threads-gil"].cells[:2]
    store(tmp_path, over, rps=200 / 0.004204, latency_ms=4.204)
    store(tmp_path, sound, rps=128 / 0.004204, latency_ms=4.204)
    assert report_row(tmp_path, "| 3 ", "threads 1 ")[-1] == (
        "more in flight than connections: RPS and latency disagree (72; from 1.28)"
    )
    assert report_row(tmp_path, "| 3 ", "threads 8 ")[-1] == ""


@pytest.mark.parametrize(
    "cell, ideal",
    [
        (Cell("asgi-io", "3.14", "asgi", 2, None, "io", 256), 25600),
        (Cell("wsgi-io", "3.14", "wsgi", 2, 64, "io", 256), 12800),
        (Cell("wsgi-threads-gil", "3.14", "wsgi", 1, 1, "io", 128), 100),
    ],
)
def test_ideal_io_throughput_counts_the_slots_that_can_wait(cell, ideal):
    assert verdicts.ideal_io_rps(cell, 0.01) == pytest.approx(ideal)


def test_report_links_one_png_chart_per_table(tmp_path):
    store_variants(tmp_path, "wsgi-json", ratio=3.0)
    written = compare.write_report(tmp_path, article())
    assert written[0] == tmp_path / "COMPARISON.md"
    text = written[0].read_text()
    assert [path.name for path in written[1:]] == ["ratios.png", "compared-rps.png"] + [
        f"{table_id}.png" for table_id in article().tables_by_id
    ]
    for path in written[1:]:
        assert path.parent == tmp_path / "charts"
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"](charts/{path.name})" in text


def measured_alike(record):
    """What the harness stores about how a record was measured, beyond make_record's."""
    record["settings"] |= {"warmup_s": 0, "server_cpus": None, "loadgen_cpus": None}
    record["environment"] = {"profile": "article", "lock": "locks/article/asgi.txt", "lock_sha256": "ab" * 32}
    record["machine"] |= {"hostname": "bench", "physical_cores": 8, "memory_bytes": 32 * 2**30}
    record["load_generator"] = {"name": "rewrk", "version": "rewrk 0.3.1"}


def measured(**changes):
    """An edit: measured alike, then with some conditions changed (a dotted key reaches into a sub-dict)."""

    def edit(record):
        measured_alike(record)
        for key, value in changes.items():
            *parents, name = key.split("__")
            target = record
            for parent in parents:
                target = target[parent]
            target[name] = value

    return edit


def test_rows_measured_alike_but_for_port_repeat_and_host_name_are_judged(tmp_path):
    """A new container on the same machine has another host name: it measures the same thing."""
    for cell in article().tables_by_id["asgi-json"].cells:
        edit = (
            measured(settings__port=8123, settings__repeat=3, machine__hostname="container-2")
            if cell.variant == "3.14"
            else measured()
        )
        store(tmp_path, cell, 30000.0 if cell.variant == "3.14" else 24000.0, edit=edit)
    assert verdict(tmp_path, ASGI_JSON) == "held, single run"


@pytest.mark.parametrize(
    "gil_edit, reason",
    [
        (measured(settings__loadgen="wrk"), "loadgen wrk vs rewrk"),
        (measured(settings__duration_s=3), "duration 3s vs 30s"),
        (measured(settings__warmup_s=5), "warmup 5s vs 0s"),
        (measured(environment__profile="latest"), "profile latest vs article"),
        (measured(environment__lock_sha256="cd" * 32), "lock cdcdcdcdcdcd vs abababababab"),
        (
            measured(machine__cpu_model="Intel Xeon"),
            "machine Intel Xeon, 16 logical / 8 physical cores, 32 GiB vs "
            "AMD Ryzen 7 5700X, 16 logical / 8 physical cores, 32 GiB",
        ),
        (
            measured(load_generator={"name": "rewrk", "version": "rewrk 0.3.2"}),
            "load generator rewrk 0.3.2 vs rewrk 0.3.1",
        ),
        (measured(load_generator={"name": "rewrk", "version": "0.3.2"}), "load generator rewrk 0.3.2 vs rewrk 0.3.1"),
        (measured(load_generator=None), "load generator none vs rewrk 0.3.1"),
    ],
)
def test_rows_measured_differently_are_not_comparable(tmp_path, gil_edit, reason):
    store_variants(tmp_path, "asgi-json", ratio=0.8, edit=gil_edit)
    for cell in article().tables_by_id["asgi-json"].cells[1::2]:  # the 3.14t cells, measured as the harness does
        store(tmp_path, cell, 24000.0, edit=measured())
    assert verdict(tmp_path, ASGI_JSON) == "not comparable"
    assert report_row(tmp_path, f"| {ASGI_JSON}")[-1] == "**not comparable** [1]"
    assert report_line(tmp_path, "1. **ASGI JSON").endswith(
        f"the rows were measured under different conditions: {reason}."
    )
    assert report_row(tmp_path, "| 1 ", "n/c")[2] == f"n/c ({reason})"  # the ratio section's RPS yours


@pytest.mark.parametrize(
    "fault, reason", [({"errors": 3}, "load errors (3; from 1)"), ({"non_2xx": 2}, "non-2xx answers (2; from 1)")]
)
def test_rows_with_load_faults_make_the_verdict_inconclusive(tmp_path, fault, reason):
    threaded = article().tables_by_id["asgi-json"].cells[1]
    for cell in article().tables_by_id["asgi-json"].cells:
        store(
            tmp_path,
            cell,
            rps=128 / 0.004204 * (0.8 if cell.variant == "3.14t" else 1),
            **(fault if cell == threaded else {}),
        )
    assert verdict(tmp_path, ASGI_JSON) == "inconclusive, single run"
    assert f"RPS JSON w1: 3.14t /json 1 worker had {reason}." in report_line(tmp_path, "1. **ASGI JSON")


def test_the_saturation_flag_is_for_one_thread_load_generators_only(tmp_path):
    oha, wrk = article().tables_by_id["asgi-json"].cells[:2]
    store(tmp_path, oha, rps=128 / 0.004204, loadgen_cores=3.1, edit=measured(load__generator="oha"))
    store(tmp_path, wrk, rps=128 / 0.004204, loadgen_cores=0.95, edit=measured(load__generator="wrk"))
    assert report_row(tmp_path, "| 1 ", "| 3.14 ", "/json, workers")[-1] == ""  # the diagnostics' rows
    assert report_row(tmp_path, "| 1 ", "| 3.14t ", "/json, workers")[-1] == (
        "load generator saturated: likely the bottleneck (0.95; from 0.9)"
    )


def test_pss_is_shown_beside_rss_where_recorded_and_the_caveat_is_stated(tmp_path):
    cell = article().tables_by_id["asgi-json"].cells[2]
    store(tmp_path, cell, ram_mb=120, edit=measured(resources__end_pss_bytes=70 * 2**20))
    header = report_row(tmp_path, "| Table ", "| Flags")
    assert header[-3:] == ["Peak RSS", "PSS at end", "Flags"]
    assert report_row(tmp_path, "| 1 ", "/json")[-3:-1] == ["120 MiB", "70 MiB"]
    text = (tmp_path / "COMPARISON.md").read_text()
    assert "counts them once per process" in text


def test_the_report_is_written_whole_with_no_temporary_file_left(tmp_path):
    store_variants(tmp_path, "asgi-io")
    compare.write_report(tmp_path, article())
    assert (tmp_path / "COMPARISON.md").read_text().rstrip().endswith("|")  # ends with the diagnostics table
    assert [path.name for path in tmp_path.rglob("*.tmp")] == []


def test_variants_built_with_different_optimisations_are_flagged_loudly(tmp_path):
    def built(pgo):
        return measured(interpreter__optimisations={"pgo": pgo, "lto": False, "jit": False})

    for cell in article().tables_by_id["asgi-json"].cells:
        store(tmp_path, cell, 30000.0 if cell.variant == "3.14" else 24000.0, edit=built(cell.variant == "3.14"))
    compare.write_report(tmp_path, article())
    text = (tmp_path / "COMPARISON.md").read_text()
    assert "**WARNING: 3.14 and 3.14t were built with different optimisations" in text.split("## Verdicts")[0]
    assert "(3.14), PGO yes, LTO no, JIT no" in report_line(tmp_path, "| Python 3.14 ")
    assert report_row(tmp_path, f"| {ASGI_JSON}")[-1] == "**not comparable** [1]"


def test_a_row_the_post_gives_no_figures_for_is_shown_as_not_published(tmp_path, monkeypatch):
    """Published figures are optional in a study file: a row without them is compared with nothing, not a crash."""
    eight = article().tables_by_id["wsgi-threads-gil"].cells[1]  # JSON, 8 threads: in no claim
    without = {
        key: figures for key, figures in compare.source_figures(article()).items() if key != (eight.table, eight.key)
    }
    monkeypatch.setattr(compare, "source_figures", lambda study: without)
    for cell in article().tables_by_id["wsgi-threads-gil"].cells:
        store(tmp_path, cell)
    row = report_row(tmp_path, "| JSON ", "| 8 ", "| post ")
    assert row[3:6] == ["not published"] * 3
    assert report_row(tmp_path, "| JSON ", "| 32 ", "| post ")[3] == "18639"
