//! The crate's one system call, and its one `unsafe` block: a socket
//! option set on a descriptor given as a number (the protector seam takes a
//! `RawFd`, because that is what `VpnService.protect(int)` takes too).
#![allow(unsafe_code)]

use std::io;
use std::os::fd::RawFd;

/// `setsockopt(fd, level, name, val)`. Errors: the kernel's (`EBADF` for a
/// closed descriptor, `EPERM` without `CAP_NET_ADMIN`/`CAP_NET_RAW`).
pub(crate) fn set_opt(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    val: &[u8],
) -> io::Result<()> {
    // SAFETY: `val` is a valid buffer of the given length for the duration
    // of the call; the kernel validates `fd`.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            val.as_ptr().cast(),
            val.len() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
