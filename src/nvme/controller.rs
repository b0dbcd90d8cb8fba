//! The controller: BAR0 register side effects (enable, disable, shutdown, reset) and the
//! dispatch of each fetched command to the admin or I/O handlers. The state the
//! handlers share is in [`super::state`]; queues, workers and posting in
//! [`super::queues`].
//!
//! Locking: CC transitions are serialised by `cc_lock`, which no worker ever takes.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use super::admin;
use super::cmd::{decode_admin, decode_io};
use super::doorbell_page::DoorbellMemory;
use super::io::{self, InFlight};
use super::prp::Mem;
use super::queues::{Executor, Link, Outcome, Queues};
use super::regs::{split_write, Regs, REGS_SIZE};
use super::spec::{cc, csts, reg, Sqe, PAGE_SIZE};
use super::state::Shared;
use super::ControllerConfig;
use super::{GuestMemory, InterruptSink, Namespace};
use crate::hooks::{Completed, Hooks, Op, Transport};
use crate::sync::lock;

/// The register side of the controller, over the state its handlers share.
pub(crate) struct Inner {
    shared: Arc<Shared>,
    regs: Mutex<Regs>,
    csts: Arc<AtomicU32>,
    cc_lock: Mutex<()>,
}

/// The NVMe controller model.
pub struct Controller {
    inner: Arc<Inner>,
}

impl Controller {
    pub fn new(
        cfg: &ControllerConfig,
        namespaces: Vec<Namespace>,
        hooks: Arc<dyn Hooks>,
    ) -> Arc<Controller> {
        let mut map = BTreeMap::new();
        let formats: Arc<[super::namespace::LbaFormat]> = Arc::from(cfg.lbafs.clone());
        for ns in namespaces {
            let nsid = ns.nsid;
            if map
                .insert(nsid, Arc::new(ns.with_formats(&formats)))
                .is_some()
            {
                log::warn!("namespace {nsid} given twice; the last one wins");
            }
        }
        let regs = Regs::new(cfg);
        let csts = Arc::new(AtomicU32::new(0));
        let queues = Queues::new(
            cfg.max_ioqpairs,
            regs.max_queue_entries(),
            hooks.clone(),
            csts.clone(),
            std::time::Duration::from_micros(cfg.poll_us as u64),
        );
        let shared = Arc::new(Shared::new(cfg, map, hooks, Arc::new(queues)));
        Arc::new(Controller {
            inner: Arc::new(Inner {
                shared,
                regs: Mutex::new(regs),
                csts,
                cc_lock: Mutex::new(()),
            }),
        })
    }

    /// Size of BAR0 (registers + doorbells), a power of two.
    pub fn bar0_size(&self) -> u64 {
        let doorbells = 8 * (self.inner.shared.cfg.max_ioqpairs as u64 + 1);
        (REGS_SIZE + doorbells).next_power_of_two().max(0x4000)
    }

    /// MSI-X vectors: one for the admin queue and one per I/O queue.
    pub fn msix_vectors(&self) -> u16 {
        self.inner.shared.cfg.max_ioqpairs + 1
    }

    /// A client arrived: guest memory and interrupts become available. Any previous
    /// client's state is reset first.
    pub fn connect(&self, mem: GuestMemory, irq: Arc<dyn InterruptSink>) {
        self.connect_with_doorbells(mem, irq, None);
    }

    /// As [`Controller::connect`], and the client maps the doorbell registers: the
    /// queues take the host's doorbell values from `doorbells` (trapped writes still
    /// work) and their workers poll it (`--ctrl poll_us`, docs/configuration.md).
    pub fn connect_with_doorbells(
        &self,
        mem: GuestMemory,
        irq: Arc<dyn InterruptSink>,
        doorbells: Option<Arc<dyn DoorbellMemory>>,
    ) {
        let _g = lock(&self.inner.cc_lock);
        self.inner.full_reset();
        if let Some(db) = &doorbells {
            super::doorbell_page::clear(&**db);
        }
        let link = Link {
            mem,
            irq,
            doorbells,
        };
        self.inner.shared.queues.set_link(Some(link));
    }

    /// The client left: stop every queue, reset the controller, forget its memory.
    pub fn disconnect(&self) {
        let _g = lock(&self.inner.cc_lock);
        self.inner.full_reset();
        self.inner.shared.queues.set_link(None);
    }

