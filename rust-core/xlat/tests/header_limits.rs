//! Header limits the translator must hold to (RFC 791 section 3.1, RFC 8200
//! section 3, RFC 7915 sections 4.5 and 5.3), found unchecked by
//! `cargo mutants -p clat-xlat`: an IHL below 5, a header longer than the
//! bytes present, a header-only datagram, a first fragment that does not
//! hold the TCP checksum, and bytes after the packet quoted in an ICMPv6
//! error. Packets are built by hand with `common`.

mod common;
use clat_xlat::{DropReason, IpVersion, OutBuf, Outcome, Translator};
use common::*;

const REMOTE4: &str = "203.0.113.10";

fn run(t: &Translator, pkt: &[u8]) -> (Outcome, Vec<Vec<u8>>) {
    let mut out = OutBuf::new();
    let o = t.translate(pkt, &mut out);
    (o, out.iter().map(|p| p.to_vec()).collect())
}

/// RFC 791 section 3.1: "the minimum value for a correct header is 5"
/// (20 bytes). A header claiming 4 words is malformed even when its
/// checksum over those 16 bytes is right.
#[test]
fn rfc791_ihl_below_5_is_malformed() {
    let t = translator();
    let mut pkt = ipv4(a4(CLAT4), a4(REMOTE4), 17, 64, 0, 1, 0, &[], &[0; 12]);
    pkt[0] = 0x44;
    pkt[10..12].copy_from_slice(&[0, 0]);
    let c = naive_csum(&[&pkt[..16]]);
    pkt[10..12].copy_from_slice(&c.to_be_bytes());
    assert_eq!(naive_sum(&[&pkt[..16]]), 0xffff);
    assert_eq!(run(&t, &pkt).0, Outcome::Drop(DropReason::Malformed));
}

/// The packet quoted in an ICMPv4 error may be cut short, but not inside
/// its own header: an IHL of 6 (24 bytes) with 22 bytes quoted, or an IHL
/// of 4, leave nothing to translate (RFC 7915 section 4.3).
#[test]
fn s4_3_quoted_header_shorter_than_its_ihl_is_malformed() {
    let t = translator();
    let (s, d) = (a4(CLAT4), a4(REMOTE4));
    let inner = ipv4(s, d, 17, 63, 0, 1, 0, &[1, 1, 1, 0], &[0; 100]);
    assert_eq!(inner[0], 0x46);
    let mut quoted = inner[..22].to_vec();
    let m = icmp(3, 3, [0; 4], &quoted, &no_pseudo);
    let err = ipv4(a4("198.51.100.1"), s, 1, 60, 0, 9, 0, &[], &m);
    assert_eq!(run(&t, &err).0, Outcome::Drop(DropReason::Malformed));
    quoted = ipv4(s, d, 17, 63, 0, 1, 0, &[], &[0; 20]);
    quoted[0] = 0x44;
    let m = icmp(3, 3, [0; 4], &quoted, &no_pseudo);
    let err = ipv4(a4("198.51.100.1"), s, 1, 60, 0, 9, 0, &[], &m);
    assert_eq!(run(&t, &err).0, Outcome::Drop(DropReason::Malformed));
}

/// RFC 7915 section 4.1 translates the header whatever follows it: a
/// 20-byte datagram with no payload becomes a 40-byte IPv6 packet.
#[test]
fn s4_1_header_only_datagram_is_translated() {
    let t = translator();
    let pkt = ipv4(a4(CLAT4), a4(REMOTE4), 47, 64, 0, 1, DF, &[], &[]);
    assert_eq!(pkt.len(), 20);
    let (o, out) = run(&t, &pkt);
    assert_eq!(o, Outcome::Forward(IpVersion::V6));
    let (h, proto, data) = check_v6(&out[0]);
    assert_eq!((h.payload_length, proto), (0, 47));
    assert!(data.is_empty());
}

