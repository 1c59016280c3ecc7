"""One configuration dataclass: the single source of truth for defaults, CLI flags, `--help` and the saved run config.

Every hyperparameter of the reference notebook is here with the notebook's default. Each field carries its
help text in ``metadata["help"]``; the CLI builds its flags from these fields, and a run directory stores
``Config.to_dict()``.
"""

from __future__ import annotations

import dataclasses
import fractions
import functools
import inspect
import math
import numbers
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .registry import ALGORITHMS, algo_help, algo_names, algorithm_defaulted, grid_fields, hyper_fields, uses
from .threads import AUTO_MAX_THREADS

if TYPE_CHECKING:
    import torch

RECORD_GROUP = "record"  # Config fields that are no option: the record of which values the user gave
TORCH_ENV_IDS = ("Pendulum-v1",)  # env ids with a torch-native implementation (--env-backend torch)
NUMPY_ENV_IDS = ("Pendulum-v1",)  # env ids with a batched numpy implementation (--env-backend numpy)
ENV_BACKENDS = ("auto", "gymnasium", "numpy", "torch")
ALGOS = algo_names()  # the --algo choices: fastddpg.core.registry's algorithms, in its order
# --grid: the scalars the update and exploration take, carried per member as (K,) tensors in the one graph
GRID_FIELDS = grid_fields()

# The field groups (metadata "group"), in --help order: name -> (title, description). Config files
# (fastddpg.core.configfile) accept the names as TOML tables.
GROUPS: dict[str, tuple[str, str]] = {
    "environment": ("environment", "What to train on, where, and for how long."),
    "training": ("training", "The algorithm and the hyperparameters every algorithm shares. Their defaults are the "
                 "notebook's, except where an algorithm has its own (listed as '--algo sac: ...')."),
    # each algorithm with hyperparameters of its own (fastddpg.core.registry): its group, after the shared ones
    **{spec.name: (spec.title, f"Used with --algo {spec.name} only.") for spec, _ in hyper_fields()},
    "diagnostics": ("diagnostics", "The probe states behind the policy and Q heatmaps of the report."),
    "performance": ("performance", "How the update runs; does not change what it computes."),
    "run": ("run", "The run directory, console output and checkpoints."),
    "population": ("population", "K independent agents trained in one process by one compiled update."),
    "evaluation": ("evaluation", "Noise-free evaluation during training, and the best model kept."),
}


def format_hyper(value: Any) -> str:
    """A hyperparameter value for people to read (report tables, legends, hover, grid labels): floats with 4
    significant digits, 'g'-style (3e-4 -> '0.0003', 2.4665e-3 -> '0.002467', 1e-5 -> '1e-05'), anything else
    as ``str``. Files (config.json, trials.csv, members.csv) keep the full value."""
    if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):  # numpy's floats too
        return f"{float(value):.4g}"
    return str(value)


# --cpu-matmul's choices (fastddpg.learning.cpu_matmul): here, so that the config's flag and the module share them
CPU_MATMUL_CHOICES = ("auto", "mkl", "onednn")
# Config fields `fastddpg run --resume` lets you change (none changes what the checkpoint holds or how the run
# learns); every other field is the run's own, from its config.json.
RESUME_OVERRIDABLE = ("total_steps", "checkpoint_every", "keep_checkpoints", "log_every", "quiet", "device",
                      "compile", "cpu_matmul", "flush_denormal", "vector_mode", "threads", "tensorboard", "eval_every")
MAX_SEED = 2**32 - 1  # numpy's global seed (np.random.seed) takes 0..2**32 - 1; derived env seeds may go beyond


class ConfigError(ValueError):
    """A user-facing error: one line saying what is wrong and what to do. The CLI prints it and exits 2."""


def first_line(e: BaseException) -> str:
    """The first line of ``e``'s message ('' where it has none): what a one-line error quotes of an exception."""
    text = str(e).strip()
    return text.splitlines()[0] if text else ""


def _f(default: Any, help: str, choices: tuple[str, ...] | None = None, group: str = "training") -> Any:
    meta = {"help": help, "group": group}
    if choices is not None:
        meta["choices"] = choices
    if isinstance(default, (list, tuple)):
        return field(default_factory=lambda: tuple(default), metadata=meta)
    return field(default=default, metadata=meta)


def _with_algorithm_fields(cls: type) -> type:
    """Insert every registered algorithm's own hyperparameters (`fastddpg.core.registry.HyperField`) as Config fields
    after ``grad_clip_norm``, each in its algorithm's group: flags, --help, config files and config.json get them
    like any other field. Applied before ``@dataclass`` reads the annotations."""
    annotations = {}
    for name, kind in inspect.get_annotations(cls).items():
        annotations[name] = kind
        if name == "grad_clip_norm":
            for spec, h in hyper_fields():
                annotations[h.name] = type(h.default).__name__
                setattr(cls, h.name, _f(h.default, h.help, group=spec.name))
    cls.__annotations__ = annotations
    return cls


