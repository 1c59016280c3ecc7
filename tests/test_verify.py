"""`fastddpg verify`: the fast paths pass on the CPU, and verify fails, naming the tensor, when a path is wrong."""

from __future__ import annotations

import json

import pytest
import torch
import torch._dynamo

from fastddpg.algos import Algorithm
from fastddpg.cli import main
from fastddpg.tools import verify
from fastddpg.tools.verify import (
    DeviationTracker,
    VerifyOptions,
    VerifySetup,
    default_paths,
    eager_path,
    format_report,
    run_verify,
)

SMALL = ["--device", "cpu", "--updates", "6", "--batch-size", "64", "--hidden-sizes", "32", "32",
         "--timed-updates", "4", "--repeats", "1"]


def broken(**overrides) -> verify.PathFactory:
    """An eager path built with other hyperparameters than eager's: a wrong update, as a bug would give."""
    def make(setup: VerifySetup, learner: Algorithm):
        return setup.update_fns(learner, **overrides)
    return make


def perturbed(tensor: str, delta: float) -> verify.PathFactory:
    """Eager, but after every update one tensor of the learner (``params.actor.net.0.bias`` etc.) is off by delta."""
    def make(setup: VerifySetup, learner: Algorithm):
        fns = eager_path(setup, learner)

        def wrap(fn):
            def step(rows: torch.Tensor) -> torch.Tensor:
                out = fn(rows)
                verify.learner_state(learner)[tensor].add_(delta)
                return out
            return step
        return {k: wrap(fn) for k, fn in fns.items()}
    return make


@pytest.fixture
def fresh_dynamo():
    """Other tests compiled the same update code: start from dynamo's empty cache, far from its recompile limit
    (past it, dynamo would quietly run a 'compiled' path eagerly)."""
    torch._dynamo.reset()


