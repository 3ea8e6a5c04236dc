"""The load generator on another host, reached with ssh.

The real-host tests make two network namespaces joined by a veth pair (tests/netns.py), run a real sshd in the
load host's and the harness in the server's: they need root and iproute2. Outside CI they skip, saying why; in CI
(CI=true, where the suite runs as root) a missing piece fails them instead.
"""

import json
import os
import signal
import subprocess

import netns
import psutil
import pytest
from conftest import ROOT, free_port, harness_command, leftovers, make_record, wait_for
from test_cli import gilfree

from gilfree.report import render
from gilfree.run import remote, runner
from gilfree.run.hosts import LocalHost
from gilfree.run.loadgen import LOADGENS
from gilfree.run.processes import available_cpus
from gilfree.study import results
from gilfree.study.record import Record
from gilfree.study.studies import Cell, article

HARNESS_TIMEOUT_S = 180
GONE_TIMEOUT_S = 15  # generous: a stopped remote run ends in well under a second


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    reason = netns.unavailable()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the two-host tests must run in CI, but {reason}")
        pytest.skip(reason)
    made = netns.start(tmp_path_factory.mktemp("hosts"))
    yield made
    netns.stop(made)


def harness_in_server(hosts, python, results_dir, *extra):
    command = harness_command(
        "asgi-3.14", python, results_dir, free_port(), "--table", "asgi-json", *hosts.ssh_options(), *extra
    )
    return hosts.in_server(*command)


