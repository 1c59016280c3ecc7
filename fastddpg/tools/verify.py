"""`fastddpg verify`: proof that the fast paths compute what the eager update computes, on this machine.

From one initial learner (`fastddpg.algos`) and one fixed sequence of minibatches, the update is run eager, compiled
(``torch.compile(fullgraph=True)``, as the trainer runs it on the CPU), on CUDA compiled inside the CUDA
graph (`CudaGraphUpdate`, as the trainer runs it on CUDA), and where the algorithm has one (DDPG, TD3) with hand-derived
gradients (`fastddpg.learning.analytic`, ``--compile analytic``); the acting step eager and compiled. After
every update, every tensor of every path is compared with eager's: the actor's and critic's parameters, the
target networks, both Adam states (exp_avg, exp_avg_sq, step) and each metric.

The verdict is taken in float64: every path is also built over a float64 copy of the learner (`in_float64`) and run
on the same rows in float64, and passes when every element of every tensor satisfies ``|x - x_eager| <= ATOL64 +
RTOL64 |x_eager|`` against eager in float64 (and is finite); the report names the tensor (and update) furthest out
of tolerance. In float64 a compiled update that computes the same equations agrees with eager to ~1e-11 (CrossQ
at the default sizes: |diff| <= 6e-12), and a wrong equation is orders of magnitude beyond.
The float32 paths, which the trainer runs, are reported alongside (largest |x - x_eager| per group, its excess over
``ATOL + RTOL |x_eager|``, and the largest distance from the float64 update) and judged per group less strictly,
since float32 cannot resolve every update: a group must be within ``ATOL + RTOL |x_eager|`` of eager float32 where
float32 resolves it, i.e. where eager on the same batch with its rows in reverse order stays within that
(`float32_resolved`), so a path whose float32 arithmetic alone is wrong fails though its float64 twin passes.
CrossQ's is the case in point: a path that rounds otherwise (compiled, or eager on the same rows in another order)
sometimes moves the critics' Adam moments by ~1e-3 in one update, a discrete step (as when a pre-activation within
float32 rounding of zero takes the other side of a ReLU: BatchRenorm centres them, and a batch of 2 x 256 rows
through 1024-wide critics has millions); and the bias of a unit active on every row has a gradient that is zero up
to rounding, which Adam turns into a step of up to lr either way. Eager float32 is itself ~1e-3 away from float64 at
such places.

Each path's updates/s is measured on its float32 update after the comparison run (which is its warm-up:
compilation and graph capture happen there), with a device synchronize before the clock is read.

With ``--num-seeds K`` the learner is a population of K members (seeds seed .. seed+K-1, each with its own
batches): the same comparison covers the stacked networks, the (K,) hyperparameters and the one population graph,
every member's tensors at once (tests/test_population.py checks the population against K single updates).

Plumbing only: the math is `fastddpg.learning.update`'s, the update functions are the algorithm's
(`Algorithm.update_fns`) and the compiled wrappers are `fastddpg.learning.compile`'s, exactly as the trainer builds
them.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import platform
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..algos import Algorithm, algorithm_class
from ..algos.population import Population
from ..core import fileio
from ..core.config import Config
from ..core.cpuinfo import cpu_model
from ..core.registry import ALGORITHMS
from ..core.verifyoptions import ACT_ATOL, ACT_RTOL, ATOL, ATOL64, F32_RESOLVED, RTOL, RTOL64, VerifyOptions
from ..learning.compile import CudaGraphUpdate, compile_explore, compile_update
from ..learning.cpu_matmul import resolve_cpu_matmul
from ..learning.replay import ReplayBuffer

GROUPS = ("params", "targets", "optimizer", "metrics")
# Pendulum-v1's shapes and ranges: obs (cos theta, sin theta, theta dot), one action in [-2, 2].
OBS_DIM, ACT_DIM, ACTION_BOUND, MAX_SPEED = 3, 1, 2.0, 8.0
TERMINATED_FRACTION = 0.05  # Pendulum never terminates; a few terminal rows exercise the (1 - d) factor
# Eager updates that make the initial state: from a fresh learner the targets equal the online networks (a soft
# update bug would be invisible at first) and Adam's moments are empty; after these, both are as mid-training.
WARMUP_UPDATES = 20

UpdateCall = Callable[[torch.Tensor], torch.Tensor]  # rows -> metrics, the learner's state bound
PathFactory = Callable[["VerifySetup", Algorithm], dict[bool, UpdateCall]]


@dataclass
class VerifySetup:
    """Everything the paths share: the initial learner, the replay layout and the rows of every update.

    ``rows`` is (updates, batch_size, width + eps_dim) on ``device``, or (updates, K, batch_size, width + eps_dim)
    for a population of K: replay rows gathered from a seeded buffer, followed by TD3's standard normal smoothing
    noise (eps_dim = act_dim for TD3, 0 for DDPG). ``rows[i]`` is update number ``first_update + i`` (the learner
    has had ``first_update - 1`` eager updates).
    """

    algo: str
    device: torch.device
    learner: Algorithm
    buffer: ReplayBuffer
    rows: torch.Tensor
    cfg: Config
    first_update: int = 1

    def raw_update_fns(self, learner: Algorithm, **overrides: Any) -> dict[bool, Any]:
        """``learner``'s update functions ``fn(state, rows)``, keyed by actor step, with the setup's
        hyperparameters; ``overrides`` replace some (``policy_delay`` or a field of
        `fastddpg.learning.update.Hyper`)."""
        if overrides:
            learner = copy.copy(learner)  # the same state, other hyperparameters
            learner.policy_delay = overrides.pop("policy_delay", learner.policy_delay)
            learner.hyper = learner.hyper._replace(**overrides)
        return learner.update_fns(self.buffer.as_batch, self.buffer.width)

    def update_fns(self, learner: Algorithm, **overrides: Any) -> dict[bool, UpdateCall]:
        """`raw_update_fns` with ``learner``'s state bound: ``fn(rows) -> metrics``."""
        return {k: functools.partial(fn, learner.state) for k, fn in self.raw_update_fns(learner, **overrides).items()}

    def is_actor_step(self, update_number: int) -> bool:
        return self.learner.is_actor_step(update_number)


