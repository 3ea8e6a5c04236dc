"""The study as data: the post's six tables, their cells, and the nox sessions that run them.

Everything the harness runs is walked from here; nothing else names a worker count or a concurrency.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

GIL = "3.14"
FREE_THREADED = "3.14t"
VARIANTS = (GIL, FREE_THREADED)
POST_PYTHON = "3.14.0"  # the release the post ran, in both builds

APPS = {"asgi": "impl_fastapi:app", "wsgi": "impl_flask:app"}
ENDPOINTS = ("json", "io")
EXPECTED_BODY = {"message": "Hello, World!"}

# Columns of the post's two kinds of table.
VARIANT_COLUMNS = ("python", "workers", "rps", "latency_avg", "latency_max", "cpu", "ram")
THREADS_COLUMNS = ("endpoint", "threads", "rps", "latency_avg", "latency_max")
WORKERS_COLUMNS = ("workers", "threads", "rps", "latency_avg", "latency_max")


@dataclass(frozen=True)
class Cell:
    """One measurement: a server configuration under one load."""

    table: str
    variant: str
    interface: str
    workers: int
    blocking_threads: int | None  # None: Granian's default (the post's ASGI commands set none)
    endpoint: str
    concurrency: int

    def __post_init__(self):
        for name in ("workers", "blocking_threads", "concurrency"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"cell {self.table}: {name} must be a whole number of at least 1, not {value!r}")
        if self.interface not in APPS or self.endpoint not in ENDPOINTS or self.variant not in VARIANTS:
            raise ValueError(f"cell {self.table}: unknown interface, endpoint or variant in {self}")

    @property
    def key(self) -> str:
        threads = "default" if self.blocking_threads is None else self.blocking_threads
        return f"{self.variant}-w{self.workers}-t{threads}-{self.endpoint}-c{self.concurrency}"

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Table:
    """One of the post's tables: its number there, its title, its columns and its rows in order."""

    id: str
    number: int
    title: str
    columns: tuple[str, ...]
    cells: tuple[Cell, ...]


def _variant_rows(table: str, interface: str, endpoint: str, threads: int | None) -> tuple[Cell, ...]:
    """The post's variant tables: 1 worker at c=128, then 2 workers at c=256, 3.14 before 3.14t."""
    return tuple(
        Cell(table, variant, interface, workers, threads, endpoint, concurrency)
        for workers, concurrency in ((1, 128), (2, 256))
        for variant in VARIANTS
    )


TABLES: tuple[Table, ...] = (
    Table("asgi-json", 1, "ASGI (FastAPI), JSON endpoint", VARIANT_COLUMNS,
          _variant_rows("asgi-json", "asgi", "json", None)),
    Table("asgi-io", 2, "ASGI (FastAPI), I/O endpoint", VARIANT_COLUMNS,
          _variant_rows("asgi-io", "asgi", "io", None)),
    Table("wsgi-threads-gil", 3, "WSGI (Flask) on 3.14, 1 worker, blocking threads", THREADS_COLUMNS, tuple(
        Cell("wsgi-threads-gil", GIL, "wsgi", 1, threads, endpoint, 128)
        for endpoint in ENDPOINTS
        for threads in (1, 8, 32, 128)
    )),
    Table("wsgi-workers-threads-ft", 4, "WSGI (Flask) on 3.14t, JSON endpoint, workers x threads",
          WORKERS_COLUMNS, tuple(
        Cell("wsgi-workers-threads-ft", FREE_THREADED, "wsgi", workers, threads, "json", 128)
        for workers, threads in ((1, 2), (2, 1), (1, 4), (4, 1), (2, 2))
    )),
    Table("wsgi-json", 5, "WSGI (Flask), JSON endpoint", VARIANT_COLUMNS,
          _variant_rows("wsgi-json", "wsgi", "json", 64)),
    Table("wsgi-io", 6, "WSGI (Flask), I/O endpoint", VARIANT_COLUMNS,
          _variant_rows("wsgi-io", "wsgi", "io", 64)),
)

TABLES_BY_ID = {table.id: table for table in TABLES}


@dataclass(frozen=True)
class Session:
    """A nox session: one interface on one or both interpreter variants, over some tables. With both, runs
    alternate between the variants (the post's rows already do: 3.14, 3.14t, 3.14, 3.14t)."""

    name: str
    interface: str
    variants: tuple[str, ...]
    tables: tuple[str, ...]

    def cells(self) -> tuple[Cell, ...]:
        return tuple(
            cell
            for table in self.tables
            for cell in TABLES_BY_ID[table].cells
            if cell.variant in self.variants
        )


SESSIONS: dict[str, Session] = {
    session.name: session
    for session in (
        Session("asgi-3.14", "asgi", (GIL,), ("asgi-json", "asgi-io")),
        Session("asgi-3.14t", "asgi", (FREE_THREADED,), ("asgi-json", "asgi-io")),
        Session("wsgi-3.14", "wsgi", (GIL,), ("wsgi-json", "wsgi-io")),
        Session("wsgi-3.14t", "wsgi", (FREE_THREADED,), ("wsgi-json", "wsgi-io")),
        Session("wsgi-threads-3.14", "wsgi", (GIL,), ("wsgi-threads-gil",)),
        Session("wsgi-workers-3.14t", "wsgi", (FREE_THREADED,), ("wsgi-workers-threads-ft",)),
        Session("asgi", "asgi", VARIANTS, ("asgi-json", "asgi-io")),
        Session("wsgi", "wsgi", VARIANTS, ("wsgi-json", "wsgi-io")),
    )
}
# The sessions that together run every cell once (`nox` with no session): tables 1-2 and 5-6 interleaved, so that
# drift between sessions cannot bias a 3.14t / 3.14 ratio. The one-variant sessions of those tables stay for
# running one variant alone.
STUDY = ("asgi", "wsgi", "wsgi-threads-3.14", "wsgi-workers-3.14t")
