//! Byte relay between the accepted app-side socket and the upstream IPv6
//! socket of one TCP flow.
//!
//! One bounded buffer per direction (allocated when the upstream connect
//! completes), edge-triggered readiness flags so that no syscall is made
//! that is known to return EAGAIN, backpressure by not reading a side
//! whose buffer is full, half-close carried with shutdown(Write), resets
//! carried with SO_LINGER 0.

use mio::net::TcpStream;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::time::{Duration, Instant};

/// The backlog of one direction: bytes read from the source that the
/// destination could not take yet. Empty (no memory at all) while the
/// destination keeps up, which is the common case and every idle flow.
#[derive(Debug, Default)]
pub struct Buf {
    data: Vec<u8>,
    start: usize,
    end: usize,
}

impl Buf {
    fn is_empty(&self) -> bool {
        self.start == self.end
    }
    fn has_space(&self) -> bool {
        self.end < self.data.len() || self.start > 0
    }
    fn space(&mut self) -> &mut [u8] {
        if self.end == self.data.len() && self.start > 0 {
            self.data.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        &mut self.data[self.end..]
    }
    fn pending(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }
    /// Starts a backlog (only called when empty) in a buffer of `cap` bytes.
    fn push(&mut self, bytes: &[u8], cap: usize) {
        if self.data.len() < cap.max(bytes.len()) {
            self.data = vec![0u8; cap.max(bytes.len())];
        }
        self.data[..bytes.len()].copy_from_slice(bytes);
        self.start = 0;
        self.end = bytes.len();
    }
    fn consumed(&mut self, n: usize) {
        self.start += n;
        if self.start == self.end {
            // Drained: give the memory back (bounded memory per idle flow).
            self.start = 0;
            self.end = 0;
            self.data = Vec::new();
        }
    }
}

/// One side of the relay.
#[derive(Debug)]
pub struct Side {
    pub sock: TcpStream,
    /// Last known readiness (edge-triggered: set by events, cleared by EAGAIN).
    pub readable: bool,
    pub writable: bool,
    /// Read EOF seen.
    pub eof: bool,
    /// shutdown(Write) done.
    pub wr_shut: bool,
}

impl Side {
    pub fn new(sock: TcpStream) -> Side {
        Side {
            sock,
            readable: true,
            writable: true,
            eof: false,
            wr_shut: false,
        }
    }
}

/// How a pump ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Keep going; wait for events.
    Open,
    /// Both directions finished cleanly.
    Done,
    /// `from_app` side reset or failed: reset the other side.
    Reset { app_failed: bool },
}

/// Byte counts moved in one pump.
#[derive(Debug, Default, Clone, Copy)]
pub struct Moved {
    pub to_up: u64,
    pub to_app: u64,
    pub up_reads: u64,
    pub up_writes: u64,
}

#[derive(Debug)]
pub struct Relay {
    pub np: u16,
    pub app: Side,
    pub up: Side,
    pub connected: bool,
    a2u: Buf,
    u2a: Buf,
    pub last: Instant,
}

/// Counters of one direction.
struct Tally<'a> {
    moved: &'a mut u64,
    reads: &'a mut u64,
    writes: &'a mut u64,
}

/// Writes `data` to `dst`; `Err` when the destination failed.
fn write_some(dst: &mut Side, data: &[u8], t: &mut Tally) -> Result<usize, ()> {
    match dst.sock.write(data) {
        Ok(n) => {
            *t.moved += n as u64;
            *t.writes += 1;
            Ok(n)
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            dst.writable = false;
            Ok(0)
        }
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(0),
        Err(_) => Err(()),
    }
}

