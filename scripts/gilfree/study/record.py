"""A stored result, typed: one view of a record and its runs, built after migration (results.migrate), read by
statistics, claims, verdicts, outcomes, tables and comparisons alike.

The JSON (results.write_record) stays the contract between running and reporting; this is how every layer
above reads it. Parts the reports do not read (timelines, timings, commands) are kept as the JSON has them:
each model allows keys it does not name, so a record read and written again loses nothing.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gilfree.core import stats
from gilfree.study.studies import Cell
from gilfree.study.summary import succeeded


class _Part(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class Load(_Part):
    """What the load generator reported for one run, or the median over a cell's runs."""

    rps: float
    latency_avg_ms: float
    latency_max_ms: float
    requests: int | None = None
    errors: int | None = None  # None: not stored (never taken as no errors)
    non_2xx: int | None = None  # None: the tool cannot tell (rewrk), which is not a fault
    generator: str | None = None
    loadgen_cpu_cores: float | None = None
    loadgen_wall_s: float | None = None
    latency_percentiles_ms: dict[str, float | None] | None = None
    offered_rps: float | None = None  # set for an open-loop run: the rate asked for

    def percentile_ms(self, percentile: str) -> float | None:
        """One latency percentile, such as "99"; None where the load generator gave none (rewrk)."""
        return (self.latency_percentiles_ms or {}).get(percentile)


class Resources(_Part):
    """What the sampler read of the server's process tree over the load window."""

    cpu_cores: float | None = None
    peak_rss_bytes: int | None = None
    end_pss_bytes: int | None = None  # PSS as the load ended: None where /proc/PID/smaps_rollup is missing
    end_uss_bytes: int | None = None
    interval_s: float | None = None
    peak_processes: int | None = None
    peak_threads: int | None = None
    samples: int | None = None
    window_s: float | None = None
    sampler_cpu_s: float | None = None
    rss_growth_last_half: float | None = None
    rss_growth_bytes_per_s: float | None = None

    @property
    def growth(self) -> stats.RssGrowth | None:
        """How RSS moved over the second half of the load; None where unknown (a short load, an older record)."""
        if self.rss_growth_last_half is None or self.rss_growth_bytes_per_s is None:
            return None
        return stats.RssGrowth(self.rss_growth_last_half, self.rss_growth_bytes_per_s)


class Measured(_Part):
    """What a run and a record have alike: a status, and the load and resources where it measured."""

    status: str
    failure: str | None = None
    load: Load | None = None
    resources: Resources | None = None
    warnings: list[dict[str, Any]] = []

    @property
    def ok(self) -> bool:
        """The one test of success every layer uses (summary.succeeded)."""
        return succeeded({"status": self.status})


class Run(Measured):
    started_at: str | None = None
    finished_at: str | None = None
    granian: dict[str, Any] | None = None  # what Granian ran, and its counters where counted
    timeline: dict[str, Any] | None = None  # the sampler's series

    @property
    def span(self) -> tuple[str | None, str | None]:
        """When it started and finished: what pairing runs of two cells reads (results.paired)."""
        return self.started_at, self.finished_at


class Interpreter(_Part):
    version: str
    label: str
    variant: str
    free_threaded_build: bool
    gil_enabled: bool | None = None
    stand_in: bool = False
    executable: str | None = None
    implementation: str | None = None
    packages: dict[str, str] = {}
    gil_forced_off: bool = False
    config_args: str | None = None
    optimisations: dict[str, bool] | None = None  # None: not recorded by an older harness

    @property
    def shown(self) -> str:
        """As every table prints it: the version that ran, and a GIL forced off."""
        return self.label + (" (GIL forced off)" if self.gil_forced_off else "")


class Settings(_Part):
    duration_s: int | float
    loadgen: str
    port: int | None = None
    repeat: int | str = 1
    warmup_s: int | float | None = None
    server_cpus: list[int] | None = None
    loadgen_cpus: list[int] | None = None
    rate_rps: float | None = None
    bind: str = "127.0.0.1"
    loadgen_host: str | None = None


class Machine(_Part):
    cpu_model: str | None = None
    logical_cores: int | None = None
    physical_cores: int | None = None
    memory_bytes: int | None = None
    kernel: str | None = None
    readiness: dict[str, Any] | None = None  # as read at the session's start (readiness.Readiness.as_dict)

    @property
    def identity(self) -> str:
        """What makes two machines the same for a measurement: the hardware a container sees of its host, not
        the host name (every new container gets another) nor a machine id (another per image)."""
        memory = self.memory_bytes
        return (
            f"{self.cpu_model}, {self.logical_cores} logical / {self.physical_cores} "
            f"physical cores, {round(memory / 2**30) if memory else '?'} GiB"
        )


class LoadGeneratorInfo(_Part):
    name: str | None = None
    version: str | None = None
    host: str | None = None
    machine: dict[str, Any] | None = None


class Record(Measured):
    """One cell's stored result: its runs (failed ones kept apart), their medians and spread, and how, where
    and with what it was measured."""

    schema_: int = Field(default=0, alias="schema")  # "schema" itself is a pydantic name
    study: str = "article"
    cell: Cell
    settings: Settings
    interpreter: Interpreter
    runs: list[Run] = []
    failed_runs: list[Run] = []
    machine: Machine | None = None
    load_generator: LoadGeneratorInfo | None = None
    environment: dict[str, Any] | None = None
    commands: dict[str, Any] | None = None
    granian: dict[str, Any] | None = None  # granian_counters.summary: what ran, the counters' medians
    rounds: dict[str, Any] | None = None
    spread: dict[str, dict[str, float | None]] | None = None
    stability: dict[str, Any] | None = None
    fingerprint: str | None = None
    # In memory only (study.ceiling.with_ceilings): the load generator's calibrated ceiling for this row.
    ceiling_rps: float | None = None

    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)

    @field_validator("cell", mode="before")
    @classmethod
    def _cell(cls, cell):
        return Cell(**cell) if isinstance(cell, dict) else cell

    @classmethod
    def read(cls, stored: dict) -> Record:
        """A migrated record's JSON as the typed record."""
        return cls.model_validate(stored)

    def stored(self) -> dict:
        """The JSON the record is stored as."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True, exclude={"ceiling_rps"})

    @property
    def ok_runs(self) -> list[Run]:
        """The runs that measured (a record keeps its failed runs apart, but older ones did not)."""
        return [run for run in self.runs if run.ok]

    @property
    def generator(self) -> str:
        """The load generator that ran, as it names itself, else as the settings asked for it."""
        return (self.load_generator.name if self.load_generator else None) or self.settings.loadgen
