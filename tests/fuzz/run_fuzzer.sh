#!/usr/bin/env bash
# A short fuzzing run of one target, for ctest (label "fuzz", registered
# when TAU2_FUZZ is on): the target first replays its corpus, then mutates
# it for TAU2_FUZZ_SECONDS (default 10). New inputs go to a scratch copy of
# the corpus, never into the repository. A crash, leak, sanitizer report or
# timeout fails the test; libFuzzer writes the input that caused it
# (crash-*, leak-*, timeout-*) into the scratch folder, whose path is printed.
#
# usage: run_fuzzer.sh FUZZER CORPUS_NAME   (from the repository root)
set -euo pipefail
fuzzer=$1 corpus=$2
scratch=$(mktemp -d)
trap 'status=$?; [ $status -eq 0 ] && rm -rf "$scratch"; exit $status' EXIT
[ -d "tests/fuzz/corpus/$corpus" ] && cp -r "tests/fuzz/corpus/$corpus/." "$scratch/"
echo "run_fuzzer: $fuzzer for ${TAU2_FUZZ_SECONDS:-10} s on a copy of tests/fuzz/corpus/$corpus in $scratch"
"$fuzzer" -max_total_time="${TAU2_FUZZ_SECONDS:-10}" -timeout=20 -rss_limit_mb=4096 -print_final_stats=1 \
  -artifact_prefix="$scratch/" "$scratch"
