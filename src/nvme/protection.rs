//! End-to-end data protection of a namespace with metadata: its format (metadata size,
//! where metadata travels, protection information type, location and guard format) and
//! the protection information tuple of each block — generated for PRACT, checked for
//! PRCHK — with each type's reference-tag rules and the escape values that turn
//! checking off. Pure functions on byte buffers; the I/O paths move the bytes.
//!
//! Tuples (NVM Command Set specification, end-to-end protection), big-endian fields:
//! - 16-bit guard (PIF 0), 8 bytes: guard CRC-16 T10-DIF (2), application tag (2),
//!   reference tag (4);
//! - 64-bit guard (PIF 2), 16 bytes: guard CRC-64 NVMe (8), application tag (2),
//!   storage and reference space (6): with STS 0 (the only storage tag size here), all
//!   48 bits are the reference tag.
//!
//! The guard covers the block's data and, when the tuple is in the last bytes of the
//! metadata, the metadata bytes before it.

#![forbid(unsafe_code)]

use super::pi::{crc16_t10dif, crc64_nvme};
use super::spec::{status, Status};

/// PRINFO bits (CDW12 29:26 of Read, Write, Compare, Verify, Write Zeroes; PRINFOR
/// and PRINFOW of Copy), in the field's own 4 bits.
pub mod prinfo {
    /// Protection Information Action: the controller inserts (writes) or strips
    /// (reads) the protection information.
    pub const PRACT: u8 = 1 << 3;
    /// Check the guard.
    pub const GUARD: u8 = 1 << 2;
    /// Check the application tag (under the mask).
    pub const APP: u8 = 1 << 1;
    /// Check the reference tag.
    pub const REF: u8 = 1 << 0;
    /// The three check bits.
    pub const PRCHK: u8 = GUARD | APP | REF;
}

/// Protection Information Format 0: 16-bit guard.
pub const PIF_16: u8 = 0;
/// Protection Information Format 2: 64-bit guard.
pub const PIF_64: u8 = 2;

/// How a namespace's blocks carry metadata and protection information.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MetaFormat {
    /// Metadata bytes per logical block (0: none).
    pub ms: u16,
    /// Metadata travels at the end of each block's data in the data buffer (extended
    /// LBA, FLBAS bit 4); else in a separate buffer MPTR points to.
    pub extended: bool,
    /// Protection information type: 0 (none), 1, 2 or 3.
    pub pi: u8,
    /// The tuple is in the first bytes of the metadata (DPS bit 3), else the last.
    pub pi_first: bool,
    /// [`PIF_16`] or [`PIF_64`].
    pub pif: u8,
}

impl MetaFormat {
    /// True if the namespace is formatted with protection information.
    pub fn has_pi(&self) -> bool {
        self.pi != 0
    }

    /// True for the 64-bit guard format (Copy descriptor formats 1 and 3).
    pub fn guard64(&self) -> bool {
        self.pif == PIF_64
    }

    /// Bytes of one protection information tuple.
    pub fn tuple_size(&self) -> usize {
        if self.guard64() {
            16
        } else {
            8
        }
    }

    /// Where the tuple starts in a block's metadata.
    pub fn pi_offset(&self) -> usize {
        if self.pi_first {
            0
        } else {
            (self.ms as usize).saturating_sub(self.tuple_size())
        }
    }

    /// The reference tag's width as a mask (32 or 48 bits).
    pub fn ref_mask(&self) -> u64 {
        if self.guard64() {
            (1 << 48) - 1
        } else {
            u32::MAX as u64
        }
    }

    /// True if metadata crosses the bus for a command with `prinfo`: there is
    /// metadata, unless the controller inserts or strips it all (PRACT with metadata
    /// that is exactly the tuple).
    pub fn transfers_meta(&self, prinfo: u8) -> bool {
        self.ms != 0
            && !(self.has_pi()
                && prinfo & prinfo::PRACT != 0
                && self.ms as usize == self.tuple_size())
    }

    /// True if the reference tag advances block by block (Types 1 and 2).
    fn ref_increments(&self) -> bool {
        self.pi != 3
    }
}

