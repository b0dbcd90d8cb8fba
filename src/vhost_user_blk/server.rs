//! The socket of one disk: accepts one vhost-user front end at a time, serves it with a
//! fresh [`BlkBackend`] and `VhostUserDaemon`, and when it goes away (QEMU quit, crashed
//! or sent something the protocol handler refused) stops that connection's workers and
//! accepts the next one on the same path. The disk and its volume stay.

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use vhost::vhost_user::Listener;
use vhost_user_backend::{ShutdownHandle, VhostUserDaemon};
use vm_memory::{GuestMemoryAtomic, GuestMemoryMmap};
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::EventFd;

use crate::hooks::Hooks;

use super::backend::BlkBackend;
use super::Disk;

#[derive(Default)]
struct State {
    stopping: bool,
    conn: Option<ShutdownHandle>,
}

struct Control {
    state: Mutex<State>,
    /// Written by `stop`: wakes the wait for the next connection.
    stop: EventFd,
}

impl Control {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A disk being served on its own thread. Stops (and removes its socket) when dropped.
pub struct RunningDisk {
    control: Arc<Control>,
    thread: Option<JoinHandle<()>>,
    path: PathBuf,
}

impl RunningDisk {
    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Ends the current connection, stops accepting and waits for the thread.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        {
            let mut st = self.control.lock();
            st.stopping = true;
            if let Some(c) = &st.conn {
                c.shutdown();
            }
        }
        // Wakes the wait for a connection (and, should the loop already be in accept,
        // a connection does); the loop sees `stopping` and ends.
        let _ = self.control.stop.write(1);
        let _ = UnixStream::connect(&self.path);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for RunningDisk {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

/// Binds `path` (refusing if another process listens there, replacing a stale socket).
fn bind(path: &Path) -> io::Result<Listener> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ));
        }
        if UnixStream::connect(path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("another process is listening on {}", path.display()),
            ));
        }
        log::info!("removing stale socket {}", path.display());
        std::fs::remove_file(path)?;
    }
    Listener::new(path, false).map_err(io::Error::other)
}

/// Binds `socket` and serves `disk` on a new thread, one connection after another.
/// `hooks` sees every request (inject, delay, completed).
pub fn spawn(disk: Arc<Disk>, socket: &Path, hooks: Arc<dyn Hooks>) -> io::Result<RunningDisk> {
    // A front end shrinking the file behind its memory regions must not kill vnvme.
    crate::guest_faults::install();
    let listener = bind(socket)?;
    let control = Arc::new(Control {
        state: Mutex::new(State::default()),
        stop: EventFd::new(libc::EFD_NONBLOCK)?,
    });
    let waiter = Waiter::new(&listener, &control.stop)?;
    let c = control.clone();
    let thread = std::thread::Builder::new()
        .name(format!("vhost-user-blk-ns{}", disk.nsid))
        .spawn(move || serve(listener, &waiter, &disk, &hooks, &c))?;
    Ok(RunningDisk {
        control,
        thread: Some(thread),
        path: socket.to_path_buf(),
    })
}

/// Sleeps until a front end connects or `stop` is written.
struct Waiter(Epoll);

const LISTENER: u64 = 0;
const STOP: u64 = 1;

impl Waiter {
    fn new(listener: &Listener, stop: &EventFd) -> io::Result<Waiter> {
        let ep = Epoll::new()?;
        for (fd, id) in [(listener.as_raw_fd(), LISTENER), (stop.as_raw_fd(), STOP)] {
            ep.ctl(ControlOperation::Add, fd, EpollEvent::new(EventSet::IN, id))?;
        }
        Ok(Waiter(ep))
    }

    /// True when a connection is pending, false when stopping.
    fn wait(&self) -> bool {
        let mut ev = [EpollEvent::default(); 2];
        loop {
            match self.0.wait(-1, &mut ev) {
                Ok(n) => {
                    if ev[..n].iter().any(|e| e.data() == STOP) {
                        return false;
                    }
                    if n > 0 {
                        return true;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::warn!("vhost-user-blk: epoll_wait: {e}; accepting directly");
                    return true;
                }
            }
        }
    }
}

fn serve(
    mut listener: Listener,
    waiter: &Waiter,
    disk: &Arc<Disk>,
    hooks: &Arc<dyn Hooks>,
    control: &Control,
) {
    let name = format!("vhost-user-blk ns{}", disk.nsid);
    loop {
        if control.lock().stopping || !waiter.wait() || control.lock().stopping {
            return;
        }
        let mem = GuestMemoryAtomic::new(GuestMemoryMmap::new());
        let backend = Arc::new(BlkBackend::new(disk.clone(), hooks.clone(), mem.clone()));
        let mut daemon = match VhostUserDaemon::new(name.clone(), backend.clone(), mem) {
            Ok(d) => d,
            Err(e) => {
                log::error!("{name}: cannot start the vring workers: {e}; retrying in 1 s");
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        let end_workers = |daemon: &VhostUserDaemon<Arc<BlkBackend>>| {
            for h in daemon.get_epoll_handlers() {
                h.send_exit_event();
            }
            backend.disconnect();
        };
        if let Err(e) = daemon.start(&mut listener) {
            end_workers(&daemon);
            if control.lock().stopping {
                return;
            }
            log::warn!("{name}: accept failed: {e}; retrying");
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        {
            let mut st = control.lock();
            if st.stopping {
                daemon.request_shutdown();
            } else {
                st.conn = daemon.shutdown_handle();
                log::info!("{name}: front end connected");
            }
        }
        let r = daemon.wait();
        control.lock().conn = None;
        end_workers(&daemon);
        match r {
            Ok(())
            | Err(vhost_user_backend::Error::HandleRequest(
                vhost::vhost_user::Error::Disconnected | vhost::vhost_user::Error::PartialMessage,
            )) => log::info!("{name}: front end disconnected; waiting for the next one"),
            Err(e) => log::warn!("{name}: connection ended: {e}; waiting for the next one"),
        }
    }
}
