//! Doorbells as shared memory (`--ctrl poll_us=N`): the transport lets the client map
//! BAR0's doorbell area, so the host's doorbell writes land in memory and no message
//! (no trap) tells the device. The model reads them through [`DoorbellMemory`] — the
//! transport's mapping, or plain atomics ([`LocalDoorbells`]) in tests — and the queue
//! workers poll them (`Queues::wait_doorbell`): for the poll window after a queue's last
//! command, then in naps of an eighth of the time the queue has been idle (from
//! [`NAP_MIN`] to [`NAP_MAX`]), re-reading the page after each, so an idle device costs
//! 100 wake-ups a second per queue and a command after an idle time t waits about t/8
//! (at most [`NAP_MAX`]) longer than it would with trapped doorbells.
//!
//! A value the host stores there is taken like a trapped doorbell write, checked by the
//! same rules (an invalid one is ignored and raises the same Error event), once per
//! change of the word. A trapped write (a client that does not map the area) is also
//! stored in the word, so the word always holds the last doorbell write either way.

#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Shortest nap once the poll window is over.
pub const NAP_MIN: Duration = Duration::from_micros(100);
/// Longest nap: the most a command that arrives after a long idle waits for the worker
/// to look again (reached after 80 ms of idle).
pub const NAP_MAX: Duration = Duration::from_millis(10);
/// Largest poll window `--ctrl poll_us` accepts (one second).
pub const MAX_POLL_US: u32 = 1_000_000;

/// The doorbell registers as memory the host writes directly: doorbell `i` is the 32-bit
/// register at BAR0 offset 0x1000 + 4·i (CAP.DSTRD = 0: SQ y's tail is doorbell 2y, CQ
/// y's head 2y + 1). Loads and stores are atomic (acquire / release): the host writes
/// concurrently.
pub trait DoorbellMemory: Send + Sync {
    /// Number of doorbells.
    fn count(&self) -> usize;
    /// Doorbell `i`; 0 if `i` is out of range.
    fn load(&self, i: usize) -> u32;
    /// Sets doorbell `i`; ignored if `i` is out of range.
    fn store(&self, i: usize, v: u32);
}

/// Doorbell memory in this process only (tests, the in-process host bus).
pub struct LocalDoorbells(Box<[AtomicU32]>);

impl LocalDoorbells {
    pub fn new(count: usize) -> LocalDoorbells {
        LocalDoorbells((0..count).map(|_| AtomicU32::new(0)).collect())
    }
}

impl DoorbellMemory for LocalDoorbells {
    fn count(&self) -> usize {
        self.0.len()
    }
    fn load(&self, i: usize) -> u32 {
        self.0.get(i).map_or(0, |w| w.load(Ordering::Acquire))
    }
    fn store(&self, i: usize, v: u32) {
        if let Some(w) = self.0.get(i) {
            w.store(v, Ordering::Release);
        }
    }
}

/// One queue's doorbell in the shared memory, with the value the device last took from
/// it (so each change is taken once).
pub struct PageDoorbell {
    mem: Arc<dyn DoorbellMemory>,
    index: usize,
    seen: AtomicU32,
}

impl PageDoorbell {
    /// Submission queue `qid`'s tail doorbell, reset to 0.
    pub fn sq_tail(mem: Arc<dyn DoorbellMemory>, qid: u16) -> PageDoorbell {
        PageDoorbell::at(mem, 2 * qid as usize)
    }

    /// Completion queue `qid`'s head doorbell, reset to 0.
    pub fn cq_head(mem: Arc<dyn DoorbellMemory>, qid: u16) -> PageDoorbell {
        PageDoorbell::at(mem, 2 * qid as usize + 1)
    }

    fn at(mem: Arc<dyn DoorbellMemory>, index: usize) -> PageDoorbell {
        // A new queue's doorbell is 0, whatever an earlier queue (or the host) left there.
        mem.store(index, 0);
        PageDoorbell {
            mem,
            index,
            seen: AtomicU32::new(0),
        }
    }

    /// The host's value if it changed since the last call (or [`PageDoorbell::set`]).
    pub fn changed(&self) -> Option<u32> {
        let v = self.mem.load(self.index);
        if v == self.seen.load(Ordering::Relaxed) {
            return None;
        }
        self.seen.store(v, Ordering::Relaxed);
        Some(v)
    }

    /// True if the word differs from the value last taken (without taking it).
    pub fn differs(&self) -> bool {
        self.mem.load(self.index) != self.seen.load(Ordering::Relaxed)
    }

    /// A trapped doorbell write the device accepted: the word holds it too.
    pub fn set(&self, v: u32) {
        self.mem.store(self.index, v);
        self.seen.store(v, Ordering::Relaxed);
    }
}

/// Sets every doorbell to 0 (a controller reset).
pub fn clear(mem: &dyn DoorbellMemory) {
    for i in 0..mem.count() {
        mem.store(i, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_change_is_taken_once_and_trapped_writes_are_mirrored() {
        let mem = Arc::new(LocalDoorbells::new(8));
        mem.store(2, 9);
        let d = PageDoorbell::sq_tail(mem.clone(), 1);
        assert_eq!(mem.load(2), 0, "a new queue's doorbell starts at 0");
        assert_eq!(d.changed(), None);
        mem.store(2, 5);
        assert!(d.differs());
        assert_eq!(d.changed(), Some(5));
        assert_eq!(d.changed(), None, "taken once");
        d.set(7);
        assert_eq!(mem.load(2), 7);
        assert_eq!(
            d.changed(),
            None,
            "a mirrored trapped write is not taken again"
        );
        let h = PageDoorbell::cq_head(mem.clone(), 1);
        mem.store(3, 4);
        assert_eq!(h.changed(), Some(4));
        // Out of range: reads 0, stores ignored.
        assert_eq!(mem.load(100), 0);
        mem.store(100, 1);
        clear(&*mem);
        assert!((0..8).all(|i| mem.load(i) == 0));
    }
}
