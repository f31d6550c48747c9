#!/usr/bin/env python3
"""Load an evaluation's tau2_<domain>.json files with tau2-bench's own code.

Each file is read by tau2-bench's Results.load (its pydantic models: every
field, type and literal), then its metrics are computed by tau2-bench's
compute_metrics and compared with the results.json beside it (one domain per
dataset: avg_reward, pass^k, episode and infrastructure-error counts). With
--rescore, tau2-bench's evaluate_simulation scores every simulation again
(NL_ASSERTION left out, as without a judge) and its reward must equal the
file's.
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


def rescore(res, domain):
    """tau2-bench's evaluate_simulation on every simulation of res; returns
    the numbers whose reward differs from the file's and on which it raised
    (NL_ASSERTION left out of the basis, as tau2_hpc leaves it out without a
    judge)."""
    from tau2.data_model.tasks import RewardType
    from tau2.evaluator.evaluator import EvaluationType, evaluate_simulation

    tasks = {t.id: t for t in res.tasks}
    differ = raised = 0
    for sim in res.simulations:
        task = tasks[sim.task_id].model_copy(deep=True)
        ec = task.evaluation_criteria
        if ec is not None and RewardType.NL_ASSERTION in ec.reward_basis:
            ec.reward_basis = [r for r in ec.reward_basis if r != RewardType.NL_ASSERTION]
        try:
            ri = evaluate_simulation(simulation=sim, task=task, evaluation_type=EvaluationType.ALL,
                                     solo_mode=False, domain=domain)
        except Exception as e:  # an env assertion that raises (mock: a task never created) stops tau2-bench
            raised += 1
            print(f"  {sim.id}: tau2-bench raised {type(e).__name__}: {e}; file {sim.reward_info.reward}")
            continue
        if abs(ri.reward - sim.reward_info.reward) > 1e-9:
            differ += 1
            print(f"  {sim.id}: tau2-bench {ri.reward}, file {sim.reward_info.reward}")
    return differ, raised


def check_dataset(ds_dir, rescore_sims):
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
        if rescore_sims:
            differ, raised = rescore(res, res.info.environment_info.domain_name)
            line += (f"; tau2-bench's evaluator: {len(res.simulations) - differ - raised} rewards equal, "
                     f"{differ} differ, {raised} raised")
            assert differ == 0, f
        print(line)
    assert n_sims == len(ours["results"]), (ds_dir, n_sims, len(ours["results"]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tau2-src", required=True, help="tau2-bench's src/ directory")
    ap.add_argument("--data-dir", default=os.environ.get("TAU2_DATA_DIR", "../shared/tau2-data"),
                    help="tau2-bench's data (domains/ or tau2/domains/); default $TAU2_DATA_DIR")
    ap.add_argument("--rescore", action="store_true",
                    help="also score every simulation again with tau2-bench's evaluate_simulation")
    ap.add_argument("eval_dirs", nargs="+", help="RUN_DIR/eval/<tag> directories")
    args = ap.parse_args()
    bootstrap_tau2(args.tau2_src, args.data_dir)
    for d in args.eval_dirs:
        for ds in sorted(p for p in Path(d).iterdir() if (p / "results.json").is_file()):
            check_dataset(ds, args.rescore)


if __name__ == "__main__":
    main()
