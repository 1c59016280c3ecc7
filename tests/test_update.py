"""The update's equations against hand computations, and the whole update against the notebook's
module-and-optimizer formulation."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from fastddpg.algos import Algorithm
from fastddpg.learning.update import (
    AdamHyper,
    Batch,
    actor_loss,
    adam_state,
    adam_step_,
    clip_grad_norm_,
    critic_loss,
    ddpg_update,
    soft_update_,
    td_target,
)
from tests.conftest import hyper, make_learner

CPU = torch.device("cpu")


def tiny_learner(hidden=(2,)) -> Algorithm:
    return make_learner(1, 1, hidden, torch.tensor([-2.0]), torch.tensor([2.0]), 1e-3, 1e-3, CPU)


def set_weights(learner: Algorithm) -> None:
    """Fixed, hand-chosen weights: actor 1 -> 2 -> 1, critic 2 -> 2 -> 1 (hidden=(2,))."""
    with torch.no_grad():
        for m in (learner.actor, learner.target_actor):
            m.net[0].weight.copy_(torch.tensor([[1.0], [-1.0]]))
            m.net[0].bias.copy_(torch.tensor([0.0, 0.5]))
            m.net[2].weight.copy_(torch.tensor([[0.5, -0.25]]))
            m.net[2].bias.copy_(torch.tensor([0.1]))
        for m in (learner.critic, learner.target_critic):
            m.net[0].weight.copy_(torch.tensor([[1.0, 2.0], [-1.0, 0.5]]))
            m.net[0].bias.copy_(torch.tensor([0.0, 1.0]))
            m.net[2].weight.copy_(torch.tensor([[1.0, -2.0]]))
            m.net[2].bias.copy_(torch.tensor([0.5]))


def relu(x: float) -> float:
    return max(x, 0.0)


def mu_hand(s: float) -> float:
    h = [relu(s), relu(-s + 0.5)]
    return 2.0 * torch.tanh(torch.tensor(0.5 * h[0] - 0.25 * h[1] + 0.1)).item()


def q_hand(s: float, a: float) -> float:
    h = [relu(s + 2 * a), relu(-s + 0.5 * a + 1.0)]
    return 1.0 * h[0] - 2.0 * h[1] + 0.5


BATCH = Batch(obs=torch.tensor([[0.3], [-1.0]]), action=torch.tensor([[0.5], [-1.5]]),
              reward=torch.tensor([[1.0], [-2.0]]), next_obs=torch.tensor([[0.7], [2.0]]),
              terminated=torch.tensor([[0.0], [1.0]]))


def test_td_target_by_hand():
    learner = tiny_learner()
    set_weights(learner)
    y = td_target(learner.nets, learner.state, BATCH, gamma=0.9)
    expected = []
    for i in range(2):
        s2 = BATCH.next_obs[i, 0].item()
        q_next = q_hand(s2, mu_hand(s2))
        d = BATCH.terminated[i, 0].item()
        expected.append(BATCH.reward[i, 0].item() + 0.9 * (1 - d) * q_next)
    assert y.shape == (2, 1)
    torch.testing.assert_close(y.reshape(-1), torch.tensor(expected), rtol=1e-6, atol=1e-6)
    assert y[1, 0].item() == pytest.approx(-2.0)  # terminal: no bootstrap


def test_critic_and_actor_loss_by_hand():
    learner = tiny_learner()
    set_weights(learner)
    y = torch.tensor([[1.0], [0.0]])
    loss, (_, q) = critic_loss(learner.critic, learner.state["critic"], BATCH, y)
    qs = [q_hand(BATCH.obs[i, 0].item(), BATCH.action[i, 0].item()) for i in range(2)]
    assert loss.item() == pytest.approx(((qs[0] - 1.0) ** 2 + (qs[1] - 0.0) ** 2) / 2, rel=1e-6)
    torch.testing.assert_close(q.reshape(-1), torch.tensor(qs))
    pi, _ = actor_loss(learner.actor, learner.state["actor"], learner.critic, learner.state["critic"], BATCH.obs)
    expected = -sum(q_hand(s, mu_hand(s)) for s in BATCH.obs.reshape(-1).tolist()) / 2
    assert pi.item() == pytest.approx(expected, rel=1e-6)


def test_soft_update_by_hand():
    targets = [torch.tensor([1.0, 2.0]), torch.tensor([[0.0]])]
    online = [torch.tensor([3.0, -2.0]), torch.tensor([[10.0]])]
    soft_update_(targets, online, tau=0.1)
    torch.testing.assert_close(targets[0], torch.tensor([0.1 * 3 + 0.9 * 1, 0.1 * -2 + 0.9 * 2]))
    torch.testing.assert_close(targets[1], torch.tensor([[1.0]]))


def test_clip_grad_norm_matches_torch():
    g = [torch.randn(5, 3) * 3, torch.randn(7) * 3]
    ref = [x.clone().requires_grad_() for x in g]
    for r, x in zip(ref, g, strict=True):
        r.grad = x.clone()
    torch.nn.utils.clip_grad_norm_(ref, 1.0)
    clip_grad_norm_(g, 1.0)
    for r, x in zip(ref, g, strict=True):
        torch.testing.assert_close(x, r.grad)
    small = [torch.full((3,), 0.01)]
    clip_grad_norm_(small, 1.0)
    torch.testing.assert_close(small[0], torch.full((3,), 0.01))  # under the norm: untouched


def test_adam_matches_torch_optim():
    p = [torch.randn(4, 3), torch.randn(3)]
    ref = [x.clone().requires_grad_() for x in p]
    opt_ref = torch.optim.Adam(ref, lr=1e-2)
    opt = adam_state({str(i): x for i, x in enumerate(p)})
    for _ in range(25):
        grads = [torch.randn_like(x) for x in p]
        for r, g in zip(ref, grads, strict=True):
            r.grad = g.clone()
        opt_ref.step()
        adam_step_(p, opt, grads, AdamHyper(lr=1e-2))
    for r, x in zip(ref, p, strict=True):
        torch.testing.assert_close(x, r.detach(), rtol=1e-5, atol=1e-6)
    assert opt["step"].item() == 25


def notebook_style_update(actor, critic, t_actor, t_critic, a_opt, c_opt, b: Batch, gamma, tau, clip):
    """The notebook's update, with modules, .backward() and torch.optim (the reference)."""
    with torch.no_grad():
        y = b.reward + gamma * (1.0 - b.terminated) * t_critic(b.next_obs, t_actor(b.next_obs))
    q = critic(b.obs, b.action)
    lc = F.mse_loss(q, y)
    c_opt.zero_grad()
    lc.backward()
    torch.nn.utils.clip_grad_norm_(critic.parameters(), clip)
    c_opt.step()
    a_opt.zero_grad()
    la = -critic(b.obs, actor(b.obs)).mean()
    la.backward()
    torch.nn.utils.clip_grad_norm_(actor.parameters(), clip)
    a_opt.step()
    with torch.no_grad():
        for net, tnet in ((actor, t_actor), (critic, t_critic)):
            for p, pt in zip(net.parameters(), tnet.parameters(), strict=True):
                pt.mul_(1 - tau).add_(tau * p)
    return lc.detach(), la.detach(), q.detach().mean(), y.mean()


