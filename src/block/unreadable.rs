//! Blocks marked unreadable (NVMe's Write Uncorrectable): a bounded set of disjoint block
//! ranges. A read of a marked block fails until the block is written again (a write,
//! write zeroes, discard, a copy onto it, an erase); reads of an unmarked volume pay one
//! atomic load.
//!
//! The set holds at most [`MAX_RANGES`] ranges, so a hostile host cannot make it grow
//! without bound: marking a new range past that fails ([`Full`]), and a write that would
//! split a range in two when the set is full unmarks the part after the write instead
//! (logged), so the bound also holds for writes.

#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Most ranges one volume keeps marked (16 bytes each: 1 MiB at most).
pub const MAX_RANGES: usize = 65536;

/// The set is full: marking would need more than [`MAX_RANGES`] ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

/// Disjoint, sorted, non-adjacent `[start, end)` block ranges.
#[derive(Debug, Default)]
pub struct Unreadable {
    /// Number of ranges, read without the lock by the fast path.
    len: AtomicUsize,
    /// Changes since the volume was opened (LBA Status Generation Counter).
    generation: AtomicU64,
    ranges: Mutex<Vec<(u64, u64)>>,
}

impl Unreadable {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(u64, u64)>> {
        // A panic while holding the lock leaves a valid vector (every change is one
        // splice), so a poisoned lock is still usable.
        self.ranges.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn changed(&self, v: &[(u64, u64)]) {
        self.len.store(v.len(), Ordering::Release);
        self.generation.fetch_add(1, Ordering::Relaxed);
    }

    /// Marks `blocks` blocks from `start` (the caller checked the range).
    pub fn mark(&self, start: u64, blocks: u64) -> Result<(), Full> {
        if blocks == 0 {
            return Ok(());
        }
        let end = start.saturating_add(blocks);
        let mut v = self.lock();
        // Ranges that overlap or touch [start, end) merge with it.
        let first = v.partition_point(|&(_, e)| e < start);
        let last = v.partition_point(|&(s, _)| s <= end);
        let (mut s, mut e) = (start, end);
        if first < last {
            s = s.min(v[first].0);
            e = e.max(v[last - 1].1);
        } else if v.len() >= MAX_RANGES {
            return Err(Full);
        }
        v.splice(first..last, [(s, e)]);
        self.changed(&v);
        Ok(())
    }

    /// Unmarks `blocks` blocks from `start` (they were written).
    pub fn clear(&self, start: u64, blocks: u64) {
        if blocks == 0 || self.len.load(Ordering::Acquire) == 0 {
            return;
        }
        let end = start.saturating_add(blocks);
        let mut v = self.lock();
        let first = v.partition_point(|&(_, e)| e <= start);
        let last = v.partition_point(|&(s, _)| s < end);
        if first >= last {
            return;
        }
        let (head, tail) = (v[first].0, v[last - 1].1);
        let mut keep = Vec::with_capacity(2);
        if head < start {
            keep.push((head, start));
        }
        if tail > end {
            if keep.len() == 1 && v.len() - (last - first) + 2 > MAX_RANGES {
                log::warn!(
                    "unreadable blocks: {MAX_RANGES} ranges marked; blocks {end}..{tail} \
                     are unmarked instead of splitting a range"
                );
            } else {
                keep.push((end, tail));
            }
        }
        v.splice(first..last, keep);
        self.changed(&v);
    }

    /// Unmarks every block.
    pub fn clear_all(&self) {
        let mut v = self.lock();
        if !v.is_empty() {
            v.clear();
            self.changed(&v);
        }
    }

    /// The first marked block in `blocks` blocks from `start`, if any.
    pub fn first_in(&self, start: u64, blocks: u64) -> Option<u64> {
        if blocks == 0 || self.len.load(Ordering::Acquire) == 0 {
            return None;
        }
        let end = start.saturating_add(blocks);
        let v = self.lock();
        let i = v.partition_point(|&(_, e)| e <= start);
        v.get(i)
            .filter(|&&(s, _)| s < end)
            .map(|&(s, _)| s.max(start))
    }

