"""Stopping: SIGINT/SIGTERM stop a run cleanly (checkpoint, complete CSVs, report, exit 130/143); a second signal
exits at once; a NaN or Inf in an observation, a loss or a parameter stops the run with exit 3 and keeps the
last finite checkpoint."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import fastddpg.training.failsafe as failsafe
from fastddpg import Config, NonFiniteError, Trainer, TrainingInterrupted, load_checkpoint, load_run
from fastddpg.cli import main
from fastddpg.runs.checkpoint import Checkpointer, latest_checkpoint, list_checkpoints, read_checkpoint
from fastddpg.training.failsafe import StopSignals

NAN_ID = "FastDDPGTest/NaNObs-v0"
NAN_AT = 50  # each env's 50th step returns a NaN observation


class NaNObsEnv(gym.Env):
    """Finite observations until the env's NAN_AT-th step (counted across episodes), then NaN ones."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def __init__(self):
        self.steps = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(2, np.float32), {}

    def step(self, action):
        self.steps += 1
        obs = np.array([self.steps / 100, np.nan if self.steps >= NAN_AT else 0.0], np.float32)
        return obs, -float(action[0]) ** 2, False, False, {}


if NAN_ID not in gym.registry:
    gym.register(NAN_ID, entry_point=NaNObsEnv, max_episode_steps=10)

SMALL = ["--num-envs", "2", "--hidden-sizes", "8", "--batch-size", "8", "--start-steps", "20", "--log-every", "20",
         "--device", "cpu", "--compile", "off", "--quiet"]


def one_error_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1, err
    assert err[0].startswith("fastddpg: error: ")
    return err[0]


def assert_finite_checkpoint(run_dir: Path, before_step: int) -> dict:
    """The latest checkpoint loads, precedes the bad step and holds only finite numbers; actor.pt is its actor."""
    assert all(read_checkpoint(p)["global_step"] < before_step for p in list_checkpoints(run_dir))
    loaded = load_checkpoint(run_dir)
    state = loaded["state"]["trainer"]
    tensors = [t for m in state["modules"].values() for t in m.values()]
    tensors += [state["buffer"]["data"]] + state["optimizers"]["critic"]["exp_avg_sq"]
    assert all(torch.isfinite(t).all() for t in tensors)
    saved = torch.load(run_dir / "actor.pt", weights_only=True)
    assert all(torch.equal(v, state["modules"]["actor"][k]) for k, v in saved.items())
    assert (run_dir / "report.html").is_file()
    assert json.loads((run_dir / "summary.json").read_text())["stopped_by"].startswith("non-finite")
    return loaded


# --- signals ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_stops_a_real_run_cleanly(tmp_path, sig, code):
    d = tmp_path / "run"
    cmd = [sys.executable, "-m", "fastddpg.cli", "run", "--env", "Pendulum-v1", "--total-steps", "100000000",
           "--update-after", "100", "--log-every", "20", "--run-dir", str(d), *SMALL[:-1]]  # not quiet
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        for line in proc.stdout:  # one progress line per flush; wait until past warm-up and the first updates
            if line.startswith("step") and int(line.split()[1].split("/")[0].replace(",", "")) >= 160:
                break
            assert time.monotonic() < deadline, "the run did not get going"
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"fastddpg: {signal.Signals(sig).name}: stopped at env step ")
    assert last.endswith(f"resume with: fastddpg run --resume {d}")
    ckpt = load_checkpoint(d)
    assert ckpt["global_step"] >= 160 and str(ckpt["path"]) in last
    run = load_run(d)  # complete CSVs: exactly what the checkpoint counted
    assert run.episodes["episode"].tolist() == list(range(1, ckpt["num_episodes"] + 1))
    assert run.updates["update"].iloc[-1] == ckpt["num_updates"] > 0
    assert run.updates["global_step"].iloc[-1] == ckpt["global_step"]
    assert (d / "report.html").stat().st_size > 0 and (d / "actor.pt").is_file()
    assert run.summary["stopped_by"] == signal.Signals(sig).name


def test_library_training_raises_interrupted_and_restores_handlers():
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    cfg = Config(env=NAN_ID, num_envs=2, total_steps=10_000, hidden_sizes=(8,), batch_size=8, start_steps=20,
                 update_after=20, log_every=20, device="cpu", compile="off")
    hits = []

    def on_flush(trainer, report):
        hits.append(report.global_step)
        if report.global_step == 40:
            signal.raise_signal(signal.SIGTERM)

    trainer = Trainer(cfg, callbacks=[on_flush])
    with pytest.raises(TrainingInterrupted) as e:
        trainer.train()
    assert e.value.exit_code == 143 and e.value.global_step == 40 and e.value.checkpoint is None
    assert e.value.result.summary["env_steps"] == 40 and hits == [20, 40]  # stopped after that vector step
    assert {s: signal.getsignal(s) for s in before} == before


