//! vnvme: an NVMe controller emulator served over vfio-user, built for testing Simple Copy.
//!
//! Layers, each importing only downward:
//! - [`storage`]: byte-addressed stores (files, block devices, memfd); knows nothing of NVMe.
//! - [`nvme`]: the NVMe controller model; knows nothing of vfio-user.
//! - [`pci`]: a PCI function (config space, capabilities) any transport can present.
//! - [`vfio_user`]: the vfio-user transport; knows the wire, not NVMe.
//! - [`server`]: wires one transport to one controller and its namespaces.
//! - [`control`] and [`trace`]: steering and watching a running device (the control
//!   socket, the command trace); they use the model's experiment hooks.

pub mod block;
pub mod cli;
pub mod config;
pub mod experiment;
pub mod hooks;
pub mod host;
pub mod kv;
pub mod nvme;
pub mod pci;
pub mod server;
pub mod signals;
pub mod sync;
pub mod vfio_user;
pub mod vhost_user_blk;
