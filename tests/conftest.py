"""Shared test helpers: a tiny env with a known pattern of terminations and truncations."""

from __future__ import annotations

import atexit
import itertools
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

COUNTING_ID = "FastDDPGTest/Counting-v0"
TIME_LIMIT = 7
TERMINATE_AT = 4


class CountingEnv(gym.Env):
    """obs = [episode id, t, 0]: ids are unique across all instances; episodes whose id is divisible by 3
    terminate after TERMINATE_AT steps, the others run into the TimeLimit (TIME_LIMIT steps, truncation)."""

    _ids = itertools.count(1)
    observation_space = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.ep, self.t = next(self._ids), 0
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        terminated = self.ep % 3 == 0 and self.t == TERMINATE_AT
        return self._obs(), float(action[0]) - 1.0, terminated, False, {}

    def _obs(self):
        return np.array([self.ep, self.t, 0.0], dtype=np.float32)



def pytest_configure(config):
    if COUNTING_ID not in gym.registry:
        gym.register(COUNTING_ID, entry_point=CountingEnv, max_episode_steps=TIME_LIMIT)
    # the runs of one test session (its xdist workers and the runs they start inherit the variable) divide the
    # cores among themselves (fastddpg.core.threads), unaffected by other fastddpg runs on the machine
    if not os.environ.get("FASTDDPG_LEASE_DIR"):
        os.environ["FASTDDPG_LEASE_DIR"] = config._fastddpg_lease_dir = tempfile.mkdtemp(prefix="fastddpg-leases-")
    from fastddpg.core import threads

    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers is not None:
        # one of -n N test processes: its share of the cores for the tests that build no Trainer (an update, verify),
        # so that N processes with torch's default threads each do not oversubscribe the cores; OpenMP's spinning
        # threads made a 1,500-update eager run 5x slower beside another busy test process
        torch.set_num_threads(threads.fair_share(threads.usable_cores(), int(workers)))
    elif getattr(config.option, "numprocesses", None):
        # the xdist controller runs no test but holds a lease for the session, so that every Trainer (auto threads)
        # and every `fastddpg run` the tests start counts at least two runs here and takes no more than its share
        threads.take_lease()


def pytest_unconfigure(config):
    if getattr(config, "_fastddpg_lease_dir", None):
        shutil.rmtree(config._fastddpg_lease_dir, ignore_errors=True)


_TRAINED: dict[tuple[str, ...], Path] = {}  # `fastddpg run` arguments -> the run directory they trained


def trained_copy(args: Sequence[str], dest: Path) -> Path:
    """A finished ``fastddpg run ARGS`` (in process) copied to ``dest``: the run is trained by the first caller in
    this test process and copied for every caller, so the modules that need the same short run (to read, plot,
    evaluate, export or record it) share one training, and each may write into its own copy. The copy's
    JSON and HTML files name ``dest`` (checkpoints still name the directory they were trained in)."""
    from fastddpg.cli import main

    key = tuple(args)
    if key not in _TRAINED:
        source = Path(tempfile.mkdtemp(prefix="fastddpg-trained-")) / dest.name  # the report labels a run by it
        atexit.register(shutil.rmtree, source.parent, ignore_errors=True)
        assert main(["run", *key, "--run-dir", str(source)]) == 0
        _TRAINED[key] = source
    shutil.copytree(_TRAINED[key], dest)
    for text in (f for f in dest.rglob("*") if f.suffix in (".json", ".html")):  # the copy is the run trained there
        text.write_text(text.read_text().replace(str(_TRAINED[key]), str(dest)))
    return dest


@pytest.fixture(autouse=True)
def _seed_torch():
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    yield
    if torch.get_num_threads() != threads:  # a Trainer with auto threads sets them process-wide; the next test
        torch.set_num_threads(threads)  # gets its process's share again


def hyper(gamma=0.99, tau=0.005, clip=1.0, actor_lr=1e-3, critic_lr=1e-3, policy_noise=0.2, noise_clip=0.5):
    """The update's hyperparameters, in the order the tests give them."""
    from fastddpg.learning.update import AdamHyper, Hyper

    return Hyper(gamma, tau, clip, AdamHyper(actor_lr), AdamHyper(critic_lr), policy_noise, noise_clip)


def make_learner(obs_dim, act_dim, hidden, low, high, actor_lr=1e-3, critic_lr=1e-3, device="cpu",
                 layer_norm=False, num_critics=1, policy_delay=2, **hyper_kw):
    """A DDPG (num_critics=1) or TD3 (num_critics=2) algorithm with the given networks and hyperparameters."""
    from fastddpg.algos import DDPG, TD3

    hp = hyper(actor_lr=actor_lr, critic_lr=critic_lr, **hyper_kw)
    if num_critics == 1:
        return DDPG(obs_dim, act_dim, hidden, low, high, device, hp, layer_norm)
    return TD3(obs_dim, act_dim, hidden, low, high, device, hp, layer_norm, policy_delay=policy_delay)


def stop_at(monkeypatch, step: int, action) -> None:
    """Make the trainer call ``action()`` right after the flush at env step ``step``."""
    from fastddpg.training.trainer import Trainer

    original = Trainer.flush

    def flush(self):
        original(self)
        if self.global_step == step:
            action()

    monkeypatch.setattr(Trainer, "flush", flush)


@pytest.fixture(scope="session")
def local_ray():
    """One private local Ray (2 CPUs, no dashboard) for every in-process Ray test of the run: started by the first
    test that asks for it, shut down at the end (each start costs seconds)."""
    ray = pytest.importorskip("ray", reason="Ray Tune is not installed (pip install -e '.[sweep]')")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    yield ray
    ray.shutdown()



def pytest_collection_modifyitems(config, items):
    # pytest-xdist (-n auto --dist loadgroup, pyproject's addopts) runs the tests of one group on one worker, in
    # turn. The tests that talk to the in-process local Ray are one group, so one Ray serves them all; the cluster
    # tests, which start their own Ray in subprocesses (on other ports), are another, so the two longest paths of
    # the suite run side by side. The slow tests are a third: they include the benchmarks, which must not time
    # themselves against each other.
    for item in items:
        if "local_ray" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("ray"))
        elif item.module.__name__.endswith("test_sweep_cluster"):
            item.add_marker(pytest.mark.xdist_group("ray-cluster"))
        elif item.get_closest_marker("slow") is not None:
            item.add_marker(pytest.mark.xdist_group("slow"))
