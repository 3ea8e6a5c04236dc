"""Machine readiness: the state of the machine that makes a ratio drift from run to run, read from the kernel
(/sys, /proc) and psutil. CPU frequency governor, turbo, SMT siblings against the pinning, ASLR, isolated CPUs,
irqbalance, swap in use, other load, thermal throttling: pyperf's `system show`, without its `tune`. The harness
only reads; it changes nothing on the system, and names, per item, the command a person would run to fix it.

An item that cannot be read here (a VM, a container, a kernel that does not expose it) is UNKNOWN, never OK.
Files are read under `root` (default "/"), so a test can hand the reader a tree of its own; processes, swap and
the load average come from psutil.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import psutil

from gilfree.core import stats
from gilfree.core.warnings import StudyWarning, WarningKind
from gilfree.run.processes import available_cpus
from gilfree.study.readiness import Item, Readiness, Status
from gilfree.study.results import now

CPU_DIR = "sys/devices/system/cpu"
LOAD_SAMPLE_S = 0.5  # how long other processes' CPU use is read
BUSIEST_SHOWN = 3
INIT_PID_NAMESPACE = 0xEFFFFFFC  # the initial pid namespace's inode (PROC_PID_INIT_INO): not in a container
PERFORMANCE = "performance"


def read(
    root: str | Path = "/",
    pinnings: Iterable[tuple[Sequence[int] | None, Sequence[int] | None]] = (),
    cpus: Sequence[int] | None = None,
    own_pid: int | None = None,
    sample_s: float = LOAD_SAMPLE_S,
) -> Readiness:
    """The machine's readiness now. `pinnings`: the (server CPUs, load generator CPUs) the session will use,
    checked against the SMT siblings; `cpus`: those the harness may use (default: this process's affinity);
    `own_pid`: whose process tree is the harness's own, left out of the other load (default: this process)."""
    root = Path(root)
    cpus = available_cpus() if cpus is None else tuple(cpus)
    items = (
        governor(root),
        turbo(root),
        smt(root, list(pinnings)),
        aslr(root),
        isolation(root, cpus),
        irqbalance(root),
        swap(),
        load(own_pid or os.getpid(), sample_s, root),
        throttling(root),
    )
    return Readiness(now(), items)


# --- reading files --------------------------------------------------------------------------------------


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def parse_cpu_list(text: str) -> tuple[int, ...]:
    """The kernel's CPU list format ('0-3,8,10-11') as CPU numbers; '' and '(null)' are none."""
    cpus = set()
    for part in text.strip().split(","):
        if not part or part == "(null)":
            continue
        low, _, high = part.partition("-")
        cpus.update(range(int(low), int(high or low) + 1))
    return tuple(sorted(cpus))


def cpu_list(cpus: Iterable[int]) -> str:
    """CPU numbers in the kernel's list format: 0-3,8."""
    runs: list[list[int]] = []
    for cpu in sorted(set(cpus)):
        if runs and cpu == runs[-1][1] + 1:
            runs[-1][1] = cpu
        else:
            runs.append([cpu, cpu])
    return ",".join(str(low) if low == high else f"{low}-{high}" for low, high in runs)


def online_cpus(root: Path) -> tuple[int, ...]:
    """The online CPUs: /sys/devices/system/cpu/online, else every cpuN folder."""
    listed = _read(root / CPU_DIR / "online")
    if listed:
        return parse_cpu_list(listed)
    return tuple(sorted(int(path.name[3:]) for path in (root / CPU_DIR).glob("cpu[0-9]*") if path.name[3:].isdigit()))


def _cpu(root: Path, cpu: int) -> Path:
    return root / CPU_DIR / f"cpu{cpu}"


def under_hypervisor(root: Path) -> bool:
    """A VM: the CPU says so (x86's `hypervisor` flag), or the kernel names its hypervisor."""
    cpuinfo = _read(root / "proc" / "cpuinfo") or ""
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith("flags")), [])
    return "hypervisor" in flags or bool(_read(root / "sys" / "hypervisor" / "type"))


# --- the items ------------------------------------------------------------------------------------------


