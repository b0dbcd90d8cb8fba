//! The native side of `vnvme bench io`: one io_uring with a fixed set of equal buffers
//! ("slots"), each with at most one read or write in flight on one file.
//!
//! This module owns the `unsafe` that io_uring needs (the kernel is handed raw pointers
//! into the ring's own buffer); everything else in `bench/` forbids it.

#![deny(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use io_uring::{opcode, types, IoUring};

/// Alignment of every slot (O_DIRECT needs the logical block size; a page covers all).
const ALIGN: usize = 4096;

/// One ring over one file with `slots` buffers of `bs` bytes.
pub struct Ring {
    ring: IoUring,
    file: Arc<File>,
    /// Backing store of the slots; never resized or touched while anything is in flight.
    buf: Vec<u8>,
    /// Offset of slot 0 in `buf` (aligned to [`ALIGN`]).
    base: usize,
    bs: usize,
    busy: Vec<bool>,
    inflight: usize,
}

impl Ring {
    /// A ring of `slots` entries on `file`, buffers of `bs` bytes (a multiple of 4096)
    /// filled with `fill` (non-zero data for writes).
    pub fn new(file: Arc<File>, slots: usize, bs: usize, fill: u8) -> io::Result<Ring> {
        if slots == 0 || bs == 0 || !bs.is_multiple_of(ALIGN) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "slots and a block size that is a multiple of 4096 are needed",
            ));
        }
        let entries = (slots as u32).next_power_of_two().max(2);
        let ring = IoUring::new(entries)?;
        let buf = vec![fill; slots * bs + ALIGN];
        let base = buf.as_ptr().align_offset(ALIGN);
        Ok(Ring {
            ring,
            file,
            buf,
            base,
            bs,
            busy: vec![false; slots],
            inflight: 0,
        })
    }

    pub fn inflight(&self) -> usize {
        self.inflight
    }

    /// Queues a read (or a write) of slot `slot` at byte `offset` of the file; it goes to
    /// the kernel with the next [`Ring::wait`].
    pub fn push(&mut self, slot: usize, write: bool, offset: u64) -> io::Result<()> {
        if self.busy.get(slot) != Some(&false) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("slot {slot} is busy or does not exist"),
            ));
        }
        let start = self.base + slot * self.bs;
        // Vec::as_mut_ptr makes no reference to the bytes (the kernel may be writing others).
        let ptr = self.buf.as_mut_ptr().wrapping_add(start);
        let fd = types::Fd(self.file.as_raw_fd());
        let len = self.bs as u32;
        let entry = if write {
            opcode::Write::new(fd, ptr, len).offset(offset).build()
        } else {
            opcode::Read::new(fd, ptr, len).offset(offset).build()
        }
        .user_data(slot as u64);
        // SAFETY: the entry points at `bs` bytes of slot `slot` inside `self.buf`, which
        // is allocated once, never resized, and outlives every operation in flight (Drop
        // waits for them, or leaks the buffer if they do not finish); `busy` keeps one
        // operation per slot, so the kernel never gets overlapping buffers; the file
        // descriptor stays open as long as `self.file` (held by the ring) does.
        #[allow(unsafe_code)]
        let pushed = unsafe { self.ring.submission().push(&entry) };
        if pushed.is_err() {
            return Err(io::Error::other("submission queue full"));
        }
        self.busy[slot] = true;
        self.inflight += 1;
        Ok(())
    }

    /// Submits what was pushed and waits (at most `timeout`) until at least `want`
    /// completions are there; hands each to `done(slot, result)` (bytes moved or
    /// -errno). Returns how many completed; 0 when the wait timed out.
    pub fn wait(
        &mut self,
        want: usize,
        timeout: Duration,
        mut done: impl FnMut(usize, i32),
    ) -> io::Result<usize> {
        let want = want.min(self.inflight);
        let ts = types::Timespec::from(timeout);
        let args = types::SubmitArgs::new().timespec(&ts);
        match self.ring.submitter().submit_with_args(want, &args) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ETIME) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
            Err(e) => return Err(e),
        }
        let mut n = 0;
        for cqe in self.ring.completion() {
            let slot = cqe.user_data() as usize;
            if let Some(b) = self.busy.get_mut(slot) {
                if *b {
                    *b = false;
                    self.inflight -= 1;
                }
            }
            n += 1;
            done(slot, cqe.result());
        }
        Ok(n)
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.inflight > 0 && Instant::now() < deadline {
            if self
                .wait(self.inflight, Duration::from_millis(100), |_, _| {})
                .is_err()
            {
                break;
            }
        }
        if self.inflight > 0 {
            // The kernel may still write into the buffer: never free it.
            std::mem::forget(std::mem::take(&mut self.buf));
        }
    }
}
