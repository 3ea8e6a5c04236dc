"""The machine's readiness to measure as a record keeps it (machine.readiness): items read at a session's start,
each ok, warn or unknown, with what was read and the fix. run/readiness.py reads them; the reports show them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import Enum

from gilfree.core.warnings import StudyWarning, WarningKind


class Status(Enum):
    OK = "ok"
    WARN = "warn"  # read, and it makes ratios drift
    UNKNOWN = "unknown"  # cannot be read here

    @property
    def rank(self) -> int:
        return (Status.OK, Status.UNKNOWN, Status.WARN).index(self)


@dataclass(frozen=True)
class Item:
    """One thing read: what it is, its status, what was read (in words and as JSON) and, where it warns, what a
    person would run to fix it (commands in backticks)."""

    key: str
    title: str
    status: Status
    read: str
    value: object = None
    fix: str | None = None

    def as_dict(self) -> dict:
        return {
            "key": self.key,
            "title": self.title,
            "status": self.status.value,
            "read": self.read,
            "value": self.value,
            "fix": self.fix,
        }

    @classmethod
    def from_dict(cls, stored: dict) -> Item:
        return cls(
            stored["key"],
            stored["title"],
            Status(stored["status"]),
            stored["read"],
            stored.get("value"),
            stored.get("fix"),
        )

    def warning(self) -> StudyWarning:
        return StudyWarning(
            WarningKind.MACHINE_NOT_READY,
            {"item": self.key, "title": self.title, "read": self.read, "fix": self.fix or "none known"},
        )


@dataclass(frozen=True)
class Readiness:
    """Every item, in a fixed order, read at one moment (a session's start)."""

    read_at: str
    items: tuple[Item, ...]

    def item(self, key: str) -> Item:
        return next(item for item in self.items if item.key == key)

    def with_status(self, status: Status) -> list[Item]:
        return [item for item in self.items if item.status is status]

    def warnings(self) -> list[StudyWarning]:
        """A MACHINE_NOT_READY warning per item that makes ratios drift."""
        return [item.warning() for item in self.with_status(Status.WARN)]

    def for_runs(self, runs: Sequence[dict]) -> Readiness:
        """This reading with its throttling item the one of these runs (each run's `throttle_events`)."""
        events = [run.get("throttle_events") for run in runs]
        counted = [n for n in events if n is not None]
        return self._with(throttling_during(sum(counted), len(counted), len(events)))

    def _with(self, changed: Item) -> Readiness:
        return replace(self, items=tuple(changed if item.key == changed.key else item for item in self.items))

    def as_dict(self) -> dict:
        return {"read_at": self.read_at, "items": [item.as_dict() for item in self.items]}

    @classmethod
    def from_dict(cls, stored: dict) -> Readiness:
        return cls(stored["read_at"], tuple(Item.from_dict(item) for item in stored["items"]))

    def text(self) -> str:
        """Item by item, for a terminal: status, what was read, and the fix where it warns."""
        width = max(len(item.title) for item in self.items)
        lines = []
        for item in self.items:
            lines.append(f"{item.status.value:<8} {item.title:<{width}}  {item.read}")
            if item.fix and item.status is Status.WARN:
                lines.append(f"{'':<8} {'':<{width}}  fix: {item.fix}")
        warned, unknown = self.with_status(Status.WARN), self.with_status(Status.UNKNOWN)
        lines.append(
            f"{len(warned)} of {len(self.items)} items can make ratios drift"
            + (f" ({', '.join(item.key for item in warned)})" if warned else "")
            + f"; {len(unknown)} cannot be read here"
            + (f" ({', '.join(item.key for item in unknown)})" if unknown else "")
        )
        return "\n".join(lines)


def merged(readings: Sequence[Readiness]) -> Readiness:
    """Several records' readings of one session as one: per item, the worst status (warn, then unknown), and
    the throttling of all their runs together."""
    first = readings[0]
    items = []
    for item in first.items:
        each = [reading.item(item.key) for reading in readings]
        if item.key == "throttling" and all(isinstance(i.value, dict) and "runs" in i.value for i in each):
            items.append(
                throttling_during(
                    sum(i.value["events"] for i in each),
                    sum(i.value["counted_runs"] for i in each),
                    sum(i.value["runs"] for i in each),
                )
            )
        else:
            items.append(max(each, key=lambda i: i.status.rank))
    return replace(first, items=tuple(items))


def throttling_during(events: int, counted_runs: int, runs: int) -> Item:
    """The throttling item of a cell's runs: `events` seen over the `counted_runs` of its `runs` whose counters
    could be read."""
    title = "Thermal throttling"
    value = {"events": events, "counted_runs": counted_runs, "runs": runs}
    if events:
        return Item(
            "throttling",
            title,
            Status.WARN,
            f"{events} throttling event(s) during {counted_runs} run(s): the CPUs slowed down for heat",
            value,
            "cool the machine, or cap the clock below where it throttles: `sudo cpupower frequency-set --max <MHz>MHz`",
        )
    if counted_runs < runs or not runs:
        return Item(
            "throttling",
            title,
            Status.UNKNOWN,
            f"counted in {counted_runs} of {runs} run(s): the kernel exposes no thermal_throttle counters here"
            if runs
            else "no run yet",
            value,
        )
    return Item("throttling", title, Status.OK, f"none during the {runs} run(s)", value)
