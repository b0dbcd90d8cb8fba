//! NVM command set I/O commands: Read, Write, Flush, Write Uncorrectable, Write Zeroes,
//! Dataset Management, Compare and Verify. Each command arrives decoded ([`IoCmd`]) and is checked here
//! (namespace, write protection, MDTS, LBA range), its data buffer is resolved completely
//! into guest memory, and only then does the store move bytes — straight between the
//! file and guest memory.
//!
//! Copy (opcode 0x19) lives in [`super::copy`]; it reaches any namespace through
//! `IoCtx::namespace`, which cross-namespace copy needs.

use std::io as stdio;
use std::sync::Arc;

use super::cmd::{IoCmd, RwCmd};
use super::copy::CopyDone;
use super::io_checks::{check_mdts, check_range, check_writable, count_rw};
use super::io_context::IoCtx;
use super::namespace::Namespace;
use super::prp::{DataPtr, Dma, Mem};
use super::queues::Outcome;
use super::spec::{io_op, status, Status, NSID_ALL};
use super::status::of_block;
use super::zoned;
use crate::block::uring::AsyncIo;
use crate::hooks::Op;

/// The submission queue's requests in flight, where a Read or a Write may go instead of
/// running to its end at once.
pub(crate) struct InFlight<'a> {
    pub aio: &'a mut AsyncIo,
    /// The guest memory snapshot the command's buffers point into; each request keeps a
    /// clone until it completes, so the mapping outlives the kernel's use of it.
    pub mem: &'a Arc<Mem>,
}

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
    (io_op::WRITE_UNCORRECTABLE, true),
    (io_op::COMPARE, false),
    (io_op::WRITE_ZEROES, true),
    (io_op::DATASET_MANAGEMENT, true),
    (io_op::VERIFY, false),
    (io_op::COPY, true),
];

/// Runs one decoded I/O command, unless an injected fault (matched on `op`) decides its
/// outcome first. Copy also returns what it did (ranges, blocks copied) for the records
/// and counters. With `inflight`, a Read or a non-durable Write that passes its checks is
/// queued there instead (`Outcome::Queued`), to be ended by [`finish`].
pub(crate) fn execute(
    ctx: &IoCtx,
    mem: &Mem,
    cmd: &IoCmd,
    op: &Op,
    inflight: Option<&mut InFlight>,
) -> (Outcome, Option<CopyDone>) {
    let copy = match cmd {
        IoCmd::Copy(c) => Some(c),
        _ => None,
    };
    if let Some(inj) = ctx
        .hooks
        .inject(op)
        .map(|i| (i.copy_range, Status(i.status)))
    {
        let inj = Injected {
            copy_range: inj.0,
            status: inj.1,
        };
        return match (inj.copy_range, copy) {
            (Some(k), Some(c)) if ctx.cfg.copy => {
                let (o, done) = super::copy::execute(ctx, mem, c, Some((k, inj.status)));
                (o, Some(done))
            }
            // Copy is off: the real failure (before any range) wins.
            (Some(_), Some(c)) => (
                Outcome::err(status::INVALID_OPCODE.dnr()),
                Some(super::copy::describe(mem, c)),
            ),
            (_, Some(c)) => (
                Outcome::err(inj.status),
                Some(super::copy::describe(mem, c)),
            ),
            _ => (Outcome::err(inj.status), None),
        };
    }
    if let (Some(c), true) = (copy, ctx.cfg.copy) {
        let (o, done) = super::copy::execute(ctx, mem, c, None);
        return (o, Some(done));
    }
    if let IoCmd::ZoneAppend(c) = cmd {
        return (super::zoned::append(ctx, mem, c), None);
    }
    if let Some(f) = inflight {
        if let Some(o) = try_queue(ctx, mem, cmd, f) {
            return (o, None);
        }
    }
    (run(ctx, mem, cmd).into(), None)
}

