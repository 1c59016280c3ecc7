"""The ``fastddpg`` command. Its flags are generated from `fastddpg.config.Config`, so help text and defaults
never drift from the Python API or the saved run config.

Only `fastddpg.config` is imported with this module; each command imports what it needs (and so torch) inside
its function, so ``fastddpg --help`` and bad input answer without loading torch."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import ALGOS, GROUPS, Config, ConfigError, check_which

if TYPE_CHECKING:
    from .failsafe import NonFiniteError, TrainingInterrupted


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_config_arguments(parser: argparse.ArgumentParser, exclude: tuple[str, ...] = ()) -> None:
    """One flag per Config field (but those in ``exclude``), grouped, with the field's help text and default."""
    groups: dict[str, argparse._ArgumentGroup] = {}
    defaults = Config()
    for f in dataclasses.fields(Config):
        if f.name in exclude:
            continue
        group_name = f.metadata.get("group", "training")
        if group_name not in groups:
            groups[group_name] = parser.add_argument_group(*GROUPS.get(group_name, (group_name, None)))
        group = groups[group_name]
        default = getattr(defaults, f.name)
        helptext = f.metadata["help"]
        kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS}
        if isinstance(default, bool):
            kwargs["action"] = argparse.BooleanOptionalAction
        elif f.name == "grid":  # repeatable: --grid actor_lr=1e-3,3e-4 --grid tau=0.005,0.01
            kwargs.update(action="append", type=str, metavar="NAME=V1,V2,...")
        elif isinstance(default, tuple):
            kwargs.update(type=int, nargs="+", metavar="N")
        else:
            kwargs["type"] = type(default)
            kwargs["metavar"] = f.name.upper() if "choices" not in f.metadata else None
            if "choices" in f.metadata:
                kwargs["choices"] = f.metadata["choices"]
        shown = " ".join(map(str, default)) if isinstance(default, tuple) else default
        kwargs["help"] = f"{helptext} (default: {shown if shown != '' else 'none' if f.name == 'grid' else 'auto'})"
        group.add_argument(_flag(f.name), **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fastddpg",
        description="Vectorized, device-resident DDPG/TD3 for Gymnasium continuous-control envs.")
    parser.add_argument("--version", action=_VersionAction, help="print the fastddpg, torch, gymnasium and python "
                        "versions and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    run = sub.add_parser("run", help="train an agent",
                         description="Train DDPG (or TD3: --algo td3) on N vectorized envs. Defaults "
                         "are the reference notebook's hyperparameters on Pendulum-v1.")
    add_config_arguments(run)
    run.add_argument("--resume", metavar="RUN_DIR", default=None,
                     help="continue RUN_DIR from its latest checkpoint with its config.json, appending to its CSVs; "
                     "of the other flags only --total-steps (e.g. raised) and run-control flags (--device, "
                     "--compile, --vector-mode, --log-every, --checkpoint-every, --keep-checkpoints, --quiet, "
                     "--eval-every) may be given with it")
    add_config_file_arguments(run)
    plot = sub.add_parser("plot", help="write the Plotly report of one or more runs",
                          description="Regenerate report.html from run directories; several runs are overlaid "
                          "and labelled by directory name.")
    plot.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories made by `fastddpg run`")
    plot.add_argument("--out", default=None, help="output HTML (default: RUN_DIR/report.html for one run, "
                      "./report_compare.html for several)")
    plot.add_argument("--plotly-cdn", action="store_true", help="load plotly.js from the CDN: a small file that "
                      "needs a network connection to view (default: plotly.js inlined, works offline)")
    ev = sub.add_parser("eval", help="evaluate a run's saved actor without exploration noise",
                        description="Noise-free episodes with RUN_DIR's final actor (--which best: its best "
                        "evaluation's during training); prints mean +- std return and appends the episodes to "
                        "RUN_DIR/eval.csv (kind manual).")
    ev.add_argument("run_dir", metavar="RUN_DIR", help="a finished run directory")
    ev.add_argument("--episodes", type=int, default=10, help="evaluation episodes (default: 10)")
    ev.add_argument("--seed", type=int, default=None, help="episode i is seeded SEED + i (default: the run's "
                    "seed + 10000)")
    ev.add_argument("--member", type=int, default=None, metavar="K", help="of a population run: evaluate member K "
                    "only (default: every member, on the same episodes)")
    add_which_argument(ev)
    add_video_arguments(ev)
    add_export_parser(sub)
    add_verify_parser(sub)
    add_sweep_parser(sub)
    return parser


