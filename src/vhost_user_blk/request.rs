//! One virtio-blk request: its descriptor chain walked and checked, its header decoded,
//! and the request run on the volume, straight from and into guest memory.
//!
//! A chain is: one readable 16-byte header, data descriptors, one writable status byte
//! (last). Whatever the chain looks like, this module never panics and never walks more
//! than [`MAX_WALK`] descriptors: a chain whose status byte can be found gets
//! `VIRTIO_BLK_S_IOERR` (or `UNSUPP` for an unknown type) when it is malformed; one
//! without a status byte is dropped (returned with used length 0) with a log line.
//! Data moves with the volume's scatter/gather calls over `VolatileSlice`s of guest
//! memory: no bounce buffer.

use std::fmt;
use std::ops::Deref;

use virtio_queue::DescriptorChain;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, VolatileSlice};

use crate::hooks::{Hooks, Op, OpKind, Transport};

use super::spec::{self, S_IOERR, S_OK, S_UNSUPP};
use super::status;
use super::Disk;

/// Guest memory as the vhost-user handler maps it.
pub type Mem = GuestMemoryMmap<()>;

/// Descriptors walked at most per chain (header, data, status, and anything past
/// `seg_max` that is only walked to find the status byte).
pub const MAX_WALK: usize = spec::MAX_QUEUE_SIZE;

/// Most segments any discard / write-zeroes request may carry (the buffers below).
const MAX_SEG: usize = if spec::MAX_DISCARD_SEG > spec::MAX_WRITE_ZEROES_SEG {
    spec::MAX_DISCARD_SEG as usize
} else {
    spec::MAX_WRITE_ZEROES_SEG as usize
};

/// What a request runs with.
pub struct Exec<'a> {
    pub disk: &'a Disk,
    pub hooks: &'a dyn Hooks,
    /// Make writes durable before completing (FLUSH was not negotiated).
    pub fua: bool,
    /// Virtqueue index (for log lines and records).
    pub queue: u16,
}

/// What became of one chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The status byte written, or `None` if the chain was dropped.
    pub status: Option<u8>,
    /// Bytes written into the chain's device-writable buffers, status byte included.
    pub used_len: u32,
    /// The operation, once a header was read.
    pub op: Option<Op>,
    /// Read/write/discard/write-zeroes: first block and block count (first range).
    pub block: Option<(u64, u32)>,
    /// Size in volume blocks (for the latency model).
    pub blocks: u64,
}

/// The OpKind of a request type.
pub fn kind_of(request_type: u32) -> OpKind {
    match request_type {
        spec::T_IN => OpKind::Read,
        spec::T_OUT => OpKind::Write,
        spec::T_FLUSH => OpKind::Flush,
        spec::T_DISCARD => OpKind::Discard,
        spec::T_WRITE_ZEROES => OpKind::WriteZeroes,
        spec::T_GET_ID => OpKind::GetId,
        _ => OpKind::Other,
    }
}

#[derive(Debug, Clone, Copy)]
struct Seg {
    addr: u64,
    len: u32,
    write: bool,
}

/// Names a request in log lines.
struct Where {
    nsid: u32,
    queue: u16,
    head: u16,
    kind: Option<OpKind>,
}

impl fmt::Display for Where {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "vhost-user-blk ns{} queue {} head {}",
            self.nsid, self.queue, self.head
        )?;
        if let Some(k) = self.kind {
            write!(f, " {}", k.name())?;
        }
        Ok(())
    }
}

/// A request's failure: the status and why (`None`: already logged by
/// [`status::of_block`]).
struct Fail(u8, Option<String>);

fn ioerr(why: impl Into<String>) -> Fail {
    Fail(S_IOERR, Some(why.into()))
}

