//! `clat xlat`: the stateless translator (crate `clat-xlat`) as a tool.
//!
//! Each FILE holds one packet starting at its IP header. For every packet the
//! translator emits, one line `v4 <hex>` or `v6 <hex>` is printed (the IP
//! version of the emitted packet); a dropped packet prints `drop <reason>`.
//! With `--pcap IN --pcap-out OUT` every packet of a classic pcap file (raw
//! IP or Ethernet) is translated and the results written as LINKTYPE_RAW.
//! Exit status: 0, or 2 for invalid arguments (clap's default for usage
//! errors, kept for ours).

use clat_xlat::{Config, Eam, EamTable, OutBuf, Outcome, Translator};
use ipnet::{Ipv4Net, Ipv6Net};
use std::io::Write;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// RFC 6052 prefix (lengths 32, 40, 48, 56, 64, 96).
    #[arg(long, value_name = "PREFIX", value_parser = crate::args::parse_prefix)]
    pub pool6: Option<Ipv6Net>,
    /// Explicit address mapping (RFC 7757), repeatable; equal suffix lengths.
    #[arg(long, value_name = "V4PREFIX=V6PREFIX", value_parser = parse_eam)]
    pub eam: Vec<Eam>,
    /// Source of ICMPv4 errors whose IPv6 source has no IPv4 form (RFC 6791).
    #[arg(long = "pool6791-v4", value_name = "ADDR")]
    pub pool6791_v4: Option<Ipv4Addr>,
    /// Source of ICMPv6 errors whose IPv4 source has no IPv6 form.
    #[arg(long = "pool6791-v6", value_name = "ADDR")]
    pub pool6791_v6: Option<Ipv6Addr>,
    /// The translator's own IPv4 address: source of the ICMPv4 errors it originates.
    #[arg(long = "self-v4", value_name = "ADDR")]
    pub self_v4: Option<Ipv4Addr>,
    /// The translator's own IPv6 address: source of the ICMPv6 errors it originates.
    #[arg(long = "self-v6", value_name = "ADDR")]
    pub self_v6: Option<Ipv6Addr>,
    /// Egress MTU on the IPv4 side.
    #[arg(long, value_name = "N", default_value_t = 1500)]
    pub mtu4: u16,
    /// Egress MTU on the IPv6 side.
    #[arg(long, value_name = "N", default_value_t = 1500)]
    pub mtu6: u16,
    /// The smallest IPv6 path MTU assumed (DF=0 IPv4 packets are cut to fit it).
    #[arg(long = "lowest-ipv6-mtu", value_name = "N", default_value_t = 1280)]
    pub lowest_ipv6_mtu: u16,
    /// Act as a router: decrement TTL and hop limit.
    #[arg(long = "decrement-ttl")]
    pub decrement_ttl: bool,
    /// Compute a checksum for IPv4 UDP with checksum 0 instead of dropping it.
    #[arg(long = "amend-udp-zero-checksum")]
    pub amend_udp_zero_checksum: bool,
    /// Translate every packet of this pcap file (raw IP or Ethernet) instead of FILEs.
    #[arg(
        long,
        value_name = "IN",
        requires = "pcap_out",
        conflicts_with = "files"
    )]
    pub pcap: Option<PathBuf>,
    /// Where to write the translated packets (pcap, LINKTYPE_RAW).
    #[arg(long = "pcap-out", value_name = "OUT", requires = "pcap")]
    pub pcap_out: Option<PathBuf>,
    /// Files holding one packet each, starting at the IP header.
    #[arg(value_name = "FILE", required_unless_present = "pcap")]
    pub files: Vec<PathBuf>,
}

fn parse_eam(s: &str) -> Result<Eam, String> {
    let (a, b) = s
        .split_once('=')
        .ok_or_else(|| format!("{s}: expected V4PREFIX=V6PREFIX"))?;
    // A bare address means a single-address mapping (/32 = /128).
    let v4: Ipv4Net = match a.parse() {
        Ok(n) => n,
        Err(_) => Ipv4Net::from(a.parse::<Ipv4Addr>().map_err(|e| format!("{a}: {e}"))?),
    };
    let v6: Ipv6Net = match b.parse() {
        Ok(n) => n,
        Err(_) => Ipv6Net::from(b.parse::<Ipv6Addr>().map_err(|e| format!("{b}: {e}"))?),
    };
    Eam::new(v4, v6).map_err(|e| e.to_string())
}

fn usage_error(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("clat xlat: {msg}");
    ExitCode::from(2)
}

