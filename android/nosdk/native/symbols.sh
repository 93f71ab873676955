#!/bin/bash
# symbols.sh -- what libclat.so imports from bionic, against bionic-symbols.tsv
#
#   symbols.sh imports LIB      list "symbol U|w" for each undefined dynamic
#                               symbol (w = weak; version suffixes dropped)
#   symbols.sh check LIB [NAME] fail (exit 1) listing every import that is not
#                               in the table, or is non-weak and newer than
#                               MIN_SDK; else print a one-line summary
#   symbols.sh unused LIB...    fail listing table lines that none of the
#                               LIBs imports (the table must stay exact)
#   symbols.sh stubs LIB|- DIR  write DIR/libc.so, libm.so, libdl.so,
#                               liblog.so defining exactly LIB's imports
#                               (from the table's library column); with "-"
#                               they are empty. Needs NOSDK_CLANG_TARGET.
#
# The stubs exist only for the link: at run time the device's own libraries
# are loaded. They carry the SONAME the device's library has, so NEEDED reads
# libc.so etc. Their symbols are unversioned, so references are too (bionic
# binds an unversioned reference to the default version of the symbol).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
table=$here/bionic-symbols.tsv

imports() {
  llvm-nm -D --undefined-only "$1" | awk '{ n = $2; sub(/@.*/, "", n); print n, ($1 == "U" ? "U" : "w") }' | sort -u
}

check() {
  imports "$1" | awk -v min="${MIN_SDK:?}" -v lib="${2:-$1}" -F'\t' '
    FNR == NR { if ($0 !~ /^#/ && NF >= 4) { libof[$1] = $2; api[$1] = $3; kind[$1] = $4 } ; next }
    {
      split($0, f, " "); s = f[1]; weak = (f[2] == "w"); n++
      if (!(s in libof)) { bad = bad sprintf("  %s%s: not in bionic-symbols.tsv\n", s, weak ? " (weak)" : ""); next }
      if (libof[s] !~ /^lib(c|m|dl|log)$/ || api[s] !~ /^[0-9]+$/ || kind[s] !~ /^(func|data:(ptr|[0-9]+))$/) {
        bad = bad sprintf("  %s: malformed table line (library %s, api %s, kind %s)\n", s, libof[s], api[s], kind[s]); next
      }
      if (api[s] + 0 > top) { top = api[s] + 0; topsym = s (weak ? ", weak" : "") }
      if (!weak && api[s] + 0 > strong) { strong = api[s] + 0; strongsym = s }
      if (!weak && api[s] + 0 > min + 0) bad = bad sprintf("  %s: added in API %s, above minSdk %s (and not weak)\n", s, api[s], min)
    }
    END {
      if (bad != "") { printf "symbols.sh: %s imports symbols that cannot be used at minSdk %s:\n%s", lib, min, bad > "/dev/stderr"; exit 1 }
      printf "%s: %d imports, all in bionic-symbols.tsv; highest API level %d (%s), non-weak %d (%s); minSdk %s\n", lib, n, top, topsym, strong, strongsym, min
    }' "$table" -
}

unused() {
  local stale
  stale=$(for lib in "$@"; do imports "$lib"; done | awk '
    FNR == NR { used[$1] = 1; next }
    !/^#/ && NF >= 4 && !($1 in used) { print "  " $1 }' - FS='\t' "$table")
  [ -z "$stale" ] || { printf 'symbols.sh: bionic-symbols.tsv lists symbols no library imports any more; delete their lines:\n%s\n' "$stale" >&2; return 1; }
}

stubs() {
  local src=$1 dir=$2 ptr=8
  case ${NOSDK_CLANG_TARGET:?} in armv7a-*|i686-*) ptr=4 ;; esac
  mkdir -p "$dir"
  for l in libc libm libdl liblog; do : > "$dir/$l.S"; done
  if [ "$src" != - ]; then
    # One assembly definition per import: a function, or a data object with
    # the size the table gives ("data:ptr" = one pointer).
    imports "$src" | awk -v dir="$dir" -v ptr="$ptr" -F'\t' '
      FNR == NR { if ($0 !~ /^#/ && NF >= 4) { libof[$1] = $2; kind[$1] = $4 } ; next }
      {
        split($0, f, " "); s = f[1]; out = dir "/" libof[s] ".S"
        if (kind[s] ~ /^data:/) {
          size = substr(kind[s], 6); if (size == "ptr") size = ptr
          printf ".data\n.globl %s\n.type %s, %%object\n.size %s, %d\n.p2align 3\n%s:\n.zero %d\n", s, s, s, size, s, size >> out
        } else {
          printf ".text\n.globl %s\n.type %s, %%function\n%s:\n.zero 4\n", s, s, s >> out
        }
      }' "$table" -
  fi
  for l in libc libm libdl liblog; do
    clang --target="$NOSDK_CLANG_TARGET" -fuse-ld=lld -nostdlib -shared -Wl,-soname,$l.so \
      -Wl,--hash-style=both "$dir/$l.S" -o "$dir/$l.so"
  done
}

case ${1:-} in
  imports) imports "$2" ;;
  check) check "$2" "${3:-}" ;;
  unused) shift; unused "$@" ;;
  stubs) stubs "$2" "$3" ;;
  *) echo "usage: $0 imports LIB | check LIB [NAME] | unused LIB... | stubs LIB|- DIR" >&2; exit 2 ;;
esac
