//! Queue lifecycle of one controller: the queue table, creation and deletion of
//! submission and completion queues (admin and I/O), shadow doorbells, doorbell
//! dispatch, one worker thread per submission queue (sleeping until its doorbell rings,
//! or polling a shared doorbell page in poll mode), and posting completions — at once
//! or, when the latency model delays them, from the delay timer.
//!
//! Locking: the queue table is a read-write lock taken for writing only by queue
//! creation/deletion and resets; doorbells take it for reading and touch one queue.
//! Each SQ has its own worker and wake-up; each CQ has its own ring lock.
//!
//! This module does not know what a command does: a worker hands each entry to an
//! [`Executor`] (the controller) and posts the outcome. It reports every posted
//! completion to the experiment hooks.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vm_memory::GuestAddressSpace;

use super::cmd::{CqParams, SqParams};
use super::doorbell_page::{self, DoorbellMemory, PageDoorbell, NAP_MAX, NAP_MIN};
use super::io::InFlight;
use super::names;
use super::prp::Mem;
use super::queue::{Completion, CompletionQueue, PostError, Shadow, SubmissionQueue};
use super::spec::{admin_op, aer, csts, status, Sqe, Status, PAGE_SIZE};
use super::timer::Timer;
use super::{GuestMemory, InterruptSink};
use crate::block::uring::{AsyncIo, Finished};
use crate::hooks::{Completed, Hooks, Op, OpKind, Transport};
use crate::sync::{lock, read, write};

/// What a command handler decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Post a completion with this status and Dwords 0 and 1.
    Complete { status: Status, dw0: u32, dw1: u32 },
    /// Completed later by someone else (Asynchronous Event Request).
    Deferred,
    /// Queued in flight in this slot of the worker's [`AsyncIo`]; the worker ends it
    /// with [`Executor::finish`] when the transfer completes.
    Queued(usize),
}

impl Outcome {
    pub fn ok(dw0: u32) -> Outcome {
        Outcome::Complete {
            status: status::SUCCESS,
            dw0,
            dw1: 0,
        }
    }
    pub fn err(status: Status) -> Outcome {
        Outcome::Complete {
            status,
            dw0: 0,
            dw1: 0,
        }
    }

    /// Success with a 64-bit result in Dwords 0 (low half) and 1 (high half).
    pub fn ok64(v: u64) -> Outcome {
        Outcome::Complete {
            status: status::SUCCESS,
            dw0: v as u32,
            dw1: (v >> 32) as u32,
        }
    }
}

