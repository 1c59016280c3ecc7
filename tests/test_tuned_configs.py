"""The tuned config files in configs/ (each loads, Config accepts it, its values are its source's), the note when an
env trains with hyperparameters tuned for another, and the warning when a config trains nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from fastddpg import Config
from fastddpg.cli import main
from fastddpg.core.configfile import DEFAULTS_ENV, TUNED_CONFIGS, load_config_file, tuning_note

ROOT = Path(__file__).resolve().parent.parent
MUJOCO_TD3 = {"HalfCheetah-v5": "configs/halfcheetah_td3.toml", "Hopper-v5": "configs/hopper_td3.toml",
              "Walker2d-v5": "configs/walker2d_td3.toml"}


def load(rel: str) -> Config:
    return Config(**load_config_file(ROOT / rel))


@pytest.mark.parametrize("env, rel", sorted(MUJOCO_TD3.items()))
def test_mujoco_td3_files_hold_the_rl_zoo_values(env, rel):
    cfg = load(rel)  # Config validates
    # RL Zoo hyperparams/td3.yml, mujoco-defaults, and SB3 TD3's defaults for what the Zoo leaves out
    assert (cfg.env, cfg.algo, cfg.num_envs, cfg.total_steps) == (env, "td3", 1, 1_000_000)
    assert (cfg.actor_lr, cfg.critic_lr, cfg.batch_size) == (1e-3, 1e-3, 256)
    assert (cfg.start_steps, cfg.update_after, cfg.updates_per_step) == (10_000, 10_000, 1.0)
    assert cfg.hidden_sizes == (400, 300) and (cfg.noise, cfg.noise_sigma) == ("gaussian", 0.1)
    assert (cfg.replay_size, cfg.gamma, cfg.tau, cfg.grad_clip_norm) == (1_000_000, 0.99, 0.005, 0.0)
    assert (cfg.policy_noise, cfg.noise_clip, cfg.policy_delay) == (0.2, 0.5, 2)
    text = (ROOT / rel).read_text()
    assert "rl-baselines3-zoo" in text and "hyperparams/td3.yml" in text  # the source is named in the file


@pytest.mark.parametrize("env", sorted(MUJOCO_TD3))
def test_mujoco_action_bounds_make_sb3_noise_units_ours(env):
    """SB3 adds noise_std in its [-1, 1] action space, fastddpg in action units: equal where the bounds are +-1."""
    pytest.importorskip("mujoco")
    import gymnasium as gym

    e = gym.make(env)
    try:
        assert (e.action_space.low == -1).all() and (e.action_space.high == 1).all()
    finally:
        e.close()


def test_tuned_configs_lists_every_file_with_its_env():
    listed = {rel for files in TUNED_CONFIGS.values() for rel in files}
    assert listed == {f"configs/{p.name}" for p in (ROOT / "configs").glob("*.toml")}
    for env, files in TUNED_CONFIGS.items():
        for rel in files:
            assert load(rel).env == env, rel
    assert MUJOCO_TD3.items() <= {e: f[-1] for e, f in TUNED_CONFIGS.items()}.items()


def test_tuning_note():
    assert tuning_note(DEFAULTS_ENV) is None
    assert tuning_note("Hopper-v5", "mine.toml", "Hopper-v5") is None
    assert tuning_note("Hopper-v5", "mine.toml", None) is None  # a file without env: the user's own choice
    note = tuning_note("Hopper-v5")
    assert "Pendulum-v1" in note and "--config configs/hopper_td3.toml" in note
    note = tuning_note("Hopper-v5", "configs/inverted_pendulum_td3.toml", "InvertedPendulum-v5")
    assert "configs/inverted_pendulum_td3.toml, tuned for InvertedPendulum-v5" in note
    assert "configs/ has tuned files for" in tuning_note("Ant-v5")


def test_another_env_on_the_defaults_says_so_at_start(tmp_path, capsys):
    assert main(["run", "--env", "MountainCarContinuous-v0", "--num-envs", "1", "--total-steps", "50",
                 "--update-after", "0", "--start-steps", "0", "--batch-size", "8", "--run-dir",
                 str(tmp_path / "r")]) == 0
    err = capsys.readouterr().err.splitlines()
    notes = [line for line in err if "tuned for Pendulum-v1" in line]
    assert len(notes) == 1 and notes[0].startswith("fastddpg: note: MountainCarContinuous-v0 trains with"), err
    assert not any("warning" in line for line in err)  # this config trains: no idle warning


def test_the_pendulum_defaults_on_pendulum_say_nothing_extra(tmp_path, capsys):
    assert main(["run", "--total-steps", "40", "--num-envs", "1", "--update-after", "0", "--start-steps", "0",
                 "--batch-size", "8", "--run-dir", str(tmp_path / "r")]) == 0
    out = capsys.readouterr()
    assert "note:" not in out.err and "warning" not in out.err + out.out


# --- a config that trains nothing says so --------------------------------------------------------------------------

def test_the_issue_command_warns_at_start_and_in_the_summary(tmp_path, capsys):
    """`fastddpg run --config configs/pendulum_td3.toml --total-steps 3000`: update_after and start_steps are
    10,000 there, so the run only collects random transitions."""
    assert main(["run", "--config", str(ROOT / "configs/pendulum_td3.toml"), "--total-steps", "3000",
                 "--run-dir", str(tmp_path / "r")]) == 0
    out = capsys.readouterr()
    start = [line for line in out.err.splitlines() if line.startswith("fastddpg: warning:")]
    assert len(start) == 2, out.err
    assert "no gradient update will happen: --update-after 10,000 is beyond --total-steps 3,000" in start[0]
    assert "only uniform random actions" in start[1] and "--start-steps 10,000" in start[1]
    lines = out.out.splitlines()
    done = next(i for i, line in enumerate(lines) if line.startswith("done:"))
    assert "0 updates" in lines[done]
    summary = [line for line in lines[done:] if line.startswith("warning:")]
    assert [s.removeprefix("warning: ") for s in summary] == [s.removeprefix("fastddpg: warning: ") for s in start]


@pytest.mark.parametrize("kw, needle", [
    (dict(total_steps=3000, update_after=10_000), "--update-after 10,000 is beyond --total-steps 3,000"),
    (dict(total_steps=100, update_after=0, start_steps=0, batch_size=128), "--batch-size 128 needs more transitions"),
    (dict(updates_per_step=0.0), "--updates-per-step 0 is too small"),
    (dict(total_steps=3001, update_after=3010, num_envs=4),  # 3,004 env steps in whole vector steps of 4
     "--update-after 3,010 is beyond --total-steps 3,001 (3,004 in whole vector steps of 4)"),
    (dict(total_steps=2000, start_steps=2000, update_after=0, num_envs=1), "--start-steps 2,000 covers all"),
])
def test_idle_warnings_name_the_setting(kw, needle):
    warnings = Config(**kw).idle_warnings()
    assert len(warnings) == 1 and needle in warnings[0], warnings


@pytest.mark.parametrize("kw", [
    dict(),  # the defaults train
    dict(total_steps=3000, update_after=3000, num_envs=1, start_steps=0),  # the last step updates once
    dict(total_steps=3001, update_after=3004, num_envs=4, start_steps=0),  # 3,004 steps reach update_after
    dict(total_steps=2001, start_steps=2000, num_envs=1),  # the actor acts on the last step
    dict(total_steps=2000, update_after=0, start_steps=0, updates_per_step=0.001),  # 469 x 4 x 0.001: 1 update
])
def test_configs_that_train_get_no_idle_warning(kw):
    assert Config(**kw).idle_warnings() == []


@pytest.mark.parametrize("kw", [
    dict(total_steps=40, update_after=40, num_envs=1),  # one update, on the last step
    dict(total_steps=39, update_after=40, num_envs=1),  # none
    dict(total_steps=37, update_after=40, num_envs=4),  # 40 steps in whole vector steps: one vector step of updates
    dict(total_steps=60, update_after=0, batch_size=64, num_envs=2),  # the batch never fills
    dict(total_steps=80, update_after=0, batch_size=8, num_envs=4, updates_per_step=0.01),  # 18 x 4 x 0.01 < 1
    dict(total_steps=80, update_after=0, batch_size=8, num_envs=4, updates_per_step=0.02),  # 18 x 4 x 0.02 >= 1
])
def test_the_no_update_warning_agrees_with_the_trainer(kw):
    from fastddpg import train

    cfg = Config(**{"start_steps": 0, "batch_size": 8, "hidden_sizes": (8,), "compile": "off", "device": "cpu",
                    "quiet": True, **kw})
    updates = train(cfg).summary["updates"]
    assert any("no gradient update" in w for w in cfg.idle_warnings()) == (updates == 0), updates
