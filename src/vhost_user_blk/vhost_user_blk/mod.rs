//! vhost-user-blk: a block volume served to QEMU's `vhost-user-blk-pci` as a virtio-blk
//! disk, over a vhost-user unix socket (docs/vhost-user-blk.md).
//!
//! Built on rust-vmm's `vhost-user-backend` (the vhost-user protocol, memory table,
//! vrings, one epoll worker per virtqueue) and `virtio-queue` (split rings, descriptor
//! chains). This module adds the virtio-blk device: `spec.rs` (features, configuration
//! space), `request.rs` (descriptor chains -> volume operations), `status.rs` (block
//! errors -> status bytes), `completion.rs` and `timer.rs` (used ring, notifications,
//! delayed completions), `backend.rs` (the `VhostUserBackend`), `server.rs` (the socket,
//! one connection at a time, reconnects). It knows `crate::block` and `crate::hooks`,
//! not NVMe. No `unsafe` here.

#![forbid(unsafe_code)]

use std::sync::Arc;

use crate::block::Volume;

pub mod backend;
pub mod completion;
pub mod request;
pub mod server;
pub mod spec;
pub mod status;
pub mod timer;

#[cfg(test)]
mod tests;

pub use backend::BlkBackend;
pub use server::{spawn, RunningDisk};

/// One virtio-blk disk: a view of a volume.
#[derive(Debug)]
pub struct Disk {
    pub volume: Arc<Volume>,
    /// The namespace id of the volume (names it in logs and hooks).
    pub nsid: u32,
    /// Number of virtqueues (1 to [`spec::MAX_QUEUES`]).
    pub queues: u16,
    /// This view refuses writes (VIRTIO_BLK_F_RO), whether or not the volume does.
    pub read_only: bool,
    /// The GET_ID string.
    pub id: [u8; spec::ID_LEN],
}

impl Disk {
    /// A disk over `volume`; read-only if `read_only` or the volume is. `queues` is
    /// clamped to 1..=MAX_QUEUES (the options refuse other values first).
    pub fn new(
        volume: Arc<Volume>,
        nsid: u32,
        queues: u16,
        read_only: bool,
        id: [u8; spec::ID_LEN],
    ) -> Disk {
        Disk {
            read_only: read_only || volume.read_only(),
            volume,
            nsid,
            queues: queues.clamp(1, spec::MAX_QUEUES),
            id,
        }
    }

    /// What the configuration space shows.
    pub fn geometry(&self) -> spec::Geometry {
        let v = &self.volume;
        spec::Geometry {
            capacity: v.blocks() * (v.block_size() / spec::SECTOR),
            blk_size: v.block_size() as u32,
            num_queues: self.queues,
        }
    }
}
