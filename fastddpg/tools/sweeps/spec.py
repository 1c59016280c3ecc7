"""A sweep's definition: the search space (--grid, --sample, --space TOML), its checks, and sweep.json."""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...core.config import Config, ConfigError, GridScope, field_types, parse_field_value
from ...core.config import parse_grid as parse_config_grid

INSTALL_HINT = ("fastddpg sweep needs Ray Tune, an optional extra: pip install 'fastddpg[sweep]' "
                "(or pip install 'ray[tune]')")
SCHEDULERS = ("none", "asha", "pbt")
SEARCHES = ("random", "optuna")  # random: Tune's basic variant generator (every grid point, --sample drawn at random)
DEFAULT_MAX_FAILURES = 2
METRICS = ("return_10", "eval_return")
TIME_ATTR = "env_steps"
SWEEP_FILE = "sweep.json"
TRIALS_FILE = "trials.csv"
TRIALS_DIR = "trials"
SWEEP_EVAL_EPISODES = 5  # a sweep's evaluation episodes where neither --eval-episodes nor the config gives them
TUNE_DIR = "tune"
REPORTS_FILE = "reports.csv"  # in each trial's run directory
EXPLOITS_DIR = "exploits"
SOURCE_FILE = "fastddpg_source.json"  # in a Tune checkpoint: which trial wrote it
# Fields PBT may mutate: they change how the learner learns or explores, not what a checkpoint holds (network
# and buffer shapes, the env, the noise process's kind), so another trial's checkpoint loads into them.
PBT_MUTABLE = ("actor_lr", "critic_lr", "gamma", "tau", "grad_clip_norm", "noise_sigma", "policy_noise",
               "noise_clip", "policy_delay", "updates_per_step", "batch_size")
# ... and what must agree between a checkpoint and the trial that loads it on an exploit
_SHAPE_FIELDS = ("env", "env_backend", "num_envs", "algo", "hidden_sizes", "layer_norm", "replay_size", "noise")
_NOT_SWEPT = ("run_dir", "quiet")
_DISTRIBUTIONS = ("loguniform", "uniform", "choice")
_REPORT_COLUMNS = ("env_steps", "episodes", "updates", "return_10", "eval_return", "train_seconds", "checkpoint",
                   "event", "node")


