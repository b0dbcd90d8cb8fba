//! Zoned namespace tests: the zone rules of Write, Zone Append, Write Zeroes, reads and
//! Copy, Zone Management Send and Receive, the open/active limits, Identify and the
//! effects log for CSI 2, driven as a host would.

use super::copy::copy_cmd;
use super::*;
use crate::nvme::zones::ZoneGeometry;

const BLK: u64 = 512;
const ZONE: u64 = 2048;
const DATA: u64 = 0x800000;
const REPORT: u64 = 0x400000;

/// Namespace 1: 16 MiB in 16 zones of 2048 blocks (capacity 1536), at most 2 open
/// and 3 active; namespace 2: an NVM namespace.
fn zoned_host() -> Host {
    let geo = ZoneGeometry {
        zone_size: ZONE,
        zone_cap: 1536,
        nr_zones: 16,
        max_open: 2,
        max_active: 3,
        cross_read: false,
        ext_size: 64,
        zasl: 0,
    };
    let mut h = Host::new(
        ControllerConfig::default(),
        vec![
            memns(1, ns_cfg(16 << 20)).with_zones(geo),
            memns(2, ns_cfg(1 << 20)),
        ],
    );
    h.io_pair(1, 16);
    h
}

fn send(h: &mut Host, nsid: u32, slba: u64, zsa: u32, all: bool) -> Cqe {
    h.cmd(
        1,
        Sqe {
            opcode: io_op::ZONE_MGMT_SEND,
            nsid,
            dptr1: DATA,
            cdw10: slba as u32,
            cdw11: (slba >> 32) as u32,
            cdw13: zsa | (all as u32) << 8,
            ..Default::default()
        },
    )
}

/// Zone Management Receive into REPORT; (completion, zone count, (state, wp) of each
/// listed descriptor).
fn report(
    h: &mut Host,
    slba: u64,
    bytes: u32,
    zrasf: u32,
    partial: bool,
) -> (Cqe, u64, Vec<(u8, u64)>) {
    h.fill(REPORT, bytes as usize, 0xee);
    let c = h.cmd(
        1,
        Sqe {
            opcode: io_op::ZONE_MGMT_RECV,
            nsid: 1,
            dptr1: REPORT,
            dptr2: REPORT + 4096,
            cdw10: slba as u32,
            cdw11: (slba >> 32) as u32,
            cdw12: bytes / 4 - 1,
            cdw13: zrasf << 8 | (partial as u32) << 16,
            ..Default::default()
        },
    );
    let r = h.read_mem(REPORT, bytes as usize);
    let n = get_u64(&r, 0);
    let listed = (n.min((bytes as u64 - 64) / 64)) as usize;
    let zones = (0..listed)
        .map(|i| {
            let d = &r[64 + 64 * i..128 + 64 * i];
            (d[1] >> 4, get_u64(d, 24))
        })
        .collect();
    (c, n, zones)
}

fn write(h: &mut Host, op: u8, slba: u64, nlb: u32) -> Cqe {
    h.cmd(1, rw(op, 1, slba, nlb, DATA, DATA + 4096))
}

fn st(c: &Cqe) -> u16 {
    c.status.0
}

