"""The hand-derived DDPG update (fastddpg.learning.analytic) against the eager update it restates."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import torch

from fastddpg.algos import DDPG, TD3
from fastddpg.core.config import Config, ConfigError
from fastddpg.learning.analytic import AnalyticPlans, flat_grads, fused_adam_step_, mlp_forward, mlp_layers, mlp_vjp
from fastddpg.learning.compile import resolve_compile_mode
from fastddpg.learning.networks import mlp, stacked_mlp
from fastddpg.learning.replay import ReplayBuffer
from fastddpg.learning.update import AdamHyper, Hyper, adam_state, adam_step_
from fastddpg.tools.verify import in_float64, learner_state

CPU = torch.device("cpu")


def _learner(hidden: tuple[int, ...], low: list[float], high: list[float], clip: float, obs_dim: int = 3,
             seed: int = 0, algo: str = "ddpg") -> tuple[DDPG | TD3, ReplayBuffer]:
    torch.manual_seed(seed)
    act_dim = len(low)
    hyper = Hyper(0.99, 0.05, clip, AdamHyper(3e-3), AdamHyper(1e-2), policy_noise=0.3, noise_clip=0.4)
    low_bound, high_bound = torch.tensor(low), torch.tensor(high)
    learner = (DDPG(obs_dim, act_dim, hidden, low_bound, high_bound, CPU, hyper) if algo == "ddpg" else
               TD3(obs_dim, act_dim, hidden, low_bound, high_bound, CPU, hyper, policy_delay=2))
    buf = ReplayBuffer(512, obs_dim, act_dim, CPU)
    gen = torch.Generator().manual_seed(seed)
    n = 512
    low_t, high_t = torch.tensor(low), torch.tensor(high)
    buf.add(torch.randn(n, obs_dim, generator=gen), low_t + (high_t - low_t) * torch.rand(n, act_dim, generator=gen),
            -16 * torch.rand(n, generator=gen), torch.randn(n, obs_dim, generator=gen),
            (torch.rand(n, generator=gen) < 0.2).float())  # a fifth of the rows terminal: d matters in y
    return learner, buf


def _rows(learner: DDPG | TD3, buf: ReplayBuffer, updates: int, batch_size: int, dtype: torch.dtype) -> torch.Tensor:
    """Replay rows of ``updates`` batches, with TD3's standard normal smoothing noise appended."""
    gen = torch.Generator().manual_seed(1)
    rows = buf.data.to(dtype)[torch.randint(0, buf.size, (updates, batch_size), generator=gen)]
    if learner.eps_dim:
        rows = torch.cat([rows, torch.randn(updates, batch_size, learner.eps_dim, generator=gen, dtype=dtype)], -1)
    return rows


@pytest.mark.parametrize("algo", ["ddpg", "td3"])
@pytest.mark.parametrize("hidden, low, high, clip", [
    ((64, 64), [-2.0], [2.0], 1.0),  # Pendulum's shape, the notebook's clipping
    ((32, 48, 16), [-1.0, 0.0], [3.0, 2.0], 0.05),  # 3 hidden layers, 2 asymmetric actions, clipping on every step
    ((40,), [-0.5, -0.5], [0.5, 1.5], 0.0),  # one hidden layer, no clipping
])
def test_analytic_update_matches_the_eager_update_in_float64(algo, hidden, low, high, clip):
    """From the same state and batch, one update of each path; every parameter, target, Adam moment, step and metric
    agrees to float64 rounding, over 12 updates (each from eager's state, as `fastddpg verify` steps them); TD3's
    alternate critic-only and full updates (policy delay 2)."""
    learner, buf = _learner(hidden, low, high, clip, algo=algo)

    def check(u: int, got: torch.Tensor, want: torch.Tensor, mine: dict, theirs: dict) -> None:
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-10)
        for name, t in mine.items():
            torch.testing.assert_close(t, theirs[name], rtol=1e-9, atol=1e-10, msg=f"{name} after update {u}")

    mine = _lockstep(in_float64(learner), buf, 12, 64, torch.float64, check)
    assert float(mine["optimizer.critic_opt.step"]) == 12.0
    assert float(mine["optimizer.actor_opt.step"]) == (12.0 if algo == "ddpg" else 6.0)


