// The Android app (needs the Android SDK, and the NDK + cargo-ndk for the Rust library).
// Without an SDK, android/jvm/pom.xml compiles the same Kotlin sources against android-all and
// runs the same unit tests: see README "Android".
import org.jetbrains.kotlin.gradle.dsl.JvmTarget

plugins {
    alias(libs.plugins.android.application)
    alias(libs.plugins.kotlin.android)
}

/**
 * The app's identity, version and API levels, shared with the SDK-less build
 * (android/nosdk/build-apk.sh): one source of truth.
 */
val appProps = java.util.Properties().apply { file("app.properties").inputStream().use { load(it) } }
fun appProp(key: String): String = appProps.getProperty(key) ?: error("android/app/app.properties lacks $key")

/** The ABIs the APK ships libclat.so for (phones, old phones, emulators). */
val rustAbis = listOf("arm64-v8a", "armeabi-v7a", "x86_64")
val jniLibsDir = layout.projectDirectory.dir("src/main/jniLibs")

android {
    namespace = appProp("applicationId")
    compileSdk = appProp("compileSdk").toInt()

    defaultConfig {
        applicationId = appProp("applicationId")
        minSdk = appProp("minSdk").toInt()
        targetSdk = appProp("targetSdk").toInt()
        versionCode = appProp("versionCode").toInt()
        versionName = appProp("versionName")
        testInstrumentationRunner = "androidx.test.runner.AndroidJUnitRunner"
        ndk { abiFilters += rustAbis }
    }

    buildTypes {
        release {
            // No minification: JNI looks classes and fields up by name (net.clat.core.*).
            isMinifyEnabled = false
        }
    }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }

    sourceSets {
        // The JVM unit tests live with the Maven check build so both builds run the same tests.
        getByName("test").java.srcDir("../jvm/src/test/kotlin")
    }

    testOptions {
        unitTests.all {
            it.useJUnitPlatform()
            it.systemProperty("clat.app.dir", projectDir.absolutePath)
        }
    }

    packaging {
        // Stored uncompressed and page-aligned: loaded straight from the APK. AGP 8.5.1+ aligns
        // them to 16 KiB in the zip (devices with 16 KiB pages, Android 15+).
        jniLibs.useLegacyPackaging = false
    }

    lint {
        abortOnError = true
    }
}

kotlin {
    compilerOptions { jvmTarget.set(JvmTarget.JVM_17) }
}

dependencies {
    testImplementation(platform(libs.junit.bom))
    testImplementation(libs.junit.jupiter)
    testImplementation(libs.kotlin.test.junit5)
    testRuntimeOnly(libs.junit.platform.launcher)

    androidTestImplementation(libs.junit4)
    androidTestImplementation(libs.androidx.test.runner)
    androidTestImplementation(libs.androidx.test.rules)
    androidTestImplementation(libs.androidx.test.ext.junit)
}

/**
 * Builds libclat.so (crate clat-jni) for every ABI with cargo-ndk into src/main/jniLibs, which
 * AGP packages into the APK. Needs: rustup targets aarch64-linux-android, armv7-linux-androideabi,
 * x86_64-linux-android; `cargo install cargo-ndk`; ANDROID_NDK_HOME (or the SDK's ndk/).
 * Skip with -Pclat.skipRust=true when the libraries are already there.
 */
val skipRust = providers.gradleProperty("clat.skipRust").map { it.toBoolean() }.orElse(false)

val cargoNdk by tasks.registering(Exec::class) {
    group = "build"
    description = "Builds the Rust core (clat-jni) for the Android ABIs with cargo-ndk"
    workingDir = rootDir
    val args = mutableListOf("cargo", "ndk")
    rustAbis.forEach { args += listOf("-t", it) }
    // --platform: the minSdk, so the library links against no newer libc than the app allows.
    args += listOf("--platform", appProp("minSdk"))
    args += listOf("-o", jniLibsDir.asFile.absolutePath, "build", "--release", "-p", "clat-jni")
    commandLine(args)
    // 16 KiB-aligned LOAD segments for devices with 16 KiB pages (NDK r27 still links for 4 KiB
    // by default); with --target, RUSTFLAGS reach the Android artifacts only, not build scripts.
    environment("RUSTFLAGS", "-C link-arg=-Wl,-z,max-page-size=16384")
    inputs.files(fileTree(rootDir.resolve("rust-core")) { include("**/*.rs", "**/Cargo.toml") })
    inputs.file(rootDir.resolve("Cargo.toml"))
    outputs.dir(jniLibsDir)
    onlyIf { !skipRust.get() }
}

tasks.named("preBuild") { dependsOn(cargoNdk) }
