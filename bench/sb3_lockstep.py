"""fastddpg's update against Stable-Baselines3's, one update at a time, from the same weights on the same batches.

Run it with the SB3 venv and this repository on the path (fastddpg's update needs only torch):

    PYTHONPATH=$PWD OMP_NUM_THREADS=1 SB3_VENV/bin/python bench/sb3_lockstep.py --algo td3 --updates 2000 --double

What it does: builds SB3's TD3 (or DDPG) on ``--env-id`` (InvertedPendulum-v5: actions in [-3, 3]) with the
notebook's hyperparameters and no gradient clipping on either side, copies SB3's initial actor and critic weights
into fastddpg's networks, collects a fixed data set of random-action transitions, then runs ``--updates`` updates
on both, each on the same batch (and, for TD3, the same target smoothing noise: both draw it from torch's global
RNG, re-seeded before each update). After selected updates it prints how far the two have drifted apart: the
largest difference of Q_1 and of the actor's output on the data set, relative to their scale.

Two fastddpg variants, side by side:

- ``normalized``: fastddpg built with bounds [-1, 1] and fed SB3's normalized actions: the parametrisation SB3
  uses. If fastddpg's math equals SB3's, this stays at float rounding (~1e-6).
- ``env``: fastddpg as it runs on the env: bounds [low, high], its critic takes env-unit actions. The critic's
  first-layer action columns are divided by the action scale, so it starts as the same function as SB3's critic;
  from there Adam's steps differ (a reparametrisation is not Adam-invariant), and this measures by how much.

``--algo sac``: SB3's SAC (automatic temperature from 1.0) against fastddpg's, the normalized variant only (SB3's
SAC acts in [-1, 1]). Both draw their Gaussian noise from torch's global RNG re-seeded before each update, in SB3's
order (the sample at s, then at s'). One difference is by design: fastddpg's tanh correction is the exact
log(1 - tanh(u)^2) where SB3 adds 1e-6 inside the log (`fastddpg.algos.sac`), so SAC's drift is not at float
rounding but at the size of that epsilon's effect (amplified by Adam, whose first steps move every parameter by
about the learning rate whatever its gradient's size); alpha's drift is reported too. SB3 also halves SAC's critic
loss, which Adam undoes up to its eps. ``--match-sb3`` takes both differences away on fastddpg's side (SB3's
epsilon in the correction; the critic's Adam eps doubled, the same step as a halved loss): with ``--double`` the
drift must then stay at float64 rounding, which shows that every other line of the two updates computes the same.

``--algo crossq``: sb3-contrib's CrossQ against fastddpg's the same way (critics ``--crossq-width`` wide, policy
delay 3, Adam betas (0.5, 0.999), the BatchRenorm layers' weights, scales, shifts and running statistics copied, and
their warm-up shortened to ``--renorm-warmup`` training forwards on both sides so that the renormalising branch
runs too). sb3-contrib's CrossQ shares SAC's two differences by design, and ``--match-sb3`` takes them away.

Prints one JSON line with the per-checkpoint drifts.
"""

from __future__ import annotations

import argparse
import json

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import DDPG, SAC, TD3
from stable_baselines3.common.logger import configure
from stable_baselines3.common.type_aliases import ReplayBufferSamples

from fastddpg.algos import DDPG as FastDDPG
from fastddpg.algos import SAC as FastSAC
from fastddpg.algos import TD3 as FastTD3
from fastddpg.algos import CrossQ as FastCrossQ
from fastddpg.algos.crossq import ADAM_BETAS, crossq_update
from fastddpg.algos.sac import SACHyper, sac_update
from fastddpg.learning.update import AdamHyper, Batch, Hyper, ddpg_update, td3_update

CHECKPOINTS = (1, 2, 10, 50, 100, 200, 300, 500, 1000, 2000)


def collect(env_id: str, steps: int, seed: int) -> dict[str, torch.Tensor]:
    """``steps`` random-action transitions of ``env_id``: obs, action (env units), reward, next_obs, terminated."""
    env = gym.make(env_id)
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    rows: dict[str, list] = {"obs": [], "action": [], "reward": [], "next_obs": [], "terminated": []}
    for _ in range(steps):
        a = env.action_space.sample()
        nxt, r, term, trunc, _ = env.step(a)
        for k, v in zip(rows, (obs, a, [r], nxt, [float(term)]), strict=True):
            rows[k].append(np.asarray(v, dtype=np.float32))
        obs = env.reset()[0] if term or trunc else nxt
    return {k: torch.as_tensor(np.stack(v)) for k, v in rows.items()}


