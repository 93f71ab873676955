//! RFC 7915 behaviour that the per-section tests in `rfc7915.rs` left
//! unchecked (found by `cargo mutants -p clat-xlat`, see
//! tests/mutants-survivors.md): the TTL / Hop Limit decrement and its
//! boundaries, RFC 1812's rule that no ICMP error is sent about a broadcast,
//! multicast, unspecified or loopback source or a non-first fragment, the
//! transport checksums of the packet inside a translated ICMP error, the
//! 1260-byte DF rule of section 5.1, and the conditions of the section
//! 4.4 / 5.4 refusals.
//!
//! Expected packets are built by hand here (and with `common`'s builders and
//! naive RFC 1071 checksum), never by the translator.

mod common;
use clat_xlat::{Config, DropReason, IpVersion, OutBuf, Outcome, Translator};
use common::*;
use std::net::{Ipv4Addr, Ipv6Addr};

const REMOTE4: &str = "203.0.113.10";
const ROUTER4: &str = "198.51.100.1";

fn run(t: &Translator, pkt: &[u8]) -> (Outcome, Vec<Vec<u8>>) {
    let mut out = OutBuf::new();
    let o = t.translate(pkt, &mut out);
    (o, out.iter().map(|p| p.to_vec()).collect())
}

fn router() -> Translator {
    Translator::new(Config {
        decrement_ttl: true,
        ..config()
    })
    .unwrap()
}

fn udp4_from(src: Ipv4Addr, dst: Ipv4Addr, ttl: u8, flags_off: u16, data: &[u8]) -> Vec<u8> {
    let u = udp(40000, 53, data, &|l| pseudo4(src, dst, 17, l));
    ipv4(src, dst, 17, ttl, 0, 0x1234, flags_off, &[], &u)
}

fn udp6_from(src: Ipv6Addr, dst: Ipv6Addr, hop: u8, data: &[u8]) -> Vec<u8> {
    let u = udp(53, 40000, data, &|l| pseudo6(src, dst, 17, l));
    ipv6(src, dst, 17, hop, 0, &[], &u)
}

/// A 40-byte IPv6 header as RFC 7915 section 4.1 says the translator writes
/// it (flow label 0), from RFC 8200 section 3.
fn v6_header(tc: u8, plen: u16, next: u8, hop: u8, src: Ipv6Addr, dst: Ipv6Addr) -> Vec<u8> {
    let mut h = vec![0x60 | (tc >> 4), tc << 4, 0, 0];
    h.extend_from_slice(&plen.to_be_bytes());
    h.extend_from_slice(&[next, hop]);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    h
}

// ---- RFC 7915 section 4.1 / 5.1: TTL and Hop Limit ----

/// Section 5.1 "Time to Live": the Hop Limit is copied, less one when the
/// translator acts as a router; section 4.1 the same the other way. A value
/// of 2 still leaves (as 1); 1 and 0 are exhausted.
#[test]
fn s4_1_and_s5_1_ttl_decrement_boundaries() {
    let t = router();
    let (s6, d6) = (remote6(REMOTE4), a6(CLAT6));
    for (hop, ttl) in [(64u8, 63u8), (2, 1), (255, 254)] {
        let (o, out) = run(&t, &udp6_from(s6, d6, hop, b"x"));
        assert_eq!(o, Outcome::Forward(IpVersion::V4), "hop {hop}");
        assert_eq!(check_v4(&out[0]).0.time_to_live, ttl, "hop {hop}");
    }
    for hop in [1u8, 0] {
        let (o, out) = run(&t, &udp6_from(s6, d6, hop, b"x"));
        assert_eq!(o, Outcome::Reply(IpVersion::V6), "hop {hop}");
        let (h, _, data) = check_v6(&out[0]);
        assert_eq!(h.source_addr(), a6(SELF6));
        assert_eq!((data[0], data[1]), (3, 0), "Time Exceeded in transit");
    }
    let (s4, d4) = (a4(CLAT4), a4(REMOTE4));
    let (o, out) = run(&t, &udp4_from(s4, d4, 2, DF, b"x"));
    assert_eq!(o, Outcome::Forward(IpVersion::V6));
    assert_eq!(check_v6(&out[0]).0.hop_limit, 1);
    let (o, out) = run(&t, &udp4_from(s4, d4, 0, DF, b"x"));
    assert_eq!(o, Outcome::Reply(IpVersion::V4));
    assert_eq!(check_v4(&out[0]).1[0], 11);
    // Not a router: copied as is, even 1.
    let t = translator();
    let (o, out) = run(&t, &udp6_from(s6, d6, 1, b"x"));
    assert_eq!(o, Outcome::Forward(IpVersion::V4));
    assert_eq!(check_v4(&out[0]).0.time_to_live, 1);
}

