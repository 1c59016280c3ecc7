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
from typing import Any

import numpy as np
import pandas as pd
import torch

from .config import Config, ConfigError
from .envs import VecEnv, make_env
from .noise import GaussianNoise
from .replay import ReplayBuffer
from .update import METRIC_NAMES, Learner, ddpg_update

EPISODE_COLUMNS = ("episode", "env", "global_step", "return", "length", "wall_time")
UPDATE_COLUMNS = ("update", "global_step", *METRIC_NAMES, "updates_in_row", "env_steps_per_sec",
                  "updates_per_sec", "wall_time")
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
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed)
        self.env = env if env is not None else make_env(cfg.env, cfg.num_envs, self.device, cfg.vector_mode)
        n, o, a = self.env.num_envs, self.env.obs_dim, self.env.act_dim
        self.num_envs = n
        self.gen = torch.Generator(device=self.device).manual_seed(cfg.seed)
        self.probe_gen = torch.Generator(device=self.device).manual_seed(cfg.seed + 1)  # keeps probes off
        # the training RNG stream, so diagnostics never change what is learned
        self.action_low = self.env.action_low.to(self.device)
        self.action_high = self.env.action_high.to(self.device)
        self.learner = Learner(o, a, cfg.hidden_sizes, self.action_low, self.action_high, cfg.actor_lr,
                               cfg.critic_lr, self.device)
        self.buffer = ReplayBuffer(cfg.replay_size, o, a, self.device)
        self.noise = GaussianNoise(n, a, cfg.noise_sigma, self.device, self.gen)
        self.update_fn = self._make_update_fn()
        self.callbacks = list(callbacks or [])

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
        self.metric_sum = torch.zeros(len(METRIC_NAMES), device=self.device)
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
        self.obs = self.env.reset(seed=cfg.seed)

    def _make_update_fn(self) -> Callable[[Any], torch.Tensor]:
        cfg, learner = self.cfg, self.learner

        def update(batch: Any) -> torch.Tensor:
            return ddpg_update(learner, batch, cfg.gamma, cfg.tau, cfg.grad_clip_norm)

        return update

    # --- acting ------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def act(self, obs: torch.Tensor) -> torch.Tensor:
        """obs (N, obs_dim) -> exploratory actions (N, act_dim): uniform during start_steps, else mu(s) + noise,
        clipped to the action bounds."""
        if self.global_step < self.cfg.start_steps:
            u = torch.rand(obs.shape[0], self.action_low.shape[0], device=self.device, generator=self.gen)
            return self.action_low + (self.action_high - self.action_low) * u
        action = self.learner.actor(obs) + self.noise.sample()
        return torch.clamp(action, self.action_low, self.action_high)

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
        """k gradient updates, their sample indices drawn at once on the device."""
        rows = self.buffer.sample_rows(k, self.cfg.batch_size, self.gen)
        for i in range(k):
            self.metric_sum += self.update_fn(self.buffer.as_batch(rows[i]))
        self.num_updates += k
        self._updates_since_flush += k

    # --- flush: the one place device data comes to the host ---------------------------------------------------
    def flush(self) -> None:
        """Pull episode ends and metric sums to the host (one transfer), take probe snapshots, call callbacks."""
        pos = self._chunk_pos
        host = torch.cat([self.metric_sum, self._chunk[:pos].reshape(-1)]).cpu().numpy()
        self.metric_sum.zero_()
        self._chunk_pos = 0
        metrics, chunk = host[: len(METRIC_NAMES)], host[len(METRIC_NAMES):].reshape(pos, self.num_envs, 3)
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
            row = {"update": self.num_updates, "global_step": self.global_step,
                   **{k: float(v) / self._updates_since_flush for k, v in zip(METRIC_NAMES, metrics, strict=True)},
                   "updates_in_row": self._updates_since_flush,
                   "env_steps_per_sec": (self.global_step - self._steps_at_last_flush) / dt,
                   "updates_per_sec": (self.num_updates - self._updates_at_last_flush) / dt,
                   "wall_time": now - self._t_start}
            self.update_rows.append(row)
        self._updates_since_flush = 0
        self._t_last_flush, self._steps_at_last_flush = now, self.global_step
        self._updates_at_last_flush = self.num_updates
        self._maybe_probe(final=False)
        episodes = pd.DataFrame(new_eps, columns=list(EPISODE_COLUMNS))
        for cb in self.callbacks:
            cb(self, episodes, row)

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
        self._probe_bucket = bucket
        a = self.learner.actor(self.probe_states)
        q = self.learner.critic(self.probe_states, a).reshape(-1)
        stat = a[:, 0] if a.shape[1] == 1 else torch.linalg.vector_norm(a, dim=1)  # 1-D action, else ||a||
        host = torch.stack([stat, q]).cpu().numpy()
        snap = len({r[0] for r in self.probe_rows})
        for i in range(cfg.probe_n):
            self.probe_rows.append((snap, self.num_episodes, self.global_step, i, float(host[0, i]),
                                    float(host[1, i])))

    # --- the whole run ------------------------------------------------------------------------------------------
    def train(self) -> TrainResult:
        """Run until ``total_steps`` env steps are done (rounded up to whole vector steps)."""
        try:
            while self.global_step < self.cfg.total_steps:
                self.step()
            if self._chunk_pos or self._updates_since_flush:
                self.flush()
            self._maybe_probe(final=True)
        finally:
            self.env.close()
        return self.result()

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
            "num_envs": self.num_envs,
        }

    def result(self) -> TrainResult:
        return TrainResult(
            config=self.cfg,
            episodes=pd.DataFrame(self.episode_rows, columns=list(EPISODE_COLUMNS)),
            updates=pd.DataFrame(self.update_rows, columns=list(UPDATE_COLUMNS)),
            probes=pd.DataFrame(self.probe_rows, columns=list(PROBE_COLUMNS)),
            summary=self.summary(),
            learner=self.learner,
        )


def train(cfg: Config | None = None, **overrides: Any) -> TrainResult:
    """Train with ``cfg`` (default Config()), fields overridable by keyword: ``train(num_envs=4)``."""
    cfg = cfg or Config()
    if overrides:
        cfg = Config.from_dict({**cfg.to_dict(), **overrides})
    return Trainer(cfg).train()
