//! RFC 4884 extension structures in translated ICMP errors, at their limits:
//! an extension too short to be one, an extension that leaves less room for
//! the original datagram than the whole error may take (1280 bytes as
//! ICMPv6, RFC 4443 2.4(c); 576 as ICMPv4, RFC 1812 4.3.2.3), and one that
//! leaves less than the 128-byte minimum (RFC 4884 section 5.1), which is
//! then left out. Expected lengths are worked out here from the RFCs.

mod common;
use clat_xlat::{IpVersion, OutBuf, Outcome, Translator};
use common::*;

const REMOTE4: &str = "203.0.113.10";

fn run(t: &Translator, pkt: &[u8]) -> (Outcome, Vec<Vec<u8>>) {
    let mut out = OutBuf::new();
    let o = t.translate(pkt, &mut out);
    (o, out.iter().map(<[u8]>::to_vec).collect())
}

/// An extension structure of `len` bytes: version 2 header, then filler.
fn ext(len: usize) -> Vec<u8> {
    let mut e = vec![0x20, 0, 0, 0];
    e.extend((4..len).map(|i| (i % 199) as u8 + 1));
    e.truncate(len);
    e
}

// ---- IPv4 -> IPv6 ----

fn udp4_to_remote(data_len: usize) -> Vec<u8> {
    let (s, d) = (a4(CLAT4), a4(REMOTE4));
    let u = udp(40000, 53, &vec![3; data_len], &|l| pseudo4(s, d, 17, l));
    ipv4(s, d, 17, 63, 0, 0x1234, 0x4000, &[], &u)
}

/// Time Exceeded from 198.51.100.1 with `rest` and `body` (the original
/// datagram and any extension).
fn time_exceeded4(rest: [u8; 4], body: &[u8]) -> Vec<u8> {
    let m = icmp(11, 0, rest, body, &no_pseudo);
    ipv4(a4("198.51.100.1"), a4(CLAT4), 1, 60, 0, 9, 0, &[], &m)
}

fn icmpv6_body(out: &[Vec<u8>]) -> Vec<u8> {
    assert_eq!(out.len(), 1);
    check_v6(&out[0]).2
}

/// Fewer than the 4 bytes of an extension header after the datagram the
/// length field points at: no extension (RFC 4884 section 5.3), and the
/// length field of the ICMPv6 error stays zero.
#[test]
fn v4_bytes_too_few_for_an_extension_header_are_not_one() {
    let t = translator();
    let inner = udp4_to_remote(100); // 128 bytes, length field 32
    for extra in [2usize, 3] {
        let mut body = inner.clone();
        body.extend(std::iter::repeat_n(0xaa, extra));
        let (o, out) = run(&t, &time_exceeded4([0, 32, 0, 0], &body));
        assert_eq!(o, Outcome::Forward(IpVersion::V6), "{extra}");
        let data = icmpv6_body(&out);
        assert_eq!(data[4], 0, "{extra} bytes: no length field");
        assert_eq!(
            data.len(),
            8 + 148,
            "{extra} bytes: the datagram as IPv6 only"
        );
    }
    // Exactly 4 bytes is an (empty) extension.
    let mut body = inner.clone();
    body.extend_from_slice(&ext(4));
    let data = icmpv6_body(&run(&t, &time_exceeded4([0, 32, 0, 0], &body)).1);
    assert_eq!((data[4], data.len()), (18, 8 + 144 + 4));
}

/// A 1020-byte datagram (length field 255) and a 300-byte extension: the
/// ICMPv6 error may be 1280 bytes, so the datagram (1040 bytes as IPv6) is
/// cut to what is left, in whole 64-bit words: (1280 - 48 - 300) / 8 * 8 =
/// 928 bytes; the extension follows whole.
#[test]
fn v4_large_extension_cuts_the_datagram_to_the_room_left() {
    let t = translator();
    let inner = udp4_to_remote(992);
    assert_eq!(inner.len(), 1020);
    let e = ext(300);
    let mut body = inner.clone();
    body.extend_from_slice(&e);
    let (o, out) = run(&t, &time_exceeded4([0, 255, 0, 0], &body));
    assert_eq!(o, Outcome::Forward(IpVersion::V6));
    assert_eq!(out[0].len(), 40 + 8 + 928 + 300);
    let data = icmpv6_body(&out);
    assert_eq!(data[4] as usize * 8, 928);
    assert_eq!(&data[8 + 928..], &e[..]);
    assert_eq!(
        &data[8 + 40..8 + 42],
        &40000u16.to_be_bytes(),
        "the quote starts with the datagram"
    );
}

