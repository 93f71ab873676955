//! Test helpers written independently of the crate: packet builders and a
//! naive RFC 1071 checksum, plus checks that parse the output with
//! `etherparse` (a second parser).
#![allow(dead_code)]

use clat_xlat::{Config, Eam, EamTable, Translator};
use etherparse::{Ipv4Slice, Ipv6Slice};
use std::net::{Ipv4Addr, Ipv6Addr};

/// RFC 1071, the slow obvious way.
pub fn naive_sum(parts: &[&[u8]]) -> u16 {
    let mut bytes = Vec::new();
    for p in parts {
        bytes.extend_from_slice(p);
    }
    if bytes.len() % 2 == 1 {
        bytes.push(0);
    }
    let mut s: u64 = 0;
    for w in bytes.chunks(2) {
        s += ((w[0] as u64) << 8) | w[1] as u64;
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

pub fn naive_csum(parts: &[&[u8]]) -> u16 {
    !naive_sum(parts)
}

pub fn pseudo4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: usize) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&src.octets());
    v.extend_from_slice(&dst.octets());
    v.extend_from_slice(&[0, proto]);
    v.extend_from_slice(&(len as u16).to_be_bytes());
    v
}

pub fn pseudo6(src: Ipv6Addr, dst: Ipv6Addr, next: u8, len: usize) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&src.octets());
    v.extend_from_slice(&dst.octets());
    v.extend_from_slice(&(len as u32).to_be_bytes());
    v.extend_from_slice(&[0, 0, 0, next]);
    v
}

pub fn a4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}
pub fn a6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

