"""Load generators behind one interface: how to invoke each, and how to read what it prints.

The post used rewrk; wrk, oha and hey are offered beside it. Each tool's own figures are taken as it reports
them: requests per second over its measured window, mean and max latency, and the latency percentiles where
the tool gives them (rewrk gives none: the rows of its --pct table are means of its slowest requests, not
percentiles). All of them run a closed loop (each connection waits for its answer before it sends again), as the
post did; oha can also offer a fixed arrival rate (open loop), correcting its latencies for the requests a slow
server made it send late.
"""

from __future__ import annotations

import json
import re
import resource
import shutil
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

from gilfree.run.processes import dies_with_parent, finish, pinned, signal_group
from gilfree.run.tools import TOOLS_BY_NAME
from gilfree.study.instruments import LOADGEN_THREADS, PERCENTILES

WRK_REPORT = Path(__file__).with_name("wrk_report.lua")
# wrk drops a response slower than its timeout (default 2 s) from the latency figures, and hey counts it as an
# error (default 20 s); the post saw 27 s.
REQUEST_TIMEOUT_S = 60


# The latency percentiles recorded for every run, as the keys of `latency_percentiles_ms`.


class LoadGenError(Exception):
    """The load generator is missing, failed, or printed something we cannot read."""


@dataclass(frozen=True)
class LoadResult:
    """What one load run measured, in the units of the post's tables."""

    rps: float
    latency_avg_ms: float
    latency_max_ms: float
    requests: int
    errors: int
    non_2xx: int | None  # None: the tool cannot tell (rewrk never reads status codes)
    # One value per PERCENTILES key, None for one the tool does not give (hey has no p99.9); None for a tool that
    # gives no percentiles at all (rewrk).
    latency_percentiles_ms: dict[str, float | None] | None

    def as_dict(self) -> dict:
        return asdict(self)

    def inconsistencies(self, resolution_ms: float) -> list[str]:
        """What cannot be true of any set of latencies, beyond the tool's rounding: percentiles out of order or
        above the maximum, a mean above the maximum, or a mean that the percentiles rule out. At least (100 - q)%
        of the requests took p_q or longer, so the mean is at least p_q * (100 - q) / 100 (p50 at most twice the
        mean); and at least half took p50 or less and the rest the maximum at most, so the mean is at most
        (p50 + max) / 2."""
        mean, top = self.latency_avg_ms, self.latency_max_ms
        known = {q: v for q, v in (self.latency_percentiles_ms or {}).items() if v is not None}

        def above(a: float, b: float) -> bool:  # a > b by more than rounding (the tool's, or 1%)
            return a > b + max(resolution_ms, abs(b) * 0.01)

        ordered = [*((f"p{q}", v) for q, v in known.items()), ("the maximum", top)]
        problems = [
            f"{low} {a:.3f}ms above {high} {b:.3f}ms"
            for (low, a), (high, b) in zip(ordered, ordered[1:])
            if above(a, b)
        ]
        if above(mean, top):
            problems.append(f"mean {mean:.3f}ms above the maximum {top:.3f}ms")
        problems += [
            f"p{q} {v:.3f}ms needs a mean of at least {v * (100 - float(q)) / 100:.3f}ms, not {mean:.3f}ms"
            for q, v in known.items()
            if above(v * (100 - float(q)) / 100, mean)
        ]
        if "50" in known and above(mean, (known["50"] + top) / 2):
            problems.append(f"mean {mean:.3f}ms above (p50 + max) / 2 = {(known['50'] + top) / 2:.3f}ms")
        return problems


def percentiles_ms(given: dict[str, float | None], scale: float) -> dict[str, float | None]:
    """The tool's own percentiles (by PERCENTILES key, in its unit) in milliseconds; one it lacks is None."""
    return {q: None if (value := given.get(q)) is None else value * scale for q in PERCENTILES}


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _json_line(stdout: str, tool: str) -> dict:
    """The last line of stdout that parses as a JSON object."""
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                break
    raise LoadGenError(f"{tool} printed no JSON report; its output ended with: {stdout[-300:]!r}")


def _whole_json(stdout: str, tool: str) -> dict:
    start = stdout.find("{")
    try:
        return json.loads(stdout[start:]) if start >= 0 else {}
    except json.JSONDecodeError as error:
        raise LoadGenError(f"{tool} printed invalid JSON ({error}); output began with: {stdout[:300]!r}") from None


