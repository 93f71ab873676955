//! Is the path from the TUN to the engine's listener open?
//!
//! The engine rewrites an app's SYN so that it arrives on the TUN as a new
//! connection from the internal NAT address (`nat_v4`, .5 of the /29) to a
//! listener on the CLAT address (`clat_v4`, .4). On Linux it goes through
//! the host's INPUT hook, where a host firewall with a drop policy (UFW,
//! firewalld, a hand-written nftables or iptables ruleset) sees a new
//! incoming connection on an interface it does not know and drops it: every
//! TCP flow then times out while ping and DNS work (issue 14).
//!
//! [`probe`] makes exactly such a connection before the engine starts: it
//! writes a SYN from `nat_v4` to a listener of its own on `clat_v4` into the
//! TUN, answers the SYN-ACK the kernel writes back, and accepts the
//! connection; then it resets it. The firewall judges it the way it judges
//! the engine's rewritten SYNs (same interface, addresses and conntrack
//! state `new`), so the answer does not depend on guessing the ruleset.
//!
//! With `--carry-ipv6` the engine does the same for IPv6 (from `nat_v6` to
//! a listener on `clat_v6`, through the host's IPv6 INPUT hook, which
//! ip6tables and `ip6`/`inet` nftables tables filter): the probe takes
//! either family.

use etherparse::{IpHeaders, PacketBuilder, PacketBuilderStep, SlicedPacket, TransportSlice};
use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

/// What became of the probe connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// The handshake completed and the listener accepted the connection.
    Open,
    /// No answer within the wait: something on INPUT dropped the SYN.
    Dropped,
    /// Refused on the way: a TCP reset or an ICMP error came back (a
    /// firewall rule with `reject`). The text says which.
    Rejected(String),
}

/// Connects from `peer` through the TUN `tun` (a TUN without packet
/// information, up, with `clat` in a subnet that holds `peer`; both of one
/// family; with a virtio-net header before each packet when `vnet_hdr`,
/// as [`clat_engine::open_tun_offload`] opens it) to a fresh listener on
/// `clat`, waiting up to `wait` for the answer.
///
/// Nothing else may read the TUN meanwhile (call it before the engine
/// starts). Packets that are not the probe's answer are read and dropped,
/// which is harmless before the IPv4 route points at the TUN.
///
/// Errors: the listener cannot be bound or the TUN cannot be written or
/// read (an I/O error, not a firewall verdict); `InvalidInput` when the two
/// addresses are of different families.
pub fn probe(
    (tun, vnet_hdr): (BorrowedFd<'_>, bool),
    clat: IpAddr,
    peer: IpAddr,
    wait: Duration,
) -> io::Result<ProbeOutcome> {
    // The IP header of each probe packet: from `peer` to `clat`, hop limit 64.
    type Step = PacketBuilderStep<IpHeaders>;
    let to_clat: Box<dyn Fn() -> Step> = match (peer, clat) {
        (IpAddr::V4(p), IpAddr::V4(c)) => {
            Box::new(move || PacketBuilder::ipv4(p.octets(), c.octets(), 64))
        }
        (IpAddr::V6(p), IpAddr::V6(c)) => {
            Box::new(move || PacketBuilder::ipv6(p.octets(), c.octets(), 64))
        }
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("probe from {peer} to {clat}: two families"),
            ))
        }
    };
    let listener = TcpListener::bind(SocketAddr::new(clat, 0))?;
    listener.set_nonblocking(true)?;
    let lport = listener.local_addr()?.port();
    let tun = Tun {
        fd: tun,
        hdr: if vnet_hdr {
            clat_engine::VNET_HDR_LEN
        } else {
            0
        },
    };
    let pid = std::process::id();
    // A port in the dynamic range, different per process.
    let sport = 49152 + (pid % 16384) as u16;
    let isn = pid.wrapping_mul(2_654_435_761);
    let syn = to_clat().tcp(sport, lport, isn, 64240).syn();
    write_packet(tun, syn)?;
    let deadline = Instant::now() + wait;
    let mut buf = vec![0u8; 65536];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(ProbeOutcome::Dropped);
        }
        let Some(n) = read_packet(tun, &mut buf, left)? else {
            return Ok(ProbeOutcome::Dropped);
        };
        // Whatever its virtio-net header says (a partial checksum, say):
        // only addresses, ports and flags are read.
        let p = buf.get(tun.hdr..n).unwrap_or_default();
        match classify(p, clat, peer, lport, sport) {
            Answer::Other => continue,
            Answer::Refused(why) => return Ok(ProbeOutcome::Rejected(why)),
            Answer::SynAck(their_seq) => {
                let ack = to_clat()
                    .tcp(sport, lport, isn.wrapping_add(1), 64240)
                    .ack(their_seq.wrapping_add(1));
                write_packet(tun, ack)?;
                let accepted = accept_until(&listener, deadline);
                // Leave nothing behind in the listener's queue or conntrack
                // as established: a reset ends the connection at once.
                let rst = to_clat().tcp(sport, lport, isn.wrapping_add(1), 0).rst();
                write_packet(tun, rst)?;
                return Ok(if accepted {
                    ProbeOutcome::Open
                } else {
                    // The SYN passed but the ACK did not: a ruleset that
                    // drops established packets on this interface.
                    ProbeOutcome::Dropped
                });
            }
        }
    }
}

