//! Submission and completion queue rings: doorbells, phase tags, shadow doorbells and
//! EventIdx (Doorbell Buffer Config), and doorbells in a shared page (poll mode).
//!
//! A submission queue is consumed by exactly one worker thread, which sleeps on the
//! queue's own condition variable until its doorbell is rung: idle queues cost nothing
//! and queues never wait on each other. A completion queue may be shared by several
//! submission queues, so its ring state has its own lock. With a doorbell page
//! ([`PageDoorbell`]) the host's doorbell values are read from memory instead of arriving
//! as writes; the worker polls for them (`Queues::wait_doorbell`).

use std::sync::atomic::{fence, AtomicBool, AtomicU32, Ordering};
use std::sync::{Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use vm_memory::{Bytes, GuestAddress};

use super::doorbell_page::{PageDoorbell, NAP_MAX, NAP_MIN};
use super::prp::{writable, Mem};
use super::spec::{Sqe, Status, CQE_SIZE, SQE_SIZE};

/// How long a worker blocked on a full completion queue sleeps before looking at the
/// shadow head again (a safety net; a head doorbell wakes it at once).
const CQ_FULL_RECHECK: Duration = Duration::from_millis(50);

use crate::sync::lock;

/// Addresses of one queue's entries in the shadow doorbell and EventIdx buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shadow {
    pub doorbell: u64,
    pub event_idx: u64,
}

impl Shadow {
    /// Entries of queue `qid` (DSTRD = 0): SQ at 8*qid, CQ at 8*qid + 4.
    pub fn for_queue(db_base: u64, ei_base: u64, qid: u16, is_cq: bool) -> Shadow {
        let off = 8 * qid as u64 + if is_cq { 4 } else { 0 };
        Shadow {
            doorbell: db_base + off,
            event_idx: ei_base + off,
        }
    }

    fn read_doorbell(&self, mem: &Mem) -> Option<u32> {
        mem.load::<u32>(GuestAddress(self.doorbell), Ordering::Acquire)
            .ok()
    }

    fn write_event_idx(&self, mem: &Mem, v: u32) {
        if writable(mem, self.event_idx, 4) {
            let _ = mem.store(v, GuestAddress(self.event_idx), Ordering::Release);
        }
    }

    /// Initialises both entries (used when a queue starts using the buffers).
    pub fn init(&self, mem: &Mem, doorbell: u32, event_idx: u32) {
        if writable(mem, self.doorbell, 4) {
            let _ = mem.store(doorbell, GuestAddress(self.doorbell), Ordering::Release);
        }
        self.write_event_idx(mem, event_idx);
    }
}

/// A submission queue ring.
pub struct SubmissionQueue {
    pub id: u16,
    pub cqid: u16,
    pub base: u64,
    pub size: u32,
    /// Last tail written to the MMIO doorbell.
    doorbell: AtomicU32,
    /// The controller's head (index of the next entry to fetch).
    head: AtomicU32,
    shadow: Mutex<Option<Shadow>>,
    pending: Mutex<bool>,
    wake: Condvar,
    stop: AtomicBool,
    worker: Mutex<Option<JoinHandle<()>>>,
    /// Held by whoever posts a completion of this queue from outside its worker (delayed
    /// completions), across the stopped check and the post; `stop_and_join` takes it
    /// after setting `stop`, so no such completion is posted once it returns.
    post_gate: Mutex<()>,
    /// The tail doorbell in the shared doorbell page (poll mode).
    page: Option<PageDoorbell>,
}

impl SubmissionQueue {
    pub fn new(id: u16, cqid: u16, base: u64, size: u32) -> SubmissionQueue {
        SubmissionQueue {
            id,
            cqid,
            base,
            size,
            doorbell: AtomicU32::new(0),
            head: AtomicU32::new(0),
            shadow: Mutex::new(None),
            pending: Mutex::new(false),
            wake: Condvar::new(),
            stop: AtomicBool::new(false),
            worker: Mutex::new(None),
            post_gate: Mutex::new(()),
            page: None,
        }
    }

    /// The queue's tail doorbell also lives in a shared doorbell page (poll mode).
    pub fn with_page(mut self, page: Option<PageDoorbell>) -> SubmissionQueue {
        self.page = page;
        self
    }

    /// True if the host's doorbell values are read from a shared page (the worker polls).
    pub fn polled(&self) -> bool {
        self.page.is_some()
    }

