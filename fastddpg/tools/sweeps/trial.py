"""One trial, in a Ray worker: Tune's trainable, PBT's exploit through fastddpg's checkpoints, and the
reporter that tells Tune each fastddpg report (see the package docstring)."""

from __future__ import annotations

import csv
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ...core.config import Config, ConfigError, field_types, parse_field_value
from ...core.schema import (
    ACTOR_FILE,
    CHECKPOINT_DIR,
    CONFIG_FILE,
    REPORT_FILE,
    SUMMARY_FILE,
    TABLES,
    Last10,
    episode_records,
)
from .spec import (
    _REPORT_COLUMNS,
    _SHAPE_FIELDS,
    EXPLOITS_DIR,
    PBT_MUTABLE,
    REPORTS_FILE,
    SOURCE_FILE,
    TIME_ATTR,
    TRIALS_DIR,
    SweepSpec,
)


def _cast(name: str, value: Any) -> Any:
    kind = field_types()[name]
    if kind is tuple:  # a tuple, or its text ('64x64': how Optuna's categorical choices carry hidden sizes)
        return parse_field_value(name, value) if isinstance(value, str) else tuple(int(v) for v in value)
    if kind is bool:
        return bool(value)
    if kind is int:
        return round(float(value))
    if kind is float:
        return float(value)
    return str(value)


def trial_config(spec: SweepSpec, params: dict[str, Any], run_dir: Path) -> Config:
    """The trial's Config: the base, its swept values, its run directory, quiet, torch threads from its CPUs (unless
    the base sets them) and, for PBT, a checkpoint every PBT interval."""
    values = {**{k: _cast(k, v) for k, v in params.items() if k in field_types()},
              "run_dir": str(run_dir), "quiet": True}
    if not values.get("threads", spec.base.get("threads")):
        values["threads"] = max(1, int(spec.cpus_per_trial))
    if spec.scheduler == "pbt":
        values["checkpoint_every"] = spec.interval()
    return Config.merged(spec.base, values)


REUSE_WAIT_S = 300  # TUNE_FUNCTION_THREAD_TIMEOUT_S: see run_trial
_graphs: dict[str, int] = {}  # this worker process's compiled graphs: the torch threads they were made for, and
#                              dynamo's unique_graphs count when they were last reset


def keep_or_reset_graphs(cfg: Config) -> bool:
    """Before each trial in a worker (Tune reuses a worker for trial after trial): keep dynamo's compiled graphs of
    the trials before when this trial runs on the thread count they were compiled for, else reset them; returns
    whether they were kept.

    Kept, an update whose graph is the same as an earlier trial's (same shapes, same hyperparameters: a grid over
    seeds) is not compiled again: dynamo's guards find it, and a trial whose graph differs compiles its own beside
    it. Those are the kernels a fresh process would compile for the trial (inductor's cache key holds what they
    depend on), so the numbers are the same (tested). Two things dynamo does not guard on force a reset: the
    thread count (inductor's CPU kernels keep the count they were compiled with: `fastddpg.core.threads`), so a
    trial with other threads (or auto threads, which vary) compiles for its own; and dynamo's recompile limit,
    beyond which a function would run eager, so the graphs are dropped well before a function could reach it."""
    if "torch" not in sys.modules:  # the worker's first trial: nothing compiled yet
        _graphs.update(threads=cfg.threads, graphs=0)
        return False
    import torch
    from torch._dynamo.utils import counters

    graphs = counters["stats"]["unique_graphs"]
    same_threads = cfg.threads > 0 and _graphs.get("threads") == cfg.threads
    if same_threads and graphs - _graphs.get("graphs", 0) <= torch._dynamo.config.recompile_limit // 2:
        return True
    torch._dynamo.reset()
    _graphs.update(threads=cfg.threads, graphs=graphs)
    return False


