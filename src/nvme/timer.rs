//! The delay timer of one controller: completions held back by the latency model wait
//! here, in a heap ordered by due time, and one thread posts each when it is due. The
//! thread sleeps on a condition variable until the earliest deadline (or a new, earlier
//! one): no polling. It is started with the first delayed completion and stopped when
//! the controller is dropped; it holds only a weak reference to the controller.

use std::cmp::Ordering as CmpOrdering;
use std::collections::BinaryHeap;
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::controller::{lock, Delayed, Inner};

struct Entry {
    due: Instant,
    seq: u64,
    job: Delayed,
}

impl PartialEq for Entry {
    fn eq(&self, o: &Self) -> bool {
        (self.due, self.seq) == (o.due, o.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, o: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(o))
    }
}
impl Ord for Entry {
    /// Reversed: the heap's greatest entry is the earliest (then first scheduled).
    fn cmp(&self, o: &Self) -> CmpOrdering {
        (o.due, o.seq).cmp(&(self.due, self.seq))
    }
}

#[derive(Default)]
struct State {
    heap: BinaryHeap<Entry>,
    seq: u64,
    shutdown: bool,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

/// What the timer thread does with a due job: `Some(job)` to try again later.
pub(crate) type Poster = fn(&Arc<Inner>, Delayed) -> Option<Delayed>;

/// How long a completion whose queue is full waits before the next attempt. (A full
/// completion queue is the one case that is retried rather than waited for: the timer
/// must not block the other queues' completions on one host that does not reap.)
pub const FULL_RETRY: Duration = Duration::from_millis(1);

#[derive(Default)]
pub(crate) struct Timer {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Timer {
    /// Queues `job` to be posted at `due` by `post`, starting the thread if needed.
    pub fn schedule(&self, inner: &Arc<Inner>, due: Instant, job: Delayed, post: Poster) {
        {
            let mut t = lock(&self.thread);
            if t.is_none() {
                let weak = Arc::downgrade(inner);
                let shared = self.shared.clone();
                match std::thread::Builder::new()
                    .name("vnvme-delay".into())
                    .spawn(move || run(&shared, &weak, post))
                {
                    Ok(h) => *t = Some(h),
                    Err(e) => {
                        log::error!("cannot start the delay timer ({e}): posting at once");
                        drop(t);
                        if let Some(job) = post(inner, job) {
                            log::warn!("delayed completion dropped: its queue is full");
                            drop(job);
                        }
                        return;
                    }
                }
            }
        }
        let mut st = lock(&self.shared.state);
        let seq = st.seq;
        st.seq += 1;
        let earliest = st.heap.peek().is_none_or(|e| due < e.due);
        st.heap.push(Entry { due, seq, job });
        drop(st);
        if earliest {
            self.shared.wake.notify_one();
        }
    }

    /// Drops every waiting job for which `dead` is true (their queue was deleted).
    pub fn purge(&self, dead: impl Fn(&Delayed) -> bool) {
        lock(&self.shared.state).heap.retain(|e| !dead(&e.job));
    }

    /// Jobs waiting (for tests and diagnostics).
    pub fn pending(&self) -> usize {
        lock(&self.shared.state).heap.len()
    }

    /// Stops the thread and drops every waiting job.
    pub fn shutdown(&self) {
        {
            let mut st = lock(&self.shared.state);
            st.shutdown = true;
            st.heap.clear();
        }
        self.shared.wake.notify_all();
        if let Some(h) = lock(&self.thread).take() {
            if h.thread().id() != std::thread::current().id() {
                let _ = h.join();
            }
        }
    }
}

fn run(shared: &Shared, inner: &Weak<Inner>, post: Poster) {
    let mut st = lock(&shared.state);
    loop {
        if st.shutdown {
            return;
        }
        let now = Instant::now();
        match st.heap.peek() {
            None => {
                st = shared.wake.wait(st).unwrap_or_else(|e| e.into_inner());
            }
            Some(e) if e.due > now => {
                let d = e.due - now;
                st = shared
                    .wake
                    .wait_timeout(st, d)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            Some(_) => {
                let Some(e) = st.heap.pop() else { continue };
                drop(st);
                let Some(inner) = inner.upgrade() else {
                    return;
                };
                let retry = post(&inner, e.job);
                drop(inner);
                st = lock(&shared.state);
                if let Some(job) = retry {
                    let seq = st.seq;
                    st.seq += 1;
                    st.heap.push(Entry {
                        due: Instant::now() + FULL_RETRY,
                        seq,
                        job,
                    });
                }
            }
        }
    }
}