/// Walks `chain`, runs the request it carries and writes its status byte.
pub fn handle<M: Deref<Target = Mem>>(
    x: &Exec<'_>,
    mem: &Mem,
    chain: DescriptorChain<M>,
) -> Outcome {
    let mut at = Where {
        nsid: x.disk.nsid,
        queue: x.queue,
        head: chain.head_index(),
        kind: None,
    };
    let mut out = Outcome {
        status: None,
        used_len: 0,
        op: None,
        block: None,
        blocks: 0,
    };
    let dropped = |at: &Where, why: &str| {
        log::warn!("{at}: {why}: chain dropped (no status byte written)");
    };

    // Walk the chain once, keeping at most MAX_DESCRIPTORS of it.
    let mut segs: Vec<Seg> = Vec::with_capacity(4);
    let mut last: Option<(Seg, bool)> = None;
    let mut count = 0usize;
    for d in chain {
        count += 1;
        if count > MAX_WALK {
            dropped(&at, &format!("more than {MAX_WALK} descriptors"));
            return out;
        }
        let s = Seg {
            addr: d.addr().0,
            len: d.len(),
            write: d.is_write_only(),
        };
        if segs.len() < spec::MAX_DESCRIPTORS {
            segs.push(s);
        }
        last = Some((s, d.has_next()));
    }
    let Some((st, more)) = last else {
        dropped(&at, "empty chain (or a bad indirect table)");
        return out;
    };
    if more {
        dropped(
            &at,
            "chain breaks off (next index, indirect table or total length invalid)",
        );
        return out;
    }
    if !st.write || st.len == 0 {
        dropped(&at, "last descriptor is not a device-writable status byte");
        return out;
    }
    let Some(status_addr) = st.addr.checked_add(st.len as u64 - 1) else {
        dropped(&at, "status descriptor address overflows");
        return out;
    };

    let result = run(x, mem, &segs, count, st, &mut at, &mut out);
    let status = match result {
        Ok(()) => S_OK,
        Err(Fail(s, Some(why))) => status::refuse(s, &at, &why),
        Err(Fail(s, None)) => s,
    };
    if mem.write_obj(status, GuestAddress(status_addr)).is_err() {
        dropped(&at, "status byte outside guest memory");
        out.used_len = 0;
        return out;
    }
    if status != S_OK {
        out.used_len = 0;
    }
    out.status = Some(status);
    out.used_len = out.used_len.saturating_add(1);
    out
}

