//! Byte relay between the accepted app-side socket and the upstream IPv6
//! socket of one TCP flow.
//!
//! A flow starts on the copy path (read, write), which carries the few
//! bytes of a short exchange in the fewest system calls; a side whose read
//! takes [`SPLICE_FROM`] bytes or more goes by splice from then on.
//! Bulk bytes go from socket to socket by splice(2) through a pipe the relays
//! share ([`Scratch`]), so they are not copied into the engine; a bounded
//! backlog per direction only while the destination lags (the pipe it did
//! not drain, or bytes of the copy path), edge-triggered readiness flags
//! so that no syscall is made that is known to return EAGAIN (a short read
//! ends a side's reads until its next event, see [`read_side`] and
//! [`splice_through`]), backpressure by not reading a side whose backlog
//! is full, half-close carried with shutdown(Write), resets carried with
//! SO_LINGER 0.
//!
//! Two things splice changes that read and write do not: the one-byte
//! peek after a splice may be what reports the socket's error (a peek
//! clears `sk_err` as a read does), so a peek error is the source's
//! failure ([`peek_after_splice`]), or an upstream reset would be carried
//! on as a FIN; and splicing into a socket sends without MSG_NOSIGNAL, so
//! the thread that runs relays blocks SIGPIPE and takes the pending one
//! after an EPIPE ([`prepare_relay_thread`], [`pipe_out`]). The pipes of
//! one thread together stay within [`PIPE_BUDGET`] of capacity.
//!
//! Urgent data (RFC 9293 section 3.8.5, RFC 6093): both sockets of a flow
//! have SO_OOBINLINE, so an urgent byte stays in the byte stream in its
//! place whatever happens. The relay asks SIOCATMARK before a read when the
//! next byte may be the urgent one: urgent data was signalled (EPOLLPRI, or
//! for the app side the URG bit of an app segment, which the engine sees on
//! the TUN before the kernel has it), or the last read filled its buffer;
//! a short read asks it only when urgent data was signalled, since the
//! urgent byte's arrival is itself signalled ([`read_side`]). Linux stops a
//! read just before the
//! urgent byte, so the mark's place is exact. The byte is then read alone
//! and sent alone with MSG_OOB, after every byte before it, so that the
//! other leg's urgent pointer lands just after it: the BSD convention
//! Linux follows (`tcp_mark_urg`: `snd_up = write_seq`; the receiver takes
//! pointer - 1 as the urgent byte unless `tcp_stdurg` is set, RFC 6093
//! section 3). A receiver without SO_OOBINLINE then finds it with
//! `recv(MSG_OOB)` and reads the rest of the stream without it, as over a
//! plain path. splice never moves the urgent byte (`tcp_read_sock` stops
//! at the mark), so the byte and its mark are always the copy path's: a
//! splice that finds nothing while a byte is left hands the side to it. A
//! flow without urgent data pays one peek per wakeup on the splice path, in
//! place of the read that would have returned EAGAIN, and nothing on the
//! copy path, where a short read with no urgent data signalled is the end
//! of the data ([`read_side`]).
//!
//! What cannot be carried: several urgent bytes sent before the relay
//! reads keep only the last mark (Linux keeps one urgent pointer per
//! socket; the earlier bytes stay in the stream as plain data), and an
//! urgent byte that arrives in the microseconds between a SIOCATMARK and
//! the read after it, with every byte before it already read, is read as
//! plain data: in place, without its mark. Closing that window would take
//! an atomic "read, and say whether you started at the mark", which Linux
//! does not have.
//!
//! Where SIOCATMARK is refused (Android's SELinux policy refuses it to
//! apps), a short read cannot tell the mark from the end of the data, so
//! the relay reads on to EAGAIN: urgent bytes arrive in place as plain
//! data and nothing waits behind a mark for an event that will not come.

use mio::net::TcpStream;
use socket2::{SockRef, Socket};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::sys;

/// The backlog of one direction: bytes read from the source that the
/// destination could not take yet. Empty (no memory at all) while the
/// destination keeps up, which is the common case and every idle flow.
#[derive(Debug, Default)]
pub struct Buf {
    data: Vec<u8>,
    start: usize,
    end: usize,
    /// The backlog is one urgent byte, to be sent with MSG_OOB. Nothing is
    /// read behind it until it has gone, so its place is the backlog's end.
    urgent: bool,
    /// Or the backlog is in a pipe: bytes spliced from the source that the
    /// destination has not taken yet (never both: a backlog is one or the
    /// other, so the order of the stream is the order of the backlog).
    /// Boxed: an idle flow pays one pointer for it (see the memory budget
    /// test in event_loop/tcp.rs), and a pipe changes hands by pointer.
    pipe: Option<Box<Pipe>>,
}

impl Buf {
    fn is_empty(&self) -> bool {
        self.start == self.end && self.pipe.is_none()
    }
    fn has_space(&self) -> bool {
        !self.urgent && (self.end < self.data.len() || self.start > 0)
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
        self.urgent = false;
    }
    fn consumed(&mut self, n: usize) {
        self.start += n;
        if self.start == self.end {
            // Drained: give the memory back (bounded memory per idle flow).
            self.start = 0;
            self.end = 0;
            self.data = Vec::new();
            self.urgent = false;
        }
    }
}

/// The most pipe capacity, in bytes, that the pipes of one engine thread
/// hold together (the shared pipe and every flow's backlog pipe): 16 MiB.
/// A pipe pins the received pages its buffers refer to until they are
/// sent on, so without a bound many lagging flows could pin kernel memory
/// without limit (as root, which `clat run` is, the kernel's per-user
/// bound, /proc/sys/fs/pipe-user-pages-soft, does not apply; an Android
/// app is held to it, 64 MiB per uid by default). At the default relay
/// buffer (128 KiB, pipes of 512 KiB) that is the shared pipe and 31
/// lagging flows; a flow that falls behind once the budget is spent keeps
/// its backlog in the engine's memory instead (at most the relay buffer,
/// as on the copy path), and the shared pipe stays for everyone else.
pub const PIPE_BUDGET: usize = 16 << 20;

/// The most descriptors the splice pipes of one engine hold at once: two
/// per pipe, and no pipe smaller than 64 KiB ([`pipe_size_for`]) within
/// [`PIPE_BUDGET`]. A front end that sizes RLIMIT_NOFILE by flows adds it.
pub const MAX_PIPE_FDS: usize = 2 * PIPE_BUDGET / (64 << 10);

/// The capacity asked for one pipe: four times the relay buffer, kept
/// within 64 KiB (the kernel's default, 16 pages) and 1 MiB (the default
/// /proc/sys/fs/pipe-max-size, above which an unprivileged process is
/// refused), rounded up to a power of two as the kernel rounds it
/// (`round_pipe_size`, in pages), so that the budget counts what is
/// granted.
fn pipe_size_for(cap: usize) -> usize {
    cap.saturating_mul(4)
        .clamp(64 << 10, 1 << 20)
        .next_power_of_two()
}

/// A pipe that stream bytes cross between two sockets with splice(2),
/// and how many are in it now. Its capacity stays counted in the
/// [`Scratch`]'s ledger until it is closed.
#[derive(Debug)]
pub struct Pipe {
    r: OwnedFd,
    w: OwnedFd,
    len: usize,
    /// Capacity in bytes, as the kernel granted it.
    size: usize,
    ledger: Arc<AtomicUsize>,
}

impl Pipe {
    /// A pipe for a backlog of at most `cap` bytes, if `ledger` (the
    /// capacity of the pipes open now) leaves room for it within `budget`
    /// and the kernel gives one. Its capacity is asked for in pages (one
    /// per pipe buffer, however few bytes each holds: from a socket whose
    /// segments arrived in a linear buffer each splice fills a buffer with
    /// about one MSS), so four times `cap` ([`pipe_size_for`]): at MTU
    /// 1500 a splice then moves about `cap` bytes instead of a third of
    /// it. The bytes in the pipe stay bounded by `cap` ([`one_way`]).
    fn new(cap: usize, ledger: &Arc<AtomicUsize>, budget: usize) -> Option<Box<Pipe>> {
        let want = pipe_size_for(cap);
        if ledger.load(Ordering::Relaxed) + want > budget {
            return None;
        }
        let (r, w, size) = sys::pipe(want).ok()?;
        ledger.fetch_add(size, Ordering::Relaxed);
        Some(Box::new(Pipe {
            r,
            w,
            len: 0,
            size,
            ledger: ledger.clone(),
        }))
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        self.ledger.fetch_sub(self.size, Ordering::Relaxed);
    }
}

/// What the relays of one engine thread share: the byte buffer of the copy
/// path (the urgent byte, reads where splice cannot be used) and one empty
/// pipe of the splice path, through which bytes go from socket to socket
/// without being copied into the engine. When the destination does not
/// take everything, the pipe with the rest becomes that flow's backlog and
/// the next flow gets a new one (a drained backlog pipe comes back here);
/// so a flow holds a pipe (two descriptors) only while it lags, and idle
/// flows none. The pipes together stay within a budget of capacity
/// ([`PIPE_BUDGET`]): when no new pipe fits, the rest is read out of the
/// shared pipe into the flow's byte backlog instead. Where no pipe can be
/// had at all (out of descriptors), the copy path carries everything.
#[derive(Debug)]
pub struct Scratch {
    bytes: Vec<u8>,
    pipe: Option<Box<Pipe>>,
    /// The capacity of this thread's pipes open now, in bytes.
    ledger: Arc<AtomicUsize>,
    /// The bound of `ledger`.
    budget: usize,
    /// Bytes the pumps moved by splice (into pipes), for tests.
    #[cfg_attr(not(test), allow(dead_code))]
    spliced: u64,
}

impl Scratch {
    /// `size`: the copy buffer's length and the backlog bound of each
    /// pipe, in bytes (the relay buffer, `EngineConfig::relay_buffer`);
    /// pipes within [`PIPE_BUDGET`].
    pub fn new(size: usize) -> Scratch {
        Scratch::with_pipe_budget(size, PIPE_BUDGET)
    }

