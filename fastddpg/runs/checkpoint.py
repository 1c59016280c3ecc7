"""The checkpoint format: everything a run needs to continue, written atomically to ``<run_dir>/checkpoints/``,
and read back (`read_checkpoint`, `load_checkpoint`). Resume is `fastddpg.runs.resuming`'s; cutting the run
directory's tables back to a checkpoint is `fastddpg.runs.rundir.truncate_tables`'s.

A checkpoint file ``checkpoints/step_<global_step, 12 digits>.pt`` is a `torch.save`'d dict::

    format, version         "fastddpg-checkpoint", 1
    config                  Config.to_dict() of the run
    env                     {"id", "num_envs", "obs_dim", "act_dim"}
    device                  the training device it was written from
    global_step, num_updates, num_episodes, created
    trainer                 Trainer.state_dict(): actor, critic and both targets (state_dicts), the Adam state
                            of each optimizer, the replay buffer's contents and pointer, the noise state, the torch
                            (CPU and device) and numpy RNG states, the step/update/episode/probe-snapshot counters
                            and the replay-ratio credit, the probe states, and the callbacks' states
                            (``callbacks``: with --eval-every, "eval": the best model so far, its weights
                            included; `load_checkpoint(path, which="best")` loads it)

Not the run's rows: its history (episodes, updates, probes) is kept in one place, the run directory's tables,
which are written before each checkpoint; resume reads the rows up to the checkpoint from there
(`fastddpg.runs.resuming`). A checkpoint written before that also holds them (``trainer["logs"]``): only a PBT exploit
from such a checkpoint, which has no tables beside it, reads them.

It holds only tensors and plain Python values, so it loads with ``torch.load(weights_only=True)``.

Atomic: the file is written to a temporary name in the same directory, flushed and fsync'd, then renamed over
its final name (``os.replace``), so a crash or a kill -9 at any moment leaves either the previous checkpoints or
the new one complete, never a half-written ``step_*.pt``. Only the last ``keep`` are kept. `Checkpointer` writes
them when the trainer says (the trainer owns the cadence: `fastddpg.training.trainer.checkpoint_interval`;
`fastddpg.train` gives a run with a run directory one).
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch

from ..algos import policy_from_state_dict
from ..core.config import NO_BEST_HINT, Config, ConfigError, check_member, check_which
from ..core.fileio import TMP_SUFFIX, atomic_save
from ..core.schema import (
    ACTOR_FILE,
    CHECKPOINT_DIR,
    CRITIC_FILE,
)
from ..training.failsafe import RunDirError, size_words
from ..training.trainer import Trainer

FORMAT = "fastddpg-checkpoint"
VERSION = 1
_NAME = re.compile(r"^step_(\d+)\.pt$")


def checkpoint_path(run_dir: str | Path, global_step: int) -> Path:
    """``run_dir/checkpoints/step_<global_step>.pt`` (12 digits, so names sort by step)."""
    return Path(run_dir) / CHECKPOINT_DIR / f"step_{global_step:012d}.pt"


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """The complete checkpoints of a run directory, oldest first (temporary files are never listed)."""
    d = Path(run_dir) / CHECKPOINT_DIR
    if not d.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in d.iterdir() if (m := _NAME.match(p.name)) and p.is_file()]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest checkpoint of a run directory, or None if it has none."""
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


# --- writing -----------------------------------------------------------------------------------------------------

class Checkpointer:
    """The trainer's checkpoint writer (``Trainer(..., checkpointer=Checkpointer(run_dir))``): the trainer decides
    when (`fastddpg.training.trainer.checkpoint_interval`, and at the end) and reports first; `write` saves one into
    ``run_dir``. At the start of training it warns when the disk cannot hold the checkpoints."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)

    def at_start(self, trainer: Trainer) -> None:
        warning = disk_space_warning(trainer, self.run_dir)
        if warning is not None:
            print(f"fastddpg: warning: {warning}", file=sys.stderr)

    def write(self, trainer: Trainer) -> Path:
        """Save ``trainer``'s checkpoint (right after a report: `Trainer.state_dict`) and return its path."""
        if not self.run_dir.is_dir():  # removed under the run: say so, never create a run directory of checkpoints
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(self.run_dir))
        return save_checkpoint(trainer, self.run_dir, trainer.cfg.keep_checkpoints)