    /// Takes a new tail the host stored in the doorbell page, if it changed since the
    /// last look, with the rule of [`SubmissionQueue::ring`]; an out-of-range value is
    /// ignored and returned as the error (to be reported once).
    pub fn refresh_tail(&self) -> Result<(), u32> {
        let Some(v) = self.page.as_ref().and_then(|p| p.changed()) else {
            return Ok(());
        };
        if v >= self.size {
            return Err(v);
        }
        self.doorbell.store(v, Ordering::Release);
        Ok(())
    }

    /// Runs `f` unless the queue is stopped, excluding `stop_and_join` meanwhile (see
    /// `post_gate`). Returns `None` if the queue was stopped.
    pub fn unless_stopped<R>(&self, f: impl FnOnce() -> R) -> Option<R> {
        let _g = lock(&self.post_gate);
        if self.stopped() {
            return None;
        }
        Some(f())
    }

    /// MMIO tail doorbell. Returns false (and ignores the write) if `tail` is out of range.
    pub fn ring(&self, tail: u32) -> bool {
        if tail >= self.size {
            return false;
        }
        self.doorbell.store(tail, Ordering::Release);
        if let Some(p) = &self.page {
            p.set(tail);
        }
        self.kick();
        true
    }

    /// Wakes the worker without changing the tail.
    pub fn kick(&self) {
        *lock(&self.pending) = true;
        self.wake.notify_one();
    }

    /// Blocks until the doorbell rings or the queue stops. Returns false when stopped.
    pub fn wait(&self) -> bool {
        let mut p = lock(&self.pending);
        while !*p && !self.stop.load(Ordering::Acquire) {
            p = self.wake.wait(p).unwrap_or_else(|e| e.into_inner());
        }
        *p = false;
        !self.stop.load(Ordering::Acquire)
    }

    /// Sleeps until the queue is kicked or stopped, at most `d`. Returns false when
    /// stopped.
    pub fn nap(&self, d: Duration) -> bool {
        let mut p = lock(&self.pending);
        if !*p && !self.stop.load(Ordering::Acquire) {
            p = self
                .wake
                .wait_timeout(p, d)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        *p = false;
        !self.stop.load(Ordering::Acquire)
    }

    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Asks the worker to stop and waits for it.
    pub fn stop_and_join(&self) {
        self.stop.store(true, Ordering::Release);
        {
            let _p = lock(&self.pending);
            self.wake.notify_all();
        }
        // Wait for a delayed completion being posted right now.
        drop(lock(&self.post_gate));
        let handle = lock(&self.worker).take();
        if let Some(h) = handle {
            if h.thread().id() != std::thread::current().id() {
                let _ = h.join();
            }
        }
    }

    pub fn set_worker(&self, h: JoinHandle<()>) {
        *lock(&self.worker) = Some(h);
    }

    pub fn set_shadow(&self, s: Option<Shadow>) {
        *lock(&self.shadow) = s;
    }

    pub fn shadow(&self) -> Option<Shadow> {
        *lock(&self.shadow)
    }

    pub fn head(&self) -> u32 {
        self.head.load(Ordering::Acquire)
    }

    /// The doorbell tail (MMIO register value).
    pub fn doorbell(&self) -> u32 {
        self.doorbell.load(Ordering::Acquire)
    }

    /// The current tail: from the shadow buffer when configured, else the MMIO doorbell.
    /// An out-of-range shadow value is ignored.
    pub fn tail(&self, mem: &Mem) -> u32 {
        if let Some(s) = self.shadow() {
            if let Some(t) = s.read_doorbell(mem) {
                if t < self.size {
                    return t;
                }
            }
        }
        self.doorbell()
    }

    /// Fetches the entry at the head and advances the head. `None` if the ring is not in
    /// guest memory.
    pub fn fetch(&self, mem: &Mem) -> Option<Sqe> {
        let head = self.head();
        let mut b = [0u8; 64];
        let addr = self.base.checked_add(head as u64 * SQE_SIZE)?;
        mem.read_slice(&mut b, GuestAddress(addr)).ok()?;
        self.head.store((head + 1) % self.size, Ordering::Release);
        Some(Sqe::parse(&b))
    }

    /// Before sleeping with shadow doorbells: publish EventIdx = head so the host rings the
    /// MMIO doorbell for its next submission, then look again. Returns true if new entries
    /// arrived meanwhile.
    pub fn arm_event_idx(&self, mem: &Mem) -> bool {
        let Some(s) = self.shadow() else {
            return false;
        };
        let head = self.head();
        s.write_event_idx(mem, head);
        fence(Ordering::SeqCst);
        self.tail(mem) != head
    }
}

/// The fields of one completion entry, without the phase tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completion {
    pub dw0: u32,
    pub dw1: u32,
    pub sqhd: u16,
    pub sqid: u16,
    pub cid: u16,
    pub status: Status,
}

