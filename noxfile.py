# /// script
# dependencies = ["nox>=2025.10.16"]
# [tool.nox]
# script-venv-backend = "uv"
# ///
"""gilfree's sessions: one per part of each study in studies/, then the tools around them.

`nox` runs the post's study (studies/article.toml); `nox -s asgi-3.14t -- --duration 10s --loadgen wrk` runs one
part; `nox -s mine` runs a study of your own, studies/mine.toml (docs/own-study.md). `nox -l` lists them.
Each study session builds one uv environment per app and variant holding only what a deployment would hold
(Granian and the app's dependencies, from its lock), and the harness, in its own environment, drives it from
outside. Options after `--` go to the harness (docs/setup.md lists them). A measuring session holds the machine
lock from building its environments to its harness's end: one benchmark per machine at a time.
"""

import json
import os
import subprocess
import sys
from contextlib import contextmanager

import nox

ROOT = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
from gilfree.run import machine_lock  # noqa: E402  (standard library and filelock only, which nox has)

nox.options.default_venv_backend = "none"  # the sessions build their environments themselves (see environment)
nox.options.error_on_missing_interpreters = True  # a skipped session would be a lost measurement
os.environ["PATH"] = os.pathsep.join([os.path.join(ROOT, "tools", "bin"), os.environ["PATH"]])  # `nox -s tools`
# nox points uv at the session's environment and interpreter; the harness must stay in the project's own.
# The harness exits when this nox process is gone (nox runs it through uv, so nox is not its parent).
HARNESS_ENV = {"UV_PROJECT_ENVIRONMENT": None, "UV_PYTHON": None, "VIRTUAL_ENV": None, **machine_lock.caller_env()}
# --compile-bytecode: once, at install, since a machine may forbid writing bytecode at import
# (PYTHONDONTWRITEBYTECODE), and every start would compile scipy, matplotlib and pydantic again (seconds each).
HARNESS = ["uv", "run", "--locked", "--no-dev", "--quiet", "--compile-bytecode", "--project", ROOT, "python", "-m"]


