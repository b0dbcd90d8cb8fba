//! `vnvme bench stress`: drives a running vnvme over its vfio-user socket with the shared
//! host driver ([`vnvme::host::Driver`] on [`VfioUserBus`]) — several I/O queues, several
//! commands in flight on each, mixed Read / Write (some FUA) / Copy (multi-range, within
//! the live limits Identify reports; across namespaces with format 2 when CDFE allows) /
//! Dataset Management deallocate / Write Zeroes / Flush — and verifies data: for every
//! block it keeps the set of contents that may legitimately be there, and every read is
//! checked against it. Meanwhile, through the control socket, it injects faults and
//! changes copy limits, and it resets the controller itself (CC.EN=0, enable, queues
//! again) at random moments.
//!
//! With `--journal FILE` it records what must survive a crash (see [`super::journal`]);
//! `--verify --journal FILE` reads every journaled block back with a new connection.
//!
//! Every wait is bounded: a command without completion within `--cmd-timeout` is
//! recorded as a finding and recovered from with a controller reset.

use super::rng::Rng;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::{json, Value};

use vnvme::host::driver::{Cqe, Driver, DriverError};
use vnvme::host::{BusOptions, VfioUserBus, PAGE};
use vnvme::nvme::spec::{id_ctrl, id_ns, io_op, nvm_cmd, Sqe, CQE_SIZE, SQE_SIZE};

use super::journal::{block_data, decode, Cont, Journal, Seen, View};
use super::Failure;

#[derive(Debug, Args)]
pub struct StressArgs {
    /// vnvme's vfio-user socket.
    #[arg(long, value_name = "PATH", default_value = "vnvme.sock")]
    socket: PathBuf,
    /// vnvme's control socket (faults, copy limits); without it none are injected.
    #[arg(long, value_name = "PATH")]
    control: Option<PathBuf>,
    /// How long to run.
    #[arg(long, value_name = "N", default_value_t = 30)]
    secs: u64,
    /// I/O queue pairs.
    #[arg(long, value_name = "N", default_value_t = 4)]
    queues: u16,
    /// Commands in flight per queue.
    #[arg(long, value_name = "N", default_value_t = 8)]
    depth: u16,
    /// Seed of every random choice (default: from the clock; printed).
    #[arg(long, value_name = "N")]
    seed: Option<u64>,
    /// Journal of acknowledged, flushed writes (see docs/stress.md).
    #[arg(long, value_name = "FILE")]
    journal: Option<PathBuf>,
    /// Read back every journaled block instead of running.
    #[arg(long)]
    verify: bool,
    /// Continue the journal of an earlier (killed) run instead of starting a new one.
    #[arg(long)]
    resume: bool,
    /// Print the counts as one JSON object.
    #[arg(long)]
    json: bool,
    /// Blocks per namespace the run uses (from LBA 0; at most the namespace size).
    #[arg(long, value_name = "N", default_value_t = 32768)]
    blocks: u64,
    /// Most blocks one Read/Write/Write Zeroes/deallocate range moves.
    #[arg(long, value_name = "N", default_value_t = 64)]
    max_blocks: u32,
    /// Mean seconds between controller resets (0: none).
    #[arg(long, value_name = "SECS", default_value_t = 4.0)]
    reset_every: f64,
    /// Mean seconds between fault changes (0: none).
    #[arg(long, value_name = "SECS", default_value_t = 2.0)]
    fault_every: f64,
    /// Mean seconds between copy limit changes (0: none).
    #[arg(long, value_name = "SECS", default_value_t = 3.0)]
    limits_every: f64,
    /// Seconds a command may take before it is a finding (and the controller is reset).
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    cmd_timeout: u64,
    /// Poll completion queues instead of using MSI-X interrupts.
    #[arg(long)]
    poll: bool,
    /// Rewrite FILE with the counts so far every second (and at the end), so that a
    /// client killed with SIGKILL leaves its counts behind.
    #[arg(long, value_name = "FILE")]
    stats: Option<PathBuf>,
}

/// Live copy limits of a namespace (as Identify reports them).
#[derive(Debug, Clone, Copy)]
struct Limits {
    mssrl: u32,
    mcl: u32,
    /// Ranges allowed (MSRC + 1).
    ranges: u32,
}

struct Ns {
    nsid: u32,
    lbs: u64,
    nsze: u64,
    blocks: u64,
    limits: Limits,
    /// Per block: the contents it may hold ([Unknown] = anything).
    model: Vec<Vec<Cont>>,
    /// Per block: -1 written by a command in flight, n > 0 read by n commands.
    locks: Vec<i32>,
    /// Acknowledged write-like commands not yet covered by a Flush (journal seqs).
    unflushed: Vec<u64>,
}

impl Ns {
    fn can_read(&self, a: u64, n: u64) -> bool {
        (a..a + n).all(|b| self.locks[b as usize] >= 0)
    }
    fn can_write(&self, a: u64, n: u64) -> bool {
        (a..a + n).all(|b| self.locks[b as usize] == 0)
    }
    fn lock(&mut self, a: u64, n: u64, write: bool) {
        for b in a..a + n {
            let l = &mut self.locks[b as usize];
            *l = if write { -1 } else { *l + 1 };
        }
    }
    fn unlock(&mut self, a: u64, n: u64, write: bool) {
        for b in a..a + n {
            let l = &mut self.locks[b as usize];
            *l = if write { 0 } else { (*l - 1).max(0) };
        }
    }
}

/// `a` or `b`: the union of two content sets.
fn union(a: &[Cont], b: &[Cont]) -> Vec<Cont> {
    if a.contains(&Cont::Unknown) || b.contains(&Cont::Unknown) {
        return vec![Cont::Unknown];
    }
    let mut v: Vec<Cont> = a.iter().chain(b).copied().collect();
    v.sort();
    v.dedup();
    if v.len() > 8 {
        return vec![Cont::Unknown];
    }
    v
}

#[derive(Debug, Clone)]
enum Op {
    Read {
        ns: usize,
        slba: u64,
        nlb: u32,
    },
    Write {
        ns: usize,
        slba: u64,
        nlb: u32,
        tag0: u64,
        fua: bool,
    },
    Zeroes {
        ns: usize,
        slba: u64,
        nlb: u32,
    },
    Dsm {
        ns: usize,
        ranges: Vec<(u64, u32)>,
    },
    Copy {
        dns: usize,
        sdlba: u64,
        /// (source namespace index, slba, nlb).
        ranges: Vec<(usize, u64, u32)>,
        /// What each destination block receives.
        new: Vec<Vec<Cont>>,
        fua: bool,
        /// Copy limits generation at submission.
        epoch: u64,
    },
    Flush {
        ns: usize,
        covers: Vec<u64>,
    },
}

