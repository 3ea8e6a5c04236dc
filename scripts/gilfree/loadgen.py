"""Load generators behind one interface: how to invoke each, and how to read what it prints.

The post used rewrk; wrk and oha are offered for machines without it. Each tool's own figures are
taken as it reports them: requests per second over its measured window, mean and max latency.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

from .processes import dies_with_parent, finish, pinned

WRK_REPORT = Path(__file__).with_name("wrk_report.lua")
# wrk drops a response slower than its timeout (default 2 s) from the latency figures; the post saw 27 s.
WRK_TIMEOUT = "60s"


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

    def as_dict(self) -> dict:
        return asdict(self)


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
        raise LoadGenError(f"{tool} printed invalid JSON ({error}); output began with: {stdout[:300]!r}")


class LoadGenerator(Protocol):
    name: str
    install_hint: str
    version_args: tuple[str, ...]
    threads: int | None  # the threads it drives the load from; None: as many as it likes

    def command(self, url: str, duration_s: int, concurrency: int) -> list[str]: ...

    def parse(self, stdout: str) -> LoadResult: ...


def version(generator: LoadGenerator) -> str:
    """The tool's own word on its version (its first line of output), for the record."""
    try:
        completed = subprocess.run([generator.name, *generator.version_args], capture_output=True, text=True,
                                   timeout=10)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"unknown ({error})"
    lines = (completed.stdout + completed.stderr).strip().splitlines()
    return ANSI.sub("", lines[0]).strip() if lines else "unknown"


def require(generator: LoadGenerator) -> None:
    """Fail before any server starts when the tool is not installed."""
    if shutil.which(generator.name) is None:
        raise LoadGenError(
            f"load generator {generator.name!r} is not on PATH; {generator.install_hint}, "
            f"or choose another with --loadgen ({', '.join(LOADGENS)})"
        )


class Wrk:
    name = "wrk"
    version_args = ("-v",)
    threads = 1
    install_hint = "install it with `apt-get install wrk` (Debian/Ubuntu) or `brew install wrk`"

    def command(self, url: str, duration_s: int, concurrency: int) -> list[str]:
        # One thread, as rewrk's default; a Lua reporter prints wrk's own summary as JSON.
        return ["wrk", "-t", "1", "-c", str(concurrency), "-d", f"{duration_s}s",
                "--timeout", WRK_TIMEOUT, "-s", str(WRK_REPORT), url]

    def parse(self, stdout: str) -> LoadResult:
        report = _json_line(stdout, self.name)
        try:
            seconds = report["duration_us"] / 1e6
            return LoadResult(
                rps=report["requests"] / seconds,
                latency_avg_ms=report["latency_mean_us"] / 1000,
                latency_max_ms=report["latency_max_us"] / 1000,
                requests=report["requests"],
                errors=sum(report[f"errors_{kind}"] for kind in ("connect", "read", "write", "timeout")),
                non_2xx=report["errors_status"],
            )
        except (KeyError, TypeError, ZeroDivisionError) as error:
            raise LoadGenError(f"wrk report lacks {error}: {report}")


class Rewrk:
    """rewrk 0.3.2, run with the post's exact command and read from its text report.

    Its --json report drops the error counts, so the text report is read instead. rewrk never looks at
    status codes (non-2xx responses count as requests) and exits 0 even when it could not connect.
    """

    name = "rewrk"
    version_args = ("--version",)  # rewrk 0.3.2's own string may say 0.3.1
    threads = 1
    install_hint = "install it with `cargo install rewrk --version 0.3.2 --locked`"
    LATENCIES = re.compile(r"Avg\s+Stdev\s+Min\s+Max\s*\n\s*([\d.]+)ms\s+([\d.]+)ms\s+([\d.]+)ms\s+([\d.]+)ms")
    REQUESTS = re.compile(r"Total:\s*(\d+)\s+Req/Sec:\s*([\d.]+)")
    ERRORS = re.compile(r"^\s*(\d+) Errors: (.*)$", re.MULTILINE)

    def command(self, url: str, duration_s: int, concurrency: int) -> list[str]:
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
        )


class Oha:
    """oha 1.9 or newer (`--output-format json`); figures in seconds, converted here."""

    name = "oha"
    version_args = ("--version",)
    threads = None
    install_hint = "install it with `cargo install oha --locked` (1.9 or newer)"
    DEADLINE = "aborted due to deadline"  # requests cut by -z at the end: not failures of the server

    def command(self, url: str, duration_s: int, concurrency: int) -> list[str]:
        return ["oha", "-z", f"{duration_s}s", "-c", str(concurrency), "--no-tui", "--output-format", "json", url]

    def parse(self, stdout: str) -> LoadResult:
        report = _whole_json(stdout, self.name)
        try:
            summary, statuses = report["summary"], report["statusCodeDistribution"]
            responses = sum(statuses.values())
            return LoadResult(
                rps=responses / summary["total"],
                latency_avg_ms=summary["average"] * 1000,
                latency_max_ms=summary["slowest"] * 1000,
                requests=responses,
                errors=sum(n for error, n in report.get("errorDistribution", {}).items() if error != self.DEADLINE),
                non_2xx=sum(n for code, n in statuses.items() if not code.startswith("2")),
            )
        except (KeyError, TypeError, ZeroDivisionError, AttributeError) as error:
            raise LoadGenError(f"oha report lacks {error} (is oha older than 1.9?)")


LOADGENS: dict[str, LoadGenerator] = {tool.name: tool for tool in (Rewrk(), Wrk(), Oha())}
# How long past its duration a load generator may take to report before it is killed.
GRACE_S = 30


def run_load(generator: LoadGenerator, command: list[str], duration_s: int,
             cpus: tuple[int, ...] | None = None) -> tuple[LoadResult, dict]:
    """Run the tool to completion; return its figures and its own CPU use (is it the bottleneck?)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    with pinned(cpus):
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, start_new_session=True,
                                   preexec_fn=dies_with_parent(signal.SIGKILL))
    try:
        stdout, stderr = process.communicate(timeout=duration_s + GRACE_S)
    except subprocess.TimeoutExpired:
        _kill(process)
        raise LoadGenError(f"{generator.name} did not finish within {duration_s + GRACE_S}s; killed it")
    except BaseException:
        finish(lambda: _kill(process))  # an interrupt must not leave the load running
        raise
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if process.returncode != 0:
        raise LoadGenError(f"{generator.name} exited with status {process.returncode}: {stderr.strip()[-500:]}")
    try:
        result = generator.parse(stdout)
    except LoadGenError as error:
        raise LoadGenError(f"{error}; stderr: {stderr.strip()[-300:]}") from None
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return result, {"generator": generator.name, "loadgen_cpu_cores": cpu / wall, "loadgen_wall_s": wall}


def _kill(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()
