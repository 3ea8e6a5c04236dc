"""Core scaling. First the analysis, the report and the charts on MADE-UP records (figures invented for the test,
built like conftest.make_record with the scaling cell's `cpus`); then the mechanics for real: Granian pinned to one
CPU and wrk to the other, every thread of both checked with psutil and /proc while the load runs."""

from __future__ import annotations

import os
import subprocess
import threading

import psutil
import pytest
from conftest import assert_port_free, free_port, leftovers, make_record, wait_for

from gilfree.report import charts, scaling, scaling_report
from gilfree.report.scaling import KneeKind, PointStatus
from gilfree.run.child import url
from gilfree.run.loadgen import LOADGENS, run_load
from gilfree.run.processes import TooFewCpus, available_cpus, points_for, server_cpus
from gilfree.run.server import GranianServer, granian_command
from gilfree.study.record import Record
from gilfree.study.studies import Cell, article

GIL, FREE = "3.14", "3.14t"


def analyse(records, *plan, **options):
    """The analysis of stored records, read as the reports read them."""
    return scaling.analyse([Record.read(record) for record in records], *plan, **options)


def made_up(
    app, endpoint, variant, k, rps=1000.0, *, pss=200_000_000, status="ok", failure=None, p99=None, loadgen_cores=0.5
) -> dict:
    """A MADE-UP record of one scaling point."""
    cell = Cell(
        table="core-scaling",
        variant=variant,
        interface=app,
        workers=k,
        blocking_threads=None,
        endpoint=endpoint,
        concurrency=128,
        app=app,
        cpus=k,
    )
    record = make_record(
        cell, rps=rps, status=status, failure=failure, percentiles=None if p99 is None else {"50": p99 / 3, "99": p99}
    )
    if status == "ok":
        record["resources"]["end_pss_bytes"] = pss
        record["load"]["loadgen_cpu_cores"] = loadgen_cores
    return record


# MADE-UP curves: 3.14 keeps scaling to k=4 (marginal shares 0.9, then 0.55); 3.14t stops after k=2 (0.125).
GIL_JSON = {1: 10_000.0, 2: 19_000.0, 4: 30_000.0}
FREE_JSON = {1: 8_000.0, 2: 15_000.0, 4: 17_000.0}


def json_records() -> list[dict]:
    records = [made_up("asgi", "json", FREE, k, rps, p99=12.5) for k, rps in FREE_JSON.items()]
    return records + [made_up("asgi", "json", GIL, k, rps) for k, rps in reversed(GIL_JSON.items())]


def by(analysis, variant, k, app="asgi", endpoint="json"):
    return next(
        p
        for p in analysis.points
        if (p.curve.app, p.curve.endpoint, p.curve.variant, p.k) == (app, endpoint, variant, k)
    )


def knee_of(analysis, variant, app="asgi", endpoint="json"):
    return next(
        k for k in analysis.knees if (k.curve.app, k.curve.endpoint, k.curve.variant) == (app, endpoint, variant)
    )


def test_efficiency_is_rps_over_k_times_rps_at_one_cpu():
    analysis = analyse(json_records())
    assert [by(analysis, GIL, k).efficiency for k in (1, 2, 4)] == pytest.approx([1.0, 0.95, 0.75])
    assert [by(analysis, FREE, k).efficiency for k in (1, 2, 4)] == pytest.approx([1.0, 15 / 16, 17 / 32])
    point = by(analysis, FREE, 2)
    assert (point.status, point.rps, point.p99_ms, point.cores_used) == (PointStatus.OK, 15_000.0, 12.5, 0.4216)
    assert by(analysis, GIL, 2).p99_ms is None  # rewrk's made-up load gave no percentiles: unknown, not 0


def test_knee_is_the_first_k_whose_next_step_brings_under_half_the_ideal_gain():
    analysis = analyse(json_records())
    free = knee_of(analysis, FREE)
    assert (free.kind, free.k, free.step_to, free.paced_by_loadgen) == (KneeKind.STOPS, 2, 4, False)
    assert free.marginal_efficiency == pytest.approx(2_000 / (2 * 8_000))
    gil = knee_of(analysis, GIL)
    assert (gil.kind, gil.k, gil.gap) == (KneeKind.SCALES, 4, None)  # 0.55 of the ideal from 2 to 4: still scaling