/// Queues a Read in flight when it can go there: a slot free, a store with a
/// descriptor, and few enough segments. `None`: run it synchronously instead.
///
/// Writes always run synchronously: buffered writes into the page cache do not block
/// for long, but io_uring cannot complete them without blocking on most file systems
/// (ext4 among them) and hands each to one of its worker threads, which measured here
/// cost several times the write itself (a TCG guest's 4k random writes at QD 16 lost
/// about 15 % against the synchronous write). Reads of cached pages complete inline
/// when the batch is submitted; reads that miss the cache are where requests in flight
/// pay off.
fn try_queue(ctx: &IoCtx, mem: &Mem, cmd: &IoCmd, f: &mut InFlight) -> Option<Outcome> {
    let (c, is_write) = match cmd {
        IoCmd::Read(c) => (c, false),
        _ => return None,
    };
    if !f.aio.has_room() || with_metadata(ctx, cmd).is_some() {
        return None;
    }
    let (ns, dma, _) = match prepare_rw(ctx, mem, c, is_write) {
        Ok(p) => p,
        Err(s) => return Some(Outcome::err(s)),
    };
    let (fd, off) = match ns.volume().direct(c.slba, c.nlb as u64, is_write) {
        Ok(Some(t)) => t,
        Ok(None) => return None,
        Err(e) => return Some(Outcome::err(of_block(&rw_what(&ns, c, is_write), &e))),
    };
    // The namespace (its open file) and the memory snapshot live until completion.
    let keep = Box::new((f.mem.clone(), ns.clone()));
    f.aio
        .queue(fd, off, is_write, dma.slices(), keep)
        .ok()
        .map(Outcome::Queued)
}

/// Ends a Read or Write that ran in flight with the kernel's `result`: a complete
/// transfer succeeds; a short or failed one is done again synchronously, which reads
/// zeroes past the end of a shorter file and reports a failure with the status the
/// synchronous path gives it.
pub(crate) fn finish(ctx: &IoCtx, mem: &Mem, cmd: &IoCmd, result: stdio::Result<usize>) -> Outcome {
    let (c, is_write) = match cmd {
        IoCmd::Read(c) => (c, false),
        IoCmd::Write(c) => (c, true),
        _ => return Outcome::err(status::INTERNAL_ERROR),
    };
    let Ok(ns) = namespace(ctx, c.nsid) else {
        return read_write(ctx, mem, c, is_write).into();
    };
    let len = c.nlb as u64 * ns.block_size();
    match result {
        Ok(n) if n as u64 == len => {
            count_rw(ctx, is_write, len);
            Outcome::ok(0)
        }
        r => {
            log::debug!(
                "{} in flight ended with {r:?} of {len} bytes; done again synchronously",
                rw_what(&ns, c, is_write)
            );
            read_write(ctx, mem, c, is_write).into()
        }
    }
}

fn run(ctx: &IoCtx, mem: &Mem, cmd: &IoCmd) -> Result<u32, Status> {
    if let Some(r) = run_with_metadata(ctx, mem, cmd) {
        return r;
    }
    match *cmd {
        IoCmd::Flush { nsid } => flush(ctx, nsid),
        IoCmd::Write(c) => read_write(ctx, mem, &c, true),
        IoCmd::Read(c) => read_write(ctx, mem, &c, false),
        IoCmd::Compare(c) => compare(ctx, mem, &c),
        IoCmd::WriteZeroes {
            nsid,
            slba,
            nlb,
            fua,
            deac,
            ..
        } => write_zeroes(ctx, nsid, slba, nlb as u64, fua, deac),
        IoCmd::DatasetManagement { nsid, nr, ad, dptr } => {
            dataset_management(ctx, mem, nsid, nr, ad, &dptr)
        }
        IoCmd::Verify {
            nsid, slba, nlb, ..
        } => verify(ctx, nsid, slba, nlb as u64),
        IoCmd::WriteUncorrectable { nsid, slba, nlb } => {
            write_uncorrectable(ctx, nsid, slba, nlb as u64)
        }
        IoCmd::ZoneSend(c) => super::zoned::send(ctx, mem, &c),
        IoCmd::ZoneReceive(c) => super::zoned::receive(ctx, mem, &c),
        // Zone Append completes with the LBA: it returns from `execute`.
        IoCmd::ZoneAppend(_) => Err(status::INTERNAL_ERROR),
        // Copy with `--ctrl copy=off`, and every opcode not decoded.
        IoCmd::Copy(_) | IoCmd::Unknown(_) => Err(status::INVALID_OPCODE.dnr()),
    }
}

