"""Bar charts of one table: the post's figures beside this run's, row by row, drawn without a display."""

from __future__ import annotations

from pathlib import Path

import matplotlib

from . import results
from .matrix import Table
from .published import Figures

matplotlib.use("Agg")  # files only: no display on a benchmark machine or in CI; set before pyplot loads
import matplotlib.pyplot as plt

PANELS = {"rps": "RPS", "ram_mb": "RAM (MB)"}
BAR_WIDTH = 0.4
LOG_SCALE_SPREAD = 100  # a panel whose bars span more than this factor gets a log axis (table 3: 94 to 19377)


def _panel(axes, field: str, post: list[Figures], yours: list[Figures | None]) -> None:
    """One figure's bars: the post's at the left of each row, this run's at the right where measured."""
    positions = range(len(post))
    posted = axes.bar([x - BAR_WIDTH / 2 for x in positions], [getattr(f, field) for f in post],
                      BAR_WIDTH, label="post", color="0.65")
    measured = [(x, getattr(f, field)) for x, f in zip(positions, yours) if f is not None]
    ours = axes.bar([x + BAR_WIDTH / 2 for x, _ in measured], [value for _, value in measured],
                    BAR_WIDTH, label="yours", color="tab:blue")
    for bars in (posted, ours):
        axes.bar_label(bars, fmt="%.0f", fontsize=7)
    values = [bar.get_height() for bars in (posted, ours) for bar in bars]
    if max(values) > LOG_SCALE_SPREAD * min(values):
        axes.set_yscale("log")
    axes.set_ylabel(PANELS[field])


def draw(path: Path, table: Table, names: list[str], post: list[Figures], yours: list[Figures | None],
         axis_name: str) -> Path:
    """Write one PNG for the table: an RPS panel, and a RAM panel where the table has RAM."""
    fields = ["rps"] + (["ram_mb"] if "ram" in table.columns else [])
    figure, panels = plt.subplots(1, len(fields), figsize=(1.6 * len(names) * len(fields) + 2, 4.8),
                                  squeeze=False)
    for axes, field in zip(panels[0], fields):
        _panel(axes, field, post, yours)
        axes.set_xticks(range(len(names)), names, fontsize=8)
        axes.set_xlabel(axis_name)
    panels[0][0].legend()
    figure.suptitle(f"Table {table.number}: {table.title}")
    figure.tight_layout()
    try:
        results.replace_atomically(path, lambda temporary: figure.savefig(temporary, dpi=110, format="png"))
    finally:
        plt.close(figure)
    return path
