"""One configuration dataclass: the single source of truth for defaults, CLI flags, `--help` and the saved run config.

Every hyperparameter of the reference notebook is here with the notebook's default. Each field carries its
help text in ``metadata["help"]``; the CLI builds its flags from these fields, and a run directory stores
``Config.to_dict()``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any


class ConfigError(ValueError):
    """A user-facing error: one line saying what is wrong and what to do. The CLI prints it and exits 2."""


def _f(default: Any, help: str, choices: tuple[str, ...] | None = None, group: str = "training") -> Any:
    meta = {"help": help, "group": group}
    if choices is not None:
        meta["choices"] = choices
    if isinstance(default, (list, tuple)):
        return field(default_factory=lambda: tuple(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class Config:
    """Everything a run needs. Defaults are the reference notebook's (``Pendulum-v1``, DDPG)."""

    # --- environment -------------------------------------------------------------------------------------
    env: str = _f("Pendulum-v1", "Gymnasium environment id; needs a bounded Box action space.", group="environment")
    num_envs: int = _f(4, "Environments stepped in parallel (one vector step = num_envs transitions).",
                       group="environment")
    vector_mode: str = _f("sync", "Gymnasium vectorization: 'sync' steps envs in this process, 'async' in "
                          "one subprocess each (pays off for slow envs only).", choices=("sync", "async"),
                          group="environment")
    device: str = _f("auto", "Training device: 'auto' (cuda when available, else cpu), 'cpu', 'cuda' or "
                     "'cuda:N'. Networks, replay buffer and metrics all live here.", group="environment")
    total_steps: int = _f(10_000, "Environment steps to train for, summed over all envs.", group="environment")
    seed: int = _f(42, "Seed for torch, the envs (env i gets seed+i) and the replay sampler.",
                   group="environment")

    # --- DDPG hyperparameters (the notebook's) --------------------------------------------------------------
    replay_size: int = _f(200_000, "Replay buffer capacity in transitions (REPLAY_SIZE).")
    batch_size: int = _f(128, "Minibatch size per gradient update (BATCH_SIZE).")
    gamma: float = _f(0.99, "Discount factor in y = r + gamma (1 - d) Q'(s', mu'(s')) (GAMMA), in [0, 1].")
    tau: float = _f(0.005, "Soft target update rate: theta' <- tau theta + (1 - tau) theta' (TAU), in (0, 1].")
    actor_lr: float = _f(1e-3, "Adam learning rate of the actor (ACTOR_LR).")
    critic_lr: float = _f(1e-3, "Adam learning rate of the critic (CRITIC_LR).")
    start_steps: int = _f(2_000, "Env steps of uniform random actions before acting with actor + noise "
                          "(START_STEPS).")
    update_after: int = _f(1_000, "Env steps before the first gradient update (UPDATE_AFTER).")
    updates_per_step: float = _f(1.0, "Gradient updates per environment transition (UPDATES_PER_STEP): a vector "
                                 "step of N envs performs N x this many updates; fractions accumulate "
                                 "(1/num_envs = one update per vector step).")
    noise_sigma: float = _f(0.1, "Std of Gaussian exploration noise, in action units (NOISE_SIGMA).")
    hidden_sizes: tuple[int, ...] = _f((256, 256), "Hidden layer widths of actor and critic (HIDDEN_SIZES).")
    grad_clip_norm: float = _f(1.0, "Max global gradient norm for actor and critic (GRAD_CLIP_NORM); 0 "
                               "disables clipping.")
    probe_n: int = _f(32, "Fixed probe states for the policy/Q heatmaps (PROBE_N).", group="diagnostics")
    probe_every_episodes: int = _f(5, "Snapshot the actor and Q on the probe states each time this many more "
                                   "episodes (summed over envs) have finished (PROBE_EVERY_EPISODES).",
                                   group="diagnostics")

    # --- run ------------------------------------------------------------------------------------------------
    run_dir: str = _f("", "Run directory; default runs/<env>__<algo>__<seed>__<timestamp>.", group="run")
    log_every: int = _f(1_000, "Env steps between metric pulls to the host (console, CSV rows); metrics stay "
                        "on the device in between.", group="run")
    quiet: bool = _f(False, "Print only the final summary.", group="run")

    def __post_init__(self) -> None:
        self.hidden_sizes = tuple(int(h) for h in self.hidden_sizes)
        self.validate()

    # --- validation -----------------------------------------------------------------------------------------
    def validate(self) -> None:
        """Reject values outside their allowed range with a message naming the field (raises ConfigError)."""

        def need(ok: bool, name: str, allowed: str) -> None:
            if not ok:
                flag = "--" + name.replace("_", "-")
                raise ConfigError(f"{flag}={getattr(self, name)!r} is invalid: {allowed}.")

        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            if choices is not None:
                need(getattr(self, f.name) in choices, f.name, "choose one of " + ", ".join(choices))
        need(bool(self.env), "env", "give a Gymnasium id such as Pendulum-v1")
        need(self.num_envs >= 1, "num_envs", "use 1 or more environments")
        need(self.total_steps >= 1, "total_steps", "train for at least 1 env step")
        need(self.replay_size >= 1, "replay_size", "the replay buffer needs at least 1 slot")
        need(self.batch_size >= 1, "batch_size", "use a batch of at least 1")
        need(self.batch_size <= self.replay_size, "batch_size",
             f"a batch cannot be larger than the replay buffer ({self.replay_size}); lower --batch-size or "
             "raise --replay-size")
        need(_finite(self.gamma) and 0.0 <= self.gamma <= 1.0, "gamma", "the discount must lie in [0, 1]")
        need(_finite(self.tau) and 0.0 < self.tau <= 1.0, "tau", "the soft update rate must lie in (0, 1]")
        need(_finite(self.actor_lr) and self.actor_lr > 0, "actor_lr", "use a positive learning rate")
        need(_finite(self.critic_lr) and self.critic_lr > 0, "critic_lr", "use a positive learning rate")
        need(self.start_steps >= 0, "start_steps", "use 0 or more steps")
        need(self.update_after >= 0, "update_after", "use 0 or more steps")
        need(_finite(self.updates_per_step) and self.updates_per_step >= 0, "updates_per_step",
             "use 0 or more updates per transition")
        need(_finite(self.noise_sigma) and self.noise_sigma >= 0, "noise_sigma", "use a std of 0 or more")
        need(len(self.hidden_sizes) >= 1 and all(h >= 1 for h in self.hidden_sizes), "hidden_sizes",
             "give one or more positive layer widths, e.g. 256 256")
        need(_finite(self.grad_clip_norm) and self.grad_clip_norm >= 0, "grad_clip_norm",
             "use 0 (off) or a positive norm")
        need(self.probe_n >= 1, "probe_n", "use at least 1 probe state")
        need(self.probe_every_episodes >= 1, "probe_every_episodes", "use at least 1 episode")
        need(self.log_every >= 1, "log_every", "use at least 1 env step")

    # --- (de)serialisation ----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field (tuples become lists)."""
        d = dataclasses.asdict(self)
        d["hidden_sizes"] = list(self.hidden_sizes)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Config:
        """Inverse of `to_dict`; unknown keys are rejected so that a typo never passes silently."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown config keys {unknown}; known keys are the fields of fastddpg.Config")
        return cls(**d)

    @property
    def algo(self) -> str:
        """Algorithm name used in run-directory names."""
        return "ddpg"


def _finite(x: float) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)
