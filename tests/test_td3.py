"""TD3 against its equations: the target by hand (both clips, the min over target critics), the whole update against
a module-and-optimizer reference, the policy delay, the actor on Q_1 only, compiled == eager, and the trainer."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch._dynamo
import torch.nn.functional as F

from fastddpg import Config, ConfigError, Trainer
from fastddpg.algos import Algorithm, metric_names
from fastddpg.core.schema import UPDATE_COLUMNS, update_columns
from fastddpg.learning.compile import compile_update
from fastddpg.learning.networks import TwinCritic
from fastddpg.learning.replay import ReplayBuffer
from fastddpg.learning.update import (
    METRIC_NAMES,
    TD3_METRIC_NAMES,
    Batch,
    actor_loss,
    td3_target,
    td3_update,
)
from tests.conftest import COUNTING_ID, hyper, make_learner

CPU = torch.device("cpu")
GAMMA, POLICY_NOISE, NOISE_CLIP = 0.9, 0.2, 0.5

# Two hand-chosen target critics 2 -> 2 -> 1 (nn.Linear layout: weight (out, in)).
CRITIC_A = dict(w0=[[1.0, 2.0], [-1.0, 0.5]], b0=[0.0, 1.0], w1=[[1.0, -2.0]], b1=[0.5])
CRITIC_B = dict(w0=[[0.5, -1.0], [1.0, 1.0]], b0=[0.2, -0.3], w1=[[-1.0, 1.5]], b1=[0.0])


def relu(x: float) -> float:
    return max(x, 0.0)


def mu_hand(s: float) -> float:
    """The target actor below: 2 tanh(0.5 relu(s) - 0.25 relu(-s + 0.5) + 0.1), action bounds [-2, 2]."""
    return 2.0 * math.tanh(0.5 * relu(s) - 0.25 * relu(-s + 0.5) + 0.1)


def q_hand(c: dict, s: float, a: float) -> float:
    h = [relu(c["w0"][j][0] * s + c["w0"][j][1] * a + c["b0"][j]) for j in range(2)]
    return c["w1"][0][0] * h[0] + c["w1"][0][1] * h[1] + c["b1"][0]


def set_member(twin: TwinCritic, k: int, c: dict) -> None:
    with torch.no_grad():
        twin.net[0].weight[k] = torch.tensor(c["w0"]).T
        twin.net[0].bias[k, 0] = torch.tensor(c["b0"])
        twin.net[2].weight[k] = torch.tensor(c["w1"]).T
        twin.net[2].bias[k, 0] = torch.tensor(c["b1"])


def hand_learner() -> Algorithm:
    """Targets set by hand; the online networks keep their random init, so using them would fail the test."""
    learner = make_learner(1, 1, (2,), torch.tensor([-2.0]), torch.tensor([2.0]), 1e-3, 1e-3, CPU, num_critics=2)
    with torch.no_grad():
        m = learner.target_actor
        m.net[0].weight.copy_(torch.tensor([[1.0], [-1.0]]))
        m.net[0].bias.copy_(torch.tensor([0.0, 0.5]))
        m.net[2].weight.copy_(torch.tensor([[0.5, -0.25]]))
        m.net[2].bias.copy_(torch.tensor([0.1]))
    set_member(learner.target_critic, 0, CRITIC_A)
    set_member(learner.target_critic, 1, CRITIC_B)
    return learner


def test_td3_target_by_hand():
    learner = hand_learner()
    s2 = [5.0, -3.0, 0.7, 2.0]
    eps = [5.0, -5.0, -0.5, 0.5]
    r, d = [1.0, -2.0, 0.5, 0.3], [0.0, 0.0, 1.0, 0.0]
    batch = Batch(obs=torch.zeros(4, 1), action=torch.zeros(4, 1), reward=torch.tensor(r).reshape(4, 1),
                  next_obs=torch.tensor(s2).reshape(4, 1), terminated=torch.tensor(d).reshape(4, 1))
    y, q_min = td3_target(learner.nets, learner.state, batch, torch.tensor(eps).reshape(4, 1), GAMMA, POLICY_NOISE,
                          NOISE_CLIP)

    scale = 2.0  # (high - low) / 2
    want_y, want_min, argmins, clipped_noise, clipped_action = [], [], set(), 0, 0
    for i in range(4):
        noise = min(max(POLICY_NOISE * eps[i], -NOISE_CLIP), NOISE_CLIP) * scale
        clipped_noise += noise != POLICY_NOISE * eps[i] * scale
        raw = mu_hand(s2[i]) + noise
        a2 = min(max(raw, -2.0), 2.0)
        clipped_action += a2 != raw
        qa, qb = q_hand(CRITIC_A, s2[i], a2), q_hand(CRITIC_B, s2[i], a2)
        argmins.add(0 if qa < qb else 1)
        want_min.append(min(qa, qb))
        want_y.append(r[i] + GAMMA * (1 - d[i]) * min(qa, qb))
    assert clipped_noise == 2 and clipped_action == 2 and argmins == {0, 1}  # the batch exercises every branch
    assert y.shape == (4, 1) and q_min.shape == (4, 1)
    torch.testing.assert_close(q_min.reshape(-1), torch.tensor(want_min), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(y.reshape(-1), torch.tensor(want_y), rtol=1e-6, atol=1e-6)
    assert y[2, 0].item() == pytest.approx(0.5)  # terminal: no bootstrap


def test_actor_loss_uses_q1_only():
    torch.manual_seed(0)
    learner = make_learner(3, 1, (16,), torch.tensor([-2.0]), torch.tensor([2.0]), 1e-3, 1e-3, CPU, num_critics=2)
    obs = torch.randn(8, 3)

    def grads(critic_params):
        return torch.func.grad_and_value(actor_loss, argnums=1, has_aux=True)(
            learner.actor, learner.state["actor"], learner.critic, critic_params, obs)

    g, (loss, _) = grads(learner.state["critic"])
    torch.testing.assert_close(loss, -learner.critic.member(0)(obs, learner.actor(obs)).mean())
    for member, should_change in ((1, False), (0, True)):
        perturbed = {k: v.clone() for k, v in learner.state["critic"].items()}
        for v in perturbed.values():
            v[member] += torch.randn_like(v[member])
        g2, (loss2, _) = grads(perturbed)
        same = torch.equal(loss2, loss) and all(torch.equal(g2[k], g[k]) for k in g)
        assert same != should_change, f"perturbing Q_{member + 1}"


def reference_twin_critic_step(nets: dict, opt: torch.optim.Optimizer, b: Batch, y: torch.Tensor, clip: float
                               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Both critics (modules "c1", "c2") regress to y: the sum of their MSEs, .backward(), each critic clipped to its
    own norm, one Adam step. Returns (the loss, Q_1, Q_2)."""
    q1, q2 = nets["c1"](b.obs, b.action), nets["c2"](b.obs, b.action)
    loss = F.mse_loss(q1, y) + F.mse_loss(q2, y)
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(nets["c1"].parameters(), clip)
    torch.nn.utils.clip_grad_norm_(nets["c2"].parameters(), clip)
    opt.step()
    return loss, q1, q2


