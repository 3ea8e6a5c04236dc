"""Studies as data: the Study the harness walks, made from a checked study file (schema.py).

A study names its apps and their endpoints, its interpreter variants, the Granian settings and the load of each
cell, its tables, and the nox sessions that run them. studies/article.toml is the post's study, read when first
asked for (article()). Everything the harness runs is walked from a Study; nothing else names a worker count or
a concurrency.
"""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import asdict, dataclass, field
from functools import cache, cached_property
from pathlib import Path
from typing import Any

from gilfree import PROJECT_ROOT
from gilfree.core.arguments import duration_seconds
from gilfree.study import claims
from gilfree.study.schema import (
    ARTICLE_FILE,
    DEFAULT_PROFILE,
    KEY_SILENT_LOOP,
    PROFILE_VARIABLE,
    STUDIES_DIR,
    PostFigures,
    SessionSpec,
    StudyError,
    StudyFile,
    expand,
    gil_name,
    read,
    reserved_sessions,
)

# --- the study, as the harness walks it --------------------------------------------------------------------


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
    app: str | None = None  # None in records older than studies: the app named like the interface
    loop: str | None = None
    runtime_mode: str | None = None
    runtime_threads: int | None = None
    flags: tuple[str, ...] = ()
    cpus: int | None = None

    def __post_init__(self):
        object.__setattr__(self, "flags", tuple(self.flags))  # a record's JSON list
        if self.app is None:
            object.__setattr__(self, "app", self.interface)

    @property
    def key(self) -> str:
        """The cell's name within its table (and its result file's): the post's dimensions, then only the
        settings a cell sets beyond them, so the post's cells keep the names their stored results have."""
        threads = "default" if self.blocking_threads is None else self.blocking_threads
        extras = [
            self.loop if self.loop not in (None, KEY_SILENT_LOOP) else None,
            f"rt{self.runtime_mode}" if self.runtime_mode else None,
            f"rth{self.runtime_threads}" if self.runtime_threads else None,
            "x" + re.sub(r"[^A-Za-z0-9]+", "", "".join(self.flags)) if self.flags else None,
            f"k{self.cpus}" if self.cpus else None,
        ]
        base = f"{self.variant}-w{self.workers}-t{threads}-{self.endpoint}-c{self.concurrency}"
        return "-".join([base, *filter(None, extras)])

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Endpoint:
    name: str
    path: str
    status: int
    json_body: Any
    text: str | None
    io_wait_ms: float | None


@dataclass(frozen=True)
class App:
    name: str
    interface: str
    target: str
    directory: Path
    requirements: Path
    endpoints: dict[str, Endpoint]

    @property
    def first_endpoint(self) -> Endpoint:
        return next(iter(self.endpoints.values()))


@dataclass(frozen=True)
class Table:
    """One table: its number, its title, its columns and its rows in order; the source's figures where known."""

    id: str
    number: int
    title: str
    columns: tuple[str, ...]
    cells: tuple[Cell, ...]
    published: dict[Cell, PostFigures] = field(default_factory=dict, compare=False)
    post_command: str | None = None
    metrics: bool = False  # Granian's own counters (granian_counters), for every cell

    def variant_pairs(self, gil: str, threaded: str) -> list[tuple[Cell, Cell]]:
        """(gil, threaded) cells that differ in nothing else, in the table's order: never paired by position."""
        return [
            (under, over)
            for over, under in claims.compared_pairs("variant", gil, self.cells)
            if over.variant == threaded
        ]


@dataclass(frozen=True)
class Profile:
    name: str
    python: dict[str, str]
    exclude_newer: str | None


@dataclass(frozen=True)
class Session:
    """A nox session: some tables on one or more variants. With several, runs alternate between the variants
    run by run, so drift hits all alike."""

    name: str
    study: Study = field(repr=False, compare=False)
    variants: tuple[str, ...]
    tables: tuple[str, ...]
    description: str

    def cells(self) -> tuple[Cell, ...]:
        return tuple(
            cell
            for table in self.tables
            for cell in self.study.tables_by_id[table].cells
            if cell.variant in self.variants
        )

    @property
    def apps(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(cell.app for cell in self.cells()))


