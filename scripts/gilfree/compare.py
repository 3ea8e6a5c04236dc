"""Placeholder until the comparison report lands (issue 4)."""

from pathlib import Path


def write_report(results_dir: Path) -> list[Path]:
    raise NotImplementedError("the comparison report is not written yet")
