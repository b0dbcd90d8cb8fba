//! Copy between namespaces with metadata and protection information: whether a source
//! namespace's format can be copied to the destination's with the command's PRINFOR
//! and PRINFOW, and the copy of one range where either side has protection
//! information — source tuples checked as PRINFOR asks (with the descriptor's
//! EILBRT/ELBAT/ELBATM), destination tuples carried and checked as PRINFOW asks (with
//! CDW14/CDW3 and CDW15), or generated (PRINFOW.PRACT). The table is in docs/copy.md.
//!
//! A range is checked completely before any of it is written, so a failing range
//! leaves the destination as it was (the promise of [`super::copy`]); an overlapping
//! range within one namespace is written from its end when it moves up (memmove).

use super::cmd::PiFields;
use super::copy::SourceRange;
use super::namespace::Namespace;
use super::protection::{self, prinfo, MetaFormat, Tags};
use super::spec::{status, Status};
use super::status::of_block;

/// Data bytes per bounce chunk (at least one block).
const CHUNK_BYTES: usize = super::io_meta::CHUNK_BYTES;

fn pract(p: u8) -> bool {
    p & prinfo::PRACT != 0
}

/// True if `a` without protection information and `b` with it correspond: `a` has no
/// metadata and `b` has exactly the tuple.
fn corresponds(a: &MetaFormat, b: &MetaFormat) -> bool {
    a.ms == 0 && b.ms as usize == b.tuple_size()
}

/// Whether range data of `sns` may be copied to `dns` with `prinfor`/`prinfow`:
/// - one namespace with protection information: PRACT the same in both (else Invalid
///   Field in Command);
/// - two namespaces: the same LBA data size, and
///   - neither with protection information: the same metadata size;
///   - both: PRACT the same in both, the same metadata size, type, location and guard;
///   - only the destination: PRINFOW.PRACT (the controller generates), no source
///     metadata and a destination whose metadata is the tuple;
///   - only the source: PRINFOR.PRACT (the controller strips), the reverse;
///
///   else Incompatible Namespace or Format.
pub fn compatible(
    sns: &Namespace,
    dns: &Namespace,
    prinfor: u8,
    prinfow: u8,
) -> Result<(), Status> {
    let (s, d) = (sns.meta(), dns.meta());
    let incompatible = Err(status::INCOMPATIBLE_NS_OR_FORMAT.dnr());
    if sns.nsid == dns.nsid {
        if d.has_pi() && pract(prinfor) != pract(prinfow) {
            return Err(status::INVALID_FIELD.dnr());
        }
        return Ok(());
    }
    if sns.block_size() != dns.block_size() {
        return incompatible;
    }
    let ok = match (s.has_pi(), d.has_pi()) {
        (false, false) => s.ms == d.ms,
        (true, true) => {
            if pract(prinfor) != pract(prinfow) {
                return incompatible;
            }
            s.ms == d.ms && s.pi == d.pi && s.pi_first == d.pi_first && s.pif == d.pif
        }
        (false, true) => pract(prinfow) && corresponds(s, d),
        (true, false) => pract(prinfor) && corresponds(d, s),
    };
    if ok {
        Ok(())
    } else {
        incompatible
    }
}

/// The reference tag `blocks` blocks after `base` (Types 1 and 2 advance by one per
/// block; Type 3 keeps it).
fn reftag_after(f: &MetaFormat, base: u64, blocks: u64) -> u64 {
    if f.pi == 3 {
        base
    } else {
        base.wrapping_add(blocks)
    }
}

/// One range of a Copy where either namespace has protection information.
pub struct PiCopy<'a> {
    pub src: &'a Namespace,
    pub dst: &'a Namespace,
    pub range: SourceRange,
    pub dlba: u64,
    pub prinfor: u8,
    /// PRINFOW (its `prinfo`), the destination's tags.
    pub dest: PiFields,
}

