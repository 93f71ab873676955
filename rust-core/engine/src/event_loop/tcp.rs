//! TCP flows, the I/O half: app segments are NATed onto the engine's
//! listener and back (nat_tcp), the upstream connect (IPv6 to the NAT64,
//! or IPv4 on the native path: the flow's [`Ipv4Path`]) starts on the
//! app's SYN, and each accepted connection is relayed to its upstream
//! socket (tcp_relay). Every decision (held SYN, answers to a failed
//! connect, fast close, timers, eviction) is the core's
//! ([`crate::tcp_flows`]); here its actions are carried out and the
//! sockets' events reported to it.

use super::{tok, tun_write, Loop, Slot};
use crate::flow_events::FlowProto;
use crate::ipv4_path::Ipv4Path;
use crate::nat_tcp;
use crate::packet::{self, IpHdr, IpView, PROTO_TCP};
use crate::stats::Counters;
use crate::tcp_flows::{
    Action, AppVerdict, FlowState, HeldSyn, ListenerVerdict, SegInfo, SynAnswer, Unreachable,
    HELD_SYN_MAX,
};
use crate::tcp_relay::{self, set_rst_on_close, Moved, Outcome, Relay};
use clat_xlat::wire::{TcpFlags, TcpRepr, TcpSegment, TcpSeqNumber};
use mio::event::Event;
use mio::net::TcpStream;
use mio::Interest;
use socket2::{Domain, Protocol, SockAddr, SockRef, Socket, TcpKeepalive, Type};
use std::io;
use std::net::{IpAddr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, OwnedFd};

/// A flow's upstream socket from the app's SYN until accept() pairs it
/// with the local one in a [`Relay`] (same slot, registered as side 1).
pub(super) struct Upstream {
    pub np: u16,
    pub sock: TcpStream,
    /// An event before accept() reported the server's FIN or an error:
    /// the relay must read to the end (its short-read rule would wait for
    /// an event that was delivered here).
    pub closing: bool,
    /// An event before accept() reported urgent data (EPOLLPRI).
    pub urgent: bool,
    /// An event before accept() reported bytes to read (EPOLLIN): the
    /// relay starts reading this side at once; else it waits for the
    /// side's next event instead of probing an empty socket.
    pub readable: bool,
    /// The upstream is IPv6 (to the NAT64, or a carried IPv6 flow): the
    /// family [`tcp_relay::mirror_traffic_class`] needs, known here
    /// without a getsockname.
    pub v6: bool,
    /// The TOS byte of the app's SYN, for
    /// [`tcp_relay::mirror_traffic_class`].
    pub syn_tos: u8,
}

/// The reserve descriptor of [`Loop::refuse_backlogged`].
pub(super) fn open_spare_fd() -> Option<OwnedFd> {
    std::fs::File::open("/dev/null").ok().map(OwnedFd::from)
}

impl Loop {
    /// A TCP segment from an app, of either family.
    pub(super) fn tcp_from_app(&mut self, ip: &IpHdr, p: &mut [u8]) {
        let off = ip.upper_offset();
        let Ok(seg) = TcpSegment::parse(&p[off..]) else {
            return Counters::inc(&self.c().drop_malformed);
        };
        let (sp, dp) = (seg.src_port, seg.dst_port);
        let dst = ip.dst_ip();
        if dst == IpAddr::V4(self.cfg.dns_v4) && dp != 53 {
            Counters::inc(&self.c().drop_internal_dst);
            return self.refuse_tcp(ip, p);
        }
        let full = self.flows() >= self.cfg.max_flows;
        let verdict = self.tcp.on_app_segment(
            self.now,
            (sp, dst, dp),
            SegInfo::from(&seg),
            p,
            off,
            seg.header_len,
            full,
            &self.sh.counters,
        );
        match verdict {
            AppVerdict::Forward(np) => {
                if seg.flags.intersects(TcpFlags::URG) {
                    self.app_urgent(np);
                }
                self.forward_to_listener(ip, p, np)
            }
            AppVerdict::Consumed | AppVerdict::Drop => {}
            AppVerdict::Refuse => self.refuse_tcp(ip, p),
            AppVerdict::FinCandidate {
                np,
                slot,
                app_bytes,
            } => {
                if self.relay_drained(slot, app_bytes) {
                    self.tcp.fast_close(np, &self.sh.counters);
                    let ts = packet::tcp_timestamps(&p[off..]);
                    self.final_ack(&seg, ts, dst, dp, sp);
                    // Upstream has sent its FIN and has nothing left from
                    // the app: dropping it closes it in order.
                    self.close_relay(slot, (false, false), None);
                } else {
                    self.forward_to_listener(ip, p, np);
                }
            }
            AppVerdict::AnswerFin => {
                let ts = packet::tcp_timestamps(&p[off..]);
                self.final_ack(&seg, ts, dst, dp, sp);
            }
        }
        self.run_tcp_actions();
    }

