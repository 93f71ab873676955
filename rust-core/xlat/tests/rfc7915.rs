//! Per-section tests of RFC 7915 (and RFC 6791, RFC 4884, RFC 8021) with
//! hand-built packets. Expected values are derived from the RFC text, not
//! from the translator: outputs are parsed by etherparse and checksums are
//! checked by the naive routine in `common`.

mod common;
use clat_xlat::{icmp6_error_to_icmp4, Config, DropReason, IpVersion, OutBuf, Outcome, Translator};
use common::*;
use etherparse::{Ipv6FragmentHeaderSlice, Ipv6Slice};

fn udp4(src: &str, dst: &str, data: &[u8], ttl: u8, tos: u8, flags: u16) -> Vec<u8> {
    let (s, d) = (a4(src), a4(dst));
    let u = udp(40000, 53, data, &|l| pseudo4(s, d, 17, l));
    ipv4(s, d, 17, ttl, tos, 0x1234, flags, &[], &u)
}

fn udp6(src: std::net::Ipv6Addr, dst: std::net::Ipv6Addr, data: &[u8], hop: u8) -> Vec<u8> {
    let u = udp(53, 40000, data, &|l| pseudo6(src, dst, 17, l));
    ipv6(src, dst, 17, hop, 0xb8, &[], &u)
}

fn run(t: &Translator, pkt: &[u8]) -> (Outcome, Vec<Vec<u8>>) {
    let mut out = OutBuf::new();
    let o = t.translate(pkt, &mut out);
    (o, out.iter().map(|p| p.to_vec()).collect())
}

// ---- Section 4.1: IPv4 header -> IPv6 header ----

#[test]
fn s4_1_udp_header_fields() {
    let t = translator();
    let pkt = udp4(CLAT4, "203.0.113.10", b"hello world", 64, 0xb8, DF);
    let (o, out) = run(&t, &pkt);
    assert_eq!(o, Outcome::Forward(IpVersion::V6));
    assert_eq!(out.len(), 1);
    let (h, proto, data) = check_v6(&out[0]);
    assert_eq!(h.traffic_class, 0xb8, "traffic class copied from TOS");
    assert_eq!(h.hop_limit, 64, "hop limit = TTL without decrement");
    assert_eq!(proto, 17);
    assert_eq!(h.source_addr(), a6(CLAT6), "EAM before pool6");
    assert_eq!(h.destination_addr(), a6("2001:db8:64::cb00:710a"));
    assert_eq!(&data[8..], b"hello world");
    assert_eq!(&data[..6], &pkt[20..26], "ports and length untouched");
    assert_eq!(out[0].len(), pkt.len() + 20);
}

#[test]
fn s4_1_ttl_decrement_and_time_exceeded() {
    let t = Translator::new(Config {
        decrement_ttl: true,
        ..config()
    })
    .unwrap();
    let (o, out) = run(&t, &udp4(CLAT4, "203.0.113.10", b"x", 64, 0, DF));
    assert_eq!(o, Outcome::Forward(IpVersion::V6));
    assert_eq!(check_v6(&out[0]).0.hop_limit, 63);
    let pkt = udp4(CLAT4, "203.0.113.10", b"x", 1, 0, DF);
    let (o, out) = run(&t, &pkt);
    assert_eq!(o, Outcome::Reply(IpVersion::V4));
    let (h, data) = check_v4(&out[0]);
    assert_eq!(h.source, a4(SELF4).octets());
    assert_eq!(h.destination, a4(CLAT4).octets());
    assert_eq!((data[0], data[1]), (11, 0), "Time Exceeded in transit");
    assert_eq!(&data[8..], &pkt[..], "the packet quoted");
}

#[test]
fn s4_1_options_ignored_but_source_route_refused() {
    let t = translator();
    let (s, d) = (a4(CLAT4), a4("203.0.113.10"));
    let u = udp(1, 2, b"opt", &|l| pseudo4(s, d, 17, l));
    // Record Route (7) is ignored.
    let rr = [7, 7, 4, 0, 0, 0, 0, 1];
    let (o, out) = run(&t, &ipv4(s, d, 17, 64, 0, 1, DF, &rr, &u));
    assert_eq!(o, Outcome::Forward(IpVersion::V6));
    let (_, _, data) = check_v6(&out[0]);
    assert_eq!(&data[8..], b"opt");
    // Loose Source Route (131) with pointer 4 <= length 7: unexpired.
    let lsrr = [131, 7, 4, 198, 51, 100, 1, 0];
    let pkt = ipv4(s, d, 17, 64, 0, 1, DF, &lsrr, &u);
    let (o, out) = run(&t, &pkt);
    assert_eq!(o, Outcome::Reply(IpVersion::V4));
    let (_, data) = check_v4(&out[0]);
    assert_eq!((data[0], data[1]), (3, 5), "Source Route Failed");
}

#[test]
fn s4_1_df0_small_has_no_fragment_header_rfc8021() {
    let t = translator();
    let (o, out) = run(&t, &udp4(CLAT4, "203.0.113.10", &[7; 100], 64, 0, 0));
    assert_eq!(o, Outcome::Forward(IpVersion::V6));
    let (h, proto, _) = check_v6(&out[0]);
    assert_eq!(h.next_header.0, 17, "no atomic fragment");
    assert_eq!(proto, 17);
}

/// Up to the largest IPv4 datagram (65535 bytes: 65507 bytes of UDP data),
/// which becomes 54 fragments of at most 1280 bytes.
#[test]
fn s4_1_df0_large_is_fragmented_to_lowest_ipv6_mtu() {
    let t = translator();
    for (len, fragments) in [(1400usize, 2usize), (65507, 54)] {
        let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let pkt = udp4(CLAT4, "203.0.113.10", &payload, 64, 0, 0);
        assert_eq!(pkt.len(), len + 28);
        let (o, out) = run(&t, &pkt);
        assert_eq!(o, Outcome::Forward(IpVersion::V6));
        assert_eq!(out.len(), fragments, "{len} bytes");
        let mut reassembled = Vec::new();
        for (i, f) in out.iter().enumerate() {
            assert!(f.len() <= 1280, "fragment {i} is {} bytes", f.len());
            let s = Ipv6Slice::from_slice(f).unwrap();
            assert_eq!(s.header().next_header().0, 44);
            let fh = Ipv6FragmentHeaderSlice::from_slice(&f[40..48]).unwrap();
            assert_eq!(fh.identification(), 0x1234, "RFC 7915 4.1: ID from IPv4");
            assert_eq!(fh.next_header().0, 17);
            assert_eq!(fh.fragment_offset().value() as usize * 8, reassembled.len());
            assert_eq!(fh.more_fragments(), i + 1 < out.len());
            if i + 1 < out.len() {
                assert_eq!((f.len() - 48) % 8, 0);
            }
            reassembled.extend_from_slice(&f[48..]);
        }
        assert_eq!(&reassembled[8..], &payload[..]);
        let ps = pseudo6(a6(CLAT6), remote6("203.0.113.10"), 17, reassembled.len());
        assert_eq!(
            naive_sum(&[&ps, &reassembled]),
            0xffff,
            "UDP checksum over the reassembled datagram"
        );
    }
}

#[test]
fn s4_1_lowest_ipv6_mtu_setting() {
    let t = Translator::new(Config {
        lowest_ipv6_mtu: 1500,
        ..config()
    })
    .unwrap();
    let pkt = udp4(CLAT4, "203.0.113.10", &[1; 1400], 64, 0, 0);
    let (_, out) = run(&t, &pkt);
    assert_eq!(out.len(), 1, "fits 1500 without fragmenting");
    assert_eq!(out[0].len(), 1448);
}

#[test]
fn s4_1_df1_too_big_answers_fragmentation_needed() {
    let t = Translator::new(Config {
        mtu6: 1280,
        ..config()
    })
    .unwrap();
    let pkt = udp4(CLAT4, "203.0.113.10", &[1; 1300], 64, 0, DF);
    let (o, out) = run(&t, &pkt);
    assert_eq!(o, Outcome::Reply(IpVersion::V4));
    let (h, data) = check_v4(&out[0]);
    assert_eq!(h.destination, a4(CLAT4).octets());
    assert_eq!((data[0], data[1]), (3, 4));
    assert_eq!(
        u16::from_be_bytes([data[6], data[7]]),
        1260,
        "IPv6 MTU - 20"
    );
    assert!(out[0].len() <= 576, "ICMPv4 errors are at most 576 bytes");
}