@pytest.mark.parametrize("algo", ["ddpg", "td3"])
def test_analytic_update_stays_close_in_float32(algo):
    """As the trainer runs it, in float32: 10 updates in lockstep with eager (each from eager's state), every tensor
    within float32 rounding of eager's, relative to the scale of its group (a network's parameters, one Adam moment
    of one network: Adam's second moments are ~1e-3 g^2, and a single bias can pass through zero)."""
    learner, buf = _learner((64, 64), [-2.0], [2.0], 1.0, algo=algo)

    def check(u: int, got: torch.Tensor, want: torch.Tensor, mine: dict, theirs: dict) -> None:
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
        scales: dict[str, float] = {}
        for name, t in theirs.items():
            scales[_group(name)] = max(scales.get(_group(name), 0.0), float(t.abs().max()))
        for name, t in mine.items():
            torch.testing.assert_close(t, theirs[name], rtol=1e-4, atol=1e-5 * scales[_group(name)],
                                       msg=f"{name} @ {u}")

    _lockstep(learner, buf, 10, 128, torch.float32, check)


def _lockstep(learner: DDPG | TD3, buf: ReplayBuffer, updates: int, batch_size: int, dtype: torch.dtype,
              check: Callable[[int, torch.Tensor, torch.Tensor, dict, dict], None]) -> dict[str, torch.Tensor]:
    """``updates`` updates of ``learner`` (eager) and of a copy (hand-derived), each from eager's state, on the same
    rows; ``check(update number, analytic metrics, eager metrics, the copy's tensors, eager's)`` after each (the
    tensors of `fastddpg.tools.verify.learner_state`). Returns the copy's tensors."""
    twin = copy.deepcopy(learner)
    eager = learner.update_fns(buf.as_batch, buf.width)
    analytic = twin.analytic_update_fns(buf.as_batch, buf.width)
    assert set(analytic) == set(eager)
    rows = _rows(learner, buf, updates, batch_size, dtype)
    mine, theirs = learner_state(twin), learner_state(learner)
    for u in range(updates):
        actor_step = learner.is_actor_step(u + 1)
        for name, t in mine.items():
            t.copy_(theirs[name])
        want = eager[actor_step](learner.state, rows[u])
        check(u + 1, analytic[actor_step](twin.state, rows[u]), want, mine, theirs)
    return mine


def _group(name: str) -> str:
    """'params.actor.net.4.bias' -> 'params.actor'; 'optimizer.actor_opt.exp_avg_sq.net.0.weight' ->
    'optimizer.actor_opt.exp_avg_sq'."""
    parts = name.split(".")
    return ".".join(parts[:3] if parts[0] == "optimizer" else parts[:2])


@pytest.mark.parametrize("stacked, sizes, batch", [
    (0, [5, 32, 16, 3], 20),  # plain 2-D products throughout
    (0, [1, 8, 1], 7),  # one input and one output: the k = 1 forward and backward products
    (2, [5, 16, 1], 20),  # a TwinCritic's stacked layers, the last a slice at a time
    (2, [1, 8, 1], 1),  # stacked, one input, a batch of one: every narrow case, written into the flat buffer
])
def test_mlp_vjp_is_autograds_gradient(stacked, sizes, batch):
    torch.manual_seed(0)
    net = (stacked_mlp(stacked, sizes) if stacked else mlp(sizes)).double()
    params = {k: p.detach().clone().requires_grad_() for k, p in net.named_parameters()}
    lead = (stacked,) if stacked else ()
    x = torch.randn(*lead, batch, sizes[0], dtype=torch.float64, requires_grad=True)
    d_out = torch.randn(*lead, batch, sizes[-1], dtype=torch.float64)
    out = torch.func.functional_call(net, params, (x,))
    want = torch.autograd.grad(out, [*params.values(), x], d_out)
    layers = mlp_layers({k: p.detach() for k, p in params.items()})
    got_out, tape = mlp_forward(layers, x.detach(), keep=True)
    grads = flat_grads(params)
    grads.flat.fill_(float("nan"))  # every element must be written
    d_x = mlp_vjp(layers, tape, d_out, grads, input_cols=slice(None))
    torch.testing.assert_close(got_out, out.detach())
    for g, w in zip([*grads.tensors, d_x], want, strict=True):
        torch.testing.assert_close(g, w)
    # the flat buffer is the tensors, in order
    torch.testing.assert_close(grads.flat, torch.cat([w.flatten() for w in want[:-1]]))
    cut = sizes[0] // 2
    d_x_cols = mlp_vjp(layers, tape, d_out, input_cols=slice(cut, None))
    assert d_x_cols.shape == (*lead, batch, sizes[0] - cut)
    torch.testing.assert_close(d_x_cols, want[-1][..., cut:])
    assert mlp_vjp(layers, tape, d_out, grads) is None


