"""The sampler's arithmetic against processes whose CPU the test reads itself (from the kernel, as the sampler
does, over a window that holds the sampler's), and its timeline against processes whose memory grows or stays
put. No figure depends on how busy the machine is: bounds come from what the test measured, not from a band."""

import select
import subprocess
import sys
import time

import numpy
import psutil
import pytest
from conftest import cpu_seconds, spinning, wait_for

from gilfree.core.stats import RSS_GROWTH_LIMIT
from gilfree.run.sampler import TreeSampler

SPIN = "while True: pass\n"
READY = "import sys\nprint('ready', flush=True)\n"
# Holds 2 MiB more every 50 ms (pages written, so resident), up to 256 MiB, then holds it until killed.
GROW = (
    READY + "import time\nheld = []\nwhile True:\n    if len(held) < 128:\n        held.append(b'x' * 2**21)\n"
    "    time.sleep(0.05)\n"
)
STILL = READY + "import time\ntime.sleep(600)\n"
# Waits for a line, spins for 0.6 s of its own CPU, says so, then idles until it is killed.
SPIN_ON_CUE = (
    "import sys, time\nsys.stdin.readline()\nend = time.process_time() + 0.6\n"
    "while time.process_time() < end: pass\nprint('spun', flush=True)\nsys.stdin.read()\n"
)
# CPU the kernel may count in one go (a clock tick, 10 ms at HZ=100) plus a process's few instructions between
# two events the test orders (a print and the read after it): far below any figure asserted.
TICK_S = 0.03


def read_line(child: subprocess.Popen, timeout: float = 30.0) -> str:
    """The child's next line on stdout, waiting for it (not for a fixed time) up to `timeout`."""
    ready, _, _ = select.select([child.stdout], [], [], timeout)
    assert ready, f"pid {child.pid} said nothing within {timeout:.0f}s"
    return child.stdout.readline().strip()


def samples(sampler: TreeSampler) -> int:
    return len(sampler.timeline().t_s)


def sampled(code: str, count: int, until=lambda timeline: True) -> tuple:
    """Sample a child running `code`, every 0.1 s, from the moment it is ready (its imports done, so its memory
    is its own code's) until the sampler has taken `count` samples and `until(timeline)` holds."""
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert read_line(child) == "ready"
        sampler = TreeSampler(child.pid, interval_s=0.1)
        sampler.start()
        wait_for(lambda: samples(sampler) >= count and until(sampler.timeline()), what=f"{count} samples")
        return sampler.stop(), sampler.timeline()
    finally:
        child.kill()
        child.wait(10)


def test_a_busy_child_counts_as_one_core_and_the_idle_parent_as_none():
    # The parent waits; its child spins on one core: the tree's CPU is the child's, read by the kernel.
    parent = subprocess.Popen(
        [sys.executable, "-c", f"import subprocess, sys; subprocess.run([sys.executable, '-c', {SPIN!r}])"]
    )
    root = psutil.Process(parent.pid)
    try:
        [child] = wait_for(root.children, what="the spinning child")
        spinning(child)
        outer_started = time.perf_counter()
        before = cpu_seconds(root, child)
        sampler = TreeSampler(parent.pid, interval_s=0.1)
        sampler.start()
        # half a CPU second of spinning and 8 samples: whatever else the machine runs, they come, only later
        wait_for(lambda: cpu_seconds(child) - before > 0.5 and samples(sampler) >= 8, what="0.5 s of the child's CPU")
        usage, timeline = sampler.stop(), sampler.timeline()
        used = cpu_seconds(root, child) - before
        outer = time.perf_counter() - outer_started
    finally:
        for process in root.children(recursive=True):
            process.kill()
        parent.wait(10)
    sampled_s = usage.cpu_cores * usage.window_s
    # The sampler read both processes after the test's first reading and before its last: it saw no more CPU
    # than the kernel counted between them, and no less than that minus what two processes can use in the wall
    # time outside its readings (its baseline is read before t_s[0]; its last reading after t_s[-2]).
    unseen_s = outer - (timeline.t_s[-2] - timeline.t_s[0]) + 0.002  # the timeline is rounded to ms
    assert used - 2 * unseen_s - TICK_S <= sampled_s <= used + TICK_S
    assert sampled_s > 0.5 - 2 * unseen_s - TICK_S  # the child's spin, not only its idle parent's
    assert usage.cpu_cores <= 1 + TICK_S / usage.window_s  # one spinning thread: one core at most
    assert usage.peak_processes == 2 and usage.peak_rss_bytes > 2 * 2**20
    assert usage.samples >= 8
    assert usage.sampler_cpu_s > 0  # its own cost, recorded (how much depends on the machine, not on the code)
    assert 0 < usage.end_uss_bytes <= usage.end_pss_bytes <= usage.peak_rss_bytes * 1.2


