"""Checkpoints: everything a run needs to continue, written atomically to ``<run_dir>/checkpoints/``, and resume.

A checkpoint file ``checkpoints/step_<global_step, 12 digits>.pt`` is a `torch.save`'d dict::

    format, version         "fastddpg-checkpoint", 1
    config                  Config.to_dict() of the run
    env                     {"id", "num_envs", "obs_dim", "act_dim"}
    device                  the training device it was written from
    global_step, num_updates, num_episodes, created
    trainer                 Trainer.state_dict(): actor, critic and both targets (state_dicts), the Adam state
                            of each optimizer, the replay buffer's contents and pointer, the noise state, the torch
                            (CPU and device) and numpy RNG states, the step/update/episode counters and the
                            replay-ratio credit, the probe states, the host-side logs, and the callbacks'
                            states (``callbacks``: with --eval-every, "eval": the best model so far, its weights
                            included; `load_checkpoint(path, which="best")` loads it)

It holds only tensors and plain Python values, so it loads with ``torch.load(weights_only=True)``.

Atomic: the file is written to a temporary name in the same directory, flushed and fsync'd, then renamed over
its final name (``os.replace``), so a crash or a kill -9 at any moment leaves either the previous checkpoints or
the new one complete, never a half-written ``step_*.pt``. Only the last ``keep`` are kept. `Checkpointer` is the
trainer callback that writes them (`fastddpg.train` adds it to a run with a run directory).

Resume (`resume_run`, ``fastddpg run --resume RUN_DIR``) restores the latest checkpoint exactly and drops the
CSV rows written after it (a run killed after its last checkpoint has some), so the resumed run appends with
no duplicated or lost rows. Gymnasium envs cannot be snapshotted: on resume every env is reset with a seed
derived from (seed, global_step), so **episodes in progress at the checkpoint are cut there**: their partial
returns are dropped (they never appear in episodes.csv) and new episodes start fresh. Their transitions stay in
the replay buffer (each one is a valid transition).
"""

from __future__ import annotations

import contextlib
import csv
import errno
import json
import math
import os
import re
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from .algos import policy_from_state_dict
from .config import NO_BEST_HINT, Config, ConfigError, check_member, check_which, resolve_device
from .failsafe import RunDirError, size_words
from .fileio import TMP_SUFFIX, atomic_save, atomic_write, write_json
from .rundir import RunWriter, probe_writable
from .schema import (
    ACTOR_FILE,
    CHECKPOINT_DIR,
    CONFIG_FILE,
    CRITIC_FILE,
    EVAL_FILE,
    MEMBER,
    REPORT_FILE,
    SUMMARY_FILE,
)
from .trainer import Trainer

FORMAT = "fastddpg-checkpoint"
VERSION = 1
_NAME = re.compile(r"^step_(\d+)\.pt$")
# Config fields `fastddpg run --resume` lets you change (none changes what the checkpoint holds or how the run
# learns); every other field is the run's own, from its config.json.
RESUME_OVERRIDABLE = ("total_steps", "checkpoint_every", "keep_checkpoints", "log_every", "quiet", "device",
                      "compile", "vector_mode", "threads", "tensorboard", "eval_every")


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

def checkpoint_interval(cfg: Config, num_envs: int) -> int:
    """Env steps between checkpoints: ``checkpoint_every``, or for 0 ('auto') a quarter of ``total_steps``
    rounded up to whole report intervals (``log_every`` in whole vector steps), so checkpoints fall on reports."""
    if cfg.checkpoint_every:
        return cfg.checkpoint_every
    report_steps = max(1, math.ceil(cfg.log_every / num_envs)) * num_envs
    return math.ceil(cfg.total_steps / 4 / report_steps) * report_steps


