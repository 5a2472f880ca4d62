//! A union of watched stretches of one episode, in whole seconds.
//!
//! Stretches are half-open, `[from, to)`, as Opencast's own footprints count them
//! (`getFootprints` adds one view to each second `in <= s < out`): a heartbeat `[120, 130]`
//! covers the ten seconds 120..=129, and two heartbeats that touch (`[120, 130]`, `[130, 140]`)
//! make one stretch of twenty. Positions are bounded by the caller (see `rules`), so a set holds
//! at most half as many stretches as the episode has seconds, however many actions fed it.

/// Disjoint, non-touching stretches, sorted by start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Segments {
    spans: Vec<(u32, u32)>,
}

impl Segments {
    /// Adds `[from, to)`; an empty or reversed stretch adds nothing.
    pub fn add(&mut self, from: u32, to: u32) {
        if to <= from {
            return;
        }
        // The first stretch that ends at or after `from` (it may touch or overlap the new one).
        let i = self.spans.partition_point(|&(_, e)| e < from);
        // The stretches from i that start at or before `to` merge with it.
        let mut j = i;
        let (mut a, mut b) = (from, to);
        while j < self.spans.len() && self.spans[j].0 <= to {
            a = a.min(self.spans[j].0);
            b = b.max(self.spans[j].1);
            j += 1;
        }
        if i == j {
            self.spans.insert(i, (a, b));
        } else {
            self.spans[i] = (a, b);
            self.spans.drain(i + 1..j);
        }
    }

    /// Adds every stretch of `other`.
    pub fn merge(&mut self, other: &Segments) {
        if self.spans.is_empty() {
            self.spans.clone_from(&other.spans);
            return;
        }
        for &(a, b) in &other.spans {
            self.add(a, b);
        }
    }

    /// Adds every stretch of `other`, taking its storage when this set is empty.
    pub fn absorb(&mut self, other: Segments) {
        if self.spans.is_empty() {
            self.spans = other.spans;
        } else {
            self.merge(&other);
        }
    }

    /// Seconds covered.
    pub fn seconds(&self) -> u64 {
        self.spans.iter().map(|&(a, b)| u64::from(b - a)).sum()
    }

    /// The stretches, sorted.
    pub fn spans(&self) -> &[(u32, u32)] {
        &self.spans
    }

    /// The end of the last stretch (0 when empty).
    pub fn end(&self) -> u32 {
        self.spans.last().map_or(0, |s| s.1)
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(v: &[(u32, u32)]) -> Segments {
        let mut s = Segments::default();
        for &(a, b) in v {
            s.add(a, b);
        }
        s
    }

    #[test]
    fn union_merges_overlaps_and_touching_stretches() {
        let s = of(&[(120, 130), (130, 140), (100, 110), (105, 125), (200, 210)]);
        assert_eq!(s.spans(), &[(100, 140), (200, 210)]);
        assert_eq!(s.seconds(), 50);
        let s = of(&[(0, 10), (20, 30), (40, 50), (5, 45)]);
        assert_eq!(s.spans(), &[(0, 50)]);
        let s = of(&[(10, 10), (20, 5)]);
        assert!(s.is_empty());
    }

    #[test]
    fn union_agrees_with_a_bitmap() {
        // Pseudo-random stretches against a plain per-second bitmap.
        let mut x: u64 = 0x9e3779b97f4a7c15;
        for _ in 0..200 {
            let mut s = Segments::default();
            let mut bits = [false; 320];
            for _ in 0..40 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let a = (x % 280) as u32;
                let b = a + ((x >> 20) % 30) as u32;
                s.add(a, b);
                for bit in bits.iter_mut().take(b as usize).skip(a as usize) {
                    *bit = true;
                }
            }
            assert_eq!(s.seconds(), bits.iter().filter(|b| **b).count() as u64);
            for w in s.spans().windows(2) {
                assert!(
                    w[0].1 < w[1].0,
                    "disjoint and not touching: {:?}",
                    s.spans()
                );
            }
        }
    }
}
