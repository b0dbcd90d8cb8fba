//! The Zoned Namespace command set's I/O commands — Zone Management Send, Zone
//! Management Receive, Zone Append — and the zone rules the NVM commands follow on a
//! zoned namespace (writes at the write pointer, reads within a zone). The zone state
//! itself is [`super::zones`]; this module moves the data and the reports.

use super::cmd::{RwCmd, ZoneReceiveAction, ZoneReceiveCmd, ZoneSendCmd};
use super::io_checks::{check_mdts, check_range, check_writable, count_rw};
use super::io_context::IoCtx;
use super::namespace::Namespace;
use super::prp::{to_host_prefix, Dma, Mem};
use super::queues::Outcome;
use super::spec::{io_op, status, Status};
use super::status::of_block;
use super::zones::{ZoneAction, Zones};
use std::sync::Arc;

/// The zoned command set's own I/O opcodes and whether they change logical block
/// content (the Commands Supported and Effects log for CSI 2).
pub const SUPPORTED: &[(u8, bool)] = &[
    (io_op::ZONE_MGMT_SEND, true),
    (io_op::ZONE_MGMT_RECV, false),
    (io_op::ZONE_APPEND, true),
];

/// The controller's memory page size (CAP.MPSMIN), the unit of ZASL.
const PAGE: u64 = 4096;

/// The zones of the namespace a zoned command names; a namespace of the NVM command set
/// does not support the zoned opcodes (Invalid Opcode, as QEMU answers).
/// The zones of a zoned namespace for a zoned command: Invalid Opcode on an NVM
/// namespace, and on a zoned one while CC.CSS enables the NVM command set only.
fn zones_of<'a>(ctx: &IoCtx, ns: &'a Namespace) -> Result<&'a Arc<Zones>, Status> {
    if !ctx.all_command_sets {
        log::warn!(
            "namespace {}: a zoned command while CC.CSS enables the NVM command set only",
            ns.nsid
        );
        return Err(status::INVALID_OPCODE.dnr());
    }
    ns.zones().ok_or(status::INVALID_OPCODE.dnr())
}

/// A write of `nlb` blocks at `slba` on `ns` (Write, Write Zeroes, Write Uncorrectable,
/// a Copy's destination): on a zoned namespace it must start at the zone's write
/// pointer and fit in the zone's capacity, and it moves the pointer (see
/// [`Zones::begin_write`]). Nothing to check on an NVM namespace.
pub(crate) fn check_write(ns: &Namespace, slba: u64, nlb: u64) -> Result<(), Status> {
    match ns.zones() {
        Some(z) => z
            .begin_write(slba, nlb, false)
            .map(|_| ())
            .inspect_err(|s| {
                log::debug!(
                    "write to namespace {} at LBA {slba}+{nlb}: zone rules give status {:#06x}",
                    ns.nsid,
                    s.0
                )
            }),
        None => Ok(()),
    }
}

/// After a write that must be durable (FUA, or the write cache off), a Flush or a zone
/// action: the zone states and write pointers go to the zone file too. A zone file
/// that cannot be written fails the command with Internal Error (logged).
pub(crate) fn persist(ns: &Namespace, durable: bool) -> Result<(), Status> {
    if durable && ns.zones().is_some() {
        ns.save_zones().map_err(|_| status::INTERNAL_ERROR)?;
    }
    Ok(())
}

/// A read of `nlb` blocks at `slba` (Read, Compare, Verify, a Copy's source): on a
/// zoned namespace no offline zone, and no zone boundary unless cross_read is on.
pub(crate) fn check_read(ns: &Namespace, slba: u64, nlb: u64) -> Result<(), Status> {
    match ns.zones() {
        Some(z) => z.check_read(slba, nlb).inspect_err(|s| {
            log::debug!(
                "read of namespace {} at LBA {slba}+{nlb}: zone rules give status {:#06x}",
                ns.nsid,
                s.0
            )
        }),
        None => Ok(()),
    }
}

/// The controller's Zone Append Size Limit (Identify CNS 6 CSI 2): the smallest
/// `zoned.zasl` of the zoned namespaces (0: none given, MDTS applies).
pub(crate) fn zasl(namespaces: &[Arc<Namespace>]) -> u8 {
    namespaces
        .iter()
        .filter_map(|n| n.zones().map(|z| z.geometry().zasl))
        .filter(|&z| z != 0)
        .min()
        .unwrap_or(0)
}