/// RFC 7915 sections 4.5 and 5.5: the TCP checksum (bytes 16-17 of the
/// header) is adjusted in the first fragment; a first fragment of 16 bytes
/// does not hold it, one of 24 does.
#[test]
fn s4_5_and_s5_5_first_fragment_must_hold_the_tcp_checksum() {
    let t = translator();
    let (s, d) = (a4(CLAT4), a4(REMOTE4));
    let seg = tcp(1, 2, 3, &[7; 40], &|l| pseudo4(s, d, 6, l));
    let short = ipv4(s, d, 6, 64, 0, 5, MF, &[], &seg[..16]);
    assert_eq!(
        run(&t, &short).0,
        Outcome::Drop(DropReason::TruncatedTransport)
    );
    let enough = ipv4(s, d, 6, 64, 0, 5, MF, &[], &seg[..24]);
    assert_eq!(run(&t, &enough).0, Outcome::Forward(IpVersion::V6));

    let (s6, d6) = (remote6(REMOTE4), a6(CLAT6));
    let seg6 = tcp(1, 2, 3, &[7; 40], &|l| pseudo6(s6, d6, 6, l));
    let short6 = ipv6(s6, d6, 44, 64, 0, &frag_hdr(6, 0, true, 9), &seg6[..16]);
    assert_eq!(
        run(&t, &short6).0,
        Outcome::Drop(DropReason::TruncatedTransport)
    );
    let enough6 = ipv6(s6, d6, 44, 64, 0, &frag_hdr(6, 0, true, 9), &seg6[..24]);
    assert_eq!(run(&t, &enough6).0, Outcome::Forward(IpVersion::V4));
}

/// RFC 7915 section 5.3: the packet inside an ICMPv6 error ends where its
/// Payload Length says; bytes after it in the error's body (padding by the
/// router that sent it) are not part of it and do not follow it into the
/// ICMPv4 error.
#[test]
fn s5_3_quoted_packet_ends_at_its_payload_length() {
    let t = translator();
    let (s6, d6) = (a6(CLAT6), remote6(REMOTE4));
    let u = udp(5000, 53, b"q", &|l| pseudo6(s6, d6, 17, l));
    let mut body = ipv6(s6, d6, 17, 63, 0, &[], &u);
    body.extend_from_slice(&[0; 7]);
    let r = remote6("198.51.100.1");
    let m = icmp(1, 0, [0; 4], &body, &|l| pseudo6(r, s6, 58, l));
    let (o, out) = run(&t, &ipv6(r, s6, 58, 60, 0, &[], &m));
    assert_eq!(o, Outcome::Forward(IpVersion::V4));
    let (_, data) = check_v4(&out[0]);
    let (s4, d4) = (a4(CLAT4), a4(REMOTE4));
    let u4 = udp(5000, 53, b"q", &|l| pseudo4(s4, d4, 17, l));
    let want = ipv4(s4, d4, 17, 63, 0, 0, 0, &[], &u4);
    assert_eq!(&data[8..], &want[..]);
}

/// RFC 791: Total Length is 16 bits. An IPv6 packet with 65515 bytes of
/// payload still has an IPv4 form (65535 bytes, too big for the IPv4 MTU,
/// so Packet Too Big answers it, RFC 7915 section 5.1); with 65516 it has
/// none and is dropped.
#[test]
fn s5_1_largest_translatable_payload_is_65515_bytes() {
    let t = translator();
    let (s, d) = (remote6(REMOTE4), a6(CLAT6));
    let fits = udp(53, 4000, &vec![0; 65515 - 8], &|l| pseudo6(s, d, 17, l));
    let (o, out) = run(&t, &ipv6(s, d, 17, 64, 0, &[], &fits));
    assert_eq!(o, Outcome::Reply(IpVersion::V6));
    let (_, _, data) = check_v6(&out[0]);
    assert_eq!((data[0], data[1]), (2, 0));
    let over = udp(53, 4000, &vec![0; 65516 - 8], &|l| pseudo6(s, d, 17, l));
    let (o, out) = run(&t, &ipv6(s, d, 17, 64, 0, &[], &over));
    assert_eq!(o, Outcome::Drop(DropReason::TooBig));
    assert!(out.is_empty());
}

