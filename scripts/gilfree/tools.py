"""The post's load generator, rewrk 0.3.2: find it, or install it with cargo into tools/, or say how.

`python -m gilfree.tools` (the nox session `tools`) looks for rewrk on PATH and in `<project>/tools/bin`.
When it is missing and cargo is on PATH, it runs
`cargo install rewrk --version 0.3.2 --locked --root <project>/tools` (tools/ is git-ignored); without
cargo it prints the commands to run and exits 1. `plan()` decides, `main()` carries the plan out.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from . import PROJECT_ROOT

REWRK_VERSION = "0.3.2"
RUSTUP = "https://rustup.rs"

FOUND = "found"      # rewrk is there already: nothing to do
INSTALL = "install"  # cargo is there: run `command`
MANUAL = "manual"    # neither: the user must act, `message` says how


def default_root() -> Path:
    """The project root: this file's checkout when it holds pyproject.toml, else the working directory."""
    return PROJECT_ROOT if (PROJECT_ROOT / "pyproject.toml").is_file() else Path.cwd()


def tools_bin(root: Path) -> Path:
    """Where `cargo install --root <root>/tools` puts rewrk."""
    return Path(root) / "tools" / "bin"


def install_command(cargo: str, root: Path) -> list[str]:
    return [cargo, "install", "rewrk", "--version", REWRK_VERSION, "--locked", "--root", str(Path(root) / "tools")]


@dataclass(frozen=True)
class Plan:
    """What to do about rewrk. `rewrk` is where it is (FOUND) or will be (INSTALL)."""

    action: str
    message: str
    rewrk: str | None = None
    command: tuple[str, ...] = ()


def plan(rewrk: str | None, cargo: str | None, root: Path) -> Plan:
    """Decide from what `shutil.which` found for rewrk (PATH, then tools/bin) and for cargo."""
    root = Path(root)
    path_hint = f'export PATH="{tools_bin(root)}:$PATH"'
    if rewrk:
        message = f"rewrk is installed: {rewrk}"
        if Path(rewrk).parent == tools_bin(root):
            message += f"\nTo run it by hand where tools/bin is not on PATH: {path_hint}"
        return Plan(FOUND, message, rewrk=rewrk)
    target = str(tools_bin(root) / "rewrk")
    if cargo:
        command = install_command(cargo, root)
        return Plan(INSTALL, f"rewrk is missing; installing it into {tools_bin(root)}: {' '.join(command)}",
                    rewrk=target, command=tuple(command))
    return Plan(MANUAL, "\n".join([
        f"rewrk {REWRK_VERSION} (the post's load generator) is not installed, and cargo is not on PATH.",
        f"Install Rust from {RUSTUP}, then run:",
        f"    {' '.join(install_command('cargo', root))}",
        f"    {path_hint}",
        "Or measure with another load generator: `--loadgen wrk` (apt-get install wrk) or `--loadgen oha`.",
    ]))


def find_rewrk(root: Path, which: Callable[..., str | None] = shutil.which) -> str | None:
    """rewrk on PATH, else in tools/bin (installed there by an earlier run)."""
    path = os.environ.get("PATH", os.defpath)
    return which("rewrk", path=path) or which("rewrk", path=str(tools_bin(root)))


def main(argv: Sequence[str] | None = None, *, which: Callable[..., str | None] = shutil.which,
         run: Callable[..., subprocess.CompletedProcess] = subprocess.run) -> int:
    """Carry out the plan; 0 when rewrk is (now) installed, non-zero otherwise."""
    parser = argparse.ArgumentParser(prog="python -m gilfree.tools", description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=None, help="project root (default: this checkout)")
    args = parser.parse_args(argv)
    root = (args.root or default_root()).resolve()

    decided = plan(find_rewrk(root, which), which("cargo"), root)
    if decided.action == FOUND:
        print(decided.message)
        return 0
    if decided.action == MANUAL:
        print(decided.message, file=sys.stderr)
        return 1

    print(decided.message, flush=True)
    code = run(list(decided.command), check=False).returncode
    if code != 0:
        print(f"cargo install failed (exit {code}). It needs to reach crates.io; where it cannot, install "
              f"rewrk {REWRK_VERSION} on another machine, or use `--loadgen wrk`.", file=sys.stderr)
        return code
    installed = which("rewrk", path=str(tools_bin(root)))
    if not installed:
        print(f"cargo succeeded but {decided.rewrk} is not there", file=sys.stderr)
        return 1
    print(plan(installed, None, root).message)
    return 0


if __name__ == "__main__":
    sys.exit(main())
