//! What UDP mappings and ICMP echo mappings share: a protected datagram
//! socket each, opened and filed the same way (one path, so that limits
//! and counters cannot drift apart), closed the same way, and ICMPv6
//! errors from its error queue turned into ICMPv4 errors for the app.

use super::icmp_echo::IcmpFlow;
use super::udp::UdpFlow;
use super::{tun_write, Loop, Slot};
use crate::packet::{self, Ip4, PROTO_ICMP, PROTO_UDP};
use crate::stats::Counters;
use crate::sys;
use crate::timers::TimerKey;
use clat_xlat::wire::{Icmpv4DstUnreachable, Icmpv4Message, Ipv4Repr, UdpRepr};
use mio::net::UdpSocket;
use mio::Interest;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;

/// The two kinds of datagram mapping, for [`Loop::new_datagram_flow`].
#[derive(Clone, Copy)]
pub(super) enum Datagram {
    /// UDP, keyed by the app's source port.
    Udp,
    /// ICMP echo through a ping socket, keyed by the echo identifier.
    Echo,
}

impl Loop {
    /// A protected, non-blocking datagram socket for upstream use, with
    /// IPV6_RECVERR so ICMPv6 errors reach us.
    pub(super) fn upstream_dgram(
        &self,
        family: Domain,
        proto: Protocol,
        recverr: bool,
    ) -> io::Result<UdpSocket> {
        let s = Socket::new(family, Type::DGRAM.nonblocking().cloexec(), Some(proto))?;
        self.protector.protect(s.as_raw_fd())?;
        if family == Domain::IPV6 {
            if recverr {
                sys::setsockopt_int(s.as_raw_fd(), libc::SOL_IPV6, libc::IPV6_RECVERR, 1)?;
            }
            if proto == Protocol::UDP {
                s.bind(&SockAddr::from(SocketAddr::from((
                    Ipv6Addr::UNSPECIFIED,
                    0,
                ))))?;
            }
        } else if proto == Protocol::UDP {
            s.bind(&SockAddr::from(SocketAddr::from((
                Ipv4Addr::UNSPECIFIED,
                0,
            ))))?;
        }
        Ok(UdpSocket::from_std(std::net::UdpSocket::from(s)))
    }

