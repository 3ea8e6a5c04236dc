# /// script
# dependencies = ["nox>=2025.10.16"]
# [tool.nox]
# script-venv-backend = "uv"
# ///
"""The study of "The future of Python web services looks GIL-free" (2025-10-18), one session per part.

`nox` runs the whole study; `nox -s asgi-3.14t -- --duration 10s --loadgen wrk` runs one part.
Each study session builds a uv environment holding only what a deployment would hold (Granian and the
app's framework, installed from the lock), and the harness, in its own environment, drives it from outside.
Options after `--` go to the harness: --duration, --loadgen, --results-dir, --port, --table, --repeat,
--warmup, --pin, --rate, --bind, --loadgen-host and its --ssh-* options, --keep-going, --force, --no-wait
(README lists them). A measuring session holds the machine lock from building its environment to its
harness's end: one benchmark per machine at a time.
"""

import os
import subprocess
import sys
from contextlib import contextmanager

import nox

ROOT = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
from gilfree import machine_lock  # noqa: E402  (standard library and filelock only, which nox has)
from gilfree.matrix import SESSIONS  # noqa: E402

nox.options.default_venv_backend = "uv"
nox.options.error_on_missing_interpreters = True  # a skipped session would be a lost measurement
# The whole study (matrix.STUDY): tables 1-2 and 5-6 with 3.14 and 3.14t interleaved run by run, so drift between
# sessions cannot bias a ratio; then tables 3 and 4, which have one variant each.
nox.options.sessions = ["asgi", "wsgi", "wsgi-threads-3.14", "wsgi-workers-3.14t"]

# What the environments under test hold: `article` (default) as PyPI stood on the post's date, on the post's
# interpreters; `latest`, today's releases on the newest 3.14 patch. GILFREE_PROFILE=latest nox
PROFILE = os.environ.get("GILFREE_PROFILE", "article")
PYTHONS = {"article": {"3.14": "3.14.0", "3.14t": "3.14.0t"}, "latest": {"3.14": "3.14", "3.14t": "3.14t"}}
EXCLUDE_NEWER = {"article": "2025-10-19T00:00:00Z", "latest": None}
if PROFILE not in PYTHONS:
    raise SystemExit(f"GILFREE_PROFILE={PROFILE!r} is not a profile: choose one of {', '.join(PYTHONS)}")
if PROFILE == "article":
    nox.options.download_python = "never"  # nox would download the newest 3.14 patch, not 3.14.0

os.environ["PATH"] = os.pathsep.join([os.path.join(ROOT, "tools", "bin"), os.environ["PATH"]])  # `nox -s tools`
# nox points uv at the session's environment and interpreter; the harness must stay in the project's own.
# The harness exits when this nox process is gone (nox runs it through uv, so nox is not its parent).
HARNESS_ENV = {"UV_PROJECT_ENVIRONMENT": None, "UV_PYTHON": None, "VIRTUAL_ENV": None, **machine_lock.caller_env()}


def python(variant: str) -> str:
    """GILFREE_PYTHON_3_14 / GILFREE_PYTHON_3_14T if set; else the profile's exact request, as uv finds it."""
    override = os.environ.get("GILFREE_PYTHON_" + variant.upper().replace(".", "_"))
    if override:
        return override
    request = PYTHONS[PROFILE][variant]
    found = subprocess.run(["uv", "python", "find", "--no-project", request], capture_output=True, text=True)
    return found.stdout.strip() if found.returncode == 0 else request


def harness(session: nox.Session, *args: str, module: str = "gilfree") -> None:
    """Run the harness in the project's own locked environment, never in the one under test."""
    session.run("uv", "run", "--locked", "--no-dev", "python", "-m", module, *args,
                env=HARNESS_ENV, external=True, interrupt_timeout=15, terminate_timeout=5)


@contextmanager
def machine(session: nox.Session):
    """Hold the machine lock (README: one benchmark at a time): wait for it, or fail at once with --no-wait."""
    try:
        with machine_lock.held(session.name, wait="--no-wait" not in session.posargs, say=session.log):
            yield
    except machine_lock.MachineBusy as busy:
        session.error(str(busy))


def environment(session: nox.Session, interface: str, variant: str, location: str) -> str:
    """Build the environment under test at `location` from the interpreter and the lock: the interpreter and
    the app's framework and Granian, exactly as locked. Done here, under the machine lock, rather than by nox:
    nox would re-create it before the session could take the lock, under a twin session still measuring."""
    session.run_install("uv", "venv", "--clear", "--quiet", "--python", python(variant), location,
                        env=HARNESS_ENV, external=True)
    session.run_install("uv", "pip", "sync", "--require-hashes", f"locks/{PROFILE}/{interface}.txt",
                        "--python", location, external=True)
    return os.path.join(location, "bin", "python")


