"""CPU threads of a run, chosen so that runs started side by side on one machine do not starve each other.

torch's CPU kernels (and the C++ kernels ``torch.compile`` writes) run on an OpenMP thread pool, one thread per
physical core by default. Between two parallel regions GNU OpenMP (the one torch's wheels ship) spins a waiting
thread for about 300,000 iterations before it sleeps. Alone, that buys a little latency. With two runs on the
same cores, each spinning thread burns the time slice the other run's working thread needs: on a 2-core machine
two runs started together each took 13x as long as one alone (bench/side_by_side.py).

fastddpg's update is a few small matrix products (a 256-wide MLP on a batch of 128): a second thread gains it
little (a lone run was 1.07-1.08x faster with two threads than with one), and a passive wait policy, which stops
the spinning, costs a lone run far more (1.4-1.8x slower) than the second thread gains. So ``Config.threads``
= 0 (auto) means one thread, capped by the cores this process may use (`usable_cores`); nothing else about
OpenMP is changed. ``--threads N`` uses N, for networks large enough to pay for it on a machine to themselves.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

AUTO_THREADS = 1  # see the module docstring: what the update needs, and what runs side by side need

CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def usable_cores(cpu_max: Path = CGROUP_CPU_MAX) -> int:
    """Cores this process may use: its CPU affinity mask, capped by a cgroup v2 CPU quota (``cpu_max``, e.g. a
    container's ``--cpus``) rounded up; at least 1."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    try:
        quota, period = cpu_max.read_text().split()[:2]
        if quota != "max":
            cores = min(cores, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def resolve_threads(threads: int) -> int:
    """``Config.threads`` -> the thread count to use: itself if > 0, else AUTO_THREADS (at most the usable cores)."""
    return threads if threads > 0 else min(AUTO_THREADS, usable_cores())


def apply_threads(threads: int) -> int:
    """Set torch's intra-op threads to ``resolve_threads(threads)`` (a process-wide setting); returns it."""
    import torch

    n = resolve_threads(threads)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n
