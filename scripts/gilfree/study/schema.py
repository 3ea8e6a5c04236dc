"""A study file as written: the TOML schema (pydantic models), read and checked line by line.

A malformed file is refused before anything starts, with the file, the key and what was expected (StudyError).
studies.py turns a checked file into the Study the harness walks.
"""

from __future__ import annotations

import ast
import itertools
import re
import tomllib
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from gilfree import PROJECT_ROOT
from gilfree.core.arguments import DURATION_FORMS, duration_seconds
from gilfree.study.figures import COLUMNS, RATIO_FIGURES

STUDIES_DIR = PROJECT_ROOT / "studies"
ARTICLE_FILE = STUDIES_DIR / "article.toml"
DEFAULT_PROFILE = "default"  # a study that declares no profile has this one, asking uv for each variant by name
PROFILE_VARIABLE = "GILFREE_PROFILE"
# The loop a cell key leaves unnamed: the post's (every ASGI command of the post passes --loop asyncio).
KEY_SILENT_LOOP = "asyncio"

Name = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$", max_length=40)]
Variant = Annotated[str, Field(pattern=r"^3\.\d+t?$")]
Positive = Annotated[int, Field(ge=1)]

# A table's columns: the cell's settings that tell its rows apart, then the figures.
SETTING_COLUMNS = (
    "python",
    "workers",
    "threads",
    "endpoint",
    "loop",
    "runtime_mode",
    "runtime_threads",
    "cpus",
    "concurrency",
)
# The figures' columns come from the registry (gil_wait and blocking: Granian's own counters, where the study's or
# table's `metrics`, or --metrics, asks for them).
Column = Literal[SETTING_COLUMNS + COLUMNS]
# What a comparison may set side by side: a cell's settings that can differ within one table (two apps cannot:
# a cell's key does not name its app). A claim's selectors may also name the table and the app.
COMPARED_SETTINGS = (
    "variant",
    "endpoint",
    "workers",
    "blocking_threads",
    "loop",
    "runtime_mode",
    "runtime_threads",
    "cpus",
    "concurrency",
)
SELECTOR_KEYS = ("table", "app") + COMPARED_SETTINGS


class StudyError(ValueError):
    """A study file that cannot be run as written: one line naming the file, the key and what was expected."""


@cache
def reserved_sessions() -> frozenset[str]:
    """The nox sessions that are not a study's, which no study may take: those the noxfile declares itself with
    `@nox.session` (read from it, so that the noxfile is their one source)."""
    tree = ast.parse((PROJECT_ROOT / "noxfile.py").read_text())
    names = set()
    for function in (node for node in tree.body if isinstance(node, ast.FunctionDef)):
        for decorator in function.decorator_list:
            call = decorator if isinstance(decorator, ast.Call) else None
            target = call.func if call else decorator
            if ast.unparse(target) == "nox.session":
                given = [k.value.value for k in (call.keywords if call else []) if k.arg == "name"]
                names.add(given[0] if given else function.name)
    return frozenset(names)


def override_variable(variant: str) -> str:
    """GILFREE_PYTHON_3_14 for 3.14, GILFREE_PYTHON_3_14T for 3.14t: the interpreter to use for a variant."""
    return "GILFREE_PYTHON_" + variant.upper().replace(".", "_")


def free_threaded(variant: str) -> bool:
    """The naming rule, defined here only: a free-threaded build's name ends in "t" (3.14t, 3.14.0t)."""
    return variant.endswith("t")


def gil_name(version: str) -> str:
    """The GIL build's name of the same release: 3.14t -> 3.14, 3.14.0t -> 3.14.0 (3.14 stays 3.14)."""
    return version.removesuffix("t")


