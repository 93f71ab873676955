#!/usr/bin/env bash
# The CLAT benchmark in one command (root):
#
#   tests/bench/run.sh [--quick] [--shared-lab] [--clat PATH] [--only LIST] [--out FILE]
#
# Measures, in one run, IPv6 direct (a), our CLAT (b) and Tayga as a CLAT
# (c) from the lab's `phone` to the same server (see setup.sh and bench.py),
# prints a table with ratios and targets, and writes it to
# tests/bench/results/<date>.md (and .json next to it).
#
#   --quick        a smoke run: about 2 s per measurement (CI)
#   --shared-lab   use the lab in the global namespaces (brings it up if it
#                  is not; setup.sh reroutes 203.0.113.10's NAT64 address, so
#                  nothing else may use that lab meanwhile).  Default: a
#                  private lab in new mount/network/pid namespaces, so the
#                  benchmark neither disturbs nor is disturbed by other users
#                  of the lab, and everything it started dies with it.
#   --clat PATH    the binary to measure (default: cargo build --release
#                  -p clat-cli, then $CARGO_TARGET_DIR or target/release/clat)
#   --only LIST    comma list of paths,mem,wake,android,carry6,cap (default: all;
#                  "memtcp" / "memudp": the TCP or UDP half of "mem";
#                  "mtu" is the earlier name of "android"); "conn"
#                  (round trips and new connections of (a) and (b) only: what
#                  a change to the handshake path costs, in about 2 minutes);
#                  "profile"
#                  (only when named) records perf profiles and syscalls per
#                  packet of clat run under load
#   --out FILE     where to write the markdown
#
# Exit status: 0 when everything was measured, 1 when something could not be
# measured (e.g. the CLAT did not start); never because of a figure.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
log() { echo "bench: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

QUICK= SHARED= CLAT= ONLY= OUT=
ORIG_ARGS=("$@")
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --shared-lab) SHARED=1 ;;
    --clat) CLAT=$2; shift ;;
    --only) ONLY=$2; shift ;;
    --out) OUT=$2; shift ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
  shift
done
[ "$(id -u)" = 0 ] || die "must run as root (network namespaces)"

if [ -z "${BENCH_INNER:-}" ]; then
  for c in ip iperf3 gcc tayga python3 unshare; do
    command -v "$c" >/dev/null || [ -x "/usr/sbin/$c" ] || die "missing $c (see tests/bench/README in the report: apt-get install iperf3 gcc tayga ...)"
  done
  if [ -z "$CLAT" ]; then
    log "building clat (cargo build --release -p clat-cli)"
    (cd "$REPO" && cargo build --release -p clat-cli) >&2
    CLAT=${CARGO_TARGET_DIR:-$REPO/target}/release/clat
  fi
  [ -x "$CLAT" ] || die "no clat binary at $CLAT"
  CLAT=$(cd "$(dirname "$CLAT")" && pwd)/$(basename "$CLAT")
  GIT=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
  git -C "$REPO" diff --quiet HEAD -- rust-core 2>/dev/null || GIT="$GIT+uncommitted rust-core changes"
  export BENCH_CLAT=$CLAT BENCH_GIT=$GIT BENCH_CMD="tests/bench/run.sh ${ORIG_ARGS[*]}"
  if [ -n "$SHARED" ]; then
    BENCH_INNER=shared exec "$0" "${ORIG_ARGS[@]}"
  fi
  # A private lab: own mount namespace (so /run/netns, /etc/netns and the
  # lab's runtime dir are ours), own network namespace as the lab's "root",
  # own pid namespace (everything started dies when this script ends).
  BENCH_INNER=private exec unshare --mount --net --pid --fork --mount-proc "$0" "${ORIG_ARGS[@]}"
fi

if [ "$BENCH_INNER" = private ]; then
  for d in /run/netns /etc/netns /run/clat /run/clat-bench; do
    mkdir -p "$d"
    mount -t tmpfs clat-bench "$d"
  done
  export CLAT_LAB_RUN=/run/clat-bench/lab
fi
LAB=$REPO/tests/lab/lab.sh
BROUGHT_UP=
cleanup() {
  rc=$?
  "$HERE/setup.sh" down >/dev/null 2>&1 || true
  if [ -n "$BROUGHT_UP" ]; then "$LAB" down >/dev/null 2>&1 || true; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ "$BENCH_INNER" = private ] || ! "$LAB" status >/dev/null 2>&1; then
  log "bringing the lab up ($BENCH_INNER)"
  BROUGHT_UP=1
  "$LAB" up
fi
"$HERE/setup.sh" up

STAMP=$(date -u +%Y-%m-%dT%H%MZ)
[ -n "$OUT" ] || OUT=$HERE/results/$STAMP${QUICK:+-quick}.md
mkdir -p "$(dirname "$OUT")"
PY=$(command -v /usr/bin/python3 || command -v python3)
set +e
"$PY" "$HERE/bench.py" --clat "$BENCH_CLAT" ${QUICK:+--quick} ${ONLY:+--only "$ONLY"} \
  --out "$OUT" --command "$BENCH_CMD" --git "$BENCH_GIT"
rc=$?
set -e
exit $rc