/// Checks the chain's shape and header, asks the hooks, and runs the request. Failures
/// are returned with their reason; block-layer errors are mapped (and logged) here.
fn run(
    x: &Exec<'_>,
    mem: &Mem,
    segs: &[Seg],
    count: usize,
    st: Seg,
    at: &mut Where,
    out: &mut Outcome,
) -> Result<(), Fail> {
    if count > spec::MAX_DESCRIPTORS {
        return Err(ioerr(format!(
            "{count} descriptors, more than seg_max {} + 2",
            spec::SEG_MAX
        )));
    }
    if count < 2 {
        return Err(ioerr("no request header"));
    }
    let hdr = segs[0];
    if hdr.write || hdr.len != spec::HEADER_LEN {
        return Err(ioerr(format!(
            "header must be one device-readable {}-byte descriptor (got {} bytes, {})",
            spec::HEADER_LEN,
            hdr.len,
            if hdr.write { "writable" } else { "readable" }
        )));
    }
    let mut h = [0u8; spec::HEADER_LEN as usize];
    mem.read_slice(&mut h, GuestAddress(hdr.addr))
        .map_err(|_| ioerr("header outside guest memory"))?;
    let rtype = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
    let sector = u64::from_le_bytes([h[8], h[9], h[10], h[11], h[12], h[13], h[14], h[15]]);
    let kind = kind_of(rtype);
    at.kind = Some(kind);
    let op = Op {
        transport: Transport::VirtioBlk,
        kind,
        opcode: rtype as u8,
        nsid: x.disk.nsid,
    };
    out.op = Some(op);
    let data = &segs[1..count - 1];
    let total: u64 = data.iter().map(|s| s.len as u64).sum();
    let vol = &*x.disk.volume;
    let bs = vol.block_size();
    let spb = bs / spec::SECTOR;
    if matches!(kind, OpKind::Read | OpKind::Write) {
        let blocks = total / bs;
        out.block = Some((sector / spb, u32::try_from(blocks).unwrap_or(u32::MAX)));
        out.blocks = blocks;
    }
    if x.hooks.inject(&op).is_some() {
        return Err(ioerr("injected fault"));
    }
    if st.len != 1 {
        return Err(ioerr(format!(
            "status descriptor is {} bytes, not 1 (mixed layouts are not supported)",
            st.len
        )));
    }
    let fail = |e: crate::block::BlockError| Fail(status::of_block(&e, at), None);
    match kind {
        OpKind::Read | OpKind::Write => {
            let write = kind == OpKind::Write;
            if data.iter().any(|s| s.write == write) {
                return Err(ioerr(if write {
                    "write data descriptor is device-writable"
                } else {
                    "read data descriptor is not device-writable"
                }));
            }
            if !sector.is_multiple_of(spb) || !total.is_multiple_of(bs) {
                return Err(ioerr(format!(
                    "sector {sector}, {total} bytes: not a multiple of the {bs}-byte block size"
                )));
            }
            if write && x.disk.read_only {
                return Err(ioerr("write to a read-only disk"));
            }
            let slices =
                resolve(mem, data).ok_or_else(|| ioerr("data buffer outside guest memory"))?;
            let lba = sector / spb;
            let r = if write {
                vol.write(lba, &slices, x.fua)
            } else {
                vol.read(lba, &slices)
            };
            r.map_err(&fail)?;
            if !write {
                out.used_len = u32::try_from(total).unwrap_or(u32::MAX);
            }
            Ok(())
        }
        OpKind::Flush => vol.flush().map_err(&fail),
        OpKind::GetId => {
            if data.iter().any(|s| !s.write) {
                return Err(ioerr("GET_ID buffer is not device-writable"));
            }
            let n = scatter(mem, data, &x.disk.id)
                .ok_or_else(|| ioerr("GET_ID buffer outside guest memory"))?;
            out.used_len = n as u32;
            Ok(())
        }
        OpKind::Discard | OpKind::WriteZeroes => discard_or_zeroes(x, mem, data, total, kind, out)
            .map_err(|f| match f {
                Ranged::Fail(f) => f,
                Ranged::Block(e) => fail(e),
            }),
        _ => Err(Fail(
            S_UNSUPP,
            Some(format!("unsupported request type {rtype}")),
        )),
    }
}

enum Ranged {
    Fail(Fail),
    Block(crate::block::BlockError),
}

impl From<Fail> for Ranged {
    fn from(f: Fail) -> Ranged {
        Ranged::Fail(f)
    }
}

