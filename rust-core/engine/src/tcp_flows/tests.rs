//! The flow core without sockets: inputs in, exact actions out. Packets
//! are built with etherparse (independent of the engine's own builders).

use super::*;
use etherparse::{NetHeaders, PacketBuilder, PacketHeaders, TcpOptionElement, TransportHeader};
use std::collections::HashMap;

const D: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
const CLAT: Ipv4Addr = Ipv4Addr::new(192, 0, 0, 4);
const SLOT: usize = 7;

fn to() -> FlowTimeouts {
    FlowTimeouts {
        established: Duration::from_secs(5),
        transitory: Duration::from_secs(240),
    }
}

/// A segment from the app, built by etherparse: `(packet, ihl, thl, info)`.
fn seg(sp: u16, seq: u32, ack: Option<u32>, flags: &str, payload: &[u8]) -> (Vec<u8>, SegInfo) {
    let mut b = PacketBuilder::ipv4(CLAT.octets(), D.octets(), 64).tcp(sp, 80, seq, 64240);
    if flags.contains('S') {
        b = b.syn();
    }
    if flags.contains('F') {
        b = b.fin();
    }
    if flags.contains('R') {
        b = b.rst();
    }
    if let Some(a) = ack {
        b = b.ack(a);
    }
    let b = if flags.contains('S') {
        b.options(&[
            TcpOptionElement::MaximumSegmentSize(1460),
            TcpOptionElement::Noop,
            TcpOptionElement::WindowScale(7),
        ])
        .unwrap()
    } else {
        b
    };
    let mut p = Vec::new();
    b.write(&mut p, payload).unwrap();
    let s = TcpSegment::parse(&p[20..]).unwrap();
    (p, SegInfo::from(&s))
}

fn app(
    f: &mut TcpFlows,
    now: Instant,
    sp: u16,
    (p, s): &(Vec<u8>, SegInfo),
    full: bool,
    c: &Counters,
) -> AppVerdict {
    let thl = TcpSegment::parse(&p[20..]).unwrap().header_len;
    f.on_app_segment(now, (sp, D.into(), 80), *s, p, 20, thl, full, c)
}

fn actions(f: &mut TcpFlows) -> Vec<Action> {
    std::iter::from_fn(|| f.poll_action()).collect()
}

fn held(p: &[u8]) -> Box<HeldSyn> {
    let thl = TcpSegment::parse(&p[20..]).unwrap().header_len;
    Box::new(HeldSyn::new(p, 20, thl).unwrap())
}

/// A flow of port `sp` through SYN, connect, injection and accept:
/// its NAT port.
fn established(f: &mut TcpFlows, t0: Instant, sp: u16, c: &Counters) -> u16 {
    let v = app(f, t0, sp, &seg(sp, 1000, None, "S", b""), false, c);
    assert_eq!(v, AppVerdict::Consumed);
    // A reported flow's Started comes first.
    let connect =
        std::iter::from_fn(|| f.poll_action()).find(|a| !matches!(a, Action::Started { .. }));
    let Some(Action::Connect { np, .. }) = connect else {
        panic!("no connect")
    };
    f.upstream_opened(np, SLOT);
    f.upstream_connected(np, t0);
    assert!(matches!(f.poll_action(), Some(Action::InjectSyn { .. })));
    assert_eq!(f.accepted(np, t0), Some(SLOT));
    np
}

#[test]
fn syn_is_held_until_the_upstream_connects_and_retransmissions_are_absorbed() {
    let c = Counters::default();
    let t0 = Instant::now();
    let mut f = TcpFlows::new(to());
    let first = seg(40000, 1000, None, "S", b"");
    assert_eq!(
        app(&mut f, t0, 40000, &first, false, &c),
        AppVerdict::Consumed
    );
    assert_eq!(
        actions(&mut f),
        vec![Action::Connect {
            np: 1024,
            dst: D.into(),
            dp: 80,
            tos: 0,
            path: Ipv4Path::Nat64,
        }]
    );
    assert_eq!(f.get(1024).unwrap().state, FlowState::Connecting);
    assert_eq!((f.live(), c.snapshot().flows_tcp), (1, 1));
    f.upstream_opened(1024, SLOT);
    // The app's SYN retransmission: nothing goes to the listener.
    let again = seg(40000, 1000, None, "S", b"");
    let t1 = t0 + Duration::from_secs(1);
    assert_eq!(
        app(&mut f, t1, 40000, &again, false, &c),
        AppVerdict::Consumed
    );
    assert_eq!(actions(&mut f), vec![]);
    assert_eq!(c.snapshot().tcp_syns_absorbed, 1);
    // Before the connect resolves no other segment reaches the listener.
    let stray = seg(40000, 1001, Some(5), "", b"");
    assert_eq!(
        app(&mut f, t1, 40000, &stray, false, &c),
        AppVerdict::Consumed
    );
    f.upstream_connected(1024, t1);
    assert_eq!(
        actions(&mut f),
        vec![Action::InjectSyn {
            np: 1024,
            syn: held(&again.0)
        }]
    );
    assert_eq!(f.get(1024).unwrap().state, FlowState::SynInjected);
    // A second report changes nothing.
    f.upstream_connected(1024, t1);
    assert_eq!(actions(&mut f), vec![]);
    // Now the handshake's ACK goes to the listener, and accept() pairs.
    let ack = seg(40000, 1001, Some(77), "", b"");
    assert_eq!(
        app(&mut f, t1, 40000, &ack, false, &c),
        AppVerdict::Forward(1024)
    );
    assert_eq!(f.accepted(1024, t1), Some(SLOT));
    assert_eq!(f.get(1024).unwrap().state, FlowState::Established);
    assert_eq!(f.accepted(1024, t1), None, "accepted once");
}

#[test]
fn a_failed_connect_answers_the_syn_as_the_path_did_and_frees_the_flow() {
    use Unreachable as U;
    for (errno, answer, rst, icmp) in [
        (Some(libc::ECONNREFUSED), Some(SynAnswer::Rst), 1, 0),
        (
            Some(libc::EHOSTUNREACH),
            Some(SynAnswer::Unreachable(U::Host)),
            0,
            1,
        ),
        (
            Some(libc::ENETUNREACH),
            Some(SynAnswer::Unreachable(U::Net)),
            0,
            1,
        ),
        (
            Some(libc::EACCES),
            Some(SynAnswer::Unreachable(U::Prohibited)),
            0,
            1,
        ),
        (
            Some(libc::EPERM),
            Some(SynAnswer::Unreachable(U::Prohibited)),
            0,
            1,
        ),
        (Some(libc::ETIMEDOUT), None, 0, 0),
        (Some(libc::EMFILE), Some(SynAnswer::Rst), 1, 0),
    ] {
        let c = Counters::default();
        let t0 = Instant::now();
        let mut f = TcpFlows::new(to());
        let s = seg(40000, 1000, None, "S", b"");
        app(&mut f, t0, 40000, &s, false, &c);
        actions(&mut f);
        f.upstream_opened(1024, SLOT);
        f.upstream_failed(1024, errno, &c);
        let mut want = vec![];
        if let Some(answer) = answer {
            want.push(Action::AnswerSyn {
                syn: held(&s.0),
                answer,
            });
        }
        want.push(Action::CloseSlot {
            slot: SLOT,
            rst_app: false,
            rst_up: false,
        });
        assert_eq!(actions(&mut f), want, "{errno:?}");
        // The slot is free at once.
        assert!(f.get(1024).is_none());
        assert_eq!(f.live(), 0);
        assert_eq!(f.poll_timeout(), None);
        let st = c.snapshot();
        assert_eq!(
            (st.flows_tcp, st.tcp_rst_sent, st.icmp_errors_sent),
            (0, rst, icmp),
            "{errno:?}"
        );
        // A new SYN on the tuple starts over.
        app(&mut f, t0, 40000, &s, false, &c);
        assert!(matches!(
            actions(&mut f)[..],
            [Action::Connect { np: 1025, .. }]
        ));
    }
}

#[test]
fn a_failure_before_any_socket_answers_without_closing_a_slot() {
    let c = Counters::default();
    let t0 = Instant::now();
    let mut f = TcpFlows::new(to());
    let s = seg(1, 5, None, "S", b"");
    app(&mut f, t0, 1, &s, false, &c);
    actions(&mut f);
    f.upstream_failed(1024, Some(libc::ENETUNREACH), &c);
    assert_eq!(
        actions(&mut f),
        vec![Action::AnswerSyn {
            syn: held(&s.0),
            answer: SynAnswer::Unreachable(Unreachable::Net)
        }]
    );
}

