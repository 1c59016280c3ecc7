"""Exploration noise: the OU process against its equations (mean reversion, stationary variance sigma^2 / (2 theta)),
resets of exactly the envs that ended, checkpointable state, and the config switch."""

from __future__ import annotations

import math

import pytest
import torch

from fastddpg import Config, ConfigError, Trainer
from fastddpg.learning.noise import GaussianNoise, OUNoise, make_noise
from tests.conftest import COUNTING_ID

CPU = torch.device("cpu")


def test_ou_without_diffusion_decays_exactly_to_mu():
    """sigma = 0: x_n - mu = (1 - theta dt)^n (x_0 - mu), the deterministic part of the recursion."""
    theta, dt, mu = 0.15, 1e-2, 0.3
    noise = OUNoise(2, 3, sigma=0.0, device=CPU, theta=theta, dt=dt, mu=mu)
    x0 = torch.tensor([[1.0, -2.0, 0.3], [5.0, 0.0, -1.0]])
    noise.load_state_dict({"state": x0})
    for _ in range(500):
        x = noise.sample()
    torch.testing.assert_close(x, mu + (1 - theta * dt) ** 500 * (x0 - mu))
    torch.testing.assert_close(noise.state, x)


def test_ou_mean_reverts_toward_mu_with_noise():
    theta, dt, sigma = 0.15, 1e-2, 0.3
    noise = OUNoise(4096, 1, sigma, CPU, torch.Generator().manual_seed(0), theta=theta, dt=dt)
    noise.load_state_dict({"state": torch.full((4096, 1), 2.0)})
    means = []
    for n in range(1, 1001):
        x = noise.sample()
        if n % 250 == 0:
            means.append((n, x.mean().item()))
    for n, m in means:  # E[x_n] = 2 (1 - theta dt)^n; the sample mean's std is < 0.3 / sqrt(0.3 * 4096) = 0.009
        assert m == pytest.approx(2.0 * (1 - theta * dt) ** n, abs=0.03)
    assert means[-1][1] < 0.5 * means[0][1] + 0.1  # it is moving toward mu = 0


def test_ou_stationary_variance():
    """After many 1 / (theta dt) steps the variance over independent envs is sigma^2 / (2 theta)."""
    theta, dt, sigma = 0.15, 1e-2, 0.1
    noise = OUNoise(8192, 2, sigma, CPU, torch.Generator().manual_seed(1), theta=theta, dt=dt)
    for _ in range(4000):  # burn-in: the start's weight (1 - theta dt)^(2n) = e^-12
        noise.sample()
    variances, lag1 = [], []
    for _ in range(4):
        for _ in range(1499):  # samples 1500 steps apart are nearly independent (correlation e^-2.25)
            noise.sample()
        prev = noise.state.clone()
        x = noise.sample()
        variances.append(x.var().item())
        lag1.append(torch.corrcoef(torch.stack([prev.reshape(-1), x.reshape(-1)]))[0, 1].item())
    expected = sigma ** 2 / (2 * theta)
    assert sum(variances) / 4 == pytest.approx(expected, rel=0.05)
    assert sum(lag1) / 4 == pytest.approx(1 - theta * dt, abs=2e-3)  # temporally correlated, unlike Gaussian


def test_ou_reset_exactly_the_ended_envs():
    noise = OUNoise(5, 2, 0.5, CPU, torch.Generator().manual_seed(2), mu=0.25)
    for _ in range(10):
        noise.sample()
    before = noise.state.clone()
    assert (before != 0.25).all()
    noise.reset(torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0]))
    torch.testing.assert_close(noise.state[[0, 3]], torch.full((2, 2), 0.25), rtol=0, atol=0)
    assert torch.equal(noise.state[[1, 2, 4]], before[[1, 2, 4]])
    noise.reset(torch.zeros(5))
    assert torch.equal(noise.state[[1, 2, 4]], before[[1, 2, 4]])


def test_ou_state_dict_round_trip_resumes_the_same_noise():
    a = OUNoise(3, 1, 0.2, CPU, torch.Generator().manual_seed(3))
    for _ in range(5):
        a.sample()
    state = a.state_dict()
    b = OUNoise(3, 1, 0.2, CPU, torch.Generator().manual_seed(4))
    state_tensor = b.state
    b.load_state_dict(state)
    assert b.state is state_tensor  # loaded in place
    b.generator.set_state(a.generator.get_state())
    torch.testing.assert_close(b.sample(), a.sample(), rtol=0, atol=0)
    assert GaussianNoise(3, 1, 0.1, CPU).state_dict() == {}


def test_make_noise_follows_the_config():
    assert isinstance(make_noise(Config(), 2, 1, CPU), GaussianNoise)
    ou = make_noise(Config(noise="ou", noise_sigma=0.3, ou_theta=0.5, ou_dt=0.1), 2, 1, CPU)
    assert isinstance(ou, OUNoise) and (ou.sigma, ou.theta, ou.dt) == (0.3, 0.5, 0.1)
    assert ou.state.shape == (2, 1) and math.isclose(ou._noise_scale, 0.3 * math.sqrt(0.1))


@pytest.mark.parametrize("bad,flag", [(dict(noise="pink"), "--noise="), (dict(ou_theta=0.0), "--ou-theta="),
                                      (dict(ou_dt=-1.0), "--ou-dt="), (dict(ou_theta=30.0, ou_dt=0.1), "--ou-theta=")])
def test_bad_noise_config_is_rejected(bad, flag):
    with pytest.raises(ConfigError, match=flag):
        Config(**bad)


def test_trainer_resets_ou_noise_of_envs_whose_episode_ended():
    """CountingEnv's obs[1] is the time index: 0 right after an (auto)reset, so exactly those envs' noise is 0."""
    cfg = Config(env=COUNTING_ID, num_envs=3, total_steps=90, hidden_sizes=(8,), batch_size=4, replay_size=100,
                 start_steps=0, update_after=1000, device="cpu", noise="ou", noise_sigma=0.5, quiet=True)
    trainer = Trainer(cfg)
    assert isinstance(trainer.noise, OUNoise)
    ended_seen = running_seen = 0
    for _ in range(30):
        trainer.step()
        just_reset = trainer.obs[:, 1] == 0
        state = trainer.noise.state[:, 0]
        assert (state[just_reset] == 0).all()
        assert (state[~just_reset] != 0).all()
        ended_seen += int(just_reset.sum())
        running_seen += int((~just_reset).sum())
    assert ended_seen > 0 and running_seen > 0
    trainer.env.close()
