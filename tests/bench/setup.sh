#!/usr/bin/env bash
# Benchmark additions to the lab (run after `tests/lab/lab.sh up`, as root).
#
#   setup.sh up            native IPv6 path plat <-> inet and the bench servers
#   setup.sh down          undo `up` (lab.sh down also removes all of it)
#   setup.sh tayga-clat-up   Tayga as a CLAT inside phone (the clatd way)
#   setup.sh tayga-clat-down
#
# Why a native IPv6 path: the benchmark compares our CLAT with the IPv6
# ceiling and with Tayga as a CLAT, so the NAT64 (Tayga in plat, one
# single-threaded process) must not be the bottleneck.  A second veth pair
# plat pl2 <-> inet in2 (2001:db8:3::/64) carries IPv6 natively, inet owns
# prefix+BENCH_V4 (2001:db8:64::cb00:710a = 2001:db8:64::203.0.113.10) and
# plat routes that /128 there, which wins over Tayga's /96.  So every path
# ends at the same server socket over IPv6:
#   (a) phone -> [2001:db8:64::cb00:710a]          IPv6 direct (the ceiling)
#   (b) phone -> 203.0.113.10 -> clat0 (our CLAT) -> IPv6 to the same address
#   (c) phone -> 203.0.113.10 -> clat-tayga (Tayga CLAT, source
#       2001:db8:1:c1a7::4) -> IPv6 to the same address
# The bench servers (iperf3 :5202, benchtool :5301-5303) listen on [::]
# dual-stack, on ports the lab does not use.
#
# Note: while this is up, the lab's own NAT64 no longer reaches BENCH_V4
# (203.0.113.10) from phone (its IPv6 address now goes to the bench servers
# natively), so do not run the e2e tests against the same lab meanwhile.
# run.sh by default builds a private lab in its own namespaces for this reason.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LAB_RUN=${CLAT_LAB_RUN:-/run/clat-lab}
BENCH_RUN=$LAB_RUN/bench
BENCH_V4=${BENCH_V4:-203.0.113.10}
PREFIX=2001:db8:64::
IPERF_PORT=${BENCH_IPERF_PORT:-5202}
TOOL_PORT=${BENCH_TOOL_PORT:-5301}
# The Tayga CLAT's IPv6 side: a dedicated /64 routed back to phone by plat
# (clatd would take a random IID in the uplink /64 and answer ND for it).
TAYGA_CLAT_NET=2001:db8:1:c1a7::/64
TAYGA_CLAT_V6=2001:db8:1:c1a7::4

log() { echo "bench-setup: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
in_ns() { local n=$1; shift; ip netns exec "$n" "$@"; }

# The IPv6 address of an IPv4 address under a /96 prefix (RFC 6052).
v6_of() {
  local IFS=.
  # shellcheck disable=SC2086
  set -- $1
  printf '%s%x:%x\n' "$PREFIX" $(( ($1 << 8) | $2 )) $(( ($3 << 8) | $4 ))
}
BENCH_V6=$(v6_of "$BENCH_V4")

alive() {
  local st
  [ -n "$1" ] && st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) && [ -n "$st" ] && [ "$st" != Z ]
}

kill_pidfile() {
  local f=$1 pid
  [ -e "$f" ] || return 0
  pid=$(cat "$f")
  if alive "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do alive "$pid" || break; sleep 0.05; done
    alive "$pid" && kill -KILL "$pid" 2>/dev/null
  fi
  rm -f "$f"
}

# start_bg NAME NETNS CMD...: detached, pidfile in the lab's pids/ so that
# `lab.sh down` ends it too.
start_bg() {
  local name=$1 netns=$2; shift 2
  mkdir -p "$LAB_RUN/pids" "$LAB_RUN/logs"
  setsid ip netns exec "$netns" "$@" </dev/null >"$LAB_RUN/logs/$name.log" 2>&1 &
  echo $! >"$LAB_RUN/pids/$name.pid"
}

wait_listen() { # NETNS PROTO PORT
  for _ in $(seq 100); do
    in_ns "$1" ss -Hln"$2" "sport = :$3" | grep -q . && return 0
    sleep 0.1
  done
  die "nothing listens on $2 port $3 in $1"
}

build_tool() {
  mkdir -p "$BENCH_RUN"
  if [ ! -x "$BENCH_RUN/benchtool" ] || [ "$HERE/benchtool.c" -nt "$BENCH_RUN/benchtool" ]; then
    gcc -O2 -Wall -pthread -o "$BENCH_RUN/benchtool" "$HERE/benchtool.c"
  fi
}

