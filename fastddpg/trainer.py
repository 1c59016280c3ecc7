"""The training loop: vector env -> actor + noise -> env step -> one replay write -> sampled batches -> updates.

Everything per step stays on the training device. Episode returns and lengths are accumulated as device
tensors and written, per vector step, into a device-side log chunk; update metrics are summed on the device.
Both are pulled to the host in one transfer every ``log_every`` env steps (a "flush"), which is also when
reporters and the run directory see new data. The only host<->device traffic per vector step is what a
CPU-simulated env needs: actions to the host, observations back.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from .config import Config, ConfigError
from .envs import VecEnv, make_env
from .failsafe import StopSignals, TrainingInterrupted, check_health, health_tensor
from .noise import make_noise
from .replay import ReplayBuffer
from .threads import apply_threads
from .update import METRIC_NAMES, Learner, compile_update, make_update_fns, metric_names, resolve_compile_mode

EPISODE_COLUMNS = ("episode", "env", "global_step", "return", "length", "wall_time")
UPDATE_COLUMNS = ("update", "global_step", *METRIC_NAMES, "updates_in_row", "env_steps_per_sec",
                  "updates_per_sec", "wall_time")


def update_columns(algo: str) -> tuple[str, ...]:
    """Columns of the updates table for ``algo``: UPDATE_COLUMNS with that algorithm's metrics (TD3 adds some)."""
    return ("update", "global_step", *metric_names(algo), *UPDATE_COLUMNS[2 + len(METRIC_NAMES):])


PROBE_COLUMNS = ("snapshot", "episode", "global_step", "probe", "action", "q")


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda when available, else cpu; a CUDA device without CUDA is a ConfigError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"--device={name!r} is not a torch device; use auto, cpu, cuda or cuda:N.") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"--device={name} but CUDA is not available here (torch {torch.__version__}); "
                              "use --device cpu or --device auto.")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"--device={name} but only {torch.cuda.device_count()} CUDA device(s) exist.")
    elif device.type != "cpu":
        raise ConfigError(f"--device={name!r} is not supported; use auto, cpu, cuda or cuda:N.")
    return device


@dataclass
class TrainResult:
    """What `train` returns: tidy DataFrames, the summary, and the trained networks."""

    config: Config
    episodes: pd.DataFrame
    updates: pd.DataFrame
    probes: pd.DataFrame
    summary: dict[str, Any]
    learner: Learner = field(repr=False)
    run_dir: Path | None = None  # the run directory written, if the run had one (`fastddpg.train`)

    @property
    def actor(self) -> torch.nn.Module:
        return self.learner.actor

    @property
    def critic(self) -> torch.nn.Module:
        return self.learner.critic