#[test]
fn s4_1_ipv4_fragment_gets_fragment_header() {
    let t = translator();
    let (s, d) = (a4(CLAT4), a4("203.0.113.10"));
    // A middle fragment: offset 185 (1480 bytes), MF=1, arbitrary bytes.
    let pkt = ipv4(s, d, 17, 64, 0, 0xbeef, MF | 185, &[], &[9; 64]);
    let (o, out) = run(&t, &pkt);
    assert_eq!(o, Outcome::Forward(IpVersion::V6));
    let f = &out[0];
    assert_eq!(f[6], 44);
    let fh = Ipv6FragmentHeaderSlice::from_slice(&f[40..48]).unwrap();
    assert_eq!(fh.identification(), 0xbeef);
    assert_eq!(fh.fragment_offset().value(), 185);
    assert!(fh.more_fragments());
    assert_eq!(fh.next_header().0, 17);
    assert_eq!(
        &f[48..],
        &[9; 64][..],
        "payload of a non-first fragment untouched"
    );
}

#[test]
fn s4_1_unknown_protocol_carried_through() {
    let t = translator();
    let (s, d) = (a4(CLAT4), a4("203.0.113.10"));
    let pkt = ipv4(s, d, 47, 64, 0, 1, DF, &[], b"GRE-ish payload");
    let (_, out) = run(&t, &pkt);
    let (h, proto, data) = check_v6(&out[0]);
    assert_eq!((h.next_header.0, proto), (47, 47));
    assert_eq!(data, b"GRE-ish payload");
    let (_, back) = run(&t, &out[0]);
    let (h4, data4) = check_v4(&back[0]);
    assert_eq!(h4.protocol.0, 47);
    assert_eq!(data4, b"GRE-ish payload");
}

#[test]
fn s4_1_bad_header_checksum_and_truncation_dropped() {
    let t = translator();
    let mut pkt = udp4(CLAT4, "203.0.113.10", b"x", 64, 0, DF);
    pkt[10] ^= 0xff;
    assert_eq!(run(&t, &pkt).0, Outcome::Drop(DropReason::BadIpv4Checksum));
    let pkt = udp4(CLAT4, "203.0.113.10", b"xyz", 64, 0, DF);
    assert_eq!(
        run(&t, &pkt[..pkt.len() - 1]).0,
        Outcome::Drop(DropReason::Malformed)
    );
}

// ---- Section 4.2 / 4.5: ICMP and transport checksums ----

#[test]
fn s4_2_echo_request() {
    let t = translator();
    let (s, d) = (a4(CLAT4), a4("203.0.113.10"));
    let m = icmp(8, 0, [0x12, 0x34, 0, 7], b"ping data", &no_pseudo);
    let (o, out) = run(&t, &ipv4(s, d, 1, 64, 0, 1, 0, &[], &m));
    assert_eq!(o, Outcome::Forward(IpVersion::V6));
    let (h, proto, data) = check_v6(&out[0]);
    assert_eq!((h.next_header.0, proto), (58, 58));
    assert_eq!((data[0], data[1]), (128, 0));
    assert_eq!(&data[4..], &m[4..], "identifier, sequence and data kept");
}

/// The smallest Echo is its 8-byte header (RFC 792): translated. An ICMP
/// message shorter than that header is malformed.
#[test]
fn s4_2_echo_of_8_bytes_translated_shorter_refused() {
    let t = translator();
    let (s, d) = (a4(CLAT4), a4("203.0.113.10"));
    let m = icmp(8, 0, [0, 9, 0, 1], b"", &no_pseudo);
    assert_eq!(m.len(), 8);
    let (o, out) = run(&t, &ipv4(s, d, 1, 64, 0, 1, 0, &[], &m));
    assert_eq!(o, Outcome::Forward(IpVersion::V6));
    let (_, _, data) = check_v6(&out[0]);
    assert_eq!((data.len(), data[0]), (8, 128));
    for n in [4usize, 7] {
        let (o, _) = run(&t, &ipv4(s, d, 1, 64, 0, 1, 0, &[], &m[..n]));
        assert_eq!(o, Outcome::Drop(DropReason::Malformed), "{n} bytes");
    }
}

#[test]
fn s4_2_untranslatable_icmp_dropped() {
    let t = translator();
    let (s, d) = (a4(CLAT4), a4("203.0.113.10"));
    for typ in [13u8, 15, 17, 9, 10] {
        let m = icmp(typ, 0, [0; 4], &[0; 12], &no_pseudo);
        assert_eq!(
            run(&t, &ipv4(s, d, 1, 64, 0, 1, 0, &[], &m)).0,
            Outcome::Drop(DropReason::IcmpUntranslatable),
            "type {typ}"
        );
    }
}

#[test]
fn s4_5_tcp_checksum() {
    let t = translator();
    let (s, d) = (a4(CLAT4), a4("203.0.113.10"));
    let seg = tcp(40000, 80, 77, b"GET / HTTP/1.0\r\n\r\n", &|l| {
        pseudo4(s, d, 6, l)
    });
    let (_, out) = run(&t, &ipv4(s, d, 6, 64, 0, 1, DF, &[], &seg));
    let (_, proto, data) = check_v6(&out[0]);
    assert_eq!(proto, 6);
    assert_eq!(&data[20..], b"GET / HTTP/1.0\r\n\r\n");
}

#[test]
fn s4_5_udp_zero_checksum() {
    let (s, d) = (a4(CLAT4), a4("203.0.113.10"));
    let mut u = udp(1, 2, b"nocsum", &|l| pseudo4(s, d, 17, l));
    u[6] = 0;
    u[7] = 0;
    let pkt = ipv4(s, d, 17, 64, 0, 1, DF, &[], &u);
    // Not amending: dropped, and RFC 7915 4.4's Destination Unreachable,
    // Communication Administratively Prohibited (3/13) quoting the packet.
    let (o, out) = run(&translator(), &pkt);
    assert_eq!(o, Outcome::Reply(IpVersion::V4));
    assert_admin_prohibited_4(&out[0], &pkt);
    // With no address to send the error from, the drop is counted as such.
    let quiet = Translator::new(Config {
        self_v4: None,
        pool6791_v4: None,
        ..config()
    })
    .unwrap();
    assert_eq!(
        run(&quiet, &pkt).0,
        Outcome::Drop(DropReason::UdpZeroChecksum)
    );
    let t = Translator::new(Config {
        amend_udp_zero_checksum: true,
        ..config()
    })
    .unwrap();
    let (o, out) = run(&t, &pkt);
    assert_eq!(o, Outcome::Forward(IpVersion::V6));
    let (_, _, data) = check_v6(&out[0]); // checks the computed checksum
    assert_ne!(&data[6..8], &[0, 0]);
    // The first fragment of such a datagram cannot be amended: refused with
    // the same error even when amending is on.
    let frag = ipv4(s, d, 17, 64, 0, 1, MF, &[], &u);
    let (o, out) = run(&t, &frag);
    assert_eq!(o, Outcome::Reply(IpVersion::V4));
    assert_admin_prohibited_4(&out[0], &frag);
}

/// An ICMPv4 Destination Unreachable, Communication Administratively
/// Prohibited (RFC 7915 4.4: type 3, code 13) from SELF4 to the source of
/// `orig`, quoting all of it.
fn assert_admin_prohibited_4(err: &[u8], orig: &[u8]) {
    let (h, data) = check_v4(err);
    assert_eq!(h.source, a4(SELF4).octets());
    assert_eq!(h.destination, orig[12..16]);
    assert_eq!(h.protocol.0, 1);
    assert_eq!(&data[..2], &[3, 13]);
    assert_eq!(&data[4..8], &[0; 4]);
    assert_eq!(&data[8..], orig);
}

// ---- Section 4.3 / 4.4: ICMPv4 errors ----

fn icmp4_error(typ: u8, code: u8, rest: [u8; 4], inner: &[u8]) -> Vec<u8> {
    let m = icmp(typ, code, rest, inner, &no_pseudo);
    ipv4(a4("198.51.100.1"), a4(CLAT4), 1, 60, 0, 9, 0, &[], &m)
}

