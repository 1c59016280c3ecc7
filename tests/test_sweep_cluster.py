"""`fastddpg sweep` as a user runs it, each in its own processes: Ctrl-C part way then `--resume`, and a
two-node Ray cluster on this machine (`ray.cluster_utils.Cluster`) reached with `--address`."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("ray.tune", reason="Ray Tune is not installed (pip install -e '.[sweep]')")

from fastddpg import load_sweep

TINY = dict(env="Pendulum-v1", num_envs=2, log_every=200, batch_size=32, start_steps=200, update_after=200,
            updates_per_step=0.25, probe_n=8, probe_every_episodes=1, device="cpu", compile="off")
FLAGS = [f"--{k.replace('_', '-')}={v}" for k, v in TINY.items()] + ["--hidden-sizes", "16"]


CLI = [sys.executable, "-c", "import sys; from fastddpg.cli import main; sys.exit(main(sys.argv[1:]))"]


def test_ctrl_c_then_resume_finishes_the_sweep_without_rerunning_a_finished_trial(tmp_path):
    """The default suite's short form of the slow test below: Ctrl-C once the first of two trials has finished,
    then --resume, which runs the other trial only."""
    out = tmp_path / "resume"
    cmd = [*CLI, "sweep", *FLAGS, "--total-steps", "800", "--grid", "seed=0,1", "--cpus-per-trial", "2",
           "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    _interrupt_after_first_trial(cmd, out, env)
    finished = {s.parent.name: s.stat().st_mtime_ns for s in out.glob("trials/*/summary.json")}
    assert len(finished) == 1

    p = subprocess.run([*CLI, "sweep", "--resume", str(out)], capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    _assert_concise_console(p.stdout, p.stderr)
    result = load_sweep(out)
    assert len(result.trials) == 2 and (result.trials["status"] == "finished").all()
    assert (result.trials["env_steps"] == 800).all()
    for name, summary in finished.items():  # not run again
        assert (out / "trials" / name / "summary.json").stat().st_mtime_ns == summary


@pytest.mark.slow
def test_resume_finishes_a_stopped_sweep_without_rerunning_finished_trials(tmp_path):
    """Ctrl-C part way, --resume, kill -9 of that driver part way, --resume again: every trial finished once."""
    out = tmp_path / "resume"
    cmd = [*CLI, "sweep", *FLAGS, "--total-steps", "1600", "--grid", "seed=0..2",
           "--cpus-per-trial", "2", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    _interrupt_after_first_trial(cmd, out, env)
    finished = {s.parent.name: (s.stat().st_mtime_ns, (s.parent / "episodes.csv").stat().st_mtime_ns)
                for s in out.glob("trials/*/summary.json")}
    assert 1 <= len(finished) < 3

    # the resumed driver is killed with SIGKILL (nothing of it runs: Tune's state on disk is whatever it last
    # saved) once one more trial has finished; a second --resume still reruns no finished trial
    p = subprocess.Popen([*CLI, "sweep", "--resume", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=env)
    deadline = time.monotonic() + 240
    while len(list(out.glob("trials/*/summary.json"))) <= len(finished) and time.monotonic() < deadline \
            and p.poll() is None:
        time.sleep(0.2)
    assert p.poll() is None, p.stderr
    ray_processes = _descendants(p.pid)
    p.kill()
    p.communicate(timeout=60)
    finished = {s.parent.name: (s.stat().st_mtime_ns, (s.parent / "episodes.csv").stat().st_mtime_ns)
                for s in out.glob("trials/*/summary.json")}
    assert 2 <= len(finished) < 3
    _end_orphans(ray_processes)

    p = subprocess.run([*CLI, "sweep", "--resume", str(out)], capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    _assert_concise_console(p.stdout, p.stderr)  # the progress lines come back with the restored experiment
    assert "finished" in p.stdout.splitlines()[-3]
    result = load_sweep(out)
    assert len(result.trials) == 3 and (result.trials["status"] == "finished").all()
    assert (result.trials["env_steps"] == 1600).all()
    for name, (summary, episodes) in finished.items():  # not run again
        d = out / "trials" / name
        assert (d / "summary.json").stat().st_mtime_ns == summary
        assert (d / "episodes.csv").stat().st_mtime_ns == episodes
        assert "resumes" not in json.loads((d / "config.json").read_text())


def _interrupt_after_first_trial(cmd: list[str], out: Path, env: dict[str, str]) -> None:
    """Start the sweep ``cmd``, press Ctrl-C once a trial under ``out`` has finished, and check the stop: exit 130,
    the resume hint, and fastddpg's progress lines only."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 240
    while not list(out.glob("trials/*/summary.json")) and time.monotonic() < deadline and p.poll() is None:
        time.sleep(0.2)
    p.send_signal(signal.SIGINT)
    stdout, err = p.communicate(timeout=180)
    assert p.returncode == 130, err[-3000:]
    assert "fastddpg sweep --resume" in err
    _assert_concise_console(stdout, err)


def _descendants(pid: int) -> list[tuple[int, str]]:
    """The processes below ``pid`` (its private Ray's) as (pid, start time), from /proc."""
    children: dict[int, list[tuple[int, str]]] = {}
    for d in Path("/proc").iterdir():
        with contextlib.suppress(OSError, IndexError, ValueError):
            if d.name.isdigit():
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
                children.setdefault(int(fields[1]), []).append((int(d.name), fields[19]))
    found, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += [k for k, _ in kids]
    return found


def _end_orphans(processes: list[tuple[int, str]]) -> None:
    """A driver killed with SIGKILL takes its Ray's GCS, raylet and workers with it, but Ray's per-node agents
    (DashboardAgent, RuntimeEnvAgent) of its private Ray stay: end those the test's driver started (the same pid
    and start time, so never a process that reused the pid)."""
    time.sleep(5)
    for pid, started in processes:
        with contextlib.suppress(OSError, IndexError):
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19] == started:
                os.kill(pid, signal.SIGKILL)


def _assert_concise_console(stdout: str, stderr: str) -> None:
    """fastddpg's progress lines, without Tune's tables and Ray's notice that it enabled token authentication."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    assert any(line.startswith("sweep: ") and " running, " in line for line in lines), stdout
    assert all(line.startswith(("sweep: ", "best: ")) for line in lines), stdout
    for tune_text in ("Trial status", "Configuration for experiment", "View detailed results", "╭"):
        assert tune_text not in stdout + stderr
    assert "Token authentication is enabled" not in stderr


CLUSTER_SCRIPT = """
import sys
from ray.cluster_utils import Cluster
from fastddpg.cli import main
cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
cluster.add_node(num_cpus=1)
cluster.wait_for_nodes()
try:
    code = main(["sweep", *sys.argv[1:], "--address", cluster.address])
finally:
    cluster.shutdown()
sys.exit(code)
"""


def test_a_two_node_cluster_runs_the_trials_by_address(tmp_path):
    out = tmp_path / "cluster"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.run([sys.executable, "-c", CLUSTER_SCRIPT, *FLAGS, "--total-steps", "800", "--grid", "seed=0,1",
                        "--out", str(out)], capture_output=True, text=True, env=env, timeout=400)
    assert p.returncode == 0, p.stderr[-3000:]
    result = load_sweep(out)
    assert len(result.trials) == 2 and (result.trials["status"] == "finished").all()
    nodes = set(result.reports["node"])
    assert len(nodes) == 2  # one trial per 1-CPU node: both nodes ran one
