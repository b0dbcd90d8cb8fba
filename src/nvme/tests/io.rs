//! I/O command, data transfer, concurrency, interrupt and shadow doorbell tests.

use std::time::Duration;

use super::*;

const DATA: u64 = 0x800000;

fn put_u64s(h: &Host, addr: u64, v: &[u64]) {
    for (i, x) in v.iter().enumerate() {
        h.m()
            .write_obj(*x, GuestAddress(addr + 8 * i as u64))
            .unwrap();
    }
}

fn sgl_desc(addr: u64, len: u32, kind: u8) -> [u8; 16] {
    let mut d = [0u8; 16];
    d[..8].copy_from_slice(&addr.to_le_bytes());
    d[8..12].copy_from_slice(&len.to_le_bytes());
    d[15] = kind << 4;
    d
}

fn with_sgl1(mut s: Sqe, d: [u8; 16]) -> Sqe {
    s.psdt = 1;
    s.dptr1 = get_u64(&d, 0);
    s.dptr2 = get_u64(&d, 8);
    s
}

fn io_host() -> Host {
    let mut h = Host::simple();
    h.io_pair(1, 32);
    h
}

#[test]
fn write_read_prp_list_across_pages_with_offset() {
    let mut h = io_host();
    // 40 blocks = 20 KiB, PRP1 at offset 0x200 into its page, then a PRP list starting
    // in the last slot but one of a page and chained to a second list page.
    let len = 40 * 512;
    let data = pattern(len, 7);
    let pages = [0x810000u64, 0x830000, 0x850000, 0x870000, 0x890000];
    // PRP1 covers 0xe00 bytes; the rest is 0x4200 bytes = 5 entries (4 full + 0x200).
    put_u64s(&h, 0x900ff0, &[pages[0], 0x920000]);
    put_u64s(&h, 0x920000, &pages[1..]);
    let mut off = 0usize;
    h.write_mem(0x800200, &data[..0xe00]);
    off += 0xe00;
    for p in pages {
        let n = (len - off).min(4096);
        h.write_mem(p, &data[off..off + n]);
        off += n;
    }
    assert_eq!(off, len);
    let c = h.cmd(1, rw(io_op::WRITE, 1, 100, 40, 0x800200, 0x900ff0));
    assert!(c.ok(), "{c:?}");
    assert_eq!(h.store_bytes(1, 100 * 512, len), data);

    // Read back into a different layout: PRP1 page aligned, PRP2 list.
    let rpages: Vec<u64> = (0..4).map(|i| 0xa00000 + i * 0x3000).collect();
    put_u64s(&h, 0x9f0000, &rpages);
    for p in &rpages {
        h.fill(*p, 4096, 0);
    }
    h.fill(0x9e0000, 4096, 0);
    let c = h.cmd(1, rw(io_op::READ, 1, 100, 40, 0x9e0000, 0x9f0000));
    assert!(c.ok(), "{c:?}");
    let mut back = h.read_mem(0x9e0000, 4096);
    for p in &rpages {
        back.extend(h.read_mem(*p, 4096));
    }
    assert_eq!(&back[..len], &data[..]);
}

#[test]
fn two_page_transfer_uses_prp2_directly() {
    let mut h = io_host();
    let data = pattern(4096 + 512, 9);
    h.write_mem(0x800e00, &data[..512]);
    h.write_mem(0x805000, &data[512..]);
    assert!(h.cmd(1, rw(io_op::WRITE, 1, 0, 9, 0x800e00, 0x805000)).ok());
    assert_eq!(h.store_bytes(1, 0, data.len()), data);
    // A PRP2 data pointer with an offset is invalid.
    let c = h.cmd(1, rw(io_op::WRITE, 1, 0, 9, 0x800e00, 0x805010));
    assert_eq!(c.sc(), (0, 0x13));
}

#[test]
fn sgl_write_and_read() {
    let mut h = io_host();
    let data = pattern(3 * 512, 11);
    // Segment of two data blocks + pointer to a last segment with one data block.
    let mut seg = Vec::new();
    seg.extend_from_slice(&sgl_desc(0x811000, 700, sgl::DATA_BLOCK));
    seg.extend_from_slice(&sgl_desc(0x812345, 300, sgl::DATA_BLOCK));
    seg.extend_from_slice(&sgl_desc(0x820000, 16, sgl::LAST_SEGMENT));
    h.write_mem(0x810000, &seg);
    h.write_mem(0x820000, &sgl_desc(0x813000, 536, sgl::DATA_BLOCK));
    h.write_mem(0x811000, &data[..700]);
    h.write_mem(0x812345, &data[700..1000]);
    h.write_mem(0x813000, &data[1000..]);
    let s = with_sgl1(
        rw(io_op::WRITE, 1, 20, 3, 0, 0),
        sgl_desc(0x810000, 48, sgl::SEGMENT),
    );
    assert!(h.cmd(1, s).ok());
    assert_eq!(h.store_bytes(1, 20 * 512, data.len()), data);
    // Read with a single data block descriptor.
    h.fill(0x830000, 1536, 0);
    let s = with_sgl1(
        rw(io_op::READ, 1, 20, 3, 0, 0),
        sgl_desc(0x830000, 1536, sgl::DATA_BLOCK),
    );
    assert!(h.cmd(1, s).ok());
    assert_eq!(h.read_mem(0x830000, 1536), data);
    // An SGL shorter than the transfer: Data SGL Length Invalid.
    let s = with_sgl1(
        rw(io_op::READ, 1, 20, 3, 0, 0),
        sgl_desc(0x830000, 1000, sgl::DATA_BLOCK),
    );
    assert_eq!(h.cmd(1, s).sc(), (0, 0x0f));
    // PSDT 3 is reserved.
    let mut s = rw(io_op::READ, 1, 20, 3, 0x830000, 0);
    s.psdt = 3;
    assert_eq!(h.cmd(1, s).sc(), (0, 0x02));
    // Bit bucket: SGL Descriptor Type Invalid.
    let s = with_sgl1(
        rw(io_op::READ, 1, 20, 3, 0, 0),
        sgl_desc(0x830000, 1536, sgl::BIT_BUCKET),
    );
    assert_eq!(h.cmd(1, s).sc(), (0, 0x11));
}

