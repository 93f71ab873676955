//! A tiny DNS responder on loopback for the integration tests: UDP and TCP
//! on the same port, with a behaviour that a test can change while it runs.

#![allow(dead_code)]

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::AAAA;
use hickory_proto::rr::{RData, Record};
use std::io::{Read, Write};
use std::net::{Ipv6Addr, SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Debug)]
pub enum Behaviour {
    /// Answer with these AAAA records (address, ttl).
    Answer(Vec<(Ipv6Addr, u32)>),
    /// UDP: an empty answer with TC set; TCP: these records.
    Truncate(Vec<(Ipv6Addr, u32)>),
    /// Read the query and say nothing.
    Silent,
    /// NXDOMAIN.
    NxDomain,
    /// An answer that does not match the query ID, then silence.
    WrongId,
    /// Drop the first UDP query (a lost datagram), answer the next ones.
    DropFirst(Vec<(Ipv6Addr, u32)>),
}

pub struct Responder {
    pub addr: SocketAddr,
    pub behaviour: Arc<Mutex<Behaviour>>,
    pub udp_queries: Arc<AtomicUsize>,
    pub tcp_queries: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Responder {
    /// Starts on `ip` (127.0.0.1 or ::1), random port.
    pub fn start(ip: &str, b: Behaviour) -> Responder {
        // Find a port free for both UDP and TCP.
        let (udp, tcp) = loop {
            let udp = UdpSocket::bind(SocketAddr::new(ip.parse().unwrap(), 0)).unwrap();
            if let Ok(tcp) = TcpListener::bind(udp.local_addr().unwrap()) {
                break (udp, tcp);
            }
        };
        let addr = udp.local_addr().unwrap();
        let behaviour = Arc::new(Mutex::new(b));
        let udp_queries = Arc::new(AtomicUsize::new(0));
        let tcp_queries = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        udp.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        {
            let (b, n, stop) = (behaviour.clone(), udp_queries.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 1500];
                while !stop.load(Ordering::SeqCst) {
                    let Ok((len, peer)) = udp.recv_from(&mut buf) else {
                        continue;
                    };
                    n.fetch_add(1, Ordering::SeqCst);
                    let q = Message::from_vec(&buf[..len]).unwrap();
                    let mut beh = b.lock().unwrap().clone();
                    if let Behaviour::DropFirst(v) = beh {
                        if n.load(Ordering::SeqCst) == 1 {
                            continue;
                        }
                        beh = Behaviour::Answer(v);
                    }
                    if let Some(r) = reply(&q, &beh, false) {
                        udp.send_to(&r, peer).unwrap();
                    }
                }
            });
        }
        tcp.set_nonblocking(true).unwrap();
        {
            let (b, n, stop) = (behaviour.clone(), tcp_queries.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let Ok((mut s, _)) = tcp.accept() else {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    };
                    s.set_nonblocking(false).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                    let mut len = [0u8; 2];
                    if s.read_exact(&mut len).is_err() {
                        continue;
                    }
                    let mut body = vec![0u8; u16::from_be_bytes(len) as usize];
                    if s.read_exact(&mut body).is_err() {
                        continue;
                    }
                    n.fetch_add(1, Ordering::SeqCst);
                    let q = Message::from_vec(&body).unwrap();
                    let beh = b.lock().unwrap().clone();
                    if let Some(r) = reply(&q, &beh, true) {
                        let mut framed = (r.len() as u16).to_be_bytes().to_vec();
                        framed.extend_from_slice(&r);
                        let _ = s.write_all(&framed);
                    }
                }
            });
        }
        Responder {
            addr,
            behaviour,
            udp_queries,
            tcp_queries,
            stop,
        }
    }

    pub fn set(&self, b: Behaviour) {
        *self.behaviour.lock().unwrap() = b;
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn reply(q: &Message, b: &Behaviour, tcp: bool) -> Option<Vec<u8>> {
    let mut m = Message::response(q.metadata.id, q.metadata.op_code);
    m.metadata.recursion_desired = q.metadata.recursion_desired;
    m.add_queries(q.queries.iter().cloned());
    let name = q.queries[0].name().clone();
    let recs = |m: &mut Message, v: &[(Ipv6Addr, u32)]| {
        for (a, ttl) in v {
            m.add_answer(Record::from_rdata(
                name.clone(),
                *ttl,
                RData::AAAA(AAAA(*a)),
            ));
        }
    };
    match b {
        Behaviour::Answer(v) => recs(&mut m, v),
        Behaviour::Truncate(v) if tcp => recs(&mut m, v),
        Behaviour::Truncate(_) => m.metadata.truncation = true,
        Behaviour::Silent => return None,
        Behaviour::NxDomain => m.metadata.response_code = ResponseCode::NXDomain,
        Behaviour::WrongId => m.metadata.id = q.metadata.id.wrapping_add(1),
        Behaviour::DropFirst(v) => recs(&mut m, v),
    }
    Some(m.to_vec().unwrap())
}

/// The two WKA syntheses under `prefix` (RFC 6052), with `ttl`.
pub fn synth(prefix: &str, ttl: u32) -> Vec<(Ipv6Addr, u32)> {
    let p = prefix.parse().unwrap();
    clat_discovery::extract::WKAS
        .iter()
        .map(|w| (clat_discovery::extract::synthesize(p, *w).unwrap(), ttl))
        .collect()
}
