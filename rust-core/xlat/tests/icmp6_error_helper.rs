//! `icmp6_error_to_icmp4`, the engine's way to tell an app about an ICMPv6
//! error its flow got (RFC 7915 section 5.2 applied to a socket error):
//! types and pointers from RFC 7915 figure 6, the MTU from section 5.2, and
//! RFC 1812 section 4.3.2.3's rules (never about an ICMP error, at most 576
//! bytes). Expected packets are built with `common`.

mod common;
use clat_xlat::{icmp6_error_to_icmp4, DropReason};
use common::*;

fn orig(payload_len: usize) -> Vec<u8> {
    let (s, d) = (a4(CLAT4), a4("203.0.113.10"));
    ipv4(
        s,
        d,
        17,
        64,
        0,
        1,
        DF,
        &[],
        &udp(40000, 9, &vec![0; payload_len], &|l| pseudo4(s, d, 17, l)),
    )
}

fn remote() -> std::net::Ipv4Addr {
    a4("203.0.113.10")
}

/// Section 5.2: Packet Too Big's MTU minus 20, capped by the largest MTU
/// worth reporting (the TUN's).
#[test]
fn packet_too_big_mtu_is_capped_by_max_mtu4() {
    let mut buf = [0u8; 576];
    let o = orig(100);
    for (mtu6, max4, want) in [
        (1400u32, 1500u16, 1380u16),
        (1400, 1300, 1300),
        (1290, 1500, 1270),
    ] {
        let n = icmp6_error_to_icmp4(2, 0, mtu6, &o, remote(), max4, &mut buf).unwrap();
        let (_, data) = check_v4(&buf[..n]);
        assert_eq!((data[0], data[1]), (3, 4));
        assert_eq!(
            u16::from_be_bytes([data[6], data[7]]),
            want,
            "{mtu6} {max4}"
        );
    }
}

/// Section 5.2: Parameter Problem code 0 with the pointer translated (7,
/// Hop Limit, is 8, TTL); Time Exceeded keeps its code and a zero rest.
#[test]
fn parameter_problem_pointer_and_time_exceeded() {
    let mut buf = [0u8; 576];
    let o = orig(10);
    let n = icmp6_error_to_icmp4(4, 0, 7, &o, remote(), 1500, &mut buf).unwrap();
    let (h, data) = check_v4(&buf[..n]);
    assert_eq!(&data[..2], &[12, 0]);
    assert_eq!(&data[4..8], &[8, 0, 0, 0]);
    assert_eq!(&data[8..], &o[..]);
    assert_eq!(h.destination, a4(CLAT4).octets());
    let n = icmp6_error_to_icmp4(3, 1, 0, &o, remote(), 1500, &mut buf).unwrap();
    let (_, data) = check_v4(&buf[..n]);
    assert_eq!(&data[..8], &[11, 1, data[2], data[3], 0, 0, 0, 0]);
}

/// RFC 1812 section 4.3.2.3: no ICMP error about an ICMP error; an echo
/// request, or a non-first fragment whose first byte happens to be 3, is
/// not one.
#[test]
fn never_about_an_icmp_error() {
    let mut buf = [0u8; 576];
    let (s, d) = (a4(CLAT4), remote());
    let inner = orig(10);
    let err = ipv4(
        s,
        d,
        1,
        64,
        0,
        2,
        0,
        &[],
        &icmp(3, 3, [0; 4], &inner, &no_pseudo),
    );
    assert_eq!(
        icmp6_error_to_icmp4(1, 4, 0, &err, d, 1500, &mut buf),
        Err(DropReason::IcmpErrorInError)
    );
    let echo = ipv4(
        s,
        d,
        1,
        64,
        0,
        2,
        0,
        &[],
        &icmp(8, 0, [0; 4], b"x", &no_pseudo),
    );
    assert!(icmp6_error_to_icmp4(1, 4, 0, &echo, d, 1500, &mut buf).is_ok());
    let frag = ipv4(s, d, 1, 64, 0, 2, 3, &[], &[3; 16]);
    assert!(icmp6_error_to_icmp4(1, 4, 0, &frag, d, 1500, &mut buf).is_ok());
}

/// What does not go: an output buffer below 576 bytes, an original that is
/// not IPv4, one shorter than a header; and the quote ends at the original's
/// Total Length.
#[test]
fn limits_and_quote() {
    let o = orig(10);
    let mut small = [0u8; 575];
    assert_eq!(
        icmp6_error_to_icmp4(1, 4, 0, &o, remote(), 1500, &mut small),
        Err(DropReason::TooBig)
    );
    let mut buf = [0u8; 576];
    let mut v6 = o.clone();
    v6[0] = 0x60;
    assert_eq!(
        icmp6_error_to_icmp4(1, 4, 0, &v6, remote(), 1500, &mut buf),
        Err(DropReason::WrongVersion)
    );
    assert_eq!(
        icmp6_error_to_icmp4(1, 4, 0, &o[..19], remote(), 1500, &mut buf),
        Err(DropReason::Malformed)
    );
    let mut padded = o.clone();
    padded.extend_from_slice(&[0xee; 5]);
    let n = icmp6_error_to_icmp4(1, 4, 0, &padded, remote(), 1500, &mut buf).unwrap();
    let (_, data) = check_v4(&buf[..n]);
    assert_eq!(&data[8..], &o[..]);
    // A long original is cut so that the error is 576 bytes.
    let n = icmp6_error_to_icmp4(1, 4, 0, &orig(1000), remote(), 1500, &mut buf).unwrap();
    assert_eq!(n, 576);
}
