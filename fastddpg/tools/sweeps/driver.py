"""The driver: build the Tune experiment (search space, scheduler, search algorithm, failure config), run it,
and hand the trials to the results; `sweep`, the Python entry point."""

from __future__ import annotations

import contextlib
import functools
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ...core.config import Config, field_types
from ...core.schema import SUMMARY_FILE
from .cluster import _ray_sees, check_shared_storage, connect, require_ray
from .progress import SweepProgress, tune_callback
from .report import finish_sweep
from .results import SweepResult
from .spec import (
    _DISTRIBUTIONS,
    DEFAULT_MAX_FAILURES,
    SWEEP_EVAL_EPISODES,
    TIME_ATTR,
    TRIALS_DIR,
    TUNE_DIR,
    SweepSpec,
    _check_field,
    _validate,
    _write_spec,
    make_spec,
    parse_sample,
    with_eval_episodes,
)
from .trial import _cast, _csv_value, _trial_dirname, run_trial


def _param_space(spec: SweepSpec) -> dict[str, Any]:
    from ray import tune

    space: dict[str, Any] = {name: tune.grid_search(list(values)) for name, values in spec.grid.items()}
    for name, (kind, *args) in spec.sample.items():
        is_int = field_types()[name] is int
        if kind == "choice":  # Optuna's categorical values are scalars: a tuple field's choices go as text
            text = spec.search == "optuna" and field_types()[name] is tuple
            space[name] = tune.choice([_csv_value(tuple(a)) if text else a for a in args])
        elif kind == "uniform":
            space[name] = tune.randint(args[0], args[1] + 1) if is_int else tune.uniform(*args)
        else:
            space[name] = tune.lograndint(args[0], args[1] + 1) if is_int else tune.loguniform(*args)
    for name in spec.mutate:  # PBT needs the mutated keys in every trial's config
        space.setdefault(name, spec.base[name])
    return space


# PBT's steps for gamma where no --sample or --grid gives them (the RL Zoo's choices): a discount is not perturbed
# by x0.8/x1.2 (x1.2 of 0.99 is no discount at all, x0.8 a horizon of 5), it moves to a neighbouring step
GAMMA_STEPS = (0.9, 0.95, 0.98, 0.99, 0.995, 0.999, 0.9999)


def _mutations(spec: SweepSpec) -> dict[str, Any]:
    """What PBT may set each ``--mutate`` field to: its --sample distribution, its --grid values (PBT moves to a
    neighbour), gamma's `GAMMA_STEPS` (and its base value), else a log-uniform range from 1/4x to 4x the base value
    (PBT perturbs by 0.8x/1.2x or resamples; `clamp_mutation` keeps a perturbed value inside `mutation_ranges`)."""
    from ray import tune

    out: dict[str, Any] = {}
    space = _param_space(spec)
    for name in spec.mutate:
        if name in spec.sample:
            out[name] = space[name]
        elif name in spec.grid:
            out[name] = list(spec.grid[name])
        elif name == "gamma":
            out[name] = sorted({*GAMMA_STEPS, float(spec.base[name])})
        else:
            v = float(spec.base[name])
            out[name] = tune.loguniform(v / 4, v * 4) if v > 0 else tune.uniform(0.0, 1.0)
    return out


def mutation_ranges(spec: SweepSpec) -> dict[str, tuple[float, float]]:
    """The range each ``--mutate`` field stays in, as README says: its --sample's [LO, HI] (a choice's or --grid's
    smallest and largest value), gamma's steps, else 1/4x to 4x the base value."""
    ranges: dict[str, tuple[float, float]] = {}
    for name in spec.mutate:
        if name in spec.sample:
            values = [float(a) for a in spec.sample[name][1:]]  # [kind, LO, HI] or [choice, A, B, ...]
        elif name in spec.grid:
            values = [float(v) for v in spec.grid[name]]
        elif name == "gamma":
            values = [*GAMMA_STEPS, float(spec.base[name])]
        else:
            v = float(spec.base[name])
            values = [v / 4, v * 4] if v > 0 else [0.0, 1.0]
        ranges[name] = (min(values), max(values))
    return ranges


_BOUNDS = {"gamma": (0.0, 1.0), "tau": (1e-6, 1.0), "batch_size": (1, None), "policy_delay": (1, None),
           "updates_per_step": (0.0, None), "grad_clip_norm": (0.0, None), "noise_sigma": (0.0, None),
           "policy_noise": (0.0, None), "noise_clip": (0.0, None), "actor_lr": (1e-12, None),
           "critic_lr": (1e-12, None)}