impl Op {
    fn kind(&self) -> &'static str {
        match self {
            Op::Read { .. } => "read",
            Op::Write { fua: false, .. } => "write",
            Op::Write { fua: true, .. } => "write-fua",
            Op::Zeroes { .. } => "write-zeroes",
            Op::Dsm { .. } => "dsm-deallocate",
            Op::Copy { ranges, dns, .. } if ranges.iter().any(|r| r.0 != *dns) => "copy-cross-ns",
            Op::Copy { .. } => "copy",
            Op::Flush { .. } => "flush",
        }
    }

    fn describe(&self, nss: &[Ns]) -> String {
        let id = |i: usize| nss.get(i).map_or(0, |n| n.nsid);
        match self {
            Op::Read { ns, slba, nlb } => format!("Read nsid {} slba {slba} nlb {nlb}", id(*ns)),
            Op::Write {
                ns, slba, nlb, fua, ..
            } => format!("Write nsid {} slba {slba} nlb {nlb} fua {fua}", id(*ns)),
            Op::Zeroes { ns, slba, nlb } => {
                format!("Write Zeroes nsid {} slba {slba} nlb {nlb}", id(*ns))
            }
            Op::Dsm { ns, ranges } => format!("DSM deallocate nsid {} ranges {ranges:?}", id(*ns)),
            Op::Copy {
                dns, sdlba, ranges, ..
            } => {
                let r: Vec<String> = ranges
                    .iter()
                    .map(|(s, a, n)| format!("{}:{a}+{n}", id(*s)))
                    .collect();
                format!(
                    "Copy nsid {} sdlba {sdlba} ranges [{}]",
                    id(*dns),
                    r.join(" ")
                )
            }
            Op::Flush { ns, .. } => format!("Flush nsid {}", id(*ns)),
        }
    }
}

struct Inflight {
    op: Op,
    seq: u64,
    slot: usize,
    at: Instant,
}

/// Guest memory of one command slot.
#[derive(Clone, Copy)]
struct Slot {
    data: u64,
    prp_list: u64,
    /// Two pages: Copy descriptors / DSM ranges.
    desc: u64,
}

struct Queue {
    qid: u16,
    sq: u64,
    cq: u64,
    free: Vec<usize>,
    inflight: HashMap<u16, Inflight>,
}

#[derive(Default, serde::Serialize)]
struct Counts {
    commands: BTreeMap<String, u64>,
    completed_ok: u64,
    failures_by_status: BTreeMap<String, u64>,
    failures_expected: u64,
    failures_unexpected: u64,
    uncertain_after_reset: u64,
    faults_installed: u64,
    faults_injected: u64,
    resets: u64,
    limit_changes: u64,
    limit_changes_refused: u64,
    blocks_read: u64,
    blocks_verified: u64,
    blocks_resolved: u64,
    blocks_unknown: u64,
    mismatches: u64,
    journal_intents: u64,
    journal_durable: u64,
    journal_snapshots: u64,
    timeouts: u64,
    interrupts: u64,
}

/// Addresses in guest RAM.
const ADMIN_ENTRIES: u32 = 32;

struct Engine {
    drv: Driver<VfioUserBus>,
    rng: Rng,
    nss: Vec<Ns>,
    queues: Vec<Queue>,
    slots: Vec<Slot>,
    entries: u32,
    asq: u64,
    acq: u64,
    scratch: u64,
    journal: Option<Journal>,
    seq: u64,
    next_tag: u64,
    epoch: u64,
    dlfeat_zero: bool,
    cross_ns: bool,
    mdts_bytes: u64,
    max_blocks: u32,
    cmd_timeout: Duration,
    control: Option<PathBuf>,
    injected_statuses: HashSet<u16>,
    /// Fault ids installed now, with their injected count last seen.
    faults: Vec<u64>,
    counts: Counts,
    findings: Vec<String>,
    seed: u64,
    run_id: String,
}

fn drv_err(what: &str) -> impl FnOnce(DriverError) -> Failure + '_ {
    move |e| Failure::Run(format!("{what}: {e}"))
}

fn le16(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn le32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}
fn le64(b: &[u8], o: usize) -> u64 {
    (le32(b, o) as u64) | ((le32(b, o + 4) as u64) << 32)
}

/// The status of a completion as SCT << 8 | SC, hex.
fn status_key(c: &Cqe) -> String {
    format!("{:#06x}", c.status.0 & 0x7ff)
}

impl Engine {
    fn connect(a: &StressArgs, seed: u64) -> Result<Engine, Failure> {
        if a.queues == 0 || a.depth == 0 {
            return Err(Failure::Usage(
                "--queues and --depth must be at least 1".into(),
            ));
        }
        if a.max_blocks == 0 {
            return Err(Failure::Usage("--max-blocks must be at least 1".into()));
        }
        let entries = (a.depth as u32 + 1).next_power_of_two().max(8);
        let slots_n = a.queues as usize * a.depth as usize;
        // Data buffers sized for max_blocks of up to 4096-byte blocks.
        let data_bytes = (a.max_blocks as u64 * 4096).next_multiple_of(PAGE);
        let per_slot = data_bytes + 3 * PAGE;
        let queues_bytes = a.queues as u64 * (entries as u64 * (SQE_SIZE + CQE_SIZE) + 2 * PAGE);
        let need = slots_n as u64 * per_slot + queues_bytes + 16 * PAGE;
        let opts = BusOptions {
            guest_size: need.next_multiple_of(1 << 20),
            timeout: Duration::from_secs(10),
            interrupts: !a.poll,
            ..Default::default()
        };
        let bus = VfioUserBus::connect(&a.socket, &opts)
            .map_err(|e| Failure::Run(format!("--socket {}: {e}", a.socket.display())))?;
        let ram = bus.ram();
        let mut drv = Driver::new(bus, ram);
        drv.timeout = Duration::from_secs(10);
        let alloc = |d: &mut Driver<VfioUserBus>, n: u64| d.alloc(n).map_err(drv_err("guest RAM"));
        let asq = alloc(&mut drv, ADMIN_ENTRIES as u64 * SQE_SIZE)?;
        let acq = alloc(&mut drv, ADMIN_ENTRIES as u64 * CQE_SIZE)?;
        let scratch = alloc(&mut drv, PAGE)?;
        let mut queues = Vec::new();
        for q in 1..=a.queues {
            let sq = alloc(&mut drv, entries as u64 * SQE_SIZE)?;
            let cq = alloc(&mut drv, entries as u64 * CQE_SIZE)?;
            queues.push(Queue {
                qid: q,
                sq,
                cq,
                free: Vec::new(),
                inflight: HashMap::new(),
            });
        }
        let mut slots = Vec::new();
        for _ in 0..slots_n {
            slots.push(Slot {
                data: alloc(&mut drv, data_bytes)?,
                prp_list: alloc(&mut drv, PAGE)?,
                desc: alloc(&mut drv, 2 * PAGE)?,
            });
        }
        let mut e = Engine {
            drv,
            rng: Rng(seed),
            nss: Vec::new(),
            queues,
            slots,
            entries,
            asq,
            acq,
            scratch,
            journal: None,
            seq: 0,
            next_tag: 0,
            epoch: 0,
            dlfeat_zero: false,
            cross_ns: false,
            mdts_bytes: 0,
            max_blocks: a.max_blocks,
            cmd_timeout: Duration::from_secs(a.cmd_timeout.max(1)),
            control: a.control.clone(),
            injected_statuses: HashSet::new(),
            faults: Vec::new(),
            counts: Counts::default(),
            findings: Vec::new(),
            seed,
            run_id: String::new(),
        };
        e.drv
            .disable()
            .map_err(drv_err("disabling the controller"))?;
        e.drv
            .enable(asq, acq, ADMIN_ENTRIES)
            .map_err(drv_err("enabling the controller"))?;
        e.identify(a.blocks)?;
        e.create_queues()?;
        Ok(e)
    }

