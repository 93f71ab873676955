//! `protect(fd)` called back into Kotlin from Rust threads.
//!
//! On Android every upstream socket must go through
//! `VpnService.protect(fd)` before it connects, or its traffic would loop
//! back into our own TUN. The engine calls [`SocketProtector::protect`]
//! from its own thread; this type attaches that thread to the JVM (once:
//! jni-rs keeps the attachment until the thread exits, so the per-socket
//! cost is a thread-local lookup), and calls the Kotlin `SocketProtector`
//! with jni-rs's checked `call_method`: the method is found by name and
//! signature on each call (GetObjectClass + GetMethodID, a lookup inside the
//! VM), which is small beside what `VpnService.protect` itself costs (a
//! binder call to netd) and keeps this module free of `unsafe`: the
//! crate's one `unsafe` module is [`crate::entry_points`]. [`JniProtector::new`]
//! looks the method up once at start, so that a protector without
//! `protect(I)Z` is refused there and not on the first flow.
//!
//! The Kotlin object is held by a JNI global reference, which pins it
//! against garbage collection. [`JniProtector::release`] drops that
//! reference when the engine stops, so that a stopped engine does not keep
//! the `VpnService` alive; a protect call after release fails cleanly.

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{RwLock, RwLockReadGuard};

use clat_protect::SocketProtector;
use jni::objects::JObject;
use jni::refs::Global;
use jni::vm::JavaVM;
use jni::{jni_sig, jni_str, Env, JValue};

use crate::error::{BridgeError, BridgeResult};

/// A Kotlin `net.clat.core.SocketProtector` seen from Rust.
pub struct JniProtector {
    vm: JavaVM,
    target: RwLock<Option<Global<JObject<'static>>>>,
    calls: AtomicU64,
}

impl std::fmt::Debug for JniProtector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JniProtector")
            .field("released", &self.target_read().is_none())
            .field("calls", &self.calls())
            .finish()
    }
}

impl JniProtector {
    /// Pins `obj` (which must implement `protect(I)Z`) with a global
    /// reference, after checking that it has that method.
    pub fn new(env: &mut Env<'_>, obj: &JObject<'_>) -> BridgeResult<Self> {
        if obj.is_null() {
            return Err(BridgeError::null("protector"));
        }
        let class = env.get_object_class(obj)?;
        env.get_method_id(&class, jni_str!("protect"), jni_sig!("(I)Z"))
            .map_err(|e| {
                BridgeError::IllegalArgument(format!(
                    "protector has no method boolean protect(int): {e}"
                ))
            })?;
        let target = env.new_global_ref(obj)?;
        let vm = env.get_java_vm()?;
        Ok(JniProtector {
            vm,
            target: RwLock::new(Some(target)),
            calls: AtomicU64::new(0),
        })
    }

    fn target_read(&self) -> RwLockReadGuard<'_, Option<Global<JObject<'static>>>> {
        self.target.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Deletes the global reference. Waits for protect calls in flight
    /// (they hold the read lock). Idempotent.
    pub fn release(&self) {
        let taken = self
            .target
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        // Dropping the Global deletes the JNI reference (jni-rs attaches
        // this thread for it if needed).
        drop(taken);
    }

    /// Whether [`release`](Self::release) has run.
    pub fn is_released(&self) -> bool {
        self.target_read().is_none()
    }

    /// How many times Kotlin was asked to protect a socket.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }
}

impl SocketProtector for JniProtector {
    fn protect(&self, fd: RawFd) -> io::Result<()> {
        let guard = self.target_read();
        let Some(target) = guard.as_ref() else {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "socket protector already released (engine stopped)",
            ));
        };
        self.calls.fetch_add(1, Ordering::Relaxed);
        // `attach_current_thread` attaches permanently on first use (the
        // engine thread) and is a TLS check afterwards; it runs the closure
        // in its own local frame, so nothing created here outlives the call.
        let outcome =
            self.vm
                .attach_current_thread(|env| -> jni::errors::Result<Result<bool, String>> {
                    let ret = env.call_method(
                        target,
                        jni_str!("protect"),
                        jni_sig!("(I)Z"),
                        &[JValue::Int(fd)],
                    );
                    match ret {
                        Ok(v) => Ok(Ok(v.z()?)),
                        // Caught here, inside the frame, and described briefly:
                        // a Kotlin exception is an answer ("no"), not a reason to
                        // walk its whole stack trace on the engine thread.
                        Err(jni::errors::Error::JavaException) => Ok(Err(take_exception(env))),
                        Err(e) => Err(e),
                    }
                });
        match outcome {
            Ok(Ok(true)) => Ok(()),
            Ok(Ok(false)) => Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("SocketProtector.protect({fd}) returned false"),
            )),
            Ok(Err(exception)) => Err(io::Error::other(format!(
                "SocketProtector.protect({fd}) threw {exception}"
            ))),
            Err(e) => Err(io::Error::other(format!(
                "SocketProtector.protect({fd}) failed: {e}"
            ))),
        }
    }
}

/// Clears the pending Java exception and returns "ClassName: message".
fn take_exception(env: &mut Env<'_>) -> String {
    let Some(t) = env.exception_occurred() else {
        return "an exception".into();
    };
    env.exception_clear();
    let name = env
        .get_object_class(&t)
        .and_then(|c| c.get_name(env))
        .and_then(|n| n.try_to_string(env))
        .unwrap_or_else(|_| "java.lang.Throwable".into());
    let msg = t
        .get_message(env)
        .ok()
        .filter(|m| !m.is_null())
        .and_then(|m| m.try_to_string(env).ok());
    match msg {
        Some(m) => format!("{name}: {m}"),
        None => name,
    }
}
