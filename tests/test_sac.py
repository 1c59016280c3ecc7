"""SAC against its equations: the tanh log-probability correction against torch.distributions, the soft target,
critic loss, actor loss and temperature loss by hand on a tiny batch, the whole update against a module-and-optimizer
reference in Stable-Baselines3's order, compiled == eager (one agent and a population), exact resume, export of
tanh(mean), bad input, and the trainer, report, TensorBoard, --grid and verify end to end."""

from __future__ import annotations

import copy
import math
import types

import numpy as np
import pandas as pd
import pytest
import torch
import torch._dynamo
from torch.distributions import Normal, TanhTransform, TransformedDistribution

from fastddpg import Config, ConfigError, Trainer, load_run, train
from fastddpg.algos import sac as sac_module
from fastddpg.algos.population import Population
from fastddpg.algos.sac import (
    SAC,
    SAC_METRIC_NAMES,
    SACHyper,
    sac_actor_loss,
    sac_update,
    sample_action,
    soft_target,
    squashed_gaussian_sample,
    temperature_loss,
)
from fastddpg.cli import main
from fastddpg.core.schema import update_columns
from fastddpg.learning.compile import compile_update
from fastddpg.learning.replay import ReplayBuffer
from fastddpg.learning.update import AdamHyper, Batch, critic_loss
from fastddpg.reports.plots import TITLE_OWN_METRICS, figure_title, read_report_figures
from fastddpg.runs.checkpoint import Checkpointer, latest_checkpoint, read_checkpoint
from fastddpg.runs.evaluate import evaluate_run, load_actor
from tests.test_checkpoint import small as checkpoint_small
from tests.test_td3 import filled_buffer, reference_twin_critic_step

CPU = torch.device("cpu")
LOW, HIGH = torch.tensor([-2.0]), torch.tensor([2.0])


def sac_hyper(gamma=0.9, tau=0.05, clip=0.0, actor_lr=1e-3, critic_lr=2e-3) -> SACHyper:
    return SACHyper(gamma, tau, clip, AdamHyper(actor_lr), AdamHyper(critic_lr), AdamHyper(critic_lr))


def sac_learner(obs_dim=2, hidden=(3,), seed=0, init_alpha=0.5, layer_norm=False, **hyper_kw) -> SAC:
    torch.manual_seed(seed)
    return SAC(obs_dim, 1, hidden, LOW, HIGH, CPU, sac_hyper(**hyper_kw), layer_norm, init_alpha=init_alpha)


# --- the tanh correction ------------------------------------------------------------------------------------------

def test_log_prob_equals_the_tanh_transformed_normal():
    """log pi(a) of a = tanh(m + sigma eps) equals TransformedDistribution(Normal(m, sigma), Tanh).log_prob(a),
    summed over the action dims, on values away from +-1 (where the reference's atanh of a is still accurate)."""
    g = torch.Generator().manual_seed(0)
    mean = torch.rand(64, 3, generator=g, dtype=torch.float64) * 2 - 1
    log_std = torch.rand(64, 3, generator=g, dtype=torch.float64) - 1.5
    eps = torch.randn(64, 3, generator=g, dtype=torch.float64).clamp(-2, 2)
    a, log_prob = squashed_gaussian_sample(mean, log_std, eps)
    assert a.abs().max() < 0.99 and log_prob.shape == (64, 1)
    ref = TransformedDistribution(Normal(mean, log_std.exp()), [TanhTransform()])
    torch.testing.assert_close(log_prob, ref.log_prob(a).sum(-1, keepdim=True), rtol=1e-9, atol=1e-9)
    # the correction matters here: the Gaussian's density alone is far off
    assert (log_prob - Normal(mean, log_std.exp()).log_prob(mean + log_std.exp() * eps).sum(-1, keepdim=True)
            ).mean() > 0.1
    # float32, the training dtype: the same within float32 rounding
    _, lp32 = squashed_gaussian_sample(mean.float(), log_std.float(), eps.float())
    torch.testing.assert_close(lp32.double(), log_prob, rtol=1e-5, atol=1e-5)