def run_trial(params: dict[str, Any], spec: dict[str, Any], hook: Callable[..., None] | None = None) -> None:
    """Tune's function trainable: one fastddpg run in ``ROOT/trials/<trial id>``, reporting at every report."""
    sweep = SweepSpec(**spec)
    os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", str(max(1, int(sweep.cpus_per_trial))))
    # Tune hands this worker to the next trial (reuse_actors) once this trial's thread has ended; a trial that ASHA
    # stopped or PBT exploited ends by finishing its run directory (summary, report.html), which takes longer than
    # Tune's default wait of 2 s on a loaded machine, and a reset that times out errors the next trial
    os.environ.setdefault("TUNE_FUNCTION_THREAD_TIMEOUT_S", str(REUSE_WAIT_S))
    from ray import tune

    from ...api import run_dir_os_error, run_to_end
    from ...runs.checkpoint import run_dir_error

    trial_id = tune.get_context().get_trial_id()
    run_dir = sweep.root / TRIALS_DIR / trial_id
    cfg = trial_config(sweep, params, run_dir)
    keep_or_reset_graphs(cfg)  # a worker may have run trials before (Tune's actor reuse)
    opened = open_trial(sweep, cfg, run_dir, trial_id, tune.get_checkpoint())
    if opened is None:  # finished before (a sweep resumed after the trial's last checkpoint): report it, done
        tune.report(final_metrics(run_dir, sweep))
        return
    trainer, writer, event = opened
    reporter = TuneReporter(sweep, trial_id, event, hook)
    run_to_end(trainer, writer, [reporter])
    try:
        reporter.report(trainer, final=True)  # after the run directory is complete: a STOP now loses nothing
    except Exception as e:  # a full disk at the last report's reports.csv: the one line run_to_end gives
        err = run_dir_os_error(e, writer.path)
        if err is None:
            raise
        raise run_dir_error(err, writer.path, trainer, writer.reported_step) from e


def _step_of(path: Path | None) -> int:
    return int(path.stem.split("_")[1]) if path is not None else -1


def open_trial(spec: SweepSpec, cfg: Config, run_dir: Path, trial_id: str, checkpoint: Any) -> Any:
    """(trainer, writer, event) for this trial: from another trial's checkpoint (a PBT exploit), else continuing
    its own run directory from its latest checkpoint (a restore, a resumed sweep), else a new run. None when the
    run directory already reached its total steps."""
    from ...api import open_resume, open_run
    from ...runs.checkpoint import latest_checkpoint

    argv = ["fastddpg", "sweep", "--out", spec.out, f"(trial {trial_id})"]
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            source = json.loads((Path(d) / SOURCE_FILE).read_text())
            if source["trial_id"] != trial_id and not _exploited(run_dir, source):
                trainer, writer = exploit(cfg, run_dir, Path(d) / source["file"], source, argv)
                return trainer, writer, f"exploit {source['trial_id']}@{trainer.global_step}"
    if (run_dir / CONFIG_FILE).is_file():
        latest = latest_checkpoint(run_dir)
        if latest is not None:
            if _step_of(latest) >= cfg.total_steps:
                return None
            trainer, writer = open_resume(run_dir, {}, argv)
            _truncate_reports(run_dir, trainer.global_step)
            return trainer, writer, f"resume@{trainer.global_step}"
        shutil.rmtree(run_dir)  # started, but stopped before its first checkpoint: start it again
    trainer, writer = open_run(cfg, argv)
    return trainer, writer, ""


def _exploited(run_dir: Path, source: dict[str, Any]) -> bool:
    """Whether this run directory has already made the exploit of ``source`` (another trial's checkpoint): Tune
    retries a trial that failed after an exploit and before its next report with that same checkpoint, and the
    retry must continue the run directory from its own latest checkpoint, not clone the source a second time."""
    if not (run_dir / CONFIG_FILE).is_file():
        return False
    meta = json.loads((run_dir / CONFIG_FILE).read_text())
    return any(e.get("from_trial") == source["trial_id"] and e.get("global_step") == source.get("global_step")
               for e in meta.get("exploits", []))


