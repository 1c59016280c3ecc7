"""Populations: K members in one stacked update equal K single-agent updates (DDPG, TD3 and SAC, with per-member
hyperparameters that differ), members are independent, and the population update compiles to one graph."""

from __future__ import annotations

import copy

import pytest
import torch
import torch._dynamo

from fastddpg.algos.population import Population
from fastddpg.learning.compile import compile_update
from fastddpg.learning.replay import ReplayBuffer
from tests.conftest import make_learner

CPU = torch.device("cpu")
OBS, ACT, B = 3, 2, 16
LOW, HIGH = torch.tensor([-2.0, -1.0]), torch.tensor([2.0, 3.0])
BUF = ReplayBuffer(1, OBS, ACT, CPU)  # only for its row layout (as_batch)
# three members with different hyperparameters: clipping active (0.05), off (0) and loose (10)
MEMBER_HYPER = [dict(gamma=0.99, tau=0.005, clip=0.05, actor_lr=1e-3, critic_lr=2e-3, policy_noise=0.2, noise_clip=0.5),
                dict(gamma=0.9, tau=0.05, clip=0.0, actor_lr=3e-3, critic_lr=1e-3, policy_noise=0.4, noise_clip=0.3),
                dict(gamma=0.5, tau=0.2, clip=10.0, actor_lr=5e-4, critic_lr=5e-3, policy_noise=0.1, noise_clip=0.05)]


def singles(num_critics: int, layer_norm: bool = False, policy_delay: int = 2) -> list:
    out = []
    for k, hp in enumerate(MEMBER_HYPER):
        torch.manual_seed(100 + k)
        out.append(make_learner(OBS, ACT, (8, 6), LOW, HIGH, layer_norm=layer_norm, num_critics=num_critics,
                                policy_delay=policy_delay, **hp))
    return out


def members_of(algo: str, layer_norm: bool = False, policy_delay: int = 2) -> list:
    """The three members of MEMBER_HYPER as single agents of ``algo`` (SAC: also three initial temperatures)."""
    if algo != "sac":
        return singles(2 if algo == "td3" else 1, layer_norm, policy_delay)
    from fastddpg.algos.sac import SAC, SACHyper
    from fastddpg.learning.update import AdamHyper

    out = []
    for k, hp in enumerate(MEMBER_HYPER):
        torch.manual_seed(100 + k)
        lr = (AdamHyper(hp["actor_lr"]), AdamHyper(hp["critic_lr"]), AdamHyper(hp["critic_lr"]))
        out.append(SAC(OBS, ACT, (8, 6), LOW, HIGH, CPU, SACHyper(hp["gamma"], hp["tau"], hp["clip"], *lr), layer_norm,
                       init_alpha=(1.0, 0.2, 0.05)[k]))
    return out


def random_rows(gen: torch.Generator, k: int, eps_dim: int) -> torch.Tensor:
    """(K, B, width + eps_dim) rows: random transitions, some terminal, with standard normal smoothing noise."""
    obs, next_obs = torch.randn(k, B, OBS, generator=gen), torch.randn(k, B, OBS, generator=gen)
    action = LOW + (HIGH - LOW) * torch.rand(k, B, ACT, generator=gen)
    reward = torch.randn(k, B, 1, generator=gen)
    term = (torch.rand(k, B, 1, generator=gen) < 0.25).float()
    return torch.cat([obs, action, reward, next_obs, term, torch.randn(k, B, eps_dim, generator=gen)], dim=-1)


def assert_member_equals(pop: Population, k: int, single, atol: float = 1e-5) -> None:
    got = pop.member(k)
    for name in single.module_names:
        for (pname, a), b in zip(got.state[name].items(), single.state[name].values(), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=atol,
                                       msg=lambda m, where=f"member {k} {name}.{pname}": f"{where}: {m}")
    for group in single.optimizer_groups:
        mine, theirs = got.state["optim"][group], single.state["optim"][group]
        assert float(mine["step"]) == float(theirs["step"])
        for key in ("exp_avg", "exp_avg_sq"):
            for a, b in zip(mine[key], theirs[key], strict=True):
                torch.testing.assert_close(a, b, rtol=0, atol=atol,
                                           msg=lambda m, where=f"member {k} {group} {key}": f"{where}: {m}")


