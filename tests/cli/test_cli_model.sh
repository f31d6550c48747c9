#!/usr/bin/env bash
# Command-line contract of the model subcommands (score, generate) on the tiny
# fixture models of tests/gen_qwen3_fixtures.py: score's logprobs equal the
# PyTorch reference, generate's samples are seeded and score back to the same
# logprobs, bad input exits 2 naming the file and field.
# Usage: test_cli_model.sh path/to/tau2_hpc
set -u
BIN=$1
SRC=${TAU2_SOURCE_DIR:?}
MODEL=$SRC/tests/fixtures/qwen3/untied_gqa
. "$(dirname "$0")/lib.sh"

# score: the fixture batch's sequences; logprobs equal the PyTorch reference
python3 - "$MODEL/batch.json" "$TMP/seqs.json" <<'PY'
import json, sys
b = json.load(open(sys.argv[1]))
s = b["seq_start"]
json.dump({"sequences": [b["tokens"][s[i]:s[i + 1]] for i in range(len(s) - 1)]}, open(sys.argv[2], "w"))
PY
expect_exit score 0 "" "$BIN" score --model "$MODEL" --input "$TMP/seqs.json"
python3 - "$TMP/out" "$MODEL/batch.json" "$MODEL/expected.safetensors" <<'PY'
import json, struct, sys
out = json.load(open(sys.argv[1]))["logprobs"]
b = json.load(open(sys.argv[2]))
raw = open(sys.argv[3], "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
hdr = json.loads(raw[8:8 + n])
a, e = hdr["logprob"]["data_offsets"]
ref = struct.unpack("<%df" % ((e - a) // 4), raw[8 + n + a:8 + n + e])
s, worst = b["seq_start"], 0.0
for i in range(len(s) - 1):
    got = out[i]
    assert got[0] is None and len(got) == s[i + 1] - s[i]
    for j in range(1, len(got)):  # token j's logprob = the reference's at position j-1
        worst = max(worst, abs(got[j] - ref[s[i] + j - 1]))
sys.exit(0 if worst < 2e-5 else 1)
PY
check "score equals the PyTorch reference" $?

# generate: seeded, reproducible; its logprobs are what score gives the same ids
expect_exit generate 0 "" "$BIN" generate --model "$MODEL" --prompt-ids '[79, 59, 83, 52]' --n 3 --seed 11 \
  --temperature 0.9 --top-p 0.95 --max-new-tokens 6
cp "$TMP/out" "$TMP/gen1"
"$BIN" generate --model "$MODEL" --prompt-ids '[79, 59, 83, 52]' --n 3 --seed 11 --temperature 0.9 --top-p 0.95 \
  --max-new-tokens 6 >"$TMP/gen2"
cmp -s "$TMP/gen1" "$TMP/gen2"; check "generate is reproducible with a seed" $?
python3 - "$TMP/gen1" "$TMP/gen_seqs.json" <<'PY'
import json, sys
g = json.load(open(sys.argv[1]))["samples"]
assert len(g) == 3 and all(s["finish_reason"] == "length" and len(s["ids"]) == 6 for s in g)
json.dump([[79, 59, 83, 52] + s["ids"] for s in g], open(sys.argv[2], "w"))
PY
check "generate gives n samples of max-new-tokens" $?
"$BIN" score --model "$MODEL" --input "$TMP/gen_seqs.json" >"$TMP/gen_scored"
python3 - "$TMP/gen1" "$TMP/gen_scored" <<'PY'
import json, sys
g = json.load(open(sys.argv[1]))["samples"]
sc = json.load(open(sys.argv[2]))["logprobs"]
worst = max(abs(a - b) for s, row in zip(g, sc) for a, b in zip(s["logprobs"], row[4:]))
sys.exit(0 if worst < 2e-5 else 1)
PY
check "sampled logprobs equal score's" $?

# errors
expect_exit score-no-model 2 "--model" "$BIN" score --input "$TMP/seqs.json"
expect_exit score-missing-dir 2 "/nonexistent" "$BIN" score --model /nonexistent --input "$TMP/seqs.json"
echo '{"sequences": [[1, 500]]}' >"$TMP/bad.json"
expect_exit score-bad-id 2 "bad.json: sequences[0][1]: expected a token id" "$BIN" score --model "$MODEL" --input "$TMP/bad.json"
expect_exit generate-bad-temp 2 "temperature" "$BIN" generate --model "$MODEL" --prompt-ids '[1]' --temperature -1
expect_exit generate-bad-device 2 "--device: expected cpu or cuda" "$BIN" generate --model "$MODEL" --prompt-ids '[1]' --device tpu
expect_exit serve-bad-device 2 "--device: expected cpu or cuda" "$BIN" serve --model "$MODEL" --device tpu
# without a GPU (or a CUDA build) --device cuda is refused with the reason
if ! nvidia-smi -L >/dev/null 2>&1; then
    expect_exit generate-no-gpu 2 "--device cuda" "$BIN" generate --model "$MODEL" --prompt-ids '[1]' --device cuda
fi
mkdir -p "$TMP/broken" && cp "$MODEL/model.safetensors" "$TMP/broken/"
sed 's/"num_key_value_heads": 2/"num_key_value_heads": 3/' "$MODEL/config.json" >"$TMP/broken/config.json"
expect_exit score-bad-config 2 "config.json" "$BIN" score --model "$TMP/broken" --input "$TMP/seqs.json"

# sizes no machine here has memory for: exit 2 naming them, before any allocation
expect_exit serve-kv-too-large 2 "kv_tokens 1073741824: the KV cache would take" \
  "$BIN" serve --model "$SRC/inputs/tiny_model" --kv-tokens 1073741824 --port 0
mkdir -p "$TMP/huge" && cp "$MODEL/model.safetensors" "$TMP/huge/"
python3 - "$MODEL/config.json" "$TMP/huge/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["intermediate_size"] = 2000000000  # terabytes of fp32 weights
json.dump(c, open(sys.argv[2], "w"))
PY
expect_exit generate-model-too-large 2 "huge/config.json: the fp32 weights (" \
  "$BIN" generate --model "$TMP/huge" --prompt-ids '[1]'

finish test_cli_model