def member_config(cfg: Config, k: int) -> Config:
    """Member ``k``'s config in a verified population: its own gamma, tau and learning rates (member 0: ``cfg``'s),
    as a --grid gives them, so that a path which mixes the members' (K,) hyperparameters up (a broadcast along the
    wrong axis, member 0's value for all) gives other numbers than eager and fails."""
    if k == 0:
        return cfg
    own = {"gamma": cfg.gamma - 0.01 * k, "tau": cfg.tau * (1 + 0.5 * k), "actor_lr": cfg.actor_lr / (1 + k),
           "critic_lr": cfg.critic_lr * (1 + 0.5 * k)}
    refused = ALGORITHMS[cfg.algo].refuses  # CrossQ has no target networks: no tau of its own
    return dataclasses.replace(cfg, **{name: v for name, v in own.items() if name not in refused})


def build_setup(algo: str, device: torch.device, updates: int, batch_size: int, hidden_sizes: tuple[int, ...],
                seed: int = 0, buffer_size: int = 4096, warmup: int = WARMUP_UPDATES, members: int = 1,
                layer_norm: bool = False) -> VerifySetup:
    """A learner initialised from ``seed`` (``members`` > 1: a population, member k from seed + k with its own
    hyperparameters, `member_config`; ``layer_norm``: LayerNorm networks) and given
    ``warmup`` eager updates, and ``updates`` further batches of Pendulum-shaped rows to verify on.

    All random numbers come from a CPU generator and are then moved to ``device``, so every device verifies
    the same numbers."""
    cfg = Config(algo=algo, batch_size=batch_size, hidden_sizes=hidden_sizes, seed=seed, layer_norm=layer_norm)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    low, high = torch.full((ACT_DIM,), -ACTION_BOUND), torch.full((ACT_DIM,), ACTION_BOUND)
    singles = []
    for k in range(members):
        torch.manual_seed(seed + k)
        singles.append(algorithm_class(algo).from_config(member_config(cfg, k), OBS_DIM, ACT_DIM, low, high,
                                                         device))
    learner = singles[0] if members == 1 else Population(singles)
    buffer = ReplayBuffer(buffer_size, OBS_DIM, ACT_DIM, device)
    theta = (torch.rand(buffer_size, generator=gen) * 2 - 1) * torch.pi
    speed = (torch.rand(buffer_size, generator=gen) * 2 - 1) * MAX_SPEED
    action = (torch.rand(buffer_size, ACT_DIM, generator=gen) * 2 - 1) * ACTION_BOUND
    reward = -(theta.square() + 0.1 * speed.square() + 0.001 * action.square().sum(-1))  # in [-16.3, 0]
    terminated = (torch.rand(buffer_size, generator=gen) < TERMINATED_FRACTION).float()
    buffer.add(pendulum_obs(buffer_size, gen).to(device), action.to(device), reward.to(device),
               pendulum_obs(buffer_size, gen).to(device), terminated.to(device))
    lead = (warmup + updates, batch_size) if members == 1 else (warmup + updates, members, batch_size)
    rows = buffer.data.cpu()[torch.randint(0, buffer_size, lead, generator=gen)]
    if learner.eps_dim:  # the algorithm's extra random inputs (TD3's smoothing noise), standard normal
        rows = torch.cat([rows, torch.randn(*lead, learner.eps_dim, generator=gen)], dim=-1)
    setup = VerifySetup(algo, device, learner, buffer, rows[warmup:].to(device), cfg, first_update=warmup + 1)
    fns = setup.update_fns(learner)
    for u, batch in enumerate(rows[:warmup].to(device), start=1):
        fns[learner.is_actor_step(u)](batch)
    return setup