    /// As [`Scratch::new`] with a budget of `budget` bytes of pipe capacity.
    pub fn with_pipe_budget(size: usize, budget: usize) -> Scratch {
        Scratch {
            bytes: vec![0u8; size],
            pipe: None,
            ledger: Arc::new(AtomicUsize::new(0)),
            budget,
            spliced: 0,
        }
    }

    /// Bytes moved by splice so far.
    #[cfg(test)]
    fn spliced(&self) -> u64 {
        self.spliced
    }

    /// The capacity of the pipes open now, in bytes.
    #[cfg(test)]
    fn pipe_capacity(&self) -> usize {
        self.ledger.load(Ordering::Relaxed)
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
    /// Ask SIOCATMARK before the next read: urgent data was signalled, the
    /// last read stopped at the mark, or it filled its buffer ([`read_side`]).
    pub urgent: bool,
    /// A poll event reported the peer's FIN or an error: read to the end
    /// (0 or an error) instead of stopping at a short read.
    pub closing: bool,
    /// Reads of this side go by splice: set once one read of the copy path
    /// took at least [`SPLICE_FROM`] bytes ([`one_way`]).
    pub splice: bool,
}

impl Side {
    pub fn new(sock: TcpStream) -> Side {
        Side {
            sock,
            readable: true,
            writable: true,
            eof: false,
            wr_shut: false,
            urgent: false,
            closing: false,
            splice: false,
        }
    }

    /// Takes the readiness a poll event reports for this side's socket.
    pub fn on_event(&mut self, ev: &mio::event::Event) {
        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
            self.readable = true;
        }
        if ev.is_read_closed() || ev.is_error() {
            self.closing = true;
        }
        if ev.is_writable() || ev.is_write_closed() || ev.is_error() {
            self.writable = true;
        }
        if ev.is_priority() {
            // Urgent data arrived: tcp_poll reports EPOLLPRI while it is unread.
            self.urgent = true;
            self.readable = true;
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
    /// One side reset or failed (the app's when `app_failed`, else the
    /// upstream's), with the errno that side's read, write, splice or
    /// peek returned (`None` if it gave none): reset the other side.
    Reset {
        app_failed: bool,
        errno: Option<i32>,
    },
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
    /// Bytes read from the app side so far, mod 2^32 (into the engine or a
    /// pipe). Equal to the sequence span of the app's data, every byte the
    /// app sent has arrived and been read: the fast close's check
    /// (event_loop/tcp.rs, `relay_drained`), without asking the socket.
    pub app_taken: u32,
    a2u: Buf,
    u2a: Buf,
    pub last: Instant,
}

/// Counters of one direction.
struct Tally<'a> {
    moved: &'a mut u64,
    reads: &'a mut u64,
    writes: &'a mut u64,
    /// Bytes read from the source, mod 2^32 ([`Relay::app_taken`]).
    taken: &'a mut u32,
}

impl Tally<'_> {
    /// One read of `n` bytes from the source (into the engine or a pipe).
    fn took(&mut self, n: usize) {
        *self.reads += 1;
        *self.taken = self.taken.wrapping_add(n as u32);
    }
}

/// Writes `data` to `dst`; `Err` with its errno when the destination failed.
fn write_some(dst: &mut Side, data: &[u8], t: &mut Tally) -> Result<usize, Option<i32>> {
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
        Err(e) => Err(e.raw_os_error()),
    }
}

/// Sends the urgent byte `b` alone with MSG_OOB, so that `dst`'s urgent
/// pointer points just past it; 1 when sent, 0 when `dst` cannot take it
/// now, `Err` with its errno when the destination failed.
fn write_urgent(dst: &mut Side, b: u8, t: &mut Tally) -> Result<usize, Option<i32>> {
    // MSG_NOSIGNAL as on every other send of the copy path: socket2's
    // send_out_of_band sets only MSG_OOB, and an urgent byte into a socket
    // already reset would raise SIGPIPE (sk_stream_error).
    let flags = libc::MSG_OOB | libc::MSG_NOSIGNAL;
    match SockRef::from(&dst.sock).send_with_flags(&[b], flags) {
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
        Err(e) => Err(e.raw_os_error()),
    }
}

/// What one read of a side gave.
enum Got {
    /// `n` bytes of the stream.
    Data(usize),
    /// The urgent byte, alone, in the first byte of the buffer.
    Urgent,
    /// The peer's FIN.
    Eof,
    /// Nothing now: would block, or the urgent byte is next and may not be
    /// read yet (`urgent_ok` false).
    Nothing,
    /// Interrupted: try again.
    Again,
    /// The socket failed, with this errno.
    Failed(Option<i32>),
}

/// Reads from `src` into `into`, never past the urgent mark; the urgent
/// byte itself is read (alone) only with `urgent_ok`.
///
/// Readiness without an EAGAIN read: a read that returns less than it
/// asked for has taken everything the socket had queued, and with
/// edge-triggered epoll whatever arrives later is reported by a new event
/// (epoll(7), Q9; Netty's epoll transport stops reading stream sockets the
/// same way), so the side is marked not readable without a second read,
/// except when a FIN or error was reported (then the relay reads to the
/// end). Linux also returns short when it stops just before the urgent
/// byte, and then no event follows, so a short read is followed by a
/// SIOCATMARK instead of the read that would have returned EAGAIN: one
/// system call per wakeup either way, and the ioctl takes no socket lock.
/// That SIOCATMARK is asked only when urgent data was signalled (the side's
/// `urgent` flag when the read began): a read can stop at a mark only once
/// the urgent byte is in (`tcp_recvmsg` stops at `urg_seq` while
/// `urg_data` is set), and its arrival wakes the socket with EPOLLPRI
/// (`tcp_urg` calls `sk_data_ready`; `tcp_poll` adds EPOLLPRI while the
/// byte is unread), which the last poll either reported (the flag) or will
/// report at the next one (edge-triggered epoll queues every wakeup after
/// the event it last returned), so an unsignalled short read is the end of
/// the data, and the urgent byte it may have stopped before comes with its
/// own event. Flows without urgent data thus pay no SIOCATMARK at all.
/// A read that filled `into` is followed by a SIOCATMARK before the next
/// read, since that one might start at an urgent byte arriving meanwhile
/// (once per buffer-full, e.g. 128 KiB).
fn read_side(src: &mut Side, into: &mut [u8], urgent_ok: bool) -> Got {
    let fd = src.sock.as_raw_fd();
    let signalled = src.urgent;
    let at_mark = src.urgent && sys::at_urgent_mark(fd).unwrap_or(false);
    if !at_mark {
        src.urgent = false;
    } else if !urgent_ok {
        return Got::Nothing;
    }
    let want = if at_mark { 1 } else { into.len() };
    match src.sock.read(&mut into[..want]) {
        Ok(0) => {
            src.eof = true;
            Got::Eof
        }
        Ok(_) if at_mark => Got::Urgent,
        Ok(n) => {
            // Full: ask before the next read. Short: at the mark, or drained.
            if n == want {
                src.urgent = true;
            } else if !signalled {
                if !src.closing {
                    src.readable = false;
                }
            } else {
                match sys::at_urgent_mark(fd) {
                    Ok(true) => src.urgent = true,
                    Ok(false) if !src.closing => src.readable = false,
                    Ok(false) => {}
                    // Cannot tell whether the read stopped at the mark
                    // (SIOCATMARK refused, as on Android): read on to
                    // EAGAIN, or what follows the mark waits for an event
                    // that never comes. The bytes stay in order; only
                    // the mark is lost.
                    Err(_) => {}
                }
            }
            Got::Data(n)
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            src.readable = false;
            Got::Nothing
        }
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Got::Again,
        Err(e) => Got::Failed(e.raw_os_error()),
    }
}

/// Splices what `pipe` holds into `dst` while `dst` takes it: whether
/// anything moved; `Err` when the destination failed.
fn pipe_out(pipe: &mut Pipe, dst: &mut Side, t: &mut Tally) -> Result<bool, Option<i32>> {
    let mut any = false;
    while pipe.len > 0 && dst.writable {
        match sys::splice(pipe.r.as_raw_fd(), dst.sock.as_raw_fd(), pipe.len) {
            Ok(0) => break,
            Ok(n) => {
                pipe.len -= n;
                *t.moved += n as u64;
                *t.writes += 1;
                any = true;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => dst.writable = false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                if e.raw_os_error() == Some(libc::EPIPE) {
                    // The SIGPIPE this raised is pending on this thread,
                    // which blocks it (prepare_relay_thread): take it.
                    sys::take_pending_sigpipe();
                }
                return Err(e.raw_os_error());
            }
        }
    }
    Ok(any)
}

/// What one splice from a side into a pipe gave.
enum Spliced {
    /// `n` bytes of the stream, now in the pipe.
    Data(usize),
    /// The peer's FIN.
    Eof,
    /// Nothing: the socket is empty, the pipe is full, or the next byte is
    /// the urgent one (which splice never moves).
    Nothing,
    /// Interrupted: try again.
    Again,
    /// The socket failed, with this errno.
    Failed(Option<i32>),
}

