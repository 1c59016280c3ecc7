"""Pure helpers of the benchmark scripts (interval estimates, time to threshold), and --quick smoke runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.curve import band, mean_ci95, moving_mean, parse_args, resample, summarize, time_to_threshold

ROOT = Path(__file__).resolve().parent.parent


def test_moving_mean():
    assert moving_mean([1, 2, 3, 4], window=2) == [1, 1.5, 2.5, 3.5]
    assert moving_mean([5.0], window=10) == [5.0]


def test_mean_ci95_matches_t_interval():
    m, lo, hi = mean_ci95([1.0, 2.0, 3.0])
    half = 4.303 * 1.0 / np.sqrt(3)  # t_{0.975, 2} * sd / sqrt(n), sd = 1
    assert m == 2.0 and lo == pytest.approx(2 - half) and hi == pytest.approx(2 + half)
    assert mean_ci95([4.0]) == (4.0, 4.0, 4.0)


def test_time_to_threshold_counts_full_windows_once_per_env_step():
    """Nine bad episodes, then one env step at which four episodes end: the last 10 first reach -200 after all four
    (not after the first two of them, which a check per row would take), and only full windows count."""
    run = {"steps": [200] * 9 + [400] * 4, "seconds": [1.0] * 9 + [2.0] * 4,
           "returns": [-230.0] * 9 + [-100.0, -100.0, -500.0, -500.0]}
    assert time_to_threshold(run, "steps", -200) is None  # after row 11 (-196) yes, after the step's last (-255) no
    run["returns"][-2:] = [-100.0, -100.0]
    assert time_to_threshold(run, "steps", -200) == 400 and time_to_threshold(run, "seconds", -200) == 2.0
    short = {"steps": [200, 400], "seconds": [1.0, 2.0], "returns": [-100.0, -100.0]}
    assert time_to_threshold(short, "steps", -200) is None  # two episodes: no 10-episode mean yet


def test_resample_is_a_step_function():
    assert resample([10, 20], [1.0, 2.0], [5, 10, 15, 25])[1:] == [1.0, 1.0, 2.0]
    assert np.isnan(resample([10, 20], [1.0, 2.0], [5])[0])


def test_band_and_summary():
    runs = [{"steps": [200, 400], "seconds": [1.0, 2.0], "returns": [-300.0, -100.0], "wall": 2.0},
            {"steps": [200, 400], "seconds": [1.5, 3.0], "returns": [-500.0, -500.0], "wall": 3.0}]
    b = band(runs, "steps", [200, 400])
    assert b["mean"] == [-400.0, (-200.0 - 500.0) / 2]
    for r in runs:  # ten episodes more each: the first at -100 reaches -200 at its 10th episode's step
        r["steps"] += [600 + 200 * i for i in range(10)]
        r["seconds"] += [3.0 + i for i in range(10)]
        r["returns"] += [r["returns"][-1]] * 10
    s = summarize(runs)
    assert s["reached"] == 1 and s["seeds"] == 2
    assert s["median_seconds_to_threshold"] == 10.0 and s["median_steps_to_threshold"] == 2000


@pytest.mark.slow
@pytest.mark.parametrize("script,keys", [
    ("throughput.py", {"notebook_steps_per_sec", "rows", "device", "torch"}),
    ("update.py", {"rows", "device", "torch"}),
    ("curve.py", {"configs", "grid", "seeds", "total_steps"}),
])
def test_bench_quick(script, keys, tmp_path):
    p = subprocess.run([sys.executable, str(ROOT / "bench" / script), "--quick", "--out", str(tmp_path)],
                       capture_output=True, text=True, cwd=ROOT, timeout=1800)
    assert p.returncode == 0, p.stderr[-2000:]
    data = json.loads((tmp_path / (script.replace(".py", ".json"))).read_text())
    assert keys <= data.keys()


def test_curve_quick_settings_pass_the_budget_check():
    """--quick shrinks the grid to 16 envs so its 6k-step budget still lets every run finish an episode."""
    args = parse_args(["--quick"])
    assert (args.seeds, args.total_steps, args.grid_num_envs, args.grid_seeds) == (2, 6_000, [16], 1)
    assert parse_args([]).grid_num_envs == [4, 16, 64]
    with pytest.raises(SystemExit):  # 64-env grid points need at least 12,800 steps
        parse_args(["--total-steps", "6000"])
    assert parse_args(["--total-steps", "6000", "--no-grid"]).total_steps == 6_000


def test_curve_population_worker_returns_one_run_per_member_in_seed_order():
    """The population layout's worker: one process, one record per member, seeds seed..seed+K-1, each member's
    episodes on its own env-step axis."""
    from bench.curve import worker

    rec = worker({"kind": "fastddpg", "config": {"num_envs": 2}, "seed": 3, "members": 3, "total_steps": 400,
                  "threads": 1})
    assert [m["seed"] for m in rec["members"]] == [3, 4, 5]
    for m in rec["members"]:
        assert m["steps"] == [400, 400] and len(m["returns"]) == 2 and m["wall"] == rec["wall"]


def test_curve_compare_layouts_interleaves_population_and_process_runs():
    from bench.curve import configs, plan_layouts

    args = parse_args(["--compare-layouts"])
    plan = [(name, pop) for name, _, pop in plan_layouts(configs({"num_envs": 4}), args)]
    assert plan == [("notebook", False), ("fastddpg-1", True), ("fastddpg-1 (process per seed)", False),
                    ("fastddpg-16 (process per seed)", False), ("fastddpg-16", True), ("fastest", True)]
    assert [pop for _, _, pop in plan_layouts(configs(None), parse_args(["--layout", "process"]))] == [False] * 3


def test_cpu_model_names_the_family_and_model_cpuinfo_gives(tmp_path, monkeypatch):
    """A VM's CPU may call itself only "AMD EPYC" for Zen 3 and Zen 4 alike: the family and model tell them apart.
    Only the first processor's block is read; without a name there (ARM) lscpu's is taken, and a machine with
    neither still gets a name."""
    import platform

    from bench.common import cpu_model as bench_cpu_model
    from fastddpg.core import cpuinfo
    from fastddpg.core.cpuinfo import cpu_model, read_cpuinfo

    assert bench_cpu_model is cpu_model  # the bench scripts and `fastddpg verify` name the CPU alike
    one = "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 1\nmodel name\t: AMD EPYC\n"
    (tmp_path / "one").write_text(one + "flags\t\t: fpu avx2\n")
    info = read_cpuinfo(str(tmp_path / "one"))
    assert info.vendor == "AuthenticAMD" and info.flags == {"fpu", "avx2"}
    assert cpu_model(info) == "AMD EPYC (family 25 model 1)"
    # a second processor's fields do not fill in what the first block lacks
    (tmp_path / "two").write_text("processor\t: 0\nmodel name\t: First\n\nprocessor\t: 1\ncpu family\t: 6\n"
                                  "model\t\t: 85\nflags\t\t: avx512f\n")
    info = read_cpuinfo(str(tmp_path / "two"))
    assert (info.family, info.model, info.flags) == ("", "", frozenset()) and cpu_model(info) == "First"

    (tmp_path / "arm").write_text("processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd\n")
    monkeypatch.setattr(cpuinfo, "lscpu_model_name", lambda: "Neoverse-N1")
    assert cpu_model(read_cpuinfo(str(tmp_path / "arm"))) == "Neoverse-N1"
    monkeypatch.setattr(cpuinfo, "lscpu_model_name", lambda: "")
    missing = read_cpuinfo(str(tmp_path / "none"))
    assert missing.vendor == "" and not missing.flags
    assert cpu_model(missing) == (platform.processor() or platform.machine())


def test_side_by_side_runs_alone_settings_alone_only():
    from bench.side_by_side import parse_args as side_args

    assert side_args(["--alone-settings", "threads2"]).alone_settings == ["threads2"]
    assert side_args([]).alone_settings == []
    with pytest.raises(SystemExit):
        side_args(["--alone-settings", "threads9"])
    # a setting to measure alone must be one of those measured: otherwise it would be left out without a word
    with pytest.raises(SystemExit):
        side_args(["--settings", "lease", "threads1", "--alone-settings", "threads2"])
    assert side_args(["--settings", "lease", "threads2", "--alone-settings", "threads2"]).alone_settings == ["threads2"]


def test_update_products_are_recorded_from_the_traced_graphs_and_replayed_as_they_ran():
    """bench/update.py's split of the hand-derived update: the dispatch mode sees the products of its traced graphs
    as it sees the eager parts' (the same calls, strides and ``out=`` buffers included), and the replay runs each
    product on tensors of the recorded layout."""
    import torch

    from bench.update import PRODUCT_OPS, TensorSpec, record_products, replay_products
    from fastddpg.algos import DDPG
    from fastddpg.learning.analytic import AnalyticParts
    from fastddpg.learning.replay import ReplayBuffer
    from fastddpg.learning.update import AdamHyper, Hyper

    def recorded(graphs: bool) -> list:
        torch.manual_seed(0)
        learner = DDPG(3, 1, (8, 8), torch.tensor([-2.0]), torch.tensor([2.0]), torch.device("cpu"),
                       Hyper(0.99, 0.005, 1.0, AdamHyper(1e-3), AdamHyper(1e-3)))
        buf = ReplayBuffer(64, 3, 1, torch.device("cpu"))
        buf.add(torch.randn(64, 3), torch.rand(64, 1), -torch.rand(64), torch.randn(64, 3), torch.zeros(64))
        fn = learner.analytic_update_fns(buf.as_batch, buf.width, graphs=graphs)[True]
        rows = buf.sample_rows(4, 16, torch.Generator().manual_seed(0))
        for i in range(3):  # traces the graphs, which TorchScript's executor profiles and then optimizes
            fn(learner.state, rows[i])
        parts = next(c.cell_contents for c in fn.__closure__ if isinstance(c.cell_contents, AnalyticParts))
        assert [part.traced for part in parts] == [graphs, graphs]
        return record_products(fn, learner.state, rows[3])

    calls = recorded(graphs=True)
    # five forward passes of three layers (target actor and critic, critic, actor, Q of the actor's action), and
    # the backward products of the critic's and the actor's losses
    assert len(calls) == 25 and all(c.op.overloadpacket in PRODUCT_OPS for c in calls)
    assert calls == recorded(graphs=False)
    weights = [c.args[2] for c in calls if c.op == torch.ops.aten.addmm.default]
    assert TensorSpec((8, 8), (1, 8), torch.float32, torch.device("cpu")) in weights  # an nn.Linear's W^T view
    outs = [c.kwargs["out"] for c in calls if "out" in c.kwargs]
    assert outs and all(isinstance(o, TensorSpec) for o in outs)

    ran = []
    real = torch.ops.aten.mm.out

    class Spy:
        overloadpacket = real.overloadpacket

        def __call__(self, a, b, out):
            ran.append((a.stride(), out.shape))
            return real(a, b, out=out)

    replay_products([c._replace(op=Spy()) if c.op == real else c for c in calls])()
    assert ran and ran == [(c.args[0].stride, torch.Size(c.kwargs["out"].size)) for c in calls if c.op == real]


def test_update_floor_runs_the_hand_derived_update_of_small_networks(monkeypatch):
    """bench/update.py's floor: the same hand-derived update, built with the floor's widths and timed at its batch."""
    import torch

    import bench.update as update

    built = []

    class Spy(update.DDPG):
        def __init__(self, obs_dim, act_dim, hidden, *args, **kwargs):
            built.append(tuple(hidden))
            super().__init__(obs_dim, act_dim, hidden, *args, **kwargs)

    monkeypatch.setattr(update, "DDPG", Spy)
    r = update.fastddpg_update_rate(update.FLOOR_BATCH, "analytic", torch.device("cpu"), n_updates=4, repeats=1,
                                    split=True, hidden=update.FLOOR_HIDDEN)
    # the timed learner and the steps' twin (`optimizer_steps`)
    assert built == [update.FLOOR_HIDDEN] * 2 and update.FLOOR_HIDDEN != update.HIDDEN
    assert r["updates_per_sec"] > 0 and r["products_us"] > 0 and r["steps_us"] > 0


def test_update_steps_run_adam_and_the_soft_update_on_a_twin_learner(monkeypatch):
    """bench/update.py's steps: each call is both Adam steps and the soft update, on a learner of their own, so the
    timed update's state (parameters, targets, Adam's moments and counts) is left as its own updates made it: bit for
    bit what the same updates give with the steps not run at all."""
    import torch

    import bench.update as update

    learners, calls = [], []

    class Spy(update.DDPG):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            learners.append(self)

    def timed_state_after(steps: bool) -> dict:
        learners.clear()
        with monkeypatch.context() as m:
            if not steps:
                m.setattr(update, "optimizer_steps", lambda *a: lambda: None)
            side = update.prepare_fastddpg(8, "analytic", torch.device("cpu"), split=True, hidden=(8, 8))
            out = side.repeat(3)
        assert out["steps_us"] > 0
        return torch.utils._pytree.tree_leaves(learners[0].state)

    real_soft = update.soft_update_
    monkeypatch.setattr(update, "DDPG", Spy)
    monkeypatch.setattr(update, "soft_update_", lambda *a: calls.append("soft") or real_soft(*a))
    with_steps = timed_state_after(steps=True)
    timed, twin = learners
    assert calls == ["soft"] * 3 and twin is not timed
    # the twin took one Adam step per network per call
    assert {k: twin.state["optim"][k]["step"].item() for k in ("critic", "actor")} == {"critic": 3, "actor": 3}
    without = timed_state_after(steps=False)
    assert len(with_steps) == len(without) > 10
    assert all(torch.equal(a, b) for a, b in zip(with_steps, without, strict=True))
    # a compiled or eager side has no steps of its own to time
    learners.clear()
    assert "steps_us" not in update.prepare_fastddpg(8, "off", torch.device("cpu"), split=True,
                                                     hidden=(8, 8)).repeat(1)


def test_update_sides_are_timed_in_rotating_rounds():
    """bench/update.py times one repeat of every side per round, the order rotated from round to round."""
    from bench.update import Prepared, interleaved

    calls = []

    def side(name):
        return Prepared(lambda n: calls.append((name, n)) or {"updates_per_sec": float(n)}, 0.0)

    runs = interleaved({k: side(k) for k in "ABC"}, n_updates=7, repeats=4)
    assert [c[0] for c in calls] == list("ABC" "BCA" "CAB" "ABC") and {c[1] for c in calls} == {7}
    assert {k: len(v) for k, v in runs.items()} == {"A": 4, "B": 4, "C": 4}
