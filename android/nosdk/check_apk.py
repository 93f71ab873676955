#!/usr/bin/env python3
"""Checks an APK of the app the way Android would refuse it, with the platform's own tools.

Fails (exit 1, one line per problem) unless:
- `apksigner verify` accepts it and says it is signed with APK Signature Scheme v2 and v3
  (v2 is what Android 7.0, our minSdk 24, checks; v3 allows key rotation from Android 9);
- `aapt2 dump badging` shows the package, minSdk and targetSdk of app.properties, exactly the
  ABIs arm64-v8a, armeabi-v7a and x86_64, and a launchable activity;
- every `native` method in the dex has exactly one JNI export (short or long name, JNI
  specification "Resolving Native Method Names") in the library of every ABI, and the library
  exports no `Java_*` function that no native method declares (a renamed Kotlin method would
  otherwise fail only when called: UnsatisfiedLinkError on a device);
- each `lib/<abi>/libclat.so` is stored uncompressed with its data at a 16 KiB boundary and
  `resources.arsc` is stored and 4-byte aligned (and Debian's `zipalign -c -p 4` agrees);
- the ELF checks of `native/check-elf.sh` pass for each library (NEEDED, SONAME, TEXTREL,
  glibc-versioned symbols, 16 KiB LOAD alignment, machine per ABI).
Prints the APK's size and each library's size.

Usage: check_apk.py APK APP_PROPERTIES
"""
from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ABIS = ("arm64-v8a", "armeabi-v7a", "x86_64")
LIB_ALIGNMENT = 16384

sys.path.insert(0, str(HERE))
from prepare_manifest import read_properties  # noqa: E402


class Checks:
    def __init__(self) -> None:
        self.problems: list[str] = []

    def expect(self, ok: bool, what: str) -> None:
        print(("ok    " if ok else "FAIL  ") + what)
        if not ok:
            self.problems.append(what)


def run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True)


def jni_mangle(s: str) -> str:
    """JNI name mangling: `_` -> `_1`, `;` -> `_2`, `[` -> `_3`, `/` -> `_`, non-ASCII -> `_0xxxx`."""
    out = []
    for ch in s:
        if ch == "/":
            out.append("_")
        elif ch == "_":
            out.append("_1")
        elif ch == ";":
            out.append("_2")
        elif ch == "[":
            out.append("_3")
        elif ch.isascii() and ch.isalnum():
            out.append(ch)
        else:
            out.append(f"_0{ord(ch):04x}")
    return "".join(out)


def native_methods(dex_files: list[Path]) -> list[tuple[str, str, str]]:
    """(class internal name, method name, descriptor) of every native method, from dexdump."""
    found = []
    for dex in dex_files:
        p = run("dexdump", str(dex))
        if p.returncode != 0:
            raise RuntimeError(f"dexdump {dex}: {p.stderr.strip()}")
        cls = name = desc = None
        for line in p.stdout.splitlines():
            if m := re.match(r"\s+Class descriptor\s+: 'L(.+);'", line):
                cls = m.group(1)
            elif m := re.match(r"\s+name\s+: '(.+)'", line):
                name = m.group(1)
            elif m := re.match(r"\s+type\s+: '(.+)'", line):
                desc = m.group(1)
            elif m := re.match(r"\s+access\s+: 0x([0-9a-f]+)", line):
                if int(m.group(1), 16) & 0x0100 and cls and name and desc:  # ACC_NATIVE
                    found.append((cls, name, desc))
    return found


def jni_exports(lib: Path) -> set[str]:
    """Defined, exported functions named Java_* in the library's dynamic symbol table."""
    p = run("readelf", "--dyn-syms", "-W", str(lib))
    if p.returncode != 0:
        raise RuntimeError(f"readelf {lib}: {p.stderr.strip()}")
    names = set()
    for line in p.stdout.splitlines():
        f = line.split()
        # Num: Value Size Type Bind Vis Ndx Name
        if len(f) >= 8 and f[3] == "FUNC" and f[4] in ("GLOBAL", "WEAK") and f[6] != "UND":
            if f[7].startswith("Java_"):
                names.add(f[7].split("@")[0])
    return names


