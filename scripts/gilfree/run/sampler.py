"""CPU and memory of a server's whole process tree, sampled with psutil while the load runs.

CPU is mean cores used over the window: the growth of user+system CPU seconds of every process in the
tree (all their threads included), divided by the wall time. RAM is the peak of the tree's summed RSS;
pages shared between processes count once per process, as `ps` and most dashboards count them.
Every sample is also kept as a timeline, so RSS that keeps growing under a steady load shows.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass

import psutil

from gilfree.core.stats import rss_growth
from gilfree.study.instruments import SAMPLE_INTERVAL_S

TREE_REFRESH_SAMPLES = 8  # the tree's members are listed again every this many samples (2 s), not at each one
BUSY_CHECK_S = 0.25  # how long, at least, the machine's CPU use is read before a run


class OthersBusy:
    """How busy the rest of the machine is while the harness starts a server: the CPU time of every process but
    this one and its children (the server starting, the reaper), as a share of all cores, from the kernel's
    counters. Leaving our own out lets the check overlap the server's start instead of waiting before it."""

    def __init__(self):
        self._started = time.perf_counter()
        self._machine = psutil.cpu_times()
        self._ours = _our_cpu_s()

    def share(self) -> float:
        """Read once the server is up; a start shorter than BUSY_CHECK_S is waited out, so that every check
        spans at least that long (enough of the kernel's clock ticks to judge)."""
        time.sleep(max(0.0, BUSY_CHECK_S - (time.perf_counter() - self._started)))
        machine, ours = psutil.cpu_times(), _our_cpu_s()
        total = _total_s(machine) - _total_s(self._machine)
        idle = sum(getattr(machine, name, 0.0) - getattr(self._machine, name, 0.0) for name in ("idle", "iowait"))
        return min(1.0, max(0.0, (total - idle - (ours - self._ours)) / total))


def _total_s(times) -> float:
    """All CPUs' time, as psutil counts it: guest time is already in user and nice."""
    return sum(times) - getattr(times, "guest", 0.0) - getattr(times, "guest_nice", 0.0)