    /// Opens a mapping of `kind` for `key` (app port or echo id) on behalf
    /// of the app packet `ip`/`p`: a protected socket registered with the
    /// poll, its idle timer, its map entry and the flow counters. None when
    /// the packet was refused or dropped instead (counted).
    pub(super) fn new_datagram_flow(
        &mut self,
        kind: Datagram,
        key: u16,
        ip: &Ip4,
        p: &[u8],
    ) -> Option<usize> {
        let (live, cap) = match kind {
            Datagram::Udp => (self.udp.len(), self.cfg.udp_flow_cap()),
            Datagram::Echo => (self.icmp.len(), self.cfg.icmp_flow_cap()),
        };
        if self.flows() >= self.cfg.max_flows || live >= cap {
            Counters::inc(&self.c().drop_flow_limit);
            self.refuse(ip, p, Icmpv4DstUnreachable::CommProhibited);
            return None;
        }
        let (proto, what, idle) = match kind {
            Datagram::Udp => (Protocol::UDP, "upstream UDP socket", self.cfg.udp_timeout),
            Datagram::Echo => (
                Protocol::ICMPV6,
                "ping socket (check net.ipv4.ping_group_range)",
                self.cfg.icmp_timeout,
            ),
        };
        let mut sock = match self.upstream_dgram(Domain::IPV6, proto, true) {
            Ok(s) => s,
            Err(e) => {
                self.socket_warn(format_args!("{what}: {e}"));
                Counters::inc(&self.c().drop_upstream_socket);
                return None;
            }
        };
        let Some(slot) = self.register_slot(&mut sock, Interest::READABLE) else {
            Counters::inc(&self.c().drop_upstream_socket);
            return None;
        };
        let (last, timer_at) = (self.now, self.now + idle);
        let c = &self.sh.counters;
        let (flow, timer, map, gauge, total) = match kind {
            Datagram::Udp => (
                Slot::Udp(UdpFlow {
                    sp: key,
                    sock,
                    last,
                    timer_at,
                }),
                TimerKey::Udp(key),
                &mut self.udp,
                &c.flows_udp,
                &c.flows_udp_total,
            ),
            Datagram::Echo => (
                Slot::Icmp(IcmpFlow {
                    id: key,
                    sock,
                    last,
                    timer_at,
                }),
                TimerKey::Icmp(key),
                &mut self.icmp,
                &c.flows_icmp,
                &c.flows_icmp_total,
            ),
        };
        self.slots[slot] = flow;
        self.timers.insert(timer_at, timer);
        map.insert(key, slot);
        Counters::inc(gauge);
        Counters::inc(total);
        Some(slot)
    }
    /// Turns queued ICMPv6 errors of a UDP or ping socket into ICMPv4
    /// errors towards the app, quoting a reconstructed original packet.
    pub(super) fn drain_errors(&mut self, slot: usize) {
        let (fd, app_port, is_udp) = match &self.slots[slot] {
            Slot::Udp(f) => (f.sock.as_raw_fd(), f.sp, true),
            Slot::Icmp(f) => (f.sock.as_raw_fd(), f.id, false),
            _ => return,
        };
        let mut data = [0u8; 64];
        for _ in 0..64 {
            let err = match sys::recv_err(fd, &mut data) {
                Ok(Some(e)) => e,
                _ => return,
            };
            Counters::inc(&self.c().icmp6_errors_received);
            if !err.icmp6 {
                continue;
            }
            let Some(dest) = err.dest else { continue };
            let Some(d4) = packet::extract(&self.cfg.prefix, dest.ip()) else {
                continue;
            };
            let src = err
                .offender
                .and_then(|o| packet::extract(&self.cfg.prefix, &o))
                .unwrap_or(d4);
            let ll = err.len.min(data.len());
            // The original packet, as the app sent it: IPv4 header + 8 bytes.
            let mut q = [0u8; 28];
            let id = self.next_ip_id();
            let h = Ipv4Repr::HEADER_LEN;
            if is_udp {
                let udp = UdpRepr {
                    src_port: app_port,
                    dst_port: dest.port(),
                };
                let n = udp.emit_quoted(&mut q[h..], err.len);
                Ipv4Repr::new(self.cfg.clat_v4, d4, PROTO_UDP, (n + err.len) as u16, id)
                    .emit(&mut q);
            } else {
                let len = err.len.max(8) as u16;
                Ipv4Repr::new(self.cfg.clat_v4, d4, PROTO_ICMP, len, id).emit(&mut q);
                q[h] = Icmpv4Message::EchoRequest as u8;
                q[h + 4..h + 6].copy_from_slice(&app_port.to_be_bytes());
                if ll >= 8 {
                    q[h + 6..h + 8].copy_from_slice(&data[6..8]);
                }
            }
            // RFC 7915 section 5.2, as a translator on the path would have
            // done it (clat-xlat's mapping: errors it drops are not passed on).
            let mut out = std::mem::take(&mut self.txbuf);
            let made = clat_xlat::icmp6_error_to_icmp4(
                err.typ,
                err.code,
                err.info,
                &q,
                src,
                self.cfg.mtu,
                &mut out,
            );
            if let Ok(n) = made {
                tun_write(&self.tun, &self.sh.counters, &out[..n]);
                Counters::inc(&self.c().icmp_errors_sent);
            }
            self.txbuf = out;
        }
    }

    pub(super) fn close_mapping(&mut self, slot: usize) {
        match self.kill_slot(slot) {
            Slot::Udp(f) => {
                self.udp.remove(&f.sp);
                self.timers.remove(f.timer_at, TimerKey::Udp(f.sp));
                Counters::dec(&self.sh.counters.flows_udp);
            }
            Slot::Icmp(f) => {
                self.icmp.remove(&f.id);
                self.timers.remove(f.timer_at, TimerKey::Icmp(f.id));
                Counters::dec(&self.sh.counters.flows_icmp);
            }
            _ => {}
        }
    }
}
