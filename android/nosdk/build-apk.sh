#!/usr/bin/env bash
# Builds the app's APK from source without the Android SDK, NDK or Gradle, from parts that plain
# Debian and Maven Central provide, then checks it the way Android would refuse it.
#
#   android/nosdk/build-apk.sh OUTDIR
#
# writes OUTDIR/clat-debug.apk (signed with the debug key, as AGP does: ~/.android/debug.keystore,
# made when missing; CLAT_DEBUG_KEYSTORE overrides the path) and, when CLAT_KEYSTORE is set,
# OUTDIR/clat-release.apk signed with that key:
#   CLAT_KEYSTORE=path  CLAT_KEYSTORE_PASS=...  [CLAT_KEY_ALIAS=...]  [CLAT_KEY_PASS=...]
# (passwords are handed to apksigner through the environment, never on a command line).
#
# Steps: libclat.so for arm64-v8a, armeabi-v7a and x86_64 (native/build-native.sh: Debian's
# clang and lld, stub libraries generated from what the library imports, bionic symbols held to
# minSdk); the app's Kotlin compiled against org.robolectric:android-all by the Maven build
# (android/jvm/pom.xml); the platform-contract check (contract/); D8 (com.android.tools:r8,
# Maven Central) at minSdk; aapt2 for the manifest and resources; package_apk.py for the layout
# (16 KiB-aligned libraries); apksigner (v2 + v3); check_apk.py.
#
# Runs as root on a fresh Debian 12 with a Rust toolchain (rustup): installs the Debian packages,
# rustup targets and Maven artifacts it needs. Identity, version and API levels come from
# android/app/app.properties, shared with the Gradle build.
set -euo pipefail

