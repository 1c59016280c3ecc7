"""bench/halfcheetah.py: each algorithm's fastddpg side is given every value its peer is given, and bad flags are
refused before any run."""

from __future__ import annotations

import json
import math

import pytest

from bench import halfcheetah as hc


@pytest.mark.parametrize("algo", sorted(hc.HYPER))
def test_the_fastddpg_side_gets_the_peers_hyperparameters(algo):
    h = hc.hyper(algo)
    cfg = hc.fastddpg_config(algo, h, seed=3, steps=100_000, threads=1)
    assert (cfg.algo, cfg.env, cfg.num_envs, cfg.seed, cfg.total_steps) == (algo, "HalfCheetah-v5", 1, 3, 100_000)
    assert (cfg.actor_lr, cfg.critic_lr, cfg.batch_size, cfg.gamma) == (h["lr"], h["lr"], 256, 0.99)
    assert cfg.start_steps == cfg.update_after == h["learning_starts"]
    assert (cfg.replay_size, list(cfg.hidden_sizes), cfg.grad_clip_norm, cfg.updates_per_step) == (
        1_000_000, [256, 256], 0.0, 1.0)
    for key in ("tau", "policy_delay", "critic_width", "init_alpha", "policy_noise", "noise_clip"):
        if key in h:
            assert getattr(cfg, key) == h[key], key
    if algo == "td3":
        assert cfg.noise_sigma == h["exploration_noise"]


def test_the_rl_zoo_values_and_a_narrower_crossq_critic():
    assert hc.HYPER["sac"]["learning_starts"] == 10_000 and hc.HYPER["sac"]["lr"] == 3e-4
    assert (hc.HYPER["crossq"]["learning_starts"], hc.HYPER["crossq"]["lr"], hc.HYPER["crossq"]["policy_delay"],
            hc.HYPER["crossq"]["critic_width"]) == (5_000, 1e-3, 3, 2048)
    assert hc.fastddpg_config("crossq", hc.hyper("crossq", 256), 0, 3_000, 1).critic_width == 256
    assert hc.HYPER["crossq"]["critic_width"] == 2048  # hyper() copies; the table is unchanged
    assert hc.fastddpg_config("sac", hc.hyper("sac"), 0, 3_000, 1).start_steps == 3_000  # capped by the budget


def test_flags(capsys):
    a = hc.parse_args(["--algo", "sac", "--quick"])
    assert (a.seeds, a.steps, a.out.endswith("halfcheetah_sac.json")) == (1, 3_000, True)
    assert hc.parse_args([]).out.endswith("halfcheetah_td3.json")  # TD3's results keep their file
    with pytest.raises(SystemExit) as e:
        hc.parse_args(["--algo", "sac", "--critic-width", "256"])
    assert e.value.code == 2 and "--critic-width is CrossQ's" in capsys.readouterr().err


def test_the_peer_runner_is_valid_python_that_builds_each_peer():
    compile(hc.SB3_RUNNER, "runner.py", "exec")
    for name in ("TD3(", "SAC(", "CrossQ("):
        assert name in hc.SB3_RUNNER
    json.dumps(hc.HYPER)  # what the runner receives on its command line


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["sac", "crossq"])
def test_quick_fastddpg_side_runs(tmp_path, algo):
    out = tmp_path / "hc.json"
    width = ["--critic-width", "64"] if algo == "crossq" else []
    assert hc.main(["--algo", algo, "--quick", "--only", "fastddpg", "--out", str(out), *width]) == 0
    res = json.loads(out.read_text())
    assert res["algo"] == algo and [r["side"] for r in res["records"]] == ["fastddpg"]
    assert math.isfinite(res["records"][0]["eval_return"]) and res["records"][0]["wall_s"] > 0
