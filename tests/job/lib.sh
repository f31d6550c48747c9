# lib.sh — shared by the job tests (sourced after tests/cli/lib.sh): run a
# job under the launcher, derive configs from inputs/tiny.json, read metrics.

# mpirun NP ARGS...: the launcher ctest passes in TAU2_MPIEXEC ("mpiexec
# --oversubscribe -n"); one rank runs without it. Under the sanitizers the
# ranks of a launch get TAU2_MPI_LSAN_OPTIONS (LeakSanitizer's suppressions
# of Open MPI's allocations, which need the slow unwinder on every malloc:
# tests/mpi/lsan.supp); a rank alone never starts MPI and keeps the fast one.
mpirun_np() {
  local np=$1; shift
  if [ "$np" -eq 1 ]; then
    "$@"
  else
    LSAN_OPTIONS=${TAU2_MPI_LSAN_OPTIONS:-${LSAN_OPTIONS:-}} $TAU2_MPIEXEC "$np" "$@"
  fi
}

# tiny_config OUT KEY=JSON...: inputs/tiny.json with keys replaced (a value
# of null removes the key). The tests check mechanics, not learning: they
# start from tiny.json's model, data and SFT, with its GRPO tuning (KL
# reference, filter, periodic evaluation) replaced by the plain, cheaper
# settings below.
tiny_config() {
  local out=$1; shift
  python3 - "$TAU2_SOURCE_DIR/inputs/tiny.json" "$out" "$@" <<'PY'
import json, sys
cfg = json.load(open(sys.argv[1]))
for k in ("kl_coef", "calculate_per_token_loss", "dynamic_sampling_filter", "max_sampling_rounds",
          "eval_interval", "eval"):
    cfg.pop(k, None)
cfg.update({"num_rollout": 10, "n_samples_per_prompt": 4, "global_batch_size": 20,
            "rollout_max_turn_len": 256, "lr": 0.005})
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

# eval_config OUT small|full [KEY=JSON...]: the eval job of the eval tests
# (tests/job/test_job_eval.sh, test_job_resume_eval.sh): three datasets with
# row slices, per-dataset sampling and metadata overrides (airline test rows
# written to $TMP/ids.jsonl, task ids only). "small" has fewer rows and a
# shorter budget: it runs under the sanitizers.
eval_config() {
  local out=$1 size=$2; shift 2
  printf '{"index": 0, "metadata": {"task_id": "2"}}\n{"index": 1, "metadata": {"task_id": "6"}}\n{"index": 2, "metadata": {"task_id": "8"}}\n' >"$TMP/ids.jsonl"
  python3 - "$TAU2_SOURCE_DIR" "$out" "$TMP" "$size" "$@" <<'PY'
import json, sys
src, out, tmp, size = sys.argv[1:5]
small = size == "small"
cfg = {
  "job": "eval", "model": f"{src}/inputs/tiny_model", "seed": 7, "max_steps": 10 if small else 16,
  "rollout_max_turn_len": 96,
  "eval": {
    "round_episodes": 2,
    "defaults": {"temperature": 0.8, "max_response_len": 240 if small else 400, "n_samples_per_eval_prompt": 4},
    "datasets": [
      {"name": "mock", "path": f"{src}/inputs/tiny_tasks.jsonl@[0:{1 if small else 2}]"},
      {"name": "mock_t1", "path": f"{src}/inputs/tiny_tasks.jsonl@[-2:-1]", "temperature": 1.0,
       "n_samples_per_eval_prompt": 1},
      {"name": "airline", "path": f"{tmp}/ids.jsonl@[1:{-1 if small else ''}]",
       "n_samples_per_eval_prompt": 2,
       "metadata_overrides": {"domain": "airline", "task_split": "test", "max_turns": 8}}]}}
for kv in sys.argv[5:]:
    k, v = kv.split("=", 1)
    cfg[k] = json.loads(v)
json.dump(cfg, open(out, "w"), indent=1)
PY
}

# signal_rank_when SIGNAL LAUNCHER_PID RANK_PATTERN CONDITION...: poll the
# CONDITION command every 0.05 s (2.5 minutes at most, or until the launcher
# ends); once it holds, send SIGNAL to the newest process whose command line
# matches RANK_PATTERN (one rank of the job). Prints 1 when a rank got it,
# else 0.
signal_rank_when() {
  local sig=$1 launcher=$2 pattern=$3 _ pid
  shift 3
  for _ in $(seq 1 3000); do
    if "$@"; then
      pid=$(pgrep -f -n "$pattern" | head -1)
      if [ -n "$pid" ]; then kill "-$sig" "$pid" && echo 1 && return; fi
      break
    fi
    kill -0 "$launcher" 2>/dev/null || break
    sleep 0.05
  done
  echo 0
}

# checkpoints_load BIN RUN_DIR: one check per checkpoint of the run, that
# it loads (exports).
checkpoints_load() {
  local f
  for f in "$2"/ckpt/step_*.h5; do
    "$1" export --checkpoint "$f" --output "$TMP/x" --dtype F32 >/dev/null 2>"$TMP/err"
    local rc=$?
    check "checkpoint $(basename "$f") loads" $rc
  done
}

# job_ok NAME LOG NP ARGS...: run a job (mpirun_np NP ARGS..., its output in
# LOG) and check that it exits 0; on failure show the end of its log.
# Returns the job's exit code.
job_ok() {
  local name=$1 log=$2 np=$3 rc
  shift 3
  mpirun_np "$np" "$@" >"$log" 2>&1
  rc=$?
  check "$name" $rc
  [ $rc -eq 0 ] || tail -30 "$log"
  return $rc
}

# same_weights BIN NAME RUN_A RUN_B: export both runs' latest checkpoints
# (check "both runs export") and check NAME: their weights are bit-identical.
same_weights() {
  local bin=$1 name=$2 a=$3 b=$4
  "$bin" export --checkpoint "$a" --output "$TMP/weights.a" --dtype F32 >/dev/null &&
    "$bin" export --checkpoint "$b" --output "$TMP/weights.b" --dtype F32 >/dev/null
  check "both runs export" $?
  cmp -s "$TMP/weights.a/model.safetensors" "$TMP/weights.b/model.safetensors"
  check "$name" $?
}

# stop_and_resume LABEL NP BIN CONFIG RUN_DIR WHEN STOPPED: run the job
# (logs in RUN_DIR.log1, RUN_DIR.log2), send SIGUSR1 to one rank once the
# first log has a line matching WHEN (grep), and check that the run got it,
# exits 0 and printed a line matching STOPPED (its "stopped by signal ...
# at step N;"); then rerun the same command and check that it exits 0 and
# resumed. Each check's name starts with LABEL.
stop_and_resume() {
  local label=$1 np=$2 bin=$3 cfg=$4 dir=$5 when=$6 stopped=$7 launcher signalled rc
  mpirun_np "$np" "$bin" "$cfg" --output-dir "$dir" >"$dir.log1" 2>&1 &
  launcher=$!
  signalled=$(signal_rank_when USR1 $launcher "tau2_hpc $cfg --output-dir $dir" grep -qs "$when" "$dir.log1")
  wait $launcher
  rc=$?
  check "${label}a rank got SIGUSR1 during the run" $((1 - signalled))
  check "${label}the signalled run exits 0" $rc
  grep -q "$stopped" "$dir.log1"
  check "${label}the signalled run stopped before its end with a checkpoint" $?
  [ $rc -eq 0 ] || tail -30 "$dir.log1"
  job_ok "${label}rerunning the stopped run exits 0" "$dir.log2" "$np" "$bin" "$cfg" --output-dir "$dir"
  grep -q "resumed from" "$dir.log2"
  check "${label}the rerun resumed from the checkpoint" $?
}

# gpu_vs_cpu RUN CPU_RUN [PYTHON]: RUN (a run on the GPU) has CPU_RUN's
# phases, step for step, and every step's loss, entropy and gradient norm
# (and GRPO reward) finite; then PYTHON runs with sg and sc, the two runs'
# SFT losses, to assert more. Status 0 when all holds.
gpu_vs_cpu() {
  python3 - "$1/metrics.jsonl" "$2/metrics.jsonl" "${3:-}" <<'PY'
import json, math, sys
def rows(p):
    return [json.loads(l) for l in open(p) if l.strip()]
g, c = rows(sys.argv[1]), rows(sys.argv[2])
assert [r["phase"] for r in g] == [r["phase"] for r in c], ([r["phase"] for r in g], [r["phase"] for r in c])
for r in g:
    keys = ["train/loss", "train/entropy", "train/grad_norm"] + (["rollout/raw_reward"] if r["phase"] == "grpo" else [])
    for k in keys:
        assert math.isfinite(r[k]), (r["step"], k, r[k])
sg = [r["train/loss"] for r in g if r["phase"] == "sft"]
sc = [r["train/loss"] for r in c if r["phase"] == "sft"]
exec(sys.argv[3])
PY
}

# hold_run_dir DIR: a process (printed: its pid, to kill) that holds DIR's
# run lock as another job would, with its description in the lock file
# ("grpo job other.json, pid 1 on n001, ..."); returns once it holds it.
hold_run_dir() {
  mkdir -p "$1"
  python3 - "$1/.lock" >/dev/null 2>&1 <<'PY' &
import fcntl, sys, time
f = open(sys.argv[1], "w")
fcntl.lockf(f, fcntl.LOCK_EX)
f.write("grpo job other.json, pid 1 on n001, started 2026-01-01T00:00:00Z\n")
f.flush()
open(sys.argv[1] + ".ready", "w").close()
time.sleep(120)
PY
  echo $!
  for _ in $(seq 1 200); do [ -e "$1/.lock.ready" ] && break; sleep 0.05; done
}
