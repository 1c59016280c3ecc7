"""Hyperparameter sweeps and scale-out on Ray Tune: ``fastddpg sweep`` and `sweep`.

A sweep is a set of trials; **each trial is an ordinary fastddpg run directory**, ``OUT/trials/<trial id>/``
(config.json, the CSVs, checkpoints, report.html), written by `fastddpg.api.open_run` and `run_to_end`, so
``fastddpg plot``, ``eval``, ``export`` and `load_run` work on it. Ray Tune schedules the trials; fastddpg
trains them. Layout of the sweep directory ``OUT`` (``--out``)::

    sweep.json        the sweep's definition: base config, grid, samples, scheduler, resources (for --resume)
    trials/<id>/      one fastddpg run directory per trial, plus reports.csv (what the trial told Tune, with
                      its hyperparameters at each report: the PBT schedule) and, after a PBT exploit, exploits/
    trials.csv        one row per trial: its swept values, final and best metrics, status, run directory
    report.html       every trial's curve, the grid points' means with a band over seeds, the ranking, and for
                      PBT each trial's hyperparameter schedule
    tune/             Ray Tune's own experiment state (what ``--resume`` restores); under --storage if given

**Reporting.** At each fastddpg report (every ``--log-every`` env steps; with PBT at each PBT interval, see
`TuneReporter`) a trial reports to Tune, once at least one episode has ended: ``env_steps`` (Tune's time
attribute for ASHA and PBT: env steps, not wall time, so a compile or a slow node does not count),
``return_10`` (the mean return of the last 10 episodes), and with ``--metric eval_return`` the mean return of
``--eval-episodes`` noise-free episodes of the current actor. A trial that is a population (``--num-seeds K``)
reports as ``return_10`` the mean over its members of each member's own last-10 mean (`schema.Last10`;
members without a finished episode are left out), so ASHA and PBT rank it by its members' returns.

**PBT through fastddpg's checkpoints.** With ``--scheduler pbt`` a trial writes a fastddpg checkpoint every
``--pbt-interval`` env steps and attaches it to that report (a Tune `Checkpoint` of a directory holding the
``step_*.pt`` file and a note naming the trial that wrote it). When PBT makes trial A exploit trial B, Tune
restarts A with B's checkpoint and A's mutated config; A then builds a new Trainer from its mutated config (the
update functions are rebuilt, and recompiled if compiling, with the new hyperparameters) and loads B's
checkpoint into it through the resume path (`Trainer.load_state_dict`: weights, targets, Adam states, replay
buffer, counters), so A's env steps continue from B's, not from 0.

**The replay buffer on an exploit is copied with the weights** (it is in the checkpoint). DDPG is off-policy and
B's networks were fitted to B's buffer: copying it makes the exploit a clone of the whole learner (PBT's
"copy the better member"), and the clone trains on at once, with the mutated hyperparameters, on the data its
weights came from. Dropping it would stall the clone until ``--update-after`` steps and then fit the copied
critic to a small, narrow buffer from one policy (the critic forgets); keeping A's own buffer would pair B's
weights with the data of the policy PBT just judged worse. The cost: every PBT checkpoint carries the buffer
(36 bytes per transition on Pendulum: 7 MB at the default 200k). After the exploit, A's random streams are
re-seeded from (A's seed, env step), so it does not replay B's noise and minibatch draws, and its envs restart
(as on any resume). A's run directory becomes B's history up to the checkpoint (its CSVs and checkpoint agree,
so ``fastddpg run --resume`` works on it), followed by A's own; what A itself did before is kept in
``exploits/<k>/`` and config.json lists the exploits.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import logging
import math
import os
import shutil
import socket
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import Config, ConfigError, format_hyper
from .fileio import atomic_write_text
from .schema import (
    ACTOR_FILE,
    CHECKPOINT_DIR,
    CONFIG_FILE,
    REPORT_FILE,
    SUMMARY_FILE,
    TABLES,
    Last10,
    episode_records,
    return_10_curve,
)

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


# --- the sweep's definition ---------------------------------------------------------------------------------------

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
    eval_episodes: int = 5
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


def _field_types() -> dict[str, Any]:
    defaults = Config()
    return {f.name: type(getattr(defaults, f.name)) for f in dataclasses.fields(Config)}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _check_field(name: str, option: str) -> None:
    types = _field_types()
    if name not in types or name in _NOT_SWEPT:
        known = "a `fastddpg run` flag's field name, e.g. actor_lr, seed or batch_size"
        raise ConfigError(f"{option} {name}: not a field that a sweep can vary; give {known}.")


def parse_value(name: str, text: str) -> Any:
    """One value of field ``name`` from its command-line text ('64x64' for hidden_sizes)."""
    kind = _field_types()[name]
    try:
        if kind is bool:
            low = text.strip().lower()
            if low not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(text)
            return low in ("true", "1", "yes")
        if kind is tuple:
            return tuple(int(x) for x in text.replace(",", "x").split("x") if x)
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
        return text
    except ValueError:
        raise ConfigError(f"{_flag(name)}={text!r} is not a valid {kind.__name__} value.") from None


def _validate(base: Config, name: str, value: Any, option: str) -> None:
    """The field's own validation (`Config.validate`) of ``value`` on top of ``base``."""
    try:
        Config.from_dict({**base.to_dict(), name: value})
    except (ConfigError, TypeError, ValueError) as e:
        raise ConfigError(f"{option}: {e}") from None