    fn identify(&mut self, want_blocks: u64) -> Result<(), Failure> {
        let (c, ctrl) = self
            .drv
            .identify(1, 0, 0, self.scratch)
            .map_err(drv_err("Identify Controller"))?;
        if !c.ok() {
            return Err(Failure::Run(format!(
                "Identify Controller: status {:#x}",
                c.status.0
            )));
        }
        let mdts = ctrl[id_ctrl::MDTS];
        self.mdts_bytes = if mdts == 0 { u64::MAX } else { PAGE << mdts };
        let oncs = le16(&ctrl, id_ctrl::ONCS);
        let ocfs = le16(&ctrl, id_ctrl::OCFS);
        let nn = le32(&ctrl, id_ctrl::NN);
        if oncs & id_ctrl::ONCS_COPY == 0 {
            return Err(Failure::Run("the controller does not support Copy".into()));
        }
        let (c, list) = self
            .drv
            .identify(2, 0, 0, self.scratch)
            .map_err(drv_err("Identify active namespaces"))?;
        if !c.ok() {
            return Err(Failure::Run(format!(
                "Identify active namespace list: status {:#x}",
                c.status.0
            )));
        }
        let ids: Vec<u32> = (0..1024)
            .map(|i| le32(&list, i * 4))
            .take_while(|&n| n != 0 && n <= nn)
            .take(2)
            .collect();
        if ids.is_empty() {
            return Err(Failure::Run("no active namespace".into()));
        }
        let mut dlfeat_zero = true;
        for nsid in ids {
            let (ns, dlfeat) = self.identify_ns(nsid, want_blocks)?;
            dlfeat_zero &= dlfeat & 7 == 1;
            self.nss.push(ns);
        }
        self.dlfeat_zero = dlfeat_zero;
        // Cross-namespace copies (format 2) when advertised, enabled (CDFE, read through
        // the control socket) and both namespaces have one block size.
        let cdfe = self
            .control
            .as_ref()
            .and_then(|c| ctl(c, "query-host-behavior", json!({})).ok())
            .and_then(|v| v.pointer("/return/cdfe").and_then(Value::as_u64))
            .unwrap_or(0);
        self.cross_ns = self.nss.len() == 2
            && ocfs & 4 != 0
            && cdfe & 4 != 0
            && self.nss[0].lbs == self.nss[1].lbs;
        Ok(())
    }

    fn identify_ns(&mut self, nsid: u32, want_blocks: u64) -> Result<(Ns, u8), Failure> {
        let (c, b) = self
            .drv
            .identify(0, nsid, 0, self.scratch)
            .map_err(drv_err("Identify Namespace"))?;
        if !c.ok() {
            return Err(Failure::Run(format!(
                "Identify Namespace {nsid}: status {:#x}",
                c.status.0
            )));
        }
        let nsze = le64(&b, id_ns::NSZE);
        let fmt = (b[id_ns::FLBAS] & 0xf) as usize;
        let lbads = b[id_ns::LBAF0 + 4 * fmt + 2];
        if !(9..=12).contains(&lbads) || nsze == 0 {
            return Err(Failure::Run(format!(
                "namespace {nsid}: LBADS {lbads}, NSZE {nsze} (512 to 4096-byte blocks needed)"
            )));
        }
        let blocks = nsze.min(want_blocks.max(1));
        let ns = Ns {
            nsid,
            lbs: 1 << lbads,
            nsze,
            blocks,
            limits: limits_of(&b),
            model: vec![vec![Cont::Unknown]; blocks as usize],
            locks: vec![0; blocks as usize],
            unflushed: Vec::new(),
        };
        Ok((ns, b[id_ns::DLFEAT]))
    }

    fn create_queues(&mut self) -> Result<(), Failure> {
        let n = self.queues.len() as u16;
        let (sqs, cqs) = self
            .drv
            .set_num_queues(n)
            .map_err(drv_err("Set Features Number of Queues"))?;
        if sqs.min(cqs) < n as u32 {
            return Err(Failure::Run(format!(
                "the controller grants {sqs} SQs / {cqs} CQs, {n} asked for"
            )));
        }
        let irq = self.drv.bus.has_interrupts();
        let depth = self.slots.len() / self.queues.len();
        for (i, q) in self.queues.iter_mut().enumerate() {
            let c = self
                .drv
                .create_cq(q.qid, self.entries, q.cq, q.qid, irq)
                .map_err(drv_err("Create I/O CQ"))?;
            if !c.ok() {
                return Err(Failure::Run(format!(
                    "Create I/O CQ {}: status {:#x}",
                    q.qid, c.status.0
                )));
            }
            let c = self
                .drv
                .create_sq(q.qid, self.entries, q.sq, q.qid)
                .map_err(drv_err("Create I/O SQ"))?;
            if !c.ok() {
                return Err(Failure::Run(format!(
                    "Create I/O SQ {}: status {:#x}",
                    q.qid, c.status.0
                )));
            }
            q.free = (i * depth..(i + 1) * depth).collect();
            q.inflight.clear();
        }
        Ok(())
    }

    fn finding(&mut self, f: String) {
        if self.findings.len() < 200 {
            eprintln!("vnvme bench stress: finding: {f}");
            self.findings.push(f);
        }
    }

    fn block_bytes(&self, ns: usize) -> u64 {
        self.nss[ns].lbs
    }

    /// Most blocks a data command may move on `ns`.
    fn data_blocks(&self, ns: usize) -> u64 {
        let by_mdts = self.mdts_bytes / self.block_bytes(ns);
        (self.max_blocks as u64)
            .min(by_mdts)
            .min(4096 * self.max_blocks as u64 / self.block_bytes(ns))
            .min(self.nss[ns].blocks)
            .max(1)
    }

    fn prps(&self, slot: usize, len: u64) -> Result<(u64, u64), Failure> {
        let s = self.slots[slot];
        let pages = len.div_ceil(PAGE);
        Ok(match pages {
            0 | 1 => (s.data, 0),
            2 => (s.data, s.data + PAGE),
            _ => {
                let list: Vec<u8> = (1..pages)
                    .flat_map(|i| (s.data + i * PAGE).to_le_bytes())
                    .collect();
                self.drv
                    .write_mem(s.prp_list, &list)
                    .map_err(drv_err("PRP list"))?;
                (s.data, s.prp_list)
            }
        })
    }

    // --- choosing commands ---

    /// A free extent of `n` blocks on `ns` (tries a few places).
    fn place(&mut self, ns: usize, n: u64, write: bool) -> Option<u64> {
        let blocks = self.nss[ns].blocks;
        if n > blocks {
            return None;
        }
        for _ in 0..6 {
            let a = self.rng.below(blocks - n + 1);
            let free = if write {
                self.nss[ns].can_write(a, n)
            } else {
                self.nss[ns].can_read(a, n)
            };
            if free {
                return Some(a);
            }
        }
        None
    }

    fn pick_ns(&mut self) -> usize {
        self.rng.below(self.nss.len() as u64) as usize
    }

    /// Builds the next command (locks taken), or `None` when nothing fits right now.
    fn choose(&mut self) -> Option<Op> {
        let ns = self.pick_ns();
        let maxb = self.data_blocks(ns);
        let r = self.rng.below(100);
        match r {
            0..=34 => {
                let nlb = self.rng.range(1, maxb);
                let slba = self.place(ns, nlb, false)?;
                self.nss[ns].lock(slba, nlb, false);
                Some(Op::Read {
                    ns,
                    slba,
                    nlb: nlb as u32,
                })
            }
            35..=64 => {
                let nlb = self.rng.range(1, maxb);
                let slba = self.place(ns, nlb, true)?;
                self.nss[ns].lock(slba, nlb, true);
                let tag0 = self.next_tag;
                self.next_tag += nlb;
                Some(Op::Write {
                    ns,
                    slba,
                    nlb: nlb as u32,
                    tag0,
                    fua: self.rng.chance(0.2),
                })
            }
            65..=81 => self.choose_copy(ns),
            82..=86 => {
                let nlb = self.rng.range(1, maxb);
                let slba = self.place(ns, nlb, true)?;
                self.nss[ns].lock(slba, nlb, true);
                Some(Op::Zeroes {
                    ns,
                    slba,
                    nlb: nlb as u32,
                })
            }
            87..=91 => {
                let n = self.rng.range(1, 4);
                let mut ranges = Vec::new();
                for _ in 0..n {
                    let nlb = self.rng.range(1, maxb);
                    if let Some(a) = self.place(ns, nlb, true) {
                        self.nss[ns].lock(a, nlb, true);
                        ranges.push((a, nlb as u32));
                    }
                }
                if ranges.is_empty() {
                    return None;
                }
                Some(Op::Dsm { ns, ranges })
            }
            _ => {
                let covers = std::mem::take(&mut self.nss[ns].unflushed);
                Some(Op::Flush { ns, covers })
            }
        }
    }

