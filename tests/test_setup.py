"""Zero set-up: what the noxfile installs for a new user, and what it says where it cannot, tested up to uv's
refusal (interpreters cannot be downloaded on the machines this is tested on; the mirror below refuses anyway)."""

import os
import subprocess

import pytest
from conftest import ROOT


def test_a_missing_interpreter_is_installed_by_uv_or_said_in_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("GILFREE_PYTHON_")}
    env |= {
        "UV_PYTHON_INSTALL_DIR": str(tmp_path / "pythons"),  # uv's managed interpreters: none here
        "UV_PYTHON_INSTALL_MIRROR": "http://127.0.0.1:9/",
    }  # a download is refused, whatever the network
    if (
        subprocess.run(["uv", "python", "find", "--no-project", "3.14.0t"], env=env, capture_output=True).returncode
        == 0
    ):
        pytest.skip("this machine has a CPython 3.14.0t: the session would run instead of refusing")
    ran = subprocess.run(["nox", "-s", "asgi-3.14t"], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert ran.returncode == 1
    said = [line for line in ran.stderr.splitlines() if "aborted" in line]
    assert len(said) == 1, ran.stderr
    assert "CPython 3.14.0t is not installed here, and `uv python install 3.14.0t` failed (" in said[0]
    assert "point GILFREE_PYTHON_3_14T at a CPython 3.14.0t" in said[0]
    assert "uv venv" not in ran.stderr  # refused before any environment was built
