"""Helpers that several benchmark scripts share."""

from __future__ import annotations

import numpy as np
import torch

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
