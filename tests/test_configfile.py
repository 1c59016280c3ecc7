"""`fastddpg run --config FILE` / `--dry-run`, `fastddpg --version` and the grouped `run --help`: the shipped
configs load and validate, flags override the file, bad files get one line and exit 2."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import gymnasium
import pytest
import torch

import fastddpg
from fastddpg.cli import build_parser, config_from_args, main
from fastddpg.core.config import GROUPS, Config
from fastddpg.core.configfile import load_config_file, to_toml

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def cfg_of(*argv: str) -> Config:
    return config_from_args(build_parser().parse_args(["run", *argv]))


def one_error_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1, err
    assert err[0].startswith("fastddpg: error:")
    return err[0]


def test_shipped_ddpg_config_is_the_notebooks_defaults():
    assert cfg_of("--config", str(CONFIGS / "pendulum_ddpg.toml")) == Config()


def test_shipped_td3_config_is_the_rl_zoos():
    cfg = cfg_of("--config", str(CONFIGS / "pendulum_td3.toml"))
    zoo = dict(env="Pendulum-v1", algo="td3", num_envs=1, total_steps=20_000, gamma=0.98, replay_size=200_000,
               batch_size=256, start_steps=10_000, update_after=10_000, actor_lr=1e-3, critic_lr=1e-3,
               noise="gaussian", noise_sigma=0.2, hidden_sizes=(400, 300), grad_clip_norm=0.0, tau=0.005,
               policy_noise=0.2, noise_clip=0.5, policy_delay=2)
    assert {k: getattr(cfg, k) for k in zoo} == zoo


def test_flags_override_the_file(tmp_path):
    cfg = cfg_of("--config", str(CONFIGS / "pendulum_td3.toml"), "--gamma", "0.9", "--hidden-sizes", "64",
                 "--no-layer-norm", "--seed", "7")
    assert (cfg.gamma, cfg.hidden_sizes, cfg.seed, cfg.layer_norm) == (0.9, (64,), 7, False)
    assert (cfg.algo, cfg.batch_size) == ("td3", 256)  # from the file
    f = tmp_path / "c.toml"
    f.write_text("layer_norm = true\nquiet = true\n")
    assert cfg_of("--config", str(f), "--no-quiet") == Config(layer_norm=True, quiet=False)


def test_tables_dashes_and_json(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('batch-size = 64\n[environment]\nnum-envs = 2\n[td3]\npolicy_delay = 3\n')
    assert load_config_file(f) == {"batch_size": 64, "num_envs": 2, "policy_delay": 3}
    # a run's config.json: the Config under "config"; run_dir dropped so a rerun gets a new directory
    run_cfg = Config(num_envs=2, hidden_sizes=(16, 8), run_dir=str(tmp_path / "old"), actor_lr=3e-4)
    (tmp_path / "config.json").write_text(json.dumps({"config": run_cfg.to_dict(), "device": "cpu"}))
    assert cfg_of("--config", str(tmp_path / "config.json")) == dataclasses.replace(run_cfg, run_dir="")
    (tmp_path / "flat.json").write_text('{"gamma": 0.5}')
    assert load_config_file(tmp_path / "flat.json") == {"gamma": 0.5}


BAD_FILES = [
    ("gama = 0.9\n", "unknown key 'gama'"),
    ("[training]\nbatch_szie = 3\n", "unknown key 'batch_szie'"),
    ('batch_size = "128"\n', "batch_size = '128'"),
    ("batch_size = 1.5\n", "give a whole number"),
    ("hidden_sizes = 256\n", "list of whole numbers"),
    ("layer_norm = 1\n", "true or false"),
    ("gamma = 0.9\n[training]\ngamma = 0.8\n", "set twice"),
    ("gamma = \n", "not valid TOML"),
    ("gamma = 1.5\n", "--gamma"),  # types fine, range checked by Config.validate
]


@pytest.mark.parametrize("text,needle", BAD_FILES)
def test_bad_config_file_one_line_exit_2(text, needle, tmp_path, capsys):
    f = tmp_path / "bad.toml"
    f.write_text(text)
    assert main(["run", "--config", str(f), "--dry-run"]) == 2
    line = one_error_line(capsys)
    assert needle in line
    if "key" in needle or "give" in needle or "TOML" in needle:
        assert str(f) in line  # names the file


def test_a_config_file_that_is_not_utf8_is_one_line(tmp_path, capsys):
    f = tmp_path / "utf16.toml"
    f.write_text("gamma = 0.9\n", encoding="utf-16")  # as Windows PowerShell 5 redirects --dry-run's output
    assert main(["run", "--config", str(f), "--dry-run"]) == 2
    assert f"config file {f} is not UTF-8 text; save it as UTF-8." in one_error_line(capsys)


def test_a_printed_config_follows_another_algorithm_as_its_config_json_does(tmp_path, capsys):
    """--dry-run prints the record of which values were given: loaded with another --algo, the printed file and
    the run's config.json give the same config (SAC's defaults follow the new algorithm, the values given stay)."""
    sac = Config(algo="sac", batch_size=64)
    (tmp_path / "config.json").write_text(json.dumps({"config": sac.to_dict()}))
    assert main(["run", "--config", str(tmp_path / "config.json"), "--dry-run"]) == 0
    (tmp_path / "printed.toml").write_text(capsys.readouterr().out)
    from_json = cfg_of("--config", str(tmp_path / "config.json"), "--algo", "ddpg")
    printed = cfg_of("--config", str(tmp_path / "printed.toml"), "--algo", "ddpg")
    assert dataclasses.replace(printed, run_dir="") == from_json  # (a run's config.json leaves its run_dir out)
    assert (from_json.batch_size, from_json.actor_lr, from_json.replay_size) == (64, 1e-3, 200_000)


def test_a_byte_order_mark_is_read_and_yaml_is_one_line(tmp_path, capsys):
    bom = tmp_path / "bom.toml"
    bom.write_text("gamma = 0.9\n", encoding="utf-8-sig")
    assert load_config_file(bom) == {"gamma": 0.9}
    yml = tmp_path / "c.yaml"
    yml.write_text("gamma: 0.9\n")
    assert main(["run", "--config", str(yml), "--dry-run"]) == 2
    assert "YAML is not read; give a .toml file" in one_error_line(capsys)


def test_dry_run_refuses_an_env_id_gymnasium_does_not_know(capsys):
    assert main(["run", "--env", "NoSuchEnv-v0", "--dry-run"]) == 2
    assert "NoSuchEnv-v0" in one_error_line(capsys)


def test_missing_file_and_resume_are_refused(tmp_path, capsys):
    assert main(["run", "--config", str(tmp_path / "nope.toml"), "--dry-run"]) == 2
    assert "cannot read config file" in one_error_line(capsys)
    assert main(["run", "--config", str(CONFIGS / "pendulum_td3.toml"), "--resume", str(tmp_path)]) == 2
    assert "--config cannot be combined with --resume" in one_error_line(capsys)
    assert main(["run", "--dry-run", "--resume", str(tmp_path)]) == 2
    assert "--dry-run" in one_error_line(capsys)


def test_dry_run_prints_a_loadable_config_and_creates_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--config", str(CONFIGS / "pendulum_td3.toml"), "--seed", "3", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []  # no runs/ directory, no env made
    (tmp_path / "echo.toml").write_text(out)
    expected = dataclasses.replace(cfg_of("--config", str(CONFIGS / "pendulum_td3.toml")), seed=3, run_dir="auto")
    assert cfg_of("--config", str(tmp_path / "echo.toml")) == expected
    assert "seed = 3" in out.splitlines() and "hidden_sizes = [400, 300]" in out.splitlines()


def test_to_toml_roundtrips_every_field(tmp_path):
    cfg = Config(env="MountainCarContinuous-v0", hidden_sizes=(7,), layer_norm=True, ou_dt=1e-5, run_dir='a "b"')
    (tmp_path / "c.toml").write_text(to_toml(cfg))
    assert Config(**load_config_file(tmp_path / "c.toml")) == cfg


def test_version():
    p = subprocess.run([sys.executable, "-m", "fastddpg.cli", "--version"], capture_output=True, text=True,
                       timeout=60, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == (f"fastddpg {fastddpg.__version__} (torch {torch.__version__}, gymnasium "
                                f"{gymnasium.__version__}, python {sys.version.split()[0]})")


def test_run_help_groups_flags_as_config_does():
    sub = build_parser()._subparsers._group_actions[0].choices["run"]
    groups = {g.title: {a.dest for a in g._group_actions} for g in sub._action_groups}
    for name, (title, _) in GROUPS.items():
        fields = {f.name for f in dataclasses.fields(Config) if f.metadata.get("group", "training") == name}
        assert groups[title] == fields, name
    assert {"config", "dry_run", "resume"} <= groups["options"]


def test_shipped_inverted_pendulum_config_is_the_notebooks_without_clipping():
    cfg = cfg_of("--config", str(CONFIGS / "inverted_pendulum_td3.toml"))
    want = Config(env="InvertedPendulum-v5", algo="td3", num_envs=1, total_steps=15_000, seed=0, grad_clip_norm=0.0)
    assert cfg == want