def add_verify_parser(sub: argparse._SubParsersAction) -> None:
    """``fastddpg verify``: its flags mirror `fastddpg.verify.VerifyOptions`."""
    from .verifyoptions import ACT_ATOL, ACT_RTOL, ATOL, RTOL, VerifyOptions

    d = VerifyOptions()
    v = sub.add_parser(
        "verify", help="prove the fast update paths compute what the eager update computes, on this machine",
        description="From one initial state and one fixed sequence of batches, run the update eager, compiled and "
        "(on CUDA) compiled inside the CUDA graph, and the acting step eager and compiled. After every update, "
        "compare each path's parameters, target networks, Adam state and metrics with eager's; print the largest "
        f"difference per group and each path's rate. Tolerance: |x - eager| <= {ATOL:g} + {RTOL:g} |eager| per "
        f"update (acting: {ACT_ATOL:g} + {ACT_RTOL:g} |eager|). Exit 0 when every path is within it, 1 otherwise "
        "(the tensor that differs is named), 2 on bad input.")
    v.add_argument("--device", default=d.device, help="auto, cpu, cuda or cuda:N (default: auto)")
    v.add_argument("--algo", default=d.algo, choices=ALGOS, help=f"which update (default: {d.algo})")
    v.add_argument("--num-seeds", type=int, default=d.num_seeds, metavar="K",
                   help="members: 1 verifies one agent's update, K > 1 a population's (default: 1)")
    v.add_argument("--updates", type=int, default=d.updates, help=f"updates compared (default: {d.updates})")
    v.add_argument("--batch-size", type=int, default=d.batch_size, help=f"batch size (default: {d.batch_size})")
    v.add_argument("--hidden-sizes", type=int, nargs="+", default=list(d.hidden_sizes), metavar="N",
                   help="hidden layer widths (default: 256 256)")
    v.add_argument("--seed", type=int, default=d.seed,
                   help=f"seed of the initial state and the batches (default: {d.seed})")
    v.add_argument("--compile-mode", default=d.compile_mode, choices=("default", "max-autotune"),
                   help="torch.compile mode (default: default)")
    v.add_argument("--timed-updates", type=int, default=d.timed_updates,
                   help=f"updates per timed repetition, after the compared ones (default: {d.timed_updates})")
    v.add_argument("--repeats", type=int, default=d.repeats, help=f"timed repetitions, median (default: {d.repeats})")
    v.add_argument("--json", default=None, metavar="PATH", help="also write the results as JSON to PATH")
    # for tests: on the CPU also run CudaGraphUpdate's static-buffer logic (capture=False)
    v.add_argument("--graph-logic-on-cpu", action="store_true", help=argparse.SUPPRESS)


def config_from_args(args: argparse.Namespace) -> Config:
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(Config) if hasattr(args, f.name)}
    if getattr(args, "config", None):  # defaults < the file < the flags given (flags default to SUPPRESS)
        from .configfile import load_config_file

        values = {**load_config_file(args.config), **values}
    return Config(**values)


# --- run --config FILE / --dry-run, --version -------------------------------------------------------------------
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
    from .configfile import to_toml

    print(to_toml(run_config(args)), end="")
    return 0


def run_config(args: argparse.Namespace) -> Config:
    """The Config of a new ``fastddpg run`` (`config_from_args`), run_dir 'auto' unless given: the command always
    writes a run directory, so --dry-run and --help show the run_dir it will use."""
    from .schema import AUTO_RUN_DIR

    cfg = config_from_args(args)
    return cfg if cfg.run_dir else dataclasses.replace(cfg, run_dir=AUTO_RUN_DIR)


