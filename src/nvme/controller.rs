//! The controller: BAR0 register side effects (enable, disable, shutdown, reset), the
//! queue table, doorbell dispatch and the per-submission-queue workers that hand each
//! command to the admin or I/O handlers and post its completion.
//!
//! Locking: the queue table is a read-write lock taken for writing only by queue
//! creation/deletion and resets; doorbells take it for reading and touch one queue.
//! Each SQ has its own worker and wake-up; each CQ has its own ring lock. CC transitions
//! are serialised by `cc_lock`, which no worker ever takes.
//!
//! Experiment hooks (see [`super::experiment`]): a worker checks the installed faults
//! before running an I/O command, counts and reports each completion after posting it,
//! and hands a completion the latency model delays to the controller's timer thread
//! (`timer.rs`) instead of posting it. The timer posts under the SQ's post gate, so
//! once a queue deletion or reset has stopped the SQ, none of its delayed completions is
//! posted; the reset then drops them from the timer.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use vm_memory::GuestAddressSpace;

use super::admin::{self, AerDue, AerState, Features};
use super::io;
use super::names::io_kind;
use super::prp::Mem;
use super::queue::{Completion, CompletionQueue, PostError, Shadow, SubmissionQueue};
use super::regs::{split_write, Regs, REGS_SIZE};
use super::spec::{admin_op, cc, csts, reg, status, Status, PAGE_SIZE};
use super::timer::Timer;
use super::{GuestMemory, InterruptSink, Namespace};
use crate::config::ControllerConfig;
use crate::hooks::{AdminKey, Completed, CopyDone, Hooks, Op, OpKind, RangeRecord, Transport};

pub(crate) use crate::sync::lock;
use crate::sync::{read, write};

/// What a command handler decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Post a completion with this status and Dword 0.
    Complete { status: Status, dw0: u32 },
    /// Completed later by someone else (Asynchronous Event Request).
    Deferred,
}

impl Outcome {
    pub fn ok(dw0: u32) -> Outcome {
        Outcome::Complete {
            status: status::SUCCESS,
            dw0,
        }
    }
    pub fn err(status: Status) -> Outcome {
        Outcome::Complete { status, dw0: 0 }
    }
}

impl From<Status> for Outcome {
    fn from(status: Status) -> Outcome {
        Outcome::Complete { status, dw0: 0 }
    }
}

impl From<Result<u32, Status>> for Outcome {
    fn from(r: Result<u32, Status>) -> Outcome {
        match r {
            Ok(dw0) => Outcome::ok(dw0),
            Err(s) => Outcome::err(s),
        }
    }
}

/// What a connected client gave us.
#[derive(Clone)]
struct Link {
    mem: GuestMemory,
    irq: Arc<dyn InterruptSink>,
}

/// Live queues. Index = queue id.
pub(crate) struct QueueTable {
    enabled: bool,
    sqs: Vec<Option<Arc<SubmissionQueue>>>,
    cqs: Vec<Option<Arc<CompletionQueue>>>,
    /// Doorbell Buffer Config: (shadow doorbell base, EventIdx base).
    dbbuf: Option<(u64, u64)>,
}

impl QueueTable {
    fn new(n: usize) -> QueueTable {
        QueueTable {
            enabled: false,
            sqs: vec![None; n],
            cqs: vec![None; n],
            dbbuf: None,
        }
    }
}

/// Counters reported in the SMART / Health log.
#[derive(Default)]
pub(crate) struct Stats {
    pub bytes_read: AtomicU64,
    pub bytes_written: AtomicU64,
    pub read_commands: AtomicU64,
    pub write_commands: AtomicU64,
}

/// Parameters of Create I/O Completion Queue.
pub(crate) struct CqParams {
    pub qid: u16,
    pub size: u32,
    pub base: u64,
    pub contiguous: bool,
    pub ien: bool,
    pub vector: u16,
}

