//! A map from a 16-bit port to a value, with the values stored densely,
//! and [`KeyIndex`], a second index of the same values by another key.
//!
//! Why not a `HashMap<u16, V>`: a hash table keeps its entries inline in
//! its buckets, and it holds between 7/16 and 7/8 of them (hashbrown
//! doubles at 7/8 load), so each entry costs between 8/7 and 16/7 of its
//! size, and all of the buckets are resident because a hash spreads the
//! entries over every page. For a TCP flow (then a 176-byte entry) that was
//! 360 bytes per flow at 1,000 flows, over half of the budget of 512 bytes per
//! idle flow (issue 16). Here the values sit in a `Vec` with no holes (a
//! removal moves the last value into the gap), and a hash table of bare
//! indexes (hashbrown's `HashTable<u32>`: 5 bytes per bucket with its
//! control byte) finds a port's value. A `HashMap<K, u16>` by a second key
//! would again hold each key inline (25 bytes per bucket for the TCP
//! flows' 22-byte tuple); [`KeyIndex`] holds only the port (3 bytes) and
//! compares keys through the table.
//!
//! A lookup by port costs one probe (with a multiplication for a hash, see
//! [`port_hash`]) and one indexed load; by key, the key's SipHash (keyed:
//! the tuples are the app's) as before, and a port lookup per candidate
//! whose control byte matches (almost always one). A removal also fixes
//! the index of the value it moved.

use hashbrown::HashTable;
use std::hash::{BuildHasher, Hash, RandomState};

/// A port's hash: Fibonacci hashing (the port times 2^64 / phi), which
/// spreads consecutive ports over the buckets (the low bits) and the
/// control bytes (the top 7 bits). Not keyed: the ports are the engine's
/// own choice (NAT ports, handed out in turn), not the app's, so nobody
/// can pick colliding ones; and it costs one multiplication on every
/// packet where SipHash took tens of nanoseconds.
fn port_hash(port: u16) -> u64 {
    u64::from(port).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// Values `V` by port, stored densely (see the module doc).
#[derive(Debug)]
pub struct PortTable<V> {
    /// The values with their ports, in no particular order, no holes.
    values: Vec<(u16, V)>,
    /// Indexes into `values`, hashed by their port. u32: the table holds
    /// at most 65,536 ports, a u16 would not hold the count itself.
    index: HashTable<u32>,
}

impl<V> Default for PortTable<V> {
    fn default() -> Self {
        PortTable {
            values: Vec::new(),
            index: HashTable::new(),
        }
    }
}

impl<V> PortTable<V> {
    pub fn len(&self) -> usize {
        self.values.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// `port`'s index in `values`.
    fn find(&self, port: u16) -> Option<usize> {
        let values = &self.values;
        self.index
            .find(port_hash(port), |&i| values[i as usize].0 == port)
            .map(|&i| i as usize)
    }

    pub fn contains_key(&self, port: u16) -> bool {
        self.find(port).is_some()
    }

    pub fn get(&self, port: u16) -> Option<&V> {
        let i = self.find(port)?;
        Some(&self.values[i].1)
    }

    pub fn get_mut(&mut self, port: u16) -> Option<&mut V> {
        let i = self.find(port)?;
        Some(&mut self.values[i].1)
    }

    /// Files `v` under `port`; the value `port` had before, if any, is
    /// replaced and returned. A [`KeyIndex`] that holds `port` still files
    /// it under the old value's key: unlink it first (the TCP flow table
    /// only inserts free ports).
    pub fn insert(&mut self, port: u16, v: V) -> Option<V> {
        if let Some(i) = self.find(port) {
            return Some(std::mem::replace(&mut self.values[i].1, v));
        }
        // At most 65,536 distinct ports: the index always fits a u32.
        let i = self.values.len() as u32;
        self.values.push((port, v));
        let values = &self.values;
        self.index
            .insert_unique(port_hash(port), i, |&j| port_hash(values[j as usize].0));
        None
    }

    /// Takes `port`'s value out; the last value moves into its place.
    pub fn remove(&mut self, port: u16) -> Option<V> {
        let values = &self.values;
        let entry = self
            .index
            .find_entry(port_hash(port), |&i| values[i as usize].0 == port)
            .ok()?;
        let i = *entry.get() as usize;
        entry.remove();
        let (_, v) = self.values.swap_remove(i);
        if let Some(&(moved, _)) = self.values.get(i) {
            // The moved value's index entry still says the old last place.
            let last = self.values.len() as u32;
            if let Some(j) = self.index.find_mut(port_hash(moved), |&j| j == last) {
                *j = i as u32;
            }
        }
        Some(v)
    }

    /// The ports, in no particular order.
    pub fn ports(&self) -> impl Iterator<Item = u16> + '_ {
        self.values.iter().map(|e| e.0)
    }

    /// The ports and their values, in no particular order.
    #[cfg(test)]
    pub fn iter(&self) -> impl Iterator<Item = (u16, &V)> {
        self.values.iter().map(|e| (e.0, &e.1))
    }

    #[cfg(test)]
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (u16, &mut V)> {
        self.values.iter_mut().map(|e| (e.0, &mut e.1))
    }

    #[cfg(test)]
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.values.iter().map(|e| &e.1)
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.values.iter_mut().map(|e| &mut e.1)
    }

    pub fn clear(&mut self) {
        self.values.clear();
        self.index.clear();
    }
}

