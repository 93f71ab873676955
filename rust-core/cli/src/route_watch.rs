//! Following the host's IPv4 default routes for `clat run --auto`, from
//! route netlink (rtnetlink(7)): a thread blocks on a socket subscribed to
//! `RTMGRP_IPV4_ROUTE` and raises a signal for the main thread at each
//! change, which then reads the default routes with an `RTM_GETROUTE` dump.
//! Nothing wakes up while the routes stay as they are.
//!
//! Wire layout after the 16-byte `nlmsghdr` (include/uapi/linux/rtnetlink.h):
//! ```text
//! struct rtmsg { u8 family, dst_len, src_len, tos, table, protocol, scope, type; u32 flags; }
//! then rtattrs { u16 len; u16 type; value, padded to 4 }
//! ```

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, OwnedFd};

const NLMSG_HDRLEN: usize = 16;
const RTMSG_LEN: usize = 12;

/// One IPv4 default route of the main table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultRoute {
    /// Outgoing interface index; `None` for a multipath route.
    pub oif: Option<u32>,
    pub gateway: Option<Ipv4Addr>,
    pub metric: u32,
}

impl DefaultRoute {
    /// `via 192.0.2.1 dev eth0 metric 100`, as `ip route` says it.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        if let Some(g) = self.gateway {
            s.push_str(&format!("via {g} "));
        }
        match self.oif {
            Some(i) => s.push_str(&format!("dev {}", if_name(i))),
            None => s.push_str("multipath"),
        }
        if self.metric != 0 {
            s.push_str(&format!(" metric {}", self.metric));
        }
        s
    }
}

fn if_name(index: u32) -> String {
    crate::sys::if_indextoname(index).unwrap_or_else(|| format!("#{index}"))
}

fn netlink_socket(groups: u32) -> io::Result<OwnedFd> {
    clat_discovery::netlink::route_socket(groups, false)
}

fn recv(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match crate::sys::read_fd(fd.as_fd(), buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

/// The IPv4 default routes of the main table, read from the kernel now.
pub fn default_routes() -> io::Result<Vec<DefaultRoute>> {
    let fd = netlink_socket(0)?;
    let mut req = [0u8; NLMSG_HDRLEN + RTMSG_LEN];
    req[0..4].copy_from_slice(&((NLMSG_HDRLEN + RTMSG_LEN) as u32).to_ne_bytes());
    req[4..6].copy_from_slice(&libc::RTM_GETROUTE.to_ne_bytes());
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16;
    req[6..8].copy_from_slice(&flags.to_ne_bytes());
    req[8..12].copy_from_slice(&1u32.to_ne_bytes());
    req[NLMSG_HDRLEN] = libc::AF_INET as u8;
    crate::sys::write_fd(fd.as_fd(), &req)?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut out = Vec::new();
    loop {
        let n = recv(&fd, &mut buf)?;
        if n == 0 {
            return Ok(out);
        }
        let (routes, end) = parse_dump(&buf[..n])
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("route dump: {e}")))?;
        out.extend(routes);
        if end {
            return Ok(out);
        }
    }
}

/// The main-table IPv4 default unicast routes in a buffer of netlink
/// messages, and whether the dump ended in it (`NLMSG_DONE`).
///
/// Errors: an `NLMSG_ERROR` from the kernel (its errno).
pub fn parse_dump(mut buf: &[u8]) -> Result<(Vec<DefaultRoute>, bool), io::Error> {
    let mut out = Vec::new();
    while buf.len() >= NLMSG_HDRLEN {
        let len = u32::from_ne_bytes(buf[0..4].try_into().unwrap()) as usize;
        let ty = u16::from_ne_bytes([buf[4], buf[5]]);
        if len < NLMSG_HDRLEN || len > buf.len() {
            break;
        }
        let body = &buf[NLMSG_HDRLEN..len];
        match ty as libc::c_int {
            libc::NLMSG_DONE => return Ok((out, true)),
            libc::NLMSG_ERROR => {
                let errno = body
                    .get(0..4)
                    .map(|b| i32::from_ne_bytes(b.try_into().unwrap()))
                    .unwrap_or(0);
                if errno != 0 {
                    return Err(io::Error::from_raw_os_error(-errno));
                }
            }
            _ if ty == libc::RTM_NEWROUTE => {
                if let Some(r) = parse_route(body) {
                    out.push(r);
                }
            }
            _ => {}
        }
        buf = &buf[((len + 3) & !3).min(buf.len())..];
    }
    Ok((out, false))
}

