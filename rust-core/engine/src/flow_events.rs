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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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
    /// TCP reset by either side (an app's RST while its SYN was held too;
    /// the upstream socket's ECONNRESET or EPIPE), or the engine could not
    /// open the upstream socket (the app gets a RST).
    Reset,
    /// Idle past the engine's timeout (UDP, ICMP echo, idle TCP, a connect
    /// that never completed; the end's time is then the last packet), or
    /// the upstream socket got ETIMEDOUT (a connect, or an established
    /// flow's retransmissions or keepalives, went unanswered).
    TimedOut,
    /// The upstream refused: TCP RST to the SYN, port unreachable
    /// (ECONNREFUSED on the upstream connect).
    Refused,
    /// No route, host or network unreachable, administratively prohibited
    /// upstream (EHOSTUNREACH, ENETUNREACH, EACCES, EPERM on the connect or
    /// on an established flow's upstream socket).
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
    /// The engine's flow id, unique in the process across engines and
    /// unlikely to repeat after a restart ([`next_flow_id`]);
    /// [`FlowEnd::id`] refers to it.
    pub id: u64,
    /// Time of the flow's first packet, ms since the Unix epoch (UTC; the
    /// wall clock at engine start plus monotonic time since: [`WallClock`]).
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
    /// A name the engine's relay recently resolved to `dst.ip()`, for any
    /// client (the cache is the engine's, keyed by address, the latest
    /// answer wins): the name of the question (not a CNAME target), lower
    /// case, without the final dot, at most 253 characters; `None` when no
    /// client resolved the address through the relay lately (a literal,
    /// another resolver, an answer over TCP, which the relay does not
    /// parse, or a network change since). Remembered for the answer's TTL,
    /// 60 s to 6 h (`dns_names`).
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
    /// When the flow ended, ms since the Unix epoch (UTC, as
    /// [`FlowStart::at_ms`]): the close, the reset, the refusal...; for a
    /// flow that timed out, its last packet (or relayed byte), not the
    /// moment the engine noticed.
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
    /// A TCP flow that has ended (its relay closed; or it timed out, at
    /// its last packet) while its NAT entry still carries the segments in
    /// flight: when, and how. Its end is reported when the entry goes
    /// (`tcp_flows`).
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

/// A new flow id, unique in the process: one counter for every engine (an
/// engine restarted in the same process does not give an id again), seeded
/// on first use with the wall clock in ms shifted left by 20 bits, so that
/// a new process (an app restarted by Android) starts above every id the
/// previous one gave unless that one gave more than 2^20 ids per ms of its
/// life. Fits an i64 (the Kotlin side's type) until the year 2248.
pub(crate) fn next_flow_id() -> u64 {
    static NEXT: OnceLock<AtomicU64> = OnceLock::new();
    NEXT.get_or_init(|| AtomicU64::new((now_ms().max(1) as u64) << 20))
        .fetch_add(1, Ordering::Relaxed)
}

/// The engine's event clock: the wall clock read once, when the engine
/// starts, plus the monotonic time since ([`Instant`]). A step of the
/// system clock while the engine runs (NTP, the user, the network's time)
/// therefore cannot put an end before its start, and every event's time is
/// derived from the `Instant` the engine handled it at.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WallClock {
    base: Instant,
    base_ms: i64,
}

impl WallClock {
    /// The clock, set from the wall clock now.
    pub(crate) fn start() -> WallClock {
        WallClock::at(Instant::now(), now_ms())
    }

    /// A clock on which `base` is `base_ms` ms since the Unix epoch.
    pub(crate) fn at(base: Instant, base_ms: i64) -> WallClock {
        WallClock { base, base_ms }
    }

