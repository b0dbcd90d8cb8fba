//! The vhost-user back end of one disk for one connection: features, configuration
//! space, and one worker per virtqueue (vhost-user-backend's `VringEpollHandler`, one
//! queue per thread) woken by that queue's kick eventfd. Idle workers sleep in
//! `epoll_wait`: an idle disk uses no CPU.
//!
//! A new [`BlkBackend`] is made for every connection (see `server.rs`); the disk and
//! its volume outlive it.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use vhost::vhost_user::message::{VhostUserProtocolFeatures, VhostUserVirtioFeatures};
use vhost_user_backend::{VhostUserBackend, VringT};
use virtio_queue::QueueT;
use vm_memory::{GuestAddressSpace, GuestMemoryAtomic};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::event::{
    new_event_consumer_and_notifier, EventConsumer, EventFlag, EventNotifier,
};

use crate::hooks::{Completed, Hooks, Transport};

use super::completion::{post, Vring};
use super::request::{self, Exec, Mem};
use super::spec;
use super::timer::{Delayed, Timer};
use super::Disk;

/// One disk's back end for one connection.
pub struct BlkBackend {
    disk: Arc<Disk>,
    hooks: Arc<dyn Hooks>,
    mem: GuestMemoryAtomic<Mem>,
    event_idx: AtomicBool,
    acked: AtomicU64,
    timer: Timer,
}

impl BlkBackend {
    /// `mem` must be the memory handed to the daemon (the handler replaces its
    /// contents on SET_MEM_TABLE).
    pub fn new(disk: Arc<Disk>, hooks: Arc<dyn Hooks>, mem: GuestMemoryAtomic<Mem>) -> BlkBackend {
        BlkBackend {
            timer: Timer::new(hooks.clone()),
            disk,
            hooks,
            mem,
            event_idx: AtomicBool::new(false),
            acked: AtomicU64::new(0),
        }
    }

    /// Ends this connection's delayed completions (called when it is gone).
    pub fn disconnect(&self) {
        self.timer.stop();
    }

    /// Runs every available request of `vring` (virtqueue `queue`); returns how many.
    fn process(&self, vring: &Vring, queue: u16) -> usize {
        let mut n = 0usize;
        let mem = self.mem.memory();
        let fua = !spec::has_flush(self.acked.load(Ordering::Acquire));
        let x = Exec {
            disk: &self.disk,
            hooks: &*self.hooks,
            fua,
            queue,
        };
        loop {
            let chain = vring
                .get_mut()
                .get_queue_mut()
                .pop_descriptor_chain(mem.clone());
            let Some(chain) = chain else { break };
            n += 1;
            let fetched = self.hooks.observing().then(Instant::now);
            let head = chain.head_index();
            let out = request::handle(&x, &mem, chain);
            let done = out.op.map(|op| Completed {
                transport: Transport::VirtioBlk,
                kind: op.kind,
                queue,
                tag: head,
                opcode: op.opcode,
                nsid: op.nsid,
                block: out.block,
                copy: None,
                admin: None,
                zone: None,
                status: out.status.map_or(spec::S_IOERR as u16, u16::from),
                dw0: 0,
                dw1: 0,
                fetched,
            });
            let delay = out.op.and_then(|op| self.hooks.delay(&op, out.blocks));
            match delay {
                Some(d) if !d.is_zero() => self.timer.add(Delayed {
                    due: Instant::now() + d,
                    vring: vring.clone(),
                    queue,
                    head,
                    len: out.used_len,
                    done,
                }),
                _ => post(vring, head, out.used_len, &*self.hooks, done),
            }
        }
        n
    }
}

impl VhostUserBackend for BlkBackend {
    type Bitmap = ();
    type Vring = Vring;

    fn num_queues(&self) -> usize {
        self.disk.queues as usize
    }

    fn max_queue_size(&self) -> usize {
        spec::MAX_QUEUE_SIZE
    }

    fn features(&self) -> u64 {
        spec::features(self.disk.read_only) | VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits()
    }

    fn acked_features(&self, features: u64) {
        self.acked.store(features, Ordering::Release);
    }