#[test]
fn writes_follow_the_write_pointer_and_append_returns_the_lba() {
    let mut h = zoned_host();
    h.write_mem(DATA, &pattern(8192, 3));
    assert!(write(&mut h, io_op::WRITE, 0, 8).ok());
    // Not at the write pointer: Zone Invalid Write, with DNR.
    assert_eq!(st(&write(&mut h, io_op::WRITE, 0, 8)), 0x41bc);
    assert_eq!(st(&write(&mut h, io_op::WRITE, 100, 8)), 0x41bc);
    // Zone Append lands at the pointer, and says where in Dwords 0 and 1.
    let c = write(&mut h, io_op::ZONE_APPEND, 0, 8);
    assert!(c.ok());
    assert_eq!((c.dw0, c.dw1), (8, 0));
    let c = write(&mut h, io_op::ZONE_APPEND, 3 * ZONE, 1);
    assert_eq!((c.dw0, c.dw1), (3 * ZONE as u32, 0));
    // An append must name the zone's first LBA.
    assert_eq!(st(&write(&mut h, io_op::ZONE_APPEND, 1, 1)), 0x4002);
    // The appended blocks hold the data.
    assert_eq!(h.store_bytes(1, 8 * BLK, 4096), pattern(8192, 3)[..4096]);
    // Write Zeroes and Write Uncorrectable are writes too.
    assert!(write(&mut h, io_op::WRITE_ZEROES, 16, 4).ok());
    assert_eq!(st(&write(&mut h, io_op::WRITE_ZEROES, 16, 4)), 0x41bc);
    assert!(write(&mut h, io_op::WRITE_UNCORRECTABLE, 20, 1).ok());
    // Crossing the zone capacity: Zone Boundary Error.
    assert!(write(&mut h, io_op::WRITE_ZEROES, ZONE, 1530).ok());
    assert_eq!(st(&write(&mut h, io_op::WRITE, ZONE + 1530, 8)), 0x41b8);
    assert!(
        write(&mut h, io_op::WRITE, ZONE + 1530, 6).ok(),
        "exactly to the capacity"
    );
    // Reads may not cross a zone boundary (cross_read off); within a zone, beyond the
    // write pointer, they read zeroes.
    assert_eq!(st(&write(&mut h, io_op::READ, ZONE - 1, 2)), 0x41b8);
    assert!(write(&mut h, io_op::READ, 1000, 8).ok());
    assert_eq!(h.read_mem(DATA, 4096), vec![0u8; 4096]);
    // The zoned opcodes on an NVM namespace: Invalid Opcode.
    let c = h.cmd(1, rw(io_op::ZONE_APPEND, 2, 0, 1, DATA, 0));
    assert_eq!(st(&c), 0x4001);
    assert_eq!(st(&send(&mut h, 2, 0, 4, false)), 0x4001);
}

#[test]
fn css_000b_gives_a_zoned_namespace_the_nvm_commands_only() {
    let mut h = zoned_host();
    assert!(write(&mut h, io_op::ZONE_APPEND, 0, 1).ok(), "CC.CSS 110b");
    h.disable();
    h.drv.css = Some(0);
    h.enable();
    h.io_pair(1, 16);
    assert_eq!(st(&write(&mut h, io_op::ZONE_APPEND, 0, 1)), 0x4001);
    assert_eq!(st(&send(&mut h, 1, 0, 4, false)), 0x4001);
    assert_eq!(st(&report(&mut h, 0, 4096, 0, false).0), 0x4001);
    // The namespace is still zoned: writes follow the write pointer.
    assert!(write(&mut h, io_op::WRITE, 1, 1).ok());
    assert_eq!(st(&write(&mut h, io_op::WRITE, 1, 1)), 0x41bc);
    h.disable();
    h.drv.css = None;
    h.enable();
    h.io_pair(1, 16);
    assert!(send(&mut h, 1, 0, 4, false).ok(), "110b again: reset works");
}

