"""What several commands share: one flag per Config field (`add_config_arguments`), the Config those flags
give (`config_from_args`), ``--which final|best``, and the check of an ``--out`` file (`check_out_file`)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from ..core.config import GROUPS, RECORD_GROUP, Config, ConfigError, algorithm_defaults_help


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_config_arguments(parser: argparse.ArgumentParser, exclude: tuple[str, ...] = ()) -> None:
    """One flag per Config field (but those in ``exclude``), grouped, with the field's help text and default."""
    groups: dict[str, argparse._ArgumentGroup] = {}
    defaults = Config()
    for f in dataclasses.fields(Config):
        if f.name in exclude or f.metadata["group"] == RECORD_GROUP:  # the record is no option
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
        shown = shown if shown != '' else 'none' if f.name == 'grid' else 'auto'
        kwargs["help"] = f"{helptext} (default: {shown}{algorithm_defaults_help(f.name)})"
        group.add_argument(_flag(f.name), **kwargs)


def config_from_args(args: argparse.Namespace) -> Config:
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(Config) if hasattr(args, f.name)}
    if getattr(args, "config", None):  # defaults < the file < the flags given (flags default to SUPPRESS)
        from ..core.configfile import load_config_file

        return Config.merged(load_config_file(args.config), values)
    return Config(**values)



def add_which_argument(parser: argparse.ArgumentParser) -> None:
    """``--which final|best``: the run's last weights, or those of its best evaluation during training."""
    parser.add_argument("--which", default="final", metavar="{final,best}", help="final: the run's last weights "
                        "(default); best: RUN_DIR/best_actor.pt, the best evaluation's during training (a run with "
                        "--eval-every)")


def check_out_file(out: str | Path, flag: str = "--out") -> None:
    """A one-line ConfigError for an output file that cannot be one, before any work: an existing directory, or a
    path whose directory does not exist (a mistyped path, not a failing disk)."""
    out = Path(out)
    if out.is_dir():
        raise ConfigError(f"{flag}={out} is a directory; give the path of a file (in it or elsewhere).")
    if not out.parent.is_dir():
        raise ConfigError(f"{flag}={out}: the directory {out.parent} does not exist; create it or choose another.")
