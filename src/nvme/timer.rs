//! The delay timer of one controller: completions held back by the latency model wait
//! here, in a heap ordered by due time, and one thread posts each when it is due. The
//! thread sleeps on a condition variable until the earliest deadline (or a new, earlier
//! one): no polling. It is started with the first delayed completion and stopped when
//! the controller is dropped; it holds only a weak reference to its owner. It knows
//! neither the controller nor what a job is: the owner (`C`) and the job type (`J`) are
//! parameters.

use std::cmp::Ordering as CmpOrdering;
use std::collections::BinaryHeap;
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::sync::lock;

struct Entry<J> {
    due: Instant,
    seq: u64,
    job: J,
}

impl<J> PartialEq for Entry<J> {
    fn eq(&self, o: &Self) -> bool {
        (self.due, self.seq) == (o.due, o.seq)
    }
}
impl<J> Eq for Entry<J> {}
impl<J> PartialOrd for Entry<J> {
    fn partial_cmp(&self, o: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(o))
    }
}
impl<J> Ord for Entry<J> {
    /// Reversed: the heap's greatest entry is the earliest (then first scheduled).
    fn cmp(&self, o: &Self) -> CmpOrdering {
        (o.due, o.seq).cmp(&(self.due, self.seq))
    }
}

struct State<J> {
    heap: BinaryHeap<Entry<J>>,
    seq: u64,
    shutdown: bool,
}

struct Shared<J> {
    state: Mutex<State<J>>,
    wake: Condvar,
}

/// What the timer thread does with a due job: `Some(job)` to try again later.
pub(crate) type Poster<C, J> = fn(&Arc<C>, J) -> Option<J>;

/// How long a completion whose queue is full waits before the next attempt. (A full
/// completion queue is the one case that is retried rather than waited for: the timer
/// must not block the other queues' completions on one host that does not reap.)
pub const FULL_RETRY: Duration = Duration::from_millis(1);

pub(crate) struct Timer<C, J> {
    shared: Arc<Shared<J>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    owner: std::marker::PhantomData<fn(&C)>,
}

impl<C, J> Default for Timer<C, J> {
    fn default() -> Self {
        Timer {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    heap: BinaryHeap::new(),
                    seq: 0,
                    shutdown: false,
                }),
                wake: Condvar::new(),
            }),
            thread: Mutex::new(None),
            owner: std::marker::PhantomData,
        }
    }
}

impl<C: Send + Sync + 'static, J: Send + 'static> Timer<C, J> {
    /// Queues `job` to be posted at `due` by `post`, starting the thread if needed.
    pub fn schedule(&self, inner: &Arc<C>, due: Instant, job: J, post: Poster<C, J>) {
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
    pub fn purge(&self, dead: impl Fn(&J) -> bool) {
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

fn run<C, J>(shared: &Shared<J>, inner: &Weak<C>, post: Poster<C, J>) {
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
