//! The RFC 7050 answer path on arbitrary bytes: the DNS message parser
//! (hickory-proto) and our interpretation of whatever it accepts, plus
//! `extract_prefixes` on arbitrary AAAA record sets. Never panic; every
//! prefix found has an RFC 6052 length and really embeds a well-known
//! address of ipv4only.arpa in one of the records.
#![no_main]

use clat_discovery::extract::{embedded_v4, extract_prefixes, RFC6052_LENGTHS, WKAS};
use clat_discovery::rfc7050::interpret;
use hickory_proto::op::Message;
use libfuzzer_sys::fuzz_target;
use std::net::{Ipv6Addr, SocketAddr};

fn check(found: &[ipnet::Ipv6Net], records: &[(Ipv6Addr, u32)]) {
    for p in found {
        assert!(RFC6052_LENGTHS.contains(&p.prefix_len()), "{p}");
        assert!(
            records.iter().any(|(a, _)| p.contains(a)
                && embedded_v4(*a, p.prefix_len()).is_some_and(|v4| WKAS.contains(&v4))),
            "{p} not backed by a record: {records:?}"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let resolver: SocketAddr = "[2001:db8:1::53]:53".parse().unwrap();
    if let Ok(msg) = Message::from_vec(data) {
        if let Ok(found) = interpret(resolver, &msg) {
            let recs: Vec<(Ipv6Addr, u32)> = msg
                .answers
                .iter()
                .filter_map(|r| match &r.data {
                    hickory_proto::rr::RData::AAAA(a) => Some((a.0, r.ttl)),
                    _ => None,
                })
                .collect();
            assert!(!found.is_empty());
            check(&found.iter().map(|d| d.prefix).collect::<Vec<_>>(), &recs);
        }
    }
    // The same bytes as raw records: 16-byte address + 4-byte TTL each.
    let recs: Vec<(Ipv6Addr, u32)> = data
        .chunks_exact(20)
        .map(|c| {
            let mut a = [0u8; 16];
            a.copy_from_slice(&c[..16]);
            (
                Ipv6Addr::from(a),
                u32::from_be_bytes([c[16], c[17], c[18], c[19]]),
            )
        })
        .collect();
    if let Ok(found) = extract_prefixes(&recs) {
        check(&found.iter().map(|f| f.prefix).collect::<Vec<_>>(), &recs);
    }
});
