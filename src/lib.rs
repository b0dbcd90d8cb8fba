//! vnvme: an NVMe controller emulator, served over vfio-user, built for testing Simple
//! Copy; the same namespaces can also be served as virtio-blk disks over vhost-user-blk.
//!
//! Layers, each importing only downward (docs/architecture.md):
//! - wiring: [`cli`], [`config`], [`server`] (opens every volume once, builds both front
//!   ends over them), `main.rs`, [`signals`];
//! - transports: [`vfio_user`] with [`pci`] (the NVMe controller as a PCI function), and
//!   [`vhost_user_blk`] (virtio-blk; knows no NVMe); experiment control: [`experiment`]
//!   (counters, faults, latency, the control socket, the trace);
//! - [`nvme`]: the NVMe controller model; knows nothing of a transport;
//! - [`hooks`]: the interface between front ends and experiment control;
//! - [`block`]: stores and volumes; knows nothing of NVMe or virtio;
//! - helpers: [`sync`], [`kv`], [`shm`] (sealed memfds, shared word mappings); and
//!   [`host`], a host-side NVMe driver for tests and benchmarks.

pub mod block;
pub mod cli;
pub mod config;
pub mod experiment;
#[cfg(any(test, feature = "fuzz"))]
pub mod fuzz;
pub mod guest_faults;
pub mod hooks;
pub mod host;
pub mod kv;
pub mod nvme;
pub mod pci;
pub mod server;
pub mod shm;
pub mod signals;
pub mod sync;
pub mod vfio_user;
pub mod vhost_user_blk;