fn parse_route(b: &[u8]) -> Option<DefaultRoute> {
    if b.len() < RTMSG_LEN {
        return None;
    }
    let (family, dst_len, mut table, rtype) = (b[0], b[1], b[4] as u32, b[7]);
    if family != libc::AF_INET as u8 || dst_len != 0 || rtype != libc::RTN_UNICAST {
        return None;
    }
    let mut r = DefaultRoute {
        oif: None,
        gateway: None,
        metric: 0,
    };
    let mut a = &b[RTMSG_LEN..];
    while a.len() >= 4 {
        let alen = u16::from_ne_bytes([a[0], a[1]]) as usize;
        let aty = u16::from_ne_bytes([a[2], a[3]]);
        if alen < 4 || alen > a.len() {
            break;
        }
        let v = &a[4..alen];
        let u32v = || {
            v.get(0..4)
                .map(|x| u32::from_ne_bytes(x.try_into().unwrap()))
        };
        match aty {
            libc::RTA_OIF => r.oif = u32v(),
            libc::RTA_GATEWAY => {
                r.gateway = v.get(0..4).map(|x| Ipv4Addr::new(x[0], x[1], x[2], x[3]))
            }
            libc::RTA_PRIORITY => r.metric = u32v().unwrap_or(0),
            libc::RTA_TABLE => table = u32v().unwrap_or(table),
            _ => {}
        }
        a = &a[((alen + 3) & !3).min(a.len())..];
    }
    (table == libc::RT_TABLE_MAIN as u32).then_some(r)
}

/// The first default route that is not through `own_ifindex` (the CLAT's
/// TUN): native IPv4.
pub fn native_default(routes: &[DefaultRoute], own_ifindex: u32) -> Option<&DefaultRoute> {
    routes.iter().find(|r| r.oif != Some(own_ifindex))
}

/// The first default route through `uplink`: native IPv4 that sockets
/// bound to that interface (SO_BINDTODEVICE) can use. A default route
/// through another interface does not count: a bound socket cannot follow
/// it (Linux then tries the destination as on-link on the bound
/// interface). A multipath route (no single `oif`) does not count either.
pub fn native_default_via(routes: &[DefaultRoute], uplink: u32) -> Option<&DefaultRoute> {
    routes.iter().find(|r| r.oif == Some(uplink))
}