/// RFC 1812 section 4.3.2.7 (and RFC 4443 section 2.4 (e) for IPv6): no
/// ICMP error about a packet whose source is broadcast, multicast,
/// unspecified or loopback, about a non-first fragment, or about an ICMP
/// error. The expired packet is dropped and counted instead.
#[test]
fn rfc1812_no_time_exceeded_about_what_must_not_be_answered() {
    let t = router();
    let d4 = a4(REMOTE4);
    for src in ["224.0.0.1", "255.255.255.255", "0.0.0.0", "127.0.0.1"] {
        let (o, out) = run(&t, &udp4_from(a4(src), d4, 1, DF, b"x"));
        assert_eq!(o, Outcome::Drop(DropReason::TtlExpired), "source {src}");
        assert!(out.is_empty());
    }
    let clat = a4(CLAT4);
    // Offset 8 (64 bytes): a non-first fragment.
    let (o, _) = run(&t, &ipv4(clat, d4, 17, 1, 0, 7, 8, &[], &[0; 16]));
    assert_eq!(o, Outcome::Drop(DropReason::TtlExpired));
    // The first fragment (MF, offset 0) is answered.
    let (o, _) = run(&t, &udp4_from(clat, d4, 1, MF, &[0; 32]));
    assert_eq!(o, Outcome::Reply(IpVersion::V4));
    // An ICMP error (Port Unreachable) that runs out is not answered.
    let inner = udp4_from(d4, clat, 60, DF, b"q");
    let m = icmp(3, 3, [0; 4], &inner, &no_pseudo);
    let err = ipv4(clat, d4, 1, 1, 0, 9, 0, &[], &m);
    assert_eq!(run(&t, &err).0, Outcome::Drop(DropReason::TtlExpired));

    let d6 = a6(CLAT6);
    for src in ["ff02::1", "::"] {
        let (o, _) = run(&t, &udp6_from(a6(src), d6, 1, b"x"));
        assert_eq!(o, Outcome::Drop(DropReason::TtlExpired), "source {src}");
    }
    let s6 = remote6(REMOTE4);
    let nonfirst = ipv6(s6, d6, 44, 1, 0, &frag_hdr(17, 1, false, 5), &[0; 16]);
    assert_eq!(run(&t, &nonfirst).0, Outcome::Drop(DropReason::TtlExpired));
    let first = ipv6(s6, d6, 44, 1, 0, &frag_hdr(17, 0, true, 5), &[0; 16]);
    assert_eq!(run(&t, &first).0, Outcome::Reply(IpVersion::V6));
    let inner6 = udp6_from(d6, s6, 60, b"q");
    let m6 = icmp(1, 4, [0; 4], &inner6, &|l| pseudo6(s6, d6, 58, l));
    let err6 = ipv6(s6, d6, 58, 1, 0, &[], &m6);
    assert_eq!(run(&t, &err6).0, Outcome::Drop(DropReason::TtlExpired));
}

/// RFC 1812 again, for the other errors the translator originates: a DF
/// packet too big for the IPv6 side and an unexpired source route (RFC 7915
/// section 4.1) from a multicast source are dropped without an answer.
#[test]
fn rfc1812_no_fragmentation_needed_or_source_route_failed_to_multicast() {
    let t = Translator::new(Config {
        mtu6: 1280,
        ..config()
    })
    .unwrap();
    let m = a4("224.0.0.9");
    let big = udp4_from(m, a4(REMOTE4), 64, DF, &[0; 1300]);
    assert_eq!(run(&t, &big).0, Outcome::Drop(DropReason::TooBigNoReply));
    // LSRR (131), length 7, pointer 4: unexpired; then End of Options.
    let lsrr = [131u8, 7, 4, 192, 0, 2, 1, 0];
    let u = udp(1, 2, b"x", &|l| pseudo4(m, a4(REMOTE4), 17, l));
    let pkt = ipv4(m, a4(REMOTE4), 17, 64, 0, 1, 0, &lsrr, &u);
    assert_eq!(run(&t, &pkt).0, Outcome::Drop(DropReason::SourceRoute));
}

