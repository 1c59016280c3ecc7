"""The ``fastddpg`` parser: ``--version`` and one subcommand per module of this package; `main` runs one and turns
bad input, Ctrl-C and unwritable files into one line and an exit code."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..core.config import ConfigError
from . import eval as eval_command
from . import export, plot, run, sweep, verify

# the subcommands, in --help order: name -> the module with its add_parser(sub) and command(args, argv)
COMMANDS = {"run": run, "plot": plot, "eval": eval_command, "export": export, "verify": verify, "sweep": sweep}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fastddpg",
        description="Vectorized, device-resident DDPG/TD3 for Gymnasium continuous-control envs.")
    parser.add_argument("--version", action=_VersionAction, help="print the fastddpg, torch, gymnasium and python "
                        "versions and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in COMMANDS.values():
        module.add_parser(sub)
    return parser


class _VersionAction(argparse.Action):
    """``fastddpg --version``: torch's version is read from ``torch/version.py`` (`torch_version`), the others from
    package metadata, so no torch is imported."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        import platform
        from importlib.metadata import PackageNotFoundError, version

        from .. import __version__

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


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command].command(args, ["fastddpg", *argv] if argv is not None else None)
    except ConfigError as e:
        print(f"fastddpg: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C outside training (during setup or the final report)
        print("fastddpg: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a file that cannot be written (a full disk...): one line, never a traceback
        from ..core.fileio import IO_EXIT_CODE, os_error_line, os_error_of
        from ..training.failsafe import RunDirError

        err = os_error_of(e)
        if err is None:
            raise
        line = str(err) if isinstance(err, RunDirError) else os_error_line(err)  # a RunDirError says it all
        print(f"fastddpg: error: {line}", file=sys.stderr)
        return IO_EXIT_CODE
