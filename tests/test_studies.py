"""Study files: a well-formed one becomes cells, tables and sessions; a malformed one is refused in one line that
names the file and the key, before anything starts."""

import os
import subprocess
import sys

import pytest
from conftest import ROOT

from gilfree.study import studies
from gilfree.study.schema import StudyError
from gilfree.study.studies import load

SMALL = """\
title = "A small study"
variants = ["3.14", "3.14t"]
duration = "5s"

[apps.api]
interface = "asgi"
target = "service:app"
directory = "app"
requirements = "app/requirements.in"
endpoints.health = { status = 204 }
endpoints.hello = { path = "/hello?name=x", text = "hello x" }

[tables.loops]
number = 1
title = "Loops"
columns = ["python", "loop", "endpoint", "rps"]
cell = { app = "api", workers = 1, concurrency = 16 }
grid = { endpoint = ["health", "hello"], loop = ["asyncio", "uvloop"], variant = ["3.14", "3.14t"] }
"""


def write_study(tmp_path, text=SMALL, name="small"):
    (tmp_path / "app").mkdir(exist_ok=True)
    (tmp_path / "app" / "requirements.in").write_text("granian\n")
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path


def test_a_grid_expands_in_the_order_its_keys_are_written(tmp_path):
    study = load(write_study(tmp_path))
    cells = study.tables[0].cells
    assert [(c.endpoint, c.loop, c.variant) for c in cells[:4]] == [
        ("health", "asyncio", "3.14"),
        ("health", "asyncio", "3.14t"),
        ("health", "uvloop", "3.14"),
        ("health", "uvloop", "3.14t"),
    ]
    assert len(cells) == 8 and {c.interface for c in cells} == {"asgi"}
    assert cells[2].key == "3.14-w1-tdefault-health-c16-uvloop"
    assert study.apps["api"].endpoints["hello"].path == "/hello?name=x"
    assert study.apps["api"].directory == tmp_path / "app"  # relative to the study file
    assert study.duration_s == 5 and study.results_dir == ROOT / "results" / "small"


def test_a_study_without_sessions_gets_one_per_variant_and_one_interleaving_both(tmp_path):
    study = load(write_study(tmp_path))
    assert list(study.sessions) == ["small", "small-3.14", "small-3.14t"]
    assert study.default_sessions == ("small",)
    assert [c.variant for c in study.sessions["small"].cells()][:2] == ["3.14", "3.14t"]
    assert {c.variant for c in study.sessions["small-3.14t"].cells()} == {"3.14t"}
    assert study.profile().python == {"3.14": "3.14", "3.14t": "3.14t"}  # uv is asked for each variant by name


BAD = [
    # (what is changed, the key the error names, what it says)
    (('variants = ["3.14", "3.14t"]', 'variants = ["3.14", "3.14x"]'), "variants.1", "should match pattern"),
    (("number = 1", "number = 0"), "tables.loops.number", "greater than or equal to 1"),
    (('title = "Loops"\n', 'title = "Loops"\nrows = []\n'), "tables.loops", "either `rows` or `grid`"),
    (('interface = "asgi"', 'interface = "http"'), "apps.api.interface", "'asgi', 'asginl', 'rsgi' or 'wsgi'"),
    (('target = "service:app"', 'target = "service"'), "apps.api.target", "should match pattern"),
    (
        ("workers = 1,", "workers = 0,"),
        "tables.loops.cell.workers",
        'expected a whole number of at least 1, or "cpus", got 0',
    ),
    (
        ("workers = 1,", 'workers = "two",'),
        "tables.loops.cell.workers",
        "expected a whole number of at least 1, or \"cpus\", got 'two'",
    ),
    (
        ('duration = "5s"', 'duration = "0s"'),
        "duration",
        "expected a whole number of seconds or minutes of at least 1s, such as 30s or 2m, got '0s'",
    ),
    (('duration = "5s"', 'duraton = "5s"'), "duraton", "Extra inputs are not permitted"),
    (
        ('endpoint = ["health", "hello"]', 'endpoint = ["health", "nope"]'),
        "tables.loops.grid (endpoint=nope, loop=asyncio, variant=3.14)",
        "endpoint 'nope' is not one of app api's (health, hello)",
    ),
    (("grid = { endpoint", "grid = { threads = [1], endpoint"), "tables.loops", "grid key 'threads' is not a cell"),
    (
        ('variant = ["3.14", "3.14t"]', 'variant = ["3.14", "3.13t"]'),
        "tables.loops.grid (endpoint=health, loop=asyncio, variant=3.13t)",
        "variant '3.13t' is not one of the study's variants",
    ),
    (('directory = "app"', 'directory = "elsewhere"'), "apps.api.directory", "is not a directory"),
    (
        ("[tables.loops]", '[sessions.x]\nvariants = ["3.14"]\ntables = ["nope"]\ndescription = "x"\n\n[tables.loops]'),
        "sessions.x.tables",
        "'nope' is not one of the study's tables",
    ),
    (('title = "A small study"', 'title = "A small study'), "not valid TOML", "line 1"),
    (
        (
            'grid = { endpoint = ["health", "hello"], loop = ["asyncio", "uvloop"], variant',
            'grid = { "endpoint+concurrency" = [["health", 8], ["hello"]], variant',
        ),
        "tables.loops",
        "grid key 'endpoint+concurrency' moves 2 settings together: give each value as a list of 2",
    ),
    (
        (
            'grid = { endpoint = ["health", "hello"], loop = ["asyncio", "uvloop"], variant',
            'grid = { "endpoint+concurrency" = [["health", 8], ["hello", "many"]], variant',
        ),
        "tables.loops.grid: concurrency",
        "Input should be a valid integer",
    ),
    (
        ("workers = 1,", 'workers = "cpus",'),
        "tables.loops.grid (endpoint=health, loop=asyncio, variant=3.14)",
        'workers = "cpus" needs the cell\'s `cpus`',
    ),
]


