//! The engine thread: one mio `Poll` over the TUN, the TCP listener, every
//! upstream socket and a `Waker` for commands. It sleeps until a socket is
//! ready or the earliest flow deadline, and not at all when idle.
//!
//! Flow handling lives in one child module per protocol: `tcp`, `udp`,
//! `icmp_echo`, `dns_relay`, and `datagram` for what UDP and ping sockets
//! share. This file holds the loop: the TUN, dispatch, slots, commands
//! and timers.

mod datagram;
mod dns_relay;
mod icmp_echo;
#[cfg(test)]
mod memory;
mod tcp;
mod udp;
mod udp_batch;

use crate::config::EngineConfig;
use crate::datagram_mappings::{DatagramMappings, MapKey};
use crate::dns_names::DnsNames;
use crate::dns_queries::DnsQueries;
use crate::flow_events::{
    FlowEnd, FlowEndReason, FlowEvent, FlowEventSink, FlowProto, FlowStart, Tally, WallClock,
};
use crate::ipv4_path::Ipv4Path;
use crate::packet::{
    self, Ip4, IpHdr, IpView, ParseError, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP,
};
use crate::stats::Counters;
use crate::tcp_flows::{Action, FlowTimeouts, TcpFlows, Unreachable};
use crate::tcp_relay::{set_rst_on_close, Relay};
use crate::timers::{TimerKey, Timers};
use crate::too_big_resend::{self, TooBigResends};
use crate::tun_io::{Tun, Upper, VnetHdr, VNET_HDR_LEN};
use clat_protect::Protector;
use clat_xlat::wire::{
    Icmpv4DstUnreachable, Icmpv4Message, Icmpv6DstUnreachable, Icmpv6Message, Icmpv6ParamProblem,
};
use datagram::Datagram;
use dns_relay::DnsTcp;
use icmp_echo::IcmpFlow;
use ipnet::Ipv6Net;
use mio::event::{Event, Source};
use mio::net::{TcpListener, UdpSocket};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use std::io;
use std::net::{IpAddr, SocketAddr, SocketAddrV4};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use tcp::{open_spare_fd, Upstream};
use udp::UdpFlow;

pub(crate) const TUN: Token = Token(usize::MAX - 1);
pub(crate) const WAKER: Token = Token(usize::MAX - 2);
const LISTENER: Token = Token(usize::MAX - 3);
const LISTENER6: Token = Token(usize::MAX - 4);

/// Minimum interval between two warn-level logs of socket-creation failures.
const WARN_EVERY: Duration = Duration::from_secs(10);
/// Largest UDP payload an IPv4 packet can carry.
const MAX_UDP_PAYLOAD: usize = 65535 - 28;
/// Largest UDP payload an IPv6 packet without a jumbogram can carry
/// (Payload Length 65535, the UDP header included).
const MAX_UDP_PAYLOAD6: usize = 65535 - 8;
/// IPv6 Next Header 59, "No Next Header" (RFC 8200 section 4.7).
const IPV6_NO_NEXT_HEADER: u8 = 59;
/// TUN packets handled per turn before sockets get theirs.
const TUN_BATCH: usize = 256;

/// Requests from the API threads.
#[derive(Debug)]
pub(crate) enum Command {
    Stop,
    SetPrefix(Ipv6Net),
    SetDns(Vec<SocketAddr>),
    NetworkChanged,
    SetIpv4Path(Ipv4Path),
}

/// State shared with the API side.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub counters: Counters,
    pub exit: Mutex<Option<String>>,
    pub running: AtomicBool,
    /// Set (and `ended_cv` notified) when the engine thread has ended and
    /// every socket is closed: what [`crate::ExitWatch`] waits for.
    pub ended: Mutex<bool>,
    pub ended_cv: Condvar,
}

/// An ICMP error the engine answers a packet with, in that packet's
/// family ([`Loop::icmp_error`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IcmpError {
    /// Type and code.
    V4(Icmpv4Message, u8),
    /// Type, code and the 32 bits after the checksum (a Parameter
    /// Problem's pointer, else 0).
    V6(Icmpv6Message, u8, u32),
}

impl IcmpError {
    fn unreachable4(code: Icmpv4DstUnreachable) -> IcmpError {
        IcmpError::V4(Icmpv4Message::DstUnreachable, code as u8)
    }

    /// Destination Unreachable for `why` in `ip`'s family.
    fn unreachable(ip: &IpHdr, why: Unreachable) -> IcmpError {
        match ip {
            IpHdr::V4(_) => IcmpError::unreachable4(why.icmpv4()),
            IpHdr::V6(_) => IcmpError::V6(Icmpv6Message::DstUnreachable, why.icmpv6() as u8, 0),
        }
    }
}

enum Slot {
    Free,
    /// Closed during this batch of events; freed after it so that a stale
    /// event of the same batch cannot reach a new occupant.
    Dead,
    /// A TCP flow's upstream socket before accept().
    Upstream(Box<Upstream>),
    Relay(Box<Relay>),
    Udp(UdpFlow),
    Icmp(IcmpFlow),
    DnsUdp(usize, UdpSocket),
    DnsTcp(Box<DnsTcp>),
}

