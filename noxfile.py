# /// script
# dependencies = ["nox>=2025.10.16"]
# [tool.nox]
# script-venv-backend = "uv"
# ///
"""The study of "The future of Python web services looks GIL-free" (2025-10-18), one session per part.

`nox` runs the whole study; `nox -s asgi-3.14t -- --duration 10s --loadgen wrk` runs one part.
Each study session builds a uv environment holding only what a deployment would hold (Granian and the
app's framework, installed from the lock), and the harness, in its own environment, drives it from outside.
Options after `--` go to the harness: --duration, --loadgen, --results-dir, --port, --keep-going, --force.
"""

import os

import nox

nox.options.default_venv_backend = "uv"
nox.options.error_on_missing_interpreters = True  # a skipped session would be a lost measurement
nox.options.sessions = [
    "asgi-3.14", "asgi-3.14t", "wsgi-3.14", "wsgi-3.14t", "wsgi-threads-3.14", "wsgi-workers-3.14t",
]

PROFILE = "article"
ROOT = os.path.dirname(os.path.abspath(__file__))
# nox points uv at the session's environment and interpreter; the harness must stay in the project's own.
HARNESS_ENV = {"UV_PROJECT_ENVIRONMENT": None, "UV_PYTHON": None, "VIRTUAL_ENV": None}


def python(variant: str) -> str:
    """uv finds (or installs) the variant, unless GILFREE_PYTHON_3_14 / GILFREE_PYTHON_3_14T names one."""
    return os.environ.get("GILFREE_PYTHON_" + variant.upper().replace(".", "_"), variant)


def harness(session: nox.Session, *args: str) -> None:
    """Run the harness in the project's own locked environment, never in the one under test."""
    session.run("uv", "run", "--locked", "--no-dev", "python", "-m", "gilfree", *args,
                env=HARNESS_ENV, external=True, interrupt_timeout=15, terminate_timeout=5)


def study(session: nox.Session, interface: str) -> None:
    session.run_install("uv", "pip", "sync", "--require-hashes", f"locks/{PROFILE}/{interface}.txt",
                        "--python", session.virtualenv.location, external=True)
    harness(session, "run", session.name, "--python", os.path.join(session.bin, "python"), *session.posargs)


@nox.session(name="asgi-3.14", python=python("3.14"))
def asgi_3_14(session: nox.Session) -> None:
    """Tables 1-2 on 3.14: FastAPI, 1 worker at c=128 and 2 at c=256, /json and /io."""
    study(session, "asgi")


@nox.session(name="asgi-3.14t", python=python("3.14t"))
def asgi_3_14t(session: nox.Session) -> None:
    """Tables 1-2 on 3.14t: FastAPI, 1 worker at c=128 and 2 at c=256, /json and /io."""
    study(session, "asgi")


@nox.session(name="wsgi-3.14", python=python("3.14"))
def wsgi_3_14(session: nox.Session) -> None:
    """Tables 5-6 on 3.14: Flask with 64 blocking threads, 1 worker at c=128 and 2 at c=256."""
    study(session, "wsgi")


@nox.session(name="wsgi-3.14t", python=python("3.14t"))
def wsgi_3_14t(session: nox.Session) -> None:
    """Tables 5-6 on 3.14t: Flask with 64 blocking threads, 1 worker at c=128 and 2 at c=256."""
    study(session, "wsgi")


@nox.session(name="wsgi-threads-3.14", python=python("3.14"))
def wsgi_threads_3_14(session: nox.Session) -> None:
    """Table 3 on 3.14: Flask, 1 worker, 1/8/32/128 blocking threads, both endpoints, c=128."""
    study(session, "wsgi")


@nox.session(name="wsgi-workers-3.14t", python=python("3.14t"))
def wsgi_workers_3_14t(session: nox.Session) -> None:
    """Table 4 on 3.14t: Flask /json, c=128, (workers, threads) = (1,2) (2,1) (1,4) (4,1) (2,2)."""
    study(session, "wsgi")


@nox.session(venv_backend="none")
def tables(session: nox.Session) -> None:
    """Re-render every Markdown table from the raw JSON in results/, running nothing."""
    harness(session, "tables", *session.posargs)


@nox.session(venv_backend="none")
def compare(session: nox.Session) -> None:
    """Write results/COMPARISON.md and charts: the post's figures beside yours, the ratios, the verdicts."""
    harness(session, "compare", *session.posargs)


@nox.session(venv_backend="none")
def tests(session: nox.Session) -> None:
    """The test suite: unit tests, and real cells with Granian and wrk on a GIL interpreter."""
    session.run("uv", "run", "--locked", "pytest", *session.posargs, env=HARNESS_ENV, external=True)