@dataclass
class SweepSpec:
    """Everything a sweep needs, saved as sweep.json (``--resume`` reads it back)."""

    out: str
    base: dict[str, Any]
    grid: dict[str, list[Any]] = field(default_factory=dict)
    sample: dict[str, list[Any]] = field(default_factory=dict)  # name -> [distribution, args...]
    num_samples: int = 1
    scheduler: str = "none"
    metric: str = "return_10"
    pbt_interval: int = 0
    mutate: list[str] = field(default_factory=list)
    grace_period: int = 0
    eval_episodes: int = SWEEP_EVAL_EPISODES
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_concurrent: int = 0
    address: str | None = None
    storage: str | None = None
    # A retry resumes from the trial's last fastddpg checkpoint, so it costs at most one checkpoint interval; 2
    # rides out a killed worker or a lost node twice, and a deterministic bug still ends the trial after 3 tries.
    max_failures: int = DEFAULT_MAX_FAILURES
    search: str = "random"

    @property
    def name(self) -> str:
        return Path(self.out).name

    @property
    def root(self) -> Path:
        """Where the trials' run directories and Tune's state live: ``STORAGE/NAME`` or ``OUT``."""
        return Path(self.storage) / self.name if self.storage else Path(self.out)

    @property
    def base_config(self) -> Config:
        return Config.from_dict(self.base)

    @property
    def swept(self) -> list[str]:
        """The fields that differ between trials (grid, samples, then PBT's mutations), in that order."""
        names = [*self.grid, *self.sample]
        return names + [m for m in self.mutate if m not in names]

    def interval(self) -> int:
        """PBT's interval in env steps, rounded up to whole reports (a checkpoint falls on a report)."""
        cfg = self.base_config
        report = max(1, math.ceil(cfg.log_every / cfg.num_envs)) * cfg.num_envs
        want = self.pbt_interval or max(report, cfg.total_steps // 5)
        return math.ceil(want / report) * report

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_SWEEP_FIELD = "give a `fastddpg run` flag's field name, e.g. actor_lr, seed or batch_size"


def _check_field(name: str, option: str) -> None:
    if name not in field_types() or name in _NOT_SWEPT:
        raise ConfigError(f"{option} {name}: not a field that a sweep can vary; {_SWEEP_FIELD}.")


def sweep_grid_scope() -> GridScope:
    """``fastddpg sweep --grid``: any field of the base config but the run directory and quiet, which a sweep sets
    for each trial."""
    fields = frozenset(field_types()) - set(_NOT_SWEPT)
    return GridScope(fields, _SWEEP_FIELD, lambda name: f"--grid {name}: not a field that a sweep can vary; "
                     f"{_SWEEP_FIELD}.")


def _validate(base: Config, name: str, value: Any, option: str) -> None:
    """The field's own validation (`Config.validate`) of ``value`` on top of ``base``."""
    try:
        Config.merged(base, {name: value})
    except (ConfigError, TypeError, ValueError) as e:
        raise ConfigError(f"{option}: {e}") from None


def parse_grid(items: Iterable[str], base: Config) -> dict[str, list[Any]]:
    """``--grid NAME=V1,V2,...`` of a sweep -> {name: [values]}: `fastddpg.core.config.parse_grid`'s syntax (the one of
    ``fastddpg run --grid``) over `sweep_grid_scope`'s fields, each value checked by the field's validation on top
    of ``base``."""
    grid = parse_config_grid(items, sweep_grid_scope())
    for name, values in grid.items():
        for v in values:
            _validate(base, name, v, "--grid")
    return grid


MAX_CHECKED_POINTS = 10_000  # grid points checked whole before Ray starts (beyond: each value on its own only)


def _check_trial_configs(base: Config, spec: SweepSpec) -> None:
    """Before Ray starts: every point of the grid as a whole (values fine on their own may not be together, e.g.
    a batch larger than the replay), and every env id a trial may get, so that no trial fails, retry after retry,
    on what a one-line ConfigError says now."""
    import itertools

    from ...envs.vector import check_env_id

    names = list(spec.grid)
    points = list(itertools.islice(itertools.product(*spec.grid.values()), MAX_CHECKED_POINTS + 1))
    if len(points) <= MAX_CHECKED_POINTS:
        for point in points:
            try:
                Config.merged(base, dict(zip(names, point, strict=True)))
            except (ConfigError, TypeError, ValueError) as e:
                shown = ", ".join(f"{n}={v}" for n, v in zip(names, point, strict=True))
                raise ConfigError(f"--grid point {shown}: {e}") from None
    envs = {base.env, *spec.grid.get("env", [])}
    if "env" in spec.sample and spec.sample["env"][0] == "choice":
        envs |= set(spec.sample["env"][1:])
    for env_id in sorted(envs):
        check_env_id(env_id)


def with_eval_episodes(base: Config, eval_episodes: int | None) -> Config:
    """The trials' base config with the sweep's evaluation episodes, which its eval_return and its trials'
    --eval-every evaluations both use: ``eval_episodes`` if given, else the config's own where it was given (a
    --config file, ``Config(eval_episodes=...)``), else `SWEEP_EVAL_EPISODES`."""
    if eval_episodes is None:
        eval_episodes = base.eval_episodes if base.was_given("eval_episodes") else SWEEP_EVAL_EPISODES
    return Config.merged(base, {"eval_episodes": eval_episodes})


def _check_local_resources(spec: SweepSpec) -> None:
    """A sweep on this machine's own Ray (no ``--address``) whose trial asks for more CPUs or GPUs than the machine
    has would wait forever for them (Tune only warns): a one-line ConfigError instead. A cluster's resources are
    its own to judge (it may add nodes)."""
    if spec.address is not None:
        return
    from ...core.threads import usable_cores

    cores = usable_cores()
    if spec.cpus_per_trial > cores:
        raise ConfigError(f"--cpus-per-trial {spec.cpus_per_trial:g}: this machine has {cores} usable cores, so no "
                          f"trial could start; give at most {cores}, or run on a cluster with --address.")
    if spec.gpus_per_trial > 0:
        import torch

        gpus = torch.cuda.device_count()
        if spec.gpus_per_trial > gpus:
            raise ConfigError(f"--gpus-per-trial {spec.gpus_per_trial:g}: this machine has {gpus} CUDA GPU(s), so no "
                              "trial could start; give fewer, 0 for CPU trials, or run on a cluster with --address.")


def parse_sample(items: Iterable[str], base: Config) -> dict[str, list[Any]]:
    """``NAME=loguniform:LO:HI``, ``NAME=uniform:LO:HI`` or ``NAME=choice:A,B,...`` -> {name: [kind, args...]}."""
    sample: dict[str, list[Any]] = {}
    for item in items:
        name, sep, spec = item.partition("=")
        name = name.strip().replace("-", "_")
        kind, _, args = spec.partition(":")
        if not sep or kind not in _DISTRIBUTIONS:
            raise ConfigError(f"--sample {item!r}: write NAME=loguniform:LO:HI, NAME=uniform:LO:HI or "
                              "NAME=choice:A,B,...")
        _check_field(name, "--sample")
        if kind == "choice":
            values = [parse_field_value(name, v.strip()) for v in args.split(",") if v.strip()]
        else:
            if field_types()[name] not in (int, float):
                raise ConfigError(f"--sample {name}: {kind} needs a numeric field; use choice:A,B,...")
            parts = args.split(":")
            if len(parts) != 2:
                raise ConfigError(f"--sample {item!r}: {kind} takes LO:HI.")
            values = [parse_field_value(name, p) for p in parts]
            if not values[0] < values[1] or (kind == "loguniform" and values[0] <= 0):
                raise ConfigError(f"--sample {item!r}: need LO < HI{' and LO > 0' if kind == 'loguniform' else ''}.")
        if not values:
            raise ConfigError(f"--sample {item!r}: give at least one value.")
        for v in values:
            _validate(base, name, v, "--sample")
        sample[name] = [kind, *values]
    return sample


def read_space(path: str | Path, base: Config) -> tuple[dict[str, list[Any]], dict[str, list[Any]]]:
    """A search space from a TOML file (``--space FILE``): a ``[sample]`` table of ``NAME = "DIST"`` (the
    ``--sample`` syntax: ``"loguniform:LO:HI"``, ``"uniform:LO:HI"``, ``"choice:A,B,..."``) and a ``[grid]`` table
    of ``NAME = [V1, V2, ...]`` (or the ``--grid`` text, ``"0..3"``). Returns (grid, sample), checked as the flags."""
    from ...core.configfile import tomllib  # the standard library's, or tomli on Python 3.10

    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"--space {path}: cannot read it ({e.strerror or e}); give a TOML file with [sample] "
                          "and/or [grid] tables (see configs/sweeps/).") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"--space {path} is not valid TOML: {e}.") from None
    unknown = [k for k in data if k not in ("sample", "grid") or not isinstance(data[k], dict)]
    if unknown or not data:
        found = ", ".join(unknown) or "nothing"
        raise ConfigError(f"--space {path}: give only [sample] and [grid] tables (found {found}); the base config "
                          "goes in --config FILE.")

    def text(v: Any) -> str:
        if isinstance(v, list):
            return ",".join("x".join(map(str, x)) if isinstance(x, list) else str(x) for x in v)
        return str(v)

    grid = parse_grid([f"{k}={text(v)}" for k, v in data.get("grid", {}).items()], base)
    sample = parse_sample([f"{k}={v}" for k, v in data.get("sample", {}).items()], base)
    return grid, sample


