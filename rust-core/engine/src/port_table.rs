//! A map from a 16-bit port to a value, with the values stored densely.
//!
//! Why not a `HashMap<u16, V>`: a hash table keeps its entries inline in
//! its buckets, and it holds between 7/16 and 7/8 of them (hashbrown
//! doubles at 7/8 load), so each entry costs between 8/7 and 16/7 of its
//! size, and all of the buckets are resident because a hash spreads the
//! entries over every page. For a TCP flow (a 168-byte entry) that was 360
//! bytes per flow at 1,000 flows, over half of the budget of 512 bytes per
//! idle flow (issue 16). Here the values sit in a `Vec` with no holes (a
//! removal moves the last value into the gap), and the hash table maps a
//! port to its value's index: 8 bytes per bucket.
//!
//! Lookups cost one hash probe and one indexed load, as before; a removal
//! also fixes the index of the value it moved.

use std::collections::HashMap;

/// Values `V` by port, stored densely (see the module doc).
#[derive(Debug)]
pub struct PortTable<V> {
    /// The values with their ports, in no particular order, no holes.
    values: Vec<(u16, V)>,
    /// Port -> index in `values`. u32: the table holds at most 65,536
    /// ports, u16 would not hold the count itself.
    index: HashMap<u16, u32>,
}

impl<V> Default for PortTable<V> {
    fn default() -> Self {
        PortTable {
            values: Vec::new(),
            index: HashMap::new(),
        }
    }
}

impl<V> PortTable<V> {
    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn contains_key(&self, port: u16) -> bool {
        self.index.contains_key(&port)
    }

    pub fn get(&self, port: u16) -> Option<&V> {
        let i = *self.index.get(&port)?;
        Some(&self.values[i as usize].1)
    }

    pub fn get_mut(&mut self, port: u16) -> Option<&mut V> {
        let i = *self.index.get(&port)?;
        Some(&mut self.values[i as usize].1)
    }

    /// Files `v` under `port`; the value `port` had before, if any, is
    /// replaced and returned.
    pub fn insert(&mut self, port: u16, v: V) -> Option<V> {
        if let Some(&i) = self.index.get(&port) {
            return Some(std::mem::replace(&mut self.values[i as usize].1, v));
        }
        // At most 65,536 distinct ports: the index always fits a u32.
        self.index.insert(port, self.values.len() as u32);
        self.values.push((port, v));
        None
    }

    /// Takes `port`'s value out; the last value moves into its place.
    pub fn remove(&mut self, port: u16) -> Option<V> {
        let i = self.index.remove(&port)? as usize;
        let (_, v) = self.values.swap_remove(i);
        if let Some(&(moved, _)) = self.values.get(i) {
            self.index.insert(moved, i as u32);
        }
        Some(v)
    }

    /// The ports, in no particular order.
    pub fn ports(&self) -> impl Iterator<Item = u16> + '_ {
        self.values.iter().map(|e| e.0)
    }

    /// The ports and their values, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (u16, &V)> {
        self.values.iter().map(|e| (e.0, &e.1))
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (u16, &mut V)> {
        self.values.iter_mut().map(|e| (e.0, &mut e.1))
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.values.iter().map(|e| &e.1)
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.values.iter_mut().map(|e| &mut e.1)
    }

    pub fn clear(&mut self) {
        self.values.clear();
        self.index.clear();
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
