"""``fastddpg run``: train (`fastddpg.train`), or continue a run (``--resume``); ``--config FILE``, ``--dry-run``."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.config import RESUME_OVERRIDABLE, Config, ConfigError
from ..core.threads import take_lease
from .options import add_config_arguments, config_from_args
from .startup_gc import StartupCollector

if TYPE_CHECKING:
    from ..training.failsafe import NonFiniteError, TrainingInterrupted


def add_parser(sub: Any) -> None:
    """``fastddpg run [flags] [--resume RUN_DIR] [--config FILE] [--dry-run]``."""
    run = sub.add_parser("run", help="train an agent",
                         description="Train DDPG (or TD3: --algo td3) on N vectorized envs. Defaults "
                         "are the reference notebook's hyperparameters on Pendulum-v1.")
    add_config_arguments(run)
    run.add_argument("--resume", metavar="RUN_DIR", default=None,
                     help="continue RUN_DIR from its latest checkpoint with its config.json, appending to its CSVs; "
                     "of the other flags only --total-steps (e.g. raised) and the flags that do not change what is "
                     "learned may be given with it: "
                     + ", ".join("--" + k.replace("_", "-") for k in RESUME_OVERRIDABLE if k != "total_steps"))
    add_config_file_arguments(run)


def command(args: argparse.Namespace, argv: list[str] | None = None) -> int:
    """``argv``: the whole command line (``fastddpg run ...``), saved in the run directory; None where this is the
    command line's own process (`fastddpg.cli.main.main` without arguments), whose collector pauses while the run
    starts (`StartupCollector`)."""
    check_run_args(args)
    if args.dry_run:
        return cmd_dry_run(args)
    with StartupCollector(owns_process=argv is None) as startup:
        take_lease()  # before torch is imported (seconds), so that runs started together count each other
        return cmd_run(args, argv, startup.started)


def add_config_file_arguments(run: argparse.ArgumentParser) -> None:
    """``--config FILE`` and ``--dry-run`` of ``fastddpg run``."""
    run.add_argument("--config", metavar="FILE", default=None,
                     help="read flags from a TOML file (see configs/) or a run's config.json; flags given on the "
                     "command line override the file")
    run.add_argument("--dry-run", action="store_true",
                     help="print the effective config (as a TOML config file) and exit without training")


def check_run_args(args: argparse.Namespace) -> None:
    """Combinations of ``fastddpg run`` flags that make no sense (ConfigError, one line)."""
    if getattr(args, "resume", None) and getattr(args, "config", None):
        raise ConfigError("--config cannot be combined with --resume: a resumed run keeps its own config.json; "
                          "drop --config (raise --total-steps on the command line if needed).")
    if getattr(args, "resume", None) and getattr(args, "dry_run", False):
        raise ConfigError(f"--dry-run shows the config of a new run; a resumed run uses {args.resume}/config.json.")


def cmd_dry_run(args: argparse.Namespace) -> int:
    """Print the effective config of ``fastddpg run`` (defaults < --config file < flags) as TOML."""
    from ..core.configfile import to_toml
    from ..envs.vector import check_env_id

    cfg = run_config(args)
    check_env_id(cfg.env)  # the run's first error, without making the env
    print(to_toml(cfg), end="")
    return 0


def run_config(args: argparse.Namespace) -> Config:
    """The Config of a new ``fastddpg run`` (`config_from_args`), run_dir 'auto' unless given: the command always
    writes a run directory, so --dry-run and --help show the run_dir it will use."""
    from ..core.schema import AUTO_RUN_DIR

    cfg = config_from_args(args)
    return cfg if cfg.run_dir else dataclasses.replace(cfg, run_dir=AUTO_RUN_DIR)


def cmd_run(args: argparse.Namespace, argv: list[str] | None = None,
            started: Callable[[], None] = lambda: None) -> int:
    """`fastddpg run`: `fastddpg.train` (or `fastddpg.resume`) with a run directory and the console reporter;
    ``started`` is called once the imports are done, before the run is built (its envs may fork workers, which
    should inherit a running collector)."""
    from ..api import open_resume, open_run, run_quietly_or_with_progress
    from ..core.schema import REPORT_FILE
    from ..reports.reporting import print_summary
    from ..training.failsafe import NonFiniteError, TrainingInterrupted

    started()
    if getattr(args, "resume", None):
        given = {f.name: getattr(args, f.name) for f in dataclasses.fields(Config) if hasattr(args, f.name)}
        trainer, writer = open_resume(args.resume, given, argv)  # checked, restored, CSVs cut to the checkpoint
    else:
        trainer, writer = open_run(run_config(args), argv)  # the run directory, checked writable before training
    assert writer is not None
    cfg = trainer.cfg
    note = None if cfg.quiet or getattr(args, "resume", None) else tuning_note_of(args, cfg)
    if note is not None:
        print(f"fastddpg: note: {note}", file=sys.stderr)
    try:  # with progress: the idle warnings, then the console reporter (as train(progress=True))
        result = run_quietly_or_with_progress(trainer, writer, [], progress=True)
    except (TrainingInterrupted, NonFiniteError) as e:  # the run directory already holds everything: say so
        return _stopped(e, cfg.total_steps, writer.path)
    print_summary(result.summary, env_id=cfg.env)
    for warning in cfg.idle_warnings():  # said at the start too: the summary is what a user reads last
        print(f"warning: {warning}")
    print(f"run directory: {writer.path}")
    print(f"report: {writer.path / REPORT_FILE}")
    return 0


def tuning_note_of(args: argparse.Namespace, cfg: Config) -> str | None:
    """`fastddpg.core.configfile.tuning_note` for a new run: its env against the --config file's env (if any)."""
    from ..core.configfile import load_config_file, tuning_note

    config = getattr(args, "config", None)
    return tuning_note(cfg.env, config, load_config_file(config).get("env") if config else None)


def _stopped(e: TrainingInterrupted | NonFiniteError, total_steps: int, run_dir: Path) -> int:
    """One line on what stopped the run (a signal: exit 128 + signum; a non-finite value: exit 3) and where its
    files are."""
    import shlex

    from ..training.failsafe import TrainingInterrupted

    if isinstance(e, TrainingInterrupted):
        print(f"fastddpg: {e.signal_name}: stopped at env step {e.global_step:,} of {total_steps:,}; "
              f"checkpoint {e.checkpoint}; metrics and report in {run_dir}; resume with: "
              f"fastddpg run --resume {shlex.quote(str(run_dir))}", file=sys.stderr)
    else:
        print(f"fastddpg: error: {e}", file=sys.stderr)
    return e.exit_code