def test_a_tree_that_has_exited_keeps_its_last_reading():
    child = subprocess.Popen(
        [sys.executable, "-c", SPIN_ON_CUE], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    process = psutil.Process(child.pid)
    before = cpu_seconds(process)
    sampler = TreeSampler(child.pid, interval_s=0.05)
    sampler.start()
    child.stdin.write("go\n")
    child.stdin.flush()
    assert read_line(child) == "spun"
    seen = samples(sampler)
    wait_for(lambda: samples(sampler) >= seen + 2, what="a sample after the spin")  # one began after it
    spun = cpu_seconds(process) - before
    child.kill()  # SIGKILL: no interpreter shutdown to spend CPU after the reading above
    child.wait(10)
    usage = sampler.stop()  # its last sample finds no process at all
    used = usage.cpu_cores * usage.window_s
    # the CPU it used before it left, not zero: its 0.6 s spin, all inside the window, and no more than it used
    assert 0.6 - TICK_S <= used <= spun + TICK_S


def test_the_timeline_keeps_every_sample_and_its_cpu_adds_up_to_the_mean():
    child = subprocess.Popen([sys.executable, "-c", SPIN])
    try:
        spinning(psutil.Process(child.pid))
        sampler = TreeSampler(child.pid, interval_s=0.1)
        called = time.perf_counter()
        sampler.start()
        start_s = time.perf_counter() - called
        wait_for(lambda: samples(sampler) >= 10, what="10 samples")
        usage, timeline = sampler.stop(), sampler.timeline()
    finally:
        child.kill()
        child.wait(10)
    assert len(timeline.t_s) == len(timeline.cores) == len(timeline.rss_bytes) == len(timeline.threads) == usage.samples
    assert timeline.t_s[0] <= round(start_s, 3) + 0.001  # the first sample is the baseline start() takes
    assert timeline.t_s == sorted(timeline.t_s)
    assert timeline.cores[0] is None and all(cores >= 0 for cores in timeline.cores[1:])
    assert max(timeline.rss_bytes) == usage.peak_rss_bytes and min(timeline.threads) >= 1
    # Cores per interval, times the interval, sum to the CPU seconds behind the mean (up to the rounding).
    used = sum(cores * (t - before) for cores, t, before in zip(timeline.cores[1:], timeline.t_s[1:], timeline.t_s))
    assert used == pytest.approx(usage.cpu_cores * usage.window_s, rel=0.05, abs=0.01)


def second_half_slope(timeline) -> float:
    """Bytes per second of a least-squares line through the second half of the samples, computed here."""
    half = [(t, rss) for t, rss in zip(timeline.t_s, timeline.rss_bytes) if t >= timeline.t_s[-1] / 2]
    return float(numpy.polyfit(*zip(*half), 1)[0])


def test_memory_that_keeps_growing_is_flagged_and_memory_that_stays_is_not():
    growing, timeline = sampled(GROW, 15, until=lambda line: line.rss_bytes[-1] - line.rss_bytes[0] > 20 * 2**20)
    assert timeline.rss_bytes[-1] - timeline.rss_bytes[0] > 10 * 2**20
    assert growing.rss_growth_last_half > RSS_GROWTH_LIMIT
    assert growing.rss_growth_bytes_per_s == pytest.approx(second_half_slope(timeline), rel=0.02)
    assert growing.rss_growth_bytes_per_s > 0
    still, timeline = sampled(STILL, 15)
    assert abs(still.rss_growth_last_half) < 0.01
    assert still.rss_growth_bytes_per_s == pytest.approx(second_half_slope(timeline), rel=0.02, abs=2**10)
