//! The control socket through which `clat status` and `clat report` ask a
//! running `clat run`.
//!
//! One per instance, never shared (issue 12): by default an abstract Unix
//! socket `@clat/<tun>`. Linux scopes abstract names to the network
//! namespace (unix(7)), so `clat run --tun clat0` in two namespaces gets two
//! sockets, `clat status --tun clat0` reaches the one of its own namespace,
//! a second instance in the same namespace fails to bind instead of taking
//! the name over, and the name goes away with the process: nothing to
//! delete, so nothing of another instance's to delete by mistake.
//!
//! A filesystem path (`--control /run/clat/x.sock`) is guarded by an
//! exclusive `flock` on `<path>.lock` held for the instance's life: only
//! the holder replaces a stale socket file or removes it at exit.
//!
//! An abstract socket has no file permissions, so the peer's credentials
//! (`SO_PEERCRED`) decide: root and the instance's own user are answered,
//! as only they could connect to the root-owned socket file before.

use anyhow::{bail, Context, Result};
use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// Which running instance a client command (`clat status`, `clat report`)
/// talks to: the options both share.
#[derive(clap::Args, Debug)]
pub struct InstanceArgs {
    /// TUN name of the instance (selects the default control socket, that
    /// of the instance in this network namespace).
    #[arg(long, default_value = "clat0")]
    pub tun: String,
    /// Control socket of the instance: `@NAME` (abstract) or a path
    /// (default @clat/<tun>).
    #[arg(long, value_name = "@NAME|PATH")]
    pub control: Option<ControlAddr>,
}

impl InstanceArgs {
    /// The control socket: `--control`, else the TUN's default.
    pub fn control_addr(&self) -> ControlAddr {
        self.control
            .clone()
            .unwrap_or_else(|| ControlAddr::default_for(&self.tun))
    }
}

/// Where an instance's control socket is: `@name` (abstract) or a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlAddr {
    Abstract(String),
    Path(PathBuf),
}

impl ControlAddr {
    /// The default for a TUN name: `@clat/<tun>`, scoped to the network
    /// namespace.
    pub fn default_for(tun: &str) -> ControlAddr {
        ControlAddr::Abstract(format!("clat/{tun}"))
    }

    fn socket_addr(&self) -> std::io::Result<SocketAddr> {
        match self {
            ControlAddr::Abstract(n) => SocketAddr::from_abstract_name(n.as_bytes()),
            ControlAddr::Path(p) => SocketAddr::from_pathname(p),
        }
    }

    /// Connects to the instance (what `clat status` does).
    pub fn connect(&self) -> std::io::Result<UnixStream> {
        UnixStream::connect_addr(&self.socket_addr()?)
    }

    /// Sends one request line (`status`, `report 60`) and returns the
    /// whole answer (a document and a newline, or `error <why>`); waits at
    /// most `timeout` for it.
    pub fn ask(&self, request: &str, timeout: Duration) -> std::io::Result<String> {
        let mut s = self.connect()?;
        s.set_read_timeout(Some(timeout))?;
        s.write_all(format!("{request}\n").as_bytes())?;
        s.shutdown(std::net::Shutdown::Write)?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    }

    /// What `clat status` and `clat report` do with their request: ask,
    /// and print the answer's document as it came (`json`: fields newer
    /// than this reader included) or `human(parse(document))`. A refusal
    /// (`error <why>`, e.g. a user other than root and the instance's own),
    /// an empty answer and one that does not parse are failures on stderr,
    /// with or without `json`, prefixed with `who` (`clat status`).
    pub fn ask_and_print<T>(
        &self,
        who: &str,
        (request, timeout): (&str, Duration),
        json: bool,
        parse: impl FnOnce(&str) -> std::result::Result<T, String>,
        human: impl FnOnce(&T) -> String,
    ) -> std::process::ExitCode {
        use std::process::ExitCode;
        let text = match self.ask(request, timeout) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("{who}: cannot reach a running `clat run` at {self}: {e}");
                return ExitCode::FAILURE;
            }
        };
        if let Some(why) = text.strip_prefix("error ") {
            eprintln!("{who}: {self} answered: {}", why.trim());
            return ExitCode::FAILURE;
        }
        let text = text.trim();
        if text.is_empty() {
            eprintln!("{who}: empty answer from {self}");
            return ExitCode::FAILURE;
        }
        // Parsed either way: a broken or foreign answer is an error, not output.
        let doc = match parse(text) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("{who}: {self} answered badly: {e}");
                return ExitCode::FAILURE;
            }
        };
        if json {
            println!("{text}");
        } else {
            print!("{}", human(&doc));
        }
        ExitCode::SUCCESS
    }
}

