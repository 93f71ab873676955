#!/usr/bin/env bash
# The CLAT lab: three network namespaces on one machine.
#
#   phone  IPv6-only uplink (ph0 2001:db8:1::2/64); runs the CLAT and the
#          IPv4-only clients.  No IPv4 at all except loopback and whatever
#          the CLAT puts on its TUN.
#   plat   the provider side: Tayga NAT64 (2001:db8:64::/96, pool
#          198.51.100.0/24) and BIND9 DNS64 on 2001:db8:1::53.
#   inet   IPv4-only servers on 203.0.113.10/.11/.53 (see servers.py).
#
# Usage: lab.sh up|down|status     (root; idempotent; `up` removes leftovers
# first and tears everything down again if any step fails).
# Runtime state (configs, pidfiles, logs, served files) lives in $LAB_RUN.
set -Eeuo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LAB_RUN=${CLAT_LAB_RUN:-/run/clat-lab}
NAMESPACES=(phone plat inet)
PY=$(command -v /usr/bin/python3 || command -v python3)

log() { echo "lab: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
in_ns() { local n=$1; shift; ip netns exec "$n" "$@"; }

need_root() { [ "$(id -u)" = 0 ] || die "must run as root (network namespaces)"; }

check_tools() {
  local missing=()
  for c in ip tayga named dig iperf3 curl ping sysctl "$PY"; do
    command -v "$c" >/dev/null 2>&1 || [ -x "/usr/sbin/$c" ] || missing+=("$c")
  done
  [ ${#missing[@]} -eq 0 ] || die "missing tools: ${missing[*]} (run tests/lab/install-deps.sh)"
}

# start_bg NAME NETNS CMD...: run CMD in NETNS detached, pidfile $LAB_RUN/pids/NAME.pid
start_bg() {
  local name=$1 netns=$2; shift 2
  mkdir -p "$LAB_RUN/pids" "$LAB_RUN/logs"
  # `ip netns exec` execs CMD, so $! is the server's own pid.
  setsid ip netns exec "$netns" "$@" </dev/null >"$LAB_RUN/logs/$name.log" 2>&1 &
  echo $! >"$LAB_RUN/pids/$name.pid"
}

# wait_for WHAT SECONDS CMD...: retry CMD until it succeeds.
wait_for() {
  local what=$1 secs=$2; shift 2
  local end=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $end ]; then
      log "timed out waiting for $what"
      return 1
    fi
    sleep 0.1
  done
}

listening() { # NETNS PROTO(t|u) ADDR PORT
  in_ns "$1" ss -Hln"$2" "src $3 and sport = :$4" | grep -q .
}

# alive PID: running and not a zombie (our servers are reparented to init,
# which may reap them only later; a zombie has already exited).
alive() {
  local st
  [ -n "$1" ] && st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) && [ -n "$st" ] && [ "$st" != Z ]
}

kill_pid() {
  local pid=$1
  alive "$pid" || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 50); do alive "$pid" || return 0; sleep 0.05; done
  kill -KILL "$pid" 2>/dev/null || true
}

