"""The ``fastddpg`` command. Its flags are generated from `fastddpg.core.config.Config`, so help text and defaults
never drift from the Python API or the saved run config.

One module per command (`run`, `plot`, `eval`, `export`, `verify`, `sweep`: each an ``add_parser(sub)`` and a
``command(args, argv)``), `options` for what they share, `main` for the parser and the exit codes. Only
`fastddpg.core.config` is imported with this package; each command imports what it needs (and so torch) inside its
function, so ``fastddpg --help`` and bad input answer without loading torch."""

from .main import COMMANDS, build_parser, main, torch_version
from .options import add_config_arguments, config_from_args

__all__ = ["COMMANDS", "add_config_arguments", "build_parser", "config_from_args", "main", "torch_version"]
