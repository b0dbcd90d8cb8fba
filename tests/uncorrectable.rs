//! Write Uncorrectable, Get LBA Status and the LBA Status Information log over the real
//! sockets: the vnvme binary with a file-backed namespace (reads go through io_uring
//! there), the host driver marking blocks and reading them back, the control socket's
//! `mark-unreadable` and `query-namespaces`, and the trace naming the commands.

mod common;

use common::exp::{copy_on, BinServer};
use common::nvme::*;
use serde_json::json;

const IO_WRITE_UNCORRECTABLE: u8 = 0x04;
const IO_VERIFY: u8 = 0x0c;
const ADMIN_GET_LOG_PAGE: u8 = 0x02;
const ADMIN_GET_LBA_STATUS: u8 = 0x86;
/// Unrecovered Read Error (SCT 2h, SC 81h).
const UNRECOVERED: u16 = 0x281;

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
}

fn read_sc(n: &mut Nvme, slba: u64, nlb: u32) -> u16 {
    let len = nlb as u64 * LBS;
    let buf = n.alloc(len);
    n.rw_prp(1, Sqe::new(IO_READ, 1).lba(slba, nlb), buf, len)
        .sc()
}

/// Get LBA Status (ATYPE 11h) over the whole namespace: the (DSLBA, NLB) descriptors.
fn lba_status(n: &mut Nvme) -> Vec<(u64, u32)> {
    let buf = n.alloc(PAGE);
    let c = n.exec_ok(
        0,
        Sqe::new(ADMIN_GET_LBA_STATUS, 1)
            .prp(buf, 0)
            .cdw(12, (PAGE / 4 - 1) as u32)
            .cdw(13, 0x11 << 24),
    );
    assert_eq!(c.sc(), 0);
    let d = n.read_mem(buf, PAGE as usize);
    assert_eq!(d[4], 2, "complete");
    (0..u32_at(&d, 0) as usize)
        .map(|i| (u64_at(&d, 8 + i * 16), u32_at(&d, 16 + i * 16)))
        .collect()
}

