#!/usr/bin/env python3
"""Batched decode and prefill throughput: tau2_hpc's engine against PyTorch.

Runs benchmarks/bench_decode (the C engine) and the same configurations in
PyTorch on the CPU with the same thread count: a plain KV-cache decode loop
(preallocated cache per layer, one token per sequence per step, GQA
attention over the cache, output head, temperature-1 sampling) and a
one-pass causal prefill. Weights are random in both (speed does not depend
on their values). Prints both and the ratio C / PyTorch.

  python3 benchmarks/bench_decode_torch.py [--bin build/bench_decode] [--config tiny|100m|all]
                                           [--threads N]

The anchor is PyTorch from PyPI (pip install torch, in a virtual environment:
see benchmarks/README.md); run the script with that environment's python.

Both processes see the same environment: set OPENBLAS_CORETYPE (e.g.
SkylakeX) when OpenBLAS does not recognize the CPU and falls back to its
generic kernels, and OMP_WAIT_POLICY=passive on a shared machine, for both
at once by setting them before this script.
"""
import argparse
import glob
import os
import re
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

CONFIGS = {
    "tiny": dict(V=1024, C=128, I=384, L=4, NH=4, NKV=2, D=32, tied=False),
    "100m": dict(V=151936, C=512, I=1536, L=8, NH=8, NKV=4, D=64, tied=True),
}


def find_binary():
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cands = sorted(glob.glob(os.path.join(here, "build*", "bench_decode")), key=os.path.getmtime, reverse=True)
    rel = [c for c in cands if "rel" in os.path.basename(os.path.dirname(c)).lower()]
    return (rel or cands or [None])[0]


