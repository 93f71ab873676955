//! An idle monitor does not wake up (DESIGN.md: no periodic polling when
//! idle, a phone's battery pays for every wake-up). With a configured
//! prefix there is nothing to re-validate and nothing expires, so its
//! thread sleeps in poll(2) on its wake-up socket alone, without a timeout.
//! Measured as the process's voluntary context switches and CPU time while
//! the test thread sleeps; this file has one test so that no other test
//! thread adds to them. Standard output is pointed at /dev/null meanwhile
//! (always readable): polling any descriptor but its own would spin.

use clat_discovery::{MonitorConfig, PrefixMonitor};
use std::sync::{mpsc, Arc};
use std::time::Duration;

/// (voluntary context switches, CPU microseconds) of the whole process.
fn usage() -> (i64, i64) {
    // SAFETY: rusage is plain data, for which all zeroes is valid.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage fills the struct it is given, valid for the call.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    assert_eq!(rc, 0);
    let us = |t: libc::timeval| t.tv_sec * 1_000_000 + t.tv_usec;
    (ru.ru_nvcsw, us(ru.ru_utime) + us(ru.ru_stime))
}

#[test]
fn idle_monitor_does_not_wake_up() {
    let devnull = std::fs::File::open("/dev/null").unwrap();
    use std::os::fd::AsRawFd;
    // SAFETY: dup/dup2 on descriptors this process owns; fd 1 is restored
    // before the test returns.
    let saved = unsafe { libc::dup(1) };
    assert!(saved >= 0);
    // SAFETY: as above.
    let rc = unsafe { libc::dup2(devnull.as_raw_fd(), 1) };
    assert_eq!(rc, 1);

    let mut cfg = MonitorConfig::new(vec![], Arc::new(clat_protect::NoProtect));
    cfg.configured = Some("64:ff9b::/96".parse().unwrap());
    let (tx, rx) = mpsc::channel();
    let m = PrefixMonitor::start(cfg, Box::new(move |p| tx.send(p).unwrap())).unwrap();
    rx.recv_timeout(Duration::from_secs(5)).unwrap().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let (sw0, cpu0) = usage();
    std::thread::sleep(Duration::from_millis(500));
    let (sw1, cpu1) = usage();
    m.stop();
    // SAFETY: as above; `saved` is ours and closed once.
    let rc = unsafe { libc::dup2(saved, 1) };
    assert_eq!(rc, 1);
    // SAFETY: as above.
    unsafe { libc::close(saved) };

    let (woke, cpu_ms) = (sw1 - sw0, (cpu1 - cpu0) / 1000);
    assert!(
        woke < 50,
        "{woke} voluntary context switches in 500 ms of idling"
    );
    assert!(cpu_ms < 20, "{cpu_ms} ms of CPU in 500 ms of idling");
}
