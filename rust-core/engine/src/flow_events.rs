//! Flow events: what the engine tells the layers above about each IPv4 flow
//! it terminates, without payload (issue 17; the fields and their meaning
//! are `docs/flow-events.md`, the contract with the Android side's
//! `FlowEvents.kt`).
//!
//! The engine thread pushes a [`FlowEvent`] when a flow starts and when it
//! ends into a bounded queue; a consumer (`clat run`'s report, the Android
//! app's `Ipv4Recorder` through JNI) takes them with [`FlowEvents::wait`]
//! on its own thread. Invariants:
//! - **No cost when nobody listens:** with `EngineConfig::flow_events == 0`
//!   (the default) there is no queue and the engine builds no event.
//! - **Bounded memory:** at most `capacity` events wait; an event that
//!   finds the queue full is dropped and counted (`flow_events_dropped`),
//!   never blocks the engine thread. A consumer must therefore accept an
//!   end without a start and a start that never ends.
//! - **No wake-ups of its own:** the engine pushes while handling packets
//!   it handles anyway; the consumer sleeps on a condition variable.
//!
//! Reported: IPv4 flows only (TCP connections, UDP and ICMP echo mappings;
//! not carried IPv6, not queries to the DNS relay). What a flow, its bytes,
//! its end and its name are, exactly: `docs/flow-events.md`, "What the
//! engine counts, exactly".

use std::collections::VecDeque;
use std::net::SocketAddrV4;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A flow's transport. ICMP: an echo mapping (RFC 792 Echo / Echo Reply).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlowProto {
    Tcp,
    Udp,
    Icmp,
}

/// Why a flow ended (`docs/flow-events.md`, `how`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlowEndReason {
    /// Orderly TCP close (FIN both ways).
    Closed,
    /// TCP reset by either side (an app's RST while its SYN was held too),
    /// or the engine could not open the upstream socket (the app gets a RST).
    Reset,
    /// Idle past the engine's timeout (UDP, ICMP echo, idle TCP, a connect
    /// that never completed), or an upstream connect that timed out.
    TimedOut,
    /// The upstream refused: TCP RST to the SYN, port unreachable
    /// (ECONNREFUSED on the upstream connect).
    Refused,
    /// No route, host or network unreachable, administratively prohibited
    /// upstream (EHOSTUNREACH, ENETUNREACH, EACCES, EPERM on the connect).
    Unreachable,
    /// A flow that never completed, removed to make room under `max_flows`
    /// or to free a descriptor.
    Evicted,
    /// Reset because the network, the NAT64 prefix or the IPv4 path changed,
    /// or the engine stopped.
    NetworkChanged,
}

/// A flow's first packet was seen (`docs/flow-events.md`, FlowStart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowStart {
    /// The engine's flow id, unique while the engine runs; [`FlowEnd::id`]
    /// refers to it.
    pub id: u64,
    /// Time of the flow's first packet, ms since the Unix epoch (UTC, wall
    /// clock).
    pub at_ms: i64,
    pub proto: FlowProto,
    /// The app's side: its IPv4 source address and port (TCP, UDP) or the
    /// ICMP echo identifier. Linux attributes the flow to a process by it
    /// (`sock_diag`), Android by `getConnectionOwnerUid`.
    pub src: SocketAddrV4,
    /// The IPv4 destination the app addressed, and its port (0 for ICMP).
    /// For a UDP or echo mapping (endpoint-independent: one per app port or
    /// echo identifier) the first one; later destinations of the mapping
    /// are counted in its bytes without a start of their own.
    pub dst: SocketAddrV4,
    /// The DNS name the engine's relay resolved to `dst.ip()`: the name of
    /// the question (not a CNAME target), lower case, without the final
    /// dot; `None` when the app used a literal or resolved elsewhere (or
    /// over TCP, which the relay does not parse). Remembered for the
    /// answer's TTL, 60 s to 6 h (`dns_names`).
    pub name: Option<String>,
    /// The flow left through the network's native IPv4 (pass-through), not
    /// the NAT64.
    pub native_ipv4: bool,
}