impl From<Status> for Outcome {
    fn from(status: Status) -> Outcome {
        Outcome::err(status)
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

/// Runs the commands a worker fetches (the controller implements it).
pub(crate) trait Executor: Send + Sync + 'static {
    /// Runs one command from submission queue `qid`. `done` is its record, to be filled
    /// with what the command did (the worker adds status and Dword 0). With `inflight`
    /// the command may be queued there (`Outcome::Queued`) instead of run to its end.
    fn execute(
        &self,
        qid: u16,
        mem: &Mem,
        sqe: &Sqe,
        done: &mut Completed,
        inflight: Option<&mut InFlight>,
    ) -> Outcome;

    /// Ends a command that was queued in flight, given the kernel's result.
    fn finish(&self, mem: &Mem, sqe: &Sqe, result: std::io::Result<usize>) -> Outcome;

    /// The host stored an invalid doorbell value in the doorbell page (poll mode):
    /// report the Error event `info`, as for a trapped write.
    fn doorbell_error(&self, info: u8);
}

/// Most commands a worker fetches in one pass; after each pass it posts what finished
/// and raises the completion queue's interrupt once (if it posted anything).
const BATCH: usize = 16;

/// A command queued in flight: its entry and its record.
struct Pending {
    sqe: Sqe,
    done: Completed,
}

/// What a connected client gave us.
#[derive(Clone)]
pub(crate) struct Link {
    pub mem: GuestMemory,
    pub irq: Arc<dyn InterruptSink>,
    /// The doorbell page the client maps (poll mode), if the transport offers one.
    pub doorbells: Option<Arc<dyn DoorbellMemory>>,
}

/// Live queues. Index = queue id.
struct QueueTable {
    enabled: bool,
    sqs: Vec<Option<Arc<SubmissionQueue>>>,
    cqs: Vec<Option<Arc<CompletionQueue>>>,
    /// Doorbell Buffer Config: (shadow doorbell base, EventIdx base).
    dbbuf: Option<(u64, u64)>,
}

/// A completion held back by the latency model.
pub(crate) struct Delayed {
    sq: Arc<SubmissionQueue>,
    cq: Arc<CompletionQueue>,
    mem: GuestMemory,
    done: Completed,
}

/// The queues of one controller.
pub(crate) struct Queues {
    table: std::sync::RwLock<QueueTable>,
    link: std::sync::RwLock<Option<Link>>,
    /// Highest I/O queue id (and interrupt vector).
    max_ioqpairs: u16,
    /// Largest queue size in entries (CAP.MQES + 1).
    max_entries: u32,
    hooks: Arc<dyn Hooks>,
    /// The controller's CSTS: a fatal queue error sets CFS in it.
    csts: Arc<AtomicU32>,
    /// Posts the completions the latency model delays.
    timer: Timer<Queues, Delayed>,
    /// Runs the commands the workers fetch (given when the admin queue is created).
    exec: std::sync::RwLock<Option<Arc<dyn Executor>>>,
    /// PCI Bus Master Enable: without it the workers fetch nothing.
    bus_master: AtomicBool,
    /// An I/O queue was created since the last reset (Set Features Number of Queues is
    /// then a Command Sequence Error).
    io_created: AtomicBool,
    /// Rate limit of the failed-command log lines.
    failure_log: Mutex<FailureLog>,
    started: Instant,
    /// Poll mode: how long a worker polls the doorbell page after its last command.
    poll: Duration,
}

/// Failed-command log lines printed and suppressed in the current second.
#[derive(Default)]
struct FailureLog {
    second: u64,
    lines: u32,
    suppressed: u64,
}

/// At most this many failed-command lines a second (a flood of bad commands must not
/// flood the log).
const FAILURE_LINES_PER_SECOND: u32 = 20;

impl Queues {
    pub fn new(
        max_ioqpairs: u16,
        max_entries: u32,
        hooks: Arc<dyn Hooks>,
        csts: Arc<AtomicU32>,
        poll: Duration,
    ) -> Queues {
        let n = max_ioqpairs as usize + 1;
        Queues {
            table: std::sync::RwLock::new(QueueTable {
                enabled: false,
                sqs: vec![None; n],
                cqs: vec![None; n],
                dbbuf: None,
            }),
            link: std::sync::RwLock::new(None),
            max_ioqpairs,
            max_entries,
            hooks,
            csts,
            timer: Timer::default(),
            exec: std::sync::RwLock::new(None),
            bus_master: AtomicBool::new(true),
            io_created: AtomicBool::new(false),
            failure_log: Mutex::new(FailureLog::default()),
            started: Instant::now(),
            poll,
        }
    }

    /// True once an I/O queue was created since the last controller reset.
    pub fn io_queues_created(&self) -> bool {
        self.io_created.load(Ordering::Acquire)
    }

    /// Bus Master Enable changed; turning it on wakes every worker.
    pub fn set_bus_master(&self, on: bool) {
        let was = self.bus_master.swap(on, Ordering::AcqRel);
        if was != on {
            log::debug!("bus master {}", if on { "enabled" } else { "disabled" });
        }
        if on && !was {
            for sq in read(&self.table).sqs.iter().flatten() {
                sq.kick();
            }
        }
    }

    /// A client arrived (or left, with `None`).
    pub fn set_link(&self, link: Option<Link>) {
        *write(&self.link) = link;
    }

    /// The client's guest memory and interrupts, if one is connected.
    pub fn link(&self) -> Option<Link> {
        read(&self.link).clone()
    }

    fn irq(&self) -> Option<Arc<dyn InterruptSink>> {
        read(&self.link).as_ref().map(|l| l.irq.clone())
    }

