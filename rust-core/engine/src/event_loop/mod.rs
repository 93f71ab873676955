//! The engine thread: one mio `Poll` over the TUN, the TCP listener, every
//! upstream socket and a `Waker` for commands. It sleeps until a socket is
//! ready or the earliest flow deadline, and not at all when idle.

use crate::config::EngineConfig;
use crate::dns_wire;
use crate::icmp::map_icmp6_error;
use crate::nat_tcp::{self, NatState, NatTable};
use crate::packet::{
    self, Ip4, ParseError, TcpSeg, PROTO_ICMP, PROTO_TCP, PROTO_UDP, TCP_ACK, TCP_FIN, TCP_RST,
    TCP_SYN,
};
use crate::stats::Counters;
use crate::sys;
use crate::tcp_relay::{set_rst_on_close, Moved, Outcome, Relay};
use crate::timers::{TimerKey, Timers};
use clat_protect::Protector;
use ipnet::Ipv6Net;
use mio::event::Event;
use mio::net::{TcpListener, TcpStream, UdpSocket};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub(crate) const TUN: Token = Token(usize::MAX - 1);
pub(crate) const WAKER: Token = Token(usize::MAX - 2);
const LISTENER: Token = Token(usize::MAX - 3);

/// How long a closed TCP flow's NAT entry keeps translating late segments
/// (the final ACK of a passive close, a retransmitted FIN): both ends are
/// in this host, so they come within milliseconds.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// How long the NAT port of a flow whose listener side may sit in
/// TIME_WAIT stays unused: Linux's TCP_TIMEWAIT_LEN. A new flow on that
/// tuple sooner would have its SYN refused by PAWS (see nat_tcp).
const TIME_WAIT_HOLD: Duration = Duration::from_secs(60);
/// Cap on DNS queries in flight (answered SERVFAIL beyond).
const MAX_DNS_PENDING: usize = 4096;
/// Minimum interval between two warn-level logs of socket-creation failures.
const WARN_EVERY: Duration = Duration::from_secs(10);
/// Largest UDP payload an IPv4 packet can carry.
const MAX_UDP_PAYLOAD: usize = 65535 - 28;
/// TUN packets handled per turn before sockets get theirs.
const TUN_BATCH: usize = 256;

/// Requests from the API threads.
#[derive(Debug)]
pub(crate) enum Command {
    Stop,
    SetPrefix(Ipv6Net),
    SetDns(Vec<SocketAddr>),
    NetworkChanged,
}

/// State shared with the API side.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub counters: Counters,
    pub exit: Mutex<Option<String>>,
    pub running: AtomicBool,
}

struct UdpFlow {
    sp: u16,
    sock: UdpSocket,
    last: Instant,
    timer_at: Instant,
}

struct IcmpFlow {
    id: u16,
    sock: UdpSocket,
    last: Instant,
    timer_at: Instant,
}

struct DnsTcp {
    uid: u16,
    server: SocketAddr,
    sock: TcpStream,
    connected: bool,
    out: Vec<u8>,
    out_pos: usize,
    inb: Vec<u8>,
}

struct Pending {
    app_sp: u16,
    app_id: u16,
    /// The query with the upstream id already in place.
    query: Vec<u8>,
    server: usize,
    timer_at: Instant,
    client_max: usize,
    truncated: Option<Vec<u8>>,
    tcp_slot: Option<usize>,
}

enum Slot {
    Free,
    /// Closed during this batch of events; freed after it so that a stale
    /// event of the same batch cannot reach a new occupant.
    Dead,
    Relay(Box<Relay>),
    Udp(UdpFlow),
    Icmp(IcmpFlow),
    DnsUdp(usize, UdpSocket),
    DnsTcp(Box<DnsTcp>),
}

pub(crate) struct Loop {
    poll: Poll,
    tun: OwnedFd,
    listener: TcpListener,
    lport: u16,
    cfg: EngineConfig,
    sh: Arc<Shared>,
    protector: Protector,
    rx: Receiver<Command>,
    slots: Vec<Slot>,
    free: Vec<usize>,
    dead: Vec<usize>,
    nat: NatTable,
    /// NAT entries in the Closing state.
    closing_entries: usize,
    udp: HashMap<u16, usize>,
    icmp: HashMap<u16, usize>,
    dns_socks: Vec<Option<usize>>,
    pending: HashMap<u16, Pending>,
    next_dns_id: u16,
    timers: Timers,
    reasm: crate::frag::Reassembler,
    rxbuf: Vec<u8>,
    /// Relay scratch: bytes pass through here when the destination keeps up.
    scratch: Vec<u8>,
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
}

fn tok(slot: usize, side: usize) -> Token {
    Token(slot * 2 + side)
}

/// Writes one packet to the TUN, counting it (or its drop).
fn tun_write(tun: &OwnedFd, c: &Counters, pkt: &[u8]) {
    // SAFETY: pkt is a valid buffer for the duration of the call.
    let n = unsafe { libc::write(tun.as_raw_fd(), pkt.as_ptr().cast(), pkt.len()) };
    if n == pkt.len() as isize {
        Counters::inc(&c.tun_tx_packets);
        Counters::add(&c.tun_tx_bytes, pkt.len() as u64);
    } else {
        log::debug!(
            "TUN write of {} bytes failed: {}",
            pkt.len(),
            io::Error::last_os_error()
        );
        Counters::inc(&c.drop_tun_write);
    }
}

/// ICMPv4 destination-unreachable code for a local send error.
fn unreach_code(e: &io::Error) -> Option<u8> {
    match e.raw_os_error()? {
        libc::ENETUNREACH => Some(0),
        libc::EHOSTUNREACH | libc::EADDRNOTAVAIL => Some(1),
        libc::EACCES | libc::EPERM => Some(13),
        _ => None,
    }
}

