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

/// A fixed buffer with a read and a write cursor.
#[derive(Debug, Default)]
pub struct Buf {
    data: Vec<u8>,
    start: usize,
    end: usize,
}

impl Buf {
    fn ensure(&mut self, cap: usize) {
        if self.data.is_empty() {
            self.data = vec![0u8; cap];
        }
    }
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
    fn consumed(&mut self, n: usize) {
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
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

fn is_reset(e: &io::Error) -> bool {
    !matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

/// Moves bytes from `src` to `dst` through `buf`; returns Err(true) when the
/// source failed, Err(false) when the destination failed.
fn one_way(
    src: &mut Side,
    dst: &mut Side,
    buf: &mut Buf,
    moved: &mut u64,
    reads: &mut u64,
    writes: &mut u64,
) -> Result<bool, bool> {
    let mut progress = false;
    loop {
        let mut step = false;
        if src.readable && !src.eof && buf.has_space() {
            match src.sock.read(buf.space()) {
                Ok(0) => {
                    src.eof = true;
                    step = true;
                }
                Ok(n) => {
                    buf.end += n;
                    *reads += 1;
                    step = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => src.readable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => step = true,
                Err(_) => return Err(true),
            }
        }
        if dst.writable && !buf.is_empty() {
            match dst.sock.write(buf.pending()) {
                Ok(n) => {
                    buf.consumed(n);
                    *moved += n as u64;
                    *writes += 1;
                    step = step || n > 0;
                }
                Err(e) if !is_reset(&e) => {
                    if e.kind() == io::ErrorKind::WouldBlock {
                        dst.writable = false
                    }
                }
                Err(_) => return Err(false),
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

    /// Called once the upstream connect has completed.
    pub fn on_connected(&mut self, buf_size: usize) {
        self.connected = true;
        self.a2u.ensure(buf_size);
        self.u2a.ensure(buf_size);
    }

    /// Moves whatever can be moved, until nothing more can without waiting.
    pub fn pump(&mut self, moved: &mut Moved) -> Outcome {
        if !self.connected {
            return Outcome::Open;
        }
        let mut dummy = 0;
        loop {
            let a = match one_way(
                &mut self.app,
                &mut self.up,
                &mut self.a2u,
                &mut moved.to_up,
                &mut dummy,
                &mut moved.up_writes,
            ) {
                Ok(p) => p,
                Err(src_failed) => {
                    return Outcome::Reset {
                        app_failed: src_failed,
                    }
                }
            };
            let b = match one_way(
                &mut self.up,
                &mut self.app,
                &mut self.u2a,
                &mut moved.to_app,
                &mut moved.up_reads,
                &mut dummy,
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
        b.ensure(8);
        b.space()[..8].copy_from_slice(b"abcdefgh");
        b.end += 8;
        assert!(!b.has_space());
        b.consumed(3);
        assert!(b.has_space());
        assert_eq!(b.space().len(), 3);
        assert_eq!(b.pending(), b"defgh");
        b.consumed(5);
        assert!(b.is_empty());
        assert_eq!(b.space().len(), 8);
    }
}