impl FromStr for ControlAddr {
    type Err = String;
    /// `@name` is abstract, anything else a path; an empty name is an error.
    fn from_str(s: &str) -> Result<Self, String> {
        match s.strip_prefix('@') {
            Some("") => Err("an abstract socket needs a name after @".into()),
            Some(n) => Ok(ControlAddr::Abstract(n.to_string())),
            None if s.is_empty() => Err("empty control socket path".into()),
            None => Ok(ControlAddr::Path(PathBuf::from(s))),
        }
    }
}

impl fmt::Display for ControlAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ControlAddr::Abstract(n) => write!(f, "@{n}"),
            ControlAddr::Path(p) => write!(f, "{}", p.display()),
        }
    }
}

/// A bound control socket; on drop a path socket is removed (an abstract
/// one goes with its descriptor).
pub struct ControlSocket {
    addr: ControlAddr,
    listener: UnixListener,
    /// The `flock` on `<path>.lock` (path sockets only), released on drop
    /// after the socket file is gone.
    _lock: Option<File>,
}

impl ControlSocket {
    /// Binds `addr`, before anything else is set up, so that a second
    /// instance stops at once with a clear error; [`ControlSocket::serve`]
    /// starts answering.
    ///
    /// Errors: the name or path is in use by another live instance, or
    /// cannot be bound.
    pub fn bind(addr: &ControlAddr) -> Result<ControlSocket> {
        let lock = match addr {
            ControlAddr::Abstract(_) => None,
            ControlAddr::Path(p) => {
                if let Some(dir) = p.parent() {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("cannot create {}", dir.display()))?;
                }
                let lock_path = PathBuf::from(format!("{}.lock", p.display()));
                let f = File::options()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&lock_path)
                    .with_context(|| format!("cannot open {}", lock_path.display()))?;
                if !crate::sys::try_lock_exclusive(&f) {
                    bail!(
                        "control socket {} belongs to another running `clat run` (it holds {}); \
                         give this one its own with --control",
                        p.display(),
                        lock_path.display()
                    );
                }
                // Ours now: a socket file left here is stale.
                let _ = std::fs::remove_file(p);
                Some(f)
            }
        };
        let listener = UnixListener::bind_addr(&addr.socket_addr()?).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AddrInUse {
                anyhow::anyhow!(
                    "control socket {addr} is in use: another `clat run` with this TUN name runs \
                     in this network namespace"
                )
            } else {
                anyhow::anyhow!("cannot bind control socket {addr}: {e}")
            }
        })?;
        Ok(ControlSocket {
            addr: addr.clone(),
            listener,
            _lock: lock,
        })
    }

    /// Answers each connection with `answer(request)` on a thread of its
    /// own (one request line: `status` or empty, `report [SECONDS]`).
    /// Connections made before this wait in the backlog.
    ///
    /// Errors: the thread cannot start.
    pub fn serve<F>(&self, answer: F) -> Result<()>
    where
        F: Fn(&Request) -> String + Send + 'static,
    {
        let l = self.listener.try_clone().context("control socket")?;
        std::thread::Builder::new()
            .name("clat-control".into())
            .spawn(move || {
                for conn in l.incoming() {
                    let Ok(mut c) = conn else { continue };
                    let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
                    let mut line = String::new();
                    let _ = BufReader::new(&c).take(4096).read_line(&mut line);
                    let reply = match (admit(peer_uid(&c)), line.trim().parse::<Request>()) {
                        (Err(refusal), _) => refusal,
                        (Ok(()), Ok(req)) => answer(&req),
                        (Ok(()), Err(e)) => format!("error {e}\n"),
                    };
                    let _ = c.write_all(reply.as_bytes());
                }
            })
            .context("cannot start the control thread")?;
        Ok(())
    }
}

/// A request on the control socket: one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `status` (or an empty line): the status document.
    Status,
    /// `report` or `report SECONDS`: the IPv4 report, with `SECONDS` only
    /// the processes used in that many last seconds (`clat report --since`).
    Report { since: Option<Duration> },
}

impl FromStr for Request {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut words = s.split_whitespace();
        let req = match words.next() {
            None | Some("status") => Request::Status,
            Some("report") => Request::Report {
                since: match words.next() {
                    None => None,
                    Some(n) => Some(Duration::from_secs(
                        n.parse()
                            .map_err(|_| format!("bad report period {n:?} (seconds)"))?,
                    )),
                },
            },
            Some(_) => return Err(format!("unknown request {s:?}")),
        };
        match words.next() {
            None => Ok(req),
            Some(_) => Err(format!("unknown request {s:?}")),
        }
    }
}

/// The uid of the process at the other end (`SO_PEERCRED`, unix(7)).
fn peer_uid(c: &UnixStream) -> Option<u32> {
    crate::sys::peer_uid(c)
}