def studies() -> dict:
    """Every study's sessions, as the harness reads the study files (`python -m gilfree.environments`)."""
    try:
        found = subprocess.run(
            [*HARNESS, "gilfree.run.environments"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env={k: v for k, v in os.environ.items() if k not in HARNESS_ENV},
        )
    except FileNotFoundError:
        raise SystemExit(
            "gilfree: the noxfile needs uv: install it (https://docs.astral.sh/uv/) and run `uvx nox`"
        ) from None
    if found.returncode != 0:
        raise SystemExit(f"gilfree: cannot read the studies: {(found.stderr.strip().splitlines() or ['?'])[-1]}")
    return json.loads(found.stdout)


def python(session: nox.Session, wanted: dict) -> str:
    """The interpreter a variant asks for ($GILFREE_PYTHON_<VARIANT>, else found or installed by uv), or the one
    line that says what to do."""
    found = subprocess.run(
        [*HARNESS, "gilfree.run.environments", "interpreter", wanted["request"], wanted["variable"]],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    if found.returncode != 0:
        session.error(found.stderr.strip())
    return found.stdout.strip()


def harness(session: nox.Session, *args: str, module: str = "gilfree") -> None:
    """Run the harness in the project's own locked environment, never in the one under test."""
    session.run(*HARNESS, module, *args, env=HARNESS_ENV, external=True, interrupt_timeout=15, terminate_timeout=5)


@contextmanager
def machine(session: nox.Session):
    """Hold the machine lock (docs/setup.md: one benchmark per machine at a time): wait for it, or fail at once
    with --no-wait."""
    try:
        with machine_lock.held(session.name, wait="--no-wait" not in session.posargs, say=session.log):
            yield
    except machine_lock.MachineBusy as busy:
        session.error(str(busy))


def environment(session: nox.Session, interpreter: str, lock: str, location: str) -> str:
    """Build an environment under test at `location`: the interpreter, and the app's dependencies and Granian
    exactly as locked. Done here, under the machine lock, rather than by nox: nox would re-create it before the
    session could take the lock, under a twin session still measuring."""
    if not os.path.isfile(os.path.join(ROOT, lock)):
        session.error(f"there is no lock {lock}: make it with `nox -s lock -- STUDY_FILE`")
    session.run_install(
        "uv", "venv", "--clear", "--quiet", "--python", interpreter, location, env=HARNESS_ENV, external=True
    )
    session.run_install(
        "uv",
        "pip",
        "sync",
        "--quiet",
        "--require-hashes",
        "--compile-bytecode",
        os.path.join(ROOT, lock),
        "--python",
        location,
        external=True,
    )
    return os.path.join(location, "bin", "python")


def env_dir(session: nox.Session, *suffix: str) -> str:
    """Where a session builds an environment under test (the harness makes it absolute where it takes it)."""
    return "-".join([str(session.env_dir), *suffix])


def interpreters(session: nox.Session, plan: dict) -> dict[str, str]:
    """Each variant's interpreter, found and checked to be of the right build: quick, so asked first."""
    return {variant: python(session, wanted) for variant, wanted in plan["pythons"].items()}


def environments(session: nox.Session, plan: dict, interpreters: dict[str, str]) -> list[str]:
    """One environment under test per app and variant of the plan; the harness's --python for each."""
    pythons = []
    for app in plan["apps"]:
        for variant, interpreter in interpreters.items():
            built = environment(session, interpreter, plan["locks"][app], env_dir(session, app, variant))
            pythons += ["--python", f"{app}:{variant}={built}"]
    return pythons


def study(session: nox.Session, plan: dict) -> None:
    """Quick checks first: the machine lock, each variant's interpreter and its build, then what the harness
    refuses before anything is built (options, port, locks); only then the slow parts: the load generator
    installed where missing, one environment per app and variant, and the runs (with several variants, they
    alternate between them run by run)."""
    if plan["error"]:
        session.error(plan["error"])
    with machine(session):
        found = interpreters(session, plan)
        harness(session, "prepare", session.name, "--study", plan["study"], *session.posargs)
        pythons = environments(session, plan, found)
        harness(
            session,
            "run",
            session.name,
            "--study",
            plan["study"],
            *session.posargs,
            *pythons,
            "--profile",
            plan["profile"],
        )


def add_study_session(plan: dict) -> None:
    """Register one study session under its name, described as its study file describes it."""

    def run(session: nox.Session) -> None:
        study(session, plan)

    run.__doc__ = plan["description"]
    nox.session(name=plan["name"])(run)


PLAN = studies()
for planned in PLAN["sessions"]:
    add_study_session(planned)
for refused in PLAN["refused"]:  # `nox -s NAME` says why its study file cannot run
    for name in refused["sessions"]:
        add_study_session({"name": name, "description": f"REFUSED: {refused['error']}", "error": refused["error"]})
nox.options.sessions = PLAN["default"]  # the post's whole study (studies/article.toml, default_sessions)


@nox.session
def overhead(session: nox.Session) -> None:
    """Benchmark the harness itself: per-cell overhead, the sampler's CPU, RPS with sampling and with Granian's
    counters on / off."""
    plan = next(planned for planned in PLAN["sessions"] if planned["name"] == "asgi-3.14")
    if plan["error"]:
        session.error(plan["error"])
    with machine(session):
        under_test = environment(
            session, python(session, plan["pythons"]["3.14"]), plan["locks"]["asgi"], env_dir(session)
        )
        harness(session, "--python", under_test, *session.posargs, module="gilfree.overhead")


@nox.session(name="gil-audit")
def gil_audit(session: nox.Session) -> None:
    """Name every extension module that turns the GIL back on, per app and free-threaded variant, in GIL-AUDIT.md
    (-- --study FILE; default the post's; --strict exits 1 on one)."""
    asked = subprocess.run(
        [*HARNESS, "gilfree.run.environments", "audit", *session.posargs], cwd=ROOT, capture_output=True, text=True
    )
    if asked.returncode != 0:
        session.error(f"cannot read the study: {(asked.stderr.strip().splitlines() or ['?'])[-1]}")
    plan = json.loads(asked.stdout)
    if plan["error"]:
        session.error(plan["error"])
    with machine(session):
        pythons = environments(session, plan, interpreters(session, plan))
        harness(session, "--study", plan["study"], *session.posargs, *pythons, module="gilfree.gil_audit")


@nox.session
def calibrate(session: nox.Session) -> None:
    """The load generator's ceiling on this machine, against nginx on loopback: results/calibration/."""
    harness(session, *session.posargs, module="gilfree.calibrate")


@nox.session
def tables(session: nox.Session) -> None:
    """Re-render a study's Markdown tables from its raw JSON, running nothing (-- --study FILE; default the post's)."""
    harness(session, "tables", *session.posargs)


@nox.session
def compare(session: nox.Session) -> None:
    """Write a study's COMPARISON.md and charts: the answer, every ratio with its interval and outcome, the claims'
    verdicts (-- --study FILE; default the post's); with several --results-dir, MACHINES.md side by side."""
    harness(session, "compare", *session.posargs)


@nox.session
def tools(session: nox.Session) -> None:
    """Install rewrk 0.3.2 and oha 1.16.0 into tools/bin with cargo where missing, or print what to run."""
    harness(session, module="gilfree.run.tools")


@nox.session(name="machine")
def machine_readiness(session: nox.Session) -> None:
    """The machine's readiness to measure (governor, turbo, SMT, ASLR, isolated CPUs, irqbalance, swap, load,
    throttling), item by item, with the command that fixes each one that makes ratios drift (-- --pin N)."""
    harness(session, "machine", *session.posargs)


@nox.session
def lock(session: nox.Session) -> None:
    """Lock a study's apps with hashes (-- studies/mine.toml; default the post's), under GILFREE_PROFILE."""
    harness(session, "lock", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff (lint and format) and mypy over the harness, its tests and this noxfile, as pyproject.toml configures
    them."""
    tool = ["uv", "run", "--locked", "--group", "lint"]
    session.run(*tool, "ruff", "check", "scripts", "tests", "noxfile.py", env=HARNESS_ENV, external=True)
    session.run(*tool, "ruff", "format", "--check", "scripts", "tests", "noxfile.py", env=HARNESS_ENV, external=True)
    session.run(*tool, "mypy", env=HARNESS_ENV, external=True)


def test_pythons(session: nox.Session) -> dict:
    """GILFREE_PYTHON_3_13 and GILFREE_PYTHON_3_13T for the tests: as given, else a real CPython 3.13.5 and
    3.13.5t built once per machine from CPython's release tarball (tests/build-cpython; minutes, the first time)."""
    wanted = ("GILFREE_PYTHON_3_13", "GILFREE_PYTHON_3_13T")
    if all(os.environ.get(variable) for variable in wanted):
        return {}
    built = subprocess.run(["bash", os.path.join(ROOT, "tests", "build-cpython")], stdout=subprocess.PIPE, text=True)
    if built.returncode != 0:
        session.error(
            "cannot build the real CPython 3.13.5 and 3.13.5t the tests need (above: why); or point "
            "GILFREE_PYTHON_3_13 and GILFREE_PYTHON_3_13T at a CPython 3.13 and a free-threaded 3.13t"
        )
    return dict(line.split("=", 1) for line in built.stdout.split())


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite: unit tests, and real cells with Granian and every load generator, on GIL interpreters and
    on a real free-threaded CPython."""
    session.run(
        "uv",
        "run",
        "--locked",
        "--compile-bytecode",
        "pytest",
        *session.posargs,
        env={**HARNESS_ENV, **test_pythons(session)},
        external=True,
    )
