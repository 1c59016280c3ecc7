"""Per-algorithm defaults of shared Config fields (`AlgoSpec.defaults`): a Config with an algorithm takes that
algorithm's defaults for every field the user did not give, however the Config is built (keyword, flags, config
file, from_dict, dataclasses.replace, --grid members), and the record in config.json lets a saved config follow
another algorithm's defaults while an old config.json (no record) loads exactly as it was."""

from __future__ import annotations

import dataclasses
import json

import pytest

from fastddpg import Config
from fastddpg.cli.main import build_parser
from fastddpg.cli.options import config_from_args
from fastddpg.core.config import RECORD_FIELDS, algorithm_default
from fastddpg.core.configfile import load_config_file
from fastddpg.core.registry import ALGORITHMS, algorithm_defaulted

SB3_SAC = {"actor_lr": 3e-4, "critic_lr": 3e-4, "batch_size": 256, "replay_size": 1_000_000, "start_steps": 100,
           "update_after": 100, "grad_clip_norm": 0.0, "tau": 0.005, "gamma": 0.99, "hidden_sizes": (256, 256),
           "updates_per_step": 1.0}


def values(cfg: Config, names) -> dict:
    return {n: getattr(cfg, n) for n in names}


def test_sac_takes_stable_baselines3_defaults_and_ddpg_keeps_the_notebooks():
    assert values(Config(algo="sac"), SB3_SAC) == SB3_SAC
    ddpg = Config()
    assert (ddpg.actor_lr, ddpg.batch_size, ddpg.grad_clip_norm, ddpg.start_steps) == (1e-3, 128, 1.0, 2_000)
    assert values(Config(algo="td3"), algorithm_defaulted()) == values(ddpg, algorithm_defaulted())
    assert ddpg.user_set == () and ddpg.defaults_of == "ddpg"


def test_a_field_the_user_gives_is_kept_whatever_the_algorithm():
    cfg = Config(algo="sac", actor_lr=1e-3, batch_size=128)  # 1e-3 and 128 are also DDPG's defaults
    assert (cfg.actor_lr, cfg.batch_size, cfg.critic_lr) == (1e-3, 128, 3e-4)
    assert cfg.user_set == ("actor_lr", "batch_size")
    args = build_parser().parse_args(["run", "--algo", "sac", "--critic-lr", "1e-3"])
    from_flags = config_from_args(args)
    assert (from_flags.actor_lr, from_flags.critic_lr) == (3e-4, 1e-3)