def pendulum_obs(n: int, gen: torch.Generator) -> torch.Tensor:
    """(n, 3) observations in Pendulum's ranges: (cos theta, sin theta, theta dot), theta dot in [-8, 8]."""
    theta = (torch.rand(n, generator=gen) * 2 - 1) * torch.pi
    speed = (torch.rand(n, generator=gen) * 2 - 1) * MAX_SPEED
    return torch.stack([theta.cos(), theta.sin(), speed], dim=-1)


def in_float64(learner: Algorithm) -> Algorithm:
    """A float64 copy of ``learner``: its modules (parameters and buffers: running statistics, action bounds), Adam
    states and tensor hyperparameters (a population's (K,) values) in double precision, the same values."""
    new = copy.deepcopy(learner)
    for name in new.module_names:
        getattr(new, name)._apply(_float64)
    new.action_low, new.action_high = new.action_low.double(), new.action_high.double()
    optim = {g: {k: [_float64(t) for t in v] if isinstance(v, list) else _float64(v) for k, v in opt.items()}
             for g, opt in new.state["optim"].items()}
    new._bind_state(optim=optim)
    new.hyper = _float64_fields(new.hyper)
    return new


def _float64(t: torch.Tensor) -> torch.Tensor:
    """``t`` in float64; a 0-dim tensor (a single agent's Adam step count) as shape (1,), which broadcasts alike
    (`fastddpg.learning.update.per_tensor` reads it as a per-member value of one member): with torch 2.13 on the CPU,
    a compiled function (any backend, even "eager") loses in-place updates of a 0-dim float64 tensor it is given
    (``s.add_(1.0)`` leaves s as it was, and reads of s see the old value)."""
    if not t.is_floating_point():
        return t
    return t.double() if t.dim() else t.double().reshape(1)


def _float64_fields(record: Any) -> Any:
    """A hyperparameter record (nested NamedTuples) with every floating tensor field in float64."""
    if isinstance(record, torch.Tensor):
        return record.double() if record.is_floating_point() else record
    if isinstance(record, tuple) and hasattr(record, "_fields"):
        return record._replace(**{f: _float64_fields(getattr(record, f)) for f in record._fields})
    return record


# --- the paths ----------------------------------------------------------------------------------------------------

def eager_path(setup: VerifySetup, learner: Algorithm) -> dict[bool, UpdateCall]:
    return setup.update_fns(learner)


def compiled_path(mode: str) -> PathFactory:
    """torch.compile without a CUDA graph (on the CPU: exactly the trainer's compiled update)."""
    def make(setup: VerifySetup, learner: Algorithm) -> dict[bool, UpdateCall]:
        return {k: functools.partial(compile_update(fn, mode, setup.device, cuda_graph=False), learner.state)
                for k, fn in setup.raw_update_fns(learner).items()}
    return make


def cuda_graph_path(mode: str) -> PathFactory:
    """The compiled update inside a CUDA graph, built by `compile_update` exactly as the trainer builds it on CUDA.
    On the CPU (tests only) the same `CudaGraphUpdate` static-buffer logic runs without capture."""
    def make(setup: VerifySetup, learner: Algorithm) -> dict[bool, UpdateCall]:
        fns = setup.raw_update_fns(learner).items()
        if setup.device.type == "cuda":
            return {k: functools.partial(compile_update(fn, mode, setup.device), learner.state) for k, fn in fns}
        return {k: functools.partial(CudaGraphUpdate(compile_update(fn, mode, setup.device), capture=False),
                                     learner.state) for k, fn in fns}
    return make


