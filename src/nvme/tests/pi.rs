//! Namespaces with metadata and protection information: PRACT insert/strip, each PRCHK
//! check and its status, escape values of unwritten blocks, Write Zeroes, extended LBAs
//! with the 64-bit guard, Identify, and Copy formats 0-3 with PRINFOR/PRINFOW.

use super::*;
use crate::nvme::pi::{crc16_t10dif, crc64_nvme};
use crate::nvme::protection::{self as prot, prinfo, MetaFormat, PIF_16, PIF_64};

const DATA: u64 = 0x400000;
const META: u64 = 0x500000;
const RANGES: u64 = 0x580000;

fn fmt(ms: u16, pi: u8, pif: u8, extended: bool) -> MetaFormat {
    MetaFormat {
        ms,
        extended,
        pi,
        pi_first: false,
        pif,
    }
}

fn pins(nsid: u32, bs: u64, f: MetaFormat) -> Namespace {
    let v = Volume::memory("pi", 4 << 20, bs, false)
        .unwrap()
        .with_metadata(f.ms as u64)
        .unwrap();
    ns_cfg(4 << 20).on(nsid, Arc::new(v)).with_meta(f)
}

fn host(nss: Vec<Namespace>) -> Host {
    let cfg = ControllerConfig {
        cdfe: 0xc,
        ..Default::default()
    };
    let mut h = Host::new(cfg, nss);
    h.io_pair(1, 32);
    h
}

/// A Read/Write/Compare/Verify/Write Zeroes with PRINFO, tags, data at [`DATA`] (two
/// pages at most) and metadata at [`META`].
fn pcmd(opcode: u8, slba: u64, nlb: u32, pr: u8, reftag: u64, apptag: u16, appmask: u16) -> Sqe {
    let mut s = rw(opcode, 1, slba, nlb, DATA, DATA + 4096);
    s.cdw12 |= (pr as u32) << 26;
    s.cdw14 = reftag as u32;
    s.cdw3 = (reftag >> 32) as u32 & 0xffff;
    s.cdw15 = apptag as u32 | (appmask as u32) << 16;
    s.mptr = META;
    s
}

fn pattern_blocks(n: usize, bs: usize, seed: u8) -> Vec<u8> {
    (0..n * bs).map(|i| (i / 7) as u8 ^ seed).collect()
}

const T1: u8 = 1;

#[test]
fn pract_inserts_on_write_and_a_plain_read_returns_the_tuples() {
    let mut h = host(vec![pins(1, 512, fmt(8, T1, PIF_16, false))]);
    let data = pattern_blocks(2, 512, 3);
    h.write_mem(DATA, &data);
    h.fill(META, 16, 0xee);
    let c = h.cmd(
        1,
        pcmd(
            io_op::WRITE,
            10,
            2,
            prinfo::PRACT | prinfo::PRCHK,
            10,
            0x1234,
            0xffff,
        ),
    );
    assert!(c.ok(), "{:#x}", c.status.0);
    // PRACT with 8 bytes of metadata: nothing was read from MPTR.
    assert_eq!(h.read_mem(META, 16), vec![0xee; 16]);
    h.fill(DATA, 1024, 0);
    let c = h.cmd(
        1,
        pcmd(io_op::READ, 10, 2, prinfo::PRCHK, 10, 0x1234, 0xffff),
    );
    assert!(c.ok(), "{:#x}", c.status.0);
    assert_eq!(h.read_mem(DATA, 1024), data);
    let m = h.read_mem(META, 16);
    for b in 0..2 {
        let t = &m[b * 8..b * 8 + 8];
        let g = crc16_t10dif(0, &data[b * 512..(b + 1) * 512]);
        assert_eq!(u16::from_be_bytes([t[0], t[1]]), g);
        assert_eq!(u16::from_be_bytes([t[2], t[3]]), 0x1234);
        assert_eq!(u32::from_be_bytes([t[4], t[5], t[6], t[7]]), 10 + b as u32);
    }
    // PRACT on a read: checked and stripped, MPTR untouched.
    h.fill(META, 16, 0xee);
    let c = h.cmd(
        1,
        pcmd(
            io_op::READ,
            10,
            2,
            prinfo::PRACT | prinfo::PRCHK,
            10,
            0x1234,
            0xffff,
        ),
    );
    assert!(c.ok());
    assert_eq!(h.read_mem(META, 16), vec![0xee; 16]);
    // Verify and Compare check the stored tuples too.
    assert!(h
        .cmd(
            1,
            pcmd(io_op::VERIFY, 10, 2, prinfo::PRCHK, 10, 0x1234, 0xffff)
        )
        .ok());
    let c = h.cmd(
        1,
        pcmd(io_op::VERIFY, 10, 2, prinfo::APP, 10, 0x1235, 0xffff),
    );
    assert_eq!(c.status.0, 0x4283);
    h.write_mem(DATA, &data);
    assert!(h
        .cmd(
            1,
            pcmd(
                io_op::COMPARE,
                10,
                2,
                prinfo::PRACT | prinfo::GUARD,
                10,
                0,
                0
            )
        )
        .ok());
}

