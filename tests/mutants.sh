#!/usr/bin/env bash
# Mutation testing of the translator (clat-xlat) and prefix discovery
# (clat-discovery) with cargo-mutants: every mutant (an operator flipped, a
# function body replaced by a constant, a match arm deleted...) must make
# some test fail. Prints, per crate, caught / missed / timeout / unviable and
# the share of viable mutants (caught + missed + timeout) that survived, and
# fails when that share is above MUTANTS_MAX_PCT (default 5). The survivors
# that are left on purpose, and why, are in tests/mutants-survivors.md.
#
# Too slow for every CI run: a full run is about an hour for discovery and
# several for the translator on 2 cores. Usage:
#   tests/mutants.sh                       # both crates
#   tests/mutants.sh clat-discovery        # one crate
#   MUTANTS_ARGS="--file rust-core/xlat/src/v6_to_v4.rs" tests/mutants.sh clat-xlat
# MUTANTS_JOBS (default 1) builds and tests that many mutants at once;
# MUTANTS_OUT (default target/mutants) keeps each crate's mutants.out, whose
# missed.txt lists the survivors; MUTANTS_ARGS adds cargo-mutants options
# (--file, --re, --iterate, --shard ...).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-mutants >/dev/null || cargo install cargo-mutants --locked
JOBS=${MUTANTS_JOBS:-1}
OUT=${MUTANTS_OUT:-target/mutants}
MAX_PCT=${MUTANTS_MAX_PCT:-5}
read -r -a EXTRA <<<"${MUTANTS_ARGS:-}"
crates=("$@")
[ ${#crates[@]} -gt 0 ] || crates=(clat-discovery clat-xlat)

# No debug info: each mutant relinks every test binary, and that is most of
# the time. Doctests are left out (`--lib --tests`); they only repeat the
# examples of the API documentation.
export CARGO_PROFILE_DEV_DEBUG=0

fail=0
for c in "${crates[@]}"; do
    mkdir -p "$OUT/$c"
    rc=0
    nice -n 15 cargo mutants -p "$c" -j "$JOBS" --output "$OUT/$c" "${EXTRA[@]}" \
        -- --lib --tests || rc=$?
    # 0: all caught, 2: some missed, 3: some timed out; anything else
    # (1 usage, 4 the unmutated tree fails its tests) is an error.
    case $rc in 0 | 2 | 3) ;; *)
        echo "mutants: cargo mutants failed for $c (exit $rc)" >&2
        exit 1
        ;;
    esac
    n() { if [ -f "$OUT/$c/mutants.out/$1.txt" ]; then wc -l <"$OUT/$c/mutants.out/$1.txt"; else echo 0; fi; }
    caught=$(n caught) missed=$(n missed) timeout=$(n timeout) unviable=$(n unviable)
    viable=$((caught + missed + timeout))
    if [ "$viable" -eq 0 ]; then
        echo "mutants: $c: no viable mutant tested" >&2
        exit 1
    fi
    pct=$(awk -v m="$missed" -v v="$viable" 'BEGIN { printf "%.1f", 100 * m / v }')
    echo "mutants: $c: caught $caught, missed $missed, timeout $timeout, unviable $unviable;" \
        "survivors $missed of $viable viable = $pct %"
    if awk -v p="$pct" -v max="$MAX_PCT" 'BEGIN { exit !(p > max) }'; then
        echo "mutants: $c: above $MAX_PCT %; survivors in $OUT/$c/mutants.out/missed.txt" >&2
        fail=1
    fi
done
exit $fail
