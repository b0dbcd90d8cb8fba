//! The controller: registers, enable/reset, queue table, dispatch to admin and I/O.
//!
//! STUB: signatures are the contract with the transport; the model work fills them in.

use std::sync::Arc;

use super::{GuestMemory, InterruptSink, Namespace};
use crate::config::ControllerConfig;

pub struct Controller {
    cfg: ControllerConfig,
    #[allow(dead_code)]
    namespaces: Vec<Namespace>,
}

impl Controller {
    pub fn new(cfg: &ControllerConfig, namespaces: Vec<Namespace>) -> Arc<Controller> {
        Arc::new(Controller {
            cfg: cfg.clone(),
            namespaces,
        })
    }

    /// Size of BAR0 (registers + doorbells), a power of two.
    pub fn bar0_size(&self) -> u64 {
        0x4000
    }

    /// MSI-X vectors: one for the admin queue and one per I/O queue.
    pub fn msix_vectors(&self) -> u16 {
        self.cfg.max_ioqpairs + 1
    }

    pub fn connect(&self, _mem: GuestMemory, _irq: Arc<dyn InterruptSink>) {}

    pub fn disconnect(&self) {}

    pub fn reset(&self) {}

    pub fn mmio_read(&self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    pub fn mmio_write(&self, _offset: u64, _data: &[u8]) {}
}