/// Splices at most `want` bytes of `src` into `pipe`. A splice that
/// moves nothing is the end of the stream only when nothing is left to
/// read: once the peer's FIN is in, `tcp_splice_read` also returns 0 when
/// it stands at the urgent byte (SOCK_DONE is checked before EAGAIN). The
/// peek that tells them apart may report the socket's error instead
/// ([`peek_after_splice`]).
fn pipe_in(src: &mut Side, pipe: &mut Pipe, want: usize) -> Spliced {
    match sys::splice(src.sock.as_raw_fd(), pipe.w.as_raw_fd(), want) {
        Ok(0) => match peek_after_splice(src) {
            Ok(true) => Spliced::Nothing,
            Ok(false) => {
                src.eof = true;
                Spliced::Eof
            }
            Err(e) => Spliced::Failed(e),
        },
        Ok(n) => {
            pipe.len += n;
            Spliced::Data(n)
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Spliced::Nothing,
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Spliced::Again,
        Err(e) => Spliced::Failed(e.raw_os_error()),
    }
}

/// Whether `src` has a byte left to read after a splice, by a one-byte
/// `recv(MSG_PEEK)` ([`sys::has_unread`]); `Err` with the errno when the
/// socket failed.
///
/// The peek must count as a read: `tcp_recvmsg` reports a pending error
/// (`sk_err`, e.g. ECONNRESET from the peer's RST) once its queue is
/// empty, and `sock_error()` clears it even for a peek, so the error is
/// reported here and never again: the next `tcp_splice_read` finds no
/// `sk_err`, sees RCV_SHUTDOWN and returns 0, which would carry the reset
/// on as a FIN (a body cut short would look complete). A peek error is
/// therefore the source's failure, as a read's would be. The peek stays
/// (rather than a second splice to EAGAIN): it costs the same one call
/// per wakeup, and it alone tells "drained" from "the urgent byte is
/// next", where splice stops and returns EAGAIN either way.
fn peek_after_splice(src: &Side) -> Result<bool, Option<i32>> {
    sys::has_unread(src.sock.as_raw_fd()).map_err(|e| e.raw_os_error())
}

/// One read of `src` by splice when nothing is backlogged: into the shared
/// pipe, then on into `dst` as far as it takes it; what it does not take
/// stays in that pipe, which becomes the flow's backlog. `Ok(None)` when
/// the copy path must read instead: the urgent byte may be next (splice
/// stops before it: `tcp_read_sock` never moves it), or there is no pipe.
/// After a read the side counts as drained when a peek finds nothing (the
/// call that stands in for the read that would have returned EAGAIN: a
/// short splice does not say the socket is empty, since splice moves at
/// most what the pipe takes), unless a FIN or error was reported, when it
/// reads to the end. Errors as
/// [`one_way`]'s.
fn splice_through(
    src: &mut Side,
    dst: &mut Side,
    buf: &mut Buf,
    scratch: &mut Scratch,
    cap: usize,
    t: &mut Tally,
) -> Result<Option<()>, (bool, Option<i32>)> {
    if src.urgent {
        return Ok(None);
    }
    if scratch.pipe.is_none() {
        scratch.pipe = Pipe::new(cap, &scratch.ledger, scratch.budget);
    }
    let Some(pipe) = scratch.pipe.as_mut() else {
        return Ok(None);
    };
    match pipe_in(src, pipe, cap) {
        Spliced::Data(n) => {
            t.took(n);
            scratch.spliced += n as u64;
            if dst.writable {
                if let Err(e) = pipe_out(pipe, dst, t) {
                    // The flow is reset; what it left in the pipe goes with it.
                    scratch.pipe = None;
                    return Err((false, e));
                }
            }
            if pipe.len > 0 {
                // Hand the pipe over only if its replacement fits: what
                // Pipe::new will ask for, which may be more than this one
                // got (a kernel that granted less).
                let replacement = pipe_size_for(cap);
                if scratch.ledger.load(Ordering::Relaxed) + replacement <= scratch.budget {
                    buf.pipe = scratch.pipe.take();
                } else {
                    // Over the pipe budget: the rest goes to the byte
                    // backlog, and the shared pipe stays.
                    match sys::read_fd(&pipe.r, &mut scratch.bytes[..pipe.len]) {
                        Ok(n) if n == pipe.len => {
                            pipe.len = 0;
                            buf.push(&scratch.bytes[..n], cap);
                        }
                        // A pipe holding what it was given cannot fail a
                        // read; if it did, the flow cannot go on intact.
                        Ok(_) => {
                            scratch.pipe = None;
                            return Err((true, None));
                        }
                        Err(e) => {
                            scratch.pipe = None;
                            return Err((true, e.raw_os_error()));
                        }
                    }
                }
            }
            if !src.closing {
                match peek_after_splice(src) {
                    Ok(false) => src.readable = false,
                    Ok(true) => {}
                    Err(e) => return Err((true, e)),
                }
            }
            Ok(Some(()))
        }
        Spliced::Eof | Spliced::Again => Ok(Some(())),
        Spliced::Nothing => {
            // The pipe was empty, so the socket is, or its next byte is
            // the urgent one: the copy path asks SIOCATMARK and reads it
            // (where SIOCATMARK is refused, its recv() reads the byte
            // inline, as plain data).
            src.urgent = true;
            Ok(None)
        }
        Spliced::Failed(e) => Err((true, e)),
    }
}

/// The bytes one read of the copy path must take for its side to go by
/// splice from then on: 16 KiB (or the whole copy buffer, if smaller).
///
/// A flow starts on the copy path, where a read and a write (two system
/// calls) carry what the side had; splice takes two as well (into the
/// pipe, out of it) plus the peek that says whether the side is drained
/// ([`splice_through`]), and a splice that finds nothing hands over to
/// the copy path's read anyway. So for the few bytes of a request or an
/// answer, copying is the cheaper way (new connections carry little: the
/// connection benchmark's one byte each way), and splice pays only where
/// it saves copying many bytes. A read of 16 KiB means the side had that
/// much queued at once: a bulk transfer (its first windows already exceed
/// it at any MTU), for which copying would cost two passes over every
/// byte from then on. Once set, a side stays on splice.
pub const SPLICE_FROM: usize = 16 << 10;

/// Moves bytes from `src` to `dst`: by splice through the shared pipe of
/// `scratch` while `dst` keeps up, through a per-flow backlog `buf` (at
/// most `cap` bytes: the pipe that was not drained, or bytes of the copy
/// path) when it does not; an urgent byte goes alone with MSG_OOB once
/// everything before it has gone, by the copy path. Returns Err((true,
/// errno)) when the source failed, Err((false, errno)) when the destination
/// failed, else whether
/// anything happened.
fn one_way(
    src: &mut Side,
    dst: &mut Side,
    buf: &mut Buf,
    scratch: &mut Scratch,
    cap: usize,
    t: &mut Tally,
) -> Result<bool, (bool, Option<i32>)> {
    let mut progress = false;
    loop {
        let mut step = false;
        if buf.is_empty() {
            if src.readable && !src.eof {
                step = true;
                let spliced =
                    src.splice && splice_through(src, dst, buf, scratch, cap, t)?.is_some();
                if !spliced {
                    let bytes = &mut scratch.bytes[..];
                    match read_side(src, bytes, true) {
                        Got::Data(n) => {
                            t.took(n);
                            if n >= SPLICE_FROM.min(bytes.len()) {
                                src.splice = true;
                            }
                            let w = if dst.writable {
                                write_some(dst, &bytes[..n], t).map_err(|e| (false, e))?
                            } else {
                                0
                            };
                            if w < n {
                                buf.push(&bytes[w..n], cap);
                            }
                        }
                        Got::Urgent => {
                            t.took(1);
                            let w = if dst.writable {
                                write_urgent(dst, bytes[0], t).map_err(|e| (false, e))?
                            } else {
                                0
                            };
                            if w == 0 {
                                buf.push(&bytes[..1], cap);
                                buf.urgent = true;
                            }
                        }
                        Got::Eof | Got::Again => {}
                        Got::Nothing => step = false,
                        Got::Failed(e) => return Err((true, e)),
                    }
                }
            }
        } else {
            if dst.writable {
                if let Some(p) = buf.pipe.as_mut() {
                    step |= pipe_out(p, dst, t).map_err(|e| (false, e))?;
                    if p.len == 0 {
                        // Drained: the pipe goes back for the next flow.
                        let p = buf.pipe.take();
                        if scratch.pipe.is_none() {
                            scratch.pipe = p;
                        }
                    }
                } else {
                    let n = if buf.urgent {
                        write_urgent(dst, buf.pending()[0], t)
                    } else {
                        write_some(dst, buf.pending(), t)
                    }
                    .map_err(|e| (false, e))?;
                    if n > 0 {
                        buf.consumed(n);
                        step = true;
                    }
                }
            }
            // Behind a backlog, read only up to the urgent mark: the
            // urgent byte is read once everything before it has gone
            // (splice stops at the mark by itself).
            if !buf.is_empty() && src.readable && !src.eof {
                if let Some(p) = buf.pipe.as_mut() {
                    if p.len < cap {
                        match pipe_in(src, p, cap - p.len) {
                            Spliced::Data(n) => {
                                t.took(n);
                                scratch.spliced += n as u64;
                                step = true;
                            }
                            Spliced::Eof | Spliced::Again => step = true,
                            Spliced::Nothing => {}
                            Spliced::Failed(e) => return Err((true, e)),
                        }
                    }
                } else if buf.has_space() {
                    match read_side(src, buf.space(), false) {
                        Got::Data(n) => {
                            buf.end += n;
                            t.took(n);
                            step = true;
                        }
                        Got::Eof | Got::Again => step = true,
                        Got::Urgent | Got::Nothing => {}
                        Got::Failed(e) => return Err((true, e)),
                    }
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
            app_taken: 0,
            a2u: Buf::default(),
            u2a: Buf::default(),
            last: now,
        }
    }

    /// No byte from the app waits to be written upstream.
    pub fn nothing_for_up(&self) -> bool {
        self.a2u.is_empty()
    }

    /// Whether the app side is done with, as the fast close needs it
    /// (event_loop/tcp.rs, `relay_drained`): our FIN went to the app
    /// (`wr_shut`), no byte of the app waits to go upstream, and the relay
    /// has read exactly `app_bytes` bytes from the app side, the sequence
    /// span (mod 2^32) of the app's data the core saw on the TUN. The relay
    /// cannot read more than arrived, so equal means every byte arrived and
    /// was read; an over-count here would close a flow with bytes unread.
    pub fn app_drained(&self, app_bytes: u32) -> bool {
        self.app.wr_shut && self.nothing_for_up() && self.app_taken == app_bytes
    }

    /// Called once the upstream connect has completed.
    pub fn on_connected(&mut self) {
        self.connected = true;
    }

    /// Moves whatever can be moved, until nothing more can without waiting.
    /// `scratch` is what the loop's relays share (the splice pipe, the copy
    /// buffer); `cap` bounds each backlog, in bytes.
    pub fn pump(&mut self, moved: &mut Moved, scratch: &mut Scratch, cap: usize) -> Outcome {
        if !self.connected {
            return Outcome::Open;
        }
        let mut dummy = 0;
        let mut dummy2 = 0;
        let mut up_taken = 0;
        loop {
            let mut t = Tally {
                moved: &mut moved.to_up,
                reads: &mut dummy,
                writes: &mut moved.up_writes,
                taken: &mut self.app_taken,
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
                Err((src_failed, errno)) => {
                    return Outcome::Reset {
                        app_failed: src_failed,
                        errno,
                    }
                }
            };
            let mut t = Tally {
                moved: &mut moved.to_app,
                reads: &mut moved.up_reads,
                writes: &mut dummy2,
                taken: &mut up_taken,
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
                Err((src_failed, errno)) => {
                    return Outcome::Reset {
                        app_failed: !src_failed,
                        errno,
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

/// The DSCP bits of a TOS or Traffic Class byte (RFC 2474); the low two
/// bits are ECN (RFC 3168).
const DSCP_MASK: u8 = 0xfc;

/// Keeps urgent bytes in the stream of socket `s` (SO_OOBINLINE): without
/// it Linux takes the urgent byte out of the stream, and a relay reading
/// only the stream loses it. Set on the listener, whose accepted sockets
/// inherit it (`sk_clone_lock` copies `sk_flags`, net/core/sock.c), so that
/// urgent data the app sends before the accept is kept too.
pub fn set_oob_inline(s: &Socket) -> io::Result<()> {
    s.set_out_of_band_inline(true)
}

/// Prepares the upstream socket `s` of a flow to `to` before its connect:
/// urgent data kept in the stream (see [`set_oob_inline`]), and the DSCP of
/// the app's SYN (`tos`, the IPv4 TOS byte) as its traffic class, so that
/// the SYN and every later segment carry it (RFC 7915 section 4.1 copies
/// the TOS octet to the Traffic Class). The ECN bits are not copied: Linux
/// keeps a TCP socket's ECN bits to itself (`do_ipv6_setsockopt`,
/// IPV6_TCLASS on a SOCK_STREAM socket keeps `np->tclass & INET_ECN_MASK`)
/// and negotiates ECN per leg (net.ipv4.tcp_ecn). With `mirror`, the
/// socket also latches the traffic class of what it receives, for
/// [`mirror_traffic_class`] (IPv6 only). A DSCP of 0 is not set: a new
/// socket's traffic class and TOS are 0 (`sk_alloc` zeroes the socket,
/// and neither `inet_create` nor `inet6_create` sets them). Errors: the
/// kernel's.
pub fn prepare_upstream(s: &Socket, to: &SocketAddr, tos: u8, mirror: bool) -> io::Result<()> {
    set_oob_inline(s)?;
    let dscp = u32::from(tos & DSCP_MASK);
    match to {
        SocketAddr::V6(_) => {
            if dscp != 0 {
                s.set_tclass_v6(dscp)?;
            }
            if mirror {
                s.set_recv_tclass_v6(true)?;
            }
        }
        SocketAddr::V4(_) if dscp != 0 => s.set_tos_v4(dscp)?,
        SocketAddr::V4(_) => {}
    }
    Ok(())
}

/// Once the upstream connect of a flow has completed: gives the app-side
/// socket the DSCP that the server's SYN-ACK carried (RFC 7915 section 5.1,
/// the other direction), so that what the app receives is marked as the
/// server marked it. Then stops the latching, which makes Linux clone
/// every segment the socket receives (`tcp_v6_do_rcv`, `np->rxopt.all`).
/// Per connection: a server that changes its marking later is not
/// followed. Returns the traffic class read, if any; errors are the
/// kernel's and leave the app side's marking as it was. An IPv4 upstream
/// (the native path) is not mirrored: `Ok(None)`. Linux records the
/// received TOS of an IPv4 TCP socket (`inet->rcv_tos`, what
/// `getsockopt(IP_PKTOPTIONS)` reports with IP_RECVTOS) only for passively
/// opened ones (`tcp_v4_syn_recv_sock`); an actively opened socket reports
/// 0 whatever the server sent (checked on Linux 6.18). Its DSCP towards the
/// server is set by [`prepare_upstream`].
///
/// `(up_v6, app_v6)`: the families of the upstream and the app side (the
/// caller knows them; no getsockname). `syn_tos`: the TOS byte of the
/// app's SYN. A DSCP of 0 is not set when the app's SYN had DSCP 0 too,
/// since the app side has 0 already: an accepted socket starts with the
/// listener's TOS and traffic class (`sk_clone_lock` copies the whole
/// socket, net/core/sock.c; `tcp_v6_syn_recv_sock` copies `ipv6_pinfo`),
/// which the engine leaves at 0, or with the SYN's DSCP where
/// net.ipv4.tcp_reflect_tos is set (`tcp_v4_syn_recv_sock`,
/// `tcp_v6_syn_recv_sock`): 0 either way.
pub fn mirror_traffic_class(
    up: &TcpStream,
    app: &TcpStream,
    (up_v6, app_v6): (bool, bool),
    syn_tos: u8,
) -> io::Result<Option<u8>> {
    if !up_v6 {
        return Ok(None);
    }
    let up = SockRef::from(up);
    let tclass = sys::received_tclass(up.as_raw_fd());
    let _ = up.set_recv_tclass_v6(false);
    let tclass = tclass?;
    if let Some(tc) = tclass {
        let dscp = u32::from(tc & DSCP_MASK);
        if dscp == 0 && syn_tos & DSCP_MASK == 0 {
            return Ok(tclass);
        }
        let app_ref = SockRef::from(app);
        // The app side is of the app's family: IPv6 for carried IPv6 flows.
        if app_v6 {
            app_ref.set_tclass_v6(dscp)?;
        } else {
            app_ref.set_tos_v4(dscp)?;
        }
    }
    Ok(tclass)
}

/// What a thread must do before it runs relays (the engine's thread does,
/// first thing): block SIGPIPE in this thread ([`sys::block_sigpipe`]).
/// splice(2) into a socket sends without MSG_NOSIGNAL (`splice_to_socket`
/// in fs/splice.c sets only MSG_SPLICE_PAGES and MSG_MORE, and no
/// SPLICE_F_ flag changes that), so splicing into a socket that was reset
/// and whose error was already reported, or that is shut down for
/// sending, fails with EPIPE and raises SIGPIPE for the calling thread
/// (`sk_stream_error`). Under the default disposition that would end the
/// process; inside a JVM the disposition is the runtime's (ART itself
/// blocks SIGPIPE in the threads it starts, `Runtime::BlockSignals` in
/// art/runtime/runtime.cc, which a thread the engine spawns from one of
/// them inherits; blocking it here makes that hold whoever starts the
/// engine). Blocked, the signal stays pending on this thread, and
/// [`pipe_out`] takes it after each EPIPE. The copy path's sends use
/// MSG_NOSIGNAL and never raise it.
/// Errors: pthread_sigmask's.
pub fn prepare_relay_thread() -> io::Result<()> {
    sys::block_sigpipe()
}

/// Makes the next close of `s` send a RST (SO_LINGER 0).
pub fn set_rst_on_close(s: &TcpStream) {
    let _ = socket2::SockRef::from(s).set_linger(Some(Duration::ZERO));
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::{Events, Interest, Poll, Token};
    use socket2::{Domain, Protocol, SockAddr, Type};
    use std::net::{TcpListener, TcpStream as StdStream};

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

    #[test]
    fn urgent_backlog_holds_reads_until_sent() {
        let mut b = Buf::default();
        b.push(b"!", 8);
        b.urgent = true;
        assert!(
            !b.has_space(),
            "nothing is read behind an unsent urgent byte"
        );
        b.consumed(1);
        assert!(b.is_empty() && !b.urgent);
        b.push(b"x", 8);
        assert!(!b.urgent && b.has_space());
    }

    const WAIT: Duration = Duration::from_secs(10);

    /// One flow as the engine relays it, on loopback: the app's client,
    /// the relay (accepted app side from a listener prepared like the
    /// engine's, upstream socket prepared by [`prepare_upstream`]), and
    /// the server's accepted socket. Real sockets; no root needed.
    struct Flow {
        client: StdStream,
        server: StdStream,
        relay: Relay,
        poll: Poll,
        events: Events,
        scratch: Scratch,
        cap: usize,
    }

    fn flow(client_inline: bool, server_inline: bool, cap: usize) -> Flow {
        flow_by(false, client_inline, server_inline, cap)
    }

    /// [`flow`], with both sides on splice from the start when `splice`
    /// (else on the copy path, as the engine starts a flow).
    fn flow_by(splice: bool, client_inline: bool, server_inline: bool, cap: usize) -> Flow {
        let l = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
        set_oob_inline(&l).unwrap();
        l.bind(&SockAddr::from(SocketAddr::from(([127, 0, 0, 1], 0))))
            .unwrap();
        l.listen(8).unwrap();
        let client = StdStream::connect(l.local_addr().unwrap().as_socket().unwrap()).unwrap();
        let (app, _) = l.accept().unwrap();
        assert!(
            app.out_of_band_inline().unwrap(),
            "accepted socket inherits SO_OOBINLINE"
        );

        let sl = TcpListener::bind("[::1]:0").unwrap();
        let to = sl.local_addr().unwrap();
        let up = Socket::new(Domain::IPV6, Type::STREAM, Some(Protocol::TCP)).unwrap();
        prepare_upstream(&up, &to, 0, true).unwrap();
        up.connect(&SockAddr::from(to)).unwrap();
        let (server, _) = sl.accept().unwrap();

        for (s, inline) in [(&client, client_inline), (&server, server_inline)] {
            SockRef::from(s).set_out_of_band_inline(inline).unwrap();
            s.set_read_timeout(Some(WAIT)).unwrap();
            let _ = s.set_nodelay(true);
        }
        app.set_nonblocking(true).unwrap();
        up.set_nonblocking(true).unwrap();
        let mut relay = Relay::new(
            1,
            TcpStream::from_std(app.into()),
            TcpStream::from_std(up.into()),
            Instant::now(),
        );
        relay.on_connected();
        relay.app.splice = splice;
        relay.up.splice = splice;
        let poll = Poll::new().unwrap();
        let rw = Interest::READABLE | Interest::WRITABLE | Interest::PRIORITY;
        poll.registry()
            .register(&mut relay.app.sock, Token(0), rw)
            .unwrap();
        poll.registry()
            .register(&mut relay.up.sock, Token(1), rw)
            .unwrap();
        Flow {
            client,
            server,
            relay,
            poll,
            events: Events::with_capacity(16),
            scratch: Scratch::new(cap),
            cap,
        }
    }

    /// [`Flow::take_events`] on a flow's parts (for a test that has moved
    /// one of its sockets out).
    fn take_events(poll: &mut Poll, events: &mut Events, relay: &mut Relay, t: Duration) -> bool {
        poll.poll(events, Some(t)).unwrap();
        let mut any = false;
        for ev in events.iter() {
            any = true;
            if ev.token() == Token(0) {
                relay.app.on_event(ev);
            } else {
                relay.up.on_event(ev);
            }
        }
        any
    }

    impl Flow {
        /// Takes the events of up to `timeout` into the relay's sides, as
        /// the engine's loop does; false when nothing was ready.
        fn take_events(&mut self, timeout: Duration) -> bool {
            take_events(&mut self.poll, &mut self.events, &mut self.relay, timeout)
        }

        /// Takes the events of up to `timeout` and pumps, as the engine's
        /// loop does; false when nothing was ready.
        fn turn(&mut self, timeout: Duration) -> bool {
            let any = self.take_events(timeout);
            let mut m = Moved::default();
            let out = self.relay.pump(&mut m, &mut self.scratch, self.cap);
            assert_eq!(out, Outcome::Open);
            any
        }

        /// Runs the relay until it has nothing left to do.
        fn settle(&mut self) {
            while self.turn(Duration::from_millis(200)) {}
        }
    }

    /// The server resets the connection: the relay ends as a reset of the
    /// upstream side, with the errno its socket returned (ECONNRESET), for
    /// the flow's end reason.
    #[test]
    fn an_upstream_reset_ends_the_relay_with_its_errno() {
        for splice in [false, true] {
            let mut f = flow_by(splice, false, false, 4096);
            SockRef::from(&f.server)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
            drop(f.server);
            let deadline = Instant::now() + WAIT;
            let out = loop {
                assert!(Instant::now() < deadline, "the reset never came");
                let t = Duration::from_millis(200);
                take_events(&mut f.poll, &mut f.events, &mut f.relay, t);
                let mut m = Moved::default();
                match f.relay.pump(&mut m, &mut f.scratch, f.cap) {
                    Outcome::Open => continue,
                    o => break o,
                }
            };
            assert_eq!(
                out,
                Outcome::Reset {
                    app_failed: false,
                    errno: Some(libc::ECONNRESET)
                }
            );
        }
    }

    /// Waits until `s` has `n` bytes queued to read (urgent byte included
    /// when inline), so that the relay sees them in one go.
    fn queued(s: &impl AsRawFd, n: usize) {
        let deadline = Instant::now() + WAIT;
        while sys::unread_bytes(s.as_raw_fd()).unwrap() < n {
            assert!(Instant::now() < deadline, "{n} bytes never arrived");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn read_some(s: &mut StdStream) -> Vec<u8> {
        let mut b = [0u8; 64];
        let n = s.read(&mut b).unwrap();
        b[..n].to_vec()
    }

    /// The case, app to server: `abc`, `!` with MSG_OOB, `def`.
    /// A server without SO_OOBINLINE reads `abc`, then `def`, and gets `!`
    /// with recv(MSG_OOB), as over a plain path.
    #[test]
    fn urgent_byte_from_app_reaches_server_as_urgent() {
        for splice in [false, true] {
            let mut f = flow_by(splice, false, false, 64 * 1024);
            f.client.write_all(b"abc").unwrap();
            SockRef::from(&f.client).send_out_of_band(b"!").unwrap();
            f.client.write_all(b"def").unwrap();
            queued(&f.relay.app.sock, 7);
            f.settle();
            assert_eq!(read_some(&mut f.server), b"abc", "a read stops at the mark");
            assert!(sys::at_urgent_mark(f.server.as_raw_fd()).unwrap());
            let oob =
                sys::recv_urgent(f.server.as_raw_fd()).expect("the byte arrives as urgent data");
            assert_eq!(oob, b'!');
            assert_eq!(read_some(&mut f.server), b"def");
        }
    }

    /// The same with the relay at work between the sends: `abc` before the
    /// urgent byte is relayed (by splice), the urgent byte, then `def`
    /// after the relay has carried the urgent byte.
    #[test]
    fn urgent_byte_between_relayed_sends() {
        for splice in [false, true] {
            let mut f = flow_by(splice, false, false, 64 * 1024);
            f.client.write_all(b"abc").unwrap();
            queued(&f.relay.app.sock, 3);
            f.settle();
            SockRef::from(&f.client).send_out_of_band(b"!").unwrap();
            queued(&f.relay.app.sock, 1);
            f.settle();
            f.client.write_all(b"def").unwrap();
            f.settle();
            assert_eq!(read_some(&mut f.server), b"abc", "a read stops at the mark");
            let oob =
                sys::recv_urgent(f.server.as_raw_fd()).expect("the byte arrives as urgent data");
            assert_eq!(oob, b'!');
            assert_eq!(read_some(&mut f.server), b"def");
        }
    }

    /// The app's FIN queued behind the urgent byte: the relay stops at the
    /// mark before it sees the end, so `!def` is carried before the FIN.
    #[test]
    fn urgent_byte_then_fin() {
        for splice in [false, true] {
            for server_inline in [false, true] {
                let mut f = flow_by(splice, false, server_inline, 64 * 1024);
                f.client.write_all(b"abc").unwrap();
                SockRef::from(&f.client).send_out_of_band(b"!").unwrap();
                f.client.write_all(b"def").unwrap();
                f.client.shutdown(Shutdown::Write).unwrap();
                queued(&f.relay.app.sock, 7);
                // A pump before any event (sides start readable), so without
                // the EPOLLPRI hint: the splice path meets the mark itself.
                let mut m = Moved::default();
                assert_eq!(f.relay.pump(&mut m, &mut f.scratch, f.cap), Outcome::Open);
                f.settle();
                let mut got = Vec::new();
                let mut oob = None;
                loop {
                    if oob.is_none()
                        && !server_inline
                        && sys::at_urgent_mark(f.server.as_raw_fd()).unwrap()
                    {
                        oob = sys::recv_urgent(f.server.as_raw_fd()).ok();
                    }
                    let mut b = [0u8; 64];
                    match f.server.read(&mut b).unwrap() {
                        0 => break,
                        n => got.extend_from_slice(&b[..n]),
                    }
                }
                if server_inline {
                    assert_eq!(got, b"abc!def");
                } else {
                    assert_eq!((got.as_slice(), oob), (&b"abcdef"[..], Some(b'!')));
                }
            }
        }
    }

    /// Server to app, the app with SO_OOBINLINE: `abc!def` in order, with
    /// the mark just before `!`.
    #[test]
    fn urgent_byte_from_server_reaches_app_in_place_with_its_mark() {
        for splice in [false, true] {
            let mut f = flow_by(splice, true, false, 64 * 1024);
            f.server.write_all(b"abc").unwrap();
            SockRef::from(&f.server).send_out_of_band(b"!").unwrap();
            f.server.write_all(b"def").unwrap();
            queued(&f.relay.up.sock, 7);
            f.settle();
            assert_eq!(read_some(&mut f.client), b"abc");
            assert!(sys::at_urgent_mark(f.client.as_raw_fd()).unwrap());
            assert_eq!(read_some(&mut f.client), b"!def");
        }
    }

    /// The urgent byte behind a backlog: 1 MB before it, through a relay
    /// buffer of 16 KiB and a small upstream send buffer, so that the
    /// relay holds a backlog when it reaches the mark. The mark lands after
    /// exactly the 1 MB, and nothing is lost or reordered.
    #[test]
    fn urgent_byte_behind_a_backlog_keeps_its_place() {
        for splice in [false, true] {
            const N: usize = 1 << 20;
            let mut f = flow_by(splice, false, false, 16 * 1024);
            SockRef::from(&f.relay.up.sock)
                .set_send_buffer_size(4096)
                .unwrap();
            let mut client = f.client.try_clone().unwrap();
            let sender = std::thread::spawn(move || {
                client.write_all(&vec![b'x'; N]).unwrap();
                SockRef::from(&client).send_out_of_band(b"!").unwrap();
                client.write_all(b"def").unwrap();
            });
            f.server.set_nonblocking(true).unwrap();
            let (mut stream, mut mark_at, mut oob) = (Vec::new(), None, Vec::new());
            let deadline = Instant::now() + WAIT;
            let mut b = vec![0u8; 8192];
            while stream.len() < N + 3 || oob.is_empty() {
                assert!(
                    Instant::now() < deadline,
                    "stalled at {} bytes",
                    stream.len()
                );
                f.turn(Duration::from_millis(1));
                if oob.is_empty() && sys::at_urgent_mark(f.server.as_raw_fd()).unwrap() {
                    if let Ok(o) = sys::recv_urgent(f.server.as_raw_fd()) {
                        oob.push(o);
                        mark_at = Some(stream.len());
                    }
                }
                // One read per turn at most: the server is slow.
                match f.server.read(&mut b) {
                    Ok(n) => stream.extend_from_slice(&b[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => panic!("{e}"),
                }
            }
            sender.join().unwrap();
            assert_eq!(oob, b"!");
            assert_eq!(mark_at, Some(N));
            assert_eq!(stream.len(), N + 3);
            assert!(stream[..N].iter().all(|&c| c == b'x'));
            assert_eq!(&stream[N..], b"def");
        }
    }

    /// Bulk data both ways at once goes by splice (through the shared pipe,
    /// and through backlog pipes while the server reads slowly): every byte
    /// arrives, in order, the byte counts match, and each FIN is carried
    /// with the relay ending Done once both are.
    #[test]
    fn bulk_both_ways_by_splice_with_half_close() {
        const N: usize = 4 << 20;
        let pattern = |i: usize| (i % 251) as u8;
        let mut f = flow_by(true, false, false, 128 * 1024);
        SockRef::from(&f.relay.up.sock)
            .set_send_buffer_size(16 * 1024)
            .unwrap();
        let send = |mut s: StdStream| {
            std::thread::spawn(move || {
                let data: Vec<u8> = (0..N).map(pattern).collect();
                s.write_all(&data).unwrap();
                s.shutdown(Shutdown::Write).unwrap();
            })
        };
        let recv = |mut s: StdStream, slow: bool| {
            std::thread::spawn(move || {
                let mut got = Vec::with_capacity(N);
                let mut b = vec![0u8; 4096];
                loop {
                    match s.read(&mut b).unwrap() {
                        0 => return got,
                        n => got.extend_from_slice(&b[..n]),
                    }
                    if slow && got.len() % (256 * 1024) < 4096 {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                }
            })
        };
        let senders = [
            send(f.client.try_clone().unwrap()),
            send(f.server.try_clone().unwrap()),
        ];
        let to_server = recv(f.server.try_clone().unwrap(), true);
        let to_client = recv(f.client.try_clone().unwrap(), false);
        let mut m = Moved::default();
        let deadline = Instant::now() + WAIT;
        loop {
            assert!(Instant::now() < deadline, "stalled: {m:?}");
            f.take_events(Duration::from_millis(100));
            match f.relay.pump(&mut m, &mut f.scratch, f.cap) {
                Outcome::Open => {}
                Outcome::Done => break,
                r => panic!("{r:?}"),
            }
        }
        for s in senders {
            s.join().unwrap();
        }
        for got in [to_server.join().unwrap(), to_client.join().unwrap()] {
            assert_eq!(got.len(), N);
            assert!(got.iter().enumerate().all(|(i, &b)| b == pattern(i)));
        }
        assert_eq!((m.to_up, m.to_app), (N as u64, N as u64));
        assert_eq!(
            f.scratch.spliced(),
            2 * N as u64,
            "every byte went by splice"
        );
        assert!(f.relay.nothing_for_up() && f.relay.u2a.is_empty());
    }

    /// A flow starts on the copy path: a short request and its answer go by
    /// read and write, no splice; a read of SPLICE_FROM bytes or more moves
    /// that side to splice, the other side staying on the copy path; every
    /// byte arrives in order.
    #[test]
    fn small_exchanges_are_copied_and_bulk_moves_to_splice() {
        let mut f = flow(false, false, 128 * 1024);
        f.client.write_all(b"GET").unwrap();
        queued(&f.relay.app.sock, 3);
        f.settle();
        assert_eq!(read_some(&mut f.server), b"GET");
        f.server.write_all(b"200").unwrap();
        queued(&f.relay.up.sock, 3);
        f.settle();
        assert_eq!(read_some(&mut f.client), b"200");
        assert_eq!(f.scratch.spliced(), 0, "a few bytes are copied");
        assert!(!f.relay.app.splice && !f.relay.up.splice);

        const N: usize = 1 << 20;
        let mut server = f.server.try_clone().unwrap();
        let reader = std::thread::spawn(move || {
            let mut got = vec![0u8; N];
            server.read_exact(&mut got).unwrap();
            got
        });
        let data: Vec<u8> = (0..N).map(|i| (i % 249) as u8).collect();
        // Two writes: the first read takes at least SPLICE_FROM bytes.
        f.client.write_all(&data[..SPLICE_FROM]).unwrap();
        queued(&f.relay.app.sock, SPLICE_FROM);
        f.settle();
        let mut client = f.client.try_clone().unwrap();
        let rest = data[SPLICE_FROM..].to_vec();
        let writer = std::thread::spawn(move || client.write_all(&rest).unwrap());
        let deadline = Instant::now() + WAIT;
        while !reader.is_finished() {
            assert!(Instant::now() < deadline, "stalled");
            f.turn(Duration::from_millis(5));
        }
        writer.join().unwrap();
        assert!(reader.join().unwrap() == data, "bytes lost or reordered");
        assert!(f.relay.app.splice, "the bulk side moved to splice");
        assert!(!f.relay.up.splice, "the other side stays on the copy path");
        assert!(
            f.scratch.spliced() >= (N - SPLICE_FROM) as u64 / 2,
            "spliced {} of {N}",
            f.scratch.spliced()
        );
    }

    /// Flows that lag hold backlog pipes only within the pipe budget: with
    /// room for two pipes (the shared one and one backlog), the first
    /// lagging flow keeps its pipe and the others hold their backlog in
    /// bytes, the capacity of the open pipes never exceeds the budget, and
    /// every byte still arrives in order once the servers read.
    #[test]
    fn lagging_flows_stay_within_the_pipe_budget() {
        const CAP: usize = 16 * 1024;
        const N: usize = 256 * 1024;
        let budget = 2 * pipe_size_for(CAP);
        let mut scratch = Scratch::with_pipe_budget(CAP, budget);
        let mut flows: Vec<Flow> = (0..3).map(|_| flow_by(true, false, false, CAP)).collect();
        let mut senders = Vec::new();
        for f in &mut flows {
            // The servers do not read yet: the upstream send buffer fills.
            SockRef::from(&f.relay.up.sock)
                .set_send_buffer_size(4096)
                .unwrap();
            let mut c = f.client.try_clone().unwrap();
            senders.push(std::thread::spawn(move || {
                let data: Vec<u8> = (0..N).map(|i| (i % 253) as u8).collect();
                c.write_all(&data).unwrap();
                c.shutdown(Shutdown::Write).unwrap();
            }));
        }
        let lagging = |flows: &[Flow]| {
            let pipes = flows.iter().filter(|f| f.relay.a2u.pipe.is_some()).count();
            let bytes = flows.iter().filter(|f| f.relay.a2u.end > 0).count();
            (pipes, bytes)
        };
        // Pump until every flow lags (a backlog of either kind).
        let deadline = Instant::now() + WAIT;
        loop {
            for f in &mut flows {
                f.take_events(Duration::from_millis(5));
                let mut m = Moved::default();
                assert_eq!(f.relay.pump(&mut m, &mut scratch, CAP), Outcome::Open);
                assert!(scratch.pipe_capacity() <= budget, "over the budget");
            }
            let (pipes, bytes) = lagging(&flows);
            if pipes + bytes == flows.len() {
                assert_eq!(
                    (pipes, bytes),
                    (1, 2),
                    "one backlog pipe, two byte backlogs"
                );
                break;
            }
            assert!(
                Instant::now() < deadline,
                "not every flow lags: {pipes} {bytes}"
            );
        }
        // Now the servers read: everything arrives, in order.
        let readers: Vec<_> = flows
            .iter()
            .map(|f| {
                let mut s = f.server.try_clone().unwrap();
                std::thread::spawn(move || {
                    let mut got = Vec::new();
                    s.read_to_end(&mut got).unwrap();
                    got
                })
            })
            .collect();
        let mut done = vec![false; flows.len()];
        while done.iter().any(|d| !d) {
            assert!(Instant::now() < deadline, "stalled");
            for (i, f) in flows.iter_mut().enumerate() {
                if done[i] {
                    continue;
                }
                f.take_events(Duration::from_millis(5));
                let mut m = Moved::default();
                f.relay.pump(&mut m, &mut scratch, CAP);
                assert!(scratch.pipe_capacity() <= budget, "over the budget");
                done[i] = f.relay.up.wr_shut && f.relay.nothing_for_up();
            }
        }
        for s in senders {
            s.join().unwrap();
        }
        for r in readers {
            let got = r.join().unwrap();
            assert_eq!(got.len(), N);
            assert!(got.iter().enumerate().all(|(i, &b)| b == (i % 253) as u8));
        }
        drop(flows);
        assert!(
            scratch.pipe_capacity() <= pipe_size_for(CAP),
            "only the shared pipe is left"
        );
    }

    /// Where SIOCATMARK is refused (Android's SELinux policy for apps; here
    /// a seccomp filter on this thread, where the relay runs), a read that
    /// stopped short at the mark must not end the reads: the urgent byte
    /// and what follows it would wait for an event that never comes. The
    /// stream arrives whole and in order (the mark itself cannot be kept).
    #[test]
    fn without_siocatmark_nothing_stays_behind_the_mark() {
        for splice in [false, true] {
            // A thread of its own: the filter stays with the thread that set it,
            // and libtest may run later tests on this one (--test-threads=1).
            let relay_thread = std::thread::spawn(move || {
                let mut f = flow_by(splice, true, true, 64 * 1024);
                sys::refuse_ioctl_in_this_thread(sys::SIOCATMARK, libc::EACCES);
                assert!(sys::at_urgent_mark(f.relay.app.sock.as_raw_fd()).is_err());
                f.client.write_all(b"abc").unwrap();
                SockRef::from(&f.client).send_out_of_band(b"!").unwrap();
                f.client.write_all(b"def").unwrap();
                queued(&f.relay.app.sock, 7);
                f.settle();
                let mut got = Vec::new();
                while got.len() < 7 {
                    let mut b = [0u8; 64];
                    match f.server.read(&mut b) {
                        Ok(n) if n > 0 => got.extend_from_slice(&b[..n]),
                        r => panic!("after {:?}: {r:?}", String::from_utf8_lossy(&got)),
                    }
                }
                got
            });
            assert_eq!(relay_thread.join().unwrap(), b"abc!def");
        }
    }

    /// With a backlog (the destination full), the relay reads up to the
    /// mark and no further: the urgent byte waits in the socket until
    /// everything before it has gone. The flag is set by hand here, as
    /// the engine does when it sees the URG bit of the app's segment, and
    /// "full" is the relay's writable flag cleared (sockets are real).
    #[test]
    fn reads_stop_at_the_mark_behind_a_backlog() {
        for splice in [false, true] {
            let mut f = flow_by(splice, false, false, 64 * 1024);
            f.client.write_all(b"abc").unwrap();
            SockRef::from(&f.client).send_out_of_band(b"!").unwrap();
            f.client.write_all(b"def").unwrap();
            queued(&f.relay.app.sock, 7);
            f.relay.app.urgent = true;
            f.relay.up.writable = false;
            let mut m = Moved::default();
            let out = f.relay.pump(&mut m, &mut f.scratch, f.cap);
            assert_eq!(out, Outcome::Open);
            assert_eq!(f.relay.a2u.pending(), b"abc");
            assert_eq!(
                sys::unread_bytes(f.relay.app.sock.as_raw_fd()).unwrap(),
                4,
                "`!def` stays in the app socket"
            );
            f.relay.up.writable = true;
            let out = f.relay.pump(&mut m, &mut f.scratch, f.cap);
            assert_eq!(out, Outcome::Open);
            assert!(f.relay.nothing_for_up());
            assert_eq!(read_some(&mut f.server), b"abc");
            assert_eq!(sys::recv_urgent(f.server.as_raw_fd()).unwrap(), b'!');
            assert_eq!(read_some(&mut f.server), b"def");
        }
    }

    /// Closes `s` with a RST (SO_LINGER 0) and waits until `other`, its
    /// peer, has taken it (TCP_CLOSE).
    fn reset_and_wait(s: StdStream, other: &impl AsRawFd) {
        SockRef::from(&s).set_linger(Some(Duration::ZERO)).unwrap();
        drop(s);
        let deadline = Instant::now() + WAIT;
        while sys::tcp_state(other.as_raw_fd()).unwrap() != sys::TCP_CLOSE {
            assert!(Instant::now() < deadline, "the RST never arrived");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Reads `s` to its end: the bytes, and how it ended (None: a FIN).
    fn read_to_end_or_error(s: &mut StdStream) -> (Vec<u8>, Option<io::Error>) {
        let mut got = Vec::new();
        let mut b = vec![0u8; 64 * 1024];
        loop {
            match s.read(&mut b) {
                Ok(0) => return (got, None),
                Ok(n) => got.extend_from_slice(&b[..n]),
                Err(e) => return (got, Some(e)),
            }
        }
    }

    /// The server sends part of a body and resets (SO_LINGER 0), both
    /// queued before the relay pumps (as when a server answers and resets
    /// before the engine's first pump: no poll event, so no hint of the
    /// end). The splice takes the body; the reset must reach the app as a
    /// reset (ECONNRESET), never as a FIN after which a body cut short
    /// looks complete. Review finding: the peek after each splice consumed
    /// the pending ECONNRESET (`sock_error()` clears `sk_err` for a peek
    /// too), and the next splice then read end of stream.
    #[test]
    fn upstream_reset_after_part_of_a_body_reaches_the_app_as_a_reset() {
        const BODY: usize = 10_000;
        for splice in [false, true] {
            let Flow {
                mut client,
                mut server,
                mut relay,
                mut scratch,
                cap,
                mut poll,
                mut events,
            } = flow_by(splice, false, false, 128 * 1024);
            server.write_all(&[b'b'; BODY]).unwrap();
            queued(&relay.up.sock, BODY);
            reset_and_wait(server, &relay.up.sock);
            let mut m = Moved::default();
            // On the copy path the short read ends the side's reads, and the
            // reset comes with the next event; splice's peek finds it at once.
            let deadline = Instant::now() + WAIT;
            let out = loop {
                let out = relay.pump(&mut m, &mut scratch, cap);
                if out != Outcome::Open || splice || Instant::now() > deadline {
                    break out;
                }
                take_events(
                    &mut poll,
                    &mut events,
                    &mut relay,
                    Duration::from_millis(50),
                );
            };
            assert_eq!(
                out,
                Outcome::Reset {
                    app_failed: false,
                    errno: Some(libc::ECONNRESET)
                },
                "moved {m:?}"
            );
            assert_eq!(scratch.spliced() > 0, splice, "the body went by splice");
            // What the engine's loop does with that outcome (close_relay).
            set_rst_on_close(&relay.app.sock);
            drop(relay);
            let (got, end) = read_to_end_or_error(&mut client);
            assert!(got.len() <= BODY && got.iter().all(|&c| c == b'b'));
            let end = end.unwrap_or_else(|| panic!("a FIN after {} bytes, not a reset", got.len()));
            assert_eq!(end.kind(), io::ErrorKind::ConnectionReset, "{end}");
        }
    }

    /// Where the child of [`splicing_into_a_reset_socket_raises_no_sigpipe`]
    /// runs: its name, for `--exact`.
    const SIGPIPE_TEST: &str = "tcp_relay::tests::splicing_into_a_reset_socket_raises_no_sigpipe";

    /// Splicing into a socket that was reset (its error already taken)
    /// fails with EPIPE and raises SIGPIPE: `splice_to_socket` (fs/splice.c)
    /// sends without MSG_NOSIGNAL, and no SPLICE_F_ flag adds it. Under the
    /// default disposition that kills the process; inside a JVM (the
    /// Android app) the disposition is the runtime's. A relay thread
    /// prepared with [`prepare_relay_thread`] (as the engine's is) must
    /// live through it, reset the flow, and leave no SIGPIPE pending.
    /// The Rust runtime ignores SIGPIPE in every main binary, this test
    /// binary included, so the case runs in a child process of this
    /// binary that restores SIG_DFL first (else it could not fail).
    #[test]
    fn splicing_into_a_reset_socket_raises_no_sigpipe() {
        if std::env::var_os("CLAT_SIGPIPE_CHILD").is_some() {
            return sigpipe_child();
        }
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([SIGPIPE_TEST, "--exact", "--nocapture", "--test-threads=1"])
            .env("CLAT_SIGPIPE_CHILD", "1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            out.status.signal(),
            None,
            "the child was killed by a signal (13 is SIGPIPE)\n{text}"
        );
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.contains("sigpipe child: reset, none pending"),
            "{text}"
        );
    }

    fn sigpipe_child() {
        sys::default_sigpipe_disposition();
        let relay_thread = std::thread::spawn(|| {
            prepare_relay_thread().unwrap();
            let Flow {
                mut client,
                server,
                mut relay,
                mut scratch,
                cap,
                ..
            } = flow_by(true, false, false, 64 * 1024);
            reset_and_wait(server, &relay.up.sock);
            // The error is taken (as a read or SO_ERROR would): now a send
            // gets EPIPE, not ECONNRESET.
            assert!(relay.up.sock.take_error().unwrap().is_some());
            client.write_all(b"request").unwrap();
            queued(&relay.app.sock, 7);
            let mut m = Moved::default();
            let out = relay.pump(&mut m, &mut scratch, cap);
            assert_eq!(
                out,
                Outcome::Reset {
                    app_failed: false,
                    errno: Some(libc::EPIPE)
                }
            );
            assert!(scratch.spliced() > 0, "the request went by splice");
            assert!(!sys::sigpipe_pending().unwrap(), "a SIGPIPE left pending");
            // The copy path's urgent byte into the same reset socket: EPIPE,
            // and no signal raised at all (MSG_NOSIGNAL).
            let (mut a, mut b, mut c, mut d) = (0, 0, 0, 0);
            let mut t = Tally {
                moved: &mut a,
                reads: &mut b,
                writes: &mut c,
                taken: &mut d,
            };
            assert_eq!(
                write_urgent(&mut relay.up, b'!', &mut t),
                Err(Some(libc::EPIPE))
            );
            assert!(
                !sys::sigpipe_pending().unwrap(),
                "the urgent byte raised SIGPIPE"
            );
        });
        relay_thread.join().unwrap();
        println!("sigpipe child: reset, none pending");
    }

    /// The byte the app's `i`th byte is in the taken-count tests: a
    /// pattern, so that a lost or doubled byte shows in what the server
    /// reads too.
    fn pat(i: usize) -> u8 {
        (i % 251) as u8
    }

    /// Reads exactly `n` bytes from `s` on a thread of their own, checking
    /// them against [`pat`] from `from` on.
    fn read_in_thread(mut s: StdStream, from: usize, n: usize) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            let mut got = 0;
            let mut b = vec![0u8; 64 << 10];
            while got < n {
                let k = s.read(&mut b[..(n - got).min(64 << 10)]).unwrap();
                assert!(k > 0, "EOF after {got} of {n} bytes");
                for (j, &x) in b[..k].iter().enumerate() {
                    assert_eq!(x, pat(from + got + j), "byte {}", from + got + j);
                }
                got += k;
            }
        })
    }

    /// Turns the flow until `h` has finished.
    fn turn_until(f: &mut Flow, h: &std::thread::JoinHandle<()>) {
        let deadline = Instant::now() + WAIT;
        while !h.is_finished() {
            assert!(Instant::now() < deadline, "the bytes never all arrived");
            f.turn(Duration::from_millis(20));
        }
    }

    /// `app_taken` is the bytes the app sent and the relay read, on either
    /// path: a few bytes (one read), and with an urgent byte in the middle
    /// (read alone, `abc`, `!`, `def`: 7 bytes). An over-count would let
    /// the fast close answer an app FIN with bytes unread
    /// ([`Relay::app_drained`]).
    #[test]
    fn app_taken_counts_the_bytes_the_app_sent() {
        for splice in [false, true] {
            let mut f = flow_by(splice, false, true, 64 * 1024);
            let hello: Vec<u8> = (0..5).map(pat).collect();
            f.client.write_all(&hello).unwrap();
            queued(&f.relay.app.sock, 5);
            f.settle();
            assert_eq!(f.relay.app_taken, 5, "splice {splice}");
            f.client.write_all(b"abc").unwrap();
            SockRef::from(&f.client).send_out_of_band(b"!").unwrap();
            f.client.write_all(b"def").unwrap();
            queued(&f.relay.app.sock, 7);
            f.settle();
            assert_eq!(f.relay.app_taken, 12, "splice {splice}");
            let mut got = vec![0u8; 12];
            f.server.read_exact(&mut got).unwrap();
            assert_eq!(&got[..5], &hello[..]);
            assert_eq!(&got[5..], b"abc!def");
        }
    }

    /// Across the copy path's switch to splice: a few bytes by copy, then
    /// 4 MiB that a read of at least [`SPLICE_FROM`] hands to splice; the
    /// count goes on from one path to the other.
    #[test]
    fn app_taken_across_the_switch_to_splice() {
        let mut f = flow(false, false, 64 * 1024);
        let hello: Vec<u8> = (0..5).map(pat).collect();
        f.client.write_all(&hello).unwrap();
        queued(&f.relay.app.sock, 5);
        f.settle();
        assert!(!f.relay.app.splice, "a few bytes stay on the copy path");
        assert_eq!(f.relay.app_taken, 5);
        const BULK: usize = 4 << 20;
        let mut c = f.client.try_clone().unwrap();
        let w = std::thread::spawn(move || {
            let data: Vec<u8> = (5..5 + BULK).map(pat).collect();
            c.write_all(&data).unwrap();
        });
        let r = read_in_thread(f.server.try_clone().unwrap(), 0, 5 + BULK);
        turn_until(&mut f, &r);
        r.join().unwrap();
        w.join().unwrap();
        assert!(
            f.relay.app.splice,
            "a bulk read switched the side to splice"
        );
        assert_eq!(f.relay.app_taken as usize, 5 + BULK);
    }

    /// With a backlog (a server that does not read: the pipe or buffer
    /// the destination did not take), `app_taken` counts what went into
    /// it and no more: the bytes sent less those still unread on the app
    /// side and those still in the client's send queue. Then the server reads everything, and the count is all.
    #[test]
    fn app_taken_with_a_backlog() {
        for splice in [false, true] {
            let mut f = flow_by(splice, false, false, 64 * 1024);
            f.client.set_nonblocking(true).unwrap();
            let chunk: Vec<u8> = (0..251 * 64).map(pat).collect();
            let mut sent = 0usize;
            // Write until neither the client nor the relay moves a byte.
            loop {
                let before = sent;
                loop {
                    let from = sent % 251;
                    match f.client.write(&chunk[from..from + 251 * 60]) {
                        Ok(n) => sent += n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => panic!("{e}"),
                    }
                }
                f.settle();
                if sent == before {
                    break;
                }
            }
            assert!(!f.relay.nothing_for_up(), "a backlog, splice {splice}");
            let unread = sys::unread_bytes(f.relay.app.sock.as_raw_fd()).unwrap();
            let in_flight = sys::unacked_bytes(f.client.as_raw_fd()).unwrap();
            assert!(unread > 0, "the relay stopped reading the app side");
            assert_eq!(
                f.relay.app_taken as usize,
                sent - unread - in_flight,
                "splice {splice}"
            );
            assert!(!f.relay.app_drained(sent as u32));
            let r = read_in_thread(f.server.try_clone().unwrap(), 0, sent);
            turn_until(&mut f, &r);
            r.join().unwrap();
            assert_eq!(f.relay.app_taken as usize, sent, "splice {splice}");
        }
    }

    /// The fast close's condition with bytes of the app unread: our FIN
    /// went to the app and nothing waits to go upstream, but 5 bytes the
    /// app sent arrived after the relay's last read (their event not yet
    /// taken), so `app_drained` of what the app sent is false; once the
    /// relay has read them, it is true.
    #[test]
    fn app_drained_false_while_app_bytes_are_unread() {
        for splice in [false, true] {
            let mut f = flow_by(splice, false, false, 64 * 1024);
            f.client.write_all(b"hello").unwrap();
            queued(&f.relay.app.sock, 5);
            f.settle();
            assert!(!f.relay.app.readable, "drained, waiting for an event");
            f.client.write_all(b"world").unwrap();
            queued(&f.relay.app.sock, 5);
            // The server's FIN, carried to the app without taking the
            // app side's event.
            f.server.shutdown(Shutdown::Write).unwrap();
            let deadline = Instant::now() + WAIT;
            while !f.relay.app.wr_shut {
                assert!(Instant::now() < deadline, "the FIN never came");
                f.relay.up.readable = true;
                f.relay.up.closing = true;
                let mut m = Moved::default();
                f.relay.pump(&mut m, &mut f.scratch, f.cap);
                std::thread::sleep(Duration::from_millis(1));
            }
            assert!(f.relay.nothing_for_up());
            assert_eq!(f.relay.app_taken, 5);
            assert!(!f.relay.app_drained(10), "5 bytes unread, splice {splice}");
            f.settle();
            assert_eq!(f.relay.app_taken, 10);
            assert!(f.relay.app_drained(10), "splice {splice}");
        }
    }

    /// A server's class 0 replaces the DSCP the app side was given from
    /// the SYN (tcp_reflect_tos, set by hand here): mirror_traffic_class
    /// must set 0, not skip it as "nothing to set". The upstream half (the
    /// server reads class 0 for a SYN of TOS 0x01, ECN only) is a sanity
    /// check that cannot fail: on a stream socket IPV6_TCLASS takes no ECN
    /// bits (`do_ipv6_setsockopt` keeps TCP's own in their place), and
    /// setting class 0 is the same as not setting it, so a prepare_upstream
    /// that copied the ECN bits or wrote 0 would pass it as well. So does
    /// the app side's check for `syn_tos` 0x01, whose DSCP is 0 already:
    /// only 0x28 can fail there.
    #[test]
    fn traffic_class_zero_both_ways() {
        let sl = Socket::new(Domain::IPV6, Type::STREAM, Some(Protocol::TCP)).unwrap();
        sl.set_recv_tclass_v6(true).unwrap();
        sl.bind(&SockAddr::from(SocketAddr::from((
            std::net::Ipv6Addr::LOCALHOST,
            0,
        ))))
        .unwrap();
        sl.listen(8).unwrap();
        let to = sl.local_addr().unwrap().as_socket().unwrap();
        for syn_tos in [0x01u8, 0x28] {
            let up = Socket::new(Domain::IPV6, Type::STREAM, Some(Protocol::TCP)).unwrap();
            // See the doc: this half cannot fail.
            prepare_upstream(&up, &to, 0x01, true).unwrap();
            up.connect(&SockAddr::from(to)).unwrap();
            let (srv, _) = sl.accept().unwrap();
            assert_eq!(sys::received_tclass(srv.as_raw_fd()).unwrap(), Some(0));

            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            let _client = StdStream::connect(l.local_addr().unwrap()).unwrap();
            let (app, _) = l.accept().unwrap();
            let (up, app) = (TcpStream::from_std(up.into()), TcpStream::from_std(app));
            SockRef::from(&app)
                .set_tos_v4(u32::from(syn_tos & 0xfc))
                .unwrap();
            let got = mirror_traffic_class(&up, &app, (true, false), syn_tos).unwrap();
            assert_eq!(got, Some(0));
            assert_eq!(
                SockRef::from(&app).tos_v4().unwrap(),
                0,
                "syn_tos {syn_tos:#x}"
            );
        }
    }

    /// The DSCP of the app's SYN marks the upstream SYN and what follows
    /// (the server reads the class of the handshake's last ACK); the
    /// server's SYN-ACK class comes back as the app side's IP_TOS; the ECN
    /// bits of neither are copied.
    #[test]
    fn traffic_class_both_ways() {
        let sl = Socket::new(Domain::IPV6, Type::STREAM, Some(Protocol::TCP)).unwrap();
        sl.set_tclass_v6(0x28).unwrap();
        sl.set_recv_tclass_v6(true).unwrap();
        sl.bind(&SockAddr::from(SocketAddr::from((
            std::net::Ipv6Addr::LOCALHOST,
            0,
        ))))
        .unwrap();
        sl.listen(8).unwrap();
        let to = sl.local_addr().unwrap().as_socket().unwrap();
        let up = Socket::new(Domain::IPV6, Type::STREAM, Some(Protocol::TCP)).unwrap();
        prepare_upstream(&up, &to, 0xb9, true).unwrap();
        up.connect(&SockAddr::from(to)).unwrap();
        let (srv, _) = sl.accept().unwrap();
        assert_eq!(sys::received_tclass(srv.as_raw_fd()).unwrap(), Some(0xb8));

        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = StdStream::connect(l.local_addr().unwrap()).unwrap();
        let (app, _) = l.accept().unwrap();
        let (up, app) = (TcpStream::from_std(up.into()), TcpStream::from_std(app));
        assert_eq!(
            mirror_traffic_class(&up, &app, (true, false), 0xb9).unwrap(),
            Some(0x28)
        );
        assert_eq!(SockRef::from(&app).tos_v4().unwrap(), 0x28);
        assert!(
            !SockRef::from(&up).recv_tclass_v6().unwrap(),
            "latching stops after the SYN-ACK"
        );
    }
}
