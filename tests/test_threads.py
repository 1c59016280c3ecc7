"""Runs side by side share the cores: the mechanism a run applies (its leases, the fair share of the cores, its torch
threads, recorded in config.json and summary.json; OpenMP's own settings left as the user set them), not its speed
(bench/side_by_side.py measures that)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import torch

from fastddpg import Config, ConfigError, Trainer
from fastddpg.core import threads as th
from fastddpg.core.threads import (
    AUTO_MAX_THREADS,
    LEASE_DIR_ENV,
    Lease,
    apply_threads,
    fair_share,
    live_leases,
    resolve_threads,
    take_lease,
    usable_cores,
)


@pytest.fixture
def leases(tmp_path, monkeypatch):
    """An empty lease directory of the test's own, this process's lease given back before and after; torch's thread
    count restored."""
    directory = tmp_path / "leases"
    th.release_lease()
    monkeypatch.setenv(LEASE_DIR_ENV, str(directory))
    before = torch.get_num_threads()
    yield directory
    th.release_lease()
    torch.set_num_threads(before)


@pytest.fixture
def other_run():
    """A live process that is not this one (a `sleep`), standing in for another fastddpg run; its pid."""
    proc = subprocess.Popen(["sleep", "600"])
    yield proc.pid
    proc.kill()
    proc.wait()


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def write_lease(directory, pid: int, start: str | None = "same") -> None:
    """A lease file as another run writes it; ``start="same"``: the pid's real start time."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / str(pid)).write_text(json.dumps({"pid": pid, "start": th.process_start(pid) if start == "same"
                                                  else start}))


def test_usable_cores_sees_affinity_and_cgroup_quota(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    quota = tmp_path / "cpu.max"
    assert usable_cores(quota) == 4  # no cgroup file
    quota.write_text("max 100000\n")
    assert usable_cores(quota) == 4
    quota.write_text("150000 100000\n")  # docker --cpus 1.5
    assert usable_cores(quota) == 2
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3}, raising=False)  # taskset -c 3
    assert usable_cores(quota) == 1


def test_fair_share_divides_the_cores_at_least_one_at_most_the_cap():
    assert [fair_share(2, runs) for runs in (1, 2, 3)] == [2, 1, 1]
    assert [fair_share(8, runs) for runs in (1, 2, 3, 4, 9)] == [AUTO_MAX_THREADS, 4, 2, 2, 1]
    assert fair_share(64, 1) == AUTO_MAX_THREADS == 4 and fair_share(64, 1, cap=64) == 64
    assert fair_share(1, 1) == 1 and fair_share(3, 0) == 3


def test_the_lease_directory_is_per_user_unless_overridden(tmp_path, monkeypatch):
    monkeypatch.delenv(LEASE_DIR_ENV, raising=False)
    assert th.lease_dir().parent.name == f"fastddpg-{os.getuid()}"
    monkeypatch.setenv(LEASE_DIR_ENV, str(tmp_path / "x"))
    assert th.lease_dir() == tmp_path / "x"


def test_a_lease_is_a_file_named_by_the_pid_taken_once_and_given_back(leases):
    lease = take_lease()
    assert lease is not None and lease.path == leases / str(os.getpid()) and lease.path.exists()
    assert take_lease() is lease  # once per process
    assert json.loads(lease.path.read_text())["pid"] == os.getpid()
    assert [p.name for p in leases.iterdir()] == [str(os.getpid())]  # no temporary file left behind
    Lease(leases, os.getpid() + 1).release()  # a forked child's copy of a lease object removes nothing
    (leases / str(os.getpid() + 1)).write_text("{}")
    Lease(leases, os.getpid() + 1).release()
    assert (leases / str(os.getpid() + 1)).exists()
    th.release_lease()
    assert not lease.path.exists()


