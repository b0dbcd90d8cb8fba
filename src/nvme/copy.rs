//! The Copy command (NVM opcode 0x19, TP 4065 Simple Copy, TP 4130 cross-namespace):
//! parse the source range descriptors (formats 0-3), check the limits the destination
//! namespace advertises (MSRC, MCL, MSSRL), then copy range after range through the
//! store's `copy_range` (reflink, direct I/O, copy_file_range, or a bounded bounce
//! buffer), or — where a namespace has protection information — through
//! [`super::copy_pi`], which checks, carries or generates the tuples.
//!
//! Checks run in QEMU's order (the differences are in docs/copy.md): format support
//! (OCFS, and CDFE for formats 2/3), range count (MSRC), the format against the
//! namespace's guard (1/3 for the 64-bit guard, 0/2 otherwise), total length (MCL); then
//! per range: source namespace, its format and PRACT ([`compatible`]), MSSRL, source
//! and destination bounds, protection information.
//!
//! Semantics: the result is that of copying the ranges one after another in list order,
//! each range read completely before it is written (a range overlapping its own
//! destination copies the original data, like memmove). A failing range k leaves ranges
//! 0..k written and nothing of k or later; completion Dword 0 is k. With FUA, each
//! range is durable before the next one starts.
//!
//! The command's own fields (SDLBA, NR, format, PRINFOR/PRINFOW and the destination's
//! tags, FUA) arrive decoded, as a
//! [`CopyCmd`]; only the range list is read here.

use std::sync::atomic::Ordering;

use super::cmd::CopyCmd;
use super::copy_pi::{compatible, PiCopy};
use super::io_context::IoCtx;
use super::prp::{Dma, Mem};
use super::queues::Outcome;
use super::spec::{copy, get_u32, get_u64, status, Status};
use super::status::of_block;

/// One parsed source range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceRange {
    /// Source namespace (formats 2 and 3), else the command's namespace.
    pub snsid: Option<u32>,
    pub slba: u64,
    /// Number of logical blocks (1-based).
    pub nlb: u64,
    /// Expected initial logical block reference tag of the source blocks (32 bits in
    /// formats 0/2, the low 48 bits of ELBST/EILBRT in formats 1/3).
    pub eilbrt: u64,
    /// Expected logical block application tag and its mask.
    pub elbat: u16,
    pub elbatm: u16,
}

fn le16(d: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([d[off], d[off + 1]])
}

/// Parses `count` descriptors of `format` from `buf`.
pub fn parse_ranges(buf: &[u8], format: u8, count: usize) -> Vec<SourceRange> {
    let Some(size) = copy::descriptor_size(format) else {
        return Vec::new();
    };
    let wide = matches!(format, copy::FORMAT_1 | copy::FORMAT_3);
    buf.chunks_exact(size)
        .take(count)
        .map(|d| {
            let (eilbrt, elbat, elbatm) = if wide {
                // Most significant byte first; the reference tag is the low 48 bits.
                let f = &d[copy::ELBT_F1..copy::ELBT_F1 + copy::ELBT_F1_LEN];
                let r = f[4..].iter().fold(0u64, |v, &b| v << 8 | b as u64);
                (r, le16(d, copy::ELBAT_F1), le16(d, copy::ELBATM_F1))
            } else {
                (
                    get_u32(d, copy::EILBRT_F0) as u64,
                    le16(d, copy::ELBAT_F0),
                    le16(d, copy::ELBATM_F0),
                )
            };
            SourceRange {
                snsid: matches!(format, copy::FORMAT_2 | copy::FORMAT_3)
                    .then(|| get_u32(d, copy::SNSID_OFFSET)),
                slba: get_u64(d, copy::SLBA_OFFSET),
                nlb: le16(d, copy::NLB_OFFSET) as u64 + 1,
                eilbrt,
                elbat,
                elbatm,
            }
        })
        .collect()
}

/// What a Copy command did, for the experiment records, counters and latency model.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyDone {
    pub sdlba: u64,
    pub format: u8,
    /// NR as in CDW12 (0's based).
    pub nr: u8,
    /// The ranges as parsed (empty if the list was never read: a command-level check
    /// failed first, or the list is not in guest memory).
    pub ranges: Vec<SourceRange>,
    /// Blocks really written to the destination.
    pub blocks_copied: u64,
}

impl CopyDone {
    fn of(c: &CopyCmd) -> CopyDone {
        CopyDone {
            sdlba: c.sdlba,
            format: c.format,
            nr: c.nr,
            ranges: Vec::new(),
            blocks_copied: 0,
        }
    }