def parse_grid(items: Iterable[str], base: Config) -> dict[str, list[Any]]:
    """``NAME=V1,V2,...`` (an int range: ``NAME=A..B``, both ends included) -> {name: [values]}, each value checked
    by the field's validation."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        name, sep, values = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not values.strip():
            raise ConfigError(f"--grid {item!r}: write NAME=V1,V2,... (e.g. --grid seed=0,1,2 or seed=0..3).")
        _check_field(name, "--grid")
        if _field_types()[name] is int and ".." in values:
            lo, _, hi = values.partition("..")
            parsed = list(range(parse_value(name, lo), parse_value(name, hi) + 1))
        elif _field_types()[name] is tuple:
            parsed = [parse_value(name, v) for v in values.split(",") if v.strip()] if "x" in values else \
                [parse_value(name, values)]
        else:
            parsed = [parse_value(name, v.strip()) for v in values.split(",") if v.strip()]
        if not parsed:
            raise ConfigError(f"--grid {item!r}: give at least one value.")
        for v in parsed:
            _validate(base, name, v, "--grid")
        grid[name] = parsed
    return grid


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
            values = [parse_value(name, v.strip()) for v in args.split(",") if v.strip()]
        else:
            if _field_types()[name] not in (int, float):
                raise ConfigError(f"--sample {name}: {kind} needs a numeric field; use choice:A,B,...")
            parts = args.split(":")
            if len(parts) != 2:
                raise ConfigError(f"--sample {item!r}: {kind} takes LO:HI.")
            values = [parse_value(name, p) for p in parts]
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
    from .configfile import tomllib  # the standard library's, or tomli on Python 3.10

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
    if (Path(spec.out) / SWEEP_FILE).exists():
        raise ConfigError(f"--out {spec.out} already holds a sweep; continue it with fastddpg sweep --resume "
                          f"{spec.out}, or choose another --out.")
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
    from .fileio import write_json

    out = Path(spec.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / SWEEP_FILE, {"spec": spec.to_dict(), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                  "ray": ray_version})


# --- Ray: import, connect, check storage --------------------------------------------------------------------------

def require_ray() -> Any:
    """The ``ray`` module with Tune, or a one-line ConfigError saying how to install it."""
    try:
        import ray
        import ray.tune
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    return ray


def _reachable(address: str, timeout: float = 5.0) -> bool:
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


TOKEN_AUTH_NOTICE = "Token authentication is enabled for this Ray cluster"  # Ray's, at every new local Ray


class _DropTokenAuthNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(TOKEN_AUTH_NOTICE)


@contextlib.contextmanager
def _without_token_auth_notice() -> Iterator[None]:
    """While starting the private local Ray: drop Ray's log line that it enabled token authentication (its default
    for a new local Ray, which fastddpg starts and stops itself; nothing for the user to do). Authentication stays
    as Ray sets it, and Ray's other lines, such as its warning when authentication is disabled, still show."""
    logger = logging.getLogger("ray._private.authentication.authentication_token_setup")
    drop = _DropTokenAuthNotice()
    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)


def connect(spec: SweepSpec) -> bool:
    """Start a private local Ray in this process (no ``--address``) or connect to the cluster at ``--address``
    (``auto``, ``HOST:PORT`` or ``ray://HOST:PORT``). An unreachable address is a one-line ConfigError. Returns
    whether this call started Ray (and so should shut it down). A Ray already initialized (e.g. by your own
    ``ray.init``) is used as it is."""
    ray = require_ray()
    if ray.is_initialized():
        return False
    from .threads import usable_cores

    if spec.address is None:  # its workers inherit this process's environment (OpenMP's wait policy included)
        with _without_token_auth_notice():
            ray.init(address="local", num_cpus=usable_cores(), include_dashboard=False, log_to_driver=False,
                     logging_level=logging.WARNING)
        return True
    address = spec.address
    hint = ("start one with `ray start --head` (workers: `ray start --address=HEAD:6379`) or check the address")
    if address != "auto" and not _reachable(address):
        raise ConfigError(f"--address {address}: no Ray cluster answers there; {hint}.")
    try:
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    except Exception as e:  # ConnectionError, RuntimeError, grpc errors: all mean "no cluster here"
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"--address {address}: cannot connect to a Ray cluster ({first}); {hint}.") from None
    return True


