//! What the host driver needs of the machine it runs on: BAR0 register access, guest
//! memory at guest-physical addresses, and waiting for an interrupt vector.

use std::fmt;
use std::time::Duration;

/// A failed bus access: the transport refused it or the address is not guest memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusError(pub String);

impl fmt::Display for BusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BusError {}

/// The machine under the driver.
pub trait Bus {
    /// Reads `data.len()` bytes of BAR0 at `offset`.
    fn mmio_read(&mut self, offset: u64, data: &mut [u8]) -> Result<(), BusError>;
    /// Writes `data` to BAR0 at `offset`, waiting for the write to be taken.
    fn mmio_write(&mut self, offset: u64, data: &[u8]) -> Result<(), BusError>;
    /// Writes a doorbell register; a transport may post it (not wait for it).
    fn doorbell(&mut self, offset: u64, value: u32) -> Result<(), BusError> {
        self.mmio_write(offset, &value.to_le_bytes())
    }
    /// Reads guest memory at guest-physical `addr`.
    fn mem_read(&self, addr: u64, data: &mut [u8]) -> Result<(), BusError>;
    /// Writes guest memory at guest-physical `addr`.
    fn mem_write(&self, addr: u64, data: &[u8]) -> Result<(), BusError>;
    /// Waits up to `timeout` for interrupt `vector`; true if it fired (and is consumed).
    /// A bus without interrupts sleeps `timeout` and says false.
    fn wait_irq(&mut self, vector: u16, timeout: Duration) -> Result<bool, BusError>;
}