do_down() {
  set +e
  # Servers the lab started, by pidfile.
  if [ -d "$LAB_RUN/pids" ]; then
    for f in "$LAB_RUN"/pids/*.pid; do
      [ -e "$f" ] || continue
      kill_pid "$(cat "$f")"
      rm -f "$f"
    done
  fi
  # A `clat` a test left running in a lab namespace: end it by pid, so that
  # its TUN and control socket go with the lab.  Other processes are left
  # alone (they may belong to someone else sharing the machine); deleting a
  # namespace only unlinks its name, so `down` works with them still there.
  for n in "${NAMESPACES[@]}"; do
    if ip netns list | grep -qw "^$n"; then
      for pid in $(ip netns pids "$n" 2>/dev/null); do
        if [ "$(basename "$(readlink "/proc/$pid/exe" 2>/dev/null)")" = clat ]; then kill_pid "$pid"; fi
      done
      ip netns del "$n" 2>/dev/null
    fi
  done
  # A veth whose peer was in a namespace dies with it; just in case.
  for l in ph0 pl0 pl1 in0; do ip link del "$l" 2>/dev/null; done
  rm -rf /etc/netns/phone
  rm -rf "$LAB_RUN"
  set -e
  return 0
}

write_plat_named() {
  local d=$LAB_RUN/named-plat
  mkdir -p "$d"
  cat >"$d/named.conf" <<CONF
// DNS64 of the lab (plat).  Authoritative for ipv4only.arpa and lab.example
// itself so that dns64 synthesises AAAA for them (RFC 7050 discovery and the
// A-only names the tests use), recursive for clients.
options {
  directory "$d";
  pid-file "$d/named.pid";
  session-keyfile "$d/session.key";
  managed-keys-directory "$d";
  listen-on { none; };
  listen-on-v6 { 2001:db8:1::53; };
  recursion yes;
  allow-recursion { any; };
  allow-query { any; };
  allow-query-cache { any; };
  dnssec-validation no;
  // Answers over 512 bytes on UDP are truncated (TC) even with EDNS, so the
  // CLAT's DNS relay must retry over TCP for big.lab.example.
  max-udp-size 512;
  edns-udp-size 512;
  dns64 2001:db8:64::/96 { clients { any; }; };
  // Never talk to the real root servers: the lab's root is on inet.
  notify no;
};
controls { };
logging { channel default_stderr { stderr; severity info; }; category default { default_stderr; }; };
zone "." { type hint; file "root.hint"; };
zone "ipv4only.arpa" { type primary; file "$LAB_RUN/zones/ipv4only.arpa.zone"; };
zone "lab.example" { type primary; file "$LAB_RUN/zones/lab.example.zone"; };
CONF
  cat >"$d/root.hint" <<'Z'
.           3600000 NS a.root.
a.root.     3600000 A  203.0.113.53
Z
}

write_inet_named() {
  local d=$LAB_RUN/named-inet
  mkdir -p "$d"
  cat >"$d/named.conf" <<CONF
// An IPv4-only DNS server on the "internet": authoritative for lab.example
// (and the lab's own root, so that plat's recursion never leaves the lab).
options {
  directory "$d";
  pid-file "$d/named.pid";
  session-keyfile "$d/session.key";
  managed-keys-directory "$d";
  listen-on { 203.0.113.53; };
  listen-on-v6 { none; };
  recursion no;
  allow-query { any; };
  dnssec-validation no;
  max-udp-size 512;
  edns-udp-size 512;
  notify no;
};
controls { };
logging { channel default_stderr { stderr; severity info; }; category default { default_stderr; }; };
zone "." { type primary; file "$LAB_RUN/zones/root.zone"; };
zone "lab.example" { type primary; file "$LAB_RUN/zones/lab.example.zone"; };
CONF
}

write_zones() {
  local z=$LAB_RUN/zones
  mkdir -p "$z"
  cat >"$z/root.zone" <<'Z'
$TTL 300
.        IN SOA a.root. hostmaster.lab.example. 1 3600 600 86400 300
.        IN NS  a.root.
a.root.  IN A   203.0.113.53
example. IN NS  a.root.
Z
  cat >"$z/ipv4only.arpa.zone" <<'Z'
$TTL 300
@  IN SOA ns.lab.example. hostmaster.lab.example. 1 3600 600 86400 300
@  IN NS  ns.lab.example.
@  IN A   192.0.0.170
@  IN A   192.0.0.171
Z
  {
    cat <<'Z'
$TTL 300
@        IN SOA ns.lab.example. hostmaster.lab.example. 1 3600 600 86400 300
@        IN NS   ns
ns       IN A    203.0.113.53
v4only   IN A    203.0.113.10
v4only2  IN A    203.0.113.11
dual     IN A    203.0.113.10
dual     IN AAAA 2001:db8:2::10
Z
    # 40 A records: ~660 bytes of answer, more than 512, so UDP truncates.
    for i in $(seq 100 139); do echo "big      IN A    203.0.113.$i"; done
  } >"$z/lab.example.zone"
}

write_tayga() {
  local d=$LAB_RUN/tayga
  mkdir -p "$d"
  cat >"$d/tayga.conf" <<CONF
tun-device nat64
ipv4-addr 198.51.100.1
prefix 2001:db8:64::/96
dynamic-pool 198.51.100.0/24
data-dir $d
CONF
}

make_files() {
  local w=$LAB_RUN/www
  mkdir -p "$w"
  head -c 1048576 /dev/urandom >"$w/1M"
  head -c 104857600 /dev/urandom >"$w/100M"
  echo "hello from 203.0.113.10" >"$w/index.html"
  (cd "$w" && sha256sum 1M 100M index.html >SHA256SUMS)
}

do_up() {
  need_root
  check_tools
  do_down
  trap 'rc=$?; log "up failed (exit $rc), tearing down"; for f in "$LAB_RUN"/logs/*.log; do [ -e "$f" ] && { echo "--- $f" >&2; tail -n 20 "$f" >&2; }; done; do_down; exit $rc' ERR
  mkdir -p "$LAB_RUN"/{pids,logs}

  for n in "${NAMESPACES[@]}"; do
    ip netns add "$n"
    in_ns "$n" ip link set lo up
    # New addresses usable at once: no duplicate address detection.
    in_ns "$n" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
    in_ns "$n" sysctl -qw net.ipv6.conf.all.accept_ra=0 net.ipv6.conf.default.accept_ra=0
  done

  # --- links
  ip link add ph0 netns phone type veth peer name pl0 netns plat
  ip link add pl1 netns plat type veth peer name in0 netns inet

  # --- phone: IPv6 only
  in_ns phone sysctl -qw net.ipv4.ping_group_range="0 2147483647"
  in_ns phone sysctl -qw net.ipv6.icmp.ratelimit=0
  in_ns phone ip -6 addr add 2001:db8:1::2/64 dev ph0 nodad
  in_ns phone ip link set ph0 up
  in_ns phone ip -6 route add default via 2001:db8:1::1 dev ph0
  mkdir -p /etc/netns/phone
  echo "nameserver 192.0.0.6" >/etc/netns/phone/resolv.conf

  # --- plat: router, NAT64, DNS64
  in_ns plat sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
  in_ns plat sysctl -qw net.ipv4.icmp_ratelimit=0 net.ipv6.icmp.ratelimit=0
  in_ns plat sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
  in_ns plat ip -6 addr add 2001:db8:1::1/64 dev pl0 nodad
  in_ns plat ip -6 addr add 2001:db8:1::53/64 dev pl0 nodad
  in_ns plat ip link set pl0 up
  in_ns plat ip addr add 192.0.2.1/29 dev pl1
  in_ns plat ip link set pl1 up
  in_ns plat ip route add 203.0.113.0/24 via 192.0.2.2
  in_ns plat ip route add unreachable 192.0.2.64/26

  write_tayga
  in_ns plat tayga --mktun -c "$LAB_RUN/tayga/tayga.conf" >/dev/null
  in_ns plat ip link set nat64 up
  in_ns plat ip route add 2001:db8:64::/96 dev nat64
  in_ns plat ip route add 198.51.100.0/24 dev nat64
  start_bg tayga plat tayga -c "$LAB_RUN/tayga/tayga.conf" --nodetach

  # --- inet: IPv4-only servers
  in_ns inet sysctl -qw net.ipv4.icmp_ratelimit=0
  in_ns inet ip addr add 192.0.2.2/29 dev in0
  in_ns inet ip link set in0 up
  in_ns inet ip route add default via 192.0.2.1
  local sdev=srv0
  if ! in_ns inet ip link add srv0 type dummy 2>/dev/null; then
    sdev=lo   # kernels without the dummy module: /32s on loopback work the same
  fi
  in_ns inet ip link set "$sdev" up
  for a in 203.0.113.10 203.0.113.11 203.0.113.53; do
    in_ns inet ip addr add "$a/32" dev "$sdev"
  done

  write_zones
  write_plat_named
  write_inet_named
  make_files
  for d in named-plat named-inet; do
    named-checkconf "$LAB_RUN/$d/named.conf"
  done
  start_bg named-plat plat named -f -c "$LAB_RUN/named-plat/named.conf"
  start_bg named-inet inet named -f -c "$LAB_RUN/named-inet/named.conf"

  local S=$HERE/servers.py
  start_bg http inet "$PY" "$S" http 203.0.113.10 80 "$LAB_RUN/www"
  start_bg udpecho10 inet "$PY" "$S" udpecho 203.0.113.10 7
  start_bg udpecho11 inet "$PY" "$S" udpecho 203.0.113.11 7
  start_bg tcpecho inet "$PY" "$S" tcpecho 203.0.113.10 7
  start_bg tcpreset inet "$PY" "$S" tcpreset 203.0.113.10 7001
  start_bg tcphalfclose inet "$PY" "$S" tcphalfclose 203.0.113.10 7002
  start_bg tcpsink inet "$PY" "$S" tcpsink 203.0.113.10 7003
  start_bg iperf3 inet iperf3 -s -B 203.0.113.10 -p 5201

  wait_for "http :80" 10 listening inet t 203.0.113.10 80
  wait_for "tcp echo :7" 10 listening inet t 203.0.113.10 7
  wait_for "tcp reset :7001" 10 listening inet t 203.0.113.10 7001
  wait_for "tcp half-close :7002" 10 listening inet t 203.0.113.10 7002
  wait_for "tcp sink :7003" 10 listening inet t 203.0.113.10 7003
  wait_for "udp echo .10:7" 10 listening inet u 203.0.113.10 7
  wait_for "udp echo .11:7" 10 listening inet u 203.0.113.11 7
  wait_for "iperf3 :5201" 10 listening inet t 203.0.113.10 5201
  wait_for "inet named" 20 in_ns inet dig +time=1 +tries=1 @203.0.113.53 v4only.lab.example A
  wait_for "plat named (DNS64)" 20 in_ns plat dig +time=1 +tries=1 @2001:db8:1::53 ipv4only.arpa AAAA
  wait_for "NAT64 path" 10 in_ns phone ping -6 -c1 -W1 2001:db8:64::203.0.113.10
  trap - ERR
  log "up: namespaces ${NAMESPACES[*]} ready (runtime dir $LAB_RUN)"
}

do_status() {
  local rc=0
  for n in "${NAMESPACES[@]}"; do
    if ip netns list | grep -qw "^$n"; then echo "netns $n: present"; else echo "netns $n: MISSING"; rc=1; fi
  done
  if [ -d "$LAB_RUN/pids" ]; then
    for f in "$LAB_RUN"/pids/*.pid; do
      [ -e "$f" ] || continue
      local name pid
      name=$(basename "$f" .pid); pid=$(cat "$f")
      if alive "$pid"; then echo "$name: running (pid $pid)"; else echo "$name: DEAD (pid $pid)"; rc=1; fi
    done
  else
    echo "no servers (runtime dir $LAB_RUN absent)"; rc=1
  fi
  return $rc
}

case "${1:-}" in
  up) do_up ;;
  down) need_root; do_down; log "down" ;;
  status) do_status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
