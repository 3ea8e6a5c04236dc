"""The sampler's arithmetic against a process whose CPU use is known (one busy child uses one core), and its
timeline against processes whose memory grows or stays put."""

import subprocess
import sys
import time

import pytest
from gilfree.run.sampler import TreeSampler

BURN = "import time\nend = time.time() + 1.5\nwhile time.time() < end: pass\n"
# Holds 2 MiB more every 50 ms (pages written, so resident) for 3 s.
GROW = "import time\nheld = []\nend = time.time() + 3\nwhile time.time() < end:\n    held.append(b'x' * 2**21)\n" \
       "    time.sleep(0.05)\n"
STILL = "import time\ntime.sleep(3)\n"


def sampled(code: str, seconds: float) -> tuple:
    """Sample a child running `code` for `seconds`, every 0.1 s; its usage and its timeline."""
    child = subprocess.Popen([sys.executable, "-c", code])
    try:
        time.sleep(0.2)
        sampler = TreeSampler(child.pid, interval_s=0.1)
        sampler.start()
        time.sleep(seconds)
        return sampler.stop(), sampler.timeline()
    finally:
        child.kill()
        child.wait(10)


def test_a_busy_child_counts_as_one_core_and_the_idle_parent_as_none():
    # The parent sleeps; its child spins on one core: the tree's CPU is the child's.
    parent = subprocess.Popen([sys.executable, "-c", f"import subprocess, sys; subprocess.run([sys.executable, '-c', {BURN!r}])"])
    try:
        time.sleep(0.3)
        sampler = TreeSampler(parent.pid, interval_s=0.1)
        sampler.start()
        time.sleep(1.0)
        usage = sampler.stop()
    finally:
        parent.wait(10)
    assert usage.cpu_cores == pytest.approx(1.0, abs=0.15)
    assert usage.peak_processes == 2 and usage.peak_rss_bytes > 2 * 2**20
    assert usage.samples >= 8
    assert usage.sampler_cpu_s < 0.1 * usage.window_s
    assert 0 < usage.end_uss_bytes <= usage.end_pss_bytes <= usage.peak_rss_bytes * 1.2


def test_a_tree_that_has_exited_keeps_its_last_reading():
    child = subprocess.Popen([sys.executable, "-c", BURN.replace("1.5", "0.6")])
    sampler = TreeSampler(child.pid, interval_s=0.05)
    sampler.start()
    child.wait(10)
    time.sleep(0.2)
    usage = sampler.stop()
    assert 0.3 < usage.cpu_cores * usage.window_s < 0.8  # the CPU it used before it left, not zero


def test_the_timeline_keeps_every_sample_and_its_cpu_adds_up_to_the_mean():
    usage, timeline = sampled(BURN, 1.0)
    assert len(timeline.t_s) == len(timeline.cores) == len(timeline.rss_bytes) == len(timeline.threads) == usage.samples
    assert timeline.t_s[0] < 0.05 and timeline.t_s == sorted(timeline.t_s)
    assert timeline.cores[0] is None and all(cores >= 0 for cores in timeline.cores[1:])
    assert max(timeline.rss_bytes) == usage.peak_rss_bytes and min(timeline.threads) >= 1
    # Cores per interval, times the interval, sum to the CPU seconds behind the mean (up to the rounding).
    used = sum(cores * (t - before) for cores, t, before in zip(timeline.cores[1:], timeline.t_s[1:], timeline.t_s))
    assert used == pytest.approx(usage.cpu_cores * usage.window_s, rel=0.05, abs=0.01)


def test_memory_that_keeps_growing_is_flagged_and_memory_that_stays_is_not():
    growing, timeline = sampled(GROW, 1.5)
    assert timeline.rss_bytes[-1] - timeline.rss_bytes[0] > 10 * 2**20
    assert growing.rss_growth_last_half > 0.05 and growing.rss_growth_bytes_per_s > 2**20
    still, _ = sampled(STILL, 1.5)
    assert abs(still.rss_growth_last_half) < 0.01
