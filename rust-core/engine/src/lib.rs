//! The CLAT engine: IPv4 packets from a TUN become flows re-originated over
//! protected sockets: IPv6 towards the NAT64 prefix, or IPv4 to the
//! destination itself where the network has native IPv4 ([`ipv4_path`];
//! docs/ARCHITECTURE.md, "The data path").
//!
//! - TCP is terminated by the kernel: app packets are NATed onto the
//!   engine's own listener on the TUN address ([`nat_tcp`]), the accepted
//!   socket is relayed to an upstream IPv6 socket ([`tcp_relay`]).
//! - UDP: one upstream socket per app source port (endpoint-independent
//!   mapping and filtering, RFC 4787); ICMP echo through ping sockets;
//!   each datagram keeps its TTL, TOS and DF as hop limit, traffic class
//!   and DONTFRAG; ICMPv6 errors from the sockets' error queues become
//!   ICMPv4 errors ([`path_error`]); the mappings are [`datagram_mappings`].
//! - DNS: a relay on the internal DNS address (UDP, TCP on truncation).
//! - One thread, one mio `Poll`, sleeping until the next flow deadline.
//!
//! `unsafe` is denied in the crate except in `sys`, its one module of raw
//! system calls.

#![deny(unsafe_code)]

pub mod config;
mod datagram_mappings;
mod dns_names;
mod dns_queries;
mod dns_wire;
mod event_loop;
pub mod flow_events;
mod frag;
mod icmp_rate;
pub mod ipv4_path;
mod nat_tcp;
pub mod packet;
mod path_error;
mod port_table;
mod stats;
mod sys;
mod tcp_flows;
mod tcp_relay;
mod timers;
mod too_big_resend;
mod tun_io;

pub use config::{ConfigError, EngineConfig};
pub use flow_events::{FlowEnd, FlowEndReason, FlowEvent, FlowEvents, FlowProto, FlowStart};
pub use ipv4_path::Ipv4Path;
pub use stats::Stats;
pub use sys::{open_tun, open_tun_offload};
pub use tcp_relay::MAX_PIPE_FDS;
pub use tun_io::VNET_HDR_LEN;

use event_loop::{Command, Loop, Shared, WAKER};
use ipnet::Ipv6Net;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{channel, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Why an engine call failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    #[error("the engine is not running")]
    NotRunning,
    #[error("the engine thread panicked")]
    Panicked,
}

/// A running engine: its own thread, readiness-driven.
pub struct Engine {
    tx: Sender<Command>,
    /// Dropped by `stop` so that its eventfd closes with everything else.
    waker: Option<Arc<mio::Waker>>,
    thread: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
    /// The consumer's side of the flow events, when configured.
    flow_events: Option<FlowEvents>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("running", &self.is_running())
            .finish()
    }
}

