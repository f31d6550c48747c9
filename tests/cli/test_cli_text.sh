#!/usr/bin/env bash
# Command-line contract of the text subcommands (tokenize, render): outputs
# equal Hugging Face transformers/tokenizers fixtures (tests/gen_chat_fixtures.py),
# exit codes and error messages. Usage: test_cli_text.sh path/to/tau2_hpc
set -u
BIN=$1
SRC=${TAU2_SOURCE_DIR:?}
QWEN=${TAU2_DATA_DIR:?}/../qwen3-tokenizer
FIX=$SRC/tests/fixtures/chat
. "$(dirname "$0")/lib.sh"

# render: byte-identical to transformers' apply_chat_template.
"$BIN" render --tokenizer "$QWEN" --conversation "$FIX/conversation.json" --generation-prompt >"$TMP/r1"
cmp -s "$TMP/r1" "$FIX/hybrid_gen.txt"; check "render hybrid + generation prompt" $?
"$BIN" render --tokenizer "$QWEN" --conversation "$FIX/conversation.json" >"$TMP/r2"
cmp -s "$TMP/r2" "$FIX/hybrid_nogen.txt"; check "render hybrid" $?
"$BIN" render --tokenizer "$QWEN/tokenizer.json" --conversation "$FIX/conversation.json" --generation-prompt \
  --template-kwargs '{"enable_thinking": false}' >"$TMP/r3"
cmp -s "$TMP/r3" "$FIX/hybrid_nothink_gen.txt"; check "render hybrid, enable_thinking false" $?
# a model directory whose template is chat_template.jinja (the instruct-2507 style)
mkdir -p "$TMP/instruct"
ln -s "$QWEN/tokenizer.json" "$TMP/instruct/tokenizer.json"
python3 -c "import json,sys; c=json.load(open(sys.argv[1])); c.pop('chat_template'); json.dump(c, open(sys.argv[2],'w'))" \
  "$QWEN/tokenizer_config.json" "$TMP/instruct/tokenizer_config.json"
cp "$SRC/tests/fixtures/jinja/qwen3_instruct_2507.jinja" "$TMP/instruct/chat_template.jinja"
"$BIN" render --tokenizer "$TMP/instruct" --conversation "$FIX/conversation.json" --generation-prompt >"$TMP/r4"
cmp -s "$TMP/r4" "$FIX/instruct_gen.txt"; check "render instruct template from chat_template.jinja" $?
# --ids equals Hugging Face tokenizers on the rendered text
"$BIN" render --tokenizer "$QWEN" --conversation "$FIX/conversation.json" --generation-prompt --ids >"$TMP/ids"
python3 -c "import json,sys; sys.exit(0 if json.load(open(sys.argv[1])) == json.load(open(sys.argv[2])) else 1)" \
  "$TMP/ids" "$FIX/hybrid_gen_ids.json"
check "render --ids equals HF tokenizers" $?

# tokenize: text -> ids -> text round trip, same ids as HF.
"$BIN" tokenize --tokenizer "$QWEN" <"$FIX/hybrid_gen.txt" >"$TMP/tids"
python3 -c "import json,sys; sys.exit(0 if json.load(open(sys.argv[1])) == json.load(open(sys.argv[2])) else 1)" \
  "$TMP/tids" "$FIX/hybrid_gen_ids.json"
check "tokenize equals HF tokenizers" $?
"$BIN" tokenize --tokenizer "$QWEN" --decode <"$TMP/tids" >"$TMP/back"
cmp -s "$TMP/back" "$FIX/hybrid_gen.txt"; check "tokenize --decode round trip" $?
echo '[151644, 872, 198]' | "$BIN" tokenize --tokenizer "$QWEN" --decode --skip-special >"$TMP/skip"
[ "$(cat "$TMP/skip")" = "user" ]; check "decode --skip-special" $?

# errors: exit 2, the file and the field named
expect_exit tokenize-no-tokenizer 2 "--tokenizer is required" "$BIN" tokenize
expect_exit tokenize-missing-file 2 "/nonexistent: cannot open" "$BIN" tokenize --tokenizer /nonexistent
echo '[1, "x"]' >"$TMP/bad_ids"
expect_exit decode-bad-id 2 "item 1: expected a token id" sh -c "\"$BIN\" tokenize --tokenizer \"$QWEN\" --decode <\"$TMP/bad_ids\""
echo '[1, 999999999]' >"$TMP/big_ids"
expect_exit decode-out-of-range 2 "expected a token id in [0, 151669)" sh -c "\"$BIN\" tokenize --tokenizer \"$QWEN\" --decode <\"$TMP/big_ids\""
expect_exit render-no-conversation 2 "--conversation is required" "$BIN" render --tokenizer "$QWEN"
echo '[{"role": "user", "content": 3}]' >"$TMP/bad_conv.json"
expect_exit render-bad-content 2 "bad_conv.json: messages[0].content: expected a string" \
  "$BIN" render --tokenizer "$QWEN" --conversation "$TMP/bad_conv.json"
echo '[{"role": "user", "content": "hi"' >"$TMP/trunc.json"
printf '[{"role": "assistant", "content": null, "tool_calls": [{"function": {"name": 3}}]}]' >"$TMP/bad_call.json"
expect_exit render-bad-tool-call 2 "bad_call.json: messages[0].tool_calls[0].function.name: expected a string" \
  "$BIN" render --tokenizer "$QWEN" --conversation "$TMP/bad_call.json"
printf '{"messages": [{"role": "user", "content": "hi"}], "tools": {"name": "x"}}' >"$TMP/bad_tools.json"
expect_exit render-bad-tools 2 "bad_tools.json: field 'tools': expected a list of tool schemas" \
  "$BIN" render --tokenizer "$QWEN" --conversation "$TMP/bad_tools.json"
expect_exit tokenize-skip-special-without-decode 2 "tokenize: --skip-special applies to --decode only" \
  "$BIN" tokenize --tokenizer "$QWEN" --skip-special </dev/null
echo '[]' >"$TMP/empty_conv.json"
expect_exit render-empty 2 "empty_conv.json: expected a non-empty list of messages" \
  "$BIN" render --tokenizer "$QWEN" --conversation "$TMP/empty_conv.json"
expect_exit render-bad-json 2 "trunc.json:2:1: expected" "$BIN" render --tokenizer "$QWEN" --conversation "$TMP/trunc.json"
expect_exit render-bad-kwargs 2 "--template-kwargs" \
  "$BIN" render --tokenizer "$QWEN" --conversation "$FIX/conversation.json" --template-kwargs '[1]'
mkdir -p "$TMP/broken"
ln -s "$QWEN/tokenizer.json" "$TMP/broken/tokenizer.json"
echo '{"chat_template": "{% for m in messages %}{{ m.content }"}' >"$TMP/broken/tokenizer_config.json"
expect_exit render-bad-template 2 "tokenizer_config.json:1:" \
  "$BIN" render --tokenizer "$TMP/broken" --conversation "$FIX/conversation.json"
echo '{"eos_token": "<|im_end|>"}' >"$TMP/broken/tokenizer_config.json"
expect_exit render-no-template 2 "no 'chat_template' field" \
  "$BIN" render --tokenizer "$TMP/broken" --conversation "$FIX/conversation.json"

finish test_cli_text