#[test]
fn s4_3_port_unreachable_with_inner_packet() {
    let t = Translator::new(Config {
        refuse_non_global_wkp: true,
        ..config()
    })
    .unwrap();
    let inner = udp4(CLAT4, "203.0.113.10", b"query", 63, 0, DF);
    let (o, out) = run(&t, &icmp4_error(3, 3, [0; 4], &inner));
    assert_eq!(o, Outcome::Forward(IpVersion::V6));
    let (h, proto, data) = check_v6(&out[0]);
    assert_eq!(proto, 58);
    assert_eq!(h.source_addr(), remote6("198.51.100.1"));
    assert_eq!(h.destination_addr(), a6(CLAT6));
    assert_eq!((data[0], data[1]), (1, 4), "Port Unreachable");
    // The inner packet, translated and complete: a second check.
    let (ih, iproto, idata) = check_v6(&data[8..]);
    assert_eq!(iproto, 17);
    assert_eq!(ih.source_addr(), a6(CLAT6));
    assert_eq!(ih.destination_addr(), remote6("203.0.113.10"));
    assert_eq!(ih.hop_limit, 63);
    assert_eq!(&idata[8..], b"query");
}

#[test]
fn s4_2_fragmentation_needed_to_packet_too_big() {
    let t = translator();
    let inner = udp4(CLAT4, "203.0.113.10", &[0; 1400], 63, 0, DF);
    let (_, out) = run(&t, &icmp4_error(3, 4, [0, 0, 0x05, 0x78], &inner[..28])); // MTU 1400
    let (_, _, data) = check_v6(&out[0]);
    assert_eq!((data[0], data[1]), (2, 0));
    assert_eq!(
        u32::from_be_bytes([data[4], data[5], data[6], data[7]]),
        1420
    );
    // MTU 0 (pre-RFC 1191 router): plateau below the Total Length 1428 -> 1006 -> floor 1280.
    let (_, out) = run(&t, &icmp4_error(3, 4, [0; 4], &inner[..28]));
    let (_, _, data) = check_v6(&out[0]);
    assert_eq!(
        u32::from_be_bytes([data[4], data[5], data[6], data[7]]),
        1280
    );
}

#[test]
fn s4_2_parameter_problem_pointer() {
    let t = translator();
    let inner = udp4(CLAT4, "203.0.113.10", b"x", 63, 0, DF);
    // Pointer 8 (TTL) -> 7 (Hop Limit); pointer 16 (destination) -> 24.
    for (p4, p6) in [(8u8, 7u32), (16, 24), (0, 0), (9, 6)] {
        let (_, out) = run(&t, &icmp4_error(12, 0, [p4, 0, 0, 0], &inner));
        let (_, _, data) = check_v6(&out[0]);
        assert_eq!((data[0], data[1]), (4, 0));
        assert_eq!(u32::from_be_bytes([data[4], data[5], data[6], data[7]]), p6);
    }
    // Protocol unreachable -> Parameter Problem code 1 pointer 6.
    let (_, out) = run(&t, &icmp4_error(3, 2, [0; 4], &inner));
    let (_, _, data) = check_v6(&out[0]);
    assert_eq!((data[0], data[1], data[7]), (4, 1, 6));
}

#[test]
fn s4_3_error_in_error_and_bad_checksum_dropped() {
    let t = translator();
    let inner_err = icmp4_error(3, 3, [0; 4], &udp4(CLAT4, "203.0.113.10", b"q", 63, 0, DF));
    // An ICMP error quoting an ICMP error.
    let mut inner = inner_err.clone();
    inner[12..16].copy_from_slice(&a4(CLAT4).octets());
    inner[16..20].copy_from_slice(&a4("203.0.113.10").octets());
    let (o, _) = run(&t, &icmp4_error(11, 0, [0; 4], &inner));
    assert_eq!(o, Outcome::Drop(DropReason::IcmpErrorInError));
    let mut bad = icmp4_error(3, 3, [0; 4], &udp4(CLAT4, "203.0.113.10", b"q", 63, 0, DF));
    let n = bad.len();
    bad[n - 1] ^= 1;
    assert_eq!(run(&t, &bad).0, Outcome::Drop(DropReason::BadIcmpChecksum));
}

#[test]
fn s4_4_truncated_to_1280() {
    let t = translator();
    let inner = udp4(CLAT4, "203.0.113.10", &[5; 1400], 63, 0, DF);
    let (_, out) = run(&t, &icmp4_error(11, 0, [0; 4], &inner));
    assert_eq!(out[0].len(), 1280);
    check_v6(&out[0]);
}

#[test]
fn rfc4884_extension_4to6() {
    let t = translator();
    let inner = udp4(CLAT4, "203.0.113.10", &[3; 100], 63, 0, DF); // 128 bytes
    let ext = [0x20, 0, 0, 0, 0, 8, 1, 1, 0xde, 0xad, 0xbe, 0xef]; // version 2 header + one object
    let mut body = inner.clone();
    body.extend_from_slice(&ext);
    let (_, out) = run(&t, &icmp4_error(11, 0, [0, 32, 0, 0], &body)); // length 32 words = 128
    let (_, _, data) = check_v6(&out[0]);
    // RFC 4884 section 5.1: whole 64-bit words. The 128-byte IPv4 datagram
    // (32 words of 32 bits) is 148 bytes as IPv6: cut to 144 (18 words of
    // 64 bits), not padded to 152.
    assert_eq!(data[4], 18);
    assert_eq!(data.len(), 8 + 144 + ext.len());
    assert_eq!(&data[8 + 144..], &ext[..], "extension after the datagram");
    let (ih, _, _) = check_v6_inner(&data[8..8 + 144]);
    assert_eq!(
        ih.payload_length, 108,
        "inner length as the original claimed"
    );
}

/// The inner packet of an ICMPv6 error, which may be cut short: parsed with
/// etherparse's lax slice.
fn check_v6_inner(p: &[u8]) -> (etherparse::Ipv6Header, u8, Vec<u8>) {
    let (s, _) = etherparse::LaxIpv6Slice::from_slice(p).expect("inner IPv6 parses");
    let h = s.header().to_header();
    let proto = s.payload().ip_number.0;
    (h, proto, s.payload().payload.to_vec())
}

#[test]
fn rfc4884_extension_4to6_ipv4_padding_and_minimum() {
    let t = translator();
    let ext = [0x20, 0, 0, 0, 0, 8, 1, 1, 0xde, 0xad, 0xbe, 0xef];
    // A 126-byte datagram and 2 bytes of IPv4 padding (length 32 words):
    // 146 bytes as IPv6, cut to 144 (18 words); the padding is not carried.
    let inner = udp4(CLAT4, "203.0.113.10", &[3; 98], 63, 0, DF);
    assert_eq!(inner.len(), 126);
    let mut body = inner.clone();
    body.extend_from_slice(&[0, 0]);
    body.extend_from_slice(&ext);
    let (_, out) = run(&t, &icmp4_error(3, 3, [0, 32, 0, 0], &body));
    let (_, _, data) = check_v6(&out[0]);
    assert_eq!(data[4], 18);
    assert_eq!(&data[8 + 144..], &ext[..]);
    // A 60-byte datagram padded to 128 (length 32): 80 bytes as IPv6, padded
    // with zeros to the 128-byte minimum (16 words).
    let inner = udp4(CLAT4, "203.0.113.10", &[3; 32], 63, 0, DF);
    assert_eq!(inner.len(), 60);
    let mut body = inner.clone();
    body.resize(128, 0);
    body.extend_from_slice(&ext);
    let (_, out) = run(&t, &icmp4_error(3, 3, [0, 32, 0, 0], &body));
    let (_, _, data) = check_v6(&out[0]);
    assert_eq!(data[4], 16);
    assert_eq!(data.len(), 8 + 128 + ext.len());
    let (ih, iproto, idata) = check_v6(&data[8..8 + 80]);
    assert_eq!((iproto, ih.hop_limit), (17, 63));
    assert_eq!(&idata[8..], &[3; 32]);
    assert!(
        data[8 + 80..8 + 128].iter().all(|&b| b == 0),
        "zero padding"
    );
    assert_eq!(&data[8 + 128..], &ext[..]);
}

#[test]
fn rfc6791_icmpv4_error_source_without_ipv6_form() {
    // With the Well-Known Prefix, a router at 10.0.0.1 has no IPv6 form.
    let mut cfg = config();
    cfg.pool6 = Some("64:ff9b::/96".parse().unwrap());
    cfg.pool6791_v6 = Some(a6("2001:db8:ffff::1"));
    let t = Translator::new(cfg).unwrap();
    let inner = udp4(CLAT4, "8.8.8.8", b"x", 63, 0, DF);
    let m = icmp(11, 0, [0; 4], &inner, &no_pseudo);
    let pkt = ipv4(a4("10.0.0.1"), a4(CLAT4), 1, 60, 0, 9, 0, &[], &m);
    let (o, out) = run(&t, &pkt);
    assert_eq!(o, Outcome::Forward(IpVersion::V6));
    assert_eq!(check_v6(&out[0]).0.source_addr(), a6("2001:db8:ffff::1"));
}

