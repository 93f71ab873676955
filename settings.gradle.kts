// Gradle build of the Android app (needs the Android SDK + NDK; see README "Android").
// The Rust workspace (Cargo.toml) lives in the same root; Gradle only drives cargo-ndk for it.
pluginManagement {
    repositories {
        google()
        mavenCentral()
        gradlePluginPortal()
    }
}

dependencyResolutionManagement {
    repositoriesMode.set(RepositoriesMode.FAIL_ON_PROJECT_REPOS)
    repositories {
        google()
        mavenCentral()
    }
}

rootProject.name = "clat"
include(":android:app")
