#!/usr/bin/env bash
# The same config on 1, 2 and 8 ranks (synchronous, colocated; DP 1, 2, 8,
# and TP 2 on 2 ranks) gives the same first step within fp32 tolerance: the
# loss of the first SFT update (five conversations split over the DP ranks),
# and for the first GRPO step (rollouts of the initial model spread over the
# engines) the same rollout tokens and the same mean entropy of the update.
# (The initial model earns no reward, so its GRPO loss is 0 everywhere.)
set -u
BIN=$1
cd "$TAU2_SOURCE_DIR"
source tests/cli/lib.sh
source tests/job/lib.sh
mock_tasks "$TMP/mock.jsonl"

tiny_config "$TMP/sft.json" sft_num_epoch=1 sft_global_batch_size=5 num_rollout=1 save_interval=0
tiny_config "$TMP/grpo.json" prompt_data=\"$TMP/mock.jsonl\" rollout_batch_size=4 global_batch_size=16 sft_data=null num_rollout=1 rollout_max_response_len=512 rollout_max_turn_len=64 \
  save_interval=0
for kind in sft grpo; do
  for np in 1 2 8 tp2; do
    n=$np extra=""
    if [ "$np" = tp2 ]; then
      n=2
      python3 -c "import json,sys; c=json.load(open(sys.argv[1])); c['tensor_parallel']=2; json.dump(c,open(sys.argv[2],'w'))" \
        "$TMP/$kind.json" "$TMP/${kind}_tp2.json"
      cfg="$TMP/${kind}_tp2.json"
    else
      cfg="$TMP/$kind.json"
    fi
    mpirun_np "$n" "$BIN" "$cfg" --output-dir "$TMP/$kind.$np" >"$TMP/log.$kind.$np" 2>&1
    rc=$?
    check "$kind on $np ranks exits 0" $rc
    [ $rc -eq 0 ] || tail -20 "$TMP/log.$kind.$np"
  done
  keys=train/loss
  [ $kind = grpo ] && keys="train/entropy rollout/tokens rollout/sampled_tokens"
  for key in $keys; do
    ref=$(metric "$TMP/$kind.1" "$kind" "$key" 0)
    for np in 2 8 tp2; do
      got=$(metric "$TMP/$kind.$np" "$kind" "$key" 0)
      python3 -c "import sys; a,b=float(sys.argv[1]),float(sys.argv[2]); sys.exit(0 if abs(a-b) <= 1e-5*max(1,abs(a)) else 1)" "$ref" "$got"
      check "$kind first-step $key on $np ranks ($got) equals 1 rank's ($ref)" $?
    done
  done
done
finish test_job_ranks