fn icmp6_unreach(quoted: &[u8]) -> Vec<u8> {
    let (r, c) = (remote6("198.51.100.1"), a6(CLAT6));
    let m = icmp(1, 0, [0; 4], quoted, &|l| pseudo6(r, c, 58, l));
    ipv6(r, c, 58, 60, 0, &[], &m)
}

/// RFC 7915 section 5.3 (and RFC 4443 section 3.1: the quote is "as much
/// of the invoking packet as possible"): a quote that ends right after an
/// extension header, or right after the Fragment header, still has a
/// header to translate. Its Total Length is what the original claimed,
/// and a Fragment header's Identification and M flag are kept.
#[test]
fn s5_3_quote_ending_right_after_an_extension_header() {
    let t = translator();
    let (s6, d6) = (a6(CLAT6), remote6(REMOTE4));
    let (s4, d4) = (a4(CLAT4), a4(REMOTE4));
    let u6 = udp(5000, 53, b"query", &|l| pseudo6(s6, d6, 17, l));
    let u4 = udp(5000, 53, b"query", &|l| pseudo4(s4, d4, 17, l));
    let dstopts = [17u8, 0, 1, 4, 0, 0, 0, 0];
    let full = ipv6(s6, d6, 60, 63, 0, &dstopts, &u6);
    let (o, out) = run(&t, &icmp6_unreach(&full[..48]));
    assert_eq!(o, Outcome::Forward(IpVersion::V4));
    let (_, data) = check_v4(&out[0]);
    assert_eq!(&data[8..], &ipv4(s4, d4, 17, 63, 0, 0, 0, &[], &u4)[..20]);

    let first = ipv6(
        s6,
        d6,
        44,
        63,
        0,
        &frag_hdr(17, 0, true, 0x0007_1234),
        &[9; 16],
    );
    let (o, out) = run(&t, &icmp6_unreach(&first[..48]));
    assert_eq!(o, Outcome::Forward(IpVersion::V4));
    let (_, data) = check_v4(&out[0]);
    assert_eq!(
        &data[8..],
        &ipv4(s4, d4, 17, 63, 0, 0x1234, MF, &[], &[9; 16])[..20]
    );
}

/// RFC 7915 sections 4.3 and 5.3: the TCP checksum inside a quoted packet
/// is fixed only when the quote reaches it (bytes 16-17); a quote of 8 TCP
/// bytes (ports and sequence number, all RFC 792 promises) is carried as is.
#[test]
fn s4_3_and_s5_3_quoted_tcp_shorter_than_its_checksum() {
    let t = translator();
    let (s6, d6) = (a6(CLAT6), remote6(REMOTE4));
    let (s4, d4) = (a4(CLAT4), a4(REMOTE4));
    let seg6 = tcp(40001, 443, 0x0a0b_0c0d, b"data", &|l| pseudo6(s6, d6, 6, l));
    let seg4 = tcp(40001, 443, 0x0a0b_0c0d, b"data", &|l| pseudo4(s4, d4, 6, l));
    let full6 = ipv6(s6, d6, 6, 63, 0, &[], &seg6);
    let (o, out) = run(&t, &icmp6_unreach(&full6[..48]));
    assert_eq!(o, Outcome::Forward(IpVersion::V4));
    let (_, data) = check_v4(&out[0]);
    let mut want = ipv4(s4, d4, 6, 63, 0, 0, 0, &[], &seg4)[..20].to_vec();
    want.extend_from_slice(&seg4[..8]);
    assert_eq!(&data[8..], &want[..]);

    let full4 = ipv4(s4, d4, 6, 63, 0, 1, DF, &[], &seg4);
    let m = icmp(3, 3, [0; 4], &full4[..28], &no_pseudo);
    let err = ipv4(a4("198.51.100.1"), s4, 1, 60, 0, 9, 0, &[], &m);
    let (o, out) = run(&t, &err);
    assert_eq!(o, Outcome::Forward(IpVersion::V6));
    let (_, _, data) = check_v6(&out[0]);
    let inner = &data[8..];
    assert_eq!(inner.len(), 48);
    assert_eq!(
        u16::from_be_bytes([inner[4], inner[5]]) as usize,
        seg6.len()
    );
    assert_eq!((inner[6], inner[7]), (6, 63));
    assert_eq!(&inner[40..], &seg6[..8]);
}