    /// Refuses a TCP segment (a RST, counted) in its family.
    fn refuse_tcp(&mut self, ip: &IpHdr, p: &[u8]) {
        self.refuse_ip(ip, p, Unreachable::Prohibited);
    }

    /// The app sent a segment with URG on flow `np`: its relay looks for
    /// the urgent mark on the app side from now on (tcp_relay's module
    /// doc). Seen here, before the kernel has the segment, so the relay
    /// cannot read past the mark before it knows.
    fn app_urgent(&mut self, np: u16) {
        let Some(f) = self.tcp.get(np) else { return };
        if f.state != FlowState::Established {
            return;
        }
        if let Some(Slot::Relay(r)) = f.slot.and_then(|s| self.slots.get_mut(s)) {
            r.app.urgent = true;
        }
    }

    /// The app packet `p` onto the listener as flow `np`, with the
    /// virtio-net header it came with when it kept a partial checksum
    /// (`rx_offload`, [`crate::tun_io`]).
    fn forward_to_listener(&mut self, ip: &IpHdr, p: &mut [u8], np: u16) {
        let (clat, nat, lport) = self.tun_side(ip.dst_ip());
        let hdr = self.rx_offload;
        let off = ip.upper_offset();
        nat_tcp::rewrite_with(p, off, (nat, np), (clat, lport), hdr.is_some());
        self.tun.write(&self.sh.counters, hdr.as_ref(), p);
    }

    /// Whether the relay in `slot` can be fast-closed (see nat_tcp's module
    /// doc): our FIN went to the app, no byte of the app waits to go
    /// upstream, and every one of its `app_bytes` bytes arrived and was
    /// read. If so, its local socket is set to close with a RST (which the
    /// core keeps from the app).
    ///
    /// "Arrived and read" is the relay's own count of the bytes it read
    /// from the app side (`Relay::app_taken`): it cannot have read more
    /// than arrived, so equal to `app_bytes` means both, with no system
    /// call (it replaces asking the socket: TCP_INFO's bytes received and
    /// a peek for unread ones); unequal, some byte is unread or missing.
    fn relay_drained(&self, slot: usize, app_bytes: u32) -> bool {
        let Some(Slot::Relay(r)) = self.slots.get(slot) else {
            return false;
        };
        if !r.app_drained(app_bytes) {
            return false;
        }
        set_rst_on_close(&r.app.sock);
        true
    }