#[test]
fn app_reset_while_pending_frees_the_flow_and_resets_upstream() {
    let c = Counters::default();
    let t0 = Instant::now();
    let mut f = TcpFlows::new(to());
    app(&mut f, t0, 9, &seg(9, 5, None, "S", b""), false, &c);
    actions(&mut f);
    f.upstream_opened(1024, SLOT);
    let rst = seg(9, 6, None, "R", b"");
    assert_eq!(app(&mut f, t0, 9, &rst, false, &c), AppVerdict::Consumed);
    assert_eq!(
        actions(&mut f),
        vec![Action::CloseSlot {
            slot: SLOT,
            rst_app: false,
            rst_up: true
        }]
    );
    assert_eq!((f.live(), c.snapshot().flows_tcp), (0, 0));
    // No flow: later segments are refused, RSTs dropped.
    let ack = seg(9, 6, Some(1), "", b"");
    assert_eq!(app(&mut f, t0, 9, &ack, false, &c), AppVerdict::Refuse);
    assert_eq!(app(&mut f, t0, 9, &rst, false, &c), AppVerdict::Drop);
    assert_eq!(c.snapshot().drop_tcp_no_flow, 2);
}

#[test]
fn held_syn_keeps_headers_and_drops_payload_with_valid_checksums() {
    let (p, _) = seg(40000, 1000, None, "S", b"fast open data");
    let h = held(&p);
    let thl = TcpSegment::parse(&p[20..]).unwrap().header_len;
    assert_eq!(h.bytes().len(), 20 + thl);
    assert_eq!(
        h.bytes()[20..],
        p[20..20 + thl][..16]
            .iter()
            .chain(h.bytes()[36..38].iter())
            .chain(p[38..20 + thl].iter())
            .copied()
            .collect::<Vec<_>>()[..]
    );
    let hd = PacketHeaders::from_ip_slice(h.bytes()).unwrap();
    let NetHeaders::Ipv4(ip, _) = hd.net.unwrap() else {
        panic!()
    };
    assert_eq!(ip.total_len as usize, 20 + thl);
    assert_eq!(ip.header_checksum, ip.calc_header_checksum());
    let Some(TransportHeader::Tcp(t)) = hd.transport else {
        panic!()
    };
    assert!(t.syn && t.sequence_number == 1000);
    assert_eq!(t.checksum, t.calc_checksum_ipv4(&ip, &[]).unwrap());
    // Without payload the SYN is kept byte for byte.
    let (p, _) = seg(40000, 1000, None, "S", b"");
    assert_eq!(held(&p).bytes(), &p[..]);
}

#[test]
fn a_full_table_evicts_the_oldest_incomplete_flow_first() {
    let c = Counters::default();
    let t0 = Instant::now();
    let mut f = TcpFlows::new(to());
    let np_est = established(&mut f, t0, 1, &c);
    // Two pending flows, the older one with an upstream socket.
    app(
        &mut f,
        t0 + Duration::from_secs(1),
        2,
        &seg(2, 5, None, "S", b""),
        false,
        &c,
    );
    let Some(Action::Connect { np: old, .. }) = f.poll_action() else {
        panic!()
    };
    f.upstream_opened(old, 8);
    app(
        &mut f,
        t0 + Duration::from_secs(2),
        3,
        &seg(3, 5, None, "S", b""),
        false,
        &c,
    );
    let Some(Action::Connect { np: young, .. }) = f.poll_action() else {
        panic!()
    };
    assert_eq!(f.live(), 3);
    // Full: the SYN of port 4 takes the oldest incomplete flow's place.
    let t3 = t0 + Duration::from_secs(3);
    let v = app(&mut f, t3, 4, &seg(4, 5, None, "S", b""), true, &c);
    assert_eq!(v, AppVerdict::Consumed);
    let a = actions(&mut f);
    assert_eq!(
        a[0],
        Action::CloseSlot {
            slot: 8,
            rst_app: false,
            rst_up: true
        }
    );
    assert!(matches!(a[1], Action::Connect { dp: 80, .. }));
    assert_eq!(a.len(), 2);
    assert!(f.get(old).is_none());
    assert!(f.get(young).is_some() && f.get(np_est).is_some());
    assert_eq!(f.live(), 3);
    let st = c.snapshot();
    assert_eq!((st.flows_evicted, st.flows_tcp), (1, 3));
    // Two more: the young one goes, then the newest pending one; then only
    // the established flow is left and the SYN is refused.
    app(&mut f, t3, 5, &seg(5, 5, None, "S", b""), true, &c);
    assert!(f.get(young).is_none());
    app(&mut f, t3, 6, &seg(6, 5, None, "S", b""), true, &c);
    app(&mut f, t3, 7, &seg(7, 5, None, "S", b""), true, &c);
    actions(&mut f);
    assert_eq!(f.live(), 3);
    assert_eq!(c.snapshot().flows_evicted, 4);
    // Accept the newest two: nothing incomplete is left.
    for (np, e) in f.by_np.iter_mut() {
        if np != np_est {
            e.state = FlowState::Established;
        }
    }
    f.incomplete.clear();
    let v = app(&mut f, t3, 8, &seg(8, 5, None, "S", b""), true, &c);
    assert_eq!(v, AppVerdict::Refuse);
    assert_eq!(c.snapshot().drop_flow_limit, 1);
    assert_eq!(actions(&mut f), vec![]);
}

#[test]
fn idle_established_flow_expires_and_packets_either_way_refresh_it() {
    let c = Counters::default();
    let t0 = Instant::now();
    let s = |n| t0 + Duration::from_secs(n);
    let mut f = TcpFlows::new(to());
    let np = established(&mut f, t0, 1, &c);
    assert_eq!(f.poll_timeout(), Some(s(5)), "the established deadline");
    // One packet a second, from the app and the listener in turn, for 12 s
    // with a 5 s timeout: alive.
    for i in 1..=12 {
        if i % 2 == 1 {
            let ack = seg(1, 1001, Some(1), "", b"");
            assert_eq!(
                app(&mut f, s(i), 1, &ack, false, &c),
                AppVerdict::Forward(np)
            );
        } else {
            f.on_listener_segment(s(i), (np, false), None, &c);
        }
        f.handle_timeout(s(i), &c);
        assert_eq!(actions(&mut f), vec![], "at {i} s");
    }
    assert_eq!(f.poll_timeout(), Some(s(15)), "lazily re-armed");
    f.handle_timeout(s(16), &c);
    assert_eq!(f.poll_timeout(), Some(s(17)));
    assert_eq!(actions(&mut f), vec![]);
    f.handle_timeout(s(17), &c);
    assert_eq!(
        actions(&mut f),
        vec![Action::CloseSlot {
            slot: SLOT,
            rst_app: true,
            rst_up: true
        }]
    );
    assert_eq!(f.get(np).unwrap().state, FlowState::Closing);
    assert_eq!(f.poll_timeout(), Some(s(17) + CLOSE_GRACE));
    let st = c.snapshot();
    assert_eq!((st.flows_expired, st.flows_tcp), (1, 0));
    f.handle_timeout(s(19), &c);
    assert!(f.get(np).is_none());
    assert_eq!((f.live(), f.poll_timeout()), (0, None));
}

#[test]
fn established_deadline_follows_the_last_packet() {
    let c = Counters::default();
    let t0 = Instant::now();
    let s = |n| t0 + Duration::from_secs(n);
    let mut f = TcpFlows::new(FlowTimeouts {
        established: Duration::from_secs(5),
        transitory: Duration::from_secs(3),
    });
    let np = established(&mut f, t0, 1, &c);
    // Keepalive probes (seq one below the next) every second: the
    // deadline moves (the upstream gets keepalives too: not a close).
    let mut now = t0;
    for i in 1..=12 {
        now = s(i);
        app(&mut f, now, 1, &seg(1, 1000, Some(1), "", b""), false, &c);
        f.handle_timeout(now, &c);
        let a = actions(&mut f);
        assert!(
            a.iter().all(|a| matches!(a, Action::Keepalive { .. })),
            "at {i} s: {a:?}"
        );
    }
    assert_eq!(f.get(np).unwrap().state, FlowState::Established);
    // Then silence: it ends 5 s after the last packet, not before.
    f.handle_timeout(now + Duration::from_secs(4), &c);
    assert_eq!(actions(&mut f), vec![]);
    f.handle_timeout(now + Duration::from_secs(5), &c);
    assert_eq!(actions(&mut f).len(), 1);
    assert_eq!(f.get(np).unwrap().state, FlowState::Closing);
}

