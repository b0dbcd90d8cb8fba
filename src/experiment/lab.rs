//! The experiment state of one device: counters, injected faults, a latency model and
//! the observer that receives every completion record. It implements
//! [`crate::hooks::Hooks`], so the NVMe model and the virtio-blk front end use the same
//! faults, latencies and counters; the control socket and the trace writer read it.
//!
//! * Every completion a front end posts (NVMe admin and I/O, deferred AER completions,
//!   delayed ones; virtio-blk requests) is counted and, if an observer is installed,
//!   reported as a [`CommandRecord`], on the thread that posted it. Completions that are
//!   never posted (a delayed completion dropped by a queue deletion or a reset) are
//!   neither counted nor reported.
//! * Faults are checked for every I/O operation before it runs (see [`FaultSpec`]); they
//!   match by operation kind, so a fault on `read` applies to NVMe Read and virtio-blk IN
//!   alike unless `transport` narrows it.
//! * A latency delays the completion, not the operation.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub use crate::hooks::{AdminKey, RangeRecord, Transport, ZoneKey};
use crate::hooks::{Completed, Hooks, Injection, Op, OpKind};
use crate::nvme::names::{admin_opcode_name, io_kind, io_opcode_name, kind_io_opcode};
use crate::nvme::spec::io_op;
use crate::sync::{lock, read, write};

/// Copy-specific part of a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyRecord {
    pub sdlba: u64,
    pub format: u8,
    /// NR as in CDW12 (0's based).
    pub nr: u8,
    /// The ranges as parsed (empty if the range list could not be read).
    pub ranges: Vec<RangeRecord>,
}

/// One completed operation (NVMe admin or I/O command, or virtio-blk request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandRecord {
    /// Completion time in microseconds since the experiment state was created.
    pub time_us: u64,
    /// The front end it came through.
    pub transport: Transport,
    /// What it did.
    pub kind: OpKind,
    /// NVMe submission queue id (0 = admin); virtio-blk virtqueue index.
    pub qid: u16,
    /// NVMe command id; virtio-blk descriptor chain head.
    pub cid: u16,
    /// NVMe opcode; virtio-blk request type.
    pub opcode: u8,
    pub nsid: u32,
    /// Block commands (read, write, write zeroes, compare, verify): SLBA and 1-based NLB.
    pub slba: Option<u64>,
    pub nlb: Option<u32>,
    pub copy: Option<CopyRecord>,
    /// Admin commands: what they asked for (feature, identify structure, log page).
    pub admin: Option<AdminKey>,
    /// Zone Management Send / Receive: action, SLBA, Select All, Partial Report.
    pub zone: Option<ZoneKey>,
    /// NVMe: the CQE status field without the phase tag: DNR in bit 14, SCT 10:8, SC
    /// 7:0 (the form nvme-cli prints, e.g. 0x4183). virtio-blk: the status byte.
    pub status: u16,
    pub dw0: u32,
    /// NVMe Dword 1 (Zone Append: the high half of the LBA it wrote at).
    pub dw1: u32,
    /// From fetching the SQE to posting the CQE, in microseconds.
    pub latency_us: u64,
}

/// Receives every completed command, on the thread that completed it. Must not block.
pub trait CommandObserver: Send + Sync {
    fn completed(&self, rec: &CommandRecord);
    /// A label the experimenter put between records (control `trace-mark`), at
    /// `time_us` on the records' clock. Observers without marks ignore it.
    fn mark(&self, _time_us: u64, _label: &str) {}
}

/// Counters of one opcode on one namespace. Opcodes without a name are listed as
/// "0xNN".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpcodeStats {
    pub commands: u64,
    /// Logical blocks moved (read, written, zeroed, copied...): NLB of a successful read,
    /// write, write zeroes, compare or verify; the blocks a Copy really wrote (also when
    /// it failed part way); 0 for flush, DSM and failed commands.
    pub blocks: u64,
    /// Errors by status (hex string "0x4183" -> count).
    pub errors: BTreeMap<String, u64>,
}