def test_log_prob_stays_exact_where_tanh_saturates():
    """|u| up to 30: tanh(u) is +-1 in float32, yet log(1 - tanh(u)^2) = log 4 - 2|u| - 2 log(1 + e^(-2|u|)),
    so log pi keeps falling (and keeps its gradient) instead of flattening at log(1e-6)."""
    u = torch.tensor([[-30.0], [-12.0], [0.0], [9.0], [30.0]])
    _, log_prob = squashed_gaussian_sample(u, torch.zeros_like(u), torch.zeros_like(u))
    ud = u.double().abs()
    want = -0.5 * math.log(2 * math.pi) - (math.log(4.0) - 2 * ud - 2 * torch.log1p(torch.exp(-2 * ud)))
    torch.testing.assert_close(log_prob.double(), want, rtol=1e-6, atol=1e-5)
    assert torch.isfinite(log_prob).all() and log_prob[0, 0] > 55  # SB3's epsilon form would give ~12.9


@pytest.mark.parametrize("bias, clamped", [(50.0, 2.0), (-100.0, -20.0)])
def test_log_std_is_clamped_as_sb3(bias, clamped):
    """log sigma beyond [-20, 2] is clamped, for acting and in the update's samples alike."""
    learner = sac_learner()
    with torch.no_grad():
        learner.actor.net[2].bias[1] = bias  # the log sigma output
    obs, eps = torch.randn(4, 2), torch.full((4, 1), 0.1)
    mean, log_std = learner.actor.gaussian(obs)
    assert torch.all(log_std == clamped)
    action, log_prob = sample_action(learner.actor, learner.state["actor"], obs, eps)
    sigma = math.exp(clamped)
    u = mean.double() + sigma * eps.double()  # float64: sigma e^-20 would vanish in float32's m + sigma eps
    torch.testing.assert_close(action.double(), 2.0 * torch.tanh(u))
    want = Normal(mean.double(), sigma).log_prob(u) - torch.log(1 - torch.tanh(u) ** 2)
    torch.testing.assert_close(log_prob.double(), want, rtol=1e-4, atol=1e-4)


# --- the equations by hand on a tiny batch ------------------------------------------------------------------------

