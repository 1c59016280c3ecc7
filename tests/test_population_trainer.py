"""Populations in the trainer (--num-seeds K): episode boundaries per member, each member's replay rows from its own
envs, per-member tables, determinism, a non-finite value naming its member, the run directory, resume, learning."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from fastddpg import Config, Trainer, load_run, train
from fastddpg.cli import main
from fastddpg.runs.checkpoint import Checkpointer, list_checkpoints, load_checkpoint, read_checkpoint
from fastddpg.training.failsafe import NonFiniteError
from tests.conftest import COUNTING_ID, TERMINATE_AT, TIME_LIMIT


def small(**kw) -> Config:
    base = dict(env=COUNTING_ID, num_envs=3, total_steps=120, hidden_sizes=(8,), batch_size=4, replay_size=1000,
                start_steps=30, update_after=10, log_every=20, device="cpu", probe_n=4, num_seeds=3, compile="off")
    return Config(**{**base, **kw})


def test_no_transition_crosses_an_episode_boundary_in_any_member():
    """The single-run boundary test, for each of 3 members; and member k's rows come from member k's envs."""
    trainer = Trainer(small())
    trainer.train()
    assert trainer.buffer.data.shape[0] == 3 and len(trainer.buffer) == 120  # 120 env steps per member
    for k in range(3):
        rows = trainer.buffer.data[k, :len(trainer.buffer)]
        td = trainer.buffer.as_batch(rows)
        obs, nxt, term = td.obs.numpy(), td.next_obs.numpy(), td.terminated[:, 0].numpy()
        np.testing.assert_array_equal(nxt[:, 0], obs[:, 0])
        np.testing.assert_array_equal(nxt[:, 1], obs[:, 1] + 1)
        ends_term = (obs[:, 0] % 3 == 0) & (nxt[:, 1] == TERMINATE_AT)
        ends_trunc = (obs[:, 0] % 3 != 0) & (nxt[:, 1] == TIME_LIMIT)
        assert ends_term.sum() > 0 and ends_trunc.sum() > 0
        np.testing.assert_array_equal(term, ends_term.astype(np.float32))
        assert (nxt[:, 1] > 0).all()
    # the K*N envs reset in order and take consecutive episode ids: member k's first rows hold ids base+3k .. +2
    base = float(trainer.buffer.data[:, :3, 0].min())
    firsts = [trainer.buffer.data[k, :3, 0].tolist() for k in range(3)]
    assert firsts == [[base + 3 * k + j for j in range(3)] for k in range(3)]


def test_population_episode_table_per_member():
    result = Trainer(small(total_steps=300)).train()
    ep = result.episodes
    assert list(ep.columns[:2]) == ["member", "episode"]
    for k in range(3):
        mine = ep[ep["member"] == k]
        assert mine["episode"].tolist() == list(range(1, len(mine) + 1))  # each member numbers its own
        assert mine["env"].between(0, 2).all() and (mine["global_step"] % 3 == 0).all()
        assert set(mine["length"]) <= {TERMINATE_AT, TIME_LIMIT}
    assert result.summary["members"] == 3 and len(result.summary["member_last10_mean_return"]) == 3
    up = result.updates
    assert list(up.columns[:2]) == ["member", "update"]
    assert all(m == [0, 1, 2] for m in up.groupby("update")["member"].apply(list))
    assert len(result.probes) and set(result.probes["member"]) == {0, 1, 2}


def test_population_rows_by_name_give_the_summary_and_the_history_comes_back_from_the_tables():
    trainer = Trainer(small(total_steps=300))
    result = trainer.train()
    ep = result.episodes
    means = []
    for k in range(3):
        mine = [r.return_ for r in trainer.episode_rows if r.member == k]
        assert mine and mine == ep[ep["member"] == k]["return"].tolist()
        means.append(np.mean(mine[-10:]))
    assert result.summary["member_last10_mean_return"] == pytest.approx(means)
    assert result.summary["last10_mean_return"] == pytest.approx(np.mean(means))
    # a checkpoint holds counters, not the rows: a restored trainer reads them back from the tables (the CSVs'
    # columns), by name again
    state = trainer.state_dict()
    assert "logs" not in state and state["counters"]["member_episodes"] == trainer.member_episodes
    restored = Trainer(small(total_steps=300))
    restored.load_state_dict(state)
    assert restored.episode_rows == [] and restored.member_episodes == trainer.member_episodes
    restored.load_history({"episodes": ep, "updates": result.updates, "probes": result.probes})
    assert restored.episode_rows == trainer.episode_rows and restored.probe_rows == trainer.probe_rows
    assert restored.update_rows == trainer.update_rows
    assert restored.summary()["member_last10_mean_return"] == pytest.approx(means)
    with pytest.raises(ValueError, match=r"episodes\.csv holds"):  # a table short of the checkpoint: a gap
        restored.load_history({"episodes": ep.iloc[:-1], "updates": result.updates, "probes": result.probes})
    restored.env.close()


def test_same_population_config_gives_identical_results_twice():
    cfg = dict(env="Pendulum-v1", num_envs=2, num_seeds=2, total_steps=400, hidden_sizes=(16,), batch_size=16,
               start_steps=100, update_after=100, log_every=100, device="cpu", compile="off", quiet=True, seed=3)
    a, b = train(Config(**cfg)), train(Config(**cfg))
    pd.testing.assert_frame_equal(a.episodes.drop(columns="wall_time"), b.episodes.drop(columns="wall_time"))
    for name, m in a.algo.modules().items():
        for p, q in zip(m.parameters(), b.algo.modules()[name].parameters(), strict=True):
            assert torch.equal(p, q), name
    # the two members really differ (seeds 3 and 4)
    assert not torch.equal(a.algo.actor.net[0].weight[0], a.algo.actor.net[0].weight[1])


def test_member_k_starts_as_a_single_run_with_its_seed():
    """Member k's seed is seed + k * num_envs (the rule since members' seeds set their env seeds): its networks and
    its envs' first observations are those of a single run with that seed."""
    cfg = dict(env="Pendulum-v1", num_envs=2, total_steps=2, hidden_sizes=(8,), device="cpu", compile="off", seed=5)
    pop = Trainer(Config(**cfg, num_seeds=3))
    assert [c.seed for c in pop.cfg.member_configs()] == [5, 7, 9]
    for k in range(3):
        single = Trainer(Config(**{**cfg, "seed": 5 + 2 * k}))
        assert torch.equal(pop.obs[2 * k:2 * k + 2], single.obs), k
        member = pop.algo.member(k)
        for name in ("actor", "critic", "target_actor", "target_critic"):
            for p, q in zip(member.state[name].values(), single.algo.state[name].values(), strict=True):
                assert torch.equal(p, q), (k, name)
        single.env.close()
    pop.env.close()