def checkpoint_bytes(trainer: Trainer) -> int:
    """About the size of this run's largest checkpoint: the replay buffer when full (min(replay_size,
    total_steps) rows of 2 obs_dim + act_dim + 2 float32 per member) dominates; then the networks, their targets
    and the two Adam moments of the actor's and the critic's parameters."""
    buf = trainer.buffer
    steps = math.ceil(trainer.cfg.total_steps / trainer.num_envs) * trainer.num_envs
    rows = min(buf.capacity, steps) * max(buf.members, 1)
    replay = rows * buf.width * buf.data.element_size()
    modules = trainer.algo.modules()
    size = {name: sum(p.numel() * p.element_size() for p in m.parameters()) for name, m in modules.items()}
    return replay + sum(size.values()) + 2 * (size.get("actor", 0) + size.get("critic", 0))


def disk_space_warning(trainer: Trainer, run_dir: str | Path) -> str | None:
    """One line when the run directory's filesystem cannot hold ``keep_checkpoints`` + 1 checkpoints (the next
    one is written before the oldest is deleted) of about `checkpoint_bytes` each; None when it can (or when the
    free space cannot be read). The run's own checkpoints count as room: they are replaced."""
    run_dir = Path(run_dir)
    try:
        free = shutil.disk_usage(run_dir).free
        have = sum(p.stat().st_size for p in list_checkpoints(run_dir))
    except OSError:
        return None
    one = checkpoint_bytes(trainer)
    keep = trainer.cfg.keep_checkpoints
    need = (keep + 1) * one
    if free + have >= need:
        return None
    return (f"{run_dir} has {size_words(free)} free, but one checkpoint of this run takes about "
            f"{size_words(one)} and it keeps {keep} (plus one while writing the next): about {size_words(need)}; "
            "free space, or lower --keep-checkpoints or --replay-size, or the run will stop when the disk is full")


def run_dir_error(err: OSError, run_dir: str | Path, trainer: Trainer, reported_step: int) -> RunDirError:
    """The `RunDirError` for ``err``, an OSError that stopped the run in ``run_dir`` after ``trainer``'s
    ``global_step``: the last intact checkpoint on disk (what resume would use) and about one checkpoint's size
    (the latest one's, else `checkpoint_bytes`)."""
    run_dir = Path(run_dir)
    try:
        ckpt = latest_checkpoint(run_dir)
        size = ckpt.stat().st_size if ckpt is not None else checkpoint_bytes(trainer)
    except OSError:
        ckpt, size = None, checkpoint_bytes(trainer)
    step = int(_NAME.match(ckpt.name).group(1)) if ckpt is not None else None  # type: ignore[union-attr]
    return RunDirError(err.errno, err.strerror, err.filename, run_dir=run_dir, checkpoint=ckpt,
                       checkpoint_step=step, global_step=trainer.global_step, reported_step=reported_step,
                       checkpoint_bytes=size)


def checkpoint_state(trainer: Trainer) -> dict[str, Any]:
    """The checkpoint dict of a trainer (right after a flush; see the module docstring for the layout)."""
    cfg = trainer.cfg
    return {
        "format": FORMAT,
        "version": VERSION,
        "config": cfg.to_dict(),
        "env": {"id": cfg.env, "num_envs": trainer.num_envs, "obs_dim": trainer.env.obs_dim,
                "act_dim": trainer.env.act_dim},
        "device": str(trainer.device),
        "global_step": trainer.global_step,
        "num_updates": trainer.num_updates,
        "num_episodes": trainer.num_episodes,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "trainer": trainer.state_dict(),
    }


def save_checkpoint(trainer: Trainer, run_dir: str | Path, keep: int | None = None) -> Path:
    """Write ``trainer``'s checkpoint to ``run_dir/checkpoints/step_<global_step>.pt`` atomically, then delete
    all but the newest ``keep`` checkpoints (default ``trainer.cfg.keep_checkpoints``) and stale temp files.
    Returns the checkpoint's path."""
    keep = trainer.cfg.keep_checkpoints if keep is None else keep
    d = Path(run_dir) / CHECKPOINT_DIR
    d.mkdir(parents=True, exist_ok=True)
    path = atomic_save(checkpoint_state(trainer), checkpoint_path(run_dir, trainer.global_step))
    for old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        with contextlib.suppress(OSError):
            old.unlink()
    for stale in d.glob(f".step_*{TMP_SUFFIX}"):  # left by a process killed mid-write
        if not stale.name.endswith(f".{os.getpid()}{TMP_SUFFIX}"):
            with contextlib.suppress(OSError):
                stale.unlink()
    return path


