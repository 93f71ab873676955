//! PREF64 (RFC 8781) on arbitrary bytes: one option, a run of RA options,
//! and netlink RTM_NEWNDUSEROPT message buffers as the kernel hands them
//! over; also /etc/resolv.conf text. Never panic; what parses re-encodes
//! to something that parses to the same prefix and lifetime.
#![no_main]

use clat_discovery::netlink::parse_messages;
use clat_discovery::pref64::{encode_pref64, parse_pref64, pref64_options};
use clat_discovery::resolv_conf::parse_resolv_conf;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut parsed = Vec::new();
    if let Ok(p) = parse_pref64(data) {
        parsed.push(p);
    }
    parsed.extend(pref64_options(data).into_iter().flatten());
    for ev in parse_messages(data, None) {
        parsed.push(ev.pref64);
    }
    for p in parsed {
        let enc = encode_pref64(p.prefix, p.lifetime)
            .unwrap_or_else(|| panic!("parsed {p:?} does not re-encode"));
        let back = parse_pref64(&enc).expect("our own encoding parses");
        assert_eq!(back.prefix, p.prefix);
        assert_eq!(back.lifetime, p.lifetime);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        for a in parse_resolv_conf(text) {
            assert_ne!(a.port(), 0, "{text:?}");
        }
    }
});
