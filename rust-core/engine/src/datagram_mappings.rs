//! The decisions about datagram mappings (UDP by the app's source port,
//! ICMP echo by the echo identifier), apart from their sockets: which
//! mapping a key has, when a mapping was last used, and when an idle one
//! expires (RFC 4787 REQ-5 for UDP: at least 2 minutes; RFC 5508 REQ-1 for
//! ICMP query mappings: 60 seconds). Sans I/O: every call takes `now`, and
//! timer deadlines are returned for the caller to arm, so the whole
//! lifecycle is unit-tested without sockets or root. The event loop keeps
//! the sockets (in the slots the handles `H` name) and the polling.
//!
//! Expiry is lazy, as for TCP: traffic only records `last`; a deadline
//! that fires early (activity since) is answered with [`Expiry::Rearm`],
//! so busy mappings cost no timer operation per datagram.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// The key of a mapping in the event loop: the app's address family and
/// its UDP source port or echo identifier. IPv4 and IPv6 apps may use the
/// same port or identifier at once: each family has its own mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MapKey {
    /// An IPv6 app datagram (`carry_ipv6`), else IPv4.
    pub v6: bool,
    /// UDP source port or echo identifier.
    pub id: u16,
}

struct Entry<H> {
    handle: H,
    last: Instant,
    /// The one deadline armed for this mapping.
    timer_at: Instant,
}

/// What to do when a mapping's deadline fires ([`DatagramMappings::on_deadline`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry<H> {
    /// Not this mapping's current deadline (or no such mapping): nothing.
    Stale,
    /// Used since: arm this deadline instead.
    Rearm(Instant),
    /// Idle for the whole timeout: the mapping is gone from the table;
    /// close its socket (the handle). With its last use, when it really
    /// ended (its flow event's time).
    Expired(H, Instant),
}

/// Datagram mappings of one kind, keyed by an app key `K` (UDP source
/// port or echo identifier, with its family: [`MapKey`]), each with a
/// handle `H` the caller chooses (the event loop's slot index) and an idle
/// timeout.
pub struct DatagramMappings<H, K = u16> {
    idle: Duration,
    map: HashMap<K, Entry<H>>,
}

impl<H: Copy, K: Copy + Eq + Hash> DatagramMappings<H, K> {
    /// An empty table whose mappings expire after `idle` without traffic.
    pub fn new(idle: Duration) -> Self {
        DatagramMappings {
            idle,
            map: HashMap::new(),
        }
    }

    /// Records traffic on `key`'s mapping (either direction) at `now`;
    /// its handle, None when `key` has no mapping.
    pub fn touch(&mut self, key: K, now: Instant) -> Option<H> {
        let e = self.map.get_mut(&key)?;
        e.last = now;
        Some(e.handle)
    }

    /// `key`'s handle without counting it as traffic; None when `key` has
    /// no mapping.
    pub fn get(&self, key: K) -> Option<H> {
        self.map.get(&key).map(|e| e.handle)
    }

    /// Files a new mapping for `key` with `handle`, used at `now`. Returns
    /// the deadline to arm; a mapping `key` had before is replaced (the
    /// caller looks up first).
    pub fn insert(&mut self, key: K, handle: H, now: Instant) -> Instant {
        let timer_at = now + self.idle;
        self.map.insert(
            key,
            Entry {
                handle,
                last: now,
                timer_at,
            },
        );
        timer_at
    }

    /// Forgets `key`'s mapping: its handle and the deadline to disarm.
    pub fn remove(&mut self, key: K) -> Option<(H, Instant)> {
        self.map.remove(&key).map(|e| (e.handle, e.timer_at))
    }