/// The namespace of a block command, if it has metadata: such commands run in
/// [`super::io_meta`] (bounce buffers, protection information).
fn with_metadata(ctx: &IoCtx, cmd: &IoCmd) -> Option<Arc<Namespace>> {
    let nsid = match *cmd {
        IoCmd::Read(c) | IoCmd::Write(c) | IoCmd::Compare(c) => c.nsid,
        IoCmd::WriteZeroes { nsid, .. } | IoCmd::Verify { nsid, .. } => nsid,
        _ => return None,
    };
    // A bad NSID gets its status from the plain path.
    ctx.namespace(nsid).ok().filter(|ns| ns.meta().ms != 0)
}

fn run_with_metadata(ctx: &IoCtx, mem: &Mem, cmd: &IoCmd) -> Option<Result<u32, Status>> {
    let ns = with_metadata(ctx, cmd)?;
    Some(match *cmd {
        IoCmd::Write(c) | IoCmd::Read(c) => {
            let is_write = matches!(cmd, IoCmd::Write(_));
            super::io_meta::read_write(ctx, mem, &ns, &c, is_write).map(|len| {
                count_rw(ctx, is_write, len);
                0
            })
        }
        IoCmd::Compare(c) => super::io_meta::compare(ctx, mem, &ns, &c).map(|_| 0),
        IoCmd::Verify { slba, nlb, pi, .. } => {
            super::io_meta::verify(&ns, slba, nlb as u64, &pi).map(|_| 0)
        }
        IoCmd::WriteZeroes {
            slba,
            nlb,
            fua,
            deac,
            pi,
            ..
        } => super::io_meta::write_zeroes(&ns, slba, nlb as u64, deac, ctx.durable(fua), &pi)
            .map(|_| 0),
        _ => return None,
    })
}

fn namespace(ctx: &IoCtx, nsid: u32) -> Result<Arc<Namespace>, Status> {
    ctx.namespace(nsid)
}

fn flush(ctx: &IoCtx, nsid: u32) -> Result<u32, Status> {
    let targets = if nsid == NSID_ALL {
        ctx.namespaces.all()
    } else {
        vec![namespace(ctx, nsid)?]
    };
    for ns in targets {
        ns.volume()
            .flush()
            .map_err(|e| of_block(&format!("flush of namespace {}", ns.nsid), &e))?;
        zoned::persist(&ns, true)?;
    }
    Ok(0)
}

/// The checks of a Read or Write, in the spec's order, and its buffer in guest memory:
/// (namespace, buffer, length in bytes).
fn prepare_rw<'m>(
    ctx: &IoCtx,
    mem: &'m Mem,
    c: &RwCmd,
    is_write: bool,
) -> Result<(Arc<Namespace>, Dma<'m>, u64), Status> {
    let ns = namespace(ctx, c.nsid)?;
    if is_write {
        check_writable(&ns)?;
    }
    let (slba, nlb) = (c.slba, c.nlb as u64);
    let len = nlb * ns.block_size();
    check_mdts(ctx, len)?;
    check_range(&ns, slba, nlb)?;
    if !is_write {
        zoned::check_read(&ns, slba, nlb)?;
    }
    let dma = if is_write {
        Dma::map(mem, &c.dptr, len)?
    } else {
        Dma::map_to_host(mem, &c.dptr, len)?
    };
    if is_write {
        // Last: a write that passed its zone checks has moved the write pointer.
        zoned::check_write(&ns, slba, nlb)?;
    }
    Ok((ns, dma, len))
}

fn rw_what(ns: &Namespace, c: &RwCmd, is_write: bool) -> String {
    format!(
        "{} of namespace {} at LBA {}+{}",
        if is_write { "write" } else { "read" },
        ns.nsid,
        c.slba,
        c.nlb
    )
}