def test_live_leases_count_live_pids_and_remove_the_dead_ones(leases, other_run):
    take_lease()
    write_lease(leases, other_run)
    dead = dead_pid()
    write_lease(leases, dead)
    reused = subprocess.Popen(["sleep", "600"])  # alive, but not the process that wrote its lease: a reused pid
    try:
        write_lease(leases, reused.pid, start="1")
        (leases / ".12345.tmp").write_text("{}")  # a lease being written: not counted, not removed
        (leases / str(other_run + 10**7)).write_text("not json")  # no such pid: removed unread
        assert live_leases(leases) == {os.getpid(), other_run}
        assert sorted(p.name for p in leases.iterdir()) == sorted([".12345.tmp", str(os.getpid()), str(other_run)])
        assert th.runs_here() == 2
    finally:
        reused.kill()
        reused.wait()
    assert live_leases(leases / "missing") == set()


def test_auto_threads_are_the_fair_share_and_explicit_threads_are_kept(leases, other_run, monkeypatch):
    monkeypatch.setattr(th, "usable_cores", lambda: 2)
    assert apply_threads(0) == 2 == torch.get_num_threads()  # alone: both cores
    assert (leases / str(os.getpid())).exists()  # apply_threads took the lease (a Trainer built from Python)
    write_lease(leases, other_run)
    assert resolve_threads(0) == 1 and apply_threads(0) == 1 == torch.get_num_threads()
    assert resolve_threads(3) == 3 and apply_threads(2) == 2 == torch.get_num_threads()  # never overridden
    monkeypatch.setattr(th, "usable_cores", lambda: 64)
    assert resolve_threads(0) == fair_share(64, 2) == AUTO_MAX_THREADS
    with pytest.raises(ConfigError, match="--threads"):
        Config(threads=-1)


def test_a_run_follows_other_runs_at_its_reports(leases, other_run, monkeypatch):
    """A second run's lease appears after the first report and is gone after the third: the trainer drops to one
    thread at the second report and goes back to two at the fourth; summary.json says so."""
    monkeypatch.setattr(th, "usable_cores", lambda: 2)
    steps_at: list[int] = []

    def other_comes_and_goes(trainer, report):
        steps_at.append(report.global_step)
        if len(steps_at) == 1:
            write_lease(leases, other_run)
        elif len(steps_at) == 3:
            (leases / str(other_run)).unlink()

    def run(threads: int) -> Trainer:
        steps_at.clear()
        cfg = Config(total_steps=200, num_envs=2, hidden_sizes=(8,), batch_size=8, start_steps=20, update_after=20,
                     log_every=40, device="cpu", compile="off", quiet=True, threads=threads)
        trainer = Trainer(cfg, callbacks=[other_comes_and_goes])
        trainer.train()
        return trainer

    auto = run(0)
    assert not (leases / str(os.getpid())).exists()  # given back when training ends
    assert len(steps_at) >= 4
    assert auto.thread_changes == [{"global_step": steps_at[1], "threads": 1, "why": "share"},
                                   {"global_step": steps_at[3], "threads": 2, "why": "share"}]
    summary = auto.summary()
    assert summary["threads"] == 2 == torch.get_num_threads() and summary["thread_changes"] == auto.thread_changes
    fixed = run(1)
    assert fixed.threads == 1 == torch.get_num_threads() and fixed.thread_changes == []
    assert "thread_changes" not in fixed.summary()


