//! What `PrefixMonitor::start` opens: the PREF64 listener (RFC 8781 through
//! Linux netlink) only when no prefix is configured, since configuration
//! beats every other source (lib.rs, RFC 8781 section 5 order).

use clat_discovery::{MonitorConfig, PrefixMonitor, PrefixSource};
use std::io::ErrorKind;
use std::sync::{mpsc, Arc};
use std::time::Duration;

fn config(interface: &str) -> MonitorConfig {
    let mut cfg = MonitorConfig::new(vec![], Arc::new(clat_protect::NoProtect));
    cfg.pref64_interface = Some(interface.to_string());
    cfg
}

/// Without a configured prefix the listener is opened on the named
/// interface, so a name that does not exist is an error at start, not a
/// monitor that silently never hears an RA.
#[test]
fn pref64_on_a_missing_interface_is_an_error_at_start() {
    match PrefixMonitor::start(config("no-such-if0"), Box::new(|_| {})) {
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::NotFound);
            assert!(e.to_string().contains("no-such-if0"), "{e}");
        }
        Ok(_) => panic!("started without its PREF64 listener"),
    }
    // On an interface that exists (loopback) the listener opens.
    let m = PrefixMonitor::start(config("lo"), Box::new(|_| {})).expect("listener on lo");
    assert_eq!(m.current(), None, "no RA, no resolver: no prefix");
    m.stop();
}

/// With a configured prefix nothing else is asked: the interface is not
/// even looked up, and the configured prefix is reported.
#[test]
fn configured_prefix_needs_no_pref64_listener() {
    let mut cfg = config("no-such-if0");
    cfg.configured = Some("64:ff9b::/96".parse().unwrap());
    let (tx, rx) = mpsc::channel();
    let m = PrefixMonitor::start(cfg, Box::new(move |p| tx.send(p).unwrap()))
        .expect("a configured prefix needs no interface");
    let got = rx.recv_timeout(Duration::from_secs(5)).unwrap().unwrap();
    assert_eq!(got.source, PrefixSource::Config);
    assert_eq!(got.prefix.to_string(), "64:ff9b::/96");
    m.stop();
}
