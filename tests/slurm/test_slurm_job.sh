#!/usr/bin/env bash
# test_slurm_job.sh BIN — the job scripts under a real one-node Slurm
# (tests/slurm/setup_slurm.sh): a copy of jobscripts/grpo_telecom.slurm runs
# a tiny config (SFT then GRPO on 2 ranks, a checkpoint every step).
#
#  a  runs to the end: state COMPLETED, exit code 0, every step in the metrics
#  b  gets SIGUSR1 on its batch shell mid-run (as --signal=B:USR1@secs sends
#     it before the time limit): the job finishes its step, checkpoints, the
#     script requeues it, the restart resumes from the checkpoint and ends
#     with exported weights bit-identical to a's
#
# Exits 77 (skipped) when Slurm cannot be started here: not root, or the
# packages missing (the test installs nothing unless TAU2_SLURM_INSTALL=1;
# `bash tests/slurm/setup_slurm.sh start` installs them once).
set -u
BIN=$(readlink -f "$1")
TAU2_SOURCE_DIR=${TAU2_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
cd "$TAU2_SOURCE_DIR" || exit 1
source tests/cli/lib.sh
source tests/job/lib.sh

# Without Slurm: every script parses, asks for requeue and the USR1 warning
# on its batch shell, one GPU per rank, and shares the common part.
marker='# ---- below this line every job script in jobscripts/ is the same ----'
common() { awk -v m="$marker" 'on || $0 == m { on = 1; print }' "$1"; }
for f in jobscripts/*.slurm; do
  bash -n "$f"
  check "$f parses" $?
  grep -q '^#SBATCH --requeue$' "$f" && grep -q '^#SBATCH --signal=B:USR1@[0-9]*$' "$f"
  check "$f has --requeue and --signal=B:USR1@secs" $?
  t=$(sed -n 's/^#SBATCH --ntasks-per-node=//p' "$f") g=$(sed -n 's/^#SBATCH --gpus-per-node=//p' "$f")
  check "$f: one GPU per rank ($t tasks, $g GPUs per node)" "$([ -n "$t" ] && [ "$t" = "$g" ]; echo $?)"
  [ -n "$(common "$f")" ] && cmp -s <(common "$f") <(common jobscripts/grpo_telecom.slurm)
  check "$f: the common part is grpo_telecom.slurm's" $?
done

# Daemons that were up before the test are left up after it; on any exit
# the test cancels its jobs and stops the daemons it started.
eval "$(bash tests/slurm/setup_slurm.sh env)"
was_up=0
scontrol ping 2>/dev/null | grep -q "is UP" && was_up=1
a='' b=''
cleanup() {
  for j in $a $b; do scancel "$j" 2>/dev/null; done
  [ $was_up -eq 1 ] || bash tests/slurm/setup_slurm.sh stop
  rm -rf "$TMP"
}
trap cleanup EXIT
TAU2_SLURM_INSTALL=${TAU2_SLURM_INSTALL:-0} bash tests/slurm/setup_slurm.sh start
case $? in
  0) ;;
  77) [ "$fail" -eq 0 ] || finish test_slurm_job
      echo "test_slurm_job: skipped (Slurm cannot run on this machine)"; exit 77 ;;
  *) echo "FAIL: Slurm did not start"; exit 1 ;;
esac

# The job: the real script without its GPU request (the test node has
# none), 2 ranks of 1 CPU, the config and run directory relative to the
# submission directory ($TMP).
mock_tasks "$TMP/mock.jsonl"
tiny_config "$TMP/cfg.json" prompt_data=\"$TMP/mock.jsonl\" rollout_batch_size=4 global_batch_size=16 \
  sft_num_epoch=2 num_rollout=3 save_interval=1 keep_checkpoints=40
sed '/^#SBATCH --gpus-per-node/d' jobscripts/grpo_telecom.slurm >"$TMP/job.slurm"
export TAU2_CONFIG=cfg.json TAU2_BIN=$BIN TAU2_GPU_BIND= TAU2_LAUNCHER=${TAU2_SLURM_LAUNCHER:-auto}
export OMP_NUM_THREADS=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 # the mpirun fallback, as root
export TAU2_MPIRUN_FLAGS="--oversubscribe --bind-to none"
# Every wait below ends by this time (TAU2_SLURM_TEST_BUDGET seconds from
# here, 900 by default), so a stuck job fails the test before ctest's
# timeout would kill it without cleaning up.
deadline=$((SECONDS + ${TAU2_SLURM_TEST_BUDGET:-900}))
# submit NAME: sbatch the job with run directory $TMP/NAME; prints the job id.
submit() {
  (cd "$TMP" && TAU2_ARGS="--output-dir $1" sbatch --parsable --job-name="tau2-test-$1" --nodes=1 \
    --ntasks-per-node=2 --cpus-per-task=1 --time=15 --output="$TMP/$1.out" job.slurm)
}
# field JOB KEY: one field of scontrol's record of the job.
field() {
  scontrol show job -o "$1" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p"
}
# ended JOB: the job is in a final state (a requeued job passes through
# PENDING and RUNNING again, so "not running" is not the end).
ended() {
  case $(field "$1" JobState) in
    COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY|PREEMPTED|BOOT_FAIL|DEADLINE) return 0 ;;
  esac
  return 1
}
# wait_end JOB: until the job has ended; 0 if it did before the deadline.
wait_end() {
  while [ $SECONDS -lt $deadline ]; do
    ended "$1" && return 0
    sleep 1
  done
  return 1
}
# latest_step RUN: the step of the run's newest checkpoint, or -1.
latest_step() {
  local f
  f=$(cat "$1/ckpt/latest" 2>/dev/null) || { echo -1; return; }
  f=${f##*step_}
  f=${f%%.h5*}
  echo $((10#${f:-0}))
}

# a: the whole job, never signalled.
a=$(submit a)
check "sbatch a ($a)" $?
wait_end "$a"
check "job a ended in time" $?
check "job a COMPLETED (state $(field "$a" JobState))" "$([ "$(field "$a" JobState)" = COMPLETED ]; echo $?)"
check "job a exit code 0:0 ($(field "$a" ExitCode))" "$([ "$(field "$a" ExitCode)" = 0:0 ]; echo $?)"
grep -q "^done: 11 steps" "$TMP/a.out"
check "job a ran all 11 steps (8 SFT + 3 GRPO)" $?
last=$(metric "$TMP/a" grpo step -1 2>/dev/null)
check "job a metrics end at step 11 ($last)" "$([ "$last" = 11 ]; echo $?)"

# b: SIGUSR1 to the batch shell once a few SFT steps are checkpointed.
b=$(submit b)
check "sbatch b ($b)" $?
signalled=0
while [ $SECONDS -lt $deadline ]; do
  if [ "$(latest_step "$TMP/b")" -ge 3 ]; then
    scancel --batch --signal=USR1 "$b" && signalled=1
    break
  fi
  ended "$b" && break
  sleep 0.5
done
check "job b was signalled mid-run (state $(field "$b" JobState), checkpoint $(latest_step "$TMP/b"))" \
  $((1 - signalled))
wait_end "$b"
check "job b ended in time" $?
check "job b COMPLETED after its restart (state $(field "$b" JobState))" \
  "$([ "$(field "$b" JobState)" = COMPLETED ]; echo $?)"
check "job b exit code 0:0 ($(field "$b" ExitCode))" "$([ "$(field "$b" ExitCode)" = 0:0 ]; echo $?)"
check "job b restarted once (Restarts=$(field "$b" Restarts))" "$([ "$(field "$b" Restarts)" = 1 ]; echo $?)"
grep -q "^stopped by signal $(kill -l USR1) at step" "$TMP/b.out"
check "job b stopped on the signal with a checkpoint" $?
grep -q "requeueing job $b" "$TMP/b.out"
check "job b's script requeued it" $?
grep -q "^resumed from" "$TMP/b.out"
check "job b's restart resumed from the checkpoint" $?
grep -q "^done: 11 steps" "$TMP/b.out"
check "job b's restart ran to step 11" $?
left=$(find "$TMP/b" -name "*.tmp*" | wc -l)
check "no temporary file left in b ($left)" "$left"
"$BIN" export --checkpoint "$TMP/a" --output "$TMP/ea" --dtype F32 >/dev/null &&
  "$BIN" export --checkpoint "$TMP/b" --output "$TMP/eb" --dtype F32 >/dev/null
check "both runs export" $?
cmp -s "$TMP/ea/model.safetensors" "$TMP/eb/model.safetensors"
check "b's final weights bit-identical to a's" $?
if [ "$fail" -ne 0 ]; then
  for j in a b; do echo "---- $j.out"; tail -n 30 "$TMP/$j.out"; done
fi
finish test_slurm_job