def test_non_finite_parameter_names_the_member(tmp_path):
    trainer = Trainer(small(update_after=10_000), checkpointer=Checkpointer(tmp_path))
    for _ in range(10):
        trainer.step()
    trainer.checkpoint()
    with torch.no_grad():
        trainer.algo.target_critic.net[0].weight[1, 0, 0] = float("inf")  # member 1's only critic
    trainer.step()
    with pytest.raises(NonFiniteError) as e:
        trainer.checkpoint()
    trainer.env.close()
    assert e.value.what == "parameter"
    assert str(e.value).startswith("member 1 (seed 45): non-finite parameters in target_critic after update 0")
    assert [read_checkpoint(p)["global_step"] for p in list_checkpoints(tmp_path)] == [30]


def test_population_run_directory_and_resume(tmp_path):
    d = tmp_path / "pop"
    args = ["run", "--env", COUNTING_ID, "--num-envs", "2", "--hidden-sizes", "8", "--batch-size", "8",
            "--replay-size", "1000", "--start-steps", "40", "--update-after", "20", "--updates-per-step", "0.5",
            "--log-every", "20", "--probe-n", "4", "--probe-every-episodes", "4", "--device", "cpu", "--compile",
            "off", "--quiet", "--num-seeds", "2", "--run-dir", str(d)]
    assert main([*args, "--total-steps", "100"]) == 0
    assert main(["run", "--resume", str(d), "--total-steps", "200"]) == 0
    run = load_run(d)
    assert pd.read_csv(d / "members.csv").to_dict("list") == {"member": [0, 1], "seed": [42, 44],
                                                                      "grid_point": [0, 0]}
    ep, up, pr = run.episodes, run.updates, run.probes
    assert not ep.duplicated().any() and not up.duplicated().any() and not pr.duplicated().any()
    for k in range(2):  # each member's episodes numbered 1, 2, ... across the resume: none lost, none twice
        mine = ep[ep["member"] == k]
        assert mine["episode"].tolist() == list(range(1, len(mine) + 1)) and mine["global_step"].max() > 100
    assert sorted(up["member"].unique()) == [0, 1] and (up.groupby("member").size() == up["update"].nunique()).all()
    ckpt = load_checkpoint(d, member=1)
    assert ckpt["global_step"] == 200
    obs = torch.randn(5, 3)
    stacked = ckpt["state"]["trainer"]["modules"]["actor"]
    assert torch.equal(ckpt["actor"].net[0].weight, stacked["net.0.weight"][1].T)
    assert ckpt["actor"](obs).shape == (5, 1)
    assert run.summary["members"] == 2
    report = (d / "report.html").read_text()
    assert "grid points ranked by final return" in report and "population: 10-episode mean return" in report
    # eval: every member on the same episodes, or one; export: one member's actor
    assert main(["eval", str(d), "--episodes", "2"]) == 0
    assert main(["eval", str(d), "--episodes", "3", "--member", "1"]) == 0
    ev = load_run(d).evals
    assert ev["member"].tolist() == [0, 0, 1, 1, 1, 1, 1] and ev["seed"].nunique() == 1
    assert main(["eval", str(d), "--member", "2"]) == 2
    from fastddpg.runs.policy import load_policy

    torch.testing.assert_close(load_policy(d, member=1)(obs), ckpt["actor"](obs))
    assert not torch.allclose(load_policy(d, member=0)(obs), ckpt["actor"](obs))


