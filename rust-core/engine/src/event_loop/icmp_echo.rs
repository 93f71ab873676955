//! ICMP echo: one ping socket per echo identifier, so that the kernel
//! matches the replies to it (the kernel picks the socket's own
//! identifier; replies get the app's back). On the NAT64 path requests and
//! replies are translated ICMPv4 <-> ICMPv6 here; on the native path an
//! AF_INET ping socket carries the ICMPv4 echo as it is. Errors come back
//! through `datagram`.

use super::datagram::Datagram;
use super::{tun_write, Loop, Slot};
use crate::datagram_mappings::MapKey;
use crate::flow_events::Tally;
use crate::ipv4_path::Ipv4Path;
use crate::packet::{self, checksum, Hop, Ip4, IpHdr, IpView, PROTO_ICMPV6};
use crate::stats::Counters;
use crate::sys;
use clat_xlat::wire::{Icmpv4Message, Icmpv6Message};
use mio::event::Event;
use mio::net::UdpSocket;
use std::io;
use std::net::{IpAddr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;

/// One echo mapping's socket: the app's echo identifier and its ping
/// socket (when it was used and expires: `Loop::icmp`).
pub(super) struct IcmpFlow {
    pub(super) id: u16,
    /// An IPv6 app's mapping (`carry_ipv6`): ICMPv6 to IPv6 destinations
    /// themselves, whatever the IPv4 path.
    pub(super) v6: bool,
    pub(super) sock: UdpSocket,
    /// The path the mapping was created on, for its life.
    pub(super) path: Ipv4Path,
    /// The DF last set as the IPv4 socket's IP_MTU_DISCOVER (native path).
    pub(super) df: Option<bool>,
    /// The (hop limit, traffic class) last set on the socket as options,
    /// which is how echo requests get the app's TTL and TOS on every
    /// kernel (`Loop::send_upstream`); None before the first, or after a
    /// failed setsockopt, so that the next request tries again.
    pub(super) sticky: Option<(u8, u8)>,
    /// An IPv4 mapping's id and bytes while flow events are on
    /// ([`crate::flow_events::Tally`]).
    pub(super) tally: Option<Box<Tally>>,
}

impl Loop {
    /// An echo request to the DNS relay's address, answered here: apps and
    /// network diagnostics ping the DNS server they were given, and a
    /// silent one looks like a broken network. Other ICMP to the CLAT's
    /// internal addresses is dropped and counted.
    pub(super) fn icmp_to_relay(&mut self, ip: &Ip4, p: &[u8]) {
        let ihl = ip.ihl;
        if p.len() < ihl + 8 || !checksum::verify(&p[ihl..], 0) {
            return Counters::inc(&self.c().drop_malformed);
        }
        if p[ihl] != Icmpv4Message::EchoRequest as u8 || p[ihl + 1] != 0 {
            return Counters::inc(&self.c().drop_internal_dst);
        }
        let msg = &p[ihl..];
        let mut out = std::mem::take(&mut self.txbuf);
        out[20..20 + msg.len()].copy_from_slice(msg);
        // Echo reply; code, identifier, sequence and data as sent.
        out[20] = Icmpv4Message::EchoReply as u8;
        let id = self.next_ip_id();
        let n = packet::emit_icmp4(&mut out, ip.dst, ip.src, msg.len(), id);
        tun_write(&self.tun, &self.sh.counters, &out[..n]);
        self.txbuf = out;
    }

    /// An echo request from an app, of either family: on its mapping (made
    /// now if needed) through a ping socket, ICMPv4 through the IPv4 path,
    /// ICMPv6 to the IPv6 destination itself.
    pub(super) fn icmp_from_app(&mut self, ip: &IpHdr, p: &mut [u8]) {
        let off = ip.upper_offset();
        let end = ip.packet_len();
        let (v6, request) = match ip {
            IpHdr::V4(_) => (false, Icmpv4Message::EchoRequest as u8),
            IpHdr::V6(_) => (true, Icmpv6Message::EchoRequest as u8),
        };
        let pseudo = match ip {
            IpHdr::V4(_) => 0,
            IpHdr::V6(i) => checksum::pseudo_v6(&i.src, &i.dst, PROTO_ICMPV6, (end - off) as u32),
        };
        if end < off + 8 || !checksum::verify(&p[off..end], pseudo) {
            return Counters::inc(&self.c().drop_malformed);
        }
        if p[off] != request || p[off + 1] != 0 {
            // Never an error about an ICMP error; other ICMPv6 (neighbour
            // discovery, MLD, errors from the app) has nowhere to go.
            return Counters::inc(&self.c().drop_icmp_type);
        }
        match ip {
            IpHdr::V4(i) if i.ttl == 0 => return self.ttl_zero(i, p),
            IpHdr::V6(i) if i.hop_limit == 0 => return self.hop_limit_zero(i, p),
            _ => {}
        }
        let id = u16::from_be_bytes([p[off + 4], p[off + 5]]);
        let key = MapKey { v6, id };
        let slot = match self.icmp.touch(key, self.now) {
            Some(s) => s,
            None => match self.new_datagram_flow(Datagram::Echo, key, ip, p) {
                Some(s) => s,
                None => return,
            },
        };
        if !v6 {
            self.tally_datagram(slot, end, 0);
        }
        // The app's request as sent, for a Fragmentation Needed or Packet
        // Too Big about it: an ICMPv4 error quotes the header and 8 bytes
        // (RFC 792), an ICMPv6 one as much as fits (RFC 4443 2.4 (c)).
        let mut quote = [0u8; 1232];
        let qlen = if v6 { end.min(quote.len()) } else { off + 8 };
        quote[..qlen].copy_from_slice(&p[..qlen]);
        let Slot::Icmp(f) = &self.slots[slot] else {
            return;
        };
        let path = f.path;
        let to = match ip.dst_ip() {
            IpAddr::V4(d) => {
                // ICMPv4 echo request -> ICMPv6 echo request on the NAT64
                // path, as it is on the native one (the kernel fills in the
                // checksum and its own identifier).
                if path == Ipv4Path::Nat64 {
                    p[off] = Icmpv6Message::EchoRequest as u8;
                }
                path.upstream(&self.cfg.prefix, SocketAddrV4::new(d, 0))
            }
            IpAddr::V6(d) => SocketAddr::V6(SocketAddrV6::new(d, 0, 0, 0)),
        };
        // Errors are counted (and EMSGSIZE answered) by send_upstream.
        let _ = self.send_upstream(slot, (ip, &quote[..qlen]), &p[off..end], &to);
    }

    pub(super) fn on_icmp(&mut self, slot: usize, ev: &Event) {
        if ev.is_error() {
            self.drain_errors(slot, None);
        }
        let mut out = std::mem::take(&mut self.txbuf);
        for _ in 0..1024 {
            let Slot::Icmp(f) = &self.slots[slot] else {
                break;
            };
            let (fd, id, path, v6) = (f.sock.as_raw_fd(), f.id, f.path, f.v6);
            let h = if v6 { 40 } else { 20 };
            match sys::recv_from(fd, &mut out[h..h + 65515]) {
                Ok((n, from, fields)) => {
                    self.icmp.touch(MapKey { v6, id }, self.now);
                    Counters::inc(&self.sh.counters.up_rx_packets);
                    Counters::add(&self.sh.counters.up_rx_bytes, n as u64);
                    let hop = Hop::from_ipv6(fields.hop_limit, fields.tclass);
                    // An IPv6 app's replies come from any IPv6 source.
                    let src = match (v6, from) {
                        (true, Some(SocketAddr::V6(a))) => Some(IpAddr::V6(*a.ip())),
                        (true, _) => None,
                        (false, from) => from
                            .and_then(|a| path.app_addr(&self.cfg.prefix, &a))
                            .map(|a| IpAddr::V4(*a.ip())),
                    };
                    let Some(src) = src else {
                        Counters::inc(&self.sh.counters.drop_foreign_source);
                        continue;
                    };
                    let reply = match (v6, path) {
                        (true, _) | (false, Ipv4Path::Nat64) => Icmpv6Message::EchoReply as u8,
                        (false, Ipv4Path::Native) => Icmpv4Message::EchoReply as u8,
                    };
                    if n < 8 || out[h] != reply {
                        Counters::inc(&self.sh.counters.drop_icmp_type);
                        continue;
                    }
                    out[h + 1] = 0;
                    out[h + 4..h + 6].copy_from_slice(&id.to_be_bytes());
                    let len = match src {
                        IpAddr::V6(s) => {
                            packet::emit_icmp6_hop(&mut out, s, self.cfg.clat_v6, n, hop)
                        }
                        IpAddr::V4(s) => {
                            out[h] = Icmpv4Message::EchoReply as u8;
                            let ip_id = self.next_ip_id();
                            let to = self.cfg.clat_v4;
                            packet::emit_icmp4_hop(&mut out, s, to, n, ip_id, hop)
                        }
                    };
                    if tun_write(&self.tun, &self.sh.counters, &out[..len]) && src.is_ipv4() {
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
