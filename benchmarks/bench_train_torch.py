#!/usr/bin/env python3
"""Anchor for bench_train.c: the same Qwen3 training step in PyTorch (CPU, float32),
same config, batch, thread count, measured in the same run, and the ratio C / PyTorch.

    python3 benchmarks/bench_train_torch.py [--bench build/bench_train]
        [--configs tiny,100m] [--threads N] [--seqs 4] [--seq-len 256] [--steps 5] [--rounds 1]
        [--products]

The PyTorch model is a plain implementation of the architecture (as in
tests/gen_qwen3_fixtures.py): Linear layers without bias, RMSNorm, q/k norm,
rotate-half RoPE, GQA attention per packed sequence (block-diagonal causal),
SwiGLU, tied head; loss = mean -logprob of the next token; AdamW (foreach) and
clip_grad_norm_(1.0), as the C step. Timing: median step after one warm-up;
with --rounds N the two engines take turns N times and the table shows the
medians over the rounds, then each round's ratio.
Each config's torch step and C benchmark run in processes of their own, with
OMP_NUM_THREADS and OPENBLAS_NUM_THREADS set to the same thread count; peak
memory is each process's VmHWM.

With --products, the same comparison for the step's matrix products alone
(bench_products against torch.mm / addmm_ on the same shapes, in the same
order): how much of each engine's step is its BLAS, and so what ratio the
rest of the step can give at most.

The anchor is PyTorch from PyPI (pip install torch, in a virtual environment:
see benchmarks/README.md); any recent version runs this script.
"""
import argparse
import glob
import os
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CONFIGS = {  # as bench_train.c's config_named
    "tiny": dict(V=4096, C=128, I=384, L=4, NH=4, NKV=2, D=32),
    "100m": dict(V=32000, C=768, I=2048, L=12, NH=12, NKV=4, D=64),
}