impl PiCopy<'_> {
    /// Copies the range with the destination's reference tags from `dest_reftag`;
    /// returns the next range's. Nothing is written if any check fails.
    pub fn run(&self, dest_reftag: u64, fua: bool) -> Result<u64, Status> {
        let (sf, df) = (*self.src.meta(), *self.dst.meta());
        let r = &self.range;
        let src_tags = Tags {
            prinfo: if sf.has_pi() { self.prinfor } else { 0 },
            reftag: r.eilbrt,
            apptag: r.elbat,
            appmask: r.elbatm,
        };
        let dst_tags = Tags {
            prinfo: if df.has_pi() { self.dest.prinfo } else { 0 },
            reftag: dest_reftag,
            apptag: self.dest.lbat,
            appmask: self.dest.lbatm,
        };
        if sf.has_pi() {
            protection::check_initial_reftag(&sf, src_tags.prinfo, r.slba, r.eilbrt)?;
        }
        if df.has_pi() {
            protection::check_initial_reftag(&df, dst_tags.prinfo, self.dlba, dest_reftag)?;
        }
        let bs = self.dst.block_size() as usize;
        let chunk = ((CHUNK_BYTES / bs).max(1) as u64).min(r.nlb);
        let mut bufs = Bufs {
            data: vec![0u8; chunk as usize * bs],
            smeta: vec![0u8; chunk as usize * sf.ms as usize],
            dmeta: vec![0u8; chunk as usize * df.ms as usize],
        };
        let starts: Vec<u64> = (0..r.nlb.div_ceil(chunk)).map(|k| k * chunk).collect();
        // Pass 1: every check, nothing written.
        for &k in &starts {
            let n = chunk.min(r.nlb - k);
            self.chunk(&mut bufs, k, n, &src_tags, &dst_tags, &sf, &df, false)?;
        }
        // Pass 2: the writes; from the end when the destination overlaps the source
        // further up in the same namespace.
        let same = std::sync::Arc::ptr_eq(self.src.volume(), self.dst.volume());
        let up = same && self.dlba > r.slba && self.dlba < r.slba + r.nlb;
        let order: Box<dyn Iterator<Item = &u64>> = if up {
            Box::new(starts.iter().rev())
        } else {
            Box::new(starts.iter())
        };
        for &k in order {
            let n = chunk.min(r.nlb - k);
            self.chunk(&mut bufs, k, n, &src_tags, &dst_tags, &sf, &df, true)?;
        }
        if fua {
            self.dst
                .volume()
                .flush()
                .map_err(|e| of_block(&self.what(), &e))?;
        }
        Ok(if df.has_pi() {
            reftag_after(&df, dest_reftag, r.nlb)
        } else {
            dest_reftag
        })
    }

    fn what(&self) -> String {
        format!(
            "copy of namespace {} LBA {}+{} to namespace {} LBA {}",
            self.src.nsid, self.range.slba, self.range.nlb, self.dst.nsid, self.dlba
        )
    }

    /// Blocks `k..k+n` of the range: read, check, carry or generate; written if `write`.
    #[allow(clippy::too_many_arguments)]
    fn chunk(
        &self,
        b: &mut Bufs,
        k: u64,
        n: u64,
        src_tags: &Tags,
        dst_tags: &Tags,
        sf: &MetaFormat,
        df: &MetaFormat,
        write: bool,
    ) -> Result<(), Status> {
        let bs = self.dst.block_size() as usize;
        let (nu, sms, dms) = (n as usize, sf.ms as usize, df.ms as usize);
        let (data, smeta, dmeta) = (
            &mut b.data[..nu * bs],
            &mut b.smeta[..nu * sms],
            &mut b.dmeta[..nu * dms],
        );
        let blk = |e| of_block(&self.what(), &e);
        let slba = self.range.slba + k;
        let sv = self.src.volume();
        sv.read_buf(slba, data).map_err(blk)?;
        if sms != 0 {
            sv.read_meta(slba, smeta).map_err(blk)?;
        }
        if sf.has_pi() {
            let mut r = reftag_after(sf, src_tags.reftag, k);
            protection::check(sf, bs, data, smeta, src_tags, &mut r)
                .map_err(|s| self.pi_fail("source", s))?;
        }
        if dms != 0 {
            if sms == dms {
                dmeta.copy_from_slice(smeta);
            } else {
                dmeta.fill(0);
            }
        }
        if df.has_pi() {
            let mut r = reftag_after(df, dst_tags.reftag, k);
            if pract(dst_tags.prinfo) {
                protection::generate(df, bs, data, dmeta, dst_tags.apptag, &mut r);
            } else {
                protection::check(df, bs, data, dmeta, dst_tags, &mut r)
                    .map_err(|s| self.pi_fail("destination", s))?;
            }
        }
        if write {
            let dlba = self.dlba + k;
            let dv = self.dst.volume();
            dv.write_buf(dlba, data, false).map_err(blk)?;
            if dms != 0 {
                dv.write_meta(dlba, dmeta, false).map_err(blk)?;
            }
        }
        Ok(())
    }

    fn pi_fail(&self, side: &str, st: Status) -> Status {
        log::debug!(
            "{}: {side} protection information check failed (status {:#06x})",
            self.what(),
            st.0
        );
        st
    }
}

struct Bufs {
    data: Vec<u8>,
    smeta: Vec<u8>,
    dmeta: Vec<u8>,
}
