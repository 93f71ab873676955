//! The engine's flow events as Kotlin receives them from
//! `ClatNative.awaitFlowEvents`: a batch of fixed-size records in one
//! `long[]`, and the DNS names in a `String[]` beside it (one entry per
//! event, null when the event has none). One array of each per batch, no
//! object per event: the app may see thousands of flows a minute.
//!
//! Decoded by `net.clat.app.logic.FlowEventDecoder` (keep the two in step;
//! the layout is written out in `docs/flow-events.md`, "Through JNI").
//! JNI-free, tested without a JVM.
//!
//! Each event is [`RECORD_LONGS`] longs:
//!
//! | word | FlowStart | FlowEnd |
//! |---|---|---|
//! | 0 | [`KIND_START`] \| proto << 8 \| native_ipv4 << 16 | [`KIND_END`] \| how << 8 |
//! | 1 | id | id |
//! | 2 | at_ms | at_ms |
//! | 3 | src: IPv4 address (u32, network order value) << 16 \| port | bytes_up |
//! | 4 | dst: IPv4 address << 16 \| port | bytes_down |
//!
//! proto: 0 TCP, 1 UDP, 2 ICMP. how: 0 CLOSED, 1 RESET, 2 TIMED_OUT,
//! 3 REFUSED, 4 UNREACHABLE, 5 EVICTED, 6 NETWORK_CHANGED. Ids and byte
//! counts above `i64::MAX` (never reached in practice) are saturated.

use std::net::SocketAddrV4;

use clat_engine::{FlowEndReason, FlowEvent, FlowProto};

/// Longs per event.
pub const RECORD_LONGS: usize = 5;
/// Word 0's low byte for a flow start (0 is never used, so a zeroed array
/// cannot pass for events).
pub const KIND_START: i64 = 1;
/// Word 0's low byte for a flow end.
pub const KIND_END: i64 = 2;

/// The code of `p` in word 0 of a start.
pub fn proto_code(p: FlowProto) -> i64 {
    match p {
        FlowProto::Tcp => 0,
        FlowProto::Udp => 1,
        FlowProto::Icmp => 2,
    }
}

/// The code of `h` in word 0 of an end.
pub fn how_code(h: FlowEndReason) -> i64 {
    match h {
        FlowEndReason::Closed => 0,
        FlowEndReason::Reset => 1,
        FlowEndReason::TimedOut => 2,
        FlowEndReason::Refused => 3,
        FlowEndReason::Unreachable => 4,
        FlowEndReason::Evicted => 5,
        FlowEndReason::NetworkChanged => 6,
    }
}

/// An IPv4 socket address in one long: the address's 32 bits above the
/// port's 16 (at most 48 bits: always positive).
pub fn pack_addr(a: SocketAddrV4) -> i64 {
    (i64::from(u32::from(*a.ip())) << 16) | i64::from(a.port())
}

fn saturate(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The records and the names of `events`, in their order.
pub fn encode(events: &[FlowEvent]) -> (Vec<i64>, Vec<Option<String>>) {
    let mut records = Vec::with_capacity(events.len() * RECORD_LONGS);
    let mut names = Vec::with_capacity(events.len());
    for ev in events {
        match ev {
            FlowEvent::Start(s) => {
                records.extend_from_slice(&[
                    KIND_START | proto_code(s.proto) << 8 | i64::from(s.native_ipv4) << 16,
                    saturate(s.id),
                    s.at_ms,
                    pack_addr(s.src),
                    pack_addr(s.dst),
                ]);
                names.push(s.name.clone());
            }
            FlowEvent::End(e) => {
                records.extend_from_slice(&[
                    KIND_END | how_code(e.how) << 8,
                    saturate(e.id),
                    e.at_ms,
                    saturate(e.bytes_up),
                    saturate(e.bytes_down),
                ]);
                names.push(None);
            }
        }
    }
    (records, names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clat_engine::{FlowEnd, FlowStart};
    use std::net::Ipv4Addr;

    #[test]
    fn a_start_and_an_end_are_written_as_the_layout_says() {
        let start = FlowEvent::Start(FlowStart {
            id: 42,
            at_ms: 1_700_000_000_123,
            proto: FlowProto::Udp,
            src: SocketAddrV4::new(Ipv4Addr::new(192, 0, 0, 4), 40000),
            dst: SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 10), 53),
            name: Some("www.example.org".into()),
            native_ipv4: true,
        });
        let end = FlowEvent::End(FlowEnd {
            id: 42,
            at_ms: 1_700_000_001_000,
            bytes_up: 1234,
            bytes_down: u64::MAX,
            how: FlowEndReason::TimedOut,
        });
        let (records, names) = encode(&[start, end]);
        // Written out by hand: 192.0.0.4 = 0xc0000004, 40000 = 0x9c40;
        // 203.0.113.10 = 0xcb00710a, 53 = 0x35.
        assert_eq!(
            records,
            vec![
                0x0001_0101,
                42,
                1_700_000_000_123,
                0xc000_0004_9c40,
                0xcb00_710a_0035,
                0x0202,
                42,
                1_700_000_001_000,
                1234,
                i64::MAX,
            ]
        );
        assert_eq!(names, vec![Some("www.example.org".to_string()), None]);
    }

    #[test]
    fn every_proto_and_reason_has_its_own_code() {
        let protos = [FlowProto::Tcp, FlowProto::Udp, FlowProto::Icmp].map(proto_code);
        assert_eq!(protos, [0, 1, 2]);
        let hows = [
            FlowEndReason::Closed,
            FlowEndReason::Reset,
            FlowEndReason::TimedOut,
            FlowEndReason::Refused,
            FlowEndReason::Unreachable,
            FlowEndReason::Evicted,
            FlowEndReason::NetworkChanged,
        ]
        .map(how_code);
        assert_eq!(hows, [0, 1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn the_highest_address_and_port_stay_positive() {
        let a = SocketAddrV4::new(Ipv4Addr::new(255, 255, 255, 255), 65535);
        assert_eq!(pack_addr(a), 0xffff_ffff_ffff);
        assert!(encode(&[]).0.is_empty());
    }
}
