//! Reassembly (rust-core/engine/src/frag.rs, private, compiled here from
//! its source) fed arbitrary fragment sequences, IPv4 and IPv6 (the first
//! byte's version picks). Never panic; every datagram it completes is a
//! well-formed packet of its family (IPv4: version 4, IHL 5, total length
//! = its length, header checksum right, not a fragment; IPv6: version 6,
//! Payload Length = its length - 40), and its memory stays
//! bounded (at most `MAX_SLOTS` reassemblies per family, none over 64 KiB).
#![no_main]

mod packet {
    pub use clat_engine::packet::*;
}
#[allow(dead_code)]
#[path = "../../src/frag.rs"]
mod frag;

use libfuzzer_sys::fuzz_target;
use std::time::{Duration, Instant};

fuzz_target!(|data: &[u8]| {
    let mut r = frag::Reassembler::<frag::V4>::default();
    let mut r6 = frag::Reassembler::<frag::V6>::default();
    let t0 = Instant::now();
    let mut rest = data;
    let mut step = 0u64;
    // [len_hi][len_lo][tick][bytes]: tick advances a fake clock (expiry).
    while rest.len() >= 3 {
        let n = (usize::from(u16::from_be_bytes([rest[0], rest[1]])) % 1600).min(rest.len() - 3);
        step += u64::from(rest[2]);
        let mut p = rest[3..3 + n].to_vec();
        rest = &rest[3 + n..];
        if p.first().is_some_and(|b| b >> 4 == 6) && p.len() >= 40 {
            // A Payload Length that fits, so that the walk reaches the
            // extension headers.
            let n = (p.len() - 40) as u16;
            p[4..6].copy_from_slice(&n.to_be_bytes());
            let Ok(f) = packet::parse_fragment6(&p) else {
                continue;
            };
            let now = t0 + Duration::from_millis(step * 50);
            let added = r6.add(frag::piece6(&f), now);
            let (slots, largest) = r6.footprint();
            assert!(slots <= frag::MAX_SLOTS, "{slots} reassemblies");
            assert!(largest <= 65535, "a {largest}-byte reassembly buffer");
            if let Ok(whole) = added {
                // What follows the unfragmentable part is the app's own
                // business (it may not parse); the header must be right.
                assert!(whole.len() >= 40 && whole[0] >> 4 == 6);
                let len = usize::from(u16::from_be_bytes([whole[4], whole[5]]));
                assert_eq!(len + 40, whole.len());
            }
            continue;
        }
        if p.len() >= 20 {
            // A valid header so that the fragment logic itself is exercised.
            p[0] = 0x40 | (p[0] & 0x0f).max(5);
            let ihl = usize::from(p[0] & 0x0f) * 4;
            if ihl > p.len() {
                p[0] = 0x45;
            }
            let n = p.len() as u16;
            p[2..4].copy_from_slice(&n.to_be_bytes());
            p[10] = 0;
            p[11] = 0;
            let ihl = usize::from(p[0] & 0x0f) * 4;
            let c = packet::checksum::finish(packet::checksum::sum(&p[..ihl], 0));
            p[10..12].copy_from_slice(&c.to_be_bytes());
        }
        let Ok(ip) = packet::parse_ip4(&p) else {
            continue;
        };
        if !ip.is_fragment() {
            continue;
        }
        let now = t0 + Duration::from_millis(step * 50);
        let added = r.add(frag::piece4(&ip, &p[..ip.total_len()]), now);
        let (slots, largest) = r.footprint();
        assert!(slots <= frag::MAX_SLOTS, "{slots} reassemblies");
        assert!(
            largest <= 20 + frag::MAX_PAYLOAD,
            "a {largest}-byte reassembly buffer"
        );
        if let Ok(whole) = added {
            let w = packet::parse_ip4(&whole).expect("reassembled datagram parses");
            assert_eq!(w.ihl, 20);
            assert_eq!(w.total_len(), whole.len());
            assert!(!w.is_fragment());
            assert_eq!(w.protocol, ip.protocol);
        }
    }
});