/// Copy-specific counters of one namespace (as destination).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyStats {
    /// Ranges asked for (NR + 1 of every Copy command, whatever its outcome).
    pub ranges: u64,
    /// Blocks really written (also by a Copy that failed part way).
    pub blocks_copied: u64,
    /// Number of ranges per command (1-based, as a decimal string) -> commands.
    pub ranges_histogram: BTreeMap<String, u64>,
    /// Descriptor format (as a decimal string) -> commands.
    pub formats: BTreeMap<String, u64>,
    /// The longest source range of any Copy whose range list was read (blocks, 1-based):
    /// compare with MSSRL.
    pub max_range_blocks: u64,
    /// The most blocks one Copy asked for (sum of its ranges): compare with MCL.
    pub max_command_blocks: u64,
}

/// Counters of one namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceStats {
    /// Opcode name ("read", "copy", ...) -> counters.
    pub opcodes: BTreeMap<String, OpcodeStats>,
    pub copy: CopyStats,
}

/// Counters of the whole device: nsid (decimal string) -> counters of the NVMe
/// namespace, "virtio-blk:NSID" -> counters of a virtio-blk disk over that namespace's
/// volume (operation kinds as names). NVMe admin commands are counted under "admin".
pub type StatsSnapshot = BTreeMap<String, NamespaceStats>;

pub use crate::nvme::namespace::CopyLimits;

/// An injected fault: matching I/O commands complete with `status`.
///
/// Matching: the command's opcode is `opcode` and, if `nsid` is given, its NSID is
/// `nsid` (for Copy: the destination). Every match counts in `matched`; match number n
/// (1-based) qualifies if n > `after` and (n - `after` - 1) is a multiple of `every`; a
/// qualifying match is injected if fewer than `count` injections happened and a draw of
/// the fault's own generator (splitmix64, seeded by `seed`, else by a fixed function of
/// the fault id) falls below `probability` (no draw when `probability` is 1). With
/// several faults, all matching faults count the match in id order; the first one that
/// injects wins, and the later ones neither draw nor inject for that command.
///
/// An injected command completes with `status` (plus DNR if `dnr`), Dword 0 = 0, and
/// touches no data. Copy with `copy_range = Some(k)` instead runs normally (every check
/// applies) but stops before range k, then fails with `status` and Dword 0 = k; a real
/// failure of the command or of a range before k wins. If k is at least the number of
/// ranges, every range is copied and the command still fails with Dword 0 = k.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// I/O opcode the fault applies to.
    pub opcode: u8,
    /// Only commands for this namespace (default: any).
    #[serde(default)]
    pub nsid: Option<u32>,
    /// Let this many matching commands pass before the first injection (default 0).
    #[serde(default)]
    pub after: u64,
    /// Inject at most this many times (default: no limit).
    #[serde(default)]
    pub count: Option<u64>,
    /// After `after`, inject into every Nth matching command (default 1: each).
    #[serde(default = "one")]
    pub every: u64,
    /// Probability of injecting into a command that qualifies (default 1.0).
    #[serde(default = "certain")]
    pub probability: f64,
    /// Seed of the fault's own random generator (default: fixed per fault id), so a
    /// run with a seed is reproducible exactly.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Status (SCT << 8 | SC); DNR is added from `dnr`.
    pub status: u16,
    /// Set Do Not Retry (default true).
    #[serde(default = "yes")]
    pub dnr: bool,
    /// Copy only: really copy ranges 0..k-1, then fail with `status` and Dword 0 = k.
    #[serde(default)]
    pub copy_range: Option<u32>,
    /// Only operations through this front end: "nvme" or "virtio-blk" (default: both;
    /// the opcode's operation kind is matched, e.g. read = NVMe Read and virtio-blk IN).
    #[serde(default)]
    pub transport: Option<String>,
}

