#!/usr/bin/env python3
"""Sum Nsight Compute's kernel times by kernel: where a profiled step's time goes.

    ncu --csv --metrics gpu__time_duration.sum ... > raw.csv
    python3 scripts/ncu_summary.py raw.csv [--per N] [--top K]

Reads the CSV that `ncu --csv --metrics gpu__time_duration.sum` prints (one row per kernel launch), groups
the launches by kernel name and grid, and prints each group's launches, total and mean time and share of
the whole, largest first. --per N divides the totals by N (the number of identical steps profiled), so
that they read as one step's. Lines before the CSV header (the program's own output) are skipped.
"""
import argparse
import csv
import re
import sys
from collections import defaultdict


def short(name):
    """A kernel's name without its template arguments and parameter list, at most 70 characters."""
    name = re.sub(r"\(.*$", "", name)
    depth, out = 0, []
    for ch in name:
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth -= 1
        elif depth == 0:
            out.append(ch)
    s = "".join(out).replace("void ", "").strip()
    return s[:70]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("csv")
    ap.add_argument("--per", type=float, default=1.0)
    ap.add_argument("--top", type=int, default=40)
    args = ap.parse_args()
    with open(args.csv, newline="") as f:
        lines = f.read().splitlines()
    start = next((i for i, l in enumerate(lines) if l.startswith('"ID"')), None)
    if start is None:
        sys.exit(f"ncu_summary.py: no ncu CSV header in {args.csv}")
    groups = defaultdict(lambda: [0, 0.0])
    for row in csv.DictReader(lines[start:]):
        if row.get("Metric Name") != "gpu__time_duration.sum":
            continue
        value = float(row["Metric Value"].replace(",", ""))
        unit = row.get("Metric Unit", "ns")
        ns = value * {"ns": 1.0, "nsecond": 1.0, "us": 1e3, "usecond": 1e3, "ms": 1e6, "msecond": 1e6}.get(unit, 1.0)
        key = (short(row["Kernel Name"]), row.get("Grid Size", ""))
        groups[key][0] += 1
        groups[key][1] += ns
    total = sum(t for _, t in groups.values())
    if total == 0:
        sys.exit(f"ncu_summary.py: no kernel times in {args.csv}")
    print(f"{'kernel':70} {'grid':>16} {'launches':>8} {'ms':>9} {'mean us':>9} {'share':>6}")
    ranked = sorted(groups.items(), key=lambda kv: -kv[1][1])
    for (name, grid), (n, ns) in ranked[: args.top]:
        print(f"{name:70} {grid:>16} {n / args.per:8.1f} {ns / args.per / 1e6:9.3f} {ns / n / 1e3:9.1f} "
              f"{100 * ns / total:5.1f}%")
    rest = ranked[args.top:]
    if rest:
        ns = sum(t for _, (_, t) in rest)
        print(f"{'(' + str(len(rest)) + ' more)':70} {'':>16} {'':>8} {ns / args.per / 1e6:9.3f} {'':>9} "
              f"{100 * ns / total:5.1f}%")
    print(f"{'total':70} {'':>16} {sum(n for n, _ in groups.values()) / args.per:8.1f} "
          f"{total / args.per / 1e6:9.3f}")


if __name__ == "__main__":
    main()
