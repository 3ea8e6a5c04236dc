"""Warnings as typed values: a kind and the figures it was found with, stored in the JSON records as objects.

A warning is made where it is found (a run, a cell, an interpreter, a calibration), kept as {kind, values,
message} in the record, and read back by its kind: no program has to match a sentence. The message is stored for
a person reading the JSON; reports make their sentences from the kind's template and the values.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum


class WarningKind(Enum):
    """Every kind of warning the harness gives, with the sentence its values fill in."""

    MACHINE_BUSY = (
        "machine_busy",
        "machine busy before the run: {busy_share:.0%} CPU use across {cores} cores (limit {limit:.0%})",
    )
    LOADGEN_SATURATED = (
        "loadgen_saturated",
        "load generator used {cores:.2f} cores from {threads} thread(s): it may be the bottleneck",
    )
    LOAD_ERRORS = ("load_errors", "{errors} errors during the load")
    RATE_SHORTFALL = (
        "rate_shortfall",
        "achieved {achieved_rps:.0f} RPS of the {offered_rps:.10g} offered "
        "({share:.0%}, tolerance {tolerance:.0%}): the server, or the load generator, "
        "could not keep up, and the requests never sent are in no latency figure",
    )
    RPS_VARIED = ("rps_varied", "RPS varied {variation:.0%} across {runs} runs (limit {limit:.0%})")  # to schema 5
    RPS_SPREAD = (
        "rps_spread",
        "RPS spread {rsd:.1%} (relative standard deviation) across {runs} runs (limit {limit:.0%})",
    )
    OUTLIER_RUN = (
        "outlier_run",
        "run {run} of {runs} is an outlier: {rps:.0f} RPS against a median of "
        "{median:.0f}, more than {limit:.0f} robust standard deviations (1.4826 x the "
        "median absolute deviation) away",
    )
    DRIFT = (
        "drift",
        "RPS drifted {change:+.0%} from the first {runs_per_part} runs (geometric mean "
        "{first_mean:.0f}) to the last {runs_per_part} ({last_mean:.0f}), beyond the noise within "
        "them (t-test, p={p_value:.3f}): something changed during the session",
    )
    REQUESTS_GAP = (
        "requests_gap",
        "Granian handled {handled} requests and the load generator counted "
        "{counted} (allowed gap {allowed}): one of the two counts is wrong",
    )
    OTHER_RELEASE = ("other_release", "CPython {version} is not the {wanted} that profile {profile} asks for")
    GIL_FORCED_OFF = (
        "gil_forced_off",
        "GIL forced off (PYTHON_GIL=0, the study's gil_forced_off): modules that did "
        "not declare free-threading support ran without the GIL",
    )
    CALIBRATION_BUSY = (
        "calibration_busy",
        "machine busy before the run at c={concurrency}: {busy_share:.0%} CPU use (limit {limit:.0%})",
    )
    CEILING_NOT_LOADGEN_BOUND = (
        "ceiling_not_loadgen_bound",
        "{generator} used {cores:.2f} cores of {threads} thread(s) at c={concurrency}: the "
        "machine or nginx ({nginx_cores:.2f} cores), not it alone, set this ceiling",
    )
    # Machine readiness (run/readiness.py): an item that makes ratios drift, as read at the session's start, with
    # the command that fixes it; and throttling for heat the kernel counted during a run.
    MACHINE_NOT_READY = ("machine_not_ready", "machine not ready, {title}: {read} (fix: {fix})")
    THERMAL_THROTTLED = ("thermal_throttled", "the CPUs were throttled for heat {events} time(s) during the run")
    UNSORTED = ("unsorted", "{text}")  # a sentence stored by an older harness that matches no kind's template

    def __init__(self, key: str, template: str):
        self.key, self.template = key, template


KINDS_BY_KEY = {kind.key: kind for kind in WarningKind}


@dataclass(frozen=True)
class StudyWarning:
    """One warning: its kind and the values it was found with."""

    kind: WarningKind
    values: dict = field(default_factory=dict)

    @property
    def message(self) -> str:
        return self.kind.template.format(**self.values)

    def __str__(self) -> str:
        return self.message

    def __hash__(self) -> int:
        return hash((self.kind, tuple(sorted(self.values.items()))))

    def as_dict(self) -> dict:
        return {"kind": self.kind.key, "values": self.values, "message": self.message}

    @classmethod
    def from_dict(cls, stored: dict) -> StudyWarning:
        kind = KINDS_BY_KEY.get(stored["kind"])
        if kind is None:  # a kind from a newer harness: its sentence is all that can be shown
            return cls(WarningKind.UNSORTED, {"text": stored.get("message", stored["kind"])})
        return cls(kind, stored["values"])


def stored(warnings: list[StudyWarning]) -> list[dict]:
    """The warnings as the record keeps them, each once, in the order found."""
    return [warning.as_dict() for warning in dict.fromkeys(warnings)]


def read(stored_warnings: list[dict]) -> list[StudyWarning]:
    return [StudyWarning.from_dict(warning) for warning in stored_warnings]


# The sentences of records stored before warnings had kinds (schema 4 and older), read back into their kinds.
_NUMBER = r"([0-9.]+)"
# (its kind, the sentence's pattern, its values from the pattern's groups)
_SENTENCES: tuple[tuple[WarningKind, str, Callable[[tuple[str, ...]], dict]], ...] = (
    (
        WarningKind.MACHINE_BUSY,
        rf"machine busy before the run: {_NUMBER}% CPU use across (\d+) cores \(limit {_NUMBER}%\)",
        lambda g: {"busy_share": float(g[0]) / 100, "cores": int(g[1]), "limit": float(g[2]) / 100},
    ),
    (
        WarningKind.LOADGEN_SATURATED,
        rf"load generator used {_NUMBER} cores from (\d+) thread\(s\).*",
        lambda g: {"cores": float(g[0]), "threads": int(g[1])},
    ),
    (WarningKind.LOAD_ERRORS, r"(\d+) errors during the load", lambda g: {"errors": int(g[0])}),
    (
        WarningKind.RPS_VARIED,
        rf"RPS varied {_NUMBER}% across (\d+) runs \(limit {_NUMBER}%\)",
        lambda g: {"variation": float(g[0]) / 100, "runs": int(g[1]), "limit": float(g[2]) / 100},
    ),
    (
        WarningKind.OTHER_RELEASE,
        r"CPython (\S+) is not the (\S+) that profile (\S+) asks for",
        lambda g: {"version": g[0], "wanted": g[1], "profile": g[2]},
    ),
    (
        WarningKind.OTHER_RELEASE,
        r"CPython (\S+) is not the post's (\S+)",
        lambda g: {"version": g[0], "wanted": g[1], "profile": "article"},
    ),
    (WarningKind.GIL_FORCED_OFF, r"GIL forced off .*", lambda g: {}),
)


def from_sentence(text: str) -> StudyWarning:
    """A warning an older harness stored as a sentence, by the template it was written from; UNSORTED otherwise."""
    for kind, pattern, values in _SENTENCES:
        if match := re.fullmatch(pattern, text):
            return StudyWarning(kind, values(match.groups()))
    return StudyWarning(WarningKind.UNSORTED, {"text": text})
