//! Which failure RFC 7050 discovery reports when every resolver fails, with
//! real responders on loopback: an answer that contradicts itself is the
//! most telling (the network has a DNS64, and it is broken), then "no
//! DNS64" (NXDOMAIN, RFC 7050 section 3), then a refusal, then silence.

mod support;

use clat_discovery::{discover_rfc7050, DiscoveryError};
use clat_protect::NoProtect;
use std::net::SocketAddr;
use std::time::Duration;
use support::{synth, Behaviour, Responder};

/// .170 under one prefix and .171 under another: no DNS64 answers so.
fn contradicting() -> Behaviour {
    let mut recs = synth("2001:db8:64::/96", 60);
    recs.truncate(1);
    recs.push(synth("2001:db8:a00::/40", 60)[1]);
    Behaviour::Answer(recs)
}

fn refused_port() -> SocketAddr {
    let s = std::net::UdpSocket::bind("[::1]:0").unwrap();
    s.local_addr().unwrap()
}

#[test]
fn an_inconsistent_answer_beats_nxdomain_whatever_the_order() {
    let bad = Responder::start("::1", contradicting());
    let nx = Responder::start("::1", Behaviour::NxDomain);
    for order in [[bad.addr, nx.addr], [nx.addr, bad.addr]] {
        let e = discover_rfc7050(&order, Duration::from_secs(2), &NoProtect).unwrap_err();
        match e {
            DiscoveryError::Inconsistent { resolver, .. } => assert_eq!(resolver, bad.addr),
            other => panic!("expected the inconsistent answer, got {other}"),
        }
    }
}

#[test]
fn nxdomain_beats_a_refusal() {
    let nx = Responder::start("::1", Behaviour::NxDomain);
    let dead = refused_port();
    let e = discover_rfc7050(&[dead, nx.addr], Duration::from_secs(2), &NoProtect).unwrap_err();
    match e {
        DiscoveryError::NoDns64 { resolver, .. } => assert_eq!(resolver, nx.addr),
        other => panic!("expected NXDOMAIN's no-DNS64, got {other}"),
    }
}
