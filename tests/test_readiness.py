"""Machine readiness, read from this machine's kernel and checked against what the test reads itself; "unknown"
where a file is absent (a tree of real files under tmp_path); `python -m gilfree machine` prints every item."""

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from conftest import ROOT, make_record, spinning

from gilfree.core import warnings
from gilfree.core.warnings import StudyWarning, WarningKind
from gilfree.report import compare, render, verdicts
from gilfree.run import readiness
from gilfree.run.processes import available_cpus, split_cpus
from gilfree.study import results
from gilfree.study.readiness import Item, Readiness, Status
from gilfree.study.studies import article

KEYS = ["governor", "turbo", "smt", "aslr", "isolation", "irqbalance", "swap", "load", "throttling"]
CPU = Path("/sys/devices/system/cpu")


def kernel_siblings() -> dict[int, set[int]]:
    """Each CPU's thread siblings, parsed here from /sys (the reader's parser not used)."""
    found = {}
    for listed in CPU.glob("cpu[0-9]*/topology/thread_siblings_list"):
        cpus = set()
        for part in listed.read_text().strip().split(","):
            low, _, high = part.partition("-")
            cpus |= set(range(int(low), int(high or low) + 1))
        found[int(listed.parts[-3][3:])] = cpus
    return found


def hypervisor() -> bool:
    return any(
        line.startswith("flags") and "hypervisor" in line.split()
        for line in Path("/proc/cpuinfo").read_text().splitlines()
    )


@pytest.fixture(scope="module")
def here() -> Readiness:
    return readiness.read()


def test_every_item_has_a_status_in_a_fixed_order(here):
    assert [item.key for item in here.items] == KEYS
    assert all(isinstance(item.status, Status) and item.read for item in here.items)
    assert all(
        item.fix for item in here.with_status(Status.WARN) if item.key != "isolation" or len(available_cpus()) > 1
    )  # one CPU: nothing to isolate it from
    assert Readiness.from_dict(json.loads(json.dumps(here.as_dict()))) == here


def test_aslr_is_the_kernels_value(here):
    value = int(Path("/proc/sys/kernel/randomize_va_space").read_text())
    item = here.item("aslr")
    assert item.value == value
    assert item.status is (Status.OK if value == 2 else Status.WARN)


def test_swap_is_psutils(here):
    item, swap = here.item("swap"), psutil.swap_memory()
    assert item.value["total_bytes"] == swap.total
    assert item.status is (Status.WARN if item.value["used_bytes"] else Status.OK)
    assert (swap.used == 0) == (item.value["used_bytes"] == 0)


def test_governor_and_turbo_are_unknown_exactly_where_the_kernel_exposes_none(here):
    governors = {path.read_text().strip() for path in CPU.glob("cpu[0-9]*/cpufreq/scaling_governor")}
    if not governors:
        assert here.item("governor").status is Status.UNKNOWN
    else:
        assert set(here.item("governor").value["governors"]) == governors
        assert here.item("governor").status is (Status.OK if governors == {"performance"} else Status.WARN)
    switches = [CPU / "intel_pstate/no_turbo", CPU / "cpufreq/boost", *CPU.glob("cpufreq/policy*/boost")]
    assert (here.item("turbo").status is Status.UNKNOWN) == (not any(path.exists() for path in switches))


def test_isolation_and_irqbalance_are_the_kernels(here):
    isolated = (CPU / "isolated").read_text().strip()
    item = here.item("isolation")
    assert item.value["isolated"] == isolated
    assert item.status is Status.WARN if not isolated else item.status in (Status.OK, Status.WARN)
    named = set()
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            named.add(comm.read_text().strip())
        except OSError:
            pass
    assert (here.item("irqbalance").status is Status.WARN) == ("irqbalance" in named)


def test_thermal_throttling_is_unknown_where_the_kernel_counts_none(here):
    counted = list(CPU.glob("cpu[0-9]*/thermal_throttle/core_throttle_count"))
    assert (here.item("throttling").status is Status.UNKNOWN) == (not counted)