/// RFC 7915 section 4.1: IPv4 options are ignored, except that an
/// unexpired Loose or Strict Source Route refuses the packet (Source Route
/// Failed). The options are walked by their length (RFC 791 section 3.1):
/// a 2-byte option before the LSRR does not hide it, and a lone option type
/// at the end without its length byte ends the walk (the packet is
/// translated, its options being ignored).
#[test]
fn s4_1_ipv4_options_walked_by_length() {
    let t = translator();
    let (s, d) = (a4(CLAT4), a4(REMOTE4));
    let u = udp(1, 2, b"x", &|l| pseudo4(s, d, 17, l));
    let opts = [30u8, 2, 131, 7, 4, 192, 0, 2, 1, 0, 0, 0];
    let pkt = ipv4(s, d, 17, 64, 0, 1, 0, &opts, &u);
    let (o, out) = run(&t, &pkt);
    assert_eq!(o, Outcome::Reply(IpVersion::V4));
    let (_, data) = check_v4(&out[0]);
    assert_eq!((data[0], data[1]), (3, 5), "Source Route Failed");
    let lone = [1u8, 1, 1, 7];
    let pkt = ipv4(s, d, 17, 64, 0, 1, 0, &lone, &u);
    let (o, out) = run(&t, &pkt);
    assert_eq!(o, Outcome::Forward(IpVersion::V6));
    let (_, proto, data) = check_v6(&out[0]);
    assert_eq!((proto, data.len()), (17, u.len()));
}

/// RFC 791 section 3.1: End of Option List ends the options (what follows
/// is padding, even when it looks like an LSRR), and an option whose length
/// is below 2 or runs past the header is malformed and ends the walk. In
/// each case no unexpired source route is seen and the packet is translated.
#[test]
fn s4_1_options_walk_ends_at_end_of_list_and_at_a_bad_length() {
    let t = translator();
    let (s, d) = (a4(CLAT4), a4(REMOTE4));
    let u = udp(1, 2, b"x", &|l| pseudo4(s, d, 17, l));
    let lsrr_after = |first: &[u8]| {
        let mut o = first.to_vec();
        o.extend_from_slice(&[131, 7, 4, 192, 0, 2, 1]);
        o.resize(o.len().div_ceil(4) * 4, 0);
        o
    };
    let cases: [(&str, Vec<u8>); 4] = [
        ("end of list", lsrr_after(&[0, 2])),
        ("length 1", lsrr_after(&[68, 1, 1])),
        ("length 0", lsrr_after(&[68, 0, 1])),
        ("length past the header", vec![7, 40, 4, 0]),
    ];
    for (what, opts) in cases {
        let pkt = ipv4(s, d, 17, 64, 0, 1, 0, &opts, &u);
        let (o, out) = run(&t, &pkt);
        assert_eq!(o, Outcome::Forward(IpVersion::V6), "{what}");
        let (_, proto, data) = check_v6(&out[0]);
        assert_eq!((proto, data.len()), (17, u.len()), "{what}");
    }
}

