//! Kotlin values through JNI: `NativeConfig` fields and string arrays read,
//! arrays and `DiscoveredPrefix` objects made.
//!
//! Only copying happens here; checking is `config::parse_config`'s job, so
//! that it is tested without a JVM.

use clat_discovery::DiscoveredPrefix;
use jni::objects::{JLongArray, JObject, JObjectArray, JString, JValue};
use jni::signature::FieldSignature;
use jni::strings::JNIStr;
use jni::{jni_sig, jni_str, Env};

use crate::config::RawConfig;
use crate::error::{BridgeError, BridgeResult};

/// Copies every `NativeConfig` field.
pub fn read_native_config(env: &mut Env<'_>, cfg: &JObject<'_>) -> BridgeResult<RawConfig> {
    if cfg.is_null() {
        return Err(BridgeError::null("config"));
    }
    let dns = string_field(
        env,
        cfg,
        jni_str!("dnsServers"),
        jni_sig!("[Ljava/lang/String;"),
    )?;
    let dns_servers = match dns {
        None => Vec::new(),
        Some(obj) => {
            let arr = env.cast_local::<JObjectArray<JString>>(obj)?;
            string_array(env, &arr, "dnsServers")?
        }
    };
    Ok(RawConfig {
        clat_address: opt_string(env, cfg, jni_str!("clatAddress"))?,
        nat_address: opt_string(env, cfg, jni_str!("natAddress"))?,
        dns_relay_address: opt_string(env, cfg, jni_str!("dnsRelayAddress"))?,
        prefix: opt_string(env, cfg, jni_str!("prefix"))?,
        dns_servers,
        mtu: int_field(env, cfg, jni_str!("mtu"))?,
        max_flows: int_field(env, cfg, jni_str!("maxFlows"))?,
        udp_timeout_sec: int_field(env, cfg, jni_str!("udpTimeoutSec"))?,
        tcp_established_timeout_sec: int_field(env, cfg, jni_str!("tcpEstablishedTimeoutSec"))?,
        tcp_transitory_timeout_sec: int_field(env, cfg, jni_str!("tcpTransitoryTimeoutSec"))?,
        icmp_timeout_sec: int_field(env, cfg, jni_str!("icmpTimeoutSec"))?,
        refuse_non_global_wkp: env
            .get_field(cfg, jni_str!("refuseNonGlobalWkp"), jni_sig!("Z"))?
            .z()?,
        ipv4_native: env
            .get_field(cfg, jni_str!("ipv4Native"), jni_sig!("Z"))?
            .z()?,
        carry_ipv6: env
            .get_field(cfg, jni_str!("carryIpv6"), jni_sig!("Z"))?
            .z()?,
        flow_events: int_field(env, cfg, jni_str!("flowEvents"))?,
    })
}

fn int_field(env: &mut Env<'_>, obj: &JObject<'_>, name: &JNIStr) -> BridgeResult<i32> {
    Ok(env.get_field(obj, name, jni_sig!("I"))?.i()?)
}

fn string_field<'l>(
    env: &mut Env<'l>,
    obj: &JObject<'_>,
    name: &JNIStr,
    sig: FieldSignature<'_>,
) -> BridgeResult<Option<JObject<'l>>> {
    let v = env.get_field(obj, name, sig)?.l()?;
    Ok(if v.is_null() { None } else { Some(v) })
}

fn opt_string(env: &mut Env<'_>, obj: &JObject<'_>, name: &JNIStr) -> BridgeResult<Option<String>> {
    match string_field(env, obj, name, jni_sig!("Ljava/lang/String;"))? {
        None => Ok(None),
        Some(o) => {
            let s = env.cast_local::<JString>(o)?;
            Ok(Some(s.try_to_string(env)?))
        }
    }
}

/// A non-null string argument.
pub fn string_arg(env: &Env<'_>, s: &JString<'_>, what: &str) -> BridgeResult<String> {
    if s.is_null() {
        return Err(BridgeError::null(what));
    }
    Ok(s.try_to_string(env)?)
}