def test_smt_siblings_are_the_kernels_and_every_pin_split_is_checked_against_them():
    topology = kernel_siblings()
    cores = {frozenset(cpus) for cpus in topology.values()}
    cpus = available_cpus()
    for loadgen in range(1, len(cpus)):
        server_cpus, loadgen_cpus = split_cpus(loadgen)
        shared = any(core & set(server_cpus) and core & set(loadgen_cpus) for core in cores)
        item = readiness.smt(Path("/"), [(server_cpus, loadgen_cpus)])
        assert item.value["siblings"] == sorted(sorted(core) for core in cores if len(core) > 1)
        assert item.value["logical_cpus"] == len(topology) and item.value["cores"] == len(cores)
        if shared:
            assert item.status is Status.WARN and "taskset -c" in item.fix
        else:
            assert item.status is (Status.UNKNOWN if hypervisor() else Status.OK)  # a VM's topology is not the host's


def test_other_load_leaves_out_the_harnesss_own_tree():
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        spinning(psutil.Process(spinner.pid))
        own = readiness.other_cpu(os.getpid(), 0.5)  # the spinner is this process's child
        foreign = readiness.other_cpu(idle.pid, 0.5)  # seen from another tree, it is other load
    finally:
        for child in (spinner, idle):
            child.kill()
            child.wait()
    assert spinner.pid not in {pid for _, pid, _ in own}
    assert spinner.pid in {pid for _, pid, _ in foreign}
    item = readiness.load(os.getpid(), 0.2)
    assert item.value["cpus"] == psutil.cpu_count() and len(item.value["load_average"]) == 3
    assert item.status is (Status.WARN if item.value["other_share"] > 0.15 else Status.OK)


def test_every_file_absent_reads_unknown_never_ok(tmp_path):
    read = readiness.read(root=tmp_path, cpus=(0,), sample_s=0.1)
    for key in ("governor", "turbo", "smt", "aslr", "isolation", "throttling"):
        assert read.item(key).status is Status.UNKNOWN, read.item(key)
    assert read.item("irqbalance").status is not Status.OK  # no /proc/self/ns/pid there: a container's view
    assert readiness.throttle_counts(tmp_path) is None


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")


def four_cpus_two_cores(root: Path, governor: str = "powersave") -> None:
    """A machine's /sys and /proc as the kernel writes them, for 4 logical CPUs on 2 cores (siblings 0,2 and 1,3)."""
    write(
        root,
        {
            "sys/devices/system/cpu/online": "0-3",
            "sys/devices/system/cpu/isolated": "",
            "sys/devices/system/cpu/intel_pstate/no_turbo": "0",
            "proc/sys/kernel/randomize_va_space": "0",
            "proc/cmdline": "quiet splash",
            "proc/cpuinfo": "processor\t: 0\nflags\t\t: fpu vme sse2",
        },
    )
    for cpu in range(4):
        folder = f"sys/devices/system/cpu/cpu{cpu}"
        write(
            root,
            {
                f"{folder}/topology/thread_siblings_list": f"{cpu % 2},{cpu % 2 + 2}",
                f"{folder}/topology/physical_package_id": "0",
                f"{folder}/cpufreq/scaling_governor": governor if cpu else "performance",
                f"{folder}/cpufreq/scaling_driver": "intel_pstate",
                f"{folder}/thermal_throttle/core_throttle_count": "0",
                f"{folder}/thermal_throttle/package_throttle_count": "5",
            },
        )


def test_a_machine_that_drifts_says_each_item_with_its_fix(tmp_path):
    four_cpus_two_cores(tmp_path)
    read = readiness.read(root=tmp_path, pinnings=[((0, 1), (2, 3))], cpus=(0, 1, 2, 3), sample_s=0.1)
    assert read.item("governor").status is Status.WARN
    assert read.item("governor").value["governors"] == {"performance": "0", "powersave": "1-3"}
    assert read.item("governor").fix.startswith("`sudo cpupower frequency-set -g performance`")
    assert read.item("turbo").fix == "`echo 1 | sudo tee /sys/devices/system/cpu/intel_pstate/no_turbo`"
    smt = read.item("smt")
    assert smt.status is Status.WARN and smt.value["shared"] == [[[0], [2]], [[1], [3]]]
    assert "`taskset -c 0-1 nox ...`" in smt.fix
    assert read.item("aslr").status is Status.WARN and "kernel.randomize_va_space=2" in read.item("aslr").fix
    isolation = read.item("isolation")
    assert isolation.status is Status.WARN and "isolcpus=1,3 " in isolation.fix  # all but CPU 0's core
    assert read.item("throttling").value == {"since_boot": 5}  # the package's count once, not once per CPU
    kinds = {warning.values["item"] for warning in read.warnings()}
    assert {"governor", "turbo", "smt", "aslr", "isolation"} <= kinds
    assert all(warning.kind is WarningKind.MACHINE_NOT_READY for warning in read.warnings())


