//! Read, Write, Compare, Verify and Write Zeroes on namespaces formatted with metadata.
//! Each command moves its blocks through bounce buffers of at most [`CHUNK_BYTES`] of
//! data (and their metadata): the host's side is the data buffer with each block's
//! metadata after its data (extended LBA) or the data buffer plus the separate MPTR
//! buffer; the store's side is the volume's data region and metadata region. In
//! between, protection information is checked (PRCHK), inserted (PRACT on writes) or
//! stripped (PRACT on reads, when the metadata is exactly the tuple).
//!
//! Commands with protection information follow QEMU's order of checks (write
//! protection, MDTS, LBA range, then the PRINFO checks), and the spec where QEMU
//! departs from it (docs/copy.md, "Protection information").

use super::cmd::{PiFields, RwCmd};
use super::io_context::IoCtx;
use super::namespace::Namespace;
use super::protection::{self, prinfo, MetaFormat, Tags};
use super::prp::{map_metadata, Cursor, Dma, Mem};
use super::spec::{status, Status};
use super::status::of_block;
use crate::block::BlockError;

/// Data bytes per bounce chunk (at least one block): the only buffers a command gets,
/// whatever its length.
pub const CHUNK_BYTES: usize = 256 << 10;

/// The PRINFO a command's fields mean on `f`: none without protection information.
fn tags_of(f: &MetaFormat, pi: &PiFields) -> Tags {
    Tags {
        prinfo: if f.has_pi() { pi.prinfo } else { 0 },
        reftag: pi.ilbrt,
        apptag: pi.lbat,
        appmask: pi.lbatm,
    }
}

/// The host's buffers of one command, walked block by block.
struct HostBufs<'m> {
    data: Dma<'m>,
    /// The separate metadata buffer (not extended, metadata transferred).
    meta: Option<Dma<'m>>,
    extended: bool,
    /// Metadata bytes per block that cross the bus (0: none).
    ms: usize,
    data_cur: Cursor,
    meta_cur: Cursor,
}

impl<'m> HostBufs<'m> {
    fn map(
        mem: &'m Mem,
        f: &MetaFormat,
        c: &RwCmd,
        bs: u64,
        ms: u64,
        to_host: bool,
    ) -> Result<HostBufs<'m>, Status> {
        let nlb = c.nlb as u64;
        let data_len = nlb * bs + if f.extended { nlb * ms } else { 0 };
        let data = if to_host {
            Dma::map_to_host(mem, &c.dptr, data_len)?
        } else {
            Dma::map(mem, &c.dptr, data_len)?
        };
        let meta = if !f.extended && ms != 0 {
            Some(map_metadata(
                mem,
                c.mptr.addr,
                c.mptr.sgl,
                nlb * ms,
                to_host,
            )?)
        } else {
            None
        };
        Ok(HostBufs {
            data,
            meta,
            extended: f.extended,
            ms: ms as usize,
            data_cur: Cursor::default(),
            meta_cur: Cursor::default(),
        })
    }

    /// The next blocks' data into `data` (whole blocks of `bs`) and metadata into
    /// `meta` (zeroes where the host sends none).
    fn gather(&mut self, bs: usize, data: &mut [u8], meta: &mut [u8], meta_unit: usize) {
        if self.ms == 0 {
            meta.fill(0);
        }
        if self.extended {
            for (d, m) in data.chunks_exact_mut(bs).zip(chunks_mut(meta, meta_unit)) {
                self.data.read_seq(&mut self.data_cur, d);
                if self.ms != 0 {
                    self.data.read_seq(&mut self.data_cur, m);
                }
            }
        } else {
            self.data.read_seq(&mut self.data_cur, data);
            if let Some(md) = &self.meta {
                md.read_seq(&mut self.meta_cur, meta);
            }
        }
    }

    /// The next blocks' data and (if it crosses the bus) metadata to the host.
    fn scatter(&mut self, bs: usize, data: &[u8], meta: &[u8], meta_unit: usize) {
        if self.extended {
            for (d, m) in data.chunks_exact(bs).zip(chunks(meta, meta_unit)) {
                self.data.write_seq(&mut self.data_cur, d);
                if self.ms != 0 {
                    self.data.write_seq(&mut self.data_cur, m);
                }
            }
        } else {
            self.data.write_seq(&mut self.data_cur, data);
            if let Some(md) = &self.meta {
                md.write_seq(&mut self.meta_cur, meta);
            }
        }
    }
}

