"""The training loop: vector env -> actor + noise -> env step -> one replay write -> sampled batches -> updates.

Everything per step stays on the training device. Episode returns and lengths are accumulated as device
tensors and recorded, per vector step, in the device-side log (`fastddpg.training.devicelog`); update metrics are summed
there too. Both come to the host in one transfer every ``log_every`` env steps (a report), which is also when
callbacks see new data. The only host<->device traffic per vector step is what a CPU-simulated env needs:
actions to the host, observations back.

The trainer writes no files itself. At every report it builds one `fastddpg.core.schema.Report` (the new episode,
update and probe rows by name, and the counters) and calls each callback as ``cb(trainer, report)``. A callback
may also have ``at_start(trainer)`` (when `Trainer.train` starts), ``after_step(trainer)`` (after every vector
step), ``after_report(trainer, report)`` (at the end of a vector step that reported, after the checkpoint of that
step, if any, so ``report.checkpoint`` is final) and ``at_end(trainer)`` (once, when the run ends or is stopped
by a signal). A callback with a ``state_key`` also has ``state_dict()`` and ``load_state_dict(state)``: its state
is saved in the trainer's `Trainer.state_dict` (so in every checkpoint) and handed back before ``at_start`` of a
restored trainer; one with ``summary_fields()`` adds them to the summary. The probe snapshots
(`fastddpg.training.probes`) are taken by the trainer before it builds a report.

The trainer owns the checkpoint cadence: with a ``checkpointer`` (`fastddpg.runs.checkpoint.Checkpointer`, which
`fastddpg.train` gives a run with a run directory) it writes one every `checkpoint_interval` env steps, after that
step's ``after_step`` callbacks (so a checkpoint holds the evaluation of its own step) and after a report (so it
holds no unreported device logs, and a non-finite state raises before it is saved), and one when the run ends or
is stopped by a signal, after the ``at_end`` callbacks. The report of that step names it (``report.checkpoint``).

A population (K = grid points x ``num_seeds`` > 1 members, `fastddpg.algos.population`) runs its members in
lockstep: one vector env of K*N envs (member k's envs are rows k*N .. k*N + N - 1), one replay buffer of
(K, capacity, width), one update of every member per update step. ``num_envs``, ``global_step`` and the replay
ratio count one member's envs and steps, so ``total_steps``, ``start_steps`` and ``update_after`` mean per member
what they mean for a single run. Tables get a member column; the update row a callback sees is then a list of K
rows, one per member.

Seeding a population (`Config.member_configs`: member g*S + s of S seeds has seed ``seed + s*N``): a member's seed
does what a single run's seed does to its env seeds (env j: its seed + j; on resume, `resume_seed` of its seed +
j) and to its initial weights. The random actions, the exploration noise, the replay indices and the algorithm's
extra inputs come from the one generator of the population (seeded with ``seed``), in one draw per step for the
S seeds, repeated over the G grid points: members with the same seed at different grid points draw the same
numbers (a paired comparison), members with different seeds independent ones. With S = 1 that one draw has a
single run's shapes, so every member draws what the single run with ``seed`` draws; with S > 1 member s draws its
own slice of a joint draw, not what a single run with its seed would draw.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch

from ..algos import Algorithm, make_algorithm
from ..algos.population import Population
from ..core.config import Config, ConfigError, format_hyper, select_device
from ..core.lazy import LazyModule
from ..core.schema import (
    EPISODE_COLUMNS,
    PROBE_COLUMNS,
    EpisodeRow,
    Last10,
    ProbeRow,
    Report,
    update_columns,
    with_member,
)
from ..core.threads import apply_threads, release_lease, resolve_threads
from ..envs.vector import VecEnv, make_env
from ..learning.compile import compile_explore, compile_update, resolve_compile_mode
from ..learning.cpu_matmul import resolve_cpu_matmul
from ..learning.replay import ReplayBuffer, ReplayMemoryError, allocation_failed, available_host_bytes
from .denormals import apply_flush_denormal
from .devicelog import DeviceLog, Pulled, episode_rows, metric_means
from .failsafe import (
    Interval,
    StopSignals,
    TrainingInterrupted,
    check_health,
    health_tensor,
)
from .probes import ProbeRecorder
from .thread_tuner import TUNE_MIN_UPDATES, ThreadTuner

if TYPE_CHECKING:
    import pandas as pd
else:  # imported at first use (fastddpg.core.lazy): a run needs pandas and plotly only at its end
    pd = LazyModule("pandas")


@dataclass
class TrainResult:
    """What `train` returns: tidy DataFrames, the summary, and the trained algorithm (its networks)."""

    config: Config
    episodes: pd.DataFrame
    updates: pd.DataFrame
    probes: pd.DataFrame
    summary: dict[str, Any]
    algo: Algorithm = field(repr=False)
    run_dir: Path | None = None  # the run directory written, if the run had one (`fastddpg.train`)
    evals: pd.DataFrame | None = None  # with --eval-every: the evaluations (eval.csv columns), from `fastddpg.train`

    @property
    def actor(self) -> torch.nn.Module:
        return self.algo.actor

    @property
    def critic(self) -> torch.nn.Module:
        return self.algo.critic


class CheckpointWriter(Protocol):
    """What writes the trainer's checkpoints (`fastddpg.runs.checkpoint.Checkpointer`): ``write`` saves one right after
    a report and returns its path."""

    def at_start(self, trainer: Trainer) -> None: ...

    def write(self, trainer: Trainer) -> Path: ...


def checkpoint_interval(cfg: Config, num_envs: int) -> int:
    """Env steps between checkpoints: ``checkpoint_every``, or for 0 ('auto') a quarter of ``total_steps``
    rounded up to whole report intervals (``log_every`` in whole vector steps), so checkpoints fall on reports."""
    if cfg.checkpoint_every:
        return cfg.checkpoint_every
    report_steps = max(1, math.ceil(cfg.log_every / num_envs)) * num_envs
    return math.ceil(cfg.total_steps / 4 / report_steps) * report_steps


class Trainer:
    """Owns the env, the algorithm, the replay buffer and the counters of one run (see the module docstring)."""

    def __init__(self, cfg: Config, env: VecEnv | None = None,
                 callbacks: list[Callable[..., None]] | None = None,
                 checkpointer: CheckpointWriter | None = None) -> None:
        cfg.validate()
        self.cfg = cfg
        # before the first parallel region, so that OpenMP's worker threads inherit the modes (training.denormals)
        self.flush_denormal = apply_flush_denormal(cfg.flush_denormal)
        self.device = select_device(cfg.device)
        self.threads = apply_threads(cfg.threads)
        try:
            self._build(cfg, env, callbacks, checkpointer)
        except BaseException:  # a trainer that will not train holds no share of the cores, nor envs it made
            if env is None and getattr(self, "env", None) is not None:
                self.env.close()
            release_lease()
            raise

    def _build(self, cfg: Config, env: VecEnv | None, callbacks: list[Callable[..., None]] | None,
               checkpointer: CheckpointWriter | None) -> None:
        """The rest of `__init__`, after the thread lease: the env, the algorithm, the buffer and the counters."""
        # auto threads changed: re-divided at reports (core.threads) or measured (training.thread_tuner)
        self.thread_changes: list[dict[str, Any]] = []
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed)
        self.members = k = cfg.num_members
        # the grid points: blocks of members with the same seeds, which share their random draws (paired)
        self.grid_blocks = g = len(cfg.grid_points()) if k > 1 else 1
        self.env = env if env is not None else make_env(cfg.env, cfg.num_envs * k, self.device, cfg.vector_mode,
                                                        cfg.env_backend, repeats=g)
        n, o, a = self.env.num_envs, self.env.obs_dim, self.env.act_dim
        if n % k:
            raise ValueError(f"a population of {k} needs a multiple of {k} envs, not {n}")
        self.num_envs = n // k  # per member
        self.gen = torch.Generator(device=self.device).manual_seed(cfg.seed)
        self.action_low = self.env.action_low.to(self.device)
        self.action_high = self.env.action_high.to(self.device)
        member_cfgs = cfg.member_configs()
        if k == 1:  # a single run (with a one-point --grid: that point's values)
            self.algo = make_algorithm(member_cfgs[0], o, a, self.action_low, self.action_high, self.device)
        else:
            self.algo = make_population(cfg, o, a, self.action_low, self.action_high, self.device)
        pop = k if k > 1 else 0  # members of the replay buffer, device log and probes (0: a single run's layout)
        try:
            self.buffer = ReplayBuffer(cfg.replay_size, o, a, self.device, members=pop, repeats=g)
        except ReplayMemoryError as e:
            each = f" ({k} members' buffers)" if k > 1 else ""
            raise does_not_fit(f"--replay-size {cfg.replay_size:,} needs {e.nbytes / 2**30:,.1f} GiB{each}",
                               self.device, e.available,
                               f"lower --replay-size{' or --num-seeds' if k > 1 else ''}") from None
        sigmas = [c.noise_sigma for c in member_cfgs]
        sigma = (sigmas[0] if len(set(sigmas)) == 1 else  # per member on a --grid of noise_sigma: each env's row
                 torch.tensor(sigmas, device=self.device).repeat_interleave(self.num_envs).reshape(-1, 1))
        self.noise = self.algo.make_noise(cfg, n, self.gen, sigma, repeats=g)  # the algorithm's way to explore

        as_batch, width = self.buffer.as_batch, self.buffer.width
        analytic_fns = self.algo.analytic_update_fns(as_batch, width)
        self.compile_mode = resolve_compile_mode(cfg.compile, self.device, self.planned_updates(),
                                                 self.algo.analytic_auto_max_updates if analytic_fns else 0)
        self.compile_seconds = 0.0
        self.first_update_s: float | None = None  # seconds from the trainer's start to its first update's end
        self.eval_seconds = 0.0  # evaluation during training (a callback adds its time): not training time
        self._off_clock_s = 0.0  # seconds of reports, callbacks and checkpoints in the loop: off the tuner's clock
        # which kernels a compiled CPU update's matrix products run (fastddpg.learning.cpu_matmul); None otherwise
        compiled = self.compile_mode not in ("off", "analytic")
        self.cpu_matmul = resolve_cpu_matmul(cfg.cpu_matmul) if compiled and self.device.type == "cpu" else None
        if self.compile_mode == "analytic":
            if analytic_fns is None:
                raise ConfigError(f"--compile analytic: --algo {cfg.algo} has no hand-derived update here; use "
                                  "--compile auto or default")
            self.update_fns = analytic_fns
        else:
            self.update_fns = {key: compile_update(fn, self.compile_mode, self.device, cpu_matmul=cfg.cpu_matmul)
                               for key, fn in self.algo.update_fns(as_batch, width).items()}
        self._untimed = set(self.update_fns) if compiled else set()  # first calls compile
        # auto threads on a CPU: 1 thread or the share, whichever trains faster (not for a compiled update, whose
        # C++ kernels keep the thread count they were compiled for)
        tuned = (cfg.threads == 0 and self.device.type == "cpu" and not compiled
                 and self.planned_updates() >= TUNE_MIN_UPDATES)
        self.thread_tuner = ThreadTuner(self.threads, clock=self._training_clock) if tuned else None
        # acting is compiled too where it pays (CUDA: one fused kernel chain instead of ~10 launches per step)
        compiled_acting = compiled and self.device.type == "cuda"
        self.explore = compile_explore(self.algo.explore) if compiled_acting else self.algo.explore

        # the probes draw from a generator of their own, so diagnostics never change what is learned
        self.probes = ProbeRecorder(cfg.probe_n, cfg.probe_every_episodes, cfg.batch_size,
                                    torch.Generator(device=self.device).manual_seed(cfg.seed + 1), members=pop)
        self.callbacks: list[Callable[..., None]] = list(callbacks or [])
        self.log: Callable[[str], None] = (lambda msg: None) if cfg.quiet else print
        self.checkpointer = checkpointer
        self.last_checkpoint: Path | None = None  # the last checkpoint written (or restored); named by a stop
        self.last_report: Report | None = None
        self._reports = 0  # reports so far in this process
        self._next_checkpoint = 0  # the env step of the next periodic checkpoint
        self.restored_states: dict[str, Any] = {}  # callbacks' states from `load_state_dict`, by state_key

        # counters (host ints: they advance by known amounts, no device read needed)
        self.global_step = 0
        self.vector_steps = 0
        self.num_updates = 0
        self.num_episodes = 0  # over all members
        self.member_episodes = [0] * k  # each member numbers its episodes on its own (a single run: [num_episodes])
        self.update_credit = Fraction(0)  # updates owed but not yet run (the replay ratio's fractional part)
        self.ratio = cfg.replay_ratio
        # device-side state: the episodes in progress, and the log of the current report interval
        self.ep_return = torch.zeros(n, device=self.device)
        self.ep_len = torch.zeros(n, device=self.device)
        self.device_log = DeviceLog(self.num_envs, cfg.log_every, len(self.algo.metric_names), self.device, pop)
        # host-side tables
        self.episode_rows: list[EpisodeRow] = []  # in the order the episodes ended
        self.last10 = Last10()  # the one last-10 helper, fed every episode row
        self.update_rows: list[dict[str, float]] = []  # a population's: K per report, with a "member" key
        self._t_start = time.perf_counter()
        self._t_last_report = self._t_start
        self._steps_at_last_report = 0
        self._updates_at_last_report = 0
        self._eval_seconds_at_last_report = 0.0
        self.obs = self.env.reset(seed=self.env_seeds(cfg.seed))

    def close(self) -> None:
        """Close the envs and give back this process's share of the cores (`fastddpg.core.threads`), for a trainer
        that will not train: a run refused after it was built. `train` does both when it ends."""
        self.env.close()
        release_lease()

    @property
    def metric_names(self) -> tuple[str, ...]:
        return self.algo.metric_names

    @property
    def probe_rows(self) -> list[ProbeRow]:
        return self.probes.rows

    def member_labels(self) -> list[str]:
        """One label per member, for messages: its seed and grid values."""
        return [", ".join([f"seed {c.seed}", *(f"{n} {format_hyper(v)}" for n, v in point.items())])
                for c, point in zip(self.cfg.member_configs(),
                                    [p for p in self.cfg.grid_points() for _ in range(self.cfg.num_seeds)],
                                    strict=True)]

    def env_seeds(self, seed: int, at_step: int | None = None) -> int | list[int]:
        """What `VecEnv.reset` takes: a single run's ``seed`` (env i gets seed + i); a population's one seed per
        env, member k's env j getting its member seed + j. ``at_step``: the seeds after a resume at that step
        (`resume_seed` of the run's, or each member's, seed)."""
        def start(s: int) -> int:
            return s if at_step is None else resume_seed(s, at_step)

        if self.members == 1:
            return start(seed)
        return [start(c.seed) + j for c in self.cfg.member_configs() for j in range(self.num_envs)]

    def planned_updates(self) -> int:
        """Gradient updates this run will perform (`Config.planned_updates`)."""
        return self.cfg.planned_updates()

    # --- the whole run ------------------------------------------------------------------------------------------
    def train(self) -> TrainResult:
        """Run until ``total_steps`` env steps are done (rounded up to whole vector steps).

        While training, the first SIGINT or SIGTERM finishes the current vector step, reports, runs the
        callbacks' ``at_end`` (a checkpoint callback writes one) and raises `TrainingInterrupted` (carrying the
        result so far); a second one exits the process at once. The previous signal handlers are restored on
        return. A NaN or Inf found at a report raises `NonFiniteError` (``at_end`` does not run: no checkpoint of
        that state is written).
        """
        for cb in self.callbacks:
            key = getattr(cb, "state_key", None)
            if key is not None and key in self.restored_states:
                cb.load_state_dict(self.restored_states[key])
        if self.checkpointer is not None:
            self.checkpointer.at_start(self)
            every = checkpoint_interval(self.cfg, self.num_envs)
            self._next_checkpoint = (self.global_step // every + 1) * every
        self._call("at_start")
        with StopSignals() as stop:
            try:
                while self.global_step < self.cfg.total_steps and stop.signum is None:
                    reports = self._reports
                    self.step()
                    with self._off_clock():
                        self._call("after_step")
                        if self.checkpointer is not None and self._next_checkpoint <= self.global_step \
                                < self.cfg.total_steps:
                            self.checkpoint()
                            every = checkpoint_interval(self.cfg, self.num_envs)
                            self._next_checkpoint = (self.global_step // every + 1) * every
                        if self._reports != reports:
                            self._call("after_report", self.last_report)
                if self.device_log.pending:
                    self.flush()
                self.probes.at_end(self)  # the end-of-run snapshot: in probe_rows (a RunWriter writes it at_end)
                self._call("at_end")
                if self.checkpointer is not None:
                    self.checkpoint()
            finally:
                self.env.close()
                release_lease()  # an idle process (a notebook kernel, a reused Ray worker) holds no share of the cores
        if stop.signum is not None:
            with StopSignals(stopping=True):  # building the result takes a while: a second signal still exits
                result = self.result()
            raise TrainingInterrupted(stop.signum, self.global_step, self.last_checkpoint, result)
        return self.result()

    def _call(self, hook: str, *args: Any) -> None:
        """Each callback's ``hook(self, *args)``, in order, where it has one."""
        for cb in self.callbacks:
            fn = getattr(cb, hook, None)
            if fn is not None:
                fn(self, *args)

    def checkpoint(self) -> Path:
        """Report what is pending, then write a checkpoint with the ``checkpointer``; the last report names it."""
        if self.checkpointer is None:
            raise RuntimeError("Trainer.checkpoint() needs a checkpointer")
        if self.device_log.pending:
            self.flush()
        self.last_checkpoint = self.checkpointer.write(self)
        if self.last_report is not None:
            self.last_report.checkpoint = self.last_checkpoint
        return self.last_checkpoint

    # --- one vector step -------------------------------------------------------------------------------------
    @torch.no_grad()
    def act(self, obs: torch.Tensor) -> torch.Tensor:
        """obs (N, obs_dim) -> exploratory actions (N, act_dim) (a population's: K*N rows): uniform during
        start_steps, else the algorithm's acting step (mu(s) + noise, clipped to the action bounds)."""
        if self.global_step < self.cfg.start_steps:
            g = self.grid_blocks  # one draw for the seeds, repeated over the grid points (see the module docstring)
            u = torch.rand(obs.shape[0] // g, self.action_low.shape[0], device=self.device, generator=self.gen)
            if g > 1:
                u = u.repeat(g, 1)
            return self.action_low + (self.action_high - self.action_low) * u
        return self.explore(obs, self.noise.sample())

    def step(self) -> None:
        """Act, step the N envs, write N transitions, and run the updates this step is owed."""
        action = self.act(self.obs)
        s = self.env.step(action)
        self.buffer.add(self.obs, action, s.reward, s.next_obs, s.terminated)
        ended = torch.maximum(s.terminated, s.truncated)
        self.ep_return += s.reward
        self.ep_len += 1.0
        self.device_log.record_step(ended, self.ep_return, self.ep_len, self.wall_time())
        keep = 1.0 - ended
        self.ep_return *= keep
        self.ep_len *= keep
        self.noise.reset(ended)
        self.obs = s.obs
        self.global_step += self.num_envs
        self.vector_steps += 1

        if self.global_step >= self.cfg.update_after and len(self.buffer) >= self.cfg.batch_size:
            self.update_credit += self.num_envs * self.ratio
            k = int(self.update_credit)
            if k:
                self.update_credit -= k
                self.run_updates(k)
                if self.thread_tuner is not None:
                    self._run_on(self.thread_tuner.observe(self.num_updates), "measured")
        if self.device_log.full:
            with self._off_clock():
                self.flush()

    def run_updates(self, k: int) -> None:
        """k gradient updates, their sample indices (and the algorithm's extra random inputs, appended to the
        rows) drawn at once on the device, so the update itself holds no RNG: compiled == eager, and a CUDA graph
        replays without RNG state. Which function runs follows the host's update counter: no device branch."""
        cfg, algo = self.cfg, self.algo
        rows = self.buffer.sample_rows(k, cfg.batch_size, self.gen)
        extra = algo.extra_inputs(k, cfg.batch_size, self.gen)
        if extra is not None:
            rows = torch.cat([rows, extra], dim=-1)
        for i in range(k):
            actor_step = algo.is_actor_step(self.num_updates + 1)
            if actor_step in self._untimed:
                self._first_compiled_update(actor_step, rows[i])
            else:
                self.device_log.record_update(self.update_fns[actor_step](algo.state, rows[i]), actor_step)
            self.num_updates += 1
        if self.first_update_s is None:  # once per process: the host already waited for a compiling first call
            self.first_update_s = self.wall_time()

    def _first_compiled_update(self, actor_step: bool, rows: torch.Tensor) -> None:
        """The first call of each update function compiles; say so and time it (a one-off sync)."""
        what = "the update" if len(self.update_fns) == 1 else ("the full update" if actor_step else
                                                               "the critic-only update")
        products = f", products: {self.cpu_matmul}" if self.cpu_matmul else ""
        self.log(f"compiling {what} (torch.compile, mode={self.compile_mode}{products}) ...")
        t0 = time.perf_counter()
        metrics = self.update_fns[actor_step](self.algo.state, rows)
        self.device_log.record_update(metrics, actor_step)
        metrics.sum().cpu()  # wait for the compiled update to finish before reading the clock
        seconds = time.perf_counter() - t0
        self.compile_seconds += seconds
        self.log(f"compiled in {seconds:.1f} s")
        self._untimed.discard(actor_step)

    def wall_time(self) -> float:
        """Seconds since the trainer started: episodes.csv's clock. A resumed run's goes on from its checkpoint's
        (the seconds up to the checkpoint, then this process's): time lost after the checkpoint is not on it."""
        return time.perf_counter() - self._t_start

    def _training_clock(self) -> float:
        """Seconds on a clock that stands still during reports, callbacks (an evaluation, a run directory's
        writes) and checkpoints: what the thread tuner times, so that such a pause inside a timed window counts for
        neither thread count."""
        return time.perf_counter() - self._off_clock_s

    @contextlib.contextmanager
    def _off_clock(self) -> Iterator[None]:
        """Keep the time of the block off `_training_clock` (the blocks are never nested)."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self._off_clock_s += time.perf_counter() - t0

    def _run_on(self, threads: int, why: str) -> None:
        """Set torch's threads to ``threads`` where they differ; a change of the run's count (the share's, or the
        tuner's choice, not a probe's window) goes into ``thread_changes`` with ``why``."""
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        chosen = threads if self.thread_tuner is None else self.thread_tuner.chosen
        if chosen != self.threads:
            self.threads = chosen
            self.thread_changes.append({"global_step": self.global_step, "threads": chosen, "why": why})

    # --- report: the one place device data comes to the host ----------------------------------------------------
    def flush(self) -> Report:
        """Pull the device log and the health check to the host (one transfer), turn them into episode rows and
        an update row, take the probe snapshot if one is due, hand the `Report` to the callbacks, then raise
        NonFiniteError if the interval saw a NaN or Inf. Returns the report."""
        steps = self.global_step - self._steps_at_last_report
        modules = self.algo.modules()
        pop = self.members > 1
        # rides along in the one transfer
        health = health_tensor(self.buffer, steps, self.obs, modules, self.members if pop else 0)
        first_vector_step = self.vector_steps - self.device_log.pos
        p = self.device_log.pull(health)
        new_eps = episode_rows(p, first_vector_step, [e + 1 for e in self.member_episodes])
        for r in new_eps:
            self.member_episodes[r.member] += 1
        self.num_episodes += len(new_eps)
        self.episode_rows.extend(new_eps)
        self.last10.add(new_eps)
        rows = self._update_rows(p)
        self.update_rows.extend(rows)
        report = Report(global_step=self.global_step, vector_steps=self.vector_steps, num_updates=self.num_updates,
                        num_episodes=self.num_episodes, member_episodes=tuple(self.member_episodes),
                        episodes=new_eps, updates=rows, probes=self.probes.at_report(self),
                        return_10=self.last10.value, member_return_10=self.last10.members(self.members),
                        wall_time=self.wall_time(), eval_seconds=self.eval_seconds,
                        compile_seconds=self.compile_seconds)
        self.last_report = report
        self._reports += 1
        if self.cfg.threads == 0:  # other runs may have started or ended: re-divide the cores
            share = resolve_threads(0)
            self._run_on(share if self.thread_tuner is None else self.thread_tuner.set_share(share, self.num_updates),
                         "share")
        for cb in self.callbacks:
            cb(self, report)
        # after the callbacks, so the run directory shows the interval that went bad
        at = Interval(self.num_envs, self.global_step, self.num_updates, steps, p.updates, len(self.buffer))
        check_health(self.metric_names, p.metric_sums, p.extra, list(modules), at, self.last_checkpoint,
                     self.member_labels() if pop else None)
        return report

    @property
    def episode_columns(self) -> tuple[str, ...]:
        return with_member(EPISODE_COLUMNS, self.members)

    def _update_rows(self, p: Pulled) -> list[dict[str, float]]:
        """The report's update row (a population's: one per member, its "member" first); none without updates."""
        now = time.perf_counter()
        dt = max(now - self._t_last_report - (self.eval_seconds - self._eval_seconds_at_last_report), 1e-9)
        rows = []
        if p.updates:
            for k in range(self.members) if self.members > 1 else (None,):
                member = {} if k is None else {"member": k}
                rows.append({**member, "update": self.num_updates, "global_step": self.global_step,
                             **metric_means(p, self.metric_names, self.algo.actor_step_metrics, k),
                             "updates_in_row": p.updates,
                             "env_steps_per_sec": (self.global_step - self._steps_at_last_report) / dt,
                             "updates_per_sec": (self.num_updates - self._updates_at_last_report) / dt,
                             "wall_time": now - self._t_start})
        self._t_last_report, self._steps_at_last_report = now, self.global_step
        self._updates_at_last_report = self.num_updates
        self._eval_seconds_at_last_report = self.eval_seconds
        return rows

    # --- state, for checkpoints and resume -------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue this run: the algorithm's networks (state_dicts) and optimizer states,
        the replay buffer, the noise state, RNG states (training and probe generators, torch's global CPU and
        device RNG, numpy's), counters (the probe snapshots' included), the probe states and the current episodes
        (obs (N, obs_dim), ep_return (N,), ep_len (N,)). Not the run's history (its episode, update and probe
        rows): that is kept in one place, the run directory's tables, and a restored trainer reads it from there
        (`load_history`). Take it right after a report (`Trainer.checkpoint` does). Module tensors alias the live
        weights: save it (or clone it) before training on."""
        if self.device_log.pending:
            raise RuntimeError("Trainer.state_dict() needs a flush first (unflushed device logs would be lost)")
        np_state = np.random.get_state()
        probes = self.probes.state_dict()
        return {
            "dims": self._dims(),
            **self.algo.state_dict(),
            "buffer": self.buffer.state_dict(),
            "noise": self.noise.state_dict(),
            "rng": {"gen": self.gen.get_state(), "probe_gen": self.probes.generator.get_state(),
                    "torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
                    "numpy": (str(np_state[0]), torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]),
                              int(np_state[3]), float(np_state[4]))},
            "counters": {"global_step": self.global_step, "vector_steps": self.vector_steps,
                         "num_updates": self.num_updates, "num_episodes": self.num_episodes,
                         "credit": (self.update_credit.numerator, self.update_credit.denominator),
                         **({"member_episodes": list(self.member_episodes)} if self.members > 1 else {}),
                         "probe_bucket": probes["bucket"], "probe_snapshots": probes["snapshots"],
                         "probe_last_step": probes["last_step"], "wall_time": self.wall_time(),
                         "eval_seconds": self.eval_seconds},
            "probe_states": probes["states"],
            "episodes": {"obs": self.obs, "ep_return": self.ep_return, "ep_len": self.ep_len},
            "callbacks": {cb.state_key: cb.state_dict() for cb in self.callbacks
                          if getattr(cb, "state_key", None) is not None},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a `state_dict`: every tensor is copied in place (compiled and captured update graphs stay
        valid) and equals the saved one exactly; counters and RNG states continue from it. The history (episode,
        update and probe rows) starts empty: `load_history` fills it from the run directory's tables (a
        checkpoint's own "logs", written before the history lived in one place, are not read here). Then
        `restart_episodes`: the envs are re-seeded, so the episodes in progress when it was taken are cut."""
        have = self._dims()
        if dict(state["dims"]) != have:
            raise ValueError(f"state has shapes {dict(state['dims'])} but this trainer has {have}")
        self.algo.load_state_dict(state)
        self.buffer.load_state_dict(state["buffer"])
        self.noise.load_state_dict(state["noise"])
        rng = state["rng"]
        self.gen.set_state(rng["gen"].cpu())
        self.probes.generator.set_state(rng["probe_gen"].cpu())
        torch.set_rng_state(rng["torch"].cpu())
        if rng["cuda"] is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"].cpu(), self.device)
        name, key, pos, has_gauss, gauss = rng["numpy"]
        np.random.set_state((name, key.numpy().astype(np.uint32), pos, has_gauss, gauss))
        c = state["counters"]
        self.global_step, self.vector_steps = int(c["global_step"]), int(c["vector_steps"])
        self.num_updates, self.num_episodes = int(c["num_updates"]), int(c["num_episodes"])
        self.member_episodes = [int(e) for e in c.get("member_episodes", [self.num_episodes])]
        self.update_credit = Fraction(*c["credit"])
        self.eval_seconds = float(c.get("eval_seconds", 0.0))  # (a checkpoint from before evaluation existed: 0)
        self.restored_states = dict(state.get("callbacks", {}))
        snapshots, last_step = probe_counters(state)
        self.probes.load_state_dict({"states": state["probe_states"], "bucket": c["probe_bucket"],
                                     "snapshots": snapshots, "last_step": last_step}, self.device)
        self.episode_rows, self.update_rows, self.last10 = [], [], Last10()
        self.device_log.reset()
        now = time.perf_counter()
        self._t_start = now - float(c["wall_time"])  # wall_time columns continue where the run stopped
        self._t_last_report, self._steps_at_last_report, self._updates_at_last_report = now, self.global_step, \
            self.num_updates
        self._eval_seconds_at_last_report = self.eval_seconds
        self.restart_episodes()

    def load_history(self, tables: dict[str, pd.DataFrame]) -> None:
        """The run's rows up to the restored checkpoint, from the one place they are kept: the run directory's
        episodes, updates and probes tables (in their CSVs' columns, cut back to the checkpoint:
        `fastddpg.runs.resuming`).
        After it the trainer's tables, its last-10 returns and `result` hold the whole run, as if it had never
        stopped. Raises ValueError when the tables fall short of the checkpoint's counters (rows missing)."""
        k = self.members
        episodes, probes = tables["episodes"], tables["probes"]
        self.episode_rows = [EpisodeRow.from_values(v, k) for v in
                             zip(*(episodes[c].tolist() for c in self.episode_columns), strict=True)]
        counts = [0] * k
        for r in self.episode_rows:
            counts[r.member] += 1
        if counts != self.member_episodes:
            raise ValueError(f"episodes.csv holds {sum(counts)} episodes up to the checkpoint "
                             f"({', '.join(map(str, counts))} per member) but the checkpoint counts "
                             f"{sum(self.member_episodes)} ({', '.join(map(str, self.member_episodes))})")
        probe_columns = with_member(PROBE_COLUMNS, k)
        rows = [ProbeRow.from_values(v, k) for v in zip(*(probes[c].tolist() for c in probe_columns), strict=True)]
        if len({r.snapshot for r in rows}) != self.probes.snapshots:
            raise ValueError(f"probes.csv holds {len({r.snapshot for r in rows})} probe snapshots up to the "
                             f"checkpoint but the checkpoint counts {self.probes.snapshots}")
        self.probes.rows = rows
        self.update_rows = tables["updates"].to_dict("records")
        self.last10 = Last10(self.episode_rows)

    def restart_episodes(self) -> None:
        """Reset every env with a seed derived from (seed, global_step) and start new episodes. Gymnasium envs
        cannot be snapshotted, so after a resume the episodes that were in progress are cut: their partial
        returns are dropped (never logged), the noise process restarts, and the next episodes start fresh."""
        self.obs = self.env.reset(seed=self.env_seeds(self.cfg.seed, self.global_step))
        self.ep_return.zero_()
        self.ep_len.zero_()
        self.noise.reset(torch.ones_like(self.ep_return))

    def _dims(self) -> dict[str, int]:
        """The shapes a state_dict must match (a population's: its member count too)."""
        dims = {"num_envs": self.num_envs, "obs_dim": self.env.obs_dim, "act_dim": self.env.act_dim}
        return {**dims, "members": self.members} if self.members > 1 else dims

    # --- results -------------------------------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        wall = self.wall_time()
        train = max(wall - self.eval_seconds, 1e-9)  # the rates count training only: evaluation is left out
        out = self._summary(wall, train)
        if self.members > 1:
            out.update(self._population_summary(train))
        for cb in self.callbacks:
            fields = getattr(cb, "summary_fields", None)
            if fields is not None:
                out.update(fields())
        return out

    def _population_summary(self, train: float) -> dict[str, Any]:
        """Per member: its seed, its episodes and the mean of its last 10 episode returns (NaN before its first);
        the population's `run_return_10` (their mean over the members with an episode), their min and max; and
        the counts and rates in both units, labelled: ``*_per_member`` (one member's, as ``env_steps`` and
        ``updates`` are) and ``*_total`` (over all members, as ``episodes`` is)."""
        last10 = list(self.last10.members(self.members))
        have = [m for m in last10 if not math.isnan(m)]
        k = self.members
        return {"members": k, "member_seeds": [c.seed for c in self.cfg.member_configs()],
                "member_episodes": list(self.member_episodes),
                "member_last10_mean_return": last10,
                "last10_mean_return": self.last10.value,
                "last10_min_return": min(have, default=float("nan")),
                "last10_max_return": max(have, default=float("nan")),
                "episodes_total": self.num_episodes,
                "env_steps_per_member": self.global_step, "env_steps_total": self.global_step * k,
                "updates_per_member": self.num_updates, "updates_total": self.num_updates * k,
                "env_steps_per_sec_per_member": self.global_step / train,
                "env_steps_per_sec_total": self.global_step * k / train,
                "updates_per_sec_per_member": self.num_updates / train,
                "updates_per_sec_total": self.num_updates * k / train}

    def _summary(self, wall: float, train: float) -> dict[str, Any]:
        return {
            "episodes": self.num_episodes,
            "env_steps": self.global_step,
            "updates": self.num_updates,
            "wall_time_s": wall,
            "env_steps_per_sec": self.global_step / train,
            "updates_per_sec": self.num_updates / train,
            "eval_seconds": self.eval_seconds,
            "replay_ratio": self.num_updates / max(1, self.global_step),
            "last10_mean_return": self.last10.value,
            "device": str(self.device),
            "compile": self.compile_mode,
            "compile_seconds": self.compile_seconds,
            "cpu_matmul": self.cpu_matmul,
            "flush_denormal": self.flush_denormal,
            "first_update_s": self.first_update_s,
            "num_envs": self.num_envs,
            "threads": self.threads,
            **({"thread_changes": self.thread_changes} if self.thread_changes else {}),
            **({"thread_probes": self.thread_tuner.probes} if self.thread_tuner and self.thread_tuner.probes else {}),
        }

    def tables(self) -> dict[str, pd.DataFrame]:
        """The run's host tables (episodes, updates, probes: the whole run, a resumed one's from its first step)
        as DataFrames in the columns of their CSVs: the one conversion from the trainer's rows, which
        `TrainResult`, the parquet copies and the report use."""
        k = self.members
        return {"episodes": pd.DataFrame([r.values(k) for r in self.episode_rows],
                                         columns=list(self.episode_columns)),
                "updates": pd.DataFrame(self.update_rows,
                                        columns=list(with_member(update_columns(self.metric_names), k))),
                "probes": pd.DataFrame([r.values(k) for r in self.probe_rows],
                                       columns=list(with_member(PROBE_COLUMNS, k)))}

    def result(self) -> TrainResult:
        tables = self.tables()
        return TrainResult(config=self.cfg, episodes=tables["episodes"], updates=tables["updates"],
                           probes=tables["probes"], summary=self.summary(), algo=self.algo)