def run_both(pop: Population, members: list, rows: torch.Tensor, update_number: int, pop_fns=None) -> tuple:
    actor_step = pop.is_actor_step(update_number)
    fns = pop_fns or pop.update_fns(BUF.as_batch, BUF.width)
    pop_metrics = fns[actor_step](pop.state, rows)
    single_metrics = torch.stack([m.update_fns(BUF.as_batch, BUF.width)[actor_step](m.state, rows[i])
                                  for i, m in enumerate(members)])
    return pop_metrics, single_metrics


@pytest.mark.parametrize("algo, layer_norm", [("ddpg", False), ("ddpg", True), ("td3", False), ("sac", True)])
def test_population_update_equals_k_single_updates(algo, layer_norm):
    members = members_of(algo, layer_norm)
    pop = Population(members)
    for k, m in enumerate(members):
        assert_member_equals(pop, k, m, atol=0)  # the population starts as exactly its members
    gen = torch.Generator().manual_seed(0)
    for u in range(1, 7):  # TD3: critic-only and full updates alternate
        rows = random_rows(gen, len(members), pop.eps_dim)
        pop_metrics, single_metrics = run_both(pop, members, rows, u)
        assert pop_metrics.shape == (3, len(pop.metric_names))
        torch.testing.assert_close(pop_metrics, single_metrics, rtol=0, atol=1e-5)
    for k, m in enumerate(members):
        assert_member_equals(pop, k, m)
    # the members really differ: the hyperparameters had an effect (clipping on one, not on another, ...)
    assert not torch.allclose(pop.state["actor"]["net.0.weight"][0], pop.state["actor"]["net.0.weight"][1])


def test_population_hyperparameters_are_per_member():
    """Swapping two members' hyperparameters changes their updates: the population does not use member 0's."""
    members = singles(1)
    pop = Population(members)
    swapped = copy.deepcopy(members)
    swapped[0].hyper, swapped[1].hyper = members[1].hyper, members[0].hyper
    pop_swapped = Population(swapped)
    rows = random_rows(torch.Generator().manual_seed(1), 3, 0)
    a = pop.update_fns(BUF.as_batch, BUF.width)[True](pop.state, rows)
    b = pop_swapped.update_fns(BUF.as_batch, BUF.width)[True](pop_swapped.state, rows)
    assert not torch.allclose(a[0], b[0]) and torch.equal(a[2], b[2])


@pytest.mark.parametrize("algo", ["ddpg", "td3", "sac"])
@pytest.mark.parametrize("perturb", ["params", "rows", "nan_rows"])
def test_members_are_independent(algo, perturb):
    """Perturbing member 0's parameters or replay rows (even with NaN) changes nothing in members 1 and 2."""
    members = members_of(algo, policy_delay=1)
    base, other = Population(members), Population(members)
    rows = random_rows(torch.Generator().manual_seed(2), 3, base.eps_dim)
    other_rows = rows.clone()
    if perturb == "params":
        with torch.no_grad():
            for name in ("actor", "critic", *(("alpha",) if algo == "sac" else ())):
                rows0 = other._rows(name, 0)
                for p in other.state[name].values():
                    p[rows0] += 0.1 * torch.randn_like(p[rows0])
    else:
        other_rows[0] = float("nan") if perturb == "nan_rows" else other_rows[0] + 1.0
    m_base = base.update_fns(BUF.as_batch, BUF.width)[True](base.state, rows)
    m_other = other.update_fns(BUF.as_batch, BUF.width)[True](other.state, other_rows)
    assert not torch.equal(m_base[0], m_other[0])  # member 0 did see the perturbation
    assert torch.equal(m_base[1:], m_other[1:])
    for name in base.module_names:
        rest = slice(other._rows(name, 1).start, None)
        for p, q in zip(base.state[name].values(), other.state[name].values(), strict=True):
            assert torch.equal(p[rest], q[rest]), name
    for group in base.optimizer_groups:
        rest = slice(other._rows(group, 1).start, None)
        for key in ("exp_avg", "exp_avg_sq"):
            for p, q in zip(base.state["optim"][group][key], other.state["optim"][group][key], strict=True):
                assert torch.equal(p[rest], q[rest])


