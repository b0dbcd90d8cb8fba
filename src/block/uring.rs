//! Vectored reads and writes in flight at once on file descriptors: one io_uring per
//! user (an NVMe submission queue worker), a fixed number of slots, each slot one
//! readv/writev between a file and memory the caller keeps alive.
//!
//! Memory is bounded by construction: [`AsyncIo::SLOTS`] slots of at most
//! [`AsyncIo::MAX_SEGMENTS`] iovecs each, allocated once. A request that does not fit
//! (too many segments, no free slot) is refused and the caller does it synchronously.
//!
//! The caller hands over, with each request, an object that keeps the memory behind the
//! segments mapped (for guest memory: the memory snapshot the segments point into); it
//! is dropped only when the kernel has reported the request complete. Dropping an
//! `AsyncIo` waits for every request still in flight for the same reason.
//!
//! This module owns the `unsafe` io_uring needs (the kernel gets raw pointers).

use std::any::Any;
use std::io;
use std::os::fd::RawFd;

use io_uring::{opcode, types, IoUring};
use vm_memory::VolatileSlice;

/// One request in flight.
struct Slot {
    /// The iovecs of the request; their storage must not move until it completes.
    iov: Vec<libc::iovec>,
    /// Keeps the memory behind `iov` mapped until the request completes.
    keep: Option<Box<dyn Any + Send>>,
    busy: bool,
}

/// Why a request was not queued (the caller then does the transfer synchronously).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Every slot is in use.
    Full,
    /// More segments than [`AsyncIo::MAX_SEGMENTS`], or an offset beyond `i64::MAX`.
    TooLarge,
}

/// A finished request: its slot and the kernel's result (bytes transferred).
#[derive(Debug)]
pub struct Finished {
    pub slot: usize,
    pub result: io::Result<usize>,
}

/// An io_uring with a fixed number of slots.
pub struct AsyncIo {
    ring: IoUring,
    slots: Vec<Slot>,
    free: Vec<usize>,
    /// Requests pushed to the submission ring and not yet handed to the kernel.
    unsubmitted: usize,
    inflight: usize,
}

impl AsyncIo {
    /// Requests that can be in flight at once.
    pub const SLOTS: usize = 32;
    /// Most segments one request may have (1 MiB in 4 KiB pages, plus an unaligned end).
    pub const MAX_SEGMENTS: usize = 257;

    /// A new ring, or the reason io_uring cannot be used here (old kernel, seccomp,
    /// locked-memory limits): the caller then does everything synchronously.
    pub fn new() -> io::Result<AsyncIo> {
        let ring = IoUring::new(Self::SLOTS as u32)?;
        let slots = (0..Self::SLOTS)
            .map(|_| Slot {
                iov: Vec::with_capacity(Self::MAX_SEGMENTS),
                keep: None,
                busy: false,
            })
            .collect();
        Ok(AsyncIo {
            ring,
            slots,
            free: (0..Self::SLOTS).rev().collect(),
            unsubmitted: 0,
            inflight: 0,
        })
    }

    /// Requests queued or in flight.
    pub fn inflight(&self) -> usize {
        self.inflight
    }

    /// True if another request can be queued.
    pub fn has_room(&self) -> bool {
        !self.free.is_empty()
    }