@dataclass(frozen=True)
class Study:
    name: str
    path: Path
    title: str
    variants: tuple[str, ...]
    duration_s: int
    loadgen: str
    results_dir: Path
    locks_dir: Path
    lock_python: str
    apps: dict[str, App]
    tables: tuple[Table, ...]
    profiles: dict[str, Profile]
    sessions: dict[str, Session] = field(default_factory=dict)
    default_sessions: tuple[str, ...] = ()
    post_load_command: str | None = None
    post_setup: dict[str, Any] | None = None
    gil_forced_off: tuple[str, ...] = ()
    repeat: int | str = 1  # the default --repeat
    comparison: claims.Comparison | None = None  # what `compare` sets side by side
    claims: tuple[claims.Claim, ...] = ()

    @cached_property
    def tables_by_id(self) -> dict[str, Table]:
        return {table.id: table for table in self.tables}

    @cached_property
    def published(self) -> dict[tuple[str, str], PostFigures]:
        """The source's figures by (table, cell key), for the rows that have them."""
        return {(cell.table, cell.key): figures for table in self.tables for cell, figures in table.published.items()}

    def io_wait_s(self, cell: Cell) -> float | None:
        """What the cell's endpoint waits per request, if it fakes I/O."""
        wait = self.apps[cell.app].endpoints[cell.endpoint].io_wait_ms
        return None if wait is None else wait / 1000

    def profile(self, name: str | None = None) -> Profile:
        """The named profile (GILFREE_PROFILE), else the study's first; a name the study lacks is refused."""
        name = name or os.environ.get(PROFILE_VARIABLE) or next(iter(self.profiles))
        if name not in self.profiles:
            raise StudyError(
                f"{PROFILE_VARIABLE}={name!r} is not a profile of {self.path}: choose one of {', '.join(self.profiles)}"
            )
        return self.profiles[name]

    def lock_path(self, profile: str, app: str) -> Path:
        return self.locks_dir / profile / f"{app}.txt"


def _cell(study: StudyFile, table_id: str, settings: dict) -> Cell:
    missing = [name for name in ("app", "variant", "endpoint", "workers", "concurrency") if settings.get(name) is None]
    if missing:
        raise ValueError(f"a row sets no {missing[0]} (set it in the row or in the table's `cell`)")
    app = study.apps.get(settings["app"])
    if app is None:
        raise ValueError(f"app {settings['app']!r} is not one of the study's apps ({', '.join(study.apps)})")
    if settings["endpoint"] not in app.endpoints:
        raise ValueError(
            f"endpoint {settings['endpoint']!r} is not one of app {settings['app']}'s ({', '.join(app.endpoints)})"
        )
    if settings["variant"] not in study.variants:
        raise ValueError(
            f"variant {settings['variant']!r} is not one of the study's variants ({', '.join(study.variants)})"
        )
    if settings["workers"] == "cpus":
        if settings.get("cpus") is None:
            raise ValueError('workers = "cpus" needs the cell\'s `cpus`')
        settings = {**settings, "workers": settings["cpus"]}
    if settings.get("loop") and app.interface not in ("asgi", "asginl", "rsgi"):
        raise ValueError(
            f"loop {settings['loop']!r} is for ASGI and RSGI apps; app {settings['app']} is {app.interface}"
        )
    return Cell(table=table_id, interface=app.interface, **{"blocking_threads": None, **settings})


def _tables(study: StudyFile) -> tuple[Table, ...]:
    tables = []
    for table_id, spec in study.tables.items():
        cells, published = [], {}
        try:
            expanded = expand(spec)
        except ValueError as error:
            raise StudyError(f"tables.{table_id}.grid: {error}") from None
        for index, (settings, post) in enumerate(expanded):
            try:
                cell = _cell(study, table_id, settings)
            except ValueError as error:
                where = (
                    f"rows.{index}"
                    if spec.rows is not None
                    else "grid ("
                    + ", ".join(f"{name}={settings.get(name)}" for key in spec.grid for name in key.split("+"))
                    + ")"
                )
                raise StudyError(f"tables.{table_id}.{where}: {error}") from None
            if cell.key in {c.key for c in cells}:
                raise StudyError(f"tables.{table_id}: the same cell twice ({cell.key})")
            cells.append(cell)
            if post is not None:
                published[cell] = post
        tables.append(
            Table(
                table_id,
                spec.number,
                spec.title,
                spec.columns,
                tuple(cells),
                published,
                spec.post_command,
                spec.metrics or study.metrics,
            )
        )
    return tuple(tables)