class Model:
    def __init__(self, c, gen):
        self.c = c
        V, C, I, L, NH, NKV, D = (c[k] for k in ("V", "C", "I", "L", "NH", "NKV", "D"))

        def w(*shape):
            return (torch.rand(*shape, generator=gen) * 2 - 1) * 0.0346

        self.embed = w(V, C)
        self.lm_head = self.embed if c["tied"] else w(V, C)
        self.layers = []
        for _ in range(L):
            self.layers.append(dict(ln1=torch.ones(C), wq=w(NH * D, C), wk=w(NKV * D, C), wv=w(NKV * D, C),
                                    qn=torch.ones(D), kn=torch.ones(D), wo=w(C, NH * D), ln2=torch.ones(C),
                                    wg=w(I, C), wu=w(I, C), wd=w(C, I)))
        self.norm = torch.ones(C)
        inv = 1.0 / (1e6 ** (torch.arange(0, D, 2, dtype=torch.float32) / D))
        ang = torch.arange(4096, dtype=torch.float32)[:, None] * inv[None, :]
        self.cos, self.sin = ang.cos(), ang.sin()

    @staticmethod
    def rms(x, w, eps=1e-6):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w

    def rope(self, x, pos):
        # x (B, T, H, D), pos (T,)
        half = x.shape[-1] // 2
        c, s = self.cos[pos][None, :, None, :], self.sin[pos][None, :, None, :]
        x1, x2 = x[..., :half], x[..., half:]
        return torch.cat([x1 * c - x2 * s, x2 * c + x1 * s], dim=-1)

    def forward(self, tokens, cache, start):
        """tokens (B, T) at positions start..start+T-1; cache: per layer (K, V) of (B, NKV, maxlen, D)."""
        c = self.c
        NH, NKV, D = c["NH"], c["NKV"], c["D"]
        B, T = tokens.shape
        pos = torch.arange(start, start + T)
        x = self.embed[tokens]
        for l, p in enumerate(self.layers):
            h = self.rms(x, p["ln1"])
            q = self.rms(F.linear(h, p["wq"]).view(B, T, NH, D), p["qn"])
            k = self.rms(F.linear(h, p["wk"]).view(B, T, NKV, D), p["kn"])
            v = F.linear(h, p["wv"]).view(B, T, NKV, D)
            q, k = self.rope(q, pos), self.rope(k, pos)
            K, Vc = cache[l]
            K[:, :, start:start + T] = k.transpose(1, 2)
            Vc[:, :, start:start + T] = v.transpose(1, 2)
            keys = K[:, :, :start + T].repeat_interleave(NH // NKV, dim=1)  # (B, NH, S, D)
            vals = Vc[:, :, :start + T].repeat_interleave(NH // NKV, dim=1)
            att = torch.matmul(q.transpose(1, 2), keys.transpose(2, 3)) / (D ** 0.5)  # (B, NH, T, S)
            if T > 1:
                mask = torch.ones(T, start + T, dtype=torch.bool).tril(start)
                att = att.masked_fill(~mask, float("-inf"))
            o = torch.matmul(att.softmax(-1), vals).transpose(1, 2).reshape(B, T, NH * D)
            x = x + F.linear(o, p["wo"])
            h = self.rms(x, p["ln2"])
            x = x + F.linear(F.silu(F.linear(h, p["wg"])) * F.linear(h, p["wu"]), p["wd"])
        x = self.rms(x[:, -1], self.norm)
        return F.linear(x, self.lm_head)  # (B, V) logits of the last token

    def new_cache(self, B, maxlen):
        c = self.c
        return [(torch.zeros(B, c["NKV"], maxlen, c["D"]), torch.zeros(B, c["NKV"], maxlen, c["D"]))
                for _ in range(c["L"])]


def torch_prefill(m, P):
    cache = m.new_cache(1, P + 8)
    toks = torch.randint(0, m.c["V"], (1, P))
    m.forward(toks[:, :32], m.new_cache(1, 40), 0)  # warm-up
    t0 = time.perf_counter()
    m.forward(toks, cache, 0)
    return P / (time.perf_counter() - t0)


def torch_decode(m, B, ctx, steps, gen):
    cache = m.new_cache(B, ctx + steps + 2)
    prompt = torch.randint(0, m.c["V"], (B, ctx), generator=gen)
    m.forward(prompt[:, :-1], cache, 0)
    nxt = prompt[:, -1:]
    pos = ctx - 1
    t0 = 0.0
    for step in range(-1, steps):  # step -1: warm-up
        if step == 0:
            t0 = time.perf_counter()
        logits = m.forward(nxt, cache, pos)
        probs = logits.softmax(-1)
        nxt = torch.multinomial(probs, 1, generator=gen)
        logprob = torch.log_softmax(logits, -1).gather(1, nxt)  # what the engine returns too
        pos += 1
    return B * steps / (time.perf_counter() - t0)


def parse_c(out):
    res = {}
    for line in out.splitlines():
        kv = dict(re.findall(r"(\w+)=(\S+)", line))
        if "prefill_tok_s" in kv:
            res[(kv["config"], "prefill")] = float(kv["prefill_tok_s"])
        elif "decode_tok_s" in kv:
            res[(kv["config"], int(kv["batch"]))] = (float(kv["decode_tok_s"]), int(kv["context"]), int(kv["steps"]))
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=None)
    ap.add_argument("--config", default="all", choices=["tiny", "100m", "all"])
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1)))
    ap.add_argument("--prefill", type=int, default=256)
    args = ap.parse_args()
    binary = args.bin or find_binary()
    if not binary or not os.path.exists(binary):
        sys.exit("bench_decode not found: build it (cmake --build BUILD --target bench_decode) or pass --bin")

    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    print("C engine: %s (OMP_NUM_THREADS=%d)" % (binary, args.threads), flush=True)
    out = subprocess.run([binary, "--config", args.config, "--prefill", str(args.prefill)], env=env, check=True,
                         capture_output=True, text=True).stdout
    print(out, end="", flush=True)
    cres = parse_c(out)

    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    print("\ntorch %s, %d threads" % (torch.__version__, args.threads))
    print("%-6s %-12s %12s %12s %8s" % ("config", "measure", "C tok/s", "torch tok/s", "C/torch"))
    with torch.inference_mode():
        for name in (["tiny", "100m"] if args.config == "all" else [args.config]):
            m = Model(CONFIGS[name], gen)
            tp = torch_prefill(m, args.prefill)
            cp = cres[(name, "prefill")]
            print("%-6s %-12s %12.1f %12.1f %8.2f" % (name, "prefill", cp, tp, cp / tp), flush=True)
            for B in (1, 8, 32):
                cd, ctx, steps = cres[(name, B)]
                td = torch_decode(m, B, ctx, steps, gen)
                print("%-6s %-12s %12.1f %12.1f %8.2f" % (name, "decode b=%d" % B, cd, td, cd / td), flush=True)
            del m


if __name__ == "__main__":
    main()