    /// Executes what the TCP flow core decided.
    pub(super) fn run_tcp_actions(&mut self) {
        while let Some(a) = self.tcp.poll_action() {
            match a {
                Action::Connect {
                    np,
                    dst,
                    dp,
                    tos,
                    path,
                } => self.open_upstream(np, (dst, dp), tos, path),
                Action::InjectSyn { np, syn } => {
                    let mut b = [0u8; HELD_SYN_MAX];
                    let n = syn.bytes().len();
                    b[..n].copy_from_slice(syn.bytes());
                    let v6 = b[0] >> 4 == 6;
                    let (clat, nat, lport) = self.tun_side(self.family_addr(v6));
                    nat_tcp::rewrite(&mut b[..n], syn.hdr_len as usize, nat, np, clat, lport);
                    tun_write(&self.tun, &self.sh.counters, &b[..n]);
                }
                Action::AnswerSyn { syn, answer } => self.answer_syn(&syn, answer),
                Action::CloseSlot {
                    slot,
                    rst_app,
                    rst_up,
                } => self.drop_slot(slot, rst_app, rst_up),
                Action::AbortListener { np, seq, v6 } => {
                    let (clat, nat, lport) = self.tun_side(self.family_addr(v6));
                    let rst = TcpRepr {
                        src_port: np,
                        dst_port: lport,
                        seq,
                        ack: TcpSeqNumber(0),
                        flags: TcpFlags::RST,
                        window: 0,
                        timestamps: None,
                    };
                    let mut out = std::mem::take(&mut self.txbuf);
                    if let Some(n) = packet::emit_tcp(&mut out, nat, clat, &rst) {
                        tun_write(&self.tun, &self.sh.counters, &out[..n]);
                    }
                    self.txbuf = out;
                }
                Action::Started {
                    id,
                    sp,
                    dst,
                    dp,
                    path,
                } => {
                    let dst = SocketAddrV4::new(dst, dp);
                    self.emit_start(id, FlowProto::Tcp, sp, dst, path);
                }
                Action::Ended { tally, how, at } => self.emit_end(&tally, how, at),
                Action::ResetApp {
                    dst,
                    dp,
                    sp,
                    seq,
                    ack,
                } => {
                    let (clat, _, _) = self.tun_side(dst);
                    let rst = TcpRepr {
                        src_port: dp,
                        dst_port: sp,
                        seq,
                        ack,
                        flags: TcpFlags::RST | TcpFlags::ACK,
                        window: 0,
                        timestamps: None,
                    };
                    let mut out = std::mem::take(&mut self.txbuf);
                    if let Some(n) = packet::emit_tcp(&mut out, dst, clat, &rst) {
                        Counters::inc(&self.c().tcp_rst_sent);
                        tun_write(&self.tun, &self.sh.counters, &out[..n]);
                    }
                    self.txbuf = out;
                }
                Action::Keepalive { slot, interval } => {
                    if let Some(Slot::Relay(r)) = self.slots.get(slot) {
                        let ka = TcpKeepalive::new()
                            .with_time(interval)
                            .with_interval(interval);
                        if let Err(e) = SockRef::from(&r.up.sock).set_tcp_keepalive(&ka) {
                            log::debug!("upstream keepalive for nat port {}: {e}", r.np);
                        }
                    }
                }
            }
        }
    }

    /// Starts flow `np`'s upstream connect to `dst` (an IPv4 one on `path`,
    /// through the prefix or natively, the DNS relay's address meaning the
    /// preferred resolver; an IPv6 one to itself), marked with the DSCP of
    /// the app's SYN (`tos`).
    fn open_upstream(&mut self, np: u16, (dst, dp): (IpAddr, u16), tos: u8, path: Ipv4Path) {
        let target = match dst {
            IpAddr::V6(d) => Some(SocketAddr::V6(SocketAddrV6::new(d, dp, 0, 0))),
            IpAddr::V4(d) if d == self.cfg.dns_v4 => self
                .cfg
                .upstream_dns
                .get(self.dns_preferred_index())
                .copied(),
            IpAddr::V4(d) => Some(path.upstream(&self.cfg.prefix, SocketAddrV4::new(d, dp))),
        };
        let Some(target) = target else {
            Counters::inc(&self.c().drop_no_dns_upstream);
            return self
                .tcp
                .upstream_failed(np, Some(libc::ECONNREFUSED), &self.sh.counters);
        };
        let mut opened = self.connect_tcp(target, Some(tos));
        if let Err(e) = &opened {
            // Out of descriptors (pending connects hold one each): a flow
            // that never completed gives its own up, as for a full table.
            if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
                && self.tcp.evict_for_descriptor(Some(np), &self.sh.counters)
            {
                self.run_tcp_actions();
                opened = self.connect_tcp(target, Some(tos));
            }
        }
        let mut sock = match opened {
            Ok(s) => s,
            Err(e) => {
                log::debug!("upstream for nat port {np} failed at once: {e}");
                return self
                    .tcp
                    .upstream_failed(np, e.raw_os_error(), &self.sh.counters);
            }
        };
        let slot = self.alloc_slot(Slot::Free);
        let rw = Interest::READABLE | Interest::WRITABLE | Interest::PRIORITY;
        if self
            .poll
            .registry()
            .register(&mut sock, tok(slot, 1), rw)
            .is_err()
        {
            self.slots[slot] = Slot::Dead;
            self.dead.push(slot);
            return self.tcp.upstream_failed(np, None, &self.sh.counters);
        }
        self.slots[slot] = Slot::Upstream(Box::new(Upstream {
            np,
            sock,
            closing: false,
            urgent: false,
            readable: false,
            v6: target.is_ipv6(),
            syn_tos: tos,
        }));
        self.tcp.upstream_opened(np, slot);
    }

