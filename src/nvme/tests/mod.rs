//! Controller tests driven exactly like a host driver: the shared host driver
//! ([`crate::host`]) on its in-process bus, so registers go through `mmio_write`,
//! commands are written into fake guest memory, doorbells rung and completions waited
//! for with a bounded timeout.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use vm_memory::{Bytes, GuestAddress, GuestAddressSpace, GuestMemoryAtomic};

use super::Controller;
use crate::block::Volume;
use crate::nvme::namespace::{CopyLimits, NamespaceIds};
use crate::nvme::prp::Mem;
use crate::nvme::spec::*;
use crate::nvme::ControllerConfig;
use crate::nvme::{GuestMemory, Namespace};

pub use crate::host::driver::{must, poll_until};
pub use crate::host::in_process::{InProcess, Interrupts};
pub use crate::host::{pattern, rw, Cqe, Driver, DriverError};

/// Guest memory: one 16 MiB map at 0; everything above is outside the DMA maps.
pub const MEM_SIZE: u64 = 16 << 20;
pub const UNMAPPED: u64 = 0x4000_0000;
const ASQ: u64 = 0x10000;
const ACQ: u64 = 0x20000;
const ADMIN_SIZE: u32 = 32;
/// Scratch data buffers for admin commands.
pub const BUF: u64 = 0x100000;
/// Where the driver takes memory it allocates itself (PRP lists, SGL segments); the
/// tests' fixed addresses stay below.
pub const HEAP: u64 = 0xc0_0000;
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// The interrupt recorder the controller raises into.
pub type Irq = Interrupts;

/// The shared host driver ([`crate::host::Driver`]) on the in-process bus, with the
/// fixed memory layout and panicking conveniences the model tests use. It dereferences
/// to the driver (e.g. `h.dbbuf`, or its `Result` API).
pub struct Host {
    pub ctrl: Arc<Controller>,
    /// Counters, faults, latencies and records the controller reports to.
    pub lab: Arc<crate::experiment::Experiment>,
    pub mem: GuestMemory,
    pub irq: Arc<Irq>,
    pub drv: Driver<InProcess>,
    /// Poll mode: the doorbell memory the controller polls and the driver rings.
    pub doorbells: Option<Arc<crate::nvme::LocalDoorbells>>,
}

impl std::ops::Deref for Host {
    type Target = Driver<InProcess>;
    fn deref(&self) -> &Self::Target {
        &self.drv
    }
}

impl std::ops::DerefMut for Host {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.drv
    }
}

/// Where a test namespace keeps its blocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backing {
    /// A file (created sparse with `size`, or sized from the existing file).
    File(std::path::PathBuf),
    /// A memfd.
    Memory,
}

/// A test namespace: what `--ns` would say, without the wiring (the model's tests build
/// volumes and namespaces themselves). Defaults as `--ns`'s.
#[derive(Debug, Clone)]
pub struct NamespaceConfig {
    pub backing: Backing,
    pub size: Option<u64>,
    pub logical_block_size: u32,
    pub mssrl: u16,
    pub mcl: u32,
    pub msrc: u8,
    pub readonly: bool,
    pub uuid: Option<[u8; 16]>,
    pub nguid: Option<[u8; 16]>,
    pub eui64: Option<[u8; 8]>,
}

impl Default for NamespaceConfig {
    fn default() -> Self {
        NamespaceConfig {
            backing: Backing::Memory,
            size: None,
            logical_block_size: 512,
            mssrl: 128,
            mcl: 128,
            msrc: 127,
            readonly: false,
            uuid: None,
            nguid: None,
            eui64: None,
        }
    }
}

impl NamespaceConfig {
    fn ids(&self) -> NamespaceIds {
        NamespaceIds {
            uuid: self.uuid,
            nguid: self.nguid,
            eui64: self.eui64,
        }
    }

    fn limits(&self) -> CopyLimits {
        CopyLimits {
            mssrl: self.mssrl,
            mcl: self.mcl,
            msrc: self.msrc,
        }
    }

