"""``fastddpg export``: a run's actor as TorchScript or ONNX."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..core.config import ConfigError
from .options import add_which_argument, check_out_file


def add_parser(sub: Any) -> None:
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



def command(args: argparse.Namespace, argv: list[str] | None = None) -> int:
    from ..runs.export import FORMATS, default_out, export_policy
    from ..runs.policy import load_policy

    policy = load_policy(args.run_dir, args.which, args.member)  # RUN_DIR first: the error a missing one needs
    out = Path(args.out) if args.out else default_out(args.run_dir, args.format)
    check_out_file(out)
    check_not_a_run_file(out, args.run_dir, set(FORMATS.values()), default_out(args.run_dir, args.format))
    export_policy(policy.actor, args.format, out)
    member = f" (member {args.member} of {policy.config.num_members})" if policy.config.num_members > 1 else ""
    print(f"exported {args.format}{member}: {out.resolve()}")
    return 0


def check_not_a_run_file(out: Path, run_dir: str | Path, ours: set[str], instead: Path) -> None:
    """A one-line ConfigError for an ``--out`` that would overwrite a file the run wrote (actor.pt, config.json,
    a CSV, a checkpoint...): with it gone, the run can no longer be evaluated, exported or resumed. Export's own
    files (``ours``) may be written again; ``instead`` is the path the line suggests."""
    root = Path(run_dir).resolve()
    target = out.resolve()
    if target.exists() and root in target.parents and not (target.parent == root and target.name in ours):
        raise ConfigError(f"--out={out} is one of the run's own files; export to a new name, such as {instead}.")