    /// Answers the app's held SYN: RST+ACK or an ICMP error of its family
    /// quoting it (counted by the core).
    fn answer_syn(&mut self, syn: &HeldSyn, answer: SynAnswer) {
        let b = syn.bytes();
        let mut out = std::mem::take(&mut self.txbuf);
        let n = if b[0] >> 4 == 6 {
            match (packet::parse_ip6(b), answer) {
                (Ok(ip), SynAnswer::Rst) => packet::emit_rst_for(&mut out, &ip, &b[ip.hdr_len..]),
                (Ok(ip), SynAnswer::Unreachable(why)) => {
                    Some(packet::emit_unreachable6(&mut out, &ip, b, why.icmpv6()))
                }
                (Err(_), _) => None,
            }
        } else {
            match (packet::parse_ip4(b), answer) {
                (Ok(ip), SynAnswer::Rst) => packet::emit_rst_for(&mut out, &ip, &b[ip.ihl..]),
                (Ok(ip), SynAnswer::Unreachable(why)) => {
                    let id = self.next_ip_id();
                    Some(packet::emit_unreachable(&mut out, &ip, b, why.icmpv4(), id))
                }
                (Err(_), _) => None,
            }
        };
        if let Some(n) = n {
            tun_write(&self.tun, &self.sh.counters, &out[..n]);
        }
        self.txbuf = out;
    }

    /// An event on a flow's upstream socket before accept(): the connect's
    /// outcome goes to the core.
    pub(super) fn on_upstream(&mut self, slot: usize, ev: &Event) {
        let Some(Slot::Upstream(u)) = self.slots.get_mut(slot) else {
            return;
        };
        // Edge-triggered: what this event says is not said again, so the
        // relay made at accept() must know it.
        u.closing |= ev.is_read_closed() || ev.is_error();
        u.urgent |= ev.is_priority();
        u.readable |= ev.is_readable() || u.closing || u.urgent;
        let np = u.np;
        if self.tcp.get(np).map(|f| f.state) != Some(FlowState::Connecting) {
            // Connected, waiting for accept(): the relay reads it then.
            return;
        }
        match connect_result(&u.sock, ConnectEvent::from(ev)) {
            None => return,
            Some(Ok(())) => self.tcp.upstream_connected(np, self.now),
            Some(Err(e)) => {
                log::debug!("upstream connect for nat port {np} failed: {e}");
                self.tcp
                    .upstream_failed(np, e.raw_os_error(), &self.sh.counters);
            }
        }
        self.run_tcp_actions();
    }

    /// Closes the sockets in `slot` for the core (no report back).
    fn drop_slot(&mut self, slot: usize, rst_app: bool, rst_up: bool) {
        match self.kill_slot(slot) {
            Slot::Relay(r) => {
                if rst_app {
                    set_rst_on_close(&r.app.sock);
                }
                if rst_up {
                    set_rst_on_close(&r.up.sock);
                }
            }
            Slot::Upstream(u) if rst_up => set_rst_on_close(&u.sock),
            _ => {}
        }
    }

    /// The ACK of the app's FIN `seg` that the listener side would have
    /// sent, from `d:dp` to the app's port `sp`; timestamps echoed (RFC
    /// 7323) when the FIN had them, our TSval being the one it echoes.
    fn final_ack(&mut self, seg: &TcpSegment, ts: Option<(u32, u32)>, d: IpAddr, dp: u16, sp: u16) {
        let mut out = std::mem::take(&mut self.txbuf);
        let ack = TcpRepr {
            src_port: dp,
            dst_port: sp,
            seq: seg.ack,
            ack: seg.seq + 1,
            flags: TcpFlags::ACK,
            window: u16::MAX,
            timestamps: ts.map(|(val, ecr)| (ecr, val)),
        };
        let (clat, _, _) = self.tun_side(d);
        if let Some(n) = packet::emit_tcp(&mut out, d, clat, &ack) {
            tun_write(&self.tun, &self.sh.counters, &out[..n]);
        }
        self.txbuf = out;
    }