// ---- RFC 7915 section 4.1 / 5.1: DF and the MTUs ----

/// Section 4.1: a DF=1 IPv4 packet is refused with Fragmentation Needed
/// only when its IPv6 translation (20 bytes longer) exceeds the IPv6 MTU:
/// with mtu6 1500, 1480 bytes of IPv4 leave whole, 1481 do not.
#[test]
fn s4_1_df1_fits_the_ipv6_mtu_exactly() {
    let t = translator();
    let (s, d) = (a4(CLAT4), a4(REMOTE4));
    let fits = udp4_from(s, d, 64, DF, &[3; 1480 - 28]);
    assert_eq!(fits.len(), 1480);
    let (o, out) = run(&t, &fits);
    assert_eq!(o, Outcome::Forward(IpVersion::V6));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].len(), 1500);
    check_v6(&out[0]);
    let over = udp4_from(s, d, 64, DF, &[3; 1481 - 28]);
    let (o, out) = run(&t, &over);
    assert_eq!(o, Outcome::Reply(IpVersion::V4));
    let (_, data) = check_v4(&out[0]);
    assert_eq!((data[0], data[1]), (3, 4));
    assert_eq!(u16::from_be_bytes([data[6], data[7]]), 1480);
}

/// Section 5.1: "Don't Fragment" is set only when the translated IPv4
/// packet is larger than 1260 bytes; at 1260 it is clear and the packet gets
/// an Identification, at 1261 it is set and the Identification is zero
/// (RFC 6864 section 4.1 allows it for atomic datagrams).
#[test]
fn s5_1_df_set_above_1260_bytes_exactly() {
    let t = Translator::new(Config {
        frag_id_seed: 0x5555_0001,
        ..config()
    })
    .unwrap();
    let (s, d) = (remote6(REMOTE4), a6(CLAT6));
    let at = udp6_from(s, d, 64, &[1; 1260 - 28]);
    let (o, out) = run(&t, &at);
    assert_eq!(o, Outcome::Forward(IpVersion::V4));
    let (h, _) = check_v4(&out[0]);
    assert_eq!(out[0].len(), 1260);
    assert!(!h.dont_fragment, "1260 bytes: DF=0");
    let (h2, _) = check_v4(&run(&t, &at).1[0]);
    assert_ne!(
        h.identification, h2.identification,
        "DF=0 packets need distinct Identifications"
    );
    let over = udp6_from(s, d, 64, &[1; 1261 - 28]);
    let (o, out) = run(&t, &over);
    assert_eq!(o, Outcome::Forward(IpVersion::V4));
    let (h, _) = check_v4(&out[0]);
    assert_eq!(out[0].len(), 1261);
    assert!(h.dont_fragment, "1261 bytes: DF=1");
    assert_eq!(h.identification, 0);
}

/// Section 5.1: an IPv6 packet whose translation fits the IPv4 MTU exactly
/// leaves whole with DF=1; one byte more is refused with Packet Too Big
/// carrying mtu4 + 20.
#[test]
fn s5_1_translation_fits_the_ipv4_mtu_exactly() {
    let t = Translator::new(Config {
        mtu4: 1400,
        ..config()
    })
    .unwrap();
    let (s, d) = (remote6(REMOTE4), a6(CLAT6));
    let (o, out) = run(&t, &udp6_from(s, d, 64, &[2; 1400 - 28]));
    assert_eq!(o, Outcome::Forward(IpVersion::V4));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].len(), 1400);
    assert!(check_v4(&out[0]).0.dont_fragment);
    let (o, out) = run(&t, &udp6_from(s, d, 64, &[2; 1401 - 28]));
    assert_eq!(o, Outcome::Reply(IpVersion::V6));
    let (_, _, data) = check_v6(&out[0]);
    assert_eq!((data[0], data[1]), (2, 0));
    assert_eq!(
        u32::from_be_bytes([data[4], data[5], data[6], data[7]]),
        1420
    );
}

// ---- RFC 7915 section 4.3 / 5.3: the packet inside an ICMP error ----

