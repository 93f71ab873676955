//! Errors of the bridge and how they become Java exceptions.
//!
//! Every entry point returns `Result<T, BridgeError>`; the [`ThrowTyped`]
//! policy turns the error into the Java exception class the Kotlin API
//! documents, so that callers can tell a bad argument (their bug) from a
//! stale handle (a race with `stop`) from an engine failure (the network).
//! A panic becomes a `ClatException` instead of unwinding into the JVM,
//! which would abort the whole app.

use std::any::Any;
use std::fmt;

use jni::errors::ErrorPolicy;
use jni::strings::JNIString;
use jni::{jni_str, Env};

/// What went wrong, tagged with the Java exception it maps to.
#[derive(Debug)]
pub enum BridgeError {
    /// A bad argument value (bad configuration, unparsable address...):
    /// `java.lang.IllegalArgumentException`.
    IllegalArgument(String),
    /// A call that is not valid now (stale or stopped handle):
    /// `java.lang.IllegalStateException`.
    IllegalState(String),
    /// A required argument was null: `java.lang.NullPointerException`.
    NullPointer(String),
    /// The engine or discovery failed: `net.clat.core.ClatException`.
    Clat(String),
    /// A JNI call failed. If it left a Java exception pending, that one
    /// propagates unchanged; otherwise it becomes a `ClatException`.
    Jni(jni::errors::Error),
}

impl BridgeError {
    /// Shorthand for a null-argument error naming the parameter.
    pub fn null(what: &str) -> Self {
        BridgeError::NullPointer(format!("{what} must not be null"))
    }

    /// The JNI name of the Java class this error is thrown as.
    pub fn java_class(&self) -> &'static str {
        match self {
            BridgeError::IllegalArgument(_) => "java/lang/IllegalArgumentException",
            BridgeError::IllegalState(_) => "java/lang/IllegalStateException",
            BridgeError::NullPointer(_) => "java/lang/NullPointerException",
            BridgeError::Clat(_) | BridgeError::Jni(_) => CLAT_EXCEPTION,
        }
    }
}

/// The Kotlin `net.clat.core.ClatException`.
pub const CLAT_EXCEPTION: &str = "net/clat/core/ClatException";

impl fmt::Display for BridgeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BridgeError::IllegalArgument(m)
            | BridgeError::IllegalState(m)
            | BridgeError::NullPointer(m)
            | BridgeError::Clat(m) => f.write_str(m),
            BridgeError::Jni(e) => write!(f, "JNI error: {e}"),
        }
    }
}

impl std::error::Error for BridgeError {}

impl From<jni::errors::Error> for BridgeError {
    fn from(e: jni::errors::Error) -> Self {
        BridgeError::Jni(e)
    }
}

/// Result type of every entry point body.
pub type BridgeResult<T> = Result<T, BridgeError>;

/// Text of a panic payload (the two payload types `panic!` produces).
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

/// Error policy for every native method: throws the Java exception that
/// matches the [`BridgeError`] (or keeps one already pending, which carries
/// the better message) and returns the type's default (0, null, false).
#[derive(Debug, Default)]
pub struct ThrowTyped;

impl<T: Default> ErrorPolicy<T, BridgeError> for ThrowTyped {
    type Captures<'unowned_env_local: 'native_method, 'native_method> = ();

    fn on_error<'unowned_env_local: 'native_method, 'native_method>(
        env: &mut Env<'unowned_env_local>,
        _cap: &mut (),
        err: BridgeError,
    ) -> jni::errors::Result<T> {
        if env.exception_check() {
            // A Java exception (thrown by a callback or by a failed JNI
            // call) is already on its way: let it through untouched.
            return Ok(T::default());
        }
        log::debug!("native call failed: {err}");
        let class = JNIString::new(err.java_class());
        // `throw_new` reports the now-pending exception as an Err; that is
        // the expected outcome here, not a secondary failure.
        let _ = env.throw_new(class, JNIString::new(err.to_string()));
        Ok(T::default())
    }

    fn on_panic<'unowned_env_local: 'native_method, 'native_method>(
        env: &mut Env<'unowned_env_local>,
        _cap: &mut (),
        payload: Box<dyn Any + Send + 'static>,
    ) -> jni::errors::Result<T> {
        let msg = panic_message(payload.as_ref());
        // Dropping a payload can itself panic; leaking one box is harmless.
        std::mem::forget(payload);
        log::error!("panic in native call: {msg}");
        if env.exception_check() {
            env.exception_clear();
        }
        let _ = env.throw_new(
            jni_str!("net/clat/core/ClatException"),
            JNIString::new(format!("internal error (panic): {msg}")),
        );
        Ok(T::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_maps_to_its_java_class() {
        assert_eq!(
            BridgeError::IllegalArgument("x".into()).java_class(),
            "java/lang/IllegalArgumentException"
        );
        assert_eq!(
            BridgeError::IllegalState("x".into()).java_class(),
            "java/lang/IllegalStateException"
        );
        assert_eq!(
            BridgeError::null("config").java_class(),
            "java/lang/NullPointerException"
        );
        assert_eq!(BridgeError::Clat("x".into()).java_class(), CLAT_EXCEPTION);
        assert_eq!(
            BridgeError::null("config").to_string(),
            "config must not be null"
        );
    }

    #[test]
    fn panic_messages_are_extracted() {
        let r = std::panic::catch_unwind(|| panic!("boom {}", 7)).unwrap_err();
        assert_eq!(panic_message(r.as_ref()), "boom 7");
        let r = std::panic::catch_unwind(|| panic!("static")).unwrap_err();
        assert_eq!(panic_message(r.as_ref()), "static");
        let r = std::panic::catch_unwind(|| std::panic::panic_any(5u8)).unwrap_err();
        assert_eq!(panic_message(r.as_ref()), "non-string panic payload");
    }
}