/// Every element of a `String[]`; a null element is an argument error.
pub fn string_array(
    env: &mut Env<'_>,
    arr: &JObjectArray<'_, JString<'_>>,
    what: &str,
) -> BridgeResult<Vec<String>> {
    if arr.is_null() {
        return Err(BridgeError::null(what));
    }
    let n = arr.len(env)?;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let el = arr.get_element(env, i)?;
        if el.is_null() {
            return Err(BridgeError::IllegalArgument(format!("{what}[{i}] is null")));
        }
        out.push(el.try_to_string(env)?);
        env.delete_local_ref(el);
    }
    Ok(out)
}

/// A new `String[]` holding `items`.
pub fn new_string_array<'l>(
    env: &mut Env<'l>,
    items: &[String],
) -> BridgeResult<JObjectArray<'l, JString<'l>>> {
    let arr = JObjectArray::<JString>::new(env, items.len(), JString::null())?;
    for (i, s) in items.iter().enumerate() {
        let js = JString::new(env, s)?;
        arr.set_element(env, i, &js)?;
        env.delete_local_ref(js);
    }
    Ok(arr)
}

/// A new `long[]` holding `values`.
pub fn new_long_array<'l>(env: &mut Env<'l>, values: &[i64]) -> BridgeResult<JLongArray<'l>> {
    let arr = JLongArray::new(env, values.len())?;
    arr.set_region(env, 0, values)?;
    Ok(arr)
}

/// A new `net.clat.core.DiscoveredPrefix[]`: each `DiscoveredPrefix(prefix,
/// source, ttlSeconds)` (keep the constructor in step with the Kotlin class).
/// Called on the Java thread of the native call, so `FindClass` sees the
/// app's classes.
pub fn new_discovered_prefix_array<'l>(
    env: &mut Env<'l>,
    found: &[DiscoveredPrefix],
) -> BridgeResult<JObjectArray<'l>> {
    let class = env.find_class(jni_str!("net/clat/core/DiscoveredPrefix"))?;
    let n = i32::try_from(found.len()).unwrap_or(i32::MAX);
    let arr = env.new_object_array(n, &class, JObject::null())?;
    for (i, p) in found.iter().enumerate().take(n as usize) {
        let prefix = JString::new(env, p.prefix.to_string())?;
        let source = JString::new(env, crate::engine::source_name(p.source))?;
        let ttl = i64::try_from(p.lifetime.as_secs()).unwrap_or(i64::MAX);
        let obj = env.new_object(
            &class,
            jni_sig!("(Ljava/lang/String;Ljava/lang/String;J)V"),
            &[
                JValue::Object(&prefix),
                JValue::Object(&source),
                JValue::Long(ttl),
            ],
        )?;
        arr.set_element(env, i, &obj)?;
        env.delete_local_ref(obj);
        env.delete_local_ref(prefix);
        env.delete_local_ref(source);
    }
    Ok(arr)
}

/// A new `net.clat.core.FlowEventBatch(records: long[], names: String[])`
/// holding `events` as [`crate::flow_records::encode`] lays them out (keep
/// the constructor in step with the Kotlin class): two arrays and a string
/// per name, no object per event.
pub fn new_flow_event_batch<'l>(
    env: &mut Env<'l>,
    events: &[clat_engine::FlowEvent],
) -> BridgeResult<JObject<'l>> {
    let (records, names) = crate::flow_records::encode(events);
    let records = new_long_array(env, &records)?;
    let arr = JObjectArray::<JString>::new(env, names.len(), JString::null())?;
    for (i, name) in names.iter().enumerate() {
        if let Some(n) = name {
            let js = JString::new(env, n)?;
            arr.set_element(env, i, &js)?;
            env.delete_local_ref(js);
        }
    }
    let class = env.find_class(jni_str!("net/clat/core/FlowEventBatch"))?;
    let obj = env.new_object(
        &class,
        jni_sig!("([J[Ljava/lang/String;)V"),
        &[JValue::Object(&records), JValue::Object(&arr)],
    )?;
    Ok(obj)
}