/// Section 4.3: the TCP segment quoted in an ICMPv4 error gets the checksum
/// it has under the IPv6 pseudo-header (the translated addresses), and the
/// inner header is the section 4.1 translation. Expected bytes built here.
#[test]
fn s4_3_inner_tcp_checksum_fixed_up() {
    let t = translator();
    let (s4, d4) = (a4(CLAT4), a4(REMOTE4));
    let seg4 = tcp(40001, 443, 0x0102_0304, b"GET /", &|l| {
        pseudo4(s4, d4, 6, l)
    });
    let inner = ipv4(s4, d4, 6, 63, 0x28, 0x4242, DF, &[], &seg4);
    let m = icmp(3, 3, [0; 4], &inner, &no_pseudo);
    let err = ipv4(a4(ROUTER4), s4, 1, 60, 0, 9, 0, &[], &m);
    let (o, out) = run(&t, &err);
    assert_eq!(o, Outcome::Forward(IpVersion::V6));
    let (_, proto, data) = check_v6(&out[0]);
    assert_eq!(proto, 58);
    assert_eq!((data[0], data[1]), (1, 4));

    let (s6, d6) = (a6(CLAT6), remote6(REMOTE4));
    let seg6 = tcp(40001, 443, 0x0102_0304, b"GET /", &|l| {
        pseudo6(s6, d6, 6, l)
    });
    let mut want = v6_header(0x28, seg6.len() as u16, 6, 63, s6, d6);
    want.extend_from_slice(&seg6);
    assert_eq!(&data[8..], &want[..]);
}

/// Section 4.3 with an ICMPv4 echo request inside a Time Exceeded (a ping
/// traceroute): the inner message becomes an ICMPv6 Echo Request (type 128)
/// whose checksum now covers the IPv6 pseudo-header.
#[test]
fn s4_3_inner_echo_request_type_and_checksum() {
    let t = translator();
    let (s4, d4) = (a4(CLAT4), a4(REMOTE4));
    let echo4 = icmp(8, 0, [0x12, 0x34, 0, 7], b"ping data", &no_pseudo);
    let inner = ipv4(s4, d4, 1, 1, 0, 0x4243, 0, &[], &echo4);
    let m = icmp(11, 0, [0; 4], &inner, &no_pseudo);
    let err = ipv4(a4(ROUTER4), s4, 1, 60, 0, 9, 0, &[], &m);
    let (o, out) = run(&t, &err);
    assert_eq!(o, Outcome::Forward(IpVersion::V6));
    let (_, _, data) = check_v6(&out[0]);
    assert_eq!((data[0], data[1]), (3, 0));

    let (s6, d6) = (a6(CLAT6), remote6(REMOTE4));
    let echo6 = icmp(128, 0, [0x12, 0x34, 0, 7], b"ping data", &|l| {
        pseudo6(s6, d6, 58, l)
    });
    let mut want = v6_header(0, echo6.len() as u16, 58, 1, s6, d6);
    want.extend_from_slice(&echo6);
    assert_eq!(&data[8..], &want[..]);
}

/// Section 5.3: the TCP segment quoted in an ICMPv6 error gets its IPv4
/// pseudo-header checksum, and the inner IPv4 header is the section 5.1
/// translation (Identification 0, DF clear at this size, TTL = Hop Limit).
#[test]
fn s5_3_inner_tcp_checksum_fixed_up() {
    let t = translator();
    let (s6, d6) = (a6(CLAT6), remote6(REMOTE4));
    let seg6 = tcp(40002, 443, 77, b"hello", &|l| pseudo6(s6, d6, 6, l));
    let inner = ipv6(s6, d6, 6, 63, 0x28, &[], &seg6);
    let r = remote6(ROUTER4);
    let m = icmp(3, 0, [0; 4], &inner, &|l| pseudo6(r, s6, 58, l));
    let (o, out) = run(&t, &ipv6(r, s6, 58, 60, 0, &[], &m));
    assert_eq!(o, Outcome::Forward(IpVersion::V4));
    let (_, data) = check_v4(&out[0]);
    assert_eq!((data[0], data[1]), (11, 0));

    let (s4, d4) = (a4(CLAT4), a4(REMOTE4));
    let seg4 = tcp(40002, 443, 77, b"hello", &|l| pseudo4(s4, d4, 6, l));
    let want = ipv4(s4, d4, 6, 63, 0x28, 0, 0, &[], &seg4);
    assert_eq!(&data[8..], &want[..]);
}

