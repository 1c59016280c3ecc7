"""CrossQ against its equations: BatchRenorm against torchrl's layer (where torchrl is installed) and against the
equations by hand in float64, across the warm-up; the joint critic forward's statistics over both halves; the critic,
actor and temperature losses by hand; compiled == eager; a population == K singles (BatchRenorm statistics per
member) with independent members; exact resume; export of tanh(mean) with BatchRenorm in eval mode; bad input; the
trainer, the CLI, --grid and verify end to end, and verify catching BatchRenorm left in training mode when acting."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch._dynamo

from fastddpg import Config, ConfigError, train
from fastddpg.algos import crossq as cq
from fastddpg.algos.crossq import (
    CrossQ,
    RenormLinear,
    crossq_actor_loss,
    crossq_critic_loss,
    renorm_forward,
    running_stats,
)
from fastddpg.algos.population import Population
from fastddpg.algos.sac import SAC_METRIC_NAMES, SACHyper, sample_action
from fastddpg.cli import main
from fastddpg.learning.compile import compile_update
from fastddpg.learning.update import AdamHyper, Batch
from fastddpg.runs.evaluate import load_actor
from tests.test_checkpoint import small as checkpoint_small
from tests.test_td3 import filled_buffer

CPU = torch.device("cpu")
LOW, HIGH = torch.tensor([-2.0]), torch.tensor([2.0])


def crossq_hyper(gamma=0.9, clip=0.0, actor_lr=1e-3, critic_lr=2e-3) -> SACHyper:
    return SACHyper(gamma, 0.005, clip, AdamHyper(actor_lr, cq.ADAM_BETAS), AdamHyper(critic_lr, cq.ADAM_BETAS),
                    AdamHyper(critic_lr))


def learner(obs_dim=3, hidden=(8, 6), width=8, seed=0, init_alpha=0.5, policy_delay=1, warmup=2, momentum=0.1,
            **hyper_kw) -> CrossQ:
    torch.manual_seed(seed)
    return CrossQ(obs_dim, 1, hidden, LOW, HIGH, CPU, crossq_hyper(**hyper_kw), policy_delay=policy_delay,
                  init_alpha=init_alpha, critic_width=width, renorm_momentum=momentum, renorm_warmup=warmup)


def random_batch(gen: torch.Generator, n=16, obs_dim=3, lead=()) -> Batch:
    return Batch(torch.randn(*lead, n, obs_dim, generator=gen), 2 * torch.rand(*lead, n, 1, generator=gen) - 1,
                 torch.randn(*lead, n, 1, generator=gen), 2 + torch.randn(*lead, n, obs_dim, generator=gen),
                 (torch.rand(*lead, n, 1, generator=gen) < 0.3).float())


# --- Batch Renormalization ---------------------------------------------------------------------------------------

def renorm_by_hand(x, scale, shift, mean, var, steps, momentum, warmup, eps):
    """sb3-contrib's BatchRenorm (sb3_contrib/common/torch_layers.py), written out per feature in float64 numpy from
    its equations: x (N, w) -> (y, new mean, new var)."""
    m_b, v_b = x.mean(axis=0), x.var(axis=0, ddof=1)
    if steps > warmup:
        run_std = np.sqrt(var + eps)
        r = np.clip(np.sqrt(v_b + eps) / run_std, 1 / 3, 3)
        d = np.clip((m_b - mean) / run_std, -5, 5)
        m, v = m_b - d * np.sqrt(v_b) / r, v_b / r**2
    else:
        m, v = m_b, v_b
    y = scale * (x - m) / np.sqrt(v + eps) + shift
    return y, mean + momentum * (m_b - mean), var + momentum * (v_b - var)


def test_batch_renorm_equals_its_equations_by_hand_across_the_warmup():
    """Training forwards 1..6 with warm-up 3 (renormalising from the 4th, with r and d clipped: the batches are
    shifted and scaled away from the running statistics), then eval mode, against `renorm_by_hand`."""
    torch.manual_seed(0)
    layer = RenormLinear(1, 4, 2, momentum=0.1, warmup=3).double().train()
    with torch.no_grad():
        layer.scale.copy_(torch.rand(1, 1, 4) + 0.5)
        layer.shift.copy_(torch.randn(1, 1, 4))
    mean, var = np.zeros(4), np.ones(4)
    g = torch.Generator().manual_seed(1)
    clipped = False
    for step in range(6):
        x = torch.randn(32, 4, generator=g, dtype=torch.float64) * torch.tensor([0.1, 1.0, 4.0, 20.0]) + 3.0 * step
        want, mean_w, var_w = renorm_by_hand(x.numpy(), layer.scale[0, 0].detach().numpy(),
                                             layer.shift[0, 0].detach().numpy(), mean, var, step, 0.1, 3, 1e-3)
        if step > 3:
            run_std = np.sqrt(var + 1e-3)
            r = np.sqrt(x.numpy().var(axis=0, ddof=1) + 1e-3) / run_std
            clipped |= bool((r > 3).any() or (r < 1 / 3).any())
        y, new_mean, new_var = cq.batch_renorm(x[None], layer.scale, layer.shift, layer.ra_mean, layer.ra_var,
                                               layer.steps, 0.1, 3.0, True)
        np.testing.assert_allclose(y[0].detach().numpy(), want, rtol=1e-10, atol=1e-10)
        layer(x[None])  # the module's training forward: writes the same statistics
        mean, var = mean_w, var_w
        np.testing.assert_allclose(layer.ra_mean[0, 0].numpy(), mean, rtol=1e-12)
        np.testing.assert_allclose(layer.ra_var[0, 0].numpy(), var, rtol=1e-12)
        torch.testing.assert_close(new_mean, layer.ra_mean)
        torch.testing.assert_close(new_var, layer.ra_var)
    assert clipped and float(layer.steps) == 6
    x = torch.randn(8, 4, generator=g, dtype=torch.float64)
    layer.eval()
    y, *_ = cq.batch_renorm(x[None], layer.scale, layer.shift, layer.ra_mean, layer.ra_var, layer.steps, 0.1, 3.0,
                            False)
    want = layer.scale[0, 0] * (x - layer.ra_mean[0, 0]) / (layer.ra_var[0, 0] + 1e-3).sqrt() + layer.shift[0, 0]
    torch.testing.assert_close(y[0], want)
    before = layer.ra_mean.clone()
    layer(x[None])
    assert torch.equal(layer.ra_mean, before) and float(layer.steps) == 6  # eval: no update


def test_batch_renorm_equals_torchrls_layer():
    """torchrl's BatchRenorm1d on the same inputs, train and eval, across the warm-up. Its formulation differs from
    sb3-contrib's (which fastddpg follows) in three places the test aligns or bounds: eps (set to 1e-9 in both),
    the switch (torchrl renormalises from the warmup-th forward, sb3-contrib after it: torchrl gets warmup + 1),
    and the training normalisation (torchrl: the biased batch variance; sb3-contrib: the unbiased one; a relative
    difference of about 1/(2N) on N = 4096 rows)."""
    torchrl_modules = pytest.importorskip("torchrl.modules")
    torch.manual_seed(0)
    ref = torchrl_modules.BatchRenorm1d(5, momentum=0.1, eps=1e-9, warmup_steps=4).double()
    mine = RenormLinear(1, 5, 1, momentum=0.1, warmup=3).double().train()
    with torch.no_grad():
        for p in (ref.weight, ref.bias):
            p.copy_(torch.randn(5))
        mine.scale.copy_(ref.weight[None, None])
        mine.shift.copy_(ref.bias[None, None])
    g = torch.Generator().manual_seed(3)
    for step in range(7):
        x = torch.randn(4096, 5, generator=g, dtype=torch.float64) * (1 + step) + 0.5 * step
        want = ref(x)
        got, new_mean, new_var = cq.batch_renorm(x[None], mine.scale, mine.shift, mine.ra_mean, mine.ra_var,
                                                 mine.steps, 0.1, 3.0, True, eps=1e-9)
        with torch.no_grad():
            mine.ra_mean.copy_(new_mean)
            mine.ra_var.copy_(new_var)
            mine.steps.add_(1.0)
        torch.testing.assert_close(got[0], want, rtol=1e-3, atol=1e-3, msg=f"training forward {step + 1}")
        torch.testing.assert_close(mine.ra_mean[0, 0], ref.running_mean, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(mine.ra_var[0, 0], ref.running_var, rtol=1e-10, atol=1e-10)
    ref.eval()
    mine.eval()
    x = torch.randn(64, 5, generator=g, dtype=torch.float64)
    got, _, _ = cq.batch_renorm(x[None], mine.scale, mine.shift, mine.ra_mean, mine.ra_var, mine.steps, 0.1, 3.0,
                                False, eps=1e-9)
    torch.testing.assert_close(got[0], ref(x), rtol=1e-10, atol=1e-10)


def test_a_dead_unit_gives_finite_gradients():
    """A feature constant over the batch (v_B = 0, a dead ReLU) in the warm-up: the unselected renorm branch's sqrt
    must not turn the gradient into nan."""
    x = torch.randn(1, 16, 3).requires_grad_()
    with torch.no_grad():
        x[..., 1] = 0.0
    layer = RenormLinear(1, 3, 2, 0.01, 5)
    y, *_ = cq.batch_renorm(x, layer.scale, layer.shift, layer.ra_mean, layer.ra_var, layer.steps, 0.01, 5.0, True)
    y.sum().backward()
    assert torch.isfinite(x.grad).all()


# --- the joint forward and the losses ------------------------------------------------------------------------------

def test_joint_critic_forward_normalises_with_both_halves():
    """The critic's training forward runs over [s; s'] at once: the first BatchRenorm's new running mean is the
    momentum step toward the mean over all 2B rows, and Q(s, a) differs from a forward over the B rows of (s, a)
    alone (the next states are shifted by 2, so the two halves' statistics differ)."""
    algo = learner()
    gen = torch.Generator().manual_seed(0)
    batch = random_batch(gen)
    eps = torch.randn(16, 1, generator=gen)
    next_action, next_lp = sample_action(algo.actor, algo.state["actor"], batch.next_obs, eps)
    alpha = algo.alpha()
    _, (_, q, _, stats) = crossq_critic_loss(algo.critic, algo.state["critic"], batch, next_action, next_lp, alpha,
                                             0.9)
    x = torch.cat([torch.cat([batch.obs, batch.action], -1), torch.cat([batch.next_obs, next_action], -1)])
    torch.testing.assert_close(stats[0], (0.1 * x.mean(0)).expand(2, 1, 4))  # ra_mean of layer 0, both critics
    torch.testing.assert_close(stats[1], (0.9 + 0.1 * x.var(0)).expand(2, 1, 4))
    alone, _ = renorm_forward(algo.critic.net, algo.state["critic"], algo.critic.rows(batch.obs, batch.action),
                              prefix="net.")
    assert (q - alone).abs().max() > 1e-2
    # the same numbers as the modules in training mode on the concatenation (sb3-contrib's formulation)
    critic = copy.deepcopy(algo.critic).train()
    with torch.no_grad():
        q_train = critic(torch.cat([batch.obs, batch.next_obs]), torch.cat([batch.action, next_action]))
    torch.testing.assert_close(q, q_train[:, :16])
    torch.testing.assert_close(critic.net.layers[0].ra_mean, stats[0])


def test_critic_actor_and_temperature_losses_by_hand():
    algo = learner(init_alpha=0.3)
    with torch.no_grad():  # log sigma about -3: log pi ~ +2, the entropy below the target -1, alpha must rise
        algo.actor.net.layers[-1].bias[..., 1:] = -3.0
    gen = torch.Generator().manual_seed(1)
    batch = random_batch(gen)
    eps_next, eps_now = torch.randn(16, 1, generator=gen), torch.randn(16, 1, generator=gen)
    alpha = algo.alpha()
    next_action, next_lp = sample_action(algo.actor, algo.state["actor"], batch.next_obs, eps_next)
    critic = copy.deepcopy(algo.critic).train()
    with torch.no_grad():
        q_all = critic(torch.cat([batch.obs, batch.next_obs]), torch.cat([batch.action, next_action]))
    q, q_next = q_all[:, :16], q_all[:, 16:]
    y = batch.reward + 0.9 * (1 - batch.terminated) * (torch.minimum(q_next[0], q_next[1]) - 0.3 * next_lp)
    want = ((q[0] - y) ** 2).mean() + ((q[1] - y) ** 2).mean()
    loss, (per_critic, _, y_got, _) = crossq_critic_loss(algo.critic, algo.state["critic"], batch, next_action,
                                                         next_lp, alpha, 0.9)
    torch.testing.assert_close(loss, want)
    torch.testing.assert_close(y_got, y)
    torch.testing.assert_close(per_critic, torch.stack([((q[i] - y) ** 2).mean() for i in range(2)]))
    # actor: sampled in training mode (batch statistics), critics in eval mode
    actor = copy.deepcopy(algo.actor).train()
    mean, log_std = actor.gaussian(batch.obs)
    u = mean + log_std.exp() * eps_now
    normal = torch.distributions.Normal(mean, log_std.exp())
    log_prob = (normal.log_prob(u) - torch.log(1 - torch.tanh(u) ** 2)).sum(-1, keepdim=True)
    with torch.no_grad():
        q_pi = algo.critic(batch.obs, 2 * torch.tanh(u))
    want_actor = (0.3 * log_prob - torch.minimum(q_pi[0], q_pi[1])).mean()
    loss_pi, (_, lp_got, stats) = crossq_actor_loss(algo.actor, algo.state["actor"], algo.critic,
                                                    algo.state["critic"], batch.obs, eps_now, alpha)
    torch.testing.assert_close(loss_pi, want_actor, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(lp_got, log_prob.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(stats[0], actor.net.layers[0].ra_mean)
    # the temperature: one Adam step on L = -mean(log alpha (log pi + H)), H = -1: its first step moves log alpha
    # by lr against the sign of the gradient -mean(log pi + H)
    rows = torch.cat([batch.obs, batch.action, batch.reward, batch.next_obs, batch.terminated, eps_next, eps_now], -1)
    buf = filled_buffer()
    before = float(algo.alpha.log_alpha)
    metrics = algo.update_fns(buf.as_batch, buf.width)[True](algo.state, rows)
    grad = -float((log_prob + (-1.0)).mean())
    assert grad < 0  # (the temperature rises: a sign error in its loss or its log pi would lower it)
    assert float(algo.alpha.log_alpha) == pytest.approx(before - 2e-3 * np.sign(grad), abs=1e-7)
    names = dict(zip(SAC_METRIC_NAMES, metrics.tolist(), strict=True))
    assert names["entropy"] == pytest.approx(-float(log_prob.mean()), abs=1e-5)
    assert names["alpha"] == pytest.approx(0.3)  # (actor_loss: on the critics after their step, not these)
    assert names["critic_loss"] == pytest.approx(float(want) / 2, rel=1e-5)


def test_critic_only_updates_leave_the_actor_and_alpha_alone():
    algo = learner(policy_delay=3)
    buf = filled_buffer()
    fns = algo.update_fns(buf.as_batch, buf.width)
    assert set(fns) == {False, True} and [algo.is_actor_step(u) for u in (1, 2, 3)] == [False, False, True]
    rows = torch.cat([buf.data[:32], torch.randn(32, 2)], -1)
    actor, alpha, critic = (copy.deepcopy(algo.state[n]) for n in ("actor", "alpha", "critic"))
    stats = [t.clone() for t in running_stats(algo.critic.net)]
    actor_stats = [t.clone() for t in running_stats(algo.actor.net)]
    metrics = fns[False](algo.state, rows)
    assert all(torch.equal(v, algo.state["actor"][k]) for k, v in actor.items())
    assert torch.equal(alpha["log_alpha"], algo.state["alpha"]["log_alpha"])
    assert not torch.equal(critic["net.layers.0.weight"], algo.state["critic"]["net.layers.0.weight"])
    assert not torch.equal(stats[0], running_stats(algo.critic.net)[0])  # the critic's statistics moved
    assert all(torch.equal(a, b) for a, b in zip(actor_stats, running_stats(algo.actor.net), strict=True))
    assert metrics[1] == 0 and metrics[5] == 0  # actor_loss, entropy: no actor step


# --- compiled == eager, populations ---------------------------------------------------------------------------------

def update_rows(members: int, n: int = 5, seed: int = 2) -> tuple[torch.Tensor, object]:
    buf = filled_buffer()
    g = torch.Generator().manual_seed(seed)
    lead = (n, 32) if members == 1 else (n, members, 32)
    return torch.cat([buf.data[torch.randint(0, 500, lead, generator=g)], torch.randn(*lead, 2, generator=g)], -1), buf


def all_tensors(algo) -> dict[str, torch.Tensor]:
    out = {f"{n}.{k}": v for n, m in algo.modules().items() for k, v in m.state_dict().items()}
    for g, opt in algo.state["optim"].items():
        out.update({f"{g}.m{i}": t for i, t in enumerate(opt["exp_avg"] + opt["exp_avg_sq"])})
    return out


# a population of 2 compiles its own two graphs (~50 s of a cold 2-core compile): slow; one member stays in the
# default suite, and a compiled population is checked there by test_population (TD3)
@pytest.mark.parametrize("members", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_compiled_crossq_equals_eager(members):
    """fullgraph, one graph per update kind (error_on_recompile), eager's metrics, parameters and running
    statistics, over the warm-up (2) into renormalisation."""
    torch._dynamo.reset()
    singles = [learner(seed=k, init_alpha=(1.0, 0.2)[k], policy_delay=2, gamma=(0.99, 0.9)[k]) for k in range(members)]
    eager = singles[0] if members == 1 else Population(singles)
    comp = copy.deepcopy(eager)
    rows, buf = update_rows(members, n=6)
    f_eager = eager.update_fns(buf.as_batch, buf.width)
    f_comp = {k: compile_update(fn, "default", CPU) for k, fn in comp.update_fns(buf.as_batch, buf.width).items()}
    with torch._dynamo.config.patch(error_on_recompile=True):
        for u in range(1, 7):
            step = eager.is_actor_step(u)
            torch.testing.assert_close(f_comp[step](comp.state, rows[u - 1]), f_eager[step](eager.state, rows[u - 1]),
                                       rtol=1e-5, atol=1e-6, msg=f"update {u}")
    want = all_tensors(eager)
    for name, t in all_tensors(comp).items():
        torch.testing.assert_close(t, want[name], rtol=1e-5, atol=1e-6, msg=name)
    assert float(eager.critic.net.layers[0].steps.flatten()[0]) == 6


def test_population_equals_k_singles_with_its_own_statistics():
    members = [learner(seed=10 + k, init_alpha=(1.0, 0.2, 0.05)[k], gamma=(0.99, 0.9, 0.5)[k], clip=(0.0, 0.5, 0.0)[k],
                       policy_delay=2) for k in range(3)]
    pop = Population(members)
    rows, buf = update_rows(3, n=5)
    for u in range(1, 6):
        step = pop.is_actor_step(u)
        got = pop.update_fns(buf.as_batch, buf.width)[step](pop.state, rows[u - 1])
        want = torch.stack([m.update_fns(buf.as_batch, buf.width)[step](m.state, rows[u - 1, k])
                            for k, m in enumerate(members)])
        torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    for k, m in enumerate(members):
        back = all_tensors(pop.member(k))
        for name, t in all_tensors(m).items():
            torch.testing.assert_close(back[name], t, rtol=0, atol=1e-5, msg=f"member {k} {name}")
    stats = pop.critic.net.layers[1].ra_mean
    assert not torch.allclose(stats[0], stats[2]) and float(pop.critic.net.layers[0].steps.max()) == 5
    # a population built from moved members starts from their statistics (load_member_ copies buffers)
    again = Population(members)
    torch.testing.assert_close(again.critic.net.layers[1].ra_var, pop.critic.net.layers[1].ra_var, rtol=0, atol=1e-5)


def test_members_are_independent_including_their_statistics():
    members = [learner(seed=k) for k in range(3)]
    base, other = Population(members), Population(members)
    rows, buf = update_rows(3, n=1)
    other_rows = rows[0].clone()
    other_rows[0] = float("nan")
    m_base = base.update_fns(buf.as_batch, buf.width)[True](base.state, rows[0])
    m_other = other.update_fns(buf.as_batch, buf.width)[True](other.state, other_rows)
    assert m_other[0].isnan().any() and torch.equal(m_base[1:], m_other[1:])
    for name in ("actor", "critic"):
        rest = slice(base._rows(name, 1).start, None)
        mine, theirs = dict(getattr(base, name).named_buffers()), dict(getattr(other, name).named_buffers())
        for buf in (b for b in mine if b.endswith(("ra_mean", "ra_var"))):
            assert torch.equal(mine[buf][rest], theirs[buf][rest]), buf  # the others' statistics: untouched
            assert not torch.equal(mine[buf][:rest.start], theirs[buf][:rest.start]), buf  # member 0's: NaN
        for p, q in zip(base.state[name].values(), other.state[name].values(), strict=True):
            assert torch.equal(p[rest], q[rest]), name


# --- config, trainer, CLI -----------------------------------------------------------------------------------------

def small(**kw) -> Config:
    """test_checkpoint's small run (the counting env, tiny networks, eager), with CrossQ."""
    return checkpoint_small(**{"algo": "crossq", "critic_width": 16, "quiet": True, **kw})


def test_crossq_defaults_are_sb3_contribs():
    cfg = Config(algo="crossq")
    assert (cfg.actor_lr, cfg.critic_lr, cfg.batch_size, cfg.replay_size) == (1e-3, 1e-3, 256, 1_000_000)
    assert (cfg.start_steps, cfg.update_after, cfg.policy_delay, cfg.grad_clip_norm) == (100, 100, 3, 0.0)
    assert (cfg.hidden_sizes, cfg.critic_width, cfg.renorm_momentum, cfg.renorm_warmup) == ((256, 256), 1024, 0.01,
                                                                                           100_000)
    assert CrossQ.hyper_from_config(cfg).critic.betas == (0.5, 0.999)
    assert CrossQ.hyper_from_config(cfg).alpha.betas == (0.9, 0.999)


@pytest.mark.parametrize("args, flag", [(["--tau", "0.01"], "--tau="), (["--layer-norm"], "--layer-norm="),
                                        (["--noise-sigma", "0.2"], "--noise-sigma="),
                                        (["--renorm-momentum", "0"], "--renorm-momentum="),
                                        (["--grid", "tau=0.01,0.02"], "--tau=")])
def test_bad_crossq_input_is_one_line_exit_2(args, flag, capsys):
    assert main(["run", "--algo", "crossq", "--total-steps", "10", *args]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("fastddpg: error:") and flag in lines[0], lines
    with pytest.raises(ConfigError, match="--tau="):
        Config(algo="crossq", tau=0.01)


def test_trainer_crossq_end_to_end_with_its_statistics():
    result = train(small(renorm_warmup=5))
    algo = result.algo
    n = result.summary["updates"]
    assert n > 0 and int(algo.state["optim"]["critic"]["step"]) == n
    assert int(algo.state["optim"]["actor"]["step"]) == n // 3 == int(algo.state["optim"]["alpha"]["step"])
    assert float(algo.critic.net.layers[0].steps[0]) == n and float(algo.actor.net.layers[0].steps[0]) == n // 3
    assert not algo.actor.training and not algo.critic.training
    ups = result.updates
    assert ups[list(SAC_METRIC_NAMES)].notna().all().all() and (ups["alpha"] > 0).all()
    assert set(algo.module_names) == {"actor", "critic", "alpha"}


def test_fastddpg_run_crossq_grid_and_seeds(tmp_path):
    run = tmp_path / "run"
    assert main(["run", "--algo", "crossq", "--env", "Pendulum-v1", "--num-envs", "2", "--total-steps", "160",
                 "--batch-size", "16", "--hidden-sizes", "8", "--critic-width", "8", "--log-every", "80",
                 "--device", "cpu", "--compile", "off", "--quiet", "--num-seeds", "2", "--grid", "init_alpha=0.1,1.0",
                 "--run-dir", str(run)]) == 0
    header = (run / "updates.csv").read_text().splitlines()[0].split(",")
    assert {"alpha", "entropy"} <= set(header)
    obs = torch.randn(5, 3)
    actors = [load_actor(run, member=k)[0] for k in range(4)]
    with torch.no_grad():
        assert not torch.allclose(actors[0](obs), actors[3](obs))


# --- checkpoints, export ---------------------------------------------------------------------------------------------

def test_resume_restores_the_running_statistics_alpha_and_its_adam(tmp_path):
    """A trainer loaded from a checkpoint holds every tensor of the one that wrote it: weights, BatchRenorm
    statistics and step counts (past the warm-up), alpha and every Adam state (tests/test_checkpoint.py checks the
    rest of the trainer's state, parametrized with CrossQ)."""
    from fastddpg import Trainer
    from fastddpg.runs.checkpoint import Checkpointer, latest_checkpoint, read_checkpoint

    a = Trainer(small(total_steps=120, renorm_warmup=20), checkpointer=Checkpointer(tmp_path))
    a.train()
    saved = read_checkpoint(latest_checkpoint(tmp_path))["trainer"]
    assert torch.equal(saved["modules"]["critic"]["net.layers.1.ra_var"], a.algo.critic.net.layers[1].ra_var)
    assert float(a.algo.critic.net.layers[0].steps[0]) > 20  # renormalising by then
    b = Trainer(small(total_steps=120, renorm_warmup=20))
    fresh = {k: t.clone() for k, t in all_tensors(b.algo).items()}
    b.load_state_dict(saved)
    want = all_tensors(a.algo)
    for name, t in all_tensors(b.algo).items():
        assert torch.equal(t, want[name]), name
    assert not torch.equal(fresh["critic.net.layers.0.ra_var"], want["critic.net.layers.0.ra_var"])
    assert not torch.equal(fresh["alpha.log_alpha"], want["alpha.log_alpha"])
    b.env.close()


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
def test_export_is_the_deterministic_policy_in_eval_mode(tmp_path, capsys):
    run = tmp_path / "run"
    result = train(small(env="Pendulum-v1", num_envs=2, total_steps=200, start_steps=50, renorm_warmup=10,
                         run_dir=str(run)))
    obs = torch.randn(64, 3, generator=torch.Generator().manual_seed(0)) * 5
    with torch.no_grad():
        mean, _ = result.algo.actor.gaussian(obs)
        want = (2.0 * torch.tanh(mean)).numpy()
        np.testing.assert_allclose(result.algo.policy(obs).numpy(), want, rtol=0, atol=1e-6)
        np.testing.assert_allclose(load_actor(run)[0](obs).numpy(), want, rtol=0, atol=1e-6)
        # the running statistics matter: the same actor with batch statistics acts differently
        trained_mode = copy.deepcopy(result.algo.actor).train()
        assert np.abs(trained_mode(obs).numpy() - want).max() > 1e-3
    assert main(["export", str(run), "--format", "torchscript"]) == 0
    np.testing.assert_allclose(torch.jit.load(str(run / "actor.ts.pt"))(obs).numpy(), want, rtol=0, atol=1e-5)
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    assert main(["export", str(run), "--format", "onnx"]) == 0
    session = ort.InferenceSession(str(run / "actor.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"obs": obs.numpy()})[0], want, rtol=0, atol=1e-5)
    capsys.readouterr()


# --- verify -------------------------------------------------------------------------------------------------------

@pytest.mark.slow  # ~40 s of compiling, float32 and float64; the default suite's float64 verdict on CrossQ is below
@pytest.mark.parametrize("num_seeds", [1, 2])  # 2: ~2 min of compiling
def test_verify_crossq_passes_on_cpu(num_seeds):
    """fastddpg verify --algo crossq, compiled, at a small batch and actor (the critics at their default width,
    1024): the acting step and the compiled update pass. Judged against eager in float32 alone, the bias of a hidden
    unit active on every row could not: the next BatchRenorm subtracts the batch mean, so its gradient is zero up to
    float32 rounding and Adam's m / (sqrt(v) + eps) turns that rounding into a step of up to lr either way, in eager
    as in compiled. The float64 run judges it; float32 is held to its tolerance only where eager on the rows in
    reverse order is (verify.py)."""
    from fastddpg.tools.verify import VerifyOptions, format_report, run_verify

    torch._dynamo.reset()
    report = run_verify(VerifyOptions(device="cpu", algo="crossq", num_seeds=num_seeds, updates=4, batch_size=32,
                                      hidden_sizes=(16, 16), timed_updates=1, repeats=1))
    assert report["passed"], format_report(report)


def reversed_rows(setup, learner):
    """Eager on each batch with its rows in reverse order: the same update (BatchRenorm's statistics and every loss
    are means over the batch), rounded otherwise."""
    from fastddpg.tools.verify import eager_path

    return {k: (lambda rows, f=f: f(rows.flip(-2))) for k, f in eager_path(setup, learner).items()}


def renorm_bug(**layer_attrs):
    """Eager with an injected BatchRenorm bug: ``layer_attrs`` set on every layer of the path's own networks."""
    from fastddpg.tools.verify import eager_path

    def make(setup, learner):
        for net in (learner.actor.net, learner.critic.net):
            for layer in net.layers:
                for k, v in layer_attrs.items():
                    setattr(layer, k, v)
        return eager_path(setup, learner)
    return make


@pytest.mark.parametrize("bug,group", [
    ("warmup", "metrics"),  # renormalising toward the running statistics from the first update (step count lost)
    ("momentum", "params"),  # the running statistics moving by 0.02 instead of 0.01
    ("gamma", "metrics"),  # the wrong discount
])
def test_verify_passes_crossq_reordered_and_fails_an_injected_bug(bug, group):
    """verify's float64 judge on CrossQ's ill-conditioned critic update: the batch in reverse row order (the same
    equations, other rounding) passes, an injected bug fails by orders of magnitude. Eager paths only: seconds."""
    from fastddpg.tools.verify import VerifyOptions, eager_path, format_report, run_verify
    from tests.test_verify import broken

    bad_path = {"warmup": renorm_bug(warmup=0.0), "momentum": renorm_bug(momentum=0.02),
                "gamma": broken(gamma=0.9)}[bug]
    report = run_verify(VerifyOptions(device="cpu", algo="crossq", updates=3, batch_size=32, hidden_sizes=(16, 16),
                                      timed_updates=1, repeats=1, acting=False),
                        paths={"eager": eager_path, "reversed": reversed_rows, "broken": bad_path})
    text = format_report(report)
    eager, rev, bad = report["update_paths"]
    assert eager["passed"] and rev["passed"] and rev["float32"]["max_abs_diff_float64"] > 0, text
    assert not bad["passed"] and not report["passed"] and bad["deviations"][group]["excess"] > 100, text
    assert f"FAIL broken: {bad['worst_tensor']} differs from eager" in text


def test_verify_catches_batch_renorm_left_in_training_mode_when_acting(monkeypatch):
    """The injected bug: the compiled acting step runs the actor with its BatchRenorm layers in training mode
    (batch statistics of the acting batch instead of the running ones)."""
    from fastddpg.tools import verify
    from fastddpg.tools.verify import VerifyOptions, format_report, run_verify

    real = verify.compile_explore

    def training_mode_explore(explore):
        explore.__self__.actor.train()
        return real(explore)

    monkeypatch.setattr(verify, "compile_explore", training_mode_explore)
    # the acting step is the subject: the update is verified on its eager path only, which compiles nothing (the
    # compiled update's verdicts are other tests')
    report = run_verify(VerifyOptions(device="cpu", algo="crossq", updates=2, batch_size=32, hidden_sizes=(16, 16),
                                      timed_updates=1, repeats=1), paths={"eager": verify.eager_path})
    assert [r["name"] for r in report["update_paths"]] == ["eager"], format_report(report)
    eager, bad = report["acting_paths"]
    assert eager["passed"] and not bad["passed"] and not report["passed"], format_report(report)


def test_pendulum_crossq_config_holds_the_zoo_and_sb3_contrib_values():
    from pathlib import Path

    from fastddpg.core.configfile import load_config_file

    cfg = Config(**load_config_file(Path(__file__).resolve().parent.parent / "configs" / "pendulum_crossq.toml"))
    assert (cfg.algo, cfg.env, cfg.total_steps, cfg.num_envs) == ("crossq", "Pendulum-v1", 20_000, 1)
    assert (cfg.actor_lr, cfg.critic_lr, cfg.batch_size, cfg.replay_size) == (1e-3, 1e-3, 256, 1_000_000)
    assert (cfg.start_steps, cfg.update_after, cfg.updates_per_step, cfg.policy_delay) == (100, 100, 1.0, 2)
    assert (cfg.gamma, cfg.hidden_sizes, cfg.critic_width, cfg.grad_clip_norm, cfg.init_alpha) == (
        0.99, (256, 256), 256, 0.0, 1.0)
    assert (cfg.renorm_momentum, cfg.renorm_warmup) == (0.01, 100_000)
