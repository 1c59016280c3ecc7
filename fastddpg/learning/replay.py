"""A ring buffer of transitions that lives on the training device.

All fields of a transition sit side by side in one (capacity, width) tensor, so a vector step's N transitions
go in with one write and a sampled batch comes out with one gather; ``storage`` exposes the columns as a
`TensorDict` of views (``obs``, ``action``, ``reward``, ``next_obs``, ``terminated``) over that tensor.
Sampling uses torch's RNG on the device: no numpy RNG, no host copy. The write pointer and fill level are
plain Python ints: they advance by N per write, which the host knows without asking the device.

A population's buffer (``members=K``) is one (K, capacity, width) tensor: member k's rows hold only member k's
transitions (its N envs' rows of each write), and each member's batch is drawn from its own rows only. Members
write in lockstep, so one pointer and one fill level serve them all. With ``repeats=G`` (G grid points) the K
members are G equal blocks and one draw of indices serves every block: member k and member k + K/G sample the same
positions of their own rows (members with the same seed at different grid points replay the same steps).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from .update import Batch

if TYPE_CHECKING:
    from tensordict import TensorDict


MEMINFO = "/proc/meminfo"


class ReplayMemoryError(MemoryError):
    """A replay buffer of ``nbytes`` that ``device`` cannot hold (``available``: the host's available memory in
    bytes where known)."""

    def __init__(self, nbytes: int, device: torch.device, available: int | None) -> None:
        super().__init__(f"a replay buffer of {nbytes:,} bytes does not fit on {device}")
        self.nbytes, self.device, self.available = nbytes, device, available


def allocation_failed(e: BaseException) -> bool:
    """Whether ``e`` is an allocator's refusal: MemoryError, torch.OutOfMemoryError (CUDA), or the RuntimeError of
    the CPU allocator ("DefaultCPUAllocator: can't allocate memory")."""
    return isinstance(e, MemoryError) or "alloc" in str(e).lower() or "out of memory" in str(e).lower()


def available_host_bytes(path: str = MEMINFO) -> int | None:
    """The memory Linux can give a process without swapping (/proc/meminfo's MemAvailable), in bytes; None where
    it does not say."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


class ReplayBuffer:
    """Ring buffer of ``capacity`` transitions (s, a, r, s', d) on ``device``.

    Columns: obs (obs_dim), action (act_dim), reward (1), next_obs (obs_dim), terminated (1). ``members=K`` (> 0):
    a population's K buffers of ``capacity`` each (see the module docstring); 0: one buffer.
    """

    def __init__(self, capacity: int, obs_dim: int, act_dim: int, device: torch.device, members: int = 0,
                 repeats: int = 1) -> None:
        self.capacity = int(capacity)
        self.members = int(members)
        if repeats < 1 or (repeats > 1 and self.members % repeats):
            raise ValueError(f"{self.members} members cannot form {repeats} equal blocks")
        self.repeats = int(repeats) if self.members else 1
        lead = (self.members,) if self.members else ()
        self.device = torch.device(device)
        widths = {"obs": obs_dim, "action": act_dim, "reward": 1, "next_obs": obs_dim, "terminated": 1}
        self._slices: dict[str, slice] = {}
        start = 0
        for key, w in widths.items():
            self._slices[key] = slice(start, start + w)
            start += w
        shape = (*lead, self.capacity, start)
        nbytes = math.prod(shape) * torch.finfo(torch.get_default_dtype()).bits // 8
        free = available_host_bytes() if self.device.type == "cpu" else None
        if free is not None and nbytes > free:  # zeroing it would touch every page: the OOM killer, not an error
            raise ReplayMemoryError(nbytes, self.device, free)
        try:
            self.data = torch.zeros(*shape, device=self.device)
        except (RuntimeError, MemoryError) as e:  # torch.OutOfMemoryError (CUDA) and the CPU allocator's
            if not allocation_failed(e):
                raise
            raise ReplayMemoryError(nbytes, self.device, free) from None
        self._storage: TensorDict | None = None
        self.ptr = 0
        self.size = 0

    def __len__(self) -> int:
        return self.size

    @property
    def storage(self) -> TensorDict:
        """The whole buffer as a `TensorDict` of column views over ``data`` (shape (capacity,); a population's
        (K, capacity)). Built on first use: importing tensordict also imports torch's compiler stack (about 1.4 s),
        which a run that neither compiles nor asks for a TensorDict does without."""
        if self._storage is None:
            from tensordict import TensorDict

            lead = self.data.shape[:-2]
            self._storage = TensorDict({k: self.data[..., s] for k, s in self._slices.items()},
                                       batch_size=[*lead, self.capacity], device=self.device)
        return self._storage

    @property
    def width(self) -> int:
        """Columns of a stored row: 2 obs_dim + act_dim + 2."""
        return self.data.shape[-1]

    def add(self, obs: torch.Tensor, action: torch.Tensor, reward: torch.Tensor, next_obs: torch.Tensor,
            terminated: torch.Tensor) -> None:
        """Write N transitions at once: obs/next_obs (N, obs_dim), action (N, act_dim), reward/terminated (N,).
        A population's buffer takes K*N rows, member-major (rows k*N .. k*N + N - 1 are member k's)."""
        rows = torch.cat([obs, action, reward.reshape(-1, 1), next_obs, terminated.reshape(-1, 1)], dim=-1)
        if self.members:
            rows = rows.reshape(self.members, -1, rows.shape[-1])
        n = rows.shape[-2]
        if n > self.capacity:  # only the newest `capacity` transitions can survive
            self.ptr = (self.ptr + n - self.capacity) % self.capacity
            rows, n = rows[..., -self.capacity:, :], self.capacity
        end = self.ptr + n
        if end <= self.capacity:
            self.data[..., self.ptr:end, :] = rows
        else:
            idx = torch.arange(self.ptr, end, device=self.device) % self.capacity
            self.data.index_copy_(self.data.dim() - 2, idx, rows)
        self.ptr = end % self.capacity
        self.size = min(self.size + n, self.capacity)

    def sample_rows(self, num_batches: int, batch_size: int, generator: torch.Generator | None = None
                    ) -> torch.Tensor:
        """Indices drawn uniformly from the filled part, all batches at once: (num_batches, batch_size) rows
        gathered into a (num_batches, batch_size, width) tensor; a population's: (num_batches, K, batch_size,
        width), member k's batch from member k's rows only (the same positions as member k + K/repeats)."""
        if self.size == 0:
            raise RuntimeError("cannot sample from an empty replay buffer")
        if self.members:
            idx = torch.randint(0, self.size, (num_batches, self.members // self.repeats, batch_size),
                                device=self.device, generator=generator)
            if self.repeats > 1:
                idx = idx.repeat(1, self.repeats, 1)
            return self.data[torch.arange(self.members, device=self.device).reshape(-1, 1), idx]
        idx = torch.randint(0, self.size, (num_batches, batch_size), device=self.device, generator=generator)
        return self.data[idx]

    def as_batch(self, rows: torch.Tensor) -> Batch:
        """Split gathered rows (..., width) into a Batch of views."""
        return Batch(*(rows[..., s] for s in self._slices.values()))

    def sample_batch(self, batch_size: int, generator: torch.Generator | None = None) -> Batch:
        """One batch as a `Batch` of views ((batch_size, ...); a population's (K, batch_size, ...))."""
        return self.as_batch(self.sample_rows(1, batch_size, generator)[0])

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> TensorDict:
        """`sample_batch` as a TensorDict of shape (batch_size,) with the buffer's column names ((K, batch_size) for a
        population: one batch per member)."""
        from tensordict import TensorDict

        batch = self.sample_batch(batch_size, generator)
        return TensorDict(batch._asdict(), batch_size=batch.obs.shape[:-1], device=self.device)

    def state_dict(self) -> dict[str, object]:
        """The filled rows, copied to the host (a checkpoint's copy: on a GPU no second device copy of a buffer
        that may fill most of its memory), and the ring's position."""
        return {"data": self.data[..., : self.size, :].to("cpu", copy=True), "ptr": self.ptr, "size": self.size}

    def load_state_dict(self, state: dict) -> None:
        data = state["data"]
        if data.shape[:-2] != self.data.shape[:-2]:
            raise ValueError(f"replay data of shape {tuple(data.shape)} does not fit {tuple(self.data.shape)}")
        self.data.zero_()
        self.data[..., : data.shape[-2], :].copy_(data)  # straight from wherever it is: no device temporary
        self.ptr, self.size = int(state["ptr"]), int(state["size"])