pub(crate) struct Loop {
    poll: Poll,
    tun: Tun,
    listener: TcpListener,
    lport: u16,
    /// The IPv6 listener on `clat_v6` when IPv6 is carried, and its port.
    listener6: Option<TcpListener>,
    lport6: u16,
    cfg: EngineConfig,
    sh: Arc<Shared>,
    protector: Protector,
    rx: Receiver<Command>,
    slots: Vec<Slot>,
    free: Vec<usize>,
    dead: Vec<usize>,
    /// The TCP flow core: table and decisions (sans I/O).
    tcp: TcpFlows,
    /// UDP mappings by the app's family and source port, to their slots.
    udp: DatagramMappings<usize, MapKey>,
    /// ICMP echo mappings by the app's family and echo identifier, to
    /// their slots.
    icmp: DatagramMappings<usize, MapKey>,
    /// Copies of UDP datagrams without DF, sent again after Packet Too Big.
    too_big: TooBigResends,
    /// The DNS relay's UDP socket per upstream resolver (by index), to
    /// their slots; opened on first use.
    dns_socks: Vec<Option<usize>>,
    /// The DNS relay core: queries in flight and decisions (sans I/O).
    dns: DnsQueries,
    timers: Timers,
    reasm: crate::frag::Reassembler<crate::frag::V4>,
    reasm6: crate::frag::Reassembler<crate::frag::V6>,
    rxbuf: Vec<u8>,
    /// What the relays share: the splice pipe and the copy buffer.
    scratch: crate::tcp_relay::Scratch,
    txbuf: Vec<u8>,
    now: Instant,
    ip_id: u16,
    stop: bool,
    /// The last TUN read stopped at the batch limit, not at EAGAIN.
    tun_more: bool,
    /// A descriptor held in reserve: when accept() fails for lack of
    /// descriptors, closing it lets us accept the waiting connection just
    /// to reset it, so the app learns at once instead of sitting in the
    /// listen backlog (edge-triggered: nothing would retry the accept).
    spare_fd: Option<OwnedFd>,
    /// When a socket-creation failure was last logged at warn level: such
    /// failures come per app packet (e.g. EMFILE under a flood), so they
    /// are warned about at most every [`WARN_EVERY`] and counted always.
    last_socket_warn: Option<Instant>,
    /// Where flow events go, when a consumer asked for them
    /// ([`crate::flow_events`]); `None`: no event is built.
    flow_sink: Option<FlowEventSink>,
    /// The virtio-net header of the TUN packet being handled, while it is
    /// a TCP segment kept with its partial checksum for the NAT path
    /// ([`crate::tun_io::settle`]); `None` otherwise and on a plain TUN.
    rx_offload: Option<VnetHdr>,
    /// The datagram being handled was reassembled from IPv6 fragments of
    /// the app: sent upstream without DONTFRAG ([`Loop::fragment6`]).
    reassembled6: bool,
    /// The rate limit of the ICMP errors the engine originates.
    icmp_rate: crate::icmp_rate::IcmpRateLimit,
    /// Names the DNS relay resolved, for FlowStart.name; only while flow
    /// events are on.
    names: Option<DnsNames>,
    /// The flow events' times: the wall clock at start plus monotonic time.
    clock: WallClock,
    /// UDP batching on the upstream sockets ([`udp_batch`]).
    udp_batch: udp_batch::Batching,
}

fn tok(slot: usize, side: usize) -> Token {
    Token(slot * 2 + side)
}

/// Writes one packet the engine made (its checksum complete) to the TUN,
/// counting it (or its drop); whether it went (a flow's down bytes count
/// only what did). [`Tun::write`] is the one write.
fn tun_write(tun: &Tun, c: &Counters, pkt: &[u8]) -> bool {
    tun.write(c, None, pkt)
}

