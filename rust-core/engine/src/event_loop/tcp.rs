//! TCP flows: app segments are NATed onto the engine's listener and
//! back (nat_tcp), each accepted connection is relayed to an upstream
//! IPv6 socket (tcp_relay). Here is a flow's life around that: its NAT
//! entry from the SYN, the fast close on the app's FIN, the grace and
//! TIME_WAIT hold once the relay is gone.

use super::{tok, tun_write, Loop, Slot};
use crate::nat_tcp::{self, NatState};
use crate::packet::{self, Ip4, PROTO_TCP};
use crate::stats::Counters;
use crate::sys;
use crate::tcp_relay::{self, set_rst_on_close, Moved, Outcome, Relay};
use crate::timers::TimerKey;
use clat_xlat::wire::{Icmpv4DstUnreachable, TcpFlags, TcpRepr, TcpSegment};
use mio::event::Event;
use mio::net::TcpStream;
use mio::Interest;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV6};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// How long a closed TCP flow's NAT entry keeps translating late segments
/// (the final ACK of a passive close, a retransmitted FIN): both ends are
/// in this host, so they come within milliseconds.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// How long the NAT port of a flow whose listener side may sit in
/// TIME_WAIT stays unused: Linux's TCP_TIMEWAIT_LEN. A new flow on that
/// tuple sooner would have its SYN refused by PAWS (see nat_tcp).
const TIME_WAIT_HOLD: Duration = Duration::from_secs(60);

/// The reserve descriptor of [`Loop::refuse_backlogged`].
pub(super) fn open_spare_fd() -> Option<OwnedFd> {
    std::fs::File::open("/dev/null").ok().map(OwnedFd::from)
}

impl Loop {
    pub(super) fn tcp_from_app(&mut self, ip: &Ip4, p: &mut [u8]) {
        let t = &p[ip.ihl..];
        let Ok(seg) = TcpSegment::parse(t) else {
            return Counters::inc(&self.c().drop_malformed);
        };
        let (sp, dp) = (seg.src_port, seg.dst_port);
        let flags = seg.flags;
        let is_syn = flags.masked(TcpFlags::SYN | TcpFlags::ACK | TcpFlags::RST) == TcpFlags::SYN;
        let key = (sp, ip.dst, dp);
        if ip.dst == self.cfg.dns_v4 && dp != 53 {
            Counters::inc(&self.c().drop_internal_dst);
            return self.refuse(ip, p, Icmpv4DstUnreachable::PortUnreachable);
        }
        let existing = self.nat.lookup(&key);
        let np = match existing {
            Some(np)
                if !(is_syn
                    && matches!(self.nat.get(np).map(|e| e.state), Some(NatState::Closing))) =>
            {
                np
            }
            _ => {
                if !is_syn {
                    Counters::inc(&self.c().drop_tcp_no_flow);
                    if !flags.intersects(TcpFlags::RST) {
                        self.refuse(ip, p, Icmpv4DstUnreachable::PortUnreachable);
                    }
                    return;
                }
                if self.flows() >= self.cfg.max_flows {
                    Counters::inc(&self.c().drop_flow_limit);
                    return self.refuse(ip, p, Icmpv4DstUnreachable::CommProhibited);
                }
                if let Some(old) = existing {
                    self.nat.unlink_key(old);
                }
                let at = self.now + self.cfg.tcp_transitory_timeout;
                let Some(np) = self.nat.insert(key, seg.seq, at) else {
                    Counters::inc(&self.c().drop_flow_limit);
                    return self.refuse(ip, p, Icmpv4DstUnreachable::CommProhibited);
                };
                self.timers.insert(at, TimerKey::Nat(np));
                if let Some(e) = self.nat.get_mut(np) {
                    e.syn_tos = ip.tos;
                }
                Counters::inc(&self.c().flows_tcp);
                Counters::inc(&self.c().flows_tcp_total);
                log::debug!("tcp flow {sp} -> {}:{dp} via nat port {np}", ip.dst);
                np
            }
        };
        if flags.masked(TcpFlags::FIN | TcpFlags::SYN | TcpFlags::RST) == TcpFlags::FIN {
            let ts = packet::tcp_timestamps(&p[ip.ihl..]);
            if self.app_fin(np, &seg, ts, ip.dst, dp, sp) {
                return;
            }
        }
        if flags.intersects(TcpFlags::URG) {
            self.app_urgent(np);
        }
        nat_tcp::rewrite(p, ip.ihl, self.cfg.nat_v4, np, self.cfg.clat_v4, self.lport);
        tun_write(&self.tun, &self.sh.counters, p);
    }

