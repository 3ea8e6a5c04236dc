"""Every session nox has, run as a user runs it (`nox -s NAME` from the checkout, nox's own relative
environment folder), with the shortest durations on a free port: it exits 0 and prints no traceback, or, where this
machine lacks what it needs, refuses in one line. The study sessions get this machine's GIL interpreter for 3.14
and the real free-threaded CPython 3.13.5t (tests/build-cpython) for 3.14t."""

import json
import os
import re
import shutil
import subprocess

import pytest
from conftest import ROOT, base_python, free_port

from gilfree.report import outcomes
from gilfree.study import results, schema, studies

RECORDED = ROOT / "tests" / "recorded" / "real-3.14.7-2core"


def study_sessions() -> dict[str, studies.Session]:
    found, _ = studies.discover()
    return {name: session for study in found.values() for name, session in study.sessions.items()}


def nox_sessions() -> list[str]:
    """The sessions `nox -l` lists (tests/test_pins.py checks it lists these): the noxfile's own and every
    study's."""
    return sorted(schema.reserved_sessions() | set(study_sessions()))


def one_variant_first(name: str) -> tuple[bool, str]:
    """Sessions of one variant run before the interleaved ones of the same study, which then keep their runs."""
    session = study_sessions().get(name)
    return (session is not None and len(session.variants) > 1, name)