/// A flow was dropped by the engine (`docs/flow-events.md`, FlowEnd).
///
/// A TCP flow's end is reported when its NAT entry goes, 2 s after it
/// ended (60 s under the TIME_WAIT hold), so that the packets still in
/// flight when its relay closed are counted; `at_ms` is when it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowEnd {
    /// The id of the matching [`FlowStart`].
    pub id: u64,
    /// When the flow ended, ms since the Unix epoch (UTC).
    pub at_ms: i64,
    /// Bytes from the app towards the destination: every IPv4 packet of
    /// the flow the app wrote to the TUN, whole, headers included. For TCP
    /// that is SYN, data, ACKs and FIN (the stream plus 40 to 60 bytes of
    /// headers per segment, and the pure ACKs), not the stream alone; for
    /// UDP and ICMP the datagrams and echo requests (a fragmented datagram
    /// as one, reassembled). Nothing the engine makes itself.
    pub bytes_up: u64,
    /// Bytes from the destination to the app: every IPv4 packet of the
    /// flow written to the app on the TUN, whole: for TCP the listener
    /// side's segments (SYN-ACK, data, ACKs, FIN), for UDP the datagrams,
    /// for ICMP the echo replies. Not the RSTs and ICMP errors the engine
    /// makes itself.
    pub bytes_down: u64,
    pub how: FlowEndReason,
}

/// What a reported flow carries for its [`FlowEnd`]: its id and its bytes
/// so far ([`FlowEnd::bytes_up`], [`FlowEnd::bytes_down`]). Boxed in the
/// flow (`Option<Box<Tally>>`: 8 bytes per flow when nobody listens, none
/// allocated), taken out when the flow's end is reported so that nothing
/// is counted or reported twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tally {
    pub id: u64,
    pub up: u64,
    pub down: u64,
    /// A TCP flow that has ended (its relay closed) while its NAT entry
    /// still carries the segments in flight: when, and how. Its end is
    /// reported when the entry goes (`tcp_flows`).
    pub ended: Option<(std::time::Instant, FlowEndReason)>,
}

impl Tally {
    pub(crate) fn new(id: u64) -> Box<Tally> {
        Box::new(Tally {
            id,
            up: 0,
            down: 0,
            ended: None,
        })
    }

    /// Adds `n` bytes to `t`'s up count, if the flow is reported.
    pub(crate) fn up(t: &mut Option<Box<Tally>>, n: usize) {
        if let Some(t) = t {
            t.up += n as u64;
        }
    }

    /// Adds `n` bytes to `t`'s down count, if the flow is reported.
    pub(crate) fn down(t: &mut Option<Box<Tally>>, n: usize) {
        if let Some(t) = t {
            t.down += n as u64;
        }
    }
}

/// One event, in the order the engine saw them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlowEvent {
    Start(FlowStart),
    End(FlowEnd),
}

/// Wall-clock now in ms since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[derive(Debug)]
struct Inner {
    queue: VecDeque<FlowEvent>,
    capacity: usize,
    /// Set when the engine has stopped: waiters return at once.
    closed: bool,
}

#[derive(Debug)]
struct Queue {
    inner: Mutex<Inner>,
    ready: Condvar,
}

/// The consumer's handle on an engine's flow events
/// ([`crate::Engine::flow_events`]); cheap to clone, usable from any thread.
#[derive(Debug, Clone)]
pub struct FlowEvents(Arc<Queue>);

/// The engine's side: pushes events, never blocks on the consumer.
#[derive(Debug, Clone)]
pub(crate) struct FlowEventSink(Arc<Queue>);

/// A queue holding at most `capacity` events (>= 1): the engine's sink and
/// the consumer's handle on it.
pub(crate) fn channel(capacity: usize) -> (FlowEventSink, FlowEvents) {
    let q = Arc::new(Queue {
        inner: Mutex::new(Inner {
            queue: VecDeque::with_capacity(capacity.min(1024)),
            capacity: capacity.max(1),
            closed: false,
        }),
        ready: Condvar::new(),
    });
    (FlowEventSink(q.clone()), FlowEvents(q))
}

