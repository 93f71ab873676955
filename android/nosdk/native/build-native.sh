#!/bin/bash
# build-native.sh OUTDIR -- libclat.so for Android without the NDK or SDK.
#
# Writes OUTDIR/arm64-v8a/libclat.so, OUTDIR/armeabi-v7a/libclat.so and
# OUTDIR/x86_64/libclat.so: `cargo build --release -p clat-jni` for each
# Android target, linked by Debian's clang/lld (link-clang.sh) at API level
# MIN_SDK (default 24) against stub libraries generated from what the
# library imports (symbols.sh, bionic-symbols.tsv), with LLVM libunwind built
# from rust-src (build-libunwind.sh) and our own start-up object
# (crt/crt_so.c), stripped and checked (check-elf.sh). Nothing comes from the
# NDK, AOSP or glibc.
#
# Runs on a fresh Debian 12 as root: installs clang, lld, llvm and the rustup
# targets it needs if they are missing. Host builds are unaffected: every
# setting is an environment variable of this script's cargo runs only.
set -euo pipefail

[ $# -eq 1 ] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
outdir=$1
MIN_SDK=${MIN_SDK:-24}
[[ $MIN_SDK =~ ^[0-9]+$ ]] || { echo "build-native: MIN_SDK must be an API level, not '$MIN_SDK'" >&2; exit 2; }
export MIN_SDK
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
# rust triple, Android ABI directory, clang target prefix (+ MIN_SDK)
targets=(
  "aarch64-linux-android arm64-v8a aarch64-linux-android"
  "armv7-linux-androideabi armeabi-v7a armv7a-linux-androideabi"
  "x86_64-linux-android x86_64 x86_64-linux-android"
)

# --- tools (idempotent, quiet) ----------------------------------------------
need=()
command -v clang >/dev/null || need+=(clang)
command -v ld.lld >/dev/null || need+=(lld)
for t in llvm-ar llvm-nm llvm-readelf llvm-strip; do
  command -v $t >/dev/null || { need+=(llvm); break; }
done
if [ ${#need[@]} -gt 0 ]; then
  echo "build-native: installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
command -v rustup >/dev/null || { echo "build-native: rustup is required" >&2; exit 1; }
installed=$(rustup target list --installed)
for spec in "${targets[@]}"; do
  set -- $spec
  grep -qx "$1" <<<"$installed" || rustup target add "$1" >/dev/null
done
rustup component list --installed | grep -q '^rust-src' || rustup component add rust-src >/dev/null

# --- build each ABI --------------------------------------------------------
target_dir=${CARGO_TARGET_DIR:-$root/target}
mkdir -p "$outdir"
outdir=$(cd "$outdir" && pwd)
start=$SECONDS
for spec in "${targets[@]}"; do
  set -- $spec
  triple=$1 abi=$2 clang_target=$3$MIN_SDK
  work=$target_dir/nosdk-native/$abi
  mkdir -p "$work/lib" "$work/sysroot"   # sysroot stays empty: no host libraries
  echo "build-native: $abi ($triple, clang --target=$clang_target)"

  # Link inputs of our own: the unwinder, the start-up object, and empty
  # libc/libm/libdl/liblog for link-clang.sh's first pass.
  "$here/build-libunwind.sh" "$clang_target" "$work/lib/libunwind.a"
  clang --target="$clang_target" -O2 -fPIC -nostdinc -c "$here/crt/crt_so.c" -o "$work/crt_so.o"
  NOSDK_CLANG_TARGET=$clang_target "$here/symbols.sh" stubs - "$work/empty"

  # cargo does not know about link-clang.sh's inputs (table, stubs, libunwind.a):
  # removing the library makes it link again, and so re-check, every time.
  rm -f "$target_dir/$triple/release/libclat.so" "$target_dir/$triple/release/deps/libclat.so"

  # Everything that shapes the link is in link-clang.sh, not in RUSTFLAGS:
  # a RUSTFLAGS in the caller's environment would silently replace
  # CARGO_TARGET_<T>_RUSTFLAGS, and with it the 16 KiB alignment.
  # Debug info is dropped (the output is stripped anyway): faster builds.
  T=$(echo "$triple" | tr a-z- A-Z_)
  env \
    "CARGO_TARGET_${T}_LINKER=$here/link-clang.sh" \
    "CC_${triple//-/_}=$here/cc.sh" "AR_${triple//-/_}=llvm-ar" \
    CARGO_PROFILE_RELEASE_DEBUG=0 \
    NOSDK_CLANG_TARGET="$clang_target" NOSDK_WORK="$work" \
    cargo build --quiet --release -p clat-jni --target "$triple" \
      --manifest-path "$root/Cargo.toml"

  mkdir -p "$outdir/$abi"
  llvm-strip --strip-unneeded "$target_dir/$triple/release/libclat.so" -o "$outdir/$abi/libclat.so"
  "$here/symbols.sh" check "$outdir/$abi/libclat.so"
done
echo "build-native: built in $((SECONDS - start)) s"

"$here/symbols.sh" unused "$outdir"/*/libclat.so

"$here/check-elf.sh" "$outdir"/*/libclat.so
