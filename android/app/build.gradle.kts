// The Android app (needs the Android SDK, and the NDK + cargo-ndk for the Rust library).
// Without an SDK, android/jvm/pom.xml compiles the same Kotlin sources against android-all and
// runs the same unit tests: see README "Android".
import org.jetbrains.kotlin.gradle.dsl.JvmTarget

plugins {
    alias(libs.plugins.android.application)
    alias(libs.plugins.kotlin.android)
}

/** The ABIs the APK ships libclat.so for (phones, old phones, emulators). */
val rustAbis = listOf("arm64-v8a", "armeabi-v7a", "x86_64")
val jniLibsDir = layout.projectDirectory.dir("src/main/jniLibs")

android {
    namespace = "net.clat.app"
    compileSdk = libs.versions.compileSdk.get().toInt()

    defaultConfig {
        applicationId = "net.clat.app"
        minSdk = libs.versions.minSdk.get().toInt()
        targetSdk = libs.versions.targetSdk.get().toInt()
        versionCode = 1
        versionName = "0.1.0"
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
        // Stored uncompressed and page-aligned: loaded straight from the APK.
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
    args += listOf("--platform", libs.versions.minSdk.get())
    args += listOf("-o", jniLibsDir.asFile.absolutePath, "build", "--release", "-p", "clat-jni")
    commandLine(args)
    inputs.files(fileTree(rootDir.resolve("rust-core")) { include("**/*.rs", "**/Cargo.toml") })
    inputs.file(rootDir.resolve("Cargo.toml"))
    outputs.dir(jniLibsDir)
    onlyIf { !skipRust.get() }
}

tasks.named("preBuild") { dependsOn(cargoNdk) }
