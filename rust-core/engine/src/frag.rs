//! Reassembly of fragments coming from apps, IPv4 (RFC 791) and IPv6
//! (RFC 8200 section 4.5): a UDP datagram or ping larger than the TUN MTU
//! arrives in pieces; the upstream socket needs it whole. One
//! implementation; a [`Family`] says what keys a datagram and how its
//! header is written back.
//!
//! Bounded: [`MAX_SLOTS`] reassemblies at a time per family, each at most
//! 64 KiB, abandoned [`TIMEOUT`] after their first fragment; the oldest is
//! evicted when all are busy. Expiry is checked when fragments arrive, so
//! it costs no wake-ups, and for the same reason an abandoned reassembly
//! is not answered with Time Exceeded (code 1, "fragment reassembly time
//! exceeded", which RFC 792 and RFC 8200 4.5 suggest but do not require):
//! the IPv4 side never sent it either, and it would need a timer per
//! reassembly. Fragments arrive from the app's own kernel back to back, so
//! a few seconds is plenty: RFC 8200's 60 s is the longest a node may
//! wait, not the shortest.
//!
//! Overlapping fragments (exact duplicates included, which RFC 8200 4.5
//! allows to be treated the same way) abandon the whole datagram, and
//! every later fragment of it until the reassembly times out (RFC 5722
//! section 3, the rule Linux applies to IPv4 too), as do fragments that
//! contradict the datagram's end. Atomic fragments (RFC 6946) never come
//! here: the IPv6 parser carries them as whole packets.

use crate::packet::{Fragment6, Ip4, Ipv4Repr};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

/// Reassemblies in progress at most per family (the oldest is evicted for
/// a new one).
pub const MAX_SLOTS: usize = 8;
/// How long a reassembly waits for its missing fragments.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// Largest payload an IPv4 reassembly holds (a datagram without options).
pub const MAX_PAYLOAD: usize = 65535 - 20;

/// What differs between IPv4 and IPv6 reassembly.
pub trait Family {
    /// What identifies one datagram's fragments.
    type Key: Copy + Eq;
    /// What the first fragment (offset 0) gives the reassembled datagram:
    /// its header.
    type Head;
    /// Largest offset plus length of a fragment's data.
    const MAX_DATA: usize;
    /// The reassembled datagram: `head` and `payload` (the fragmentable
    /// part, whole); `None` when it would be too long to describe.
    fn finish(head: &Self::Head, payload: &[u8]) -> Option<Vec<u8>>;
}

/// IPv4: fragments of one datagram share source, destination, protocol
/// and Identification (RFC 791 section 3.2).
pub struct V4;

impl Family for V4 {
    type Key = (Ipv4Addr, Ipv4Addr, u8, u16);
    type Head = Ipv4Repr;
    const MAX_DATA: usize = MAX_PAYLOAD;
    /// A fresh header without options, DF and MF clear, offset 0.
    fn finish(head: &Ipv4Repr, payload: &[u8]) -> Option<Vec<u8>> {
        let mut out = vec![0u8; Ipv4Repr::HEADER_LEN + payload.len()];
        out[Ipv4Repr::HEADER_LEN..].copy_from_slice(payload);
        Ipv4Repr {
            payload_len: payload.len() as u16,
            dont_frag: false,
            more_frags: false,
            frag_offset: 0,
            ..*head
        }
        .emit(&mut out);
        Some(out)
    }
}

/// IPv6: fragments of one packet share source, destination and the 32-bit
/// Identification (RFC 8200 section 4.5).
pub struct V6;

impl Family for V6 {
    type Key = (Ipv6Addr, Ipv6Addr, u32);
    /// The first fragment's unfragmentable part, its Next Header naming
    /// what followed the Fragment header.
    type Head = Vec<u8>;
    const MAX_DATA: usize = 65535;
    /// The unfragmentable part, then the fragmentable part; Payload Length
    /// covers both. Over 65535 bytes of payload: `None` (RFC 8200 4.5: such
    /// a fragment is an error).
    fn finish(head: &Vec<u8>, payload: &[u8]) -> Option<Vec<u8>> {
        let len = u16::try_from(head.len() - 40 + payload.len()).ok()?;
        let mut out = Vec::with_capacity(head.len() + payload.len());
        out.extend_from_slice(head);
        out.extend_from_slice(payload);
        out[4..6].copy_from_slice(&len.to_be_bytes());
        Some(out)
    }
}