class Qwen3(torch.nn.Module):
    def __init__(self, c, eps=1e-6, theta=1e6):
        super().__init__()
        self.c, self.eps = c, eps
        V, C, I, NH, NKV, D = c["V"], c["C"], c["I"], c["NH"], c["NKV"], c["D"]
        self.embed = torch.nn.Parameter(torch.randn(V, C) * 0.02)
        self.layers = torch.nn.ModuleList()
        for _ in range(c["L"]):
            l = torch.nn.Module()
            l.ln1, l.ln2 = torch.nn.Parameter(torch.ones(C)), torch.nn.Parameter(torch.ones(C))
            l.q, l.k, l.v = (torch.nn.Linear(C, n * D, bias=False) for n in (NH, NKV, NKV))
            l.qn, l.kn = torch.nn.Parameter(torch.ones(D)), torch.nn.Parameter(torch.ones(D))
            l.o = torch.nn.Linear(NH * D, C, bias=False)
            l.gate, l.up = torch.nn.Linear(C, I, bias=False), torch.nn.Linear(C, I, bias=False)
            l.down = torch.nn.Linear(I, C, bias=False)
            self.layers.append(l)
        self.norm = torch.nn.Parameter(torch.ones(C))
        inv = 1.0 / (theta ** (torch.arange(0, D, 2).float() / D))
        f = torch.arange(32768).float()[:, None] * inv[None, :]
        emb = torch.cat((f, f), dim=-1)
        self.register_buffer("cos", emb.cos()), self.register_buffer("sin", emb.sin())

    def rms(self, x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * w

    @staticmethod
    def rot(x):
        h = x.shape[-1] // 2
        return torch.cat((-x[..., h:], x[..., :h]), dim=-1)

    def forward(self, tokens, n_seqs, seq_len):
        c = self.c
        NH, NKV, D = c["NH"], c["NKV"], c["D"]
        x = self.embed[tokens]
        cos, sin = self.cos[:seq_len, None, :], self.sin[:seq_len, None, :]
        mask = torch.ones(seq_len, seq_len, dtype=torch.bool).tril()
        for l in self.layers:
            h = self.rms(x, l.ln1)
            T = h.shape[0]
            q = self.rms(l.q(h).view(T, NH, D), l.qn).view(n_seqs, seq_len, NH, D)
            k = self.rms(l.k(h).view(T, NKV, D), l.kn).view(n_seqs, seq_len, NKV, D)
            v = l.v(h).view(n_seqs, seq_len, NKV, D)
            q = q * cos + self.rot(q) * sin
            k = k * cos + self.rot(k) * sin
            k = k.repeat_interleave(NH // NKV, dim=2)
            v = v.repeat_interleave(NH // NKV, dim=2)
            sc = torch.einsum("sihd,sjhd->shij", q, k) / D ** 0.5
            pr = torch.softmax(sc.masked_fill(~mask, float("-inf")), dim=-1)
            att = torch.einsum("shij,sjhd->sihd", pr, v).reshape(T, NH * D)
            x = x + l.o(att)
            h = self.rms(x, l.ln2)
            x = x + l.down(F.silu(l.gate(h)) * l.up(h))
        return self.rms(x, self.norm) @ self.embed.T


def bench_torch(name, seqs, seq_len, steps):
    torch.manual_seed(0)
    c = CONFIGS[name]
    model = Qwen3(c)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-8, weight_decay=0.1, foreach=True)
    T = seqs * seq_len
    tokens = torch.tensor([(t * 7919 + 13) % c["V"] for t in range(T)])
    tgt = tokens.view(seqs, seq_len)[:, 1:].reshape(-1)
    keep = torch.ones(seqs, seq_len, dtype=torch.bool)
    keep[:, -1] = False
    keep = keep.view(-1)
    times = []
    for step in range(steps + 1):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        logits = model(tokens, seqs, seq_len)
        loss = F.cross_entropy(logits[keep], tgt)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        times.append(time.perf_counter() - t0)
    med = sorted(times[1:])[len(times[1:]) // 2]
    return T, med, peak_rss_mib()


def bench_torch_products(name, seqs, seq_len, reps):
    """The products of one step (as bench_products.c): forward and backward seconds, medians of reps."""
    torch.manual_seed(0)
    c = CONFIGS[name]
    V, C, I, L, QD, KD = c["V"], c["C"], c["I"], c["L"], c["NH"] * c["D"], c["NKV"] * c["D"]
    T = seqs * seq_len
    rnd = lambda *shape: torch.rand(*shape) - 0.5
    shapes = dict(q=(QD, C), k=(KD, C), v=(KD, C), o=(C, QD), g=(I, C), u=(I, C), d=(C, I))
    W = [{n: rnd(*s) for n, s in shapes.items()} for _ in range(L)]
    G = [{n: torch.zeros(*s) for n, s in shapes.items()} for _ in range(L)]
    X = [dict(ln1=rnd(T, C), att=rnd(T, QD), ln2=rnd(T, C), h=rnd(T, I)) for _ in range(L)]
    head, dhead, xf, logits = rnd(V, C), torch.zeros(V, C), rnd(T, C), torch.empty(T, V)
    q, k, v, o = torch.empty(T, QD), torch.empty(T, KD), torch.empty(T, KD), torch.empty(T, C)
    g, u, down = torch.empty(T, I), torch.empty(T, I), torch.empty(T, C)
    dres, dq, dk, dv, dg, du = rnd(T, C), rnd(T, QD), rnd(T, KD), rnd(T, KD), rnd(T, I), rnd(T, I)
    dxf, dln, datt, dh = torch.empty(T, C), torch.empty(T, C), torch.empty(T, QD), torch.empty(T, I)
    fwd, bwd = [], []
    for rep in range(reps + 1):
        t0 = time.perf_counter()
        for w, x in zip(W, X):
            torch.mm(x["ln1"], w["q"].t(), out=q), torch.mm(x["ln1"], w["k"].t(), out=k)
            torch.mm(x["ln1"], w["v"].t(), out=v), torch.mm(x["att"], w["o"].t(), out=o)
            torch.mm(x["ln2"], w["g"].t(), out=g), torch.mm(x["ln2"], w["u"].t(), out=u)
            torch.mm(x["h"], w["d"].t(), out=down)
        torch.mm(xf, head.t(), out=logits)
        t1 = time.perf_counter()
        torch.mm(logits, head, out=dxf), dhead.addmm_(logits.t(), xf)
        for w, gw, x in zip(reversed(W), reversed(G), reversed(X)):
            torch.mm(dres, w["d"], out=dh), gw["d"].addmm_(dres.t(), x["h"])
            torch.mm(dg, w["g"], out=dln), dln.addmm_(du, w["u"])
            gw["g"].addmm_(dg.t(), x["ln2"]), gw["u"].addmm_(du.t(), x["ln2"])
            torch.mm(dres, w["o"], out=datt), gw["o"].addmm_(dres.t(), x["att"])
            torch.mm(dq, w["q"], out=dln), dln.addmm_(dk, w["k"]), dln.addmm_(dv, w["v"])
            gw["q"].addmm_(dq.t(), x["ln1"]), gw["k"].addmm_(dk.t(), x["ln1"]), gw["v"].addmm_(dv.t(), x["ln1"])
        t2 = time.perf_counter()
        if rep > 0:
            fwd.append(t1 - t0), bwd.append(t2 - t1)
    return statistics.median(fwd), statistics.median(bwd)


def products_table(args, env):
    """--products: C's products against PyTorch's, per config, rounds alternating."""
    bench = os.path.join(os.path.dirname(args.bench), "bench_products")
    if not os.access(bench, os.X_OK):
        sys.exit(f"bench_train_torch.py: {bench} not found; build it (cmake --build build --target bench_products)")
    print(f"{'config':7} {'C ms':>8} {'torch ms':>9} {'C/torch speed':>14}")
    for name in args.configs.split(","):
        c_ms, t_ms = [], []
        for _ in range(args.rounds):
            out = subprocess.run([bench, "--config", name, "--seqs", str(args.seqs), "--seq-len", str(args.seq_len),
                                  "--reps", str(args.steps)], check=True, capture_output=True, text=True, env=env).stdout
            res = [l.split() for l in out.splitlines() if l.startswith("RESULT products")][0]
            c_ms.append(1e3 * (float(res[4]) + float(res[5])))
            fwd, bwd = torch_fresh(args, "--torch-products-only", name, env, "TORCH_PRODUCTS")
            t_ms.append(1e3 * (float(fwd) + float(bwd)))
        c_med, t_med = statistics.median(c_ms), statistics.median(t_ms)
        line = f"{name:7} {c_med:8.1f} {t_med:9.1f} {t_med / c_med:14.2f}"
        if args.rounds > 1:
            line += "   rounds: " + " ".join(f"{t / c:.2f}" for c, t in zip(c_ms, t_ms))
        print(line)


def peak_rss_mib():
    """VmHWM of this process (ru_maxrss would include the parent's peak from before the exec)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def torch_fresh(args, mode, name, env, tag):
    """This script's PyTorch side (mode --torch-only or --torch-products-only) in a process of its own,
    so that each config's peak memory is its own: the fields of its line starting with tag."""
    cmd = [sys.executable, os.path.abspath(__file__), mode, name, "--threads", str(args.threads),
           "--seqs", str(args.seqs), "--seq-len", str(args.seq_len), "--steps", str(args.steps)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return [l.split() for l in out.splitlines() if l.startswith(tag + " ")][0][1:]


def bench_torch_fresh(args, name, env):
    """bench_torch in a process of its own: tokens, median step seconds, peak MiB."""
    res = torch_fresh(args, "--torch-only", name, env, "TORCH")
    return int(res[0]), float(res[1]), float(res[2])


def find_bench():
    for cand in sorted(glob.glob(os.path.join(ROOT, "build*", "bench_train"))):
        if os.access(cand, os.X_OK):
            return cand
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", default=find_bench())
    ap.add_argument("--configs", default="tiny,100m")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--seqs", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=1,
                    help="C then PyTorch this many times per config; medians over the rounds")
    ap.add_argument("--products", action="store_true",
                    help="compare the step's matrix products alone (bench_products)")
    ap.add_argument("--torch-only", metavar="CONFIG", help=argparse.SUPPRESS)
    ap.add_argument("--torch-products-only", metavar="CONFIG", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.torch_products_only:
        torch.set_num_threads(args.threads)
        fwd, bwd = bench_torch_products(args.torch_products_only, args.seqs, args.seq_len, args.steps)
        print(f"TORCH_PRODUCTS {fwd} {bwd}")
        return
    if args.torch_only:
        torch.set_num_threads(args.threads)
        T, med, mib = bench_torch(args.torch_only, args.seqs, args.seq_len, args.steps)
        print(f"TORCH {T} {med} {mib}")
        return
    if not args.bench:
        sys.exit("bench_train_torch.py: no bench_train binary found; build it or pass --bench")
    torch.set_num_threads(args.threads)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), OPENBLAS_NUM_THREADS=str(args.threads))
    print(f"torch {torch.__version__}, {args.threads} threads, {args.seqs} x {args.seq_len} tokens per step")
    if args.products:
        products_table(args, env)
        return
    print(f"{'config':7} {'C tok/s':>9} {'torch tok/s':>12} {'C/torch':>8} {'C MiB':>8} {'torch MiB':>10}")
    for name in args.configs.split(","):
        c_tps, t_tps, ratios = [], [], []
        for _ in range(args.rounds):  # alternate the engines, so a slow spell of the machine hits both
            out = subprocess.run([args.bench, "--config", name, "--seqs", str(args.seqs), "--seq-len",
                                  str(args.seq_len), "--steps", str(args.steps)],
                                 check=True, capture_output=True, text=True, env=env).stdout
            res = [l.split() for l in out.splitlines() if l.startswith("RESULT train")][0]
            c_tps.append(float(res[5]))
            c_mib = float(res[6])
            T, med, t_mib = bench_torch_fresh(args, name, env)
            t_tps.append(T / med)
            ratios.append(c_tps[-1] / t_tps[-1])
        c_med, t_med = statistics.median(c_tps), statistics.median(t_tps)
        line = f"{name:7} {c_med:9.1f} {t_med:12.1f} {c_med / t_med:8.2f} {c_mib:8.1f} {t_mib:10.1f}"
        if args.rounds > 1:
            line += "   rounds: " + " ".join(f"{r:.2f}" for r in ratios)
        print(line)

if __name__ == "__main__":
    main()