    /// The app sent a segment with URG on flow `np`: its relay looks for
    /// the urgent mark on the app side from now on (tcp_relay's module
    /// doc). Seen here, before the kernel has the segment, so the relay
    /// cannot read past the mark before it knows.
    fn app_urgent(&mut self, np: u16) {
        if let Some(NatState::Active(slot)) = self.nat.get(np).map(|e| e.state) {
            if let Some(Slot::Relay(r)) = self.slots.get_mut(slot) {
                r.app.urgent = true;
            }
        }
    }

    /// The app sent a FIN on flow `np`. Closes the local leg without
    /// TIME_WAIT when that is safe (see nat_tcp's module doc) and returns
    /// true: the FIN is then answered here and not carried to the kernel.
    /// `ts`: the FIN's timestamps option, echoed in our answer.
    fn app_fin(
        &mut self,
        np: u16,
        seg: &TcpSegment,
        ts: Option<(u32, u32)>,
        d: Ipv4Addr,
        dp: u16,
        sp: u16,
    ) -> bool {
        let Some(e) = self.nat.get_mut(np) else {
            return false;
        };
        e.app_fin = true;
        let slot = match e.state {
            NatState::Active(slot) => slot,
            // A retransmission of a FIN answered here: answer it again.
            NatState::Closing if e.fast_closed => {
                self.final_ack(seg, ts, d, dp, sp);
                return true;
            }
            _ => return false,
        };
        // The FIN acknowledges ours (so every byte we sent, too) and
        // carries nothing.
        if !seg.flags.intersects(TcpFlags::ACK)
            || seg.payload_len != 0
            || e.fin_end != Some(seg.ack)
        {
            return false;
        }
        let isn = e.app_isn;
        let Slot::Relay(r) = &self.slots[slot] else {
            return false;
        };
        if !r.app.wr_shut || !r.nothing_for_up() {
            return false;
        }
        // Every byte the app sent before its FIN arrived and was read.
        let fd = r.app.sock.as_raw_fd();
        match sys::tcp_recv_state(fd) {
            Ok(st) if st.unread == 0 && isn + 1 + st.bytes_received as u32 == seg.seq => {}
            _ => return false,
        }
        set_rst_on_close(&r.app.sock);
        if let Some(e) = self.nat.get_mut(np) {
            e.fast_closed = true;
        }
        self.final_ack(seg, ts, d, dp, sp);
        Counters::inc(&self.c().tcp_fast_closes);
        // Upstream has sent its FIN and has nothing left from the app:
        // dropping it closes it in order (its FIN follows).
        self.close_relay(slot, false, false);
        true
    }

    /// The ACK of the app's FIN `seg` that the listener side would have
    /// sent, from `d:dp` to the app's port `sp`; timestamps echoed (RFC
    /// 7323) when the FIN had them, our TSval being the one it echoes.
    fn final_ack(
        &mut self,
        seg: &TcpSegment,
        ts: Option<(u32, u32)>,
        d: Ipv4Addr,
        dp: u16,
        sp: u16,
    ) {
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
        let n = packet::emit_tcp4(&mut out, d, self.cfg.clat_v4, &ack);
        tun_write(&self.tun, &self.sh.counters, &out[..n]);
        self.txbuf = out;
    }

    pub(super) fn tcp_from_listener(&mut self, ip: &Ip4, p: &mut [u8]) {
        let t = &p[ip.ihl..];
        if ip.protocol != PROTO_TCP || t.len() < TcpRepr::HEADER_LEN {
            return Counters::inc(&self.c().drop_internal_dst);
        }
        let sp = u16::from_be_bytes([t[0], t[1]]);
        let np = u16::from_be_bytes([t[2], t[3]]);
        let seg = TcpSegment::parse(t).ok();
        match self.nat.get_mut(np) {
            Some(e) if sp == self.lport => {
                if let Some(seg) = seg {
                    if seg.flags.intersects(TcpFlags::RST) && e.fast_closed {
                        // The abort that ended a fast-closed flow: the app
                        // has its ACK already.
                        return;
                    }
                    if seg.flags.intersects(TcpFlags::FIN) {
                        e.fin_end = Some(seg.seq + seg.payload_len as u32 + 1);
                        e.engine_fin_first |= !e.app_fin;
                    }
                }
                let (dst, dp, asp) = (e.dst, e.dp, e.sp);
                nat_tcp::rewrite(p, ip.ihl, dst, dp, self.cfg.clat_v4, asp);
                tun_write(&self.tun, &self.sh.counters, p);
            }
            _ => Counters::inc(&self.c().drop_tcp_no_flow),
        }
    }

