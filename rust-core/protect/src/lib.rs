//! The `SocketProtector` seam.
//!
//! Every socket the CLAT opens towards the real network (the IPv6 legs of
//! relayed flows, DNS upstream queries, RFC 7050 discovery) must bypass the
//! VPN's own TUN, or it would loop back into the CLAT. On Android this is
//! `VpnService.protect(fd)` (called back through JNI); on Linux it is
//! nothing (the TUN only routes IPv4, the upstream legs are IPv6), or a
//! firewall mark / device binding for policy routing setups.
//!
//! Invariant: `protect` is called on a fresh socket *before* `connect` or
//! the first `sendto`, from whichever thread created it.
//!
//! `unsafe` is denied here except in [`sys`], the one `setsockopt` call on
//! a descriptor number that the caller hands in.

#![deny(unsafe_code)]

mod sys;

use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;

/// Makes a socket escape the VPN. Implementations must be cheap and
/// thread-safe: the engine calls this once per upstream socket.
pub trait SocketProtector: Send + Sync {
    /// Protect `fd`. An error fails the flow that needed the socket (the app
    /// sees a reset or an ICMP error), never the engine.
    fn protect(&self, fd: RawFd) -> io::Result<()>;
}

/// Shared handle to a protector, as held by the engine and discovery.
pub type Protector = Arc<dyn SocketProtector>;

/// Does nothing: right on Linux where the TUN carries IPv4 only and the
/// upstream sockets are IPv6.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProtect;

impl SocketProtector for NoProtect {
    fn protect(&self, _fd: RawFd) -> io::Result<()> {
        Ok(())
    }
}

/// Sets `SO_MARK` so that policy routing sends the socket's traffic around
/// the TUN (needs `CAP_NET_ADMIN`).
#[derive(Debug, Clone, Copy)]
pub struct MarkProtect(pub u32);

impl SocketProtector for MarkProtect {
    fn protect(&self, fd: RawFd) -> io::Result<()> {
        sys::set_opt(fd, libc::SOL_SOCKET, libc::SO_MARK, &self.0.to_ne_bytes())
    }
}

/// Binds the socket to one network device with `SO_BINDTODEVICE`.
#[derive(Debug, Clone)]
pub struct BindDeviceProtect(pub String);

impl SocketProtector for BindDeviceProtect {
    fn protect(&self, fd: RawFd) -> io::Result<()> {
        if self.0.is_empty() || self.0.len() >= libc::IFNAMSIZ {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad interface name {:?}", self.0),
            ));
        }
        sys::set_opt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_BINDTODEVICE,
            self.0.as_bytes(),
        )
    }
}

/// Any closure can protect: handy for tests and for the JNI bridge.
impl<F> SocketProtector for F
where
    F: Fn(RawFd) -> io::Result<()> + Send + Sync,
{
    fn protect(&self, fd: RawFd) -> io::Result<()> {
        self(fd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn closure_protector_is_called_with_the_fd() {
        let seen = Arc::new(AtomicUsize::new(0));
        let s = seen.clone();
        let p: Protector = Arc::new(move |fd: RawFd| {
            s.store(fd as usize, Ordering::SeqCst);
            Ok(())
        });
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        p.protect(sock.as_raw_fd()).unwrap();
        assert_eq!(seen.load(Ordering::SeqCst), sock.as_raw_fd() as usize);
    }

    #[test]
    fn bind_device_rejects_bad_names() {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let err = BindDeviceProtect(String::new())
            .protect(sock.as_raw_fd())
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        let long = "x".repeat(40);
        assert!(BindDeviceProtect(long).protect(sock.as_raw_fd()).is_err());
    }

    #[test]
    fn mark_on_a_bad_fd_is_an_error() {
        assert!(MarkProtect(7).protect(-1).is_err());
    }

    #[test]
    fn bind_to_loopback_works_as_root_or_fails_cleanly() {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        // Root may bind; others get EPERM. Either way no panic, and a real
        // error code when it fails.
        if let Err(e) = BindDeviceProtect("lo".into()).protect(sock.as_raw_fd()) {
            assert!(e.raw_os_error().is_some());
        }
    }
}
