//! Receiving PREF64 from the Linux kernel.
//!
//! The kernel parses Router Advertisements itself and hands the options it
//! does not use ("user options": RDNSS, DNSSL, captive portal and, since
//! Linux 5.x, PREF64) to user space as `RTM_NEWNDUSEROPT` messages on the
//! `RTNLGRP_ND_USEROPT` multicast group of a route netlink socket. This is
//! what lets us learn PREF64 without a raw ICMPv6 socket (and without
//! root). The kernel only does so for an interface that accepts RAs
//! (`net.ipv6.conf.<if>.accept_ra` = 1, or 2 when forwarding is on).
//!
//! Wire layout after the `nlmsghdr` (include/uapi/linux/rtnetlink.h):
//! ```text
//! struct nduseroptmsg { u8 family; u8 pad1; u16 opts_len; i32 ifindex;
//!                       u8 icmp_type; u8 icmp_code; u16 pad2; u32 pad3; };
//! then opts_len bytes of ND options, then rtattrs (NDUSEROPT_SRCADDR = 1).
//! ```
//!
//! The crate's one module where `unsafe` is allowed: the netlink socket
//! calls and `if_nametoindex`, each block with the reason it is sound.
#![allow(unsafe_code)]

use crate::pref64::{pref64_options, Pref64};
use std::ffi::CString;
use std::io;
use std::net::Ipv6Addr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::Duration;

/// The route-netlink multicast group of ND user options (`enum rtnetlink_groups` in the kernel's
/// `include/uapi/linux/rtnetlink.h`, value 20 since Linux 2.6.24). The `libc` crate defines it
/// for `target_os = "linux"` only, not for Android, whose kernel has the same group: so it is
/// spelled out here once and checked against `libc` where `libc` has it.
const RTNLGRP_ND_USEROPT: libc::c_uint = 20;
#[cfg(target_os = "linux")]
const _: () = assert!(RTNLGRP_ND_USEROPT == libc::RTNLGRP_ND_USEROPT);

const NLMSG_HDRLEN: usize = 16;
const NDUSEROPTMSG_LEN: usize = 16;
const NDUSEROPT_SRCADDR: u16 = 1;
const ICMPV6_ROUTER_ADVERTISEMENT: u8 = 134;

/// One PREF64 option received in an RA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pref64Event {
    pub ifindex: u32,
    /// The router's link-local address, when the kernel says it.
    pub router: Option<Ipv6Addr>,
    pub pref64: Pref64,
}

/// Interface index of `name` (`if_nametoindex`).
pub fn if_index(name: &str) -> io::Result<u32> {
    let c = CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface name has a NUL"))?;
    // SAFETY: `c` is a valid NUL-terminated string.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no interface named {name:?}"),
        ))
    } else {
        Ok(idx)
    }
}

