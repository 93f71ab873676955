//! Deadlines of flows, ordered, with exact removal.
//!
//! The loop sleeps until the earliest deadline and not at all when there is
//! none (a phone's battery pays for every wake-up). Flows record activity
//! with a plain timestamp; a deadline that fires early (activity since) is
//! simply re-armed, so busy flows cost no timer operations per packet.

use crate::datagram_mappings::MapKey;
use std::collections::BTreeSet;
use std::time::Instant;

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

#[derive(Debug, Default)]
pub struct Timers {
    set: BTreeSet<(Instant, TimerKey)>,
}

impl Timers {
    pub fn insert(&mut self, at: Instant, key: TimerKey) {
        self.set.insert((at, key));
    }

    pub fn remove(&mut self, at: Instant, key: TimerKey) {
        self.set.remove(&(at, key));
    }

    /// Earliest deadline, `None` when nothing is scheduled.
    pub fn next(&self) -> Option<Instant> {
        self.set.first().map(|e| e.0)
    }

    /// Takes one deadline that is due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<(Instant, TimerKey)> {
        match self.set.first() {
            Some(&(at, _)) if at <= now => self.set.pop_first(),
            _ => None,
        }
    }

    #[cfg(test)]
    pub fn contains(&self, at: Instant, key: TimerKey) -> bool {
        self.set.contains(&(at, key))
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
    use std::time::Duration;

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
}
