//! The running engines behind the handles, and the calls Kotlin makes on
//! them. JNI-free: takes and returns plain Rust values, so the logic (stale
//! handles, idempotent stop, releasing the protector) reads on its own.

use std::collections::HashMap;
use std::os::fd::{OwnedFd, RawFd};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use clat_discovery::{DiscoveredPrefix, PrefixSource};
use clat_engine::{Engine, EngineConfig, FlowEvent, FlowEvents};
use clat_protect::SocketProtector;

use crate::config;
use crate::error::{BridgeError, BridgeResult};
use crate::protector::JniProtector;
use crate::registry::{handle_id, stale_message, Registry};

/// One running engine and the Kotlin protector it calls.
pub struct Running {
    engine: Mutex<Engine>,
    protector: Arc<JniProtector>,
}

impl Running {
    fn engine(&self) -> MutexGuard<'_, Engine> {
        self.engine.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Every engine started through the bridge.
pub static ENGINES: LazyLock<Registry<Running>> = LazyLock::new(Registry::new);

/// The flow-event queues of engines started with `flowEvents` > 0, by
/// handle. Apart from [`ENGINES`] because a queue outlives its engine's
/// `stop`: the ends the engine emits as it stops (`NetworkChanged`) are
/// queued during `stop`, after the handle left [`ENGINES`], and the consumer
/// must still get them. [`await_flow_events`] removes the queue once it has
/// returned its last event. A consumer that never drains it (its thread
/// died) would leave it behind for good, once per engine started: each
/// [`start`] therefore drops the queues that have been closed for longer
/// than [`CLOSED_STREAM_GRACE`] ([`keep_stream`]).
static FLOW_STREAMS: LazyLock<Mutex<HashMap<u64, Stream>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// How long a stopped engine's events wait for their consumer. The app's
/// pump drains them within milliseconds of `stop`; a minute covers a
/// stalled one without keeping a dead one's queue.
const CLOSED_STREAM_GRACE: Duration = Duration::from_secs(60);

/// One engine's queue and when it was first seen closed by [`start`]'s
/// pruning (the engine does not say when it closed it).
struct Stream {
    events: FlowEvents,
    closed_seen: Option<Instant>,
}

fn flow_streams() -> MutexGuard<'static, HashMap<u64, Stream>> {
    FLOW_STREAMS.lock().unwrap_or_else(|p| p.into_inner())
}

/// Whether a queue stays in [`FLOW_STREAMS`] at `now`: open ones do; a
/// closed one is stamped the first time it is seen closed and dropped once
/// [`CLOSED_STREAM_GRACE`] has passed since.
fn keep_stream(closed_seen: &mut Option<Instant>, closed: bool, now: Instant) -> bool {
    if !closed {
        return true;
    }
    let since = *closed_seen.get_or_insert(now);
    now.saturating_duration_since(since) < CLOSED_STREAM_GRACE
}

/// Starts an engine; the TUN descriptor is closed on failure too (ownership
/// passed to us at the call).
pub fn start(tun: OwnedFd, config: EngineConfig, protector: JniProtector) -> BridgeResult<i64> {
    let prefix = config.prefix;
    let protector = Arc::new(protector);
    let dyn_protector: clat_protect::Protector = protector.clone();
    let engine = match Engine::start(tun, config, dyn_protector) {
        Ok(e) => e,
        Err(e) => {
            protector.release();
            return Err(BridgeError::Clat(format!("engine failed to start: {e}")));
        }
    };
    let events = engine.flow_events();
    let id = ENGINES.insert(Running {
        engine: Mutex::new(engine),
        protector,
    });
    if let Some(events) = events {
        let now = Instant::now();
        let mut streams = flow_streams();
        streams.retain(|_, s| keep_stream(&mut s.closed_seen, s.events.is_closed(), now));
        let closed_seen = None;
        streams.insert(
            id,
            Stream {
                events,
                closed_seen,
            },
        );
    }
    log::info!("engine {id} started (prefix {prefix})");
    // Ids are issued from 1 upwards and never reach i64::MAX in practice.
    Ok(id as i64)
}