/// RFC 6791 is for ICMP errors only: any other packet whose source has no
/// IPv6 form is refused, not given the pool6791 address.
#[test]
fn rfc6791_source_only_for_icmp_errors() {
    let mut cfg = config();
    cfg.pool6 = Some("64:ff9b::/96".parse().unwrap());
    cfg.pool6791_v6 = Some(a6("2001:db8:ffff::1"));
    let t = Translator::new(cfg).unwrap();
    let (s, d) = (a4("10.0.0.1"), a4("8.8.8.8"));
    let u = udp(1, 2, b"x", &|l| pseudo4(s, d, 17, l));
    let pkt = ipv4(s, d, 17, 64, 0, 1, DF, &[], &u);
    assert_eq!(run(&t, &pkt).0, Outcome::Drop(DropReason::NonGlobalWkp));
    let m = icmp(8, 0, [0, 1, 0, 1], b"ping", &no_pseudo);
    let pkt = ipv4(s, d, 1, 64, 0, 1, DF, &[], &m);
    assert_eq!(run(&t, &pkt).0, Outcome::Drop(DropReason::NonGlobalWkp));
}

/// RFC 7915 4.3: an ICMP error quoting fewer than 4 bytes of an ICMP
/// message (no room for its checksum) quotes them as they are, inside a
/// translated IPv6 header.
#[test]
fn s4_3_quoted_icmp_shorter_than_its_checksum() {
    let t = translator();
    let (s4, d4) = (a4(CLAT4), a4("203.0.113.10"));
    let echo = icmp(8, 0, [0, 1, 0, 1], b"ping", &no_pseudo);
    for n in [0usize, 1, 2, 3] {
        let full = ipv4(s4, d4, 1, 63, 0, 1, DF, &[], &echo);
        let (o, out) = run(&t, &icmp4_error(11, 0, [0; 4], &full[..20 + n]));
        assert_eq!(o, Outcome::Forward(IpVersion::V6), "{n} bytes");
        let (_, _, data) = check_v6(&out[0]);
        assert_eq!(data.len(), 8 + 40 + n, "{n} bytes");
        assert_eq!(data[8 + 6], 58, "{n} bytes: next header ICMPv6");
        assert_eq!(&data[8 + 40..], &echo[..n], "{n} bytes");
    }
}

// ---- RFC 6052 section 3.1 through the translator ----

#[test]
fn rfc6052_wkp_refuses_non_global() {
    let mut cfg = config();
    cfg.pool6 = Some("64:ff9b::/96".parse().unwrap());
    let t = Translator::new(cfg.clone()).unwrap();
    assert_eq!(
        run(&t, &udp4(CLAT4, "192.168.1.1", b"x", 64, 0, DF)).0,
        Outcome::Drop(DropReason::NonGlobalWkp)
    );
    let (o, out) = run(&t, &udp4(CLAT4, "8.8.8.8", b"x", 64, 0, DF));
    assert_eq!(o, Outcome::Forward(IpVersion::V6));
    assert_eq!(
        check_v6(&out[0]).0.destination_addr(),
        a6("64:ff9b::808:808")
    );
    let back = udp6(a6("64:ff9b::c0a8:101"), a6(CLAT6), b"x", 64);
    assert_eq!(run(&t, &back).0, Outcome::Drop(DropReason::NonGlobalWkp));
    cfg.refuse_non_global_wkp = false;
    let t = Translator::new(cfg).unwrap();
    assert_eq!(
        run(&t, &udp4(CLAT4, "192.168.1.1", b"x", 64, 0, DF)).0,
        Outcome::Forward(IpVersion::V6)
    );
}

// ---- Section 5.1: IPv6 header -> IPv4 header ----

#[test]
fn s5_1_udp_header_fields_and_df_rule() {
    let t = translator();
    let pkt = udp6(remote6("203.0.113.10"), a6(CLAT6), b"answer", 50);
    let (o, out) = run(&t, &pkt);
    assert_eq!(o, Outcome::Forward(IpVersion::V4));
    let (h, data) = check_v4(&out[0]);
    assert_eq!(h.source, a4("203.0.113.10").octets());
    assert_eq!(h.destination, a4(CLAT4).octets());
    assert_eq!(h.time_to_live, 50);
    assert_eq!(
        (h.dscp.value() << 2) | h.ecn.value(),
        0xb8,
        "TOS from traffic class"
    );
    assert!(!h.dont_fragment, "<= 1260 bytes: DF=0");
    assert!(!h.more_fragments);
    assert_eq!(&data[8..], b"answer");
    let big = udp6(remote6("203.0.113.10"), a6(CLAT6), &[0; 1300], 50);
    let (h, _) = check_v4(&run(&t, &big).1[0]);
    assert!(h.dont_fragment, "> 1260 bytes: DF=1");
    assert_eq!(h.identification, 0);
}

#[test]
fn s5_1_extension_headers_skipped() {
    let t = translator();
    let (s, d) = (remote6("203.0.113.10"), a6(CLAT6));
    let u = udp(53, 4000, b"ext", &|l| pseudo6(s, d, 17, l));
    // Hop-by-Hop (PadN) -> Destination Options (PadN) -> UDP.
    let ext = [60, 0, 1, 4, 0, 0, 0, 0, 17, 0, 1, 4, 0, 0, 0, 0];
    let (o, out) = run(&t, &ipv6(s, d, 0, 64, 0, &ext, &u));
    assert_eq!(o, Outcome::Forward(IpVersion::V4));
    let (h, data) = check_v4(&out[0]);
    assert_eq!(h.protocol.0, 17);
    assert_eq!(&data[8..], b"ext");
    assert_eq!(out[0].len(), 20 + u.len());
}

#[test]
fn s5_1_routing_header_with_segments_left() {
    let t = translator();
    let (s, d) = (remote6("203.0.113.10"), a6(CLAT6));
    let u = udp(53, 4000, b"rh", &|l| pseudo6(s, d, 17, l));
    let mut rh = vec![17, 2, 0, 1, 0, 0, 0, 0];
    rh.extend_from_slice(&a6("2001:db8::99").octets());
    let pkt = ipv6(s, d, 43, 64, 0, &rh, &u);
    let (o, out) = run(&t, &pkt);
    assert_eq!(o, Outcome::Reply(IpVersion::V6));
    let (h, proto, data) = check_v6(&out[0]);
    assert_eq!(proto, 58);
    assert_eq!(h.source_addr(), a6(SELF6));
    assert_eq!(h.destination_addr(), s);
    assert_eq!((data[0], data[1]), (4, 0));
    assert_eq!(
        u32::from_be_bytes([data[4], data[5], data[6], data[7]]),
        43,
        "pointer to Segments Left"
    );
}

#[test]
fn s5_1_fragment_header() {
    let t = translator();
    let (s, d) = (remote6("203.0.113.10"), a6(CLAT6));
    let pkt = ipv6(
        s,
        d,
        44,
        64,
        0,
        &frag_hdr(17, 100, true, 0xabcd1234),
        &[4; 80],
    );
    let (o, out) = run(&t, &pkt);
    assert_eq!(o, Outcome::Forward(IpVersion::V4));
    let (h, data) = check_v4(&out[0]);
    assert_eq!(
        h.identification, 0x1234,
        "low 16 bits of the Identification"
    );
    assert!(!h.dont_fragment);
    assert!(h.more_fragments);
    assert_eq!(h.fragment_offset.value(), 100);
    assert_eq!(data, vec![4; 80]);
}

#[test]
fn s5_1_atomic_fragment_rfc8021() {
    let t = translator();
    let (s, d) = (remote6("203.0.113.10"), a6(CLAT6));
    let u = udp(53, 4000, b"atomic", &|l| pseudo6(s, d, 17, l));
    let pkt = ipv6(s, d, 44, 64, 0, &frag_hdr(17, 0, false, 0x55), &u);
    let (o, out) = run(&t, &pkt);
    assert_eq!(o, Outcome::Forward(IpVersion::V4));
    let (h, data) = check_v4(&out[0]); // checksum verified: handled as a whole packet
    assert!(!h.more_fragments && h.fragment_offset.value() == 0 && !h.dont_fragment);
    assert_eq!(&data[8..], b"atomic");
}

