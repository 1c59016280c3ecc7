"""Config files for ``fastddpg run --config FILE``: TOML, or a run's own ``config.json``.

A TOML file holds `Config` fields by name, dashes or underscores (``batch-size = 256`` or ``batch_size = 256``),
either at the top level or inside tables named after the flag groups of ``fastddpg run --help``
(``[environment]``, ``[training]``, ``[td3]``, ``[diagnostics]``, ``[performance]``, ``[run]``); the tables are
only for reading, a field may sit in any of them. ``configs/`` has examples. A JSON file is either a run's
``config.json`` (the Config under its ``"config"`` key) or a flat object of fields; from a run's config.json
``run_dir`` is dropped, so re-running a run's config makes a new run directory instead of colliding with it.

Precedence: Config defaults < the file < command-line flags. A key that is not a Config field, or a value of
the wrong type, is a ConfigError naming the key and the file (the CLI prints one line and exits 2).
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from pathlib import Path
from typing import Any

from .config import GROUPS, RECORD_FIELDS, RECORD_GROUP, Config, ConfigError, coerce_field

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

_FIELDS = {f.name: f for f in dataclasses.fields(Config)}


# The tuned files in the repository's configs/, by the env they are for (tests/test_tuned_configs.py checks each
# file's env). fastddpg's defaults are the reference notebook's, tuned for Pendulum-v1.
DEFAULTS_ENV = "Pendulum-v1"
TUNED_CONFIGS = {
    "Pendulum-v1": ("configs/pendulum_crossq.toml", "configs/pendulum_ddpg.toml", "configs/pendulum_sac.toml",
                    "configs/pendulum_td3.toml"),
    "InvertedPendulum-v5": ("configs/inverted_pendulum_td3.toml",),
    "HalfCheetah-v5": ("configs/halfcheetah_td3.toml",),
    "Hopper-v5": ("configs/hopper_td3.toml",),
    "Walker2d-v5": ("configs/walker2d_td3.toml",),
}


def tuning_note(env: str, config_file: str | Path | None = None, file_env: str | None = None) -> str | None:
    """One line when ``env`` trains with hyperparameters tuned for another env: fastddpg's defaults (Pendulum-v1)
    when no config file is given, or a config file whose ``env`` (``file_env``) is another one; it names the tuned
    file for ``env`` if configs/ has one. None when the hyperparameters were meant for ``env``, or when the file
    sets no env (its hyperparameters are then the user's own choice)."""
    if config_file is None:
        if env == DEFAULTS_ENV:
            return None
        source = f"fastddpg's defaults, tuned for {DEFAULTS_ENV}"
    else:
        if file_env is None or file_env == env:
            return None
        source = f"{config_file}, tuned for {file_env}"
    tuned = TUNED_CONFIGS.get(env)
    hint = (f"start from --config {tuned[-1]}" if tuned else
            "configs/ has tuned files for " + ", ".join(e for e in TUNED_CONFIGS if e != DEFAULTS_ENV))
    return f"{env} trains with the hyperparameters of {source}; {hint}."


def load_config_file(path: str | Path) -> dict[str, Any]:
    """The Config fields set in ``path`` (.toml or .json) as ``{field name: value}``, each value type-checked
    against the field's default (ints for int fields, numbers for float fields, a list of ints for
    ``hidden_sizes``, ...); range checks are left to `Config.validate`."""
    path = Path(path)
    if path.suffix.lower() in (".yaml", ".yml"):
        raise ConfigError(f"config file {path}: YAML is not read; give a .toml file (fastddpg run --dry-run prints "
                          "one) or a run's config.json.")
    try:
        text = path.read_text(encoding="utf-8-sig")  # (a byte-order mark, as some Windows editors write, is dropped)
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror or e}; give a .toml file or a run's "
                          "config.json.") from None
    except UnicodeDecodeError:  # e.g. UTF-16, as Windows PowerShell 5 writes `fastddpg run --dry-run > file`
        raise ConfigError(f"config file {path} is not UTF-8 text; save it as UTF-8.") from None
    if path.suffix.lower() == ".json":
        raw = list(_parse_json(text, path).items())
    else:
        try:
            raw = _flatten(tomllib.loads(text))
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"config file {path} is not valid TOML: {e}.") from None
    out: dict[str, Any] = {}
    for key, value in raw:
        name = key.replace("-", "_")
        if name not in _FIELDS:
            raise ConfigError(f"unknown key '{key}' in config file {path}; keys are the `fastddpg run` flags "
                              "without the leading dashes (see fastddpg run --help).")
        if name in out:
            raise ConfigError(f"key '{key}' is set twice in config file {path}; keep one.")
        out[name] = _check_type(name, value, path)
    return out


def _parse_json(text: str, path: Path) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"config file {path} is not valid JSON: {e}.") from None
    if isinstance(data, dict) and isinstance(data.get("config"), dict):  # a run's config.json
        return {k: v for k, v in data["config"].items() if k != "run_dir"}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a JSON object of Config fields.")
    return data


def _flatten(data: dict[str, Any]) -> list[tuple[str, Any]]:
    """Top-level keys plus the keys of group tables (``[training]`` ...), as one list of (key, value)."""
    flat: list[tuple[str, Any]] = []
    for key, value in data.items():
        flat += value.items() if isinstance(value, dict) and (key in GROUPS or key == RECORD_GROUP) else [(key, value)]
    return flat


def _check_type(name: str, value: Any, path: Path) -> Any:
    value, want = coerce_field(name, value)
    if want:
        raise ConfigError(f"{name} = {value!r} in config file {path} has the wrong type: give {want}.")
    return value


def to_toml(cfg: Config) -> str:
    """``cfg`` as a TOML config file, one field per line, grouped as in ``fastddpg run --help``; loading it
    with `load_config_file` gives ``cfg`` back."""
    tables = []
    for group in GROUPS:
        names = [f.name for f in dataclasses.fields(Config) if f.metadata.get("group", "training") == group]
        if names:
            tables.append("\n".join([f"[{group}]", *(f"{n} = {_toml_value(getattr(cfg, n))}" for n in names)]))
    record = [f"{n} = {_toml_value(getattr(cfg, n))}" for n in RECORD_FIELDS]
    tables.append("\n".join([RECORD_COMMENT, f"[{RECORD_GROUP}]", *record]))
    return "\n\n".join(tables) + "\n"


# the record's table in a printed config: without it, a value equal to --algo's default would count as given and
# stay when the file is loaded with another --algo, where the run's config.json lets it follow the new algorithm
RECORD_COMMENT = ("# which per-algorithm defaults above were given (user_set) and whose defaults the others are "
                  "(defaults_of);\n# without this table every value above counts as given")


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else ("nan" if math.isnan(v) else ("inf" if v > 0 else "-inf"))
    if isinstance(v, int):
        return str(v)
    return json.dumps(v)  # a TOML basic string for the plain strings Config holds
