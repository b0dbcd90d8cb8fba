//! NVM command set I/O commands: Read, Write, Flush, Write Zeroes, Dataset Management,
//! Compare and Verify. Each command is decoded and checked (namespace, write protection,
//! MDTS, LBA range), its data buffer is resolved completely into guest memory, and only
//! then does the store move bytes — straight between the file and guest memory.
//!
//! Copy (opcode 0x19) lives in [`super::copy`]; it reaches any namespace through
//! `Inner::namespace`, which cross-namespace copy needs.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::controller::{Inner, Outcome};
use super::copy::CopyDone;
use super::names::io_kind;
use super::namespace::Namespace;
use super::prp::{Dma, Mem};
use super::spec::{io_op, status, Sqe, Status, NSID_ALL, PAGE_SIZE};
use super::status::of_block;
use crate::hooks::{Op, Transport};

/// An injected fault, in the model's status type.
struct Injected {
    copy_range: Option<u32>,
    status: Status,
}

/// Supported I/O opcodes and whether they change logical block content (effects log).
pub const SUPPORTED: &[(u8, bool)] = &[
    (io_op::FLUSH, false),
    (io_op::WRITE, true),
    (io_op::READ, false),
    (io_op::COMPARE, false),
    (io_op::WRITE_ZEROES, true),
    (io_op::DATASET_MANAGEMENT, true),
    (io_op::VERIFY, false),
    (io_op::COPY, true),
];

/// CDW12 bit 30: Force Unit Access.
const FUA: u32 = 1 << 30;
/// CDW12 bit 25 of Write Zeroes: Deallocate.
const DEAC: u32 = 1 << 25;
/// CDW11 bit 2 of Dataset Management: Attribute - Deallocate.
const DSM_AD: u32 = 1 << 2;

/// Runs one I/O command, unless an injected fault decides its outcome first. Copy also
/// returns what it did (ranges, blocks copied) for the records and counters.
pub(crate) fn execute(inner: &Arc<Inner>, mem: &Mem, sqe: &Sqe) -> (Outcome, Option<CopyDone>) {
    let is_copy = sqe.opcode == io_op::COPY;
    let op = Op {
        transport: Transport::Nvme,
        kind: io_kind(sqe.opcode),
        opcode: sqe.opcode,
        nsid: sqe.nsid,
    };
    if let Some(inj) = inner
        .hooks
        .inject(&op)
        .map(|i| (i.copy_range, Status(i.status)))
    {
        let inj = Injected {
            copy_range: inj.0,
            status: inj.1,
        };
        return match inj.copy_range {
            Some(k) if is_copy && inner.cfg.copy => {
                let (o, done) = super::copy::execute(inner, mem, sqe, Some((k, inj.status)));
                (o, Some(done))
            }
            // Copy is off: the real failure (before any range) wins.
            Some(_) if is_copy => (
                Outcome::err(status::INVALID_OPCODE.dnr()),
                Some(super::copy::describe(mem, sqe)),
            ),
            _ if is_copy => (
                Outcome::err(inj.status),
                Some(super::copy::describe(mem, sqe)),
            ),
            _ => (Outcome::err(inj.status), None),
        };
    }
    if is_copy && inner.cfg.copy {
        let (o, done) = super::copy::execute(inner, mem, sqe, None);
        return (o, Some(done));
    }
    (run(inner, mem, sqe).into(), None)
}

fn run(inner: &Arc<Inner>, mem: &Mem, sqe: &Sqe) -> Result<u32, Status> {
    match sqe.opcode {
        io_op::FLUSH => flush(inner, sqe),
        io_op::WRITE => read_write(inner, mem, sqe, true),
        io_op::READ => read_write(inner, mem, sqe, false),
        io_op::COMPARE => compare(inner, mem, sqe),
        io_op::WRITE_ZEROES => write_zeroes(inner, sqe),
        io_op::DATASET_MANAGEMENT => dataset_management(inner, mem, sqe),
        io_op::VERIFY => verify(inner, sqe),
        _ => Err(status::INVALID_OPCODE.dnr()),
    }
}

fn namespace(inner: &Inner, nsid: u32) -> Result<Arc<Namespace>, Status> {
    inner.namespace(nsid).ok_or(status::INVALID_NAMESPACE.dnr())
}

/// Maximum data transfer in bytes, `None` for no limit.
fn mdts_bytes(inner: &Inner) -> Option<u64> {
    match inner.cfg.mdts {
        0 => None,
        m => PAGE_SIZE.checked_shl(m as u32),
    }
}

fn check_mdts(inner: &Inner, len: u64) -> Result<(), Status> {
    match mdts_bytes(inner) {
        Some(max) if len > max => Err(status::INVALID_FIELD.dnr()),
        _ => Ok(()),
    }
}

fn check_writable(ns: &Namespace) -> Result<(), Status> {
    if ns.readonly() {
        Err(status::NAMESPACE_WRITE_PROTECTED.dnr())
    } else {
        Ok(())
    }
}

fn check_range(ns: &Namespace, slba: u64, nlb: u64) -> Result<(), Status> {
    if ns.in_range(slba, nlb) {
        Ok(())
    } else {
        Err(status::LBA_OUT_OF_RANGE.dnr())
    }
}

