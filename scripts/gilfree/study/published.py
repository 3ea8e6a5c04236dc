"""A source's published figures, as its study file transcribes them (`post = {...}` in a row), so a run can be set
beside them.

Rows are keyed by (table, cell key); a cell the file gives no figures for simply has none here.
"""

from __future__ import annotations

from dataclasses import dataclass

from gilfree.study.studies import Study


@dataclass(frozen=True)
class Figures:
    """One row's numbers: the source's, or a run's. CPU (cores) and RAM (MB) only where the table has them."""

    rps: float
    latency_avg_ms: float
    latency_max_ms: float
    cpu: float | None = None
    ram_mb: float | None = None


def source_figures(study: Study) -> dict[tuple[str, str], Figures]:
    """The source's figures per (table, cell key)."""
    return {
        key: Figures(post.rps, post.latency_avg_ms, post.latency_max_ms, post.cpu, post.ram_mb)
        for key, post in study.published.items()
    }
