"""The GIL on a real free-threaded CPython (3.13.5t, built by tests/build-cpython): the audit names the module that
turns it back on, a free-threaded cell of an app that imports it fails in one line, a study may force the GIL off
and then says so everywhere, and the post's apps run for real on 3.13 and 3.13t.

Two tiny C extensions are compiled here against the real 3.13t's headers and installed as wheels: one with
single-phase init and no GIL declaration (CPython re-enables the GIL to load it), one declaring Py_MOD_GIL_NOT_USED.
"""

import json
import subprocess
import sys
import zipfile

import pytest
from conftest import POST_APPS_TOML, REAL_313_HEAD, ROOT, build_environment, free_port

LEGACY = """#include <Python.h>
static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, "legacy_ext", NULL, -1, NULL};
PyMODINIT_FUNC PyInit_legacy_ext(void) { return PyModule_Create(&def); }
"""
DECLARED = """#include <Python.h>
static PyModuleDef_Slot slots[] = {{Py_mod_gil, Py_MOD_GIL_NOT_USED}, {0, NULL}};
static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, "declared_ext", NULL, 0, NULL, slots};
PyMODINIT_FUNC PyInit_declared_ext(void) { return PyModuleDef_Init(&def); }
"""
APP = """import helper  # the app's own pure-Python module, which imports the extension
from fastapi import FastAPI

app = FastAPI()


@app.get("/json")
async def json_endpoint():
    return {"message": "Hello, World!"}
"""
STUDY = """title = "An app with an extension that keeps the GIL"
variants = ["3.13t"]
duration = "1s"
results = "out"
locks = "locks"
{forced}
[apps.svc]
interface = "asgi"
target = "impl_svc:app"
directory = "svc"
requirements = "svc/requirements.in"
endpoints.json = {{ json = {{ message = "Hello, World!" }} }}

[tables.svc]
number = 1
title = "svc /json"
columns = ["python", "workers", "rps", "cpu", "ram"]
cell = {{ app = "svc", endpoint = "json", loop = "asyncio" }}
rows = [{{ variant = "3.13t", workers = 1, concurrency = 16 }}]
"""


def headers_and_suffix(python: str) -> list[str]:
    """Where the interpreter's C headers are, and the file suffix it gives extension modules."""
    code = "import sysconfig; print(sysconfig.get_path('include')); print(sysconfig.get_config_var('EXT_SUFFIX'))"
    return subprocess.run([python, "-c", code], capture_output=True, text=True, check=True).stdout.split()


def extension_wheel(python: str, folder, module: str, source: str, distribution: str):
    """A real wheel of one C extension, compiled against the interpreter's own headers."""
    include, suffix = headers_and_suffix(python)
    built = folder / f"{module}{suffix}"
    (folder / f"{module}.c").write_text(source)
    subprocess.run(
        ["cc", "-shared", "-fPIC", f"-I{include}", "-o", str(built), str(folder / f"{module}.c")], check=True
    )
    info = f"{distribution.replace('-', '_')}-1.0.dist-info"
    wheel = folder / f"{distribution.replace('-', '_')}-1.0-cp313-cp313t-linux_x86_64.whl"
    files = {
        built.name: built.read_bytes(),
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {distribution}\nVersion: 1.0\n".encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: gilfree-tests\nRoot-Is-Purelib: false\n"
        b"Tag: cp313-cp313t-linux_x86_64\n",
    }
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
        archive.writestr(f"{info}/RECORD", "".join(f"{name},,\n" for name in [*files, f"{info}/RECORD"]))
    return wheel


