#!/bin/bash
# check-elf.sh LIB...    -- is each libclat.so fit for an Android APK?
# check-elf.sh --self-test -- show that each check catches a bad library.
#
# LIB must sit in a directory named after its ABI (arm64-v8a, armeabi-v7a,
# x86_64), as in the APK's lib/<abi>/. Exit 1, with the reasons, unless
# every library:
#  - is a shared object for that ABI's ELF class and machine;
#  - NEEDs nothing but libc.so, libm.so, libdl.so, liblog.so (what the
#    platform guarantees to apps) and has the SONAME libclat.so;
#  - has no text relocations (DT_TEXTREL or the TEXTREL flag: refused by the
#    loader from API 23) and no glibc-versioned symbol (a host build);
#  - aligns every PT_LOAD to 16 KiB or more, with offset and address congruent
#    (loadable on devices with 16 KiB pages, required for Android 15+);
#  - carries its own unwinder (no _Unwind_* import: the device's libraries
#    do not provide one to apps);
#  - exports only JNI_OnLoad/JNI_OnUnload and Java_* functions.
# Prints each library's size and export list.
set -euo pipefail

command -v llvm-readelf >/dev/null || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends llvm >/dev/null
}

check_one() {
  local lib=$1 abi class machine errs=()
  abi=$(basename "$(dirname "$lib")")
  case $abi in
    arm64-v8a) class=ELF64 machine=AArch64 ;;
    armeabi-v7a) class=ELF32 machine=ARM ;;
    x86_64) class=ELF64 machine='Advanced Micro Devices X86-64' ;;
    *) echo "FAIL $lib: directory '$abi' is not an ABI (arm64-v8a, armeabi-v7a, x86_64)"; return 1 ;;
  esac
  local hdr dyn phdrs syms
  hdr=$(llvm-readelf -h "$lib") || { echo "FAIL $lib: not an ELF file"; return 1; }
  dyn=$(llvm-readelf -d "$lib")
  phdrs=$(llvm-readelf -l -W "$lib")
  syms=$(llvm-readelf --dyn-syms -W "$lib")

  grep -q "Class: *$class\$" <<<"$hdr" || errs+=("ELF class is not $class")
  grep -q "Machine: *$machine\$" <<<"$hdr" || errs+=("machine is not $machine: $(sed -n 's/.*Machine: *//p' <<<"$hdr")")
  grep -q 'Type: *DYN' <<<"$hdr" || errs+=("not a shared object")

  local needed bad_needed soname
  needed=$(sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' <<<"$dyn" | tr '\n' ' ')
  bad_needed=$(tr ' ' '\n' <<<"$needed" | grep -vxE 'lib(c|m|dl|log)\.so|' || true)
  [ -z "$bad_needed" ] || errs+=("NEEDED outside libc.so/libm.so/libdl.so/liblog.so: $(echo $bad_needed)")
  soname=$(sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p' <<<"$dyn")
  [ "$soname" = libclat.so ] || errs+=("SONAME is '${soname}', not libclat.so")
  ! grep -qE '\(TEXTREL\)|\(FLAGS\).*TEXTREL' <<<"$dyn" || errs+=("has text relocations (TEXTREL)")

  local glibc
  glibc=$( { grep -o '@GLIBC_[^ ]*' <<<"$syms"; llvm-readelf -V "$lib" | grep -o 'GLIBC_[0-9.A-Z_]*'; } | sort -u | tr '\n' ' ' || true)
  [ -z "$glibc" ] || errs+=("glibc-versioned symbols: $glibc")

  # PT_LOAD lines: Type Offset VirtAddr PhysAddr FileSiz MemSiz Flg... Align
  # (hex; bash arithmetic reads 0x..., mawk could not)
  local loads='' n=0 type off vaddr rest align
  while read -r type off vaddr rest; do
    [ "$type" = LOAD ] || continue
    n=$((n + 1)) align=$((${rest##* }))
    if [ $align -lt 16384 ]; then loads+="PT_LOAD at offset $off aligned to $align (< 16384); "
    elif [ $((off % align)) -ne $((vaddr % align)) ]; then loads+="PT_LOAD offset $off, address $vaddr not congruent mod $align; "
    fi
  done <<<"$phdrs"
  [ -z "$loads" ] || errs+=("$loads")
  [ $n -gt 0 ] || errs+=("no PT_LOAD segment")

  # --dyn-syms: Num Value Size Type Bind Vis Ndx Name
  local imports_unwind exports bad_exports
  imports_unwind=$(awk '$7 == "UND" && $8 ~ /^_Unwind_/ {print $8}' <<<"$syms" | tr '\n' ' ')
  [ -z "$imports_unwind" ] || errs+=("imports the unwinder instead of containing it: $imports_unwind")
  exports=$(awk '$5 ~ /GLOBAL|WEAK|UNIQUE/ && $7 != "UND" && $6 != "HIDDEN" {sub(/@.*/, "", $8); print $8}' <<<"$syms" | sort)
  bad_exports=$(grep -vE '^(JNI_OnLoad|JNI_OnUnload|Java_[A-Za-z0-9_]+)$' <<<"$exports" || true)
  [ -z "$bad_exports" ] || errs+=("exports more than JNI_OnLoad/Java_*: $(echo $bad_exports)")

  printf '%s: %s bytes, %s %s, NEEDED %s\n' "$lib" "$(stat -c %s "$lib")" "$class" "$machine" "${needed% }"
  printf '  exports (%d): %s\n' "$(grep -c . <<<"$exports" || true)" "$(echo $exports)"
  if [ ${#errs[@]} -gt 0 ]; then
    printf 'FAIL %s:\n' "$lib"; printf '  - %s\n' "${errs[@]}"
    return 1
  fi
  echo "  ok: SONAME libclat.so, no TEXTREL, no glibc symbol, PT_LOAD aligned >= 16 KiB, unwinder inside"
}

self_test() {
  # Small libraries, each broken in one way (and one right), built with
  # clang for x86_64 Android: every check must catch its case.
  local t fails=0
  t=$(mktemp -d); trap 'rm -rf "$t"' RETURN
  printf 'int Java_a_B_c(void) { return 1; }\n' > "$t/ok.c"
  printf 'int Java_a_B_c(void) { return 1; }\nint helper(void) { return 2; }\n' > "$t/export.c"
  printf '.text\n.globl Java_a_B_c\nJava_a_B_c:\n.quad Java_a_B_c\n' > "$t/textrel.s"
  printf '#include <stdio.h>\nint Java_a_B_c(void) { return puts("x"); }\n' > "$t/glibc.c"
  printf 'void _Unwind_Resume(void*);\nvoid Java_a_B_c(void* e) { _Unwind_Resume(e); }\n' > "$t/unwind.c"
  local android=(--target=x86_64-linux-android24 -fuse-ld=lld -nostdlib -shared -fPIC -O2)
  local good=(-Wl,-soname,libclat.so -Wl,-z,max-page-size=16384)
  build() { local name=$1; shift; mkdir -p "$t/$name/x86_64"; clang "$@" -o "$t/$name/x86_64/libclat.so"; }
  build ok "${android[@]}" "${good[@]}" "$t/ok.c"
  build soname "${android[@]}" -Wl,-soname,libother.so -Wl,-z,max-page-size=16384 "$t/ok.c"
  build pages4k "${android[@]}" -Wl,-soname,libclat.so -Wl,-z,max-page-size=4096 "$t/ok.c"
  build needed "${android[@]}" "${good[@]}" "$t/ok.c" -Wl,--no-as-needed "$t/soname/x86_64/libclat.so"
  build export "${android[@]}" "${good[@]}" "$t/export.c"
  build textrel "${android[@]}" "${good[@]}" -Wl,-z,notext "$t/textrel.s"
  build unwind "${android[@]}" "${good[@]}" "$t/unwind.c"
  build glibc -shared -fPIC -O2 "${good[@]}" "$t/glibc.c"      # a host (glibc) build
  build machine --target=aarch64-linux-android24 -fuse-ld=lld -nostdlib -shared -fPIC "${good[@]}" "$t/ok.c"
  for c in ok soname pages4k needed export textrel unwind glibc machine; do
    if check_one "$t/$c/x86_64/libclat.so" > "$t/$c.out"; then r=pass; else r=fail; fi
    want=fail; [ $c = ok ] && want=pass
    printf 'self-test %-8s %s (expected %s): %s\n' "$c" "$r" "$want" "$(grep -- '  - ' "$t/$c.out" | sed 's/^  - //' | tr '\n' ';' | cut -c1-150)"
    [ $r = $want ] || fails=$((fails + 1))
  done
  [ $fails -eq 0 ] || { echo "check-elf self-test: $fails case(s) not detected"; return 1; }
  echo "check-elf self-test: all cases detected"
}

if [ "${1:-}" = --self-test ]; then self_test; exit; fi
[ $# -gt 0 ] || { echo "usage: $0 LIB... | --self-test" >&2; exit 2; }
status=0
for lib in "$@"; do check_one "$lib" || status=1; done
[ $status -eq 0 ] || echo "check-elf: FAILED" >&2
exit $status