    fn choose_copy(&mut self, dns: usize) -> Option<Op> {
        let lim = self.nss[dns].limits;
        let nranges = self.rng.range(1, lim.ranges.min(8) as u64);
        let mut total_left = lim.mcl.min(256) as u64;
        let mut ranges: Vec<(usize, u64, u32)> = Vec::new();
        for _ in 0..nranges {
            if total_left == 0 {
                break;
            }
            let sns = if self.cross_ns && self.rng.chance(0.3) {
                1 - dns
            } else {
                dns
            };
            let max = (lim.mssrl as u64).min(32).min(total_left);
            let nlb = self.rng.range(1, max);
            let Some(a) = self.place(sns, nlb, false) else {
                continue;
            };
            self.nss[sns].lock(a, nlb, false);
            ranges.push((sns, a, nlb as u32));
            total_left -= nlb;
        }
        let total: u64 = ranges.iter().map(|r| r.2 as u64).sum();
        let dest = if total == 0 {
            None
        } else {
            self.place(dns, total, true)
        };
        let Some(sdlba) = dest else {
            for &(s, a, n) in &ranges {
                self.nss[s].unlock(a, n as u64, false);
            }
            return None;
        };
        self.nss[dns].lock(sdlba, total, true);
        let mut new = Vec::with_capacity(total as usize);
        for &(s, a, n) in &ranges {
            for b in a..a + n as u64 {
                new.push(self.nss[s].model[b as usize].clone());
            }
        }
        Some(Op::Copy {
            dns,
            sdlba,
            ranges,
            new,
            fua: self.rng.chance(0.2),
            epoch: self.epoch,
        })
    }

    /// The entry for `op` in `slot`, its data and lists written to guest memory; journal
    /// intents recorded (committed before the doorbell).
    fn build(&mut self, op: &Op, slot: usize, seq: u64) -> Result<Sqe, Failure> {
        let s = self.slots[slot];
        let mem =
            |e: &Engine, a: u64, d: &[u8]| e.drv.write_mem(a, d).map_err(drv_err("guest RAM"));
        let rw = |opcode: u8, nsid: u32, slba: u64, nlb: u32| Sqe {
            opcode,
            nsid,
            cdw10: slba as u32,
            cdw11: (slba >> 32) as u32,
            cdw12: nlb - 1,
            ..Default::default()
        };
        Ok(match op {
            Op::Read { ns, slba, nlb } => {
                let len = *nlb as u64 * self.block_bytes(*ns);
                let (p1, p2) = self.prps(slot, len)?;
                Sqe {
                    dptr1: p1,
                    dptr2: p2,
                    ..rw(io_op::READ, self.nss[*ns].nsid, *slba, *nlb)
                }
            }
            Op::Write {
                ns,
                slba,
                nlb,
                tag0,
                fua,
            } => {
                let lbs = self.block_bytes(*ns) as usize;
                let mut buf = vec![0u8; *nlb as usize * lbs];
                for (i, b) in buf.chunks_exact_mut(lbs).enumerate() {
                    block_data(tag0 + i as u64, b);
                }
                mem(self, s.data, &buf)?;
                let (p1, p2) = self.prps(slot, buf.len() as u64)?;
                let c: Vec<Cont> = (0..*nlb as u64).map(|i| Cont::Tag(tag0 + i)).collect();
                let nsid = self.nss[*ns].nsid;
                self.intent(seq, nsid, *slba, &c, true);
                let mut e = rw(io_op::WRITE, nsid, *slba, *nlb);
                e.dptr1 = p1;
                e.dptr2 = p2;
                if *fua {
                    e.cdw12 |= nvm_cmd::FUA;
                }
                e
            }
            Op::Zeroes { ns, slba, nlb } => {
                let nsid = self.nss[*ns].nsid;
                self.intent(seq, nsid, *slba, &vec![Cont::Zero; *nlb as usize], true);
                rw(io_op::WRITE_ZEROES, nsid, *slba, *nlb)
            }
            Op::Dsm { ns, ranges } => {
                let nsid = self.nss[*ns].nsid;
                let z = if self.dlfeat_zero {
                    Cont::Zero
                } else {
                    Cont::Unknown
                };
                let mut list = Vec::new();
                for &(a, n) in ranges {
                    list.extend_from_slice(&0u32.to_le_bytes());
                    list.extend_from_slice(&n.to_le_bytes());
                    list.extend_from_slice(&a.to_le_bytes());
                    self.intent(seq, nsid, a, &vec![z; n as usize], false);
                }
                mem(self, s.desc, &list)?;
                Sqe {
                    opcode: io_op::DATASET_MANAGEMENT,
                    nsid,
                    dptr1: s.desc,
                    cdw10: ranges.len() as u32 - 1,
                    cdw11: nvm_cmd::DSM_AD,
                    ..Default::default()
                }
            }
            Op::Copy {
                dns,
                sdlba,
                ranges,
                new,
                fua,
                ..
            } => {
                let nsid = self.nss[*dns].nsid;
                let cross = ranges.iter().any(|r| r.0 != *dns);
                let desc: Vec<(u32, u64, u16)> = ranges
                    .iter()
                    .map(|&(sn, a, n)| (self.nss[sn].nsid, a, n as u16))
                    .collect();
                let list = vnvme::host::copy_descriptors(&desc);
                mem(self, s.desc, &list)?;
                let c: Vec<Cont> = new
                    .iter()
                    .map(|p| if p.len() == 1 { p[0] } else { Cont::Unknown })
                    .collect();
                self.intent(seq, nsid, *sdlba, &c, true);
                let format = if cross { 2u32 } else { 0 };
                let mut cdw12 = (ranges.len() as u32 - 1) | (format << 8);
                if *fua {
                    cdw12 |= nvm_cmd::FUA;
                }
                Sqe {
                    opcode: io_op::COPY,
                    nsid,
                    dptr1: s.desc,
                    dptr2: if list.len() as u64 > PAGE {
                        s.desc + PAGE
                    } else {
                        0
                    },
                    cdw10: *sdlba as u32,
                    cdw11: (*sdlba >> 32) as u32,
                    cdw12,
                    ..Default::default()
                }
            }
            Op::Flush { ns, .. } => Sqe {
                opcode: io_op::FLUSH,
                nsid: self.nss[*ns].nsid,
                ..Default::default()
            },
        })
    }

    fn intent(&mut self, seq: u64, nsid: u32, slba: u64, c: &[Cont], durable: bool) {
        if let Some(j) = &mut self.journal {
            j.intent(seq, nsid, slba, c, durable);
            self.counts.journal_intents += 1;
        }
    }

    fn commit(&mut self) -> Result<(), Failure> {
        if let Some(j) = &mut self.journal {
            j.commit()
                .map_err(|e| Failure::Run(format!("--journal: {e}")))?;
            self.counts.journal_snapshots = j.snapshots;
        }
        Ok(())
    }

