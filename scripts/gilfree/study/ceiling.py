"""Stored ceilings of the load generators (written by calibrate.py), and which one applies to a study row.

A calibration is one JSON file per load generator and pinning, results/calibration/<loadgen>[-pin<N>].json,
holding the machine's facts and the median RPS the load generator pushed against nginx at each concurrency.
"""

from __future__ import annotations

import json
from pathlib import Path

from gilfree.core import warnings
from gilfree.core.warnings import StudyWarning, from_sentence
from gilfree.study.record import LoadGeneratorInfo, Machine, Record

KIND = "gilfree load generator ceiling"
SCHEMA = 2  # 2: warnings as objects with a kind (1: sentences, read back into their kinds)
READABLE = (1, 2)


def path(results_dir: Path, loadgen: str, pin: int | None) -> Path:
    return results_dir / "calibration" / f"{loadgen}{f'-pin{pin}' if pin else ''}.json"


def load_all(results_dir: Path) -> list[dict]:
    """Every stored calibration; an unreadable one is reported, naming the file, not skipped."""
    found = []
    for stored in sorted((results_dir / "calibration").glob("*.json")):
        try:
            record = json.loads(stored.read_text())
        except ValueError:
            record = None
        if not isinstance(record, dict) or record.get("kind") != KIND or record.get("schema") not in READABLE:
            raise ValueError(
                f"{stored} is not a gilfree calibration of schema {SCHEMA}; move it away and re-run `nox -s calibrate`"
            )
        found.append(
            {
                **record,
                "warnings": [
                    warning if isinstance(warning, dict) else from_sentence(warning).as_dict()
                    for warning in record["warnings"]
                ],
            }
        )
    return found


def _facts(machine: Machine | None) -> tuple:
    """What the machine is compared on: its hardware, as for stored runs (Machine.identity), and its kernel. A
    ceiling measured elsewhere, or on another kernel, says nothing here."""
    machine = machine or Machine()
    return machine.identity, machine.kernel


def _matches(calibration: dict, record: Record) -> bool:
    """Same machine, same load generator (name and version), same load generator CPUs; a load run from another
    host (--loadgen-host) was never calibrated, since calibrate runs the load generator here."""
    generator, settings = record.load_generator or LoadGeneratorInfo(), record.settings
    return (
        settings.loadgen_host is None
        and _facts(Machine.model_validate(calibration["machine"])) == _facts(record.machine)
        and (calibration["load_generator"]["name"], calibration["load_generator"]["version"])
        == (generator.name, generator.version)
        and calibration["settings"]["loadgen_cpus"] == settings.loadgen_cpus
    )


def for_row(record: Record, calibrations: list[dict]) -> float | None:
    """The ceiling measured for this row's load generator (name and version), machine, load generator CPUs and
    concurrency; None when no calibration matches, so the check cannot be made."""
    for calibration in calibrations:
        if _matches(calibration, record):
            for point in calibration["ceilings"]:
                if point["concurrency"] == record.cell.concurrency and point["rps"]:
                    return point["rps"]
    return None


def doubts(records: list[Record], calibrations: list[dict]) -> list[StudyWarning]:
    """The warnings of the calibrations that apply to these rows (a busy machine, a load generator that was not
    its own limit): a ceiling measured so may be too low, and flag rows that are not near it."""
    return list(
        dict.fromkeys(
            warning
            for calibration in calibrations
            if any(_matches(calibration, record) for record in records)
            for warning in warnings.read(calibration["warnings"])
        )
    )


def with_ceilings(stored: dict[tuple[str, str], Record], calibrations: list[dict]) -> dict[tuple[str, str], Record]:
    """The records, each with the ceiling of its load generator on its machine at its concurrency beside it
    (`ceiling_rps`, None where no calibration matches), in memory only: the stored files are not touched."""
    return {
        key: record.model_copy(update={"ceiling_rps": for_row(record, calibrations) if record.ok else None})
        for key, record in stored.items()
    }