/// DISCARD and WRITE_ZEROES: every segment is checked (count, flags, size, alignment,
/// range) before any is run.
fn discard_or_zeroes(
    x: &Exec<'_>,
    mem: &Mem,
    data: &[Seg],
    total: u64,
    kind: OpKind,
    out: &mut Outcome,
) -> Result<(), Ranged> {
    let zeroes = kind == OpKind::WriteZeroes;
    let (max_seg, max_sectors) = if zeroes {
        (spec::MAX_WRITE_ZEROES_SEG, spec::MAX_WRITE_ZEROES_SECTORS)
    } else {
        (spec::MAX_DISCARD_SEG, spec::MAX_DISCARD_SECTORS)
    };
    if x.disk.read_only {
        return Err(ioerr("discard or write zeroes on a read-only disk").into());
    }
    if data.iter().any(|s| s.write) {
        return Err(ioerr("segment descriptor is device-writable").into());
    }
    if total == 0 || !total.is_multiple_of(spec::SEGMENT_LEN as u64) {
        return Err(ioerr(format!(
            "{total} bytes of segments, not a non-zero multiple of 16"
        ))
        .into());
    }
    let n = total / spec::SEGMENT_LEN as u64;
    if n > max_seg as u64 {
        return Err(ioerr(format!("{n} segments, more than {max_seg}")).into());
    }
    let n = n as usize;
    let mut buf = [0u8; spec::SEGMENT_LEN * MAX_SEG];
    let buf = &mut buf[..n * spec::SEGMENT_LEN];
    gather(mem, data, buf).ok_or_else(|| ioerr("segments outside guest memory"))?;
    let vol = &*x.disk.volume;
    let spb = vol.block_size() / spec::SECTOR;
    let allowed = if zeroes {
        spec::WRITE_ZEROES_FLAG_UNMAP
    } else {
        0
    };
    let mut ranges = [(0u64, 0u64, false); MAX_SEG];
    let mut blocks_total = 0u64;
    for (i, seg) in buf.chunks_exact(spec::SEGMENT_LEN).enumerate() {
        let sector = u64::from_le_bytes(seg[0..8].try_into().unwrap_or_default());
        let num = u32::from_le_bytes(seg[8..12].try_into().unwrap_or_default());
        let flags = u32::from_le_bytes(seg[12..16].try_into().unwrap_or_default());
        if flags & !allowed != 0 {
            return Err(Fail(
                S_UNSUPP,
                Some(format!("segment {i}: unsupported flags {flags:#x}")),
            )
            .into());
        }
        if num > max_sectors {
            return Err(ioerr(format!(
                "segment {i}: {num} sectors, more than {max_sectors}"
            ))
            .into());
        }
        if !sector.is_multiple_of(spb) || !(num as u64).is_multiple_of(spb) {
            return Err(ioerr(format!(
                "segment {i}: sector {sector} + {num}: not aligned to the {}-byte block size",
                vol.block_size()
            ))
            .into());
        }
        let (lba, blocks) = (sector / spb, num as u64 / spb);
        if !vol.in_range(lba, blocks) {
            return Err(ioerr(format!(
                "segment {i}: blocks {lba}+{blocks} are outside the volume ({} blocks)",
                vol.blocks()
            ))
            .into());
        }
        if i == 0 {
            out.block = Some((lba, blocks as u32));
        }
        blocks_total += blocks;
        ranges[i] = (lba, blocks, flags & spec::WRITE_ZEROES_FLAG_UNMAP != 0);
    }
    out.blocks = blocks_total;
    for &(lba, blocks, unmap) in &ranges[..n] {
        let r = if zeroes {
            vol.write_zeroes(lba, blocks, unmap, x.fua)
        } else {
            vol.discard(lba, blocks)
        };
        r.map_err(Ranged::Block)?;
    }
    Ok(())
}

/// The data descriptors as guest-memory slices (a descriptor crossing memory regions
/// becomes several); `None` if any byte is outside guest memory.
fn resolve<'m>(mem: &'m Mem, segs: &[Seg]) -> Option<Vec<VolatileSlice<'m>>> {
    let mut out = Vec::with_capacity(segs.len());
    for s in segs {
        for sl in GuestMemoryBackend::get_slices(mem, GuestAddress(s.addr), s.len as usize) {
            out.push(sl.ok()?);
        }
    }
    Some(out)
}

/// Reads `buf.len()` bytes from the descriptors, in order.
fn gather(mem: &Mem, segs: &[Seg], buf: &mut [u8]) -> Option<()> {
    let mut off = 0usize;
    for s in segs {
        if off == buf.len() {
            break;
        }
        let n = (s.len as usize).min(buf.len() - off);
        mem.read_slice(&mut buf[off..off + n], GuestAddress(s.addr))
            .ok()?;
        off += n;
    }
    (off == buf.len()).then_some(())
}

/// Writes as much of `data` as the descriptors hold; returns the bytes written.
fn scatter(mem: &Mem, segs: &[Seg], data: &[u8]) -> Option<usize> {
    let mut off = 0usize;
    for s in segs {
        if off == data.len() {
            break;
        }
        let n = (s.len as usize).min(data.len() - off);
        mem.write_slice(&data[off..off + n], GuestAddress(s.addr))
            .ok()?;
        off += n;
    }
    Some(off)
}
