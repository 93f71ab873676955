//! The kernel-terminated TCP trick and its in-place header rewrite (RFC
//! 1624 incremental checksums) in both directions. The flow table and its
//! decisions are in [`crate::tcp_flows`].
//!
//! App packet `clat:sp -> D:dp` becomes `nat:np -> clat:L` (L = the engine's
//! listener) so that the kernel's own TCP answers it; the listener's packets
//! `clat:L -> nat:np` become `D:dp -> clat:sp`. `np` identifies the flow.
//!
//! Closing without TIME_WAIT: when the server closes first, the listener
//! side sends the first FIN, so its socket would spend 60 s in TIME_WAIT
//! on the tuple `nat:np <-> clat:L`, and a new flow given `np` within that
//! time has its SYN refused by PAWS (the app's timestamps are random per
//! connection) and retried a second later. A burst of short connections
//! used up all 64,512 ports that way. So when the app's own FIN arrives
//! and it acknowledges ours, with every byte of the app received and read,
//! the engine answers that FIN itself (the ACK the kernel would have sent)
//! and closes the listener side with a RST that it does not carry: the app
//! sees an orderly close, and no TIME_WAIT is left behind. Where any of
//! this cannot be checked, the FIN goes to the kernel as usual and the NAT
//! port is held for the TIME_WAIT time instead.

use crate::packet::checksum;
use std::net::IpAddr;

/// Rewrites addresses and ports of the IP+TCP packet `p` (TCP header at
/// `off`: the IPv4 header length, or the IPv6 header chain's) in place to
/// `src:sport -> dst:dport`, updating the TCP checksum incrementally (RFC
/// 1624) over its IPv4 or IPv6 pseudo-header, and the IPv4 header checksum
/// (IPv6 has none). The addresses are of `p`'s family; a pair of mixed
/// families leaves `p` alone. The caller has checked `p` holds a full TCP
/// header.
pub fn rewrite(p: &mut [u8], off: usize, src: IpAddr, sport: u16, dst: IpAddr, dport: u16) {
    rewrite_with(p, off, (src, sport), (dst, dport), false);
}