    /// Queues a readv (`write` false: file to memory) or writev (memory to file) at
    /// byte `offset` of `fd` over `segments`. `keep` must keep the memory of `segments`
    /// mapped; it is dropped when the request completes. Returns the slot. The request
    /// reaches the kernel at the next [`submit`](Self::submit) or wait.
    ///
    /// The caller guarantees that `fd` stays open until the request completes.
    pub fn queue(
        &mut self,
        fd: RawFd,
        offset: u64,
        write: bool,
        segments: &[VolatileSlice<'_>],
        keep: Box<dyn Any + Send>,
    ) -> Result<usize, Refused> {
        if segments.len() > Self::MAX_SEGMENTS || i64::try_from(offset).is_err() {
            return Err(Refused::TooLarge);
        }
        let Some(&slot) = self.free.last() else {
            return Err(Refused::Full);
        };
        let s = &mut self.slots[slot];
        s.iov.clear();
        for seg in segments {
            // The pointer is taken out of its guard at once: the mapping it points into
            // stays valid because `keep` holds the memory snapshot, not because of the
            // guard (guest memory here is plain mmap, whose guard holds nothing).
            let base = seg.ptr_guard_mut().as_ptr();
            s.iov.push(libc::iovec {
                iov_base: base.cast(),
                iov_len: seg.len(),
            });
        }
        let iov = s.iov.as_ptr();
        let cnt = s.iov.len() as u32;
        let entry = if write {
            opcode::Writev::new(types::Fd(fd), iov, cnt)
                .offset(offset)
                .build()
        } else {
            opcode::Readv::new(types::Fd(fd), iov, cnt)
                .offset(offset)
                .build()
        }
        .user_data(slot as u64);
        if self.ring.submission().is_full() {
            // Cannot happen (the ring has as many entries as there are slots), but an
            // error here must not lose the request: hand what is queued to the kernel.
            if self.submit().is_err() || self.ring.submission().is_full() {
                return Err(Refused::Full);
            }
        }
        // SAFETY: the entry points at `s.iov`, whose heap storage is not touched again
        // until this slot's completion is reaped (`queue` only reuses free slots, and
        // the Vec never reallocates: its capacity is MAX_SEGMENTS and it holds at most
        // that many). Every iovec points into memory that `keep` keeps mapped until the
        // completion is reaped, and the caller keeps `fd` open that long. Drop waits for
        // all completions, so nothing is freed while the kernel may still use it.
        let pushed = unsafe { self.ring.submission().push(&entry) };
        if pushed.is_err() {
            return Err(Refused::Full);
        }
        let s = &mut self.slots[slot];
        s.keep = Some(keep);
        s.busy = true;
        self.free.pop();
        self.unsubmitted += 1;
        self.inflight += 1;
        Ok(slot)
    }

    /// Hands the queued requests to the kernel (buffered I/O on cached pages often
    /// completes during this call).
    pub fn submit(&mut self) -> io::Result<()> {
        if self.unsubmitted == 0 {
            return Ok(());
        }
        loop {
            match self.ring.submit() {
                Ok(_) => {
                    self.unsubmitted = 0;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Collects the requests that have finished into `out` (slot and result); with
    /// `wait`, first blocks until at least one has (when any is in flight).
    pub fn reap(&mut self, wait: bool, out: &mut Vec<Finished>) -> io::Result<()> {
        if wait && self.inflight > 0 && self.ring.completion().is_empty() {
            loop {
                match self.ring.submit_and_wait(1) {
                    Ok(_) => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            }
            self.unsubmitted = 0;
        }
        // The ring and the slots are separate fields: the completions are read and the
        // slots freed in one pass, with no list in between (this runs on every pass).
        let AsyncIo {
            ring,
            slots,
            free,
            inflight,
            ..
        } = self;
        for cqe in ring.completion() {
            let (slot, res) = (cqe.user_data() as usize, cqe.result());
            let Some(s) = slots.get_mut(slot) else {
                continue;
            };
            if !s.busy {
                continue;
            }
            s.busy = false;
            s.keep = None;
            free.push(slot);
            *inflight -= 1;
            let result = if res < 0 {
                Err(io::Error::from_raw_os_error(-res))
            } else {
                Ok(res as usize)
            };
            out.push(Finished { slot, result });
        }
        Ok(())
    }

    /// Waits until nothing is in flight, dropping the results (the queue is going away).
    pub fn drain(&mut self) {
        let mut sink = Vec::new();
        let mut failures = 0;
        while self.inflight > 0 {
            let r = self.submit().and_then(|()| self.reap(true, &mut sink));
            sink.clear();
            if let Err(e) = r {
                failures += 1;
                if failures < 100 {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                    continue;
                }
                log::error!("waiting for I/O in flight failed: {e}; its buffers are leaked");
                // The kernel may still use these buffers: never free their memory.
                for s in &mut self.slots {
                    if let Some(k) = s.keep.take() {
                        std::mem::forget(k);
                    }
                }
                self.inflight = 0;
                return;
            }
        }
    }
}

impl Drop for AsyncIo {
    fn drop(&mut self) {
        self.drain();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, SeekFrom, Write};
    use std::os::fd::AsRawFd;
    use std::sync::Arc;

    fn tmpfile(len: usize) -> std::fs::File {
        let mut f = tempfile();
        let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        f.write_all(&data).unwrap();
        f
    }

    fn tempfile() -> std::fs::File {
        let dir = std::env::temp_dir();
        let p = dir.join(format!(
            "vnvme-uring-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&p)
            .unwrap();
        std::fs::remove_file(&p).unwrap();
        f
    }

    #[test]
    fn reads_and_writes_in_flight_together() {
        let Ok(mut aio) = AsyncIo::new() else {
            eprintln!("SKIP: io_uring is not available on this kernel");
            return;
        };
        let mut f = tmpfile(64 * 1024);
        let keep: Arc<Vec<u8>> = Arc::new(Vec::new());
        let mut bufs: Vec<Vec<u8>> = (0..8).map(|_| vec![0u8; 4096]).collect();
        let mut slots = Vec::new();
        for (k, b) in bufs.iter_mut().enumerate() {
            // SAFETY (test): `b` outlives the request (we reap before it is dropped).
            let s = unsafe { VolatileSlice::new(b.as_mut_ptr(), b.len()) };
            let slot = aio
                .queue(
                    f.as_raw_fd(),
                    (k * 8192) as u64,
                    false,
                    &[s],
                    Box::new(keep.clone()),
                )
                .unwrap();
            slots.push(slot);
        }
        assert_eq!(aio.inflight(), 8);
        aio.submit().unwrap();
        let mut out = Vec::new();
        while out.len() < 8 {
            aio.reap(true, &mut out).unwrap();
        }
        assert_eq!(aio.inflight(), 0);
        for d in &out {
            assert_eq!(d.result.as_ref().unwrap(), &4096);
        }
        for (k, b) in bufs.iter().enumerate() {
            let want: Vec<u8> = (k * 8192..k * 8192 + 4096)
                .map(|i| (i % 251) as u8)
                .collect();
            assert_eq!(b, &want, "buffer {k}");
        }
        // The keep-alive objects were dropped with the completions.
        assert_eq!(Arc::strong_count(&keep), 1);

        // A write of two segments, then read it back through the file.
        let mut a = vec![0xAAu8; 512];
        let mut b = vec![0xBBu8; 1024];
        // SAFETY (test): both buffers outlive the request.
        let segs = unsafe {
            [
                VolatileSlice::new(a.as_mut_ptr(), a.len()),
                VolatileSlice::new(b.as_mut_ptr(), b.len()),
            ]
        };
        aio.queue(f.as_raw_fd(), 100, true, &segs, Box::new(()))
            .unwrap();
        let mut out = Vec::new();
        while out.is_empty() {
            aio.reap(true, &mut out).unwrap();
        }
        assert_eq!(out[0].result.as_ref().unwrap(), &1536);
        let mut back = vec![0u8; 1536];
        f.seek(SeekFrom::Start(100)).unwrap();
        f.read_exact(&mut back).unwrap();
        assert!(back[..512].iter().all(|&x| x == 0xAA));
        assert!(back[512..].iter().all(|&x| x == 0xBB));
    }

    #[test]
    fn slots_and_segments_are_bounded_and_errors_reported() {
        let Ok(mut aio) = AsyncIo::new() else {
            eprintln!("SKIP: io_uring is not available on this kernel");
            return;
        };
        let f = tmpfile(4096);
        let mut buf = vec![0u8; 4096 * (AsyncIo::MAX_SEGMENTS + 1)];
        let segs: Vec<_> = buf
            .chunks_mut(4096)
            // SAFETY (test): `buf` outlives every request.
            .map(|c| unsafe { VolatileSlice::new(c.as_mut_ptr(), c.len()) })
            .collect();
        assert_eq!(
            aio.queue(f.as_raw_fd(), 0, false, &segs, Box::new(())),
            Err(Refused::TooLarge)
        );
        assert_eq!(
            aio.queue(f.as_raw_fd(), u64::MAX, false, &segs[..1], Box::new(())),
            Err(Refused::TooLarge)
        );
        for _ in 0..AsyncIo::SLOTS {
            aio.queue(f.as_raw_fd(), 0, false, &segs[..1], Box::new(()))
                .unwrap();
        }
        assert!(!aio.has_room());
        assert_eq!(
            aio.queue(f.as_raw_fd(), 0, false, &segs[..1], Box::new(())),
            Err(Refused::Full)
        );
        aio.drain();
        assert_eq!(aio.inflight(), 0);
        assert!(aio.has_room());
        // A bad descriptor completes with its error, not a crash.
        aio.queue(-1, 0, false, &segs[..1], Box::new(())).unwrap();
        let mut out = Vec::new();
        while out.is_empty() {
            aio.reap(true, &mut out).unwrap();
        }
        assert_eq!(
            out[0].result.as_ref().unwrap_err().raw_os_error(),
            Some(libc::EBADF)
        );
    }
}