# --- the file, as written (pydantic checks it) --------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EndpointSpec(_Strict):
    """What GET <path> must answer, before any load and after it (the TechEmpower habit)."""

    path: str | None = Field(default=None, pattern=r"^/")  # default: /<endpoint name>
    status: int = Field(default=200, ge=100, le=599)
    json_body: Any = Field(default=None, alias="json")  # the body, parsed as JSON, must equal this
    text: str | None = None  # or the body, as text, must equal this
    io_wait_ms: float | None = Field(default=None, gt=0)  # what the endpoint waits per request, if it fakes I/O

    @model_validator(mode="after")
    def _one_body(self):
        if self.json_body is not None and self.text is not None:
            raise PydanticCustomError("study", "give `json` or `text` for the expected body, not both")
        return self


class AppSpec(_Strict):
    interface: Literal["asgi", "asginl", "rsgi", "wsgi"]
    target: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")  # module:attribute, as Granian takes it
    directory: str  # where `target` is imported from, relative to the study file
    requirements: str  # what the environment under test holds, relative to the study file (granian included)
    endpoints: dict[Name, EndpointSpec] = Field(min_length=1)


class ProfileSpec(_Strict):
    python: dict[Variant, str]  # the interpreter uv is asked for, per variant ("3.14.0t")
    exclude_newer: str | None = None  # lock as PyPI stood at this time (uv's --exclude-newer)


class CellSpec(_Strict):
    """A cell's settings: the Granian flags and the load. Omitted keys come from the table's `cell`."""

    app: Name | None = None
    variant: Variant | None = None
    endpoint: Name | None = None
    workers: int | str | None = None  # "cpus": one worker per CPU the server may use
    blocking_threads: Positive | None = None  # omitted: Granian's default
    loop: Literal["auto", "asyncio", "uvloop", "rloop"] | None = None
    runtime_mode: Literal["st", "mt"] | None = None
    runtime_threads: Positive | None = None
    flags: tuple[str, ...] = ()  # further Granian flags, as given on its command line
    cpus: Positive | None = None  # the CPUs the server may use (the first k); the load generator gets the rest
    concurrency: Positive | None = None

    @field_validator("workers")
    @classmethod
    def _workers(cls, workers):
        if workers is not None and workers != "cpus" and not (isinstance(workers, int) and workers >= 1):
            raise PydanticCustomError("value", 'expected a whole number of at least 1, or "cpus"')
        return workers


class PostFigures(_Strict):
    """One row of a published table: its leading columns as printed, and its figures."""

    shown_as: tuple[str, ...]
    rps: float
    latency_avg_ms: float
    latency_max_ms: float
    cpu: float | None = None
    ram_mb: float | None = None


class RowSpec(CellSpec):
    post: PostFigures | None = None


class TableSpec(_Strict):
    number: Positive
    title: str
    columns: tuple[Column, ...] = Field(min_length=1)
    cell: CellSpec = CellSpec()
    rows: tuple[RowSpec, ...] | None = None  # the rows in order; or
    # every combination, in the order the keys are written (last fastest); a key "a+b" moves settings together:
    # "cpus+workers+concurrency" = [[1, 1, 128], [2, 2, 256]]
    grid: dict[str, list] | None = None
    post_command: str | None = None  # the source's own server command, quoted
    metrics: bool = False  # Granian's own counters for every cell of the table (Granian 2.7.0 and later)

    @model_validator(mode="after")
    def _rows_or_grid(self):
        if (self.rows is None) == (self.grid is None):
            raise PydanticCustomError("study", "give the table either `rows` or `grid`, and only one")
        for key, values in (self.grid or {}).items():
            names = key.split("+")
            if unknown := [name for name in names if name not in CellSpec.model_fields]:
                raise PydanticCustomError(
                    "study",
                    f"grid key {unknown[0]!r} is not a cell setting (one of: {', '.join(CellSpec.model_fields)})",
                )
            if len(names) > 1 and not all(isinstance(v, list) and len(v) == len(names) for v in values):
                raise PydanticCustomError(
                    "study",
                    f"grid key {key!r} moves {len(names)} settings together: give "
                    f"each value as a list of {len(names)}, such as {[1] * len(names)}",
                )
        return self


