"""GIL audit: every extension module of an app's environment on a free-threaded build, and whether importing it
turns the GIL back on (`nox -s gil-audit -- --study FILE`, default the post's study).

    python -m gilfree.gil_audit --study FILE --python APP:VARIANT=PATH ... [--results-dir DIR] [--strict]

Each module is imported alone, in a fresh interpreter with PYTHON_GIL unset (CPython names only the first culprit
of a process), several at once up to the cores; then the app's own module, as Granian imports it, with the chain
of imports to whatever turned the GIL on. Writes GIL-AUDIT.md and gil-audit.json into the study's results folder.
Exit 0, or 1 with --strict where a module re-enables the GIL; 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from enum import Enum
from pathlib import Path
from typing import Literal, overload

from tabulate import tabulate

from gilfree.core.arguments import OneLineParser, interpreter_path, writable_dir
from gilfree.guard import guarded
from gilfree.run.interpreters import InterpreterError, gil_reenabled, version_label
from gilfree.run.server import server_env
from gilfree.study import results
from gilfree.study.schema import ARTICLE_FILE, free_threaded, override_variable
from gilfree.study.studies import App, Study, study_file

GILCHECK = Path(__file__).parent / "run" / "gilcheck.py"
IMPORT_TIMEOUT_S = 120


class Outcome(str, Enum):  # noqa: UP042
    """What importing one module alone did to the GIL."""

    KEPT_OFF = "kept off"
    REENABLED = "re-enabled"
    IMPORT_FAILED = "import failed"


@overload
def _gilcheck(python: str, app: App, mode: Literal["modules"]) -> dict | list: ...


@overload
def _gilcheck(python: str, app: App, mode: Literal["import", "app"], *args: str) -> dict: ...


def _gilcheck(python: str, app: App, mode: str, *args: str) -> dict | list:
    """Run gilcheck.py in a fresh interpreter under test, from the app's directory as Granian runs it; its JSON
    (a list for `modules`, one object for `import` and `app`), or the failure as {"error": ...}."""
    try:
        done = subprocess.run(
            [python, str(GILCHECK), mode, *args],
            capture_output=True,
            text=True,
            env=server_env(),
            timeout=IMPORT_TIMEOUT_S,
            cwd=app.directory,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"did not finish in {IMPORT_TIMEOUT_S} s"}
    except OSError as error:
        raise InterpreterError(f"cannot run the interpreter under test {python!r}: {error.strerror}") from None
    if done.returncode != 0:
        signal = f"crashed (signal {-done.returncode})" if done.returncode < 0 else f"exited {done.returncode}"
        return {"error": f"{signal}: {(done.stderr.strip().splitlines() or [''])[-1][:300]}"}
    try:
        return json.loads(done.stdout)
    except ValueError:
        return {"error": f"printed no report: {done.stdout.strip()[-300:]!r}"}


def outcome(found: dict) -> Outcome:
    if found.get("gil_enabled"):
        return Outcome.REENABLED
    return Outcome.IMPORT_FAILED if found.get("error") else Outcome.KEPT_OFF


def audit_environment(python: str, app: App, variant: str) -> dict:
    """One environment under test: each extension module imported alone, then the app's module."""
    facts = _gilcheck(python, app, "app", str(app.directory), "sys")  # a bare interpreter: is it free-threaded at all?
    if facts.get("error"):
        raise InterpreterError(f"cannot run the interpreter under test {python}: {facts['error']}")
    if not facts["free_threaded_build"]:
        raise InterpreterError(
            f"variant {variant}: {python} is not a free-threaded build; point {override_variable(variant)} at one"
        )
    modules = _gilcheck(python, app, "modules")
    if isinstance(modules, dict):
        raise InterpreterError(f"cannot list the extension modules of {python}'s environment: {modules['error']}")
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        imported = list(pool.map(lambda module: _gilcheck(python, app, "import", module["module"]), modules))
    rows = [
        {**module, "outcome": outcome(found).value, "named": found.get("culprit"), "error": found.get("error")}
        for module, found in zip(modules, imported)
    ]
    app_import = _gilcheck(python, app, "app", str(app.directory), app.target.split(":")[0])
    return {
        "app": app.name,
        "variant": variant,
        "python": python,
        "version": facts["version"],
        "modules": rows,
        "app_import": {**app_import, "outcome": outcome(app_import).value},
    }


def audit(study: Study, pythons: dict[tuple[str, str], str]) -> dict:
    return {
        "study": study.name,
        "audited_at": results.now(),
        "environments": [
            audit_environment(python, study.apps[app], variant) for (app, variant), python in pythons.items()
        ],
    }


# --- the report: sentences are made here only ---------------------------------------------------------------