impl Engine {
    /// Starts the engine on `tun` (an IPv4 TUN whose address is
    /// `config.clat_v4` in a /29, or at least routes `config.nat_v4` to the
    /// TUN). Every upstream socket goes through `protector` before use.
    pub fn start(
        tun: OwnedFd,
        config: EngineConfig,
        protector: clat_protect::Protector,
    ) -> Result<Engine, EngineError> {
        config.validate()?;
        sys::set_nonblocking(tun.as_raw_fd())?;
        let poll = mio::Poll::new()?;
        let waker = Arc::new(mio::Waker::new(poll.registry(), WAKER)?);
        let listener = bind_listener(config.clat_v4.into())?;
        let listener6 = if config.carry_ipv6 {
            Some(bind_listener(config.clat_v6.into())?)
        } else {
            None
        };
        let (tx, rx) = channel();
        let shared = Arc::new(Shared::default());
        shared.running.store(true, Ordering::SeqCst);
        let listeners = (listener, listener6);
        let (flow_sink, flow_events) = match config.flow_events {
            0 => (None, None),
            n => {
                let (s, e) = flow_events::channel(n);
                (Some(s), Some(e))
            }
        };
        let closer = flow_sink.clone();
        let lp = Loop::new(poll, tun, listeners, config, shared.clone(), protector, rx)?
            .with_flow_events(flow_sink);
        let sh = shared.clone();
        let thread = std::thread::Builder::new()
            .name("clat-engine".into())
            .spawn(move || {
                if let Err(e) = tcp_relay::prepare_relay_thread() {
                    log::warn!("SIGPIPE not blocked on the engine thread: {e}");
                }
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| lp.run()));
                if r.is_err() {
                    *sh.exit.lock().unwrap_or_else(|e| e.into_inner()) =
                        Some("engine thread panicked".into());
                }
                sh.running.store(false, Ordering::SeqCst);
                if let Some(s) = closer {
                    s.close();
                }
                *sh.ended.lock().unwrap_or_else(|e| e.into_inner()) = true;
                sh.ended_cv.notify_all();
            })?;
        Ok(Engine {
            tx,
            waker: Some(waker),
            thread: Some(thread),
            shared,
            flow_events,
        })
    }

    /// The flow events of this engine ([`flow_events`]): `None` unless
    /// started with `EngineConfig::flow_events > 0`. Every clone of the
    /// handle takes from the same queue, so there should be one consumer.
    pub fn flow_events(&self) -> Option<FlowEvents> {
        self.flow_events.clone()
    }

    /// A snapshot of the counters (lock-free reads).
    pub fn stats(&self) -> Stats {
        self.shared.counters.snapshot()
    }

    fn send(&self, c: Command) -> Result<(), EngineError> {
        if !self.is_running() {
            return Err(EngineError::NotRunning);
        }
        let waker = self.waker.as_ref().ok_or(EngineError::NotRunning)?;
        self.tx.send(c).map_err(|_| EngineError::NotRunning)?;
        waker.wake()?;
        Ok(())
    }

    /// Switches the NAT64 prefix; flows that used the old one are reset.
    /// Errors: [`ConfigError::Prefix`] for a prefix RFC 6052 does not
    /// allow (the check of [`EngineConfig::validate`]), `NotRunning`.
    pub fn set_prefix(&self, prefix: Ipv6Net) -> Result<(), EngineError> {
        clat_xlat::addr6052::validate_prefix(&prefix).map_err(ConfigError::Prefix)?;
        self.send(Command::SetPrefix(prefix))
    }

    /// Chooses the upstream path of new IPv4 flows ([`ipv4_path`]): each
    /// flow keeps the path it was created on, except that switching to
    /// [`Ipv4Path::Nat64`] (native IPv4 lost) resets the native flows at
    /// once (TCP: RST to the app; UDP and echo mappings forgotten), so
    /// apps reconnect over the NAT64. Errors: `NotRunning`.
    pub fn set_ipv4_path(&self, path: Ipv4Path) -> Result<(), EngineError> {
        self.send(Command::SetIpv4Path(path))
    }

    /// Replaces the upstream resolvers of the DNS relay.
    pub fn set_upstream_dns(&self, servers: Vec<SocketAddr>) -> Result<(), EngineError> {
        self.send(Command::SetDns(servers))
    }

    /// The underlying network changed: reset upstream flows and DNS sockets.
    pub fn network_changed(&self) -> Result<(), EngineError> {
        self.send(Command::NetworkChanged)
    }

    /// A handle that waits for this engine's thread to end.
    pub fn exit_watch(&self) -> ExitWatch {
        ExitWatch(self.shared.clone())
    }

    pub fn is_running(&self) -> bool {
        self.shared.running.load(Ordering::SeqCst)
    }

    /// Why the loop ended on its own (e.g. the TUN was closed).
    pub fn exit_reason(&self) -> Option<String> {
        self.shared
            .exit
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Stops the loop, joins the thread; every socket and the TUN fd are
    /// closed when this returns. Idempotent.
    pub fn stop(&mut self) -> Result<(), EngineError> {
        let Some(t) = self.thread.take() else {
            return Ok(());
        };
        let _ = self.tx.send(Command::Stop);
        if let Some(w) = &self.waker {
            let _ = w.wake();
        }
        let r = t.join().map_err(|_| EngineError::Panicked);
        // Only now: closing the eventfd earlier could drop the wake-up.
        self.waker = None;
        r
    }
}

/// Waits for an engine's thread to end, from any thread and without the
/// [`Engine`] itself (its owner may keep it behind a lock): `clat run`
/// turns the end into a signal, so that it reacts at once when the engine
/// stops on its own (the TUN went away) instead of at its next poll.
#[derive(Clone)]
pub struct ExitWatch(Arc<Shared>);

impl ExitWatch {
    /// Blocks until the engine thread has ended (returns at once if it has).
    pub fn wait(&self) {
        let mut ended = self.0.ended.lock().unwrap_or_else(|e| e.into_inner());
        while !*ended {
            ended = self
                .0
                .ended_cv
                .wait(ended)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Why the loop ended on its own, once it has ([`Engine::exit_reason`]
    /// without the engine); `None` while it runs or after a plain stop.
    pub fn reason(&self) -> Option<String> {
        self.0
            .exit
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// A listener that the NATed app connections reach: bound to the CLAT
/// address `addr` (`clat_v4`, or `clat_v6` when IPv6 is carried), port
/// chosen by the kernel, with IP_FREEBIND / IPV6_FREEBIND so that it works
/// even before the address is up.
fn bind_listener(addr: std::net::IpAddr) -> io::Result<mio::net::TcpListener> {
    use socket2::{Domain, Protocol, SockAddr, Socket, Type};
    let s = Socket::new(
        Domain::for_address(SocketAddr::new(addr, 0)),
        Type::STREAM.nonblocking().cloexec(),
        Some(Protocol::TCP),
    )?;
    s.set_reuse_address(true)?;
    // Accepted sockets inherit it: the app's own segmenting already happened.
    let _ = s.set_tcp_nodelay(true);
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
        let _ = s.set_freebind_v6(true);
    } else {
        let _ = s.set_freebind_v4(true);
    }
    // Urgent bytes stay in the stream; accepted sockets inherit it.
    tcp_relay::set_oob_inline(&s)?;
    s.bind(&SockAddr::from(SocketAddr::new(addr, 0)))?;
    s.listen(4096)?;
    Ok(mio::net::TcpListener::from_std(
        std::net::TcpListener::from(s),
    ))
}
