//! UDP batching on the upstream sockets (issue 16): fewer system calls
//! per datagram, each datagram keeping its own meaning.
//!
//! - **Up** (app -> upstream): the UDP datagrams read in one TUN burst are
//!   queued ([`UpQueue`]) instead of sent one `sendmsg` each, and sent when
//!   the burst ends (`Loop::on_tun`), so none waits longer than the burst
//!   it came in. [`gso_groups`] decides which go in one UDP GSO send
//!   (UDP_SEGMENT, Linux 4.18): consecutive datagrams of one mapping, to
//!   one destination, with equal send fields (hop limit, traffic class,
//!   DF) and equal sizes (the last may be shorter), as the kernel
//!   segments them. The sends of one mapping go out in one `sendmmsg`
//!   (also where GSO is missing). A message that fails is handled alone
//!   and the batch goes on after it: each datagram gets exactly one
//!   answer (EMSGSIZE: Fragmentation Needed or Packet Too Big; refused
//!   or unreachable: the app's Destination Unreachable), and a GSO send
//!   the kernel refuses is learned (GSO off after EIO, the mapping's
//!   segments kept smaller after EINVAL or EMSGSIZE). The queue keeps the order of the burst, so datagrams of one mapping are
//!   never reordered.
//! - **Down** (upstream -> app): `recvmmsg` into [`RECV_MANY`] slots
//!   ([`sys::RecvMany`]), with UDP GRO turned on for each mapping's
//!   socket where the kernel has it (5.0), so one message may hold many
//!   datagrams of one sender; each is still one packet written to the
//!   TUN (`udp::on_udp`).

use super::{Loop, Slot};
use crate::datagram_mappings::MapKey;
use crate::packet::IpHdr;
use crate::stats::Counters;
use crate::sys::{self, OutMsg, SendFields};
use std::io;
use std::net::{SocketAddr, SocketAddrV6};
use std::ops::Range;
use std::os::fd::AsRawFd;

/// Messages per `recvmmsg` on an upstream UDP socket: 16 slots of 64 KiB
/// (1 MiB of buffer, allocated on the first UDP datagram received).
pub(super) const RECV_MANY: usize = 16;
/// Most datagrams in one GSO send (the kernel's UDP_MAX_SEGMENTS, 64
/// before Linux 6.9).
const MAX_SEGMENTS: usize = 64;
/// Most payload bytes in one GSO send: below the 65,507 bytes of one IPv4
/// datagram (udp_sendmsg checks the whole as one datagram first).
const MAX_GSO_BYTES: usize = 65000;
/// Most datagrams queued before the queue is sent early.
const UP_MAX_ITEMS: usize = 256;
/// Most bytes of app packets queued before the queue is sent early.
const UP_MAX_BYTES: usize = 256 * 1024;

/// One datagram as [`gso_groups`] sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Dgram {
    /// The mapping's slot (its socket).
    pub slot: usize,
    pub to: SocketAddr,
    pub fields: SendFields,
    /// Payload bytes.
    pub len: usize,
    /// The largest segment the mapping may send with GSO (0: none).
    pub seg_max: usize,
}

/// Splits the datagrams `d`, in order, into consecutive ranges each sent
/// as one message: a range of more than one datagram is one GSO send of
/// `d[range.start].len`-byte segments. A range grows while the next
/// datagram has the same slot, destination and fields, is not longer than
/// the first (and, when shorter or empty, ends the range: only the last
/// segment may be short, and an empty one would vanish), and the range
/// stays within [`MAX_SEGMENTS`] and [`MAX_GSO_BYTES`]. A datagram
/// longer than its mapping's `seg_max` goes alone.
pub(super) fn gso_groups(d: &[Dgram]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < d.len() {
        let first = &d[i];
        let mut j = i + 1;
        let mut total = first.len;
        if first.len > 0 && first.len <= first.seg_max {
            while j < d.len() && j - i < MAX_SEGMENTS {
                let n = &d[j];
                let same = n.slot == first.slot && n.to == first.to && n.fields == first.fields;
                if !same || n.len == 0 || n.len > first.len || total + n.len > MAX_GSO_BYTES {
                    break;
                }
                total += n.len;
                j += 1;
                if n.len < first.len {
                    break;
                }
            }
        }
        out.push(i..j);
        i = j;
    }
    out
}

