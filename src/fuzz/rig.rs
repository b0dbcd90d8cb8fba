//! The controller rig of the NVMe targets: a [`Controller`] built through its public API
//! (as the model's tests and `bench.rs` do) with small memfd namespaces, fake guest
//! memory in two regions with a hole between them, everything outside the queues
//! filled with a canary byte, the shared host driver on the in-process bus, and the
//! checks every command gets (bounded completion, named status, no stray writes) plus
//! the end-of-case health check (Identify Controller still right, or a legitimate
//! CSTS.CFS).

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use vm_memory::{Bytes, GuestAddress, GuestAddressSpace, GuestMemoryAtomic};

use super::{status_is_named, Input, CMD_TIMEOUT};
use crate::block::Volume;
use crate::host::in_process::InProcess;
use crate::host::{Cqe, Driver, DriverError};
use crate::nvme::namespace::{CopyLimits, NamespaceIds};
use crate::nvme::protection::{MetaFormat, PIF_16, PIF_64};
use crate::nvme::prp::Mem;
use crate::nvme::spec::{admin_op, cns, csts, id_ctrl, reg, sgl, Sqe, PAGE_SIZE};
use crate::nvme::{Controller, ControllerConfig, GuestMemory, Namespace};

pub const PAGE: u64 = PAGE_SIZE;
/// Region A: [0, A_END); a hole; region B: [B_START, B_END) (when present).
pub const A_END: u64 = 0x10_0000;
pub const B_START: u64 = 0x11_0000;
pub const B_END: u64 = 0x14_0000;
/// An address far outside guest memory.
pub const FAR: u64 = 0x40_0000_0000;
const ASQ: u64 = 0x1000;
const ACQ: u64 = 0x2000;
const ADMIN_ENTRIES: u32 = 32;
const IOSQ: u64 = 0x3000;
const IOCQ: u64 = 0x4000;
pub const IO_ENTRIES: u32 = 64;
const ID_BUF: u64 = 0x5000;
/// Where generated buffers and lists live (canary-filled): the rest of region A and
/// region B.
pub const DATA_A: Range<u64> = 0x8000..A_END;
pub const DATA_B: Range<u64> = B_START..B_END;
/// The canary byte. As PRP entries its words are unaligned, unmapped addresses; as SGL
/// descriptors its type (Ah) and sub-type (5h) are invalid.
pub const CANARY: u8 = 0xa5;

/// A namespace of the rig.
#[derive(Debug, Clone, Copy)]
pub struct NsSpec {
    pub nsid: u32,
    /// Copy limits for this case (set on the namespace before the case runs).
    pub block_size: u64,
    pub blocks: u64,
    pub readonly: bool,
    pub limits: CopyLimits,
    /// Metadata and protection information (none: `MetaFormat::default()`).
    pub meta: MetaFormat,
    /// A zoned namespace's zones (every case starts with them empty).
    pub zones: Option<crate::nvme::zones::ZoneGeometry>,
}

/// The namespaces: 1 and 2 (512-byte blocks), 3 inactive, 4 (4096-byte blocks), 5
/// read-only, 6 (512-byte blocks, Type 1 protection information with a 16-bit guard in
/// separate metadata), 7 (4096-byte blocks, Type 1 with the 64-bit guard, extended
/// LBAs), 8 (zoned: four zones of 16 blocks, capacity 12, at most 2 open and 3 active);
/// NN is 256 (the table's minimum).
pub fn namespaces(inp: &mut Input) -> Vec<NsSpec> {
    let lim = |inp: &mut Input| CopyLimits {
        mssrl: inp.pick(&[1, 2, 8, 128, 0xffff]),
        mcl: inp.pick(&[1, 8, 16, 128, 256, 0xffff_ffff]),
        msrc: inp.pick(&[0, 1, 3, 127, 255]),
    };
    vec![
        NsSpec {
            nsid: 1,
            block_size: 512,
            blocks: 256,
            readonly: false,
            limits: lim(inp),
            meta: MetaFormat::default(),
            zones: None,
        },
        NsSpec {
            nsid: 2,
            block_size: 512,
            blocks: 64,
            readonly: false,
            limits: lim(inp),
            meta: MetaFormat::default(),
            zones: None,
        },
        NsSpec {
            nsid: 4,
            block_size: 4096,
            blocks: 16,
            readonly: false,
            limits: lim(inp),
            meta: MetaFormat::default(),
            zones: None,
        },
        NsSpec {
            nsid: 5,
            block_size: 512,
            blocks: 32,
            readonly: true,
            limits: lim(inp),
            meta: MetaFormat::default(),
            zones: None,
        },
        NsSpec {
            nsid: 6,
            block_size: 512,
            blocks: 64,
            readonly: false,
            limits: lim(inp),
            meta: MetaFormat {
                ms: 8,
                extended: false,
                pi: 1,
                pi_first: false,
                pif: PIF_16,
            },
            zones: None,
        },
        NsSpec {
            nsid: 7,
            block_size: 4096,
            blocks: 16,
            readonly: false,
            limits: lim(inp),
            meta: MetaFormat {
                ms: 16,
                extended: true,
                pi: 1,
                pi_first: false,
                pif: PIF_64,
            },
            zones: None,
        },
        NsSpec {
            nsid: 8,
            block_size: 512,
            blocks: 64,
            readonly: false,
            limits: lim(inp),
            meta: MetaFormat::default(),
            zones: Some(crate::nvme::zones::ZoneGeometry {
                zone_size: 16,
                zone_cap: 12,
                nr_zones: 4,
                max_open: 2,
                max_active: 3,
                cross_read: false,
                ext_size: 64,
                zasl: 1,
            }),
        },
    ]
}