@pytest.mark.slow
def test_four_member_population_learns_pendulum():
    """The notebook's defaults, 4 members: every member's last-10 mean above -400 within 10k env steps each."""
    result = train(Config(num_envs=4, total_steps=10_000, num_seeds=4, seed=1, device="cpu"))
    assert all(r > -400 for r in result.summary["member_last10_mean_return"]), result.summary


# --- --grid ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("entry, needle", [("batch_size=64,128", "fastddpg sweep --grid batch_size=V1,V2"),
                                           ("seed=0,1", "give --num-seeds K"),
                                           ("hidden_sizes=8,16", "--grid hidden_sizes is refused"),
                                           ("num_envs=1,2", "--grid num_envs is refused"),
                                           ("algo=1,2", "--grid algo is refused"),
                                           ("lr=1,2", "--grid lr is invalid"),
                                           ("tau", "write NAME=V1,V2"),
                                           ("tau=0.1,big", "--grid 'tau=0.1,big' is invalid: 'big' is not a number"),
                                           ("tau=0.1,2", "--tau=2.0 is invalid")])
def test_bad_grid_is_one_line_exit_2(entry, needle, capsys):
    assert main(["run", "--grid", entry, "--total-steps", "10", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err


def test_grid_members_take_their_values(tmp_path):
    cfg = small(num_seeds=2, grid=("tau=0.01,0.1", "noise_sigma=0.1,0.3"), run_dir=str(tmp_path / "g"),
                total_steps=60)
    assert cfg.num_members == 8
    result = train(cfg)
    hyper = result.algo.hyper
    assert hyper.tau.tolist() == pytest.approx([0.01] * 4 + [0.1] * 4)
    assert result.summary["member_seeds"] == [42, 45] * 4
    members = pd.read_csv(tmp_path / "g" / "members.csv")
    assert members.columns.tolist() == ["member", "seed", "grid_point", "tau", "noise_sigma"]
    assert members["noise_sigma"].tolist() == pytest.approx([0.1, 0.1, 0.3, 0.3] * 2)
    assert members["grid_point"].tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert set(load_run(tmp_path / "g").episodes["member"]) == set(range(8))


def test_grid_noise_sigma_is_per_member():
    trainer = Trainer(small(num_seeds=1, num_envs=2, grid=("noise_sigma=0.0,1.0",)))
    draws = torch.stack([trainer.noise.sample() for _ in range(200)])  # (200, K*N, act_dim)
    trainer.env.close()
    assert torch.all(draws[:, :2] == 0) and draws[:, 2:].std() > 0.8


def test_ci95_and_ranking_by_hand():
    from fastddpg.reports.bands import ci95, t975

    mean, half = ci95(np.array([1.0, 2.0, 3.0]))
    assert mean == pytest.approx(2.0) and half == pytest.approx(4.303 / 3 ** 0.5)
    # beyond the table, within 1e-4 of the exact quantiles (t(0.975, 31) = 2.0395, 63: 1.9983, 1000: 1.9623)
    assert t975(31) == pytest.approx(2.0395, abs=1e-4) and t975(63) == pytest.approx(1.9983, abs=1e-4)
    assert t975(1000) == pytest.approx(1.9623, abs=1e-4) and np.isnan(ci95(np.array([5.0]))[1])


def test_the_first_hit_of_minus_200_is_a_full_window_once_per_env_step():
    """A member with two envs: its episodes end two at a time. The hit is taken after both episodes of a step, on
    a full window of 10, where a check after each row (or on a shorter window) would come earlier."""
    import pandas as pd

    from fastddpg.reports.bands import first_hit

    returns = [-300.0] * 8 + [-150.0, -150.0, -100.0, -400.0, -100.0, -100.0]
    steps = [200 * (i // 2 + 1) for i in range(len(returns))]  # two episodes per step
    c = pd.DataFrame({"global_step": steps, "return": returns, "wall_time": [float(s) for s in steps]})
    c["ma"] = c["return"].rolling(10, min_periods=1).mean()
    # after row 10 (-100 at step 1,200) the last 10 average -250, where a check per row would stop; after that
    # step's second row (-400) they average -260, and they reach -250 again only after step 1,400's second row
    assert first_hit(c, -250.0)["global_step"].iloc[0] == 1_400
    assert first_hit(c, -150.0).empty  # row 0 alone (-300) never counts; nor does any partial window
    assert first_hit(c, -301.0)["global_step"].iloc[0] == 1_000  # the first full window, at step 1,000's last row
