#!/bin/bash
# link-clang.sh -- the linker cargo uses for the Android targets in build-native.sh
# (CARGO_TARGET_<TRIPLE>_LINKER). rustc calls it like `cc`, with its own
# arguments (objects, rlibs, -lc -lm -ldl -llog -lunwind, -o OUT, -shared).
#
# It drives Debian's clang/lld for Android with no NDK, in two passes:
#  1. link against EMPTY libc.so/libm.so/libdl.so/liblog.so (SONAME only):
#     the result tells which symbols the library really imports;
#  2. check those imports against bionic-symbols.tsv (unknown symbol, or a
#     non-weak one newer than MIN_SDK: the link fails), generate stub
#     libraries defining exactly them, and link again against the stubs with
#     -z defs, so every import is accounted for and NEEDED names only the
#     libraries that are used.
# Environment (set by build-native.sh): NOSDK_CLANG_TARGET (e.g.
# aarch64-linux-android24), NOSDK_WORK (per-ABI directory holding crt_so.o,
# lib/libunwind.a, empty/ and an empty sysroot/), MIN_SDK.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
: "${NOSDK_CLANG_TARGET:?set by build-native.sh}" "${NOSDK_WORK:?set by build-native.sh}" "${MIN_SDK:?}"

# Split rustc's arguments into the output path and the rest.
out='' args=()
while [ $# -gt 0 ]; do
  case $1 in
    -o) out=$2; shift 2 ;;
    @*) echo "link-clang.sh: response files are not supported ($1)" >&2; exit 1 ;;
    *) args+=("$1"); shift ;;
  esac
done
[ -n "$out" ] || { echo "link-clang.sh: no -o in the linker arguments" >&2; exit 1; }

# Hash style: GNU hash is understood by bionic from API 23; older needs sysv.
hash=gnu
[ "$MIN_SDK" -ge 23 ] || hash=both

policy=(
  --target="$NOSDK_CLANG_TARGET" -fuse-ld=lld
  -nostdlib                       # no glibc/NDK crt objects or libraries
  --sysroot="$NOSDK_WORK/sysroot" # empty: else clang adds -L/usr/lib, /lib
  "$NOSDK_WORK/crt_so.o"          # our __dso_handle + __cxa_finalize hook
  -L "$NOSDK_WORK/lib"            # libunwind.a built from rust-src
  -Wl,-soname,"$(basename "$out")" # libclat.so: the name the app loads
  -Wl,-z,max-page-size=16384 -Wl,-z,common-page-size=16384   # 16 KiB pages
  -Wl,-z,relro -Wl,-z,now -Wl,-z,text -Wl,-z,noexecstack
  -Wl,--build-id=sha1 -Wl,--hash-style="$hash"
)
case $NOSDK_CLANG_TARGET in
  armv7a-*) policy+=(-Wl,--fix-cortex-a8) ;;  # as the NDK does for armeabi-v7a
esac

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Pass 1: against empty libraries; undefined symbols stay imports.
clang "${policy[@]}" -L "$NOSDK_WORK/empty" "${args[@]}" -o "$tmp/pass1.so"

# Check the imports and generate the stubs (fails with the list of offenders).
"$here/symbols.sh" check "$tmp/pass1.so" "$(basename "$out") for $NOSDK_CLANG_TARGET" >/dev/null
"$here/symbols.sh" stubs "$tmp/pass1.so" "$tmp/stubs"

# Pass 2: the real link; -z defs proves every import is defined by a stub.
clang "${policy[@]}" -L "$tmp/stubs" -Wl,-z,defs "${args[@]}" -o "$out"
