#!/usr/bin/env bash
# `tau2_hpc report RUN_DIR`: the page is written atomically, loads in
# headless Chromium with no console errors, draws every chart, and its
# trajectory viewer shows the first episode; bad run directories exit 2.
# The run is tests/fixtures/report_run (SFT + GRPO + eval rows, two
# checkpoints with two datasets each). A screenshot is kept as an artifact:
# ${TAU2_ARTIFACT_DIR:-$PWD}/report_screenshot.png.
# Usage: test_cli_report.sh path/to/tau2_hpc
set -u
BIN=$1
SRC=${TAU2_SOURCE_DIR:?}
FIX=$SRC/tests/fixtures/report_run
. "$(dirname "$0")/lib.sh"

CHROME=${CHROMIUM:-$(command -v chromium || command -v chromium-browser || true)}
if [ -z "$CHROME" ] || [ ! -x "$CHROME" ]; then
  echo "FAIL: chromium not found${CHROME:+ at $CHROME}: this test renders the report in headless Chromium" \
       "(Debian: apt-get install chromium; or set CHROMIUM=/path/to/chromium)"
  exit 1
fi
CHROME_ARGS=(--headless --disable-gpu --hide-scrollbars --no-first-run --user-data-dir="$TMP/chrome-profile"
             --virtual-time-budget=5000)
[ "$(id -u)" -eq 0 ] && CHROME_ARGS+=(--no-sandbox)

body_attr() { # dom file, attribute name -> its value on <body>
  python3 - "$1" "$2" <<'EOF'
import re, sys
m = re.search(r'<body([^>]*)>', open(sys.argv[1], encoding='utf-8').read())
a = re.search(sys.argv[2] + r'="([^"]*)"', m.group(1)) if m else None
print(a.group(1) if a else '')
EOF
}

dump_dom() { # html file, dom output, console log output
  timeout 40 "$CHROME" "${CHROME_ARGS[@]}" --enable-logging=stderr --v=0 --dump-dom "file://$1" >"$2" 2>"$3"
}

# ---- the report of the fixture run
cp -r "$FIX" "$TMP/run"
"$BIN" report "$TMP/run" >"$TMP/out" 2>"$TMP/err"; check "report exits 0" $?
grep -q "wrote $TMP/run/report.html" "$TMP/out"; check "report names the file it wrote" $?
[ -s "$TMP/run/report.html" ]; check "RUN_DIR/report.html written" $?
[ -z "$(find "$TMP/run" -name 'report.html.tmp*')" ]; check "no temporary file left" $?
! grep -qE '(src|href)="https?:' "$TMP/run/report.html"; check "no network resources" $?
# the tool result "</script><script>..." of the fixture stays inside the data block
grep -qF '<\/script><script>document.title' "$TMP/run/report.html"; check "</ escaped in embedded JSON" $?
! grep -qF "</script><script>document.title" "$TMP/run/report.html"; check "no raw </script> in data" $?

dump_dom "$TMP/run/report.html" "$TMP/dom.html" "$TMP/console.log"; check "chromium --dump-dom" $?
[ "$(body_attr "$TMP/dom.html" data-ready)" = 1 ]; check "page script ran to the end" $?
charts=$(body_attr "$TMP/dom.html" data-charts)
# 9 training charts (reward, pass rate, loss, KL, entropy, grad norm,
# throughput, times, lr) + 2 per dataset (over steps, pass^k by k)
[ "$charts" = 13 ]; check "13 SVG charts drawn (got '$charts')" $?
[ "$(grep -o '<svg' "$TMP/dom.html" | wc -l)" -ge 13 ]; check "SVG elements in the DOM" $?
errors=$(body_attr "$TMP/dom.html" data-errors)
[ "$errors" = 0 ]; check "no errors caught by the page (got '$errors')" $?
! grep 'CONSOLE' "$TMP/console.log" | grep -qE 'Uncaught|Error'; check "no console errors" $?
grep 'CONSOLE' "$TMP/console.log" | grep -E 'Uncaught|Error' | head -5
grep -qF '<title>run · tau2_hpc report</title>' "$TMP/dom.html"; check "title not changed by data" $?

# The viewer opens on the latest checkpoint's first dataset and its first
# episode: look at the rendered DOM only, not the embedded data block.
python3 - "$TMP/dom.html" >"$TMP/viewer.txt" <<'EOF'
import html, re, sys
s = open(sys.argv[1], encoding='utf-8').read()
s = re.sub(r'<script\b.*?</script>', '', s, flags=re.S)
i = s.find('id="tv-detail"')
print(html.unescape(re.sub(r'<[^>]+>', '\n', s[i:])) if i >= 0 else '')
EOF
grep -qF "Hello, I'm user_1. Please create a task called 'Quarterly Planning' for me." "$TMP/viewer.txt"
check "viewer shows the first episode's conversation" $?
grep -qx "create_task" "$TMP/viewer.txt"; check "viewer shows the tool call" $?
grep -qF "Passed every check of the reward basis (DB, COMMUNICATE)." "$TMP/viewer.txt"; check "viewer shows the outcome" $?
grep -qF 'step_000008' "$TMP/dom.html" && grep -qF 'pass^k by k' "$TMP/dom.html"; check "eval table and charts" $?

SHOT=${TAU2_ARTIFACT_DIR:-$PWD}/report_screenshot.png
rm -f "$SHOT"
timeout 40 "$CHROME" "${CHROME_ARGS[@]}" --screenshot="$SHOT" --window-size=1400,2000 \
  "file://$TMP/run/report.html" >/dev/null 2>&1