#[test]
fn filling_a_zone_makes_it_full_and_reports_show_each_state() {
    let mut h = zoned_host();
    // 1536 blocks = 6 writes of 256.
    for i in 0..6 {
        assert!(write(&mut h, io_op::WRITE, i * 256, 256).ok(), "write {i}");
    }
    assert_eq!(
        st(&write(&mut h, io_op::WRITE, 1536, 1)),
        0x41b9,
        "Zone Is Full"
    );
    assert_eq!(st(&write(&mut h, io_op::ZONE_APPEND, 0, 1)), 0x41b9);
    assert!(write(&mut h, io_op::WRITE, ZONE, 5).ok());
    let (c, n, zones) = report(&mut h, 0, 4096, 0, false);
    assert!(c.ok());
    assert_eq!(n, 16);
    assert_eq!(
        zones[0],
        (0xe, u64::MAX),
        "full; its write pointer is not valid"
    );
    assert_eq!(zones[1], (0x2, ZONE + 5), "implicitly open");
    assert_eq!(zones[2], (0x1, 2 * ZONE), "empty");
    // Filter: only the implicitly open ones; a partial report counts only those listed.
    let (_, n, zones) = report(&mut h, 0, 4096, 2, false);
    assert_eq!((n, zones.len()), (1, 1));
    let (_, n, _) = report(&mut h, 0, 128, 0, true);
    assert_eq!(n, 1);
    let (_, n, _) = report(&mut h, 0, 128, 0, false);
    assert_eq!(n, 16);
    // From the zone holding SLBA on.
    let (_, n, zones) = report(&mut h, 15 * ZONE + 7, 4096, 0, false);
    assert_eq!((n, zones[0].1), (1, 15 * ZONE));
    // Reserved receive action and filter; a report beyond MDTS; SLBA outside.
    let c = h.cmd(
        1,
        Sqe {
            opcode: io_op::ZONE_MGMT_RECV,
            nsid: 1,
            dptr1: REPORT,
            cdw12: 1023,
            cdw13: 9 << 8,
            ..Default::default()
        },
    );
    assert_eq!(st(&c), 0x4002);
    let (c, _, _) = report(&mut h, 0, 4096, 0, false);
    assert!(c.ok());
    let c = h.cmd(
        1,
        Sqe {
            opcode: io_op::ZONE_MGMT_RECV,
            nsid: 1,
            dptr1: REPORT,
            cdw12: u32::MAX,
            ..Default::default()
        },
    );
    assert_eq!(st(&c), 0x4002, "16 GiB report: beyond MDTS");
    let (c, _, _) = report(&mut h, 16 * ZONE, 4096, 0, false);
    assert_eq!(st(&c), 0x4080);
}

#[test]
fn open_and_active_limits_and_zone_actions() {
    let mut h = zoned_host();
    assert!(write(&mut h, io_op::WRITE, 0, 1).ok());
    assert!(write(&mut h, io_op::WRITE, ZONE, 1).ok());
    // A third open zone: the oldest implicitly opened one (zone 0) is closed for it.
    assert!(send(&mut h, 1, 2 * ZONE, 3, false).ok(), "explicit open");
    let (_, _, zones) = report(&mut h, 0, 4096, 0, false);
    assert_eq!((zones[0].0, zones[1].0, zones[2].0), (0x4, 0x2, 0x3));
    // Three active zones: a fourth is refused, by a write and by an explicit open.
    assert_eq!(st(&write(&mut h, io_op::WRITE, 3 * ZONE, 1)), 0x41bd);
    assert_eq!(st(&send(&mut h, 1, 3 * ZONE, 3, false)), 0x41bd);
    assert_eq!(
        st(&send(&mut h, 1, 3 * ZONE, 2, false)),
        0x41bd,
        "finish an empty zone"
    );
    // Close of an empty zone, open of a full one: Invalid Zone State Transition.
    assert_eq!(st(&send(&mut h, 1, 4 * ZONE, 1, false)), 0x41bf);
    // Not a zone's first LBA; a reserved action.
    assert_eq!(st(&send(&mut h, 1, 1, 4, false)), 0x4002);
    assert_eq!(st(&send(&mut h, 1, 0, 7, false)), 0x4002);
    // Finish zone 1: full; then open it: invalid.
    assert!(send(&mut h, 1, ZONE, 2, false).ok());
    assert_eq!(st(&send(&mut h, 1, ZONE, 3, false)), 0x41bf);
    // Reset zone 0: empty, its data deallocated.
    h.write_mem(DATA, &pattern(512, 9));
    assert!(send(&mut h, 1, 0, 4, false).ok());
    assert_eq!(h.store_bytes(1, 0, 512), vec![0u8; 512]);
    assert!(
        write(&mut h, io_op::WRITE, 0, 1).ok(),
        "written again from the start"
    );
    // Close all, then reset all: every zone empty.
    assert!(send(&mut h, 1, 0, 1, true).ok());
    let (_, n, _) = report(&mut h, 0, 4096, 2, false);
    assert_eq!(n, 0, "no implicitly open zone after close all");
    assert!(send(&mut h, 1, 0, 4, true).ok());
    let (_, n, _) = report(&mut h, 0, 4096, 1, false);
    assert_eq!(n, 16);
}

