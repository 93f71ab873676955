//! The TCP NAT table of the kernel-terminated TCP trick, and the in-place
//! header rewrite (RFC 1624 incremental checksums) in both directions.
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
use clat_xlat::wire::TcpSeqNumber;
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::Instant;

/// Lifecycle of a NAT entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatState {
    /// The app's SYN was seen; the listener has not accepted yet.
    SynSeen,
    /// Accepted: a relay (slab slot) carries the bytes.
    Active(usize),
    /// Both sockets closed: kept for a grace period so late segments
    /// (final ACKs, retransmitted FINs) still translate.
    Closing,
}

#[derive(Debug, Clone)]
pub struct NatEntry {
    pub sp: u16,
    pub dst: Ipv4Addr,
    pub dp: u16,
    pub state: NatState,
    /// Current deadline in the timer set.
    pub timer_at: Instant,
    /// The app's initial sequence number (from its SYN).
    pub app_isn: TcpSeqNumber,
    /// The TOS byte of the app's SYN: its DSCP becomes the upstream
    /// socket's traffic class (RFC 7915 section 4.1).
    pub syn_tos: u8,
    /// The sequence number just after the listener side's FIN, once seen.
    pub fin_end: Option<TcpSeqNumber>,
    /// The app has sent its FIN.
    pub app_fin: bool,
    /// The listener side sent its FIN before the app did, so its socket
    /// ends in TIME_WAIT (60 s on Linux) unless the flow was fast-closed.
    pub engine_fin_first: bool,
    /// Closed by the engine answering the app's FIN itself: no TIME_WAIT
    /// on the listener side; stray RSTs from there are not carried.
    pub fast_closed: bool,
}

/// App-side key: (app source port, destination, destination port).
pub type NatKey = (u16, Ipv4Addr, u16);

const FIRST_PORT: u16 = 1024;

#[derive(Debug)]
pub struct NatTable {
    by_np: HashMap<u16, NatEntry>,
    by_key: HashMap<NatKey, u16>,
    /// Next NAT port to try: ports cycle through the whole range so that a
    /// port is reused as late as possible (the listener side's TIME_WAIT).
    cursor: u16,
}

impl Default for NatTable {
    fn default() -> Self {
        NatTable {
            by_np: HashMap::new(),
            by_key: HashMap::new(),
            cursor: FIRST_PORT,
        }
    }
}

impl NatTable {
    pub fn lookup(&self, key: &NatKey) -> Option<u16> {
        self.by_key.get(key).copied()
    }
    pub fn get(&self, np: u16) -> Option<&NatEntry> {
        self.by_np.get(&np)
    }
    pub fn get_mut(&mut self, np: u16) -> Option<&mut NatEntry> {
        self.by_np.get_mut(&np)
    }
    pub fn len(&self) -> usize {
        self.by_np.len()
    }
    pub fn ports(&self) -> Vec<u16> {
        self.by_np.keys().copied().collect()
    }

    /// New entry for `key` (the app's SYN carried `app_isn`); `None` when
    /// every NAT port is taken.
    pub fn insert(&mut self, key: NatKey, app_isn: TcpSeqNumber, timer_at: Instant) -> Option<u16> {
        let range = (u16::MAX - FIRST_PORT) as usize + 1;
        for _ in 0..range {
            let np = self.cursor;
            self.cursor = if self.cursor == u16::MAX {
                FIRST_PORT
            } else {
                self.cursor + 1
            };
            if let std::collections::hash_map::Entry::Vacant(v) = self.by_np.entry(np) {
                v.insert(NatEntry {
                    sp: key.0,
                    dst: key.1,
                    dp: key.2,
                    state: NatState::SynSeen,
                    timer_at,
                    app_isn,
                    syn_tos: 0,
                    fin_end: None,
                    app_fin: false,
                    engine_fin_first: false,
                    fast_closed: false,
                });
                self.by_key.insert(key, np);
                return Some(np);
            }
        }
        None
    }

    /// Forgets the app-side key (a new SYN for the same tuple will get a new
    /// entry) while the entry itself lives on for late segments.
    pub fn unlink_key(&mut self, np: u16) {
        if let Some(e) = self.by_np.get(&np) {
            let k = (e.sp, e.dst, e.dp);
            if self.by_key.get(&k) == Some(&np) {
                self.by_key.remove(&k);
            }
        }
    }

    pub fn remove(&mut self, np: u16) -> Option<NatEntry> {
        self.unlink_key(np);
        self.by_np.remove(&np)
    }

    pub fn clear(&mut self) {
        self.by_np.clear();
        self.by_key.clear();
    }
}

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
    use clat_xlat::wire::{Ipv4Repr, TcpFlags, TcpRepr};
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

    #[test]
    fn table_allocates_distinct_ports_and_unlinks() {
        let now = Instant::now();
        let mut t = NatTable::default();
        let d = Ipv4Addr::new(1, 2, 3, 4);
        let a = t.insert((1, d, 80), TcpSeqNumber(0), now).unwrap();
        let b = t.insert((2, d, 80), TcpSeqNumber(0), now).unwrap();
        assert_ne!(a, b);
        assert_eq!(t.lookup(&(1, d, 80)), Some(a));
        t.unlink_key(a);
        assert_eq!(t.lookup(&(1, d, 80)), None);
        assert!(t.get(a).is_some());
        let c = t.insert((1, d, 80), TcpSeqNumber(0), now).unwrap();
        assert_ne!(c, a);
        t.remove(a);
        assert_eq!(
            t.lookup(&(1, d, 80)),
            Some(c),
            "removing the old entry keeps the new key"
        );
        assert_eq!(t.len(), 2);
    }
}