if [[ $# -ne 1 ]]; then
    echo "usage: $0 OUTDIR" >&2
    exit 2
fi
mkdir -p "$1"
OUT=$(cd "$1" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
APP=$ROOT/android/app
POM=$ROOT/android/jvm/pom.xml
WORK=$ROOT/target/nosdk-apk
# D8 from Maven Central (the versions there are R8's own; 9.x dexes for any minSdk).
R8_VERSION=9.5.28

step() { printf '\n---- build-apk: %s ----\n' "$*"; }
prop() { # key -> value from app.properties (the one source of truth)
    local v
    v=$(sed -n "s/^$1=//p" "$APP/app.properties")
    [[ -n $v ]] || { echo "build-apk: $APP/app.properties lacks $1" >&2; exit 1; }
    printf '%s' "$v"
}
pom_prop() { # property -> value from the Maven build, so both builds use the same versions
    sed -n "s:.*<$1>\(.*\)</$1>.*:\1:p" "$POM" | head -n1
}

step "tools"
need=()
for t in aapt2:aapt zipalign:zipalign apksigner:apksigner dexdump:dexdump readelf:binutils \
         java:openjdk-17-jdk-headless javac:openjdk-17-jdk-headless mvn:maven python3:python3; do
    command -v "${t%%:*}" >/dev/null || need+=("${t#*:}")
done
if ((${#need[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "build-apk: missing ${need[*]}: install them (apt-get install ${need[*]}) or run as root" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

APP_ID=$(prop applicationId)
VERSION_CODE=$(prop versionCode)
VERSION_NAME=$(prop versionName)
MIN_SDK=$(prop minSdk)
TARGET_SDK=$(prop targetSdk)
KOTLIN_VERSION=$(pom_prop kotlin.version)
# The framework the Kotlin is compiled and the resources are linked against. The Gradle build
# uses compileSdk from app.properties (35); Debian's aapt2 (Android 10's) cannot read the
# resources.arsc of API 35 ("attribute android:name not found"), so this build links against
# API 34, whose attributes hold everything the manifest uses.
ANDROID_ALL_VERSION=$(pom_prop android.all.version)
echo "$APP_ID $VERSION_NAME ($VERSION_CODE), minSdk $MIN_SDK, targetSdk $TARGET_SDK," \
     "android-all $ANDROID_ALL_VERSION, Kotlin $KOTLIN_VERSION, D8 $R8_VERSION"

rm -rf "$WORK"
mkdir -p "$WORK"/{jars,dex,lib}

step "libclat.so for the Android ABIs"
MIN_SDK=$MIN_SDK bash "$HERE/native/build-native.sh" "$WORK/lib"

step "Kotlin: compile against android-all"
mvn -B -q -f "$POM" compile
(cd "$ROOT/android/jvm/target/classes" && jar --create --file "$WORK/app-classes.jar" .)
for a in "com.android.tools:r8:$R8_VERSION" \
         "org.jetbrains.kotlin:kotlin-stdlib:$KOTLIN_VERSION" \
         "org.robolectric:android-all:$ANDROID_ALL_VERSION"; do
    mvn -B -q -f "$POM" dependency:copy -Dartifact="$a" -DoutputDirectory="$WORK/jars"
done
ANDROID_ALL=$WORK/jars/android-all-$ANDROID_ALL_VERSION.jar

step "platform contract: framework APIs used, their permissions and API levels"
python3 "$HERE/contract/check-platform-contract.py" --classes "$WORK/app-classes.jar" \
    --manifest "$APP/src/main/AndroidManifest.xml" --min-sdk "$MIN_SDK" --target-sdk "$TARGET_SDK"

step "D8: dex at minSdk $MIN_SDK"
# android-all holds the android.* classes but not java.*: the JDK serves as the rest of the
# library classpath (D8 only reads it to desugar against; nothing of it is packaged).
JDK_HOME=$(dirname "$(dirname "$(readlink -f "$(command -v javac)")")")
java -cp "$WORK/jars/r8-$R8_VERSION.jar" com.android.tools.r8.D8 --release --min-api "$MIN_SDK" \
    --lib "$JDK_HOME" --lib "$ANDROID_ALL" --output "$WORK/dex" \
    "$WORK/app-classes.jar" "$WORK/jars/kotlin-stdlib-$KOTLIN_VERSION.jar"

step "aapt2: manifest and resources"
python3 "$HERE/prepare_manifest.py" "$APP/src/main/AndroidManifest.xml" "$APP/app.properties" \
    "$WORK/AndroidManifest.xml"
aapt2 compile --dir "$APP/src/main/res" -o "$WORK/res.zip"
link() { # OUT [--debug-mode]
    # --warn-manifest-validation: this aapt2 predates <property> (API 31) and <queries> (API 30).
    # Its own exit status decides; only its known, harmless warnings are left out of the log.
    local rc=0
    aapt2 link -o "$1" -I "$ANDROID_ALL" --manifest "$WORK/AndroidManifest.xml" \
        --min-sdk-version "$MIN_SDK" --target-sdk-version "$TARGET_SDK" \
        --version-code "$VERSION_CODE" --version-name "$VERSION_NAME" \
        --warn-manifest-validation "${@:2}" "$WORK/res.zip" >"$WORK/aapt2.log" 2>&1 || rc=$?
    grep -v -e "LoadedArsc.cpp.*Unknown chunk type" -e "unexpected element <property>" \
        -e "unexpected element <queries>" "$WORK/aapt2.log" || true
    if ((rc != 0)); then
        echo "build-apk: aapt2 link failed (exit $rc)" >&2
        return "$rc"
    fi
}
link "$WORK/resources-debug.apk" --debug-mode

sign() { # IN OUT apksigner-key-options...
    apksigner sign --min-sdk-version "$MIN_SDK" --v1-signing-enabled false \
        --v2-signing-enabled true --v3-signing-enabled true "${@:3}" --out "$2" "$1"
    rm -f "$2.idsig"
}

step "debug APK"
python3 "$HERE/package_apk.py" --resources "$WORK/resources-debug.apk" --dex "$WORK/dex" \
    --libs "$WORK/lib" --out "$WORK/clat-debug-unsigned.apk"
DEBUG_KS=${CLAT_DEBUG_KEYSTORE:-$HOME/.android/debug.keystore}
if [[ ! -f $DEBUG_KS ]]; then
    # The Android debug key's conventional names and passwords, so that AGP on the same machine
    # signs with the same key and an installed debug build can be updated by either build.
    mkdir -p "$(dirname "$DEBUG_KS")"
    keytool -genkeypair -keystore "$DEBUG_KS" -storetype PKCS12 -storepass android \
        -alias androiddebugkey -keypass android -keyalg RSA -keysize 2048 -validity 10950 \
        -dname "CN=Android Debug,O=Android,C=US" >/dev/null 2>&1
fi
sign "$WORK/clat-debug-unsigned.apk" "$OUT/clat-debug.apk" \
    --ks "$DEBUG_KS" --ks-key-alias androiddebugkey --ks-pass pass:android --key-pass pass:android

if [[ -n ${CLAT_KEYSTORE:-} ]]; then
    step "release APK"
    : "${CLAT_KEYSTORE_PASS:?CLAT_KEYSTORE is set: set CLAT_KEYSTORE_PASS too}"
    link "$WORK/resources-release.apk"
    python3 "$HERE/package_apk.py" --resources "$WORK/resources-release.apk" --dex "$WORK/dex" \
        --libs "$WORK/lib" --out "$WORK/clat-release-unsigned.apk"
    key=(--ks "$CLAT_KEYSTORE" --ks-pass env:CLAT_KEYSTORE_PASS)
    [[ -n ${CLAT_KEY_ALIAS:-} ]] && key+=(--ks-key-alias "$CLAT_KEY_ALIAS")
    [[ -n ${CLAT_KEY_PASS:-} ]] && key+=(--key-pass env:CLAT_KEY_PASS)
    sign "$WORK/clat-release-unsigned.apk" "$OUT/clat-release.apk" "${key[@]}"
fi

for apk in "$OUT/clat-debug.apk" ${CLAT_KEYSTORE:+"$OUT/clat-release.apk"}; do
    step "checks: $(basename "$apk")"
    python3 "$HERE/check_apk.py" "$apk" "$APP/app.properties"
done