/// A second index of a [`PortTable`]'s values, by a key `K` each value
/// has (`key_of`), holding only the port (see the module doc). Not every
/// value need be in it (a closing TCP flow leaves it so that a new flow
/// may take its tuple), and the caller keeps it in step with the table:
/// [`KeyIndex::unlink`] before a value leaves the table.
#[derive(Debug)]
pub struct KeyIndex {
    ports: HashTable<u16>,
    hasher: RandomState,
}

impl Default for KeyIndex {
    fn default() -> Self {
        KeyIndex {
            ports: HashTable::new(),
            hasher: RandomState::new(),
        }
    }
}

impl KeyIndex {
    /// The port whose value in `t` has key `key`, if it is linked.
    pub fn get<V, K: Hash + Eq>(
        &self,
        t: &PortTable<V>,
        key_of: impl Fn(&V) -> K,
        key: &K,
    ) -> Option<u16> {
        self.ports
            .find(self.hasher.hash_one(key), |&p| {
                t.get(p).is_some_and(|v| key_of(v) == *key)
            })
            .copied()
    }

    /// Links `port` (in `t`) under its value's key, in place of any
    /// other port linked under the same key (as `HashMap::insert` would).
    pub fn link<V, K: Hash + Eq>(&mut self, t: &PortTable<V>, key_of: impl Fn(&V) -> K, port: u16) {
        let Some(v) = t.get(port) else { return };
        let key = key_of(v);
        let hash = self.hasher.hash_one(&key);
        let same = |&p: &u16| t.get(p).is_some_and(|v| key_of(v) == key);
        if let Some(p) = self.ports.find_mut(hash, same) {
            *p = port;
            return;
        }
        let hasher = &self.hasher;
        let rehash = |&p: &u16| t.get(p).map_or(0, |v| hasher.hash_one(key_of(v)));
        self.ports.insert_unique(hash, port, rehash);
    }

    /// Unlinks `port` (in `t`) if it is linked; true when it was.
    pub fn unlink<V, K: Hash>(
        &mut self,
        t: &PortTable<V>,
        key_of: impl Fn(&V) -> K,
        port: u16,
    ) -> bool {
        let Some(v) = t.get(port) else { return false };
        match self
            .ports
            .find_entry(self.hasher.hash_one(key_of(v)), |&p| p == port)
        {
            Ok(e) => {
                e.remove();
                true
            }
            Err(_) => false,
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.ports.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.ports.is_empty()
    }

    /// The linked ports, in no particular order.
    #[cfg(test)]
    pub fn ports(&self) -> impl Iterator<Item = u16> + '_ {
        self.ports.iter().copied()
    }

