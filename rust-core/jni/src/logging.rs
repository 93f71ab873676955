//! Logging set up once per process, whichever entry point runs first.
//!
//! On Android `log` records go to logcat (tag "clat"); elsewhere (host JNI
//! tests) to stderr through env_logger, filtered by `RUST_LOG` (default
//! `info`).

use std::sync::Once;

static INIT: Once = Once::new();

/// Installs the logger if nobody has yet. Cheap after the first call.
pub fn init() {
    INIT.call_once(|| {
        #[cfg(target_os = "android")]
        android_logger::init_once(
            android_logger::Config::default()
                .with_max_level(log::LevelFilter::Info)
                .with_tag("clat"),
        );
        #[cfg(not(target_os = "android"))]
        {
            // Another library in the process may have set a logger already;
            // that one then wins, which is fine.
            let _ =
                env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
                    .try_init();
        }
    });
}