def test_pinning_on_separate_cores_and_a_ready_machine_read_ok(tmp_path):
    four_cpus_two_cores(tmp_path, governor="performance")
    write(
        tmp_path,
        {
            "sys/devices/system/cpu/intel_pstate/no_turbo": "1",
            "proc/sys/kernel/randomize_va_space": "2",
            "sys/devices/system/cpu/isolated": "1-3",
            "proc/cmdline": "isolcpus=domain,managed_irq,1-3",
        },
    )
    read = readiness.read(root=tmp_path, pinnings=[((1,), (3,))], cpus=(1, 3), sample_s=0.1)
    for key in ("governor", "turbo", "aslr", "isolation"):
        assert read.item(key).status is Status.OK, read.item(key)
    assert read.item("isolation").value["cmdline"] == {"isolcpus": "1-3"}
    assert read.item("smt").status is Status.WARN  # 1 and 3 are siblings
    assert readiness.smt(tmp_path, [((0, 1), (2,))]).status is Status.WARN  # 0 and 2 share a core
    assert readiness.smt(tmp_path, [((0, 2), (1, 3))]).status is Status.OK  # one core each
    write(tmp_path, {"proc/cpuinfo": "flags\t\t: fpu hypervisor"})
    assert readiness.smt(tmp_path, [((0, 2), (1, 3))]).status is Status.UNKNOWN  # the host's siblings unseen


def test_cpufreq_boost_is_read_where_intel_pstate_is_absent(tmp_path):
    write(
        tmp_path,
        {"sys/devices/system/cpu/cpufreq/policy0/boost": "1", "sys/devices/system/cpu/cpufreq/policy1/boost": "0"},
    )
    item = readiness.turbo(tmp_path)
    assert item.status is Status.WARN
    assert item.fix == "`echo 0 | sudo tee /sys/devices/system/cpu/cpufreq/policy*/boost`"
    write(tmp_path, {"sys/devices/system/cpu/cpufreq/boost": "0"})
    assert readiness.turbo(tmp_path).status is Status.OK


def test_throttling_is_counted_around_a_run(tmp_path):
    four_cpus_two_cores(tmp_path)
    before = readiness.throttle_counts(tmp_path)
    write(
        tmp_path,
        {
            "sys/devices/system/cpu/cpu1/thermal_throttle/core_throttle_count": "3",
            "sys/devices/system/cpu/cpu2/thermal_throttle/package_throttle_count": "6",
        },
    )
    run = {"warnings": []}
    readiness.note_throttling(run, before, tmp_path)
    assert run["throttle_events"] == 4  # 3 on core 1, and one package event (every CPU repeats its count)
    assert warnings.read(run["warnings"]) == [StudyWarning(WarningKind.THERMAL_THROTTLED, {"events": 4})]
    quiet = {"warnings": []}
    readiness.note_throttling(quiet, readiness.throttle_counts(tmp_path), tmp_path)
    assert quiet == {"warnings": [], "throttle_events": 0}
    start = readiness.read(root=tmp_path, cpus=(0,), sample_s=0.1)
    assert start.for_runs([run, quiet]).item("throttling").status is Status.WARN
    assert start.for_runs([quiet]).item("throttling").status is Status.OK
    assert start.for_runs([quiet, {}]).item("throttling").status is Status.UNKNOWN  # a run stored without counts