def governor(root: Path) -> Item:
    title = "CPU frequency governor"
    by_governor: dict[str, list[int]] = {}
    drivers, unread = set(), []
    for cpu in online_cpus(root):
        found = _read(_cpu(root, cpu) / "cpufreq" / "scaling_governor")
        if found:
            by_governor.setdefault(found, []).append(cpu)
            drivers.add(_read(_cpu(root, cpu) / "cpufreq" / "scaling_driver") or "unknown driver")
        else:
            unread.append(cpu)
    if not by_governor:
        return Item(
            "governor",
            title,
            Status.UNKNOWN,
            f"no cpufreq governor under /{CPU_DIR}/cpu*/cpufreq: the kernel exposes none here (a VM or a "
            f"container often has none), so the CPUs' frequency policy is not known",
        )
    value = {
        "governors": {name: cpu_list(cpus) for name, cpus in by_governor.items()},
        "drivers": sorted(drivers),
        "unread": cpu_list(unread),
    }
    said = "; ".join(f"{name} on CPU {cpu_list(cpus)}" for name, cpus in by_governor.items())
    said += f" (driver {', '.join(sorted(drivers))})" + (f"; unreadable on CPU {cpu_list(unread)}" if unread else "")
    if set(by_governor) != {PERFORMANCE}:
        return Item(
            "governor",
            title,
            Status.WARN,
            f"{said}: the frequency follows the load, so it differs from run to run",
            value,
            "`sudo cpupower frequency-set -g performance` (or `echo performance | sudo tee "
            f"/{CPU_DIR}/cpu*/cpufreq/scaling_governor`)",
        )
    return Item("governor", title, Status.UNKNOWN if unread else Status.OK, said, value)


TURBO_DRIFT = ": the clock rises and falls with temperature and the number of busy cores"


def turbo(root: Path) -> Item:
    """intel_pstate's no_turbo where that driver runs; else cpufreq's boost switch, global or per policy."""
    title = "Turbo / boost"
    no_turbo = _read(root / CPU_DIR / "intel_pstate" / "no_turbo")
    if no_turbo in ("0", "1"):
        on = no_turbo == "0"
        return Item(
            "turbo",
            title,
            Status.WARN if on else Status.OK,
            f"{'on' if on else 'off'} (intel_pstate no_turbo={no_turbo}){TURBO_DRIFT if on else ''}",
            {"turbo": on, "source": ["intel_pstate/no_turbo"]},
            f"`echo 1 | sudo tee /{CPU_DIR}/intel_pstate/no_turbo`" if on else None,
        )
    boost = _read(root / CPU_DIR / "cpufreq" / "boost")
    policies = sorted((root / CPU_DIR / "cpufreq").glob("policy*/boost"))
    switches = (
        {"cpufreq/boost": boost}
        if boost in ("0", "1")
        else {f"cpufreq/{path.parent.name}/boost": value for path in policies if (value := _read(path)) in ("0", "1")}
    )
    if not switches:
        return Item(
            "turbo",
            title,
            Status.UNKNOWN,
            f"neither /{CPU_DIR}/intel_pstate/no_turbo nor a cpufreq boost switch is exposed here",
        )
    on = any(value == "1" for value in switches.values())
    shown = ", ".join(f"{switch}={value}" for switch, value in switches.items())
    switch = "cpufreq/boost" if "cpufreq/boost" in switches else "cpufreq/policy*/boost"
    return Item(
        "turbo",
        title,
        Status.WARN if on else Status.OK,
        f"{'on' if on else 'off'} ({shown}){TURBO_DRIFT if on else ''}",
        {"turbo": on, "source": sorted(switches)},
        f"`echo 0 | sudo tee /{CPU_DIR}/{switch}`" if on else None,
    )


def siblings(root: Path) -> dict[int, tuple[int, ...]]:
    """Each online CPU's SMT siblings (itself included), as the kernel lists them; CPUs it does not list are
    left out."""
    found = {}
    for cpu in online_cpus(root):
        listed = _read(_cpu(root, cpu) / "topology" / "thread_siblings_list")
        if listed:
            found[cpu] = parse_cpu_list(listed)
    return found


