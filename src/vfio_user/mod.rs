//! The vfio-user transport: knows the wire, not NVMe.
//!
//! - [`protocol`]: message layouts, parsing with bounds checks, replies.
//! - [`server`]: socket, negotiation, dispatch, reconnects.
//! - [`dma`]: guest memory from DMA_MAP descriptors (vm-memory).
//! - [`sock`]: descriptor passing and polling (the `unsafe` lives here).

pub mod dma;
pub mod protocol;
pub mod server;
pub mod sock;

pub use dma::DmaMemory;
pub use server::{Device, RegionMmap, Server, StopHandle};
