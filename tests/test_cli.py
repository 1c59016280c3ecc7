"""The command line: bad input gets one clear line and exit code 2, never a traceback; --help covers every
Config field."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
import torch

from fastddpg.cli import build_parser, config_from_args, main
from fastddpg.core.config import Config, ConfigError


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fastddpg.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


BAD_INPUTS = [
    (["--env", "NoSuchEnv-v0"], "NoSuchEnv-v0"),
    (["--env", "CartPole-v1"], "Box action space"),
    (["--num-envs", "0"], "--num-envs"),
    (["--batch-size", "512", "--replay-size", "256"], "--batch-size"),
    (["--gamma", "1.5"], "--gamma"),
    (["--seed", "-1"], "--seed=-1 is invalid"),  # numpy's global seed takes 0..2**32 - 1
    (["--seed", str(2**32)], "use a seed from 0 to 4294967295"),
] + ([] if torch.cuda.is_available() else [(["--device", "cuda"], "CUDA is not available")])


@pytest.mark.parametrize("args,needle", BAD_INPUTS)
def test_bad_input_one_line_exit_2(args, needle, capsys):
    assert main(["run", "--total-steps", "10", *args]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert needle in lines[0] and lines[0].startswith("fastddpg: error:")


def test_bad_input_in_a_real_process():
    p = run_cli("run", "--total-steps", "10", "--env", "NoSuchEnv-v0")
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_help_documents_every_field():
    p = run_cli("run", "--help")
    assert p.returncode == 0
    text = " ".join(p.stdout.split())
    for f in dataclasses.fields(Config):
        flag = "--" + f.name.replace("_", "-")
        assert flag in text or f.metadata["group"] == "record", flag  # (the record of given fields: no flag)
    assert "(default: 200000; --algo sac: 1000000" in text and "(default: 256 256)" in text


def test_flags_map_onto_config():
    args = build_parser().parse_args(["run", "--num-envs", "16", "--hidden-sizes", "64", "64", "--quiet",
                                      "--gamma", "0.9", "--env", "Pendulum-v1"])
    cfg = config_from_args(args)
    assert cfg == Config(num_envs=16, hidden_sizes=(64, 64), quiet=True, gamma=0.9)
    assert config_from_args(build_parser().parse_args(["run"])) == Config()


def test_config_rejects_with_field_name():
    with pytest.raises(ConfigError, match="--tau"):
        Config(tau=0.0)
    with pytest.raises(ConfigError, match="--vector-mode"):
        Config(vector_mode="threads")


def test_config_roundtrip():
    cfg = Config(num_envs=8, hidden_sizes=(64,), seed=3)
    assert Config.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="unknown config keys"):
        Config.from_dict({**cfg.to_dict(), "gama": 0.9})


def test_run_prints_summary(tmp_path):
    p = run_cli("run", "--total-steps", "400", "--num-envs", "2", "--update-after", "300", "--hidden-sizes", "16",
                "--device", "cpu", "--quiet", "--run-dir", str(tmp_path / "run"))
    assert p.returncode == 0, p.stderr
    assert "env steps/s" in p.stdout and "updates/s" in p.stdout and "last-10-episode mean return" in p.stdout
    assert (tmp_path / "run" / "episodes.csv").exists()


def test_the_resume_help_names_every_flag_a_resume_takes():
    from fastddpg.core.config import RESUME_OVERRIDABLE

    run = build_parser()._subparsers._group_actions[0].choices["run"]
    (resume,) = [a for a in run._actions if a.dest == "resume"]
    assert all("--" + k.replace("_", "-") in resume.help for k in RESUME_OVERRIDABLE)
