//! UDP: one upstream socket per app source port (endpoint-independent
//! mapping and filtering, RFC 4787), IPv6 to the NAT64 or IPv4 on the
//! native path (the mapping's [`Ipv4Path`]). Datagrams to the internal
//! DNS address go to the DNS relay instead.

use super::datagram::{send_fields, Datagram};
use super::udp_batch::RECV_MANY;
use super::{tun_write, Loop, Slot, MAX_UDP_PAYLOAD, MAX_UDP_PAYLOAD6};
use crate::datagram_mappings::MapKey;
use crate::flow_events::Tally;
use crate::ipv4_path::Ipv4Path;
use crate::packet::{self, Hop, Ip4, IpHdr, IpView};
use crate::stats::Counters;
use crate::sys;
use crate::tcp_flows::Unreachable;
use crate::timers::TimerKey;
use crate::too_big_resend::Keep;
use clat_xlat::wire::Icmpv4DstUnreachable;
use mio::event::Event;
use mio::net::UdpSocket;
use std::io;
use std::net::{IpAddr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;

/// One UDP mapping's socket: the app's source port and its upstream
/// socket (when it was used and expires: `Loop::udp`).
pub(super) struct UdpFlow {
    pub(super) sp: u16,
    /// An IPv6 app's mapping (`carry_ipv6`): to IPv6 destinations
    /// themselves, whatever the IPv4 path.
    pub(super) v6: bool,
    pub(super) sock: UdpSocket,
    /// The path the mapping was created on, for its life.
    pub(super) path: Ipv4Path,
    /// The DF last set as the IPv4 socket's IP_MTU_DISCOVER (native path);
    /// None before the first datagram or after a failed setsockopt.
    pub(super) df: Option<bool>,
    /// The largest payload this mapping sends in a UDP GSO send
    /// ([`super::udp_batch`]): lowered below a segment size the path
    /// refused (over its MTU).
    pub(super) gso_max: u16,
    /// An IPv4 mapping's id and bytes while flow events are on
    /// ([`crate::flow_events::Tally`]).
    pub(super) tally: Option<Box<Tally>>,
}

/// Why a local send failed, for the app's Destination Unreachable.
pub(super) fn unreach_reason(e: &io::Error) -> Option<Unreachable> {
    match e.raw_os_error()? {
        libc::ENETUNREACH => Some(Unreachable::Net),
        libc::EHOSTUNREACH | libc::EADDRNOTAVAIL => Some(Unreachable::Host),
        libc::EACCES | libc::EPERM => Some(Unreachable::Prohibited),
        _ => None,
    }
}

/// Source port, destination port and the payload's range of the UDP
/// datagram in `p`, of either family; None when its length field does not
/// fit the packet.
fn udp_payload(p: &[u8], ip: &impl IpView) -> Option<(u16, u16, std::ops::Range<usize>)> {
    let off = ip.upper_offset();
    let u = p.get(off..ip.packet_len())?;
    if u.len() < 8 {
        return None;
    }
    let ulen = u16::from_be_bytes([u[4], u[5]]) as usize;
    if ulen < 8 || ulen > u.len() {
        return None;
    }
    Some((
        u16::from_be_bytes([u[0], u[1]]),
        u16::from_be_bytes([u[2], u[3]]),
        off + 8..off + ulen,
    ))
}

impl Loop {
    /// A UDP datagram from an app, of either family: to the DNS relay, or
    /// on its mapping (made now if needed) to the destination, through
    /// the IPv4 path for IPv4, to the IPv6 destination itself for IPv6.
    pub(super) fn udp_from_app(&mut self, ip: &IpHdr, p: &mut [u8]) {
        let Some((sp, dp, range)) = udp_payload(p, ip) else {
            return Counters::inc(&self.c().drop_malformed);
        };
        let v6 = matches!(ip, IpHdr::V6(_));
        match ip {
            IpHdr::V4(i) if i.dst == self.cfg.dns_v4 => {
                if dp == 53 {
                    return self.dns_query(sp, &p[range]);
                }
                Counters::inc(&self.c().drop_internal_dst);
                let err = super::IcmpError::unreachable4(Icmpv4DstUnreachable::PortUnreachable);
                return self.refuse(ip, p, err);
            }
            IpHdr::V4(i) if i.ttl == 0 => return self.ttl_zero(i, p),
            IpHdr::V6(i) if i.hop_limit == 0 => return self.hop_limit_zero(i, p),
            _ => {}
        }
        let key = MapKey { v6, id: sp };
        let slot = match self.udp.touch(key, self.now) {
            Some(s) => s,
            None => match self.new_datagram_flow(Datagram::Udp, key, ip, p) {
                Some(s) => s,
                None => return,
            },
        };
        if !v6 {
            self.tally_datagram(slot, p.len(), 0);
        }
        let Slot::Udp(f) = &self.slots[slot] else {
            return;
        };
        let to = match ip.dst_ip() {
            IpAddr::V4(d) => f.path.upstream(&self.cfg.prefix, SocketAddrV4::new(d, dp)),
            IpAddr::V6(d) => SocketAddr::V6(SocketAddrV6::new(d, dp, 0, 0)),
        };
        // Sent when the TUN burst ends, with the others of this burst
        // (udp_batch).
        let fields = self.upstream_fields(ip);
        self.queue_udp((slot, key), (ip, p), range, to, fields);
    }

    /// Keeps a copy of the datagram without DF just sent on mapping `sp`
    /// when it might meet a narrower link ([`crate::too_big_resend::TooBigResends::on_sent`]),
    /// and arms or disarms the copies' deadlines.
    pub(super) fn keep_for_too_big(&mut self, sp: u16, to: SocketAddrV6, payload: &[u8], ip: &Ip4) {
        let now = self.now;
        let fields = send_fields(&IpHdr::V4(*ip));
        let replaced = match self.too_big.on_sent(sp, to, payload, fields, now) {
            Keep::NotNeeded => return,
            Keep::Kept { at, replaced } => {
                self.timers.insert(at, TimerKey::UdpCopy(sp));
                replaced
            }
            Keep::OverBudget { replaced } => {
                Counters::inc(&self.sh.counters.udp_copies_over_budget);
                replaced
            }
        };
        if let Some(at) = replaced {
            self.timers.remove(at, TimerKey::UdpCopy(sp));
        }
    }

    /// The readiness event `ev` of the mapping in `slot`: its queued
    /// errors, then its datagrams ([`Self::udp_recv`]).
    pub(super) fn on_udp(&mut self, slot: usize, ev: &Event) {
        if ev.is_error() {
            self.drain_errors(slot, None);
        }
        self.udp_recv(slot);
    }

    /// The mappings in `slots` (taken from `udp_batch.more` before this
    /// turn's events) that stopped at their budget: read on.
    pub(super) fn on_udp_more(&mut self, slots: &mut Vec<usize>) {
        for s in slots.drain(..) {
            self.udp_recv(s);
        }
    }

    /// Datagrams from the upstream socket of the mapping in `slot` to the
    /// app: `recvmmsg` until the queue is empty or `udp_event_budget`
    /// went (then the slot goes on `udp_batch.more`), each datagram (each
    /// GRO segment) one packet to the TUN.
    fn udp_recv(&mut self, slot: usize) {
        let budget = self.cfg.udp_event_budget.max(1);
        let mut rx = self
            .udp_batch
            .rx
            .take()
            .unwrap_or_else(|| Box::new(sys::RecvMany::new(RECV_MANY)));
        let mut done = 0;
        while let Slot::Udp(f) = &self.slots[slot] {
            if done >= budget {
                // Maybe more queued: read on in the next turn.
                if !self.udp_batch.more.contains(&slot) {
                    self.udp_batch.more.push(slot);
                }
                break;
            }
            let fd = f.sock.as_raw_fd();
            match rx.recv(fd) {
                Ok(n) => {
                    Counters::inc(&self.sh.counters.udp_recvmmsg_calls);
                    for i in 0..n {
                        done += self.udp_to_app(slot, &mut rx, i);
                    }
                    if n < RECV_MANY {
                        // Emptied: a datagram that comes later wakes the
                        // loop again (edge-triggered, on every arrival).
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    self.drain_errors(slot, None);
                    done += 1;
                }
            }
        }
        self.udp_batch.rx = Some(rx);
    }

    /// Message `i` of `rx`, received on the mapping in `slot`, to the app:
    /// one packet per datagram (with UDP GRO, per segment: the kernel
    /// coalesces only datagrams of one source with equal IP headers,
    /// so the message's hop limit and traffic class are each one's).
    /// Returns the datagrams it held.
    fn udp_to_app(&mut self, slot: usize, rx: &mut sys::RecvMany, i: usize) -> usize {
        let Slot::Udp(f) = &self.slots[slot] else {
            return 0;
        };
        let (sp, path, v6) = (f.sp, f.path, f.v6);
        let got = rx.got(i);
        self.udp.touch(MapKey { v6, id: sp }, self.now);
        let c = &self.sh.counters;
        if got.truncated {
            // Larger than any UDP datagram: cannot happen, but never cut.
            Counters::inc(&c.up_rx_packets);
            Counters::inc(&c.drop_udp_too_big);
            return 1;
        }
        if got.gro.is_some() {
            Counters::inc(&c.udp_gro_messages);
        }
        // The app's IP and UDP headers go in front of each datagram, in
        // place: over the end of the one before, already written.
        let (hdrs, max) = if v6 {
            (48, MAX_UDP_PAYLOAD6)
        } else {
            (28, MAX_UDP_PAYLOAD)
        };
        let hop = Hop::from_ipv6(got.fields.hop_limit, got.fields.tclass);
        // Any source for an IPv6 mapping (endpoint-independent filtering);
        // an IPv4 one's must map back to an IPv4 address.
        let src = match (v6, got.from) {
            (true, Some(SocketAddr::V6(s))) => {
                Some(SocketAddr::V6(SocketAddrV6::new(*s.ip(), s.port(), 0, 0)))
            }
            (true, _) => None,
            (false, from) => from
                .and_then(|a| path.app_addr(&self.cfg.prefix, &a))
                .map(SocketAddr::V4),
        };
        let seg = got.gro.map_or(got.len, usize::from).max(1);
        let count = got.len.div_ceil(seg).max(1);
        let slot_buf = rx.slot_mut(i);
        for k in 0..count {
            let off = k * seg;
            let n = seg.min(got.len - off);
            let c = &self.sh.counters;
            Counters::inc(&c.up_rx_packets);
            Counters::add(&c.up_rx_bytes, n as u64);
            if n > max {
                Counters::inc(&c.drop_udp_too_big);
                continue;
            }
            let buf = &mut slot_buf[sys::RECV_HEAD + off - hdrs..];
            let len = match src {
                Some(SocketAddr::V6(src)) => {
                    let ends = (src, SocketAddrV6::new(self.cfg.clat_v6, sp, 0, 0));
                    packet::emit_udp6_hop(buf, ends, n, hop)
                }
                Some(SocketAddr::V4(src)) => {
                    let id = self.next_ip_id();
                    let ends = (src, SocketAddrV4::new(self.cfg.clat_v4, sp));
                    packet::emit_udp4_hop(buf, ends, n, id, hop)
                }
                None => {
                    Counters::inc(&self.sh.counters.drop_foreign_source);
                    continue;
                }
            };
            if tun_write(&self.tun, &self.sh.counters, &buf[..len]) && !v6 {
                self.tally_datagram(slot, 0, len);
            }
        }
        count
    }
}