    /// The experiment hooks' form (`nsid`: the command's namespace, the source of
    /// format 0/1 ranges).
    pub fn record(&self, nsid: u32) -> crate::hooks::CopyDone {
        crate::hooks::CopyDone {
            sdlba: self.sdlba,
            format: self.format,
            nr: self.nr,
            ranges: self
                .ranges
                .iter()
                .map(|r| crate::hooks::RangeRecord {
                    nsid: r.snsid.unwrap_or(nsid),
                    slba: r.slba,
                    nlb: r.nlb as u32,
                })
                .collect(),
            blocks_copied: self.blocks_copied,
        }
    }

    /// Total blocks of the parsed ranges.
    pub fn total_blocks(&self) -> u64 {
        self.ranges.iter().map(|r| r.nlb).sum()
    }
}

/// Runs one Copy command. With `fault = Some((k, status))` (an injected failure at range
/// k), ranges 0..k-1 are copied with every normal check, then the command completes with
/// `status` and Dword 0 = k; a real failure before range k wins. If k is at least the
/// number of ranges, every range is copied and the command still fails with Dword 0 = k.
pub(crate) fn execute(
    ctx: &IoCtx,
    mem: &Mem,
    c: &CopyCmd,
    fault: Option<(u32, Status)>,
) -> (Outcome, CopyDone) {
    let mut done = CopyDone::of(c);
    let stop_at = fault.map(|(k, _)| k as usize);
    let outcome = match run(ctx, mem, c, stop_at, &mut done) {
        Ok(()) => match fault {
            Some((k, status)) => Outcome::Complete {
                status,
                dw0: k,
                dw1: 0,
            },
            None => Outcome::ok(0),
        },
        Err((status, range)) => Outcome::Complete {
            status,
            dw0: range,
            dw1: 0,
        },
    };
    (outcome, done)
}

/// The command's fields and its range list, read without copying anything (for the
/// record of a Copy failed by an injected fault). Best effort: no ranges if the format
/// is unknown or the list is not in guest memory.
pub(crate) fn describe(mem: &Mem, c: &CopyCmd) -> CopyDone {
    let mut done = CopyDone::of(c);
    let nr = c.ranges();
    if let Some(size) = copy::descriptor_size(c.format) {
        if let Ok(dma) = Dma::map(mem, &c.dptr, (nr * size) as u64) {
            let mut buf = vec![0u8; nr * size];
            dma.read_into(&mut buf);
            done.ranges = parse_ranges(&buf, done.format, nr);
        }
    }
    done
}

/// A failure and the index of the first range not copied.
type Failure = (Status, u32);

fn at(range: usize) -> impl Fn(Status) -> Failure {
    move |s| (s, range as u32)
}