#[test]
fn app_keepalive_probes_set_upstream_keepalives_at_their_interval() {
    let c = Counters::default();
    let t0 = Instant::now();
    let s = |n| t0 + Duration::from_secs(n);
    let mut f = TcpFlows::new(to());
    let np = established(&mut f, t0, 1, &c);
    // 10 bytes of data: the app's next sequence number is 1011.
    let data = seg(1, 1001, Some(1), "", b"0123456789");
    assert_eq!(
        app(&mut f, s(1), 1, &data, false, &c),
        AppVerdict::Forward(np)
    );
    // A pure ACK at the next sequence number is no probe.
    app(&mut f, s(2), 1, &seg(1, 1011, Some(1), "", b""), false, &c);
    app(&mut f, s(3), 1, &seg(1, 1011, Some(1), "", b""), false, &c);
    assert_eq!(actions(&mut f), vec![]);
    // Probes (seq one below): 30 s apart.
    let probe = seg(1, 1010, Some(1), "", b"");
    app(&mut f, s(100), 1, &probe, false, &c);
    assert_eq!(actions(&mut f), vec![], "one probe gives no interval yet");
    app(&mut f, s(130), 1, &probe, false, &c);
    let ka = |secs| Action::Keepalive {
        slot: SLOT,
        interval: Duration::from_secs(secs),
    };
    assert_eq!(actions(&mut f), vec![ka(30)]);
    // The same interval again, a longer one, or one shorter by less than
    // a quarter: nothing new.
    app(&mut f, s(160), 1, &probe, false, &c);
    app(&mut f, s(200), 1, &probe, false, &c);
    app(&mut f, s(223), 1, &probe, false, &c);
    assert_eq!(actions(&mut f), vec![]);
    // Every second (with a garbage byte, as some stacks send): followed,
    // clamped to the minimum.
    let probe1 = seg(1, 1010, Some(1), "", b"x");
    app(&mut f, s(224), 1, &probe1, false, &c);
    assert_eq!(actions(&mut f), vec![ka(10)]);
    app(&mut f, s(225), 1, &probe1, false, &c);
    assert_eq!(actions(&mut f), vec![]);
    assert_eq!(c.snapshot().tcp_upstream_keepalives, 2);
}

#[test]
fn fast_close_and_time_wait_hold() {
    let c = Counters::default();
    let t0 = Instant::now();
    let mut f = TcpFlows::new(to());
    let np = established(&mut f, t0, 1, &c);
    // The listener (server side) closes first: FIN at seq 500.
    let fin = SegInfo {
        flags: TcpFlags::FIN | TcpFlags::ACK,
        seq: TcpSeqNumber(500),
        ack: TcpSeqNumber(1001),
        payload_len: 0,
        window: 512,
    };
    assert_eq!(
        f.on_listener_segment(t0, (np, false), Some(fin), &c),
        ListenerVerdict::Forward {
            dst: D.into(),
            dp: 80,
            sp: 1
        }
    );
    // The app sent 4 bytes, then its FIN acknowledging ours.
    app(
        &mut f,
        t0,
        1,
        &seg(1, 1001, Some(500), "", b"abcd"),
        false,
        &c,
    );
    let afin = seg(1, 1005, Some(501), "F", b"");
    assert_eq!(
        app(&mut f, t0, 1, &afin, false, &c),
        AppVerdict::FinCandidate {
            np,
            slot: SLOT,
            app_bytes: 4
        }
    );
    f.fast_close(np, &c);
    f.relay_closed(np, true, t0, &c);
    assert_eq!(
        f.poll_timeout(),
        Some(t0 + CLOSE_GRACE),
        "no TIME_WAIT hold"
    );
    assert_eq!(app(&mut f, t0, 1, &afin, false, &c), AppVerdict::AnswerFin);
    let rst = SegInfo {
        flags: TcpFlags::RST,
        ..fin
    };
    assert_eq!(
        f.on_listener_segment(t0, (np, false), Some(rst), &c),
        ListenerVerdict::Suppress
    );
    assert_eq!(c.snapshot().tcp_fast_closes, 1);
    // Without fast close, an orderly end after the listener's FIN holds
    // the port for TIME_WAIT.
    let np2 = established(&mut f, t0, 2, &c);
    f.on_listener_segment(t0, (np2, false), Some(fin), &c);
    f.relay_closed(np2, true, t0, &c);
    f.handle_timeout(t0 + CLOSE_GRACE, &c);
    assert!(f.get(np).is_none());
    assert_eq!(f.poll_timeout(), Some(t0 + TIME_WAIT_HOLD));
    // A new SYN on a Closing flow's tuple is a new flow; the old entry
    // still translates.
    app(&mut f, t0, 2, &seg(2, 9, None, "S", b""), false, &c);
    let a = actions(&mut f);
    assert!(
        matches!(a[..], [Action::Connect { np: n, .. }] if n != np2),
        "{a:?}"
    );
    assert!(matches!(
        f.on_listener_segment(t0, (np2, false), None, &c),
        ListenerVerdict::Forward { sp: 2, .. }
    ));
    assert_eq!(
        f.on_listener_segment(t0, (9999, false), None, &c),
        ListenerVerdict::NoFlow
    );
}

#[test]
fn pending_flows_time_out_silently_and_reset_all_clears() {
    let c = Counters::default();
    let t0 = Instant::now();
    let mut f = TcpFlows::new(to());
    app(&mut f, t0, 1, &seg(1, 5, None, "S", b""), false, &c);
    actions(&mut f);
    f.upstream_opened(1024, SLOT);
    f.handle_timeout(t0 + Duration::from_secs(240), &c);
    assert_eq!(
        actions(&mut f),
        vec![Action::CloseSlot {
            slot: SLOT,
            rst_app: false,
            rst_up: true
        }]
    );
    let st = c.snapshot();
    assert_eq!((st.flows_expired, st.flows_tcp, f.live()), (1, 0, 0));
    // reset_all: established flows reset both ways, pending ones freed.
    let np = established(&mut f, t0, 2, &c);
    app(&mut f, t0, 3, &seg(3, 5, None, "S", b""), false, &c);
    actions(&mut f);
    f.reset_all(t0, &c);
    assert_eq!(
        actions(&mut f),
        vec![Action::CloseSlot {
            slot: SLOT,
            rst_app: true,
            rst_up: true
        }]
    );
    assert_eq!(f.get(np).unwrap().state, FlowState::Closing);
    assert_eq!((f.live(), c.snapshot().flows_tcp), (0, 0));
}

#[test]
fn a_flow_freed_after_its_syn_was_injected_aborts_the_listener_side() {
    let c = Counters::default();
    let t0 = Instant::now();
    let mut f = TcpFlows::new(to());
    app(&mut f, t0, 1, &seg(1, 1000, None, "S", b""), false, &c);
    actions(&mut f);
    f.upstream_opened(1024, SLOT);
    f.upstream_connected(1024, t0);
    actions(&mut f);
    // Never accepted (the app went quiet): the transitory timeout frees it,
    // and the listener's half-open connection goes with a RST at the
    // sequence number it expects (the app's ISN + 1).
    f.handle_timeout(t0 + Duration::from_secs(240), &c);
    assert_eq!(
        actions(&mut f),
        vec![
            Action::AbortListener {
                np: 1024,
                seq: TcpSeqNumber(1001),
                v6: false
            },
            Action::CloseSlot {
                slot: SLOT,
                rst_app: false,
                rst_up: true
            }
        ]
    );
    assert!(f.get(1024).is_none());
    // Evicted for a new SYN: the same.
    app(&mut f, t0, 2, &seg(2, 5000, None, "S", b""), false, &c);
    let Some(Action::Connect { np, .. }) = f.poll_action() else {
        panic!()
    };
    f.upstream_opened(np, SLOT);
    f.upstream_connected(np, t0);
    actions(&mut f);
    app(&mut f, t0, 3, &seg(3, 9, None, "S", b""), true, &c);
    let a = actions(&mut f);
    assert_eq!(
        a[..2],
        [
            Action::AbortListener {
                np,
                seq: TcpSeqNumber(5001),
                v6: false
            },
            Action::CloseSlot {
                slot: SLOT,
                rst_app: false,
                rst_up: true
            }
        ]
    );
    assert_eq!(c.snapshot().flows_evicted, 1);
}

