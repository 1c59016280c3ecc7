"""The console while a sweep runs: fastddpg's own progress lines, fed by a Tune callback."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

from ...core.config import format_hyper
from .trial import _trial_dirname


class SweepProgress:
    """fastddpg's own console lines for a running sweep, in place of Tune's trial tables (``fastddpg sweep``;
    ``--verbose`` shows Tune's as well). One line when a trial starts, finishes, fails or is retried, and when the
    best metric so far changes (at most one such line every ``min_interval`` seconds; a later line shows what was
    held back)::

        sweep: 2 running, 1 finished, 0 failed of 4 | best return_10 -161.2: 3f2a1_00001 (actor_lr=0.0003)

    "Best" is the highest ``metric`` any trial has reported so far (a trial reports at each fastddpg report), with
    that trial's swept values (`format_hyper`). Plain Python and picklable: Tune keeps it with the experiment, so a
    resumed sweep reports the same way (`tune_callback` wraps it)."""

    def __init__(self, metric: str, swept: Sequence[str], min_interval: float = 5.0) -> None:
        self.metric, self.swept, self.min_interval = metric, list(swept), min_interval
        self.total: int | None = None
        self.status: dict[str, str] = {}  # trial id -> running | finished | failed
        self.best: tuple[float, str, str] | None = None  # (value, trial id, its swept values)
        self.last_line = -math.inf
        self.held = False  # a change of the best not printed yet

    def started(self, trial_id: str, config: dict[str, Any]) -> None:
        self.status[trial_id] = "running"
        self._print()

    def result(self, trial_id: str, config: dict[str, Any], result: dict[str, Any]) -> None:
        value = result.get(self.metric)
        if not isinstance(value, (int, float)) or math.isnan(value):
            return
        if self.best is None or value > self.best[0]:
            values = ", ".join(f"{n}={format_hyper(config[n])}" for n in self.swept if n in config)
            self.best = (float(value), trial_id, values)
            self.held = True
            if time.monotonic() - self.last_line >= self.min_interval:
                self._print()

    def retried(self, trial_id: str, failures: int) -> None:
        """A trial failed and Tune starts it again (``--max-failures``): one line, the trial stays running."""
        print(f"sweep: trial {trial_id} failed ({failures} so far); retrying it from its last checkpoint", flush=True)

    def ended(self, trial_id: str, failed: bool = False) -> None:
        self.status[trial_id] = "failed" if failed else "finished"
        self._print()

    def line(self) -> str:
        counts = {k: sum(v == k for v in self.status.values()) for k in ("running", "finished", "failed")}
        text = f"sweep: {counts['running']} running, {counts['finished']} finished, {counts['failed']} failed"
        text += f" of {self.total}" if self.total else ""
        if self.best is not None:
            value, trial, values = self.best
            text += f" | best {self.metric} {value:,.1f}: {trial}" + (f" ({values})" if values else "")
        return text

    def _print(self) -> None:
        print(self.line(), flush=True)
        self.last_line, self.held = time.monotonic(), False

    def close(self) -> None:
        """At the end: the line the interval held back, if any."""
        if self.held:
            self._print()


def tune_callback(progress: SweepProgress) -> Any:
    """A Tune ``Callback`` that feeds ``progress`` from the driver (trial start, results, completion, errors)."""
    from ray import tune

    class _Progress(tune.Callback):
        def __init__(self) -> None:
            self.progress = progress

        def setup(self, stop: Any = None, num_samples: int | None = None, total_num_samples: int | None = None,
                  **info: Any) -> None:
            self.progress.total = total_num_samples

        def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self.progress.started(_trial_dirname(trial), trial.config)

        def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
            self.progress.result(_trial_dirname(trial), trial.config, result)

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self.progress.ended(_trial_dirname(trial))

        def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self.progress.retried(_trial_dirname(trial), int(getattr(trial, "num_failures", 0)))

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self.progress.ended(_trial_dirname(trial), failed=True)

        def on_experiment_end(self, trials: list, **info: Any) -> None:
            self.progress.close()

    return _Progress()