def check_shared_storage(root: Path, nodes: Sequence[dict[str, Any]], sees: Callable[[dict[str, Any], str], bool],
                         given: bool) -> None:
    """With more than one alive node, every node must see ``root`` (the trials write their run directories and
    Tune its state there): a marker file written here must exist for ``sees(node, path)`` on each node."""
    alive = [n for n in nodes if n.get("Alive", True)]
    if len(alive) <= 1:
        return
    root.mkdir(parents=True, exist_ok=True)
    marker = root / f".shared-check-{os.getpid()}-{time.time_ns()}"
    marker.write_text("fastddpg")
    try:
        blind = [str(n.get("NodeManagerAddress", n.get("NodeID", "?"))) for n in alive if not sees(n, str(marker))]
    finally:
        with contextlib.suppress(OSError):
            marker.unlink()
    if blind:
        what = "--storage" if given else "--out (the default storage)"
        raise ConfigError(f"{what} {root} is not shared storage: the cluster has {len(alive)} nodes and "
                          f"{', '.join(blind)} cannot see it; give --storage a path mounted on every node (NFS).")


def _ray_sees(node: dict[str, Any], path: str) -> bool:
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    @ray.remote(num_cpus=0)
    def exists(p: str) -> bool:
        return os.path.exists(p)

    ref = exists.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)).remote(path)
    try:
        return bool(ray.get(ref, timeout=120))
    except Exception:
        return False


# --- one trial (runs in a Ray worker) -------------------------------------------------------------------------

def _cast(name: str, value: Any) -> Any:
    kind = _field_types()[name]
    if kind is tuple:  # a tuple, or its text ('64x64': how Optuna's categorical choices carry hidden sizes)
        return parse_value(name, value) if isinstance(value, str) else tuple(int(v) for v in value)
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
    values = {**spec.base, **{k: _cast(k, v) for k, v in params.items() if k in _field_types()},
              "run_dir": str(run_dir), "quiet": True}
    if not values.get("threads"):
        values["threads"] = max(1, int(spec.cpus_per_trial))
    if spec.scheduler == "pbt":
        values["checkpoint_every"] = spec.interval()
    return Config.from_dict(values)


def run_trial(params: dict[str, Any], spec: dict[str, Any], hook: Callable[..., None] | None = None) -> None:
    """Tune's function trainable: one fastddpg run in ``ROOT/trials/<trial id>``, reporting at every report."""
    sweep = SweepSpec(**spec)
    os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", str(max(1, int(sweep.cpus_per_trial))))
    if "torch" in sys.modules:  # an actor Tune reuses (reuse_actors): the last trial's compiled graphs go, so
        import torch  # they never count toward dynamo's recompile limit (its on-disk kernel cache stays)

        torch._dynamo.reset()
    from ray import tune

    from .api import run_to_end

    trial_id = tune.get_context().get_trial_id()
    run_dir = sweep.root / TRIALS_DIR / trial_id
    cfg = trial_config(sweep, params, run_dir)
    opened = open_trial(sweep, cfg, run_dir, trial_id, tune.get_checkpoint())
    if opened is None:  # finished before (a sweep resumed after the trial's last checkpoint): report it, done
        tune.report(final_metrics(run_dir, sweep))
        return
    trainer, writer, event = opened
    reporter = TuneReporter(sweep, trial_id, event, hook)
    run_to_end(trainer, writer, [reporter])
    reporter.report(trainer, final=True)  # after the run directory is complete: a STOP now loses nothing


def _step_of(path: Path | None) -> int:
    return int(path.stem.split("_")[1]) if path is not None else -1