#[test]
fn each_failed_check_has_its_status_and_writes_nothing() {
    let mut h = host(vec![pins(1, 512, fmt(8, 2, PIF_16, false))]);
    let data = pattern_blocks(1, 512, 9);
    let mut meta = vec![0u8; 8];
    let mut r = 777;
    prot::generate(
        &fmt(8, 2, PIF_16, false),
        512,
        &data,
        &mut meta,
        0x00aa,
        &mut r,
    );
    h.write_mem(DATA, &data);
    h.write_mem(META, &meta);
    // Type 2: any initial reference tag, as long as the tuples follow it.
    assert!(h
        .cmd(
            1,
            pcmd(io_op::WRITE, 5, 1, prinfo::PRCHK, 777, 0x00aa, 0xffff)
        )
        .ok());
    let before = h.store_bytes(1, 5 * 512, 512);
    let cases = [
        (prinfo::REF, 778, 0x00aa, 0x4284),
        (prinfo::APP, 777, 0x00ab, 0x4283),
        (prinfo::APP, 777, 0x00ab, 0x0000), // masked off below
    ];
    for (i, &(pr, rt, at, want)) in cases.iter().enumerate() {
        let mask = if i == 2 { 0xff00 } else { 0xffff };
        let c = h.cmd(1, pcmd(io_op::WRITE, 6, 1, pr, rt, at, mask));
        assert_eq!(c.status.0, want, "case {i}");
    }
    let mut bad = meta.clone();
    bad[0] ^= 0x80;
    h.write_mem(META, &bad);
    let c = h.cmd(1, pcmd(io_op::WRITE, 5, 1, prinfo::GUARD, 777, 0, 0));
    assert_eq!(c.status.0, 0x4282);
    assert_eq!(h.store_bytes(1, 5 * 512, 512), before, "nothing written");
    // Type 1 with the reference tag checked: ILBRT must be the LBA.
    let mut h = host(vec![pins(1, 512, fmt(8, T1, PIF_16, false))]);
    h.write_mem(META, &meta);
    let c = h.cmd(1, pcmd(io_op::WRITE, 5, 1, prinfo::REF, 777, 0, 0));
    assert_eq!(c.status.0, 0x4181);
}