    /// A segment of a listener (`clat:L -> nat:np`) of either family.
    pub(super) fn tcp_from_listener(&mut self, ip: &IpHdr, p: &mut [u8]) {
        let off = ip.upper_offset();
        let t = &p[off..];
        if ip.upper_proto() != PROTO_TCP || t.len() < TcpRepr::HEADER_LEN {
            return Counters::inc(&self.c().drop_internal_dst);
        }
        let sp = u16::from_be_bytes([t[0], t[1]]);
        let np = u16::from_be_bytes([t[2], t[3]]);
        let (clat, _, lport) = self.tun_side(ip.dst_ip());
        if sp != lport {
            return Counters::inc(&self.c().drop_tcp_no_flow);
        }
        let seg = TcpSegment::parse(t).ok().map(|s| SegInfo::from(&s));
        let c = &self.sh.counters;
        let len = p.len();
        // A flow of the other family on this NAT port is not this one's.
        let flow = (np, clat.is_ipv6());
        if let ListenerVerdict::Forward { dst, dp, sp } =
            self.tcp.on_listener_segment(self.now, flow, seg, c)
        {
            let hdr = self.rx_offload;
            nat_tcp::rewrite_with(p, off, (dst, dp), (clat, sp), hdr.is_some());
            if self.tun.write(c, hdr.as_ref(), p) && self.flow_sink.is_some() {
                self.tcp.delivered(np, len);
            }
        }
    }

    /// Some address of the family (`v6` or not), for [`Loop::tun_side`].
    fn family_addr(&self, v6: bool) -> IpAddr {
        if v6 {
            self.cfg.clat_v6.into()
        } else {
            self.cfg.clat_v4.into()
        }
    }

    /// accept() on the IPv4 or (`v6`) the IPv6 listener.
    fn accept_on(&self, v6: bool) -> io::Result<(TcpStream, SocketAddr)> {
        match (v6, &self.listener6) {
            (true, Some(l)) => l.accept(),
            (true, None) => Err(io::ErrorKind::WouldBlock.into()),
            (false, _) => self.listener.accept(),
        }
    }

    /// The NAT port of a connection accepted from `peer`: `nat_v4:np` or
    /// `[nat_v6]:np`.
    fn nat_port(&self, peer: &SocketAddr) -> Option<u16> {
        match peer {
            SocketAddr::V4(a) if *a.ip() == self.cfg.nat_v4 => Some(a.port()),
            SocketAddr::V6(a) if *a.ip() == self.cfg.nat_v6 => Some(a.port()),
            _ => None,
        }
    }

