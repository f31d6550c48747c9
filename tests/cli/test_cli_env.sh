#!/usr/bin/env bash
# Command-line contract of the environment subcommands: outputs, exit codes
# and error messages. Usage: test_cli_env.sh path/to/tau2_hpc
set -u
BIN=$1
SRC=${TAU2_SOURCE_DIR:?}
export TAU2_DATA_DIR=${TAU2_DATA_DIR:?}
. "$(dirname "$0")/lib.sh"

# --help lists the subcommands; bad usage exits 2.
expect_exit help 0 "" "$BIN" --help
grep -q "oracle" "$TMP/out"; check "help lists oracle" $?
expect_exit no-args 2 "usage" "$BIN"
expect_exit unknown-subcommand 2 "unknown subcommand 'frobnicate'" "$BIN" frobnicate
expect_exit unknown-option 2 "unknown option '--domian'" "$BIN" oracle --domian mock

# tools: the schemas equal τ²-bench's (as JSON values).
for spec in airline retail telecom mock telecom:user mock:user; do
  d=${spec%%:*}; flag=; fix=tools_$d.json
  [ "$spec" != "$d" ] && flag=--user && fix=tools_${d}_user.json
  "$BIN" tools --domain "$d" $flag >"$TMP/tools.json"
  python3 - "$TMP/tools.json" "$SRC/tests/fixtures/tau2/$fix" <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
sys.exit(0 if a == b else 1)
PY
  check "tools $spec equals τ²-bench" $?
done
expect_exit tools-unknown-domain 2 "valid domains: airline, retail, telecom, mock" "$BIN" tools --domain bank
expect_exit tools-no-user 2 "has no user tools" "$BIN" tools --domain airline --user

# oracle: every mock task, reward lines and a total line.
expect_exit oracle-mock 0 "" "$BIN" oracle --domain mock
grep -q "^total: 10 tasks, reward 1.0 on 8" "$TMP/out"; check "oracle mock total" $?
expect_exit oracle-bad-split 2 "unknown split 'dev' for domain airline (valid splits: train, test, base)" \
  "$BIN" oracle --domain airline --split dev
expect_exit oracle-one-task 0 "" "$BIN" oracle --domain airline --task 0
grep -q "^airline 0: reward 1.0" "$TMP/out"; check "oracle one task" $?
expect_exit oracle-missing-data 2 "no such directory" "$BIN" oracle --domain mock --data-dir "$TMP/nowhere"

# replay: a trajectory from stdin, and malformed trajectories.
cat >"$TMP/traj.json" <<'JSON'
{"messages": [
 {"role": "assistant", "content": "Hi! How can I help you today?"},
 {"role": "user", "content": "Please create a task."},
 {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "name": "create_task", "arguments": {"user_id": "user_1", "title": "Important Meeting"}, "requestor": "assistant"}]},
 {"role": "tool", "id": "c1", "content": "{}", "requestor": "assistant", "error": false},
 {"role": "assistant", "content": "Done."},
 {"role": "user", "content": "###STOP###"}],
 "termination_reason": "user_stop"}
JSON
"$BIN" replay --domain mock --task create_task_1 --trajectory - <"$TMP/traj.json" >"$TMP/reward.json"
check "replay from stdin runs" $?
python3 -c "import json,sys; r=json.load(open('$TMP/reward.json')); sys.exit(0 if r['reward']==1.0 and r['db_check']['db_match'] else 1)"
check "replay scores the gold trajectory 1.0" $?
sed 's/Important Meeting/Unimportant Meeting/' "$TMP/traj.json" >"$TMP/traj2.json"
"$BIN" replay --domain mock --task create_task_1 --trajectory "$TMP/traj2.json" >"$TMP/reward2.json"
python3 -c "import json,sys; r=json.load(open('$TMP/reward2.json')); sys.exit(0 if r['reward']==0.0 and not r['db_check']['db_match'] else 1)"
check "replay: a changed argument fails DB" $?
printf '{"messages": [{"role": "assistant", "content": 5}]}' >"$TMP/bad1.json"
expect_exit replay-bad-content 2 "bad1.json: messages[0].content: expected a string or null" \
  "$BIN" replay --domain mock --task create_task_1 --trajectory "$TMP/bad1.json"
printf '{"messages": [\n  {"role": "user",}\n]}' >"$TMP/bad2.json"
expect_exit replay-bad-json 2 "bad2.json:2:19" "$BIN" replay --domain mock --task create_task_1 --trajectory "$TMP/bad2.json"
expect_exit replay-unknown-task 2 "no task 'nope' in domain mock" \
  "$BIN" replay --domain mock --task nope --trajectory "$TMP/traj.json"