/// `meta` in units of `unit` bytes, or as many empty units as needed when `unit` is 0.
fn chunks(meta: &[u8], unit: usize) -> Box<dyn Iterator<Item = &[u8]> + '_> {
    if unit == 0 {
        Box::new(std::iter::repeat(&[][..]))
    } else {
        Box::new(meta.chunks_exact(unit))
    }
}

fn chunks_mut(meta: &mut [u8], unit: usize) -> Box<dyn Iterator<Item = &mut [u8]> + '_> {
    if unit == 0 {
        Box::new(std::iter::repeat_with(|| &mut [][..]))
    } else {
        Box::new(meta.chunks_exact_mut(unit))
    }
}

/// Bounce buffers for `nlb` blocks of `ns`, chunk by chunk.
struct Bounce {
    data: Vec<u8>,
    meta: Vec<u8>,
    /// Blocks per chunk.
    chunk: u64,
}

impl Bounce {
    fn new(ns: &Namespace, nlb: u64) -> Bounce {
        let bs = ns.block_size() as usize;
        let chunk = ((CHUNK_BYTES / bs).max(1) as u64).min(nlb.max(1));
        Bounce {
            data: vec![0u8; chunk as usize * bs],
            meta: vec![0u8; chunk as usize * ns.meta().ms as usize],
            chunk,
        }
    }

    /// The buffers for `n` blocks (n <= chunk).
    fn take(&mut self, n: u64, bs: usize, ms: usize) -> (&mut [u8], &mut [u8]) {
        let n = n as usize;
        (&mut self.data[..n * bs], &mut self.meta[..n * ms])
    }
}

fn what(op: &str, ns: &Namespace, slba: u64, nlb: u64) -> String {
    format!("{op} of namespace {} at LBA {slba}+{nlb}", ns.nsid)
}

/// The block error as a status, with the log line of [`of_block`].
fn blk(op: &str, ns: &Namespace, slba: u64, nlb: u64) -> impl Fn(BlockError) -> Status {
    let w = what(op, ns, slba, nlb);
    move |e| of_block(&w, &e)
}

/// Logs a protection information failure (debug: the guest's data, not ours).
fn pi_fail(op: &str, ns: &Namespace, lba: u64, st: Status) -> Status {
    log::debug!(
        "{} failed its protection information check at or after LBA {lba} (status {:#06x})",
        what(op, ns, lba, 0),
        st.0
    );
    st
}

/// The checks a Read, Write or Compare shares after the namespace lookup, in order
/// (MDTS, LBA range, the host's buffers, Type 1's initial reference tag), and what they
/// give: the command's tags, the metadata bytes per block that cross the bus, and the
/// host's buffers.
fn prepare<'m>(
    ctx: &IoCtx,
    mem: &'m Mem,
    ns: &Namespace,
    c: &RwCmd,
    to_host: bool,
) -> Result<(Tags, u64, HostBufs<'m>), Status> {
    let f = *ns.meta();
    let (bs, nlb) = (ns.block_size(), c.nlb as u64);
    let tags = tags_of(&f, &c.pi);
    let xfer_ms = if f.transfers_meta(tags.prinfo) {
        f.ms as u64
    } else {
        0
    };
    // MDTS covers the data buffer: with extended LBAs, its metadata too.
    let buf_len = nlb * bs + if f.extended { nlb * xfer_ms } else { 0 };
    if let Some(max) = ctx.mdts_bytes() {
        if buf_len > max {
            return Err(status::INVALID_FIELD.dnr());
        }
    }
    if !ns.in_range(c.slba, nlb) {
        return Err(status::LBA_OUT_OF_RANGE.dnr());
    }
    let host = HostBufs::map(mem, &f, c, bs, xfer_ms, to_host)?;
    if f.has_pi() {
        protection::check_initial_reftag(&f, tags.prinfo, c.slba, tags.reftag)?;
    }
    Ok((tags, xfer_ms, host))
}

