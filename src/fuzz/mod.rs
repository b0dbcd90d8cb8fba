//! Fuzz targets (issue 11): plain functions taking `&[u8]`, run by the seeded random
//! driver in `cargo test` ([`drive`], `src/fuzz/tests.rs`) and by the AFL binaries of
//! the separate `fuzz/` crate (coverage-guided, stable toolchain). docs/fuzzing.md.
//!
//! The bytes are read structurally through [`Input`]: they pick opcodes from the known
//! lists, field values biased towards 0, 1, the maximum, page boundaries, NSIDs
//! 0/1/NN/NN+1/FFFFFFFFh, and memory layouts with canary regions. An exhausted input
//! reads as zeroes, so every byte string is a valid case.
//!
//! A target panics when an invariant breaks, so a panic is a finding:
//! - nothing in the device code panics (worker threads included, see
//!   [`device_panics`]);
//! - every command completes within [`CMD_TIMEOUT`];
//! - every status is success or one of the one status table (`spec::status::TABLE`);
//! - no guest memory outside the buffers a command describes is written;
//! - after each case the controller still answers Identify Controller correctly, unless
//!   CSTS.CFS is set and the case legitimately caused it.

#![forbid(unsafe_code)]

pub mod admin_params;
pub mod copy;
pub mod rig;
pub mod sqe;
pub mod vfio_msg;

#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

/// The driver's default seed (`VNVME_FUZZ_SEED` overrides it; the AFL seed corpora are
/// generated from it).
pub const DEFAULT_SEED: u64 = 0x5eed_0011;

/// How long any one command (or vfio-user reply) may take.
pub const CMD_TIMEOUT: Duration = Duration::from_secs(2);

/// One fuzz target.
pub struct Target {
    pub name: &'static str,
    pub run: fn(&[u8]),
    /// Longest input worth generating.
    pub max_len: usize,
}

/// Every target, in the order the driver runs them.
pub const TARGETS: &[Target] = &[
    Target {
        name: "vfio_msg",
        run: vfio_msg::run,
        max_len: 512,
    },
    Target {
        name: "sqe",
        run: sqe::run,
        max_len: 768,
    },
    Target {
        name: "copy",
        run: copy::run,
        max_len: 768,
    },
    Target {
        name: "admin_params",
        run: admin_params::run,
        max_len: 512,
    },
];

/// The target called `name`.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

// --- structured reading of the input bytes ---

/// A cursor over the input; reads past the end give zeroes.
pub struct Input<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Input { data, pos: 0 }
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }

    pub fn u8(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    pub fn u64(&mut self) -> u64 {
        self.u32() as u64 | ((self.u32() as u64) << 32)
    }

    /// True about once in `n` times.
    pub fn one_in(&mut self, n: u8) -> bool {
        self.u8().is_multiple_of(n)
    }

    pub fn bool(&mut self) -> bool {
        self.u8() & 1 != 0
    }

    /// 0..n (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n <= 256 {
            self.u8() as usize % n
        } else {
            self.u32() as usize % n
        }
    }

    /// One of `items`.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    /// The rest of the input (at most `max` bytes).
    pub fn bytes(&mut self, max: usize) -> &'a [u8] {
        let start = self.pos.min(self.data.len());
        let end = start.saturating_add(max).min(self.data.len());
        self.pos = end.max(self.pos);
        &self.data[start..end]
    }

    /// A value biased towards the edges of a field of `bits` bits: 0, 1, 2, max,
    /// max - 1, powers of two and their neighbours, values near `interesting`, or any.
    pub fn edgy(&mut self, bits: u32, interesting: &[u64]) -> u64 {
        let max = if bits >= 64 {
            u64::MAX
        } else {
            (1u64 << bits) - 1
        };
        let v = match self.u8() % 12 {
            0 => 0,
            1 => 1,
            2 => 2,
            3 => max,
            4 => max - 1,
            5 => 1u64 << (self.u8() as u32 % bits.max(1)),
            6 => (1u64 << (self.u8() as u32 % bits.max(1))).wrapping_sub(1),
            7 | 8 if !interesting.is_empty() => {
                let base = self.pick(interesting);
                base.wrapping_add((self.u8() % 3) as u64).wrapping_sub(1)
            }
            _ => self.u64(),
        };
        v & max
    }
}

// --- invariants shared by the targets ---

/// Is `st` (a CQE status without the phase tag) success or a named status, with no
/// bits set outside SCT/SC/DNR?
pub fn status_is_named(st: u16) -> bool {
    use crate::nvme::spec::Status;
    if st & !(0x7ff | Status::DNR) != 0 {
        return false;
    }
    crate::nvme::names::status_name(st) != "unknown"
}

