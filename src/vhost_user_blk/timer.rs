//! Delayed completions (the hooks' latency, [`crate::hooks::Hooks::delay`]): one thread
//! per connection, started at the first delay, that sleeps on a condition variable
//! until the next entry is due and then posts it. Idle, it uses no CPU.
//!
//! The request has already run (data moved, status byte written) when its completion
//! is queued here; only the used-ring entry and the notification wait. Stopping a vring
//! (GET_VRING_BASE) posts that vring's entries at once; the end of the connection drops
//! what is left.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Instant;

use crate::hooks::{Completed, Hooks};

use super::completion::{post, Vring};

/// One completion waiting for its time.
pub struct Delayed {
    pub due: Instant,
    pub vring: Vring,
    pub queue: u16,
    pub head: u16,
    pub len: u32,
    pub done: Option<Completed>,
}

struct Entry {
    seq: u64,
    d: Delayed,
}

impl PartialEq for Entry {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Entry {
    /// Reversed: the heap's top is the earliest due (then the first queued).
    fn cmp(&self, o: &Self) -> Ordering {
        (o.d.due, o.seq).cmp(&(self.d.due, self.seq))
    }
}

#[derive(Default)]
struct State {
    heap: BinaryHeap<Entry>,
    seq: u64,
    stop: bool,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    hooks: Arc<dyn Hooks>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The delay timer of one connection.
pub struct Timer {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Timer {
    pub fn new(hooks: Arc<dyn Hooks>) -> Timer {
        Timer {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                wake: Condvar::new(),
                hooks,
            }),
            thread: Mutex::new(None),
        }
    }

    /// Queues a completion; starts the thread on first use. If the thread cannot be
    /// started (or the timer is stopped), the completion is posted now.
    pub fn add(&self, d: Delayed) {
        {
            let mut st = self.shared.lock();
            if st.stop {
                drop(st);
                post(&d.vring, d.head, d.len, &*self.shared.hooks, d.done);
                return;
            }
            st.seq += 1;
            let seq = st.seq;
            st.heap.push(Entry { seq, d });
        }
        self.shared.wake.notify_all();
        let mut t = self.thread.lock().unwrap_or_else(|p| p.into_inner());
        if t.is_none() {
            let shared = self.shared.clone();
            match std::thread::Builder::new()
                .name("vhost-user-blk-timer".into())
                .spawn(move || run(&shared))
            {
                Ok(h) => *t = Some(h),
                Err(e) => {
                    log::warn!("vhost-user-blk: cannot start the delay timer ({e}); posting now");
                    drop(t);
                    self.flush(None);
                }
            }
        }
    }

    /// Posts at once every entry of `queue` (`None`: of every queue).
    pub fn flush(&self, queue: Option<u16>) {
        let due: Vec<Delayed> = {
            let mut st = self.shared.lock();
            let all = std::mem::take(&mut st.heap).into_vec();
            let (now, keep): (Vec<Entry>, Vec<Entry>) = all
                .into_iter()
                .partition(|e| queue.is_none_or(|q| e.d.queue == q));
            st.heap = keep.into();
            let mut now = now;
            now.sort_by(|a, b| b.cmp(a));
            now.into_iter().map(|e| e.d).collect()
        };
        for d in due {
            post(&d.vring, d.head, d.len, &*self.shared.hooks, d.done);
        }
    }

    /// Stops the thread and drops what it holds (the connection is gone).
    pub fn stop(&self) {
        {
            let mut st = self.shared.lock();
            st.stop = true;
            let n = st.heap.len();
            if n > 0 {
                log::info!("vhost-user-blk: dropping {n} delayed completions");
            }
            st.heap.clear();
        }
        self.shared.wake.notify_all();
        let t = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = t {
            let _ = t.join();
        }
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(shared: &Shared) {
    let mut st = shared.lock();
    loop {
        if st.stop {
            return;
        }
        let now = Instant::now();
        let next = st.heap.peek().map(|e| e.d.due);
        match next {
            None => {
                st = shared.wake.wait(st).unwrap_or_else(|p| p.into_inner());
            }
            Some(due) if due <= now => {
                if let Some(e) = st.heap.pop() {
                    drop(st);
                    let d = e.d;
                    post(&d.vring, d.head, d.len, &*shared.hooks, d.done);
                    st = shared.lock();
                }
            }
            Some(due) => {
                st = shared
                    .wake
                    .wait_timeout(st, due - now)
                    .map(|(g, _)| g)
                    .unwrap_or_else(|p| p.into_inner().0);
            }
        }
    }
}
