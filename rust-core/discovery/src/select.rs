//! Choosing one prefix among the sources.

use crate::{DiscoveredPrefix, PrefixSource};

/// The prefix the CLAT should use: configuration beats PREF64, which beats
/// RFC 7050 (RFC 8781 section 5 prefers the RA because it comes from the
/// router itself, is cheaper and cannot be spoofed by a DNS path). Within a
/// source the first one wins (answer or arrival order). A PREF64 with a
/// zero lifetime is withdrawn (RFC 8781) and never chosen; an RFC 7050 TTL
/// of zero only means "ask again soon" and still counts.
pub fn select_prefix(candidates: &[DiscoveredPrefix]) -> Option<DiscoveredPrefix> {
    candidates
        .iter()
        .enumerate()
        .filter(|(_, c)| !(c.source == PrefixSource::Pref64 && c.lifetime.is_zero()))
        .min_by_key(|(i, c)| (c.source, *i))
        .map(|(_, c)| *c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PrefixSource::*;
    use std::time::Duration;

    fn p(s: &str, source: crate::PrefixSource, secs: u64) -> DiscoveredPrefix {
        DiscoveredPrefix {
            prefix: s.parse().unwrap(),
            source,
            lifetime: Duration::from_secs(secs),
        }
    }

    #[test]
    fn order_of_sources() {
        let dns = p("2001:db8:64::/96", Rfc7050, 300);
        let dns2 = p("2001:db8:a00::/40", Rfc7050, 300);
        let ra = p("2001:db8:b00::/40", Pref64, 600);
        let cfg = p("64:ff9b::/96", Config, u64::MAX);
        assert_eq!(select_prefix(&[dns, ra, cfg]), Some(cfg));
        assert_eq!(select_prefix(&[dns, dns2, ra]), Some(ra));
        assert_eq!(select_prefix(&[dns, dns2]), Some(dns));
        assert_eq!(select_prefix(&[dns2, dns]), Some(dns2));
        assert_eq!(select_prefix(&[]), None);
    }

    #[test]
    fn withdrawn_prefixes_are_skipped() {
        let ra0 = p("2001:db8:b00::/40", Pref64, 0);
        let dns = p("2001:db8:64::/96", Rfc7050, 300);
        assert_eq!(select_prefix(&[ra0, dns]), Some(dns));
        assert_eq!(select_prefix(&[ra0]), None);
        let dns0 = p("2001:db8:64::/96", Rfc7050, 0);
        assert_eq!(
            select_prefix(&[ra0, dns0]),
            Some(dns0),
            "TTL 0 is not a withdrawal"
        );
    }
}