/// One queued app datagram.
#[derive(Debug, Clone)]
pub(super) struct Queued {
    pub slot: usize,
    pub key: MapKey,
    /// The app packet's header; the packet is `pkt` of the queue's bytes,
    /// its UDP payload `payload`.
    pub ip: IpHdr,
    pub pkt: Range<usize>,
    pub payload: Range<usize>,
    pub to: SocketAddr,
    pub fields: SendFields,
}

/// App datagrams read in this TUN burst and not sent yet, in order.
#[derive(Default)]
pub(super) struct UpQueue {
    bytes: Vec<u8>,
    items: Vec<Queued>,
}

impl UpQueue {
    /// Whether one more packet of `len` bytes goes over the bounds.
    fn full_for(&self, len: usize) -> bool {
        self.items.len() >= UP_MAX_ITEMS || self.bytes.len() + len > UP_MAX_BYTES
    }
}

/// The batching state of a loop.
#[derive(Default)]
pub(super) struct Batching {
    /// Receive slots, made on first use.
    pub rx: Option<Box<sys::RecvMany>>,
    pub up: UpQueue,
    /// The `sendmmsg` calls' buffers.
    pub tx: sys::SendMany,
    /// Whether UDP GSO may be used: None until probed on the first
    /// socket; off for good after EIO (a device without checksum offload).
    pub gso: Option<bool>,
    /// Mappings' slots whose last read stopped at the budget
    /// (`EngineConfig::udp_event_budget`) with datagrams still queued:
    /// read again in the next loop turn, which then does not wait (no new
    /// edge would come for them).
    pub more: Vec<usize>,
}

impl Loop {
    /// Queues the app datagram `p` (header `ip`, UDP payload `payload`) of
    /// the mapping `key` in `slot` for `to` with `fields`; sends the queue
    /// first when it is full.
    pub(super) fn queue_udp(
        &mut self,
        (slot, key): (usize, MapKey),
        (ip, p): (&IpHdr, &[u8]),
        payload: Range<usize>,
        to: SocketAddr,
        fields: SendFields,
    ) {
        if self.udp_batch.up.full_for(p.len()) {
            self.flush_udp_up();
        }
        let q = &mut self.udp_batch.up;
        let at = q.bytes.len();
        q.bytes.extend_from_slice(p);
        q.items.push(Queued {
            slot,
            key,
            ip: *ip,
            pkt: at..at + p.len(),
            payload: at + payload.start..at + payload.end,
            to,
            fields,
        });
    }

    /// Sends every queued app datagram ([`UpQueue`]), in order: GSO groups
    /// ([`gso_groups`]), one `sendmmsg` per run of one mapping's sends
    /// (with one DF on an IPv4 socket), a failed message alone
    /// ([`Self::send_run`]).
    pub(super) fn flush_udp_up(&mut self) {
        if self.udp_batch.up.items.is_empty() {
            return;
        }
        let mut q = std::mem::take(&mut self.udp_batch.up);
        let gso = self.gso_available(&q.items);
        let dgrams: Vec<Dgram> = q
            .items
            .iter()
            .map(|it| Dgram {
                slot: it.slot,
                to: it.to,
                fields: it.fields,
                len: it.payload.len(),
                seg_max: match (&self.slots[it.slot], gso) {
                    (Slot::Udp(f), true) if f.sp == it.key.id && f.v6 == it.key.v6 => {
                        usize::from(f.gso_max)
                    }
                    _ => 0,
                },
            })
            .collect();
        let groups = gso_groups(&dgrams);
        // Every datagram's payload, once per flush: each run's messages
        // borrow their slices from here.
        let bufs: Vec<&[u8]> = q
            .items
            .iter()
            .map(|it| &q.bytes[it.payload.clone()])
            .collect();
        let mut g = 0;
        while g < groups.len() {
            // One sendmmsg: consecutive groups of one mapping, with one
            // DF on an IPv4 socket (a socket option there; an IPv6
            // socket's is per datagram: IPV6_DONTFRAG).
            let first = &q.items[groups[g].start];
            let mut end = g + 1;
            while end < groups.len()
                && end - g < sys::SEND_MANY_MAX
                && q.items[groups[end].start].slot == first.slot
                && (first.to.is_ipv6()
                    || q.items[groups[end].start].fields.dont_frag == first.fields.dont_frag)
            {
                end += 1;
            }
            self.send_run(&q, &bufs, &groups[g..end]);
            g = end;
        }
        drop(bufs);
        q.items.clear();
        q.bytes.clear();
        if self.udp_batch.up.items.is_empty() {
            // Keep the allocations for the next burst.
            self.udp_batch.up = q;
        }
    }