#[test]
fn s5_1_too_big_for_ipv4_mtu() {
    let t = Translator::new(Config {
        mtu4: 1400,
        ..config()
    })
    .unwrap();
    let pkt = udp6(remote6("203.0.113.10"), a6(CLAT6), &[0; 1450], 64);
    let (o, out) = run(&t, &pkt);
    assert_eq!(o, Outcome::Reply(IpVersion::V6));
    let (_, _, data) = check_v6(&out[0]);
    assert_eq!((data[0], data[1]), (2, 0));
    assert_eq!(
        u32::from_be_bytes([data[4], data[5], data[6], data[7]]),
        1420
    );
    assert!(out[0].len() <= 1280);
}

#[test]
fn s5_1_df0_fragmented_for_small_ipv4_mtu() {
    let t = Translator::new(Config {
        mtu4: 576,
        ..config()
    })
    .unwrap();
    let payload: Vec<u8> = (0..1200u32).map(|i| (i * 7) as u8).collect();
    let (s, d) = (remote6("203.0.113.10"), a6(CLAT6));
    let (o, out) = run(&t, &udp6(s, d, &payload, 64));
    assert_eq!(o, Outcome::Forward(IpVersion::V4));
    assert_eq!(out.len(), 3);
    let mut re = Vec::new();
    let id = check_v4(&out[0]).0.identification;
    for (i, f) in out.iter().enumerate() {
        let (h, data) = check_v4(f);
        assert!(f.len() <= 576);
        assert_eq!(h.identification, id);
        assert_eq!(h.fragment_offset.value() as usize * 8, re.len());
        assert_eq!(h.more_fragments, i + 1 < out.len());
        re.extend_from_slice(&data);
    }
    assert_eq!(&re[8..], &payload[..]);
    let ps = pseudo4(a4("203.0.113.10"), a4(CLAT4), 17, re.len());
    assert_eq!(naive_sum(&[&ps, &re]), 0xffff);
}

#[test]
fn s5_1_hop_limit_exhausted() {
    let t = Translator::new(Config {
        decrement_ttl: true,
        ..config()
    })
    .unwrap();
    let pkt = udp6(remote6("203.0.113.10"), a6(CLAT6), b"x", 1);
    let (o, out) = run(&t, &pkt);
    assert_eq!(o, Outcome::Reply(IpVersion::V6));
    let (_, _, data) = check_v6(&out[0]);
    assert_eq!((data[0], data[1]), (3, 0));
    assert_eq!(&data[8..], &pkt[..]);
}

#[test]
fn s5_1_untranslatable_addresses() {
    let t = translator();
    let pkt = udp6(a6("2001:db8:99::1"), a6(CLAT6), b"x", 64);
    assert_eq!(
        run(&t, &pkt).0,
        Outcome::Drop(DropReason::UntranslatableSrc)
    );
    let pkt = udp6(remote6("203.0.113.10"), a6("2001:db8:99::1"), b"x", 64);
    assert_eq!(
        run(&t, &pkt).0,
        Outcome::Drop(DropReason::UntranslatableDst)
    );
}

// ---- Section 5.2 / 5.3: ICMPv6 ----

#[test]
fn s5_2_echo_reply() {
    let t = translator();
    let (s, d) = (remote6("203.0.113.10"), a6(CLAT6));
    let m = icmp(129, 0, [0, 1, 0, 2], b"pong", &|l| pseudo6(s, d, 58, l));
    let (o, out) = run(&t, &ipv6(s, d, 58, 64, 0, &[], &m));
    assert_eq!(o, Outcome::Forward(IpVersion::V4));
    let (h, data) = check_v4(&out[0]);
    assert_eq!(h.protocol.0, 1);
    assert_eq!((data[0], data[1]), (0, 0));
    assert_eq!(&data[4..], &m[4..]);
}

fn icmp6_error(src: std::net::Ipv6Addr, typ: u8, code: u8, rest: [u8; 4], inner: &[u8]) -> Vec<u8> {
    let d = a6(CLAT6);
    let m = icmp(typ, code, rest, inner, &|l| pseudo6(src, d, 58, l));
    ipv6(src, d, 58, 60, 0, &[], &m)
}

fn inner6(data: &[u8]) -> Vec<u8> {
    udp6(a6(CLAT6), remote6("203.0.113.10"), data, 63)
}

#[test]
fn s5_3_packet_too_big_with_inner_packet() {
    let t = translator();
    let pkt = icmp6_error(
        remote6("198.51.100.1"),
        2,
        0,
        1400u32.to_be_bytes(),
        &inner6(b"big"),
    );
    let (o, out) = run(&t, &pkt);
    assert_eq!(o, Outcome::Forward(IpVersion::V4));
    let (h, data) = check_v4(&out[0]);
    assert_eq!(h.source, a4("198.51.100.1").octets());
    assert_eq!((data[0], data[1]), (3, 4));
    assert_eq!(u16::from_be_bytes([data[6], data[7]]), 1380, "1400 - 20");
    let (ih, idata) = check_v4(&data[8..]);
    assert_eq!(ih.source, a4(CLAT4).octets());
    assert_eq!(ih.destination, a4("203.0.113.10").octets());
    assert_eq!(ih.time_to_live, 63);
    assert_eq!(&idata[8..], b"big");
}

/// Section 5.1 applies to the header of a translated ICMPv6 error too: TOS
/// from the Traffic Class, TTL from the Hop Limit (not decremented: this
/// translator is not configured as a router).
#[test]
fn s5_1_icmp_error_header_keeps_traffic_class_and_hop_limit() {
    let t = translator();
    let (src, d) = (remote6("198.51.100.1"), a6(CLAT6));
    let m = icmp(1, 4, [0; 4], &inner6(b"x"), &|l| pseudo6(src, d, 58, l));
    let (o, out) = run(&t, &ipv6(src, d, 58, 37, 0xb9, &[], &m));
    assert_eq!(o, Outcome::Forward(IpVersion::V4));
    let (h, data) = check_v4(&out[0]);
    assert_eq!((data[0], data[1]), (3, 3), "port unreachable");
    assert_eq!(h.time_to_live, 37);
    assert_eq!((h.dscp.value() << 2) | h.ecn.value(), 0xb9);
}

#[test]
fn s5_2_ptb_inner_with_fragment_header() {
    let t = translator();
    let (s, d) = (a6(CLAT6), remote6("203.0.113.10"));
    let inner = ipv6(s, d, 44, 63, 0, &frag_hdr(17, 0, true, 7), &[0; 64]);
    let pkt = icmp6_error(remote6("198.51.100.1"), 2, 0, 1400u32.to_be_bytes(), &inner);
    let (_, out) = run(&t, &pkt);
    let (_, data) = check_v4(&out[0]);
    assert_eq!(
        u16::from_be_bytes([data[6], data[7]]),
        1372,
        "1400 - 28 with a Fragment header"
    );
}

#[test]
fn s5_2_type_code_and_pointer() {
    let t = translator();
    let inner = inner6(b"x");
    for (typ, code, rest, want) in [
        (1u8, 0u8, 0u32, (3u8, 1u8, 0u8)),
        (1, 1, 0, (3, 10, 0)),
        (1, 4, 0, (3, 3, 0)),
        (3, 1, 0, (11, 1, 0)),
        (4, 0, 7, (12, 0, 8)),
        (4, 0, 24, (12, 0, 16)),
        (4, 1, 6, (3, 2, 0)),
    ] {
        let (o, out) = run(
            &t,
            &icmp6_error(
                remote6("198.51.100.1"),
                typ,
                code,
                rest.to_be_bytes(),
                &inner,
            ),
        );
        assert_eq!(o, Outcome::Forward(IpVersion::V4), "{typ}/{code}");
        let (_, data) = check_v4(&out[0]);
        assert_eq!((data[0], data[1], data[4]), want, "{typ}/{code}");
    }
    for (typ, code) in [(1u8, 5u8), (4, 2), (130, 0), (135, 0)] {
        let (o, _) = run(
            &t,
            &icmp6_error(remote6("198.51.100.1"), typ, code, [0; 4], &inner),
        );
        assert_eq!(
            o,
            Outcome::Drop(DropReason::IcmpUntranslatable),
            "{typ}/{code}"
        );
    }
}

