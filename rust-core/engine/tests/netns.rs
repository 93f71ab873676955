//! Real-TUN integration tests. Each test creates its own network namespace
//! (`clat-eng-<pid>-<test>`), re-executes this test binary inside it with
//! `ip netns exec`, and there builds: an IPv4-only TUN `clat0` with
//! 192.0.0.4/29 and the IPv4 default route, the engine on it with the prefix
//! 2001:db8:64::/96, and IPv6 "upstream" servers on loopback addresses
//! inside the prefix (2001:db8:64::cb00:710a = 203.0.113.10, ::cb00:710b =
//! 203.0.113.11, ::35 = DNS). IPv4 clients then go TUN -> engine -> IPv6.
//!
//! Needs root (namespaces, TUN); without it every test fails loudly.

use clat_engine::{open_tun, Engine, EngineConfig, Stats};
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
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "engine integration tests need root (network namespaces and TUN); run them as root"
    );
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
    sh("ip", &["link", "set", "lo", "up"]);
    for a in [SRV_V6, SRV2_V6, DNS_V6] {
        sh(
            "ip",
            &["-6", "addr", "add", &format!("{a}/128"), "dev", "lo"],
        );
    }
    std::fs::write("/proc/sys/net/ipv4/ping_group_range", "0 2147483647")
        .expect("ping_group_range");
}

fn start_engine(cfg: EngineConfig) -> Lab {
    let (fd, name) = open_tun("clat0").expect("open TUN");
    sh("ip", &["addr", "add", "192.0.0.4/29", "dev", &name]);
    sh(
        "ip",
        &["link", "set", &name, "mtu", &cfg.mtu.to_string(), "up"],
    );
    sh("ip", &["route", "add", "default", "dev", &name]);
    let engine = Engine::start(fd, cfg, Arc::new(clat_protect::NoProtect)).expect("engine start");
    Lab { engine }
}

fn base_cfg() -> EngineConfig {
    EngineConfig {
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
        .expect("answer after our FIN, then EOF");
    h.join().unwrap();
    assert!(ans.starts_with("got 100000 from "), "{ans}");
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
    let r = TcpStream::connect_timeout(&(SRV_V4, port).into(), Duration::from_secs(3));
    let err = match r {
        Err(e) => e,
        Ok(mut c) => {
            c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            let mut b = [0u8; 16];
            match c.read(&mut b) {
                Err(e) => e,
                Ok(n) => panic!("read {n} bytes instead of a reset"),
            }
        }
    };
    assert!(
        matches!(
            err.kind(),
            ErrorKind::ConnectionReset | ErrorKind::ConnectionRefused
        ),
        "expected a reset, got {err:?}"
    );
    assert!(
        t0.elapsed() < Duration::from_secs(1),
        "reset took {:?}",
        t0.elapsed()
    );
    assert!(stats(&l).tcp_rst_sent >= 1);
}
