//! UDP: one upstream socket per app source port (endpoint-independent
//! mapping and filtering, RFC 4787), IPv6 to the NAT64 or IPv4 on the
//! native path (the mapping's [`Ipv4Path`]). Datagrams to the internal
//! DNS address go to the DNS relay instead.

use super::datagram::{send_fields, Datagram};
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
    /// An IPv4 mapping's id and bytes while flow events are on
    /// ([`crate::flow_events::Tally`]).
    pub(super) tally: Option<Box<Tally>>,
}

/// Why a local send failed, for the app's Destination Unreachable.
fn unreach_reason(e: &io::Error) -> Option<Unreachable> {
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
        match self.send_upstream(slot, (ip, p), &p[range.clone()], &to) {
            // Only IPv4 datagrams over IPv6 need the copy: an IPv4 socket
            // without DF fragments, and IPv6 datagrams have no DF to honour.
            Ok(()) => {
                if let (SocketAddr::V6(to), IpHdr::V4(i)) = (to, ip) {
                    self.keep_for_too_big(sp, to, &p[range], i)
                }
            }
            // Tell the app, as a router would, instead of silence.
            Err(e) => {
                if let Some(why) = unreach_reason(&e) {
                    self.refuse_ip(ip, p, why);
                }
            }
        }
    }

    /// Keeps a copy of the datagram without DF just sent on mapping `sp`
    /// when it might meet a narrower link ([`crate::too_big_resend::TooBigResends::on_sent`]),
    /// and arms or disarms the copies' deadlines.
    fn keep_for_too_big(&mut self, sp: u16, to: SocketAddrV6, payload: &[u8], ip: &Ip4) {
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

    pub(super) fn on_udp(&mut self, slot: usize, ev: &Event) {
        if ev.is_error() {
            self.drain_errors(slot, None);
        }
        let mut out = std::mem::take(&mut self.txbuf);
        for _ in 0..1024 {
            let Slot::Udp(f) = &self.slots[slot] else {
                break;
            };
            let (fd, sp, path, v6) = (f.sock.as_raw_fd(), f.sp, f.path, f.v6);
            // Room for the app's IP and UDP headers in front, and one byte
            // more than the app's family can carry: a datagram that big
            // shows as longer than the limit instead of arriving cut short.
            let (hdrs, max) = if v6 {
                (48, MAX_UDP_PAYLOAD6)
            } else {
                (28, MAX_UDP_PAYLOAD)
            };
            match sys::recv_from(fd, &mut out[hdrs..hdrs + max + 1]) {
                Ok((n, from, fields)) => {
                    self.udp.touch(MapKey { v6, id: sp }, self.now);
                    let c = &self.sh.counters;
                    Counters::inc(&c.up_rx_packets);
                    Counters::add(&c.up_rx_bytes, n as u64);
                    if n > max {
                        Counters::inc(&c.drop_udp_too_big);
                        continue;
                    }
                    let hop = Hop::from_ipv6(fields.hop_limit, fields.tclass);
                    let len = if v6 {
                        // Any IPv6 source (endpoint-independent filtering).
                        let Some(SocketAddr::V6(src)) = from else {
                            Counters::inc(&c.drop_foreign_source);
                            continue;
                        };
                        let src = SocketAddrV6::new(*src.ip(), src.port(), 0, 0);
                        let ends = (src, SocketAddrV6::new(self.cfg.clat_v6, sp, 0, 0));
                        packet::emit_udp6_hop(&mut out, ends, n, hop)
                    } else {
                        let src = from.and_then(|a| path.app_addr(&self.cfg.prefix, &a));
                        let Some(src) = src else {
                            Counters::inc(&c.drop_foreign_source);
                            continue;
                        };
                        let id = self.next_ip_id();
                        let ends = (src, SocketAddrV4::new(self.cfg.clat_v4, sp));
                        packet::emit_udp4_hop(&mut out, ends, n, id, hop)
                    };
                    if tun_write(&self.tun, &self.sh.counters, &out[..len]) && !v6 {
                        self.tally_datagram(slot, 0, len);
                    }
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
