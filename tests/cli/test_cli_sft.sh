#!/usr/bin/env bash
# Teacher traces from the oracle: `oracle --sft-out F` writes one JSON row
# per episode with reward 1.0, atomically. Usage: test_cli_sft.sh path/to/tau2_hpc
set -u
BIN=$1
export TAU2_DATA_DIR=${TAU2_DATA_DIR:?}
. "$(dirname "$0")/lib.sh"

# mock: 10 tasks, 8 with reward 1.0 -> 8 rows, one per full-reward task.
expect_exit sft-mock 0 "" "$BIN" oracle --domain mock --sft-out "$TMP/traces.jsonl"
grep -q "^8 teacher traces (reward 1.0) written to $TMP/traces.jsonl" "$TMP/out"; check "sft summary line" $?
python3 - "$TMP/traces.jsonl" "$TMP/out" <<'PY'
import json, re, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
full = [m.group(1) for m in re.finditer(r"^mock (\S+): reward 1\.0 ", open(sys.argv[2]).read(), re.M)]
assert len(full) == 8, full
assert [r["metadata"]["task_id"] for r in rows] == full
for r in rows:
    md = r["metadata"]
    assert md["domain"] == "mock" and md["task_split"] == "base" and md["reward"] == 1.0, md
    msgs = r["messages"]
    assert msgs[0]["role"] == "system" and "<policy>" in msgs[0]["content"]
    assert {t["function"]["name"] for t in r["tools"]} >= {"create_task", "get_users"}
    trained = [m for m in msgs if m["role"] == "assistant" and m.get("weight", 1) == 1]
    assert trained
    for m in msgs:
        for tc in m.get("tool_calls") or []:
            assert tc["type"] == "function" and tc["id"]
            assert isinstance(json.loads(tc["function"]["arguments"]), dict)
        if m["role"] == "tool":
            assert m["tool_call_id"]
PY
check "sft rows: one per full-reward task, OpenAI form" $?
ls "$TMP" | grep -q "traces.jsonl.tmp"; [ $? -ne 0 ]; check "no temporary file left" $?

# One task; --split names the split in the metadata.
expect_exit sft-one-task 0 "" "$BIN" oracle --domain airline --split test --task 1 --sft-out "$TMP/one.jsonl"
python3 - "$TMP/one.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert len(rows) == 1
assert rows[0]["metadata"] == {"domain": "airline", "task_split": "test", "task_id": "1", "reward": 1.0}
PY
check "sft one task" $?

# An unwritable destination: nonzero exit, nothing written, an old file kept.
touch "$TMP/plainfile"
expect_exit sft-not-a-dir 2 "--sft-out" "$BIN" oracle --domain mock --sft-out "$TMP/plainfile/traces.jsonl"
expect_exit sft-no-dir 2 "--sft-out: the directory $TMP/nowhere: No such file or directory" \
  "$BIN" oracle --domain mock --sft-out "$TMP/nowhere/traces.jsonl"
[ ! -e "$TMP/nowhere" ]; check "no directory made" $?
if [ "$(id -u)" -ne 0 ]; then # root writes through permissions
  mkdir "$TMP/ro" && chmod 555 "$TMP/ro"
  expect_exit sft-read-only 2 "$TMP/ro: not writable" "$BIN" oracle --domain mock --sft-out "$TMP/ro/traces.jsonl"
  [ -z "$(ls -A "$TMP/ro")" ]; check "read-only dir stays empty" $?
  chmod 755 "$TMP/ro"
fi
# A run that fails after the traces file was opened leaves no partial file
# and keeps what was there.
cp "$TMP/traces.jsonl" "$TMP/keep.jsonl"
expect_exit sft-bad-task 2 "no task 'nope'" "$BIN" oracle --domain mock --task nope --sft-out "$TMP/keep.jsonl"
cmp -s "$TMP/traces.jsonl" "$TMP/keep.jsonl"; check "old traces file kept" $?
ls "$TMP" | grep -q "keep.jsonl.tmp"; [ $? -ne 0 ]; check "no partial file after a failure" $?
expect_exit sft-missing-value 2 "" "$BIN" oracle --domain mock --sft-out

finish test_cli_sft
