//! What UDP mappings and ICMP echo mappings share: a protected datagram
//! socket each, opened and filed the same way (one path, so that limits
//! and counters cannot drift apart), sent on with the app datagram's own
//! TTL, TOS and DF (RFC 7915 section 4.1), expired and closed the same
//! way, and ICMP errors from its error queue turned into ICMPv4 errors
//! for the app ([`crate::path_error`]). The socket is IPv6 towards the
//! NAT64 or IPv4 on the native path ([`crate::ipv4_path`]), chosen when
//! the mapping is created; everything else is the same code for both.
//! The mapping decisions themselves live in [`crate::datagram_mappings`].

use super::icmp_echo::IcmpFlow;
use super::udp::UdpFlow;
use super::{tun_write, Loop, Slot};
use crate::datagram_mappings::{DatagramMappings, Expiry, MapKey};
use crate::flow_events::{FlowEndReason, FlowProto, Tally};
use crate::ipv4_path::Ipv4Path;
use crate::packet::{self, Ip4, Ip6, IpHdr};
use crate::path_error::{self, AppDatagram, AppSide, AppSide6, PathError, IPV4_DUMMY};
use crate::stats::Counters;
use crate::sys::{self, ErrOrigin, SendFields};
use crate::tcp_flows::Unreachable;
use crate::timers::TimerKey;
use clat_xlat::wire::{Icmpv4Message, Icmpv6Message};
use mio::net::UdpSocket;
use mio::Interest;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, RawFd};
use std::time::Instant;

/// The two kinds of datagram mapping, for [`Loop::new_datagram_flow`].
#[derive(Clone, Copy)]
pub(super) enum Datagram {
    /// UDP, keyed by the app's source port.
    Udp,
    /// ICMP echo through a ping socket, keyed by the echo identifier.
    Echo,
}

impl Datagram {
    fn timer(self, key: MapKey) -> TimerKey {
        match self {
            Datagram::Udp => TimerKey::Udp(key),
            Datagram::Echo => TimerKey::Icmp(key),
        }
    }
}

/// The IP fields an app datagram is sent upstream with: its own TTL as
/// the hop limit (or TTL), TOS as the traffic class (or TOS) and DF as
/// IPV6_DONTFRAG (RFC 7915 section 4.1; like clatd, the CLAT does not
/// decrement the TTL). On IPv4 sockets DF is the socket's
/// ([`sys::set_ipv4_dont_frag`], set in `Loop::send_upstream`). A carried
/// IPv6 datagram keeps its hop limit and traffic class, and is never
/// fragmented on the way (IPv6 routers do not fragment, RFC 8200 section
/// 5): one larger than the path MTU fails with EMSGSIZE and the app gets
/// Packet Too Big.
pub(super) fn send_fields(ip: &IpHdr) -> SendFields {
    match ip {
        IpHdr::V4(i) => SendFields {
            hop_limit: Some(i.ttl),
            tclass: Some(i.tos),
            dont_frag: i.dont_frag,
        },
        IpHdr::V6(i) => SendFields {
            hop_limit: Some(i.hop_limit),
            tclass: Some(i.traffic_class),
            dont_frag: true,
        },
    }
}

impl Loop {
    fn mappings(&mut self, kind: Datagram) -> &mut DatagramMappings<usize, MapKey> {
        match kind {
            Datagram::Udp => &mut self.udp,
            Datagram::Echo => &mut self.icmp,
        }
    }