/// Parameters of Create I/O Submission Queue.
pub(crate) struct SqParams {
    pub qid: u16,
    pub size: u32,
    pub base: u64,
    pub contiguous: bool,
    pub cqid: u16,
}

/// State shared by the controller handle and its workers.
pub(crate) struct Inner {
    pub cfg: ControllerConfig,
    namespaces: RwLock<BTreeMap<u32, Arc<Namespace>>>,
    regs: Mutex<Regs>,
    csts: AtomicU32,
    cc_lock: Mutex<()>,
    link: RwLock<Option<Link>>,
    queues: RwLock<QueueTable>,
    pub features: Mutex<Features>,
    /// Host Behavior Support CDFE after a reset (`--ctrl cdfe`, `set-host-behavior`).
    pub reset_cdfe: AtomicU16,
    pub aer: Mutex<AerState>,
    /// Volatile Write Cache enabled (feature 6); when off every write is made durable.
    pub write_cache: AtomicBool,
    pub stats: Stats,
    pub started: Instant,
    /// Experiment control: faults, latencies, counters and records (outside the model).
    pub hooks: Arc<dyn Hooks>,
    /// Posts the completions the latency model delays.
    timer: Timer,
}

/// A completion held back by the latency model.
pub(crate) struct Delayed {
    sq: Arc<SubmissionQueue>,
    cq: Arc<CompletionQueue>,
    mem: GuestMemory,
    status: Status,
    dw0: u32,
    done: Completed,
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
        for ns in namespaces {
            let nsid = ns.nsid;
            if map.insert(nsid, Arc::new(ns)).is_some() {
                log::warn!("namespace {nsid} given twice; the last one wins");
            }
        }
        let nq = cfg.max_ioqpairs as usize + 1;
        let started = Instant::now();
        Arc::new(Controller {
            inner: Arc::new(Inner {
                cfg: cfg.clone(),
                namespaces: RwLock::new(map),
                regs: Mutex::new(Regs::new(cfg)),
                csts: AtomicU32::new(0),
                cc_lock: Mutex::new(()),
                link: RwLock::new(None),
                queues: RwLock::new(QueueTable::new(nq)),
                features: Mutex::new(Features::new(cfg, cfg.cdfe)),
                reset_cdfe: AtomicU16::new(cfg.cdfe),
                aer: Mutex::new(AerState::default()),
                write_cache: AtomicBool::new(true),
                stats: Stats::default(),
                started,
                hooks,
                timer: Timer::default(),
            }),
        })
    }

    /// Size of BAR0 (registers + doorbells), a power of two.
    pub fn bar0_size(&self) -> u64 {
        let doorbells = 8 * (self.inner.cfg.max_ioqpairs as u64 + 1);
        (REGS_SIZE + doorbells).next_power_of_two().max(0x4000)
    }

    /// MSI-X vectors: one for the admin queue and one per I/O queue.
    pub fn msix_vectors(&self) -> u16 {
        self.inner.cfg.max_ioqpairs + 1
    }

    /// A client arrived: guest memory and interrupts become available. Any previous
    /// client's state is reset first.
    pub fn connect(&self, mem: GuestMemory, irq: Arc<dyn InterruptSink>) {
        let _g = lock(&self.inner.cc_lock);
        self.inner.full_reset();
        *write(&self.inner.link) = Some(Link { mem, irq });
    }

    /// The client left: stop every queue, reset the controller, forget its memory.
    pub fn disconnect(&self) {
        let _g = lock(&self.inner.cc_lock);
        self.inner.full_reset();
        *write(&self.inner.link) = None;
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
                self.inner.doorbell(off - reg::DOORBELL_BASE, v);
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
        self.inner.namespace_changed(nsid);
    }

    /// The namespace with this id, if attached.
    pub fn namespace(&self, nsid: u32) -> Option<Arc<Namespace>> {
        self.inner.namespace(nsid)
    }

    /// Copy Descriptor Formats Enable now (Host Behavior Support, as the host or the
    /// device's configuration last set it).
    pub fn copy_formats_enabled(&self) -> u16 {
        lock(&self.inner.features).cdfe()
    }

    /// CSTS as the host would read it.
    pub fn csts(&self) -> u32 {
        self.inner.csts.load(Ordering::Acquire)
    }

    /// Completions held back by the latency model, not yet posted.
    pub fn delayed_completions(&self) -> usize {
        self.inner.timer.pending()
    }

    pub(crate) fn inner(&self) -> &Arc<Inner> {
        &self.inner
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _g = lock(&self.inner.cc_lock);
        self.inner.full_reset();
        self.inner.timer.shutdown();
    }
}