# the fields the score reads are typed: the termination, each requestor, the ids
python3 - "$TMP" <<'PY'
import json, sys
tmp = sys.argv[1]
gold = json.load(open(f"{tmp}/traj.json"))
def bad(name, edit):
    t = json.loads(json.dumps(gold))
    edit(t)
    json.dump(t, open(f"{tmp}/{name}.json", "w"))
bad("bad_term", lambda t: t.update(termination_reason=3))
bad("bad_req", lambda t: t["messages"][3].update(requestor="agent"))
bad("bad_tc_req", lambda t: t["messages"][2]["tool_calls"][0].update(requestor=1))
bad("bad_id", lambda t: t["messages"][3].update(id=7))
bad("bad_tc_id", lambda t: t["messages"][2]["tool_calls"][0].update(id=["c1"]))
bad("null_term", lambda t: t.update(termination_reason=None))
PY
expect_exit replay-termination-not-string 2 "bad_term.json: field 'termination_reason': expected a string or null" \
  "$BIN" replay --domain mock --task create_task_1 --trajectory "$TMP/bad_term.json"
expect_exit replay-bad-requestor 2 "bad_req.json: messages[3].requestor: expected \"assistant\", \"user\" or null" \
  "$BIN" replay --domain mock --task create_task_1 --trajectory "$TMP/bad_req.json"
expect_exit replay-bad-call-requestor 2 "messages[2].tool_calls[0].requestor: expected" \
  "$BIN" replay --domain mock --task create_task_1 --trajectory "$TMP/bad_tc_req.json"
expect_exit replay-bad-id 2 "bad_id.json: messages[3].id: expected a string or null" \
  "$BIN" replay --domain mock --task create_task_1 --trajectory "$TMP/bad_id.json"
expect_exit replay-bad-call-id 2 "messages[2].tool_calls[0].id: expected a string or null" \
  "$BIN" replay --domain mock --task create_task_1 --trajectory "$TMP/bad_tc_id.json"
expect_exit replay-null-termination 0 "" "$BIN" replay --domain mock --task create_task_1 --trajectory "$TMP/null_term.json"

# prepare: the recipe's files, rows with index and metadata.
expect_exit prepare 0 "" "$BIN" prepare --output-dir "$TMP/prep" --multi-domain-train retail telecom
for f in retail_train retail_test airline_train airline_test telecom_train telecom_test mock_base; do
  [ -s "$TMP/prep/${f}_tasks.jsonl" ]; check "prepare wrote $f" $?
done
[ "$(wc -l <"$TMP/prep/multi_domain_train_tasks.jsonl")" -eq $((74 + 74)) ]; check "multi-domain rows" $?
head -1 "$TMP/prep/telecom_test_tasks.jsonl" | grep -q '^{"index": 0, "metadata": {"domain": "telecom", "task_split": "test", "task_id": '
check "prepare row format" $?
expect_exit prepare-bad-domain 2 "unknown domain 'bank'" "$BIN" prepare --output-dir "$TMP/p2" --domains bank
expect_exit prepare-empty-dir 2 "empty name" "$BIN" prepare --output-dir ""
# prepare makes every file before it writes one: a bad multi-domain list
# leaves the output directory as it was (not there)
expect_exit prepare-multi-no-train 2 "unknown split 'train' for domain mock" \
  "$BIN" prepare --output-dir "$TMP/p3" --domains retail --multi-domain-train retail mock
[ ! -e "$TMP/p3" ]; check "a refused prepare wrote nothing" $?
expect_exit prepare-name-outside 2 "--multi-domain-name: expected a file name inside --output-dir, got '../x.jsonl'" \
  "$BIN" prepare --output-dir "$TMP/p4" --multi-domain-train retail --multi-domain-name ../x.jsonl
expect_exit prepare-name-clash 2 "'retail_train_tasks.jsonl' is also a per-domain file's name" \
  "$BIN" prepare --output-dir "$TMP/p4" --domains retail --multi-domain-train retail telecom \
  --multi-domain-name retail_train_tasks.jsonl
[ ! -e "$TMP/p4" ]; check "a refused multi-domain name wrote nothing" $?
expect_exit prepare-name-without-train 2 "--multi-domain-name names the --multi-domain-train file" \
  "$BIN" prepare --output-dir "$TMP/p8" --multi-domain-name x.jsonl
