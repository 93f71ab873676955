//! The DNS relay's decisions, sans I/O: the queries in flight, which
//! resolver to ask, failover, timers and what the app gets back. It takes
//! `now` and parsed inputs (an app query, an upstream answer over UDP, the
//! outcome of a TCP retry, a resolver list change) and queues
//! [`DnsAction`]s; `Loop` (event_loop/dns_relay.rs) owns the per-resolver
//! UDP sockets, the TCP sockets, the poll and the TUN, executes the
//! actions and reports back. Same shape as [`crate::tcp_flows`]
//! (`poll_action`, `poll_timeout`, `handle_timeout`).
//!
//! A query's life:
//! 1. The app's query (UDP to the relay address) gets a random upstream id
//!    (RFC 5452: the relay's UDP socket keeps one source port, so the id is
//!    what an off-path spoofer must guess) and goes to the preferred
//!    resolver ([`DnsAction::SendUdp`]), with a deadline of `timeout`.
//! 2. The deadline passes: the next resolver in the list is asked, each
//!    resolver once; after the last one, the app gets SERVFAIL.
//! 3. An answer counts only when it comes from the resolver asked (by the
//!    socket it arrived on and its source address, scope-aware), with the
//!    upstream id and the question asked (RFC 5452 section 9.1); anything
//!    else is dropped and counted, and the query keeps waiting.
//! 4. A truncated answer is asked again over TCP ([`DnsAction::OpenTcp`])
//!    to the same resolver, with a fresh deadline. The TCP answer goes to
//!    the app when it fits the client's size (EDNS0, else 512); else, or
//!    when TCP fails or times out, the app gets the truncated answer (TC
//!    set: it retries over TCP itself).
//!
//! The resolver that answered last over UDP is preferred: new queries (UDP
//! and the app's own TCP flows to the relay) go there first, so a dead
//! resolver ahead of it in the list costs one timeout, not one per query.
//! A new resolver list (or a network change) forgets the preference and
//! asks every pending query again from the first resolver.

use crate::config::same_resolver;
use crate::dns_wire;
use crate::stats::Counters;
use crate::timers::{TimerKey, Timers};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Cap on DNS queries in flight: beyond it the app gets SERVFAIL at once.
pub const MAX_DNS_PENDING: usize = 4096;
/// Cap on the bytes held for queries in flight (the queries and the
/// truncated answers kept for a TCP retry): 1 KiB per query of
/// [`MAX_DNS_PENDING`], ten times a usual query. The size of a query is the
/// app's to choose (up to a whole datagram), so the count alone would let
/// one app make the relay hold 4096 of 64 KB. Beyond it a new query gets
/// SERVFAIL at once, and a truncated answer goes to the app as it is (TC
/// set: its resolver retries over TCP itself).
pub const MAX_DNS_PENDING_BYTES: usize = 4 << 20;

/// What the Loop must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsAction {
    /// Send `query` (the upstream id in place) over UDP to resolver
    /// `resolver` (an index into the list) from that resolver's socket.
    SendUdp { resolver: usize, query: Vec<u8> },
    /// Open a TCP connection to `server` and send `query` there (RFC 1035
    /// section 4.2.2 framing is the Loop's); report the socket with
    /// [`DnsQueries::tcp_opened`] and the outcome with
    /// [`DnsQueries::on_tcp_answer`].
    OpenTcp {
        uid: u16,
        server: SocketAddr,
        query: Vec<u8>,
    },
    /// Close the TCP socket of a retry (the handle given to `tcp_opened`);
    /// no report back.
    CloseTcp { slot: usize },
    /// Send `msg` (a whole DNS message, the app's id in place) to the app
    /// from the relay address to its port `app_port`.
    Answer { app_port: u16, msg: Vec<u8> },
}

/// How a pending query is being asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Udp,
    /// Over TCP after a truncated answer; the Loop's socket handle once
    /// opened.
    Tcp(Option<usize>),
}

