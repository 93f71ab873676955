//! RFC 7050 discovery: ask resolvers for `ipv4only.arpa` AAAA.
//!
//! All resolvers are asked at once over UDP (one connected socket each, so
//! that only the resolver's own address can answer and ICMP errors come
//! back as `ECONNREFUSED`), and the first usable answer wins. A truncated
//! answer is asked again over TCP (RFC 7766). Every socket goes through the
//! [`SocketProtector`] before it sends anything: on Android the query must
//! leave through the real network, not the CLAT's own VPN.
//!
//! The wait is a `poll(2)` (rustix's safe wrapper) on all sockets with the
//! remaining time as its timeout: no busy polling, one thread.

use crate::extract::{extract_prefixes, ExtractError};
use crate::{DiscoveredPrefix, DiscoveryError, PrefixSource};
use clat_protect::SocketProtector;
use hickory_proto::op::{Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use rustix::event::{PollFd, PollFlags, Timespec};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// A UDP query still unanswered after this long is sent again (until the
/// deadline): one lost datagram must not cost the whole discovery.
pub const RESEND_AFTER: Duration = Duration::from_secs(1);

/// The name RFC 7050 queries.
pub const IPV4ONLY_ARPA: &str = "ipv4only.arpa.";

/// Builds the query message (random ID, RD set).
pub fn build_query() -> Message {
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(
        Name::from_ascii(IPV4ONLY_ARPA).expect("constant name is valid"),
        RecordType::AAAA,
    ));
    m
}

/// Is `resp` the answer to `query`? (same ID, a response, same question).
/// Anything else on the socket is ignored: it could be a late answer to an
/// older query or a spoofing attempt.
fn answers(query: &Message, resp: &Message) -> bool {
    resp.metadata.id == query.metadata.id
        && resp.metadata.message_type == MessageType::Response
        && (resp.queries.is_empty() || resp.queries == query.queries)
}

/// Turns a response into prefixes (or the reason there are none).
pub fn interpret(
    resolver: SocketAddr,
    resp: &Message,
) -> Result<Vec<DiscoveredPrefix>, DiscoveryError> {
    match resp.metadata.response_code {
        ResponseCode::NoError => {}
        ResponseCode::NXDomain => {
            return Err(DiscoveryError::NoDns64 {
                resolver,
                why: "NXDOMAIN".into(),
            })
        }
        other => {
            return Err(DiscoveryError::Failed {
                resolver,
                detail: format!("answered {other}"),
            })
        }
    }
    let aaaa: Vec<_> = resp
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::AAAA(a) => Some((a.0, r.ttl)),
            _ => None,
        })
        .collect();
    if aaaa.is_empty() {
        return Err(DiscoveryError::NoDns64 {
            resolver,
            why: "no AAAA record".into(),
        });
    }
    match extract_prefixes(&aaaa) {
        Ok(found) => Ok(found
            .into_iter()
            .map(|f| DiscoveredPrefix {
                prefix: f.prefix,
                source: PrefixSource::Rfc7050,
                lifetime: Duration::from_secs(u64::from(f.ttl)),
            })
            .collect()),
        Err(ExtractError::NoWka) => Err(DiscoveryError::NoDns64 {
            resolver,
            why: "AAAA records without the well-known addresses 192.0.0.170/171".into(),
        }),
        Err(ExtractError::Inconsistent(detail)) => {
            Err(DiscoveryError::Inconsistent { resolver, detail })
        }
        Err(ExtractError::Unusable(detail)) => {
            Err(DiscoveryError::UnusablePrefix { resolver, detail })
        }
    }
}

