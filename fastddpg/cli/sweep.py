"""``fastddpg sweep``: a hyperparameter sweep on Ray Tune (`fastddpg.tools.sweeps`), or ``--resume`` of one."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any

from ..core.config import Config
from .options import _flag, add_config_arguments, config_from_args

# the sweep's own options: what --resume refuses when given (it keeps the sweep's sweep.json)
SWEEP_OPTIONS = ("sweep_grid", "sample", "space", "search", "max_failures", "num_samples", "scheduler",
                  "pbt_interval", "mutate", "grace_period", "metric", "eval_episodes", "cpus_per_trial",
                  "gpus_per_trial", "max_concurrent", "out", "storage", "config", "verbose")


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """``fastddpg sweep [run flags: the base config] --grid NAME=V1,V2 ... --out DIR`` and ``--resume DIR``."""
    from ..tools.sweeps import DEFAULT_MAX_FAILURES  # plain Python: Ray is imported only when a sweep runs

    sw = sub.add_parser(
        "sweep", help="run many trials (a grid, samples, ASHA or PBT) on Ray Tune, locally or on a cluster",
        description="A hyperparameter sweep on Ray Tune (pip install 'fastddpg[sweep]'). Every `fastddpg run` flag "
        "sets the base config; --grid and --sample vary fields across trials. Each trial is a fastddpg run "
        "directory in OUT/trials/<trial id>; OUT/trials.csv and OUT/report.html summarize them. Without --address a "
        "private local Ray is started in this process.")
    # a sweep's --grid varies trials (a members' grid: --config); its --eval-episodes is the sweep option below
    add_config_arguments(sw, exclude=("grid", "eval_episodes"))
    sw.add_argument("--config", metavar="FILE", default=None, help="base config from a TOML file or a run's "
                    "config.json; flags given on the command line override it")
    s = sw.add_argument_group("sweep", "What varies, how trials are scheduled, and where they run.")
    s.add_argument("--grid", dest="sweep_grid", action="extend", nargs="+", default=[], metavar="NAME=V1,V2",
                   help="a grid over a field: every combination of all --grid fields runs (ints: NAME=A..B, both "
                   "ends included; hidden sizes: 64x64,256x256); e.g. --grid seed=0..3 actor_lr=1e-3,3e-4")
    s.add_argument("--sample", action="extend", nargs="+", default=[], metavar="NAME=DIST",
                   help="a field drawn per trial: NAME=loguniform:LO:HI, NAME=uniform:LO:HI or NAME=choice:A,B")
    s.add_argument("--space", default=None, metavar="FILE",
                   help="a search space from a TOML file: [sample] NAME = \"DIST\" and [grid] NAME = [V1, V2] (e.g. "
                   "configs/sweeps/pendulum_zoo.toml, the RL Zoo's DDPG/TD3 space); --grid and --sample flags add "
                   "to it and override its entries for the same field")
    s.add_argument("--search", default="random", metavar="{random,optuna}",
                   help="random: every --grid combination, each --sample drawn at random (Tune's basic variant "
                   "generator); optuna: Optuna's TPE proposes each of the --num-samples trials from the --sample "
                   "distributions and the results so far (pip install 'fastddpg[sweep]'; no --grid, no pbt) "
                   "(default: random)")
    s.add_argument("--num-samples", type=int, default=1, metavar="M",
                   help="draws of --sample (with --grid: the grid is repeated M times; with --search optuna: the "
                   "number of trials) (default: 1)")
    s.add_argument("--max-failures", type=int, default=DEFAULT_MAX_FAILURES, metavar="N",
                   help="times a failed trial (its worker killed, an exception, a lost node) is started again; "
                   "each retry resumes from the trial's last fastddpg checkpoint, so it costs at most one "
                   "checkpoint interval, and a deterministic bug still fails after N+1 tries (default: "
                   f"{DEFAULT_MAX_FAILURES})")
    s.add_argument("--scheduler", default="none", metavar="{none,asha,pbt}",
                   help="none: run every trial to the end; asha: stop the worst early (by env steps); pbt: "
                   "population based training through fastddpg's checkpoints (default: none)")
    s.add_argument("--pbt-interval", type=int, default=0, metavar="STEPS",
                   help="PBT: env steps between exploit/explore decisions, rounded up to whole --log-every "
                   "reports (default: 0 = a fifth of --total-steps)")
    s.add_argument("--mutate", default="", metavar="NAME,...", help="PBT: the fields it may change, e.g. "
                   "actor_lr,critic_lr (ranges: their --sample or --grid, else 1/4x..4x the base value)")
    s.add_argument("--grace-period", type=int, default=0, metavar="STEPS",
                   help="ASHA: env steps before a trial can be stopped (default: 0 = an eighth of --total-steps)")
    s.add_argument("--metric", default="return_10", metavar="{return_10,eval_return}",
                   help="what ASHA, PBT and the ranking maximize: return_10 (mean training return of the last 10 "
                   "episodes, free; a population trial: the mean over members of each member's last-10 mean) "
                   "or eval_return (--eval-episodes noise-free episodes at every report) "
                   "(default: return_10)")
    s.add_argument("--eval-episodes", type=int, default=argparse.SUPPRESS, metavar="N",
                   help="episodes per eval_return, and per evaluation of the trials' --eval-every (default: a "
                   "--config file's eval_episodes, else 5)")
    s.add_argument("--cpus-per-trial", type=float, default=1.0, metavar="C",
                   help="CPUs Ray reserves per trial; also its torch threads and TORCHINDUCTOR_COMPILE_THREADS "
                   "(default: 1)")
    s.add_argument("--gpus-per-trial", type=float, default=0.0, metavar="G",
                   help="GPUs per trial; fractions share a GPU (default: 0)")
    s.add_argument("--max-concurrent", type=int, default=0, metavar="K",
                   help="at most K trials at once (default: 0 = as many as the CPUs and GPUs allow)")
    s.add_argument("--out", default=None, metavar="DIR", help="the sweep directory, e.g. sweeps/NAME (required)")
    s.add_argument("--address", default=None, metavar="ADDR",
                   help="a Ray cluster: auto (this node's, from `ray start`), HOST:PORT or ray://HOST:PORT "
                   "(default: a private local Ray)")
    s.add_argument("--storage", default=None, metavar="PATH",
                   help="where the trials' run directories and Tune's state go (PATH/NAME; OUT/trials links "
                   "there): a path mounted on every node of a multi-node cluster (default: OUT)")
    s.add_argument("--verbose", action="store_true",
                   help="also print Ray Tune's own trial tables and results (default: fastddpg's progress lines only: "
                   "trials running, finished and failed, and the best metric so far)")
    s.add_argument("--resume", default=None, metavar="DIR",
                   help="continue the sweep in DIR: finished trials stay, unfinished ones continue from their "
                   "latest checkpoints (only --address may be given with it)")
    return sw


def option_defaults() -> dict[str, Any]:
    """Each of `SWEEP_OPTIONS`' defaults, read from a sweep parser built for the purpose."""
    sw = add_parser(argparse.ArgumentParser().add_subparsers())
    return {o: sw.get_default(o) for o in SWEEP_OPTIONS}


