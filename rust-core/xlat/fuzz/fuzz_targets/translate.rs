//! Both entry points on arbitrary bytes, with two configurations (the
//! first byte picks one): never panic, and what comes out is well formed:
//! - every packet is of the IP version the outcome names (a translation
//!   from IPv4 is IPv6, a reply is of the input's version, a drop writes
//!   nothing), with a right IPv4 header checksum and right length fields,
//!   within the egress MTU;
//! - valid checksums in, valid checksums out: a whole TCP, UDP or ICMP
//!   packet whose transport checksum is right comes out (unfragmented) with
//!   a right transport checksum, and every ICMP error the translator makes
//!   has a right checksum.
//!
//! The checks parse with etherparse and sum with the RFC 1071 sum below,
//! not with the translator's own code, so a fault there cannot hide itself.
#![no_main]

use clat_xlat::{Config, Eam, EamTable, IpVersion, OutBuf, Outcome, Translator};
use etherparse::IpSlice;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn translators() -> &'static [Translator; 2] {
    static T: OnceLock<[Translator; 2]> = OnceLock::new();
    T.get_or_init(|| {
        let mut eam = EamTable::new();
        eam.insert(
            Eam::new(
                "192.0.0.4/32".parse().unwrap(),
                "2001:db8:1::2/128".parse().unwrap(),
            )
            .unwrap(),
        )
        .unwrap();
        let base = Config {
            pool6: Some("2001:db8:64::/96".parse().unwrap()),
            eam,
            self_v4: Some("192.0.0.1".parse().unwrap()),
            self_v6: Some("2001:db8:1::1".parse().unwrap()),
            pool6791_v4: Some("192.0.0.8".parse().unwrap()),
            ..Config::default()
        };
        let small = Config {
            pool6: Some("64:ff9b::/96".parse().unwrap()),
            mtu4: 68,
            mtu6: 1280,
            decrement_ttl: true,
            amend_udp_zero_checksum: true,
            ..base.clone()
        };
        [
            Translator::new(base).unwrap(),
            Translator::new(small).unwrap(),
        ]
    })
}

/// RFC 1071 one's-complement sum of `parts` (each but the last of even length).
fn ones_sum(parts: &[&[u8]]) -> u16 {
    let mut s: u64 = 0;
    for part in parts {
        for c in part.chunks(2) {
            s += u64::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)]));
        }
    }
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// The transport segment of a whole (unfragmented) TCP, UDP, ICMP or
/// ICMPv6 packet: its pseudo-header (empty for ICMP), its byte range in `p`
/// and the offset of its checksum field. `None` for anything else (a
/// fragment, another protocol, a header too short to hold the checksum, a
/// packet etherparse refuses).
fn transport(p: &[u8]) -> Option<(Vec<u8>, std::ops::Range<usize>, usize)> {
    let ip = IpSlice::from_slice(p).ok()?;
    let pl = ip.payload();
    if pl.fragmented {
        return None;
    }
    let seg = pl.payload;
    let proto = pl.ip_number.0;
    let (min, at) = match proto {
        6 => (20, 16),
        17 => (8, 6),
        1 | 58 => (4, 2),
        _ => return None,
    };
    if seg.len() < min {
        return None;
    }
    let pseudo: Vec<u8> = match &ip {
        IpSlice::Ipv4(v4) => {
            let h = v4.header();
            match proto {
                1 => Vec::new(),
                6 | 17 => {
                    let mut v = Vec::with_capacity(12);
                    v.extend_from_slice(&h.source());
                    v.extend_from_slice(&h.destination());
                    v.extend_from_slice(&[0, proto]);
                    v.extend_from_slice(&(u16::try_from(seg.len()).ok()?).to_be_bytes());
                    v
                }
                _ => return None,
            }
        }
        IpSlice::Ipv6(v6) => {
            if proto == 1 {
                return None;
            }
            let h = v6.header();
            let mut v = Vec::with_capacity(40);
            v.extend_from_slice(&h.source());
            v.extend_from_slice(&h.destination());
            v.extend_from_slice(&(seg.len() as u32).to_be_bytes());
            v.extend_from_slice(&[0, 0, 0, proto]);
            v
        }
    };
    let start = seg.as_ptr() as usize - p.as_ptr() as usize;
    Some((pseudo, start..start + seg.len(), at))
}