def _sessions(name: str, study: Study, specs: dict[str, SessionSpec] | None) -> dict[str, Session]:
    """The file's sessions; without any, `<name>` (every table, every variant interleaved) and `<name>-<variant>`."""
    if specs is None:
        every = tuple(table.id for table in study.tables)
        specs = {
            name: SessionSpec(
                variants=study.variants,
                tables=every,
                description=f"{study.title}: every table, {' and '.join(study.variants)} interleaved run by run",
            )
        }
        if len(study.variants) > 1:
            specs |= {
                f"{name}-{variant}": SessionSpec(
                    variants=(variant,), tables=every, description=f"{study.title}: every table on {variant} alone"
                )
                for variant in study.variants
            }
    sessions = {}
    for session_name, spec in specs.items():
        for table in spec.tables:
            if table not in study.tables_by_id:
                raise StudyError(
                    f"sessions.{session_name}.tables: {table!r} is not one of the study's tables "
                    f"({', '.join(study.tables_by_id)})"
                )
        for variant in spec.variants:
            if variant not in study.variants:
                raise StudyError(
                    f"sessions.{session_name}.variants: {variant!r} is not one of the study's "
                    f"variants ({', '.join(study.variants)})"
                )
        sessions[session_name] = Session(session_name, study, spec.variants, spec.tables, spec.description)
    return sessions


def _one_curve_per_app_and_endpoint(tables: tuple[Table, ...]) -> None:
    """The core-scaling report draws one curve per app, endpoint and variant, where the cells give the server
    several CPU counts: two cells on one point of it (differing in another setting) would be one point twice."""
    if len({cell.cpus for table in tables for cell in table.cells if cell.cpus is not None}) < 2:
        return  # one CPU count, or none: no curve
    seen: dict[tuple, str] = {}
    for table in tables:
        for cell in (cell for cell in table.cells if cell.cpus is not None):
            point = (cell.app, cell.endpoint, cell.variant, cell.cpus)
            if point in seen:
                raise StudyError(
                    f"tables.{table.id}: {cell.key} is a second cell of app {cell.app} /{cell.endpoint} "
                    f"on {cell.variant} with cpus = {cell.cpus} (the first is in tables.{seen[point]}); "
                    f"core scaling draws one curve per app, endpoint and variant: put the other in "
                    f"a study file of its own"
                )
            seen[point] = table.id


def _claims(spec: StudyFile, study: Study) -> tuple[claims.Claim, ...]:
    cells = tuple(cell for table in study.tables for cell in table.cells)
    published = {cell: figures for table in study.tables for cell, figures in table.published.items()}
    resolved = []
    for index, claim in enumerate(spec.claims):
        try:
            resolved.append(claims.resolve(claim, cells, published, study.io_wait_s, spec.comparison.band))
        except ValueError as error:
            raise StudyError(f"claims.{index}.{error}") from None
    return tuple(resolved)


def _comparison(spec: StudyFile, study: Study) -> claims.Comparison:
    try:
        return claims.comparison(spec.comparison, tuple(cell for table in study.tables for cell in table.cells))
    except ValueError as error:
        raise StudyError(f"comparison.{error}") from None


def _profiles(spec: StudyFile) -> dict[str, Profile]:
    if not spec.profiles:
        return {DEFAULT_PROFILE: Profile(DEFAULT_PROFILE, {variant: variant for variant in spec.variants}, None)}
    for name, profile in spec.profiles.items():
        if set(profile.python) != set(spec.variants):
            raise StudyError(
                f"profiles.{name}.python: give one interpreter for each variant "
                f"({', '.join(spec.variants)}), got {', '.join(profile.python) or 'none'}"
            )
    return {name: Profile(name, dict(p.python), p.exclude_newer) for name, p in spec.profiles.items()}


