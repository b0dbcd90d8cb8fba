//! PCI configuration space of the function: a type-0 header and the capabilities
//! list (Power Management, MSI-X, PCI Express endpoint), 4 KiB with an empty extended
//! space.
//!
//! Writes go through a per-byte writable mask, which gives BAR sizing for free: the
//! address bits below the BAR size are read-only zero, so writing all ones reads back
//! the size mask with the type bits.

/// Size of the configuration space (PCIe).
pub const CONFIG_SPACE_SIZE: usize = 4096;

/// Offsets of the capabilities.
pub const CAP_PM: usize = 0x40;
pub const CAP_MSIX: usize = 0x50;
pub const CAP_PCIE: usize = 0x60;

/// Capability ids.
pub const CAP_ID_PM: u8 = 0x01;
pub const CAP_ID_MSIX: u8 = 0x11;
pub const CAP_ID_PCIE: u8 = 0x10;

/// Command register bits.
pub const COMMAND_MEMORY: u16 = 1 << 1;
pub const COMMAND_BUS_MASTER: u16 = 1 << 2;
pub const COMMAND_INTX_DISABLE: u16 = 1 << 10;

/// MSI-X message control bits.
pub const MSIX_ENABLE: u16 = 1 << 15;
pub const MSIX_FUNCTION_MASK: u16 = 1 << 14;

/// What the header says about the function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PciIds {
    pub vendor_id: u16,
    pub device_id: u16,
    pub subsystem_vendor_id: u16,
    pub subsystem_id: u16,
    pub revision: u8,
    /// Class, subclass, programming interface.
    pub class: [u8; 3],
}

/// Layout of the BARs: BAR0 (64-bit memory), BAR4 (32-bit memory, MSI-X table + PBA).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BarLayout {
    pub bar0_size: u64,
    pub msix_vectors: u16,
}

impl BarLayout {
    /// Bytes of the MSI-X table (16 per vector) at BAR4 offset 0.
    pub fn msix_table_size(&self) -> u64 {
        self.msix_vectors as u64 * 16
    }

    /// Offset of the PBA in BAR4: right after the table, 8-byte aligned.
    pub fn pba_offset(&self) -> u64 {
        self.msix_table_size().next_multiple_of(8)
    }

    /// Bytes of the PBA: one bit per vector, in whole qwords.
    pub fn pba_size(&self) -> u64 {
        (self.msix_vectors as u64).div_ceil(64) * 8
    }

    /// BAR4 size: table + PBA rounded up to a power of two, at least 4 KiB.
    pub fn bar4_size(&self) -> u64 {
        (self.pba_offset() + self.pba_size())
            .next_power_of_two()
            .max(4096)
    }
}

/// The configuration space.
pub struct ConfigSpace {
    data: Vec<u8>,
    wmask: Vec<u8>,
    initial: Vec<u8>,
    layout: BarLayout,
}

impl ConfigSpace {
    pub fn new(ids: &PciIds, layout: BarLayout) -> ConfigSpace {
        assert!(layout.bar0_size.is_power_of_two() && layout.bar0_size >= 16);
        assert!((1..=2048).contains(&layout.msix_vectors));
        let mut c = ConfigSpace {
            data: vec![0; CONFIG_SPACE_SIZE],
            wmask: vec![0; CONFIG_SPACE_SIZE],
            initial: Vec::new(),
            layout,
        };
        // Header.
        c.set16(0x00, ids.vendor_id);
        c.set16(0x02, ids.device_id);
        c.set16(0x06, 1 << 4); // status: capabilities list
        c.data[0x08] = ids.revision;
        c.data[0x09] = ids.class[2];
        c.data[0x0a] = ids.class[1];
        c.data[0x0b] = ids.class[0];
        c.data[0x0e] = 0; // header type 0, single function
        c.set16(0x2c, ids.subsystem_vendor_id);
        c.set16(0x2e, ids.subsystem_id);
        c.data[0x34] = CAP_PM as u8;
        c.data[0x3d] = 1; // interrupt pin INTA
        c.wmask16(
            0x04,
            COMMAND_MEMORY | COMMAND_BUS_MASTER | COMMAND_INTX_DISABLE | 0x0140,
        );
        c.wmask[0x0c] = 0xff; // cache line size
        c.wmask[0x0d] = 0xff; // latency timer
        c.wmask[0x3c] = 0xff; // interrupt line

        // BAR0/1: 64-bit non-prefetchable memory.
        c.set32(0x10, 0x4);
        let mask0 = !(layout.bar0_size - 1);
        c.wmask32(0x10, (mask0 as u32) & 0xffff_fff0);
        c.wmask32(0x14, (mask0 >> 32) as u32);
        // BAR4: 32-bit non-prefetchable memory.
        let mask4 = !(layout.bar4_size() - 1) as u32;
        c.wmask32(0x20, mask4 & 0xffff_fff0);

        // Power Management (version 3), D0, No_Soft_Reset.
        c.data[CAP_PM] = CAP_ID_PM;
        c.data[CAP_PM + 1] = CAP_MSIX as u8;
        c.set16(CAP_PM + 2, 0x0003);
        c.set16(CAP_PM + 4, 1 << 3);
        c.wmask16(CAP_PM + 4, 0x0003);

        // MSI-X: table in BAR4 at 0, PBA after it.
        c.data[CAP_MSIX] = CAP_ID_MSIX;
        c.data[CAP_MSIX + 1] = CAP_PCIE as u8;
        c.set16(CAP_MSIX + 2, layout.msix_vectors - 1);
        c.wmask16(CAP_MSIX + 2, MSIX_ENABLE | MSIX_FUNCTION_MASK);
        c.set32(CAP_MSIX + 4, 4);
        c.set32(CAP_MSIX + 8, layout.pba_offset() as u32 | 4);

        // PCI Express v2 endpoint, x1 at 2.5 GT/s.
        c.data[CAP_PCIE] = CAP_ID_PCIE;
        c.data[CAP_PCIE + 1] = 0;
        c.set16(CAP_PCIE + 2, 0x0002);
        c.set32(CAP_PCIE + 4, 0); // device capabilities: MPS 128, no FLR
        c.wmask16(CAP_PCIE + 8, 0x7fff); // device control, not "initiate FLR"
        c.set32(CAP_PCIE + 0x0c, 0x0000_0011); // link capabilities: x1, 2.5 GT/s
        c.wmask16(CAP_PCIE + 0x10, 0x0fff); // link control
        c.set16(CAP_PCIE + 0x12, 0x0011); // link status: x1, 2.5 GT/s
        c.wmask16(CAP_PCIE + 0x28, 0xffff); // device control 2

        c.initial = c.data.clone();
        c
    }