fn run(
    ctx: &IoCtx,
    mem: &Mem,
    c: &CopyCmd,
    stop_at: Option<usize>,
    done: &mut CopyDone,
) -> Result<(), Failure> {
    let cmd = at(0);
    let dns = ctx.namespace(c.nsid).map_err(&cmd)?;
    if dns.readonly() {
        return Err(cmd(status::NAMESPACE_WRITE_PROTECTED.dnr()));
    }
    // One consistent set of limits for the whole command, even if they change meanwhile.
    let limits = dns.copy_limits();
    let (nr, format) = (c.ranges(), c.format);
    if ctx.cfg.ocfs_supported() & (1 << format) == 0 {
        return Err(cmd(status::INVALID_FIELD.dnr()));
    }
    if matches!(format, copy::FORMAT_2 | copy::FORMAT_3) {
        let cdfe = ctx.cdfe;
        if cdfe & (1 << format) == 0 {
            return Err(cmd(status::INVALID_FIELD.dnr()));
        }
    }
    if nr > limits.msrc as usize + 1 {
        return Err(cmd(status::COMMAND_SIZE_LIMIT_EXCEEDED.dnr()));
    }
    // Formats 1 and 3 are those of the 64-bit guard, 0 and 2 of every other format.
    if matches!(format, copy::FORMAT_1 | copy::FORMAT_3) != dns.meta().guard64() {
        return Err(cmd(status::INVALID_FORMAT.dnr()));
    }
    let size = copy::descriptor_size(format).ok_or(cmd(status::INVALID_FIELD.dnr()))?;
    // At most 256 descriptors of 40 bytes: the only buffer that depends on the command.
    let dma = Dma::map(mem, &c.dptr, (nr * size) as u64).map_err(&cmd)?;
    let mut buf = vec![0u8; nr * size];
    dma.read_into(&mut buf);
    done.ranges = parse_ranges(&buf, format, nr);
    if done.total_blocks() > limits.mcl as u64 {
        return Err(cmd(status::COMMAND_SIZE_LIMIT_EXCEEDED.dnr()));
    }
    // A zoned destination: the whole copy is one write at the zone's write pointer,
    // checked (and the pointer moved) before any range is copied (docs/zoned.md).
    if dns.zones().is_some() {
        let total = done.total_blocks();
        if !dns.in_range(c.sdlba, total) {
            return Err(cmd(status::LBA_OUT_OF_RANGE.dnr()));
        }
        super::zoned::check_write(&dns, c.sdlba, total).map_err(&cmd)?;
    }
    let fua = ctx.durable(c.fua);
    let mut dlba = c.sdlba;
    // The destination's reference tags run on from range to range.
    let mut dest_reftag = c.dest_pi.ilbrt;
    for i in 0..done.ranges.len() {
        if stop_at == Some(i) {
            return Ok(());
        }
        let r = done.ranges[i];
        let fail = at(i);
        let sns = match r.snsid {
            None => dns.clone(),
            Some(id) if id == dns.nsid => dns.clone(),
            // The same NSID rules as for the command's own NSID.
            Some(id) => ctx.namespace(id).map_err(&fail)?,
        };
        compatible(&sns, &dns, c.prinfor, c.prinfow).map_err(&fail)?;
        if r.nlb > limits.mssrl as u64 {
            return Err(fail(status::COMMAND_SIZE_LIMIT_EXCEEDED.dnr()));
        }
        if !sns.in_range(r.slba, r.nlb) || !dns.in_range(dlba, r.nlb) {
            return Err(fail(status::LBA_OUT_OF_RANGE.dnr()));
        }
        super::zoned::check_read(&sns, r.slba, r.nlb).map_err(&fail)?;
        if sns.meta().has_pi() || dns.meta().has_pi() {
            let pi = PiCopy {
                src: &sns,
                dst: &dns,
                range: r,
                dlba,
                prinfor: c.prinfor,
                dest: c.dest_pi,
            };
            dest_reftag = pi.run(dest_reftag, fua).map_err(&fail)?;
        } else {
            dns.volume()
                .copy_from(dlba, sns.volume(), r.slba, r.nlb, fua)
                .map_err(|e| {
                    fail(of_block(
                        &format!(
                            "copy range {i} (namespace {} LBA {}+{} to namespace {} LBA {dlba})",
                            sns.nsid, r.slba, r.nlb, dns.nsid
                        ),
                        &e,
                    ))
                })?;
        }
        done.blocks_copied += r.nlb;
        let bytes = r.nlb * dns.block_size();
        let st = ctx.stats;
        st.bytes_written.fetch_add(bytes, Ordering::Relaxed);
        st.bytes_read.fetch_add(bytes, Ordering::Relaxed);
        dlba += r.nlb;
    }
    super::zoned::persist(&dns, fua).map_err(&cmd)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_formats() {
        let mut b = vec![0u8; 80];
        b[0..4].copy_from_slice(&7u32.to_le_bytes());
        b[8..16].copy_from_slice(&100u64.to_le_bytes());
        b[16..18].copy_from_slice(&3u16.to_le_bytes());
        // Format 0/2 tags: EILBRT 24..28, ELBAT 28..30, ELBATM 30..32, little-endian.
        b[24..28].copy_from_slice(&0x0102_0304u32.to_le_bytes());
        b[28..30].copy_from_slice(&0xabcdu16.to_le_bytes());
        b[30..32].copy_from_slice(&0xff00u16.to_le_bytes());
        b[40 + 8..40 + 16].copy_from_slice(&200u64.to_le_bytes());
        let r = parse_ranges(&b, copy::FORMAT_0, 1);
        assert_eq!(
            r,
            vec![SourceRange {
                snsid: None,
                slba: 100,
                nlb: 4,
                eilbrt: 0x0102_0304,
                elbat: 0xabcd,
                elbatm: 0xff00,
            }]
        );
        let r = parse_ranges(&b, copy::FORMAT_2, 1);
        assert_eq!(r[0].snsid, Some(7));
        let r = parse_ranges(&b, copy::FORMAT_3, 2);
        assert_eq!(r.len(), 2);
        assert_eq!((r[1].snsid, r[1].slba, r[1].nlb), (Some(0), 200, 1));
        assert!(parse_ranges(&b, 4, 1).is_empty());
    }

    #[test]
    fn formats_1_and_3_carry_a_48_bit_reference_tag_most_significant_byte_first() {
        let mut d = vec![0u8; 40];
        d[8..16].copy_from_slice(&9u64.to_le_bytes());
        // ELBST/EILBRT at 26..36 as nvme-cli 2.13 writes 0x0000_1234_5678_9abc: the
        // value's low byte last; the storage tag bytes (26..30) are not part of it.
        d[26..36].copy_from_slice(&[0xee, 0xee, 0xee, 0xee, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc]);
        d[36..38].copy_from_slice(&0x4321u16.to_le_bytes());
        d[38..40].copy_from_slice(&0x0ff0u16.to_le_bytes());
        let r = parse_ranges(&d, copy::FORMAT_1, 1);
        assert_eq!(
            (r[0].slba, r[0].eilbrt, r[0].elbat, r[0].elbatm),
            (9, 0x1234_5678_9abc, 0x4321, 0x0ff0)
        );
    }
}