/// Durability a write asks for: FUA, or every write while the volatile write cache is off.
fn wants_durable(inner: &Inner, fua: bool) -> bool {
    fua || !inner.write_cache.load(Ordering::Acquire)
}

fn flush(inner: &Inner, sqe: &Sqe) -> Result<u32, Status> {
    let targets = if sqe.nsid == NSID_ALL {
        inner.namespaces()
    } else {
        vec![namespace(inner, sqe.nsid)?]
    };
    for ns in targets {
        ns.volume()
            .flush()
            .map_err(|e| of_block(&format!("flush of namespace {}", ns.nsid), &e))?;
    }
    Ok(0)
}

fn read_write(inner: &Inner, mem: &Mem, sqe: &Sqe, is_write: bool) -> Result<u32, Status> {
    let ns = namespace(inner, sqe.nsid)?;
    if is_write {
        check_writable(&ns)?;
    }
    let (slba, nlb) = (sqe.slba(), sqe.nlb());
    let len = nlb * ns.block_size();
    check_mdts(inner, len)?;
    check_range(&ns, slba, nlb)?;
    let dma = Dma::map(mem, sqe, len)?;
    let what = || {
        format!(
            "{} of namespace {} at LBA {slba}+{nlb}",
            if is_write { "write" } else { "read" },
            ns.nsid
        )
    };
    let st = &inner.stats;
    if is_write {
        let durable = wants_durable(inner, sqe.cdw12 & FUA != 0);
        ns.volume()
            .write(slba, dma.slices(), durable)
            .map_err(|e| of_block(&what(), &e))?;
        st.write_commands.fetch_add(1, Ordering::Relaxed);
        st.bytes_written.fetch_add(len, Ordering::Relaxed);
    } else {
        ns.volume()
            .read(slba, dma.slices())
            .map_err(|e| of_block(&what(), &e))?;
        st.read_commands.fetch_add(1, Ordering::Relaxed);
        st.bytes_read.fetch_add(len, Ordering::Relaxed);
    }
    Ok(0)
}

fn compare(inner: &Inner, mem: &Mem, sqe: &Sqe) -> Result<u32, Status> {
    let ns = namespace(inner, sqe.nsid)?;
    let (slba, nlb) = (sqe.slba(), sqe.nlb());
    let len = nlb * ns.block_size();
    check_mdts(inner, len)?;
    check_range(&ns, slba, nlb)?;
    let dma = Dma::map(mem, sqe, len)?;
    ns.volume().compare(slba, dma.slices()).map_err(|e| {
        of_block(
            &format!("compare on namespace {} at LBA {slba}+{nlb}", ns.nsid),
            &e,
        )
    })?;
    Ok(0)
}

fn write_zeroes(inner: &Inner, sqe: &Sqe) -> Result<u32, Status> {
    let ns = namespace(inner, sqe.nsid)?;
    check_writable(&ns)?;
    let (slba, nlb) = (sqe.slba(), sqe.nlb());
    check_range(&ns, slba, nlb)?;
    let durable = wants_durable(inner, sqe.cdw12 & FUA != 0);
    ns.volume()
        .write_zeroes(slba, nlb, sqe.cdw12 & DEAC != 0, durable)
        .map_err(|e| {
            of_block(
                &format!("write zeroes on namespace {} at LBA {slba}+{nlb}", ns.nsid),
                &e,
            )
        })?;
    Ok(0)
}

fn dataset_management(inner: &Inner, mem: &Mem, sqe: &Sqe) -> Result<u32, Status> {
    let ns = namespace(inner, sqe.nsid)?;
    if sqe.cdw11 & DSM_AD == 0 {
        // Only hints (integral read/write): nothing to do.
        return Ok(0);
    }
    check_writable(&ns)?;
    let nr = (sqe.cdw10 & 0xff) as usize + 1;
    let dma = Dma::map(mem, sqe, nr as u64 * 16)?;
    let mut buf = vec![0u8; nr * 16];
    dma.read_into(&mut buf);
    let ranges: Vec<(u64, u64)> = buf
        .chunks_exact(16)
        .map(|r| {
            (
                super::spec::get_u64(r, 8),
                super::spec::get_u32(r, 4) as u64,
            )
        })
        .collect();
    for &(slba, nlb) in &ranges {
        check_range(&ns, slba, nlb)?;
    }
    for &(slba, nlb) in &ranges {
        ns.volume().discard(slba, nlb).map_err(|e| {
            of_block(
                &format!("deallocate on namespace {} at LBA {slba}+{nlb}", ns.nsid),
                &e,
            )
        })?;
    }
    Ok(0)
}

fn verify(inner: &Inner, sqe: &Sqe) -> Result<u32, Status> {
    let ns = namespace(inner, sqe.nsid)?;
    let (slba, nlb) = (sqe.slba(), sqe.nlb());
    check_range(&ns, slba, nlb)?;
    ns.volume().verify(slba, nlb).map_err(|e| {
        of_block(
            &format!("verify on namespace {} at LBA {slba}+{nlb}", ns.nsid),
            &e,
        )
    })?;
    Ok(0)
}