def exploit(cfg: Config, run_dir: Path, ckpt_file: Path, source: dict[str, Any], argv: list[str]) -> Any:
    """PBT's exploit: a new Trainer with this trial's (mutated) ``cfg``, loaded from another trial's checkpoint
    (weights, optimizers, replay buffer, counters: the resume path), its random streams re-seeded from (this
    trial's own seed, env step). The run directory becomes the source's history up to the checkpoint, with this
    trial's own earlier files moved to ``exploits/<k>/``, and a checkpoint of the new state is written at once."""
    import numpy as np

    from ...api import add_file_callbacks
    from ...core.fileio import write_json
    from ...runs.checkpoint import read_checkpoint
    from ...runs.resuming import history_at
    from ...runs.rundir import RunWriter
    from ...training.trainer import Trainer

    state = read_checkpoint(ckpt_file)
    theirs = Config.from_dict(state["config"])
    differ = [k for k in _SHAPE_FIELDS if getattr(theirs, k) != getattr(cfg, k)]
    if differ:
        raise ConfigError(f"PBT exploit: trial {source['trial_id']}'s checkpoint has other {', '.join(differ)}; "
                          "only the fields in PBT_MUTABLE may differ between trials of a PBT sweep.")
    history: list[dict[str, Any]] = []
    if (run_dir / CONFIG_FILE).is_file():
        old = json.loads((run_dir / CONFIG_FILE).read_text())
        # Tune's PBT hands over the better trial's whole config (then mutates the --mutate fields); the seed is
        # not a hyperparameter but this trial's own randomness: it keeps it
        cfg = Config.merged(cfg, {"seed": old["config"]["seed"]})
        history = list(old.get("exploits", []))
        archive = run_dir / EXPLOITS_DIR / f"{len(history) + 1:02d}"
        archive.mkdir(parents=True, exist_ok=True)
        for name in (CONFIG_FILE, SUMMARY_FILE, REPORT_FILE, *(f"{t}.{ext}" for t in TABLES for ext in ("csv",
                                                                                                      "parquet"))):
            if (run_dir / name).exists():
                os.replace(run_dir / name, archive / name)
        shutil.rmtree(run_dir / CHECKPOINT_DIR, ignore_errors=True)  # this trial's old lineage: not resumable now
        before = old["config"]
    else:
        before = cfg.to_dict()
    trainer = Trainer(cfg)
    try:
        trainer.load_state_dict(state["trainer"])
        tables = history_at(state, ckpt_file.parent, Path(source["path"]).parent.parent if source.get("path")
                            else None)
        if tables is not None:  # (else the run directory starts at the checkpoint's step)
            trainer.load_history(tables)
        seed = int(np.random.SeedSequence([cfg.seed & 0xFFFFFFFF, trainer.global_step, 1]).generate_state(1)[0])
        trainer.gen.manual_seed(seed)
        writer = RunWriter.create(cfg, trainer, argv)
        writer._append("episodes", [r.values(trainer.members) for r in trainer.episode_rows])
        writer._append("updates", [[r.get(k, "") for k in writer.update_header] for r in trainer.update_rows])
        writer.write_probes(trainer)
        meta = json.loads((run_dir / CONFIG_FILE).read_text())
        now, clone = cfg.to_dict(), theirs.to_dict()
        changed = {k: [before.get(k), now[k]] for k in PBT_MUTABLE if before.get(k) != now[k]}  # vs its own
        mutated = {k: [clone[k], now[k]] for k in PBT_MUTABLE if clone[k] != now[k]}  # vs the clone's: PBT's explore
        meta["exploits"] = [*history, {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "from_trial": source["trial_id"],
                                       "from_checkpoint": source.get("path", ""), "global_step": trainer.global_step,
                                       "changed": changed, "mutated": mutated}]
        write_json(run_dir / CONFIG_FILE, meta)
        add_file_callbacks(trainer, writer)  # checkpoints, and --eval-every's and --tensorboard's files, as a run's
        trainer.checkpoint()
    except BaseException:
        trainer.close()
        raise
    return trainer, writer


def _truncate_reports(run_dir: Path, global_step: int) -> None:
    path = run_dir / REPORTS_FILE
    if not path.is_file():
        return
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return
    keep = [rows[0], *(r for r in rows[1:] if r and r[0].isdigit() and int(r[0]) <= global_step)]
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(keep)


def return_10(report: Any) -> float | None:
    """What a trial reports to Tune: the report's return_10, the mean return of its last 10 episodes (fewer at
    the start); a population's, the mean over its members of each member's (`schema.Last10`). None before the
    first episode."""
    return None if report is None or not report.num_episodes else report.return_10


def eval_return(trainer: Any, episodes: int) -> float:
    """Mean return of ``episodes`` noise-free episodes of the current actor, seeded as ``fastddpg eval`` (a
    population's: the mean over members of each member's), by `fastddpg.runs.evaluate.evaluate_state`, the evaluation
    of ``fastddpg eval`` and ``--eval-every``."""
    return _mean_eval_return(trainer.algo.actor.state_dict(), trainer.cfg, episodes)


def _mean_eval_return(actor_state: dict[str, Any], cfg: Config, episodes: int) -> float:
    from ...runs.evaluate import evaluate_state

    results = evaluate_state(actor_state, cfg, episodes)
    return sum(r.mean for r in results.values()) / len(results)


