"""Raw results: one JSON file per cell, written atomically. This is the contract between running and
rendering: tables are always rendered from these files, never from memory.
"""

from __future__ import annotations

import errno
import json
import os
import platform
import shutil
from collections.abc import Callable
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import Enum
from functools import cache
from pathlib import Path

import psutil
from pydantic import ValidationError

from gilfree.core import stats
from gilfree.core.warnings import from_sentence
from gilfree.study import summary
from gilfree.study.record import Interpreter, Machine, Record
from gilfree.study.studies import Cell
from gilfree.study.summary import succeeded

SCHEMA = 6  # 2: every run kept under "runs"; load and resources are their medians. 3 to 6: see MIGRATIONS
OLDEST_READABLE = 2


def _from_2(record: dict) -> dict:
    """Schema 2 (the shared real data among others) lacks what schema 3 added; each addition is unknown there.
    Where the load ran is known: schema 2 always bound 127.0.0.1 and ran the load on the server's machine."""
    for load in [record.get("load"), *(run.get("load") for run in record.get("runs", []))]:
        if load is not None:
            load.setdefault("latency_percentiles_ms", None)  # not recorded then
            load.setdefault("offered_rps", None)  # every run then was closed-loop
    if record.get("settings") is not None:
        record["settings"].setdefault("rate_rps", None)
        record["settings"].setdefault("bind", "127.0.0.1")
        record["settings"].setdefault("loadgen_host", None)
    if isinstance(record.get("load_generator"), dict):
        record["load_generator"].setdefault("host", None)
        record["load_generator"].setdefault("machine", None)
    for run in [record, *record.get("runs", []), *record.get("failed_runs", [])]:
        if run.get("resources"):
            run["resources"].setdefault("rss_growth_last_half", None)
            run["resources"].setdefault("rss_growth_bytes_per_s", None)
    for run in [*record.get("runs", []), *record.get("failed_runs", [])]:
        run.setdefault("timeline", None)  # the sampler's series per run
    if record.get("interpreter") is not None:
        record["interpreter"].setdefault("config_args", None)  # how it was built: not recorded before schema 3
        record["interpreter"].setdefault("optimisations", None)
    return record


def _from_3(record: dict) -> dict:
    """Schema 4 came with study files: a record names its study, and its cell its app and every Granian setting.
    Every older record is of the post's study, whose apps are named like their interfaces and whose ASGI
    commands all passed --loop asyncio; no other setting was ever given."""
    record.setdefault("study", "article")
    cell = record.get("cell")
    if isinstance(cell, dict):
        cell.setdefault("app", cell.get("interface"))
        cell.setdefault("loop", "asyncio" if cell.get("interface") == "asgi" else None)
        for name, unset in (("runtime_mode", None), ("runtime_threads", None), ("flags", []), ("cpus", None)):
            cell.setdefault(name, unset)
    return record


def _from_4(record: dict) -> dict:
    """Schema 5 stores warnings as objects with a kind; schema 4 stored sentences, read back into their kinds."""
    for holder in [record, *record.get("runs", []), *record.get("failed_runs", [])]:
        holder["warnings"] = [
            warning if isinstance(warning, dict) else from_sentence(warning).as_dict()
            for warning in holder.get("warnings", [])
        ]
    return record


def _from_5(record: dict) -> dict:
    """Schema 6 keeps each figure's relative standard deviation in its spread, and the cell's outlier runs and
    drift (stability), both derived from the runs a record of schema 5 holds. Its stored warnings stay as they
    were (the range rule's rps_varied among them): they are what that harness found."""
    ok = ok_runs(record)
    for figure, spread in (record.get("spread") or {}).items() if ok else ():
        spread.setdefault("rsd", stats.relative_sd(summary.figure_values(ok, figure)))
    record.setdefault("stability", stats.stability(summary.figure_values(ok, "rps")) if ok else None)
    return record


# How a record of schema N becomes one of N + 1, in memory only: a stored file is never rewritten (pyperf's way).
MIGRATIONS = {2: _from_2, 3: _from_3, 4: _from_4, 5: _from_5}


def migrate(record: dict, path: Path) -> dict:
    """A record of any readable schema as one of today's; a newer or older one is refused, naming the file."""
    schema = record.get("schema")
    if not isinstance(schema, int) or not OLDEST_READABLE <= schema <= SCHEMA:
        raise ValueError(
            f"{path} has result schema {schema!r}, this harness reads {OLDEST_READABLE} to {SCHEMA}; "
            f"move it away and re-run that cell"
        )
    for version in range(schema, SCHEMA):
        record = MIGRATIONS[version](record)
    record["schema"] = SCHEMA
    return record