def make_spec(base: Config, out: str | Path, *, grid: dict[str, list[Any]] | None = None,
              sample: dict[str, list[Any]] | None = None, **settings: Any) -> SweepSpec:
    """A checked `SweepSpec` (ConfigError, one line, for anything wrong), before Ray is touched."""
    if not out:
        raise ConfigError("give the sweep's directory with --out DIR (e.g. --out sweeps/lr).")
    spec = SweepSpec(out=str(Path(out).resolve()), base=base.to_dict(), grid=dict(grid or {}),
                     sample=dict(sample or {}), **settings)
    if spec.storage is not None:
        if "://" in spec.storage:
            raise ConfigError(f"--storage {spec.storage}: give a filesystem path (a shared mount on every node); "
                              "the trials write their run directories there.")
        spec.storage = str(Path(spec.storage).resolve())
    both = sorted(set(spec.grid) & set(spec.sample))
    if both:
        raise ConfigError(f"{', '.join(both)}: in both --grid and --sample; give each field once.")
    if spec.scheduler not in SCHEDULERS:
        raise ConfigError(f"--scheduler {spec.scheduler}: choose one of {', '.join(SCHEDULERS)}.")
    if spec.max_failures < 0:
        raise ConfigError(f"--max-failures {spec.max_failures}: give 0 (a failed trial is not retried) or more "
                          "retries per trial.")
    if spec.search not in SEARCHES:
        raise ConfigError(f"--search {spec.search}: choose one of {', '.join(SEARCHES)}.")
    if spec.search == "optuna":
        _check_optuna(spec)
    if spec.metric not in METRICS:
        raise ConfigError(f"--metric {spec.metric}: choose one of {', '.join(METRICS)}.")
    if spec.scheduler == "pbt" and not spec.mutate:
        raise ConfigError("--scheduler pbt needs --mutate NAME,...: the hyperparameters PBT may change, e.g. "
                          "--mutate actor_lr,critic_lr.")
    if spec.mutate and spec.scheduler != "pbt":
        raise ConfigError("--mutate is for --scheduler pbt; drop it or add --scheduler pbt.")
    if spec.pbt_interval and spec.scheduler != "pbt":
        raise ConfigError("--pbt-interval is for --scheduler pbt; drop it or add --scheduler pbt.")
    for name in spec.mutate:
        _check_field(name, "--mutate")
        if name not in PBT_MUTABLE:
            raise ConfigError(f"--mutate {name}: PBT can change only {', '.join(PBT_MUTABLE)}; {name} changes what "
                              "a checkpoint holds, so another trial's checkpoint would not load.")
    if spec.num_samples < 1:
        raise ConfigError(f"--num-samples {spec.num_samples}: run at least 1 sample.")
    if spec.cpus_per_trial <= 0 or spec.gpus_per_trial < 0:
        raise ConfigError("--cpus-per-trial must be > 0 and --gpus-per-trial >= 0.")
    if spec.eval_episodes < 1:
        raise ConfigError(f"--eval-episodes {spec.eval_episodes}: evaluate at least 1 episode.")
    if spec.pbt_interval < 0 or spec.grace_period < 0 or spec.max_concurrent < 0:
        raise ConfigError("--pbt-interval, --grace-period and --max-concurrent take 0 (auto) or a positive number.")
    _check_trial_configs(base, spec)
    _check_local_resources(spec)
    if (Path(spec.out) / SWEEP_FILE).exists():
        raise ConfigError(f"--out {spec.out} already holds a sweep; continue it with fastddpg sweep --resume "
                          f"{spec.out}, or choose another --out.")
    held = [d for d in (TRIALS_DIR, TUNE_DIR) if (spec.root / d).exists()]
    if spec.storage is not None and held:  # another sweep's --out with the same name: its trials would mix in
        raise ConfigError(f"--storage {spec.storage}: {spec.root} already holds another sweep's {held[0]}/ (a sweep "
                          f"with the same --out name); choose another --out name or --storage.")
    return spec