def test_population_replay_members_sample_their_own_rows():
    buf = ReplayBuffer(10, 1, 1, CPU, members=3)
    n = 4  # envs per member
    for step in range(4):  # 16 rows per member into 10 slots: wraps around
        member = torch.arange(3).repeat_interleave(n).float()
        obs = (member * 1000 + step * n + torch.arange(n).repeat(3)).reshape(-1, 1)
        buf.add(obs, torch.zeros(12, 1), member, obs + 0.5, torch.zeros(12))
    assert len(buf) == 10 and buf.data.shape == (3, 10, 5)
    rows = buf.sample_rows(5, 7, torch.Generator().manual_seed(0))
    assert rows.shape == (5, 3, 7, 5)
    for k in range(3):
        member_obs = rows[:, k, :, 0]
        assert torch.all(rows[:, k, :, 2] == k)  # the reward column holds the member id
        assert torch.all((member_obs >= k * 1000 + 6) & (member_obs < k * 1000 + 16))  # the newest 10 only
    state = buf.state_dict()
    again = ReplayBuffer(10, 1, 1, CPU, members=3)
    again.load_state_dict(state)
    assert torch.equal(again.data, buf.data) and again.ptr == buf.ptr


def test_population_acting_uses_each_members_actor():
    members = singles(1)
    pop = Population(members)
    obs = torch.randn(3 * 5, OBS)
    want = torch.cat([m.policy(obs[5 * k:5 * k + 5]) for k, m in enumerate(members)])
    torch.testing.assert_close(pop.policy(obs), want, rtol=1e-6, atol=1e-6)
    noise = torch.randn(15, ACT)
    want = torch.cat([m.explore(obs[5 * k:5 * k + 5], noise[5 * k:5 * k + 5]) for k, m in enumerate(members)])
    torch.testing.assert_close(pop.explore(obs, noise), want, rtol=1e-6, atol=1e-6)


def test_population_state_dict_round_trip():
    members = singles(2)
    pop = Population(members)
    rows = random_rows(torch.Generator().manual_seed(3), 3, pop.eps_dim)
    pop.update_fns(BUF.as_batch, BUF.width)[True](pop.state, rows)
    saved = copy.deepcopy(pop.state_dict())
    fresh = Population(singles(2))
    fresh.load_state_dict(saved)
    for name in ("actor", "critic", "target_actor", "target_critic"):
        for p, q in zip(pop.state[name].values(), fresh.state[name].values(), strict=True):
            assert torch.equal(p, q)
    assert torch.equal(fresh.state["optim"]["critic"]["step"], torch.ones(3))


def test_population_td3_compiles_to_one_graph_equal_to_eager():
    """Both TD3 update functions (critic-only, full) of a 3-member population with per-member hyperparameters:
    fullgraph, compiled once each, and equal to eager."""
    torch._dynamo.reset()
    members = singles(2, layer_norm=True)
    eager, comp = Population(members), Population(members)
    fns = {key: compile_update(fn, "default", CPU) for key, fn in comp.update_fns(BUF.as_batch, BUF.width).items()}
    gen = torch.Generator().manual_seed(4)
    with torch._dynamo.config.patch(error_on_recompile=True):
        for u in range(1, 6):
            rows = random_rows(gen, 3, comp.eps_dim)
            m_comp = fns[comp.is_actor_step(u)](comp.state, rows)
            m_eager = eager.update_fns(BUF.as_batch, BUF.width)[eager.is_actor_step(u)](eager.state, rows)
            torch.testing.assert_close(m_comp, m_eager, rtol=1e-4, atol=1e-5)
    for k in range(3):
        assert_member_equals(comp, k, eager.member(k))