    /// `t` in ms since the Unix epoch.
    pub(crate) fn ms(&self, t: Instant) -> i64 {
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        match t.checked_duration_since(self.base) {
            Some(d) => self.base_ms.saturating_add(ms(d)),
            None => self.base_ms.saturating_sub(ms(self.base - t)),
        }
    }
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
        let g = self.0.inner.lock().unwrap_or_else(|e| e.into_inner());
        Self::swap_out(g)
    }

    /// The waiting events, swapped out under the lock (a pointer swap, no
    /// copy: the engine's push never waits for the consumer's conversion)
    /// and turned into a vector after it is released.
    fn swap_out(mut g: std::sync::MutexGuard<'_, Inner>) -> Vec<FlowEvent> {
        let q = std::mem::take(&mut g.queue);
        drop(g);
        Vec::from(q)
    }

    /// Waits up to `timeout` for at least one event, then takes every
    /// waiting event (oldest first). Returns an empty vector on timeout, and
    /// at once when the engine has stopped and nothing is left
    /// ([`FlowEvents::is_closed`]).
    pub fn wait(&self, timeout: Duration) -> Vec<FlowEvent> {
        let g = self.0.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (g, _) = self
            .0
            .ready
            .wait_timeout_while(g, timeout, |i| i.queue.is_empty() && !i.closed)
            .unwrap_or_else(|e| e.into_inner());
        Self::swap_out(g)
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

    /// The queue is swapped out under the lock, not copied there: what
    /// stays behind is a fresh, unallocated queue (a drain would leave the
    /// old allocation, having copied every event while the engine waited).
    #[test]
    fn take_and_wait_swap_the_queue_out() {
        let (sink, events) = channel(64);
        for i in 0..10 {
            assert!(sink.push(end(i)));
        }
        assert_eq!(events.take().len(), 10);
        assert_eq!(events.0.inner.lock().unwrap().queue.capacity(), 0);
        for i in 0..10 {
            assert!(sink.push(end(i)));
        }
        assert_eq!(events.wait(Duration::from_secs(5)).len(), 10);
        assert_eq!(events.0.inner.lock().unwrap().queue.capacity(), 0);
        assert!(sink.push(end(99)), "the new queue takes events");
        assert_eq!(events.take(), vec![end(99)]);
    }

    /// Ids never repeat in a process, whichever engine asks, and start
    /// from the wall clock (ms << 20), not from 1.
    #[test]
    fn flow_ids_are_unique_in_the_process_and_seeded_from_the_clock() {
        let before = (now_ms() as u64) << 20;
        let threads: Vec<_> = (0..4)
            .map(|_| std::thread::spawn(|| (0..1000).map(|_| next_flow_id()).collect::<Vec<_>>()))
            .collect();
        let mut all: Vec<u64> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n, "an id was given twice");
        // Seeded by this or an earlier test of this process: within the
        // last hour's ms << 20, far above 1.
        assert!(
            all[0] > before - (3_600_000u64 << 20),
            "{} vs {before}",
            all[0]
        );
        assert!(all[0] <= i64::MAX as u64 && all[n - 1] <= i64::MAX as u64);
    }

    /// Event times come from the monotonic clock added to the wall clock
    /// read at start: a later instant is never an earlier time, and times
    /// before the base count back from it.
    #[test]
    fn the_wall_clock_is_the_start_time_plus_monotonic_time() {
        let t0 = Instant::now();
        let c = WallClock::at(t0, 1_800_000_000_000);
        assert_eq!(c.ms(t0), 1_800_000_000_000);
        assert_eq!(c.ms(t0 + Duration::from_millis(61_500)), 1_800_000_061_500);
        let later = t0 + Duration::from_secs(5);
        let c2 = WallClock::at(later, 1_800_000_005_000);
        assert_eq!(c2.ms(t0), 1_800_000_000_000, "an instant before the base");
        let s = WallClock::start();
        let (a, b) = (s.ms(Instant::now()), now_ms());
        assert!((a - b).abs() < 1000, "{a} vs {b}");
    }

    /// What one waiting event costs (`config::MAX_FLOW_EVENTS`' doc): its
    /// slot in the queue, plus a start's name on the heap, at most
    /// `dns_names::MAX_NAME_LEN` bytes (rounded up by malloc, with its
    /// 8-16 bytes of overhead).
    #[test]
    fn a_waiting_event_is_a_small_fixed_slot_plus_its_name() {
        let slot = std::mem::size_of::<FlowEvent>();
        println!(
            "FlowEvent: {slot} bytes a slot, name at most {} more",
            crate::dns_names::MAX_NAME_LEN
        );
        assert!(slot <= 64, "{slot}");
        assert!(slot + crate::dns_names::MAX_NAME_LEN + 24 <= 340);
    }

    #[test]
    fn now_is_after_2020() {
        assert!(now_ms() > 1_577_836_800_000);
    }
}
