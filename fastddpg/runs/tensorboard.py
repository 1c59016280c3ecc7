"""TensorBoard event files of a run (``--tensorboard``): the tables' numbers as scalars, the config as hparams.

Written to ``RUN_DIR/tensorboard/`` by a trainer callback at every report, from what the report already brought
to the host (no device sync of its own). Tags follow CleanRL's, so dashboards carry over:

    charts/episodic_return, charts/episodic_length     per finished episode, at the env step it ended
    losses/<metric>                                    each update metric of the algorithm (means over the interval)
    charts/env_steps_per_sec, charts/updates_per_sec   per report interval
    eval/mean_reward, eval/mean_ep_length              per evaluation during training (--eval-every; SB3's tags;
                                                       a population's: the members' mean in its own run, and each
                                                       member's in the member's run, below)

The x axis is the env step (``global_step``). The config goes in as TensorBoard hparams (the HPARAMS tab) and as
a text table. W&B users: ``wandb sync --sync-tensorboard RUN_DIR/tensorboard``.

A population (``--num-seeds``/``--grid``) writes each member as a TensorBoard run of its own,
``RUN_DIR/tensorboard/member_K/``, with the same tags, its own config (its seed and grid values) as hparams, and
the per-member rates; the population's config goes to ``RUN_DIR/tensorboard/`` itself.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.config import Config, ConfigError
from ..core.fileio import naming
from ..core.lazy import LazyModule
from ..core.schema import UPDATE_KEYS, UPDATE_RATES, EpisodeRow, Report

if TYPE_CHECKING:
    import pandas as pd
else:  # imported at first use (fastddpg.core.lazy): a run needs pandas and plotly only at its end
    pd = LazyModule("pandas")

TENSORBOARD_DIR = "tensorboard"
HINT = "pip install 'fastddpg[tensorboard]'"
RATES = ("env_steps_per_sec", "updates_per_sec")
MEMBER_DIR = "member_"  # a population member's event files: RUN_DIR/tensorboard/member_K/


def require_tensorboard() -> None:
    """A one-line ConfigError when the tensorboard package is missing."""
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        raise ConfigError(f"--tensorboard needs the tensorboard package: {HINT}") from None


class TensorBoardWriter:
    """Trainer callback writing the run's scalars to ``run_dir/tensorboard`` (see the module docstring)."""

    def __init__(self, run_dir: str | Path, cfg: Config) -> None:
        require_tensorboard()
        self.path = Path(run_dir) / TENSORBOARD_DIR
        self.cfg = cfg
        self.writer: Any = None
        self.member_writers: list[Any] = []

    def at_start(self, trainer: Any) -> None:
        """Open the event files. A resumed run's purge what its earlier process wrote after the checkpoint it
        resumes from (steps past ``trainer.global_step``), as its CSVs drop those rows: TensorBoard then shows each
        step once."""
        from torch.utils.tensorboard import SummaryWriter

        purge = trainer.global_step + 1 if trainer.global_step else None
        # a run resumed with --tensorboard for the first time has no event files yet: the config goes in now
        fresh = trainer.global_step == 0 or not any(self.path.glob("events.out.tfevents.*"))
        self.writer = SummaryWriter(str(self.path), purge_step=purge)
        # a population's members, each a TensorBoard run of its own (see the module docstring)
        self.member_writers = ([SummaryWriter(str(self.path / f"{MEMBER_DIR}{k}"), purge_step=purge)
                                for k in range(self.cfg.num_members)] if self.cfg.num_members > 1 else [])
        _quiet_writer_thread_errors()
        if fresh:  # a resumed run's files already have them
            self.write_hparams()
            for writer, member_cfg in zip(self.member_writers, self.cfg.member_configs() if self.member_writers else [],
                                          strict=True):
                write_hparams(writer, member_cfg)

    def write_hparams(self) -> None:
        write_hparams(self.writer, self.cfg)

    def __call__(self, trainer: Any, report: Report) -> None:
        if not self.member_writers:
            write_scalars(self.writer, report.episodes, report.updates[0] if report.updates else None)
            writers = [self.writer]
        else:
            rows = {int(r["member"]): r for r in report.updates}
            for k, writer in enumerate(self.member_writers):
                write_scalars(writer, [e for e in report.episodes if e.member == k], rows.get(k))
            writers = self.member_writers
        with naming(self.path):  # a write error of the writer thread comes out here (the event file has no name)
            for writer in writers:
                writer.flush()

    def on_eval(self, trainer: Any, evaluation: Any) -> None:
        """An evaluation during training (`fastddpg.runs.evaluate.Evaluation`), at the env step of its weights."""
        step = evaluation.global_step
        self.writer.add_scalar("eval/mean_reward", evaluation.mean, step)  # a population's: the members' mean
        self.writer.add_scalar("eval/mean_ep_length", evaluation.mean_length, step)
        writers = [self.writer]
        if self.member_writers:  # and each member's in its own run, under the same tags as a single run's
            for k, r in evaluation.results.items():
                self.member_writers[k].add_scalar("eval/mean_reward", r.mean, step)
                self.member_writers[k].add_scalar("eval/mean_ep_length", float(r.lengths.mean()), step)
                writers.append(self.member_writers[k])
        with naming(self.path):
            for writer in writers:
                writer.flush()

    def at_end(self, trainer: Any) -> None:
        for writer in [self.writer, *self.member_writers]:
            if writer is not None:
                writer.close()


