#!/usr/bin/env bash
# The same config on 1, 2 and 8 ranks (synchronous, colocated; DP 1, 2, 8,
# and TP 2 on 2 ranks) gives the same first step within fp32 tolerance: the
# loss of the first SFT update (five conversations split over the DP ranks),
# and for the first GRPO step (rollouts of the initial model spread over the
# engines) the same rollout tokens and the same mean entropy of the update.
# (The initial model earns no reward, so its GRPO loss is 0 everywhere.)
# GRPO also runs with rollout engines of 2 ranks (rollout_tensor_parallel 2):
# colocated on the trainer's TP group (rtp2, 2 ranks) and separate (sep_rtp2:
# one trainer rank and one engine of 2 ranks); their first rollout buffer
# holds exactly the tokens of the one-rank run.
set -u
BIN=$1
cd "$TAU2_SOURCE_DIR"
source tests/cli/lib.sh
source tests/job/lib.sh
mock_tasks "$TMP/mock.jsonl"

tiny_config "$TMP/sft.json" sft_num_epoch=1 sft_global_batch_size=5 num_rollout=1 save_interval=0
tiny_config "$TMP/grpo.json" prompt_data=\"$TMP/mock.jsonl\" rollout_batch_size=4 global_batch_size=16 sft_data=null num_rollout=1 rollout_max_response_len=512 rollout_max_turn_len=64 \
  save_interval=0
# with_keys IN OUT KEY=JSON...: a copy of config IN with keys set.
with_keys() {
  python3 - "$@" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
for kv in sys.argv[3:]:
    k, v = kv.split("=", 1)
    c[k] = json.loads(v)
json.dump(c, open(sys.argv[2], "w"))
PY
}

for kind in sft grpo; do
  layouts="1 2 8 tp2"
  [ $kind = grpo ] && layouts="$layouts rtp2 sep_rtp2"
  for np in $layouts; do
    cfg="$TMP/${kind}_$np.json"
    case $np in
      tp2) n=2; with_keys "$TMP/$kind.json" "$cfg" tensor_parallel=2 ;;
      rtp2) n=2; with_keys "$TMP/$kind.json" "$cfg" tensor_parallel=2 rollout_tensor_parallel=2 ;;
      sep_rtp2) n=3; with_keys "$TMP/$kind.json" "$cfg" colocate=false rollout_tensor_parallel=2 ;;
      *) n=$np; cfg="$TMP/$kind.json" ;;
    esac
    job_ok "$kind on $np ranks exits 0" "$TMP/log.$kind.$np" "$n" "$BIN" "$cfg" --output-dir "$TMP/$kind.$np"
  done
  keys=train/loss
  [ $kind = grpo ] && keys="train/entropy rollout/tokens rollout/sampled_tokens"
  for key in $keys; do
    ref=$(metric "$TMP/$kind.1" "$kind" "$key" 0)
    for np in ${layouts#1 }; do
      got=$(metric "$TMP/$kind.$np" "$kind" "$key" 0)
      python3 -c "import sys; a,b=float(sys.argv[1]),float(sys.argv[2]); sys.exit(0 if abs(a-b) <= 1e-5*max(1,abs(a)) else 1)" "$ref" "$got"
      check "$kind first-step $key on $np ranks ($got) equals 1 rank's ($ref)" $?
    done
  done
done
# token for token: the sampled ids do not depend on how an engine is sharded
command -v h5dump >/dev/null || echo "h5dump (hdf5-tools) not found: rollout buffers not compared"
for np in rtp2 sep_rtp2; do
  command -v h5dump >/dev/null || break
  for d in tokens offsets loss_mask; do
    cmp -s <(h5dump -d /$d -y -w 0 "$TMP/grpo.1/rollouts/step_000000.h5" | sed 1d) \
      <(h5dump -d /$d -y -w 0 "$TMP/grpo.$np/rollouts/step_000000.h5" | sed 1d)
    check "grpo first rollout buffer on $np: $d equal to 1 rank's" $?
  done
done
finish test_job_ranks
