//! IPv4 reassembly of fragments coming from apps (a UDP datagram or ping
//! larger than the TUN MTU arrives in pieces; the upstream socket needs it
//! whole). Bounded: a few reassemblies at a time, each at most 64 KiB,
//! dropped after a few seconds; the oldest is evicted when all are busy.
//! Expiry is checked when fragments arrive, so it costs no wake-ups.

use crate::packet::{self, Ip4};
use std::time::{Duration, Instant};

/// Reassemblies in progress at most (the oldest is evicted for a new one).
pub const MAX_SLOTS: usize = 8;
const TIMEOUT: Duration = Duration::from_secs(5);
/// Largest payload one reassembly holds (an IPv4 datagram without options).
pub const MAX_PAYLOAD: usize = 65535 - 20;

struct Slot {
    key: (std::net::Ipv4Addr, std::net::Ipv4Addr, u8, u16),
    started: Instant,
    /// 20-byte header space followed by the payload.
    buf: Vec<u8>,
    /// One bit per 8-byte block received.
    blocks: Vec<u64>,
    total: Option<usize>,
}

#[derive(Default)]
pub struct Reassembler {
    slots: Vec<Slot>,
}

/// What became of a fragment.
#[derive(Debug, PartialEq, Eq)]
pub enum Frag {
    /// Kept; the datagram is not complete yet.
    Pending,
    /// Invalid (bad offsets, too big): drop it.
    Bad,
}

impl Reassembler {
    /// Reassemblies in progress and the largest buffer among them, in bytes:
    /// at most [`MAX_SLOTS`] and `20 + MAX_PAYLOAD` (the memory bound; the
    /// reassembly fuzz target checks it after every fragment).
    #[allow(dead_code)] // used by the tests and the fuzz target
    pub fn footprint(&self) -> (usize, usize) {
        let largest = self.slots.iter().map(|s| s.buf.len()).max().unwrap_or(0);
        (self.slots.len(), largest)
    }