def reference_td3_update(nets: dict, opts: dict, b: Batch, eps: torch.Tensor, actor_step: bool,
                         tau: float, clip: float) -> torch.Tensor:
    """TD3 as in Fujimoto et al.'s code: two Critic modules, .backward(), torch.optim.Adam, per-critic clipping."""
    scale = nets["actor"].action_scale
    with torch.no_grad():
        noise = (POLICY_NOISE * eps).clamp(-NOISE_CLIP, NOISE_CLIP) * scale
        a2 = (nets["target_actor"](b.next_obs) + noise).clamp(-2.0, 2.0)
        tq = torch.min(nets["target_c1"](b.next_obs, a2), nets["target_c2"](b.next_obs, a2))
        y = b.reward + GAMMA * (1 - b.terminated) * tq
    loss, q1, q2 = reference_twin_critic_step(nets, opts["critic"], b, y, clip)
    la = torch.zeros(())
    if actor_step:
        opts["actor"].zero_grad()
        la = -nets["c1"](b.obs, nets["actor"](b.obs)).mean()
        la.backward()
        torch.nn.utils.clip_grad_norm_(nets["actor"].parameters(), clip)
        opts["actor"].step()
        with torch.no_grad():
            for online, target in (("actor", "target_actor"), ("c1", "target_c1"), ("c2", "target_c2")):
                for p, pt in zip(nets[online].parameters(), nets[target].parameters(), strict=True):
                    pt.mul_(1 - tau).add_(tau * p)
    return torch.stack([loss.detach() / 2, la.detach(), q1.detach().mean(), y.mean(), q1.detach().mean(),
                        q2.detach().mean(), tq.mean()])


