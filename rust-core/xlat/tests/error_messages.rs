//! The names and messages users and counters see: `DropReason::as_str` is a
//! stable counter name (one per reason, `clat xlat` prints it), and the
//! configuration errors say which RFC rule a value breaks.

use clat_xlat::addr6052::{validate_prefix, PrefixError};
use clat_xlat::{DropReason, Eam, EamError, EamTable};

const ALL: [DropReason; 19] = [
    DropReason::Malformed,
    DropReason::WrongVersion,
    DropReason::BadIpv4Checksum,
    DropReason::BadIcmpChecksum,
    DropReason::UntranslatableDst,
    DropReason::UntranslatableSrc,
    DropReason::NonGlobalWkp,
    DropReason::IcmpUntranslatable,
    DropReason::IcmpErrorInError,
    DropReason::FragmentedIcmp,
    DropReason::UdpZeroChecksum,
    DropReason::TooBig,
    DropReason::TooBigNoReply,
    DropReason::TtlExpired,
    DropReason::NoErrorSource,
    DropReason::TruncatedTransport,
    DropReason::SourceRoute,
    DropReason::RoutingHeader,
    DropReason::ErrorNotAllowed,
];

/// Every reason has its own lower-case, dash-separated name, and Display
/// prints that name.
#[test]
fn drop_reason_names_are_distinct_counter_names() {
    let mut names: Vec<&str> = ALL.iter().map(|r| r.as_str()).collect();
    for (r, n) in ALL.iter().zip(&names) {
        assert!(
            !n.is_empty()
                && n.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
            "{r:?}: {n:?}"
        );
        assert_eq!(r.to_string(), *n);
    }
    assert_eq!(DropReason::TtlExpired.as_str(), "ttl-expired");
    assert_eq!(DropReason::ErrorNotAllowed.as_str(), "error-not-allowed");
    names.sort();
    names.dedup();
    assert_eq!(names.len(), ALL.len(), "two reasons share a name");
}

/// RFC 6052 section 2.2 errors name the prefix and the rule.
#[test]
fn prefix_errors_name_the_prefix_and_the_rule() {
    let u = validate_prefix(&"2001:db8:0:0:ff00::/96".parse().unwrap()).unwrap_err();
    assert!(matches!(u, PrefixError::NonZeroU(_)));
    assert_eq!(
        u.to_string(),
        "2001:db8:0:0:ff00::/96: bits 64-71 must be zero (RFC 6052 section 2.2)"
    );
    let h = validate_prefix(&"2001:db8::1/96".parse().unwrap()).unwrap_err();
    assert_eq!(
        h.to_string(),
        "2001:db8::1/96: bits after the prefix length are set (did you mean 2001:db8::/96?)"
    );
}

/// RFC 7757 section 3.2 errors name both prefixes.
#[test]
fn eam_errors_name_both_prefixes() {
    // An IPv6 suffix shorter than the IPv4 one (a longer one is allowed).
    let e = Eam::new(
        "192.0.2.0/24".parse().unwrap(),
        "2001:db8::/124".parse().unwrap(),
    )
    .unwrap_err();
    assert!(matches!(e, EamError::SuffixMismatch(_)));
    assert_eq!(
        e.to_string(),
        "EAM 192.0.2.0/24=2001:db8::/124: the IPv6 prefix leaves fewer suffix bits than the IPv4 prefix (4 < 8 bits; RFC 7757 section 3.2)"
    );
    let e = Eam::new(
        "192.0.2.1/24".parse().unwrap(),
        "2001:db8::/120".parse().unwrap(),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "EAM 192.0.2.1/24=2001:db8::/120: bits after a prefix length are set"
    );
    let mut t = EamTable::new();
    let a = Eam::new(
        "192.0.2.0/24".parse().unwrap(),
        "2001:db8::/120".parse().unwrap(),
    )
    .unwrap();
    t.insert(a).unwrap();
    assert_eq!(
        t.insert(a).unwrap_err().to_string(),
        "EAM 192.0.2.0/24=2001:db8::/120: a prefix is already mapped"
    );
}
