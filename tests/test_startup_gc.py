"""`fastddpg run`'s garbage collector: paused while the command starts and the start-up's objects frozen, only in
a process the command owns; a Python caller's collector is left as it is."""

from __future__ import annotations

import ast
import gc
import subprocess
import sys

import pytest

from fastddpg.cli import main
from fastddpg.cli.startup_gc import StartupCollector


@pytest.fixture
def collector_restored():
    """The test process's collector as it was, whatever a test did to it."""
    enabled = gc.isenabled()
    yield
    gc.unfreeze()
    (gc.enable if enabled else gc.disable)()


def test_paused_until_started_then_frozen_and_back_on(collector_restored):
    gc.enable()
    with StartupCollector(owns_process=True) as startup:
        assert not gc.isenabled()
        startup.started()
        assert gc.isenabled() and gc.get_freeze_count() > 0
        startup.started()  # a second call changes nothing
    assert gc.isenabled()


def test_an_error_before_the_start_turns_it_back_on_without_freezing(collector_restored):
    gc.enable()
    frozen = gc.get_freeze_count()
    with pytest.raises(RuntimeError), StartupCollector(owns_process=True):
        assert not gc.isenabled()
        raise RuntimeError("bad input")
    assert gc.isenabled() and gc.get_freeze_count() == frozen


@pytest.mark.parametrize("enabled", [True, False])
def test_a_callers_process_is_left_as_it_is(collector_restored, enabled):
    (gc.enable if enabled else gc.disable)()
    frozen = gc.get_freeze_count()
    with StartupCollector(owns_process=False) as startup:
        assert gc.isenabled() == enabled
        startup.started()
    assert gc.isenabled() == enabled and gc.get_freeze_count() == frozen
    with StartupCollector(owns_process=True) as startup:  # a collector the caller turned off stays off
        startup.started()
    assert gc.isenabled() == enabled


def test_run_called_from_python_leaves_the_collector_alone(tmp_path, collector_restored):
    gc.enable()
    frozen = gc.get_freeze_count()
    assert main(["run", "--total-steps", "300", "--num-envs", "2", "--update-after", "200", "--hidden-sizes", "16",
                 "--device", "cpu", "--quiet", "--run-dir", str(tmp_path / "run")]) == 0
    assert gc.isenabled() and gc.get_freeze_count() == frozen


def test_the_command_freezes_its_start_up_and_trains_with_the_collector_on(tmp_path):
    """The command line's own process (``main()`` reading sys.argv): what the imports built (torch's modules among
    it) is frozen, and the collector is on when the envs are made (an async vector env's forked workers inherit
    it) and during training."""
    probe = (
        "import gc, sys\n"
        "import fastddpg.training.trainer as trainer\n"
        "seen = []\n"
        "train, make_env = trainer.Trainer.train, trainer.make_env\n"
        "def spy(self, *a, **k):\n"
        "    seen.append((gc.isenabled(), gc.get_freeze_count()))\n"
        "    return train(self, *a, **k)\n"
        "def env_spy(*a, **k):\n"
        "    seen.append((gc.isenabled(), gc.get_freeze_count()))\n"
        "    return make_env(*a, **k)\n"
        "trainer.Trainer.train, trainer.make_env = spy, env_spy\n"
        "from fastddpg.cli import main\n"
        f"sys.argv = ['fastddpg', 'run', '--total-steps', '300', '--num-envs', '2', '--update-after', '200', "
        f"'--hidden-sizes', '16', '--device', 'cpu', '--quiet', '--run-dir', {str(tmp_path / 'run')!r}]\n"
        "rc = main()\n"
        "print(rc, seen)\n")
    p = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    rc, seen = p.stdout.strip().splitlines()[-1].split(" ", 1)
    (env_enabled, _), (enabled, frozen) = ast.literal_eval(seen)
    assert rc == "0" and env_enabled and enabled and frozen > 50_000, p.stdout
