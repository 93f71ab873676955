//! Real-TUN integration tests. Each test creates its own network namespace
//! (`clat-eng-<pid>-<test>`), re-executes this test binary inside it with
//! `ip netns exec`, and there builds: an IPv4-only TUN `clat0` with
//! 192.0.0.4/29 and the IPv4 default route, the engine on it with the prefix
//! 2001:db8:64::/96, and IPv6 "upstream" servers on loopback addresses
//! inside the prefix (2001:db8:64::cb00:710a = 203.0.113.10, ::cb00:710b =
//! 203.0.113.11, ::35 = DNS). IPv4 clients then go TUN -> engine -> IPv6.
//!
//! Needs root (namespaces, TUN); without it every test fails loudly.

use clat_engine::{open_tun, open_tun_offload, Engine, EngineConfig, Stats};
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::Command;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

const INNER: &str = "CLAT_ENG_TEST_INNER";
const SRV_V6: &str = "2001:db8:64::cb00:710a";
const SRV2_V6: &str = "2001:db8:64::cb00:710b";
const DNS_V6: &str = "2001:db8:64::35";
const SRV_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
const SRV2_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 11);

fn sh(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `name` (a test of this binary) inside a fresh namespace.
fn in_netns(name: &str) -> bool {
    if std::env::var_os(INNER).is_some() {
        return true;
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "engine integration tests need root (network namespaces and TUN); run them as root"
    );
    // One namespace test at a time: on a loaded 2-CPU machine, parallel
    // namespace set-ups made loopback IPv6 routes flap (rare ENETUNREACH).
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let ns = format!(
        "clat-eng-{}-{}",
        std::process::id(),
        name.chars().take(20).collect::<String>()
    );
    sh("ip", &["netns", "add", &ns]);
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("ip")
        .args(["netns", "exec", &ns])
        .arg(exe)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(INNER, "1")
        .output();
    let _ = Command::new("ip").args(["netns", "del", &ns]).status();
    let out = out.expect("ip netns exec");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        out.status.success(),
        "test body {name} failed in namespace {ns}"
    );
    assert!(
        stdout.contains("1 passed"),
        "test body {name} did not run in the namespace"
    );
    false
}

/// Namespace plumbing plus a running engine.
struct Lab {
    engine: Engine,
}

fn setup_ns() {
    let _ = env_logger::builder().is_test(true).try_init();
    sh("ip", &["link", "set", "lo", "up"]);
    for a in [SRV_V6, SRV2_V6, DNS_V6] {
        sh(
            "ip",
            &[
                "-6",
                "addr",
                "add",
                &format!("{a}/128"),
                "dev",
                "lo",
                "nodad",
            ],
        );
    }
    std::fs::write("/proc/sys/net/ipv4/ping_group_range", "0 2147483647")
        .expect("ping_group_range");
    wait_addresses();
}

/// New loopback addresses take a moment to become usable, and their local
/// routes come and go while the TUN is configured (kernel work queues):
/// wait until bind and connect both work.
fn wait_addresses() {
    for a in [SRV_V6, SRV2_V6, DNS_V6] {
        let t0 = Instant::now();
        // bind needs the address, connect its local route (added later,
        // from a kernel work queue: ENETUNREACH until then).
        let usable = || {
            UdpSocket::bind(format!("[{a}]:0")).is_ok()
                && UdpSocket::bind("[::]:0")
                    .and_then(|u| u.connect(format!("[{a}]:9")))
                    .is_ok()
        };
        let usable = || {
            usable() && {
                // and a TCP round trip works (local delivery, not only the route)
                let l = TcpListener::bind(format!("[{a}]:0")).unwrap();
                TcpStream::connect_timeout(&l.local_addr().unwrap(), Duration::from_millis(200))
                    .and_then(|mut c| {
                        let (mut s, _) = l.accept()?;
                        s.write_all(b"k")?;
                        c.read_exact(&mut [0u8; 1])
                    })
                    .is_ok()
            }
        };
        while !usable() {
            assert!(
                t0.elapsed() < Duration::from_secs(5),
                "{a} never became usable"
            );
            thread::sleep(Duration::from_millis(10));
        }
    }
}

fn start_engine(cfg: EngineConfig) -> Lab {
    start_engine_protected(cfg, Arc::new(clat_protect::NoProtect))
}

/// Whether the tests open their TUN as `clat run` does by default, with a
/// virtio-net header and offloads (CLAT_TEST_OFFLOADS=1: the whole suite
/// then runs over such a TUN); otherwise as Android's VpnService does.
fn offloads_by_default() -> bool {
    std::env::var_os("CLAT_TEST_OFFLOADS").is_some_and(|v| v == "1")
}

fn start_engine_protected(cfg: EngineConfig, protector: clat_protect::Protector) -> Lab {
    let (fd, cfg) = tun_ready(cfg);
    start_on_tun(fd, cfg, protector)
}

/// The engine on the TUN `fd` that [`tun_ready`] set up.
fn start_on_tun(
    fd: std::os::fd::OwnedFd,
    cfg: EngineConfig,
    protector: clat_protect::Protector,
) -> Lab {
    let engine = Engine::start(fd, cfg, protector).expect("engine start");
    wait_addresses();
    Lab { engine }
}

/// The TUN opened, addressed, up and the default route, without the
/// engine: what apps send waits in its queue (txqueuelen 500) until
/// [`start_on_tun`].
fn tun_ready(cfg: EngineConfig) -> (std::os::fd::OwnedFd, EngineConfig) {
    let mut cfg = cfg;
    let (fd, name) = if cfg.tun_vnet_hdr || offloads_by_default() {
        let (fd, name, on) = open_tun_offload("clat0").expect("open TUN");
        assert!(on, "the kernel refused the TUN offloads");
        cfg.tun_vnet_hdr = true;
        (fd, name)
    } else {
        open_tun("clat0").expect("open TUN")
    };
    sh("ip", &["addr", "add", "192.0.0.4/29", "dev", &name]);
    // IPv4-only TUN: no IPv6 autoconf chatter (RS, MLD) waking the engine.
    std::fs::write(format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6"), "1")
        .expect("disable_ipv6");
    sh(
        "ip",
        &["link", "set", &name, "mtu", &cfg.mtu.to_string(), "up"],
    );
    sh("ip", &["route", "add", "default", "dev", &name]);
    (fd, cfg)
}

fn base_cfg() -> EngineConfig {
    // CLAT_TEST_MTU lets a human compare TUN MTUs with the bulk test; the
    // default is the engine's own default.
    let mtu = std::env::var("CLAT_TEST_MTU")
        .ok()
        .and_then(|m| m.parse().ok())
        .unwrap_or(EngineConfig::default().mtu);
    EngineConfig {
        mtu,
        prefix: "2001:db8:64::/96".parse().unwrap(),
        upstream_dns: vec![format!("[{DNS_V6}]:53").parse().unwrap()],
        ..Default::default()
    }
}

fn lab() -> Lab {
    setup_ns();
    start_engine(base_cfg())
}

fn stats(l: &Lab) -> Stats {
    l.engine.stats()
}

fn pattern(i: usize) -> u8 {
    (i.wrapping_mul(2654435761) >> 13) as u8
}

/// An IPv6 TCP server: echoes everything, half-closes after the client's FIN.
fn echo_server(addr: &str) -> SocketAddr {
    let l = TcpListener::bind(addr).unwrap();
    let a = l.local_addr().unwrap();
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            thread::spawn(move || {
                let mut buf = vec![0u8; 65536];
                loop {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
                let _ = s.shutdown(Shutdown::Write);
            });
        }
    });
    a
}

#[test]
fn tcp_bulk_transfer_both_ways() {
    if !in_netns("tcp_bulk_transfer_both_ways") {
        return;
    }
    let l = lab();
    let port = echo_server(&format!("[{SRV_V6}]:0")).port();
    const N: usize = 16 << 20;
    let t0 = Instant::now();
    let mut c = TcpStream::connect((SRV_V4, port)).expect("connect through the CLAT");
    let mut w = c.try_clone().unwrap();
    let writer = thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        let mut off = 0;
        while off < N {
            let n = buf.len().min(N - off);
            for (i, b) in buf[..n].iter_mut().enumerate() {
                *b = pattern(off + i);
            }
            w.write_all(&buf[..n]).unwrap();
            off += n;
        }
        w.shutdown(Shutdown::Write).unwrap();
    });
    let mut got = 0usize;
    let mut buf = vec![0u8; 65536];
    loop {
        let n = c.read(&mut buf).expect("read echo");
        if n == 0 {
            break;
        }
        for (i, &b) in buf[..n].iter().enumerate() {
            assert_eq!(b, pattern(got + i), "byte {} differs", got + i);
        }
        got += n;
    }
    writer.join().unwrap();
    let dt = t0.elapsed();
    assert_eq!(got, N, "echoed byte count");
    println!(
        "echoed {} MiB in {:?}: {:.1} Mbit/s each way",
        N >> 20,
        dt,
        (N as f64 * 8.0) / dt.as_secs_f64() / 1e6
    );
    let s = stats(&l);
    assert!(
        s.up_tx_bytes >= N as u64 && s.up_rx_bytes >= N as u64,
        "{s:?}"
    );
    assert_eq!(s.flows_tcp_total, 1);
}

/// What `ethtool -k clat0` says of `feature` ("on" or "off").
fn ethtool_feature(feature: &str) -> String {
    let out = Command::new("ethtool")
        .args(["-k", "clat0"])
        .output()
        .expect("ethtool (apt-get install ethtool)");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{feature}:")))
        .and_then(|v| v.split_whitespace().next())
        .unwrap_or_else(|| panic!("no {feature} in ethtool -k: {text}"))
        .to_string()
}

/// `clat run`'s TUN (IFF_VNET_HDR, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6)
/// at MTU 1500: 32 MiB each way at once through an echo server arrive
/// byte-exact, the kernel reports the offloads on, TCP crosses the TUN
/// in packets larger than the MTU (TSO segments kept whole: the mean
/// packet the engine reads is above 1500 bytes), and UDP through the same
/// TUN (its partial checksum left alone, only its payload goes on) is
/// echoed intact too.
#[test]
fn tcp_with_tun_offloads_is_byte_exact_both_ways() {
    if !in_netns("tcp_with_tun_offloads_is_byte_exact_both_ways") {
        return;
    }
    setup_ns();
    let l = start_engine(EngineConfig {
        mtu: 1500,
        tun_vnet_hdr: true,
        ..base_cfg()
    });
    assert_eq!(ethtool_feature("tx-checksumming"), "on");
    assert_eq!(ethtool_feature("tcp-segmentation-offload"), "on");
    let port = echo_server(&format!("[{SRV_V6}]:0")).port();
    const N: usize = 32 << 20;
    let mut c = TcpStream::connect((SRV_V4, port)).expect("connect through the CLAT");
    let mut w = c.try_clone().unwrap();
    let writer = thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 20];
        let mut off = 0;
        while off < N {
            let n = buf.len().min(N - off);
            for (i, b) in buf[..n].iter_mut().enumerate() {
                *b = pattern(off + i);
            }
            w.write_all(&buf[..n]).unwrap();
            off += n;
        }
        w.shutdown(Shutdown::Write).unwrap();
    });
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 20];
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    loop {
        let n = c
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("after {got} bytes: {e}; {:?}", stats(&l)));
        if n == 0 {
            break;
        }
        for (i, &b) in buf[..n].iter().enumerate() {
            assert_eq!(b, pattern(got + i), "byte {} differs", got + i);
        }
        got += n;
    }
    writer.join().unwrap();
    assert_eq!(got, N, "echoed byte count");
    let s = stats(&l);
    println!("{s:?}");
    assert!(
        s.up_tx_bytes >= N as u64 && s.up_rx_bytes >= N as u64,
        "{s:?}"
    );
    let mean = s.tun_rx_bytes / s.tun_rx_packets.max(1);
    assert!(
        mean > 1500,
        "mean TUN packet {mean} bytes: no TSO segment came whole"
    );
    assert_eq!(s.drop_malformed, 0, "{s:?}");

    let addr = udp_server(&format!("[{SRV_V6}]:0"));
    let u = UdpSocket::bind("0.0.0.0:0").unwrap();
    u.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    u.connect((SRV_V4, addr.port())).unwrap();
    for size in [1usize, 1000, 1472] {
        let msg: Vec<u8> = (0..size).map(pattern).collect();
        u.send(&msg).unwrap();
        let mut back = vec![0u8; 2048];
        let n = u.recv(&mut back).expect("UDP echo through the offload TUN");
        // The server puts the port it saw first.
        assert_eq!(&back[2..n], &msg[..], "UDP echo of {size} bytes");
    }
}

#[test]
fn tcp_half_close_carries_fin_both_ways() {
    if !in_netns("tcp_half_close_carries_fin_both_ways") {
        return;
    }
    let _l = lab();
    // Server: reads until EOF, then answers with the byte count and closes.
    let srv = TcpListener::bind(format!("[{SRV_V6}]:0")).unwrap();
    let port = srv.local_addr().unwrap().port();
    let h = thread::spawn(move || {
        let (mut s, peer) = srv.accept().unwrap();
        let mut v = Vec::new();
        s.read_to_end(&mut v).unwrap();
        s.write_all(format!("got {} from {}", v.len(), peer.ip()).as_bytes())
            .unwrap();
    });
    let mut c = TcpStream::connect((SRV_V4, port)).unwrap();
    c.write_all(&[7u8; 100_000]).unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut ans = String::new();
    c.read_to_string(&mut ans)
        .unwrap_or_else(|e| panic!("answer after our FIN, then EOF: {e}: {:?}", stats(&_l)));
    h.join().unwrap();
    assert!(ans.starts_with("got 100000 from "), "{ans}");
}

