"""The notebook's probe snapshots, as a trainer callback: the actor's action and Q(s, mu(s)) on fixed states.

PROBE_N states are drawn from the replay buffer once it holds max(PROBE_N, BATCH_SIZE) transitions (with a
generator of their own, so diagnostics never change what is learned), and stay fixed. A snapshot is taken at the
first report after another ``probe_every_episodes`` episodes (over all envs) have ended, and one at the end of
the run. Each snapshot is one small device-to-host transfer at a report, never per step.

A population (K members) has probe states per member, drawn from the member's own replay rows, and each snapshot
evaluates every member's actor and Q_1 on its own states: rows start with the member. Snapshots are taken when
another ``probe_every_episodes`` episodes per member (the population's episodes / K) have ended.
"""

from __future__ import annotations

from typing import Any

import torch

from ..core.schema import ProbeRow


class ProbeRecorder:
    """The trainer's probe snapshots: the probe states, the snapshot counter and the probe rows (`ProbeRow`). The
    trainer calls `at_report` before it builds each report (the new rows go into the report) and `at_end` once
    when the run ends."""

    def __init__(self, probe_n: int, every_episodes: int, batch_size: int, generator: torch.Generator,
                 members: int = 0) -> None:
        self.probe_n, self.every_episodes, self.batch_size = probe_n, every_episodes, batch_size
        self.members = members  # 0: a single run (rows without a member column)
        self.generator = generator
        self.states: torch.Tensor | None = None  # (probe_n, obs_dim) once drawn; (K, probe_n, obs_dim)
        self.bucket = 0  # num_episodes // every_episodes at the last snapshot
        self.rows: list[ProbeRow] = []  # the run's history (a resumed run's: from its probes.csv)
        self.snapshots = 0  # snapshots taken so far (counters: what a checkpoint holds)
        self.last_step = -1  # the env step of the last snapshot

    def at_report(self, trainer: Any) -> list[ProbeRow]:
        """At a report: draw the probe states once the buffer can give them; snapshot if enough episodes ended.
        Returns the new rows."""
        self._draw(trainer)
        if self.states is not None and self._episodes(trainer) // self.every_episodes > self.bucket:
            return self.snapshot(trainer)
        return []

    def at_end(self, trainer: Any) -> list[ProbeRow]:
        """The end-of-run snapshot, unless the last report already took one at this step. Returns the new rows."""
        self._draw(trainer)
        if self.states is None or self.last_step == trainer.global_step:
            return []
        return self.snapshot(trainer)

    def _draw(self, trainer: Any) -> None:
        if self.states is None and len(trainer.buffer) >= max(self.probe_n, self.batch_size):
            self.states = trainer.buffer.sample_batch(self.probe_n, self.generator).obs.clone()
            self.bucket = self._episodes(trainer) // self.every_episodes

    def _episodes(self, trainer: Any) -> int:
        return trainer.num_episodes // max(1, self.members)

    @torch.no_grad()
    def snapshot(self, trainer: Any) -> list[ProbeRow]:
        """Actor action (its norm for multi-dimensional actions) and Q_1(s, mu(s)) on every probe state; returns
        the snapshot's rows."""
        assert self.states is not None
        self.bucket = self._episodes(trainer) // self.every_episodes
        algo = trainer.algo
        a = algo.policy(self.states)
        q = algo.q1(self.states, a).reshape(-1)
        stat = a[..., 0] if a.shape[-1] == 1 else torch.linalg.vector_norm(a, dim=-1)
        host = torch.stack([stat.reshape(-1), q]).cpu().numpy()
        new = [ProbeRow(j // self.probe_n, self.snapshots, self._episodes(trainer), trainer.global_step,
                        j % self.probe_n, float(host[0, j]), float(host[1, j])) for j in range(host.shape[1])]
        self.rows += new
        self.snapshots += 1
        self.last_step = trainer.global_step
        return new

    def state_dict(self) -> dict[str, Any]:
        """The probe states and counters (not the rows: they are the run directory's probes.csv)."""
        return {"states": self.states, "bucket": self.bucket, "snapshots": self.snapshots,
                "last_step": self.last_step}

    def load_state_dict(self, state: dict[str, Any], device: torch.device) -> None:
        states = state["states"]
        self.states = None if states is None else states.to(device)
        self.bucket = int(state["bucket"])
        self.snapshots, self.last_step = int(state["snapshots"]), int(state["last_step"])
        self.rows = []