#[test]
fn unwritten_and_deallocated_blocks_read_with_escape_tuples() {
    let mut h = host(vec![pins(1, 512, fmt(8, T1, PIF_16, false))]);
    let c = h.cmd(1, pcmd(io_op::READ, 100, 2, prinfo::PRCHK, 100, 0, 0xffff));
    assert!(c.ok(), "{:#x}", c.status.0);
    assert_eq!(h.read_mem(META, 16), vec![0xff; 16]);
    // Written, then deallocated by Write Zeroes with DEAC and no PRACT.
    h.write_mem(DATA, &pattern_blocks(1, 512, 1));
    assert!(h
        .cmd(1, pcmd(io_op::WRITE, 100, 1, prinfo::PRACT, 100, 0, 0))
        .ok());
    let mut wz = pcmd(io_op::WRITE_ZEROES, 100, 1, 0, 0, 0, 0);
    wz.cdw12 |= 1 << 25;
    assert!(h.cmd(1, wz).ok());
    assert!(h
        .cmd(1, pcmd(io_op::READ, 100, 1, prinfo::PRCHK, 100, 0, 0xffff))
        .ok());
    assert_eq!(h.read_mem(META, 8), vec![0xff; 8]);
    assert_eq!(h.read_mem(DATA, 512), vec![0; 512]);
}

#[test]
fn write_zeroes_generates_with_pract_zeroes_the_tuple_without_and_refuses_prchk() {
    let mut h = host(vec![pins(1, 512, fmt(8, T1, PIF_16, false))]);
    h.write_mem(DATA, &pattern_blocks(2, 512, 4));
    assert!(h
        .cmd(1, pcmd(io_op::WRITE, 20, 2, prinfo::PRACT, 20, 7, 0))
        .ok());
    let c = h.cmd(
        1,
        pcmd(io_op::WRITE_ZEROES, 20, 2, prinfo::PRACT, 20, 0x5555, 0),
    );
    assert!(c.ok());
    assert!(h
        .cmd(
            1,
            pcmd(io_op::READ, 20, 2, prinfo::PRCHK, 20, 0x5555, 0xffff)
        )
        .ok());
    assert_eq!(h.read_mem(DATA, 1024), vec![0; 1024]);
    let m = h.read_mem(META, 16);
    assert_eq!(&m[..8], &[0, 0, 0x55, 0x55, 0, 0, 0, 20]);
    // Without PRACT the tuple is all zeroes: the guard of zeroes is 0, the reference
    // tag 0 is not LBA 21's.
    assert!(h.cmd(1, pcmd(io_op::WRITE_ZEROES, 20, 2, 0, 0, 0, 0)).ok());
    assert!(h
        .cmd(1, pcmd(io_op::READ, 20, 2, prinfo::GUARD, 20, 0, 0))
        .ok());
    assert_eq!(h.read_mem(META, 16), vec![0; 16]);
    let c = h.cmd(1, pcmd(io_op::READ, 21, 1, prinfo::REF, 21, 0, 0));
    assert_eq!(c.status.0, 0x4284);
    let c = h.cmd(1, pcmd(io_op::WRITE_ZEROES, 20, 2, prinfo::GUARD, 20, 0, 0));
    assert_eq!(c.status.0, 0x4181);
}

