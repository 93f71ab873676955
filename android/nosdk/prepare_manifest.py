#!/usr/bin/env python3
"""Writes the manifest `aapt2 link` needs from the app's source manifest.

The source manifest (android/app/src/main/AndroidManifest.xml) is written for AGP, which adds a
few things when it merges it. Without AGP this does the same, and nothing else:
- `package` from `applicationId` in app.properties (AGP takes it from `namespace`; aapt2 needs it);
- `android:extractNativeLibs="false"` on <application> (what AGP writes for
  `jniLibs.useLegacyPackaging = false`: libraries are mapped from the APK, not extracted);
- `tools:` attributes removed (AGP's manifest merger consumes them; they mean nothing on a device).
Version code and name and the SDK levels are passed to aapt2 on its command line.

Usage: prepare_manifest.py SOURCE_MANIFEST APP_PROPERTIES OUT
"""
from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ANDROID = "http://schemas.android.com/apk/res/android"
TOOLS = "http://schemas.android.com/tools"


def read_properties(path: Path) -> dict[str, str]:
    """`key=value` lines; `#` comments and blank lines skipped (the subset app.properties uses)."""
    props = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            if not sep:
                raise ValueError(f"{path}: not key=value: {line!r}")
            props[key.strip()] = value.strip()
    return props


def main() -> int:
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    source, props_path, out = map(Path, sys.argv[1:])
    props = read_properties(props_path)
    ET.register_namespace("android", ANDROID)
    tree = ET.parse(source)
    root = tree.getroot()
    root.set("package", props["applicationId"])
    app = root.find("application")
    if app is None:
        print(f"{source}: no <application>", file=sys.stderr)
        return 1
    app.set(f"{{{ANDROID}}}extractNativeLibs", "false")
    for elem in root.iter():
        for attr in [a for a in elem.attrib if a.startswith(f"{{{TOOLS}}}")]:
            del elem.attrib[attr]
    tree.write(out, encoding="utf-8", xml_declaration=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