/// NSIDs worth trying: 0, active, inactive, the 4 KiB and read-only ones, NN, NN+1,
/// broadcast, or any.
pub fn nsid(inp: &mut Input) -> u32 {
    match inp.u8() % 10 {
        0 => 0,
        1..=3 => 1,
        4 => 2,
        5 => 3,
        6 => inp.pick(&[4, 5, 6, 7, 8, 8]),
        7 => inp.pick(&[256, 257]),
        8 => 0xffff_ffff,
        _ => inp.u32(),
    }
}

/// Controller configurations a case may pick (a few presets, so that controllers can be
/// reused between cases: see [`Rig::new`]).
pub fn config(inp: &mut Input) -> ControllerConfig {
    let d = ControllerConfig::default;
    let c = |mdts, max_ioqpairs, mqes, copy, ocfs, cdfe| ControllerConfig {
        mdts,
        max_ioqpairs,
        mqes,
        copy,
        ocfs,
        cdfe,
        ..d()
    };
    match inp.u8() % 8 {
        0 => c(7, 4, 2048, true, 0xf, 0),
        1 => c(7, 4, 2048, true, 0xf, 0xf),
        2 => c(0, 2, 2048, true, 0xf, 0x4),
        3 => c(1, 1, 64, true, 0xf, 0),
        4 => c(7, 4, 2048, false, 0xf, 0),
        5 => c(7, 2, 256, true, 0x1, 0),
        6 => c(2, 4, 2048, true, 0x5, 0x5),
        _ => c(5, 4, 256, true, 0xf, 0xc),
    }
}

/// Deterministic initial contents of namespace `nsid`.
pub fn ns_pattern(nsid: u32, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(7) ^ (i >> 8) as u8 ^ (nsid as u8).wrapping_mul(0x31))
        .collect()
}

pub struct Rig {
    pub ctrl: Arc<Controller>,
    pub mem: GuestMemory,
    pub drv: Driver<InProcess>,
    pub cfg: ControllerConfig,
    pub ns: Vec<NsSpec>,
    pub has_b: bool,
    /// Ranges the device may write besides the admin and I/O CQ rings (CQs and
    /// EventIdx buffers the case created).
    pub extra_writable: Vec<Range<u64>>,
    /// The case did something after which CSTS.CFS is the device's right (a queue or
    /// buffer of its own outside guest memory).
    pub cfs_legit: bool,
    /// I/O queue pair 1 may be gone or stalled because of what the case did.
    pub io_dead: bool,
    /// Asynchronous Event Requests outstanding (their command ids).
    pub aers: Vec<u16>,
    /// Identify Controller as read at the start.
    golden: Vec<u8>,
    /// Snapshot buffers, reused.
    before: Vec<u8>,
    after: Vec<u8>,
    /// The cache key of the controller.
    key: String,
    /// The namespaces as built, restored before every case.
    saved: Vec<Arc<Namespace>>,
}

/// A cached controller, its memory, and its namespaces as built (a case may delete,
/// detach or format them; the next case gets these back).
type Parts = (Arc<Controller>, GuestMemory, Vec<Arc<Namespace>>);

static CACHE: Mutex<BTreeMap<String, Vec<Parts>>> = Mutex::new(BTreeMap::new());

fn lock_cache() -> std::sync::MutexGuard<'static, BTreeMap<String, Vec<Parts>>> {
    CACHE.lock().unwrap_or_else(|p| p.into_inner())
}