    /// Sets Controller Fatal Status.
    pub fn fatal(&self, why: &str) {
        log::error!("controller fatal status: {why}");
        self.csts.fetch_or(csts::CFS, Ordering::AcqRel);
    }

    /// Controller Fatal Status is set: no queue fetches or runs anything more until the
    /// host resets the controller.
    fn failed(&self) -> bool {
        self.csts.load(Ordering::Acquire) & csts::CFS != 0
    }

    /// One log line per failed command (the standard for a device under test by a
    /// buggy host), at most [`FAILURE_LINES_PER_SECOND`] a second; the rest are counted
    /// and reported with the next line that is printed.
    fn log_failure(&self, qid: u16, sqe: &Sqe, status: Status) {
        if !self.may_log() {
            return;
        }
        let op = if qid == 0 {
            names::admin_opcode_name(sqe.opcode)
        } else {
            names::io_opcode_name(sqe.opcode)
        };
        log::info!(
            "SQ {qid} cid {} {op} (opcode {:#04x}) nsid {:#x}: {} (status {:#06x})",
            sqe.cid,
            sqe.opcode,
            sqe.nsid,
            names::status_name(status.0),
            status.0
        );
    }

    /// True if one more line about the host's bad input (a failed command, an invalid
    /// doorbell value in the doorbell page) may be logged this second; counts the rest.
    fn may_log(&self) -> bool {
        let now = self.started.elapsed().as_secs();
        let mut l = lock(&self.failure_log);
        if l.second != now {
            if l.suppressed > 0 {
                log::info!(
                    "{} more failed commands or bad doorbell values not logged in the last second",
                    l.suppressed
                );
            }
            *l = FailureLog {
                second: now,
                lines: 0,
                suppressed: 0,
            };
        }
        if l.lines >= FAILURE_LINES_PER_SECOND {
            l.suppressed += 1;
            return false;
        }
        l.lines += 1;
        true
    }

    /// Completions held back by the latency model, not yet posted.
    pub fn delayed(&self) -> usize {
        self.timer.pending()
    }

    /// Stops the delay timer for good (the controller is going away).
    pub fn shutdown(&self) {
        self.timer.shutdown();
    }

    /// Creates the admin queues and starts the admin worker (CC.EN 0 -> 1).
    pub fn enable_admin(
        self: &Arc<Self>,
        exec: Arc<dyn Executor>,
        asq: u64,
        asqs: u32,
        acq: u64,
        acqs: u32,
    ) -> Result<(), String> {
        let link = self
            .link()
            .ok_or_else(|| "no client is connected".to_string())?;
        let db = link.doorbells.clone();
        let cq = Arc::new(
            CompletionQueue::new(0, acq, acqs, 0, true)
                .with_page(db.clone().map(|m| PageDoorbell::cq_head(m, 0))),
        );
        let sq = Arc::new(
            SubmissionQueue::new(0, 0, asq, asqs)
                .with_page(db.map(|m| PageDoorbell::sq_tail(m, 0))),
        );
        *write(&self.exec) = Some(exec.clone());
        let mut t = write(&self.table);
        t.enabled = true;
        t.cqs[0] = Some(cq.clone());
        t.sqs[0] = Some(sq.clone());
        self.spawn_worker(exec, &sq, cq, link);
        Ok(())
    }