fn read_write(ctx: &IoCtx, mem: &Mem, c: &RwCmd, is_write: bool) -> Result<u32, Status> {
    let (ns, dma, len) = prepare_rw(ctx, mem, c, is_write)?;
    let r = if is_write {
        ns.volume().write(c.slba, dma.slices(), ctx.durable(c.fua))
    } else {
        ns.volume().read(c.slba, dma.slices())
    };
    r.map_err(|e| of_block(&rw_what(&ns, c, is_write), &e))?;
    if is_write {
        zoned::persist(&ns, ctx.durable(c.fua))?;
    }
    count_rw(ctx, is_write, len);
    Ok(0)
}

fn compare(ctx: &IoCtx, mem: &Mem, c: &RwCmd) -> Result<u32, Status> {
    let ns = namespace(ctx, c.nsid)?;
    let (slba, nlb) = (c.slba, c.nlb as u64);
    let len = nlb * ns.block_size();
    check_mdts(ctx, len)?;
    check_range(&ns, slba, nlb)?;
    zoned::check_read(&ns, slba, nlb)?;
    let dma = Dma::map(mem, &c.dptr, len)?;
    ns.volume().compare(slba, dma.slices()).map_err(|e| {
        of_block(
            &format!("compare on namespace {} at LBA {slba}+{nlb}", ns.nsid),
            &e,
        )
    })?;
    Ok(0)
}

fn write_zeroes(
    ctx: &IoCtx,
    nsid: u32,
    slba: u64,
    nlb: u64,
    fua: bool,
    deac: bool,
) -> Result<u32, Status> {
    let ns = namespace(ctx, nsid)?;
    check_writable(&ns)?;
    check_range(&ns, slba, nlb)?;
    zoned::check_write(&ns, slba, nlb)?;
    let durable = ctx.durable(fua);
    ns.volume()
        .write_zeroes(slba, nlb, deac, durable)
        .map_err(|e| {
            of_block(
                &format!("write zeroes on namespace {} at LBA {slba}+{nlb}", ns.nsid),
                &e,
            )
        })?;
    zoned::persist(&ns, durable)?;
    Ok(0)
}

fn dataset_management(
    ctx: &IoCtx,
    mem: &Mem,
    nsid: u32,
    nr: u16,
    ad: bool,
    dptr: &DataPtr,
) -> Result<u32, Status> {
    let ns = namespace(ctx, nsid)?;
    if !ad {
        // Only hints (integral read/write): nothing to do.
        return Ok(0);
    }
    check_writable(&ns)?;
    let nr = nr as usize;
    let dma = Dma::map(mem, dptr, nr as u64 * 16)?;
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

/// Marks the blocks unreadable: Read, Compare, Verify and Copy from them end with
/// Unrecovered Read Error until they are written again. No data moves, so MDTS does not
/// apply; a namespace with metadata is marked the same way.
fn write_uncorrectable(ctx: &IoCtx, nsid: u32, slba: u64, nlb: u64) -> Result<u32, Status> {
    let ns = namespace(ctx, nsid)?;
    check_writable(&ns)?;
    check_range(&ns, slba, nlb)?;
    zoned::check_write(&ns, slba, nlb)?;
    ns.volume().mark_unreadable(slba, nlb).map_err(|e| {
        of_block(
            &format!(
                "write uncorrectable on namespace {} at LBA {slba}+{nlb}",
                ns.nsid
            ),
            &e,
        )
    })?;
    zoned::persist(&ns, ctx.durable(false))?;
    Ok(0)
}

fn verify(ctx: &IoCtx, nsid: u32, slba: u64, nlb: u64) -> Result<u32, Status> {
    let ns = namespace(ctx, nsid)?;
    check_range(&ns, slba, nlb)?;
    zoned::check_read(&ns, slba, nlb)?;
    ns.volume().verify(slba, nlb).map_err(|e| {
        of_block(
            &format!("verify on namespace {} at LBA {slba}+{nlb}", ns.nsid),
            &e,
        )
    })?;
    Ok(0)
}