/// Moves bytes from `src` to `dst`: straight through the shared `scratch`
/// buffer while `dst` keeps up, through the per-flow backlog `buf` (at most
/// `cap` bytes) when it does not. Returns Err(true) when the source failed,
/// Err(false) when the destination failed, else whether anything happened.
fn one_way(
    src: &mut Side,
    dst: &mut Side,
    buf: &mut Buf,
    scratch: &mut [u8],
    cap: usize,
    t: &mut Tally,
) -> Result<bool, bool> {
    let mut progress = false;
    loop {
        let mut step = false;
        if buf.is_empty() {
            if src.readable && !src.eof {
                match src.sock.read(scratch) {
                    Ok(0) => {
                        src.eof = true;
                        step = true;
                    }
                    Ok(n) => {
                        *t.reads += 1;
                        step = true;
                        let w = if dst.writable {
                            write_some(dst, &scratch[..n], t).map_err(|_| false)?
                        } else {
                            0
                        };
                        if w < n {
                            buf.push(&scratch[w..n], cap);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => src.readable = false,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => step = true,
                    Err(_) => return Err(true),
                }
            }
        } else {
            if dst.writable {
                let n = write_some(dst, buf.pending(), t).map_err(|_| false)?;
                if n > 0 {
                    buf.consumed(n);
                    step = true;
                }
            }
            if !buf.is_empty() && src.readable && !src.eof && buf.has_space() {
                match src.sock.read(buf.space()) {
                    Ok(0) => {
                        src.eof = true;
                        step = true;
                    }
                    Ok(n) => {
                        buf.end += n;
                        *t.reads += 1;
                        step = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => src.readable = false,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => step = true,
                    Err(_) => return Err(true),
                }
            }
        }
        if src.eof && buf.is_empty() && !dst.wr_shut {
            // Carry the FIN: the peer may still send the other way.
            let _ = dst.sock.shutdown(Shutdown::Write);
            dst.wr_shut = true;
            step = true;
        }
        if !step {
            return Ok(progress);
        }
        progress = true;
    }
}

impl Relay {
    pub fn new(np: u16, app: TcpStream, up: TcpStream, now: Instant) -> Relay {
        Relay {
            np,
            app: Side::new(app),
            up: Side::new(up),
            connected: false,
            a2u: Buf::default(),
            u2a: Buf::default(),
            last: now,
        }
    }

    /// No byte from the app waits to be written upstream.
    pub fn nothing_for_up(&self) -> bool {
        self.a2u.is_empty()
    }

    /// Called once the upstream connect has completed.
    pub fn on_connected(&mut self) {
        self.connected = true;
    }

    /// Moves whatever can be moved, until nothing more can without waiting.
    /// `scratch` is the loop's shared buffer; `cap` bounds each backlog.
    pub fn pump(&mut self, moved: &mut Moved, scratch: &mut [u8], cap: usize) -> Outcome {
        if !self.connected {
            return Outcome::Open;
        }
        let mut dummy = 0;
        let mut dummy2 = 0;
        loop {
            let mut t = Tally {
                moved: &mut moved.to_up,
                reads: &mut dummy,
                writes: &mut moved.up_writes,
            };
            let a = match one_way(
                &mut self.app,
                &mut self.up,
                &mut self.a2u,
                scratch,
                cap,
                &mut t,
            ) {
                Ok(p) => p,
                Err(src_failed) => {
                    return Outcome::Reset {
                        app_failed: src_failed,
                    }
                }
            };
            let mut t = Tally {
                moved: &mut moved.to_app,
                reads: &mut moved.up_reads,
                writes: &mut dummy2,
            };
            let b = match one_way(
                &mut self.up,
                &mut self.app,
                &mut self.u2a,
                scratch,
                cap,
                &mut t,
            ) {
                Ok(p) => p,
                Err(src_failed) => {
                    return Outcome::Reset {
                        app_failed: !src_failed,
                    }
                }
            };
            if !a && !b {
                break;
            }
        }
        if self.app.eof && self.up.eof && self.a2u.is_empty() && self.u2a.is_empty() {
            Outcome::Done
        } else {
            Outcome::Open
        }
    }
}

/// Makes the next close of `s` send a RST (SO_LINGER 0).
pub fn set_rst_on_close(s: &TcpStream) {
    let _ = socket2::SockRef::from(s).set_linger(Some(Duration::ZERO));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffer_compacts_and_resets() {
        let mut b = Buf::default();
        assert_eq!(b.data.capacity(), 0);
        b.push(b"abcdefgh", 8);
        assert!(!b.has_space());
        b.consumed(3);
        assert!(b.has_space());
        assert_eq!(b.space().len(), 3);
        assert_eq!(b.pending(), b"defgh");
        b.consumed(5);
        assert!(b.is_empty());
        assert_eq!(b.data.capacity(), 0, "drained backlog frees its memory");
    }
}
