"""Where the load generator runs, behind one interface: this machine (LocalHost), or another one reached with
ssh (remote.SshHost). The session asks its host everything that differs between the two (the tool's record, its
CPUs, how its command is shown, the run itself, the answer check from there), and never which one it has.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol

from gilfree.run import tools
from gilfree.run.loadgen import LoadGenerator, LoadResult, require, run_load, version
from gilfree.run.processes import server_cpus

CpuSplit = tuple[tuple[int, ...], tuple[int, ...] | None]  # the server's CPUs here, the load generator's (or None)


class LoadHost(Protocol):
    """Where the load generator runs, and what the session asks of it there."""

    @property
    def destination(self) -> str | None:
        """Where the load comes from, as the records name it (settings' loadgen_host, the load generator's host):
        ssh's [user@]host, or None for this machine, whose facts are the record's own."""

    def prepare(self, loadgen: str) -> int:
        """Before any environment is built: install the tool where we can; 0 when nothing failed."""

    def describe(self, generator: LoadGenerator) -> dict:
        """The load generator's record: its version there, the host and its machine's facts. Refuses a tool that
        is not installed there."""

    def cpus_needed_here(self, generator: LoadGenerator) -> int:
        """How many of this machine's CPUs the load generator takes beside the server's."""

    def cpus_for_server(self, count: int) -> CpuSplit:
        """`count` of this machine's CPUs for the server, and those the load generator is pinned to (None: none of
        this machine's)."""

    def shown(self, command: list[str]) -> list[str]:
        """The tool's command as the record shows it: as it runs there."""

    def run_load(
        self, generator: LoadGenerator, command: list[str], duration_s: int, cpus: tuple[int, ...] | None = None
    ) -> tuple[LoadResult, dict]:
        """Run the tool to completion (on `cpus` of this machine, where cpus_for_server placed it); return its
        figures and its own CPU use."""

    def check(self, generator: LoadGenerator, url: str) -> str | None:
        """Whether this host gets right answers from `url`, before and after the load; None when it does, else
        why not."""


@dataclass(frozen=True)
class LocalHost:
    """This machine: the tool runs as our child, on CPUs of its own when they are placed."""

    destination: ClassVar[None] = None

    def prepare(self, loadgen: str) -> int:
        """A cargo tool that is missing here is installed with cargo (`nox -s tools`); the others are the
        system's, which describe() requires."""
        return tools.main([loadgen]) if loadgen in tools.TOOLS_BY_NAME else 0

    def describe(self, generator: LoadGenerator) -> dict:
        require(generator)
        return {"name": generator.name, "version": version(generator), "host": None, "machine": None}

    def cpus_needed_here(self, generator: LoadGenerator) -> int:
        return generator.threads or 1

    def cpus_for_server(self, count: int) -> CpuSplit:
        return server_cpus(count)

    def shown(self, command: list[str]) -> list[str]:
        return command

    def run_load(
        self, generator: LoadGenerator, command: list[str], duration_s: int, cpus: tuple[int, ...] | None = None
    ) -> tuple[LoadResult, dict]:
        return run_load(generator, command, duration_s, cpus=cpus)

    def check(self, generator: LoadGenerator, url: str) -> str | None:
        """Always None: the server's own check (GranianServer.verify) already asks from this machine."""
        return None