    /// The deadline `at` of `key` fired at `now`: expire the mapping when
    /// it has been idle for the timeout, else re-arm it for when it will
    /// have been.
    pub fn on_deadline(&mut self, key: K, at: Instant, now: Instant) -> Expiry<H> {
        let Some(e) = self.map.get_mut(&key) else {
            return Expiry::Stale;
        };
        if e.timer_at != at {
            return Expiry::Stale;
        }
        let due = e.last + self.idle;
        if due > now {
            e.timer_at = due;
            return Expiry::Rearm(due);
        }
        let (h, last) = (e.handle, e.last);
        self.map.remove(&key);
        Expiry::Expired(h, last)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Bytes of one mapping's entry in the table's buckets (key and
    /// entry inline), for the memory budget test (event_loop/memory.rs).
    #[cfg(test)]
    pub const ENTRY_BYTES: usize = std::mem::size_of::<(K, Entry<H>)>();

    pub fn clear(&mut self) {
        self.map.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: Duration = Duration::from_secs(30);

    #[test]
    fn idle_mapping_expires_after_the_timeout_and_busy_one_is_rearmed() {
        let t0 = Instant::now();
        let mut m = DatagramMappings::new(IDLE);
        let at = m.insert(5353, 7usize, t0);
        assert_eq!(at, t0 + IDLE);
        assert_eq!(
            (m.touch(5353, t0), m.touch(1, t0), m.len()),
            (Some(7), None, 1)
        );
        // Traffic 10 s in: the first deadline only re-arms, to 10 s + idle.
        assert_eq!(m.touch(5353, t0 + Duration::from_secs(10)), Some(7));
        let again = t0 + Duration::from_secs(10) + IDLE;
        assert_eq!(m.on_deadline(5353, at, at), Expiry::Rearm(again));
        // The old deadline, if it fired again, is stale.
        assert_eq!(m.on_deadline(5353, at, again), Expiry::Stale);
        assert_eq!(m.len(), 1);
        // No traffic since: the re-armed deadline expires the mapping, which
        // ended with its last use (10 s in), not at the deadline.
        assert_eq!(
            m.on_deadline(5353, again, again),
            Expiry::Expired(7, t0 + Duration::from_secs(10))
        );
        assert_eq!((m.touch(5353, again), m.len()), (None, 0));
        assert_eq!(m.on_deadline(5353, again, again), Expiry::Stale);
    }

    /// A look-up for a decision (which path a packet would take) is not
    /// traffic: it does not keep an idle mapping alive.
    #[test]
    fn get_does_not_count_as_traffic() {
        let t0 = Instant::now();
        let mut m = DatagramMappings::new(IDLE);
        let at = m.insert(9, 'x', t0);
        assert_eq!((m.get(9), m.get(10)), (Some('x'), None));
        assert_eq!(m.on_deadline(9, at, t0 + IDLE), Expiry::Expired('x', t0));
    }

    #[test]
    fn a_deadline_fired_late_still_measures_idleness_from_the_last_use() {
        let t0 = Instant::now();
        let mut m = DatagramMappings::new(IDLE);
        let at = m.insert(1, 'a', t0);
        m.touch(1, t0 + Duration::from_secs(29));
        // The loop was busy and saw the deadline 20 s late: 49 s after the
        // start, only 20 s after the last use, so not idle yet.
        let now = t0 + Duration::from_secs(49);
        assert_eq!(
            m.on_deadline(1, at, now),
            Expiry::Rearm(t0 + Duration::from_secs(59))
        );
    }

    #[test]
    fn removed_mapping_returns_its_deadline_and_keys_are_independent() {
        let t0 = Instant::now();
        let mut m = DatagramMappings::new(IDLE);
        let a = m.insert(1, 10u32, t0);
        let b = m.insert(2, 20u32, t0 + Duration::from_secs(1));
        assert_eq!(m.remove(1), Some((10, a)));
        assert_eq!(m.remove(1), None);
        assert_eq!(m.on_deadline(1, a, a + IDLE), Expiry::Stale);
        assert_eq!(m.touch(1, b), None); // no mapping: nothing happens
        assert_eq!(
            m.on_deadline(2, b, b),
            Expiry::Expired(20, t0 + Duration::from_secs(1))
        );
        m.insert(3, 30, t0);
        m.clear();
        assert_eq!(m.len(), 0);
    }
}