impl FaultSpec {
    /// A fault with every optional field at its default: each matching command, from
    /// the first on, gets `status` with DNR.
    pub fn new(opcode: u8, status: u16) -> FaultSpec {
        FaultSpec {
            opcode,
            nsid: None,
            after: 0,
            count: None,
            every: one(),
            probability: certain(),
            seed: None,
            status,
            dnr: yes(),
            copy_range: None,
            transport: None,
        }
    }
}

fn one() -> u64 {
    1
}
fn certain() -> f64 {
    1.0
}
fn yes() -> bool {
    true
}

/// A fault as installed, with what it did so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultInfo {
    pub id: u32,
    pub spec: FaultSpec,
    /// Commands that matched opcode and nsid.
    pub matched: u64,
    /// Commands that got the injected status.
    pub injected: u64,
}

/// Added completion latency for one I/O opcode: `fixed_us + per_block_us * NLB`
/// (Copy: the total blocks of its ranges; flush and DSM: NLB 0). The delay starts when
/// the command has run; injected failures are delayed too. Each value is at most
/// [`MAX_LATENCY_US`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencySpec {
    pub opcode: u8,
    #[serde(default)]
    pub fixed_us: u64,
    #[serde(default)]
    pub per_block_us: u64,
}

/// Largest `fixed_us` or `per_block_us` accepted (60 s); the total is capped there too.
pub const MAX_LATENCY_US: u64 = 60_000_000;

/// The name of an opcode in counters: its name, or "0xNN" when it has none.
fn counter_name(admin: bool, opcode: u8) -> String {
    let n = if admin {
        admin_opcode_name(opcode)
    } else {
        io_opcode_name(opcode)
    };
    if n == "unknown" {
        format!("{opcode:#04x}")
    } else {
        n.to_string()
    }
}

/// True for the I/O opcodes the model runs (faults and latencies may name only these).
fn known_io_opcode(opcode: u8) -> bool {
    io_kind(opcode) != OpKind::Other
}

/// splitmix64: a tiny, well-mixed generator; one u64 of state per fault.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The seed of a fault installed without one.
pub fn default_fault_seed(id: u32) -> u64 {
    let mut s = 0x766e_766d_6500_0000 ^ id as u64;
    splitmix64(&mut s)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum StatsKey {
    Admin,
    Ns(Transport, u32),
}

/// How operations are told apart in counters: NVMe by opcode (its own names), other
/// front ends by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum OpKey {
    Opcode(u8),
    Kind(OpKind),
}

#[derive(Debug, Default)]
struct OpCounters {
    commands: u64,
    blocks: u64,
    errors: BTreeMap<u16, u64>,
}

#[derive(Debug, Default)]
struct NsCounters {
    ops: BTreeMap<OpKey, OpCounters>,
    copy_ranges: u64,
    blocks_copied: u64,
    ranges_histogram: BTreeMap<u32, u64>,
    copy_formats: BTreeMap<u8, u64>,
    max_range_blocks: u64,
    max_command_blocks: u64,
}

/// An installed fault and its generator.
struct Fault {
    info: FaultInfo,
    rng: u64,
}

impl Fault {
    /// Counts a match; true if this match is injected. `eligible` is false when an
    /// earlier fault already injected into this command.
    fn matches(&mut self, eligible: bool) -> bool {
        self.info.matched += 1;
        let s = &self.info.spec;
        let n = self.info.matched;
        if !eligible || n <= s.after || !(n - s.after - 1).is_multiple_of(s.every) {
            return false;
        }
        if s.count.is_some_and(|c| self.info.injected >= c) {
            return false;
        }
        if s.probability < 1.0 {
            let draw = (splitmix64(&mut self.rng) >> 11) as f64 / (1u64 << 53) as f64;
            if draw >= s.probability {
                return false;
            }
        }
        self.info.injected += 1;
        true
    }
}

#[derive(Default)]
struct FaultTable {
    last_id: u32,
    faults: Vec<Fault>,
}

