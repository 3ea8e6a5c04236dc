"""Claims as data and the comparison any study gets: an engineer's own study with its own claims, judged on
made-up records (the verdict logic; the real run is test_integration's), the outcomes with no claims written,
several machines side by side, and the refusals. Real records: test_verdicts_recorded."""

import copy
import re
import shutil
import subprocess
import sys

import pytest
from conftest import ORDER_SEED, POST_APPS_TOML, REAL_313_HEAD, ROOT, free_port, make_record

from gilfree.report import compare, outcomes, verdicts
from gilfree.report.outcomes import Outcome, Straddles, TooFewRuns
from gilfree.report.verdicts import FlagKind, Missing, NoSuchCells
from gilfree.study import results
from gilfree.study.claims import Verdict
from gilfree.study.schema import StudyError
from gilfree.study.studies import load

RECORDED = ROOT / "tests" / "recorded" / "real-3.14.7-2core"

MY_SERVICE = f"""title = "My service on 3.14 and 3.14t"
variants = ["3.14", "3.14t"]

[apps.svc]
interface = "asgi"
target = "impl_fastapi:app"
directory = "{ROOT}/apps"
requirements = "{ROOT}/requirements/asgi.in"
endpoints.orders = {{ path = "/json", json = {{ message = "Hello, World!" }} }}

[tables.orders]
number = 1
title = "/orders"
columns = ["python", "workers", "rps"]
cell = {{ app = "svc", endpoint = "orders", concurrency = 64 }}
grid = {{ workers = [1, 2], variant = ["3.14", "3.14t"] }}

[comparison]
p99_budget_ms = 20

[[claims]]
text = "far faster with 1 worker"
ratios = [{{ figure = "rps", cells = {{ workers = 1 }}, over = {{ variant = "3.14t" }}, under = {{ variant = "3.14" }}, band = "at least 1.5" }}]

[[claims]]
text = "on par with 2 workers"
ratios = [{{ figure = "rps", cells = {{ workers = 2 }}, over = {{ variant = "3.14t" }}, under = {{ variant = "3.14" }}, band = "on par" }}]

[[claims]]
text = "p99 on par with 1 worker"
ratios = [{{ figure = "latency_p99", cells = {{ workers = 1 }}, over = {{ variant = "3.14t" }}, under = {{ variant = "3.14" }}, band = "on par" }}]

[[claims]]
text = "2 workers serve twice what 1 does"
ratios = [{{ figure = "rps", over = {{ workers = 2 }}, under = {{ workers = 1 }}, band = "1.8 to 2.2" }}]

[[claims]]
text = "4 workers on par"
ratios = [{{ figure = "rps", cells = {{ workers = 4 }}, over = {{ variant = "3.14t" }}, under = {{ variant = "3.14" }}, band = "on par" }}]
"""

# Per cell (workers, variant): RPS of each of three runs, and p50 and p99 (ms) of each run.
RUNS = {
    (1, "3.14"): ([1000, 1010, 990], [5.0, 5.1, 4.9], [10.0, 10.1, 9.9]),
    (1, "3.14t"): ([2000, 2030, 1980], [5.0, 5.05, 4.95], [9.0, 14.0, 10.0]),  # p99 all over the place
    (2, "3.14"): ([1900, 1920, 1890], [5.0, 5.1, 4.9], [12.0, 12.1, 11.9]),
    (2, "3.14t"): ([2900, 2910, 2880], [5.0, 5.05, 4.9], [30.0, 30.6, 29.9]),  # over the 20 ms budget
}


@pytest.fixture
def my_study(tmp_path):
    path = tmp_path / "my-service.toml"
    path.write_text(MY_SERVICE)
    return load(path)


def record(cell, rps_runs, p50_runs, p99_runs, cpu_model="AMD EPYC 9654"):
    """Three runs made in rounds 0-2, each variant's run i beside the other's (paired)."""
    made = make_record(cell, rps=rps_runs[0])
    made["machine"] |= {"cpu_model": cpu_model, "physical_cores": 8, "memory_bytes": 32 * 2**30}
    runs = []
    for number, (rps, p50, p99) in enumerate(zip(rps_runs, p50_runs, p99_runs)):
        run = copy.deepcopy(made["runs"][0])
        run["load"] |= {
            "rps": rps,
            "latency_percentiles_ms": {"50": p50, "90": p99 * 0.8, "99": p99, "99.9": None},
            "latency_avg_ms": cell.concurrency / rps * 1000,
        }
        minute = 2 * number + (cell.variant == "3.14t")
        run["started_at"], run["finished_at"] = (
            f"2026-01-01T10:{minute:02d}:00+00:00",
            f"2026-01-01T10:{minute:02d}:40+00:00",
        )
        runs.append(run)
    made["runs"] = runs
    made["load"] = copy.deepcopy(runs[1]["load"])
    return made


