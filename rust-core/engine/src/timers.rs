//! Deadlines of flows, ordered, with exact removal.
//!
//! The loop sleeps until the earliest deadline and not at all when there is
//! none (a phone's battery pays for every wake-up). Flows record activity
//! with a plain timestamp; a deadline that fires early (activity since) is
//! simply re-armed, so busy flows cost no timer operations per packet.

use crate::datagram_mappings::MapKey;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// What a deadline belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TimerKey {
    /// A TCP NAT entry, by its NAT port.
    Nat(u16),
    /// A UDP mapping, by the app's family and source port.
    Udp(MapKey),
    /// An ICMP echo mapping, by the app's family and identifier.
    Icmp(MapKey),
    /// A DNS query in flight, by its upstream id.
    Dns(u16),
    /// The copy of a UDP mapping's latest datagram without DF
    /// ([`crate::too_big_resend`]), by the app's source port.
    UdpCopy(u16),
}

/// The deadlines, each as its signed distance in nanoseconds from `epoch`
/// (when the set was made) instead of an `Instant`: 8 bytes instead of 16,
/// so an entry is 16 bytes instead of 24 (16 bytes less per flow, a B-tree
/// leaf being at least half full; issue 16's memory per idle flow). The
/// conversion is exact both ways (an `Instant` has nanosecond resolution)
/// and keeps the order; ±292 years of range.
#[derive(Debug)]
pub struct Timers {
    epoch: Instant,
    set: BTreeSet<(i64, TimerKey)>,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            epoch: Instant::now(),
            set: BTreeSet::new(),
        }
    }
}

impl Timers {
    /// Bytes of one deadline in the B-tree, for the memory budget test
    /// (event_loop/memory.rs).
    #[cfg(test)]
    pub const ENTRY_BYTES: usize = std::mem::size_of::<(i64, TimerKey)>();

    fn encode(&self, at: Instant) -> i64 {
        let nanos = |d: Duration| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
        match at.checked_duration_since(self.epoch) {
            Some(d) => nanos(d),
            None => -nanos(self.epoch - at),
        }
    }

    fn decode(&self, t: i64) -> Instant {
        let d = Duration::from_nanos(t.unsigned_abs());
        if t >= 0 {
            self.epoch + d
        } else {
            self.epoch - d
        }
    }

    pub fn insert(&mut self, at: Instant, key: TimerKey) {
        let t = self.encode(at);
        self.set.insert((t, key));
    }

    pub fn remove(&mut self, at: Instant, key: TimerKey) {
        let t = self.encode(at);
        self.set.remove(&(t, key));
    }

    /// Earliest deadline, `None` when nothing is scheduled.
    pub fn next(&self) -> Option<Instant> {
        self.set.first().map(|e| self.decode(e.0))
    }

    /// Takes one deadline that is due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<(Instant, TimerKey)> {
        let now = self.encode(now);
        match self.set.first() {
            Some(&(at, _)) if at <= now => {
                let (at, key) = self.set.pop_first()?;
                Some((self.decode(at), key))
            }
            _ => None,
        }
    }

    #[cfg(test)]
    pub fn contains(&self, at: Instant, key: TimerKey) -> bool {
        self.set.contains(&(self.encode(at), key))
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.set.len()
    }

    pub fn clear(&mut self) {
        self.set.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordered_exact_removal_and_empty_means_none() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        assert_eq!(t.next(), None);
        t.insert(
            t0 + Duration::from_secs(5),
            TimerKey::Udp(MapKey { v6: false, id: 1 }),
        );
        t.insert(t0 + Duration::from_secs(2), TimerKey::Nat(7));
        t.insert(t0 + Duration::from_secs(9), TimerKey::Dns(3));
        assert_eq!(t.next(), Some(t0 + Duration::from_secs(2)));
        assert_eq!(t.pop_due(t0 + Duration::from_secs(1)), None);
        assert_eq!(
            t.pop_due(t0 + Duration::from_secs(6)).map(|e| e.1),
            Some(TimerKey::Nat(7))
        );
        assert_eq!(
            t.pop_due(t0 + Duration::from_secs(6)).map(|e| e.1),
            Some(TimerKey::Udp(MapKey { v6: false, id: 1 }))
        );
        assert_eq!(t.pop_due(t0 + Duration::from_secs(6)), None);
        t.remove(t0 + Duration::from_secs(9), TimerKey::Dns(3));
        assert_eq!(t.next(), None);
        assert_eq!(t.len(), 0);
    }

    /// Deadlines before the set was made (a test's t0, a deadline already
    /// due) and after it come back exactly, in order, and are removed
    /// exactly.
    #[test]
    fn deadlines_before_and_after_the_epoch_round_trip_in_order() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        let later = t.epoch + Duration::new(7200, 123);
        let earlier = t0 - Duration::from_nanos(1);
        t.insert(later, TimerKey::Nat(1));
        t.insert(earlier, TimerKey::Nat(2));
        t.insert(t0, TimerKey::Nat(3));
        assert_eq!(t.next(), Some(earlier));
        assert!(t.contains(later, TimerKey::Nat(1)));
        assert!(!t.contains(later + Duration::from_nanos(1), TimerKey::Nat(1)));
        t.remove(later - Duration::from_nanos(1), TimerKey::Nat(1));
        assert_eq!(t.len(), 3, "a removal 1 ns off removes nothing");
        assert_eq!(t.pop_due(t0), Some((earlier, TimerKey::Nat(2))));
        assert_eq!(t.pop_due(t0), Some((t0, TimerKey::Nat(3))));
        assert_eq!(t.pop_due(later - Duration::from_nanos(1)), None);
        assert_eq!(t.pop_due(later), Some((later, TimerKey::Nat(1))));
        assert_eq!(t.next(), None);
    }
}