do_up() {
  ip netns list | grep -qw '^inet' || die "the lab is not up (tests/lab/lab.sh up)"
  command -v gcc >/dev/null || die "gcc is needed (apt-get install gcc)"
  do_down 2>/dev/null || true
  build_tool

  ip link add pl2 netns plat type veth peer name in2 netns inet
  in_ns plat ip -6 addr add 2001:db8:3::1/64 dev pl2 nodad
  in_ns plat ip link set pl2 up
  in_ns inet ip -6 addr add 2001:db8:3::2/64 dev in2 nodad
  in_ns inet ip link set in2 up
  local sdev=srv0
  in_ns inet ip link show srv0 >/dev/null 2>&1 || sdev=lo
  in_ns inet ip -6 addr add "$BENCH_V6/128" dev "$sdev" nodad
  # Answers from [::] sockets (UDP echo, iperf3 -u) must come from the
  # address the client talked to, not from in2's own address.
  in_ns inet ip -6 route add default via 2001:db8:3::1 dev in2 src "$BENCH_V6"
  # More specific than Tayga's 2001:db8:64::/96: native to the server.
  in_ns plat ip -6 route add "$BENCH_V6/128" via 2001:db8:3::2 dev pl2
  in_ns plat ip -6 route add "$TAYGA_CLAT_NET" via 2001:db8:1::2 dev pl0

  # Many connections: backlogs, port ranges, reuse of the client's ports.
  in_ns inet sysctl -qw net.core.somaxconn=65535 net.ipv4.tcp_max_syn_backlog=65535
  for n in phone inet; do
    in_ns "$n" sysctl -qw net.ipv4.ip_local_port_range="1024 65535" net.ipv4.tcp_tw_reuse=1
  done

  start_bg bench-iperf3 inet iperf3 -s -p "$IPERF_PORT"
  start_bg bench-tool inet "$BENCH_RUN/benchtool" server "$TOOL_PORT"
  wait_listen inet t "$IPERF_PORT"
  wait_listen inet t "$TOOL_PORT"
  wait_listen inet t $((TOOL_PORT + 2))
  in_ns phone ping -6 -c1 -W2 "$BENCH_V6" >/dev/null || die "no native IPv6 path phone -> $BENCH_V6"
  log "up: $BENCH_V6 (= prefix + $BENCH_V4) routed natively to inet; iperf3 :$IPERF_PORT, benchtool :$TOOL_PORT-$((TOOL_PORT + 2))"
}

do_down() {
  set +e
  tayga_down
  kill_pidfile "$LAB_RUN/pids/bench-iperf3.pid"
  kill_pidfile "$LAB_RUN/pids/bench-tool.pid"
  in_ns plat ip -6 route del "$BENCH_V6/128" 2>/dev/null
  in_ns plat ip -6 route del "$TAYGA_CLAT_NET" 2>/dev/null
  in_ns plat ip link del pl2 2>/dev/null
  set -e
  return 0
}

# Tayga as a CLAT in phone, as clatd sets it up: its own TUN clat-tayga,
# Tayga's IPv4 address 192.0.0.1, the host's IPv4 192.0.0.4 mapped 1:1 to
# an IPv6 address of phone, the NAT64 prefix, the IPv4 default route via
# the TUN.  Phone forwards IPv6 between the TUN and its uplink meanwhile.
tayga_up() {
  local d=$BENCH_RUN/tayga-clat
  mkdir -p "$d"
  cat >"$d/tayga.conf" <<CONF
tun-device clat-tayga
ipv4-addr 192.0.0.1
prefix ${PREFIX}/96
map 192.0.0.4 $TAYGA_CLAT_V6
data-dir $d
CONF
  in_ns phone ip -4 route show default | grep -q . && die "phone already has an IPv4 default route (is a clat running?)"
  in_ns phone tayga --mktun -c "$d/tayga.conf" >/dev/null
  in_ns phone ip link set clat-tayga up
  in_ns phone ip addr add 192.0.0.4/32 dev clat-tayga
  in_ns phone ip route add default dev clat-tayga
  in_ns phone ip -6 route add "$TAYGA_CLAT_V6/128" dev clat-tayga
  in_ns phone sysctl -qw net.ipv6.conf.all.forwarding=1
  start_bg bench-tayga-clat phone tayga -c "$d/tayga.conf" --nodetach
  for _ in $(seq 50); do
    in_ns phone ping -4 -c1 -W1 "$BENCH_V4" >/dev/null 2>&1 && { log "tayga CLAT up"; return 0; }
    sleep 0.1
  done
  die "tayga CLAT: no answer from $BENCH_V4"
}

tayga_down() {
  set +e
  kill_pidfile "$LAB_RUN/pids/bench-tayga-clat.pid"
  in_ns phone ip link del clat-tayga 2>/dev/null
  in_ns phone sysctl -qw net.ipv6.conf.all.forwarding=0 2>/dev/null
  set -e
  return 0
}

[ "$(id -u)" = 0 ] || die "must run as root"
case "${1:-up}" in
  up) do_up ;;
  down) do_down; log "down" ;;
  tayga-clat-up) tayga_up ;;
  tayga-clat-down) tayga_down ;;
  *) echo "usage: $0 up|down|tayga-clat-up|tayga-clat-down" >&2; exit 2 ;;
esac