/// A server that speaks first (an SSH or SMTP banner right after accept):
/// its greeting reaches the upstream socket before or while the engine
/// accepts the app side, and that socket's readiness event is taken before
/// the relay exists, so the relay must start with the upstream side
/// readable (event_loop/tcp.rs, `on_upstream`), or the greeting waits for
/// an event that never comes (edge-triggered) and a client that only reads
/// hangs. Then a reply each way. Several connections, since the greeting's
/// arrival races the engine's accept.
#[test]
fn tcp_server_speaks_first() {
    if !in_netns("tcp_server_speaks_first") {
        return;
    }
    let _l = lab();
    const ROUNDS: usize = 20;
    let srv = TcpListener::bind(format!("[{SRV_V6}]:0")).unwrap();
    let port = srv.local_addr().unwrap().port();
    let h = thread::spawn(move || {
        for i in 0..ROUNDS {
            let (mut s, _) = srv.accept().unwrap();
            s.write_all(format!("220 banner {i}\r\n").as_bytes())
                .unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut b = [0u8; 64];
            let n = s.read(&mut b).unwrap();
            assert_eq!(&b[..n], format!("HELO {i}\r\n").as_bytes());
            s.write_all(format!("250 ok {i}\r\n").as_bytes()).unwrap();
        }
    });
    for i in 0..ROUNDS {
        let mut c = TcpStream::connect((SRV_V4, port)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut b = [0u8; 64];
        let n = c
            .read(&mut b)
            .unwrap_or_else(|e| panic!("round {i}: no greeting: {e}: {:?}", stats(&_l)));
        assert_eq!(&b[..n], format!("220 banner {i}\r\n").as_bytes());
        c.write_all(format!("HELO {i}\r\n").as_bytes()).unwrap();
        let n = c
            .read(&mut b)
            .unwrap_or_else(|e| panic!("round {i}: no answer: {e}"));
        assert_eq!(&b[..n], format!("250 ok {i}\r\n").as_bytes());
    }
    h.join().unwrap();
}

#[test]
fn tcp_refused_port_resets_promptly() {
    if !in_netns("tcp_refused_port_resets_promptly") {
        return;
    }
    let l = lab();
    // A port nobody listens on (bind then drop to get a free one).
    let port = TcpListener::bind(format!("[{SRV_V6}]:0"))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let t0 = Instant::now();
    // The app's SYN is held until the upstream connect resolves: the
    // refusal is connect()'s own (ECONNREFUSED), never a reset afterwards.
    let err = TcpStream::connect_timeout(&(SRV_V4, port).into(), Duration::from_secs(3))
        .expect_err("connect() to a closed port succeeded");
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err:?}");
    assert!(
        t0.elapsed() < Duration::from_secs(1),
        "reset took {:?}",
        t0.elapsed()
    );
    assert!(stats(&l).tcp_rst_sent >= 1);
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < timeout, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// UDP echo server on `addr`: answers `[peer port (2 bytes)] + payload`,
/// or, for a request starting with "BIG", `n` bytes (n in the request).
fn udp_server(addr: &str) -> SocketAddr {
    let s = UdpSocket::bind(addr).unwrap();
    let a = s.local_addr().unwrap();
    thread::spawn(move || {
        let mut buf = vec![0u8; 70000];
        loop {
            let Ok((n, peer)) = s.recv_from(&mut buf) else {
                return;
            };
            let req = buf[..n].to_vec();
            let mut out = peer.port().to_be_bytes().to_vec();
            if req.starts_with(b"BIG") {
                let want: usize = String::from_utf8_lossy(&req[3..]).parse().unwrap();
                out.extend((0..want).map(pattern));
            } else {
                out.extend_from_slice(&req);
            }
            let _ = s.send_to(&out, peer);
        }
    });
    a
}

#[test]
fn udp_echo_sizes_and_endpoint_independent_mapping() {
    if !in_netns("udp_echo_sizes_and_endpoint_independent_mapping") {
        return;
    }
    let l = lab();
    let p1 = udp_server(&format!("[{SRV_V6}]:0")).port();
    let p2 = udp_server(&format!("[{SRV2_V6}]:0")).port();
    let c = UdpSocket::bind("0.0.0.0:0").unwrap();
    c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buf = vec![0u8; 70000];
    let mut seen_ports = Vec::new();
    // Up to 1472 fits the TUN MTU; above, the app's kernel fragments and
    // the engine reassembles before sending over IPv6.
    for size in [
        0usize, 1, 2, 3, 100, 512, 1000, 1400, 1472, 1473, 3000, 8000, 30000, 60000,
    ] {
        for (ip, port) in [(SRV_V4, p1), (SRV2_V4, p2)] {
            let msg: Vec<u8> = (0..size).map(|i| pattern(i + size)).collect();
            c.send_to(&msg, (ip, port)).unwrap();
            let (n, from) = c
                .recv_from(&mut buf)
                .unwrap_or_else(|e| panic!("no echo of {size} bytes from {ip}: {e}"));
            assert_eq!(
                from,
                SocketAddr::from((ip, port)),
                "reply source is the embedded IPv4 address"
            );
            assert_eq!(&buf[2..n], &msg[..], "payload of size {size}");
            seen_ports.push(u16::from_be_bytes([buf[0], buf[1]]));
        }
    }
    seen_ports.dedup();
    assert_eq!(
        seen_ports.len(),
        1,
        "one upstream socket (same source port) for every destination: {seen_ports:?}"
    );
    // Replies larger than the TUN MTU still arrive whole.
    for want in [1473usize, 4000, 20000, 65000] {
        c.send_to(format!("BIG{want}").as_bytes(), (SRV_V4, p1))
            .unwrap();
        let (n, _) = c
            .recv_from(&mut buf)
            .unwrap_or_else(|e| panic!("no {want}-byte reply: {e}"));
        assert_eq!(n, want + 2);
        assert!(buf[2..n].iter().enumerate().all(|(i, &b)| b == pattern(i)));
    }
    // IPv6 carries UDP payloads up to 65,527 bytes, IPv4 up to 65,507: the
    // largest that fits arrives whole, a larger one is dropped and counted,
    // never cut short.
    for (want, arrives) in [(65505usize, true), (65520, false), (10, true)] {
        c.send_to(format!("BIG{want}").as_bytes(), (SRV_V4, p1))
            .unwrap();
        if arrives {
            let (n, _) = c.recv_from(&mut buf).expect("a reply that fits IPv4");
            assert_eq!(n, want + 2, "the 65,522-byte reply must not arrive");
        }
    }
    let s = stats(&l);
    assert_eq!(s.drop_udp_too_big, 1, "{s:?}");
    assert_eq!(s.flows_udp, 1, "{s:?}");
    assert_eq!(s.flows_udp_total, 1);
}

#[test]
fn icmp_echo_through_ping_socket() {
    if !in_netns("icmp_echo_through_ping_socket") {
        return;
    }
    let l = lab();
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::ICMPV4)).expect("v4 ping socket");
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let s: UdpSocket = s.into();
    for (seq, size) in [(1u16, 56usize), (2, 0), (3, 1472), (4, 3000)] {
        let mut req = vec![8u8, 0, 0, 0, 0, 0];
        req.extend_from_slice(&seq.to_be_bytes());
        req.extend((0..size).map(|i| (i as u8).wrapping_add(seq as u8)));
        s.send_to(&req, (SRV_V4, 0)).unwrap();
        let mut buf = [0u8; 4000];
        let (n, from) = s.recv_from(&mut buf).expect("echo reply through the CLAT");
        assert_eq!(from.ip(), std::net::IpAddr::V4(SRV_V4));
        assert_eq!(n, req.len());
        assert_eq!(buf[0], 0, "echo reply");
        assert_eq!(&buf[6..8], &seq.to_be_bytes());
        assert_eq!(&buf[8..n], &req[8..]);
    }
    let st = stats(&l);
    assert_eq!(st.flows_icmp_total, 1, "{st:?}");
}

#[test]
fn tcp_and_udp_refusals_are_answered_and_counted() {
    if !in_netns("tcp_and_udp_refusals_are_answered_and_counted") {
        return;
    }
    setup_ns();
    let l = start_engine(EngineConfig {
        prefix: "64:ff9b::/96".parse().unwrap(),
        ..base_cfg()
    });
    // Non-global destination with the well-known prefix: prompt RST.
    let t0 = Instant::now();
    let r = TcpStream::connect_timeout(&"10.1.2.3:80".parse().unwrap(), Duration::from_secs(3));
    let e = r.expect_err("RFC 6052 3.1: must not carry 10/8 behind 64:ff9b::/96");
    assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{e:?}");
    assert!(t0.elapsed() < Duration::from_secs(1));
    // UDP to a non-global address: ICMP admin prohibited reaches a connected socket.
    let u = UdpSocket::bind("0.0.0.0:0").unwrap();
    u.connect("192.168.1.1:9").unwrap();
    u.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    u.send(b"x").unwrap();
    let mut b = [0u8; 10];
    let e = u.recv(&mut b).expect_err("ICMP error expected");
    assert_ne!(
        e.kind(),
        ErrorKind::WouldBlock,
        "got a timeout instead of the ICMP error"
    );
    // Multicast and broadcast: dropped and counted.
    let m = UdpSocket::bind("0.0.0.0:0").unwrap();
    m.send_to(b"m", "239.1.2.3:9").unwrap();
    m.set_broadcast(true).unwrap();
    m.send_to(b"b", "192.0.0.7:9").unwrap();
    // A packet whose source is not the CLAT address (raw, spoofed).
    use socket2::{Domain, Protocol, Socket, Type};
    let raw = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(255))).unwrap();
    raw.set_header_included_v4(true).unwrap();
    let mut pkt = vec![0u8; 40];
    let spoofed = (
        std::net::SocketAddrV4::new(Ipv4Addr::new(10, 9, 9, 9), 1),
        std::net::SocketAddrV4::new(Ipv4Addr::new(8, 8, 8, 8), 2),
    );
    let n = clat_engine::packet::emit_udp4(&mut pkt, spoofed, 0, 1);
    raw.send_to(&pkt[..n], &SocketAddr::from(([8, 8, 8, 8], 0)).into())
        .unwrap();
    wait_for("refusal counters", Duration::from_secs(2), || {
        let s = stats(&l);
        s.drop_non_global >= 2
            && s.drop_multicast >= 1
            && s.drop_broadcast >= 1
            && s.drop_bad_source >= 1
    });
    let st = stats(&l);
    assert!(st.tcp_rst_sent >= 1 && st.icmp_errors_sent >= 1, "{st:?}");
}

/// The ICMP errors the engine originates are rate-limited (RFC 4443
/// section 2.4 (f); a token bucket of 50 at 1000 a second, as Linux's
/// defaults): an app refused in a tight loop gets the burst and then the
/// rate, and every refusal is counted either as sent or as limited.
#[test]
fn originated_icmp_errors_are_rate_limited() {
    if !in_netns("originated_icmp_errors_are_rate_limited") {
        return;
    }
    setup_ns();
    let l = start_engine(EngineConfig {
        prefix: "64:ff9b::/96".parse().unwrap(),
        ..base_cfg()
    });
    // 192.168.1.1 is non-global: refused behind 64:ff9b::/96 (RFC 6052
    // 3.1) with an ICMP error each time.
    let u = UdpSocket::bind("0.0.0.0:0").unwrap();
    const N: u64 = 2000;
    let t0 = Instant::now();
    for _ in 0..N {
        // The TUN's queue may drop some under the burst: counted below by
        // what reached the engine.
        let _ = u.send_to(b"x", "192.168.1.1:9");
    }
    // Every datagram the engine read is refused, as sent or as limited.
    let mut last = 0;
    wait_for("refusals settled", Duration::from_secs(5), || {
        let s = stats(&l);
        let settled = s.drop_non_global > 0 && s.drop_non_global == last;
        last = s.drop_non_global;
        std::thread::sleep(Duration::from_millis(100));
        settled
    });
    let window = t0.elapsed();
    let st = stats(&l);
    println!(
        "{} refused in {window:?}: {} errors sent, {} over the rate limit",
        st.drop_non_global, st.icmp_errors_sent, st.drop_icmp_rate_limited
    );
    assert_eq!(
        st.icmp_errors_sent + st.drop_icmp_rate_limited,
        st.drop_non_global,
        "{st:?}"
    );
    assert!(
        st.icmp_errors_sent >= 50.min(st.drop_non_global),
        "the burst passes: {st:?}"
    );
    let bound = 50 + 1000 * window.as_millis() as u64 / 1000 + 1;
    assert!(
        st.icmp_errors_sent <= bound,
        "{} errors in {window:?}: more than the bucket gives ({bound})",
        st.icmp_errors_sent
    );
}

/// RFC 6052 3.1 follows the path a packet really takes: a UDP mapping made
/// on the NAT64 path keeps it after a switch to native IPv4, so a new
/// destination sent through it is still refused when it is non-global
/// behind 64:ff9b::/96; a new mapping, made on the native path, is not.
#[test]
fn a_nat64_mapping_keeps_the_wkp_rule_after_a_switch_to_native() {
    if !in_netns("a_nat64_mapping_keeps_the_wkp_rule_after_a_switch_to_native") {
        return;
    }
    setup_ns();
    // The well-known prefix refuses the documentation prefixes (non-global),
    // so the server here needs a global address: 192.88.99.1, the deprecated
    // 6to4 relay anycast (RFC 7526), on this namespace's loopback. This
    // namespace has no link: nothing leaves it.
    let global = Ipv4Addr::new(192, 88, 99, 1);
    let srv6 = "64:ff9b::c058:6301";
    sh(
        "ip",
        &[
            "-6",
            "addr",
            "add",
            &format!("{srv6}/128"),
            "dev",
            "lo",
            "nodad",
        ],
    );
    // The native path has nowhere to go in this namespace but back into
    // the TUN: the engine's IPv4 sockets carry mark 7, whose table has no
    // route at all (so they get EHOSTUNREACH).
    sh("ip", &["-4", "rule", "add", "fwmark", "7", "lookup", "107"]);
    sh(
        "ip",
        &[
            "-4",
            "route",
            "add",
            "unreachable",
            "default",
            "table",
            "107",
        ],
    );
    let l = start_engine_protected(
        EngineConfig {
            prefix: "64:ff9b::/96".parse().unwrap(),
            ..base_cfg()
        },
        Arc::new(clat_protect::MarkProtect(7)),
    );
    let srv = udp_server(&format!("[{srv6}]:0"));
    let u = UdpSocket::bind("0.0.0.0:0").unwrap();
    u.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    u.send_to(b"hello", (global, srv.port())).unwrap();
    let mut b = [0u8; 64];
    let (n, _) = u.recv_from(&mut b).expect("echo over the NAT64 path");
    assert_eq!(&b[2..n], b"hello");
    l.engine
        .set_ipv4_path(clat_engine::Ipv4Path::Native)
        .unwrap();
    wait_for("the switch", Duration::from_secs(2), || {
        stats(&l).ipv4_path_native == 1
    });
    let before = stats(&l);
    u.send_to(b"x", "10.1.2.3:9").unwrap();
    wait_for("the refusal", Duration::from_secs(2), || {
        stats(&l).drop_non_global == before.drop_non_global + 1
    });
    let v = UdpSocket::bind("0.0.0.0:0").unwrap();
    v.send_to(b"y", "10.1.2.3:9").unwrap();
    wait_for("the native mapping", Duration::from_secs(2), || {
        stats(&l).flows_udp_total == before.flows_udp_total + 1
    });
    let st = stats(&l);
    assert_eq!(st.drop_non_global, before.drop_non_global + 1, "{st:?}");
    assert_eq!(
        st.flows_native_total,
        before.flows_native_total + 1,
        "{st:?}"
    );
}

/// A new NAT64 prefix resets the flows that used the old one, and only
/// those: a TCP connection that left natively carries on.
#[test]
fn a_prefix_change_leaves_native_flows_alone() {
    if !in_netns("a_prefix_change_leaves_native_flows_alone") {
        return;
    }
    setup_ns();
    // 192.88.99.1 (a global address, see the test above) is this
    // namespace's own, but only marked traffic (the engine's IPv4 sockets
    // and the server, mark 7) sees it as local: the local table moves
    // after a rule that sends everything else generated here to the main
    // table, whose default route is the TUN. So the app reaches the server
    // through the CLAT, and the engine's native socket reaches it directly.
    // (Packets from the TUN still find the local table, at 10.)
    sh("ip", &["addr", "add", "192.88.99.1/32", "dev", "lo"]);
    sh("ip", &["rule", "add", "pref", "10", "lookup", "local"]);
    sh("ip", &["rule", "del", "pref", "0"]);
    sh(
        "ip",
        &["rule", "add", "pref", "4", "fwmark", "7", "lookup", "local"],
    );
    sh(
        "ip",
        &["rule", "add", "pref", "5", "iif", "lo", "lookup", "main"],
    );
    let l = start_engine_protected(
        EngineConfig {
            ipv4_path: clat_engine::Ipv4Path::Native,
            ..base_cfg()
        },
        Arc::new(clat_protect::MarkProtect(7)),
    );
    use socket2::{Domain, Socket, Type};
    let ls = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    ls.set_mark(7).unwrap();
    ls.bind(&SocketAddr::from(([0, 0, 0, 0], 0)).into())
        .unwrap();
    ls.listen(4).unwrap();
    let port = ls.local_addr().unwrap().as_socket().unwrap().port();
    let listener: TcpListener = ls.into();
    thread::spawn(move || {
        let (mut c, _) = listener.accept().unwrap();
        let mut b = [0u8; 1];
        while c.read_exact(&mut b).is_ok() {
            if c.write_all(&b).is_err() {
                return;
            }
        }
    });
    let mut app = TcpStream::connect_timeout(
        &SocketAddr::from(([192, 88, 99, 1], port)),
        Duration::from_secs(3),
    )
    .unwrap();
    app.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut b = [0u8; 1];
    app.write_all(b"a").unwrap();
    app.read_exact(&mut b).expect("echo over the native path");
    assert_eq!(stats(&l).flows_native_total, 1);
    l.engine
        .set_prefix("2001:db8:65::/96".parse().unwrap())
        .unwrap();
    // The command is handled on the engine thread; give it the time.
    thread::sleep(Duration::from_millis(300));
    app.write_all(b"b").unwrap();
    app.read_exact(&mut b)
        .expect("the native flow survives the new prefix");
    assert_eq!(&b, b"b");
}