/// What a command expects of (or generates into) its blocks' tuples: CDW14/CDW3
/// (reference tag) and CDW15 (application tag and mask) of Read/Write/..., or a Copy
/// descriptor's EILBRT/ELBAT/ELBATM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tags {
    /// PRINFO (4 bits).
    pub prinfo: u8,
    /// Reference tag of the first block.
    pub reftag: u64,
    pub apptag: u16,
    pub appmask: u16,
}

/// Type 1 with the reference tag checked: the initial reference tag must be the low
/// bits of the starting LBA, or the command is Invalid Protection Information (before
/// any tag is read).
pub fn check_initial_reftag(
    f: &MetaFormat,
    prinfo: u8,
    slba: u64,
    reftag: u64,
) -> Result<(), Status> {
    if f.pi == 1 && prinfo & prinfo::REF != 0 && slba & f.ref_mask() != reftag & f.ref_mask() {
        return Err(status::INVALID_PROTECTION_INFO.dnr());
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tuple {
    guard: u64,
    app: u16,
    reftag: u64,
}

fn be(b: &[u8]) -> u64 {
    b.iter().fold(0u64, |v, &x| v << 8 | x as u64)
}

fn put_be(b: &mut [u8], v: u64) {
    let n = b.len();
    for (i, x) in b.iter_mut().enumerate() {
        *x = (v >> (8 * (n - 1 - i))) as u8;
    }
}

fn read_tuple(f: &MetaFormat, meta: &[u8]) -> Tuple {
    let t = &meta[f.pi_offset()..f.pi_offset() + f.tuple_size()];
    if f.guard64() {
        Tuple {
            guard: be(&t[0..8]),
            app: be(&t[8..10]) as u16,
            reftag: be(&t[10..16]),
        }
    } else {
        Tuple {
            guard: be(&t[0..2]),
            app: be(&t[2..4]) as u16,
            reftag: be(&t[4..8]),
        }
    }
}

fn write_tuple(f: &MetaFormat, meta: &mut [u8], t: Tuple) {
    let (off, size) = (f.pi_offset(), f.tuple_size());
    let d = &mut meta[off..off + size];
    if f.guard64() {
        put_be(&mut d[0..8], t.guard);
        put_be(&mut d[8..10], t.app as u64);
        put_be(&mut d[10..16], t.reftag);
    } else {
        put_be(&mut d[0..2], t.guard);
        put_be(&mut d[2..4], t.app as u64);
        put_be(&mut d[4..8], t.reftag);
    }
}

/// The guard of one block: over its data, then the metadata bytes before the tuple.
fn guard(f: &MetaFormat, data: &[u8], meta: &[u8]) -> u64 {
    let before = &meta[..f.pi_offset()];
    if f.guard64() {
        crc64_nvme(crc64_nvme(0, data), before)
    } else {
        crc16_t10dif(crc16_t10dif(0, data), before) as u64
    }
}

/// Writes the tuple of every block: `data` holds whole blocks of `bs` bytes, `meta`
/// their metadata (`ms` bytes each; bytes outside the tuple are kept). Reference tags
/// start at `*reftag`, which is left at the next block's (Types 1 and 2 advance it).
pub fn generate(
    f: &MetaFormat,
    bs: usize,
    data: &[u8],
    meta: &mut [u8],
    apptag: u16,
    reftag: &mut u64,
) {
    let ms = f.ms as usize;
    for (d, m) in data.chunks_exact(bs).zip(meta.chunks_exact_mut(ms)) {
        let g = guard(f, d, m);
        write_tuple(
            f,
            m,
            Tuple {
                guard: g,
                app: apptag,
                reftag: *reftag & f.ref_mask(),
            },
        );
        if f.ref_increments() {
            *reftag = reftag.wrapping_add(1);
        }
    }
}

/// Checks the tuple of every block as `tags.prinfo` asks (guard, application tag under
/// the mask, reference tag), from `*reftag` on (left at the next block's). A tuple
/// with the escape values is not checked: application tag FFFFh (Types 1 and 2), and
/// with Type 3 also an all-ones reference tag. Type 3's reference tag has no defined
/// value and is not checked. The first failing block's status is returned.
pub fn check(
    f: &MetaFormat,
    bs: usize,
    data: &[u8],
    meta: &[u8],
    tags: &Tags,
    reftag: &mut u64,
) -> Result<(), Status> {
    let ms = f.ms as usize;
    for (d, m) in data.chunks_exact(bs).zip(meta.chunks_exact(ms)) {
        let t = read_tuple(f, m);
        let expected_ref = *reftag & f.ref_mask();
        if f.ref_increments() {
            *reftag = reftag.wrapping_add(1);
        }
        let escaped = t.app == 0xffff && (f.pi != 3 || t.reftag == f.ref_mask());
        if escaped {
            continue;
        }
        if tags.prinfo & prinfo::GUARD != 0 && t.guard != guard(f, d, m) {
            return Err(status::GUARD_CHECK_ERROR.dnr());
        }
        if tags.prinfo & prinfo::APP != 0 && (t.app & tags.appmask) != (tags.apptag & tags.appmask)
        {
            return Err(status::APP_TAG_CHECK_ERROR.dnr());
        }
        if tags.prinfo & prinfo::REF != 0 && f.pi != 3 && t.reftag != expected_ref {
            return Err(status::REF_TAG_CHECK_ERROR.dnr());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const T1: MetaFormat = MetaFormat {
        ms: 8,
        extended: false,
        pi: 1,
        pi_first: false,
        pif: PIF_16,
    };

    fn all(prinfo: u8, reftag: u64, apptag: u16) -> Tags {
        Tags {
            prinfo,
            reftag,
            apptag,
            appmask: 0xffff,
        }
    }

    #[test]
    fn a_16_bit_tuple_is_guard_app_ref_big_endian() {
        let data = vec![0u8; 512];
        let mut meta = vec![0u8; 8];
        let mut r = 0x0102_0304;
        generate(&T1, 512, &data, &mut meta, 0xabcd, &mut r);
        // CRC-16 T10-DIF of 512 zero bytes is 0.
        assert_eq!(meta, [0, 0, 0xab, 0xcd, 1, 2, 3, 4]);
        assert_eq!(r, 0x0102_0305);
        let data: Vec<u8> = b"123456789".iter().copied().cycle().take(512).collect();
        let mut r = 7;
        generate(&T1, 512, &data, &mut meta, 0, &mut r);
        assert_eq!(be(&meta[0..2]) as u16, crc16_t10dif(0, &data));
    }

    #[test]
    fn a_64_bit_tuple_has_a_48_bit_reference_tag() {
        let f = MetaFormat {
            ms: 16,
            pif: PIF_64,
            ..T1
        };
        let data = vec![0u8; 4096];
        let mut meta = vec![0u8; 16];
        let mut r = 0x1234_5678_9abc;
        generate(&f, 4096, &data, &mut meta, 0x0bad, &mut r);
        // The spec's 64b CRC test case: 4 KiB of zeroes.
        assert_eq!(be(&meta[0..8]), 0x6482_d367_eb22_b64e);
        assert_eq!(
            &meta[8..16],
            &[0x0b, 0xad, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc]
        );
        let mut r = 0x1234_5678_9abc;
        assert_eq!(
            check(
                &f,
                4096,
                &data,
                &meta,
                &all(prinfo::PRCHK, r, 0x0bad),
                &mut r
            ),
            Ok(())
        );
    }

    #[test]
    fn each_check_gives_its_own_status() {
        let data = vec![5u8; 1024];
        let mut meta = vec![0u8; 16];
        let mut r = 100;
        generate(&T1, 512, &data, &mut meta, 0x1111, &mut r);
        let ok = |tags: Tags| {
            let mut r = tags.reftag;
            check(&T1, 512, &data, &meta, &tags, &mut r)
        };
        assert_eq!(ok(all(prinfo::PRCHK, 100, 0x1111)), Ok(()));
        assert_eq!(
            ok(all(prinfo::REF, 101, 0)),
            Err(status::REF_TAG_CHECK_ERROR.dnr())
        );
        assert_eq!(
            ok(all(prinfo::APP, 0, 0x2222)),
            Err(status::APP_TAG_CHECK_ERROR.dnr())
        );
        // The mask selects the bits compared.
        let masked = Tags {
            appmask: 0xf0f0,
            ..all(prinfo::APP, 0, 0x1a1a)
        };
        assert_eq!(ok(masked), Ok(()));
        // Unchecked fields may be anything.
        assert_eq!(ok(all(0, 0, 0)), Ok(()));
        let mut bad = data.clone();
        bad[700] ^= 1;
        let mut r = 100;
        assert_eq!(
            check(&T1, 512, &bad, &meta, &all(prinfo::GUARD, 100, 0), &mut r),
            Err(status::GUARD_CHECK_ERROR.dnr())
        );
        assert_eq!(r, 102, "the second block failed");
    }

    #[test]
    fn escape_values_turn_checking_off() {
        let data = vec![9u8; 512];
        let mut meta = vec![0xffu8; 8];
        // Type 1: application tag FFFFh alone escapes, whatever the guard and reference.
        meta[0] = 0;
        let mut r = 5;
        assert_eq!(
            check(&T1, 512, &data, &meta, &all(prinfo::PRCHK, 5, 0), &mut r),
            Ok(())
        );
        // Type 3 needs the reference tag all ones too.
        let t3 = MetaFormat { pi: 3, ..T1 };
        let mut r = 5;
        assert_eq!(
            check(&t3, 512, &data, &meta, &all(prinfo::PRCHK, 5, 0), &mut r),
            Ok(())
        );
        meta[7] = 0xfe;
        let mut r = 5;
        assert_eq!(
            check(&t3, 512, &data, &meta, &all(prinfo::PRCHK, 5, 0), &mut r),
            Err(status::GUARD_CHECK_ERROR.dnr())
        );
    }

    #[test]
    fn type_3_reference_tags_neither_advance_nor_get_checked() {
        let t3 = MetaFormat { pi: 3, ..T1 };
        let data = vec![1u8; 1536];
        let mut meta = vec![0u8; 24];
        let mut r = 42;
        generate(&t3, 512, &data, &mut meta, 0, &mut r);
        assert_eq!(r, 42);
        assert_eq!(be(&meta[20..24]), 42);
        let mut r = 7;
        assert_eq!(
            check(&t3, 512, &data, &meta, &all(prinfo::PRCHK, 7, 0), &mut r),
            Ok(())
        );
    }

    #[test]
    fn pi_first_moves_the_tuple_and_the_guard_covers_metadata_before_a_last_tuple() {
        let data = vec![3u8; 512];
        let last = MetaFormat { ms: 16, ..T1 };
        let mut meta = vec![0x77u8; 16];
        let mut r = 0;
        generate(&last, 512, &data, &mut meta, 0, &mut r);
        assert_eq!(&meta[..8], &[0x77; 8], "bytes outside the tuple kept");
        let g = crc16_t10dif(crc16_t10dif(0, &data), &[0x77; 8]);
        assert_eq!(be(&meta[8..10]) as u16, g);
        let first = MetaFormat {
            pi_first: true,
            ..last
        };
        let mut meta = vec![0x77u8; 16];
        let mut r = 0;
        generate(&first, 512, &data, &mut meta, 0, &mut r);
        assert_eq!(be(&meta[0..2]) as u16, crc16_t10dif(0, &data));
        assert_eq!(&meta[8..], &[0x77; 8]);
    }

    #[test]
    fn type_1_initial_reference_tag_must_match_the_lba() {
        assert!(check_initial_reftag(&T1, prinfo::REF, 0x1_0000_0005, 5).is_ok());
        assert_eq!(
            check_initial_reftag(&T1, prinfo::REF, 6, 5),
            Err(status::INVALID_PROTECTION_INFO.dnr())
        );
        assert!(check_initial_reftag(&T1, prinfo::GUARD, 6, 5).is_ok());
        let t2 = MetaFormat { pi: 2, ..T1 };
        assert!(check_initial_reftag(&t2, prinfo::REF, 6, 5).is_ok());
    }

    #[test]
    fn metadata_moves_unless_pract_covers_all_of_it() {
        assert!(T1.transfers_meta(0));
        assert!(!T1.transfers_meta(prinfo::PRACT));
        assert!(MetaFormat { ms: 16, ..T1 }.transfers_meta(prinfo::PRACT));
        let none = MetaFormat { pi: 0, ..T1 };
        assert!(none.transfers_meta(prinfo::PRACT));
        assert!(!MetaFormat::default().transfers_meta(0));
    }
}
