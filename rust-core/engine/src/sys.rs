//! The few raw libc calls the engine needs: TUN creation and its reads and
//! writes, datagrams with per-datagram IPv6 fields (RFC 3542 ancillary
//! data), the error queue of IPv6 sockets (ICMPv6 errors via
//! IPV6_RECVERR), ping sockets, the urgent mark (SIOCATMARK), the
//! one-byte peek after a splice and a TCP socket's received traffic class
//! (and, for tests only, TCP_INFO's state and SIOCINQ). The crate's one
//! module where `unsafe` is allowed; every block says why it is sound.
#![allow(unsafe_code)]

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

fn cvt(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Opens (or attaches to) the Linux TUN device `name` (IFF_TUN|IFF_NO_PI:
/// raw IP packets, no packet-info header): the descriptor Android's
/// VpnService hands an app, without offloads. An empty name lets the
/// kernel pick one. Returns the fd and the device's actual name.
pub fn open_tun(name: &str) -> io::Result<(OwnedFd, String)> {
    let (fd, n) = tun_set_iff(name, 0)?;
    // Offloads are the device's, not the descriptor's: a persistent TUN
    // that an earlier run opened with them would keep them, and the stack
    // would hand this header-less descriptor partial checksums and 64 KiB
    // TSO segments. Off, as a new device has them; an error only means
    // there were none to clear.
    // SAFETY: no memory is passed (TUNSETOFFLOAD takes the flags by value).
    let _ = unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETOFFLOAD as _, 0 as libc::c_ulong) };
    Ok((fd, n))
}

/// _IOW('T', 208, unsigned int) (include/uapi/linux/if_tun.h).
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;

/// [`open_tun`] with a virtio-net header on every read and write
/// (IFF_VNET_HDR, `struct virtio_net_hdr` of 10 bytes: no `num_buffers`,
/// little-endian by TUNSETVNETLE whatever the host) and the offloads
/// TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 (TUNSETOFFLOAD): the kernel then
/// hands over TCP with a partial checksum and in segments of up to 64 KiB
/// and takes them back the same way ([`crate::tun_io`]). Returns the fd,
/// the device's name and whether the offloads are on: when the kernel
/// refuses IFF_VNET_HDR or one of the ioctls, the device is opened again
/// as [`open_tun`] does (logged once), and `false` tells the caller to
/// start the engine with `tun_vnet_hdr` off. Errors: those of
/// [`open_tun`].
pub fn open_tun_offload(name: &str) -> io::Result<(OwnedFd, String, bool)> {
    let (fd, n) = match tun_set_iff(name, libc::IFF_VNET_HDR as libc::c_short) {
        Ok(r) => r,
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            let (fd, n) = open_tun(name)?;
            log::warn!("the kernel refused IFF_VNET_HDR ({e}); running without TUN offloads");
            return Ok((fd, n, false));
        }
        Err(e) => return Err(e),
    };
    match enable_offloads(&fd) {
        Ok(()) => Ok((fd, n, true)),
        Err((step, e)) => {
            drop(fd);
            let (fd, n) = open_tun(name)?;
            log::warn!("the kernel refused {step} ({e}); running without TUN offloads");
            Ok((fd, n, false))
        }
    }
}

/// TUNSETVNETHDRSZ (10: `struct virtio_net_hdr`), TUNSETVNETLE and
/// TUNSETOFFLOAD on a TUN opened with IFF_VNET_HDR (drivers/net/tun.c,
/// `__tun_chr_ioctl`; the header code is drivers/net/tun_vnet.h since 6.14).
fn enable_offloads(fd: &OwnedFd) -> Result<(), (&'static str, io::Error)> {
    // _IOW('T', 216, int), _IOW('T', 220, int) (include/uapi/linux/if_tun.h).
    const TUNSETVNETHDRSZ: libc::c_ulong = 0x4004_54d8;
    const TUNSETVNETLE: libc::c_ulong = 0x4004_54dc;
    const TUN_F_CSUM: libc::c_uint = 0x01;
    const TUN_F_TSO4: libc::c_uint = 0x02;
    const TUN_F_TSO6: libc::c_uint = 0x04;
    let size = crate::tun_io::VNET_HDR_LEN as libc::c_int;
    // SAFETY: TUNSETVNETHDRSZ reads one int through the pointer, which
    // outlives the call.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETVNETHDRSZ as _, &size) })
        .map_err(|e| ("TUNSETVNETHDRSZ", e))?;
    let le: libc::c_int = 1;
    // SAFETY: TUNSETVNETLE reads one int through the pointer, as above.
    let r = cvt(unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETVNETLE as _, &le) });
    match r {
        Ok(_) => {}
        // A kernel without TUNSETVNETLE (added in Linux 4.1) uses the
        // host's order, which on a little-endian host is the one wanted.
        Err(e) if cfg!(target_endian = "little") && e.raw_os_error() == Some(libc::EINVAL) => {}
        Err(e) => return Err(("TUNSETVNETLE", e)),
    }
    // TUNSETOFFLOAD takes the flags as the argument itself, not a pointer.
    let offloads = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6;
    // SAFETY: no memory is passed; the kernel validates the flags.
    cvt(unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            TUNSETOFFLOAD as _,
            offloads as libc::c_ulong,
        )
    })
    .map_err(|e| ("TUNSETOFFLOAD", e))?;
    Ok(())
}

/// TUNSETIFF on a new `/dev/net/tun` descriptor with IFF_TUN | IFF_NO_PI |
/// `extra`.
fn tun_set_iff(name: &str, extra: libc::c_short) -> io::Result<(OwnedFd, String)> {
    if name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "TUN name too long",
        ));
    }
    // SAFETY: a plain open(2) of a constant NUL-terminated path.
    let fd = cvt(unsafe { libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) })?;
    // SAFETY: fd was just returned by open and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // struct ifreq: 16 bytes of name, then a union whose first member here is
    // `short ifr_flags`; 40 bytes in total on 64-bit Linux.
    let mut ifr = [0u8; 40];
    ifr[..name.len()].copy_from_slice(name.as_bytes());
    let flags = (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short | extra;
    ifr[16..18].copy_from_slice(&flags.to_ne_bytes());
    const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
    // SAFETY: ifr is a properly sized ifreq buffer that outlives the call.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF as _, ifr.as_mut_ptr()) })?;
    let end = ifr[..16].iter().position(|&b| b == 0).unwrap_or(16);
    let actual = String::from_utf8_lossy(&ifr[..end]).into_owned();
    Ok((fd, actual))
}