def study(session: nox.Session) -> None:
    """The session's variants as matrix.py lists them (both, interleaved run by run, in the two-variant
    sessions), one environment under test each, measured by the harness from its own environment."""
    interface, variants = SESSIONS[session.name].interface, SESSIONS[session.name].variants
    with machine(session):
        pythons = []
        for variant in variants:
            location = str(session.env_dir) if len(variants) == 1 else f"{session.env_dir}-{variant}"
            pythons += ["--python", f"{variant}={environment(session, interface, variant, location)}"]
        harness(session, "run", session.name, *session.posargs, *pythons,
                "--profile", PROFILE, "--lock", f"locks/{PROFILE}/{interface}.txt")


@nox.session(name="asgi-3.14", venv_backend="none")
def asgi_3_14(session: nox.Session) -> None:
    """Tables 1-2 on 3.14: FastAPI, 1 worker at c=128 and 2 at c=256, /json and /io."""
    study(session)


@nox.session(name="asgi-3.14t", venv_backend="none")
def asgi_3_14t(session: nox.Session) -> None:
    """Tables 1-2 on 3.14t: FastAPI, 1 worker at c=128 and 2 at c=256, /json and /io."""
    study(session)


@nox.session(name="wsgi-3.14", venv_backend="none")
def wsgi_3_14(session: nox.Session) -> None:
    """Tables 5-6 on 3.14: Flask with 64 blocking threads, 1 worker at c=128 and 2 at c=256."""
    study(session)


@nox.session(name="wsgi-3.14t", venv_backend="none")
def wsgi_3_14t(session: nox.Session) -> None:
    """Tables 5-6 on 3.14t: Flask with 64 blocking threads, 1 worker at c=128 and 2 at c=256."""
    study(session)


@nox.session(name="wsgi-threads-3.14", venv_backend="none")
def wsgi_threads_3_14(session: nox.Session) -> None:
    """Table 3 on 3.14: Flask, 1 worker, 1/8/32/128 blocking threads, both endpoints, c=128."""
    study(session)


@nox.session(name="wsgi-workers-3.14t", venv_backend="none")
def wsgi_workers_3_14t(session: nox.Session) -> None:
    """Table 4 on 3.14t: Flask /json, c=128, (workers, threads) = (1,2) (2,1) (1,4) (4,1) (2,2)."""
    study(session)


@nox.session(venv_backend="none")
def asgi(session: nox.Session) -> None:
    """Tables 1-2 with 3.14 and 3.14t interleaved run by run, so drift hits both alike: use with --repeat."""
    study(session)


@nox.session(venv_backend="none")
def wsgi(session: nox.Session) -> None:
    """Tables 5-6 with 3.14 and 3.14t interleaved run by run, so drift hits both alike: use with --repeat."""
    study(session)


@nox.session(venv_backend="none")
def overhead(session: nox.Session) -> None:
    """Benchmark the harness itself: per-cell overhead, the sampler's CPU, RPS with sampling on / off."""
    with machine(session):
        under_test = environment(session, "asgi", "3.14", str(session.env_dir))
        harness(session, "--python", under_test, *session.posargs, module="gilfree.overhead")


@nox.session(venv_backend="none")
def calibrate(session: nox.Session) -> None:
    """The load generator's ceiling on this machine, against nginx on loopback: results/calibration/."""
    harness(session, *session.posargs, module="gilfree.calibrate")


@nox.session(venv_backend="none")
def tables(session: nox.Session) -> None:
    """Re-render every Markdown table from the raw JSON in results/, running nothing."""
    harness(session, "tables", *session.posargs)


@nox.session(venv_backend="none")
def compare(session: nox.Session) -> None:
    """Write results/COMPARISON.md and charts: the post's figures beside yours, the ratios, the verdicts."""
    harness(session, "compare", *session.posargs)


@nox.session(venv_backend="none")
def tools(session: nox.Session) -> None:
    """Install rewrk 0.3.2 and oha 1.16.0 into tools/bin with cargo where missing, or print what to run."""
    harness(session, module="gilfree.tools")


@nox.session(venv_backend="none")
def lock(session: nox.Session) -> None:
    """Re-make locks/<profile>/ from requirements/*.in (article: as PyPI stood on the post's date)."""
    exclude_newer = ["--exclude-newer", EXCLUDE_NEWER[PROFILE]] if EXCLUDE_NEWER[PROFILE] else []
    for interface in ("asgi", "wsgi"):
        session.run("uv", "pip", "compile", f"requirements/{interface}.in", "--universal", "--generate-hashes",
                    "--python-version", "3.10", "--upgrade", *exclude_newer,
                    "-o", f"locks/{PROFILE}/{interface}.txt", external=True)


@nox.session(venv_backend="none")
def tests(session: nox.Session) -> None:
    """The test suite: unit tests, and real cells with Granian and every load generator on a GIL interpreter."""
    session.run("uv", "run", "--locked", "pytest", *session.posargs, env=HARNESS_ENV, external=True)