/// RFC 7915 section 4.3 with the smallest quote RFC 792 allows less than:
/// an ICMPv4 error that quotes only the IPv4 header of the packet in error
/// still gets that header translated (its Payload Length what the
/// original's Total Length claimed).
#[test]
fn s4_3_quote_of_the_ipv4_header_alone() {
    let t = translator();
    let (s4, d4) = (a4(CLAT4), a4(REMOTE4));
    let u4 = udp(5000, 53, b"query", &|l| pseudo4(s4, d4, 17, l));
    let full = ipv4(s4, d4, 17, 63, 0, 1, DF, &[], &u4);
    let m = icmp(3, 3, [0; 4], &full[..20], &no_pseudo);
    let err = ipv4(a4("198.51.100.1"), s4, 1, 60, 0, 9, 0, &[], &m);
    let (o, out) = run(&t, &err);
    assert_eq!(o, Outcome::Forward(IpVersion::V6));
    let (_, _, data) = check_v6(&out[0]);
    let inner = &data[8..];
    assert_eq!(inner.len(), 40);
    assert_eq!(u16::from_be_bytes([inner[4], inner[5]]) as usize, u4.len());
    assert_eq!((inner[6], inner[7]), (17, 63));
    assert_eq!(&inner[8..24], &a6(CLAT6).octets());
    assert_eq!(&inner[24..40], &remote6(REMOTE4).octets());
}

/// RFC 7915 section 5.3: an ICMPv6 message quoted with fewer than 4 bytes
/// (no checksum field) is carried as it is, behind the translated header.
#[test]
fn s5_3_quoted_icmpv6_shorter_than_its_checksum() {
    let t = translator();
    let (s6, d6) = (a6(CLAT6), remote6(REMOTE4));
    let echo = icmp(128, 0, [0, 1, 0, 1], b"ping", &|l| pseudo6(s6, d6, 58, l));
    let full = ipv6(s6, d6, 58, 63, 0, &[], &echo);
    let (o, out) = run(&t, &icmp6_unreach(&full[..42]));
    assert_eq!(o, Outcome::Forward(IpVersion::V4));
    let (_, data) = check_v4(&out[0]);
    let inner = &data[8..];
    assert_eq!(inner.len(), 22);
    assert_eq!(inner[9], 1, "protocol ICMP");
    assert_eq!(
        u16::from_be_bytes([inner[2], inner[3]]) as usize,
        20 + echo.len()
    );
    assert_eq!(&inner[20..], &echo[..2]);
}

/// RFC 7915 section 5.3, the IPv6 side of the smallest quote: an ICMPv6
/// error quoting only the 40-byte IPv6 header still has it translated.
#[test]
fn s5_3_quote_of_the_ipv6_header_alone() {
    let t = translator();
    let (s6, d6) = (a6(CLAT6), remote6(REMOTE4));
    let (s4, d4) = (a4(CLAT4), a4(REMOTE4));
    let u6 = udp(5000, 53, b"query", &|l| pseudo6(s6, d6, 17, l));
    let u4 = udp(5000, 53, b"query", &|l| pseudo4(s4, d4, 17, l));
    let full = ipv6(s6, d6, 17, 63, 0, &[], &u6);
    let (o, out) = run(&t, &icmp6_unreach(&full[..40]));
    assert_eq!(o, Outcome::Forward(IpVersion::V4));
    let (_, data) = check_v4(&out[0]);
    assert_eq!(&data[8..], &ipv4(s4, d4, 17, 63, 0, 0, 0, &[], &u4)[..20]);
}

/// The largest IPv6 fragment that still has an IPv4 form (65515 bytes
/// after its Fragment header, RFC 791's 16-bit Total Length) is too big for
/// the smallest IPv4 MTU, 68 (RFC 791). A translator does not cut IPv6
/// fragments further: a fragment too big for the IPv4 side gets Packet Too
/// Big like a whole packet (RFC 7915 section 5.1), except that no ICMP error
/// may be sent about a non-first fragment (RFC 7915 section 5.4, RFC 1812
/// section 4.3.2.7): this one, at offset 8, is dropped as such.
#[test]
fn s5_1_non_first_fragment_too_big_is_dropped_without_error() {
    let t = clat_xlat::Translator::new(clat_xlat::Config {
        mtu4: 68,
        ..config()
    })
    .unwrap();
    let (s, d) = (remote6(REMOTE4), a6(CLAT6));
    let data: Vec<u8> = (0..65515u32).map(|i| (i % 251) as u8).collect();
    let pkt = ipv6(s, d, 44, 64, 0, &frag_hdr(17, 1, true, 0x77), &data);
    let (o, out) = run(&t, &pkt);
    assert_eq!(o, Outcome::Drop(clat_xlat::DropReason::TooBigNoReply));
    assert!(out.is_empty());
}

