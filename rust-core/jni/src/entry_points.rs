//! The functions `libclat.so` exports for the Kotlin `net.clat.core.ClatNative`
//! object (`Java_net_clat_core_ClatNative_*`), and the taking over of the
//! TUN descriptor Kotlin hands in. This is the crate's one module where
//! `unsafe` is allowed: an exported symbol (`#[unsafe(no_mangle)]`) is a
//! promise about its ABI that the compiler cannot check, and so is adopting
//! a raw descriptor number.
//!
//! Every function runs its body through `EnvUnowned::with_env` (which wraps
//! it in `catch_unwind`) and resolves the outcome with
//! [`crate::error::ThrowTyped`], so a Rust error or panic becomes a Java
//! exception and never unwinds into the JVM.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use jni::objects::{JClass, JLongArray, JObject, JObjectArray, JString};
use jni::sys::{jboolean, jint, jlong};
use jni::{Env, EnvUnowned};

use crate::error::{BridgeError, BridgeResult, ThrowTyped};
use crate::protector::JniProtector;
use crate::{config, engine, jconvert, logging};

/// Runs one entry point body: logger set up, panics caught, errors thrown
/// as the matching Java exception, the type's default returned then.
fn entry<'local, T: Default>(
    env: &mut EnvUnowned<'local>,
    f: impl FnOnce(&mut Env<'local>) -> BridgeResult<T>,
) -> T {
    logging::init();
    env.with_env(f).resolve::<ThrowTyped>()
}

/// `ClatNative.start(tunFd, config, protector): Long`.
///
/// Ownership of `tunFd` passes to the engine at the call (it is closed on
/// stop, and on failure too), as with `ParcelFileDescriptor.detachFd()`.
#[unsafe(no_mangle)]
pub extern "system" fn Java_net_clat_core_ClatNative_start<'l>(
    mut env: EnvUnowned<'l>,
    _class: JClass<'l>,
    tun_fd: jint,
    config: JObject<'l>,
    protector: JObject<'l>,
) -> jlong {
    entry(&mut env, |env| {
        // Adopted first so that every error below closes it (ownership
        // passed at the call); reported after the config errors, which are
        // the more useful message.
        let tun = adopt_fd(tun_fd);
        let raw = jconvert::read_native_config(env, &config)?;
        let engine_config = config::parse_config(&raw).map_err(BridgeError::IllegalArgument)?;
        let protector = JniProtector::new(env, &protector)?;
        let tun = tun?;
        engine::start(tun, engine_config, protector)
    })
}

/// `ClatNative.stop(handle): Boolean` — true if it stopped an engine, false
/// if the handle was already stopped or never existed.
#[unsafe(no_mangle)]
pub extern "system" fn Java_net_clat_core_ClatNative_stop<'l>(
    mut env: EnvUnowned<'l>,
    _class: JClass<'l>,
    handle: jlong,
) -> jboolean {
    entry(&mut env, |_| engine::stop(handle))
}

/// `ClatNative.counterNames(): Array<String>` — the names of the values
/// `counters` returns, in their order; the same for every engine, so Kotlin
/// fetches them once.
#[unsafe(no_mangle)]
pub extern "system" fn Java_net_clat_core_ClatNative_counterNames<'l>(
    mut env: EnvUnowned<'l>,
    _class: JClass<'l>,
) -> JObjectArray<'l, JString<'l>> {
    entry(&mut env, |env| {
        let names: Vec<String> = engine::counter_names()
            .into_iter()
            .map(String::from)
            .collect();
        jconvert::new_string_array(env, &names)
    })
}

/// `ClatNative.counters(handle): LongArray` — the counters' values, in the
/// order of `counterNames`.
#[unsafe(no_mangle)]
pub extern "system" fn Java_net_clat_core_ClatNative_counters<'l>(
    mut env: EnvUnowned<'l>,
    _class: JClass<'l>,
    handle: jlong,
) -> JLongArray<'l> {
    entry(&mut env, |env| {
        let values = engine::counters(handle)?;
        jconvert::new_long_array(env, &values)
    })
}