fn running(handle: i64) -> BridgeResult<Arc<Running>> {
    handle_id(handle)
        .and_then(|id| ENGINES.get(id))
        .ok_or_else(|| BridgeError::IllegalState(stale_message(handle)))
}

/// Stops and forgets the engine. `Ok(false)` if the handle was not running
/// (stop is idempotent: a second stop, or a stop racing the first, is fine).
pub fn stop(handle: i64) -> BridgeResult<bool> {
    let Some(entry) = handle_id(handle).and_then(|id| ENGINES.remove(id)) else {
        return Ok(false);
    };
    let result = entry.engine().stop();
    // Whatever the engine said, Kotlin's object must not stay pinned.
    entry.protector.release();
    log::info!(
        "engine {handle} stopped after {} protect calls",
        entry.protector.calls()
    );
    result.map_err(|e| BridgeError::Clat(format!("engine stop failed: {e}")))?;
    Ok(true)
}

/// The counters as `name=value`.
/// Names of the values [`counters`] returns, in their order: the engine's
/// counters (`Stats::pairs`, a stable order) and `jni_protect_calls`. Kotlin
/// fetches them once.
pub fn counter_names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = clat_engine::Stats::default()
        .pairs()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    names.push("jni_protect_calls");
    names
}

/// The engine's counters, in the order of [`counter_names`] (no strings
/// built or parsed per update: the UI asks every few seconds).
pub fn counters(handle: i64) -> BridgeResult<Vec<i64>> {
    let entry = running(handle)?;
    let stats = entry.engine().stats();
    let mut out: Vec<i64> = stats
        .pairs()
        .into_iter()
        .map(|(_, v)| i64::try_from(v).unwrap_or(i64::MAX))
        .collect();
    out.push(i64::try_from(entry.protector.calls()).unwrap_or(i64::MAX));
    Ok(out)
}

/// Whether the engine's loop still runs (it ends on its own if the TUN
/// closes).
pub fn is_running(handle: i64) -> BridgeResult<bool> {
    Ok(running(handle)?.engine().is_running())
}

/// Why the loop ended, if it has.
pub fn exit_reason(handle: i64) -> BridgeResult<Option<String>> {
    Ok(running(handle)?.engine().exit_reason())
}

/// Switches to a new NAT64 prefix.
pub fn set_prefix(handle: i64, prefix: &str) -> BridgeResult<()> {
    let net = config::parse_prefix(prefix).map_err(BridgeError::IllegalArgument)?;
    let entry = running(handle)?;
    let engine = entry.engine();
    engine
        .set_prefix(net)
        .map_err(|e| BridgeError::Clat(format!("setPrefix failed: {e}")))
}

/// The upstream path of new IPv4 flows: native IPv4 (`native`) or the
/// NAT64 ([`clat_engine::Engine::set_ipv4_path`]: losing native resets the
/// native flows).
pub fn set_ipv4_path(handle: i64, native: bool) -> BridgeResult<()> {
    let entry = running(handle)?;
    let engine = entry.engine();
    engine
        .set_ipv4_path(config::ipv4_path(native))
        .map_err(|e| BridgeError::Clat(format!("setIpv4Path failed: {e}")))
}

/// The underlying network changed: new resolvers (if given), and upstream
/// flows reset.
pub fn network_changed(handle: i64, dns: Option<&[String]>) -> BridgeResult<()> {
    let servers = dns
        .map(config::parse_resolvers)
        .transpose()
        .map_err(BridgeError::IllegalArgument)?;
    let entry = running(handle)?;
    let engine = entry.engine();
    if let Some(servers) = servers {
        engine
            .set_upstream_dns(servers)
            .map_err(|e| BridgeError::Clat(format!("setting DNS servers failed: {e}")))?;
    }
    engine
        .network_changed()
        .map_err(|e| BridgeError::Clat(format!("networkChanged failed: {e}")))
}

