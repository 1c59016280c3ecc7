"""Resuming a sweep (``fastddpg sweep --resume OUT``, `resume_sweep`): what may be given with it, and Tune's
experiment restored from OUT. Each unfinished trial then continues its own run directory from its latest
checkpoint (`trial.open_trial`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ...core.config import ConfigError
from .driver import drive
from .results import SweepResult
from .spec import SWEEP_FILE, TUNE_DIR, SweepSpec, read_spec


def refuse_new_definition(flags: Sequence[str]) -> None:
    """``--resume`` with any of ``flags`` (the command-line options given beside it) is a one-line ConfigError: a
    resumed sweep keeps the definition in its sweep.json."""
    if flags:
        raise ConfigError(f"--resume takes no {', '.join(flags)}: a sweep keeps its {SWEEP_FILE}; only --address "
                          "may be given with it.")


def restore_tuner(spec: SweepSpec, trainable: Any) -> Any:
    """Tune's experiment of the sweep, restored: finished trials stay, unfinished and errored ones run again."""
    from ray import tune

    experiment = spec.root / TUNE_DIR
    if not tune.Tuner.can_restore(str(experiment)):
        raise ConfigError(f"--resume {spec.out}: no Tune experiment state in {experiment} (the sweep stopped "
                          "before its first trial started); start it again.")
    return tune.Tuner.restore(str(experiment), trainable=trainable, resume_unfinished=True, resume_errored=True)


def resume_sweep(out: str | Path, *, address: str | None = None, report_hook: Callable[..., None] | None = None,
                 verbose: int = 0) -> SweepResult:
    """Continue a sweep stopped part way (``fastddpg sweep --resume OUT``): finished trials are not run again,
    unfinished ones continue from their run directories' latest checkpoints. It prints as the sweep it continues
    (Tune keeps the verbosity and the progress callback with the experiment; ``verbose`` is unused, kept for
    callers)."""
    spec = read_spec(out)
    if address is not None:
        spec.address = address
    return drive(spec, lambda trainable: restore_tuner(spec, trainable), hook=report_hook, new=False,
                 legacy_output=True)