/// An ICMP error about one destination leaves an error pending on the
/// mapping's socket (sk_err, set even with IP_RECVERR), which Linux returns
/// on the next send, whatever its destination. With one socket for every
/// destination of an app port (endpoint-independent mapping), a datagram to
/// another destination sent right after must still go out.
#[test]
fn a_pending_error_about_one_destination_does_not_lose_a_datagram_to_another() {
    if !in_netns("a_pending_error_about_one_destination_does_not_lose_a_datagram_to_another") {
        return;
    }
    let l = lab();
    let echo = udp_server(&format!("[{SRV_V6}]:0")).port();
    // A port nothing listens on: the local kernel answers Port Unreachable.
    let closed = {
        let s = UdpSocket::bind(format!("[{SRV_V6}]:0")).unwrap();
        s.local_addr().unwrap().port()
    };
    let u = UdpSocket::bind("0.0.0.0:0").unwrap();
    u.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut got = 0;
    for i in 0..20u8 {
        u.send_to(&[i], (SRV_V4, closed)).unwrap();
        u.send_to(&[i], (SRV_V4, echo)).unwrap();
        let mut b = [0u8; 16];
        // The app may also see the Port Unreachable (as ECONNREFUSED on an
        // unconnected socket it does not); read until the echo or timeout.
        while let Ok((n, _)) = u.recv_from(&mut b) {
            if n == 3 && b[2] == i {
                got += 1;
                break;
            }
        }
    }
    assert_eq!(got, 20, "{:?}", stats(&l));
}

#[test]
fn udp_cap_leaves_tcp_its_room() {
    if !in_netns("udp_cap_leaves_tcp_its_room") {
        return;
    }
    setup_ns();
    let l = start_engine(EngineConfig {
        max_flows: 10,
        max_udp_flows: 2,
        ..base_cfg()
    });
    let uport = udp_server(&format!("[{SRV_V6}]:0")).port();
    let tport = echo_server(&format!("[{SRV_V6}]:0")).port();
    let mut socks = Vec::new();
    let mut answered = 0;
    for _ in 0..4 {
        let u = UdpSocket::bind("0.0.0.0:0").unwrap();
        u.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        u.send_to(b"hi", (SRV_V4, uport)).unwrap();
        let mut b = [0u8; 16];
        answered += u.recv(&mut b).is_ok() as usize;
        socks.push(u);
    }
    assert_eq!(answered, 2, "the UDP cap (2) holds");
    let s = stats(&l);
    assert_eq!((s.flows_udp, s.drop_flow_limit), (2, 2), "{s:?}");
    // TCP still has the rest of the table.
    let mut c = TcpStream::connect_timeout(&(SRV_V4, tport).into(), Duration::from_secs(3))
        .expect("TCP under a full UDP cap");
    c.write_all(b"tcp").unwrap();
    let mut b = [0u8; 3];
    c.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"tcp");
}

#[test]
fn flow_cap_and_udp_idle_timeout() {
    if !in_netns("flow_cap_and_udp_idle_timeout") {
        return;
    }
    setup_ns();
    let l = start_engine(EngineConfig {
        max_flows: 2,
        udp_timeout: Duration::from_secs(1),
        ..base_cfg()
    });
    let port = udp_server(&format!("[{SRV_V6}]:0")).port();
    let mut socks = Vec::new();
    for _ in 0..2 {
        let u = UdpSocket::bind("0.0.0.0:0").unwrap();
        u.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        u.send_to(b"hi", (SRV_V4, port)).unwrap();
        let mut b = [0u8; 16];
        u.recv(&mut b).expect("echo while under the cap");
        socks.push(u);
    }
    let third = UdpSocket::bind("0.0.0.0:0").unwrap();
    third.connect((SRV_V4, port)).unwrap();
    third
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    third.send(b"hi").unwrap();
    let mut b = [0u8; 16];
    assert!(third.recv(&mut b).is_err(), "over the cap: refused");
    let tcp = TcpStream::connect_timeout(&(SRV_V4, port).into(), Duration::from_secs(2));
    assert!(tcp.is_err(), "TCP over the cap: RST");
    let s = stats(&l);
    assert!(s.drop_flow_limit >= 2, "{s:?}");
    assert_eq!(s.flows_udp, 2);
    // Idle mappings expire after udp_timeout (1 s).
    wait_for("UDP mappings to expire", Duration::from_secs(4), || {
        stats(&l).flows_udp == 0
    });
    assert!(stats(&l).flows_expired >= 2);
    // ...and a new flow is possible again.
    third.send(b"again").unwrap();
    third.recv(&mut b).expect("echo after expiry freed the cap");
}

fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn stop_closes_every_fd_and_idle_loop_sleeps() {
    if !in_netns("stop_closes_every_fd_and_idle_loop_sleeps") {
        return;
    }
    setup_ns();
    let tport = echo_server(&format!("[{SRV_V6}]:0")).port();
    let uport = udp_server(&format!("[{SRV_V6}]:0")).port();
    let before = fd_count();
    let mut l = start_engine(base_cfg());
    {
        let mut c = TcpStream::connect((SRV_V4, tport)).unwrap();
        c.write_all(b"hello").unwrap();
        let mut b = [0u8; 5];
        c.read_exact(&mut b).unwrap();
        let u = UdpSocket::bind("0.0.0.0:0").unwrap();
        u.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        u.send_to(b"x", (SRV_V4, uport)).unwrap();
        u.recv(&mut [0u8; 8]).unwrap();
        // keep a TCP flow open while we measure idleness
        let mut idle = TcpStream::connect((SRV_V4, tport)).unwrap();
        idle.write_all(b"y").unwrap();
        idle.read_exact(&mut b[..1]).unwrap();
        thread::sleep(Duration::from_millis(200));
        let w0 = stats(&l).loop_wakeups;
        thread::sleep(Duration::from_secs(2));
        let w1 = stats(&l).loop_wakeups;
        println!("wake-ups over 2 s idle with live flows: {}", w1 - w0);
        assert!(w1 - w0 <= 1, "the loop woke {} times while idle", w1 - w0);
        let s = stats(&l);
        assert!(s.flows_tcp >= 1 && s.flows_udp == 1, "{s:?}");
        drop(idle);
    }
    let t0 = Instant::now();
    l.engine.stop().unwrap();
    l.engine.stop().unwrap(); // idempotent
    assert!(
        t0.elapsed() < Duration::from_secs(1),
        "stop took {:?}",
        t0.elapsed()
    );
    assert!(!l.engine.is_running());
    // Server-side sockets close once they see the upstream legs go away.
    wait_for(
        "fds back to the count before start",
        Duration::from_secs(3),
        || fd_count() == before,
    );
}

#[test]
fn non_ipv4_packets_are_counted() {
    if !in_netns("non_ipv4_packets_are_counted") {
        return;
    }
    setup_ns();
    let l = start_engine(base_cfg());
    std::fs::write("/proc/sys/net/ipv6/conf/clat0/disable_ipv6", "0").unwrap();
    let s = UdpSocket::bind("[::]:0").unwrap();
    let idx = std::fs::read_to_string("/sys/class/net/clat0/ifindex")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let to = std::net::SocketAddrV6::new("ff02::1".parse().unwrap(), 9, 0, idx);
    wait_for(
        "an IPv6 packet on the TUN to be counted",
        Duration::from_secs(3),
        || {
            let _ = s.send_to(b"v6", to);
            stats(&l).drop_not_ipv4 >= 1
        },
    );
}

#[test]
fn tun_closed_ends_the_loop_with_a_reason() {
    if !in_netns("tun_closed_ends_the_loop_with_a_reason") {
        return;
    }
    setup_ns();
    let l = start_engine(base_cfg());
    // Someone holding only an ExitWatch (clat run's watcher thread) learns
    // of the end without polling.
    let watch = l.engine.exit_watch();
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        watch.wait();
        let _ = tx.send(());
    });
    assert!(
        rx.recv_timeout(Duration::from_millis(200)).is_err(),
        "the watch must not return while the engine runs"
    );
    // Deleting the device makes reads on the fd fail.
    sh("ip", &["link", "del", "clat0"]);
    rx.recv_timeout(Duration::from_secs(5))
        .expect("the exit watch returns when the engine ends");
    assert!(!l.engine.is_running());
    assert!(l.engine.exit_reason().is_some());
    // and it returns at once for an engine that has ended already
    l.engine.exit_watch().wait();
}

mod dns {
    use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
    use hickory_proto::rr::{rdata::A, Name, RData, Record, RecordType};
    use std::net::Ipv4Addr;

    pub fn query(id: u16, name: &str, edns: Option<u16>) -> Vec<u8> {
        let mut m = Message::new(id, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
        if let Some(sz) = edns {
            let mut e = Edns::new();
            e.set_max_payload(sz);
            m.edns = Some(e);
        }
        m.to_vec().unwrap()
    }

    /// The test resolver: `small.test.` has one A record, `big.test.` 40;
    /// over UDP `big.test.` only ever gets a truncated (TC) answer.
    pub fn answer(q: &[u8], udp: bool) -> Vec<u8> {
        let q = Message::from_vec(q).unwrap();
        let mut r = Message::response(q.metadata.id, OpCode::Query);
        r.metadata.recursion_desired = q.metadata.recursion_desired;
        r.metadata.recursion_available = true;
        r.queries = q.queries.clone();
        let name = q.queries[0].name().clone();
        let n = if name.to_ascii() == "big.test." {
            40
        } else {
            1
        };
        if udp && n > 1 {
            r.metadata.truncation = true;
        } else {
            for i in 0..n {
                r.add_answer(Record::from_rdata(
                    name.clone(),
                    60,
                    RData::A(A(Ipv4Addr::new(198, 18, 0, i as u8 + 1))),
                ));
            }
        }
        r.to_vec().unwrap()
    }

    /// What an off-path spoofer who guessed the id would send: the right
    /// id, another question and its own address for it.
    pub fn forged(q: &[u8]) -> Vec<u8> {
        let q = Message::from_vec(q).unwrap();
        let mut r = Message::response(q.metadata.id, OpCode::Query);
        let name = Name::from_ascii("evil.test.").unwrap();
        r.add_query(Query::query(name.clone(), RecordType::A));
        r.add_answer(Record::from_rdata(
            name,
            60,
            RData::A(A(Ipv4Addr::new(203, 0, 113, 66))),
        ));
        r.to_vec().unwrap()
    }

    pub fn parse(b: &[u8]) -> Message {
        Message::from_vec(b).unwrap()
    }
}

fn dns_server(addr: &str) {
    let u = UdpSocket::bind(addr).unwrap();
    let t = TcpListener::bind(addr).unwrap();
    thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            let Ok((n, peer)) = u.recv_from(&mut buf) else {
                return;
            };
            let q = &buf[..n];
            if dns::parse(q).queries[0].name().to_ascii() == "forged.test." {
                let _ = u.send_to(&dns::forged(q), peer);
                thread::sleep(Duration::from_millis(20));
            }
            let _ = u.send_to(&dns::answer(q, true), peer);
        }
    });
    thread::spawn(move || {
        for s in t.incoming() {
            let Ok(mut s) = s else { return };
            let mut len = [0u8; 2];
            if s.read_exact(&mut len).is_err() {
                continue;
            }
            let mut q = vec![0u8; u16::from_be_bytes(len) as usize];
            if s.read_exact(&mut q).is_err() {
                continue;
            }
            let a = dns::answer(&q, false);
            let _ = s.write_all(&(a.len() as u16).to_be_bytes());
            let _ = s.write_all(&a);
        }
    });
}

/// One DNS query over TCP (RFC 1035 4.2.2 length prefix) to `to`.
fn ask_tcp(to: SocketAddr, id: u16, name: &str) -> hickory_proto::op::Message {
    let mut t = TcpStream::connect_timeout(&to, Duration::from_secs(3)).expect("TCP to the relay");
    t.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let q = dns::query(id, name, None);
    t.write_all(&(q.len() as u16).to_be_bytes()).unwrap();
    t.write_all(&q).unwrap();
    let mut len = [0u8; 2];
    t.read_exact(&mut len).expect("an answer over TCP");
    let mut a = vec![0u8; u16::from_be_bytes(len) as usize];
    t.read_exact(&mut a).unwrap();
    dns::parse(&a)
}

#[test]
fn dns_relay_udp_tcp_fallback_truncation_and_servfail() {
    if !in_netns("dns_relay_udp_tcp_fallback_truncation_and_servfail") {
        return;
    }
    setup_ns();
    dns_server(&format!("[{DNS_V6}]:53"));
    let l = start_engine(EngineConfig {
        dns_timeout: Duration::from_millis(400),
        ..base_cfg()
    });
    let relay = (Ipv4Addr::new(192, 0, 0, 6), 53);
    let c = UdpSocket::bind("0.0.0.0:0").unwrap();
    c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut buf = [0u8; 8192];
    let mut ask = |id: u16, name: &str, edns: Option<u16>| {
        c.send_to(&dns::query(id, name, edns), relay).unwrap();
        let (n, from) = c.recv_from(&mut buf).expect("an answer from the relay");
        assert_eq!(from, SocketAddr::from(relay));
        dns::parse(&buf[..n])
    };
    let m = ask(0x1111, "small.test.", None);
    assert_eq!(m.metadata.id, 0x1111);
    assert_eq!(m.answers.len(), 1);
    // An answer with the right id and another question (a spoofer who
    // guessed the id) is dropped; the real answer after it gets through.
    let m = ask(0x1112, "forged.test.", None);
    assert_eq!(m.metadata.id, 0x1112);
    assert_eq!(m.queries[0].name().to_ascii(), "forged.test.");
    assert_eq!(m.answers.len(), 1);
    assert_eq!(stats(&l).drop_dns_mismatch, 1);
    // Truncated over UDP: retried over TCP, full answer when the client takes it.
    let m = ask(0x2222, "big.test.", Some(4096));
    assert_eq!(m.metadata.id, 0x2222);
    assert!(!m.metadata.truncation);
    assert_eq!(m.answers.len(), 40);
    // A 512-byte client gets the truncated answer (it will retry over TCP).
    let m = ask(0x3333, "big.test.", None);
    assert!(m.metadata.truncation);
    assert_eq!(m.answers.len(), 0);
    let s = stats(&l);
    assert_eq!(s.dns_tcp_retries, 2, "{s:?}");
    assert_eq!(s.dns_truncated, 1);
    // DNS over TCP from the app to the relay address.
    let m = ask_tcp(relay.into(), 0x4444, "big.test.");
    assert_eq!((m.metadata.id, m.answers.len()), (0x4444, 40));
    // First resolver dead: the second answers after the timeout.
    let dead: SocketAddr = "[2001:db8:64::99]:53".parse().unwrap();
    let good: SocketAddr = format!("[{DNS_V6}]:53").parse().unwrap();
    l.engine.set_upstream_dns(vec![dead, good]).unwrap();
    let t0 = Instant::now();
    let m = ask(0x5555, "small.test.", None);
    assert_eq!((m.metadata.id, m.answers.len()), (0x5555, 1));
    assert!(
        t0.elapsed() >= Duration::from_millis(300),
        "answered by the fallback after the timeout"
    );
    // The resolver that answered is asked first from now on, over UDP and
    // TCP: a dead one ahead of it in the list costs one timeout, not one
    // per query.
    let timeouts = stats(&l).dns_upstream_timeouts;
    for id in [0x5556u16, 0x5557] {
        let m = ask(id, "small.test.", None);
        assert_eq!((m.metadata.id, m.answers.len()), (id, 1));
    }
    let m = ask_tcp(relay.into(), 0x5558, "small.test.");
    assert_eq!((m.metadata.id, m.answers.len()), (0x5558, 1));
    assert_eq!(
        stats(&l).dns_upstream_timeouts,
        timeouts,
        "dead resolver asked again"
    );
    // All resolvers dead: SERVFAIL promptly after the timeouts, never silence.
    l.engine.set_upstream_dns(vec![dead]).unwrap();
    let t0 = Instant::now();
    let m = ask(0x6666, "small.test.", Some(1232));
    assert_eq!(m.metadata.id, 0x6666);
    assert_eq!(
        m.metadata.response_code,
        hickory_proto::op::ResponseCode::ServFail
    );
    assert!(t0.elapsed() < Duration::from_secs(2));
    assert!(stats(&l).dns_servfail >= 1);
}