    /// Whether the controller may master the bus (PCI Command register bit 2, Bus Master
    /// Enable, kept by the transport; on by default for transports without one). While
    /// it is off no queue fetches a command or posts one it has not started; a command
    /// already running finishes. Turning it on lets the queues go on.
    pub fn set_bus_master(&self, on: bool) {
        self.inner.shared.queues.set_bus_master(on);
    }

    /// Function-level reset: queues deleted, registers and features back to defaults.
    pub fn reset(&self) {
        let _g = lock(&self.inner.cc_lock);
        self.inner.full_reset();
    }

    pub fn mmio_read(&self, offset: u64, data: &mut [u8]) {
        let csts = self.inner.csts.load(Ordering::Acquire);
        lock(&self.inner.regs).read(csts, offset, data);
    }

    pub fn mmio_write(&self, offset: u64, data: &[u8]) {
        let writes = split_write(offset, data);
        if writes.is_empty() {
            log::debug!("ignoring BAR0 write of {} bytes at {offset:#x}", data.len());
        }
        for (off, v) in writes {
            if off >= reg::DOORBELL_BASE {
                let shared = &self.inner.shared;
                if let Err(info) = shared.queues.doorbell(off - reg::DOORBELL_BASE, v) {
                    shared.error_event(info);
                }
            } else {
                self.register_write(off, v);
            }
        }
    }

    fn register_write(&self, off: u64, v: u32) {
        let inner = &self.inner;
        match off {
            reg::INTMS => lock(&inner.regs).intms |= v,
            reg::INTMC => lock(&inner.regs).intms &= !v,
            reg::CC => {
                let _g = lock(&inner.cc_lock);
                inner.write_cc(v);
            }
            _ => {
                if !lock(&inner.regs).store_plain(off, v) {
                    log::debug!("ignoring write {v:#x} to read-only register {off:#x}");
                }
            }
        }
    }

    /// Posts a Namespace Attribute Changed asynchronous event for `nsid` (recorded in the
    /// Changed Namespace List log; delivered if the host enabled the notice).
    pub fn notify_namespace_changed(&self, nsid: u32) {
        self.inner.shared.namespace_changed(nsid);
    }

    /// The namespace with this id, if attached.
    pub fn namespace(&self, nsid: u32) -> Option<Arc<Namespace>> {
        self.inner.shared.namespace(nsid)
    }

    /// Copy Descriptor Formats Enable now (Host Behavior Support, as the host or the
    /// device's configuration last set it).
    pub fn copy_formats_enabled(&self) -> u16 {
        lock(&self.inner.shared.features).cdfe()
    }

    /// CSTS as the host would read it.
    pub fn csts(&self) -> u32 {
        self.inner.csts.load(Ordering::Acquire)
    }

    /// Completions held back by the latency model, not yet posted.
    pub fn delayed_completions(&self) -> usize {
        self.inner.shared.queues.delayed()
    }

    /// The state the handlers share (for the run-time knobs in `tuning.rs`).
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.inner.shared
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _g = lock(&self.inner.cc_lock);
        self.inner.full_reset();
        self.inner.shared.queues.shutdown();
        for (ns, _) in self.inner.shared.namespaces.all_allocated() {
            let _ = ns.save_zones();
        }
    }
}

impl Inner {
    fn write_cc(self: &Arc<Self>, v: u32) {
        let old = {
            let mut r = lock(&self.regs);
            let old = r.cc;
            r.cc = v;
            old
        };
        let was = old & cc::EN != 0;
        let now = v & cc::EN != 0;
        if !was && now {
            match self.enable() {
                Ok(()) => {
                    self.csts.fetch_or(csts::RDY, Ordering::AcqRel);
                }
                Err(why) => {
                    // Controller Fatal Status, as QEMU does: a host polling CSTS learns at
                    // once, instead of waiting CAP.TO for RDY.
                    log::warn!("controller enable failed: {why}");
                    self.csts.fetch_or(csts::CFS, Ordering::AcqRel);
                }
            }
        } else if was && !now {
            self.controller_reset();
            self.csts.store(0, Ordering::Release);
            lock(&self.regs).intms = 0;
        }
        if cc::shn(v) != 0 && cc::shn(old) == 0 {
            for ns in self.shared.namespaces() {
                if let Err(e) = ns.volume().flush() {
                    log::error!("namespace {}: flush at shutdown failed: {e}", ns.nsid);
                }
                let _ = ns.save_zones();
            }
            let c = self.csts.load(Ordering::Acquire);
            self.csts.store(
                (c & !csts::SHST_MASK) | csts::SHST_COMPLETE,
                Ordering::Release,
            );
        } else if cc::shn(v) == 0 && cc::shn(old) != 0 {
            self.csts.fetch_and(!csts::SHST_MASK, Ordering::AcqRel);
        }
    }

