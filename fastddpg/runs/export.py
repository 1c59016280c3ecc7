"""``fastddpg export RUN_DIR --format torchscript|onnx``: the trained policy as a file that runs without fastddpg.

The exported graph is the actor itself, obs (B, obs_dim) float32 -> action (B, act_dim) float32 inside the env's
action bounds (tanh, then the run's ``action_scale`` and ``action_bias``), for any batch size B:

- TorchScript (``torch.jit.script``), default ``RUN_DIR/actor.ts.pt``: ``torch.jit.load(path)`` with plain torch;
- ONNX (``torch.onnx.export(dynamo=True)``, input ``obs``, output ``action``, batch axis dynamic), default
  ``RUN_DIR/actor.onnx``: ``onnxruntime.InferenceSession(path)``. Needs the ``export`` extra
  (onnx, onnxscript, onnxruntime).

The weights are the run's final ``actor.pt``, or for a run that did not finish its latest checkpoint; with
``--which best`` its ``best_actor.pt`` (``--eval-every``). They are loaded by `fastddpg.runs.policy.load_policy`, the
loader ``fastddpg.load_policy`` is, so an exported file acts as ``load_policy(...).predict`` does.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import warnings
from pathlib import Path

import torch
from torch import nn

from ..core.config import ConfigError
from ..core.fileio import atomic_path, atomic_write
from ..learning.networks import policy_obs_dim

FORMATS = {"torchscript": "actor.ts.pt", "onnx": "actor.onnx"}
EXPORT_HINT = "pip install 'fastddpg[export]'"


def export_policy(policy: nn.Module, fmt: str, out: str | Path) -> Path:
    """Write ``policy`` (obs (B, obs_dim) -> action (B, act_dim)) to ``out`` as ``fmt`` ('torchscript' or
    'onnx'). Returns ``out``."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format={fmt!r} is invalid: choose one of {', '.join(FORMATS)}.")
    out = Path(out)
    if not out.parent.is_dir():
        raise ConfigError(f"--out={out}: the directory {out.parent} does not exist; create it or choose another.")
    policy = copy.deepcopy(policy).cpu().eval()
    for p in policy.parameters():
        p.requires_grad_(False)
    if fmt == "torchscript":
        with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript (for torch.export); it still works
            warnings.simplefilter("ignore", DeprecationWarning)
            scripted = torch.jit.script(policy)
            atomic_write(out, lambda f: torch.jit.save(scripted, f))  # a file object: a full disk is an OSError
    else:
        _export_onnx(policy, out)
    return out


def _export_onnx(policy: nn.Module, out: Path) -> None:
    try:
        import onnx  # noqa: F401  (the exporter needs both; say so before it fails deep inside)
        import onnxscript  # noqa: F401
    except ImportError as e:
        raise ConfigError(f"ONNX export needs {e.name}: {EXPORT_HINT}") from None
    obs_dim = policy_obs_dim(policy)
    example = torch.zeros(2, obs_dim)  # batch 2: a batch of 1 would be specialised, not kept dynamic
    batch = torch.export.Dim("batch")
    # the dynamo exporter prints its progress, logs warnings about torchvision ops and emits deprecation
    # warnings from torch's own internals: none of it is the user's to act on
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            program = torch.onnx.export(policy, (example,), dynamo=True, input_names=["obs"],
                                        output_names=["action"], dynamic_shapes=({0: batch},))
        with atomic_path(out) as tmp:
            program.save(str(tmp), external_data=False)
    finally:
        logger.setLevel(level)


def default_out(run_dir: str | Path, fmt: str) -> Path:
    """``RUN_DIR/actor.ts.pt`` or ``RUN_DIR/actor.onnx``."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format={fmt!r} is invalid: choose one of {', '.join(FORMATS)}.")
    return Path(run_dir) / FORMATS[fmt]
