//! The BAR0 register file: CAP, VS, INTMS/INTMC, CC, CSTS, AQA, ASQ, ACQ.
//!
//! Reads of any size and alignment are served from a little-endian image of the
//! registers (doorbells read as zero). Writes are split into aligned dwords; accesses that
//! are not dword-sized and dword-aligned (or a qword at a qword boundary) are ignored, so
//! no access can panic. The side effects of CC and doorbells live in the controller.

use super::spec::{reg, NVME_VERSION};
use super::ControllerConfig;

/// Size of the register block before the doorbells.
pub const REGS_SIZE: u64 = 0x1000;

/// CAP.TO: worst-case time to ready, in 500 ms units (7.5 s).
const CAP_TO: u64 = 0x0f;

/// The controller registers except CSTS, which the controller keeps atomically.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Regs {
    pub cap: u64,
    pub vs: u32,
    pub intms: u32,
    pub cc: u32,
    pub aqa: u32,
    pub asq: u64,
    pub acq: u64,
}

impl Regs {
    pub fn new(cfg: &ControllerConfig) -> Regs {
        let mqes = (cfg.mqes.clamp(2, 65536) - 1) as u64;
        Regs {
            // MQES, CQR=1, AMS=0 (round robin only), TO, DSTRD=0, CSS bit 0 (NVM command
            // set) and bit 6 (I/O command sets: CC.CSS 110b, the zoned command set, as
            // QEMU), MPSMIN=0 and MPSMAX=0 (4 KiB pages).
            cap: mqes | (1 << 16) | (CAP_TO << 24) | (1 << 37) | (1 << 43),
            vs: NVME_VERSION,
            intms: 0,
            cc: 0,
            aqa: 0,
            asq: 0,
            acq: 0,
        }
    }

    /// CAP.MQES + 1: the largest queue size in entries.
    pub fn max_queue_entries(&self) -> u32 {
        (self.cap & 0xffff) as u32 + 1
    }

    /// Resets everything but CAP and VS (controller reset).
    pub fn reset(&mut self) {
        self.intms = 0;
        self.cc = 0;
        self.aqa = 0;
        self.asq = 0;
        self.acq = 0;
    }

    /// A little-endian image of the first 0x40 bytes, with `csts` filled in.
    fn image(&self, csts: u32) -> [u8; 0x40] {
        let mut b = [0u8; 0x40];
        let put32 = |b: &mut [u8; 0x40], off: u64, v: u32| {
            b[off as usize..off as usize + 4].copy_from_slice(&v.to_le_bytes())
        };
        b[0..8].copy_from_slice(&self.cap.to_le_bytes());
        put32(&mut b, reg::VS, self.vs);
        put32(&mut b, reg::INTMS, self.intms);
        put32(&mut b, reg::INTMC, self.intms);
        put32(&mut b, reg::CC, self.cc);
        put32(&mut b, reg::CSTS, csts);
        put32(&mut b, reg::AQA, self.aqa);
        b[0x28..0x30].copy_from_slice(&self.asq.to_le_bytes());
        b[0x30..0x38].copy_from_slice(&self.acq.to_le_bytes());
        b
    }

    /// Fills `data` from the register image at `offset`; anything else reads as zero.
    pub fn read(&self, csts: u32, offset: u64, data: &mut [u8]) {
        let img = self.image(csts);
        for (i, d) in data.iter_mut().enumerate() {
            *d = offset
                .checked_add(i as u64)
                .and_then(|o| usize::try_from(o).ok())
                .and_then(|o| img.get(o).copied())
                .unwrap_or(0);
        }
    }

    /// Stores a plain (side-effect free) register dword; returns false if `offset` is not
    /// one of AQA/ASQ/ACQ halves.
    pub fn store_plain(&mut self, offset: u64, v: u32) -> bool {
        let set_lo = |r: &mut u64, v: u32| *r = (*r & !0xffff_ffff) | v as u64;
        let set_hi = |r: &mut u64, v: u32| *r = (*r & 0xffff_ffff) | ((v as u64) << 32);
        match offset {
            reg::AQA => self.aqa = v,
            reg::ASQ => set_lo(&mut self.asq, v),
            0x2c => set_hi(&mut self.asq, v),
            reg::ACQ => set_lo(&mut self.acq, v),
            0x34 => set_hi(&mut self.acq, v),
            _ => return false,
        }
        true
    }
}

/// Splits a BAR0 write into aligned dword writes `(offset, value)`. Returns an empty
/// list for accesses the model ignores (odd sizes or misaligned).
pub fn split_write(offset: u64, data: &[u8]) -> Vec<(u64, u32)> {
    let dword = |b: &[u8]| {
        let mut a = [0u8; 4];
        a.copy_from_slice(b);
        u32::from_le_bytes(a)
    };
    match data.len() {
        4 if offset.is_multiple_of(4) => vec![(offset, dword(data))],
        8 if offset.is_multiple_of(8) => match offset.checked_add(4) {
            Some(hi) => vec![(offset, dword(&data[..4])), (hi, dword(&data[4..]))],
            None => Vec::new(),
        },
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_and_vs() {
        let cfg = ControllerConfig {
            mqes: 1024,
            ..Default::default()
        };
        let r = Regs::new(&cfg);
        assert_eq!(r.cap & 0xffff, 1023);
        assert_eq!((r.cap >> 16) & 1, 1, "CQR");
        assert_eq!((r.cap >> 24) & 0xff, CAP_TO);
        assert_eq!((r.cap >> 32) & 0xf, 0, "DSTRD");
        assert_eq!((r.cap >> 37) & 0xff, 0x41, "CSS: NVM and I/O command sets");
        assert_eq!((r.cap >> 48) & 0xff, 0, "MPSMIN/MPSMAX");
        assert_eq!(r.max_queue_entries(), 1024);
        let mut b = [0u8; 4];
        r.read(0, reg::VS, &mut b);
        assert_eq!(u32::from_le_bytes(b), 0x0002_0000);
    }

    #[test]
    fn odd_reads_do_not_panic() {
        let r = Regs::new(&ControllerConfig::default());
        let mut b = [0xffu8; 3];
        r.read(1, 0x1d, &mut b);
        assert_eq!(b, [0, 0, 0]);
        r.read(1, 0x1c, &mut b);
        assert_eq!(b, [1, 0, 0]);
        let mut big = [0xffu8; 16];
        r.read(0, u64::MAX - 3, &mut big);
        assert_eq!(big, [0u8; 16]);
        let mut one = [0u8; 1];
        r.read(0, 2, &mut one);
        assert_eq!(one[0], 1, "CAP byte 2 holds CQR");
    }

    #[test]
    fn write_splitting() {
        assert_eq!(
            split_write(0x28, &[1, 0, 0, 0, 2, 0, 0, 0]),
            vec![(0x28, 1), (0x2c, 2)]
        );
        assert_eq!(split_write(0x14, &[1, 0, 0, 0]), vec![(0x14, 1)]);
        assert!(split_write(0x15, &[1, 0, 0, 0]).is_empty());
        assert!(split_write(0x14, &[1, 0]).is_empty());
        assert!(split_write(0x2c, &[0; 8]).is_empty());
    }
}