def builds_differ(interpreter: Interpreter, other: Interpreter) -> bool:
    """Two recorded interpreters built with other optimisations (PGO, LTO, JIT): a ratio between them measures
    the builds as much as the interpreters. Unknown on either side (older records) is not a difference."""
    flags = [interpreter.optimisations, other.optimisations]
    return None not in flags and flags[0] != flags[1]


def ok_runs(record: dict | None) -> list[dict]:
    """The stored runs of a record that measured, for the runner and the migrations, which work on the JSON
    (Record.ok_runs is the typed record's)."""
    return [run for run in (record or {}).get("runs") or [] if succeeded(run)]


def _time(stamp: str | None) -> datetime | None:
    return datetime.fromisoformat(stamp) if stamp else None


Span = tuple[str | None, str | None]  # when a run started and finished (results.now); None: not recorded


def span(run: dict) -> Span:
    """A stored run's span (Run.span is the typed run's)."""
    return run.get("started_at"), run.get("finished_at")


def paired(over: list[Span], under: list[Span]) -> bool:
    """Whether run i of one cell and run i of the other were made in the same round (the interleaved sessions):
    both of round i ended before either of round i + 1 began."""
    if len(over) != len(under):
        return False
    for runs in zip(zip(over, under), zip(over[1:], under[1:])):
        ended = [_time(finished) for _, finished in runs[0]]
        began = [_time(started) for started, _ in runs[1]]
        if None in ended + began or max(ended) > min(began):
            return False
    return True


# Settings that do not change what a run measures: runs differing only in these are runs of one measurement.
NOT_MEASURED = ("port", "repeat")


def measured_settings(settings: dict) -> dict:
    return {name: value for name, value in settings.items() if name not in NOT_MEASURED}


def conditions(record: Record) -> dict:
    """How a row was measured, apart from the server under test: rows whose conditions differ were not measured
    alike, so neither a ratio nor a table may put them side by side. Port and run count are left out, since
    neither changes what a run measures; an older record without a field counts it as None."""
    settings = measured_settings(record.settings.model_dump(exclude_unset=True))
    environment = record.environment or {}
    generator = record.load_generator.model_dump(exclude_unset=True) if record.load_generator else None
    return {
        **settings,
        "profile": environment.get("profile"),
        "lock": environment.get("lock_sha256"),
        "machine": record.machine.identity if record.machine else None,
        "load_generator": generator,
    }


def condition_differences(records: list[Record]) -> list[tuple[str, list]]:
    """Each condition that differs between the records, with its values in the records' order, each once."""
    measured = [conditions(record) for record in records]
    differences = []
    for name in dict.fromkeys(name for each in measured for name in each):
        values = {json.dumps(each.get(name), sort_keys=True): each.get(name) for each in measured}
        if len(values) > 1:
            differences.append((name, list(values.values())))
    return differences


def cell_path(results_dir: Path, cell: Cell) -> Path:
    return results_dir / "raw" / cell.table / f"{cell.key}.json"


def new_log(results_dir: Path, cell: Cell) -> Path:
    """A new, empty log file for the cell's next run: logs/<table>/<key>.run<N>.log, N past every log that
    exists, so a log is never overwritten and every stored record (set-aside ones too) keeps its own."""
    folder = results_dir / "logs" / cell.table
    numbers = [
        int(suffix)
        for log in folder.glob(f"{cell.key}.run*.log")
        if (suffix := log.name[len(cell.key) + 4 : -4]).isdigit()
    ]
    number = max(numbers, default=0) + 1
    while True:
        path = folder / f"{cell.key}.run{number}.log"
        try:
            with full_disk_refused(path):
                folder.mkdir(parents=True, exist_ok=True)
                with open(path, "xb"):
                    return path
        except FileExistsError:
            number += 1


class SetAside(Enum):
    """Why a stored result was moved out of the tables' way."""

    FORCED = "--force"
    OTHER_CONDITIONS = "it was measured under other conditions"
    UNREADABLE = "it cannot be read"

    @property
    def folder(self) -> str:
        return "unreadable" if self is SetAside.UNREADABLE else "superseded"


UNREADABLE = object()  # read_record's answer for a file that is there but is not a readable record