def check_jni(checks: Checks, natives: list[tuple[str, str, str]], abi: str, lib: Path) -> None:
    exports = jni_exports(lib)
    claimed = set()
    for cls, name, desc in natives:
        short = f"Java_{jni_mangle(cls)}_{jni_mangle(name)}"
        long = f"{short}__{jni_mangle(desc[1:desc.index(')')])}"
        hits = [n for n in (short, long) if n in exports]
        checks.expect(len(hits) == 1, f"{abi}: {cls.replace('/', '.')}.{name}{desc} -> {hits[0] if len(hits) == 1 else hits or 'no export'}")
        claimed.update(hits)
    for extra in sorted(exports - claimed):
        checks.expect(False, f"{abi}: {extra} exported but no native method declares it")


def check_alignment(checks: Checks, apk: Path) -> None:
    with zipfile.ZipFile(apk) as zf, apk.open("rb") as f:
        for info in zf.infolist():
            if info.filename.endswith(".so") or info.filename == "resources.arsc":
                f.seek(info.header_offset + 26)
                name_len, extra_len = int.from_bytes(f.read(2), "little"), int.from_bytes(f.read(2), "little")
                data = info.header_offset + 30 + name_len + extra_len
                align = LIB_ALIGNMENT if info.filename.endswith(".so") else 4
                checks.expect(
                    info.compress_type == zipfile.ZIP_STORED and data % align == 0,
                    f"{info.filename}: stored, data at offset {data} ({align}-aligned)",
                )
    p = run("zipalign", "-c", "-p", "4", str(apk))
    checks.expect(p.returncode == 0, "zipalign -c -p 4 (Debian's zipalign: 4-byte entries, 4 KiB .so)")


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    apk, props = Path(sys.argv[1]), read_properties(Path(sys.argv[2]))
    checks = Checks()

    p = run("apksigner", "verify", "--verbose", "--min-sdk-version", props["minSdk"], str(apk))
    checks.expect(p.returncode == 0, f"apksigner verify: {p.stderr.strip() or 'accepted'}")
    for scheme in ("v2", "v3"):
        ok = re.search(rf"Verified using {scheme} scheme \(APK Signature Scheme {scheme}\): true", p.stdout)
        checks.expect(ok is not None, f"signed with APK Signature Scheme {scheme}")

    p = run("aapt2", "dump", "badging", str(apk))
    badging = p.stdout
    checks.expect(p.returncode == 0, "aapt2 dump badging")
    checks.expect(f"package: name='{props['applicationId']}' versionCode='{props['versionCode']}' versionName='{props['versionName']}'" in badging,
                  f"badging: package {props['applicationId']} {props['versionCode']} {props['versionName']}")
    checks.expect(f"sdkVersion:'{props['minSdk']}'" in badging, f"badging: minSdk {props['minSdk']}")
    checks.expect(f"targetSdkVersion:'{props['targetSdk']}'" in badging, f"badging: targetSdk {props['targetSdk']}")
    abis = re.search(r"^native-code: (.*)$", badging, re.M)
    shown = sorted(re.findall(r"'([^']+)'", abis.group(1))) if abis else []
    checks.expect(shown == sorted(ABIS), f"badging: native-code {shown}")
    checks.expect(re.search(r"^launchable-activity: name='[^']+'", badging, re.M) is not None, "badging: launchable activity")

    check_alignment(checks, apk)

    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(apk) as zf:
        zf.extractall(tmp, [n for n in zf.namelist() if n.endswith(".dex") or n.startswith("lib/")])
        try:
            natives = native_methods(sorted(Path(tmp).glob("classes*.dex")))
        except RuntimeError as e:
            checks.expect(False, str(e))
            natives = []
        checks.expect(len(natives) > 0, f"dex: {len(natives)} native methods")
        libs = []
        for abi in ABIS:
            lib = Path(tmp, "lib", abi, "libclat.so")
            checks.expect(lib.is_file(), f"lib/{abi}/libclat.so present")
            if lib.is_file():
                try:
                    check_jni(checks, natives, abi, lib)
                except RuntimeError as e:
                    checks.expect(False, f"{abi}: {e}")
                libs.append(lib)
        if libs:
            p = run("bash", str(HERE / "native" / "check-elf.sh"), *map(str, libs))
            print(p.stdout, end="")
            checks.expect(p.returncode == 0, f"ELF checks: {p.stderr.strip() or 'passed'}")
        print(f"APK {apk.name}: {apk.stat().st_size} bytes")
        for lib in libs:
            print(f"  lib/{lib.parent.name}/libclat.so: {lib.stat().st_size} bytes")

    if checks.problems:
        print(f"check_apk: {len(checks.problems)} problem(s) in {apk}", file=sys.stderr)
        return 1
    print(f"check_apk: {apk} passed every check")
    return 0


if __name__ == "__main__":
    sys.exit(main())