def shared_cores(
    topology: dict[int, tuple[int, ...]], server: Sequence[int] | None, loadgen: Sequence[int] | None
) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Each core that holds CPUs of both the server and the load generator: (server's, load generator's)."""
    if not server or not loadgen:
        return []
    shared = []
    for core in sorted(set(topology.values())):
        mine, theirs = tuple(c for c in core if c in server), tuple(c for c in core if c in loadgen)
        if mine and theirs:
            shared.append((mine, theirs))
    return shared


def one_per_core(topology: dict[int, tuple[int, ...]]) -> tuple[int, ...]:
    return tuple(sorted({core[0] for core in topology.values()}))


def smt(root: Path, pinnings: Sequence[tuple[Sequence[int] | None, Sequence[int] | None]]) -> Item:
    title = "SMT siblings"
    topology = siblings(root)
    if not topology:
        return Item("smt", title, Status.UNKNOWN, f"no /{CPU_DIR}/cpu*/topology/thread_siblings_list here")
    cores = sorted(set(topology.values()))
    paired = [core for core in cores if len(core) > 1]
    pinned = [(tuple(s), tuple(g)) for s, g in pinnings if s and g]
    shared = [pair for server, loadgen in pinned for pair in shared_cores(topology, server, loadgen)]
    value = {
        "siblings": [list(core) for core in paired],
        "cores": len(cores),
        "logical_cpus": len(topology),
        "pinnings": [[list(s), list(g)] for s, g in pinned],
        "shared": [[list(s), list(g)] for s, g in shared],
    }
    layout = (
        f"SMT on: {len(topology)} logical CPUs on {len(cores)} cores (siblings "
        f"{'; '.join(cpu_list(core) for core in paired[:4])}{' ...' if len(paired) > 4 else ''})"
        if paired
        else f"no SMT siblings: each of the {len(topology)} logical CPUs is a core of its own"
    )
    if shared:
        first_server, first_loadgen = shared[0]
        return Item(
            "smt",
            title,
            Status.WARN,
            f"{layout}; the server's CPU {cpu_list(first_server)} and the load generator's CPU "
            f"{cpu_list(first_loadgen)} are siblings of one core ({len(shared)} core(s) shared): they "
            f"compete for it",
            value,
            f"`echo off | sudo tee /{CPU_DIR}/smt/control`, or run the session on one CPU per core: "
            f"`taskset -c {cpu_list(one_per_core(topology))} nox ...`",
        )
    if pinned:
        layout += "; the server's and the load generator's CPUs share no core"
    elif paired:
        layout += "; server and load generator not pinned (`--pin N` pins them), the scheduler places them"
    if under_hypervisor(root):
        return Item(
            "smt",
            title,
            Status.UNKNOWN,
            f"{layout}, in this VM's topology; the host's siblings of these virtual CPUs are not visible",
            value,
        )
    return Item("smt", title, Status.OK, layout, value)


def aslr(root: Path) -> Item:
    title = "ASLR"
    value = _read(root / "proc" / "sys" / "kernel" / "randomize_va_space")
    if value not in ("0", "1", "2"):
        return Item("aslr", title, Status.UNKNOWN, "/proc/sys/kernel/randomize_va_space cannot be read here")
    if value == "2":
        return Item(
            "aslr",
            title,
            Status.OK,
            "full randomization (randomize_va_space=2): every run gets another "
            "memory layout, and repeated runs average over them",
            2,
        )
    return Item(
        "aslr",
        title,
        Status.WARN,
        f"{'off' if value == '0' else 'partial'} (randomize_va_space={value}): each build keeps one "
        f"memory layout in every run, which may favour one of the two, and no --repeat averages it out",
        int(value),
        "`sudo sysctl -w kernel.randomize_va_space=2`",
    )


def _cmdline_cpus(cmdline: str, name: str) -> str | None:
    """A kernel parameter's CPU list (isolcpus's flags, such as `domain,managed_irq,`, left out)."""
    match = re.search(rf"(?:^|\s){name}=(\S+)", cmdline)
    if not match:
        return None
    return ",".join(part for part in match[1].split(",") if part[:1].isdigit())


def isolation(root: Path, cpus: Sequence[int]) -> Item:
    title = "Isolated CPUs"
    listed = _read(root / CPU_DIR / "isolated")
    cmdline = _read(root / "proc" / "cmdline")
    if listed is None and cmdline is None:
        return Item(
            "isolation", title, Status.UNKNOWN, f"neither /{CPU_DIR}/isolated nor /proc/cmdline can be read here"
        )
    parameters = {
        name: found
        for name in ("isolcpus", "nohz_full", "rcu_nocbs")
        if cmdline and (found := _cmdline_cpus(cmdline, name)) is not None
    }
    isolated = parse_cpu_list(listed if listed is not None else parameters.get("isolcpus", ""))
    nohz = parse_cpu_list(_read(root / CPU_DIR / "nohz_full") or parameters.get("nohz_full", ""))
    value = {
        "isolated": cpu_list(isolated),
        "nohz_full": cpu_list(nohz),
        "harness_cpus": cpu_list(cpus),
        "cmdline": parameters,
    }
    if isolated and set(cpus) <= set(isolated):
        return Item(
            "isolation",
            title,
            Status.OK,
            f"the harness runs on isolated CPU {cpu_list(cpus)} (nohz_full: {cpu_list(nohz) or 'none'})",
            value,
        )
    if isolated:
        return Item(
            "isolation",
            title,
            Status.WARN,
            f"CPU {cpu_list(isolated)} isolated, but the harness runs on CPU {cpu_list(cpus)}: other "
            f"tasks may run beside it",
            value,
            f"run the session on the isolated CPUs: `taskset -c {cpu_list(isolated)} nox ...`",
        )
    keep = set(siblings(root).get(min(cpus), (min(cpus),))) if cpus else set()
    chosen = cpu_list(c for c in cpus if c not in keep)
    fix = (
        f"`sudo sed -i 's/^GRUB_CMDLINE_LINUX=\"/&isolcpus={chosen} nohz_full={chosen} rcu_nocbs={chosen} /' "
        f"/etc/default/grub && sudo update-grub`, reboot, then run the session under `taskset -c {chosen} nox ...`"
        if chosen
        else None
    )  # one core: nothing to isolate it from
    return Item(
        "isolation",
        title,
        Status.WARN,
        "no CPU isolated (no isolcpus= on the kernel command line): the scheduler may run other tasks "
        "on the server's and the load generator's CPUs",
        value,
        fix,
    )


def _own_pid_namespace(root: Path) -> bool | None:
    """Whether this process sees every process of the machine (the initial pid namespace); None: cannot tell."""
    try:
        return os.stat(root / "proc" / "self" / "ns" / "pid").st_ino == INIT_PID_NAMESPACE
    except OSError:
        return None


def irqbalance(root: Path) -> Item:
    title = "irqbalance"
    running = []
    for process in psutil.process_iter(["name", "cmdline"]):
        cmdline = process.info["cmdline"] or []
        if process.info["name"] == "irqbalance" or (cmdline and os.path.basename(cmdline[0]) == "irqbalance"):
            running.append(process.pid)
    if running:
        return Item(
            "irqbalance",
            title,
            Status.WARN,
            f"running (pid {', '.join(map(str, running))}): it moves interrupts between CPUs while the load runs",
            {"running": True, "pids": running},
            "`sudo systemctl stop irqbalance`",
        )
    if _own_pid_namespace(root):
        return Item("irqbalance", title, Status.OK, "not running", {"running": False})
    return Item(
        "irqbalance",
        title,
        Status.UNKNOWN,
        "not seen, but this process sees only its own pid namespace's processes (a container): the host's "
        "are not visible",
        {"running": None},
    )


def swap() -> Item:
    title = "Swap in use"
    used = psutil.swap_memory()
    value = {"total_bytes": used.total, "used_bytes": used.used}
    if not used.total:
        return Item("swap", title, Status.OK, "no swap", value)
    if not used.used:
        return Item("swap", title, Status.OK, f"none in use ({used.total / 2**30:.1f} GiB of swap)", value)
    return Item(
        "swap",
        title,
        Status.WARN,
        f"{used.used / 2**20:.0f} MiB in use of {used.total / 2**30:.1f} GiB: pages a run needs may have to "
        f"come back from disk",
        value,
        "`sudo swapoff -a && sudo swapon -a` (brings the pages back to memory; needs that much free memory)",
    )


def _cpu_seconds(process: psutil.Process) -> float | None:
    try:
        times = process.cpu_times()
        return times.user + times.system
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


def _own_tree(pid: int) -> set[int]:
    try:
        return {pid, *(child.pid for child in psutil.Process(pid).children(recursive=True))}
    except psutil.NoSuchProcess:
        return {pid}


def other_cpu(own_pid: int, sample_s: float) -> list[tuple[float, int, str]]:
    """(cores used, pid, name) of every process outside `own_pid`'s tree that used CPU over `sample_s`, busiest
    first."""
    first = {}
    for process in psutil.process_iter(["name"]):
        if (seconds := _cpu_seconds(process)) is not None:
            first[process.pid] = (process, seconds)
    started = time.monotonic()
    time.sleep(sample_s)
    elapsed = time.monotonic() - started
    own = _own_tree(own_pid)
    used = []
    for pid, (process, seconds) in first.items():
        later = _cpu_seconds(process) if pid not in own and process.is_running() else None
        if later is not None and later > seconds:
            used.append(((later - seconds) / elapsed, pid, process.info["name"] or "?"))
    return sorted(used, reverse=True)


def load(own_pid: int, sample_s: float, root: Path = Path("/")) -> Item:
    """The load average, and what processes other than the harness's own tree used of the CPUs over `sample_s`
    (that share is judged, with the limit a run is judged by: the load average also counts the harness's own
    work, such as the environments nox has just built)."""
    title = "Other load"
    averages = psutil.getloadavg()
    cores = psutil.cpu_count() or 1
    used = other_cpu(own_pid, sample_s)
    share = sum(cores_used for cores_used, _, _ in used) / cores
    busiest = [
        {"pid": pid, "name": name, "cores": round(cores_used, 3)} for cores_used, pid, name in used[:BUSIEST_SHOWN]
    ]
    value = {
        "load_average": [round(a, 2) for a in averages],
        "cpus": cores,
        "other_share": round(share, 4),
        "busiest": busiest,
        "sample_s": sample_s,
    }
    shown = ", ".join(f"{b['name']} (pid {b['pid']}, {b['cores']:.2f} cores)" for b in busiest)
    said = (
        f"load average {averages[0]:.2f} / {averages[1]:.2f} / {averages[2]:.2f} on {cores} CPUs; other "
        f"processes used {share:.0%} of the CPUs over {sample_s:g}s" + (f", busiest: {shown}" if shown else "")
    )
    if _own_pid_namespace(root) is False:
        said += " (this container's processes only)"
    if stats.machine_busy(share) and busiest:
        top = busiest[0]
        return Item(
            "load",
            title,
            Status.WARN,
            f"{said}: above the {stats.BUSY_LIMIT:.0%} a run may start at",
            value,
            f"stop or pause what runs beside the benchmark, e.g. `sudo kill -STOP {top['pid']}` "
            f"({top['name']}; `sudo kill -CONT {top['pid']}` resumes it)",
        )
    return Item("load", title, Status.OK, said, value)


def throttle_counts(root: str | Path = "/") -> dict[str, int] | None:
    """The kernel's thermal throttling counters (Intel's therm driver): per CPU its core count, per package its
    package count (which every CPU of the package repeats); None where the kernel exposes none."""
    root = Path(root)
    counts = {}
    for cpu in online_cpus(root):
        folder = _cpu(root, cpu) / "thermal_throttle"
        core = _read(folder / "core_throttle_count")
        if core and core.isdigit():
            counts[f"cpu{cpu}"] = int(core)
        package = _read(folder / "package_throttle_count")
        if package and package.isdigit():  # the package's count, as its CPUs read it (the highest, mid-update)
            name = f"package{_read(_cpu(root, cpu) / 'topology' / 'physical_package_id') or '?'}"
            counts[name] = max(counts.get(name, 0), int(package))
    return counts or None


def events_between(before: dict[str, int] | None, after: dict[str, int] | None) -> int | None:
    """Throttling events counted between two readings; None where either could not be read."""
    if before is None or after is None:
        return None
    return sum(max(0, after[name] - before.get(name, 0)) for name in after)


def throttling(root: Path) -> Item:
    """At a session's start: whether the kernel counts throttling here (runs count it before and after)."""
    title = "Thermal throttling"
    counts = throttle_counts(root)
    if counts is None:
        return Item(
            "throttling",
            title,
            Status.UNKNOWN,
            f"the kernel exposes no /{CPU_DIR}/cpu*/thermal_throttle counters here: throttling during a run "
            f"cannot be seen",
        )
    return Item(
        "throttling",
        title,
        Status.OK,
        f"counted by the kernel ({sum(counts.values())} event(s) since boot); checked before and after every run",
        {"since_boot": sum(counts.values())},
    )


def note_throttling(run: dict, before: dict[str, int] | None, root: str | Path = "/") -> None:
    """Store the throttling a run saw (`throttle_events`; None where it cannot be counted), with a warning
    where there was some."""
    events = events_between(before, throttle_counts(root))
    run["throttle_events"] = events
    if events:
        run["warnings"] = run.get("warnings", []) + [
            StudyWarning(WarningKind.THERMAL_THROTTLED, {"events": events}).as_dict()
        ]