def test_the_machine_command_prints_every_item():
    shown = subprocess.run(
        [sys.executable, "-m", "gilfree", "machine"], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    for title in (
        "CPU frequency governor",
        "Turbo / boost",
        "SMT siblings",
        "ASLR",
        "Isolated CPUs",
        "irqbalance",
        "Swap in use",
        "Other load",
        "Thermal throttling",
    ):
        line = next(line for line in lines if f" {title} " in line)
        assert line.split()[0] in ("ok", "warn", "unknown"), line
        if line.startswith("warn"):  # the fix on the next line
            assert lines[lines.index(line) + 1].strip().startswith("fix: "), line
    aslr = Path("/proc/sys/kernel/randomize_va_space").read_text().strip()
    assert f"randomize_va_space={aslr}" in next(line for line in lines if " ASLR " in line)
    stored = json.loads(
        subprocess.run(
            [sys.executable, "-m", "gilfree", "machine", "--json"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
            check=True,
        ).stdout
    )
    assert [item["key"] for item in stored["items"]] == KEYS
    refused = subprocess.run(
        [sys.executable, "-m", "gilfree", "machine", "--pin", str(len(available_cpus()))],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert refused.returncode == 2 and refused.stderr.startswith("gilfree: error: --pin")


def sample_readiness(**changed) -> dict:
    """A reading as a session stores it; items as given (made-up values, for the reports' tests)."""
    items = [Item(key, key.title(), Status.OK, f"{key} fine") for key in KEYS]
    items = [changed.get(item.key, item) for item in items]
    return Readiness("2026-12-01T10:00:00.000+00:00", tuple(items)).as_dict()


def with_readiness(record: dict, reading: dict) -> dict:
    record["machine"]["readiness"] = reading
    record["warnings"] = warnings.stored(Readiness.from_dict(reading).warnings())
    return record


def test_tables_and_comparison_show_the_readings_and_not_recorded_for_older_records(tmp_path):
    turbo = Item(
        "turbo",
        "Turbo / boost",
        Status.WARN,
        "on (intel_pstate no_turbo=0)",
        None,
        "`echo 1 | sudo tee /sys/devices/system/cpu/intel_pstate/no_turbo`",
    )
    gil, threaded = article().tables_by_id["asgi-json"].cells[:2]
    results.write_record(
        results.cell_path(tmp_path, gil),
        with_readiness(
            make_record(gil),
            sample_readiness(turbo=turbo, governor=Item("governor", "Governor", Status.UNKNOWN, "none")),
        ),
    )
    results.write_record(results.cell_path(tmp_path, threaded), make_record(threaded))  # older: none recorded
    render.write_all(tmp_path, article())
    table = (tmp_path / "tables" / "asgi-json.md").read_text()
    assert (
        "Machine readiness at the session's start (could make ratios drift: Turbo / boost; cannot be read on "
        "this machine: Governor; not recorded"
    ) in table
    row = next(line for line in table.splitlines() if line.startswith("| Turbo / boost"))
    assert [cell.strip() for cell in row.split("|")[1:-1] if cell] != []
    assert "**warn**" in row and r"`echo 1 \| sudo tee /sys/devices/system/cpu/intel_pstate/no_turbo`" in row
    rows = [line for line in table.splitlines() if line.startswith("| 3.14")]
    assert all("machine not ready" not in line for line in rows)  # the machine's, not a row's, note
    assert "Machine readiness of asgi-json: not recorded" in table
    everything = (tmp_path / "TABLES.md").read_text()
    assert everything.count("## The machine's state") == 1 and "| Turbo / boost" in everything
    compare.write_report(tmp_path, article())
    comparison = (tmp_path / "COMPARISON.md").read_text()
    machine = comparison[comparison.index("## Can this machine test the post?") :]
    assert "### The machine's state" in machine and "| Turbo / boost" in machine
    assert "not recorded" in machine


def test_a_report_of_older_records_only_says_not_recorded(tmp_path):
    cell = article().tables_by_id["asgi-json"].cells[0]
    results.write_record(results.cell_path(tmp_path, cell), make_record(cell))
    section = compare.machine_section(article(), results.load(tmp_path), [])
    assert "Machine readiness of asgi-json: not recorded" in section
    assert verdicts.measured(results.load(tmp_path))


def test_readiness_stays_out_of_the_machine_identity():
    facts = results.machine()
    with_reading = {**facts, "readiness": sample_readiness()}
    assert results.machine_identity(with_reading) == results.machine_identity(facts)
    assert "readiness" not in facts  # the cached facts the fingerprint reads are never changed
