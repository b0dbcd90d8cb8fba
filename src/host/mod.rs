//! A host-side NVMe driver, as a guest kernel's would be: admin queue and controller
//! enable/disable, submission and completion rings with phase tags, command ids, bounded
//! waits for completions, I/O queue pairs, shadow doorbells, PRP lists and SGLs, identify.
//!
//! It reaches the controller only through a [`Bus`] (BAR0 registers, guest memory,
//! interrupts), so the same driver runs in-process against the model
//! ([`in_process::InProcess`], used by the model's unit tests) and over a real vfio-user
//! socket ([`vfio_user_bus::VfioUserBus`], used by `vnvme bench stress`; the integration
//! tests have their own in `tests/common/nvme.rs`). Device misbehaviour comes back as a
//! [`DriverError`], never as a panic.
//!
//! No `unsafe` here: the sealed memfds and shared mappings are [`crate::shm`]'s.

#![forbid(unsafe_code)]

pub mod bus;
pub mod data;
pub mod driver;
pub mod in_process;
pub mod memfd;
pub mod vfio_user_bus;

pub use bus::{Bus, BusError};
pub use data::{copy_descriptors, pattern, rw};
pub use driver::{Cqe, Driver, DriverError, PAGE};
pub use vfio_user_bus::{BusOptions, VfioUserBus};