fn hex(data: &[u8], line: &mut String) {
    use std::fmt::Write as _;
    for b in data {
        let _ = write!(line, "{b:02x}");
    }
}

pub fn main(args: Args) -> ExitCode {
    let mut eam = EamTable::new();
    for e in &args.eam {
        if let Err(err) = eam.insert(*e) {
            return usage_error(err);
        }
    }
    let cfg = Config {
        pool6: args.pool6,
        eam,
        pool6791_v4: args.pool6791_v4,
        pool6791_v6: args.pool6791_v6,
        self_v4: args.self_v4,
        self_v6: args.self_v6,
        mtu4: args.mtu4,
        mtu6: args.mtu6,
        lowest_ipv6_mtu: args.lowest_ipv6_mtu,
        decrement_ttl: args.decrement_ttl,
        amend_udp_zero_checksum: args.amend_udp_zero_checksum,
        ..Config::default()
    };
    let xl = match Translator::new(cfg) {
        Ok(x) => x,
        Err(e) => return usage_error(e),
    };
    if let (Some(inp), Some(outp)) = (&args.pcap, &args.pcap_out) {
        return run_pcap(&xl, inp, outp);
    }
    // Read every file first, so that a bad argument prints nothing else.
    let mut packets = Vec::with_capacity(args.files.len());
    for f in &args.files {
        match std::fs::read(f) {
            Ok(d) => packets.push(d),
            Err(e) => return usage_error(format!("{}: {e}", f.display())),
        }
    }
    let mut out = OutBuf::new();
    let stdout = std::io::stdout();
    let mut w = std::io::BufWriter::new(stdout.lock());
    let mut line = String::new();
    for p in &packets {
        match xl.translate(p, &mut out) {
            Outcome::Drop(r) => {
                let _ = writeln!(w, "drop {r}");
            }
            Outcome::Forward(_) | Outcome::Reply(_) => {
                for pkt in out.iter() {
                    line.clear();
                    line.push_str(if pkt[0] >> 4 == 6 { "v6 " } else { "v4 " });
                    hex(pkt, &mut line);
                    let _ = writeln!(w, "{line}");
                }
            }
        }
    }
    let _ = w.flush();
    ExitCode::SUCCESS
}

fn run_pcap(xl: &Translator, inp: &std::path::Path, outp: &std::path::Path) -> ExitCode {
    let data = match std::fs::read(inp) {
        Ok(d) => d,
        Err(e) => return usage_error(format!("{}: {e}", inp.display())),
    };
    let reader = match pcap::Reader::new(&data) {
        Ok(r) => r,
        Err(e) => return usage_error(format!("{}: {e}", inp.display())),
    };
    let mut w = pcap::Writer::new();
    let mut out = OutBuf::new();
    let (mut n_in, mut n_out, mut n_drop, mut n_skip) = (0u64, 0u64, 0u64, 0u64);
    for rec in reader {
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                eprintln!("clat xlat: {}: {e}; stopping there", inp.display());
                break;
            }
        };
        let Some(ip) = rec.ip else {
            n_skip += 1;
            continue;
        };
        n_in += 1;
        match xl.translate(ip, &mut out) {
            Outcome::Drop(r) => {
                n_drop += 1;
                log::debug!("packet {n_in}: drop {r}");
            }
            _ => {
                for p in out.iter() {
                    w.record(rec.ts_sec, rec.ts_usec, p);
                    n_out += 1;
                }
            }
        }
    }
    if let Err(e) = std::fs::write(outp, w.finish()) {
        eprintln!("clat xlat: {}: {e}", outp.display());
        return ExitCode::from(1);
    }
    eprintln!("clat xlat: {n_in} packets in, {n_out} out, {n_drop} dropped, {n_skip} not IP");
    ExitCode::SUCCESS
}

/// Classic pcap (not pcapng), hand-written: a few dozen lines, and no
/// well-kept crate offers a small reader/writer without a libpcap dependency.
mod pcap {
    const LINKTYPE_ETHERNET: u32 = 1;
    const LINKTYPE_RAW: u32 = 101;
    const LINKTYPE_IPV4: u32 = 228;
    const LINKTYPE_IPV6: u32 = 229;

