//! Register, enable/reset and admin command tests.

use std::time::Duration;

use super::*;
use crate::nvme::aer::AerState;

pub(crate) fn feat_sqe(opcode: u8, fid: u8, cdw11: u32) -> Sqe {
    Sqe {
        opcode,
        cdw10: fid as u32,
        cdw11,
        dptr1: BUF,
        ..Default::default()
    }
}

pub(crate) fn get_log(
    h: &mut Host,
    lid: u8,
    nsid: u32,
    len: u32,
    lpo: u64,
    rae: bool,
) -> (Cqe, Vec<u8>) {
    h.fill(BUF, 4096, 0xee);
    let numd = len / 4 - 1;
    let c = h.admin(Sqe {
        opcode: admin_op::GET_LOG_PAGE,
        nsid,
        dptr1: BUF,
        cdw10: lid as u32 | ((rae as u32) << 15) | ((numd & 0xffff) << 16),
        cdw11: numd >> 16,
        cdw12: lpo as u32,
        cdw13: (lpo >> 32) as u32,
        ..Default::default()
    });
    (c, h.read_mem(BUF, len as usize))
}

#[test]
fn registers_and_enable() {
    let cfg = ControllerConfig {
        mqes: 256,
        ..Default::default()
    };
    let h = Host::new(cfg, vec![memns(1, ns_cfg(1 << 20))]);
    let cap = h.r64(reg::CAP);
    assert_eq!(cap & 0xffff, 255);
    assert_eq!((cap >> 16) & 1, 1);
    assert_eq!((cap >> 37) & 1, 1);
    assert_eq!(h.r32(reg::VS), 0x0002_0000);
    assert_eq!(h.r32(reg::CSTS) & csts::RDY, 1);
    assert_eq!(h.r64(reg::ASQ), 0x10000);
    assert_eq!(h.ctrl.bar0_size(), 0x4000);
    assert_eq!(h.ctrl.msix_vectors(), 65);
    // INTMS sets bits, INTMC clears them; both read the mask.
    h.w32(reg::INTMS, 0b101);
    h.w32(reg::INTMC, 0b001);
    assert_eq!(h.r32(reg::INTMS), 0b100);
    assert_eq!(h.r32(reg::INTMC), 0b100);
    // Misaligned and odd-sized accesses are harmless.
    h.ctrl.mmio_write(reg::CC + 1, &[0, 0, 0, 0]);
    h.ctrl.mmio_write(reg::CC, &[0]);
    h.ctrl.mmio_write(0x1001, &[1, 0, 0, 0]);
    h.ctrl.mmio_write(0x3ffc, &[1, 0, 0, 0]);
    h.ctrl.mmio_write(u64::MAX, &[1; 3]);
    let mut odd = [0u8; 7];
    h.ctrl.mmio_read(0x1b, &mut odd);
    h.ctrl.mmio_read(u64::MAX, &mut odd);
    assert_eq!(h.r32(reg::CSTS) & csts::RDY, 1, "still enabled");
    // CSTS is read-only.
    h.w32(reg::CSTS, 0);
    assert_eq!(h.r32(reg::CSTS) & csts::RDY, 1);
}

#[test]
fn enable_validates_admin_queue_registers() {
    let mut h = Host::simple();
    h.disable();
    h.ctrl.mmio_write(reg::ASQ, &0x10800u64.to_le_bytes());
    h.w32(reg::CC, 1 | (6 << 16) | (4 << 20));
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(
        h.r32(reg::CSTS) & csts::RDY,
        0,
        "misaligned ASQ must not enable"
    );
    h.w32(reg::CC, 0);
    h.ctrl.mmio_write(reg::ASQ, &0x10000u64.to_le_bytes());
    h.w32(reg::AQA, 0);
    h.w32(reg::CC, 1);
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(
        h.r32(reg::CSTS) & csts::RDY,
        0,
        "1-entry admin queues are invalid"
    );
    h.w32(reg::CC, 0);
    h.w32(reg::CC, 1 | (1 << 7));
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(
        h.r32(reg::CSTS) & csts::RDY,
        0,
        "MPS other than 4 KiB is invalid"
    );
    h.w32(reg::CC, 0);
    h.enable();
    assert!(h.identify(cns::CONTROLLER, 0, 0).0.ok());
}

