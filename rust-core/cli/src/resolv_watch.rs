//! Following the network's resolvers: `clat run` without `--dns` takes its
//! upstream resolvers from a resolv.conf, and that file changes when the
//! host moves to another network (NetworkManager, resolvconf, DHCP
//! clients rewrite it). A watcher thread blocks on inotify, so following
//! costs no wake-up while nothing changes, and raises a signal for the
//! main thread, which owns the engine and the prefix monitor.

use crate::sys;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsFd;
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
    /// The inotify descriptor; a `File` so that its events are read with
    /// `Read`.
    fd: File,
    /// (watch descriptor, file name) of the directory watches.
    dirs: Vec<(i32, OsString)>,
}

impl FileWatch {
    pub fn new(path: &Path) -> io::Result<FileWatch> {
        let fd = File::from(sys::inotify_init()?);
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
        sys::inotify_add_watch(self.fd.as_fd(), p, mask)
    }

    /// Waits up to `timeout` (forever with `None`) for an event that
    /// concerns the file; events about other names in its directory are
    /// read and ignored. True when the file may have changed.
    pub fn wait(&self, timeout: Option<Duration>) -> io::Result<bool> {
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        loop {
            let left = deadline.map(|d| d.saturating_duration_since(std::time::Instant::now()));
            match sys::poll_readable(self.fd.as_fd(), left) {
                Ok(true) => {}
                Ok(false) => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            if self.read_events()? {
                return Ok(true);
            }
        }
    }

    /// Reads the pending events; true if one concerns the file.
    fn read_events(&self) -> io::Result<bool> {
        // Room for many events (the kernel returns whole events only).
        let mut buf = [0u8; 4096];
        let n = (&self.fd).read(&mut buf)?;
        let hit = parse_events(&buf[..n]).any(|(wd, name)| self.concerns_the_file(wd, name));
        Ok(hit)
    }

    /// A directory watch counts for the file's name only (a link and its
    /// target may share a directory: several names, one wd); any other
    /// watch is on the file itself.
    fn concerns_the_file(&self, wd: i32, name: &OsStr) -> bool {
        let in_dir = self.dirs.iter().any(|(d, _)| *d == wd);
        !in_dir
            || self
                .dirs
                .iter()
                .any(|(d, want)| *d == wd && name == want.as_os_str())
    }
}

/// Size of `struct inotify_event` without its name: `int wd; uint32_t
/// mask, cookie, len;` (inotify(7)).
const EVENT_HEAD: usize = 16;
const _: () = assert!(EVENT_HEAD == std::mem::size_of::<libc::inotify_event>());

/// The (watch descriptor, name) of each event in what one `read` of an
/// inotify descriptor returned; the name is empty for a watch on a file. A
/// truncated event at the end (which the kernel never writes) ends the walk.
fn parse_events(mut bytes: &[u8]) -> impl Iterator<Item = (i32, &OsStr)> {
    std::iter::from_fn(move || {
        let head = bytes.get(..EVENT_HEAD)?;
        let wd = i32::from_ne_bytes(head[0..4].try_into().ok()?);
        let len = u32::from_ne_bytes(head[12..16].try_into().ok()?) as usize;
        let end = (EVENT_HEAD + len).min(bytes.len());
        let raw = &bytes[EVENT_HEAD..end];
        let name = OsStr::from_bytes(&raw[..raw.iter().position(|&b| b == 0).unwrap_or(raw.len())]);
        bytes = &bytes[end..];
        Some((wd, name))
    })
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
            // Blocked in every thread: pending for the main thread's wait.
            sys::raise_to_self(signal);
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

    /// Events laid out as inotify(7) describes them, by hand: a file watch
    /// (no name) and a directory watch with a NUL-padded name.
    #[test]
    fn events_are_read_from_their_wire_layout() {
        let mut b = Vec::new();
        for (wd, name) in [(1i32, &b""[..]), (2, &b"resolv.conf\0\0\0\0\0"[..])] {
            b.extend_from_slice(&wd.to_ne_bytes());
            b.extend_from_slice(&libc::IN_MODIFY.to_ne_bytes());
            b.extend_from_slice(&0u32.to_ne_bytes());
            b.extend_from_slice(&(name.len() as u32).to_ne_bytes());
            b.extend_from_slice(name);
        }
        let got: Vec<(i32, &OsStr)> = parse_events(&b).collect();
        assert_eq!(got, [(1, OsStr::new("")), (2, OsStr::new("resolv.conf"))]);
        // A cut-off head ends the walk instead of reading past the end.
        assert_eq!(parse_events(&b[..EVENT_HEAD - 1]).count(), 0);
    }

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