/// Zone Append: the checks of a Write (write protection, MDTS, range), then ZASL
/// (Invalid Field), then the zone's (its first LBA, state, capacity, resources). The
/// data goes to the zone's write pointer, which the completion returns in Dwords 0-1.
pub(crate) fn append(ctx: &IoCtx, mem: &Mem, c: &RwCmd) -> Outcome {
    match run_append(ctx, mem, c) {
        Ok(lba) => Outcome::ok64(lba),
        Err(s) => Outcome::err(s),
    }
}

fn run_append(ctx: &IoCtx, mem: &Mem, c: &RwCmd) -> Result<u64, Status> {
    let ns = ctx.namespace(c.nsid)?;
    let zones = zones_of(ctx, &ns)?;
    check_writable(&ns)?;
    let nlb = c.nlb as u64;
    let len = nlb * ns.block_size();
    check_mdts(ctx, len)?;
    check_range(&ns, c.slba, nlb)?;
    let zasl = zasl(&ctx.namespaces.all());
    if zasl != 0 && len > PAGE << zasl {
        return Err(status::INVALID_FIELD.dnr());
    }
    let dma = Dma::map(mem, &c.dptr, len)?;
    let lba = zones.begin_write(c.slba, nlb, true)?;
    ns.volume()
        .write(lba, dma.slices(), ctx.durable(c.fua))
        .map_err(|e| {
            of_block(
                &format!("zone append to namespace {} at LBA {lba}+{nlb}", ns.nsid),
                &e,
            )
        })?;
    persist(&ns, ctx.durable(c.fua))?;
    count_rw(ctx, true, len);
    Ok(lba)
}

/// Zone Management Send: one zone action, or one on every zone it applies to (Select
/// All). A reset deallocates the zone's blocks (they read as zeroes again).
pub(crate) fn send(ctx: &IoCtx, mem: &Mem, c: &ZoneSendCmd) -> Result<u32, Status> {
    let ns = ctx.namespace(c.nsid)?;
    let zones = zones_of(ctx, &ns)?;
    let action = c.action.ok_or(status::INVALID_FIELD.dnr())?;
    let changes_data = matches!(
        action,
        ZoneAction::Reset | ZoneAction::Finish | ZoneAction::SetExtension
    );
    if changes_data {
        check_writable(&ns)?;
    }
    let ext_size = zones.geometry().ext_size as usize;
    let ext = if action == ZoneAction::SetExtension && ext_size != 0 && !c.select_all {
        super::prp::from_host(mem, &c.dptr, ext_size)?
    } else {
        Vec::new()
    };
    let done = zones
        .send(action, c.slba, c.select_all, &ext)
        .inspect_err(|s| {
            log::debug!(
                "zone {} on namespace {} at LBA {}{}: status {:#06x}",
                action.name(),
                ns.nsid,
                c.slba,
                if c.select_all { " (select all)" } else { "" },
                s.0
            )
        })?;
    for (slba, blocks) in done.deallocate {
        ns.volume().discard(slba, blocks).map_err(|e| {
            of_block(
                &format!("zone reset of namespace {} at LBA {slba}+{blocks}", ns.nsid),
                &e,
            )
        })?;
    }
    persist(&ns, true)?;
    Ok(0)
}

/// Zone Management Receive: a report (or an extended one) of the zones from SLBA on,
/// into the host's buffer (MDTS bounds it).
pub(crate) fn receive(ctx: &IoCtx, mem: &Mem, c: &ZoneReceiveCmd) -> Result<u32, Status> {
    let ns = ctx.namespace(c.nsid)?;
    let zones = zones_of(ctx, &ns)?;
    let action = c.action.ok_or(status::INVALID_FIELD.dnr())?;
    let filter = c.filter.ok_or(status::INVALID_FIELD.dnr())?;
    check_mdts(ctx, c.bytes)?;
    let extended = action == ZoneReceiveAction::ExtendedReport;
    let len = usize::try_from(c.bytes).unwrap_or(usize::MAX);
    let report = zones.report(c.slba, filter, extended, c.partial, len)?;
    to_host_prefix(mem, &c.dptr, c.bytes, &report)?;
    Ok(0)
}