/// Root and the instance's own user may ask.
fn may_ask(uid: u32) -> bool {
    uid == 0 || uid == crate::sys::euid()
}

/// Whether a peer whose credentials (`SO_PEERCRED`) gave `peer` may be
/// answered; the refusal line otherwise. Fails closed: when the kernel
/// could not say who asks (`None`), the request is refused, since the
/// report names every user's executables and destinations.
fn admit(peer: Option<u32>) -> Result<(), String> {
    match peer {
        Some(uid) if may_ask(uid) => Ok(()),
        Some(uid) => Err(format!("error uid {uid} may not ask: run clat as root\n")),
        None => Err("error the peer's credentials (SO_PEERCRED) cannot be read: refused\n".into()),
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        if let ControlAddr::Path(p) = &self.addr {
            // We hold the lock, so the file is ours.
            let _ = std::fs::remove_file(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve(a: &ControlAddr, answer: &'static str) -> Result<ControlSocket> {
        let c = ControlSocket::bind(a)?;
        c.serve(move |req| match req {
            Request::Status => answer.to_string(),
            Request::Report { since } => format!("report {since:?}\n"),
        })?;
        Ok(c)
    }

    fn ask(a: &ControlAddr) -> String {
        a.ask("status", Duration::from_secs(5)).unwrap()
    }

    #[test]
    fn requests() {
        assert_eq!("".parse::<Request>(), Ok(Request::Status));
        assert_eq!("status".parse::<Request>(), Ok(Request::Status));
        assert_eq!(
            "report".parse::<Request>(),
            Ok(Request::Report { since: None })
        );
        assert_eq!(
            "report 3600".parse::<Request>(),
            Ok(Request::Report {
                since: Some(Duration::from_secs(3600))
            })
        );
        assert!("report 1h".parse::<Request>().is_err());
        assert!("report 1 2".parse::<Request>().is_err());
        assert!("statu"
            .parse::<Request>()
            .unwrap_err()
            .contains("unknown request"));
    }

    #[test]
    fn unknown_or_foreign_peers_are_refused() {
        assert_eq!(admit(Some(0)), Ok(()));
        assert_eq!(admit(Some(crate::sys::euid())), Ok(()));
        let unknown = admit(None).unwrap_err();
        assert!(
            unknown.starts_with("error ") && unknown.contains("SO_PEERCRED"),
            "{unknown}"
        );
        if crate::sys::euid() != 0 {
            assert!(admit(Some(crate::sys::euid() + 1)).is_err());
        } else {
            let e = admit(Some(65534)).unwrap_err();
            assert!(e.contains("uid 65534 may not ask"), "{e}");
        }
    }

    #[test]
    fn parses_and_prints() {
        assert_eq!(
            "@clat/clat0".parse::<ControlAddr>().unwrap(),
            ControlAddr::default_for("clat0")
        );
        assert_eq!(ControlAddr::default_for("x").to_string(), "@clat/x");
        assert_eq!(
            "/run/clat/a.sock".parse::<ControlAddr>().unwrap(),
            ControlAddr::Path("/run/clat/a.sock".into())
        );
        assert!("@".parse::<ControlAddr>().is_err());
        assert!("".parse::<ControlAddr>().is_err());
    }

    #[test]
    fn abstract_socket_is_not_taken_over() {
        let a: ControlAddr = format!("@clat-test/{}", std::process::id())
            .parse()
            .unwrap();
        let first = serve(&a, "state one\n").unwrap();
        let err = serve(&a, "state two\n").err().unwrap();
        assert!(format!("{err:#}").contains("in use"), "{err:#}");
        assert_eq!(ask(&a), "state one\n");
        let report = a.ask("report 60", Duration::from_secs(5)).unwrap();
        assert_eq!(report, "report Some(60s)\n");
        let bad = a.ask("reboot", Duration::from_secs(5)).unwrap();
        assert!(bad.starts_with("error unknown request"), "{bad}");
        drop(first);
    }

    #[test]
    fn path_socket_is_locked_and_never_deleted_by_another() {
        let dir = std::env::temp_dir().join(format!("clat-control-test-{}", std::process::id()));
        let p = dir.join("c.sock");
        let a = ControlAddr::Path(p.clone());
        let first = serve(&a, "state one\n").unwrap();
        let second = serve(&a, "state two\n");
        let err = second.err().unwrap();
        assert!(format!("{err:#}").contains("another running"), "{err:#}");
        // The refused second instance left the first one's socket alone.
        assert!(p.exists());
        assert_eq!(ask(&a), "state one\n");
        drop(first);
        assert!(!p.exists());
        // A stale file left by a dead instance is replaced.
        std::fs::write(&p, b"stale").unwrap();
        let third = serve(&a, "state three\n").unwrap();
        assert_eq!(ask(&a), "state three\n");
        drop(third);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
