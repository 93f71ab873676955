#!/usr/bin/env bash
# One-command demo of the CLAT on Linux (run as root on a fresh machine):
# installs the lab's packages, builds `clat`, brings up the lab (tests/lab),
# runs `clat run` in the IPv6-only `phone` namespace and shows IPv4-only
# clients working through it: curl to an IPv4 literal and to an A-only name,
# ping, dig against an IPv4 resolver, a short iperf3.  Prints `clat status`
# and tears everything down on exit, also after a failure or Ctrl-C.
#
# Env: CLAT_BIN=path skips the build; KEEP_LAB=1 leaves the lab up.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LAB="$REPO/tests/lab/lab.sh"
RUN=${CLAT_LAB_RUN:-/run/clat-lab}
CLAT_PID=

[ "$(id -u)" = 0 ] || { echo "demo: run as root (network namespaces, TUN)" >&2; exit 1; }

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }
inphone() { show ip netns exec phone "$@"; }

cleanup() {
  local rc=$?
  set +e
  if [ -n "$CLAT_PID" ] && kill -0 "$CLAT_PID" 2>/dev/null; then
    kill -TERM "$CLAT_PID"
    for _ in $(seq 50); do kill -0 "$CLAT_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$CLAT_PID" 2>/dev/null
  fi
  if [ "${KEEP_LAB:-0}" != 1 ]; then
    bash "$LAB" down
  fi
  if [ $rc -ne 0 ]; then echo "demo: FAILED (exit $rc)" >&2; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step "install the lab's packages (only those missing)"
bash "$REPO/tests/lab/install-deps.sh"

if [ -n "${CLAT_BIN:-}" ]; then
  BIN=$CLAT_BIN
else
  step "build clat"
  command -v cargo >/dev/null || { echo "demo: cargo not found: install a Rust toolchain (rustup) first" >&2; exit 1; }
  (cd "$REPO" && cargo build --release -p clat-cli)
  BIN=${CARGO_TARGET_DIR:-$REPO/target}/release/clat
fi
[ -x "$BIN" ] || { echo "demo: no clat binary at $BIN" >&2; exit 1; }

step "bring up the lab: phone (IPv6-only) -- plat (Tayga NAT64, BIND9 DNS64) -- inet (IPv4-only)"
bash "$LAB" up

step "phone has no IPv4: an IPv4 literal is unreachable before the CLAT runs"
show ip netns exec phone ip -4 route
show ip netns exec phone curl -sS -m 3 http://203.0.113.10/index.html || true

step "find the NAT64 prefix: RFC 7050 (ipv4only.arpa) through the network's DNS64"
inphone "$BIN" discover --dns 2001:db8:1::53

step "start the CLAT in phone (it discovers the prefix itself and keeps it current)"
mkdir -p "$RUN"
echo "\$ ip netns exec phone $BIN run --tun clat0 --dns 2001:db8:1::53 &"
ip netns exec phone "$BIN" run --tun clat0 --dns 2001:db8:1::53 \
  >"$RUN/demo-clat.log" 2>&1 &
CLAT_PID=$!
for _ in $(seq 100); do
  if ip netns exec phone ip -4 addr show dev clat0 2>/dev/null | grep -q 'inet 192.0.0.4/' \
     && ip netns exec phone ip -4 route show default | grep -q default; then
    break
  fi
  kill -0 "$CLAT_PID" 2>/dev/null || { cat "$RUN/demo-clat.log" >&2; exit 1; }
  sleep 0.1
done
show ip netns exec phone ip -4 addr show dev clat0
show ip netns exec phone ip -4 route

step "IPv4-only clients in phone, through the CLAT"
inphone curl -sS -m 10 http://203.0.113.10/index.html
echo "# (resolv.conf of phone: $(cat /etc/netns/phone/resolv.conf))"
inphone curl -sS -m 10 http://v4only.lab.example/index.html
inphone curl -sS -m 60 -o /dev/null -w 'downloaded %{size_download} bytes at %{speed_download} B/s\n' http://203.0.113.10/100M
inphone ping -4 -c 3 -i 0.2 203.0.113.10
inphone dig +short @203.0.113.53 v4only.lab.example A
inphone dig +short @192.0.0.6 v4only.lab.example AAAA
inphone iperf3 -4 -c 203.0.113.10 -t 3

step "clat status"
show ip netns exec phone "$BIN" status

step "done: tearing down"
