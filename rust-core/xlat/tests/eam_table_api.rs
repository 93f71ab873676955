//! The EAMT (RFC 7757) as a collection: empty until an entry is inserted,
//! entries listed in insertion order.

use clat_xlat::{Eam, EamTable};

#[test]
fn empty_until_an_entry_is_inserted() {
    let mut t = EamTable::new();
    assert!(t.is_empty());
    assert!(t.entries().is_empty());
    let a = Eam::new(
        "192.0.2.0/24".parse().unwrap(),
        "2001:db8:a::/120".parse().unwrap(),
    )
    .unwrap();
    let b = Eam::new(
        "192.0.2.1/32".parse().unwrap(),
        "2001:db8:b::1/128".parse().unwrap(),
    )
    .unwrap();
    t.insert(a).unwrap();
    assert!(!t.is_empty());
    t.insert(b).unwrap();
    assert_eq!(t.entries(), &[a, b]);
}