# --- reading -----------------------------------------------------------------------------------------------------

def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The raw checkpoint dict, on the CPU (``weights_only`` load). A missing, truncated or foreign file is a
    ConfigError with one line."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no checkpoint at {path}; give a file from RUN_DIR/{CHECKPOINT_DIR}/ or a run directory.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a cut zip archive, an empty file, a pickle error: all mean "not a whole checkpoint"
        older = [p for p in list_checkpoints(path.parent.parent) if p != path]
        hint = (f"delete it to resume from the previous one ({older[-1].name})" if older
                else "it cannot be used; start a new run")
        raise ConfigError(f"checkpoint {path} is truncated or corrupt ({type(e).__name__}); {hint}.") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ConfigError(f"{path} is not a fastddpg checkpoint.")
    if state.get("version") != VERSION:
        raise ConfigError(f"checkpoint {path} has format version {state.get('version')}; this fastddpg reads "
                          f"version {VERSION}.")
    return state


def load_checkpoint(path: str | Path, member: int = 0, which: str = "final") -> dict[str, Any]:
    """Load a checkpoint (a ``step_*.pt`` file, or a run directory: its latest checkpoint) for use in your own
    code. Returns a dict with:

    - ``actor``: the trained policy as a plain ``nn.Module`` on the CPU in eval mode, obs (B, obs_dim) ->
      action (B, act_dim) inside the env's action bounds (of a population: member ``member``'s); with
      ``which="best"`` the best actor of the periodic evaluations up to the checkpoint (``--eval-every``), and
      ``best``: that member's {"global_step", "return", "std"};
    - ``config``: the run's `Config`; ``env``: {"id", "num_envs", "obs_dim", "act_dim"};
    - ``global_step``, ``num_updates``, ``num_episodes``, ``path``;
    - ``state``: the raw checkpoint dict (critic, targets, optimizers, replay buffer, RNG states, ...).
    """
    path = Path(path)
    if path.is_dir():
        latest = latest_checkpoint(path)
        if latest is None:
            raise ConfigError(f"{path} has no checkpoint in {CHECKPOINT_DIR}/.")
        path = latest
    check_which(which)
    state = read_checkpoint(path)
    cfg = Config.from_dict(state["config"])
    check_member(member, cfg.num_members)
    weights, best = state["trainer"]["modules"]["actor"], {}
    if which == "best":
        saved = state["trainer"].get("callbacks", {}).get("eval") or {}
        if saved.get("best_actor") is None:
            raise ConfigError(f"checkpoint {path} holds no best model: the run did not evaluate during training; "
                              f"{NO_BEST_HINT}.")
        weights = saved["best_actor"]
        step, ret, std = saved["best"][member]
        best = {"best": {"global_step": int(step), "return": float(ret), "std": float(std)}}
    actor = policy_from_state_dict(weights, cfg, member)
    return {"actor": actor, "config": cfg, "env": dict(state["env"]), "global_step": state["global_step"],
            "num_updates": state["num_updates"], "num_episodes": state["num_episodes"], "path": path,
            "state": state, **best}


def restore_weights(run_dir: str | Path, checkpoint: str | Path | None) -> None:
    """Make RUN_DIR's actor.pt and critic.pt the weights of ``checkpoint`` (after a non-finite stop: the last
    finite ones), or remove them when there is no checkpoint, so that no NaN weights are left as the result."""
    run_dir = Path(run_dir)
    if checkpoint is None:
        for name in (ACTOR_FILE, CRITIC_FILE):
            with contextlib.suppress(OSError):
                (run_dir / name).unlink()
        return
    modules = read_checkpoint(checkpoint)["trainer"]["modules"]
    atomic_save(modules["actor"], run_dir / ACTOR_FILE)
    atomic_save(modules["critic"], run_dir / CRITIC_FILE)