#[test]
fn out_of_descriptors_evicts_another_incomplete_flow() {
    let c = Counters::default();
    let t0 = Instant::now();
    let mut f = TcpFlows::new(to());
    app(&mut f, t0, 1, &seg(1, 5, None, "S", b""), false, &c);
    app(&mut f, t0, 2, &seg(2, 5, None, "S", b""), false, &c);
    actions(&mut f);
    f.upstream_opened(1024, SLOT);
    // Opening 1025's socket failed for lack of descriptors: 1024 goes.
    assert!(f.evict_for_descriptor(Some(1025), &c));
    assert_eq!(
        actions(&mut f),
        vec![Action::CloseSlot {
            slot: SLOT,
            rst_app: false,
            rst_up: true
        }]
    );
    assert!(f.get(1024).is_none() && f.get(1025).is_some());
    // Never the flow being opened itself, nor one without a socket.
    assert!(!f.evict_for_descriptor(Some(1025), &c));
    assert!(!f.evict_for_descriptor(None, &c));
    // Nor one whose SYN went to the listener (it may be in the accept queue).
    f.upstream_opened(1025, 8);
    f.upstream_connected(1025, t0);
    actions(&mut f);
    assert!(!f.evict_for_descriptor(None, &c));
    app(&mut f, t0, 3, &seg(3, 5, None, "S", b""), false, &c);
    let Some(Action::Connect { np, .. }) = f.poll_action() else {
        panic!()
    };
    f.upstream_opened(np, 9);
    assert!(f.evict_for_descriptor(None, &c));
    assert_eq!(
        actions(&mut f),
        vec![Action::CloseSlot {
            slot: 9,
            rst_app: false,
            rst_up: true
        }]
    );
    assert_eq!(c.snapshot().flows_evicted, 2);
}

/// A segment from the listener to the app with this receive window.
fn from_listener(seq: u32, ack: u32, window: u16) -> SegInfo {
    SegInfo {
        flags: TcpFlags::ACK,
        seq: TcpSeqNumber(seq),
        ack: TcpSeqNumber(ack),
        payload_len: 0,
        window,
    }
}

#[test]
fn zero_window_probes_are_not_keepalives() {
    // A zero-window probe (RFC 9293 section 3.8.6.1) is, on Linux, BSD
    // and Windows, the same segment as a keepalive probe: an ACK at one
    // below the next sequence number (tcp_xmit_probe_skb). The app sends
    // them, backing off from about 200 ms, whenever the listener side's
    // socket has a full receive buffer (a slow uplink). Taken for
    // keepalives they would set upstream keepalives at the 10 s minimum
    // for the rest of the connection (the interval only ever shrinks):
    // the radio woken every 10 s by an idle upload connection.
    let c = Counters::default();
    let t0 = Instant::now();
    let ms = |n| t0 + Duration::from_millis(n);
    let mut f = TcpFlows::new(to());
    let np = established(&mut f, t0, 1, &c);
    let data = seg(1, 1001, Some(1), "", b"0123456789");
    app(&mut f, ms(1), 1, &data, false, &c);
    // The listener acknowledges everything and closes its window.
    let closed = from_listener(1, 1011, 0);
    assert!(matches!(
        f.on_listener_segment(ms(2), (np, false), Some(closed), &c),
        ListenerVerdict::Forward { .. }
    ));
    let probe = seg(1, 1010, Some(1), "", b"");
    for at in [200, 600, 1400, 3000, 6200, 12600, 25400] {
        app(&mut f, ms(at), 1, &probe, false, &c);
        // The listener answers each probe: the window is still closed.
        f.on_listener_segment(ms(at), (np, false), Some(closed), &c);
    }
    assert_eq!(
        actions(&mut f),
        vec![],
        "window probes taken for keepalives"
    );
    assert_eq!(c.snapshot().tcp_upstream_keepalives, 0);
    // The window opens; the same segments 30 s apart are keepalives.
    f.on_listener_segment(
        ms(26000),
        (np, false),
        Some(from_listener(1, 1011, 512)),
        &c,
    );
    app(&mut f, ms(100_000), 1, &probe, false, &c);
    app(&mut f, ms(130_000), 1, &probe, false, &c);
    assert_eq!(
        actions(&mut f),
        vec![Action::Keepalive {
            slot: SLOT,
            interval: Duration::from_secs(30)
        }]
    );
}

/// A flow whose SYN went to the listener, not yet accepted: its NAT port.
fn injected(f: &mut TcpFlows, t0: Instant, sp: u16, c: &Counters) -> u16 {
    app(f, t0, sp, &seg(sp, 1000, None, "S", b""), false, c);
    let connect =
        std::iter::from_fn(|| f.poll_action()).find(|a| !matches!(a, Action::Started { .. }));
    let Some(Action::Connect { np, .. }) = connect else {
        panic!("no connect")
    };
    f.upstream_opened(np, SLOT);
    f.upstream_connected(np, t0);
    assert!(matches!(f.poll_action(), Some(Action::InjectSyn { .. })));
    np
}

#[test]
fn an_app_fin_before_accept_means_the_app_closed_first() {
    // A client that writes its request and shuts down at once (HTTP/1.0,
    // `nc -N`): its ACK, data and FIN reach the listener in one batch of
    // TUN packets, before accept() runs. The listener side then closes
    // second and has no TIME_WAIT, so its NAT port needs no 60 s hold.
    let c = Counters::default();
    let t0 = Instant::now();
    let mut f = TcpFlows::new(to());
    let np = injected(&mut f, t0, 1, &c);
    for s in [
        seg(1, 1001, Some(501), "", b""),
        seg(1, 1001, Some(501), "", b"GET /\r\n"),
        seg(1, 1008, Some(501), "F", b""),
    ] {
        assert_eq!(app(&mut f, t0, 1, &s, false, &c), AppVerdict::Forward(np));
    }
    assert_eq!(f.accepted(np, t0), Some(SLOT));
    // The server answers and closes: its FIN comes after the app's.
    let fin = SegInfo {
        flags: TcpFlags::FIN | TcpFlags::ACK,
        seq: TcpSeqNumber(501),
        ack: TcpSeqNumber(1009),
        payload_len: 0,
        window: 512,
    };
    f.on_listener_segment(t0, (np, false), Some(fin), &c);
    f.relay_closed(np, true, t0, &c);
    assert_eq!(
        f.poll_timeout(),
        Some(t0 + CLOSE_GRACE),
        "held for TIME_WAIT"
    );
}

#[test]
fn a_flow_freed_before_accept_aborts_the_listener_at_its_next_sequence_number() {
    // The app completed the handshake and sent its request before accept()
    // ran (descriptors exhausted, or a batch of TUN packets): the listener
    // side is ESTABLISHED in the accept queue with RCV.NXT past the ISN + 1,
    // and takes a RST only at exactly RCV.NXT (RFC 5961 section 3.2; else
    // it answers a challenge ACK and keeps the connection for a later flow
    // on the same NAT port to meet).
    let c = Counters::default();
    let t0 = Instant::now();
    let mut f = TcpFlows::new(to());
    let np = injected(&mut f, t0, 1, &c);
    app(&mut f, t0, 1, &seg(1, 1001, Some(501), "", b""), false, &c);
    app(
        &mut f,
        t0,
        1,
        &seg(1, 1001, Some(501), "", b"GET /\r\n"),
        false,
        &c,
    );
    f.handle_timeout(t0 + Duration::from_secs(240), &c);
    assert_eq!(
        actions(&mut f),
        vec![
            Action::AbortListener {
                np,
                seq: TcpSeqNumber(1008),
                v6: false
            },
            Action::CloseSlot {
                slot: SLOT,
                rst_app: false,
                rst_up: true
            }
        ]
    );
}

/// The table's own bookkeeping agrees with itself and with the gauge.
fn check_invariants(f: &TcpFlows, c: &Counters, step: usize) {
    let live = f
        .by_np
        .values()
        .filter(|e| e.state != FlowState::Closing)
        .count();
    assert_eq!(f.live(), live, "step {step}: closing count");
    assert_eq!(
        c.snapshot().flows_tcp,
        live as u64,
        "step {step}: flows_tcp gauge"
    );
    let incomplete = f
        .by_np
        .values()
        .filter(|e| matches!(e.state, FlowState::Connecting | FlowState::SynInjected))
        .count();
    assert_eq!(
        f.incomplete.len(),
        incomplete,
        "step {step}: incomplete set"
    );
    for &(at, np) in &f.incomplete {
        assert_eq!(f.by_np.get(np).unwrap().created, at, "step {step}");
    }
    assert_eq!(
        f.timers.len(),
        f.by_np.len(),
        "step {step}: one deadline each"
    );
    for (np, e) in f.by_np.iter() {
        assert!(
            f.timers.contains(e.timer_at, TimerKey::Nat(np)),
            "step {step}: flow {np} has no deadline"
        );
    }
    // Every linked port is a flow, found by its own key (so no two
    // linked ports share a key).
    for np in f.by_key.ports() {
        let e = f
            .by_np
            .get(np)
            .unwrap_or_else(|| panic!("step {step}: {np} linked, no flow"));
        assert_eq!(
            f.by_key.get(&f.by_np, Flow::key, &e.key()),
            Some(np),
            "step {step}: key of {np}"
        );
    }
}