/// `read(2)` from `fd` into `buf`: one packet of a TUN, or the bytes of a
/// pipe; the length read. Errors: the kernel's (`WouldBlock` when nothing
/// is queued).
pub(crate) fn read_fd(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes for the call,
    // and `fd` is an open descriptor borrowed for it.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// `write(2)` of one packet; the bytes written. Errors: the kernel's.
pub(crate) fn write_fd(fd: &OwnedFd, pkt: &[u8]) -> io::Result<usize> {
    // SAFETY: `pkt` is valid for reads of `pkt.len()` bytes for the call,
    // and `fd` is an open descriptor borrowed for it.
    let n = unsafe { libc::write(fd.as_raw_fd(), pkt.as_ptr().cast(), pkt.len()) };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// `writev(2)` of `head` then `body` as one packet (a TUN's virtio-net
/// header and the packet, without copying them together); the bytes
/// written. Errors: the kernel's.
pub(crate) fn writev2(fd: &OwnedFd, head: &[u8], body: &[u8]) -> io::Result<usize> {
    let iov = [
        libc::iovec {
            iov_base: head.as_ptr() as *mut libc::c_void,
            iov_len: head.len(),
        },
        libc::iovec {
            iov_base: body.as_ptr() as *mut libc::c_void,
            iov_len: body.len(),
        },
    ];
    // SAFETY: both iovecs point to slices valid for reads for the call
    // (writev does not write through them), and `fd` is borrowed for it.
    let n = unsafe { libc::writev(fd.as_raw_fd(), iov.as_ptr(), 2) };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// Whether `fd`'s other end is gone (POLLHUP, POLLRDHUP or POLLERR now),
/// to tell an empty read from the end of a packet descriptor.
pub(crate) fn hung_up(fd: &OwnedFd) -> bool {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN | libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: one valid pollfd that outlives the call; zero timeout.
    let r = unsafe { libc::poll(&mut pfd, 1, 0) };
    r > 0 && pfd.revents & (libc::POLLHUP | libc::POLLRDHUP | libc::POLLERR) != 0
}

pub fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on an fd we hold; the kernel validates it.
    let fl = cvt(unsafe { libc::fcntl(fd, libc::F_GETFL) })?;
    // SAFETY: as above; F_SETFL only changes the status flags.
    cvt(unsafe { libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK) })?;
    Ok(())
}

pub fn setsockopt_int(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    v: libc::c_int,
) -> io::Result<()> {
    // SAFETY: v lives for the call; size matches.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// Where an error on a socket's error queue came from (`ee_origin` of
/// `struct sock_extended_err`, linux/errqueue.h).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrOrigin {
    /// An ICMPv4 message (SO_EE_ORIGIN_ICMP): `typ`, `code`, `info` and
    /// `offender` are the message's.
    Icmp4,
    /// An ICMPv6 message (SO_EE_ORIGIN_ICMP6): likewise.
    Icmp6,
    /// Raised by our own stack (SO_EE_ORIGIN_LOCAL), e.g. EMSGSIZE for a
    /// datagram sent with IPV6_DONTFRAG (or IP_PMTUDISC_DO) that is larger
    /// than the path MTU, which is then in `info` (RFC 3542 section 11.2).
    Local,
    /// Anything else (timestamps, zero-copy notices): ignored.
    Other,
}

/// One error taken from a socket's error queue (IP_RECVERR or
/// IPV6_RECVERR): ICMPv4 or ICMPv6 errors from the path, local errors.
#[derive(Debug, Clone, Copy)]
pub struct IcmpErr {
    pub errno: u32,
    pub origin: ErrOrigin,
    /// ICMP type and code, of the family `origin` says.
    pub typ: u8,
    pub code: u8,
    /// ee_info: the MTU for Packet Too Big and Fragmentation Needed.
    pub info: u32,
    /// The node that sent the ICMP error.
    pub offender: Option<IpAddr>,
    /// The destination of the datagram that caused it (msg_name).
    pub dest: Option<SocketAddr>,
    /// Bytes of the original payload copied into the caller's buffer.
    pub len: usize,
}

/// The socket address in `sa` (the first `len` bytes of it valid), when
/// it is an IPv4 or IPv6 one.
fn from_storage(sa: &libc::sockaddr_storage, len: usize) -> Option<SocketAddr> {
    match sa.ss_family as i32 {
        libc::AF_INET if len >= std::mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a sockaddr_in, and
            // sockaddr_storage is large and aligned enough for it.
            let a = unsafe { &*(sa as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 if len >= std::mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for sockaddr_in6.
            let a = unsafe { &*(sa as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(a.sin6_addr.s6_addr),
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// `a` as a sockaddr_in or sockaddr_in6 in a sockaddr_storage, and the
/// length that family's address has.
fn to_storage(a: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut st: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match a {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough for a
            // sockaddr_in, and all-zero is a valid one.
            let sa = unsafe {
                &mut *(&mut st as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>()
            };
            sa.sin_family = libc::AF_INET as libc::sa_family_t;
            sa.sin_port = a.port().to_be();
            sa.sin_addr.s_addr = u32::from(*a.ip()).to_be();
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            // SAFETY: as above, for sockaddr_in6.
            let sa = unsafe {
                &mut *(&mut st as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            sa.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sa.sin6_port = a.port().to_be();
            sa.sin6_flowinfo = a.flowinfo();
            sa.sin6_addr.s6_addr = a.ip().octets();
            sa.sin6_scope_id = a.scope_id();
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (st, len as libc::socklen_t)
}

/// Reads one entry of the error queue (MSG_ERRQUEUE) of an IPv4 or IPv6
/// socket. `Ok(None)` when the queue is empty.
pub fn recv_err(fd: RawFd, buf: &mut [u8]) -> io::Result<Option<IcmpErr>> {
    // SAFETY: all-zero is a valid value for these C structs.
    let mut name: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut ctrl = [0u64; 64];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: as above.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&mut name as *mut libc::sockaddr_storage).cast();
    msg.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = ctrl.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&ctrl) as _;
    // SAFETY: msg points at live buffers of the declared sizes.
    let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT) };
    if n < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::WouldBlock {
            return Ok(None);
        }
        return Err(e);
    }
    let mut out = IcmpErr {
        errno: 0,
        origin: ErrOrigin::Other,
        typ: 0,
        code: 0,
        info: 0,
        offender: None,
        dest: from_storage(&name, msg.msg_namelen as usize),
        len: n as usize,
    };
    // SAFETY: standard CMSG iteration over the control buffer the kernel
    // filled; the offender follows the sock_extended_err
    // (SO_EE_OFFENDER) as a sockaddr_in or sockaddr_in6, read unaligned
    // into a sockaddr_storage only as far as the record holds bytes.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            let h = &*c;
            if (h.cmsg_level == libc::SOL_IPV6 && h.cmsg_type == libc::IPV6_RECVERR)
                || (h.cmsg_level == libc::SOL_IP && h.cmsg_type == libc::IP_RECVERR)
            {
                let ee =
                    std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::sock_extended_err);
                out.errno = ee.ee_errno;
                out.origin = match ee.ee_origin {
                    libc::SO_EE_ORIGIN_ICMP => ErrOrigin::Icmp4,
                    libc::SO_EE_ORIGIN_ICMP6 => ErrOrigin::Icmp6,
                    libc::SO_EE_ORIGIN_LOCAL => ErrOrigin::Local,
                    _ => ErrOrigin::Other,
                };
                out.typ = ee.ee_type;
                out.code = ee.ee_code;
                out.info = ee.ee_info;
                let ee_len = std::mem::size_of::<libc::sock_extended_err>();
                let data_len = h.cmsg_len as usize - (libc::CMSG_DATA(c) as usize - c as usize);
                let off_len = data_len
                    .saturating_sub(ee_len)
                    .min(std::mem::size_of::<libc::sockaddr_storage>());
                let mut st: libc::sockaddr_storage = std::mem::zeroed();
                std::ptr::copy_nonoverlapping(
                    (libc::CMSG_DATA(c) as *const u8).add(ee_len),
                    (&mut st as *mut libc::sockaddr_storage).cast::<u8>(),
                    off_len,
                );
                out.offender = from_storage(&st, off_len).map(|a| a.ip());
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok(Some(out))
}

/// The IP header fields of one datagram that the engine sets per
/// datagram as ancillary data of `sendmsg`, so that each datagram carries
/// its own IPv4 header's TTL, TOS and DF without a setsockopt per packet:
/// on an IPv6 socket as IPV6_HOPLIMIT, IPV6_TCLASS and IPV6_DONTFRAG (RFC
/// 3542 sections 6.3, 6.5 and 11.2; RFC 7915 section 4.1), on an IPv4
/// socket as IP_TTL and IP_TOS (ip(7)). A field that is `None` is not
/// sent: the socket's own (sticky) value applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendFields {
    /// Hop Limit (IPv6) or TTL (IPv4), from the IPv4 TTL.
    pub hop_limit: Option<u8>,
    /// Traffic Class or TOS byte (DSCP and ECN), from the IPv4 TOS byte.
    pub tclass: Option<u8>,
    /// Do not fragment: a datagram larger than the path MTU fails with
    /// EMSGSIZE (and a local error on the error queue carrying the MTU)
    /// instead of being fragmented. IPv6 only: Linux has no per-datagram
    /// DF for IPv4 (ip(7) lists no such control message; DF is the
    /// socket's IP_MTU_DISCOVER, see [`set_ipv4_dont_frag`]).
    pub dont_frag: bool,
}

/// The IP header fields of one received datagram, from the ancillary
/// data that IPV6_RECVHOPLIMIT and IPV6_RECVTCLASS (RFC 3542 sections
/// 6.3, 6.5) or IP_RECVTTL and IP_RECVTOS (ip(7)) ask for. `None` when
/// the kernel did not say.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecvFields {
    /// Hop limit or TTL.
    pub hop_limit: Option<u8>,
    /// Traffic class or TOS.
    pub tclass: Option<u8>,
}

/// `sendmsg(2)` of one datagram `buf` to `to` on the datagram socket (UDP
/// or ping) `fd` of `to`'s family, with `f` as ancillary data (see
/// [`SendFields`]: IPV6_HOPLIMIT, IPV6_TCLASS, IPV6_DONTFRAG on IPv6;
/// IP_TTL and IP_TOS on IPv4). Returns the bytes sent. Errors: the
/// kernel's (`WouldBlock`, EMSGSIZE for DF over the path MTU, the
/// unreachable errnos).
///
/// Ping sockets read SOL_IPV6 ancillary data only since Linux 5.18
/// (`ping_v6_sendmsg` calls `ip6_datagram_send_ctl` since commit
/// 13651224c00b); older kernels skip it without an error, so their
/// callers set the hop limit and traffic class as socket options instead
/// ([`set_unicast_hops_and_tclass`]).
pub fn send_to(fd: RawFd, buf: &[u8], to: &SocketAddr, f: &SendFields) -> io::Result<usize> {
    let (mut name, name_len) = to_storage(to);
    let mut iov = libc::iovec {
        iov_base: buf.as_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    let mut ctrl = [0u64; SEND_CTRL_WORDS];
    // SAFETY: all-zero is a valid msghdr.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&mut name as *mut libc::sockaddr_storage).cast();
    msg.msg_namelen = name_len;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    fill_send_ctrl(&mut msg, &mut ctrl, to.is_ipv6(), f, None);
    // SAFETY: msg points at live buffers of the declared sizes.
    let n = unsafe { libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// 8-byte words of control buffer one datagram's ancillary data needs:
/// three int items of [`SendFields`] and a u16 UDP_SEGMENT.
const SEND_CTRL_WORDS: usize = 16;

/// Writes `f` (and `gso`, the segment size of a UDP GSO send, as
/// SOL_UDP/UDP_SEGMENT) into `ctrl` as ancillary data and points `msg`
/// at it; no control data when there is nothing to send.
fn fill_send_ctrl(
    msg: &mut libc::msghdr,
    ctrl: &mut [u64; SEND_CTRL_WORDS],
    v6: bool,
    f: &SendFields,
    gso: Option<u16>,
) {
    let int = std::mem::size_of::<libc::c_int>() as u32;
    let (level, ttl, tos) = if v6 {
        (libc::SOL_IPV6, libc::IPV6_HOPLIMIT, libc::IPV6_TCLASS)
    } else {
        (libc::SOL_IP, libc::IP_TTL, libc::IP_TOS)
    };
    // No allocation per datagram: the given fields, packed at the front.
    let mut all = [(0, 0); 3];
    let mut n = 0;
    for item in [
        f.hop_limit.map(|v| (ttl, libc::c_int::from(v))),
        f.tclass.map(|v| (tos, libc::c_int::from(v))),
        v6.then_some((libc::IPV6_DONTFRAG, libc::c_int::from(f.dont_frag))),
    ]
    .into_iter()
    .flatten()
    {
        all[n] = item;
        n += 1;
    }
    let items = &all[..n];
    // SAFETY: CMSG_SPACE is a pure size computation.
    let (space, seg_space) = unsafe { (libc::CMSG_SPACE(int), libc::CMSG_SPACE(2)) };
    let len = space as usize * items.len() + if gso.is_some() { seg_space as usize } else { 0 };
    assert!(len <= SEND_CTRL_WORDS * 8);
    if len == 0 {
        msg.msg_control = std::ptr::null_mut();
        msg.msg_controllen = 0;
        return;
    }
    *ctrl = [0; SEND_CTRL_WORDS];
    msg.msg_control = ctrl.as_mut_ptr().cast();
    msg.msg_controllen = len as _;
    // SAFETY: the control buffer is 8-byte aligned, zeroed and holds
    // `items.len()` headers of CMSG_SPACE(int) bytes each and the
    // CMSG_SPACE(u16) of UDP_SEGMENT (asserted above), so CMSG_FIRSTHDR/
    // CMSG_NXTHDR stay inside it and never return null before the last
    // item. IP_TTL and IP_TOS take an int as sendmsg ancillary data as
    // well (ip_cmsg_send accepts an int for both); UDP_SEGMENT a u16
    // (udp_cmsg_send).
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(msg);
        for &(ty, v) in items {
            (*c).cmsg_level = level;
            (*c).cmsg_type = ty;
            (*c).cmsg_len = libc::CMSG_LEN(int) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(c) as *mut libc::c_int, v);
            c = libc::CMSG_NXTHDR(msg, c);
        }
        if let Some(seg) = gso {
            (*c).cmsg_level = libc::SOL_UDP;
            (*c).cmsg_type = libc::UDP_SEGMENT;
            (*c).cmsg_len = libc::CMSG_LEN(2) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(c) as *mut u16, seg);
        }
    }
}

/// Most messages one [`SendMany::send`] call passes to `sendmmsg`.
pub const SEND_MANY_MAX: usize = 64;

/// One message of [`SendMany::send`]: the payloads `bufs` (one datagram, or
/// with `gso` the back-to-back datagrams of a UDP GSO send, all `gso`
/// bytes long but the last, which may be shorter) to `to` with `fields`.
#[derive(Debug, Clone, Copy)]
pub struct OutMsg<'a> {
    pub bufs: &'a [&'a [u8]],
    pub to: SocketAddr,
    pub fields: SendFields,
    /// The segment size (UDP_SEGMENT, Linux 4.18; udp(7)): the kernel
    /// cuts the payload into datagrams of this size. None: one datagram.
    pub gso: Option<u16>,
}

/// The headers, names, control buffers and iovecs of `sendmmsg` calls,
/// kept between calls (no allocation per call once grown).
#[derive(Default)]
pub struct SendMany {
    hdrs: Vec<libc::mmsghdr>,
    names: Vec<(libc::sockaddr_storage, libc::socklen_t)>,
    ctrls: Vec<[u64; SEND_CTRL_WORDS]>,
    iovs: Vec<libc::iovec>,
}

// SAFETY: the raw pointers in `hdrs` and `iovs` are only used during a
// call, which sets them all afresh; between calls they are never read.
unsafe impl Send for SendMany {}

impl SendMany {
    /// `sendmmsg(2)` of up to [`SEND_MANY_MAX`] messages ([`OutMsg`]) on the
    /// UDP socket `fd`, each with its ancillary data as [`send_to`] sends it,
    /// plus UDP_SEGMENT for a GSO message. Returns how many messages went:
    /// all of them, or `n` < len when message `n` failed; `sendmmsg` then
    /// drops that error (`__sys_sendmmsg`), so the caller learns it only by
    /// calling again from message `n`. Errors: the kernel's for the first
    /// message (EINVAL or EIO for a GSO message the path cannot segment:
    /// larger than the path MTU, or a device without checksum offload;
    /// EMSGSIZE for one datagram over the path MTU with DF).
    pub fn send(&mut self, fd: RawFd, msgs: &[OutMsg<'_>]) -> io::Result<usize> {
        let n = msgs.len().min(SEND_MANY_MAX);
        let Self {
            hdrs,
            names,
            ctrls,
            iovs,
        } = self;
        hdrs.clear();
        // SAFETY: all-zero is a valid value for these C structs.
        hdrs.resize(n, unsafe { std::mem::zeroed() });
        names.clear();
        names.extend(msgs[..n].iter().map(|m| to_storage(&m.to)));
        ctrls.clear();
        ctrls.resize(n, [0u64; SEND_CTRL_WORDS]);
        iovs.clear();
        for m in &msgs[..n] {
            iovs.extend(m.bufs.iter().map(|b| libc::iovec {
                iov_base: b.as_ptr() as *mut libc::c_void,
                iov_len: b.len(),
            }));
        }
        let mut at = 0;
        for (i, m) in msgs[..n].iter().enumerate() {
            let h = &mut hdrs[i].msg_hdr;
            h.msg_name = (&mut names[i].0 as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = names[i].1;
            // SAFETY: `at + bufs.len()` <= iovs.len() (iovs holds every
            // message's buffers in order).
            h.msg_iov = unsafe { iovs.as_mut_ptr().add(at) };
            h.msg_iovlen = m.bufs.len() as _;
            at += m.bufs.len();
            fill_send_ctrl(h, &mut ctrls[i], m.to.is_ipv6(), &m.fields, m.gso);
        }
        // SAFETY: every header points at live names, iovecs and control
        // buffers of the declared sizes, kept until the call returns.
        let r = unsafe {
            libc::sendmmsg(
                fd,
                hdrs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        usize::try_from(r).map_err(|_| io::Error::last_os_error())
    }
}

/// Whether the UDP socket `fd`'s kernel takes UDP_SEGMENT (UDP GSO, Linux
/// 4.18): the option reads back (0) there, and fails with ENOPROTOOPT
/// before, where a UDP_SEGMENT control message would be ignored and the
/// whole buffer sent as one datagram.
pub fn udp_gso_supported(fd: RawFd) -> bool {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: v and len are live and of the declared size.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_UDP,
            libc::UDP_SEGMENT,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    rc == 0
}

/// Sets the hop limit and traffic class that the datagram socket `fd` of
/// family `v6` (IPv6 when true) puts on what it sends when the datagram
/// carries no ancillary data for them: IPV6_UNICAST_HOPS and IPV6_TCLASS
/// (RFC 3542 sections 6.3 and 6.5: the sticky values), or IP_TTL and
/// IP_TOS. For ping sockets, whose `sendmsg` ignores SOL_IPV6 ancillary
/// data before Linux 5.18 (see [`send_to`]), this is the one way that
/// works on every kernel. Errors: the kernel's.
pub fn set_unicast_hops_and_tclass(
    fd: RawFd,
    v6: bool,
    hop_limit: u8,
    tclass: u8,
) -> io::Result<()> {
    let (level, hops, tos) = if v6 {
        (libc::SOL_IPV6, libc::IPV6_UNICAST_HOPS, libc::IPV6_TCLASS)
    } else {
        (libc::SOL_IP, libc::IP_TTL, libc::IP_TOS)
    };
    setsockopt_int(fd, level, hops, i32::from(hop_limit))?;
    setsockopt_int(fd, level, tos, i32::from(tclass))
}

/// Sets whether the IPv4 datagram socket `fd` sends with DF: Linux has no
/// per-datagram DF for IPv4 (ip(7) documents IP_TTL and IP_TOS as
/// ancillary data, and no DF), so it is the socket's IP_MTU_DISCOVER:
/// IP_PMTUDISC_DO (DF set; a datagram over the known path MTU fails with
/// EMSGSIZE and a local error carrying the MTU) or IP_PMTUDISC_DONT (DF
/// clear; the kernel fragments to the outgoing link's MTU). Errors: the
/// kernel's.
pub fn set_ipv4_dont_frag(fd: RawFd, dont_frag: bool) -> io::Result<()> {
    let v = if dont_frag {
        libc::IP_PMTUDISC_DO
    } else {
        libc::IP_PMTUDISC_DONT
    };
    setsockopt_int(fd, libc::SOL_IP, libc::IP_MTU_DISCOVER, v)
}

/// `recvmsg(2)` of one datagram from the IPv4 or IPv6 datagram socket
/// `fd` into `buf`: its length (datagrams longer than `buf` are cut to
/// it), its source and its hop limit / TTL and traffic class / TOS, when
/// the socket asked for them (IPV6_RECVHOPLIMIT and IPV6_RECVTCLASS, or
/// IP_RECVTTL and IP_RECVTOS). Errors: the kernel's (`WouldBlock` when
/// nothing is queued).
pub fn recv_from(fd: RawFd, buf: &mut [u8]) -> io::Result<(usize, Option<SocketAddr>, RecvFields)> {
    // SAFETY: all-zero is a valid value for these C structs.
    let mut name: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut ctrl = [0u64; 16];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: as above.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&mut name as *mut libc::sockaddr_storage).cast();
    msg.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = ctrl.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&ctrl) as _;
    // SAFETY: msg points at live buffers of the declared sizes.
    let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT) };
    let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
    let from = from_storage(&name, msg.msg_namelen as usize);
    let (f, _) = recv_ctrl(&msg);
    Ok((n, from, f))
}

/// The hop limit / traffic class ([`RecvFields`]) and the UDP GRO segment
/// size (SOL_UDP/UDP_GRO, an int: udp_cmsg_recv, Linux 5.0) of the
/// control data the kernel filled in `msg`.
fn recv_ctrl(msg: &libc::msghdr) -> (RecvFields, Option<u16>) {
    let mut f = RecvFields::default();
    let mut gro = None;
    // SAFETY: standard CMSG iteration over the control buffer the kernel
    // filled. Each IPv6 value is one int (RFC 3542 section 6), IP_TTL an
    // int, and IP_TOS one byte (ip_cmsg_recv_tos puts a u8); UDP_GRO an
    // int.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(msg);
        while !c.is_null() {
            let h = &*c;
            let data = libc::CMSG_DATA(c);
            let int = || std::ptr::read_unaligned(data as *const libc::c_int);
            match (h.cmsg_level, h.cmsg_type) {
                (libc::SOL_IPV6, libc::IPV6_HOPLIMIT) | (libc::SOL_IP, libc::IP_TTL) => {
                    f.hop_limit = u8::try_from(int()).ok()
                }
                (libc::SOL_IPV6, libc::IPV6_TCLASS) => f.tclass = u8::try_from(int()).ok(),
                (libc::SOL_IP, libc::IP_TOS) => f.tclass = Some(*data),
                (libc::SOL_UDP, libc::UDP_GRO) => gro = u16::try_from(int()).ok(),
                _ => {}
            }
            c = libc::CMSG_NXTHDR(msg, c);
        }
    }
    (f, gro.filter(|&g| g > 0))
}

/// Room in front of each [`RecvMany`] slot's payload: the app's IPv6 and
/// UDP headers (48 bytes), written there in place.
pub const RECV_HEAD: usize = 48;
/// Payload bytes of one [`RecvMany`] slot: any UDP datagram (at most
/// 65,527 bytes, IPv6) and any GRO batch (skb_gro_receive keeps one
/// packet under 64 KiB, headers included) fit whole.
pub const RECV_SLOT: usize = 65536;

/// What [`RecvMany::recv`] learnt of one received message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Received {
    /// Payload bytes in the slot (after [`RECV_HEAD`]).
    pub len: usize,
    pub from: Option<SocketAddr>,
    pub fields: RecvFields,
    /// With UDP GRO: the size of each coalesced datagram (the last may be
    /// shorter); None: one datagram.
    pub gro: Option<u16>,
    /// MSG_TRUNC: the message did not fit its slot.
    pub truncated: bool,
}

