"""No per-step host transfer: device -> host reads made by fastddpg's own code grow with the number of flushes
(reports), not with the number of env steps, with the run directory and both reporters attached.

Every call of torch.Tensor.item / .cpu / .tolist / .numpy / __float__ is counted when the calling frame's module
is part of fastddpg. The one exception is named and counted on its own: a CPU-simulated (Gymnasium) env needs
the actions on the host once per vector step, ``actions.detach().cpu().numpy()`` in `fastddpg.envs.vector.VecEnv.step`.
"""

from __future__ import annotations

import io
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from rich.console import Console

from fastddpg import Config, Trainer
from fastddpg.envs.vector import VecEnv
from fastddpg.reports.reporting import PlainReporter, RichReporter
from fastddpg.runs.rundir import RunWriter

COUNTED = ("item", "cpu", "tolist", "numpy", "__float__")
ACTION_COPY = ("fastddpg.envs.vector", "step")  # VecEnv.step: actions.detach().cpu().numpy(), once per vector step
MAX_PER_FLUSH = 4  # flush: one .cpu().numpy() of metrics + episode log; a probe snapshot: one .cpu().numpy()
LOG_EVERY = 100


@dataclass
class Counts:
    vector_steps: int
    flushes: int
    action_copy: Counter
    other: Counter

    @property
    def n_other(self) -> int:
        return sum(self.other.values())


def counted_run(monkeypatch: pytest.MonkeyPatch, run_dir: Path, total_steps: int, leak: bool = False) -> Counts:
    """Train Pendulum (2 envs) for ``total_steps`` with the run writer and both reporters, counting host reads."""
    counts: Counter = Counter()
    with monkeypatch.context() as mp:
        for name in COUNTED:
            orig = getattr(torch.Tensor, name)

            def wrapped(self, *args, _orig=orig, _name=name, **kwargs):
                frame = sys._getframe(1)
                module = frame.f_globals.get("__name__", "")
                if module == "fastddpg" or module.startswith("fastddpg."):
                    counts[(module, frame.f_code.co_name, _name)] += 1
                return _orig(self, *args, **kwargs)

            mp.setattr(torch.Tensor, name, wrapped)
        flushes = []
        orig_flush = Trainer.flush

        def flush(self):
            flushes.append(self.global_step)
            orig_flush(self)

        mp.setattr(Trainer, "flush", flush)
        if leak:  # negative control: a snapshot (a real device->host read inside fastddpg) at every step
            orig_step = Trainer.step

            def leaky_step(self):
                orig_step(self)
                self.probes.at_end(self)

            mp.setattr(Trainer, "step", leaky_step)
        cfg = Config(env="Pendulum-v1", num_envs=2, total_steps=total_steps, log_every=LOG_EVERY, hidden_sizes=(16,),
                     batch_size=32, start_steps=100, update_after=100, updates_per_step=0.5, probe_n=8,
                     probe_every_episodes=1, device="cpu", run_dir=str(run_dir))  # cpu: the Gymnasium env
        trainer = Trainer(cfg)
        assert isinstance(trainer.env, VecEnv)
        lines: list[str] = []
        rich = RichReporter(total_steps, Console(file=io.StringIO(), force_terminal=True, width=120))
        trainer.callbacks += [RunWriter.create(cfg, trainer, argv=["test"]), PlainReporter(lines.append), rich]
        with rich:
            trainer.train()
    assert trainer.num_updates > 0 and trainer.num_episodes > 0 and trainer.probe_rows and len(lines) == len(flushes)
    action = Counter({k: v for k, v in counts.items() if k[:2] == ACTION_COPY})
    other = Counter({k: v for k, v in counts.items() if k[:2] != ACTION_COPY})
    return Counts(trainer.vector_steps, len(flushes), action, other)


def grows_with_flushes_only(a: Counts, b: Counts) -> bool:
    """b ran longer than a: its extra reads are bounded by its extra flushes, far below its extra steps."""
    return a.n_other <= MAX_PER_FLUSH * (a.flushes + 1) and b.n_other - a.n_other <= MAX_PER_FLUSH * (b.flushes
                                                                                                     - a.flushes)


def test_host_reads_grow_with_flushes_not_steps(monkeypatch, tmp_path):
    short = counted_run(monkeypatch, tmp_path / "short", total_steps=400)
    long = counted_run(monkeypatch, tmp_path / "long", total_steps=800)
    assert (short.vector_steps, short.flushes, long.vector_steps, long.flushes) == (200, 4, 400, 8)
    # the named exception: exactly one action copy (cpu + numpy) per vector step, nothing else in VecEnv.step
    for c in (short, long):
        assert c.action_copy == Counter({(*ACTION_COPY, "cpu"): c.vector_steps,
                                         (*ACTION_COPY, "numpy"): c.vector_steps}), c.action_copy
    # everything else: a few reads per flush (the counter does see them), none per step
    # ... and only where a report pulls the device log, or a probe snapshot is taken
    assert short.n_other > 0, short.other
    assert {k[0] for k in long.other} <= {"fastddpg.training.devicelog", "fastddpg.training.probes"}, long.other
    assert grows_with_flushes_only(short, long), (short.other, long.other)
    assert MAX_PER_FLUSH * (long.flushes - short.flushes) < long.vector_steps - short.vector_steps


def test_the_check_catches_a_per_step_read(monkeypatch, tmp_path):
    short = counted_run(monkeypatch, tmp_path / "short", total_steps=400)
    leaky = counted_run(monkeypatch, tmp_path / "leaky", total_steps=800, leak=True)
    assert leaky.n_other - short.n_other > 200
    assert not grows_with_flushes_only(short, leaky)
