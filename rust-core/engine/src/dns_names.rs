//! The names behind IPv4 destinations, for [`crate::flow_events::FlowStart::name`]
//! (issue 17): which name the engine's DNS relay resolved to an address
//! for the apps. Sans I/O: the relay hands every UDP answer it passes to
//! an app to [`DnsNames::learn`] with `now`; a new flow asks
//! [`DnsNames::lookup`]. Kept only while flow events are on.
//!
//! - What is remembered: the A records (RFC 1035 3.4.1) of the answer
//!   section of a NOERROR response to a question of type A, class IN,
//!   owned by the question's name or by a name of the CNAME chain that
//!   starts there (RFC 1034 3.6.2; any other A record of the answer is
//!   not about the question and is ignored), each under the name of the
//!   *question* (the name the app asked, not the chain's target), in
//!   presentation form, lower case (RFC 4343: names compare without regard
//!   to case), without the final dot. A name that needs `\` escapes (a
//!   label with a dot, a space or a byte outside printable ASCII) or is
//!   longer than [`MAX_NAME_LEN`] characters is not remembered. One name
//!   per address: the latest answer wins (a CDN address serves many
//!   names; the one an app resolved last is the likeliest for its next
//!   flow). The cache is the engine's, not an app's: a name is one the
//!   relay recently resolved to the address for any client.
//! - How long: the record's TTL (RFC 2181 section 8: a TTL with its top
//!   bit set counts as 0), but at least [`MIN_TTL`] (an app connects after
//!   it got the answer, sometimes long after a TTL of seconds) and at most
//!   [`MAX_TTL`].
//! - How many: at most `capacity` addresses; a new one beyond that pushes
//!   out the least recently learnt (an address learnt again moves to the
//!   back). Memory: about 130 bytes per address for the map's bucket and
//!   the learning order's slots (measured by a test), plus the name's
//!   allocation (16 bytes of counts and the name, at most [`MAX_NAME_LEN`]
//!   bytes, shared by the addresses of one answer): at most about 1.7 MB
//!   for [`CAPACITY`].
//! - Forgotten when the network or the resolvers change
//!   ([`DnsNames::clear`]): names from one network's resolvers (split
//!   horizon) must not name flows on the next.
//! - Cost: answers that are not to an A question are skipped after a look
//!   at the header and the question ([`crate::dns_wire::is_a_in_answer`]),
//!   before any parse.
//! - Not seen: answers the relay carries over TCP (a byte stream to the
//!   resolver, not parsed), and resolution that does not go through the
//!   relay (Private DNS, an app's own resolver).

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};
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
/// Longest name remembered, in characters of its presentation form without
/// the final dot: a name of 255 octets on the wire (RFC 1035 2.3.4).
pub const MAX_NAME_LEN: usize = 253;

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
    /// it to an app, at `now`: those owned by the question's name or its
    /// CNAME chain (module doc). Anything else (a query, an error, another
    /// question type, a message that does not parse, a name too long or
    /// not printable) teaches nothing. Returns how many addresses were
    /// learnt.
    pub fn learn(&mut self, msg: &[u8], now: Instant) -> usize {
        // Most answers (AAAA, HTTPS...) are not for us: no parse for them.
        if !crate::dns_wire::is_a_in_answer(msg) {
            return 0;
        }
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
        if q.query_type() != RecordType::A || q.query_class() != DNSClass::IN {
            return 0;
        }
        let mut name = q.name().to_ascii().to_ascii_lowercase();
        if name.ends_with('.') {
            name.pop();
        }
        if name.is_empty() || name.len() > MAX_NAME_LEN || name.contains('\\') {
            return 0;
        }
        // The question's name and the CNAME chain from it, in any order
        // of the records (each pass adds the targets of the names found).
        let mut owners: Vec<&Name> = vec![q.name()];
        loop {
            let before = owners.len();
            for r in &m.answers {
                if let RData::CNAME(t) = &r.data {
                    if owners.contains(&&r.name) && !owners.contains(&&t.0) {
                        owners.push(&t.0);
                    }
                }
            }
            if owners.len() == before {
                break;
            }
        }
        let name: Arc<str> = name.into();
        let mut n = 0;
        for r in &m.answers {
            if let RData::A(a) = &r.data {
                if r.dns_class != DNSClass::IN || !owners.contains(&&r.name) {
                    continue;
                }
                let ttl = Duration::from_secs(u64::from(ttl_seconds(r.ttl)));
                self.insert(a.0, name.clone(), now + ttl.clamp(MIN_TTL, MAX_TTL));
                n += 1;
            }
        }
        n
    }

    /// Forgets every name (the network or the resolvers changed).
    pub fn clear(&mut self) {
        self.map.clear();
        self.order.clear();
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

/// A record's TTL in seconds: RFC 2181 section 8 makes the top bit of the
/// 32-bit field a zero-TTL marker (a value above 2^31 - 1 counts as 0).
fn ttl_seconds(ttl: u32) -> u32 {
    if ttl > i32::MAX as u32 {
        0
    } else {
        ttl
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

    /// A name in wire form (RFC 1035 3.1): length-prefixed labels, root.
    fn wire(name: &str) -> Vec<u8> {
        let mut w = Vec::new();
        for label in name.split('.') {
            w.push(label.len() as u8);
            w.extend_from_slice(label.as_bytes());
        }
        w.push(0);
        w
    }

    /// [`response`] with each answer's owner written out (`None`: a
    /// pointer to the question's name).
    fn response_owned(qname: &str, answers: &[(Option<&str>, u16, Vec<u8>)]) -> Vec<u8> {
        let plain: Vec<_> = answers
            .iter()
            .map(|(_, t, r)| (*t, 300, r.clone()))
            .collect();
        let mut m = response(qname, A, 0, &[]);
        m[7] = plain.len() as u8;
        for (owner, t, rdata) in answers {
            match owner {
                Some(o) => m.extend_from_slice(&wire(o)),
                None => m.extend_from_slice(&[0xc0, 12]),
            }
            m.extend_from_slice(&t.to_be_bytes());
            m.extend_from_slice(&1u16.to_be_bytes());
            m.extend_from_slice(&300u32.to_be_bytes());
            m.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
            m.extend_from_slice(rdata);
        }
        m
    }

    /// Only A records owned by the question or its CNAME chain are about
    /// the question: the chain is followed whatever the records' order,
    /// and an A record of another name in the same answer is not filed
    /// under the question.
    #[test]
    fn only_a_records_of_the_question_or_its_cname_chain_are_learnt() {
        let t0 = Instant::now();
        let mut n = DnsNames::new(16);
        let msg = response_owned(
            "app.example.org",
            &[
                (Some("edge.cdn.example"), A, vec![198, 51, 100, 7]),
                (Some("unrelated.example"), A, vec![203, 0, 113, 66]),
                (Some("app.example.org"), CNAME, wire("web.example.net")),
                (Some("web.example.net"), CNAME, wire("EDGE.cdn.example")),
                (Some("other.example"), CNAME, wire("elsewhere.example")),
                (Some("elsewhere.example"), A, vec![203, 0, 113, 67]),
            ],
        );
        assert_eq!(n.learn(&msg, t0), 1);
        assert_eq!(
            name(&n, [198, 51, 100, 7], t0).as_deref(),
            Some("app.example.org")
        );
        assert_eq!(name(&n, [203, 0, 113, 66], t0), None);
        assert_eq!(name(&n, [203, 0, 113, 67], t0), None);
        assert_eq!(n.len(), 1);
    }

    /// Names are bounded in bytes: one that needs escapes (a dot or space
    /// inside a label, a byte outside printable ASCII) is not kept; the
    /// longest valid one (253 characters) is.
    #[test]
    fn names_needing_escapes_are_not_learnt_and_the_longest_valid_one_is() {
        let t0 = Instant::now();
        let mut n = DnsNames::new(16);
        for (i, label) in [&b"a.b"[..], b"a b", b"a\x01b", b"a\\b"].iter().enumerate() {
            let mut m = response("x.example", A, 0, &[a([192, 0, 2, i as u8], 60)]);
            // Replace the first label "x" by `label`, by hand.
            let mut q = vec![label.len() as u8];
            q.extend_from_slice(label);
            m.splice(12..14, q);
            // The answers point at offset 12: still the question's name.
            assert_eq!(n.learn(&m, t0), 0, "label {label:?}");
        }
        let long = [
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(61),
        ]
        .join(".");
        assert_eq!(long.len(), MAX_NAME_LEN);
        let msg = response(&long, A, 0, &[a([192, 0, 2, 9], 60)]);
        assert_eq!(n.learn(&msg, t0), 1);
        assert_eq!(name(&n, [192, 0, 2, 9], t0), Some(long));
    }

    /// RFC 2181 section 8: a TTL with the top bit set is 0 (here kept the
    /// minimum), not 68 years clamped to the maximum.
    #[test]
    fn a_ttl_with_its_top_bit_set_counts_as_zero() {
        let t0 = Instant::now();
        let mut n = DnsNames::new(16);
        n.learn(
            &response("odd.example", A, 0, &[a([192, 0, 2, 1], 0x8000_0000)]),
            t0,
        );
        n.learn(
            &response("max.example", A, 0, &[a([192, 0, 2, 2], 0x7fff_ffff)]),
            t0,
        );
        let s = Duration::from_secs;
        assert!(name(&n, [192, 0, 2, 1], t0 + s(59)).is_some());
        assert!(
            name(&n, [192, 0, 2, 1], t0 + s(60)).is_none(),
            "kept as TTL 0"
        );
        assert!(
            name(&n, [192, 0, 2, 2], t0 + s(3600)).is_some(),
            "2^31 - 1 is valid"
        );
    }

    /// The memory of a full cache, from its tables' capacities: the map's
    /// buckets (key, entry, a control byte) and the learning order's slots,
    /// per address, besides the names (an `Arc<str>`: 16 bytes of counts
    /// plus the name, plus malloc's overhead). Printed; bounded as the
    /// module doc states it.
    #[test]
    fn a_full_cache_costs_about_130_bytes_an_address_besides_the_names() {
        let t0 = Instant::now();
        let mut n = DnsNames::new(CAPACITY);
        for i in 0..(2 * CAPACITY) as u32 {
            let o = (0xc000_0000u32 + i).to_be_bytes();
            n.learn(&response("x.example", A, 0, &[a(o, 600)]), t0);
        }
        assert_eq!(n.len(), CAPACITY);
        let bucket = std::mem::size_of::<(Ipv4Addr, Entry)>() + 1;
        let map = n.map.capacity() * 8 / 7 * bucket;
        let order = n.order.capacity() * std::mem::size_of::<(Ipv4Addr, u64)>();
        let per = (map + order) / CAPACITY;
        println!("name cache: {map} bytes of map, {order} of order: {per} bytes an address");
        assert!(per <= 140, "{per}");
    }

    #[test]
    fn clear_forgets_every_name() {
        let t0 = Instant::now();
        let mut n = DnsNames::new(16);
        n.learn(&response("x.example", A, 0, &[a([192, 0, 2, 1], 600)]), t0);
        assert!(name(&n, [192, 0, 2, 1], t0).is_some());
        n.clear();
        assert_eq!((n.len(), n.order.len()), (0, 0));
        assert_eq!(name(&n, [192, 0, 2, 1], t0), None);
        n.learn(&response("y.example", A, 0, &[a([192, 0, 2, 1], 600)]), t0);
        assert_eq!(name(&n, [192, 0, 2, 1], t0).as_deref(), Some("y.example"));
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
