//! Copy command tests: formats, limits, per-range failures and Dword 0, cross-namespace.

use super::*;

const RANGES: u64 = 0x880000;
const DATA: u64 = 0x800000;

/// Builds descriptors of `format` from (snsid, slba, nlb 1-based).
fn descriptors(format: u8, ranges: &[(u32, u64, u32)]) -> Vec<u8> {
    let size = copy::descriptor_size(format).unwrap();
    let mut b = vec![0u8; size * ranges.len()];
    for (i, (snsid, slba, nlb)) in ranges.iter().enumerate() {
        let d = &mut b[i * size..(i + 1) * size];
        d[0..4].copy_from_slice(&snsid.to_le_bytes());
        d[8..16].copy_from_slice(&slba.to_le_bytes());
        d[16..18].copy_from_slice(&((nlb - 1) as u16).to_le_bytes());
    }
    b
}

fn copy_cmd(h: &mut Host, nsid: u32, sdlba: u64, format: u8, ranges: &[(u32, u64, u32)]) -> Cqe {
    h.write_mem(RANGES, &descriptors(format, ranges));
    let s = Sqe {
        opcode: io_op::COPY,
        nsid,
        dptr1: RANGES,
        cdw10: sdlba as u32,
        cdw11: (sdlba >> 32) as u32,
        cdw12: (ranges.len() as u32 - 1) | ((format as u32) << 8),
        ..Default::default()
    };
    h.cmd(1, s)
}

/// Fills blocks [0, n) of `nsid` with block-numbered patterns.
fn seed(h: &mut Host, nsid: u32, n: u32) {
    let data: Vec<u8> = (0..n as usize * 512)
        .map(|i| (i / 512) as u8 ^ 0x5a)
        .collect();
    h.write_mem(DATA, &data);
    let pages: Vec<u64> = (1..(n as u64 * 512).div_ceil(4096))
        .map(|i| DATA + i * 4096)
        .collect();
    for (i, p) in pages.iter().enumerate() {
        h.m()
            .write_obj(*p, GuestAddress(0x900000 + 8 * i as u64))
            .unwrap();
    }
    // Up to two pages PRP2 points at data, beyond that at the PRP list.
    let prp2 = if n > 16 { 0x900000 } else { DATA + 4096 };
    assert!(h.cmd(1, rw(io_op::WRITE, nsid, 0, n, DATA, prp2)).ok());
}

fn block(h: &Host, nsid: u32, lba: u64) -> Vec<u8> {
    h.store_bytes(nsid, lba * 512, 512)
}

fn seeded(lba: u64) -> Vec<u8> {
    vec![(lba as u8) ^ 0x5a; 512]
}

fn limited(mssrl: u16, mcl: u32, msrc: u8) -> NamespaceConfig {
    NamespaceConfig {
        size: Some(1 << 20),
        mssrl,
        mcl,
        msrc,
        ..Default::default()
    }
}

fn copy_host(ns: Vec<Namespace>) -> Host {
    let mut h = Host::new(ControllerConfig::default(), ns);
    h.io_pair(1, 32);
    h
}

#[test]
fn format0_copies_ranges_in_order() {
    let mut h = copy_host(vec![memns(1, limited(16, 64, 7))]);
    seed(&mut h, 1, 32);
    let c = copy_cmd(&mut h, 1, 100, 0, &[(0, 3, 2), (0, 10, 1), (0, 20, 4)]);
    assert!(c.ok(), "{c:?}");
    assert_eq!(c.dw0, 0);
    let expect = [3, 4, 10, 20, 21, 22, 23];
    for (i, src) in expect.iter().enumerate() {
        assert_eq!(
            block(&h, 1, 100 + i as u64),
            seeded(*src),
            "block {}",
            100 + i
        );
    }
    assert!(block(&h, 1, 107).iter().all(|&b| b == 0));
}

#[test]
fn command_level_limits() {
    let mut h = copy_host(vec![memns(1, limited(4, 6, 1))]);
    seed(&mut h, 1, 16);
    // Three ranges with MSRC = 1 (two ranges max).
    let c = copy_cmd(&mut h, 1, 100, 0, &[(0, 0, 1), (0, 1, 1), (0, 2, 1)]);
    assert_eq!((c.sc(), c.dw0), ((1, 0x83), 0));
    assert!(c.status.is_dnr());
    // Total 7 blocks > MCL 6: nothing copied.
    let c = copy_cmd(&mut h, 1, 100, 0, &[(0, 0, 4), (0, 4, 3)]);
    assert_eq!((c.sc(), c.dw0), ((1, 0x83), 0));
    assert!(block(&h, 1, 100).iter().all(|&b| b == 0));
    // Unsupported format 4, formats 2/3 without CDFE: Invalid Field.
    let c = copy_cmd(&mut h, 1, 100, 2, &[(1, 0, 1)]);
    assert_eq!(c.sc(), (0, 0x02));
    let mut s = Sqe {
        opcode: io_op::COPY,
        nsid: 1,
        dptr1: RANGES,
        cdw12: 4 << 8,
        ..Default::default()
    };
    assert_eq!(h.cmd(1, s).sc(), (0, 0x02));
    // Format 1: needs 16-byte guard PI: Invalid Format.
    let c = copy_cmd(&mut h, 1, 100, 1, &[(0, 0, 1)]);
    assert_eq!(c.sc(), (1, 0x0a));
    // Range list outside guest memory.
    s.cdw12 = 0;
    s.dptr1 = UNMAPPED;
    assert_eq!(h.cmd(1, s).sc(), (0, 0x04));
    // Invalid destination namespace.
    let c = copy_cmd(&mut h, 7, 100, 0, &[(0, 0, 1)]);
    assert_eq!(c.sc(), (0, 0x0b));
}