# a folder where a file goes, or a file where the output folder goes: refused before the first file
mkdir -p "$TMP/p6/telecom_train_tasks.jsonl"
expect_exit prepare-file-is-dir 2 "prepare: --output-dir: $TMP/p6/telecom_train_tasks.jsonl: is a directory" \
  "$BIN" prepare --output-dir "$TMP/p6"
[ "$(ls "$TMP/p6")" = telecom_train_tasks.jsonl ]; check "a refused prepare wrote no file" $?
touch "$TMP/p7"
expect_exit prepare-dir-is-file 2 "prepare: $TMP/p7 exists and is not a directory" "$BIN" prepare --output-dir "$TMP/p7"

# the whole command line is checked: stray words, single-dash options,
# repeated options and missing values are refused
expect_exit stray-argument 2 "tools: unexpected argument 'retail'" "$BIN" tools --domain mock retail
expect_exit single-dash-option 2 "tools: unknown option '-d'" "$BIN" tools -d mock
expect_exit repeated-option 2 "oracle: option --domain given twice" "$BIN" oracle --domain mock --domain retail
expect_exit flag-with-value 2 "tools: unexpected argument 'yes'" "$BIN" tools --domain mock --user yes
expect_exit list-without-values 2 "prepare: option --domains needs at least one value" \
  "$BIN" prepare --output-dir "$TMP/p5" --domains --data-dir "$TAU2_DATA_DIR"
# an output file that cannot be written is refused before the episodes run
mkdir -p "$TMP/outdir"
expect_exit oracle-sft-out-dir 2 "oracle: --sft-out: $TMP/outdir: is a directory (expected a file name)" \
  "$BIN" oracle --domain mock --sft-out "$TMP/outdir"
expect_exit oracle-max-steps-not-integer 2 "--max-steps: expected a positive integer, got '5abc'" \
  "$BIN" oracle --domain mock --task create_task_1 --max-steps 5abc

# config jobs: the default job, and config errors.
cat >"$TMP/job.json" <<JSON
{"job": "oracle", "domains": ["mock"], "output": "$TMP/run/eps.jsonl"}
JSON
expect_exit config-oracle 0 "" "$BIN" "$TMP/job.json"
[ "$(wc -l <"$TMP/run/eps.jsonl")" -eq 10 ]; check "config job wrote 10 episodes" $?
expect_exit config-stray-argument 2 "run: unexpected argument 'extra'" "$BIN" "$TMP/job.json" extra
printf '{"job": "oracle", "domains": ["mock"], "output": "%s/run"}' "$TMP" >"$TMP/cfg_dir.json"
expect_exit config-output-is-dir 2 "field 'output': $TMP/run: is a directory (expected a file name)" "$BIN" "$TMP/cfg_dir.json"
printf '{"job": "oracle", "domains": ["mock"], "max_step": 5}' >"$TMP/bad_cfg.json"
expect_exit config-unknown-key 2 "unknown key 'max_step' (did you mean 'max_steps'?)" "$BIN" "$TMP/bad_cfg.json"
printf '{"job": "oracle", "domains": ["mock", 3]}' >"$TMP/bad_cfg2.json"
expect_exit config-bad-type 2 "field 'domains[1]': expected a string" "$BIN" "$TMP/bad_cfg2.json"
printf '{"job": "oracle", "domains": ["mock"], "output": "%s/run2/eps.jsonl"}' "$TMP" >"$TMP/cfg3.json"
"$BIN" "$TMP/cfg3.json" --data-dir "$TMP/nowhere" >/dev/null 2>&1
[ ! -e "$TMP/run2/eps.jsonl" ] && [ ! -e "$TMP/run2/eps.jsonl.tmp" ]; check "a failed job leaves no output file" $?
# a split or data_dir the domains do not have: refused naming the field, before the output's folders are made
printf '{"job": "oracle", "domains": ["mock"], "split": "train", "output": "%s/run3/a/eps.jsonl"}' "$TMP" \
  >"$TMP/cfg4.json"
expect_exit config-bad-split 2 "cfg4.json: field 'split': unknown split 'train' for domain mock" "$BIN" "$TMP/cfg4.json"
printf '{"job": "oracle", "domains": ["mock"], "data_dir": "%s/nowhere", "output": "%s/run3/a/eps.jsonl"}' \
  "$TMP" "$TMP" >"$TMP/cfg5.json"
expect_exit config-bad-data-dir 2 "cfg5.json: field 'data_dir': $TMP/nowhere/domains/mock: no such directory" \
  "$BIN" "$TMP/cfg5.json"
