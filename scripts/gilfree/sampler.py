"""CPU and memory of a server's whole process tree, sampled with psutil while the load runs.

CPU is mean cores used over the window: the growth of user+system CPU seconds of every process in the
tree (all their threads included), divided by the wall time. RAM is the peak of the tree's summed RSS;
pages shared between processes count once per process, as `ps` and most dashboards count them.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass

import psutil

DEFAULT_INTERVAL_S = 0.25


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

    def as_dict(self) -> dict:
        return asdict(self)


class TreeSampler:
    """Samples a process and all its descendants in a background thread, between start() and stop()."""

    def __init__(self, root_pid: int, interval_s: float = DEFAULT_INTERVAL_S):
        self.root = psutil.Process(root_pid)
        self.interval_s = interval_s
        self._processes: dict[int, psutil.Process] = {}
        self._baseline: dict[int, float] = {}
        self._latest: dict[int, float] = {}
        self._peak_rss = self._peak_processes = self._peak_threads = self._samples = 0
        self._own_cpu = 0.0
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
        cpu_seconds = sum(self._latest[pid] - self._baseline.get(pid, 0.0) for pid in self._latest)
        return ResourceUsage(
            cpu_cores=cpu_seconds / window,
            peak_rss_bytes=self._peak_rss,
            peak_processes=self._peak_processes,
            peak_threads=self._peak_threads,
            samples=self._samples,
            interval_s=self.interval_s,
            window_s=window,
            sampler_cpu_s=self._own_cpu,
            end_uss_bytes=uss,
            end_pss_bytes=pss,
        )

    def _unique_and_proportional(self) -> tuple[int | None, int | None]:
        """None where the kernel gave no figure (tree gone, no permission, no PSS): never a zero."""
        uss, pss, read = 0, 0, 0
        for process in self._tree():
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
        try:
            members = [self.root, *self.root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []
        # Keep one Process object per pid so psutil can tell a reused pid from the same process.
        return [self._processes.setdefault(process.pid, process) for process in members]

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
        self._peak_rss = max(self._peak_rss, rss)
        self._peak_processes = max(self._peak_processes, alive)
        self._peak_threads = max(self._peak_threads, threads)
        self._own_cpu += time.thread_time() - started