    pub fn clear(&mut self) {
        self.ports.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// Against a BTreeMap as the reference, through a sequence of inserts,
    /// replacements and removals that moves values around (removals from
    /// the middle, the end, the only one).
    #[test]
    fn behaves_as_a_map_through_inserts_and_removals() {
        let mut t = PortTable::default();
        let mut r = BTreeMap::new();
        // A fixed pseudo-random walk (xorshift), ports from a small range
        // so that replacements and removals of present ports happen often.
        let mut x = 0x9e37_79b9u32;
        for step in 0..5000u32 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let port = (x % 300) as u16 + 1020;
            if x & 0x300 == 0 {
                assert_eq!(t.remove(port), r.remove(&port), "step {step}");
            } else {
                assert_eq!(t.insert(port, step), r.insert(port, step), "step {step}");
            }
            assert_eq!(t.len(), r.len());
            if step % 97 == 0 {
                for p in 1015..1330 {
                    assert_eq!(t.get(p), r.get(&p), "port {p} at step {step}");
                    assert_eq!(t.contains_key(p), r.contains_key(&p));
                }
                let mut ports: Vec<u16> = t.ports().collect();
                ports.sort_unstable();
                assert_eq!(ports, r.keys().copied().collect::<Vec<_>>());
            }
        }
        for v in t.values_mut() {
            *v += 1;
        }
        for (p, v) in t.iter_mut() {
            *v += u32::from(p);
        }
        let mut all: Vec<(u16, u32)> = t.iter().map(|(p, v)| (p, *v)).collect();
        all.sort_unstable();
        let want: Vec<(u16, u32)> = r.iter().map(|(p, v)| (*p, v + 1 + u32::from(*p))).collect();
        assert_eq!(all, want);
        assert_eq!(t.values().count(), r.len());
        for (p, v) in &r {
            assert_eq!(t.get_mut(*p).copied(), Some(v + 1 + u32::from(*p)));
        }
        t.clear();
        assert!(t.is_empty());
        assert_eq!((t.len(), t.get(1020), t.ports().count()), (0, None, 0));
    }

    /// The key index through moves of the table (removals elsewhere move
    /// linked values), relinking under the same key, unlinking.
    #[test]
    fn key_index_follows_the_table() {
        let key_of = |v: &(char, u8)| v.0;
        let mut t = PortTable::default();
        let mut k = KeyIndex::default();
        for (port, key) in [(10, 'a'), (11, 'b'), (12, 'c'), (13, 'd')] {
            t.insert(port, (key, 0));
            k.link(&t, key_of, port);
        }
        assert_eq!(k.get(&t, key_of, &'b'), Some(11));
        // 10 leaves the table: 13 moves into its place, still found.
        assert!(k.unlink(&t, key_of, 10));
        t.remove(10);
        assert_eq!(
            (k.get(&t, key_of, &'a'), k.get(&t, key_of, &'d')),
            (None, Some(13))
        );
        // A second value with key 'b' takes the key; 11 stays in the table
        // unlinked (a closing flow whose tuple a new flow took).
        t.insert(20, ('b', 1));
        k.link(&t, key_of, 20);
        assert_eq!((k.get(&t, key_of, &'b'), k.len()), (Some(20), 3));
        assert!(!k.unlink(&t, key_of, 11));
        assert!(k.unlink(&t, key_of, 20));
        assert_eq!(k.get(&t, key_of, &'b'), None);
        let mut left: Vec<u16> = k.ports().collect();
        left.sort_unstable();
        assert_eq!(left, [12, 13]);
        k.clear();
        assert!(k.is_empty());
    }

    #[test]
    fn removing_the_last_and_the_only_value() {
        let mut t = PortTable::default();
        assert_eq!(t.remove(7), None);
        t.insert(7, 'a');
        t.insert(8, 'b');
        assert_eq!(t.remove(8), Some('b')); // the last: nothing moves
        assert_eq!((t.get(7), t.get(8)), (Some(&'a'), None));
        assert_eq!(t.remove(7), Some('a')); // the only one
        assert_eq!((t.len(), t.get(7)), (0, None));
        t.insert(9, 'c');
        assert_eq!(t.get(9), Some(&'c'));
    }
}