#[test]
fn extended_lbas_with_the_64_bit_guard() {
    let f = fmt(16, T1, PIF_64, true);
    let mut h = host(vec![pins(1, 4096, f)]);
    // Two blocks, each 4096 data bytes then 16 metadata bytes, in one buffer.
    let data = pattern_blocks(2, 4096, 0x33);
    let mut meta = vec![0u8; 32];
    let mut r = 0x1_0000_0002u64;
    prot::generate(&f, 4096, &data, &mut meta, 0xbeef, &mut r);
    let mut buf = Vec::new();
    for b in 0..2 {
        buf.extend_from_slice(&data[b * 4096..(b + 1) * 4096]);
        buf.extend_from_slice(&meta[b * 16..(b + 1) * 16]);
    }
    fn h2(h: &mut Host, op: u8, slba: u64, pr: u8, rt: u64) -> Cqe {
        let mut s = pcmd(op, slba, 2, pr, rt, 0xbeef, 0xffff);
        // 8224 bytes: three pages (PRP list at 0x5f0000).
        let list = [(DATA + 4096).to_le_bytes(), (DATA + 8192).to_le_bytes()].concat();
        h.write_mem(0x5f0000, &list);
        s.dptr2 = 0x5f0000;
        h.cmd(1, s)
    }
    h.write_mem(DATA, &buf);
    // LBA 0x1_0000_0002 has the low 48 bits of its LBA as reference tag (Type 1).
    let c = h2(&mut h, io_op::WRITE, 0x2, prinfo::PRCHK, 0x1_0000_0002);
    assert_eq!(c.status.0, 0x4181, "Type 1: ILBRT is the LBA's low 48 bits");
    let mut r = 2u64;
    prot::generate(&f, 4096, &data, &mut meta, 0xbeef, &mut r);
    buf.clear();
    for b in 0..2 {
        buf.extend_from_slice(&data[b * 4096..(b + 1) * 4096]);
        buf.extend_from_slice(&meta[b * 16..(b + 1) * 16]);
    }
    h.write_mem(DATA, &buf);
    let c = h2(&mut h, io_op::WRITE, 2, prinfo::PRCHK, 2);
    assert!(c.ok(), "{:#x}", c.status.0);
    assert_eq!(
        u64::from_be_bytes(meta[..8].try_into().unwrap()),
        crc64_nvme(0, &data[..4096])
    );
    h.fill(DATA, 8192 + 32, 0);
    assert!(h2(&mut h, io_op::READ, 2, prinfo::PRCHK, 2).ok());
    assert_eq!(h.read_mem(DATA, 8224), buf);
    // PRACT with exactly the tuple: only data crosses, 4096 bytes per block.
    h.fill(DATA, 8224, 0);
    let c = h.cmd(
        1,
        pcmd(
            io_op::READ,
            2,
            2,
            prinfo::PRACT | prinfo::PRCHK,
            2,
            0xbeef,
            0xffff,
        ),
    );
    assert!(c.ok());
    assert_eq!(h.read_mem(DATA, 8192), data);
    assert_eq!(h.read_mem(DATA + 8192, 32), vec![0; 32]);
}

#[test]
fn identify_shows_the_format() {
    let mut h = host(vec![pins(
        1,
        4096,
        MetaFormat {
            pi_first: true,
            ..fmt(16, 3, PIF_64, true)
        },
    )]);
    let (c, id) = h.identify(0, 1, 0);
    assert!(c.ok());
    assert_eq!(id[26], 0x16, "FLBAS: format 6 (4096+16), extended");
    assert_eq!((id[27], id[28], id[29]), (0x03, 0x1f, 0x3 | 0x8));
    assert_eq!(id[25], 7, "NLBAF: the eight default formats");
    assert_eq!(
        u32::from_le_bytes(id[152..156].try_into().unwrap()),
        12 << 16 | 16
    );
    let (c, nvm) = h.identify(5, 1, 0);
    assert!(c.ok());
    assert_eq!(u32::from_le_bytes(nvm[12..16].try_into().unwrap()), 2 << 7);
    assert_eq!(
        u32::from_le_bytes(nvm[36..40].try_into().unwrap()),
        2 << 7,
        "ELBAF6"
    );
    let (_, ctrl) = h.identify(1, 0, 0);
    assert_ne!(
        u32::from_le_bytes(ctrl[96..100].try_into().unwrap()) & 1 << 15,
        0
    );
}

