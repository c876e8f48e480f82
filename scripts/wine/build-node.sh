#!/bin/bash
# Builds the addon as a Windows DLL (x86_64-pc-windows-gnu) where native.js looks on win32-x64
# (the official node.exe takes the *msvc* file name), plus dist/ with the Linux tsc.
set -eu
. "$(dirname "$0")/env.sh"
export LIBNODE_PATH=$WINRIG/libnode
cd "$REPO"
nice -n 10 cargo +nightly build "${WIN_CARGO_FLAGS[@]}" -p kyoto-node --release
cp "$CARGO_TARGET_DIR/$WIN_TARGET/release/kyoto_node.dll" kyoto.win32-x64-msvc.node
npx tsc -p tsconfig.json
npx tsc -p tsconfig.test.json
echo "built kyoto.win32-x64-msvc.node and dist/"