def test_td3_update_matches_reference_formulation():
    torch.manual_seed(0)
    learner = make_learner(3, 1, (32, 32), torch.tensor([-2.0]), torch.tensor([2.0]), 1e-3, 1e-3, CPU, num_critics=2)
    nets = {"actor": copy.deepcopy(learner.actor), "target_actor": copy.deepcopy(learner.target_actor),
            "c1": learner.critic.member(0), "c2": learner.critic.member(1),
            "target_c1": learner.target_critic.member(0), "target_c2": learner.target_critic.member(1)}
    for m in nets.values():
        for p in m.parameters():
            p.requires_grad_(True)
    opts = {"actor": torch.optim.Adam(nets["actor"].parameters(), lr=1e-3),
            "critic": torch.optim.Adam([*nets["c1"].parameters(), *nets["c2"].parameters()], lr=1e-3)}
    g = torch.Generator().manual_seed(1)
    for u in range(1, 11):
        b = Batch(torch.randn(64, 3, generator=g), torch.rand(64, 1, generator=g) * 4 - 2,
                  torch.randn(64, 1, generator=g), torch.randn(64, 3, generator=g),
                  (torch.rand(64, 1, generator=g) < 0.2).float())
        eps = torch.randn(64, 1, generator=g) * 3  # wide, so the noise clip is active on part of the batch
        actor_step = u % 2 == 0
        got = td3_update(learner.nets, learner.state, b, eps, hyper(GAMMA, 0.05, 0.5, policy_noise=POLICY_NOISE,
                                                                     noise_clip=NOISE_CLIP), actor_step)
        want = reference_td3_update(nets, opts, b, eps, actor_step, 0.05, 0.5)
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5, msg=f"metrics of update {u}")
    pairs = [(learner.actor, nets["actor"]), (learner.target_actor, nets["target_actor"]),
             (learner.critic.member(0), nets["c1"]), (learner.critic.member(1), nets["c2"]),
             (learner.target_critic.member(0), nets["target_c1"]), (learner.target_critic.member(1), nets["target_c2"])]
    for mine, ref in pairs:
        for (k, v), v_ref in zip(mine.state_dict().items(), ref.state_dict().values(), strict=True):
            torch.testing.assert_close(v, v_ref, rtol=1e-4, atol=1e-5, msg=k)
    assert steps(learner) == (10, 5)


def filled_buffer() -> ReplayBuffer:
    buf = ReplayBuffer(500, 3, 1, CPU)
    g = torch.Generator().manual_seed(1)
    buf.add(torch.randn(500, 3, generator=g), torch.rand(500, 1, generator=g) * 4 - 2, torch.randn(500, generator=g),
            torch.randn(500, 3, generator=g), (torch.rand(500, generator=g) < 0.1).float())
    return buf