/// Receive buffers for `recvmmsg(2)`: a number of slots of [`RECV_HEAD`]
/// plus [`RECV_SLOT`] bytes each, allocated once (zeroed memory the
/// kernel maps on first touch, so small datagrams cost a page per slot),
/// and the call's headers, kept between calls.
pub struct RecvMany {
    buf: Vec<u8>,
    got: Vec<Received>,
    names: Vec<libc::sockaddr_storage>,
    ctrls: Vec<[u64; 16]>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

// SAFETY: the raw pointers in `iovs` and `hdrs` point only into this
// value's own heap buffers, are set afresh before each `recvmmsg` and are
// read by nothing else: the value may move to another thread.
unsafe impl Send for RecvMany {}

impl RecvMany {
    /// `slots` messages per call.
    pub fn new(slots: usize) -> RecvMany {
        RecvMany {
            buf: vec![0u8; slots * (RECV_HEAD + RECV_SLOT)],
            got: vec![Received::default(); slots],
            // SAFETY: all-zero is a valid value for these C structs.
            names: vec![unsafe { std::mem::zeroed() }; slots],
            ctrls: vec![[0u64; 16]; slots],
            iovs: Vec::with_capacity(slots),
            // SAFETY: as above.
            hdrs: vec![unsafe { std::mem::zeroed() }; slots],
        }
    }

