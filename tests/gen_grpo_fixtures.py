#!/usr/bin/env python3
"""Generate tests/fixtures/grpo: reference values for src/rl (grpo, schedule).

    /usr/bin/python3 tests/gen_grpo_fixtures.py      (torch >= 1.13, numpy)

loss_cases.json — the GRPO policy loss as slime computes it (policy_loss_function
in slime/backends/megatron_utils/loss.py with compute_policy_loss and
compute_approx_kl from slime/utils/ppo_utils.py, and the per-sample-mean /
per-token reducers of cp_utils.get_sum_of_sample_mean), written out here in
float64 torch and differentiated with autograd. Inputs are float32 values (the
C side reads float arrays); the step's normalizer N is given explicitly so a
micro-batch can be part of a larger step.

advantages.json — slime's _post_process_rewards group normalization
((r - mean) / (std + 1e-6), torch.std = sample std) and the
check_reward_nonzero_std filter, in float64.

schedule.json — Megatron's OptimizerParamScheduler.get_lr, reimplemented below
in sample units exactly as slime drives it (num_steps advanced by the global
batch size after each optimizer step; warmup = fraction * decay samples).
"""
import json
import math
import os

import numpy as np
import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "grpo")
RNG = np.random.default_rng(20250117)


def f32(a):
    return np.asarray(a, dtype=np.float32).astype(np.float64)


# ---- slime's formulas (float64) ----

def approx_kl(log_probs, log_probs_base, kl_type):
    log_ratio = log_probs - log_probs_base
    if kl_type == "k1":
        kl = log_ratio
    elif kl_type == "k2":
        kl = log_ratio ** 2 / 2.0
    elif kl_type in ("k3", "low_var_kl"):
        log_ratio = -log_ratio
        kl = log_ratio.exp() - 1 - log_ratio
    else:
        raise ValueError(kl_type)
    if kl_type == "low_var_kl":
        kl = torch.clamp(kl, min=-10, max=10)
    return kl


def policy_loss(ppo_kl, advantages, eps_clip, eps_clip_high):
    ratio = (-ppo_kl).exp()
    pg_losses1 = -ratio * advantages
    pg_losses2 = -ratio.clamp(1 - eps_clip, 1 + eps_clip_high) * advantages
    clip_pg_losses1 = torch.maximum(pg_losses1, pg_losses2)
    clipfrac = torch.gt(pg_losses2, pg_losses1).double()
    return clip_pg_losses1, clipfrac


def make_reducer(lengths, masks, per_token, count):
    """slime's sum_of_sample_mean / sum_of_token, divided by the step's N
    (loss_function multiplies by num_microbatches / global_batch_size, or
    Megatron divides by the token count for per-token loss)."""
    def reduce(x):
        total = 0.0
        for x_i, m_i in zip(x.split(lengths), masks):
            if per_token:
                total = total + (x_i * m_i).sum()
            else:
                total = total + (x_i * m_i).sum() / torch.clamp_min(m_i.sum(), 1)
        return total / count
    return reduce


