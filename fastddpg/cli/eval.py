"""``fastddpg eval``: noise-free episodes of a run's saved actor, appended to eval.csv; ``--video``."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from ..core.config import ConfigError, check_which
from .options import add_which_argument


def add_parser(sub: Any) -> None:
    """``fastddpg eval RUN_DIR [--episodes N] [--seed S] [--member K] [--which final|best] [--video]``."""
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


def command(args: argparse.Namespace, argv: list[str] | None = None) -> int:
    from ..core.schema import EVAL_FILE
    from ..runs.evaluate import evaluate_members

    if args.seed is not None and args.seed < 0:  # gymnasium refuses a negative seed, with a traceback
        raise ConfigError(f"--seed={args.seed} is invalid: use a seed of 0 or more.")
    check_video_args(args)
    check_which(args.which)
    video = (eval_video(args.run_dir, args.video_episodes, args.seed, args.which, args.member) if args.video
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
    from ..core.schema import REPORT_FILE
    from ..reports.plots import write_report

    report = write_report([args.run_dir], Path(args.run_dir) / REPORT_FILE)  # shows the new evaluation (and video)
    if video is not None:
        print(video)
    print(f"report: {os.path.abspath(report)}")
    return 0


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
    if args.video and args.video_episodes > args.episodes:  # the video shows the evaluation's first episodes
        raise ConfigError(f"--video-episodes={args.video_episodes} is more than the {args.episodes} episodes "
                          "evaluated; record at most --episodes (or evaluate more).")


def eval_video(run_dir: str, episodes: int, seed: int | None, which: str = "final", member: int | None = None
               ) -> str:
    """Record ``episodes`` episodes (seeded as the evaluation's first ones) of ``member``'s actor (a population's
    member 0 unless given); returns the line to print, which names the member of a population."""
    from ..runs.evaluate import EVAL_SEED_OFFSET, load_actor
    from ..runs.video import record_video

    actor, cfg = load_actor(run_dir, member=member or 0, which=which)  # (checks the member before rendering)
    seed = cfg.seed + EVAL_SEED_OFFSET if seed is None else seed
    path, frames = record_video(actor, cfg.env, run_dir, episodes, seed)
    of = f" of member {member or 0} (of {cfg.num_members})" if cfg.num_members > 1 else ""
    return f"video: {episodes} episode{'s' if episodes > 1 else ''}{of}, {frames} frames -> {path}"