    /// `recvmmsg(2)` (MSG_DONTWAIT) of up to one message per slot from the
    /// IPv4 or IPv6 datagram socket `fd`, each with its source, hop
    /// fields and GRO segment size ([`Received`]). Returns how many
    /// arrived (fewer than the slots: the queue is empty now). Errors: the
    /// kernel's (`WouldBlock` when nothing is queued, a pending socket
    /// error).
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        let slots = self.got.len();
        let base = self.buf.as_mut_ptr();
        self.iovs.clear();
        self.iovs.extend((0..slots).map(|i| libc::iovec {
            // SAFETY: inside `buf`, which holds `slots` slots.
            iov_base: unsafe { base.add(i * (RECV_HEAD + RECV_SLOT) + RECV_HEAD) }.cast(),
            iov_len: RECV_SLOT,
        }));
        let (names, ctrls, iovs) = (&mut self.names, &mut self.ctrls, &mut self.iovs);
        for (i, h) in self.hdrs.iter_mut().enumerate() {
            // The kernel wrote the lengths and flags of the last call.
            h.msg_len = 0;
            let m = &mut h.msg_hdr;
            m.msg_name = (&mut names[i] as *mut libc::sockaddr_storage).cast();
            m.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            m.msg_iov = &mut iovs[i];
            m.msg_iovlen = 1;
            m.msg_control = ctrls[i].as_mut_ptr().cast();
            m.msg_controllen = std::mem::size_of_val(&ctrls[i]) as _;
            m.msg_flags = 0;
        }
        let hdrs = &mut self.hdrs;
        // SAFETY: every header points at live buffers of the declared
        // sizes, kept until the call returns.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                hdrs.as_mut_ptr(),
                slots as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
        for (i, h) in hdrs[..n].iter().enumerate() {
            let m = &h.msg_hdr;
            let (fields, gro) = recv_ctrl(m);
            self.got[i] = Received {
                len: (h.msg_len as usize).min(RECV_SLOT),
                from: from_storage(&self.names[i], m.msg_namelen as usize),
                fields,
                gro,
                truncated: m.msg_flags & libc::MSG_TRUNC != 0,
            };
        }
        Ok(n)
    }

