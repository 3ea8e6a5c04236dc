"""What the records' instruments are, as the records name them: the facts a report needs to read a stored figure
(how many threads a load generator drives the load from, which percentiles it gives, how often the sampler
read), defined here once for the code that measures and the reports that judge.
"""

from __future__ import annotations

from enum import Enum

PERCENTILES = ("50", "90", "99", "99.9")  # a run's latency_percentiles_ms keys
# The threads each load generator drives the load from; None: as many as it likes (oha's runtime, Go's).
LOADGEN_THREADS: dict[str, int | None] = {"wrk": 1, "rewrk": 1, "oha": None, "hey": None}
SAMPLE_INTERVAL_S = 0.25  # the sampler's interval where a record does not say
# The build flags a record's interpreter.optimisations reports on, by name, with CPython's configure option.
OPTIMISATION_FLAGS = {"pgo": "--enable-optimizations", "lto": "--with-lto", "jit": "--enable-experimental-jit"}
FIRST_POINTS = (1, 2)  # the least core-scaling curve that has a slope: k=1 and k=2


def loadgen_threads(generator: str | None) -> int | None:
    """The threads a recorded load generator drove the load from; None: no fixed count, or a tool not known."""
    return LOADGEN_THREADS.get(generator or "")


class Stop(Enum):
    """Why --repeat auto stopped adding rounds: (the key a record's rounds.stopped_by holds, the reason said to
    the terminal and in the tables)."""

    SETTLED = ("settled", "every compared interval is narrower than the target")
    DECIDED = ("decided", "every compared interval is narrower than the target or lies clearly outside the on-par band")
    MAX_ROUNDS = ("max_rounds", "the most rounds allowed were run, and some interval is still wider than the target")
    BUDGET = ("budget", "another round would pass the time budget, and some interval is still wider than the target")

    def __init__(self, key: str, sentence: str):
        self.key, self.sentence = key, sentence