/// Replaces the DNS relay's upstream resolvers and nothing else: unlike
/// [`network_changed`], no app flow is reset (only the relay's own upstream
/// sockets, whose queries are re-sent to the new resolvers).
pub fn set_dns(handle: i64, dns: &[String]) -> BridgeResult<()> {
    let servers = config::parse_resolvers(dns).map_err(BridgeError::IllegalArgument)?;
    let entry = running(handle)?;
    let engine = entry.engine();
    engine
        .set_upstream_dns(servers)
        .map_err(|e| BridgeError::Clat(format!("setDns failed: {e}")))
}

/// Blocks until the engine's loop has ended, then says why: `Some(reason)`
/// when it ended by itself, `None` when it was stopped. Neither the engine
/// lock nor the registry entry is held while waiting, so `stop` (which ends
/// the wait) and every other call go on meanwhile.
pub fn await_exit(handle: i64) -> BridgeResult<Option<String>> {
    let watch = running(handle)?.engine().exit_watch();
    watch.wait();
    Ok(watch.reason())
}

/// Waits up to `timeout_ms` (>= 0; 0 takes what is there without waiting)
/// for the engine's flow events ([`clat_engine::FlowEvents::wait`]) and
/// takes every waiting one. `Ok(None)`: none will ever come, because the
/// engine was started without a queue (`flowEvents` 0) or its loop has
/// ended and every event was taken. `Ok(Some(empty))`: the time ran out.
/// Events emitted while the engine stops are returned after `stop` too (the
/// queue outlives the engine, [`FLOW_STREAMS`]); once the last is taken, a
/// stopped handle is unknown like for every call. No lock is held while
/// waiting: `stop` goes on, and the queue closing when the engine thread
/// ends wakes the waiter at once.
pub fn await_flow_events(handle: i64, timeout_ms: i32) -> BridgeResult<Option<Vec<FlowEvent>>> {
    let timeout = u64::try_from(timeout_ms).map_err(|_| {
        BridgeError::IllegalArgument(format!("timeoutMs {timeout_ms} must not be negative"))
    })?;
    let id = handle_id(handle).ok_or_else(|| BridgeError::IllegalState(stale_message(handle)))?;
    let stream = flow_streams().get(&id).map(|s| s.events.clone());
    let Some(events) = stream else {
        // A running engine without a queue, or one whose queue was
        // drained: nothing will come. An unknown handle throws.
        running(handle)?;
        return Ok(None);
    };
    let got = events.wait(Duration::from_millis(timeout));
    if !got.is_empty() || !events.is_closed() {
        return Ok(Some(got));
    }
    // Closed: nothing is pushed after that, so one more take gets the
    // events pushed between the wait's drain and the close.
    let rest = events.take();
    if !rest.is_empty() {
        return Ok(Some(rest));
    }
    flow_streams().remove(&id);
    Ok(None)
}

/// RFC 7050 discovery: every prefix found (Kotlin gets them as
/// `DiscoveredPrefix` objects).
pub fn discover(
    resolvers: &[String],
    timeout_ms: i32,
    protector: &dyn SocketProtector,
) -> BridgeResult<Vec<DiscoveredPrefix>> {
    if timeout_ms <= 0 {
        return Err(BridgeError::IllegalArgument(format!(
            "timeoutMs {timeout_ms} must be positive"
        )));
    }
    let resolvers = config::parse_resolvers(resolvers).map_err(BridgeError::IllegalArgument)?;
    if resolvers.is_empty() {
        return Err(BridgeError::IllegalArgument(
            "at least one resolver is needed".into(),
        ));
    }
    let found = clat_discovery::discover_rfc7050(
        &resolvers,
        Duration::from_millis(timeout_ms as u64),
        protector,
    )
    .map_err(|e| BridgeError::Clat(format!("RFC 7050 discovery failed: {e}")))?;
    Ok(found)
}