#[test]
fn mdts_range_nsid_opcode_and_readonly_errors() {
    let cfg = ControllerConfig {
        mdts: 1, // 8 KiB
        ..Default::default()
    };
    let ro = NamespaceConfig {
        size: Some(1 << 20),
        readonly: true,
        ..Default::default()
    };
    let mut h = Host::new(cfg, vec![memns(1, ns_cfg(1 << 20)), memns(2, ro)]);
    h.io_pair(1, 16);
    put_u64s(&h, 0x900000, &[0x801000, 0x802000]);
    let check = |c: Cqe, sct: u8, sc: u8| {
        assert_eq!(c.sc(), (sct, sc), "{c:?}");
        assert!(c.status.is_dnr());
    };
    assert!(h.cmd(1, rw(io_op::READ, 1, 0, 16, 0x800000, 0x801000)).ok());
    check(
        h.cmd(1, rw(io_op::READ, 1, 0, 17, 0x800000, 0x900000)),
        0,
        0x02,
    );
    check(
        h.cmd(1, rw(io_op::WRITE, 1, 0, 17, 0x800000, 0x900000)),
        0,
        0x02,
    );
    check(
        h.cmd(1, rw(io_op::COMPARE, 1, 0, 17, 0x800000, 0x900000)),
        0,
        0x02,
    );
    // 1 MiB / 512 = 2048 blocks.
    check(h.cmd(1, rw(io_op::READ, 1, 2047, 2, 0x800000, 0)), 0, 0x80);
    check(
        h.cmd(1, rw(io_op::READ, 1, u64::MAX, 1, 0x800000, 0)),
        0,
        0x80,
    );
    check(h.cmd(1, rw(io_op::WRITE_ZEROES, 1, 2040, 9, 0, 0)), 0, 0x80);
    check(h.cmd(1, rw(io_op::VERIFY, 1, 2048, 1, 0, 0)), 0, 0x80);
    assert!(h.cmd(1, rw(io_op::READ, 1, 2047, 1, 0x800000, 0)).ok());
    // NSID rules: an inactive NSID (<= NN = 256) or the broadcast value on a command
    // that does not take it is Invalid Field; 0 or above NN is Invalid Namespace.
    check(h.cmd(1, rw(io_op::READ, 3, 0, 1, 0x800000, 0)), 0, 0x02);
    check(h.cmd(1, rw(io_op::READ, 256, 0, 1, 0x800000, 0)), 0, 0x02);
    check(h.cmd(1, rw(io_op::READ, 257, 0, 1, 0x800000, 0)), 0, 0x0b);
    check(h.cmd(1, rw(io_op::READ, 0, 0, 1, 0x800000, 0)), 0, 0x0b);
    check(
        h.cmd(1, rw(io_op::READ, NSID_ALL, 0, 1, 0x800000, 0)),
        0,
        0x02,
    );
    check(h.cmd(1, rw(io_op::FLUSH, 9, 0, 1, 0, 0)), 0, 0x02);
    check(h.cmd(1, rw(io_op::FLUSH, 0, 0, 1, 0, 0)), 0, 0x0b);
    check(h.cmd(1, rw(0x7f, 1, 0, 1, 0x800000, 0)), 0, 0x01);
    // Reservation Register: not supported.
    check(h.cmd(1, rw(0x0d, 1, 0, 1, 0x800000, 0)), 0, 0x01);
    check(
        h.cmd(1, rw(io_op::WRITE_UNCORRECTABLE, 1, 2047, 2, 0, 0)),
        0,
        0x80,
    );
    // Read-only namespace: reads work, every modifying command is refused.
    assert!(h.cmd(1, rw(io_op::READ, 2, 0, 1, 0x800000, 0)).ok());
    check(h.cmd(1, rw(io_op::WRITE, 2, 0, 1, 0x800000, 0)), 0, 0x20);
    check(h.cmd(1, rw(io_op::WRITE_ZEROES, 2, 0, 1, 0, 0)), 0, 0x20);
    check(
        h.cmd(1, rw(io_op::WRITE_UNCORRECTABLE, 2, 0, 1, 0, 0)),
        0,
        0x20,
    );
    let mut dsm = rw(io_op::DATASET_MANAGEMENT, 2, 0, 1, 0x800000, 0);
    dsm.cdw10 = 0;
    dsm.cdw11 = 1 << 2;
    check(h.cmd(1, dsm), 0, 0x20);
    assert!(h.cmd(1, rw(io_op::FLUSH, NSID_ALL, 0, 1, 0, 0)).ok());
}

#[test]
fn out_of_map_dma_writes_nothing() {
    let mut h = io_host();
    let old = pattern(8192, 1);
    h.write_mem(DATA, &old);
    assert!(h.cmd(1, rw(io_op::WRITE, 1, 0, 16, DATA, DATA + 4096)).ok());
    // First page valid, second page outside every map.
    h.write_mem(DATA, &pattern(4096, 2));
    let c = h.cmd(1, rw(io_op::WRITE, 1, 0, 16, DATA, UNMAPPED));
    assert_eq!(c.sc(), (0, 0x04));
    assert!(c.status.is_dnr());
    assert_eq!(
        h.store_bytes(1, 0, 8192),
        old,
        "nothing may reach the store"
    );
    // A PRP list outside the maps.
    let c = h.cmd(1, rw(io_op::WRITE, 1, 0, 16, DATA, UNMAPPED));
    assert_eq!(c.sc(), (0, 0x04));
    let c = h.cmd(1, rw(io_op::WRITE, 1, 0, 24, DATA, UNMAPPED));
    assert_eq!(c.sc(), (0, 0x04));
    // A transfer straddling the end of the map, read direction: buffer untouched.
    h.fill(MEM_SIZE - 4096, 4096, 0xaa);
    let c = h.cmd(1, rw(io_op::READ, 1, 0, 16, MEM_SIZE - 4096, UNMAPPED));
    assert_eq!(c.sc(), (0, 0x04));
    assert!(h.read_mem(MEM_SIZE - 4096, 4096).iter().all(|&b| b == 0xaa));
    assert_eq!(h.store_bytes(1, 0, 8192), old);
}

