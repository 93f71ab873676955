#!/usr/bin/env bash
# Installs the Debian packages the lab needs, only those that are missing.
# Why a separate script: CI and tests/demo.sh run it on fresh machines; the lab
# itself (lab.sh) must not silently pull packages while a test session runs.
set -euo pipefail

# package -> a command it provides (used to decide whether it is missing)
declare -A PKGS=(
  [tayga]=tayga
  [bind9]=named
  [bind9-dnsutils]=dig
  [iperf3]=iperf3
  [curl]=curl
  [iproute2]=ip
  [iputils-ping]=ping
  # tests/e2e/test_path.py: the hops of the IPv6 path as IPv4 apps see them
  [traceroute]=traceroute
  [mtr-tiny]=mtr
  [python3]=python3
  [procps]=sysctl
  [kmod]=modprobe
  [util-linux]=prlimit
  # host firewalls for tests/e2e/test_firewall.py (nft; iptables-nft and
  # iptables-legacy; firewalld on a private D-Bus system bus in phone)
  [nftables]=nft
  [iptables]=iptables-legacy
  [firewalld]=firewalld
  [dbus-daemon]=dbus-daemon
  [maven]=mvn
  [openjdk-17-jdk-headless]=javac
  [systemd]=systemd-analyze
  [man-db]=man
)

missing=()
for pkg in "${!PKGS[@]}"; do
  cmd=${PKGS[$pkg]}
  if ! command -v "$cmd" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$cmd" ] && [ ! -x "/sbin/$cmd" ]; then
    missing+=("$pkg")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all lab packages present"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Keep Debian's maintainer scripts from starting a system-wide named (or
# iperf3 daemon) in the root namespace: the lab runs its own instances inside
# namespaces and a root-namespace named on :53 would only confuse debugging.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod +x "$policy"
  created_policy=1
fi
cleanup() { if [ "$created_policy" = 1 ]; then rm -f "$policy"; fi; }
trap cleanup EXIT

apt-get update
apt-get install -y --no-install-recommends "${missing[@]}"

# If a service manager started named anyway, stop it (the lab does not need it).
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet named 2>/dev/null; then
  systemctl stop named || true
  systemctl disable named || true
fi
# firewalld is for the lab's phone namespace only: it must never take over
# this machine's own firewall, now or at the next boot.
if command -v systemctl >/dev/null 2>&1 && systemctl is-enabled --quiet firewalld 2>/dev/null; then
  systemctl disable --now firewalld || true
fi
echo "install-deps: done"
