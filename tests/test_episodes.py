"""Episode rows by name (`schema.EpisodeRow`) and the one definition of a run's return: `last10_mean` of a
sequence, `run_return_10` of a run (a population's: the mean over its members of their last-10 means), and the
curve of it that the sweep report draws."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from fastddpg.core.schema import (
    EPISODE_COLUMNS,
    EpisodeRow,
    episode_records,
    last10_mean,
    return_10_curve,
    returns_by_member,
    run_return_10,
    with_member,
)
from fastddpg.training.devicelog import Pulled, episode_rows


def test_last10_mean_takes_the_last_ten_or_all_of_fewer():
    assert last10_mean(range(1, 21)) == pytest.approx(np.mean(range(11, 21)))  # 15.5, not the 10.5 of all
    assert last10_mean([4.0, -2.0, 1.0]) == pytest.approx(1.0)
    assert math.isnan(last10_mean([]))
    assert last10_mean(iter([3.0] * 12 + [-9.0])) == pytest.approx((9 * 3.0 - 9.0) / 10)  # any iterable, in order


def test_run_return_10_is_the_mean_over_members_of_their_last10_means():
    # member 0: 12 episodes, its last 10 are 3..12 (mean 7.5); member 1: two (mean -100); member 2: none
    returns = {0: [float(x) for x in range(1, 13)], 1: [-90.0, -110.0]}
    assert run_return_10(returns) == pytest.approx((7.5 - 100.0) / 2)  # not the mean of all 14 returns
    assert run_return_10({0: [1.0, 2.0, 3.0]}) == pytest.approx(2.0)  # a single run: its last10_mean
    assert run_return_10({0: [], 1: [5.0]}) == pytest.approx(5.0)  # a member without an episode is left out
    assert math.isnan(run_return_10({})) and math.isnan(run_return_10({0: []}))


def _pulled(ended: list[list[int]], returns: list[list[float]]) -> Pulled:
    """A report of len(ended) vector steps over len(ended[0]) env columns (member-major)."""
    e, r = np.array(ended, dtype=np.float32), np.array(returns, dtype=np.float32)
    steps = np.stack([e, r, np.full_like(e, 7.0)], axis=-1)
    return Pulled(np.zeros(4), np.zeros(0), steps, np.arange(len(ended), dtype=np.float64) + 0.5, 0, 0)


def test_a_populations_rows_read_by_name_give_its_returns():
    """Two members of two envs each: the member column shifts every column of the table, the names do not."""
    p = _pulled([[1, 0, 0, 1], [0, 1, 1, 0], [1, 1, 0, 0]],
                [[-10.0, 0, 0, -80.0], [0, -20.0, -30.0, 0], [-50.0, -60.0, 0, 0]])
    rows = episode_rows(p, first_vector_step=5, next_episode=[3, 1])  # member 0 has 2 episodes, member 1 none
    assert all(isinstance(r, EpisodeRow) for r in rows)
    assert [(r.member, r.episode, r.env, r.global_step, r.return_) for r in rows] == [
        (0, 3, 0, 12, -10.0), (1, 1, 1, 12, -80.0),  # vector step 6 of 2 envs per member: env step 12
        (0, 4, 1, 14, -20.0), (1, 2, 0, 14, -30.0),
        (0, 5, 0, 16, -50.0), (0, 6, 1, 16, -60.0)]
    assert returns_by_member(rows) == {0: [-10.0, -20.0, -50.0, -60.0], 1: [-80.0, -30.0]}
    assert run_return_10(returns_by_member(rows)) == pytest.approx((-35.0 - 55.0) / 2)  # not the -41.7 of all 6
    # the file's (and a checkpoint's) layout: the member first; read back by column names
    table = pd.DataFrame([r.values(2) for r in rows], columns=list(with_member(EPISODE_COLUMNS, 2)))
    assert table["return"].tolist() == [r.return_ for r in rows] and table["global_step"].max() == 16
    assert episode_records(table.iloc[::-1]) == rows  # back in the order the episodes ended
    assert [EpisodeRow.from_values(r.values(2), 2) for r in rows] == rows


def test_a_single_runs_rows_keep_the_columns_of_episodes_csv():
    assert EPISODE_COLUMNS == ("episode", "env", "global_step", "return", "length", "wall_time")
    assert with_member(EPISODE_COLUMNS, 2) == ("member", *EPISODE_COLUMNS)
    rows = episode_rows(_pulled([[0, 1], [1, 1]], [[0, -5.0], [-6.0, -7.0]]), 0, [1])
    assert [(r.member, r.episode, r.env, r.global_step, r.return_, r.length) for r in rows] == [
        (0, 1, 1, 2, -5.0, 7), (0, 2, 0, 4, -6.0, 7), (0, 3, 1, 4, -7.0, 7)]
    assert rows[0].values(1) == (1, 1, 2, -5.0, 7, 0.5)  # no member column: the CSV row as it always was
    assert EpisodeRow.from_values([1, 1, 2, -5.0, 7, 0.5], 1) == rows[0]  # a checkpoint's row (tuple or list)
    table = pd.DataFrame([r.values(1) for r in rows], columns=list(EPISODE_COLUMNS))
    assert episode_records(table) == rows


def test_return_10_curve_is_the_moving_mean_of_a_single_run_and_the_members_mean_in_a_population():
    rng = np.random.default_rng(0)
    rets = rng.normal(-500, 200, size=25)
    single = [EpisodeRow(0, i + 1, 0, 10 * (i + 1), float(x), 10, 0.0) for i, x in enumerate(rets)]
    np.testing.assert_allclose(return_10_curve(single), pd.Series(rets).rolling(10, min_periods=1).mean())
    pop = [EpisodeRow(0, 1, 0, 10, -100.0, 10, 0.0), EpisodeRow(1, 1, 0, 10, -300.0, 10, 0.0),
           EpisodeRow(0, 2, 0, 20, -50.0, 10, 0.0)]
    assert return_10_curve(pop) == pytest.approx([-100.0, -200.0, (-75.0 - 300.0) / 2])
    assert return_10_curve(pop)[-1] == pytest.approx(run_return_10(returns_by_member(pop)))
