//! RFC 7915 section 5.3: the packet quoted in an ICMPv6 error may be a
//! fragment. Only a first fragment (offset 0) starts with the transport
//! header whose checksum is fixed for the IPv4 pseudo-header (section 5.5);
//! a later fragment is data and is copied as it is. Expected bytes are
//! built independently: the whole UDP datagram with its checksum for each
//! pseudo-header by the naive routine in `common`, then cut.

mod common;
use clat_xlat::{IpVersion, OutBuf, Outcome};
use common::*;

const ID: u32 = 0x0000_abcd;

/// 40 distinct non-zero bytes, so that a checksum "fix" applied to data
/// shows.
fn data() -> Vec<u8> {
    (0..40u8)
        .map(|i| i.wrapping_mul(37).wrapping_add(11))
        .collect()
}

/// The translated ICMPv4 error about `inner`, a port unreachable from a
/// router behind the NAT64 prefix; returns the quoted IPv4 packet.
fn translate_error_about(inner: &[u8]) -> Vec<u8> {
    let t = translator();
    let (rtr, d) = (remote6("198.51.100.1"), a6(CLAT6));
    let m = icmp(1, 4, [0; 4], inner, &|l| pseudo6(rtr, d, 58, l));
    let mut out = OutBuf::new();
    let o = t.translate(&ipv6(rtr, d, 58, 60, 0, &[], &m), &mut out);
    assert_eq!(o, Outcome::Forward(IpVersion::V4));
    let pkt = out.iter().next().unwrap().to_vec();
    let (_, icmp4) = check_v4(&pkt); // outer header and ICMPv4 checksums
    assert_eq!(&icmp4[..2], &[3, 3], "port unreachable");
    icmp4[8..].to_vec()
}

#[test]
fn s5_3_quoted_first_fragment_gets_its_udp_checksum_fixed() {
    let (s6, d6) = (a6(CLAT6), remote6("203.0.113.10"));
    let (s4, d4) = (a4(CLAT4), a4("203.0.113.10"));
    let whole6 = udp(40000, 53, &data(), &|l| pseudo6(s6, d6, 17, l));
    let whole4 = udp(40000, 53, &data(), &|l| pseudo4(s4, d4, 17, l));
    assert_ne!(whole6[6..8], whole4[6..8], "the checksums differ");
    // The first 16 bytes, offset 0, More Fragments.
    let inner = ipv6(s6, d6, 44, 63, 0, &frag_hdr(17, 0, true, ID), &whole6[..16]);
    let q = translate_error_about(&inner);
    let (h, payload) = check_v4(&q);
    assert_eq!((h.source, h.destination), (s4.octets(), d4.octets()));
    assert_eq!(h.protocol.0, 17);
    assert!(h.more_fragments && !h.dont_fragment);
    assert_eq!(h.fragment_offset.value(), 0);
    assert_eq!(h.identification, ID as u16);
    assert_eq!(payload, whole4[..16], "UDP header with the IPv4 checksum");
}

#[test]
fn s5_3_quoted_later_fragment_is_copied_unchanged() {
    let (s6, d6) = (a6(CLAT6), remote6("203.0.113.10"));
    let whole6 = udp(40000, 53, &data(), &|l| pseudo6(s6, d6, 17, l));
    // Bytes 16.. of the datagram: offset 2 (8-byte units), the last fragment.
    let inner = ipv6(
        s6,
        d6,
        44,
        63,
        0,
        &frag_hdr(17, 2, false, ID),
        &whole6[16..],
    );
    let q = translate_error_about(&inner);
    let (h, payload) = check_v4(&q);
    assert_eq!(h.protocol.0, 17);
    assert!(!h.more_fragments && !h.dont_fragment);
    assert_eq!(h.fragment_offset.value(), 2);
    assert_eq!(h.identification, ID as u16);
    assert_eq!(payload, whole6[16..], "data, not a header: copied as is");
}
