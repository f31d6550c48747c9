#!/usr/bin/env python3
"""The anchor for bench_oracle: τ²-bench's own Python doing the same work
per episode — environment set up from the task, the gold actions run live
(get_response), then evaluate_simulation on that trajectory — timed on one
core. Prints {"airline": episodes_per_s, ...} as JSON on stdout.

usage: bench_oracle_tau2.py --tau2-src /path/to/tau2-bench/src --data-dir DIR [--seconds S]
(tests/gen_tau2_fixtures.py says how to make the sources importable.)
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
import gen_tau2_fixtures as g  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tau2-src", required=True)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()
    g.bootstrap_tau2(args.tau2_src, args.data_dir)
    from tau2.registry import registry

    from pathlib import Path

    data_root = Path(g.resolve_data_dir(args.data_dir))
    out = {}
    for domain in ["airline", "retail", "telecom", "mock"]:
        constructor = registry.get_env_constructor(domain)
        tasks = g.load_tasks(data_root, domain)
        n = 0
        t0 = time.process_time()
        while time.process_time() - t0 < args.seconds:
            for task in tasks:
                _, _, calls, _ = g.run_live(constructor, task)
                g.evaluate_oracle(domain, task, calls)
                n += 1
                if time.process_time() - t0 >= args.seconds:
                    break
        out[domain] = n / (time.process_time() - t0)
        print(f"tau2-bench {domain}: {out[domain]:.1f} episodes/s", file=sys.stderr)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