def td3_rows(buf: ReplayBuffer, k: int, batch: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.cat([buf.sample_rows(k, batch, g), torch.randn(k, batch, 1, generator=g)], dim=-1)


def td3_learner(hidden=(16,), device=CPU, policy_delay=2, **kw) -> Algorithm:
    return make_learner(3, 1, hidden, torch.tensor([-2.0]), torch.tensor([2.0]), 1e-3, 1e-3, device, num_critics=2,
                        policy_delay=policy_delay, gamma=0.99, tau=0.005, clip=1.0, policy_noise=POLICY_NOISE,
                        noise_clip=NOISE_CLIP, **kw)


def steps(learner: Algorithm) -> tuple[int, int]:
    """Adam steps taken: (critic, actor)."""
    return tuple(int(learner.state["optim"][k]["step"].item()) for k in ("critic", "actor"))


def test_policy_delay_counts_and_critic_only_steps_leave_actor_and_targets_alone():
    learner = td3_learner(policy_delay=3)
    buf = filled_buffer()
    fns = learner.update_fns(buf.as_batch, buf.width)
    assert learner.eps_dim == 1 and set(fns) == {False, True}
    assert [learner.is_actor_step(u) for u in range(1, 7)] == [False, False, True, False, False, True]
    rows = td3_rows(buf, 6, 32, 0)
    for u in range(1, 7):
        frozen = {name: copy.deepcopy(m.state_dict()) for name, m in learner.modules().items()}
        actor_step = learner.is_actor_step(u)
        fns[actor_step](learner.state, rows[u - 1])
        for name, m in learner.modules().items():
            changed = any(not torch.equal(v, frozen[name][k]) for k, v in m.state_dict().items())
            assert changed == (name == "critic" or actor_step), f"update {u}: {name}"
    assert steps(learner) == (6, 2)
    assert set(td3_learner(policy_delay=1).update_fns(buf.as_batch, buf.width)) == {True}


def test_compiled_td3_equals_eager():
    """Both TD3 functions compile once each (error_on_recompile) and give eager's numbers, state included."""
    torch._dynamo.reset()  # another test compiled the same code objects for other shapes: not a recompile of these
    torch.manual_seed(0)
    eager = td3_learner(hidden=(32, 32), layer_norm=True)
    comp = copy.deepcopy(eager)
    buf = filled_buffer()
    rows = td3_rows(buf, 8, 64, 2)
    f_eager = eager.update_fns(buf.as_batch, buf.width)
    compiled = {key: compile_update(fn, "default", CPU) for key, fn in comp.update_fns(buf.as_batch, buf.width).items()}
    with torch._dynamo.config.patch(error_on_recompile=True):
        for u in range(1, 9):
            key = eager.is_actor_step(u)
            torch.testing.assert_close(compiled[key](comp.state, rows[u - 1]), f_eager[key](eager.state, rows[u - 1]),
                                       rtol=1e-5, atol=1e-6, msg=f"update {u}")
    for name, m in eager.modules().items():
        for k, v in m.state_dict().items():
            torch.testing.assert_close(comp.modules()[name].state_dict()[k], v, rtol=1e-5, atol=1e-6, msg=k)
    assert steps(comp) == (8, 4)


def small(**kw) -> Config:
    base = dict(env=COUNTING_ID, num_envs=3, total_steps=120, hidden_sizes=(8,), batch_size=4, replay_size=1000,
                start_steps=30, update_after=10, log_every=30, device="cpu", probe_n=4, quiet=True, compile="off")
    return Config(**{**base, **kw})


def test_trainer_td3_end_to_end():
    trainer = Trainer(small(algo="td3", policy_delay=2, layer_norm=True))
    result = trainer.train()
    n = result.summary["updates"]
    assert n > 0 and isinstance(trainer.algo.critic, TwinCritic)
    assert steps(trainer.algo) == (n, n // 2)
    assert list(result.updates.columns) == list(update_columns(metric_names("td3")))
    assert {"q1_mean", "q2_mean", "target_min_mean"} <= set(result.updates.columns)
    assert result.updates[list(TD3_METRIC_NAMES)].notna().all().all()
    assert len(result.probes) > 0 and result.probes["q"].notna().all()


def test_td3_with_ou_noise_does_no_host_reads_in_the_hot_loop(monkeypatch):
    trainer = Trainer(small(algo="td3", noise="ou", layer_norm=True, total_steps=1500, log_every=1500))
    calls = []
    for attr in ("item", "tolist", "__float__"):
        orig = getattr(torch.Tensor, attr)

        def wrapped(self, *a, _orig=orig, _name=attr):
            calls.append(_name)
            return _orig(self, *a)

        monkeypatch.setattr(torch.Tensor, attr, wrapped)
    trainer.train()
    assert trainer.num_updates > 1000 and calls == []


def test_trainer_averages_actor_loss_over_actor_steps_only():
    """Fake update functions with known metrics: the critic-only one reports actor_loss 0 (as td3_update does);
    the updates table must show the actor steps' mean (5), not 5 diluted by the critic-only steps."""
    trainer = Trainer(small(algo="td3", policy_delay=3))
    calls = {False: 0, True: 0}

    def fake(actor_step: bool):
        def fn(state, rows: torch.Tensor) -> torch.Tensor:
            assert rows.shape == (4, trainer.buffer.data.shape[1] + 1)  # eps appended
            calls[actor_step] += 1
            return torch.tensor([1.0, 5.0 if actor_step else 0.0, 2.0, 3.0, 2.0, 4.0, 6.0])
        return fn

    trainer.update_fns = {False: fake(False), True: fake(True)}
    result = trainer.train()
    n = result.summary["updates"]
    assert calls[True] == n // 3 and calls[False] == n - n // 3
    ups = result.updates
    assert (ups["updates_in_row"] >= 3).all()  # so every row holds at least one actor step
    assert (ups["actor_loss"] == 5.0).all() and (ups["critic_loss"] == 1.0).all()
    assert (ups["target_min_mean"] == 6.0).all()


def test_ddpg_stays_the_default():
    cfg = Config()
    assert (cfg.algo, cfg.noise, cfg.layer_norm) == ("ddpg", "gaussian", False)
    assert metric_names("ddpg") == METRIC_NAMES and update_columns(metric_names("ddpg")) == UPDATE_COLUMNS
    trainer = Trainer(small())
    assert trainer.metric_names == METRIC_NAMES and set(trainer.update_fns) == {True}
    assert trainer.algo.eps_dim == 0 and trainer.algo.policy_delay == 1
    trainer.env.close()


@pytest.mark.parametrize("bad,flag", [(dict(algo="ppo"), "--algo="), (dict(policy_delay=0), "--policy-delay="),
                                      (dict(noise_clip=-0.1), "--noise-clip="),
                                      (dict(policy_noise=float("nan")), "--policy-noise=")])
def test_bad_td3_config_is_rejected(bad, flag):
    with pytest.raises(ConfigError, match=flag):
        Config(**bad)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (the CPU compile test covers the same math)")
def test_td3_cuda_graphs_match_eager_without_sync():
    dev = torch.device("cuda")
    learner = td3_learner(hidden=(64, 64), device=dev)
    ref = copy.deepcopy(learner)
    buf = ReplayBuffer(1000, 3, 1, dev)
    buf.add(torch.randn(1000, 3, device=dev), torch.rand(1000, 1, device=dev) * 4 - 2, torch.randn(1000, device=dev),
            torch.randn(1000, 3, device=dev), torch.zeros(1000, device=dev))
    fns, eager = learner.update_fns(buf.as_batch, buf.width), ref.update_fns(buf.as_batch, buf.width)
    graphs = {key: compile_update(fn, "default", dev) for key, fn in fns.items()}
    rows = torch.cat([buf.sample_rows(20, 128), torch.randn(20, 128, 1, device=dev)], dim=-1)
    for u in range(1, 11):  # warm-up and capture of both graphs
        key = learner.is_actor_step(u)
        torch.testing.assert_close(graphs[key](learner.state, rows[u - 1]).clone(),
                                   eager[key](ref.state, rows[u - 1]), rtol=1e-4, atol=1e-5)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        outs = [graphs[learner.is_actor_step(u)](learner.state, rows[u - 1]).clone() for u in range(11, 21)]
    finally:
        torch.cuda.set_sync_debug_mode("default")
    for u, out in zip(range(11, 21), outs, strict=True):
        torch.testing.assert_close(out, eager[learner.is_actor_step(u)](ref.state, rows[u - 1]), rtol=1e-4, atol=1e-5)