def analytic_path(setup: VerifySetup, learner: Algorithm) -> dict[bool, UpdateCall]:
    """The hand-derived update (`fastddpg.learning.analytic`), as the trainer runs it with ``--compile analytic``."""
    fns = learner.analytic_update_fns(setup.buffer.as_batch, setup.buffer.width)
    if fns is None:
        raise ValueError(f"--algo {setup.algo} has no hand-derived update")
    return {k: functools.partial(fn, learner.state) for k, fn in fns.items()}


def default_paths(device: torch.device, mode: str = "default", graph_logic_on_cpu: bool = False
                  ) -> dict[str, PathFactory]:
    """eager, compiled, and on CUDA compiled+cudagraph (on the CPU only with ``graph_logic_on_cpu``)."""
    paths: dict[str, PathFactory] = {"eager": eager_path, "compiled": compiled_path(mode)}
    if device.type == "cuda" or graph_logic_on_cpu:
        paths["compiled+cudagraph" if device.type == "cuda" else "compiled+graph-logic"] = cuda_graph_path(mode)
    return paths


# --- running and comparing ----------------------------------------------------------------------------------------

def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def learner_state(learner: Algorithm) -> dict[str, torch.Tensor]:
    """Every tensor the update writes, by name, aliasing the live storage: ``params.`` actor and critic,
    ``targets.`` their targets, ``optimizer.`` each Adam's exp_avg and exp_avg_sq per parameter name and step."""
    state: dict[str, torch.Tensor] = {}
    for name, module in learner.modules().items():
        group = "targets" if name.startswith("target_") else "params"
        state.update({f"{group}.{name}.{k}": v for k, v in module.state_dict().items()})
    for name, opt in learner.state["optim"].items():
        state[f"optimizer.{name}_opt.step"] = opt["step"]
        for pname, m, v in zip(learner.state[name], opt["exp_avg"], opt["exp_avg_sq"], strict=True):
            state[f"optimizer.{name}_opt.exp_avg.{pname}"] = m
            state[f"optimizer.{name}_opt.exp_avg_sq.{pname}"] = v
    return state


@dataclass
class Deviation:
    """The largest deviation of one tensor group from eager over all updates: ``max_abs`` |x - x_eager|, and
    ``excess``, the largest |x - x_eager| / (atol + rtol |x_eager|) (> 1: out of tolerance; inf: non-finite),
    with the tensor and the verified update (1-based; 0 for the acting step) where it occurs; ``max_abs_float64``
    |x - x64|, the distance from the float64 update where it was given (else nan)."""

    max_abs: float
    excess: float
    tensor: str
    update: int = 0
    max_abs_float64: float = float("nan")


class DeviationTracker:
    """Running per-tensor deviations of one path from eager, kept on the device (one host read in `result`)."""

    def __init__(self, atol: float, rtol: float) -> None:
        self.atol, self.rtol = atol, rtol
        self.names: list[str] | None = None
        self.rows: list[torch.Tensor] = []  # per comparison: (3, T) max |x - eager|, max excess, max |x - x64|

    def add(self, got: dict[str, torch.Tensor], want: dict[str, torch.Tensor],
            float64: dict[str, torch.Tensor] | None = None) -> None:
        """Compare ``got`` with eager's ``want`` (and, given, measure its distance from the float64 update
        ``float64``); the same tensor names in each."""
        if self.names is None:
            self.names = list(want)
        if list(got) != self.names or list(want) != self.names:
            raise ValueError(f"tensor names differ from eager's: {sorted(set(got) ^ set(want))}")
        cols = []
        for n in self.names:
            g, w = got[n].double().reshape(-1), want[n].double().reshape(-1)
            if not g.numel():
                cols.append(g.new_zeros(3))
                continue
            d = (g - w).abs()
            excess = d / (self.atol + self.rtol * w.abs())
            bad = ~(torch.isfinite(g) & torch.isfinite(w))  # NaN or inf on either side is never "close"
            excess = torch.where(bad, torch.inf, excess)
            far = (g - float64[n].reshape(-1)).abs().nan_to_num(nan=torch.inf).max() if float64 is not None \
                else d.new_full((), torch.nan)
            cols.append(torch.stack([d.nan_to_num(nan=torch.inf).max(), excess.max(), far]))
        self.rows.append(torch.stack(cols, dim=1))

    def result(self, groups: tuple[str, ...]) -> dict[str, Deviation]:
        """Per group (tensor names are ``group.rest``): the largest |diff|, and the worst tensor and update; a group
        the learner has no tensor of (``targets`` of an algorithm without target networks) is left out."""
        assert self.names is not None, "nothing compared"
        stats = torch.stack(self.rows).cpu()  # (U, 3, T)
        out = {}
        for g in groups:
            cols = [i for i, n in enumerate(self.names) if n.split(".", 1)[0] == g]
            if not cols:
                continue
            s = stats[:, :, cols]
            u, t = divmod(int(s[:, 1].argmax()), len(cols))
            out[g] = Deviation(float(s[:, 0].max()), float(s[u, 1, t]), self.names[cols[t]].split(".", 1)[1], u + 1,
                               float(s[:, 2].max()))
        return out


