"""GIL numbers are never labelled 3.14t; a stand-in version is labelled with what really ran."""

import pytest

from gilfree.run.interpreters import InterpreterError, check, check_lock, override_variable


def facts(version="3.14.0", free_threaded=False, gil_enabled=None, packages=None):
    return {
        "executable": "/env/bin/python",
        "version": version,
        "implementation": "CPython",
        "free_threaded_build": free_threaded,
        "gil_enabled": (not free_threaded) if gil_enabled is None else gil_enabled,
        "packages": packages or {"granian": "2.5.5"},
    }


def test_the_posts_interpreters_are_labelled_as_the_post():
    assert check("3.14", facts()).label == "3.14"
    assert check("3.14t", facts(free_threaded=True)).label == "3.14t"
    assert not check("3.14t", facts(free_threaded=True)).stand_in


def test_a_gil_build_cannot_be_the_free_threaded_variant():
    with pytest.raises(InterpreterError, match="3.14t needs a free-threaded build.*GILFREE_PYTHON_3_14T"):
        check("3.14t", facts(version="3.12.1"))


def test_a_free_threaded_build_cannot_be_the_gil_variant():
    with pytest.raises(InterpreterError, match="3.14 needs a GIL build"):
        check("3.14", facts(free_threaded=True))


def test_a_gil_re_enabled_by_an_import_is_refused():
    with pytest.raises(InterpreterError, match="GIL is enabled after importing"):
        check("3.14t", facts(free_threaded=True, gil_enabled=True))


def test_another_minor_version_stands_in_under_its_own_label():
    interpreter = check("3.14", facts(version="3.12.1"))
    assert (interpreter.label, interpreter.stand_in) == ("3.12", True)
    assert check("3.14t", facts(version="3.13.5", free_threaded=True)).label == "3.13t"


def test_an_environment_holding_the_harness_is_refused():
    with pytest.raises(InterpreterError, match="only Granian and the app"):
        check("3.14", facts(packages={"granian": "2.5.5", "gilfree": "0.1.0"}))


def test_override_variable_names():
    assert (override_variable("3.14"), override_variable("3.14t")) == ("GILFREE_PYTHON_3_14", "GILFREE_PYTHON_3_14T")


LOCK = """\
anyio==4.11.0 \\
    --hash=sha256:aa
exceptiongroup==1.3.0 ; python_full_version < '3.11' \\
    --hash=sha256:bb
fastapi==0.119.0 ; python_full_version < '3.11' \\
    --hash=sha256:cc
fastapi==0.120.0 ; python_full_version >= '3.11' \\
    --hash=sha256:dd
pydantic-core==2.41.4 \\
    --hash=sha256:ee
"""


def test_an_environment_holding_its_lock_passes(tmp_path):
    lock = tmp_path / "asgi.txt"
    lock.write_text(LOCK)
    check_lock(lock, {"anyio": "4.11.0", "fastapi": "0.120.0", "pydantic_core": "2.41.4", "granian": "2.5.5"})


@pytest.mark.parametrize(
    "packages, reported",
    [
        (
            {"anyio": "4.11.0", "fastapi": "0.121.0", "pydantic_core": "2.41.4"},
            "fastapi 0.121.0 (lock: 0.119.0 or 0.120.0)",
        ),
        ({"anyio": "4.11.0", "fastapi": "0.120.0"}, "missing pydantic-core"),
    ],
)
def test_an_environment_that_is_not_its_lock_is_refused(tmp_path, packages, reported):
    lock = tmp_path / "asgi.txt"
    lock.write_text(LOCK)
    with pytest.raises(InterpreterError, match="does not hold .*asgi.txt as locked") as refusal:
        check_lock(lock, packages)
    assert reported in str(refusal.value)