impl Loop {
    pub(crate) fn new(
        poll: Poll,
        tun: OwnedFd,
        (listener, listener6): (TcpListener, Option<TcpListener>),
        cfg: EngineConfig,
        sh: Arc<Shared>,
        protector: Protector,
        rx: Receiver<Command>,
    ) -> io::Result<Loop> {
        let mut listener = listener;
        let lport = listener.local_addr()?.port();
        let mut listener6 = listener6;
        let mut lport6 = 0;
        if let Some(l) = listener6.as_mut() {
            lport6 = l.local_addr()?.port();
            poll.registry().register(l, LISTENER6, Interest::READABLE)?;
        }
        sh.counters
            .ipv6_carried
            .store(u64::from(cfg.carry_ipv6), Ordering::Relaxed);
        poll.registry()
            .register(&mut SourceFd(&tun.as_raw_fd()), TUN, Interest::READABLE)?;
        let tun = Tun::new(tun, cfg.tun_vnet_hdr);
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let n = cfg.upstream_dns.len();
        let dns = DnsQueries::new(cfg.upstream_dns.clone(), cfg.dns_timeout);
        let to = FlowTimeouts {
            established: cfg.tcp_established_timeout,
            transitory: cfg.tcp_transitory_timeout,
        };
        let relay_buffer = cfg.relay_buffer;
        let (udp_idle, icmp_idle) = (cfg.udp_timeout, cfg.icmp_timeout);
        let mut tcp = TcpFlows::new(to);
        tcp.set_path(cfg.ipv4_path);
        let native = u64::from(cfg.ipv4_path == Ipv4Path::Native);
        sh.counters
            .ipv4_path_native
            .store(native, Ordering::Relaxed);
        Ok(Loop {
            poll,
            tun,
            listener,
            lport,
            listener6,
            lport6,
            cfg,
            sh,
            protector,
            rx,
            slots: Vec::new(),
            free: Vec::new(),
            dead: Vec::new(),
            tcp,
            udp: DatagramMappings::new(udp_idle),
            icmp: DatagramMappings::new(icmp_idle),
            too_big: TooBigResends::new(too_big_resend::HOLD, too_big_resend::BUDGET),
            dns_socks: vec![None; n],
            dns,
            timers: Timers::default(),
            reasm: Default::default(),
            reasm6: Default::default(),
            // A TSO segment is at most 64 KiB (the TUN's gso_max_size).
            rxbuf: vec![0u8; VNET_HDR_LEN + 65536],
            scratch: crate::tcp_relay::Scratch::new(relay_buffer),
            txbuf: vec![0u8; 65536 + 64],
            now: Instant::now(),
            ip_id: 1,
            stop: false,
            tun_more: false,
            spare_fd: open_spare_fd(),
            last_socket_warn: None,
            flow_sink: None,
            rx_offload: None,
            reassembled6: false,
            icmp_rate: Default::default(),
            names: None,
            clock: WallClock::start(),
            udp_batch: Default::default(),
        })
    }

    /// Queues a flow event for the consumer, counting it if the queue is
    /// full; builds nothing when nobody listens (`make` is not called).
    fn emit_flow_event(&self, make: impl FnOnce() -> FlowEvent) {
        if let Some(sink) = &self.flow_sink {
            if !sink.push(make()) {
                Counters::inc(&self.c().flow_events_dropped);
            }
        }
    }

    /// Reports the start of IPv4 flow `id` from the app's `sp` to `dst`,
    /// leaving on `path`, named if the relay resolved `dst`'s address.
    fn emit_start(&self, id: u64, proto: FlowProto, sp: u16, dst: SocketAddrV4, path: Ipv4Path) {
        self.emit_flow_event(|| {
            let name = self
                .names
                .as_ref()
                .and_then(|n| n.lookup(*dst.ip(), self.now));
            FlowEvent::Start(FlowStart {
                id,
                at_ms: self.clock.ms(self.now),
                proto,
                src: SocketAddrV4::new(self.cfg.clat_v4, sp),
                dst,
                name: name.map(|n| n.to_string()),
                native_ipv4: path == Ipv4Path::Native,
            })
        });
    }

    /// Reports the end of the flow `t` counted, for `how`, at `at` (`None`:
    /// now; a timed-out flow's last activity, a TCP flow's close).
    fn emit_end(&self, t: &Tally, how: FlowEndReason, at: Option<Instant>) {
        self.emit_flow_event(|| {
            FlowEvent::End(FlowEnd {
                id: t.id,
                at_ms: self.clock.ms(at.unwrap_or(self.now)),
                bytes_up: t.up,
                bytes_down: t.down,
                how,
            })
        });
    }

    /// A tally for a new datagram mapping of the app's family (`v6`):
    /// `None` unless flow events are on and the mapping is IPv4.
    fn new_tally(&mut self, v6: bool) -> Option<Box<Tally>> {
        (self.flow_sink.is_some() && !v6).then(|| Tally::new(crate::flow_events::next_flow_id()))
    }

    /// Sends flow events to `sink` ([`crate::flow_events`]); with one, TCP
    /// flows are reported and the relay's answers teach names.
    pub(crate) fn with_flow_events(mut self, sink: Option<FlowEventSink>) -> Loop {
        if sink.is_some() {
            self.tcp.report_flows(self.cfg.dns_v4);
            self.names = Some(DnsNames::new(crate::dns_names::CAPACITY));
        }
        self.flow_sink = sink;
        self
    }

    fn c(&self) -> &Counters {
        &self.sh.counters
    }

    fn set_exit(&self, why: String) {
        log::warn!("engine stopping: {why}");
        *self.sh.exit.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
    }

