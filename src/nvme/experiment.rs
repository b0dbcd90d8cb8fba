//! Experiment hooks of the model: what each completed command looked like (for traces
//! and counters), injected faults, a latency model and copy limits changed at run time.
//!
//! CONTRACT (issue 5): the types and `Controller` methods below are the surface the
//! control socket and the trace writer use.
//!
//! How the model uses them:
//!
//! * Every completion posted (admin and I/O, deferred AER completions and delayed ones)
//!   is counted and, if an observer is installed, reported as a [`CommandRecord`] after
//!   its CQE is posted. Observers are called on the thread that posted: a submission
//!   queue worker, the controller's delay timer thread, or for an Asynchronous Event
//!   Request completed by an event, the thread that raised the event (the admin worker,
//!   or the caller of `set_copy_limits` / `notify_namespace_changed`). Completions that
//!   are never posted (a delayed completion dropped by a queue deletion or a reset) are
//!   neither counted nor reported.
//! * Faults are checked for every I/O command before it runs (see [`FaultSpec`]).
//! * A latency delays the completion, not the command: the worker runs the command and
//!   hands the completion to the timer thread, which posts it when due.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::controller::lock;
use super::copy::CopyDone;
use super::spec::{admin_op, io_op, Status};
use super::Controller;

/// Largest Copy Descriptor Formats Enable mask: formats 0 to 3.
pub const MAX_CDFE: u16 = 0xf;

/// Host Behavior Support's Copy Descriptor Formats Enable, now and after a reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostBehavior {
    pub cdfe: u16,
    pub reset_cdfe: u16,
}

/// One source range of a Copy, as the trace shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeRecord {
    pub nsid: u32,
    pub slba: u64,
    /// Number of logical blocks, 1-based.
    pub nlb: u32,
}

/// Copy-specific part of a record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyRecord {
    pub sdlba: u64,
    pub format: u8,
    /// NR as in CDW12 (0's based).
    pub nr: u8,
    /// The ranges as parsed (empty if the range list could not be read).
    pub ranges: Vec<RangeRecord>,
}

/// The field that says what an admin command asked for, as its record shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdminKey {
    /// Set Features / Get Features: Feature Identifier (CDW10 7:0).
    Feature { fid: u8 },
    /// Identify: CNS (CDW10 7:0), CNTID (CDW10 31:16), CSI (CDW11 31:24).
    Identify { cns: u8, cntid: u16, csi: u8 },
    /// Get Log Page: Log Page Identifier (CDW10 7:0).
    LogPage { lid: u8 },
}

impl AdminKey {
    /// The key of an admin command, if its opcode has one.
    pub fn of(sqe: &super::spec::Sqe) -> Option<AdminKey> {
        let low = (sqe.cdw10 & 0xff) as u8;
        match sqe.opcode {
            admin_op::SET_FEATURES | admin_op::GET_FEATURES => Some(AdminKey::Feature { fid: low }),
            admin_op::IDENTIFY => Some(AdminKey::Identify {
                cns: low,
                cntid: (sqe.cdw10 >> 16) as u16,
                csi: (sqe.cdw11 >> 24) as u8,
            }),
            admin_op::GET_LOG_PAGE => Some(AdminKey::LogPage { lid: low }),
            _ => None,
        }
    }
}

/// One completed command (admin or I/O).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandRecord {
    /// Completion time in microseconds since the controller was created.
    pub time_us: u64,
    /// Submission queue id (0 = admin).
    pub qid: u16,
    pub cid: u16,
    pub opcode: u8,
    pub nsid: u32,
    /// Block commands (read, write, write zeroes, compare, verify): SLBA and 1-based NLB.
    pub slba: Option<u64>,
    pub nlb: Option<u32>,
    pub copy: Option<CopyRecord>,
    /// Admin commands: what they asked for (feature, identify structure, log page).
    pub admin: Option<AdminKey>,
    /// The CQE status field without the phase tag: DNR in bit 14, SCT 10:8, SC 7:0
    /// (the form nvme-cli prints, e.g. 0x4183).
    pub status: u16,
    pub dw0: u32,
    /// From fetching the SQE to posting the CQE, in microseconds.
    pub latency_us: u64,
}