    /// What message `i` of the last [`RecvMany::recv`] brought.
    pub fn got(&self, i: usize) -> Received {
        self.got[i]
    }

    /// Slot `i`: [`RECV_HEAD`] bytes of room, then the payload.
    pub fn slot_mut(&mut self, i: usize) -> &mut [u8] {
        let at = i * (RECV_HEAD + RECV_SLOT);
        &mut self.buf[at..at + RECV_HEAD + RECV_SLOT]
    }
}

/// Turns UDP GRO on for the UDP socket `fd` (SOL_UDP/UDP_GRO, Linux 5.0;
/// udp(7)): datagrams of one sender that arrive back to back with equal
/// sizes and IP headers come up in one read, with their size in a
/// UDP_GRO control message ([`Received::gro`]). Errors: the kernel's
/// (ENOPROTOOPT before 5.0).
pub fn enable_udp_gro(fd: RawFd) -> io::Result<()> {
    setsockopt_int(fd, libc::SOL_UDP, libc::UDP_GRO, 1)
}

/// Whether the stream socket `fd` has a byte to read (an urgent byte kept
/// inline included); false at the peer's FIN with nothing before it and
/// when nothing is queued. A one-byte `recv(MSG_PEEK)` rather than SIOCINQ
/// (FIONREAD): Android's SELinux policy lets apps use only the ioctls of
/// its unpriv_sock_ioctls list on TCP sockets (system/sepolicy
/// private/app.te), and a refused ioctl costs an audit record each time;
/// recv() needs no such permission. Errors: the kernel's.
pub fn has_unread(fd: RawFd) -> io::Result<bool> {
    let mut byte = 0u8;
    // SAFETY: `byte` is writable for the 1 byte asked for.
    let n = unsafe {
        libc::recv(
            fd,
            (&mut byte as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    match n {
        0 => Ok(false),
        n if n > 0 => Ok(true),
        _ => match io::Error::last_os_error() {
            e if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            e => Err(e),
        },
    }
}

/// A pipe for [`splice`]: (read end, write end, capacity in bytes), both
/// ends non-blocking and close-on-exec, its capacity raised towards
/// `size` bytes where the kernel allows (F_SETPIPE_SZ, which rounds up to
/// a power of two pages; an unprivileged process may go up to
/// /proc/sys/fs/pipe-max-size, 1 MiB by default, and the user's pipe
/// budget, /proc/sys/fs/pipe-user-pages-soft, may refuse more: then half,
/// down to the default of 16 pages). Errors: pipe2's (EMFILE, ENFILE).
pub fn pipe(size: usize) -> io::Result<(OwnedFd, OwnedFd, usize)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) })?;
    // SAFETY: both were just returned by pipe2 and are owned by nobody else.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let mut size = libc::c_int::try_from(size).unwrap_or(libc::c_int::MAX);
    let mut got = 16 * 4096;
    while size > 64 * 1024 {
        // SAFETY: fcntl on a descriptor we hold; F_SETPIPE_SZ takes an int
        // and returns the capacity it set.
        let rc = unsafe { libc::fcntl(w.as_raw_fd(), libc::F_SETPIPE_SZ, size) };
        if rc >= 0 {
            got = rc as usize;
            break;
        }
        size /= 2;
    }
    Ok((r, w, got))
}

