//! The project's budget of engine memory per idle flow (issue 16: at most
//! 512 bytes), checked against the resident bytes of the structures a flow
//! holds: hash tables at their worst, just after doubling (hashbrown
//! doubles at 7/8 load, so each entry then has 16/7 buckets, each with a
//! control byte, and a hash touches every page), a timer B-tree leaf half
//! full, each boxed part in its glibc malloc chunk, and the dense vectors
//! (flows, slots) by their used length: the spare capacity a `Vec` keeps
//! after growing is not touched, so it is not resident (and above 128 KiB
//! glibc grows it with `mremap`). Kernel socket memory is not the
//! engine's. This is a lower bound of what the bench's memory part
//! measures as RSS growth of `clat run`, which also holds what the
//! allocator keeps of tables freed while they grew (at 1,000 UDP mappings
//! it measured 225 B against this model's 184).

use super::Slot;
use crate::datagram_mappings::{DatagramMappings, MapKey};
use crate::tcp_flows::Flow;
use crate::tcp_relay::Relay;
use crate::timers::Timers;
use std::mem::size_of;

/// The project's budget of engine memory per idle flow.
const IDLE_FLOW_BUDGET: usize = 512;

/// Bytes of a hash table bucket holding `entry` bytes, per entry, right
/// after the table doubled: 16/7 buckets per entry, rounded up.
fn hash_worst(entry: usize) -> usize {
    ((entry + 1) * 16).div_ceil(7)
}

/// The glibc malloc chunk of an allocation of `n` bytes: 8 bytes of
/// header, 16-byte aligned, at least 32 (malloc/malloc.c, request2size).
fn malloc_chunk(n: usize) -> usize {
    (n + 8).next_multiple_of(16).max(32)
}

/// A deadline in the timer B-tree: at least half of a leaf's slots are
/// used (deadlines arrive in order, leaves split 6 / 5), so two slots.
fn timer() -> usize {
    2 * Timers::ENTRY_BYTES
}

/// An idle established TCP flow: its entry in the flow table (stored
/// densely: no spare buckets, see port_table), the table's port index (a
/// u32 per bucket) and tuple index (a u16 per bucket), its deadline, and
/// its slot with the boxed relay (whose buffers are freed when empty).
#[test]
fn an_idle_tcp_flow_fits_the_memory_budget() {
    let entry = size_of::<(u16, Flow)>();
    let index = hash_worst(size_of::<u32>()) + hash_worst(size_of::<u16>());
    let slot = size_of::<Slot>() + malloc_chunk(size_of::<Relay>());
    let total = entry + index + timer() + slot;
    let what = format!(
        "{total} bytes per idle TCP flow: flow {entry}, indexes {index}, timer {}, \
         slot and relay {slot}",
        timer()
    );
    println!("{what}");
    // With flow events on, a reported flow's counters are on the heap
    // (docs/flow-events.md, "Cost").
    let tally = size_of::<crate::flow_events::Tally>();
    println!("plus {tally} bytes of flow-event counters per reported flow");
    assert!(tally <= 48, "flow-event counters {tally} bytes");
    assert!(total <= IDLE_FLOW_BUDGET, "{what}");
}

/// An idle UDP mapping: its entry in the mapping table (inline in the
/// buckets), its deadline and its slot (the socket inline).
#[test]
fn an_idle_udp_mapping_fits_the_memory_budget() {
    let entry = hash_worst(DatagramMappings::<usize, MapKey>::ENTRY_BYTES);
    let slot = size_of::<Slot>();
    let total = entry + timer() + slot;
    let what = format!(
        "{total} bytes per idle UDP mapping: entry {entry}, timer {}, slot {slot}",
        timer()
    );
    println!("{what}");
    assert!(total <= IDLE_FLOW_BUDGET, "{what}");
}