/// IPv4 packet with a correct header checksum. `flags_off` is the 16-bit
/// flags+fragment offset field.
#[allow(clippy::too_many_arguments)]
pub fn ipv4(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    ttl: u8,
    tos: u8,
    id: u16,
    flags_off: u16,
    options: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    assert_eq!(options.len() % 4, 0);
    let ihl = 20 + options.len();
    let mut h = vec![0u8; ihl];
    h[0] = 0x40 | (ihl / 4) as u8;
    h[1] = tos;
    h[2..4].copy_from_slice(&((ihl + payload.len()) as u16).to_be_bytes());
    h[4..6].copy_from_slice(&id.to_be_bytes());
    h[6..8].copy_from_slice(&flags_off.to_be_bytes());
    h[8] = ttl;
    h[9] = proto;
    h[12..16].copy_from_slice(&src.octets());
    h[16..20].copy_from_slice(&dst.octets());
    h[20..].copy_from_slice(options);
    let c = naive_csum(&[&h]);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

pub const DF: u16 = 0x4000;
pub const MF: u16 = 0x2000;

/// IPv6 packet; `ext` is a chain of extension headers already encoded, whose
/// first next-header value is `first_next`.
pub fn ipv6(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    first_next: u8,
    hop: u8,
    tc: u8,
    ext: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let mut h = vec![0u8; 40];
    h[0] = 0x60 | (tc >> 4);
    h[1] = (tc << 4) | 0x0a; // a non-zero flow label, which must not survive
    h[2] = 0xbc;
    h[3] = 0xde;
    h[4..6].copy_from_slice(&((ext.len() + payload.len()) as u16).to_be_bytes());
    h[6] = first_next;
    h[7] = hop;
    h[8..24].copy_from_slice(&src.octets());
    h[24..40].copy_from_slice(&dst.octets());
    h.extend_from_slice(ext);
    h.extend_from_slice(payload);
    h
}

pub fn frag_hdr(next: u8, off8: u16, more: bool, id: u32) -> Vec<u8> {
    let mut v = vec![next, 0];
    v.extend_from_slice(&((off8 << 3) | more as u16).to_be_bytes());
    v.extend_from_slice(&id.to_be_bytes());
    v
}

/// UDP with a correct checksum for the given pseudo-header.
pub fn udp(sport: u16, dport: u16, data: &[u8], pseudo: &dyn Fn(usize) -> Vec<u8>) -> Vec<u8> {
    let mut u = Vec::new();
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + data.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(data);
    let c = naive_csum(&[&pseudo(u.len()), &u]);
    let c = if c == 0 { 0xffff } else { c };
    u[6..8].copy_from_slice(&c.to_be_bytes());
    u
}

pub fn tcp(
    sport: u16,
    dport: u16,
    seq: u32,
    data: &[u8],
    pseudo: &dyn Fn(usize) -> Vec<u8>,
) -> Vec<u8> {
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[4..8].copy_from_slice(&seq.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = 0x18; // PSH ACK
    t[14..16].copy_from_slice(&65535u16.to_be_bytes());
    t.extend_from_slice(data);
    let c = naive_csum(&[&pseudo(t.len()), &t]);
    t[16..18].copy_from_slice(&c.to_be_bytes());
    t
}

/// ICMP / ICMPv6 message with a correct checksum (pass an empty pseudo for ICMPv4).
pub fn icmp(
    typ: u8,
    code: u8,
    rest: [u8; 4],
    body: &[u8],
    pseudo: &dyn Fn(usize) -> Vec<u8>,
) -> Vec<u8> {
    let mut m = vec![typ, code, 0, 0];
    m.extend_from_slice(&rest);
    m.extend_from_slice(body);
    let c = naive_csum(&[&pseudo(m.len()), &m]);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

pub fn no_pseudo(_: usize) -> Vec<u8> {
    Vec::new()
}

pub const POOL6: &str = "2001:db8:64::/96";
pub const CLAT4: &str = "192.0.0.4";
pub const CLAT6: &str = "2001:db8:1::2";
pub const SELF4: &str = "192.0.0.1";
pub const SELF6: &str = "2001:db8:1::1";
pub const POOL6791_4: &str = "192.0.0.8";

pub fn config() -> Config {
    let mut eam = EamTable::new();
    eam.insert(
        Eam::new(
            "192.0.0.4/32".parse().unwrap(),
            "2001:db8:1::2/128".parse().unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    Config {
        pool6: Some(POOL6.parse().unwrap()),
        eam,
        self_v4: Some(a4(SELF4)),
        self_v6: Some(a6(SELF6)),
        pool6791_v4: Some(a4(POOL6791_4)),
        ..Config::default()
    }
}

pub fn translator() -> Translator {
    Translator::new(config()).unwrap()
}

/// 203.0.113.10 behind the prefix.
pub fn remote6(v4: &str) -> Ipv6Addr {
    clat_xlat::embed(&POOL6.parse().unwrap(), a4(v4))
}

/// Checks an IPv6 packet with etherparse and the naive checksum: lengths
/// consistent, flow label 0, upper-layer checksum valid for unfragmented
/// TCP/UDP/ICMPv6. Returns (header slice, upper protocol, upper bytes).
pub fn check_v6(pkt: &[u8]) -> (etherparse::Ipv6Header, u8, Vec<u8>) {
    let s = Ipv6Slice::from_slice(pkt).expect("etherparse parses the IPv6 output");
    let h = s.header().to_header();
    assert_eq!(h.flow_label.value(), 0, "RFC 7915 4.1: flow label 0");
    assert_eq!(h.payload_length as usize + 40, pkt.len(), "payload length");
    let p = s.payload();
    let proto = p.ip_number.0;
    let data = p.payload.to_vec();
    if !s.is_payload_fragmented() && matches!(proto, 6 | 17 | 58) {
        let ps = pseudo6(h.source_addr(), h.destination_addr(), proto, data.len());
        assert_eq!(
            naive_sum(&[&ps, &data]),
            0xffff,
            "upper-layer checksum of proto {proto}"
        );
    }
    (h, proto, data)
}

/// The same for IPv4: header checksum, total length, transport checksum.
pub fn check_v4(pkt: &[u8]) -> (etherparse::Ipv4Header, Vec<u8>) {
    let s = Ipv4Slice::from_slice(pkt).expect("etherparse parses the IPv4 output");
    let h = s.header().to_header();
    let ihl = h.header_len();
    assert_eq!(naive_sum(&[&pkt[..ihl]]), 0xffff, "IPv4 header checksum");
    assert_eq!(h.total_len as usize, pkt.len());
    let data = s.payload().payload.to_vec();
    if !s.is_payload_fragmented() {
        let src = Ipv4Addr::from(h.source);
        let dst = Ipv4Addr::from(h.destination);
        match h.protocol.0 {
            6 => assert_eq!(
                naive_sum(&[&pseudo4(src, dst, 6, data.len()), &data]),
                0xffff,
                "TCP checksum"
            ),
            17 if data.len() >= 8 && data[6..8] != [0, 0] => {
                assert_eq!(
                    naive_sum(&[&pseudo4(src, dst, 17, data.len()), &data]),
                    0xffff,
                    "UDP checksum"
                )
            }
            1 => assert_eq!(naive_sum(&[&data]), 0xffff, "ICMP checksum"),
            _ => {}
        }
    }
    (h, data)
}