def clamp_mutation(config: dict[str, Any], ranges: dict[str, tuple[float, float]] | None = None) -> dict[str, Any]:
    """PBT's custom_explore_fn: a perturbed value (x0.8, x1.2) kept inside its field's valid range and, given
    ``ranges`` (`mutation_ranges`), inside the sweep's own range for it; ints rounded."""
    for name in config:
        lo, hi = _BOUNDS.get(name, (None, None))
        if ranges and name in ranges:
            r_lo, r_hi = ranges[name]
            lo, hi = max(r_lo, lo) if lo is not None else r_lo, min(r_hi, hi) if hi is not None else r_hi
        if (lo is None and hi is None) or not isinstance(config[name], int | float):
            continue
        v = float(config[name])
        v = max(v, lo) if lo is not None else v
        v = min(v, hi) if hi is not None else v
        config[name] = round(v) if field_types()[name] is int else v
    return config


def _scheduler(spec: SweepSpec) -> Any:
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, PopulationBasedTraining

    if spec.scheduler == "asha":
        total = spec.base_config.total_steps
        grace = spec.grace_period or max(1, total // 8)
        return ASHAScheduler(time_attr=TIME_ATTR, max_t=total, grace_period=min(grace, total), reduction_factor=2)
    if spec.scheduler == "pbt":
        return PopulationBasedTraining(time_attr=TIME_ATTR, perturbation_interval=spec.interval(),
                                       hyperparam_mutations=_mutations(spec),
                                       custom_explore_fn=functools.partial(clamp_mutation,
                                                                           ranges=mutation_ranges(spec)))
    return FIFOScheduler()


def _search_alg(spec: SweepSpec) -> Any:
    """``--search optuna``: Ray Tune's OptunaSearch (Optuna's TPE sampler, seeded from the base config's seed) over
    the --sample distributions, which Tune translates from the param space (metric and mode come from the
    TuneConfig). None for ``random``: Tune's basic variant generator."""
    if spec.search != "optuna":
        return None
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # not its INFO line per study and trial on the console
    return OptunaSearch(seed=int(spec.base.get("seed", 0)))


def _trainable(spec: SweepSpec, hook: Callable[..., None] | None) -> Any:
    from ray import tune

    resources = {"cpu": spec.cpus_per_trial, "gpu": spec.gpus_per_trial}
    return tune.with_resources(tune.with_parameters(run_trial, spec=spec.to_dict(), hook=hook), resources)


def run_sweep(spec: SweepSpec, *, hook: Callable[..., None] | None = None, verbose: int = 0,
              progress: bool = False) -> SweepResult:
    """Connect (or start Ray), check the storage, write sweep.json, run the Tune experiment, then write trials.csv
    and report.html. Raises `SweepInterrupted` when Ctrl-C stopped it (continue it with `resume_sweep`, ``fastddpg
    sweep --resume``). ``verbose`` is Tune's (0: none of its trial tables); ``progress`` prints `SweepProgress`'s
    lines (kept with the experiment, so a resumed sweep prints what the sweep it continues printed)."""

    def new_tuner(trainable: Any) -> Any:
        from ray import tune

        pbt = spec.scheduler == "pbt"
        return tune.Tuner(
            trainable, param_space=_param_space(spec),
            # reuse_actors: a finished (or stopped, or exploiting) trial's worker takes the next trial, so torch
            # and fastddpg are imported once per worker, not once per trial, and a graph compiled before is kept
            # (`trial.keep_or_reset_graphs`); each trial still builds its own Trainer (threads, seeds, run
            # directory). A stopped trial's thread finishes its run directory before the worker is handed on
            # (run_trial raises Tune's wait for it, TUNE_FUNCTION_THREAD_TIMEOUT_S).
            tune_config=tune.TuneConfig(metric=spec.metric, mode="max", scheduler=_scheduler(spec),
                                        num_samples=spec.num_samples, reuse_actors=True,
                                        search_alg=_search_alg(spec),
                                        max_concurrent_trials=spec.max_concurrent or None,
                                        trial_dirname_creator=_trial_dirname, trial_name_creator=_trial_dirname),
            # a failed trial (its worker killed, an exception, a lost node) is started again up to
            # max_failures times; run_trial then resumes its run directory from the last fastddpg checkpoint
            run_config=tune.RunConfig(name=TUNE_DIR, storage_path=str(spec.root), verbose=verbose,
                                      failure_config=tune.FailureConfig(max_failures=spec.max_failures),
                                      checkpoint_config=tune.CheckpointConfig(num_to_keep=4 if pbt else None),
                                      callbacks=[tune_callback(SweepProgress(spec.metric, spec.swept))]
                                      if progress else None))

    return drive(spec, new_tuner, hook=hook, new=True, legacy_output=verbose == 0)


def drive(spec: SweepSpec, make_tuner: Callable[[Any], Any], *, hook: Callable[..., None] | None, new: bool,
          legacy_output: bool) -> SweepResult:
    """Run a Tune experiment to its end: connect (or start Ray), check the storage, write sweep.json (``new``),
    ``make_tuner(trainable)`` (a new `tune.Tuner`, or `resume.restore_tuner`'s), fit it, and write trials.csv and
    report.html. ``legacy_output``: Tune's older console output (`_tune_output`). Raises `SweepInterrupted` when
    Ctrl-C stopped it."""
    ray = require_ray()
    started = connect(spec)
    try:
        check_shared_storage(spec.root, ray.nodes(), _ray_sees, spec.storage is not None)
        if new:
            _write_spec(spec, ray.__version__)
        spec.root.joinpath(TRIALS_DIR).mkdir(parents=True, exist_ok=True)
        link = Path(spec.out) / TRIALS_DIR
        if spec.root != Path(spec.out) and not link.exists():
            link.symlink_to(spec.root / TRIALS_DIR, target_is_directory=True)
        tuner = make_tuner(_trainable(spec, hook))
        with _tune_output(legacy=legacy_output), warnings.catch_warnings():
            # A trial restarted (a retry, a resumed sweep) counts its reports from 1 again; OptunaSearch passes
            # them on as intermediate values, which Optuna ignores for steps it has (it warns each time). They
            # only feed Optuna's own pruners, which a sweep does not use (ASHA stops trials); the final result
            # Optuna learns from is told once, when the trial completes.
            warnings.filterwarnings("ignore", message="The reported value is ignored because this `step",
                                    category=UserWarning)
            grid, signalled = _fit(tuner)
        statuses = {Path(r.path).name: ("error" if r.error is not None else "") for r in grid}
        with contextlib.suppress(AttributeError):  # Tune's own view: a trial neither done nor failed is unfinished
            statuses.update({t.trial_id: "unfinished" for t in grid._experiment_analysis.trials
                             if t.status not in ("TERMINATED", "ERROR")})
        errors = {Path(r.path).name: trial_error_line(r.error) for r in grid if r.error is not None}
        params = {Path(r.path).name: {k: _cast(k, v) for k, v in (r.config or {}).items() if k in field_types()}
                  for r in grid}
        unfinished = [t for t, st in statuses.items() if st == "unfinished"]
        if signalled and not unfinished:  # Ctrl-C: every trial without a summary.json is unfinished
            unfinished = [t for t in statuses if not (spec.root / TRIALS_DIR / t / SUMMARY_FILE).is_file()]
            statuses.update({t: "unfinished" for t in unfinished})
        interrupted = bool(unfinished) or grid.num_terminated + grid.num_errors < len(grid)
    finally:
        if started:
            ray.shutdown()
    result = finish_sweep(spec, statuses, errors, params)
    if interrupted:
        raise SweepInterrupted(result)
    return result


def trial_error_line(error: Any) -> str:
    """One line for a trial's error: a `fastddpg.RunDirError`'s own line (a full disk...: what failed, what is
    safe, what to do), else the last line of the error Ray sends (its traceback's)."""
    from ...training.failsafe import RunDirError

    for e in (getattr(error, "cause", None), error):  # Ray's RayTaskError carries the trial's exception as cause
        if type(e) is RunDirError:  # not Ray's RayTaskError(RunDirError), whose str is the traceback
            return str(e)
    text = str(error).strip()
    return text.splitlines()[-1] if text else "error"


@contextlib.contextmanager
def _tune_output(legacy: bool) -> Iterator[None]:
    """With ``legacy``, Tune's older console output (``RAY_AIR_NEW_OUTPUT=0``, read when the experiment starts), which
    prints nothing at ``verbose=0``; the newer one prints the experiment's configuration table and paths even
    then. A resumed sweep uses it too: its verbosity is the one saved with the experiment. The variable is put back
    after."""
    key, before = "RAY_AIR_NEW_OUTPUT", os.environ.get("RAY_AIR_NEW_OUTPUT")
    if legacy:
        os.environ[key] = "0"
    try:
        yield
    finally:
        if legacy:
            if before is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = before


def _sigint_sentinel(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _fit(tuner: Any) -> tuple[Any, bool]:
    """``tuner.fit()``, and whether Ctrl-C interrupted it. Tune catches the first SIGINT itself (it stops the trials
    and saves the experiment) and then puts back the handler it found: finding ours back means it was used."""
    import signal
    import threading

    watch = threading.current_thread() is threading.main_thread() and not os.environ.get(
        "TUNE_DISABLE_SIGINT_HANDLER")
    previous = signal.signal(signal.SIGINT, _sigint_sentinel) if watch else None
    try:
        grid = tuner.fit()
    finally:
        signalled = watch and signal.getsignal(signal.SIGINT) is _sigint_sentinel
        if watch and previous is not None:
            signal.signal(signal.SIGINT, previous)
    return grid, signalled


class SweepInterrupted(Exception):
    """Ctrl-C stopped the sweep; Tune saved its state. ``result``: what was there (trials.csv and report.html are
    written); continue with ``fastddpg sweep --resume OUT``."""

    def __init__(self, result: SweepResult) -> None:
        self.result = result
        super().__init__(f"sweep interrupted; resume with: fastddpg sweep --resume {result.path}")


def sweep(base_config: Config | None = None, space: dict[str, Any] | None = None, *, out: str | Path,
          scheduler: str = "none", metric: str = "return_10", num_samples: int = 1, pbt_interval: int = 0,
          mutate: Sequence[str] = (), grace_period: int = 0, eval_episodes: int | None = None,
          cpus_per_trial: float = 1,
          gpus_per_trial: float = 0, max_concurrent: int = 0, address: str | None = None,
          storage: str | None = None, max_failures: int = DEFAULT_MAX_FAILURES, search: str = "random",
          report_hook: Callable[..., None] | None = None, verbose: int = 0) -> SweepResult:
    """Run a sweep on Ray Tune: one fastddpg run per trial, in ``out/trials/<trial id>``.

    ``space`` maps Config fields to a list of values (a grid: every combination runs, ``num_samples`` times), a
    distribution string (``"loguniform:1e-4:1e-2"``, ``"uniform:LO:HI"``, ``"choice:A,B"``: drawn
    ``num_samples`` times), or a single value (a change to the base config). ``scheduler``: ``"none"``,
    ``"asha"`` (early stopping on env steps; ``grace_period`` env steps before the first cut) or ``"pbt"``
    (``mutate``: the fields PBT may change, every ``pbt_interval`` env steps). ``report_hook(trainer, metrics)``
    may add to or change the metrics a trial reports (it runs in the trial's process). ``search``: ``"random"``
    (every grid point, the distributions drawn at random) or ``"optuna"`` (Optuna's TPE proposes each trial's
    values from the distributions; no grid, no PBT). ``max_failures``: how often a failed trial is started again,
    each time from its last fastddpg checkpoint. Without ``address`` a
    private local Ray is started (unless one is initialized already). Returns a `SweepResult`.
    """
    base = base_config or Config()
    grid: dict[str, list[Any]] = {}
    sample: dict[str, list[Any]] = {}
    fixed: dict[str, Any] = {}
    for name, value in (space or {}).items():
        _check_field(name, "space")
        is_tuple_field = field_types()[name] is tuple
        if isinstance(value, str) and value.split(":")[0] in _DISTRIBUTIONS:
            sample.update(parse_sample([f"{name}={value}"], base))
        elif isinstance(value, (list, tuple)) and (not is_tuple_field or all(isinstance(v, (list, tuple))
                                                                             for v in value)):
            grid[name] = [_cast(name, v) for v in value]
            for v in grid[name]:
                _validate(base, name, v, "space")
        else:
            fixed[name] = _cast(name, value)
    own = base.was_given("eval_episodes") or "eval_episodes" in fixed  # (merged below counts every field given)
    if fixed:
        base = Config.merged(base, fixed)
    if eval_episodes is None and not own:
        eval_episodes = SWEEP_EVAL_EPISODES
    base = with_eval_episodes(base, eval_episodes)
    spec = make_spec(base, out, grid=grid, sample=sample, scheduler=scheduler, metric=metric,
                     num_samples=num_samples, pbt_interval=pbt_interval, mutate=list(mutate),
                     grace_period=grace_period, eval_episodes=base.eval_episodes,
                     cpus_per_trial=float(cpus_per_trial),
                     gpus_per_trial=float(gpus_per_trial), max_concurrent=max_concurrent, address=address,
                     storage=storage, max_failures=max_failures, search=search)
    return run_sweep(spec, hook=report_hook, verbose=verbose)