/// The experiment state of one device. Survives controller resets and reconnections.
pub struct Experiment {
    observing: AtomicBool,
    observer: RwLock<Option<Arc<dyn CommandObserver>>>,
    /// One lock per namespace; the map's write lock is taken only to add a namespace.
    counters: RwLock<HashMap<StatsKey, Arc<Mutex<NsCounters>>>>,
    faults_on: AtomicBool,
    faults: Mutex<FaultTable>,
    /// (fixed_us, per_block_us) per operation kind.
    latency: Vec<(AtomicU64, AtomicU64)>,
    started: Instant,
}

impl Experiment {
    pub fn new() -> Experiment {
        let started = Instant::now();
        Experiment {
            observing: AtomicBool::new(false),
            observer: RwLock::new(None),
            counters: RwLock::new(HashMap::new()),
            faults_on: AtomicBool::new(false),
            faults: Mutex::new(FaultTable::default()),
            latency: (0..OpKind::ALL.len())
                .map(|_| (AtomicU64::new(0), AtomicU64::new(0)))
                .collect(),
            started,
        }
    }

    /// Runs `f` on the counters of `key`: under the map's read lock and the namespace's
    /// own lock (the write lock only the first time a key is seen).
    fn with_counters(&self, key: StatsKey, f: impl FnOnce(&mut NsCounters)) {
        {
            let map = read(&self.counters);
            if let Some(c) = map.get(&key) {
                f(&mut lock(c));
                return;
            }
        }
        let c = write(&self.counters).entry(key).or_default().clone();
        f(&mut lock(&c));
    }

    /// Counts a posted completion and reports it to the observer.
    fn record(&self, done: Completed) {
        let key = match (done.transport, done.kind) {
            (Transport::Nvme, OpKind::Admin) => StatsKey::Admin,
            (t, _) => StatsKey::Ns(t, done.nsid),
        };
        let ok = done.ok();
        let blocks = match (&done.block, &done.copy) {
            (Some((_, nlb)), _) if ok => *nlb as u64,
            (_, Some(c)) => c.blocks_copied,
            _ => 0,
        };
        let counter = match done.transport {
            Transport::Nvme => OpKey::Opcode(done.opcode),
            Transport::VirtioBlk => OpKey::Kind(done.kind),
        };
        self.with_counters(key, |c| {
            let op = c.ops.entry(counter).or_default();
            op.commands += 1;
            op.blocks += blocks;
            if !ok {
                *op.errors.entry(done.status).or_default() += 1;
            }
            if let Some(cp) = &done.copy {
                let nr = cp.nr as u32 + 1;
                c.copy_ranges += nr as u64;
                c.blocks_copied += cp.blocks_copied;
                *c.ranges_histogram.entry(nr).or_default() += 1;
                *c.copy_formats.entry(cp.format).or_default() += 1;
                let longest = cp.ranges.iter().map(|r| r.nlb as u64).max().unwrap_or(0);
                c.max_range_blocks = c.max_range_blocks.max(longest);
                c.max_command_blocks = c.max_command_blocks.max(cp.total_blocks());
            }
        });
        if !self.observing.load(Ordering::Relaxed) {
            return;
        }
        let Some(obs) = read(&self.observer).clone() else {
            return;
        };
        // An operation fetched before the observer was installed is not reported: its
        // latency is unknown, and a trace then starts cleanly at its first command.
        let Some(fetched) = done.fetched else {
            return;
        };
        let now = Instant::now();
        let rec = CommandRecord {
            time_us: now.duration_since(self.started).as_micros() as u64,
            transport: done.transport,
            kind: done.kind,
            qid: done.queue,
            cid: done.tag,
            opcode: done.opcode,
            nsid: done.nsid,
            slba: done.block.map(|b| b.0),
            nlb: done.block.map(|b| b.1),
            copy: done.copy.map(|c| CopyRecord {
                sdlba: c.sdlba,
                format: c.format,
                nr: c.nr,
                ranges: c.ranges,
            }),
            admin: done.admin,
            zone: done.zone,
            status: done.status,
            dw0: done.dw0,
            dw1: done.dw1,
            latency_us: now.duration_since(fetched).as_micros() as u64,
        };
        obs.completed(&rec);
    }

