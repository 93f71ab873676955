#!/bin/bash
# build-libunwind.sh CLANG_TARGET OUT.a
#
# Builds LLVM libunwind from rustup's rust-src into a static archive for one
# Android ABI, with Debian's clang and no NDK.
#
# Why: Rust's std on Android links `-lunwind` (library/unwind/src/lib.rs) and
# the JNI bridge needs real unwinding (panic=unwind + catch_unwind keeps
# panics from crossing the JNI boundary). The NDK would ship libunwind.a; we
# build the same library from the sources rustup already has.
#
# It compiles against android/nosdk/native/include (minimal headers written
# for this project from bionic's ABI) plus clang's freestanding headers; no
# glibc header is ever seen (-nostdinc). Symbols are hidden so the unwinder
# stays private to libclat.so, as with the NDK's libunwind.a.
set -euo pipefail

clang_target=$1
out=$2
here=$(cd "$(dirname "$0")" && pwd)
src=$(rustc --print sysroot)/lib/rustlib/src/rust/src/llvm-project/libunwind
[ -d "$src/src" ] || { echo "build-libunwind: $src missing (rustup component add rust-src)" >&2; exit 1; }

flags=(
  --target="$clang_target" -O2 -fPIC -g0
  -ffunction-sections -fdata-sections
  -funwind-tables -fno-exceptions -fno-rtti
  -fvisibility=hidden -D_LIBUNWIND_HIDE_SYMBOLS   # private to libclat.so
  -D_LIBUNWIND_IS_NATIVE_ONLY -DNDEBUG            # threads stay on (RWMutex)
  -nostdinc -isystem "$(clang -print-resource-dir)/include"
  -isystem "$here/include" -I "$src/include"
)
case $clang_target in
  # Rust's armv7-linux-androideabi: Thumb-2, VFPv3 with 16 D registers, softfp
  # calling convention (the NDK's armeabi-v7a). libunwind uses ARM EHABI here.
  armv7a-*) flags+=(-march=armv7-a -mthumb -mfloat-abi=softfp -mfpu=vfpv3-d16) ;;
esac

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for f in libunwind.cpp Unwind-EHABI.cpp; do
  clang "${flags[@]}" -std=c++17 -nostdinc++ -c "$src/src/$f" -o "$work/$f.o"
done
for f in UnwindLevel1.c UnwindLevel1-gcc-ext.c; do
  clang "${flags[@]}" -std=c99 -c "$src/src/$f" -o "$work/$f.o"
done
for f in UnwindRegistersSave.S UnwindRegistersRestore.S; do
  clang "${flags[@]}" -c "$src/src/$f" -o "$work/$f.o"
done
rm -f "$out"
llvm-ar rcs "$out" "$work"/*.o
