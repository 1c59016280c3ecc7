"""Helpers that several benchmark scripts share."""

from __future__ import annotations

import subprocess
import venv
from pathlib import Path

import numpy as np
import torch

# the CPU named next to every figure, as `fastddpg verify` names it
from fastddpg.core.cpuinfo import cpu_model as cpu_model

# a time to -200: the rule the run reports use too (once per moment, full windows)
from fastddpg.core.schema import first_crossing as first_crossing

SB3_VENV = Path(__file__).resolve().parent / ".sb3-venv"
WINDOW = 10  # the notebook's moving-average window over episodes


def sync(device: torch.device | str) -> None:
    """Wait for the device's queued work, so the clock reads what it cost (a no-op on the CPU)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


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