def test_second_signal_exits_at_once(monkeypatch):
    exits = []

    def fake_exit(code):
        exits.append(code)
        raise SystemExit(code)

    monkeypatch.setattr(failsafe.os, "_exit", fake_exit)
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(SystemExit), StopSignals() as stop:
        signal.raise_signal(signal.SIGINT)
        assert stop.signum == signal.SIGINT and not exits  # the first only asks to stop
        signal.raise_signal(signal.SIGTERM)
    assert exits == [143]
    assert signal.getsignal(signal.SIGINT) is before


# --- non-finite values -----------------------------------------------------------------------------------------

def test_nan_observation_stops_with_exit_3(tmp_path, capsys):
    d = tmp_path / "run"
    code = main(["run", "--env", NAN_ID, "--total-steps", "400", "--update-after", "10", "--checkpoint-every", "40",
                 "--run-dir", str(d), *SMALL])
    assert code == 3
    line = one_error_line(capsys)
    # both envs hit their 50th step at vector step 50 = env step 100; env 0 comes first
    assert "non-finite observation from env 0 at env step 100" in line
    assert f"the last finite checkpoint is {latest_checkpoint(d)}" in line
    assert assert_finite_checkpoint(d, before_step=100)["global_step"] == 80


def test_nan_loss_stops_with_exit_3(tmp_path, capsys):
    d = tmp_path / "run"
    # Adam moves each weight by ~lr per step: lr 1e30 overflows Q (float32) at the second update
    code = main(["run", "--env", "Pendulum-v1", "--total-steps", "400", "--critic-lr", "1e30", "--update-after", "60",
                 "--checkpoint-every", "40", "--run-dir", str(d), *SMALL])
    assert code == 3
    line = one_error_line(capsys)
    assert "non-finite critic_loss" in line and "in updates 1-2" in line and "stopped at env step 60" in line
    assert_finite_checkpoint(d, before_step=60)


def test_nan_parameter_is_named(tmp_path):
    cfg = Config(env=NAN_ID, num_envs=2, total_steps=400, hidden_sizes=(8,), batch_size=8, update_after=10_000,
                 log_every=20, device="cpu", compile="off")
    trainer = Trainer(cfg, checkpointer=Checkpointer(tmp_path))
    for _ in range(10):
        trainer.step()
    trainer.checkpoint()
    with torch.no_grad():
        trainer.algo.target_critic.net[0].weight[0, 0] = float("inf")
    trainer.step()
    with pytest.raises(NonFiniteError) as e:
        trainer.checkpoint()  # refuses: the flush before it finds the Inf
    trainer.env.close()
    assert e.value.what == "parameter" and e.value.exit_code == 3
    assert "non-finite parameters in target_critic after update 0" in str(e.value)
    assert [read_checkpoint(p)["global_step"] for p in list_checkpoints(tmp_path)] == [20]


def test_a_full_disk_while_finishing_a_non_finite_stop_leaves_the_last_finite_weights(tmp_path, monkeypatch, capsys):
    """The report of a non-finite stop fails (a full disk): the run ends with exit 74, and actor.pt and critic.pt
    are still the last finite checkpoint's, never the non-finite weights the trainer holds."""
    import errno
    import os

    import fastddpg.api as api

    def full_disk(runs, out, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(out))

    monkeypatch.setattr(api, "write_report", full_disk)
    d = tmp_path / "run"
    code = main(["run", "--env", "Pendulum-v1", "--total-steps", "400", "--critic-lr", "1e30", "--update-after", "60",
                 "--checkpoint-every", "40", "--run-dir", str(d), *SMALL])
    assert code == 74 and "No space left on device" in one_error_line(capsys)
    state = load_checkpoint(d)["state"]["trainer"]["modules"]
    for name in ("actor", "critic"):
        saved = torch.load(d / f"{name}.pt", weights_only=True)
        assert all(torch.isfinite(v).all() and torch.equal(v, state[name][k]) for k, v in saved.items())


def test_a_second_signal_while_the_result_is_built_still_exits_at_once(monkeypatch):
    """After the first signal the loop ends and the result is built (DataFrames: a while); a second signal then
    still exits at once, as during the loop, not as a KeyboardInterrupt or the default SIGTERM."""
    exits = []

    def fake_exit(code):
        exits.append(code)
        raise SystemExit(code)

    monkeypatch.setattr(failsafe.os, "_exit", fake_exit)
    result = Trainer.result

    def slow_result(self):
        if exits == [] and self.global_step == 40:
            signal.raise_signal(signal.SIGINT)
        return result(self)

    monkeypatch.setattr(Trainer, "result", slow_result)
    cfg = Config(env=NAN_ID, num_envs=2, total_steps=10_000, hidden_sizes=(8,), batch_size=8, start_steps=20,
                 update_after=20, log_every=20, device="cpu", compile="off")

    def on_flush(trainer, report):
        if report.global_step == 40:
            signal.raise_signal(signal.SIGTERM)

    with pytest.raises(SystemExit):
        Trainer(cfg, callbacks=[on_flush]).train()
    assert exits == [130]