#[test]
fn rfc6791_icmpv6_error_from_router_without_ipv4_form() {
    let t = translator();
    let pkt = icmp6_error(a6("2001:db8:ffff::1"), 3, 0, [0; 4], &inner6(b"x"));
    let (o, out) = run(&t, &pkt);
    assert_eq!(o, Outcome::Forward(IpVersion::V4));
    assert_eq!(check_v4(&out[0]).0.source, a4(POOL6791_4).octets());
    // Not an error: no RFC 6791 source.
    let echo = udp6(a6("2001:db8:ffff::1"), a6(CLAT6), b"x", 64);
    assert_eq!(
        run(&t, &echo).0,
        Outcome::Drop(DropReason::UntranslatableSrc)
    );
}

#[test]
fn s5_3_truncated_to_576() {
    let t = translator();
    let pkt = icmp6_error(remote6("198.51.100.1"), 3, 0, [0; 4], &inner6(&[1; 1100]));
    let (_, out) = run(&t, &pkt);
    assert_eq!(out[0].len(), 576);
    check_v4(&out[0]);
}

#[test]
fn rfc4884_extension_6to4() {
    let t = translator();
    let inner = inner6(&[3; 88]); // 40 + 8 + 88 = 136 bytes = 17 words of 8
    let ext = [0x20, 0, 0, 0, 0, 8, 1, 1, 0xde, 0xad, 0xbe, 0xef];
    let mut body = inner.clone();
    body.extend_from_slice(&ext);
    let pkt = icmp6_error(remote6("198.51.100.1"), 3, 0, [17, 0, 0, 0], &body);
    let (_, out) = run(&t, &pkt);
    let (_, data) = check_v4(&out[0]);
    let len4 = data[5] as usize * 4;
    assert_eq!(
        len4, 128,
        "116-byte IPv4 inner packet padded to 128 (RFC 4884 minimum)"
    );
    assert_eq!(&data[8 + len4..], &ext[..]);
}

#[test]
fn s5_3_bad_icmpv6_checksum_dropped() {
    let t = translator();
    let mut pkt = icmp6_error(remote6("198.51.100.1"), 1, 4, [0; 4], &inner6(b"x"));
    let n = pkt.len();
    pkt[n - 1] ^= 0x40;
    assert_eq!(run(&t, &pkt).0, Outcome::Drop(DropReason::BadIcmpChecksum));
}

#[test]
fn fragmented_icmp_dropped() {
    let t = translator();
    let (s, d) = (a4(CLAT4), a4("203.0.113.10"));
    let m = icmp(8, 0, [0; 4], &[0; 100], &no_pseudo);
    assert_eq!(
        run(&t, &ipv4(s, d, 1, 64, 0, 1, MF, &[], &m)).0,
        Outcome::Drop(DropReason::FragmentedIcmp)
    );
}

// ---- The engine's helper ----

#[test]
fn engine_helper_icmp6_error_to_icmp4() {
    let (s, d) = (a4(CLAT4), a4("203.0.113.10"));
    let orig = ipv4(
        s,
        d,
        17,
        64,
        0,
        1,
        DF,
        &[],
        &udp(40000, 9, &[0; 1400], &|l| pseudo4(s, d, 17, l)),
    );
    let mut buf = [0u8; 1500];
    let n = icmp6_error_to_icmp4(2, 0, 1400, &orig, d, 1500, &mut buf).unwrap();
    let (h, data) = check_v4(&buf[..n]);
    assert!(n <= 576);
    assert_eq!(h.source, d.octets());
    assert_eq!(h.destination, s.octets());
    assert_eq!((data[0], data[1]), (3, 4));
    assert_eq!(u16::from_be_bytes([data[6], data[7]]), 1380);
    assert_eq!(&data[8..28], &orig[..20]);
    let n = icmp6_error_to_icmp4(1, 4, 0, &orig[..48], d, 1500, &mut buf).unwrap();
    let (_, data) = check_v4(&buf[..n]);
    assert_eq!((data[0], data[1]), (3, 3));
    assert_eq!(&data[8..], &orig[..48]);
    assert_eq!(
        icmp6_error_to_icmp4(135, 0, 0, &orig, d, 1500, &mut buf),
        Err(DropReason::IcmpUntranslatable)
    );
}

#[test]
fn s5_2_engine_helper_follows_the_table() {
    // The cases where the engine's own mapping used to differ from RFC 7915
    // section 5.2 (issue 13); the engine now calls this helper.
    let (s, d) = (a4(CLAT4), a4("203.0.113.10"));
    let orig = udp4(CLAT4, "203.0.113.10", b"x", 64, 0, DF);
    let mut buf = [0u8; 600];
    // Time Exceeded: codes 0 and 1 map one to one; RFC 4443 defines no
    // other, and 5.2 translates only those: code 2 is dropped, not made 1.
    for code in [0u8, 1] {
        let n = icmp6_error_to_icmp4(3, code, 0, &orig, d, 1500, &mut buf).unwrap();
        let (h, data) = check_v4(&buf[..n]);
        assert_eq!(h.destination, s.octets());
        assert_eq!((data[0], data[1]), (11, code));
    }
    assert_eq!(
        icmp6_error_to_icmp4(3, 2, 0, &orig, d, 1500, &mut buf),
        Err(DropReason::IcmpUntranslatable)
    );
    // Packet Too Big: its Code is "set to 0 by the originator and ignored by
    // the receiver" (RFC 4443 section 3.2), so a nonzero one is translated
    // all the same (3/4, Fragmentation Needed), or the sender never learns
    // its path MTU.
    let n = icmp6_error_to_icmp4(2, 1, 1400, &orig, d, 1500, &mut buf).unwrap();
    let (_, data) = check_v4(&buf[..n]);
    assert_eq!((data[0], data[1]), (3, 4));
    assert_eq!(u16::from_be_bytes([data[6], data[7]]), 1380);
    // Its MTU is the IPv6 one less 20, capped by the TUN MTU passed in.
    let n = icmp6_error_to_icmp4(2, 0, 9000, &orig, d, 1500, &mut buf).unwrap();
    let (_, data) = check_v4(&buf[..n]);
    assert_eq!(u16::from_be_bytes([data[6], data[7]]), 1500);
    // Parameter Problem code 0 (erroneous header field) is translated, its
    // pointer mapped by figure 6: 7 (Hop Limit) -> 8 (TTL), 24 -> 16.
    for (p6, p4) in [(7u32, 8u8), (24, 16)] {
        let n = icmp6_error_to_icmp4(4, 0, p6, &orig, d, 1500, &mut buf).unwrap();
        let (_, data) = check_v4(&buf[..n]);
        assert_eq!((data[0], data[1], data[4]), (12, 0, p4));
    }
    // Code 1 (unrecognised Next Header) is Protocol Unreachable.
    let n = icmp6_error_to_icmp4(4, 1, 6, &orig, d, 1500, &mut buf).unwrap();
    let (_, data) = check_v4(&buf[..n]);
    assert_eq!((data[0], data[1]), (3, 2));
}

#[test]
fn s4_1_fragments_reassemble_after_refragmenting_a_fragment() {
    // A 1480-byte first IPv4 fragment (DF=0, MF=1) becomes IPv6 fragments
    // that must be cut again at 1280 with the original offsets.
    let t = translator();
    let (s, d) = (a4(CLAT4), a4("203.0.113.10"));
    let data: Vec<u8> = (0..1480u32).map(|i| i as u8).collect();
    let pkt = ipv4(s, d, 17, 64, 0, 0x4242, MF, &[], &data);
    let (_, out) = run(&t, &pkt);
    assert_eq!(out.len(), 2);
    let mut re = Vec::new();
    for f in &out {
        let fh = Ipv6FragmentHeaderSlice::from_slice(&f[40..48]).unwrap();
        assert!(
            fh.more_fragments(),
            "the datagram continues after the last piece"
        );
        assert_eq!(fh.fragment_offset().value() as usize * 8, re.len());
        re.extend_from_slice(&f[48..]);
    }
    assert_eq!(&re[8..], &data[8..], "UDP payload bytes");
}

