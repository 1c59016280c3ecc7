"""TensorBoard event files of a run (``--tensorboard``): the tables' numbers as scalars, the config as hparams.

Written to ``RUN_DIR/tensorboard/`` by a trainer callback at every report, from what the report already brought
to the host (no device sync of its own). Tags follow CleanRL's, so dashboards carry over:

    charts/episodic_return, charts/episodic_length     per finished episode, at the env step it ended
    losses/<metric>                                    each update metric of the algorithm (means over the interval)
    charts/env_steps_per_sec, charts/updates_per_sec   per report interval
    eval/mean_reward, eval/mean_ep_length              per evaluation during training (--eval-every; SB3's tags;
                                                       a population's: the members' mean, and each member's under
                                                       eval/member_<k>/...)

The x axis is the env step (``global_step``). The config goes in as TensorBoard hparams (the HPARAMS tab) and as
a text table. W&B users: ``wandb sync --sync-tensorboard RUN_DIR/tensorboard``.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pandas as pd

from .config import Config, ConfigError
from .fileio import naming
from .schema import UPDATE_KEYS, UPDATE_RATES

TENSORBOARD_DIR = "tensorboard"
HINT = "pip install 'fastddpg[tensorboard]'"
RATES = ("env_steps_per_sec", "updates_per_sec")


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
        from torch.utils.tensorboard import SummaryWriter

        self.path = Path(run_dir) / TENSORBOARD_DIR
        self.writer = SummaryWriter(str(self.path))
        self.cfg = cfg
        _quiet_writer_thread_errors()

    def at_start(self, trainer: Any) -> None:
        if trainer.global_step == 0:  # a resumed run's files already have them
            self.write_hparams()

    def write_hparams(self) -> None:
        from torch.utils.tensorboard.summary import hparams

        values = {k: (",".join(map(str, v)) if isinstance(v, (list, tuple)) else v)
                  for k, v in self.cfg.to_dict().items()}
        exp, ssi, sei = hparams(values, {"charts/episodic_return": float("nan")})
        for summary in (exp, ssi, sei):
            self.writer.file_writer.add_summary(summary)
        table = "|param|value|\n|-|-|\n" + "\n".join(f"|{k}|{v}|" for k, v in values.items())
        self.writer.add_text("hyperparameters", table)

    def __call__(self, trainer: Any, episodes: pd.DataFrame, row: dict[str, float] | None) -> None:
        for ret, length, step in zip(episodes["return"], episodes["length"], episodes["global_step"], strict=True):
            self.writer.add_scalar("charts/episodic_return", ret, int(step))
            self.writer.add_scalar("charts/episodic_length", length, int(step))
        if row is not None:
            step = int(row["global_step"])
            for key, value in row.items():
                if key in RATES:
                    self.writer.add_scalar(f"charts/{key}", value, step)
                elif key not in UPDATE_KEYS and key not in UPDATE_RATES:
                    self.writer.add_scalar(f"losses/{key}", value, step)
        with naming(self.path):  # a write error of the writer thread comes out here (the event file has no name)
            self.writer.flush()

    def on_eval(self, trainer: Any, evaluation: Any) -> None:
        """An evaluation during training (`fastddpg.evaluate.Evaluation`), at the env step of its weights."""
        step = evaluation.global_step
        self.writer.add_scalar("eval/mean_reward", evaluation.mean, step)
        self.writer.add_scalar("eval/mean_ep_length", evaluation.mean_length, step)
        if len(evaluation.results) > 1:
            for k, r in evaluation.results.items():
                self.writer.add_scalar(f"eval/member_{k}/mean_reward", r.mean, step)
                self.writer.add_scalar(f"eval/member_{k}/mean_ep_length", float(r.lengths.mean()), step)
        with naming(self.path):
            self.writer.flush()

    def at_end(self, trainer: Any) -> None:
        self.writer.close()


def _quiet_writer_thread_errors() -> None:
    """TensorBoard's writer thread hands a write error (a full disk...) to ``threading.excepthook``, which prints
    a traceback; the next flush raises the same error in the training thread, where it becomes one line
    (`fastddpg.failsafe.RunDirError`). Print nothing for it there; every other thread error as before."""
    previous = threading.excepthook
    if getattr(previous, "fastddpg_tensorboard", False):
        return

    def hook(args: Any) -> None:
        if not (isinstance(args.exc_value, OSError) and type(args.thread).__name__ == "_AsyncWriterThread"):
            previous(args)

    hook.fastddpg_tensorboard = True  # type: ignore[attr-defined]
    threading.excepthook = hook


def read_scalars(run_dir: str | Path) -> pd.DataFrame:
    """Every scalar of a run's event files, read with TensorBoard's own reader: a tidy frame of tag, step, value."""
    require_tensorboard()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    rows = []
    for events in sorted((Path(run_dir) / TENSORBOARD_DIR).glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            rows += [(tag, e.step, e.value) for e in acc.Scalars(tag)]
    return pd.DataFrame(rows, columns=["tag", "step", "value"])