    /// Fills every queue up to its depth, journal first, then the doorbells.
    fn submit_all(&mut self) -> Result<(), Failure> {
        let mut rung = Vec::new();
        for qi in 0..self.queues.len() {
            let mut pushed = false;
            while let Some(&slot) = self.queues[qi].free.last() {
                let Some(op) = self.choose() else { break };
                self.seq += 1;
                let seq = self.seq;
                let sqe = self.build(&op, slot, seq)?;
                let qid = self.queues[qi].qid;
                match self.drv.push(qid, sqe) {
                    Ok(cid) => {
                        self.queues[qi].free.pop();
                        *self.counts.commands.entry(op.kind().into()).or_default() += 1;
                        let inf = Inflight {
                            op,
                            seq,
                            slot,
                            at: Instant::now(),
                        };
                        if let Some(old) = self.queues[qi].inflight.insert(cid, inf) {
                            self.finding(format!(
                                "driver reused cid {cid} on queue {qid} while in flight"
                            ));
                            self.settle(old.op, old.seq, false);
                        }
                        pushed = true;
                    }
                    Err(e) => {
                        // Not submitted: release what it holds, as a failure would.
                        self.settle(op, seq, false);
                        return Err(Failure::Run(format!("queue {qid}: {e}")));
                    }
                }
            }
            if pushed {
                rung.push(self.queues[qi].qid);
            }
        }
        self.commit()?;
        for qid in rung {
            self.drv.ring_sq(qid).map_err(drv_err("SQ doorbell"))?;
        }
        Ok(())
    }

    /// Applies the outcome of a command: `ok` = succeeded, else it failed, timed out or
    /// was in flight at a reset (its writes may or may not have happened). Releases its
    /// locks.
    fn settle(&mut self, op: Op, seq: u64, ok: bool) {
        match op {
            Op::Read { ns, slba, nlb } => self.nss[ns].unlock(slba, nlb as u64, false),
            Op::Write {
                ns,
                slba,
                nlb,
                tag0,
                fua,
            } => {
                let n = &mut self.nss[ns];
                for i in 0..nlb as u64 {
                    let b = (slba + i) as usize;
                    let new = [Cont::Tag(tag0 + i)];
                    n.model[b] = if ok {
                        new.to_vec()
                    } else {
                        union(&n.model[b], &new)
                    };
                }
                n.unlock(slba, nlb as u64, true);
                self.acknowledge(ns, seq, ok, fua);
            }
            Op::Zeroes { ns, slba, nlb } => {
                let n = &mut self.nss[ns];
                for b in slba..slba + nlb as u64 {
                    let b = b as usize;
                    n.model[b] = if ok {
                        vec![Cont::Zero]
                    } else {
                        union(&n.model[b], &[Cont::Zero])
                    };
                }
                n.unlock(slba, nlb as u64, true);
                self.acknowledge(ns, seq, ok, false);
            }
            Op::Dsm { ns, ranges } => {
                let z = if self.dlfeat_zero {
                    Cont::Zero
                } else {
                    Cont::Unknown
                };
                let n = &mut self.nss[ns];
                for (a, l) in ranges {
                    for b in a..a + l as u64 {
                        let b = b as usize;
                        n.model[b] = if ok {
                            vec![z]
                        } else {
                            union(&n.model[b], &[z])
                        };
                    }
                    n.unlock(a, l as u64, true);
                }
            }
            Op::Copy {
                dns,
                sdlba,
                ranges,
                new,
                fua,
                ..
            } => {
                for &(s, a, l) in &ranges {
                    self.nss[s].unlock(a, l as u64, false);
                }
                let n = &mut self.nss[dns];
                for (i, p) in new.iter().enumerate() {
                    let b = sdlba as usize + i;
                    n.model[b] = if ok { p.clone() } else { union(&n.model[b], p) };
                }
                n.unlock(sdlba, new.len() as u64, true);
                self.acknowledge(dns, seq, ok, fua);
            }
            Op::Flush { ns, covers } => {
                if ok {
                    if let Some(j) = &mut self.journal {
                        for s in covers {
                            j.durable(s);
                            self.counts.journal_durable += 1;
                        }
                    }
                } else {
                    // Not flushed: a later Flush has to cover them.
                    let mut c = covers;
                    c.append(&mut self.nss[ns].unflushed);
                    self.nss[ns].unflushed = c;
                }
            }
        }
    }

    fn acknowledge(&mut self, ns: usize, seq: u64, ok: bool, fua: bool) {
        if !ok {
            if let Some(j) = &mut self.journal {
                j.view.forget(seq);
            }
        } else if fua {
            if let Some(j) = &mut self.journal {
                j.durable(seq);
                self.counts.journal_durable += 1;
            }
        } else {
            self.nss[ns].unflushed.push(seq);
        }
    }

    /// Checks a successful Read's data block by block.
    fn check_read(
        &mut self,
        ns: usize,
        slba: u64,
        nlb: u32,
        slot: usize,
        seq: u64,
    ) -> Result<(), Failure> {
        let lbs = self.block_bytes(ns) as usize;
        let data = self
            .drv
            .read_mem(self.slots[slot].data, nlb as usize * lbs)
            .map_err(drv_err("guest RAM"))?;
        for (i, b) in data.chunks_exact(lbs).enumerate() {
            let lba = slba + i as u64;
            let seen = decode(b);
            self.counts.blocks_read += 1;
            let may = self.nss[ns].model[lba as usize].clone();
            if may == [Cont::Unknown] {
                self.counts.blocks_unknown += 1;
                if let Some(c) = seen.cont() {
                    self.nss[ns].model[lba as usize] = vec![c];
                }
                continue;
            }
            match seen.cont() {
                Some(c) if may.contains(&c) => {
                    if may.len() == 1 {
                        self.counts.blocks_verified += 1;
                    } else {
                        self.counts.blocks_resolved += 1;
                    }
                    self.nss[ns].model[lba as usize] = vec![c];
                }
                _ => {
                    self.counts.mismatches += 1;
                    let nsid = self.nss[ns].nsid;
                    self.finding(format!(
                        "mismatch: Read (seq {seq}) nsid {nsid} lba {lba}: found {}, expected one of {may:?}",
                        match seen {
                            Seen::Zero => "zeroes".to_string(),
                            Seen::Tag(t) => format!("Tag({t})"),
                            Seen::Garbage => format!("garbage (first bytes {:02x?})", &b[..16]),
                        }
                    ));
                    self.nss[ns].model[lba as usize] = match seen.cont() {
                        Some(c) => vec![c],
                        None => vec![Cont::Unknown],
                    };
                }
            }
        }
        Ok(())
    }

    fn complete(&mut self, qi: usize, c: Cqe) -> Result<(), Failure> {
        let qid = self.queues[qi].qid;
        if c.sqid != qid {
            self.finding(format!(
                "CQ {qid}: completion names SQ {} (cid {}, status {:#x})",
                c.sqid, c.cid, c.status.0
            ));
            return Ok(());
        }
        let Some(inf) = self.queues[qi].inflight.remove(&c.cid) else {
            self.finding(format!(
                "CQ {qid}: completion for cid {} that is not in flight (status {:#x})",
                c.cid, c.status.0
            ));
            return Ok(());
        };
        self.queues[qi].free.push(inf.slot);
        if c.ok() {
            self.counts.completed_ok += 1;
            if let Op::Read { ns, slba, nlb } = inf.op {
                self.check_read(ns, slba, nlb, inf.slot, inf.seq)?;
            }
            let durable_now = matches!(
                inf.op,
                Op::Flush { .. } | Op::Write { fua: true, .. } | Op::Copy { fua: true, .. }
            );
            self.settle(inf.op, inf.seq, true);
            if durable_now {
                // Journaled before anything else happens.
                self.commit()?;
            }
            return Ok(());
        }
        let key = status_key(&c);
        *self
            .counts
            .failures_by_status
            .entry(key.clone())
            .or_default() += 1;
        let sc = c.status.0 & 0x7ff;
        let limit_race =
            matches!(&inf.op, Op::Copy { epoch, .. } if *epoch != self.epoch) && sc == 0x183;
        if self.injected_statuses.contains(&sc) || limit_race {
            self.counts.failures_expected += 1;
        } else {
            self.counts.failures_unexpected += 1;
            let what = inf.op.describe(&self.nss);
            self.finding(format!(
                "unexpected status {key} (dw0 {:#x}) for {what}",
                c.dw0
            ));
        }
        self.settle(inf.op, inf.seq, false);
        Ok(())
    }