#[test]
fn s4_4_and_s5_4_refusals() {
    let mut cfg = config();
    cfg.pool6 = Some("64:ff9b::/96".parse().unwrap());
    let t = Translator::new(cfg).unwrap();
    let mut out = OutBuf::new();
    let pkt = udp4(CLAT4, "192.168.1.1", b"x", 64, 0, DF);
    assert_eq!(
        t.translate_4to6(&pkt, &mut out),
        Outcome::Drop(DropReason::NonGlobalWkp)
    );
    assert_eq!(t.refuse_4(&pkt, &mut out), Outcome::Reply(IpVersion::V4));
    let (h, data) = check_v4(out.get(0).unwrap());
    assert_eq!(h.source, a4(SELF4).octets());
    assert_eq!(h.destination, a4(CLAT4).octets());
    assert_eq!(
        (data[0], data[1]),
        (3, 13),
        "Communication Administratively Prohibited"
    );
    assert_eq!(&data[8..], &pkt[..]);
    // Never about an ICMP error.
    let err = icmp4_error(3, 3, [0; 4], &pkt);
    assert_eq!(
        t.refuse_4(&err, &mut out),
        Outcome::Drop(DropReason::ErrorNotAllowed)
    );
    assert!(out.is_empty());
    let pkt6 = udp6(a6("2001:db8:99::1"), a6(CLAT6), b"x", 64);
    assert_eq!(t.refuse_6(&pkt6, &mut out), Outcome::Reply(IpVersion::V6));
    let (h, _, data) = check_v6(out.get(0).unwrap());
    assert_eq!(h.destination_addr(), a6("2001:db8:99::1"));
    assert_eq!((data[0], data[1]), (1, 1));
    let echo6 = ipv6(
        a6("2001:db8:99::1"),
        a6(CLAT6),
        58,
        64,
        0,
        &[],
        &icmp(128, 0, [0; 4], b"", &|l| {
            pseudo6(a6("2001:db8:99::1"), a6(CLAT6), 58, l)
        }),
    );
    assert_eq!(
        t.refuse_6(&echo6, &mut out),
        Outcome::Drop(DropReason::ErrorNotAllowed)
    );
}

// ---- Issue 13: the classes a SIIT conformance suite found ----

#[test]
fn s4_1_df_fragment_too_big_answers_fragmentation_needed() {
    // RFC 7915 4.1: DF set and Total Length + 20 above the next-hop MTU:
    // Fragmentation Needed, for a fragment as for a whole packet.
    let t = Translator::new(Config {
        mtu6: 1280,
        ..config()
    })
    .unwrap();
    let (s, d) = (a4(CLAT4), a4("203.0.113.10"));
    let pkt = ipv4(s, d, 6, 64, 0, 1234, DF | MF, &[], &[7; 1241]); // 1261 bytes
    let (o, out) = run(&t, &pkt);
    assert_eq!(o, Outcome::Reply(IpVersion::V4));
    let (h, data) = check_v4(&out[0]);
    assert_eq!((h.source, h.destination), (a4(SELF4).octets(), s.octets()));
    assert_eq!((data[0], data[1]), (3, 4));
    assert_eq!(u16::from_be_bytes([data[6], data[7]]), 1260, "MTU - 20");
    assert_eq!(out[0].len(), 576);
    assert_eq!(&data[8..], &pkt[..548]);
    // At the advertised size (1260 + 20 = 1280) it is translated: with its
    // Fragment header it is 1288 bytes, so it is cut to fit.
    let pkt = ipv4(s, d, 6, 64, 0, 1234, DF | MF, &[], &[7; 1240]);
    let (o, out) = run(&t, &pkt);
    assert_eq!(o, Outcome::Forward(IpVersion::V6));
    assert!(out.len() == 2 && out.iter().all(|p| p.len() <= 1280));
}

#[test]
fn s5_1_fragment_too_big_answers_packet_too_big() {
    // An IPv6 fragment whose IPv4 form (20 + 1381 bytes) exceeds mtu4 1400:
    // Packet Too Big with mtu4 + 20, quoting the fragment.
    let t = Translator::new(Config {
        mtu4: 1400,
        ..config()
    })
    .unwrap();
    let (s, d) = (remote6("203.0.113.10"), a6(CLAT6));
    let pkt = ipv6(s, d, 44, 64, 0, &frag_hdr(6, 0, true, 1234), &[9; 1381]);
    assert_eq!(pkt.len(), 1429);
    let (o, out) = run(&t, &pkt);
    assert_eq!(o, Outcome::Reply(IpVersion::V6));
    let (h, proto, data) = check_v6(&out[0]);
    assert_eq!(proto, 58);
    assert_eq!((h.source_addr(), h.destination_addr()), (a6(SELF6), s));
    assert_eq!((data[0], data[1]), (2, 0));
    assert_eq!(
        u32::from_be_bytes([data[4], data[5], data[6], data[7]]),
        1420
    );
    assert_eq!(out[0].len(), 1280);
    assert_eq!(&data[8..], &pkt[..1232]);
    // One byte less fits: translated, not cut.
    let pkt = ipv6(s, d, 44, 64, 0, &frag_hdr(6, 0, true, 1234), &[9; 1380]);
    let (o, out) = run(&t, &pkt);
    assert_eq!(o, Outcome::Forward(IpVersion::V4));
    assert_eq!(out[0].len(), 1400);
}

#[test]
fn s5_1_1_extension_header_after_fragment_header_refused() {
    // RFC 7915 5.1.1: an extension header after the Fragment header "SHOULD
    // be dropped"; RFC 7915 5.4: ICMPv6 Destination Unreachable, Communication
    // with Destination Administratively Prohibited (type 1, code 1).
    let t = translator();
    let (s, d) = (remote6("203.0.113.10"), a6(CLAT6));
    let u = udp(53, 4000, b"ext", &|l| pseudo6(s, d, 17, l));
    let opts = |next: u8| vec![next, 0, 1, 4, 0, 0, 0, 0]; // PadN
    let rh0 = |next: u8| vec![next, 0, 0, 0, 0, 0, 0, 0]; // Segments Left 0
    let cat = |parts: &[Vec<u8>]| parts.concat();
    let cases: Vec<(u8, Vec<u8>)> = vec![
        (44, cat(&[frag_hdr(0, 0, true, 1), opts(17)])),
        (44, cat(&[frag_hdr(60, 0, true, 1), opts(17)])),
        (44, cat(&[frag_hdr(43, 0, true, 1), rh0(17)])),
        (0, cat(&[opts(44), frag_hdr(0, 0, true, 1), opts(17)])),
        (60, cat(&[opts(44), frag_hdr(60, 0, true, 1), opts(17)])),
        (43, cat(&[rh0(44), frag_hdr(43, 0, true, 1), rh0(17)])),
        // A Routing header with Segments Left 2 after the Fragment header:
        // out of place first, so the same refusal, not Parameter Problem.
        (
            43,
            cat(&[
                rh0(44),
                frag_hdr(43, 0, true, 1),
                vec![17, 0, 0, 2, 0, 0, 0, 0],
            ]),
        ),
    ];
    for (i, (first, ext)) in cases.iter().enumerate() {
        let pkt = ipv6(s, d, *first, 64, 0, ext, &u);
        let (o, out) = run(&t, &pkt);
        assert_eq!(o, Outcome::Reply(IpVersion::V6), "case {i}");
        let (h, proto, data) = check_v6(&out[0]);
        assert_eq!(proto, 58);
        assert_eq!((h.source_addr(), h.destination_addr()), (a6(SELF6), s));
        assert_eq!(&data[..2], &[1, 1], "case {i}");
        assert_eq!(&data[4..8], &[0; 4]);
        assert_eq!(&data[8..], &pkt[..], "case {i}: the packet quoted");
    }
    // The same headers before the Fragment header are skipped as before.
    let pkt = ipv6(
        s,
        d,
        60,
        64,
        0,
        &cat(&[opts(44), frag_hdr(17, 0, false, 1)]),
        &u,
    );
    assert_eq!(run(&t, &pkt).0, Outcome::Forward(IpVersion::V4));
    // No error about an ICMPv6 message (RFC 7915 5.4).
    let e = icmp(128, 0, [0, 1, 0, 1], b"x", &|l| pseudo6(s, d, 58, l));
    let pkt = ipv6(
        s,
        d,
        44,
        64,
        0,
        &cat(&[frag_hdr(60, 0, false, 1), opts(58)]),
        &e,
    );
    assert_eq!(
        run(&t, &pkt).0,
        Outcome::Drop(DropReason::ExtensionAfterFragment)
    );
}