/// A query in flight, under its upstream id.
#[derive(Debug)]
struct Pending {
    app_port: u16,
    app_id: u16,
    /// The query with the upstream id in place.
    query: Vec<u8>,
    /// Index of the resolver asked.
    resolver: usize,
    /// How many resolvers this query has been sent to (each once).
    tried: usize,
    timer_at: Instant,
    /// Largest UDP answer the client takes (EDNS0, else 512).
    client_max: usize,
    /// The truncated UDP answer, once one came.
    truncated: Option<Vec<u8>>,
    transport: Transport,
}

/// An unpredictable 16-bit id from the `getrandom` crate (already linked
/// through hickory-proto's `rand`), which falls back to /dev/urandom where
/// an old Android libc lacks getrandom(2); `None` only when the system has
/// no randomness to give.
fn random_id() -> Option<u16> {
    let mut b = [0u8; 2];
    getrandom::fill(&mut b).ok()?;
    Some(u16::from_ne_bytes(b))
}

/// The DNS relay's query table and decisions.
#[derive(Debug)]
pub struct DnsQueries {
    resolvers: Vec<SocketAddr>,
    /// How long one resolver gets to answer.
    timeout: Duration,
    pending: HashMap<u16, Pending>,
    /// Bytes held by `pending` (queries and truncated answers), at most
    /// [`MAX_DNS_PENDING_BYTES`].
    pending_bytes: usize,
    /// The resolver that answered last (see the module doc).
    preferred: usize,
    /// Used when the system has no randomness, and after a collision.
    next_id: u16,
    /// Source of upstream ids ([`random_id`]; tests put a fixed one).
    id_source: fn() -> Option<u16>,
    timers: Timers,
    actions: VecDeque<DnsAction>,
}

impl DnsQueries {
    /// An empty table asking `resolvers` in order, each for `timeout`.
    pub fn new(resolvers: Vec<SocketAddr>, timeout: Duration) -> DnsQueries {
        DnsQueries {
            resolvers,
            timeout,
            pending: HashMap::new(),
            pending_bytes: 0,
            preferred: 0,
            next_id: 1,
            id_source: random_id,
            timers: Timers::default(),
            actions: VecDeque::new(),
        }
    }

    /// Index of the resolver to ask first: the one that answered last,
    /// the first one at start and after a list change.
    pub fn preferred(&self) -> usize {
        if self.preferred < self.resolvers.len() {
            self.preferred
        } else {
            0
        }
    }

    /// Removes query `uid` from the table, giving its bytes back.
    fn take(&mut self, uid: u16) -> Option<Pending> {
        let p = self.pending.remove(&uid)?;
        self.pending_bytes -= p.query.len() + p.truncated.as_ref().map_or(0, Vec::len);
        Some(p)
    }

    /// The next action for the Loop.
    pub fn poll_action(&mut self) -> Option<DnsAction> {
        self.actions.pop_front()
    }

    /// The earliest deadline, `None` when no query is in flight.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// A query `q` (a whole DNS message) from the app's UDP port
    /// `app_port`. Unreadable (shorter than a header): dropped and counted.
    /// No resolver, or [`MAX_DNS_PENDING`] in flight: SERVFAIL at once.
    pub fn on_app_query(&mut self, now: Instant, app_port: u16, q: &[u8], c: &Counters) {
        let Some(app_id) = dns_wire::id(q) else {
            return Counters::inc(&c.drop_malformed);
        };
        Counters::inc(&c.dns_queries);
        if self.resolvers.is_empty()
            || self.pending.len() >= MAX_DNS_PENDING
            || self.pending_bytes + q.len() > MAX_DNS_PENDING_BYTES
        {
            if self.resolvers.is_empty() {
                Counters::inc(&c.drop_no_dns_upstream);
            }
            return self.servfail(app_port, app_id, q, c);
        }
        let mut uid = (self.id_source)().unwrap_or(self.next_id);
        while self.pending.contains_key(&uid) {
            uid = uid.wrapping_add(1);
        }
        self.next_id = uid.wrapping_add(1);
        let mut query = q.to_vec();
        dns_wire::set_id(&mut query, uid);
        let timer_at = now + self.timeout;
        let resolver = self.preferred();
        self.pending_bytes += query.len();
        self.pending.insert(
            uid,
            Pending {
                app_port,
                app_id,
                query: query.clone(),
                resolver,
                tried: 1,
                timer_at,
                client_max: dns_wire::client_max_payload(q),
                truncated: None,
                transport: Transport::Udp,
            },
        );
        self.timers.insert(timer_at, TimerKey::Dns(uid));
        self.actions
            .push_back(DnsAction::SendUdp { resolver, query });
    }

