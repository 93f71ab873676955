#!/usr/bin/env bash
# Short coverage-guided fuzz runs (cargo fuzz, libFuzzer) of every fuzz
# target: the translator both ways, the engine's real packet ingress, its DNS
# wire handling and IPv4 reassembly, the discovery answer parser and the
# PREF64/netlink parsers. A crash fails the run and leaves the input under
# rust-core/<crate>/fuzz/artifacts/. FUZZ_SECONDS sets the time per target.
# The long runs are done by hand (figures in the hardening notes).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SECS=${FUZZ_SECONDS:-20}

# cargo fuzz needs a nightly toolchain (-Zsanitizer): install it rather than pass without
# fuzzing; a machine where it cannot be had fails this stage.
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    echo "fuzz: installing the nightly toolchain (cargo fuzz needs it)"
    rustup toolchain install nightly --profile minimal
fi
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
# One target dir for the three fuzz workspaces: they share most dependencies.
export CARGO_TARGET_DIR=$ROOT/target/fuzz
mkdir -p "$CARGO_TARGET_DIR"
runs=0
for crate in xlat discovery engine; do
    cd "$ROOT/rust-core/$crate"
    for t in $(cargo +nightly fuzz list); do
        echo "fuzz: $crate/$t for ${SECS}s"
        log=$CARGO_TARGET_DIR/$crate-$t.log
        if ! cargo +nightly fuzz run -O "$t" -- -max_total_time="$SECS" >"$log" 2>&1; then
            tail -n 60 "$log"
            echo "fuzz: $crate/$t FAILED (input saved under rust-core/$crate/fuzz/artifacts/$t)"
            exit 1
        fi
        grep -E '^(#[0-9]+[[:space:]]+DONE|Done [0-9]+ runs)' "$log" | tail -n 1
        runs=$((runs + 1))
    done
done
echo "fuzz: $runs targets ran ${SECS}s each without a crash"