#[test]
fn s5_1_no_next_header_translated() {
    // RFC 8200 section 4.7: Next Header 59 and nothing after the header.
    // RFC 7915 5.1: Protocol copied (59), Total Length 20.
    let t = translator();
    let (s, d) = (remote6("203.0.113.10"), a6(CLAT6));
    let pkt = ipv6(s, d, 59, 64, 0, &[], &[]);
    let (o, out) = run(&t, &pkt);
    assert_eq!(o, Outcome::Forward(IpVersion::V4));
    let (h, data) = check_v4(&out[0]);
    assert_eq!((h.protocol.0, h.total_len), (59, 20));
    assert!(data.is_empty());
    // With a Fragment header (an atomic fragment): Identification from it.
    let pkt = ipv6(s, d, 44, 64, 0, &frag_hdr(59, 0, false, 0x0102_0304), &[]);
    let (o, out) = run(&t, &pkt);
    assert_eq!(o, Outcome::Forward(IpVersion::V4));
    let (h, _) = check_v4(&out[0]);
    assert_eq!((h.protocol.0, h.identification), (59, 0x0304));
    // A real jumbogram (RFC 2675: Payload Length 0 and Hop-by-Hop) stays
    // untranslatable: it cannot fit IPv4.
    let jumbo = [59, 0, 0xc2, 4, 0, 1, 0, 0];
    let mut pkt = ipv6(s, d, 0, 64, 0, &jumbo, &[]);
    pkt[4..6].copy_from_slice(&[0, 0]);
    assert_eq!(run(&t, &pkt).0, Outcome::Drop(DropReason::TooBig));
}

#[test]
fn s5_1_1_icmpv6_error_identification_from_fragment_header() {
    // An ICMPv6 error in an atomic fragment: the IPv4 Identification is the
    // low 16 bits of the Fragment header's.
    let t = translator();
    let src = remote6("198.51.100.1");
    let d = a6(CLAT6);
    let m = icmp(1, 4, [0; 4], &inner6(b"q"), &|l| pseudo6(src, d, 58, l));
    let pkt = ipv6(src, d, 44, 60, 0, &frag_hdr(58, 0, false, 0xa1b2_c3d4), &m);
    let (o, out) = run(&t, &pkt);
    assert_eq!(o, Outcome::Forward(IpVersion::V4));
    let (h, data) = check_v4(&out[0]);
    assert_eq!(h.identification, 0xc3d4);
    assert!(!h.dont_fragment && !h.more_fragments);
    assert_eq!((data[0], data[1]), (3, 3), "Port Unreachable");
}

#[test]
fn rfc7757_3_2_eam_with_longer_ipv6_suffix_translates() {
    // 198.51.100.0/24 = 2001:db8:1c6:3364::/72: the IPv4 suffix (one byte)
    // lands in bits 72..80, written out here by hand.
    let mut cfg = config();
    cfg.eam
        .insert(
            clat_xlat::Eam::new(
                "198.51.100.0/24".parse().unwrap(),
                "2001:db8:1c6:3364::/72".parse().unwrap(),
            )
            .unwrap(),
        )
        .unwrap();
    let t = Translator::new(cfg).unwrap();
    let pkt = udp4("198.51.100.2", "203.0.113.10", b"eam", 64, 0, DF);
    let (o, out) = run(&t, &pkt);
    assert_eq!(o, Outcome::Forward(IpVersion::V6));
    let (h, _, data) = check_v6(&out[0]);
    assert_eq!(h.source_addr(), a6("2001:db8:1c6:3364:2::"));
    assert_eq!(&data[8..], b"eam");
    // And back.
    let back = udp6(
        remote6("203.0.113.10"),
        a6("2001:db8:1c6:3364:2::"),
        b"r",
        64,
    );
    let (o, out) = run(&t, &back);
    assert_eq!(o, Outcome::Forward(IpVersion::V4));
    let (h, _) = check_v4(&out[0]);
    assert_eq!(h.destination, a4("198.51.100.2").octets());
}

#[test]
fn rfc7757_4_hairpinning() {
    // RFC 7757 section 4 / appendix B.1 style: pool6 2001:db8:100::/40, EAM
    // 2001:db8:3::/120 = 1.0.0.0/24. 2001:db8:3::8 (1.0.0.8) sends to the
    // pool6 address of 1.0.0.9, 2001:db8:101:0:9:: (RFC 6052 /40: bytes
    // 5..8 = 1.0.0, byte 8 the u-octet, byte 9 = 9). It comes back as IPv6
    // from the pool6 address of 1.0.0.8 to the EAM address of 1.0.0.9.
    let mut eam = clat_xlat::EamTable::new();
    eam.insert(
        clat_xlat::Eam::new(
            "1.0.0.0/24".parse().unwrap(),
            "2001:db8:3::/120".parse().unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    let t = Translator::new(Config {
        pool6: Some("2001:db8:100::/40".parse().unwrap()),
        eam,
        decrement_ttl: true,
        ..Config::default()
    })
    .unwrap();
    let (s, d) = (a6("2001:db8:3::8"), a6("2001:db8:101:0:9::"));
    let pkt = udp6(s, d, b"hair", 64);
    let (o, out) = run(&t, &pkt);
    assert_eq!(o, Outcome::Forward(IpVersion::V6));
    let (h, proto, data) = check_v6(&out[0]); // checks the UDP checksum
    assert_eq!(h.source_addr(), a6("2001:db8:101:0:8::"));
    assert_eq!(h.destination_addr(), a6("2001:db8:3::9"));
    assert_eq!((proto, h.hop_limit), (17, 63));
    assert_eq!(&data[8..], b"hair");
    // An echo request: the ICMPv6 checksum (pseudo-header) is adjusted too.
    let e = icmp(128, 0, [0, 1, 0, 1], b"ping", &|l| pseudo6(s, d, 58, l));
    let (o, out) = run(&t, &ipv6(s, d, 58, 64, 0, &[], &e));
    assert_eq!(o, Outcome::Forward(IpVersion::V6));
    let (_, proto, data) = check_v6(&out[0]);
    assert_eq!((proto, data[0]), (58, 128));
    // An ICMPv6 error about a hairpinned packet, from a router with no IPv4
    // form (RFC 6791 source 203.0.113.8): the packet inside it is mapped
    // back too. Outer: from the pool6 address of 203.0.113.8
    // (2001:db8:1cb:71:8::) to 2001:db8:3::1; inner: from 2001:db8:3::1 to
    // the pool6 address of 10.0.0.10 (2001:db8:10a:0:a::), as the host
    // sent it.
    let mut eam = clat_xlat::EamTable::new();
    for (v4, v6) in [
        ("1.0.0.0/24", "2001:db8:3::/120"),
        ("10.0.0.0/24", "2001:db8:2::/120"),
    ] {
        let e = clat_xlat::Eam::new(v4.parse().unwrap(), v6.parse().unwrap()).unwrap();
        eam.insert(e).unwrap();
    }
    let t2 = Translator::new(Config {
        pool6: Some("2001:db8:100::/40".parse().unwrap()),
        eam,
        pool6791_v4: Some(a4("203.0.113.8")),
        ..Config::default()
    })
    .unwrap();
    let (is, id) = (a6("2001:db8:101:0:1::"), a6("2001:db8:2::a"));
    let inner = ipv6(
        is,
        id,
        17,
        63,
        0,
        &[],
        &udp(1, 2, b"in", &|l| pseudo6(is, id, 17, l)),
    );
    let rtr = a6("2001:db8::5");
    let m = icmp(1, 0, [0; 4], &inner, &|l| pseudo6(rtr, is, 58, l));
    let (o, out) = run(&t2, &ipv6(rtr, is, 58, 60, 0, &[], &m));
    assert_eq!(o, Outcome::Forward(IpVersion::V6));
    let (h, proto, data) = check_v6(&out[0]); // ICMPv6 checksum
    assert_eq!(proto, 58);
    assert_eq!(h.source_addr(), a6("2001:db8:1cb:71:8::"));
    assert_eq!(h.destination_addr(), a6("2001:db8:3::1"));
    assert_eq!(&data[..2], &[1, 0]);
    let (ih, iproto, idata) = check_v6(&data[8..]); // inner UDP checksum
    assert_eq!(ih.source_addr(), a6("2001:db8:3::1"));
    assert_eq!(ih.destination_addr(), a6("2001:db8:10a:0:a::"));
    assert_eq!((iproto, ih.hop_limit, &idata[8..]), (17, 63, &b"in"[..]));
    // To an EAM address directly: no hairpin, ordinary translation to IPv4.
    let pkt = udp6(s, a6("2001:db8:3::9"), b"x", 64);
    let (o, out) = run(&t, &pkt);
    assert_eq!(o, Outcome::Forward(IpVersion::V4));
    let (h, _) = check_v4(&out[0]);
    assert_eq!((h.source, h.destination), ([1, 0, 0, 8], [1, 0, 0, 9]));
}