#[test]
fn write_zeroes_deallocate_and_dsm() {
    let mut h = io_host();
    let data = pattern(64 * 512, 5);
    h.write_mem(DATA, &data);
    put_u64s(
        &h,
        0x900000,
        &(1..8).map(|i| DATA + i * 4096).collect::<Vec<_>>(),
    );
    assert!(h.cmd(1, rw(io_op::WRITE, 1, 0, 64, DATA, 0x900000)).ok());
    assert_eq!(h.store_bytes(1, 0, data.len()), data);
    // Write Zeroes without DEAC on blocks 2..4, with DEAC and FUA on 10..20.
    assert!(h.cmd(1, rw(io_op::WRITE_ZEROES, 1, 2, 2, 0, 0)).ok());
    let mut wz = rw(io_op::WRITE_ZEROES, 1, 10, 10, 0, 0);
    wz.cdw12 |= (1 << 25) | (1 << 30);
    assert!(h.cmd(1, wz).ok());
    let mut expect = data.clone();
    expect[2 * 512..4 * 512].fill(0);
    expect[10 * 512..20 * 512].fill(0);
    assert_eq!(h.store_bytes(1, 0, data.len()), expect);
    // DSM deallocate two ranges: (30, 2) and (40, 8); a zero-length range is fine.
    let mut ranges = Vec::new();
    for (slba, nlb) in [(30u64, 2u32), (40, 8), (60, 0)] {
        let mut r = [0u8; 16];
        r[4..8].copy_from_slice(&nlb.to_le_bytes());
        r[8..16].copy_from_slice(&slba.to_le_bytes());
        ranges.extend_from_slice(&r);
    }
    h.write_mem(0x880000, &ranges);
    let mut dsm = rw(io_op::DATASET_MANAGEMENT, 1, 0, 1, 0x880000, 0);
    dsm.cdw10 = 2;
    dsm.cdw11 = 1 << 2;
    dsm.cdw12 = 0;
    assert!(h.cmd(1, dsm).ok());
    expect[30 * 512..32 * 512].fill(0);
    expect[40 * 512..48 * 512].fill(0);
    assert_eq!(h.store_bytes(1, 0, data.len()), expect);
    // Reads of deallocated blocks return zeroes through the normal path too.
    h.fill(0x8c0000, 1024, 0xff);
    assert!(h.cmd(1, rw(io_op::READ, 1, 30, 2, 0x8c0000, 0)).ok());
    assert!(h.read_mem(0x8c0000, 1024).iter().all(|&b| b == 0));
    // A range past the end: LBA Out of Range, and nothing deallocated.
    let mut r = [0u8; 16];
    r[4..8].copy_from_slice(&8u32.to_le_bytes());
    r[8..16].copy_from_slice(&(32768u64 - 4).to_le_bytes());
    let mut two = [0u8; 32];
    two[..16].copy_from_slice(&ranges[..16]);
    two[4..8].copy_from_slice(&1u32.to_le_bytes());
    two[8..16].copy_from_slice(&50u64.to_le_bytes());
    two[16..].copy_from_slice(&r);
    h.write_mem(0x880000, &two);
    dsm.cdw10 = 1;
    assert_eq!(h.cmd(1, dsm).sc(), (0, 0x80));
    assert_eq!(h.store_bytes(1, 50 * 512, 512), expect[50 * 512..51 * 512]);
    // Without the deallocate attribute DSM is a hint only.
    dsm.cdw11 = 1;
    assert!(h.cmd(1, dsm).ok());
    assert_eq!(h.store_bytes(1, 0, data.len()), expect);
}

#[test]
fn compare_verify_flush_fua() {
    let mut h = io_host();
    let data = pattern(2048, 3);
    h.write_mem(DATA, &data);
    let mut w = rw(io_op::WRITE, 1, 8, 4, DATA, 0);
    w.cdw12 |= 1 << 30; // FUA
    assert!(h.cmd(1, w).ok());
    assert!(h.cmd(1, rw(io_op::COMPARE, 1, 8, 4, DATA, 0)).ok());
    let mut other = data.clone();
    other[2047] ^= 1;
    h.write_mem(DATA + 0x10000, &other);
    let c = h.cmd(1, rw(io_op::COMPARE, 1, 8, 4, DATA + 0x10000, 0));
    assert_eq!(c.sc(), (2, 0x85));
    assert!(c.status.is_dnr());
    assert!(h.cmd(1, rw(io_op::VERIFY, 1, 0, 32768, 0, 0)).ok());
    assert_eq!(
        h.cmd(1, rw(io_op::VERIFY, 1, 1, 32768, 0, 0)).sc(),
        (0, 0x80)
    );
    assert!(h.cmd(1, rw(io_op::FLUSH, 1, 0, 1, 0, 0)).ok());
    // With the write cache disabled, plain writes still complete (and are synced).
    assert!(h
        .admin(Sqe {
            opcode: admin_op::SET_FEATURES,
            cdw10: feat::VOLATILE_WRITE_CACHE as u32,
            cdw11: 0,
            ..Default::default()
        })
        .ok());
    assert!(h.cmd(1, rw(io_op::WRITE, 1, 8, 4, DATA + 0x10000, 0)).ok());
    assert_eq!(h.store_bytes(1, 8 * 512, 2048), other);
}

