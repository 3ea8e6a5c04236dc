"""What the server did, by its own count: Granian's Prometheus counters (`--metrics`, Granian 2.7.0 and later),
read just before and just after the load window, and what Granian resolved its loop and runtime mode to.

Per worker: requests handled, the blocking pool's busy and idle time and queue, and the time its threads waited
for the GIL before running Python (`py_wait`, microseconds; always 0 on a free-threaded build). The GIL-wait share
(py_wait over busy time) is the cause behind a GIL row's figures; the pool's utilisation (busy time over the blocking
threads' time in the window) says whether the threads were the limit.
"""

from __future__ import annotations

import statistics
import time
import urllib.request

from packaging.version import Version
from prometheus_client.parser import text_string_to_metric_families

from gilfree.core.warnings import StudyWarning, WarningKind
from gilfree.study.studies import Cell

SINCE = Version("2.7.0")  # the first Granian with --metrics
SCRAPE_INTERVAL_S = 1  # Granian's shortest: its counters are published at most this often
SETTLE_TRIES = 5
# Counters (deltas over the window) and gauges (as they stood after it), by Granian's name.
COUNTERS = {
    "granian_requests_handled": "requests_handled",
    "granian_blocking_busy_cumulative": "blocking_busy_us",
    "granian_blocking_idle_cumulative": "blocking_idle_us",
    "granian_py_wait_cumulative": "py_wait_us",
}
GAUGES = {"granian_blocking_queue": "blocking_queue", "granian_blocking_threads": "blocking_threads"}
# Requests the server handled but the load generator did not count: those in flight when it stopped (at most
# one per connection), and 1% for what a closed window may cut; more is a warning.
REQUESTS_TOLERANCE = 0.01


class MetricsUnsupported(ValueError):
    """The environment's Granian has no --metrics."""


class CountersUnavailable(Exception):
    """Granian's exporter did not answer: the run cannot say what the server did, so it fails."""


def check_supported(granian_version: str, where: str) -> None:
    if Version(granian_version) < SINCE:
        raise MetricsUnsupported(
            f"--metrics needs Granian {SINCE} or later (its --metrics counters), and {where} "
            f"holds Granian {granian_version}: use a profile or lock with a newer Granian "
            f"(GILFREE_PROFILE=latest for the post's study), or leave metrics off"
        )


def flags(port: int, address: str = "127.0.0.1") -> list[str]:
    return [
        "--metrics",
        "--metrics-scrape-interval",
        str(SCRAPE_INTERVAL_S),
        "--metrics-address",
        address,
        "--metrics-port",
        str(port),
    ]


def scrape(port: int, address: str = "127.0.0.1") -> dict[str, dict[str, float]]:
    """worker -> figure -> value, as the exporter publishes them now."""
    with urllib.request.urlopen(f"http://{address}:{port}/metrics", timeout=5) as answer:
        return parse(answer.read().decode())


def parse(text: str) -> dict[str, dict[str, float]]:
    """Granian's Prometheus text: worker -> figure -> value, for the figures this harness reads."""
    workers: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        name = COUNTERS.get(family.name) or GAUGES.get(family.name)
        if not name:
            continue
        for sample in family.samples:
            workers.setdefault(sample.labels.get("worker", "?"), {})[name] = sample.value
    return workers


def settled(port: int, address: str = "127.0.0.1") -> dict[str, dict[str, float]]:
    """The counters once they stand still: two scrapes a publishing interval apart that agree (the exporter
    publishes what happened up to its last interval, not up to now)."""
    previous = None
    for attempt in range(SETTLE_TRIES + 1):
        if attempt:
            time.sleep(SCRAPE_INTERVAL_S + 0.1)  # the exporter's own period, not a guess at an event
        try:
            current = scrape(port, address)
        except OSError as error:  # the exporter starts beside the server, and may answer a little later
            current, failure = None, error
        if current is not None and current == previous:
            return current
        previous = current
    if previous is None:
        raise CountersUnavailable(f"Granian's counters on {address}:{port} did not answer: {failure}")
    raise CountersUnavailable(
        f"Granian's counters on {address}:{port} did not stand still over {SETTLE_TRIES} "
        f"scrapes {SCRAPE_INTERVAL_S} s apart: the server was still busy"
    )


def window(before: dict, after: dict, seconds: float) -> dict:
    """Per worker and summed: the counters' growth over the load window (`seconds` long), the gauges after it,
    and the shares."""
    workers = {
        worker: {
            **{name: figures.get(name, 0) - before.get(worker, {}).get(name, 0) for name in COUNTERS.values()},
            **{name: figures.get(name) for name in GAUGES.values()},
        }
        for worker, figures in after.items()
    }
    total = {name: sum(w[name] for w in workers.values()) for name in COUNTERS.values()}
    total |= {name: sum(w[name] or 0 for w in workers.values()) for name in GAUGES.values()}
    return {
        "workers": workers,
        "total": total | shares(total, seconds),
        "window_s": seconds,
        "scrape_interval_s": SCRAPE_INTERVAL_S,
    }


def shares(total: dict, seconds: float) -> dict:
    """GIL wait over busy time; busy time over what the blocking threads had in the window. Not over busy + idle:
    the threads keep idling while the counters settle after the load, which would dilute it."""
    busy, capacity = total["blocking_busy_us"], total["blocking_threads"] * seconds * 1e6
    return {
        "gil_wait_share": total["py_wait_us"] / busy if busy else None,
        "blocking_utilisation": busy / capacity if capacity else None,
    }


def requests_gap(counters: dict | None, counted: int | None, cell: Cell) -> StudyWarning | None:
    """The server handled another number of requests than the load generator counted, beyond what the
    connections in flight at its end explain."""
    if not counters or counted is None:
        return None
    handled = int(counters["total"]["requests_handled"])
    allowed = cell.concurrency + int(REQUESTS_TOLERANCE * counted)
    if abs(handled - counted) <= allowed:
        return None
    return StudyWarning(WarningKind.REQUESTS_GAP, {"handled": handled, "counted": counted, "allowed": allowed})


def summary(runs: list[dict]) -> dict | None:
    """A record's: what Granian ran (its last run's), and the median shares over the runs that counted."""
    if not runs or "granian" not in runs[-1]:
        return None  # a record from before the harness recorded it
    counted = [run["granian"]["counters"]["total"] for run in runs if (run.get("granian") or {}).get("counters")]
    medians = {
        name: statistics.median(values) if (values := [c[name] for c in counted if c[name] is not None]) else None
        for name in ("gil_wait_share", "blocking_utilisation")
    }
    ran = {key: value for key, value in runs[-1]["granian"].items() if key != "counters"}
    return ran | (medians | {"counted_runs": len(counted)} if counted else {})
