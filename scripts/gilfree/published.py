"""The post's published figures, transcribed from its six tables, so a run can be set beside them.

Each row is keyed by the matrix cell it was measured on (the post's rows come in the matrix's order); the
concurrency and the server's flags are the cell's, not repeated here.
"""

from __future__ import annotations

from dataclasses import dataclass

from .matrix import TABLES


@dataclass(frozen=True)
class Figures:
    """One row's numbers: the post's, or a run's. CPU (cores) and RAM (MB) only where the table has them."""

    rps: float
    latency_avg_ms: float
    latency_max_ms: float
    cpu: float | None = None
    ram_mb: float | None = None


# The post's rows as printed: its leading columns as text (to check the order against the matrix), then
# RPS, latency avg (ms), latency max (ms), and CPU and RAM (MB) where the table has them.
_ROWS: dict[str, tuple[tuple, ...]] = {
    "asgi-json": (
        (("3.14", "1"), 30415, 4.20, 45.29, 0.42, 90),
        (("3.14t", "1"), 24218, 5.27, 59.25, 0.80, 80),
        (("3.14", "2"), 59219, 4.32, 70.71, 1.47, 147),
        (("3.14t", "2"), 48446, 5.28, 68.17, 1.73, 90),
    ),
    "asgi-io": (
        (("3.14", "1"), 11333, 11.28, 40.72, 0.41, 90),
        (("3.14t", "1"), 11351, 11.26, 35.18, 0.38, 81),
        (("3.14", "2"), 22775, 11.22, 114.82, 0.69, 148),
        (("3.14t", "2"), 23473, 10.89, 60.29, 1.10, 91),
    ),
    "wsgi-threads-gil": (
        (("JSON", "1"), 19377, 6.60, 28.35),
        (("JSON", "8"), 18704, 6.76, 25.82),
        (("JSON", "32"), 18639, 6.68, 33.91),
        (("JSON", "128"), 15547, 8.17, 3949.40),
        (("I/O", "1"), 94, 1263.59, 1357.80),
        (("I/O", "8"), 781, 161.99, 197.73),
        (("I/O", "32"), 3115, 40.82, 120.61),
        (("I/O", "128"), 11271, 11.28, 59.58),
    ),
    "wsgi-workers-threads-ft": (
        (("1", "2"), 28898, 4.42, 86.96),
        (("2", "1"), 28424, 4.49, 75.80),
        (("1", "4"), 54669, 2.33, 112.06),
        (("4", "1"), 53532, 2.38, 121.91),
        (("2", "2"), 55426, 2.30, 124.16),
    ),
    "wsgi-json": (
        (("3.14", "1"), 18773, 6.11, 27446.19, 0.53, 101),
        (("3.14t", "1"), 70626, 1.81, 311.76, 6.50, 356),
        (("3.14", "2"), 36173, 5.73, 27692.21, 1.31, 188),
        (("3.14t", "2"), 60138, 4.25, 294.55, 6.56, 413),
    ),
    "wsgi-io": (
        (("3.14", "1"), 6282, 20.34, 62.28, 0.40, 105),
        (("3.14t", "1"), 6244, 20.47, 164.59, 0.42, 216),
        (("3.14", "2"), 12566, 20.33, 88.34, 0.65, 180),
        (("3.14t", "2"), 12444, 20.55, 124.06, 1.18, 286),
    ),
}

# The post's leading columns per (table, cell key), as printed: checked against the matrix by the tests.
SHOWN_AS: dict[tuple[str, str], tuple[str, str]] = {
    (table.id, cell.key): row[0]
    for table in TABLES
    for cell, row in zip(table.cells, _ROWS[table.id], strict=True)
}

PUBLISHED: dict[tuple[str, str], Figures] = {
    (table.id, cell.key): Figures(*row[1:])
    for table in TABLES
    for cell, row in zip(table.cells, _ROWS[table.id], strict=True)
}

# The post's setup, as it states it (or as it leaves it unstated), for "Can this machine test the post?".
POST_SETUP = {
    "cpu_model": "AMD Ryzen 7 5700X",
    "physical_cores": 8,
    "logical_cores": 16,
    "load_generator": "rewrk (version not stated)",
    "duration_s": 30,
    "runs_per_cell": 1,
    "pythons": {"3.14": "CPython 3.14.0, build not stated", "3.14t": "CPython 3.14.0t, build not stated"},
}