    pub(crate) fn run(mut self) {
        let mut events = Events::with_capacity(256);
        log::info!(
            "engine running: listener port {}, prefix {}, IPv4 path {}",
            self.lport,
            self.cfg.prefix,
            self.cfg.ipv4_path.name()
        );
        while !self.stop {
            let timeout = if self.tun_more || !self.udp_batch.more.is_empty() {
                Some(Duration::ZERO)
            } else {
                let next = [
                    self.timers.next(),
                    self.tcp.poll_timeout(),
                    self.dns.poll_timeout(),
                ]
                .into_iter()
                .flatten()
                .min();
                next.map(|t| t.saturating_duration_since(Instant::now()))
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                self.set_exit(format!("poll failed: {e}"));
                break;
            }
            Counters::inc(&self.c().loop_wakeups);
            self.now = Instant::now();
            let mut tun_done = false;
            let mut udp_more = std::mem::take(&mut self.udp_batch.more);
            for ev in events.iter() {
                match ev.token() {
                    TUN => {
                        self.on_tun();
                        tun_done = true;
                    }
                    WAKER => self.on_commands(),
                    LISTENER => self.on_accept(false),
                    LISTENER6 => self.on_accept(true),
                    Token(t) => self.on_socket(t / 2, t % 2, ev),
                }
            }
            if self.tun_more && !tun_done {
                self.on_tun();
            }
            self.on_udp_more(&mut udp_more);
            self.run_timers();
            for s in self.dead.drain(..) {
                self.slots[s] = Slot::Free;
                self.free.push(s);
            }
        }
        self.sh.running.store(false, Ordering::SeqCst);
        self.shutdown();
    }

    /// Closes everything (RST for live TCP flows so apps do not hang);
    /// the flows still live are reported ended, as NetworkChanged. Flow
    /// events change only the reports: the sockets close the same way
    /// with them or without (no RST or listener abort written for them).
    fn shutdown(&mut self) {
        if self.flow_sink.is_some() {
            self.now = Instant::now();
            self.tcp.report_stop();
            while let Some(a) = self.tcp.poll_action() {
                if let Action::Ended { tally, how, at } = a {
                    self.emit_end(&tally, how, at);
                }
            }
            for s in &self.slots {
                if let Slot::Udp(UdpFlow { tally: Some(t), .. })
                | Slot::Icmp(IcmpFlow { tally: Some(t), .. }) = s
                {
                    self.emit_end(t, FlowEndReason::NetworkChanged, None);
                }
            }
        }
        for s in &mut self.slots {
            match s {
                Slot::Relay(r) => {
                    set_rst_on_close(&r.app.sock);
                    set_rst_on_close(&r.up.sock);
                }
                Slot::Upstream(u) => set_rst_on_close(&u.sock),
                _ => {}
            }
            *s = Slot::Free;
        }
        let c = &self.sh.counters;
        for g in [&c.flows_tcp, &c.flows_udp, &c.flows_icmp] {
            g.store(0, Ordering::Relaxed);
        }
        self.tcp.clear();
        self.udp.clear();
        self.icmp.clear();
        self.too_big.clear();
        self.dns.clear();
        self.timers.clear();
    }

    // ---- slots -------------------------------------------------------

    fn alloc_slot(&mut self, s: Slot) -> usize {
        if let Some(i) = self.free.pop() {
            self.slots[i] = s;
            i
        } else {
            self.slots.push(s);
            self.slots.len() - 1
        }
    }

    /// A new slot with `sock` registered under it (side 0), for the caller
    /// to fill; None when registration fails, the slot then retired.
    fn register_slot(&mut self, sock: &mut impl Source, interest: Interest) -> Option<usize> {
        let slot = self.alloc_slot(Slot::Free);
        if self
            .poll
            .registry()
            .register(sock, tok(slot, 0), interest)
            .is_err()
        {
            self.slots[slot] = Slot::Dead;
            self.dead.push(slot);
            return None;
        }
        Some(slot)
    }

    fn kill_slot(&mut self, i: usize) -> Slot {
        let s = std::mem::replace(&mut self.slots[i], Slot::Dead);
        if !matches!(s, Slot::Free | Slot::Dead) {
            self.dead.push(i);
        }
        // No deregister: the socket is dropped by the caller, and closing
        // its (only) fd removes it from the epoll set; saves two syscalls
        // per TCP flow.
        s
    }

    fn flows(&self) -> usize {
        self.tcp.live() + self.udp.len() + self.icmp.len()
    }

    fn next_ip_id(&mut self) -> u16 {
        self.ip_id = self.ip_id.wrapping_add(1);
        self.ip_id
    }

    // ---- commands ----------------------------------------------------

    fn on_commands(&mut self) {
        while let Ok(cmd) = self.rx.try_recv() {
            log::info!("engine command: {cmd:?}");
            match cmd {
                Command::Stop => self.stop = true,
                Command::SetPrefix(p) => {
                    // Only the NAT64 path uses the prefix: flows that left
                    // natively are not affected by it.
                    self.cfg.prefix = p;
                    self.reset_path(Ipv4Path::Nat64);
                }
                Command::SetDns(v) => {
                    self.cfg.upstream_dns = v;
                    self.reset_dns();
                }
                Command::NetworkChanged => {
                    self.udp_batch_network_changed();
                    self.reset_upstream();
                    self.reset_dns();
                }
                Command::SetIpv4Path(path) => {
                    self.cfg.ipv4_path = path;
                    let native = u64::from(path == Ipv4Path::Native);
                    self.c().ipv4_path_native.store(native, Ordering::Relaxed);
                    if let Some(old) = self.tcp.set_path(path) {
                        self.reset_path(old);
                    }
                }
            }
        }
    }