    /// The marked ranges within `blocks` blocks from `start`, clipped to it, at most
    /// `max` of them, as (first block, blocks); and whether more were left out.
    pub fn ranges_in(&self, start: u64, blocks: u64, max: usize) -> (Vec<(u64, u64)>, bool) {
        let end = start.saturating_add(blocks);
        let v = self.lock();
        let i = v.partition_point(|&(_, e)| e <= start);
        let mut out = Vec::new();
        for &(s, e) in v[i..].iter().take_while(|&&(s, _)| s < end) {
            if out.len() == max {
                return (out, true);
            }
            let (s, e) = (s.max(start), e.min(end));
            out.push((s, e - s));
        }
        (out, false)
    }

    /// Marked blocks in all.
    pub fn blocks(&self) -> u64 {
        self.lock().iter().map(|&(s, e)| e - s).sum()
    }

    /// Number of changes so far.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranges(u: &Unreadable) -> Vec<(u64, u64)> {
        u.ranges_in(0, u64::MAX, usize::MAX).0
    }

    #[test]
    fn mark_merges_and_clear_splits() {
        let u = Unreadable::default();
        assert_eq!(u.first_in(0, 100), None);
        u.mark(10, 5).unwrap();
        u.mark(20, 5).unwrap();
        assert_eq!(ranges(&u), vec![(10, 5), (20, 5)]);
        // Touching ranges merge.
        u.mark(15, 5).unwrap();
        assert_eq!(ranges(&u), vec![(10, 15)]);
        assert_eq!(u.first_in(0, 10), None);
        assert_eq!(u.first_in(0, 11), Some(10));
        assert_eq!(u.first_in(12, 100), Some(12));
        assert_eq!(u.first_in(25, 100), None);
        u.clear(12, 3);
        assert_eq!(ranges(&u), vec![(10, 2), (15, 10)]);
        u.clear(0, 11);
        assert_eq!(ranges(&u), vec![(11, 1), (15, 10)]);
        u.clear(11, 100);
        assert_eq!(ranges(&u), vec![]);
        assert_eq!(u.first_in(0, u64::MAX), None);
        u.mark(u64::MAX - 2, 2).unwrap();
        assert_eq!(u.first_in(u64::MAX - 1, 1), Some(u64::MAX - 1));
        assert_eq!(u.blocks(), 2);
        u.clear_all();
        assert_eq!(u.blocks(), 0);
        assert!(u.generation() >= 7);
    }

    #[test]
    fn ranges_in_clips_and_limits() {
        let u = Unreadable::default();
        for i in 0..10 {
            u.mark(i * 10, 4).unwrap();
        }
        assert_eq!(u.ranges_in(12, 10, 8), (vec![(12, 2), (20, 2)], false));
        assert_eq!(
            u.ranges_in(0, 100, 3),
            (vec![(0, 4), (10, 4), (20, 4)], true)
        );
        assert!(!u.ranges_in(0, 100, 10).1);
    }

    #[test]
    fn bounded_for_marks_and_for_splitting_writes() {
        let u = Unreadable::default();
        for i in 0..MAX_RANGES as u64 {
            u.mark(i * 2, 1).unwrap();
        }
        assert_eq!(u.mark(MAX_RANGES as u64 * 2 + 5, 1), Err(Full));
        // Growing an existing range is still fine.
        u.mark(1, 1).unwrap();
        assert_eq!(u.ranges_in(0, 10, 10).0[0], (0, 3));
        // Full again (one merge freed one slot: fill it).
        u.mark(MAX_RANGES as u64 * 4, 1).unwrap();
        assert_eq!(u.mark(MAX_RANGES as u64 * 8, 1), Err(Full));
        // A write inside a range would split it: the tail is unmarked instead.
        u.clear(1, 1);
        assert_eq!(u.ranges_in(0, 10, 10).0[..2], [(0, 1), (4, 1)]);
        assert!(u.len.load(Ordering::Acquire) <= MAX_RANGES);
    }
}
