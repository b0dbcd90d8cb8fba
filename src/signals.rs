//! SIGINT and SIGTERM, turned into an orderly stop (socket removed, stores dropped).
//! This module owns the `unsafe` of signal masks.

use std::io;

use crate::vfio_user::StopHandle;

fn stop_set() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; sigemptyset/sigaddset initialise it in place.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        set
    }
}

/// Blocks SIGINT and SIGTERM in the calling thread and every thread it starts later.
/// Call first thing in `main`, before any thread exists.
pub fn block() -> io::Result<()> {
    let set = stop_set();
    // SAFETY: set is a valid, initialised signal set; the old mask is not wanted.
    let r = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    Ok(())
}

/// Starts a thread that waits for SIGINT/SIGTERM (blocked by [`block`]) and stops
/// the server when one arrives.
pub fn stop_on_signal(stop: StopHandle) -> io::Result<()> {
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || loop {
            let set = stop_set();
            let mut sig: libc::c_int = 0;
            // SAFETY: set is initialised and sig is a valid out-parameter.
            if unsafe { libc::sigwait(&set, &mut sig) } == 0 {
                log::info!("signal {sig}: stopping");
                stop.stop();
                return;
            }
        })?;
    Ok(())
}
