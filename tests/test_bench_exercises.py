"""bench/exercises.py's measurement helpers: returns-to-go, time to threshold, Q overestimation, the table."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from bench.exercises import evaluate_q, first_reach, markdown, mean_std, moving_mean, returns_to_go, summarize
from tests.conftest import make_learner


def test_returns_to_go_by_hand_and_stops_at_termination():
    r = np.array([[1.0, 1.0], [2.0, 2.0], [4.0, 4.0]])
    alive = np.array([[1.0, 1.0], [1.0, 1.0], [1.0, 0.0]])  # env 1 terminated after step 1
    g = returns_to_go(r, alive, 0.5)
    np.testing.assert_allclose(g[:, 0], [1 + 0.5 * 2 + 0.25 * 4, 2 + 0.5 * 4, 4])
    np.testing.assert_allclose(g[:, 1], [1 + 0.5 * 2, 2, 0])


def test_moving_mean_and_first_reach():
    assert moving_mean([1, 3, 5, 7], window=2) == [1, 2, 4, 6]
    curve = [-900, -150, -300, -190, -100]
    assert first_reach([10, 20, 30, 40, 50], curve, -200, min_points=1) == 20
    assert first_reach([10, 20, 30, 40, 50], curve, -200, min_points=3) == 40  # needs a full window
    assert first_reach([1, 2], [-500, -400], -200) is None


def test_mean_std_ignores_missing():
    assert mean_std([1.0, 3.0, float("nan")]) == (2.0, pytest.approx(2 ** 0.5))
    assert mean_std([5.0]) == (5.0, 0.0)
    m, s = mean_std([])
    assert np.isnan(m) and np.isnan(s)


def test_evaluate_q_matches_an_ordinary_episode_and_its_definition():
    torch.manual_seed(0)
    env = gym.make("Pendulum-v1")
    learner = make_learner(3, 1, (16,), torch.tensor([-2.0]), torch.tensor([2.0]), 1e-3, 1e-3, torch.device("cpu"))
    ev = evaluate_q(learner, "Pendulum-v1", 0.99, episodes=2, seed=7, tail_steps=5)
    for i in range(2):  # the reported return is that of an ordinary 200-step episode with the same seed
        obs, _ = env.reset(seed=7 + i)
        total, done = 0.0, False
        while not done:
            with torch.no_grad():
                a = learner.actor(torch.as_tensor(obs[None], dtype=torch.float32))[0].numpy()
            obs, r, term, trunc, _ = env.step(a)
            total += r
            done = term or trunc
        assert ev["returns"][i] == pytest.approx(total, rel=1e-5)
    assert ev["q_over"] == pytest.approx(ev["q_mean"] - ev["g_mean"], rel=1e-6, abs=1e-6)
    assert ev["g_mean"] < 0  # Pendulum's rewards are <= 0


def test_summary_and_table():
    runs = [{"eval_return": -150.0, "last10_train_return": -160.0, "q_over": 5.0, "q_mean": -100.0,
             "g_mean": -105.0, "steps_to_threshold": 8000, "seconds_to_threshold": 20.0, "wall_seconds": 60.0},
            {"eval_return": -250.0, "last10_train_return": -260.0, "q_over": 15.0, "q_mean": -90.0,
             "g_mean": -105.0, "steps_to_threshold": None, "seconds_to_threshold": None, "wall_seconds": 70.0}]
    s = summarize(runs)
    assert s["eval_return_mean"] == -200.0 and s["reached"] == 1 and s["median_steps_to_threshold"] == 8000
    assert s["q_over_mean"] == 10.0
    table = markdown({"args": {"total_steps": 20000, "seeds": 2}, "device": "cpu",
                      "groups": [{"variant": "td3", "num_envs": 16, "summary": s}]})
    assert "| td3 | 16 | -200 ± 71 |" in table and "1/2" in table