/// Read or Write of `c` on `ns` (which has metadata). Checks before this: namespace
/// lookup (and write protection, MDTS, range here, in the order of the plain path).
pub(crate) fn read_write(
    ctx: &IoCtx,
    mem: &Mem,
    ns: &Namespace,
    c: &RwCmd,
    is_write: bool,
) -> Result<u64, Status> {
    let f = *ns.meta();
    let op = if is_write { "write" } else { "read" };
    if is_write && ns.readonly() {
        return Err(status::NAMESPACE_WRITE_PROTECTED.dnr());
    }
    let (bs, nlb) = (ns.block_size(), c.nlb as u64);
    let (tags, xfer_ms, mut host) = prepare(ctx, mem, ns, c, !is_write)?;
    let (bsz, ms) = (bs as usize, f.ms as usize);
    let mut bounce = Bounce::new(ns, nlb);
    let mut reftag = tags.reftag;
    let (mut lba, end) = (c.slba, c.slba + nlb);
    let vol = ns.volume();
    while lba < end {
        let n = (end - lba).min(bounce.chunk);
        let (data, meta) = bounce.take(n, bsz, ms);
        if is_write {
            host.gather(bsz, data, meta, xfer_ms as usize);
            if f.has_pi() {
                if tags.prinfo & prinfo::PRACT != 0 {
                    protection::generate(&f, bsz, data, meta, tags.apptag, &mut reftag);
                } else {
                    protection::check(&f, bsz, data, meta, &tags, &mut reftag)
                        .map_err(|s| pi_fail(op, ns, lba, s))?;
                }
            }
            vol.write_buf(lba, data, false)
                .map_err(blk(op, ns, c.slba, nlb))?;
            vol.write_meta(lba, meta, false)
                .map_err(blk(op, ns, c.slba, nlb))?;
        } else {
            vol.read_buf(lba, data).map_err(blk(op, ns, c.slba, nlb))?;
            vol.read_meta(lba, meta).map_err(blk(op, ns, c.slba, nlb))?;
            if f.has_pi() {
                protection::check(&f, bsz, data, meta, &tags, &mut reftag)
                    .map_err(|s| pi_fail(op, ns, lba, s))?;
            }
            host.scatter(bsz, data, meta, xfer_ms as usize);
        }
        lba += n;
    }
    if is_write && ctx.durable(c.fua) {
        vol.flush().map_err(blk(op, ns, c.slba, nlb))?;
    }
    Ok(nlb * bs)
}

/// Compare on `ns` (which has metadata): the stored protection information is checked
/// as PRINFO asks, then the data, and the metadata that crosses the bus (without the
/// tuple when PRACT: the controller owns it then).
pub(crate) fn compare(ctx: &IoCtx, mem: &Mem, ns: &Namespace, c: &RwCmd) -> Result<(), Status> {
    let f = *ns.meta();
    let (bs, nlb) = (ns.block_size(), c.nlb as u64);
    let (tags, xfer_ms, mut host) = prepare(ctx, mem, ns, c, false)?;
    let (bsz, ms) = (bs as usize, f.ms as usize);
    let mut stored = Bounce::new(ns, nlb);
    let mut sent = Bounce::new(ns, nlb);
    let mut reftag = tags.reftag;
    let (mut lba, end) = (c.slba, c.slba + nlb);
    let vol = ns.volume();
    let skip_tuple = f.has_pi() && tags.prinfo & prinfo::PRACT != 0;
    while lba < end {
        let n = (end - lba).min(stored.chunk);
        let (data, meta) = stored.take(n, bsz, ms);
        vol.read_buf(lba, data)
            .map_err(blk("compare", ns, c.slba, nlb))?;
        vol.read_meta(lba, meta)
            .map_err(blk("compare", ns, c.slba, nlb))?;
        if f.has_pi() {
            protection::check(&f, bsz, data, meta, &tags, &mut reftag)
                .map_err(|s| pi_fail("compare", ns, lba, s))?;
        }
        let (hdata, hmeta) = sent.take(n, bsz, ms);
        host.gather(bsz, hdata, hmeta, xfer_ms as usize);
        let mut same = hdata == data;
        if same && xfer_ms != 0 {
            same = meta
                .chunks_exact(ms)
                .zip(hmeta.chunks_exact(ms))
                .all(|(a, b)| {
                    if skip_tuple {
                        let (o, t) = (f.pi_offset(), f.tuple_size());
                        a[..o] == b[..o] && a[o + t..] == b[o + t..]
                    } else {
                        a == b
                    }
                });
        }
        if !same {
            log::debug!("{}: data differs", what("compare", ns, c.slba, nlb));
            return Err(status::COMPARE_FAILURE.dnr());
        }
        lba += n;
    }
    Ok(())
}

