"""Seeds that pair: a population member's seed sets its env seeds and initial weights as a single run's seed does,
and members with the same seed at different --grid points draw the same random actions, noise and replay indices
(a paired comparison); members with different seeds differ."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fastddpg import Config, Trainer
from fastddpg.learning.replay import ReplayBuffer

# 2 grid points x 2 seeds: members 0, 1 (tau 0.005; seeds 42, 44) and 2, 3 (tau 0.05; seeds 42, 44). The run is
# the first episode of every env (200 steps = 400 env steps per member), all random actions; updates run from step
# 200 on and draw their replay indices from the same generator in between.
BASE = dict(env="Pendulum-v1", num_envs=2, total_steps=400, start_steps=400, update_after=200, hidden_sizes=(16,),
            batch_size=16, log_every=200, device="cpu", compile="off", quiet=True)
PAIRS = ((0, 2), (1, 3))  # same seed, other grid point


def grid_trainer(**kw) -> Trainer:
    return Trainer(Config(**{**BASE, "num_seeds": 2, "grid": ("tau=0.005,0.05",), **kw}))


def member_block(x: torch.Tensor, k: int, n: int = 2) -> torch.Tensor:
    return x[k * n:(k + 1) * n]


def first_returns(trainer: Trainer, k: int) -> list[float]:
    """Member k's returns of the episodes that ended within the random-action phase."""
    return [r.return_ for r in trainer.episode_rows if r.member == k and r.global_step <= BASE["start_steps"]]


def params(trainer: Trainer, k: int) -> list[torch.Tensor]:
    member = trainer.algo.member(k)
    return [p for name in ("actor", "critic") for p in member.state[name].values()]


@pytest.mark.parametrize("backend", ["gymnasium", "torch"])
def test_same_seed_at_two_grid_points_is_paired(backend):
    trainer = grid_trainer(env_backend=backend)
    assert [c.seed for c in trainer.cfg.member_configs()] == [42, 44, 42, 44]
    if backend == "gymnasium":
        assert trainer.env_seeds(42) == [42, 43, 44, 45, 42, 43, 44, 45]
    start = trainer.obs.clone()
    for a, b in PAIRS:  # identical env resets and initial weights
        assert torch.equal(member_block(start, a), member_block(start, b))
        assert all(torch.equal(p, q) for p, q in zip(params(trainer, a), params(trainer, b), strict=True))
    assert not torch.equal(member_block(start, 0), member_block(start, 1))  # other seed: other envs and weights
    assert not torch.equal(params(trainer, 0)[0], params(trainer, 1)[0])
    noise = trainer.noise.sample()
    assert torch.equal(member_block(noise, 0), member_block(noise, 2))
    assert not torch.equal(member_block(noise, 0), member_block(noise, 1))
    trainer.train()
    for a, b in PAIRS:  # identical random-action phase, though updates (with other taus) ran within it
        assert len(first_returns(trainer, a)) == 2 and first_returns(trainer, a) == first_returns(trainer, b)
    assert first_returns(trainer, 0) != first_returns(trainer, 1)
    for a, b in PAIRS:  # the random phase's replay rows are the same; the indices drawn are the same positions
        assert torch.equal(trainer.buffer.data[a, :400], trainer.buffer.data[b, :400])
    # the updates did differ: the grid points are not copies
    assert not torch.equal(params(trainer, 0)[0], params(trainer, 2)[0])
    # after a resume every env restarts from a seed of its member's own: still paired
    trainer.restart_episodes()
    for a, b in PAIRS:
        assert torch.equal(member_block(trainer.obs, a), member_block(trainer.obs, b))
    assert not torch.equal(member_block(trainer.obs, 0), member_block(trainer.obs, 1))


def test_td3_smoothing_noise_is_paired():
    trainer = grid_trainer(algo="td3")
    extra = trainer.algo.extra_inputs(3, 8, trainer.gen)  # (updates, K, batch, act_dim)
    trainer.env.close()
    assert extra.shape == (3, 4, 8, 1)
    assert torch.equal(extra[:, :2], extra[:, 2:]) and not torch.equal(extra[:, 0], extra[:, 1])


def test_one_seed_grid_members_draw_what_the_single_run_draws():
    """--num-seeds 1 with a --grid: every member's envs, weights and random draws are the single run's with the
    same seed, so its random-action phase returns equal the single run's exactly."""
    pop = Trainer(Config(**{**BASE, "grid": ("tau=0.005,0.05",)}))
    single = Trainer(Config(**BASE))
    assert [c.seed for c in pop.cfg.member_configs()] == [42, 42]
    for k in range(2):
        assert torch.equal(member_block(pop.obs, k), single.obs)
        assert all(torch.equal(p, q) for p, q in zip(params(pop, k), [p for name in ("actor", "critic") for p in
                                                                       single.algo.state[name].values()], strict=True))
    pop.train()
    single.train()
    want = [r.return_ for r in single.episode_rows if r.global_step <= BASE["start_steps"]]
    assert len(want) == 2 and first_returns(pop, 0) == want and first_returns(pop, 1) == want
    # the random-action phase's transitions (after it the stacked and the single actor round differently)
    np.testing.assert_array_equal(pop.buffer.data[0, :400].numpy(), single.buffer.data[:400].numpy())


def test_num_seeds_members_keep_their_own_envs():
    """--num-seeds 3 without a grid: three seeds, no env seed shared between them (as before: seed + k N + j)."""
    trainer = Trainer(Config(**{**BASE, "num_envs": 3, "num_seeds": 3}))
    trainer.env.close()
    assert [c.seed for c in trainer.cfg.member_configs()] == [42, 45, 48]
    seeds = trainer.env_seeds(42)
    assert seeds == list(range(42, 51)) and len(set(seeds)) == 9
    blocks = [member_block(trainer.obs, k, 3) for k in range(3)]
    assert not torch.equal(blocks[0], blocks[1]) and not torch.equal(blocks[1], blocks[2])


def test_replay_indices_repeat_over_the_grid_points():
    """4 members as 2 grid points: members k and k + 2 sample the same positions of their own rows."""
    buf = ReplayBuffer(50, 1, 1, torch.device("cpu"), members=4, repeats=2)
    pos = torch.arange(50.0).reshape(-1, 1)
    for _ in range(2):  # 2 writes of 25 rows per member: member k's row i holds (i, k)
        i = len(buf)
        obs = pos[i:i + 25].repeat(4, 1)
        action = torch.cat([torch.full((25, 1), float(k)) for k in range(4)])
        buf.add(obs, action, torch.zeros(100), obs, torch.zeros(100))
    rows = buf.sample_rows(3, 16, torch.Generator().manual_seed(0))  # (3, 4, 16, width)
    assert torch.equal(rows[..., 1], torch.arange(4.0).reshape(1, 4, 1).expand(3, 4, 16))  # each its own rows
    at = rows[..., 0]
    assert torch.equal(at[:, 0], at[:, 2]) and torch.equal(at[:, 1], at[:, 3]) and not torch.equal(at[:, 0], at[:, 1])