#[test]
fn random_lives_keep_the_books_and_end_empty() {
    // Every input in random order (a xorshift, seeded: reproducible), the
    // Loop's side played by the test: after each step the entries, keys,
    // deadlines, early-drop candidates and the flows_tcp gauge agree; once
    // every deadline has passed, nothing is left.
    for seed in 1..=20u64 {
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let mut rnd = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let c = Counters::default();
        let t0 = Instant::now();
        let mut now = t0;
        let mut f = TcpFlows::new(FlowTimeouts {
            established: Duration::from_secs(30),
            transitory: Duration::from_secs(10),
        });
        let mut next_slot = 0usize;
        let mut open_slots: HashMap<usize, u16> = HashMap::new();
        for step in 0..3000 {
            now += Duration::from_millis(rnd(400));
            let sp = 1 + rnd(12) as u16;
            let nps: Vec<u16> = f.by_np.ports().collect();
            let np = if nps.is_empty() {
                1024
            } else {
                nps[rnd(nps.len() as u64) as usize]
            };
            match rnd(13) {
                0..=2 => {
                    let isn = rnd(1 << 31) as u32;
                    let full = f.live() >= 6;
                    app(&mut f, now, sp, &seg(sp, isn, None, "S", b""), full, &c);
                }
                3 => {
                    app(&mut f, now, sp, &seg(sp, 7, Some(1), "R", b""), false, &c);
                }
                4 => {
                    let fl = ["", "F", "R"][rnd(3) as usize];
                    let p = if rnd(2) == 0 { &b"data"[..] } else { b"" };
                    let isn = f.get(np).map_or(0, |e| e.app_isn.0);
                    let e_sp = f.get(np).map_or(sp, |e| e.sp);
                    app(
                        &mut f,
                        now,
                        e_sp,
                        &seg(e_sp, isn + 1, Some(1), fl, p),
                        false,
                        &c,
                    );
                }
                5 => {
                    let slot = next_slot;
                    next_slot += 1;
                    if f.get(np).is_some_and(|e| e.slot.is_none()) {
                        f.upstream_opened(np, slot);
                        open_slots.insert(slot, np);
                    }
                    f.upstream_connected(np, now);
                }
                6 => {
                    let errno =
                        [libc::ECONNREFUSED, libc::ETIMEDOUT, libc::EHOSTUNREACH][rnd(3) as usize];
                    f.upstream_failed(np, Some(errno), &c);
                }
                7 => {
                    f.accepted(np, now);
                }
                8 => {
                    let flags = [TcpFlags::ACK, TcpFlags::FIN | TcpFlags::ACK, TcpFlags::RST]
                        [rnd(3) as usize];
                    let s = SegInfo {
                        flags,
                        seq: TcpSeqNumber(1),
                        ack: TcpSeqNumber(1),
                        payload_len: 0,
                        window: rnd(2) as u16,
                    };
                    f.on_listener_segment(now, (np, false), Some(s), &c);
                }
                9 => {
                    if f.get(np).is_some_and(|e| e.state == FlowState::Established) {
                        if rnd(2) == 0 {
                            f.fast_close(np, &c);
                        }
                        f.relay_closed(np, rnd(2) == 0, now, &c);
                    }
                }
                10 => f.handle_timeout(now, &c),
                11 => {
                    if rnd(20) == 0 {
                        f.reset_all(now, &c);
                    }
                }
                _ => {
                    f.evict_for_descriptor(None, &c);
                }
            }
            // The Loop's part: closed slots are gone.
            for a in actions(&mut f) {
                if let Action::CloseSlot { slot, .. } = a {
                    assert!(
                        open_slots.remove(&slot).is_some(),
                        "slot {slot} closed twice"
                    );
                }
            }
            check_invariants(&f, &c, step);
        }
        // Expiry, then the Closing grace or TIME_WAIT hold: two rounds.
        for _ in 0..2 {
            now += Duration::from_secs(3600);
            f.handle_timeout(now, &c);
            actions(&mut f);
        }
        check_invariants(&f, &c, usize::MAX);
        assert!(f.by_np.is_empty(), "seed {seed}: entries left");
        assert!(f.by_key.is_empty(), "seed {seed}: keys left");
        assert_eq!(f.poll_timeout(), None, "seed {seed}: deadlines left");
    }
}

#[test]
fn flows_keep_their_path_and_losing_native_ipv4_resets_only_native_ones() {
    let c = Counters::default();
    let t0 = Instant::now();
    let mut f = TcpFlows::new(to());
    assert_eq!(f.path(), Ipv4Path::Nat64);
    let nat64 = established(&mut f, t0, 1, &c);
    // Native IPv4 appears: nothing to reset, the NAT64 flow stays.
    assert_eq!(f.set_path(Ipv4Path::Native), None);
    assert!(actions(&mut f).is_empty());
    assert_eq!(f.get(nat64).unwrap().path, Ipv4Path::Nat64);
    // A new flow connects natively.
    app(&mut f, t0, 2, &seg(2, 5, None, "S", b""), false, &c);
    let Some(Action::Connect {
        np: native, path, ..
    }) = f.poll_action()
    else {
        panic!("no connect")
    };
    assert_eq!(path, Ipv4Path::Native);
    f.upstream_opened(native, SLOT + 1);
    f.upstream_connected(native, t0);
    actions(&mut f);
    assert_eq!(f.accepted(native, t0), Some(SLOT + 1));
    // A third one still connecting natively when the path goes.
    app(&mut f, t0, 3, &seg(3, 5, None, "S", b""), false, &c);
    let Some(Action::Connect { np: pending, .. }) = f.poll_action() else {
        panic!("no connect")
    };
    assert_eq!(c.snapshot().flows_native_total, 2);
    // Native IPv4 lost: the native flows are reset, the NAT64 one is not.
    assert_eq!(f.set_path(Ipv4Path::Nat64), Some(Ipv4Path::Native));
    f.reset_path(Ipv4Path::Native, t0, &c);
    let a = actions(&mut f);
    assert!(
        a.contains(&Action::CloseSlot {
            slot: SLOT + 1,
            rst_app: true,
            rst_up: true
        }),
        "{a:?}"
    );
    assert!(
        a.iter()
            .all(|x| !matches!(x, Action::CloseSlot { slot: SLOT, .. })),
        "{a:?}"
    );
    assert_eq!(f.get(native).unwrap().state, FlowState::Closing);
    assert!(
        f.get(pending).is_none(),
        "the pending native connect is freed"
    );
    assert_eq!(f.get(nat64).unwrap().state, FlowState::Established);
    assert_eq!((f.live(), c.snapshot().flows_tcp), (1, 1));
    // Setting the same path again resets nothing.
    assert_eq!(f.set_path(Ipv4Path::Nat64), None);
}

#[test]
fn a_path_switch_before_accept_resets_an_app_that_has_the_syn_ack() {
    // Two flows whose SYN went to the listener, not yet accepted, when
    // their path goes: the one whose app got the listener's SYN-ACK (and
    // answered it: connect() returned) gets a RST at its RCV.NXT, the
    // listener's ISN + 1 (RFC 5961 3.2), else it would wait for a server
    // that is gone; the one still waiting for the SYN-ACK gets nothing and
    // retransmits its SYN into a new flow.
    let c = Counters::default();
    let t0 = Instant::now();
    let mut f = TcpFlows::new(to());
    // Native IPv4 is there when they start, and goes.
    assert_eq!(f.set_path(Ipv4Path::Native), None);
    let acked = injected(&mut f, t0, 1, &c);
    let waiting = injected(&mut f, t0, 2, &c);
    let syn_ack = SegInfo {
        flags: TcpFlags::SYN | TcpFlags::ACK,
        seq: TcpSeqNumber(70000),
        ack: TcpSeqNumber(1001),
        payload_len: 0,
        window: 512,
    };
    f.on_listener_segment(t0, (acked, false), Some(syn_ack), &c);
    app(
        &mut f,
        t0,
        1,
        &seg(1, 1001, Some(70001), "", b""),
        false,
        &c,
    );
    // A later ACK from the listener does not move the mark.
    f.on_listener_segment(
        t0,
        (acked, false),
        Some(from_listener(70001, 1001, 512)),
        &c,
    );
    assert_eq!(f.set_path(Ipv4Path::Nat64), Some(Ipv4Path::Native));
    f.reset_path(Ipv4Path::Native, t0, &c);
    let a = actions(&mut f);
    let resets: Vec<&Action> = a
        .iter()
        .filter(|x| matches!(x, Action::ResetApp { .. }))
        .collect();
    assert_eq!(
        resets,
        vec![&Action::ResetApp {
            dst: D.into(),
            dp: 80,
            sp: 1,
            seq: TcpSeqNumber(70001),
            ack: TcpSeqNumber(1001),
        }],
        "{a:?}"
    );
    for np in [acked, waiting] {
        assert!(
            a.iter()
                .any(|x| matches!(x, Action::AbortListener { np: n, .. } if *n == np)),
            "{a:?}"
        );
        assert!(f.get(np).is_none());
    }
}