class _VersionAction(argparse.Action):
    """``fastddpg --version``: torch's version is read from ``torch/version.py`` (`torch_version`), the others from
    package metadata, so no torch is imported."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        import platform
        from importlib.metadata import PackageNotFoundError, version

        from . import __version__

        def installed(name: str) -> str:  # from package metadata: importing torch only to print this takes seconds
            try:
                return version(name)
            except PackageNotFoundError:
                return "not installed"

        print(f"fastddpg {__version__} (torch {torch_version() or installed('torch')}, gymnasium "
              f"{installed('gymnasium')}, "
              f"python {platform.python_version()})")
        parser.exit()


def torch_version() -> str | None:
    """torch's ``__version__`` as ``torch/version.py`` records it (with the build's local tag, e.g. ``+cu130``, which
    the package metadata of a wheel from the plain index lacks), read without importing torch; None if not found."""
    import importlib.util
    import re

    spec = importlib.util.find_spec("torch")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        try:
            text = (Path(folder) / "version.py").read_text()
        except OSError:
            continue
        found = re.search(r"^__version__\s*=\s*['\"]([^'\"]+)['\"]", text, re.MULTILINE)
        if found:
            return found.group(1)
    return None


def cmd_run(args: argparse.Namespace, argv: list[str] | None = None) -> int:
    """`fastddpg run`: `fastddpg.train` (or `fastddpg.resume`) with a run directory and the console reporter."""
    from .api import open_resume, open_run, run_quietly_or_with_progress
    from .failsafe import NonFiniteError, TrainingInterrupted
    from .reporting import print_summary
    from .schema import REPORT_FILE

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
    """`fastddpg.configfile.tuning_note` for a new run: its env against the --config file's env (if any)."""
    from .configfile import load_config_file, tuning_note

    config = getattr(args, "config", None)
    return tuning_note(cfg.env, config, load_config_file(config).get("env") if config else None)


def _stopped(e: TrainingInterrupted | NonFiniteError, total_steps: int, run_dir: Path) -> int:
    """One line on what stopped the run (a signal: exit 128 + signum; a non-finite value: exit 3) and where its
    files are."""
    import shlex

    from .failsafe import TrainingInterrupted

    if isinstance(e, TrainingInterrupted):
        print(f"fastddpg: {e.signal_name}: stopped at env step {e.global_step:,} of {total_steps:,}; "
              f"checkpoint {e.checkpoint}; metrics and report in {run_dir}; resume with: "
              f"fastddpg run --resume {shlex.quote(str(run_dir))}", file=sys.stderr)
    else:
        print(f"fastddpg: error: {e}", file=sys.stderr)
    return e.exit_code


