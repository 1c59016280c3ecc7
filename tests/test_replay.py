"""The device ring buffer: one write per vector step, wraparound, sampling bounds, device placement."""

from __future__ import annotations

import torch

from fastddpg.learning.replay import ReplayBuffer


def write(buf: ReplayBuffer, start: int, n: int) -> None:
    v = torch.arange(start, start + n, dtype=torch.float32)
    buf.add(v[:, None].repeat(1, 3), -v[:, None], v, v[:, None].repeat(1, 3) + 0.5, (v % 2))


def test_columns_and_storage_view():
    buf = ReplayBuffer(10, 3, 1, torch.device("cpu"))
    write(buf, 0, 4)
    assert len(buf) == 4 and buf.ptr == 4
    td = buf.storage[:4]
    assert set(td.keys()) == {"obs", "action", "reward", "next_obs", "terminated"}
    torch.testing.assert_close(td["obs"][:, 0], torch.arange(4.0))
    torch.testing.assert_close(td["action"][:, 0], -torch.arange(4.0))
    torch.testing.assert_close(td["next_obs"][:, 2], torch.arange(4.0) + 0.5)
    torch.testing.assert_close(td["terminated"][:, 0], torch.tensor([0.0, 1.0, 0.0, 1.0]))
    # the TensorDict columns are views of the one storage tensor
    assert td["obs"].untyped_storage().data_ptr() == buf.data.untyped_storage().data_ptr()


def test_wraparound_keeps_the_newest():
    buf = ReplayBuffer(10, 3, 1, torch.device("cpu"))
    for start in range(0, 24, 4):  # 6 writes of 4 -> 24 transitions into 10 slots
        write(buf, start, 4)
    assert len(buf) == 10 and buf.ptr == 24 % 10
    stored = sorted(buf.storage["obs"][:, 0].tolist())
    assert stored == list(range(14, 24))
    # slot i holds transition t with t % 10 == i
    assert all(int(t) % 10 == i for i, t in enumerate(buf.storage["obs"][:, 0].tolist()))


def test_write_larger_than_capacity():
    buf = ReplayBuffer(5, 3, 1, torch.device("cpu"))
    write(buf, 0, 3)
    write(buf, 3, 12)  # transitions 3..14: only 10..14 survive
    assert len(buf) == 5 and buf.ptr == 15 % 5
    assert all(int(t) % 5 == i for i, t in enumerate(buf.storage["obs"][:, 0].tolist()))
    assert sorted(buf.storage["obs"][:, 0].tolist()) == list(range(10, 15))


def test_sampling_stays_in_the_filled_part():
    buf = ReplayBuffer(100, 3, 1, torch.device("cpu"))
    write(buf, 0, 7)
    g = torch.Generator().manual_seed(0)
    rows = buf.sample_rows(50, 32, g)
    assert rows.shape == (50, 32, buf.data.shape[1])
    obs_ids = rows[..., 0]
    assert obs_ids.min() >= 0 and obs_ids.max() <= 6
    assert len(torch.unique(obs_ids)) == 7  # all filled slots get drawn
    batch = buf.as_batch(rows[0])
    assert batch.obs.shape == (32, 3) and batch.reward.shape == (32, 1) and batch.terminated.shape == (32, 1)
    torch.testing.assert_close(batch.next_obs, batch.obs + 0.5)  # the fields of one row stay together


def test_sampling_is_reproducible_with_a_generator():
    buf = ReplayBuffer(100, 3, 1, torch.device("cpu"))
    write(buf, 0, 50)
    a = buf.sample_rows(2, 8, torch.Generator().manual_seed(3))
    b = buf.sample_rows(2, 8, torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b)


def test_one_indexed_write_per_add(monkeypatch):
    buf = ReplayBuffer(10, 3, 1, torch.device("cpu"))
    write(buf, 0, 8)
    calls = []
    orig = torch.Tensor.index_copy_
    monkeypatch.setattr(torch.Tensor, "index_copy_", lambda self, *a: calls.append(1) or orig(self, *a))
    write(buf, 8, 4)  # wraps: 8, 9, 0, 1
    assert calls == [1]
    assert buf.storage["obs"][:2, 0].tolist() == [10.0, 11.0]


def test_state_dict_roundtrip():
    buf = ReplayBuffer(10, 3, 1, torch.device("cpu"))
    write(buf, 0, 13)
    other = ReplayBuffer(10, 3, 1, torch.device("cpu"))
    other.load_state_dict(buf.state_dict())
    assert (other.ptr, other.size) == (buf.ptr, buf.size)
    torch.testing.assert_close(other.data, buf.data)