#[test]
fn disable_resets_queues_but_keeps_namespaces() {
    let mut h = Host::simple();
    h.io_pair(1, 16);
    h.write_mem(0x400000, &pattern(512, 3));
    assert!(h.cmd(1, rw(io_op::WRITE, 1, 7, 1, 0x400000, 0)).ok());
    h.disable();
    assert_eq!(h.r32(reg::CSTS), 0);
    // A doorbell for the deleted queue does nothing (and does not panic).
    h.w32(0x1008, 1);
    h.enable();
    // Queue 1 is free again: the old queues were deleted.
    h.io_pair(1, 16);
    h.fill(0x500000, 512, 0);
    assert!(h.cmd(1, rw(io_op::READ, 1, 7, 1, 0x500000, 0)).ok());
    assert_eq!(h.read_mem(0x500000, 512), pattern(512, 3));
}

#[test]
fn function_reset_and_reconnect() {
    let mut h = Host::simple();
    h.io_pair(1, 8);
    h.ctrl.reset();
    assert_eq!(h.r32(reg::CSTS), 0);
    assert_eq!(h.r32(reg::AQA), 0, "function reset clears AQA");
    assert_eq!(h.r32(reg::CC), 0);
    h.enable();
    h.io_pair(1, 8);
    h.ctrl.disconnect();
    assert_eq!(h.r32(reg::CSTS), 0);
    h.w32(reg::AQA, 0x001f_001f);
    h.w32(reg::CC, 1);
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(h.r32(reg::CSTS) & csts::RDY, 0, "no client, no enable");
    h.ctrl.connect(h.mem.clone(), h.irq.clone());
    h.enable();
    assert!(h.identify(cns::CONTROLLER, 0, 0).0.ok());
}

#[test]
fn shutdown_flushes_and_reports_complete() {
    let h = Host::simple();
    h.w32(reg::CC, 1 | (1 << 14) | (6 << 16) | (4 << 20));
    assert!(h.wait_csts(csts::SHST_MASK, csts::SHST_COMPLETE));
    h.w32(reg::CC, 1 | (6 << 16) | (4 << 20));
    assert!(h.wait_csts(csts::SHST_MASK, 0));
}

#[test]
fn identify_controller_fields() {
    let cfg = ControllerConfig {
        serial: "SER123".into(),
        mdts: 5,
        vendor_id: 0x1234,
        subsystem_vendor_id: 0x5678,
        ..Default::default()
    };
    let mut h = Host::new(cfg, vec![memns(1, ns_cfg(1 << 20))]);
    let (c, d) = h.identify(cns::CONTROLLER, 0, 0);
    assert!(c.ok());
    assert_eq!(&d[0..2], &0x1234u16.to_le_bytes());
    assert_eq!(&d[2..4], &0x5678u16.to_le_bytes());
    assert_eq!(&d[4..24], b"SER123              ");
    assert_eq!(&d[24..29], b"vnvme");
    assert_eq!(d[29], b' ');
    assert_eq!(d[id_ctrl::MDTS], 5);
    assert_eq!(get_u32(&d, id_ctrl::VER), 0x0002_0000);
    assert_eq!(d[id_ctrl::SQES], 0x66);
    assert_eq!(d[id_ctrl::CQES], 0x44);
    assert_eq!(get_u32(&d, id_ctrl::NN), 256);
    let oncs = u16::from_le_bytes([d[id_ctrl::ONCS], d[id_ctrl::ONCS + 1]]);
    assert_eq!(
        oncs & 0x8f,
        0x8f,
        "Compare, Write Uncorrectable, DSM, Write Zeroes, Verify"
    );
    assert_eq!(oncs & id_ctrl::ONCS_COPY, id_ctrl::ONCS_COPY);
    assert_eq!(
        u16::from_le_bytes([d[id_ctrl::OCFS], d[id_ctrl::OCFS + 1]]),
        0xf
    );
    let oacs = u16::from_le_bytes([d[id_ctrl::OACS], d[id_ctrl::OACS + 1]]);
    assert_eq!(
        oacs,
        id_ctrl::OACS_DBBUF
            | id_ctrl::OACS_FORMAT
            | id_ctrl::OACS_NS_MGMT
            | id_ctrl::OACS_GET_LBA_STATUS
    );
    assert_eq!(d[id_ctrl::VWC], 0x07);
    assert_eq!(get_u32(&d, id_ctrl::SGLS) & 3, 1);
    assert_eq!(d[id_ctrl::AERL], crate::nvme::settings::AERL);
    assert_eq!(get_u32(&d, id_ctrl::OAES), 1 << 8);
    assert!(d[id_ctrl::SUBNQN..].starts_with(b"nqn."));
}

