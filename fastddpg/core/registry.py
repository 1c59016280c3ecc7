"""The one list of algorithms, readable without torch: their names, where each is defined, and the hyperparameters
each adds to `fastddpg.Config`.

An entry (`AlgoSpec`) names the ``--algo`` value, the module and class of the algorithm (a subclass of
`fastddpg.algos.base.Algorithm` in a file of its own under ``fastddpg/algos/``, imported only when a run needs it),
one line for ``--algo``'s help, and its own hyperparameters (`HyperField`): each becomes a Config field, and so a
flag in ``fastddpg run --help`` (in a group of its own), a key of the saved config.json and of config files, a line
of `Config.validate`, and (``per_member=True``) a ``--grid`` field. Everything that lists algorithms derives from
`ALGORITHMS`: Config's ``--algo`` choices and ``--grid`` fields, ``fastddpg verify --algo``, and
`fastddpg.algos.algorithm_class`.

Why here, in layer 0 and not in the algorithm's file: ``--help`` (and Config, which builds the flags) must not
import torch, and an algorithm's file does (it is networks and an update). So the registry holds what the CLI
and the config need, as plain data, and names the module that holds the rest.

Adding an algorithm: one file ``fastddpg/algos/NAME.py`` and one `AlgoSpec` entry in `ALGORITHMS`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Every algorithm's update metrics start with these four (the report's and the console's core: loss curves, Q and
# its target); an algorithm may add more after them (TD3's q1_mean, ...), which the report shows as they come.
CORE_METRICS = ("critic_loss", "actor_loss", "q_mean", "y_mean")

# --grid fields every algorithm has: the scalars the update and exploration take, (K,) tensors in a population
COMMON_GRID_FIELDS = ("actor_lr", "critic_lr", "tau", "gamma", "noise_sigma", "grad_clip_norm")


@dataclass(frozen=True)
class HyperField:
    """One hyperparameter an algorithm adds to Config: ``name`` (the field; the flag is ``--name-with-dashes``), its
    default (its type is the default's: int or float), help text, the smallest and largest valid values
    (``minimum``, ``maximum``: None for no bound above), with ``fix`` the one-line advice `Config.validate` gives
    outside them, and whether it may differ between the members of a population (``per_member``: a ``--grid``
    field; the update then gets it as a (K,) tensor)."""

    name: str
    default: float | int
    help: str
    minimum: float
    fix: str
    per_member: bool = False
    maximum: float | None = None


@dataclass(frozen=True)
class AlgoSpec:
    """A registered algorithm: ``--algo name``, the ``module:Class`` that implements it, its ``--algo`` help line,
    the title of its Config group (the fields below, under that title in ``--help`` and as a TOML table), and its
    own hyperparameters.

    ``refuses``: shared Config fields the algorithm has no use for (a stochastic policy: the exploration noise
    options of a deterministic actor). `Config.validate` refuses one set to anything but its default with one line
    saying ``why`` (a flag that would be silently ignored is bad input).

    ``hand_derived``: the algorithm has an update with hand-derived gradients (``--compile analytic``,
    `Algorithm.analytic_update_fns`) for one agent without LayerNorm.

    ``defaults``: Config fields (shared ones such as ``actor_lr``, or another algorithm's, such as TD3's
    ``policy_delay``) whose default differs for this algorithm, {field: value}. A Config with this ``--algo`` takes
    them for every such field the user did not give (flag, config file, keyword); ``--help`` lists them beside each
    field's default (see `fastddpg.core.config.Config`, "per-algorithm defaults").

    ``borrows``: other algorithms' hyperparameters this one uses too (CrossQ: SAC's ``init_alpha``, TD3's
    ``policy_delay``); the others it does not use (`uses`)."""

    name: str
    target: str  # "module:Class", e.g. "fastddpg.algos.td3:TD3"
    summary: str
    title: str = ""
    hyper: tuple[HyperField, ...] = ()
    refuses: tuple[str, ...] = ()
    why: str = ""
    defaults: Mapping[str, Any] = field(default_factory=dict)
    hand_derived: bool = False
    borrows: tuple[str, ...] = ()


ALGORITHMS: dict[str, AlgoSpec] = {spec.name: spec for spec in (
    AlgoSpec("ddpg", "fastddpg.algos.ddpg:DDPG", "the notebook's", hand_derived=True),
    AlgoSpec("td3", "fastddpg.algos.td3:TD3", "twin critics with the min in the target, target policy smoothing, "
             "delayed actor and target updates; see --policy-noise, --noise-clip, --policy-delay", "TD3", (
                 HyperField("policy_noise", 0.2, "TD3 target policy smoothing: std of the noise added to mu'(s') in "
                            "the target, in units of the action scale (high - low) / 2.", 0.0, "use a std of 0 or more",
                            per_member=True),
                 HyperField("noise_clip", 0.5, "TD3: the smoothing noise is clipped to +-noise_clip, in units of the "
                            "action scale (high - low) / 2.", 0.0, "use a clip of 0 or more", per_member=True),
                 HyperField("policy_delay", 2, "TD3: one actor step and soft target update every this many critic "
                            "updates.", 1, "use 1 (actor step every critic update) or more")), hand_derived=True),
    AlgoSpec("sac", "fastddpg.algos.sac:SAC", "soft actor-critic: a tanh-squashed Gaussian policy that explores by "
             "sampling itself, twin critics, an entropy temperature learned toward -|A|; see --init-alpha", "SAC", (
                 HyperField("init_alpha", 1.0, "SAC: the entropy temperature alpha's initial value; alpha is then "
                            "learned toward the target entropy -|A| by its own Adam at --critic-lr "
                            "(Stable-Baselines3's ent_coef='auto').", 1e-8, "use a positive temperature",
                            per_member=True),),
             refuses=("noise", "noise_sigma", "ou_theta", "ou_dt"),
             why="explores by sampling its own Gaussian policy and adds no exploration noise",
             # Stable-Baselines3's SAC: learning_rate 3e-4 (all three optimizers), batch_size 256, buffer_size 1e6,
             # learning_starts 100 (uniform random actions and no update before it), no gradient clipping; tau
             # 0.005, gamma 0.99, net_arch [256, 256] and train_freq 1 / gradient_steps 1 are the shared defaults
             defaults={"actor_lr": 3e-4, "critic_lr": 3e-4, "batch_size": 256, "replay_size": 1_000_000,
                       "start_steps": 100, "update_after": 100, "grad_clip_norm": 0.0}),
    AlgoSpec("crossq", "fastddpg.algos.crossq:CrossQ", "SAC's actor and temperature without target networks, "
             "BatchRenorm in actor and critics, one joint critic forward over (s, a) and (s', a'); see "
             "--critic-width, --renorm-momentum, --renorm-warmup, --policy-delay", "CrossQ", (
                 HyperField("critic_width", 1024, "CrossQ: the width of each of the critics' hidden layers (they have "
                            "as many as --hidden-sizes, the actor's); sb3-contrib's qf [1024, 1024] (the paper: "
                            "2048).", 1, "use a width of 1 or more"),
                 HyperField("renorm_momentum", 0.01, "CrossQ: BatchRenorm's running statistics move this fraction "
                            "toward each training batch's.", 1e-12, "use a momentum in (0, 1]", maximum=1.0),
                 HyperField("renorm_warmup", 100_000, "CrossQ: training forwards of each BatchRenorm layer that "
                            "normalise with the batch statistics alone, before renormalising toward the running "
                            "ones (sb3-contrib's renorm_warmup_steps).", 0, "use 0 or more forwards")),
             refuses=("noise", "noise_sigma", "ou_theta", "ou_dt", "tau", "layer_norm"),
             why="explores by sampling its own Gaussian policy (no exploration noise), has no target networks (no "
                 "--tau) and normalises with BatchRenorm (no --layer-norm)",
             # sb3-contrib's CrossQ: learning_rate 1e-3, batch_size 256, buffer_size 1e6, learning_starts 100,
             # policy_delay 3, no gradient clipping; gamma 0.99 and net_arch pi [256, 256] are the shared defaults
             defaults={"actor_lr": 1e-3, "critic_lr": 1e-3, "batch_size": 256, "replay_size": 1_000_000,
                       "start_steps": 100, "update_after": 100, "grad_clip_norm": 0.0, "policy_delay": 3},
             borrows=("init_alpha", "policy_delay")),
)}


def register(spec: AlgoSpec) -> None:
    """Add an algorithm at run time (a plugin, or a test's toy algorithm). Its own hyperparameters must be empty:
    Config's fields are fixed when it is defined, so an algorithm with new flags needs its entry in `ALGORITHMS`."""
    if spec.hyper:
        raise ValueError(f"{spec.name}: an algorithm registered at run time cannot add Config fields; "
                         "add its AlgoSpec to fastddpg.core.registry.ALGORITHMS")
    ALGORITHMS[spec.name] = spec


def algo_names() -> tuple[str, ...]:
    """The ``--algo`` choices, in registry order."""
    return tuple(ALGORITHMS)


def algorithm_defaulted() -> frozenset[str]:
    """The Config fields some algorithm gives a default of its own (`AlgoSpec.defaults`)."""
    return frozenset(name for spec in ALGORITHMS.values() for name in spec.defaults)


def hyper_fields() -> list[tuple[AlgoSpec, HyperField]]:
    """Every algorithm's own hyperparameters, in registry order, with the algorithm that declares each."""
    return [(spec, h) for spec in ALGORITHMS.values() for h in spec.hyper]


def uses(algo: str, name: str) -> bool:
    """Whether ``--algo algo`` uses Config field ``name``: every shared field, its own hyperparameters and those it
    borrows; not another algorithm's (DDPG has no policy smoothing: ``policy_noise`` changes nothing)."""
    spec = ALGORITHMS[algo]
    owned = {h.name for _, h in hyper_fields()}
    return name not in owned or name in {h.name for h in spec.hyper} or name in spec.borrows


def grid_fields() -> tuple[str, ...]:
    """The fields ``--grid`` may vary within one population: the common ones, then every algorithm's per-member
    hyperparameters."""
    return (*COMMON_GRID_FIELDS, *(h.name for _, h in hyper_fields() if h.per_member))


def algo_help() -> str:
    """``--algo``'s help text, one clause per algorithm."""
    names = [f"'{s.name}' ({s.summary})" for s in ALGORITHMS.values()]
    return "Algorithm: " + (", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0]) + "."