#[test]
fn marked_blocks_fail_reads_until_written_and_are_listed() {
    let dir = std::env::temp_dir().join(format!("vnvme-t-uncor-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let img = dir.join("ns1.img");
    let ns = format!("file={},size=4M", img.display());
    let mut s = BinServer::start("uncor", &[&ns], &["max_ioqpairs=2"], &[]);
    let mut n = Nvme::new(&s.server);
    n.create_io_queues(1, 16);
    let id = n.identify(1, 0);
    let oncs = u16::from_le_bytes([id[520], id[521]]);
    let oacs = u16::from_le_bytes([id[256], id[257]]);
    assert_ne!(oncs & (1 << 1), 0, "ONCS bit 1: Write Uncorrectable");
    assert_ne!(oacs & (1 << 9), 0, "OACS bit 9: Get LBA Status");

    let data = put(&mut n, 1, 100, 16, 3);
    let c = n.exec(1, Sqe::new(IO_WRITE_UNCORRECTABLE, 1).lba(104, 4));
    assert_eq!(c.sc(), 0);
    assert_eq!(read_sc(&mut n, 100, 4), 0, "blocks before the mark");
    assert_eq!(get(&mut n, 1, 100, 4), &data[..4 * 512]);
    assert_eq!(read_sc(&mut n, 100, 16), UNRECOVERED);
    assert_eq!(read_sc(&mut n, 107, 1), UNRECOVERED);
    let c = n.exec(1, Sqe::new(IO_VERIFY, 1).lba(0, 200));
    assert_eq!(c.sc(), UNRECOVERED);
    assert_ne!(c.status & (1 << 14), 0, "DNR: reading again fails again");
    assert_eq!(
        copy_on(&mut n, 1, 1, 1000, &[(0, 104, 1)]).sc(),
        UNRECOVERED
    );
    // The file still holds the old bytes: marking does not write the store.
    let f = std::fs::read(&img).unwrap();
    assert_eq!(&f[104 * 512..108 * 512], &data[4 * 512..8 * 512]);

    // The device side marks too; both show in query-namespaces and Get LBA Status.
    let r = s.ok(
        "mark-unreadable",
        json!({"nsid": 1, "slba": 2000, "blocks": 8}),
    );
    assert_eq!(r, json!({"unreadable_blocks": 12}));
    let q = s.ok("query-namespaces", json!({}));
    assert_eq!(
        q["namespaces"][0]["unreadable"],
        json!({"blocks": 12, "ranges": [[104, 4], [2000, 8]], "more": false})
    );
    assert_eq!(lba_status(&mut n), vec![(104, 4), (2000, 8)]);
    let e = s.ctl(
        "mark-unreadable",
        json!({"nsid": 1, "slba": 8190, "blocks": 8}),
    );
    assert!(
        e["error"]["desc"].as_str().unwrap().contains("slba/blocks"),
        "{e}"
    );
    let e = s.ctl(
        "mark-unreadable",
        json!({"nsid": 2, "slba": 0, "blocks": 1}),
    );
    assert!(e["error"]["desc"].as_str().unwrap().contains("nsid"), "{e}");

    // The log page: one namespace element, two ranges.
    let buf = n.alloc(PAGE);
    let c = n.exec(
        0,
        Sqe::new(ADMIN_GET_LOG_PAGE, 0)
            .prp(buf, 0)
            .cdw(10, 0x0e | (((PAGE / 4 - 1) as u32) << 16)),
    );
    assert_eq!(c.sc(), 0);
    let l = n.read_mem(buf, 80);
    assert_eq!((u32_at(&l, 0), u32_at(&l, 4), u32_at(&l, 8)), (64, 1, 12));
    assert_eq!((u32_at(&l, 16), u32_at(&l, 20), l[24]), (1, 2, 0x11));
    assert_eq!((u64_at(&l, 32), u32_at(&l, 40)), (104, 4));

    // Writing over the marks heals them, for reads through io_uring too.
    let new = put(&mut n, 1, 104, 4, 9);
    assert_eq!(get(&mut n, 1, 100, 8)[4 * 512..], new[..]);
    let c = n.exec(1, Sqe::new(0x08, 1).lba(2000, 8)); // Write Zeroes
    assert_eq!(c.sc(), 0);
    assert_eq!(read_sc(&mut n, 0, 256), 0);
    assert_eq!(lba_status(&mut n), vec![]);

    let names: Vec<String> = s
        .wait_io_records(1)
        .iter()
        .filter_map(|r| r["opcode_name"].as_str().map(str::to_string))
        .collect();
    assert!(
        names.iter().any(|n| n == "write-uncorrectable"),
        "{names:?}"
    );
    let st = s.ok("query-stats", json!({}));
    assert_eq!(
        st["1"]["opcodes"]["write-uncorrectable"]["commands"],
        json!(1),
        "{st}"
    );
    s.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn hostile_lba_status_and_marks_get_statuses() {
    let mut s = BinServer::start("uncor-hostile", &["size=1M"], &["max_ioqpairs=2"], &[]);
    let mut n = Nvme::new(&s.server);
    n.create_io_queues(1, 16);
    for i in 0..100u64 {
        let c = n.exec(1, Sqe::new(IO_WRITE_UNCORRECTABLE, 1).lba(i * 2, 1));
        assert_eq!(c.sc(), 0);
    }
    // MNDW of 2^32 dwords (16 GiB) into one page: refused before anything is built or
    // written; nothing past the page the PRP names is touched.
    let buf = n.alloc(2 * PAGE);
    n.write_mem(buf + PAGE, &[0xab; 64]);
    let c = n.exec(
        0,
        Sqe::new(ADMIN_GET_LBA_STATUS, 1)
            .prp(buf, 0)
            .cdw(12, u32::MAX)
            .cdw(13, 0x10 << 24),
    );
    // MDTS is set by default: a transfer beyond it is Invalid Field.
    assert_eq!(c.sc(), 0x02, "{c:?}");
    assert_eq!(n.read_mem(buf + PAGE, 64), vec![0xab; 64]);
    // Bad fields: the statuses, with DNR.
    for (sqe, sc) in [
        (Sqe::new(IO_WRITE_UNCORRECTABLE, 1).lba(2047, 2), 0x80),
        (Sqe::new(IO_WRITE_UNCORRECTABLE, 1).lba(u64::MAX, 1), 0x80),
        (Sqe::new(IO_WRITE_UNCORRECTABLE, 0).lba(0, 1), 0x0b),
        (Sqe::new(IO_WRITE_UNCORRECTABLE, 9).lba(0, 1), 0x02),
    ] {
        let c = n.exec(1, sqe);
        assert_eq!(c.sc(), sc, "{sqe:?}");
        assert_ne!(c.status & (1 << 14), 0);
    }
    let c = n.exec(
        0,
        Sqe::new(ADMIN_GET_LBA_STATUS, 1)
            .cdw(13, 0x11 << 24)
            .cdw(10, 4096),
    );
    assert_eq!(c.sc(), 0x80, "SLBA past the namespace");
    let c = n.exec(0, Sqe::new(ADMIN_GET_LBA_STATUS, 1).cdw(13, 0x03 << 24));
    assert_eq!(c.sc(), 0x02, "action type");
    // The controller is still healthy.
    assert_eq!(read_sc(&mut n, 1, 1), 0);
    assert_eq!(read_sc(&mut n, 0, 1), UNRECOVERED);
    s.stop();
}