// ---- IPv6 flows (issue 15 item 1): one table with the IPv4 ones ----

const D6: &str = "2001:db8:2::10";
const CLAT6: &str = "fd9c:7c5a:e1b6:464::1";

fn a6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

/// The app's IPv6 SYN (traffic class `tclass`, with a Hop-by-Hop header
/// when `hbh`, `payload` as TCP Fast Open data), built by etherparse:
/// `(packet, header chain length, TCP header length, info)`.
fn syn6(
    sp: u16,
    isn: u32,
    tclass: u8,
    hbh: bool,
    payload: &[u8],
) -> (Vec<u8>, usize, usize, SegInfo) {
    use etherparse::{IpHeaders, IpNumber, Ipv6Extensions, Ipv6Header, Ipv6RawExtHeader};
    let ip = Ipv6Header {
        traffic_class: tclass,
        hop_limit: 64,
        source: a6(CLAT6).octets(),
        destination: a6(D6).octets(),
        ..Default::default()
    };
    let exts = Ipv6Extensions {
        hop_by_hop_options: hbh
            .then(|| Ipv6RawExtHeader::new_raw(IpNumber(0), &[1, 4, 0, 0, 0, 0]).unwrap()),
        ..Default::default()
    };
    let mut p = Vec::new();
    PacketBuilder::ip(IpHeaders::Ipv6(ip, exts))
        .tcp(sp, 443, isn, 64800)
        .syn()
        .options(&[
            TcpOptionElement::MaximumSegmentSize(1440),
            TcpOptionElement::Noop,
            TcpOptionElement::WindowScale(7),
        ])
        .unwrap()
        .write(&mut p, payload)
        .unwrap();
    let hdr_len = if hbh { 48 } else { 40 };
    let s = TcpSegment::parse(&p[hdr_len..]).unwrap();
    let thl = s.header_len;
    (p, hdr_len, thl, SegInfo::from(&s))
}

fn app6(
    f: &mut TcpFlows,
    now: Instant,
    sp: u16,
    syn: &(Vec<u8>, usize, usize, SegInfo),
    c: &Counters,
) -> AppVerdict {
    let (p, hdr_len, thl, s) = syn;
    f.on_app_segment(
        now,
        (sp, a6(D6).into(), 443),
        *s,
        p,
        *hdr_len,
        *thl,
        false,
        c,
    )
}

#[test]
fn an_ipv6_syn_is_held_without_extension_headers_and_connects_to_its_destination() {
    let c = Counters::default();
    let t0 = Instant::now();
    let mut f = TcpFlows::new(to());
    // Native IPv4 on: an IPv6 flow is neither NAT64 nor native IPv4.
    f.set_path(Ipv4Path::Native);
    let syn = syn6(50000, 7000, 0xb8, true, b"fast open data");
    assert_eq!(app6(&mut f, t0, 50000, &syn, &c), AppVerdict::Consumed);
    assert_eq!(
        actions(&mut f),
        vec![Action::Connect {
            np: 1024,
            dst: a6(D6).into(),
            dp: 443,
            tos: 0xb8,
            path: Ipv4Path::Native,
        }]
    );
    let st = c.snapshot();
    assert_eq!(
        (st.flows_ipv6_total, st.flows_native_total, st.flows_tcp),
        (1, 0, 1)
    );
    f.upstream_opened(1024, SLOT);
    f.upstream_connected(1024, t0);
    let Some(Action::InjectSyn {
        np: 1024,
        syn: held,
    }) = f.poll_action()
    else {
        panic!("no injection")
    };
    // What the listener gets: the same SYN without the Hop-by-Hop header
    // and the data, as etherparse builds it.
    let (want, ..) = syn6(50000, 7000, 0xb8, false, b"");
    assert_eq!(held.bytes(), &want[..]);
    assert_eq!(held.hdr_len, 40);
}

#[test]
fn a_failed_ipv6_connect_is_answered_in_its_family_and_ipv6_flows_survive_a_path_switch() {
    let c = Counters::default();
    let t0 = Instant::now();
    let mut f = TcpFlows::new(to());
    f.set_path(Ipv4Path::Native);
    let syn = syn6(50000, 7000, 0, false, b"");
    app6(&mut f, t0, 50000, &syn, &c);
    actions(&mut f);
    f.upstream_opened(1024, SLOT);
    f.upstream_failed(1024, Some(libc::EHOSTUNREACH), &c);
    assert_eq!(
        actions(&mut f)[0],
        Action::AnswerSyn {
            syn: Box::new(HeldSyn::new(&syn.0, 40, syn.2).unwrap()),
            answer: SynAnswer::Unreachable(Unreachable::Host),
        }
    );
    assert_eq!(
        Unreachable::Host.icmpv6(),
        Icmpv6DstUnreachable::AddrUnreachable
    );
    assert_eq!(Unreachable::Net.icmpv6(), Icmpv6DstUnreachable::NoRoute);
    assert_eq!(
        Unreachable::Prohibited.icmpv6(),
        Icmpv6DstUnreachable::AdminProhibited
    );
    // An IPv6 flow and an IPv4 flow of the same ports: two flows, two NAT
    // ports, one cap. Losing native IPv4 resets the IPv4 one only.
    let v6 = {
        app6(&mut f, t0, 50000, &syn, &c);
        let Some(Action::Connect { np, .. }) = f.poll_action() else {
            panic!()
        };
        f.upstream_opened(np, SLOT);
        f.upstream_connected(np, t0);
        actions(&mut f);
        assert_eq!(f.accepted(np, t0), Some(SLOT));
        np
    };
    let v4 = established(&mut f, t0, 50000, &c);
    assert_ne!(v4, v6);
    assert_eq!(f.live(), 2);
    assert_eq!(f.set_path(Ipv4Path::Nat64), Some(Ipv4Path::Native));
    f.reset_path(Ipv4Path::Native, t0, &c);
    assert_eq!(f.get(v4).unwrap().state, FlowState::Closing);
    assert_eq!(f.get(v6).unwrap().state, FlowState::Established);
    // The listener's segments of the IPv6 flow go back to its destination.
    assert_eq!(
        f.on_listener_segment(t0, (v6, true), None, &c),
        ListenerVerdict::Forward {
            dst: a6(D6).into(),
            dp: 443,
            sp: 50000
        }
    );
    // A new network resets every flow, IPv6 ones included.
    f.reset_all(t0, &c);
    assert_eq!(f.get(v6).unwrap().state, FlowState::Closing);
}

#[test]
fn an_ipv6_flow_freed_before_accept_aborts_the_ipv6_listener_side() {
    let c = Counters::default();
    let t0 = Instant::now();
    let mut f = TcpFlows::new(to());
    let syn = syn6(50001, 99, 0, false, b"");
    app6(&mut f, t0, 50001, &syn, &c);
    let Some(Action::Connect { np, .. }) = f.poll_action() else {
        panic!()
    };
    f.upstream_opened(np, SLOT);
    f.upstream_connected(np, t0);
    actions(&mut f);
    f.handle_timeout(t0 + Duration::from_secs(240), &c);
    assert_eq!(
        actions(&mut f)[0],
        Action::AbortListener {
            np,
            seq: TcpSeqNumber(100),
            v6: true
        }
    );
}

/// The report actions among `a` (Started, Ended), in order.
fn reports(a: &[Action]) -> Vec<Action> {
    a.iter()
        .filter(|a| matches!(a, Action::Started { .. } | Action::Ended { .. }))
        .cloned()
        .collect()
}

/// The id of the first Started among `a`.
fn started_id(a: &[Action]) -> u64 {
    a.iter()
        .find_map(|a| match a {
            Action::Started { id, .. } => Some(*id),
            _ => None,
        })
        .expect("no Started")
}