def lin(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """nn.Linear's layout: weight (out, in)."""
    return x @ w.T + b


def actor_hand(p: dict, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(m, log sigma) of the 2 -> 3 -> 2 actor: relu hidden, [m | log sigma] out, log sigma clamped to [-20, 2]."""
    out = lin(torch.relu(lin(s, p["net.0.weight"], p["net.0.bias"])), p["net.2.weight"], p["net.2.bias"])
    return out[:, :1], out[:, 1:].clamp(-20.0, 2.0)


def q_hand(p: dict, k: int, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """Critic k of a TwinCritic (stacked layout: weight (K, in, out), bias (K, 1, out))."""
    x = torch.cat([s, a], dim=-1)
    h = torch.relu(x @ p["net.0.weight"][k] + p["net.0.bias"][k])
    return h @ p["net.2.weight"][k] + p["net.2.bias"][k]


def sample_hand(p: dict, s: torch.Tensor, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """a = 2 tanh(u) (bounds [-2, 2]), u = m + sigma eps; log pi = log N(u; m, sigma) - log(1 - tanh(u)^2)."""
    mean, log_std = actor_hand(p, s)
    u = mean + log_std.exp() * eps
    log_prob = Normal(mean, log_std.exp()).log_prob(u) - torch.log(1 - torch.tanh(u) ** 2)
    return 2.0 * torch.tanh(u), log_prob


def double(params: dict) -> dict:
    return {k: v.detach().double() for k, v in params.items()}


def tiny_batch() -> tuple[Batch, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    b = Batch(obs=torch.randn(6, 2, generator=g), action=torch.rand(6, 1, generator=g) * 4 - 2,
              reward=torch.randn(6, 1, generator=g), next_obs=torch.randn(6, 2, generator=g),
              terminated=torch.tensor([[0.0], [0.0], [1.0], [0.0], [0.0], [1.0]]))
    return b, torch.randn(6, 2, generator=g)


def test_soft_target_and_losses_by_hand():
    gamma, alpha, target_entropy = 0.9, 0.5, -1.0
    learner = sac_learner(init_alpha=alpha)
    with torch.no_grad():  # the targets differ from the online critics, so using the wrong ones shows
        for p in learner.state["target_critic"].values():
            p.add_(0.3 * torch.randn_like(p))
    b, eps = tiny_batch()
    eps_next, eps_now = eps[:, :1], eps[:, 1:]
    actor, critic, target = (double(learner.state[n]) for n in ("actor", "critic", "target_critic"))
    bd = Batch(*(t.double() for t in b))

    # y = r + gamma (1 - d) (min_i Q'_i(s', a') - alpha log pi(a'|s')), a' from the online actor at s'
    a2, logp2 = sample_hand(actor, bd.next_obs, eps_next.double())
    qt = torch.stack([q_hand(target, k, bd.next_obs, a2) for k in range(2)])
    want_y = bd.reward + gamma * (1 - bd.terminated) * (qt.amin(0) - alpha * logp2)
    assert set(qt.argmin(0).reshape(-1).tolist()) == {0, 1}  # the min picks each critic somewhere
    y = soft_target(learner.nets, learner.state, b, eps_next, gamma, torch.tensor([alpha]))
    torch.testing.assert_close(y.double(), want_y, rtol=1e-5, atol=1e-5)
    assert y[2, 0] == b.reward[2, 0]  # terminal: no bootstrap

    # L(phi) = sum_i mean (Q_i(s, a) - y)^2
    want_lq = sum(((q_hand(critic, k, bd.obs, bd.action) - want_y) ** 2).mean() for k in range(2))
    lq, _ = critic_loss(learner.critic, learner.state["critic"], b, y)
    torch.testing.assert_close(lq.double(), want_lq, rtol=1e-5, atol=1e-5)

    # L(theta) = mean (alpha log pi(a~|s) - min_i Q_i(s, a~))
    a1, logp1 = sample_hand(actor, bd.obs, eps_now.double())
    q1 = torch.stack([q_hand(critic, k, bd.obs, a1) for k in range(2)]).amin(0)
    want_lpi = (alpha * logp1 - q1).mean()
    lpi, (_, log_prob) = sac_actor_loss(learner.actor, learner.state["actor"], learner.critic,
                                                 learner.state["critic"], b.obs, eps_now, torch.tensor([alpha]))
    torch.testing.assert_close(lpi.double(), want_lpi, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(log_prob.double(), logp1, rtol=1e-5, atol=1e-5)

    # L(log alpha) = -mean(log alpha (log pi + H)); its gradient -mean(log pi + H)
    log_alpha = {"log_alpha": torch.tensor([math.log(alpha)])}
    la, _ = temperature_loss(log_alpha, log_prob, target_entropy)
    torch.testing.assert_close(la.double(), -(math.log(alpha) * (logp1 + target_entropy)).mean(), rtol=1e-5,
                               atol=1e-6)
    grad = torch.func.grad(lambda p: temperature_loss(p, log_prob, target_entropy)[0])(log_alpha)["log_alpha"]
    torch.testing.assert_close(grad.double(), -(logp1 + target_entropy).mean().reshape(1), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("entropy_above_target", [True, False])
def test_alpha_moves_toward_the_target_entropy(entropy_above_target):
    """An entropy above the target lowers alpha, below it raises alpha (Adam's first step: lr times the sign)."""
    learner = sac_learner(init_alpha=1.0, critic_lr=0.01)
    b, eps = tiny_batch()
    buf = ReplayBuffer(1, 2, 1, CPU)
    rows = torch.cat([b.obs, b.action, b.reward, b.next_obs, b.terminated, eps], dim=-1)
    target = -50.0 if entropy_above_target else 50.0  # far below / above any entropy of this policy
    metrics = sac_update(learner.nets, learner.state, buf.as_batch(rows[:, :buf.width]), rows[:, buf.width:],
                         learner.hyper, target)
    log_alpha = float(learner.state["alpha"]["log_alpha"])
    assert log_alpha == pytest.approx(-0.01 if entropy_above_target else 0.01, rel=1e-4)
    assert float(metrics[SAC_METRIC_NAMES.index("alpha")]) == 1.0  # the update used alpha before its step


# --- the whole update against a module-and-optimizer reference -------------------------------------------------

def reference_sac_update(m: dict, opts: dict, log_alpha: torch.Tensor, b: Batch, eps: torch.Tensor, gamma: float,
                         tau: float, clip: float, target_entropy: float) -> torch.Tensor:
    """SB3's SAC.train for one gradient step, with modules, .backward() and torch.optim.Adam (the critic loss summed
    over the critics, not halved, as fastddpg's: Adam gives the same step either way up to its eps; the gradient
    clipping, off in SB3, per network as fastddpg's)."""
    eps_next, eps_now = eps.chunk(2, dim=-1)

    def sample(s, e):
        out = m["actor"](s)
        mean, log_std = out[:, :1], out[:, 1:].clamp(-20, 2)
        u = mean + log_std.exp() * e
        log_prob = Normal(mean, log_std.exp()).log_prob(u) - torch.log(1 - torch.tanh(u) ** 2)
        return 2.0 * torch.tanh(u), log_prob

    actions_pi, log_prob = sample(b.obs, eps_now)
    alpha = log_alpha.detach().exp()
    alpha_loss = -(log_alpha * (log_prob + target_entropy).detach()).mean()
    opts["alpha"].zero_grad()
    alpha_loss.backward()
    opts["alpha"].step()
    with torch.no_grad():
        next_actions, next_log_prob = sample(b.next_obs, eps_next)
        next_q = torch.min(m["target_c1"](b.next_obs, next_actions), m["target_c2"](b.next_obs, next_actions))
        y = b.reward + (1 - b.terminated) * gamma * (next_q - alpha * next_log_prob)
    loss_q, q1, _ = reference_twin_critic_step(m, opts["critic"], b, y, clip)
    q_pi = torch.min(m["c1"](b.obs, actions_pi), m["c2"](b.obs, actions_pi))
    loss_pi = (alpha * log_prob - q_pi).mean()
    opts["actor"].zero_grad()
    loss_pi.backward()
    torch.nn.utils.clip_grad_norm_(m["actor"].parameters(), clip)
    opts["actor"].step()
    with torch.no_grad():
        for online, target in (("c1", "target_c1"), ("c2", "target_c2")):
            for p, pt in zip(m[online].parameters(), m[target].parameters(), strict=True):
                pt.mul_(1 - tau).add_(tau * p)
    return torch.stack([loss_q.detach() / 2, loss_pi.detach(), q1.detach().mean(), y.mean(), alpha.reshape(()),
                        -log_prob.detach().mean()])


def test_sac_update_matches_the_reference_formulation():
    gamma, tau, clip, lr = 0.95, 0.05, 0.5, 3e-3
    learner = sac_learner(obs_dim=3, hidden=(32, 32), init_alpha=0.3, gamma=gamma, tau=tau, clip=clip,
                          actor_lr=lr, critic_lr=lr)
    with torch.no_grad():
        for p in learner.state["target_critic"].values():
            p.add_(0.05 * torch.randn_like(p))
    m = {"actor": copy.deepcopy(learner.actor.net), "c1": learner.critic.member(0), "c2": learner.critic.member(1),
         "target_c1": learner.target_critic.member(0), "target_c2": learner.target_critic.member(1)}
    for mod in m.values():
        for p in mod.parameters():
            p.requires_grad_(True)
    log_alpha = torch.tensor([math.log(0.3)], requires_grad=True)
    opts = {"actor": torch.optim.Adam(m["actor"].parameters(), lr=lr),
            "critic": torch.optim.Adam([*m["c1"].parameters(), *m["c2"].parameters()], lr=lr),
            "alpha": torch.optim.Adam([log_alpha], lr=lr)}
    g = torch.Generator().manual_seed(1)
    for u in range(1, 9):
        b = Batch(torch.randn(64, 3, generator=g), torch.rand(64, 1, generator=g) * 4 - 2,
                  torch.randn(64, 1, generator=g), torch.randn(64, 3, generator=g),
                  (torch.rand(64, 1, generator=g) < 0.2).float())
        eps = torch.randn(64, 2, generator=g)
        got = sac_update(learner.nets, learner.state, b, eps, learner.hyper, -1.0)
        want = reference_sac_update(m, opts, log_alpha, b, eps, gamma, tau, clip, -1.0)
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5, msg=f"metrics of update {u}")
    pairs = [(learner.actor.net, m["actor"]), (learner.critic.member(0), m["c1"]),
             (learner.critic.member(1), m["c2"]), (learner.target_critic.member(0), m["target_c1"]),
             (learner.target_critic.member(1), m["target_c2"])]
    for mine, ref in pairs:
        for (k, v), v_ref in zip(mine.state_dict().items(), ref.state_dict().values(), strict=True):
            torch.testing.assert_close(v, v_ref.detach(), rtol=1e-4, atol=1e-5, msg=k)
    torch.testing.assert_close(learner.state["alpha"]["log_alpha"], log_alpha.detach(), rtol=1e-5, atol=1e-6)
    assert [int(learner.state["optim"][g]["step"]) for g in ("actor", "critic", "alpha")] == [8, 8, 8]
    torch.testing.assert_close(learner.state["optim"]["alpha"]["exp_avg_sq"][0],
                               opts["alpha"].state[log_alpha]["exp_avg_sq"], rtol=1e-4, atol=1e-10)


# --- compiled == eager ---------------------------------------------------------------------------------------------

def assert_same_state(a, b, rtol=1e-5, atol=1e-6) -> None:
    for name, m in a.modules().items():
        for k, v in m.state_dict().items():
            torch.testing.assert_close(b.modules()[name].state_dict()[k], v, rtol=rtol, atol=atol, msg=f"{name}.{k}")
    for group, opt in a.state["optim"].items():
        torch.testing.assert_close(b.state["optim"][group]["step"], opt["step"])
        for x, y in zip(opt["exp_avg"] + opt["exp_avg_sq"], b.state["optim"][group]["exp_avg"]
                        + b.state["optim"][group]["exp_avg_sq"], strict=True):
            torch.testing.assert_close(y, x, rtol=rtol, atol=atol, msg=group)


@pytest.mark.parametrize("members", [pytest.param(1, marks=pytest.mark.slow), 3])  # 1: also verify's, below
def test_compiled_sac_equals_eager(members):
    """fullgraph, compiled once (error_on_recompile), eager's numbers and state: one agent, and a population of 3
    with per-member hyperparameters and initial temperatures."""
    torch._dynamo.reset()
    singles = [sac_learner(obs_dim=3, hidden=(16, 16), seed=k, init_alpha=(1.0, 0.2, 0.05)[k], layer_norm=True,
                           gamma=(0.99, 0.9, 0.5)[k], tau=(0.005, 0.05, 0.2)[k], clip=(0.0, 0.5, 10.0)[k])
               for k in range(members)]
    eager = singles[0] if members == 1 else Population(singles)
    comp = copy.deepcopy(eager)
    buf = filled_buffer()
    g = torch.Generator().manual_seed(2)
    lead = (6, 32) if members == 1 else (6, members, 32)
    rows = torch.cat([buf.data[torch.randint(0, 500, lead, generator=g)], torch.randn(*lead, 2, generator=g)], -1)
    (f_eager,) = eager.update_fns(buf.as_batch, buf.width).values()
    (f_comp,) = (compile_update(fn, "default", CPU) for fn in comp.update_fns(buf.as_batch, buf.width).values())
    with torch._dynamo.config.patch(error_on_recompile=True):
        for u in range(6):
            torch.testing.assert_close(f_comp(comp.state, rows[u]), f_eager(eager.state, rows[u]), rtol=1e-5,
                                       atol=1e-6, msg=f"update {u + 1}")
    assert_same_state(eager, comp)


# --- population == K singles, acting ------------------------------------------------------------------------------

def test_population_acting_samples_each_members_policy():
    singles = [sac_learner(obs_dim=3, hidden=(8,), seed=k) for k in range(3)]
    pop = Population(singles)
    obs, noise = torch.randn(15, 3), torch.randn(15, 1)
    want = torch.cat([m.explore(obs[5 * k:5 * k + 5], noise[5 * k:5 * k + 5]) for k, m in enumerate(singles)])
    torch.testing.assert_close(pop.explore(obs, noise), want, rtol=1e-6, atol=1e-6)
    want = torch.cat([m.policy(obs[5 * k:5 * k + 5]) for k, m in enumerate(singles)])
    torch.testing.assert_close(pop.policy(obs), want, rtol=1e-6, atol=1e-6)
    # acting samples: the noise moves the action, inside the bounds
    single = singles[0]
    a = single.explore(obs, torch.randn(15, 1) * 3)
    assert not torch.allclose(a, single.policy(obs)) and (a.abs() <= 2.0).all()


# --- config, trainer, files ------------------------------------------------------------------------------------------

def small(**kw) -> Config:
    """test_checkpoint's small run (the counting env, tiny networks, eager), with SAC."""
    return checkpoint_small(**{"algo": "sac", "quiet": True, **kw})


@pytest.mark.parametrize("args, flag", [(["--noise", "ou"], "--noise="), (["--noise-sigma", "0.2"], "--noise-sigma="),
                                        (["--ou-theta", "0.3"], "--ou-theta="),
                                        (["--grid", "noise_sigma=0.1,0.3"], "--noise-sigma="),
                                        (["--init-alpha", "0"], "--init-alpha=")])
def test_bad_sac_input_is_one_line_exit_2(args, flag, capsys):
    assert main(["run", "--algo", "sac", "--total-steps", "10", *args]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("fastddpg: error:") and flag in lines[0], lines
    if "init-alpha" not in flag:
        assert "--algo sac explores by sampling its own Gaussian policy" in lines[0]
    with pytest.raises(ConfigError, match="--noise="):
        Config(algo="sac", noise="ou")
    Config(algo="ddpg", noise="ou")  # a deterministic actor takes it


def test_trainer_sac_end_to_end():
    trainer = Trainer(small(layer_norm=True))
    result = trainer.train()
    n = result.summary["updates"]
    assert n > 0 and [int(trainer.algo.state["optim"][g]["step"]) for g in ("actor", "critic", "alpha")] == [n] * 3
    assert list(result.updates.columns) == list(update_columns(SAC_METRIC_NAMES))
    ups = result.updates
    assert ups[list(SAC_METRIC_NAMES)].notna().all().all() and (ups["alpha"] > 0).all()
    assert ups["alpha"].iloc[-1] != 1.0  # learned from its initial 1.0
    assert len(result.probes) > 0 and result.probes["q"].notna().all()
    assert set(trainer.algo.module_names) == {"actor", "critic", "target_critic", "alpha"}


def test_fastddpg_run_sac_writes_its_metrics_report_and_tensorboard(tmp_path):
    pytest.importorskip("tensorboard")
    from fastddpg.runs.tensorboard import read_scalars

    run = tmp_path / "run"
    assert main(["run", "--algo", "sac", "--env", "Pendulum-v1", "--num-envs", "2", "--total-steps", "200",
                 "--start-steps", "100", "--update-after", "100", "--batch-size", "32", "--hidden-sizes", "16",
                 "--log-every", "100", "--device", "cpu", "--compile", "off", "--quiet", "--tensorboard",
                 "--run-dir", str(run)]) == 0
    header = (run / "updates.csv").read_text().splitlines()[0].split(",")
    assert {"alpha", "entropy"} <= set(header)
    figs = {figure_title(f): f for f in read_report_figures(run / "report.html")}
    own = figs[TITLE_OWN_METRICS]
    assert {t["name"] for t in own["data"]} == {"alpha", "entropy"}
    tags = set(read_scalars(run)["tag"])
    assert {"losses/alpha", "losses/entropy"} <= tags
    assert math.isfinite(evaluate_run(run, episodes=1, seed=0).mean)


def test_sac_grid_and_seeds_train_as_one_population(tmp_path):
    cfg = small(num_seeds=2, grid=("init_alpha=0.1,1.0", "critic_lr=1e-3,3e-3"), total_steps=60,
                run_dir=str(tmp_path / "g"))
    assert cfg.num_members == 8
    result = train(cfg)
    assert result.algo.hyper.alpha.lr.tolist() == pytest.approx([1e-3, 1e-3, 3e-3, 3e-3] * 2)
    ups = result.updates
    first = ups[ups["update"] == ups["update"].min()].set_index("member")["alpha"]
    assert (first[[0, 1, 2, 3]] < 0.11).all() and (first[[4, 5, 6, 7]] > 0.9).all()
    members = pd.read_csv(tmp_path / "g" / "members.csv")
    assert members["init_alpha"].tolist() == pytest.approx([0.1] * 4 + [1.0] * 4)


# --- checkpoints, resume, export ----------------------------------------------------------------------------------

def test_checkpoint_holds_alpha_and_its_adam_state(tmp_path):
    """The trained temperature and its Adam state are in the checkpoint (that a restored trainer then trains on
    bit-identically is tests/test_checkpoint.py's, parametrized with SAC)."""
    trainer = Trainer(small(total_steps=60), checkpointer=Checkpointer(tmp_path))
    trainer.train()
    saved = read_checkpoint(latest_checkpoint(tmp_path))["trainer"]
    assert torch.equal(saved["modules"]["alpha"]["log_alpha"], trainer.algo.alpha.log_alpha)
    assert float(saved["modules"]["alpha"]["log_alpha"]) != 0  # learned: it started at log 1 = 0
    opt = trainer.algo.state["optim"]["alpha"]
    assert float(saved["optimizers"]["alpha"]["step"]) == float(opt["step"]) == trainer.num_updates > 0
    assert torch.equal(saved["optimizers"]["alpha"]["exp_avg_sq"][0], opt["exp_avg_sq"][0])

@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
def test_export_is_the_deterministic_policy(tmp_path, capsys):
    run = tmp_path / "run"
    result = train(small(env="Pendulum-v1", num_envs=2, total_steps=200, start_steps=50, run_dir=str(run)))
    obs = torch.randn(64, 3, generator=torch.Generator().manual_seed(0)) * 5
    with torch.no_grad():
        mean, _ = result.algo.actor.gaussian(obs)
        want = (2.0 * torch.tanh(mean)).numpy()  # tanh(mean), scaled to Pendulum's [-2, 2]
        np.testing.assert_allclose(result.algo.policy(obs).numpy(), want, rtol=0, atol=1e-6)
        np.testing.assert_allclose(load_actor(run)[0](obs).numpy(), want, rtol=0, atol=1e-6)
    assert np.abs(want).max() > 1.0
    assert main(["export", str(run), "--format", "torchscript"]) == 0
    np.testing.assert_allclose(torch.jit.load(str(run / "actor.ts.pt"))(obs).numpy(), want, rtol=0, atol=1e-5)
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    assert main(["export", str(run), "--format", "onnx"]) == 0
    session = ort.InferenceSession(str(run / "actor.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"obs": obs.numpy()})[0], want, rtol=0, atol=1e-5)
    capsys.readouterr()


def test_population_policy_of_a_member_is_rebuilt(tmp_path):
    run = tmp_path / "pop"
    result = train(small(num_seeds=2, total_steps=60, run_dir=str(run)))
    obs = torch.randn(5, 3)
    for k in range(2):
        actor, _ = load_actor(run, member=k)
        with torch.no_grad():
            torch.testing.assert_close(actor(obs), result.algo.member(k).policy(obs))
    assert load_run(run).config.algo == "sac"


# --- verify -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("num_seeds", [1, pytest.param(3, marks=pytest.mark.slow)])  # 3: also the compile test's
def test_verify_sac_passes_on_cpu(num_seeds):
    from fastddpg.tools.verify import VerifyOptions, format_report, run_verify

    torch._dynamo.reset()
    report = run_verify(VerifyOptions(device="cpu", algo="sac", num_seeds=num_seeds, updates=6, batch_size=32,
                                      hidden_sizes=(16, 16), timed_updates=2, repeats=1))
    assert report["passed"], format_report(report)
    assert [p["name"] for p in report["update_paths"]] == ["eager", "compiled"]
    assert [p["name"] for p in report["acting_paths"]] == ["eager", "compiled"]


def patched_sac(**patch) -> dict:
    """fastddpg.algos.sac's functions, rebuilt over a copy of its namespace with ``patch`` applied: an injected
    bug that the honest code (the eager path) does not see."""
    ns = dict(sac_module.__dict__)
    for name, obj in list(ns.items()):
        if isinstance(obj, types.FunctionType) and obj.__module__ == sac_module.__name__:
            ns[name] = types.FunctionType(obj.__code__, ns, obj.__name__, obj.__defaults__, obj.__closure__)
    ns.update(patch)
    return ns


def broken_sac(**patch):
    """A verify path: SAC's update with an injected bug (`patched_sac`)."""
    ns = patched_sac(**patch)

    def make(setup, learner):
        width, target_entropy = setup.buffer.width, -float(learner.act_dim)

        def step(rows: torch.Tensor) -> torch.Tensor:
            return ns["sac_update"](learner.nets, learner.state, setup.buffer.as_batch(rows), rows[..., width:],
                                    learner.hyper, target_entropy)
        return {True: step}
    return make


@pytest.mark.parametrize("num_seeds", [1, 3])
@pytest.mark.parametrize("bug", ["alpha_gradient_sign", "no_tanh_correction"])
def test_verify_catches_an_injected_sac_bug(bug, num_seeds):
    from fastddpg.tools.verify import VerifyOptions, eager_path, format_report, run_verify

    patch = {"alpha_gradient_sign": dict(temperature_loss=lambda p, lp, h: tuple(
                 -x for x in sac_module.temperature_loss(p, lp, h))),
             "no_tanh_correction": dict(tanh_log_det=torch.zeros_like)}[bug]
    report = run_verify(VerifyOptions(device="cpu", algo="sac", num_seeds=num_seeds, updates=10, batch_size=32,
                                      hidden_sizes=(16, 16), timed_updates=1, repeats=1, acting=False),
                        paths={"eager": eager_path, "broken": broken_sac(**patch)})
    bad = report["update_paths"][1]
    assert report["update_paths"][0]["passed"] and not bad["passed"] and not report["passed"]
    assert bad["worst_excess"] > 5, format_report(report)
    assert f"FAIL broken: {bad['worst_tensor']} differs from eager" in format_report(report)


def test_pendulum_sac_config_holds_the_zoo_and_sb3_values():
    from pathlib import Path

    from fastddpg.core.configfile import load_config_file

    cfg = Config(**load_config_file(Path(__file__).resolve().parent.parent / "configs" / "pendulum_sac.toml"))
    assert (cfg.algo, cfg.env, cfg.total_steps, cfg.num_envs) == ("sac", "Pendulum-v1", 20_000, 1)
    assert (cfg.actor_lr, cfg.critic_lr, cfg.batch_size, cfg.replay_size) == (1e-3, 1e-3, 256, 1_000_000)
    assert (cfg.start_steps, cfg.update_after, cfg.updates_per_step) == (100, 100, 1.0)
    assert (cfg.tau, cfg.gamma, cfg.hidden_sizes, cfg.grad_clip_norm, cfg.init_alpha) == (0.005, 0.99, (256, 256),
                                                                                            0.0, 1.0)