enum Answer {
    SynAck(u32),
    Refused(String),
    Other,
}

/// Is this packet from the TUN the answer to the probe?
fn classify(p: &[u8], clat: IpAddr, peer: IpAddr, lport: u16, sport: u16) -> Answer {
    let Ok(sp) = SlicedPacket::from_ip(p) else {
        return Answer::Other;
    };
    let (src, dst) = match &sp.net {
        Some(etherparse::NetSlice::Ipv4(ip)) => (
            IpAddr::V4(ip.header().source_addr()),
            IpAddr::V4(ip.header().destination_addr()),
        ),
        Some(etherparse::NetSlice::Ipv6(ip)) => (
            IpAddr::V6(ip.header().source_addr()),
            IpAddr::V6(ip.header().destination_addr()),
        ),
        _ => return Answer::Other,
    };
    if dst != peer {
        return Answer::Other;
    }
    match &sp.transport {
        Some(TransportSlice::Tcp(t))
            if src == clat && t.source_port() == lport && t.destination_port() == sport =>
        {
            if t.rst() {
                Answer::Refused("a TCP reset".into())
            } else if t.syn() && t.ack() {
                Answer::SynAck(t.sequence_number())
            } else {
                Answer::Other
            }
        }
        // An ICMP error about our SYN (`reject with icmp ...`): type 3,
        // destination unreachable, whatever the embedded packet says.
        Some(TransportSlice::Icmpv4(i)) if i.type_u8() == 3 => Answer::Refused(format!(
            "ICMP destination unreachable (code {})",
            i.code_u8()
        )),
        // ICMPv6 type 1, likewise (`reject with icmpv6 ...`).
        Some(TransportSlice::Icmpv6(i)) if i.type_u8() == 1 => Answer::Refused(format!(
            "ICMPv6 destination unreachable (code {})",
            i.code_u8()
        )),
        _ => Answer::Other,
    }
}

fn accept_until(l: &TcpListener, deadline: Instant) -> bool {
    loop {
        match l.accept() {
            Ok(_) => return true,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(_) => return false,
        }
    }
}

/// The TUN the probe uses: its descriptor and the bytes of virtio-net
/// header before each packet (0 or 10).
#[derive(Clone, Copy)]
struct Tun<'a> {
    fd: BorrowedFd<'a>,
    hdr: usize,
}

/// Writes one packet, after a zero virtio-net header (complete checksum,
/// no GSO) on a TUN that has one.
fn write_packet(tun: Tun<'_>, b: PacketBuilderStep<etherparse::TcpHeader>) -> io::Result<()> {
    let mut out = vec![0u8; tun.hdr];
    b.write(&mut out, &[])
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    crate::sys::write_fd(tun.fd, &out)?;
    Ok(())
}

/// One packet from the TUN (its length with the header), or `None` when
/// nothing came within `wait`.
fn read_packet(tun: Tun<'_>, buf: &mut [u8], wait: Duration) -> io::Result<Option<usize>> {
    let tun = tun.fd;
    let wait = wait.max(Duration::from_millis(1));
    match crate::sys::poll_readable(tun, Some(wait)) {
        Ok(false) => return Ok(None),
        Ok(true) => {}
        Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(Some(0)),
        Err(e) => return Err(e),
    }
    match crate::sys::read_fd(tun, buf) {
        Ok(n) => Ok(Some(n)),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Some(0)),
        Err(e) => Err(e),
    }
}