    /// Accepts what waits on the IPv4 or (`v6`) the IPv6 listener.
    pub(super) fn on_accept(&mut self, v6: bool) {
        loop {
            let (stream, peer) = match self.accept_on(v6) {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                    // A pending upstream connect gives its descriptor up
                    // first (early drop); else the spare one refuses.
                    if self.tcp.evict_for_descriptor(None, &self.sh.counters) {
                        self.run_tcp_actions();
                        continue;
                    }
                    if !self.refuse_backlogged(v6) {
                        log::debug!("accept failed: {e} (no spare descriptor)");
                        return;
                    }
                    continue;
                }
                // Errors of that one connection (accept(2), "Error
                // handling": Linux passes pending network errors of the new
                // socket to accept): the rest of the queue is still there,
                // and edge-triggered polling would not report it again.
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(
                            libc::ECONNABORTED
                                | libc::EPROTO
                                | libc::ENOPROTOOPT
                                | libc::EHOSTDOWN
                                | libc::ENONET
                                | libc::EHOSTUNREACH
                                | libc::EOPNOTSUPP
                                | libc::ENETUNREACH
                                | libc::ENETDOWN
                        )
                    ) =>
                {
                    log::debug!("accept: {e} (that connection only)");
                    continue;
                }
                Err(e) => {
                    log::warn!("accept failed: {e}");
                    return;
                }
            };
            let Some(np) = self.nat_port(&peer) else {
                set_rst_on_close(&stream);
                continue;
            };
            let Some(slot) = self.tcp.accepted(np, self.now) else {
                set_rst_on_close(&stream);
                continue;
            };
            let up = match std::mem::replace(&mut self.slots[slot], Slot::Free) {
                Slot::Upstream(u) => u,
                other => {
                    // Cannot happen: the core's slot is the upstream's.
                    self.slots[slot] = other;
                    set_rst_on_close(&stream);
                    self.tcp
                        .relay_closed(np, false, self.now, &self.sh.counters);
                    continue;
                }
            };
            // TCP_NODELAY is inherited from the listener. The upstream
            // socket stays registered under (slot, 1).
            let mut r = Box::new(Relay::new(np, stream, up.sock, self.now));
            r.on_connected();
            r.up.closing = up.closing;
            r.up.urgent = up.urgent;
            r.up.readable = up.readable;
            // The SYN-ACK's traffic class, latched at connect, becomes the
            // app side's IP_TOS (tcp_relay::mirror_traffic_class; IPv6
            // upstreams only).
            let families = (up.v6, v6);
            let mirrored =
                tcp_relay::mirror_traffic_class(&r.up.sock, &r.app.sock, families, up.syn_tos);
            if let Err(e) = mirrored {
                log::debug!("traffic class of nat port {np} not mirrored: {e}");
            }
            let rw = Interest::READABLE | Interest::WRITABLE | Interest::PRIORITY;
            if self
                .poll
                .registry()
                .register(&mut r.app.sock, tok(slot, 0), rw)
                .is_err()
            {
                set_rst_on_close(&r.app.sock);
                set_rst_on_close(&r.up.sock);
                self.slots[slot] = Slot::Dead;
                self.dead.push(slot);
                self.tcp
                    .relay_closed(np, false, self.now, &self.sh.counters);
                continue;
            }
            self.slots[slot] = Slot::Relay(r);
            // Either side may have bytes already (a server that speaks
            // first; the app's first request).
            self.pump_relay(slot);
        }
    }

    /// Out of descriptors: frees the spare one, accepts the next waiting
    /// connection and resets it (counted like any upstream socket failure),
    /// then takes the spare back. False when there is no spare to use.
    fn refuse_backlogged(&mut self, v6: bool) -> bool {
        if self.spare_fd.take().is_none() {
            self.spare_fd = open_spare_fd();
            return false;
        }
        let ok = match self.accept_on(v6) {
            Ok((stream, peer)) => {
                set_rst_on_close(&stream);
                drop(stream);
                Counters::inc(&self.c().tcp_rst_sent);
                Counters::inc(&self.c().drop_upstream_socket);
                if let Some(np) = self.nat_port(&peer) {
                    if let Some(slot) = self.tcp.accepted(np, self.now) {
                        self.drop_slot(slot, false, true);
                        let c = &self.sh.counters;
                        self.tcp.relay_closed(np, false, self.now, c);
                    }
                }
                true
            }
            Err(_) => false,
        };
        self.spare_fd = open_spare_fd();
        ok
    }

    /// A protected, non-blocking TCP socket connecting to `to`. `tos`: the
    /// TOS byte of the app's SYN for a relayed flow (its DSCP marks the
    /// socket, and the server's marking comes back at accept), `None`
    /// for the engine's own connections.
    pub(super) fn connect_tcp(&self, to: SocketAddr, tos: Option<u8>) -> io::Result<TcpStream> {
        let s = Socket::new(
            Domain::for_address(to),
            Type::STREAM.nonblocking().cloexec(),
            Some(Protocol::TCP),
        )?;
        self.protector.protect(s.as_raw_fd())?;
        let _ = s.set_tcp_nodelay(true);
        tcp_relay::prepare_upstream(&s, &to, tos.unwrap_or(0), tos.is_some())?;
        match s.connect(&SockAddr::from(to)) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(e),
        }
        Ok(TcpStream::from_std(std::net::TcpStream::from(s)))
    }

    pub(super) fn on_relay(&mut self, slot: usize, side: usize, ev: &Event) {
        let Slot::Relay(r) = &mut self.slots[slot] else {
            return;
        };
        if side == 0 {
            r.app.on_event(ev);
        } else {
            r.up.on_event(ev);
        }
        self.pump_relay(slot);
    }

    /// Moves what the relay in `slot` can move, and ends it when done.
    fn pump_relay(&mut self, slot: usize) {
        let buf_size = self.cfg.relay_buffer;
        let Slot::Relay(r) = &mut self.slots[slot] else {
            return;
        };
        let mut m = Moved::default();
        let out = r.pump(&mut m, &mut self.scratch, buf_size);
        if m.to_up + m.to_app > 0 {
            r.last = self.now;
            self.tcp.touch(r.np, self.now);
        }
        let c = &self.sh.counters;
        Counters::add(&c.up_tx_bytes, m.to_up);
        Counters::add(&c.up_rx_bytes, m.to_app);
        Counters::add(&c.up_tx_packets, m.up_writes);
        Counters::add(&c.up_rx_packets, m.up_reads);
        match out {
            Outcome::Open => {}
            Outcome::Done => self.close_relay(slot, (false, false), None),
            Outcome::Reset { app_failed, errno } => {
                Counters::inc(&c.tcp_rst_sent);
                let up_failed = (!app_failed).then_some(errno);
                self.close_relay(slot, (!app_failed, app_failed), up_failed)
            }
        }
    }

    /// Ends a relay; `rst_app` / `rst_up` make that side's close a RST.
    /// `up_failed`: the upstream socket failed, with this errno (the
    /// flow's end says why: timed out, unreachable, reset).
    pub(super) fn close_relay(
        &mut self,
        slot: usize,
        (rst_app, rst_up): (bool, bool),
        up_failed: Option<Option<i32>>,
    ) {
        if let Slot::Relay(r) = self.kill_slot(slot) {
            if rst_app {
                set_rst_on_close(&r.app.sock);
            }
            if rst_up {
                set_rst_on_close(&r.up.sock);
            }
            let np = r.np;
            drop(r);
            let (now, c) = (self.now, &self.sh.counters);
            match up_failed {
                Some(errno) => self.tcp.relay_failed(np, errno, now, c),
                // Only an orderly close can leave the listener side in
                // TIME_WAIT.
                None => self.tcp.relay_closed(np, !rst_app && !rst_up, now, c),
            }
        }
    }
}