impl Inner {
    /// The namespace with this id, if attached (any I/O command may look up any nsid).
    pub fn namespace(&self, nsid: u32) -> Option<Arc<Namespace>> {
        read(&self.namespaces).get(&nsid).cloned()
    }

    /// All attached namespaces, by increasing nsid.
    pub fn namespaces(&self) -> Vec<Arc<Namespace>> {
        read(&self.namespaces).values().cloned().collect()
    }

    /// Identify Controller NN: the largest valid nsid.
    pub fn nn(&self) -> u32 {
        let max = read(&self.namespaces)
            .keys()
            .next_back()
            .copied()
            .unwrap_or(0);
        max.max(256)
    }

    fn irq(&self) -> Option<Arc<dyn InterruptSink>> {
        read(&self.link).as_ref().map(|l| l.irq.clone())
    }

    fn fatal(&self, why: &str) {
        log::error!("controller fatal status: {why}");
        self.csts.fetch_or(csts::CFS, Ordering::AcqRel);
    }

    /// Posts a completion on `cq` and raises its interrupt. True if it was posted.
    /// `report` runs once the entry is posted and before the interrupt, so counters and
    /// traces already hold a command when the host learns that it completed.
    pub fn complete(
        &self,
        mem: &Mem,
        cq: &CompletionQueue,
        c: &Completion,
        cancelled: &dyn Fn() -> bool,
        report: impl FnOnce(),
    ) -> bool {
        self.posted(cq, cq.post(mem, c, cancelled), report)
    }

    /// Reports a posted completion and raises its interrupt; handles a failed post.
    fn posted(
        &self,
        cq: &CompletionQueue,
        r: Result<(), PostError>,
        report: impl FnOnce(),
    ) -> bool {
        match r {
            Ok(()) => {
                report();
                if cq.ien {
                    if let Some(irq) = self.irq() {
                        irq.raise(cq.vector);
                    }
                }
                true
            }
            Err(PostError::Stopped | PostError::Full) => false,
            Err(PostError::Fault) => {
                self.fatal("completion queue is outside guest memory");
                false
            }
        }
    }

    /// Posts a completion for an admin command completed outside the admin worker (AER).
    pub(crate) fn complete_admin(&self, due: AerDue, st: Status) {
        let AerDue { cid, dw0, since } = due;
        let (cq, sqhd) = {
            let t = read(&self.queues);
            match (t.cqs.first(), t.sqs.first()) {
                (Some(Some(cq)), Some(Some(sq))) => (cq.clone(), sq.head() as u16),
                _ => return,
            }
        };
        let Some(link) = read(&self.link).clone() else {
            return;
        };
        let mem = link.mem.memory();
        let done = Completed {
            transport: Transport::Nvme,
            kind: OpKind::Admin,
            queue: 0,
            tag: cid,
            opcode: admin_op::ASYNC_EVENT_REQUEST,
            nsid: 0,
            block: None,
            copy: None,
            admin: None,
            status: st.0,
            dw0,
            fetched: Some(since),
        };
        self.complete(
            &mem,
            &cq,
            &Completion {
                dw0,
                dw1: 0,
                sqhd,
                sqid: 0,
                cid,
                status: st,
            },
            &|| false,
            || self.hooks.completed(done),
        );
    }

