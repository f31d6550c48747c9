#!/usr/bin/env python3
"""Generate tests/fixtures/toml/*.json: what Python's `toml` package gives
for the telecom domain's TOML databases (the way tau2-bench loads them, in
tau2.utils.io_utils.load_file). test_toml.c parses the same files with
core/toml.c and compares.

Regenerate:

    pip install toml            # the package tau2-bench uses (0.10.x)
    python3 tests/gen_toml_fixtures.py --data-dir /work/shared/tau2-data \
        --out tests/fixtures/toml

Each output is json.dumps(toml.load(f)) with default separators, plus a
newline, so key order is kept and the C test can also compare the text that
core/json.c's json_dumps prints. The files quote their dates, so no
datetime objects appear (the script refuses them rather than guess a form).
"""

import argparse
import json
import os
import sys

import toml

FILES = ("db", "user_db")


def find_telecom(data_dir):
    for sub in ("domains/telecom", "tau2/domains/telecom"):
        path = os.path.join(data_dir, sub)
        if os.path.isdir(path):
            return path
    sys.exit(f"no domains/telecom under {data_dir}")


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", default=os.environ.get("TAU2_DATA_DIR", os.path.join(here, "../../shared/tau2-data")))
    ap.add_argument("--out", default=os.path.join(here, "fixtures/toml"))
    args = ap.parse_args()
    telecom = find_telecom(args.data_dir)
    os.makedirs(args.out, exist_ok=True)
    for name in FILES:
        with open(os.path.join(telecom, name + ".toml"), encoding="utf-8") as f:
            data = toml.load(f)
        text = json.dumps(data)  # raises on datetime values, by design
        out = os.path.join(args.out, name + ".json")
        with open(out, "w", encoding="utf-8") as f:
            f.write(text + "\n")
        print(f"wrote {out} ({len(text)} bytes, toml {toml.__version__})")


if __name__ == "__main__":
    main()
