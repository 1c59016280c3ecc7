"""CPU threads of a run: the cores divided among the fastddpg runs on this machine, re-divided as runs come and go.

torch's CPU kernels (and the C++ kernels ``torch.compile`` writes) run on an OpenMP thread pool, one thread per
physical core by default. Between two parallel regions GNU OpenMP (the one torch's wheels ship) spins a waiting
thread for about 300,000 iterations before it sleeps. Alone, that buys a little latency. With two runs on the
same cores, each spinning thread burns the time slice the other run's working thread needs: on a 2-core machine
two runs started together with two threads each took 13x as long as one alone (bench/side_by_side.py). A passive
wait policy, which stops the spinning, costs a lone run far more (1.4-1.8x slower) than it saves, so OpenMP's own
settings are left as the user set them; what fastddpg chooses is the number of threads.

One thread per run is right for runs side by side, but a lone run gives up speed for it: 1.07-1.08x on a 2-core
AMD EPYC, 1.3x on a 2-core Intel machine. So ``Config.threads`` = 0 (auto) divides the cores among the runs:

- a run takes a *lease*, a file named by its pid in `lease_dir` (per user; ``FASTDDPG_LEASE_DIR`` overrides it),
  as early as it can (``fastddpg run`` before it imports torch, so that runs started together see each other;
  `apply_threads` takes one for a `Trainer` built from Python), and gives it back at exit. A crashed run's lease
  is recognised by its pid no longer running (or running a process started at another time: a reused pid) and
  removed by the next run that counts the leases;
- as late as it can (when the `Trainer` is built, after the imports) it sets its threads to
  ``usable_cores() // live leases`` (its own included), at least 1 and at most `AUTO_MAX_THREADS` (`fair_share`);
- at every report the trainer re-divides the cores (`resolve_threads` again): a run that started alone with two
  threads drops to one when a second starts, and goes back to two when that one ends;
- within its share, a CPU run with a hand-derived or eager update trains on 1 thread or on the share, whichever
  it measures faster (`fastddpg.training.thread_tuner`).

Every run takes a lease, so an auto run counts runs with ``--threads N`` too: such a run's lease records its N,
and the auto runs divide what the fixed ones leave (`resolve_threads`: on four cores, an auto run beside a
``--threads 3`` run takes one thread, not half of the four). ``--threads N`` itself is never changed (launchers
that start several processes, bench/curve.py, bench/workers.py, sweeps with Ray's ``cpus_per_trial``, choose
their threads per process). A re-division reaches the matrix products (torch's own
kernels, which read the thread count at each call) but not the elementwise kernels ``torch.compile`` wrote, which
keep the count they were compiled with; inductor's ``cpp.dynamic_threads`` would make them follow, but it cost
the compiled update 5-10% on a 2-core AMD EPYC (bench/update.py's batch-128 rate, three interleaved pairs at 1 and at
2 threads), so it is left off: after a re-division only those small kernels run on the old count.

This module imports no torch at module level: ``fastddpg run`` takes its lease before importing torch.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

# The most threads auto gives one run, however many cores are free: the update is a few small matrix products
# (a 256-wide MLP on a batch of 128) and the env steps are sequential Python, so beyond a few threads each one's
# share of a product is too small to pay for waking it (measured: 2 threads 1.07-1.3x faster than 1; more cores
# than 2 were not at hand, so the cap is a bound on the waste, not a measured optimum). --threads N goes beyond.
AUTO_MAX_THREADS = 4

CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
LEASE_DIR_ENV = "FASTDDPG_LEASE_DIR"


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


def fair_share(cores: int, runs: int, cap: int = AUTO_MAX_THREADS) -> int:
    """Threads of one of ``runs`` runs sharing ``cores`` cores: ``cores // runs``, at least 1, at most ``cap``."""
    return max(1, min(cap, cores // max(1, runs)))


# --- leases --------------------------------------------------------------------------------------------------
def lease_dir() -> Path:
    """Where the runs of this user keep their leases: ``$FASTDDPG_LEASE_DIR``, else ``TMP/fastddpg-UID/leases``."""
    override = os.environ.get(LEASE_DIR_ENV)
    if override:
        return Path(override)
    return Path(tempfile.gettempdir()) / f"fastddpg-{os.getuid()}" / "leases"


def _stat_fields(pid: int) -> list[str]:
    """``/proc/PID/stat``'s fields from field 3 (the state) on; [] where it cannot be read (no /proc, or no such
    process)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return []
    return stat.rsplit(")", 1)[-1].split()  # after the command name, which may hold spaces and parentheses


def process_start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, from ``/proc/PID/stat``), so that a lease is not
    taken for live when its pid has been reused; None where that cannot be read (no /proc, or no such process)."""
    fields = _stat_fields(pid)
    return fields[19] if len(fields) > 19 else None  # field 22 of proc(5); fields[0] is field 3


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (signal 0 checks without sending; another user's process is alive too)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def is_zombie(pid: int) -> bool:
    """Whether process ``pid`` has exited but not been reaped by its parent (state Z in ``/proc/PID/stat``): it
    still answers signal 0, yet runs nothing. False where that cannot be read."""
    fields = _stat_fields(pid)
    return bool(fields) and fields[0] == "Z"


def lease_is_live(path: Path) -> bool:
    """Whether the lease file ``path`` (named by its pid) belongs to a running process: the pid is alive, not a
    zombie (a killed run whose launcher has not reaped it) and, where both are known, started when the lease
    says."""
    pid = int(path.name)
    if not pid_alive(pid) or is_zombie(pid):
        return False
    try:
        recorded = json.loads(path.read_text()).get("start")
    except (OSError, ValueError, AttributeError):
        return True  # the pid runs; a lease that cannot be read is not worth dropping a live run's share for
    now = process_start(pid)
    return recorded is None or now is None or recorded == now


def lease_threads(directory: Path, pid: int) -> int:
    """The threads run ``pid`` holds with ``--threads N``: its lease's N; 0 for an auto run, or a lease that
    cannot be read (an older fastddpg's, one being replaced)."""
    try:
        n = json.loads((directory / str(pid)).read_text()).get("threads", 0)
    except (OSError, ValueError, AttributeError):
        return 0
    return n if isinstance(n, int) and n > 0 else 0


def live_leases(directory: Path) -> set[int]:
    """The pids of the live leases in ``directory``; the leases of processes that are gone are removed."""
    try:
        paths = [p for p in directory.iterdir() if p.name.isdigit()]
    except OSError:
        return set()
    live = set()
    for path in paths:
        if lease_is_live(path):
            live.add(int(path.name))
        else:
            with contextlib.suppress(OSError):
                path.unlink()
    return live


@dataclass(frozen=True)
class Lease:
    """One process's lease: the file ``directory/PID``, holding its pid and start time (JSON)."""

    directory: Path
    pid: int
    threads: int = 0  # the run's --threads (0: auto)

    @property
    def path(self) -> Path:
        return self.directory / str(self.pid)

    def release(self) -> None:
        """Remove the lease file; only the process that took it does (a forked child inherits the object)."""
        if os.getpid() == self.pid:
            with contextlib.suppress(OSError):
                self.path.unlink()


_held: Lease | None = None  # this process's lease


def take_lease(threads: int = 0) -> Lease | None:
    """This process's lease, taken on the first call (written atomically: a temporary file renamed to the pid) and
    released when its training ends (`Trainer.train`) or at exit; None where leases are not available (no POSIX,
    or the lease directory is not writable), in which case the process counts as alone. ``threads``: the run's
    ``--threads`` (0: auto), recorded in the lease so that auto runs leave a fixed run its cores; a later call with
    another count rewrites it."""
    global _held
    pid = os.getpid()
    if _held is not None and _held.pid == pid and _held.threads == threads:
        return _held
    if os.name != "posix":  # os.kill(pid, 0) is no liveness check elsewhere
        return None
    lease = Lease(lease_dir(), pid, threads)
    tmp = lease.directory / f".{pid}.tmp"
    try:
        lease.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp.write_text(json.dumps({"pid": pid, "start": process_start(pid), "threads": threads}))
        os.replace(tmp, lease.path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
        return None
    if _held is None or _held.pid != pid:
        atexit.register(release_lease)
    _held = lease
    return lease


def release_lease() -> None:
    """Give this process's lease back now (it is also given back at exit)."""
    global _held
    if _held is not None:
        _held.release()
        _held = None


def runs_here() -> int:
    """The fastddpg runs on this machine with a live lease, this process counted once whether or not it holds one."""
    return len(_other_runs()) + 1


def _other_runs() -> set[int]:
    """The pids of the other live leases here (none without POSIX)."""
    if os.name != "posix":
        return set()
    return live_leases(_lease_directory()) - {os.getpid()}


def _lease_directory() -> Path:
    return _held.directory if _held is not None else lease_dir()


# --- threads -------------------------------------------------------------------------------------------------
def resolve_threads(threads: int) -> int:
    """``Config.threads`` -> the thread count to use: itself if > 0, else the fair share among the auto runs here
    of the usable cores the runs with ``--threads N`` leave (`fair_share`; at least 1)."""
    if threads > 0:
        return threads
    directory = _lease_directory()
    held = [lease_threads(directory, pid) for pid in _other_runs()]
    fixed = sum(held)
    autos = 1 + held.count(0)  # the auto runs, this one included
    return fair_share(max(1, usable_cores() - fixed), autos)


def apply_threads(threads: int) -> int:
    """Take this process's lease (if it has none yet; recording ``threads``), then set torch's intra-op threads to
    ``resolve_threads(threads)`` (a process-wide setting); returns it."""
    import torch

    take_lease(max(0, threads))
    n = resolve_threads(threads)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n