impl FlowEventSink {
    /// Queues `ev`; `false` if the queue was full (the caller counts the
    /// drop) or closed.
    pub(crate) fn push(&self, ev: FlowEvent) -> bool {
        let mut g = self.0.inner.lock().unwrap_or_else(|e| e.into_inner());
        if g.closed || g.queue.len() >= g.capacity {
            return false;
        }
        let was_empty = g.queue.is_empty();
        g.queue.push_back(ev);
        drop(g);
        // A consumer only sleeps on an empty queue.
        if was_empty {
            self.0.ready.notify_all();
        }
        true
    }

    /// The engine stopped: waiters return what is left, then nothing.
    pub(crate) fn close(&self) {
        self.0
            .inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .closed = true;
        self.0.ready.notify_all();
    }
}

impl FlowEvents {
    /// Takes every waiting event without blocking (oldest first).
    pub fn take(&self) -> Vec<FlowEvent> {
        let mut g = self.0.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.queue.drain(..).collect()
    }

    /// Waits up to `timeout` for at least one event, then takes every
    /// waiting event (oldest first). Returns an empty vector on timeout, and
    /// at once when the engine has stopped and nothing is left
    /// ([`FlowEvents::is_closed`]).
    pub fn wait(&self, timeout: Duration) -> Vec<FlowEvent> {
        let g = self.0.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (mut g, _) = self
            .0
            .ready
            .wait_timeout_while(g, timeout, |i| i.queue.is_empty() && !i.closed)
            .unwrap_or_else(|e| e.into_inner());
        g.queue.drain(..).collect()
    }

    /// Whether the engine has stopped (no event will come after those
    /// waiting).
    pub fn is_closed(&self) -> bool {
        self.0
            .inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use std::time::Instant;

    fn end(id: u64) -> FlowEvent {
        FlowEvent::End(FlowEnd {
            id,
            at_ms: 1,
            bytes_up: 2,
            bytes_down: 3,
            how: FlowEndReason::Closed,
        })
    }

    #[test]
    fn events_come_out_in_order_and_a_full_queue_drops_the_newest() {
        let (sink, events) = channel(2);
        assert!(sink.push(end(1)));
        assert!(sink.push(end(2)));
        assert!(!sink.push(end(3)), "a third event must not fit");
        assert_eq!(events.take(), vec![end(1), end(2)]);
        assert!(events.take().is_empty());
        assert!(sink.push(end(4)), "room again after a take");
        assert_eq!(events.take(), vec![end(4)]);
    }

    #[test]
    fn wait_returns_an_event_pushed_from_another_thread() {
        let (sink, events) = channel(8);
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            let s = FlowStart {
                id: 7,
                at_ms: now_ms(),
                proto: FlowProto::Udp,
                src: SocketAddrV4::new(Ipv4Addr::new(192, 0, 0, 4), 5353),
                dst: SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 1), 53),
                name: Some("example.org".into()),
                native_ipv4: false,
            };
            sink.push(FlowEvent::Start(s));
            sink
        });
        let got = events.wait(Duration::from_secs(10));
        let _sink = t.join().unwrap();
        assert_eq!(got.len(), 1);
        assert!(
            matches!(&got[0], FlowEvent::Start(s) if s.id == 7 && s.name.as_deref() == Some("example.org"))
        );
    }

    #[test]
    fn wait_times_out_empty_and_a_closed_queue_returns_at_once() {
        let (sink, events) = channel(8);
        assert!(events.wait(Duration::from_millis(20)).is_empty());
        assert!(sink.push(end(1)));
        sink.close();
        assert!(!sink.push(end(2)), "nothing is queued after close");
        assert!(events.is_closed());
        assert_eq!(events.wait(Duration::from_secs(60)), vec![end(1)]);
        let t0 = Instant::now();
        assert!(events.wait(Duration::from_secs(60)).is_empty());
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "a closed queue must not block"
        );
    }

    #[test]
    fn now_is_after_2020() {
        assert!(now_ms() > 1_577_836_800_000);
    }
}
