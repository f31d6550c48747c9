# lib.sh — shared by the job tests (sourced after tests/cli/lib.sh): run a
# job under the launcher, derive configs from inputs/tiny.json, read metrics.

# mpirun NP ARGS...: the launcher ctest passes in TAU2_MPIEXEC ("mpiexec
# --oversubscribe -n"); one rank runs without it.
mpirun_np() {
  local np=$1; shift
  if [ "$np" -eq 1 ]; then "$@"; else $TAU2_MPIEXEC "$np" "$@"; fi
}

# tiny_config OUT KEY=JSON...: inputs/tiny.json with keys replaced (a value
# of null removes the key).
tiny_config() {
  local out=$1; shift
  python3 - "$TAU2_SOURCE_DIR/inputs/tiny.json" "$out" "$@" <<'PY'
import json, sys
cfg = json.load(open(sys.argv[1]))
for kv in sys.argv[3:]:
    k, v = kv.split("=", 1)
    v = json.loads(v)
    if v is None:
        cfg.pop(k, None)
    else:
        cfg[k] = v
for k in ("model", "prompt_data"):
    if not cfg[k].startswith("/"):
        cfg[k] = sys.argv[1].rsplit("/inputs/", 1)[0] + "/" + cfg[k]
json.dump(cfg, open(sys.argv[2], "w"), indent=1)
PY
}

# mock_tasks OUT: the mock rows of inputs/tiny_tasks.jsonl (short prompts:
# cheap rollouts and updates for the tests that check mechanics).
mock_tasks() {
  grep '"mock"' "$TAU2_SOURCE_DIR/inputs/tiny_tasks.jsonl" >"$1"
}

# metric RUN_DIR PHASE KEY INDEX: one value of the metrics log (INDEX into
# the rows of that phase, Python style: 0 first, -1 last).
metric() {
  python3 - "$1/metrics.jsonl" "$2" "$3" "$4" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
rows = [r for r in rows if r.get("phase") == sys.argv[2]]
print(repr(rows[int(sys.argv[4])][sys.argv[3]]))
PY
}