/// Verify on `ns` (which has metadata): reads every block and checks its protection
/// information as PRINFO asks.
pub(crate) fn verify(ns: &Namespace, slba: u64, nlb: u64, pi: &PiFields) -> Result<(), Status> {
    let f = *ns.meta();
    if !ns.in_range(slba, nlb) {
        return Err(status::LBA_OUT_OF_RANGE.dnr());
    }
    let tags = tags_of(&f, pi);
    if f.has_pi() {
        protection::check_initial_reftag(&f, tags.prinfo, slba, tags.reftag)?;
    }
    let (bsz, ms) = (ns.block_size() as usize, f.ms as usize);
    let mut bounce = Bounce::new(ns, nlb);
    let mut reftag = tags.reftag;
    let (mut lba, end) = (slba, slba + nlb);
    let vol = ns.volume();
    while lba < end {
        let n = (end - lba).min(bounce.chunk);
        let (data, meta) = bounce.take(n, bsz, ms);
        vol.read_buf(lba, data)
            .map_err(blk("verify", ns, slba, nlb))?;
        vol.read_meta(lba, meta)
            .map_err(blk("verify", ns, slba, nlb))?;
        if f.has_pi() {
            protection::check(&f, bsz, data, meta, &tags, &mut reftag)
                .map_err(|s| pi_fail("verify", ns, lba, s))?;
        }
        lba += n;
    }
    Ok(())
}

/// Write Zeroes on `ns` (which has metadata). With protection information, PRCHK bits
/// are Invalid Protection Information (there is no host data to check). PRACT: the
/// data is zeroed and protection information generated for it (application tag
/// LBAT, reference tags from ILBRT); else the metadata is zeroed too (the tuple of
/// such a write is all zeroes), or with Deallocate the blocks are deallocated and
/// their metadata reads as all ones (escape values: checks off).
pub(crate) fn write_zeroes(
    ns: &Namespace,
    slba: u64,
    nlb: u64,
    deac: bool,
    durable: bool,
    pi: &PiFields,
) -> Result<(), Status> {
    let f = *ns.meta();
    if ns.readonly() {
        return Err(status::NAMESPACE_WRITE_PROTECTED.dnr());
    }
    if !ns.in_range(slba, nlb) {
        return Err(status::LBA_OUT_OF_RANGE.dnr());
    }
    let tags = tags_of(&f, pi);
    if tags.prinfo & prinfo::PRCHK != 0 {
        return Err(status::INVALID_PROTECTION_INFO.dnr());
    }
    let pract = f.has_pi() && tags.prinfo & prinfo::PRACT != 0;
    let vol = ns.volume();
    let err = blk("write zeroes", ns, slba, nlb);
    if deac && !pract {
        return vol.write_zeroes(slba, nlb, true, durable).map_err(err);
    }
    vol.write_zeroes(slba, nlb, false, false).map_err(&err)?;
    let (bsz, ms) = (ns.block_size() as usize, f.ms as usize);
    let mut bounce = Bounce::new(ns, nlb);
    let mut reftag = tags.reftag;
    let (mut lba, end) = (slba, slba + nlb);
    while lba < end {
        let n = (end - lba).min(bounce.chunk);
        let (data, meta) = bounce.take(n, bsz, ms);
        meta.fill(0);
        if pract {
            data.fill(0);
            protection::generate(&f, bsz, data, meta, tags.apptag, &mut reftag);
        }
        vol.write_meta(lba, meta, false).map_err(&err)?;
        lba += n;
    }
    if durable {
        vol.flush().map_err(err)?;
    }
    Ok(())
}
