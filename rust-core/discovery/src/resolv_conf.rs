//! The system's resolvers, for `clat discover` without `--dns`.

use std::net::SocketAddr;

/// `nameserver` lines of a resolv.conf text, port 53, read with
/// [`crate::resolver::parse_nameserver`]. Link-local IPv6 servers keep their
/// `%iface` zone (resolved to an index); lines that do not parse, and
/// link-local servers without a zone (unusable: the kernel cannot send to
/// them), are skipped, as the C library skips what it cannot read.
pub fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("nameserver") {
            continue;
        }
        let Some(addr) = words.next() else { continue };
        match crate::resolver::parse_nameserver(addr) {
            Ok(sa) => out.push(sa),
            Err(e) => log::debug!("resolv.conf: {e}; skipped"),
        }
    }
    out
}

/// Reads `/etc/resolv.conf` (empty list when it is missing).
pub fn system_resolvers() -> Vec<SocketAddr> {
    std::fs::read_to_string("/etc/resolv.conf")
        .map(|t| parse_resolv_conf(&t))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nameservers() {
        let t = "# comment\nsearch lab\nnameserver 2001:db8:1::53\nnameserver 192.0.2.53 \nnameserver fe80::1%7\nnameserver fe80::2\nnameserver bogus\noptions edns0\n";
        let got = parse_resolv_conf(t);
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(got[0], "[2001:db8:1::53]:53".parse().unwrap());
        assert_eq!(got[1], "192.0.2.53:53".parse().unwrap());
        match got[2] {
            SocketAddr::V6(v6) => assert_eq!(v6.scope_id(), 7),
            _ => panic!(),
        }
    }
}