#[test]
fn identify_namespace_fields() {
    let cfg = NamespaceConfig {
        size: Some(8 << 20),
        logical_block_size: 4096,
        mssrl: 8,
        mcl: 64,
        msrc: 3,
        readonly: true,
        nguid: Some([0x11; 16]),
        eui64: Some([0x22; 8]),
        ..Default::default()
    };
    let mut h = Host::new(ControllerConfig::default(), vec![memns(2, cfg)]);
    let (c, d) = h.identify(cns::NAMESPACE, 2, 0);
    assert!(c.ok());
    assert_eq!(get_u64(&d, id_ns::NSZE), 2048);
    assert_eq!(get_u64(&d, id_ns::NCAP), 2048);
    assert_eq!(get_u64(&d, id_ns::NUSE), 2048);
    assert_eq!(d[id_ns::NLBAF], 7, "the eight default formats");
    assert_eq!(d[id_ns::FLBAS], 4, "format 4 is 4096+0");
    assert_eq!(get_u32(&d, id_ns::LBAF0 + 16), 12 << 16);
    assert_eq!(d[id_ns::DLFEAT], 0x09);
    assert_eq!(u16::from_le_bytes([d[74], d[75]]), 8);
    assert_eq!(get_u32(&d, 76), 64);
    assert_eq!(d[80], 3);
    assert_eq!(d[id_ns::NSATTR], 1);
    assert_eq!(&d[104..120], &[0x11; 16]);
    assert_eq!(&d[120..128], &[0x22; 8]);
    assert_eq!(
        (get_u32(&d, id_ns::LBAF0) >> 16) & 0xff,
        9,
        "format 0 is 512+0"
    );
    // Allocated namespace (CNS 0x11) is the same structure.
    assert_eq!(h.identify(cns::ALLOCATED_NAMESPACE, 2, 0).1, d);
    // Inactive but valid nsid: all zeroes. nsid 0 or > NN: Invalid Namespace.
    let (c, d) = h.identify(cns::NAMESPACE, 3, 0);
    assert!(c.ok());
    assert!(d.iter().all(|&b| b == 0));
    let (c, _) = h.identify(cns::NAMESPACE, 0, 0);
    assert_eq!(c.sc(), (0, 0x0b));
    assert!(c.status.is_dnr());
    assert_eq!(h.identify(cns::NAMESPACE, 257, 0).0.sc(), (0, 0x0b));
    let (c, d) = h.identify(cns::NAMESPACE, NSID_ALL, 0);
    assert!(c.ok());
    assert_eq!(get_u64(&d, id_ns::NSZE), 0);
    assert_eq!(
        d[id_ns::NLBAF],
        7,
        "the formats a created namespace may use"
    );
    assert_eq!((get_u32(&d, id_ns::LBAF0) >> 16) & 0xff, 9);
}