fn build(cfg: &ControllerConfig, ns: &[NsSpec], has_b: bool) -> Parts {
    let mut ranges = vec![(GuestAddress(0), A_END as usize)];
    if has_b {
        ranges.push((GuestAddress(B_START), (B_END - B_START) as usize));
    }
    let m = Mem::from_ranges(&ranges).expect("fake guest memory");
    let mem = GuestMemoryAtomic::new(m);
    let namespaces: Vec<Namespace> = ns
        .iter()
        .map(|s| {
            let size = s.blocks * (s.block_size + s.meta.ms as u64);
            let store = crate::block::memfd::create("fuzz", size).expect("memfd");
            let v = Volume::new("fuzz".into(), Arc::new(store), s.block_size, s.readonly)
                .and_then(|v| v.with_metadata(s.meta.ms as u64))
                .expect("volume");
            let n = Namespace::new(s.nsid, Arc::new(v), NamespaceIds::default(), s.limits)
                .with_meta(s.meta);
            match s.zones {
                Some(g) => n.with_zones(g),
                None => n,
            }
        })
        .collect();
    let lab = Arc::new(crate::experiment::Experiment::new());
    let ctrl = Controller::new(cfg, namespaces, lab);
    let saved = ns
        .iter()
        .map(|s| ctrl.namespace(s.nsid).expect("rig namespace"))
        .collect();
    (ctrl, mem, saved)
}

impl Drop for Rig {
    fn drop(&mut self) {
        // A controller from a failed case is not trusted again.
        if std::thread::panicking() {
            return;
        }
        let parts = (self.ctrl.clone(), self.mem.clone(), self.saved.clone());
        lock_cache()
            .entry(std::mem::take(&mut self.key))
            .or_default()
            .push(parts);
    }
}

impl Rig {
    /// Builds (or takes from the cache) the controller and memory, restores the
    /// namespaces' contents and sets the case's copy limits, enables the controller and
    /// creates I/O queue pair 1.
    ///
    /// Controllers are reused because one that was ever enabled is never freed (see
    /// docs/fuzzing.md, "findings"): a fresh one per case runs out of file descriptors.
    /// `connect` resets the controller completely, as a new client would see it.
    pub fn new(cfg: ControllerConfig, ns: Vec<NsSpec>, has_b: bool) -> Rig {
        let key = format!("{cfg:?}/{has_b}");
        let cached = lock_cache().get_mut(&key).and_then(|v| v.pop());
        let (ctrl, mem, saved) = match cached {
            Some(c) => c,
            None => build(&cfg, &ns, has_b),
        };
        ctrl.restore_namespaces(&saved);
        for s in &ns {
            let n = ctrl.namespace(s.nsid).expect("rig namespace");
            if s.meta.ms != 0 {
                // Metadata as never written (all ones), then the data pattern.
                n.volume().discard(0, s.blocks).expect("reset metadata");
            }
            n.store()
                .write(0, &ns_pattern(s.nsid, (s.blocks * s.block_size) as usize))
                .expect("restore namespace");
            n.set_copy_limits(s.limits);
            if let Some(z) = n.zones() {
                // Every zone empty (a reset of all of them), the pattern above in them.
                let _ = z.send(crate::nvme::zones::ZoneAction::Reset, 0, true, &[]);
            }
        }
        let bus = InProcess::connect(ctrl.clone(), mem.clone());
        let mut drv = Driver::new(bus, 0..0);
        drv.event_idx = false;
        drv.timeout = CMD_TIMEOUT;
        let mut rig = Rig {
            ctrl,
            mem,
            drv,
            cfg,
            ns,
            has_b,
            extra_writable: Vec::new(),
            cfs_legit: false,
            io_dead: false,
            aers: Vec::new(),
            golden: Vec::new(),
            before: Vec::new(),
            after: Vec::new(),
            key,
            saved,
        };
        // Queues zeroed, everything else canary.
        rig.write(ASQ, &[0u8; (0x6000 - ASQ) as usize]);
        rig.fill_canary();
        rig.drv
            .enable(ASQ, ACQ, ADMIN_ENTRIES)
            .unwrap_or_else(|e| panic!("rig: enable: {e}"));
        let c = rig
            .drv
            .create_cq(1, IO_ENTRIES, IOCQ, 1, true)
            .expect("rig: create CQ");
        assert!(c.ok(), "rig: create I/O CQ 1: {:#x}", c.status.0);
        let c = rig
            .drv
            .create_sq(1, IO_ENTRIES, IOSQ, 1)
            .expect("rig: create SQ");
        assert!(c.ok(), "rig: create I/O SQ 1: {:#x}", c.status.0);
        rig.golden = rig.identify_controller().expect("rig: first Identify");
        rig
    }

    /// Fills the data areas with the canary again (before a command's buffers are
    /// built, so nothing a previous command left there is read as a list).
    pub fn recanary(&self) {
        self.fill_canary();
    }