@dataclass
class PathResult:
    """One path: its deviation per group from eager (eager's own is 0; an update path's in float64, which judges
    it, and in float32 in ``float32``, reported), its rate, and whether it passed."""

    name: str
    deviations: dict[str, Deviation]
    updates_per_sec: float
    ratio_to_eager: float = 1.0
    passed: bool = True
    worst: Deviation = field(default_factory=lambda: Deviation(0.0, 0.0, "-"))
    float32: dict[str, Deviation] = field(default_factory=dict)
    float32_spread: dict[str, Deviation] = field(default_factory=dict)
    float32_failed: list[str] = field(default_factory=list)

    def judge(self, eager_rate: float) -> None:
        """Pass iff every group is within the float64 tolerance and, for an update path, its float32 run is within
        the float32 tolerance in every group that float32 resolves (`float32_resolved`)."""
        self.worst = max(self.deviations.values(), key=lambda d: d.excess)
        self.float32_failed = [g for g, d in self.float32.items()
                               if d.excess > 1.0 and float32_resolved(self.float32_spread.get(g))]
        self.passed = self.worst.excess <= 1.0 and not self.float32_failed
        self.ratio_to_eager = self.updates_per_sec / eager_rate


def float32_resolved(spread: Deviation | None) -> bool:
    """Whether float32 determines a tensor group's update well within ATOL + RTOL |eager|: eager on the same batch
    with its rows in reverse order (the same equations, rounded otherwise) stays within F32_RESOLVED of that
    tolerance. Where it does not (CrossQ's critic update and what depends on it), no float32 path can be held to
    it, and the float64 run alone judges the group."""
    return spread is None or spread.excess <= F32_RESOLVED


def time_updates(fns: dict[bool, UpdateCall], rows: torch.Tensor, policy_delay: int, first: int, n: int,
                 repeats: int, device: torch.device) -> float:
    """Median calls/s over ``repeats`` x ``n`` calls, update number u = first, first + 1, ... (an actor step iff
    u % policy_delay == 0); outputs are summed on the device and the device is synced before each clock read
    (the warm-up is the caller's)."""
    rates = []
    acc = torch.zeros((), device=device)
    u = first
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        for i in range(n):
            acc += fns[u % policy_delay == 0](rows[i % rows.shape[0]]).sum()
            u += 1
        acc.cpu()  # a host read: every queued call has finished
        rates.append(n / (time.perf_counter() - t0))
    return statistics.median(rates)


