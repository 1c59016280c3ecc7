"""The measured choice between 1 thread and the share (fastddpg.training.thread_tuner), on a simulated clock whose
seconds per update depend on the thread count in effect; and its wiring into the Trainer."""

from __future__ import annotations

import itertools

import pytest
import torch

from fastddpg import Config, Trainer
from fastddpg.core import threads as th
from fastddpg.training import trainer as trainer_module
from fastddpg.training.thread_tuner import ThreadTuner


class Machine:
    """Runs updates in batches of ``batch`` on whatever thread count the tuner last returned; its clock advances by
    ``cost[threads]`` seconds per update (``cost`` may be changed mid-run: the machine's state drifts)."""

    def __init__(self, cost: dict[int, float], share: int = 2, batch: int = 4, **tuner_args) -> None:
        self.cost, self.batch, self.t, self.updates = dict(cost), batch, 0.0, 0
        self.tuner = ThreadTuner(share, clock=lambda: self.t, **tuner_args)
        self.threads = share
        self.history: list[int] = []  # threads in effect, one entry per batch

    def run(self, updates: int) -> None:
        end = self.updates + updates
        while self.updates < end:
            self.history.append(self.threads)
            self.t += self.batch * self.cost[self.threads]
            self.updates += self.batch
            self.threads = self.tuner.observe(self.updates)


