//! The decisions that keep a UDP datagram without DF from being lost for
//! its size, apart from the sockets.
//!
//! An app's datagram without DF may be fragmented on the way (RFC 791); a
//! translator fragments it to fit (RFC 7915 section 4.1). The engine sends
//! it with IPV6_DONTFRAG off, so the kernel fragments it against the MTU it
//! knows for the destination, at first the local route's. When a link
//! further along is narrower, a router answers Packet Too Big (RFC 8200
//! section 5, RFC 4443 section 3.2) and the datagram is lost; the kernel
//! has then learnt the path MTU, so the same datagram sent again is
//! fragmented to fit. Hence: a copy of the latest such datagram of each UDP
//! mapping is kept for a short time ([`HOLD`]), and a Packet Too Big from
//! the socket's error queue that matches it (same destination, quoted
//! payload a prefix of the copy) asks for it to be sent again, while the
//! app is told nothing (it never asked for DF, so Fragmentation Needed
//! would be a lie).
//!
//! Only datagrams whose IPv6 form is larger than 1280 bytes are kept: the
//! IPv6 minimum MTU (RFC 8200 section 5), which always crosses. Memory is
//! bounded: one copy per mapping (the latest), [`HOLD`] long, and
//! [`BUDGET`] bytes over all mappings; beyond the budget nothing is kept
//! ([`Keep::OverBudget`], counted by the caller). An idle mapping holds
//! nothing once its copy's deadline has fired.
//!
//! Sans I/O, like [`crate::datagram_mappings`]: every call takes `now`, and
//! deadlines are returned for the caller to arm.

use crate::sys::SendFields;
use std::collections::HashMap;
use std::net::SocketAddrV6;
use std::time::{Duration, Instant};

/// How long a copy is kept: ample for a Packet Too Big to come back over a
/// mobile path's round trip.
pub const HOLD: Duration = Duration::from_secs(2);

/// Bytes of payload kept over all mappings at most (1 MiB).
pub const BUDGET: usize = 1 << 20;

/// The largest UDP payload whose IPv6 datagram (40-byte IPv6 header, 8-byte
/// UDP header) fits the IPv6 minimum MTU of 1280 bytes (RFC 8200 section 5).
pub const MAX_PAYLOAD_ALWAYS_CROSSES: usize = 1280 - 40 - 8;

/// One kept datagram, as sent upstream.
struct Copy {
    dest: SocketAddrV6,
    payload: Box<[u8]>,
    fields: SendFields,
    /// The deadline armed for it.
    timer_at: Instant,
    /// The smallest MTU it was sent again for: a repeated Packet Too Big
    /// with no smaller MTU does not send it once more.
    resent_for: Option<u32>,
}

/// What became of a datagram just sent ([`TooBigResends::on_sent`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// Nothing to keep: it had DF (the app hears of Packet Too Big as
    /// Fragmentation Needed instead) or it always crosses.
    NotNeeded,
    /// Kept until `at` (arm it); `replaced` is the deadline of the copy it
    /// replaced (disarm it).
    Kept {
        at: Instant,
        replaced: Option<Instant>,
    },
    /// Not kept: the budget is spent. A copy the mapping had is dropped
    /// too (no longer its latest), and `replaced` is its deadline.
    OverBudget { replaced: Option<Instant> },
}

/// A datagram to send again on its mapping's socket.
#[derive(Debug, PartialEq, Eq)]
pub struct Resend<'a> {
    pub dest: SocketAddrV6,
    pub payload: &'a [u8],
    pub fields: SendFields,
}

/// Copies of the latest datagram without DF of each UDP mapping (keyed by
/// the app's source port), for sending again after Packet Too Big.
pub struct TooBigResends {
    hold: Duration,
    budget: usize,
    bytes: usize,
    map: HashMap<u16, Copy>,
}

impl TooBigResends {
    /// Empty, keeping copies `hold` long and at most `budget` payload bytes.
    pub fn new(hold: Duration, budget: usize) -> Self {
        TooBigResends {
            hold,
            budget,
            bytes: 0,
            map: HashMap::new(),
        }
    }

    /// The mapping `key` just sent `payload` (UDP payload, bytes) to `dest`
    /// with `fields` at `now`: keeps a copy when it had no DF and its IPv6
    /// datagram is larger than 1280 bytes and the budget allows.
    pub fn on_sent(
        &mut self,
        key: u16,
        dest: SocketAddrV6,
        payload: &[u8],
        fields: SendFields,
        now: Instant,
    ) -> Keep {
        if fields.dont_frag || payload.len() <= MAX_PAYLOAD_ALWAYS_CROSSES {
            return Keep::NotNeeded;
        }
        let replaced = self.forget(key);
        if self.bytes + payload.len() > self.budget {
            return Keep::OverBudget { replaced };
        }
        let at = now + self.hold;
        self.bytes += payload.len();
        self.map.insert(
            key,
            Copy {
                dest,
                payload: payload.into(),
                fields,
                timer_at: at,
                resent_for: None,
            },
        );
        Keep::Kept { at, replaced }
    }