def store_my_runs(study, folder, scale=1.0, cpu_model="AMD EPYC 9654"):
    for cell in study.tables[0].cells:
        rps, p50, p99 = RUNS[(cell.workers, cell.variant)]
        results.write_record(
            results.cell_path(folder, cell), record(cell, [r * scale for r in rps], p50, p99, cpu_model)
        )
    return results.load(folder)


def test_an_engineers_claims_are_held_not_held_inconclusive_or_not_measured(my_study, tmp_path):
    stored = store_my_runs(my_study, tmp_path / "out")
    judged = {j.claim.text: j for j in verdicts.judge_all(my_study, stored)}
    assert {text: j.verdict for text, j in judged.items()} == {
        "far faster with 1 worker": Verdict.HELD,  # 2.0, interval well above 1.5
        "on par with 2 workers": Verdict.NOT_HELD,  # 1.53: outside 0.90-1.10
        "p99 on par with 1 worker": Verdict.INCONCLUSIVE,  # 1.1 with an interval far wider than the band
        "2 workers serve twice what 1 does": Verdict.NOT_HELD,  # 3.14: 1.90 holds, 3.14t: 1.45 lies outside
        "4 workers on par": Verdict.NOT_MEASURED,
    }
    assert [e.value for e in judged["2 workers serve twice what 1 does"].estimates] == [
        pytest.approx(1.9, abs=0.01),
        pytest.approx(1.45, abs=0.01),
    ]
    (no_cells,) = judged["4 workers on par"].reasons
    assert isinstance(no_cells, NoSuchCells) and no_cells.group.cells == {"workers": 4}

    compare.write_report(tmp_path / "out", my_study)
    text = (tmp_path / "out" / "COMPARISON.md").read_text()
    assert "not measured: no cell of the study matches cells {workers = 4}" in text
    assert "| RPS orders 3.14t w2/w1 " in text  # a ratio of other settings than the variant names them


def test_a_claim_of_cells_not_run_names_the_session_that_runs_them(my_study, tmp_path):
    stored = store_my_runs(my_study, tmp_path)
    del stored[next(key for key in stored if key[1].startswith("3.14t-w1"))]
    judged = verdicts.judge(my_study, my_study.claims[0], stored)
    assert judged.verdict == Verdict.NOT_MEASURED
    (missing,) = judged.reasons
    assert isinstance(missing, Missing) and missing.sessions == ("my-service-3.14t", "my-service")


def test_with_no_claims_every_figure_gets_an_outcome_and_the_answer_comes_first(my_study, tmp_path):
    stored = store_my_runs(my_study, tmp_path)
    found = outcomes.findings(my_study, stored)
    assert [f.outcome for f in found["rps"]] == [Outcome.BETTER, Outcome.BETTER]
    assert [f.outcome for f in found["latency_p50"]] == [Outcome.ON_PAR, Outcome.ON_PAR]
    p99_w1, p99_w2 = found["latency_p99"]
    assert p99_w1.outcome == Outcome.CANT_TELL and isinstance(p99_w1.reasons[0], Straddles)
    assert p99_w2.outcome == Outcome.WORSE and p99_w2.change == pytest.approx(1.51, abs=0.01)
    assert {f.outcome for f in found["pss"]} == {Outcome.NOT_MEASURED}  # these records hold no PSS

    written = compare.write_report(tmp_path, my_study)
    text = written[0].read_text()
    answer = text.split("## The answer")[1].split("## ")[0]
    assert "**3.14t against 3.14** on AMD EPYC 9654, 16 logical / 8 physical cores, 32 GiB" in answer
    assert "- RPS, of 2 configurations: faster in 2 (most: orders w1, +100%, interval +99% to +102%)." in answer
    assert (
        "- p99 latency, of 2 configurations: higher in 1 (most: orders w2, +151%, interval +148% to +155%); "
        "can't tell in 1 (interval straddles the band: 1)."
    ) in answer
    assert "- peak RSS, of 2 configurations: on par in 2." in answer  # no PSS in these records: RSS stands in
    budget = [line for line in answer.splitlines() if line.startswith("| svc ")]
    assert [c.strip() for c in budget[1].split("|")[3:7]] == [
        "3.14t",
        "3.14t /orders 2 workers",
        "2897",
        "3.14t /orders 1 worker, 2003 RPS",
    ]
    assert text.index("## The answer") < text.index("## Verdicts") < text.index("## Every comparison")
    assert (tmp_path / "charts" / "compared-rps.png").read_bytes()[:4] == b"\x89PNG"