@pytest.fixture(scope="module")
def service(real_pythons, tmp_path_factory):
    """A free-threaded environment from the post's ASGI lock plus both extensions, and an app importing the legacy
    one through a module of its own; returns (study folder, interpreter)."""
    folder = tmp_path_factory.mktemp("svc-study")
    python = build_environment(folder / "env", real_pythons["3.13t"], "article/asgi.txt")
    wheels = [
        extension_wheel(python, folder, "legacy_ext", LEGACY, "legacy-dist"),
        extension_wheel(python, folder, "declared_ext", DECLARED, "declared-dist"),
    ]
    subprocess.run(["uv", "pip", "install", "-q", "--python", python, *map(str, wheels)], check=True)
    (folder / "svc").mkdir()
    (folder / "svc" / "impl_svc.py").write_text(APP)
    (folder / "svc" / "helper.py").write_text("import legacy_ext  # keeps the GIL: it declares nothing\n")
    (folder / "svc" / "requirements.in").write_text("granian==2.5.5\nfastapi\n")
    (folder / "locks" / "default").mkdir(parents=True)
    (folder / "locks" / "default" / "svc.txt").write_text((ROOT / "locks" / "article" / "asgi.txt").read_text())
    return folder, python


def study_file(folder, name: str, forced: bool):
    path = folder / f"{name}.toml"
    path.write_text(STUDY.format(forced='gil_forced_off = ["3.13t"]\n' if forced else ""))
    return path


def harness(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=ROOT, timeout=600)


def test_the_audit_names_the_module_that_keeps_the_gil_and_the_chain_from_the_app(service, tmp_path):
    folder, python = service
    done = harness(
        "gilfree.gil_audit",
        "--study",
        str(study_file(folder, "audited", False)),
        "--python",
        f"svc:3.13t={python}",
        "--results-dir",
        str(tmp_path),
    )
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "gil-audit.json").read_text())
    modules = {row["module"]: row for row in report["environments"][0]["modules"]}
    assert (modules["legacy_ext"]["outcome"], modules["legacy_ext"]["named"]) == ("re-enabled", "legacy_ext")
    assert (modules["legacy_ext"]["distribution"], modules["legacy_ext"]["version"]) == ("legacy-dist", "1.0")
    assert modules["legacy_ext"]["wheel"] == ["cp313-cp313t-linux_x86_64"]
    assert modules["declared_ext"]["outcome"] == "kept off"
    assert modules["granian._granian"]["outcome"] == "kept off"  # Granian's cp313t wheel declares its support
    assert modules["granian._granian"]["built_with"] == "PyO3"
    assert modules["pydantic_core._pydantic_core"]["distribution"] == "pydantic_core"  # as its METADATA names it
    app = report["environments"][0]["app_import"]
    assert (app["outcome"], app["chain"]) == ("re-enabled", ["impl_svc", "helper", "legacy_ext"])
    assert app["owner"] == {"distribution": "legacy-dist", "version": "1.0"}
    markdown = (tmp_path / "GIL-AUDIT.md").read_text()
    assert "| legacy_ext " in markdown and "legacy-dist==1.0" in markdown
    assert "imported through impl_svc -> helper -> legacy_ext" in markdown
    strict = harness(
        "gilfree.gil_audit",
        "--study",
        str(study_file(folder, "audited", False)),
        "--python",
        f"svc:3.13t={python}",
        "--results-dir",
        str(tmp_path),
        "--strict",
    )
    assert strict.returncode == 1


