# lib.sh — shared by the command-line tests (sourced): a scratch folder
# removed on exit, pass/fail counting, and expect_exit for exit codes and
# error messages.
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
pass=0 fail=0

check() { # name, condition result (0 ok)
  if [ "$2" -eq 0 ]; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: $1"; fi
}

expect_exit() { # name, wanted code, message substring (may be empty), command...
  local name=$1 want=$2 msg=$3; shift 3
  "$@" >"$TMP/out" 2>"$TMP/err"; local got=$?
  if [ "$got" -ne "$want" ]; then echo "FAIL: $name: exit $got, want $want"; cat "$TMP/err"; fail=$((fail + 1)); return; fi
  if [ -n "$msg" ] && ! grep -qF -- "$msg" "$TMP/err"; then
    echo "FAIL: $name: stderr lacks '$msg':"; cat "$TMP/err"; fail=$((fail + 1)); return
  fi
  pass=$((pass + 1))
}

finish() { # script name
  echo "$1: $pass passed, $fail failed"
  [ "$fail" -eq 0 ]
}