    /// A new network: GSO is probed again (a refusal with EIO was the old
    /// device's; the mappings, with their lowered `gso_max`, are closed)
    /// and no mapping is left to read on.
    pub(super) fn udp_batch_network_changed(&mut self) {
        self.udp_batch.gso = None;
        self.udp_batch.more.clear();
    }

    /// Whether GSO may be used, probed once on a socket of `items`.
    fn gso_available(&mut self, items: &[Queued]) -> bool {
        if let Some(g) = self.udp_batch.gso {
            return g;
        }
        let fd = items.iter().find_map(|it| match &self.slots[it.slot] {
            Slot::Udp(f) => Some(f.sock.as_raw_fd()),
            _ => None,
        });
        let Some(fd) = fd else { return false };
        let g = sys::udp_gso_supported(fd);
        log::debug!(
            "UDP GSO (UDP_SEGMENT) {}",
            if g { "available" } else { "unavailable" }
        );
        self.udp_batch.gso = Some(g);
        g
    }

    /// Sends the groups `groups` of `q` (one mapping, one DF; `bufs` holds
    /// every queued payload) in as few
    /// `sendmmsg` calls as errors allow: a message that fails is handled
    /// alone ([`Self::send_failed`]) and the calls go on after it.
    fn send_run(&mut self, q: &UpQueue, bufs: &[&[u8]], groups: &[Range<usize>]) {
        let first = &q.items[groups[0].start];
        let (slot, key) = (first.slot, first.key);
        let fd = match &self.slots[slot] {
            Slot::Udp(f) if f.sp == key.id && f.v6 == key.v6 => f.sock.as_raw_fd(),
            _ => {
                // The mapping closed since (a network change): dropped.
                let n: usize = groups.iter().map(|r| r.len()).sum();
                Counters::add(&self.sh.counters.drop_upstream_send, n as u64);
                return;
            }
        };
        self.set_socket_df(slot, first.to.is_ipv6(), first.fields.dont_frag);
        let msgs: Vec<OutMsg<'_>> = groups
            .iter()
            .map(|r| {
                let it = &q.items[r.start];
                OutMsg {
                    bufs: &bufs[r.clone()],
                    to: it.to,
                    fields: it.fields,
                    gso: (r.len() > 1).then(|| it.payload.len() as u16),
                }
            })
            .collect();
        let sh = self.sh.clone();
        let c = &sh.counters;
        // sendmmsg stops at the first message that fails and, when some
        // went before it, drops that message's error (`__sys_sendmmsg`):
        // the call is made again from there, so the failing message comes
        // first and its error is seen; it is then handled alone and the
        // batch goes on after it. A single datagram's EMSGSIZE is the
        // exception (dropped_emsgsize).
        let mut at = 0;
        while at < msgs.len() {
            let sent = self.udp_batch.tx.send(fd, &msgs[at..]);
            Counters::inc(&c.udp_sendmmsg_calls);
            let e = match sent {
                Ok(n) if n > 0 => {
                    for r in &groups[at..at + n] {
                        if r.len() > 1 {
                            Counters::inc(&c.udp_gso_sends);
                        }
                        for it in &q.items[r.clone()] {
                            Counters::inc(&c.up_tx_packets);
                            Counters::add(&c.up_tx_bytes, it.payload.len() as u64);
                            self.udp_sent(it, &q.bytes, Ok(()));
                        }
                    }
                    at += n;
                    if at < msgs.len() && groups[at].len() == 1 {
                        self.dropped_emsgsize(q, slot, groups[at].start, &mut at);
                    }
                    continue;
                }
                // Nothing sent and no error: cannot happen; the message
                // goes alone below, so the loop always moves on.
                Ok(_) => io::Error::from_raw_os_error(libc::EAGAIN),
                Err(e) => e,
            };
            log::debug!("sendmmsg on UDP mapping {}: {e}", key.id);
            self.send_failed(q, slot, groups[at].clone(), e);
            at += 1;
        }
    }