    pub fn layout(&self) -> BarLayout {
        self.layout
    }

    fn set16(&mut self, off: usize, v: u16) {
        self.data[off..off + 2].copy_from_slice(&v.to_le_bytes());
    }
    fn set32(&mut self, off: usize, v: u32) {
        self.data[off..off + 4].copy_from_slice(&v.to_le_bytes());
    }
    fn wmask16(&mut self, off: usize, v: u16) {
        self.wmask[off..off + 2].copy_from_slice(&v.to_le_bytes());
    }
    fn wmask32(&mut self, off: usize, v: u32) {
        self.wmask[off..off + 4].copy_from_slice(&v.to_le_bytes());
    }

    pub fn read16(&self, off: usize) -> u16 {
        u16::from_le_bytes([self.data[off], self.data[off + 1]])
    }

    pub fn read32(&self, off: usize) -> u32 {
        let mut b = [0u8; 4];
        b.copy_from_slice(&self.data[off..off + 4]);
        u32::from_le_bytes(b)
    }

    /// Reads `data.len()` bytes at `offset`; bytes past the end read as 0xff.
    pub fn read(&self, offset: u64, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            *b = offset
                .checked_add(i as u64)
                .and_then(|o| self.data.get(o as usize))
                .copied()
                .unwrap_or(0xff);
        }
    }

    /// Writes through the writable mask; read-only bits and bytes keep their value.
    pub fn write(&mut self, offset: u64, data: &[u8]) {
        for (i, &b) in data.iter().enumerate() {
            let Some(o) = offset.checked_add(i as u64).map(|o| o as usize) else {
                return;
            };
            if o >= CONFIG_SPACE_SIZE {
                return;
            }
            let m = self.wmask[o];
            self.data[o] = (self.data[o] & !m) | (b & m);
        }
    }

    pub fn command(&self) -> u16 {
        self.read16(0x04)
    }

    pub fn msix_control(&self) -> u16 {
        self.read16(CAP_MSIX + 2)
    }

    /// Function reset: back to the power-on contents.
    pub fn reset(&mut self) {
        self.data.copy_from_slice(&self.initial);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cs() -> ConfigSpace {
        ConfigSpace::new(
            &PciIds {
                vendor_id: 0x1b36,
                device_id: 0x0010,
                subsystem_vendor_id: 0x1af4,
                subsystem_id: 0x1100,
                revision: 2,
                class: [0x01, 0x08, 0x02],
            },
            BarLayout {
                bar0_size: 0x4000,
                msix_vectors: 65,
            },
        )
    }

    #[test]
    fn bar_sizing() {
        let mut c = cs();
        c.write(0x10, &[0xff; 4]);
        c.write(0x14, &[0xff; 4]);
        assert_eq!(c.read32(0x10), 0xffff_c004);
        assert_eq!(c.read32(0x14), 0xffff_ffff);
        c.write(0x10, &0xfebf_0000u32.to_le_bytes());
        assert_eq!(c.read32(0x10), 0xfebf_0004);
        c.write(0x20, &[0xff; 4]);
        assert_eq!(c.read32(0x20), !(c.layout().bar4_size() as u32 - 1));
        // BAR2 is not implemented.
        c.write(0x18, &[0xff; 4]);
        assert_eq!(c.read32(0x18), 0);
    }

    #[test]
    fn msix_layout() {
        let c = cs();
        let l = c.layout();
        assert_eq!(l.msix_table_size(), 65 * 16);
        assert_eq!(l.pba_offset(), 65 * 16);
        assert_eq!(l.pba_size(), 16);
        assert_eq!(l.bar4_size(), 4096);
        assert_eq!(c.msix_control() & 0x7ff, 64);
    }

    #[test]
    fn read_only_fields_stay() {
        let mut c = cs();
        c.write(0, &[0; 4]);
        assert_eq!(c.read32(0), 0x0010_1b36);
        c.write(4, &[0xff, 0xff]);
        assert_eq!(c.command(), 0x0546);
        c.reset();
        assert_eq!(c.command(), 0);
    }
}
