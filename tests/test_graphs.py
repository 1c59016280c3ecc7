"""GraphPart (fastddpg.learning.graphs): a traced graph that computes what its function computes, traced again when
its inputs change shape or arrangement, and eager where it cannot be traced."""

from __future__ import annotations

import copy
from typing import NamedTuple

import pytest
import torch

from fastddpg.algos import DDPG, TD3
from fastddpg.learning.analytic import AnalyticPlans, ddpg_parts, ddpg_update_analytic, td3_parts, td3_update_analytic
from fastddpg.learning.graphs import GraphPart
from fastddpg.learning.replay import ReplayBuffer
from fastddpg.learning.update import AdamHyper, Hyper
from fastddpg.tools.verify import learner_state

CPU = torch.device("cpu")


class Static(NamedTuple):
    weight: torch.Tensor  # (in, out)
    scale: float
    acc: list[torch.Tensor]  # [(out,)]


def _mean_product(static: Static, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A part with a batch size in its arithmetic, a constant and an in-place write into ``static``."""
    y = rows @ static.weight * static.scale
    static.acc[0].add_(y.sum(0))
    return y.sum(0) * (1.0 / int(rows.shape[0])), y


def _counted(fn, calls: list[int]):
    """``fn``, counting its Python calls in ``calls[0]``: a graph's run does not call it, a trace does."""

    def counted(static, rows):
        calls[0] += 1
        return fn(static, rows)

    return counted


def test_a_graph_part_computes_what_its_function_does_and_retraces_for_another_shape_or_static():
    weight = torch.randn(5, 3, dtype=torch.float64)
    static = Static(weight, 0.3, [torch.zeros(3, dtype=torch.float64)])
    calls = [0]
    part = GraphPart(_counted(_mean_product, calls))
    for batch in (8, 8, 3, 8, 3):
        rows = torch.randn(batch, 5, dtype=torch.float64)
        mean, y = part(static, rows)
        assert part.traced
        want = rows @ weight * 0.3
        torch.testing.assert_close(y, want, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(mean, want.mean(0), rtol=1e-12, atol=1e-12)  # 1/B of this call's batch
    assert calls == [2]  # one trace per batch size, kept: back to 8 and 3 runs the graphs
    weight.mul_(2.0)  # a write by anyone else shows in the graph: the static tensors are its inputs
    rows = torch.randn(8, 5, dtype=torch.float64)
    torch.testing.assert_close(part(static, rows)[1], rows @ weight * 0.3, rtol=1e-12, atol=1e-12)
    # the graph's in-place writes land in static's own tensor, once per call (a call that traces runs it once)
    acc = torch.zeros(3, dtype=torch.float64)
    other = Static(torch.randn(5, 3, dtype=torch.float64), 2.0, [acc])
    _, y = part(other, rows)  # another static: traced for it, with its constant
    torch.testing.assert_close(y, rows @ other.weight * 2.0, rtol=1e-12, atol=1e-12)
    _, y = part(other, rows)
    torch.testing.assert_close(acc, 2 * y.sum(0), rtol=1e-12, atol=1e-12)
    assert calls == [3]


def test_rows_off_the_cpu_run_the_function_itself():
    calls = [0]
    part = GraphPart(_counted(lambda static, rows: rows * static[0], calls))
    rows = torch.empty(4, 2, device="meta")
    for _ in range(2):
        assert part((2.0,), rows).device.type == "meta"
    assert calls == [2] and not part.traced


def test_a_part_that_cannot_be_traced_warns_and_runs_eagerly():
    def not_a_tensor(static: Static, rows: torch.Tensor) -> float:  # a trace must return tensors
        return float(rows.sum())

    part = GraphPart(not_a_tensor)
    rows, static = torch.ones(4, 2), Static(torch.ones(2, 1), 1.0, [])
    with pytest.warns(UserWarning, match="not_a_tensor runs eagerly"):
        assert part(static, rows) == 8.0
    assert not part.traced and part(static, 2 * rows) == 16.0  # eager from then on, without tracing again
    assert not GraphPart(_mean_product, enabled=False).traced


def _learner(algo: str) -> tuple[DDPG | TD3, ReplayBuffer]:
    torch.manual_seed(0)
    hyper = Hyper(0.99, 0.05, 0.5, AdamHyper(3e-3), AdamHyper(1e-2), policy_noise=0.3, noise_clip=0.4)
    low, high = torch.tensor([-2.0, -1.0]), torch.tensor([2.0, 3.0])
    learner = (DDPG(3, 2, (256, 256), low, high, CPU, hyper) if algo == "ddpg" else
               TD3(3, 2, (256, 256), low, high, CPU, hyper, policy_delay=2))
    buf = ReplayBuffer(256, 3, 2, CPU)
    n = 256
    buf.add(torch.randn(n, 3), low + (high - low) * torch.rand(n, 2), -16 * torch.rand(n), torch.randn(n, 3),
            (torch.rand(n) < 0.2).float())
    return learner, buf


@pytest.mark.parametrize("algo", ["ddpg", "td3"])
def test_the_graph_update_is_the_eager_update(algo):
    """The analytic update with its parts as graphs against the same parts run eagerly, in float32 as runs use it:
    10 updates in lockstep (the graph's learner reset to eager's state before each), every tensor of the learner
    state and every metric bit for bit (the same kernels on the same numbers, one machine); and the parts really ran
    as graphs, traced once each. 256 wide, as runs are: where a product's k is that long, MKL sums it in blocks, so a
    bias added after the product (a traced addmm split into mm + add) rounds differently from addmm's."""
    learner, buf = _learner(algo)
    twin = copy.deepcopy(learner)
    plans, twin_plans = AnalyticPlans(learner.nets), AnalyticPlans(twin.nets)
    if algo == "ddpg":
        eager, graph = ddpg_parts(buf.as_batch, learner.hyper, graphs=False), ddpg_parts(buf.as_batch, twin.hyper)
    else:
        eager = td3_parts(buf.as_batch, buf.width, learner.hyper, graphs=False)
        graph = td3_parts(buf.as_batch, buf.width, twin.hyper)
    calls = {"critic": [0], "actor": [0]}
    for name in calls:
        part = getattr(graph, name)
        part.fn = _counted(part.fn, calls[name])
    gen = torch.Generator().manual_seed(1)
    mine, theirs = learner_state(twin), learner_state(learner)
    for u in range(10):
        rows = buf.sample_rows(1, 64, gen)[0]
        if algo == "td3":
            rows = torch.cat([rows, torch.randn(64, 2, generator=gen)], -1)
        for name, t in mine.items():
            t.copy_(theirs[name])
        if algo == "ddpg":
            want = ddpg_update_analytic(plans(learner.state), learner.state, rows, learner.hyper, eager)
            got = ddpg_update_analytic(twin_plans(twin.state), twin.state, rows, twin.hyper, graph)
        else:
            step = learner.is_actor_step(u + 1)
            want = td3_update_analytic(plans(learner.state), learner.state, rows, learner.hyper, eager, step)
            got = td3_update_analytic(twin_plans(twin.state), twin.state, rows, twin.hyper, graph, step)
        assert torch.equal(got, want), f"metrics of update {u + 1}: {got} against {want}"
        for name, t in mine.items():
            assert torch.equal(t, theirs[name]), f"{name} after update {u + 1}"
    assert graph.critic.traced and graph.actor.traced
    assert calls == {"critic": [1], "actor": [1]}  # traced once each, then the graphs ran
    assert not (eager.critic.traced or eager.actor.traced)