    /// Adds fragment `p` (validated header `ip`). When this completes a
    /// datagram, returns it (a fresh IPv4 packet without options, DF/MF
    /// clear) as `Ok(packet)`.
    pub fn add(&mut self, ip: &Ip4, p: &[u8], now: Instant) -> Result<Vec<u8>, Frag> {
        self.slots
            .retain(|s| now.duration_since(s.started) < TIMEOUT);
        let id = u16::from_be_bytes([p[4], p[5]]);
        let ff = u16::from_be_bytes([p[6], p[7]]);
        let off = ((ff & 0x1fff) as usize) * 8;
        let more = ff & 0x2000 != 0;
        let data = &p[ip.ihl..ip.total_len];
        if off + data.len() > MAX_PAYLOAD
            || (more && data.len() & 7 != 0)
            || (more && data.is_empty())
        {
            return Err(Frag::Bad);
        }
        let key = (ip.src, ip.dst, ip.proto, id);
        let i = match self.slots.iter().position(|s| s.key == key) {
            Some(i) => i,
            None => {
                if self.slots.len() >= MAX_SLOTS {
                    let oldest = (0..self.slots.len())
                        .min_by_key(|&i| self.slots[i].started)
                        .unwrap_or(0);
                    self.slots.swap_remove(oldest);
                }
                let mut buf = vec![0u8; 20];
                buf[..20].copy_from_slice(&p[..20]);
                self.slots.push(Slot {
                    key,
                    started: now,
                    buf,
                    blocks: vec![0u64; 128],
                    total: None,
                });
                self.slots.len() - 1
            }
        };
        let s = &mut self.slots[i];
        if s.buf.len() < 20 + off + data.len() {
            s.buf.resize(20 + off + data.len(), 0);
        }
        s.buf[20 + off..20 + off + data.len()].copy_from_slice(data);
        for b in off / 8..(off + data.len()).div_ceil(8) {
            s.blocks[b / 64] |= 1 << (b % 64);
        }
        if !more {
            s.total = Some(off + data.len());
        }
        let Some(total) = s.total else {
            return Err(Frag::Pending);
        };
        let need = total.div_ceil(8);
        if (0..need).any(|b| s.blocks[b / 64] & (1 << (b % 64)) == 0) {
            return Err(Frag::Pending);
        }
        let mut s = self.slots.swap_remove(i);
        s.buf.truncate(20 + total);
        let h = &mut s.buf;
        h[0] = 0x45;
        h[2..4].copy_from_slice(&((20 + total) as u16).to_be_bytes());
        h[6] = 0;
        h[7] = 0;
        h[10] = 0;
        h[11] = 0;
        let c = packet::checksum(0, &h[..20]);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        Ok(s.buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{finish_udp, parse_ip4};
    use std::net::Ipv4Addr;

    /// Splits `pkt` into IPv4 fragments of at most `mtu` bytes.
    fn fragment(pkt: &[u8], mtu: usize) -> Vec<Vec<u8>> {
        let payload = &pkt[20..];
        let step = (mtu - 20) / 8 * 8;
        let mut out = Vec::new();
        let mut off = 0;
        while off < payload.len() {
            let end = (off + step).min(payload.len());
            let mut f = pkt[..20].to_vec();
            f.extend_from_slice(&payload[off..end]);
            let mf = if end < payload.len() { 0x2000 } else { 0 };
            let fl = f.len() as u16;
            f[2..4].copy_from_slice(&fl.to_be_bytes());
            f[6..8].copy_from_slice(&((off / 8) as u16 | mf).to_be_bytes());
            f[10] = 0;
            f[11] = 0;
            let c = packet::checksum(0, &f[..20]);
            f[10..12].copy_from_slice(&c.to_be_bytes());
            out.push(f);
            off = end;
        }
        out
    }

    #[test]
    fn reassembles_in_any_order_and_rejects_nonsense() {
        let mut pkt = vec![0u8; 20 + 8 + 4000];
        for (i, b) in pkt[28..].iter_mut().enumerate() {
            *b = i as u8;
        }
        let n = finish_udp(
            &mut pkt,
            Ipv4Addr::new(192, 0, 0, 4),
            1,
            Ipv4Addr::new(203, 0, 113, 10),
            7,
            4000,
            77,
        );
        let mut frags = fragment(&pkt[..n], 1500);
        assert_eq!(frags.len(), 3);
        frags.reverse();
        let mut r = Reassembler::default();
        let now = Instant::now();
        let mut done = None;
        for f in &frags {
            let ip = parse_ip4(f).unwrap();
            assert!(ip.fragment);
            match r.add(&ip, f, now) {
                Ok(p) => done = Some(p),
                Err(e) => assert_eq!(e, Frag::Pending),
            }
        }
        let whole = done.expect("complete");
        assert_eq!(&whole[20..], &pkt[20..n]);
        let ip = parse_ip4(&whole).unwrap();
        assert!(!ip.fragment);
        assert_eq!(ip.total_len, n);
        // Missing middle piece: never completes; times out.
        let mut r = Reassembler::default();
        for f in [&frags[0], &frags[2]] {
            assert_eq!(r.add(&parse_ip4(f).unwrap(), f, now), Err(Frag::Pending));
        }
        assert_eq!(r.slots.len(), 1);
        let later = now + Duration::from_secs(6);
        let _ = r.add(&parse_ip4(&frags[1]).unwrap(), &frags[1], later);
        assert_eq!(
            r.slots.len(),
            1,
            "old state expired; only the new fragment is kept"
        );
        // Offset beyond 64 KiB.
        let mut bad = frags[0].clone();
        bad[6..8].copy_from_slice(&0x1fffu16.to_be_bytes());
        bad[10] = 0;
        bad[11] = 0;
        let c = packet::checksum(0, &bad[..20]);
        bad[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(
            r.add(&parse_ip4(&bad).unwrap(), &bad, later),
            Err(Frag::Bad)
        );
    }
}
