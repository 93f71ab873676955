//! The little DNS wire-format knowledge the relay needs: header flags and
//! ids (by hand, they are fixed offsets), EDNS0 payload size and SERVFAIL
//! answers (through hickory-proto, so that no DNS parser is hand-written).

use hickory_proto::op::{Message, Metadata, ResponseCode};

/// Smallest DNS message: the 12-byte header.
pub const HEADER_LEN: usize = 12;

pub fn id(msg: &[u8]) -> Option<u16> {
    (msg.len() >= HEADER_LEN).then(|| u16::from_be_bytes([msg[0], msg[1]]))
}

pub fn set_id(msg: &mut [u8], id: u16) {
    if msg.len() >= 2 {
        msg[..2].copy_from_slice(&id.to_be_bytes());
    }
}

/// QR bit: is this a response?
pub fn is_response(msg: &[u8]) -> bool {
    msg.len() >= HEADER_LEN && msg[2] & 0x80 != 0
}

/// TC bit: was the answer truncated?
pub fn is_truncated(msg: &[u8]) -> bool {
    msg.len() >= HEADER_LEN && msg[2] & 0x02 != 0
}

/// Largest UDP answer the client accepts: its EDNS0 payload size, else 512
/// (RFC 1035 4.2.1, RFC 6891 6.2.3). A query hickory cannot parse gets 512.
pub fn client_max_payload(query: &[u8]) -> usize {
    Message::from_vec(query)
        .map(|m| m.max_payload() as usize)
        .unwrap_or(512)
}

/// What to answer the client after a truncated UDP answer was retried
/// over TCP: the full TCP answer when it fits the client's size, else the
/// truncated UDP answer (TC set) so the client retries over TCP itself.
pub fn pick_answer<'a>(
    tcp_answer: Option<&'a [u8]>,
    truncated_udp: &'a [u8],
    client_max: usize,
) -> &'a [u8] {
    match tcp_answer {
        Some(a) if a.len() >= HEADER_LEN && a.len() <= client_max => a,
        _ => truncated_udp,
    }
}

/// A SERVFAIL answer to `query` (same id and question), so that a client
/// never waits in silence when the upstream resolvers are down.
pub fn servfail(query: &[u8]) -> Option<Vec<u8>> {
    match Message::from_vec(query) {
        Ok(q) => {
            let mut r =
                Message::error_msg(q.metadata.id, q.metadata.op_code, ResponseCode::ServFail);
            let mut md = Metadata::response_from_request(&q.metadata);
            md.response_code = ResponseCode::ServFail;
            md.recursion_available = true;
            r.metadata = md;
            r.queries = q.queries.clone();
            r.to_vec().ok()
        }
        Err(_) if query.len() >= HEADER_LEN => {
            // Unparseable question: header only, still SERVFAIL.
            let mut h = query[..HEADER_LEN].to_vec();
            h[2] = (h[2] & 0x79) | 0x80; // QR=1, keep opcode and RD, clear AA/TC
            h[3] = 0x80 | 2; // RA, RCODE=SERVFAIL
            h[4..12].fill(0);
            Some(h)
        }
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Edns, MessageType, OpCode, Query};
    use hickory_proto::rr::{Name, RecordType};

    fn query(edns: Option<u16>) -> Vec<u8> {
        let mut m = Message::new(0x1234, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(
            Name::from_ascii("big.lab.example.").unwrap(),
            RecordType::A,
        ));
        if let Some(sz) = edns {
            let mut e = Edns::new();
            e.set_max_payload(sz);
            m.edns = Some(e);
        }
        m.to_vec().unwrap()
    }

    #[test]
    fn payload_size_from_edns_or_512() {
        assert_eq!(client_max_payload(&query(None)), 512);
        assert_eq!(client_max_payload(&query(Some(1232))), 1232);
        assert_eq!(client_max_payload(&query(Some(100))), 512);
        assert_eq!(client_max_payload(b"garbage"), 512);
    }

    #[test]
    fn tcp_answer_only_when_it_fits() {
        let trunc = vec![0u8; 100];
        let big = vec![1u8; 900];
        assert_eq!(pick_answer(Some(&big), &trunc, 512).len(), 100);
        assert_eq!(pick_answer(Some(&big), &trunc, 1232).len(), 900);
        assert_eq!(pick_answer(None, &trunc, 4096).len(), 100);
        assert_eq!(pick_answer(Some(&[0u8; 3]), &trunc, 4096).len(), 100);
    }

    #[test]
    fn servfail_keeps_id_and_question() {
        let q = query(Some(1232));
        let r = servfail(&q).unwrap();
        let m = Message::from_vec(&r).unwrap();
        assert_eq!(m.metadata.id, 0x1234);
        assert_eq!(m.metadata.message_type, MessageType::Response);
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
        assert_eq!(m.queries.len(), 1);
        assert!(m.metadata.recursion_desired);
        assert!(is_response(&r) && !is_truncated(&r));
        let h = servfail(&[0xab, 0xcd, 0x01, 0, 0, 5, 0, 0, 0, 0, 0, 0, 9]).unwrap();
        assert_eq!(id(&h), Some(0xabcd));
        assert_eq!(h[3] & 0x0f, 2);
        assert!(servfail(b"x").is_none());
    }
}