/// Asks every resolver for `ipv4only.arpa` AAAA and returns every distinct
/// prefix of the first usable answer, in answer order, each with its TTL.
///
/// Errors when nobody gives a usable answer within `timeout`; when several
/// resolvers fail the most telling error is returned (an answer that says
/// "no DNS64" beats a refusal, which beats silence).
pub fn discover_rfc7050(
    resolvers: &[SocketAddr],
    timeout: Duration,
    protector: &dyn SocketProtector,
) -> Result<Vec<DiscoveredPrefix>, DiscoveryError> {
    if resolvers.is_empty() {
        return Err(DiscoveryError::NoResolvers);
    }
    let deadline = Instant::now() + timeout;
    let query = build_query();
    let wire = query.to_vec().map_err(|e| DiscoveryError::Failed {
        resolver: resolvers[0],
        detail: format!("cannot encode the query: {e}"),
    })?;

    let mut errors: Vec<DiscoveryError> = Vec::new();
    // (resolver, socket) for every resolver still expected to answer.
    let mut pending: Vec<(SocketAddr, Socket)> = Vec::new();
    for &r in resolvers {
        match udp_send(r, &wire, protector) {
            Ok(s) => pending.push((r, s)),
            Err(e) => errors.push(failed(r, "cannot send the query", &e)),
        }
    }

    let mut buf = vec![0u8; 4096];
    let mut resend_at = Instant::now() + RESEND_AFTER;
    while !pending.is_empty() {
        let now = Instant::now();
        let left = deadline.saturating_duration_since(now);
        if left.is_zero() {
            break;
        }
        if now >= resend_at {
            // UDP may lose the query or the answer: ask again on the same
            // socket with the same ID, so either answer counts.
            for i in (0..pending.len()).rev() {
                if let Err(e) = pending[i].1.send(&wire) {
                    let (r, _) = pending.remove(i);
                    errors.push(failed(r, "cannot send the query", &e));
                }
            }
            resend_at = now + RESEND_AFTER;
            continue;
        }
        let wait = left.min(resend_at.saturating_duration_since(now));
        let ready = match poll_readable(&pending, wait) {
            Ok(r) => r,
            Err(e) => {
                errors.push(failed(pending[0].0, "poll", &e));
                break;
            }
        };
        // Walk backwards so that removing an entry keeps the indices valid.
        for i in ready.into_iter().rev() {
            let r = pending[i].0;
            let n = match (&pending[i].1).read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => {
                    pending.remove(i);
                    errors.push(failed(r, "no answer", &e));
                    continue;
                }
            };
            let Ok(resp) = Message::from_vec(&buf[..n]) else {
                log::debug!("rfc7050: undecodable datagram from {r}, ignored");
                continue;
            };
            if !answers(&query, &resp) {
                log::debug!("rfc7050: datagram from {r} does not answer our query, ignored");
                continue;
            }
            pending.remove(i);
            let resp = if resp.metadata.truncation {
                log::debug!("rfc7050: {r} truncated its answer, asking over TCP");
                match tcp_query(r, &wire, &query, deadline, protector) {
                    Ok(m) => m,
                    Err(e) => {
                        errors.push(failed(r, "TCP after a truncated answer", &e));
                        continue;
                    }
                }
            } else {
                resp
            };
            match interpret(r, &resp) {
                Ok(p) => return Ok(p),
                Err(e) => {
                    log::debug!("rfc7050: {e}");
                    errors.push(e);
                }
            }
        }
    }
    let silent: Vec<SocketAddr> = pending.iter().map(|(r, _)| *r).collect();
    Err(pick_error(errors, silent, timeout))
}

fn failed(resolver: SocketAddr, what: &str, e: &io::Error) -> DiscoveryError {
    let detail = if e.kind() == io::ErrorKind::ConnectionRefused {
        format!("{what}: connection refused (no DNS server there)")
    } else {
        format!("{what}: {e}")
    };
    DiscoveryError::Failed { resolver, detail }
}

/// The most telling of several failures (see [`discover_rfc7050`]).
fn pick_error(
    mut errors: Vec<DiscoveryError>,
    silent: Vec<SocketAddr>,
    timeout: Duration,
) -> DiscoveryError {
    let rank = |e: &DiscoveryError| match e {
        DiscoveryError::Inconsistent { .. } | DiscoveryError::UnusablePrefix { .. } => 0,
        DiscoveryError::NoDns64 { .. } => 1,
        // Failed; Timeout and NoResolvers are never in `errors`.
        _ => 2,
    };
    errors.sort_by_key(rank);
    match errors.into_iter().next() {
        Some(e) if silent.is_empty() || rank(&e) < 2 => e,
        _ if !silent.is_empty() => DiscoveryError::Timeout {
            resolvers: silent,
            timeout,
        },
        Some(e) => e,
        None => DiscoveryError::NoResolvers,
    }
}

fn udp_send(r: SocketAddr, wire: &[u8], protector: &dyn SocketProtector) -> io::Result<Socket> {
    let s = Socket::new(Domain::for_address(r), Type::DGRAM, Some(Protocol::UDP))?;
    s.set_cloexec(true)?;
    protector.protect(s.as_raw_fd())?;
    s.set_nonblocking(true)?;
    s.connect(&SockAddr::from(r))?;
    s.send(wire)?;
    Ok(s)
}