def grpo_case(name, lengths, kl_type, kl_coef, entropy_coef, per_token, extra_count, seed,
              eps_low=0.2, eps_high=0.28, big_ref_gap=False):
    rng = np.random.default_rng(seed)
    T = sum(lengths)
    logprob = f32(-np.abs(rng.normal(1.0, 1.0, T)))
    # old policy: close to the current one, with some tokens far enough
    # apart that the clip is active on both sides
    old = f32(logprob + rng.normal(0.0, 0.25, T))
    ref = f32(logprob + rng.normal(0.0, 0.6, T))
    if big_ref_gap:  # push a few tokens past low_var_kl's clamp (kl > 10)
        idx = rng.choice(T, size=max(2, T // 8), replace=False)
        ref[idx] = f32(logprob[idx] + rng.uniform(3.0, 5.0, len(idx)))
    entropy = f32(rng.uniform(0.0, 3.0, T))
    mask = np.zeros(T)
    start = 0
    seq_start = [0]
    masks = []
    for si, L in enumerate(lengths):
        m = np.zeros(L)
        if si == 2:
            pass  # a trajectory with no agent tokens
        else:
            # prompt (mask 0), then agent turns and tool/user deltas
            p = max(1, L // 4)
            m[p:] = 1.0
            for j in range(p, L):
                if rng.random() < 0.2:
                    m[j] = 0.0
        mask[start:start + L] = m
        masks.append(torch.tensor(m, dtype=torch.float64))
        start += L
        seq_start.append(start)
    adv = rng.normal(0.0, 1.0, len(lengths))
    adv[1] = 0.0  # a trajectory whose group had equal rewards
    # masked positions may hold anything: give them values that would be
    # NaN/inf if they were used
    garbage = np.where(mask == 0)[0][:3]
    old_c = old.copy()
    old_c[garbage[:1]] = -1e30

    lp = torch.tensor(logprob, dtype=torch.float64, requires_grad=True)
    ent = torch.tensor(entropy, dtype=torch.float64, requires_grad=True)
    old_t = torch.tensor(np.where(mask == 0, 0.0, old), dtype=torch.float64)
    ref_t = torch.tensor(ref, dtype=torch.float64)
    adv_t = torch.cat([torch.full((L,), a, dtype=torch.float64) for L, a in zip(lengths, adv)])

    own = sum(max(1.0, m.sum().item()) for m in masks) if per_token else float(len(lengths))
    count = own + extra_count
    reduce = make_reducer(lengths, masks, per_token, count)

    ppo_kl_tok = old_t - lp
    pg, clipfrac = policy_loss(ppo_kl_tok, adv_t, eps_low, eps_high)
    pg_loss = reduce(pg)
    entropy_loss = reduce(ent)
    loss = pg_loss - entropy_coef * entropy_loss
    kl = approx_kl(lp, ref_t, kl_type)
    kl_loss = reduce(kl)
    loss = loss + kl_coef * kl_loss
    loss.backward()

    return {
        "name": name,
        "config": {"eps_low": eps_low, "eps_high": eps_high, "kl_coef": kl_coef, "kl_type": kl_type,
                   "entropy_coef": entropy_coef, "per_token": per_token},
        "count": count if extra_count else 0.0,
        "step_count": count,
        "seq_start": seq_start,
        "logprob": logprob.tolist(),
        "old_logprob": old_c.tolist(),
        "ref_logprob": ref.tolist(),
        "entropy": entropy.tolist(),
        "mask": mask.tolist(),
        "advantage": adv.tolist(),
        "expected": {
            "loss": loss.item(),
            "pg_loss": pg_loss.item(),
            "pg_clipfrac": reduce(clipfrac).item(),
            "ppo_kl": reduce(ppo_kl_tok.detach()).item(),
            "kl_loss": kl_loss.item(),
            "entropy": entropy_loss.item(),
            "logprob_abs_diff": reduce(ppo_kl_tok.detach().abs()).item(),
            "n_tokens": int(mask.sum()),
            "clipped_tokens": int((clipfrac.numpy() * mask).sum()),
            "kl_clamped_tokens": int(((approx_kl(lp.detach(), ref_t, "k3") > 10).numpy() * mask).sum()),
            "dlogprob": lp.grad.numpy().tolist(),
            "dentropy": ent.grad.numpy().tolist(),
        },
    }


def loss_cases():
    cases = []
    seed = 1
    lengths = [11, 17, 6, 23, 9]
    for kl_type in ("k1", "k2", "k3", "low_var_kl"):
        for per_token in (False, True):
            for entropy_coef in (0.0, 0.01):
                name = f"{kl_type}_{'tok' if per_token else 'traj'}_ent{entropy_coef}"
                cases.append(grpo_case(name, lengths, kl_type, 0.05, entropy_coef, per_token,
                                       extra_count=0, seed=seed, big_ref_gap=(kl_type == "low_var_kl")))
                seed += 1
    # part of a larger step: N counts other micro-batches too
    cases.append(grpo_case("microbatch_traj", [7, 30, 5, 12], "low_var_kl", 0.1, 0.02, False,
                           extra_count=5, seed=100, big_ref_gap=True))
    cases.append(grpo_case("microbatch_tok", [7, 30, 5, 12], "k2", 0.1, 0.02, True,
                           extra_count=57, seed=101))
    # no KL, no entropy, other clip range
    cases.append(grpo_case("plain_eps", [13, 8, 4, 19, 2, 10], "low_var_kl", 0.0, 0.0, False,
                           extra_count=0, seed=102, eps_low=0.1, eps_high=0.1))
    return cases


def advantages():
    groups = [
        [1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0],       # binary
        [1.0, 1.0, 1.0, 1.0],                           # all equal: dropped, A = 0
        [0.0, 0.0, 0.0, 0.0, 0.0],
        [1.25, 0.1, 0.0, 1.0, 0.7375],                  # shaped rewards
        [0.3, 0.3 + 1e-9],                              # std below 1e-6
        [0.0, 1.0],
        [0.5],                                          # a group of one
    ]
    out = []
    for r in groups:
        t = torch.tensor(r, dtype=torch.float64)
        if len(r) > 1:
            c = t - t.mean()
            std = c.std()
            a = (c / (std + 1e-6)).tolist()
            keep = bool(t.std() > 1e-6)
        else:
            a = [0.0]  # torch gives NaN; the C side defines 0
            keep = False
        out.append({"rewards": r, "advantage": a, "centered": (t - t.mean()).tolist(), "keep": keep})
    return out


class MegatronLr:
    """OptimizerParamScheduler.get_lr (constant / linear / cosine), sample units."""

    def __init__(self, init_lr, max_lr, min_lr, warmup_steps, decay_steps, style):
        self.init_lr, self.max_lr, self.min_lr = init_lr, max_lr, min_lr
        self.lr_warmup_steps, self.lr_decay_steps, self.style = warmup_steps, decay_steps, style
        self.num_steps = 0

    def get_lr(self):
        if self.lr_warmup_steps > 0 and self.num_steps <= self.lr_warmup_steps:
            return self.init_lr + ((self.max_lr - self.init_lr) * float(self.num_steps)
                                   / float(self.lr_warmup_steps))
        if self.style == "constant":
            return self.max_lr
        if self.num_steps > self.lr_decay_steps:
            return self.min_lr
        num_steps_ = self.num_steps - self.lr_warmup_steps
        decay_steps_ = self.lr_decay_steps - self.lr_warmup_steps
        decay_ratio = float(num_steps_) / float(decay_steps_)
        delta_lr = self.max_lr - self.min_lr
        if self.style == "linear":
            coeff = 1.0 - decay_ratio
        else:
            coeff = 0.5 * (math.cos(math.pi * decay_ratio) + 1.0)
        return self.min_lr + coeff * delta_lr


def schedule():
    out = []
    configs = [
        # style, lr, min_lr, init_lr, warmup_fraction (None: iters), warmup_iters, decay_iters, global batch
        ("cosine", 1e-6, 1e-7, 0.0, 0.1, 0, 100, 64),
        ("cosine", 3e-5, 0.0, 0.0, 0.03, 0, 37, 32),      # fractional warmup (1.11 steps)
        ("linear", 2e-5, 2e-6, 1e-6, None, 5, 50, 16),
        ("constant", 1e-6, 0.0, 0.0, None, 0, 20, 8),
        ("constant", 1e-6, 0.0, 0.0, 0.25, 0, 20, 8),
        ("cosine", 1e-5, 1e-6, 0.0, None, 0, 10, 4),      # no warmup
    ]
    for style, lr, min_lr, init_lr, frac, witers, decay_iters, gbs in configs:
        decay = decay_iters * gbs
        warm = frac * decay if frac is not None else witers * gbs
        sched = MegatronLr(init_lr, lr, min_lr, warm, decay, style)
        lrs = []
        # slime: lr of update k is get_lr() with num_steps = k * global batch
        for k in range(decay_iters + 4):
            sched.num_steps = k * gbs
            lrs.append(sched.get_lr())
        out.append({"style": style, "lr": lr, "min_lr": min_lr, "init_lr": init_lr,
                    "warmup_fraction": -1.0 if frac is None else frac, "warmup_iters": witers,
                    "decay_steps": decay_iters, "lrs": lrs})
    return out


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, obj in (("loss_cases.json", loss_cases()), ("advantages.json", advantages()),
                      ("schedule.json", schedule())):
        with open(os.path.join(OUT, name), "w") as f:
            json.dump(obj, f, indent=None)
            f.write("\n")
        print("wrote", name, os.path.getsize(os.path.join(OUT, name)), "bytes")


if __name__ == "__main__":
    main()