    fn fill_canary(&self) {
        let m = self.mem.memory();
        let fill = |r: Range<u64>| {
            let v = vec![CANARY; (r.end - r.start) as usize];
            m.write_slice(&v, GuestAddress(r.start)).expect("canary");
        };
        fill(0..ASQ);
        fill(0x6000..A_END);
        if self.has_b {
            fill(DATA_B);
        }
    }

    /// Is `[addr, addr+len)` entirely guest memory?
    pub fn mapped(&self, addr: u64, len: u64) -> bool {
        let Some(end) = addr.checked_add(len) else {
            return false;
        };
        end <= A_END || (self.has_b && addr >= B_START && end <= B_END)
    }

    pub fn write(&self, addr: u64, data: &[u8]) {
        // Parts outside guest memory are simply not written (byte by byte at the edges
        // would be slow; a buffer is either inside one region or deliberately not).
        let _ = self.mem.memory().write_slice(data, GuestAddress(addr));
    }

    pub fn read(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut b = vec![0u8; len];
        let _ = self.mem.memory().read_slice(&mut b, GuestAddress(addr));
        b
    }

    fn regions(&self) -> Vec<(u64, usize)> {
        let mut v = vec![(0, A_END as usize)];
        if self.has_b {
            v.push((B_START, (B_END - B_START) as usize));
        }
        v
    }

    /// Guest memory now, into `buf` (reused between commands).
    fn snapshot_into(&self, buf: &mut Vec<u8>) {
        let total: usize = self.regions().iter().map(|r| r.1).sum();
        buf.resize(total, 0);
        let m = self.mem.memory();
        let mut off = 0;
        for (base, len) in self.regions() {
            let _ = m.read_slice(&mut buf[off..off + len], GuestAddress(base));
            off += len;
        }
    }

    /// Every byte that changed since `before`, outside `allowed` and the queue rings.
    fn check_writes(&mut self, before: &[u8], allowed: &[Range<u64>], what: &str) {
        let mut ok: Vec<Range<u64>> = allowed.to_vec();
        ok.push(ACQ..ACQ + ADMIN_ENTRIES as u64 * 16);
        ok.push(IOCQ..IOCQ + IO_ENTRIES as u64 * 16);
        // The host's own writes: the entries it submits.
        ok.push(ASQ..ASQ + ADMIN_ENTRIES as u64 * 64);
        ok.push(IOSQ..IOSQ + IO_ENTRIES as u64 * 64);
        ok.extend(self.extra_writable.iter().cloned());
        let mut after = std::mem::take(&mut self.after);
        self.snapshot_into(&mut after);
        let mut off = 0usize;
        for (base, len) in self.regions() {
            const CHUNK: usize = 512;
            for c in (0..len).step_by(CHUNK) {
                let (x0, y0) = (
                    &before[off + c..off + c + CHUNK],
                    &after[off + c..off + c + CHUNK],
                );
                if x0 == y0 {
                    continue;
                }
                for (i, (x, y)) in x0.iter().zip(y0.iter()).enumerate() {
                    let addr = base + (c + i) as u64;
                    if x != y && !ok.iter().any(|r| r.contains(&addr)) {
                        panic!(
                            "{what}: guest memory at {addr:#x} changed ({x:#04x} -> {y:#04x}) \
                             outside the buffers the command describes ({allowed:x?})"
                        );
                    }
                }
            }
            off += len;
        }
        self.after = after;
    }

    fn cq_of(qid: u16) -> u16 {
        qid
    }

