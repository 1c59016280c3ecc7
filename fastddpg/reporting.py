"""Console reporting. Reporters are trainer callbacks: they only see data the trainer already pulled to the
host at a flush, so they never add a device sync of their own."""

from __future__ import annotations

from typing import Any

import pandas as pd


class PlainReporter:
    """One plain line per flush: steps, episodes, returns, losses, Q vs y, throughput."""

    def __init__(self, print_fn: Any = print) -> None:
        self.print = print_fn
        self.returns: list[float] = []

    def __call__(self, trainer: Any, episodes: pd.DataFrame, row: dict[str, float] | None) -> None:
        self.returns.extend(episodes["return"].tolist())
        total = trainer.cfg.total_steps
        parts = [f"step {trainer.global_step:>9,}/{total:,}", f"ep {trainer.num_episodes:>5}"]
        if self.returns:
            last10 = sum(self.returns[-10:]) / len(self.returns[-10:])
            parts.append(f"return {self.returns[-1]:8.1f} (last10 {last10:8.1f})")
        if row is not None:
            parts += [f"critic {row['critic_loss']:.4g}", f"actor {row['actor_loss']:.4g}",
                      f"Q {row['q_mean']:.3g} y {row['y_mean']:.3g}",
                      f"{row['env_steps_per_sec']:,.0f} steps/s", f"{row['updates_per_sec']:,.0f} upd/s"]
        self.print(" | ".join(parts))


def print_summary(summary: dict[str, Any], print_fn: Any = print) -> None:
    """The end-of-run summary."""
    s = summary
    print_fn(f"done: {s['episodes']} episodes, {s['env_steps']:,} env steps, {s['updates']:,} updates in "
             f"{s['wall_time_s']:.1f} s | {s['env_steps_per_sec']:,.0f} env steps/s, "
             f"{s['updates_per_sec']:,.0f} updates/s | replay ratio {s['replay_ratio']:.3f} | "
             f"last-10-episode mean return {s['last10_mean_return']:.1f}")