/// One Copy of `ranges` (snsid, slba, nlb, eilbrt, elbat, elbatm) to `sdlba`.
#[allow(clippy::too_many_arguments)]
fn pcopy(
    h: &mut Host,
    nsid: u32,
    sdlba: u64,
    format: u8,
    ranges: &[(u32, u64, u16, u64, u16, u16)],
    prinfor: u8,
    prinfow: u8,
    dest: (u64, u16, u16),
) -> Cqe {
    let size = if format & 1 == 1 { 40 } else { 32 };
    let mut b = vec![0u8; size * ranges.len()];
    for (i, &(snsid, slba, nlb, rt, at, am)) in ranges.iter().enumerate() {
        let d = &mut b[i * size..(i + 1) * size];
        d[0..4].copy_from_slice(&snsid.to_le_bytes());
        d[8..16].copy_from_slice(&slba.to_le_bytes());
        d[16..18].copy_from_slice(&(nlb - 1).to_le_bytes());
        if size == 40 {
            d[26..36].copy_from_slice(&(rt as u128).to_be_bytes()[6..]);
            d[36..38].copy_from_slice(&at.to_le_bytes());
            d[38..40].copy_from_slice(&am.to_le_bytes());
        } else {
            d[24..28].copy_from_slice(&(rt as u32).to_le_bytes());
            d[28..30].copy_from_slice(&at.to_le_bytes());
            d[30..32].copy_from_slice(&am.to_le_bytes());
        }
    }
    h.write_mem(RANGES, &b);
    let s = Sqe {
        opcode: io_op::COPY,
        nsid,
        dptr1: RANGES,
        cdw10: sdlba as u32,
        cdw11: (sdlba >> 32) as u32,
        cdw12: (ranges.len() as u32 - 1)
            | (format as u32) << 8
            | (prinfor as u32) << 12
            | (prinfow as u32) << 26,
        cdw3: (dest.0 >> 32) as u32 & 0xffff,
        cdw14: dest.0 as u32,
        cdw15: dest.1 as u32 | (dest.2 as u32) << 16,
        ..Default::default()
    };
    h.cmd(1, s)
}

#[test]
fn copy_formats_follow_the_guard_and_carry_or_regenerate_pi() {
    let f = fmt(16, T1, PIF_64, false);
    let mut h = host(vec![pins(1, 512, f)]);
    h.write_mem(DATA, &pattern_blocks(4, 512, 0x21));
    let mut w = pcmd(io_op::WRITE, 0, 4, prinfo::PRACT, 0, 0x0a0a, 0);
    w.dptr2 = 0;
    assert!(h.cmd(1, w).ok());
    let src_meta = h.read_mem(META, 0); // nothing
    assert!(src_meta.is_empty());
    // Formats 0 and 2 are not those of a 64-bit guard.
    let c = pcopy(&mut h, 1, 100, 0, &[(0, 0, 4, 0, 0, 0)], 0, 0, (100, 0, 0));
    assert_eq!(c.status.0, 0x410a);
    // Format 1, PRACT both: source checked with its EILBRT, destination regenerated
    // from ILBRT (Type 1: the destination LBA), across two ranges.
    let c = pcopy(
        &mut h,
        1,
        100,
        1,
        &[(0, 0, 2, 0, 0x0a0a, 0xffff), (0, 2, 2, 2, 0x0a0a, 0xffff)],
        prinfo::PRACT | prinfo::PRCHK,
        prinfo::PRACT,
        (100, 0x0b0b, 0),
    );
    assert!(c.ok(), "{:#x}", c.status.0);
    assert!(h
        .cmd(
            1,
            pcmd(io_op::READ, 100, 4, prinfo::PRCHK, 100, 0x0b0b, 0xffff)
        )
        .ok());
    // PRACT 0 both: the tuples travel unchanged; a destination reference check then
    // fails (they name LBAs 0..3), a guard-only check passes.
    let c = pcopy(
        &mut h,
        1,
        200,
        1,
        &[(0, 0, 4, 0, 0, 0)],
        prinfo::GUARD,
        prinfo::REF,
        (200, 0, 0),
    );
    assert_eq!(c.status.0, 0x4284);
    let mut probe = pcmd(io_op::READ, 200, 1, 0, 0, 0, 0);
    probe.dptr2 = 0;
    assert!(h.cmd(1, probe).ok());
    assert_eq!(
        h.read_mem(META, 16),
        vec![0xff; 16],
        "nothing written by the failed Copy"
    );
    let c = pcopy(
        &mut h,
        1,
        200,
        1,
        &[(0, 0, 4, 0, 0, 0)],
        prinfo::GUARD,
        prinfo::GUARD,
        (200, 0, 0),
    );
    assert!(c.ok(), "{:#x}", c.status.0);
    assert!(!h
        .cmd(
            1,
            pcmd(io_op::READ, 200, 4, prinfo::REF | prinfo::GUARD, 0, 0, 0)
        )
        .ok());
    assert!(h
        .cmd(
            1,
            pcmd(
                io_op::READ,
                200,
                4,
                prinfo::GUARD | prinfo::APP,
                0,
                0x0a0a,
                0xffff
            )
        )
        .ok());
    // PRACT on one side only of one namespace: Invalid Field.
    let c = pcopy(
        &mut h,
        1,
        300,
        1,
        &[(0, 0, 1, 0, 0, 0)],
        prinfo::PRACT,
        0,
        (300, 0, 0),
    );
    assert_eq!(c.status.0, 0x4002);
    // A source check failure: wrong expected application tag.
    let c = pcopy(
        &mut h,
        1,
        300,
        1,
        &[(0, 0, 1, 0, 0x1111, 0xffff)],
        prinfo::APP,
        0,
        (300, 0, 0),
    );
    assert_eq!((c.status.0, c.dw0), (0x4283, 0));
}

