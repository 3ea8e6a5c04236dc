"""Raw results: one JSON file per cell, written atomically. This is the contract between running and
rendering: tables are always rendered from these files, never from memory.
"""

from __future__ import annotations

import json
import os
import platform
from datetime import datetime, timezone
from functools import cache
from pathlib import Path
from typing import Callable

import psutil

from .matrix import Cell

SCHEMA = 2  # 2: every run kept under "runs"; load and resources are their medians


# Settings that do not change what a run measures: runs differing only in these are runs of one measurement.
NOT_MEASURED = ("port", "repeat")


def measured_settings(settings: dict) -> dict:
    return {name: value for name, value in settings.items() if name not in NOT_MEASURED}


def cell_path(results_dir: Path, cell: Cell) -> Path:
    return results_dir / "raw" / cell.table / f"{cell.key}.json"


def log_path(results_dir: Path, cell: Cell, run: int) -> Path:
    return results_dir / "logs" / cell.table / f"{cell.key}.run{run}.log"


def set_aside(path: Path) -> Path:
    """Move a stored result out of the tables' way, keeping it: raw/<table>/superseded/<key>.<time>.json."""
    target = path.parent / "superseded" / f"{path.stem}.{datetime.now(timezone.utc):%Y%m%dT%H%M%S%f}.json"
    target.parent.mkdir(exist_ok=True)
    os.replace(path, target)
    return target


def replace_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Let `write` fill a temporary file in the same folder, then rename it over `path`: a reader never sees
    half a file, and a crash leaves at most a hidden temporary file, never a truncated result."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(temporary)
        with open(temporary, "rb") as written:
            os.fsync(written.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> None:
    replace_atomically(path, lambda temporary: temporary.write_text(text))


def write_atomic(path: Path, record: dict) -> None:
    """A result record, as the JSON that is the contract between running and rendering."""
    write_text_atomic(path, json.dumps(record, indent=2, sort_keys=True) + "\n")


def load(results_dir: Path) -> dict[tuple[str, str], dict]:
    """Every stored record, by (table, cell key). Unreadable files are reported, not skipped silently."""
    records = {}
    for path in sorted((results_dir / "raw").glob("*/*.json")):
        try:
            record = json.loads(path.read_text())
            cell = Cell(**record["cell"])
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"{path} is not a gilfree result ({error}); move it away and re-run that cell")
        if record.get("schema") != SCHEMA:
            raise ValueError(f"{path} has result schema {record.get('schema')}, this harness reads {SCHEMA}; "
                             f"move it away and re-run that cell")
        records[(cell.table, cell.key)] = record
    return records


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


@cache
def machine() -> dict:
    """The machine this process runs on, read once."""
    return {
        "cpu_model": _cpu_model(),
        "logical_cores": psutil.cpu_count(logical=True),
        "physical_cores": psutil.cpu_count(logical=False),
        "memory_bytes": psutil.virtual_memory().total,
        "system": platform.system(),
        "kernel": platform.release(),
        "hostname": platform.node(),
    }
