#!/bin/bash
# cc.sh -- C compiler for build scripts (cc crate) of the Android targets in
# build-native.sh (CC_<triple>). Debian's clang for Android at MIN_SDK, with
# only clang's freestanding headers and this project's bionic-ABI headers
# (include/): glibc's headers must never reach Android code, so C needing more
# of libc fails here, loudly, rather than being built against the wrong ABI.
set -euo pipefail
exec clang --target="${NOSDK_CLANG_TARGET:?set by build-native.sh}" \
  -nostdinc -isystem "$(clang -print-resource-dir)/include" \
  -isystem "$(cd "$(dirname "$0")" && pwd)/include" "$@"