/// An extension so large that less than 128 bytes would be left for the
/// datagram (1280 - 48 - 1110 = 122): the error goes without it, the whole
/// translated datagram quoted (48 + 1040 bytes) and no length field.
#[test]
fn v4_extension_leaving_less_than_128_bytes_is_left_out() {
    let t = translator();
    let inner = udp4_to_remote(992);
    let mut body = inner.clone();
    body.extend_from_slice(&ext(1110));
    let (o, out) = run(&t, &time_exceeded4([0, 255, 0, 0], &body));
    assert_eq!(o, Outcome::Forward(IpVersion::V6));
    assert_eq!(out[0].len(), 40 + 8 + 1040);
    let data = icmpv6_body(&out);
    assert_eq!(data[4], 0);
    assert_eq!(&data[8 + 40..8 + 42], &40000u16.to_be_bytes());
    // A small datagram with it: 48 + 148 bytes, far below the limit.
    let mut body = udp4_to_remote(100);
    body.extend_from_slice(&ext(1110));
    let (_, out) = run(&t, &time_exceeded4([0, 32, 0, 0], &body));
    assert_eq!(out[0].len(), 40 + 8 + 148);
    assert_eq!(icmpv6_body(&out)[4], 0);
}

// ---- IPv6 -> IPv4 ----

fn udp6_from_clat(data_len: usize) -> Vec<u8> {
    let (s, d) = (a6(CLAT6), remote6(REMOTE4));
    let u = udp(40000, 53, &vec![3; data_len], &|l| pseudo6(s, d, 17, l));
    ipv6(s, d, 17, 63, 0, &[], &u)
}

fn icmp6_error_with(typ: u8, rest: [u8; 4], body: &[u8]) -> Vec<u8> {
    let (s, d) = (remote6("198.51.100.1"), a6(CLAT6));
    let m = icmp(typ, 0, rest, body, &|l| pseudo6(s, d, 58, l));
    ipv6(s, d, 58, 60, 0, &[], &m)
}

fn icmpv4_body(out: &[Vec<u8>]) -> Vec<u8> {
    assert_eq!(out.len(), 1);
    check_v4(&out[0]).1
}

/// RFC 4884 section 4: Destination Unreachable carries an extension as Time
/// Exceeded does. The 136-byte IPv6 datagram (17 words of 8) is 116 bytes
/// as IPv4, padded to the 128-byte minimum (length field 32 words of 4).
#[test]
fn v6_destination_unreachable_carries_its_extension() {
    let t = translator();
    let e = ext(12);
    let mut body = udp6_from_clat(88);
    assert_eq!(body.len(), 136);
    body.extend_from_slice(&e);
    let (o, out) = run(&t, &icmp6_error_with(1, [17, 0, 0, 0], &body));
    assert_eq!(o, Outcome::Forward(IpVersion::V4));
    let data = icmpv4_body(&out);
    assert_eq!((data[0], data[5]), (3, 32));
    assert_eq!(&data[8 + 128..], &e[..]);
}

/// Fewer than 4 bytes after the datagram: no extension, no length field.
#[test]
fn v6_bytes_too_few_for_an_extension_header_are_not_one() {
    let t = translator();
    let mut body = udp6_from_clat(88);
    body.extend_from_slice(&[0xaa, 0xaa]);
    let (o, out) = run(&t, &icmp6_error_with(3, [17, 0, 0, 0], &body));
    assert_eq!(o, Outcome::Forward(IpVersion::V4));
    let data = icmpv4_body(&out);
    assert_eq!(data[5], 0);
    assert_eq!(data.len(), 8 + 116);
}

/// A 1144-byte IPv6 datagram (143 words) is 1124 bytes as IPv4; with a
/// 300-byte extension the ICMPv4 error (576 bytes at most, RFC 1812
/// 4.3.2.3) has (576 - 28 - 300) / 4 * 4 = 248 bytes left for it.
#[test]
fn v6_large_extension_cuts_the_datagram_to_the_room_left() {
    let t = translator();
    let e = ext(300);
    let mut body = udp6_from_clat(1096);
    assert_eq!(body.len(), 1144);
    body.extend_from_slice(&e);
    let (o, out) = run(&t, &icmp6_error_with(3, [143, 0, 0, 0], &body));
    assert_eq!(o, Outcome::Forward(IpVersion::V4));
    assert_eq!(out[0].len(), 576);
    let data = icmpv4_body(&out);
    assert_eq!(data[5] as usize * 4, 248);
    assert_eq!(&data[8 + 248..], &e[..]);
    assert_eq!(&data[8 + 20..8 + 22], &40000u16.to_be_bytes());
}

/// 576 - 28 - 430 leaves 118 bytes, less than the 128-byte minimum: the
/// extension is left out and the datagram quoted up to 576 bytes.
#[test]
fn v6_extension_leaving_less_than_128_bytes_is_left_out() {
    let t = translator();
    let mut body = udp6_from_clat(1096);
    body.extend_from_slice(&ext(430));
    let (o, out) = run(&t, &icmp6_error_with(3, [143, 0, 0, 0], &body));
    assert_eq!(o, Outcome::Forward(IpVersion::V4));
    assert_eq!(out[0].len(), 576);
    let data = icmpv4_body(&out);
    assert_eq!(data[5], 0);
    assert_eq!(&data[8 + 20..8 + 22], &40000u16.to_be_bytes());
    // A small datagram with it: 28 + 116 bytes, far below the limit.
    let mut body = udp6_from_clat(88);
    body.extend_from_slice(&ext(430));
    let (_, out) = run(&t, &icmp6_error_with(3, [17, 0, 0, 0], &body));
    assert_eq!(out[0].len(), 20 + 8 + 116);
    assert_eq!(icmpv4_body(&out)[5], 0);
}
