//! The in-process bus: the driver calls the controller model directly (`mmio_read`,
//! `mmio_write`), guest memory is a vm-memory map shared with the model, and interrupts
//! are recorded by an [`InterruptSink`] that waiters sleep on. In poll mode the
//! doorbells are stores into the controller's doorbell memory instead of writes.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use vm_memory::{Bytes, GuestAddress, GuestAddressSpace};

use super::bus::{Bus, BusError};
use crate::nvme::spec::reg::DOORBELL_BASE;
use crate::nvme::{Controller, DoorbellMemory, GuestMemory, InterruptSink};
use crate::sync::lock;

#[derive(Default)]
struct Raised {
    /// Every vector raised, in order, since creation.
    log: Vec<u16>,
    /// Raises per vector not yet taken by a waiter.
    pending: HashMap<u16, u64>,
}

/// Records interrupts; [`Bus::wait_irq`] sleeps on it.
#[derive(Default)]
pub struct Interrupts {
    raised: Mutex<Raised>,
    cv: Condvar,
}

impl InterruptSink for Interrupts {
    fn raise(&self, vector: u16) {
        let mut r = lock(&self.raised);
        r.log.push(vector);
        *r.pending.entry(vector).or_default() += 1;
        self.cv.notify_all();
    }
}

impl Interrupts {
    /// Every vector raised so far, in order (waiting does not remove them).
    pub fn vectors(&self) -> Vec<u16> {
        lock(&self.raised).log.clone()
    }

    /// Waits up to `timeout` for `vector`; true (and the pending raises taken) if it
    /// was raised since the last wait.
    pub fn wait(&self, vector: u16, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut r = lock(&self.raised);
        loop {
            if let Some(n) = r.pending.get_mut(&vector) {
                if *n > 0 {
                    *n = 0;
                    return true;
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            r = match self.cv.wait_timeout(r, left) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    }
}

/// A controller model in this process, its guest memory and its interrupts.
#[derive(Clone)]
pub struct InProcess {
    pub ctrl: Arc<Controller>,
    pub mem: GuestMemory,
    pub irq: Arc<Interrupts>,
    /// Poll mode: the doorbells, written as memory.
    pub doorbells: Option<Arc<dyn DoorbellMemory>>,
}

impl InProcess {
    /// Connects `ctrl` to `mem` and a fresh interrupt recorder.
    pub fn connect(ctrl: Arc<Controller>, mem: GuestMemory) -> InProcess {
        InProcess::connect_with_doorbells(ctrl, mem, None)
    }

    /// As [`InProcess::connect`]; with `doorbells` the controller reads its doorbells
    /// from that memory and this bus rings them there (poll mode).
    pub fn connect_with_doorbells(
        ctrl: Arc<Controller>,
        mem: GuestMemory,
        doorbells: Option<Arc<dyn DoorbellMemory>>,
    ) -> InProcess {
        let irq = Arc::new(Interrupts::default());
        ctrl.connect_with_doorbells(mem.clone(), irq.clone(), doorbells.clone());
        InProcess {
            ctrl,
            mem,
            irq,
            doorbells,
        }
    }
}

fn mem_error(addr: u64, len: usize, e: impl std::fmt::Display) -> BusError {
    BusError(format!("guest memory {addr:#x}+{len:#x}: {e}"))
}

impl Bus for InProcess {
    fn mmio_read(&mut self, offset: u64, data: &mut [u8]) -> Result<(), BusError> {
        self.ctrl.mmio_read(offset, data);
        Ok(())
    }

    fn mmio_write(&mut self, offset: u64, data: &[u8]) -> Result<(), BusError> {
        self.ctrl.mmio_write(offset, data);
        Ok(())
    }

    fn doorbell(&mut self, offset: u64, value: u32) -> Result<(), BusError> {
        match (&self.doorbells, offset.checked_sub(DOORBELL_BASE)) {
            (Some(db), Some(rel)) if rel.is_multiple_of(4) => {
                db.store((rel / 4) as usize, value);
                Ok(())
            }
            _ => self.mmio_write(offset, &value.to_le_bytes()),
        }
    }

    fn mem_read(&self, addr: u64, data: &mut [u8]) -> Result<(), BusError> {
        self.mem
            .memory()
            .read_slice(data, GuestAddress(addr))
            .map_err(|e| mem_error(addr, data.len(), e))
    }

    fn mem_write(&self, addr: u64, data: &[u8]) -> Result<(), BusError> {
        self.mem
            .memory()
            .write_slice(data, GuestAddress(addr))
            .map_err(|e| mem_error(addr, data.len(), e))
    }

    fn wait_irq(&mut self, vector: u16, timeout: Duration) -> Result<bool, BusError> {
        Ok(self.irq.wait(vector, timeout))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_take_pending_raises_and_keep_the_log() {
        let irq = Arc::new(Interrupts::default());
        assert!(!irq.wait(1, Duration::from_millis(5)));
        irq.raise(1);
        irq.raise(1);
        assert!(irq.wait(1, Duration::ZERO));
        assert!(!irq.wait(1, Duration::from_millis(5)), "both raises taken");
        let i2 = irq.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            i2.raise(3);
        });
        assert!(irq.wait(3, Duration::from_secs(5)));
        t.join().unwrap();
        assert_eq!(irq.vectors(), vec![1, 1, 3]);
    }
}