#[test]
fn icmpv6_port_unreachable_becomes_icmpv4() {
    if !in_netns("icmpv6_port_unreachable_becomes_icmpv4") {
        return;
    }
    let l = lab();
    // A free port with nobody behind it: the IPv6 stack answers ICMPv6
    // port unreachable, read from the error queue and translated.
    let port = UdpSocket::bind(format!("[{SRV_V6}]:0"))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let u = UdpSocket::bind("0.0.0.0:0").unwrap();
    u.connect((SRV_V4, port)).unwrap();
    u.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    u.send(b"anyone?").unwrap();
    let e = u.recv(&mut [0u8; 16]).expect_err("port unreachable");
    assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{e:?}");
    // No IPv6 route at all to this one: the local send fails (ENETUNREACH)
    // and the app gets an ICMPv4 net unreachable, not silence.
    let u2 = UdpSocket::bind("0.0.0.0:0").unwrap();
    // Net unreachable is a "soft" error: Linux reports it with IP_RECVERR.
    {
        use std::os::fd::AsRawFd;
        let one: libc::c_int = 1;
        // SAFETY: valid fd and option buffer.
        let r = unsafe {
            libc::setsockopt(
                u2.as_raw_fd(),
                libc::SOL_IP,
                libc::IP_RECVERR,
                (&one as *const libc::c_int).cast(),
                4,
            )
        };
        assert_eq!(r, 0);
    }
    u2.connect((Ipv4Addr::new(198, 18, 0, 1), 9)).unwrap();
    u2.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    u2.send(b"anyone?").unwrap();
    let e = u2.recv(&mut [0u8; 16]).expect_err("network unreachable");
    assert_ne!(
        e.kind(),
        ErrorKind::WouldBlock,
        "silence instead of an ICMP error: {:?}",
        stats(&l)
    );
    // (counters are bumped right after the TUN write that the app may see first)
    wait_for("ICMP error counters", Duration::from_secs(1), || {
        let s = stats(&l);
        s.icmp_errors_received >= 1 && s.icmp_errors_sent >= 1
    });
}

/// A server that answers a request with part of a body and then aborts
/// (RST): through the engine (its splice relay), the app reads at most
/// that part and then a reset, never a clean end of stream after which a
/// cut-short body would look complete. Many rounds, since whether the RST
/// arrives with the body or between the relay's splice and its peek is a
/// matter of timing (the deterministic case is tcp_relay's unit test).
#[test]
fn server_reset_after_part_of_a_body_reaches_the_app_as_a_reset() {
    if !in_netns("server_reset_after_part_of_a_body_reaches_the_app_as_a_reset") {
        return;
    }
    const BODY: usize = 20_000;
    const ROUNDS: usize = 40;
    let _l = lab();
    let srv = TcpListener::bind(format!("[{SRV_V6}]:0")).unwrap();
    let port = srv.local_addr().unwrap().port();
    let server = thread::spawn(move || {
        for _ in 0..ROUNDS {
            let (mut s, _) = srv.accept().unwrap();
            s.read_exact(&mut [0u8; 4]).unwrap();
            s.write_all(&vec![b'b'; BODY]).unwrap();
            socket2::SockRef::from(&s)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
            drop(s);
        }
    });
    let mut eofs = Vec::new();
    for round in 0..ROUNDS {
        let mut c = TcpStream::connect((SRV_V4, port)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.write_all(b"GET ").unwrap();
        let mut got = 0;
        let mut b = vec![0u8; 64 * 1024];
        let end = loop {
            match c.read(&mut b) {
                Ok(0) => break None,
                Ok(n) => got += n,
                Err(e) => break Some(e),
            }
        };
        assert!(got <= BODY, "round {round}: {got} bytes");
        match end {
            None => eofs.push((round, got)),
            Some(e) => assert_eq!(e.kind(), ErrorKind::ConnectionReset, "round {round}: {e:?}"),
        }
    }
    server.join().unwrap();
    assert!(
        eofs.is_empty(),
        "(round, bytes) that ended in a FIN: {eofs:?}"
    );
}

#[test]
fn resets_are_carried_both_ways_and_on_network_change() {
    if !in_netns("resets_are_carried_both_ways_and_on_network_change") {
        return;
    }
    let l = lab();
    let srv = TcpListener::bind(format!("[{SRV_V6}]:0")).unwrap();
    let port = srv.local_addr().unwrap().port();
    // 1. The server aborts (RST): the app sees a reset, not a clean EOF.
    let mut c = TcpStream::connect((SRV_V4, port)).unwrap();
    let (s, _) = srv.accept().unwrap();
    socket2::SockRef::from(&s)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(s);
    c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let e = c.read(&mut [0u8; 8]).expect_err("reset expected");
    assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e:?}");
    // 2. The app aborts: the server sees a reset.
    let c = TcpStream::connect((SRV_V4, port)).unwrap();
    let (mut s, _) = srv.accept().unwrap();
    socket2::SockRef::from(&c)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(c);
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let e = s.read(&mut [0u8; 8]).expect_err("reset expected upstream");
    assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e:?}");
    // 3. network_changed resets live flows.
    let mut c = TcpStream::connect((SRV_V4, port)).unwrap();
    let (_s, _) = srv.accept().unwrap();
    c.write_all(b"x").unwrap();
    thread::sleep(Duration::from_millis(100));
    l.engine.network_changed().unwrap();
    c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let e = c
        .read(&mut [0u8; 8])
        .expect_err("reset after network change");
    assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e:?}");
    // 4. set_prefix: the new prefix is used for new flows (old one now unreachable).
    l.engine
        .set_prefix("2001:db8:65::/96".parse().unwrap())
        .unwrap();
    assert!(
        l.engine
            .set_prefix("2001:db8::/80".parse().unwrap())
            .is_err(),
        "bad prefix length refused"
    );
    thread::sleep(Duration::from_millis(100));
    let r = TcpStream::connect((SRV_V4, port)).and_then(|mut c| {
        c.set_read_timeout(Some(Duration::from_secs(2)))?;
        c.read(&mut [0u8; 8])
    });
    assert!(
        r.is_err(),
        "no route to the new prefix: the flow must fail, got {r:?}"
    );
}

#[test]
fn idle_established_flow_times_out_with_rst() {
    if !in_netns("idle_established_flow_times_out_with_rst") {
        return;
    }
    setup_ns();
    let l = start_engine(EngineConfig {
        tcp_established_timeout: Duration::from_secs(1),
        ..base_cfg()
    });
    let port = echo_server(&format!("[{SRV_V6}]:0")).port();
    let mut c = TcpStream::connect((SRV_V4, port)).unwrap();
    c.write_all(b"ping").unwrap();
    let mut b = [0u8; 4];
    c.read_exact(&mut b).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(4))).unwrap();
    let t0 = Instant::now();
    let e = c.read(&mut b).expect_err("idle timeout resets the flow");
    assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e:?}");
    assert!(t0.elapsed() < Duration::from_secs(3));
    assert!(stats(&l).flows_expired >= 1);
    // The NAT entry goes after its grace period; the gauge returns to zero.
    wait_for("flows_tcp back to 0", Duration::from_secs(15), || {
        stats(&l).flows_tcp == 0
    });
}

#[test]
fn tcp_download_throughput() {
    if !in_netns("tcp_download_throughput") {
        return;
    }
    let _l = lab();
    const N: usize = 256 << 20;
    let srv = TcpListener::bind(format!("[{SRV_V6}]:0")).unwrap();
    let port = srv.local_addr().unwrap().port();
    thread::spawn(move || {
        let (mut s, _) = srv.accept().unwrap();
        let buf = vec![0xa5u8; 1 << 20];
        for _ in 0..N >> 20 {
            s.write_all(&buf).unwrap();
        }
    });
    let mut c = TcpStream::connect((SRV_V4, port)).unwrap();
    let t0 = Instant::now();
    let mut buf = vec![0u8; 1 << 20];
    let mut got = 0usize;
    let mut bad = 0usize;
    loop {
        let n = c
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("after {got} bytes: {e}; {:?}", stats(&_l)));
        if n == 0 {
            break;
        }
        bad += buf[..n].iter().filter(|&&b| b != 0xa5).count();
        got += n;
    }
    let dt = t0.elapsed();
    println!(
        "download {} MiB in {:?}: {:.0} Mbit/s",
        N >> 20,
        dt,
        N as f64 * 8.0 / dt.as_secs_f64() / 1e6
    );
    assert_eq!((got, bad), (N, 0));
}

#[test]
fn slow_reader_backpressure_loses_nothing() {
    if !in_netns("slow_reader_backpressure_loses_nothing") {
        return;
    }
    let l = lab();
    const N: usize = 24 << 20;
    let srv = TcpListener::bind(format!("[{SRV_V6}]:0")).unwrap();
    let port = srv.local_addr().unwrap().port();
    thread::spawn(move || {
        let (mut s, _) = srv.accept().unwrap();
        let buf: Vec<u8> = (0..N).map(pattern).collect();
        s.write_all(&buf).unwrap();
    });
    let mut c = TcpStream::connect((SRV_V4, port)).unwrap();
    // Let every buffer on the path fill up before reading anything.
    thread::sleep(Duration::from_millis(1500));
    let mid = stats(&l);
    assert!(
        mid.up_rx_bytes < N as u64,
        "the engine must stop reading upstream while the app does not read"
    );
    let mut got = 0usize;
    let mut buf = vec![0u8; 7777];
    loop {
        let n = c.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        for (i, &b) in buf[..n].iter().enumerate() {
            assert_eq!(b, pattern(got + i), "byte {}", got + i);
        }
        got += n;
        if got % (1 << 20) < 7777 {
            thread::sleep(Duration::from_millis(5)); // stay slow
        }
    }
    assert_eq!(got, N);
}

#[test]
fn many_short_connections() {
    if !in_netns("many_short_connections") {
        return;
    }
    setup_ns();
    // A small cap: closed flows waiting out their grace must not count.
    let l = start_engine(EngineConfig {
        max_flows: 64,
        ..base_cfg()
    });
    let port = echo_server(&format!("[{SRV_V6}]:0")).port();
    const N: usize = 3000;
    let t0 = Instant::now();
    for i in 0..N {
        let mut c =
            TcpStream::connect((SRV_V4, port)).unwrap_or_else(|e| panic!("connection {i}: {e}"));
        c.write_all(b"hi").unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        let mut v = Vec::new();
        c.read_to_end(&mut v)
            .unwrap_or_else(|e| panic!("connection {i}: {e}"));
        assert_eq!(v, b"hi");
    }
    let dt = t0.elapsed();
    println!(
        "{N} sequential connections in {dt:?}: {:.0}/s",
        N as f64 / dt.as_secs_f64()
    );
    let s = stats(&l);
    assert_eq!(s.flows_tcp_total, N as u64);
    assert_eq!(s.drop_flow_limit, 0, "{s:?}");
    wait_for("live TCP flows back to 0", Duration::from_secs(2), || {
        stats(&l).flows_tcp == 0
    });
}

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let l = s.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    l.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn idle_tcp_flows_cost_little_memory() {
    if !in_netns("idle_tcp_flows_cost_little_memory") {
        return;
    }
    let l = lab();
    const N: usize = 1000;
    let srv = TcpListener::bind(format!("[{SRV_V6}]:0")).unwrap();
    let port = srv.local_addr().unwrap().port();
    let acceptor = thread::spawn(move || {
        let mut v = Vec::new();
        for _ in 0..N {
            let (mut s, _) = srv.accept().unwrap();
            let mut b = [0u8; 1];
            s.read_exact(&mut b).unwrap();
            s.write_all(&b).unwrap();
            v.push(s);
        }
        v
    });
    let mut clients = Vec::with_capacity(N);
    let before = rss_kib();
    for _ in 0..N {
        let mut c = TcpStream::connect((SRV_V4, port)).unwrap();
        c.write_all(b"x").unwrap();
        let mut b = [0u8; 1];
        c.read_exact(&mut b).unwrap();
        clients.push(c);
    }
    let servers = acceptor.join().unwrap();
    let after = rss_kib();
    let per_flow = (after.saturating_sub(before)) * 1024 / N as u64;
    println!("RSS {before} KiB -> {after} KiB with {N} idle flows: ~{per_flow} bytes per flow (whole test process)");
    assert_eq!(stats(&l).flows_tcp, N as u64);
    assert!(per_flow < 4096, "{per_flow} bytes per idle flow");
    drop((clients, servers));
}

/// IPv6 pass-through (`carry_ipv6`, issue 15 item 1): an IPv6 app
/// connection into the TUN is carried to the same IPv6 destination. The
/// destination lives on this namespace's loopback, so the app's socket is
/// bound to the TUN's address and a source rule (ahead of the local table,
/// which is moved behind it) sends its packets into the TUN, as an app's
/// packets go into a VPN; the engine's unbound upstream socket reaches the
/// server directly. 8 MiB each way, a refused port, and the same connect
/// without `carry_ipv6` dropped by the engine.
#[test]
fn ipv6_tcp_is_carried_through_the_tun() {
    if !in_netns("ipv6_tcp_is_carried_through_the_tun") {
        return;
    }
    setup_ns();
    for carry in [true, false] {
        let (l, clat_v6) = v6_lab(carry);
        let srv = echo_server(&format!("[{SRV_V6}]:0"));
        let connect = || -> std::io::Result<TcpStream> {
            let s = socket2::Socket::new(socket2::Domain::IPV6, socket2::Type::STREAM, None)?;
            s.bind(&SocketAddr::new(clat_v6.into(), 0).into())?;
            s.connect_timeout(&srv.into(), Duration::from_secs(2))?;
            Ok(s.into())
        };
        if !carry {
            let before = stats(&l).drop_not_ipv4;
            assert!(connect().is_err(), "connected without carry_ipv6");
            let s = stats(&l);
            assert!(s.drop_not_ipv4 > before && s.flows_ipv6_total == 0, "{s:?}");
            continue;
        }
        let mut c = connect().expect("connect through the TUN");
        assert_eq!(c.local_addr().unwrap().ip(), clat_v6);
        const N: usize = 8 << 20;
        let mut w = c.try_clone().unwrap();
        let writer = thread::spawn(move || {
            let buf: Vec<u8> = (0..N).map(pattern).collect();
            w.write_all(&buf).unwrap();
            w.shutdown(Shutdown::Write).unwrap();
        });
        let mut got = Vec::with_capacity(N);
        c.read_to_end(&mut got).expect("read the echo");
        writer.join().unwrap();
        assert_eq!(got.len(), N);
        assert!(got.iter().enumerate().all(|(i, &b)| b == pattern(i)));
        let s = stats(&l);
        assert_eq!((s.flows_ipv6_total, s.ipv6_carried), (1, 1), "{s:?}");
        assert!(
            s.up_tx_bytes >= N as u64 && s.up_rx_bytes >= N as u64,
            "{s:?}"
        );
        assert!(s.tun_rx_bytes >= N as u64, "{s:?}");
        // A closed port: the server's RST comes back as connect()'s own
        // ECONNREFUSED, promptly.
        let closed = TcpListener::bind(format!("[{SRV_V6}]:0"))
            .unwrap()
            .local_addr()
            .unwrap();
        let s = socket2::Socket::new(socket2::Domain::IPV6, socket2::Type::STREAM, None).unwrap();
        s.bind(&SocketAddr::new(clat_v6.into(), 0).into()).unwrap();
        let t0 = Instant::now();
        let err = s
            .connect_timeout(&closed.into(), Duration::from_secs(3))
            .expect_err("connected to a closed port");
        assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err:?}");
        assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
        assert!(stats(&l).tcp_rst_sent >= 1);
        v6_lab_end(l);
    }
}