/// `ClatNative.isRunning(handle): Boolean`.
#[unsafe(no_mangle)]
pub extern "system" fn Java_net_clat_core_ClatNative_isRunning<'l>(
    mut env: EnvUnowned<'l>,
    _class: JClass<'l>,
    handle: jlong,
) -> jboolean {
    entry(&mut env, |_| engine::is_running(handle))
}

/// `ClatNative.exitReason(handle): String?`.
#[unsafe(no_mangle)]
pub extern "system" fn Java_net_clat_core_ClatNative_exitReason<'l>(
    mut env: EnvUnowned<'l>,
    _class: JClass<'l>,
    handle: jlong,
) -> JString<'l> {
    entry(&mut env, |env| match engine::exit_reason(handle)? {
        None => Ok(JString::null()),
        Some(r) => Ok(JString::new(env, r)?),
    })
}

/// `ClatNative.setPrefix(handle, prefix)`.
#[unsafe(no_mangle)]
pub extern "system" fn Java_net_clat_core_ClatNative_setPrefix<'l>(
    mut env: EnvUnowned<'l>,
    _class: JClass<'l>,
    handle: jlong,
    prefix: JString<'l>,
) {
    entry(&mut env, |env| {
        let prefix = jconvert::string_arg(env, &prefix, "prefix")?;
        engine::set_prefix(handle, &prefix)
    })
}

/// `ClatNative.setIpv4Path(handle, native: Boolean)`.
#[unsafe(no_mangle)]
pub extern "system" fn Java_net_clat_core_ClatNative_setIpv4Path<'l>(
    mut env: EnvUnowned<'l>,
    _class: JClass<'l>,
    handle: jlong,
    native: jboolean,
) {
    entry(&mut env, |_env| engine::set_ipv4_path(handle, native))
}

/// `ClatNative.networkChanged(handle, dnsServers: Array<String>?)`.
#[unsafe(no_mangle)]
pub extern "system" fn Java_net_clat_core_ClatNative_networkChanged<'l>(
    mut env: EnvUnowned<'l>,
    _class: JClass<'l>,
    handle: jlong,
    dns_servers: JObjectArray<'l, JString<'l>>,
) {
    entry(&mut env, |env| {
        let dns = if dns_servers.is_null() {
            None
        } else {
            Some(jconvert::string_array(env, &dns_servers, "dnsServers")?)
        };
        engine::network_changed(handle, dns.as_deref())
    })
}

/// `ClatNative.setDns(handle, dnsServers: Array<String>)` — new resolvers for
/// the DNS relay, no flow reset (unlike `networkChanged`).
#[unsafe(no_mangle)]
pub extern "system" fn Java_net_clat_core_ClatNative_setDns<'l>(
    mut env: EnvUnowned<'l>,
    _class: JClass<'l>,
    handle: jlong,
    dns_servers: JObjectArray<'l, JString<'l>>,
) {
    entry(&mut env, |env| {
        let dns = jconvert::string_array(env, &dns_servers, "dnsServers")?;
        engine::set_dns(handle, &dns)
    })
}

/// `ClatNative.awaitExit(handle): String?` — blocks until the engine ends;
/// its reason, or null when it was stopped. Call it on a thread of its own.
#[unsafe(no_mangle)]
pub extern "system" fn Java_net_clat_core_ClatNative_awaitExit<'l>(
    mut env: EnvUnowned<'l>,
    _class: JClass<'l>,
    handle: jlong,
) -> JString<'l> {
    entry(&mut env, |env| match engine::await_exit(handle)? {
        None => Ok(JString::null()),
        Some(r) => Ok(JString::new(env, r)?),
    })
}