#[test]
fn descriptor_extensions_and_extended_reports() {
    let mut h = zoned_host();
    h.write_mem(DATA, &[0x5a; 64]);
    assert!(send(&mut h, 1, 5 * ZONE, 0x10, false).ok());
    // Extended report: the descriptor (ZA bit 7) then the extension.
    h.fill(REPORT, 4096, 0);
    let c = h.cmd(
        1,
        Sqe {
            opcode: io_op::ZONE_MGMT_RECV,
            nsid: 1,
            dptr1: REPORT,
            cdw10: (5 * ZONE) as u32,
            cdw12: 4096 / 4 - 1,
            cdw13: 1 | 4 << 8,
            ..Default::default()
        },
    );
    assert!(c.ok());
    let r = h.read_mem(REPORT, 256);
    assert_eq!(get_u64(&r, 0), 1);
    assert_eq!((r[64 + 1] >> 4, r[64 + 2]), (0x4, 0x80));
    assert_eq!(&r[128..192], &[0x5a; 64]);
    // Only an empty zone takes an extension.
    assert_eq!(st(&send(&mut h, 1, 5 * ZONE, 0x10, false)), 0x41bf);
}

#[test]
fn copy_into_a_zone_is_a_write_at_its_pointer() {
    let mut h = zoned_host();
    h.write_mem(DATA, &pattern(4096, 1));
    assert!(write(&mut h, io_op::WRITE, 0, 8).ok());
    // Copy blocks 0..8 of zone 0 to the start of zone 1: at its pointer.
    assert!(copy_cmd(&mut h, 1, ZONE, 0, &[(0, 0, 4), (0, 4, 4)]).ok());
    assert_eq!(h.store_bytes(1, ZONE * BLK, 4096), pattern(4096, 1));
    let (_, _, zones) = report(&mut h, ZONE, 128, 0, false);
    assert_eq!(zones[0], (0x2, ZONE + 8));
    // Off the pointer: Zone Invalid Write, and an empty destination zone stays empty
    // (QEMU leaves it implicitly open).
    let c = copy_cmd(&mut h, 1, 2 * ZONE + 4, 0, &[(0, 0, 4)]);
    assert_eq!((st(&c), c.dw0), (0x41bc, 0));
    let (_, _, zones) = report(&mut h, 2 * ZONE, 128, 0, false);
    assert_eq!(zones[0], (0x1, 2 * ZONE));
    // Into a full zone: Zone Is Full (QEMU: Invalid Zone State Transition).
    assert!(send(&mut h, 1, 3 * ZONE, 2, false).ok());
    let c = copy_cmd(&mut h, 1, 3 * ZONE, 0, &[(0, 0, 4)]);
    assert_eq!(st(&c), 0x41b9);
    // Past the zone's capacity: Zone Boundary Error; a source across zones: the same.
    assert!(write(&mut h, io_op::WRITE_ZEROES, 4 * ZONE, 1534).ok());
    let c = copy_cmd(&mut h, 1, 4 * ZONE + 1534, 0, &[(0, 0, 4)]);
    assert_eq!(st(&c), 0x41b8);
    let c = copy_cmd(&mut h, 1, ZONE + 8, 0, &[(0, ZONE - 2, 4)]);
    assert_eq!(st(&c), 0x41b8);
    // A cross-namespace-free copy from the NVM namespace is not possible with format 0,
    // but the NVM namespace's own copies are untouched by zones.
    assert!(h.cmd(1, rw(io_op::WRITE, 2, 0, 8, DATA, DATA + 4096)).ok());
    assert!(copy_cmd(&mut h, 2, 100, 0, &[(0, 0, 8)]).ok());
}