def _module_row(row: dict) -> list[str]:
    gil = row["outcome"] + (f" (CPython names {row['named']})" if row["named"] not in (None, row["module"]) else "")
    if row["error"] and row["outcome"] == Outcome.IMPORT_FAILED.value:
        gil += f": {row['error']}"
    return [
        row["module"],
        f"{row['distribution']}=={row['version']}",
        ", ".join(row["wheel"]) or "unknown",
        row["built_with"] or "unknown",
        gil,
    ]


def stand_in(environment: dict) -> str:
    """Another minor version standing in for the variant, said as the tables say it."""
    label = version_label(environment["version"], free_threaded_build=True)
    return "" if label == environment["variant"] else f", standing in for {environment['variant']}"


def app_verdict(environment: dict) -> str:
    found, module = environment["app_import"], environment["app_import"].get("module", "the app")
    if found["outcome"] == Outcome.REENABLED.value:
        return gil_reenabled(found if found.get("culprit") else None)
    if found["outcome"] == Outcome.IMPORT_FAILED.value:
        return f"importing {module} failed ({found['error']}): this audit cannot tell what the app does to the GIL"
    return f"importing {module} keeps the GIL off: Granian's free-threaded build can serve it"


def markdown(report: dict) -> str:
    lines = [
        f"# GIL audit: {report['study']}",
        "",
        f"Audited {report['audited_at']}. Each extension module was imported alone in a fresh interpreter with "
        f'PYTHON_GIL unset; "re-enabled" means the GIL was on afterwards (CPython\'s warning names the module '
        f"that did it, which can be a dependency of the one imported).",
        "",
    ]
    for environment in report["environments"]:
        rows = environment["modules"]
        reenabling = [row for row in rows if row["outcome"] == Outcome.REENABLED.value]
        lines += [
            f"## {environment['app']} on {environment['variant']}",
            "",
            f"Interpreter: `{environment['python']}`, CPython {environment['version']} free-threaded"
            f"{stand_in(environment)}. {len(rows)} extension modules, "
            f"{len(reenabling)} re-enable the GIL.",
            "",
            tabulate(
                [_module_row(row) for row in rows],
                headers=["module", "distribution", "wheel", "built with", "GIL"],
                tablefmt="github",
            ),
            "",
            f"**The app:** {app_verdict(environment)}.",
            "",
        ]
    return "\n".join(lines)


def reenabled_anywhere(report: dict) -> bool:
    return any(
        found["outcome"] == Outcome.REENABLED.value
        for environment in report["environments"]
        for found in [environment["app_import"], *environment["modules"]]
    )


def write(report: dict, results_dir: Path) -> list[Path]:
    paths = [results_dir / "GIL-AUDIT.md", results_dir / "gil-audit.json"]
    results.write_text_atomic(paths[0], markdown(report))
    results.write_text_atomic(paths[1], json.dumps(report, indent=1))
    return paths


def pythons_given(study: Study, given: list[str]) -> dict[tuple[str, str], str]:
    """APP:VARIANT=PATH for each app and free-threaded variant of the study."""
    pythons = {}
    for item in given:
        name, _, path = item.partition("=")
        app, _, variant = name.partition(":")
        if app not in study.apps or not free_threaded(variant) or variant not in study.variants or not path:
            raise ValueError(
                f"--python {item!r}: give APP:VARIANT=PATH with an app of {study.path.name} "
                f"({', '.join(study.apps)}) and one of its free-threaded variants"
            )
        pythons[app, variant] = interpreter_path(path)
    return pythons


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="gilfree.gil_audit", description=__doc__.splitlines()[0])
    parser.add_argument("--study", type=study_file, metavar="FILE", default=str(ARTICLE_FILE))
    parser.add_argument("--python", action="append", required=True, metavar="APP:VARIANT=PATH")
    parser.add_argument("--results-dir", type=writable_dir, help="default: the study's")
    parser.add_argument("--strict", action="store_true", help="exit 1 where any module re-enables the GIL")
    parser.add_argument("--no-wait", action="store_true", help="nox's: refuse instead of waiting for the machine")
    args = parser.parse_args(argv)
    try:
        pythons = pythons_given(args.study, args.python)
    except ValueError as refusal:
        parser.error(str(refusal))
    try:
        results_dir = args.results_dir or writable_dir(str(args.study.results_dir))
    except argparse.ArgumentTypeError as unwritable:
        parser.error(f"{unwritable}")
    report = audit(args.study, pythons)
    for path in write(report, results_dir):
        print(path)
    for environment in report["environments"]:
        print(f"gilfree: {environment['app']} on {environment['variant']}: {app_verdict(environment)}", file=sys.stderr)
    return 1 if args.strict and reenabled_anywhere(report) else 0


if __name__ == "__main__":
    sys.exit(guarded(main))
