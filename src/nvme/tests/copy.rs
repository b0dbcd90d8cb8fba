//! Copy command tests: formats, limits, per-range failures and Dword 0, cross-namespace.

use super::*;

pub(crate) const RANGES: u64 = 0x880000;
pub(crate) const DATA: u64 = 0x800000;

/// Builds descriptors of `format` from (snsid, slba, nlb 1-based).
pub(crate) fn descriptors(format: u8, ranges: &[(u32, u64, u32)]) -> Vec<u8> {
    let size = crate::nvme::spec::copy::descriptor_size(format).unwrap();
    let mut b = vec![0u8; size * ranges.len()];
    for (i, (snsid, slba, nlb)) in ranges.iter().enumerate() {
        let d = &mut b[i * size..(i + 1) * size];
        d[0..4].copy_from_slice(&snsid.to_le_bytes());
        d[8..16].copy_from_slice(&slba.to_le_bytes());
        d[16..18].copy_from_slice(&((nlb - 1) as u16).to_le_bytes());
    }
    b
}

pub(crate) fn copy_cmd(
    h: &mut Host,
    nsid: u32,
    sdlba: u64,
    format: u8,
    ranges: &[(u32, u64, u32)],
) -> Cqe {
    let d = descriptors(format, ranges);
    h.write_mem(RANGES, &d);
    let s = Sqe {
        opcode: io_op::COPY,
        nsid,
        dptr1: RANGES,
        // More than one page of descriptors: PRP2 is the second page.
        dptr2: if d.len() > 4096 { RANGES + 4096 } else { 0 },
        cdw10: sdlba as u32,
        cdw11: (sdlba >> 32) as u32,
        cdw12: (ranges.len() as u32 - 1) | ((format as u32) << 8),
        ..Default::default()
    };
    h.cmd(1, s)
}