/// `splice(2)` of at most `len` bytes from `from` to `to`, one of which
/// is a pipe, without waiting (SPLICE_F_NONBLOCK, SPLICE_F_MOVE): the
/// bytes moved, 0 at the end of a stream socket's data (the peer's FIN).
/// From a TCP socket the kernel moves references to the received pages
/// into the pipe (data received into a linear buffer is copied once,
/// into a page); into a TCP socket it attaches the pipe's pages to the
/// segments it sends. Errors: the kernel's; `WouldBlock` when the source
/// has nothing, the pipe is full, the socket's send buffer is full, or a
/// TCP source's next byte is the urgent mark (`tcp_read_sock` stops there
/// and never moves the urgent byte: read it with recv()).
pub fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    let flags = libc::SPLICE_F_NONBLOCK | libc::SPLICE_F_MOVE;
    // SAFETY: null offsets (both descriptors are used at their current
    // position, as a socket and a pipe must be); no memory is passed.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            flags,
        )
    };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// The signal set holding SIGPIPE alone.
fn sigpipe_set() -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the set before sigaddset reads it;
    // both only fail for an invalid signal number, and SIGPIPE is valid.
    unsafe {
        let mut set = std::mem::zeroed::<libc::sigset_t>();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGPIPE);
        set
    }
}

/// Blocks SIGPIPE in the calling thread only (pthread_sigmask): a SIGPIPE
/// the kernel raises for this thread's own send (`sk_stream_error`, which
/// sends it to the current thread, `send_sig`, thread-directed) then stays
/// pending on this thread instead of being delivered, whatever the
/// process's disposition; [`take_pending_sigpipe`] discards it. The rest of
/// the process, other threads and their dispositions are untouched.
/// Errors: pthread_sigmask's.
pub fn block_sigpipe() -> io::Result<()> {
    let set = sigpipe_set();
    // SAFETY: `set` is initialised; the old mask is not asked for.
    match unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) } {
        0 => Ok(()),
        e => Err(io::Error::from_raw_os_error(e)),
    }
}

/// Takes a pending SIGPIPE of the calling thread, if there is one, without
/// waiting (sigtimedwait with a zero timeout): whether one was taken. For
/// a thread that blocked SIGPIPE ([`block_sigpipe`]), after a call that
/// failed with EPIPE, so that nothing is left to be delivered if the mask
/// ever changes.
pub fn take_pending_sigpipe() -> bool {
    let set = sigpipe_set();
    let zero = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `set` and `zero` are initialised; no siginfo is asked for.
    unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &zero) == libc::SIGPIPE }
}

/// Whether a SIGPIPE is pending for the calling thread (sigpending), for
/// tests.
#[cfg(test)]
pub fn sigpipe_pending() -> io::Result<bool> {
    // SAFETY: sigpending fills the zeroed set; sigismember reads it.
    unsafe {
        let mut set = std::mem::zeroed::<libc::sigset_t>();
        cvt(libc::sigpending(&mut set))?;
        Ok(libc::sigismember(&set, libc::SIGPIPE) == 1)
    }
}

/// Gives SIGPIPE its default disposition (terminate) in this process, as
/// a process that is not a Rust main binary may have it; for a test's
/// child process, never in a test binary's shared process.
#[cfg(test)]
pub fn default_sigpipe_disposition() {
    // SAFETY: plain signal(2) with SIG_DFL.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
}

/// `tcpi_state` of a closed socket (TCP_CLOSE in include/net/tcp_states.h).
#[cfg(test)]
pub const TCP_CLOSE: u8 = 7;

/// The TCP state of socket `fd` (`tcpi_state`, the first byte of
/// TCP_INFO: [`TCP_CLOSE`] and so on), for tests.
#[cfg(test)]
pub fn tcp_state(fd: RawFd) -> io::Result<u8> {
    let mut info = [0u8; 256];
    let mut len = info.len() as libc::socklen_t;
    // SAFETY: `info` is writable for `len` bytes.
    cvt(unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    })?;
    Ok(info[0])
}

/// Bytes received on the TCP socket `fd` and not yet read (SIOCINQ), for
/// tests that wait for data to be queued.
#[cfg(test)]
pub fn unread_bytes(fd: RawFd) -> io::Result<usize> {
    let mut unread: libc::c_int = 0;
    // SAFETY: SIOCINQ (= FIONREAD) writes one int.
    cvt(unsafe { libc::ioctl(fd, libc::FIONREAD, &mut unread) })?;
    Ok(unread.max(0) as usize)
}

/// Bytes written to the TCP socket `fd` and not yet acknowledged by its
/// peer (SIOCOUTQ = TIOCOUTQ), for tests that account for every byte a
/// sender wrote.
#[cfg(test)]
pub fn unacked_bytes(fd: RawFd) -> io::Result<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: SIOCOUTQ (= TIOCOUTQ) writes one int.
    cvt(unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut n) })?;
    Ok(n.max(0) as usize)
}

/// SIOCATMARK from include/uapi/asm-generic/sockios.h: the value on every
/// architecture Android and the lab run on (arm, arm64, x86, x86_64,
/// riscv64); the libc crate does not define it for Linux.
pub(crate) const SIOCATMARK: libc::c_ulong = 0x8905;