class Trainer:
    """Owns the env, learner, replay buffer and counters of one run.

    ``callbacks`` are called as ``cb(trainer, new_episodes: DataFrame, update_row: dict | None)`` after each
    flush; reporters and the run directory hook in there.
    """

    def __init__(self, cfg: Config, env: VecEnv | None = None,
                 callbacks: list[Callable[..., None]] | None = None) -> None:
        cfg.validate()
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        self.threads = apply_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed)
        self.env = env if env is not None else make_env(cfg.env, cfg.num_envs, self.device, cfg.vector_mode,
                                                        cfg.env_backend)
        n, o, a = self.env.num_envs, self.env.obs_dim, self.env.act_dim
        self.num_envs = n
        self.gen = torch.Generator(device=self.device).manual_seed(cfg.seed)
        self.probe_gen = torch.Generator(device=self.device).manual_seed(cfg.seed + 1)  # keeps probes off
        # the training RNG stream, so diagnostics never change what is learned
        self.action_low = self.env.action_low.to(self.device)
        self.action_high = self.env.action_high.to(self.device)
        self.learner = Learner(o, a, cfg.hidden_sizes, self.action_low, self.action_high, cfg.actor_lr,
                               cfg.critic_lr, self.device, layer_norm=cfg.layer_norm,
                               num_critics=2 if cfg.algo == "td3" else 1)
        self.buffer = ReplayBuffer(cfg.replay_size, o, a, self.device)
        self.noise = make_noise(cfg, n, a, self.device, self.gen)
        self.compile_seconds = 0.0
        self.metric_names = metric_names(cfg.algo)
        self.update_fns = self._make_update_fns()  # {is actor step: fn}; DDPG: {True: fn}
        # acting is compiled too where it pays (CUDA: one fused kernel chain instead of ~10 launches per step)
        self.explore = make_explore_fn(self.learner.actor, self.action_low, self.action_high,
                                       compiled=self.compile_mode != "off" and self.device.type == "cuda")
        self._untimed = set(self.update_fns) if self.compile_mode != "off" else set()  # first calls compile
        self.callbacks = list(callbacks or [])
        self.log: Callable[[str], None] = (lambda msg: None) if cfg.quiet else print

        # counters (host ints: they advance by known amounts, no device read needed)
        self.global_step = 0
        self.vector_steps = 0
        self.num_updates = 0
        self.num_episodes = 0
        self._credit = Fraction(0)
        self._ratio = Fraction(cfg.updates_per_step).limit_denominator(10_000)
        # device-side accumulators
        self.ep_return = torch.zeros(n, device=self.device)
        self.ep_len = torch.zeros(n, device=self.device)
        self.metric_sum = torch.zeros(len(self.metric_names), device=self.device)
        self._actor_updates_since_flush = 0  # TD3: actor_loss is averaged over actor steps only
        self._chunk_len = max(1, math.ceil(cfg.log_every / n))
        self._chunk = torch.zeros(self._chunk_len, n, 3, device=self.device)  # (ended, return, length)
        self._chunk_pos = 0
        self._chunk_wall = np.zeros(self._chunk_len)
        self._updates_since_flush = 0
        # host-side logs
        self.episode_rows: list[tuple] = []
        self.update_rows: list[dict[str, float]] = []
        self.probe_rows: list[tuple] = []
        self.probe_states: torch.Tensor | None = None
        self._probe_bucket = 0
        self._t_start = time.perf_counter()
        self._t_last_flush = self._t_start
        self._steps_at_last_flush = 0
        self._updates_at_last_flush = 0
        # checkpoints (fastddpg.checkpoint): written to run_dir/checkpoints when run_dir is set (the CLI sets it)
        self.run_dir: Path | None = None
        self.last_checkpoint: Path | None = None
        self.obs = self.env.reset(seed=cfg.seed)

    def planned_updates(self) -> int:
        """Gradient updates this run will perform (the replay ratio times the env steps after update_after)."""
        return int(max(0, self.cfg.total_steps - self.cfg.update_after) * self.cfg.updates_per_step)

    def _make_update_fns(self) -> dict[bool, Callable[[torch.Tensor], torch.Tensor]]:
        """The update functions ``fn(rows (batch_size, width [+ act_dim])) -> metrics``, keyed by whether they
        include the actor step (DDPG: always; TD3: every policy_delay-th update), each compiled per
        ``cfg.compile``."""
        cfg, buffer = self.cfg, self.buffer
        self.updates = make_update_fns(cfg.algo, self.learner, buffer.as_batch, buffer.data.shape[1], cfg.gamma,
                                       cfg.tau, cfg.grad_clip_norm, cfg.policy_noise, cfg.noise_clip,
                                       cfg.policy_delay)
        self.compile_mode = resolve_compile_mode(cfg.compile, self.device, self.planned_updates())
        return {key: compile_update(fn, self.compile_mode, self.device)
                for key, fn in self.updates.by_actor_step.items()}

    # --- acting ------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def act(self, obs: torch.Tensor) -> torch.Tensor:
        """obs (N, obs_dim) -> exploratory actions (N, act_dim): uniform during start_steps, else mu(s) + noise,
        clipped to the action bounds."""
        if self.global_step < self.cfg.start_steps:
            u = torch.rand(obs.shape[0], self.action_low.shape[0], device=self.device, generator=self.gen)
            return self.action_low + (self.action_high - self.action_low) * u
        return self.explore(obs, self.noise.sample())

    # --- one vector step -------------------------------------------------------------------------------------
    def step(self) -> None:
        """Act, step the N envs, write N transitions, and run the updates this step is owed."""
        action = self.act(self.obs)
        s = self.env.step(action)
        self.buffer.add(self.obs, action, s.reward, s.next_obs, s.terminated)
        ended = torch.maximum(s.terminated, s.truncated)
        self.ep_return += s.reward
        self.ep_len += 1.0
        self._chunk[self._chunk_pos] = torch.stack([ended, self.ep_return, self.ep_len], dim=-1)
        self._chunk_wall[self._chunk_pos] = time.perf_counter() - self._t_start
        self._chunk_pos += 1
        keep = 1.0 - ended
        self.ep_return *= keep
        self.ep_len *= keep
        self.noise.reset(ended)
        self.obs = s.obs
        self.global_step += self.num_envs
        self.vector_steps += 1

        if self.global_step >= self.cfg.update_after and len(self.buffer) >= self.cfg.batch_size:
            self._credit += self.num_envs * self._ratio
            k = int(self._credit)
            if k:
                self._credit -= k
                self._run_updates(k)
        if self._chunk_pos == self._chunk_len:
            self.flush()

    def _run_updates(self, k: int) -> None:
        """k gradient updates, their sample indices drawn at once on the device. TD3's smoothing noise eps
        (k, B, act_dim) is drawn here too, with the same generator, and appended to the rows, so the update
        holds no RNG (compiled == eager, and a CUDA graph replays without RNG state). Which function runs
        (critic only, or critic + actor + targets) follows the host's update counter: no device branch."""
        cfg, updates = self.cfg, self.updates
        rows = self.buffer.sample_rows(k, cfg.batch_size, self.gen)
        if updates.eps_dim:
            eps = torch.randn(k, cfg.batch_size, updates.eps_dim, device=self.device, generator=self.gen)
            rows = torch.cat([rows, eps], dim=-1)
        for i in range(k):
            actor_step = updates.is_actor_step(self.num_updates + 1)
            if actor_step in self._untimed:
                self._first_compiled_update(actor_step, rows[i])
            else:
                self.metric_sum += self.update_fns[actor_step](rows[i])
            self.num_updates += 1
            self._actor_updates_since_flush += actor_step
        self._updates_since_flush += k

    def _first_compiled_update(self, actor_step: bool, rows: torch.Tensor) -> None:
        """The first call of each update function compiles; say so and time it (a one-off sync)."""
        what = "the update" if len(self.update_fns) == 1 else ("the full update" if actor_step else
                                                               "the critic-only update")
        self.log(f"compiling {what} (torch.compile, mode={self.compile_mode}) ...")
        t0 = time.perf_counter()
        self.metric_sum += self.update_fns[actor_step](rows)
        self.metric_sum.sum().cpu()  # wait for the compiled update to finish before reading the clock
        seconds = time.perf_counter() - t0
        self.compile_seconds += seconds
        self.log(f"compiled in {seconds:.1f} s")
        self._untimed.discard(actor_step)

    # --- flush: the one place device data comes to the host ---------------------------------------------------
    def flush(self) -> None:
        """Pull episode ends and metric sums to the host (one transfer), take probe snapshots, call callbacks."""
        pos = self._chunk_pos
        health = health_tensor(self)  # non-finite checks, on the device; they ride along in the one transfer
        host = torch.cat([self.metric_sum, health, self._chunk[:pos].reshape(-1)]).cpu().numpy()
        self.metric_sum.zero_()
        self._chunk_pos = 0
        nm, nh = len(self.metric_names), health.shape[0]
        metrics, health_host = host[:nm], host[nm:nm + nh]
        chunk = host[nm + nh:].reshape(pos, self.num_envs, 3)
        interval = (self.global_step - self._steps_at_last_flush, self._updates_since_flush)
        first_vstep = self.vector_steps - pos
        new_eps = []
        for r, e in zip(*np.nonzero(chunk[:, :, 0] > 0.5), strict=True):
            self.num_episodes += 1
            new_eps.append((self.num_episodes, int(e), int((first_vstep + r + 1) * self.num_envs),
                            float(chunk[r, e, 1]), int(chunk[r, e, 2]), float(self._chunk_wall[r])))
        self.episode_rows.extend(new_eps)

        now = time.perf_counter()
        dt = max(now - self._t_last_flush, 1e-9)
        row = None
        if self._updates_since_flush:
            # means over the updates since the last flush; actor_loss over the actor steps among them (TD3's
            # critic-only updates contribute 0 to its sum; NaN if none of them was an actor step)
            counts = {k: self._actor_updates_since_flush if k == "actor_loss" else self._updates_since_flush
                      for k in self.metric_names}
            row = {"update": self.num_updates, "global_step": self.global_step,
                   **{k: float(v) / counts[k] if counts[k] else float("nan")
                      for k, v in zip(self.metric_names, metrics, strict=True)},
                   "updates_in_row": self._updates_since_flush,
                   "env_steps_per_sec": (self.global_step - self._steps_at_last_flush) / dt,
                   "updates_per_sec": (self.num_updates - self._updates_at_last_flush) / dt,
                   "wall_time": now - self._t_start}
            self.update_rows.append(row)
        self._updates_since_flush = 0
        self._actor_updates_since_flush = 0
        self._t_last_flush, self._steps_at_last_flush = now, self.global_step
        self._updates_at_last_flush = self.num_updates
        self._maybe_probe(final=False)
        episodes = pd.DataFrame(new_eps, columns=list(EPISODE_COLUMNS))
        for cb in self.callbacks:
            cb(self, episodes, row)
        # after the callbacks, so the run directory shows the interval that went bad; raises NonFiniteError
        check_health(self, self.metric_names, metrics, health_host, *interval)

    @torch.no_grad()
    def _maybe_probe(self, final: bool) -> None:
        """The notebook's probe snapshots: PROBE_N states fixed once the buffer holds max(PROBE_N, BATCH_SIZE)
        transitions; a snapshot each time another probe_every_episodes episodes (over all envs) have ended."""
        cfg = self.cfg
        if self.probe_states is None and len(self.buffer) >= max(cfg.probe_n, cfg.batch_size):
            self.probe_states = self.buffer.sample(cfg.probe_n, self.probe_gen)["obs"].clone()
            self._probe_bucket = self.num_episodes // cfg.probe_every_episodes
        if self.probe_states is None:
            return
        bucket = self.num_episodes // cfg.probe_every_episodes
        if bucket <= self._probe_bucket and not final:
            return
        if final and self.probe_rows and self.probe_rows[-1][2] == self.global_step:
            return  # the last flush already took this step's snapshot
        self._probe_bucket = bucket
        a = self.learner.actor(self.probe_states)
        q = self.learner.q1(self.probe_states, a).reshape(-1)
        stat = a[:, 0] if a.shape[1] == 1 else torch.linalg.vector_norm(a, dim=1)  # 1-D action, else ||a||
        host = torch.stack([stat, q]).cpu().numpy()
        snap = len({r[0] for r in self.probe_rows})
        for i in range(cfg.probe_n):
            self.probe_rows.append((snap, self.num_episodes, self.global_step, i, float(host[0, i]),
                                    float(host[1, i])))

    # --- the whole run ------------------------------------------------------------------------------------------
    def train(self) -> TrainResult:
        """Run until ``total_steps`` env steps are done (rounded up to whole vector steps).

        With ``run_dir`` set, a checkpoint is written every `checkpoint_interval` env steps and always at the
        end (`checkpoint`). While training, the first SIGINT or SIGTERM finishes the current vector step, flushes,
        writes a checkpoint (with ``run_dir``) and raises `TrainingInterrupted` (carrying the result so far); a
        second one exits the process at once. The previous signal handlers are restored on return. A NaN or Inf
        found at a flush raises `NonFiniteError` and writes no checkpoint of that state.
        """
        every = self.checkpoint_interval()
        next_checkpoint = (self.global_step // every + 1) * every
        with StopSignals() as stop:
            try:
                while self.global_step < self.cfg.total_steps and stop.signum is None:
                    self.step()
                    if self.run_dir is not None and next_checkpoint <= self.global_step < self.cfg.total_steps:
                        self.checkpoint()
                        next_checkpoint = (self.global_step // every + 1) * every
                if self._chunk_pos or self._updates_since_flush:
                    self.flush()
                self._maybe_probe(final=True)
                if self.run_dir is not None:
                    self.checkpoint()
            finally:
                self.env.close()
        if stop.signum is not None:
            raise TrainingInterrupted(stop.signum, self.global_step, self.last_checkpoint, self.result())
        return self.result()

    # --- checkpoints and resume (files: fastddpg.checkpoint) ----------------------------------------------------
    def checkpoint_interval(self) -> int:
        """Env steps between checkpoints: ``checkpoint_every``, or for 0 ('auto') a quarter of ``total_steps``
        rounded up to whole flush intervals (``log_every`` in whole vector steps), so checkpoints fall on flushes."""
        if self.cfg.checkpoint_every:
            return self.cfg.checkpoint_every
        flush_steps = self._chunk_len * self.num_envs
        return math.ceil(self.cfg.total_steps / 4 / flush_steps) * flush_steps

    def checkpoint(self) -> Path:
        """Flush (a checkpoint holds no unflushed device logs; the flush's non-finite check runs first and raises
        NonFiniteError rather than save a bad state), then write ``run_dir/checkpoints/step_<global_step>.pt``
        atomically, keeping the last ``keep_checkpoints``. Returns its path."""
        from .checkpoint import save_checkpoint

        if self.run_dir is None:
            raise ValueError("set trainer.run_dir before writing checkpoints")
        if self._chunk_pos or self._updates_since_flush:
            self.flush()
        self.last_checkpoint = save_checkpoint(self, self.run_dir, self.cfg.keep_checkpoints)
        return self.last_checkpoint

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue this run: networks (state_dicts of ``learner.modules()``), both Adam
        states, the replay buffer, the noise state, RNG states (training and probe generators, torch's global
        CPU and device RNG, numpy's), counters, the probe states, the current episodes (obs (N, obs_dim),
        ep_return (N,), ep_len (N,)) and the host-side logs. Take it right after a flush (`checkpoint` does).
        Module tensors alias the live weights: save it (or clone it) before training on."""
        if self._chunk_pos or self._updates_since_flush:
            raise RuntimeError("Trainer.state_dict() needs a flush first (unflushed device logs would be lost)")
        learner = self.learner
        np_state = np.random.get_state()
        return {
            "dims": {"num_envs": self.num_envs, "obs_dim": self.env.obs_dim, "act_dim": self.env.act_dim},
            "modules": {name: m.state_dict() for name, m in learner.modules().items()},
            "optimizers": {"actor": learner.actor_opt.state_dict(), "critic": learner.critic_opt.state_dict()},
            "buffer": self.buffer.state_dict(),
            "noise": self.noise.state_dict(),
            "rng": {"gen": self.gen.get_state(), "probe_gen": self.probe_gen.get_state(),
                    "torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
                    "numpy": (str(np_state[0]), torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]),
                              int(np_state[3]), float(np_state[4]))},
            "counters": {"global_step": self.global_step, "vector_steps": self.vector_steps,
                         "num_updates": self.num_updates, "num_episodes": self.num_episodes,
                         "credit": (self._credit.numerator, self._credit.denominator),
                         "probe_bucket": self._probe_bucket, "wall_time": time.perf_counter() - self._t_start},
            "probe_states": self.probe_states,
            "episodes": {"obs": self.obs, "ep_return": self.ep_return, "ep_len": self.ep_len},
            "logs": {"episodes": list(self.episode_rows), "updates": [dict(r) for r in self.update_rows],
                     "probes": list(self.probe_rows)},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a `state_dict`: every tensor is copied in place (compiled and captured update graphs stay
        valid) and equals the saved one exactly; counters, RNG states and logs continue from it. Then
        `restart_episodes`: the envs are re-seeded, so the episodes in progress when it was taken are cut."""
        have = {"num_envs": self.num_envs, "obs_dim": self.env.obs_dim, "act_dim": self.env.act_dim}
        if dict(state["dims"]) != have:
            raise ValueError(f"state has shapes {dict(state['dims'])} but this trainer has {have}")
        learner = self.learner
        for name, module in learner.modules().items():
            module.load_state_dict(state["modules"][name])
        learner.actor_opt.load_state_dict(state["optimizers"]["actor"])
        learner.critic_opt.load_state_dict(state["optimizers"]["critic"])
        self.buffer.load_state_dict(state["buffer"])
        self.noise.load_state_dict(state["noise"])
        rng = state["rng"]
        self.gen.set_state(rng["gen"].cpu())
        self.probe_gen.set_state(rng["probe_gen"].cpu())
        torch.set_rng_state(rng["torch"].cpu())
        if rng["cuda"] is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"].cpu(), self.device)
        name, key, pos, has_gauss, gauss = rng["numpy"]
        np.random.set_state((name, key.numpy().astype(np.uint32), pos, has_gauss, gauss))
        c = state["counters"]
        self.global_step, self.vector_steps = int(c["global_step"]), int(c["vector_steps"])
        self.num_updates, self.num_episodes = int(c["num_updates"]), int(c["num_episodes"])
        self._credit = Fraction(*c["credit"])
        self._probe_bucket = int(c["probe_bucket"])
        probes = state["probe_states"]
        self.probe_states = None if probes is None else probes.to(self.device)
        logs = state["logs"]
        self.episode_rows = [tuple(r) for r in logs["episodes"]]
        self.update_rows = [dict(r) for r in logs["updates"]]
        self.probe_rows = [tuple(r) for r in logs["probes"]]
        self.metric_sum.zero_()
        self._chunk_pos = self._updates_since_flush = self._actor_updates_since_flush = 0
        now = time.perf_counter()
        self._t_start = now - float(c["wall_time"])  # wall_time columns continue where the run stopped
        self._t_last_flush, self._steps_at_last_flush, self._updates_at_last_flush = now, self.global_step, \
            self.num_updates
        self.restart_episodes()

    def restart_episodes(self) -> None:
        """Reset every env with a seed derived from (seed, global_step) and start new episodes. Gymnasium envs
        cannot be snapshotted, so after a resume the episodes that were in progress are cut: their partial
        returns are dropped (never logged), the noise process restarts, and the next episodes start fresh."""
        self.obs = self.env.reset(seed=resume_seed(self.cfg.seed, self.global_step))
        self.ep_return.zero_()
        self.ep_len.zero_()
        self.noise.reset(torch.ones(self.num_envs, device=self.device))

    def summary(self) -> dict[str, Any]:
        wall = time.perf_counter() - self._t_start
        returns = [r[3] for r in self.episode_rows]
        return {
            "episodes": self.num_episodes,
            "env_steps": self.global_step,
            "updates": self.num_updates,
            "wall_time_s": wall,
            "env_steps_per_sec": self.global_step / wall,
            "updates_per_sec": self.num_updates / wall,
            "replay_ratio": self.num_updates / max(1, self.global_step),
            "last10_mean_return": float(np.mean(returns[-10:])) if returns else float("nan"),
            "device": str(self.device),
            "compile": self.compile_mode,
            "compile_seconds": self.compile_seconds,
            "num_envs": self.num_envs,
            "threads": self.threads,
        }

    def result(self) -> TrainResult:
        return TrainResult(
            config=self.cfg,
            episodes=pd.DataFrame(self.episode_rows, columns=list(EPISODE_COLUMNS)),
            updates=pd.DataFrame(self.update_rows, columns=list(update_columns(self.cfg.algo))),
            probes=pd.DataFrame(self.probe_rows, columns=list(PROBE_COLUMNS)),
            summary=self.summary(),
            learner=self.learner,
        )


def make_explore_fn(actor: torch.nn.Module, low: torch.Tensor, high: torch.Tensor, compiled: bool
                    ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``explore(obs (N, obs_dim), noise (N, act_dim)) -> clip(mu(obs) + noise, low, high)`` (N, act_dim),
    optionally ``torch.compile``d (fullgraph); the noise is drawn outside, so compiled and eager agree."""

    def explore(obs: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return torch.clamp(actor(obs) + noise, low, high)

    return torch.compile(explore, fullgraph=True, dynamic=False) if compiled else explore


def resume_seed(seed: int, global_step: int) -> int:
    """The env seed after a resume at ``global_step``: deterministic, and unrelated to ``seed`` + i streams."""
    return int(np.random.SeedSequence([seed & 0xFFFFFFFF, global_step]).generate_state(1)[0])

