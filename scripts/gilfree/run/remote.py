"""The load generator on another machine (SshHost, a hosts.LoadHost), driven through the system's OpenSSH client.

Nothing of ours runs there: only `ssh` reaches it, and a POSIX `sh` script passed on the command line wraps the
load generator installed there. The wrapper ships the local files the tool's command names (wrk's Lua reporter)
into a temporary folder, runs the tool in the background, and kills it as soon as its standard input, the ssh
channel, closes: whether the harness closed it, was interrupted, or died (even by SIGKILL, its ssh client then
reads end-of-file), no load generator is left running there. The tool's CPU use is read with `times` (the
shell's POSIX builtin), over the tool's own wall time read from /proc/uptime where the remote has one.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from gilfree.run.hosts import CpuSplit
from gilfree.run.loadgen import ANSI, GRACE_S, LoadGenerator, LoadGenError, LoadResult, read_report
from gilfree.run.processes import available_cpus, finish

# ssh exits 255 when it could not connect or log in (otherwise with the remote command's status).
SSH_FAILED = 255
CONNECT_TIMEOUT_S = 10
# How long an interrupted remote run gets to stop after its channel is closed, before the ssh client is killed.
CLOSE_TIMEOUT_S = 5.0
# A remote answer check: a load this short and narrow, which must see requests and nothing wrong.
CHECK_DURATION_S = 1
CHECK_CONCURRENCY = 1
MARKER = "--- gilfree remote ---"
FILE_END = "GILFREE_FILE_END"
DESTINATION = re.compile(r"(?:[A-Za-z0-9._-]+@)?[A-Za-z0-9._-]+|(?:[A-Za-z0-9._-]+@)?\[[0-9A-Fa-f:.]+\]")

# Runs as `sh -c WRAPPER sh TOOL ARGS...`, in a temporary folder holding the shipped files.
WRAPPER = """\
exec 3<&0 </dev/null
up0=; [ -r /proc/uptime ] && read up0 _ </proc/uptime
"$@" 3<&- &
tool=$!
{{ cat <&3; kill -TERM "$tool"; }} >/dev/null 2>&1 &
watcher=$!
exec 3<&-
wait "$tool"; status=$?
kill "$watcher" 2>/dev/null
up1=; [ -r /proc/uptime ] && read up1 _ </proc/uptime
echo '{marker}'
echo "status=$status uptime=$up0 $up1"
times
exit "$status"
"""

FACTS = """\
echo "hostname=$(uname -n)"
echo "system=$(uname -s)"
echo "kernel=$(uname -r)"
echo "logical_cores=$(getconf _NPROCESSORS_ONLN 2>/dev/null || nproc 2>/dev/null)"
echo "cpu_model=$( (sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo 2>/dev/null | head -n 1) || true)"
[ -r /proc/cpuinfo ] || echo "cpu_model=$(sysctl -n machdep.cpu.brand_string 2>/dev/null)"
echo "tool_path=$(command -v "$1")"
command -v "$1" >/dev/null || exit 0
echo '{marker}'
shift
"$@" 2>&1 </dev/null
exit 0
"""


def valid_destination(text: str) -> bool:
    """`[user@]host` as ssh takes it, and never something ssh would read as an option."""
    return DESTINATION.fullmatch(text) is not None


@dataclass(frozen=True)
class SshHost:
    """The machine the load generator runs on, and how ssh reaches it (all explicit: no agent, no prompt)."""

    destination: str  # [user@]host
    identity: Path | None = None  # ssh -i; else ssh's own defaults and config
    known_hosts: Path | None = None  # UserKnownHostsFile; else ssh's own
    accept_new: bool = False  # trust a host key seen for the first time (StrictHostKeyChecking=accept-new)

    def ssh(self, script: str, *args: str) -> list[str]:
        """The local command running the POSIX `script` with `args` on the load host."""
        options = [
            "BatchMode=yes",
            f"StrictHostKeyChecking={'accept-new' if self.accept_new else 'yes'}",
            f"ConnectTimeout={CONNECT_TIMEOUT_S}",
            "ServerAliveInterval=5",
            "ServerAliveCountMax=3",
            "LogLevel=ERROR",
        ]
        if self.known_hosts:
            options.append(f"UserKnownHostsFile={self.known_hosts}")
        if self.identity:
            options.append("IdentitiesOnly=yes")
        command = ["ssh", *(part for option in options for part in ("-o", option))]
        if self.identity:
            command += ["-i", str(self.identity)]
        remote = " ".join(shlex.quote(part) for part in ("sh", "-c", script, "sh", *args))
        return [*command, "--", self.destination, remote]

    def _failed(self, completed_stderr: str) -> LoadGenError:
        return LoadGenError(
            f"ssh to {self.destination} failed: {completed_stderr.strip()[-300:] or 'no message'}; check that "
            f"`ssh -o BatchMode=yes {self.destination} true` works (key, known host), or fix --loadgen-host"
        )

    def prepare(self, loadgen: str) -> int:
        """Nothing of ours is installed there: describe() refuses a tool missing there, before any server starts."""
        return 0

    def describe(self, generator: LoadGenerator) -> dict:
        """The load generator's record, with the remote machine's facts; refuses a tool missing there."""
        try:
            completed = subprocess.run(
                self.ssh(FACTS.format(marker=MARKER), generator.name, *generator.version_command),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=CONNECT_TIMEOUT_S + 20,
            )
        except subprocess.TimeoutExpired:
            raise LoadGenError(f"ssh to {self.destination} did not finish within {CONNECT_TIMEOUT_S + 20}s") from None
        if completed.returncode != 0:
            raise self._failed(completed.stderr)
        facts_text, _, version_text = completed.stdout.partition(MARKER + "\n")
        facts = parse_facts(facts_text)
        if not facts.pop("tool_path"):
            raise LoadGenError(
                f"load generator {generator.name!r} is not on PATH on {self.destination}; "
                f"{generator.install_hint} there, or choose another with --loadgen"
            )
        lines = ANSI.sub("", version_text).strip().splitlines()
        return {
            "name": generator.name,
            "version": lines[0].strip() if lines else "unknown",
            "host": self.destination,
            "machine": facts,
        }

    def cpus_needed_here(self, generator: LoadGenerator) -> int:
        return 0

    def cpus_for_server(self, count: int) -> CpuSplit:
        """The server gets the first `count` of this machine's CPUs; the load host's CPUs are its own."""
        return available_cpus()[:count], None

    def shown(self, command: list[str]) -> list[str]:
        """The tool's command as it runs there: shipped files by their name in the remote folder."""
        return ["ssh", self.destination, *(_shipped_name(part) for part in command)]

    def run_load(
        self, generator: LoadGenerator, command: list[str], duration_s: int, cpus: tuple[int, ...] | None = None
    ) -> tuple[LoadResult, dict]:
        """Run the tool there to completion; return its figures and its CPU use there. `cpus` are this machine's,
        and cpus_for_server never places the load on any of them."""
        shipped = [Path(part) for part in command if _is_shipped(part)]
        script = _ship(shipped) + WRAPPER.format(marker=MARKER)
        started = time.perf_counter()
        # ssh's stdin is a pipe whose write end only this process holds, open and unwritten while the tool runs:
        # its end-of-file (closed by us, or by the kernel when we die) stops the tool there.
        channel_end, write_end = os.pipe()
        keep_open = os.fdopen(write_end, "wb")  # closing a file object twice is harmless; an fd number is not
        try:
            process = subprocess.Popen(
                self.ssh(script, *(_shipped_name(part) for part in command)),
                stdin=channel_end,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,
            )
        finally:
            os.close(channel_end)
        try:
            stdout, stderr = process.communicate(timeout=duration_s + GRACE_S + CONNECT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            finish(lambda: close(process, keep_open))
            raise LoadGenError(
                f"{generator.name} on {self.destination} did not finish within "
                f"{duration_s + GRACE_S + CONNECT_TIMEOUT_S}s; stopped it"
            ) from None
        except BaseException:
            finish(lambda: close(process, keep_open))  # an interrupt must not leave the load running there
            raise
        keep_open.close()
        local_wall = time.perf_counter() - started
        if process.returncode == SSH_FAILED and MARKER not in stdout:
            raise self._failed(stderr)
        output, _, trailer = stdout.partition(MARKER + "\n")
        result = read_report(generator, process.returncode, output, stderr, where=f" on {self.destination}")
        cpu_s, wall_s = parse_trailer(trailer)
        wall_s = wall_s or local_wall  # without /proc/uptime there: ssh's own set-up is counted too
        return result, {
            "generator": generator.name,
            "loadgen_cpu_cores": cpu_s / wall_s if cpu_s is not None else None,
            "loadgen_wall_s": wall_s,
        }

    def check(self, generator: LoadGenerator, url: str) -> str | None:
        """Whether the load host gets right answers from `url`: a 1-second load at c=1 that must see requests,
        no errors and no non-2xx (where the tool reads status codes). None when it does, else why not."""
        try:
            result, _ = self.run_load(
                generator, generator.command(url, CHECK_DURATION_S, CHECK_CONCURRENCY), CHECK_DURATION_S
            )
        except LoadGenError as error:
            return str(error)
        if result.requests == 0 or result.errors or result.non_2xx:
            non_2xx = "unknown" if result.non_2xx is None else result.non_2xx
            return f"{result.requests} requests, {result.errors} errors, {non_2xx} non-2xx"
        return None


def close(process: subprocess.Popen, channel: BinaryIO) -> None:
    """End a remote run: close its channel's stdin (the wrapper then kills the tool there), and kill the local
    ssh client if it does not end by itself; its dropped connection closes the channel all the same."""
    channel.close()
    try:
        process.wait(CLOSE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _is_shipped(part: str) -> bool:
    return part.startswith("/") and Path(part).is_file()


def _shipped_name(part: str) -> str:
    return Path(part).name if _is_shipped(part) else part


def _ship(files: list[Path]) -> str:
    """Shell lines that write `files` into a fresh remote folder, removed when the wrapper exits."""
    lines = ["dir=$(mktemp -d) || exit 97", "trap 'rm -rf \"$dir\"' EXIT", 'cd "$dir" || exit 97']
    for path in files:
        text = path.read_text()
        if FILE_END in text.splitlines():
            raise LoadGenError(f"{path} holds the line {FILE_END}, which ends a shipped file")
        lines += [f"cat >{shlex.quote(path.name)} <<'{FILE_END}'", text.rstrip("\n"), FILE_END]
    return "\n".join(lines) + "\n"


def parse_facts(text: str) -> dict:
    """`name=value` lines to the same facts as results.machine(); an empty value is unknown (None)."""
    facts = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    cores = facts.get("logical_cores", "").strip()
    return {
        "cpu_model": facts.get("cpu_model", "").strip() or None,
        "logical_cores": int(cores) if cores.isdigit() else None,
        "system": facts.get("system", "").strip() or None,
        "kernel": facts.get("kernel", "").strip() or None,
        "hostname": facts.get("hostname", "").strip() or None,
        "tool_path": facts.get("tool_path", "").strip() or None,
    }


TIMES = re.compile(r"(\d+)m([\d.]+)s\s+(\d+)m([\d.]+)s")


def parse_trailer(text: str) -> tuple[float | None, float | None]:
    """The wrapper's trailer: the children's user + system seconds from `times` (its second line, in dash's
    or bash's format), and the tool's wall seconds from /proc/uptime; None where it is missing."""
    uptime = re.search(r"uptime=([\d.]+) ([\d.]+)", text)
    wall = float(uptime.group(2)) - float(uptime.group(1)) if uptime else None
    lines = [found for line in text.splitlines() if (found := TIMES.search(line))]
    if len(lines) < 2:
        return None, wall or None
    m_user, s_user, m_sys, s_sys = lines[1].groups()
    return int(m_user) * 60 + float(s_user) + int(m_sys) * 60 + float(s_sys), wall or None