    /// Resets every flow that uses the upstream network: TCP flows get RST
    /// both ways, UDP/ICMP mappings are forgotten.
    fn reset_upstream(&mut self) {
        self.tcp.reset_all(self.now, &self.sh.counters);
        self.run_tcp_actions();
        for i in 0..self.slots.len() {
            if let Slot::Udp(_) | Slot::Icmp(_) = &self.slots[i] {
                self.close_mapping(i, FlowEndReason::NetworkChanged, None);
            }
        }
    }

    /// Resets the flows on the upstream path `path` as [`Loop::reset_upstream`]
    /// does, and leaves the others alone (the path went away).
    fn reset_path(&mut self, path: Ipv4Path) {
        self.tcp.reset_path(path, self.now, &self.sh.counters);
        self.run_tcp_actions();
        for i in 0..self.slots.len() {
            let on = match &self.slots[i] {
                Slot::Udp(f) => !f.v6 && f.path == path,
                Slot::Icmp(f) => !f.v6 && f.path == path,
                _ => false,
            };
            if on {
                self.close_mapping(i, FlowEndReason::NetworkChanged, None);
            }
        }
    }

    /// New resolvers or a new network: the relay's sockets are closed and
    /// the core asks its pending queries again; the names learnt from the
    /// old resolvers are forgotten (split horizon: a name of one network's
    /// resolvers must not name the next network's flows).
    fn reset_dns(&mut self) {
        if let Some(names) = &mut self.names {
            names.clear();
        }
        for i in 0..self.dns_socks.len() {
            if let Some(s) = self.dns_socks[i] {
                self.kill_slot(s);
            }
        }
        self.dns_socks = vec![None; self.cfg.upstream_dns.len()];
        self.dns.set_resolvers(self.cfg.upstream_dns.clone());
        self.run_dns_actions();
    }

    // ---- TUN ---------------------------------------------------------

    /// A TUN burst ([`Loop::read_tun`]), then the UDP datagrams it queued
    /// sent ([`udp_batch`]): none waits past the burst it came in.
    fn on_tun(&mut self) {
        self.read_tun();
        self.flush_udp_up();
    }

    /// Reads TUN packets until EAGAIN, but at most a batch at a time so
    /// that sockets get their turn under load (`tun_more` then makes the
    /// next poll return at once).
    fn read_tun(&mut self) {
        self.tun_more = false;
        let at = self.tun.hdr_len();
        for _ in 0..TUN_BATCH {
            let (hdr, n) = match self.tun.read(&mut self.rxbuf) {
                Ok(r) => r,
                Err(e) => match e.kind() {
                    io::ErrorKind::WouldBlock => return,
                    io::ErrorKind::Interrupted => continue,
                    io::ErrorKind::InvalidData => {
                        Counters::inc(&self.c().drop_malformed);
                        continue;
                    }
                    // With a virtio-net header: a packet whose header the
                    // kernel could not fill (a GSO type the header cannot
                    // say); tun_put_user returns EINVAL and frees it, the
                    // next one reads normally (drivers/net/tun.c).
                    _ if at > 0 && e.raw_os_error() == Some(libc::EINVAL) => {
                        Counters::inc(&self.c().drop_malformed);
                        continue;
                    }
                    _ => {
                        self.set_exit(format!("TUN read failed: {e}"));
                        self.stop = true;
                        return;
                    }
                },
            };
            if n == 0 {
                // An empty packet, or the end of the fd (a TUN never does
                // this, other packet fds might): tell them apart by hang-up.
                if crate::sys::hung_up(self.tun.fd()) {
                    self.set_exit("TUN closed".into());
                    self.stop = true;
                    return;
                }
                Counters::inc(&self.c().drop_malformed);
                continue;
            }
            Counters::inc(&self.c().tun_rx_packets);
            Counters::add(&self.c().tun_rx_bytes, n as u64);
            let mut buf = std::mem::take(&mut self.rxbuf);
            self.rx_offload = hdr;
            self.on_packet(&mut buf[at..at + n]);
            self.rx_offload = None;
            self.rxbuf = buf;
        }
        self.tun_more = true;
    }

