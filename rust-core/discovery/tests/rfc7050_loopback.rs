//! RFC 7050 discovery against a real DNS responder on loopback: real UDP
//! and TCP sockets, real timeouts.

mod support;

use clat_discovery::{discover_rfc7050, DiscoveryError, PrefixSource};
use clat_protect::NoProtect;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{synth, Behaviour, Responder};

fn strs(v: &[clat_discovery::DiscoveredPrefix]) -> Vec<String> {
    v.iter().map(|p| p.to_string()).collect()
}

#[test]
fn udp_answer_every_length() {
    for p in [
        "2001:db8::/32",
        "2001:db8:a00::/40",
        "2001:db8:b48::/48",
        "2001:db8:c56:5600::/56",
        "2001:db8:d64:6464::/64",
        "2001:db8:e96:9696::/96",
    ] {
        let r = Responder::start("::1", Behaviour::Answer(synth(p, 300)));
        let got = discover_rfc7050(&[r.addr], Duration::from_secs(2), &NoProtect).unwrap();
        assert_eq!(strs(&got), vec![format!("{p} rfc7050 ttl=300s")]);
        assert_eq!(r.tcp_queries.load(Ordering::SeqCst), 0);
    }
}

#[test]
fn two_prefixes_in_answer_order_with_their_ttls() {
    let mut recs = synth("2001:db8:64::/96", 300);
    recs.extend(synth("2001:db8:a00::/40", 120));
    let r = Responder::start("127.0.0.1", Behaviour::Answer(recs));
    let got = discover_rfc7050(&[r.addr], Duration::from_secs(2), &NoProtect).unwrap();
    assert_eq!(
        strs(&got),
        vec![
            "2001:db8:64::/96 rfc7050 ttl=300s",
            "2001:db8:a00::/40 rfc7050 ttl=120s"
        ]
    );
}

#[test]
fn truncated_udp_falls_back_to_tcp() {
    let r = Responder::start("::1", Behaviour::Truncate(synth("2001:db8:64::/96", 60)));
    let got = discover_rfc7050(&[r.addr], Duration::from_secs(2), &NoProtect).unwrap();
    assert_eq!(got[0].prefix.to_string(), "2001:db8:64::/96");
    assert_eq!(got[0].source, PrefixSource::Rfc7050);
    assert_eq!(r.udp_queries.load(Ordering::SeqCst), 1);
    assert_eq!(r.tcp_queries.load(Ordering::SeqCst), 1);
}

#[test]
fn every_socket_goes_through_the_protector() {
    let r = Responder::start("::1", Behaviour::Truncate(synth("2001:db8:64::/96", 60)));
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let protector = move |_fd: RawFd| {
        c.fetch_add(1, Ordering::SeqCst);
        Ok(())
    };
    discover_rfc7050(&[r.addr], Duration::from_secs(2), &protector).unwrap();
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "one UDP and one TCP socket"
    );

    // A protector that refuses makes the query fail, it is not skipped.
    let refuse = |_fd: RawFd| Err(std::io::Error::from_raw_os_error(libc::EPERM));
    let e = discover_rfc7050(&[r.addr], Duration::from_secs(1), &refuse).unwrap_err();
    assert!(matches!(e, DiscoveryError::Failed { .. }), "{e}");
}

#[test]
fn silent_resolver_times_out_on_time() {
    let r = Responder::start("::1", Behaviour::Silent);
    let t = Instant::now();
    let e = discover_rfc7050(&[r.addr], Duration::from_millis(500), &NoProtect).unwrap_err();
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(490) && took < Duration::from_millis(1500),
        "{took:?}"
    );
    assert_eq!(
        e.to_string(),
        format!("no NAT64 prefix: no answer from {} within 500ms", r.addr)
    );
}

#[test]
fn answers_with_another_id_are_ignored() {
    let r = Responder::start("127.0.0.1", Behaviour::WrongId);
    let e = discover_rfc7050(&[r.addr], Duration::from_millis(300), &NoProtect).unwrap_err();
    assert!(matches!(e, DiscoveryError::Timeout { .. }), "{e}");
}