    pub(super) fn on_accept(&mut self) {
        loop {
            let (stream, peer) = match self.listener.accept() {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                    if !self.refuse_backlogged() {
                        log::debug!("accept failed: {e} (no spare descriptor)");
                        return;
                    }
                    continue;
                }
                Err(e) => {
                    log::warn!("accept failed: {e}");
                    return;
                }
            };
            let np = match peer {
                SocketAddr::V4(a) if *a.ip() == self.cfg.nat_v4 => a.port(),
                _ => {
                    set_rst_on_close(&stream);
                    continue;
                }
            };
            let Some(e) = self.nat.get(np).cloned() else {
                set_rst_on_close(&stream);
                continue;
            };
            if e.state != NatState::SynSeen {
                set_rst_on_close(&stream);
                continue;
            }
            let target = if e.dst == self.cfg.dns_v4 {
                self.cfg
                    .upstream_dns
                    .get(self.dns_preferred_index())
                    .copied()
            } else {
                Some(SocketAddr::V6(SocketAddrV6::new(
                    packet::embed(&self.cfg.prefix, e.dst),
                    e.dp,
                    0,
                    0,
                )))
            };
            let up = target
                .ok_or_else(|| io::Error::other("no upstream DNS"))
                .and_then(|t| self.connect_tcp(t, Some(e.syn_tos)));
            let up = match up {
                Ok(s) => s,
                Err(err) => {
                    log::debug!("upstream for nat port {np} failed at once: {err}");
                    set_rst_on_close(&stream);
                    drop(stream);
                    Counters::inc(&self.c().tcp_rst_sent);
                    Counters::inc(&self.c().drop_upstream_socket);
                    self.nat_closing(np);
                    continue;
                }
            };
            // TCP_NODELAY is inherited from the listener.
            let slot = self.alloc_slot(Slot::Free);
            let mut r = Box::new(Relay::new(np, stream, up, self.now));
            let reg = self.poll.registry();
            let rw = Interest::READABLE | Interest::WRITABLE | Interest::PRIORITY;
            if reg.register(&mut r.app.sock, tok(slot, 0), rw).is_err()
                || reg.register(&mut r.up.sock, tok(slot, 1), rw).is_err()
            {
                set_rst_on_close(&r.app.sock);
                self.slots[slot] = Slot::Dead;
                self.dead.push(slot);
                self.nat_closing(np);
                continue;
            }
            self.slots[slot] = Slot::Relay(r);
            if let Some(e) = self.nat.get_mut(np) {
                e.state = NatState::Active(slot);
            }
        }
    }

    /// Out of descriptors: frees the spare one, accepts the next waiting
    /// connection and resets it (counted like any upstream socket failure),
    /// then takes the spare back. False when there is no spare to use.
    fn refuse_backlogged(&mut self) -> bool {
        if self.spare_fd.take().is_none() {
            self.spare_fd = open_spare_fd();
            return false;
        }
        let ok = match self.listener.accept() {
            Ok((stream, peer)) => {
                set_rst_on_close(&stream);
                drop(stream);
                Counters::inc(&self.c().tcp_rst_sent);
                Counters::inc(&self.c().drop_upstream_socket);
                if let SocketAddr::V4(a) = peer {
                    if *a.ip() == self.cfg.nat_v4 && self.nat.get(a.port()).is_some() {
                        self.nat_closing(a.port());
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
    /// socket, and the server's marking comes back at connect), `None`
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
        let buf_size = self.cfg.relay_buffer;
        let mut just_connected = None;
        let Slot::Relay(r) = &mut self.slots[slot] else {
            return;
        };
        if side == 0 {
            r.app.on_event(ev);
        } else {
            r.up.on_event(ev);
        }
        if !r.connected {
            if side == 0 {
                return; // app data waits in the kernel until upstream is up
            }
            let failed = match r.up.sock.take_error() {
                Ok(Some(e)) | Err(e) => Some(e),
                // getpeername, not just "writable": mio warns of spurious
                // events, and a write before the connect completes fails.
                Ok(None) => match r.up.sock.peer_addr() {
                    Ok(_) => None,
                    Err(e)
                        if e.kind() == io::ErrorKind::NotConnected
                            && !(ev.is_error() || ev.is_write_closed()) =>
                    {
                        return
                    }
                    Err(e) => Some(e),
                },
            };
            if let Some(e) = failed {
                log::debug!(
                    "upstream connect for nat port {} to {:?} failed: {e}",
                    r.np,
                    r.up.sock.peer_addr()
                );
                Counters::inc(&self.sh.counters.tcp_rst_sent);
                return self.close_relay(slot, true, false);
            }
            r.on_connected();
            if let Err(e) = tcp_relay::mirror_traffic_class(&r.up.sock, &r.app.sock) {
                log::debug!("traffic class of nat port {} not mirrored: {e}", r.np);
            }
            just_connected = Some(r.np);
            r.up.readable = true;
            r.up.writable = true;
            r.app.readable = true;
        }
        let mut m = Moved::default();
        let out = r.pump(&mut m, &mut self.scratch, buf_size);
        if m.to_up + m.to_app > 0 {
            r.last = self.now;
        }
        let c = &self.sh.counters;
        Counters::add(&c.up_tx_bytes, m.to_up);
        Counters::add(&c.up_rx_bytes, m.to_app);
        Counters::add(&c.up_tx_packets, m.up_writes);
        Counters::add(&c.up_rx_packets, m.up_reads);
        if let Some(np) = just_connected {
            // Established now: the idle deadline is the established timeout.
            let at = self.now + self.cfg.tcp_established_timeout;
            if let Some(e) = self.nat.get_mut(np) {
                let old = std::mem::replace(&mut e.timer_at, at);
                self.timers.remove(old, TimerKey::Nat(np));
                self.timers.insert(at, TimerKey::Nat(np));
            }
        }
        match out {
            Outcome::Open => {}
            Outcome::Done => self.close_relay(slot, false, false),
            Outcome::Reset { app_failed } => {
                Counters::inc(&c.tcp_rst_sent);
                self.close_relay(slot, !app_failed, app_failed)
            }
        }
    }

    /// Ends a relay; `rst_app` / `rst_up` make that side's close a RST.
    pub(super) fn close_relay(&mut self, slot: usize, rst_app: bool, rst_up: bool) {
        if let Slot::Relay(r) = self.kill_slot(slot) {
            if rst_app {
                set_rst_on_close(&r.app.sock);
            }
            if rst_up {
                set_rst_on_close(&r.up.sock);
            }
            let np = r.np;
            drop(r);
            // Only an orderly close can leave the listener side in TIME_WAIT.
            let tw = !rst_app && !rst_up;
            self.nat_closing_after(np, tw);
        }
    }

    /// The flow `np` has no sockets any more (or never had): its entry
    /// only translates stragglers until it goes.
    fn nat_closing(&mut self, np: u16) {
        self.nat_closing_after(np, false);
    }

    /// As [`Self::nat_closing`]; `orderly` when the relay ended without a
    /// reset, so the listener side may be in TIME_WAIT.
    fn nat_closing_after(&mut self, np: u16, orderly: bool) {
        let grace = CLOSE_GRACE.min(self.cfg.tcp_transitory_timeout);
        if let Some(e) = self.nat.get_mut(np) {
            let at = if orderly && e.engine_fin_first && !e.fast_closed {
                self.now + TIME_WAIT_HOLD
            } else {
                self.now + grace
            };
            let old = e.timer_at;
            if e.state != NatState::Closing {
                // A closing entry only translates stragglers: it is not a
                // live flow (gauge, cap) any more.
                self.closing_entries += 1;
                Counters::dec(&self.sh.counters.flows_tcp);
            }
            e.state = NatState::Closing;
            e.timer_at = at;
            self.timers.remove(old, TimerKey::Nat(np));
            self.timers.insert(at, TimerKey::Nat(np));
        }
    }

    pub(super) fn remove_nat(&mut self, np: u16) {
        if let Some(e) = self.nat.remove(np) {
            self.timers.remove(e.timer_at, TimerKey::Nat(np));
            if e.state == NatState::Closing {
                self.closing_entries -= 1;
            } else {
                Counters::dec(&self.sh.counters.flows_tcp);
            }
        }
    }

    pub(super) fn nat_timer(&mut self, np: u16, at: Instant) {
        let Some(e) = self.nat.get(np) else { return };
        if e.timer_at != at {
            return;
        }
        match e.state {
            NatState::SynSeen | NatState::Closing => {
                if e.state == NatState::SynSeen {
                    Counters::inc(&self.sh.counters.flows_expired);
                }
                self.timers.insert(at, TimerKey::Nat(np));
                self.remove_nat(np);
            }
            NatState::Active(slot) => {
                let Slot::Relay(r) = &self.slots[slot] else {
                    self.timers.insert(at, TimerKey::Nat(np));
                    return self.remove_nat(np);
                };
                let idle = if r.connected {
                    self.cfg.tcp_established_timeout
                } else {
                    self.cfg.tcp_transitory_timeout
                };
                let due = r.last + idle;
                if due > self.now {
                    if let Some(e) = self.nat.get_mut(np) {
                        e.timer_at = due;
                    }
                    self.timers.insert(due, TimerKey::Nat(np));
                } else {
                    Counters::inc(&self.sh.counters.flows_expired);
                    // nat_closing re-arms the timer (it removes `at`, absent now)
                    self.close_relay(slot, true, true);
                }
            }
        }
    }
}
