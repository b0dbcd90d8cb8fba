//! Data helpers for host-side tests and benchmarks: deterministic buffers, Copy source
//! range descriptors, NVM command entries.

use crate::nvme::spec::Sqe;

/// Deterministic data for `len` bytes, different for each `seed`.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 9) as u8)
        .collect()
}

/// Copy source range descriptors of format 0/2 (32 bytes each) for
/// `(snsid, slba, nlb)`, `nlb` 1-based; format 0 ignores the source namespace.
pub fn copy_descriptors(ranges: &[(u32, u64, u16)]) -> Vec<u8> {
    let mut d = vec![0u8; 32 * ranges.len()];
    for (i, (snsid, slba, nlb)) in ranges.iter().enumerate() {
        let e = &mut d[i * 32..i * 32 + 32];
        e[0..4].copy_from_slice(&snsid.to_le_bytes());
        e[8..16].copy_from_slice(&slba.to_le_bytes());
        e[16..18].copy_from_slice(&nlb.wrapping_sub(1).to_le_bytes());
    }
    d
}

/// An NVM command on `nsid` for `nlb` (1-based) blocks at `slba`, with PRP1/PRP2.
pub fn rw(opcode: u8, nsid: u32, slba: u64, nlb: u32, prp1: u64, prp2: u64) -> Sqe {
    Sqe {
        opcode,
        nsid,
        dptr1: prp1,
        dptr2: prp2,
        cdw10: slba as u32,
        cdw11: (slba >> 32) as u32,
        cdw12: nlb.wrapping_sub(1),
        ..Default::default()
    }
}
