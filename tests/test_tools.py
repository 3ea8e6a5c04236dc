"""Getting rewrk 0.3.2: the decision, the message, and how main() acts on them (cargo itself is never run)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from gilfree import tools
from gilfree.loadgen import LOADGENS

ROOT = Path("/home/me/gilfree")


def executable(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\necho rewrk 0.3.2\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def test_rewrk_on_path_is_used_even_with_cargo_there():
    decided = tools.plan("/usr/local/bin/rewrk", "/usr/bin/cargo", ROOT)
    assert decided.action == tools.FOUND
    assert decided.rewrk == "/usr/local/bin/rewrk"
    assert decided.command == ()
    assert "PATH" not in decided.message


def test_rewrk_found_only_in_tools_bin_says_how_to_put_it_on_path():
    decided = tools.plan(str(ROOT / "tools" / "bin" / "rewrk"), None, ROOT)
    assert decided.action == tools.FOUND
    assert f'export PATH="{ROOT}/tools/bin:$PATH"' in decided.message


def test_with_cargo_the_pinned_locked_version_goes_into_tools():
    decided = tools.plan(None, "/root/.cargo/bin/cargo", ROOT)
    assert decided.action == tools.INSTALL
    assert decided.command == ("/root/.cargo/bin/cargo", "install", "rewrk", "--version", "0.3.2", "--locked",
                               "--root", f"{ROOT}/tools")
    assert decided.rewrk == f"{ROOT}/tools/bin/rewrk"


def test_without_cargo_the_message_gives_the_exact_commands():
    decided = tools.plan(None, None, ROOT)
    assert decided.action == tools.MANUAL
    assert decided.command == ()
    lines = [line.strip() for line in decided.message.splitlines()]
    assert f"cargo install rewrk --version 0.3.2 --locked --root {ROOT}/tools" in lines
    assert f'export PATH="{ROOT}/tools/bin:$PATH"' in lines
    assert "rustup.rs" in decided.message
    assert "--loadgen wrk" in decided.message


def test_the_loadgen_hint_and_the_installer_pin_the_same_rewrk():
    hint = LOADGENS["rewrk"].install_hint
    assert "cargo install rewrk --version 0.3.2 --locked" in hint
    assert tools.REWRK_VERSION == "0.3.2"


def test_main_finds_an_earlier_install_in_tools_bin(tmp_path, monkeypatch, capsys):
    installed = executable(tmp_path / "tools" / "bin" / "rewrk")
    monkeypatch.setenv("PATH", "")
    assert tools.main(["--root", str(tmp_path)]) == 0
    assert str(installed) in capsys.readouterr().out


def test_main_without_cargo_prints_the_message_and_fails(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", "")

    def run(*args, **kwargs):
        raise AssertionError("nothing may run without cargo")

    assert tools.main(["--root", str(tmp_path)], run=run) == 1
    err = capsys.readouterr().err
    assert f"cargo install rewrk --version 0.3.2 --locked --root {tmp_path.resolve()}/tools" in err


def test_main_runs_cargo_without_a_shell_and_checks_the_result(tmp_path, monkeypatch):
    root = tmp_path.resolve()
    cargo = executable(tmp_path / "bin" / "cargo")
    monkeypatch.setenv("PATH", str(cargo.parent))
    calls = []

    def run(command, **kwargs):
        calls.append((command, kwargs))
        executable(root / "tools" / "bin" / "rewrk")  # what cargo would have done
        return subprocess.CompletedProcess(command, 0)

    assert tools.main(["--root", str(tmp_path)], run=run) == 0
    [(command, kwargs)] = calls
    assert command == [str(cargo), "install", "rewrk", "--version", "0.3.2", "--locked", "--root", f"{root}/tools"]
    assert not kwargs.get("shell")


def test_main_passes_on_cargos_failure(tmp_path, monkeypatch, capsys):
    cargo = executable(tmp_path / "bin" / "cargo")
    monkeypatch.setenv("PATH", str(cargo.parent))
    assert tools.main(["--root", str(tmp_path)], run=lambda c, **k: subprocess.CompletedProcess(c, 101)) == 101
    assert "crates.io" in capsys.readouterr().err


def test_main_fails_when_cargo_succeeds_but_leaves_no_rewrk(tmp_path, monkeypatch):
    cargo = executable(tmp_path / "bin" / "cargo")
    monkeypatch.setenv("PATH", str(cargo.parent))
    assert tools.main(["--root", str(tmp_path)], run=lambda c, **k: subprocess.CompletedProcess(c, 0)) == 1


def test_module_entry_point(tmp_path):
    """`python -m gilfree.tools`, as the nox session calls it, with a rewrk on PATH."""
    rewrk = executable(tmp_path / "bin" / "rewrk")
    done = subprocess.run([sys.executable, "-m", "gilfree.tools", "--root", str(tmp_path)],
                          env={**os.environ, "PATH": str(rewrk.parent)}, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert f"rewrk is installed: {rewrk}" in done.stdout