    /// Submits `sqe` on `qid` and waits (bounded) for its completion, checking the
    /// status, the completion's fields, and that guest memory outside `allowed` (and the
    /// CQ rings) is untouched. `None`: no completion, legitimately (CSTS.CFS after
    /// something the case did).
    pub fn cmd(&mut self, qid: u16, sqe: Sqe, allowed: &[Range<u64>], what: &str) -> Option<Cqe> {
        let mut before = std::mem::take(&mut self.before);
        self.snapshot_into(&mut before);
        let cid = match self.drv.submit(qid, sqe) {
            Ok(c) => c,
            Err(DriverError::QueueFull(_)) => panic!("{what}: SQ {qid} full: completions lost"),
            Err(e) => panic!("{what}: submit: {e}"),
        };
        let cqid = Self::cq_of(qid);
        let deadline = Instant::now() + CMD_TIMEOUT;
        let got = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.drv.try_reap(cqid, left) {
                Ok(Some(c)) => {
                    assert!(
                        status_is_named(c.status.0),
                        "{what}: status {:#x} is not in the status table",
                        c.status.0
                    );
                    if c.sqid == qid && c.cid == cid {
                        assert!(
                            (c.sqhd as u32) < self.sq_size(qid),
                            "{what}: SQ head {} beyond the queue",
                            c.sqhd
                        );
                        break Some(c);
                    }
                    if qid == 0 && c.sqid == 0 {
                        if let Some(i) = self.aers.iter().position(|&a| a == c.cid) {
                            self.aers.remove(i);
                            continue;
                        }
                    }
                    panic!(
                        "{what}: unexpected completion (cid {} SQ {}) while waiting for cid {cid}",
                        c.cid, c.sqid
                    );
                }
                Ok(None) => break None,
                Err(e) => panic!("{what}: {e}"),
            }
        };
        match got {
            Some(c) => {
                self.check_writes(&before, allowed, what);
                self.before = before;
                Some(c)
            }
            None => {
                let csts_now = self.ctrl.csts();
                if csts_now & csts::CFS != 0 {
                    assert!(
                        self.cfs_legit,
                        "{what}: CSTS.CFS set (CSTS {csts_now:#x}) though the host gave no cause"
                    );
                    None
                } else {
                    panic!("{what}: no completion within {CMD_TIMEOUT:?} (CSTS {csts_now:#x})")
                }
            }
        }
    }

    fn sq_size(&self, qid: u16) -> u32 {
        if qid == 0 {
            ADMIN_ENTRIES
        } else {
            IO_ENTRIES
        }
    }

    /// Submits an Asynchronous Event Request (completes whenever an event comes).
    pub fn aer(&mut self) {
        if self.aers.len() > crate::nvme::settings::AERL as usize {
            return;
        }
        let cid = self
            .drv
            .submit(
                0,
                Sqe {
                    opcode: admin_op::ASYNC_EVENT_REQUEST,
                    ..Default::default()
                },
            )
            .expect("submit AER");
        self.aers.push(cid);
    }

    fn identify_controller(&mut self) -> Option<Vec<u8>> {
        self.write(ID_BUF, &[0xee; PAGE as usize]);
        let sqe = Sqe {
            opcode: admin_op::IDENTIFY,
            dptr1: ID_BUF,
            cdw10: cns::CONTROLLER as u32,
            ..Default::default()
        };
        let buf = std::iter::once(ID_BUF..ID_BUF + PAGE).collect::<Vec<_>>();
        let c = self.cmd(0, sqe, &buf, "health check Identify Controller")?;
        assert!(
            c.ok(),
            "health check: Identify Controller failed: {:#x}",
            c.status.0
        );
        Some(self.read(ID_BUF, PAGE as usize))
    }

    /// The end of a case: the controller answers Identify Controller as at the start;
    /// after a legitimate CSTS.CFS, a reset (CC.EN 0, then 1) brings it back first.
    pub fn health(&mut self) {
        if self.ctrl.csts() & csts::CFS != 0 {
            assert!(
                self.cfs_legit,
                "CSTS.CFS set (CSTS {:#x}) though the host gave no cause",
                self.ctrl.csts()
            );
            self.extra_writable.clear();
            self.aers.clear();
            self.drv
                .disable()
                .unwrap_or_else(|e| panic!("health: disable after CFS: {e}"));
            self.fill_canary();
            self.drv
                .enable(ASQ, ACQ, ADMIN_ENTRIES)
                .unwrap_or_else(|e| panic!("health: enable after CFS: {e}"));
        }
        let page = self
            .identify_controller()
            .unwrap_or_else(|| panic!("health: no answer to Identify Controller"));
        for (name, r) in [
            ("VID/SSVID", id_ctrl::VID..id_ctrl::SN),
            ("SN/MN/FR", id_ctrl::SN..id_ctrl::RAB),
            ("MDTS", id_ctrl::MDTS..id_ctrl::MDTS + 1),
            ("SQES..NN", id_ctrl::SQES..id_ctrl::NN + 4),
            ("ONCS", id_ctrl::ONCS..id_ctrl::ONCS + 2),
            ("SGLS", id_ctrl::SGLS..id_ctrl::SGLS + 4),
        ] {
            assert_eq!(
                page[r.clone()],
                self.golden[r],
                "health: Identify Controller {name} changed"
            );
        }
        assert_eq!(self.ctrl.csts() & csts::RDY, csts::RDY, "health: CSTS.RDY");
    }

    /// The bytes of namespace `nsid` now.
    pub fn ns_bytes(&self, nsid: u32) -> Vec<u8> {
        let s = self.ns.iter().find(|s| s.nsid == nsid).expect("rig ns");
        let mut b = vec![0u8; (s.blocks * s.block_size) as usize];
        self.ctrl
            .namespace(nsid)
            .expect("namespace")
            .store()
            .read(0, &mut b)
            .expect("read namespace");
        b
    }

    /// Notes a queue or buffer the device accepted at `base` for `len` bytes that it
    /// may write (CQ, EventIdx), and whether it could fail to.
    pub fn device_owns(&mut self, base: u64, len: u64) {
        if !self.mapped(base, len) {
            self.cfs_legit = true;
        }
        self.extra_writable
            .push(base..base.saturating_add(len.max(1)));
    }

    pub fn doorbell(&self, off: u64) -> u64 {
        reg::DOORBELL_BASE + off
    }
}