    /// Reaps every completion there is; true if any.
    fn reap(&mut self) -> Result<bool, Failure> {
        let mut any = false;
        for qi in 0..self.queues.len() {
            let qid = self.queues[qi].qid;
            loop {
                match self.drv.poll(qid) {
                    Ok(Some(c)) => {
                        any = true;
                        self.complete(qi, c)?;
                    }
                    Ok(None) => break,
                    Err(e) => return Err(Failure::Run(format!("CQ {qid}: {e}"))),
                }
            }
        }
        Ok(any)
    }

    fn inflight(&self) -> usize {
        self.queues.iter().map(|q| q.inflight.len()).sum()
    }

    /// Commands in flight longer than the timeout: findings, then a reset.
    fn check_timeouts(&mut self) -> Result<(), Failure> {
        let now = Instant::now();
        let mut late = Vec::new();
        for q in &self.queues {
            for (cid, i) in &q.inflight {
                if now.duration_since(i.at) > self.cmd_timeout {
                    late.push(format!(
                        "no completion within {:?}: {} (queue {}, cid {cid}, seq {})",
                        self.cmd_timeout,
                        i.op.describe(&self.nss),
                        q.qid,
                        i.seq
                    ));
                }
            }
        }
        if late.is_empty() {
            return Ok(());
        }
        self.counts.timeouts += late.len() as u64;
        for l in late {
            self.finding(l);
        }
        self.reset()
    }

    /// CC.EN = 0, enable, queues again; whatever was in flight becomes uncertain.
    fn reset(&mut self) -> Result<(), Failure> {
        self.counts.resets += 1;
        let t0 = Instant::now();
        let r = self.drv.disable();
        let mut pending = Vec::new();
        for q in &mut self.queues {
            pending.extend(q.inflight.drain().map(|(_, i)| i));
            q.free.clear();
        }
        self.counts.uncertain_after_reset += pending.len() as u64;
        for i in pending {
            self.settle(i.op, i.seq, false);
        }
        if let Err(e) = r {
            self.finding(format!(
                "reset: CC.EN=0 not acknowledged by CSTS.RDY=0 within {:?}: {e}",
                self.drv.timeout
            ));
            return Err(Failure::Run(format!("reset: {e}")));
        }
        let took = t0.elapsed();
        if took > Duration::from_secs(2) {
            self.finding(format!("reset: CSTS.RDY=0 took {took:?}"));
        }
        self.drv
            .enable(self.asq, self.acq, ADMIN_ENTRIES)
            .map_err(drv_err("re-enabling after a reset"))?;
        self.create_queues()?;
        Ok(())
    }

    // --- control socket ---

    fn change_faults(&mut self) {
        let Some(ctlp) = self.control.clone() else {
            return;
        };
        self.count_injected(&ctlp);
        if ctl(&ctlp, "clear-faults", json!({})).is_err() {
            self.finding("control: clear-faults failed".into());
        }
        self.faults.clear();
        if self.rng.chance(0.25) {
            return; // a quiet spell
        }
        let n = self.rng.range(1, 3);
        for _ in 0..n {
            let (opcode, status) = match self.rng.below(7) {
                0 => ("read", 0x0281),
                1 => ("write", 0x0280),
                2 => ("copy", 0x0281),
                3 => ("copy", 0x0280),
                4 => ("write-zeroes", 0x0280),
                5 => ("dsm", 0x0006),
                _ => ("flush", 0x0006),
            };
            let mut args = json!({
                "opcode": opcode,
                "status": format!("{status:#06x}"),
                "probability": 0.002 + self.rng.below(40) as f64 / 1000.0,
                "seed": self.rng.below(1 << 31),
                "dnr": self.rng.chance(0.5),
            });
            if opcode == "copy" && self.rng.chance(0.5) {
                args["copy_range"] = json!(self.rng.below(3));
            }
            match ctl(&ctlp, "inject-fault", args.clone()) {
                Ok(v) => match v.pointer("/return/id").and_then(Value::as_u64) {
                    Some(id) => {
                        self.faults.push(id);
                        self.injected_statuses.insert(status);
                        self.counts.faults_installed += 1;
                    }
                    None => self.finding(format!("control: inject-fault {args} refused: {v}")),
                },
                Err(e) => self.finding(format!("control: inject-fault: {e}")),
            }
        }
    }

    /// Adds the injections of the faults installed now to the total.
    fn count_injected(&mut self, ctlp: &Path) {
        if self.faults.is_empty() {
            return;
        }
        let Ok(v) = ctl(ctlp, "query-faults", json!({})) else {
            self.finding("control: query-faults failed".into());
            return;
        };
        let list = v.pointer("/return/faults").and_then(Value::as_array);
        for f in list.into_iter().flatten() {
            let id = f.get("id").and_then(Value::as_u64).unwrap_or(0);
            if self.faults.contains(&id) {
                self.counts.faults_injected +=
                    f.get("injected").and_then(Value::as_u64).unwrap_or(0);
            }
        }
    }

    fn change_limits(&mut self) -> Result<(), Failure> {
        let Some(ctlp) = self.control.clone() else {
            return Ok(());
        };
        let ns = self.pick_ns();
        let mssrl = self.rng.range(1, 64);
        let mcl = self.rng.range(mssrl, (mssrl * 4).min(256));
        let msrc = self.rng.range(0, 15);
        let nsid = self.nss[ns].nsid;
        let args = json!({"nsid": nsid, "mssrl": mssrl, "mcl": mcl, "msrc": msrc});
        self.epoch += 1;
        match ctl(&ctlp, "set-copy-limits", args.clone()) {
            Ok(v) if v.get("return").is_some() => self.counts.limit_changes += 1,
            Ok(v) => {
                self.counts.limit_changes_refused += 1;
                self.finding(format!("control: set-copy-limits {args} refused: {v}"));
            }
            Err(e) => self.finding(format!("control: set-copy-limits: {e}")),
        }
        // Identify is the truth the copies follow.
        let (c, b) = self
            .drv
            .identify(0, nsid, 0, self.scratch)
            .map_err(drv_err("Identify Namespace"))?;
        if c.ok() {
            let l = limits_of(&b);
            if (l.mssrl as u64, l.mcl as u64, l.ranges as u64) != (mssrl, mcl, msrc + 1) {
                self.finding(format!(
                    "set-copy-limits {args}: Identify Namespace then reports MSSRL {} MCL {} MSRC {}",
                    l.mssrl,
                    l.mcl,
                    l.ranges - 1
                ));
            }
            self.nss[ns].limits = l;
        } else {
            self.finding(format!(
                "Identify Namespace {nsid}: status {:#x}",
                c.status.0
            ));
        }
        Ok(())
    }

