"""Termination end to end: env -> SAME_STEP autoreset -> replay (d = terminated) -> update -> the learned Q.

A two-state env whose episodes last two steps, with reward 1 on every step and an observation that alternates
0, 1, 0, 1, ... (t mod 2). The episode's end at t = 2 is reported either as a termination or as a truncation; that
flag is the only difference between the two runs. With gamma = 1/2 the Bellman equation fixes Q (the reward does
not depend on the action, so neither does Q):

- terminated: Q(1) = 1 (the last step: no bootstrap), Q(0) = 1 + gamma Q(1) = 3/2;
- truncated:  s' of the last step is the true final observation (t = 2, i.e. state 0) and d = 0, so the target
  bootstraps through the end: Q(0) = Q(1) = 1 / (1 - gamma) = 2.

A trainer that stored d = terminated or truncated would learn 3/2 and 1 in both runs; one that ignored d, or put
it on the wrong row, would learn something else in the terminated run.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from fastddpg import Config, Trainer

GAMMA = 0.5
EXPECTED = {"terminated": (1.5, 1.0), "truncated": (2.0, 2.0)}  # (Q(0), Q(1))


class TwoStepEnv(gym.Env):
    """obs = [t mod 2], reward 1 per step, the episode ends after 2 steps as ``end`` says."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)
    action_space = gym.spaces.Box(-3.0, 3.0, (1,), np.float32)  # not +-1 and not +-2, like InvertedPendulum's

    def __init__(self, end: str = "terminated") -> None:
        self.end = end

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        done = self.t == 2
        return self._obs(), 1.0, done and self.end == "terminated", done and self.end == "truncated", {}

    def _obs(self):
        return np.array([self.t % 2], dtype=np.float32)


def env_id(end: str) -> str:
    name = f"FastDDPGTest/TwoStep-{end}-v0"
    if name not in gym.registry:
        gym.register(name, entry_point=TwoStepEnv, kwargs={"end": end})
    return name


def learned_q(end: str, algo: str) -> tuple[float, float]:
    """Train on the two-step env; the critic's Q(0) and Q(1), each averaged over actions across the bounds."""
    # 536 updates at a high learning rate and tau: Q lands within 0.015 of the fixed point, while a wrong flag moves
    # it by 0.5 or more (the tolerance below is 0.1)
    cfg = Config(env=env_id(end), algo=algo, num_envs=2, total_steps=600, hidden_sizes=(16, 16), batch_size=64,
                 replay_size=10_000, start_steps=600, update_after=64, gamma=GAMMA, tau=0.2, critic_lr=1e-2,
                 policy_delay=1, log_every=1000, device="cpu", probe_n=4, compile="off", quiet=True, seed=0)
    trainer = Trainer(cfg)
    trainer.train()
    actions = torch.linspace(-3.0, 3.0, 7).reshape(-1, 1)
    with torch.no_grad():
        q = [float(trainer.algo.q1(torch.full((7, 1), s), actions).mean()) for s in (0.0, 1.0)]
    return q[0], q[1]


@pytest.mark.parametrize("algo", ["ddpg", "td3"])
def test_learned_q_follows_the_bellman_equation_of_the_end_flag(algo):
    got = {end: learned_q(end, algo) for end in EXPECTED}
    for end, want in EXPECTED.items():
        assert got[end] == pytest.approx(want, abs=0.1), (end, got)
    # the one flag moves Q(1) by gamma Q(0) = 1 and Q(0) by gamma (Q(1)_truncated - Q(1)_terminated) = 1/2
    assert got["truncated"][1] - got["terminated"][1] == pytest.approx(1.0, abs=0.15)
    assert got["truncated"][0] - got["terminated"][0] == pytest.approx(0.5, abs=0.15)


def test_stored_transitions_resimulate_on_a_terminating_mujoco_env():
    """InvertedPendulum-v5 terminates when the pole falls and acts in [-3, 3]; its observation is the whole MuJoCo
    state (qpos, qvel), so every stored (s, a) can be replayed in a fresh env: s', r and d must be what the env
    gives, on random and on actor + noise steps alike, across the autoreset rows."""
    pytest.importorskip("mujoco", reason="pip install 'fastddpg[mujoco]'")
    cfg = Config(env="InvertedPendulum-v5", algo="td3", num_envs=2, total_steps=1200, start_steps=400,
                 update_after=10**9, hidden_sizes=(16,), device="cpu", probe_n=4, compile="off", quiet=True, seed=0)
    trainer = Trainer(cfg)
    trainer.train()
    td = trainer.buffer.storage[: len(trainer.buffer)]
    obs, act, rew, nxt, term = (td[k].numpy().astype(np.float64) for k in
                                ("obs", "action", "reward", "next_obs", "terminated"))
    env = gym.make("InvertedPendulum-v5").unwrapped
    env.reset(seed=0)
    assert term.sum() > 10 and act.min() < -2.0 and act.max() > 2.0  # many terminations; the whole action range
    for i in range(len(obs)):
        env.set_state(obs[i, :2], obs[i, 2:])
        sim_next, r, terminated, _, _ = env.step(act[i])
        np.testing.assert_allclose(sim_next, nxt[i], atol=1e-5)
        assert (r, float(terminated)) == (rew[i, 0], term[i, 0])