/// Indices of the sockets that are readable (or have a pending error).
fn poll_readable(socks: &[(SocketAddr, Socket)], left: Duration) -> io::Result<Vec<usize>> {
    let mut fds: Vec<PollFd<'_>> = socks
        .iter()
        .map(|(_, s)| PollFd::new(s, PollFlags::IN))
        .collect();
    // At least a millisecond, so that a sub-millisecond remainder still waits.
    let wait = Timespec::try_from(left.max(Duration::from_millis(1))).unwrap_or(Timespec {
        tv_sec: i64::MAX,
        tv_nsec: 0,
    });
    match rustix::event::poll(&mut fds, Some(&wait)) {
        Ok(_) => {}
        Err(rustix::io::Errno::INTR) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    }
    Ok(fds
        .iter()
        .enumerate()
        .filter(|(_, p)| !p.revents().is_empty())
        .map(|(i, _)| i)
        .collect())
}

/// One query over TCP (2-byte length framing, RFC 1035 section 4.2.2),
/// every step bounded by `deadline`.
fn tcp_query(
    r: SocketAddr,
    wire: &[u8],
    query: &Message,
    deadline: Instant,
    protector: &dyn SocketProtector,
) -> io::Result<Message> {
    let left = || {
        let d = deadline.saturating_duration_since(Instant::now());
        if d.is_zero() {
            Err(io::Error::new(io::ErrorKind::TimedOut, "deadline passed"))
        } else {
            Ok(d)
        }
    };
    let s = Socket::new(Domain::for_address(r), Type::STREAM, Some(Protocol::TCP))?;
    s.set_cloexec(true)?;
    protector.protect(s.as_raw_fd())?;
    s.connect_timeout(&SockAddr::from(r), left()?)?;
    let mut s = std::net::TcpStream::from(s);
    s.set_write_timeout(Some(left()?))?;
    let mut framed = Vec::with_capacity(wire.len() + 2);
    framed.extend_from_slice(&(wire.len() as u16).to_be_bytes());
    framed.extend_from_slice(wire);
    s.write_all(&framed)?;
    s.set_read_timeout(Some(left()?))?;
    let mut len = [0u8; 2];
    s.read_exact(&mut len)?;
    let mut body = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.set_read_timeout(Some(left()?))?;
    s.read_exact(&mut body)?;
    let resp = Message::from_vec(&body)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    if !answers(query, &resp) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "TCP answer does not match the query",
        ));
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::{A, AAAA};
    use hickory_proto::rr::Record;

    fn resp_for(q: &Message, code: ResponseCode, aaaa: &[(&str, u32)]) -> Message {
        let mut m = Message::response(q.metadata.id, q.metadata.op_code);
        m.metadata.response_code = code;
        m.add_queries(q.queries.iter().cloned());
        for (a, ttl) in aaaa {
            m.add_answer(Record::from_rdata(
                Name::from_ascii(IPV4ONLY_ARPA).unwrap(),
                *ttl,
                RData::AAAA(AAAA(a.parse().unwrap())),
            ));
        }
        m
    }
    const R: &str = "[2001:db8:1::53]:53";

    #[test]
    fn query_is_aaaa_for_ipv4only_arpa_with_rd() {
        let q = build_query();
        let back = Message::from_vec(&q.to_vec().unwrap()).unwrap();
        assert_eq!(back.queries.len(), 1);
        assert_eq!(back.queries[0].query_type(), RecordType::AAAA);
        assert_eq!(back.queries[0].name().to_ascii(), "ipv4only.arpa.");
        assert!(back.metadata.recursion_desired);
    }

    #[test]
    fn interpret_answers() {
        let q = build_query();
        let r: SocketAddr = R.parse().unwrap();
        let ok = interpret(
            r,
            &resp_for(
                &q,
                ResponseCode::NoError,
                &[("2001:db8:64::c000:aa", 300), ("2001:db8:64::c000:ab", 300)],
            ),
        )
        .unwrap();
        assert_eq!(ok.len(), 1);
        assert_eq!(ok[0].prefix.to_string(), "2001:db8:64::/96");
        assert_eq!(ok[0].lifetime, Duration::from_secs(300));
        assert_eq!(ok[0].source, PrefixSource::Rfc7050);

        let nx = interpret(r, &resp_for(&q, ResponseCode::NXDomain, &[])).unwrap_err();
        assert!(nx.is_definite());
        assert!(nx.to_string().contains("NXDOMAIN"), "{nx}");
        let nodata = interpret(r, &resp_for(&q, ResponseCode::NoError, &[])).unwrap_err();
        assert!(matches!(nodata, DiscoveryError::NoDns64 { .. }));
        let nowka = interpret(
            r,
            &resp_for(&q, ResponseCode::NoError, &[("2001:db8::1", 5)]),
        )
        .unwrap_err();
        assert!(nowka.to_string().contains("192.0.0.170"), "{nowka}");
        let sf = interpret(r, &resp_for(&q, ResponseCode::ServFail, &[])).unwrap_err();
        assert!(matches!(sf, DiscoveryError::Failed { .. }), "{sf}");
        assert!(!sf.is_definite());
    }

    /// A DNS64 synthesizing under 2001:db8:0:0:ff00::/96 (bits 64-71 set,
    /// which RFC 6052 section 2.2 forbids): the prefix is skipped and the
    /// outcome says which and why; beside a valid prefix, the valid one wins.
    #[test]
    fn a_prefix_with_a_nonzero_u_octet_is_skipped_and_said() {
        let q = build_query();
        let r: SocketAddr = R.parse().unwrap();
        let bad = [
            ("2001:db8:0:0:ff00::c000:aa", 300),
            ("2001:db8:0:0:ff00::c000:ab", 300),
        ];
        let e = interpret(r, &resp_for(&q, ResponseCode::NoError, &bad)).unwrap_err();
        assert!(matches!(e, DiscoveryError::UnusablePrefix { .. }), "{e:?}");
        assert!(e.is_definite());
        let msg = e.to_string();
        assert!(
            msg.contains("skipped 2001:db8:0:0:ff00::/96: bits 64-71 must be zero"),
            "{msg}"
        );
        let mixed = [
            bad[0],
            bad[1],
            ("2001:db8:64::c000:aa", 60),
            ("2001:db8:64::c000:ab", 60),
        ];
        let ok = interpret(r, &resp_for(&q, ResponseCode::NoError, &mixed)).unwrap();
        let got: Vec<String> = ok.iter().map(|p| p.prefix.to_string()).collect();
        assert_eq!(got, ["2001:db8:64::/96"]);
    }

    #[test]
    fn a_records_in_the_answer_are_not_prefixes() {
        let q = build_query();
        let mut m = resp_for(&q, ResponseCode::NoError, &[]);
        m.add_answer(Record::from_rdata(
            Name::from_ascii(IPV4ONLY_ARPA).unwrap(),
            5,
            RData::A(A("192.0.0.170".parse().unwrap())),
        ));
        assert!(interpret(R.parse().unwrap(), &m).is_err());
    }

    #[test]
    fn only_our_answer_counts() {
        let q = build_query();
        let mut other = resp_for(&q, ResponseCode::NoError, &[]);
        assert!(answers(&q, &other));
        other.metadata.id = q.metadata.id.wrapping_add(1);
        assert!(!answers(&q, &other));
        let mut asq = resp_for(&q, ResponseCode::NoError, &[]);
        asq.metadata.message_type = MessageType::Query;
        assert!(!answers(&q, &asq));
    }

    #[test]
    fn error_priority() {
        let r: SocketAddr = R.parse().unwrap();
        let t = Duration::from_secs(1);
        let no = DiscoveryError::NoDns64 {
            resolver: r,
            why: "x".into(),
        };
        let f = DiscoveryError::Failed {
            resolver: r,
            detail: "y".into(),
        };
        assert_eq!(pick_error(vec![f.clone(), no.clone()], vec![r], t), no);
        assert!(matches!(
            pick_error(vec![f.clone()], vec![r], t),
            DiscoveryError::Timeout { .. }
        ));
        assert_eq!(pick_error(vec![f.clone()], vec![], t), f);
        assert!(matches!(
            pick_error(vec![], vec![r], t),
            DiscoveryError::Timeout { .. }
        ));
        // Nothing asked, nothing heard.
        assert_eq!(pick_error(vec![], vec![], t), DiscoveryError::NoResolvers);
    }
}