    fn snapshot(&self) -> StatsSnapshot {
        let all: Vec<_> = read(&self.counters)
            .iter()
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        let mut out = StatsSnapshot::new();
        for (key, c) in all {
            let c = lock(&c);
            let admin = key == StatsKey::Admin;
            let mut ns = NamespaceStats::default();
            for (op, oc) in &c.ops {
                let name = match op {
                    OpKey::Opcode(o) => counter_name(admin, *o),
                    OpKey::Kind(k) => k.name().to_string(),
                };
                let e = ns.opcodes.entry(name).or_default();
                e.commands += oc.commands;
                e.blocks += oc.blocks;
                for (st, n) in &oc.errors {
                    *e.errors.entry(format!("{st:#06x}")).or_default() += n;
                }
            }
            ns.copy = CopyStats {
                ranges: c.copy_ranges,
                blocks_copied: c.blocks_copied,
                ranges_histogram: c
                    .ranges_histogram
                    .iter()
                    .map(|(k, v)| (k.to_string(), *v))
                    .collect(),
                formats: c
                    .copy_formats
                    .iter()
                    .map(|(k, v)| (k.to_string(), *v))
                    .collect(),
                max_range_blocks: c.max_range_blocks,
                max_command_blocks: c.max_command_blocks,
            };
            let name = match key {
                StatsKey::Admin => "admin".to_string(),
                StatsKey::Ns(Transport::Nvme, n) => n.to_string(),
                StatsKey::Ns(t, n) => format!("{}:{n}", t.name()),
            };
            out.insert(name, ns);
        }
        out
    }

    fn reset_counters(&self) {
        for c in read(&self.counters).values() {
            *lock(c) = NsCounters::default();
        }
    }
}

impl Default for Experiment {
    fn default() -> Self {
        Experiment::new()
    }
}

impl Hooks for Experiment {
    fn observing(&self) -> bool {
        self.observing.load(Ordering::Relaxed)
    }

    /// One relaxed load when no fault is installed.
    fn inject(&self, op: &Op) -> Option<Injection> {
        if !self.faults_on.load(Ordering::Relaxed) {
            return None;
        }
        let mut t = lock(&self.faults);
        let mut hit = None;
        for f in t.faults.iter_mut() {
            let s = &f.info.spec;
            if io_kind(s.opcode) != op.kind
                || s.nsid.is_some_and(|n| n != op.nsid)
                || s.transport
                    .as_deref()
                    .is_some_and(|t| Transport::by_name(t) != Some(op.transport))
            {
                continue;
            }
            if f.matches(hit.is_none()) {
                let s = &f.info.spec;
                let dnr = if s.dnr { DNR } else { 0 };
                hit = Some(Injection {
                    status: s.status | dnr,
                    copy_range: s.copy_range,
                });
            }
        }
        hit
    }

    fn delay(&self, op: &Op, blocks: u64) -> Option<Duration> {
        let (f, p) = &self.latency[op.kind.index()];
        let (fixed, per) = (f.load(Ordering::Relaxed), p.load(Ordering::Relaxed));
        if fixed == 0 && per == 0 {
            return None;
        }
        let us = fixed
            .saturating_add(per.saturating_mul(blocks))
            .min(MAX_LATENCY_US);
        Some(Duration::from_micros(us))
    }

    fn completed(&self, done: Completed) {
        self.record(done);
    }
}

/// Do Not Retry in an NVMe status field.
const DNR: u16 = 1 << 14;

