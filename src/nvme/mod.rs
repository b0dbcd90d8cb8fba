//! The NVMe controller model: registers, queues, admin and I/O commands, copy.
//!
//! It knows NVMe, not the transport. A transport (vfio-user) drives it through the small
//! surface below and nothing else; namespaces are NVMe identity over block volumes the
//! wiring opened, and everything experiment control sees goes through the hooks:
//!
//! ```text
//! Controller::new(&ControllerConfig, Vec<Namespace>, Arc<dyn Hooks>) -> Arc<Controller>
//! Controller::bar0_size(&self) -> u64              // registers + doorbells, a power of two
//! Controller::msix_vectors(&self) -> u16           // admin queue + every I/O queue
//! Controller::connect(&self, GuestMemory, Arc<dyn InterruptSink>)   // a client arrived
//! Controller::connect_with_doorbells(.., Option<Arc<dyn DoorbellMemory>>) // ... and maps
//!                                                  // the doorbells (poll mode)
//! Controller::disconnect(&self)                    // client gone: stop queues, reset state
//! Controller::reset(&self)                         // function-level reset (DEVICE_RESET)
//! Controller::mmio_read(&self, offset, &mut [u8])  // BAR0 read
//! Controller::mmio_write(&self, offset, &[u8])     // BAR0 write; doorbells wake one queue
//! ```
//!
//! Guest memory is a `GuestMemoryAtomic` the transport updates on every DMA map change;
//! interrupts leave through an [`InterruptSink`], which the transport maps to eventfds;
//! doorbells the client writes as memory (poll mode) come in through a
//! [`DoorbellMemory`], which the wiring backs with the page the transport lets the client
//! map.
//! The module map and the path of one command: docs/architecture.md.

#![forbid(unsafe_code)]

pub mod admin;
pub(crate) mod aer;
pub mod cmd;
pub mod controller;
pub mod copy;
pub(crate) mod copy_pi;
pub mod doorbell_page;
pub mod feature_values;
pub(crate) mod health;
pub mod identify;
pub mod io;
pub(crate) mod io_checks;
pub(crate) mod io_context;
pub(crate) mod io_meta;
pub mod names;
pub mod namespace;
pub mod ns_table;
pub mod pi;
pub mod protection;
pub mod prp;
pub mod queue;
pub(crate) mod queues;
pub(crate) mod records;
pub mod regs;
pub mod settings;
pub mod spec;
pub(crate) mod state;
pub mod status;
mod timer;

#[cfg(test)]
pub(crate) mod tests;
pub mod tuning;
pub mod zone_file;
pub mod zoned;
pub mod zones;

pub use controller::Controller;
pub use doorbell_page::{DoorbellMemory, LocalDoorbells};
pub use namespace::Namespace;
pub use settings::ControllerConfig;

/// Guest memory as the model sees it: the current set of DMA mappings, swapped atomically
/// by the transport when the client maps or unmaps.
pub type GuestMemory = vm_memory::GuestMemoryAtomic<vm_memory::GuestMemoryMmap<()>>;

/// Where the model sends interrupts. `vector` is an MSI-X vector number; a transport
/// without MSI-X enabled falls back to INTx.
pub trait InterruptSink: Send + Sync {
    fn raise(&self, vector: u16);
}