def open_trial(spec: SweepSpec, cfg: Config, run_dir: Path, trial_id: str, checkpoint: Any) -> Any:
    """(trainer, writer, event) for this trial: from another trial's checkpoint (a PBT exploit), else continuing
    its own run directory from its latest checkpoint (a restore, a resumed sweep), else a new run. None when the
    run directory already reached its total steps."""
    from .api import open_resume, open_run
    from .checkpoint import latest_checkpoint

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

    from .checkpoint import Checkpointer, read_checkpoint
    from .fileio import write_json
    from .resuming import history_at
    from .rundir import RunWriter
    from .trainer import Trainer

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
        cfg = Config.from_dict({**cfg.to_dict(), "seed": old["config"]["seed"]})
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
        trainer.checkpointer = Checkpointer(run_dir)
        trainer.checkpoint()
    except BaseException:
        trainer.env.close()
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
    population's: the mean over members of each member's), by `fastddpg.evaluate.evaluate_state`, the evaluation
    of ``fastddpg eval`` and ``--eval-every``."""
    return _mean_eval_return(trainer.algo.actor.state_dict(), trainer.cfg, episodes)


def _mean_eval_return(actor_state: dict[str, Any], cfg: Config, episodes: int) -> float:
    from .evaluate import evaluate_state

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
        self.last: Any = None  # the trainer's last report (`fastddpg.schema.Report`)

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
    from .rundir import load_run

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


# --- the console while a sweep runs -------------------------------------------------------------------------------

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


# --- the driver ---------------------------------------------------------------------------------------------------

def _param_space(spec: SweepSpec) -> dict[str, Any]:
    from ray import tune

    space: dict[str, Any] = {name: tune.grid_search(list(values)) for name, values in spec.grid.items()}
    for name, (kind, *args) in spec.sample.items():
        is_int = _field_types()[name] is int
        if kind == "choice":  # Optuna's categorical values are scalars: a tuple field's choices go as text
            text = spec.search == "optuna" and _field_types()[name] is tuple
            space[name] = tune.choice([_csv_value(tuple(a)) if text else a for a in args])
        elif kind == "uniform":
            space[name] = tune.randint(args[0], args[1] + 1) if is_int else tune.uniform(*args)
        else:
            space[name] = tune.lograndint(args[0], args[1] + 1) if is_int else tune.loguniform(*args)
    for name in spec.mutate:  # PBT needs the mutated keys in every trial's config
        space.setdefault(name, spec.base[name])
    return space


def _mutations(spec: SweepSpec) -> dict[str, Any]:
    """What PBT may set each ``--mutate`` field to: its --sample distribution, its --grid values (PBT moves to a
    neighbour), else a log-uniform range from 1/4x to 4x the base value (PBT perturbs by 0.8x/1.2x or resamples)."""
    from ray import tune

    out: dict[str, Any] = {}
    space = _param_space(spec)
    for name in spec.mutate:
        if name in spec.sample:
            out[name] = space[name]
        elif name in spec.grid:
            out[name] = list(spec.grid[name])
        else:
            v = float(spec.base[name])
            out[name] = tune.loguniform(v / 4, v * 4) if v > 0 else tune.uniform(0.0, 1.0)
    return out


_BOUNDS = {"gamma": (0.0, 1.0), "tau": (1e-6, 1.0), "batch_size": (1, None), "policy_delay": (1, None),
           "updates_per_step": (0.0, None), "grad_clip_norm": (0.0, None), "noise_sigma": (0.0, None),
           "policy_noise": (0.0, None), "noise_clip": (0.0, None), "actor_lr": (1e-12, None),
           "critic_lr": (1e-12, None)}


def clamp_mutation(config: dict[str, Any]) -> dict[str, Any]:
    """PBT's custom_explore_fn: a perturbed value (x0.8, x1.2) kept inside its field's valid range, ints rounded."""
    for name, (lo, hi) in _BOUNDS.items():
        if name in config:
            v = float(config[name])
            v = max(v, lo) if lo is not None else v
            v = min(v, hi) if hi is not None else v
            config[name] = round(v) if _field_types()[name] is int else v
    return config


def _scheduler(spec: SweepSpec) -> Any:
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, PopulationBasedTraining

    if spec.scheduler == "asha":
        total = spec.base_config.total_steps
        grace = spec.grace_period or max(1, total // 8)
        return ASHAScheduler(time_attr=TIME_ATTR, max_t=total, grace_period=min(grace, total), reduction_factor=2)
    if spec.scheduler == "pbt":
        return PopulationBasedTraining(time_attr=TIME_ATTR, perturbation_interval=spec.interval(),
                                       hyperparam_mutations=_mutations(spec), custom_explore_fn=clamp_mutation)
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


def run_sweep(spec: SweepSpec, *, resume: bool = False, hook: Callable[..., None] | None = None,
              verbose: int = 0, progress: bool = False) -> SweepResult:
    """Connect (or start Ray), check the storage, run (or restore) the Tune experiment, then write trials.csv
    and report.html. Raises `SweepInterrupted` when Ctrl-C stopped it (resume with ``--resume``). ``verbose`` is
    Tune's (0: none of its trial tables); ``progress`` prints `SweepProgress`'s lines (kept with the experiment,
    so a restored sweep prints what the sweep it continues printed)."""
    ray = require_ray()
    started = connect(spec)
    try:
        check_shared_storage(spec.root, ray.nodes(), _ray_sees, spec.storage is not None)
        from ray import tune

        if not resume:
            _write_spec(spec, ray.__version__)
        spec.root.joinpath(TRIALS_DIR).mkdir(parents=True, exist_ok=True)
        link = Path(spec.out) / TRIALS_DIR
        if spec.root != Path(spec.out) and not link.exists():
            link.symlink_to(spec.root / TRIALS_DIR, target_is_directory=True)
        experiment = spec.root / TUNE_DIR
        if resume:
            if not tune.Tuner.can_restore(str(experiment)):
                raise ConfigError(f"--resume {spec.out}: no Tune experiment state in {experiment} (the sweep stopped "
                                  "before its first trial started); start it again.")
            tuner = tune.Tuner.restore(str(experiment), trainable=_trainable(spec, hook), resume_unfinished=True,
                                       resume_errored=True)
        else:
            pbt = spec.scheduler == "pbt"
            tuner = tune.Tuner(
                _trainable(spec, hook), param_space=_param_space(spec),
                # reuse_actors: a finished trial's worker takes the next trial, so torch and fastddpg are imported
                # once per worker, not once per trial; each trial still builds its own Trainer (threads, seeds,
                # run directory). Only without an early-stopping scheduler: ASHA's stop and PBT's exploit would
                # reuse a worker whose trial is still training, and Tune errors that trial unless its thread ends
                # within 2 s (TUNE_FUNCTION_THREAD_TIMEOUT_S), which a loaded machine or a long report misses.
                tune_config=tune.TuneConfig(metric=spec.metric, mode="max", scheduler=_scheduler(spec),
                                            num_samples=spec.num_samples, reuse_actors=spec.scheduler == "none",
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
        with _tune_output(legacy=resume or verbose == 0), warnings.catch_warnings():
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
        unfinished = [t for t, st in statuses.items() if st == "unfinished"]
        if signalled and not unfinished:  # Ctrl-C: every trial without a summary.json is unfinished
            unfinished = [t for t in statuses if not (spec.root / TRIALS_DIR / t / SUMMARY_FILE).is_file()]
            statuses.update({t: "unfinished" for t in unfinished})
        interrupted = bool(unfinished) or grid.num_terminated + grid.num_errors < len(grid)
    finally:
        if started:
            ray.shutdown()
    result = finish_sweep(spec, statuses, errors)
    if interrupted:
        raise SweepInterrupted(result)
    return result


def trial_error_line(error: Any) -> str:
    """One line for a trial's error: a `fastddpg.RunDirError`'s own line (a full disk...: what failed, what is
    safe, what to do), else the last line of the error Ray sends (its traceback's)."""
    from .failsafe import RunDirError

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


# --- results ----------------------------------------------------------------------------------------------------

@dataclass
class SweepResult:
    """A sweep's outcome, from its trials' own files.

    trials: one row per trial: trial, status (finished | stopped | error | running), each swept field's (final)
        value, seed, env_steps, episodes, final_return_10, best_return_10 (and final/best_eval_return with
        --metric eval_return), exploits, wall_time_s, run_dir. Sorted by trial id.
    history: one row per episode of every trial, in the order they ended: trial, the swept fields, then the
        episodes table (episode, env, global_step, return, length, wall_time; a population's with member first)
        and return_10 (the trial's return_10 after that episode, `schema.return_10_curve`: a single run's
        10-episode moving mean; a population's, the mean over its members of theirs).
    reports: every trial's reports.csv (what it reported to Tune, with its hyperparameters at each report).
    """

    path: Path
    spec: SweepSpec
    trials: Any
    history: Any
    reports: Any
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def metric_column(self) -> str:
        return f"final_{self.spec.metric}"

    @property
    def best(self) -> Any:
        """The trials row with the highest final metric."""
        return self.trials.sort_values(self.metric_column, ascending=False).iloc[0]


def trial_dirs(spec: SweepSpec) -> list[Path]:
    d = spec.root / TRIALS_DIR
    return sorted(p for p in d.iterdir() if (p / CONFIG_FILE).is_file()) if d.is_dir() else []


def collect(spec: SweepSpec, statuses: dict[str, str] | None = None) -> SweepResult:
    """Build the trials, history and reports tables from the trial directories."""
    import numpy as np
    import pandas as pd

    from .rundir import load_run

    statuses = statuses or {}
    rows, history, reports = [], [], []
    swept = spec.swept
    for d in trial_dirs(spec):
        run = load_run(d)
        cfg, s = run.config, run.summary or {}
        keys = ["global_step", "member", "episode"] if "member" in run.episodes.columns else ["episode"]
        ep = run.episodes.sort_values(keys, kind="stable").reset_index(drop=True)  # the order the episodes ended
        r10 = pd.Series(return_10_curve(episode_records(ep)), dtype=float)
        steps = int(s.get("env_steps", ep["global_step"].max() if len(ep) else 0))
        finished = bool(s) and steps >= cfg.total_steps and "stopped_by" not in s
        status = statuses.get(d.name) or ("finished" if finished else ("stopped" if statuses else "running"))
        values = {n: _csv_value(getattr(cfg, n)) for n in swept}
        row = {"trial": d.name, "status": status, **values, "seed": cfg.seed, "env_steps": steps,
               "episodes": len(ep), "final_return_10": float(r10.iloc[-1]) if len(r10) else np.nan,
               "best_return_10": float(r10.max()) if len(r10) else np.nan}
        rep = _read_reports(d)
        if spec.metric == "eval_return":
            ev = rep["eval_return"].dropna() if len(rep) else pd.Series(dtype=float)
            row["final_eval_return"] = float(ev.iloc[-1]) if len(ev) else np.nan
            row["best_eval_return"] = float(ev.max()) if len(ev) else np.nan
        row.update(exploits=len(run.meta.get("exploits", [])), wall_time_s=float(s.get("wall_time_s", np.nan)),
                   run_dir=str(d))
        rows.append(row)
        h = ep.copy()
        h.insert(0, "trial", d.name)
        for i, n in enumerate(swept):
            h.insert(1 + i, n, values[n])
        h["return_10"] = r10.to_numpy()
        history.append(h)
        if len(rep):
            rep.insert(0, "trial", d.name)
            reports.append(rep)
    trials = pd.DataFrame(rows)
    hist = pd.concat(history, ignore_index=True) if history else pd.DataFrame()
    reps = pd.concat(reports, ignore_index=True) if reports else pd.DataFrame()
    return SweepResult(path=Path(spec.out), spec=spec, trials=trials, history=hist, reports=reps)


def _read_reports(run_dir: Path) -> Any:
    import pandas as pd

    path = run_dir / REPORTS_FILE
    if not path.is_file():
        return pd.DataFrame(columns=list(_REPORT_COLUMNS))
    df = pd.read_csv(path, keep_default_na=True, dtype={"event": str, "node": str})
    df["event"] = df["event"].fillna("").astype(str)
    df["node"] = df["node"].fillna("").astype(str)
    return df


def finish_sweep(spec: SweepSpec, statuses: dict[str, str] | None = None,
                 errors: dict[str, str] | None = None) -> SweepResult:
    """trials.csv and report.html of the sweep; report.html for a trial that stopped without one. ``errors``: the
    failed trials' error lines, an ``error`` column of trials.csv and the report."""
    from .plots import write_report

    result = _with_errors(collect(spec, statuses), errors or {})
    for d in trial_dirs(spec):
        if not (d / REPORT_FILE).exists():
            with contextlib.suppress(Exception):
                write_report([d], d / REPORT_FILE)
    out = Path(spec.out)
    out.mkdir(parents=True, exist_ok=True)
    result.trials.to_csv(out / TRIALS_FILE, index=False)
    write_sweep_report(result, out / REPORT_FILE)
    return result


def load_sweep(path: str | Path) -> SweepResult:
    """Read a sweep directory back (its sweep.json and trial directories): trials, history, reports."""
    spec = read_spec(path)
    statuses: dict[str, str] = {}
    trials_csv = Path(path) / TRIALS_FILE
    if trials_csv.is_file():
        import pandas as pd

        t = pd.read_csv(trials_csv, dtype={"trial": str})  # a searcher's ids are hex: "01234567", "8e123456"
        statuses = dict(zip(t["trial"].astype(str), t["status"].astype(str), strict=True))
        if "error" in t.columns:
            errors = {str(k): str(v) for k, v in zip(t["trial"], t["error"], strict=True) if isinstance(v, str) and v}
            return _with_errors(collect(spec, statuses), errors)
    return collect(spec, statuses)


def _with_errors(result: SweepResult, errors: dict[str, str]) -> SweepResult:
    """``result`` with its trials' error lines: ``errors`` and, when a trial has one, an ``error`` column."""
    result.errors = dict(errors)
    if errors and len(result.trials):
        result.trials["error"] = [errors.get(str(t), "") for t in result.trials["trial"]]
    return result


def sweep(base_config: Config | None = None, space: dict[str, Any] | None = None, *, out: str | Path,
          scheduler: str = "none", metric: str = "return_10", num_samples: int = 1, pbt_interval: int = 0,
          mutate: Sequence[str] = (), grace_period: int = 0, eval_episodes: int = 5, cpus_per_trial: float = 1,
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
        is_tuple_field = _field_types()[name] is tuple
        if isinstance(value, str) and value.split(":")[0] in _DISTRIBUTIONS:
            sample.update(parse_sample([f"{name}={value}"], base))
        elif isinstance(value, (list, tuple)) and (not is_tuple_field or all(isinstance(v, (list, tuple))
                                                                             for v in value)):
            grid[name] = [_cast(name, v) for v in value]
            for v in grid[name]:
                _validate(base, name, v, "space")
        else:
            fixed[name] = _cast(name, value)
    if fixed:
        base = Config.from_dict({**base.to_dict(), **fixed})
    spec = make_spec(base, out, grid=grid, sample=sample, scheduler=scheduler, metric=metric,
                     num_samples=num_samples, pbt_interval=pbt_interval, mutate=list(mutate),
                     grace_period=grace_period, eval_episodes=eval_episodes, cpus_per_trial=float(cpus_per_trial),
                     gpus_per_trial=float(gpus_per_trial), max_concurrent=max_concurrent, address=address,
                     storage=storage, max_failures=max_failures, search=search)
    return run_sweep(spec, hook=report_hook, verbose=verbose)


def resume_sweep(out: str | Path, *, address: str | None = None, report_hook: Callable[..., None] | None = None,
                 verbose: int = 0) -> SweepResult:
    """Continue a sweep stopped part way (``fastddpg sweep --resume OUT``): finished trials are not run again,
    unfinished ones continue from their run directories' latest checkpoints."""
    spec = read_spec(out)
    if address is not None:
        spec.address = address
    return run_sweep(spec, resume=True, hook=report_hook, verbose=verbose)


# --- the sweep's report -------------------------------------------------------------------------------------------

def _group_label(row: Any, grid_names: Sequence[str]) -> str:
    names = [n for n in grid_names if n != "seed"]
    return ", ".join(f"{n}={format_hyper(getattr(row, n))}" for n in names) if names else "all trials"


def sweep_figures(result: SweepResult) -> list[Any]:
    """Curves of all trials overlaid (colour: grid point), the grid points' mean with its min..max band over seeds,
    and for PBT each mutated field's schedule per trial."""
    import numpy as np
    import plotly.graph_objects as go

    from .plots import COLORS, TEMPLATE

    figs = []
    trials, hist = result.trials, result.history
    names = [*result.spec.grid, *result.spec.sample]
    groups = {t.trial: _group_label(t, names) for t in trials.itertuples(index=False)} if len(trials) else {}
    order = list(dict.fromkeys(groups.values()))
    color = {g: COLORS[i % len(COLORS)] for i, g in enumerate(order)}
    fig = go.Figure()
    shown: set[str] = set()
    for trial, h in (hist.groupby("trial", sort=True) if len(hist) else []):
        g = groups.get(trial, "")
        fig.add_trace(go.Scatter(x=h["global_step"], y=h["return_10"], mode="lines", name=g, legendgroup=g,
                                 showlegend=g not in shown, line=dict(color=color.get(g, COLORS[0]), width=1.5),
                                 hovertemplate=f"{trial}<br>env step %{{x:,}}<br>return_10 %{{y:.1f}}"
                                               f"<extra>{g}</extra>"))
        shown.add(g)
    fig.update_layout(title="Every trial: 10-episode mean return", xaxis_title="Env steps",
                      yaxis_title="Return (10-episode mean)", template=TEMPLATE)
    figs.append(fig)

    fig = go.Figure()
    for g in order:
        members = [t for t, gg in groups.items() if gg == g]
        parts = [hist[hist["trial"] == t] for t in members] if len(hist) else []
        parts = [p for p in parts if len(p)]
        if not parts:
            continue
        x = np.unique(np.concatenate([p["global_step"].to_numpy() for p in parts]))
        ys = []
        for p in parts:
            px, py = p["global_step"].to_numpy(dtype=float), p["return_10"].to_numpy(dtype=float)
            y = np.interp(x, px, py)
            y[(x < px.min()) | (x > px.max())] = np.nan
            ys.append(y)
        ys = np.array(ys)
        with np.errstate(all="ignore"):
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                mean, lo, hi = np.nanmean(ys, 0), np.nanmin(ys, 0), np.nanmax(ys, 0)
        c = color[g]
        fig.add_trace(go.Scatter(x=np.concatenate([x, x[::-1]]), y=np.concatenate([hi, lo[::-1]]), fill="toself",
                                 fillcolor=c, opacity=0.2, line=dict(width=0), legendgroup=g, showlegend=False,
                                 hoverinfo="skip", name=f"{g}: range"))
        fig.add_trace(go.Scatter(x=x, y=mean, mode="lines", line=dict(color=c, width=2.5), legendgroup=g,
                                 name=f"{g} ({len(parts)} trial{'s' if len(parts) > 1 else ''})"))
    fig.update_layout(title="By grid point: mean over seeds, band from min to max", xaxis_title="Env steps",
                      yaxis_title="Return (10-episode mean)", template=TEMPLATE)
    figs.append(fig)

    reps = result.reports
    for name in result.spec.mutate if result.spec.scheduler == "pbt" and len(reps) else []:
        if name not in reps.columns:
            continue
        fig = go.Figure()
        for i, (trial, r) in enumerate(reps.groupby("trial", sort=True)):
            c = COLORS[i % len(COLORS)]
            fig.add_trace(go.Scatter(x=np.arange(len(r)), y=r[name], mode="lines+markers", name=trial,
                                     line=dict(color=c, shape="hv"), customdata=r[TIME_ATTR],
                                     hovertemplate=f"{trial}<br>report %{{x}}<br>env step %{{customdata:,}}<br>"
                                                   f"{name} %{{y:.4g}}<extra></extra>"))
            ex = r[r["event"].str.startswith("exploit")]
            if len(ex):
                fig.add_trace(go.Scatter(x=np.flatnonzero(r["event"].str.startswith("exploit").to_numpy()),
                                         y=ex[name], mode="markers", marker=dict(symbol="star", size=12, color=c),
                                         name=f"{trial}: exploit", text=ex["event"], hovertemplate="%{text}"))
        fig.update_layout(title=f"PBT schedule of {name} (stars: exploits)", xaxis_title="Report (in order)",
                          yaxis_title=name, template=TEMPLATE)
        figs.append(fig)
    return figs


def _ranking_table(result: SweepResult) -> str:
    import html

    t = result.trials
    if not len(t):
        return "<p>No trial has started yet.</p>"
    col = result.metric_column
    ranked = t.sort_values(col, ascending=False, na_position="last")
    cols = ["trial", "status", *result.spec.swept, *([] if "seed" in result.spec.swept else ["seed"]), "env_steps",
            "episodes", "final_return_10", "best_return_10",
            *(["final_eval_return", "best_eval_return"] if result.spec.metric == "eval_return" else []), "exploits",
            *(["error"] if "error" in t.columns else [])]

    hypers = set(result.spec.swept)

    def cell(c: str, v: Any) -> str:  # hyperparameters with their significant digits, metrics to 0.1
        if c in hypers:
            return html.escape(format_hyper(v))
        return f"{v:,.1f}" if isinstance(v, float) else html.escape(str(v))

    head = "<tr><th>rank</th>" + "".join(f"<th>{html.escape(c)}</th>" for c in cols) + "</tr>"
    body = "".join("<tr><td>" + str(i + 1) + "</td>" + "".join(f"<td>{cell(c, r[c])}</td>" for c in cols) + "</tr>"
                   for i, (_, r) in enumerate(ranked.iterrows()))
    return f"<h2>Ranking by {html.escape(col)}</h2><table><thead>{head}</thead><tbody>{body}</tbody></table>"


def write_sweep_report(result: SweepResult, out: Path, plotly_cdn: bool = False) -> Path:
    """The sweep's report.html (the run report's page layout; `fastddpg.plots.read_report_figures` reads it)."""
    import html

    from .plots import render_page

    details = (f"<details><summary>sweep definition ({SWEEP_FILE})</summary><pre>"
               f"{html.escape(json.dumps(result.spec.to_dict(), indent=2))}</pre></details>")
    title = f"fastddpg sweep: {result.spec.name} ({len(result.trials)} trials)"
    return atomic_write_text(out, render_page(title, _ranking_table(result), details, sweep_figures(result),
                                              plotly_cdn))