@dataclass
@_with_algorithm_fields
class Config:
    """Everything a run needs. Defaults are the reference notebook's (``Pendulum-v1``, DDPG)."""

    # --- environment -------------------------------------------------------------------------------------
    env: str = _f("Pendulum-v1", "Gymnasium environment id; needs a bounded Box action space.", group="environment")
    num_envs: int = _f(4, "Environments stepped in parallel (one vector step = num_envs transitions).",
                       group="environment")
    vector_mode: str = _f("sync", "Gymnasium vectorization: 'sync' steps envs in this process, 'async' in "
                          "one subprocess each (pays off for slow envs only).", choices=("sync", "async"),
                          group="environment")
    env_backend: str = _f("auto", "Env simulator: 'gymnasium' (Gymnasium's vector env on the CPU), 'numpy' "
                          "(Pendulum-v1 only: Gymnasium's Pendulum for all N envs in one set of numpy ops on the "
                          "CPU, the same numbers; --vector-mode is ignored), 'torch' (Pendulum-v1 only: simulated "
                          "in torch on the training device, no host transfer per step; --vector-mode is ignored), "
                          "'auto' (Pendulum-v1: torch on CUDA, numpy on the CPU with --vector-mode sync and 2 or more "
                          "envs; otherwise gymnasium).", choices=ENV_BACKENDS, group="environment")
    device: str = _f("auto", "Training device: 'auto' (cuda when available, else cpu), 'cpu', 'cuda' or "
                     "'cuda:N'. Networks, replay buffer and metrics all live here.", group="environment")
    total_steps: int = _f(10_000, "Environment steps to train for, summed over all envs.", group="environment")
    seed: int = _f(42, "Seed for torch, the envs (env i gets seed+i), the initial weights, the random actions, the "
                   "noise and the replay sampler. A population's member seeds follow from it (see --num-seeds).",
                   group="environment")

    # --- DDPG hyperparameters (the notebook's) --------------------------------------------------------------
    algo: str = _f("ddpg", algo_help(), choices=ALGOS)
    replay_size: int = _f(200_000, "Replay buffer capacity in transitions (REPLAY_SIZE).")
    batch_size: int = _f(128, "Minibatch size per gradient update (BATCH_SIZE).")
    gamma: float = _f(0.99, "Discount factor in y = r + gamma (1 - d) Q'(s', mu'(s')) (GAMMA), in [0, 1].")
    tau: float = _f(0.005, "Soft target update rate: theta' <- tau theta + (1 - tau) theta' (TAU), in (0, 1].")
    actor_lr: float = _f(1e-3, "Adam learning rate of the actor (ACTOR_LR).")
    critic_lr: float = _f(1e-3, "Adam learning rate of the critic (CRITIC_LR).")
    start_steps: int = _f(2_000, "Env steps of uniform random actions before acting with actor + noise "
                          "(START_STEPS).")
    update_after: int = _f(1_000, "Env steps before the first gradient update (UPDATE_AFTER).")
    updates_per_step: float = _f(1.0, "Gradient updates per environment transition (UPDATES_PER_STEP): a vector "
                                 "step of N envs performs N x this many updates; fractions accumulate "
                                 "(1/num_envs = one update per vector step).")
    noise_sigma: float = _f(0.1, "Exploration noise scale, in action units (NOISE_SIGMA): the std of Gaussian "
                            "noise, or the sigma of OU noise.")
    noise: str = _f("gaussian", "Exploration noise: 'gaussian' (independent per step, the notebook's) or 'ou' "
                    "(Ornstein-Uhlenbeck per env: x <- x + theta (0 - x) dt + sigma sqrt(dt) N(0, 1), "
                    "temporally correlated, reset to 0 when the env's episode ends).", choices=("gaussian", "ou"))
    ou_theta: float = _f(0.15, "OU noise mean-reversion rate theta (with --noise ou).")
    ou_dt: float = _f(1e-2, "OU noise time step dt (with --noise ou).")
    hidden_sizes: tuple[int, ...] = _f((256, 256), "Hidden layer widths of actor and critic (HIDDEN_SIZES).")
    layer_norm: bool = _f(False, "LayerNorm after each hidden Linear layer (before its ReLU) in actor and "
                          "critic(s); output layers stay plain.")
    grad_clip_norm: float = _f(1.0, "Max global gradient norm for actor and critic (GRAD_CLIP_NORM); 0 "
                               "disables clipping.")
    # here: each registered algorithm's own hyperparameters (TD3's policy_noise, noise_clip, policy_delay), from
    # fastddpg.core.registry by _with_algorithm_fields
    probe_n: int = _f(32, "Fixed probe states for the policy/Q heatmaps (PROBE_N).", group="diagnostics")
    probe_every_episodes: int = _f(5, "Snapshot the actor and Q on the probe states each time this many more "
                                   "episodes (summed over envs) have finished (PROBE_EVERY_EPISODES).",
                                   group="diagnostics")

    compile: str = _f("auto", "How the update runs: 'off' (eager), 'analytic' (DDPG and TD3 without --layer-norm, "
                      "one agent: hand-derived gradients, no compile, its gradient parts as TorchScript graphs on "
                      "a CPU; on any device), 'default' or "
                      "'max-autotune' (torch.compile, fullgraph; plus a CUDA graph on CUDA), 'auto' (compile on CUDA; "
                      "on CPU 'analytic' where it applies for runs too short to repay a cold compile (DDPG: under "
                      "30,000 updates, TD3: 15,000), else compile for runs long enough to repay it).",
                      choices=("auto", "off", "analytic", "default", "max-autotune"), group="performance")
    cpu_matmul: str = _f("auto", "Matrix products of a compiled update on a CPU: 'mkl' (PyTorch's default), "
                         "'onednn' (oneDNN's kernels, which use AVX-512 where MKL runs AVX2: on AMD CPUs 1.9x faster "
                         "products, the same equations), 'auto' (onednn on an AMD CPU with AVX-512, mkl elsewhere).",
                         choices=CPU_MATMUL_CHOICES, group="performance")
    flush_denormal: bool = _f(True, "Flush subnormal floats (float32: |x| < 1.2e-38; float64's too) to zero on the "
                              "CPU, as TensorFlow does: x86 cores compute them on a slow path, and Adam's moments "
                              "of weights whose gradients vanish decay into them (the CPU training loop 1.15x faster "
                              "on an AMD EPYC). False keeps IEEE subnormals. Process-wide, set when the run starts "
                              "(OpenMP threads started earlier in the process keep their mode).", group="performance")
    threads: int = _f(0, "torch CPU threads of this process (intra-op; also the compiled CPU kernels'). 0 = auto: "
                      "the usable cores divided among the fastddpg runs on this machine (at most "
                      f"{AUTO_MAX_THREADS}), re-divided at each report as runs start and end, so runs side by side "
                      "do not oversubscribe the cores (OpenMP's spinning threads slowed two 2-thread runs on 2 cores "
                      "13x); within that share a CPU run whose update is not compiled trains on 1 thread or on the "
                      "share, whichever it measures faster, re-measured every 2,000 updates and when the chosen count "
                      "slows down (runs of 2,000 updates or more). N > 0: N, never changed (for runs that must "
                      "repeat bit for bit: torch does not promise the same floats on every thread count). "
                      "Process-wide.", group="performance")

    # --- population ---------------------------------------------------------------------------------------
    num_seeds: int = _f(1, "Population size K: members with seeds seed + s*num_envs (s = 0..K-1: no two members "
                        "share an env seed), each with its own --num-envs envs, exploration noise, replay buffer, "
                        "networks and optimizer state, trained by one stacked update. A member's seed sets its env "
                        "seeds and initial weights as a single run's does; members with the same seed at different "
                        "--grid points also share their random actions, noise and replay draws (a paired "
                        "comparison). --total-steps, --start-steps, --update-after, --log-every and the replay ratio "
                        "count env steps per member.", group="population")
    grid: tuple[str, ...] = _f((), "Per-member hyperparameters, NAME=V1,V2,... (repeatable; several grids multiply): "
                               f"members = grid points x seeds. NAME is one of {', '.join(GRID_FIELDS)}. Fields that "
                               "change shapes (network sizes, batch size, num_envs, algo, env) cannot vary within "
                               "one population: vary them across runs with fastddpg sweep --grid.", group="population")

    # --- run ------------------------------------------------------------------------------------------------
    run_dir: str = _f("", "Run directory to write: config.json, the CSVs at every report, checkpoints, final "
                      "weights, summary.json, report.html. 'auto' = runs/<env>__<algo>__<seed>__<timestamp>. "
                      "`fastddpg run` always writes one ('auto' unless given); from Python, train() writes one "
                      "only when this is set.", group="run")
    log_every: int = _f(1_000, "Env steps between metric pulls to the host (console, CSV rows); metrics stay "
                        "on the device in between.", group="run")
    quiet: bool = _f(False, "Print only the final summary.", group="run")
    checkpoint_every: int = _f(0, "Env steps between checkpoints in RUN_DIR/checkpoints (written atomically; one "
                               "is always written at the end, and on Ctrl-C/SIGTERM). 0 = auto: a quarter of "
                               "--total-steps, rounded up to whole --log-every intervals.", group="run")
    tensorboard: bool = _f(False, "Also write TensorBoard event files to RUN_DIR/tensorboard (episode returns, the "
                           "update metrics, steps/s; the config as hparams). Needs pip install "
                           "'fastddpg[tensorboard]'.", group="run")
    keep_checkpoints: int = _f(3, "Checkpoints to keep (the newest); older ones are deleted.", group="run")

    # --- evaluation during training ---------------------------------------------------------------------------
    eval_every: int = _f(0, "Env steps (per member, like --log-every) between noise-free evaluations of the current "
                         "actor (a = mu(s)) on envs of their own, seeded seed + 10000 + i at every evaluation (every "
                         "member on the same episodes). Rows go to RUN_DIR/eval.csv (kind periodic; one final "
                         "evaluation at the end), the best actor so far to RUN_DIR/best_actor.pt and best.json. "
                         "0 = off.", group="evaluation")
    eval_episodes: int = _f(10, "Episodes per evaluation (--eval-every).", group="evaluation")

    # --- the record of per-algorithm defaults (no flags; kept in config.json, see _resolve_algorithm_defaults) ---
    # (compare=False: two Configs with the same settings are equal however they were given)
    user_set: tuple[str, ...] = field(default=(), compare=False, metadata={
        "help": "The per-algorithm-defaulted fields the user gave; the others hold the defaults of --algo "
                "defaults_of.", "group": RECORD_GROUP})
    defaults_of: str = field(default="", compare=False, metadata={
        "help": "The algorithm whose defaults the per-algorithm-defaulted fields not in user_set hold ('' in "
                "configs saved before the record: every value counts as given).", "group": RECORD_GROUP})

    def was_given(self, name: str) -> bool:
        """Whether field ``name`` was passed when this Config was made (a flag, a config file's key,
        ``Config(name=...)``), not left at its default."""
        return name in self.__dict__.get("_given", frozenset({name}))

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            setattr(self, f.name, typed_value(f.name, getattr(self, f.name)))
        self._resolve_algorithm_defaults()
        self.validate()

    # --- per-algorithm defaults ---------------------------------------------------------------------------------
    def _resolve_algorithm_defaults(self) -> None:
        """Give every field that some algorithm defaults differently (`fastddpg.core.registry.AlgoSpec.defaults`)
        this ``algo``'s default, unless the user gave it; then record which ones the user gave (``user_set``) and
        whose defaults the others are (``defaults_of``).

        Given means passed to the constructor (a flag, a config file, a keyword, a ``from_dict`` key) and not a
        carried-over default: `dataclasses.replace` and ``from_dict({**cfg.to_dict(), ...})`` pass every field
        again, so a value counts as a carried-over default when the record says so (not in ``user_set``, and
        equal to the default of ``defaults_of``, the algorithm it was resolved under). Such a value follows the
        algorithm: ``from_dict({**sac_cfg.to_dict(), "algo": "ddpg"})`` gets DDPG's learning rates unless the user
        had set them, while anything changed along the way (a --grid point, an override) is kept. A config saved
        before the record (``defaults_of`` '') loads with every value as given, exactly as it was; so does a
        config whose algorithm's defaults changed since (its values differ from the new defaults: kept)."""
        given = self.__dict__.get("_given")  # kept: `was_given` reads it too
        previous = ALGORITHMS.get(self.defaults_of) if self.defaults_of else None
        user = set()
        for name in sorted(algorithm_defaulted()):
            value = getattr(self, name)
            carried = (previous is not None and name not in self.user_set
                       and value == algorithm_default(previous.name, name))
            if (given is not None and name not in given) or carried:
                setattr(self, name, algorithm_default(self.algo, name))
            else:
                user.add(name)
        self.user_set, self.defaults_of = tuple(sorted(user)), self.algo

    # --- validation -----------------------------------------------------------------------------------------
    def validate(self) -> None:
        """Reject values outside their allowed range with a message naming the field (raises ConfigError)."""

        def need(ok: bool, name: str, allowed: str) -> None:
            if not ok:
                flag = "--" + name.replace("_", "-")
                raise ConfigError(f"{flag}={getattr(self, name)!r} is invalid: {allowed}.")

        for f in dataclasses.fields(self):
            choices = algo_names() if f.name == "algo" else f.metadata.get("choices")  # algorithms: the live list
            if choices is not None:
                need(getattr(self, f.name) in choices, f.name, "choose one of " + ", ".join(choices))
        spec = ALGORITHMS[self.algo]
        for name in spec.refuses:  # a field this algorithm would ignore, set by the user
            need(getattr(self, name) == algorithm_default(self.algo, name), name,
                 f"--algo {self.algo} {spec.why}; leave {flag_of(name)} out")
        need(bool(self.env), "env", "give a Gymnasium id such as Pendulum-v1")
        need(self.env_backend != "torch" or self.env in TORCH_ENV_IDS, "env_backend",
             f"the torch backend implements {', '.join(TORCH_ENV_IDS)} only, not {self.env}; "
             "use --env-backend gymnasium")
        need(self.env_backend != "numpy" or self.env in NUMPY_ENV_IDS, "env_backend",
             f"the numpy backend implements {', '.join(NUMPY_ENV_IDS)} only, not {self.env}; "
             "use --env-backend gymnasium")
        need(self.num_envs >= 1, "num_envs", "use 1 or more environments")
        need(self.total_steps >= 1, "total_steps", "train for at least 1 env step")
        need(self.replay_size >= 1, "replay_size", "the replay buffer needs at least 1 slot")
        need(self.batch_size >= 1, "batch_size", "use a batch of at least 1")
        need(self.batch_size <= self.replay_size, "batch_size",
             f"a batch cannot be larger than the replay buffer ({self.replay_size}); lower --batch-size or "
             "raise --replay-size")
        need(_finite(self.gamma) and 0.0 <= self.gamma <= 1.0, "gamma", "the discount must lie in [0, 1]")
        need(_finite(self.tau) and 0.0 < self.tau <= 1.0, "tau", "the soft update rate must lie in (0, 1]")
        need(_finite(self.actor_lr) and self.actor_lr > 0, "actor_lr", "use a positive learning rate")
        need(_finite(self.critic_lr) and self.critic_lr > 0, "critic_lr", "use a positive learning rate")
        need(self.start_steps >= 0, "start_steps", "use 0 or more steps")
        need(self.update_after >= 0, "update_after", "use 0 or more steps")
        need(_finite(self.updates_per_step) and self.updates_per_step >= 0, "updates_per_step",
             "use 0 or more updates per transition")
        need(_finite(self.noise_sigma) and self.noise_sigma >= 0, "noise_sigma", "use a std of 0 or more")
        need(len(self.hidden_sizes) >= 1 and all(h >= 1 for h in self.hidden_sizes), "hidden_sizes",
             "give one or more positive layer widths, e.g. 256 256")
        need(_finite(self.grad_clip_norm) and self.grad_clip_norm >= 0, "grad_clip_norm",
             "use 0 (off) or a positive norm")
        need(self.probe_n >= 1, "probe_n", "use at least 1 probe state")
        need(self.probe_every_episodes >= 1, "probe_every_episodes", "use at least 1 episode")
        need(self.log_every >= 1, "log_every", "use at least 1 env step")
        need(self.threads >= 0, "threads", "use 0 (auto: a share of the cores) or a positive count")
        need(self.checkpoint_every >= 0, "checkpoint_every", "use 0 (auto) or a positive number of env steps")
        need(self.keep_checkpoints >= 1, "keep_checkpoints", "keep at least 1 checkpoint")
        need(self.eval_every >= 0, "eval_every", "use 0 (off) or a positive number of env steps")
        need(self.eval_episodes >= 1, "eval_episodes", "evaluate at least 1 episode")
        need(_finite(self.ou_theta) and self.ou_theta > 0, "ou_theta", "use a positive mean-reversion rate")
        need(_finite(self.ou_dt) and self.ou_dt > 0, "ou_dt", "use a positive time step")
        need(_finite(self.ou_theta) and _finite(self.ou_dt) and self.ou_theta * self.ou_dt < 2, "ou_theta",
             "theta * dt must stay below 2 or the OU recursion diverges; lower --ou-theta or --ou-dt")
        for _, h in hyper_fields():
            value = getattr(self, h.name)
            need(_finite(value) and value >= h.minimum and (h.maximum is None or value <= h.maximum), h.name, h.fix)
        need(0 <= self.seed <= MAX_SEED, "seed", f"use a seed from 0 to {MAX_SEED} (numpy's global seed's range)")
        need(self.num_seeds >= 1, "num_seeds", "use 1 (a single agent) or more members")
        span = (self.num_seeds - 1) * self.num_envs  # the last member's seed is seed + span (member_configs)
        need(self.seed + span <= MAX_SEED, "seed", f"the members of --num-seeds {self.num_seeds} are seeded up to "
             f"--seed + {span:,}; use a seed from 0 to {MAX_SEED - span}")
        analytic_algos = ", ".join(name for name, a in ALGORITHMS.items() if a.hand_derived)
        need(self.compile != "analytic" or spec.hand_derived, "compile",
             f"--algo {self.algo} has no hand-derived update (only {analytic_algos}); use --compile auto or default")
        need(self.compile != "analytic" or not self.layer_norm, "compile",
             "the hand-derived update has no LayerNorm; leave out --layer-norm or use --compile auto or default")
        for name in parse_grid(self.grid, population_grid_scope()):  # a malformed or refused --grid: ConfigError
            if not uses(self.algo, name):
                raise ConfigError(f"--grid {name} is invalid: --algo {self.algo} does not use {flag_of(name)}, so "
                                  "its grid points would train the same members; leave it out of --grid.")
        if self.grid:  # the rest of the config is valid: what fails now is a --grid value
            try:
                for member in self.member_configs():  # (each member's Config validates itself)
                    member.validate()
            except ConfigError as e:  # the line `fastddpg sweep --grid` gives for the same value
                raise ConfigError(f"--grid: {e}") from None
        need(self.compile != "analytic" or self.num_members == 1, "compile",
             "the hand-derived update trains one agent, not a population (--num-seeds, --grid); use --compile auto "
             "or default")

    # --- populations --------------------------------------------------------------------------------------------
    def grid_points(self) -> list[dict[str, float]]:
        """The --grid's points, in order (the last NAME varies fastest); [{}] without a grid."""
        import itertools

        axes = parse_grid(self.grid, population_grid_scope())
        return [dict(zip(axes, point, strict=True)) for point in itertools.product(*axes.values())]

    def grid_members(self) -> dict[str, list[int]]:
        """{grid point label ('actor_lr=0.001, tau=0.01'; 'all members' without a grid): its members}. Values are
        `format_hyper`'s, or in full where two points would otherwise share a label."""
        points = self.grid_points()
        labels = [", ".join(f"{n}={format_hyper(v)}" for n, v in point.items()) for point in points]
        if len(set(labels)) < len(labels):
            labels = [", ".join(f"{n}={v!r}" for n, v in point.items()) for point in points]
        return {label or "all members": list(range(g * self.num_seeds, (g + 1) * self.num_seeds))
                for g, label in enumerate(labels)}

    @property
    def num_members(self) -> int:
        """Population size: grid points x num_seeds (1: a single run)."""
        return len(self.grid_points()) * self.num_seeds

    def member_configs(self) -> list[Config]:
        """The single-agent Config of each population member, grid point major: member g * num_seeds + s has grid
        point g's values and seed ``seed + s * num_envs``, so every grid point sees the same seeds, and the envs of
        two different seeds (env j of a member is seeded with its seed + j, as in a single run) never overlap."""
        return [dataclasses.replace(self, **point, seed=self.seed + s * self.num_envs, num_seeds=1, grid=())
                for point in self.grid_points() for s in range(self.num_seeds)]

    @property
    def replay_ratio(self) -> fractions.Fraction:
        """``updates_per_step`` as the exact fraction it stands for (a float 1/3 is 1/3; 1/N for any N up to 10^9),
        so that the updates owed, accumulated per vector step, add up to whole updates exactly when they should."""
        return fractions.Fraction(self.updates_per_step).limit_denominator(10**9)

    def planned_updates(self) -> int:
        """The gradient updates a run (each member of a population) makes, exactly as the trainer's loop makes
        them: after each vector step of num_envs env steps from the first whose steps taken reach both
        update_after and batch_size, num_envs x the replay ratio of them, fractions carried."""
        n = self.num_envs
        first = max(1, math.ceil(max(self.update_after, self.batch_size) / n))  # the first vector step with updates
        return int(max(0, math.ceil(self.total_steps / n) - first + 1) * n * self.replay_ratio)

    # --- runs that learn nothing --------------------------------------------------------------------------------
    def idle_warnings(self) -> list[str]:
        """One line per way this config wastes its run, naming the setting that causes it: no gradient update at
        all (--update-after, --batch-size or --updates-per-step against --total-steps), or only uniform random
        actions (--start-steps). Exact for the trainer's loop: vector steps of num_envs env steps (per member),
        random actions while the steps taken are below start_steps, updates after a vector step once the steps
        taken reach both update_after and batch_size, updates_per_step of them per env step (fractions carried)."""
        n = self.num_envs
        last = math.ceil(self.total_steps / n) * n  # env steps when the run ends (whole vector steps)
        total = f"--total-steps {self.total_steps:,}" + (f" ({last:,} in whole vector steps of {n})"
                                                         if last != self.total_steps else "")
        out = []
        if self.planned_updates() == 0:
            if self.update_after >= self.batch_size and last < self.update_after:
                why, fix = f"--update-after {self.update_after:,} is beyond {total}", "lower --update-after"
            elif last < self.batch_size:
                why = f"--batch-size {self.batch_size:,} needs more transitions than {total} collects"
                fix = "lower --batch-size"
            else:
                why = f"--updates-per-step {self.updates_per_step:g} is too small for {total}"
                fix = "raise --updates-per-step"
            out.append(f"no gradient update will happen: {why}; the networks stay as initialised. Raise "
                       f"--total-steps or {fix}.")
        if last - n < self.start_steps:  # the last vector step starts below start_steps
            out.append(f"only uniform random actions will be taken: --start-steps {self.start_steps:,} covers all "
                       f"of {total}; the actor never acts. Raise --total-steps or lower --start-steps.")
        return out

    # --- (de)serialisation ----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field (tuples become lists)."""
        d = dataclasses.asdict(self)
        d["hidden_sizes"] = list(self.hidden_sizes)
        d["grid"] = list(self.grid)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Config:
        """Inverse of `to_dict`; unknown keys are rejected so that a typo never passes silently."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown config keys {unknown}; known keys are the fields of fastddpg.Config")
        return cls(**d)

    @classmethod
    def merged(cls, base: Config | dict[str, Any], changes: dict[str, Any]) -> Config:
        """``base`` (a Config or its `to_dict`) with ``changes`` applied, every key of ``changes`` counting as
        given: a flag over a config file, a sweep's point over its base, ``train(cfg, **overrides)``. Unlike
        ``from_dict({**base, **changes})``, where a changed value that happens to equal the old algorithm's
        default reads as carried over and follows a new ``algo`` (`_resolve_algorithm_defaults`), a changed
        value is always kept: ``merged(sac_cfg, {"algo": "ddpg", "actor_lr": 3e-4})`` trains DDPG at 3e-4."""
        values = base.to_dict() if isinstance(base, Config) else dict(base)
        given = set(values.get("user_set", ())) | (set(changes) & algorithm_defaulted())
        return cls.from_dict({**values, **changes, "user_set": tuple(sorted(given))})


_FIELD_NAMES = frozenset(f.name for f in dataclasses.fields(Config))
_FIELD_DEFAULTS = {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
                   for f in dataclasses.fields(Config)}
RECORD_FIELDS = tuple(f.name for f in dataclasses.fields(Config) if f.metadata["group"] == RECORD_GROUP)


def _init_recording_given(init: Callable[..., None]) -> Callable[..., None]:
    """Config's generated ``__init__``, which first notes the names of the fields passed (for
    `Config._resolve_algorithm_defaults`: a field not passed takes its algorithm's default)."""
    names = [f.name for f in dataclasses.fields(Config)]

    @functools.wraps(init)
    def __init__(self: Config, *args: Any, **kwargs: Any) -> None:
        self.__dict__["_given"] = frozenset(names[:len(args)]) | frozenset(kwargs)
        init(self, *args, **kwargs)

    return __init__