class TuneReporter:
    """Trainer callback: after each fastddpg report (once an episode has ended), ``tune.report`` with env_steps,
    return_10 (and eval_return), plus, for PBT, the checkpoint the trainer has just written at this step. The
    report goes out in ``after_report``, once the trainer has written that step's checkpoint, if any
    (``report.checkpoint``).
    With PBT a trial reports only at its checkpoints (every PBT interval, which falls on a fastddpg report): Tune's
    PBT clones the checkpoint of the better trial's *last* report, so each report must carry one, or an exploit
    at it would be skipped. Each report is also appended to the trial's reports.csv with the trial's swept
    hyperparameters. The last
    report (at ``total_steps``) is sent by `run_trial` once the run directory is finished, so a scheduler's STOP
    at that report cannot cut the final checkpoint, summary or report."""

    def __init__(self, spec: SweepSpec, trial_id: str, event: str = "",
                 hook: Callable[..., None] | None = None) -> None:
        self.spec, self.trial_id, self.event, self.hook = spec, trial_id, event, hook
        self.last_step = -1
        self.attached = -1
        self.node = _node_id()
        self.last: Any = None  # the trainer's last report (`fastddpg.core.schema.Report`)

    def __call__(self, trainer: Any, report: Any) -> None:
        self.last = report

    def after_report(self, trainer: Any, report: Any) -> None:
        self.last = report
        if report.global_step >= trainer.cfg.total_steps:  # the last report: after run_to_end
            return
        if self.spec.scheduler == "pbt":  # only with the checkpoint just written (see the class docstring)
            if report.checkpoint is not None and report.global_step != self.last_step:
                self.report(trainer)
        else:
            self.report(trainer)

    def report(self, trainer: Any, final: bool = False) -> None:
        from ray import tune

        rep = self.last
        r10 = return_10(rep)
        if r10 is None and not final:
            return
        r10 = float("nan") if r10 is None else r10
        metrics: dict[str, Any] = {TIME_ATTR: trainer.global_step, "return_10": r10,
                                   "episodes": trainer.num_episodes, "updates": trainer.num_updates,
                                   "train_seconds": (rep.wall_time - rep.compile_seconds) if rep is not None
                                   else 0.0}
        if self.spec.metric == "eval_return":
            metrics["eval_return"] = eval_return(trainer, self.spec.eval_episodes)
        if self.hook is not None:
            self.hook(trainer, metrics)
        ckpt_dir = None
        last = rep.checkpoint if rep is not None else None
        if self.spec.scheduler == "pbt" and last is not None and _step_of(last) == trainer.global_step \
                and self.attached != trainer.global_step:
            ckpt_dir = tempfile.mkdtemp(prefix="fastddpg-ckpt-")
            shutil.copy2(last, Path(ckpt_dir) / last.name)
            for table in TABLES:  # the history up to it: an exploit's run directory starts with it
                if (last.parent.parent / f"{table}.csv").is_file():
                    shutil.copy2(last.parent.parent / f"{table}.csv", Path(ckpt_dir) / f"{table}.csv")
            (Path(ckpt_dir) / SOURCE_FILE).write_text(json.dumps({
                "trial_id": self.trial_id, "file": last.name, "path": str(last), "global_step": trainer.global_step}))
            self.attached = trainer.global_step
        self._append(trainer, metrics, ckpt_dir is not None)
        self.last_step = trainer.global_step
        try:
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(ckpt_dir) if ckpt_dir else None)
        finally:
            if ckpt_dir is not None:
                shutil.rmtree(ckpt_dir, ignore_errors=True)

    def _append(self, trainer: Any, metrics: dict[str, Any], checkpoint: bool) -> None:
        path = Path(trainer.cfg.run_dir) / REPORTS_FILE
        names = self.spec.swept
        new = not path.exists()
        with open(path, "a", newline="") as f:
            w = csv.writer(f)
            if new:
                w.writerow([*_REPORT_COLUMNS, *names])
            w.writerow([metrics[TIME_ATTR], metrics["episodes"], metrics["updates"], repr(metrics["return_10"]),
                        repr(metrics["eval_return"]) if "eval_return" in metrics else "",
                        f"{metrics['train_seconds']:.3f}", int(checkpoint), self.event, self.node,
                        *(_csv_value(getattr(trainer.cfg, n)) for n in names)])
        self.event = ""


def _node_id() -> str:
    """The Ray node this trial runs on (its first 12 hex digits), for reports.csv."""
    try:
        import ray

        return ray.get_runtime_context().get_node_id()[:12]
    except Exception:
        return ""


def _csv_value(v: Any) -> Any:
    return "x".join(map(str, v)) if isinstance(v, tuple) else v


def final_metrics(run_dir: Path, spec: SweepSpec) -> dict[str, Any]:
    """The metrics of a finished run directory (a trial that had finished before a sweep was resumed)."""
    from ...runs.rundir import load_run

    run = load_run(run_dir)
    metrics = {TIME_ATTR: int((run.summary or {}).get("env_steps", run.config.total_steps)),
               "return_10": Last10(episode_records(run.episodes)).value,
               "episodes": len(run.episodes)}
    if spec.metric == "eval_return":
        import torch

        state = torch.load(run_dir / ACTOR_FILE, map_location="cpu", weights_only=True)
        metrics["eval_return"] = _mean_eval_return(state, run.config, spec.eval_episodes)
    return metrics


def _trial_dirname(trial: Any) -> str:
    return str(trial.trial_id)

