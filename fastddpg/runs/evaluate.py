"""Noise-free evaluation: of a run's saved actor (``fastddpg eval RUN_DIR [--episodes 10] [--seed S]
[--which final|best]``), and of the training actor every ``--eval-every`` env steps (`PeriodicEvaluator`).

Each evaluation episode runs in its own copy of the env (all copies stepped together), seeded ``seed + i``,
with the deterministic action a = mu(s) (no exploration noise). Only the first episode of each copy counts.
Returns are written to ``RUN_DIR/eval.csv`` (appended, one row per episode; ``eval_time`` tells evaluations
apart, ``kind`` says what made them: periodic, final or manual, ``global_step`` the env step of the weights
evaluated, ``wall_time`` and ``eval_seconds`` the run's clock when a periodic or final one began), and ``mean +- std``
(population std, ddof=0) is printed.

A population run (K members) evaluates every member (or ``--member k``) on the same episodes (the same seeds):
its eval.csv starts with a member column. `evaluate_state` is the one evaluation of a set of actor weights:
``fastddpg eval``, the periodic evaluation and the sweep's ``eval_return`` all call it.

With ``--eval-every N`` the run keeps its best actor: ``RUN_DIR/best_actor.pt`` (the layout of actor.pt; of a
population, each member's rows are that member's best) and ``RUN_DIR/best.json`` (the env step and the mean
return at which each member was best), both written atomically whenever an evaluation improves on the best so
far, and the best-so-far (weights included) is part of every checkpoint, so a resumed run continues it.
"""

from __future__ import annotations

import csv
import datetime
import json
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch

from ..algos import policy_from_state_dict
from ..core.config import NO_BEST_HINT, Config, ConfigError, check_member, check_which, first_line
from ..core.fileio import atomic_save, atomic_write_text, write_json
from ..core.lazy import LazyModule
from ..core.schema import (
    ACTOR_FILE,
    BEST_ACTOR_FILE,
    BEST_FILE,
    EVAL_COLUMNS,
    EVAL_FILE,
    MEMBER,
    EvalRow,
    with_member,
)
from ..envs.vector import env_dims, make_env
from ..learning.networks import Actor
from .rundir import load_run, read_table, upgrade_evals

if TYPE_CHECKING:
    import pandas as pd
else:  # imported at first use (fastddpg.core.lazy): a run needs pandas and plotly only at its end
    pd = LazyModule("pandas")

EVAL_SEED_OFFSET = 10_000  # default eval seed = training seed + this, so eval starts differ from training's


@dataclass
class EvalResult:
    """returns, lengths: (episodes,) arrays; seed: episode i used seed + i."""

    returns: np.ndarray
    lengths: np.ndarray
    seed: int

    @property
    def mean(self) -> float:
        return float(np.mean(self.returns))

    @property
    def std(self) -> float:
        return float(np.std(self.returns))


MAX_EPISODE_STEPS = 100_000  # an evaluation (or video) episode longer than this has no time limit


@torch.no_grad()
def evaluate_actor(actor: torch.nn.Module, env_id: str, episodes: int = 10, seed: int = 0,
                   max_steps: int = MAX_EPISODE_STEPS, backend: str = "gymnasium") -> EvalResult:
    """Run ``episodes`` noise-free episodes of ``env_id`` with ``actor`` (obs (N, obs_dim) -> action (N, act_dim),
    on the CPU), one env per episode, through `make_env` (``backend`` as a run's ``--env-backend``). Raises
    ConfigError if an episode has not ended after ``max_steps`` steps."""
    env = make_env(env_id, episodes, torch.device("cpu"), "sync", backend)
    try:
        obs = env.reset(seed=seed)
        returns = torch.zeros(episodes, dtype=torch.float64)
        lengths = torch.zeros(episodes, dtype=torch.int64)
        active = torch.ones(episodes, dtype=torch.bool)
        for _ in range(max_steps):
            s = env.step(actor(obs))
            returns += s.reward.double() * active
            lengths += active.long()
            active &= ~(s.terminated.bool() | s.truncated.bool())
            obs = s.obs
            if not active.any():
                break
        else:
            raise ConfigError(f"evaluation episodes of {env_id} did not end within {max_steps} steps; the env "
                              "needs a time limit (gymnasium.wrappers.TimeLimit).")
    finally:
        env.close()
    return EvalResult(returns.numpy(), lengths.numpy(), seed)