Config.__init__ = _init_recording_given(Config.__init__)  # type: ignore[method-assign]


def algorithm_default(algo: str, name: str) -> Any:
    """Field ``name``'s default with ``--algo algo``: the algorithm's own (`AlgoSpec.defaults`), else the field's."""
    spec = ALGORITHMS.get(algo)
    value = spec.defaults.get(name, _FIELD_DEFAULTS[name]) if spec is not None else _FIELD_DEFAULTS[name]
    return tuple(value) if isinstance(value, list) else value


def algorithm_defaults_help(name: str) -> str:
    """'; --algo sac: 0.0003, --algo crossq: 256' for a field some algorithms default differently ('' if none):
    the per-algorithm defaults ``--help`` shows beside the field's own."""
    shown = [f"--algo {spec.name}: {format_hyper(spec.defaults[name])}" for spec in ALGORITHMS.values()
             if name in spec.defaults]
    return "; " + ", ".join(shown) if shown else ""


# --- --grid: one parser for `fastddpg run --grid` (members of one population) and `fastddpg sweep --grid` (trials) ----
@functools.cache
def field_types() -> dict[str, type]:
    """Each Config field's type, as its default's (tuple for hidden_sizes and grid); read from the fields, not from
    a Config(), whose validation parses the grid."""
    return {f.name: type(f.default if f.default is not dataclasses.MISSING else f.default_factory())
            for f in dataclasses.fields(Config)}