def joined_heads(actor) -> tuple[torch.Tensor, torch.Tensor]:
    """SB3's mu and log_std heads (SAC, CrossQ) as fastddpg's one last Linear [mu | log_std]: (weight, bias)."""
    heads = (actor.mu, actor.log_std)
    return torch.cat([h.weight for h in heads]), torch.cat([h.bias for h in heads])


def copy_weights(model, fast, scale: torch.Tensor, obs_dim: int) -> None:
    """SB3's actor, critics and targets into fastddpg's modules. ``scale`` (act_dim,): the critic's action input
    columns are divided by it (1 for the normalized variant)."""
    if isinstance(model, SAC):  # latent_pi, then the heads
        sb_layers = [m for m in model.actor.latent_pi if isinstance(m, torch.nn.Linear)]
        sb_params = [(m.weight, m.bias) for m in sb_layers] + [joined_heads(model.actor)]
    else:
        sb_params = [(m.weight, m.bias) for m in model.actor.mu if isinstance(m, torch.nn.Linear)]
    fast_layers = [m for m in fast.actor.net if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        for (weight, bias), f in zip(sb_params, fast_layers, strict=True):
            f.weight.copy_(weight)
            f.bias.copy_(bias)
        qnets = model.critic.q_networks
        for c, q in enumerate(qnets):
            sb = [m for m in q if isinstance(m, torch.nn.Linear)]
            fl = [m for m in fast.critic.net if hasattr(m, "weight") and m.weight.dim() >= 2]
            for i, (s, f) in enumerate(zip(sb, fl, strict=True)):
                w = s.weight.clone()
                if i == 0:
                    w[:, obs_dim:] /= scale
                if f.weight.dim() == 3:  # TwinCritic's StackedLinear: (K, in, out), bias (K, 1, out)
                    f.weight[c].copy_(w.T)
                    f.bias[c, 0].copy_(s.bias)
                else:
                    f.weight.copy_(w)
                    f.bias.copy_(s.bias)
        if "target_actor" in fast.modules():
            fast.target_actor.load_state_dict(fast.actor.state_dict())
        fast.target_critic.load_state_dict(fast.critic.state_dict())


def copy_renorm(sb_modules: list[torch.nn.Module], net, row: int) -> None:
    """sb3-contrib's [BatchRenorm1d, Linear, ReLU, ...] (the heads already joined into the last Linear) into row
    ``row`` of fastddpg's `RenormMLP` ``net``."""
    bns = [m for m in sb_modules if type(m).__name__ == "BatchRenorm1d"]
    linears = [m for m in sb_modules if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        for layer, bn, lin in zip(net.layers, bns, linears, strict=True):
            layer.scale[row, 0].copy_(bn.scale)
            layer.shift[row, 0].copy_(bn.bias)
            layer.ra_mean[row, 0].copy_(bn.ra_mean)
            layer.ra_var[row, 0].copy_(bn.ra_var)
            layer.steps[row].fill_(float(bn.steps))
            layer.weight[row].copy_(lin.weight.T)
            layer.bias[row, 0].copy_(lin.bias)


def copy_crossq_weights(model, fast) -> None:
    """sb3-contrib's CrossQ actor (latent_pi, then the mu and log_std heads) and its critics into fastddpg's."""
    heads = torch.nn.Linear(model.actor.mu.in_features, 2 * model.actor.mu.out_features)
    with torch.no_grad():
        weight, bias = joined_heads(model.actor)
        heads.weight.copy_(weight)
        heads.bias.copy_(bias)
    copy_renorm([*model.actor.latent_pi, heads], fast.actor.net, 0)
    for c, q in enumerate(model.critic.q_networks):
        copy_renorm(list(q), fast.critic.net, c)


def to_double(model, fast) -> None:
    """Both sides in float64 (SB3's observation preprocessing casts to float32, so it is bypassed)."""
    import stable_baselines3.common.policies as sb3_policies

    sb3_policies.preprocess_obs = lambda obs, space, normalize_images=True: obs
    model.policy.double()
    if getattr(model, "log_ent_coef", None) is not None:  # SAC's temperature lives outside the policy
        model.log_ent_coef.data = model.log_ent_coef.data.double()
    for m in fast.modules().values():
        m.double()
    fast.action_low, fast.action_high = fast.action_low.double(), fast.action_high.double()
    fast._bind_state(optim=None)
    for opt in fast.state["optim"].values():  # fastddpg counts Adam's steps in float32: in float64 here too
        opt["step"] = opt["step"].double()


def drift(model, fast, data: dict[str, torch.Tensor], scale: torch.Tensor, bias: torch.Tensor,
          normalized: bool) -> dict[str, float]:
    """max |Q1_sb3 - Q1_fast| / mean |Q1_sb3| and max |mu_sb3 - mu_fast| (normalized units) on the data set."""
    model.policy.set_training_mode(False)  # BatchRenorm: the running statistics, as fastddpg's eval-mode modules
    with torch.no_grad():
        a_norm = (data["action"] - bias) / scale
        q_sb = (model.critic(data["obs"], a_norm)[0] if type(model).__name__ == "CrossQ"
                else model.critic.q1_forward(data["obs"], a_norm))
        q_fast = fast.q1(data["obs"], a_norm if normalized else data["action"])
        stochastic = hasattr(model, "log_ent_coef")  # SAC, CrossQ
        mu_sb = model.actor(data["obs"], deterministic=True) if stochastic else model.actor(data["obs"])
        mu_fast = fast.actor(data["obs"])
        if not normalized:
            mu_fast = (mu_fast - bias) / scale
        out = {"q_rel": float((q_sb - q_fast).abs().max() / q_sb.abs().mean().clamp_min(1e-8)),
               "mu_abs": float((mu_sb - mu_fast).abs().max()),
               "q_sb3_mean": float(q_sb.mean()), "q_fast_mean": float(q_fast.mean())}
        if stochastic:
            alpha_sb, alpha_fast = model.log_ent_coef.exp(), fast.state["alpha"]["log_alpha"].exp()
            out["alpha_rel"] = float(((alpha_sb - alpha_fast).abs() / alpha_sb).max())
        return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--algo", choices=("td3", "ddpg", "sac", "crossq"), default="td3")
    p.add_argument("--env-id", default="InvertedPendulum-v5")
    p.add_argument("--updates", type=int, default=300)
    p.add_argument("--data", type=int, default=5000, help="random-action transitions to sample batches from")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--variant", choices=("normalized", "env"), default="normalized")
    p.add_argument("--grad-clip-norm", type=float, default=0.0, help="fastddpg's (SB3 has none)")
    p.add_argument("--double", action="store_true",
                   help="both sides in float64: rounding then cannot explain a drift of more than ~1e-12")
    p.add_argument("--match-sb3", action="store_true",
                   help="sac, crossq: SB3's 1e-6 inside the tanh correction and its halved critic loss, on "
                        "fastddpg's side")
    p.add_argument("--crossq-width", type=int, default=256, help="crossq: the critics' width, both sides")
    p.add_argument("--renorm-warmup", type=int, default=100, help="crossq: BatchRenorm's warm-up, both sides")
    a = p.parse_args(argv)
    torch.set_num_threads(1)

    env = gym.make(a.env_id)
    low = torch.as_tensor(env.action_space.low, dtype=torch.float32)
    high = torch.as_tensor(env.action_space.high, dtype=torch.float32)
    scale, bias = (high - low) / 2, (high + low) / 2
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    stochastic = a.algo in ("sac", "crossq")
    if stochastic and a.variant != "normalized":
        p.error(f"--algo {a.algo}: only --variant normalized (SB3's SAC and CrossQ act in [-1, 1])")
    if a.algo == "crossq":
        from sb3_contrib import CrossQ

        model = CrossQ("MlpPolicy", env, learning_rate=1e-3, batch_size=128, gamma=0.99, learning_starts=0,
                       policy_delay=3, ent_coef="auto_1.0", seed=a.seed, device="cpu",
                       policy_kwargs={"net_arch": {"pi": [256, 256], "qf": [a.crossq_width] * 2},
                                      "renorm_warmup_steps": a.renorm_warmup})
    else:
        cls = {"td3": TD3, "ddpg": DDPG, "sac": SAC}[a.algo]
        model = cls("MlpPolicy", env, learning_rate=1e-3, batch_size=128, tau=0.005, gamma=0.99, learning_starts=0,
                    policy_kwargs={"net_arch": [256, 256]}, seed=a.seed, device="cpu",
                    **({"ent_coef": "auto_1.0"} if a.algo == "sac" else {}))
    model.set_logger(configure(None, []))
    normalized = a.variant == "normalized"
    lo, hi = (-torch.ones(act_dim), torch.ones(act_dim)) if normalized else (low, high)
    if stochastic:
        critic_eps = 2e-8 if a.match_sb3 else 1e-8  # Adam on L/2 with eps = Adam on L with 2 eps
        betas = ADAM_BETAS if a.algo == "crossq" else (0.9, 0.999)
        hyper = SACHyper(0.99, 0.005, a.grad_clip_norm, AdamHyper(1e-3, betas),
                         AdamHyper(1e-3, betas, eps=critic_eps), AdamHyper(1e-3))
        if a.match_sb3:
            import fastddpg.algos.sac as fast_sac

            fast_sac.tanh_log_det = lambda u: torch.log(1.0 - torch.tanh(u).square() + 1e-6)
        if a.algo == "crossq":
            fast = FastCrossQ(obs_dim, act_dim, (256, 256), lo, hi, torch.device("cpu"), hyper, init_alpha=1.0,
                              policy_delay=3, critic_width=a.crossq_width, renorm_warmup=a.renorm_warmup)
        else:
            fast = FastSAC(obs_dim, act_dim, (256, 256), lo, hi, torch.device("cpu"), hyper, init_alpha=1.0)
    else:
        hyper = Hyper(0.99, 0.005, a.grad_clip_norm, AdamHyper(1e-3), AdamHyper(1e-3), 0.2, 0.5)
        fast_cls = FastTD3 if a.algo == "td3" else FastDDPG
        fast = fast_cls(obs_dim, act_dim, (256, 256), lo, hi, torch.device("cpu"), hyper,
                        **({"policy_delay": 2} if a.algo == "td3" else {}))
    if a.algo == "crossq":
        copy_crossq_weights(model, fast)
    else:
        copy_weights(model, fast, torch.ones(act_dim) if normalized else scale, obs_dim)
    data = collect(a.env_id, a.data, a.seed)
    if a.double:
        to_double(model, fast)
        data = {k: v.double() for k, v in data.items()}
        scale, bias = scale.double(), bias.double()
    gen = torch.Generator().manual_seed(a.seed)
    out = {"algo": a.algo, "env_id": a.env_id, "variant": a.variant, "grad_clip_norm": a.grad_clip_norm,
           "double": a.double, "match_sb3": a.match_sb3,
           "at_start": drift(model, fast, data, scale, bias, normalized), "after": {}}
    policy_noise = model.target_policy_noise if a.algo == "td3" else 0.0
    for u in range(1, a.updates + 1):
        idx = torch.randint(0, a.data, (128,), generator=gen)
        b = {k: v[idx] for k, v in data.items()}
        a_norm = (b["action"] - bias) / scale
        samples = ReplayBufferSamples(b["obs"], a_norm, b["next_obs"], b["terminated"], b["reward"])
        model.replay_buffer.sample = lambda *args, s=samples, **kw: s
        torch.manual_seed(10_000 + u)
        model.train(gradient_steps=1, batch_size=128)
        batch = Batch(b["obs"], a_norm if normalized else b["action"], b["reward"], b["next_obs"], b["terminated"])
        if stochastic:
            # normal_() on (B, act_dim) per sample, in the peer's order: SB3's SAC samples pi(.|s) first, then
            # pi(.|s'); sb3-contrib's CrossQ pi(.|s') first, then (on actor steps) pi(.|s)
            torch.manual_seed(10_000 + u)
            first, second = (torch.empty(128, act_dim, dtype=b["obs"].dtype).normal_() for _ in range(2))
            eps_now, eps_next = (first, second) if a.algo == "sac" else (second, first)
            eps = torch.cat([eps_next, eps_now], dim=-1)
            if a.algo == "sac":
                sac_update(fast.nets, fast.state, batch, eps, hyper, -float(act_dim))
            else:
                crossq_update(fast.nets, fast.state, batch, eps, hyper, -float(act_dim),
                              actor_step=fast.is_actor_step(u))
        elif a.algo == "td3":
            torch.manual_seed(10_000 + u)  # SB3 draws normal_(0, policy_noise) on a (B, act_dim) tensor
            eps = torch.empty(128, act_dim, dtype=b["obs"].dtype).normal_(0, policy_noise) / policy_noise
            td3_update(fast.nets, fast.state, batch, eps, hyper, actor_step=fast.is_actor_step(u))
        else:
            ddpg_update(fast.nets, fast.state, batch, hyper)
        if u in CHECKPOINTS or u == a.updates:
            out["after"][u] = drift(model, fast, data, scale, bias, normalized)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
