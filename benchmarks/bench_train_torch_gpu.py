#!/usr/bin/env python3
"""Anchor for bench_train_gpu.c: the same Qwen3 training step in PyTorch on the GPU, measured in the
same run, and the ratio of the two.

    python3 benchmarks/bench_train_torch_gpu.py [--bench build-gpu/bench_train_gpu] [--layers 8]
        [--seq-len 4096] [--steps 5] [--recompute] [--micro 1] [--peak-tflops X]

Both sides take Qwen3-4B's shape (hidden 2560, 32 query and 8 key/value heads of 128, intermediate 9728,
vocabulary 151936, tied head) cut to --layers layers, random weights, one packed sequence of --seq-len
tokens, an SFT loss over every next token, the backward, clip_grad_norm_(1.0) and one AdamW update. The
PyTorch step is what a PyTorch user would write for the same math as the C engine's bf16 mode: fp32
master weights and moments, the products and the attention in bf16 under autocast, FlashAttention
through scaled_dot_product_attention (forced: the step fails rather than fall back to a slower backend),
the fused AdamW; --recompute wraps each layer in torch.utils.checkpoint, as the C engine recomputes each
layer's activations in its backward.

FLOPs a token are counted as bench_train_gpu.c counts them: 6 x the products' parameters (the head
included) + 6 x layers x query width x sequence length (causal attention). MFU is against the dense bf16
peak (989 TFLOP/s for an H100 SXM, 989 for an H200; --peak-tflops overrides).

--bench runs the C benchmark with the same arguments in a process of its own before the PyTorch step (its
shared libraries from --bench-ld-path, when the PyTorch process needs another LD_LIBRARY_PATH) and prints
both and the ratio (PyTorch step time / C step time: above 1, the C step is faster). Each side's median
step follows one warm-up step. Needs a CUDA GPU and PyTorch with CUDA; run on the GPU machine
(scripts/gpu_session.sh bench train_torch).
"""
import argparse
import os
import subprocess
import sys
import time

# the 36-layer step fills an 80 GB GPU: without expandable segments the allocator's
# fragments leave no room for the logits' 2.3 GiB (an H100 ran out at 68 GiB allocated)
os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: E402
from torch.utils.checkpoint import checkpoint  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_train_torch import Qwen3 as Qwen3Cpu  # noqa: E402  (the CPU anchor's parameters and RoPE tables)

SHAPE = dict(V=151936, C=2560, I=9728, NH=32, NKV=8, D=128)
PEAKS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}