    pub struct Record<'a> {
        pub ts_sec: u32,
        /// Microseconds (nanosecond files are converted).
        pub ts_usec: u32,
        /// The IP packet, or None if the frame is not IPv4/IPv6.
        pub ip: Option<&'a [u8]>,
    }

    pub struct Reader<'a> {
        data: &'a [u8],
        pos: usize,
        be: bool,
        nanos: bool,
        linktype: u32,
    }

    impl<'a> Reader<'a> {
        pub fn new(data: &'a [u8]) -> Result<Self, String> {
            if data.len() < 24 {
                return Err("too short for a pcap file".into());
            }
            let m = [data[0], data[1], data[2], data[3]];
            let (be, nanos) = match m {
                [0xd4, 0xc3, 0xb2, 0xa1] => (false, false),
                [0xa1, 0xb2, 0xc3, 0xd4] => (true, false),
                [0x4d, 0x3c, 0xb2, 0xa1] => (false, true),
                [0xa1, 0xb2, 0x3c, 0x4d] => (true, true),
                _ => return Err("not a classic pcap file (pcapng is not supported)".into()),
            };
            let mut r = Reader {
                data,
                pos: 24,
                be,
                nanos,
                linktype: 0,
            };
            r.linktype = r.u32_at(20) & 0x0fff_ffff;
            if !matches!(
                r.linktype,
                LINKTYPE_ETHERNET | LINKTYPE_RAW | LINKTYPE_IPV4 | LINKTYPE_IPV6
            ) {
                return Err(format!(
                    "link type {} not supported (1, 101, 228, 229 are)",
                    r.linktype
                ));
            }
            Ok(r)
        }

        fn u32_at(&self, at: usize) -> u32 {
            let b = [
                self.data[at],
                self.data[at + 1],
                self.data[at + 2],
                self.data[at + 3],
            ];
            if self.be {
                u32::from_be_bytes(b)
            } else {
                u32::from_le_bytes(b)
            }
        }

        fn ip_of(&self, frame: &'a [u8]) -> Option<&'a [u8]> {
            if self.linktype != LINKTYPE_ETHERNET {
                return Some(frame);
            }
            let mut off = 12;
            loop {
                let et = u16::from_be_bytes([*frame.get(off)?, *frame.get(off + 1)?]);
                match et {
                    0x8100 | 0x88a8 => off += 4, // VLAN tags
                    0x0800 | 0x86dd => return frame.get(off + 2..),
                    _ => return None,
                }
            }
        }
    }

    impl<'a> Iterator for Reader<'a> {
        type Item = Result<Record<'a>, String>;
        fn next(&mut self) -> Option<Self::Item> {
            if self.pos >= self.data.len() {
                return None;
            }
            if self.pos + 16 > self.data.len() {
                self.pos = self.data.len();
                return Some(Err("truncated record header".into()));
            }
            let ts_sec = self.u32_at(self.pos);
            let frac = self.u32_at(self.pos + 4);
            let incl = self.u32_at(self.pos + 8) as usize;
            let start = self.pos + 16;
            if start + incl > self.data.len() {
                self.pos = self.data.len();
                return Some(Err("truncated record".into()));
            }
            self.pos = start + incl;
            let frame = &self.data[start..start + incl];
            let ts_usec = if self.nanos { frac / 1000 } else { frac };
            Some(Ok(Record {
                ts_sec,
                ts_usec,
                ip: self.ip_of(frame),
            }))
        }
    }

    /// Writes little-endian, microsecond, LINKTYPE_RAW.
    pub struct Writer {
        buf: Vec<u8>,
    }

    impl Writer {
        pub fn new() -> Self {
            let mut buf = Vec::with_capacity(1 << 16);
            buf.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
            buf.extend_from_slice(&2u16.to_le_bytes());
            buf.extend_from_slice(&4u16.to_le_bytes());
            buf.extend_from_slice(&0i32.to_le_bytes()); // thiszone
            buf.extend_from_slice(&0u32.to_le_bytes()); // sigfigs
            buf.extend_from_slice(&262_144u32.to_le_bytes()); // snaplen
            buf.extend_from_slice(&LINKTYPE_RAW.to_le_bytes());
            Writer { buf }
        }

        pub fn record(&mut self, ts_sec: u32, ts_usec: u32, pkt: &[u8]) {
            self.buf.extend_from_slice(&ts_sec.to_le_bytes());
            self.buf.extend_from_slice(&ts_usec.to_le_bytes());
            self.buf
                .extend_from_slice(&(pkt.len() as u32).to_le_bytes());
            self.buf
                .extend_from_slice(&(pkt.len() as u32).to_le_bytes());
            self.buf.extend_from_slice(pkt);
        }

        pub fn finish(self) -> Vec<u8> {
            self.buf
        }
    }
}
