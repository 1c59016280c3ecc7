"""Reference baseline: the seed notebook's DDPG, reimplemented the way the notebook runs it.

This module is the yardstick the fastddpg benchmarks compare against. It redoes the DDPG of the
seed notebook (``/work/shared/seed/000_fbdf7f8a46b5ff27.txt``) with its own code structure, but keeps the
same algorithm, hyper-parameters and the same *per-step costs*:

* one environment made with ``gym.make`` and stepped one transition at a time;
* the actor is called once per env step on a single observation and its output goes back to numpy
  through ``.cpu().numpy()``; exploration noise comes from ``np.random.normal``; the action is clipped
  to the bounds;
* a numpy replay buffer sampled with ``np.random.default_rng(seed).integers``; the sampled numpy batch is
  turned into five torch tensors on every update;
* every update reads its four metrics (critic loss, actor loss, mean Q, mean target) with ``.item()``,
  i.e. one host sync each;
* Adam (lr 1e-3) for both nets, grad-norm clipping at 1.0, soft target update with tau 0.005 done
  parameter by parameter with ``mul_`` then ``add_``;
* hidden (256, 256), batch 128, gamma 0.99, 2000 random-action steps, updates from step 1000 on,
  1 update per env step, seed 42, each episode reset with ``seed + episode_index``.

What is deliberately left out: the plotting, the pandas logs and the probe snapshots (a 32-state actor and
critic forward every 5 episodes, i.e. a few hundred microseconds per 1000 env steps, negligible). The one
thing of the probe that *is* kept is its single draw of 32 indices from the replay buffer's generator: it
costs nothing and keeps the buffer's random stream, hence the whole run, identical to the notebook's, so
the seed script and this module print the same returns for the same seed.

Functions used by the benchmark scripts: :func:`notebook_train`, :func:`notebook_update_rate`,
:func:`update_flops`, :func:`matmul_rate`. Run as a script it prints one JSON line (like the seed script)::

    python bench/baseline.py --total-steps 10000 --seed 42 --device cpu
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from collections.abc import Callable, Sequence

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

# --- the notebook's configuration -------------------------------------------------------------------
ENV_ID = "Pendulum-v1"
REPLAY_CAPACITY = 200_000
BATCH_SIZE = 128
GAMMA = 0.99
TAU = 0.005
ACTOR_LR = 1e-3
CRITIC_LR = 1e-3
START_STEPS = 2_000  # uniform-random actions before this many env steps
UPDATE_AFTER = 1_000  # first update happens when the global step counter reaches this value
NOISE_STD = 0.1
HIDDEN = (256, 256)
MAX_GRAD_NORM = 1.0
PROBE_N = 32  # only used for the notebook's one probe-index draw (see module docstring)
DEFAULT_EPISODE_LEN = 200
EVAL_SEED_OFFSET = 10_000  # without an eval_seed, evaluation episode i is reset with seed + this + i (fastddpg's)

# Pendulum-v1 shapes, used by the synthetic update benchmark
PENDULUM_OBS_DIM = 3
PENDULUM_ACT_DIM = 1
PENDULUM_MAX_TORQUE = 2.0
PENDULUM_MAX_SPEED = 8.0


# --- replay memory ------------------------------------------------------------------------------------
class NumpyReplay:
    """Ring buffer of float32 numpy arrays; sampling draws indices with replacement from a default_rng."""

    def __init__(self, obs_dim: int, act_dim: int, capacity: int, seed: int) -> None:
        self.capacity = int(capacity)
        self.obs = np.zeros((self.capacity, obs_dim), dtype=np.float32)
        self.act = np.zeros((self.capacity, act_dim), dtype=np.float32)
        self.rew = np.zeros((self.capacity, 1), dtype=np.float32)
        self.next_obs = np.zeros((self.capacity, obs_dim), dtype=np.float32)
        self.done = np.zeros((self.capacity, 1), dtype=np.float32)
        self.cursor = 0
        self.size = 0
        self.rng = np.random.default_rng(seed)

    def store(self, obs, act, rew: float, next_obs, done: bool) -> None:
        i = self.cursor
        self.obs[i] = obs
        self.act[i] = act
        self.rew[i] = rew
        self.next_obs[i] = next_obs
        self.done[i] = float(done)
        self.cursor = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def draw(self, n: int) -> dict[str, np.ndarray]:
        rows = self.rng.integers(0, self.size, size=n)
        return {
            "obs": self.obs[rows],
            "act": self.act[rows],
            "rew": self.rew[rows],
            "next_obs": self.next_obs[rows],
            "done": self.done[rows],
        }


# --- networks -------------------------------------------------------------------------------------------
def _stack(widths: Sequence[int], last: nn.Module) -> nn.Sequential:
    """Linear layers with ReLU between them and ``last`` after the final one (the notebook's layout)."""
    mods: list[nn.Module] = []
    n_layers = len(widths) - 1
    for k in range(n_layers):
        mods.append(nn.Linear(widths[k], widths[k + 1]))
        mods.append(nn.ReLU() if k < n_layers - 1 else last)
    return nn.Sequential(*mods)


class Policy(nn.Module):
    """Deterministic actor: tanh output rescaled to the action box."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int], scale, offset) -> None:
        super().__init__()
        self.body = _stack([obs_dim, *hidden, act_dim], nn.Tanh())
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float32))
        self.register_buffer("offset", torch.as_tensor(offset, dtype=torch.float32))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.scale * self.body(obs) + self.offset


class QNet(nn.Module):
    """Critic Q(s, a) on the concatenated state and action."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int]) -> None:
        super().__init__()
        self.body = _stack([obs_dim + act_dim, *hidden, 1], nn.Identity())

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        return self.body(torch.cat([obs, act], dim=-1))


# --- the learner ----------------------------------------------------------------------------------------
class NotebookDDPG:
    """Actor, critic, their targets and optimizers; ``act`` and ``learn`` cost what the notebook's do."""

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        scale,
        offset,
        hidden: Sequence[int] = HIDDEN,
        device: str = "cpu",
    ) -> None:
        self.device = torch.device(device)
        # Actor first, critic second: the order the notebook draws their initial weights from torch's RNG.
        self.actor = Policy(obs_dim, act_dim, hidden, scale, offset).to(self.device)
        self.critic = QNet(obs_dim, act_dim, hidden).to(self.device)
        # The notebook builds two fresh nets and loads the online weights into them; copying gives the same
        # targets (nothing later draws from torch's RNG, so the skipped initialisations change nothing).
        self.actor_targ = copy.deepcopy(self.actor)
        self.critic_targ = copy.deepcopy(self.critic)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=ACTOR_LR)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=CRITIC_LR)

    @torch.no_grad()
    def act(self, obs: np.ndarray, noise_std: float) -> np.ndarray:
        x = torch.as_tensor(obs, dtype=torch.float32, device=self.device).unsqueeze(0)
        a = self.actor(x).cpu().numpy().squeeze(0)
        if noise_std > 0:
            a = a + np.random.normal(0.0, noise_std, size=a.shape).astype(np.float32)
        return a

    def _tensor(self, arr: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(arr, dtype=torch.float32, device=self.device)

    def learn(self, batch: dict[str, np.ndarray]) -> dict[str, float]:
        # Per-update host->tensor conversion of the numpy batch, as in the notebook.
        obs = self._tensor(batch["obs"])
        act = self._tensor(batch["act"])
        rew = self._tensor(batch["rew"])
        next_obs = self._tensor(batch["next_obs"])
        done = self._tensor(batch["done"])

        # Critic: regress Q(s, a) onto r + gamma * (1 - d) * Q'(s', mu'(s')).
        with torch.no_grad():
            q_next = self.critic_targ(next_obs, self.actor_targ(next_obs))
            target = rew + GAMMA * (1.0 - done) * q_next
        q = self.critic(obs, act)
        critic_loss = F.mse_loss(q, target)
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        torch.nn.utils.clip_grad_norm_(self.critic.parameters(), MAX_GRAD_NORM)
        self.critic_opt.step()

        # Actor: maximise Q(s, mu(s)). The backward also fills the critic's .grad (unused, cleared by the
        # next critic zero_grad); the notebook pays for it, so the baseline does too.
        self.actor_opt.zero_grad(set_to_none=True)
        actor_loss = -self.critic(obs, self.actor(obs)).mean()
        actor_loss.backward()
        torch.nn.utils.clip_grad_norm_(self.actor.parameters(), MAX_GRAD_NORM)
        self.actor_opt.step()

        # Polyak averaging, one parameter tensor at a time, scale-then-add like the notebook.
        with torch.no_grad():
            for online, targ in ((self.actor, self.actor_targ), (self.critic, self.critic_targ)):
                for p, p_t in zip(online.parameters(), targ.parameters(), strict=True):
                    p_t.data.mul_(1.0 - TAU)
                    p_t.data.add_(TAU * p.data)

        # Four host syncs per update, as the notebook logs them.
        return {
            "critic_loss": float(critic_loss.item()),
            "actor_loss": float(actor_loss.item()),
            "q_mean": float(q.detach().mean().item()),
            "y_mean": float(target.detach().mean().item()),
        }


# --- the training loop ------------------------------------------------------------------------------------
class NotebookTrainer:
    """Holds the env, buffer and learner of one notebook-style run; ``run_episode`` plays one episode."""

    def __init__(
        self,
        seed: int = 42,
        device: str = "cpu",
        batch_size: int = BATCH_SIZE,
        updates_per_step: int = 1,
    ) -> None:
        self.seed = seed
        self.batch_size = batch_size
        self.updates_per_step = updates_per_step
        np.random.seed(seed)  # the notebook's global seeding: numpy (noise) and torch (weight init)
        torch.manual_seed(seed)

        self.env = gym.make(ENV_ID)
        self.env.reset(seed=seed)
        self.env.action_space.seed(seed)
        self.env.observation_space.seed(seed)
        space = self.env.action_space
        obs_dim = int(np.prod(self.env.observation_space.shape))
        act_dim = int(np.prod(space.shape))
        high = np.asarray(space.high, dtype=np.float32)
        low = np.asarray(space.low, dtype=np.float32)

        self.buffer = NumpyReplay(obs_dim, act_dim, REPLAY_CAPACITY, seed)
        self.agent = NotebookDDPG(obs_dim, act_dim, (high - low) / 2.0, (high + low) / 2.0, HIDDEN, device)
        self.episode_len = getattr(self.env, "_max_episode_steps", DEFAULT_EPISODE_LEN)
        self.global_step = 0
        self.updates = 0
        self.episodes = 0
        self._probe_drawn = False
        self.last_metrics: dict[str, float] = {}

    def run_episode(self) -> float:
        """Play one episode (resetting with ``seed + episode_index``); return its undiscounted return."""
        env, buf, agent = self.env, self.buffer, self.agent
        self.episodes += 1
        obs, _ = env.reset(seed=self.seed + self.episodes)
        obs = np.asarray(obs, dtype=np.float32).reshape(-1)
        ep_return = 0.0
        for _ in range(self.episode_len):
            # uniform-random actions for the first START_STEPS steps, then actor + Gaussian noise
            random_phase = self.global_step < START_STEPS
            action = env.action_space.sample() if random_phase else agent.act(obs, NOISE_STD)
            action = np.clip(action, env.action_space.low, env.action_space.high).astype(np.float32)

            next_obs, reward, terminated, truncated, _ = env.step(action)
            # The notebook stores done = terminated OR truncated, so Pendulum's time-limit truncation at
            # step 200 is stored as a terminal (no bootstrap). That is not textbook-correct, but it is the
            # notebook's behaviour and this baseline reproduces it on purpose.
            done = bool(terminated or truncated)
            next_obs = np.asarray(next_obs, dtype=np.float32).reshape(-1)
            reward = float(reward)
            buf.store(obs, action, reward, next_obs, done)

            obs = next_obs
            ep_return += reward
            self.global_step += 1

            # Checked after the step counter is bumped: the 1000th env step already does an update.
            if self.global_step >= UPDATE_AFTER and buf.size >= self.batch_size:
                for _u in range(self.updates_per_step):
                    self.last_metrics = agent.learn(buf.draw(self.batch_size))
                    self.updates += 1
            if done:
                break

        # The notebook picks its probe states once, by sampling the buffer; keep only that RNG draw.
        if not self._probe_drawn and buf.size >= max(PROBE_N, self.batch_size):
            buf.draw(PROBE_N)
            self._probe_drawn = True
        return ep_return

    @torch.no_grad()
    def evaluate(self, episodes: int, seed: int) -> float:
        """The mean return of ``episodes`` noise-free episodes of the current actor, episode i on an env of its own
        reset with ``seed + i`` (fastddpg's evaluation episodes). Nothing here draws from the training's random
        streams (numpy's global one, torch's, the env's, the buffer's), so training goes on as without it."""
        env = gym.make(ENV_ID)
        low, high = env.action_space.low, env.action_space.high
        returns = []
        for i in range(episodes):
            obs, _ = env.reset(seed=seed + i)
            total, done = 0.0, False
            while not done:
                x = torch.as_tensor(np.asarray(obs, dtype=np.float32).reshape(1, -1), device=self.agent.device)
                action = np.clip(self.agent.actor(x).cpu().numpy()[0], low, high)
                obs, reward, terminated, truncated, _ = env.step(action)
                total += float(reward)
                done = bool(terminated or truncated)
            returns.append(total)
        env.close()
        return float(np.mean(returns))

    def close(self) -> None:
        self.env.close()


def notebook_train(
    total_steps: int = 8000,
    seed: int = 42,
    device: str = "cpu",
    batch_size: int = 128,
    updates_per_step: int = 1,
    eval_every: int = 0,
    eval_episodes: int = 10,
    eval_seed: int | None = None,
) -> dict:
    """Train the notebook's DDPG on Pendulum-v1 for ``total_steps`` env steps and time it.

    Whole episodes are played until at least ``total_steps`` env steps are done, i.e. the step count is
    rounded *up* to whole episodes (Pendulum episodes are 200 steps, so 8000 -> 40 episodes, as the
    notebook's FAST_RUN; 10000 -> 50). The clock starts before seeding/env/network construction, like the
    seed script's JSON line.

    Returns a dict with ``env_steps``, ``updates``, ``seconds``, ``steps_per_sec`` (env steps / seconds),
    ``updates_per_sec`` (updates / seconds, over the whole run including the update-free warm-up),
    ``returns`` (per-episode returns), ``episode_end_steps`` (global step at each episode end),
    ``episode_end_seconds`` (wall seconds since the start at each episode end) and ``last10_mean_return``.

    With ``eval_every`` N > 0, after the episode that reaches each multiple of N env steps the actor is evaluated
    (`NotebookTrainer.evaluate`: ``eval_episodes`` noise-free episodes seeded ``eval_seed + i``, by default
    ``seed + 10000 + i`` as fastddpg's ``--eval-every``) and ``evaluations`` lists (env step, seconds, mean
    return). Every seconds figure then leaves the evaluations' time out (``eval_seconds``), as fastddpg's rates do,
    so the clock is the training's alone.
    """
    t0 = time.perf_counter()
    run = NotebookTrainer(seed=seed, device=device, batch_size=batch_size, updates_per_step=updates_per_step)
    returns: list[float] = []
    end_steps: list[int] = []
    end_seconds: list[float] = []
    evaluations: list[tuple[int, float, float]] = []
    eval_seconds = 0.0
    next_eval = eval_every
    eval_seed = seed + EVAL_SEED_OFFSET if eval_seed is None else eval_seed
    while run.global_step < total_steps:
        returns.append(run.run_episode())
        end_steps.append(run.global_step)
        end_seconds.append(time.perf_counter() - t0 - eval_seconds)
        if eval_every and run.global_step >= next_eval:
            t_eval = time.perf_counter()
            evaluations.append((run.global_step, t_eval - t0 - eval_seconds,
                                run.evaluate(eval_episodes, eval_seed)))
            eval_seconds += time.perf_counter() - t_eval
            next_eval = (run.global_step // eval_every + 1) * eval_every
    run.close()
    seconds = time.perf_counter() - t0 - eval_seconds
    return {
        "env_steps": run.global_step,
        "updates": run.updates,
        "seconds": seconds,
        "steps_per_sec": run.global_step / seconds,
        "updates_per_sec": run.updates / seconds,
        "returns": returns,
        "episode_end_steps": end_steps,
        "episode_end_seconds": end_seconds,
        "last10_mean_return": float(np.mean(returns[-10:])) if returns else float("nan"),
        "evaluations": evaluations,
        "eval_seconds": eval_seconds,
    }


# --- update-only throughput ------------------------------------------------------------------------------
def _fill_with_pendulum_like_data(buf: NumpyReplay, rng: np.random.Generator) -> None:
    """Fill the whole buffer with random transitions of Pendulum's shapes and ranges."""
    n = buf.capacity
    theta = rng.uniform(-np.pi, np.pi, size=n)
    theta_dot = rng.uniform(-PENDULUM_MAX_SPEED, PENDULUM_MAX_SPEED, size=n)
    obs = np.stack([np.cos(theta), np.sin(theta), theta_dot], axis=1)
    next_theta = theta + 0.05 * theta_dot
    next_obs = np.stack([np.cos(next_theta), np.sin(next_theta), theta_dot], axis=1)
    act = rng.uniform(-PENDULUM_MAX_TORQUE, PENDULUM_MAX_TORQUE, size=(n, 1))
    rew = -(theta**2 + 0.1 * theta_dot**2 + 0.001 * act[:, 0] ** 2)
    buf.obs[:] = obs
    buf.next_obs[:] = next_obs
    buf.act[:] = act
    buf.rew[:, 0] = rew
    buf.done[:, 0] = (np.arange(n) % DEFAULT_EPISODE_LEN) == DEFAULT_EPISODE_LEN - 1
    buf.size = n
    buf.cursor = 0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def notebook_update_rate(
    batch_size: int, n_updates: int = 300, warmup: int = 30, device: str = "cpu", seed: int = 0
) -> dict:
    """Updates per second of the notebook's update, sampling included, on a full random Pendulum buffer.

    Each timed update is exactly what the training loop does per step once learning starts: a numpy batch
    drawn from a filled 200k-transition numpy buffer (obs_dim 3, act_dim 1), converted to tensors, the
    critic and actor steps, the per-parameter soft update and four ``.item()`` reads. ``warmup`` untimed
    updates run first. Returns ``{"batch_size", "updates_per_sec", "seconds", "n_updates"}``.
    """
    timed = notebook_updates(batch_size, warmup, device, seed)
    seconds = n_updates / timed(n_updates)
    return {
        "batch_size": batch_size,
        "updates_per_sec": n_updates / seconds,
        "seconds": seconds,
        "n_updates": n_updates,
    }


def notebook_updates(batch_size: int, warmup: int = 30, device: str = "cpu", seed: int = 0
                     ) -> Callable[[int], float]:
    """`notebook_update_rate`'s agent and buffer, made and warmed up once: ``timed(n)`` runs ``n`` more updates
    and returns their updates/s, so a benchmark can interleave its repeats with other sides'."""
    np.random.seed(seed)
    torch.manual_seed(seed)
    agent = NotebookDDPG(PENDULUM_OBS_DIM, PENDULUM_ACT_DIM, [PENDULUM_MAX_TORQUE], [0.0], HIDDEN, device)
    buf = NumpyReplay(PENDULUM_OBS_DIM, PENDULUM_ACT_DIM, REPLAY_CAPACITY, seed)
    _fill_with_pendulum_like_data(buf, np.random.default_rng(seed + 1))
    for _ in range(warmup):
        agent.learn(buf.draw(batch_size))
    _sync(agent.device)

    def timed(n_updates: int) -> float:
        t0 = time.perf_counter()
        for _ in range(n_updates):
            agent.learn(buf.draw(batch_size))
        _sync(agent.device)
        return n_updates / (time.perf_counter() - t0)

    return timed


# --- compute model -----------------------------------------------------------------------------------------
def _matmul_flops(widths: Sequence[int], batch_size: int) -> list[int]:
    """2 * B * n_in * n_out per Linear layer of an MLP with the given widths."""
    return [2 * batch_size * widths[k] * widths[k + 1] for k in range(len(widths) - 1)]


def _param_count(widths: Sequence[int]) -> int:
    return sum(widths[k] * widths[k + 1] + widths[k + 1] for k in range(len(widths) - 1))


def update_flops(obs_dim: int, act_dim: int, hidden: tuple[int, ...], batch_size: int) -> float:
    """FLOPs of one notebook DDPG update (batch ``B``), counted from the matrix multiplies.

    Counting rules:

    * a Linear layer ``n_in -> n_out`` costs ``2*B*n_in*n_out`` forward (one multiply-add per weight per
      sample); its backward costs ``2*B*n_in*n_out`` for the weight gradient and another
      ``2*B*n_in*n_out`` for the input gradient, the latter only when the layer's input needs a gradient
      (autograd skips it for a first layer fed with data);
    * bias adds, activations, the concat, the loss and the bias gradients are O(B * width) and ignored;
    * optimizer (Adam), grad-norm clipping, zero_grad and the soft update are charged 10 FLOPs per
      parameter of actor + critic together.

    With ``Fa``/``Fc`` the forward FLOPs of the actor ``[obs, *hidden, act]`` and critic
    ``[obs+act, *hidden, 1]`` and ``fa1``/``fc1`` their first layers' share, one update is

    * target actor fwd + target critic fwd (no grad):                 ``Fa + Fc``
    * critic fwd + bwd (weight grads, input grads except layer 1):    ``Fc + Fc + (Fc - fc1)``
    * actor fwd + critic fwd:                                         ``Fa + Fc``
    * backward of the actor loss: critic weight grads (the notebook computes them although they are then
      discarded) ``Fc``, critic input grads through all layers incl. the first (the action slice) ``Fc``,
      actor weight grads ``Fa``, actor input grads except layer 1 ``Fa - fa1``

    total ``4*Fa - fa1 + 7*Fc - fc1 + 10*(P_actor + P_critic)``; ~188.8 MFLOP for Pendulum at B=128 with
    hidden (256, 256).
    """
    actor = _matmul_flops([obs_dim, *hidden, act_dim], batch_size)
    critic = _matmul_flops([obs_dim + act_dim, *hidden, 1], batch_size)
    fa, fc = sum(actor), sum(critic)
    n_params = _param_count([obs_dim, *hidden, act_dim]) + _param_count([obs_dim + act_dim, *hidden, 1])
    return float(4 * fa - actor[0] + 7 * fc - critic[0] + 10 * n_params)


def matmul_rate(batch_size: int, hidden: int = 256, device: str = "cpu", min_seconds: float = 0.3,
                library: str = "default") -> float:
    """FLOP/s of a ``(batch_size x hidden) @ (hidden x hidden)`` float32 matmul on this machine.

    The iteration count is calibrated so that each of 5 timed chunks lasts about ``min_seconds / 5``; the
    best chunk is reported (the attainable peak for this shape). ``2*B*H*H`` FLOPs per matmul. ``library``:
    ``default`` is ``torch.mm`` (MKL on an x86 CPU), ``onednn`` oneDNN's linear (the product a compiled CPU
    update runs with ``--cpu-matmul onednn``).
    """
    dev = torch.device(device)
    a = torch.randn(batch_size, hidden, device=dev)
    w = torch.randn(hidden, hidden, device=dev)
    out = torch.empty(batch_size, hidden, device=dev)
    w_t = w.t().contiguous()
    flops = 2.0 * batch_size * hidden * hidden

    def chunk(iters: int) -> float:
        _sync(dev)
        t = time.perf_counter()
        for _ in range(iters):
            if library == "onednn":
                torch.ops.mkldnn._linear_pointwise.default(a, w_t, None, "none", [], "")
            else:
                torch.mm(a, w, out=out)
        _sync(dev)
        return time.perf_counter() - t

    chunk(10)  # warm-up
    iters = 1
    while True:  # calibrate
        dt = chunk(iters)
        if dt >= min_seconds / 20 or iters >= 1 << 24:
            break
        iters *= 2
    per_chunk = max(1, math.ceil(iters * (min_seconds / 5) / max(dt, 1e-9)))
    best = min(chunk(per_chunk) for _ in range(5))
    return flops * per_chunk / best


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Time the seed notebook's DDPG (reference baseline).")
    p.add_argument("--total-steps", type=int, default=8000, help="env steps, rounded up to whole episodes")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    p.add_argument("--updates-per-step", type=int, default=1)
    p.add_argument("--eval-every", type=int, default=0, help="noise-free evaluation every N env steps (0: none)")
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--eval-seed", type=int, default=None, help="evaluation episode i is reset with this + i "
                   f"(default: --seed + {EVAL_SEED_OFFSET})")
    args = p.parse_args(argv)
    started_unix = time.time()  # notebook_train's clock starts here: lets a launcher count from its own start
    r = notebook_train(
        total_steps=args.total_steps,
        seed=args.seed,
        device=args.device,
        batch_size=args.batch_size,
        updates_per_step=args.updates_per_step,
        eval_every=args.eval_every,
        eval_episodes=args.eval_episodes,
        eval_seed=args.eval_seed,
    )
    print(
        json.dumps(
            {
                "env_steps": r["env_steps"],
                "updates": r["updates"],
                "seconds": round(r["seconds"], 2),
                "steps_per_sec": round(r["steps_per_sec"], 1),
                "updates_per_sec": round(r["updates_per_sec"], 1),
                "last10_mean_return": r["last10_mean_return"],
                "returns": [round(x, 1) for x in r["returns"]],
                "episode_end_seconds": [round(x, 3) for x in r["episode_end_seconds"]],
                "started_unix": started_unix,
                "evaluations": [[s, round(t, 3), ret] for s, t, ret in r["evaluations"]],
                "eval_seconds": round(r["eval_seconds"], 3),
            }
        )
    )


if __name__ == "__main__":
    main()
