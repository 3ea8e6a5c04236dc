"""The post's published figures, as studies/article.toml transcribes them, so a run can be set beside them.

Rows are keyed by (table, cell key); a cell the file gives no figures for simply has none here.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from gilfree.study.studies import article


@dataclass(frozen=True)
class Figures:
    """One row's numbers: the post's, or a run's. CPU (cores) and RAM (MB) only where the table has them."""

    rps: float
    latency_avg_ms: float
    latency_max_ms: float
    cpu: float | None = None
    ram_mb: float | None = None


# Read from the post's study on first use (studies.article()), never at import.

@cache
def shown_as() -> dict[tuple[str, str], tuple[str, ...]]:
    """The post's leading columns per (table, cell key), as printed: checked against the study by the tests."""
    return {key: post.shown_as for key, post in article().published.items()}


@cache
def published() -> dict[tuple[str, str], Figures]:
    """The post's figures per (table, cell key)."""
    return {key: Figures(post.rps, post.latency_avg_ms, post.latency_max_ms, post.cpu, post.ram_mb)
            for key, post in article().published.items()}


def post_setup() -> dict:
    """The post's setup, as it states it (or as it leaves it unstated), for "Can this machine test the post?"."""
    return article().post_setup
