"""The command line: bad input gets one clear line and exit code 2, never a traceback; --help covers every
Config field."""

from __future__ import annotations

import dataclasses
import json
import re
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
    # the members' seeds are seed + s * num_envs: the last must be a seed too
    (["--seed", str(2**32 - 1), "--num-seeds", "2"], "use a seed from 0 to 4294967291"),
    (["--algo", "crossq", "--renorm-momentum", "5"], "use a momentum in (0, 1]"),
    (["--replay-size", str(10**12)], "lower --replay-size"),  # 33 TiB: one line, not the allocator's traceback
    # a population grid over a field DDPG does not use would train identical members; a value twice, one label
    (["--grid", "policy_noise=0.1,0.3"], "--algo ddpg does not use --policy-noise"),
    (["--grid", "actor_lr=1e-3,0.001"], "0.001 is given more than once"),
    (["--grid", "actor_lr=abc"], "'abc' is not a number; write NAME=V1,V2"),
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


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"layer_norm": "false"}, "--layer-norm='false' has the wrong type: give true or false"),
    ({"num_envs": 2.5}, "--num-envs=2.5 has the wrong type: give a whole number"),
    ({"total_steps": float("inf")}, "--total-steps=inf has the wrong type"),
    ({"actor_lr": "1e-3"}, "--actor-lr='1e-3' has the wrong type: give a number"),
    ({"hidden_sizes": (64, 64.5)}, "give a list of whole numbers"),
    ({"env": 3}, "give a string"),
])
def test_python_config_checks_types_as_the_command_line_does(kwargs, needle):
    with pytest.raises(ConfigError, match=re.escape(needle)):
        Config(**kwargs)


def test_python_config_takes_numbers_of_any_kind_and_saves_the_fields_types(tmp_path):
    """1e5 steps, numpy scalars and a lone --grid string are what a Python user writes; the saved config.json
    then holds the field's own type, which --config reads back."""
    import numpy as np

    from fastddpg.core.configfile import load_config_file

    cfg = Config(total_steps=1e5, actor_lr=np.float32(0.5), seed=np.int64(3), layer_norm=np.bool_(True),
                 grid="actor_lr=1e-3,3e-4")
    assert (cfg.total_steps, cfg.seed, cfg.grid) == (100_000, 3, ("actor_lr=1e-3,3e-4",))
    assert type(cfg.total_steps) is int and type(cfg.actor_lr) is float and cfg.layer_norm is True
    path = tmp_path / "c.json"
    path.write_text(json.dumps(cfg.to_dict()))
    assert Config(**load_config_file(path)) == cfg


def test_a_cuda_device_becomes_the_current_one(monkeypatch):
    """--device cuda:1 makes device 1 current: CUDA graphs are captured and replayed on the current device's
    streams (with device 0 current, the update's graph would be empty). CPU-runnable: CUDA is faked."""
    from fastddpg.core.config import select_device

    chosen = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    assert select_device("cuda:1") == torch.device("cuda:1") and chosen == [torch.device("cuda:1")]
    assert select_device("cpu") == torch.device("cpu") and len(chosen) == 1


def test_a_population_larger_than_the_memory_is_one_line_before_it_is_built(monkeypatch, capsys, tmp_path):
    """K members are built one by one and then stacked: the first member's size times 2 K is checked against the
    host's available memory before the rest are built (faked small here), not left to the allocator or the OOM
    killer part way."""
    from fastddpg.training import trainer

    monkeypatch.setattr(trainer, "available_host_bytes", lambda: 2**14)
    assert main(["run", "--total-steps", "10", "--num-seeds", "3", "--num-envs", "2", "--hidden-sizes", "64",
                 "--run-dir", str(tmp_path / "run")]) == 2
    line = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert len(line) == 1 and "--num-seeds 3 (3 members): their networks and optimizer states need" in line[0]
    assert "GiB are free; lower --num-seeds, the --grid or --hidden-sizes." in line[0]