/// What [`connect_result`] takes of a poll event: apart from mio's
/// `Event`, which only a poll makes, so that the decision can be tested
/// with events no kernel reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ConnectEvent {
    writable: bool,
    error: bool,
    write_closed: bool,
    read_closed: bool,
}

impl From<&Event> for ConnectEvent {
    fn from(ev: &Event) -> ConnectEvent {
        ConnectEvent {
            writable: ev.is_writable(),
            error: ev.is_error(),
            write_closed: ev.is_write_closed(),
            read_closed: ev.is_read_closed(),
        }
    }
}

/// The outcome of a non-blocking connect on `sock` after event `ev`:
/// `None` while in progress.
///
/// Writable without error or hang-up is a completed connect, with no
/// system call: `tcp_poll` (net/ipv4/tcp.c) reports neither EPOLLOUT nor
/// EPOLLIN in SYN_SENT (only EPOLLERR and EPOLLHUP, for a failed connect),
/// and the loop frees a closed flow's slot only after the batch of events
/// it was closed in (`Loop::dead`), so no event of an earlier socket
/// reaches this one (mio's "spurious events" are a portability caveat that
/// epoll does not produce). A reset right after the handshake is then the
/// relay's to find, as one a moment later would be. Any other event asks
/// the socket: SO_ERROR, then getpeername, since a write before the
/// connect completes fails.
fn connect_result(sock: &TcpStream, ev: ConnectEvent) -> Option<io::Result<()>> {
    if ev.writable && !ev.error && !ev.write_closed && !ev.read_closed {
        return Some(Ok(()));
    }
    match sock.take_error() {
        Ok(Some(e)) | Err(e) => Some(Err(e)),
        Ok(None) => match sock.peer_addr() {
            Ok(_) => Some(Ok(())),
            Err(e) if e.kind() == io::ErrorKind::NotConnected && !(ev.error || ev.write_closed) => {
                None
            }
            Err(e) => Some(Err(e)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::{Events, Poll, Token};
    use std::time::{Duration, Instant};

    /// Polls `sock` (registered) until an event comes, as the loop takes
    /// it; `None` when none came within `t`.
    fn next_event(poll: &mut Poll, t: Duration) -> Option<ConnectEvent> {
        let mut events = Events::with_capacity(4);
        poll.poll(&mut events, Some(t)).unwrap();
        events.iter().next().map(ConnectEvent::from)
    }

    fn connecting(to: SocketAddr) -> (Poll, TcpStream) {
        let poll = Poll::new().unwrap();
        let mut s = TcpStream::connect(to).unwrap();
        poll.registry()
            .register(&mut s, Token(0), Interest::READABLE | Interest::WRITABLE)
            .unwrap();
        (poll, s)
    }

    /// The connect's outcome after the events a real poll reports, until
    /// it is known.
    fn outcome(poll: &mut Poll, s: &TcpStream) -> (ConnectEvent, io::Result<()>) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            assert!(Instant::now() < deadline, "the connect never ended");
            if let Some(ev) = next_event(poll, Duration::from_millis(200)) {
                if let Some(r) = connect_result(s, ev) {
                    return (ev, r);
                }
            }
        }
    }

    /// A connect to a listening port (loopback) completes: writable, no
    /// error, the fast path's case.
    #[test]
    fn a_connect_to_a_listener_is_connected() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (mut poll, s) = connecting(l.local_addr().unwrap());
        let (ev, r) = outcome(&mut poll, &s);
        assert!(ev.writable && !ev.error, "{ev:?}");
        r.unwrap();
        assert!(l.accept().is_ok());
    }

    /// A connect to a closed port is refused: the kernel reports it as
    /// IN|OUT|ERR|HUP|RDHUP, writable among them, and the outcome is
    /// ECONNREFUSED, not "connected".
    #[test]
    fn a_refused_connect_is_an_error_though_writable() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let to = l.local_addr().unwrap();
        drop(l);
        let (mut poll, s) = connecting(to);
        let (ev, r) = outcome(&mut poll, &s);
        assert!(ev.writable, "a refused connect reports EPOLLOUT: {ev:?}");
        assert_eq!(
            r.expect_err("refused, not connected").raw_os_error(),
            Some(libc::ECONNREFUSED)
        );
    }

    /// A connect left in SYN_SENT (the listener's accept queue is full, so
    /// its SYNs are dropped: `tcp_conn_request`) reports no event at all,
    /// the premise of the fast path (tcp_poll gives neither EPOLLOUT nor
    /// EPOLLIN in SYN_SENT); an event without writable, as a spurious one
    /// would be, asks the socket and finds the connect in progress.
    #[test]
    fn a_connect_in_syn_sent_is_in_progress() {
        let l = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
        l.bind(&SockAddr::from(SocketAddr::from(([127, 0, 0, 1], 0))))
            .unwrap();
        // Backlog 0 holds one connection; the next SYN is dropped.
        l.listen(0).unwrap();
        let to = l.local_addr().unwrap().as_socket().unwrap();
        let first = std::net::TcpStream::connect(to).unwrap();
        let (mut poll, s) = connecting(to);
        assert_eq!(next_event(&mut poll, Duration::from_millis(300)), None);
        assert_eq!(sys_state(&s), TCP_SYN_SENT);
        let spurious = ConnectEvent {
            writable: false,
            error: false,
            write_closed: false,
            read_closed: false,
        };
        assert!(connect_result(&s, spurious).is_none());
        drop(first);
    }

    /// TCP_SYN_SENT in include/net/tcp_states.h.
    const TCP_SYN_SENT: u8 = 2;

    fn sys_state(s: &TcpStream) -> u8 {
        crate::sys::tcp_state(s.as_raw_fd()).unwrap()
    }
}
