#!/bin/bash
# test-unwind.sh -- does the unwinder built from rust-src really unwind?
#
# Links unwind-test/ (a cdylib that panics 100 times, 20 frames deep, and
# catches each with catch_unwind) exactly as libclat.so is linked, for each
# Android ABI, then loads it with glibc's loader and runs it: natively for
# x86_64, under qemu-user for arm64-v8a and armeabi-v7a. The libraries it
# NEEDS (libc.so, libdl.so, liblog.so) are tiny shims over glibc
# (unwind-test/glibc-shim.c says what they translate). No device or
# emulator here: this shows our libunwind, start-up object and link work on
# each architecture, not that bionic behaves like glibc.
#
# Run build-native.sh first (it builds the per-ABI link inputs). Installs
# qemu-user and the cross glibc it needs on Debian 12 if missing.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
MIN_SDK=${MIN_SDK:-24}
export MIN_SDK
target_dir=${CARGO_TARGET_DIR:-$root/target}
test_target=$target_dir/nosdk-native/unwind-test

need=()
command -v qemu-aarch64 >/dev/null || need+=(qemu-user)
[ -e /usr/aarch64-linux-gnu/lib/crti.o ] || need+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
[ -e /usr/arm-linux-gnueabi/lib/crti.o ] || need+=(gcc-arm-linux-gnueabi libc6-dev-armel-cross)
if [ ${#need[@]} -gt 0 ]; then
  echo "test-unwind: installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# rust triple, ABI, clang target prefix, glibc C compiler, runner.
# armeabi-v7a uses the soft-float calling convention: Debian's armel matches.
targets=(
  "x86_64-linux-android x86_64 x86_64-linux-android clang"
  "aarch64-linux-android arm64-v8a aarch64-linux-android aarch64-linux-gnu-gcc qemu-aarch64 -L /usr/aarch64-linux-gnu"
  "armv7-linux-androideabi armeabi-v7a armv7a-linux-androideabi arm-linux-gnueabi-gcc qemu-arm -L /usr/arm-linux-gnueabi"
)
status=0
for spec in "${targets[@]}"; do
  set -- $spec
  triple=$1 abi=$2 clang_target=$3$MIN_SDK cc=$4
  shift 4
  runner=("$@")
  work=$target_dir/nosdk-native/$abi
  [ -e "$work/lib/libunwind.a" ] || { echo "test-unwind: run build-native.sh first ($work)" >&2; exit 1; }

  T=$(echo "$triple" | tr a-z- A-Z_)
  env "CARGO_TARGET_${T}_LINKER=$here/link-clang.sh" \
    NOSDK_CLANG_TARGET="$clang_target" NOSDK_WORK="$work" CARGO_TARGET_DIR="$test_target" \
    cargo build --quiet --locked --release --target "$triple" \
      --manifest-path "$here/unwind-test/Cargo.toml"
  lib=$test_target/$triple/release/libunwind_test.so

  shim=$test_target/shim-$abi
  mkdir -p "$shim"
  for l in libc libdl liblog; do
    def=SHIM_$(echo "$l" | tr a-z A-Z)
    "$cc" -shared -fPIC -O2 -D"$def" -Wl,-soname,$l.so "$here/unwind-test/glibc-shim.c" -o "$shim/$l.so"
  done
  "$cc" -O2 "$here/unwind-test/run.c" -o "$shim/run" -ldl

  echo "test-unwind: $abi"
  if [ ${#runner[@]} -gt 0 ]; then
    "${runner[@]}" -E LD_LIBRARY_PATH="$shim" "$shim/run" "$lib" || status=1
  else
    LD_LIBRARY_PATH=$shim "$shim/run" "$lib" || status=1
  fi
done
[ $status -eq 0 ] && echo "test-unwind: every ABI caught every panic" || echo "test-unwind: FAILED" >&2
exit $status