/// An unpredictable id for a relayed query. The relay's upstream socket
/// keeps one source port, so the id is all an off-path spoofer has to
/// guess (RFC 5452): sequential ids made forged answers easy. The raw
/// syscall rather than libc's wrapper: older Android libcs lack the latter.
fn random_dns_id() -> Option<u16> {
    let mut b = [0u8; 2];
    // SAFETY: b is valid for writes of 2 bytes.
    let n = unsafe {
        libc::syscall(
            libc::SYS_getrandom,
            b.as_mut_ptr(),
            2usize,
            libc::GRND_NONBLOCK,
        )
    };
    (n == 2).then(|| u16::from_ne_bytes(b))
}

/// The reserve descriptor of [`Loop::refuse_backlogged`].
fn open_spare_fd() -> Option<OwnedFd> {
    std::fs::File::open("/dev/null").ok().map(OwnedFd::from)
}

fn udp_payload(p: &[u8], ip: &Ip4) -> Option<(u16, u16, std::ops::Range<usize>)> {
    let u = p.get(ip.ihl..ip.total_len)?;
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
    pub(crate) fn new(
        poll: Poll,
        tun: OwnedFd,
        listener: TcpListener,
        cfg: EngineConfig,
        sh: Arc<Shared>,
        protector: Protector,
        rx: Receiver<Command>,
    ) -> io::Result<Loop> {
        let mut listener = listener;
        let lport = listener.local_addr()?.port();
        poll.registry()
            .register(&mut SourceFd(&tun.as_raw_fd()), TUN, Interest::READABLE)?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let n = cfg.upstream_dns.len();
        let relay_buffer = cfg.relay_buffer;
        Ok(Loop {
            poll,
            tun,
            listener,
            lport,
            cfg,
            sh,
            protector,
            rx,
            slots: Vec::new(),
            free: Vec::new(),
            dead: Vec::new(),
            nat: NatTable::default(),
            closing_entries: 0,
            udp: HashMap::new(),
            icmp: HashMap::new(),
            dns_socks: vec![None; n],
            pending: HashMap::new(),
            next_dns_id: 1,
            timers: Timers::default(),
            reasm: Default::default(),
            rxbuf: vec![0u8; 65536],
            scratch: vec![0u8; relay_buffer],
            txbuf: vec![0u8; 65536 + 64],
            now: Instant::now(),
            ip_id: 1,
            stop: false,
            tun_more: false,
            spare_fd: open_spare_fd(),
            last_socket_warn: None,
        })
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
            "engine running: listener port {}, prefix {}",
            self.lport,
            self.cfg.prefix
        );
        while !self.stop {
            let timeout = if self.tun_more {
                Some(Duration::ZERO)
            } else {
                self.timers
                    .next()
                    .map(|t| t.saturating_duration_since(Instant::now()))
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
            for ev in events.iter() {
                match ev.token() {
                    TUN => {
                        self.on_tun();
                        tun_done = true;
                    }
                    WAKER => self.on_commands(),
                    LISTENER => self.on_accept(),
                    Token(t) => self.on_socket(t / 2, t % 2, ev),
                }
            }
            if self.tun_more && !tun_done {
                self.on_tun();
            }
            self.run_timers();
            for s in self.dead.drain(..) {
                self.slots[s] = Slot::Free;
                self.free.push(s);
            }
        }
        self.sh.running.store(false, Ordering::SeqCst);
        self.shutdown();
    }

    /// Closes everything (RST for live TCP flows so apps do not hang).
    fn shutdown(&mut self) {
        for s in &mut self.slots {
            if let Slot::Relay(r) = s {
                set_rst_on_close(&r.app.sock);
                set_rst_on_close(&r.up.sock);
            }
            *s = Slot::Free;
        }
        let c = &self.sh.counters;
        for g in [&c.flows_tcp, &c.flows_udp, &c.flows_icmp] {
            g.store(0, Ordering::Relaxed);
        }
        self.nat.clear();
        self.closing_entries = 0;
        self.udp.clear();
        self.icmp.clear();
        self.pending.clear();
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
        self.nat.len() - self.closing_entries + self.udp.len() + self.icmp.len()
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
                    self.cfg.prefix = p;
                    self.reset_upstream();
                }
                Command::SetDns(v) => {
                    self.cfg.upstream_dns = v;
                    self.reset_dns();
                }
                Command::NetworkChanged => {
                    self.reset_upstream();
                    self.reset_dns();
                }
            }
        }
    }

    /// Resets every flow that uses the upstream network: TCP flows get RST
    /// both ways, UDP/ICMP mappings are forgotten.
    fn reset_upstream(&mut self) {
        for i in 0..self.slots.len() {
            match &self.slots[i] {
                Slot::Relay(_) => self.close_relay(i, true, true),
                Slot::Udp(_) | Slot::Icmp(_) => self.close_mapping(i),
                _ => {}
            }
        }
        for np in self.nat.ports() {
            if matches!(self.nat.get(np).map(|e| e.state), Some(NatState::SynSeen)) {
                self.remove_nat(np);
            }
        }
    }

    fn reset_dns(&mut self) {
        for i in 0..self.dns_socks.len() {
            if let Some(s) = self.dns_socks[i] {
                self.kill_slot(s);
            }
        }
        self.dns_socks = vec![None; self.cfg.upstream_dns.len()];
        let uids: Vec<u16> = self.pending.keys().copied().collect();
        for uid in uids {
            if let Some(t) = self.pending.get_mut(&uid).and_then(|p| p.tcp_slot.take()) {
                self.kill_slot(t);
            }
            if let Some(p) = self.pending.get_mut(&uid) {
                p.server = 0;
            }
            self.send_dns(uid);
        }
    }

    // ---- TUN ---------------------------------------------------------

    /// Reads TUN packets until EAGAIN, but at most a batch at a time so
    /// that sockets get their turn under load (`tun_more` then makes the
    /// next poll return at once).
    fn on_tun(&mut self) {
        self.tun_more = false;
        for _ in 0..TUN_BATCH {
            let fd = self.tun.as_raw_fd();
            // SAFETY: rxbuf is a valid writable buffer of its length.
            let n = unsafe { libc::read(fd, self.rxbuf.as_mut_ptr().cast(), self.rxbuf.len()) };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::WouldBlock => return,
                    io::ErrorKind::Interrupted => continue,
                    _ => {
                        self.set_exit(format!("TUN read failed: {e}"));
                        self.stop = true;
                        return;
                    }
                }
            }
            if n == 0 {
                // An empty packet, or the end of the fd (a TUN never does
                // this, other packet fds might): tell them apart by hang-up.
                let mut pfd = libc::pollfd {
                    fd,
                    events: libc::POLLIN | libc::POLLRDHUP,
                    revents: 0,
                };
                // SAFETY: one valid pollfd, zero timeout.
                let r = unsafe { libc::poll(&mut pfd, 1, 0) };
                if r > 0 && pfd.revents & (libc::POLLHUP | libc::POLLRDHUP | libc::POLLERR) != 0 {
                    self.set_exit("TUN closed".into());
                    self.stop = true;
                    return;
                }
                Counters::inc(&self.c().drop_malformed);
                continue;
            }
            let n = n as usize;
            Counters::inc(&self.c().tun_rx_packets);
            Counters::add(&self.c().tun_rx_bytes, n as u64);
            let mut buf = std::mem::take(&mut self.rxbuf);
            self.on_packet(&mut buf[..n]);
            self.rxbuf = buf;
        }
        self.tun_more = true;
    }

    fn on_packet(&mut self, p: &mut [u8]) {
        let ip = match packet::parse_ip4(p) {
            Ok(ip) => ip,
            Err(ParseError::NotIpv4) => return Counters::inc(&self.c().drop_not_ipv4),
            Err(ParseError::Malformed) => return Counters::inc(&self.c().drop_malformed),
        };
        let p = &mut p[..ip.total_len];
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
        if ip.dst == self.cfg.nat_v4 {
            return self.tcp_from_listener(&ip, p);
        }
        if ip.fragment {
            return match self.reasm.add(&ip, p, self.now) {
                Ok(mut whole) => self.on_packet(&mut whole),
                Err(crate::frag::Frag::Pending) => {}
                Err(crate::frag::Frag::Bad) => Counters::inc(&self.c().drop_fragment),
            };
        }
        let internal = u32::from(ip.dst) & !7 == subnet;
        if internal && ip.dst != self.cfg.dns_v4 {
            return Counters::inc(&self.c().drop_internal_dst);
        }
        if !internal
            && self.cfg.refuse_non_global_wkp
            && packet::is_wkp(&self.cfg.prefix)
            && !packet::is_global_v4(ip.dst)
        {
            Counters::inc(&self.c().drop_non_global);
            return self.refuse(&ip, p, 13);
        }
        match ip.proto {
            PROTO_TCP => self.tcp_from_app(&ip, p),
            PROTO_UDP => self.udp_from_app(&ip, p),
            PROTO_ICMP if !internal => self.icmp_from_app(&ip, p),
            PROTO_ICMP => Counters::inc(&self.c().drop_internal_dst),
            _ => {
                Counters::inc(&self.c().drop_unsupported_proto);
                self.refuse(&ip, p, 2);
            }
        }
    }

    /// Answers a packet we will not carry: RST for TCP, else ICMPv4
    /// destination unreachable with `code` (never about an ICMP error).
    fn refuse(&mut self, ip: &Ip4, p: &[u8], code: u8) {
        let mut out = std::mem::take(&mut self.txbuf);
        let n = if ip.proto == PROTO_TCP {
            packet::build_rst_for(&mut out, ip, &p[ip.ihl..])
        } else if ip.proto == PROTO_ICMP && p.get(ip.ihl).is_none_or(|&t| t != 8) {
            None
        } else {
            let id = self.next_ip_id();
            Some(packet::build_icmp_error(
                &mut out,
                ip.dst,
                ip.src,
                3,
                code,
                [0; 4],
                &p[..p.len().min(ip.ihl + 8)],
                id,
            ))
        };
        if let Some(n) = n {
            if ip.proto == PROTO_TCP {
                Counters::inc(&self.c().tcp_rst_sent);
            } else {
                Counters::inc(&self.c().icmp_errors_sent);
            }
            tun_write(&self.tun, &self.sh.counters, &out[..n]);
        }
        self.txbuf = out;
    }

    // ---- TCP ---------------------------------------------------------

    fn tcp_from_app(&mut self, ip: &Ip4, p: &mut [u8]) {
        let t = &p[ip.ihl..];
        if t.len() < 20 || ((t[12] >> 4) as usize) * 4 < 20 || ((t[12] >> 4) as usize) * 4 > t.len()
        {
            return Counters::inc(&self.c().drop_malformed);
        }
        let sp = u16::from_be_bytes([t[0], t[1]]);
        let dp = u16::from_be_bytes([t[2], t[3]]);
        let Some(seg) = packet::tcp_seg(t) else {
            return Counters::inc(&self.c().drop_malformed);
        };
        let flags = seg.flags;
        let is_syn = flags & (TCP_SYN | TCP_ACK | TCP_RST) == TCP_SYN;
        let key = (sp, ip.dst, dp);
        if ip.dst == self.cfg.dns_v4 && dp != 53 {
            Counters::inc(&self.c().drop_internal_dst);
            return self.refuse(ip, p, 3);
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
                    if flags & TCP_RST == 0 {
                        self.refuse(ip, p, 3);
                    }
                    return;
                }
                if self.flows() >= self.cfg.max_flows {
                    Counters::inc(&self.c().drop_flow_limit);
                    return self.refuse(ip, p, 13);
                }
                if let Some(old) = existing {
                    self.nat.unlink_key(old);
                }
                let at = self.now + self.cfg.tcp_transitory_timeout;
                let Some(np) = self.nat.insert(key, seg.seq, at) else {
                    Counters::inc(&self.c().drop_flow_limit);
                    return self.refuse(ip, p, 13);
                };
                self.timers.insert(at, TimerKey::Nat(np));
                Counters::inc(&self.c().flows_tcp);
                Counters::inc(&self.c().flows_tcp_total);
                log::debug!("tcp flow {sp} -> {}:{dp} via nat port {np}", ip.dst);
                np
            }
        };
        if flags & (TCP_FIN | TCP_SYN | TCP_RST) == TCP_FIN
            && self.app_fin(np, &seg, ip.dst, dp, sp)
        {
            return;
        }
        nat_tcp::rewrite(p, ip.ihl, self.cfg.nat_v4, np, self.cfg.clat_v4, self.lport);
        tun_write(&self.tun, &self.sh.counters, p);
    }

    /// The app sent a FIN on flow `np`. Closes the local leg without
    /// TIME_WAIT when that is safe (see nat_tcp's module doc) and returns
    /// true: the FIN is then answered here and not carried to the kernel.
    fn app_fin(&mut self, np: u16, seg: &TcpSeg, d: Ipv4Addr, dp: u16, sp: u16) -> bool {
        let Some(e) = self.nat.get_mut(np) else {
            return false;
        };
        e.app_fin = true;
        let slot = match e.state {
            NatState::Active(slot) => slot,
            // A retransmission of a FIN answered here: answer it again.
            NatState::Closing if e.fast_closed => {
                self.final_ack(seg, d, dp, sp);
                return true;
            }
            _ => return false,
        };
        // The FIN acknowledges ours (so every byte we sent, too) and
        // carries nothing.
        if seg.flags & TCP_ACK == 0 || seg.payload != 0 || e.fin_end != Some(seg.ack) {
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
            Ok(st)
                if st.unread == 0
                    && isn.wrapping_add(1).wrapping_add(st.bytes_received as u32) == seg.seq => {}
            _ => return false,
        }
        set_rst_on_close(&r.app.sock);
        if let Some(e) = self.nat.get_mut(np) {
            e.fast_closed = true;
        }
        self.final_ack(seg, d, dp, sp);
        Counters::inc(&self.c().tcp_fast_closes);
        // Upstream has sent its FIN and has nothing left from the app:
        // dropping it closes it in order (its FIN follows).
        self.close_relay(slot, false, false);
        true
    }

    /// The ACK of the app's FIN `seg` that the listener side would have
    /// sent, from `d:dp` to the app's port `sp`; timestamps echoed (RFC
    /// 7323) when the FIN had them, our TSval being the one it echoes.
    fn final_ack(&mut self, seg: &TcpSeg, d: Ipv4Addr, dp: u16, sp: u16) {
        let mut out = std::mem::take(&mut self.txbuf);
        let n = packet::build_tcp_with(
            &mut out,
            (d, dp),
            (self.cfg.clat_v4, sp),
            seg.ack,
            seg.seq.wrapping_add(1),
            TCP_ACK,
            u16::MAX,
            seg.ts.map(|(val, ecr)| (ecr, val)),
        );
        tun_write(&self.tun, &self.sh.counters, &out[..n]);
        self.txbuf = out;
    }

    fn tcp_from_listener(&mut self, ip: &Ip4, p: &mut [u8]) {
        let t = &p[ip.ihl..];
        if ip.proto != PROTO_TCP || t.len() < 20 {
            return Counters::inc(&self.c().drop_internal_dst);
        }
        let sp = u16::from_be_bytes([t[0], t[1]]);
        let np = u16::from_be_bytes([t[2], t[3]]);
        let seg = packet::tcp_seg(t);
        match self.nat.get_mut(np) {
            Some(e) if sp == self.lport => {
                if let Some(seg) = seg {
                    if seg.flags & TCP_RST != 0 && e.fast_closed {
                        // The abort that ended a fast-closed flow: the app
                        // has its ACK already.
                        return;
                    }
                    if seg.flags & TCP_FIN != 0 {
                        e.fin_end = Some(seg.seq.wrapping_add(seg.payload as u32 + 1));
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

    fn on_accept(&mut self) {
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
                self.cfg.upstream_dns.first().copied()
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
                .and_then(|t| self.connect_tcp(t));
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
            let rw = Interest::READABLE | Interest::WRITABLE;
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

    /// A protected, non-blocking TCP socket connecting to `to`.
    fn connect_tcp(&self, to: SocketAddr) -> io::Result<TcpStream> {
        let s = Socket::new(
            Domain::for_address(to),
            Type::STREAM.nonblocking().cloexec(),
            Some(Protocol::TCP),
        )?;
        self.protector.protect(s.as_raw_fd())?;
        let _ = s.set_tcp_nodelay(true);
        match s.connect(&SockAddr::from(to)) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(e),
        }
        Ok(TcpStream::from_std(std::net::TcpStream::from(s)))
    }

    fn on_relay(&mut self, slot: usize, side: usize, ev: &Event) {
        let buf_size = self.cfg.relay_buffer;
        let mut just_connected = None;
        let Slot::Relay(r) = &mut self.slots[slot] else {
            return;
        };
        {
            let s = if side == 0 { &mut r.app } else { &mut r.up };
            if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                s.readable = true;
            }
            if ev.is_writable() || ev.is_write_closed() || ev.is_error() {
                s.writable = true;
            }
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
    fn close_relay(&mut self, slot: usize, rst_app: bool, rst_up: bool) {
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

    fn remove_nat(&mut self, np: u16) {
        if let Some(e) = self.nat.remove(np) {
            self.timers.remove(e.timer_at, TimerKey::Nat(np));
            if e.state == NatState::Closing {
                self.closing_entries -= 1;
            } else {
                Counters::dec(&self.sh.counters.flows_tcp);
            }
        }
    }

    // ---- UDP ---------------------------------------------------------

    /// A protected, non-blocking datagram socket for upstream use, with
    /// IPV6_RECVERR so ICMPv6 errors reach us.
    fn upstream_dgram(
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

    fn udp_from_app(&mut self, ip: &Ip4, p: &mut [u8]) {
        let Some((sp, dp, range)) = udp_payload(p, ip) else {
            return Counters::inc(&self.c().drop_malformed);
        };
        if ip.dst == self.cfg.dns_v4 {
            if dp == 53 {
                return self.dns_query(sp, &p[range]);
            }
            Counters::inc(&self.c().drop_internal_dst);
            return self.refuse(ip, p, 3);
        }
        let slot = match self.udp.get(&sp) {
            Some(&s) => s,
            None => {
                if self.flows() >= self.cfg.max_flows {
                    Counters::inc(&self.c().drop_flow_limit);
                    return self.refuse(ip, p, 13);
                }
                let mut sock = match self.upstream_dgram(Domain::IPV6, Protocol::UDP, true) {
                    Ok(s) => s,
                    Err(e) => {
                        self.socket_warn(format_args!("upstream UDP socket: {e}"));
                        return Counters::inc(&self.c().drop_upstream_socket);
                    }
                };
                let slot = self.alloc_slot(Slot::Free);
                if self
                    .poll
                    .registry()
                    .register(&mut sock, tok(slot, 0), Interest::READABLE)
                    .is_err()
                {
                    self.slots[slot] = Slot::Dead;
                    self.dead.push(slot);
                    return Counters::inc(&self.c().drop_upstream_socket);
                }
                let at = self.now + self.cfg.udp_timeout;
                self.slots[slot] = Slot::Udp(UdpFlow {
                    sp,
                    sock,
                    last: self.now,
                    timer_at: at,
                });
                self.timers.insert(at, TimerKey::Udp(sp));
                self.udp.insert(sp, slot);
                Counters::inc(&self.c().flows_udp);
                Counters::inc(&self.c().flows_udp_total);
                slot
            }
        };
        let to = SocketAddr::V6(SocketAddrV6::new(
            packet::embed(&self.cfg.prefix, ip.dst),
            dp,
            0,
            0,
        ));
        let Slot::Udp(f) = &mut self.slots[slot] else {
            return;
        };
        f.last = self.now;
        let res = f.sock.send_to(&p[range], to);
        match res {
            Ok(n) => {
                Counters::inc(&self.sh.counters.up_tx_packets);
                Counters::add(&self.sh.counters.up_tx_bytes, n as u64);
            }
            Err(e) => {
                log::debug!("udp send to {to}: {e}");
                Counters::inc(&self.sh.counters.drop_upstream_send);
                // Tell the app, as a router would, instead of silence.
                if let Some(code) = unreach_code(&e) {
                    self.refuse(ip, p, code);
                }
            }
        }
    }

    fn on_udp(&mut self, slot: usize, ev: &Event) {
        if ev.is_error() {
            self.drain_errors(slot);
        }
        let mut out = std::mem::take(&mut self.txbuf);
        for _ in 0..1024 {
            let Slot::Udp(f) = &mut self.slots[slot] else {
                break;
            };
            match f.sock.recv_from(&mut out[28..28 + MAX_UDP_PAYLOAD]) {
                Ok((n, from)) => {
                    let sp = f.sp;
                    f.last = self.now;
                    let c = &self.sh.counters;
                    Counters::inc(&c.up_rx_packets);
                    Counters::add(&c.up_rx_bytes, n as u64);
                    let src = match from {
                        SocketAddr::V6(a) => {
                            packet::extract(&self.cfg.prefix, a.ip()).map(|v4| (v4, a.port()))
                        }
                        SocketAddr::V4(_) => None,
                    };
                    let Some((src, sport)) = src else {
                        Counters::inc(&c.drop_foreign_source);
                        continue;
                    };
                    self.ip_id = self.ip_id.wrapping_add(1);
                    let len = packet::finish_udp(
                        &mut out,
                        src,
                        sport,
                        self.cfg.clat_v4,
                        sp,
                        n,
                        self.ip_id,
                    );
                    tun_write(&self.tun, &self.sh.counters, &out[..len]);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    self.txbuf = out;
                    self.drain_errors(slot);
                    out = std::mem::take(&mut self.txbuf);
                }
            }
        }
        self.txbuf = out;
    }

    /// Turns queued ICMPv6 errors of a UDP or ping socket into ICMPv4
    /// errors towards the app, quoting a reconstructed original packet.
    fn drain_errors(&mut self, slot: usize) {
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
            let Some((typ, code, rest)) = map_icmp6_error(err.typ, err.code, err.info) else {
                continue;
            };
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
            if is_udp {
                packet::write_ip4(&mut q, self.cfg.clat_v4, d4, PROTO_UDP, 28 + err.len, id);
                q[20..22].copy_from_slice(&app_port.to_be_bytes());
                q[22..24].copy_from_slice(&dest.port().to_be_bytes());
                q[24..26].copy_from_slice(&((8 + err.len) as u16).to_be_bytes());
            } else {
                packet::write_ip4(
                    &mut q,
                    self.cfg.clat_v4,
                    d4,
                    PROTO_ICMP,
                    20 + err.len.max(8),
                    id,
                );
                q[20] = 8;
                q[24..26].copy_from_slice(&app_port.to_be_bytes());
                if ll >= 8 {
                    q[26..28].copy_from_slice(&data[6..8]);
                }
            }
            let mut out = std::mem::take(&mut self.txbuf);
            let n =
                packet::build_icmp_error(&mut out, src, self.cfg.clat_v4, typ, code, rest, &q, id);
            tun_write(&self.tun, &self.sh.counters, &out[..n]);
            self.txbuf = out;
            Counters::inc(&self.c().icmp_errors_sent);
        }
    }

    fn close_mapping(&mut self, slot: usize) {
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

    // ---- ICMP echo ---------------------------------------------------

    fn icmp_from_app(&mut self, ip: &Ip4, p: &mut [u8]) {
        let ihl = ip.ihl;
        if p.len() < ihl + 8 || packet::checksum(0, &p[ihl..]) != 0 {
            return Counters::inc(&self.c().drop_malformed);
        }
        if p[ihl] != 8 || p[ihl + 1] != 0 {
            return Counters::inc(&self.c().drop_icmp_type);
        }
        let id = u16::from_be_bytes([p[ihl + 4], p[ihl + 5]]);
        let slot = match self.icmp.get(&id) {
            Some(&s) => s,
            None => {
                if self.flows() >= self.cfg.max_flows {
                    Counters::inc(&self.c().drop_flow_limit);
                    return self.refuse(ip, p, 13);
                }
                let mut sock = match self.upstream_dgram(Domain::IPV6, Protocol::ICMPV6, true) {
                    Ok(s) => s,
                    Err(e) => {
                        self.socket_warn(format_args!(
                            "ping socket (check net.ipv4.ping_group_range): {e}"
                        ));
                        return Counters::inc(&self.c().drop_upstream_socket);
                    }
                };
                let slot = self.alloc_slot(Slot::Free);
                if self
                    .poll
                    .registry()
                    .register(&mut sock, tok(slot, 0), Interest::READABLE)
                    .is_err()
                {
                    self.slots[slot] = Slot::Dead;
                    self.dead.push(slot);
                    return Counters::inc(&self.c().drop_upstream_socket);
                }
                let at = self.now + self.cfg.icmp_timeout;
                self.slots[slot] = Slot::Icmp(IcmpFlow {
                    id,
                    sock,
                    last: self.now,
                    timer_at: at,
                });
                self.timers.insert(at, TimerKey::Icmp(id));
                self.icmp.insert(id, slot);
                Counters::inc(&self.c().flows_icmp);
                Counters::inc(&self.c().flows_icmp_total);
                slot
            }
        };
        // ICMPv4 echo request -> ICMPv6 echo request (the kernel fills in the
        // checksum and its own identifier).
        p[ihl] = 128;
        let to = SocketAddr::V6(SocketAddrV6::new(
            packet::embed(&self.cfg.prefix, ip.dst),
            0,
            0,
            0,
        ));
        let Slot::Icmp(f) = &mut self.slots[slot] else {
            return;
        };
        f.last = self.now;
        match f.sock.send_to(&p[ihl..], to) {
            Ok(n) => {
                Counters::inc(&self.sh.counters.up_tx_packets);
                Counters::add(&self.sh.counters.up_tx_bytes, n as u64);
            }
            Err(e) => {
                log::debug!("ping send to {to}: {e}");
                Counters::inc(&self.sh.counters.drop_upstream_send);
            }
        }
    }

    fn on_icmp(&mut self, slot: usize, ev: &Event) {
        if ev.is_error() {
            self.drain_errors(slot);
        }
        let mut out = std::mem::take(&mut self.txbuf);
        for _ in 0..1024 {
            let Slot::Icmp(f) = &mut self.slots[slot] else {
                break;
            };
            match f.sock.recv_from(&mut out[20..20 + 65515]) {
                Ok((n, from)) => {
                    let id = f.id;
                    f.last = self.now;
                    Counters::inc(&self.sh.counters.up_rx_packets);
                    Counters::add(&self.sh.counters.up_rx_bytes, n as u64);
                    let src = match from {
                        SocketAddr::V6(a) => packet::extract(&self.cfg.prefix, a.ip()),
                        SocketAddr::V4(_) => None,
                    };
                    let Some(src) = src else {
                        Counters::inc(&self.sh.counters.drop_foreign_source);
                        continue;
                    };
                    if n < 8 || out[20] != 129 {
                        Counters::inc(&self.sh.counters.drop_icmp_type);
                        continue;
                    }
                    out[20] = 0;
                    out[21] = 0;
                    out[24..26].copy_from_slice(&id.to_be_bytes());
                    self.ip_id = self.ip_id.wrapping_add(1);
                    let len = packet::finish_icmp(&mut out, src, self.cfg.clat_v4, n, self.ip_id);
                    tun_write(&self.tun, &self.sh.counters, &out[..len]);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    self.txbuf = out;
                    self.drain_errors(slot);
                    out = std::mem::take(&mut self.txbuf);
                }
            }
        }
        self.txbuf = out;
    }

    // ---- DNS relay ---------------------------------------------------

    fn dns_answer(&mut self, app_sp: u16, app_id: u16, msg: &[u8]) {
        let mut out = std::mem::take(&mut self.txbuf);
        let n = msg.len().min(MAX_UDP_PAYLOAD);
        out[28..28 + n].copy_from_slice(&msg[..n]);
        dns_wire::set_id(&mut out[28..28 + n], app_id);
        let id = self.next_ip_id();
        let len = packet::finish_udp(
            &mut out,
            self.cfg.dns_v4,
            53,
            self.cfg.clat_v4,
            app_sp,
            n,
            id,
        );
        tun_write(&self.tun, &self.sh.counters, &out[..len]);
        self.txbuf = out;
        Counters::inc(&self.c().dns_answers);
    }

    fn dns_query(&mut self, sp: u16, q: &[u8]) {
        let Some(app_id) = dns_wire::id(q) else {
            return Counters::inc(&self.c().drop_malformed);
        };
        Counters::inc(&self.c().dns_queries);
        if self.cfg.upstream_dns.is_empty() || self.pending.len() >= MAX_DNS_PENDING {
            if self.cfg.upstream_dns.is_empty() {
                Counters::inc(&self.c().drop_no_dns_upstream);
            }
            if let Some(r) = dns_wire::servfail(q) {
                Counters::inc(&self.c().dns_servfail);
                self.dns_answer(sp, app_id, &r);
            }
            return;
        }
        let mut uid = random_dns_id().unwrap_or(self.next_dns_id);
        while self.pending.contains_key(&uid) {
            uid = uid.wrapping_add(1);
        }
        self.next_dns_id = uid.wrapping_add(1);
        let mut query = q.to_vec();
        dns_wire::set_id(&mut query, uid);
        let at = self.now + self.cfg.dns_timeout;
        self.pending.insert(
            uid,
            Pending {
                app_sp: sp,
                app_id,
                query,
                server: 0,
                timer_at: at,
                client_max: dns_wire::client_max_payload(q),
                truncated: None,
                tcp_slot: None,
            },
        );
        self.timers.insert(at, TimerKey::Dns(uid));
        self.send_dns(uid);
    }

    fn dns_socket(&mut self, i: usize) -> Option<usize> {
        if let Some(s) = self.dns_socks.get(i).copied().flatten() {
            return Some(s);
        }
        let server = *self.cfg.upstream_dns.get(i)?;
        let mut sock = match self.upstream_dgram(Domain::for_address(server), Protocol::UDP, false)
        {
            Ok(s) => s,
            Err(e) => {
                self.socket_warn(format_args!("DNS upstream socket: {e}"));
                Counters::inc(&self.c().drop_upstream_socket);
                return None;
            }
        };
        let slot = self.alloc_slot(Slot::Free);
        if self
            .poll
            .registry()
            .register(&mut sock, tok(slot, 0), Interest::READABLE)
            .is_err()
        {
            self.slots[slot] = Slot::Dead;
            self.dead.push(slot);
            return None;
        }
        self.slots[slot] = Slot::DnsUdp(i, sock);
        self.dns_socks[i] = Some(slot);
        Some(slot)
    }

    fn dns_udp_sock(&self, slot: usize) -> Option<&UdpSocket> {
        match self.slots.get(slot) {
            Some(Slot::DnsUdp(_, s)) => Some(s),
            _ => None,
        }
    }

    fn send_dns(&mut self, uid: u16) {
        let Some(p) = self.pending.get(&uid) else {
            return;
        };
        let i = p.server;
        let Some(server) = self.cfg.upstream_dns.get(i).copied() else {
            return;
        };
        let Some(slot) = self.dns_socket(i) else {
            return;
        };
        let Some(p) = self.pending.get(&uid) else {
            return;
        };
        if let Some(sock) = self.dns_udp_sock(slot) {
            match sock.send_to(&p.query, server) {
                Ok(n) => {
                    Counters::inc(&self.sh.counters.up_tx_packets);
                    Counters::add(&self.sh.counters.up_tx_bytes, n as u64);
                }
                Err(e) => {
                    log::debug!("DNS send to {server}: {e}");
                    Counters::inc(&self.sh.counters.drop_upstream_send);
                }
            }
        }
    }

    fn on_dns_udp(&mut self, slot: usize, server_idx: usize) {
        let mut buf = std::mem::take(&mut self.rxbuf);
        for _ in 0..1024 {
            let Some(sock) = self.dns_udp_sock(slot) else {
                break;
            };
            let (n, from) = match sock.recv_from(&mut buf) {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => continue,
            };
            Counters::inc(&self.c().up_rx_packets);
            Counters::add(&self.c().up_rx_bytes, n as u64);
            let msg = &buf[..n];
            if Some(&from) != self.cfg.upstream_dns.get(server_idx) {
                Counters::inc(&self.c().drop_foreign_source);
                continue;
            }
            let Some(uid) = dns_wire::id(msg).filter(|_| dns_wire::is_response(msg)) else {
                Counters::inc(&self.c().drop_malformed);
                continue;
            };
            let Some(p) = self.pending.get_mut(&uid) else {
                continue;
            };
            if p.tcp_slot.is_some() {
                continue;
            }
            if dns_wire::is_truncated(msg) {
                p.truncated = Some(msg.to_vec());
                let q = p.query.clone();
                self.start_dns_tcp(uid, from, &q);
                continue;
            }
            let Some(p) = self.pending.remove(&uid) else {
                continue;
            };
            self.timers.remove(p.timer_at, TimerKey::Dns(uid));
            self.dns_answer(p.app_sp, p.app_id, msg);
        }
        self.rxbuf = buf;
    }

    fn start_dns_tcp(&mut self, uid: u16, server: SocketAddr, query: &[u8]) {
        Counters::inc(&self.c().dns_tcp_retries);
        let mut sock = match self.connect_tcp(server) {
            Ok(s) => s,
            Err(_) => return self.finish_dns_tcp(uid, None),
        };
        let slot = self.alloc_slot(Slot::Free);
        if self
            .poll
            .registry()
            .register(
                &mut sock,
                tok(slot, 0),
                Interest::READABLE | Interest::WRITABLE,
            )
            .is_err()
        {
            self.slots[slot] = Slot::Dead;
            self.dead.push(slot);
            return self.finish_dns_tcp(uid, None);
        }
        let mut out = Vec::with_capacity(query.len() + 2);
        out.extend_from_slice(&(query.len() as u16).to_be_bytes());
        out.extend_from_slice(query);
        self.slots[slot] = Slot::DnsTcp(Box::new(DnsTcp {
            uid,
            server,
            sock,
            connected: false,
            out,
            out_pos: 0,
            inb: Vec::new(),
        }));
        let at = self.now + self.cfg.dns_timeout;
        if let Some(p) = self.pending.get_mut(&uid) {
            p.tcp_slot = Some(slot);
            self.timers.remove(p.timer_at, TimerKey::Dns(uid));
            p.timer_at = at;
            self.timers.insert(at, TimerKey::Dns(uid));
        }
    }

    fn on_dns_tcp(&mut self, slot: usize, ev: &Event) {
        let Slot::DnsTcp(d) = &mut self.slots[slot] else {
            return;
        };
        let uid = d.uid;
        if !d.connected {
            match d.sock.take_error() {
                Ok(None) => {}
                _ => return self.finish_dns_tcp(uid, None),
            }
            match d.sock.peer_addr() {
                Ok(_) => d.connected = true,
                Err(e) if e.kind() == io::ErrorKind::NotConnected && !ev.is_error() => return,
                Err(_) => return self.finish_dns_tcp(uid, None),
            }
            log::debug!("DNS over TCP to {} for query {uid}", d.server);
        }
        while d.out_pos < d.out.len() {
            match d.sock.write(&d.out[d.out_pos..]) {
                Ok(n) => d.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => return self.finish_dns_tcp(uid, None),
            }
        }
        let mut chunk = [0u8; 4096];
        loop {
            match d.sock.read(&mut chunk) {
                Ok(0) => return self.finish_dns_tcp(uid, None),
                Ok(n) => {
                    d.inb.extend_from_slice(&chunk[..n]);
                    if d.inb.len() >= 2 {
                        let want = u16::from_be_bytes([d.inb[0], d.inb[1]]) as usize;
                        if d.inb.len() >= 2 + want {
                            let ans = d.inb[2..2 + want].to_vec();
                            return self.finish_dns_tcp(uid, Some(ans));
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => return self.finish_dns_tcp(uid, None),
            }
        }
    }

    fn finish_dns_tcp(&mut self, uid: u16, ans: Option<Vec<u8>>) {
        let Some(p) = self.pending.remove(&uid) else {
            return;
        };
        self.timers.remove(p.timer_at, TimerKey::Dns(uid));
        if let Some(s) = p.tcp_slot {
            self.kill_slot(s);
        }
        let ans = ans.filter(|a| dns_wire::id(a) == Some(uid));
        let trunc = p.truncated.unwrap_or_default();
        let pick = dns_wire::pick_answer(ans.as_deref(), &trunc, p.client_max);
        if pick.len() < dns_wire::HEADER_LEN {
            if let Some(r) = dns_wire::servfail(&p.query) {
                Counters::inc(&self.c().dns_servfail);
                self.dns_answer(p.app_sp, p.app_id, &r);
            }
            return;
        }
        if std::ptr::eq(pick, trunc.as_slice()) {
            Counters::inc(&self.c().dns_truncated);
        }
        let pick = pick.to_vec();
        self.dns_answer(p.app_sp, p.app_id, &pick);
    }

    fn dns_timeout(&mut self, uid: u16) {
        let Some(p) = self.pending.get_mut(&uid) else {
            return;
        };
        Counters::inc(&self.sh.counters.dns_upstream_timeouts);
        if p.tcp_slot.is_some() {
            return self.finish_dns_tcp(uid, None);
        }
        if p.server + 1 < self.cfg.upstream_dns.len() {
            p.server += 1;
            let at = self.now + self.cfg.dns_timeout;
            p.timer_at = at;
            self.timers.insert(at, TimerKey::Dns(uid));
            return self.send_dns(uid);
        }
        let Some(p) = self.pending.remove(&uid) else {
            return;
        };
        if let Some(r) = dns_wire::servfail(&p.query) {
            Counters::inc(&self.c().dns_servfail);
            self.dns_answer(p.app_sp, p.app_id, &r);
        }
    }

    // ---- dispatch and timers -----------------------------------------

    fn on_socket(&mut self, slot: usize, side: usize, ev: &Event) {
        match self.slots.get(slot) {
            Some(Slot::Relay(_)) => self.on_relay(slot, side, ev),
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
        while let Some((at, key)) = self.timers.pop_due(now) {
            match key {
                TimerKey::Nat(np) => self.nat_timer(np, at),
                TimerKey::Udp(sp) => {
                    let Some(&slot) = self.udp.get(&sp) else {
                        continue;
                    };
                    let Slot::Udp(f) = &mut self.slots[slot] else {
                        continue;
                    };
                    if f.timer_at != at {
                        continue;
                    }
                    let due = f.last + self.cfg.udp_timeout;
                    if due > now {
                        f.timer_at = due;
                        self.timers.insert(due, key);
                    } else {
                        f.timer_at = at;
                        Counters::inc(&self.sh.counters.flows_expired);
                        self.timers.insert(at, key); // removed again by close_mapping
                        self.close_mapping(slot);
                    }
                }
                TimerKey::Icmp(id) => {
                    let Some(&slot) = self.icmp.get(&id) else {
                        continue;
                    };
                    let Slot::Icmp(f) = &mut self.slots[slot] else {
                        continue;
                    };
                    if f.timer_at != at {
                        continue;
                    }
                    let due = f.last + self.cfg.icmp_timeout;
                    if due > now {
                        f.timer_at = due;
                        self.timers.insert(due, key);
                    } else {
                        Counters::inc(&self.sh.counters.flows_expired);
                        self.timers.insert(at, key);
                        self.close_mapping(slot);
                    }
                }
                TimerKey::Dns(uid) => {
                    if self.pending.get(&uid).is_some_and(|p| p.timer_at == at) {
                        self.dns_timeout(uid);
                    }
                }
            }
        }
    }

    fn nat_timer(&mut self, np: u16, at: Instant) {
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