// --- data pointers ---

/// A generated data pointer: the SQE fields, the ranges a device may write for it (each
/// Data Block, PRP1's page, every PRP entry's page, as the host wrote them), and — if
/// the structure is well formed for `len` bytes — the byte ranges in transfer order.
#[derive(Debug, Clone)]
pub struct Dptr {
    pub psdt: u8,
    pub dptr1: u64,
    pub dptr2: u64,
    pub writable: Vec<Range<u64>>,
    pub layout: Option<Vec<(u64, u64)>>,
}

impl Dptr {
    /// Scatters `data` over the layout (the host filling its buffer).
    pub fn fill(&self, rig: &Rig, data: &[u8]) {
        let Some(layout) = &self.layout else {
            return;
        };
        let mut off = 0usize;
        for &(a, l) in layout {
            if off >= data.len() {
                break;
            }
            let n = (l as usize).min(data.len() - off);
            rig.write(a, &data[off..off + n]);
            off += n;
        }
    }

    pub fn apply(&self, sqe: &mut Sqe) {
        sqe.psdt = self.psdt;
        sqe.dptr1 = self.dptr1;
        sqe.dptr2 = self.dptr2;
    }
}

/// A page-aligned address for a buffer or list: in region A's data area, region B, at
/// the ends of the regions, in the hole, far away, or 0.
fn page_addr(rig: &Rig, inp: &mut Input) -> u64 {
    let pages_a = (DATA_A.end - DATA_A.start) / PAGE;
    let pages_b = (DATA_B.end - DATA_B.start) / PAGE;
    match inp.u8() % 16 {
        0 => 0,
        1 => A_END - PAGE,
        2 => A_END,
        3 => B_START,
        4 => B_END - PAGE,
        5 => FAR,
        6 => 0xffff_ffff_ffff_f000,
        7 | 8 if rig.has_b => B_START + inp.below(pages_b as usize) as u64 * PAGE,
        _ => DATA_A.start + inp.below(pages_a as usize) as u64 * PAGE,
    }
}

/// An offset inside a page, biased: 0, dword-aligned edges, unaligned ones.
fn page_offset(inp: &mut Input, align: u64) -> u64 {
    let o = match inp.u8() % 10 {
        0..=3 => 0,
        4 => PAGE - align.max(1),
        5 => 512,
        6 => 4,
        7 => inp.pick(&[1, 2, 3]),
        _ => inp.u16() as u64 % PAGE,
    };
    if align > 1 && !inp.one_in(4) {
        o & !(align - 1)
    } else {
        o
    }
}

/// A data pointer for a transfer of `len` bytes (PRP or SGL, well formed or not).
pub fn dptr(rig: &Rig, inp: &mut Input, len: u64) -> Dptr {
    match inp.u8() % 8 {
        0..=4 => prp(rig, inp, len),
        5 | 6 => sgl_ptr(rig, inp, len),
        _ => {
            // Raw values; never the host's own queues (a buffer or list there is the
            // host shooting itself, not something to judge the device by).
            let mut raw = || not_queues(inp.edgy(64, &[A_END, B_START, B_END, FAR]));
            let (dptr1, dptr2) = (raw(), raw());
            let sgl_len = dptr2 & 0xffff_ffff;
            Dptr {
                psdt: inp.pick(&[0, 1, 2, 3]),
                dptr1,
                dptr2,
                writable: vec![
                    page_range(dptr1),
                    page_range(dptr2),
                    dptr1..dptr1.saturating_add(sgl_len),
                ],
                layout: None,
            }
        }
    }
}

/// `v`, moved out of the host's queue pages if it points there.
fn not_queues(v: u64) -> u64 {
    if (ASQ..0x8000).contains(&(v & !(PAGE - 1))) {
        v + 0x8000
    } else {
        v
    }
}

fn page_range(addr: u64) -> Range<u64> {
    let start = addr & !3;
    let end = (addr & !(PAGE - 1)).saturating_add(PAGE);
    start..end.max(start)
}