/// Whether the next byte to read from the TCP socket `fd` is the urgent
/// byte (sockatmark(3)). Linux answers from two fields without taking the
/// socket lock (`tcp_ioctl`: `urg_data && urg_seq == copied_seq`), and its
/// `tcp_recvmsg` stops a read just before that byte, so a reader that asks
/// before each read finds the byte's place exactly. Errors: the kernel's
/// (`ENOTTY` for a descriptor that is not a socket); `EACCES` or `EPERM`
/// where a security policy refuses the ioctl, as Android's SELinux policy
/// does for apps (system/sepolicy: `allowxperm appdomain self:tcp_socket
/// ioctl { unpriv_sock_ioctls unpriv_tty_ioctls }`, which lack
/// SIOCATMARK). After such a refusal the calling thread does not ask
/// again (each refusal is an audit record) and gets `Unsupported`.
// The thread-local's initializer is const already; clippy 1.95 still flags
// it when checking the Android targets.
#[allow(clippy::missing_const_for_thread_local)]
pub fn at_urgent_mark(fd: RawFd) -> io::Result<bool> {
    // Per thread, so that a test can stand in for the policy on its own
    // thread.
    thread_local! {
        static REFUSED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    if REFUSED.get() {
        return Err(io::ErrorKind::Unsupported.into());
    }
    let mut at: libc::c_int = 0;
    // SAFETY: SIOCATMARK writes one int into `at`, which outlives the call.
    match cvt(unsafe { libc::ioctl(fd, SIOCATMARK as _, &mut at) }) {
        Ok(_) => Ok(at != 0),
        Err(e) => {
            if matches!(e.raw_os_error(), Some(libc::EACCES | libc::EPERM)) {
                REFUSED.set(true);
            }
            Err(e)
        }
    }
}

/// The Traffic Class of the last in-order segment the IPv6 TCP socket
/// `fd` received, from `getsockopt(IPV6_2292PKTOPTIONS)`; `None` when the
/// kernel gave no IPV6_TCLASS message. Needs IPV6_RECVTCLASS set before
/// the segment arrived: Linux latches `rcv_flowinfo` in `tcp_v6_do_rcv`
/// only for segments received while an rxopt bit is set, and reports it
/// here (net/ipv6/ipv6_sockglue.c, `do_ipv6_getsockopt`). Errors: the
/// kernel's (`ENOPROTOOPT` for a socket that is not TCP over IPv6).
pub fn received_tclass(fd: RawFd) -> io::Result<Option<u8>> {
    let mut ctrl = [0u64; 16];
    let mut len = std::mem::size_of_val(&ctrl) as libc::socklen_t;
    // SAFETY: `ctrl` is writable for `len` bytes; the kernel writes at most
    // `len` bytes of cmsg records and updates `len`.
    cvt(unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_IPV6,
            libc::IPV6_2292PKTOPTIONS,
            ctrl.as_mut_ptr().cast(),
            &mut len,
        )
    })?;
    // SAFETY: all-zero is a valid msghdr; only its control fields are set,
    // to walk the records the kernel wrote with the CMSG_* macros.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_control = ctrl.as_mut_ptr().cast();
    msg.msg_controllen = len as _;
    let mut found = None;
    // SAFETY: standard CMSG iteration over the `len` bytes the kernel filled.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            let h = &*c;
            let data_len = h.cmsg_len as usize - (libc::CMSG_DATA(c) as usize - c as usize);
            if h.cmsg_level == libc::IPPROTO_IPV6
                && h.cmsg_type == libc::IPV6_TCLASS
                && data_len >= std::mem::size_of::<libc::c_int>()
            {
                let v = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::c_int);
                found = u8::try_from(v).ok();
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok(found)
}

/// Reads the urgent byte of a socket without SO_OOBINLINE
/// (`recv(MSG_OOB)`), as an app would: for tests that look at what the
/// relay delivered. Errors: the kernel's (`EINVAL` when there is none,
/// `EAGAIN` when it is announced but has not arrived).
#[cfg(test)]
pub fn recv_urgent(fd: RawFd) -> io::Result<u8> {
    let mut b = 0u8;
    // SAFETY: one writable byte that outlives the call.
    let n = unsafe {
        libc::recv(
            fd,
            (&mut b as *mut u8).cast(),
            1,
            libc::MSG_OOB | libc::MSG_DONTWAIT,
        )
    };
    match n {
        1 => Ok(b),
        0 => Err(io::ErrorKind::UnexpectedEof.into()),
        _ => Err(io::Error::last_os_error()),
    }
}