fn ended(a: &[Action]) -> Vec<(u64, FlowEndReason, u64, u64)> {
    a.iter()
        .filter_map(|a| match a {
            Action::Ended { tally, how, .. } => Some((tally.id, *how, tally.up, tally.down)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_failed_connect_ends_its_flow_as_its_errno_says() {
    use FlowEndReason as R;
    for (errno, how) in [
        (Some(libc::ECONNREFUSED), R::Refused),
        (Some(libc::EHOSTUNREACH), R::Unreachable),
        (Some(libc::ENETUNREACH), R::Unreachable),
        (Some(libc::EACCES), R::Unreachable),
        (Some(libc::EPERM), R::Unreachable),
        (Some(libc::ETIMEDOUT), R::TimedOut),
        (Some(libc::EMFILE), R::Reset),
        (None, R::Reset),
    ] {
        assert_eq!(connect_failure_end(errno), how, "{errno:?}");
        let c = Counters::default();
        let t0 = Instant::now();
        let mut f = TcpFlows::new(to());
        f.report_flows(Ipv4Addr::new(192, 0, 0, 6));
        let syn = seg(40000, 1000, None, "S", b"");
        app(&mut f, t0, 40000, &syn, false, &c);
        let id = started_id(&actions(&mut f));
        f.upstream_failed(1024, errno, &c);
        let syn_len = syn.0.len() as u64;
        assert_eq!(
            ended(&actions(&mut f)),
            vec![(id, how, syn_len, 0)],
            "{errno:?}"
        );
    }
}

#[test]
fn reported_flows_start_once_and_end_once_with_their_packet_bytes() {
    let c = Counters::default();
    let t0 = Instant::now();
    let mut f = TcpFlows::new(to());
    f.report_flows(Ipv4Addr::new(192, 0, 0, 6));
    // The SYN starts the flow before its connect.
    let syn = seg(40000, 1000, None, "S", b"");
    app(&mut f, t0, 40000, &syn, false, &c);
    let a = actions(&mut f);
    let id = started_id(&a);
    assert_eq!(
        a[0],
        Action::Started {
            id,
            sp: 40000,
            dst: D,
            dp: 80,
            path: Ipv4Path::Nat64
        }
    );
    assert!(matches!(a[1], Action::Connect { np: 1024, .. }));
    // A retransmitted SYN counts too: the app sent it to the TUN.
    app(&mut f, t0, 40000, &syn, false, &c);
    f.upstream_opened(1024, SLOT);
    f.upstream_connected(1024, t0);
    f.accepted(1024, t0);
    let data = seg(40000, 1001, Some(1), "", &[1u8; 300]);
    app(&mut f, t0, 40000, &data, false, &c);
    // Down: the listener's packets by the length the Loop reports once
    // it wrote them to the app; one whose write failed does not count.
    f.on_listener_segment(t0, (1024, false), Some(from_listener(1, 1301, 512)), &c);
    f.delivered(1024, 1000);
    f.on_listener_segment(t0, (1024, false), None, &c);
    f.delivered(1024, 52);
    f.on_listener_segment(t0, (1024, false), None, &c);
    assert_eq!(reports(&actions(&mut f)), vec![]);
    f.relay_closed(1024, true, t0, &c);
    // Ended, but the entry still carries what was in flight at the close
    // (the listener's last bytes, the last ACKs): they count, and the end
    // is reported when the entry goes, with the time of the close.
    assert_eq!(reports(&actions(&mut f)), vec![]);
    let late = seg(40000, 1301, Some(2), "", b"");
    app(&mut f, t0, 40000, &late, false, &c);
    f.on_listener_segment(t0, (1024, false), None, &c);
    f.delivered(1024, 52);
    let gone = t0 + TIME_WAIT_HOLD + CLOSE_GRACE;
    f.handle_timeout(gone, &c);
    assert!(f.get(1024).is_none());
    let up = 2 * syn.0.len() as u64 + data.0.len() as u64 + late.0.len() as u64;
    let a = actions(&mut f);
    assert_eq!(ended(&a), vec![(id, FlowEndReason::Closed, up, 1104)]);
    assert!(matches!(a[..], [Action::Ended { at: Some(at), .. }] if at == t0));
    // Nothing ends twice.
    f.handle_timeout(gone + TIME_WAIT_HOLD, &c);
    assert_eq!(reports(&actions(&mut f)), vec![]);
    // The next flow has another id; a reset relay ends as Reset.
    let np = established(&mut f, gone, 40001, &c);
    f.relay_closed(np, false, gone, &c);
    f.handle_timeout(gone + CLOSE_GRACE, &c);
    let e = ended(&actions(&mut f));
    assert_eq!(e[0].1, FlowEndReason::Reset);
    assert!(e[0].0 > id, "{} after {id}", e[0].0);
}

#[test]
fn every_way_a_flow_is_dropped_ends_it_with_its_reason() {
    use FlowEndReason as R;
    let t0 = Instant::now();
    let fresh = || {
        let mut f = TcpFlows::new(to());
        f.report_flows(Ipv4Addr::new(192, 0, 0, 6));
        f
    };
    let how = |f: &mut TcpFlows| -> Vec<R> { ended(&actions(f)).iter().map(|e| e.1).collect() };
    let c = Counters::default();

    // The app resets while connecting, and after the SYN went in.
    let mut f = fresh();
    app(&mut f, t0, 1, &seg(1, 5, None, "S", b""), false, &c);
    app(&mut f, t0, 1, &seg(1, 6, None, "R", b""), false, &c);
    assert_eq!(how(&mut f), vec![R::Reset]);
    let mut f = fresh();
    app(&mut f, t0, 1, &seg(1, 5, None, "S", b""), false, &c);
    f.upstream_opened(1024, SLOT);
    f.upstream_connected(1024, t0);
    app(&mut f, t0, 1, &seg(1, 6, None, "R", b""), false, &c);
    assert_eq!(how(&mut f), vec![R::Reset]);

    // Idle: an established flow after the established timeout (reported
    // when its entry goes, after the grace time), a pending one after the
    // transitory timeout.
    let mut f = fresh();
    app(&mut f, t0, 1, &seg(1, 5, None, "S", b""), false, &c);
    actions(&mut f);
    established(&mut f, t0, 2, &c);
    actions(&mut f);
    f.handle_timeout(t0 + to().established, &c);
    assert_eq!(how(&mut f), vec![]);
    f.handle_timeout(t0 + to().established + CLOSE_GRACE, &c);
    assert_eq!(how(&mut f), vec![R::TimedOut]);
    f.handle_timeout(t0 + to().transitory, &c);
    assert_eq!(how(&mut f), vec![R::TimedOut]);

    // Evicted for a new SYN in a full table: its end comes before the
    // newcomer's start.
    let mut f = fresh();
    app(&mut f, t0, 1, &seg(1, 5, None, "S", b""), false, &c);
    let first = started_id(&actions(&mut f));
    app(&mut f, t0, 2, &seg(2, 5, None, "S", b""), true, &c);
    let a = reports(&actions(&mut f));
    assert!(
        matches!(a[0], Action::Ended { tally, how: R::Evicted, at: None } if tally.id == first)
    );
    assert!(matches!(a[1], Action::Started { id, sp: 2, .. } if id > first));
    // ... and to free a descriptor.
    f.upstream_opened(1025, SLOT);
    assert!(f.evict_for_descriptor(None, &c));
    assert_eq!(how(&mut f), vec![R::Evicted]);

    // A path switch or network change: pending and established alike
    // (the established one when its entry goes).
    let mut f = fresh();
    app(&mut f, t0, 1, &seg(1, 5, None, "S", b""), false, &c);
    actions(&mut f);
    established(&mut f, t0, 2, &c);
    actions(&mut f);
    f.reset_path(Ipv4Path::Nat64, t0, &c);
    assert_eq!(how(&mut f), vec![R::NetworkChanged]);
    f.handle_timeout(t0 + CLOSE_GRACE, &c);
    assert_eq!(how(&mut f), vec![R::NetworkChanged]);
    let t1 = t0 + CLOSE_GRACE;
    established(&mut f, t1, 3, &c);
    actions(&mut f);
    f.reset_all(t1, &c);
    f.reset_all(t1, &c);
    assert_eq!(how(&mut f), vec![]);
    // The engine stops before the entry goes: reported at once.
    f.report_stop();
    assert_eq!(how(&mut f), vec![R::NetworkChanged]);
    f.report_stop();
    f.handle_timeout(t1 + TIME_WAIT_HOLD, &c);
    assert_eq!(how(&mut f), vec![], "a flow ends once");
}

/// The `at` of the flow's Ended, if one was queued.
fn ended_at(a: &[Action]) -> Option<(FlowEndReason, Option<Instant>)> {
    a.iter().find_map(|a| match a {
        Action::Ended { how, at, .. } => Some((*how, *at)),
        _ => None,
    })
}

/// At stop every reported flow still in the table ends, live or
/// pending ones now as NetworkChanged, and nothing else is queued: the
/// sockets close as they do with flow events off (no RST of reset_all,
/// no abort of the listener side).
#[test]
fn a_stop_reports_every_flow_and_queues_nothing_else() {
    let c = Counters::default();
    let t0 = Instant::now();
    let mut f = TcpFlows::new(to());
    f.report_flows(Ipv4Addr::new(192, 0, 0, 6));
    app(&mut f, t0, 1, &seg(1, 5, None, "S", b""), false, &c);
    let pending = started_id(&actions(&mut f));
    let np = established(&mut f, t0, 2, &c);
    let live = f.get(np).unwrap().tally.as_ref().unwrap().id;
    let np3 = injected(&mut f, t0, 3, &c);
    let injected_id = f.get(np3).unwrap().tally.as_ref().unwrap().id;
    actions(&mut f);
    f.report_stop();
    let a = actions(&mut f);
    assert!(
        a.iter().all(|a| matches!(
            a,
            Action::Ended {
                how: FlowEndReason::NetworkChanged,
                at: None,
                ..
            }
        )),
        "{a:?}"
    );
    let mut ids: Vec<u64> = ended(&a).iter().map(|e| e.0).collect();
    ids.sort_unstable();
    let mut want = vec![pending, live, injected_id];
    want.sort_unstable();
    assert_eq!(ids, want);
    f.report_stop();
    assert_eq!(actions(&mut f), vec![], "a flow ends once");
}

#[test]
fn a_timed_out_flow_ends_at_its_last_packet_not_when_the_engine_noticed() {
    let c = Counters::default();
    let t0 = Instant::now();
    let s = Duration::from_secs;
    let mut f = TcpFlows::new(to());
    f.report_flows(Ipv4Addr::new(192, 0, 0, 6));
    // Established, its last packet 1 s in; noticed idle 3 s after the
    // timeout (a busy loop), reported when the entry goes.
    let np = established(&mut f, t0, 1, &c);
    let last = t0 + s(1);
    app(&mut f, last, 1, &seg(1, 1001, Some(1), "", b"x"), false, &c);
    actions(&mut f);
    let noticed = last + to().established + s(3);
    f.handle_timeout(noticed, &c);
    f.handle_timeout(noticed + CLOSE_GRACE, &c);
    assert!(f.get(np).is_none());
    assert_eq!(
        ended_at(&actions(&mut f)),
        Some((FlowEndReason::TimedOut, Some(last)))
    );
    // A connect that never completed: its last packet is the app's last
    // SYN (a retransmission 3 s in), not the transitory timeout.
    let syn = seg(2, 5, None, "S", b"");
    app(&mut f, t0, 2, &syn, false, &c);
    let retrans = t0 + s(3);
    app(&mut f, retrans, 2, &syn, false, &c);
    actions(&mut f);
    f.handle_timeout(retrans + to().transitory, &c);
    assert_eq!(
        ended_at(&actions(&mut f)),
        Some((FlowEndReason::TimedOut, Some(retrans)))
    );
}

#[test]
fn a_listener_segment_of_the_other_family_touches_nothing_of_the_flow() {
    let c = Counters::default();
    let t0 = Instant::now();
    let mut f = TcpFlows::new(to());
    f.report_flows(Ipv4Addr::new(192, 0, 0, 6));
    let np = established(&mut f, t0, 1, &c);
    let id = f.get(np).unwrap().tally.as_ref().unwrap().id;
    // An IPv6 listener segment (a FIN with a closed window) on the IPv4
    // flow's NAT port, 4 s later: not this flow's.
    let mut fin = from_listener(1, 1001, 0);
    fin.flags = TcpFlags::FIN | TcpFlags::ACK;
    let later = t0 + Duration::from_secs(4);
    assert_eq!(
        f.on_listener_segment(later, (np, true), Some(fin), &c),
        ListenerVerdict::NoFlow
    );
    assert_eq!(c.snapshot().drop_tcp_no_flow, 1);
    let e = f.get(np).unwrap();
    assert_eq!(e.last, t0, "its idle time");
    assert_eq!(
        (e.fin_end, e.engine_fin_first, e.window_closed),
        (None, false, false)
    );
    assert_eq!(e.tally.as_ref().unwrap().down, 0, "its bytes");
    // Its own family's segment is the flow's.
    assert!(matches!(
        f.on_listener_segment(later, (np, false), None, &c),
        ListenerVerdict::Forward { .. }
    ));
    f.delivered(np, 52);
    f.relay_closed(np, false, later, &c);
    f.handle_timeout(later + CLOSE_GRACE, &c);
    let a = actions(&mut f);
    assert!(
        matches!(ended(&a)[..], [(i, FlowEndReason::Reset, _, 52)] if i == id),
        "{a:?}"
    );
}

#[test]
fn an_upstream_failure_ends_an_established_flow_as_its_errno_says() {
    use FlowEndReason as R;
    for (errno, how) in [
        (Some(libc::ETIMEDOUT), R::TimedOut),
        (Some(libc::EHOSTUNREACH), R::Unreachable),
        (Some(libc::ENETUNREACH), R::Unreachable),
        (Some(libc::ECONNRESET), R::Reset),
        (Some(libc::EPIPE), R::Reset),
        (None, R::Reset),
    ] {
        let c = Counters::default();
        let t0 = Instant::now();
        let mut f = TcpFlows::new(to());
        f.report_flows(Ipv4Addr::new(192, 0, 0, 6));
        let np = established(&mut f, t0, 1, &c);
        let t1 = t0 + Duration::from_secs(7);
        f.relay_failed(np, errno, t1, &c);
        assert_eq!(f.get(np).unwrap().state, FlowState::Closing);
        assert_eq!(c.snapshot().flows_tcp, 0);
        // Not an orderly close: the entry goes after the grace time.
        f.handle_timeout(t1 + CLOSE_GRACE, &c);
        assert!(f.get(np).is_none(), "{errno:?}");
        assert_eq!(
            ended_at(&actions(&mut f)),
            Some((how, Some(t1))),
            "{errno:?}"
        );
    }
}

/// A flow's whole life as the Loop drives it (SYN, connect, injection,
/// accept, data both ways, orderly close, the entry going), with every
/// action the core queued, unfiltered: its NAT port, the actions, and
/// whether its entry had a tally right after accept.
fn whole_life(f: &mut TcpFlows, t0: Instant, sp: u16, c: &Counters) -> (Vec<Action>, bool) {
    let mut all = Vec::new();
    app(f, t0, sp, &seg(sp, 1000, None, "S", b""), false, c);
    all.extend(std::iter::from_fn(|| f.poll_action()));
    let np = all
        .iter()
        .find_map(|a| match a {
            Action::Connect { np, .. } => Some(*np),
            _ => None,
        })
        .expect("no connect");
    f.upstream_opened(np, SLOT);
    f.upstream_connected(np, t0);
    assert_eq!(f.accepted(np, t0), Some(SLOT));
    let tallied = f.get(np).unwrap().tally.is_some();
    app(f, t0, sp, &seg(sp, 1001, Some(1), "", b"data"), false, c);
    f.on_listener_segment(t0, (np, false), None, c);
    f.relay_closed(np, true, t0, c);
    f.handle_timeout(t0 + TIME_WAIT_HOLD + CLOSE_GRACE, c);
    assert!(f.get(np).is_none());
    all.extend(std::iter::from_fn(|| f.poll_action()));
    (all, tallied)
}

#[test]
fn flows_to_the_relay_and_ipv6_flows_are_not_reported_nor_anything_when_off() {
    let c = Counters::default();
    let t0 = Instant::now();
    let is_report = |a: &Action| matches!(a, Action::Started { .. } | Action::Ended { .. });
    // Off (the default): no tally, not a single report action.
    let mut f = TcpFlows::new(to());
    let (a, tallied) = whole_life(&mut f, t0, 1, &c);
    assert!(!tallied, "a tally while off");
    assert!(!a.iter().any(is_report), "{a:?}");
    // On: a flow to the relay's address (here D) is not reported.
    let mut f = TcpFlows::new(to());
    f.report_flows(D);
    let (a, tallied) = whole_life(&mut f, t0, 1, &c);
    assert!(!tallied, "a tally for the relay");
    assert!(!a.iter().any(is_report), "{a:?}");
    // The same life to another address is: the check above can fail.
    let mut f = TcpFlows::new(to());
    f.report_flows(Ipv4Addr::new(192, 0, 0, 6));
    let (a, tallied) = whole_life(&mut f, t0, 1, &c);
    assert!(tallied);
    assert_eq!(a.iter().filter(|a| is_report(a)).count(), 2, "{a:?}");
    // Nor an IPv6 one.
    let mut f = TcpFlows::new(to());
    f.report_flows(Ipv4Addr::new(192, 0, 0, 6));
    app6(&mut f, t0, 1, &syn6(1, 1000, 0, false, b""), &c);
    let a = actions(&mut f);
    assert!(matches!(a[..], [Action::Connect { .. }]), "{a:?}");
}