def test_the_answer_names_a_stand_in_and_the_cells_compared_with_nothing(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text(
        MY_SERVICE
        + """
[tables.alone]
number = 2
title = "3.14t only"
columns = ["python", "rps"]
cell = { app = "svc", endpoint = "orders", concurrency = 32, workers = 1 }
rows = [{ variant = "3.14t" }]

[sessions.only-orders]
variants = ["3.14", "3.14t"]
tables = ["orders"]
description = "the first table only"
"""
    )
    study = load(path)
    for cell in study.tables[0].cells:
        rps, p50, p99 = RUNS[(cell.workers, cell.variant)]
        made = record(cell, rps, p50, p99)
        if cell.variant == "3.14":
            made["interpreter"] |= {"label": "3.12", "stand_in": True}
        results.write_record(results.cell_path(tmp_path / "out", cell), made)
    compare.write_report(tmp_path / "out", study)  # the table no session runs is not run: said, not a crash
    answer = (tmp_path / "out" / "COMPARISON.md").read_text().split("## The answer")[1].split("\n## ")[0]
    assert "**3.14t against 3.14** (3.12 standing in for 3.14) on AMD EPYC 9654" in answer
    assert (
        "Compared with nothing, since no cell differs from them in variant only with the baseline's value "
        "(3.14; every other setting, concurrency included, must match): alone (1 cells)." in answer
    )


def test_one_run_per_cell_cannot_tell_for_want_of_an_interval(my_study, tmp_path):
    for cell in my_study.tables[0].cells:
        results.write_record(results.cell_path(tmp_path, cell), make_record(cell, rps=1000 * cell.workers))
    found = outcomes.findings(my_study, results.load(tmp_path))
    assert [(f.outcome, f.reasons[0]) for f in found["rps"]] == [(Outcome.CANT_TELL, TooFewRuns(1))] * 2


def test_a_free_threaded_row_that_ran_with_the_gil_on_cannot_tell_anything(my_study, tmp_path):
    stored = store_my_runs(my_study, tmp_path)
    threaded_w1 = next(record for key, record in stored.items() if key[1].startswith("3.14t-w1"))
    key = next(key for key in stored if key[1].startswith("3.14t-w1"))
    stored[key] = threaded_w1.model_copy(
        update={"interpreter": threaded_w1.interpreter.model_copy(update={"gil_enabled": True})}
    )
    rps_w1 = outcomes.findings(my_study, stored)["rps"][0]
    assert rps_w1.outcome == Outcome.CANT_TELL
    assert [reason.flag.kind for reason in rps_w1.reasons] == [FlagKind.GIL_ENABLED]
    assert verdicts.judge(my_study, my_study.claims[0], stored).verdict == Verdict.INCONCLUSIVE


@pytest.mark.parametrize(
    "edit, said",
    [
        (
            ('band = "at least 1.5"', 'band = "much faster"'),
            'claims.0.ratios.0.band: expected "on par", "faster", "slower", "at least 1.5", "at most 0.95" or "0.70 to '
            "0.90\", got 'much faster'",
        ),
        (
            ("cells = { workers = 1 }", "cells = { workerz = 1 }"),
            "claims.0.ratios.0: cells: 'workerz' is not a cell setting (one of: table, app, variant, endpoint, workers,",
        ),
        (
            ("over = { workers = 2 }", 'over = { loop = "uvloop" }'),
            "claims.3.ratios.0: `over` and `under` must name the same settings",
        ),
        (
            ("p99_budget_ms = 20", 'baseline = "3.13"'),
            "comparison.baseline: '3.13' is not a value of variant in the study's cells ('3.14', '3.14t')",
        ),
        (
            ('band = "1.8 to 2.2"', 'band = "2.2 to 1.8"'),
            "claims.3.ratios.0.band: expected ratios above 0, the lower first, such as \"0.70 to 0.90\", got '2.2 to 1.8'",
        ),
        (("p99_budget_ms = 20", 'setting = "app"'), "comparison.setting: Input should be 'variant', 'endpoint',"),
        (("p99_budget_ms = 20", 'setting = "colour"'), "comparison.setting: Input should be 'variant', 'endpoint',"),
        (
            ('band = "at least 1.5" }]', 'band = "at least 1.5", needs = { io_efficiency = 0.8 } }]'),
            "claims.0.ratios.0: needs.io_efficiency, but app svc's endpoint orders sets no io_wait_ms",
        ),
        (
            ('band = "at least 1.5" }]', 'band = "at least 1.5", needs = { cores = "post" } }]'),
            'claims.0.ratios.0: needs.cores = "post", but the source publishes no CPU for 3.14t-w1-tdefault-orders-c64',
        ),
    ],
)
def test_a_malformed_claim_or_comparison_is_refused_in_one_line_naming_the_key(tmp_path, edit, said):
    path = tmp_path / "bad.toml"
    path.write_text(MY_SERVICE.replace(*edit, 1))
    with pytest.raises(StudyError) as refused:
        load(path)
    assert str(refused.value).startswith(f"{path}: ") and said in str(refused.value)
    done = subprocess.run(
        [sys.executable, "-m", "gilfree", "compare", "--study", str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert done.returncode == 2 and said in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_every_shipped_study_names_what_it_compares():
    studies = {path.stem: load(path) for path in (ROOT / "studies").glob("*.toml")}
    assert {name: (s.comparison.setting, s.comparison.baseline) for name, s in studies.items()} == {
        "article": ("variant", "3.14"),
        "event-loops": ("loop", "asyncio"),
        "wsgi-threads": ("variant", "3.14"),
        "core-scaling": ("variant", "3.14"),
    }
    assert len(studies["article"].claims) == 7
    assert all(not claim.unmatched and claim.ratios for claim in studies["article"].claims)


def test_two_machines_side_by_side_with_the_post_as_one_more_column(tmp_path):
    first, second = tmp_path / "epyc", tmp_path / "xeon"
    shutil.copytree(RECORDED / "interleaved-repeat3", first)
    shutil.copytree(RECORDED / "interleaved-repeat3", second)
    for path in second.glob("raw/*/*.json"):
        path.write_text(path.read_text().replace("Intel(R) Xeon(R) Processor", "Intel(R) Xeon(R) Gold 6338"))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "gilfree",
            "compare",
            "--results-dir",
            str(first),
            "--results-dir",
            str(second),
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "MACHINES.md").read_text()
    assert "1. Intel(R) Xeon(R) Processor, 2 logical / 2 physical cores, 24 GiB" in text
    assert "2. Intel(R) Xeon(R) Gold 6338, 2 logical / 2 physical cores, 24 GiB" in text
    rps = text.split("## RPS")[1].split("## ")[0]
    header, _, first_row = rps.strip().splitlines()[:3]
    assert [c.strip() for c in header.split("|")[1:-1]] == [
        "Table",
        "Configuration",
        "Ratio of",
        "Source",
        "Machine 1",
        "Machine 2",
        "Same outcome everywhere?",
    ]
    cells = [c.strip() for c in first_row.split("|")[1:-1]]
    assert cells[:4] == ["asgi-json", "JSON w1", "3.14t / 3.14", "0.80"]  # the post: 24218 / 30415
    assert cells[4] == cells[5] == "0.92 [0.77, 1.11] can't tell" and cells[6] == "no"
    claims = text.split("## Claims")[1].split("## ")[0]
    assert "| ASGI JSON: about 20% slower on 3.14t " in claims
    assert claims.count("| no ") == 7  # inconclusive or not measured on both: the same word, but nothing decided


def test_claims_decided_alike_on_every_machine_say_so(tmp_path):
    first, second = tmp_path / "one", tmp_path / "two"
    for folder in (first, second):
        shutil.copytree(RECORDED / "study", folder)
    done = subprocess.run(
        [sys.executable, "-m", "gilfree", "compare", "--results-dir", str(first), "--results-dir", str(second)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    claims = (first / "MACHINES.md").read_text().split("## Claims")[1].split("## ")[0]
    decided = [line for line in claims.splitlines() if line.endswith("| yes                      |")]
    assert [line.split("|")[1].strip() for line in decided] == [
        "ASGI JSON: about 20% slower on 3.14t",
        "ASGI: less memory on 3.14t",
        "WSGI on 3.14 (table 3): more threads help I/O and hurt JSON",
    ]  # not held, held, held (one run each)


def test_out_without_several_folders_is_refused_in_one_line(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "gilfree", "compare", "--results-dir", str(tmp_path), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 2 and done.stderr.strip() == (
        "gilfree: error: --out is for MACHINES.md, with several --results-dir; COMPARISON.md goes into the one "
        "results folder"
    )


def test_a_results_folder_of_another_study_is_refused_in_one_line(tmp_path):
    shutil.copytree(RECORDED / "interleaved-repeat3", tmp_path / "article")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "gilfree",
            "compare",
            "--study",
            str(ROOT / "studies" / "event-loops.toml"),
            "--results-dir",
            str(tmp_path / "article"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"gilfree: error: {tmp_path / 'article'} holds results of another study (table "
        f"'asgi-io', cell 3.14-w1-tdefault-io-c128, is not one of event-loops.toml's): "
        f"give --study the file it was run with"
    )
    assert not (tmp_path / "article" / "COMPARISON.md").exists()


REAL_STUDY = (
    'title = "Flask on the real 3.13 and 3.13t, compared end to end"\n'
    + REAL_313_HEAD
    + POST_APPS_TOML["wsgi"]
    + """
[tables.flask]
number = 1
title = "Flask /json, 1 worker, c=16"
columns = ["python", "threads", "rps", "latency_avg", "cpu", "ram"]
cell = {{ app = "wsgi", endpoint = "json", workers = 1, concurrency = 16 }}
grid = {{ blocking_threads = [1, 4], variant = ["3.13", "3.13t"] }}

[comparison]
p99_budget_ms = 1000

[[claims]]
text = "3.13t serves /json within a factor of 100 of 3.13"
ratios = [{{ figure = "rps", over = {{ variant = "3.13t" }}, under = {{ variant = "3.13" }}, band = "0.01 to 100" }}]
"""
)


def test_a_small_study_runs_on_real_granian_and_compares_with_intervals_and_outcomes(real_environments, tmp_path):
    """Real Granian serving Flask on the real 3.13 and 3.13t, wrk's load, three interleaved rounds of 1 s; then
    `compare` on what was stored: every ratio has its interval and an outcome, or the reason it has none."""
    study = tmp_path / "flask313.toml"
    study.write_text(REAL_STUDY.format(root=ROOT))
    pythons = [f"--python=wsgi:{variant}={real_environments['wsgi', variant]}" for variant in ("3.13", "3.13t")]
    ran = subprocess.run(
        [
            sys.executable,
            "-m",
            "gilfree",
            "run",
            "flask313",
            "--study",
            str(study),
            *pythons,
            "--loadgen",
            "wrk",
            "--duration",
            "1s",
            "--repeat",
            "3",
            "--order-seed",
            ORDER_SEED,
            "--port",
            str(free_port()),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=900,
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    done = subprocess.run(
        [sys.executable, "-m", "gilfree", "compare", "--study", str(study)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "out" / "COMPARISON.md").read_text()
    assert "**3.13t against 3.13** on " in text and "- RPS, of 2 configurations: " in text
    assert "- p99 latency, of 2 configurations: " in text  # wrk gives percentiles
    rps = text.split("### RPS")[1].split("###")[0]
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in rps.strip().splitlines()[2:]]
    assert [row[1] for row in rows] == ["JSON w1 t1", "JSON w1 t4"] and {row[2] for row in rows} == {"3.13t / 3.13"}
    for row in rows:
        assert re.fullmatch(r"\d+\.\d\d \[\d+\.\d\d, \d+\.\d\d\]", row[3]) and row[4] == "3", row
        assert re.fullmatch(r"(faster|slower) by \d+%|on par", row[5]) or (row[5] == "can't tell" and row[6]), row
    assert "| 3.13t serves /json within a factor of 100 of 3.13 " in text and "| **held** " in text
    assert "Most RPS with p99 ≤ 1000 ms" in text
    assert (tmp_path / "out" / "charts" / "compared-rps.png").read_bytes()[:4] == b"\x89PNG"
