#!/usr/bin/python3
"""Reference fixtures for the Qwen3 CPU engine (tests/unit/test_qwen3.c).

An independent PyTorch implementation of Hugging Face's Qwen3ForCausalLM,
computed in float64, run on tiny random models. For each config it writes
tests/fixtures/qwen3/<name>/:

  config.json, model.safetensors   the model (F32 weights), loadable by transformers
  batch.json                       a packed batch: tokens, seq_start, targets, mask
  expected.safetensors             F32 (rounded from float64):
      logits (T, V), logprob (T), entropy (T), loss_sft (1), loss (1),
      grad.<hf name>               gradient of loss (below) for every tensor
      grad_norm (3)                global grad norm before clipping, AdamW steps 1-3
      step3.<hf name>              the weights after 3 AdamW steps

loss = SFT loss (mean -logprob over mask) + 0.1 * mean entropy over mask, so
both halves of the backward interface (dlogprob, dentropy) are exercised.
AdamW: lr 1e-3, betas (0.9, 0.98), eps 1e-8, weight decay 0.1 on every
tensor, grad-norm clip 1.0 (torch.optim.AdamW + clip_grad_norm_), each step a
fresh forward/backward of the same batch.

RoPE tables are computed in float32 exactly as transformers does (inv_freq
and angles in fp32, then cos/sin), everything else in float64.

Run: /usr/bin/python3 tests/gen_qwen3_fixtures.py [name ...]   (torch, numpy; names: only those configs)
"""
import json
import os
import struct
import sys

import numpy as np
import torch
from qwen3_tensors import tensor_specs

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "qwen3")

CONFIGS = [
    # head_dim 16 != hidden / heads = 8; GQA 4/2; untied
    dict(name="untied_gqa", vocab_size=97, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
         num_attention_heads=4, num_key_value_heads=2, head_dim=16, tie_word_embeddings=False,
         rope_theta=10000.0, rms_norm_eps=1e-6, lengths=[13, 7, 12], seed=1),
    # plain multi-head attention, tied embeddings, theta 1e6
    dict(name="tied_mha", vocab_size=89, hidden_size=32, intermediate_size=40, num_hidden_layers=2,
         num_attention_heads=4, num_key_value_heads=4, head_dim=8, tie_word_embeddings=True,
         rope_theta=1000000.0, rms_norm_eps=1e-6, lengths=[9, 16, 5], seed=2),
    # multi-query attention, 3 layers, a length-1 sequence, eps 1e-5
    dict(name="tied_mqa", vocab_size=61, hidden_size=24, intermediate_size=32, num_hidden_layers=3,
         num_attention_heads=4, num_key_value_heads=1, head_dim=8, tie_word_embeddings=True,
         rope_theta=1000000.0, rms_norm_eps=1e-5, lengths=[19, 1, 11], seed=3),
    # tensor parallelism (tests/mpi): heads, kv heads, MLP and vocab divide by 1, 2 and 4
    dict(name="tp4_gqa", vocab_size=96, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
         num_attention_heads=8, num_key_value_heads=4, head_dim=8, tie_word_embeddings=False,
         rope_theta=10000.0, rms_norm_eps=1e-6, lengths=[11, 6, 15], seed=4),
    dict(name="tp4_tied", vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
         num_attention_heads=4, num_key_value_heads=4, head_dim=8, tie_word_embeddings=True,
         rope_theta=1000000.0, rms_norm_eps=1e-6, lengths=[9, 1, 14], seed=5),
    # sequences longer than the CPU attention's 64-token tiles (multi-tile forward and backward)
    dict(name="long_tiles", vocab_size=53, hidden_size=16, intermediate_size=24, num_hidden_layers=2,
         num_attention_heads=4, num_key_value_heads=2, head_dim=8, tie_word_embeddings=True,
         rope_theta=10000.0, rms_norm_eps=1e-6, lengths=[128, 70, 100], seed=6),
]


def random_weights(c, gen):
    w = {}
    for name, shape in tensor_specs(c):
        if len(shape) == 1:  # norm weights near 1
            t = 1.0 + 0.2 * torch.randn(shape, generator=gen, dtype=torch.float32)
        elif "embed" in name:
            t = 0.7 * torch.randn(shape, generator=gen, dtype=torch.float32)
        else:
            t = torch.randn(shape, generator=gen, dtype=torch.float32) / np.sqrt(shape[1])
        w[name] = t
    return w


