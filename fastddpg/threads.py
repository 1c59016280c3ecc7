"""CPU threads of a run, and how idle ones wait, so that runs started side by side on one machine share its cores.

torch's CPU kernels (and the C++ kernels ``torch.compile`` writes) run on an OpenMP thread pool, one thread per
physical core by default. Between two parallel regions GNU OpenMP (the one torch's wheels ship) spins a waiting
thread for about 300,000 iterations before it sleeps. Alone, that buys a little latency. With two processes on
the same cores, each spinning thread burns the time slice the other process's working thread needs, and the
pair runs several times slower than the same two runs one after another (bench/side_by_side.py measures it).

Two settings, both applied by ``fastddpg run`` and by `fastddpg.train` where they can still take effect:

- `WAIT_DEFAULTS`: environment variables read by OpenMP when torch is first imported, so they are set before
  that (`set_wait_policy`; the CLI does it before importing torch). A variable the user already set is kept.
- ``Config.threads`` (`apply_threads`): torch's intra-op threads; 0 = the cores this process may use
  (`usable_cores`: CPU affinity and a cgroup CPU quota, which torch's own default does not see).
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import MutableMapping
from pathlib import Path

# OpenMP's wait policy when the user has not chosen one: GOMP_SPINCOUNT / OMP_WAIT_POLICY
WAIT_DEFAULTS: dict[str, str] = {"OMP_WAIT_POLICY": "PASSIVE"}
_USER_CHOICES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


def set_wait_policy(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Put `WAIT_DEFAULTS` into ``environ`` (default ``os.environ``) unless the user set a wait policy or spin
    count there. Returns what was set. It takes effect only if torch has not been imported yet in this process
    (OpenMP reads the variables once, when torch loads it); child processes inherit it either way."""
    env = os.environ if environ is None else environ
    if any(k in env for k in _USER_CHOICES):
        return {}
    env.update(WAIT_DEFAULTS)
    return dict(WAIT_DEFAULTS)


def wait_policy_active() -> bool:
    """Whether this process's OpenMP runs with `WAIT_DEFAULTS` (set before torch was imported)."""
    return "torch" not in sys.modules and all(os.environ.get(k) == v for k, v in WAIT_DEFAULTS.items())


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
    """``Config.threads`` -> the thread count to use: itself if > 0, else min(torch's default, usable cores)."""
    if threads > 0:
        return threads
    import torch

    return max(1, min(torch.get_num_threads(), usable_cores()))


def apply_threads(threads: int) -> int:
    """Set torch's intra-op threads to ``resolve_threads(threads)`` (a process-wide setting); returns it."""
    import torch

    n = resolve_threads(threads)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n