/// A NETLINK_ROUTE socket (close-on-exec), bound to the legacy multicast
/// group bitmask `groups` (0: none; for example `RTMGRP_IPV4_ROUTE`), in
/// non-blocking mode when asked. Also `clat run --auto`'s route watcher.
///
/// Errors: the kernel's, from socket(2) and bind(2).
pub fn route_socket(groups: u32, nonblocking: bool) -> io::Result<OwnedFd> {
    let ty = socket2::Type::RAW.cloexec();
    let ty = if nonblocking { ty.nonblocking() } else { ty };
    let fd: OwnedFd = socket2::Socket::new(
        socket2::Domain::from(libc::AF_NETLINK),
        ty,
        Some(socket2::Protocol::from(libc::NETLINK_ROUTE)),
    )?
    .into();
    // SAFETY: sockaddr_nl is plain data; zeroed is a valid value.
    let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    sa.nl_groups = groups;
    // SAFETY: `sa` is a valid sockaddr_nl of the given size.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sa as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// A route netlink socket subscribed to ND user options.
pub struct NdUserOptListener {
    fd: OwnedFd,
    ifindex: Option<u32>,
    buf: Vec<u8>,
}

impl NdUserOptListener {
    /// Subscribes; with `ifindex` only RAs received on that interface count.
    pub fn open(ifindex: Option<u32>) -> io::Result<Self> {
        let fd = route_socket(0, true)?;
        let group: libc::c_uint = RTNLGRP_ND_USEROPT;
        // SAFETY: `group` is a valid c_uint for NETLINK_ADD_MEMBERSHIP.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_NETLINK,
                libc::NETLINK_ADD_MEMBERSHIP,
                (&group as *const libc::c_uint).cast(),
                std::mem::size_of::<libc::c_uint>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(NdUserOptListener {
            fd,
            ifindex,
            buf: vec![0u8; 64 * 1024],
        })
    }

    /// Waits up to `timeout` (None: forever) for messages and returns the
    /// PREF64 options in them; an empty list means the time ran out or the
    /// RA had no PREF64. Malformed PREF64 options are logged and skipped.
    pub fn recv(&mut self, timeout: Option<Duration>) -> io::Result<Vec<Pref64Event>> {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = match timeout {
            None => -1,
            Some(t) => t.as_millis().min(i32::MAX as u128) as libc::c_int,
        };
        // SAFETY: one valid pollfd.
        let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(Vec::new())
            } else {
                Err(e)
            };
        }
        let mut out = Vec::new();
        loop {
            // SAFETY: `buf` is valid for writes of its length.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    self.buf.as_mut_ptr().cast(),
                    self.buf.len(),
                    0,
                )
            };
            // A negative length is an error (a netlink socket never reads 0).
            let Ok(n) = usize::try_from(n) else {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => break,
                    // ENOBUFS: we were too slow and lost messages; the next
                    // RA repeats them, so carry on.
                    _ if e.raw_os_error() == Some(libc::ENOBUFS) => continue,
                    _ => return Err(e),
                }
            };
            out.extend(parse_messages(&self.buf[..n], self.ifindex));
        }
        Ok(out)
    }
}