def write_hparams(writer: Any, cfg: Config) -> None:
    """``cfg`` as TensorBoard hparams and as a text table."""
    from torch.utils.tensorboard.summary import hparams

    values = {k: (",".join(map(str, v)) if isinstance(v, (list, tuple)) else v) for k, v in cfg.to_dict().items()}
    exp, ssi, sei = hparams(values, {"charts/episodic_return": float("nan")})
    for summary in (exp, ssi, sei):
        writer.file_writer.add_summary(summary)
    table = "|param|value|\n|-|-|\n" + "\n".join(f"|{k}|{v}|" for k, v in values.items())
    writer.add_text("hyperparameters", table)


def write_scalars(writer: Any, episodes: list[EpisodeRow], row: dict[str, float] | None) -> None:
    """One run's (or one member's) new episodes and update row as scalars, at their env steps."""
    for e in episodes:
        writer.add_scalar("charts/episodic_return", e.return_, e.global_step)
        writer.add_scalar("charts/episodic_length", e.length, e.global_step)
    if row is not None:
        step = int(row["global_step"])
        for key, value in row.items():
            if key in RATES:
                writer.add_scalar(f"charts/{key}", value, step)
            elif key not in UPDATE_KEYS and key not in UPDATE_RATES and key != "member":
                writer.add_scalar(f"losses/{key}", value, step)


def _quiet_writer_thread_errors() -> None:
    """TensorBoard's writer thread hands a write error (a full disk...) to ``threading.excepthook``, which prints
    a traceback; the next flush raises the same error in the training thread, where it becomes one line
    (`fastddpg.training.failsafe.RunDirError`). Print nothing for it there; every other thread error as before."""
    previous = threading.excepthook
    if getattr(previous, "fastddpg_tensorboard", False):
        return

    def hook(args: Any) -> None:
        if not (isinstance(args.exc_value, OSError) and type(args.thread).__name__ == "_AsyncWriterThread"):
            previous(args)

    hook.fastddpg_tensorboard = True  # type: ignore[attr-defined]
    threading.excepthook = hook


def read_scalars(run_dir: str | Path) -> pd.DataFrame:
    """Every scalar of a run's event files, read with TensorBoard's own reader: a tidy frame of tag, step, value
    (a population's: member, tag, step, value)."""
    require_tensorboard()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    root = Path(run_dir) / TENSORBOARD_DIR
    members = sorted(root.glob(f"{MEMBER_DIR}*"), key=lambda p: int(p.name[len(MEMBER_DIR):]))
    rows = []
    for k, folder in [(int(p.name[len(MEMBER_DIR):]), p) for p in members] or [(None, root)]:
        # the folder as TensorBoard loads it: its event files in order, so that a resumed run's purge of the steps
        # written after its checkpoint applies (one file at a time would keep them)
        acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            rows += [(k, tag, e.step, e.value) for e in acc.Scalars(tag)]
    frame = pd.DataFrame(rows, columns=["member", "tag", "step", "value"])
    return frame if members else frame.drop(columns="member")