def _check_optuna(spec: SweepSpec) -> None:
    """``--search optuna``: Optuna's TPE proposes every trial's values from the --sample distributions."""
    if spec.scheduler == "pbt":
        raise ConfigError("--search optuna cannot run with --scheduler pbt: PBT changes a trial's hyperparameters "
                          "while it trains, so Optuna could not score the values it proposed; use --scheduler asha "
                          "or none with optuna, or pbt with --search random.")
    if spec.grid:
        raise ConfigError(f"--search optuna with --grid {', '.join(spec.grid)}: Optuna proposes every value itself; "
                          "give those fields as --sample NAME=choice:A,B,... (or use --search random for a grid).")
    if not spec.sample:
        raise ConfigError("--search optuna needs something to sample: give --sample NAME=loguniform:LO:HI (or "
                          "uniform:LO:HI, choice:A,B,...), e.g. --sample actor_lr=loguniform:1e-5:1e-2.")
    try:
        import optuna  # noqa: F401
    except ImportError:
        raise ConfigError("--search optuna needs Optuna: pip install 'fastddpg[sweep]' (or pip install optuna).") \
            from None


def read_spec(out: str | Path) -> SweepSpec:
    path = Path(out) / SWEEP_FILE
    if not path.is_file():
        raise ConfigError(f"--resume {out}: not a sweep directory (no {SWEEP_FILE}).")
    try:
        return SweepSpec(**json.loads(path.read_text())["spec"])
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ConfigError(f"--resume {out}: {SWEEP_FILE} is not a valid fastddpg sweep ({e}).") from None


def _write_spec(spec: SweepSpec, ray_version: str) -> None:
    from ...core.fileio import write_json

    out = Path(spec.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / SWEEP_FILE, {"spec": spec.to_dict(), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                  "ray": ray_version})