def test_verify_ddpg_passes_on_cpu_with_graph_logic(tmp_path, capsys, fresh_dynamo):
    """The CLI end to end: eager, compiled (GuardFreeCall), CudaGraphUpdate's static-buffer logic around the
    compiled update (capture=False) and DDPG's hand-derived update, and the acting step; exit 0, JSON written."""
    out = tmp_path / "v.json"
    assert main(["verify", *SMALL, "--graph-logic-on-cpu", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "PASS" in text and "update compiled+graph-logic" in text and "acting compiled" in text
    assert "update analytic" in text
    report = json.loads(out.read_text())
    assert report["passed"] and report["algo"] == "ddpg"
    names = [p["name"] for p in report["update_paths"]]
    assert names == ["eager", "compiled", "compiled+graph-logic", "analytic"]
    for p in report["update_paths"][1:]:
        assert set(p["deviations"]) == {"params", "targets", "optimizer", "metrics"}
        assert p["rate_per_sec"] > 0 and p["worst_excess"] < 1
    assert [p["name"] for p in report["acting_paths"]] == ["eager", "compiled"]
    assert report["tolerance"] == {"atol": verify.ATOL, "rtol": verify.RTOL, "acting_atol": verify.ACT_ATOL,
                                   "acting_rtol": verify.ACT_RTOL, "float64_atol": verify.ATOL64,
                                   "float64_rtol": verify.RTOL64, "float32_resolved_below": verify.F32_RESOLVED}
    for p in report["update_paths"]:  # the float32 run: DDPG's is resolved, so held to the float32 tolerance
        assert p["float32"]["worst_excess"] < 1 and set(p["float32"]["deviations"]) == set(p["deviations"])
        assert p["float32"]["unresolved_groups"] == [] and p["float32"]["failed_groups"] == []
        assert p["float32"]["max_abs_diff_float64"] > 0


# slow: ~40 s of a cold 2-core compile (two functions, float64 and float32). The default suite holds compiled TD3 to
# eager in test_td3 (both functions), its hand-derived update in test_analytic and the graph logic in test_compile
@pytest.mark.slow
def test_verify_td3_passes_on_cpu(fresh_dynamo):
    """TD3: both compiled functions (critic only, and critic + actor + targets) in the policy-delay order, and both
    hand-derived ones."""
    report = run_verify(VerifyOptions(device="cpu", algo="td3", updates=6, batch_size=64, hidden_sizes=(32, 32),
                                      timed_updates=4, repeats=1, acting=False, graph_logic_on_cpu=True))
    assert report["passed"], format_report(report)
    assert [p["name"] for p in report["update_paths"]] == ["eager", "compiled", "compiled+graph-logic", "analytic"]
    assert report["acting_paths"] == []


# slow: ~35 s of a cold 2-core compile. The default suite holds a compiled population to eager in test_population
# (TD3's two functions) and verify's population comparison in the test below, eagerly
@pytest.mark.slow
def test_verify_population_passes_on_cpu(fresh_dynamo):
    """--num-seeds 3: the stacked population update (one graph, (K,) hyperparameters), eager vs compiled vs the
    graph logic, every member's tensors compared; the acting step on each member's rows. DDPG: one update function
    to compile, in float64 and float32 (a TD3 population's two compile in test_population)."""
    report = run_verify(VerifyOptions(device="cpu", algo="ddpg", num_seeds=3, updates=6, batch_size=32,
                                      hidden_sizes=(16, 16), timed_updates=4, repeats=1, graph_logic_on_cpu=True))
    assert report["passed"], format_report(report)
    assert report["num_seeds"] == 3 and "ddpg population of 3" in format_report(report)
    assert [p["name"] for p in report["update_paths"]] == ["eager", "compiled", "compiled+graph-logic"]


def test_verify_population_fails_when_one_member_is_wrong():
    """Only member 2 of 3 gets the wrong discount: the population verify fails on it."""
    def one_member_gamma(setup: VerifySetup, learner: Algorithm):
        gamma = learner.hyper.gamma.clone()
        gamma[2] = 0.9
        return setup.update_fns(learner, gamma=gamma)

    report = run_verify(VerifyOptions(device="cpu", algo="ddpg", num_seeds=3, updates=10, batch_size=32,
                                      hidden_sizes=(16, 16), timed_updates=1, repeats=1, acting=False),
                        paths={"eager": eager_path, "broken": one_member_gamma})
    bad = report["update_paths"][1]
    assert not report["passed"] and bad["deviations"]["metrics"]["excess"] > 5


@pytest.mark.parametrize("algo,path,group", [
    ("ddpg", broken(tau=1e-12), "targets"),  # the soft update skipped
    ("ddpg", broken(gamma=0.9), "metrics"),  # the wrong discount: y moves first
    ("td3", broken(policy_noise=0.0), "metrics"),  # no target policy smoothing
    ("td3", broken(policy_delay=1), "metrics"),  # an actor step on every update
])
def test_verify_fails_on_a_wrong_update(algo, path, group):
    paths = {"eager": eager_path, "broken": path}
    if algo == "td3":  # a policy delay of 1 has no critic-only function: use the full step for both
        def make(setup, learner, inner=path):
            fns = inner(setup, learner)
            return {False: fns.get(False, fns[True]), True: fns[True]}
        paths["broken"] = make
    report = run_verify(VerifyOptions(device="cpu", algo=algo, updates=20, batch_size=64, hidden_sizes=(32, 32),
                                      timed_updates=1, repeats=1, acting=False), paths=paths)
    bad = report["update_paths"][1]
    assert not report["passed"] and not bad["passed"] and report["update_paths"][0]["passed"]
    assert bad["deviations"][group]["excess"] > 5  # by a margin: the honest paths stay below 0.01 (verify.py)
    assert f"FAIL broken: {bad['worst_tensor']} differs from eager" in format_report(report)


def bfloat16_in_float32() -> verify.PathFactory:
    """Eager, but a float32 learner's critic weights are rounded through bfloat16 after every update: arithmetic that
    is wrong in float32 only (as a kernel computing at a lower precision would be), right in float64."""
    def make(setup: VerifySetup, learner: Algorithm):
        fns = eager_path(setup, learner)
        state = verify.learner_state(learner)
        critic = [t for n, t in state.items() if n.startswith("params.critic") and t.dtype == torch.float32]

        def wrap(fn):
            def step(rows: torch.Tensor) -> torch.Tensor:
                out = fn(rows)
                for t in critic:
                    t.copy_(t.bfloat16().float())
                return out
            return step
        return {k: wrap(fn) for k, fn in fns.items()}
    return make


def test_verify_fails_a_path_wrong_in_float32_only():
    """The float64 run cannot see it; the float32 run's check does, by far more than float32's own spread."""
    report = run_verify(VerifyOptions(device="cpu", algo="ddpg", updates=6, batch_size=64, hidden_sizes=(32, 32),
                                      timed_updates=1, repeats=1, acting=False),
                        paths={"eager": eager_path, "lossy": bfloat16_in_float32()})
    eager, lossy = report["update_paths"]
    assert eager["passed"] and not report["passed"] and not lossy["passed"]
    assert lossy["worst_excess"] <= 1.0  # its float64 twin computes eager's equations
    assert lossy["float32"]["failed_groups"] == ["params"] and lossy["float32"]["unresolved_groups"] == []
    assert lossy["float32"]["deviations"]["params"]["excess"] > 10
    assert "FAIL lossy: in float32, params.critic." in format_report(report)


def test_verify_names_the_perturbed_tensor(monkeypatch, capsys):
    """Through the CLI: exit 1 and the one tensor that is off (by less than a float32 weight's 1e-4 of itself,
    but far beyond the tolerance) is named, with the update where it was first off by most."""
    monkeypatch.setattr(verify, "default_paths", lambda *a, **k: {
        "eager": eager_path, "compiled": perturbed("params.critic.net.2.bias", 1e-3)})
    assert main(["verify", *SMALL, "--updates", "3"]) == 1
    out = capsys.readouterr().out
    assert "FAIL compiled: critic.net.2.bias differs from eager at update" in out
    assert out.rstrip().endswith("FAIL: a fast path does not compute what the eager update computes")


def test_non_finite_is_never_close():
    t = DeviationTracker(1.0, 1.0)
    t.add({"metrics.a": torch.tensor(float("nan")), "params.w": torch.zeros(3)},
          {"metrics.a": torch.tensor(float("nan")), "params.w": torch.zeros(3)})
    t.add({"metrics.a": torch.tensor(1.0), "params.w": torch.tensor([0.0, 2.5, 0.0])},
          {"metrics.a": torch.tensor(1.0), "params.w": torch.zeros(3)})
    dev = t.result(("metrics", "params"))
    assert dev["metrics"].excess == float("inf") and dev["metrics"].update == 1
    assert dev["params"].max_abs == 2.5 and dev["params"].excess == 2.5 and dev["params"].update == 2


def test_tracker_reports_the_distance_from_the_float64_update():
    t = DeviationTracker(1e-5, 1e-4)
    ref = {"params.w": torch.tensor([1.0, -2.0], dtype=torch.float64)}
    t.add({"params.w": torch.tensor([1.0, -2.003])}, {"params.w": torch.tensor([1.0, -2.001])}, ref)
    dev = t.result(("params",))["params"]
    assert dev.max_abs == pytest.approx(2e-3, rel=1e-3) and dev.max_abs_float64 == pytest.approx(3e-3, rel=1e-3)
    assert dev.excess == pytest.approx(2e-3 / (1e-5 + 1e-4 * 2.001), rel=1e-3)


@pytest.mark.parametrize("algo", ["td3", "crossq"])
def test_in_float64_is_the_same_learner_in_double(algo):
    """Every tensor of the learner (weights, running statistics, Adam states and step counts) has eager's value in
    float64 (a 0-dim one as shape (1,), see `in_float64`), and its update runs in float64."""
    setup = verify.build_setup(algo, torch.device("cpu"), 2, 16, (8, 8), warmup=2)
    double = verify.in_float64(setup.learner)
    single, twin = verify.learner_state(setup.learner), verify.learner_state(double)
    assert single.keys() == twin.keys()
    for name, t in single.items():
        assert twin[name].dtype == torch.float64 and twin[name].shape == (t.shape or (1,)), name
        assert torch.equal(twin[name].float().reshape(t.shape), t), name
    rows = setup.rows.double()
    setup64 = verify.VerifySetup(algo, setup.device, double, setup.buffer, rows, setup.cfg, setup.first_update)
    metrics = verify.eager_path(setup64, double)[True](rows[0])
    assert metrics.dtype == torch.float64 and metrics.shape == (len(double.metric_names),)
    assert float(twin["optimizer.critic_opt.step"]) == float(single["optimizer.critic_opt.step"]) + 1
    assert all(twin[n].dtype == torch.float64 for n in twin)


def test_default_paths():
    assert list(default_paths(torch.device("cpu"))) == ["eager", "compiled"]
    assert list(default_paths(torch.device("cpu"), graph_logic_on_cpu=True))[-1] == "compiled+graph-logic"
    assert list(default_paths(torch.device("cuda"))) == ["eager", "compiled", "compiled+cudagraph"]


@pytest.mark.parametrize("args,needle", [
    (["--num-seeds", "0"], "--num-seeds=0"),
    (["--updates", "0"], "--updates=0"),
    (["--hidden-sizes", "0"], "--hidden-sizes=0"),
    (["--device", "tpu"], "--device='tpu'"),
    (["--json", "/proc/no/such/dir/v.json"], "--json=/proc/no/such/dir/v.json: cannot write there"),
] + ([] if torch.cuda.is_available() else [(["--device", "cuda"], "CUDA is not available")]))
def test_verify_bad_input_one_line_exit_2(args, needle, capsys):
    assert main(["verify", *args]) == 2
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("fastddpg: error:") and needle in lines[0], captured.err
    assert captured.out == ""


def test_a_verified_population_has_hyperparameters_of_its_own_per_member():
    """verify --num-seeds K builds members that differ in gamma, tau and both learning rates, as --grid members do:
    a path that mixed the members' (K,) hyperparameters up would then give other numbers than eager."""
    import torch

    from fastddpg.tools.verify import build_setup

    setup = build_setup("td3", torch.device("cpu"), updates=1, batch_size=8, hidden_sizes=(8,), members=3, warmup=0)
    hyper = setup.learner.hyper
    for values in (hyper.gamma, hyper.tau, hyper.actor.lr, hyper.critic.lr):
        assert torch.as_tensor(values).unique().numel() == 3


def test_a_verified_crossq_population_varies_what_crossq_has():
    """CrossQ has no target networks, so no tau: its members differ in gamma and the learning rates only (a tau
    of their own was a ConfigError, and verify --algo crossq --num-seeds 2 failed before it verified anything)."""
    from fastddpg import Config
    from fastddpg.tools.verify import member_config

    cfg = Config(algo="crossq", hidden_sizes=(8,))
    member = member_config(cfg, 1)
    assert member.tau == cfg.tau and member.gamma != cfg.gamma and member.actor_lr != cfg.actor_lr