fn prp(rig: &Rig, inp: &mut Input, len: u64) -> Dptr {
    let p1 = page_addr(rig, inp) + page_offset(inp, 4);
    let mut writable = vec![page_range(p1)];
    let first = PAGE - p1 % PAGE;
    let mut layout = vec![(p1, first.min(len))];
    let mut clean = p1.is_multiple_of(4) && rig.mapped(p1, first.min(len));
    if len <= first {
        // PRP2 unused: anything.
        let p2 = if inp.bool() { 0 } else { inp.u64() };
        return Dptr {
            psdt: 0,
            dptr1: p1,
            dptr2: p2,
            writable,
            layout: clean.then_some(layout),
        };
    }
    let rest = len - first;
    let pages = rest.div_ceil(PAGE);
    let data_page = |inp: &mut Input, clean: &mut bool| {
        let p = if inp.one_in(16) {
            *clean = false;
            not_queues(inp.edgy(64, &[A_END, B_START, FAR]))
        } else {
            page_addr(rig, inp)
        };
        if !p.is_multiple_of(PAGE) || !rig.mapped(p, PAGE) {
            *clean = false;
        }
        p
    };
    if pages == 1 {
        let p2 = data_page(inp, &mut clean);
        writable.push(page_range(p2));
        layout.push((p2, rest));
        return Dptr {
            psdt: 0,
            dptr1: p1,
            dptr2: p2,
            writable,
            layout: clean.then_some(layout),
        };
    }
    // A PRP list (chained when it does not fit), at a biased offset in its page.
    let mut list = page_addr(rig, inp) + page_offset(inp, 8);
    let head = list;
    let mut structs = Vec::new();
    let mut left = pages;
    let mut chain_guard = 0;
    loop {
        if !list.is_multiple_of(8) || !rig.mapped(list, 8) {
            clean = false;
            break;
        }
        let slots = (PAGE - list % PAGE) / 8;
        let n = left.min(slots);
        let chained = left > slots;
        let mut entries = Vec::new();
        for i in 0..n {
            if chained && i == slots - 1 {
                break;
            }
            let p = data_page(inp, &mut clean);
            writable.push(page_range(p));
            let take = (rest - (pages - left) * PAGE).min(PAGE);
            layout.push((p, take));
            entries.push(p);
            left -= 1;
        }
        let next = if chained {
            let nx = page_addr(rig, inp);
            entries.push(nx);
            Some(nx)
        } else {
            None
        };
        let bytes: Vec<u8> = entries.iter().flat_map(|e| e.to_le_bytes()).collect();
        if !rig.mapped(list, bytes.len() as u64) {
            clean = false;
        }
        rig.write(list, &bytes);
        structs.push(list..list.saturating_add(bytes.len() as u64));
        match next {
            Some(nx) if chain_guard < 8 => {
                chain_guard += 1;
                list = nx;
            }
            Some(_) => {
                clean = false;
                break;
            }
            None => break,
        }
        if left == 0 {
            break;
        }
    }
    // Data pages that overlap the lists make the layout ambiguous; fine for the
    // writable set, not for content checks.
    Dptr {
        psdt: 0,
        dptr1: p1,
        dptr2: head,
        writable,
        layout: clean.then_some(layout).filter(|l| disjoint(l, &structs)),
    }
}

fn sgl_desc(addr: u64, len: u32, kind: u8, subtype: u8) -> [u8; 16] {
    let mut d = [0u8; 16];
    d[0..8].copy_from_slice(&addr.to_le_bytes());
    d[8..12].copy_from_slice(&len.to_le_bytes());
    d[15] = (kind << 4) | (subtype & 0xf);
    d
}

