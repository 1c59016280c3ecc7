"""Fast checks of bench/baseline.py, the re-implementation of the seed notebook's DDPG."""

import itertools
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.baseline import (
    UPDATE_AFTER,
    NotebookTrainer,
    notebook_train,
    notebook_update_rate,
    update_flops,
)

KEYS = {
    "env_steps",
    "updates",
    "seconds",
    "steps_per_sec",
    "updates_per_sec",
    "returns",
    "episode_end_steps",
    "episode_end_seconds",
    "last10_mean_return",
}


def test_notebook_train_short_run():
    r = notebook_train(total_steps=1200, seed=42)
    assert set(r) >= KEYS
    assert r["env_steps"] == 1200
    assert len(r["returns"]) == 6
    assert r["episode_end_steps"] == [200, 400, 600, 800, 1000, 1200]
    # The notebook tests `global_step >= UPDATE_AFTER` right after incrementing the step counter, so env
    # steps 1000..1200 each do one update: 201 updates, not 200.
    assert r["updates"] == 1200 - UPDATE_AFTER + 1
    assert all(x < 0 for x in r["returns"])
    assert r["last10_mean_return"] == np.mean(r["returns"])
    assert r["seconds"] > 0 and r["steps_per_sec"] > 0 and r["updates_per_sec"] > 0
    secs = r["episode_end_seconds"]
    assert len(secs) == 6 and all(a <= b for a, b in itertools.pairwise(secs))
    assert secs[-1] <= r["seconds"]


def test_evaluations_leave_training_and_its_clock_as_they_were():
    """Evaluating every 400 env steps draws from none of training's random streams (the same returns, in one
    process on one machine) and its seconds stay off every figure."""
    plain = notebook_train(total_steps=1200, seed=3)
    r = notebook_train(total_steps=1200, seed=3, eval_every=400, eval_episodes=2)
    assert r["returns"] == plain["returns"] and r["updates"] == plain["updates"]
    assert [s for s, _, _ in r["evaluations"]] == [400, 800, 1200] and r["eval_seconds"] > 0
    assert plain["evaluations"] == [] and plain["eval_seconds"] == 0.0
    ends = dict(zip(r["episode_end_steps"], r["episode_end_seconds"], strict=True))
    for step, t, ret in r["evaluations"]:
        assert ends[step] <= t <= r["seconds"] and -2_000 < ret < 0  # two 200-step Pendulum episodes' mean
    # the clock stands still during an evaluation: with the evaluations at 400 and 800 on it, the last episode
    # would end after the run's seconds, which leave all three out
    assert r["episode_end_seconds"][-1] <= r["seconds"]


def test_notebook_train_rounds_up_to_whole_episodes():
    r = notebook_train(total_steps=250, seed=1)
    assert r["env_steps"] == 400 and len(r["returns"]) == 2 and r["updates"] == 0


def test_done_flag_is_terminated_or_truncated():
    run = NotebookTrainer(seed=42)
    run.run_episode()
    buf = run.buffer
    assert buf.size == 200
    # Pendulum never terminates; the time-limit truncation at step 200 is stored as done=1 (notebook quirk).
    assert buf.done[199, 0] == 1.0
    assert np.all(buf.done[:199, 0] == 0.0)
    # transitions chain: next_obs of step t is obs of step t+1
    np.testing.assert_array_equal(buf.next_obs[:199], buf.obs[1:200])
    assert np.all(np.abs(buf.act[:200]) <= 2.0)
    run.close()


def test_notebook_update_rate_positive():
    r = notebook_update_rate(32, n_updates=20, warmup=2)
    assert r["batch_size"] == 32 and r["n_updates"] == 20
    assert r["seconds"] > 0 and r["updates_per_sec"] > 0


def test_update_flops_tiny_network_by_hand():
    # obs 3, act 1, hidden (4,), batch 2.
    # actor [3, 4, 1]: layer matmuls 2*2*3*4 = 48, 2*2*4*1 = 16 -> Fa = 64, first layer 48
    # critic [4, 4, 1]: 2*2*4*4 = 64, 2*2*4*1 = 16 -> Fc = 80, first layer 64
    # params: actor 3*4+4 + 4*1+1 = 21, critic 4*4+4 + 4*1+1 = 25 -> 46
    fa, fa1, fc, fc1, n_params = 64, 48, 80, 64, 46
    target_fwd = fa + fc
    critic_step = fc + fc + (fc - fc1)
    actor_step = fa + fc + fc + fc + fa + (fa - fa1)
    expected = target_fwd + critic_step + actor_step + 10 * n_params
    assert expected == 4 * fa - fa1 + 7 * fc - fc1 + 460 == 1164
    assert update_flops(3, 1, (4,), 2) == expected


def test_update_flops_pendulum_scale():
    f = update_flops(3, 1, (256, 256), 128)
    assert 1.8e8 < f < 1.95e8
    assert update_flops(3, 1, (256, 256), 256) > 1.9 * f