[ -f "$SHOT" ] && [ "$(head -c 4 "$SHOT" | od -An -c | tr -d ' ')" = '211PNG' ]; check "screenshot is a PNG" $?
[ "$(wc -c <"$SHOT")" -gt 30000 ]; rc=$?; check "screenshot is not blank ($(wc -c <"$SHOT") bytes)" $rc

# --output, --max-trajectories: the viewer says it shows a part
"$BIN" report "$TMP/run" --output "$TMP/other.html" --max-trajectories 3 >/dev/null 2>"$TMP/err"
check "--output exits 0" $?
[ -s "$TMP/other.html" ]; check "--output file written" $?
dump_dom "$TMP/other.html" "$TMP/dom2.html" "$TMP/console2.log"
grep -qF 'showing the first 3 of 8 episodes' "$TMP/dom2.html"; check "capped trajectories are announced" $?
[ "$(body_attr "$TMP/dom2.html" data-errors)" = 0 ]; check "capped page has no errors" $?

# ---- a run with SFT rows only and no eval/: 6 charts, empty sections say so
mkdir -p "$TMP/sft"
grep '"phase":"sft"' "$FIX/metrics.jsonl" >"$TMP/sft/metrics.jsonl"
printf '{"step":5,"phase":"sft","train/loss":0.5' >>"$TMP/sft/metrics.jsonl" # a line still being written
"$BIN" report "$TMP/sft" >/dev/null 2>"$TMP/err"; check "SFT-only run exits 0" $?
grep -qF 'metrics.jsonl:5: skipping an incomplete last line' "$TMP/err"; check "incomplete last line skipped" $?
dump_dom "$TMP/sft/report.html" "$TMP/dom3.html" "$TMP/console3.log"
[ "$(body_attr "$TMP/dom3.html" data-charts)" = 6 ]; check "SFT-only run: 6 charts" $?
[ "$(body_attr "$TMP/dom3.html" data-errors)" = 0 ]; check "SFT-only run: no errors" $?
grep -qF 'No evaluations in this run' "$TMP/dom3.html"; check "SFT-only run: no evaluations said" $?

# ---- error paths: exit 2 naming the file and line
expect_exit "no RUN_DIR" 2 "a run directory is required" "$BIN" report
expect_exit "missing RUN_DIR" 2 "$TMP/nope: no such run directory" "$BIN" report "$TMP/nope"
expect_exit "two RUN_DIRs" 2 "report: unexpected argument 'b'" "$BIN" report a b
mkdir -p "$TMP/outdir"
expect_exit "--output names a directory" 2 "report: --output: $TMP/outdir: is a directory" \
  "$BIN" report "$TMP/outdir" --output "$TMP/outdir"
mkdir -p "$TMP/empty"
expect_exit "no metrics.jsonl" 2 "$TMP/empty/metrics.jsonl: missing" "$BIN" report "$TMP/empty"
mkdir -p "$TMP/bad"
{ sed -n 1,2p "$FIX/metrics.jsonl"; echo '{"step": 3, "phase": "sft", "train/loss": }'; sed -n '4,$p' "$FIX/metrics.jsonl"; } \
  >"$TMP/bad/metrics.jsonl"
expect_exit "bad metrics line" 2 "$TMP/bad/metrics.jsonl:3:" "$BIN" report "$TMP/bad"
printf '{"step":1}\n[1, 2]\n' >"$TMP/bad/metrics.jsonl"
expect_exit "metrics line not an object" 2 "$TMP/bad/metrics.jsonl:2: expected a JSON object" "$BIN" report "$TMP/bad"
printf '{"phase":"sft"}\n' >"$TMP/bad/metrics.jsonl"
expect_exit "metrics row without step" 2 "$TMP/bad/metrics.jsonl:1: field 'step'" "$BIN" report "$TMP/bad"
printf '{"step":1,"phase":"sft"}\n{"step":2,"phase":"rl"}\n' >"$TMP/bad/metrics.jsonl"
expect_exit "metrics row of an unknown phase" 2 "$TMP/bad/metrics.jsonl:2: field 'phase': expected \"sft\", \"grpo\" or \"eval\"" \
  "$BIN" report "$TMP/bad"
cp "$FIX/metrics.jsonl" "$TMP/bad/metrics.jsonl"
mkdir -p "$TMP/bad/eval/step_000004/mock_base"
{ head -n 1 "$FIX/eval/step_000004/mock_base/trajectories.jsonl"; echo '{"task_id": "x", '; } \
  >"$TMP/bad/eval/step_000004/mock_base/trajectories.jsonl"
expect_exit "bad trajectories line" 2 "$TMP/bad/eval/step_000004/mock_base/trajectories.jsonl:2:" "$BIN" report "$TMP/bad"
rm "$TMP/bad/eval/step_000004/mock_base/trajectories.jsonl"
echo '{"step": 4, ' >"$TMP/bad/eval/step_000004/mock_base/results.json"
expect_exit "bad results.json" 2 "$TMP/bad/eval/step_000004/mock_base/results.json:" "$BIN" report "$TMP/bad"
expect_exit "unknown option" 2 "unknown option '--out'" "$BIN" report "$TMP/run" --out x.html
expect_exit "bad --max-trajectories" 2 "--max-trajectories: expected an integer" \
  "$BIN" report "$TMP/run" --max-trajectories -1
expect_exit "two run dirs" 2 "unexpected argument" "$BIN" report "$TMP/run" "$TMP/sft"

finish test_cli_report.sh
