//! An idle monitor does not wake up (DESIGN.md: no periodic polling when
//! idle, a phone's battery pays for every wake-up). With a configured
//! prefix there is nothing to re-validate and nothing expires, so its
//! thread sleeps in poll(2) without a timeout. Measured as the process's
//! voluntary context switches while the test thread sleeps; this file has
//! one test so that no other test thread adds to them.

use clat_discovery::{MonitorConfig, PrefixMonitor};
use std::sync::{mpsc, Arc};
use std::time::Duration;

fn voluntary_switches() -> i64 {
    // SAFETY: getrusage fills the zeroed struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) }, 0);
    ru.ru_nvcsw
}

#[test]
fn idle_monitor_does_not_wake_up() {
    let mut cfg = MonitorConfig::new(vec![], Arc::new(clat_protect::NoProtect));
    cfg.configured = Some("64:ff9b::/96".parse().unwrap());
    let (tx, rx) = mpsc::channel();
    let m = PrefixMonitor::start(cfg, Box::new(move |p| tx.send(p).unwrap())).unwrap();
    rx.recv_timeout(Duration::from_secs(5)).unwrap().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let before = voluntary_switches();
    std::thread::sleep(Duration::from_millis(500));
    let woke = voluntary_switches() - before;
    assert!(
        woke < 50,
        "{woke} voluntary context switches in 500 ms of idling"
    );
    m.stop();
}
