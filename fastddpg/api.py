"""`train` and `resume`: the one code path from a `Config` (or a run directory) to a finished run.

``fastddpg run`` is a thin layer over the same two steps (`open_run` or `open_resume`, then `run_to_end`), so a
run started from Python with ``Config(run_dir=...)`` writes exactly the files that the command writes
(config.json, the CSVs at every report, checkpoints, the final weights, summary.json, report.html), and a run
stopped by a signal or a non-finite value is left on disk the same way, whichever started it.

    from fastddpg import Config, train, resume
    result = train(Config(total_steps=20_000, run_dir="runs/a"))    # files in runs/a, DataFrames in memory
    result = resume("runs/a", total_steps=40_000)                    # continue it from its latest checkpoint

Without ``run_dir`` nothing is written: the DataFrames in memory are the whole result.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from .core.config import Config, ConfigError, first_line
from .core.fileio import os_error_of
from .core.schema import REPORT_FILE, SUMMARY_FILE
from .reports.plots import write_report
from .runs.checkpoint import Checkpointer, restore_weights, run_dir_error
from .runs.evaluate import PeriodicEvaluator
from .runs.resuming import resume_run
from .runs.rundir import RunData, RunWriter, read_table, release_run_dir, require_run_packages
from .runs.tensorboard import TensorBoardWriter
from .training.failsafe import NonFiniteError, RunDirError, StopSignals, TrainingInterrupted
from .training.trainer import Trainer, TrainResult

Callback = Callable[..., None]


def train(cfg: Config | None = None, *, callbacks: Iterable[Callback] = (), argv: list[str] | None = None,
          progress: bool = False, **overrides: Any) -> TrainResult:
    """Train with ``cfg`` (default ``Config()``), any field overridable by keyword: ``train(num_envs=4)``.

    With ``cfg.run_dir`` set (a path, or ``"auto"`` for ``runs/<env>__<algo>__<seed>__<timestamp>``), the run
    directory is written as ``fastddpg run`` writes it and ``result.run_dir`` names it; it can then be continued
    with `resume`. ``callbacks`` are called as ``cb(trainer, report)`` at every report (`fastddpg.core.schema.Report`:
    the new episode, update and probe rows and the counters; see `fastddpg.training.trainer` for the other hooks).
    ``argv`` is the command line recorded in config.json (default ``sys.argv``). Quiet unless ``progress=True``
    (see `run_quietly_or_with_progress`), as `resume` is.

    Raises `TrainingInterrupted` (SIGINT/SIGTERM) or `NonFiniteError` after the run directory, if any, holds
    everything the run had (the exception's ``run_dir`` names it, ``checkpoint`` the checkpoint to resume from),
    and `RunDirError` (an OSError) when writing the run directory failed (a full disk...): what was written is
    whole, ``checkpoint`` is the last intact one and ``str(e)`` says what to do.
    """
    cfg = cfg or Config()
    if overrides:
        cfg = Config.merged(cfg, overrides)
    trainer, writer = open_run(cfg, argv)
    return run_quietly_or_with_progress(trainer, writer, callbacks, progress)


def resume(run_dir: str | Path, *, callbacks: Iterable[Callback] = (), argv: list[str] | None = None,
           progress: bool = False, **overrides: Any) -> TrainResult:
    """Continue the run in ``run_dir`` from its latest checkpoint, appending to its CSVs, exactly as
    ``fastddpg run --resume RUN_DIR`` does. ``overrides`` may change only the run-control fields
    (`fastddpg.core.config.RESUME_OVERRIDABLE`, e.g. a larger ``total_steps``). The returned DataFrames hold the
    whole run, from its first step. Quiet unless ``progress=True``, as `train` is."""
    trainer, writer = open_resume(run_dir, overrides, argv)
    return run_quietly_or_with_progress(trainer, writer, callbacks, progress)


def run_quietly_or_with_progress(trainer: Trainer, writer: RunWriter | None, callbacks: Iterable[Callback],
                                 progress: bool) -> TrainResult:
    """`run_to_end` for `train` and `resume`: from Python both are quiet by default (the trainer's own lines, such
    as compiling the update, are not printed; a warning about the disk still goes to stderr). ``progress=True``
    prints what ``fastddpg run`` prints while it trains: the `Config.idle_warnings`, the compile lines, and the
    console reporter (the live panel in a terminal, one line per report otherwise; none with ``quiet``)."""
    if not progress:
        trainer.log = _silent
        return run_to_end(trainer, writer, callbacks)
    from .reports.reporting import make_reporter

    cfg = trainer.cfg
    if not cfg.quiet:
        for warning in cfg.idle_warnings():
            print(f"fastddpg: warning: {warning}", file=sys.stderr)
    reporter = make_reporter(cfg.quiet, cfg.total_steps)
    with reporter if reporter is not None else contextlib.nullcontext():
        return run_to_end(trainer, writer, [*callbacks, *([reporter] if reporter is not None else [])])


def _silent(message: str) -> None:
    """A trainer's ``log`` that prints nothing."""


def open_run(cfg: Config, argv: list[str] | None = None) -> tuple[Trainer, RunWriter | None]:
    """A new Trainer, and with ``cfg.run_dir`` its RunWriter (directory created and checked writable, config.json
    written) and a `Checkpointer` into it, before the first env step."""
    if cfg.tensorboard and not cfg.run_dir:
        raise ConfigError("--tensorboard writes into the run directory: give Config(run_dir=...) (or 'auto').")
    require_run_packages(cfg)  # before the env and networks are built
    trainer = Trainer(cfg)
    if not cfg.run_dir:
        _add_evaluator(trainer, None)
        return trainer, None
    try:
        writer = RunWriter.create(cfg, trainer, list(sys.argv if argv is None else argv))
    except BaseException:
        trainer.close()
        raise
    add_file_callbacks(trainer, writer)
    return trainer, writer


def open_resume(run_dir: str | Path, overrides: dict[str, Any] | None = None, argv: list[str] | None = None
                ) -> tuple[Trainer, RunWriter]:
    """The Trainer and RunWriter of a run directory, restored from its latest checkpoint (see `resume_run`), with
    a `Checkpointer` (and with ``--tensorboard`` a `TensorBoardWriter`) into it."""
    trainer, writer = resume_run(run_dir, overrides, argv)
    add_file_callbacks(trainer, writer)
    return trainer, writer


def _add_evaluator(trainer: Trainer, run_dir: Path | None) -> None:
    """With ``--eval-every``: the `PeriodicEvaluator` (before the Checkpointer, so a checkpoint holds the
    evaluation of its own step)."""
    if trainer.cfg.eval_every:
        trainer.callbacks.append(PeriodicEvaluator(trainer.cfg, run_dir))


def _evals(trainer: Trainer, run_dir: Path | None) -> Any:
    """The run's evaluations for `TrainResult.evals`: its eval.csv (the whole run, also when resumed), or without
    a run directory the evaluator's table; None without --eval-every."""
    for cb in trainer.callbacks:
        if isinstance(cb, PeriodicEvaluator):
            return read_table(run_dir, "eval") if run_dir is not None else cb.table()
    return None


def add_file_callbacks(trainer: Trainer, writer: RunWriter) -> None:
    """Evaluation with ``--eval-every``, checkpoints into the run directory, and TensorBoard event files with
    ``--tensorboard``."""
    _add_evaluator(trainer, writer.path)
    trainer.checkpointer = Checkpointer(writer.path)
    if trainer.cfg.tensorboard:
        trainer.callbacks.append(TensorBoardWriter(writer.path, trainer.cfg))


def run_to_end(trainer: Trainer, writer: RunWriter | None, callbacks: Iterable[Callback] = ()) -> TrainResult:
    """Train until ``total_steps``, the run directory (if any) appended at every report and finished at the end:
    final weights, summary.json, parquet copies and report.html; also when a signal, a non-finite value or any
    other error stops the run (a further signal while finishing exits at once). An OSError writing the run
    directory (a full disk...) becomes a `RunDirError`, after what fits is finished as after a signal."""
    if writer is None:
        trainer.callbacks += list(callbacks)
        result = trainer.train()
        result.evals = _evals(trainer, None)
        return result
    try:
        return _run_to_end(trainer, writer, callbacks)
    except RunDirError:
        raise
    except BaseException as e:
        err = run_dir_os_error(e, writer.path)
        if err is None:
            raise
        with StopSignals(stopping=True), contextlib.suppress(Exception):  # what still fits, as after a signal
            (writer.path / SUMMARY_FILE).unlink(missing_ok=True)  # the run is not finished: resume finishes it
            _finish(trainer, writer, {**trainer.summary(), "stopped_by": f"OSError: {err.strerror}"},
                    weights=not _non_finite(e))  # (a non-finite stop's weights were restored first)
        raise run_dir_error(err, writer.path, trainer, writer.reported_step) from e
    finally:
        release_run_dir(writer.path)  # taken by `open_run` or `open_resume`: another process may resume it now


def _run_to_end(trainer: Trainer, writer: RunWriter, callbacks: Iterable[Callback]) -> TrainResult:
    trainer.callbacks += [writer, *callbacks]
    try:
        result = trainer.train()
    except (TrainingInterrupted, NonFiniteError) as e:
        e.run_dir = writer.path
        with StopSignals(stopping=True):
            stopped_by = e.signal_name if isinstance(e, TrainingInterrupted) else f"non-finite {e.what}"
            if isinstance(e, NonFiniteError):
                # actor.pt/critic.pt: the last finite weights, first, so that no failure after (a full disk at the
                # report) leaves the non-finite ones as the run's result
                restore_weights(writer.path, e.checkpoint)
            _finish(trainer, writer, {**trainer.summary(), "stopped_by": stopped_by},
                    weights=not isinstance(e, NonFiniteError))
        raise
    except BaseException as e:
        if run_dir_os_error(e, writer.path) is None:  # (a run-directory error: `run_to_end` finishes it)
            with contextlib.suppress(Exception):  # keep what the run had; the original error goes on
                # what stopped it (an error, or Tune stopping a trial): the summary of a stopped run says so
                _finish(trainer, writer, {**trainer.summary(), "stopped_by": _stop_reason(e)})
        raise
    _finish(trainer, writer, result.summary)
    result.run_dir = writer.path
    result.evals = _evals(trainer, writer.path)
    return result


def run_dir_os_error(e: BaseException, run_dir: Path) -> OSError | None:
    """The OSError of a failed write in ``e`` (`fastddpg.core.fileio.os_error_of`) when its file is in the run directory
    (or it names none); else None: an env failing to read its own file is not the run directory's problem."""
    err = os_error_of(e)
    if err is None or err.filename is None:
        return err
    path, root = Path(err.filename).resolve(), run_dir.resolve()
    return err if path == root or root in path.parents else None


def _stop_reason(e: BaseException) -> str:
    """summary.json's ``stopped_by`` for a run an exception stopped: its type and first line."""
    line = first_line(e)
    return f"{type(e).__name__}: {line}" if line else type(e).__name__


def _non_finite(e: BaseException) -> bool:
    """Whether ``e`` is, or was raised while handling, a `NonFiniteError`."""
    seen: set[int] = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, NonFiniteError):
            return True
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return False


def _finish(trainer: Trainer, writer: RunWriter, summary: dict[str, Any] | None = None, weights: bool = True
            ) -> None:
    """The run directory's last files, from the trainer's tables in memory (converted once, `Trainer.tables`):
    the weights (without ``weights``: the trainer's are not finite, and `restore_weights` wrote the files),
    summary.json, the parquet copies and report.html."""
    summary = summary if summary is not None else trainer.summary()
    tables = trainer.tables()
    writer.finish(trainer, summary, tables, weights=weights)
    run = RunData.in_memory(writer.path, trainer.cfg, tables, summary)
    write_report([run], writer.path / REPORT_FILE)
