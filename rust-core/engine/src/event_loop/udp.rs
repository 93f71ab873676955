//! UDP: one upstream socket per app source port (endpoint-independent
//! mapping and filtering, RFC 4787), IPv6 to the NAT64 or IPv4 on the
//! native path (the mapping's [`Ipv4Path`]). Datagrams to the internal
//! DNS address go to the DNS relay instead.

use super::datagram::{send_fields, Datagram};
use super::{tun_write, Loop, Slot, MAX_UDP_PAYLOAD};
use crate::ipv4_path::Ipv4Path;
use crate::packet::{self, Hop, Ip4};
use crate::stats::Counters;
use crate::sys;
use crate::timers::TimerKey;
use crate::too_big_resend::Keep;
use clat_xlat::wire::Icmpv4DstUnreachable;
use mio::event::Event;
use mio::net::UdpSocket;
use std::io;
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;

/// One UDP mapping's socket: the app's source port and its upstream
/// socket (when it was used and expires: `Loop::udp`).
pub(super) struct UdpFlow {
    pub(super) sp: u16,
    pub(super) sock: UdpSocket,
    /// The path the mapping was created on, for its life.
    pub(super) path: Ipv4Path,
    /// The DF last set as the IPv4 socket's IP_MTU_DISCOVER (native path);
    /// None before the first datagram or after a failed setsockopt.
    pub(super) df: Option<bool>,
}

/// ICMPv4 destination-unreachable code for a local send error.
fn unreach_code(e: &io::Error) -> Option<Icmpv4DstUnreachable> {
    match e.raw_os_error()? {
        libc::ENETUNREACH => Some(Icmpv4DstUnreachable::NetUnreachable),
        libc::EHOSTUNREACH | libc::EADDRNOTAVAIL => Some(Icmpv4DstUnreachable::HostUnreachable),
        libc::EACCES | libc::EPERM => Some(Icmpv4DstUnreachable::CommProhibited),
        _ => None,
    }
}

fn udp_payload(p: &[u8], ip: &Ip4) -> Option<(u16, u16, std::ops::Range<usize>)> {
    let u = p.get(ip.ihl..ip.total_len())?;
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
        ip.ihl + 8..ip.ihl + ulen,
    ))
}

impl Loop {
    pub(super) fn udp_from_app(&mut self, ip: &Ip4, p: &mut [u8]) {
        let Some((sp, dp, range)) = udp_payload(p, ip) else {
            return Counters::inc(&self.c().drop_malformed);
        };
        if ip.dst == self.cfg.dns_v4 {
            if dp == 53 {
                return self.dns_query(sp, &p[range]);
            }
            Counters::inc(&self.c().drop_internal_dst);
            return self.refuse(ip, p, Icmpv4DstUnreachable::PortUnreachable);
        }
        if ip.ttl == 0 {
            return self.ttl_zero(ip, p);
        }
        let slot = match self.udp.touch(sp, self.now) {
            Some(s) => s,
            None => match self.new_datagram_flow(Datagram::Udp, sp, ip, p) {
                Some(s) => s,
                None => return,
            },
        };
        let Slot::Udp(f) = &self.slots[slot] else {
            return;
        };
        let to = f
            .path
            .upstream(&self.cfg.prefix, SocketAddrV4::new(ip.dst, dp));
        match self.send_upstream(slot, (ip, p), &p[range.clone()], &to) {
            // Only IPv6 needs the copy: an IPv4 socket without DF fragments.
            Ok(()) => {
                if let SocketAddr::V6(to) = to {
                    self.keep_for_too_big(sp, to, &p[range], ip)
                }
            }
            // Tell the app, as a router would, instead of silence.
            Err(e) => {
                if let Some(code) = unreach_code(&e) {
                    self.refuse(ip, p, code);
                }
            }
        }
    }

    /// Keeps a copy of the datagram without DF just sent on mapping `sp`
    /// when it might meet a narrower link ([`crate::too_big_resend::TooBigResends::on_sent`]),
    /// and arms or disarms the copies' deadlines.
    fn keep_for_too_big(&mut self, sp: u16, to: SocketAddrV6, payload: &[u8], ip: &Ip4) {
        let now = self.now;
        let replaced = match self.too_big.on_sent(sp, to, payload, send_fields(ip), now) {
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

    pub(super) fn on_udp(&mut self, slot: usize, ev: &Event) {
        if ev.is_error() {
            self.drain_errors(slot, None);
        }
        let mut out = std::mem::take(&mut self.txbuf);
        for _ in 0..1024 {
            let Slot::Udp(f) = &self.slots[slot] else {
                break;
            };
            let (fd, sp, path) = (f.sock.as_raw_fd(), f.sp, f.path);
            // One byte more than IPv4 can carry: an IPv6 datagram that
            // big (up to 65,527 bytes) shows as longer than the limit
            // instead of arriving cut short.
            match sys::recv_from(fd, &mut out[28..28 + MAX_UDP_PAYLOAD + 1]) {
                Ok((n, from, fields)) => {
                    self.udp.touch(sp, self.now);
                    let c = &self.sh.counters;
                    Counters::inc(&c.up_rx_packets);
                    Counters::add(&c.up_rx_bytes, n as u64);
                    if n > MAX_UDP_PAYLOAD {
                        Counters::inc(&c.drop_udp_too_big);
                        continue;
                    }
                    let src = from.and_then(|a| path.app_addr(&self.cfg.prefix, &a));
                    let Some(src) = src else {
                        Counters::inc(&c.drop_foreign_source);
                        continue;
                    };
                    let id = self.next_ip_id();
                    let ends = (src, SocketAddrV4::new(self.cfg.clat_v4, sp));
                    let hop = Hop::from_ipv6(fields.hop_limit, fields.tclass);
                    let len = packet::emit_udp4_hop(&mut out, ends, n, id, hop);
                    tun_write(&self.tun, &self.sh.counters, &out[..len]);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    self.txbuf = out;
                    self.drain_errors(slot, None);
                    out = std::mem::take(&mut self.txbuf);
                }
            }
        }
        self.txbuf = out;
    }
}