/// A host with one namespace on a fresh sparse file of `size` bytes (4096-byte blocks)
/// in a directory of its own, and an I/O queue pair 1 of 8 entries; returns the
/// directory (removed by the caller) and the file.
fn file_host(tag: &str, size: u64) -> (Host, std::path::PathBuf, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("vnvme-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ns.img");
    let _ = std::fs::remove_file(&path);
    let cfg = NamespaceConfig {
        backing: Backing::File(path.clone()),
        size: Some(size),
        logical_block_size: 4096,
        ..Default::default()
    };
    let mut h = Host::new(ControllerConfig::default(), vec![memns(1, cfg)]);
    h.io_pair(1, 8);
    (h, dir, path)
}

#[test]
fn file_backed_namespace_round_trip() {
    let (mut h, dir, path) = file_host("ctl", 4 << 20);
    let data = pattern(8192, 4);
    h.write_mem(DATA, &data);
    assert!(h.cmd(1, rw(io_op::WRITE, 1, 3, 2, DATA, DATA + 4096)).ok());
    let on_disk = std::fs::read(&path).unwrap();
    assert_eq!(on_disk.len(), 4 << 20);
    assert_eq!(&on_disk[3 * 4096..5 * 4096], &data[..]);
    let mut wz = rw(io_op::WRITE_ZEROES, 1, 3, 1, 0, 0);
    wz.cdw12 |= 1 << 25;
    assert!(h.cmd(1, wz).ok());
    h.fill(DATA, 8192, 0xff);
    assert!(h.cmd(1, rw(io_op::READ, 1, 3, 2, DATA, DATA + 4096)).ok());
    assert!(h.read_mem(DATA, 4096).iter().all(|&b| b == 0));
    assert_eq!(h.read_mem(DATA + 4096, 4096), &data[4096..]);
    drop(h);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn interrupts_follow_ien_and_vector() {
    let mut h = Host::simple();
    assert!(h.create_cq(1, 8, 0x300000, 5, true).ok());
    assert!(h.create_sq(1, 8, 0x310000, 1).ok());
    assert!(h.create_cq(2, 8, 0x320000, 6, false).ok());
    assert!(h.create_sq(2, 8, 0x330000, 2).ok());
    let before = h.irq.vectors();
    assert!(
        before.iter().all(|&v| v == 0),
        "admin completions use vector 0"
    );
    assert!(!before.is_empty());
    assert!(h.cmd(1, rw(io_op::FLUSH, 1, 0, 1, 0, 0)).ok());
    assert!(h.cmd(2, rw(io_op::FLUSH, 1, 0, 1, 0, 0)).ok());
    let after = h.irq.vectors();
    let new: Vec<u16> = after[before.len()..].to_vec();
    assert_eq!(new, vec![5], "IEN=0 queues raise nothing");
}

#[test]
fn queues_run_concurrently_and_share_a_cq() {
    let mut h = Host::simple();
    // CQ 1 shared by SQs 1 and 2; SQ 3 on its own CQ 3.
    assert!(h.create_cq(1, 64, 0x300000, 1, true).ok());
    assert!(h.create_sq(1, 32, 0x310000, 1).ok());
    assert!(h.create_sq(2, 32, 0x320000, 1).ok());
    assert!(h.create_cq(3, 64, 0x330000, 3, true).ok());
    assert!(h.create_sq(3, 32, 0x340000, 3).ok());
    let mut cids = Vec::new();
    for i in 0..20u64 {
        let qid = [1u16, 2, 3][(i % 3) as usize];
        h.write_mem(DATA + i * 4096, &pattern(4096, i as u8));
        cids.push((
            qid,
            h.push(qid, rw(io_op::WRITE, 1, i * 8, 8, DATA + i * 4096, 0)),
        ));
    }
    for q in [1, 2, 3] {
        h.ring_sq(q);
    }
    let mut got = Vec::new();
    while got.len() < 20 {
        let from1 = h.try_reap(1, Duration::from_millis(10));
        let from3 = h.try_reap(3, Duration::from_millis(10));
        for c in from1.into_iter().chain(from3) {
            assert!(c.ok());
            got.push((c.sqid, c.cid));
        }
    }
    got.sort();
    cids.sort();
    assert_eq!(got, cids);
    for i in 0..20u64 {
        assert_eq!(h.store_bytes(1, i * 4096, 4096), pattern(4096, i as u8));
    }
}

#[test]
fn slow_host_with_tiny_cq() {
    let mut h = Host::simple();
    assert!(h.create_cq(1, 2, 0x300000, 1, true).ok());
    assert!(h.create_sq(1, 16, 0x310000, 1).ok());
    let mut cids = Vec::new();
    for _ in 0..10 {
        cids.push(h.push(1, rw(io_op::FLUSH, 1, 0, 1, 0, 0)));
    }
    h.ring_sq(1);
    for cid in cids {
        std::thread::sleep(Duration::from_millis(2));
        let c = h.reap(1);
        assert_eq!(c.cid, cid, "completions in order, none lost");
    }
    assert!(h.try_reap(1, Duration::from_millis(50)).is_none());
}

#[test]
fn invalid_doorbell_values_are_ignored() {
    let mut h = io_host();
    h.w32(0x1008, 32); // SQ 1 has 32 entries: tail 32 is invalid
    h.w32(0x100c, 99);
    assert!(h.try_reap(1, Duration::from_millis(50)).is_none());
    assert!(h.cmd(1, rw(io_op::FLUSH, 1, 0, 1, 0, 0)).ok());
}

#[test]
fn shadow_doorbells_and_event_idx() {
    let mut h = Host::simple();
    let (db, ei) = (0x700000u64, 0x701000u64);
    h.fill(db, 8192, 0);
    let c = h.admin(Sqe {
        opcode: admin_op::DOORBELL_BUFFER_CONFIG,
        dptr1: db,
        dptr2: ei,
        ..Default::default()
    });
    assert!(c.ok());
    h.dbbuf = Some((db, ei));
    h.io_pair(1, 32);
    // Submit three commands, publishing only the shadow tail; one MMIO ring with a stale
    // value wakes the queue, which must take the tail from the shadow buffer.
    let mut cids = Vec::new();
    for _ in 0..3 {
        cids.push(h.push(1, rw(io_op::FLUSH, 1, 0, 1, 0, 0)));
    }
    h.m().write_obj(3u32, GuestAddress(db + 8)).unwrap();
    h.w32(0x1008, 1);
    for cid in cids {
        assert_eq!(h.reap(1).cid, cid);
    }
    // Once idle the controller publishes EventIdx = its head (3).
    let start = std::time::Instant::now();
    while h.m().read_obj::<u32>(GuestAddress(ei + 8)).unwrap() != 3 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "EventIdx not published"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    // Linux's rule: ring the MMIO doorbell only if the new tail passed EventIdx.
    let need_event = |event_idx: u32, new: u32, old: u32| {
        (new.wrapping_sub(event_idx).wrapping_sub(1) as u16) < (new.wrapping_sub(old) as u16)
    };
    let mut rang = 0;
    for round in 0..5 {
        let old = h.sq_tail(1);
        let cid = h.push(1, rw(io_op::FLUSH, 1, 0, 1, 0, 0));
        let new = h.sq_tail(1);
        h.m().write_obj(new, GuestAddress(db + 8)).unwrap();
        let eidx: u32 = h.m().read_obj(GuestAddress(ei + 8)).unwrap();
        if need_event(eidx, new, old) {
            h.w32(0x1008, new);
            rang += 1;
        }
        let c = h.reap(1);
        assert_eq!(c.cid, cid, "round {round}");
    }
    assert!(rang >= 1);
    // The admin queue keeps using MMIO doorbells.
    assert!(h.identify(cns::CONTROLLER, 0, 0).0.ok());
}

#[test]
fn sq_outside_guest_memory_is_fatal() {
    let mut h = Host::simple();
    assert!(h.create_cq(1, 8, 0x300000, 1, true).ok());
    // Queue memory is not checked at creation (maps may change), only when fetched.
    assert!(h.create_sq(1, 8, UNMAPPED, 1).ok());
    h.w32(0x1008, 1);
    assert!(h.wait_csts(csts::CFS, csts::CFS), "CSTS.CFS must be set");
    // A controller reset recovers.
    h.disable();
    assert_eq!(h.r32(reg::CSTS) & csts::CFS, 0);
    h.enable();
    assert!(h.identify(cns::CONTROLLER, 0, 0).0.ok());
}

#[test]
fn queues_at_the_top_of_the_address_space_do_not_overflow() {
    let mut h = Host::simple();
    let top = u64::MAX - 0xfff;
    assert!(h.create_cq(2, 8, 0x300000, 1, true).ok());
    assert!(h.create_sq(2, 8, top, 2).ok());
    h.w32(0x1010, 7);
    assert!(h.wait_csts(csts::CFS, csts::CFS));
    // After Controller Fatal Status nothing more is fetched or run, admin included,
    // until the host resets the controller.
    let id = Sqe {
        opcode: admin_op::IDENTIFY,
        dptr1: BUF,
        cdw10: 1,
        ..Default::default()
    };
    must(h.drv.submit(0, id));
    assert!(must(h.drv.try_reap(0, Duration::from_millis(300))).is_none());
    h.disable();
    h.enable();
    // Shadow buffers in the last page (no wrap) are accepted; shadow entries outside
    // guest memory are simply not used.
    let c = h.admin(Sqe {
        opcode: admin_op::DOORBELL_BUFFER_CONFIG,
        dptr1: top,
        dptr2: 0x600000,
        ..Default::default()
    });
    assert!(c.ok());
    // Transfers whose addresses wrap are data transfer errors, not panics.
    h.disable();
    h.enable();
    h.io_pair(1, 8);
    let c = h.cmd(1, rw(io_op::READ, 1, 0, 16, u64::MAX - 0x1ff, 0));
    assert_eq!(c.sc(), (0, 0x04));
    let c = h.cmd(1, rw(io_op::READ, 1, 0, 1, u64::MAX - 0xff, 0));
    assert_eq!(c.sc(), (0, 0x04));
}

#[test]
fn dma_map_changes_are_seen_by_the_next_command() {
    let mut h = io_host();
    let data = pattern(4096, 8);
    assert_eq!(
        h.cmd(1, rw(io_op::WRITE, 1, 0, 8, UNMAPPED, 0)).sc(),
        (0, 0x04)
    );
    // The transport maps a new region at UNMAPPED (keeping the old one).
    let grown = Mem::from_ranges(&[
        (GuestAddress(0), MEM_SIZE as usize),
        (GuestAddress(UNMAPPED), 1 << 20),
    ])
    .unwrap();
    // Carry the old contents over (queues live there).
    let old = h.read_mem(0, MEM_SIZE as usize);
    grown.write_slice(&old, GuestAddress(0)).unwrap();
    grown.write_slice(&data, GuestAddress(UNMAPPED)).unwrap();
    h.mem.lock().unwrap().replace(grown);
    assert!(h.cmd(1, rw(io_op::WRITE, 1, 0, 8, UNMAPPED, 0)).ok());
    assert_eq!(h.store_bytes(1, 0, 4096), data);
}

/// CPU time (utime + stime, clock ticks) of this process's threads named `name`.
fn thread_ticks(name: &str) -> Option<u64> {
    let mut total = None;
    for e in std::fs::read_dir("/proc/self/task").ok()? {
        let p = e.ok()?.path();
        let comm = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let stat = std::fs::read_to_string(p.join("stat")).ok()?;
        // Fields after the ")" of the command: state is field 3; utime 14, stime 15.
        let rest = &stat[stat.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        let t = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
        total = Some(total.unwrap_or(0) + t);
    }
    total
}

#[test]
fn idle_queue_workers_use_no_cpu() {
    let mut h = Host::simple();
    // Queue id 9 is used by no other test, so its worker thread name is unique.
    assert!(h.create_cq(9, 8, 0x300000, 1, true).ok());
    assert!(h.create_sq(9, 8, 0x310000, 9).ok());
    assert!(h.cmd(9, rw(io_op::FLUSH, 1, 0, 1, 0, 0)).ok());
    let before = thread_ticks("vnvme-sq9").expect("worker thread of SQ 9");
    std::thread::sleep(Duration::from_millis(400));
    let after = thread_ticks("vnvme-sq9").expect("worker thread of SQ 9");
    assert!(
        after - before <= 2,
        "idle worker used {} ticks",
        after - before
    );
    // Still responsive after sleeping.
    assert!(h.cmd(9, rw(io_op::FLUSH, 1, 0, 1, 0, 0)).ok());
}

#[test]
fn fused_compare_and_write_is_refused_and_writes_nothing() {
    // FUSES is 0: a Compare (FUSE 01b) + Write (FUSE 10b) pair, submitted together,
    // completes twice with Invalid Field in Command | DNR, and the blocks stay as they were.
    let mut h = io_host();
    let old = pattern(4 * 512, 1);
    h.write_mem(DATA, &old);
    assert!(h.cmd(1, rw(io_op::WRITE, 1, 8, 4, DATA, 0)).ok());
    let new = pattern(4 * 512, 9);
    h.write_mem(DATA + 0x10000, &new);
    let mut compare = rw(io_op::COMPARE, 1, 8, 4, DATA, 0);
    compare.fuse = 1;
    let mut write = rw(io_op::WRITE, 1, 8, 4, DATA + 0x10000, 0);
    write.fuse = 2;
    let c1 = h.push(1, compare);
    let c2 = h.push(1, write);
    h.ring_sq(1);
    let mut got: Vec<Cqe> = (0..2).map(|_| h.reap(1)).collect();
    got.sort_by_key(|c| c.cid);
    assert_eq!((got[0].cid, got[1].cid), (c1, c2));
    for c in &got {
        assert_eq!(c.status.0, 0x4002, "{c:?}");
    }
    assert_eq!(h.store_bytes(1, 8 * 512, 4 * 512), old);
    // The same Write, unfused, does write.
    assert!(h.cmd(1, rw(io_op::WRITE, 1, 8, 4, DATA + 0x10000, 0)).ok());
    assert_eq!(h.store_bytes(1, 8 * 512, 4 * 512), new);
}

/// A controller that was enabled and had I/O queues frees everything when the last
/// handle goes: its namespaces' volumes are released (the queues' executor used to hold
/// the controller's state, which holds the queues: a cycle that leaked every namespace).
#[test]
fn a_dropped_controller_frees_its_namespaces() {
    let v = Arc::new(Volume::memory("leak", 1 << 20, 512, false).unwrap());
    let ns = ns_cfg(1 << 20).on(1, v.clone());
    let mut h = Host::new(ControllerConfig::default(), vec![ns]);
    h.io_pair(1, 8);
    let buf = HEAP - 0x10000;
    assert!(h.cmd(1, rw(io_op::READ, 1, 0, 1, buf, 0)).ok());
    assert!(Arc::strong_count(&v) > 1);
    drop(h);
    assert_eq!(
        Arc::strong_count(&v),
        1,
        "the controller still holds the volume"
    );
}

#[test]
fn a_batch_in_flight_completes_each_command_once_with_few_interrupts() {
    let mut h = Host::simple();
    assert!(h.create_cq(1, 128, 0x300000, 1, true).ok());
    assert!(h.create_sq(1, 128, 0x310000, 1).ok());
    // 40 writes (more than the 32 slots in flight), one doorbell.
    let n = 40u64;
    let mut cids = Vec::new();
    for i in 0..n {
        h.write_mem(DATA + i * 4096, &pattern(4096, i as u8 + 1));
        cids.push(h.push(1, rw(io_op::WRITE, 1, i * 8, 8, DATA + i * 4096, 0)));
    }
    let before = h.irq.vectors().len();
    h.ring_sq(1);
    let mut got: Vec<u16> = (0..n)
        .map(|_| h.reap(1))
        .map(|c| {
            assert!(c.ok(), "{c:?}");
            c.cid
        })
        .collect();
    got.sort();
    cids.sort();
    assert_eq!(got, cids, "every write completed exactly once");
    let raised = h.irq.vectors().len() - before;
    assert!(
        raised >= 1 && (raised as u64) < n,
        "{raised} interrupts for {n} completions"
    );
    // Reads into fresh buffers with a Flush and a FUA write among them.
    let mut cids = Vec::new();
    for i in 0..n {
        h.fill(0x600000 + i * 4096, 4096, 0);
        cids.push(h.push(1, rw(io_op::READ, 1, i * 8, 8, 0x600000 + i * 4096, 0)));
        if i == n / 2 {
            cids.push(h.push(1, rw(io_op::FLUSH, 1, 0, 1, 0, 0)));
            let mut fua = rw(io_op::WRITE, 1, 1000, 8, DATA, 0);
            fua.cdw12 |= 1 << 30;
            cids.push(h.push(1, fua));
        }
    }
    h.ring_sq(1);
    let mut got: Vec<u16> = (0..cids.len())
        .map(|_| h.reap(1))
        .map(|c| {
            assert!(c.ok(), "{c:?}");
            c.cid
        })
        .collect();
    got.sort();
    cids.sort();
    assert_eq!(got, cids);
    for i in 0..n {
        assert_eq!(
            h.read_mem(0x600000 + i * 4096, 4096),
            pattern(4096, i as u8 + 1),
            "read {i}"
        );
    }
    assert_eq!(h.store_bytes(1, 1000 * 512, 4096), pattern(4096, 1));
    assert!(
        h.try_reap(1, Duration::from_millis(50)).is_none(),
        "nothing posted twice"
    );
}

#[test]
fn a_read_the_file_cuts_short_reads_zeroes_past_its_end() {
    let (mut h, dir, path) = file_host("short", 1 << 20);
    let data = pattern(8192, 3);
    h.write_mem(DATA, &data);
    assert!(h.cmd(1, rw(io_op::WRITE, 1, 10, 2, DATA, DATA + 4096)).ok());
    // Someone else shortens the file to the middle of the two blocks.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(10 * 4096 + 4096)
        .unwrap();
    h.fill(0x600000, 8192, 0xee);
    assert!(h.cmd(1, rw(io_op::READ, 1, 10, 2, 0x600000, 0x601000)).ok());
    assert_eq!(h.read_mem(0x600000, 4096), &data[..4096]);
    assert!(
        h.read_mem(0x601000, 4096).iter().all(|&b| b == 0),
        "past the end: zeroes"
    );
    drop(h);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn write_uncorrectable_fails_reads_until_written() {
    let mut h = io_host();
    let unrecovered = |c: Cqe| {
        assert_eq!(c.sc(), (2, 0x81), "{c:?}");
        assert!(c.status.is_dnr());
    };
    let data = pattern(8 * 512, 3);
    h.write_mem(DATA, &data);
    assert!(h.cmd(1, rw(io_op::WRITE, 1, 10, 8, DATA, DATA + 4096)).ok());
    // Blocks 12..14 and 40..50 marked; the rest of the namespace reads as before.
    assert!(h
        .cmd(1, rw(io_op::WRITE_UNCORRECTABLE, 1, 12, 2, 0, 0))
        .ok());
    assert!(h
        .cmd(1, rw(io_op::WRITE_UNCORRECTABLE, 1, 40, 10, 0, 0))
        .ok());
    assert!(h.cmd(1, rw(io_op::READ, 1, 10, 2, DATA, 0)).ok());
    assert!(h.cmd(1, rw(io_op::READ, 1, 14, 4, DATA, 0)).ok());
    unrecovered(h.cmd(1, rw(io_op::READ, 1, 10, 8, DATA, DATA + 4096)));
    unrecovered(h.cmd(1, rw(io_op::READ, 1, 13, 1, DATA, 0)));
    unrecovered(h.cmd(1, rw(io_op::VERIFY, 1, 0, 100, 0, 0)));
    h.write_mem(DATA, &data[..1024]);
    unrecovered(h.cmd(1, rw(io_op::COMPARE, 1, 12, 2, DATA, 0)));
    // The data underneath is untouched (a marked block is not zeroed).
    assert_eq!(h.store_bytes(1, 12 * 512, 1024), &data[1024..2048]);
    // Copy from a marked source fails at that range; the range before it was copied.
    let c = super::copy::copy_cmd(&mut h, 1, 200, 0, &[(0, 10, 2), (0, 13, 1)]);
    unrecovered(c);
    assert_eq!(h.store_bytes(1, 200 * 512, 1024), &data[..1024]);
    // A write over part of a mark unmarks just those blocks.
    h.write_mem(DATA, &data[..512]);
    assert!(h.cmd(1, rw(io_op::WRITE, 1, 12, 1, DATA, 0)).ok());
    assert!(h.cmd(1, rw(io_op::READ, 1, 12, 1, DATA, 0)).ok());
    unrecovered(h.cmd(1, rw(io_op::READ, 1, 12, 2, DATA, 0)));
    // Write Zeroes, Deallocate and a Copy onto marked blocks unmark them too.
    assert!(h.cmd(1, rw(io_op::WRITE_ZEROES, 1, 13, 1, 0, 0)).ok());
    assert!(h.cmd(1, rw(io_op::READ, 1, 10, 8, DATA, DATA + 4096)).ok());
    let range = [0u8, 0, 0, 0, 4, 0, 0, 0, 40, 0, 0, 0, 0, 0, 0, 0];
    h.write_mem(0x8f0000, &range);
    let mut dsm = rw(io_op::DATASET_MANAGEMENT, 1, 0, 1, 0x8f0000, 0);
    dsm.cdw10 = 0;
    dsm.cdw11 = 1 << 2;
    assert!(h.cmd(1, dsm).ok());
    assert!(h.cmd(1, rw(io_op::VERIFY, 1, 40, 4, 0, 0)).ok());
    unrecovered(h.cmd(1, rw(io_op::VERIFY, 1, 40, 5, 0, 0)));
    let c = super::copy::copy_cmd(&mut h, 1, 44, 0, &[(0, 10, 6)]);
    assert!(c.ok(), "{c:?}");
    assert!(h.cmd(1, rw(io_op::VERIFY, 1, 0, 100, 0, 0)).ok());
}

fn lba_status(h: &mut Host, nsid: u32, slba: u64, mndw: u32, atype: u8, rl: u16) -> (Cqe, Vec<u8>) {
    h.fill(BUF, 4096, 0xee);
    let c = h.admin(Sqe {
        opcode: admin_op::GET_LBA_STATUS,
        nsid,
        dptr1: BUF,
        cdw10: slba as u32,
        cdw11: (slba >> 32) as u32,
        cdw12: mndw - 1,
        cdw13: (atype as u32) << 24 | rl as u32,
        ..Default::default()
    });
    (c, h.read_mem(BUF, 4096))
}

/// (NLSD, CMPC, descriptors as (DSLBA, NLB)).
fn lba_descriptors(d: &[u8]) -> (u32, u8, Vec<(u64, u32)>) {
    let n = get_u32(d, 0);
    let descs = (0..n.min(250) as usize)
        .map(|i| (get_u64(d, 8 + i * 16), get_u32(d, 16 + i * 16)))
        .collect();
    (n, d[4], descs)
}

#[test]
fn get_lba_status_and_its_log_page_list_marked_blocks() {
    let mut h = io_host();
    let (c, d) = h.identify(cns::CONTROLLER, 0, 0);
    assert!(c.ok());
    let oacs = u16::from_le_bytes([d[id_ctrl::OACS], d[id_ctrl::OACS + 1]]);
    assert_ne!(oacs & id_ctrl::OACS_GET_LBA_STATUS, 0, "OACS bit 9");
    // Nothing marked: an empty, complete list; the log page is its 16-byte header.
    let (c, d) = lba_status(&mut h, 1, 0, 64, 0x11, 0);
    assert!(c.ok(), "{c:?}");
    assert_eq!(lba_descriptors(&d), (0, 2, vec![]));
    assert_eq!(d[8], 0xee, "only the header was written");
    let (c, l) = super::admin::get_log(&mut h, log::LBA_STATUS, 0, 16, 0, false);
    assert!(c.ok(), "{c:?}");
    assert_eq!((get_u32(&l, 0), get_u32(&l, 4), get_u32(&l, 8)), (16, 0, 0));
    let gen0 = u16::from_le_bytes([l[14], l[15]]);

    for (slba, nlb) in [(100, 4), (200, 1), (300, 16)] {
        assert!(h
            .cmd(1, rw(io_op::WRITE_UNCORRECTABLE, 1, slba, nlb, 0, 0))
            .ok());
    }
    // Both action types report the marks, clipped to [SLBA, SLBA + RL).
    for atype in [0x10, 0x11] {
        let (c, d) = lba_status(&mut h, 1, 0, 256, atype, 0);
        assert!(c.ok());
        assert_eq!(
            lba_descriptors(&d),
            (3, 2, vec![(100, 4), (200, 1), (300, 16)])
        );
    }
    let (_, d) = lba_status(&mut h, 1, 102, 256, 0x11, 100);
    assert_eq!(lba_descriptors(&d), (2, 2, vec![(102, 2), (200, 1)]));
    // A buffer of 2 descriptors (8 + 32 bytes = 10 dwords): incomplete.
    let (_, d) = lba_status(&mut h, 1, 0, 10, 0x11, 0);
    assert_eq!(lba_descriptors(&d), (2, 1, vec![(100, 4), (200, 1)]));
    assert_eq!(d[40], 0xee, "nothing past the host's MNDW dwords");
    // MNDW of 2 dwords: just the header, NLSD 0, incomplete.
    let (c, d) = lba_status(&mut h, 1, 0, 2, 0x11, 0);
    assert!(c.ok());
    assert_eq!(lba_descriptors(&d).0, 0);
    assert_eq!(d[4], 1);
    // The statuses: action type, LBA past the namespace, the NSID rules.
    let chk = |c: Cqe, sc: u8| {
        assert_eq!(c.sc(), (0, sc), "{c:?}");
        assert!(c.status.is_dnr());
    };
    chk(lba_status(&mut h, 1, 0, 64, 0x02, 0).0, 0x02);
    chk(lba_status(&mut h, 1, 0, 64, 0x00, 0).0, 0x02);
    chk(lba_status(&mut h, 1, 32768, 64, 0x11, 0).0, 0x80);
    chk(lba_status(&mut h, 1, u64::MAX, 64, 0x11, 0).0, 0x80);
    chk(lba_status(&mut h, 0, 0, 64, 0x11, 0).0, 0x0b);
    chk(lba_status(&mut h, 5, 0, 64, 0x11, 0).0, 0x02);
    chk(lba_status(&mut h, NSID_ALL, 0, 64, 0x11, 0).0, 0x02);

    // The log page: one element for namespace 1 with its three ranges.
    let (c, l) = super::admin::get_log(&mut h, log::LBA_STATUS, 0, 4096, 0, false);
    assert!(c.ok());
    assert_eq!(get_u32(&l, 0), 16 + 16 + 3 * 16, "LSLPLEN");
    assert_eq!(
        (get_u32(&l, 4), get_u32(&l, 8)),
        (1, 21),
        "one element, 21 blocks"
    );
    assert_ne!(u16::from_le_bytes([l[14], l[15]]), gen0, "LSGC moved");
    assert_eq!((get_u32(&l, 16), get_u32(&l, 20), l[24]), (1, 3, 0x11));
    let rd: Vec<(u64, u32)> = (0..3)
        .map(|i| (get_u64(&l, 32 + i * 16), get_u32(&l, 40 + i * 16)))
        .collect();
    assert_eq!(rd, vec![(100, 4), (200, 1), (300, 16)]);
    // Written blocks leave the lists.
    let data = pattern(16 * 512, 1);
    h.write_mem(DATA, &data);
    put_u64s(&h, 0x900000, &[DATA + 4096]);
    assert!(h
        .cmd(1, rw(io_op::WRITE, 1, 300, 16, DATA, DATA + 4096))
        .ok());
    assert!(h.cmd(1, rw(io_op::WRITE_ZEROES, 1, 100, 4, 0, 0)).ok());
    let (_, d) = lba_status(&mut h, 1, 0, 256, 0x11, 0);
    assert_eq!(lba_descriptors(&d), (1, 2, vec![(200, 1)]));
    // The feature that goes with the capability: LBA Status Information Attributes.
    let set = super::admin::feat_sqe(
        admin_op::SET_FEATURES,
        feat::LBA_STATUS_ATTRIBUTES,
        0x0032_000a,
    );
    assert!(h.admin(set).ok());
    let get = super::admin::feat_sqe(admin_op::GET_FEATURES, feat::LBA_STATUS_ATTRIBUTES, 0);
    assert_eq!(h.admin(get).dw0, 0x0032_000a);
}
