"""Resume: the one owner of continuing a run directory from its latest checkpoint (``fastddpg run --resume RUN_DIR``,
`fastddpg.resume`).

`resume_run` restores the latest checkpoint exactly and cuts the run directory's tables back to it
(`fastddpg.runs.rundir.truncate_tables`: a run killed after its last checkpoint has rows after it), so the resumed run
appends with no duplicated or lost rows. The run's history (its episode, update and probe rows) is kept in one
place, those tables: a checkpoint holds only counters, and the restored trainer reads the rows up to its
checkpoint from the cut tables (`Trainer.load_history`), so its results hold the whole run.

Gymnasium envs cannot be snapshotted: on resume every env is reset with a seed derived from (seed, global_step),
so **episodes in progress at the checkpoint are cut there**: their partial returns are dropped (they never
appear in episodes.csv) and new episodes start fresh. Their transitions stay in the replay buffer (each one is a
valid transition).
"""

from __future__ import annotations

import contextlib
import json
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..core.config import RECORD_FIELDS, RESUME_OVERRIDABLE, Config, ConfigError, first_line, resolve_device
from ..core.fileio import write_json
from ..core.lazy import LazyModule
from ..core.schema import (
    ACTOR_FILE,
    CHECKPOINT_DIR,
    CONFIG_FILE,
    CRITIC_FILE,
    EPISODE_COLUMNS,
    PROBE_COLUMNS,
    REPORT_FILE,
    SUMMARY_FILE,
    TABLES,
    with_member,
)
from ..training.trainer import Trainer, probe_counters
from .checkpoint import latest_checkpoint, read_checkpoint
from .rundir import (
    RunWriter,
    hold_run_dir,
    probe_writable,
    read_run_config,
    read_table,
    release_run_dir,
    require_run_packages,
    truncate_tables,
)

if TYPE_CHECKING:
    import pandas as pd
else:  # imported at first use (fastddpg.core.lazy): a run needs pandas and plotly only at its end
    pd = LazyModule("pandas")



def resume_run(run_dir: str | Path, overrides: dict[str, Any] | None = None, argv: list[str] | None = None
               ) -> tuple[Trainer, RunWriter]:
    """Open a run directory to continue it: its config.json, its latest checkpoint restored into a new Trainer
    (``trainer.run_dir`` set), CSV rows written after that checkpoint dropped, and a RunWriter that appends.
    ``overrides`` may change the fields in RESUME_OVERRIDABLE (e.g. a larger ``total_steps``).

    Every problem is a one-line ConfigError, raised before anything in the directory changes: no such run
    directory, not writable, held by another process (`fastddpg.runs.rundir.hold_run_dir`: the returned run holds
    it until `fastddpg.api.run_to_end` ends), no or a truncated checkpoint, a checkpoint that does not match
    config.json (env, shapes, architecture), a total_steps the checkpoint has already reached, a checkpoint written
    on another device type, or a package the run needs (``--tensorboard``'s).
    """
    path = Path(run_dir)
    if not path.is_dir():
        raise ConfigError(f"--resume {path}: no such run directory.")
    cfg_file = path / CONFIG_FILE
    try:
        meta, cfg = read_run_config(cfg_file)
    except FileNotFoundError:
        raise ConfigError(f"--resume {path}: not a fastddpg run directory (no {CONFIG_FILE}).") from None
    except ConfigError as e:
        raise ConfigError(f"--resume {path}: {e}") from None
    overrides = dict(overrides or {})
    fixed = sorted(set(overrides) - set(RESUME_OVERRIDABLE))
    if fixed:
        flags = ", ".join("--" + k.replace("_", "-") for k in fixed)
        allowed = ", ".join("--" + k.replace("_", "-") for k in RESUME_OVERRIDABLE)
        raise ConfigError(f"{flags} cannot be changed on --resume (the run keeps its config.json); only {allowed} "
                          "may be given.")
    _check_writable(path)
    hold_run_dir(path)  # before anything is read to be cut: no other process appends to it meanwhile
    try:
        ckpt_path = latest_checkpoint(path)
        if ckpt_path is None:
            raise ConfigError(f"--resume {path}: no checkpoint in {path / CHECKPOINT_DIR} (the run stopped before its "
                              "first one); start a new run.")
        state = read_checkpoint(ckpt_path)

        # the checkpoint must belong to this config (a field newer than the checkpoint takes its default, as in
        # config.json)
        saved = {**Config().to_dict(), **state["config"]}
        differ = [k for k, v in cfg.to_dict().items()  # (the record of given fields: not a setting of the run)
                  if k not in RESUME_OVERRIDABLE and k not in RECORD_FIELDS and saved.get(k) != v]
        if differ:
            shown = ", ".join(f"{k} ({saved.get(k)!r} in the checkpoint, {getattr(cfg, k)!r} in {CONFIG_FILE})"
                              for k in differ)
            raise ConfigError(f"checkpoint {ckpt_path} does not match {cfg_file}: {shown}; restore {CONFIG_FILE} or "
                              "start a new run.")
        cfg = Config.from_dict({**cfg.to_dict(), **overrides})
        step = state["global_step"]
        # a run stopped at its last step (an OS error while writing its end files) resumes to write them; a total the
        # checkpoint has passed would end the run before where it is
        if cfg.total_steps < step or (cfg.total_steps == step and run_dir_complete(path)):
            raise ConfigError(f"--resume {path}: the latest checkpoint is already at env step {step:,} "
                              f"(--total-steps={cfg.total_steps:,}); pass a larger --total-steps to train on.")
        was, now = torch.device(state["device"]).type, resolve_device(cfg.device).type
        if was != now:
            raise ConfigError(f"checkpoint {ckpt_path} was written on {was} but this run would train on {now} "
                              f"(--device={cfg.device}); resume on a {was} machine or with --device {was}.")

        require_run_packages(cfg)  # before the tables are cut and config.json rewritten
        trainer = Trainer(cfg)
        try:
            _restore(trainer, state, ckpt_path)
            truncate_tables(path, *table_limits(state))
            # the files of the run's end, rewritten when the resumed run ends: the parquet copies of the tables,
            # and a finished segment's weights and summary, which would otherwise be taken for the result of a
            # resumed run that dies (`fastddpg.runs.policy.load_policy` falls back to the latest checkpoint)
            for stale in [*path.glob("*.parquet"), path / ACTOR_FILE, path / CRITIC_FILE, path / SUMMARY_FILE]:
                with contextlib.suppress(OSError):
                    stale.unlink()
            load_history(trainer, path, ckpt_path)
            argv = list(sys.argv if argv is None else argv)
            meta["config"] = cfg.to_dict()
            meta.setdefault("resumes", []).append({"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                                   "command": shlex.join(argv), "checkpoint": str(ckpt_path),
                                                   "global_step": step})
            write_json(cfg_file, meta)
        except BaseException:
            trainer.close()
            raise
    except BaseException:
        release_run_dir(path)
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
        first = first_line(e) or type(e).__name__
        raise ConfigError(f"checkpoint {ckpt_path} does not fit this run's networks or buffer: {first}") from None
    trainer.last_checkpoint = ckpt_path


