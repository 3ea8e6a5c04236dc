"""The sampler's arithmetic against a process whose CPU use is known: one busy child uses one core."""

import subprocess
import sys
import time

import pytest

from gilfree.sampler import TreeSampler

BURN = "import time\nend = time.time() + 1.5\nwhile time.time() < end: pass\n"


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