def load(path: Path) -> Study:
    """Read and check a study file; StudyError (one line) if it cannot be run as written."""
    path = Path(path).resolve()
    here, name = path.parent, path.stem
    try:
        spec = read(path)
        apps = {
            app_name: App(
                app_name,
                app.interface,
                app.target,
                (here / app.directory).resolve(),
                (here / app.requirements).resolve(),
                {
                    ep: Endpoint(ep, e.path or f"/{ep}", e.status, e.json_body, e.text, e.io_wait_ms)
                    for ep, e in app.endpoints.items()
                },
            )
            for app_name, app in spec.apps.items()
        }
        for app in apps.values():
            if not app.directory.is_dir():
                raise StudyError(f"apps.{app.name}.directory: {app.directory} is not a directory")
        lowest = min(spec.variants, key=lambda v: tuple(map(int, gil_name(v).split("."))))
        study = Study(
            name=name,
            path=path,
            title=spec.title,
            variants=spec.variants,
            duration_s=duration_seconds(spec.duration),
            loadgen=spec.loadgen,
            results_dir=(here / spec.results).resolve() if spec.results else PROJECT_ROOT / "results" / name,
            locks_dir=(here / (spec.locks or f"{name}-locks")).resolve(),
            lock_python=spec.lock_python or gil_name(lowest),
            apps=apps,
            tables=_tables(spec),
            profiles=_profiles(spec),
            default_sessions=spec.default_sessions or (),
            post_load_command=spec.post_load_command,
            post_setup=spec.post_setup,
            gil_forced_off=spec.gil_forced_off,
            repeat=spec.repeat,
        )
        _one_curve_per_app_and_endpoint(study.tables)
        object.__setattr__(study, "comparison", _comparison(spec, study))
        object.__setattr__(study, "claims", _claims(spec, study))
        object.__setattr__(study, "sessions", _sessions(name, study, spec.sessions))
        if not study.default_sessions:
            object.__setattr__(study, "default_sessions", (next(iter(study.sessions)),))
        unknown = [s for s in study.default_sessions if s not in study.sessions]
        if unknown:
            raise StudyError(f"default_sessions: {unknown[0]!r} is not one of the study's sessions")
    except StudyError as error:
        raise StudyError(f"{path}: {error}") from None
    return study


def study_file(text: str) -> Study:
    """The study file a command line names, read and checked (an argparse `type=`): its StudyError as the
    command line's one-line refusal."""
    try:
        return load(Path(text))
    except StudyError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def discover(directory: Path = STUDIES_DIR) -> tuple[dict[str, Study], dict[Path, StudyError]]:
    """Every study file in the folder, checked; the refused ones apart, each with its one-line reason. A session
    name already taken by an earlier file (in name order, article first) refuses the later file."""
    studies, refused, owners = {}, {}, {}
    for path in sorted(directory.glob("*.toml"), key=lambda p: (p != ARTICLE_FILE, p.name)):
        try:
            study = load(path)
            taken = [name for name in study.sessions if name in owners or name in reserved_sessions()]
            if taken:
                owner = f"{owners[taken[0]]}'s" if taken[0] in owners else "one of gilfree's own sessions"
                raise StudyError(f"{path}: session {taken[0]!r} is already {owner}; rename it (or the file)")
        except StudyError as error:
            refused[path] = error
            continue
        studies[study.name] = study
        owners |= dict.fromkeys(study.sessions, path.name)
    return studies, refused


@cache
def article() -> Study:
    """The post's study (studies/article.toml), read on first use: importing the harness reads no file."""
    return load(ARTICLE_FILE)


def sessions() -> dict[str, Session]:
    """Every session of every readable study in studies/, by name."""
    return {name: session for study in discover()[0].values() for name, session in study.sessions.items()}


def find_session(name: str, study_file: Path | None = None) -> Session:
    """The named session, from the given study file or else from studies/; StudyError if there is none."""
    if study_file is not None:
        study = load(study_file)
        if name not in study.sessions:
            raise StudyError(f"session {name!r} is not one of {study.path.name}'s: {', '.join(study.sessions)}")
        return study.sessions[name]
    studies, refused = discover()
    for study in studies.values():
        if name in study.sessions:
            return study.sessions[name]
    hint = "".join(
        f"; {error}" for path, error in refused.items() if name == path.stem or name.startswith(path.stem + "-")
    )
    known = ", ".join(n for study in studies.values() for n in study.sessions)
    raise StudyError(f"no session {name!r} in {STUDIES_DIR}{hint or f' (sessions: {known})'}")