#[test]
fn copy_across_namespaces_strips_or_inserts_only_with_pract() {
    let f = fmt(8, T1, PIF_16, false);
    let plain = ns_cfg(4 << 20).on(
        2,
        Arc::new(Volume::memory("plain", 4 << 20, 512, false).unwrap()),
    );
    let mut h = host(vec![pins(1, 512, f), plain]);
    h.write_mem(DATA, &pattern_blocks(2, 512, 0x44));
    let mut w = pcmd(io_op::WRITE, 0, 2, prinfo::PRACT, 0, 0, 0);
    w.dptr2 = 0;
    assert!(h.cmd(1, w).ok());
    // PI to no PI without PRINFOR.PRACT: incompatible.
    let c = pcopy(
        &mut h,
        2,
        10,
        2,
        &[(1, 0, 2, 0, 0, 0)],
        prinfo::GUARD,
        0,
        (0, 0, 0),
    );
    assert_eq!(c.status.0, 0x4185);
    let c = pcopy(
        &mut h,
        2,
        10,
        2,
        &[(1, 0, 2, 0, 0, 0)],
        prinfo::PRACT | prinfo::GUARD,
        0,
        (0, 0, 0),
    );
    assert!(c.ok(), "{:#x}", c.status.0);
    assert_eq!(
        h.store_bytes(2, 10 * 512, 1024),
        pattern_blocks(2, 512, 0x44)
    );
    // Back again: no PI to PI needs PRINFOW.PRACT, and gets generated tuples.
    let c = pcopy(&mut h, 1, 50, 2, &[(2, 10, 2, 0, 0, 0)], 0, 0, (50, 0, 0));
    assert_eq!(c.status.0, 0x4185);
    let c = pcopy(
        &mut h,
        1,
        50,
        2,
        &[(2, 10, 2, 0, 0, 0)],
        0,
        prinfo::PRACT,
        (50, 0x0707, 0),
    );
    assert!(c.ok(), "{:#x}", c.status.0);
    assert!(h
        .cmd(
            1,
            pcmd(io_op::READ, 50, 2, prinfo::PRCHK, 50, 0x0707, 0xffff)
        )
        .ok());
    assert_eq!(h.read_mem(DATA, 1024), pattern_blocks(2, 512, 0x44));
}

