//! The benchmarks' small deterministic random generator (splitmix64): reproducible
//! from a seed, no dependency.

#![forbid(unsafe_code)]

use std::time::Duration;

/// A small deterministic generator (splitmix64).
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// 0..n (n > 0).
    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    /// a..=b.
    pub(super) fn range(&mut self, a: u64, b: u64) -> u64 {
        a + self.below(b.saturating_sub(a) + 1)
    }
    pub(super) fn chance(&mut self, p: f64) -> bool {
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
    /// An exponential-ish delay around `mean` seconds (0.25..1.75 × mean).
    pub(super) fn around(&mut self, mean: f64) -> Duration {
        let f = 0.25 + 1.5 * (self.below(1000) as f64 / 1000.0);
        Duration::from_secs_f64(mean * f)
    }
}
