//! The little DNS wire-format knowledge the relay needs: header flags and
//! ids (by hand, they are fixed offsets), EDNS0 payload size and SERVFAIL
//! answers (through hickory-proto, so that no DNS parser is hand-written).

use hickory_proto::op::{Message, Metadata, Query, ResponseCode};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};

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

/// Is `msg` a NOERROR response (RFC 1035 4.1.1: QR set, RCODE 0) with one
/// question, of type A and class IN (4.1.2)? Read at fixed offsets and by
/// skipping the question's labels, without a parse or an allocation: the
/// relay asks it of every answer it passes on, and only those are worth
/// parsing for names ([`crate::dns_names`]). A name compressed into a
/// pointer (4.1.4) ends there, as on the wire.
pub fn is_a_in_answer(msg: &[u8]) -> bool {
    if msg.len() < HEADER_LEN || msg[2] & 0x80 == 0 || msg[3] & 0x0f != 0 {
        return false;
    }
    if u16::from_be_bytes([msg[4], msg[5]]) != 1 {
        return false;
    }
    let mut i = HEADER_LEN;
    loop {
        let Some(&len) = msg.get(i) else {
            return false;
        };
        match len {
            0 => {
                i += 1;
                break;
            }
            l if l & 0xc0 == 0xc0 => {
                i += 2;
                break;
            }
            l if l & 0xc0 != 0 => return false,
            l => i += 1 + l as usize,
        }
    }
    // QTYPE A (1), QCLASS IN (1).
    msg.get(i..i + 4) == Some(&[0, 1, 0, 1])
}

/// The question section of `msg` (RFC 1035 4.1.2), read with hickory;
/// `None` when it does not parse.
fn questions(msg: &[u8]) -> Option<Vec<Query>> {
    if msg.len() < HEADER_LEN {
        return None;
    }
    let count = u16::from_be_bytes([msg[4], msg[5]]);
    // Over the whole message: a name may point back into it.
    let mut d = BinDecoder::new(msg);
    d.read_slice(HEADER_LEN).ok()?;
    (0..count).map(|_| Query::read(&mut d).ok()).collect()
}

/// Does `answer` answer the question of `query` (names compared without
/// regard to case, as RFC 4343 says)? RFC 5452 section 9.1: an answer is
/// accepted only when id, addresses and question all match; the relay
/// checks the first two by its sockets and random ids, this the third. A
/// query this cannot read is judged by id alone; an error answer may omit
/// the question (RFC 6891 7: FORMERR to an EDNS query).
pub fn same_question(query: &[u8], answer: &[u8]) -> bool {
    let Some(q) = questions(query) else {
        return true;
    };
    match questions(answer) {
        Some(a) if a.is_empty() => answer[3] & 0x0f != 0,
        Some(a) => a == q,
        None => false,
    }
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

    fn answer_to(q: &[u8], name: &str, rtype: RecordType) -> Vec<u8> {
        let q = Message::from_vec(q).unwrap();
        let mut m = Message::new(q.metadata.id, MessageType::Response, OpCode::Query);
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
        m.to_vec().unwrap()
    }

    #[test]
    fn answers_must_carry_the_question_asked() {
        let q = query(Some(1232));
        assert!(same_question(
            &q,
            &answer_to(&q, "big.lab.example.", RecordType::A)
        ));
        // 0x20 case randomisation by resolvers is not a mismatch
        assert!(same_question(
            &q,
            &answer_to(&q, "BiG.Lab.EXAMPLE.", RecordType::A)
        ));
        assert!(!same_question(
            &q,
            &answer_to(&q, "evil.example.", RecordType::A)
        ));
        assert!(!same_question(
            &q,
            &answer_to(&q, "big.lab.example.", RecordType::AAAA)
        ));
        // a forged answer with no question is refused unless it is an error
        let mut empty = answer_to(&q, "big.lab.example.", RecordType::A)[..HEADER_LEN].to_vec();
        empty[4..6].fill(0);
        assert!(!same_question(&q, &empty));
        empty[3] |= 1; // FORMERR
        assert!(same_question(&q, &empty));
        // truncated or garbage answers are refused; unreadable queries are not judged
        let a = answer_to(&q, "big.lab.example.", RecordType::A);
        assert!(!same_question(&q, &a[..a.len() - 2]));
        assert!(!same_question(&q, b"garbage"));
        assert!(same_question(b"garbage-query", &a));
    }

    #[test]
    fn only_noerror_answers_to_one_a_question_of_class_in_are_a_answers() {
        let q = query(None);
        let a = answer_to(&q, "big.lab.example.", RecordType::A);
        assert!(is_a_in_answer(&a));
        assert!(!is_a_in_answer(&q), "a query");
        assert!(!is_a_in_answer(&answer_to(
            &q,
            "big.lab.example.",
            RecordType::AAAA
        )));
        assert!(!is_a_in_answer(&answer_to(
            &q,
            "big.lab.example.",
            RecordType::HTTPS
        )));
        let mut servfail = a.clone();
        servfail[3] |= 2;
        assert!(!is_a_in_answer(&servfail));
        let mut chaos = a.clone();
        let n = chaos.len();
        chaos[n - 1] = 3; // QCLASS CH
        assert!(!is_a_in_answer(&chaos));
        let mut two = a.clone();
        two[5] = 2;
        assert!(!is_a_in_answer(&two), "two questions");
        // Written out from RFC 1035 4.1: a question name compressed to a
        // pointer, then type A class IN.
        let mut ptr = a[..HEADER_LEN].to_vec();
        ptr.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1]);
        assert!(is_a_in_answer(&ptr));
        // Cut anywhere in the question, or a reserved label type: no.
        for cut in HEADER_LEN..a.len() {
            assert!(!is_a_in_answer(&a[..cut]), "cut at {cut}");
        }
        let mut bad = a.clone();
        bad[HEADER_LEN] = 0x40;
        assert!(!is_a_in_answer(&bad));
        assert!(!is_a_in_answer(b"short"));
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