/// [`rewrite`], and when `partial` the TCP checksum field holds a partial
/// checksum (a packet of a TUN with offloads, VIRTIO_NET_HDR_F_NEEDS_CSUM:
/// [`crate::tun_io`]): the folded pseudo-header sum, not complemented,
/// which the kernel completes over the TCP header and payload if it ever
/// needs to. Only the addresses are in it, so only their change is
/// applied ([`crate::tun_io::update_partial`]); the new ports are summed
/// with the header when the checksum is completed.
pub fn rewrite_with(
    p: &mut [u8],
    off: usize,
    (src, sport): (IpAddr, u16),
    (dst, dport): (IpAddr, u16),
    partial: bool,
) {
    // Where the addresses are and how long both together are.
    let mut new = [0u8; 36];
    let (at, n) = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            new[..4].copy_from_slice(&s.octets());
            new[4..8].copy_from_slice(&d.octets());
            (12, 8)
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            new[..16].copy_from_slice(&s.octets());
            new[16..32].copy_from_slice(&d.octets());
            (8, 32)
        }
        _ => return debug_assert!(false, "mixed families"),
    };
    new[n..n + 2].copy_from_slice(&sport.to_be_bytes());
    new[n + 2..n + 4].copy_from_slice(&dport.to_be_bytes());
    let mut old = [0u8; 36];
    old[..n].copy_from_slice(&p[at..at + n]);
    old[n..n + 4].copy_from_slice(&p[off..off + 4]);
    if n == 8 {
        let ipc = checksum::update(u16::from_be_bytes([p[10], p[11]]), &old[..8], &new[..8]);
        p[10..12].copy_from_slice(&ipc.to_be_bytes());
    }
    p[at..at + n].copy_from_slice(&new[..n]);
    let c = off + 16;
    let field = u16::from_be_bytes([p[c], p[c + 1]]);
    let tc = if partial {
        crate::tun_io::update_partial(field, &old[..n], &new[..n])
    } else {
        checksum::update(field, &old[..n + 4], &new[..n + 4])
    };
    p[c..c + 2].copy_from_slice(&tc.to_be_bytes());
    p[off..off + 4].copy_from_slice(&new[n..n + 4]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use clat_xlat::wire::{Ipv4Repr, TcpFlags, TcpRepr, TcpSeqNumber};
    use etherparse::{NetHeaders, PacketHeaders, TransportHeader};
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// An IPv4+TCP segment with `len` bytes of payload and valid checksums.
    fn segment(
        (src, sp): (Ipv4Addr, u16),
        (dst, dp): (Ipv4Addr, u16),
        flags: TcpFlags,
        len: usize,
    ) -> Vec<u8> {
        let mut p = vec![0u8; 40 + len];
        for (i, b) in p[40..].iter_mut().enumerate() {
            *b = i as u8 ^ 0x5a;
        }
        let t = TcpRepr {
            src_port: sp,
            dst_port: dp,
            seq: TcpSeqNumber(7),
            ack: TcpSeqNumber(9),
            flags,
            window: 0,
            timestamps: None,
        };
        t.emit(&mut p[20..], src, dst);
        // The header's checksum covered no payload: cover it.
        p[36..38].fill(0);
        let pseudo = checksum::pseudo_v4(src, dst, 6, (20 + len) as u16);
        let c = checksum::finish(checksum::sum(&p[20..], pseudo));
        p[36..38].copy_from_slice(&c.to_be_bytes());
        Ipv4Repr::new(src, dst, 6, (20 + len) as u16, 0).emit(&mut p);
        p
    }

    fn check(p: &[u8]) -> (Ipv4Addr, u16, Ipv4Addr, u16) {
        let h = PacketHeaders::from_ip_slice(p).unwrap();
        let ip = match h.net.unwrap() {
            NetHeaders::Ipv4(ip, _) => ip,
            _ => panic!(),
        };
        assert_eq!(ip.header_checksum, ip.calc_header_checksum(), "ip checksum");
        let t = match h.transport.unwrap() {
            TransportHeader::Tcp(t) => t,
            _ => panic!(),
        };
        let payload = &p[20 + t.header_len()..];
        assert_eq!(
            t.checksum,
            t.calc_checksum_ipv4(&ip, payload).unwrap(),
            "tcp checksum"
        );
        (
            ip.source.into(),
            t.source_port,
            ip.destination.into(),
            t.destination_port,
        )
    }

    #[test]
    fn rewrite_both_ways_keeps_checksums_valid() {
        let clat = Ipv4Addr::new(192, 0, 0, 4);
        let nat = Ipv4Addr::new(192, 0, 0, 5);
        let d = Ipv4Addr::new(203, 0, 113, 10);
        for (sp, dp, np, l) in [
            (40000u16, 80u16, 1024u16, 33333u16),
            (1, 65535, 65535, 1),
            (0xffff, 0, 4242, 0x8000),
        ] {
            // A segment with payload, so the checksum covers data too.
            let mut p = segment((clat, sp), (d, dp), TcpFlags::ACK, 333);
            assert_eq!(check(&p), (clat, sp, d, dp));
            rewrite(&mut p, 20, nat.into(), np, clat.into(), l);
            assert_eq!(check(&p), (nat, np, clat, l));
            rewrite(&mut p, 20, d.into(), dp, clat.into(), sp);
            assert_eq!(check(&p), (d, dp, clat, sp));
        }
        let mut syn = segment((clat, 5), (d, 6), TcpFlags::SYN, 0);
        rewrite(&mut syn, 20, nat.into(), 7, clat.into(), 8);
        assert_eq!(check(&syn), (nat, 7, clat, 8));
    }

    /// An IPv6+TCP segment (with a Hop-by-Hop header when `hbh`) built by
    /// etherparse, with `len` bytes of payload.
    fn segment6(
        (src, sp): (Ipv6Addr, u16),
        (dst, dp): (Ipv6Addr, u16),
        len: usize,
        hbh: bool,
    ) -> Vec<u8> {
        use etherparse::{IpHeaders, IpNumber, Ipv6Extensions, Ipv6Header, Ipv6RawExtHeader};
        let ip = Ipv6Header {
            hop_limit: 64,
            source: src.octets(),
            destination: dst.octets(),
            ..Default::default()
        };
        let exts = Ipv6Extensions {
            hop_by_hop_options: hbh
                .then(|| Ipv6RawExtHeader::new_raw(IpNumber(0), &[1, 4, 0, 0, 0, 0]).unwrap()),
            ..Default::default()
        };
        let payload: Vec<u8> = (0..len).map(|i| i as u8 ^ 0xa5).collect();
        let mut out = Vec::new();
        etherparse::PacketBuilder::ip(IpHeaders::Ipv6(ip, exts))
            .tcp(sp, dp, 7, 1000)
            .ack(9)
            .write(&mut out, &payload)
            .unwrap();
        out
    }

    /// The addresses and ports of an IPv6+TCP packet, after checking its
    /// TCP checksum with etherparse.
    fn check6(p: &[u8]) -> (Ipv6Addr, u16, Ipv6Addr, u16) {
        let h = PacketHeaders::from_ip_slice(p).unwrap();
        let ip = match h.net.unwrap() {
            NetHeaders::Ipv6(ip, _) => ip,
            _ => panic!(),
        };
        let t = match h.transport.unwrap() {
            TransportHeader::Tcp(t) => t,
            _ => panic!(),
        };
        let want = t.calc_checksum_ipv6(&ip, h.payload.slice()).unwrap();
        assert_eq!(t.checksum, want, "tcp checksum");
        (
            ip.source_addr(),
            t.source_port,
            ip.destination_addr(),
            t.destination_port,
        )
    }

    #[test]
    fn rewrite_ipv6_both_ways_keeps_the_checksum_valid() {
        let clat: Ipv6Addr = "fd9c:7c5a:e1b6:464::1".parse().unwrap();
        let nat: Ipv6Addr = "fd9c:7c5a:e1b6:464::2".parse().unwrap();
        let d: Ipv6Addr = "2001:db8:2::10".parse().unwrap();
        for (hbh, off) in [(false, 40), (true, 48)] {
            for (sp, dp, np, l) in [(40000u16, 80u16, 1024u16, 33333u16), (1, 65535, 65535, 1)] {
                let mut p = segment6((clat, sp), (d, dp), 333, hbh);
                assert_eq!(check6(&p), (clat, sp, d, dp));
                rewrite(&mut p, off, nat.into(), np, clat.into(), l);
                assert_eq!(check6(&p), (nat, np, clat, l));
                rewrite(&mut p, off, d.into(), dp, clat.into(), sp);
                assert_eq!(check6(&p), (d, dp, clat, sp));
            }
        }
    }

    /// The one's complement sum of 16-bit words, folded, written apart
    /// from the crate's (RFC 1071 section 4.1).
    fn ones_sum(b: &[u8]) -> u16 {
        let mut s: u32 = 0;
        for c in b.chunks(2) {
            s += u32::from(c[0]) << 8 | u32::from(*c.get(1).unwrap_or(&0));
        }
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        s as u16
    }

    /// The partial checksum a Linux sender leaves for the device: the
    /// pseudo-header (addresses, protocol 6, TCP length) summed by hand.
    fn pseudo(src: &[u8], dst: &[u8], tcp_len: usize) -> u16 {
        let mut b = src.to_vec();
        b.extend_from_slice(dst);
        b.extend_from_slice(&[0, 0, 0, 6]);
        b.extend_from_slice(&(tcp_len as u32).to_be_bytes());
        ones_sum(&b)
    }

    #[test]
    fn rewrite_of_a_partial_checksum_gives_the_new_pseudo_header_sum() {
        use crate::tun_io::{settle, Upper, VnetHdr, VIRTIO_NET_HDR_F_NEEDS_CSUM};
        let clat = Ipv4Addr::new(192, 0, 0, 4);
        let nat = Ipv4Addr::new(192, 0, 0, 5);
        let d = Ipv4Addr::new(203, 0, 113, 10);
        let mut p = segment((clat, 40000), (d, 80), TcpFlags::ACK, 1400);
        let tcp_len = p.len() - 20;
        let field = pseudo(&clat.octets(), &d.octets(), tcp_len);
        p[36..38].copy_from_slice(&field.to_be_bytes());
        rewrite_with(&mut p, 20, (nat.into(), 1024), (clat.into(), 33333), true);
        let want = pseudo(&nat.octets(), &clat.octets(), tcp_len);
        assert_eq!(u16::from_be_bytes([p[36], p[37]]), want);
        // Completed as the kernel would, the whole packet checks out
        // (etherparse), addresses and ports rewritten.
        let h = VnetHdr {
            flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
            csum_start: 20,
            csum_offset: 16,
            ..Default::default()
        };
        // (`Upper::Other`: settle completes the checksum, as the kernel
        // would, instead of keeping it partial.)
        assert_eq!(settle(Some(h), &mut p, Upper::Other), Ok(None));
        assert_eq!(check(&p), (nat, 1024, clat, 33333));

        let c6: Ipv6Addr = "fd9c:7c5a:e1b6:464::1".parse().unwrap();
        let n6: Ipv6Addr = "fd9c:7c5a:e1b6:464::2".parse().unwrap();
        let d6: Ipv6Addr = "2001:db8:2::10".parse().unwrap();
        for (hbh, off) in [(false, 40), (true, 48)] {
            let mut p = segment6((c6, 40000), (d6, 80), 999, hbh);
            let tcp_len = p.len() - off;
            let field = pseudo(&c6.octets(), &d6.octets(), tcp_len);
            p[off + 16..off + 18].copy_from_slice(&field.to_be_bytes());
            rewrite_with(&mut p, off, (n6.into(), 7), (c6.into(), 8), true);
            let want = pseudo(&n6.octets(), &c6.octets(), tcp_len);
            assert_eq!(u16::from_be_bytes([p[off + 16], p[off + 17]]), want);
            let h = VnetHdr {
                flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
                csum_start: off as u16,
                csum_offset: 16,
                ..Default::default()
            };
            assert_eq!(settle(Some(h), &mut p, Upper::Other), Ok(None));
            assert_eq!(check6(&p), (n6, 7, c6, 8));
        }
    }
}