def test_takes_one_thread_where_it_is_faster_and_keeps_the_share_where_that_is():
    slow_pair = Machine({1: 1.0, 2: 1.25}, window=40, every=400)
    slow_pair.run(2000)
    assert slow_pair.tuner.chosen == 1 and slow_pair.threads == 1
    first = slow_pair.tuner.probes[0]
    assert first["threads"] == 1 and first["seconds_per_update"] == {"1": 1.0, "2": 1.25}
    # after the first probe (4 windows of 40 updates from update 40) it runs on 1 thread except in re-check windows
    settled = slow_pair.history[(40 + 4 * 40) // 4:]
    assert settled.count(2) <= len(settled) * 0.15

    fast_pair = Machine({1: 1.0, 2: 0.7}, window=40, every=400)
    fast_pair.run(2000)
    assert fast_pair.tuner.chosen == 2 and fast_pair.threads == 2
    assert all(p["threads"] == 2 for p in fast_pair.tuner.probes) and len(fast_pair.tuner.probes) >= 3


def test_a_probe_is_other_current_other_current_then_other_current():
    m = Machine({1: 1.0, 2: 1.0}, window=8, every=64, batch=1)
    m.run(8 + 4 * 8 + 64 + 2 * 8)
    runs = [(n, len(list(g))) for n, g in itertools.groupby(m.history)]
    # the share until `window` updates after the first batch the tuner sees; windows other, current, other,
    # current; the choice (a tie: the share) for `every` updates after the probe's last window; the re-check's window
    # on the other count
    assert runs[:6] == [(2, 1 + 8), (1, 8), (2, 8), (1, 8), (2, 8 + 64), (1, 8)]


def test_a_tie_within_the_margin_keeps_what_runs():
    m = Machine({1: 1.0, 2: 1.02}, window=40, every=400, margin=0.03)
    m.run(2000)
    assert m.tuner.chosen == 2 and all(p["threads"] == 2 for p in m.tuner.probes)


def test_follows_the_machine_when_its_state_changes():
    m = Machine({1: 1.0, 2: 0.7}, window=40, every=400)
    m.run(1000)
    assert m.tuner.chosen == 2
    m.cost[2] = 1.3  # the second core got slow
    m.run(400 + 2 * 40 + 8)
    assert m.tuner.chosen == 1
    m.cost[2] = 0.7
    m.run(400 + 2 * 40 + 8)
    assert m.tuner.chosen == 2


def test_a_window_slower_than_its_probe_measured_starts_a_probe_at_once():
    m = Machine({1: 1.0, 2: 0.7}, window=40, every=10**9)  # no scheduled re-check in this run
    m.run(2000)
    assert m.tuner.chosen == 2 and len(m.tuner.probes) == 1  # a steady machine: no probe after the first
    m.cost[2] = 1.3  # another process takes the second core
    m.run(40 + 2 * 40 + 4)  # one window at the chosen count, then the probe's two
    assert m.tuner.chosen == 1
    assert m.tuner.probes[-1]["after"] == "slower" and m.tuner.probes[0]["after"] == "scheduled"


def test_one_core_or_a_new_share():
    alone = Machine({1: 1.0}, share=1, window=40)
    alone.run(1000)
    assert set(alone.history) == {1} and alone.tuner.probes == []

    m = Machine({1: 1.0, 2: 1.25, 4: 0.5}, window=40, every=400)
    m.run(1000)
    assert m.tuner.chosen == 1
    m.threads = m.tuner.set_share(4, m.updates)  # cores freed: the new share runs, then is measured
    assert m.threads == 4 and m.tuner.chosen == 4
    m.run(400)
    assert m.tuner.chosen == 4 and m.tuner.probes[-1]["seconds_per_update"] == {"1": 1.0, "4": 0.5}
    assert m.tuner.set_share(1, m.updates) == 1  # another run started
    m.threads = 1
    m.run(400)
    assert set(m.history[-100:]) == {1}


@pytest.fixture
def two_cores_alone(tmp_path, monkeypatch):
    """This process alone among fastddpg runs (a lease directory of the test's own) on 2 usable cores; torch's
    thread count restored after."""
    th.release_lease()
    monkeypatch.setenv(th.LEASE_DIR_ENV, str(tmp_path / "leases"))
    monkeypatch.setattr(th, "usable_cores", lambda: 2)
    before = torch.get_num_threads()
    yield
    th.release_lease()
    torch.set_num_threads(before)


def _trainer(threads: int, compile_mode: str = "off") -> Trainer:
    cfg = Config(total_steps=700, num_envs=2, hidden_sizes=(8,), batch_size=8, start_steps=20, update_after=20,
                 log_every=100, device="cpu", compile=compile_mode, quiet=True, threads=threads)
    return Trainer(cfg)


def test_the_trainer_runs_on_the_count_it_measures_faster(two_cores_alone, monkeypatch):
    """A short auto run with the tuner's minimum lowered and a clock on which 1 thread is faster: the trainer
    switches to 1 thread, says so in thread_changes ("measured") and summary.json's thread_probes; a run with
    --threads 2, or a compiled one, is never tuned."""
    monkeypatch.setattr(trainer_module, "TUNE_MIN_UPDATES", 100)
    trainer = _trainer(0)
    assert trainer.thread_tuner is not None and trainer.threads == 2
    clock = {"t": 0.0, "updates": 0}

    def fake_clock() -> float:  # seconds per update: 1 ms on 1 thread, 2 ms on 2
        clock["t"] += (trainer.num_updates - clock["updates"]) * 1e-3 * torch.get_num_threads()
        clock["updates"] = trainer.num_updates
        return clock["t"]

    assert trainer.thread_tuner.clock == trainer._training_clock
    trainer.thread_tuner.clock = fake_clock
    trainer.train()
    assert trainer.threads == 1 == torch.get_num_threads()
    assert [c["threads"] for c in trainer.thread_changes] == [1]
    assert trainer.thread_changes[0]["why"] == "measured"
    summary = trainer.summary()
    assert summary["threads"] == 1 and summary["thread_probes"][0]["threads"] == 1
    assert _trainer(2).thread_tuner is None
    monkeypatch.setattr(trainer_module, "TUNE_MIN_UPDATES", 10**9)
    assert _trainer(0).thread_tuner is None  # too short to pay back


def test_the_tuners_clock_stands_still_during_callbacks_reports_and_checkpoints(two_cores_alone, monkeypatch):
    """On a clock that advances only inside the callbacks' hooks (an evaluation, a run directory's writes), the
    trainer's `_training_clock` ends where it started; outside them it advances with the clock."""
    now = [1000.0]
    monkeypatch.setattr(trainer_module.time, "perf_counter", lambda: now[0])

    class SlowCallback:
        def __call__(self, trainer, report):  # at each report, inside flush
            now[0] += 3.0

        def after_step(self, trainer):
            now[0] += 1.0

        def after_report(self, trainer, report):
            now[0] += 2.0

    cfg = Config(total_steps=300, num_envs=2, hidden_sizes=(8,), batch_size=8, start_steps=20, update_after=20,
                 log_every=100, device="cpu", compile="off", quiet=True, threads=0)
    trainer = Trainer(cfg, callbacks=[SlowCallback()])
    start = trainer._training_clock()
    trainer.train()
    assert now[0] > 1000.0 + 150 and trainer._training_clock() == start
    now[0] += 2.5
    assert trainer._training_clock() == start + 2.5


def test_a_resumed_run_warms_up_before_its_first_probe():
    m = Machine({1: 1.0, 2: 1.25}, window=40, every=400)
    m.updates = 50_000  # restored from a checkpoint
    m.run(4 + 40)  # the first batch the tuner sees, then `window` updates on the share before the probe starts
    assert set(m.history) == {2} and m.tuner.probing
    m.run(4 * 40)
    assert m.tuner.chosen == 1 and m.tuner.probes[0]["update"] == 50_000 + 4 + 40 + 4 * 40


def test_a_new_share_during_a_probe_drops_it():
    m = Machine({1: 1.0, 2: 1.25, 4: 0.5}, window=40, every=400)
    m.run(60)
    assert m.tuner.probing
    m.threads = m.tuner.set_share(4, m.updates)
    assert m.threads == 4 and not m.tuner.probing and m.tuner.chosen == 4
    m.run(40 + 4 * 40)
    assert m.tuner.chosen == 4 and m.tuner.probes[-1]["seconds_per_update"] == {"1": 1.0, "4": 0.5}
