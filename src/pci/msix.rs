//! Interrupt vectors of the PCI function, mapped to eventfds the client hands over.
//!
//! Indexes follow VFIO's PCI numbering (INTx, MSI, MSI-X, ERR, REQ). A vector fires by
//! writing 1 to its eventfd. MSI-X vectors can be masked (pending bits are kept and
//! visible through the PBA); INTx is automasked after each assertion until the client
//! unmasks it, as VFIO does for level interrupts.

use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::sync::{Mutex, MutexGuard};

pub const INTX: u32 = 0;
pub const MSI: u32 = 1;
pub const MSIX: u32 = 2;
pub const ERR: u32 = 3;
pub const REQ: u32 = 4;
pub const NUM_IRQ_INDEXES: u32 = 5;

/// Why an interrupt request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IrqError(pub String);

impl std::fmt::Display for IrqError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Default)]
struct Vector {
    fd: Option<File>,
    masked: bool,
    pending: bool,
}

impl Vector {
    fn fire(&mut self) {
        match &self.fd {
            Some(f) => {
                let mut f: &File = f;
                // An overflowing counter (EAGAIN) still leaves the interrupt signalled.
                let _ = f.write(&1u64.to_ne_bytes());
            }
            None => self.pending = true,
        }
    }
}

struct State {
    msix_enabled: bool,
    vectors: [Vec<Vector>; NUM_IRQ_INDEXES as usize],
}

/// The interrupt vectors of one function.
pub struct Interrupts {
    state: Mutex<State>,
}

impl Interrupts {
    pub fn new(msix_vectors: u16) -> Interrupts {
        let mk = |n: usize| (0..n).map(|_| Vector::default()).collect::<Vec<_>>();
        Interrupts {
            state: Mutex::new(State {
                msix_enabled: false,
                vectors: [mk(1), mk(1), mk(msix_vectors as usize), mk(1), mk(1)],
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        crate::sync::lock(&self.state)
    }

    /// Number of vectors of an index (0 for unknown indexes).
    pub fn count(&self, index: u32) -> u32 {
        self.lock()
            .vectors
            .get(index as usize)
            .map_or(0, |v| v.len() as u32)
    }

    fn range(
        st: &mut State,
        index: u32,
        start: u32,
        count: u32,
    ) -> Result<&mut [Vector], IrqError> {
        let v = st
            .vectors
            .get_mut(index as usize)
            .ok_or_else(|| IrqError(format!("no interrupt index {index}")))?;
        let end = start
            .checked_add(count)
            .filter(|&e| e as usize <= v.len())
            .ok_or_else(|| {
                IrqError(format!(
                    "vectors {start}+{count} out of range for index {index} ({} vectors)",
                    v.len()
                ))
            })?;
        Ok(&mut v[start as usize..end as usize])
    }

    /// Assigns trigger eventfds to `start..start+fds.len()`; `None` de-assigns one.
    /// Any assignment on the MSI-X index switches the function to MSI-X.
    pub fn set_trigger_fds(
        &self,
        index: u32,
        start: u32,
        fds: Vec<Option<OwnedFd>>,
    ) -> Result<(), IrqError> {
        let mut st = self.lock();
        let slots = Self::range(&mut st, index, start, fds.len() as u32)?;
        for (slot, fd) in slots.iter_mut().zip(fds) {
            slot.fd = fd.map(File::from);
            if slot.fd.is_some() && slot.pending && !slot.masked {
                slot.pending = false;
                slot.fire();
            }
        }
        if index == MSIX {
            st.msix_enabled = true;
        }
        Ok(())
    }

    /// Drops every eventfd of an index (SET_IRQS with count 0).
    pub fn disable(&self, index: u32) {
        let mut st = self.lock();
        if let Some(v) = st.vectors.get_mut(index as usize) {
            for slot in v.iter_mut() {
                *slot = Vector::default();
            }
        }
        if index == MSIX {
            st.msix_enabled = false;
        }
    }

    /// Fires the selected vectors (client-initiated trigger); `sel` filters by bool array.
    /// A masked vector becomes pending instead.
    pub fn trigger(
        &self,
        index: u32,
        start: u32,
        count: u32,
        sel: Option<&[u8]>,
    ) -> Result<(), IrqError> {
        let mut st = self.lock();
        let slots = Self::range(&mut st, index, start, count)?;
        for (i, slot) in slots.iter_mut().enumerate() {
            if sel.is_none_or(|s| s.get(i).is_some_and(|&b| b != 0)) {
                if slot.masked {
                    slot.pending = true;
                } else {
                    slot.fire();
                    // INTx is level-like: it stays masked until the client unmasks it.
                    slot.masked = index == INTX;
                }
            }
        }
        Ok(())
    }

    /// Masks or unmasks the selected vectors. Unmasking fires a pending vector.
    pub fn set_masked(
        &self,
        index: u32,
        start: u32,
        count: u32,
        sel: Option<&[u8]>,
        masked: bool,
    ) -> Result<(), IrqError> {
        let mut st = self.lock();
        let slots = Self::range(&mut st, index, start, count)?;
        for (i, slot) in slots.iter_mut().enumerate() {
            if sel.is_none_or(|s| s.get(i).is_some_and(|&b| b != 0)) {
                slot.masked = masked;
                if !masked && slot.pending && slot.fd.is_some() {
                    slot.pending = false;
                    slot.fire();
                }
            }
        }
        Ok(())
    }

    /// Signals `vector`: its MSI-X eventfd when MSI-X is on, INTx otherwise.
    pub fn raise(&self, vector: u16) {
        let mut st = self.lock();
        if st.msix_enabled {
            if let Some(slot) = st.vectors[MSIX as usize].get_mut(vector as usize) {
                if slot.masked {
                    slot.pending = true;
                } else {
                    slot.fire();
                }
            }
            return;
        }
        let slot = &mut st.vectors[INTX as usize][0];
        if slot.masked || slot.fd.is_none() {
            slot.pending = true;
        } else {
            slot.fire();
            slot.masked = true;
        }
    }

    /// Reads the MSI-X pending bit array at byte `offset`.
    pub fn read_pba(&self, offset: u64, data: &mut [u8]) {
        let st = self.lock();
        let v = &st.vectors[MSIX as usize];
        for (i, b) in data.iter_mut().enumerate() {
            let base = (offset as usize + i) * 8;
            *b = (0..8)
                .filter(|bit| v.get(base + bit).is_some_and(|s| s.pending))
                .fold(0u8, |acc, bit| acc | (1 << bit));
        }
    }

    /// Function reset: masks and pending bits cleared; eventfds kept.
    pub fn reset(&self) {
        let mut st = self.lock();
        for v in st.vectors.iter_mut() {
            for slot in v.iter_mut() {
                slot.masked = false;
                slot.pending = false;
            }
        }
    }

    /// Client gone: every eventfd closed, MSI-X off.
    pub fn clear(&self) {
        for index in 0..NUM_IRQ_INDEXES {
            self.disable(index);
        }
    }
}

impl crate::nvme::InterruptSink for Interrupts {
    fn raise(&self, vector: u16) {
        Interrupts::raise(self, vector)
    }
}
