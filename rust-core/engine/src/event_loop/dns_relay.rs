//! The DNS relay on the internal DNS address, the I/O half: the
//! per-resolver UDP sockets, the TCP sockets of retries after truncated
//! answers, and the answers written to the TUN. The decisions (ids,
//! resolver preference and failover, timers, which answer the app gets)
//! are [`crate::dns_queries::DnsQueries`]'s; this executes its actions and reports back. App
//! queries over TCP are plain TCP flows (see `tcp`) to the preferred
//! resolver.

use super::{tun_write, Loop, Slot, MAX_UDP_PAYLOAD};
use crate::dns_queries::DnsAction;
use crate::packet;
use crate::stats::Counters;
use mio::event::Event;
use mio::net::{TcpStream, UdpSocket};
use mio::Interest;
use socket2::{Domain, Protocol};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, SocketAddrV4};

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

impl Loop {
    /// Index of the resolver to ask first (see [`crate::dns_queries::DnsQueries::preferred`]).
    pub(super) fn dns_preferred_index(&self) -> usize {
        self.dns.preferred()
    }

    /// Executes the DNS core's actions.
    pub(super) fn run_dns_actions(&mut self) {
        while let Some(a) = self.dns.poll_action() {
            match a {
                DnsAction::SendUdp { resolver, query } => self.send_dns(resolver, &query),
                DnsAction::OpenTcp { uid, server, query } => {
                    self.start_dns_tcp(uid, server, &query)
                }
                DnsAction::CloseTcp { slot } => {
                    self.kill_slot(slot);
                }
                DnsAction::Answer { app_port, msg } => self.dns_answer(app_port, &msg),
            }
        }
    }

    /// Writes `msg` (the app's id in place) to the app's port as a UDP
    /// datagram from the relay address.
    fn dns_answer(&mut self, app_sp: u16, msg: &[u8]) {
        if let Some(names) = &mut self.names {
            names.learn(msg, self.now);
        }
        let mut out = std::mem::take(&mut self.txbuf);
        let n = msg.len().min(MAX_UDP_PAYLOAD);
        out[28..28 + n].copy_from_slice(&msg[..n]);
        let id = self.next_ip_id();
        let ends = (
            SocketAddrV4::new(self.cfg.dns_v4, 53),
            SocketAddrV4::new(self.cfg.clat_v4, app_sp),
        );
        let len = packet::emit_udp4(&mut out, ends, n, id);
        tun_write(&self.tun, &self.sh.counters, &out[..len]);
        self.txbuf = out;
    }

    /// A query from the app's UDP port `sp` to the relay address.
    pub(super) fn dns_query(&mut self, sp: u16, q: &[u8]) {
        self.dns.on_app_query(self.now, sp, q, &self.sh.counters);
        self.run_dns_actions();
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

    /// Sends `query` to resolver `i` from its socket (opened on first use).
    fn send_dns(&mut self, i: usize, query: &[u8]) {
        let Some(server) = self.cfg.upstream_dns.get(i).copied() else {
            return;
        };
        let Some(slot) = self.dns_socket(i) else {
            return;
        };
        if let Some(sock) = self.dns_udp_sock(slot) {
            match sock.send_to(query, server) {
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

    /// Datagrams on the socket of resolver `server_idx`, to the DNS core.
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
            let now = self.now;
            self.dns
                .on_udp_answer(now, server_idx, from, &buf[..n], &self.sh.counters);
            self.run_dns_actions();
        }
        self.rxbuf = buf;
    }

    /// Opens the TCP retry of query `uid` to `server`: the core learns its
    /// slot, or that it failed at once.
    fn start_dns_tcp(&mut self, uid: u16, server: SocketAddr, query: &[u8]) {
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
        self.dns.tcp_opened(uid, slot);
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

    /// The TCP retry of `uid` ended (the core closes its socket).
    fn finish_dns_tcp(&mut self, uid: u16, ans: Option<Vec<u8>>) {
        self.dns
            .on_tcp_answer(uid, ans.as_deref(), &self.sh.counters);
        self.run_dns_actions();
    }
}