fn sgl_ptr(rig: &Rig, inp: &mut Input, len: u64) -> Dptr {
    let mut writable = Vec::new();
    let mut layout = Vec::new();
    let mut clean = true;
    // Data blocks that together cover `len`, with biased lengths.
    let mut block = |inp: &mut Input, want: u64, clean: &mut bool, layout: &mut Vec<(u64, u64)>| {
        let addr = page_addr(rig, inp) + page_offset(inp, 1);
        let l = match inp.u8() % 8 {
            0 => 0,
            1 => want.saturating_sub(1),
            2 => want + 1,
            3 => inp.u32() as u64,
            _ => want,
        }
        .min(u32::MAX as u64);
        // Never over the host's own queues (page 0 is canary, the queues follow it).
        let l = if addr < ASQ { l.min(ASQ - addr) } else { l };
        // Only an exact, mapped block is "clean": an SGL longer or shorter than the
        // transfer has a status the device is free to choose.
        if l != want || !rig.mapped(addr, l) {
            *clean = false;
        }
        writable.push(addr..addr.saturating_add(l));
        layout.push((addr, l));
        (addr, l as u32)
    };
    let psdt = inp.pick(&[1, 1, 2]);
    let mode = inp.u8() % 4;
    if mode == 0 {
        // SGL1 is the one Data Block.
        let (a, l) = block(inp, len, &mut clean, &mut layout);
        let d = sgl_desc(a, l, sgl::DATA_BLOCK, if inp.one_in(16) { 1 } else { 0 });
        if d[15] != 0 || (l as u64) < len {
            clean = false;
        }
        let (d1, d2) = split(&d);
        return Dptr {
            psdt,
            dptr1: d1,
            dptr2: d2,
            writable,
            layout: clean.then(|| trim(layout, len)),
        };
    }
    // SGL1 is a (Last) Segment to a list of data blocks, maybe chained.
    let nseg = 1 + inp.below(3);
    let mut seg_addr = page_addr(rig, inp) + page_offset(inp, 16);
    let first_seg = seg_addr;
    let mut first_len = 0u32;
    let mut first_kind = sgl::LAST_SEGMENT;
    let mut left = len;
    let mut structs = Vec::new();
    for s in 0..nseg {
        let nblocks = 1 + inp.below(4);
        let mut list = Vec::new();
        for b in 0..nblocks {
            let want = if b == nblocks - 1 && s == nseg - 1 {
                left
            } else {
                left.div_ceil(2)
            };
            match inp.u8() % 16 {
                0 => {
                    list.extend_from_slice(&sgl_desc(inp.u64(), inp.u32(), sgl::BIT_BUCKET, 0));
                    clean = false;
                }
                1 => {
                    let k = inp.u8() >> 4;
                    list.extend_from_slice(&sgl_desc(inp.u64(), inp.u32(), k, inp.u8()));
                    clean = false;
                }
                _ => {
                    let (a, l) = block(inp, want, &mut clean, &mut layout);
                    left = left.saturating_sub(l as u64);
                    list.extend_from_slice(&sgl_desc(a, l, sgl::DATA_BLOCK, 0));
                }
            }
        }
        let last = s == nseg - 1;
        let next = if last {
            None
        } else {
            Some(page_addr(rig, inp) + page_offset(inp, 16))
        };
        let kind_next = if next.is_some() && inp.one_in(2) {
            sgl::LAST_SEGMENT
        } else {
            sgl::SEGMENT
        };
        if let Some(nx) = next {
            // Length of the next segment is filled in below once known; guess 1..4
            // descriptors, biased.
            let nl = inp.pick(&[16u32, 32, 48, 64, 0, 15, 4096]);
            list.extend_from_slice(&sgl_desc(nx, nl, kind_next, 0));
            clean = false; // the next segment's length is a guess
        }
        if !rig.mapped(seg_addr, list.len() as u64) {
            clean = false;
        }
        rig.write(seg_addr, &list);
        structs.push(seg_addr..seg_addr.saturating_add(list.len() as u64));
        if s == 0 {
            first_len = match inp.u8() % 10 {
                0 => 0,
                1 => list.len() as u32 + 16,
                2 => list.len() as u32 - 1,
                _ => list.len() as u32,
            };
            if first_len != list.len() as u32 {
                clean = false;
            }
            first_kind = if last && !inp.one_in(4) {
                sgl::LAST_SEGMENT
            } else {
                sgl::SEGMENT
            };
        }
        match next {
            Some(nx) => seg_addr = nx,
            None => break,
        }
    }
    if left > 0 {
        clean = false;
    }
    let d = sgl_desc(first_seg, first_len, first_kind, 0);
    let (d1, d2) = split(&d);
    Dptr {
        psdt,
        dptr1: d1,
        dptr2: d2,
        writable,
        layout: clean
            .then(|| trim(layout, len))
            .filter(|l| disjoint(l, &structs)),
    }
}

/// True if no two of the layout's ranges overlap, and none overlaps a list.
fn disjoint(layout: &[(u64, u64)], structs: &[Range<u64>]) -> bool {
    let mut all: Vec<Range<u64>> = layout
        .iter()
        .map(|&(a, l)| a..a.saturating_add(l))
        .filter(|r| !r.is_empty())
        .chain(structs.iter().cloned())
        .collect();
    all.sort_by_key(|r| r.start);
    all.windows(2).all(|w| w[0].end <= w[1].start)
}

fn trim(layout: Vec<(u64, u64)>, len: u64) -> Vec<(u64, u64)> {
    let mut left = len;
    let mut out = Vec::new();
    for (a, l) in layout {
        if left == 0 {
            break;
        }
        let n = l.min(left);
        out.push((a, n));
        left -= n;
    }
    out
}

fn split(d: &[u8; 16]) -> (u64, u64) {
    let mut a = [0u8; 8];
    a.copy_from_slice(&d[0..8]);
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[8..16]);
    (u64::from_le_bytes(a), u64::from_le_bytes(b))
}
