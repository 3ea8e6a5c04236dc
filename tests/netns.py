"""Two real hosts on this machine: network namespaces joined by a veth pair, a real sshd in the load host's.

Every name carries this process's pid, the addresses are a private /30 that exists only inside the two
namespaces, and teardown always stops sshd and deletes both namespaces (which deletes the veth pair).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psutil
from conftest import wait_for

SERVER_ADDRESS, LOAD_ADDRESS = "10.203.45.1", "10.203.45.2"
PREFIX = 30
SSHD = "/usr/sbin/sshd"
READY_TIMEOUT_S = 20


@dataclass
class Hosts:
    server_ns: str
    load_ns: str
    key: Path
    known_hosts: Path
    sshd: subprocess.Popen
    sshd_log: Path

    def in_server(self, *command: str) -> list[str]:
        return ["ip", "netns", "exec", self.server_ns, *command]

    def ssh_options(self) -> list[str]:
        """The harness's options reaching the load host as root with the test's key."""
        return [
            "--bind",
            SERVER_ADDRESS,
            "--loadgen-host",
            f"root@{LOAD_ADDRESS}",
            "--ssh-identity",
            str(self.key),
            "--ssh-known-hosts",
            str(self.known_hosts),
            "--ssh-accept-new",
        ]

    def processes_in(self, namespace: str, name: str) -> list[psutil.Process]:
        """Processes called `name` whose network namespace is `namespace` (they share our pid namespace)."""
        wanted = os.stat(f"/run/netns/{namespace}").st_ino
        found = []
        for process in psutil.process_iter(["name"]):
            try:
                if process.info["name"] == name and os.stat(f"/proc/{process.pid}/ns/net").st_ino == wanted:
                    found.append(process)
            except (OSError, psutil.Error):
                pass
        return found


def unavailable() -> str | None:
    """Why these hosts cannot be made here, or None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "ssh", "ssh-keygen"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (iproute2, openssh-client)"
    if not os.access(SSHD, os.X_OK):
        return f"{SSHD} is not installed (openssh-server)"
    return None


def _run(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True, timeout=30)


def _sshd_config(folder: Path) -> Path:
    config = folder / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"ListenAddress {LOAD_ADDRESS}",
                "Port 22",
                f"HostKey {folder / 'host_key'}",
                "PidFile none",
                f"AuthorizedKeysFile {folder / 'authorized_keys'}",
                "AuthenticationMethods publickey",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PermitRootLogin prohibit-password",
                "StrictModes no",  # the test's folder lies under /tmp, which sshd's ownership check would refuse
                "UsePAM no",
                "LogLevel VERBOSE",
                "",
            ]
        )
    )
    return config


def start(folder: Path) -> Hosts:
    """Make the namespaces, the veth pair, the keys and sshd; on any failure, undo what was made."""
    tag = os.getpid()
    server_ns, load_ns = f"gilfree-srv-{tag}", f"gilfree-load-{tag}"
    made: list[str] = []
    sshd = None
    try:
        for namespace in (server_ns, load_ns):
            _run("ip", "netns", "add", namespace)
            made.append(namespace)
            _run("ip", "-n", namespace, "link", "set", "lo", "up")
        _run(
            "ip",
            "-n",
            server_ns,
            "link",
            "add",
            f"gfs{tag}",
            "type",
            "veth",
            "peer",
            "name",
            f"gfl{tag}",
            "netns",
            load_ns,
        )
        for namespace, device, address in (
            (server_ns, f"gfs{tag}", SERVER_ADDRESS),
            (load_ns, f"gfl{tag}", LOAD_ADDRESS),
        ):
            _run("ip", "-n", namespace, "address", "add", f"{address}/{PREFIX}", "dev", device)
            _run("ip", "-n", namespace, "link", "set", device, "up")
        for key in ("host_key", "client_key"):
            _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"gilfree-test-{key}", "-f", str(folder / key))
        shutil.copy(folder / "client_key.pub", folder / "authorized_keys")
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation folder
        log = folder / "sshd.log"
        with open(log, "wb") as out:
            sshd = subprocess.Popen(
                ["ip", "netns", "exec", load_ns, SSHD, "-D", "-e", "-f", str(_sshd_config(folder))],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        hosts = Hosts(server_ns, load_ns, folder / "client_key", folder / "known_hosts", sshd, log)
        _wait_for_sshd(hosts)
        return hosts
    except BaseException:
        _teardown(made, sshd)
        raise


def _wait_for_sshd(hosts: Hosts) -> None:
    refused = {"stderr": b""}  # the last attempt's, for the failure

    def reached() -> bool:
        if hosts.sshd.poll() is not None:
            raise RuntimeError(f"sshd exited with {hosts.sshd.returncode}: {hosts.sshd_log.read_text()[-500:]}")
        attempt = subprocess.run(
            hosts.in_server(
                "ssh",
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=accept-new",
                "-o",
                f"UserKnownHostsFile={hosts.known_hosts}",
                "-o",
                "IdentitiesOnly=yes",
                "-i",
                str(hosts.key),
                f"root@{LOAD_ADDRESS}",
                "true",
            ),
            capture_output=True,
            timeout=30,
        )
        refused["stderr"] = attempt.stderr
        return attempt.returncode == 0

    wait_for(
        reached,
        READY_TIMEOUT_S,
        lambda: f"sshd to accept the test's key: {refused['stderr'][-300:]}",
        interval=0.2,
    )


def stop(hosts: Hosts) -> None:
    _teardown([hosts.server_ns, hosts.load_ns], hosts.sshd)


def _teardown(namespaces: list[str], sshd: subprocess.Popen | None) -> None:
    """Stop sshd (its sessions' processes too) and delete the namespaces, which deletes the veth pair."""
    if sshd is not None:
        sshd.terminate()
        try:
            sshd.wait(5)
        except subprocess.TimeoutExpired:
            sshd.kill()
            sshd.wait()
    for namespace in namespaces:
        left = subprocess.run(["ip", "netns", "pids", namespace], capture_output=True, text=True, timeout=30)
        for pid in left.stdout.split():
            try:
                os.kill(int(pid), signal.SIGKILL)  # sshd's sessions, or whatever a failed test left there
            except ProcessLookupError:
                pass
        subprocess.run(["ip", "netns", "delete", namespace], capture_output=True, timeout=30)
