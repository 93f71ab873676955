//! Service notifications to systemd (the `sd_notify(3)` protocol): under
//! `Type=notify`, `clat run` says `READY=1` once its TUN, route and control
//! socket are up, so that units ordered after `clat.service` start when
//! IPv4 works, and `STOPPING=1` when it begins to shut down.
//!
//! The protocol is one datagram of `KEY=VALUE` lines to the Unix socket
//! named by `$NOTIFY_SOCKET` (a path, or `@name` for an abstract socket);
//! a few lines over `UnixDatagram`, not worth a dependency.

use std::ffi::OsStr;
use std::io;
// The workspace is also linted for the Android ABIs (.ci/run).
#[cfg(target_os = "android")]
use std::os::android::net::SocketAddrExt;
#[cfg(target_os = "linux")]
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Sends `state` (e.g. `"READY=1\nSTATUS=..."`) to the service manager.
/// Returns `Ok(false)` when not started by one (`NOTIFY_SOCKET` unset);
/// errors are the socket's.
pub fn notify(state: &str) -> io::Result<bool> {
    match std::env::var_os("NOTIFY_SOCKET") {
        Some(s) if !s.is_empty() => send_to(&s, state).map(|()| true),
        _ => Ok(false),
    }
}

/// Sends `state` to the notification socket `socket` (`/path` or `@name`).
pub fn send_to(socket: &OsStr, state: &str) -> io::Result<()> {
    let b = socket.as_bytes();
    let addr = match b.first() {
        Some(b'/') => SocketAddr::from_pathname(socket)?,
        Some(b'@') => SocketAddr::from_abstract_name(&b[1..])?,
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("NOTIFY_SOCKET {socket:?} is neither a path nor @abstract"),
            ))
        }
    };
    let s = UnixDatagram::unbound()?;
    let n = s.send_to_addr(state.as_bytes(), &addr)?;
    if n != state.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "short notification",
        ));
    }
    Ok(())
}

/// Sends `state` when under a service manager; a failure is logged, never
/// fatal (the service manager would time the unit out and say so).
pub fn tell(state: &str) {
    match notify(state) {
        Ok(true) => log::debug!("sd_notify {state:?}"),
        Ok(false) => {}
        Err(e) => log::warn!("cannot notify the service manager ({state:?}): {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn path_and_abstract_sockets_receive_the_state() {
        let dir = std::env::temp_dir().join(format!("clat-sdn-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify");
        let rx = UnixDatagram::bind(&path).unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        send_to(path.as_os_str(), "READY=1\nSTATUS=up").unwrap();
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=up");
        std::fs::remove_dir_all(&dir).unwrap();

        let name = format!("clat-sdn-test-{}", std::process::id());
        let rx = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(&name).unwrap()).unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        send_to(OsStr::new(&format!("@{name}")), "STOPPING=1").unwrap();
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1");
    }

    #[test]
    fn bad_or_absent_sockets_are_errors() {
        assert!(send_to(OsStr::new("relative/path"), "READY=1").is_err());
        assert!(send_to(OsStr::new(""), "READY=1").is_err());
        let e = send_to(OsStr::new("/nonexistent/clat/notify"), "READY=1").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }
}