    // --- the run ---

    fn run(&mut self, a: &StressArgs) -> Result<(), Failure> {
        let start = Instant::now();
        let end = start + Duration::from_secs(a.secs);
        let sched = |r: &mut Rng, mean: f64| (mean > 0.0).then(|| Instant::now() + r.around(mean));
        let mut next_reset = sched(&mut self.rng, a.reset_every);
        let mut next_fault = sched(&mut self.rng, a.fault_every);
        let mut next_limits = sched(&mut self.rng, a.limits_every);
        let mut last_progress = Instant::now();
        let mut last_stats = Instant::now();
        let vectors: Vec<u16> = self.queues.iter().map(|q| q.qid).collect();
        while Instant::now() < end {
            let now = Instant::now();
            if next_fault.is_some_and(|t| now >= t) {
                self.change_faults();
                next_fault = sched(&mut self.rng, a.fault_every);
            }
            if next_limits.is_some_and(|t| now >= t) {
                self.change_limits()?;
                next_limits = sched(&mut self.rng, a.limits_every);
            }
            if next_reset.is_some_and(|t| now >= t) {
                self.reset()?;
                next_reset = sched(&mut self.rng, a.reset_every);
            }
            self.submit_all()?;
            if !self.reap()? {
                let fired = self
                    .drv
                    .bus
                    .wait_any(&vectors, Duration::from_millis(5))
                    .map_err(|e| Failure::Run(format!("interrupts: {e}")))?;
                self.counts.interrupts += fired.len() as u64;
                self.reap()?;
            }
            self.check_timeouts()?;
            if let (Some(p), true) = (&a.stats, last_stats.elapsed() >= Duration::from_secs(1)) {
                last_stats = Instant::now();
                let secs = start.elapsed().as_secs_f64();
                write_stats(p, &self.report(a, self.seed, &self.run_id, secs));
            }
            if !a.json && last_progress.elapsed() >= Duration::from_secs(30) {
                last_progress = Instant::now();
                eprintln!(
                    "vnvme bench stress: {:>4} s: {} commands, {} blocks verified, {} mismatches, {} resets",
                    start.elapsed().as_secs(),
                    self.counts.commands.values().sum::<u64>(),
                    self.counts.blocks_verified,
                    self.counts.mismatches,
                    self.counts.resets
                );
            }
        }
        // Drain what is in flight (bounded), then a last Flush of every namespace so the
        // journal covers the run's tail.
        let deadline = Instant::now() + self.cmd_timeout;
        while self.inflight() > 0 && Instant::now() < deadline {
            if !self.reap()? {
                let _ = self.drv.bus.wait_any(&vectors, Duration::from_millis(5));
            }
        }
        self.check_timeouts()?;
        if let Some(ctlp) = self.control.clone() {
            self.count_injected(&ctlp);
            let _ = ctl(&ctlp, "clear-faults", json!({}));
            self.faults.clear();
        }
        for ns in 0..self.nss.len() {
            self.final_flush(ns)?;
        }
        Ok(())
    }

    fn final_flush(&mut self, ns: usize) -> Result<(), Failure> {
        let covers = std::mem::take(&mut self.nss[ns].unflushed);
        let sqe = Sqe {
            opcode: io_op::FLUSH,
            nsid: self.nss[ns].nsid,
            ..Default::default()
        };
        *self.counts.commands.entry("flush".into()).or_default() += 1;
        let qid = self.queues[0].qid;
        self.seq += 1;
        let seq = self.seq;
        match self.drv.cmd(qid, sqe) {
            Ok(c) if c.ok() => {
                self.counts.completed_ok += 1;
                self.settle(Op::Flush { ns, covers }, seq, true);
                self.commit()
            }
            Ok(c) => {
                *self
                    .counts
                    .failures_by_status
                    .entry(status_key(&c))
                    .or_default() += 1;
                self.counts.failures_unexpected += 1;
                self.finding(format!("final Flush: status {:#x}", c.status.0));
                Ok(())
            }
            Err(e) => {
                self.finding(format!("final Flush: {e}"));
                Ok(())
            }
        }
    }
}

impl Engine {
    fn report(&self, a: &StressArgs, seed: u64, run_id: &str, secs: f64) -> Value {
        let c = &self.counts;
        let total: u64 = c.commands.values().sum();
        let journal = self.journal.as_ref().map(|j| {
            json!({"path": a.journal.as_ref().map(|p| p.display().to_string()),
                   "durable_blocks": j.view.durable_blocks(),
                   "records": j.view.records})
        });
        json!({
            "mode": "run",
            "seed": seed,
            "run": run_id,
            "seconds": secs,
            "queues": a.queues,
            "depth": a.depth,
            "commands_total": total,
            "commands_per_second": (total as f64 / secs.max(1e-9)).round(),
            "counts": serde_json::to_value(c).unwrap_or(Value::Null),
            "bus": {
                "messages": self.drv.bus.counters.messages,
                "posted_doorbells": self.drv.bus.counters.posted_doorbells,
                "stray_replies": self.drv.bus.counters.stray_replies,
            },
            "journal": journal,
            "findings": self.findings,
            "lost_acknowledged_writes": 0,
        })
    }
}

fn limits_of(b: &[u8]) -> Limits {
    Limits {
        mssrl: (le16(b, id_ns::MSSRL) as u32).max(1),
        mcl: le32(b, id_ns::MCL).max(1),
        ranges: b[id_ns::MSRC] as u32 + 1,
    }
}

/// One control request; an error reply is returned as a value (its caller decides).
fn ctl(path: &Path, cmd: &str, args: Value) -> Result<Value, String> {
    let req = json!({"execute": cmd, "arguments": args});
    vnvme::experiment::control::request(path, &req, Duration::from_secs(10))
        .map_err(|e| format!("{cmd}: {e}"))
}

fn seed_of(a: &StressArgs) -> u64 {
    a.seed.unwrap_or_else(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        t ^ ((std::process::id() as u64) << 32)
    })
}

pub fn main(a: &StressArgs) -> Result<(), Failure> {
    if a.verify {
        return verify(a);
    }
    let seed = seed_of(a);
    let mut e = Engine::connect(a, seed)?;
    // Tags are unique per run: the run id is their top 24 bits.
    let run = Rng(seed ^ 0x5eed).next() & 0xff_ffff;
    e.next_tag = (run << 40) | 1;
    let run_id = format!("{run:06x}");
    e.run_id = run_id.clone();
    if let Some(p) = &a.journal {
        let nss: Vec<(u32, u64, u64)> = e.nss.iter().map(|n| (n.nsid, n.lbs, n.blocks)).collect();
        let j = if a.resume {
            Journal::resume(p, &run_id, &nss)
        } else {
            Journal::create(p, &run_id, &nss)
        };
        let j = j.map_err(|x| Failure::Run(format!("--journal {}: {x}", p.display())))?;
        e.seq = j.max_seq();
        e.journal = Some(j);
    }
    let what = format!(
        "vnvme bench stress: socket {}, control {}, {} s, seed {seed}, run {run_id}, {} queues × depth {}, {}; namespaces {}; cross-namespace copies {}; deallocated reads zeroes {}",
        a.socket.display(),
        a.control.as_ref().map_or("none".into(), |c| c.display().to_string()),
        a.secs,
        a.queues,
        a.depth,
        if e.drv.bus.has_interrupts() { "MSI-X" } else { "polling" },
        e.nss
            .iter()
            .map(|n| format!(
                "{} ({} B blocks, {} of {} used, MSSRL {} MCL {} MSRC {})",
                n.nsid, n.lbs, n.blocks, n.nsze, n.limits.mssrl, n.limits.mcl, n.limits.ranges - 1
            ))
            .collect::<Vec<_>>()
            .join(", "),
        e.cross_ns,
        e.dlfeat_zero
    );
    if !a.json {
        println!("{what}");
    }
    let t0 = Instant::now();
    let r = e.run(a);
    let secs = t0.elapsed().as_secs_f64();
    if let Err(Failure::Run(m)) = &r {
        e.finding(format!("the run stopped: {m}"));
    }
    let report = e.report(a, seed, &run_id, secs);
    if let Some(p) = &a.stats {
        write_stats(p, &report);
    }
    print!("{}", render(a.json, &report));
    if e.counts.mismatches > 0 {
        return Err(Failure::Run(format!("{} mismatches", e.counts.mismatches)));
    }
    r
}

