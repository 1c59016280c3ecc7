"""Helpers that several benchmark scripts share."""

from __future__ import annotations

import subprocess
import venv
from pathlib import Path

import numpy as np
import torch

# the CPU named next to every figure, as `fastddpg verify` names it
from fastddpg.core.cpuinfo import cpu_model as cpu_model

SB3_VENV = Path(__file__).resolve().parent / ".sb3-venv"
WINDOW = 10  # the notebook's moving-average window over episodes


def sync(device: torch.device | str) -> None:
    """Wait for the device's queued work, so the clock reads what it cost (a no-op on the CPU)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def first_crossing(moments: list[float], returns: list[float], threshold: float, window: int = WINDOW
                   ) -> int | None:
    """The index of the episode at which the mean return of the last ``window`` episodes first reaches
    ``threshold`` (None: never). ``moments``: when each episode ended (env step or seconds), ``returns`` its
    return, both in the order the episodes ended.

    Checked once per moment, after every episode that ended then: with N envs, N episodes end at one env step,
    and checking after each of them (in the arbitrary order they were logged) would give that run N chances at
    every moment where a one-env run has one. Only full windows count, as the notebook's moving average."""
    curve = moving_mean(returns, window)
    n = len(returns)
    for i in range(window - 1, n):
        if (i + 1 == n or moments[i + 1] != moments[i]) and curve[i] >= threshold:
            return i
    return None


def moving_mean(values: list[float], window: int = WINDOW) -> list[float]:
    """Mean of the last ``window`` values at each position (fewer at the start)."""
    c = np.cumsum(np.asarray(values, dtype=np.float64))
    out = []
    for i in range(len(values)):
        lo = i - window
        out.append(float((c[i] - (c[lo] if lo >= 0 else 0.0)) / min(i + 1, window)))
    return out


def sb3_python(path: Path = SB3_VENV) -> Path:
    """The python of a virtual environment with torch 2.13.0 (CPU), stable-baselines3, sb3-contrib and
    gymnasium[mujoco], made at ``path`` (bench/.sb3-venv) on first use: the peers run there, apart from fastddpg's
    environment. A venv made before sb3-contrib was on the list gets it added."""
    python = path / "bin" / "python"
    if not python.exists():
        venv.create(path, with_pip=True)
        for req in (["torch==2.13.0"], ["stable-baselines3", "sb3-contrib", "gymnasium[mujoco]"]):
            subprocess.run([str(python), "-m", "pip", "install", "-q", *req], check=True)
    elif subprocess.run([str(python), "-c", "import sb3_contrib"], capture_output=True, check=False).returncode:
        subprocess.run([str(python), "-m", "pip", "install", "-q", "sb3-contrib"], check=True)
    return python