/// Fills blocks [0, n) of `nsid` with block-numbered patterns.
pub(crate) fn seed(h: &mut Host, nsid: u32, n: u32) {
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

pub(crate) fn block(h: &Host, nsid: u32, lba: u64) -> Vec<u8> {
    h.store_bytes(nsid, lba * 512, 512)
}

pub(crate) fn seeded(lba: u64) -> Vec<u8> {
    vec![(lba as u8) ^ 0x5a; 512]
}

pub(crate) fn limited(mssrl: u16, mcl: u32, msrc: u8) -> NamespaceConfig {
    NamespaceConfig {
        size: Some(1 << 20),
        mssrl,
        mcl,
        msrc,
        ..Default::default()
    }
}

pub(crate) fn copy_host(ns: Vec<Namespace>) -> Host {
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
    // Inactive destination namespace: Invalid Field; an invalid NSID: Invalid Namespace.
    let c = copy_cmd(&mut h, 7, 100, 0, &[(0, 0, 1)]);
    assert_eq!(c.sc(), (0, 0x02));
    let c = copy_cmd(&mut h, 0, 100, 0, &[(0, 0, 1)]);
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

// ---------------------------------------------------------------------------------------
// Configuration: ONCS, OCFS, copy=off, the effects log, Host Behavior Support.

pub(crate) fn set_cdfe(h: &mut Host, cdfe: u16) {
    let mut hbs = vec![0u8; 512];
    hbs[4..6].copy_from_slice(&cdfe.to_le_bytes());
    h.write_mem(BUF, &hbs);
    let c = h.admin(Sqe {
        opcode: admin_op::SET_FEATURES,
        cdw10: feat::HOST_BEHAVIOR_SUPPORT as u32,
        dptr1: BUF,
        ..Default::default()
    });
    assert!(c.ok(), "{c:?}");
}

fn effects_log(h: &mut Host) -> Vec<u8> {
    h.fill(BUF, 4096, 0xee);
    let c = h.admin(Sqe {
        opcode: admin_op::GET_LOG_PAGE,
        dptr1: BUF,
        cdw10: log::COMMANDS_EFFECTS as u32 | (1023 << 16),
        ..Default::default()
    });
    assert!(c.ok(), "{c:?}");
    h.read_mem(BUF, 4096)
}

fn oncs_ocfs(h: &mut Host) -> (u16, u16) {
    let (c, d) = h.identify(cns::CONTROLLER, 0, 0);
    assert!(c.ok());
    (
        u16::from_le_bytes([d[id_ctrl::ONCS], d[id_ctrl::ONCS + 1]]),
        u16::from_le_bytes([d[id_ctrl::OCFS], d[id_ctrl::OCFS + 1]]),
    )
}

fn host_with(cfg: ControllerConfig, ns: Vec<Namespace>) -> Host {
    let mut h = Host::new(cfg, ns);
    h.io_pair(1, 32);
    h
}

#[test]
fn identify_and_effects_log_follow_copy_and_ocfs() {
    let mut h = copy_host(vec![memns(1, limited(16, 64, 7))]);
    let (oncs, ocfs) = oncs_ocfs(&mut h);
    assert_eq!(oncs & id_ctrl::ONCS_COPY, id_ctrl::ONCS_COPY);
    assert_eq!(ocfs, 0xf);
    let fx = effects_log(&mut h);
    let copy_fx = get_u32(&fx, 1024 + io_op::COPY as usize * 4);
    assert_eq!(copy_fx, 0b11, "Copy: CSUPP and LBCC");
    assert_eq!(
        get_u32(&fx, 1024 + io_op::READ as usize * 4),
        1,
        "Read: CSUPP only"
    );

    let cfg = ControllerConfig {
        ocfs: 0x5,
        ..Default::default()
    };
    let mut h = host_with(cfg, vec![memns(1, limited(16, 64, 7))]);
    assert_eq!(oncs_ocfs(&mut h).1, 0x5);

    let cfg = ControllerConfig {
        copy: false,
        ..Default::default()
    };
    let mut h = host_with(cfg, vec![memns(1, limited(16, 64, 7))]);
    let (oncs, ocfs) = oncs_ocfs(&mut h);
    assert_eq!(oncs & id_ctrl::ONCS_COPY, 0, "ONCS bit 8 clear");
    assert_eq!(oncs & 0x8f, 0x8f, "the other optional commands stay");
    assert_eq!(ocfs, 0, "no copy formats without Copy");
    let fx = effects_log(&mut h);
    assert_eq!(get_u32(&fx, 1024 + io_op::COPY as usize * 4), 0);
    assert_eq!(get_u32(&fx, 1024 + io_op::WRITE as usize * 4), 0b11);
    seed(&mut h, 1, 4);
    let c = copy_cmd(&mut h, 1, 100, 0, &[(0, 0, 1)]);
    assert_eq!((c.sc(), c.dw0), ((0, 0x01), 0), "Invalid Command Opcode");
    assert!(c.status.is_dnr());
    assert!(block(&h, 1, 100).iter().all(|&b| b == 0));
}

#[test]
fn formats_outside_ocfs_are_invalid_field() {
    // Only format 0 advertised: format 2 fails even once the host enabled it.
    let cfg = ControllerConfig {
        ocfs: 0x1,
        ..Default::default()
    };
    let mut h = host_with(
        cfg,
        vec![memns(1, limited(16, 64, 7)), memns(2, limited(16, 64, 7))],
    );
    seed(&mut h, 1, 8);
    set_cdfe(&mut h, 0b1100);
    let c = copy_cmd(&mut h, 1, 100, 2, &[(1, 0, 1)]);
    assert_eq!((c.sc(), c.dw0), ((0, 0x02), 0));
    assert!(c.status.is_dnr());
    assert!(copy_cmd(&mut h, 1, 100, 0, &[(0, 0, 1)]).ok());
    // Only format 2 advertised: format 0 fails, format 2 works.
    let cfg = ControllerConfig {
        ocfs: 0x4,
        ..Default::default()
    };
    let mut h = host_with(cfg, vec![memns(1, limited(16, 64, 7))]);
    seed(&mut h, 1, 8);
    let c = copy_cmd(&mut h, 1, 100, 0, &[(0, 0, 1)]);
    assert_eq!(c.sc(), (0, 0x02));
    assert!(c.status.is_dnr());
    // Format 2 without CDFE: Invalid Field; with it: copied.
    let c = copy_cmd(&mut h, 1, 100, 2, &[(1, 3, 1)]);
    assert_eq!(c.sc(), (0, 0x02));
    set_cdfe(&mut h, 0b0100);
    assert!(copy_cmd(&mut h, 1, 100, 2, &[(1, 3, 1)]).ok());
    assert_eq!(block(&h, 1, 100), seeded(3));
    // ocfs = 0: no format at all.
    let cfg = ControllerConfig {
        ocfs: 0,
        ..Default::default()
    };
    let mut h = host_with(cfg, vec![memns(1, limited(16, 64, 7))]);
    assert_eq!(copy_cmd(&mut h, 1, 100, 0, &[(0, 0, 1)]).sc(), (0, 0x02));
}

fn get_hbs(h: &mut Host, sel: u32) -> Vec<u8> {
    h.fill(BUF, 512, 0xee);
    let c = h.admin(Sqe {
        opcode: admin_op::GET_FEATURES,
        cdw10: feat::HOST_BEHAVIOR_SUPPORT as u32 | (sel << 8),
        dptr1: BUF,
        ..Default::default()
    });
    assert!(c.ok(), "{c:?}");
    h.read_mem(BUF, 512)
}

#[test]
fn host_behavior_support_returns_cdfe() {
    let mut h = copy_host(vec![memns(1, limited(16, 64, 7))]);
    assert!(
        get_hbs(&mut h, 0).iter().all(|&b| b == 0),
        "CDFE 0 after reset"
    );
    set_cdfe(&mut h, 0b0100);
    let cur = get_hbs(&mut h, 0);
    assert_eq!(u16::from_le_bytes([cur[4], cur[5]]), 0b0100);
    assert_eq!(h.ctrl.copy_formats_enabled(), 0b0100);
    // Select 1 (default value): all zeroes.
    assert!(get_hbs(&mut h, 1).iter().all(|&b| b == 0));
    // A controller reset forgets it.
    h.disable();
    h.enable();
    assert!(get_hbs(&mut h, 0).iter().all(|&b| b == 0));
}

fn cdfe_of(b: &[u8]) -> u16 {
    u16::from_le_bytes([b[4], b[5]])
}

#[test]
fn configured_cdfe_holds_after_every_reset_until_a_host_changes_it() {
    let cfg = ControllerConfig {
        cdfe: 0xc,
        ..Default::default()
    };
    let mut h = host_with(cfg, vec![memns(1, limited(16, 64, 7))]);
    seed(&mut h, 1, 8);
    // No Set Features: format 2 works at once, and Get Features shows the value (also as
    // the default, select 1).
    assert_eq!(cdfe_of(&get_hbs(&mut h, 0)), 0xc);
    assert_eq!(cdfe_of(&get_hbs(&mut h, 1)), 0xc);
    assert!(copy_cmd(&mut h, 1, 100, 2, &[(1, 3, 1)]).ok());
    assert_eq!(block(&h, 1, 100), seeded(3));
    // A host's Set Features still changes it...
    set_cdfe(&mut h, 0);
    assert_eq!(copy_cmd(&mut h, 1, 101, 2, &[(1, 3, 1)]).sc(), (0, 0x02));
    assert_eq!(
        h.ctrl.host_behavior(),
        crate::nvme::tuning::HostBehavior {
            cdfe: 0,
            reset_cdfe: 0xc
        }
    );
    // ...until the next reset.
    h.disable();
    h.enable();
    h.io_pair(1, 32);
    assert_eq!(cdfe_of(&get_hbs(&mut h, 0)), 0xc);
    assert!(copy_cmd(&mut h, 1, 102, 2, &[(1, 3, 1)]).ok());
}

#[test]
fn set_host_behavior_takes_effect_for_the_next_copy_and_after_resets() {
    let mut h = copy_host(vec![memns(1, limited(16, 64, 7))]);
    seed(&mut h, 1, 8);
    // Other Host Behavior Support fields the host set stay as they are.
    let mut hbs = vec![0u8; 512];
    hbs[0] = 1;
    hbs[100] = 7;
    h.write_mem(BUF, &hbs);
    let c = h.admin(Sqe {
        opcode: admin_op::SET_FEATURES,
        cdw10: feat::HOST_BEHAVIOR_SUPPORT as u32,
        dptr1: BUF,
        ..Default::default()
    });
    assert!(c.ok());
    assert_eq!(copy_cmd(&mut h, 1, 100, 2, &[(1, 3, 1)]).sc(), (0, 0x02));
    let hb = h.ctrl.set_host_behavior(0x4).unwrap();
    assert_eq!((hb.cdfe, hb.reset_cdfe), (4, 4));
    assert!(copy_cmd(&mut h, 1, 100, 2, &[(1, 3, 1)]).ok());
    let got = get_hbs(&mut h, 0);
    assert_eq!((cdfe_of(&got), got[0], got[100]), (4, 1, 7));
    // Format 3 is not enabled by bit 2.
    assert_eq!(copy_cmd(&mut h, 1, 100, 3, &[(1, 3, 1)]).sc(), (0, 0x02));
    h.disable();
    h.enable();
    h.io_pair(1, 32);
    let got = get_hbs(&mut h, 0);
    assert_eq!((cdfe_of(&got), got[0]), (4, 0), "after a reset: CDFE only");
    assert!(copy_cmd(&mut h, 1, 101, 2, &[(1, 3, 1)]).ok());
    h.ctrl.set_host_behavior(0).unwrap();
    assert_eq!(copy_cmd(&mut h, 1, 102, 2, &[(1, 3, 1)]).sc(), (0, 0x02));
    let e = h.ctrl.set_host_behavior(0x10).unwrap_err();
    assert!(e.starts_with("cdfe: 0x10 is not a mask"), "{e}");
    assert_eq!(
        h.ctrl.host_behavior().cdfe,
        0,
        "a refused value changes nothing"
    );
}

// ---------------------------------------------------------------------------------------
// Limits: exactly at the limit succeeds, one more fails with Command Size Limit Exceeded.

#[test]
fn exact_limits_succeed_and_one_more_fails() {
    // MSSRL 8.
    let mut h = copy_host(vec![memns(1, limited(8, 1000, 3))]);
    seed(&mut h, 1, 32);
    let c = copy_cmd(&mut h, 1, 100, 0, &[(0, 0, 8)]);
    assert!(c.ok(), "{c:?}");
    assert_eq!(block(&h, 1, 107), seeded(7));
    let c = copy_cmd(&mut h, 1, 200, 0, &[(0, 0, 8), (0, 8, 9)]);
    assert_eq!((c.sc(), c.dw0), ((1, 0x83), 1));
    assert!(c.status.is_dnr());
    assert_eq!(block(&h, 1, 207), seeded(7), "range 0 written");
    assert!(block(&h, 1, 208).iter().all(|&b| b == 0), "range 1 not");

    // MCL 20 over several ranges.
    let mut h = copy_host(vec![memns(1, limited(16, 20, 7))]);
    seed(&mut h, 1, 32);
    let c = copy_cmd(&mut h, 1, 100, 0, &[(0, 0, 10), (0, 10, 10)]);
    assert!(c.ok(), "{c:?}");
    assert_eq!(block(&h, 1, 119), seeded(19));
    let c = copy_cmd(&mut h, 1, 200, 0, &[(0, 0, 10), (0, 10, 11)]);
    assert_eq!((c.sc(), c.dw0), ((1, 0x83), 0));
    assert!(c.status.is_dnr());
    assert!(block(&h, 1, 200).iter().all(|&b| b == 0), "nothing copied");

    // MSRC 3 (four ranges).
    let mut h = copy_host(vec![memns(1, limited(16, 64, 3))]);
    seed(&mut h, 1, 8);
    let four = [(0, 0, 1), (0, 1, 1), (0, 2, 1), (0, 3, 1)];
    assert!(copy_cmd(&mut h, 1, 100, 0, &four).ok());
    assert_eq!(block(&h, 1, 103), seeded(3));
    let five = [(0, 0, 1), (0, 1, 1), (0, 2, 1), (0, 3, 1), (0, 4, 1)];
    let c = copy_cmd(&mut h, 1, 200, 0, &five);
    assert_eq!((c.sc(), c.dw0), ((1, 0x83), 0));
    assert!(c.status.is_dnr());
    assert!(block(&h, 1, 200).iter().all(|&b| b == 0));

    // The largest values the fields can hold: MSSRL 65535, MSRC 255 (256 ranges).
    let big = NamespaceConfig {
        size: Some(128 << 20),
        mssrl: 65535,
        mcl: 65535 + 255,
        msrc: 255,
        ..Default::default()
    };
    let mut h = copy_host(vec![memns(1, big)]);
    seed(&mut h, 1, 8);
    let mut ranges = vec![(0u32, 0u64, 65535u32)];
    ranges.extend((1..256).map(|i| (0, (i % 8) as u64, 1)));
    let c = copy_cmd(&mut h, 1, 65536, 0, &ranges);
    assert!(c.ok(), "{c:?}");
    assert_eq!(block(&h, 1, 65536 + 3), seeded(3));
    assert_eq!(block(&h, 1, 65536 + 65535 + 254), seeded(255 % 8));
}

// ---------------------------------------------------------------------------------------
// Semantics: list order, overlap, mixed namespaces, failure at range k.

#[test]
fn out_of_order_sources_land_in_list_order() {
    let mut h = copy_host(vec![memns(1, limited(16, 64, 7))]);
    seed(&mut h, 1, 32);
    let c = copy_cmd(
        &mut h,
        1,
        100,
        0,
        &[(0, 20, 2), (0, 3, 1), (0, 10, 3), (0, 3, 1)],
    );
    assert!(c.ok(), "{c:?}");
    for (i, src) in [20, 21, 3, 10, 11, 12, 3].iter().enumerate() {
        assert_eq!(block(&h, 1, 100 + i as u64), seeded(*src), "block {i}");
    }
}

#[test]
fn overlap_copies_original_data_and_ranges_run_in_order() {
    let mut h = copy_host(vec![memns(1, limited(16, 64, 7))]);
    seed(&mut h, 1, 32);
    // Down by 3 blocks, overlapping.
    assert!(copy_cmd(&mut h, 1, 2, 0, &[(0, 5, 10)]).ok());
    for i in 0..10 {
        assert_eq!(block(&h, 1, 2 + i), seeded(5 + i), "down, block {i}");
    }
    // Range 1 reads blocks that range 0 has just written (one after another).
    let mut h = copy_host(vec![memns(1, limited(16, 64, 7))]);
    seed(&mut h, 1, 32);
    assert!(copy_cmd(&mut h, 1, 10, 0, &[(0, 0, 4), (0, 12, 2)]).ok());
    assert_eq!(block(&h, 1, 12), seeded(2));
    assert_eq!(block(&h, 1, 14), seeded(2), "range 1 saw range 0's data");
    assert_eq!(block(&h, 1, 15), seeded(3));
}

#[test]
fn overlap_larger_than_the_bounce_buffer() {
    // 3 MiB ranges moved by 4 KiB up and down: the 1 MiB buffer must go backwards.
    let ns = NamespaceConfig {
        size: Some(16 << 20),
        mssrl: 65535,
        mcl: 1 << 20,
        ..Default::default()
    };
    let mut h = copy_host(vec![memns(1, ns)]);
    let data = pattern(3 << 20, 7);
    let store = h.ctrl.namespace(1).unwrap();
    store.store().write(0, &data).unwrap();
    let nlb = (data.len() / 512) as u32;
    assert!(copy_cmd(&mut h, 1, 8, 0, &[(0, 0, nlb)]).ok());
    assert!(h.store_bytes(1, 4096, data.len()) == data, "moved up");
    assert!(copy_cmd(&mut h, 1, 1, 0, &[(0, 8, nlb)]).ok());
    assert!(h.store_bytes(1, 512, data.len()) == data, "moved down");
}

#[test]
fn format2_mixing_namespaces_reads_each_range_from_its_own() {
    // Ranges from ns A, ns B, ns A into A (QEMU 11.1.3 reads the third from B).
    let mut h = copy_host(vec![
        memns(1, limited(16, 64, 7)),
        memns(2, limited(16, 64, 7)),
    ]);
    seed(&mut h, 1, 16);
    h.ctrl
        .namespace(2)
        .unwrap()
        .store()
        .write(0, &[0xb2; 16 * 512])
        .unwrap();
    set_cdfe(&mut h, 0b0100);
    let c = copy_cmd(&mut h, 1, 100, 2, &[(1, 4, 1), (2, 0, 2), (1, 9, 2)]);
    assert!(c.ok(), "{c:?}");
    assert_eq!(block(&h, 1, 100), seeded(4));
    assert_eq!(block(&h, 1, 101), vec![0xb2; 512]);
    assert_eq!(block(&h, 1, 102), vec![0xb2; 512]);
    assert_eq!(block(&h, 1, 103), seeded(9), "third range from ns A");
    assert_eq!(block(&h, 1, 104), seeded(10));
    // And into B: B, A, B.
    let c = copy_cmd(&mut h, 2, 50, 2, &[(2, 0, 1), (1, 5, 1), (2, 1, 1)]);
    assert!(c.ok(), "{c:?}");
    let b = |lba: u64| h.store_bytes(2, lba * 512, 512);
    assert_eq!(b(50), vec![0xb2; 512]);
    assert_eq!(b(51), seeded(5));
    assert_eq!(b(52), vec![0xb2; 512]);
}

#[test]
fn failure_at_range_k_leaves_earlier_ranges_written_and_later_untouched() {
    let mut h = copy_host(vec![memns(1, limited(16, 64, 7))]);
    seed(&mut h, 1, 32);
    // Range 3 of 5 starts past the end (2048 blocks).
    let c = copy_cmd(
        &mut h,
        1,
        100,
        0,
        &[(0, 1, 2), (0, 5, 1), (0, 7, 3), (0, 4000, 1), (0, 12, 2)],
    );
    assert_eq!((c.sc(), c.dw0), ((0, 0x80), 3));
    assert!(c.status.is_dnr());
    for (i, src) in [1, 2, 5, 7, 8, 9].iter().enumerate() {
        assert_eq!(block(&h, 1, 100 + i as u64), seeded(*src), "block {i}");
    }
    for lba in 106..110 {
        assert!(block(&h, 1, lba).iter().all(|&b| b == 0), "lba {lba}");
    }
}

#[test]
fn source_namespace_ids() {
    let mut h = copy_host(vec![
        memns(1, limited(16, 64, 7)),
        memns(2, limited(16, 64, 7)),
    ]);
    seed(&mut h, 1, 8);
    set_cdfe(&mut h, 0b0100);
    // Not valid: 0, above NN (256): Invalid Namespace or Format.
    for bad in [0u32, 257, 0x8000_0000] {
        let c = copy_cmd(&mut h, 1, 100, 2, &[(1, 0, 1), (bad, 0, 1)]);
        assert_eq!((c.sc(), c.dw0), ((0, 0x0b), 1), "snsid {bad:#x}");
        assert!(c.status.is_dnr());
    }
    // Valid but inactive, or the broadcast value (a Copy source is one namespace):
    // Invalid Field in Command.
    for inactive in [3u32, 256, NSID_ALL] {
        let c = copy_cmd(&mut h, 1, 100, 2, &[(inactive, 0, 1)]);
        assert_eq!((c.sc(), c.dw0), ((0, 0x02), 0), "snsid {inactive}");
        assert!(c.status.is_dnr());
    }
    // The destination's own id works like format 0.
    assert!(copy_cmd(&mut h, 1, 100, 2, &[(1, 6, 1)]).ok());
    assert_eq!(block(&h, 1, 100), seeded(6));
}

// ---------------------------------------------------------------------------------------
// Media failures, FUA, LR, and a long copy next to another queue.

/// A memfd store that can fail reads, writes or flushes, and hold reads at a gate.
#[derive(Debug)]
struct Faulty {
    inner: crate::block::FileStore,
    fail_read: Option<std::ops::Range<u64>>,
    fail_write: Option<std::ops::Range<u64>>,
    fail_flush: bool,
    gate: Option<Arc<Gate>>,
}

#[derive(Debug, Default)]
struct Gate {
    open: Mutex<bool>,
    cv: Condvar,
    waiting: std::sync::atomic::AtomicBool,
}

impl Gate {
    fn pass(&self) {
        self.waiting
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let mut g = self.open.lock().unwrap();
        while !*g {
            g = self.cv.wait(g).unwrap();
        }
    }
    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.cv.notify_all();
    }
}

fn eio() -> std::io::Error {
    std::io::Error::from_raw_os_error(libc::EIO)
}

fn hits(r: &Option<std::ops::Range<u64>>, off: u64, len: usize) -> bool {
    r.as_ref()
        .is_some_and(|r| off < r.end && r.start < off + len as u64)
}

impl Faulty {
    fn new(size: u64) -> Faulty {
        Faulty {
            inner: crate::block::memfd::create("faulty", size).unwrap(),
            fail_read: None,
            fail_write: None,
            fail_flush: false,
            gate: None,
        }
    }
}

impl crate::block::Store for Faulty {
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn read(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        if let Some(g) = &self.gate {
            g.pass();
        }
        if hits(&self.fail_read, offset, buf.len()) {
            return Err(eio());
        }
        self.inner.read(offset, buf)
    }
    fn write(&self, offset: u64, buf: &[u8]) -> std::io::Result<()> {
        if hits(&self.fail_write, offset, buf.len()) {
            return Err(eio());
        }
        self.inner.write(offset, buf)
    }
    fn read_to_slice(
        &self,
        offset: u64,
        slice: &vm_memory::VolatileSlice<'_>,
    ) -> std::io::Result<()> {
        self.inner.read_to_slice(offset, slice)
    }
    fn write_from_slice(
        &self,
        offset: u64,
        slice: &vm_memory::VolatileSlice<'_>,
    ) -> std::io::Result<()> {
        self.inner.write_from_slice(offset, slice)
    }
    fn flush(&self) -> std::io::Result<()> {
        if self.fail_flush {
            return Err(eio());
        }
        self.inner.flush()
    }
    fn punch_hole(&self, offset: u64, len: u64) -> std::io::Result<()> {
        self.inner.punch_hole(offset, len)
    }
    fn write_zeroes(&self, offset: u64, len: u64) -> std::io::Result<()> {
        self.inner.write_zeroes(offset, len)
    }
    fn raw_fd(&self) -> Option<std::os::fd::RawFd> {
        None
    }
    fn copy_range(
        &self,
        dst_offset: u64,
        src: &dyn crate::block::Store,
        src_offset: u64,
        len: u64,
    ) -> Result<(), crate::block::CopyError> {
        crate::block::copy_range_bounce(src, src_offset, self, dst_offset, len)
    }
}

fn faulty_ns(nsid: u32, f: Faulty) -> Namespace {
    let v = crate::block::Volume::new("faulty".into(), Arc::new(f), 512, false).unwrap();
    limited(16, 64, 7).on(nsid, Arc::new(v))
}

#[test]
fn read_and_write_failures_name_the_range() {
    let mut f = Faulty::new(1 << 20);
    f.fail_read = Some(20 * 512..21 * 512);
    f.fail_write = Some(300 * 512..301 * 512);
    let mut h = copy_host(vec![faulty_ns(1, f)]);
    let ns = h.ctrl.namespace(1).unwrap();
    ns.store().write(0, &[7u8; 32 * 512]).unwrap();
    // Reading block 20 fails at range 1: Unrecovered Read Error, range 0 written.
    let c = copy_cmd(&mut h, 1, 100, 0, &[(0, 0, 2), (0, 19, 2), (0, 3, 1)]);
    assert_eq!((c.sc(), c.dw0), ((2, 0x81), 1));
    assert!(c.status.is_dnr());
    assert_eq!(block(&h, 1, 101), vec![7u8; 512]);
    assert!(block(&h, 1, 102).iter().all(|&b| b == 0));
    // Writing block 300 fails at range 2: Write Fault.
    let c = copy_cmd(&mut h, 1, 297, 0, &[(0, 0, 1), (0, 1, 2), (0, 2, 1)]);
    assert_eq!((c.sc(), c.dw0), ((2, 0x80), 2));
    assert!(c.status.is_dnr());
    assert_eq!(block(&h, 1, 299), vec![7u8; 512]);
}

#[test]
fn fua_and_write_through_flush_each_range_and_lr_is_accepted() {
    let mut f = Faulty::new(1 << 20);
    f.fail_flush = true;
    let mut h = copy_host(vec![faulty_ns(1, f), memns(2, limited(16, 64, 7))]);
    h.write_mem(RANGES, &descriptors(0, &[(0, 0, 1), (0, 1, 1)]));
    let sqe = |cdw12: u32, nsid: u32| Sqe {
        opcode: io_op::COPY,
        nsid,
        dptr1: RANGES,
        cdw10: 100,
        cdw12: 1 | cdw12,
        ..Default::default()
    };
    // No FUA, write cache on: no flush, success.
    assert!(h.cmd(1, sqe(0, 1)).ok());
    // LR (bit 31): accepted.
    assert!(h.cmd(1, sqe(1 << 31, 1)).ok());
    // FUA: the flush after range 0 fails: Write Fault, Dword 0 = 0.
    let c = h.cmd(1, sqe(1 << 30, 1));
    assert_eq!((c.sc(), c.dw0), ((2, 0x80), 0));
    // FUA on a healthy namespace: success.
    assert!(h.cmd(1, sqe(1 << 30 | 1 << 31, 2)).ok());
    // Volatile write cache off: every copy is written through (flushed).
    let c = h.admin(Sqe {
        opcode: admin_op::SET_FEATURES,
        cdw10: feat::VOLATILE_WRITE_CACHE as u32,
        cdw11: 0,
        ..Default::default()
    });
    assert_eq!(c.sc(), (0, 0x06), "the faulty namespace cannot flush");
    let c = h.cmd(1, sqe(0, 1));
    assert_eq!((c.sc(), c.dw0), ((2, 0x80), 0));
}

#[test]
fn a_long_copy_does_not_stall_other_queues() {
    let gate = Arc::new(Gate::default());
    let mut f = Faulty::new(1 << 20);
    f.gate = Some(gate.clone());
    let mut h = copy_host(vec![memns(1, limited(16, 64, 7)), faulty_ns(2, f)]);
    h.io_pair(2, 32);
    set_cdfe(&mut h, 0b0100);
    // Queue 1: a copy from ns 2 that blocks inside its first read.
    h.write_mem(RANGES, &descriptors(2, &[(2, 0, 4)]));
    h.submit(
        1,
        Sqe {
            opcode: io_op::COPY,
            nsid: 1,
            dptr1: RANGES,
            cdw10: 100,
            cdw12: 2 << 8,
            ..Default::default()
        },
    );
    let start = Instant::now();
    while !gate.waiting.load(std::sync::atomic::Ordering::SeqCst) {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "copy never started"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    // Queue 2 keeps working meanwhile.
    let c = h.cmd(2, rw(io_op::READ, 1, 0, 1, DATA, 0));
    assert!(c.ok(), "{c:?}");
    assert!(
        h.try_reap(1, Duration::from_millis(20)).is_none(),
        "copy still held"
    );
    gate.open();
    let c = h.reap(1);
    assert!(c.ok(), "{c:?}");
}

#[test]
fn copies_between_a_file_namespace_and_a_memory_namespace() {
    let dir = std::env::temp_dir().join(format!("vnvme-copy-file-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file_cfg = NamespaceConfig {
        backing: Backing::File(dir.join("a.img")),
        ..limited(16, 64, 7)
    };
    // The same file opened twice: two namespaces whose blocks are the same bytes.
    let file_ns = memns(1, file_cfg.clone());
    let twin = memns(3, file_cfg.clone());
    let mut h = copy_host(vec![file_ns, memns(2, limited(16, 64, 7)), twin]);
    seed(&mut h, 2, 16);
    set_cdfe(&mut h, 0b0100);
    // memfd -> file, then file -> memfd.
    assert!(copy_cmd(&mut h, 1, 10, 2, &[(2, 0, 8)]).ok());
    assert_eq!(block(&h, 1, 17), seeded(7));
    assert!(copy_cmd(&mut h, 2, 100, 2, &[(1, 10, 8)]).ok());
    assert_eq!(block(&h, 2, 107), seeded(7));
    // From the twin onto the file, overlapping by 2 blocks: memmove semantics.
    assert!(copy_cmd(&mut h, 1, 12, 2, &[(3, 10, 8)]).ok());
    for i in 0..8 {
        assert_eq!(block(&h, 1, 12 + i), seeded(i), "block {i}");
    }
    let on_disk = std::fs::read(dir.join("a.img")).unwrap();
    assert_eq!(&on_disk[19 * 512..20 * 512], &seeded(7)[..]);
    std::fs::remove_dir_all(&dir).unwrap();
}