    /// A protected, non-blocking datagram socket for upstream use, with
    /// IPV6_RECVERR or IP_RECVERR (`recverr`) so ICMP errors reach us.
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
        } else {
            if recverr {
                sys::setsockopt_int(s.as_raw_fd(), libc::SOL_IP, libc::IP_RECVERR, 1)?;
            }
            if proto == Protocol::UDP {
                s.bind(&SockAddr::from(SocketAddr::from((
                    Ipv4Addr::UNSPECIFIED,
                    0,
                ))))?;
            }
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
        key: MapKey,
        ip: &IpHdr,
        p: &[u8],
    ) -> Option<usize> {
        let (live, cap) = match kind {
            Datagram::Udp => (self.udp.len(), self.cfg.udp_flow_cap()),
            Datagram::Echo => (self.icmp.len(), self.cfg.icmp_flow_cap()),
        };
        let datagram_flows = self.udp.len() + self.icmp.len();
        let room = live < cap && datagram_flows < self.cfg.datagram_flow_room();
        if room && self.flows() >= self.cfg.max_flows && self.tcp.evict_one(&self.sh.counters) {
            // A table full of TCP flows that never completed (a SYN flood)
            // gives one up, as it would for a new SYN.
            self.run_tcp_actions();
        }
        if !room || self.flows() >= self.cfg.max_flows {
            Counters::inc(&self.c().drop_flow_limit);
            self.refuse_ip(ip, p, Unreachable::Prohibited);
            return None;
        }
        // An IPv6 app datagram goes to its destination over IPv6; an IPv4
        // one takes the current IPv4 path (its `path` is kept either way,
        // and only IPv4 mappings are reset when the IPv4 path goes).
        let path = self.cfg.ipv4_path;
        let (family, icmp) = match (key.v6, path) {
            (true, _) | (false, Ipv4Path::Nat64) => (Domain::IPV6, Protocol::ICMPV6),
            (false, Ipv4Path::Native) => (Domain::IPV4, Protocol::ICMPV4),
        };
        let (proto, what) = match kind {
            Datagram::Udp => (Protocol::UDP, "upstream UDP socket"),
            Datagram::Echo => (icmp, "ping socket (check net.ipv4.ping_group_range)"),
        };
        let open = |l: &Self| {
            l.upstream_dgram(family, proto, true)
                .and_then(|s| recv_hop_fields(s.as_raw_fd(), family == Domain::IPV6).map(|()| s))
                .inspect(|s| {
                    if proto == Protocol::UDP {
                        // Many datagrams of one sender per read where the
                        // kernel has UDP GRO (5.0); without it, recvmmsg
                        // alone (udp_batch).
                        if let Err(e) = sys::enable_udp_gro(s.as_raw_fd()) {
                            log::trace!("UDP_GRO: {e}");
                        }
                    }
                })
        };
        let mut opened = open(self);
        if let Err(e) = &opened {
            // Out of descriptors, most held by TCP connects that never
            // completed: one gives its descriptor up, as for a new SYN.
            if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
                && self.tcp.evict_for_descriptor(None, &self.sh.counters)
            {
                self.run_tcp_actions();
                opened = open(self);
            }
        }
        let mut sock = match opened {
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
        let tally = self.new_tally(key.v6);
        if let (Some(t), IpHdr::V4(i)) = (&tally, ip) {
            // The destination the app addressed: a UDP port, none for echo.
            let off = i.ihl;
            let dp = match kind {
                Datagram::Udp => p
                    .get(off + 2..off + 4)
                    .map_or(0, |b| u16::from_be_bytes([b[0], b[1]])),
                Datagram::Echo => 0,
            };
            let proto = match kind {
                Datagram::Udp => FlowProto::Udp,
                Datagram::Echo => FlowProto::Icmp,
            };
            self.emit_start(t.id, proto, key.id, SocketAddrV4::new(i.dst, dp), path);
        }
        let c = &self.sh.counters;
        let (flow, gauge, total) = match kind {
            Datagram::Udp => (
                Slot::Udp(UdpFlow {
                    sp: key.id,
                    v6: key.v6,
                    sock,
                    path,
                    df: None,
                    gso_max: u16::MAX,
                    tally,
                }),
                &c.flows_udp,
                &c.flows_udp_total,
            ),
            Datagram::Echo => (
                Slot::Icmp(IcmpFlow {
                    id: key.id,
                    v6: key.v6,
                    sock,
                    path,
                    sticky: None,
                    df: None,
                    tally,
                }),
                &c.flows_icmp,
                &c.flows_icmp_total,
            ),
        };
        Counters::inc(gauge);
        Counters::inc(total);
        if key.v6 {
            Counters::inc(&c.flows_ipv6_total);
        } else if path == Ipv4Path::Native {
            Counters::inc(&c.flows_native_total);
        }
        self.slots[slot] = flow;
        let now = self.now;
        let at = self.mappings(kind).insert(key, slot, now);
        self.timers.insert(at, kind.timer(key));
        Some(slot)
    }

    /// The idle deadline `at` of `kind`'s mapping `key` fired: re-armed or
    /// expired as [`DatagramMappings::on_deadline`] decides.
    pub(super) fn datagram_timer(&mut self, kind: Datagram, key: MapKey, at: Instant) {
        let now = self.now;
        match self.mappings(kind).on_deadline(key, at, now) {
            Expiry::Stale => {}
            Expiry::Rearm(due) => self.timers.insert(due, kind.timer(key)),
            Expiry::Expired(slot, last) => {
                Counters::inc(&self.sh.counters.flows_expired);
                // It ended with its last datagram, not when we noticed.
                self.close_mapping(slot, FlowEndReason::TimedOut, Some(last));
            }
        }
    }

    /// Answers an app datagram sent with TTL 0 with ICMPv4 Time Exceeded
    /// from 192.0.0.8 instead of carrying it. A host never sends TTL 0
    /// (RFC 1122 section 3.2.1.7); a translator that met it would have to
    /// decrement below zero, which RFC 7915 section 4.1 and RFC 1812
    /// section 5.3.1 answer with Time Exceeded, and hop limit 0 is no
    /// packet to put on the IPv6 path. The CLAT has no IPv4 address of its
    /// own, hence the RFC 7600 dummy address.
    pub(super) fn ttl_zero(&mut self, ip: &Ip4, p: &[u8]) {
        if !self.icmp_rate_allows() {
            return;
        }
        let mut out = std::mem::take(&mut self.txbuf);
        let id = self.next_ip_id();
        let msg = (Icmpv4Message::TimeExceeded, 0);
        let n = packet::emit_error_about(&mut out, ip, p, msg, IPV4_DUMMY, id);
        tun_write(&self.tun, &self.sh.counters, &out[..n]);
        Counters::inc(&self.c().icmp_errors_sent);
        self.txbuf = out;
    }

    /// Answers a carried IPv6 datagram sent with hop limit 0, which no host
    /// sends and no packet may carry on (RFC 8200 section 3), as the app's
    /// first hop would: Time Exceeded (RFC 4443 section 3.3) from the
    /// engine's internal address on the TUN.
    pub(super) fn hop_limit_zero(&mut self, ip: &Ip6, p: &[u8]) {
        if !self.icmp_rate_allows() {
            return;
        }
        let mut out = std::mem::take(&mut self.txbuf);
        let msg = (Icmpv6Message::TimeExceeded, 0, 0);
        let n = packet::emit_error6_about(&mut out, ip, p, msg, self.cfg.nat_v6);
        tun_write(&self.tun, &self.sh.counters, &out[..n]);
        Counters::inc(&self.c().icmp_errors_sent);
        self.txbuf = out;
    }

    /// Sends the app datagram's payload `data` to `to` (of the mapping's
    /// family) on the mapping in `slot` with the IP fields of
    /// [`send_fields`]. A datagram with DF that is larger than the path
    /// MTU (EMSGSIZE) is answered with Fragmentation Needed quoting `p`,
    /// the app's datagram. Other errors are counted and returned.
    pub(super) fn send_upstream(
        &mut self,
        slot: usize,
        (ip, p): (&IpHdr, &[u8]),
        data: &[u8],
        to: &SocketAddr,
    ) -> io::Result<()> {
        let fields = self.upstream_fields(ip);
        self.send_upstream_with(slot, p, data, to, fields)
    }

    /// The fields the app datagram `ip` is sent upstream with
    /// ([`send_fields`]), without DONTFRAG for an IPv6 datagram the app
    /// fragmented itself.
    pub(super) fn upstream_fields(&self, ip: &IpHdr) -> SendFields {
        let mut fields = send_fields(ip);
        if self.reassembled6 && matches!(ip, IpHdr::V6(_)) {
            // The app fragmented this datagram itself (its path MTU is
            // smaller than the datagram): DONTFRAG would fail it with
            // EMSGSIZE at every try, and the Packet Too Big would change
            // nothing for an app that already fragments. The upstream
            // socket fragments it as the app did (RFC 8200 section 4.5).
            fields.dont_frag = false;
        }
        fields
    }

    /// Sets an IPv4 mapping socket's DF (`v6` false) to `dont_frag` when it
    /// differs from the last one set. IPv4 has no per-datagram DF
    /// (sys::SendFields): the socket's IP_MTU_DISCOVER, set when the app's
    /// DF changes. Without DF the kernel fragments, so no copy is kept for
    /// a resend.
    pub(super) fn set_socket_df(&mut self, slot: usize, v6: bool, dont_frag: bool) {
        let (fd, df) = match &mut self.slots[slot] {
            Slot::Udp(f) => (f.sock.as_raw_fd(), &mut f.df),
            Slot::Icmp(f) => (f.sock.as_raw_fd(), &mut f.df),
            _ => return,
        };
        if !v6 && *df != Some(dont_frag) {
            *df = sys::set_ipv4_dont_frag(fd, dont_frag)
                .map_err(|e| log::debug!("IP_MTU_DISCOVER: {e}"))
                .ok()
                .map(|()| dont_frag);
        }
    }

    /// [`Loop::send_upstream`] with the fields already chosen
    /// ([`Loop::upstream_fields`]); `p` is the app datagram to quote.
    pub(super) fn send_upstream_with(
        &mut self,
        slot: usize,
        p: &[u8],
        data: &[u8],
        to: &SocketAddr,
        mut fields: SendFields,
    ) -> io::Result<()> {
        let dont_frag = fields.dont_frag;
        let v6 = to.is_ipv6();
        let fd = match &mut self.slots[slot] {
            Slot::Udp(f) => f.sock.as_raw_fd(),
            Slot::Icmp(f) => {
                // Ping sockets before Linux 5.18 ignore the hop limit and
                // traffic class as ancillary data (sys::send_to): set as
                // socket options, when they change, so that every kernel
                // sends the app's TTL and TOS.
                let want = (fields.hop_limit.unwrap_or(64), fields.tclass.unwrap_or(0));
                if f.sticky != Some(want) {
                    let fd = f.sock.as_raw_fd();
                    f.sticky = sys::set_unicast_hops_and_tclass(fd, v6, want.0, want.1)
                        .map_err(|e| log::debug!("ping socket hop limit and class: {e}"))
                        .ok()
                        .map(|()| want);
                }
                fields.hop_limit = None;
                fields.tclass = None;
                f.sock.as_raw_fd()
            }
            _ => return Ok(()),
        };
        self.set_socket_df(slot, v6, dont_frag);
        let mut sent = sys::send_to(fd, data, to, &fields);
        if sent.as_ref().is_err_and(is_pending_icmp_error) {
            // An ICMP error about an earlier datagram (to any destination:
            // one socket serves them all) left sk_err set, and Linux
            // returns it on the next send even with IP_RECVERR/
            // IPV6_RECVERR (sock_error() in the send path), clearing it:
            // this datagram was not sent. The queued error goes to the app
            // about its own datagram, then this one is sent again once.
            self.drain_errors(slot, None);
            sent = sys::send_to(fd, data, to, &fields);
        }
        match sent {
            Ok(n) => {
                Counters::inc(&self.sh.counters.up_tx_packets);
                Counters::add(&self.sh.counters.up_tx_bytes, n as u64);
                Ok(())
            }
            Err(e) => {
                log::debug!("send to {to}: {e}");
                Counters::inc(&self.sh.counters.drop_upstream_send);
                if e.raw_os_error() == Some(libc::EMSGSIZE) {
                    self.drain_errors(slot, Some(p));
                }
                Err(e)
            }
        }
    }

    /// Turns queued errors of a UDP or ping socket into ICMPv4 errors
    /// towards the app ([`path_error::to_app`]): ICMPv6 errors (NAT64
    /// path) or ICMPv4 errors (native path) from the path, and our own
    /// EMSGSIZE for a DF datagram over the path MTU, as Packet Too Big or
    /// Fragmentation Needed with that MTU. `sent` is the app datagram being sent
    /// when the caller just got EMSGSIZE: quoted as it is. Returns whether
    /// such a local EMSGSIZE error was among them (`udp_batch`: how a
    /// message's EMSGSIZE that `sendmmsg` dropped is known).
    pub(super) fn drain_errors(&mut self, slot: usize, sent: Option<&[u8]>) -> bool {
        let (fd, app, app_v6) = match &self.slots[slot] {
            Slot::Udp(f) => (
                f.sock.as_raw_fd(),
                AppDatagram::Udp { app_port: f.sp },
                f.v6,
            ),
            Slot::Icmp(f) => (f.sock.as_raw_fd(), AppDatagram::Echo { id: f.id }, f.v6),
            _ => return false,
        };
        let side6 = AppSide6 {
            clat_v6: self.cfg.clat_v6,
            nat_v6: self.cfg.nat_v6,
            mtu: self.cfg.mtu,
        };
        let side = AppSide {
            prefix: self.cfg.prefix,
            clat_v4: self.cfg.clat_v4,
            mtu4: self.cfg.mtu,
        };
        // The ICMPv6 error quotes at most 1232 bytes of payload.
        let mut data = [0u8; 1280];
        let mut local_too_big = false;
        for _ in 0..64 {
            let err = match sys::recv_err(fd, &mut data) {
                Ok(Some(e)) => e,
                _ => return local_too_big,
            };
            let Some(dest) = err.dest else { continue };
            let from_path = matches!(err.origin, ErrOrigin::Icmp4 | ErrOrigin::Icmp6);
            let (typ, code, original) = if from_path {
                Counters::inc(&self.c().icmp_errors_received);
                if let (AppDatagram::Udp { app_port }, SocketAddr::V6(dest), false) =
                    (app, dest, app_v6)
                {
                    let quoted = &data[..err.len.min(data.len())];
                    if err.typ == path_error::ICMP6_PACKET_TOO_BIG
                        && self.resend_after_too_big(fd, app_port, &dest, quoted, err.info)
                    {
                        continue;
                    }
                }
                (err.typ, err.code, None)
            } else if err.origin == ErrOrigin::Local && err.errno == libc::EMSGSIZE as u32 {
                local_too_big = true;
                let (t, c) = path_error::too_big(&dest);
                (t, c, sent)
            } else {
                continue;
            };
            let ll = err.len.min(data.len());
            let e = PathError {
                icmp_type: typ,
                icmp_code: code,
                info: err.info,
                reporter: if from_path { err.offender } else { None },
                dest,
                payload: &data[..ll],
                payload_len: err.len,
                original,
            };
            let id = self.next_ip_id();
            let mut out = std::mem::take(&mut self.txbuf);
            let made = if app_v6 {
                path_error::to_app6(&e, app, &side6, &mut out)
            } else {
                path_error::to_app(&e, app, &side, id, &mut out)
            };
            if let Some(n) = made {
                tun_write(&self.tun, &self.sh.counters, &out[..n]);
                Counters::inc(&self.c().icmp_errors_sent);
            }
            self.txbuf = out;
        }
        local_too_big
    }

    /// A Packet Too Big (MTU `mtu`) reached UDP mapping `sp`'s socket `fd`
    /// about a datagram to `dest` whose payload starts with `quoted`. When
    /// that is the kept copy of a datagram without DF, it is sent again
    /// (the kernel has learnt the path MTU and fragments it) and true is
    /// returned: the app is not told, its datagram had no DF (RFC 7915
    /// section 4.1: a translator fragments such a datagram to fit).
    fn resend_after_too_big(
        &mut self,
        fd: RawFd,
        sp: u16,
        dest: &SocketAddrV6,
        quoted: &[u8],
        mtu: u32,
    ) -> bool {
        let c = &self.sh.counters;
        if let Some(r) = self.too_big.on_too_big(sp, dest, quoted, mtu, self.now) {
            match sys::send_to(fd, r.payload, &SocketAddr::V6(r.dest), &r.fields) {
                Ok(n) => {
                    Counters::inc(&c.udp_resent_after_too_big);
                    Counters::inc(&c.up_tx_packets);
                    Counters::add(&c.up_tx_bytes, n as u64);
                }
                Err(e) => {
                    log::debug!("send again to {}: {e}", r.dest);
                    Counters::inc(&c.drop_upstream_send);
                }
            }
        }
        self.too_big.is_kept(sp, dest, quoted)
    }

    /// Counts `up` and `down` bytes (whole IPv4 packets) on the mapping in
    /// `slot`, if it is reported.
    pub(super) fn tally_datagram(&mut self, slot: usize, up: usize, down: usize) {
        let t = match &mut self.slots[slot] {
            Slot::Udp(f) => &mut f.tally,
            Slot::Icmp(f) => &mut f.tally,
            _ => return,
        };
        Tally::up(t, up);
        Tally::down(t, down);
    }

    /// Closes the mapping in `slot`, its end reported for `how`, at `at`
    /// (`None`: now).
    pub(super) fn close_mapping(&mut self, slot: usize, how: FlowEndReason, at: Option<Instant>) {
        let (kind, key, tally) = match self.kill_slot(slot) {
            Slot::Udp(f) => (Datagram::Udp, MapKey { v6: f.v6, id: f.sp }, f.tally),
            Slot::Icmp(f) => (Datagram::Echo, MapKey { v6: f.v6, id: f.id }, f.tally),
            _ => return,
        };
        if let Some(t) = tally {
            self.emit_end(&t, how, at);
        }
        if let Some((_, at)) = self.mappings(kind).remove(key) {
            self.timers.remove(at, kind.timer(key));
        }
        if let (Datagram::Udp, false) = (kind, key.v6) {
            if let Some(at) = self.too_big.forget(key.id) {
                self.timers.remove(at, TimerKey::UdpCopy(key.id));
            }
        }
        let c = &self.sh.counters;
        Counters::dec(match kind {
            Datagram::Udp => &c.flows_udp,
            Datagram::Echo => &c.flows_icmp,
        });
    }
}