def random_batches(n, batch=64, obs_dim=3, act_dim=1):
    g = torch.Generator().manual_seed(1)
    return [Batch(torch.randn(batch, obs_dim, generator=g), torch.rand(batch, act_dim, generator=g) * 4 - 2,
                  torch.randn(batch, 1, generator=g), torch.randn(batch, obs_dim, generator=g),
                  (torch.rand(batch, 1, generator=g) < 0.2).float()) for _ in range(n)]


def test_ddpg_update_matches_notebook_formulation():
    learner = make_learner(3, 1, (32, 32), torch.tensor([-2.0]), torch.tensor([2.0]), 1e-3, 1e-3, CPU)
    mods = {k: copy.deepcopy(m) for k, m in learner.modules().items()}
    for m in mods.values():
        for p in m.parameters():
            p.requires_grad_(True)
    a_opt = torch.optim.Adam(mods["actor"].parameters(), lr=1e-3)
    c_opt = torch.optim.Adam(mods["critic"].parameters(), lr=1e-3)
    for b in random_batches(20):
        got = ddpg_update(learner.nets, learner.state, b, hyper(0.99, 0.005, 1.0))
        want = notebook_style_update(mods["actor"], mods["critic"], mods["target_actor"], mods["target_critic"],
                                     a_opt, c_opt, b, 0.99, 0.005, 1.0)
        torch.testing.assert_close(got, torch.stack(want), rtol=1e-4, atol=1e-5)
    for name, m in learner.modules().items():
        for (k, v), v_ref in zip(m.state_dict().items(), mods[name].state_dict().values(), strict=True):
            torch.testing.assert_close(v, v_ref, rtol=1e-4, atol=1e-5, msg=f"{name}.{k}")


def test_update_returns_device_metrics_without_host_reads(monkeypatch):
    learner = make_learner(3, 1, (16,), torch.tensor([-2.0]), torch.tensor([2.0]), 1e-3, 1e-3, CPU)
    calls = []
    monkeypatch.setattr(torch.Tensor, "item", lambda self: calls.append("item"))
    m = ddpg_update(learner.nets, learner.state, random_batches(1)[0], hyper(0.99, 0.005, 1.0))
    assert isinstance(m, torch.Tensor) and m.shape == (4,)
    assert calls == []
