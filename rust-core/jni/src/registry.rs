//! Handles: the ids Kotlin holds for running engines.
//!
//! Kotlin gets a `Long`, never a pointer, so a stale or forged handle can
//! only miss the map (and throw `IllegalStateException`), never dereference
//! freed memory. Ids come from a counter and are never reused, so a handle
//! kept after `stop` cannot silently reach a newer engine.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Map from handle to a shared entry. Entries are `Arc`s so that callers
/// work on an entry without holding the map lock (a protect callback into
/// Kotlin may call back into the bridge; holding the lock there would
/// deadlock).
pub struct Registry<T> {
    next: AtomicU64,
    entries: Mutex<HashMap<u64, Arc<T>>>,
}

impl<T> Default for Registry<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Registry<T> {
    /// An empty registry whose first handle is 1 (0 is never valid, so a
    /// zero-initialised Kotlin field is always stale).
    pub fn new() -> Self {
        Registry {
            next: AtomicU64::new(1),
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Arc<T>>> {
        // A panic while holding the lock cannot leave the map inconsistent
        // (every operation is a single insert/remove/get), so poisoning is
        // ignored rather than turning every later call into a panic.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores `value` under a fresh id.
    pub fn insert(&self, value: T) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(id, Arc::new(value));
        id
    }

    /// The entry for `id`, if it is still registered.
    pub fn get(&self, id: u64) -> Option<Arc<T>> {
        self.lock().get(&id).cloned()
    }

    /// Unregisters `id`; later `get`s miss. Returns the entry if it was there.
    pub fn remove(&self, id: u64) -> Option<Arc<T>> {
        self.lock().remove(&id)
    }

    /// Number of registered entries.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Converts a Kotlin `Long` handle to a registry id; negative values can
/// never have been issued.
pub fn handle_id(handle: i64) -> Option<u64> {
    u64::try_from(handle).ok().filter(|&h| h != 0)
}

/// The message every call on an unknown handle throws with.
pub fn stale_message(handle: i64) -> String {
    format!("no engine with handle {handle}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_never_reused() {
        let r = Registry::new();
        let a = r.insert("a");
        assert!(r.remove(a).is_some());
        let b = r.insert("b");
        assert_ne!(a, b);
        assert!(r.get(a).is_none(), "stale id must miss");
        assert_eq!(*r.get(b).unwrap(), "b");
    }

    #[test]
    fn remove_twice_is_a_miss_not_an_error() {
        let r = Registry::new();
        let a = r.insert(1u32);
        assert_eq!(r.remove(a).as_deref(), Some(&1));
        assert!(r.remove(a).is_none());
        assert!(r.is_empty());
    }

    #[test]
    fn zero_and_negative_handles_are_never_valid() {
        let r = Registry::new();
        let id = r.insert(());
        assert!(id >= 1);
        assert_eq!(handle_id(0), None);
        assert_eq!(handle_id(-5), None);
        assert_eq!(handle_id(id as i64), Some(id));
        assert_eq!(stale_message(42), "no engine with handle 42");
    }

    #[test]
    fn entries_outlive_removal_while_borrowed() {
        let r = Registry::new();
        let id = r.insert(String::from("engine"));
        let held = r.get(id).unwrap();
        r.remove(id);
        assert_eq!(r.len(), 0);
        assert_eq!(held.as_str(), "engine");
    }

    #[test]
    fn concurrent_inserts_get_distinct_ids() {
        let r = Arc::new(Registry::new());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let r = r.clone();
                std::thread::spawn(move || (0..100).map(|i| r.insert(i)).collect::<Vec<_>>())
            })
            .collect();
        let mut all: Vec<u64> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 400);
        assert_eq!(r.len(), 400);
    }
}
