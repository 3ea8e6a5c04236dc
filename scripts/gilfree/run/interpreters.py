"""Which interpreter really runs a variant, and whether it may stand for it.

A GIL build is never labelled 3.14t and a free-threaded one never 3.14. Another minor version may stand
in (3.12 for 3.14 where 3.14 cannot be had) with a loud warning; its rows carry the version that ran.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

from gilfree.run.server import server_env
from gilfree.study.instruments import OPTIMISATION_FLAGS
from gilfree.study.schema import free_threaded, override_variable
from gilfree.study.studies import App

PROBE = Path(__file__).with_name("probe.py")


class InterpreterError(Exception):
    """The interpreter cannot stand for the requested variant."""


# The configure flags that change how fast an interpreter runs; two variants differing in any bias every ratio.
OFF = ("no", "yes-off", "interpreter")  # --with-lto=no, --enable-experimental-jit=no|yes-off|interpreter


def optimisations(config_args: str | None) -> dict[str, bool] | None:
    """Which of PGO, LTO and the JIT a build's `./configure` arguments turned on; None when they are unknown."""
    if config_args is None:
        return None
    given = dict(arg.partition("=")[::2] for arg in shlex.split(config_args))
    return {name: flag in given and given[flag] not in OFF for name, flag in OPTIMISATION_FLAGS.items()}


@dataclass(frozen=True)
class Interpreter:
    executable: str
    version: str
    implementation: str
    free_threaded_build: bool
    gil_enabled: bool
    packages: dict[str, str]
    variant: str
    label: str  # what the tables print: the version that really ran
    config_args: str | None = None  # sysconfig's CONFIG_ARGS: how the interpreter was built
    gil_forced_off: bool = False  # PYTHON_GIL=0, as the study asks for this variant: modules that did not
    # declare free-threading support run without the GIL, at the study's own risk
    granian_auto_loop: str | None = None  # the loop Granian's --loop auto picks in this environment

    @property
    def stand_in(self) -> bool:
        return self.label != self.variant

    def as_dict(self) -> dict:
        return {**asdict(self), "stand_in": self.stand_in, "optimisations": optimisations(self.config_args)}


def probe(python: str, app: App, gil_forced_off: bool = False) -> dict:
    """Ask the interpreter under test about itself, after importing Granian and the app."""
    module_name = app.target.split(":")[0]
    try:
        completed = subprocess.run(
            [python, str(PROBE), str(app.directory), module_name],
            capture_output=True,
            text=True,
            env=server_env(gil_forced_off),
            timeout=120,
        )
    except OSError as error:
        raise InterpreterError(f"cannot run the interpreter under test {python!r}: {error.strerror}") from None
    except subprocess.TimeoutExpired:
        raise InterpreterError(f"{python} did not finish importing Granian and {module_name} in 120s") from None
    if completed.returncode != 0:
        raise InterpreterError(
            f"{python} could not import Granian and {module_name}: {completed.stderr.strip()[-400:]}"
        )
    try:
        facts = json.loads(completed.stdout)
    except ValueError:
        raise InterpreterError(f"{python} printed no probe report: {completed.stdout.strip()[-300:]!r}") from None
    if not (Path(python).parent / "granian").is_file():
        raise InterpreterError(f"{python} has Granian but no `granian` command beside it; rebuild its environment")
    return facts


def version_label(version: str, free_threaded_build: bool) -> str:
    """What a row is labelled with: the minor version that ran, and t for a free-threaded build (3.13t)."""
    return ".".join(version.split(".")[:2]) + ("t" if free_threaded_build else "")


def gil_reenabled(culprit: dict | None) -> str:
    """What turned the GIL back on, as the probe found it: the module, its distribution, the chain of imports."""
    if not culprit:
        return "the GIL is enabled after importing Granian and the app, and no module was named for it"
    owner = culprit.get("owner")
    return (
        f"importing {culprit['chain'][0]} turned the GIL back on: {culprit['culprit']}"
        + (f" (from {owner['distribution']} {owner['version']})" if owner else "")
        + " has not declared that it runs without the GIL"
        + (f", imported through {' -> '.join(culprit['chain'])}" if len(culprit["chain"]) > 2 else "")
    )


def check(variant: str, facts: dict) -> Interpreter:
    """Refuse a GIL/free-threaded mismatch; label the rows with the version that really ran."""
    wants_free_threaded = free_threaded(variant)
    fix = f"point {override_variable(variant)} at a {'free-threaded' if wants_free_threaded else 'GIL'} build"
    found = f"{facts['executable']} is CPython {facts['version']}"
    if wants_free_threaded and not facts["free_threaded_build"]:
        raise InterpreterError(f"variant {variant} needs a free-threaded build, but {found} with the GIL; {fix}")
    if not wants_free_threaded and facts["free_threaded_build"]:
        raise InterpreterError(f"variant {variant} needs a GIL build, but {found} free-threaded; {fix}")
    if wants_free_threaded and facts["gil_enabled"]:
        raise InterpreterError(
            f"variant {variant}: {gil_reenabled(facts.get('gil_culprit'))}; its rows would be "
            f"GIL numbers: run `nox -s gil-audit` to list every such module"
        )
    if "gilfree" in facts["packages"]:
        raise InterpreterError(
            f"the environment of {facts['executable']} also holds the harness (gilfree); "
            f"the environment under test must hold only Granian and the app's framework"
        )
    label = version_label(facts["version"], facts["free_threaded_build"])
    return Interpreter(
        executable=facts["executable"],
        version=facts["version"],
        implementation=facts["implementation"],
        free_threaded_build=facts["free_threaded_build"],
        gil_enabled=facts["gil_enabled"],
        packages=facts["packages"],
        variant=variant,
        label=label,
        config_args=facts.get("config_args"),
        gil_forced_off=facts.get("gil_forced_off", False),
        granian_auto_loop=facts.get("granian_auto_loop"),
    )


PIN = re.compile(r"^([A-Za-z0-9_.-]+)==([^\s;\\]+)\s*(;[^\\]*)?")


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def check_lock(lock: Path, packages: dict[str, str]) -> None:
    """The environment must hold what the lock pins: a result must not name a lock it did not come from.
    A pin under a marker (a platform or Python version) may be absent; an installed package must match a pin."""
    pins: dict[str, set[str]] = defaultdict(set)
    conditional: set[str] = set()
    for line in lock.read_text().splitlines():
        if match := PIN.match(line):
            name = _normal(match.group(1))
            pins[name].add(match.group(2))
            if match.group(3):
                conditional.add(name)
    installed = {_normal(name): version for name, version in packages.items()}
    wrong = sorted(
        f"{name} {installed[name]} (lock: {' or '.join(sorted(pins[name]))})"
        for name in pins
        if name in installed and installed[name] not in pins[name]
    )
    missing = sorted(name for name in pins if name not in installed and name not in conditional)
    if wrong or missing:
        raise InterpreterError(
            f"the environment under test does not hold {lock.parent.name}/{lock.name} as locked: "
            + "; ".join(filter(None, [", ".join(wrong), "missing " + ", ".join(missing) if missing else ""]))
            + "; rebuild it (run the nox session without -R)"
        )
