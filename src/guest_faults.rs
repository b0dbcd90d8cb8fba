//! Guest memory that vanishes under the device: a client may shrink the file behind a
//! DMA map (or a vhost-user memory region) after vnvme mapped it. The device's next
//! access to a page past the new end of the file raises SIGBUS (BUS_ADRERR), which would
//! kill the whole process. This module installs a SIGBUS handler that, for such a fault,
//! maps an anonymous zero page over the faulting page and lets the access retry: reads
//! see zeroes, writes land in memory only this process sees. The client broke its own
//! memory; the device keeps running and serves the next command and the next client.
//! Every other SIGBUS keeps its default action (the process dies, as before).
//!
//! This module owns the `unsafe` of the handler; each block has a `// SAFETY:` comment.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;

/// SIGBUS faults repaired so far.
static REPAIRED: AtomicU64 = AtomicU64::new(0);
/// The value of [`REPAIRED`] when it was last reported.
static REPORTED: AtomicU64 = AtomicU64::new(0);

static INSTALL: Once = Once::new();

/// Installs the handler (once per process; later calls do nothing).
pub fn install() {
    INSTALL.call_once(|| {
        // SAFETY: a zeroed sigaction is a valid starting value; the handler is an
        // `extern "C"` function with the SA_SIGINFO signature, and sigemptyset
        // initialises the mask in place.
        let r = unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            let handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                on_sigbus;
            sa.sa_sigaction = handler as libc::sighandler_t;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_NODEFER;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(libc::SIGBUS, &sa, std::ptr::null_mut())
        };
        if r != 0 {
            log::warn!(
                "cannot install the SIGBUS handler ({}): a client that shrinks its guest memory can crash vnvme",
                std::io::Error::last_os_error()
            );
        }
    });
}

/// Faults repaired since the process started.
pub fn repaired() -> u64 {
    REPAIRED.load(Ordering::Relaxed)
}

/// Logs (outside the signal handler) how many faults were repaired since the last call.
pub fn report() {
    let now = REPAIRED.load(Ordering::Relaxed);
    let before = REPORTED.swap(now, Ordering::Relaxed);
    if now > before {
        log::warn!(
            "guest memory shrank under a mapping: {} page fault(s) answered with zero pages \
             (the client truncated the file behind its guest memory)",
            now - before
        );
    }
}

extern "C" fn on_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for a SA_SIGINFO handler; si_addr and
    // si_code are read, nothing is written.
    let (code, addr) = unsafe { ((*info).si_code, (*info).si_addr() as usize) };
    if code == libc::BUS_ADRERR && addr != 0 {
        // SAFETY: sysconf is async-signal-safe in practice (a constant on Linux).
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        let base = addr & !(page - 1);
        // SAFETY: MAP_FIXED replaces exactly the one page that faulted — a page of a
        // file mapping whose backing is gone — with anonymous zero memory of the same
        // size and protection. mmap is a plain system call here.
        let p = unsafe {
            libc::mmap(
                base as *mut libc::c_void,
                page,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                -1,
                0,
            )
        };
        if p as usize == base {
            REPAIRED.fetch_add(1, Ordering::Relaxed);
            return;
        }
    }
    // Not ours (or the repair failed): the default action, as without the handler.
    // SAFETY: resetting the disposition and re-raising are async-signal-safe.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
}
