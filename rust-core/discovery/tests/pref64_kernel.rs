//! PREF64 the way Linux delivers it: a real Router Advertisement (RFC 4861
//! section 4.2) carrying a PREF64 option (RFC 8781 section 4) is sent over a
//! veth pair in a private network namespace; the kernel parses it and hands
//! the option to user space as RTM_NEWNDUSEROPT, where `NdUserOptListener`
//! and `PrefixMonitor` must find it. Needs root (a network namespace and a
//! raw ICMPv6 socket); without it the test fails, it does not skip.

use clat_discovery::netlink::NdUserOptListener;
use clat_discovery::pref64::encode_pref64;
use clat_discovery::{MonitorConfig, PrefixMonitor, PrefixSource};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::net::{Ipv6Addr, SocketAddrV6};
use std::process::Command;
use std::sync::{mpsc, Arc};
use std::time::Duration;

fn sh(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip(8)");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Moves this thread (and the threads and processes it starts) into a new
/// network namespace with a veth pair `ra0` (receives RAs) - `ra1` (sends
/// them), both up, without duplicate address detection so that the
/// link-local addresses are usable at once. Returns the ifindex of `ra0`.
fn veth_in_private_netns() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(euid, 0, "needs root (netns, raw socket)");
    // SAFETY: unshare has no memory-safety preconditions; it affects this
    // test thread only.
    let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
    assert_eq!(rc, 0);
    for f in ["all", "default"] {
        std::fs::write(format!("/proc/sys/net/ipv6/conf/{f}/accept_dad"), "0").unwrap();
        std::fs::write(format!("/proc/sys/net/ipv6/conf/{f}/forwarding"), "0").unwrap();
    }
    sh(&["link", "add", "ra0", "type", "veth", "peer", "name", "ra1"]);
    std::fs::write("/proc/sys/net/ipv6/conf/ra0/accept_ra", "1").unwrap();
    sh(&["link", "set", "ra0", "up"]);
    sh(&["link", "set", "ra1", "up"]);
    clat_discovery::netlink::if_index("ra0").unwrap()
}

/// An RA from `ra1` to all nodes: hop limit 255 (RFC 4861 section 6.1.2),
/// router lifetime 0 (not a default router), no timers, then `opt`.
fn send_ra(opt: &[u8]) {
    let s = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6)).unwrap();
    s.bind_device(Some(b"ra1")).unwrap();
    s.set_multicast_hops_v6(255).unwrap();
    let ifindex = clat_discovery::netlink::if_index("ra1").unwrap();
    s.set_multicast_if_v6(ifindex).unwrap();
    // Type 134, code 0, checksum (the kernel fills it for raw ICMPv6),
    // cur hop limit 64, flags 0, router lifetime 0, reachable 0, retrans 0.
    let mut ra = vec![134u8, 0, 0, 0, 64, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    ra.extend_from_slice(opt);
    let to = SocketAddrV6::new("ff02::1".parse().unwrap(), 0, 0, ifindex);
    // The link-local address may need a moment after the link came up.
    for _ in 0..50 {
        if s.send_to(&ra, &SockAddr::from(to)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("cannot send the RA: {}", std::io::Error::last_os_error());
}

fn link_local(ifname: &str) -> Ipv6Addr {
    let out = Command::new("ip")
        .args(["-6", "-o", "addr", "show", "dev", ifname, "scope", "link"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let word = text
        .split_whitespace()
        .skip_while(|w| *w != "inet6")
        .nth(1)
        .unwrap_or_else(|| panic!("no link-local address on {ifname}: {text}"));
    word.split('/').next().unwrap().parse().unwrap()
}

#[test]
fn router_advertisement_pref64_reaches_listener_and_monitor() {
    let ifindex = veth_in_private_netns();
    let prefix = "2001:db8:64::/96".parse().unwrap();

    let mut l = NdUserOptListener::open(Some(ifindex)).expect("netlink listener");
    send_ra(&encode_pref64(prefix, Duration::from_secs(600)).unwrap());
    let mut events = Vec::new();
    for _ in 0..20 {
        events.extend(l.recv(Some(Duration::from_millis(250))).unwrap());
        if !events.is_empty() {
            break;
        }
    }
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].ifindex, ifindex);
    assert_eq!(events[0].router, Some(link_local("ra1")));
    assert_eq!(events[0].pref64.prefix, prefix);
    assert_eq!(events[0].pref64.lifetime, Duration::from_secs(600));

    // The monitor on the same interface: selected, then withdrawn by an RA
    // with lifetime 0 (RFC 8781 section 5).
    let mut cfg = MonitorConfig::new(vec![], Arc::new(clat_protect::NoProtect));
    cfg.pref64_interface = Some("ra0".into());
    let (tx, rx) = mpsc::channel();
    let m = PrefixMonitor::start(cfg, Box::new(move |p| tx.send(p).unwrap())).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    send_ra(&encode_pref64(prefix, Duration::from_secs(600)).unwrap());
    let got = rx.recv_timeout(Duration::from_secs(5)).unwrap().unwrap();
    assert_eq!(got.source, PrefixSource::Pref64);
    assert_eq!(got.prefix, prefix);
    assert_eq!(m.current(), Some(got));
    send_ra(&encode_pref64(prefix, Duration::ZERO).unwrap());
    assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), None);
    assert_eq!(m.current(), None);
    m.stop();
}

/// netlink(7): when the listener is too slow the kernel drops messages and
/// the next recv fails with ENOBUFS. That is not fatal (the next RA
/// repeats the option): recv carries on, and the next RA's PREF64 arrives.
#[test]
fn lost_netlink_messages_are_not_fatal() {
    use std::os::fd::AsRawFd;
    let ifindex = veth_in_private_netns();
    let prefix = "2001:db8:64::/96".parse().unwrap();
    let mut l = NdUserOptListener::open(Some(ifindex)).expect("netlink listener");
    let small: libc::c_int = 1;
    // SAFETY: setsockopt with a c_int option value on a valid socket.
    let rc = unsafe {
        libc::setsockopt(
            l.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&small as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
    let opt = encode_pref64(prefix, Duration::from_secs(600)).unwrap();
    for _ in 0..40 {
        send_ra(&opt);
    }
    std::thread::sleep(Duration::from_millis(300));
    // Whatever survived the overflow, the error itself is swallowed.
    l.recv(Some(Duration::from_millis(100)))
        .expect("ENOBUFS is not an error");
    send_ra(&opt);
    let mut events = Vec::new();
    for _ in 0..20 {
        events.extend(l.recv(Some(Duration::from_millis(250))).unwrap());
        if !events.is_empty() {
            break;
        }
    }
    assert!(!events.is_empty(), "the next RA is heard");
    assert_eq!(events[0].pref64.prefix, prefix);
}