    fn on_packet(&mut self, p: &mut [u8]) {
        if p.first().is_some_and(|b| b >> 4 == 6) && self.cfg.carry_ipv6 {
            return self.on_packet6(p);
        }
        let ip = match packet::parse_ip4(p) {
            Ok(ip) => ip,
            Err(ParseError::NotIpv4) => return Counters::inc(&self.c().drop_not_ipv4),
            Err(_) => return Counters::inc(&self.c().drop_malformed),
        };
        let p = &mut p[..ip.total_len()];
        if ip.src != self.cfg.clat_v4 {
            return Counters::inc(&self.c().drop_bad_source);
        }
        if ip.dst.is_multicast() {
            return Counters::inc(&self.c().drop_multicast);
        }
        let subnet = u32::from(self.cfg.clat_v4) & !7;
        if ip.dst.is_broadcast() || u32::from(ip.dst) == subnet | 7 {
            return Counters::inc(&self.c().drop_broadcast);
        }
        let upper = match ip.protocol {
            _ if ip.is_fragment() => Upper::Other,
            PROTO_TCP => Upper::Tcp(ip.ihl),
            PROTO_UDP => Upper::Udp,
            _ => Upper::Other,
        };
        if !self.settle_checksum(p, upper) {
            return;
        }
        if ip.dst == self.cfg.nat_v4 {
            return self.tcp_from_listener(&IpHdr::V4(ip), p);
        }
        if ip.is_fragment() {
            return match self.reasm.add(crate::frag::piece4(&ip, p), self.now) {
                Ok(mut whole) => self.on_packet(&mut whole),
                Err(crate::frag::Frag::Pending) => {}
                Err(crate::frag::Frag::Bad) => Counters::inc(&self.c().drop_fragment),
            };
        }
        let internal = u32::from(ip.dst) & !7 == subnet;
        if internal && ip.dst != self.cfg.dns_v4 {
            return Counters::inc(&self.c().drop_internal_dst);
        }
        // The address test first: the mapping lookup of path_of is paid
        // only by a non-global destination behind the well-known prefix.
        let wkp_rule = self.cfg.refuse_non_global_wkp;
        if !internal
            && Ipv4Path::Nat64.refuses_non_global(&self.cfg.prefix, wkp_rule, ip.dst)
            && self.path_of(&ip, p) == Ipv4Path::Nat64
        {
            Counters::inc(&self.c().drop_non_global);
            let err = IcmpError::unreachable4(Icmpv4DstUnreachable::CommProhibited);
            return self.refuse(&IpHdr::V4(ip), p, err);
        }
        match ip.protocol {
            PROTO_TCP => self.tcp_from_app(&IpHdr::V4(ip), p),
            PROTO_UDP => self.udp_from_app(&IpHdr::V4(ip), p),
            PROTO_ICMP if !internal => self.icmp_from_app(&IpHdr::V4(ip), p),
            PROTO_ICMP if ip.dst == self.cfg.dns_v4 => self.icmp_to_relay(&ip, p),
            PROTO_ICMP => Counters::inc(&self.c().drop_internal_dst),
            _ => {
                Counters::inc(&self.c().drop_unsupported_proto);
                let err = IcmpError::unreachable4(Icmpv4DstUnreachable::ProtoUnreachable);
                self.refuse(&IpHdr::V4(ip), p, err);
            }
        }
    }