/// An engine with `carry_ipv6` as given whose TUN has `clat_v6`, and a
/// source rule ahead of the local table that sends the packets of sockets
/// bound to `clat_v6` into the TUN (as an app's go into a VPN) while the
/// engine's unbound upstream sockets reach this namespace's loopback
/// servers directly. Returns the engine and `clat_v6`.
fn v6_lab(carry: bool) -> (Lab, std::net::Ipv6Addr) {
    let cfg = EngineConfig {
        carry_ipv6: carry,
        ..base_cfg()
    };
    let clat_v6 = cfg.clat_v6;
    let l = start_engine(cfg);
    std::fs::write("/proc/sys/net/ipv6/conf/clat0/disable_ipv6", "0").unwrap();
    let a6 = format!("{clat_v6}/64");
    sh("ip", &["-6", "addr", "add", &a6, "dev", "clat0", "nodad"]);
    // Its local route comes from a kernel work queue: until then answers
    // to it from the TUN are not delivered.
    wait_for("the local route of clat_v6", Duration::from_secs(3), || {
        let o = Command::new("ip")
            .args([
                "-6",
                "route",
                "show",
                "table",
                "local",
                &clat_v6.to_string(),
            ])
            .output()
            .unwrap();
        !o.stdout.is_empty()
    });
    let table = [
        "-6", "route", "replace", "default", "dev", "clat0", "table", "100",
    ];
    sh("ip", &table);
    let from = clat_v6.to_string();
    sh(
        "ip",
        &[
            "-6", "rule", "add", "from", &from, "lookup", "100", "pref", "100",
        ],
    );
    let local = [
        "-6", "rule", "add", "from", "all", "lookup", "local", "pref", "1000",
    ];
    let _ = Command::new("ip").args(local).status();
    let _ = Command::new("ip")
        .args(["-6", "rule", "del", "pref", "0"])
        .status();
    wait_addresses();
    (l, clat_v6)
}

/// Stops the engine of [`v6_lab`] and waits for its TUN to go.
fn v6_lab_end(l: Lab) {
    drop(l);
    sh("ip", &["-6", "rule", "del", "pref", "100"]);
    wait_for("clat0 to go", Duration::from_secs(3), || {
        !std::path::Path::new("/sys/class/net/clat0").exists()
    });
}

/// IPv6 UDP and ICMPv6 echo carried through the TUN (`carry_ipv6`): a UDP
/// echo of several sizes with the app's hop limit and traffic class kept
/// (the server reads them), endpoint-independent filtering (a reply from
/// another address of the server reaches the app's socket), a ping, and
/// Packet Too Big for a datagram larger than the upstream path's MTU.
#[test]
fn ipv6_udp_and_ping_are_carried_through_the_tun() {
    if !in_netns("ipv6_udp_and_ping_are_carried_through_the_tun") {
        return;
    }
    setup_ns();
    let (l, clat_v6) = v6_lab(true);
    // The server echoes each datagram behind the hop limit and traffic
    // class it arrived with, then sends one more from SRV2_V6.
    let srv = UdpSocket::bind(format!("[{SRV_V6}]:0")).unwrap();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&srv);
    for opt in [libc::IPV6_RECVHOPLIMIT, libc::IPV6_RECVTCLASS] {
        let one: libc::c_int = 1;
        // SAFETY: a valid socket and a c_int option value.
        let r = unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_IPV6,
                opt,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(r, 0);
    }
    let srv_addr = srv.local_addr().unwrap();
    let other = UdpSocket::bind(format!("[{SRV2_V6}]:0")).unwrap();
    thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        while let Ok((n, hop, tclass, peer)) = recv_with_hop(&srv, &mut buf) {
            let mut reply = format!("{hop} {tclass} ").into_bytes();
            reply.extend_from_slice(&buf[..n]);
            let _ = srv.send_to(&reply, peer);
            let _ = other.send_to(b"from elsewhere", peer);
        }
    });
    let app = socket2::Socket::new(socket2::Domain::IPV6, socket2::Type::DGRAM, None).unwrap();
    app.bind(&SocketAddr::new(clat_v6.into(), 0).into())
        .unwrap();
    app.set_unicast_hops_v6(33).unwrap();
    app.set_tclass_v6(0xb8).unwrap();
    let app: UdpSocket = app.into();
    app.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buf = vec![0u8; 65536];
    for size in [0usize, 1, 100, 1400] {
        let data: Vec<u8> = (0..size).map(pattern).collect();
        let mut want = b"33 184 ".to_vec();
        want.extend_from_slice(&data);
        // UDP: a reply the kernel drops on the way in (its per-CPU backlog
        // is shared by every namespace, and overflows while other tests
        // flood: /proc/net/softnet_stat) is asked for again, at most
        // twice; every reply that does come must be right.
        let mut got = (false, false);
        for _ in 0..3 {
            app.send_to(&data, srv_addr).unwrap();
            got = (false, false);
            while let Ok((n, from)) = app.recv_from(&mut buf) {
                if from == srv_addr {
                    assert_eq!(&buf[..n], &want[..], "size {size}");
                    got.0 = true;
                } else {
                    assert_eq!(&buf[..n], b"from elsewhere");
                    assert_eq!(from.ip().to_string(), SRV2_V6);
                    got.1 = true;
                }
                if got == (true, true) {
                    break;
                }
            }
            if got == (true, true) {
                break;
            }
        }
        let softnet = std::fs::read_to_string("/proc/net/softnet_stat").unwrap_or_default();
        assert_eq!(
            got,
            (true, true),
            "the echo and the other reply, size {size}; {:?}; softnet_stat {softnet}",
            stats(&l)
        );
    }
    let s = stats(&l);
    assert_eq!((s.flows_udp, s.flows_ipv6_total), (1, 1), "{s:?}");
    // Ping from the TUN's address: one echo mapping more.
    let ping = Command::new("ping")
        .args([
            "-6",
            "-c",
            "2",
            "-W",
            "2",
            "-I",
            &clat_v6.to_string(),
            SRV_V6,
        ])
        .output()
        .expect("ping");
    assert!(
        ping.status.success(),
        "{}",
        String::from_utf8_lossy(&ping.stdout)
    );
    let s = stats(&l);
    assert_eq!((s.flows_icmp, s.flows_ipv6_total), (1, 2), "{s:?}");
    // Larger than the upstream path (loopback's MTU made 1400 bytes): the
    // engine's send fails with EMSGSIZE and the app gets a Packet Too Big
    // with that MTU.
    sh("ip", &["link", "set", "lo", "mtu", "1400"]);
    // 1420 bytes: 1468 as a packet, within the TUN's 1500, over the 1400.
    let errors = stats(&l).icmp_errors_sent;
    let _ = app.send_to(&[7u8; 1420], srv_addr);
    wait_for("Packet Too Big to the app", Duration::from_secs(3), || {
        stats(&l).icmp_errors_sent > errors
    });
    // The app's kernel took it: its route to the server now has that MTU.
    let get = Command::new("ip")
        .args(["-6", "route", "get", SRV_V6, "from", &clat_v6.to_string()])
        .output()
        .unwrap();
    let get = String::from_utf8_lossy(&get.stdout);
    assert!(get.contains("mtu 1400"), "{get}");
    v6_lab_end(l);
}

/// An app's IPv6 UDP datagram larger than the TUN's MTU (1500) arrives in
/// fragments from its own kernel; the engine reassembles them (RFC 8200
/// section 4.5) and the server receives each datagram whole: 4000 and
/// 20000 bytes, then 1400 bytes unfragmented on the same mapping.
#[test]
fn ipv6_fragments_from_the_app_are_reassembled() {
    if !in_netns("ipv6_fragments_from_the_app_are_reassembled") {
        return;
    }
    setup_ns();
    let (l, clat_v6) = v6_lab(true);
    // The path to the server is 1500 bytes, as an uplink's: a datagram the
    // app fragmented must leave fragmented again, not with DONTFRAG (which
    // fails every such datagram with EMSGSIZE).
    let host = SRV_V6;
    sh(
        "ip",
        &[
            "-6", "route", "del", "local", host, "dev", "lo", "table", "local",
        ],
    );
    let narrow = [
        "-6", "route", "add", "local", host, "dev", "lo", "table", "local", "mtu", "1500",
    ];
    sh("ip", &narrow);
    // The server answers each datagram with its length and a digest.
    let srv = UdpSocket::bind(format!("[{SRV_V6}]:0")).unwrap();
    let srv_addr = srv.local_addr().unwrap();
    thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        while let Ok((n, peer)) = srv.recv_from(&mut buf) {
            let digest = buf[..n]
                .iter()
                .fold(0u64, |h, &b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
            let _ = srv.send_to(format!("{n} {digest}").as_bytes(), peer);
        }
    });
    let app = UdpSocket::bind(SocketAddr::new(clat_v6.into(), 0)).unwrap();
    app.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut buf = [0u8; 256];
    for size in [4000usize, 20000, 1400] {
        let data: Vec<u8> = (0..size).map(|i| pattern(i + size)).collect();
        let digest = data
            .iter()
            .fold(0u64, |h, &b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
        let before = stats(&l).tun_rx_packets;
        // UDP: an answer lost on the way back (3 times in about 45 runs
        // on a loaded machine, after the engine had sent the whole datagram
        // and written the answer to the TUN) is asked again, at most twice;
        // the counters below still say every datagram arrived whole.
        let mut answer = Err(std::io::ErrorKind::WouldBlock.into());
        for _ in 0..3 {
            app.send_to(&data, srv_addr).unwrap();
            answer = app.recv_from(&mut buf);
            if answer.is_ok() {
                break;
            }
        }
        let (n, from) =
            answer.unwrap_or_else(|e| panic!("no answer to {size} bytes: {e}; {:?}", stats(&l)));
        assert_eq!(from, srv_addr);
        assert_eq!(
            std::str::from_utf8(&buf[..n]).unwrap(),
            format!("{size} {digest}"),
            "size {size}"
        );
        let pieces = stats(&l).tun_rx_packets - before;
        let want = if size > 1452 {
            size.div_ceil(1448) as u64
        } else {
            1
        };
        assert!(pieces >= want, "{size} bytes came as {pieces} packets");
    }
    let s = stats(&l);
    assert_eq!((s.drop_fragment, s.drop_malformed), (0, 0), "{s:?}");
    assert_eq!((s.flows_udp, s.flows_ipv6_total), (1, 1), "{s:?}");
    v6_lab_end(l);
}

/// What the engine answers instead of dropping silently (RFC 4443): a
/// destination on the TUN's link (its /64, link-local) gets Address
/// Unreachable, for TCP too (connect() fails at once with EHOSTUNREACH,
/// as for a neighbour that never answers); an upper layer the engine
/// cannot carry (Next Header 253) gets Parameter Problem code 1 pointing
/// at the Next Header field (byte 6 without extension headers).
#[test]
fn ipv6_on_link_destinations_and_unknown_next_headers_are_answered() {
    if !in_netns("ipv6_on_link_destinations_and_unknown_next_headers_are_answered") {
        return;
    }
    setup_ns();
    let (l, clat_v6) = v6_lab(true);
    let on_link: std::net::Ipv6Addr = "fd9c:7c5a:e1b6:464::9".parse().unwrap();
    let bound = |ty| {
        let s = socket2::Socket::new(socket2::Domain::IPV6, ty, None).unwrap();
        s.bind(&SocketAddr::new(clat_v6.into(), 0).into()).unwrap();
        s
    };
    let s = bound(socket2::Type::STREAM);
    let t0 = Instant::now();
    let err = s
        .connect_timeout(
            &SocketAddr::new(on_link.into(), 80).into(),
            Duration::from_secs(3),
        )
        .expect_err("connected to a node that is not there");
    assert_eq!(err.raw_os_error(), Some(libc::EHOSTUNREACH), "{err:?}");
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
    // UDP, connected: the error comes back on the next receive (code 3 is
    // not fatal: Linux reports it to a UDP socket with IPV6_RECVERR). Once
    // to the TUN's /64 and once to a link-local address (the TUN's link
    // given as its zone).
    let scope = std::fs::read_to_string("/sys/class/net/clat0/ifindex")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let ll = std::net::SocketAddrV6::new("fe80::9".parse().unwrap(), 7, 0, scope);
    // Every ICMPv6 message delivered here, with its source.
    let seen = socket2::Socket::new(
        socket2::Domain::IPV6,
        socket2::Type::RAW,
        Some(socket2::Protocol::ICMPV6),
    )
    .unwrap();
    seen.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    for to in [SocketAddr::new(on_link.into(), 7), ll.into()] {
        let u: UdpSocket = bound(socket2::Type::DGRAM).into();
        let one: libc::c_int = 1;
        // SAFETY: a valid socket and a c_int option value.
        let r = unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&u),
                libc::IPPROTO_IPV6,
                libc::IPV6_RECVERR,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(r, 0);
        u.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        u.connect(to).unwrap();
        u.send(b"anyone?").unwrap();
        let err = u.recv(&mut [0u8; 16]).expect_err("no answer expected");
        assert_eq!(
            err.raw_os_error(),
            Some(libc::EHOSTUNREACH),
            "{to}: {err:?}"
        );
    }
    // Address Unreachable comes from the link's router (the engine's
    // nat_v6), not from the address that does not exist (RFC 4443 2.2 (c)).
    let mut sources = Vec::new();
    while sources.len() < 3 {
        let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 1500];
        let Ok((n, from)) = seen.recv_from(&mut buf) else {
            break;
        };
        // SAFETY: recv_from initialised the first n bytes.
        let b: Vec<u8> = buf[..n]
            .iter()
            .map(|x| unsafe { x.assume_init() })
            .collect();
        if b.first() == Some(&1) && b.get(1) == Some(&3) {
            sources.push(from.as_socket_ipv6().unwrap().ip().to_owned());
        }
    }
    let nat_v6 = base_cfg().nat_v6;
    assert!(
        sources.len() >= 2,
        "Address Unreachable seen from {sources:?}"
    );
    assert!(
        sources.iter().all(|a| *a == nat_v6),
        "from {sources:?}, not {nat_v6}"
    );
    let s = stats(&l);
    assert_eq!((s.icmp_errors_sent, s.drop_internal_dst), (3, 3), "{s:?}");
    // Next Header 253 (experimental, RFC 3692) from a raw socket; the
    // Parameter Problem is read from a raw ICMPv6 socket.
    let icmp = socket2::Socket::new(
        socket2::Domain::IPV6,
        socket2::Type::RAW,
        Some(socket2::Protocol::ICMPV6),
    )
    .unwrap();
    icmp.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let raw = socket2::Socket::new(
        socket2::Domain::IPV6,
        socket2::Type::RAW,
        Some(socket2::Protocol::from(253)),
    )
    .unwrap();
    raw.bind(&SocketAddr::new(clat_v6.into(), 0).into())
        .unwrap();
    let srv: SocketAddr = format!("[{SRV_V6}]:0").parse().unwrap();
    raw.send_to(b"experimental", &srv.into()).unwrap();
    let t0 = Instant::now();
    let msg = loop {
        let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 1500];
        let n = icmp.recv(&mut buf).expect("the Parameter Problem");
        // SAFETY: recv initialised the first n bytes.
        let b: Vec<u8> = buf[..n]
            .iter()
            .map(|x| unsafe { x.assume_init() })
            .collect();
        if b[0] == 4 {
            break b;
        }
        assert!(t0.elapsed() < Duration::from_secs(2), "only other ICMPv6");
    };
    // Type 4, code 1, pointer 6; the quote is the packet sent.
    assert_eq!((msg[0], msg[1]), (4, 1));
    assert_eq!(&msg[4..8], &6u32.to_be_bytes());
    assert_eq!(msg[8] >> 4, 6);
    assert_eq!(msg[8 + 6], 253);
    assert_eq!(&msg[8 + 40..], b"experimental");
    let s = stats(&l);
    assert_eq!(
        (s.icmp_errors_sent, s.drop_unsupported_proto),
        (4, 1),
        "{s:?}"
    );
    v6_lab_end(l);
}

