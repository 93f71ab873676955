//! The consumer thread of `clat run --report`: takes the engine's flow
//! events as they come ([`clat_engine::FlowEvents::wait`], a condition
//! variable: no wake-up of its own while no flow starts or ends), names
//! the owner of each new flow at once ([`crate::attribution`]: the app's
//! socket may close soon after a short exchange) and feeds the
//! [`Recorder`]. Ends when the engine stops.
//!
//! Names and destinations are logged at debug level only.

use crate::attribution::Attributor;
use crate::report::Recorder;
use clat_engine::{FlowEvent, FlowEvents};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Capacity of the engine's flow-event queue with `--report`: a burst of
/// this many starts and ends may wait while the consumer scans `/proc`
/// (about 100 bytes each); more are dropped and counted
/// (`flow_events_dropped`, the report's `events_dropped`).
pub const QUEUE: usize = 8192;

/// Starts the thread, for flows from the TUN with index `tun_ifindex`.
/// Errors: the thread cannot start.
/// `events_dropped` reads the engine's `flow_events_dropped`, told to the
/// recorder after each batch so that lost ends are presumed as they age,
/// not only when someone asks for a report.
pub fn spawn(
    events: FlowEvents,
    recorder: Arc<Mutex<Recorder>>,
    tun_ifindex: u32,
    events_dropped: impl Fn() -> u64 + Send + 'static,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("clat-report".into())
        .spawn(move || {
            let mut attributor = Attributor::new(tun_ifindex);
            loop {
                // A long wait: the engine's push wakes it, and so does its
                // stop (the queue closes).
                let batch = events.wait(Duration::from_secs(24 * 3600));
                if batch.is_empty() {
                    if events.is_closed() {
                        return;
                    }
                    continue;
                }
                apply(&mut attributor, &recorder, batch);
                let dropped = events_dropped();
                let now = clat_engine::flow_events::now_ms();
                recorder
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .note_events_dropped(dropped, now);
            }
        })?;
    Ok(())
}

/// Names the owners of the batch's starts (one `/proc` scan for all), then
/// records the events in their order.
fn apply(attributor: &mut Attributor, recorder: &Mutex<Recorder>, batch: Vec<FlowEvent>) {
    let starts: Vec<_> = batch
        .iter()
        .filter_map(|e| match e {
            FlowEvent::Start(s) => Some((s.proto, s.src, s.dst)),
            FlowEvent::End(_) => None,
        })
        .collect();
    let mut owners = attributor.owners(&starts).into_iter();
    let mut r = recorder.lock().unwrap_or_else(|e| e.into_inner());
    for ev in &batch {
        match ev {
            FlowEvent::Start(s) => {
                let owner = owners
                    .next()
                    .unwrap_or(Err(crate::attribution::Unattributed::LookupFailed));
                if log::log_enabled!(log::Level::Debug) {
                    match &owner {
                        Ok(o) => log::debug!(
                            "report: flow {} {:?} {} -> {} ({:?}): pid {} {} uid {}",
                            s.id,
                            s.proto,
                            s.src,
                            s.dst,
                            s.name,
                            o.pid,
                            o.command,
                            o.uid
                        ),
                        Err(why) => log::debug!(
                            "report: flow {} {:?} {} -> {} ({:?}): unattributed, {}",
                            s.id,
                            s.proto,
                            s.src,
                            s.dst,
                            s.name,
                            why.as_str()
                        ),
                    }
                }
                r.flow_started(s, owner);
            }
            FlowEvent::End(e) => r.flow_ended(e),
        }
    }
}