def cmd_plot(args: argparse.Namespace) -> int:
    from .plots import write_report
    from .schema import REPORT_FILE

    default = Path(args.run_dirs[0]) / REPORT_FILE if len(args.run_dirs) == 1 else Path("report_compare.html")
    out = write_report(args.run_dirs, args.out or default, plotly_cdn=args.plotly_cdn)
    print(f"report: {os.path.abspath(out)}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .evaluate import evaluate_members
    from .schema import EVAL_FILE

    check_video_args(args)
    check_which(args.which)
    video = (eval_video(args.run_dir, args.video_episodes, args.seed, args.which) if args.video
             else None)  # fails first
    results = evaluate_members(args.run_dir, args.episodes, args.seed,
                               None if args.member is None else [args.member], which=args.which)
    out = Path(args.run_dir) / EVAL_FILE
    if len(results) == 1 and args.member is None:  # a single run
        r = results[0]
        print(f"eval: {len(r.returns)} noise-free episodes (seed {r.seed}): return {r.mean:.1f} +- {r.std:.1f} "
              f"-> {out}")
    else:
        for m, r in results.items():
            print(f"eval member {m}: {len(r.returns)} noise-free episodes (seed {r.seed}): return {r.mean:.1f} +- "
                  f"{r.std:.1f}")
        means = [r.mean for r in results.values()]
        print(f"eval: {len(results)} member(s): mean return {sum(means) / len(means):.1f} "
              f"[{min(means):.1f}, {max(means):.1f}] -> {out}")
    from .plots import write_report
    from .schema import REPORT_FILE

    report = write_report([args.run_dir], Path(args.run_dir) / REPORT_FILE)  # shows the new evaluation (and video)
    if video is not None:
        print(video)
    print(f"report: {os.path.abspath(report)}")
    return 0


# --- eval --video -----------------------------------------------------------------------------------------------
def add_video_arguments(ev: argparse.ArgumentParser) -> None:
    """``fastddpg eval ... --video [--video-episodes N]``."""
    ev.add_argument("--video", action="store_true", help="also render noise-free episodes to "
                    "RUN_DIR/videos/eval-<time>.mp4 (a GIF where no ffmpeg is available) and show the newest in "
                    "report.html; needs pip install 'fastddpg[video]'")
    ev.add_argument("--video-episodes", type=int, default=None, metavar="N", help="episodes in the video, seeded "
                    "as the evaluation's (episode i: SEED + i) (default: 1)")


def check_video_args(args: argparse.Namespace) -> None:
    """Bad ``eval --video`` input is refused before anything is rendered or evaluated (ConfigError, one line)."""
    if args.video and args.episodes < 1:  # evaluate_run refuses it too, but only after the video was written
        raise ConfigError(f"--episodes={args.episodes} is invalid: evaluate at least 1 episode.")
    if args.video_episodes is not None and not args.video:
        raise ConfigError("--video-episodes needs --video; add --video to record the episodes.")
    if args.video_episodes is None:
        args.video_episodes = 1
    if args.video_episodes < 1:
        raise ConfigError(f"--video-episodes={args.video_episodes} is invalid: record at least 1 episode.")


def eval_video(run_dir: str, episodes: int, seed: int | None, which: str = "final") -> str:
    """Record ``episodes`` episodes (seeded as the evaluation's first ones); returns the line to print."""
    from .evaluate import EVAL_SEED_OFFSET, load_actor
    from .video import record_video

    actor, cfg = load_actor(run_dir, which=which)
    seed = cfg.seed + EVAL_SEED_OFFSET if seed is None else seed
    path, frames = record_video(actor, cfg.env, run_dir, episodes, seed)
    return f"video: {episodes} episode{'s' if episodes > 1 else ''}, {frames} frames -> {path}"


# --- export -----------------------------------------------------------------------------------------------------
def add_export_parser(sub: Any) -> None:
    """``fastddpg export RUN_DIR [--format torchscript|onnx] [--member K] [--out PATH]``."""
    ex = sub.add_parser("export", help="export a run's actor as TorchScript or ONNX",
                        description="Write the trained actor (obs -> action in the env's bounds, any batch size) "
                        "as a file that runs without fastddpg: TorchScript for torch.jit.load, ONNX for "
                        "onnxruntime (needs pip install 'fastddpg[export]').")
    ex.add_argument("run_dir", metavar="RUN_DIR", help="a run directory (its actor.pt, else its latest checkpoint)")
    ex.add_argument("--format", default="torchscript", metavar="{torchscript,onnx}",
                    help="torchscript (default) or onnx")
    ex.add_argument("--member", type=int, default=0, metavar="K", help="which actor of a population run "
                    "(--num-seeds/--grid); a single run has one, member 0 (the default)")
    ex.add_argument("--out", default=None, metavar="PATH", help="output file (default: RUN_DIR/actor.ts.pt or "
                    "RUN_DIR/actor.onnx)")
    add_which_argument(ex)


def add_which_argument(parser: argparse.ArgumentParser) -> None:
    """``--which final|best``: the run's last weights, or those of its best evaluation during training."""
    parser.add_argument("--which", default="final", metavar="{final,best}", help="final: the run's last weights "
                        "(default); best: RUN_DIR/best_actor.pt, the best evaluation's during training (a run with "
                        "--eval-every)")


def cmd_export(args: argparse.Namespace) -> int:
    from .export import default_out, export_policy
    from .policy import load_policy

    out = Path(args.out) if args.out else default_out(args.run_dir, args.format)
    policy = load_policy(args.run_dir, args.which, args.member)
    export_policy(policy.actor, args.format, out)
    print(f"exported {args.format}: {out.resolve()}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from .verify import VerifyOptions, format_report, run_verify, write_json

    opts = VerifyOptions(device=args.device, algo=args.algo, num_seeds=args.num_seeds, updates=args.updates,
                         batch_size=args.batch_size, hidden_sizes=tuple(args.hidden_sizes), seed=args.seed,
                         compile_mode=args.compile_mode, timed_updates=args.timed_updates, repeats=args.repeats,
                         graph_logic_on_cpu=args.graph_logic_on_cpu)
    if args.json:  # an unwritable --json is bad input: say so before the work, not after
        from .rundir import probe_writable

        try:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            probe_writable(Path(args.json).parent)
        except OSError as e:
            raise ConfigError(f"--json={args.json}: cannot write there ({e.strerror}); choose another path.") from None
    report = run_verify(opts)
    print(format_report(report))
    if args.json:
        print(f"wrote {write_json(report, args.json)}")
    return 0 if report["passed"] else 1


# --- sweep (Ray Tune; fastddpg.sweeps) --------------------------------------------------------------------------
_SWEEP_OPTIONS = ("sweep_grid", "sample", "space", "search", "max_failures", "num_samples", "scheduler",
                  "pbt_interval", "mutate", "grace_period", "metric", "eval_episodes", "cpus_per_trial",
                  "gpus_per_trial", "max_concurrent", "out", "storage", "config", "verbose")
_SWEEP_PARSER_DEFAULTS: dict[str, Any] = {}  # filled by add_sweep_parser: what --resume must not see changed


def add_sweep_parser(sub: Any) -> None:
    """``fastddpg sweep [run flags: the base config] --grid NAME=V1,V2 ... --out DIR`` and ``--resume DIR``."""
    from .sweeps import DEFAULT_MAX_FAILURES  # plain Python: Ray is imported only when a sweep runs

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
    s.add_argument("--eval-episodes", type=int, default=5, metavar="N", help="episodes per eval_return, and per "
                   "evaluation of the trials' --eval-every (default: 5)")
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
    _SWEEP_PARSER_DEFAULTS.update({o: sw.get_default(o) for o in _SWEEP_OPTIONS})
    s.add_argument("--resume", default=None, metavar="DIR",
                   help="continue the sweep in DIR: finished trials stay, unfinished ones continue from their "
                   "latest checkpoints (only --address may be given with it)")


def cmd_sweep(args: argparse.Namespace) -> int:
    """`fastddpg sweep`: checked before Ray starts; exit 0 (done), 1 (a trial failed), 2 (bad input), 130 (Ctrl-C:
    Tune saved the sweep; --resume continues it)."""
    from . import sweeps

    sweeps.require_ray()
    if args.resume:
        given = [o for o in _SWEEP_OPTIONS if getattr(args, o) != _SWEEP_PARSER_DEFAULTS[o]]
        given += [f.name for f in dataclasses.fields(Config) if hasattr(args, f.name) and f.name not in _SWEEP_OPTIONS]
        if given:
            flags = ", ".join("--grid" if g == "sweep_grid" else _flag(g) for g in given)
            raise ConfigError(f"--resume takes no {flags}: a sweep keeps its {sweeps.SWEEP_FILE}; only --address "
                              "may be given with it.")
    else:
        base = config_from_args(args)
        grid, sample = sweeps.read_space(args.space, base) if args.space else ({}, {})
        flag_grid, flag_sample = sweeps.parse_grid(args.sweep_grid, base), sweeps.parse_sample(args.sample, base)
        grid = {**{k: v for k, v in grid.items() if k not in flag_sample}, **flag_grid}  # a flag wins for its field
        sample = {**{k: v for k, v in sample.items() if k not in flag_grid}, **flag_sample}
        spec = sweeps.make_spec(
            base, args.out, grid=grid, sample=sample, search=args.search, max_failures=args.max_failures,
            num_samples=args.num_samples, scheduler=args.scheduler, metric=args.metric,
            pbt_interval=args.pbt_interval, mutate=[m.strip().replace("-", "_") for m in args.mutate.split(",")
                                                    if m.strip()],
            grace_period=args.grace_period, eval_episodes=args.eval_episodes, cpus_per_trial=args.cpus_per_trial,
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            check_run_args(args)
            if args.dry_run:
                return cmd_dry_run(args)
            return cmd_run(args, ["fastddpg", *argv] if argv is not None else None)
        if args.command == "plot":
            return cmd_plot(args)
        if args.command == "eval":
            return cmd_eval(args)
        if args.command == "export":
            return cmd_export(args)
        if args.command == "verify":
            return cmd_verify(args)
        if args.command == "sweep":
            return cmd_sweep(args)
    except ConfigError as e:
        print(f"fastddpg: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C outside training (during setup or the final report)
        print("fastddpg: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a file that cannot be written (a full disk...): one line, never a traceback
        from .failsafe import RunDirError
        from .fileio import IO_EXIT_CODE, os_error_line, os_error_of

        err = os_error_of(e)
        if err is None:
            raise
        line = str(err) if isinstance(err, RunDirError) else os_error_line(err)  # a RunDirError says it all
        print(f"fastddpg: error: {line}", file=sys.stderr)
        return IO_EXIT_CODE
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