def _run_cli(tmp_path, env_extra: dict[str, str], *flags: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")}
    env.update(env_extra)
    run = tmp_path / f"run{len(list(tmp_path.iterdir()))}"
    code = ("import sys\n"
            "import fastddpg.core.threads as th\n"
            "take, seen = th.take_lease, []\n"
            "def take_lease(*args):\n"
            "    seen.append('torch' in sys.modules)\n"
            "    return take(*args)\n"
            "th.take_lease = take_lease\n"
            "import fastddpg.cli\n"
            "rc = fastddpg.cli.main(sys.argv[1:])\n"
            "import os, torch\n"
            "print(os.environ.get('OMP_WAIT_POLICY'), torch.get_num_threads(), 'torch-first' if seen[0] else "
            "'lease-first')\n"
            "sys.exit(rc)")
    p = subprocess.run([sys.executable, "-c", code, "run", "--total-steps", "40", "--num-envs", "2",
                        "--hidden-sizes", "8", "--batch-size", "8", "--start-steps", "20", "--update-after", "20",
                        "--device", "cpu", "--compile", "off", "--quiet", "--run-dir", str(run), *flags],
                       capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    meta = json.loads((run / "config.json").read_text())
    return {"meta": meta["threads"], "summary": json.loads((run / "summary.json").read_text())["threads"],
            "seen": p.stdout.strip().splitlines()[-1].split()}


def test_a_cli_run_takes_its_share_of_the_cores_unless_told_and_leaves_openmp_alone(tmp_path, other_run):
    """Alone, a run takes the usable cores (at most AUTO_MAX_THREADS); with another run's lease, half of them; its
    lease is taken before torch is imported and given back at exit. --threads N is N."""
    directory = tmp_path / "leases"
    lone = fair_share(usable_cores(), 1)
    auto = _run_cli(tmp_path, {LEASE_DIR_ENV: str(directory)})
    assert auto["meta"]["torch_threads"] == lone == auto["summary"] and auto["seen"] == ["None", str(lone),
                                                                                          "lease-first"]
    assert auto["meta"]["OMP_WAIT_POLICY"] is None
    assert list(directory.iterdir()) == []  # given back at exit
    write_lease(directory, other_run)
    shared = fair_share(usable_cores(), 2)
    beside = _run_cli(tmp_path, {LEASE_DIR_ENV: str(directory)})
    assert beside["meta"]["torch_threads"] == shared == beside["summary"] and beside["seen"][1] == str(shared)
    assert [p.name for p in directory.iterdir()] == [str(other_run)]
    two = _run_cli(tmp_path, {LEASE_DIR_ENV: str(directory), "OMP_WAIT_POLICY": "PASSIVE"}, "--threads", "2")
    assert two["meta"]["torch_threads"] == 2 == two["summary"] and two["seen"][:2] == ["PASSIVE", "2"]
    assert two["meta"]["OMP_WAIT_POLICY"] == "PASSIVE"  # the user's choice, recorded



def test_auto_runs_divide_what_runs_with_fixed_threads_leave(leases, other_run, monkeypatch):
    """A run with --threads N records N in its lease; auto runs share the cores it leaves (at least 1 thread)."""
    monkeypatch.setattr(th, "usable_cores", lambda: 4)
    (leases).mkdir(parents=True, exist_ok=True)
    for held, share in ((0, 2), (3, 1), (1, 3), (8, 1)):
        (leases / str(other_run)).write_text(json.dumps({"pid": other_run, "start": th.process_start(other_run),
                                                         "threads": held}))
        assert resolve_threads(0) == share, held
    assert apply_threads(2) == 2 and json.loads((leases / str(os.getpid())).read_text())["threads"] == 2
    assert apply_threads(0) == 1 and json.loads((leases / str(os.getpid())).read_text())["threads"] == 0


def test_a_killed_run_not_yet_reaped_holds_no_lease(leases):
    """A run killed by its launcher, which has not waited for it yet (a zombie), no longer counts."""
    proc = subprocess.Popen(["sleep", "600"])
    try:
        write_lease(leases, proc.pid)
        take_lease()
        assert th.runs_here() == 2
        proc.kill()
        deadline = time.monotonic() + 30
        while not th.is_zombie(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert th.is_zombie(proc.pid)  # exited, not reaped: signal 0 still reaches it
        assert th.runs_here() == 1 and not (leases / str(proc.pid)).exists()
    finally:
        proc.kill()
        proc.wait()


def test_a_run_refused_after_its_trainer_was_built_gives_its_lease_back(leases, tmp_path):
    """`train` into a directory that already holds a run is refused after the Trainer took its lease (and built its
    envs): the lease goes back, so other runs' shares are not halved for as long as this process lives."""
    from fastddpg import Config, train
    from fastddpg.core.config import ConfigError

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match="already holds a run"):
        train(Config(total_steps=10, num_envs=1, hidden_sizes=(8,), run_dir=str(run_dir), quiet=True))
    assert th._held is None and not any(p.name.isdigit() for p in leases.iterdir())