    /// The path `p` would leave on: an existing UDP or echo mapping's own
    /// (a mapping keeps the path it was created on, and endpoint-
    /// independent mapping sends each new destination through it), else
    /// the current one (the packet makes a new flow; a TCP segment of an
    /// existing flow has a destination that passed this check at its SYN).
    fn path_of(&self, ip: &Ip4, p: &[u8]) -> Ipv4Path {
        let l4 = p.get(ip.ihl..).unwrap_or_default();
        let port_at = |i: usize| l4.get(i..i + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
        let slot = match ip.protocol {
            PROTO_UDP => port_at(0).and_then(|id| self.udp.get(MapKey { v6: false, id })),
            PROTO_ICMP => port_at(4).and_then(|id| self.icmp.get(MapKey { v6: false, id })),
            _ => None,
        };
        match slot.and_then(|s| self.slots.get(s)) {
            Some(Slot::Udp(f)) => f.path,
            Some(Slot::Icmp(f)) => f.path,
            _ => self.cfg.ipv4_path,
        }
    }

    /// An IPv6 packet from the TUN (`carry_ipv6`): carried to its own
    /// destination. Refused: a source other than `clat_v6` (the listener's
    /// packets come from there too), multicast, destinations that are not
    /// global unicast (unspecified, loopback, link-local), IPv4-mapped, or
    /// inside the TUN's /64 other than the NAT address
    /// ([`packet::carried_ipv6_destination`]); those on the TUN's link are
    /// answered with Address Unreachable ([`packet::on_tun_link`]), an
    /// upper layer other than TCP, UDP and ICMPv6 with Parameter Problem
    /// code 1.
    fn on_packet6(&mut self, p: &mut [u8]) {
        let ip = match packet::parse_ip6(p) {
            Ok(ip) => ip,
            Err(ParseError::Fragment) => {
                if self.settle_checksum(p, Upper::Other) {
                    self.fragment6(p);
                }
                return;
            }
            Err(_) => return Counters::inc(&self.c().drop_malformed),
        };
        let p = &mut p[..ip.total_len];
        let upper = match ip.proto {
            PROTO_TCP => Upper::Tcp(IpHdr::V6(ip).upper_offset()),
            PROTO_UDP => Upper::Udp,
            _ => Upper::Other,
        };
        if !self.settle_checksum(p, upper) {
            return;
        }
        if ip.src != self.cfg.clat_v6 {
            return Counters::inc(&self.c().drop_bad_source);
        }
        if ip.dst.is_multicast() {
            return Counters::inc(&self.c().drop_multicast);
        }
        if ip.dst == self.cfg.nat_v6 {
            return self.tcp_from_listener(&IpHdr::V6(ip), p);
        }
        if !packet::carried_ipv6_destination(ip.dst, self.cfg.clat_v6) {
            Counters::inc(&self.c().drop_internal_dst);
            if packet::on_tun_link(ip.dst, self.cfg.clat_v6) {
                // TCP too: connect() fails with EHOSTUNREACH, as it would
                // for a neighbour that never answers.
                // From the link's router, as RFC 4443 2.2 (c) asks (the
                // destination does not exist to answer; `nat_v6` is also
                // the source of the engine's Time Exceeded).
                let code = Icmpv6DstUnreachable::AddrUnreachable as u8;
                let err = IcmpError::V6(Icmpv6Message::DstUnreachable, code, 0);
                let router = self.cfg.nat_v6.into();
                self.icmp_error_from(&IpHdr::V6(ip), p, err, router);
            }
            return;
        }
        match ip.proto {
            PROTO_TCP => self.tcp_from_app(&IpHdr::V6(ip), p),
            PROTO_UDP => self.udp_from_app(&IpHdr::V6(ip), p),
            PROTO_ICMPV6 => self.icmp_from_app(&IpHdr::V6(ip), p),
            // No Next Header (RFC 8200 section 4.7): nothing to carry or
            // to complain about.
            IPV6_NO_NEXT_HEADER => Counters::inc(&self.c().drop_unsupported_proto),
            _ => {
                // What a host that does not know the protocol answers (RFC
                // 8200 section 4, RFC 4443 section 3.4): the engine carries
                // only what sockets without privileges can send.
                Counters::inc(&self.c().drop_unsupported_proto);
                let code = Icmpv6ParamProblem::UnrecognizedNextHeader as u8;
                let pointer = ip.proto_at as u32;
                let err = IcmpError::V6(Icmpv6Message::ParamProblem, code, pointer);
                self.icmp_error(&IpHdr::V6(ip), p, err);
            }
        }
    }

    /// An IPv6 fragment from the TUN: reassembled ([`crate::frag`]) under
    /// the same source and multicast rules as a whole packet, and the
    /// datagram then taken as if it had come whole.
    fn fragment6(&mut self, p: &[u8]) {
        let f = match packet::parse_fragment6(p) {
            Ok(f) => f,
            Err(_) => return Counters::inc(&self.c().drop_malformed),
        };
        if f.src != self.cfg.clat_v6 {
            return Counters::inc(&self.c().drop_bad_source);
        }
        if f.dst.is_multicast() {
            return Counters::inc(&self.c().drop_multicast);
        }
        match self.reasm6.add(crate::frag::piece6(&f), self.now) {
            Ok(mut whole) => {
                self.reassembled6 = true;
                self.on_packet6(&mut whole);
                self.reassembled6 = false;
            }
            Err(crate::frag::Frag::Pending) => {}
            Err(crate::frag::Frag::Bad) => Counters::inc(&self.c().drop_fragment),
        }
    }

    /// Settles the checksum of the TUN packet `p` ([`crate::tun_io::settle`],
    /// `upper` its upper layer): after this,
    /// `rx_offload` is the header to write it back with on the NAT path,
    /// or `None` and the checksum is complete. Whether `p` goes on (a bad
    /// header is counted as malformed).
    fn settle_checksum(&mut self, p: &mut [u8], upper: Upper) -> bool {
        match crate::tun_io::settle(self.rx_offload.take(), p, upper) {
            Ok(h) => {
                self.rx_offload = h;
                true
            }
            Err(e) => {
                log::debug!("TUN packet with a bad virtio-net header: {e:?}");
                Counters::inc(&self.c().drop_malformed);
                false
            }
        }
    }

    /// [`Loop::refuse`] with the Destination Unreachable for `why` in the
    /// packet's family.
    fn refuse_ip(&mut self, ip: &IpHdr, p: &[u8], why: Unreachable) {
        self.refuse(ip, p, IcmpError::unreachable(ip, why));
    }

    /// The TUN side of the TCP trick for a flow of `dst`'s family: the
    /// CLAT address (the app's and the listener's), the NAT address and
    /// the listener's port.
    fn tun_side(&self, dst: IpAddr) -> (IpAddr, IpAddr, u16) {
        if dst.is_ipv6() {
            (self.cfg.clat_v6.into(), self.cfg.nat_v6.into(), self.lport6)
        } else {
            (self.cfg.clat_v4.into(), self.cfg.nat_v4.into(), self.lport)
        }
    }

    /// Answers a packet we will not carry, in its family: RST for TCP,
    /// else the ICMP error `err` ([`Loop::icmp_error`]), counted.
    fn refuse(&mut self, ip: &IpHdr, p: &[u8], err: IcmpError) {
        if ip.upper_proto() != PROTO_TCP {
            return self.icmp_error(ip, p, err);
        }
        let mut out = std::mem::take(&mut self.txbuf);
        if let Some(n) = packet::emit_rst_for(&mut out, ip, &p[ip.upper_offset()..]) {
            Counters::inc(&self.c().tcp_rst_sent);
            tun_write(&self.tun, &self.sh.counters, &out[..n]);
        }
        self.txbuf = out;
    }

    /// Answers `ip`/`p` with the ICMP error `err` from its destination,
    /// unless it is an ICMP message other than an echo request (never an
    /// error about an error: RFC 1812 4.3.2.7, RFC 4443 2.4 (e)), counted.
    /// An error of the other family than the packet's is a caller's
    /// mistake: nothing is sent.
    fn icmp_error(&mut self, ip: &IpHdr, p: &[u8], err: IcmpError) {
        self.icmp_error_from(ip, p, err, ip.dst_ip());
    }

    /// [`Loop::icmp_error`] from `from` (of the packet's family) instead of
    /// the packet's destination: the engine answering as the TUN link's
    /// router, for a destination that does not exist.
    fn icmp_error_from(&mut self, ip: &IpHdr, p: &[u8], err: IcmpError, from: IpAddr) {
        let (icmp, echo_request) = match ip {
            IpHdr::V4(_) => (PROTO_ICMP, Icmpv4Message::EchoRequest as u8),
            IpHdr::V6(_) => (PROTO_ICMPV6, Icmpv6Message::EchoRequest as u8),
        };
        if ip.upper_proto() == icmp && p.get(ip.upper_offset()) != Some(&echo_request) {
            return;
        }
        if !self.icmp_rate_allows() {
            return;
        }
        let mut out = std::mem::take(&mut self.txbuf);
        let n = match (ip, err, from) {
            (IpHdr::V4(i), IcmpError::V4(m, c), IpAddr::V4(from)) => {
                let id = self.next_ip_id();
                Some(packet::emit_error_about(&mut out, i, p, (m, c), from, id))
            }
            (IpHdr::V6(i), IcmpError::V6(m, c, rest), IpAddr::V6(from)) => Some(
                packet::emit_error6_about(&mut out, i, p, (m, c, rest), from),
            ),
            _ => None,
        };
        if let Some(n) = n {
            Counters::inc(&self.c().icmp_errors_sent);
            tun_write(&self.tun, &self.sh.counters, &out[..n]);
        }
        self.txbuf = out;
    }

    /// Whether an ICMP error the engine originates may go now
    /// ([`crate::icmp_rate`]); counts the ones that may not.
    pub(super) fn icmp_rate_allows(&mut self) -> bool {
        let ok = self.icmp_rate.allow(self.now);
        if !ok {
            Counters::inc(&self.c().drop_icmp_rate_limited);
        }
        ok
    }

    // ---- sockets -----------------------------------------------------

    /// Logs a socket-creation failure: warn at most every [`WARN_EVERY`]
    /// (it is reachable per app packet), debug otherwise.
    fn socket_warn(&mut self, msg: std::fmt::Arguments<'_>) {
        let now = Instant::now();
        if self
            .last_socket_warn
            .is_none_or(|t| now.duration_since(t) >= WARN_EVERY)
        {
            self.last_socket_warn = Some(now);
            log::warn!("{msg} (further failures counted in drop_upstream_socket)");
        } else {
            log::debug!("{msg}");
        }
    }

    // ---- dispatch and timers -----------------------------------------

    fn on_socket(&mut self, slot: usize, side: usize, ev: &Event) {
        match self.slots.get(slot) {
            Some(Slot::Relay(_)) => self.on_relay(slot, side, ev),
            Some(Slot::Upstream(_)) => self.on_upstream(slot, ev),
            Some(Slot::Udp(_)) => self.on_udp(slot, ev),
            Some(Slot::Icmp(_)) => self.on_icmp(slot, ev),
            Some(Slot::DnsUdp(i, _)) => {
                let i = *i;
                self.on_dns_udp(slot, i)
            }
            Some(Slot::DnsTcp(_)) => self.on_dns_tcp(slot, ev),
            _ => {}
        }
    }

    fn run_timers(&mut self) {
        let now = Instant::now();
        self.now = now;
        self.tcp.handle_timeout(now, &self.sh.counters);
        self.run_tcp_actions();
        self.dns.handle_timeout(now, &self.sh.counters);
        self.run_dns_actions();
        while let Some((at, key)) = self.timers.pop_due(now) {
            match key {
                // The TCP and DNS cores' own timers.
                TimerKey::Nat(_) | TimerKey::Dns(_) => {}
                TimerKey::Udp(sp) => self.datagram_timer(Datagram::Udp, sp, at),
                TimerKey::Icmp(id) => self.datagram_timer(Datagram::Echo, id, at),
                TimerKey::UdpCopy(sp) => self.too_big.on_deadline(sp, at),
            }
        }
    }
}