fn validate_fault(spec: &FaultSpec) -> Result<(), String> {
    if !known_io_opcode(spec.opcode) {
        return Err(format!(
            "opcode: {:#04x} is not an I/O opcode the model runs (flush, write, read, \
             write-uncorrectable, compare, write-zeroes, dsm, verify, copy)",
            spec.opcode
        ));
    }
    if spec.every == 0 {
        return Err("every: must be at least 1".into());
    }
    if !(0.0..=1.0).contains(&spec.probability) {
        return Err(format!(
            "probability: {} is not between 0 and 1",
            spec.probability
        ));
    }
    if spec.status == 0 {
        return Err("status: 0 is success; a fault needs an error status".into());
    }
    if spec.status >> 8 > 7 {
        return Err(format!(
            "status: {:#x} has a status code type above 7 (give SCT << 8 | SC; DNR comes \
             from dnr)",
            spec.status
        ));
    }
    if spec.copy_range.is_some() && spec.opcode != io_op::COPY {
        return Err("copy_range: only for the copy opcode".into());
    }
    if let Some(t) = spec.transport.as_deref() {
        if Transport::by_name(t).is_none() {
            return Err(format!("transport: '{t}' is not nvme or virtio-blk"));
        }
    }
    Ok(())
}

impl Experiment {
    /// Puts `label` into the record stream now (`trace-mark`); returns its time on the
    /// records' clock and whether an observer took it.
    pub fn mark(&self, label: &str) -> (u64, bool) {
        let time_us = Instant::now().duration_since(self.started).as_micros() as u64;
        match read(&self.observer).clone() {
            Some(obs) => {
                obs.mark(time_us, label);
                (time_us, true)
            }
            None => (time_us, false),
        }
    }

    /// Installs (or removes) the observer every completion is reported to. With none,
    /// completions cost nothing extra.
    pub fn set_observer(&self, obs: Option<Arc<dyn CommandObserver>>) {
        let exp = self;
        let on = obs.is_some();
        *write(&exp.observer) = obs;
        exp.observing.store(on, Ordering::Release);
    }

    /// Counters since the controller was created or `reset_stats` (controller resets do
    /// not clear them).
    pub fn stats(&self) -> StatsSnapshot {
        self.snapshot()
    }

    pub fn reset_stats(&self) {
        self.reset_counters();
    }

    /// Installs a fault; returns its id (ids keep increasing, also across
    /// `clear_faults`). Errors name the field. Faults, like latencies and counters, stay
    /// across controller resets and reconnections.
    pub fn add_fault(&self, spec: FaultSpec) -> Result<u32, String> {
        validate_fault(&spec)?;
        let exp = self;
        let mut t = lock(&exp.faults);
        let id = t.last_id.checked_add(1).ok_or("too many faults")?;
        t.last_id = id;
        let rng = spec.seed.unwrap_or_else(|| default_fault_seed(id));
        t.faults.push(Fault {
            info: FaultInfo {
                id,
                spec,
                matched: 0,
                injected: 0,
            },
            rng,
        });
        exp.faults_on.store(true, Ordering::Release);
        Ok(id)
    }

    pub fn faults(&self) -> Vec<FaultInfo> {
        lock(&self.faults)
            .faults
            .iter()
            .map(|f| f.info.clone())
            .collect()
    }

    pub fn clear_faults(&self) {
        let exp = self;
        let mut t = lock(&exp.faults);
        t.faults.clear();
        exp.faults_on.store(false, Ordering::Release);
    }

    /// Sets the latency of an opcode (0/0 removes it). Delays are served without blocking
    /// other commands, queues or the caller.
    pub fn set_latency(&self, spec: LatencySpec) -> Result<(), String> {
        if !known_io_opcode(spec.opcode) {
            return Err(format!(
                "opcode: {:#04x} is not an I/O opcode the model runs",
                spec.opcode
            ));
        }
        if spec.fixed_us > MAX_LATENCY_US {
            return Err(format!("fixed_us: at most {MAX_LATENCY_US} (60 s)"));
        }
        if spec.per_block_us > MAX_LATENCY_US {
            return Err(format!("per_block_us: at most {MAX_LATENCY_US} (60 s)"));
        }
        let (f, p) = &self.latency[io_kind(spec.opcode).index()];
        f.store(spec.fixed_us, Ordering::Relaxed);
        p.store(spec.per_block_us, Ordering::Relaxed);
        Ok(())
    }

