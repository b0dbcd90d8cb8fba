//! Get LBA Status (admin 86h) and the LBA Status Information log page (0Eh): which
//! blocks may be unrecoverable. Here those are exactly the blocks Write Uncorrectable
//! marked (and no write has unmarked since); a scan (ATYPE 10h) and the tracked list
//! (ATYPE 11h) report the same ranges.

use std::sync::Arc;

use crate::block::unreadable::MAX_RANGES;
use crate::nvme::cmd::LbaStatusCmd;
use crate::nvme::namespace::Namespace;
use crate::nvme::prp::{to_host_prefix, Mem};
use crate::nvme::spec::{put_u16, put_u32, put_u64, status, Status};
use crate::nvme::state::Shared;

/// ATYPE 10h: scan for potentially unrecoverable blocks.
const ATYPE_SCAN: u8 = 0x10;
/// ATYPE 11h: report the tracked potentially unrecoverable blocks.
const ATYPE_TRACKED: u8 = 0x11;
/// Completion Condition: more descriptors than the buffer holds.
const CMPC_INCOMPLETE: u8 = 1;
/// Completion Condition: the whole range was processed.
const CMPC_COMPLETE: u8 = 2;
/// Header and descriptor sizes of the LBA Status Descriptor List.
const HEADER: usize = 8;
const DESCRIPTOR: usize = 16;
/// Most range descriptors the log page lists, over every namespace (1 MiB of them).
pub const LOG_MAX_RANGES: usize = MAX_RANGES;

/// Ranges as descriptors with a 32-bit block count: a longer range is split.
fn split32(ranges: &[(u64, u64)], max: usize) -> (Vec<(u64, u32)>, bool) {
    let mut out = Vec::new();
    for &(mut lba, mut n) in ranges {
        while n > 0 {
            if out.len() == max {
                return (out, true);
            }
            let k = n.min(u32::MAX as u64);
            out.push((lba, k as u32));
            lba += k;
            n -= k;
        }
    }
    (out, false)
}

/// The marked ranges of `ns` from `slba` over `blocks`, at most `max` descriptors.
fn descriptors(ns: &Namespace, slba: u64, blocks: u64, max: usize) -> (Vec<(u64, u32)>, bool) {
    let (ranges, more) = ns.volume().unreadable_ranges(slba, blocks, max);
    let (descs, split_more) = split32(&ranges, max);
    (descs, more || split_more)
}

pub(super) fn get_lba_status(inner: &Shared, mem: &Mem, c: &LbaStatusCmd) -> Result<(), Status> {
    let ns = inner.namespaces.lookup(c.nsid)?;
    if !matches!(c.atype, ATYPE_SCAN | ATYPE_TRACKED) {
        log::debug!("get lba status: action type {:#04x} not supported", c.atype);
        return Err(status::INVALID_FIELD.dnr());
    }
    if c.slba >= ns.nsze() {
        log::debug!(
            "get lba status: LBA {} past namespace {} ({} blocks)",
            c.slba,
            ns.nsid,
            ns.nsze()
        );
        return Err(status::LBA_OUT_OF_RANGE.dnr());
    }
    let len = c.mndw * 4;
    if super::over_mdts(inner, len) {
        return Err(status::INVALID_FIELD.dnr());
    }
    let blocks = match c.rl {
        0 => ns.nsze() - c.slba,
        rl => (rl as u64).min(ns.nsze() - c.slba),
    };
    // The buffer bounds the answer (and MAX_RANGES bounds the work when MDTS does not).
    let fit = (len as usize).saturating_sub(HEADER) / DESCRIPTOR;
    let (descs, more) = descriptors(&ns, c.slba, blocks, fit.min(MAX_RANGES));
    let mut b = vec![0u8; HEADER + descs.len() * DESCRIPTOR];
    put_u32(&mut b, 0, descs.len() as u32);
    b[4] = if more { CMPC_INCOMPLETE } else { CMPC_COMPLETE };
    for (i, &(lba, n)) in descs.iter().enumerate() {
        let d = HEADER + i * DESCRIPTOR;
        put_u64(&mut b, d, lba);
        put_u32(&mut b, d + 8, n);
    }
    to_host_prefix(mem, &c.dptr, len, &b)
}

/// The LBA Status Information log page: one namespace element (Recommended Action Type
/// 11h) per attached namespace with marked blocks, with its ranges.
pub(super) fn log_page(inner: &Shared) -> Vec<u8> {
    let nss: Vec<Arc<Namespace>> = inner.namespaces();
    let mut b = vec![0u8; 16];
    let (mut elements, mut estimate, mut generation) = (0u32, 0u64, 0u64);
    let mut room = LOG_MAX_RANGES;
    for ns in &nss {
        let (blocks, gen) = ns.volume().unreadable_summary();
        generation = generation.wrapping_add(gen);
        estimate += blocks;
        if blocks == 0 || room == 0 {
            continue;
        }
        let (descs, _) = descriptors(ns, 0, ns.nsze(), room);
        room -= descs.len();
        let at = b.len();
        b.resize(at + 16 + descs.len() * 16, 0);
        put_u32(&mut b, at, ns.nsid);
        put_u32(&mut b, at + 4, descs.len() as u32);
        b[at + 8] = ATYPE_TRACKED;
        for (i, &(lba, n)) in descs.iter().enumerate() {
            let d = at + 16 + i * 16;
            put_u64(&mut b, d, lba);
            put_u32(&mut b, d + 8, n);
        }
        elements += 1;
    }
    let total = b.len() as u32;
    put_u32(&mut b, 0, total);
    put_u32(&mut b, 4, elements);
    put_u32(&mut b, 8, estimate.min(u32::MAX as u64) as u32);
    put_u16(&mut b, 14, generation as u16);
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_ranges_split_at_32_bits() {
        let (d, more) = split32(&[(0, 1 << 33), (1 << 40, 3)], 100);
        assert!(!more);
        assert_eq!(d.len(), 4);
        assert_eq!(d[0], (0, u32::MAX));
        assert_eq!(d[2], (2 * u32::MAX as u64, 2));
        assert_eq!(d[3], (1 << 40, 3));
        let max = u32::MAX as u64;
        assert_eq!(
            split32(&[(0, 1 << 33)], 2),
            (vec![(0, u32::MAX), (max, u32::MAX)], true)
        );
    }
}
