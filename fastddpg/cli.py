"""The ``fastddpg`` command. Its flags are generated from `fastddpg.config.Config`, so help text and defaults
never drift from the Python API or the saved run config."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from typing import Any

from .config import Config, ConfigError


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per Config field, grouped, with the field's help text and default."""
    groups: dict[str, argparse._ArgumentGroup] = {}
    defaults = Config()
    for f in dataclasses.fields(Config):
        group_name = f.metadata.get("group", "training")
        group = groups.get(group_name) or groups.setdefault(group_name, parser.add_argument_group(group_name))
        default = getattr(defaults, f.name)
        helptext = f.metadata["help"]
        kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS}
        if isinstance(default, bool):
            kwargs["action"] = argparse.BooleanOptionalAction
        elif isinstance(default, tuple):
            kwargs.update(type=int, nargs="+", metavar="N")
        else:
            kwargs["type"] = type(default)
            kwargs["metavar"] = f.name.upper() if "choices" not in f.metadata else None
            if "choices" in f.metadata:
                kwargs["choices"] = f.metadata["choices"]
        shown = " ".join(map(str, default)) if isinstance(default, tuple) else default
        kwargs["help"] = f"{helptext} (default: {shown if shown != '' else 'auto'})"
        group.add_argument(_flag(f.name), **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fastddpg",
        description="Vectorized, device-resident DDPG/TD3 for Gymnasium continuous-control envs.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    run = sub.add_parser("run", help="train an agent", description="Train DDPG on N vectorized envs. "
                         "Defaults are the reference notebook's hyperparameters on Pendulum-v1.",
                         formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_config_arguments(run)
    return parser


def config_from_args(args: argparse.Namespace) -> Config:
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(Config) if hasattr(args, f.name)}
    return Config(**values)


def cmd_run(args: argparse.Namespace) -> int:
    from .reporting import PlainReporter, print_summary
    from .trainer import Trainer

    cfg = config_from_args(args)
    trainer = Trainer(cfg, callbacks=[] if cfg.quiet else [PlainReporter()])
    result = trainer.train()
    print_summary(result.summary)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            return cmd_run(args)
    except ConfigError as e:
        print(f"fastddpg: error: {e}", file=sys.stderr)
        return 2
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