#[test]
fn identify_and_effects_for_the_zoned_command_set() {
    let mut h = zoned_host();
    let (c, d) = h.identify(cns::CS_NAMESPACE, 1, CSI_ZNS);
    assert!(c.ok());
    assert_eq!(&d[2..4], &[0, 0], "OZCS: no reads across zones");
    assert_eq!(
        (get_u32(&d, 4), get_u32(&d, 8)),
        (2, 1),
        "MAR, MOR 0's based"
    );
    assert_eq!(get_u64(&d, 2816), ZONE, "ZSZE of LBA format 0");
    assert_eq!(d[2816 + 8], 1, "ZDES: 64 bytes");
    assert_eq!(h.identify(cns::CS_NAMESPACE, 2, CSI_ZNS).0.sc(), (0, 0x02));
    // The NVM structure of the zoned namespace: NSZE is the zones' blocks.
    let (_, d) = h.identify(cns::NAMESPACE, 1, 0);
    assert_eq!(get_u64(&d, 0), 16 * ZONE);
    let (_, d) = h.identify(cns::NS_DESCRIPTORS, 1, 0);
    let csi = d
        .windows(4)
        .position(|w| w == [nidt::CSI, 1, 0, 0])
        .unwrap();
    assert_eq!(d[csi + 4], CSI_ZNS);
    let (_, d) = h.identify(cns::CS_ACTIVE_NS_LIST, 0, CSI_ZNS);
    assert_eq!((get_u32(&d, 0), get_u32(&d, 4)), (1, 0));
    // Effects: Zone Append and the zone management commands for CSI 2 only.
    let effects = |h: &mut Host, csi: u8| {
        h.fill(BUF, 4096, 0xee);
        let c = h.admin(Sqe {
            opcode: admin_op::GET_LOG_PAGE,
            dptr1: BUF,
            cdw10: log::COMMANDS_EFFECTS as u32 | (1023 << 16),
            cdw14: (csi as u32) << 24,
            ..Default::default()
        });
        (c, h.read_mem(BUF, 4096))
    };
    let (c, d) = effects(&mut h, CSI_ZNS);
    assert!(c.ok());
    assert_eq!(get_u32(&d, 1024 + 4 * io_op::ZONE_APPEND as usize), 0b11);
    assert_eq!(get_u32(&d, 1024 + 4 * io_op::ZONE_MGMT_RECV as usize), 0b01);
    assert_eq!(get_u32(&d, 1024 + 4 * io_op::WRITE as usize), 0b11);
    let (_, d) = effects(&mut h, CSI_NVM);
    assert_eq!(get_u32(&d, 1024 + 4 * io_op::ZONE_APPEND as usize), 0);
    assert_eq!(effects(&mut h, 1).0.sc(), (0, 0x02));
}

#[test]
fn format_resets_every_zone() {
    let mut h = zoned_host();
    h.write_mem(DATA, &pattern(512, 4));
    assert!(write(&mut h, io_op::WRITE, 0, 1).ok());
    // Format to LBA format 0 (512 bytes, no metadata): the zones start empty.
    let c = h.admin(Sqe {
        opcode: admin_op::FORMAT_NVM,
        nsid: 1,
        ..Default::default()
    });
    assert!(c.ok());
    let (_, n, _) = report(&mut h, 0, 4096, 1, false);
    assert_eq!(n, 16);
    assert!(write(&mut h, io_op::WRITE, 0, 1).ok());
    // A format with metadata or another block size: Invalid Format.
    let c = h.admin(Sqe {
        opcode: admin_op::FORMAT_NVM,
        nsid: 1,
        cdw10: 4,
        ..Default::default()
    });
    assert_eq!(st(&c), 0x410a);
}
