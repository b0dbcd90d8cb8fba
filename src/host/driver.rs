//! The driver proper: controller enable/disable, queue rings with phase tags, command ids,
//! submit and reap with bounded waits, I/O queue pairs, shadow doorbells with EventIdx,
//! PRP lists, SGL segments and identify, over any [`Bus`].

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::sync::atomic::{fence, Ordering};
use std::time::{Duration, Instant};

use super::bus::{Bus, BusError};
use crate::nvme::spec::{admin_op, csts, reg, Sqe, Status, CQE_SIZE, SQE_SIZE};

/// Memory page size the driver programs (CC.MPS = 0).
pub const PAGE: u64 = 4096;
/// How long one wait for a completion may take unless told otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// CC with EN, NVM command set, 4 KiB pages, round robin, IOSQES 6, IOCQES 4.
pub const CC_ENABLE: u32 = 1 | (6 << 16) | (4 << 20);
/// Longest single sleep while waiting for an interrupt, so a lost or masked interrupt
/// costs at most this before the completion queue is looked at again.
const IRQ_SLICE: Duration = Duration::from_millis(10);
/// Polling interval for completion queues without interrupts and for registers.
const POLL: Duration = Duration::from_micros(200);
/// How long after a completion appears its interrupt may still arrive.
const IRQ_TRAIL: Duration = Duration::from_millis(500);
/// PRP entries in one list page.
const PRPS_PER_PAGE: u64 = PAGE / 8;

/// One completion queue entry, phase tag removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cqe {
    pub dw0: u32,
    /// Dword 1 (Zone Append: the high half of the LBA written).
    pub dw1: u32,
    pub sqhd: u16,
    pub sqid: u16,
    pub cid: u16,
    /// Status field without the phase tag (SCT, SC, More, DNR).
    pub status: Status,
}

impl Cqe {
    /// Decodes 16 bytes; also returns the phase tag.
    pub fn parse(b: &[u8; 16]) -> (Cqe, bool) {
        let le32 = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let (dw0, dw1, dw2, dw3) = (le32(0), le32(4), le32(8), le32(12));
        let cqe = Cqe {
            dw0,
            dw1,
            sqhd: dw2 as u16,
            sqid: (dw2 >> 16) as u16,
            cid: dw3 as u16,
            status: Status((dw3 >> 17) as u16),
        };
        (cqe, (dw3 >> 16) & 1 == 1)
    }

    /// SCT/SC without DNR.
    pub fn sc(&self) -> (u8, u8) {
        (self.status.sct(), self.status.sc())
    }

    pub fn ok(&self) -> bool {
        self.status.0 == 0
    }

    /// The entry if it reports success, else [`DriverError::Failed`] for `opcode`.
    pub fn success(self, opcode: u8) -> Result<Cqe> {
        if self.ok() {
            Ok(self)
        } else {
            Err(DriverError::Failed { opcode, cqe: self })
        }
    }
}

/// What went wrong; the device's misbehaviour is reported, never panicked on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriverError {
    Bus(BusError),
    /// Nothing happened in time; says what was waited for.
    Timeout(String),
    /// CSTS.CFS was set (CSTS value).
    Fatal(u32),
    /// The driver has no such queue.
    NoQueue(u16),
    /// The submission queue has no free entry (as far as completions told).
    QueueFull(u16),
    /// The next completion was not the one for the command just submitted.
    WrongCompletion {
        qid: u16,
        cid: u16,
        got: Cqe,
    },
    /// A command the driver issued for itself failed.
    Failed {
        opcode: u8,
        cqe: Cqe,
    },
    /// The driver's own memory (queues, lists) is used up; bytes asked for.
    OutOfMemory(u64),
    /// A request the driver cannot express (e.g. a zero-sized queue).
    Invalid(String),
}

impl fmt::Display for DriverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DriverError::Bus(e) => write!(f, "bus: {e}"),
            DriverError::Timeout(what) => write!(f, "timed out waiting for {what}"),
            DriverError::Fatal(v) => write!(f, "controller fatal status (CSTS {v:#x})"),
            DriverError::NoQueue(q) => write!(f, "no such queue {q}"),
            DriverError::QueueFull(q) => write!(f, "submission queue {q} full"),
            DriverError::WrongCompletion { qid, cid, got } => write!(
                f,
                "queue {qid}: expected completion of cid {cid}, got cid {} of SQ {}",
                got.cid, got.sqid
            ),
            DriverError::Failed { opcode, cqe } => {
                write!(f, "opcode {opcode:#x} failed: status {:#x}", cqe.status.0)
            }
            DriverError::OutOfMemory(n) => write!(f, "driver memory exhausted ({n} bytes)"),
            DriverError::Invalid(what) => write!(f, "invalid request: {what}"),
        }
    }
}