impl AsFd for NdUserOptListener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for NdUserOptListener {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

fn u16_ne(b: &[u8]) -> u16 {
    u16::from_ne_bytes([b[0], b[1]])
}
fn u32_ne(b: &[u8]) -> u32 {
    u32::from_ne_bytes([b[0], b[1], b[2], b[3]])
}
fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Parses a buffer of netlink messages (native endianness) into PREF64
/// events, optionally only those received on `ifindex`. Anything short or
/// foreign is skipped, never trusted.
pub fn parse_messages(mut buf: &[u8], ifindex: Option<u32>) -> Vec<Pref64Event> {
    let mut out = Vec::new();
    while buf.len() >= NLMSG_HDRLEN {
        let len = u32_ne(&buf[0..4]) as usize;
        let ty = u16_ne(&buf[4..6]);
        if len < NLMSG_HDRLEN || len > buf.len() {
            break;
        }
        if ty == libc::RTM_NEWNDUSEROPT {
            parse_nduseropt(&buf[NLMSG_HDRLEN..len], ifindex, &mut out);
        }
        buf = &buf[align4(len).min(buf.len())..];
    }
    out
}

fn parse_nduseropt(p: &[u8], want_if: Option<u32>, out: &mut Vec<Pref64Event>) {
    if p.get(..NDUSEROPTMSG_LEN).is_none() {
        return;
    }
    let family = p[0];
    let opts_len = usize::from(u16_ne(&p[2..4]));
    let ifindex = u32_ne(&p[4..8]);
    let icmp_type = p[8];
    if i32::from(family) != libc::AF_INET6
        || icmp_type != ICMPV6_ROUTER_ADVERTISEMENT
        || want_if.is_some_and(|w| w != ifindex)
        || NDUSEROPTMSG_LEN + opts_len > p.len()
    {
        return;
    }
    let opts = &p[NDUSEROPTMSG_LEN..NDUSEROPTMSG_LEN + opts_len];
    let mut router = None;
    let mut attrs = &p[align4(NDUSEROPTMSG_LEN + opts_len).min(p.len())..];
    while attrs.len() >= 4 {
        let alen = usize::from(u16_ne(&attrs[0..2]));
        let aty = u16_ne(&attrs[2..4]);
        if alen < 4 || alen > attrs.len() {
            break;
        }
        if aty == NDUSEROPT_SRCADDR && alen == 4 + 16 {
            let mut o = [0u8; 16];
            o.copy_from_slice(&attrs[4..20]);
            router = Some(Ipv6Addr::from(o));
        }
        attrs = &attrs[align4(alen).min(attrs.len())..];
    }
    for r in pref64_options(opts) {
        match r {
            Ok(pref64) => out.push(Pref64Event {
                ifindex,
                router,
                pref64,
            }),
            Err(e) => log::warn!("ignoring a PREF64 option on interface {ifindex}: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pref64::encode_pref64;

    /// Builds what the kernel sends (ndisc_ra_useropt in net/ipv6/ndisc.c).
    fn kernel_msg(ifindex: u32, opts: &[u8], src: Option<Ipv6Addr>) -> Vec<u8> {
        let mut p = Vec::new();
        p.push(libc::AF_INET6 as u8);
        p.push(0);
        p.extend_from_slice(&(opts.len() as u16).to_ne_bytes());
        p.extend_from_slice(&ifindex.to_ne_bytes());
        p.push(ICMPV6_ROUTER_ADVERTISEMENT);
        p.push(0);
        p.extend_from_slice(&[0; 6]);
        p.extend_from_slice(opts);
        while p.len() % 4 != 0 {
            p.push(0);
        }
        if let Some(s) = src {
            p.extend_from_slice(&20u16.to_ne_bytes());
            p.extend_from_slice(&NDUSEROPT_SRCADDR.to_ne_bytes());
            p.extend_from_slice(&s.octets());
        }
        let mut m = Vec::new();
        m.extend_from_slice(&((NLMSG_HDRLEN + p.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&libc::RTM_NEWNDUSEROPT.to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(&p);
        m
    }

    #[test]
    fn parses_a_kernel_message() {
        let opt = encode_pref64(
            "2001:db8:64::/96".parse().unwrap(),
            Duration::from_secs(600),
        )
        .unwrap();
        let fe80: Ipv6Addr = "fe80::1".parse().unwrap();
        let mut buf = kernel_msg(3, &opt, Some(fe80));
        buf.extend(kernel_msg(4, &opt, None));
        let all = parse_messages(&buf, None);
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].ifindex, 3);
        assert_eq!(all[0].router, Some(fe80));
        assert_eq!(all[0].pref64.lifetime, Duration::from_secs(600));
        assert_eq!(all[1].router, None);
        let only4 = parse_messages(&buf, Some(4));
        assert_eq!(only4.len(), 1);
        assert_eq!(only4[0].ifindex, 4);
    }

    #[test]
    fn truncated_messages_do_not_panic() {
        let opt = encode_pref64(
            "2001:db8:64::/96".parse().unwrap(),
            Duration::from_secs(600),
        )
        .unwrap();
        let buf = kernel_msg(3, &opt, Some("fe80::1".parse().unwrap()));
        for cut in 0..buf.len() {
            let _ = parse_messages(&buf[..cut], None);
        }
        // A length field claiming more than the buffer is ignored.
        let mut bad = buf.clone();
        bad[0..4].copy_from_slice(&1000u32.to_ne_bytes());
        assert!(parse_messages(&bad, None).is_empty());
    }

    #[test]
    fn can_subscribe() {
        // Joining the group needs no privilege; fails only without netlink.
        let mut l = NdUserOptListener::open(None).expect("route netlink socket");
        l.recv(Some(Duration::from_millis(10)))
            .expect("recv on a quiet socket");
    }

    #[test]
    fn unknown_interface_is_an_error() {
        assert!(if_index("no-such-if0").is_err());
        assert!(if_index("lo").unwrap() >= 1);
    }
}
