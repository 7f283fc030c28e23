//! Longest-prefix match of IPv4 routes (pod CIDR block → node).
//!
//! One hash map per prefix length plus a bit mask of the lengths in use: a lookup probes only
//! the lengths that exist, longest first, so a cluster whose routes are all /24 pod blocks
//! (plus perhaps a default) answers in one or two probes, and insert/remove are O(1) with no
//! rebuild. Keys are the masked prefix, hashed with a multiplicative hash (the keys are not
//! attacker-chosen: they come from the cluster's own node objects).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::error::{Error, Result};

/// Multiplicative hasher for `u32` keys.
#[derive(Default)]
struct PrefixHasher(u64);

impl Hasher for PrefixHasher {
    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 29)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn write_u32(&mut self, x: u32) {
        self.0 = (u64::from(x) ^ self.0).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type PrefixMap = HashMap<u32, u32, BuildHasherDefault<PrefixHasher>>;

/// Network mask of a prefix length (0..=32).
#[inline]
pub fn mask(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len))
    }
}

/// A route returned by [`PrefixTable::lookup_route`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// Network address.
    pub prefix: u32,
    /// Prefix length.
    pub len: u8,
    /// The value stored with the route (e.g. a node index).
    pub value: u32,
}

/// An IPv4 longest-prefix-match table mapping prefixes to `u32` values.
#[derive(Default, Clone)]
pub struct PrefixTable {
    by_len: Vec<PrefixMap>,
    /// Bit `l` set ⇔ some route of length `l` exists.
    present: u64,
    count: usize,
}

impl std::fmt::Debug for PrefixTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrefixTable")
            .field("routes", &self.count)
            .finish()
    }
}

fn check(prefix: u32, len: u8) -> Result<()> {
    if len > 32 {
        return Err(Error::InvalidArgument(format!(
            "prefix length {len} exceeds 32"
        )));
    }
    if prefix & !mask(len) != 0 {
        return Err(Error::InvalidArgument(format!(
            "{}/{len} has host bits set",
            std::net::Ipv4Addr::from(prefix)
        )));
    }
    Ok(())
}

