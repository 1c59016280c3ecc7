"""The device-side log of a run: what happens between two reports stays on the training device, and comes to the
host in one transfer (`DeviceLog.pull`), decoded into episode rows and one update row.

Per vector step the trainer records, for every env, (ended, episode return so far, episode length so far) into
a (chunk_len, N, 3) device tensor; per update it adds the update's metrics to a device sum. A report pulls the
filled part of the chunk, the metric sums and any extra device values (the health check's) in one ``.cpu()``.

A population of K members logs K*N envs per vector step (member-major columns) and K rows of metric sums; its
``chunk_len`` counts vector steps of one member's N envs, so a report still comes every ``log_every`` env steps
per member.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch

from ..core.schema import EpisodeRow


class Pulled(NamedTuple):
    """One report's data on the host. metric_sums (num_metrics,), or (K, num_metrics) for a population; extra: the
    caller's values; steps: (pos, N, 3) (ended, return, length) per recorded vector step and env; walls (pos,):
    seconds since the run started at each of those steps; updates / actor_updates: updates since the last pull, and
    how many of them were actor steps."""

    metric_sums: np.ndarray
    extra: np.ndarray
    steps: np.ndarray
    walls: np.ndarray
    updates: int
    actor_updates: int


class DeviceLog:
    """Accumulates per-step episode ends and per-update metric sums on ``device`` between reports.

    ``chunk_len`` vector steps fit (``ceil(log_every / num_envs)``): the trainer reports when `full`.
    """

    def __init__(self, num_envs: int, log_every: int, num_metrics: int, device: torch.device,
                 members: int = 0) -> None:
        self.num_envs = num_envs * max(1, members)  # columns of the chunk: every env of every member
        self.chunk_len = max(1, math.ceil(log_every / num_envs))
        self.chunk = torch.zeros(self.chunk_len, self.num_envs, 3, device=device)
        self.walls = np.zeros(self.chunk_len)
        self.pos = 0
        self.metric_sum = torch.zeros(*((members,) if members else ()), num_metrics, device=device)
        self.updates = 0
        self.actor_updates = 0

    @property
    def full(self) -> bool:
        return self.pos == self.chunk_len

    @property
    def pending(self) -> bool:
        """Whether anything was recorded since the last pull."""
        return bool(self.pos or self.updates)

    def record_step(self, ended: torch.Tensor, ep_return: torch.Tensor, ep_len: torch.Tensor, wall: float) -> None:
        """One vector step: ended, ep_return, ep_len (N,) each (the returns and lengths before any reset)."""
        self.chunk[self.pos] = torch.stack([ended, ep_return, ep_len], dim=-1)
        self.walls[self.pos] = wall
        self.pos += 1

    def record_update(self, metrics: torch.Tensor, actor_step: bool) -> None:
        """One update's metrics (num_metrics,) (a population's: (K, num_metrics)), added on the device."""
        self.metric_sum += metrics
        self.updates += 1
        self.actor_updates += actor_step

    def pull(self, extra: torch.Tensor) -> Pulled:
        """Everything since the last pull, and ``extra`` (1-D, float), in one device-to-host transfer; then
        start over."""
        pos, nm, ne = self.pos, self.metric_sum.numel(), extra.shape[0]
        host = torch.cat([self.metric_sum.reshape(-1), extra, self.chunk[:pos].reshape(-1)]).cpu().numpy()
        pulled = Pulled(host[:nm].reshape(self.metric_sum.shape), host[nm:nm + ne],
                        host[nm + ne:].reshape(pos, self.num_envs, 3), self.walls[:pos].copy(), self.updates,
                        self.actor_updates)
        self.reset()
        return pulled

    def reset(self) -> None:
        self.metric_sum.zero_()
        self.pos = self.updates = self.actor_updates = 0


def episode_rows(p: Pulled, first_vector_step: int, next_episode: Sequence[int]) -> list[EpisodeRow]:
    """The episodes that ended in ``p``, in the order they ended (by step, member, env), of a run of
    K = len(next_episode) members (1: a single run, member 0); env is the env within its member, global_step counts
    one member's env steps, and member k numbers its episodes on from ``next_episode[k]``. ``first_vector_step``
    is the number of vector steps done before ``p``'s first."""
    members = len(next_episode)
    n = p.steps.shape[1] // members if p.steps.ndim == 3 else 0
    counts = list(next_episode)
    rows = []
    for r, e in zip(*np.nonzero(p.steps[:, :, 0] > 0.5), strict=True):
        k, env = divmod(int(e), n)
        rows.append(EpisodeRow(member=k, episode=counts[k], env=env, global_step=int((first_vector_step + r + 1) * n),
                               return_=float(p.steps[r, e, 1]), length=int(p.steps[r, e, 2]),
                               wall_time=float(p.walls[r])))
        counts[k] += 1
    return rows


def metric_means(p: Pulled, metric_names: tuple[str, ...], actor_step_metrics: frozenset[str],
                 member: int | None = None) -> dict[str, float]:
    """The means of ``p``'s update metrics: over all its updates, or over its actor steps for the metrics in
    ``actor_step_metrics`` (NaN where there were none). ``member``: that row of a population's sums."""
    means = {}
    sums = p.metric_sums if member is None else p.metric_sums[member]
    for name, total in zip(metric_names, sums, strict=True):
        count = p.actor_updates if name in actor_step_metrics else p.updates
        means[name] = float(total) / count if count else float("nan")
    return means
