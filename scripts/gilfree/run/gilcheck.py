"""Run by the interpreter under test (standard library only): which import turns the GIL back on.

CPython names only the first module that re-enables the GIL, once per process, in a RuntimeWarning raised while
that module loads; the modules whose code is running at that moment are the chain of imports that led to it.

    python gilcheck.py modules             every extension module of every installed distribution (JSON)
    python gilcheck.py import MODULE       import one module in this fresh process: is the GIL on after it?
    python gilcheck.py app APP_DIR MODULE  import the app's module as Granian does, with the chain to a culprit
"""

import importlib
import importlib.machinery
import importlib.metadata
import io
import json
import os
import platform
import re
import sys
import sysconfig
import warnings

# CPython: "The global interpreter lock (GIL) has been enabled to load module 'h3._cy.cells', which has not ..."
REENABLED = re.compile(r"GIL\) has been enabled to load module '([^']+)'")
# What built an extension, by the names its binary keeps (checked in this order: PyO3 binaries may embed others).
BUILDERS = (("PyO3", b"pyo3"), ("nanobind", b"nanobind"), ("pybind11", b"pybind11"), ("Cython", b"__pyx_"))


def leave_harness_path() -> None:
    """Run as a script, this folder is first on sys.path: the harness's own modules must not shadow the app's."""
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or ".") != here]


def gil_enabled() -> bool:
    return sys._is_gil_enabled() if hasattr(sys, "_is_gil_enabled") else True


def built_with(path) -> str | None:
    try:
        binary = path.read_bytes()
    except OSError:
        return None
    return next((name for name, marker in BUILDERS if marker in binary), None)


def wheel_tags(dist) -> list[str]:
    return [
        line.split(":", 1)[1].strip()
        for line in (dist.read_text("WHEEL") or "").splitlines()
        if line.startswith("Tag:")
    ]


def extension_modules() -> list[dict]:
    """Every extension module a distribution's RECORD lists, by the interpreter's own extension suffixes."""
    suffixes = sorted(importlib.machinery.EXTENSION_SUFFIXES, key=len, reverse=True)
    found = []
    for dist in importlib.metadata.distributions():
        for file in dist.files or ():
            name = str(file)
            suffix = next((s for s in suffixes if name.endswith(s)), None)
            # a bundled shared library (scipy.libs/libopenblas-x.so) is no module: its path is no dotted name
            if suffix is None or not all(part.isidentifier() for part in name[: -len(suffix)].split("/")):
                continue
            found.append(
                {
                    "module": name[: -len(suffix)].replace("/", "."),
                    "distribution": dist.metadata["Name"],
                    "version": dist.version,
                    "wheel": wheel_tags(dist),
                    "built_with": built_with(file.locate()),
                }
            )
    return sorted(found, key=lambda module: module["module"])


def owner(module_name: str) -> dict | None:
    """The distribution whose RECORD holds the module's file."""
    module = sys.modules.get(module_name)
    path = getattr(module, "__file__", None)
    if path is None:
        return None
    for dist in importlib.metadata.distributions():
        if any(file.name == os.path.basename(path) and same_file(file.locate(), path) for file in dist.files or ()):
            return {"distribution": dist.metadata["Name"], "version": dist.version}
    return None


def same_file(one, other) -> bool:
    try:
        return os.path.samefile(one, other)
    except OSError:
        return False


def traced_import(module_name: str) -> dict:
    """Import a module; where the GIL comes on, the module CPython names and the modules whose code was running
    then (the outermost first), read off the stack when the warning is raised."""
    seen = {"culprit": None, "chain": None}

    def on_warning(message, category, filename, lineno, file=None, line=None):
        found = REENABLED.search(str(message))
        if found and seen["culprit"] is None:
            frames, frame = [], sys._getframe(1)
            while frame is not None:
                name = frame.f_globals.get("__name__")
                if (
                    frame.f_code.co_name == "<module>"
                    and name not in (None, "__main__")
                    and not frame.f_code.co_filename.startswith("<frozen")
                ):
                    frames.append(name)
                frame = frame.f_back
            seen["culprit"], seen["chain"] = found.group(1), [*reversed(frames), found.group(1)]

    warnings.simplefilter("always", RuntimeWarning)
    warnings.showwarning = on_warning
    error = None
    try:
        importlib.import_module(module_name)
    except BaseException as failure:  # an import that fails is a finding, not a crash of the audit
        error = f"{type(failure).__name__}: {failure}"
    culprit = seen["culprit"]
    return {
        "module": module_name,
        "gil_enabled": gil_enabled(),
        "culprit": culprit,
        "chain": seen["chain"],
        "owner": owner(culprit) if culprit else None,
        "error": error,
        "free_threaded_build": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
        "version": platform.python_version(),
    }


def report_only_json() -> "io.TextIOWrapper":
    """Standard output for the JSON report alone: whatever the imported code prints goes to standard error."""
    report = os.fdopen(os.dup(1), "w")
    sys.stdout.flush()
    os.dup2(2, 1)
    return report


def main(argv: list[str]) -> None:
    leave_harness_path()
    report = report_only_json()
    found: list[dict] | dict
    if argv[:1] == ["modules"]:
        found = extension_modules()
    elif argv[:1] == ["import"]:
        found = traced_import(argv[1])
    elif argv[:1] == ["app"]:
        sys.path.insert(0, argv[1])
        found = traced_import(argv[2])
    else:
        sys.exit(__doc__)
    report.write(json.dumps(found))
    report.flush()


if __name__ == "__main__":
    main(sys.argv[1:])