def test_an_amdahl_curve_with_a_5_percent_serial_share_stops_after_k8():
    """MADE-UP RPS following Amdahl's law (the example in scaling.KNEE_MARGINAL_EFFICIENCY's comment)."""
    records = [made_up("asgi", "json", GIL, k, 10_000 / (0.05 + 0.95 / k)) for k in (1, 2, 4, 8, 16)]
    knee = analyse(records).knees[0]
    assert (knee.kind, knee.k, knee.step_to) == (KneeKind.STOPS, 8, 16)
    assert knee.marginal_efficiency == pytest.approx(0.402, abs=0.001)


def test_knee_paced_by_a_saturated_load_generator_says_so():
    records = [made_up("asgi", "json", GIL, 1, 10_000), made_up("asgi", "json", GIL, 2, 12_000, loadgen_cores=0.97)]
    knee = analyse(records).knees[0]
    assert (knee.kind, knee.k, knee.paced_by_loadgen) == (KneeKind.STOPS, 1, True)
    assert "load generator was saturated" in scaling_report.knee_text(knee)


def test_ratio_pairs_variants_by_name_not_by_position():
    records = json_records() + [made_up("asgi", "json", "3.13t", k, 5_000.0 * k) for k in (1, 2)]
    analysis = analyse(records)
    values = {(r.over.curve.variant, r.under.curve.variant, r.k): r.value for r in analysis.ratios}
    assert values[(FREE, GIL, 1)] == pytest.approx(0.8)
    assert values[(FREE, GIL, 2)] == pytest.approx(15 / 19)
    assert values[(FREE, GIL, 4)] == pytest.approx(17 / 30)
    assert values[("3.13t", "3.13", 1)] is None  # its partner 3.13 was never run: no ratio against 3.14
    unpaired = next(r for r in analysis.ratios if r.over.curve.variant == "3.13t" and r.k == 1)
    assert unpaired.under.status is PointStatus.MISSING
    assert scaling_report.ratio_text(unpaired) == "3.13 not run"


def test_failed_cell_is_reported_failed_never_zero():
    records = [
        made_up("wsgi", "io", GIL, 1, 900.0),
        made_up("wsgi", "io", FREE, 1, 950.0),
        made_up("wsgi", "io", GIL, 2, status="failed", failure="Granian exited with status 1"),
        made_up("wsgi", "io", FREE, 2, 1_800.0),
    ]
    analysis = analyse(records)
    failed = by(analysis, GIL, 2, "wsgi", "io")
    assert (failed.status, failed.rps, failed.efficiency, failed.rps_per_gb_pss) == (
        PointStatus.FAILED,
        None,
        None,
        None,
    )
    knee = knee_of(analysis, GIL, "wsgi", "io")
    assert (knee.kind, knee.gap) == (KneeKind.NOT_ENOUGH_POINTS, failed)
    ratio = next(r for r in analysis.ratios if r.k == 2)
    assert ratio.value is None and scaling_report.ratio_text(ratio) == "3.14 failed"
    report = scaling_report.markdown(analysis)
    assert (
        "not enough points (k=1 and k=2 measured in a row are needed); k=2 failed (Granian exited with status 1)"
    ) in report
    failed_row = next(line for line in report.splitlines() if line.startswith("| wsgi  | io         | 3.14      | 2 "))
    assert "| failed" in failed_row and "Granian exited with status 1" in failed_row and " 0 " not in failed_row


def test_unknown_pss_gives_no_memory_figure_and_gb_is_a_billion_bytes():
    records = [
        made_up("asgi", "io", GIL, 1, 10_000.0, pss=100_000_000),
        made_up("asgi", "io", GIL, 2, 20_000.0, pss=None),
    ]
    analysis = analyse(records)
    assert by(analysis, GIL, 1, endpoint="io").rps_per_gb_pss == pytest.approx(100_000.0)
    unknown = by(analysis, GIL, 2, endpoint="io")
    assert (unknown.pss_bytes, unknown.rps_per_gb_pss, unknown.efficiency) == (None, None, pytest.approx(1.0))
    row = next(line for line in scaling_report.markdown(analysis).splitlines() if "| 20000 " in line)
    assert row.count("unknown") == 3  # p99 (rewrk gives none), PSS, RPS per GB of PSS


