//! RFC 7757 section 4 hairpinning of what the plain hairpin test in
//! `rfc7915.rs` does not send: a fragmented UDP datagram, whose checksum
//! sits in the first fragment only (the later one is data and must come
//! out unchanged), and transport headers too short for their checksum.
//! Expected bytes: the datagram built whole with the checksum for the
//! addresses it leaves with (naive routine in `common`), then cut.

mod common;
use clat_xlat::{Config, DropReason, Eam, EamTable, IpVersion, OutBuf, Outcome, Translator};
use common::*;
use etherparse::{Ipv6FragmentHeaderSlice, Ipv6Header};
use std::net::Ipv6Addr;

/// The configuration of RFC 7757 appendix B.1's kind: pool6
/// 2001:db8:100::/40 and two EAMs, 1.0.0.0/24 = 2001:db8:3::/120 and
/// 10.0.0.0/24 = 2001:db8:2::/120.
fn hairpinning_translator() -> Translator {
    let mut eam = EamTable::new();
    for (v4, v6) in [
        ("1.0.0.0/24", "2001:db8:3::/120"),
        ("10.0.0.0/24", "2001:db8:2::/120"),
    ] {
        let e = Eam::new(v4.parse().unwrap(), v6.parse().unwrap()).unwrap();
        eam.insert(e).unwrap();
    }
    Translator::new(Config {
        pool6: Some("2001:db8:100::/40".parse().unwrap()),
        eam,
        ..Config::default()
    })
    .unwrap()
}

/// 2001:db8:3::8 (1.0.0.8 by the first EAM) sends to the pool6 address of
/// 10.0.0.9 (RFC 6052 /40: 10.0.0 in bytes 5 to 7, byte 8 the u-octet, 9
/// in byte 9). It leaves from the pool6 address of 1.0.0.8 to the EAM
/// address of 10.0.0.9. Across two EAMs, the addresses' sum changes (by
/// 0x0a: 0x0003 + 0x010a against 0x0101 + 0x0002), so a checksum left as
/// it came is wrong; within one EAM it would not change.
fn addresses() -> ((Ipv6Addr, Ipv6Addr), (Ipv6Addr, Ipv6Addr)) {
    (
        (a6("2001:db8:3::8"), a6("2001:db8:10a:0:9::")),
        (a6("2001:db8:101:0:8::"), a6("2001:db8:2::9")),
    )
}

fn hairpin(t: &Translator, pkt: &[u8]) -> Result<Vec<u8>, Outcome> {
    let mut out = OutBuf::new();
    match t.translate(pkt, &mut out) {
        Outcome::Forward(IpVersion::V6) => {
            let v: Vec<_> = out.iter().map(|p| p.to_vec()).collect();
            assert_eq!(v.len(), 1);
            Ok(v.into_iter().next().unwrap())
        }
        o => Err(o),
    }
}

#[test]
fn fragmented_udp_gets_its_checksum_fixed_in_the_first_fragment_only() {
    let t = hairpinning_translator();
    let ((s, d), (s2, d2)) = addresses();
    let data: Vec<u8> = (0..40u8)
        .map(|i| i.wrapping_mul(37).wrapping_add(11))
        .collect();
    let sent = udp(40000, 53, &data, &|l| pseudo6(s, d, 17, l));
    let want = udp(40000, 53, &data, &|l| pseudo6(s2, d2, 17, l));
    assert_ne!(sent[6..8], want[6..8], "the checksums differ");
    // Two fragments: bytes 0..24 (offset 0, M) and 24..48 (offset 3).
    let frags = [
        ipv6(s, d, 44, 64, 0, &frag_hdr(17, 0, true, 77), &sent[..24]),
        ipv6(s, d, 44, 64, 0, &frag_hdr(17, 3, false, 77), &sent[24..]),
    ];
    let mut got = vec![0u8; sent.len()];
    for f in &frags {
        let p = hairpin(&t, f).expect("hairpinned");
        let (h, _) = Ipv6Header::from_slice(&p).unwrap();
        assert_eq!((h.source_addr(), h.destination_addr()), (s2, d2));
        assert_eq!((h.next_header.0, h.hop_limit, p.len()), (44, 64, f.len()));
        let fh = Ipv6FragmentHeaderSlice::from_slice(&p[40..]).unwrap();
        assert_eq!((fh.next_header().0, fh.identification()), (17, 77));
        let at = fh.fragment_offset().byte_offset() as usize;
        got[at..at + p.len() - 48].copy_from_slice(&p[48..]);
    }
    assert_eq!(got, want, "reassembled: the datagram with the new checksum");
}

/// Whole TCP segments and ICMPv6 Echo messages leave with the checksum of
/// their new pseudo-header.
#[test]
fn tcp_and_echo_checksums_follow_the_new_addresses() {
    let t = hairpinning_translator();
    let ((s, d), (s2, d2)) = addresses();
    let sent = tcp(40000, 80, 0x0102_0304, b"hairpin", &|l| pseudo6(s, d, 6, l));
    let want = tcp(40000, 80, 0x0102_0304, b"hairpin", &|l| {
        pseudo6(s2, d2, 6, l)
    });
    assert_ne!(sent[16..18], want[16..18], "the checksums differ");
    let p = hairpin(&t, &ipv6(s, d, 6, 64, 0, &[], &sent)).expect("hairpinned");
    assert_eq!(p[40..], want[..]);
    for typ in [128u8, 129] {
        let sent = icmp(typ, 0, [0, 1, 0, 2], b"ping", &|l| pseudo6(s, d, 58, l));
        let want = icmp(typ, 0, [0, 1, 0, 2], b"ping", &|l| pseudo6(s2, d2, 58, l));
        let p = hairpin(&t, &ipv6(s, d, 58, 64, 0, &[], &sent)).expect("hairpinned");
        assert_eq!(p[40..], want[..], "type {typ}");
    }
}

/// A transport header too short to hold its checksum cannot be adjusted
/// for the new addresses: dropped, not sent with a stale checksum (and
/// never a panic).
#[test]
fn transport_too_short_for_its_checksum_is_dropped() {
    let t = hairpinning_translator();
    let ((s, d), _) = addresses();
    for (proto, seg) in [
        (58u8, &[128u8, 0][..]), // an Echo Request's type and code only
        (58, &[129, 0, 0][..]),
        (58, &[][..]),
        (17, &[0x9c, 0x40, 0, 53, 0, 8][..]), // UDP ports and length
        (6, &[0u8; 16][..]),                  // TCP up to its checksum
    ] {
        assert_eq!(
            hairpin(&t, &ipv6(s, d, proto, 64, 0, &[], seg)),
            Err(Outcome::Drop(DropReason::TruncatedTransport)),
            "protocol {proto}, {} bytes",
            seg.len()
        );
    }
    // 4 bytes of ICMPv6 hold the checksum: hairpinned.
    let e = icmp(128, 0, [0; 4], &[], &|l| pseudo6(s, d, 58, l));
    assert!(hairpin(&t, &ipv6(s, d, 58, 64, 0, &[], &e[..4])).is_ok());
}
