//! `PrefixMonitor` ends its thread when it is stopped or dropped: the
//! callback (and whatever it holds, such as the engine's handle) is gone
//! when `stop` returns, even while a DNS query is running.

mod support;

use clat_discovery::{MonitorConfig, PrefixMonitor};
use std::sync::Arc;
use std::time::Duration;
use support::{Behaviour, Responder};

/// A monitor whose thread is inside a 800 ms RFC 7050 query to a silent
/// resolver, and whose callback holds a clone of the returned token.
fn busy_monitor(r: &Responder) -> (PrefixMonitor, Arc<()>) {
    let mut cfg = MonitorConfig::new(vec![r.addr], Arc::new(clat_protect::NoProtect));
    cfg.query_timeout = Duration::from_millis(800);
    let token = Arc::new(());
    let held = token.clone();
    let m = PrefixMonitor::start(
        cfg,
        Box::new(move |_| {
            let _ = &held;
        }),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(150));
    assert_eq!(Arc::strong_count(&token), 2, "the callback holds the token");
    (m, token)
}

#[test]
fn stop_waits_for_the_thread() {
    let r = Responder::start("::1", Behaviour::Silent);
    let (m, token) = busy_monitor(&r);
    m.stop();
    assert_eq!(
        Arc::strong_count(&token),
        1,
        "thread still running after stop"
    );
}

#[test]
fn drop_waits_for_the_thread() {
    let r = Responder::start("::1", Behaviour::Silent);
    let (m, token) = busy_monitor(&r);
    drop(m);
    assert_eq!(
        Arc::strong_count(&token),
        1,
        "thread still running after drop"
    );
}