class Checkpointer:
    """Trainer callback: a checkpoint every `checkpoint_interval` env steps (reporting first, so a checkpoint holds
    no unreported device logs and a non-finite state raises before it is saved), and one when the run ends or is
    stopped by a signal. Sets ``trainer.last_checkpoint``."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.every = 0
        self.next = 0

    def at_start(self, trainer: Trainer) -> None:
        self.every = checkpoint_interval(trainer.cfg, trainer.num_envs)
        self.next = (trainer.global_step // self.every + 1) * self.every
        warning = disk_space_warning(trainer, self.run_dir)
        if warning is not None:
            print(f"fastddpg: warning: {warning}", file=sys.stderr)

    def __call__(self, trainer: Trainer, episodes: pd.DataFrame, row: dict[str, float] | None) -> None:
        """Nothing at a report: checkpoints follow env steps (`after_step`)."""

    def after_step(self, trainer: Trainer) -> None:
        if self.next <= trainer.global_step < trainer.cfg.total_steps:
            self.write(trainer)
            self.next = (trainer.global_step // self.every + 1) * self.every

    def at_end(self, trainer: Trainer) -> None:
        self.write(trainer)

    def write(self, trainer: Trainer) -> Path:
        if trainer.device_log.pending:
            trainer.flush()
        if not self.run_dir.is_dir():  # removed under the run: say so, never create a run directory of checkpoints
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(self.run_dir))
        trainer.last_checkpoint = save_checkpoint(trainer, self.run_dir, trainer.cfg.keep_checkpoints)
        return trainer.last_checkpoint


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


# --- resume ------------------------------------------------------------------------------------------------------

def resume_run(run_dir: str | Path, overrides: dict[str, Any] | None = None, argv: list[str] | None = None
               ) -> tuple[Trainer, RunWriter]:
    """Open a run directory to continue it: its config.json, its latest checkpoint restored into a new Trainer
    (``trainer.run_dir`` set), CSV rows written after that checkpoint dropped, and a RunWriter that appends.
    ``overrides`` may change the fields in RESUME_OVERRIDABLE (e.g. a larger ``total_steps``).

    Every problem is a one-line ConfigError: no such run directory, not writable, no or a truncated
    checkpoint, a checkpoint that does not match config.json (env, shapes, architecture), a total_steps the
    checkpoint has already reached, or a checkpoint written on another device type.
    """
    path = Path(run_dir)
    if not path.is_dir():
        raise ConfigError(f"--resume {path}: no such run directory.")
    cfg_file = path / CONFIG_FILE
    try:
        meta = json.loads(cfg_file.read_text())
        cfg = Config.from_dict(meta["config"])
    except FileNotFoundError:
        raise ConfigError(f"--resume {path}: not a fastddpg run directory (no {CONFIG_FILE}).") from None
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ConfigError(f"--resume {path}: {CONFIG_FILE} is not a valid fastddpg config ({e}).") from None
    overrides = dict(overrides or {})
    fixed = sorted(set(overrides) - set(RESUME_OVERRIDABLE))
    if fixed:
        flags = ", ".join("--" + k.replace("_", "-") for k in fixed)
        allowed = ", ".join("--" + k.replace("_", "-") for k in RESUME_OVERRIDABLE)
        raise ConfigError(f"{flags} cannot be changed on --resume (the run keeps its config.json); only {allowed} "
                          "may be given.")
    _check_writable(path)
    ckpt_path = latest_checkpoint(path)
    if ckpt_path is None:
        raise ConfigError(f"--resume {path}: no checkpoint in {path / CHECKPOINT_DIR} (the run stopped before its "
                          "first one); start a new run.")
    state = read_checkpoint(ckpt_path)

    # the checkpoint must belong to this config (a field newer than the checkpoint takes its default, as in
    # config.json)
    saved = {**Config().to_dict(), **state["config"]}
    differ = [k for k, v in cfg.to_dict().items() if k not in RESUME_OVERRIDABLE and saved.get(k) != v]
    if differ:
        shown = ", ".join(f"{k} ({saved.get(k)!r} in the checkpoint, {getattr(cfg, k)!r} in {CONFIG_FILE})"
                          for k in differ)
        raise ConfigError(f"checkpoint {ckpt_path} does not match {cfg_file}: {shown}; restore {CONFIG_FILE} or "
                          "start a new run.")
    cfg = Config.from_dict({**cfg.to_dict(), **overrides})
    step = state["global_step"]
    if cfg.total_steps <= step and run_dir_complete(path):
        raise ConfigError(f"--resume {path}: the latest checkpoint is already at env step {step:,} "
                          f"(--total-steps={cfg.total_steps:,}); pass a larger --total-steps to train on.")
    was, now = torch.device(state["device"]).type, resolve_device(cfg.device).type
    if was != now:
        raise ConfigError(f"checkpoint {ckpt_path} was written on {was} but this run would train on {now} "
                          f"(--device={cfg.device}); resume on a {was} machine or with --device {was}.")

    trainer = Trainer(cfg)
    try:
        _restore(trainer, state, ckpt_path)
        truncate_tables(path, state)
        for stale in path.glob("*.parquet"):  # derived copies; rewritten from the CSVs when the run finishes
            with contextlib.suppress(OSError):
                stale.unlink()
        argv = list(sys.argv if argv is None else argv)
        meta["config"] = cfg.to_dict()
        meta.setdefault("resumes", []).append({"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                               "command": shlex.join(argv), "checkpoint": str(ckpt_path),
                                               "global_step": step})
        write_json(cfg_file, meta)
    except BaseException:
        trainer.env.close()
        raise
    writer = RunWriter(path, trainer.cfg.algo, trainer.cfg.num_members)
    writer.probes_written = len(trainer.probe_rows)  # the restored probe rows are already in probes.csv
    writer.reported_step = step
    return trainer, writer


def run_dir_complete(run_dir: str | Path) -> bool:
    """Whether a run directory holds a finished run's files: the weights, the report and a summary.json of a run
    that was not stopped. A run stopped at its last step (an OS error while writing them) does not: resuming it
    from that checkpoint trains no further and writes them."""
    path = Path(run_dir)
    if not all((path / name).is_file() for name in (ACTOR_FILE, CRITIC_FILE, REPORT_FILE, SUMMARY_FILE)):
        return False
    try:
        return "stopped_by" not in json.loads((path / SUMMARY_FILE).read_text())
    except (OSError, ValueError):
        return False


def _restore(trainer: Trainer, state: dict[str, Any], ckpt_path: Path) -> None:
    """Check the checkpoint's shapes against the trainer's env, then load it (one-line ConfigErrors)."""
    env = state["env"]
    have = {"num_envs": trainer.num_envs, "obs_dim": trainer.env.obs_dim, "act_dim": trainer.env.act_dim}
    for key, value in have.items():
        if env[key] != value:
            raise ConfigError(f"checkpoint {ckpt_path} has {key}={env[key]} but {trainer.cfg.env} gives "
                              f"{key}={value}; resume with the env version the run was trained on.")
    try:
        trainer.load_state_dict(state["trainer"])
    except (RuntimeError, KeyError, ValueError, TypeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"checkpoint {ckpt_path} does not fit this run's networks or buffer: {first}") from None
    trainer.last_checkpoint = ckpt_path


def _check_writable(path: Path) -> None:
    d = path / CHECKPOINT_DIR
    try:
        d.mkdir(exist_ok=True)
        probe_writable(path)
        probe_writable(d)
    except OSError as e:
        raise ConfigError(f"cannot write the run directory {path}: {e.strerror or e}; resume needs to write "
                          "its checkpoints and CSVs there.") from None


def truncate_tables(run_dir: str | Path, state: dict[str, Any]) -> dict[str, int]:
    """Drop the rows of episodes.csv, updates.csv and probes.csv that came after the checkpoint ``state`` (and a
    row cut short by a kill), so appending from the checkpoint duplicates and loses nothing. Returns the
    number of rows dropped per table."""
    logs = state["trainer"]["logs"]
    member_episodes = state["trainer"]["counters"].get("member_episodes")  # a population's
    col = 0 if member_episodes is None else 1  # a population's rows start with the member
    last_snapshot = max((int(r[col]) for r in logs["probes"]), default=-1)
    limits = {"episodes": ("episode", state["num_episodes"] if member_episodes is None else list(member_episodes)),
              "updates": ("update", state["num_updates"]), "probes": ("snapshot", last_snapshot)}
    dropped = {table: _truncate_csv(Path(run_dir) / f"{table}.csv", key, limit)
               for table, (key, limit) in limits.items()}
    dropped["eval"] = truncate_evals(Path(run_dir) / EVAL_FILE, state["global_step"])
    return dropped


def truncate_evals(path: Path, global_step: int) -> int:
    """Drop eval.csv's periodic and final rows after env step ``global_step`` (the resumed run evaluates those
    steps again) and a row cut short by a kill; manual rows (`fastddpg eval`) stay. Returns the rows dropped."""
    if not path.is_file():
        return 0
    with open(path, newline="") as f:
        lines = f.readlines()
    header = next(csv.reader(lines[:1]), [])
    if "kind" not in header or "global_step" not in header:  # a file from before periodic evaluation
        return 0
    kind, step = header.index("kind"), header.index("global_step")
    keep = lines[:1]
    for line in lines[1:]:
        fields = next(csv.reader([line]), [])
        if not (line.endswith("\n") and len(fields) == len(header)):
            continue
        if fields[kind] == "manual" or (_int_or_none(fields[step]) or 0) <= global_step:
            keep.append(line)
    dropped = len(lines) - len(keep)
    if dropped:
        atomic_write(path, lambda f: f.write("".join(keep).encode()))
    return dropped


def _truncate_csv(path: Path, key: str, limit: int | list[int]) -> int:
    """Keep the header and the complete rows whose integer ``key`` column is <= ``limit`` (a list: one limit per
    member, by the row's member column); rewrite atomically."""
    if not path.is_file():
        return 0
    with open(path, newline="") as f:
        lines = f.readlines()
    if not lines:
        return 0
    header = next(csv.reader([lines[0]]))
    if key not in header:
        return 0
    k = header.index(key)
    m = header.index(MEMBER) if isinstance(limit, list) else None
    keep = [lines[0] if lines[0].endswith("\n") else lines[0] + "\r\n"]
    for line in lines[1:]:
        fields = next(csv.reader([line]), [])
        if not (line.endswith("\n") and len(fields) == len(header)) or _int_or_none(fields[k]) is None:
            continue
        if m is None:
            row_limit = limit
        else:
            member = _int_or_none(fields[m])
            if member is None or not 0 <= member < len(limit):
                continue
            row_limit = limit[member]
        if _int_or_none(fields[k]) <= row_limit:
            keep.append(line)
    dropped = len(lines) - len(keep)
    if dropped:
        atomic_write(path, lambda f: f.write("".join(keep).encode()))
    return dropped


def _int_or_none(s: str) -> int | None:
    try:
        return int(s)
    except ValueError:
        return None


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