def make_population(cfg: Config, obs_dim: int, act_dim: int, action_low: torch.Tensor, action_high: torch.Tensor,
                    device: torch.device) -> Population:
    """The population of ``cfg`` (``cfg.member_configs()``): each member's networks are initialised under
    ``torch.manual_seed`` of its seed, as a single run with that seed initialises them, and it takes its grid
    point's hyperparameters; its grid points share their extra random inputs (``repeats``)."""
    members = []
    try:
        for k, member_cfg in enumerate(cfg.member_configs()):
            torch.manual_seed(member_cfg.seed)
            members.append(make_algorithm(member_cfg, obs_dim, act_dim, action_low, action_high, device))
            if k == 0:
                check_population_fits(cfg, device, learner_bytes(members[0]))  # before K of them are built
        torch.manual_seed(cfg.seed)
        return Population(members, repeats=len(cfg.grid_points()))
    except (RuntimeError, MemoryError) as e:  # torch.OutOfMemoryError (CUDA) and the CPU allocator's
        if not allocation_failed(e):
            raise
        raise population_too_large(cfg, device, "do not fit", None) from None


def learner_bytes(algo: Algorithm) -> int:
    """The bytes of one learner's networks (targets included) and its optimizers' two moments (Adam's)."""
    tensors = [t for m in algo.modules().values() for t in [*m.parameters(), *m.buffers()]]
    moments = [t for opt in algo.state["optim"].values() for key in ("exp_avg", "exp_avg_sq") for t in opt[key]]
    return sum(t.numel() * t.element_size() for t in [*tensors, *moments])


