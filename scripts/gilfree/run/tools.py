"""The load generators built with cargo, rewrk 0.3.2 (the post's) and oha 1.16.0 (percentiles, open loop): find
each, or install it with cargo into tools/, or say how.

`python -m gilfree.tools` (the nox session `tools`) looks for each tool on PATH and in `<project>/tools/bin`.
When one is missing and cargo is there (on PATH, or in ~/.cargo/bin where rustup puts it), it runs
`cargo install TOOL --version VERSION --locked --root <project>/tools` (tools/ is git-ignored); without cargo it
prints, in one line per tool, what to run, and exits 1. `plan()` decides, `main()` carries the plan out.
wrk and hey come from the system's packages (`apt-get install wrk hey`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from gilfree import PROJECT_ROOT


@dataclass(frozen=True)
class Tool:
    """A load generator installed from crates.io, pinned to one version (its crate and executable share a name)."""

    name: str
    version: str
    why: str


TOOLS = (
    Tool("rewrk", "0.3.2", "the post's load generator"),
    Tool("oha", "1.16.0", "latency percentiles and open-loop load (--rate)"),
)
TOOLS_BY_NAME = {tool.name: tool for tool in TOOLS}
RUSTUP = "https://rustup.rs"

FOUND = "found"  # the tool is there already: nothing to do
INSTALL = "install"  # cargo is there: run `command`
MANUAL = "manual"  # neither: the user must act, `message` says how


def default_root() -> Path:
    """The project root: this file's checkout when it holds pyproject.toml, else the working directory."""
    return PROJECT_ROOT if (PROJECT_ROOT / "pyproject.toml").is_file() else Path.cwd()


def tools_bin(root: Path) -> Path:
    """Where `cargo install --root <root>/tools` puts the tools."""
    return Path(root) / "tools" / "bin"


def install_command(tool: Tool, cargo: str, root: Path) -> list[str]:
    return [cargo, "install", tool.name, "--version", tool.version, "--locked", "--root", str(Path(root) / "tools")]


@dataclass(frozen=True)
class Plan:
    """What to do about one tool. `path` is where it is (FOUND) or will be (INSTALL)."""

    tool: Tool
    action: str
    message: str
    path: str | None = None
    command: tuple[str, ...] = ()


def plan(tool: Tool, found: str | None, cargo: str | None, root: Path) -> Plan:
    """Decide from what was found for the tool (PATH, then tools/bin) and for cargo."""
    root = Path(root)
    if found:
        message = f"{tool.name} is installed: {found}"
        if Path(found).parent == tools_bin(root):
            message += f' (to run it by hand: export PATH="{tools_bin(root)}:$PATH")'
        return Plan(tool, FOUND, message, path=found)
    if cargo:
        command = install_command(tool, cargo, root)
        return Plan(
            tool,
            INSTALL,
            f"{tool.name} is missing; installing it into {tools_bin(root)}: {' '.join(command)}",
            path=str(tools_bin(root) / tool.name),
            command=tuple(command),
        )
    return Plan(
        tool,
        MANUAL,
        f"{tool.name} {tool.version} ({tool.why}) is missing and cargo was not found: install "
        f"Rust from {RUSTUP}, then run `{' '.join(install_command(tool, 'cargo', root))}`, "
        f"or measure with --loadgen wrk or hey (apt-get install wrk hey)",
    )


def find_tool(tool: Tool, root: Path, which: Callable[..., str | None] = shutil.which) -> str | None:
    """The tool on PATH, else in tools/bin (installed there by an earlier run)."""
    path = os.environ.get("PATH", os.defpath)
    return which(tool.name, path=path) or which(tool.name, path=str(tools_bin(root)))


def find_cargo(which: Callable[..., str | None] = shutil.which) -> str | None:
    """cargo on PATH, else where rustup installs it ($CARGO_HOME/bin, ~/.cargo/bin) for a shell that has not
    sourced ~/.cargo/env."""
    cargo_home = Path(os.environ.get("CARGO_HOME") or Path.home() / ".cargo")
    return which("cargo") or which("cargo", path=str(cargo_home / "bin"))


def carry_out(
    decided: Plan, root: Path, which: Callable[..., str | None], run: Callable[..., subprocess.CompletedProcess]
) -> int:
    """Print the plan and act on it; 0 when the tool is (now) there."""
    tool = decided.tool
    if decided.action == MANUAL:
        print(decided.message, file=sys.stderr)
        return 1
    print(decided.message, flush=True)
    if decided.action == FOUND:
        return 0
    code = run(list(decided.command), check=False).returncode
    if code != 0:
        print(
            f"cargo install {tool.name} failed (exit {code}); it needs to reach crates.io: where it cannot, build "
            f"{tool.name} {tool.version} on a machine that can and copy it into {tools_bin(root)}, or use "
            f"--loadgen wrk",
            file=sys.stderr,
        )
        return code
    installed = which(tool.name, path=str(tools_bin(root)))
    if not installed:
        print(f"cargo succeeded but {decided.path} is not there", file=sys.stderr)
        return 1
    print(plan(tool, installed, None, root).message)
    return 0


def main(
    argv: Sequence[str] | None = None,
    *,
    which: Callable[..., str | None] = shutil.which,
    run: Callable[..., subprocess.CompletedProcess] = subprocess.run,
) -> int:
    """Every tool (or those named) in turn; 0 when all are (now) installed, else the first failure's status."""
    parser = argparse.ArgumentParser(prog="python -m gilfree.tools", description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=None, help="project root (default: this checkout)")
    parser.add_argument(
        "names",
        nargs="*",
        choices=[[], *TOOLS_BY_NAME],
        metavar="TOOL",
        help=f"only these ({', '.join(TOOLS_BY_NAME)}; default: all)",
    )
    args = parser.parse_args(argv)
    root = (args.root or default_root()).resolve()
    cargo = find_cargo(which)
    chosen = [TOOLS_BY_NAME[name] for name in args.names] or TOOLS
    codes = [carry_out(plan(tool, find_tool(tool, root, which), cargo, root), root, which, run) for tool in chosen]
    return next((code for code in codes if code != 0), 0)


if __name__ == "__main__":
    sys.exit(main())