    /// After a `sendmmsg` that stopped at the single datagram `i` of `q`
    /// on `slot`: when it failed with EMSGSIZE (over the path MTU with
    /// DF), the kernel queued a local error for it (IP_RECVERR:
    /// `ip_local_error`, `ipv6_local_error`) although the call dropped the
    /// error, and a resend would queue a second. That queued error is its
    /// answer (Fragmentation Needed or Packet Too Big quoting it): it is
    /// counted as dropped and `at` moves past it. Any other failure is
    /// met again by the next call.
    fn dropped_emsgsize(&mut self, q: &UpQueue, slot: usize, i: usize, at: &mut usize) {
        let it = &q.items[i];
        if self.drain_errors(slot, Some(&q.bytes[it.pkt.clone()])) {
            Counters::inc(&self.sh.counters.drop_upstream_send);
            self.udp_sent(
                it,
                &q.bytes,
                Err(io::Error::from_raw_os_error(libc::EMSGSIZE)),
            );
            *at += 1;
        }
    }

    /// Message `r` of `q` on `slot` failed with `e` as the first of a
    /// `sendmmsg`: exactly one answer per datagram, as a single send
    /// gives. A pending ICMP error (about an earlier datagram) goes to the
    /// app first and the message's datagrams are sent one by one; a
    /// refused GSO send is learned ([`Self::gso_refused`]) and its
    /// datagrams sent one by one, each meeting its own error; a single
    /// datagram's own error is its answer (EMSGSIZE: the kernel already
    /// queued the local error that becomes its Fragmentation Needed or
    /// Packet Too Big; a resend would queue a second).
    fn send_failed(&mut self, q: &UpQueue, slot: usize, r: Range<usize>, e: io::Error) {
        let pending = super::datagram::is_pending_icmp_error(&e);
        if pending {
            // Reported instead of this message (and cleared).
            self.drain_errors(slot, None);
        } else if r.len() > 1 {
            Counters::inc(&self.sh.counters.udp_gso_refused);
            self.gso_refused(slot, &e, q.items[r.start].payload.len());
        }
        if pending || r.len() > 1 {
            for it in &q.items[r] {
                let p = &q.bytes[it.pkt.clone()];
                let data = &q.bytes[it.payload.clone()];
                let res = self.send_upstream_with(slot, p, data, &it.to, it.fields);
                self.udp_sent(it, &q.bytes, res);
            }
            return;
        }
        let it = &q.items[r.start];
        Counters::inc(&self.sh.counters.drop_upstream_send);
        if e.raw_os_error() == Some(libc::EMSGSIZE) {
            self.drain_errors(slot, Some(&q.bytes[it.pkt.clone()]));
        }
        self.udp_sent(it, &q.bytes, Err(e));
    }

    /// A GSO send of `seg`-byte segments on `slot` failed with `e`: EIO
    /// (the device cannot checksum: no GSO there) turns GSO off; EINVAL or
    /// EMSGSIZE (segments over the path MTU) keeps the mapping's GSO below
    /// that size.
    fn gso_refused(&mut self, slot: usize, e: &io::Error, seg: usize) {
        match e.raw_os_error() {
            Some(libc::EIO) => self.udp_batch.gso = Some(false),
            Some(libc::EINVAL | libc::EMSGSIZE) => {
                if let Slot::Udp(f) = &mut self.slots[slot] {
                    f.gso_max = f.gso_max.min(seg.saturating_sub(1) as u16);
                }
            }
            _ => {}
        }
    }