def read_record(path: Path) -> dict | None | object:
    """A stored record as stored (not migrated), None if there is none, UNREADABLE if it cannot be read
    (truncated, not JSON, not a record)."""
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return UNREADABLE
    return record if isinstance(record, dict) and isinstance(record.get("runs"), list) else UNREADABLE


def set_aside(path: Path, reason: SetAside = SetAside.OTHER_CONDITIONS) -> Path:
    """Move a stored result out of the tables' way, keeping it: raw/<table>/superseded/<key>.<time>.json, or
    raw/<table>/unreadable/ for one that cannot be read."""
    target = path.parent / reason.folder / f"{path.stem}.{datetime.now(UTC):%Y%m%dT%H%M%S%f}.json"
    target.parent.mkdir(exist_ok=True)
    os.replace(path, target)
    return target


class StorageFull(Exception):
    """The results' file system is full (or over quota): the file named could not be written. `unstored`
    counts the measured runs lost with it; every file stored before is intact (writes are atomic)."""

    def __init__(self, path: Path, unstored: int = 0):
        super().__init__(path)
        self.path = path
        self.unstored = unstored

    def __str__(self) -> str:
        lost = f"{self.unstored} measured run(s) could not be stored" if self.unstored else "no measured run was lost"
        return (
            f"no space left on the device for {self.path}: {lost}; the files stored before are intact. "
            f"Free some space (or choose another --results-dir) and run it again: stored runs are kept"
        )


FULL = (errno.ENOSPC, errno.EDQUOT)


@contextmanager
def full_disk_refused(path: Path):
    """A write that fails because the file system is full (or over quota) raises StorageFull, naming `path`."""
    try:
        yield
    except OSError as error:
        if error.errno in FULL:
            raise StorageFull(Path(error.filename or path)) from None
        raise


# What a session writes, at most, per run (its share of the record, rewritten whole after every run, and its
# log) and once (the tables), measured on real runs with some headroom: see docs/troubleshooting.md.
RUN_BYTES = 16 * 1024
TABLES_BYTES = 64 * 1024


def ensure_space(results_dir: Path, runs: int) -> None:
    """Refuse before any server starts when the results' file system cannot hold what the session writes."""
    needed = runs * RUN_BYTES + TABLES_BYTES
    free = shutil.disk_usage(results_dir).free
    if free < needed:
        raise ValueError(
            f"results directory {results_dir} has {free // 1024} KiB free, and this session writes up "
            f"to about {needed // 1024} KiB ({runs} run(s)); free some space or choose another "
            f"with --results-dir"
        )


def replace_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Let `write` fill a temporary file in the same folder, then rename it over `path`: a reader never sees
    half a file, and a crash leaves at most a hidden temporary file, never a truncated result."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with full_disk_refused(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            write(temporary)
            with open(temporary, "rb") as written:
                os.fsync(written.fileno())
            os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> None:
    replace_atomically(path, lambda temporary: temporary.write_text(text))


def write_atomic(path: Path, data: dict) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def write_record(path: Path, record: dict) -> None:
    """A result record, as the JSON that is the contract between running and rendering: checked against the
    typed record first, so that nothing is stored that the reports could not read."""
    Record.read(record)
    write_atomic(path, record)


def load(results_dir: Path) -> dict[tuple[str, str], Record]:
    """Every stored record, by (table, cell key). Unreadable files are reported, not skipped silently."""
    records = {}
    for path in sorted((results_dir / "raw").glob("*/*.json")):
        try:
            record = json.loads(path.read_text())
        except ValueError as error:
            raise ValueError(f"{path} is not a gilfree result ({error}); move it away and re-run that cell") from None
        if not isinstance(record, dict):
            raise ValueError(f"{path} is not a gilfree result (not a JSON object); move it away and re-run that cell")
        record = migrate(record, path)  # refuses a schema it cannot read, naming the file
        try:
            typed = Record.read(record)
        except (ValidationError, TypeError) as error:
            problem = error.errors()[0] if isinstance(error, ValidationError) else None
            why = f"{'.'.join(map(str, problem['loc']))}: {problem['msg']}" if problem else str(error)
            raise ValueError(f"{path} is not a gilfree result ({why}); move it away and re-run that cell") from None
        records[(typed.cell.table, typed.cell.key)] = typed
    return records


def now() -> str:
    """UTC, to the millisecond: runs of one machine are ordered by it."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_identity(facts: dict) -> str:
    """A machine's facts as stored (machine()) by what makes two machines the same: Machine.identity."""
    return Machine.model_validate(facts).identity


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
