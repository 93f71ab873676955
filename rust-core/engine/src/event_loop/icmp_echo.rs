//! ICMP echo: one ping socket per echo identifier, so that the kernel
//! matches the replies to it (the kernel picks the socket's own
//! identifier; replies get the app's back). On the NAT64 path requests and
//! replies are translated ICMPv4 <-> ICMPv6 here; on the native path an
//! AF_INET ping socket carries the ICMPv4 echo as it is. Errors come back
//! through `datagram`.

use super::datagram::Datagram;
use super::{tun_write, Loop, Slot};
use crate::ipv4_path::Ipv4Path;
use crate::packet::{self, checksum, Hop, Ip4};
use crate::stats::Counters;
use crate::sys;
use clat_xlat::wire::{Icmpv4Message, Icmpv6Message};
use mio::event::Event;
use mio::net::UdpSocket;
use std::io;
use std::net::SocketAddrV4;
use std::os::fd::AsRawFd;

/// One echo mapping's socket: the app's echo identifier and its ping
/// socket (when it was used and expires: `Loop::icmp`).
pub(super) struct IcmpFlow {
    pub(super) id: u16,
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

    pub(super) fn icmp_from_app(&mut self, ip: &Ip4, p: &mut [u8]) {
        let ihl = ip.ihl;
        if p.len() < ihl + 8 || !checksum::verify(&p[ihl..], 0) {
            return Counters::inc(&self.c().drop_malformed);
        }
        if p[ihl] != Icmpv4Message::EchoRequest as u8 || p[ihl + 1] != 0 {
            return Counters::inc(&self.c().drop_icmp_type);
        }
        if ip.ttl == 0 {
            return self.ttl_zero(ip, p);
        }
        let id = u16::from_be_bytes([p[ihl + 4], p[ihl + 5]]);
        let slot = match self.icmp.touch(id, self.now) {
            Some(s) => s,
            None => match self.new_datagram_flow(Datagram::Echo, id, ip, p) {
                Some(s) => s,
                None => return,
            },
        };
        // The app's header and 8 bytes, as sent, for a Fragmentation Needed
        // (all an ICMPv4 error quotes, RFC 792).
        let mut quote = [0u8; 60 + 8];
        let qlen = ihl + 8;
        quote[..qlen].copy_from_slice(&p[..qlen]);
        // ICMPv4 echo request -> ICMPv6 echo request on the NAT64 path,
        // as it is on the native one (the kernel fills in the checksum and
        // its own identifier).
        let Slot::Icmp(f) = &self.slots[slot] else {
            return;
        };
        let path = f.path;
        if path == Ipv4Path::Nat64 {
            p[ihl] = Icmpv6Message::EchoRequest as u8;
        }
        let to = path.upstream(&self.cfg.prefix, SocketAddrV4::new(ip.dst, 0));
        // Errors are counted (and EMSGSIZE answered) by send_upstream.
        let _ = self.send_upstream(slot, (ip, &quote[..qlen]), &p[ihl..], &to);
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
            let (fd, id, path) = (f.sock.as_raw_fd(), f.id, f.path);
            match sys::recv_from(fd, &mut out[20..20 + 65515]) {
                Ok((n, from, fields)) => {
                    self.icmp.touch(id, self.now);
                    Counters::inc(&self.sh.counters.up_rx_packets);
                    Counters::add(&self.sh.counters.up_rx_bytes, n as u64);
                    let src = from.and_then(|a| path.app_addr(&self.cfg.prefix, &a));
                    let Some(src) = src.map(|a| *a.ip()) else {
                        Counters::inc(&self.sh.counters.drop_foreign_source);
                        continue;
                    };
                    let reply = match path {
                        Ipv4Path::Nat64 => Icmpv6Message::EchoReply as u8,
                        Ipv4Path::Native => Icmpv4Message::EchoReply as u8,
                    };
                    if n < 8 || out[20] != reply {
                        Counters::inc(&self.sh.counters.drop_icmp_type);
                        continue;
                    }
                    out[20] = Icmpv4Message::EchoReply as u8;
                    out[21] = 0;
                    out[24..26].copy_from_slice(&id.to_be_bytes());
                    let ip_id = self.next_ip_id();
                    let hop = Hop::from_ipv6(fields.hop_limit, fields.tclass);
                    let to = self.cfg.clat_v4;
                    let len = packet::emit_icmp4_hop(&mut out, src, to, n, ip_id, hop);
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
