//! The names behind IPv4 destinations, for [`crate::flow_events::FlowStart::name`]
//! (issue 17): which name the engine's DNS relay resolved to an address
//! for the apps. Sans I/O: the relay hands every UDP answer it passes to
//! an app to [`DnsNames::learn`] with `now`; a new flow asks
//! [`DnsNames::lookup`]. Kept only while flow events are on.
//!
//! - What is remembered: the A records (RFC 1035 3.4.1) of the answer
//!   section of a NOERROR response, each under the name of the *question*
//!   (the name the app asked; with a CNAME chain, RFC 1034 3.6.2, not its
//!   target), in presentation form, lower case (RFC 4343: names compare
//!   without regard to case), without the final dot. One name per
//!   address: the latest answer wins (a CDN address serves many names;
//!   the one an app resolved last is the likeliest for its next flow).
//! - How long: the record's TTL, but at least [`MIN_TTL`] (an app connects
//!   after it got the answer, sometimes long after a TTL of seconds) and
//!   at most [`MAX_TTL`].
//! - How many: at most `capacity` addresses; a new one beyond that pushes
//!   out the least recently learnt (an address learnt again moves to the
//!   back). Memory: about 100 bytes per entry plus the name.
//! - Not seen: answers the relay carries over TCP (a byte stream to the
//!   resolver, not parsed), and resolution that does not go through the
//!   relay (Private DNS, an app's own resolver).

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::{RData, RecordType};
use std::collections::{HashMap, VecDeque};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Shortest time a learnt name is kept, whatever the record's TTL.
pub const MIN_TTL: Duration = Duration::from_secs(60);
/// Longest time a learnt name is kept, whatever the record's TTL.
pub const MAX_TTL: Duration = Duration::from_secs(6 * 3600);
/// Addresses remembered by the engine's cache.
pub const CAPACITY: usize = 4096;

#[derive(Debug)]
struct Entry {
    name: Arc<str>,
    expires: Instant,
    /// Which push of `order` is this entry's (older ones are stale).
    stamp: u64,
}

/// Address -> name, bounded and expiring (module doc).
#[derive(Debug)]
pub struct DnsNames {
    map: HashMap<Ipv4Addr, Entry>,
    /// Learning order, oldest first, with the stamp of each push; an
    /// address learnt again is pushed again and its older pushes are
    /// skipped when they come to the front.
    order: VecDeque<(Ipv4Addr, u64)>,
    capacity: usize,
    next_stamp: u64,
}

impl DnsNames {
    /// An empty cache of at most `capacity` (>= 1) addresses.
    pub fn new(capacity: usize) -> DnsNames {
        DnsNames {
            map: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
            next_stamp: 0,
        }
    }

    /// Addresses remembered (expired ones included until they are pushed
    /// out).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Learns the A records of `msg`, a DNS response as the relay passes
    /// it to an app, at `now`. Anything else (a query, an error, no
    /// question, a message that does not parse) teaches nothing. Returns
    /// how many addresses were learnt.
    pub fn learn(&mut self, msg: &[u8], now: Instant) -> usize {
        let Ok(m) = Message::from_vec(msg) else {
            return 0;
        };
        if m.metadata.message_type != MessageType::Response
            || m.metadata.response_code != ResponseCode::NoError
        {
            return 0;
        }
        let Some(q) = m.queries.first() else {
            return 0;
        };
        if q.query_type() != RecordType::A {
            return 0;
        }
        let mut name = q.name().to_ascii().to_ascii_lowercase();
        if name.ends_with('.') {
            name.pop();
        }
        if name.is_empty() {
            return 0;
        }
        let name: Arc<str> = name.into();
        let mut n = 0;
        for r in &m.answers {
            if let RData::A(a) = &r.data {
                let ttl = Duration::from_secs(u64::from(r.ttl)).clamp(MIN_TTL, MAX_TTL);
                self.insert(a.0, name.clone(), now + ttl);
                n += 1;
            }
        }
        n
    }