def rms_norm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rope_tables(P, D, theta):
    # transformers' Qwen3RotaryEmbedding, fp32
    inv_freq = 1.0 / (theta ** (torch.arange(0, D, 2, dtype=torch.int64).float() / D))
    pos = torch.arange(P, dtype=torch.int64).float()
    freqs = pos[:, None] * inv_freq[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().double(), emb.sin().double()


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def forward(c, w, tokens, seq_start):
    """Logits (T, V) of the packed batch, float64."""
    C, L = c["hidden_size"], c["num_hidden_layers"]
    NH, NKV, D = c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
    eps = c["rms_norm_eps"]
    T = len(tokens)
    x = w["model.embed_tokens.weight"][torch.tensor(tokens)]
    cos, sin = rope_tables(T, D, c["rope_theta"])
    for l in range(L):
        p = "model.layers.%d." % l
        h = rms_norm(x, w[p + "input_layernorm.weight"], eps)
        q = (h @ w[p + "self_attn.q_proj.weight"].T).view(T, NH, D)
        k = (h @ w[p + "self_attn.k_proj.weight"].T).view(T, NKV, D)
        v = (h @ w[p + "self_attn.v_proj.weight"].T).view(T, NKV, D)
        q = rms_norm(q, w[p + "self_attn.q_norm.weight"], eps)
        k = rms_norm(k, w[p + "self_attn.k_norm.weight"], eps)
        outs = []
        for s in range(len(seq_start) - 1):
            a, b = seq_start[s], seq_start[s + 1]
            n = b - a
            cs, sn = cos[:n, None, :], sin[:n, None, :]  # positions restart at 0
            qs = q[a:b] * cs + rotate_half(q[a:b]) * sn
            ks = k[a:b] * cs + rotate_half(k[a:b]) * sn
            vs = v[a:b]
            ks = ks.repeat_interleave(NH // NKV, dim=1)  # kv head j serves heads j*rep .. j*rep+rep-1
            vs = vs.repeat_interleave(NH // NKV, dim=1)
            sc = torch.einsum("ihd,jhd->hij", qs, ks) / np.sqrt(D)
            mask = torch.ones(n, n, dtype=torch.bool).tril()
            sc = sc.masked_fill(~mask, float("-inf"))
            pr = torch.softmax(sc, dim=-1)
            outs.append(torch.einsum("hij,jhd->ihd", pr, vs).reshape(n, NH * D))
        att = torch.cat(outs, dim=0)
        x = x + att @ w[p + "self_attn.o_proj.weight"].T
        h = rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)
        g = h @ w[p + "mlp.gate_proj.weight"].T
        u = h @ w[p + "mlp.up_proj.weight"].T
        x = x + (torch.nn.functional.silu(g) * u) @ w[p + "mlp.down_proj.weight"].T
    x = rms_norm(x, w["model.norm.weight"], eps)
    head = w["model.embed_tokens.weight"] if c["tie_word_embeddings"] else w["lm_head.weight"]
    return x @ head.T


def logprob_entropy(logits, targets):
    logp = torch.log_softmax(logits, dim=-1)
    ent = -(logp.exp() * logp).sum(-1)
    tgt = torch.tensor([max(t, 0) for t in targets])
    lp = logp.gather(1, tgt[:, None])[:, 0]
    lp = torch.where(torch.tensor(targets) >= 0, lp, torch.zeros_like(lp))
    return lp, ent


def losses(c, w, batch):
    logits = forward(c, w, batch["tokens"], batch["seq_start"])
    lp, ent = logprob_entropy(logits, batch["targets"])
    mask = torch.tensor(batch["mask"], dtype=torch.float64)
    n = mask.sum()
    sft = -(lp * mask).sum() / n
    loss = sft + 0.1 * (ent * mask).sum() / n
    return logits, lp, ent, sft, loss


def make_batch(c, gen):
    lengths = c["lengths"]
    tokens = torch.randint(0, c["vocab_size"], (sum(lengths),), generator=gen).tolist()
    seq_start = [0]
    for n in lengths:
        seq_start.append(seq_start[-1] + n)
    targets, mask = [], []
    for s, n in enumerate(lengths):
        a = seq_start[s]
        prompt = n // 3  # the first third is prompt: not trained on
        for i in range(n):
            t = a + i
            tgt = tokens[t + 1] if i + 1 < n else -1
            targets.append(tgt)
            mask.append(1 if (tgt >= 0 and i >= prompt) else 0)
    return dict(tokens=tokens, seq_start=seq_start, targets=targets, mask=mask)


def write_safetensors(path, tensors, metadata=None):
    """tensors: list of (name, float32 numpy array). Sorted by name like the reference writer."""
    header = {}
    if metadata:
        header["__metadata__"] = metadata
    off = 0
    blobs = []
    for name, arr in sorted(tensors, key=lambda kv: kv[0]):
        data = np.ascontiguousarray(arr, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(arr.shape), "data_offsets": [off, off + len(data)]}
        off += len(data)
        blobs.append(data)
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * ((8 - len(hb) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for b in blobs:
            f.write(b)


def hf_config(c):
    return {
        "architectures": ["Qwen3ForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "head_dim": c["head_dim"],
        "hidden_act": "silu",
        "hidden_size": c["hidden_size"],
        "initializer_range": 0.02,
        "intermediate_size": c["intermediate_size"],
        "max_position_embeddings": 128,
        "max_window_layers": c["num_hidden_layers"],
        "model_type": "qwen3",
        "num_attention_heads": c["num_attention_heads"],
        "num_hidden_layers": c["num_hidden_layers"],
        "num_key_value_heads": c["num_key_value_heads"],
        "rms_norm_eps": c["rms_norm_eps"],
        "rope_scaling": None,
        "rope_theta": c["rope_theta"],
        "sliding_window": None,
        "tie_word_embeddings": c["tie_word_embeddings"],
        "torch_dtype": "float32",
        "use_cache": True,
        "use_sliding_window": False,
        "vocab_size": c["vocab_size"],
    }


def generate(c):
    gen = torch.Generator().manual_seed(c["seed"])
    w32 = random_weights(c, gen)
    batch = make_batch(c, gen)
    names = [n for n, _ in tensor_specs(c)]
    params = {n: torch.nn.Parameter(w32[n].double()) for n in names}

    logits, lp, ent, sft, loss = losses(c, params, batch)
    loss.backward()
    grads = {n: params[n].grad.detach().clone() for n in names}
    expected = [
        ("logits", logits.detach().numpy()),
        ("logprob", lp.detach().numpy()),
        ("entropy", ent.detach().numpy()),
        ("loss_sft", np.array([sft.item()])),
        ("loss", np.array([loss.item()])),
    ]
    expected += [("grad." + n, grads[n].numpy()) for n in names]

    opt = torch.optim.AdamW([params[n] for n in names], lr=1e-3, betas=(0.9, 0.98), eps=1e-8, weight_decay=0.1)
    norms = []
    for step in range(3):
        opt.zero_grad()
        _, _, _, _, loss = losses(c, params, batch)
        loss.backward()
        norms.append(torch.nn.utils.clip_grad_norm_([params[n] for n in names], 1.0).item())
        opt.step()
    expected.append(("grad_norm", np.array(norms)))
    expected += [("step3." + n, params[n].detach().numpy()) for n in names]

    d = os.path.join(OUT, c["name"])
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(hf_config(c), f, indent=2)
        f.write("\n")
    write_safetensors(os.path.join(d, "model.safetensors"), [(n, w32[n].numpy()) for n in names], {"format": "pt"})
    with open(os.path.join(d, "batch.json"), "w") as f:
        json.dump(batch, f)
        f.write("\n")
    write_safetensors(os.path.join(d, "expected.safetensors"),
                      [(n, np.asarray(a, dtype=np.float32)) for n, a in expected])
    print("%s: T=%d loss_sft=%.6f loss=%.6f grad_norms=%s" % (c["name"], len(batch["tokens"]), sft.item(),
                                                             loss.item(), ["%.4f" % x for x in norms]))


def main():
    # optional config names: regenerate only those (the others stay untouched)
    names = sys.argv[1:]
    unknown = [n for n in names if n not in [c["name"] for c in CONFIGS]]
    if unknown:
        sys.exit("unknown config(s): %s" % ", ".join(unknown))
    torch.set_default_dtype(torch.float64)
    for c in CONFIGS:
        if not names or c["name"] in names:
            generate(c)


if __name__ == "__main__":
    main()