def test_a_free_threaded_cell_of_that_app_fails_in_one_line_before_any_load(service, tmp_path):
    folder, python = service
    done = harness(
        "gilfree",
        "run",
        "gil-kept",
        "--study",
        str(study_file(folder, "gil-kept", False)),
        "--python",
        python,
        "--loadgen",
        "wrk",
        "--port",
        str(free_port()),
        "--results-dir",
        str(tmp_path),
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert "legacy_ext (from legacy-dist 1.0) has not declared" in done.stderr
    assert "imported through impl_svc -> helper -> legacy_ext" in done.stderr
    assert "nox -s gil-audit" in done.stderr
    assert not (tmp_path / "raw").exists()  # nothing was measured


def test_with_the_gil_forced_off_it_runs_and_every_output_says_so(service, tmp_path):
    folder, python = service
    done = harness(
        "gilfree",
        "run",
        "gil-forced",
        "--study",
        str(study_file(folder, "gil-forced", True)),
        "--python",
        python,
        "--loadgen",
        "wrk",
        "--port",
        str(free_port()),
        "--results-dir",
        str(tmp_path),
    )
    assert done.returncode == 0, done.stderr
    assert "GIL forced off" in done.stderr
    [record] = [json.loads(path.read_text()) for path in (tmp_path / "raw").glob("*/*.json")]
    assert record["status"] == "ok" and record["load"]["rps"] > 0
    assert record["interpreter"]["gil_forced_off"] and not record["interpreter"]["gil_enabled"]
    assert any(warning["kind"] == "gil_forced_off" for warning in record["warnings"])
    assert "| 3.13t (GIL forced off) |" in (tmp_path / "TABLES.md").read_text()


def test_a_study_refuses_to_force_the_gil_off_on_a_gil_variant(tmp_path):
    (tmp_path / "svc").mkdir()
    path = tmp_path / "bad.toml"
    path.write_text(STUDY.format(forced='gil_forced_off = ["3.13"]\n'))
    done = harness("gilfree", "tables", "--study", str(path))
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"gilfree: error: argument --study: {path}: gil_forced_off: '3.13' is not one of "
        f"the study's free-threaded variants (3.13t); only a free-threaded build can run "
        f"without the GIL"
    )


POST_APPS_ON_313 = (
    'title = "The post\'s apps on the real 3.13 and 3.13t"\n'
    + REAL_313_HEAD
    + POST_APPS_TOML["asgi"]
    + POST_APPS_TOML["wsgi"]
    + """
[tables.asgi]
number = 1
title = "ASGI /json"
columns = ["python", "workers", "rps", "cpu", "ram"]
cell = {{ app = "asgi", endpoint = "json", loop = "asyncio", workers = 2, concurrency = 32 }}
grid = {{ variant = ["3.13", "3.13t"] }}

[tables.wsgi]
number = 2
title = "WSGI /json"
columns = ["python", "workers", "threads", "rps", "cpu", "ram"]
cell = {{ app = "wsgi", endpoint = "json", workers = 2, blocking_threads = 8, concurrency = 32 }}
grid = {{ variant = ["3.13", "3.13t"] }}
"""
)


def test_the_posts_apps_run_on_the_real_313_and_313t_and_the_313t_rows_kept_the_gil_off(real_environments, tmp_path):
    study = tmp_path / "post-on-313.toml"
    study.write_text(POST_APPS_ON_313.format(root=ROOT))
    pythons = [f"--python={app}:{variant}={python}" for (app, variant), python in real_environments.items()]
    done = harness(
        "gilfree", "run", "post-on-313", "--study", str(study), *pythons, "--loadgen", "wrk", "--port", str(free_port())
    )
    assert done.returncode == 0, done.stderr
    records = {
        (r["cell"]["app"], r["cell"]["variant"]): r
        for r in (json.loads(p.read_text()) for p in (tmp_path / "out" / "raw").glob("*/*.json"))
    }
    assert len(records) == 4 and all(r["status"] == "ok" for r in records.values())
    for app in ("asgi", "wsgi"):
        gil, threaded = records[app, "3.13"]["interpreter"], records[app, "3.13t"]["interpreter"]
        assert (threaded["label"], threaded["stand_in"], threaded["version"]) == ("3.13t", False, "3.13.5")
        assert threaded["free_threaded_build"] and not threaded["gil_enabled"]  # after Granian and the app
        assert "--disable-gil" in threaded["config_args"] and "--disable-gil" not in gil["config_args"]
        assert gil["optimisations"] == threaded["optimisations"]  # like for like: the same tarball and flags
        # Granian's two workers: threads of one process on 3.13t, processes beside the main one on 3.13
        assert records[app, "3.13t"]["resources"]["peak_processes"] == 1
        assert records[app, "3.13"]["resources"]["peak_processes"] >= 3
        assert "gil_forced_off" not in [warning["kind"] for warning in records[app, "3.13t"]["warnings"]]
