#!/usr/bin/env python3
"""Load an evaluation's tau2_<domain>.json files with tau2-bench's own code.

Each file is read by tau2-bench's Results.load (its pydantic models: every
field, type and literal), then its metrics are computed by tau2-bench's
compute_metrics and compared with the results.json beside it (one domain per
dataset: avg_reward, pass^k, episode and infrastructure-error counts).
tau2-bench is imported from a separate checkout, as tests/gen_tau2_fixtures.py
does (steps 1 and 2 of its docstring make the environment); nothing of it is
copied here, and the tests never need it.

    /tmp/tau2venv/bin/python tests/check_tau2_results.py --tau2-src /tmp/tau2pkg/src \
        --data-dir /work/shared/tau2-data RUN_DIR/eval/<tag>
"""

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gen_tau2_fixtures import bootstrap_tau2  # noqa: E402  (the same import of tau2-bench's parts)


def check_dataset(ds_dir):
    from tau2.data_model.simulation import Results
    from tau2.metrics.agent_metrics import compute_metrics

    ours = json.load(open(ds_dir / "results.json"))
    files = sorted(ds_dir.glob("tau2_*.json"))
    if not files:
        raise AssertionError(f"{ds_dir}: no tau2_<domain>.json")
    n_sims = 0
    for f in files:
        res = Results.load(f)
        n_sims += len(res.simulations)
        metrics = compute_metrics(res)
        line = f"{f}: {len(res.tasks)} tasks, {len(res.simulations)} simulations, avg_reward {metrics.avg_reward:.4f}"
        if len(files) == 1:
            scored = ours["total_episodes"]
            assert metrics.total_simulations == scored, (f, metrics.total_simulations, scored)
            assert metrics.infra_error_count == ours["infrastructure_errors"], f
            if scored:
                assert abs(metrics.avg_reward - ours["avg_reward"]) < 1e-9, (f, metrics.avg_reward, ours["avg_reward"])
            for k, v in metrics.pass_hat_ks.items():
                if str(k) in ours["pass_hat_k"]:
                    assert abs(v - ours["pass_hat_k"][str(k)]) < 1e-9, (f, k, v, ours["pass_hat_k"][str(k)])
            line += ", pass^k " + " ".join(f"{k}:{v:.4f}" for k, v in sorted(metrics.pass_hat_ks.items()))
            line += " (equal to results.json)"
        print(line)
    assert n_sims == len(ours["results"]), (ds_dir, n_sims, len(ours["results"]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tau2-src", required=True, help="tau2-bench's src/ directory")
    ap.add_argument("--data-dir", default=os.environ.get("TAU2_DATA_DIR", "../shared/tau2-data"),
                    help="tau2-bench's data (domains/ or tau2/domains/); default $TAU2_DATA_DIR")
    ap.add_argument("eval_dirs", nargs="+", help="RUN_DIR/eval/<tag> directories")
    args = ap.parse_args()
    bootstrap_tau2(args.tau2_src, args.data_dir)
    for d in args.eval_dirs:
        for ds in sorted(p for p in Path(d).iterdir() if (p / "results.json").is_file()):
            check_dataset(ds)


if __name__ == "__main__":
    main()