@pytest.mark.parametrize("algo", ["ddpg", "td3"])
@pytest.mark.parametrize("obs_dim, hidden, batch_size", [(1, (6, 1), 5), (1, (1,), 1), (2, (3,), 1)])
def test_analytic_update_matches_the_eager_update_at_narrow_shapes(algo, obs_dim, hidden, batch_size):
    """The narrow products (one observation, a hidden width of 1, a batch of one, one action) agree with the eager
    update to float64 rounding, as the Pendulum-sized ones do above."""
    learner, buf = _learner(hidden, [-2.0], [2.0], 0.5, obs_dim=obs_dim, algo=algo)

    def check(u: int, got: torch.Tensor, want: torch.Tensor, mine: dict, theirs: dict) -> None:
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-10)
        for name, t in mine.items():
            torch.testing.assert_close(t, theirs[name], rtol=1e-9, atol=1e-10, msg=f"{name} after update {u}")

    _lockstep(in_float64(learner), buf, 6, batch_size, torch.float64, check)


def test_a_plan_is_built_once_per_state_and_sees_in_place_updates():
    """The update functions arrange a state once and reuse the arrangement while calls bring that state; another
    state (a copy) gets its own; the arranged tensors are views, so a load into the state shows in them."""
    learner, _ = _learner((8,), [-1.0], [1.0], 1.0)
    plans = AnalyticPlans(learner.nets)
    plan = plans(learner.state)
    learner.state["critic"]["net.0.weight"].fill_(0.5)
    assert plans(learner.state) is plan
    assert bool((plan.critic.backward[0] == 0.5).all()) and bool((plan.critic.forward[0] == 0.5).all())
    twin = copy.deepcopy(learner)
    twin_plan = plans(twin.state)
    assert twin_plan is not plan
    assert twin_plan.critic.backward[0].data_ptr() == twin.state["critic"]["net.0.weight"].data_ptr()
    assert twin_plan.critic.backward[0].data_ptr() != plan.critic.backward[0].data_ptr()


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_fused_adam_step_is_adam_step(dtype, tol):
    torch.manual_seed(0)
    params = {"w": torch.randn(7, 5, dtype=dtype), "b": torch.randn(7, dtype=dtype)}
    twin = {k: t.clone() for k, t in params.items()}
    opt, opt_twin = adam_state(params), adam_state(twin)
    opt["step"], opt_twin["step"] = opt["step"].to(dtype), opt_twin["step"].to(dtype)
    hp = AdamHyper(1e-2)
    for _ in range(5):
        grads = [torch.randn_like(t) for t in params.values()]
        adam_step_(list(params.values()), opt, [g.clone() for g in grads], hp)
        fused_adam_step_(list(twin.values()), opt_twin, [g.clone() for g in grads], hp)
    for k in params:
        torch.testing.assert_close(twin[k], params[k], rtol=tol, atol=tol)
    for key in ("exp_avg", "exp_avg_sq"):
        for got, want in zip(opt_twin[key], opt[key], strict=True):
            torch.testing.assert_close(got, want, rtol=tol, atol=tol * float(want.abs().max()))
    assert float(opt_twin["step"]) == 5.0


def test_auto_takes_the_analytic_update_on_a_cpu_for_short_runs():
    assert resolve_compile_mode("auto", CPU, 9_000, DDPG.analytic_auto_max_updates) == "analytic"
    assert resolve_compile_mode("auto", CPU, 1_000, DDPG.analytic_auto_max_updates) == "analytic"
    assert resolve_compile_mode("auto", CPU, 30_000, DDPG.analytic_auto_max_updates) == "default"
    assert resolve_compile_mode("auto", CPU, 14_999, TD3.analytic_auto_max_updates) == "analytic"
    assert resolve_compile_mode("auto", CPU, 15_000, TD3.analytic_auto_max_updates) == "default"
    assert resolve_compile_mode("auto", CPU, 9_000) == "default"  # no hand-derived update
    assert resolve_compile_mode("auto", CPU, 1_000) == "off"
    assert resolve_compile_mode("auto", torch.device("cuda"), 9_000, 30_000) == "default"
    assert resolve_compile_mode("off", CPU, 9_000, 30_000) == "off"


@pytest.mark.parametrize("kwargs, says", [
    ({"algo": "sac"}, "--algo sac has no hand-derived update (only ddpg, td3)"),
    ({"layer_norm": True}, "has no LayerNorm"),
    ({"num_seeds": 2}, "one agent, not a population"),
])
def test_compile_analytic_refuses_what_it_cannot_run(kwargs, says):
    with pytest.raises(ConfigError, match="--compile") as e:
        Config(compile="analytic", **kwargs).validate()
    assert says in str(e.value)