impl std::error::Error for DriverError {}

impl From<BusError> for DriverError {
    fn from(e: BusError) -> Self {
        DriverError::Bus(e)
    }
}

pub type Result<T> = std::result::Result<T, DriverError>;

/// The value of a driver call, or a panic naming what went wrong: for tests, which
/// want a failure to stop them where it happened. Nothing in the driver uses it.
#[track_caller]
pub fn must<T>(r: Result<T>) -> T {
    r.unwrap_or_else(|e| panic!("host driver: {e}"))
}

/// Calls `f` every `interval` until it says true (`Ok(true)`) or `timeout` passes
/// (`Ok(false)`).
pub fn poll_until<E>(
    timeout: Duration,
    interval: Duration,
    mut f: impl FnMut() -> std::result::Result<bool, E>,
) -> std::result::Result<bool, E> {
    let start = Instant::now();
    loop {
        if f()? {
            return Ok(true);
        }
        if start.elapsed() >= timeout {
            return Ok(false);
        }
        std::thread::sleep(interval);
    }
}

struct Sq {
    base: u64,
    size: u32,
    tail: u32,
    /// The tail last published (doorbell or shadow), for EventIdx.
    published: u32,
    /// The controller's head as the last completion for this SQ reported it.
    head: u32,
    cqid: u16,
}

struct Cq {
    base: u64,
    size: u32,
    head: u32,
    phase: bool,
    /// The interrupt vector, when interrupts are enabled.
    vector: Option<u16>,
}

/// The host driver over bus `B`.
pub struct Driver<B: Bus> {
    pub bus: B,
    /// CAP as read at the last enable.
    pub cap: u64,
    /// Doorbell stride in bytes (CAP.DSTRD).
    stride: u64,
    sqs: BTreeMap<u16, Sq>,
    cqs: BTreeMap<u16, Cq>,
    next_cid: u16,
    /// (shadow doorbell buffer, EventIdx buffer) once Doorbell Buffer Config is on; the
    /// I/O queues' doorbells are then published there first.
    pub dbbuf: Option<(u64, u64)>,
    /// With shadow doorbells: ring MMIO only when EventIdx asks for it (Linux's rule);
    /// false rings MMIO every time as well.
    pub event_idx: bool,
    /// How long [`Driver::cmd`] and the commands built on it wait for a completion.
    pub timeout: Duration,
    /// CC.CSS to enable with; `None`: 110b when CAP.CSS bit 6 offers it, else 000b.
    pub css: Option<u32>,
    /// Guest memory the driver may hand out with [`Driver::alloc`].
    heap: Range<u64>,
}

impl<B: Bus> Driver<B> {
    /// A driver for a controller behind `bus`, allocating its own queues and lists from
    /// `heap` (guest-physical; may be empty if all addresses are given explicitly).
    pub fn new(bus: B, heap: Range<u64>) -> Driver<B> {
        Driver {
            bus,
            cap: 0,
            stride: 4,
            sqs: BTreeMap::new(),
            cqs: BTreeMap::new(),
            next_cid: 1,
            dbbuf: None,
            css: None,
            event_idx: true,
            timeout: DEFAULT_TIMEOUT,
            heap,
        }
    }

    // --- registers and memory ---