/// recvmsg with the hop limit and traffic class the datagram arrived with.
fn recv_with_hop(s: &UdpSocket, buf: &mut [u8]) -> std::io::Result<(usize, i32, i32, SocketAddr)> {
    use std::os::fd::AsRawFd;
    // SAFETY: all-zero is valid for these C structs; the buffers outlive
    // the call and the control messages are read within msg_controllen.
    unsafe {
        let mut name: libc::sockaddr_in6 = std::mem::zeroed();
        let mut ctrl = [0u64; 16];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_name = (&mut name as *mut libc::sockaddr_in6).cast();
        msg.msg_namelen = std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = ctrl.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&ctrl);
        let n = libc::recvmsg(s.as_raw_fd(), &mut msg, 0);
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let (mut hop, mut tclass) = (-1, -1);
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            let v = *(libc::CMSG_DATA(c) as *const libc::c_int);
            match ((*c).cmsg_level, (*c).cmsg_type) {
                (libc::IPPROTO_IPV6, libc::IPV6_HOPLIMIT) => hop = v,
                (libc::IPPROTO_IPV6, libc::IPV6_TCLASS) => tclass = v,
                _ => {}
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
        let ip = std::net::Ipv6Addr::from(name.sin6_addr.s6_addr);
        let peer = SocketAddr::new(ip.into(), u16::from_be(name.sin6_port));
        Ok((n as usize, hop, tclass, peer))
    }
}

// ---- flow events (issue 17, docs/flow-events.md) --------------------------

use clat_engine::{FlowEnd, FlowEndReason, FlowEvent, FlowEvents, FlowProto, FlowStart};

/// A lab whose engine reports flow events into a queue of `capacity`.
fn events_lab(cfg: EngineConfig, capacity: usize) -> (Lab, FlowEvents) {
    setup_ns();
    let l = start_engine(EngineConfig {
        flow_events: capacity,
        ..cfg
    });
    let ev = l.engine.flow_events().expect("flow events are on");
    (l, ev)
}

/// Takes events from `ev` until `done` says the ones so far are enough
/// (at most 10 s).
fn events_until(
    ev: &FlowEvents,
    what: &str,
    mut done: impl FnMut(&[FlowEvent]) -> bool,
) -> Vec<FlowEvent> {
    let t0 = Instant::now();
    let mut all = Vec::new();
    while !done(&all) {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}: {all:?}"
        );
        all.extend(ev.wait(Duration::from_millis(200)));
    }
    all
}

fn starts(all: &[FlowEvent]) -> Vec<FlowStart> {
    all.iter()
        .filter_map(|e| match e {
            FlowEvent::Start(s) => Some(s.clone()),
            _ => None,
        })
        .collect()
}

fn ends(all: &[FlowEvent]) -> Vec<FlowEnd> {
    all.iter()
        .filter_map(|e| match e {
            FlowEvent::End(e) => Some(*e),
            _ => None,
        })
        .collect()
}

fn local_v4(a: SocketAddr) -> std::net::SocketAddrV4 {
    match a {
        SocketAddr::V4(a) => a,
        SocketAddr::V6(a) => panic!("not IPv4: {a}"),
    }
}

/// Lower bound of the IPv4 bytes that carry `n` stream bytes through a TUN
/// of MTU `mtu`: each packet at most `mtu - 40` bytes of payload, 40 bytes
/// of headers at the least (IPv4 and TCP without options).
fn tcp_floor(n: usize, mtu: u16) -> u64 {
    let mss = usize::from(mtu) - 40;
    (n + 40 * n.div_ceil(mss)) as u64
}

/// A TCP flow of 300 kB each way: one start with the app's own address and
/// port and the destination it addressed, one end (Closed) whose bytes are
/// the IPv4 packets of the flow through the TUN (docs/flow-events.md): at
/// least the stream and its smallest headers each way, and together every
/// packet the TUN carried but the few after the end (the last ACKs).
#[test]
fn flow_events_tcp_flow_starts_and_ends_closed_with_its_packet_bytes() {
    if !in_netns("flow_events_tcp_flow_starts_and_ends_closed_with_its_packet_bytes") {
        return;
    }
    let (l, ev) = events_lab(base_cfg(), 64);
    let port = echo_server(&format!("[{SRV_V6}]:0")).port();
    const N: usize = 300_000;
    let mut c = TcpStream::connect((SRV_V4, port)).expect("connect through the CLAT");
    let app = local_v4(c.local_addr().unwrap());
    let mut w = c.try_clone().unwrap();
    let writer = thread::spawn(move || {
        let data: Vec<u8> = (0..N).map(pattern).collect();
        w.write_all(&data).unwrap();
        w.shutdown(Shutdown::Write).unwrap();
    });
    let mut got = Vec::new();
    c.read_to_end(&mut got).expect("the echo, then EOF");
    writer.join().unwrap();
    assert_eq!(got.len(), N);
    drop(c);
    let all = events_until(&ev, "the TCP flow's end", |a| !ends(a).is_empty());
    thread::sleep(Duration::from_millis(200));
    let s = starts(&all);
    assert_eq!(s.len(), 1, "{all:?}");
    let st = &s[0];
    assert_eq!(st.proto, FlowProto::Tcp);
    assert_eq!(st.src, app, "the app's address and port");
    assert_eq!(st.dst, std::net::SocketAddrV4::new(SRV_V4, port));
    assert_eq!((st.name.as_deref(), st.native_ipv4), (None, false));
    let e = ends(&all)[0];
    assert_eq!((e.id, e.how), (st.id, FlowEndReason::Closed), "{all:?}");
    assert!(e.at_ms >= st.at_ms);
    // With offloads, TSO segments of up to 64 KiB carry one header each.
    let mtu = if offloads_by_default() {
        u16::MAX
    } else {
        base_cfg().mtu
    };
    assert!(e.bytes_up >= tcp_floor(N, mtu), "{e:?}");
    assert!(e.bytes_down >= tcp_floor(N, mtu), "{e:?}");
    // Every packet through the TUN was the app's or the listener's, of
    // this one flow: all counted but those after its end.
    let tun = stats(&l).tun_rx_bytes;
    let counted = e.bytes_up + e.bytes_down;
    assert!(
        counted <= tun && tun - counted <= 4 * 60,
        "counted {counted} of the TUN's {tun} bytes"
    );
    println!(
        "300 kB each way: bytes_up {} bytes_down {} (TUN {tun})",
        e.bytes_up, e.bytes_down
    );
}

/// A connect refused upstream ends as Refused, with the SYN counted up and
/// nothing down; a UDP mapping starts once (later destinations count in
/// its bytes: whole IPv4 datagrams each way) and ends TimedOut.
#[test]
fn flow_events_refused_tcp_and_udp_mapping_timed_out() {
    if !in_netns("flow_events_refused_tcp_and_udp_mapping_timed_out") {
        return;
    }
    let cfg = EngineConfig {
        udp_timeout: Duration::from_secs(1),
        ..base_cfg()
    };
    let (_l, ev) = events_lab(cfg, 64);
    let closed = TcpListener::bind(format!("[{SRV_V6}]:0"))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = TcpStream::connect_timeout(&(SRV_V4, closed).into(), Duration::from_secs(3))
        .expect_err("connect() to a closed port succeeded");
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
    let all = events_until(&ev, "the refusal", |a| !ends(a).is_empty());
    let (s, e) = (&starts(&all)[0], ends(&all)[0]);
    assert_eq!((s.proto, s.dst.port()), (FlowProto::Tcp, closed));
    assert_eq!((e.id, e.how), (s.id, FlowEndReason::Refused));
    // One SYN: 20 bytes of IPv4 and 20 to 60 of TCP; nothing came back
    // from the listener.
    assert!((40..=80).contains(&e.bytes_up), "{e:?}");
    assert_eq!(e.bytes_down, 0);

    let p1 = udp_server(&format!("[{SRV_V6}]:0")).port();
    let p2 = udp_server(&format!("[{SRV2_V6}]:0")).port();
    let u = UdpSocket::bind("0.0.0.0:0").unwrap();
    u.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let (mut up, mut down) = (0u64, 0u64);
    let mut buf = [0u8; 2048];
    for (ip, port, size) in [(SRV_V4, p1, 10usize), (SRV_V4, p1, 1000), (SRV2_V4, p2, 1)] {
        u.send_to(&vec![7u8; size], (ip, port)).unwrap();
        let n = u.recv(&mut buf).expect("UDP echo");
        assert_eq!(n, size + 2);
        up += 28 + size as u64;
        down += 28 + n as u64;
    }
    // The mapping's last datagram reached the app before this.
    let last_ms = clat_engine::flow_events::now_ms();
    let app = local_v4(u.local_addr().unwrap());
    let all = events_until(&ev, "the mapping's expiry", |a| !ends(a).is_empty());
    let s = starts(&all);
    assert_eq!(s.len(), 1, "one start per mapping: {all:?}");
    assert_eq!(s[0].proto, FlowProto::Udp);
    assert_eq!(s[0].src.port(), app.port());
    assert_eq!(
        s[0].dst,
        std::net::SocketAddrV4::new(SRV_V4, p1),
        "the first destination"
    );
    let e = ends(&all)[0];
    assert_eq!(
        (e.id, e.how, e.bytes_up, e.bytes_down),
        (s[0].id, FlowEndReason::TimedOut, up, down)
    );
    // It ended with its last datagram, not when the engine noticed the
    // idle timeout (1 s later at the least).
    assert!(
        e.at_ms >= s[0].at_ms && e.at_ms <= last_ms + 200,
        "the end {} is not the last datagram's time {last_ms}: {all:?}",
        e.at_ms
    );
}

/// Ping: an ICMP start (the echo identifier as the app's port, port 0 at
/// the destination); the engine stopping ends it as NetworkChanged with
/// every request and reply counted whole.
#[test]
fn flow_events_ping_starts_an_icmp_flow_and_stopping_ends_it() {
    if !in_netns("flow_events_ping_starts_an_icmp_flow_and_stopping_ends_it") {
        return;
    }
    let (mut l, ev) = events_lab(base_cfg(), 64);
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::ICMPV4)).expect("ping socket");
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let s: UdpSocket = s.into();
    let mut bytes = 0u64;
    for (seq, size) in [(1u16, 56usize), (2, 1000)] {
        let mut req = vec![8u8, 0, 0, 0, 0, 0];
        req.extend_from_slice(&seq.to_be_bytes());
        req.extend(std::iter::repeat_n(9u8, size));
        s.send_to(&req, (SRV_V4, 0)).unwrap();
        let mut buf = [0u8; 2048];
        let n = s.recv(&mut buf).expect("echo reply");
        assert_eq!(n, req.len());
        bytes += 20 + n as u64;
    }
    let ident = s.local_addr().unwrap().port();
    let all = events_until(&ev, "the ping's start", |a| !starts(a).is_empty());
    let st = &starts(&all)[0];
    assert_eq!(st.proto, FlowProto::Icmp);
    assert_eq!(st.dst, std::net::SocketAddrV4::new(SRV_V4, 0));
    assert_eq!(
        st.src,
        std::net::SocketAddrV4::new(Ipv4Addr::new(192, 0, 0, 4), ident)
    );
    l.engine.stop().unwrap();
    let all = events_until(&ev, "the end at stop", |a| !ends(a).is_empty());
    let e = ends(&all)[0];
    assert_eq!(
        (e.id, e.how, e.bytes_up, e.bytes_down),
        (st.id, FlowEndReason::NetworkChanged, bytes, bytes)
    );
    assert!(ev.is_closed());
}