    /// Namespace `nsid` over `volume`, with this spec's identifiers and limits.
    pub fn on(&self, nsid: u32, volume: Arc<Volume>) -> Namespace {
        Namespace::new(nsid, volume, self.ids(), self.limits())
    }
}

pub fn ns_cfg(size: u64) -> NamespaceConfig {
    NamespaceConfig {
        size: Some(size),
        ..Default::default()
    }
}

/// Opens the spec's volume (memfd, or file) and makes it namespace `nsid`.
pub fn memns(nsid: u32, cfg: NamespaceConfig) -> Namespace {
    let bs = cfg.logical_block_size as u64;
    let v = match &cfg.backing {
        Backing::File(p) => Volume::open_file(p, cfg.size, bs, cfg.readonly),
        Backing::Memory => Volume::memory("test", cfg.size.unwrap_or(1 << 30), bs, cfg.readonly),
    };
    cfg.on(nsid, Arc::new(v.unwrap()))
}

impl Host {
    pub fn new(cfg: ControllerConfig, namespaces: Vec<Namespace>) -> Host {
        Host::with_doorbells(cfg, namespaces, None)
    }

    /// Poll mode: doorbells in shared memory (one page of them), polled for
    /// `cfg.poll_us` µs after each queue's last command.
    pub fn polled(cfg: ControllerConfig, namespaces: Vec<Namespace>) -> Host {
        let db = Arc::new(crate::nvme::LocalDoorbells::new(1024));
        Host::with_doorbells(cfg, namespaces, Some(db))
    }

    fn with_doorbells(
        cfg: ControllerConfig,
        namespaces: Vec<Namespace>,
        doorbells: Option<Arc<crate::nvme::LocalDoorbells>>,
    ) -> Host {
        let m = Mem::from_ranges(&[(GuestAddress(0), MEM_SIZE as usize)]).unwrap();
        let mem = GuestMemoryAtomic::new(m);
        let lab = Arc::new(crate::experiment::Experiment::new());
        let ctrl = Controller::new(&cfg, namespaces, lab.clone());
        let db = doorbells
            .clone()
            .map(|d| d as Arc<dyn crate::nvme::DoorbellMemory>);
        let bus = InProcess::connect_with_doorbells(ctrl.clone(), mem.clone(), db);
        let irq = bus.irq.clone();
        let mut drv = Driver::new(bus, HEAP..MEM_SIZE);
        // Shadow doorbells, when a test turns them on, are written and rung both.
        drv.event_idx = false;
        drv.timeout = TIMEOUT;
        let mut h = Host {
            ctrl,
            lab,
            mem,
            irq,
            drv,
            doorbells,
        };
        h.enable();
        h
    }

    /// One 16 MiB memfd namespace (nsid 1) and the default controller.
    pub fn simple() -> Host {
        Host::new(
            ControllerConfig::default(),
            vec![memns(1, ns_cfg(16 << 20))],
        )
    }