def verify_updates(setup: VerifySetup, paths: dict[str, PathFactory], timed_updates: int, repeats: int
                   ) -> list[PathResult]:
    """Step every path in lockstep with eager over ``setup.rows`` and compare after each update; then time them.

    Before update u each path's learner is set (in place, as a resume does: compiled and captured graphs stay
    valid) to eager's state before update u, so what is compared is one update of each path from the same state
    and batch. Free-running copies would drift apart chaotically (ReLU kinks and Adam's normalisation amplify
    1e-7 rounding into ~1e-3 weight differences after 50 TD3 updates), which says nothing about correctness.
    Update u is an actor step iff u % policy_delay == 0 (`Algorithm.is_actor_step`).

    Each path runs twice per update from that state: built over a float64 copy of the learner (`in_float64`) on the
    rows in float64, judged against eager in float64 (ATOL64, RTOL64), and as the trainer runs it, in float32,
    against eager in float32 (ATOL, RTOL) and the float64 update, judged in the groups float32 resolves: those where
    eager on the rows in reverse order, run beside them, stays within ATOL, RTOL (see the module docstring)."""
    names = setup.learner.metric_names
    setup64 = copy.copy(setup)
    setup64.learner, setup64.rows = in_float64(setup.learner), setup.rows.double()
    runs = {32: (setup, copy.deepcopy), 64: (setup64, in_float64)}
    eager = {bits: copy.deepcopy(s.learner) for bits, (s, _) in runs.items()}
    eager_steps = {bits: eager_path(s, eager[bits]) for bits, (s, _) in runs.items()}
    eager_states = {bits: learner_state(lr) for bits, lr in eager.items()}
    fns, states, trackers = {}, {}, {}
    for bits, (s, convert) in runs.items():
        for name, make in paths.items():
            learner = convert(setup.learner)
            fns[bits, name], states[bits, name] = make(s, learner), learner_state(learner)
            trackers[bits, name] = DeviationTracker(*((ATOL, RTOL) if bits == 32 else (ATOL64, RTOL64)))
    reordered = copy.deepcopy(setup.learner)  # float32's own spread: eager on each batch with its rows reversed
    reordered_step, reordered_state = eager_path(setup, reordered), learner_state(reordered)
    reordered_tracker = DeviationTracker(ATOL, RTOL)
    for i in range(setup.rows.shape[0]):
        actor_step = setup.is_actor_step(setup.first_update + i)
        before = {n: t.clone() for n, t in eager_states[32].items()}
        want = {}
        for bits in (64, 32):
            for n, t in eager_states[bits].items():
                t.copy_(before[n])
            rows = runs[bits][0].rows[i]
            want[bits] = {**eager_states[bits], **metric_dict(eager_steps[bits][actor_step](rows), names)}
            for name in paths:
                for n, t in states[bits, name].items():
                    t.copy_(before[n])
                got = {**states[bits, name], **metric_dict(fns[bits, name][actor_step](rows), names)}
                trackers[bits, name].add(got, want[bits], want[64] if bits == 32 else None)
        for n, t in reordered_state.items():
            t.copy_(before[n])
        got = {**reordered_state, **metric_dict(reordered_step[actor_step](setup.rows[i].flip(-2)), names)}
        reordered_tracker.add(got, want[32], want[64])
    spread = reordered_tracker.result(GROUPS)
    results = []
    for name in paths:
        rate = time_updates(fns[32, name], setup.rows, setup.learner.policy_delay,
                            setup.first_update + setup.rows.shape[0], timed_updates, repeats, setup.device)
        results.append(PathResult(name, trackers[64, name].result(GROUPS), rate,
                                  float32=trackers[32, name].result(GROUPS), float32_spread=spread))
    for r in results:
        r.judge(results[0].updates_per_sec)
    return results