    /// A datagram `msg` from `from` on the UDP socket of resolver
    /// `resolver`. Dropped and counted: from another address
    /// (`drop_foreign_source`), not a DNS response (`drop_malformed`), with
    /// another question (`drop_dns_mismatch`); ignored: no such query in
    /// flight (late, or answered already), or one being asked over TCP.
    pub fn on_udp_answer(
        &mut self,
        now: Instant,
        resolver: usize,
        from: SocketAddr,
        msg: &[u8],
        c: &Counters,
    ) {
        let ours = self.resolvers.get(resolver);
        if !ours.is_some_and(|r| same_resolver(&from, r)) {
            return Counters::inc(&c.drop_foreign_source);
        }
        let Some(uid) = dns_wire::id(msg).filter(|_| dns_wire::is_response(msg)) else {
            return Counters::inc(&c.drop_malformed);
        };
        let budget = MAX_DNS_PENDING_BYTES - self.pending_bytes;
        let Some(p) = self.pending.get_mut(&uid) else {
            return;
        };
        if p.transport != Transport::Udp {
            return;
        }
        if !dns_wire::same_question(&p.query, msg) {
            // A forged or stray answer: keep waiting for the real one.
            return Counters::inc(&c.drop_dns_mismatch);
        }
        // A truncated answer from before a list change is replaced.
        let held = p.truncated.as_ref().map_or(0, Vec::len);
        if dns_wire::is_truncated(msg) && msg.len() <= budget + held {
            Counters::inc(&c.dns_tcp_retries);
            self.pending_bytes = self.pending_bytes + msg.len() - held;
            p.truncated = Some(msg.to_vec());
            p.transport = Transport::Tcp(None);
            self.timers.remove(p.timer_at, TimerKey::Dns(uid));
            p.timer_at = now + self.timeout;
            self.timers.insert(p.timer_at, TimerKey::Dns(uid));
            let query = p.query.clone();
            self.actions.push_back(DnsAction::OpenTcp {
                uid,
                server: from,
                query,
            });
            return;
        }
        let Some(p) = self.take(uid) else {
            return;
        };
        self.timers.remove(p.timer_at, TimerKey::Dns(uid));
        self.preferred = resolver;
        if dns_wire::is_truncated(msg) {
            // No room to hold it for a TCP retry (see MAX_DNS_PENDING_BYTES).
            Counters::inc(&c.dns_truncated);
        }
        self.answer(p.app_port, p.app_id, msg.to_vec(), c);
    }

    /// The TCP retry of query `uid` has the socket `slot` (the Loop's
    /// handle, closed with [`DnsAction::CloseTcp`]).
    pub fn tcp_opened(&mut self, uid: u16, slot: usize) {
        if let Some(p) = self.pending.get_mut(&uid) {
            if p.transport == Transport::Tcp(None) {
                p.transport = Transport::Tcp(Some(slot));
            }
        }
    }

    /// The TCP retry of query `uid` ended: with the message `answer`, or
    /// `None` when the socket could not be opened, failed or closed early.
    /// The app gets the TCP answer when it carries the upstream id and the
    /// question asked and fits its size; else the truncated UDP answer;
    /// SERVFAIL when there is neither.
    pub fn on_tcp_answer(&mut self, uid: u16, answer: Option<&[u8]>, c: &Counters) {
        let Some(p) = self.take(uid) else {
            return;
        };
        self.timers.remove(p.timer_at, TimerKey::Dns(uid));
        self.finish_tcp(uid, p, answer, c);
    }