    pub fn m(&self) -> impl std::ops::Deref<Target = Mem> + '_ {
        self.mem.memory()
    }

    pub fn w32(&self, off: u64, v: u32) {
        self.ctrl.mmio_write(off, &v.to_le_bytes());
    }

    pub fn r32(&self, off: u64) -> u32 {
        let mut b = [0u8; 4];
        self.ctrl.mmio_read(off, &mut b);
        u32::from_le_bytes(b)
    }

    pub fn r64(&self, off: u64) -> u64 {
        let mut b = [0u8; 8];
        self.ctrl.mmio_read(off, &mut b);
        u64::from_le_bytes(b)
    }

    pub fn wait_csts(&self, mask: u32, val: u32) -> bool {
        let r = poll_until(TIMEOUT, Duration::from_millis(1), || {
            Ok::<_, DriverError>(self.r32(reg::CSTS) & mask == val)
        });
        must(r)
    }

    /// Admin queues of 32 entries at fixed addresses, CC.EN; the controller must be off.
    pub fn enable(&mut self) {
        must(self.drv.enable(ASQ, ACQ, ADMIN_SIZE));
    }

    pub fn disable(&mut self) {
        must(self.drv.disable());
    }

    /// Writes the SQE and advances the host tail, without ringing.
    pub fn push(&mut self, qid: u16, sqe: Sqe) -> u16 {
        must(self.drv.push(qid, sqe))
    }

    pub fn sq_tail(&self, qid: u16) -> u32 {
        self.drv.sq_tail(qid).expect("no such host SQ")
    }

    /// Rings SQ `qid`'s MMIO doorbell with the host tail (no shadow update).
    pub fn ring_sq(&self, qid: u16) {
        self.w32(self.drv.sq_doorbell(qid), self.sq_tail(qid));
    }

    pub fn submit(&mut self, qid: u16, sqe: Sqe) -> u16 {
        must(self.drv.submit(qid, sqe))
    }

    /// Polls CQ `cqid` for its next entry, if one arrives in time.
    pub fn try_reap(&mut self, cqid: u16, timeout: Duration) -> Option<Cqe> {
        must(self.drv.try_reap(cqid, timeout))
    }

    pub fn reap(&mut self, cqid: u16) -> Cqe {
        self.try_reap(cqid, TIMEOUT)
            .unwrap_or_else(|| panic!("no completion on CQ {cqid} within {TIMEOUT:?}"))
    }

    /// Submits and waits for the completion of that command.
    pub fn cmd(&mut self, qid: u16, sqe: Sqe) -> Cqe {
        must(self.drv.cmd(qid, sqe))
    }

    pub fn admin(&mut self, sqe: Sqe) -> Cqe {
        self.cmd(0, sqe)
    }

    pub fn create_cq(&mut self, qid: u16, size: u32, base: u64, vector: u16, ien: bool) -> Cqe {
        must(self.drv.create_cq(qid, size, base, vector, ien))
    }

    pub fn create_sq(&mut self, qid: u16, size: u32, base: u64, cqid: u16) -> Cqe {
        must(self.drv.create_sq(qid, size, base, cqid))
    }

    /// Creates I/O queue pair `qid` (SQ and CQ share the id) with `size` entries.
    pub fn io_pair(&mut self, qid: u16, size: u32) {
        let base = 0x200000 + qid as u64 * 0x20000;
        assert!(self.create_cq(qid, size, base, qid, true).ok());
        assert!(self.create_sq(qid, size, base + 0x10000, qid).ok());
    }

    /// Identify into [`BUF`] (filled with 0xee first, so untouched bytes show).
    pub fn identify(&mut self, cns: u8, nsid: u32, csi: u8) -> (Cqe, Vec<u8>) {
        self.fill(BUF, 4096, 0xee);
        must(self.drv.identify(cns, nsid, csi, BUF))
    }

    pub fn fill(&self, addr: u64, len: usize, byte: u8) {
        must(self.drv.fill(addr, len, byte));
    }

    pub fn write_mem(&self, addr: u64, data: &[u8]) {
        must(self.drv.write_mem(addr, data));
    }

    pub fn read_mem(&self, addr: u64, len: usize) -> Vec<u8> {
        must(self.drv.read_mem(addr, len))
    }

    /// Reads bytes straight from namespace `nsid`'s store.
    pub fn store_bytes(&self, nsid: u32, off: u64, len: usize) -> Vec<u8> {
        let mut b = vec![0u8; len];
        self.ctrl
            .namespace(nsid)
            .unwrap()
            .store()
            .read(off, &mut b)
            .unwrap();
        b
    }
}

pub(crate) mod admin;
pub(crate) mod copy;
mod io;
mod ns_mgmt;
mod pi;
mod poll;
mod zoned;

#[test]
fn controller_is_shareable_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Controller>();
    assert_send_sync::<Namespace>();
}