/// Asks for each received datagram's hop limit and traffic class (RFC
/// 3542 sections 6.3 and 6.5) on an IPv6 socket (`v6`) or, on the native
/// path's IPv4 sockets, its TTL and TOS (IP_RECVTTL, IP_RECVTOS), which
/// become the TTL and TOS of the IPv4 packet to the app (RFC 7915 section
/// 5.1), or the hop limit and traffic class of the IPv6 one.
fn recv_hop_fields(fd: RawFd, v6: bool) -> io::Result<()> {
    match v6 {
        true => {
            sys::setsockopt_int(fd, libc::SOL_IPV6, libc::IPV6_RECVHOPLIMIT, 1)?;
            sys::setsockopt_int(fd, libc::SOL_IPV6, libc::IPV6_RECVTCLASS, 1)
        }
        false => {
            sys::setsockopt_int(fd, libc::SOL_IP, libc::IP_RECVTTL, 1)?;
            sys::setsockopt_int(fd, libc::SOL_IP, libc::IP_RECVTOS, 1)
        }
    }
}

/// Errors that an ICMP error from the path leaves pending on a datagram
/// socket (`sk_err`, reported by its next send), as Linux maps ICMPv4 and
/// ICMPv6 errors to errno (net/ipv4/icmp.c `icmp_err_convert`,
/// net/ipv6/icmp.c `icmpv6_err_convert`): port, host and network
/// unreachable, host unknown or isolated, protocol unreachable, source route
/// failed, prohibited, time exceeded, parameter problem. EMSGSIZE has its
/// own handling (Fragmentation Needed for the datagram being sent).
pub(super) fn is_pending_icmp_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::ECONNREFUSED
                | libc::EHOSTUNREACH
                | libc::ENETUNREACH
                | libc::EHOSTDOWN
                | libc::ENONET
                | libc::ENOPROTOOPT
                | libc::EOPNOTSUPP
                | libc::EACCES
                | libc::EPROTO
        )
    )
}