def table_limits(state: dict[str, Any]) -> tuple[int | list[int], int, int, int]:
    """What `fastddpg.runs.rundir.truncate_tables` keeps of a run directory resumed from checkpoint ``state``: its
    episodes (a population's: per member), updates, probe snapshots and env step."""
    member_episodes = state["trainer"]["counters"].get("member_episodes")  # a population's
    episodes = state["num_episodes"] if member_episodes is None else [int(e) for e in member_episodes]
    return episodes, state["num_updates"], probe_counters(state["trainer"])[0], state["global_step"]


def load_history(trainer: Trainer, run_dir: Path, ckpt_path: Path) -> None:
    """The restored trainer's rows up to its checkpoint, read from the run directory's (cut) tables; a table
    that falls short of the checkpoint is a ConfigError with one line."""
    try:
        trainer.load_history({table: read_table(run_dir, table) for table in TABLES})
    except (ValueError, KeyError) as e:
        raise ConfigError(f"--resume {run_dir}: its tables do not reach checkpoint {ckpt_path.name}: {e}; the "
                          "run directory's CSVs were cut or edited, so the run cannot continue without a gap; "
                          "start a new run.") from None


def history_at(state: dict[str, Any], *dirs: Path | None) -> dict[str, pd.DataFrame] | None:
    """The run's rows up to checkpoint ``state`` from the first of ``dirs`` that holds its tables (a PBT exploit:
    the tables the source trial attached to its Tune checkpoint, else the source's run directory), cut back as
    resume cuts them (on a copy: ``dirs`` are left as they are); else the rows a checkpoint written before the
    history lived in the tables holds; None when there are none."""
    for d in dirs:
        if d is None or not (d / "episodes.csv").is_file():
            continue
        with tempfile.TemporaryDirectory(prefix="fastddpg-history-") as tmp:
            for table in TABLES:
                if (d / f"{table}.csv").is_file():
                    shutil.copy2(d / f"{table}.csv", Path(tmp) / f"{table}.csv")
            truncate_tables(tmp, *table_limits(state))
            return {table: read_table(tmp, table) for table in TABLES}
    logs = state["trainer"].get("logs")
    if logs is None:
        return None
    k = Config.from_dict(state["config"]).num_members
    return {"episodes": pd.DataFrame(logs["episodes"], columns=list(with_member(EPISODE_COLUMNS, k))),
            "updates": pd.DataFrame(logs["updates"]),
            "probes": pd.DataFrame(logs["probes"], columns=list(with_member(PROBE_COLUMNS, k)))}


def _check_writable(path: Path) -> None:
    d = path / CHECKPOINT_DIR
    try:
        d.mkdir(exist_ok=True)
        probe_writable(path)
        probe_writable(d)
    except OSError as e:
        raise ConfigError(f"cannot write the run directory {path}: {e.strerror or e}; resume needs to write "
                          "its checkpoints and CSVs there.") from None
