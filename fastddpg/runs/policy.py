"""A trained policy in one call: ``fastddpg.load_policy(RUN_DIR)`` and its ``predict(obs)``.

    from fastddpg import load_policy
    policy = load_policy("runs/a", which="best")       # or which="final" (default), member=k, device="cuda"
    action = policy.predict(obs)                       # obs (obs_dim,) or (B, obs_dim), numpy or torch

`load_policy` is the one loader of a run's actor: ``fastddpg export`` writes the same module it returns
(``policy.actor``), so ``predict`` and the exported TorchScript/ONNX files act alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..algos import policy_from_state_dict
from ..core.config import Config, ConfigError, check_member, check_which, resolve_device
from ..core.schema import ACTOR_FILE, BEST_ACTOR_FILE
from ..learning.networks import policy_obs_dim
from .checkpoint import latest_checkpoint, load_checkpoint
from .evaluate import no_best_model, read_actor_file
from .rundir import load_run


@dataclass
class Policy:
    """A run's actor, ready to act. ``actor``: obs (B, obs_dim) -> action (B, act_dim) (an ``nn.Module`` in eval
    mode on ``device``); ``low``, ``high``: the env's action bounds, (act_dim,); ``which``/``member``: which
    weights of which member; ``config``: the run's Config."""

    actor: nn.Module
    config: Config
    which: str
    member: int
    device: torch.device
    low: torch.Tensor
    high: torch.Tensor

    @property
    def obs_dim(self) -> int:
        return policy_obs_dim(self.actor)

    @property
    def act_dim(self) -> int:
        return int(self.low.shape[0])

    @torch.no_grad()
    def predict(self, obs: Any) -> Any:
        """The deterministic action a = mu(s), inside the env's bounds, for one observation (obs_dim,) or a batch
        (B, obs_dim): a numpy array (or anything ``np.asarray`` takes) gives a float32 numpy array, a torch tensor
        gives a tensor on the policy's device; shape (act_dim,) or (B, act_dim)."""
        as_numpy = not isinstance(obs, torch.Tensor)
        x = torch.as_tensor(np.asarray(obs, dtype=np.float32)) if as_numpy else obs
        if x.dim() not in (1, 2) or x.shape[-1] != self.obs_dim:
            raise ValueError(f"predict takes one observation ({self.obs_dim},) or a batch (B, {self.obs_dim}), "
                             f"not shape {tuple(x.shape)}")
        x = x.to(self.device, torch.float32)
        action = self.actor(x.unsqueeze(0) if x.dim() == 1 else x)
        action = torch.clamp(action, self.low, self.high)  # tanh is in bounds; rounding at +-1 must not leave them
        action = action[0] if x.dim() == 1 else action
        return action.cpu().numpy() if as_numpy else action

    __call__ = predict


def load_policy(run_dir: str | Path, which: str = "final", member: int = 0, device: str = "cpu") -> Policy:
    """The actor of a run directory as a `Policy` on ``device``. ``which="final"``: its actor.pt, or for a run
    that did not finish its latest checkpoint's; ``which="best"``: its best_actor.pt (``--eval-every``: the best
    evaluation's weights). ``member`` picks one actor of a population (a single run has one, member 0). Every
    problem is a one-line ConfigError."""
    check_which(which)
    run = load_run(run_dir)
    cfg = run.config
    check_member(member, cfg.num_members)
    path = Path(run_dir) / (ACTOR_FILE if which == "final" else BEST_ACTOR_FILE)
    if path.is_file():
        actor = policy_from_state_dict(read_actor_file(path, cfg), cfg, member)
    elif which == "best":
        raise no_best_model(run_dir)
    elif latest_checkpoint(run_dir) is not None:
        actor = load_checkpoint(run_dir, member)["actor"]
    else:
        raise ConfigError(f"{run_dir} has neither {ACTOR_FILE} nor a checkpoint: the run has no policy yet.")
    dev = resolve_device(device)
    actor = actor.to(dev).eval()
    for p in actor.parameters():
        p.requires_grad_(False)
    bias, scale = actor.action_bias, actor.action_scale
    return Policy(actor, cfg, which, member, dev, bias - scale, bias + scale)