def test_planned_points_never_run_show_as_not_run():
    analysis = analyse(json_records(), ks=(1, 2, 4, 8), variants=(GIL, FREE))
    missing = by(analysis, GIL, 8)
    assert (missing.status, missing.rps) == (PointStatus.MISSING, None)
    gil = knee_of(analysis, GIL)
    assert (gil.kind, gil.k, gil.gap) == (KneeKind.SCALES, 4, missing)
    assert scaling_report.knee_text(gil) == "scales to k=4, the largest k measured; k=8 not run"
    assert next(r for r in analysis.ratios if r.k == 8).value is None


def test_without_a_k1_point_no_efficiency_and_no_knee():
    analysis = analyse([made_up("asgi", "json", GIL, k, 1_000.0 * k) for k in (2, 4)], ks=(1, 2, 4))
    assert [p.efficiency for p in analysis.points] == [None, None, None]
    assert analysis.knees[0].kind is KneeKind.NOT_ENOUGH_POINTS


def test_report_says_where_each_variant_stops_and_the_ratio_at_each_k():
    report = scaling_report.markdown(analyse(json_records()))
    assert (
        "| asgi  | json       | 3.14t     | stops scaling after k=2: the step to k=4 brought 12% of the ideal gain |"
    ) in report
    assert "scales to k=4, the largest k measured" in report
    assert "| asgi  | json       | 3.14t / 3.14 | 0.80x | 0.79x | 0.57x |" in report


def test_charts_are_written_into_the_folder(tmp_path):
    analysis = analyse(
        json_records()
        + [made_up("asgi", "io", GIL, 1, pss=None), made_up("asgi", "io", GIL, 2, status="failed", failure="made up")],
        ks=(1, 2, 4),
    )
    written = [charts.scaling_rps(tmp_path, analysis), charts.scaling_memory(tmp_path, analysis)]
    assert written == [tmp_path / charts.SCALING_RPS_CHART, tmp_path / charts.SCALING_MEMORY_CHART]
    for path in written:
        assert path.read_bytes().startswith(b"\x89PNG\r\n")


@pytest.mark.parametrize(
    "ks, cpus, loadgen, fitting",
    [
        (None, 16, 2, (1, 2, 4, 8, 14)),  # doubling, then the whole machine
        (None, 4, 1, (1, 2, 3)),
        ((1, 2, 4, 8), 5, 1, (1, 2, 4)),  # k=8 does not fit beside the load generator
    ],
)
def test_points_that_fit_beside_the_load_generator(ks, cpus, loadgen, fitting):
    assert points_for(ks, cpus, loadgen) == fitting


@pytest.mark.parametrize("ks, cpus, loadgen", [(None, 2, 1), ((1, 2, 4), 2, 1), ((1, 2), 3, 2), (None, 1, 1)])
def test_refusal_when_fewer_than_two_points_fit(ks, cpus, loadgen):
    with pytest.raises(TooFewCpus) as refusal:
        points_for(ks, cpus, loadgen)
    line = str(refusal.value)
    assert "\n" not in line and (refusal.value.available, refusal.value.loadgen_needed) == (cpus, loadgen)
    if (cpus, loadgen) == (2, 1):
        assert line == (
            "this machine has 2 CPUs; the load generator needs 1; core scaling needs at least 2 points "
            "(k=1 and k=2), so at least 3 CPUs"
        )


@pytest.mark.parametrize("ks, named", [((2, 4), "lack k=1"), ((0, 1, 2), "k=0")])
def test_bad_points_are_refused_naming_them(ks, named):
    with pytest.raises(ValueError, match=named):
        points_for(ks, 8, 1)


def two_cpus_or_more() -> tuple[int, ...]:
    """The CPUs this test may use; with fewer than 2, a failure in CI (where it must run) and a skip elsewhere."""
    cpus = available_cpus()
    if len(cpus) < 2:
        message = (
            f"core scaling needs 2 CPUs to pin the server and the load generator apart; this machine has {len(cpus)}"
        )
        pytest.fail(message) if os.environ.get("CI") == "true" else pytest.skip(message)
    return cpus


def test_server_gets_the_first_k_cpus_and_the_load_generator_all_others():
    cpus = two_cpus_or_more()
    assert cpus == tuple(sorted(os.sched_getaffinity(0)))
    assert server_cpus(1) == (cpus[:1], cpus[1:])
    for bad in (0, len(cpus)):
        fix = f"choose k from 1 to {len(cpus) - 1}" if len(cpus) > 2 else "choose k=1"
        with pytest.raises(ValueError, match=f"^k={bad} CPUs for the server cannot be given on {len(cpus)} .*{fix}$"):
            server_cpus(bad)