/// Starts a thread that raises `signal` in this process at every IPv4
/// route change (and once at start, so the first state is read after the
/// subscription: no change can fall between the two).
pub fn spawn(signal: libc::c_int) -> io::Result<()> {
    let fd = netlink_socket(libc::RTMGRP_IPV4_ROUTE as u32)?;
    std::thread::Builder::new()
        .name("clat-route-watch".into())
        .spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                // Blocked in every thread: taken by the main thread's wait.
                crate::sys::raise_to_self(signal);
                match recv(&fd, &mut buf) {
                    Ok(_) => {}
                    // ENOBUFS: events were lost; re-reading the routes
                    // (the next signal) recovers.
                    Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {}
                    Err(e) => {
                        log::error!(
                            "route netlink: {e}; IPv4 route changes are no longer followed"
                        );
                        return;
                    }
                }
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An `RTM_NEWROUTE` message built by hand from rtnetlink.h's layout.
    fn route_msg(dst_len: u8, table: u8, rtype: u8, attrs: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut body = vec![
            libc::AF_INET as u8,
            dst_len,
            0,
            0,
            table,
            3,
            0,
            rtype,
            0,
            0,
            0,
            0,
        ];
        for (t, v) in attrs {
            body.extend_from_slice(&((4 + v.len()) as u16).to_ne_bytes());
            body.extend_from_slice(&t.to_ne_bytes());
            body.extend_from_slice(v);
            while body.len() % 4 != 0 {
                body.push(0);
            }
        }
        let mut m = Vec::new();
        m.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&24u16.to_ne_bytes()); // RTM_NEWROUTE
        m.extend_from_slice(&2u16.to_ne_bytes()); // NLM_F_MULTI
        m.extend_from_slice(&[0; 8]);
        m.extend_from_slice(&body);
        m
    }

    fn done() -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&20u32.to_ne_bytes());
        m.extend_from_slice(&3u16.to_ne_bytes()); // NLMSG_DONE
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(&[0; 4]);
        m
    }

    #[test]
    fn dump_yields_main_table_default_routes() {
        let mut buf = Vec::new();
        // default via 192.0.2.1 dev 2 metric 100 (main)
        buf.extend(route_msg(
            0,
            254,
            1,
            &[
                (5, vec![192, 0, 2, 1]),
                (4, 2u32.to_ne_bytes().to_vec()),
                (6, 100u32.to_ne_bytes().to_vec()),
            ],
        ));
        // default dev 7 (the TUN)
        buf.extend(route_msg(0, 254, 1, &[(4, 7u32.to_ne_bytes().to_vec())]));
        // 198.51.100.0/24 dev 2: not a default route
        buf.extend(route_msg(
            24,
            254,
            1,
            &[(1, vec![198, 51, 100, 0]), (4, 2u32.to_ne_bytes().to_vec())],
        ));
        // unreachable default: not a way out
        buf.extend(route_msg(0, 254, 7, &[]));
        // default in table 100 (policy routing), given as RTA_TABLE
        buf.extend(route_msg(
            0,
            252,
            1,
            &[
                (15, 100u32.to_ne_bytes().to_vec()),
                (4, 3u32.to_ne_bytes().to_vec()),
            ],
        ));
        buf.extend(done());
        let (routes, end) = parse_dump(&buf).unwrap();
        assert!(end);
        assert_eq!(
            routes,
            vec![
                DefaultRoute {
                    oif: Some(2),
                    gateway: Some(Ipv4Addr::new(192, 0, 2, 1)),
                    metric: 100
                },
                DefaultRoute {
                    oif: Some(7),
                    gateway: None,
                    metric: 0
                },
            ]
        );
        assert_eq!(native_default(&routes, 7), Some(&routes[0]));
        assert_eq!(native_default(&routes[1..], 7), None);
        assert_eq!(native_default(&[], 7), None);
        // Through one uplink only: the route via ifindex 2 for uplink 2,
        // none for uplink 3; a multipath route never.
        assert_eq!(native_default_via(&routes, 2), Some(&routes[0]));
        assert_eq!(native_default_via(&routes, 3), None);
        let multipath = DefaultRoute {
            oif: None,
            gateway: None,
            metric: 0,
        };
        assert_eq!(native_default_via(&[multipath], 2), None);
    }

    #[test]
    fn truncated_and_error_messages() {
        let m = route_msg(0, 254, 1, &[(4, 2u32.to_ne_bytes().to_vec())]);
        // Cut anywhere: never a panic, never a made-up route.
        for cut in 0..m.len() {
            let (r, end) = parse_dump(&m[..cut]).unwrap();
            assert!(!end);
            assert!(r.is_empty(), "route from {cut} bytes: {r:?}");
        }
        let mut err = Vec::new();
        err.extend_from_slice(&36u32.to_ne_bytes());
        err.extend_from_slice(&2u16.to_ne_bytes()); // NLMSG_ERROR
        err.extend_from_slice(&[0; 10]);
        err.extend_from_slice(&(-libc::EPERM).to_ne_bytes());
        err.extend_from_slice(&[0; 16]);
        assert_eq!(
            parse_dump(&err).unwrap_err().raw_os_error(),
            Some(libc::EPERM)
        );
    }
}
