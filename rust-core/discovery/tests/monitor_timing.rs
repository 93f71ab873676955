//! When `PrefixMonitor` asks again (RFC 7050 section 5, and the monitor's
//! back-off), counted as queries reaching a loopback responder: an answer
//! is trusted for its TTL, a definite "no DNS64" for `min_revalidate`, and
//! silence is retried after `retry`, doubling each time.

mod support;

use clat_discovery::{MonitorConfig, PrefixMonitor};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use support::{synth, Behaviour, Responder};

fn start(r: &Responder, min_revalidate_ms: u64, retry_ms: u64) -> PrefixMonitor {
    let mut cfg = MonitorConfig::new(vec![r.addr], Arc::new(clat_protect::NoProtect));
    cfg.query_timeout = Duration::from_millis(100);
    cfg.min_revalidate = Duration::from_millis(min_revalidate_ms);
    cfg.retry = Duration::from_millis(retry_ms);
    PrefixMonitor::start(cfg, Box::new(|_| {})).unwrap()
}

fn queries(r: &Responder) -> usize {
    r.udp_queries.load(Ordering::SeqCst)
}

/// An answer with TTL 300 s is not asked again within the next second.
#[test]
fn an_answer_is_trusted_for_its_ttl() {
    let r = Responder::start("::1", Behaviour::Answer(synth("2001:db8:64::/96", 300)));
    let m = start(&r, 200, 50);
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(queries(&r), 1);
    m.stop();
}

/// NXDOMAIN is asked again after min_revalidate (700 ms), not at once.
#[test]
fn no_dns64_is_asked_again_after_min_revalidate() {
    let r = Responder::start("::1", Behaviour::NxDomain);
    let m = start(&r, 700, 50);
    std::thread::sleep(Duration::from_millis(450));
    assert_eq!(queries(&r), 1, "asked again before min_revalidate");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(queries(&r) >= 2, "not asked again after min_revalidate");
    m.stop();
}

/// Silence: rounds of 100 ms, retried after 200, 400, 800 ms... so rounds
/// start at about 0, 0.3, 0.8 and 1.7 s: four in the first two seconds
/// (a halving or constant back-off would make 7 or more).
#[test]
fn silence_backs_off_doubling() {
    let r = Responder::start("::1", Behaviour::Silent);
    let m = start(&r, 60_000, 200);
    std::thread::sleep(Duration::from_millis(2000));
    let n = queries(&r);
    assert!((3..=5).contains(&n), "{n} queries in 2 s");
    m.stop();
}