    fn protocol_features(&self) -> VhostUserProtocolFeatures {
        VhostUserProtocolFeatures::CONFIG
            | VhostUserProtocolFeatures::MQ
            | VhostUserProtocolFeatures::REPLY_ACK
    }

    fn set_event_idx(&self, enabled: bool) {
        self.event_idx.store(enabled, Ordering::Release);
    }

    fn get_config(&self, offset: u32, size: u32) -> Vec<u8> {
        match spec::config_read(&self.disk.geometry(), offset, size) {
            Some(v) => v,
            None => {
                log::warn!(
                    "vhost-user-blk ns{}: GET_CONFIG offset {offset} size {size} is outside the configuration space",
                    self.disk.nsid
                );
                Vec::new()
            }
        }
    }

    fn set_config(&self, offset: u32, buf: &[u8]) -> io::Result<()> {
        log::warn!(
            "vhost-user-blk ns{}: SET_CONFIG offset {offset} ({} bytes) refused: nothing is writable",
            self.disk.nsid,
            buf.len()
        );
        Err(io::Error::from(io::ErrorKind::PermissionDenied))
    }

    fn update_memory(&self, _mem: GuestMemoryAtomic<Mem>) -> io::Result<()> {
        // The handler updated the GuestMemoryAtomic this back end shares.
        Ok(())
    }

    /// One worker thread per virtqueue.
    fn queues_per_thread(&self) -> Vec<u64> {
        (0..self.disk.queues).map(|q| 1u64 << q).collect()
    }

    fn exit_event(&self, _thread_index: usize) -> Option<(EventConsumer, EventNotifier)> {
        match new_event_consumer_and_notifier(EventFlag::NONBLOCK | EventFlag::CLOEXEC) {
            Ok(p) => Some(p),
            Err(e) => {
                log::warn!("vhost-user-blk: cannot make an exit eventfd: {e}");
                None
            }
        }
    }

    fn stop_vring(&self, queue_index: u32) -> io::Result<()> {
        self.timer
            .flush(Some(u16::try_from(queue_index).unwrap_or(u16::MAX)));
        Ok(())
    }

    fn handle_event(
        &self,
        device_event: u16,
        evset: EventSet,
        vrings: &[Vring],
        thread_id: usize,
    ) -> io::Result<()> {
        // Errors here would end the worker for the rest of the connection: log instead.
        if evset != EventSet::IN {
            log::warn!("vhost-user-blk: unexpected event set {evset:?} on queue {thread_id}");
            return Ok(());
        }
        let Some(vring) = vrings.get(device_event as usize) else {
            log::warn!("vhost-user-blk: event {device_event} for no vring (queue {thread_id})");
            return Ok(());
        };
        // With one queue per thread, the thread index is the virtqueue index.
        let queue = u16::try_from(thread_id).unwrap_or(u16::MAX);
        if self.event_idx.load(Ordering::Acquire) {
            // Process, re-enable notifications, and go again if the driver added
            // requests meanwhile (the virtio-queue examples' loop). An avail index that
            // says "more" while nothing can be popped (a bad index) ends the loop after
            // a few empty rounds instead of spinning.
            let mut empty_rounds = 0;
            loop {
                if let Err(e) = vring.disable_notification() {
                    log::warn!("vhost-user-blk: queue {queue}: disable notification: {e}");
                }
                if self.process(vring, queue) == 0 {
                    empty_rounds += 1;
                } else {
                    empty_rounds = 0;
                }
                match vring.enable_notification() {
                    Ok(true) if empty_rounds >= 3 => {
                        log::warn!(
                            "vhost-user-blk: queue {queue}: the avail index announces requests that cannot be fetched; waiting for the next kick"
                        );
                        break;
                    }
                    Ok(true) => continue,
                    Ok(false) => break,
                    Err(e) => {
                        log::warn!("vhost-user-blk: queue {queue}: enable notification: {e}");
                        break;
                    }
                }
            }
        } else {
            self.process(vring, queue);
        }
        Ok(())
    }
}