def no_best_model(where: str | Path, what: str = BEST_ACTOR_FILE) -> ConfigError:
    """The one-line error for ``--which best`` where there is no best model."""
    return ConfigError(f"{where} has no {what}: the run did not evaluate during training; {NO_BEST_HINT}.")


def actor_file(run_dir: str | Path, run: Any, which: str = "final") -> Path:
    """The saved actor file of a loaded run (`load_run`): actor.pt, or with ``which="best"`` best_actor.pt; a
    one-line ConfigError when it is missing or the env's dimensions changed since the run was trained."""
    check_which(which)
    path = Path(run_dir) / (ACTOR_FILE if which == "final" else BEST_ACTOR_FILE)
    if not path.is_file():
        if which == "best":
            raise no_best_model(run_dir)
        raise ConfigError(f"{run_dir} has no {ACTOR_FILE}: the run did not finish; finish it with fastddpg run "
                          f"--resume {run_dir} (or take its latest checkpoint's policy: fastddpg export {run_dir}).")
    cfg = run.config
    dims = env_dims(cfg.env, cfg.env_backend)
    for key in ("obs_dim", "act_dim"):
        if key in run.meta and run.meta[key] != getattr(dims, key):
            raise ConfigError(f"{cfg.env} now has {key}={getattr(dims, key)} but the run was trained with "
                              f"{run.meta[key]}; evaluate with the env version it was trained on.")
    return path


