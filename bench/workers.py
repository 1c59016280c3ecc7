"""Run benchmark configurations each in its own process, so that their timings stay honest."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def run_workers(script: str | Path, specs: list[dict[str, Any]], jobs: int,
                on_result: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """``python SCRIPT --worker SPEC`` for each spec, ``jobs`` at a time; each worker prints its result as the
    last line of stdout, in JSON. Returns the results in the order of ``specs``."""

    def one(spec: dict[str, Any]) -> dict[str, Any]:
        p = subprocess.run([sys.executable, str(script), "--worker", json.dumps(spec)], capture_output=True,
                           text=True, cwd=ROOT, check=False)
        if p.returncode != 0:
            raise RuntimeError(f"run {spec} failed: {p.stderr.strip().splitlines()[-3:]}")
        rec = json.loads(p.stdout.strip().splitlines()[-1])
        if on_result is not None:
            on_result(rec)
        return rec

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(one, specs))


def set_worker_threads(spec: dict[str, Any]) -> None:
    """In a worker process: torch's intra-op threads as ``spec["threads"]`` asks (0 or absent: torch's default).
    With ``jobs`` runs on as many cores, 1 thread each keeps each run's timing that of a single-threaded run."""
    if spec.get("threads"):
        import torch

        torch.set_num_threads(spec["threads"])