def check_population_fits(cfg: Config, device: torch.device, per_member: int) -> None:
    """A one-line ConfigError where the population's members, built one by one and then stacked into one learner
    (twice ``per_member`` bytes each), exceed the host's available memory: found before they are built, where the
    allocator's traceback or the OOM killer would come part way."""
    free = available_host_bytes() if device.type == "cpu" else None
    need = 2 * cfg.num_members * per_member
    if free is not None and need > free:
        raise population_too_large(cfg, device, f"need {need / 2**30:,.1f} GiB", free)


def population_too_large(cfg: Config, device: torch.device, size: str, free: int | None) -> ConfigError:
    return does_not_fit(f"--num-seeds {cfg.num_seeds} ({cfg.num_members} members): their networks and optimizer "
                        f"states {size}", device, free, "lower --num-seeds, the --grid or --hidden-sizes")


def does_not_fit(what: str, device: torch.device, free: int | None, fix: str) -> ConfigError:
    """The one line for memory a run cannot have: ``what`` it needs, on ``device``, the host's ``free`` bytes where
    known, and the ``fix``."""
    room = f", where {free / 2**30:,.1f} GiB are free" if free is not None else ""
    return ConfigError(f"{what} on {device}{room}; {fix}.")


def probe_counters(state: dict[str, Any]) -> tuple[int, int]:
    """(probe snapshots taken, env step of the last) of a `Trainer.state_dict`; of a checkpoint written before
    they were counters, from the probe rows it then held."""
    c = state["counters"]
    if "probe_snapshots" in c:
        return int(c["probe_snapshots"]), int(c["probe_last_step"])
    rows = state["logs"]["probes"]
    col = 1 if "member_episodes" in c else 0  # a population's rows start with the member
    return (int(rows[-1][col]) + 1, int(rows[-1][col + 2])) if rows else (0, -1)


def resume_seed(seed: int, global_step: int) -> int:
    """The env seed after a resume at ``global_step``: deterministic, and unrelated to ``seed`` + i streams."""
    return int(np.random.SeedSequence([seed & 0xFFFFFFFF, global_step]).generate_state(1)[0])
