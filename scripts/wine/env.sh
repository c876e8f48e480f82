# Sourced by the other scripts: where the rig lives and how to build for Windows.
# KYOTO_WINE_DIR (default <repo>/target/wine) holds the Wine prefix, Windows node.exe and the
# libnode import library; CARGO_TARGET_DIR defaults to <repo>/target/wine/cargo.
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export WINRIG=${KYOTO_WINE_DIR:-$REPO/target/wine}
export WINEPREFIX=$WINRIG/prefix
export WINEARCH=win64
export WINEDEBUG=${WINEDEBUG:--all}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$WINRIG/cargo}
WIN_TARGET=x86_64-pc-windows-gnu
WIN_CARGO_FLAGS=(-Zbuild-std --target $WIN_TARGET
  --config "target.$WIN_TARGET.linker=\"x86_64-w64-mingw32-gcc\"")
