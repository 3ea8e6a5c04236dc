"""Getting rewrk 0.3.2 and oha 1.16.0: the decision, the message, and how main() acts on them (cargo itself is
never run here; the tools it installs run for real in test_integration)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from gilfree.run import tools
from gilfree.run.loadgen import LOADGENS

ROOT = Path("/home/me/gilfree")
REWRK, OHA = tools.TOOLS_BY_NAME["rewrk"], tools.TOOLS_BY_NAME["oha"]


def executable(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\necho {path.name}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


@pytest.mark.parametrize("name", ["rewrk", "oha"])
def test_the_loadgen_hint_and_the_installer_pin_the_same_version(name):
    hint = LOADGENS[name].install_hint
    assert f"cargo install {name} --version {tools.TOOLS_BY_NAME[name].version} --locked" in hint
    assert "nox -s tools" in hint


def test_a_tool_on_path_is_used_even_with_cargo_there():
    decided = tools.plan(OHA, "/usr/local/bin/oha", "/usr/bin/cargo", ROOT)
    assert decided.action == tools.FOUND
    assert decided.path == "/usr/local/bin/oha"
    assert decided.command == ()
    assert "PATH" not in decided.message


def test_a_tool_found_only_in_tools_bin_says_how_to_put_it_on_path():
    decided = tools.plan(REWRK, str(ROOT / "tools" / "bin" / "rewrk"), None, ROOT)
    assert decided.action == tools.FOUND
    assert f'export PATH="{ROOT}/tools/bin:$PATH"' in decided.message


@pytest.mark.parametrize("tool", tools.TOOLS, ids=lambda tool: tool.name)
def test_with_cargo_the_pinned_locked_version_goes_into_tools(tool):
    decided = tools.plan(tool, None, "/root/.cargo/bin/cargo", ROOT)
    assert decided.action == tools.INSTALL
    assert decided.command == (
        "/root/.cargo/bin/cargo",
        "install",
        tool.name,
        "--version",
        tool.version,
        "--locked",
        "--root",
        f"{ROOT}/tools",
    )
    assert decided.path == f"{ROOT}/tools/bin/{tool.name}"


def test_without_cargo_one_line_gives_the_exact_command():
    decided = tools.plan(OHA, None, None, ROOT)
    assert decided.action == tools.MANUAL
    assert decided.command == ()
    assert len(decided.message.splitlines()) == 1
    assert f"`cargo install oha --version 1.16.0 --locked --root {ROOT}/tools`" in decided.message
    assert "rustup.rs" in decided.message and "--loadgen wrk" in decided.message


def test_cargo_is_found_where_rustup_puts_it_when_not_on_path(tmp_path, monkeypatch):
    cargo = executable(tmp_path / "cargo-home" / "bin" / "cargo")
    monkeypatch.setenv("PATH", "")
    monkeypatch.setenv("CARGO_HOME", str(tmp_path / "cargo-home"))
    assert tools.find_cargo() == str(cargo)
    monkeypatch.setenv("CARGO_HOME", str(tmp_path / "elsewhere"))
    assert tools.find_cargo() is None


def without_cargo(monkeypatch, tmp_path, path: str = "") -> None:
    monkeypatch.setenv("PATH", path)
    monkeypatch.setenv("CARGO_HOME", str(tmp_path / "no-cargo-here"))


def test_main_finds_earlier_installs_in_tools_bin(tmp_path, monkeypatch, capsys):
    installed = [executable(tmp_path / "tools" / "bin" / tool.name) for tool in tools.TOOLS]
    without_cargo(monkeypatch, tmp_path)
    assert tools.main(["--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert all(str(path) in out for path in installed)


def test_main_without_cargo_prints_one_line_per_missing_tool_and_fails(tmp_path, monkeypatch, capsys):
    executable(tmp_path / "tools" / "bin" / "rewrk")
    without_cargo(monkeypatch, tmp_path)

    def run(*args, **kwargs):
        raise AssertionError("nothing may run without cargo")

    assert tools.main(["--root", str(tmp_path)], run=run) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert f"cargo install oha --version 1.16.0 --locked --root {tmp_path.resolve()}/tools" in line


def test_main_runs_cargo_without_a_shell_for_each_missing_tool_and_checks_the_result(tmp_path, monkeypatch):
    root = tmp_path.resolve()
    cargo = executable(tmp_path / "bin" / "cargo")
    monkeypatch.setenv("PATH", str(cargo.parent))
    calls = []

    def run(command, **kwargs):
        calls.append((command, kwargs))
        executable(root / "tools" / "bin" / command[2])  # what cargo would have done
        return subprocess.CompletedProcess(command, 0)

    assert tools.main(["--root", str(tmp_path)], run=run) == 0
    assert [command for command, _ in calls] == [
        [str(cargo), "install", tool.name, "--version", tool.version, "--locked", "--root", f"{root}/tools"]
        for tool in tools.TOOLS
    ]
    assert not any(kwargs.get("shell") for _, kwargs in calls)


def test_main_passes_on_cargos_failure_in_one_line(tmp_path, monkeypatch, capsys):
    cargo = executable(tmp_path / "bin" / "cargo")
    monkeypatch.setenv("PATH", str(cargo.parent))
    assert tools.main(["--root", str(tmp_path)], run=lambda c, **k: subprocess.CompletedProcess(c, 101)) == 101
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and all("crates.io" in line for line in lines)  # one per tool


def test_main_fails_when_cargo_succeeds_but_leaves_no_tool(tmp_path, monkeypatch):
    cargo = executable(tmp_path / "bin" / "cargo")
    monkeypatch.setenv("PATH", str(cargo.parent))
    assert tools.main(["--root", str(tmp_path)], run=lambda c, **k: subprocess.CompletedProcess(c, 0)) == 1


def test_module_entry_point(tmp_path):
    """`python -m gilfree.tools`, as the nox session calls it, with both tools on PATH."""
    found = [executable(tmp_path / "bin" / tool.name) for tool in tools.TOOLS]
    done = subprocess.run(
        [sys.executable, "-m", "gilfree.run.tools", "--root", str(tmp_path)],
        env={**os.environ, "PATH": str(tmp_path / "bin")},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert [f"{path.name} is installed: {path}" for path in found] == done.stdout.splitlines()
