#!/usr/bin/env bash
# Runs every test of the project, in the order that lets each stage use the
# previous one: Rust unit and namespace tests, the APK built without the SDK
# and checked, then the lab (real Tayga NAT64
# and BIND9 DNS64 in network namespaces), the Kotlin/JVM and JNI tests, and
# the end-to-end tests through `clat run`. Needs root (namespaces, TUN).
# Installs what it needs (Debian packages, pytest, Maven artifacts) first.
# The last lines are pytest's own summary.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

if [[ $(id -u) -ne 0 ]]; then
    echo "run-all: needs root (network namespaces, TUN devices)" >&2
    exit 2
fi

stage() { printf '\n==== %s ====\n' "$*"; }

stage "dependencies"
bash tests/lab/install-deps.sh
python3 -c 'import pytest' 2>/dev/null || python3 -m pip install --quiet pytest

stage "build"
cargo build --workspace --all-targets
cargo build --release -p clat-cli
export CLAT_BIN=$ROOT/target/release/clat

stage "rust tests"
cargo test --workspace 2>&1 | tee /tmp/clat-cargo-test.log
grep -E '^test result:' /tmp/clat-cargo-test.log | awk '{p+=$4; f+=$6} END {print "rust: " p " passed, " f " failed"}'

stage "android: the APK built without the SDK, and checked (android/nosdk)"
bash android/nosdk/build-apk.sh "$ROOT/target/apk"
# The checks the build ran, shown failing on bad input (the contract's self-test reads the classes
# the build compiled).
bash android/nosdk/native/check-elf.sh --self-test
python3 android/nosdk/contract/check-platform-contract.py --self-test
# The unwinder built from rust-src catches panics on each ABI (x86_64 natively, arm64 and armv7
# under qemu-user), linked exactly like libclat.so: catch_unwind at the JNI boundary needs it.
bash android/nosdk/native/test-unwind.sh

stage "fuzz: short cargo-fuzz runs of every target"
bash tests/fuzz-short.sh

stage "lab up"
bash tests/lab/lab.sh down >/dev/null 2>&1 || true
bash tests/lab/lab.sh up
trap 'bash tests/lab/lab.sh down >/dev/null 2>&1 || true' EXIT

stage "kotlin: compile against android-all, JVM unit tests, instrumentation tests type-checked"
mvn -B -q -f android/jvm/pom.xml test
mvn -B -q -f android/jvm/pom.xml -PandroidTest test-compile

stage "kotlin: JNI tests on a real JVM, in the lab's phone namespace"
cargo build -p clat-jni
mvn -B -q -f android/jvm/pom.xml -Pjni test-compile dependency:go-offline
CLAT_LAB_REQUIRED=1 ip netns exec phone mvn -o -B -f android/jvm/pom.xml -Pjni test \
    -Dclat.native.lib="$ROOT/target/debug/libclat.so"

stage "linux packaging: the .deb built (cargo-deb), installed, checked, run in the lab, removed"
# build-deb.sh installs cargo-deb first when it is missing (pinned version).
deb=$(bash packaging/build-deb.sh | tail -n 1)
KEEP_LAB=1 bash packaging/test-deb.sh "$deb"
# `cargo install --path` works too (the release build above is reused).
cargo_root=$(mktemp -d)
CARGO_TARGET_DIR=$ROOT/target cargo install --quiet --locked --path rust-core/cli --root "$cargo_root"
"$cargo_root/bin/clat" --version
rm -rf "$cargo_root"

stage "end-to-end tests in the lab"
KEEP_LAB=1 python3 -m pytest -v -rfE tests/e2e