def command(args: argparse.Namespace, argv: list[str] | None = None) -> int:
    """`fastddpg sweep`: checked before Ray starts; exit 0 (done), 1 (a trial failed), 2 (bad input), 130 (Ctrl-C:
    Tune saved the sweep; --resume continues it)."""
    from ..tools import sweeps

    sweeps.require_ray()
    if args.resume:
        defaults = option_defaults()
        given = [o for o in SWEEP_OPTIONS if getattr(args, o, defaults[o]) != defaults[o]]
        given += [f.name for f in dataclasses.fields(Config) if hasattr(args, f.name) and f.name not in SWEEP_OPTIONS]
        sweeps.refuse_new_definition(["--grid" if g == "sweep_grid" else _flag(g) for g in given])
    else:
        # --eval-episodes is the config's own field: given, it is in the config (as a --config file's is)
        base = sweeps.with_eval_episodes(config_from_args(args), None)
        grid, sample = sweeps.read_space(args.space, base) if args.space else ({}, {})
        flag_grid, flag_sample = sweeps.parse_grid(args.sweep_grid, base), sweeps.parse_sample(args.sample, base)
        grid = {**{k: v for k, v in grid.items() if k not in flag_sample}, **flag_grid}  # a flag wins for its field
        sample = {**{k: v for k, v in sample.items() if k not in flag_grid}, **flag_sample}
        spec = sweeps.make_spec(
            base, args.out, grid=grid, sample=sample, search=args.search, max_failures=args.max_failures,
            num_samples=args.num_samples, scheduler=args.scheduler, metric=args.metric,
            pbt_interval=args.pbt_interval, mutate=[m.strip().replace("-", "_") for m in args.mutate.split(",")
                                                    if m.strip()],
            grace_period=args.grace_period, eval_episodes=base.eval_episodes, cpus_per_trial=args.cpus_per_trial,
            gpus_per_trial=args.gpus_per_trial, max_concurrent=args.max_concurrent, address=args.address,
            storage=args.storage)
    try:
        if args.resume:
            result = sweeps.resume_sweep(args.resume, address=args.address)  # prints as the sweep it continues
        else:
            result = sweeps.run_sweep(spec, verbose=1 if args.verbose else 0, progress=True)
    except sweeps.SweepInterrupted as e:
        print(f"fastddpg: {e}", file=sys.stderr)
        return 130
    t = result.trials
    print(f"sweep: {len(t)} trials -> {result.path / sweeps.TRIALS_FILE}, report {result.path / 'report.html'}")
    if len(t):
        best = result.best
        print(f"best: {best['trial']} ({result.metric_column} {best[result.metric_column]:.1f}): {best['run_dir']}")
    for trial, error in result.errors.items():
        print(f"fastddpg: error: trial {trial} failed: {error}", file=sys.stderr)
    return 1 if result.errors else 0