def typed_value(name: str, value: Any) -> Any:
    """``value`` as Config field ``name``'s type (`coerce_field`), else a one-line ConfigError naming the flag:
    ``Config(layer_norm="false")`` would otherwise build a LayerNorm (a non-empty string is true), and a float step
    count would save a config.json that ``--config`` refuses."""
    value, want = coerce_field(name, value)
    if want:
        raise ConfigError(f"{flag_of(name)}={value!r} has the wrong type: give {want}.")
    return value


def coerce_field(name: str, value: Any) -> tuple[Any, str]:
    """(``value`` as Config field ``name``'s type, '') where it is one, else (``value``, what to give instead). The
    type is the default's: a bool for a bool field; an int for an int field (an integral float such as ``1e5``
    too); a float for a float field (any real number); a tuple of ints for ``hidden_sizes``; a tuple of strings for
    ``grid`` and ``user_set`` (a lone string is one entry); else a string. numpy's scalars count as Python's."""
    kind = field_types()[name]
    boolean = isinstance(value, bool) or (type(value).__module__ == "numpy" and type(value).__name__ in ("bool",
                                                                                                     "bool_"))
    number = isinstance(value, numbers.Real) and not boolean
    if kind is bool:
        ok, want = boolean, "true or false"
    elif kind is int:
        ok = number and (isinstance(value, numbers.Integral) or (math.isfinite(value) and float(value).is_integer()))
        want = "a whole number"
    elif kind is float:
        ok, want = number, "a number"
    elif kind is tuple:
        items = (value,) if isinstance(value, str) else value
        if name == "hidden_sizes":
            want = "a list of whole numbers, e.g. [256, 256]"
            ok = isinstance(items, (list, tuple)) and all(
                isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in items)
            return (tuple(int(v) for v in items), "") if ok else (value, want)
        want = 'a list of strings, e.g. ["actor_lr=1e-3,3e-4"]'
        ok = isinstance(items, (list, tuple)) and all(isinstance(v, str) for v in items)
        return (tuple(items), "") if ok else (value, want)
    else:
        ok, want = isinstance(value, str), "a string"
    return (kind(value), "") if ok else (value, want)