    /// What follows the send of the queued datagram `it` (bytes in
    /// `bytes`): a copy kept for a resend after Packet Too Big when it
    /// went, the app's Destination Unreachable when the send failed for a
    /// reason that has one.
    fn udp_sent(&mut self, it: &Queued, bytes: &[u8], res: io::Result<()>) {
        match res {
            // Only IPv4 datagrams over IPv6 need the copy: an IPv4 socket
            // without DF fragments, and IPv6 datagrams have no DF to honour.
            Ok(()) => {
                if let (SocketAddr::V6(to), IpHdr::V4(i)) = (it.to, &it.ip) {
                    let to = SocketAddrV6::new(*to.ip(), to.port(), 0, 0);
                    self.keep_for_too_big(it.key.id, to, &bytes[it.payload.clone()], i);
                }
            }
            // Tell the app, as a router would, instead of silence.
            Err(e) => {
                if let Some(why) = super::udp::unreach_reason(&e) {
                    self.refuse_ip(&it.ip, &bytes[it.pkt.clone()], why);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "[2001:db8:64::cb00:710a]:9";
    const B: &str = "[2001:db8:64::cb00:710b]:9";

    fn f(ttl: u8) -> SendFields {
        SendFields {
            hop_limit: Some(ttl),
            tclass: Some(0),
            dont_frag: true,
        }
    }

    fn d(slot: usize, to: &str, ttl: u8, len: usize) -> Dgram {
        Dgram {
            slot,
            to: to.parse().unwrap(),
            fields: f(ttl),
            len,
            seg_max: 65535,
        }
    }

    #[test]
    fn equal_datagrams_of_one_mapping_and_destination_form_one_send() {
        let v: Vec<_> = (0..10).map(|_| d(1, A, 64, 100)).collect();
        assert_eq!(gso_groups(&v), vec![0..10]);
    }

    #[test]
    fn a_shorter_datagram_ends_its_group_and_a_longer_one_starts_another() {
        let v = vec![
            d(1, A, 64, 100),
            d(1, A, 64, 100),
            d(1, A, 64, 40),
            d(1, A, 64, 100),
            d(1, A, 64, 200),
            d(1, A, 64, 200),
        ];
        assert_eq!(gso_groups(&v), vec![0..3, 3..4, 4..6]);
    }

    #[test]
    fn destination_mapping_and_fields_split_groups() {
        let v = vec![
            d(1, A, 64, 100),
            d(1, B, 64, 100),
            d(2, B, 64, 100),
            d(2, B, 63, 100),
            d(2, B, 63, 100),
        ];
        assert_eq!(gso_groups(&v), vec![0..1, 1..2, 2..3, 3..5]);
        let mut df = d(2, B, 63, 100);
        df.fields.dont_frag = false;
        let v = vec![d(2, B, 63, 100), df];
        assert_eq!(gso_groups(&v), vec![0..1, 1..2]);
    }

    #[test]
    fn empty_datagrams_and_those_over_the_mappings_limit_go_alone() {
        let v = vec![
            d(1, A, 64, 0),
            d(1, A, 64, 0),
            d(1, A, 64, 10),
            d(1, A, 64, 0),
        ];
        assert_eq!(gso_groups(&v), vec![0..1, 1..2, 2..3, 3..4]);
        let mut big: Vec<_> = (0..3).map(|_| d(1, A, 64, 1400)).collect();
        for x in &mut big {
            x.seg_max = 1399;
        }
        assert_eq!(gso_groups(&big), vec![0..1, 1..2, 2..3]);
        for x in &mut big {
            x.seg_max = 0;
        }
        assert_eq!(gso_groups(&big), vec![0..1, 1..2, 2..3]);
    }

    #[test]
    fn groups_are_bounded_in_segments_and_bytes() {
        let v: Vec<_> = (0..150).map(|_| d(1, A, 64, 10)).collect();
        assert_eq!(gso_groups(&v), vec![0..64, 64..128, 128..150]);
        // 1400 * 46 = 64,400 fits; a 47th would pass MAX_GSO_BYTES.
        let v: Vec<_> = (0..50).map(|_| d(1, A, 64, 1400)).collect();
        assert_eq!(gso_groups(&v), vec![0..46, 46..50]);
        let v: Vec<_> = (0..3).map(|_| d(1, A, 64, 40000)).collect();
        assert_eq!(gso_groups(&v), vec![0..1, 1..2, 2..3]);
    }

    #[test]
    fn order_is_kept_and_every_datagram_is_in_exactly_one_group() {
        let v = vec![
            d(1, A, 64, 100),
            d(2, A, 64, 100),
            d(1, A, 64, 100),
            d(1, A, 64, 100),
            d(2, A, 64, 100),
        ];
        let g = gso_groups(&v);
        assert_eq!(g, vec![0..1, 1..2, 2..4, 4..5]);
        let flat: Vec<usize> = g.into_iter().flatten().collect();
        assert_eq!(flat, (0..v.len()).collect::<Vec<_>>());
    }
}