    /// A Packet Too Big with MTU `mtu` (bytes) reached mapping `key`'s
    /// socket at `now`, about a datagram to `dest` whose payload starts
    /// with `quoted` (what the error queue returns). The kept copy to send
    /// again when it is that datagram, still held, and not already sent
    /// again for an MTU as small; None otherwise (then the caller handles
    /// the error as it would without a copy).
    pub fn on_too_big(
        &mut self,
        key: u16,
        dest: &SocketAddrV6,
        quoted: &[u8],
        mtu: u32,
        now: Instant,
    ) -> Option<Resend<'_>> {
        let c = self.map.get_mut(&key)?;
        let same = c.dest.ip() == dest.ip() && c.dest.port() == dest.port();
        if !same || quoted.is_empty() || !c.payload.starts_with(quoted) || now >= c.timer_at {
            return None;
        }
        if c.resent_for.is_some_and(|m| m <= mtu) {
            return None;
        }
        c.resent_for = Some(mtu);
        Some(Resend {
            dest: c.dest,
            payload: &c.payload,
            fields: c.fields,
        })
    }

    /// Whether a Packet Too Big about a datagram to `dest` whose payload
    /// starts with `quoted` is about `key`'s kept copy, whether or not it
    /// is sent again: the app's datagram had no DF, so the app is not told.
    pub fn is_kept(&self, key: u16, dest: &SocketAddrV6, quoted: &[u8]) -> bool {
        self.map.get(&key).is_some_and(|c| {
            c.dest.ip() == dest.ip()
                && c.dest.port() == dest.port()
                && !quoted.is_empty()
                && c.payload.starts_with(quoted)
        })
    }

    /// The deadline `at` of `key`'s copy fired: the copy is freed when it
    /// is that copy's deadline (else it is a replaced copy's, stale).
    pub fn on_deadline(&mut self, key: u16, at: Instant) {
        if self.map.get(&key).is_some_and(|c| c.timer_at == at) {
            self.forget(key);
        }
    }

    /// Frees `key`'s copy (its mapping closed); the deadline to disarm.
    pub fn forget(&mut self, key: u16) -> Option<Instant> {
        let c = self.map.remove(&key)?;
        self.bytes -= c.payload.len();
        Some(c.timer_at)
    }

    /// Payload bytes kept over all mappings.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn clear(&mut self) {
        self.map.clear();
        self.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest(port: u16) -> SocketAddrV6 {
        SocketAddrV6::new("2001:db8:64::cb00:710b".parse().unwrap(), port, 0, 0)
    }

    fn fields(dont_frag: bool) -> SendFields {
        SendFields {
            hop_limit: Some(64),
            tclass: Some(0xb8),
            dont_frag,
        }
    }

    /// A payload of `n` bytes that differs from others by `tag`.
    fn payload(n: usize, tag: u8) -> Vec<u8> {
        (0..n).map(|i| (i as u8) ^ tag).collect()
    }

    /// What an error queue quotes of a datagram: a Packet Too Big carries
    /// at most 1280 - 40 - 8 bytes of the offending IPv6 packet (RFC 4443
    /// section 3.2), i.e. 1184 bytes of its UDP payload.
    fn quote(p: &[u8]) -> &[u8] {
        &p[..p.len().min(1280 - 48 - 48)]
    }

    #[test]
    fn only_datagrams_without_df_over_1280_bytes_as_ipv6_are_kept() {
        let t0 = Instant::now();
        let mut r = TooBigResends::new(HOLD, BUDGET);
        // 1232 bytes of payload: 1280 bytes as IPv6, always crosses.
        assert_eq!(
            r.on_sent(1, dest(7), &payload(1232, 0), fields(false), t0),
            Keep::NotNeeded
        );
        // With DF the app is told Fragmentation Needed instead.
        assert_eq!(
            r.on_sent(1, dest(7), &payload(1400, 0), fields(true), t0),
            Keep::NotNeeded
        );
        assert_eq!(r.bytes(), 0);
        assert_eq!(
            r.on_sent(1, dest(7), &payload(1233, 0), fields(false), t0),
            Keep::Kept {
                at: t0 + HOLD,
                replaced: None
            }
        );
        assert_eq!(r.bytes(), 1233);
    }

    #[test]
    fn packet_too_big_matching_the_copy_sends_it_again_once_per_smaller_mtu() {
        let t0 = Instant::now();
        let mut r = TooBigResends::new(HOLD, BUDGET);
        let p = payload(1400, 3);
        r.on_sent(40000, dest(7), &p, fields(false), t0);
        let t1 = t0 + Duration::from_millis(30);
        assert!(r.is_kept(40000, &dest(7), quote(&p)));
        assert_eq!(
            r.on_too_big(40000, &dest(7), quote(&p), 1400, t1),
            Some(Resend {
                dest: dest(7),
                payload: &p,
                fields: fields(false)
            })
        );
        // The same Packet Too Big again (a duplicate, or the resend's own
        // fragments answered by the same router): not sent a third time.
        assert_eq!(r.on_too_big(40000, &dest(7), quote(&p), 1400, t1), None);
        // A narrower link further on: sent again for its MTU.
        assert!(r.on_too_big(40000, &dest(7), quote(&p), 1300, t1).is_some());
        // Still the copy: the app is not told, whatever the MTU.
        assert!(r.is_kept(40000, &dest(7), quote(&p)));
    }

    #[test]
    fn packet_too_big_about_another_datagram_does_not_match() {
        let t0 = Instant::now();
        let mut r = TooBigResends::new(HOLD, BUDGET);
        let p = payload(1400, 3);
        r.on_sent(40000, dest(7), &p, fields(false), t0);
        let other = payload(1400, 9);
        for (key, d, q) in [
            (40001, dest(7), quote(&p)),     // another mapping
            (40000, dest(8), quote(&p)),     // another destination port
            (40000, dest(7), quote(&other)), // another payload
            (40000, dest(7), &p[..0]),       // nothing quoted
        ] {
            assert!(!r.is_kept(key, &d, q));
            assert_eq!(r.on_too_big(key, &d, q, 1400, t0), None);
        }
        let elsewhere = SocketAddrV6::new("2001:db8:64::cb00:710a".parse().unwrap(), 7, 0, 0);
        assert_eq!(r.on_too_big(40000, &elsewhere, quote(&p), 1400, t0), None);
        assert!(r.on_too_big(40000, &dest(7), quote(&p), 1400, t0).is_some());
    }

    #[test]
    fn the_latest_datagram_replaces_the_copy_and_its_deadline() {
        let t0 = Instant::now();
        let mut r = TooBigResends::new(HOLD, BUDGET);
        let (a, b) = (payload(1400, 1), payload(2000, 2));
        r.on_sent(5, dest(7), &a, fields(false), t0);
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(
            r.on_sent(5, dest(7), &b, fields(false), t1),
            Keep::Kept {
                at: t1 + HOLD,
                replaced: Some(t0 + HOLD)
            }
        );
        assert_eq!(r.bytes(), 2000);
        assert_eq!(r.on_too_big(5, &dest(7), quote(&a), 1400, t1), None);
        // The replaced copy's deadline is stale: the new copy stays.
        r.on_deadline(5, t0 + HOLD);
        assert!(r.is_kept(5, &dest(7), quote(&b)));
        // A small datagram since does not displace it.
        r.on_sent(5, dest(7), &payload(100, 0), fields(false), t1);
        assert!(r.is_kept(5, &dest(7), quote(&b)));
    }

    #[test]
    fn the_copy_is_freed_at_its_deadline_and_not_matched_after_the_hold() {
        let t0 = Instant::now();
        let mut r = TooBigResends::new(HOLD, BUDGET);
        let p = payload(1400, 0);
        let Keep::Kept { at, .. } = r.on_sent(5, dest(7), &p, fields(false), t0) else {
            panic!("not kept")
        };
        // The deadline has not been run yet (a busy loop): no match anyway.
        assert_eq!(r.on_too_big(5, &dest(7), quote(&p), 1400, at), None);
        r.on_deadline(5, at);
        assert_eq!(r.bytes(), 0);
        assert!(!r.is_kept(5, &dest(7), quote(&p)));
        // A closed mapping frees its copy and says which deadline to disarm.
        let Keep::Kept { at, .. } = r.on_sent(6, dest(7), &p, fields(false), t0) else {
            panic!("not kept")
        };
        assert_eq!(r.forget(6), Some(at));
        assert_eq!((r.forget(6), r.bytes()), (None, 0));
    }

    #[test]
    fn beyond_the_budget_nothing_is_kept() {
        let t0 = Instant::now();
        let mut r = TooBigResends::new(HOLD, 5000);
        let p = payload(2000, 0);
        assert!(matches!(
            r.on_sent(1, dest(7), &p, fields(false), t0),
            Keep::Kept { .. }
        ));
        assert!(matches!(
            r.on_sent(2, dest(7), &p, fields(false), t0),
            Keep::Kept { .. }
        ));
        assert_eq!(
            r.on_sent(3, dest(7), &p, fields(false), t0),
            Keep::OverBudget { replaced: None }
        );
        assert_eq!(r.bytes(), 4000);
        // A mapping's own copy does not count against its replacement...
        assert!(matches!(
            r.on_sent(2, dest(7), &payload(3000, 1), fields(false), t0),
            Keep::Kept {
                replaced: Some(_),
                ..
            }
        ));
        // ...and one too big for the budget drops the copy it replaces.
        assert_eq!(
            r.on_sent(2, dest(7), &payload(4000, 1), fields(false), t0),
            Keep::OverBudget {
                replaced: Some(t0 + HOLD)
            }
        );
        assert_eq!(r.bytes(), 2000);
        r.clear();
        assert_eq!(r.bytes(), 0);
    }
}