def flag_of(name: str) -> str:
    """A Config field's command-line flag: actor_lr -> --actor-lr."""
    return "--" + name.replace("_", "-")


def parse_field_value(name: str, text: str) -> Any:
    """One value of field ``name`` from its command-line text ('64x64' for hidden_sizes; true/false/1/0/yes/no for
    a bool); a ConfigError line for text that is not of the field's type."""
    kind = field_types()[name]
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
        raise ConfigError(f"{flag_of(name)}={text!r} is not a valid {kind.__name__} value.") from None


@dataclass(frozen=True)
class GridScope:
    """Which Config fields a --grid may vary (``fields``); ``choose``: what to do about a NAME that is no field;
    ``refusal(name)``: the line refusing a field outside ``fields``. The syntax is the same in every scope."""

    fields: Collection[str]
    choose: str
    refusal: Callable[[str], str]


def population_grid_scope() -> GridScope:
    """``fastddpg run --grid``: the per-member hyperparameters (`GRID_FIELDS`) of one population."""
    def refusal(name: str) -> str:
        hint = ("give --num-seeds K for K seeds in one population" if name == "seed" else
                f"vary it across runs with fastddpg sweep --grid {name}=V1,V2")
        return (f"--grid {name} is refused: only {', '.join(GRID_FIELDS)} can vary within one population; "
                f"{hint}.")

    return GridScope(GRID_FIELDS, f"choose one of {', '.join(GRID_FIELDS)}", refusal)