[ ! -e "$TMP/run3" ]; check "the refused configs made no folder" $?

# The 2025-06 release layout: no split_tasks.json (all tasks in "base"), no reward_basis.
mkdir -p "$TMP/old/domains"
cp -r "$TAU2_DATA_DIR/domains/mock" "$TMP/old/domains/mock"
chmod -R u+w "$TMP/old"
rm "$TMP/old/domains/mock/split_tasks.json"
python3 - "$TMP/old/domains/mock/tasks.json" <<'PY'
import json, sys
tasks = json.load(open(sys.argv[1]))
for t in tasks:
    (t.get("evaluation_criteria") or {}).pop("reward_basis", None)
json.dump(tasks, open(sys.argv[1], "w"))
PY
expect_exit old-release-oracle 0 "" "$BIN" oracle --domain mock --split base --data-dir "$TMP/old"
grep -q "^total: 10 tasks" "$TMP/out"; check "old release: every task in split base" $?
expect_exit old-release-bad-split 2 "valid splits: base" "$BIN" oracle --domain mock --split train --data-dir "$TMP/old"
"$BIN" replay --domain mock --task create_task_1 --trajectory "$TMP/traj.json" --data-dir "$TMP/old" >"$TMP/r_old.json"
python3 -c "import json,sys; r=json.load(open('$TMP/r_old.json')); sys.exit(0 if r['reward_basis']==['DB','COMMUNICATE'] else 1)"
check "old release: reward_basis defaults to DB, COMMUNICATE" $?

# Altered data files are refused at load, naming the file and the field (exit 2), before anything is written.
altered() { # domain, file, python statement on d (the loaded file)
  rm -rf "$TMP/alt" && mkdir -p "$TMP/alt/domains" && cp -r "$TAU2_DATA_DIR/domains/$1" "$TMP/alt/domains/$1"
  chmod -R u+w "$TMP/alt"
  python3 - "$TMP/alt/domains/$1/$2" "$3" <<'PY'
import json, sys
path, stmt = sys.argv[1], sys.argv[2]
d = json.load(open(path))
exec(stmt)
json.dump(d, open(path, "w"))
PY
}
altered airline db.json "d['users']['mia_li_3668']['membership'] = 'platinum'"
expect_exit altered-airline 2 \
  "airline/db.json: users.mia_li_3668.membership: expected one of gold, silver or regular, got \"platinum\"" \
  "$BIN" oracle --domain airline --data-dir "$TMP/alt"
altered retail db.json "del d['orders']"
expect_exit altered-retail 2 "retail/db.json: missing field 'orders' (RetailDB)" \
  "$BIN" oracle --domain retail --data-dir "$TMP/alt"
altered mock user_db.json "d['notifications']['notif_1']['status'] = 'seen'"
expect_exit altered-mock-user 2 "mock/user_db.json: notifications.notif_1.status: expected one of unread or read" \
  "$BIN" oracle --domain mock --data-dir "$TMP/alt"
altered mock split_tasks.json "d['base'].append('no_such_task')"
printf '{"job": "oracle", "domains": ["mock"], "data_dir": "%s/alt", "output": "%s/run4/eps.jsonl"}' "$TMP" "$TMP" \
  >"$TMP/cfg6.json"
expect_exit altered-split 2 "mock/split_tasks.json: split 'base', entry 10: 'no_such_task' is no task of tasks.json" \
  "$BIN" "$TMP/cfg6.json"
[ ! -e "$TMP/run4" ]; check "the altered data made no folder" $?
rm -rf "$TMP/alt" && mkdir -p "$TMP/alt/domains" && cp -r "$TAU2_DATA_DIR/domains/telecom" "$TMP/alt/domains/"
chmod -R u+w "$TMP/alt"
: >"$TMP/alt/domains/telecom/db.toml"
expect_exit altered-telecom-empty 2 "telecom/db.toml: empty (expected the tables of TelecomDB" \
  "$BIN" oracle --domain telecom --data-dir "$TMP/alt"
cp "$TAU2_DATA_DIR/domains/telecom/db.toml" "$TMP/alt/domains/telecom/db.toml"
sed -i 's/^battery_level = 80$/battery_level = "full"/' "$TMP/alt/domains/telecom/user_db.toml"
expect_exit altered-telecom-user 2 "telecom/user_db.toml: device.battery_level: expected a whole number, got \"full\"" \
  "$BIN" oracle --domain telecom --data-dir "$TMP/alt"