def _our_cpu_s() -> float:
    """CPU seconds of this process and every child it has (and of the children they waited for)."""
    me = psutil.Process()
    total = 0.0
    for process in [me, *me.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue  # gone since it was listed: its time is in its parent's children_* once reaped
        total += times.user + times.system + times.children_user + times.children_system
    return total


@dataclass(frozen=True)
class ResourceUsage:
    cpu_cores: float
    peak_rss_bytes: int
    peak_processes: int
    peak_threads: int
    samples: int
    interval_s: float
    window_s: float
    sampler_cpu_s: float  # the sampler's own CPU time: the cost of watching
    # Unique and proportional memory of the tree, read once as the load ends (too costly to sample):
    # PSS shares each shared page among the processes mapping it, so it does not favour one process.
    end_uss_bytes: int | None
    end_pss_bytes: int | None
    # The RSS's least-squares growth over the second half of the window (None: too few samples to tell).
    rss_growth_last_half: float | None
    rss_growth_bytes_per_s: float | None

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Timeline:
    """Every sample of one run, as parallel lists: seconds since sampling began (just before the load),
    cores used since the previous sample (None for the first), the tree's summed RSS, its threads."""

    t_s: list[float]
    cores: list[float | None]
    rss_bytes: list[int]
    threads: list[int]

    def as_dict(self) -> dict:
        return asdict(self)


class TreeSampler:
    """Samples a process and all its descendants in a background thread, between start() and stop()."""

    def __init__(self, root_pid: int, interval_s: float = SAMPLE_INTERVAL_S):
        self.root = psutil.Process(root_pid)
        self.interval_s = interval_s
        self._processes: dict[int, psutil.Process] = {}
        self._members: list[psutil.Process] | None = None
        self._baseline: dict[int, float] = {}
        self._latest: dict[int, float] = {}
        self._peak_rss = self._peak_processes = self._peak_threads = self._samples = 0
        self._own_cpu = 0.0
        # The timeline: seconds since start(), the tree's CPU seconds so far, its RSS and threads, per sample.
        self._t: list[float] = []
        self._cpu: list[float] = []
        self._rss: list[int] = []
        self._threads: list[int] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="tree-sampler", daemon=True)

    def start(self) -> None:
        self._started = time.perf_counter()
        self._sample(baseline=True)
        self._thread.start()

    def stop(self) -> ResourceUsage:
        self._stopping.set()
        self._thread.join()
        self._sample()
        window = time.perf_counter() - self._started
        uss, pss = self._unique_and_proportional()
        growth = rss_growth(self._t, self._rss)
        return ResourceUsage(
            cpu_cores=self._cpu_seconds() / window,
            peak_rss_bytes=self._peak_rss,
            peak_processes=self._peak_processes,
            peak_threads=self._peak_threads,
            samples=self._samples,
            interval_s=self.interval_s,
            window_s=window,
            sampler_cpu_s=self._own_cpu,
            end_uss_bytes=uss,
            end_pss_bytes=pss,
            rss_growth_last_half=growth.relative if growth else None,
            rss_growth_bytes_per_s=growth.bytes_per_s if growth else None,
        )

    def timeline(self) -> Timeline:
        """The samples taken between start() and stop(), rounded to what they can tell (ms, 0.001 core)."""
        t, cpu = self._t, self._cpu
        cores = [None] + [
            round((cpu[i] - cpu[i - 1]) / (t[i] - t[i - 1]), 3) if t[i] > t[i - 1] else None for i in range(1, len(t))
        ]
        return Timeline([round(at, 3) for at in t], cores, list(self._rss), list(self._threads))

    def _cpu_seconds(self) -> float:
        """CPU seconds the tree used since start(), processes that have left included."""
        return sum(self._latest[pid] - self._baseline.get(pid, 0.0) for pid in self._latest)

    def _unique_and_proportional(self) -> tuple[int | None, int | None]:
        """None where the kernel gave no figure (tree gone, no permission, no PSS): never a zero."""
        uss, read = 0, 0
        pss: int | None = 0
        for process in self._members or []:  # the tree as stop()'s last sample listed it
            try:
                memory = process.memory_full_info()
            except (psutil.NoSuchProcess, psutil.ZombieProcess):
                continue
            except psutil.AccessDenied:
                return None, None
            uss += memory.uss
            pss = None if pss is None or not hasattr(memory, "pss") else pss + memory.pss
            read += 1
        return (uss, pss) if read else (None, None)

    def _loop(self) -> None:
        while not self._stopping.wait(self.interval_s):
            self._sample()

    def _tree(self) -> list[psutil.Process]:
        """The tree's processes: listed afresh at the first sample, the last, and every TREE_REFRESH_SAMPLES-th
        (listing children reads every process of the machine); in between, the members last listed, a member
        that left being skipped by _sample."""
        if self._members is None or self._samples % TREE_REFRESH_SAMPLES == 0 or self._stopping.is_set():
            try:
                members = [self.root, *self.root.children(recursive=True)]
            except psutil.NoSuchProcess:
                members = []
            # Keep one Process object per pid so psutil can tell a reused pid from the same process.
            self._members = [self._processes.setdefault(process.pid, process) for process in members]
        return self._members

    def _sample(self, baseline: bool = False) -> None:
        started = time.thread_time()
        rss = threads = alive = 0
        for process in self._tree():
            try:
                with process.oneshot():
                    times = process.cpu_times()
                    rss += process.memory_info().rss
                    threads += process.num_threads()
            except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
                continue  # a process that left keeps its last CPU reading
            alive += 1
            cpu = times.user + times.system
            self._latest[process.pid] = cpu
            if baseline:
                self._baseline[process.pid] = cpu
        self._samples += 1
        if alive:  # a sample that read no process has no RSS to tell, not an RSS of zero
            self._t.append(time.perf_counter() - self._started)
            self._cpu.append(self._cpu_seconds())
            self._rss.append(rss)
            self._threads.append(threads)
        self._peak_rss = max(self._peak_rss, rss)
        self._peak_processes = max(self._peak_processes, alive)
        self._peak_threads = max(self._peak_threads, threads)
        self._own_cpu += time.thread_time() - started