    fn namespace_changed(&self, nsid: u32) {
        let aec = lock(&self.features).aec;
        let deliveries = lock(&self.aer).namespace_changed(nsid, aec);
        for d in deliveries {
            self.complete_admin(d, status::SUCCESS);
        }
    }

    fn doorbell(&self, rel: u64, v: u32) {
        if !rel.is_multiple_of(4) {
            return;
        }
        let idx = rel / 4;
        let Ok(qid) = usize::try_from(idx / 2) else {
            return;
        };
        let t = read(&self.queues);
        if idx.is_multiple_of(2) {
            match t.sqs.get(qid) {
                Some(Some(sq)) => {
                    if !sq.ring(v) {
                        log::warn!("SQ {qid}: invalid tail doorbell value {v}");
                    }
                }
                _ => log::debug!("doorbell for missing SQ {qid}"),
            }
        } else {
            match t.cqs.get(qid) {
                Some(Some(cq)) => {
                    if !cq.ring_head(v) {
                        log::warn!("CQ {qid}: invalid head doorbell value {v}");
                    }
                }
                _ => log::debug!("doorbell for missing CQ {qid}"),
            }
        }
    }

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
                Err(why) => log::warn!("controller enable failed: {why}"),
            }
        } else if was && !now {
            self.controller_reset();
            self.csts.store(0, Ordering::Release);
            lock(&self.regs).intms = 0;
        }
        if cc::shn(v) != 0 && cc::shn(old) == 0 {
            for ns in self.namespaces() {
                if let Err(e) = ns.volume().flush() {
                    log::error!("namespace {}: flush at shutdown failed: {e}", ns.nsid);
                }
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
        let link = read(&self.link)
            .clone()
            .ok_or_else(|| "no client is connected".to_string())?;
        if cc::css(r.cc) != 0 {
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
        if cc::iosqes(r.cc) != 0 && cc::iosqes(r.cc) != 6 {
            return Err("CC.IOSQES must be 6".into());
        }
        if cc::iocqes(r.cc) != 0 && cc::iocqes(r.cc) != 4 {
            return Err("CC.IOCQES must be 4".into());
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
        let cq = Arc::new(CompletionQueue::new(0, r.acq, acqs, 0, true));
        let sq = Arc::new(SubmissionQueue::new(0, 0, r.asq, asqs));
        let mut t = write(&self.queues);
        t.enabled = true;
        t.cqs[0] = Some(cq.clone());
        t.sqs[0] = Some(sq.clone());
        self.spawn_worker(&sq, cq, link);
        Ok(())
    }

    fn spawn_worker(
        self: &Arc<Self>,
        sq: &Arc<SubmissionQueue>,
        cq: Arc<CompletionQueue>,
        link: Link,
    ) {
        let inner = self.clone();
        let sq2 = sq.clone();
        let h = std::thread::Builder::new()
            .name(format!("vnvme-sq{}", sq.id))
            .spawn(move || inner.run_sq(&sq2, &cq, &link.mem));
        match h {
            Ok(h) => sq.set_worker(h),
            Err(e) => self.fatal(&format!("cannot start a queue worker: {e}")),
        }
    }

    /// A submission queue worker: sleeps until the doorbell rings, then runs every
    /// command between head and tail.
    fn run_sq(
        self: &Arc<Self>,
        sq: &Arc<SubmissionQueue>,
        cq: &Arc<CompletionQueue>,
        mem: &GuestMemory,
    ) {
        while sq.wait() {
            loop {
                if sq.stopped() {
                    return;
                }
                let m = mem.memory();
                if sq.head() == sq.tail(&m) {
                    if sq.arm_event_idx(&m) {
                        continue;
                    }
                    break;
                }
                // The clock is read only for the records of an installed observer.
                let fetched = self.hooks.observing().then(Instant::now);
                let Some(sqe) = sq.fetch(&m) else {
                    self.fatal(&format!("SQ {} is outside guest memory", sq.id));
                    return;
                };
                let mut done = completed_of(sq.id, &sqe, fetched);
                let outcome = if sq.id == 0 {
                    admin::execute(self, &m, &sqe)
                } else {
                    let (outcome, copy) = io::execute(self, &m, &sqe);
                    done.copy = copy.map(|c| copy_done(&c, sqe.nsid));
                    outcome
                };
                if let Outcome::Complete { status, dw0 } = outcome {
                    if !status.is_success() {
                        log::debug!(
                            "SQ {} cid {} opcode {:#x}: status {:#x}",
                            sq.id,
                            sqe.cid,
                            sqe.opcode,
                            status.0
                        );
                    }
                    let delay = if sq.id == 0 {
                        None
                    } else {
                        let op = Op {
                            transport: Transport::Nvme,
                            kind: done.kind,
                            opcode: sqe.opcode,
                            nsid: sqe.nsid,
                        };
                        self.hooks.delay(&op, done.delay_blocks())
                    };
                    if let Some(d) = delay {
                        let job = Delayed {
                            sq: sq.clone(),
                            cq: cq.clone(),
                            mem: mem.clone(),
                            status,
                            dw0,
                            done,
                        };
                        self.timer
                            .schedule(self, Instant::now() + d, job, Inner::post_delayed);
                        continue;
                    }
                    self.complete(
                        &m,
                        cq,
                        &Completion {
                            dw0,
                            dw1: 0,
                            sqhd: sq.head() as u16,
                            sqid: sq.id,
                            cid: sqe.cid,
                            status,
                        },
                        &|| sq.stopped(),
                        || {
                            done.status = status.0;
                            done.dw0 = dw0;
                            self.hooks.completed(done)
                        },
                    );
                }
            }
        }
    }

    /// Posts a delayed completion (on the timer thread), unless its submission queue was
    /// deleted or reset meanwhile. SQ Head is the head now. Returns the job if the
    /// completion queue is full, to be tried again.
    fn post_delayed(self: &Arc<Self>, job: Delayed) -> Option<Delayed> {
        let r = job.sq.unless_stopped(|| {
            let m = job.mem.memory();
            let c = Completion {
                dw0: job.dw0,
                dw1: 0,
                sqhd: job.sq.head() as u16,
                sqid: job.sq.id,
                cid: job.done.tag,
                status: job.status,
            };
            job.cq.try_post(&m, &c)
        });
        match r {
            None => None,
            Some(Err(PostError::Full)) => Some(job),
            Some(r) => {
                let Delayed {
                    done, status, dw0, ..
                } = job;
                let mut done = done;
                done.status = status.0;
                done.dw0 = dw0;
                self.posted(&job.cq, r, || self.hooks.completed(done));
                None
            }
        }
    }

    /// Deletes every queue and stops every worker (CC.EN 1 -> 0). Namespaces stay.
    fn controller_reset(&self) {
        let (sqs, cqs) = {
            let mut t = write(&self.queues);
            t.enabled = false;
            t.dbbuf = None;
            let sqs: Vec<_> = t.sqs.iter_mut().filter_map(Option::take).collect();
            let cqs: Vec<_> = t.cqs.iter_mut().filter_map(Option::take).collect();
            (sqs, cqs)
        };
        for cq in &cqs {
            cq.stop();
        }
        for sq in &sqs {
            sq.stop_and_join();
        }
        self.timer.purge(|j| j.sq.stopped());
        lock(&self.aer).reset();
        *lock(&self.features) = self.reset_features();
        self.write_cache.store(true, Ordering::Release);
    }

    /// Controller reset plus registers back to their power-on values.
    fn full_reset(&self) {
        self.controller_reset();
        lock(&self.regs).reset();
        self.csts.store(0, Ordering::Release);
    }

    /// Feature values as a reset leaves them.
    pub(crate) fn reset_features(&self) -> Features {
        Features::new(&self.cfg, self.reset_cdfe.load(Ordering::Acquire))
    }

    /// Largest queue size in entries (CAP.MQES + 1).
    fn max_queue_entries(&self) -> u32 {
        lock(&self.regs).max_queue_entries()
    }

    /// The checks Create I/O CQ and Create I/O SQ share, in the order both apply them:
    /// queue id (free and in range), size, alignment, physically contiguous.
    fn check_new_queue(
        &self,
        qid: u16,
        size: u32,
        base: u64,
        contiguous: bool,
        exists: impl Fn(usize) -> bool,
    ) -> Result<(), Status> {
        let max_q = self.cfg.max_ioqpairs as usize;
        if qid == 0 || qid as usize > max_q || exists(qid as usize) {
            return Err(status::INVALID_QUEUE_ID.dnr());
        }
        if size < 2 || size > self.max_queue_entries() {
            return Err(status::INVALID_QUEUE_SIZE.dnr());
        }
        if !base.is_multiple_of(PAGE_SIZE) {
            return Err(status::INVALID_PRP_OFFSET.dnr());
        }
        if !contiguous {
            return Err(status::INVALID_FIELD.dnr());
        }
        Ok(())
    }

    pub fn create_cq(self: &Arc<Self>, p: &CqParams) -> Result<(), Status> {
        let mut t = write(&self.queues);
        if !t.enabled {
            return Err(status::COMMAND_SEQUENCE_ERROR.dnr());
        }
        let exists = |q: usize| t.cqs[q].is_some();
        self.check_new_queue(p.qid, p.size, p.base, p.contiguous, exists)?;
        if p.vector as u32 > self.cfg.max_ioqpairs as u32 {
            return Err(status::INVALID_INTERRUPT_VECTOR.dnr());
        }
        let cq = Arc::new(CompletionQueue::new(p.qid, p.base, p.size, p.vector, p.ien));
        if let Some((db, ei)) = t.dbbuf {
            let sh = Shadow::for_queue(db, ei, p.qid, true);
            if let Some(link) = read(&self.link).as_ref() {
                sh.init(&link.mem.memory(), 0, 0);
            }
            cq.set_shadow(Some(sh));
        }
        t.cqs[p.qid as usize] = Some(cq);
        Ok(())
    }

    pub fn create_sq(self: &Arc<Self>, p: &SqParams) -> Result<(), Status> {
        let link = read(&self.link).clone();
        let mut t = write(&self.queues);
        if !t.enabled {
            return Err(status::COMMAND_SEQUENCE_ERROR.dnr());
        }
        let Some(link) = link else {
            return Err(status::COMMAND_SEQUENCE_ERROR.dnr());
        };
        let cq = match t.cqs.get(p.cqid as usize) {
            Some(Some(cq)) if p.cqid != 0 => cq.clone(),
            _ => return Err(status::COMPLETION_QUEUE_INVALID.dnr()),
        };
        let exists = |q: usize| t.sqs[q].is_some();
        self.check_new_queue(p.qid, p.size, p.base, p.contiguous, exists)?;
        let sq = Arc::new(SubmissionQueue::new(p.qid, p.cqid, p.base, p.size));
        if let Some((db, ei)) = t.dbbuf {
            let sh = Shadow::for_queue(db, ei, p.qid, false);
            sh.init(&link.mem.memory(), 0, 0);
            sq.set_shadow(Some(sh));
        }
        t.sqs[p.qid as usize] = Some(sq.clone());
        self.spawn_worker(&sq, cq, link);
        Ok(())
    }

    pub fn delete_sq(&self, qid: u16) -> Result<(), Status> {
        let sq = {
            let mut t = write(&self.queues);
            match t.sqs.get_mut(qid as usize) {
                Some(slot @ Some(_)) if qid != 0 => slot.take(),
                _ => return Err(status::INVALID_QUEUE_ID.dnr()),
            }
        };
        if let Some(sq) = sq {
            sq.stop_and_join();
            self.timer.purge(|j| j.sq.stopped());
        }
        Ok(())
    }

    pub fn delete_cq(&self, qid: u16) -> Result<(), Status> {
        let mut t = write(&self.queues);
        if qid == 0 || !matches!(t.cqs.get(qid as usize), Some(Some(_))) {
            return Err(status::INVALID_QUEUE_ID.dnr());
        }
        if t.sqs.iter().flatten().any(|sq| sq.cqid == qid) {
            return Err(status::INVALID_QUEUE_DELETION.dnr());
        }
        if let Some(cq) = t.cqs[qid as usize].take() {
            cq.stop();
        }
        Ok(())
    }

    /// Doorbell Buffer Config: I/O queues (existing and future) read their doorbells from
    /// the shadow buffer and publish EventIdx. The admin queue keeps MMIO doorbells, as
    /// drivers (Linux among them) do not update its shadow entries.
    pub fn set_dbbuf(&self, mem: &Mem, db: u64, ei: u64) -> Result<(), Status> {
        // Both buffers hold one 8-byte entry pair per queue and must not wrap around.
        let span = 8 * (self.cfg.max_ioqpairs as u64 + 1);
        let ok = |a: u64| a != 0 && a.is_multiple_of(PAGE_SIZE) && a.checked_add(span).is_some();
        if !ok(db) || !ok(ei) {
            return Err(status::INVALID_FIELD.dnr());
        }
        let mut t = write(&self.queues);
        t.dbbuf = Some((db, ei));
        for sq in t.sqs.iter().flatten().filter(|q| q.id != 0) {
            let sh = Shadow::for_queue(db, ei, sq.id, false);
            let tail = sq.doorbell();
            sh.init(mem, tail, tail);
            sq.set_shadow(Some(sh));
        }
        for cq in t.cqs.iter().flatten().filter(|q| q.id != 0) {
            let sh = Shadow::for_queue(db, ei, cq.id, true);
            let head = cq.pointers().0;
            sh.init(mem, head, head);
            cq.set_shadow(Some(sh));
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "controller_tests.rs"]
mod tests;

/// The record of a fetched command, before it runs (status and Dword 0 filled in when
/// it completes).
fn completed_of(qid: u16, sqe: &super::spec::Sqe, fetched: Option<Instant>) -> Completed {
    use super::spec::io_op;
    let kind = if qid == 0 {
        OpKind::Admin
    } else {
        io_kind(sqe.opcode)
    };
    let block = (qid != 0
        && matches!(
            sqe.opcode,
            io_op::READ | io_op::WRITE | io_op::WRITE_ZEROES | io_op::COMPARE | io_op::VERIFY
        ))
    .then(|| (sqe.slba(), sqe.nlb() as u32));
    Completed {
        transport: Transport::Nvme,
        kind,
        queue: qid,
        tag: sqe.cid,
        opcode: sqe.opcode,
        nsid: sqe.nsid,
        block,
        copy: None,
        admin: if qid == 0 { admin_key(sqe) } else { None },
        status: 0,
        dw0: 0,
        fetched,
    }
}

/// The key of an admin command, if its opcode has one.
fn admin_key(sqe: &super::spec::Sqe) -> Option<AdminKey> {
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

/// What a Copy did, as the hooks see it (source namespace filled in for format 0/1).
fn copy_done(c: &super::copy::CopyDone, nsid: u32) -> CopyDone {
    CopyDone {
        sdlba: c.sdlba,
        format: c.format,
        nr: c.nr,
        ranges: c
            .ranges
            .iter()
            .map(|r| RangeRecord {
                nsid: r.snsid.unwrap_or(nsid),
                slba: r.slba,
                nlb: r.nlb as u32,
            })
            .collect(),
        blocks_copied: c.blocks_copied,
    }
}