/// A new prefix ends the NAT64 flows (here a UDP mapping), not the native
/// ones; losing native IPv4 (`set_ipv4_path`) ends the native ones; a
/// network change ends the rest: NetworkChanged each time, once.
#[test]
fn flow_events_prefix_path_and_network_changes_end_flows_as_network_changed() {
    if !in_netns("flow_events_prefix_path_and_network_changes_end_flows_as_network_changed") {
        return;
    }
    setup_ns();
    // The namespace of a_prefix_change_leaves_native_flows_alone: the app
    // reaches 192.88.99.1 through the CLAT, the engine's native (mark 7)
    // socket reaches it directly.
    sh("ip", &["addr", "add", "192.88.99.1/32", "dev", "lo"]);
    sh("ip", &["rule", "add", "pref", "10", "lookup", "local"]);
    sh("ip", &["rule", "del", "pref", "0"]);
    sh(
        "ip",
        &["rule", "add", "pref", "4", "fwmark", "7", "lookup", "local"],
    );
    sh(
        "ip",
        &["rule", "add", "pref", "5", "iif", "lo", "lookup", "main"],
    );
    let l = start_engine_protected(
        EngineConfig {
            flow_events: 64,
            ..base_cfg()
        },
        Arc::new(clat_protect::MarkProtect(7)),
    );
    let ev = l.engine.flow_events().unwrap();
    // A NAT64 UDP mapping.
    let p1 = udp_server(&format!("[{SRV_V6}]:0")).port();
    let u = UdpSocket::bind("0.0.0.0:0").unwrap();
    u.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buf = [0u8; 64];
    u.send_to(b"nat64", (SRV_V4, p1)).unwrap();
    u.recv(&mut buf).expect("UDP echo over the NAT64 path");
    // A native TCP flow.
    l.engine
        .set_ipv4_path(clat_engine::Ipv4Path::Native)
        .unwrap();
    wait_for("the switch", Duration::from_secs(2), || {
        stats(&l).ipv4_path_native == 1
    });
    use socket2::{Domain, Socket, Type};
    let ls = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    ls.set_mark(7).unwrap();
    ls.bind(&SocketAddr::from(([0, 0, 0, 0], 0)).into())
        .unwrap();
    ls.listen(4).unwrap();
    let port = ls.local_addr().unwrap().as_socket().unwrap().port();
    let listener: TcpListener = ls.into();
    thread::spawn(move || {
        let (mut c, _) = listener.accept().unwrap();
        let mut b = [0u8; 1];
        while c.read_exact(&mut b).is_ok() {
            if c.write_all(&b).is_err() {
                return;
            }
        }
    });
    let mut app = TcpStream::connect_timeout(
        &SocketAddr::from(([192, 88, 99, 1], port)),
        Duration::from_secs(3),
    )
    .unwrap();
    app.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut b = [0u8; 1];
    app.write_all(b"a").unwrap();
    app.read_exact(&mut b).expect("echo over the native path");
    let all = events_until(&ev, "two starts", |a| starts(a).len() == 2);
    let s = starts(&all);
    let (udp, tcp) = (&s[0], &s[1]);
    assert_eq!((udp.proto, udp.native_ipv4), (FlowProto::Udp, false));
    assert_eq!((tcp.proto, tcp.native_ipv4), (FlowProto::Tcp, true));

    l.engine
        .set_prefix("2001:db8:65::/96".parse().unwrap())
        .unwrap();
    let all = events_until(&ev, "the NAT64 mapping's end", |a| !ends(a).is_empty());
    let e = ends(&all);
    assert_eq!(e.len(), 1, "only the NAT64 flow: {all:?}");
    assert_eq!((e[0].id, e[0].how), (udp.id, FlowEndReason::NetworkChanged));

    l.engine
        .set_ipv4_path(clat_engine::Ipv4Path::Nat64)
        .unwrap();
    let all = events_until(&ev, "the native flow's end", |a| !ends(a).is_empty());
    let e = ends(&all);
    assert_eq!(e.len(), 1, "{all:?}");
    assert_eq!((e[0].id, e[0].how), (tcp.id, FlowEndReason::NetworkChanged));
    // 'a' each way, with SYN, handshake ACK and ACKs: small, not zero.
    assert!(e[0].bytes_up >= 41 + 40 && e[0].bytes_down >= 41, "{e:?}");

    // A network change ends a new NAT64 mapping too.
    let v = UdpSocket::bind("0.0.0.0:0").unwrap();
    v.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    l.engine
        .set_prefix("2001:db8:64::/96".parse().unwrap())
        .unwrap();
    thread::sleep(Duration::from_millis(200));
    v.send_to(b"again", (SRV_V4, p1)).unwrap();
    v.recv(&mut buf)
        .expect("UDP echo after the prefix came back");
    l.engine.network_changed().unwrap();
    let all = events_until(&ev, "the end at the network change", |a| {
        !ends(a).is_empty()
    });
    let (s, e) = (starts(&all), ends(&all));
    assert_eq!(s.len(), 1);
    assert_eq!(
        (e[0].id, e[0].how),
        (s[0].id, FlowEndReason::NetworkChanged)
    );
}

/// A queue that is full drops the newest events and counts them; with
/// `flow_events: 0` (the default) there is no queue and nothing is counted.
#[test]
fn flow_events_full_queue_counts_drops_and_off_means_none() {
    if !in_netns("flow_events_full_queue_counts_drops_and_off_means_none") {
        return;
    }
    let (mut l, ev) = events_lab(base_cfg(), 2);
    let p1 = udp_server(&format!("[{SRV_V6}]:0")).port();
    let mut socks = Vec::new();
    for _ in 0..3 {
        let u = UdpSocket::bind("0.0.0.0:0").unwrap();
        u.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        u.send_to(b"x", (SRV_V4, p1)).unwrap();
        u.recv(&mut [0u8; 16]).expect("UDP echo");
        socks.push(u);
    }
    assert_eq!(stats(&l).flow_events_dropped, 1);
    let got = ev.take();
    assert_eq!(starts(&got).len(), 2, "the first two: {got:?}");
    assert_eq!(
        got.iter()
            .map(|e| match e {
                FlowEvent::Start(s) => s.src.port(),
                _ => 0,
            })
            .collect::<Vec<_>>(),
        socks[..2]
            .iter()
            .map(|s| s.local_addr().unwrap().port())
            .collect::<Vec<_>>()
    );
    l.engine.stop().unwrap();
    // The three ends at stop: two fit, the third is dropped too.
    let all = events_until(&ev, "the ends", |a| ends(a).len() == 2);
    assert_eq!(all.len(), 2);
    assert_eq!(stats(&l).flow_events_dropped, 2);
    drop(l);

    let l = start_engine(base_cfg());
    assert!(l.engine.flow_events().is_none());
    let u = UdpSocket::bind("0.0.0.0:0").unwrap();
    u.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    u.send_to(b"x", (SRV_V4, p1)).unwrap();
    u.recv(&mut [0u8; 16]).expect("UDP echo");
    let s = stats(&l);
    assert_eq!((s.flows_udp_total, s.flow_events_dropped), (1, 0));
}

/// A name the relay resolved for the app is the flow's name: the name the
/// app asked, through a CNAME; a literal the relay never gave has none, and
/// the relay's own queries are not flows.
#[test]
fn flow_events_carry_the_name_the_relay_resolved() {
    if !in_netns("flow_events_carry_the_name_the_relay_resolved") {
        return;
    }
    setup_ns();
    // The resolver: app.flow.test. is a CNAME of cdn.flow.test., whose A
    // record is 203.0.113.10 (SRV_V4).
    let dns = UdpSocket::bind(format!("[{DNS_V6}]:53")).unwrap();
    thread::spawn(move || {
        use hickory_proto::op::{Message, OpCode};
        use hickory_proto::rr::{rdata::A, rdata::CNAME, Name, RData, Record};
        let mut buf = [0u8; 4096];
        while let Ok((n, peer)) = dns.recv_from(&mut buf) {
            let q = Message::from_vec(&buf[..n]).unwrap();
            let mut r = Message::response(q.metadata.id, OpCode::Query);
            r.metadata.recursion_desired = q.metadata.recursion_desired;
            r.metadata.recursion_available = true;
            r.queries = q.queries.clone();
            let asked = q.queries[0].name().clone();
            let cdn = Name::from_ascii("cdn.flow.test.").unwrap();
            r.add_answer(Record::from_rdata(
                asked,
                300,
                RData::CNAME(CNAME(cdn.clone())),
            ));
            r.add_answer(Record::from_rdata(cdn, 300, RData::A(A(SRV_V4))));
            let _ = dns.send_to(&r.to_vec().unwrap(), peer);
        }
    });
    let l = start_engine(EngineConfig {
        flow_events: 64,
        ..base_cfg()
    });
    let ev = l.engine.flow_events().unwrap();
    let relay = (Ipv4Addr::new(192, 0, 0, 6), 53);
    let c = UdpSocket::bind("0.0.0.0:0").unwrap();
    c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    // Before any answer: no name for SRV2 (a literal).
    let p2 = udp_server(&format!("[{SRV2_V6}]:0")).port();
    c.send_to(b"lit", (SRV2_V4, p2)).unwrap();
    c.recv(&mut [0u8; 64]).expect("UDP echo");
    // The query from a port without a mapping: were queries to the relay
    // flows, this port would start one.
    let q = UdpSocket::bind("0.0.0.0:0").unwrap();
    q.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let ask = || {
        q.send_to(&dns::query(0x4444, "App.Flow.Test.", None), relay)
            .unwrap();
        let mut buf = [0u8; 1500];
        let n = q.recv(&mut buf).expect("the relay's answer");
        assert_eq!(dns::parse(&buf[..n]).answers.len(), 2);
    };
    ask();
    let qport = q.local_addr().unwrap().port();
    let port = echo_server(&format!("[{SRV_V6}]:0")).port();
    let connect = || {
        let mut t = TcpStream::connect((SRV_V4, port)).unwrap();
        t.write_all(b"n").unwrap();
        t.read_exact(&mut [0u8; 1]).unwrap();
    };
    connect();
    let all = events_until(&ev, "two starts", |a| starts(a).len() == 2);
    thread::sleep(Duration::from_millis(200));
    let mut all = all;
    all.extend(ev.take());
    let s = starts(&all);
    assert!(
        s.iter().all(|s| s.src.port() != qport),
        "the query to the relay is no flow: {all:?}"
    );
    assert_eq!(s.len(), 2, "{all:?}");
    assert_eq!((s[0].proto, s[0].name.as_deref()), (FlowProto::Udp, None));
    assert_eq!(s[1].proto, FlowProto::Tcp);
    assert_eq!(s[1].name.as_deref(), Some("app.flow.test"), "{all:?}");
    // A new network forgets the names its resolvers gave (split horizon):
    // the same destination has none until the relay resolves it again.
    l.engine.network_changed().unwrap();
    connect();
    let all = events_until(&ev, "the start after the change", |a| !starts(a).is_empty());
    let s = starts(&all);
    assert_eq!(
        (s[0].proto, s[0].name.as_deref()),
        (FlowProto::Tcp, None),
        "{all:?}"
    );
    ask();
    connect();
    let all = events_until(&ev, "the start after a new answer", |a| {
        !starts(a).is_empty()
    });
    let s = starts(&all);
    assert_eq!(s[0].name.as_deref(), Some("app.flow.test"), "{all:?}");
}

// ---- UDP batching (issue 16: udp_batch) ------------------------------

/// setsockopt of an int, asserting it worked.
fn sockopt(fd: std::os::fd::RawFd, level: libc::c_int, name: libc::c_int, v: libc::c_int) {
    // SAFETY: valid fd and option buffer of the declared size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(
        r,
        0,
        "setsockopt {level}/{name}: {}",
        std::io::Error::last_os_error()
    );
}

/// A UDP socket on `addr` with a receive buffer large enough for a burst.
fn burst_socket(addr: &str) -> UdpSocket {
    use std::os::fd::AsRawFd;
    let s = UdpSocket::bind(addr).unwrap();
    sockopt(
        s.as_raw_fd(),
        libc::SOL_SOCKET,
        libc::SO_RCVBUFFORCE,
        16 << 20,
    );
    s.set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    s
}

/// Whether this kernel has UDP GSO (UDP_SEGMENT reads back, Linux 4.18).
fn udp_gso_here() -> bool {
    use std::os::fd::AsRawFd;
    let s = UdpSocket::bind("[::1]:0").unwrap();
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: v and len are live and of the declared size.
    let r = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_UDP,
            libc::UDP_SEGMENT,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    r == 0
}

/// Datagram `seq` of a burst, `size` bytes (at least 4): the sequence
/// number, then a pattern that depends on both.
fn burst_datagram(seq: u32, size: usize) -> Vec<u8> {
    let mut d = seq.to_be_bytes().to_vec();
    d.extend((4..size).map(|i| pattern(i + seq as usize)));
    d
}

/// Everything `s` receives until it has been quiet for its read timeout.
fn drain_socket(s: &UdpSocket) -> Vec<(SocketAddr, Vec<u8>)> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65536];
    while let Ok((n, from)) = s.recv_from(&mut buf) {
        out.push((from, buf[..n].to_vec()));
    }
    out
}

/// A burst of equal datagrams through the engine arrives complete, in
/// order and intact each way: up, sent in batches (sendmmsg, UDP GSO on
/// loopback); down, one sender's burst through recvmmsg, and a UDP GSO
/// send of the server that reaches the engine's socket as one GRO message
/// (20 datagrams, the last shorter) and leaves as 20 packets to the app.
#[test]
fn udp_bursts_arrive_complete_and_in_order_both_ways() {
    if !in_netns("udp_bursts_arrive_complete_and_in_order_both_ways") {
        return;
    }
    setup_ns();
    const N: u32 = 200;
    let srv = burst_socket(&format!("[{SRV_V6}]:0"));
    let port = srv.local_addr().unwrap().port();
    let app = burst_socket("0.0.0.0:0");
    // Up: queued in the TUN (txqueuelen 500) before the engine starts, so
    // that its first TUN burst reads all 200.
    let (fd, cfg) = tun_ready(base_cfg());
    for seq in 0..N {
        app.send_to(&burst_datagram(seq, 1000), (SRV_V4, port))
            .unwrap();
    }
    let l = start_on_tun(fd, cfg, Arc::new(clat_protect::NoProtect));
    let got = drain_socket(&srv);
    let s = stats(&l);
    assert_eq!(got.len(), N as usize, "datagrams lost or added: {s:?}");
    let peer = got[0].0;
    for (seq, (from, d)) in got.iter().enumerate() {
        assert_eq!(*from, peer, "one mapping");
        assert_eq!(
            *d,
            burst_datagram(seq as u32, 1000),
            "datagram {seq} (order or content)"
        );
    }
    assert_eq!(s.up_tx_packets, u64::from(N), "{s:?}");
    // One sendmmsg: with UDP GSO, 4 sends of 64 + 64 + 64 + 8 datagrams;
    // without it, 200 messages in calls of at most 64.
    let (calls, gso_sends) = if udp_gso_here() { (1, 4) } else { (4, 0) };
    assert_eq!(
        (s.udp_sendmmsg_calls, s.udp_gso_sends),
        (calls, gso_sends),
        "the burst in as few calls as the batch allows: {s:?}"
    );
    println!(
        "up: {N} datagrams in {} sendmmsg calls, {} GSO sends",
        s.udp_sendmmsg_calls, s.udp_gso_sends
    );

    // Down: one send per datagram, in bursts of 40 (the engine's socket
    // has the default receive buffer, about 90 such datagrams).
    for seq in 0..N {
        srv.send_to(&burst_datagram(seq, 1000), peer).unwrap();
        if seq % 40 == 39 {
            let want = u64::from(seq + 1);
            wait_for("the burst at the engine", Duration::from_secs(2), || {
                stats(&l).up_rx_packets >= want
            });
        }
    }
    let got = drain_socket(&app);
    assert_eq!(
        got.len(),
        N as usize,
        "datagrams lost or added: {:?}",
        stats(&l)
    );
    for (seq, (from, d)) in got.iter().enumerate() {
        assert_eq!(*from, SocketAddr::from((SRV_V4, port)));
        assert_eq!(
            *d,
            burst_datagram(seq as u32, 1000),
            "datagram {seq} (order or content)"
        );
    }

    // Down: one GSO send of the server (UDP_SEGMENT as a socket option):
    // 19 datagrams of 1000 bytes and one of 500, in one skb on loopback.
    {
        use std::os::fd::AsRawFd;
        sockopt(srv.as_raw_fd(), libc::SOL_UDP, libc::UDP_SEGMENT, 1000);
    }
    let mut all = Vec::new();
    for seq in 0..20u32 {
        all.extend(burst_datagram(seq, if seq == 19 { 500 } else { 1000 }));
    }
    let before = stats(&l);
    srv.send_to(&all, peer).unwrap();
    let got = drain_socket(&app);
    let s = stats(&l);
    assert_eq!(got.len(), 20, "{s:?}");
    for (seq, (_, d)) in got.iter().enumerate() {
        let size = if seq == 19 { 500 } else { 1000 };
        assert_eq!(*d, burst_datagram(seq as u32, size), "segment {seq}");
    }
    assert_eq!(
        s.udp_gro_messages - before.udp_gro_messages,
        1,
        "the GSO send came up as one GRO message: {s:?}"
    );
    assert_eq!(s.up_rx_packets - before.up_rx_packets, 20, "{s:?}");
}

/// A mapping whose datagrams outlast its per-event budget is read on
/// without a new arrival (the loop's epoll is edge-triggered): with a
/// budget of one datagram, a burst of 100 that the server sends with no
/// traffic after it all reaches the app.
#[test]
fn udp_burst_over_the_event_budget_arrives_without_later_traffic() {
    if !in_netns("udp_burst_over_the_event_budget_arrives_without_later_traffic") {
        return;
    }
    setup_ns();
    let l = start_engine(EngineConfig {
        udp_event_budget: 1,
        ..base_cfg()
    });
    const N: u32 = 100;
    let srv = burst_socket(&format!("[{SRV_V6}]:0"));
    let port = srv.local_addr().unwrap().port();
    let app = burst_socket("0.0.0.0:0");
    app.send_to(b"hello", (SRV_V4, port)).unwrap();
    let mut buf = [0u8; 64];
    let (_, peer) = srv.recv_from(&mut buf).unwrap();
    for seq in 0..N {
        srv.send_to(&burst_datagram(seq, 64), peer).unwrap();
    }
    let got = drain_socket(&app);
    let s = stats(&l);
    assert_eq!(got.len(), N as usize, "datagrams left waiting: {s:?}");
    for (seq, (_, d)) in got.iter().enumerate() {
        assert_eq!(*d, burst_datagram(seq as u32, 64), "datagram {seq}");
    }
}

