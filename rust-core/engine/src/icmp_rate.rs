//! The rate limit of the ICMP errors the engine originates (sans I/O).
//!
//! RFC 4443 section 2.4 (f): an IPv6 node MUST limit the rate of the
//! ICMPv6 error messages it originates, with a token bucket as the
//! suggested method; RFC 1812 section 4.3.2.8 asks the same of an IPv4
//! router. The engine answers app packets it will not carry (refusals,
//! TTL or hop limit 0, unknown protocols, on-link destinations) with
//! errors of its own: one app sending such packets in a loop must not make
//! the engine spend its time writing errors to the TUN for it.
//!
//! Packet Too Big and Fragmentation Needed are not limited (they are
//! written elsewhere, by the path-MTU code): limiting them would break
//! path MTU discovery, which is why Linux exempts them too
//! (`icmpv6_xrlim_allow`, `icmpv4_xrlim_allow` in net/ipv6/icmp.c and
//! net/ipv4/icmp.c). Errors the path sent and the engine passes on are not
//! the engine's to limit either: that includes the answer to a held SYN
//! whose upstream connect failed (`answer_syn`), which says what the path
//! said (a RST, an ICMPv6 error) and comes at most once per connect.

use std::time::{Duration, Instant};

/// Errors per second once the burst is spent: Linux's default
/// `net.ipv4.icmp_msgs_per_sec` (1000).
pub(crate) const RATE_PER_SEC: u32 = 1000;
/// Errors that may go back to back: Linux's default
/// `net.ipv4.icmp_msgs_burst` (50).
pub(crate) const BURST: u32 = 50;

/// A token bucket: `burst` tokens at most, refilled at `per_sec` a second.
#[derive(Debug, Clone)]
pub(crate) struct IcmpRateLimit {
    per_sec: u32,
    burst: u32,
    /// Tokens now, in thousandths (refill granularity: 1 ms at 1000/s).
    milli_tokens: u64,
    last: Option<Instant>,
}

impl IcmpRateLimit {
    pub(crate) fn new(per_sec: u32, burst: u32) -> IcmpRateLimit {
        IcmpRateLimit {
            per_sec,
            burst,
            milli_tokens: u64::from(burst) * 1000,
            last: None,
        }
    }

    /// Whether an error may be sent at `now`; takes a token if so.
    pub(crate) fn allow(&mut self, now: Instant) -> bool {
        let cap = u64::from(self.burst) * 1000;
        match self.last {
            Some(last) if now <= last => {}
            Some(last) => {
                let dt = (now - last).min(Duration::from_secs(3600));
                let refill = dt.as_micros() as u64 * u64::from(self.per_sec) / 1000;
                self.milli_tokens = (self.milli_tokens + refill).min(cap);
                self.last = Some(now);
            }
            None => self.last = Some(now),
        }
        if self.milli_tokens >= 1000 {
            self.milli_tokens -= 1000;
            true
        } else {
            false
        }
    }
}

impl Default for IcmpRateLimit {
    fn default() -> Self {
        IcmpRateLimit::new(RATE_PER_SEC, BURST)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_burst_passes_then_the_rate_holds() {
        let mut r = IcmpRateLimit::new(1000, 50);
        let t0 = Instant::now();
        let sent = (0..200).filter(|_| r.allow(t0)).count();
        assert_eq!(sent, 50, "the burst, and nothing more at one instant");
        // 10 ms later: 10 more tokens at 1000 a second.
        let t1 = t0 + Duration::from_millis(10);
        assert_eq!((0..200).filter(|_| r.allow(t1)).count(), 10);
        // One error per millisecond keeps flowing at the rate.
        let mut ok = 0;
        for i in 1..=1000u64 {
            ok += usize::from(r.allow(t1 + Duration::from_millis(i)));
        }
        assert_eq!(ok, 1000);
    }

    #[test]
    fn an_idle_bucket_refills_only_to_the_burst() {
        let mut r = IcmpRateLimit::new(1000, 50);
        let t0 = Instant::now();
        assert!(r.allow(t0));
        let later = t0 + Duration::from_secs(7200);
        assert_eq!((0..500).filter(|_| r.allow(later)).count(), 50);
    }

    #[test]
    fn time_going_backwards_refills_nothing() {
        let mut r = IcmpRateLimit::new(1000, 1);
        let t0 = Instant::now() + Duration::from_secs(1);
        assert!(r.allow(t0));
        assert!(!r.allow(t0 - Duration::from_millis(500)));
        // Nor does coming back to where it was.
        assert!(!r.allow(t0));
        assert!(r.allow(t0 + Duration::from_millis(1)));
    }
}
