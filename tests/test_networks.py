"""Networks: LayerNorm where networks.py documents it (after each hidden Linear, before its ReLU; never on the
output), trained and saved; TwinCritic = K independent critics in one batched module."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from fastddpg.learning.networks import Actor, Critic, StackedLayerNorm, StackedLinear, TwinCritic
from fastddpg.learning.update import Batch, ddpg_update, first_critic
from tests.conftest import hyper, make_learner

CPU = torch.device("cpu")
LOW, HIGH = torch.tensor([-2.0, -1.0]), torch.tensor([2.0, 3.0])


def kinds(seq: nn.Sequential) -> list[type]:
    return [type(m) for m in seq]


def test_default_networks_have_no_layer_norm_and_unchanged_keys():
    actor, critic = Actor(3, 2, (8, 8), LOW, HIGH), Critic(3, 2, (8, 8))
    assert kinds(actor.net) == [nn.Linear, nn.ReLU, nn.Linear, nn.ReLU, nn.Linear, nn.Tanh]
    assert kinds(critic.net) == [nn.Linear, nn.ReLU, nn.Linear, nn.ReLU, nn.Linear, nn.Identity]
    assert list(critic.state_dict()) == ["net.0.weight", "net.0.bias", "net.2.weight", "net.2.bias",
                                         "net.4.weight", "net.4.bias"]


def test_layer_norm_after_each_hidden_linear_before_relu_not_on_output():
    actor = Actor(3, 2, (8, 6), LOW, HIGH, layer_norm=True)
    critic = Critic(3, 2, (8, 6), layer_norm=True)
    assert kinds(actor.net) == [nn.Linear, nn.LayerNorm, nn.ReLU, nn.Linear, nn.LayerNorm, nn.ReLU, nn.Linear,
                                nn.Tanh]
    assert kinds(critic.net) == [nn.Linear, nn.LayerNorm, nn.ReLU, nn.Linear, nn.LayerNorm, nn.ReLU, nn.Linear,
                                 nn.Identity]
    for net in (actor.net, critic.net):
        assert net[1].normalized_shape == (8,) and net[4].normalized_shape == (6,)
        assert net[1].elementwise_affine
    keys = set(critic.state_dict())
    assert {"net.1.weight", "net.1.bias", "net.4.weight", "net.4.bias"} <= keys
    assert {"net.1.weight", "net.1.bias", "net.4.weight", "net.4.bias"} <= set(actor.state_dict())


def test_layer_norm_makes_hidden_layer_scale_invariant():
    """A LayerNorm right after the first Linear: scaling that Linear's weight and bias by c > 0 cannot change
    the output. Without LayerNorm it does (so the test can tell the two apart)."""
    obs, act = torch.randn(5, 3), torch.rand(5, 2)
    for ln in (True, False):
        critic = Critic(3, 2, (8,), layer_norm=ln)
        scaled = copy.deepcopy(critic)
        with torch.no_grad():
            scaled.net[0].weight.mul_(7.0)
            scaled.net[0].bias.mul_(7.0)
        same = torch.allclose(critic(obs, act), scaled(obs, act), rtol=1e-4, atol=1e-5)
        assert same == ln


def test_layer_norm_parameters_are_trained_and_soft_updated():
    torch.manual_seed(0)
    learner = make_learner(3, 2, (16, 16), LOW, HIGH, 1e-2, 1e-2, CPU, layer_norm=True)
    before = {name: copy.deepcopy(m.state_dict()) for name, m in learner.modules().items()}
    g = torch.Generator().manual_seed(0)
    batch = Batch(torch.randn(32, 3, generator=g), torch.rand(32, 2, generator=g), torch.randn(32, 1, generator=g),
                  torch.randn(32, 3, generator=g), torch.zeros(32, 1))
    for _ in range(3):
        ddpg_update(learner.nets, learner.state, batch, hyper(0.99, 0.1, 1.0, 1e-2, 1e-2))
    for name, m in learner.modules().items():
        for key in ("net.1.weight", "net.1.bias", "net.4.weight", "net.4.bias"):
            assert not torch.equal(m.state_dict()[key], before[name][key]), f"{name}.{key} did not move"
    assert "net.1.weight" in learner.state["actor"] and "net.1.weight" in learner.state["critic"]


def test_twin_critic_members_are_independent_critics():
    torch.manual_seed(0)
    for ln in (False, True):
        twin = TwinCritic(3, 2, (8, 6), num_critics=2, layer_norm=ln)
        kinds_expected = ([StackedLinear, StackedLayerNorm, nn.ReLU] * 2 if ln else [StackedLinear, nn.ReLU] * 2)
        assert kinds(twin.net) == [*kinds_expected, StackedLinear, nn.Identity]
        with torch.no_grad():  # non-trivial LayerNorm gains, so the member copy of them is tested too
            for p in twin.parameters():
                p.add_(0.1 * torch.randn_like(p))
        obs, act = torch.randn(5, 3), torch.rand(5, 2)
        q = twin(obs, act)
        assert q.shape == (2, 5, 1)
        for k in range(2):
            member = twin.member(k)
            assert list(member.state_dict()) == list(Critic(3, 2, (8, 6), layer_norm=ln).state_dict())
            torch.testing.assert_close(q[k], member(obs, act), rtol=1e-5, atol=1e-6)
        assert not torch.allclose(q[0], q[1])  # independently initialised
        params = {k: v.detach() for k, v in twin.named_parameters()}
        q1_only = torch.func.functional_call(twin, first_critic(params, 2), (obs, act))
        assert q1_only.shape == (1, 5, 1)
        torch.testing.assert_close(q1_only[0], q[0])


def test_twin_critic_init_matches_linear_init_range():
    twin = TwinCritic(3, 2, (64,), num_critics=2)
    w = twin.net[0].weight  # (K, in, out) = (2, 5, 64)
    assert w.shape == (2, 5, 64) and twin.net[0].bias.shape == (2, 1, 64)
    bound = 1 / 5 ** 0.5
    assert w.abs().max() <= bound and w.abs().max() > 0.8 * bound


@pytest.mark.parametrize("num_critics", [1, 2])
def test_learner_critic_kind_and_q1(num_critics):
    learner = make_learner(3, 2, (8,), LOW, HIGH, 1e-3, 1e-3, CPU, num_critics=num_critics)
    assert isinstance(learner.critic, Critic if num_critics == 1 else TwinCritic)
    obs = torch.randn(4, 3)
    q = learner.q1(obs, learner.actor(obs))
    assert q.shape == (4, 1)
    clone = copy.deepcopy(learner)
    first = next(iter(clone.state["critic"]))
    assert clone.state["critic"][first].data_ptr() == dict(clone.critic.named_parameters())[first].data_ptr()
