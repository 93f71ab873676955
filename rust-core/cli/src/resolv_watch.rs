//! Following the network's resolvers: `clat run` without `--dns` takes its
//! upstream resolvers from a resolv.conf, and that file changes when the
//! host moves to another network (NetworkManager, resolvconf, DHCP
//! clients rewrite it). A watcher thread blocks on inotify, so following
//! costs no wake-up while nothing changes, and raises a signal for the
//! main thread, which owns the engine and the prefix monitor.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Events on the file itself: written in place, or replaced.
const FILE_EVENTS: u32 = libc::IN_CLOSE_WRITE
    | libc::IN_MODIFY
    | libc::IN_ATTRIB
    | libc::IN_DELETE_SELF
    | libc::IN_MOVE_SELF;
/// Events in its directory that concern its name: a new file renamed or
/// created over it (the usual way to replace a resolv.conf atomically).
const DIR_EVENTS: u32 =
    libc::IN_CREATE | libc::IN_MOVED_TO | libc::IN_DELETE | libc::IN_CLOSE_WRITE;

/// One inotify instance watching a file by inode and by name in its
/// directory (and, for a symlink, the same for its target).
pub struct FileWatch {
    fd: OwnedFd,
    /// (watch descriptor, file name) of the directory watches.
    dirs: Vec<(i32, OsString)>,
}

impl FileWatch {
    pub fn new(path: &Path) -> io::Result<FileWatch> {
        // SAFETY: plain syscall; the fd is owned below.
        let raw = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: raw is a fresh fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut w = FileWatch {
            fd,
            dirs: Vec::new(),
        };
        let mut paths = vec![path.to_path_buf()];
        if let Ok(target) = std::fs::canonicalize(path) {
            if target != path {
                paths.push(target);
            }
        }
        let mut watched = false;
        for p in &paths {
            // The file may be missing for a moment while it is replaced.
            watched |= w.add(p, FILE_EVENTS).is_ok();
            let (Some(dir), Some(name)) = (p.parent(), p.file_name()) else {
                continue;
            };
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            if let Ok(wd) = w.add(dir, DIR_EVENTS) {
                w.dirs.push((wd, name.to_os_string()));
                watched = true;
            }
        }
        if !watched {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("cannot watch {} or its directory", path.display()),
            ));
        }
        Ok(w)
    }

    fn add(&self, p: &Path, mask: u32) -> io::Result<i32> {
        let c = CString::new(p.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))?;
        // SAFETY: valid fd and NUL-terminated path.
        let wd = unsafe { libc::inotify_add_watch(self.fd.as_raw_fd(), c.as_ptr(), mask) };
        if wd < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(wd)
        }
    }

    /// Waits up to `timeout` (forever with `None`) for an event that
    /// concerns the file; events about other names in its directory are
    /// read and ignored. True when the file may have changed.
    pub fn wait(&self, timeout: Option<Duration>) -> io::Result<bool> {
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        loop {
            let ms = match deadline {
                None => -1,
                Some(d) => {
                    let left = d.saturating_duration_since(std::time::Instant::now());
                    left.as_millis().min(i32::MAX as u128) as libc::c_int
                }
            };
            let mut pfd = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
            if rc < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if rc == 0 {
                return Ok(false);
            }
            if self.read_events()? {
                return Ok(true);
            }
        }
    }

    /// Reads the pending events; true if one concerns the file.
    fn read_events(&self) -> io::Result<bool> {
        // Aligned for struct inotify_event; room for many events.
        let mut buf = [0u64; 512];
        // SAFETY: buf is writable for its size in bytes.
        let n = unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                std::mem::size_of_val(&buf),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: reinterpreting the initialised u64 buffer as bytes.
        let bytes = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), n as usize) };
        let head = std::mem::size_of::<libc::inotify_event>();
        let mut hit = false;
        let mut off = 0;
        while off + head <= bytes.len() {
            // SAFETY: at least `head` bytes remain; read_unaligned copes
            // with any alignment.
            let ev: libc::inotify_event =
                unsafe { std::ptr::read_unaligned(bytes[off..].as_ptr().cast()) };
            let name_end = (off + head + ev.len as usize).min(bytes.len());
            let raw = &bytes[off + head..name_end];
            let name =
                OsStr::from_bytes(&raw[..raw.iter().position(|&b| b == 0).unwrap_or(raw.len())]);
            // A directory watch counts for the file's name only (a link and
            // its target may share a directory: several names, one wd);
            // any other watch is on the file itself.
            let in_dir = self.dirs.iter().any(|(wd, _)| *wd == ev.wd);
            hit |= !in_dir
                || self
                    .dirs
                    .iter()
                    .any(|(wd, want)| *wd == ev.wd && name == want.as_os_str());
            off = name_end;
        }
        Ok(hit)
    }
}