def test_a_config_file_value_is_given_and_the_rest_follow_the_algorithm(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[training]\nalgo = "sac"\nbatch_size = 64\n')
    cfg = Config(**load_config_file(path))
    assert (cfg.batch_size, cfg.actor_lr, cfg.grad_clip_norm) == (64, 3e-4, 0.0)


def test_a_saved_sac_config_loaded_as_ddpg_follows_ddpg_but_for_what_the_user_set(tmp_path):
    sac = Config(algo="sac", actor_lr=5e-4)
    saved = json.loads(json.dumps(sac.to_dict()))  # as config.json holds it
    assert saved["user_set"] == ["actor_lr"] and saved["defaults_of"] == "sac"
    assert Config.from_dict(saved) == sac and Config.from_dict(saved).user_set == ("actor_lr",)
    ddpg = Config.from_dict({**saved, "algo": "ddpg"})
    assert (ddpg.actor_lr, ddpg.critic_lr, ddpg.batch_size, ddpg.grad_clip_norm) == (5e-4, 1e-3, 128, 1.0)
    # an override given along with the algorithm is kept (it differs from the carried-over default)
    over = Config.from_dict({**saved, "algo": "ddpg", "batch_size": 512})
    assert (over.batch_size, over.replay_size) == (512, 200_000)
    # and back: DDPG's carried-over defaults follow SAC again
    assert values(Config.from_dict({**ddpg.to_dict(), "algo": "sac"}), SB3_SAC) == {**SB3_SAC, "actor_lr": 5e-4}
    # a run's config.json as a config file (fastddpg run --config RUN/config.json --algo ddpg)
    (tmp_path / "config.json").write_text(json.dumps({"config": saved}))
    assert Config(**{**load_config_file(tmp_path / "config.json"), "algo": "ddpg"}) == ddpg


def test_a_config_saved_before_the_record_loads_exactly():
    """config.json of runs made before per-algorithm defaults: no user_set/defaults_of, every value as it was
    (a SAC run of then had grad_clip_norm 1.0 and lr 1e-3), even when loaded with another algorithm."""
    old = {k: v for k, v in Config(algo="sac", actor_lr=1e-3, critic_lr=1e-3, grad_clip_norm=1.0, batch_size=128,
                                   replay_size=200_000, start_steps=2_000, update_after=1_000).to_dict().items()
           if k not in RECORD_FIELDS}
    cfg = Config.from_dict(old)
    assert (cfg.actor_lr, cfg.grad_clip_norm, cfg.batch_size, cfg.start_steps) == (1e-3, 1.0, 128, 2_000)
    assert set(cfg.user_set) == algorithm_defaulted()
    assert Config.from_dict({**old, "algo": "td3"}).grad_clip_norm == 1.0


def test_replace_and_grid_members_keep_their_values_and_follow_a_new_algorithm():
    sac = Config(algo="sac", num_seeds=2, grid=("actor_lr=1e-3,3e-4",))
    members = sac.member_configs()
    assert [m.actor_lr for m in members] == [1e-3, 1e-3, 3e-4, 3e-4]
    assert all((m.critic_lr, m.batch_size, m.grad_clip_norm) == (3e-4, 256, 0.0) for m in members)
    assert dataclasses.replace(sac, seed=7).critic_lr == 3e-4
    assert dataclasses.replace(Config(algo="sac"), critic_lr=2e-3).critic_lr == 2e-3
    td3 = dataclasses.replace(Config(algo="sac"), algo="td3")
    assert (td3.actor_lr, td3.batch_size, td3.grad_clip_norm) == (1e-3, 128, 1.0)


def test_help_shows_each_algorithms_defaults(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for spec in ALGORITHMS.values():
        if spec.defaults:
            assert f"--algo {spec.name}: " in text
    assert "(default: 0.001; --algo sac: 0.0003" in text
    assert "--user-set" not in text and "--defaults-of" not in text


def test_refused_fields_compare_with_the_algorithms_default():
    assert algorithm_default("sac", "grad_clip_norm") == 0.0 and algorithm_default("ddpg", "grad_clip_norm") == 1.0
    assert algorithm_default("nonesuch", "actor_lr") == 1e-3


def test_a_value_given_with_a_new_algorithm_is_kept_even_if_it_is_the_old_algorithms_default(tmp_path):
    """`Config.merged`, the one way a change is put over a base (a flag over a config file, train's overrides, a
    sweep's point): a changed value counts as given, where from_dict alone would read 3e-4 over a SAC config as
    SAC's carried-over default and give DDPG's 1e-3."""
    sac = Config(algo="sac")
    ddpg = Config.merged(sac, {"algo": "ddpg", "actor_lr": 3e-4})
    assert (ddpg.actor_lr, ddpg.critic_lr, ddpg.batch_size) == (3e-4, 1e-3, 128)
    assert ddpg.user_set == ("actor_lr",)
    back = Config.merged(Config().to_dict(), {"algo": "sac", "actor_lr": 1e-3, "batch_size": 128})
    assert (back.actor_lr, back.batch_size, back.critic_lr) == (1e-3, 128, 3e-4)
    assert Config.merged(sac, {"algo": "ddpg"}).actor_lr == 1e-3  # what nobody gave still follows the algorithm
    (tmp_path / "config.json").write_text(json.dumps({"config": sac.to_dict()}))
    args = build_parser().parse_args(["run", "--config", str(tmp_path / "config.json"), "--algo", "ddpg",
                                      "--actor-lr", "3e-4"])
    assert config_from_args(args) == ddpg


def test_a_sweep_over_algorithms_and_learning_rates_trains_each_point_at_its_rate(tmp_path):
    from fastddpg.tools.sweeps.spec import make_spec
    from fastddpg.tools.sweeps.trial import trial_config

    spec = make_spec(Config(), tmp_path / "s", grid={"algo": ["ddpg", "sac"], "actor_lr": [1e-3, 3e-4]})
    for algo in ("ddpg", "sac"):
        for lr in (1e-3, 3e-4):
            cfg = trial_config(spec, {"algo": algo, "actor_lr": lr}, tmp_path / "s" / "trials" / f"{algo}{lr}")
            assert (cfg.algo, cfg.actor_lr, cfg.critic_lr) == (algo, lr, 1e-3 if algo == "ddpg" else 3e-4)