# The mechanics, for real.
LOAD_S = 2


def last_cpu(pid: int, tid: int) -> int:
    """Field 39 of /proc/<pid>/task/<tid>/stat: the CPU the thread last ran on. The name (field 2) may hold
    spaces and parentheses, so the fields are counted after its closing parenthesis (field 3 onwards)."""
    with open(f"/proc/{pid}/task/{tid}/stat") as stat:
        return int(stat.read().rpartition(")")[2].split()[39 - 3])


def thread_placements(processes: list[psutil.Process]) -> dict[tuple[int, int], tuple[frozenset, int]]:
    """(pid, tid) -> (the thread's affinity, the CPU it last ran on), for every thread of every process."""
    seen = {}
    for process in processes:
        try:
            for thread in process.threads():
                seen[(process.pid, thread.id)] = (
                    frozenset(os.sched_getaffinity(thread.id)),
                    last_cpu(process.pid, thread.id),
                )
        except (psutil.NoSuchProcess, FileNotFoundError, ProcessLookupError):
            pass  # a thread that ended between the listing and the reading
    return seen


def free_threaded(python: str) -> bool:
    return (
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_config_var('Py_GIL_DISABLED'))"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        == "1"
    )


def load_processes(port: int) -> list[psutil.Process]:
    """The wrk loading this test's port (other tests may run wrk elsewhere at the same time)."""
    return [
        p
        for p in psutil.process_iter(["name", "cmdline"])
        if p.info["name"] == "wrk" and any(f":{port}/" in part for part in p.info["cmdline"] or [])
    ]


@pytest.mark.parametrize("build", ["gil", "free-threaded"])
def test_every_granian_thread_runs_only_on_the_server_cpu_and_wrk_only_on_the_others(build, request, tmp_path):
    """On the GIL interpreter here, and on the real 3.13t, where every worker is a thread of one process."""
    cpus = two_cpus_or_more()
    server, loadgen = server_cpus(1)
    python = (
        request.getfixturevalue("environments")["asgi"]
        if build == "gil"
        else request.getfixturevalue("real_environments")["asgi", "3.13t"]
    )
    cell = article().tables_by_id["asgi-json"].cells[0]  # FastAPI /json, 1 worker, c=128 (the GIL row)
    assert cell.workers == 1
    port = free_port()
    app = article().apps[cell.app]
    command = granian_command(python.replace("/python", "/granian"), cell, app, port)
    wrk = LOADGENS["wrk"]
    outcome = {}
    with GranianServer(command, app, port, tmp_path / "server.log", cpus=server) as granian:
        granian.wait_ready()
        assert os.sched_getaffinity(0) == set(cpus)  # pinned() gave the harness its own affinity back
        load_command = wrk.command(url(port, app.endpoints[cell.endpoint].path), LOAD_S, cell.concurrency)
        load = threading.Thread(target=lambda: outcome.update(result=run_load(wrk, load_command, LOAD_S, cpus=loadgen)))
        load.start()
        server_seen, wrk_seen = {}, {}

        def placements_until_the_load_ends() -> bool:
            tree = psutil.Process(granian.pid)
            server_seen.update(thread_placements([tree, *tree.children(recursive=True)]))
            wrk_seen.update(thread_placements(load_processes(port)))
            return not load.is_alive()

        wait_for(placements_until_the_load_ends, LOAD_S + 60, "the load to end", interval=0.1)
        load.join()
    result, usage = outcome["result"]
    assert result.rps > 0 and result.errors == 0 and usage["loadgen_cpu_cores"] > 0  # the server was under load
    # Granian's main process and, on a GIL build, its worker process (and on 3.14, multiprocessing's forkserver);
    # on a free-threaded build the worker is a thread of the main process
    processes = len({pid for pid, _ in server_seen})
    assert free_threaded(python) == (build == "free-threaded")
    assert processes == 1 if build == "free-threaded" else processes >= 2
    assert len(server_seen) >= 4 and len(wrk_seen) >= 2  # wrk: its main thread and its one load thread
    assert {placement for placement in server_seen.values()} == {(frozenset(server), server[0])}
    assert {affinity for affinity, _ in wrk_seen.values()} == {frozenset(loadgen)}
    assert {ran_on for _, ran_on in wrk_seen.values()} <= set(loadgen)
    assert leftovers(python) == []
    assert_port_free(port)