# A task whose initial state cannot be set is refused at load, naming the task and the field (exit 2), as
# τ²-bench's update_db re-validates the merged DB: initialization_data is checked against the DB's models.
INIT='t = [x for x in d if x["id"] == "update_task_with_initialization_data"][0]; a = t["initial_state"]["initialization_data"]["agent_data"]; '
altered mock tasks.json "$INIT a['tasks']['task_2']['status'] = 'done'"
printf '{"job": "oracle", "domains": ["mock"], "data_dir": "%s/alt", "output": "%s/run5/eps.jsonl"}' "$TMP" "$TMP" \
  >"$TMP/cfg7.json"
expect_exit altered-init-data 2 "mock/tasks.json: task 5 (update_task_with_initialization_data): \
initial_state.initialization_data.agent_data: tasks.task_2.status: expected one of pending or completed, got \"done\"" \
  "$BIN" "$TMP/cfg7.json"
[ ! -e "$TMP/run5" ]; check "the altered task made no folder" $?
altered mock tasks.json "$INIT a['tasks']['task_9'] = {'task_id': 'task_9'}"
expect_exit altered-init-new-record 2 "initialization_data.agent_data: tasks.task_9: missing field 'title' (Task)" \
  "$BIN" oracle --domain mock --data-dir "$TMP/alt"
altered mock tasks.json "$INIT a['projects'] = {}"
expect_exit altered-init-table 2 "initialization_data.agent_data: unknown table 'projects' (MockDB has tasks, users)" \
  "$BIN" oracle --domain mock --data-dir "$TMP/alt"
altered mock tasks.json "$INIT t['initial_state']['initialization_data'] = [a]"
expect_exit altered-init-not-object 2 \
  "initial_state.initialization_data: expected an object with agent_data and user_data, or null" \
  "$BIN" oracle --domain mock --data-dir "$TMP/alt"
altered telecom tasks.json "d[3]['initial_state']['initialization_actions'][0]['func_name'] = 'set_user_inf'"
expect_exit altered-init-action 2 "telecom/tasks.json: task 3 (\
$(python3 -c "import json; print(json.load(open('$TAU2_DATA_DIR/domains/telecom/tasks.json'))[3]['id'])")): \
initial_state.initialization_actions[0] (set_user_inf): function 'set_user_inf' not found in the user toolkit" \
  "$BIN" oracle --domain telecom --data-dir "$TMP/alt" --split small

# replay --results: a τ²-bench results file; every simulation is checked before any is scored.
results() { # file, python statement on r (a one-simulation Results object)
  python3 - "$1" "$2" <<'PY'
import json, sys
r = {"info": {"environment_info": {"domain_name": "mock", "policy": ""}}, "tasks": [],
     "simulations": [{"id": "s0", "task_id": "create_task_1", "termination_reason": "user_stop",
                      "reward_info": {"reward": 0.0}, "messages": [{"role": "assistant", "content": "Hi"}]}]}
exec(sys.argv[2])
json.dump(r, open(sys.argv[1], "w"))
PY
}
results "$TMP/res_ok.json" "pass"
expect_exit replay-results 0 "reward equal to the file's on 1, different on 0" "$BIN" replay --results "$TMP/res_ok.json"
# refused NAME FILE EDIT MESSAGE: the results file FILE.json made by EDIT is
# refused (exit 2), the message naming the file and MESSAGE
refused() {
  results "$TMP/$2.json" "$3"
  expect_exit "replay-results-$1" 2 "$2.json: $4" "$BIN" replay --results "$TMP/$2.json"
}
refused task res1 "r['simulations'][0]['task_id'] = 'nope'" "simulations[0].task_id: no task 'nope' in domain mock"
refused messages res2 "r['simulations'][0]['messages'] = None" "simulations[0].messages: expected a list"
refused termination res3 "r['simulations'][0]['termination_reason'] = 'done'" \
  "simulations[0].termination_reason: expected one of"
refused role res4 "r['simulations'].append(dict(r['simulations'][0], messages=[{'role': 'robot'}]))" \
  "simulations[1]: messages[0].role: expected"
[ ! -s "$TMP/out" ]; check "a refused results file prints no simulation" $?
refused domain res5 "del r['info']" "field 'info.environment_info.domain_name': expected a string"
expect_exit replay-results-with-domain 2 "replay: --results takes the domain and the tasks from the file" \
  "$BIN" replay --results "$TMP/res_ok.json" --domain mock

finish test_cli_env