/// One fragment as the reassembly sees it.
pub struct Piece<'a, F: Family> {
    pub key: F::Key,
    /// Where `data` belongs in the payload, in bytes.
    pub offset: usize,
    /// More fragments follow (MF, M).
    pub more: bool,
    pub data: &'a [u8],
    /// The datagram's header, from the fragment at offset 0.
    pub head: Option<F::Head>,
}

/// The IPv4 fragment `p` (validated header `ip`).
pub fn piece4<'a>(ip: &Ip4, p: &'a [u8]) -> Piece<'a, V4> {
    let offset = usize::from(ip.frag_offset) * 8;
    Piece {
        key: (ip.src, ip.dst, ip.protocol, ip.ident),
        offset,
        more: ip.more_frags,
        data: &p[ip.ihl..ip.total_len()],
        head: (offset == 0).then_some(ip.repr),
    }
}

/// The IPv6 fragment `f`; the head of the first one is its unfragmentable
/// part with the Fragment header's Next Header written where the Fragment
/// header was named (RFC 8200 4.5, "reassembly").
pub fn piece6<'a>(f: &Fragment6<'a>) -> Piece<'a, V6> {
    let head = (f.offset == 0).then(|| {
        let mut h = f.unfragmentable.to_vec();
        h[f.named_at] = f.next_header;
        h
    });
    Piece {
        key: (f.src, f.dst, f.ident),
        offset: f.offset,
        more: f.more,
        data: f.data,
        head,
    }
}

struct Slot<F: Family> {
    key: F::Key,
    started: Instant,
    head: Option<F::Head>,
    /// The payload received so far (up to the furthest fragment's end).
    buf: Vec<u8>,
    /// One bit per 8-byte block received.
    blocks: Vec<u64>,
    total: Option<usize>,
    /// Abandoned (overlap, contradiction): its fragments are dropped until
    /// it times out.
    dead: bool,
}

/// Reassemblies in progress for one family.
pub struct Reassembler<F: Family> {
    slots: Vec<Slot<F>>,
}

impl<F: Family> Default for Reassembler<F> {
    fn default() -> Self {
        Reassembler { slots: Vec::new() }
    }
}

/// What became of a fragment.
#[derive(Debug, PartialEq, Eq)]
pub enum Frag {
    /// Kept; the datagram is not complete yet.
    Pending,
    /// Invalid (bad offsets, too big, overlapping, or of an abandoned
    /// datagram): drop it.
    Bad,
}

impl<F: Family> Reassembler<F> {
    /// Reassemblies in progress and the largest payload buffer among them,
    /// in bytes: at most [`MAX_SLOTS`] and `F::MAX_DATA` (the memory bound;
    /// the reassembly fuzz target checks it after every fragment).
    #[allow(dead_code)] // used by the tests and the fuzz target
    pub fn footprint(&self) -> (usize, usize) {
        let largest = self.slots.iter().map(|s| s.buf.len()).max().unwrap_or(0);
        (self.slots.len(), largest)
    }