def read_actor_file(path: Path, cfg: Config) -> dict[str, torch.Tensor]:
    """The actor state_dict in ``path`` (actor.pt, best_actor.pt) of a run with config ``cfg``; a file that is not
    one (truncated, corrupt, another format, another run's network) is a one-line ConfigError naming it."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict):
            raise TypeError(f"it holds a {type(state).__name__}, not a state_dict")
        policy_from_state_dict(state, cfg, 0)  # the shapes and names of this run's actor
    except Exception as e:  # torch.load's and load_state_dict's errors are RuntimeErrors, pickle's, EOFError...
        why = first_line(e) or type(e).__name__
        raise ConfigError(f"{path} is not this run's actor ({why}); it was replaced or damaged: take the policy of "
                          "a checkpoint with fastddpg export, or retrain.") from None
    return state


def load_actor(run_dir: str | Path, member: int = 0, which: str = "final") -> tuple[Actor, Config]:
    """The final actor of a run directory (``which="best"``: its best_actor.pt) on the CPU, in eval mode (of a
    population: member ``member``'s), and the run's Config."""
    run = load_run(run_dir)
    path = actor_file(run_dir, run, which)
    cfg = run.config
    check_member(member, cfg.num_members)
    return policy_from_state_dict(read_actor_file(path, cfg), cfg, member), cfg


def member_actors(actor_state: dict[str, torch.Tensor], cfg: Config,
                  members: Iterable[int] | None = None) -> dict[int, Actor]:
    """{member: its eval-mode CPU `Actor`} from a run's actor state_dict (a population's: stacked) for
    ``members`` (default: all of ``cfg``'s)."""
    k = cfg.num_members
    state = {name: t.detach().to("cpu") for name, t in actor_state.items()}
    return {m: policy_from_state_dict(state, cfg, m)
            for m in (range(k) if members is None else members)}


def evaluate_state(actor_state: dict[str, torch.Tensor], cfg: Config, episodes: int, seed: int | None = None,
                   members: Iterable[int] | None = None) -> dict[int, EvalResult]:
    """The evaluation of a run's actor weights (a state_dict as in actor.pt) in ``cfg``'s env: ``episodes``
    noise-free episodes per member, every member on the same seeds (default ``cfg.seed + EVAL_SEED_OFFSET``).
    ``fastddpg eval``, `PeriodicEvaluator` and the sweep's ``eval_return`` all evaluate through this."""
    seed = cfg.seed + EVAL_SEED_OFFSET if seed is None else seed
    return {m: evaluate_actor(actor, cfg.env, episodes, seed, backend=cfg.env_backend)
            for m, actor in member_actors(actor_state, cfg, members).items()}


def evaluate_run(run_dir: str | Path, episodes: int = 10, seed: int | None = None) -> EvalResult:
    """Evaluate a run's saved actor and append the episodes to ``run_dir/eval.csv`` (a population's: member 0;
    see `evaluate_members`)."""
    return evaluate_members(run_dir, episodes, seed, [0])[0]


def evaluate_members(run_dir: str | Path, episodes: int = 10, seed: int | None = None,
                     members: list[int] | None = None, which: str = "final") -> dict[int, EvalResult]:
    """Evaluate the saved actors (``which``: final, or best) of ``members`` (default: every member of the run) on
    the same episodes, and append them to ``run_dir/eval.csv`` (kind manual, at the env step of the weights).
    Returns {member: EvalResult}."""
    if episodes < 1:
        raise ConfigError(f"--episodes={episodes} is invalid: evaluate at least 1 episode.")
    check_which(which)
    run = load_run(run_dir)
    k = run.config.num_members
    members = list(range(k)) if members is None else members
    for m in members:
        check_member(m, k)
    state = read_actor_file(actor_file(run_dir, run, which), run.config)
    results = evaluate_state(state, run.config, episodes, seed, members)
    if which == "best":
        steps = [int(b["global_step"]) for b in read_best(run_dir)["members"]]
    else:
        steps = [int((run.summary or {}).get("env_steps", -1))] * k
    append_evals(run_dir, eval_rows(results, "manual", {m: steps[m] for m in results}), k)
    return results


def eval_rows(results: dict[int, EvalResult], kind: str, steps: dict[int, int], wall_time: float = math.nan,
              eval_seconds: float = math.nan) -> list[EvalRow]:
    """One evaluation (``results``: {member: EvalResult}, each member's weights from env step ``steps[member]``)
    as rows of eval.csv by name, tagged ``kind``, stamped now; ``wall_time`` and ``eval_seconds``: the run's clock
    when it began (`EvalRow`; NaN outside a run)."""
    stamp = datetime.datetime.now().astimezone().isoformat(timespec="milliseconds")
    return [EvalRow(m, stamp, kind, steps[m], r.seed, i, float(ret), int(n), wall_time, eval_seconds)
            for m, r in results.items() for i, (ret, n) in enumerate(zip(r.returns, r.lengths, strict=True))]


def append_evals(run_dir: str | Path, rows: list[EvalRow], members: int) -> Path:
    """Append `eval_rows` to ``run_dir/eval.csv`` (of a run with ``members`` members); a file written before the
    kind and global_step columns is first rewritten with them (`fastddpg.runs.rundir.upgrade_evals`)."""
    out = Path(run_dir) / EVAL_FILE
    columns = list(with_member(EVAL_COLUMNS, members))
    if out.exists():
        with open(out, newline="") as f:
            header = next(csv.reader(f), [])
        if header and header != columns:  # an older layout: rewrite it in this one (atomically)
            summary = load_run(run_dir).summary or {}
            old = upgrade_evals(read_table(run_dir, "eval"), int(summary.get("env_steps", -1)))
            atomic_write_text(out, old.to_csv(index=False, lineterminator="\r\n"))
    new = not out.exists()
    with open(out, "a", newline="") as f:
        w = csv.writer(f)
        if new:
            w.writerow(columns)
        w.writerows(r.values(members) for r in rows)
    return out


def read_best(run_dir: str | Path) -> dict[str, Any]:
    """A run's best.json (see `PeriodicEvaluator`); ConfigError when it has none."""
    path = Path(run_dir) / BEST_FILE
    if not path.is_file():
        raise no_best_model(run_dir, BEST_FILE)
    return json.loads(path.read_text())


# --- evaluation during training (--eval-every) ------------------------------------------------------------------

class Best(NamedTuple):
    """A member's best evaluation so far: the env step of its weights, the mean and std of the returns."""

    global_step: int
    return_: float
    std: float


@dataclass
class Evaluation:
    """One evaluation during training, as callbacks' ``on_eval(trainer, evaluation)`` see it: ``results``
    {member: EvalResult}, ``best`` each member's best so far (after this one), ``improved`` the members whose
    best this evaluation is, ``seconds`` its wall time."""

    kind: str
    global_step: int
    results: dict[int, EvalResult]
    best: list[Best]
    improved: list[int]
    seconds: float

    @property
    def mean(self) -> float:
        """The mean return (a population's: the mean over members of each member's mean)."""
        return float(np.mean([r.mean for r in self.results.values()]))

    @property
    def mean_length(self) -> float:
        return float(np.mean([r.lengths.mean() for r in self.results.values()]))


class PeriodicEvaluator:
    """Trainer callback of ``--eval-every N``: after the vector step that reaches each multiple of N env steps
    (per member), every member's current actor is evaluated by `evaluate_state` (``--eval-episodes`` noise-free
    episodes on envs of their own, seeded as ``fastddpg eval``: the same episodes every time), and once more at
    the end of a run that finishes (kind final) unless the last one was at that step.

    The rows go to eval.csv; a member whose mean return beats its best so far has its weights copied into
    best_actor.pt and best.json. Without a run directory nothing is written (`rows` holds the table). Callbacks
    with ``on_eval(trainer, evaluation)`` (the console, TensorBoard) are called with each `Evaluation`. The time
    goes to ``trainer.eval_seconds``, which the steps/s rates leave out. Its state (``state_key`` "eval": the
    evaluations so far, the best so far and its weights) rides in every checkpoint."""

    state_key = "eval"

    def __init__(self, cfg: Config, run_dir: str | Path | None = None) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.every, self.episodes = cfg.eval_every, cfg.eval_episodes
        self.members = cfg.num_members
        self.next = self.every
        self.last_step = -1  # the env step of the last evaluation
        self.evaluations = 0
        self.best: list[Best | None] = [None] * self.members
        self.best_actor: dict[str, torch.Tensor] | None = None  # CPU, actor.pt's layout
        self.rows: list[EvalRow] = []  # this process's evaluations

    # --- the trainer callback protocol ---------------------------------------------------------------------------
    def at_start(self, trainer: Any) -> None:
        self.next = (trainer.global_step // self.every + 1) * self.every

    def __call__(self, trainer: Any, report: Any) -> None:
        """Nothing at a report: evaluations follow env steps (`after_step`)."""

    def after_step(self, trainer: Any) -> None:
        if trainer.global_step >= self.next:
            self.evaluate(trainer, "periodic")
            self.next = (trainer.global_step // self.every + 1) * self.every

    def at_end(self, trainer: Any) -> None:
        if trainer.global_step >= trainer.cfg.total_steps and self.last_step != trainer.global_step:
            self.evaluate(trainer, "final")  # (not when a signal stopped the run: it stops at once)

    # --- one evaluation --------------------------------------------------------------------------------------------
    def evaluate(self, trainer: Any, kind: str) -> Evaluation:
        """Evaluate every member's current actor now, keep the best, write the files, tell the callbacks."""
        t0 = time.perf_counter()
        wall_time, eval_seconds = trainer.wall_time(), trainer.eval_seconds
        step = trainer.global_step
        state = {name: t.detach().to("cpu", copy=True) for name, t in trainer.algo.actor.state_dict().items()}
        results = evaluate_state(state, self.cfg, self.episodes)
        improved = [m for m, r in results.items() if _better(r.mean, self.best[m])]
        for m in improved:
            self.best[m] = Best(step, results[m].mean, results[m].std)
            self._keep_weights(state, m)
        rows = eval_rows(results, kind, dict.fromkeys(results, step), wall_time, eval_seconds)
        self.rows += rows
        if self.run_dir is not None:
            append_evals(self.run_dir, rows, self.members)
            if improved:
                self.write_best()
        self.last_step, self.evaluations = step, self.evaluations + 1
        seconds = time.perf_counter() - t0
        trainer.eval_seconds += seconds
        evaluation = Evaluation(kind, step, results, [b for b in self.best if b is not None], improved, seconds)
        for cb in trainer.callbacks:
            on_eval = getattr(cb, "on_eval", None)
            if on_eval is not None:
                on_eval(trainer, evaluation)
        return evaluation

    def _keep_weights(self, state: dict[str, torch.Tensor], m: int) -> None:
        """Member m's rows of ``state`` (a CPU copy; all of it for a single run) become its rows of the best
        weights."""
        if self.best_actor is None or self.members == 1:
            self.best_actor = {name: t.clone() for name, t in state.items()}
            return
        for name, single in member_actors(state, self.cfg, [m])[m].state_dict().items():
            t = state[name]
            if t.shape != single.shape:  # a stacked tensor: C rows per member (the action bounds have none)
                c = t.shape[0] // self.members
                self.best_actor[name][m * c:(m + 1) * c] = t[m * c:(m + 1) * c]

    def write_best(self) -> None:
        """best_actor.pt, then best.json, each atomically (or both removed when there is no best yet)."""
        assert self.run_dir is not None
        if self.best_actor is None:
            for name in (BEST_FILE, BEST_ACTOR_FILE):
                (self.run_dir / name).unlink(missing_ok=True)
            return
        atomic_save(self.best_actor, self.run_dir / BEST_ACTOR_FILE)
        write_json(self.run_dir / BEST_FILE, self.best_record())

    def best_record(self) -> dict[str, Any]:
        """best.json: the evaluation's episodes and seed, and each member's best (env step, mean and std of the
        return); a single run's also at the top level."""
        members = [{MEMBER: m, "global_step": b.global_step, "return": b.return_, "std": b.std}
                   for m, b in enumerate(self.best) if b is not None]
        single = {"global_step": members[0]["global_step"], "return": members[0]["return"]} if (
            self.members == 1 and members) else {}
        return {**single, "eval_episodes": self.episodes, "eval_seed": self.cfg.seed + EVAL_SEED_OFFSET,
                "weights": BEST_ACTOR_FILE, "members": members}

    def table(self) -> pd.DataFrame:
        """This process's evaluations in eval.csv's columns."""
        return pd.DataFrame([r.values(self.members) for r in self.rows],
                            columns=list(with_member(EVAL_COLUMNS, self.members)))

    # --- checkpoints and the summary -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"last_step": self.last_step, "evaluations": self.evaluations,
                "best": [None if b is None else list(b) for b in self.best], "best_actor": self.best_actor}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint's state; best_actor.pt and best.json become the checkpoint's (an evaluation
        after the checkpoint is undone, as the resumed run trains those steps again)."""
        self.last_step, self.evaluations = int(state["last_step"]), int(state["evaluations"])
        self.best = [None if b is None else Best(int(b[0]), float(b[1]), float(b[2])) for b in state["best"]]
        self.best_actor = state["best_actor"]
        if self.run_dir is not None:
            self.write_best()

    def summary_fields(self) -> dict[str, Any]:
        """summary.json's evaluation numbers: how many, and the best return (a population's: each member's, and
        their mean) with its env step."""
        if not self.evaluations:
            return {"evaluations": 0}
        best = [b for b in self.best if b is not None]
        out: dict[str, Any] = {"evaluations": self.evaluations, "eval_episodes": self.episodes,
                               "best_eval_return": float(np.mean([b.return_ for b in best]))}
        if self.members == 1:
            out["best_eval_step"] = best[0].global_step
        else:
            out["member_best_eval_return"] = [b.return_ for b in best]
            out["member_best_eval_step"] = [b.global_step for b in best]
        return out


def _better(mean: float, best: Best | None) -> bool:
    return best is None or math.isnan(best.return_) or mean > best.return_