#[test]
fn identify_lists_descriptors_and_cs_variants() {
    let ns5 = NamespaceConfig {
        size: Some(1 << 20),
        eui64: Some([1, 2, 3, 4, 5, 6, 7, 8]),
        uuid: Some([0xab; 16]),
        ..Default::default()
    };
    let mut h = Host::new(
        ControllerConfig::default(),
        vec![memns(1, ns_cfg(1 << 20)), memns(5, ns5)],
    );
    for cns_v in [cns::ACTIVE_NS_LIST, cns::ALLOCATED_NS_LIST] {
        let (c, d) = h.identify(cns_v, 0, 0);
        assert!(c.ok());
        assert_eq!(get_u32(&d, 0), 1);
        assert_eq!(get_u32(&d, 4), 5);
        assert_eq!(get_u32(&d, 8), 0);
        let (_, d) = h.identify(cns_v, 1, 0);
        assert_eq!(get_u32(&d, 0), 5);
        assert_eq!(get_u32(&d, 4), 0);
    }
    assert_eq!(
        h.identify(cns::ACTIVE_NS_LIST, NSID_ALL, 0).0.sc(),
        (0, 0x0b)
    );
    let (c, d) = h.identify(cns::CS_ACTIVE_NS_LIST, 0, CSI_NVM);
    assert!(c.ok());
    assert_eq!((get_u32(&d, 0), get_u32(&d, 4)), (1, 5));
    // CSI 2 (zoned): none of these namespaces is zoned; CSI 1 is not a command set here.
    let (c, d) = h.identify(cns::CS_ACTIVE_NS_LIST, 0, 2);
    assert!(c.ok());
    assert_eq!(get_u32(&d, 0), 0);
    assert_eq!(h.identify(cns::CS_ACTIVE_NS_LIST, 0, 1).0.sc(), (0, 0x02));

    // Descriptors of ns 5: EUI64, UUID, CSI (no NGUID configured).
    let (c, d) = h.identify(cns::NS_DESCRIPTORS, 5, 0);
    assert!(c.ok());
    assert_eq!(&d[0..4], &[nidt::EUI64, 8, 0, 0]);
    assert_eq!(&d[4..12], &[1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(&d[12..16], &[nidt::UUID, 16, 0, 0]);
    assert_eq!(&d[16..32], &[0xab; 16]);
    assert_eq!(&d[32..37], &[nidt::CSI, 1, 0, 0, CSI_NVM]);
    assert!(d[37..].iter().all(|&b| b == 0));
    // ns 1 gets a derived UUID.
    let (_, d) = h.identify(cns::NS_DESCRIPTORS, 1, 0);
    assert_eq!(d[0], nidt::UUID);
    assert_ne!(&d[4..20], &[0u8; 16]);
    assert_eq!(h.identify(cns::NS_DESCRIPTORS, 2, 0).0.sc(), (0, 0x0b));

    let (c, d) = h.identify(cns::CS_NAMESPACE, 1, CSI_NVM);
    assert!(c.ok() && d.iter().all(|&b| b == 0));
    assert_eq!(h.identify(cns::CS_NAMESPACE, 1, 2).0.sc(), (0, 0x02));
    let (c, d) = h.identify(cns::CS_CONTROLLER, 0, CSI_NVM);
    assert!(c.ok() && d.iter().all(|&b| b == 0));
    // The zoned controller structure: ZASL 0 (MDTS) with no zoned namespace.
    let (c, d) = h.identify(cns::CS_CONTROLLER, 0, 2);
    assert!(c.ok() && d[0] == 0);
    assert_eq!(h.identify(cns::CS_CONTROLLER, 0, 1).0.sc(), (0, 0x02));
    // I/O Command Set data structure: one combination, NVM and zoned.
    let (c, d) = h.identify(cns::IO_COMMAND_SET, 0, 0);
    assert!(c.ok());
    assert_eq!(get_u64(&d, 0), 0b101);
    assert!(d[8..].iter().all(|&b| b == 0));
    let (c, d) = h.identify(cns::CS_INDEPENDENT_NAMESPACE, 5, 0);
    assert!(c.ok());
    assert_eq!(d[13], 1, "namespace ready");
    // Unsupported CNS values are Invalid Field with DNR.
    for cns_v in [0x04u8, 0x14, 0x16, 0xff] {
        let (c, _) = h.identify(cns_v, 1, 0);
        assert_eq!(c.sc(), (0, 0x02), "cns {cns_v:#x}");
        assert!(c.status.is_dnr());
    }
}

#[test]
fn log_pages() {
    let mut h = Host::simple();
    h.io_pair(1, 8);
    h.write_mem(0x400000, &pattern(4096, 1));
    assert!(h.cmd(1, rw(io_op::WRITE, 1, 0, 8, 0x400000, 0)).ok());
    assert!(h.cmd(1, rw(io_op::READ, 1, 0, 8, 0x400000, 0)).ok());
    assert!(h.cmd(1, rw(io_op::READ, 1, 0, 8, 0x400000, 0)).ok());
    let (c, d) = get_log(&mut h, log::SMART, NSID_ALL, 512, 0, false);
    assert!(c.ok());
    assert_eq!(d[0], 0, "no critical warning");
    assert_eq!(u16::from_le_bytes([d[1], d[2]]), 323);
    assert_eq!(d[3], 100);
    assert_eq!(get_u64(&d, 32), 1, "data units read (rounded up)");
    assert_eq!(get_u64(&d, 48), 1);
    assert_eq!(get_u64(&d, 64), 2, "host read commands");
    assert_eq!(get_u64(&d, 80), 1, "host write commands");

    let (c, d) = get_log(&mut h, log::FIRMWARE_SLOT, 0, 512, 0, false);
    assert!(c.ok());
    assert_eq!(d[0], 1);
    assert_eq!(&d[8..13], env!("CARGO_PKG_VERSION").as_bytes());

    let (c, d) = get_log(&mut h, log::COMMANDS_EFFECTS, 0, 4096, 0, false);
    assert!(c.ok());
    assert_eq!(get_u32(&d, admin_op::IDENTIFY as usize * 4), 1);
    assert_eq!(get_u32(&d, 0x7c * 4), 1);
    assert_eq!(get_u32(&d, 0x03 * 4), 0, "unsupported admin opcode");
    assert_eq!(get_u32(&d, 1024 + io_op::WRITE as usize * 4), 3);
    assert_eq!(get_u32(&d, 1024 + io_op::READ as usize * 4), 1);
    assert_eq!(get_u32(&d, 1024 + io_op::COPY as usize * 4), 3);

    let (c, d) = get_log(&mut h, log::ERROR_INFO, 0, 64, 0, false);
    assert!(c.ok());
    assert!(d.iter().all(|&b| b == 0));

    // Offset into the effects log: the I/O part starts at byte 1024.
    let (c, d) = get_log(&mut h, log::COMMANDS_EFFECTS, 0, 16, 1024, false);
    assert!(c.ok());
    assert_eq!(get_u32(&d, 4 * io_op::WRITE as usize), 3);
    assert_eq!(
        get_log(&mut h, log::SMART, 0, 16, 1024, false).0.sc(),
        (0, 0x02)
    );
    assert_eq!(
        get_log(&mut h, log::SMART, 0, 16, 2, false).0.sc(),
        (0, 0x02)
    );
    let (c, _) = get_log(&mut h, 0x70, 0, 16, 0, false);
    assert_eq!(c.sc(), (1, 0x09));
    assert!(c.status.is_dnr());
}

#[test]
fn features() {
    let mut h = Host::simple();
    let get =
        |h: &mut Host, fid: u8, cdw11: u32| h.admin(feat_sqe(admin_op::GET_FEATURES, fid, cdw11));
    let c = h.admin(feat_sqe(
        admin_op::SET_FEATURES,
        feat::NUMBER_OF_QUEUES,
        0x0003_0003,
    ));
    assert!(c.ok());
    assert_eq!(c.dw0, 63 | (63 << 16));
    assert_eq!(get(&mut h, feat::NUMBER_OF_QUEUES, 0).dw0, 63 | (63 << 16));
    let c = h.admin(feat_sqe(
        admin_op::SET_FEATURES,
        feat::NUMBER_OF_QUEUES,
        0xffff,
    ));
    assert_eq!(c.sc(), (0, 0x02));

    assert_eq!(get(&mut h, feat::VOLATILE_WRITE_CACHE, 0).dw0, 1);
    assert!(h
        .admin(feat_sqe(
            admin_op::SET_FEATURES,
            feat::VOLATILE_WRITE_CACHE,
            0
        ))
        .ok());
    assert_eq!(get(&mut h, feat::VOLATILE_WRITE_CACHE, 0).dw0, 0);
    // Default (SEL=1) is still enabled; capabilities (SEL=3) say changeable.
    let mut s = feat_sqe(admin_op::GET_FEATURES, feat::VOLATILE_WRITE_CACHE, 0);
    s.cdw10 |= 1 << 8;
    assert_eq!(h.admin(s).dw0, 1);
    s.cdw10 = feat::VOLATILE_WRITE_CACHE as u32 | (3 << 8);
    assert_eq!(h.admin(s).dw0, 1 << 2);
    s.cdw10 = feat::VOLATILE_WRITE_CACHE as u32 | (5 << 8);
    assert_eq!(h.admin(s).sc(), (0, 0x02));

    assert!(h
        .admin(feat_sqe(
            admin_op::SET_FEATURES,
            feat::ARBITRATION,
            0x0102_0304
        ))
        .ok());
    assert_eq!(get(&mut h, feat::ARBITRATION, 0).dw0, 0x0102_0304);
    assert_eq!(
        h.admin(feat_sqe(admin_op::SET_FEATURES, feat::POWER_MANAGEMENT, 1))
            .sc(),
        (0, 0x02)
    );
    assert!(h
        .admin(feat_sqe(admin_op::SET_FEATURES, feat::POWER_MANAGEMENT, 0))
        .ok());
    assert!(h
        .admin(feat_sqe(admin_op::SET_FEATURES, feat::ERROR_RECOVERY, 10))
        .ok());
    assert_eq!(get(&mut h, feat::ERROR_RECOVERY, 0).dw0, 10);
    assert_eq!(
        h.admin(feat_sqe(
            admin_op::SET_FEATURES,
            feat::ERROR_RECOVERY,
            1 << 16
        ))
        .sc(),
        (0, 0x02)
    );
    assert!(h
        .admin(feat_sqe(
            admin_op::SET_FEATURES,
            feat::INTERRUPT_COALESCING,
            0x0a05
        ))
        .ok());
    assert_eq!(get(&mut h, feat::INTERRUPT_COALESCING, 0).dw0, 0x0a05);
    assert!(h
        .admin(feat_sqe(
            admin_op::SET_FEATURES,
            feat::INTERRUPT_VECTOR_CONFIG,
            3 | (1 << 16)
        ))
        .ok());
    assert_eq!(
        get(&mut h, feat::INTERRUPT_VECTOR_CONFIG, 3).dw0,
        3 | (1 << 16)
    );
    assert_eq!(
        get(&mut h, feat::INTERRUPT_VECTOR_CONFIG, 65).sc(),
        (0, 0x02)
    );
    // Write Atomicity Normal: DN (bit 0) kept, other bits ignored.
    assert_eq!(get(&mut h, feat::WRITE_ATOMICITY, 0).dw0, 0);
    assert!(h
        .admin(feat_sqe(
            admin_op::SET_FEATURES,
            feat::WRITE_ATOMICITY,
            0xffff_ffff
        ))
        .ok());
    assert_eq!(get(&mut h, feat::WRITE_ATOMICITY, 0).dw0, 1);
    assert!(h
        .admin(feat_sqe(
            admin_op::SET_FEATURES,
            feat::ASYNC_EVENT_CONFIG,
            0x100
        ))
        .ok());
    assert_eq!(get(&mut h, feat::ASYNC_EVENT_CONFIG, 0).dw0, 0x100);

    // Temperature threshold: an over-temperature threshold below the composite
    // temperature raises the SMART critical warning.
    assert_eq!(get(&mut h, feat::TEMPERATURE_THRESHOLD, 0).dw0, 343);
    assert!(h
        .admin(feat_sqe(
            admin_op::SET_FEATURES,
            feat::TEMPERATURE_THRESHOLD,
            300
        ))
        .ok());
    assert_eq!(get(&mut h, feat::TEMPERATURE_THRESHOLD, 0).dw0, 300);
    assert_eq!(get(&mut h, feat::TEMPERATURE_THRESHOLD, 1 << 20).dw0, 0);
    assert_eq!(
        h.admin(feat_sqe(
            admin_op::SET_FEATURES,
            feat::TEMPERATURE_THRESHOLD,
            300 | (1 << 16)
        ))
        .sc(),
        (0, 0x02)
    );
    let (_, d) = get_log(&mut h, log::SMART, NSID_ALL, 512, 0, false);
    assert_eq!(d[0], 2);

    // Timestamp: set 1_000_000 ms, read back at least that, origin "set by host".
    h.write_mem(BUF, &1_000_000u64.to_le_bytes());
    assert!(h
        .admin(feat_sqe(admin_op::SET_FEATURES, feat::TIMESTAMP, 0))
        .ok());
    h.fill(BUF, 8, 0);
    assert!(get(&mut h, feat::TIMESTAMP, 0).ok());
    let b = h.read_mem(BUF, 8);
    let mut ts = [0u8; 8];
    ts[..6].copy_from_slice(&b[..6]);
    let ts = u64::from_le_bytes(ts);
    assert!((1_000_000..1_010_000).contains(&ts), "{ts}");
    assert_eq!((b[6] >> 1) & 7, 1);

    // Host Behavior Support: 512 bytes kept, CDFE visible to the Copy command.
    let mut hbs = vec![0u8; 512];
    hbs[4] = 0b0100;
    hbs[100] = 9;
    h.write_mem(BUF, &hbs);
    assert!(h
        .admin(feat_sqe(
            admin_op::SET_FEATURES,
            feat::HOST_BEHAVIOR_SUPPORT,
            0
        ))
        .ok());
    assert_eq!(h.ctrl.copy_formats_enabled(), 0b0100);
    h.fill(BUF, 512, 0xff);
    assert!(get(&mut h, feat::HOST_BEHAVIOR_SUPPORT, 0).ok());
    assert_eq!(h.read_mem(BUF, 512), hbs);

    // Saving is not supported; unknown features are Invalid Field.
    let mut s = feat_sqe(admin_op::SET_FEATURES, feat::ARBITRATION, 0);
    s.cdw10 |= 1 << 31;
    let c = h.admin(s);
    assert_eq!(c.sc(), (1, 0x0d));
    assert!(c.status.is_dnr());
    assert_eq!(get(&mut h, 0x03, 0).sc(), (0, 0x02));
    assert_eq!(
        h.admin(feat_sqe(admin_op::SET_FEATURES, 0x7f, 0)).sc(),
        (0, 0x02)
    );
}

#[test]
fn queue_creation_and_deletion_errors() {
    let cfg = ControllerConfig {
        max_ioqpairs: 4,
        mqes: 64,
        ..Default::default()
    };
    let mut h = Host::new(cfg, vec![memns(1, ns_cfg(1 << 20))]);
    let base = 0x300000;
    let check = |c: Cqe, sct: u8, sc: u8| {
        assert_eq!(c.sc(), (sct, sc));
        assert!(c.status.is_dnr(), "errors carry DNR");
    };
    check(h.create_cq(0, 8, base, 0, true), 1, 0x01);
    check(h.create_cq(5, 8, base, 0, true), 1, 0x01);
    check(h.create_cq(1, 1, base, 0, true), 1, 0x02);
    check(h.create_cq(1, 65, base, 0, true), 1, 0x02);
    check(h.create_cq(1, 8, base, 5, true), 1, 0x08);
    check(h.create_cq(1, 8, base + 0x800, 0, true), 0, 0x13);
    let c = h.admin(Sqe {
        opcode: admin_op::CREATE_IO_CQ,
        dptr1: base,
        cdw10: 1 | (7 << 16),
        cdw11: 2, // PC = 0
        ..Default::default()
    });
    check(c, 0, 0x02);
    assert!(h.create_cq(1, 64, base, 4, true).ok());
    check(h.create_cq(1, 8, base, 0, true), 1, 0x01);
    // SQ on a missing CQ: Completion Queue Invalid.
    check(h.create_sq(1, 8, base + 0x10000, 2), 1, 0x00);
    check(h.create_sq(1, 8, base + 0x10000, 0), 1, 0x00);
    check(h.create_sq(0, 8, base + 0x10000, 1), 1, 0x01);
    check(h.create_sq(5, 8, base + 0x10000, 1), 1, 0x01);
    check(h.create_sq(1, 65, base + 0x10000, 1), 1, 0x02);
    check(h.create_sq(1, 8, base + 0x10010, 1), 0, 0x13);
    let c = h.admin(Sqe {
        opcode: admin_op::CREATE_IO_SQ,
        dptr1: base + 0x10000,
        cdw10: 1 | (7 << 16),
        cdw11: 1 << 16, // PC = 0
        ..Default::default()
    });
    check(c, 0, 0x02);
    assert!(h.create_sq(1, 8, base + 0x10000, 1).ok());
    assert!(h.create_sq(2, 8, base + 0x20000, 1).ok());
    check(h.create_sq(2, 8, base + 0x20000, 1), 1, 0x01);
    // A CQ with SQs cannot be deleted.
    let del = |h: &mut Host, op: u8, qid: u16| {
        h.admin(Sqe {
            opcode: op,
            cdw10: qid as u32,
            ..Default::default()
        })
    };
    check(del(&mut h, admin_op::DELETE_IO_CQ, 1), 1, 0x0c);
    check(del(&mut h, admin_op::DELETE_IO_SQ, 3), 1, 0x01);
    check(del(&mut h, admin_op::DELETE_IO_SQ, 0), 1, 0x01);
    check(del(&mut h, admin_op::DELETE_IO_CQ, 0), 1, 0x01);
    assert!(del(&mut h, admin_op::DELETE_IO_SQ, 1).ok());
    h.forget_sq(1);
    check(del(&mut h, admin_op::DELETE_IO_CQ, 1), 1, 0x0c);
    assert!(del(&mut h, admin_op::DELETE_IO_SQ, 2).ok());
    h.forget_sq(2);
    assert!(del(&mut h, admin_op::DELETE_IO_CQ, 1).ok());
    h.forget_cq(1);
    check(del(&mut h, admin_op::DELETE_IO_CQ, 1), 1, 0x01);
    // The ids are free again.
    h.io_pair(1, 8);
    assert!(h.cmd(1, rw(io_op::FLUSH, 1, 0, 1, 0, 0)).ok());
}

#[test]
fn abort_keep_alive_unknown_opcode() {
    let mut h = Host::simple();
    let c = h.admin(Sqe {
        opcode: admin_op::ABORT,
        cdw10: 5,
        ..Default::default()
    });
    assert!(c.ok());
    assert_eq!(c.dw0 & 1, 1, "not aborted");
    assert!(h
        .admin(Sqe {
            opcode: admin_op::KEEP_ALIVE,
            ..Default::default()
        })
        .ok());
    let c = h.admin(Sqe {
        opcode: 0xc5,
        ..Default::default()
    });
    assert_eq!(c.sc(), (0, 0x01));
    assert!(c.status.is_dnr());
}

#[test]
fn async_events_namespace_changed() {
    let mut h = Host::new(
        ControllerConfig::default(),
        vec![memns(1, ns_cfg(1 << 20)), memns(2, ns_cfg(1 << 20))],
    );
    let aer = Sqe {
        opcode: admin_op::ASYNC_EVENT_REQUEST,
        ..Default::default()
    };
    // Not enabled: recorded in the log, but no event.
    let cid = h.submit(0, aer);
    h.ctrl.notify_namespace_changed(2);
    assert!(
        h.try_reap(0, Duration::from_millis(100)).is_none(),
        "AER is held"
    );
    let (c, d) = get_log(&mut h, log::CHANGED_NS_LIST, NSID_ALL, 4096, 0, false);
    assert!(c.ok());
    assert_eq!((get_u32(&d, 0), get_u32(&d, 4)), (2, 0));
    // Enable Namespace Attribute Notices: the held request completes.
    assert!(h
        .admin(feat_sqe(
            admin_op::SET_FEATURES,
            feat::ASYNC_EVENT_CONFIG,
            1 << 8
        ))
        .ok());
    h.ctrl.notify_namespace_changed(1);
    let c = h.reap(0);
    assert_eq!(c.cid, cid);
    assert!(c.ok());
    assert_eq!(c.dw0, AerState::NS_ATTR_CHANGED_DW0);
    assert_eq!(c.dw0, 0x0004_0002);
    // Masked until the log is read: a second change does not complete a new request.
    let cid2 = h.submit(0, aer);
    h.ctrl.notify_namespace_changed(2);
    assert!(h.try_reap(0, Duration::from_millis(100)).is_none());
    // Read with RAE: stays masked, list kept.
    let (_, d) = get_log(&mut h, log::CHANGED_NS_LIST, 0, 4096, 0, true);
    assert_eq!((get_u32(&d, 0), get_u32(&d, 4)), (1, 2));
    h.ctrl.notify_namespace_changed(1);
    assert!(h.try_reap(0, Duration::from_millis(100)).is_none());
    // Read without RAE: cleared and unmasked; the next change is reported.
    let (_, d) = get_log(&mut h, log::CHANGED_NS_LIST, 0, 4096, 0, false);
    assert_eq!((get_u32(&d, 0), get_u32(&d, 4)), (1, 2));
    let (_, d) = get_log(&mut h, log::CHANGED_NS_LIST, 0, 4096, 0, false);
    assert_eq!(get_u32(&d, 0), 0);
    h.ctrl.notify_namespace_changed(2);
    let c = h.reap(0);
    assert_eq!((c.cid, c.dw0), (cid2, 0x0004_0002));
    // An event with no request outstanding waits for the next request.
    get_log(&mut h, log::CHANGED_NS_LIST, 0, 4096, 0, false);
    h.ctrl.notify_namespace_changed(1);
    let c = h.cmd(0, aer);
    assert_eq!(c.dw0, 0x0004_0002);
}

#[test]
fn async_event_request_limit() {
    let mut h = Host::simple();
    let aer = Sqe {
        opcode: admin_op::ASYNC_EVENT_REQUEST,
        ..Default::default()
    };
    for _ in 0..=crate::nvme::settings::AERL {
        h.submit(0, aer);
    }
    let c = h.cmd(0, aer);
    assert_eq!(c.sc(), (1, 0x05));
    assert!(c.status.is_dnr());
    // Reset drops held requests: after re-enable four more are accepted.
    h.disable();
    h.enable();
    for _ in 0..=crate::nvme::settings::AERL {
        h.submit(0, aer);
    }
    assert!(h.try_reap(0, Duration::from_millis(100)).is_none());
}

#[test]
fn doorbell_buffer_config_validation() {
    let mut h = Host::simple();
    let c = h.admin(Sqe {
        opcode: admin_op::DOORBELL_BUFFER_CONFIG,
        dptr1: 0x600100,
        dptr2: 0x601000,
        ..Default::default()
    });
    assert_eq!(c.sc(), (0, 0x02));
    let c = h.admin(Sqe {
        opcode: admin_op::DOORBELL_BUFFER_CONFIG,
        dptr1: 0x600000,
        dptr2: 0,
        ..Default::default()
    });
    assert_eq!(c.sc(), (0, 0x02));
}

#[test]
fn admin_data_out_of_map_is_data_transfer_error() {
    let mut h = Host::simple();
    let c = h.admin(Sqe {
        opcode: admin_op::IDENTIFY,
        dptr1: UNMAPPED,
        cdw10: cns::CONTROLLER as u32,
        ..Default::default()
    });
    assert_eq!(c.sc(), (0, 0x04));
    // Straddling the end of the map.
    let c = h.admin(Sqe {
        opcode: admin_op::IDENTIFY,
        dptr1: MEM_SIZE - 0x800,
        dptr2: UNMAPPED,
        cdw10: cns::CONTROLLER as u32,
        ..Default::default()
    });
    assert_eq!(c.sc(), (0, 0x04));
}
