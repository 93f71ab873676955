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
use std::net::Ipv4Addr;

/// Rewrites addresses and ports of the IPv4+TCP packet `p` (header length
/// `ihl`) in place, updating the IPv4 header checksum and the TCP checksum
/// incrementally (RFC 1624). The caller has checked `p` holds a full TCP
/// header.
pub fn rewrite(p: &mut [u8], ihl: usize, src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) {
    let mut old = [0u8; 12];
    old[..8].copy_from_slice(&p[12..20]);
    old[8..12].copy_from_slice(&p[ihl..ihl + 4]);
    let mut new = [0u8; 12];
    new[..4].copy_from_slice(&src.octets());
    new[4..8].copy_from_slice(&dst.octets());
    new[8..10].copy_from_slice(&sport.to_be_bytes());
    new[10..12].copy_from_slice(&dport.to_be_bytes());
    let ipc = checksum::update(u16::from_be_bytes([p[10], p[11]]), &old[..8], &new[..8]);
    p[10..12].copy_from_slice(&ipc.to_be_bytes());
    p[12..20].copy_from_slice(&new[..8]);
    let c = ihl + 16;
    let tc = checksum::update(u16::from_be_bytes([p[c], p[c + 1]]), &old, &new);
    p[c..c + 2].copy_from_slice(&tc.to_be_bytes());
    p[ihl..ihl + 4].copy_from_slice(&new[8..12]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use clat_xlat::wire::{Ipv4Repr, TcpFlags, TcpRepr, TcpSeqNumber};
    use etherparse::{NetHeaders, PacketHeaders, TransportHeader};

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
            rewrite(&mut p, 20, nat, np, clat, l);
            assert_eq!(check(&p), (nat, np, clat, l));
            rewrite(&mut p, 20, d, dp, clat, sp);
            assert_eq!(check(&p), (d, dp, clat, sp));
        }
        let mut syn = segment((clat, 5), (d, 6), TcpFlags::SYN, 0);
        rewrite(&mut syn, 20, nat, 7, clat, 8);
        assert_eq!(check(&syn), (nat, 7, clat, 8));
    }
}