/// `ClatNative.awaitFlowEvents(handle, timeoutMs): FlowEventBatch?` — waits
/// up to `timeoutMs` for flow events and returns every waiting one (an empty
/// batch when the time ran out); null when none will ever come (no queue,
/// or the engine ended and all were taken). Call it on a thread of its own.
#[unsafe(no_mangle)]
pub extern "system" fn Java_net_clat_core_ClatNative_awaitFlowEvents<'l>(
    mut env: EnvUnowned<'l>,
    _class: JClass<'l>,
    handle: jlong,
    timeout_ms: jint,
) -> JObject<'l> {
    entry(&mut env, |env| {
        match engine::await_flow_events(handle, timeout_ms)? {
            None => Ok(JObject::null()),
            Some(events) => jconvert::new_flow_event_batch(env, &events),
        }
    })
}

/// `ClatNative.discover(resolvers, timeoutMs, protector?):
/// Array<DiscoveredPrefix>`. A null protector means no protection (host use;
/// on Android pass the VpnService's).
#[unsafe(no_mangle)]
pub extern "system" fn Java_net_clat_core_ClatNative_discover<'l>(
    mut env: EnvUnowned<'l>,
    _class: JClass<'l>,
    resolvers: JObjectArray<'l, JString<'l>>,
    timeout_ms: jint,
    protector: JObject<'l>,
) -> JObjectArray<'l> {
    entry(&mut env, |env| {
        let resolvers = jconvert::string_array(env, &resolvers, "resolvers")?;
        let found = if protector.is_null() {
            engine::discover(&resolvers, timeout_ms, &clat_protect::NoProtect)
        } else {
            let p = JniProtector::new(env, &protector)?;
            let r = engine::discover(&resolvers, timeout_ms, &p);
            p.release();
            r
        }?;
        jconvert::new_discovered_prefix_array(env, &found)
    })
}

/// `ClatNative.openTun(name): Int` — host test aid (on Android the
/// VpnService creates the TUN, and this throws `ClatException`). The caller
/// owns the descriptor.
#[unsafe(no_mangle)]
pub extern "system" fn Java_net_clat_core_ClatNative_openTun<'l>(
    mut env: EnvUnowned<'l>,
    _class: JClass<'l>,
    name: JString<'l>,
) -> jint {
    entry(&mut env, |env| {
        let name = jconvert::string_arg(env, &name, "name")?;
        engine::open_tun(&name)
    })
}

/// `ClatNative.engineCount(): Int` — engines currently registered (lets
/// tests check that stop really forgets them).
#[unsafe(no_mangle)]
pub extern "system" fn Java_net_clat_core_ClatNative_engineCount<'l>(
    mut env: EnvUnowned<'l>,
    _class: JClass<'l>,
) -> jint {
    entry(&mut env, |_| {
        Ok(i32::try_from(engine::ENGINES.len()).unwrap_or(i32::MAX))
    })
}

/// Takes ownership of a raw descriptor handed over by Kotlin, after
/// checking that it is open (wrapping a closed or foreign number in an
/// `OwnedFd` would later close somebody else's file).
pub fn adopt_fd(fd: RawFd) -> BridgeResult<OwnedFd> {
    if fd < 0 {
        return Err(BridgeError::IllegalArgument(format!(
            "tunFd {fd} is not a file descriptor"
        )));
    }
    // SAFETY: F_GETFD only reads the descriptor flags.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(BridgeError::IllegalArgument(format!(
            "tunFd {fd} is not open: {}",
            io::Error::last_os_error()
        )));
    }
    // SAFETY: the descriptor is open, and the API contract (ClatNative.start)
    // transfers its ownership to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adopt_fd_rejects_negative_and_closed_descriptors() {
        assert!(matches!(adopt_fd(-1), Err(BridgeError::IllegalArgument(_))));
        // A descriptor number far above anything this process opened.
        let e = adopt_fd(1_000_000).unwrap_err();
        assert!(e.to_string().contains("not open"), "{e}");
    }

    #[test]
    fn adopt_fd_takes_ownership_and_closes() {
        use std::os::fd::IntoRawFd;
        let raw = std::fs::File::open("/dev/null").unwrap().into_raw_fd();
        let owned = adopt_fd(raw).unwrap();
        drop(owned);
        // SAFETY: F_GETFD only reads flags; the fd was just closed.
        assert!(unsafe { libc::fcntl(raw, libc::F_GETFD) } < 0);
    }
}