static HOOK: Once = Once::new();
static DEVICE_PANICS: AtomicU64 = AtomicU64::new(0);
static LAST_DEVICE_PANIC: Mutex<Option<String>> = Mutex::new(None);

/// Thread names of the device's own threads (queue workers, delay timer, vfio-user).
fn is_device_thread(name: &str) -> bool {
    name.starts_with("vnvme-") || name == "vfio-user"
}

/// Installs (once) a panic hook that counts panics on the device's own threads, which
/// the caller's `catch_unwind` cannot see; the previous hook still runs.
pub fn install_panic_hook() {
    HOOK.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let t = std::thread::current();
            let name = t.name().unwrap_or("");
            if is_device_thread(name) {
                DEVICE_PANICS.fetch_add(1, Ordering::SeqCst);
                if let Ok(mut g) = LAST_DEVICE_PANIC.lock() {
                    *g = Some(format!("thread {name}: {info}"));
                }
            }
            prev(info);
        }));
    });
}

/// Panics seen on device threads so far, and the last one's message.
pub fn device_panics() -> (u64, Option<String>) {
    let n = DEVICE_PANICS.load(Ordering::SeqCst);
    let last = LAST_DEVICE_PANIC.lock().ok().and_then(|g| g.clone());
    (n, last)
}

/// Runs `target` on `data` and turns any panic — in the caller or on a device thread —
/// into `Err(message)`.
pub fn run_case(target: &Target, data: &[u8]) -> Result<(), String> {
    install_panic_hook();
    let (before, _) = device_panics();
    let r = std::panic::catch_unwind(|| (target.run)(data));
    let (after, last) = device_panics();
    match r {
        Err(e) => {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "non-string panic".into());
            Err(msg)
        }
        Ok(()) if after != before => Err(format!(
            "device thread panicked: {}",
            last.unwrap_or_default()
        )),
        Ok(()) => Ok(()),
    }
}

// --- the seeded random driver ---

/// SplitMix64: the driver's PRNG.
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A random input for `target`: a random length (short ones more often), random
    /// bytes.
    pub fn case(&mut self, target: &Target) -> Vec<u8> {
        let max = target.max_len.max(1);
        let len = match self.next_u64() % 4 {
            0 => (self.next_u64() % 64) as usize,
            _ => (self.next_u64() % max as u64) as usize,
        };
        let mut v = Vec::with_capacity(len);
        while v.len() < len {
            let w = self.next_u64().to_le_bytes();
            let n = (len - v.len()).min(8);
            v.extend_from_slice(&w[..n]);
        }
        v
    }
}

/// What one driver run did.
#[derive(Debug, Clone)]
pub struct Report {
    pub target: &'static str,
    pub execs: u64,
    pub seed: u64,
    pub secs: f64,
    /// The first failure: the case's bytes and the message.
    pub failure: Option<(Vec<u8>, String)>,
}

impl Report {
    /// `fuzz TARGET: N execs, F failures, seed S, T s`.
    pub fn line(&self) -> String {
        format!(
            "fuzz {}: {} execs, {} failures, seed {}, {:.1} s",
            self.target,
            self.execs,
            self.failure.is_some() as u32,
            self.seed,
            self.secs
        )
    }
}

/// Runs `target` on random cases from `seed` until `iters` cases ran or `budget` is
/// spent (whichever first); stops at the first failure.
pub fn drive(target: &'static Target, seed: u64, iters: u64, budget: Duration) -> Report {
    let mut rng = SplitMix(seed ^ fnv(target.name));
    let start = Instant::now();
    let mut execs = 0;
    let mut failure = None;
    while execs < iters && start.elapsed() < budget {
        let case = rng.case(target);
        execs += 1;
        if let Err(msg) = run_case(target, &case) {
            failure = Some((case, msg));
            break;
        }
    }
    Report {
        target: target.name,
        execs,
        seed,
        secs: start.elapsed().as_secs_f64(),
        failure,
    }
}

/// The `n` first cases the driver would generate for `target` from `seed` (the AFL seed
/// corpora).
pub fn corpus(target: &'static Target, seed: u64, n: usize) -> Vec<Vec<u8>> {
    let mut rng = SplitMix(seed ^ fnv(target.name));
    (0..n).map(|_| rng.case(target)).collect()
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

pub fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn from_hex(s: &str) -> Option<Vec<u8>> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}
