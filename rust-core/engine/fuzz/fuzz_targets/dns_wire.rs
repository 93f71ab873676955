//! The DNS relay's wire handling (rust-core/engine/src/dns_wire.rs, a
//! private module, compiled here from its source) on arbitrary bytes as a
//! client query and as an upstream answer. Never panic; a SERVFAIL made for
//! a query keeps its id and question, is a response and parses.
#![no_main]

#[allow(dead_code)]
#[path = "../../src/dns_wire.rs"]
mod dns_wire;

use hickory_proto::op::{Message, ResponseCode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let max = dns_wire::client_max_payload(data);
    assert!(max >= 512, "client size {max}");
    let _ = dns_wire::is_response(data);
    let _ = dns_wire::is_truncated(data);
    let mut m = data.to_vec();
    dns_wire::set_id(&mut m, 0x1234);
    if let Some(id) = dns_wire::id(&m) {
        assert_eq!(id, 0x1234);
    }
    if let Some(sf) = dns_wire::servfail(data) {
        assert!(sf.len() >= dns_wire::HEADER_LEN);
        assert_eq!(dns_wire::id(&sf), dns_wire::id(data));
        assert!(dns_wire::is_response(&sf));
        assert!(!dns_wire::is_truncated(&sf));
        assert!(
            dns_wire::same_question(data, &sf),
            "our SERVFAIL answers the question asked"
        );
        let parsed = Message::from_vec(&sf).expect("our SERVFAIL parses");
        assert_eq!(parsed.metadata.response_code, ResponseCode::ServFail);
    } else {
        assert!(data.len() < dns_wire::HEADER_LEN);
    }
    let half = data.len() / 2;
    let _ = dns_wire::same_question(&data[..half], &data[half..]);
    let a = dns_wire::pick_answer(Some(&data[..half]), &data[half..], max);
    assert!(a.len() <= max.max(data.len() - half));
});