class LoadGenerator(Protocol):
    # What a tool is, read-only: each implementation gives them as class attributes.
    @property
    def name(self) -> str: ...

    @property
    def install_hint(self) -> str: ...

    @property
    def version_command(self) -> tuple[str, ...]: ...

    @property
    def threads(self) -> int | None:
        """The threads it drives the load from; None: as many as it likes."""

    @property
    def open_loop(self) -> bool:
        """Whether it can offer a fixed arrival rate (`rate`), correcting latency for it."""

    @property
    def resolution_ms(self) -> float:
        """How finely it reports a latency (rounding), for the consistency checks."""

    def command(self, url: str, duration_s: int, concurrency: int, rate: float | None = None) -> list[str]: ...

    def parse(self, stdout: str) -> LoadResult: ...


def version(generator: LoadGenerator) -> str:
    """The tool's own word on its version (its first line of output), for the record."""
    try:
        completed = subprocess.run(list(generator.version_command), capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"unknown ({error})"
    if completed.returncode != 0 and not completed.stdout.strip():  # wrk -v exits 1, but says its version
        return f"unknown ({completed.stderr.strip()[:100]})"
    lines = (completed.stdout + completed.stderr).strip().splitlines()
    return ANSI.sub("", lines[0]).strip() if lines else "unknown"


def cargo_hint(name: str) -> str:
    """How to install a tool that `nox -s tools` builds with cargo, at the version it pins."""
    return (
        f"install it with `nox -s tools` (or `cargo install {name} --version {TOOLS_BY_NAME[name].version} --locked`)"
    )


def closed_loop_only(generator: LoadGenerator, rate: float | None) -> None:
    if rate is not None:
        raise LoadGenError(f"{generator.name} runs a closed loop only; it cannot offer a fixed rate of {rate} RPS")


def rate_arg(rate: float) -> str:
    """A rate as a plain decimal (5000, 2.5), never in exponent form."""
    return f"{rate:f}".rstrip("0").rstrip(".")


def require(generator: LoadGenerator) -> None:
    """Fail before any server starts when the tool is not installed."""
    if shutil.which(generator.name) is None:
        raise LoadGenError(
            f"load generator {generator.name!r} is not on PATH; {generator.install_hint}, "
            f"or choose another with --loadgen ({', '.join(LOADGENS)})"
        )


class Wrk:
    name = "wrk"
    version_command = ("wrk", "-v")
    threads = LOADGEN_THREADS["wrk"]
    open_loop = False
    resolution_ms = 0.001  # whole microseconds
    install_hint = "install it with `apt-get install wrk` (Debian/Ubuntu) or `brew install wrk`"

    def command(self, url: str, duration_s: int, concurrency: int, rate: float | None = None) -> list[str]:
        # One thread, as rewrk's default; a Lua reporter prints wrk's own summary and percentiles as JSON.
        closed_loop_only(self, rate)
        return [
            "wrk",
            "-t",
            "1",
            "-c",
            str(concurrency),
            "-d",
            f"{duration_s}s",
            "--timeout",
            f"{REQUEST_TIMEOUT_S}s",
            "-s",
            str(WRK_REPORT),
            url,
        ]

    def parse(self, stdout: str) -> LoadResult:
        report = _json_line(stdout, self.name)
        if not report.get("requests"):
            raise LoadGenError(f"wrk got no response; its report: {report}")
        try:
            seconds = report["duration_us"] / 1e6
            return LoadResult(
                rps=report["requests"] / seconds,
                latency_avg_ms=report["latency_mean_us"] / 1000,
                latency_max_ms=report["latency_max_us"] / 1000,
                requests=report["requests"],
                errors=sum(report[f"errors_{kind}"] for kind in ("connect", "read", "write", "timeout")),
                non_2xx=report["errors_status"],
                latency_percentiles_ms=percentiles_ms(report["latency_percentiles_us"], 1 / 1000),
            )
        except (KeyError, TypeError, ZeroDivisionError) as error:
            raise LoadGenError(f"wrk report lacks {error}: {report}") from None


class Rewrk:
    """rewrk 0.3.2, run with the post's exact command and read from its text report.

    Its --json report drops the error counts, so the text report is read instead. rewrk never looks at
    status codes (non-2xx responses count as requests) and exits 0 even when it could not connect. It gives no
    latency percentiles: the row "q%" of its --pct table (off in the post's command, and here) is the mean
    latency of the slowest (100 - q)% of requests, not the q-th percentile, so it is never read as one.
    """

    name = "rewrk"
    version_command = ("rewrk", "--version")  # rewrk 0.3.2's own string says 0.3.1
    threads = LOADGEN_THREADS["rewrk"]
    open_loop = False
    resolution_ms = 0.01  # printed to 0.01 ms
    install_hint = cargo_hint("rewrk")
    LATENCIES = re.compile(r"Avg\s+Stdev\s+Min\s+Max\s*\n\s*([\d.]+)ms\s+([\d.]+)ms\s+([\d.]+)ms\s+([\d.]+)ms")
    REQUESTS = re.compile(r"Total:\s*(\d+)\s+Req/Sec:\s*([\d.]+)")
    ERRORS = re.compile(r"^\s*(\d+) Errors: (.*)$", re.MULTILINE)

    def command(self, url: str, duration_s: int, concurrency: int, rate: float | None = None) -> list[str]:
        closed_loop_only(self, rate)
        return ["rewrk", "-d", f"{duration_s}s", "-c", str(concurrency), "--host", url]

    def parse(self, stdout: str) -> LoadResult:
        text = ANSI.sub("", stdout)
        latencies, requests = self.LATENCIES.search(text), self.REQUESTS.search(text)
        if not (latencies and requests):
            raise LoadGenError(f"rewrk printed no report (no requests completed?); its output: {text[-300:]!r}")
        return LoadResult(
            rps=float(requests.group(2)),
            latency_avg_ms=float(latencies.group(1)),
            latency_max_ms=float(latencies.group(4)),
            requests=int(requests.group(1)),
            errors=sum(int(count) for count, _ in self.ERRORS.findall(text)),
            non_2xx=None,  # rewrk cannot tell: it never reads the status code
            latency_percentiles_ms=None,  # rewrk gives none (see the class's docstring)
        )


class Oha:
    """oha 1.9 or newer (`--output-format json`); figures in seconds, converted here.

    With a rate, it runs an open loop: `-q` sends requests at that rate from a schedule (at most `-c` of them in
    flight), and `--latency-correction` measures each from when the schedule wanted it sent, so the time a request
    waited behind a slow server counts, instead of being omitted (coordinated omission). Requests the schedule
    wanted but that were never sent by the deadline are not counted at all: the achieved rate shows them.
    """

    name = "oha"
    version_command = ("oha", "--version")
    threads = LOADGEN_THREADS["oha"]
    open_loop = True
    resolution_ms = 0.001
    install_hint = cargo_hint("oha")
    DEADLINE = "aborted due to deadline"  # requests cut by -z at the end: not failures of the server

    def command(self, url: str, duration_s: int, concurrency: int, rate: float | None = None) -> list[str]:
        open_loop = ["-q", rate_arg(rate), "--latency-correction"] if rate is not None else []
        return [
            "oha",
            "-z",
            f"{duration_s}s",
            "-c",
            str(concurrency),
            *open_loop,
            "--no-tui",
            "--output-format",
            "json",
            url,
        ]

    def parse(self, stdout: str) -> LoadResult:
        report = _whole_json(stdout, self.name)
        try:
            summary, statuses = report["summary"], report["statusCodeDistribution"]
            errors = {error: n for error, n in report.get("errorDistribution", {}).items() if error != self.DEADLINE}
            responses = sum(statuses.values())
            if not responses:
                raise LoadGenError(f"oha got no response; its errors: {errors}")
            percentiles = report.get("latencyPercentiles", {})
            return LoadResult(
                rps=responses / summary["total"],
                latency_avg_ms=summary["average"] * 1000,
                latency_max_ms=summary["slowest"] * 1000,
                requests=responses,
                errors=sum(errors.values()),
                non_2xx=sum(n for code, n in statuses.items() if not code.startswith("2")),
                latency_percentiles_ms=percentiles_ms({q: percentiles.get(f"p{q}") for q in PERCENTILES}, 1000),
            )
        except (KeyError, TypeError, ZeroDivisionError, AttributeError) as error:
            raise LoadGenError(f"oha report lacks {error} (is oha older than 1.9?)") from None


class Hey:
    """hey (Debian's 0.1.4), read from its text report: its summary, latency distribution and status code
    distribution. Its Requests/sec counts failed requests too, so RPS is recomputed from the responses. It prints
    latencies in seconds to 4 decimals (0.1 ms), gives p10 to p99 (no p99.9), and keeps the latencies of its
    first 1,000,000 responses only, dividing the sum of all by that count: a longer run is refused."""

    name = "hey"
    version_command = ("dpkg-query", "--show", "--showformat=hey ${Version}\n", "hey")  # hey has no --version
    threads = LOADGEN_THREADS["hey"]
    open_loop = False  # its -q is a per-worker cap, with no correction of latency for it
    resolution_ms = 0.1
    install_hint = "install it with `apt-get install hey` (Debian/Ubuntu) or `go install github.com/rakyll/hey@latest`"
    KEPT = 1_000_000
    SUMMARY = re.compile(
        r"Total:\s+([\d.]+) secs\s+Slowest:\s+([\d.]+) secs\s+Fastest:\s+[\d.]+ secs\s+"
        r"Average:\s+([\d.]+) secs"
    )
    PERCENTILE = re.compile(r"^\s+([\d.]+)% in ([\d.]+) secs$", re.MULTILINE)
    STATUS = re.compile(r"^\s+\[(\d+)\]\s+(\d+) responses$", re.MULTILINE)
    ERROR = re.compile(r"^\s+\[(\d+)\]\s", re.MULTILINE)

    def command(self, url: str, duration_s: int, concurrency: int, rate: float | None = None) -> list[str]:
        closed_loop_only(self, rate)
        return ["hey", "-z", f"{duration_s}s", "-c", str(concurrency), "-t", str(REQUEST_TIMEOUT_S), url]

    def parse(self, stdout: str) -> LoadResult:
        report, _, errors = stdout.partition("Error distribution:")
        error_count = sum(int(n) for n in self.ERROR.findall(errors))
        statuses = {int(code): int(n) for code, n in self.STATUS.findall(report)}
        responses = sum(statuses.values())
        summary = self.SUMMARY.search(report)
        if not (responses and summary):
            first_error = errors.strip().splitlines()[:1]
            raise LoadGenError(
                f"hey got no response ({error_count} errors{': ' if first_error else ''}{''.join(first_error).strip()})"
            )
        if responses > self.KEPT:
            raise LoadGenError(
                f"hey got {responses} responses but keeps the latencies of its first {self.KEPT} "
                f"only, and its average is then wrong: use a shorter --duration or another --loadgen"
            )
        total_s, slowest_s, average_s = (float(value) for value in summary.groups())
        return LoadResult(
            rps=responses / total_s,
            latency_avg_ms=average_s * 1000,
            latency_max_ms=slowest_s * 1000,
            requests=responses,
            errors=error_count,
            non_2xx=sum(n for code, n in statuses.items() if not 200 <= code < 300),
            latency_percentiles_ms=percentiles_ms(
                {f"{float(q):g}": float(seconds) for q, seconds in self.PERCENTILE.findall(report)}, 1000
            ),
        )


LOADGENS: dict[str, LoadGenerator] = {tool.name: tool for tool in (Rewrk(), Wrk(), Oha(), Hey())}
# How long past its duration a load generator may take to report before it is killed.
GRACE_S = 30


def run_load(
    generator: LoadGenerator, command: list[str], duration_s: int, cpus: tuple[int, ...] | None = None
) -> tuple[LoadResult, dict]:
    """Run the tool to completion; return its figures and its own CPU use (is it the bottleneck?)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    with pinned(cpus):
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
            preexec_fn=dies_with_parent(signal.SIGKILL),
        )
    try:
        stdout, stderr = process.communicate(timeout=duration_s + GRACE_S)
    except subprocess.TimeoutExpired:
        _kill(process)
        raise LoadGenError(f"{generator.name} did not finish within {duration_s + GRACE_S}s; killed it") from None
    except BaseException:
        finish(lambda: _kill(process))  # an interrupt must not leave the load running
        raise
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = read_report(generator, process.returncode, stdout, stderr)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return result, {"generator": generator.name, "loadgen_cpu_cores": cpu / wall, "loadgen_wall_s": wall}


def read_report(generator: LoadGenerator, returncode: int, stdout: str, stderr: str, where: str = "") -> LoadResult:
    """What a finished run of the tool (here, or on another host: `where`) measured, or why it cannot be used:
    a failed exit, a report that cannot be read, or figures that contradict each other."""
    if returncode != 0:
        raise LoadGenError(f"{generator.name}{where} exited with status {returncode}: {stderr.strip()[-500:]}")
    try:
        result = generator.parse(stdout)
    except LoadGenError as error:
        raise LoadGenError(f"{error}; stderr: {stderr.strip()[-300:]}") from None
    problems = result.inconsistencies(generator.resolution_ms)
    if problems:
        raise LoadGenError(f"{generator.name}'s report{where} cannot be right: {'; '.join(problems)}")
    return result


def _kill(process: subprocess.Popen) -> None:
    signal_group(process.pid, signal.SIGKILL)
    process.wait()