impl PrefixTable {
    /// An empty table.
    pub fn new() -> Self {
        PrefixTable {
            by_len: (0..=32).map(|_| PrefixMap::default()).collect(),
            present: 0,
            count: 0,
        }
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when there are no routes.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Adds or replaces the route `prefix/len`; returns the value it replaced. The prefix
    /// must have no bits set past `len`.
    pub fn insert(&mut self, prefix: u32, len: u8, value: u32) -> Result<Option<u32>> {
        check(prefix, len)?;
        if self.by_len.is_empty() {
            *self = Self::new();
        }
        let old = self.by_len[usize::from(len)].insert(prefix, value);
        if old.is_none() {
            self.count += 1;
            self.present |= 1 << len;
        }
        Ok(old)
    }

    /// Removes the route `prefix/len`; returns its value if it existed.
    pub fn remove(&mut self, prefix: u32, len: u8) -> Result<Option<u32>> {
        check(prefix, len)?;
        let Some(map) = self.by_len.get_mut(usize::from(len)) else {
            return Ok(None);
        };
        let old = map.remove(&prefix);
        if old.is_some() {
            self.count -= 1;
            if map.is_empty() {
                self.present &= !(1 << len);
            }
        }
        Ok(old)
    }

    /// The most specific route containing `addr`.
    #[inline]
    pub fn lookup_route(&self, addr: u32) -> Option<Route> {
        let mut lens = self.present;
        while lens != 0 {
            // Highest set bit = longest prefix length still to try.
            let len = 63 - lens.leading_zeros() as u8;
            lens &= !(1u64 << len);
            let prefix = addr & mask(len);
            if let Some(&value) = self.by_len[usize::from(len)].get(&prefix) {
                return Some(Route { prefix, len, value });
            }
        }
        None
    }

    /// The value of the most specific route containing `addr`.
    #[inline]
    pub fn lookup(&self, addr: u32) -> Option<u32> {
        self.lookup_route(addr).map(|r| r.value)
    }

    /// [`PrefixTable::lookup`] for many addresses; writes `miss` where no route matches.
    pub fn lookup_batch(&self, addrs: &[u32], out: &mut [u32], miss: u32) -> Result<()> {
        if out.len() < addrs.len() {
            return Err(Error::BufferTooSmall {
                need: addrs.len(),
                have: out.len(),
            });
        }
        for (o, &a) in out.iter_mut().zip(addrs) {
            *o = self.lookup(a).unwrap_or(miss);
        }
        Ok(())
    }

    /// All routes, ordered by length then prefix.
    pub fn routes(&self) -> Vec<Route> {
        let mut v: Vec<Route> = self
            .by_len
            .iter()
            .enumerate()
            .flat_map(|(len, m)| {
                m.iter().map(move |(&prefix, &value)| Route {
                    prefix,
                    len: len as u8,
                    value,
                })
            })
            .collect();
        v.sort_by_key(|r| (r.len, r.prefix));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The obvious model: scan every route, keep the longest match.
    fn brute(routes: &[(u32, u8, u32)], addr: u32) -> Option<u32> {
        routes
            .iter()
            .filter(|(p, l, _)| addr & mask(*l) == *p)
            .max_by_key(|(_, l, _)| *l)
            .map(|(_, _, v)| *v)
    }

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn basics() {
        let mut t = PrefixTable::new();
        assert_eq!(t.lookup(0x0a00_0001), None);
        t.insert(0x0af4_0100, 24, 1).unwrap();
        t.insert(0x0af4_0000, 16, 2).unwrap();
        t.insert(0, 0, 3).unwrap();
        assert_eq!(t.lookup(0x0af4_0105), Some(1));
        assert_eq!(t.lookup(0x0af4_0205), Some(2));
        assert_eq!(t.lookup(0x0800_0000), Some(3));
        assert_eq!(t.insert(0x0af4_0100, 24, 9).unwrap(), Some(1));
        assert_eq!(t.len(), 3);
        assert_eq!(t.remove(0x0af4_0100, 24).unwrap(), Some(9));
        assert_eq!(t.remove(0x0af4_0100, 24).unwrap(), None);
        assert_eq!(
            t.lookup_route(0x0af4_0105),
            Some(Route {
                prefix: 0x0af4_0000,
                len: 16,
                value: 2
            })
        );
        assert!(t.insert(0x0af4_0101, 24, 1).is_err());
        assert!(t.insert(0, 33, 1).is_err());
        assert!(t.remove(1, 24).is_err());
        t.insert(0xffff_ffff, 32, 7).unwrap();
        assert_eq!(t.lookup(0xffff_ffff), Some(7));
        assert_eq!(t.routes().len(), 3);
        let mut d = PrefixTable::default();
        assert_eq!(d.remove(0, 0).unwrap(), None);
        d.insert(0, 0, 1).unwrap();
        assert_eq!(d.lookup(5), Some(1));
    }

    #[test]
    fn matches_brute_force_with_random_routes() {
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        for round in 0..20 {
            let mut t = PrefixTable::new();
            let mut model: Vec<(u32, u8, u32)> = Vec::new();
            for step in 0..400 {
                // Addresses concentrated in a few /8s so that prefixes overlap often.
                let addr = ((rng.next() % 4) as u32) << 24 | (rng.next() as u32 & 0x00ff_ffff);
                let len = (rng.next() % 33) as u8;
                let prefix = addr & mask(len);
                if rng.next().is_multiple_of(4) && !model.is_empty() {
                    let i = (rng.next() % model.len() as u64) as usize;
                    let (p, l, v) = model.swap_remove(i);
                    assert_eq!(t.remove(p, l).unwrap(), Some(v));
                } else {
                    let value = (round * 1000 + step) as u32;
                    let old = model.iter().position(|(p, l, _)| *p == prefix && *l == len);
                    let expected = old.map(|i| model.swap_remove(i).2);
                    model.push((prefix, len, value));
                    assert_eq!(t.insert(prefix, len, value).unwrap(), expected);
                }
                assert_eq!(t.len(), model.len());
                for _ in 0..20 {
                    let a = ((rng.next() % 4) as u32) << 24 | (rng.next() as u32 & 0x00ff_ffff);
                    assert_eq!(t.lookup(a), brute(&model, a), "addr {a:#x}");
                }
            }
            let addrs: Vec<u32> = (0..500).map(|_| rng.next() as u32 & 0x03ff_ffff).collect();
            let mut out = vec![0u32; 500];
            t.lookup_batch(&addrs, &mut out, u32::MAX).unwrap();
            for (a, o) in addrs.iter().zip(&out) {
                assert_eq!(brute(&model, *a).unwrap_or(u32::MAX), *o);
            }
        }
    }
}