/// Section 5.3 with an ICMPv6 Echo Request inside: it becomes an ICMPv4
/// Echo Request (type 8) whose checksum no longer covers a pseudo-header.
#[test]
fn s5_3_inner_echo_request_type_and_checksum() {
    let t = translator();
    let (s6, d6) = (a6(CLAT6), remote6(REMOTE4));
    let echo6 = icmp(128, 0, [0, 9, 0, 1], b"traceroute", &|l| {
        pseudo6(s6, d6, 58, l)
    });
    let inner = ipv6(s6, d6, 58, 1, 0, &[], &echo6);
    let r = remote6(ROUTER4);
    let m = icmp(3, 0, [0; 4], &inner, &|l| pseudo6(r, s6, 58, l));
    let (o, out) = run(&t, &ipv6(r, s6, 58, 60, 0, &[], &m));
    assert_eq!(o, Outcome::Forward(IpVersion::V4));
    let (_, data) = check_v4(&out[0]);

    let (s4, d4) = (a4(CLAT4), a4(REMOTE4));
    let echo4 = icmp(8, 0, [0, 9, 0, 1], b"traceroute", &no_pseudo);
    let want = ipv4(s4, d4, 1, 1, 0, 0, 0, &[], &echo4);
    assert_eq!(&data[8..], &want[..]);
}

/// Section 5.3 applies section 5.1 to the inner header too: the inner IPv4
/// packet of a quoted IPv6 packet that claimed 1241 bytes of payload
/// (IPv4 total 1261) has DF set, one that claimed 1240 (1260) has not.
/// Only the start of the packet is quoted, so the lengths are what the
/// header claimed.
#[test]
fn s5_3_inner_df_follows_the_1260_byte_rule() {
    let t = translator();
    let (s6, d6) = (a6(CLAT6), remote6(REMOTE4));
    let r = remote6(ROUTER4);
    for (claimed, df) in [(1240usize, false), (1241, true)] {
        let full = udp6_from(s6, d6, 63, &vec![5; claimed - 8]);
        let quoted = &full[..40 + 64];
        let m = icmp(2, 0, 1400u32.to_be_bytes(), quoted, &|l| {
            pseudo6(r, s6, 58, l)
        });
        let (o, out) = run(&t, &ipv6(r, s6, 58, 60, 0, &[], &m));
        assert_eq!(o, Outcome::Forward(IpVersion::V4), "claimed {claimed}");
        let (_, data) = check_v4(&out[0]);
        let inner = &data[8..];
        assert_eq!(
            u16::from_be_bytes([inner[2], inner[3]]) as usize,
            20 + claimed,
            "inner Total Length"
        );
        let flags = u16::from_be_bytes([inner[6], inner[7]]);
        assert_eq!(flags & 0x4000 != 0, df, "claimed {claimed}");
        assert_eq!(naive_sum(&[&inner[..20]]), 0xffff, "inner header checksum");
    }
}

// ---- RFC 7915 section 4.4 / 5.4: refusals ----

fn wkp_translator(cfg: Config) -> Translator {
    Translator::new(Config {
        pool6: Some("64:ff9b::/96".parse().unwrap()),
        ..cfg
    })
    .unwrap()
}

/// Section 4.4 "Communication Administratively Prohibited" is not sent
/// about a non-first fragment or to a broadcast or multicast source (RFC
/// 1812 section 4.3.2.7), but it is sent about a first fragment and about an
/// ICMP message that is not an error (an echo request).
#[test]
fn s4_4_refusal_conditions() {
    let t = wkp_translator(config());
    let mut out = OutBuf::new();
    let (clat, private) = (a4(CLAT4), a4("192.168.1.1"));
    let nonfirst = ipv4(clat, private, 17, 64, 0, 3, MF | 4, &[], &[0; 24]);
    assert_eq!(
        t.refuse_4(&nonfirst, &mut out),
        Outcome::Drop(DropReason::ErrorNotAllowed)
    );
    assert!(out.is_empty());
    for src in ["255.255.255.255", "224.0.0.251"] {
        let pkt = udp4_from(a4(src), private, 64, 0, b"x");
        assert_eq!(
            t.refuse_4(&pkt, &mut out),
            Outcome::Drop(DropReason::ErrorNotAllowed),
            "source {src}"
        );
    }
    let first = udp4_from(clat, private, 64, MF, &[0; 16]);
    assert_eq!(t.refuse_4(&first, &mut out), Outcome::Reply(IpVersion::V4));
    let echo = ipv4(
        clat,
        private,
        1,
        64,
        0,
        1,
        0,
        &[],
        &icmp(8, 0, [0, 1, 0, 1], b"hi", &no_pseudo),
    );
    assert_eq!(t.refuse_4(&echo, &mut out), Outcome::Reply(IpVersion::V4));
    let (_, data) = check_v4(out.get(0).unwrap());
    assert_eq!((data[0], data[1]), (3, 13));
    assert_eq!(&data[8..], &echo[..]);
    assert_eq!(
        t.refuse_4(&echo[..10], &mut out),
        Outcome::Drop(DropReason::Malformed)
    );
}

