#!/usr/bin/env bash
# Installs the .deb that build-deb.sh made on this Debian machine and checks
# what a user gets: the files (listed), `clat --help`/`--version`, the man
# pages, the completions, `systemd-analyze verify` of the installed unit,
# the unit not enabled; then the installed /usr/bin/clat in the lab, run as
# the unit runs it (tests/e2e/test_service.py) and `clat status --json`;
# then `dpkg -r` (files gone, conffiles kept) and `dpkg --purge`.
#
# Usage (root): packaging/test-deb.sh target/debian/clat_*.deb
# It uses the lab (network namespaces phone, plat, inet): on a shared
# machine, run it under the lab's lock (flock /tmp/clat-lab.lock ...).
set -euo pipefail
cd "$(dirname "$0")/.."
deb=${1:?usage: test-deb.sh PATH.deb}

fail() { echo "test-deb: $*" >&2; exit 1; }

if dpkg -s clat >/dev/null 2>&1; then
    fail "a clat package is installed already; remove it first (dpkg -r clat)"
fi
trap 'dpkg --purge clat >/dev/null 2>&1 || true' EXIT

echo "== package"
dpkg-deb --info "$deb" | sed -n '/Package:/,$p'
dpkg -i "$deb"

echo "== installed files"
dpkg -L clat | sort | while read -r f; do [ -f "$f" ] && echo "$f"; done
for f in /usr/bin/clat /usr/lib/systemd/system/clat.service \
         /usr/lib/NetworkManager/conf.d/clat.conf /etc/default/clat \
         /usr/share/man/man1/clat.1.gz /usr/share/man/man1/clat-run.1.gz \
         /usr/share/man/man1/clat-status.1.gz /usr/share/man/man1/clat-discover.1.gz \
         /usr/share/man/man1/clat-xlat.1.gz \
         /usr/share/bash-completion/completions/clat /usr/share/zsh/vendor-completions/_clat \
         /usr/share/fish/vendor_completions.d/clat.fish /usr/share/doc/clat/status-json.md; do
    dpkg -L clat | grep -qx "$f" || fail "$f is not in the package"
    [ -f "$f" ] || fail "$f is listed but not installed"
done

echo "== the binary"
/usr/bin/clat --help | grep -q '^  run ' || fail "clat --help lists no run command"
pkg_version=$(dpkg-query -W -f '${Version}' clat)
bin_version=$(/usr/bin/clat --version)
[[ "$pkg_version" == "${bin_version#clat } "* || "$pkg_version" == "${bin_version#clat }-"* ]] \
    || fail "package $pkg_version but binary says $bin_version"
echo "$bin_version (package $pkg_version)"

echo "== man pages"
man -l /usr/share/man/man1/clat-run.1.gz 2>/dev/null | grep -q -- '--pref64' \
    || fail "clat-run(1) does not document --pref64"
man -l /usr/share/man/man1/clat-status.1.gz 2>/dev/null | grep -q -- '--json' \
    || fail "clat-status(1) does not document --json"
man -l /usr/share/man/man1/clat.1.gz 2>/dev/null | sed -n '1,12p'

echo "== completions"
out=$(bash -c 'source /usr/share/bash-completion/completions/clat
COMP_WORDS=(clat status --); COMP_CWORD=2; COMP_LINE="clat status --"; COMP_POINT=${#COMP_LINE}
_clat clat -- status; printf "%s\n" "${COMPREPLY[@]}"')
grep -qx -- '--json' <<<"$out" || fail "bash completion of 'clat status --' offers no --json: $out"
echo "bash: clat status -- => $(tr '\n' ' ' <<<"$out")"

echo "== unit"
cmp /usr/lib/systemd/system/clat.service packaging/clat.service \
    || fail "the installed unit is not packaging/clat.service"
# Needs no running systemd (works in a container); checks the ExecStart=
# binary and the Documentation= man pages too, hence after installation.
systemd-analyze verify /usr/lib/systemd/system/clat.service
[ ! -e /etc/systemd/system/multi-user.target.wants/clat.service ] \
    || fail "the unit was enabled on installation"
echo "systemd-analyze verify: ok; not enabled"

echo "== the installed binary in the lab"
CLAT_BIN=/usr/bin/clat python3 -m pytest -q -rfE \
    tests/e2e/test_service.py tests/e2e/test_run.py::test_status_json_and_summary

echo "== removal"
dpkg -r clat
[ ! -e /usr/bin/clat ] || fail "/usr/bin/clat left after dpkg -r"
[ ! -e /usr/lib/systemd/system/clat.service ] || fail "clat.service left after dpkg -r"
[ -e /etc/default/clat ] || fail "dpkg -r removed the conffile /etc/default/clat"
dpkg --purge clat
[ ! -e /etc/default/clat ] || fail "/etc/default/clat left after dpkg --purge"
echo "test-deb: ok"