/// A burst that mixes two mappings, two destinations and several sizes
/// keeps the order of each mapping's datagrams to each destination.
#[test]
fn udp_burst_mixing_sizes_and_destinations_keeps_order_per_mapping() {
    if !in_netns("udp_burst_mixing_sizes_and_destinations_keeps_order_per_mapping") {
        return;
    }
    let l = lab();
    let srvs = [
        burst_socket(&format!("[{SRV_V6}]:0")),
        burst_socket(&format!("[{SRV2_V6}]:0")),
    ];
    let dsts = [
        (SRV_V4, srvs[0].local_addr().unwrap().port()),
        (SRV2_V4, srvs[1].local_addr().unwrap().port()),
    ];
    let apps = [burst_socket("0.0.0.0:0"), burst_socket("0.0.0.0:0")];
    let sizes = [1000usize, 1000, 1000, 64, 1400, 1400, 8, 1000, 300, 300];
    // Per (app, destination): how many it sent, and the sizes in order.
    let mut sent = vec![vec![Vec::new(); 2]; 2];
    for i in 0..400usize {
        let a = (i / 7) % 2;
        let d = (i / 3) % 2;
        let size = sizes[i % sizes.len()];
        let seq = sent[a][d].len() as u32;
        apps[a]
            .send_to(&burst_datagram(seq, size), dsts[d])
            .unwrap();
        sent[a][d].push(size);
    }
    let app_ports: Vec<u16> = apps
        .iter()
        .map(|a| a.local_addr().unwrap().port())
        .collect();
    let mut peers: Vec<SocketAddr> = Vec::new();
    for (d, srv) in srvs.iter().enumerate() {
        let got = drain_socket(srv);
        // By upstream mapping (the server sees the engine's socket).
        let mut by_peer: std::collections::BTreeMap<SocketAddr, Vec<Vec<u8>>> = Default::default();
        for (from, data) in got {
            by_peer.entry(from).or_default().push(data);
        }
        assert_eq!(by_peer.len(), 2, "two mappings reach server {d}");
        for (from, list) in by_peer {
            // Which app: the one whose sizes match (the sequences differ).
            let a = (0..2)
                .find(|&a| {
                    list.len() == sent[a][d].len()
                        && list.iter().zip(&sent[a][d]).all(|(x, &n)| x.len() == n)
                })
                .unwrap_or_else(|| {
                    panic!(
                        "server {d}: {} datagrams from {from} match no app's burst in order: {:?}",
                        list.len(),
                        stats(&l)
                    )
                });
            for (seq, data) in list.iter().enumerate() {
                assert_eq!(
                    *data,
                    burst_datagram(seq as u32, sent[a][d][seq]),
                    "app {a} to {d}, {seq}"
                );
            }
            peers.push(from);
        }
    }
    // Each app kept one mapping (one upstream port) for both destinations.
    let mut ports: Vec<u16> = peers.iter().map(|p| p.port()).collect();
    ports.sort();
    ports.dedup();
    assert_eq!(ports.len(), 2, "{peers:?} for apps {app_ports:?}");
    let s = stats(&l);
    assert_eq!(s.up_tx_packets, 400, "{s:?}");
    assert_eq!(s.flows_udp, 2, "{s:?}");
}

/// The route to 203.0.113.11 (SRV2_V6 on loopback) gets MTU 1400: 1000
/// bytes fit (1048 over IPv6), 1400 do not (1448).
fn narrow_path_to_srv2() {
    let host = SRV2_V6;
    sh(
        "ip",
        &[
            "-6", "route", "del", "local", host, "dev", "lo", "table", "local",
        ],
    );
    sh(
        "ip",
        &[
            "-6", "route", "add", "local", host, "dev", "lo", "table", "local", "mtu", "1400",
        ],
    );
}

/// An app socket with DF on every datagram (`pmtu`: IP_PMTUDISC_DO, or
/// IP_PMTUDISC_PROBE to keep sending over the learned MTU) and ICMP
/// errors on its error queue (IP_RECVERR).
fn df_app_socket(pmtu: libc::c_int) -> UdpSocket {
    use std::os::fd::AsRawFd;
    let app = burst_socket("0.0.0.0:0");
    sockopt(app.as_raw_fd(), libc::SOL_IP, libc::IP_MTU_DISCOVER, pmtu);
    sockopt(app.as_raw_fd(), libc::SOL_IP, libc::IP_RECVERR, 1);
    app
}

/// Sends `d` from the app socket `app` to `to`; an EMSGSIZE reported for
/// an earlier datagram (the app's kernel returns it on the next send:
/// this one was not sent) is counted in `told` and the send made again.
fn send_df(app: &UdpSocket, d: &[u8], to: (Ipv4Addr, u16), told: &mut usize) {
    if let Err(e) = app.send_to(d, to) {
        assert_eq!(e.raw_os_error(), Some(libc::EMSGSIZE), "{e:?}");
        *told += 1;
        app.send_to(d, to).unwrap();
    }
}

/// The ICMP errors queued on the IP_RECVERR socket `s` (MSG_ERRQUEUE),
/// each as (origin, type, code); empties the queue.
fn error_queue(s: &UdpSocket) -> Vec<(u8, u8, u8)> {
    use std::os::fd::AsRawFd;
    let mut out = Vec::new();
    loop {
        let mut data = [0u8; 2048];
        let mut ctrl = [0u64; 64];
        let mut iov = libc::iovec {
            iov_base: data.as_mut_ptr().cast(),
            iov_len: data.len(),
        };
        // SAFETY: all-zero is a valid msghdr; the pointers set are live
        // buffers of the declared sizes.
        let mut h: libc::msghdr = unsafe { std::mem::zeroed() };
        h.msg_iov = &mut iov;
        h.msg_iovlen = 1;
        h.msg_control = ctrl.as_mut_ptr().cast();
        h.msg_controllen = std::mem::size_of_val(&ctrl) as _;
        // SAFETY: h points at live buffers.
        let r = unsafe {
            libc::recvmsg(
                s.as_raw_fd(),
                &mut h,
                libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT,
            )
        };
        if r < 0 {
            return out;
        }
        // SAFETY: walking the control messages the kernel wrote in h.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&h);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_IP && (*c).cmsg_type == libc::IP_RECVERR {
                    let e: libc::sock_extended_err =
                        std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                    out.push((e.ee_origin, e.ee_type, e.ee_code));
                }
                c = libc::CMSG_NXTHDR(&h, c);
            }
        }
    }
}

/// A burst of 30 datagrams with DF to 203.0.113.11 where one, at `at`, is
/// over the path MTU: that one gets exactly one Fragmentation Needed (one
/// EMSGSIZE at the app, one entry on its error queue, one ICMP error sent,
/// one drop), whether it is grouped into a GSO send or goes alone (first,
/// last, or where GSO is missing), and the others arrive in order.
fn one_over_the_path_mtu_at(test: &str, at: usize) {
    if !in_netns(test) {
        return;
    }
    let l = lab();
    narrow_path_to_srv2();
    let srv = burst_socket(&format!("[{SRV2_V6}]:0"));
    let port = srv.local_addr().unwrap().port();
    let app = df_app_socket(libc::IP_PMTUDISC_DO);
    let sizes: Vec<usize> = (0..30).map(|i| if i == at { 1400 } else { 1000 }).collect();
    // The app hears of its datagram: Fragmentation Needed, which its
    // kernel reports as EMSGSIZE on a socket with IP_RECVERR, on the next
    // send when it comes before the burst is over (that datagram was not
    // sent: sent again), else on the next receive.
    let mut told = 0;
    for (seq, &size) in sizes.iter().enumerate() {
        send_df(
            &app,
            &burst_datagram(seq as u32, size),
            (SRV2_V4, port),
            &mut told,
        );
    }
    let got = drain_socket(&srv);
    let s = stats(&l);
    let want: Vec<Vec<u8>> = sizes
        .iter()
        .enumerate()
        .filter(|&(_, &n)| n == 1000)
        .map(|(seq, &n)| burst_datagram(seq as u32, n))
        .collect();
    let got: Vec<Vec<u8>> = got.into_iter().map(|(_, d)| d).collect();
    assert_eq!(got.len(), want.len(), "{s:?}");
    assert!(got == want, "the 29 datagrams that fit, in order: {s:?}");
    if told == 0 {
        let e = app.recv(&mut [0u8; 64]).expect_err("Fragmentation Needed");
        assert_eq!(e.raw_os_error(), Some(libc::EMSGSIZE), "{e:?}; {s:?}");
    } else {
        assert_eq!(told, 1, "one EMSGSIZE at the app: {s:?}");
    }
    let errs = error_queue(&app);
    let s = stats(&l);
    assert_eq!(
        errs,
        vec![(libc::SO_EE_ORIGIN_ICMP, 3, 4)],
        "one Fragmentation Needed on the app's error queue: {s:?}"
    );
    assert_eq!(s.icmp_errors_sent, 1, "{s:?}");
    assert_eq!(s.drop_upstream_send, 1, "{s:?}");
    assert_eq!(s.up_tx_packets, 29, "{s:?}");
}

#[test]
fn one_datagram_over_the_path_mtu_in_a_batch_gets_fragmentation_needed() {
    one_over_the_path_mtu_at(
        "one_datagram_over_the_path_mtu_in_a_batch_gets_fragmentation_needed",
        12,
    );
}

#[test]
fn one_datagram_over_the_path_mtu_last_in_a_batch_gets_one_fragmentation_needed() {
    one_over_the_path_mtu_at(
        "one_datagram_over_the_path_mtu_last_in_a_batch_gets_one_fragmentation_needed",
        29,
    );
}

#[test]
fn one_datagram_over_the_path_mtu_first_in_a_batch_gets_one_fragmentation_needed() {
    one_over_the_path_mtu_at(
        "one_datagram_over_the_path_mtu_first_in_a_batch_gets_one_fragmentation_needed",
        0,
    );
}

/// Over the NAT64 path (an IPv6 socket, DF per datagram as
/// IPV6_DONTFRAG) datagrams with and without DF go in one `sendmmsg`,
/// each with its own DF: a datagram without DF over the path MTU is
/// fragmented and arrives, the DF ones that fit arrive, in order.
#[test]
fn udp_datagrams_with_and_without_df_share_one_sendmmsg_over_ipv6() {
    use std::os::fd::AsRawFd;
    if !in_netns("udp_datagrams_with_and_without_df_share_one_sendmmsg_over_ipv6") {
        return;
    }
    setup_ns();
    narrow_path_to_srv2();
    let srv = burst_socket(&format!("[{SRV2_V6}]:0"));
    let port = srv.local_addr().unwrap().port();
    let app = burst_socket("0.0.0.0:0");
    let (fd, cfg) = tun_ready(base_cfg());
    // DF, no DF, DF, ...: the app toggles IP_MTU_DISCOVER between sends;
    // the datagrams without DF are 1400 bytes (over the path's 1400 once
    // in IPv6), those with DF 100.
    let sizes: Vec<usize> = (0..10)
        .map(|i| if i % 2 == 0 { 100 } else { 1400 })
        .collect();
    for (seq, &size) in sizes.iter().enumerate() {
        let pmtu = if size == 100 {
            libc::IP_PMTUDISC_DO
        } else {
            libc::IP_PMTUDISC_DONT
        };
        sockopt(app.as_raw_fd(), libc::SOL_IP, libc::IP_MTU_DISCOVER, pmtu);
        app.send_to(&burst_datagram(seq as u32, size), (SRV2_V4, port))
            .unwrap();
    }
    let l = start_on_tun(fd, cfg, Arc::new(clat_protect::NoProtect));
    let got = drain_socket(&srv);
    let s = stats(&l);
    let got: Vec<Vec<u8>> = got.into_iter().map(|(_, d)| d).collect();
    let want: Vec<Vec<u8>> = sizes
        .iter()
        .enumerate()
        .map(|(seq, &n)| burst_datagram(seq as u32, n))
        .collect();
    assert!(got == want, "all 10 in order: {} arrived; {s:?}", got.len());
    assert_eq!(s.udp_sendmmsg_calls, 1, "{s:?}");
    assert_eq!(s.icmp_errors_sent, 0, "{s:?}");
}

/// A GSO send the path refuses (segments over its MTU) that is not the
/// first message of its `sendmmsg` (whose error the kernel then drops) is
/// still learned: the burst [64, 1400, 1400, 1400] with DF, queued in the
/// TUN before the engine starts so that it is one TUN burst, has one
/// refused GSO send and one answer per datagram; the same burst again
/// does not try that GSO send again.
#[test]
fn a_refused_gso_send_after_a_sent_message_is_learned() {
    if !in_netns("a_refused_gso_send_after_a_sent_message_is_learned") {
        return;
    }
    setup_ns();
    narrow_path_to_srv2();
    let srv = burst_socket(&format!("[{SRV2_V6}]:0"));
    let port = srv.local_addr().unwrap().port();
    // PROBE: DF on every datagram, but the app's kernel does not refuse
    // the 1400 bytes itself after the first Fragmentation Needed.
    let app = df_app_socket(libc::IP_PMTUDISC_PROBE);
    let sizes = [64usize, 1400, 1400, 1400];
    let (fd, cfg) = tun_ready(base_cfg());
    let mut told = 0;
    for (seq, &size) in sizes.iter().enumerate() {
        send_df(
            &app,
            &burst_datagram(seq as u32, size),
            (SRV2_V4, port),
            &mut told,
        );
    }
    let l = start_on_tun(fd, cfg, Arc::new(clat_protect::NoProtect));
    let got = drain_socket(&srv);
    let s1 = stats(&l);
    assert_eq!(got.len(), 1, "{s1:?}");
    assert_eq!(got[0].1, burst_datagram(0, 64));
    // Without UDP_SEGMENT here, each went alone.
    let refused = u64::from(udp_gso_here());
    assert_eq!(s1.udp_gso_refused, refused, "{s1:?}");
    assert_eq!(s1.icmp_errors_sent, 3, "one answer per datagram: {s1:?}");
    assert_eq!(s1.drop_upstream_send, 3, "{s1:?}");
    let mut errs = error_queue(&app);
    for (seq, &size) in sizes.iter().enumerate() {
        send_df(
            &app,
            &burst_datagram(seq as u32, size),
            (SRV2_V4, port),
            &mut told,
        );
    }
    let got = drain_socket(&srv);
    let s2 = stats(&l);
    assert_eq!(got.len(), 1, "{s2:?}");
    assert_eq!(
        s2.udp_gso_refused, s1.udp_gso_refused,
        "the refused GSO send was not tried again: {s2:?}"
    );
    assert_eq!(s2.icmp_errors_sent, 6, "one answer per datagram: {s2:?}");
    assert_eq!(s2.drop_upstream_send, 6, "{s2:?}");
    assert_eq!(s2.up_tx_packets, 2, "{s2:?}");
    errs.extend(error_queue(&app));
    assert_eq!(
        errs,
        vec![(libc::SO_EE_ORIGIN_ICMP, 3, 4); 6],
        "one Fragmentation Needed per datagram on the app's error queue: {s2:?}"
    );
}