@pytest.mark.parametrize("change, key, expected", BAD, ids=[case[1] + ":" + case[2][:20] for case in BAD])
def test_a_malformed_study_is_refused_naming_the_file_and_the_key(tmp_path, change, key, expected):
    assert change[0] in SMALL
    path = write_study(tmp_path, SMALL.replace(*change))
    with pytest.raises(StudyError) as refused:
        load(path)
    message = str(refused.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    assert key in message and expected in message, message


def test_the_same_cell_twice_in_a_table_is_refused(tmp_path):
    path = write_study(tmp_path, SMALL.replace('loop = ["asyncio", "uvloop"]', 'loop = ["uvloop", "uvloop"]'))
    with pytest.raises(StudyError, match=r"tables\.loops: the same cell twice \(3\.14-w1-tdefault-health"):
        load(path)


def test_a_loop_on_a_wsgi_app_is_refused(tmp_path):
    path = write_study(tmp_path, SMALL.replace('interface = "asgi"', 'interface = "wsgi"'))
    with pytest.raises(StudyError, match="loop 'asyncio' is for ASGI and RSGI apps; app api is wsgi"):
        load(path)


def test_a_session_name_taken_by_another_study_refuses_the_later_file(tmp_path):
    write_study(tmp_path, name="aaa")
    clash = SMALL + '\n[sessions.aaa]\nvariants = ["3.14"]\ntables = ["loops"]\ndescription = "x"\n'
    write_study(tmp_path, clash, name="bbb")
    found, refused = studies.discover(tmp_path)
    assert list(found) == ["aaa"]
    assert "session 'aaa' is already aaa.toml's" in str(refused[tmp_path / "bbb.toml"])


def test_the_harness_refuses_a_malformed_study_in_one_line_before_anything_starts(tmp_path):
    path = write_study(tmp_path, SMALL.replace("number = 1", "number = -3"))
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "gilfree",
            "run",
            "small",
            "--study",
            str(path),
            "--python",
            "python3",
            "--results-dir",
            str(tmp_path / "results"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert completed.returncode == 2
    assert completed.stderr.strip() == (
        f"gilfree: error: argument --study: {path}: tables.loops.number: Input "
        f"should be greater than or equal to 1, got -3"
    )
    assert not (tmp_path / "results" / "raw").exists()


def test_nox_lists_a_refused_study_and_its_session_says_why(tmp_path):
    """A malformed file in studies/ breaks neither `nox -l` nor the post's sessions; its own session refuses."""
    bad = ROOT / "studies" / f"zz-broken-{os.getpid()}.toml"
    bad.write_text(SMALL.replace("number = 1", "number = []"))
    try:
        listed = subprocess.run(["nox", "-l"], capture_output=True, text=True, cwd=ROOT)
        ran = subprocess.run(["nox", "-s", bad.stem], capture_output=True, text=True, cwd=ROOT)
    finally:
        bad.unlink()
    assert listed.returncode == 0 and "* asgi ->" in listed.stdout
    assert f"- {bad.stem} -> REFUSED: {bad}: tables.loops.number: Input should be a valid integer" in listed.stdout
    assert ran.returncode == 1
    assert f"{bad}: tables.loops.number: Input should be a valid integer, got []" in ran.stderr


def test_a_schema_3_record_reads_as_a_cell_of_the_posts_study(tmp_path):
    """Records from before study files (schema 3, and schema 2 through it) gain their app and loop in memory."""
    from conftest import make_record

    from gilfree.study import results

    cell = studies.article().tables_by_id["asgi-json"].cells[0]
    record = make_record(cell) | {"schema": 3}
    record.pop("study")
    for name in ("app", "loop", "runtime_mode", "runtime_threads", "flags", "cpus"):
        del record["cell"][name]
    results.write_record(results.cell_path(tmp_path, cell), record)
    loaded = results.load(tmp_path)[cell.table, cell.key]
    assert loaded.study == "article" and loaded.schema_ == results.SCHEMA
    assert loaded.cell == cell  # app "asgi", loop "asyncio": the post's ASGI command


def test_stored_runs_survive_a_new_container_and_a_moved_checkout_but_not_other_hardware(monkeypatch, tmp_path):
    """The fingerprint holds the lock's content and the machine's hardware, not a path or a host name."""
    from gilfree.run import runner
    from gilfree.run.interpreters import Interpreter
    from gilfree.study import results

    interpreter = Interpreter(
        executable="/x/bin/python",
        version="3.14.0",
        implementation="CPython",
        free_threaded_build=False,
        gil_enabled=True,
        packages={"granian": "2.5.5"},
        variant="3.14",
        label="3.14",
    )
    session = studies.article().sessions["asgi-3.14"]
    options = runner.Options(session=session, pythons={}, duration_s=1, loadgen="wrk", results_dir=tmp_path, port=8000)
    generator = {"version": "wrk 4.1.0"}
    facts = {"cpu_model": "AMD EPYC", "logical_cores": 2, "physical_cores": 2, "memory_bytes": 24 * 2**30}

    def stamp(machine):
        monkeypatch.setattr(results, "machine", lambda: machine)
        return runner.fingerprint(session.cells()[0], interpreter, options, generator)

    here = stamp(facts | {"hostname": "container-1"})
    assert stamp(facts | {"hostname": "container-2"}) == here
    assert stamp(facts | {"hostname": "container-1", "cpu_model": "Intel Xeon"}) != here
    assert "/" not in options.environment("asgi")["lock"].removeprefix("../locks/article/")  # relative, not absolute


def test_a_malformed_study_is_refused_in_one_line_naming_the_file_the_key_and_what_was_expected(tmp_path):
    """(tests/test_readme.py checks that docs/own-study.md shows the line the harness gives.)"""
    path = write_study(tmp_path, SMALL.replace("workers = 1,", "workers = 0,"))
    with pytest.raises(StudyError) as refused:
        load(path)
    assert (
        str(refused.value)
        == f'{path}: tables.loops.cell.workers: expected a whole number of at least 1, or "cpus", got 0'
    )


def test_a_study_may_not_take_the_name_of_one_of_gilfrees_own_sessions(tmp_path):
    write_study(tmp_path, name="tests")
    found, refused = studies.discover(tmp_path)
    assert found == {} and "session 'tests' is already one of gilfree's own sessions" in str(
        refused[tmp_path / "tests.toml"]
    )


def test_an_apps_sources_are_in_its_fingerprint_but_not_its_virtual_environment(tmp_path):
    from gilfree.run import runner

    path = write_study(tmp_path)
    (tmp_path / "app" / "service.py").write_text("app = 1\n")
    (tmp_path / "app" / ".venv" / "lib").mkdir(parents=True)
    app = load(path).apps["api"]
    before = runner.app_sources_sha256(app)
    (tmp_path / "app" / ".venv" / "lib" / "installed.py").write_text("x = 1\n")
    assert runner.app_sources_sha256(app) == before
    (tmp_path / "app" / "service.py").write_text("app = 2\n")
    assert runner.app_sources_sha256(app) != before


def test_two_cells_on_one_point_of_a_scaling_curve_are_refused(tmp_path):
    twice = SMALL.replace(
        'cell = { app = "api", workers = 1, concurrency = 16 }', 'cell = { app = "api", workers = 1, concurrency = 16 }'
    )
    twice = twice.replace('loop = ["asyncio", "uvloop"]', 'runtime_mode = ["st", "mt"], cpus = [1, 2]')
    with pytest.raises(StudyError, match="is a second cell of app api /health on 3.14 with cpus = 1"):
        load(write_study(tmp_path, twice))
    one_cpu_count = twice.replace("cpus = [1, 2]", "cpus = [1]")
    assert len(load(write_study(tmp_path, one_cpu_count, name="one")).tables[0].cells) == 8  # no curve: allowed