#[test]
fn format_3_copies_between_64_bit_guard_namespaces_of_one_format_only() {
    let f = fmt(16, T1, PIF_64, false);
    let mut h = host(vec![
        pins(1, 4096, f),
        pins(2, 4096, f),
        pins(3, 4096, MetaFormat { pi: 2, ..f }),
    ]);
    let data = pattern_blocks(2, 4096, 0x66);
    h.write_mem(DATA, &data);
    let mut w = pcmd(io_op::WRITE, 10, 2, prinfo::PRACT, 10, 0x0c0c, 0);
    w.nsid = 2;
    assert!(h.cmd(1, w).ok());
    // Format 3 from namespace 2 into namespace 1, PRACT both: regenerated for LBA 40.
    let c = pcopy(
        &mut h,
        1,
        40,
        3,
        &[(2, 10, 2, 10, 0x0c0c, 0xffff)],
        prinfo::PRACT | prinfo::PRCHK,
        prinfo::PRACT,
        (40, 0x0d0d, 0),
    );
    assert!(c.ok(), "{:#x}", c.status.0);
    assert!(h
        .cmd(
            1,
            pcmd(io_op::READ, 40, 2, prinfo::PRCHK, 40, 0x0d0d, 0xffff)
        )
        .ok());
    assert_eq!(h.read_mem(DATA, 8192), data);
    // Format 2 is not a 64-bit guard format; Type 2 into Type 1 is not compatible; PRACT
    // on one side of two PI namespaces is not either.
    let c = pcopy(&mut h, 1, 60, 2, &[(2, 10, 2, 0, 0, 0)], 0, 0, (60, 0, 0));
    assert_eq!(c.status.0, 0x410a);
    let c = pcopy(&mut h, 1, 60, 3, &[(3, 0, 1, 0, 0, 0)], 0, 0, (60, 0, 0));
    assert_eq!((c.status.0, c.dw0), (0x4185, 0));
    let c = pcopy(
        &mut h,
        1,
        60,
        3,
        &[(2, 10, 1, 10, 0, 0)],
        prinfo::PRACT,
        0,
        (60, 0, 0),
    );
    assert_eq!(c.status.0, 0x4185);
    // A failing second range: the first is copied, nothing of the second, Dword 0 = 1.
    let c = pcopy(
        &mut h,
        1,
        80,
        3,
        &[
            (2, 10, 1, 10, 0x0c0c, 0xffff),
            (2, 11, 1, 11, 0x0bad, 0xffff),
        ],
        prinfo::APP,
        0,
        (80, 0, 0),
    );
    assert_eq!((c.status.0, c.dw0), (0x4283, 1));
    assert!(h
        .cmd(1, pcmd(io_op::READ, 80, 1, prinfo::APP, 0, 0x0c0c, 0xffff))
        .ok());
    let mut probe = pcmd(io_op::READ, 81, 1, 0, 0, 0, 0);
    probe.dptr2 = 0;
    assert!(h.cmd(1, probe).ok());
    assert_eq!(h.read_mem(META, 16), vec![0xff; 16], "range 1 not written");
}

#[test]
fn write_uncorrectable_with_metadata_and_pi() {
    // Metadata without PI (the bounce-buffer path) and Type 1 PI.
    for f in [fmt(8, 0, PIF_16, false), fmt(8, T1, PIF_16, false)] {
        let mut h = host(vec![pins(1, 512, f)]);
        h.write_mem(DATA, &pattern_blocks(2, 512, 1));
        let w = pcmd(io_op::WRITE, 4, 2, prinfo::PRACT, 4, 0, 0);
        assert!(h.cmd(1, w).ok());
        assert!(h.cmd(1, rw(io_op::WRITE_UNCORRECTABLE, 1, 5, 1, 0, 0)).ok());
        let r = pcmd(io_op::READ, 4, 2, 0, 4, 0, 0);
        assert_eq!(h.cmd(1, r).sc(), (2, 0x81), "{f:?}");
        let v = pcmd(io_op::VERIFY, 5, 1, 0, 5, 0, 0);
        assert_eq!(h.cmd(1, v).sc(), (2, 0x81), "{f:?}");
        assert!(h.cmd(1, w).ok());
        assert!(h.cmd(1, r).ok(), "{f:?}");
    }
}