def nox(session: str, *args: str, env: dict, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["nox", "-s", session, "--", *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=timeout
    )


# Sessions whose free-threaded environment needs a real 3.14t: the event-loops lock holds today's pydantic-core,
# which ships no cp313t wheel and whose PyO3 refuses to build for 3.13t. Given no 3.14t, they refuse in one line.
NEED_REAL_314T = ("event-loops", "event-loops-3.14t")


@pytest.fixture(scope="module")
def user_env(real_pythons, tmp_path_factory) -> dict:
    """A user's environment: 3.14 and 3.14t pointed at interpreters this machine has, no profile chosen; uv can
    neither find nor download another interpreter (its mirror refuses, whatever the network)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GILFREE_PYTHON_3_14", "GILFREE_PROFILE"))}
    return env | {
        "GILFREE_PYTHON_3_14": base_python(),
        "GILFREE_PYTHON_3_14T": real_pythons["3.13t"],
        "UV_PYTHON_INSTALL_DIR": str(tmp_path_factory.mktemp("no-pythons")),
        "UV_PYTHON_INSTALL_MIRROR": "http://127.0.0.1:9/",
    }


@pytest.fixture(scope="module")
def study_results() -> dict:
    """One results folder per study, shared by its sessions, as a user's `results/` is."""
    return {}


def ran_cells(session: studies.Session) -> list[studies.Cell]:
    """The cells a study session runs here: those of its first table (--table, below)."""
    return [cell for cell in session.cells() if cell.table == session.tables[0]]


def measured(results_dir, session: studies.Session) -> dict[str, str]:
    """The stored records of the session's first table, and their status."""
    folder = results_dir / "raw" / session.tables[0]
    stored = {path.stem: json.loads(path.read_text()) for path in folder.glob("*.json")}
    return {key: record["status"] for key, record in stored.items() if record["cell"]["variant"] in session.variants}


def run_study_session(name: str, env: dict, results_dir) -> subprocess.CompletedProcess:
    session = study_sessions()[name]
    table = ["--table", session.tables[0]] if len(session.tables) > 1 else []
    return nox(
        name,
        "--duration",
        "1s",
        "--loadgen",
        "wrk",
        "--port",
        str(free_port()),
        "--results-dir",
        str(results_dir),
        *table,
        env=env,
    )


def run_tool_session(name: str, env: dict, tmp_path) -> subprocess.CompletedProcess:
    """The sessions that are not a study's, each with the least it needs."""
    if name in ("tables", "compare"):  # on recorded real results (tests/recorded/README.md says where from)
        shutil.copytree(RECORDED, tmp_path / "recorded")
        return nox(name, "--results-dir", str(tmp_path / "recorded"), env=env)
    if name == "overhead":
        return nox(name, "--cells", "1", "--pairs", "1", "--duration", "1s", env=env)
    if name == "gil-audit":  # the post's apps, on the real 3.13t standing in for 3.14t
        return nox(name, "--results-dir", str(tmp_path), env=env)
    if name == "calibrate":
        return nox(
            name,
            "--loadgen",
            "wrk",
            "--duration",
            "1s",
            "--repeat",
            "1",
            "--concurrency",
            "16",
            "--results-dir",
            str(tmp_path),
            env=env,
        )
    if name == "lock":
        (tmp_path / "app").mkdir()
        (tmp_path / "app" / "requirements.in").write_text("granian==2.5.5\n")
        (tmp_path / "mine.toml").write_text(
            'title = "t"\nvariants = ["3.14"]\n[apps.a]\ninterface = "asgi"\ntarget = "m:app"\ndirectory = "app"\n'
            'requirements = "app/requirements.in"\nendpoints.e = {}\n[tables.t]\nnumber = 1\ntitle = "t"\n'
            'columns = ["rps"]\ncell = { app = "a", endpoint = "e" }\nrows = [{ variant = "3.14", workers = 1, '
            "concurrency = 1 }]\n"
        )
        return nox(name, str(tmp_path / "mine.toml"), env=env)
    if name == "machine":  # reads the machine, item by item
        return nox(name, env=env)
    if name == "tests":  # the suite inside itself: collected, not run again
        return nox(name, "--collect-only", "-q", "tests/test_parsers.py", env=env)
    assert name in ("tools", "lint"), f"nox has a session {name!r} this test does not know how to run"
    return nox(name, env=env)


def refused_for(name: str) -> str | None:
    """What a session that needs what this machine lacks says, in its one line."""
    if name == "scaling" and (os.cpu_count() or 1) < 3:  # no second point to give the server
        return "core scaling needs at least 2 points"
    if name in NEED_REAL_314T:
        return "point GILFREE_PYTHON_3_14T at a CPython 3.14t"
    return None


def compares_its_runs(study: studies.Study, results_dir, env: dict) -> None:
    """`nox -s compare -- --study FILE` on a study's real runs so far: every pair whose both cells are stored gets
    its RPS ratio and an outcome (a can't-tell with its reason); with none yet, the answer says not measured."""
    done = nox("compare", "--study", str(study.path), "--results-dir", str(results_dir), env=env)
    assert done.returncode == 0 and "Traceback" not in done.stderr, (done.stdout + done.stderr)[-3000:]
    text = (results_dir / "COMPARISON.md").read_text()
    stored = results.load(results_dir)
    both = [pair for pair in outcomes.pairs(study) if all((c.table, c.key) in stored for c in pair)]
    answer = text.split("## The answer")[1].split("\n## ")[0]
    if not both:
        assert "### RPS" not in text and "RPS, of " in answer and "not measured in" in answer, answer
        return
    rows = [
        [c.strip() for c in line.split("|")[1:-1]]
        for line in text.split("### RPS")[1].split("###")[0].strip().splitlines()[2:]
    ]
    judged = [row for row in rows if re.fullmatch(r"\d+\.\d\d( \[\d+\.\d\d, \d+\.\d\d\])?", row[3])]
    assert len(judged) == len(both), rows
    for row in judged:
        assert re.fullmatch(r"(faster|slower) by \d+%|on par", row[5]) or (row[5] == "can't tell" and row[6]), row


@pytest.mark.parametrize("name", sorted(nox_sessions(), key=one_variant_first))
def test_every_session_runs_or_refuses_in_one_line(name, user_env, study_results, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp(name)
    session = study_sessions().get(name)
    if session is None:
        ran = run_tool_session(name, user_env, tmp_path)
    else:
        results_dir = study_results.setdefault(session.study.name, tmp_path_factory.mktemp(session.study.name))
        env = {k: v for k, v in user_env.items() if k != "GILFREE_PYTHON_3_14T" or name not in NEED_REAL_314T}
        ran = run_study_session(name, env, results_dir)
    output = ran.stdout + ran.stderr
    assert "Traceback" not in output, output[-3000:]
    refusal = refused_for(name)
    if refusal:  # the one line, from nox (aborted: ...) or from the harness's first step (gilfree: error: ...)
        said = [line for line in output.splitlines() if "aborted:" in line or line.startswith("gilfree: error:")]
        assert ran.returncode == 1 and len(said) == 1, output[-3000:]
        assert refusal in said[0]
        return
    assert ran.returncode == 0, output[-3000:]
    if session is not None:  # every cell the session ran is stored, measured
        assert measured(results_dir, session) == {cell.key: "ok" for cell in ran_cells(session)}
    if session is not None and session.study.name != "article":  # the study's own comparison, on what it stored
        compares_its_runs(session.study, results_dir, user_env)
    if name == "machine":
        titles = ("CPU frequency governor", "SMT siblings", "Other load")
        assert all(f" {title} " in ran.stdout for title in titles), output
    if name == "overhead":
        assert "where a run's time went, mean seconds over 1 runs" in ran.stdout
        assert "harness share of the post's study" in ran.stdout and "sampler CPU" in ran.stdout
    if name == "gil-audit":  # the post's apps keep the GIL off on 3.13t: every module, and each app
        audited = json.loads((tmp_path / "gil-audit.json").read_text())
        assert {env["app"] for env in audited["environments"]} == {"asgi", "wsgi"}
        for environment in audited["environments"]:
            assert {row["module"]: row["outcome"] for row in environment["modules"]}["granian._granian"] == "kept off"
            assert environment["app_import"]["outcome"] == "kept off"