#[test]
fn nxdomain_means_no_dns64() {
    let r = Responder::start("::1", Behaviour::NxDomain);
    let t = Instant::now();
    let e = discover_rfc7050(&[r.addr], Duration::from_secs(3), &NoProtect).unwrap_err();
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "a definite answer needs no waiting"
    );
    assert!(e.is_definite());
    assert_eq!(
        e.to_string(),
        format!(
            "no NAT64 prefix: resolver {} answered ipv4only.arpa without a DNS64 synthesis (NXDOMAIN)",
            r.addr
        )
    );
}

#[test]
fn empty_answer_means_no_dns64() {
    let r = Responder::start("::1", Behaviour::Answer(vec![]));
    let e = discover_rfc7050(&[r.addr], Duration::from_secs(1), &NoProtect).unwrap_err();
    assert!(matches!(e, DiscoveryError::NoDns64 { .. }), "{e}");
}

#[test]
fn inconsistent_answer_is_reported() {
    let mut recs = synth("2001:db8:64::/96", 60);
    recs.truncate(1); // .170 under /96
    recs.push(synth("2001:db8:a00::/40", 60)[1]); // .171 under /40
    let r = Responder::start("::1", Behaviour::Answer(recs));
    let e = discover_rfc7050(&[r.addr], Duration::from_secs(1), &NoProtect).unwrap_err();
    assert!(matches!(e, DiscoveryError::Inconsistent { .. }), "{e}");
}

#[test]
fn first_good_answer_wins_over_silence_and_refusal() {
    let silent = Responder::start("::1", Behaviour::Silent);
    let good = Responder::start("::1", Behaviour::Answer(synth("2001:db8:64::/96", 60)));
    // A port with nothing behind it: ICMP port unreachable -> refused.
    let dead: SocketAddr = {
        let s = std::net::UdpSocket::bind("[::1]:0").unwrap();
        s.local_addr().unwrap()
    };
    let t = Instant::now();
    let got = discover_rfc7050(
        &[silent.addr, dead, good.addr],
        Duration::from_secs(3),
        &NoProtect,
    )
    .unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "parallel, not one after the other: {:?}",
        t.elapsed()
    );
    assert_eq!(got[0].prefix.to_string(), "2001:db8:64::/96");
}

#[test]
fn refused_resolver_fails_fast_with_a_clear_message() {
    let dead: SocketAddr = {
        let s = std::net::UdpSocket::bind("[::1]:0").unwrap();
        s.local_addr().unwrap()
    };
    let t = Instant::now();
    let e = discover_rfc7050(&[dead], Duration::from_secs(3), &NoProtect).unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(1));
    assert!(e.to_string().contains("connection refused"), "{e}");
}

#[test]
fn no_resolvers() {
    assert_eq!(
        discover_rfc7050(&[], Duration::from_secs(1), &NoProtect).unwrap_err(),
        DiscoveryError::NoResolvers
    );
}

#[test]
fn a_lost_query_is_sent_again() {
    let r = Responder::start("::1", Behaviour::DropFirst(synth("2001:db8:64::/96", 60)));
    let t = Instant::now();
    let got = discover_rfc7050(&[r.addr], Duration::from_secs(3), &NoProtect).unwrap();
    let took = t.elapsed();
    assert_eq!(got[0].prefix.to_string(), "2001:db8:64::/96");
    assert_eq!(r.udp_queries.load(Ordering::SeqCst), 2);
    assert!(
        took >= clat_discovery::rfc7050::RESEND_AFTER && took < Duration::from_secs(2),
        "{took:?}"
    );
}

#[test]
fn silence_is_asked_again_about_once_a_second() {
    let r = Responder::start("::1", Behaviour::Silent);
    let _ = discover_rfc7050(&[r.addr], Duration::from_millis(2500), &NoProtect).unwrap_err();
    // t=0, 1 s, 2 s.
    assert_eq!(r.udp_queries.load(Ordering::SeqCst), 3);
}