def test_cell_measured_with_the_load_from_the_other_host(hosts, environments, tmp_path):
    completed = subprocess.run(
        harness_in_server(hosts, environments["asgi"], tmp_path),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=HARNESS_TIMEOUT_S,
    )
    assert completed.returncode == 0, completed.stderr
    record = json.loads((tmp_path / "raw" / "asgi-json" / "3.14-w1-tdefault-json-c128.json").read_text())
    assert record["status"] == "ok", record["failure"]
    assert record["settings"]["loadgen_host"] == f"root@{netns.LOAD_ADDRESS}"
    assert record["settings"]["bind"] == netns.SERVER_ADDRESS
    generator = record["load_generator"]
    assert generator["host"] == f"root@{netns.LOAD_ADDRESS}" and generator["version"].startswith("wrk")
    assert generator["machine"]["logical_cores"] >= 1 and generator["machine"]["kernel"]
    assert record["commands"]["load"][:2] == ["ssh", f"root@{netns.LOAD_ADDRESS}"]
    assert f"http://{netns.SERVER_ADDRESS}:" in record["commands"]["load"][-1]
    assert record["commands"]["server"][-5:-2] == ["--host", netns.SERVER_ADDRESS, "--port"]
    assert record["load"]["requests"] > 0 and record["load"]["errors"] == 0 and record["load"]["non_2xx"] == 0
    assert record["load"]["loadgen_cpu_cores"] > 0  # read with `times` there
    # The load came over the veth pair: the load host's sshd let the server's address in.
    assert f"Accepted publickey for root from {netns.SERVER_ADDRESS}" in hosts.sshd_log.read_text()
    assert (
        f"the load sent across the network from root@{netns.LOAD_ADDRESS}"
        in (tmp_path / "tables" / "asgi-json.md").read_text()
    )
    assert hosts.processes_in(hosts.load_ns, "wrk") == []
    assert leftovers(environments["asgi"]) == []


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_interrupt_leaves_no_load_generator_on_either_host(signum, hosts, environments, tmp_path):
    harness = subprocess.Popen(
        harness_in_server(hosts, environments["asgi"], tmp_path, "--duration", "45s"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:

        def load_started() -> bool:
            assert harness.poll() is None, harness.stderr.read()
            return any(_loads_for(process, "45s") for process in hosts.processes_in(hosts.load_ns, "wrk"))

        wait_for(load_started, HARNESS_TIMEOUT_S, "the load to start on the load host", interval=0.1)
        harness.send_signal(signum)
        _, stderr = harness.communicate(timeout=60)
        assert harness.returncode == {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGKILL: -9}[signum], stderr
        wait_for(
            lambda: hosts.processes_in(hosts.load_ns, "wrk") == [],
            GONE_TIMEOUT_S,
            "wrk to be gone from the load host",
            interval=0.1,
        )
        assert hosts.processes_in(hosts.server_ns, "wrk") == []
    finally:
        if harness.poll() is None:
            harness.kill()
            harness.wait()
        for process in leftovers(environments["asgi"]):  # the Granian a SIGKILLed harness leaves behind
            process.kill()


def _loads_for(process, duration: str) -> bool:
    """Whether this wrk is the cell's load (`-d 45s`), not the 1-second answer check before it."""
    try:
        command = process.cmdline()
    except psutil.Error:
        return False
    return "-d" in command and command[command.index("-d") + 1 :][:1] == [duration]


def test_wrapper_stops_the_tool_when_its_channel_closes(tmp_path):
    """The remote wrapper, run here by sh without ssh: closing its stdin kills the tool it started."""
    marker = tmp_path / "started"
    wrapper = subprocess.Popen(
        ["sh", "-c", remote.WRAPPER.format(marker=remote.MARKER), "sh", "sh", "-c", f"touch {marker}; exec sleep 300"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    wait_for(marker.exists, what="the wrapper to start the tool")
    wrapper.stdin.close()
    stdout = wrapper.stdout.read()
    wrapper.wait(30)
    assert wrapper.returncode == 128 + signal.SIGTERM
    assert f"status={128 + signal.SIGTERM}" in stdout.partition(remote.MARKER)[2]


def test_wrapper_reports_the_tools_cpu_and_wall_time():
    busy = "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done"
    # stdin left open (a pipe nobody writes) for as long as the tool runs, as ssh's is
    reader, writer = os.pipe()
    completed = subprocess.run(
        ["sh", "-c", remote.WRAPPER.format(marker=remote.MARKER), "sh", "sh", "-c", busy],
        stdin=reader,
        capture_output=True,
        text=True,
        timeout=60,
    )
    os.close(reader), os.close(writer)
    assert completed.returncode == 0
    cpu_s, wall_s = remote.parse_trailer(completed.stdout.partition(remote.MARKER + "\n")[2])
    assert cpu_s > 0 and wall_s > 0


@pytest.mark.parametrize(
    "trailer, cpu_s",
    [
        # `times` as dash (Debian's sh) and bash print it: the shell's own times, then its children's
        ("status=0 uptime=100.00 105.50\n0m0.004000s 0m0.000000s\n0m1.250000s 1m2.500000s\n", 63.75),
        ("status=0 uptime=100.00 105.50\n0m0.003s 0m0.000s\n0m1.250s 0m0.500s\n", 1.75),
    ],
)
def test_trailer_is_read(trailer, cpu_s):
    assert remote.parse_trailer(trailer) == (pytest.approx(cpu_s), pytest.approx(5.5))


def test_trailer_without_times_or_uptime_is_unknown():
    assert remote.parse_trailer("status=0 uptime= \n") == (None, None)


def test_facts_missing_there_are_unknown():
    facts = remote.parse_facts("hostname=bench\nsystem=Linux\nkernel=6.1.0\nlogical_cores=\ncpu_model=\ntool_path=\n")
    assert facts == {
        "cpu_model": None,
        "logical_cores": None,
        "system": "Linux",
        "kernel": "6.1.0",
        "hostname": "bench",
        "tool_path": None,
    }


def test_ssh_command_is_explicit_and_quotes_the_remote_command(tmp_path):
    host = remote.SshHost("bench@10.0.0.2", tmp_path / "key", tmp_path / "known", accept_new=False)
    command = host.ssh('echo "$1"', "it's")
    assert command[0] == "ssh" and "BatchMode=yes" in command and "StrictHostKeyChecking=yes" in command
    assert f"UserKnownHostsFile={tmp_path / 'known'}" in command and command[command.index("-i") + 1] == str(
        tmp_path / "key"
    )
    assert command[-3:-1] == ["--", "bench@10.0.0.2"]
    # the remote login shell gets one string; run by a local sh it must give back the argument untouched
    assert subprocess.run(["sh", "-c", command[-1]], capture_output=True, text=True).stdout == "it's\n"


def test_shown_command_names_the_shipped_report_by_its_name():
    host = remote.SshHost("bench@10.0.0.2")
    command = LOADGENS["wrk"].command("http://10.0.0.1:8000/json", 30, 128)
    shown = host.shown(command)
    assert shown[:3] == ["ssh", "bench@10.0.0.2", "wrk"] and "wrk_report.lua" in shown and command[-1] == shown[-1]


def test_a_load_host_takes_none_of_this_machines_cpus():
    cpus, wrk = available_cpus(), LOADGENS["wrk"]
    host = remote.SshHost("bench@10.0.0.2")
    assert host.cpus_needed_here(wrk) == 0 and LocalHost().cpus_needed_here(wrk) == wrk.threads
    assert host.cpus_for_server(len(cpus)) == (cpus, None)  # every CPU for the server, none kept for the load


@pytest.mark.parametrize(
    "host, recorded",
    [
        ({}, None),
        ({"load_host": LocalHost()}, None),
        ({"load_host": remote.SshHost("bench@10.0.0.2")}, "bench@10.0.0.2"),
    ],
)
def test_settings_name_the_load_host_and_none_for_this_machine(host, recorded, tmp_path):
    """As records stored before the hosts were one interface name them: their fingerprints must not change.
    Without a load host, the load runs on this machine."""
    options = runner.Options(
        session=article().sessions["asgi-3.14"],
        pythons={},
        duration_s=1,
        loadgen="wrk",
        results_dir=tmp_path,
        port=8000,
        **host,
    )
    assert options.settings["loadgen_host"] == recorded


@pytest.mark.parametrize(
    "args, named",
    [
        (["--bind", "0.0.0.0"], "every network"),
        (["--bind", "::"], "every network"),
        (["--bind", "localhost"], "'localhost'"),
        (["--loadgen-host", "-oProxyCommand=x"], "'-oProxyCommand=x'"),
        (["--loadgen-host", "bench@10.0.0.2"], "cannot reach this machine's loopback address 127.0.0.1"),
        (["--loadgen-host", "bench@10.0.0.2", "--bind", "10.0.0.1", "--pin", "1"], "leave --pin out"),
        (["--ssh-accept-new"], "--ssh-accept-new is for --loadgen-host"),
    ],
)
def test_remote_options_that_make_no_sense_are_refused(args, named, tmp_path):
    completed = gilfree("run", "asgi-3.14", "--python", "python3", "--results-dir", str(tmp_path), *args)
    assert completed.returncode == 2
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gilfree: error:") and named in lines[0], completed.stderr


def test_load_host_refusing_our_key_is_refused_before_any_server(hosts, environments, tmp_path):
    stranger = tmp_path / "stranger_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    options = hosts.ssh_options()
    options[options.index("--ssh-identity") + 1] = str(stranger)
    command = harness_command("asgi-3.14", environments["asgi"], tmp_path, free_port(), *options)
    completed = subprocess.run(
        hosts.in_server(*command), capture_output=True, text=True, cwd=ROOT, timeout=HARNESS_TIMEOUT_S
    )
    assert completed.returncode == 2
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1 and f"ssh to root@{netns.LOAD_ADDRESS} failed: " in lines[0], completed.stderr
    assert "Permission denied" in lines[0] and "--loadgen-host" in lines[0]
    assert not (tmp_path / "raw").exists()


def test_tables_say_the_load_crossed_the_network_and_never_mix_it_with_local_rows(tmp_path):
    local, remote_row = article().tables_by_id["asgi-json"].cells[:2]
    across = make_record(remote_row)
    across["settings"] |= {"bind": "10.0.0.1", "loadgen_host": "bench@loadbox"}
    across["load_generator"] = {
        "name": "rewrk",
        "version": "rewrk 0.3.2",
        "host": "bench@loadbox",
        "machine": {"cpu_model": "AMD EPYC 7763", "logical_cores": 4},
    }
    here = make_record(local)
    here["settings"] |= {"bind": "127.0.0.1", "loadgen_host": None}
    here["load_generator"] = {"name": "rewrk", "version": "rewrk 0.3.2", "host": None, "machine": None}
    for record in (across, here):
        results.write_record(results.cell_path(tmp_path, Cell(**record["cell"])), record)
    render.write_all(tmp_path, article())
    measured = next(
        line
        for line in (tmp_path / "tables" / "asgi-json.md").read_text().splitlines()
        if line.startswith("Measured with")
    )
    assert (
        "rewrk 30s on AMD Ryzen 7 5700X (16 logical cores), the load sent across the network from "
        "bench@loadbox (AMD EPYC 7763, 4 logical cores) to 10.0.0.1"
    ) in measured
    assert "bind 127.0.0.1 vs 10.0.0.1" in measured and "loadgen host none vs bench@loadbox" in measured


def test_schema_2_records_ran_the_load_here_on_loopback(tmp_path):
    old = make_record(article().tables_by_id["asgi-json"].cells[0])
    old["schema"] = 2
    old["load_generator"] = {"name": "rewrk", "version": "rewrk 0.3.2"}
    migrated = results.migrate(old, tmp_path / "old.json")
    assert migrated["settings"]["bind"] == "127.0.0.1" and migrated["settings"]["loadgen_host"] is None
    assert migrated["load_generator"]["host"] is None and migrated["load_generator"]["machine"] is None
    new = make_record(article().tables_by_id["asgi-json"].cells[1])
    new["settings"] |= {"bind": "127.0.0.1", "loadgen_host": None}
    new["load_generator"] = {"name": "rewrk", "version": "rewrk 0.3.2", "host": None, "machine": None}
    assert render.condition_differences([Record.read(migrated), Record.read(new)]) == []