#[test]
fn per_range_failures_report_the_first_range_not_copied() {
    let mut h = copy_host(vec![memns(1, limited(4, 64, 7))]);
    seed(&mut h, 1, 16);
    // Range 2 exceeds MSSRL 4: ranges 0 and 1 are written, Dword 0 = 2.
    let c = copy_cmd(
        &mut h,
        1,
        100,
        0,
        &[(0, 1, 1), (0, 2, 2), (0, 3, 5), (0, 9, 1)],
    );
    assert_eq!((c.sc(), c.dw0), ((1, 0x83), 2));
    assert_eq!(block(&h, 1, 100), seeded(1));
    assert_eq!(block(&h, 1, 101), seeded(2));
    assert_eq!(block(&h, 1, 102), seeded(3));
    assert!(block(&h, 1, 103).iter().all(|&b| b == 0));
    // Source out of range at range 1 (2048 blocks in 1 MiB).
    let c = copy_cmd(&mut h, 1, 200, 0, &[(0, 5, 1), (0, 2047, 2)]);
    assert_eq!((c.sc(), c.dw0), ((0, 0x80), 1));
    assert_eq!(block(&h, 1, 200), seeded(5));
    // Destination out of range at range 1.
    let c = copy_cmd(&mut h, 1, 2045, 0, &[(0, 5, 2), (0, 6, 2)]);
    assert_eq!((c.sc(), c.dw0), ((0, 0x80), 1));
    assert_eq!(block(&h, 1, 2046), seeded(6));
}

#[test]
fn cross_namespace_formats_2_and_3() {
    let big = NamespaceConfig {
        size: Some(1 << 20),
        logical_block_size: 4096,
        ..Default::default()
    };
    let mut h = copy_host(vec![
        memns(1, limited(16, 64, 7)),
        memns(2, limited(16, 64, 7)),
        memns(3, big),
    ]);
    seed(&mut h, 2, 16);
    // Enable formats 2 and 3 through Host Behavior Support.
    let mut hbs = vec![0u8; 512];
    hbs[4] = 0b1100;
    h.write_mem(BUF, &hbs);
    assert!(h
        .admin(Sqe {
            opcode: admin_op::SET_FEATURES,
            cdw10: feat::HOST_BEHAVIOR_SUPPORT as u32,
            dptr1: BUF,
            ..Default::default()
        })
        .ok());
    let c = copy_cmd(&mut h, 1, 10, 2, &[(2, 4, 2), (2, 8, 1)]);
    assert!(c.ok(), "{c:?}");
    assert_eq!(block(&h, 1, 10), seeded(4));
    assert_eq!(block(&h, 1, 11), seeded(5));
    assert_eq!(block(&h, 1, 12), seeded(8));
    // Unknown source namespace: Invalid Field; nsid 0: Invalid Namespace; a source with
    // another LBA size: Incompatible Namespace or Format. Dword 0 names the range.
    let c = copy_cmd(&mut h, 1, 20, 2, &[(2, 0, 1), (9, 0, 1)]);
    assert_eq!((c.sc(), c.dw0), ((0, 0x02), 1));
    assert_eq!(block(&h, 1, 20), seeded(0));
    let c = copy_cmd(&mut h, 1, 20, 2, &[(0, 0, 1)]);
    assert_eq!((c.sc(), c.dw0), ((0, 0x0b), 0));
    let c = copy_cmd(&mut h, 1, 20, 2, &[(2, 1, 1), (2, 2, 1), (3, 0, 1)]);
    assert_eq!((c.sc(), c.dw0), ((1, 0x85), 2));
    // Format 3 is enabled but needs protection information.
    let c = copy_cmd(&mut h, 1, 20, 3, &[(2, 0, 1)]);
    assert_eq!(c.sc(), (1, 0x0a));
}

#[test]
fn readonly_destination_and_overlap() {
    let ro = NamespaceConfig {
        readonly: true,
        ..limited(16, 64, 7)
    };
    let mut h = copy_host(vec![memns(1, limited(16, 64, 7)), memns(2, ro)]);
    seed(&mut h, 1, 16);
    let c = copy_cmd(&mut h, 2, 0, 0, &[(0, 0, 1)]);
    assert_eq!(c.sc(), (0, 0x20));
    // Overlapping source and destination in one namespace behave like memmove.
    let mut c = copy_cmd(&mut h, 1, 2, 0, &[(0, 0, 8)]);
    assert!(c.ok());
    for i in 0..8 {
        assert_eq!(block(&h, 1, 2 + i), seeded(i));
    }
    // With FUA too.
    h.write_mem(RANGES, &descriptors(0, &[(0, 2, 8)]));
    c = h.cmd(
        1,
        Sqe {
            opcode: io_op::COPY,
            nsid: 1,
            dptr1: RANGES,
            cdw10: 1,
            cdw12: (1 << 30),
            ..Default::default()
        },
    );
    assert!(c.ok());
    for i in 0..8 {
        assert_eq!(block(&h, 1, 1 + i), seeded(i));
    }
}
