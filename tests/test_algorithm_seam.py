"""The algorithm seam: a toy algorithm defined only in this file, registered at run time, trains through
`fastddpg.train`, reports its own metric, acts with its own noise, and has its saved policy rebuilt by its own code
for evaluation, `load_policy`, export and checkpoints, and resumes: nothing in the package names it."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

from fastddpg import Config, load_checkpoint, load_policy, resume, train
from fastddpg.algos import Algorithm, algorithm_class
from fastddpg.algos.base import UpdateFns
from fastddpg.core.registry import ALGORITHMS, CORE_METRICS, AlgoSpec
from fastddpg.learning.networks import BoundedPolicy, Critic, mlp
from fastddpg.learning.noise import GaussianNoise
from fastddpg.learning.update import Batch, LearnerState, Nets, batch_mean, ddpg_update
from fastddpg.runs.evaluate import evaluate_run
from fastddpg.runs.export import export_policy


class GaussianActor(BoundedPolicy):
    """A stochastic policy's deterministic core: the mean a = scale * tanh(net(s)) + bias, plus a learned-looking
    ``log_std`` (act_dim,) that only acting uses. Its state_dict is not an `Actor`'s (the extra ``log_std``), so the
    package's default rebuild could not load it."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...], low: torch.Tensor,
                 high: torch.Tensor) -> None:
        super().__init__()
        self.net = mlp([obs_dim, *hidden, act_dim], output_activation=nn.Tanh)
        self.log_std = nn.Parameter(torch.full((act_dim,), math.log(0.3)))
        self.set_bounds(low, high)


class Toy(Algorithm):
    """DDPG's equations with a Gaussian actor that explores with its own std, and one more metric."""

    name = "toy"
    metric_names = (*CORE_METRICS, "reward_mean")

    def build_networks(self) -> dict[str, nn.Module]:
        actor = GaussianActor(self.obs_dim, self.act_dim, self.hidden_sizes, self.action_low, self.action_high)
        critic = Critic(self.obs_dim, self.act_dim, self.hidden_sizes)
        return {"actor": actor, "critic": critic, "target_actor": copy.deepcopy(actor),
                "target_critic": copy.deepcopy(critic)}

    def make_update_fns(self, nets: Nets, hyper: Any, as_batch: Callable[[torch.Tensor], Batch],
                        width: int) -> UpdateFns:
        def toy_step(state: LearnerState, rows: torch.Tensor) -> torch.Tensor:
            batch = as_batch(rows)
            metrics = ddpg_update(nets, state, batch, hyper)
            return torch.cat([metrics, batch_mean(batch.reward).unsqueeze(-1)], dim=-1)

        return {True: toy_step}

    def make_noise(self, cfg: Any, num_envs: int, generator: torch.Generator, sigma: Any, repeats: int = 1) -> Any:
        return GaussianNoise(num_envs, self.act_dim, 1.0, self.device, generator, repeats)  # standard normal

    def explore(self, obs: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        action = self.actor(obs) + self.actor.log_std.exp() * self.actor.action_scale * noise
        return torch.clamp(action, self.action_low, self.action_high)

    @classmethod
    def policy_from_state_dict(cls, state: dict[str, torch.Tensor], hidden_sizes: Any, layer_norm: bool = False,
                               member: int = 0, members: int = 1) -> nn.Module:
        scale, bias = state["action_scale"], state["action_bias"]
        actor = GaussianActor(state["net.0.weight"].shape[1], scale.shape[0], tuple(hidden_sizes), bias - scale,
                              bias + scale)
        actor.load_state_dict(state)
        return actor.eval()


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setitem(ALGORITHMS, "toy", AlgoSpec("toy", f"{__name__}:Toy", "a test's toy"))
    return Toy


def test_a_toy_algorithm_trains_evaluates_exports_and_resumes(toy, tmp_path):
    run_dir = tmp_path / "run"
    cfg = Config(algo="toy", total_steps=400, num_envs=2, start_steps=100, update_after=100, batch_size=32,
                 hidden_sizes=(16,), log_every=100, checkpoint_every=200, compile="off", threads=1, quiet=True,
                 run_dir=str(run_dir))
    assert algorithm_class("toy") is Toy
    result = train(cfg)
    assert isinstance(result.algo, Toy)
    updates = result.updates
    assert list(updates.columns[2:7]) == list(Toy.metric_names)  # its own metric, in the table and the CSV
    assert updates["reward_mean"].notna().all() and (updates["reward_mean"] < 0).all()  # Pendulum: r <= 0
    assert "reward_mean" in (run_dir / "updates.csv").read_text().splitlines()[0]
    # the log_std only acts: DDPG's loss does not reach it, so it is where it started
    torch.testing.assert_close(result.algo.actor.log_std, torch.full((1,), math.log(0.3)))

    policy = load_policy(run_dir)  # rebuilt by Toy.policy_from_state_dict: an Actor could not load log_std
    assert isinstance(policy.actor, GaussianActor)
    obs = torch.randn(5, 3)
    torch.testing.assert_close(policy.predict(obs), result.algo.actor(obs).detach())
    assert isinstance(load_checkpoint(run_dir)["actor"], GaussianActor)
    assert math.isfinite(evaluate_run(run_dir, episodes=1, seed=0).mean)

    out = export_policy(policy.actor, "torchscript", tmp_path / "toy.ts.pt")
    torch.testing.assert_close(torch.jit.load(str(out))(obs), result.algo.actor(obs).detach())

    resumed = resume(run_dir, total_steps=600)
    assert isinstance(resumed.algo, Toy)
    assert resumed.updates["global_step"].max() > updates["global_step"].max()  # it went on past the checkpoint
    assert resumed.updates["reward_mean"].notna().all()


def test_an_unregistered_algorithm_is_one_line_error():
    from fastddpg import ConfigError

    with pytest.raises(ConfigError, match="--algo='toy' is invalid"):
        Config(algo="toy")