def parse_grid(entries: Iterable[str], scope: GridScope) -> dict[str, list[Any]]:
    """``NAME=V1,V2,...`` entries -> {name: [values]}, in order, each value of the field's type
    (`parse_field_value`). An int field also takes ``NAME=A..B`` (both ends included); a tuple field
    (hidden_sizes) takes ``64x64,256x256`` (or one tuple as ``64,64``). A NAME may be written with - or _, and
    given once. Every malformed or refused entry is a one-line ConfigError; the values' ranges are checked by
    the caller (`Config.validate`), which knows the rest of the config."""
    types = field_types()
    grid: dict[str, list[Any]] = {}
    for entry in entries:
        name, sep, values = str(entry).partition("=")
        name = name.strip().replace("-", "_")
        texts = [v.strip() for v in values.split(",")]
        if not sep or not name or not all(texts):
            raise ConfigError(f"--grid {entry!r} is invalid: write NAME=V1,V2,... e.g. --grid actor_lr=1e-3,3e-4 "
                              "(an int field also takes A..B, both ends included).")
        if name not in types:
            raise ConfigError(f"--grid {name} is invalid: not a field; {scope.choose}.")
        if name not in scope.fields:
            raise ConfigError(scope.refusal(name))
        if name in grid:
            raise ConfigError(f"--grid {name} is given twice; give all its values in one --grid.")
        kind = types[name]
        value = functools.partial(_grid_value, entry, name)
        if kind is int and ".." in values:
            lo, _, hi = values.partition("..")
            grid[name] = list(range(value(lo), value(hi) + 1))
            if not grid[name]:
                raise ConfigError(f"--grid {entry!r} is invalid: the range A..B needs A <= B.")
        elif kind is tuple and "x" not in values:
            grid[name] = [value(values)]
        else:
            grid[name] = [value(v) for v in texts]
        repeated = sorted({repr(v) for v in grid[name] if grid[name].count(v) > 1})
        if repeated:  # two members of one grid point under one label: the report would merge them
            raise ConfigError(f"--grid {entry!r} is invalid: {', '.join(repeated)} is given more than once; give "
                              "each value once (--num-seeds repeats a point over seeds).")
    return grid