struct CqState {
    head: u32,
    tail: u32,
    phase: bool,
    shadow: Option<Shadow>,
    /// An invalid head the host stored in the doorbell page, not yet reported.
    page_error: Option<u32>,
}

/// Why a completion could not be posted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostError {
    /// The queue was stopped (reset or deletion) while waiting for room.
    Stopped,
    /// The ring is not in guest memory.
    Fault,
    /// The ring is full (only from `try_post`).
    Full,
}

/// A completion queue ring.
pub struct CompletionQueue {
    pub id: u16,
    pub base: u64,
    pub size: u32,
    pub vector: u16,
    pub ien: bool,
    state: Mutex<CqState>,
    space: Condvar,
    stop: AtomicBool,
    /// The head doorbell in the shared doorbell page (poll mode).
    page: Option<PageDoorbell>,
    /// `CqState::page_error` is set (so the poller need not take the lock to look).
    page_error: AtomicBool,
}

impl CompletionQueue {
    pub fn new(id: u16, base: u64, size: u32, vector: u16, ien: bool) -> CompletionQueue {
        CompletionQueue {
            id,
            base,
            size,
            vector,
            ien,
            state: Mutex::new(CqState {
                head: 0,
                tail: 0,
                phase: true,
                shadow: None,
                page_error: None,
            }),
            space: Condvar::new(),
            stop: AtomicBool::new(false),
            page: None,
            page_error: AtomicBool::new(false),
        }
    }

    /// The queue's head doorbell also lives in a shared doorbell page (poll mode).
    pub fn with_page(mut self, page: Option<PageDoorbell>) -> CompletionQueue {
        self.page = page;
        self
    }

    /// The host may move the head to `head`: in range, and between the old head and the
    /// tail (over entries posted and not yet consumed).
    fn head_ok(&self, st: &CqState, head: u32) -> bool {
        if head >= self.size {
            return false;
        }
        let posted = (st.tail + self.size - st.head) % self.size;
        let consumed = (head + self.size - st.head) % self.size;
        consumed <= posted
    }

    /// Takes a new head from the doorbell page, if it changed, by the rule of
    /// [`CompletionQueue::ring_head`]; an invalid one is kept for
    /// [`CompletionQueue::refresh_head`] to report. True if the head moved.
    fn take_page_head(&self, st: &mut CqState) -> bool {
        let Some(v) = self.page.as_ref().and_then(|p| p.changed()) else {
            return false;
        };
        if !self.head_ok(st, v) {
            st.page_error = Some(v);
            self.page_error.store(true, Ordering::Release);
            return false;
        }
        let moved = st.head != v;
        st.head = v;
        if moved {
            self.space.notify_all();
        }
        moved
    }

    /// Takes a new head from the doorbell page (poll mode), if it changed. Returns an
    /// invalid value the host stored there (ignored; here or while posting to a full
    /// queue), once, for the caller to report.
    pub fn refresh_head(&self) -> Option<u32> {
        let page = self.page.as_ref()?;
        if !page.differs() && !self.page_error.load(Ordering::Acquire) {
            return None;
        }
        let mut st = lock(&self.state);
        self.take_page_head(&mut st);
        self.page_error.store(false, Ordering::Release);
        st.page_error.take()
    }

    /// MMIO head doorbell. Returns false (and ignores the write) if `head` is out of range.
    /// The new head must lie between the old head and the tail (the entries posted and
    /// not yet consumed); anything else, e.g. moving the head of an empty queue, is an
    /// invalid doorbell value.
    pub fn ring_head(&self, head: u32) -> bool {
        let mut st = lock(&self.state);
        if !self.head_ok(&st, head) {
            return false;
        }
        st.head = head;
        if let Some(p) = &self.page {
            p.set(head);
        }
        drop(st);
        self.space.notify_all();
        true
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        let _st = lock(&self.state);
        self.space.notify_all();
    }