def test_the_algorithms_that_have_an_analytic_update():
    from fastddpg.algos import SAC
    from fastddpg.algos.population import Population

    learner, buf = _learner((16,), [-1.0], [1.0], 1.0)
    assert set(learner.analytic_update_fns(buf.as_batch, buf.width)) == {True}
    low, high = torch.tensor([-1.0]), torch.tensor([1.0])
    ln = DDPG(3, 1, (16,), low, high, CPU, learner.hyper, layer_norm=True)
    assert ln.analytic_update_fns(buf.as_batch, buf.width) is None
    td3 = TD3(3, 1, (16,), low, high, CPU, learner.hyper, policy_delay=2)
    assert set(td3.analytic_update_fns(buf.as_batch, buf.width)) == {False, True}
    td3_every = TD3(3, 1, (16,), low, high, CPU, learner.hyper, policy_delay=1)
    assert set(td3_every.analytic_update_fns(buf.as_batch, buf.width)) == {True}
    assert TD3(3, 1, (16,), low, high, CPU, learner.hyper, layer_norm=True).analytic_update_fns(
        buf.as_batch, buf.width) is None
    sac = SAC.from_config(Config(algo="sac", hidden_sizes=(16,)), 3, 1, low, high, CPU)
    assert sac.analytic_update_fns(buf.as_batch, buf.width) is None
    pop = Population([copy.deepcopy(learner), copy.deepcopy(learner)])
    assert pop.analytic_update_fns(buf.as_batch, buf.width) is None


def test_a_short_default_cpu_run_trains_with_the_analytic_update(monkeypatch):
    from fastddpg.training.trainer import Trainer
    from tests.test_checkpoint import small

    trainer = Trainer(small(compile="auto", quiet=True))
    summary = trainer.train().summary
    assert trainer.compile_mode == "analytic" and summary["compile"] == "analytic"
    assert summary["updates"] > 0 and float(trainer.algo.state["optim"]["critic"]["step"]) == summary["updates"]
    assert Trainer(small(compile="auto", quiet=True, layer_norm=True)).compile_mode == "off"  # too short to compile
    # networks the hand-derived update cannot run: auto falls back, an explicit --compile analytic is refused
    monkeypatch.setattr(DDPG, "analytic_update_fns", lambda self, as_batch, width: None)
    assert Trainer(small(compile="auto", quiet=True)).compile_mode == "off"
    with pytest.raises(ConfigError, match="--compile analytic: --algo ddpg has no hand-derived update here"):
        Trainer(small(compile="analytic", quiet=True))


def test_verify_catches_a_wrong_derivative_in_the_analytic_update(monkeypatch):
    """`fastddpg verify`'s analytic path fails when a derivative is wrong (the tanh factor of the actor's chain rule
    left out), and passes without the bug."""
    from fastddpg.learning import analytic
    from fastddpg.tools.verify import VerifyOptions, analytic_path, eager_path, run_verify

    opts = VerifyOptions(device="cpu", updates=4, batch_size=32, hidden_sizes=(16, 16), timed_updates=2, repeats=1,
                         acting=False)
    paths = {"eager": eager_path, "analytic": analytic_path}
    assert run_verify(opts, paths=paths)["passed"]

    def no_tanh_factor(plan, layers, obs, keep):  # u = 0 makes the chain rule's (1 - u^2) a 1
        pre, tape = analytic.mlp_forward(layers, obs, keep)
        u = torch.tanh(pre)
        return plan.action_scale * u + plan.action_bias, torch.zeros_like(u), tape

    monkeypatch.setattr(analytic, "actor_forward", no_tanh_factor)
    report = run_verify(opts, paths=paths)
    assert not report["passed"]
    assert [p["passed"] for p in report["update_paths"]] == [True, False]


def test_a_default_cpu_run_imports_no_compiler(tmp_path):
    """A short default DDPG run on the CPU trains with the hand-derived update and never imports dynamo or inductor:
    no compile, no C++ compiler, none of their import time at start-up."""
    import subprocess
    import sys

    code = ("import sys; from fastddpg.cli.main import main; "
            f"main(['run', '--total-steps', '300', '--start-steps', '100', '--update-after', '100', '--batch-size', "
            f"'16', '--hidden-sizes', '16', '--device', 'cpu', '--quiet', '--run-dir', {str(tmp_path / 'run')!r}]); "
            "print(sorted(m for m in ('torch._dynamo', 'torch._inductor') if m in sys.modules))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.strip().splitlines()[-1] == "[]", p.stdout
    assert '"compile": "analytic"' in (tmp_path / "run" / "summary.json").read_text()