    /// Deletes every queue and stops every worker (CC.EN 1 -> 0, reset, disconnect).
    pub fn reset(&self) {
        let (sqs, cqs) = {
            let mut t = write(&self.table);
            t.enabled = false;
            self.io_created.store(false, Ordering::Release);
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
        // The executor (the controller's dispatcher) holds the controller's shared
        // state, which holds these queues: dropping it here breaks the cycle, so a
        // controller that goes away frees its namespaces. The next enable sets it again.
        *write(&self.exec) = None;
        self.timer.purge(|j| j.sq.stopped());
        // Doorbell registers are 0 after a reset, in the doorbell page too.
        if let Some(db) = self.link().and_then(|l| l.doorbells) {
            doorbell_page::clear(&*db);
        }
    }

    /// A doorbell write at `rel` bytes into the doorbell area. A write the spec calls an
    /// error comes back as the Asynchronous Event information value to report (the
    /// write itself is ignored); writes while the controller is disabled are ignored.
    pub fn doorbell(&self, rel: u64, v: u32) -> Result<(), u8> {
        if !rel.is_multiple_of(4) {
            return Ok(());
        }
        let idx = rel / 4;
        let qid = usize::try_from(idx / 2).unwrap_or(usize::MAX);
        let t = read(&self.table);
        if !t.enabled {
            log::debug!("doorbell write at {rel:#x} while disabled, ignored");
            return Ok(());
        }
        let (what, ok) = if idx.is_multiple_of(2) {
            match t.sqs.get(qid) {
                Some(Some(sq)) => ("SQ tail", sq.ring(v)),
                _ => {
                    log::warn!("doorbell write for SQ {qid}, which does not exist");
                    return Err(aer::INFO_INVALID_DOORBELL_REGISTER);
                }
            }
        } else {
            match t.cqs.get(qid) {
                Some(Some(cq)) => ("CQ head", cq.ring_head(v)),
                _ => {
                    log::warn!("doorbell write for CQ {qid}, which does not exist");
                    return Err(aer::INFO_INVALID_DOORBELL_REGISTER);
                }
            }
        };
        if ok {
            return Ok(());
        }
        log::warn!("queue {qid}: invalid {what} doorbell value {v}, ignored");
        Err(aer::INFO_INVALID_DOORBELL_VALUE)
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
        let max_q = self.max_ioqpairs as usize;
        if qid == 0 || qid as usize > max_q || exists(qid as usize) {
            return Err(status::INVALID_QUEUE_ID.dnr());
        }
        if size < 2 || size > self.max_entries {
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

    pub fn create_cq(&self, p: &CqParams) -> Result<(), Status> {
        let mut t = write(&self.table);
        if !t.enabled {
            return Err(status::COMMAND_SEQUENCE_ERROR.dnr());
        }
        let exists = |q: usize| t.cqs[q].is_some();
        self.check_new_queue(p.qid, p.size, p.base, p.contiguous, exists)?;
        if p.vector as u32 > self.max_ioqpairs as u32 {
            return Err(status::INVALID_INTERRUPT_VECTOR.dnr());
        }
        let link = self.link();
        let page = link
            .as_ref()
            .and_then(|l| l.doorbells.clone())
            .map(|m| PageDoorbell::cq_head(m, p.qid));
        let cq =
            Arc::new(CompletionQueue::new(p.qid, p.base, p.size, p.vector, p.ien).with_page(page));
        if let Some((db, ei)) = t.dbbuf {
            let sh = Shadow::for_queue(db, ei, p.qid, true);
            if let Some(link) = link.as_ref() {
                sh.init(&link.mem.memory(), 0, 0);
            }
            cq.set_shadow(Some(sh));
        }
        t.cqs[p.qid as usize] = Some(cq);
        self.io_created.store(true, Ordering::Release);
        Ok(())
    }

    pub fn create_sq(self: &Arc<Self>, p: &SqParams) -> Result<(), Status> {
        let Some(exec) = read(&self.exec).clone() else {
            return Err(status::COMMAND_SEQUENCE_ERROR.dnr());
        };
        let link = self.link();
        let mut t = write(&self.table);
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
        let page = link
            .doorbells
            .clone()
            .map(|m| PageDoorbell::sq_tail(m, p.qid));
        let sq = Arc::new(SubmissionQueue::new(p.qid, p.cqid, p.base, p.size).with_page(page));
        if let Some((db, ei)) = t.dbbuf {
            let sh = Shadow::for_queue(db, ei, p.qid, false);
            sh.init(&link.mem.memory(), 0, 0);
            sq.set_shadow(Some(sh));
        }
        t.sqs[p.qid as usize] = Some(sq.clone());
        self.io_created.store(true, Ordering::Release);
        self.spawn_worker(exec, &sq, cq, link);
        Ok(())
    }

    pub fn delete_sq(&self, qid: u16) -> Result<(), Status> {
        let sq = {
            let mut t = write(&self.table);
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
        let mut t = write(&self.table);
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
        let span = 8 * (self.max_ioqpairs as u64 + 1);
        let ok = |a: u64| a != 0 && a.is_multiple_of(PAGE_SIZE) && a.checked_add(span).is_some();
        if !ok(db) || !ok(ei) {
            return Err(status::INVALID_FIELD.dnr());
        }
        let mut t = write(&self.table);
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

    /// Posts a completion on `cq` and raises its interrupt. True if it was posted.
    /// `report` runs once the entry is posted and before the interrupt, so counters and
    /// traces already hold a command when the host learns that it completed.
    fn complete(
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

    /// Posts the completion of an admin command completed outside the admin worker
    /// (an Asynchronous Event Request), fetched at `since`.
    pub fn complete_admin(&self, cid: u16, dw0: u32, since: Instant, st: Status) {
        let (cq, sqhd) = {
            let t = read(&self.table);
            match (t.cqs.first(), t.sqs.first()) {
                (Some(Some(cq)), Some(Some(sq))) => (cq.clone(), sq.head() as u16),
                _ => return,
            }
        };
        let Some(link) = self.link() else {
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
            zone: None,
            status: st.0,
            dw0,
            dw1: 0,
            fetched: Some(since),
        };
        let c = Completion {
            dw0,
            dw1: 0,
            sqhd,
            sqid: 0,
            cid,
            status: st,
        };
        self.complete(&mem, &cq, &c, &|| false, || self.hooks.completed(done));
    }

    fn spawn_worker(
        self: &Arc<Self>,
        exec: Arc<dyn Executor>,
        sq: &Arc<SubmissionQueue>,
        cq: Arc<CompletionQueue>,
        link: Link,
    ) {
        let queues = self.clone();
        let sq2 = sq.clone();
        let h = std::thread::Builder::new()
            .name(format!("vnvme-sq{}", sq.id))
            .spawn(move || queues.run_sq(&*exec, &sq2, &cq, &link.mem));
        match h {
            Ok(h) => sq.set_worker(h),
            Err(e) => self.fatal(&format!("cannot start a queue worker: {e}")),
        }
    }

    /// A submission queue worker: sleeps until the doorbell rings, then runs the
    /// commands between head and tail in passes of at most [`BATCH`]. Reads and writes
    /// of I/O queues go in flight on the worker's io_uring (up to [`AsyncIo::SLOTS`] at
    /// once) and complete in the order they finish; everything else runs to its end in
    /// the worker. Each pass ends with at most one interrupt.
    fn run_sq(
        self: &Arc<Self>,
        exec: &dyn Executor,
        sq: &Arc<SubmissionQueue>,
        cq: &Arc<CompletionQueue>,
        mem: &GuestMemory,
    ) {
        let mut aio = if sq.id == 0 {
            None
        } else {
            match AsyncIo::new() {
                Ok(a) => Some(a),
                Err(e) => {
                    log::info!(
                        "SQ {}: io_uring unavailable ({e}): one command at a time",
                        sq.id
                    );
                    None
                }
            }
        };
        let mut pending: Vec<Option<Pending>> = (0..AsyncIo::SLOTS).map(|_| None).collect();
        let mut finished: Vec<Finished> = Vec::with_capacity(AsyncIo::SLOTS);
        let mut irq = false;
        loop {
            let snap: Arc<Mem> = mem.memory().into_inner();
            let m = &*snap;
            let mut idle = false;
            let mut quit = false;
            let mut fetched = 0;
            while fetched < BATCH {
                if sq.stopped() {
                    quit = true;
                    break;
                }
                if self.failed() {
                    log::warn!("SQ {}: controller fatal status, fetching stops", sq.id);
                    quit = true;
                    break;
                }
                if !self.bus_master.load(Ordering::Acquire) {
                    log::debug!("SQ {}: bus master disabled, not fetching", sq.id);
                    idle = true;
                    break;
                }
                if aio.as_ref().is_some_and(|a| !a.has_room()) {
                    break;
                }
                if sq.head() == sq.tail(m) {
                    if sq.arm_event_idx(m) {
                        continue;
                    }
                    idle = true;
                    break;
                }
                // The clock is read only for the records of an installed observer.
                let fetched_at = self.hooks.observing().then(Instant::now);
                let Some(sqe) = sq.fetch(m) else {
                    self.fatal(&format!("SQ {} is outside guest memory", sq.id));
                    quit = true;
                    break;
                };
                fetched += 1;
                let mut done = super::records::fetched(sq.id, &sqe, fetched_at);
                let mut f = aio.as_mut().map(|aio| InFlight { aio, mem: &snap });
                match exec.execute(sq.id, m, &sqe, &mut done, f.as_mut()) {
                    Outcome::Queued(slot) => {
                        if let Some(p) = pending.get_mut(slot) {
                            *p = Some(Pending { sqe, done });
                        }
                    }
                    Outcome::Deferred => {}
                    Outcome::Complete { status, dw0, dw1 } => {
                        self.ended(sq, cq, mem, m, &sqe, done, status, (dw0, dw1), &mut irq)
                    }
                }
            }
            if quit {
                if let Some(a) = aio.as_mut() {
                    a.drain();
                }
                return;
            }
            if let Some(a) = aio.as_mut() {
                // Hand the queued requests to the kernel, then end whatever finished;
                // wait for one when there is nothing else to do (SQ empty or every slot
                // busy) and something is in flight.
                let wait = (idle || !a.has_room()) && a.inflight() > 0;
                if wait {
                    self.raise(cq, &mut irq);
                }
                let r = a.submit().and_then(|()| a.reap(wait, &mut finished));
                if let Err(e) = r {
                    self.fatal(&format!("SQ {}: io_uring failed: {e}", sq.id));
                    a.drain();
                    return;
                }
                for Finished { slot, result } in finished.drain(..) {
                    let Some(Pending { sqe, done }) = pending.get_mut(slot).and_then(Option::take)
                    else {
                        continue;
                    };
                    let (status, dw) = match exec.finish(m, &sqe, result) {
                        Outcome::Complete { status, dw0, dw1 } => (status, (dw0, dw1)),
                        _ => (status::INTERNAL_ERROR, (0, 0)),
                    };
                    self.ended(sq, cq, mem, m, &sqe, done, status, dw, &mut irq);
                }
                if wait {
                    continue;
                }
            }
            self.raise(cq, &mut irq);
            if idle
                && aio.as_ref().is_none_or(|a| a.inflight() == 0)
                && !self.wait_doorbell(exec, sq, cq, mem)
            {
                if let Some(a) = aio.as_mut() {
                    a.drain();
                }
                return;
            }
        }
    }

    /// Raises the completion queue's interrupt if the worker posted since it last did.
    fn raise(&self, cq: &CompletionQueue, posted: &mut bool) {
        if std::mem::take(posted) && cq.ien {
            if let Some(irq) = self.irq() {
                irq.raise(cq.vector);
            }
        }
    }

    /// Ends one command of the worker's SQ: logs a failure, then posts its completion
    /// (or hands it to the delay timer). The interrupt is left to the end of the pass
    /// (`posted` set), except that a full CQ raises it before waiting for room, so a
    /// host that waits for the interrupt frees the room.
    #[allow(clippy::too_many_arguments)]
    fn ended(
        self: &Arc<Self>,
        sq: &Arc<SubmissionQueue>,
        cq: &Arc<CompletionQueue>,
        mem: &GuestMemory,
        m: &Mem,
        sqe: &Sqe,
        mut done: Completed,
        status: Status,
        (dw0, dw1): (u32, u32),
        posted: &mut bool,
    ) {
        if !status.is_success() {
            self.log_failure(sq.id, sqe, status);
        }
        done.status = status.0;
        done.dw0 = dw0;
        done.dw1 = dw1;
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
                done,
            };
            self.timer
                .schedule(self, Instant::now() + d, job, Queues::post_delayed);
            return;
        }
        let c = Completion {
            dw0,
            dw1,
            sqhd: sq.head() as u16,
            sqid: sq.id,
            cid: sqe.cid,
            status,
        };
        let r = match cq.try_post(m, &c) {
            Err(PostError::Full) => {
                self.raise(cq, posted);
                cq.post(m, &c, &|| sq.stopped())
            }
            r => r,
        };
        match r {
            Ok(()) => {
                self.hooks.completed(done);
                *posted = true;
            }
            Err(PostError::Stopped | PostError::Full) => {}
            Err(PostError::Fault) => self.fatal("completion queue is outside guest memory"),
        }
    }

    /// Between a worker's batches: with trapped doorbells, sleeps until the doorbell rings
    /// ([`SubmissionQueue::wait`]: no CPU while idle). With a doorbell page (poll mode)
    /// nothing rings: polls the page (SQ tail, CQ head) for the poll window after the
    /// last command, yielding the CPU between looks, then naps on the queue's condition
    /// variable (woken at once by a trapped doorbell, Bus Master Enable, a reset or a
    /// deletion), re-reading the page after each nap. A nap lasts an eighth of the time
    /// the queue has been idle, at least [`NAP_MIN`] and at most [`NAP_MAX`]: a command
    /// that comes after an idle time t waits about t/8 more (at most [`NAP_MAX`]), and an
    /// idle queue wakes [`NAP_MAX`]⁻¹ times a second. Invalid values found in the page
    /// are reported as Error events, once per change. Returns true when there is work,
    /// false once the queue is stopped.
    fn wait_doorbell(
        &self,
        exec: &dyn Executor,
        sq: &SubmissionQueue,
        cq: &CompletionQueue,
        mem: &GuestMemory,
    ) -> bool {
        if !sq.polled() {
            return sq.wait();
        }
        let idle_since = Instant::now();
        loop {
            if sq.stopped() {
                return false;
            }
            if let Err(v) = sq.refresh_tail() {
                self.page_doorbell_error(exec, sq.id, "SQ tail", v);
            }
            if let Some(v) = cq.refresh_head() {
                self.page_doorbell_error(exec, cq.id, "CQ head", v);
            }
            // Without Bus Master Enable nothing may be fetched: nap until it is set (it
            // kicks every queue) rather than spin on entries that wait.
            if self.bus_master.load(Ordering::Acquire)
                && !self.failed()
                && sq.head() != sq.tail(&mem.memory())
            {
                return true;
            }
            let idle = idle_since.elapsed();
            if idle < self.poll {
                std::thread::yield_now();
                continue;
            }
            if !sq.nap((idle / 8).clamp(NAP_MIN, NAP_MAX)) {
                return false;
            }
        }
    }

    /// An invalid value in the doorbell page: ignored, logged (rate-limited) and
    /// reported as an Error event, as a trapped write of it would be.
    fn page_doorbell_error(&self, exec: &dyn Executor, qid: u16, what: &str, v: u32) {
        if self.may_log() {
            log::warn!(
                "queue {qid}: invalid {what} doorbell value {v} in the doorbell page, ignored"
            );
        }
        exec.doorbell_error(aer::INFO_INVALID_DOORBELL_VALUE);
    }

    /// Posts a delayed completion (on the timer thread), unless its submission queue was
    /// deleted or reset meanwhile. SQ Head is the head now. Returns the job if the
    /// completion queue is full, to be tried again.
    fn post_delayed(self: &Arc<Self>, job: Delayed) -> Option<Delayed> {
        let r = job.sq.unless_stopped(|| {
            let m = job.mem.memory();
            let c = Completion {
                dw0: job.done.dw0,
                dw1: job.done.dw1,
                sqhd: job.sq.head() as u16,
                sqid: job.sq.id,
                cid: job.done.tag,
                status: Status(job.done.status),
            };
            job.cq.try_post(&m, &c)
        });
        match r {
            None => None,
            Some(Err(PostError::Full)) => Some(job),
            Some(r) => {
                let Delayed { cq, done, .. } = job;
                self.posted(&cq, r, || self.hooks.completed(done));
                None
            }
        }
    }
}
