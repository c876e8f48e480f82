#!/bin/bash
# Runs Node's own net and dgram tests (test/parallel and test/sequential of Node v20.19.2, from
# Debian's source package) twice each: as they are, and with their `require('net')` /
# `require('dgram')` pointed at kyoto/compat. Prints the tests that pass on node and fail on
# compat, then a count. Needs `npm run build` first; not part of `npm test` (it downloads).
#
#   bash scripts/node-suite.sh [pattern]      # e.g. 'test-net-onread*'
#
# Work files go to $KYOTO_NODE_SUITE_DIR (default /tmp/kyoto-node-suite); each failure's output is
# in its logs/ folder. README.md (kyoto/compat) lists what is expected to differ.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${KYOTO_NODE_SUITE_DIR:-/tmp/kyoto-node-suite}
version=20.19.2
pattern=${1:-'test-*'}
mkdir -p "$dir/logs"
if [ ! -d "$dir/node-v$version/test/common" ]; then
  url="https://deb.debian.org/debian/pool/main/n/nodejs/nodejs_${version}+dfsg.orig.tar.xz"
  curl -fsSL -o "$dir/node.tar.xz" "$url"
  tar -xJf "$dir/node.tar.xz" -C "$dir" --wildcards '*/test/common/*' '*/test/fixtures/*' \
    '*/test/parallel/test-net-*' '*/test/parallel/test-dgram-*' \
    '*/test/sequential/test-net-*' '*/test/sequential/test-dgram-*'
fi
cd "$dir/node-v$version/test"
net="$root/dist/lib/compat/net.js"
dgram="$root/dist/lib/compat/dgram.js"

# One test both ways: prints "<file> <node exit> <compat exit>", or "<file> internals".
run_one() {
  local f=$1 port=$2 flags patched
  flags=$(head -20 "$f" | sed -n 's|^// Flags: ||p' | head -1)
  # Tests of node's internals say so: they cannot run against another module.
  if [[ $flags == *--expose-internals* ]] || grep -qE "require\(['\"]internal/|internalBinding|process\.binding" "$f"; then
    echo "$f internals"
    return
  fi
  patched="${f%.*}.kyoto.${f##*.}"
  sed -E -e "s#require\((['\"])(node:)?net\1\)#require('$net')#g" \
    -e "s#require\((['\"])(node:)?dgram\1\)#require('$dgram')#g" \
    -e "s#from (['\"])(node:)?net\1#from '$net'#g" \
    -e "s#from (['\"])(node:)?dgram\1#from '$dgram'#g" "$f" > "$patched"
  local log="$dir/logs/$(echo "$f" | tr '/' '_')" rn=0 rk=0
  # shellcheck disable=SC2086 # the Flags line is a list of flags
  NODE_COMMON_PORT=$port timeout 20 node $flags "$f" > "$log.node.out" 2>&1 || rn=$?
  # shellcheck disable=SC2086
  NODE_COMMON_PORT=$port timeout 20 node $flags "$patched" > "$log.compat.out" 2>&1 || rk=$?
  echo "$f $rn $rk"
}
export -f run_one
export dir net dgram

# Two at a time, each with a port of its own (tests that use common.PORT).
find parallel sequential -name "$pattern" \( -name 'test-net-*' -o -name 'test-dgram-*' \) \
  ! -name '*.kyoto.*' | sort | awk '{ print $0, 20000 + NR * 7 }' |
  xargs -P 2 -n 2 bash -c 'run_one "$0" "$1"' > "$dir/results.txt"

awk '$2 == "0" && $3 != "0" { print "compat only fails: " $1 " (exit " $3 ")" }' "$dir/results.txt"
awk '$2 == "internals" { i++ } $2 == "0" && $3 == "0" { both++ } $2 != "0" && $2 != "internals" { base++ }
  $2 == "0" && $3 != "0" { compat++ }
  END { printf "%d tests: %d pass both, %d fail on compat only, %d fail on node too, %d test internals\n",
    NR, both, compat, base, i }' "$dir/results.txt"