    /// Adds fragment `f`. When this completes a datagram, returns it (a
    /// packet of the family, not a fragment) as `Ok(packet)`.
    pub fn add(&mut self, f: Piece<'_, F>, now: Instant) -> Result<Vec<u8>, Frag> {
        self.slots
            .retain(|s| now.duration_since(s.started) < TIMEOUT);
        let (off, more, data) = (f.offset, f.more, f.data);
        let end = off + data.len();
        if end > F::MAX_DATA || (more && (data.len() & 7 != 0 || data.is_empty())) {
            return Err(Frag::Bad);
        }
        let i = match self.slots.iter().position(|s| s.key == f.key) {
            Some(i) => i,
            None => {
                if self.slots.len() >= MAX_SLOTS {
                    let oldest = (0..self.slots.len())
                        .min_by_key(|&i| self.slots[i].started)
                        .unwrap_or(0);
                    self.slots.swap_remove(oldest);
                }
                self.slots.push(Slot {
                    key: f.key,
                    started: now,
                    head: None,
                    buf: Vec::new(),
                    blocks: vec![0u64; 128],
                    total: None,
                    dead: false,
                });
                self.slots.len() - 1
            }
        };
        let s = &mut self.slots[i];
        if s.dead {
            return Err(Frag::Bad);
        }
        let blocks = off / 8..end.div_ceil(8);
        let overlap = blocks
            .clone()
            .any(|b| s.blocks[b / 64] & (1 << (b % 64)) != 0);
        // Past a known end, a second end, or an end before data received.
        let contradicts = s.total.is_some_and(|t| end > t || !more) || (!more && s.buf.len() > end);
        if overlap || contradicts {
            s.dead = true;
            s.head = None;
            s.buf = Vec::new();
            s.blocks = Vec::new();
            return Err(Frag::Bad);
        }
        if s.buf.len() < end {
            s.buf.resize(end, 0);
        }
        s.buf[off..end].copy_from_slice(data);
        for b in blocks {
            s.blocks[b / 64] |= 1 << (b % 64);
        }
        if f.head.is_some() {
            s.head = f.head;
        }
        if !more {
            s.total = Some(end);
        }
        let Some(total) = s.total else {
            return Err(Frag::Pending);
        };
        let need = total.div_ceil(8);
        if s.head.is_none() || (0..need).any(|b| s.blocks[b / 64] & (1 << (b % 64)) == 0) {
            return Err(Frag::Pending);
        }
        let s = self.slots.swap_remove(i);
        let head = s.head.as_ref().ok_or(Frag::Pending)?;
        F::finish(head, &s.buf[..total]).ok_or(Frag::Bad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{emit_udp4, parse_ip4};
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};

    /// Splits `pkt` into IPv4 fragments of at most `mtu` bytes (header
    /// fields written out here, checksum by etherparse).
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
            set_header_checksum(&mut f);
            out.push(f);
            off = end;
        }
        out
    }

    fn set_header_checksum(f: &mut [u8]) {
        let h = etherparse::Ipv4HeaderSlice::from_slice(f)
            .unwrap()
            .to_header();
        f[10..12].copy_from_slice(&h.calc_header_checksum().to_be_bytes());
    }

    #[test]
    fn reassembles_in_any_order_and_rejects_nonsense() {
        let mut pkt = vec![0u8; 20 + 8 + 4000];
        for (i, b) in pkt[28..].iter_mut().enumerate() {
            *b = i as u8;
        }
        let ends = (
            SocketAddrV4::new(Ipv4Addr::new(192, 0, 0, 4), 1),
            SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 10), 7),
        );
        let n = emit_udp4(&mut pkt, ends, 4000, 77);
        let mut frags = fragment(&pkt[..n], 1500);
        assert_eq!(frags.len(), 3);
        frags.reverse();
        let mut r = Reassembler::<V4>::default();
        let now = Instant::now();
        let mut done = None;
        for f in &frags {
            let ip = parse_ip4(f).unwrap();
            assert!(ip.is_fragment());
            match r.add(piece4(&ip, f), now) {
                Ok(p) => done = Some(p),
                Err(e) => assert_eq!(e, Frag::Pending),
            }
        }
        let whole = done.expect("complete");
        assert_eq!(&whole[20..], &pkt[20..n]);
        let ip = parse_ip4(&whole).unwrap();
        assert!(!ip.is_fragment());
        assert_eq!(ip.total_len(), n);
        assert_eq!(
            &whole[..20],
            &pkt[..20],
            "the header as it was before fragmenting"
        );
        // Missing middle piece: never completes; times out.
        let mut r = Reassembler::<V4>::default();
        for f in [&frags[0], &frags[2]] {
            assert_eq!(
                r.add(piece4(&parse_ip4(f).unwrap(), f), now),
                Err(Frag::Pending)
            );
        }
        assert_eq!(r.slots.len(), 1);
        let later = now + Duration::from_secs(6);
        let _ = r.add(piece4(&parse_ip4(&frags[1]).unwrap(), &frags[1]), later);
        assert_eq!(
            r.slots.len(),
            1,
            "old state expired; only the new fragment is kept"
        );
        // Offset beyond 64 KiB.
        let mut bad = frags[0].clone();
        bad[6..8].copy_from_slice(&0x1fffu16.to_be_bytes());
        set_header_checksum(&mut bad);
        assert_eq!(
            r.add(piece4(&parse_ip4(&bad).unwrap(), &bad), later),
            Err(Frag::Bad)
        );
    }

    const APP6: &str = "fd9c:7c5a:e1b6:464::1";
    const SRV6: &str = "2001:db8:2::10";

    /// A UDP datagram of `len` bytes from APP6 to SRV6 behind a Hop-by-Hop
    /// header (PadN), written by etherparse: the packet a reassembly must
    /// give back.
    fn udp6_whole(len: usize) -> Vec<u8> {
        let mut ip = etherparse::Ipv6Header {
            source: APP6.parse::<Ipv6Addr>().unwrap().octets(),
            destination: SRV6.parse::<Ipv6Addr>().unwrap().octets(),
            hop_limit: 64,
            ..Default::default()
        };
        ip.next_header = etherparse::IpNumber::IPV6_HEADER_HOP_BY_HOP;
        let exts = etherparse::Ipv6Extensions {
            hop_by_hop_options: Some(
                etherparse::Ipv6RawExtHeader::new_raw(
                    etherparse::IpNumber::UDP,
                    &[1, 4, 0, 0, 0, 0],
                )
                .unwrap(),
            ),
            ..Default::default()
        };
        let payload: Vec<u8> = (0..len).map(|i| (i * 13) as u8).collect();
        let mut out = Vec::new();
        etherparse::PacketBuilder::ip(etherparse::IpHeaders::Ipv6(ip, exts))
            .udp(40000, 7)
            .write(&mut out, &payload)
            .unwrap();
        out
    }

    /// Splits `pkt` (unfragmentable part: the fixed header and one 8-byte
    /// Hop-by-Hop header) into fragments of at most `mtu` bytes, RFC 8200
    /// 4.5 written out here: each is the unfragmentable part with the
    /// Hop-by-Hop's Next Header set to 44, a Fragment header (Next Header
    /// 17, offset, M, `ident`) and its share of the rest.
    fn fragment6(pkt: &[u8], mtu: usize, ident: u32) -> Vec<Vec<u8>> {
        let (unfrag, rest) = pkt.split_at(48);
        let step = (mtu - 48 - 8) / 8 * 8;
        let mut out = Vec::new();
        let mut off = 0;
        while off < rest.len() {
            let end = (off + step).min(rest.len());
            let mut f = unfrag.to_vec();
            f[40] = 44;
            let m = u16::from(end < rest.len());
            f.extend_from_slice(&[17, 0]);
            f.extend_from_slice(&(((off / 8) as u16 * 8) | m).to_be_bytes());
            f.extend_from_slice(&ident.to_be_bytes());
            f.extend_from_slice(&rest[off..end]);
            let pl = (f.len() - 40) as u16;
            f[4..6].copy_from_slice(&pl.to_be_bytes());
            out.push(f);
            off = end;
        }
        out
    }

    fn add6(r: &mut Reassembler<V6>, f: &[u8], now: Instant) -> Result<Vec<u8>, Frag> {
        assert_eq!(
            crate::packet::parse_ip6(f),
            Err(crate::packet::ParseError::Fragment)
        );
        r.add(piece6(&crate::packet::parse_fragment6(f).unwrap()), now)
    }

    #[test]
    fn ipv6_fragments_reassemble_in_any_order_into_the_original_packet() {
        let whole = udp6_whole(4000);
        let frags = fragment6(&whole, 1500, 0x8000_0001);
        assert_eq!(frags.len(), 3);
        let now = Instant::now();
        for order in [[0, 1, 2], [2, 1, 0], [1, 2, 0]] {
            let mut r = Reassembler::<V6>::default();
            let mut got = Vec::new();
            for i in order {
                match add6(&mut r, &frags[i], now) {
                    Ok(p) => got.push(p),
                    Err(e) => assert_eq!(e, Frag::Pending),
                }
            }
            assert_eq!(got, vec![whole.clone()], "order {order:?}");
            assert_eq!(r.footprint().0, 0);
        }
        // The full 32-bit Identification keys the packet: another packet
        // with the same low 16 bits does not mix in.
        let other = fragment6(&udp6_whole(4000), 1500, 0x0000_0001);
        let mut r = Reassembler::<V6>::default();
        assert_eq!(add6(&mut r, &frags[0], now), Err(Frag::Pending));
        assert_eq!(add6(&mut r, &other[1], now), Err(Frag::Pending));
        assert_eq!(add6(&mut r, &frags[2], now), Err(Frag::Pending));
        assert_eq!(r.footprint().0, 2);
        assert_eq!(add6(&mut r, &frags[1], now), Ok(whole.clone()));
    }

    #[test]
    fn overlapping_fragments_abandon_the_whole_datagram() {
        let whole = udp6_whole(4000);
        let frags = fragment6(&whole, 1500, 9);
        let now = Instant::now();
        // RFC 5722: an overlapping fragment drops the datagram, and its
        // fragments that come later too (here: all the rest).
        let mut r = Reassembler::<V6>::default();
        assert_eq!(add6(&mut r, &frags[0], now), Err(Frag::Pending));
        let mut over = frags[1].clone();
        // Offset one block back into the first fragment's data.
        let o = u16::from_be_bytes([over[50], over[51]]) - 8;
        over[50..52].copy_from_slice(&o.to_be_bytes());
        assert_eq!(add6(&mut r, &over, now), Err(Frag::Bad));
        assert_eq!(add6(&mut r, &frags[1], now), Err(Frag::Bad));
        assert_eq!(add6(&mut r, &frags[2], now), Err(Frag::Bad));
        // An exact duplicate counts as an overlap (RFC 8200 4.5 allows it).
        let mut r = Reassembler::<V6>::default();
        assert_eq!(add6(&mut r, &frags[1], now), Err(Frag::Pending));
        assert_eq!(add6(&mut r, &frags[1], now), Err(Frag::Bad));
        assert_eq!(add6(&mut r, &frags[0], now), Err(Frag::Bad));
        // After the timeout the same Identification starts afresh.
        let later = now + TIMEOUT;
        for f in &frags[..2] {
            assert_eq!(add6(&mut r, f, later), Err(Frag::Pending));
        }
        assert_eq!(add6(&mut r, &frags[2], later), Ok(whole.clone()));
        // The IPv4 side follows the same rule (one implementation).
        let mut r = Reassembler::<V4>::default();
        let mut pkt = vec![0u8; 20 + 8 + 3000];
        let ends = (
            SocketAddrV4::new(Ipv4Addr::new(192, 0, 0, 4), 1),
            SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 10), 7),
        );
        let n = emit_udp4(&mut pkt, ends, 3000, 5);
        let f4 = fragment(&pkt[..n], 1500);
        let add4 =
            |r: &mut Reassembler<V4>, f: &[u8]| r.add(piece4(&parse_ip4(f).unwrap(), f), now);
        assert_eq!(add4(&mut r, &f4[1]), Err(Frag::Pending));
        assert_eq!(add4(&mut r, &f4[1]), Err(Frag::Bad));
        assert_eq!(add4(&mut r, &f4[0]), Err(Frag::Bad));
        assert_eq!(add4(&mut r, &f4[2]), Err(Frag::Bad));
    }

    #[test]
    fn fragments_that_contradict_the_end_or_the_size_limit_are_refused() {
        let whole = udp6_whole(4000);
        let frags = fragment6(&whole, 1500, 3);
        let now = Instant::now();
        // A second last fragment ending elsewhere.
        let mut r = Reassembler::<V6>::default();
        assert_eq!(add6(&mut r, &frags[2], now), Err(Frag::Pending));
        let mut short_end = frags[1].clone();
        short_end[51] &= !1; // M clear: it claims to be the last
        assert_eq!(add6(&mut r, &short_end, now), Err(Frag::Bad));
        // A last fragment ending before data already received.
        let small = fragment6(&whole, 1000, 4);
        assert!(small.len() > 3);
        let mut r = Reassembler::<V6>::default();
        assert_eq!(add6(&mut r, &small[2], now), Err(Frag::Pending));
        let mut early = small[1].clone();
        early[51] &= !1;
        assert_eq!(add6(&mut r, &early, now), Err(Frag::Bad));
        // M set with a length that is not a multiple of 8.
        let mut r = Reassembler::<V6>::default();
        let mut odd = frags[0].clone();
        odd.pop();
        let pl = (odd.len() - 40) as u16;
        odd[4..6].copy_from_slice(&pl.to_be_bytes());
        assert_eq!(add6(&mut r, &odd, now), Err(Frag::Bad));
        // Offset plus length past 65535 (RFC 8200 4.5).
        let mut far = frags[2].clone();
        far[50..52].copy_from_slice(&0xfff8u16.to_be_bytes());
        assert_eq!(add6(&mut r, &far, now), Err(Frag::Bad));
        assert_eq!(r.footprint(), (0, 0));
        // Within 65535 as a fragment, over it with the unfragmentable part:
        // the reassembled Payload Length could not say it.
        let mut r = Reassembler::<V6>::default();
        let last = frags[2].len() - 56;
        let at = (65535 - last) / 8 * 8;
        let mut tail = frags[2].clone();
        tail[50..52].copy_from_slice(&(at as u16).to_be_bytes());
        assert_eq!(add6(&mut r, &tail, now), Err(Frag::Pending));
        let mut body = frags[0].clone();
        let mut off = 0;
        let step = frags[0].len() - 56;
        let mut res = Err(Frag::Pending);
        while off < at {
            let len = step.min(at - off);
            body.truncate(56 + len);
            let pl = (body.len() - 40) as u16;
            body[4..6].copy_from_slice(&pl.to_be_bytes());
            body[50..52].copy_from_slice(&((off as u16) | 1).to_be_bytes());
            res = add6(&mut r, &body, now);
            off += len;
        }
        assert_eq!(res, Err(Frag::Bad), "65535 + 8 bytes of payload");
    }

    #[test]
    fn reassemblies_are_bounded_and_the_oldest_evicted() {
        let whole = udp6_whole(4000);
        let t0 = Instant::now();
        let mut r = Reassembler::<V6>::default();
        for id in 0..(MAX_SLOTS as u32 + 3) {
            let f = fragment6(&whole, 1500, id);
            let at = t0 + Duration::from_millis(u64::from(id));
            assert_eq!(add6(&mut r, &f[0], at), Err(Frag::Pending));
            assert!(r.footprint().0 <= MAX_SLOTS);
        }
        // Identification 0 was evicted; the newest completes.
        let late = t0 + Duration::from_millis(100);
        let f = fragment6(&whole, 1500, 0);
        assert_eq!(add6(&mut r, &f[1], late), Err(Frag::Pending));
        assert_eq!(add6(&mut r, &f[2], late), Err(Frag::Pending));
        let f = fragment6(&whole, 1500, MAX_SLOTS as u32 + 2);
        assert_eq!(add6(&mut r, &f[1], late), Err(Frag::Pending));
        assert_eq!(add6(&mut r, &f[2], late), Ok(whole));
    }
}
