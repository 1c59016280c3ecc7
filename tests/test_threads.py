"""Runs side by side share the cores: the mechanism a run applies (its torch threads and OpenMP's wait policy,
set before torch loads), not its speed (bench/side_by_side.py measures that)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from fastddpg import Config, ConfigError
from fastddpg.threads import WAIT_DEFAULTS, apply_threads, resolve_threads, set_wait_policy, usable_cores


def test_wait_policy_is_a_default_the_user_can_override():
    env: dict[str, str] = {}
    assert set_wait_policy(env) == WAIT_DEFAULTS and env == WAIT_DEFAULTS
    for user in ({"OMP_WAIT_POLICY": "ACTIVE"}, {"GOMP_SPINCOUNT": "10000"}):
        env = dict(user)
        assert set_wait_policy(env) == {} and env == user


def test_usable_cores_sees_affinity_and_cgroup_quota(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    quota = tmp_path / "cpu.max"
    assert usable_cores(quota) == 4  # no cgroup file
    quota.write_text("max 100000\n")
    assert usable_cores(quota) == 4
    quota.write_text("150000 100000\n")  # docker --cpus 1.5
    assert usable_cores(quota) == 2
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3}, raising=False)  # taskset -c 3
    assert usable_cores(quota) == 1


def test_threads_setting_is_applied_and_validated():
    before = torch.get_num_threads()
    try:
        assert apply_threads(1) == 1 == torch.get_num_threads()
        assert resolve_threads(3) == 3
        assert 1 <= resolve_threads(0) <= usable_cores()
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ConfigError, match="--threads"):
        Config(threads=-1)


def _run_cli(tmp_path, env_extra: dict[str, str], *flags: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")}
    env.update(env_extra)
    run = tmp_path / f"run{len(list(tmp_path.iterdir()))}"
    code = ("import sys, fastddpg.cli\n"
            "rc = fastddpg.cli.main(sys.argv[1:])\n"
            "import os, torch\n"
            "print(os.environ.get('OMP_WAIT_POLICY'), torch.get_num_threads())\n"
            "sys.exit(rc)")
    p = subprocess.run([sys.executable, "-c", code, "run", "--total-steps", "40", "--num-envs", "2",
                        "--hidden-sizes", "8", "--batch-size", "8", "--start-steps", "20", "--update-after", "20",
                        "--device", "cpu", "--compile", "off", "--quiet", "--run-dir", str(run), *flags],
                       capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    meta = json.loads((run / "config.json").read_text())
    return {"meta": meta["threads"], "summary": json.loads((run / "summary.json").read_text())["threads"],
            "seen": p.stdout.strip().splitlines()[-1].split()}


def test_a_cli_run_sets_the_wait_policy_before_torch_and_records_its_threads(tmp_path):
    r = _run_cli(tmp_path, {}, "--threads", "1")
    assert r["meta"]["OMP_WAIT_POLICY"] == "PASSIVE" and r["meta"]["torch_threads"] == 1 == r["summary"]
    assert r["seen"] == ["PASSIVE", "1"]
    user = _run_cli(tmp_path, {"OMP_WAIT_POLICY": "ACTIVE"})
    assert user["meta"]["OMP_WAIT_POLICY"] == "ACTIVE"
    assert user["meta"]["torch_threads"] == min(usable_cores(), user["meta"]["torch_threads"]) >= 1
