//! The DNS relay on the internal DNS address: each app query over UDP
//! goes out under a random id (RFC 5452) to the upstream servers in
//! turn, and again over TCP when the answer comes back truncated. App
//! queries over TCP are plain TCP flows (see `tcp`).

use super::{tun_write, Loop, Slot, MAX_UDP_PAYLOAD};
use crate::dns_wire;
use crate::packet;
use crate::stats::Counters;
use crate::timers::TimerKey;
use mio::event::Event;
use mio::net::{TcpStream, UdpSocket};
use mio::Interest;
use socket2::{Domain, Protocol};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, SocketAddrV4};
use std::time::Instant;

/// Cap on DNS queries in flight (answered SERVFAIL beyond).
const MAX_DNS_PENDING: usize = 4096;

/// A query asked again over TCP after a truncated answer over UDP.
pub(super) struct DnsTcp {
    pub(super) uid: u16,
    pub(super) server: SocketAddr,
    pub(super) sock: TcpStream,
    pub(super) connected: bool,
    pub(super) out: Vec<u8>,
    pub(super) out_pos: usize,
    pub(super) inb: Vec<u8>,
}

/// A query in flight, under its upstream id in `Loop::pending`.
pub(super) struct Pending {
    pub(super) app_sp: u16,
    pub(super) app_id: u16,
    /// The query with the upstream id already in place.
    pub(super) query: Vec<u8>,
    pub(super) server: usize,
    /// How many servers this query has been sent to (each once).
    pub(super) tried: usize,
    pub(super) timer_at: Instant,
    pub(super) client_max: usize,
    pub(super) truncated: Option<Vec<u8>>,
    pub(super) tcp_slot: Option<usize>,
}

/// An unpredictable id for a relayed query. The relay's upstream socket
/// keeps one source port, so the id is all an off-path spoofer has to
/// guess (RFC 5452): sequential ids made forged answers easy. From the
/// `getrandom` crate (already linked through hickory-proto's `rand`), which
/// falls back to /dev/urandom where an old Android libc lacks getrandom(2);
/// `None` only when the system has no randomness to give.
fn random_dns_id() -> Option<u16> {
    let mut b = [0u8; 2];
    getrandom::fill(&mut b).ok()?;
    Some(u16::from_ne_bytes(b))
}

impl Loop {
    /// Index of the resolver to ask first (see `dns_preferred`).
    pub(super) fn dns_preferred_index(&self) -> usize {
        if self.dns_preferred < self.cfg.upstream_dns.len() {
            self.dns_preferred
        } else {
            0
        }
    }

    fn dns_answer(&mut self, app_sp: u16, app_id: u16, msg: &[u8]) {
        let mut out = std::mem::take(&mut self.txbuf);
        let n = msg.len().min(MAX_UDP_PAYLOAD);
        out[28..28 + n].copy_from_slice(&msg[..n]);
        dns_wire::set_id(&mut out[28..28 + n], app_id);
        let id = self.next_ip_id();
        let ends = (
            SocketAddrV4::new(self.cfg.dns_v4, 53),
            SocketAddrV4::new(self.cfg.clat_v4, app_sp),
        );
        let len = packet::emit_udp4(&mut out, ends, n, id);
        tun_write(&self.tun, &self.sh.counters, &out[..len]);
        self.txbuf = out;
        Counters::inc(&self.c().dns_answers);
    }

    pub(super) fn dns_query(&mut self, sp: u16, q: &[u8]) {
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
                server: self.dns_preferred_index(),
                tried: 1,
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
        let slot = self.register_slot(&mut sock, Interest::READABLE)?;
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

    pub(super) fn send_dns(&mut self, uid: u16) {
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

    pub(super) fn on_dns_udp(&mut self, slot: usize, server_idx: usize) {
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
            // Scope-aware: a link-local resolver's answer carries its interface.
            let ours = self.cfg.upstream_dns.get(server_idx);
            if !ours.is_some_and(|r| crate::config::same_resolver(&from, r)) {
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
            if !dns_wire::same_question(&p.query, msg) {
                // A forged or stray answer: keep waiting for the real one.
                Counters::inc(&self.sh.counters.drop_dns_mismatch);
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
            self.dns_preferred = server_idx;
            self.dns_answer(p.app_sp, p.app_id, msg);
        }
        self.rxbuf = buf;
    }

    fn start_dns_tcp(&mut self, uid: u16, server: SocketAddr, query: &[u8]) {
        Counters::inc(&self.c().dns_tcp_retries);
        let mut sock = match self.connect_tcp(server, None) {
            Ok(s) => s,
            Err(_) => return self.finish_dns_tcp(uid, None),
        };
        let Some(slot) = self.register_slot(&mut sock, Interest::READABLE | Interest::WRITABLE)
        else {
            return self.finish_dns_tcp(uid, None);
        };
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

    pub(super) fn on_dns_tcp(&mut self, slot: usize, ev: &Event) {
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
        let ans = ans.filter(|a| {
            let ok = dns_wire::same_question(&p.query, a);
            if !ok {
                Counters::inc(&self.sh.counters.drop_dns_mismatch);
            }
            ok && dns_wire::id(a) == Some(uid)
        });
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

    pub(super) fn dns_timeout(&mut self, uid: u16) {
        let Some(p) = self.pending.get_mut(&uid) else {
            return;
        };
        Counters::inc(&self.sh.counters.dns_upstream_timeouts);
        if p.tcp_slot.is_some() {
            return self.finish_dns_tcp(uid, None);
        }
        let n = self.cfg.upstream_dns.len();
        if p.tried < n {
            p.server = (p.server + 1) % n;
            p.tried += 1;
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
}
