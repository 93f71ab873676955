//! The raw system calls of the `clat` command: signals (blocked in every
//! thread and taken by the main thread with `sigtimedwait`), the effective
//! group id, the descriptor limit, and inotify. The crate's one module
//! where `unsafe` is allowed; every block says why it is sound.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

/// A set of signals (`sigset_t`).
#[derive(Clone, Copy)]
pub struct SigSet(libc::sigset_t);

/// Blocks `signals` in the calling thread and in every thread it starts
/// afterwards (they inherit the mask), so that they stay pending until
/// [`wait_signal`] takes them. Returns the set for [`wait_signal`].
pub fn block_signals(signals: &[libc::c_int]) -> SigSet {
    // SAFETY: an all-zero sigset_t is a valid value to hand to
    // sigemptyset, which initialises it; sigaddset and pthread_sigmask get
    // pointers to that local set, valid for each call, and a null old-set
    // pointer, which pthread_sigmask allows.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &s in signals {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        SigSet(set)
    }
}

/// Waits up to `timeout` (`None`: without limit) for one of `set`'s
/// pending signals and takes it; `None` when the time ran out or the wait
/// was interrupted.
pub fn wait_signal(set: &SigSet, timeout: Option<Duration>) -> Option<libc::c_int> {
    let Some(timeout) = timeout else {
        // SAFETY: `set` was initialised by block_signals and outlives the
        // call; a null siginfo pointer is allowed.
        let sig = unsafe { libc::sigwaitinfo(&set.0, std::ptr::null_mut()) };
        return (sig > 0).then_some(sig);
    };
    let ts = libc::timespec {
        tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
        // Below 10^9, so it fits a 32-bit c_long (armv7) too.
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `set` was initialised by block_signals, `ts` is a valid
    // timespec, both outlive the call; a null siginfo pointer is allowed.
    let sig = unsafe { libc::sigtimedwait(&set.0, std::ptr::null_mut(), &ts) };
    (sig > 0).then_some(sig)
}

/// Sends `signal` to this process; with the signal blocked in every
/// thread it stays pending for the main thread's [`wait_signal`].
pub fn raise_to_self(signal: libc::c_int) {
    // SAFETY: getpid has no preconditions; kill with our own pid and a
    // valid signal number touches no memory.
    unsafe { libc::kill(libc::getpid(), signal) };
}

/// The effective group id (`getegid`).
pub fn egid() -> libc::gid_t {
    // SAFETY: getegid has no preconditions and cannot fail.
    unsafe { libc::getegid() }
}

/// RLIMIT_NOFILE as (soft, hard), or `None` when it cannot be read.
pub fn nofile_limit() -> Option<(libc::rlim_t, libc::rlim_t)> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `r` is a valid rlimit for the kernel to fill in.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } == 0)
        .then_some((r.rlim_cur, r.rlim_max))
}

/// Sets RLIMIT_NOFILE; whether the kernel took it.
pub fn set_nofile_limit(soft: libc::rlim_t, hard: libc::rlim_t) -> bool {
    let r = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: `r` is a valid rlimit that outlives the call.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &r) == 0 }
}

/// A new inotify instance (close-on-exec).
pub fn inotify_init() -> io::Result<OwnedFd> {
    // SAFETY: plain system call with a flag argument.
    let raw = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Adds a watch for `mask` on `path`; the watch descriptor.
pub fn inotify_add_watch(fd: BorrowedFd<'_>, path: &Path, mask: u32) -> io::Result<i32> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))?;
    // SAFETY: `fd` is an open descriptor and `c` a NUL-terminated path,
    // both valid for the call.
    let wd = unsafe { libc::inotify_add_watch(fd.as_raw_fd(), c.as_ptr(), mask) };
    if wd < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(wd)
    }
}

/// Waits up to `timeout` (`None`: forever) for `fd` to be readable; false
/// when the time ran out. Errors: the kernel's, `Interrupted` included.
pub fn poll_readable(fd: BorrowedFd<'_>, timeout: Option<Duration>) -> io::Result<bool> {
    let ms = match timeout {
        None => -1,
        Some(t) => t.as_millis().min(i32::MAX as u128) as libc::c_int,
    };
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd that outlives the call.
    let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc > 0)
    }
}

/// The effective user id (`geteuid`).
pub fn euid() -> libc::uid_t {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Takes an exclusive `flock` on `f` without waiting; false when another
/// open file description holds it (or the call failed).
pub fn try_lock_exclusive(f: &std::fs::File) -> bool {
    // SAFETY: flock on a descriptor that `f` keeps open for the call.
    unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

/// The uid of the process at the other end of `c` (`SO_PEERCRED`, unix(7)).
pub fn peer_uid(c: &std::os::unix::net::UnixStream) -> Option<u32> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are valid for getsockopt to fill in, and
    // `len` holds the size of `cred`.
    let rc = unsafe {
        libc::getsockopt(
            c.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some(cred.uid)
}

/// Interface index of `name` (`if_nametoindex`). Errors: no such interface.
pub fn if_nametoindex(name: &str) -> io::Result<u32> {
    let c = CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in interface name"))?;
    // SAFETY: `c` is a NUL-terminated string valid for the call.
    match unsafe { libc::if_nametoindex(c.as_ptr()) } {
        0 => Err(io::Error::last_os_error()),
        i => Ok(i),
    }
}

/// Name of interface `index` (`if_indextoname`), `None` when there is none.
pub fn if_indextoname(index: u32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: `buf` has IF_NAMESIZE bytes, as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: on success if_indextoname wrote a NUL-terminated name into buf.
    let name = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
    Some(name.to_string_lossy().into_owned())
}

/// `read(2)` on `fd` into `buf`: the bytes read (one datagram or packet on
/// a socket or TUN).
pub fn read_fd(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for writes of its length for the call.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// `write(2)` of `buf` on `fd`: the bytes written.
pub fn write_fd(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for reads of its length for the call.
    let n = unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Binds the socket `fd` to the interface `dev` (`SO_BINDTODEVICE`; needs
/// CAP_NET_RAW). For tests that need a socket bound as an app may bind it.
#[cfg(test)]
pub fn bind_to_device(fd: std::os::fd::BorrowedFd<'_>, dev: &str) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: `dev` is valid for its length during the call.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_BINDTODEVICE,
            dev.as_ptr().cast(),
            dev.len() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