/// Section 4.4: the refusal's source is the translator's own IPv4 address,
/// else the RFC 6791 pool address, else there is none to send from; and
/// what it quotes ends at the packet's Total Length (link-layer padding is
/// not part of the packet).
#[test]
fn s4_4_refusal_source_and_quote() {
    let mut out = OutBuf::new();
    let pkt = udp4_from(a4(CLAT4), a4("10.1.2.3"), 64, DF, b"data");
    let mut padded = pkt.clone();
    padded.extend_from_slice(&[0xee; 6]);

    let t = wkp_translator(Config {
        self_v4: None,
        ..config()
    });
    assert_eq!(t.refuse_4(&padded, &mut out), Outcome::Reply(IpVersion::V4));
    let (h, data) = check_v4(out.get(0).unwrap());
    assert_eq!(h.source, a4(POOL6791_4).octets());
    assert_eq!(&data[8..], &pkt[..]);

    let t = wkp_translator(Config {
        self_v4: None,
        pool6791_v4: None,
        ..config()
    });
    assert_eq!(
        t.refuse_4(&pkt, &mut out),
        Outcome::Drop(DropReason::NoErrorSource)
    );
    assert!(out.is_empty());
}

/// Section 5.4: ICMPv6 "Communication with Destination Administratively
/// Prohibited" is not sent about a non-first fragment or to a multicast or
/// unspecified source (RFC 4443 section 2.4 (e)); a first fragment is
/// answered. Its source falls back to the RFC 6791 IPv6 address, and the
/// quote ends at the Payload Length.
#[test]
fn s5_4_refusal_conditions_source_and_quote() {
    let t = translator();
    let mut out = OutBuf::new();
    let (s, d) = (a6("2001:db8:99::1"), a6(CLAT6));
    let nonfirst = ipv6(s, d, 44, 64, 0, &frag_hdr(17, 3, false, 1), &[0; 16]);
    assert_eq!(
        t.refuse_6(&nonfirst, &mut out),
        Outcome::Drop(DropReason::ErrorNotAllowed)
    );
    for src in ["ff02::1", "::"] {
        let pkt = udp6_from(a6(src), d, 64, b"x");
        assert_eq!(
            t.refuse_6(&pkt, &mut out),
            Outcome::Drop(DropReason::ErrorNotAllowed),
            "source {src}"
        );
    }
    let first = ipv6(s, d, 44, 64, 0, &frag_hdr(17, 0, true, 1), &[0; 16]);
    assert_eq!(t.refuse_6(&first, &mut out), Outcome::Reply(IpVersion::V6));

    let pool: Ipv6Addr = "2001:db8:6791::1".parse().unwrap();
    let t = Translator::new(Config {
        self_v6: None,
        pool6791_v6: Some(pool),
        ..config()
    })
    .unwrap();
    let pkt = udp6_from(s, d, 64, b"data");
    let mut padded = pkt.clone();
    padded.extend_from_slice(&[0xee; 6]);
    assert_eq!(t.refuse_6(&padded, &mut out), Outcome::Reply(IpVersion::V6));
    let (h, _, data) = check_v6(out.get(0).unwrap());
    assert_eq!(h.source_addr(), pool);
    assert_eq!((data[0], data[1]), (1, 1));
    assert_eq!(&data[8..], &pkt[..]);

    let t = Translator::new(Config {
        self_v6: None,
        pool6791_v6: None,
        ..config()
    })
    .unwrap();
    assert_eq!(
        t.refuse_6(&pkt, &mut out),
        Outcome::Drop(DropReason::NoErrorSource)
    );
    assert_eq!(
        t.refuse_6(&pkt[..39], &mut out),
        Outcome::Drop(DropReason::Malformed)
    );
}