    fn insert(&mut self, addr: Ipv4Addr, name: Arc<str>, expires: Instant) {
        let stamp = self.next_stamp;
        self.next_stamp += 1;
        self.map.insert(
            addr,
            Entry {
                name,
                expires,
                stamp,
            },
        );
        self.order.push_back((addr, stamp));
        while self.map.len() > self.capacity {
            self.pop_oldest();
        }
        // Stale pushes of addresses learnt again: never more than the
        // live ones.
        if self.order.len() > 2 * self.capacity {
            let map = &self.map;
            self.order
                .retain(|(a, s)| map.get(a).is_some_and(|e| e.stamp == *s));
        }
    }

    fn pop_oldest(&mut self) {
        while let Some((a, s)) = self.order.pop_front() {
            if self.map.get(&a).is_some_and(|e| e.stamp == s) {
                self.map.remove(&a);
                return;
            }
        }
    }

    /// The name learnt for `addr` that has not expired at `now`. An
    /// expired entry stays until it is pushed out or learnt again (the
    /// capacity bounds it either way).
    pub fn lookup(&self, addr: Ipv4Addr, now: Instant) -> Option<Arc<str>> {
        self.map
            .get(&addr)
            .filter(|e| e.expires > now)
            .map(|e| e.name.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A DNS response built by hand from RFC 1035 4.1: header (id 0x1234,
    /// QR, RD, RA, NOERROR), one question for `qname` of type `qtype`, and
    /// the answer records `answers` (type, TTL, RDATA), each owned by the
    /// question's name through a compression pointer to offset 12.
    fn response(qname: &str, qtype: u16, rcode: u8, answers: &[(u16, u32, Vec<u8>)]) -> Vec<u8> {
        let mut m = vec![
            0x12,
            0x34,
            0x81,
            0x80 | rcode,
            0,
            1,
            0,
            answers.len() as u8,
            0,
            0,
            0,
            0,
        ];
        for label in qname.split('.') {
            m.push(label.len() as u8);
            m.extend_from_slice(label.as_bytes());
        }
        m.push(0);
        m.extend_from_slice(&qtype.to_be_bytes());
        m.extend_from_slice(&1u16.to_be_bytes());
        for (t, ttl, rdata) in answers {
            m.extend_from_slice(&[0xc0, 12]);
            m.extend_from_slice(&t.to_be_bytes());
            m.extend_from_slice(&1u16.to_be_bytes());
            m.extend_from_slice(&ttl.to_be_bytes());
            m.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
            m.extend_from_slice(rdata);
        }
        m
    }

    const A: u16 = 1;
    const CNAME: u16 = 5;
    const AAAA: u16 = 28;

    fn a(o: [u8; 4], ttl: u32) -> (u16, u32, Vec<u8>) {
        (A, ttl, o.to_vec())
    }

    fn name(n: &DnsNames, addr: [u8; 4], now: Instant) -> Option<String> {
        n.lookup(Ipv4Addr::from(addr), now).map(|s| s.to_string())
    }

    #[test]
    fn a_records_are_learnt_under_the_question_name() {
        let t0 = Instant::now();
        let mut n = DnsNames::new(16);
        let msg = response(
            "WWW.Example.ORG",
            A,
            0,
            &[a([192, 0, 2, 1], 300), a([192, 0, 2, 2], 300)],
        );
        assert_eq!(n.learn(&msg, t0), 2);
        assert_eq!(
            name(&n, [192, 0, 2, 1], t0).as_deref(),
            Some("www.example.org")
        );
        assert_eq!(
            name(&n, [192, 0, 2, 2], t0).as_deref(),
            Some("www.example.org")
        );
        assert_eq!(name(&n, [192, 0, 2, 3], t0), None);
    }

    #[test]
    fn a_cname_chain_keeps_the_name_the_app_asked() {
        let t0 = Instant::now();
        let mut n = DnsNames::new(16);
        // CNAME to cdn.example.net, then its A record (owner: the question
        // name by pointer, as the test helper writes every record; what
        // counts is that the question, not the target, is remembered).
        let target = b"\x03cdn\x07example\x03net\x00".to_vec();
        let msg = response(
            "app.example.org",
            A,
            0,
            &[(CNAME, 60, target), a([198, 51, 100, 7], 60)],
        );
        assert_eq!(n.learn(&msg, t0), 1);
        assert_eq!(
            name(&n, [198, 51, 100, 7], t0).as_deref(),
            Some("app.example.org")
        );
    }

    #[test]
    fn queries_errors_other_types_and_garbage_teach_nothing() {
        let t0 = Instant::now();
        let mut n = DnsNames::new(16);
        let mut query = response("example.org", A, 0, &[a([192, 0, 2, 1], 60)]);
        query[2] &= 0x7f; // QR clear: a query
        assert_eq!(n.learn(&query, t0), 0);
        let servfail = response("example.org", A, 2, &[a([192, 0, 2, 1], 60)]);
        assert_eq!(n.learn(&servfail, t0), 0);
        let aaaa = response("example.org", AAAA, 0, &[(AAAA, 60, vec![0x20; 16])]);
        assert_eq!(n.learn(&aaaa, t0), 0);
        assert_eq!(n.learn(&[0xff; 7], t0), 0);
        let mut cut = response("example.org", A, 0, &[a([192, 0, 2, 1], 60)]);
        cut.truncate(cut.len() - 2);
        assert_eq!(n.learn(&cut, t0), 0);
        assert_eq!(n.len(), 0);
    }

    #[test]
    fn entries_live_for_the_ttl_clamped_to_a_minute_and_six_hours() {
        let t0 = Instant::now();
        let mut n = DnsNames::new(16);
        n.learn(
            &response("short.example", A, 0, &[a([192, 0, 2, 1], 5)]),
            t0,
        );
        n.learn(
            &response("mid.example", A, 0, &[a([192, 0, 2, 2], 600)]),
            t0,
        );
        n.learn(
            &response("long.example", A, 0, &[a([192, 0, 2, 3], 86400)]),
            t0,
        );
        let s = Duration::from_secs;
        assert!(
            name(&n, [192, 0, 2, 1], t0 + s(59)).is_some(),
            "TTL 5 s lives 60 s"
        );
        assert!(name(&n, [192, 0, 2, 1], t0 + s(60)).is_none());
        assert!(name(&n, [192, 0, 2, 2], t0 + s(599)).is_some());
        assert!(name(&n, [192, 0, 2, 2], t0 + s(600)).is_none());
        assert!(name(&n, [192, 0, 2, 3], t0 + s(6 * 3600 - 1)).is_some());
        assert!(
            name(&n, [192, 0, 2, 3], t0 + s(6 * 3600)).is_none(),
            "at most 6 h"
        );
    }

    #[test]
    fn the_latest_answer_wins_and_the_least_recently_learnt_goes_first() {
        let t0 = Instant::now();
        let mut n = DnsNames::new(3);
        for (i, host) in ["a", "b", "c"].iter().enumerate() {
            let msg = response(
                &format!("{host}.example"),
                A,
                0,
                &[a([192, 0, 2, i as u8], 60)],
            );
            n.learn(&msg, t0);
        }
        // 192.0.2.0 learnt again, under another name: the newest now.
        n.learn(&response("z.example", A, 0, &[a([192, 0, 2, 0], 60)]), t0);
        assert_eq!(name(&n, [192, 0, 2, 0], t0).as_deref(), Some("z.example"));
        // A fourth address pushes out the least recently learnt: .1 (b).
        n.learn(&response("d.example", A, 0, &[a([192, 0, 2, 9], 60)]), t0);
        assert_eq!(n.len(), 3);
        assert_eq!(name(&n, [192, 0, 2, 1], t0), None);
        assert_eq!(name(&n, [192, 0, 2, 0], t0).as_deref(), Some("z.example"));
        assert_eq!(name(&n, [192, 0, 2, 2], t0).as_deref(), Some("c.example"));
        assert_eq!(name(&n, [192, 0, 2, 9], t0).as_deref(), Some("d.example"));
    }

    #[test]
    fn relearning_one_address_forever_keeps_the_order_queue_bounded() {
        let t0 = Instant::now();
        let mut n = DnsNames::new(4);
        let msg = response("busy.example", A, 0, &[a([192, 0, 2, 1], 60)]);
        for _ in 0..1000 {
            n.learn(&msg, t0);
        }
        assert_eq!(n.len(), 1);
        assert!(n.order.len() <= 8, "order queue {} long", n.order.len());
        assert_eq!(
            name(&n, [192, 0, 2, 1], t0).as_deref(),
            Some("busy.example")
        );
    }
}