def _grid_value(entry: str, name: str, text: str) -> Any:
    """One value of a --grid entry (`parse_field_value`), with the entry's own line where it is not one."""
    try:
        return parse_field_value(name, text)
    except ConfigError:  # its line names the flag; here the value is the --grid entry's
        want = {int: "a whole number", float: "a number", bool: "true or false",
                tuple: "layer sizes such as 64x64"}.get(field_types()[name], "a value")
        raise ConfigError(f"--grid {entry!r} is invalid: {text.strip()!r} is not {want}; write NAME=V1,V2,... with "
                          "the values separated by commas.") from None


def check_member(member: int, members: int) -> None:
    """ConfigError unless ``member`` names one of a run's ``members`` members (0 .. members - 1)."""
    if not 0 <= member < members:
        raise ConfigError(f"--member={member} is invalid: this run has {members} member(s), 0 to {members - 1}.")


WHICH = ("final", "best")  # which weights of a run: the last ones, or the best periodic evaluation's (--eval-every)
NO_BEST_HINT = "run with --eval-every N to keep the best model, or use --which final"


def check_which(which: str) -> None:
    """ConfigError unless ``which`` is one of `WHICH`."""
    if which not in WHICH:
        raise ConfigError(f"--which={which!r} is invalid: choose final (the last weights) or best (those of the "
                          "best evaluation during training).")


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda when available, else cpu; a CUDA device without CUDA is a ConfigError."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"--device={name!r} is not a torch device; use auto, cpu, cuda or cuda:N.") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"--device={name} but CUDA is not available here (torch {torch.__version__}); "
                              "use --device cpu or --device auto.")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"--device={name} but only {torch.cuda.device_count()} CUDA device(s) exist.")
    elif device.type != "cpu":
        raise ConfigError(f"--device={name!r} is not supported; use auto, cpu, cuda or cuda:N.")
    return device


def select_device(name: str) -> torch.device:
    """`resolve_device`, and for a CUDA device also this process's current CUDA device: a CUDA graph is captured,
    and inductor's kernels and a graph's replay launched, on the current device's streams, so that on cuda:1 with
    device 0 current the captured update graph would be empty (every update silently doing nothing). A run and
    `fastddpg verify` use one device each."""
    import torch

    device = resolve_device(name)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def _finite(x: float) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)