/// Receives every completed command, on the thread that completed it. Must not block.
pub trait CommandObserver: Send + Sync {
    fn completed(&self, rec: &CommandRecord);
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

/// Counters of the whole controller: nsid (decimal string) -> counters. Admin commands
/// are counted under nsid "admin".
pub type StatsSnapshot = BTreeMap<String, NamespaceStats>;

pub use super::namespace::CopyLimits;

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

/// I/O opcode names used by traces, counters and the control socket.
pub fn io_opcode_name(opcode: u8) -> &'static str {
    match opcode {
        io_op::FLUSH => "flush",
        io_op::WRITE => "write",
        io_op::READ => "read",
        0x04 => "write-uncorrectable",
        io_op::COMPARE => "compare",
        io_op::WRITE_ZEROES => "write-zeroes",
        io_op::DATASET_MANAGEMENT => "dsm",
        io_op::VERIFY => "verify",
        io_op::COPY => "copy",
        _ => "unknown",
    }
}

/// Admin opcode names.
pub fn admin_opcode_name(opcode: u8) -> &'static str {
    match opcode {
        admin_op::DELETE_IO_SQ => "delete-sq",
        admin_op::CREATE_IO_SQ => "create-sq",
        admin_op::GET_LOG_PAGE => "get-log-page",
        admin_op::DELETE_IO_CQ => "delete-cq",
        admin_op::CREATE_IO_CQ => "create-cq",
        admin_op::IDENTIFY => "identify",
        admin_op::ABORT => "abort",
        admin_op::SET_FEATURES => "set-features",
        admin_op::GET_FEATURES => "get-features",
        admin_op::ASYNC_EVENT_REQUEST => "async-event",
        0x0d => "namespace-management",
        0x10 => "firmware-commit",
        0x11 => "firmware-download",
        0x14 => "device-self-test",
        0x15 => "namespace-attachment",
        admin_op::KEEP_ALIVE => "keep-alive",
        0x19 => "directive-send",
        0x1a => "directive-receive",
        0x1c => "virtualization-management",
        0x1d => "nvme-mi-send",
        0x1e => "nvme-mi-receive",
        admin_op::DOORBELL_BUFFER_CONFIG => "doorbell-buffer-config",
        0x80 => "format-nvm",
        0x81 => "security-send",
        0x82 => "security-receive",
        0x84 => "sanitize",
        0x86 => "get-lba-status",
        _ => "unknown",
    }
}

/// An I/O opcode by name ("read", "write", "copy", ...) or number ("25", "0x19").
/// Names are matched ignoring case, with '_' taken as '-'.
pub fn io_opcode_by_name(name: &str) -> Option<u8> {
    let n = name.trim().to_ascii_lowercase().replace('_', "-");
    if let Some(hex) = n.strip_prefix("0x") {
        return u8::from_str_radix(hex, 16).ok();
    }
    if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) {
        return n.parse().ok();
    }
    (0..=u8::MAX).find(|&op| io_opcode_name(op) != "unknown" && io_opcode_name(op) == n)
}

/// A status's name ("success", "invalid-field", "command-size-limit-exceeded", ...),
/// ignoring DNR.
pub fn status_name(status: u16) -> &'static str {
    match status & 0x7ff {
        0x000 => "success",
        0x001 => "invalid-opcode",
        0x002 => "invalid-field",
        0x003 => "command-id-conflict",
        0x004 => "data-transfer-error",
        0x005 => "power-loss-abort",
        0x006 => "internal-error",
        0x007 => "abort-requested",
        0x008 => "sq-deletion-abort",
        0x00b => "invalid-namespace",
        0x00c => "command-sequence-error",
        0x00d => "invalid-sgl-segment",
        0x00e => "invalid-sgl-count",
        0x00f => "data-sgl-length-invalid",
        0x011 => "sgl-descriptor-type-invalid",
        0x013 => "invalid-prp-offset",
        0x020 => "namespace-write-protected",
        0x080 => "lba-out-of-range",
        0x081 => "capacity-exceeded",
        0x082 => "namespace-not-ready",
        0x083 => "reservation-conflict",
        0x100 => "completion-queue-invalid",
        0x101 => "invalid-queue-id",
        0x102 => "invalid-queue-size",
        0x105 => "aer-limit-exceeded",
        0x108 => "invalid-interrupt-vector",
        0x109 => "invalid-log-page",
        0x10a => "invalid-format",
        0x10c => "invalid-queue-deletion",
        0x10d => "feature-not-saveable",
        0x183 => "command-size-limit-exceeded",
        0x185 => "incompatible-namespace-or-format",
        0x280 => "write-fault",
        0x281 => "unrecovered-read-error",
        0x282 => "end-to-end-guard-check-error",
        0x285 => "compare-failure",
        0x286 => "access-denied",
        0x287 => "deallocated-or-unwritten-block",
        _ => "unknown",
    }
}

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
    super::io::SUPPORTED.iter().any(|(op, _)| *op == opcode)
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