class SessionSpec(_Strict):
    variants: tuple[Variant, ...] = Field(min_length=1)
    tables: tuple[Name, ...] = Field(min_length=1)
    description: str


Selector = dict[str, Any]  # cell settings and their values: {variant = "3.14t"}, {table = "asgi-json", workers = 2}
BAND_FORMS = '"on par", "faster", "slower", "at least 1.5", "at most 0.95" or "0.70 to 0.90"'
BAND_PATTERN = r"^(on par|faster|slower|at least \d+(\.\d+)?|at most \d+(\.\d+)?|\d+(\.\d+)? to \d+(\.\d+)?)$"


def band_numbers(band: str) -> list[float]:
    """The ratios a written band names: "0.70 to 0.90" -> [0.7, 0.9]."""
    return [float(n) for n in re.findall(r"\d+(?:\.\d+)?", band)]


class NeedsSpec(_Strict):
    """What the rows behind a ratio must allow for it to be judged at all."""

    io_efficiency: float | None = Field(default=None, gt=0, le=1)  # both rows reach this share of the ideal I/O RPS
    # a "not held" counts only where the server could have had this many cores: a number, the source's own
    # over row's CPU ("post"), or the larger workers x blocking threads of the two rows
    cores: float | Literal["post", "workers_x_threads"] | None = None


class RatioSpec(_Strict):
    """One figure of the cells matching `over` divided by the same figure of their counterparts matching `under`
    (the same cell with `under`'s settings instead), for each cell of `cells`."""

    figure: Literal[RATIO_FIGURES]  # "memory": PSS where every run of both rows recorded it, else summed RSS
    cells: Selector = {}
    over: Selector = Field(min_length=1)
    under: Selector = Field(min_length=1)
    band: str
    needs: NeedsSpec = NeedsSpec()

    @field_validator("band")
    @classmethod
    def _band(cls, band):
        if not re.match(BAND_PATTERN, band):
            raise PydanticCustomError("value", f"expected {BAND_FORMS}")
        numbers = band_numbers(band)
        if any(n <= 0 for n in numbers) or (len(numbers) == 2 and numbers[0] >= numbers[1]):
            raise PydanticCustomError("value", 'expected ratios above 0, the lower first, such as "0.70 to 0.90"')
        return band

    @model_validator(mode="after")
    def _same_settings(self):
        for name, selector in (("cells", self.cells), ("over", self.over), ("under", self.under)):
            if unknown := [key for key in selector if key not in SELECTOR_KEYS]:
                raise PydanticCustomError(
                    "study", f"{name}: {unknown[0]!r} is not a cell setting (one of: {', '.join(SELECTOR_KEYS)})"
                )
        if set(self.over) != set(self.under):
            raise PydanticCustomError(
                "study",
                "`over` and `under` must name the same settings, such as "
                '{ variant = "3.14t" } over { variant = "3.14" }',
            )
        return self


class ClaimSpec(_Strict):
    """A claim in words and the ratios it rests on: held only when every ratio lies in its band."""

    text: str = Field(min_length=1)
    why: str | None = None  # why the bands are what they are, for the report
    ratios: tuple[RatioSpec, ...] = Field(min_length=1)


class ComparisonSpec(_Strict):
    """What `compare` sets side by side for any study: cells that differ in `setting` only."""

    setting: Literal[COMPARED_SETTINGS] = "variant"
    baseline: str | int | None = None  # the value every other is divided by; default: the first in the study
    band: float = Field(default=0.10, gt=0, lt=1)  # on par: a ratio within 1 ± band
    p99_budget_ms: float | None = Field(default=None, gt=0)  # the best configuration within this p99 latency


