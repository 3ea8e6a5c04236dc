"""Bad input exits 2 with one line naming the bad value and the fix, before anything starts."""

import os
import subprocess
import sys

import pytest
from conftest import ROOT


def gilfree(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "gilfree", *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=60
    )


@pytest.mark.parametrize(
    "args, named",
    [
        (["run", "asgi-3.15", "--python", "python3"], "'asgi-3.15'"),
        (["run", "asgi-3.14", "--python", "python3", "--duration", "abc"], "'abc'"),
        (["run", "asgi-3.14", "--python", "python3", "--duration", "0s"], "'0s'"),
        (["run", "asgi-3.14", "--python", "python3", "--duration", "-5s"], "'-5s'"),
        (["run", "asgi-3.14", "--python", "python3", "--loadgen", "ab"], "'ab'"),
        (["run", "asgi-3.14", "--python", "python3", "--port", "0"], "'0'"),
        (["run", "asgi-3.14", "--python", "python3", "--repeat", "0"], "'0'"),
        (["run", "asgi-3.14", "--python", "python3", "--loadgen", "oha", "--rate", "0"], "'0'"),
        (["run", "asgi-3.14", "--python", "python3", "--loadgen", "oha", "--rate", "-100"], "'-100'"),
        (["run", "asgi-3.14", "--python", "python3", "--loadgen", "oha", "--rate", "nan"], "'nan'"),
        (["run", "asgi-3.14", "--python", "python3", "--loadgen", "oha", "--rate", "fast"], "'fast'"),
        (["run", "asgi-3.14", "--python", "python3", "--rate", "5000"], "--loadgen oha"),
        (["run", "asgi-3.14", "--python", "python3", "--loadgen", "wrk", "--rate", "5000"], "wrk runs a closed loop"),
        (["run", "asgi-3.14", "--python", "python3", "--pin", str(os.cpu_count())], f"--pin {os.cpu_count()}"),
        (["run", "asgi", "--python", "python3"], "--python 3.14=PATH --python 3.14t=PATH"),
        (["run", "asgi-3.14", "--python", "python3", "--table", "wsgi-io"], "'wsgi-io'"),
        (["run", "asgi-3.14", "--python", "python3", "--table", "asgi-xml"], "'asgi-xml'"),
        (["tables", "--results-dir", "/dev/null/results"], "'/dev/null/results'"),
        (["frobnicate"], "'frobnicate'"),
    ],
)
def test_bad_input_is_one_line_naming_the_value(args, named):
    completed = gilfree(*args)
    assert completed.returncode == 2
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gilfree: error:") and named in lines[0]


def test_missing_load_generator_is_refused_before_any_server(tmp_path):
    env = {**os.environ, "PATH": str(tmp_path)}  # no rewrk here
    completed = gilfree(
        "run",
        "asgi-3.14",
        "--python",
        "/nonexistent/python",
        "--loadgen",
        "rewrk",
        "--results-dir",
        str(tmp_path / "results"),
        env=env,
    )
    assert completed.returncode == 2
    assert "'rewrk' is not on PATH" in completed.stderr and "cargo install rewrk --version 0.3.2" in completed.stderr
    assert not (tmp_path / "results" / "raw").exists()