/// Makes the kernel refuse the ioctl `cmd` with `errno` for the calling
/// thread from now on (a seccomp filter, which applies to this thread
/// only): how tests meet what Android's SELinux policy does to apps, which
/// may not use SIOCATMARK on TCP sockets (`unpriv_sock_ioctls` in
/// system/sepolicy's ioctl_macros does not list it).
#[cfg(test)]
pub fn refuse_ioctl_in_this_thread(cmd: libc::c_ulong, errno: i32) {
    const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    let op = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    let mut prog = [
        op(LD_W_ABS, 0, 0, 0), // seccomp_data.nr
        op(JEQ_K, 0, 3, libc::SYS_ioctl as u32),
        op(LD_W_ABS, 0, 0, 24), // low half of seccomp_data.args[1]
        op(JEQ_K, 0, 1, cmd as u32),
        op(RET_K, 0, 0, libc::SECCOMP_RET_ERRNO | errno as u32),
        op(RET_K, 0, 0, libc::SECCOMP_RET_ALLOW),
    ];
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_mut_ptr(),
    };
    // SAFETY: plain prctl calls; `fprog` and the program it points at
    // outlive them (the kernel copies the program).
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        let mode = libc::SECCOMP_MODE_FILTER as libc::c_ulong;
        assert_eq!(libc::prctl(libc::PR_SET_SECCOMP, mode, &fprog), 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    /// Through the kernel's loopback: what `send_to6` asks for is what the
    /// IPv6 header carries, as the receiver's ancillary data reports it;
    /// DONTFRAG turns a datagram over loopback's 65536-byte MTU into
    /// EMSGSIZE and a local error carrying that MTU, without it the kernel
    /// fragments.
    #[test]
    fn per_datagram_hop_limit_tclass_and_dontfrag() {
        let Ok(rx) = UdpSocket::bind("[::1]:0") else {
            panic!("IPv6 loopback is needed for this test");
        };
        let tx = UdpSocket::bind("[::1]:0").unwrap();
        for o in [libc::IPV6_RECVHOPLIMIT, libc::IPV6_RECVTCLASS] {
            setsockopt_int(rx.as_raw_fd(), libc::SOL_IPV6, o, 1).unwrap();
        }
        setsockopt_int(tx.as_raw_fd(), libc::SOL_IPV6, libc::IPV6_RECVERR, 1).unwrap();
        let to = rx.local_addr().unwrap();
        rx.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let mut buf = vec![0u8; 70000];
        for (hop_limit, tclass) in [(1u8, 0xbau8), (64, 0), (255, 0x29)] {
            let f = SendFields {
                hop_limit: Some(hop_limit),
                tclass: Some(tclass),
                dont_frag: true,
            };
            assert_eq!(send_to(tx.as_raw_fd(), b"abc", &to, &f).unwrap(), 3);
            // recv_from is non-blocking: wait for readability first.
            let mut pfd = libc::pollfd {
                fd: rx.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd for the call.
            assert_eq!(unsafe { libc::poll(&mut pfd, 1, 5000) }, 1);
            let (n, from, got) = recv_from(rx.as_raw_fd(), &mut buf).unwrap();
            assert_eq!((n, &buf[..3]), (3, &b"abc"[..]));
            assert_eq!(from, Some(tx.local_addr().unwrap()));
            assert_eq!(
                got,
                RecvFields {
                    hop_limit: Some(hop_limit),
                    tclass: Some(tclass)
                }
            );
        }
        let big = vec![7u8; 65507];
        let mut f = SendFields {
            hop_limit: Some(64),
            tclass: Some(0),
            dont_frag: true,
        };
        let e = send_to(tx.as_raw_fd(), &big, &to, &f).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EMSGSIZE));
        let err = recv_err(tx.as_raw_fd(), &mut buf[..64]).unwrap().unwrap();
        assert_eq!(err.origin, ErrOrigin::Local);
        assert_eq!((err.errno, err.info), (libc::EMSGSIZE as u32, 65536));
        f.dont_frag = false;
        assert_eq!(send_to(tx.as_raw_fd(), &big, &to, &f).unwrap(), big.len());
        let mut pfd = libc::pollfd {
            fd: rx.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the call.
        assert_eq!(unsafe { libc::poll(&mut pfd, 1, 5000) }, 1);
        let (n, _, _) = recv_from(rx.as_raw_fd(), &mut buf).unwrap();
        assert_eq!(n, big.len());
    }

    /// Without ancillary hop limit and traffic class, a datagram carries
    /// the socket's sticky values (the path ping sockets take, whatever
    /// the kernel), and each later change of them shows on the next one.
    #[test]
    fn sticky_hop_limit_and_tclass_apply_without_ancillary_data() {
        let rx = UdpSocket::bind("[::1]:0").expect("IPv6 loopback is needed for this test");
        let tx = UdpSocket::bind("[::1]:0").unwrap();
        for o in [libc::IPV6_RECVHOPLIMIT, libc::IPV6_RECVTCLASS] {
            setsockopt_int(rx.as_raw_fd(), libc::SOL_IPV6, o, 1).unwrap();
        }
        let to = rx.local_addr().unwrap();
        let f = SendFields {
            hop_limit: None,
            tclass: None,
            dont_frag: false,
        };
        let mut buf = [0u8; 16];
        for (hop_limit, tclass) in [(1u8, 0xb8u8), (3, 0x29), (200, 0)] {
            set_unicast_hops_and_tclass(tx.as_raw_fd(), true, hop_limit, tclass).unwrap();
            assert_eq!(send_to(tx.as_raw_fd(), b"abc", &to, &f).unwrap(), 3);
            let mut pfd = libc::pollfd {
                fd: rx.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd for the call.
            assert_eq!(unsafe { libc::poll(&mut pfd, 1, 5000) }, 1);
            let (n, _, got) = recv_from(rx.as_raw_fd(), &mut buf).unwrap();
            assert_eq!(n, 3);
            assert_eq!(
                got,
                RecvFields {
                    hop_limit: Some(hop_limit),
                    tclass: Some(tclass)
                }
            );
        }
    }

    fn wait_readable(fd: RawFd) {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the call.
        assert_eq!(unsafe { libc::poll(&mut pfd, 1, 5000) }, 1);
    }

    /// The same calls on IPv4 sockets: IP_TTL and IP_TOS as ancillary data
    /// arrive as the receiver's IP_TTL and IP_TOS (the latter one byte),
    /// and the source is the sender's sockaddr_in.
    #[test]
    fn per_datagram_ttl_and_tos_over_ipv4() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        for o in [libc::IP_RECVTTL, libc::IP_RECVTOS] {
            setsockopt_int(rx.as_raw_fd(), libc::SOL_IP, o, 1).unwrap();
        }
        let to = rx.local_addr().unwrap();
        let mut buf = [0u8; 16];
        for (ttl, tos) in [(1u8, 0xb8u8), (64, 0), (255, 0x29)] {
            let f = SendFields {
                hop_limit: Some(ttl),
                tclass: Some(tos),
                dont_frag: true,
            };
            assert_eq!(send_to(tx.as_raw_fd(), b"abc", &to, &f).unwrap(), 3);
            wait_readable(rx.as_raw_fd());
            let (n, from, got) = recv_from(rx.as_raw_fd(), &mut buf).unwrap();
            assert_eq!((n, &buf[..3]), (3, &b"abc"[..]));
            assert_eq!(from, Some(tx.local_addr().unwrap()));
            assert_eq!(
                got,
                RecvFields {
                    hop_limit: Some(ttl),
                    tclass: Some(tos)
                }
            );
        }
        // Sticky values apply without ancillary data.
        set_unicast_hops_and_tclass(tx.as_raw_fd(), false, 7, 0x10).unwrap();
        let none = SendFields {
            hop_limit: None,
            tclass: None,
            dont_frag: false,
        };
        send_to(tx.as_raw_fd(), b"x", &to, &none).unwrap();
        wait_readable(rx.as_raw_fd());
        let (_, _, got) = recv_from(rx.as_raw_fd(), &mut buf).unwrap();
        assert_eq!(
            got,
            RecvFields {
                hop_limit: Some(7),
                tclass: Some(0x10)
            }
        );
    }

    /// DF on IPv4 is the socket's IP_MTU_DISCOVER, as the kernel reports.
    #[test]
    fn ipv4_dont_frag_is_the_pmtu_discovery_mode() {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        let get = || {
            let mut v: libc::c_int = -1;
            let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
            // SAFETY: `v` is writable for `len` bytes.
            let rc = unsafe {
                libc::getsockopt(
                    s.as_raw_fd(),
                    libc::SOL_IP,
                    libc::IP_MTU_DISCOVER,
                    (&mut v as *mut libc::c_int).cast(),
                    &mut len,
                )
            };
            assert_eq!(rc, 0);
            v
        };
        set_ipv4_dont_frag(s.as_raw_fd(), true).unwrap();
        assert_eq!(get(), libc::IP_PMTUDISC_DO);
        set_ipv4_dont_frag(s.as_raw_fd(), false).unwrap();
        assert_eq!(get(), libc::IP_PMTUDISC_DONT);
    }

    /// An ICMPv4 error from the path reaches the IPv4 error queue with its
    /// type, code, offender and the datagram's destination: a datagram to a
    /// closed port of 127.0.0.1 is answered with Port Unreachable (3/3)
    /// from 127.0.0.1.
    #[test]
    fn icmpv4_error_from_the_error_queue() {
        let closed = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = closed.local_addr().unwrap();
        drop(closed);
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        setsockopt_int(tx.as_raw_fd(), libc::SOL_IP, libc::IP_RECVERR, 1).unwrap();
        let f = SendFields {
            hop_limit: Some(64),
            tclass: None,
            dont_frag: false,
        };
        send_to(tx.as_raw_fd(), b"hello", &to, &f).unwrap();
        let mut buf = [0u8; 64];
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let err = loop {
            if let Some(e) = recv_err(tx.as_raw_fd(), &mut buf).unwrap() {
                break e;
            }
            assert!(std::time::Instant::now() < deadline, "no error queued");
            std::thread::sleep(std::time::Duration::from_millis(5));
        };
        assert_eq!(err.origin, ErrOrigin::Icmp4);
        assert_eq!((err.typ, err.code), (3, 3));
        assert_eq!(err.errno, libc::ECONNREFUSED as u32);
        assert_eq!(err.offender, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        assert_eq!(err.dest, Some(to));
        assert_eq!(&buf[..err.len], b"hello", "the UDP payload as sent");
    }
}