    fn finish_tcp(&mut self, uid: u16, p: Pending, answer: Option<&[u8]>, c: &Counters) {
        if let Transport::Tcp(Some(slot)) = p.transport {
            self.actions.push_back(DnsAction::CloseTcp { slot });
        }
        let answer = answer.filter(|a| {
            let ok = dns_wire::same_question(&p.query, a);
            if !ok {
                Counters::inc(&c.drop_dns_mismatch);
            }
            ok && dns_wire::id(a) == Some(uid)
        });
        let trunc = p.truncated.unwrap_or_default();
        let pick = dns_wire::pick_answer(answer, &trunc, p.client_max);
        if pick.len() < dns_wire::HEADER_LEN {
            return self.servfail(p.app_port, p.app_id, &p.query, c);
        }
        if std::ptr::eq(pick, trunc.as_slice()) {
            Counters::inc(&c.dns_truncated);
        }
        let msg = pick.to_vec();
        self.answer(p.app_port, p.app_id, msg, c);
    }

    /// Runs the deadlines due at `now`: a query over UDP goes to the next
    /// resolver it has not asked, or gets SERVFAIL when it has asked them
    /// all; one over TCP ends as a failed retry.
    pub fn handle_timeout(&mut self, now: Instant, c: &Counters) {
        while let Some((at, key)) = self.timers.pop_due(now) {
            let TimerKey::Dns(uid) = key else { continue };
            let Some(p) = self.pending.get_mut(&uid) else {
                continue;
            };
            if p.timer_at != at {
                continue;
            }
            Counters::inc(&c.dns_upstream_timeouts);
            if p.transport != Transport::Udp {
                if let Some(p) = self.take(uid) {
                    self.finish_tcp(uid, p, None, c);
                }
                continue;
            }
            let n = self.resolvers.len();
            if p.tried < n {
                p.resolver = (p.resolver + 1) % n;
                p.tried += 1;
                p.timer_at = now + self.timeout;
                self.timers.insert(p.timer_at, TimerKey::Dns(uid));
                self.actions.push_back(DnsAction::SendUdp {
                    resolver: p.resolver,
                    query: p.query.clone(),
                });
                continue;
            }
            if let Some(p) = self.take(uid) {
                self.servfail(p.app_port, p.app_id, &p.query, c);
            }
        }
    }

    /// The resolver list changed (or the network did, the same list then):
    /// the preference is forgotten, TCP retries are closed, and every
    /// pending query is asked again from the first resolver over UDP, its
    /// deadline kept (a truncated answer it had stays its fallback).
    pub fn set_resolvers(&mut self, resolvers: Vec<SocketAddr>) {
        self.resolvers = resolvers;
        self.preferred = 0;
        let mut uids: Vec<u16> = self.pending.keys().copied().collect();
        uids.sort_unstable();
        for uid in uids {
            let Some(p) = self.pending.get_mut(&uid) else {
                continue;
            };
            if let Transport::Tcp(Some(slot)) = p.transport {
                self.actions.push_back(DnsAction::CloseTcp { slot });
            }
            p.transport = Transport::Udp;
            p.resolver = 0;
            p.tried = 1;
            if !self.resolvers.is_empty() {
                self.actions.push_back(DnsAction::SendUdp {
                    resolver: 0,
                    query: p.query.clone(),
                });
            }
        }
    }

    /// Forgets every query (the engine is stopping), no action.
    pub fn clear(&mut self) {
        self.pending.clear();
        self.pending_bytes = 0;
        self.timers.clear();
        self.actions.clear();
    }

    /// SERVFAIL to the app's query `query` (its question; the id put in
    /// is `app_id`, `query` may carry the upstream one).
    fn servfail(&mut self, app_port: u16, app_id: u16, query: &[u8], c: &Counters) {
        if let Some(r) = dns_wire::servfail(query) {
            Counters::inc(&c.dns_servfail);
            self.answer(app_port, app_id, r, c);
        }
    }

    /// `msg` to the app, under its id `app_id`.
    fn answer(&mut self, app_port: u16, app_id: u16, mut msg: Vec<u8>, c: &Counters) {
        dns_wire::set_id(&mut msg, app_id);
        Counters::inc(&c.dns_answers);
        self.actions.push_back(DnsAction::Answer { app_port, msg });
    }
}

#[cfg(test)]
mod tests;
