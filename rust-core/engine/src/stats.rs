//! Counters of the engine: plain atomics written by the engine thread and
//! read lock-free by anyone (CLI status, JNI, tests).
//!
//! The list of names is the contract with `clat status`, the e2e tests and
//! the Android UI: keep names stable and add new ones at the end.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($(#[$m:meta])* $name:ident,)*) => {
        /// Live counters, shared between the engine thread and readers.
        #[derive(Debug, Default)]
        pub(crate) struct Counters { $(pub(crate) $name: AtomicU64,)* }

        /// A snapshot of the counters.
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        pub struct Stats { $($(#[$m])* pub $name: u64,)* }

        impl Counters {
            pub(crate) fn snapshot(&self) -> Stats {
                Stats { $($name: self.$name.load(Ordering::Relaxed),)* }
            }
        }

        impl Stats {
            /// Every counter as `(name, value)`, in a stable order.
            pub fn pairs(&self) -> Vec<(&'static str, u64)> {
                vec![$((stringify!($name), self.$name),)*]
            }
        }
    };
}

counters! {
    /// IPv4 packets read from the TUN (from apps and from the kernel listener).
    tun_rx_packets,
    tun_rx_bytes,
    /// IPv4 packets written to the TUN.
    tun_tx_packets,
    tun_tx_bytes,
    /// Reads (datagrams or stream reads) from upstream sockets and their bytes.
    up_rx_packets,
    up_rx_bytes,
    /// Writes (datagrams or stream writes) to upstream sockets and their bytes.
    up_tx_packets,
    up_tx_bytes,
    /// Live flows by protocol (gauges).
    flows_tcp,
    flows_udp,
    flows_icmp,
    /// Flows created since start.
    flows_tcp_total,
    flows_udp_total,
    flows_icmp_total,
    /// Flows ended by an idle / transitory timeout.
    flows_expired,
    /// TCP resets the engine caused towards apps or upstream.
    tcp_rst_sent,
    /// ICMPv4 errors sent to apps (refusals and translated ICMPv6 errors).
    icmp_errors_sent,
    /// ICMP errors from the path read from upstream sockets' error queues
    /// (ICMPv6, and ICMPv4 on the native IPv4 path).
    icmp_errors_received,
    /// DNS relay.
    dns_queries,
    dns_answers,
    dns_tcp_retries,
    dns_truncated,
    dns_servfail,
    dns_upstream_timeouts,
    /// Times the event loop woke up (poll returned).
    loop_wakeups,
    /// Drops, by reason.
    drop_not_ipv4,
    drop_malformed,
    drop_bad_source,
    drop_multicast,
    drop_broadcast,
    drop_non_global,
    drop_internal_dst,
    drop_fragment,
    drop_unsupported_proto,
    drop_flow_limit,
    drop_tcp_no_flow,
    drop_tun_write,
    drop_upstream_send,
    drop_upstream_socket,
    drop_no_dns_upstream,
    drop_icmp_type,
    drop_foreign_source,
    /// TCP flows whose local leg closed without TIME_WAIT: the app's FIN
    /// answered by the engine after the server had closed first.
    tcp_fast_closes,
    /// Upstream DNS answers whose question was not the one asked (RFC 5452
    /// 9.1): dropped, the relay keeps waiting for the real answer.
    drop_dns_mismatch,
    /// Upstream UDP datagrams larger than an IPv4 datagram can carry
    /// (65,507 bytes of payload): dropped whole, never delivered cut short.
    drop_udp_too_big,
    /// TCP flows that never completed (upstream connect pending, or SYN
    /// injected and not accepted) evicted to make room for a new flow when
    /// the flow table was full (conntrack's early drop).
    flows_evicted,
    /// Retransmitted SYNs of the app absorbed while its upstream connect
    /// was pending.
    tcp_syns_absorbed,
    /// Upstream sockets given keepalives because their app sends them.
    tcp_upstream_keepalives,
    /// UDP datagrams without DF sent again after the path answered Packet
    /// Too Big, now fragmented to the learnt path MTU (RFC 7915 4.1).
    udp_resent_after_too_big,
    /// UDP datagrams without DF not kept for such a resend because the
    /// copies' byte budget was spent.
    udp_copies_over_budget,
    /// Flows (TCP flows, UDP and echo mappings) created on the native IPv4
    /// path ([`crate::ipv4_path`]); the others went through the NAT64.
    flows_native_total,
    /// The path new IPv4 flows take: 1 native IPv4, 0 NAT64 (a gauge).
    ipv4_path_native,
    /// Flows (TCP flows, UDP and echo mappings) of IPv6 packets from the
    /// TUN, carried natively to their IPv6 destination (`carry_ipv6`).
    flows_ipv6_total,
    /// Whether IPv6 from the TUN is carried: 1 with `carry_ipv6`, else 0
    /// (IPv6 packets are then dropped as `drop_not_ipv4`; a gauge).
    ipv6_carried,
    /// Flow events not queued because the queue was full: the consumer
    /// fell behind ([`crate::flow_events`]).
    flow_events_dropped,
    /// ICMP errors the engine would have originated but did not, over its
    /// rate limit (RFC 4443 section 2.4 (f); `icmp_rate`).
    drop_icmp_rate_limited,
    /// `sendmmsg` calls on upstream UDP sockets (each sends one TUN
    /// burst's datagrams of one mapping: `udp_batch`).
    udp_sendmmsg_calls,
    /// Messages of those that were one UDP GSO send of several datagrams.
    udp_gso_sends,
    /// UDP GSO sends the kernel refused (EIO: GSO off; EINVAL or EMSGSIZE:
    /// the mapping's GSO kept below that segment size); their datagrams
    /// went one by one.
    udp_gso_refused,
    /// `recvmmsg` calls on upstream UDP sockets that returned datagrams.
    udp_recvmmsg_calls,
    /// Received messages that held several datagrams (UDP GRO).
    udp_gro_messages,
}

impl Counters {
    #[inline]
    pub(crate) fn add(c: &AtomicU64, v: u64) {
        c.fetch_add(v, Ordering::Relaxed);
    }
    #[inline]
    pub(crate) fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
    #[inline]
    pub(crate) fn dec(c: &AtomicU64) {
        // Gauges never go below zero even if a bug makes them try to.
        let _ = c.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_in_declaration_order_and_reflect_values() {
        let c = Counters::default();
        Counters::inc(&c.tun_rx_packets);
        Counters::add(&c.up_tx_bytes, 42);
        Counters::dec(&c.flows_tcp);
        let s = c.snapshot();
        let p = s.pairs();
        assert_eq!(p[0], ("tun_rx_packets", 1));
        assert!(p.contains(&("up_tx_bytes", 42)));
        assert!(p.contains(&("flows_tcp", 0)));
        let names: Vec<_> = p.iter().map(|x| x.0).collect();
        // Every name once: dedup only removes adjacent repeats, so sort first.
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(names.len(), sorted.len(), "a counter name appears twice");
        assert!(names.iter().filter(|n| n.starts_with("drop_")).count() >= 10);
    }
}