    pub fn read32(&mut self, off: u64) -> Result<u32> {
        let mut b = [0u8; 4];
        self.bus.mmio_read(off, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    pub fn read64(&mut self, off: u64) -> Result<u64> {
        let mut b = [0u8; 8];
        self.bus.mmio_read(off, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    pub fn write32(&mut self, off: u64, v: u32) -> Result<()> {
        Ok(self.bus.mmio_write(off, &v.to_le_bytes())?)
    }

    pub fn write64(&mut self, off: u64, v: u64) -> Result<()> {
        Ok(self.bus.mmio_write(off, &v.to_le_bytes())?)
    }

    pub fn read_mem(&self, addr: u64, len: usize) -> Result<Vec<u8>> {
        let mut b = vec![0u8; len];
        self.bus.mem_read(addr, &mut b)?;
        Ok(b)
    }

    pub fn write_mem(&self, addr: u64, data: &[u8]) -> Result<()> {
        Ok(self.bus.mem_write(addr, data)?)
    }

    pub fn fill(&self, addr: u64, len: usize, byte: u8) -> Result<()> {
        self.write_mem(addr, &vec![byte; len])
    }

    fn read_u32(&self, addr: u64) -> Result<u32> {
        let mut b = [0u8; 4];
        self.bus.mem_read(addr, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    /// Hands out zeroed, page-aligned guest memory from the driver's heap.
    pub fn alloc(&mut self, bytes: u64) -> Result<u64> {
        let len = bytes.div_ceil(PAGE).max(1) * PAGE;
        let a = self.heap.start.next_multiple_of(PAGE);
        match a.checked_add(len) {
            Some(end) if end <= self.heap.end => {
                self.fill(a, len as usize, 0)?;
                self.heap.start = end;
                Ok(a)
            }
            _ => Err(DriverError::OutOfMemory(bytes)),
        }
    }

    // --- enable / disable ---

    /// Waits until `CSTS & mask == val`; `Ok(false)` after the driver's timeout.
    pub fn wait_csts(&mut self, mask: u32, val: u32) -> Result<bool> {
        let timeout = self.timeout;
        poll_until(timeout, Duration::from_millis(1), || {
            Ok(self.read32(reg::CSTS)? & mask == val)
        })
    }

    /// CC.EN = 0 and waits for CSTS.RDY = 0 (also after a fatal status: that is how a
    /// driver recovers); the driver forgets every queue.
    pub fn disable(&mut self) -> Result<()> {
        self.write32(reg::CC, 0)?;
        let ready = self.wait_csts(csts::RDY, 0)?;
        self.sqs.clear();
        self.cqs.clear();
        if !ready {
            return Err(DriverError::Timeout("CSTS.RDY = 0".into()));
        }
        Ok(())
    }

    /// Programs an admin queue pair of `entries` at `asq`/`acq` (completion queue memory
    /// zeroed) and sets CC.EN; waits for CSTS.RDY. The controller should be disabled.
    pub fn enable(&mut self, asq: u64, acq: u64, entries: u32) -> Result<()> {
        if !(2..=4096).contains(&entries) {
            return Err(DriverError::Invalid(format!("{entries} admin entries")));
        }
        self.cap = self.read64(reg::CAP)?;
        self.stride = 4 << ((self.cap >> 32) & 0xf);
        self.sqs.clear();
        self.cqs.clear();
        self.dbbuf = None;
        self.fill(acq, entries as usize * CQE_SIZE as usize, 0)?;
        self.write32(reg::AQA, (entries - 1) | ((entries - 1) << 16))?;
        self.write64(reg::ASQ, asq)?;
        self.write64(reg::ACQ, acq)?;
        // CC.CSS 110b when CAP.CSS bit 6 offers it (every I/O command set), as Linux
        // does; else 000b (NVM).
        let css = self
            .css
            .unwrap_or(if (self.cap >> 43) & 1 == 1 { 6 } else { 0 });
        self.write32(reg::CC, CC_ENABLE | (css & 7) << 4)?;
        let timeout = self.timeout;
        let ready = poll_until(timeout, Duration::from_millis(1), || {
            let v = self.read32(reg::CSTS)?;
            if v & csts::CFS != 0 {
                return Err(DriverError::Fatal(v));
            }
            Ok(v & csts::RDY != 0)
        })?;
        if !ready {
            return Err(DriverError::Timeout("CSTS.RDY = 1".into()));
        }
        self.add_sq(0, asq, entries, 0);
        self.add_cq(0, acq, entries, Some(0));
        Ok(())
    }

    /// Disables, then enables with an admin queue pair of `entries` from the heap.
    pub fn reset_and_enable(&mut self, entries: u32) -> Result<()> {
        self.disable()?;
        let asq = self.alloc(entries as u64 * SQE_SIZE)?;
        let acq = self.alloc(entries as u64 * CQE_SIZE)?;
        self.enable(asq, acq, entries)
    }

    // --- rings ---

    fn add_sq(&mut self, qid: u16, base: u64, size: u32, cqid: u16) {
        let sq = Sq {
            base,
            size,
            tail: 0,
            published: 0,
            head: 0,
            cqid,
        };
        self.sqs.insert(qid, sq);
    }

    fn add_cq(&mut self, qid: u16, base: u64, size: u32, vector: Option<u16>) {
        let cq = Cq {
            base,
            size,
            head: 0,
            phase: true,
            vector,
        };
        self.cqs.insert(qid, cq);
    }

    /// Drops the driver's state of SQ `qid` (after the controller lost it).
    pub fn forget_sq(&mut self, qid: u16) {
        self.sqs.remove(&qid);
    }

    pub fn forget_cq(&mut self, qid: u16) {
        self.cqs.remove(&qid);
    }

    /// BAR0 offset of SQ `qid`'s tail doorbell.
    pub fn sq_doorbell(&self, qid: u16) -> u64 {
        reg::DOORBELL_BASE + 2 * qid as u64 * self.stride
    }

    /// BAR0 offset of CQ `qid`'s head doorbell.
    pub fn cq_doorbell(&self, qid: u16) -> u64 {
        self.sq_doorbell(qid) + self.stride
    }

    pub fn sq_tail(&self, qid: u16) -> Option<u32> {
        self.sqs.get(&qid).map(|q| q.tail)
    }

    /// The CQ that SQ `qid` completes to.
    pub fn cq_of(&self, qid: u16) -> Option<u16> {
        self.sqs.get(&qid).map(|q| q.cqid)
    }

    /// Writes a doorbell: with shadow doorbells (I/O queues only) the shadow first, then
    /// MMIO unless EventIdx says the controller does not need it.
    fn ring(&mut self, qid: u16, is_cq: bool, value: u32, old: u32) -> Result<()> {
        let off = if is_cq {
            self.cq_doorbell(qid)
        } else {
            self.sq_doorbell(qid)
        };
        if let (Some((db, ei)), true) = (self.dbbuf, qid != 0) {
            let idx = off - reg::DOORBELL_BASE;
            self.write_mem(db + idx, &value.to_le_bytes())?;
            if self.event_idx {
                fence(Ordering::SeqCst);
                let event_idx = self.read_u32(ei + idx)? as u16;
                let (new, old) = (value as u16, old as u16);
                if new.wrapping_sub(event_idx).wrapping_sub(1) >= new.wrapping_sub(old) {
                    return Ok(());
                }
            }
        }
        Ok(self.bus.doorbell(off, value)?)
    }

    /// Writes a 64-byte entry into SQ `qid` with a fresh command id (bytes 2..4) and
    /// advances the host tail, without ringing; returns the command id.
    pub fn push_raw(&mut self, qid: u16, mut sqe: [u8; 64]) -> Result<u16> {
        let q = self.sqs.get(&qid).ok_or(DriverError::NoQueue(qid))?;
        if (q.tail + 1) % q.size == q.head {
            return Err(DriverError::QueueFull(qid));
        }
        let addr = q.base + q.tail as u64 * SQE_SIZE;
        let cid = self.next_cid;
        sqe[2..4].copy_from_slice(&cid.to_le_bytes());
        self.write_mem(addr, &sqe)?;
        self.next_cid = self.next_cid.wrapping_add(1).max(1);
        let q = self.sqs.get_mut(&qid).ok_or(DriverError::NoQueue(qid))?;
        q.tail = (q.tail + 1) % q.size;
        Ok(cid)
    }

    pub fn push(&mut self, qid: u16, sqe: Sqe) -> Result<u16> {
        self.push_raw(qid, sqe.to_bytes())
    }

    /// Publishes SQ `qid`'s tail (shadow and/or MMIO doorbell).
    pub fn ring_sq(&mut self, qid: u16) -> Result<()> {
        let q = self.sqs.get_mut(&qid).ok_or(DriverError::NoQueue(qid))?;
        let (tail, old) = (q.tail, q.published);
        q.published = tail;
        self.ring(qid, false, tail, old)
    }

    pub fn submit_raw(&mut self, qid: u16, sqe: [u8; 64]) -> Result<u16> {
        let cid = self.push_raw(qid, sqe)?;
        self.ring_sq(qid)?;
        Ok(cid)
    }

    /// Writes the entry and rings; returns the command id.
    pub fn submit(&mut self, qid: u16, sqe: Sqe) -> Result<u16> {
        self.submit_raw(qid, sqe.to_bytes())
    }

    /// Looks at CQ `cqid` once: takes the next entry if its phase tag is current, moves
    /// the head (and the phase on wrap) and rings the head doorbell.
    pub fn poll(&mut self, cqid: u16) -> Result<Option<Cqe>> {
        let old = self.cqs.get(&cqid).ok_or(DriverError::NoQueue(cqid))?.head;
        let Some(cqe) = self.take(cqid)? else {
            return Ok(None);
        };
        let head = self.cqs.get(&cqid).ok_or(DriverError::NoQueue(cqid))?.head;
        self.ring(cqid, true, head, old)?;
        Ok(Some(cqe))
    }

    /// Takes every current entry of CQ `cqid` (at most `max`) into `out` and rings the
    /// head doorbell once for all of them, as Linux's driver does after reaping a batch;
    /// returns how many.
    pub fn reap_batch(&mut self, cqid: u16, max: usize, out: &mut Vec<Cqe>) -> Result<usize> {
        let old = self.cqs.get(&cqid).ok_or(DriverError::NoQueue(cqid))?.head;
        let mut n = 0;
        while n < max {
            match self.take(cqid)? {
                Some(c) => {
                    out.push(c);
                    n += 1;
                }
                None => break,
            }
        }
        if n > 0 {
            let head = self.cqs.get(&cqid).ok_or(DriverError::NoQueue(cqid))?.head;
            self.ring(cqid, true, head, old)?;
        }
        Ok(n)
    }

    /// Takes the next entry of CQ `cqid` if its phase tag is current and moves the head
    /// (and the phase on wrap), without ringing.
    fn take(&mut self, cqid: u16) -> Result<Option<Cqe>> {
        let q = self.cqs.get(&cqid).ok_or(DriverError::NoQueue(cqid))?;
        let (addr, phase) = (q.base + q.head as u64 * CQE_SIZE, q.phase);
        let mut b = [0u8; 16];
        self.bus.mem_read(addr, &mut b)?;
        let (cqe, tag) = Cqe::parse(&b);
        if tag != phase {
            return Ok(None);
        }
        let q = self.cqs.get_mut(&cqid).ok_or(DriverError::NoQueue(cqid))?;
        q.head = (q.head + 1) % q.size;
        if q.head == 0 {
            q.phase = !q.phase;
        }
        if let Some(sq) = self.sqs.get_mut(&cqe.sqid) {
            sq.head = cqe.sqhd as u32 % sq.size;
        }
        Ok(Some(cqe))
    }

    /// Waits up to `timeout` for the next entry on CQ `cqid`, sleeping on its interrupt
    /// vector (if it has one) between looks. Returns the entry and whether the vector
    /// fired while waiting; with `want_irq`, waits a little for an interrupt that trails
    /// the entry.
    pub fn wait(&mut self, cqid: u16, timeout: Duration, want_irq: bool) -> Result<(Cqe, bool)> {
        let deadline = Instant::now() + timeout;
        let vector = self
            .cqs
            .get(&cqid)
            .ok_or(DriverError::NoQueue(cqid))?
            .vector;
        let mut fired = false;
        loop {
            if let Some(c) = self.poll(cqid)? {
                if let (true, false, Some(v)) = (want_irq, fired, vector) {
                    fired = self.bus.wait_irq(v, IRQ_TRAIL)?;
                }
                return Ok((c, fired));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(DriverError::Timeout(format!("a completion on CQ {cqid}")));
            }
            match vector {
                Some(v) => fired |= self.bus.wait_irq(v, left.min(IRQ_SLICE))?,
                None => std::thread::sleep(left.min(POLL)),
            }
        }
    }

    /// The next entry on CQ `cqid` if one arrives within `timeout`.
    pub fn try_reap(&mut self, cqid: u16, timeout: Duration) -> Result<Option<Cqe>> {
        match self.wait(cqid, timeout, false) {
            Ok((c, _)) => Ok(Some(c)),
            Err(DriverError::Timeout(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn complete(&mut self, qid: u16, cid: u16) -> Result<Cqe> {
        let cqid = self.cq_of(qid).ok_or(DriverError::NoQueue(qid))?;
        let timeout = self.timeout;
        let (c, _) = self.wait(cqid, timeout, false)?;
        if c.cid != cid || c.sqid != qid {
            return Err(DriverError::WrongCompletion { qid, cid, got: c });
        }
        Ok(c)
    }

    /// Submits and waits for that command's completion (status not checked).
    pub fn cmd(&mut self, qid: u16, sqe: Sqe) -> Result<Cqe> {
        let cid = self.submit(qid, sqe)?;
        self.complete(qid, cid)
    }

    pub fn cmd_raw(&mut self, qid: u16, sqe: [u8; 64]) -> Result<Cqe> {
        let cid = self.submit_raw(qid, sqe)?;
        self.complete(qid, cid)
    }

    pub fn admin(&mut self, sqe: Sqe) -> Result<Cqe> {
        self.cmd(0, sqe)
    }

    /// An admin command that must succeed.
    fn admin_ok(&mut self, sqe: Sqe) -> Result<Cqe> {
        self.admin(sqe)?.success(sqe.opcode)
    }

    // --- queues ---

    /// Create I/O Completion Queue `qid` of `size` entries at `base` (zeroed first), on
    /// interrupt `vector` if `ien`. The driver takes the queue only if it was created.
    pub fn create_cq(
        &mut self,
        qid: u16,
        size: u32,
        base: u64,
        vector: u16,
        ien: bool,
    ) -> Result<Cqe> {
        if size == 0 {
            return Err(DriverError::Invalid("0-entry CQ".into()));
        }
        self.fill(base, size as usize * CQE_SIZE as usize, 0)?;
        let c = self.admin(Sqe {
            opcode: admin_op::CREATE_IO_CQ,
            dptr1: base,
            cdw10: qid as u32 | ((size - 1) << 16),
            cdw11: 1 | ((ien as u32) << 1) | ((vector as u32) << 16),
            ..Default::default()
        })?;
        if c.ok() {
            self.add_cq(qid, base, size, ien.then_some(vector));
        }
        Ok(c)
    }

    /// Create I/O Submission Queue `qid` of `size` entries at `base`, completing to `cqid`.
    pub fn create_sq(&mut self, qid: u16, size: u32, base: u64, cqid: u16) -> Result<Cqe> {
        if size == 0 {
            return Err(DriverError::Invalid("0-entry SQ".into()));
        }
        let c = self.admin(Sqe {
            opcode: admin_op::CREATE_IO_SQ,
            dptr1: base,
            cdw10: qid as u32 | ((size - 1) << 16),
            cdw11: 1 | ((cqid as u32) << 16),
            ..Default::default()
        })?;
        if c.ok() {
            self.add_sq(qid, base, size, cqid);
        }
        Ok(c)
    }

    /// Delete I/O Submission Queue `qid`; the driver forgets it once deleted.
    pub fn delete_sq(&mut self, qid: u16) -> Result<Cqe> {
        self.delete_queue(admin_op::DELETE_IO_SQ, qid)
    }

    /// Delete I/O Completion Queue `qid`; the driver forgets it once deleted.
    pub fn delete_cq(&mut self, qid: u16) -> Result<Cqe> {
        self.delete_queue(admin_op::DELETE_IO_CQ, qid)
    }

    fn delete_queue(&mut self, opcode: u8, qid: u16) -> Result<Cqe> {
        let c = self.admin(Sqe {
            opcode,
            cdw10: qid as u32,
            ..Default::default()
        })?;
        if c.ok() && opcode == admin_op::DELETE_IO_SQ {
            self.forget_sq(qid);
        } else if c.ok() {
            self.forget_cq(qid);
        }
        Ok(c)
    }

    /// Set Features Number of Queues for `n` SQs and CQs; returns the counts granted
    /// (1-based).
    pub fn set_num_queues(&mut self, n: u16) -> Result<(u32, u32)> {
        let nq = (n as u32).saturating_sub(1) * 0x1_0001;
        let c = self.admin_ok(Sqe {
            opcode: admin_op::SET_FEATURES,
            cdw10: 0x07,
            cdw11: nq,
            ..Default::default()
        })?;
        Ok(((c.dw0 & 0xffff) + 1, (c.dw0 >> 16) + 1))
    }

    /// Asks for `n` I/O queue pairs and creates them with `entries` each from the heap:
    /// pair `i` is SQ `i` on CQ `i`, interrupt vector `i`.
    pub fn create_io_queues(&mut self, n: u16, entries: u32) -> Result<()> {
        let (sqs, cqs) = self.set_num_queues(n)?;
        if sqs.min(cqs) < n as u32 {
            return Err(DriverError::Invalid(format!(
                "controller grants {sqs} SQs and {cqs} CQs, {n} asked for"
            )));
        }
        for qid in 1..=n {
            let cq = self.alloc(entries as u64 * CQE_SIZE)?;
            let sq = self.alloc(entries as u64 * SQE_SIZE)?;
            self.create_cq(qid, entries, cq, qid, true)?
                .success(admin_op::CREATE_IO_CQ)?;
            self.create_sq(qid, entries, sq, qid)?
                .success(admin_op::CREATE_IO_SQ)?;
        }
        Ok(())
    }

    /// Doorbell Buffer Config with two fresh pages; the shadow doorbells start at the I/O
    /// queues' current values and are used from now on.
    pub fn enable_dbbuf(&mut self) -> Result<(u64, u64)> {
        let db = self.alloc(PAGE)?;
        let ei = self.alloc(PAGE)?;
        self.admin_ok(Sqe {
            opcode: admin_op::DOORBELL_BUFFER_CONFIG,
            dptr1: db,
            dptr2: ei,
            ..Default::default()
        })?;
        for (&qid, q) in self.sqs.iter().filter(|(&q, _)| q != 0) {
            let off = self.sq_doorbell(qid) - reg::DOORBELL_BASE;
            self.write_mem(db + off, &q.tail.to_le_bytes())?;
        }
        for (&qid, q) in self.cqs.iter().filter(|(&q, _)| q != 0) {
            let off = self.cq_doorbell(qid) - reg::DOORBELL_BASE;
            self.write_mem(db + off, &q.head.to_le_bytes())?;
        }
        self.dbbuf = Some((db, ei));
        Ok((db, ei))
    }

    /// Identify (CNS, NSID, CSI) into the page at `buf`; returns the completion and the
    /// page.
    pub fn identify(&mut self, cns: u8, nsid: u32, csi: u8, buf: u64) -> Result<(Cqe, Vec<u8>)> {
        let c = self.admin(Sqe {
            opcode: admin_op::IDENTIFY,
            nsid,
            dptr1: buf,
            cdw10: cns as u32,
            cdw11: (csi as u32) << 24,
            ..Default::default()
        })?;
        Ok((c, self.read_mem(buf, PAGE as usize)?))
    }

    // --- data pointers ---

    /// PRP1/PRP2 for `len` bytes at `buf` (which may start inside a page; every later
    /// page is whole), building PRP lists from the heap (chained when longer than a page).
    pub fn prps(&mut self, buf: u64, len: u64) -> Result<(u64, u64)> {
        let first = PAGE - buf % PAGE;
        if len <= first {
            return Ok((buf, 0));
        }
        let page0 = buf - buf % PAGE;
        let rest = (len - first).div_ceil(PAGE);
        let page = |i: u64| page0 + (i + 1) * PAGE;
        if rest == 1 {
            return Ok((buf, page(0)));
        }
        // Each list page holds 511 entries and a pointer to the next, but the last one
        // holds 512.
        let mut entries: Vec<u64> = (0..rest).map(page).collect();
        let head = self.alloc(PAGE)?;
        let mut list = head;
        loop {
            if entries.len() as u64 <= PRPS_PER_PAGE {
                let b: Vec<u8> = entries.iter().flat_map(|e| e.to_le_bytes()).collect();
                self.write_mem(list, &b)?;
                return Ok((buf, head));
            }
            let next = self.alloc(PAGE)?;
            let rest = entries.split_off(PRPS_PER_PAGE as usize - 1);
            entries.push(next);
            let b: Vec<u8> = entries.iter().flat_map(|e| e.to_le_bytes()).collect();
            self.write_mem(list, &b)?;
            entries = rest;
            list = next;
        }
    }

    /// Points `sqe` at an SGL: a Last Segment descriptor to a list (from the heap) of one
    /// Data Block descriptor per `(addr, len)`.
    pub fn set_sgl(&mut self, sqe: &mut Sqe, parts: &[(u64, u32)]) -> Result<()> {
        let bytes = parts.len() as u64 * 16;
        if bytes > u32::MAX as u64 {
            return Err(DriverError::Invalid("SGL too long".into()));
        }
        let seg = self.alloc(bytes)?;
        let mut list = Vec::with_capacity(bytes as usize);
        for &(a, l) in parts {
            list.extend_from_slice(&a.to_le_bytes());
            list.extend_from_slice(&l.to_le_bytes());
            list.extend_from_slice(&[0, 0, 0, 0x00]); // Data Block, address sub-type
        }
        self.write_mem(seg, &list)?;
        sqe.psdt = 1; // SGL, MPTR an address
        sqe.dptr1 = seg;
        sqe.dptr2 = bytes | (0x30u64 << 56); // Last Segment descriptor
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guest memory only, no controller: registers read 0, interrupts never come.
    struct MemOnly(std::cell::RefCell<Vec<u8>>);

    impl Bus for MemOnly {
        fn mmio_read(&mut self, _: u64, data: &mut [u8]) -> std::result::Result<(), BusError> {
            data.fill(0);
            Ok(())
        }
        fn mmio_write(&mut self, _: u64, _: &[u8]) -> std::result::Result<(), BusError> {
            Ok(())
        }
        fn mem_read(&self, addr: u64, data: &mut [u8]) -> std::result::Result<(), BusError> {
            let m = self.0.borrow();
            let a = addr as usize;
            let src = m
                .get(a..a + data.len())
                .ok_or_else(|| BusError(format!("{addr:#x} unmapped")))?;
            data.copy_from_slice(src);
            Ok(())
        }
        fn mem_write(&self, addr: u64, data: &[u8]) -> std::result::Result<(), BusError> {
            let mut m = self.0.borrow_mut();
            let a = addr as usize;
            m.get_mut(a..a + data.len())
                .ok_or_else(|| BusError(format!("{addr:#x} unmapped")))?
                .copy_from_slice(data);
            Ok(())
        }
        fn wait_irq(&mut self, _: u16, t: Duration) -> std::result::Result<bool, BusError> {
            std::thread::sleep(t);
            Ok(false)
        }
    }

    fn driver(heap: Range<u64>) -> Driver<MemOnly> {
        Driver::new(MemOnly(vec![0u8; 8 << 20].into()), heap)
    }

    fn le64s(b: &[u8]) -> Vec<u64> {
        b.chunks(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
            .collect()
    }

    #[test]
    fn prps_of_one_two_and_many_pages() {
        let mut d = driver(0x100000..0x200000);
        assert_eq!(d.prps(0x10000, 4096).unwrap(), (0x10000, 0));
        assert_eq!(d.prps(0x10200, 3584).unwrap(), (0x10200, 0));
        assert_eq!(d.prps(0x10200, 4096).unwrap(), (0x10200, 0x11000));
        let (p1, list) = d.prps(0x10000, 4 * 4096).unwrap();
        assert_eq!(p1, 0x10000);
        let e = le64s(&d.read_mem(list, 24).unwrap());
        assert_eq!(e, vec![0x11000, 0x12000, 0x13000]);
    }

    #[test]
    fn long_prp_lists_are_chained() {
        let mut d = driver(0x400000..0x800000);
        // 1 + 600 pages: 511 entries and a link in the first list page, 89 in the next.
        let (_, list) = d.prps(0, 601 * PAGE).unwrap();
        let first = le64s(&d.read_mem(list, PAGE as usize).unwrap());
        assert_eq!(first[0], PAGE);
        assert_eq!(first[510], 511 * PAGE);
        let next = first[511];
        assert_eq!(next % PAGE, 0);
        let second = le64s(&d.read_mem(next, 89 * 8).unwrap());
        assert_eq!(second[0], 512 * PAGE);
        assert_eq!(second[88], 600 * PAGE);
    }

    #[test]
    fn the_heap_runs_out_with_an_error() {
        let mut d = driver(0x1000..0x3000);
        assert_eq!(d.alloc(1).unwrap(), 0x1000);
        assert_eq!(d.alloc(4096).unwrap(), 0x2000);
        assert_eq!(d.alloc(1), Err(DriverError::OutOfMemory(1)));
    }

    #[test]
    fn a_silent_device_gives_errors_not_hangs() {
        let mut d = driver(0x1000..0x100000);
        d.timeout = Duration::from_millis(20);
        // CSTS never becomes ready.
        assert!(matches!(
            d.enable(0x1000, 0x2000, 4),
            Err(DriverError::Timeout(_))
        ));
        assert_eq!(d.submit(1, Sqe::default()), Err(DriverError::NoQueue(1)));
        // A queue the device never completes: the wait ends, the ring fills up.
        d.add_sq(0, 0x1000, 4, 0);
        d.add_cq(0, 0x2000, 4, Some(0));
        assert_eq!(d.try_reap(0, Duration::from_millis(5)), Ok(None));
        assert!(matches!(
            d.cmd(0, Sqe::default()),
            Err(DriverError::Timeout(_))
        ));
        d.push(0, Sqe::default()).unwrap();
        d.push(0, Sqe::default()).unwrap();
        assert_eq!(d.push(0, Sqe::default()), Err(DriverError::QueueFull(0)));
        assert!(matches!(d.read_mem(16 << 20, 4), Err(DriverError::Bus(_))));
    }

    #[test]
    fn completions_follow_the_phase_tag_and_move_the_sq_head() {
        let mut d = driver(0x1000..0x100000);
        d.add_sq(0, 0x1000, 2, 0);
        d.add_cq(0, 0x2000, 2, None);
        let cqe = |cid: u16, sqhd: u16, phase: u32| {
            let mut b = [0u8; 16];
            b[8..10].copy_from_slice(&sqhd.to_le_bytes());
            b[12..16].copy_from_slice(&(cid as u32 | (phase << 16) | (0x2 << 17)).to_le_bytes());
            b
        };
        let cid = d.submit(0, Sqe::default()).unwrap();
        assert_eq!(d.push(0, Sqe::default()), Err(DriverError::QueueFull(0)));
        d.write_mem(0x2000, &cqe(cid, 1, 1)).unwrap();
        let c = d.poll(0).unwrap().unwrap();
        assert_eq!((c.cid, c.sc()), (cid, (0, 2)));
        assert_eq!(c.success(1), Err(DriverError::Failed { opcode: 1, cqe: c }));
        assert_eq!(d.poll(0).unwrap(), None);
        // Head 1 of 2: the next entry at slot 1, still phase 1; then the phase flips.
        d.write_mem(0x2010, &cqe(7, 0, 1)).unwrap();
        assert_eq!(d.poll(0).unwrap().unwrap().cid, 7);
        d.write_mem(0x2000, &cqe(8, 1, 1)).unwrap();
        assert_eq!(d.poll(0).unwrap(), None, "stale phase");
        d.write_mem(0x2000, &cqe(8, 1, 0)).unwrap();
        assert_eq!(d.poll(0).unwrap().unwrap().cid, 8);
    }
}