    /// The latencies set, by opcode.
    pub fn latencies(&self) -> Vec<LatencySpec> {
        let mut v: Vec<LatencySpec> = OpKind::ALL
            .iter()
            .zip(&self.latency)
            .filter_map(|(kind, (f, p))| {
                let (fixed_us, per_block_us) =
                    (f.load(Ordering::Relaxed), p.load(Ordering::Relaxed));
                let opcode = kind_io_opcode(*kind)?;
                (fixed_us != 0 || per_block_us != 0).then_some(LatencySpec {
                    opcode,
                    fixed_us,
                    per_block_us,
                })
            })
            .collect();
        v.sort_by_key(|l| l.opcode);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_names() {
        assert_eq!(counter_name(false, 0x7f), "0x7f");
        assert_eq!(counter_name(true, 0x06), "identify");
        assert_eq!(counter_name(false, 0x19), "copy");
    }

    #[test]
    fn every_status_the_model_produces_has_a_name() {
        use crate::nvme::names::status_name;
        use crate::nvme::spec::status::*;
        let all = [
            (SUCCESS, "success"),
            (INVALID_OPCODE, "invalid-opcode"),
            (INVALID_FIELD, "invalid-field"),
            (DATA_TRANSFER_ERROR, "data-transfer-error"),
            (INTERNAL_ERROR, "internal-error"),
            (INVALID_NAMESPACE, "invalid-namespace"),
            (COMMAND_SEQUENCE_ERROR, "command-sequence-error"),
            (INVALID_SGL_SEGMENT, "invalid-sgl-segment"),
            (INVALID_SGL_COUNT, "invalid-sgl-count"),
            (DATA_SGL_LENGTH_INVALID, "data-sgl-length-invalid"),
            (SGL_DESCRIPTOR_TYPE_INVALID, "sgl-descriptor-type-invalid"),
            (INVALID_PRP_OFFSET, "invalid-prp-offset"),
            (NAMESPACE_WRITE_PROTECTED, "namespace-write-protected"),
            (LBA_OUT_OF_RANGE, "lba-out-of-range"),
            (COMPLETION_QUEUE_INVALID, "completion-queue-invalid"),
            (INVALID_QUEUE_ID, "invalid-queue-id"),
            (INVALID_QUEUE_SIZE, "invalid-queue-size"),
            (AER_LIMIT_EXCEEDED, "aer-limit-exceeded"),
            (INVALID_INTERRUPT_VECTOR, "invalid-interrupt-vector"),
            (INVALID_LOG_PAGE, "invalid-log-page"),
            (INVALID_QUEUE_DELETION, "invalid-queue-deletion"),
            (FEATURE_NOT_SAVEABLE, "feature-not-saveable"),
            (COMMAND_SIZE_LIMIT_EXCEEDED, "command-size-limit-exceeded"),
            (
                INCOMPATIBLE_NS_OR_FORMAT,
                "incompatible-namespace-or-format",
            ),
            (INVALID_FORMAT, "invalid-format"),
            (WRITE_FAULT, "write-fault"),
            (UNRECOVERED_READ_ERROR, "unrecovered-read-error"),
            (COMPARE_FAILURE, "compare-failure"),
        ];
        for (st, name) in all {
            assert_eq!(status_name(st.0), name);
            assert_eq!(status_name(st.dnr().0), name, "DNR is ignored");
        }
        assert_eq!(status_name(0x0377), "unknown");
    }

    #[test]
    fn splitmix64_known_values() {
        // Reference outputs of splitmix64 seeded with 0.
        let mut s = 0u64;
        assert_eq!(splitmix64(&mut s), 0xe220_a839_7b1d_cdaf);
        assert_eq!(splitmix64(&mut s), 0x6e78_9e6a_a1b9_65f4);
        assert_ne!(default_fault_seed(1), default_fault_seed(2));
    }

    fn spec(opcode: u8) -> FaultSpec {
        FaultSpec::new(opcode, 0x0281)
    }

    #[test]
    fn fault_validation_names_the_field() {
        let bad = [
            (
                FaultSpec {
                    opcode: 0x7f,
                    ..spec(2)
                },
                "opcode:",
            ),
            (
                FaultSpec {
                    opcode: 0x0d,
                    ..spec(2)
                },
                "opcode:",
            ),
            (
                FaultSpec {
                    every: 0,
                    ..spec(2)
                },
                "every:",
            ),
            (
                FaultSpec {
                    probability: 1.5,
                    ..spec(2)
                },
                "probability:",
            ),
            (
                FaultSpec {
                    probability: -0.1,
                    ..spec(2)
                },
                "probability:",
            ),
            (
                FaultSpec {
                    probability: f64::NAN,
                    ..spec(2)
                },
                "probability:",
            ),
            (
                FaultSpec {
                    status: 0x0881,
                    ..spec(2)
                },
                "status:",
            ),
            (
                FaultSpec {
                    status: 0x4281,
                    ..spec(2)
                },
                "status:",
            ),
            (
                FaultSpec {
                    status: 0,
                    ..spec(2)
                },
                "status:",
            ),
            (
                FaultSpec {
                    copy_range: Some(1),
                    ..spec(2)
                },
                "copy_range:",
            ),
        ];
        for (s, field) in bad {
            let e = validate_fault(&s).unwrap_err();
            assert!(e.starts_with(field), "{s:?}: {e}");
        }
        assert!(validate_fault(&FaultSpec {
            copy_range: Some(1),
            ..spec(0x19)
        })
        .is_ok());
        assert!(validate_fault(&FaultSpec {
            probability: 0.0,
            ..spec(0)
        })
        .is_ok());
    }

    /// Injection pattern of one fault over `n` matching commands.
    fn pattern(s: FaultSpec, n: usize) -> Vec<bool> {
        let mut f = Fault {
            rng: s.seed.unwrap_or(default_fault_seed(1)),
            info: FaultInfo {
                id: 1,
                spec: s,
                matched: 0,
                injected: 0,
            },
        };
        (0..n).map(|_| f.matches(true)).collect()
    }

    fn ones(p: &[bool]) -> Vec<usize> {
        p.iter()
            .enumerate()
            .filter(|(_, b)| **b)
            .map(|(i, _)| i)
            .collect()
    }

    #[test]
    fn after_every_count_select_matches() {
        let p = pattern(
            FaultSpec {
                after: 2,
                every: 3,
                count: Some(3),
                ..spec(2)
            },
            20,
        );
        assert_eq!(ones(&p), vec![2, 5, 8]);
        let p = pattern(
            FaultSpec {
                after: 0,
                every: 1,
                ..spec(2)
            },
            4,
        );
        assert_eq!(ones(&p), vec![0, 1, 2, 3]);
        let p = pattern(
            FaultSpec {
                count: Some(0),
                ..spec(2)
            },
            4,
        );
        assert!(ones(&p).is_empty());
    }

    #[test]
    fn probability_is_reproducible_per_seed() {
        let s = |seed| FaultSpec {
            probability: 0.5,
            seed: Some(seed),
            ..spec(2)
        };
        let a = pattern(s(42), 64);
        assert_eq!(a, pattern(s(42), 64), "same seed, same injections");
        assert_ne!(a, pattern(s(43), 64), "another seed, other injections");
        let n = ones(&a).len();
        assert!((16..=48).contains(&n), "about half of 64: {n}");
        assert!(ones(&pattern(
            FaultSpec {
                probability: 0.0,
                ..spec(2)
            },
            64
        ))
        .is_empty());
    }
}