/// The name Kotlin sees for where a prefix came from.
pub fn source_name(s: PrefixSource) -> &'static str {
    match s {
        PrefixSource::Config => "config",
        PrefixSource::Pref64 => "pref64",
        PrefixSource::Rfc7050 => "rfc7050",
    }
}

/// Test aid: a TUN device on Linux hosts. The caller owns the returned
/// descriptor.
#[cfg(target_os = "linux")]
pub fn open_tun(name: &str) -> BridgeResult<RawFd> {
    use std::os::fd::IntoRawFd;
    let (fd, _actual) = clat_engine::open_tun(name)
        .map_err(|e| BridgeError::Clat(format!("cannot open TUN {name:?}: {e}")))?;
    Ok(fd.into_raw_fd())
}

/// On Android the VpnService creates the TUN (`VpnService.Builder.establish`);
/// an app cannot open `/dev/net/tun` itself. The function still exists, so
/// that every `external fun` of `ClatNative` has its export in every build of
/// the library (checked on the APK), and says so instead of
/// `UnsatisfiedLinkError`.
#[cfg(not(target_os = "linux"))]
pub fn open_tun(name: &str) -> BridgeResult<RawFd> {
    Err(BridgeError::Clat(format!(
        "cannot open TUN {name:?}: on Android the TUN comes from VpnService.Builder.establish()"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_flow_stream_is_kept_for_the_grace_then_dropped() {
        let t0 = Instant::now();
        let mut seen = None;
        // Open: kept, not stamped.
        assert!(keep_stream(&mut seen, false, t0));
        assert_eq!(seen, None);
        // Closed: stamped at the first look, kept through the grace.
        assert!(keep_stream(&mut seen, true, t0));
        assert_eq!(seen, Some(t0));
        let almost = t0 + CLOSED_STREAM_GRACE - Duration::from_millis(1);
        assert!(keep_stream(&mut seen, true, almost));
        assert!(!keep_stream(&mut seen, true, t0 + CLOSED_STREAM_GRACE));
        // The stamp is the first look, not the latest.
        assert_eq!(seen, Some(t0));
    }

    #[test]
    fn calls_on_unknown_handles_are_illegal_state() {
        for h in [0, -1, 987_654_321] {
            match counters(h) {
                Err(BridgeError::IllegalState(m)) => assert_eq!(m, stale_message(h)),
                other => panic!("handle {h}: {other:?}"),
            }
            assert!(matches!(
                set_prefix(h, "64:ff9b::/96"),
                Err(BridgeError::IllegalState(_))
            ));
            assert!(matches!(
                network_changed(h, None),
                Err(BridgeError::IllegalState(_))
            ));
            assert!(matches!(is_running(h), Err(BridgeError::IllegalState(_))));
            assert!(matches!(
                set_dns(h, &["[2001:db8::53]:53".into()]),
                Err(BridgeError::IllegalState(_))
            ));
            assert!(matches!(await_exit(h), Err(BridgeError::IllegalState(_))));
            assert!(matches!(
                await_flow_events(h, 0),
                Err(BridgeError::IllegalState(_))
            ));
            // stop is idempotent: unknown is not an error.
            assert!(!stop(h).unwrap());
        }
    }

    #[test]
    fn set_prefix_checks_the_prefix_before_the_handle() {
        for bad in ["2001:db8::/33", "2001:db8:0:0:ff00::/96"] {
            assert!(
                matches!(set_prefix(12345, bad), Err(BridgeError::IllegalArgument(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn await_flow_events_checks_the_timeout_before_the_handle() {
        match await_flow_events(12345, -1) {
            Err(BridgeError::IllegalArgument(m)) => assert!(m.contains("timeoutMs -1"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn set_dns_checks_the_resolvers_before_the_handle() {
        assert!(matches!(
            set_dns(12345, &["not an address".into()]),
            Err(BridgeError::IllegalArgument(_))
        ));
    }

    #[test]
    fn discover_rejects_bad_arguments_before_any_io() {
        let p = clat_protect::NoProtect;
        assert!(matches!(
            discover(&["[::1]:53".into()], 0, &p),
            Err(BridgeError::IllegalArgument(_))
        ));
        assert!(matches!(
            discover(&[], 100, &p),
            Err(BridgeError::IllegalArgument(_))
        ));
        assert!(matches!(
            discover(&["x".into()], 100, &p),
            Err(BridgeError::IllegalArgument(_))
        ));
    }

    /// A link-local address of this host and its interface name, from
    /// /proc/net/if_inet6 (scope 0x20 = link), or None.
    fn host_link_local() -> Option<(std::net::Ipv6Addr, String)> {
        let text = std::fs::read_to_string("/proc/net/if_inet6").ok()?;
        text.lines().find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 6 || f[3] != "20" || f[5] == "lo" {
                return None;
            }
            let bits = u128::from_str_radix(f[0], 16).ok()?;
            Some((std::net::Ipv6Addr::from(bits), f[5].to_string()))
        })
    }

    /// Discovery through a resolver known only as `fe80::...%ifname`, on a
    /// real socket: the zone reaches the query socket as its scope id. A
    /// one-shot DNS64 stand-in on the host's own link-local address answers
    /// ipv4only.arpa AAAA with 64:ff9b::192.0.0.170. Skipped on hosts
    /// without a link-local address.
    #[test]
    fn discovery_works_through_a_link_local_resolver() {
        let Some((ll, ifname)) = host_link_local() else {
            eprintln!("skipped: no link-local address on this host");
            return;
        };
        let std::net::SocketAddr::V6(resolver) =
            config::parse_resolver(&format!("{ll}%{ifname}")).unwrap()
        else {
            unreachable!()
        };
        assert_ne!(resolver.scope_id(), 0);
        let server =
            std::net::UdpSocket::bind(std::net::SocketAddrV6::new(ll, 0, 0, resolver.scope_id()));
        let Ok(server) = server else {
            eprintln!("skipped: cannot bind {ll}%{ifname} (DAD pending?)");
            return;
        };
        let port = server.local_addr().unwrap().port();
        let t = std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            let (n, from) = server.recv_from(&mut buf).unwrap();
            let mut r = buf[..n].to_vec();
            r[2] |= 0x80; // QR
            r[7] = 1; // ANCOUNT = 1
            r.extend_from_slice(&[0xc0, 0x0c, 0, 28, 0, 1, 0, 0, 0x01, 0x2c, 0, 16]);
            r.extend_from_slice(
                &"64:ff9b::c000:aa"
                    .parse::<std::net::Ipv6Addr>()
                    .unwrap()
                    .octets(),
            );
            server.send_to(&r, from).unwrap();
            from
        });
        let found = discover(
            &[format!("[{ll}%{ifname}]:{port}")],
            3000,
            &clat_protect::NoProtect,
        )
        .unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].prefix, "64:ff9b::/96".parse().unwrap());
        assert_eq!(found[0].source, PrefixSource::Rfc7050);
        assert_eq!(found[0].lifetime, Duration::from_secs(300));
        let from = t.join().unwrap();
        assert_eq!(from.ip(), std::net::IpAddr::V6(ll));
    }

    #[test]
    fn prefix_sources_have_kotlin_names() {
        assert_eq!(source_name(PrefixSource::Rfc7050), "rfc7050");
        assert_eq!(source_name(PrefixSource::Pref64), "pref64");
        assert_eq!(source_name(PrefixSource::Config), "config");
    }

    #[test]
    fn counter_names_are_stable_and_end_with_the_bridge_s_own() {
        let names = counter_names();
        assert_eq!(names.first(), Some(&"tun_rx_packets"));
        assert_eq!(names.last(), Some(&"jni_protect_calls"));
        assert!(names.contains(&"flows_tcp"));
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "duplicate counter names");
    }
}
