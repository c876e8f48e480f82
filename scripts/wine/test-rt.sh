#!/bin/bash
# Builds kyoto-rt's test binaries for x86_64-pc-windows-gnu and runs each under Wine.
#   test-rt.sh [binary-name-prefix ...] [-- libtest args]     e.g. test-rt.sh net_udp net_named_pipe
set -u
. "$(dirname "$0")/env.sh"
filters=(); extra=()
while [ $# -gt 0 ]; do [ "$1" = -- ] && { shift; extra=("$@"); break; }; filters+=("$1"); shift; done
cd "$REPO"
mkdir -p "$WINRIG/logs"
exes=$(nice -n 10 cargo +nightly test "${WIN_CARGO_FLAGS[@]}" -p kyoto-rt --no-run --message-format=json 2>"$WINRIG/logs/build-rt.err" \
  | python3 -c 'import sys,json
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m.get("executable"): print(m["executable"])') \
  || { tail -30 "$WINRIG/logs/build-rt.err"; exit 1; }
pass=0; fail=0; failed=()
for exe in $exes; do
  name=$(basename "$exe" .exe); short=${name%-*}
  if [ ${#filters[@]} -gt 0 ]; then m=0; for f in "${filters[@]}"; do [[ $short == $f* ]] && m=1; done; [ $m = 1 ] || continue; fi
  timeout -k 10 ${TEST_TIMEOUT:-300} wine "$exe" "${extra[@]}" > "$WINRIG/logs/$short.log" 2>&1; rc=$?
  printf '%-22s rc=%-3s %s\n' "$short" "$rc" "$(grep -E '^test result:' "$WINRIG/logs/$short.log" | tail -1)"
  if [ $rc -eq 0 ]; then pass=$((pass+1)); else fail=$((fail+1)); failed+=("$short"); fi
done
wineserver -k 2>/dev/null
echo "binaries: $pass passed, $fail failed ${failed[*]:+(${failed[*]})}; logs in $WINRIG/logs"
[ $fail -eq 0 ]