/// The ICMPv6 checksum covers the whole message (RFC 4443 section 2.3),
/// which a stateless translator cannot see in a fragment: a fragmented
/// ICMPv6 Echo is dropped (as its IPv4 counterpart is, in rfc7915.rs). An
/// atomic fragment (offset 0, M=0, RFC 6946) is a whole message and is
/// translated.
#[test]
fn fragmented_icmpv6_dropped_atomic_fragment_translated() {
    let t = translator();
    let (s, d) = (remote6(REMOTE4), a6(CLAT6));
    let m = icmp(128, 0, [0, 1, 0, 1], &[0; 100], &|l| pseudo6(s, d, 58, l));
    let first = ipv6(s, d, 44, 64, 0, &frag_hdr(58, 0, true, 3), &m);
    assert_eq!(run(&t, &first).0, Outcome::Drop(DropReason::FragmentedIcmp));
    let atomic = ipv6(s, d, 44, 64, 0, &frag_hdr(58, 0, false, 3), &m);
    assert_eq!(run(&t, &atomic).0, Outcome::Forward(IpVersion::V4));
}

/// RFC 7915 section 4 / RFC 8021: a DF=0 packet whose IPv6 form is exactly
/// the lowest IPv6 MTU (1280) is sent whole, without a Fragment header.
#[test]
fn s4_1_df0_at_exactly_1280_bytes_is_not_fragmented() {
    let t = translator();
    let (s, d) = (a4(CLAT4), a4(REMOTE4));
    let u = udp(1, 2, &[4; 1260 - 28], &|l| pseudo4(s, d, 17, l));
    let pkt = ipv4(s, d, 17, 64, 0, 1, 0, &[], &u);
    assert_eq!(pkt.len(), 1260);
    let (o, out) = run(&t, &pkt);
    assert_eq!(o, Outcome::Forward(IpVersion::V6));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].len(), 1280);
    assert_eq!(out[0][6], 17, "no Fragment header");
}

/// RFC 791 section 3.1: an LSRR that is the last option and fills the
/// option space exactly is still seen (RFC 7915 section 4.1).
#[test]
fn s4_1_source_route_filling_the_options_exactly() {
    let t = translator();
    let (s, d) = (a4(CLAT4), a4(REMOTE4));
    let u = udp(1, 2, b"x", &|l| pseudo4(s, d, 17, l));
    let opts = [1u8, 131, 7, 4, 192, 0, 2, 1];
    let (o, out) = run(&t, &ipv4(s, d, 17, 64, 0, 1, 0, &opts, &u));
    assert_eq!(o, Outcome::Reply(IpVersion::V4));
    assert_eq!(&check_v4(&out[0]).1[..2], &[3, 5]);
}

/// `OutBuf` counts what a translation left in it: nothing after a drop,
/// one packet, or every fragment.
#[test]
fn outbuf_counts_its_packets() {
    let t = translator();
    let mut out = OutBuf::new();
    let (s, d) = (a4(CLAT4), a4(REMOTE4));
    let small = ipv4(s, d, 47, 64, 0, 1, DF, &[], b"x");
    t.translate(&small, &mut out);
    assert_eq!((out.len(), out.is_empty()), (1, false));
    assert_eq!(out.get(0).map(|p| p.len()), Some(41));
    assert_eq!(out.get(1), None);
    let big = ipv4(s, d, 47, 64, 0, 1, 0, &[], &[0; 3000]);
    t.translate(&big, &mut out);
    assert_eq!(out.len(), out.iter().count());
    assert_eq!(out.len(), 3);
    t.translate(&small[..10], &mut out);
    assert_eq!((out.len(), out.is_empty()), (0, true));
}