/// What a completed command was, for its record and the counters.
#[derive(Debug, Clone)]
pub(crate) struct Done {
    pub qid: u16,
    pub cid: u16,
    pub opcode: u8,
    pub nsid: u32,
    /// Block commands: SLBA and 1-based NLB.
    pub block: Option<(u64, u32)>,
    pub copy: Option<CopyDone>,
    pub admin: Option<AdminKey>,
    /// When the SQE was fetched (taken only while an observer is installed).
    pub fetched: Option<Instant>,
}

impl Done {
    pub fn new(qid: u16, sqe: &super::spec::Sqe, fetched: Option<Instant>) -> Done {
        let block = (qid != 0
            && matches!(
                sqe.opcode,
                io_op::READ | io_op::WRITE | io_op::WRITE_ZEROES | io_op::COMPARE | io_op::VERIFY
            ))
        .then(|| (sqe.slba(), sqe.nlb() as u32));
        Done {
            qid,
            cid: sqe.cid,
            opcode: sqe.opcode,
            nsid: sqe.nsid,
            block,
            copy: None,
            admin: if qid == 0 { AdminKey::of(sqe) } else { None },
            fetched,
        }
    }

    /// Blocks the latency model charges for.
    pub fn delay_blocks(&self) -> u64 {
        match (&self.block, &self.copy) {
            (Some((_, nlb)), _) => *nlb as u64,
            (None, Some(c)) => c.total_blocks(),
            _ => 0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum StatsKey {
    Admin,
    Ns(u32),
}

#[derive(Debug, Default)]
struct OpCounters {
    commands: u64,
    blocks: u64,
    errors: BTreeMap<u16, u64>,
}

#[derive(Debug, Default)]
struct NsCounters {
    ops: BTreeMap<u8, OpCounters>,
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

/// An injection decided for one command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Injection {
    pub status: Status,
    pub copy_range: Option<u32>,
}

/// The experiment state of one controller. Survives controller resets.
pub(crate) struct Experiment {
    observing: AtomicBool,
    observer: RwLock<Option<Arc<dyn CommandObserver>>>,
    /// One lock per namespace; the map's write lock is taken only to add a namespace.
    counters: RwLock<HashMap<StatsKey, Arc<Mutex<NsCounters>>>>,
    faults_on: AtomicBool,
    faults: Mutex<FaultTable>,
    /// (fixed_us, per_block_us) per opcode.
    latency: Vec<(AtomicU64, AtomicU64)>,
    started: Instant,
}

fn read<T: ?Sized>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T: ?Sized>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

impl Experiment {
    pub fn new(started: Instant) -> Experiment {
        Experiment {
            observing: AtomicBool::new(false),
            observer: RwLock::new(None),
            counters: RwLock::new(HashMap::new()),
            faults_on: AtomicBool::new(false),
            faults: Mutex::new(FaultTable::default()),
            latency: (0..256)
                .map(|_| (AtomicU64::new(0), AtomicU64::new(0)))
                .collect(),
            started,
        }
    }

    /// True while an observer is installed (a relaxed load).
    pub fn observing(&self) -> bool {
        self.observing.load(Ordering::Relaxed)
    }

    /// The fault to inject into an I/O command, if any (one relaxed load when none is
    /// installed).
    pub fn inject(&self, opcode: u8, nsid: u32) -> Option<Injection> {
        if !self.faults_on.load(Ordering::Relaxed) {
            return None;
        }
        let mut t = lock(&self.faults);
        let mut hit = None;
        for f in t.faults.iter_mut() {
            let s = &f.info.spec;
            if s.opcode != opcode || s.nsid.is_some_and(|n| n != nsid) {
                continue;
            }
            if f.matches(hit.is_none()) {
                let s = &f.info.spec;
                let dnr = if s.dnr { Status::DNR } else { 0 };
                hit = Some(Injection {
                    status: Status(s.status | dnr),
                    copy_range: s.copy_range,
                });
            }
        }
        hit
    }

    /// The completion delay of an I/O command, if a latency is set for its opcode.
    pub fn delay(&self, opcode: u8, blocks: u64) -> Option<Duration> {
        let (f, p) = &self.latency[opcode as usize];
        let (fixed, per) = (f.load(Ordering::Relaxed), p.load(Ordering::Relaxed));
        if fixed == 0 && per == 0 {
            return None;
        }
        let us = fixed
            .saturating_add(per.saturating_mul(blocks))
            .min(MAX_LATENCY_US);
        Some(Duration::from_micros(us))
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
    pub fn completed(&self, done: Done, status: Status, dw0: u32) {
        let admin = done.qid == 0;
        let key = if admin {
            StatsKey::Admin
        } else {
            StatsKey::Ns(done.nsid)
        };
        let ok = status.is_success();
        let blocks = match (&done.block, &done.copy) {
            (Some((_, nlb)), _) if ok => *nlb as u64,
            (_, Some(c)) => c.blocks_copied,
            _ => 0,
        };
        self.with_counters(key, |c| {
            let op = c.ops.entry(done.opcode).or_default();
            op.commands += 1;
            op.blocks += blocks;
            if !ok {
                *op.errors.entry(status.0).or_default() += 1;
            }
            if let Some(cp) = &done.copy {
                let nr = cp.nr as u32 + 1;
                c.copy_ranges += nr as u64;
                c.blocks_copied += cp.blocks_copied;
                *c.ranges_histogram.entry(nr).or_default() += 1;
                *c.copy_formats.entry(cp.format).or_default() += 1;
                let longest = cp.ranges.iter().map(|r| r.nlb).max().unwrap_or(0);
                c.max_range_blocks = c.max_range_blocks.max(longest);
                c.max_command_blocks = c.max_command_blocks.max(cp.total_blocks());
            }
        });
        if !self.observing() {
            return;
        }
        let Some(obs) = read(&self.observer).clone() else {
            return;
        };
        // A command fetched before the observer was installed is not reported: its
        // latency is unknown, and a trace then starts cleanly at its first command.
        let Some(fetched) = done.fetched else {
            return;
        };
        let now = Instant::now();
        let rec = CommandRecord {
            time_us: now.duration_since(self.started).as_micros() as u64,
            qid: done.qid,
            cid: done.cid,
            opcode: done.opcode,
            nsid: done.nsid,
            slba: done.block.map(|b| b.0),
            nlb: done.block.map(|b| b.1),
            copy: done.copy.map(|c| CopyRecord {
                sdlba: c.sdlba,
                format: c.format,
                nr: c.nr,
                ranges: c
                    .ranges
                    .iter()
                    .map(|r| RangeRecord {
                        nsid: r.snsid.unwrap_or(done.nsid),
                        slba: r.slba,
                        nlb: r.nlb as u32,
                    })
                    .collect(),
            }),
            admin: done.admin,
            status: status.0,
            dw0,
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
                let e = ns.opcodes.entry(counter_name(admin, *op)).or_default();
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
                StatsKey::Ns(n) => n.to_string(),
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

fn validate_fault(spec: &FaultSpec) -> Result<(), String> {
    if !known_io_opcode(spec.opcode) {
        return Err(format!(
            "opcode: {:#04x} is not an I/O opcode the model runs (flush, write, read, \
             compare, write-zeroes, dsm, verify, copy)",
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
    Ok(())
}

impl Controller {
    /// Installs (or removes) the observer every completion is reported to. With none,
    /// completions cost nothing extra.
    pub fn set_observer(&self, obs: Option<Arc<dyn CommandObserver>>) {
        let exp = &self.inner().exp;
        let on = obs.is_some();
        *write(&exp.observer) = obs;
        exp.observing.store(on, Ordering::Release);
    }

    /// Ids of the attached namespaces, in increasing order.
    pub fn namespace_ids(&self) -> Vec<u32> {
        self.inner().namespaces().iter().map(|n| n.nsid).collect()
    }

    /// Counters since the controller was created or `reset_stats` (controller resets do
    /// not clear them).
    pub fn stats(&self) -> StatsSnapshot {
        self.inner().exp.snapshot()
    }

    pub fn reset_stats(&self) {
        self.inner().exp.reset_counters();
    }

    /// Current limits of a namespace.
    pub fn copy_limits(&self, nsid: u32) -> Option<CopyLimits> {
        self.namespace(nsid).map(|ns| ns.copy_limits())
    }

    /// Changes a namespace's Copy limits at once (Identify Namespace and the Copy checks)
    /// and posts a Namespace Attribute Changed event. Errors name the field (0 refused).
    /// A Copy already running keeps the limits it started with.
    pub fn set_copy_limits(
        &self,
        nsid: u32,
        mssrl: Option<u16>,
        mcl: Option<u32>,
        msrc: Option<u8>,
    ) -> Result<CopyLimits, String> {
        let ns = self
            .namespace(nsid)
            .ok_or_else(|| format!("nsid: no namespace {nsid}"))?;
        if mssrl == Some(0) {
            return Err("mssrl: must not be 0".into());
        }
        if mcl == Some(0) {
            return Err("mcl: must not be 0".into());
        }
        let old = ns.copy_limits();
        let new = CopyLimits {
            mssrl: mssrl.unwrap_or(old.mssrl),
            mcl: mcl.unwrap_or(old.mcl),
            msrc: msrc.unwrap_or(old.msrc),
        };
        ns.set_copy_limits(new);
        self.notify_namespace_changed(nsid);
        Ok(new)
    }

    /// Installs a fault; returns its id (ids keep increasing, also across
    /// `clear_faults`). Errors name the field. Faults, like latencies and counters, stay
    /// across controller resets and reconnections.
    pub fn add_fault(&self, spec: FaultSpec) -> Result<u32, String> {
        validate_fault(&spec)?;
        let exp = &self.inner().exp;
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
        lock(&self.inner().exp.faults)
            .faults
            .iter()
            .map(|f| f.info.clone())
            .collect()
    }

    pub fn clear_faults(&self) {
        let exp = &self.inner().exp;
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
        let (f, p) = &self.inner().exp.latency[spec.opcode as usize];
        f.store(spec.fixed_us, Ordering::Relaxed);
        p.store(spec.per_block_us, Ordering::Relaxed);
        Ok(())
    }

    /// Host Behavior Support as the device sees it: CDFE now, and after a reset.
    pub fn host_behavior(&self) -> HostBehavior {
        let inner = self.inner();
        HostBehavior {
            cdfe: lock(&inner.features).cdfe(),
            reset_cdfe: inner.reset_cdfe.load(Ordering::Acquire),
        }
    }

    /// Sets Copy Descriptor Formats Enable from the device's side, as if a host had sent
    /// Set Features Host Behavior Support: at once (the next Copy sees it) and for every
    /// later reset (like `--ctrl cdfe`). A host's Set Features still changes it until the
    /// next reset. The rest of the host's Host Behavior Support data is kept. Errors name
    /// the field.
    pub fn set_host_behavior(&self, cdfe: u16) -> Result<HostBehavior, String> {
        if cdfe > MAX_CDFE {
            return Err(format!(
                "cdfe: {cdfe:#x} is not a mask of copy formats 0-3 (0 to {MAX_CDFE:#x})"
            ));
        }
        let inner = self.inner();
        inner.reset_cdfe.store(cdfe, Ordering::Release);
        lock(&inner.features).set_cdfe(cdfe);
        log::info!("Host Behavior Support CDFE set to {cdfe:#x} by the device's control");
        Ok(self.host_behavior())
    }

    /// The latencies set, by opcode.
    pub fn latencies(&self) -> Vec<LatencySpec> {
        self.inner()
            .exp
            .latency
            .iter()
            .enumerate()
            .filter_map(|(op, (f, p))| {
                let (fixed_us, per_block_us) =
                    (f.load(Ordering::Relaxed), p.load(Ordering::Relaxed));
                (fixed_us != 0 || per_block_us != 0).then_some(LatencySpec {
                    opcode: op as u8,
                    fixed_us,
                    per_block_us,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for op in 0..=u8::MAX {
            let n = io_opcode_name(op);
            if n != "unknown" {
                assert_eq!(io_opcode_by_name(n), Some(op), "{n}");
            }
        }
        assert_eq!(io_opcode_by_name("copy"), Some(0x19));
        assert_eq!(io_opcode_by_name("Write_Zeroes"), Some(0x08));
        assert_eq!(io_opcode_by_name("25"), Some(25));
        assert_eq!(io_opcode_by_name("0x19"), Some(0x19));
        assert_eq!(io_opcode_by_name("0x1ff"), None);
        assert_eq!(io_opcode_by_name("256"), None);
        assert_eq!(io_opcode_by_name("unknown"), None);
        assert_eq!(io_opcode_by_name(""), None);
        assert_eq!(io_opcode_name(0x7f), "unknown");
        assert_eq!(admin_opcode_name(0x0c), "async-event");
        assert_eq!(admin_opcode_name(0x7c), "doorbell-buffer-config");
        assert_eq!(admin_opcode_name(0x7f), "unknown");
        assert_eq!(counter_name(false, 0x7f), "0x7f");
        assert_eq!(counter_name(true, 0x06), "identify");
    }

    #[test]
    fn every_status_the_model_produces_has_a_name() {
        use super::super::spec::status::*;
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
                    opcode: 0x04,
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