class Qwen3(Qwen3Cpu):
    """Qwen3 as the C engine computes it (the CPU anchor's model: pre-norm blocks, q/k RMSNorm per head,
    rotate-half RoPE, GQA causal attention, SwiGLU, tied head), its forward for one sequence on the GPU:
    norms in fp32, FlashAttention, optional recomputation per layer."""

    def __init__(self, L, recompute):
        super().__init__(dict(SHAPE, L=L))
        self.recompute = recompute

    def rms(self, x, w):
        xf = x.float()
        return xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps) * w

    def block(self, l, x, cos, sin):
        s = SHAPE
        NH, NKV, D = s["NH"], s["NKV"], s["D"]
        T = x.shape[0]
        h = self.rms(x, l.ln1)
        q = self.rms(l.q(h).view(T, NH, D), l.qn)
        k = self.rms(l.k(h).view(T, NKV, D), l.kn)
        v = l.v(h).view(T, NKV, D)
        q = (q * cos + self.rot(q) * sin).to(torch.bfloat16)
        k = (k * cos + self.rot(k) * sin).to(torch.bfloat16)
        # (1, heads, T, D); the key/value heads repeated for the query heads that share them
        q = q.transpose(0, 1)[None]
        k = k.repeat_interleave(NH // NKV, dim=1).transpose(0, 1)[None]
        v = v.to(torch.bfloat16).repeat_interleave(NH // NKV, dim=1).transpose(0, 1)[None]
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            att = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        att = att[0].transpose(0, 1).reshape(T, NH * D)
        x = x + l.o(att).float()
        h = self.rms(x, l.ln2)
        return x + l.down(F.silu(l.gate(h)) * l.up(h)).float()

    def forward(self, tokens):
        T = tokens.shape[0]
        x = self.embed[tokens]
        cos, sin = self.cos[:T, None, :], self.sin[:T, None, :]
        for l in self.layers:
            if self.recompute:
                x = checkpoint(self.block, l, x, cos, sin, use_reentrant=False)
            else:
                x = self.block(l, x, cos, sin)
        return self.rms(x, self.norm) @ self.embed.T


def flops_per_token(L, seq_len):
    s = SHAPE
    C, I, QD, KD = s["C"], s["I"], s["NH"] * s["D"], s["NKV"] * s["D"]
    params = L * (C * (QD + 2 * KD) + QD * C + 3 * C * I) + s["V"] * C
    return 6.0 * params + 6.0 * L * QD * seq_len


def bench_torch(args):
    torch.manual_seed(0)
    dev = torch.device("cuda")
    with torch.device(dev):
        model = Qwen3(args.layers, args.recompute)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, betas=(0.9, 0.98), eps=1e-8, weight_decay=0.1, fused=True)
    T = args.seq_len
    tokens = torch.tensor([(t * 7919 + 13) % SHAPE["V"] for t in range(T)], device=dev)
    targets = tokens[1:]
    times = []
    for step in range(args.steps + 1):  # step 0 warms up
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=False)
        for _ in range(args.micro):
            with torch.autocast("cuda", dtype=torch.bfloat16):
                logits = model(tokens)
            loss = F.cross_entropy(logits[:-1].float(), targets)
            loss.backward()
            del logits
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0, foreach=True)
        opt.step()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    med = sorted(times[1:])[len(times[1:]) // 2]
    peak_gib = torch.cuda.max_memory_allocated() / 2**30
    return med, peak_gib


def bench_c(args):
    cmd = [args.bench, "--config", "4b", "--layers", str(args.layers), "--seq-len", str(args.seq_len),
           "--steps", str(args.steps), "--micro", str(args.micro)] + (["--recompute"] if args.recompute else [])
    env = dict(os.environ)
    if args.bench_ld_path is not None:
        env["LD_LIBRARY_PATH"] = args.bench_ld_path
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    sys.stdout.write("".join("  c: " + line + "\n" for line in out.splitlines()))
    res = [l.split() for l in out.splitlines() if l.startswith("RESULT train_gpu")]
    if not res:
        sys.exit("bench_train_torch_gpu.py: no RESULT line from " + args.bench)
    return float(res[0][5])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bench", help="bench_train_gpu to run with the same arguments, for the ratio")
    ap.add_argument("--bench-ld-path", help="LD_LIBRARY_PATH for --bench's process")
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=4096)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--micro", type=int, default=1)
    ap.add_argument("--recompute", action="store_true")
    ap.add_argument("--peak-tflops", type=float, default=0.0)
    args = ap.parse_args()
    if args.layers < 1 or args.seq_len < 2 or args.steps < 1 or args.micro < 1:
        sys.exit("bench_train_torch_gpu.py: --layers, --steps and --micro must be >= 1, --seq-len >= 2")
    if not torch.cuda.is_available():
        print("bench_train_torch_gpu.py: no CUDA device")
        sys.exit(77)
    name = torch.cuda.get_device_name(0)
    peak = args.peak_tflops or next((p for k, p in PEAKS.items() if k in name), 0.0)
    tokens = args.seq_len * args.micro
    flops = flops_per_token(args.layers, args.seq_len) * tokens
    print(f"Qwen3-4B shape, {args.layers} layers, {args.micro} x {args.seq_len} tokens a step"
          f"{', recompute' if args.recompute else ''}; PyTorch {torch.__version__} on {name}")
    c_med = bench_c(args) if args.bench else None  # first: its process is gone when PyTorch starts
    t_med, t_gib = bench_torch(args)
    t_tf = flops / t_med / 1e12
    mfu = f", MFU {100 * t_tf / peak:.1f}%" if peak else ""
    print(f"torch: step {t_med:.4f} s, {tokens / t_med:.0f} tokens/s, {t_tf:.1f} TFLOP/s{mfu}, "
          f"peak memory {t_gib:.1f} GiB")
    print(f"RESULT train_torch_gpu {args.layers} {tokens} {t_med:.4f} {t_tf:.1f}")
    if c_med is not None:
        c_tf = flops / c_med / 1e12
        mfu = f", MFU {100 * c_tf / peak:.1f}%" if peak else ""
        print(f"c:     step {c_med:.4f} s, {tokens / c_med:.0f} tokens/s, {c_tf:.1f} TFLOP/s{mfu}")
        print(f"ratio (torch step / C step): {t_med / c_med:.2f}")
        print(f"RESULT train_torch_gpu_ratio {args.layers} {t_med:.4f} {c_med:.4f} {t_med / c_med:.3f}")

if __name__ == "__main__":
    main()