    pub fn set_shadow(&self, s: Option<Shadow>) {
        lock(&self.state).shadow = s;
    }

    /// (head, tail, phase) — for tests and diagnostics.
    pub fn pointers(&self) -> (u32, u32, bool) {
        let st = lock(&self.state);
        (st.head, st.tail, st.phase)
    }

    /// Writes one completion entry, waiting while the ring is full. The phase tag is
    /// written last, with release ordering, so the host never sees a half-written entry.
    /// `cancelled` lets a stopping submission queue give up waiting for room.
    pub fn post(
        &self,
        mem: &Mem,
        c: &Completion,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<(), PostError> {
        self.post_inner(mem, c, cancelled, true)
    }

    /// Like `post`, but returns `PostError::Full` at once instead of waiting for room.
    pub fn try_post(&self, mem: &Mem, c: &Completion) -> Result<(), PostError> {
        self.post_inner(mem, c, &|| false, false)
    }

    fn post_inner(
        &self,
        mem: &Mem,
        c: &Completion,
        cancelled: &dyn Fn() -> bool,
        wait: bool,
    ) -> Result<(), PostError> {
        let mut st = lock(&self.state);
        // Poll mode: nothing announces the host's new head in the page; look again
        // soon, then less often while the host leaves the queue full.
        let mut recheck = if self.page.is_some() {
            NAP_MIN
        } else {
            CQ_FULL_RECHECK
        };
        loop {
            if self.stop.load(Ordering::Acquire) || cancelled() {
                return Err(PostError::Stopped);
            }
            let next = (st.tail + 1) % self.size;
            if next != st.head {
                break;
            }
            // Poll mode: the host's new head is in the doorbell page, unannounced.
            if self.take_page_head(&mut st) {
                continue;
            }
            if let Some(s) = st.shadow {
                if let Some(h) = s.read_doorbell(mem) {
                    if h < self.size && h != st.head {
                        st.head = h;
                        continue;
                    }
                }
                // Ask the host to ring the MMIO head doorbell when it moves past here.
                s.write_event_idx(mem, st.head);
                fence(Ordering::SeqCst);
                if let Some(h) = s.read_doorbell(mem) {
                    if h < self.size && h != st.head {
                        st.head = h;
                        continue;
                    }
                }
            }
            if !wait {
                return Err(PostError::Full);
            }
            st = self
                .space
                .wait_timeout(st, recheck)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            if self.page.is_some() {
                recheck = (recheck * 2).min(NAP_MAX);
            }
        }
        let addr = self
            .base
            .checked_add(st.tail as u64 * CQE_SIZE)
            .filter(|a| writable(mem, *a, CQE_SIZE))
            .ok_or(PostError::Fault)?;
        let mut first = [0u8; 12];
        first[0..4].copy_from_slice(&c.dw0.to_le_bytes());
        first[4..8].copy_from_slice(&c.dw1.to_le_bytes());
        first[8..10].copy_from_slice(&c.sqhd.to_le_bytes());
        first[10..12].copy_from_slice(&c.sqid.to_le_bytes());
        mem.write_slice(&first, GuestAddress(addr))
            .map_err(|_| PostError::Fault)?;
        let dw3 = c.cid as u32 | ((st.phase as u32) << 16) | ((c.status.0 as u32) << 17);
        fence(Ordering::Release);
        mem.store(dw3, GuestAddress(addr + 12), Ordering::Release)
            .map_err(|_| PostError::Fault)?;
        st.tail = (st.tail + 1) % self.size;
        if st.tail == 0 {
            st.phase = !st.phase;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nvme::spec::status;
    use std::sync::Arc;

    fn mem() -> Mem {
        Mem::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap()
    }

    fn c(cid: u16) -> Completion {
        Completion {
            dw0: 0xaabb,
            dw1: 0,
            sqhd: 3,
            sqid: 1,
            cid,
            status: status::INVALID_FIELD.dnr(),
        }
    }

    #[test]
    fn completion_phase_and_wrap() {
        let m = mem();
        let cq = CompletionQueue::new(1, 0x1000, 2, 0, true);
        cq.post(&m, &c(7), &|| false).unwrap();
        let dw3: u32 = m.read_obj(GuestAddress(0x1000 + 12)).unwrap();
        assert_eq!(dw3 & 0xffff, 7);
        assert_eq!((dw3 >> 16) & 1, 1, "first pass has phase 1");
        assert_eq!((dw3 >> 17) as u16, status::INVALID_FIELD.dnr().0);
        assert_eq!(m.read_obj::<u32>(GuestAddress(0x1000)).unwrap(), 0xaabb);
        assert_eq!(
            m.read_obj::<u32>(GuestAddress(0x1008)).unwrap(),
            3 | (1 << 16)
        );
        // The ring (2 entries) is now full until the host moves the head.
        cq.ring_head(1);
        cq.post(&m, &c(8), &|| false).unwrap();
        assert_eq!(cq.pointers(), (1, 0, false));
        cq.ring_head(0);
        cq.post(&m, &c(9), &|| false).unwrap();
        let dw3: u32 = m.read_obj(GuestAddress(0x1000 + 12)).unwrap();
        assert_eq!(dw3 & 0xffff, 9);
        assert_eq!((dw3 >> 16) & 1, 0, "second pass has phase 0");
        assert!(!cq.ring_head(2), "out-of-range head is ignored");
    }

    #[test]
    fn full_queue_waits_for_head_doorbell_and_stops() {
        let m = Arc::new(mem());
        let cq = Arc::new(CompletionQueue::new(1, 0x1000, 2, 0, true));
        cq.post(&m, &c(1), &|| false).unwrap();
        let (cq2, m2) = (cq.clone(), m.clone());
        let t = std::thread::spawn(move || cq2.post(&m2, &c(2), &|| false));
        std::thread::sleep(Duration::from_millis(20));
        assert!(!t.is_finished(), "post must wait while the ring is full");
        cq.ring_head(1);
        assert_eq!(t.join().unwrap(), Ok(()));
        let (cq2, m2) = (cq.clone(), m.clone());
        let t = std::thread::spawn(move || cq2.post(&m2, &c(3), &|| false));
        std::thread::sleep(Duration::from_millis(20));
        cq.stop();
        assert_eq!(t.join().unwrap(), Err(PostError::Stopped));
    }

    #[test]
    fn try_post_does_not_wait_and_the_gate_stops_posts() {
        let m = mem();
        let cq = CompletionQueue::new(1, 0x1000, 2, 0, true);
        cq.try_post(&m, &c(1)).unwrap();
        assert_eq!(cq.try_post(&m, &c(2)), Err(PostError::Full));
        cq.ring_head(1);
        cq.try_post(&m, &c(2)).unwrap();
        let sq = SubmissionQueue::new(1, 1, 0x2000, 4);
        assert_eq!(sq.unless_stopped(|| 5), Some(5));
        sq.stop_and_join();
        assert_eq!(sq.unless_stopped(|| 5), None);
    }

    #[test]
    fn shadow_head_frees_space_and_event_idx_is_armed() {
        let m = mem();
        let cq = CompletionQueue::new(1, 0x1000, 2, 0, true);
        let sh = Shadow::for_queue(0x8000, 0x9000, 1, true);
        assert_eq!(
            sh,
            Shadow {
                doorbell: 0x800c,
                event_idx: 0x900c
            }
        );
        cq.set_shadow(Some(sh));
        cq.post(&m, &c(1), &|| false).unwrap();
        m.write_obj(1u32, GuestAddress(0x800c)).unwrap();
        cq.post(&m, &c(2), &|| false).unwrap();
        assert_eq!(cq.pointers().0, 1);

        let sq = SubmissionQueue::new(1, 1, 0x2000, 4);
        sq.set_shadow(Some(Shadow::for_queue(0x8000, 0x9000, 1, false)));
        m.write_obj(2u32, GuestAddress(0x8008)).unwrap();
        assert!(sq.ring(0));
        assert_eq!(sq.tail(&m), 2, "shadow tail wins over the MMIO value");
        sq.fetch(&m).unwrap();
        sq.fetch(&m).unwrap();
        assert!(!sq.arm_event_idx(&m));
        assert_eq!(m.read_obj::<u32>(GuestAddress(0x9008)).unwrap(), 2);
        m.write_obj(3u32, GuestAddress(0x8008)).unwrap();
        assert!(sq.arm_event_idx(&m));
        assert!(!sq.ring(4), "out-of-range tail is ignored");
    }
}