class StudyFile(_Strict):
    title: str
    variants: tuple[Variant, ...] = Field(min_length=1)
    duration: str = "30s"  # read by core.arguments.duration_seconds, as --duration is
    loadgen: Literal["rewrk", "wrk", "oha", "hey"] = "rewrk"  # the default --loadgen: the post's
    results: str | None = None  # relative to the study file; default: results/<study name>
    locks: str | None = None  # <locks>/<profile>/<app>.txt, relative to the study file; default: <name>-locks
    lock_python: str | None = Field(default=None, pattern=r"^3\.\d+$")  # uv's --python-version for the lock
    default_sessions: tuple[Name, ...] | None = None
    post_load_command: str | None = None
    post_setup: dict[str, Any] | None = None
    profiles: dict[Name, ProfileSpec] | None = None
    apps: dict[Name, AppSpec] = Field(min_length=1)
    tables: dict[Name, TableSpec] = Field(min_length=1)
    sessions: dict[Name, SessionSpec] | None = None
    # Free-threaded variants run with PYTHON_GIL=0: modules that did not declare free-threading support run
    # without the GIL, at the study's own risk; every record, row and report says so.
    gil_forced_off: tuple[Variant, ...] = ()
    metrics: bool = False  # Granian's own counters for every table (Granian 2.7.0 and later)
    repeat: Any = 1  # the default --repeat: rounds, or "auto" (rounds until the compared intervals are settled)
    comparison: ComparisonSpec = ComparisonSpec()
    claims: tuple[ClaimSpec, ...] = ()

    @field_validator("repeat")
    @classmethod
    def _repeat(cls, repeat):
        if repeat != "auto" and not (isinstance(repeat, int) and not isinstance(repeat, bool) and repeat >= 1):
            raise PydanticCustomError("value", 'expected a whole number of at least 1, or "auto"')
        return repeat

    @field_validator("gil_forced_off")
    @classmethod
    def _forced_off_free_threaded(cls, forced, info):
        variants = [variant for variant in info.data.get("variants", ()) if free_threaded(variant)]
        for variant in forced:
            if variant not in variants:
                raise PydanticCustomError(
                    "study",
                    f"{variant!r} is not one of the study's free-threaded variants "
                    f"({', '.join(variants) or 'none'}); only a free-threaded build "
                    f"can run without the GIL",
                )
        return forced

    @field_validator("duration")
    @classmethod
    def _duration(cls, duration):
        if duration_seconds(duration) is None:
            raise PydanticCustomError("value", f"expected {DURATION_FORMS}")
        return duration

    @field_validator("variants")
    @classmethod
    def _distinct(cls, variants):
        if len(set(variants)) != len(variants):
            raise PydanticCustomError("study", "name each variant once")
        return variants


def error_line(error: ValidationError) -> str:
    """The first error: its dotted key, what was expected, and what was given."""
    first = error.errors()[0]
    key = ".".join(str(part) for part in first["loc"]) or "(top level)"
    got = "" if first["type"] in ("missing", "study") else f", got {first['input']!r}"
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return f"{key}: {first['msg']}{got}{more}"


def expand(spec: TableSpec) -> list[tuple[dict, PostFigures | None]]:
    """The table's rows as settings dicts (the table's `cell` defaults under each row's own), with their figures."""
    defaults = spec.cell.model_dump(exclude_unset=True)
    if spec.rows is not None:
        return [({**defaults, **row.model_dump(exclude_unset=True, exclude={"post"})}, row.post) for row in spec.rows]
    rows = []
    for combination in itertools.product(*spec.grid.values()):
        settings = dict(defaults)
        for key, value in zip(spec.grid, combination):
            names = key.split("+")
            settings |= dict(zip(names, value if len(names) > 1 else [value]))
        try:
            CellSpec(**settings)  # each combination is checked as a written row would be
        except ValidationError as error:
            raise ValueError(error_line(error)) from None
        rows.append((settings, None))
    return rows


def read(path: Path) -> StudyFile:
    try:
        data = tomllib.loads(path.read_text())
    except OSError as error:
        raise StudyError(f"cannot be read ({error.strerror})") from None
    except tomllib.TOMLDecodeError as error:
        raise StudyError(f"not valid TOML ({error})") from None
    try:
        return StudyFile.model_validate(data)
    except ValidationError as error:
        raise StudyError(error_line(error)) from None
