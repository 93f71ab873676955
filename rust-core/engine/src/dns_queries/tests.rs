//! The DNS relay core without sockets: inputs in, exact actions out.
//! Queries and answers are built with hickory-proto, and expected answers
//! are built again under the app's id (not derived from the core's output).

use super::*;
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use std::net::Ipv4Addr;

const T: Duration = Duration::from_secs(2);
const APP: u16 = 40000;

fn resolvers(n: usize) -> Vec<SocketAddr> {
    (0..n)
        .map(|i| format!("[2001:db8:53::{}]:53", i + 1).parse().unwrap())
        .collect()
}

fn query(id: u16, name: &str, edns: Option<u16>) -> Vec<u8> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    if let Some(sz) = edns {
        let mut e = Edns::new();
        e.set_max_payload(sz);
        m.edns = Some(e);
    }
    m.to_vec().unwrap()
}

/// An answer with `id` to the question `name`/A: `count` A records,
/// TC set when `tc`.
fn answer(id: u16, name: &str, count: u8, tc: bool) -> Vec<u8> {
    let n = Name::from_ascii(name).unwrap();
    let mut m = Message::new(id, MessageType::Response, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.metadata.recursion_available = true;
    m.metadata.truncation = tc;
    m.add_query(Query::query(n.clone(), RecordType::A));
    for i in 0..count {
        let a = Ipv4Addr::new(203, 0, 113, 100 + i);
        m.add_answer(Record::from_rdata(n.clone(), 60, RData::A(a.into())));
    }
    m.to_vec().unwrap()
}

fn id_of(msg: &[u8]) -> u16 {
    u16::from_be_bytes([msg[0], msg[1]])
}

fn actions(d: &mut DnsQueries) -> Vec<DnsAction> {
    std::iter::from_fn(|| d.poll_action()).collect()
}

/// The one action queued, a UDP send: (resolver, upstream id). The query
/// sent is the app's with only the id changed.
fn sent(d: &mut DnsQueries, app_query: &[u8]) -> (usize, u16) {
    match actions(d).as_slice() {
        [DnsAction::SendUdp { resolver, query }] => {
            assert_eq!(query[2..], app_query[2..], "only the id changes");
            (*resolver, id_of(query))
        }
        other => panic!("expected one UdpSend, got {other:?}"),
    }
}

fn servfail_for(d: &mut DnsQueries, app_id: u16) {
    match actions(d).as_slice() {
        [DnsAction::Answer { app_port, msg }] => {
            assert_eq!(*app_port, APP);
            let m = Message::from_vec(msg).unwrap();
            assert_eq!(m.metadata.id, app_id);
            assert_eq!(m.metadata.message_type, MessageType::Response);
            assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
            assert_eq!(m.queries.len(), 1);
        }
        other => panic!("expected SERVFAIL, got {other:?}"),
    }
}

#[test]
fn query_goes_out_under_another_id_and_the_answer_comes_back_under_the_apps() {
    let c = Counters::default();
    let t0 = Instant::now();
    let r = resolvers(2);
    let mut d = DnsQueries::new(r.clone(), T);
    assert_eq!(d.poll_timeout(), None);
    let q = query(0x1111, "small.test.", None);
    d.on_app_query(t0, APP, &q, &c);
    let (i, uid) = sent(&mut d, &q);
    assert_eq!(i, 0);
    assert_eq!(d.poll_timeout(), Some(t0 + T));
    d.on_udp_answer(t0, 0, r[0], &answer(uid, "small.test.", 1, false), &c);
    assert_eq!(
        actions(&mut d),
        [DnsAction::Answer {
            app_port: APP,
            msg: answer(0x1111, "small.test.", 1, false)
        }]
    );
    assert_eq!(d.poll_timeout(), None, "the deadline is disarmed");
    // The same answer again (a duplicate) is for no query any more.
    d.on_udp_answer(t0, 0, r[0], &answer(uid, "small.test.", 1, false), &c);
    assert_eq!(actions(&mut d), []);
    let s = c.snapshot();
    assert_eq!((s.dns_queries, s.dns_answers, s.dns_servfail), (1, 1, 0));
}

#[test]
fn timeouts_fail_over_in_order_each_resolver_once_then_servfail() {
    let c = Counters::default();
    let t0 = Instant::now();
    let r = resolvers(3);
    let mut d = DnsQueries::new(r, T);
    let q = query(0x2222, "small.test.", Some(1232));
    d.on_app_query(t0, APP, &q, &c);
    let (i, uid) = sent(&mut d, &q);
    assert_eq!(i, 0);
    // Not due yet: nothing.
    d.handle_timeout(t0 + T - Duration::from_millis(1), &c);
    assert_eq!(actions(&mut d), []);
    d.handle_timeout(t0 + T, &c);
    assert_eq!(sent(&mut d, &q), (1, uid), "same id, next resolver");
    assert_eq!(d.poll_timeout(), Some(t0 + 2 * T));
    d.handle_timeout(t0 + 2 * T, &c);
    assert_eq!(sent(&mut d, &q), (2, uid));
    d.handle_timeout(t0 + 3 * T, &c);
    servfail_for(&mut d, 0x2222);
    assert_eq!(d.poll_timeout(), None);
    let s = c.snapshot();
    assert_eq!((s.dns_upstream_timeouts, s.dns_servfail), (3, 1));
}

#[test]
fn the_resolver_that_answered_is_asked_first_and_failover_wraps_from_it() {
    let c = Counters::default();
    let t0 = Instant::now();
    let r = resolvers(3);
    let mut d = DnsQueries::new(r.clone(), T);
    let q = query(1, "small.test.", None);
    d.on_app_query(t0, APP, &q, &c);
    let (_, uid) = sent(&mut d, &q);
    d.handle_timeout(t0 + T, &c);
    assert_eq!(sent(&mut d, &q), (1, uid));
    d.on_udp_answer(t0 + T, 1, r[1], &answer(uid, "small.test.", 1, false), &c);
    assert_eq!(actions(&mut d).len(), 1);
    assert_eq!(d.preferred(), 1);
    // The next query starts at resolver 1, then 2, then 0, then SERVFAIL.
    let t1 = t0 + 5 * T;
    let q2 = query(2, "small.test.", None);
    d.on_app_query(t1, APP, &q2, &c);
    let (i, uid2) = sent(&mut d, &q2);
    assert_eq!(i, 1);
    d.handle_timeout(t1 + T, &c);
    assert_eq!(sent(&mut d, &q2), (2, uid2));
    d.handle_timeout(t1 + 2 * T, &c);
    assert_eq!(sent(&mut d, &q2), (0, uid2));
    d.handle_timeout(t1 + 3 * T, &c);
    servfail_for(&mut d, 2);
    // A query that failed everywhere does not move the preference.
    assert_eq!(d.preferred(), 1);
}

#[test]
fn answers_count_only_from_the_resolver_asked_with_the_id_and_question_asked() {
    let c = Counters::default();
    let t0 = Instant::now();
    let r = resolvers(2);
    let mut d = DnsQueries::new(r.clone(), T);
    let q = query(0x3333, "real.test.", None);
    d.on_app_query(t0, APP, &q, &c);
    let (_, uid) = sent(&mut d, &q);
    let good = answer(uid, "real.test.", 1, false);
    // From another address on resolver 0's socket.
    let spoof: SocketAddr = "[2001:db8:66::1]:53".parse().unwrap();
    d.on_udp_answer(t0, 0, spoof, &good, &c);
    // Another question under the right id (a spoofer who guessed it).
    d.on_udp_answer(t0, 0, r[0], &answer(uid, "evil.test.", 1, false), &c);
    // Not a response (QR clear) and too short to be DNS.
    d.on_udp_answer(t0, 0, r[0], &query(uid, "real.test.", None), &c);
    d.on_udp_answer(t0, 0, r[0], &good[..5], &c);
    // Another id: no such query, silently ignored.
    d.on_udp_answer(t0, 0, r[0], &answer(uid ^ 1, "real.test.", 1, false), &c);
    // A socket index the core does not know.
    d.on_udp_answer(t0, 7, r[0], &good, &c);
    assert_eq!(actions(&mut d), []);
    let s = c.snapshot();
    assert_eq!(
        (s.drop_foreign_source, s.drop_dns_mismatch, s.drop_malformed),
        (2, 1, 2)
    );
    // The real answer still gets through.
    d.on_udp_answer(t0, 0, r[0], &good, &c);
    assert_eq!(
        actions(&mut d),
        [DnsAction::Answer {
            app_port: APP,
            msg: answer(0x3333, "real.test.", 1, false)
        }]
    );
}

#[test]
fn link_local_resolver_answers_only_from_its_interface() {
    let c = Counters::default();
    let t0 = Instant::now();
    let r: SocketAddr = "[fe80::1%3]:53".parse().unwrap();
    let mut d = DnsQueries::new(vec![r], T);
    let q = query(5, "small.test.", None);
    d.on_app_query(t0, APP, &q, &c);
    let (_, uid) = sent(&mut d, &q);
    let a = answer(uid, "small.test.", 1, false);
    let other_link: SocketAddr = "[fe80::1%4]:53".parse().unwrap();
    d.on_udp_answer(t0, 0, other_link, &a, &c);
    assert_eq!(actions(&mut d), []);
    assert_eq!(c.snapshot().drop_foreign_source, 1);
    d.on_udp_answer(t0, 0, r, &a, &c);
    assert_eq!(actions(&mut d).len(), 1);
}

/// A query (client size `edns`) answered truncated by resolver 0: the
/// core asks for TCP; returns (core, upstream id, resolvers).
fn truncated(c: &Counters, t0: Instant, edns: Option<u16>) -> (DnsQueries, u16, Vec<SocketAddr>) {
    let r = resolvers(2);
    let mut d = DnsQueries::new(r.clone(), T);
    let q = query(0x4444, "big.test.", edns);
    d.on_app_query(t0, APP, &q, c);
    let (_, uid) = sent(&mut d, &q);
    let tc = answer(uid, "big.test.", 0, true);
    let t1 = t0 + Duration::from_millis(500);
    d.on_udp_answer(t1, 0, r[0], &tc, c);
    match actions(&mut d).as_slice() {
        [DnsAction::OpenTcp {
            uid: u,
            server,
            query,
        }] => {
            assert_eq!((*u, *server), (uid, r[0]));
            assert_eq!(query[2..], q[2..]);
            assert_eq!(id_of(query), uid);
        }
        other => panic!("expected OpenTcp, got {other:?}"),
    }
    assert_eq!(d.poll_timeout(), Some(t1 + T), "a fresh deadline for TCP");
    (d, uid, r)
}

#[test]
fn truncated_answer_is_asked_again_over_tcp_and_the_full_answer_goes_to_the_app() {
    let c = Counters::default();
    let t0 = Instant::now();
    let (mut d, uid, r) = truncated(&c, t0, Some(4096));
    d.tcp_opened(uid, 9);
    // UDP answers meanwhile are not taken (TCP is asked now).
    d.on_udp_answer(t0, 0, r[0], &answer(uid, "big.test.", 1, false), &c);
    assert_eq!(actions(&mut d), []);
    d.on_tcp_answer(uid, Some(&answer(uid, "big.test.", 40, false)), &c);
    assert_eq!(
        actions(&mut d),
        [
            DnsAction::CloseTcp { slot: 9 },
            DnsAction::Answer {
                app_port: APP,
                msg: answer(0x4444, "big.test.", 40, false)
            }
        ]
    );
    assert_eq!(d.poll_timeout(), None);
    // TCP answers do not move the preference (only UDP ones do).
    assert_eq!(d.preferred(), 0);
    let s = c.snapshot();
    assert_eq!((s.dns_tcp_retries, s.dns_truncated), (1, 0));
}

#[test]
fn a_tcp_answer_too_big_for_the_client_failed_or_wrong_leaves_it_the_truncated_one() {
    let t0 = Instant::now();
    let tc_to_app = answer(0x4444, "big.test.", 0, true);
    // 40 A records do not fit a 512-byte client.
    let c = Counters::default();
    let (mut d, uid, _) = truncated(&c, t0, None);
    d.tcp_opened(uid, 3);
    let big = answer(uid, "big.test.", 40, false);
    assert!(big.len() > 512);
    d.on_tcp_answer(uid, Some(&big), &c);
    let want = |slot| {
        let mut v = vec![];
        if let Some(slot) = slot {
            v.push(DnsAction::CloseTcp { slot });
        }
        v.push(DnsAction::Answer {
            app_port: APP,
            msg: tc_to_app.clone(),
        });
        v
    };
    assert_eq!(actions(&mut d), want(Some(3)));
    assert_eq!(c.snapshot().dns_truncated, 1);
    // The TCP socket could not be opened at all.
    let c = Counters::default();
    let (mut d, uid, _) = truncated(&c, t0, Some(4096));
    d.on_tcp_answer(uid, None, &c);
    assert_eq!(actions(&mut d), want(None));
    // Another question over TCP: counted, truncated answer.
    let c = Counters::default();
    let (mut d, uid, _) = truncated(&c, t0, Some(4096));
    d.tcp_opened(uid, 4);
    d.on_tcp_answer(uid, Some(&answer(uid, "evil.test.", 1, false)), &c);
    assert_eq!(actions(&mut d), want(Some(4)));
    assert_eq!(c.snapshot().drop_dns_mismatch, 1);
    // Another id over TCP: truncated answer.
    let c = Counters::default();
    let (mut d, uid, _) = truncated(&c, t0, Some(4096));
    d.tcp_opened(uid, 4);
    d.on_tcp_answer(uid, Some(&answer(uid ^ 1, "big.test.", 1, false)), &c);
    assert_eq!(actions(&mut d), want(Some(4)));
    // TCP times out: the socket is closed, truncated answer.
    let c = Counters::default();
    let (mut d, uid, _) = truncated(&c, t0, Some(4096));
    d.tcp_opened(uid, 5);
    d.handle_timeout(t0 + T, &c);
    assert_eq!(actions(&mut d), [], "the UDP deadline was replaced");
    d.handle_timeout(t0 + Duration::from_millis(500) + T, &c);
    assert_eq!(actions(&mut d), want(Some(5)));
    assert_eq!(c.snapshot().dns_upstream_timeouts, 1);
    // Late reports about a finished query change nothing.
    d.on_tcp_answer(uid, None, &c);
    d.tcp_opened(uid, 6);
    assert_eq!(actions(&mut d), []);
}

#[test]
fn a_new_resolver_list_asks_pending_queries_again_from_the_first() {
    let c = Counters::default();
    let t0 = Instant::now();
    let r = resolvers(3);
    let mut d = DnsQueries::new(r.clone(), T);
    // Resolver 2 answered last: preferred.
    let q0 = query(1, "small.test.", None);
    d.on_app_query(t0, APP, &q0, &c);
    let (_, u0) = sent(&mut d, &q0);
    d.handle_timeout(t0 + T, &c);
    d.handle_timeout(t0 + 2 * T, &c);
    assert_eq!(actions(&mut d).len(), 2);
    d.on_udp_answer(t0, 2, r[2], &answer(u0, "small.test.", 1, false), &c);
    actions(&mut d);
    assert_eq!(d.preferred(), 2);
    // Two queries in flight: one over UDP to resolver 2, one over TCP.
    let t1 = t0 + 3 * T;
    let qa = query(0xa, "a.test.", None);
    let qb = query(0xb, "big.test.", Some(4096));
    d.on_app_query(t1, APP, &qa, &c);
    let (ia, ua) = sent(&mut d, &qa);
    d.on_app_query(t1, APP, &qb, &c);
    let (ib, ub) = sent(&mut d, &qb);
    assert_eq!((ia, ib), (2, 2));
    d.on_udp_answer(t1, 2, r[2], &answer(ub, "big.test.", 0, true), &c);
    assert_eq!(actions(&mut d).len(), 1);
    d.tcp_opened(ub, 11);
    // The list changes: TCP closed, both asked again from the first, same ids.
    let r2 = resolvers(2);
    d.set_resolvers(r2.clone());
    assert_eq!(d.preferred(), 0);
    let mut got = actions(&mut d);
    let close = got
        .iter()
        .position(|a| *a == DnsAction::CloseTcp { slot: 11 });
    assert!(close.is_some(), "{got:?}");
    got.remove(close.unwrap());
    let mut sends: Vec<(usize, u16)> = got
        .iter()
        .map(|a| match a {
            DnsAction::SendUdp { resolver, query } => (*resolver, id_of(query)),
            other => panic!("{other:?}"),
        })
        .collect();
    sends.sort_unstable();
    let mut want = vec![(0, ua), (0, ub)];
    want.sort_unstable();
    assert_eq!(sends, want);
    // Each gets the whole new list again: timeout -> resolver 1 -> SERVFAIL
    // (qb's truncated answer from before stays its fallback).
    d.handle_timeout(t1 + T, &c);
    let mut next: Vec<(usize, u16)> = actions(&mut d)
        .iter()
        .map(|a| match a {
            DnsAction::SendUdp { resolver, query } => (*resolver, id_of(query)),
            other => panic!("{other:?}"),
        })
        .collect();
    next.sort_unstable();
    let mut want = vec![(1, ua), (1, ub)];
    want.sort_unstable();
    assert_eq!(next, want);
    // The UDP answer to qb over the new list is taken again (UDP now).
    d.on_udp_answer(t1, 1, r2[1], &answer(ub, "big.test.", 1, false), &c);
    assert_eq!(
        actions(&mut d),
        [DnsAction::Answer {
            app_port: APP,
            msg: answer(0xb, "big.test.", 1, false)
        }]
    );
    // An empty list: nothing to send; the pending query fails at its deadline.
    d.set_resolvers(vec![]);
    assert_eq!(actions(&mut d), []);
    d.handle_timeout(t1 + 2 * T, &c);
    servfail_for(&mut d, 0xa);
}

#[test]
fn no_resolver_or_too_many_in_flight_is_servfail_at_once() {
    let c = Counters::default();
    let t0 = Instant::now();
    let mut d = DnsQueries::new(vec![], T);
    d.on_app_query(t0, APP, &query(7, "small.test.", None), &c);
    servfail_for(&mut d, 7);
    assert_eq!(d.poll_timeout(), None);
    assert_eq!(c.snapshot().drop_no_dns_upstream, 1);

    let c = Counters::default();
    let mut d = DnsQueries::new(resolvers(1), T);
    let q = query(8, "small.test.", None);
    let mut ids = std::collections::HashSet::new();
    for _ in 0..MAX_DNS_PENDING {
        d.on_app_query(t0, APP, &q, &c);
        ids.insert(sent(&mut d, &q).1);
    }
    assert_eq!(
        ids.len(),
        MAX_DNS_PENDING,
        "every query in flight has its own id"
    );
    d.on_app_query(t0, APP, &query(9, "small.test.", None), &c);
    servfail_for(&mut d, 9);
    let s = c.snapshot();
    assert_eq!(
        (s.dns_queries, s.dns_servfail),
        (MAX_DNS_PENDING as u64 + 1, 1)
    );
    assert_eq!(s.drop_no_dns_upstream, 0);
    // A query shorter than a header is no query: dropped, counted.
    d.on_app_query(t0, APP, &q[..11], &c);
    assert_eq!(actions(&mut d), []);
    assert_eq!(c.snapshot().drop_malformed, 1);
}

#[test]
fn ids_taken_or_unavailable_move_on_to_a_free_one() {
    let c = Counters::default();
    let t0 = Instant::now();
    let mut d = DnsQueries::new(resolvers(1), T);
    d.id_source = || Some(0xfffe);
    let q = query(1, "small.test.", None);
    let got: Vec<u16> = (0..3)
        .map(|_| {
            d.on_app_query(t0, APP, &q, &c);
            sent(&mut d, &q).1
        })
        .collect();
    assert_eq!(got, [0xfffe, 0xffff, 0x0000]);
    // No randomness: the id after the last one.
    d.id_source = || None;
    d.on_app_query(t0, APP, &q, &c);
    assert_eq!(sent(&mut d, &q).1, 0x0001);
}

#[test]
fn upstream_ids_are_random_not_sequential() {
    // 16 queries: sequential ids (what the relay once had) would make
    // forged answers easy; 16 random ones are consecutive with a chance
    // of 2^-240.
    let c = Counters::default();
    let t0 = Instant::now();
    let mut d = DnsQueries::new(resolvers(1), T);
    let q = query(0x1234, "small.test.", None);
    let ids: Vec<u16> = (0..16)
        .map(|_| {
            d.on_app_query(t0, APP, &q, &c);
            sent(&mut d, &q).1
        })
        .collect();
    let consecutive = ids.windows(2).all(|w| w[1] == w[0].wrapping_add(1));
    assert!(!consecutive, "sequential ids: {ids:x?}");
}

#[test]
fn after_a_list_change_a_query_that_had_failed_over_gets_every_new_resolver() {
    let c = Counters::default();
    let t0 = Instant::now();
    let mut d = DnsQueries::new(resolvers(2), T);
    let q = query(0xc, "small.test.", None);
    d.on_app_query(t0, APP, &q, &c);
    let (_, uid) = sent(&mut d, &q);
    d.handle_timeout(t0 + T, &c);
    assert_eq!(sent(&mut d, &q), (1, uid), "one resolver left to try");
    d.set_resolvers(resolvers(2));
    assert_eq!(sent(&mut d, &q), (0, uid));
    // Its deadline is kept; then the second new resolver, then SERVFAIL.
    d.handle_timeout(t0 + 2 * T, &c);
    assert_eq!(sent(&mut d, &q), (1, uid));
    d.handle_timeout(t0 + 3 * T, &c);
    servfail_for(&mut d, 0xc);
}

#[test]
fn the_bytes_held_for_queries_in_flight_are_bounded() {
    // Query size is the app's to choose (up to a whole UDP datagram): the
    // count cap alone would let one app make the relay hold 4096 queries
    // of 64 KB (256 MiB) and as many truncated answers; on a phone the
    // engine would be killed and every app would lose IPv4.
    let c = Counters::default();
    let t0 = Instant::now();
    let r = resolvers(1);
    let mut d = DnsQueries::new(r.clone(), T);
    let mut big = query(5, "big.test.", None);
    big.resize(60_000, 0);
    let mut uids = vec![];
    loop {
        d.on_app_query(t0, APP, &big, &c);
        match actions(&mut d).as_slice() {
            [DnsAction::SendUdp { query, .. }] => uids.push(id_of(query)),
            [DnsAction::Answer { msg, .. }] => {
                let m = Message::from_vec(msg).unwrap();
                assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
                break;
            }
            other => panic!("{other:?}"),
        }
        assert!(uids.len() < MAX_DNS_PENDING, "no bound but the count");
    }
    assert!(!uids.is_empty());
    assert!(uids.len() * big.len() <= MAX_DNS_PENDING_BYTES);
    assert!((uids.len() + 1) * big.len() > MAX_DNS_PENDING_BYTES);
    // A small query still fits beside them; the budget comes back with
    // the answers.
    let small = query(6, "small.test.", None);
    d.on_app_query(t0, APP, &small, &c);
    let (_, su) = sent(&mut d, &small);
    d.on_udp_answer(t0, 0, r[0], &answer(su, "small.test.", 1, false), &c);
    actions(&mut d);
    for &u in &uids {
        let mut a = answer(u, "big.test.", 1, false);
        a[0..2].copy_from_slice(&u.to_be_bytes());
        d.on_udp_answer(t0, 0, r[0], &a, &c);
    }
    assert_eq!(actions(&mut d).len(), uids.len());
    assert_eq!(d.pending_bytes, 0);
    d.on_app_query(t0, APP, &big, &c);
    assert!(matches!(
        actions(&mut d).as_slice(),
        [DnsAction::SendUdp { .. }]
    ));
    // A truncated answer that would not fit goes to the app as it is (TC
    // set: it asks over TCP itself) instead of being held for a retry.
    let mut d = DnsQueries::new(r.clone(), T);
    let q = query(0x4444, "tc.test.", None);
    let mut fill = query(1, "big.test.", None);
    fill.resize(MAX_DNS_PENDING_BYTES - q.len() - 10, 0);
    d.on_app_query(t0, APP, &fill, &c);
    actions(&mut d);
    d.on_app_query(t0, APP, &q, &c);
    let (_, uid) = sent(&mut d, &q);
    let tc = answer(uid, "tc.test.", 3, true);
    assert!(tc.len() + q.len() + fill.len() > MAX_DNS_PENDING_BYTES);
    d.on_udp_answer(t0, 0, r[0], &tc, &c);
    match actions(&mut d).as_slice() {
        [DnsAction::Answer { msg, .. }] => {
            assert_eq!(id_of(msg), 0x4444);
            assert_eq!(msg[2..], tc[2..]);
        }
        other => panic!("expected the truncated answer, got {other:?}"),
    }
}

#[test]
fn a_truncated_answer_again_after_a_list_change_replaces_the_held_one() {
    let c = Counters::default();
    let t0 = Instant::now();
    let (mut d, uid, r) = truncated(&c, t0, None);
    d.set_resolvers(r.clone());
    actions(&mut d);
    let tc = answer(uid, "big.test.", 2, true);
    d.on_udp_answer(t0, 0, r[0], &tc, &c);
    assert!(matches!(
        actions(&mut d).as_slice(),
        [DnsAction::OpenTcp { .. }]
    ));
    let q = query(0x4444, "big.test.", None);
    assert_eq!(d.pending_bytes, q.len() + tc.len());
    d.on_tcp_answer(uid, None, &c);
    assert_eq!(actions(&mut d).len(), 1);
    assert_eq!(d.pending_bytes, 0);
}
