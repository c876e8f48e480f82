#!/usr/bin/env bash
# Type-checks and lints the whole workspace for the CI matrix's other platforms (Windows, macOS) on a
# Linux machine that cannot download Rust targets: std is built from source with `-Zbuild-std`,
# which needs a nightly toolchain and that toolchain's `rust-src`. This is a developer check (CI's
# Windows and macOS jobs build and test natively); it compiles, it does not link or run anything.
#
#   scripts/cross-check.sh                          # Windows and macOS (x86_64, aarch64)
#   scripts/cross-check.sh x86_64-pc-windows-msvc   # one target
#
# Getting rust-src without rustup's servers (Debian's package of the same std, 1.97.x here):
#   curl -O http://deb.debian.org/debian/pool/main/r/rustc/rust-src_1.97.1+dfsg1-1_all.deb
#   dpkg-deb -x rust-src_1.97.1+dfsg1-1_all.deb x
#   mkdir -p "$(rustc +nightly --print sysroot)/lib/rustlib/src/rust"
#   cp -r x/usr/src/rustc-1.97.1/library "$(rustc +nightly --print sysroot)/lib/rustlib/src/rust/"
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLCHAIN=${KYOTO_WINDOWS_TOOLCHAIN:-nightly}
SRC="$(rustc +"$TOOLCHAIN" --print sysroot)/lib/rustlib/src/rust/library"
if [ ! -d "$SRC/std" ]; then
  echo "cross-check: no rust-src for the $TOOLCHAIN toolchain at $SRC (see the header of $0)" >&2
  exit 2
fi
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/cross-check}
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(x86_64-pc-windows-msvc x86_64-apple-darwin aarch64-apple-darwin)
for target in "${TARGETS[@]}"; do
  ARGS=(-Zbuild-std --target "$target" --workspace --all-targets)
  cargo +"$TOOLCHAIN" check "${ARGS[@]}"
  # Lints newer than the project's stable toolchain (1.95) are not held against it.
  cargo +"$TOOLCHAIN" clippy "${ARGS[@]}" -- -D warnings -A clippy::unwrap-or-default
  echo "cross-check: the workspace type-checks and lints clean for $target"
done