/// Writes the report to `path` (through a temporary file and a rename, so a reader
/// never sees half of one).
fn write_stats(path: &Path, report: &Value) {
    let tmp = path.with_extension("tmp");
    if std::fs::write(&tmp, render(false, report)).is_ok() {
        let _ = std::fs::rename(&tmp, path);
    }
}

/// The report as one JSON line, or as `key: value` lines (nested objects indented).
fn render(as_json: bool, r: &Value) -> String {
    if as_json {
        return format!("{r}\n");
    }
    let mut out = String::new();
    let Value::Object(m) = r else {
        return out;
    };
    for (k, v) in m {
        match v {
            Value::Object(inner) => {
                out += &format!("{k}:\n");
                for (k2, v2) in inner {
                    out += &format!("  {k2}: {v2}\n");
                }
            }
            Value::Array(items) => {
                out += &format!("{k}: {}\n", items.len());
                for i in items {
                    out += &format!("  - {}\n", i.as_str().unwrap_or(&i.to_string()));
                }
            }
            _ => out += &format!("{k}: {v}\n"),
        }
    }
    out
}

/// `--verify`: every journaled block read back through a new connection.
fn verify(a: &StressArgs) -> Result<(), Failure> {
    let Some(path) = &a.journal else {
        return Err(Failure::Usage("--verify needs --journal FILE".into()));
    };
    let view = View::load(path).map_err(|e| Failure::Run(format!("--journal: {e}")))?;
    if let Some(c) = &a.control {
        // Faults a killed run left behind would fail the reads.
        let _ = ctl(c, "clear-faults", json!({}));
    }
    let args = StressArgs {
        socket: a.socket.clone(),
        control: None,
        secs: 0,
        queues: 1,
        depth: 1,
        seed: Some(1),
        journal: None,
        verify: true,
        resume: false,
        json: a.json,
        blocks: view.namespaces.values().map(|n| n.1).max().unwrap_or(1),
        max_blocks: a.max_blocks,
        reset_every: 0.0,
        fault_every: 0.0,
        limits_every: 0.0,
        cmd_timeout: a.cmd_timeout,
        poll: a.poll,
        stats: None,
    };
    let t0 = Instant::now();
    let mut e = Engine::connect(&args, 1)?;
    let mut counts = BTreeMap::<&str, u64>::new();
    let mut lost = Vec::new();
    for (&nsid, &(lbs, blocks)) in &view.namespaces {
        let Some(ns) = e.nss.iter().position(|n| n.nsid == nsid) else {
            return Err(Failure::Run(format!(
                "namespace {nsid} of the journal is gone"
            )));
        };
        if e.nss[ns].lbs != lbs || e.nss[ns].nsze < blocks {
            return Err(Failure::Run(format!(
                "namespace {nsid}: the journal has {blocks} blocks of {lbs} B, the device {} of {}",
                e.nss[ns].nsze, e.nss[ns].lbs
            )));
        }
        let step = e.data_blocks(ns);
        let mut lba = 0;
        while lba < blocks {
            let n = step.min(blocks - lba);
            let checks: Vec<Option<Vec<Cont>>> = (lba..lba + n)
                .map(|b| view.blocks.get(&(nsid, b)).and_then(|v| v.accept()))
                .collect();
            let journaled = (lba..lba + n)
                .filter(|b| {
                    view.blocks
                        .get(&(nsid, *b))
                        .is_some_and(|v| v.durable.is_some())
                })
                .count() as u64;
            *counts.entry("journaled_blocks").or_default() += journaled;
            if checks.iter().all(Option::is_none) {
                *counts.entry("unverifiable_blocks").or_default() += journaled;
                lba += n;
                continue;
            }
            let data = read_blocks(&mut e, ns, lba, n as u32)?;
            for (i, chk) in checks.iter().enumerate() {
                let b = lba + i as u64;
                let Some(accept) = chk else {
                    if view
                        .blocks
                        .get(&(nsid, b))
                        .is_some_and(|v| v.durable.is_some())
                    {
                        *counts.entry("unverifiable_blocks").or_default() += 1;
                    }
                    continue;
                };
                let blk = &data[i * lbs as usize..(i + 1) * lbs as usize];
                let seen = decode(blk);
                match seen.cont() {
                    Some(c) if accept.contains(&c) => {
                        *counts.entry("blocks_verified").or_default() += 1;
                    }
                    _ => {
                        *counts.entry("lost_acknowledged_writes").or_default() += 1;
                        if lost.len() < 50 {
                            lost.push(format!(
                                "nsid {nsid} lba {b}: found {seen:?}, journal says one of {accept:?}"
                            ));
                        }
                    }
                }
            }
            lba += n;
        }
    }
    let lost_n = counts.get("lost_acknowledged_writes").copied().unwrap_or(0);
    let report = json!({
        "mode": "verify",
        "journal": path.display().to_string(),
        "run": view.run,
        "journal_records": view.records,
        "durable_records": view.durable_records,
        "seconds": t0.elapsed().as_secs_f64(),
        "counts": {
            "journaled_blocks": counts.get("journaled_blocks").copied().unwrap_or(0),
            "blocks_verified": counts.get("blocks_verified").copied().unwrap_or(0),
            "unverifiable_blocks": counts.get("unverifiable_blocks").copied().unwrap_or(0),
            "lost_acknowledged_writes": lost_n,
            "mismatches": 0,
        },
        "findings": lost,
    });
    print!("{}", render(a.json, &report));
    if lost_n > 0 {
        return Err(Failure::Run(format!("{lost_n} lost acknowledged writes")));
    }
    Ok(())
}

/// Reads `n` blocks synchronously (three tries), for --verify.
fn read_blocks(e: &mut Engine, ns: usize, lba: u64, n: u32) -> Result<Vec<u8>, Failure> {
    let len = n as u64 * e.block_bytes(ns);
    let (p1, p2) = e.prps(0, len)?;
    let sqe = Sqe {
        opcode: io_op::READ,
        nsid: e.nss[ns].nsid,
        dptr1: p1,
        dptr2: p2,
        cdw10: lba as u32,
        cdw11: (lba >> 32) as u32,
        cdw12: n - 1,
        ..Default::default()
    };
    let qid = e.queues[0].qid;
    let mut last = String::new();
    for _ in 0..3 {
        match e.drv.cmd(qid, sqe) {
            Ok(c) if c.ok() => {
                return e
                    .drv
                    .read_mem(e.slots[0].data, len as usize)
                    .map_err(drv_err("guest RAM"));
            }
            Ok(c) => last = format!("status {:#x}", c.status.0),
            Err(err) => {
                last = err.to_string();
                e.reset()?;
            }
        }
    }
    Err(Failure::Run(format!(
        "Read nsid {} lba {lba} nlb {n}: {last}",
        e.nss[ns].nsid
    )))
}
