//! PrefixMonitor against a loopback responder whose answer changes.

mod support;

use clat_discovery::{DiscoveredPrefix, MonitorConfig, PrefixMonitor};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{synth, Behaviour, Responder};

fn next(
    rx: &mpsc::Receiver<Option<DiscoveredPrefix>>,
    within: Duration,
) -> Option<DiscoveredPrefix> {
    rx.recv_timeout(within).expect("a callback in time")
}

#[test]
fn follows_the_dns64_when_the_ttl_runs_out() {
    let r = Responder::start("::1", Behaviour::Answer(synth("2001:db8:64::/96", 1)));
    let mut cfg = MonitorConfig::new(vec![r.addr], Arc::new(clat_protect::NoProtect));
    cfg.min_revalidate = Duration::from_millis(300);
    cfg.retry = Duration::from_millis(100);
    cfg.query_timeout = Duration::from_millis(500);
    let (tx, rx) = mpsc::channel();
    let m = PrefixMonitor::start(cfg, Box::new(move |p| tx.send(p).unwrap())).unwrap();

    let first = next(&rx, Duration::from_secs(3)).unwrap();
    assert_eq!(first.prefix.to_string(), "2001:db8:64::/96");
    assert_eq!(m.current().unwrap().prefix, first.prefix);

    // TTL 1 s: the next query comes after 1 s, and sees the new prefix.
    let t = Instant::now();
    r.set(Behaviour::Answer(synth("2001:db8:a00::/40", 1)));
    let second = next(&rx, Duration::from_secs(3)).unwrap();
    assert_eq!(second.prefix.to_string(), "2001:db8:a00::/40");
    assert!(
        t.elapsed() >= Duration::from_millis(500),
        "waited for the TTL: {:?}",
        t.elapsed()
    );

    // Silence keeps the last prefix (no callback).
    r.set(Behaviour::Silent);
    assert!(rx.recv_timeout(Duration::from_millis(2500)).is_err());
    assert_eq!(m.current().unwrap().prefix, second.prefix);

    // A definite "no DNS64" drops it.
    r.set(Behaviour::NxDomain);
    assert_eq!(next(&rx, Duration::from_secs(3)), None);
    assert_eq!(m.current(), None);

    let queries = r.udp_queries.load(std::sync::atomic::Ordering::SeqCst);
    assert!(queries < 40, "no hammering: {queries} queries");
    let t = Instant::now();
    m.stop();
    assert!(t.elapsed() < Duration::from_secs(1));
}

#[test]
fn respects_the_floor_for_a_zero_ttl() {
    let r = Responder::start("::1", Behaviour::Answer(synth("2001:db8:64::/96", 0)));
    let mut cfg = MonitorConfig::new(vec![r.addr], Arc::new(clat_protect::NoProtect));
    cfg.min_revalidate = Duration::from_millis(500);
    let (tx, rx) = mpsc::channel();
    let m = PrefixMonitor::start(cfg, Box::new(move |p| tx.send(p).unwrap())).unwrap();
    assert!(next(&rx, Duration::from_secs(3)).is_some());
    std::thread::sleep(Duration::from_millis(1600));
    let n = r.udp_queries.load(std::sync::atomic::Ordering::SeqCst);
    // Start + about three re-validations in 1.6 s with a 0.5 s floor.
    assert!((2..=5).contains(&n), "{n} queries");
    m.stop();
}

#[test]
fn revalidate_now_does_not_wait_for_the_ttl() {
    let r = Responder::start("::1", Behaviour::Answer(synth("2001:db8:64::/96", 300)));
    let cfg = MonitorConfig::new(vec![r.addr], Arc::new(clat_protect::NoProtect));
    let (tx, rx) = mpsc::channel();
    let m = PrefixMonitor::start(cfg, Box::new(move |p| tx.send(p).unwrap())).unwrap();
    assert_eq!(
        next(&rx, Duration::from_secs(3))
            .unwrap()
            .prefix
            .to_string(),
        "2001:db8:64::/96"
    );
    r.set(Behaviour::Answer(synth("2001:db8:a00::/40", 300)));
    // Without a nudge nothing happens for 300 s...
    assert!(rx.recv_timeout(Duration::from_millis(500)).is_err());
    // ...with one, the new prefix comes at once.
    m.revalidate_now();
    let got = next(&rx, Duration::from_secs(2)).unwrap();
    assert_eq!(got.prefix.to_string(), "2001:db8:a00::/40");
    assert_eq!(got.lifetime, Duration::from_secs(300));
    m.stop();
}

#[test]
fn new_resolvers_are_asked_at_once() {
    // Two networks' DNS64s with different prefixes (long TTLs: only the
    // change of resolvers can make the monitor ask again).
    let a = Responder::start("::1", Behaviour::Answer(synth("2001:db8:64::/96", 300)));
    let b = Responder::start("::1", Behaviour::Answer(synth("2001:db8:b00::/40", 300)));
    let cfg = MonitorConfig::new(vec![a.addr], Arc::new(clat_protect::NoProtect));
    let (tx, rx) = mpsc::channel();
    let m = PrefixMonitor::start(cfg, Box::new(move |p| tx.send(p).unwrap())).unwrap();
    let first = next(&rx, Duration::from_secs(3)).unwrap();
    assert_eq!(first.prefix.to_string(), "2001:db8:64::/96");
    m.set_resolvers(vec![b.addr]);
    let got = next(&rx, Duration::from_secs(3)).unwrap();
    assert_eq!(got.prefix.to_string(), "2001:db8:b00::/40");
    let asked_a = a.udp_queries.load(std::sync::atomic::Ordering::SeqCst);
    m.revalidate_now();
    assert!(
        rx.recv_timeout(Duration::from_millis(500)).is_err(),
        "same prefix: no change"
    );
    assert_eq!(
        a.udp_queries.load(std::sync::atomic::Ordering::SeqCst),
        asked_a,
        "the old resolver is not asked any more"
    );
    // No resolvers left: the RFC 7050 prefix is not kept as if current.
    m.set_resolvers(Vec::new());
    assert_eq!(next(&rx, Duration::from_secs(3)), None);
    m.stop();
}
