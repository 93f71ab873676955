#!/usr/bin/env python3
"""Assembles the unsigned APK from the parts the SDK-less build made.

Inputs: the resource APK `aapt2 link` wrote (manifest, resources.arsc, res/), the dex files
from D8, and one `libclat.so` per ABI. Output: an unsigned APK, laid out the way Android loads
it best, ready for `apksigner sign`:

- `resources.arsc` stored uncompressed and 4-byte aligned: required for targetSdk 30+ (the
  platform maps it; PackageManager refuses a compressed one: "Targeting R+ (version 30 and
  above) requires the resources.arsc of installed APKs to be stored uncompressed and aligned on
  a 4-byte boundary", developer.android.com/about/versions/11/behavior-changes-11).
- `lib/<abi>/libclat.so` stored uncompressed with its data at a 16 KiB boundary, so that the
  dynamic linker maps it straight from the APK (the manifest says `extractNativeLibs="false"`,
  as AGP writes it for `jniLibs.useLegacyPackaging = false`) on devices with 4 KiB and 16 KiB
  pages (developer.android.com/guide/practices/page-sizes). Debian's zipalign aligns to 4 KiB.
- The padding is an "Android ZIP alignment" extra field (header ID 0xD935: the alignment as a
  16-bit value, then zeros), which `apksigner` reads back: it re-pads stored entries when it
  signs, and keeps the alignment this field asks for instead of its 4 KiB default for `.so`.
- Entries in a fixed order with a fixed timestamp: the same inputs give the same bytes.

Usage: package_apk.py --resources base.apk --dex DIR --libs DIR --out unsigned.apk
where DIR of --libs holds <abi>/libclat.so.
"""
from __future__ import annotations

import argparse
import struct
import sys
import zipfile
from pathlib import Path

# ZIP dates cannot be before 1980; AGP uses this fixed date for reproducible APKs too.
FIXED_DATE = (1981, 1, 1, 1, 1, 2)
ALIGNMENT_EXTRA_ID = 0xD935
LOCAL_HEADER_LEN = 30
LIB_ALIGNMENT = 16384
STORED_ALIGNMENT = 4


def alignment_extra(header_offset: int, name: bytes, align: int) -> bytes:
    """The 0xD935 extra field whose padding puts the entry's data at a multiple of `align`."""
    fixed = LOCAL_HEADER_LEN + len(name) + 6  # 6: the field's ID, size and alignment value
    pad = (-(header_offset + fixed)) % align
    return struct.pack("<HHH", ALIGNMENT_EXTRA_ID, 2 + pad, align) + b"\0" * pad


def add(zf: zipfile.ZipFile, name: str, data: bytes, compress: bool, align: int = 1) -> None:
    info = zipfile.ZipInfo(name, date_time=FIXED_DATE)
    info.create_system = 0
    info.external_attr = 0
    if compress:
        info.compress_type = zipfile.ZIP_DEFLATED
    else:
        info.compress_type = zipfile.ZIP_STORED
        if align > 1:
            info.extra = alignment_extra(zf.fp.tell(), name.encode(), align)
    zf.writestr(info, data, compresslevel=9 if compress else None)
    # The central directory needs no padding: keep only the alignment value there.
    if info.extra:
        info.extra = struct.pack("<HHH", ALIGNMENT_EXTRA_ID, 2, align)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--resources", required=True, type=Path, help="the APK written by aapt2 link")
    ap.add_argument("--dex", required=True, type=Path, help="directory with classes*.dex")
    ap.add_argument("--libs", required=True, type=Path, help="directory with <abi>/libclat.so")
    ap.add_argument("--out", required=True, type=Path)
    args = ap.parse_args()

    dexes = sorted(args.dex.glob("classes*.dex"), key=lambda p: (len(p.name), p.name))
    libs = sorted(args.libs.glob("*/libclat.so"))
    if not dexes:
        print(f"package_apk: no classes*.dex in {args.dex}", file=sys.stderr)
        return 1
    if not libs:
        print(f"package_apk: no <abi>/libclat.so in {args.libs}", file=sys.stderr)
        return 1

    with zipfile.ZipFile(args.resources) as res, zipfile.ZipFile(args.out, "w") as out:
        names = res.namelist()
        if "AndroidManifest.xml" not in names or "resources.arsc" not in names:
            print(f"package_apk: {args.resources} lacks the manifest or resources.arsc", file=sys.stderr)
            return 1
        add(out, "AndroidManifest.xml", res.read("AndroidManifest.xml"), compress=True)
        for dex in dexes:
            add(out, dex.name, dex.read_bytes(), compress=True)
        add(out, "resources.arsc", res.read("resources.arsc"), compress=False, align=STORED_ALIGNMENT)
        for name in sorted(n for n in names if n not in ("AndroidManifest.xml", "resources.arsc")):
            stored = res.getinfo(name).compress_type == zipfile.ZIP_STORED
            add(out, name, res.read(name), compress=not stored, align=STORED_ALIGNMENT)
        for lib in libs:
            add(out, f"lib/{lib.parent.name}/libclat.so", lib.read_bytes(), compress=False, align=LIB_ALIGNMENT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