/// `Some(right)` when [`transport`] finds a segment whose checksum can be
/// checked (not an IPv4 UDP datagram without checksum), else `None`.
fn transport_checksum_ok(p: &[u8]) -> Option<bool> {
    let (pseudo, seg, at) = transport(p)?;
    let is_v4_udp = p[0] >> 4 == 4 && at == 6;
    if is_v4_udp && p[seg.start + 6] == 0 && p[seg.start + 7] == 0 {
        return None;
    }
    Some(ones_sum(&[&pseudo, &p[seg]]) == 0xffff)
}

/// Bit 2 of the selector byte: make the input's checksums right first (the
/// IPv4 header's, and the transport checksum of a whole TCP, UDP or ICMP
/// packet), so that the "valid in, valid out" check is reached often.
fn fix_checksums(p: &mut [u8]) {
    if p.len() >= 20 && p[0] >> 4 == 4 {
        let ihl = (usize::from(p[0] & 15) * 4).clamp(20, p.len());
        p[10] = 0;
        p[11] = 0;
        let c = !ones_sum(&[&p[..ihl]]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
    }
    let Some((pseudo, seg, at)) = transport(p) else {
        return;
    };
    p[seg.start + at] = 0;
    p[seg.start + at + 1] = 0;
    let mut c = !ones_sum(&[&pseudo, &p[seg.clone()]]);
    if c == 0 && at == 6 {
        c = 0xffff; // UDP: zero means "no checksum" (RFC 768)
    }
    p[seg.start + at..seg.start + at + 2].copy_from_slice(&c.to_be_bytes());
}

fn version(v: IpVersion) -> u8 {
    match v {
        IpVersion::V4 => 4,
        IpVersion::V6 => 6,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, pkt)) = data.split_first() else {
        return;
    };
    let mut fixed;
    let pkt = if sel & 4 != 0 {
        fixed = pkt.to_vec();
        fix_checksums(&mut fixed);
        &fixed[..]
    } else {
        pkt
    };
    let t = &translators()[(sel & 1) as usize];
    let from_v4 = sel & 2 == 0;
    let mut out = OutBuf::new();
    let o = if from_v4 {
        t.translate_4to6(pkt, &mut out)
    } else {
        t.translate_6to4(pkt, &mut out)
    };
    let want = match o {
        Outcome::Drop(_) => {
            assert!(out.is_empty());
            return;
        }
        Outcome::Forward(v) => {
            if from_v4 {
                assert_eq!(v, IpVersion::V6, "a translation from IPv4 is IPv6");
            }
            version(v)
        }
        Outcome::Reply(v) => {
            assert_eq!(
                v,
                if from_v4 {
                    IpVersion::V4
                } else {
                    IpVersion::V6
                },
                "a reply goes back to the input's side"
            );
            assert_eq!(out.iter().count(), 1, "a reply is one ICMP error");
            version(v)
        }
    };
    assert!(!out.is_empty());
    for p in out.iter() {
        assert_eq!(p[0] >> 4, want, "packet version matches the outcome {o:?}");
        match want {
            4 => {
                assert_eq!(ones_sum(&[&p[..20]]), 0xffff, "IPv4 header checksum");
                assert_eq!(u16::from_be_bytes([p[2], p[3]]) as usize, p.len());
                assert!(p.len() <= t.config().mtu4.max(576) as usize);
            }
            _ => {
                assert_eq!(u16::from_be_bytes([p[4], p[5]]) as usize + 40, p.len());
                assert!(p.len() <= t.config().mtu6 as usize);
            }
        }
    }
    let first = out.iter().next().unwrap();
    match o {
        Outcome::Reply(_) => {
            assert_eq!(
                transport_checksum_ok(first),
                Some(true),
                "our ICMP error's checksum"
            );
        }
        _ => {
            if out.iter().count() == 1 && transport_checksum_ok(pkt) == Some(true) {
                if let Some(ok) = transport_checksum_ok(first) {
                    assert!(ok, "valid transport checksum in, invalid out");
                }
            }
        }
    }
});
