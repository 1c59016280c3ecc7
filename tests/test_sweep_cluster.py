"""`fastddpg sweep` as a user runs it, each in its own processes: Ctrl-C part way then `--resume`, a two-node Ray
cluster on this machine (`ray.cluster_utils.Cluster`) reached with `--address`, and two nodes started with `ray
start` whose worker node is stopped part way (slow)."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("ray.tune", reason="Ray Tune is not installed (pip install -e '.[sweep]')")

from fastddpg import load_run, load_sweep
from fastddpg.tools.sweeps import REPORTS_FILE

TINY = dict(env="Pendulum-v1", num_envs=2, log_every=200, batch_size=32, start_steps=200, update_after=200,
            updates_per_step=0.25, probe_n=8, probe_every_episodes=1, device="cpu", compile="off")
FLAGS = [f"--{k.replace('_', '-')}={v}" for k, v in TINY.items()] + ["--hidden-sizes", "16"]


CLI = [sys.executable, "-c", "import sys; from fastddpg.cli import main; sys.exit(main(sys.argv[1:]))"]


def test_ctrl_c_then_resume_finishes_the_sweep_without_rerunning_a_finished_trial(tmp_path):
    """The default suite's short form of the slow test below: Ctrl-C once the first of two trials has finished,
    then --resume, which runs the other trial only. The second trial is many times longer (alone on a 2-core
    machine it ends about 5 s after the first) so that it is still running when the Ctrl-C lands, however slowly a
    loaded machine delivers and handles it (two trials of the same length raced: the second could finish before
    Tune stopped it)."""
    out = tmp_path / "resume"
    cmd = [*CLI, "sweep", *FLAGS, "--grid", "total_steps=800,6000", "--cpus-per-trial", "2", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    _interrupt_after_first_trial(cmd, out, env)
    finished = {s.parent.name: s.stat().st_mtime_ns for s in out.glob("trials/*/summary.json")}
    assert len(finished) == 1, "the long trial finished before the Ctrl-C stopped it"

    p = subprocess.run([*CLI, "sweep", "--resume", str(out)], capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    _assert_concise_console(p.stdout, p.stderr)
    result = load_sweep(out)
    assert len(result.trials) == 2 and (result.trials["status"] == "finished").all()
    assert sorted(result.trials["env_steps"]) == [800, 6000]
    for name, summary in finished.items():  # not run again
        assert (out / "trials" / name / "summary.json").stat().st_mtime_ns == summary


@pytest.mark.slow
def test_resume_finishes_a_stopped_sweep_without_rerunning_finished_trials(tmp_path):
    """Ctrl-C part way, --resume, kill -9 of that driver part way, --resume again: every trial finished once. Each
    trial is several times longer than the one before, so that the next is still running when the Ctrl-C and the
    kill land (with the second as short as the first, both could finish before the Ctrl-C; the kill would then wait
    for the third)."""
    out = tmp_path / "resume"
    cmd = [*CLI, "sweep", *FLAGS, "--grid", "total_steps=800,6000,20000", "--cpus-per-trial", "2",
           "--out", str(out)]
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
    assert sorted(result.trials["env_steps"]) == [800, 6000, 20000]
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


RAY_CLI = [sys.executable, "-m", "ray.scripts.scripts"]  # the `ray` command of this Python


@pytest.mark.slow
def test_a_cluster_started_with_ray_start_loses_its_worker_node_and_the_trial_continues_on_the_head(tmp_path):
    """Two nodes as a user starts them (README "Sweeps and scaling out"): `ray start --head` and `ray start
    --address`, each with its own temp dir, on 127.0.0.1, one CPU each, token authentication on both. A sweep of
    two trials runs through `--address`, one trial per node; once both have a checkpoint, the worker node is
    stopped as `ray stop` stops a node (SIGTERM, then SIGKILL) but only its own processes: on one machine `ray
    stop` would stop every node. Its trial is retried on the head from its last fastddpg checkpoint and both
    trials finish with continuous tables."""
    short = Path(tempfile.mkdtemp(prefix="fd-ray-", dir="/tmp"))  # Ray's socket paths must stay short
    head_dir, worker_dir = short / "head", short / "worker"
    port, client_port = _free_port(), _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    out = tmp_path / "cluster"
    sweep = None
    try:
        for args in (["--head", f"--port={port}", f"--ray-client-server-port={client_port}",
                      "--include-dashboard=false", f"--temp-dir={head_dir}"],
                     [f"--address=127.0.0.1:{port}", f"--temp-dir={worker_dir}"]):
            p = subprocess.run([*RAY_CLI, "start", *args, "--node-ip-address=127.0.0.1", "--num-cpus=1",
                                "--disable-usage-stats"], capture_output=True, text=True, env=env, timeout=180)
            assert p.returncode == 0, p.stderr[-3000:]
        sweep = subprocess.Popen([*CLI, "sweep", *FLAGS, "--total-steps", "2400", "--checkpoint-every", "400",
                                  "--grid", "seed=0,1", "--address", f"127.0.0.1:{port}", "--out", str(out)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and sweep.poll() is None and not (
                len(list(out.glob("trials/*/checkpoints/*.pt"))) >= 2 and len(_nodes(out)) == 2):
            time.sleep(0.2)
        if sweep.poll() is not None or len(_nodes(out)) != 2:
            sweep.kill()
            pytest.fail(f"no trial on each node: {sweep.communicate()[1][-3000:]}")
        assert _stop_node(worker_dir)
        stdout, err = sweep.communicate(timeout=400)
        assert sweep.returncode == 0, err[-3000:]
    finally:
        if sweep is not None and sweep.poll() is None:
            sweep.kill()
            sweep.communicate()
        for node_dir in (worker_dir, head_dir):
            _stop_node(node_dir)
        shutil.rmtree(short, ignore_errors=True)
    assert "retrying it from its last checkpoint" in stdout
    result = load_sweep(out)
    assert len(result.trials) == 2 and (result.trials["status"] == "finished").all()
    assert (result.trials["env_steps"] == 2400).all()
    reports = {run_dir: pd.read_csv(Path(run_dir) / REPORTS_FILE) for run_dir in result.trials["run_dir"]}
    moved = [run_dir for run_dir, r in reports.items() if r["node"].nunique() == 2]
    assert len(moved) == 1  # the worker node's trial went on on the head; the head's trial stayed there
    (whole,) = set(reports) - set(moved)
    r = reports[moved[0]]
    at = r.index[r["event"].fillna("").str.startswith("resume@")][0]
    step = int(r.loc[at, "event"].split("@")[1])
    assert step >= 400 and step % 400 == 0  # from a checkpoint, not from the start
    assert r.loc[at:, "node"].nunique() == 1 and r.loc[at, "node"] != r.loc[0, "node"]
    assert r["node"].iloc[-1] == reports[whole]["node"].iloc[0]  # the head
    assert r["env_steps"].tolist() == reports[whole]["env_steps"].tolist()  # each report once
    killed, ref = load_run(moved[0]), load_run(whole)
    assert [x["global_step"] for x in killed.meta["resumes"]] == [step]
    same = ["episode", "env", "global_step", "length"]  # Pendulum's episodes: the same steps for both seeds
    pd.testing.assert_frame_equal(killed.episodes[same], ref.episodes[same])
    assert killed.episodes["episode"].tolist() == list(range(1, len(killed.episodes) + 1))  # none lost or twice
    for table, key in (("updates", ["global_step"]), ("probes", ["snapshot", "probe"])):
        rows = getattr(killed, table)
        assert not rows.duplicated(key).any() and rows["global_step"].is_monotonic_increasing, table
        assert rows[[*key, "global_step"]].values.tolist() == getattr(ref, table)[[*key, "global_step"]].values \
            .tolist(), table


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _nodes(out: Path) -> set[str]:
    """The Ray nodes the sweep's trials have reported from so far (reports.csv's node column)."""
    nodes: set[str] = set()
    for path in out.glob(f"trials/*/{REPORTS_FILE}"):
        with contextlib.suppress(OSError, ValueError, pd.errors.EmptyDataError):
            nodes |= set(pd.read_csv(path)["node"].dropna())
    return nodes


def _node_processes(temp_dir: Path) -> list[int]:
    """The processes of the Ray node started with ``--temp-dir temp_dir``: those naming it on their command line
    or holding a file under it open (its raylet, GCS, agents, workers, and Ray Client server, which log there)."""
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if str(temp_dir) in (d / "cmdline").read_bytes().decode(errors="replace") or any(
                    os.readlink(f).startswith(str(temp_dir)) for f in (d / "fd").iterdir()):
                found.append(int(d.name))
    return found


def _stop_node(temp_dir: Path) -> list[int]:
    """Stop one Ray node as `ray stop` stops a node (SIGTERM, then SIGKILL after a grace period), only its own
    processes; returns their pids."""
    pids = _node_processes(temp_dir)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in _node_processes(temp_dir) if sig == signal.SIGKILL else pids:
            with contextlib.suppress(OSError):
                os.kill(pid, sig)
        if sig == signal.SIGTERM:
            deadline = time.monotonic() + 10
            while _node_processes(temp_dir) and time.monotonic() < deadline:
                time.sleep(0.5)
    return pids