/// Starts the thread that raises `signal` for the main thread each time
/// `path` changes (after 100 ms of quiet, so that a file written in
/// several steps is read once, whole). The watch is set up again after
/// each change, before the signal, so that no later change is missed.
pub fn spawn(path: PathBuf, signal: libc::c_int) -> io::Result<()> {
    let mut watch = FileWatch::new(&path)?;
    std::thread::Builder::new()
        .name("resolv-watch".into())
        .spawn(move || loop {
            match watch.wait(None) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    log::error!(
                        "watching {}: {e}; resolvers no longer followed",
                        path.display()
                    );
                    return;
                }
            }
            while matches!(watch.wait(Some(Duration::from_millis(100))), Ok(true)) {}
            match FileWatch::new(&path) {
                Ok(w) => watch = w,
                Err(e) => log::warn!("watching {} again: {e}", path.display()),
            }
            // SAFETY: kill on our own pid; the signal is blocked in every
            // thread, so it stays pending for the main thread's sigtimedwait.
            unsafe { libc::kill(libc::getpid(), signal) };
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("clat-watch-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    const SHORT: Option<Duration> = Some(Duration::from_millis(300));

    #[test]
    fn sees_writes_in_place_and_replacements_but_not_other_files() {
        let d = tmpdir("plain");
        let f = d.join("resolv.conf");
        fs::write(&f, "nameserver 2001:db8::1\n").unwrap();
        let w = FileWatch::new(&f).unwrap();
        assert!(!w.wait(SHORT).unwrap(), "nothing happened yet");
        fs::write(d.join("other"), "x").unwrap();
        assert!(!w.wait(SHORT).unwrap(), "another file in the directory");
        fs::write(&f, "nameserver 2001:db8::2\n").unwrap();
        assert!(w.wait(SHORT).unwrap(), "written in place");
        while w.wait(SHORT).unwrap() {}
        // Replaced by rename, as NetworkManager does.
        let w = FileWatch::new(&f).unwrap();
        fs::write(d.join("resolv.conf.tmp"), "nameserver 2001:db8::3\n").unwrap();
        fs::rename(d.join("resolv.conf.tmp"), &f).unwrap();
        assert!(w.wait(SHORT).unwrap(), "replaced by rename");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn follows_a_symlink_to_its_target() {
        let d = tmpdir("link");
        fs::create_dir_all(d.join("run")).unwrap();
        let target = d.join("run").join("resolv.conf");
        fs::write(&target, "nameserver 2001:db8::1\n").unwrap();
        let link = d.join("resolv.conf");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let w = FileWatch::new(&link).unwrap();
        fs::write(d.join("run").join("new"), "nameserver 2001:db8::9\n").unwrap();
        assert!(!w.wait(SHORT).unwrap());
        fs::rename(d.join("run").join("new"), &target).unwrap();
        assert!(w.wait(SHORT).unwrap(), "the target replaced");
        assert!(FileWatch::new(&d.join("missing-dir").join("x")).is_err());
        fs::remove_dir_all(&d).unwrap();
    }
}