    fn enable(self: &Arc<Self>) -> Result<(), String> {
        let r = lock(&self.regs).clone();
        if self.shared.queues.link().is_none() {
            return Err("no client is connected".into());
        }
        // 000b: the NVM command set; 110b: every I/O command set CAP.CSS names.
        if cc::css(r.cc) != 0 && cc::css(r.cc) != 6 {
            return Err(format!("CC.CSS {} is not supported", cc::css(r.cc)));
        }
        if cc::mps(r.cc) != 0 {
            return Err(format!(
                "CC.MPS {} is not supported (4 KiB only)",
                cc::mps(r.cc)
            ));
        }
        if cc::ams(r.cc) != 0 {
            return Err("CC.AMS: only round robin is supported".into());
        }
        // As QEMU: the entry sizes must be the ones Identify Controller SQES/CQES allow
        // (64 and 16 bytes) when the controller is enabled, 0 included.
        if cc::iosqes(r.cc) != 6 {
            return Err(format!("CC.IOSQES {} must be 6", cc::iosqes(r.cc)));
        }
        if cc::iocqes(r.cc) != 4 {
            return Err(format!("CC.IOCQES {} must be 4", cc::iocqes(r.cc)));
        }
        if r.asq == 0
            || !r.asq.is_multiple_of(PAGE_SIZE)
            || r.acq == 0
            || !r.acq.is_multiple_of(PAGE_SIZE)
        {
            return Err("ASQ/ACQ must be non-zero and page aligned".into());
        }
        let asqs = (r.aqa & 0xfff) + 1;
        let acqs = ((r.aqa >> 16) & 0xfff) + 1;
        if asqs < 2 || acqs < 2 {
            return Err("AQA: admin queues need at least 2 entries".into());
        }
        self.shared
            .all_command_sets
            .store(cc::css(r.cc) == 6, Ordering::Release);
        let exec = Arc::new(Dispatcher(self.shared.clone()));
        self.shared
            .queues
            .enable_admin(exec, r.asq, asqs, r.acq, acqs)
    }

    /// Deletes every queue and stops every worker (CC.EN 1 -> 0). Namespaces stay.
    fn controller_reset(&self) {
        self.shared.queues.reset();
        self.shared.reset();
    }

    /// Controller reset plus registers back to their power-on values.
    fn full_reset(&self) {
        self.controller_reset();
        lock(&self.regs).reset();
        self.csts.store(0, Ordering::Release);
    }
}

/// Runs fetched commands for the queue workers: admin commands on queue 0, NVM commands
/// on the others.
struct Dispatcher(Arc<Shared>);

impl Executor for Dispatcher {
    fn execute(
        &self,
        qid: u16,
        mem: &Mem,
        sqe: &Sqe,
        done: &mut Completed,
        inflight: Option<&mut InFlight>,
    ) -> Outcome {
        if qid == 0 {
            match decode_admin(sqe) {
                Ok(cmd) => {
                    done.admin = cmd.key();
                    admin::run(&self.0, mem, &cmd)
                }
                Err(s) => Outcome::err(s),
            }
        } else {
            match decode_io(sqe) {
                Ok(cmd) => {
                    done.block = cmd.block();
                    done.zone = cmd.zone();
                    let op = Op {
                        transport: Transport::Nvme,
                        kind: cmd.kind(),
                        opcode: sqe.opcode,
                        nsid: sqe.nsid,
                    };
                    let (outcome, copy) = io::execute(&self.0.io_ctx(), mem, &cmd, &op, inflight);
                    done.copy = copy.map(|c| c.record(sqe.nsid));
                    outcome
                }
                Err(s) => Outcome::err(s),
            }
        }
    }

    fn finish(&self, mem: &Mem, sqe: &Sqe, result: std::io::Result<usize>) -> Outcome {
        match decode_io(sqe) {
            Ok(cmd) => io::finish(&self.0.io_ctx(), mem, &cmd, result),
            Err(s) => Outcome::err(s),
        }
    }

    fn doorbell_error(&self, info: u8) {
        self.0.error_event(info);
    }
}