def metric_dict(metrics: torch.Tensor, names: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """The metrics (M,) (or a population's (K, M)) as ``metrics.<name>`` tensors of shape () (or (K,)), cloned (a
    CUDA-graph path returns one static output tensor that its next call overwrites)."""
    metrics = metrics.clone()
    return {f"metrics.{n}": metrics[..., i] for i, n in enumerate(names)}


def verify_acting(setup: VerifySetup, num_obs: int, timed_steps: int, repeats: int) -> list[PathResult]:
    """The acting step ``clip(mu(obs) + noise, low, high)`` (`Algorithm.explore`) eager and compiled on one fixed
    (num_obs, obs_dim) batch of observations and (num_obs, act_dim) noise large enough that the clip acts (a
    population of K: num_obs rounded up to a multiple of K, each member acting on its own rows)."""
    members = getattr(setup.learner, "members", 1)
    num_obs = -(-num_obs // members) * members
    gen = torch.Generator().manual_seed(setup.cfg.seed + 1)
    obs = pendulum_obs(num_obs, gen).to(setup.device)
    noise = (torch.randn(num_obs, ACT_DIM, generator=gen) * ACTION_BOUND).to(setup.device)
    learner = setup.learner
    outs, results = {}, []
    for compiled in (False, True):
        name = "compiled" if compiled else "eager"
        own = copy.deepcopy(learner)
        explore = compile_explore(own.explore) if compiled else own.explore
        with torch.no_grad():
            outs[name] = explore(obs, noise).clone()
            rate = time_updates({True: lambda rows, f=explore: f(obs, noise)}, obs[None], 1, 1, timed_steps,
                                repeats, setup.device)
        results.append(PathResult(name, {}, rate))
    for r in results:
        tracker = DeviationTracker(ACT_ATOL, ACT_RTOL)
        tracker.add({"actions.actions": outs[r.name]}, {"actions.actions": outs["eager"]})
        r.deviations = tracker.result(("actions",))
        r.deviations["actions"].update = 0  # one call, no update number
        r.judge(results[0].updates_per_sec)
    return results


# --- the command --------------------------------------------------------------------------------------------------

def device_info(device: torch.device) -> dict[str, Any]:
    """The machine the figures come from: GPU model, driver and compute capability on CUDA; CPU and threads."""
    info: dict[str, Any] = {"device": str(device), "torch": torch.__version__, "python": platform.python_version(),
                            "machine": platform.machine(), "cpu": cpu_model(),
                            "threads": torch.get_num_threads(), "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    if device.type == "cpu":
        info["cpu_matmul"] = resolve_cpu_matmul("auto")  # the compiled paths' products (the trainer's default)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        major, minor = torch.cuda.get_device_capability(index)
        info.update(gpu=torch.cuda.get_device_name(index), capability=f"{major}.{minor}", cuda=torch.version.cuda,
                    driver=nvidia_driver())
    return info


def nvidia_driver() -> str | None:
    """The NVIDIA driver version from ``nvidia-smi`` (None where it is missing)."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None


def run_verify(opts: VerifyOptions, paths: dict[str, PathFactory] | None = None) -> dict[str, Any]:
    """Verify the update paths (``paths``, default `default_paths`) and the acting step; returns the report as
    a JSON-able dict with ``passed``. Raises ConfigError for bad options."""
    device = opts.validate()
    setup = build_setup(opts.algo, device, opts.updates, opts.batch_size, tuple(opts.hidden_sizes), opts.seed,
                        members=opts.num_seeds)
    t0 = time.perf_counter()
    if paths is None:
        paths = default_paths(device, opts.compile_mode, opts.graph_logic_on_cpu)
        if setup.learner.analytic_update_fns(setup.buffer.as_batch, setup.buffer.width) is not None:
            paths["analytic"] = analytic_path
    update_results = verify_updates(setup, paths, opts.timed_updates, opts.repeats)
    acting = verify_acting(setup, 256, opts.timed_updates, opts.repeats) if opts.acting else []
    return {
        "command": "verify", **device_info(device), "algo": opts.algo, "num_seeds": opts.num_seeds,
        "updates": opts.updates,
        "batch_size": opts.batch_size, "hidden_sizes": list(opts.hidden_sizes), "seed": opts.seed,
        "compile_mode": opts.compile_mode, "timed_updates": opts.timed_updates, "repeats": opts.repeats,
        "tolerance": {"atol": ATOL, "rtol": RTOL, "acting_atol": ACT_ATOL, "acting_rtol": ACT_RTOL,
                      "float64_atol": ATOL64, "float64_rtol": RTOL64, "float32_resolved_below": F32_RESOLVED},
        "update_paths": [_as_dict(r) for r in update_results], "acting_paths": [_as_dict(r) for r in acting],
        "passed": all(r.passed for r in update_results + acting), "seconds": time.perf_counter() - t0,
    }


def _as_dict(r: PathResult) -> dict[str, Any]:
    """A path's JSON: its verdict and, for an update path, ``float32``: how its float32 run compares (reported)."""
    out = {"name": r.name, "passed": r.passed, "rate_per_sec": r.updates_per_sec, "ratio_to_eager": r.ratio_to_eager,
           "worst_tensor": r.worst.tensor, "worst_update": r.worst.update, "worst_excess": r.worst.excess,
           "deviations": _groups_dict(r.deviations)}
    if r.float32:
        worst = max(r.float32.values(), key=lambda d: d.excess)
        out["float32"] = {"worst_tensor": worst.tensor, "worst_update": worst.update, "worst_excess": worst.excess,
                          "max_abs_diff": max(d.max_abs for d in r.float32.values()),
                          "max_abs_diff_float64": max(d.max_abs_float64 for d in r.float32.values()),
                          "deviations": _groups_dict(r.float32), "failed_groups": r.float32_failed,
                          "unresolved_groups": [g for g, d in r.float32_spread.items() if not float32_resolved(d)],
                          "reversed_rows": _groups_dict(r.float32_spread)}
    return out


def _groups_dict(deviations: dict[str, Deviation]) -> dict[str, dict[str, Any]]:
    return {g: {"max_abs_diff": d.max_abs, "excess": d.excess, "tensor": d.tensor, "update": d.update,
                **({} if d.max_abs_float64 != d.max_abs_float64 else {"max_abs_diff_float64": d.max_abs_float64})}
            for g, d in deviations.items()}


def format_report(report: dict[str, Any]) -> str:
    """A compact table: per path the max |diff| from eager per group in float64 (the verdict's), the float32 run's
    max |diff| from eager, its excess over the float32 tolerance and its max |diff| from the float64 update, the
    worst tensor, rate and ratio; then a FAIL line naming the tensor for each failing path, and the verdict."""
    where = report.get("gpu") or report["cpu"] + (f", compiled products: {report['cpu_matmul']}"
                                                   if report.get("cpu_matmul") else "")
    who = report["algo"] + (f" population of {report['num_seeds']}" if report.get("num_seeds", 1) > 1 else "")
    unresolved = report["update_paths"][0].get("float32", {}).get("unresolved_groups", []) if report["update_paths"] \
        else []
    lines = [f"fastddpg verify: {who} on {report['device']} ({where}), torch {report['torch']}; "
             f"{report['updates']} updates of batch {report['batch_size']}, hidden {report['hidden_sizes']}",
             f"tolerance, each update in float64: |x - eager| <= {ATOL64:g} + {RTOL64:g} |eager| (acting, float32: "
             f"{ACT_ATOL:g} + {ACT_RTOL:g} |eager|); the float32 update (f32 columns) against {ATOL:g} + {RTOL:g} "
             f"|eager| where float32 resolves it (eager on reversed rows within {F32_RESOLVED:g}x of that), and its "
             "distance from the float64 update",
             *([f"float32 does not resolve: {', '.join(unresolved)} (judged in float64 alone)"] if unresolved else []),
             ""]
    head = (f"{'path':<28}" + "".join(f"{g:>11}" for g in GROUPS) + f"{'f32 diff':>10}{'f32 tol':>9}{'f32-f64':>9}"
            f"  {'rate/s':>9} {'x eager':>7}  ok  worst")
    lines.append(head)
    for kind, key in (("update", "update_paths"), ("acting", "acting_paths")):
        for r in report[key]:
            devs = r["deviations"]
            if kind == "acting":
                cells = f"{'actions':>33}{devs['actions']['max_abs_diff']:>11.2e}{'':>28}"
            else:
                f32 = r.get("float32", {})
                cells = "".join(f"{devs[g]['max_abs_diff']:>11.2e}" if g in devs else f"{'':>11}" for g in GROUPS)
                cells += (f"{f32['max_abs_diff']:>10.1e}{f32['worst_excess']:>8.2g}x{f32['max_abs_diff_float64']:>9.1e}"
                          if f32 else f"{'':>28}")
            worst = "-" if r["worst_excess"] == 0 else r["worst_tensor"] + (
                f" @{r['worst_update']}" if r["worst_update"] else "") + f" ({r['worst_excess']:.2g} of tol)"
            lines.append(f"{kind + ' ' + r['name']:<28}{cells}  {r['rate_per_sec']:>9,.0f} {r['ratio_to_eager']:>6.2f}x"
                         f"  {'ok' if r['passed'] else 'NO':<2}  {worst}")
    lines.append("")
    for r in report["update_paths"] + report["acting_paths"]:
        if not r["passed"] and r["worst_excess"] > 1.0:
            at = f" at update {r['worst_update']}" if r["worst_update"] else ""
            bits = ", in float64" if "float32" in r else ""
            lines.append(f"FAIL {r['name']}: {r['worst_tensor']} differs from eager{at} "
                         f"({r['worst_excess']:.3g}x the tolerance{bits})")
        for g in r.get("float32", {}).get("failed_groups", []):
            d = r["float32"]["deviations"][g]
            lines.append(f"FAIL {r['name']}: in float32, {g}.{d['tensor']} differs from eager at update {d['update']} "
                         f"({d['excess']:.3g}x the float32 tolerance, which eager on the rows in reverse order keeps "
                         f"within {F32_RESOLVED:g}x)")
    lines.append("PASS: every path matches eager within tolerance" if report["passed"] else
                 "FAIL: a fast path does not compute what the eager update computes")
    return "\n".join(lines)


def write_json(report: dict[str, Any], path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    return fileio.write_json(out, report)
