//! Namespace Management, Namespace Attachment and Format NVM driven as a host would:
//! create, attach, I/O, format to another LBA format, detach, delete; the statuses of
//! each bad request; capacity accounting; the events and the Changed Namespace List.

use super::admin::get_log;
use super::*;
use crate::nvme::aer::AerState;

const NS_MGMT: u8 = 0x0d;
const NS_ATTACH: u8 = 0x15;
const FORMAT: u8 = 0x80;
/// Where the create structure / controller list is put.
const DATA: u64 = 0x200000;
const IO: u64 = 0x300000;

fn get_u32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}

fn get_u64(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
}

/// One 1 MiB namespace given at start, 8 MiB of NVM in all.
fn host() -> Host {
    let cfg = ControllerConfig {
        capacity: Some(8 << 20),
        nn: 16,
        ..ControllerConfig::default()
    };
    let mut h = Host::new(cfg, vec![memns(1, ns_cfg(1 << 20))]);
    h.io_pair(1, 32);
    h
}

fn create(h: &mut Host, nsze: u64, ncap: u64, flbas: u8, dps: u8) -> Cqe {
    let mut b = vec![0u8; 4096];
    b[0..8].copy_from_slice(&nsze.to_le_bytes());
    b[8..16].copy_from_slice(&ncap.to_le_bytes());
    b[26] = flbas;
    b[29] = dps;
    h.write_mem(DATA, &b);
    h.admin(Sqe {
        opcode: NS_MGMT,
        dptr1: DATA,
        cdw10: 0,
        ..Default::default()
    })
}

fn delete(h: &mut Host, nsid: u32) -> Cqe {
    h.admin(Sqe {
        opcode: NS_MGMT,
        nsid,
        cdw10: 1,
        ..Default::default()
    })
}

fn attach(h: &mut Host, nsid: u32, sel: u32, ctrls: &[u16]) -> Cqe {
    let mut b = vec![0u8; 4096];
    b[0..2].copy_from_slice(&(ctrls.len() as u16).to_le_bytes());
    for (i, c) in ctrls.iter().enumerate() {
        b[2 + 2 * i..4 + 2 * i].copy_from_slice(&c.to_le_bytes());
    }
    h.write_mem(DATA, &b);
    h.admin(Sqe {
        opcode: NS_ATTACH,
        nsid,
        dptr1: DATA,
        cdw10: sel,
        ..Default::default()
    })
}

fn format(h: &mut Host, nsid: u32, cdw10: u32) -> Cqe {
    h.admin(Sqe {
        opcode: FORMAT,
        nsid,
        cdw10,
        ..Default::default()
    })
}

fn list(h: &mut Host, cns: u8) -> Vec<u32> {
    let (c, d) = h.identify(cns, 0, 0);
    assert!(c.ok());
    (0..1024)
        .map(|i| get_u32(&d, i * 4))
        .take_while(|&n| n != 0)
        .collect()
}

fn capacity(h: &mut Host) -> (u64, u64) {
    let (_, d) = h.identify(cns::CONTROLLER, 0, 0);
    (get_u64(&d, id_ctrl::TNVMCAP), get_u64(&d, id_ctrl::UNVMCAP))
}

#[test]
fn create_attach_io_format_detach_delete() {
    let mut h = host();
    assert_eq!(capacity(&mut h), (8 << 20, 7 << 20));
    // 4096-byte blocks: LBA format 4 of the default eight.
    let c = create(&mut h, 256, 256, 4, 0);
    assert!(c.ok(), "{c:?}");
    assert_eq!(c.dw0, 2, "the lowest free nsid");
    assert_eq!(capacity(&mut h), (8 << 20, 6 << 20));
    assert_eq!(list(&mut h, cns::ALLOCATED_NS_LIST), vec![1, 2]);
    assert_eq!(list(&mut h, cns::ACTIVE_NS_LIST), vec![1]);
    // Allocated but not attached: CNS 00h is all zeroes, CNS 11h describes it.
    let (_, d) = h.identify(cns::NAMESPACE, 2, 0);
    assert!(d.iter().all(|&b| b == 0));
    let (_, d) = h.identify(cns::ALLOCATED_NAMESPACE, 2, 0);
    assert_eq!((get_u64(&d, id_ns::NSZE), d[id_ns::FLBAS]), (256, 4));
    // I/O to it is refused until it is attached (an inactive NSID).
    let c = h.cmd(1, rw(io_op::READ, 2, 0, 1, IO, 0));
    assert_eq!(c.sc(), (0, 0x02));
    let (_, d) = h.identify(cns::NS_CONTROLLER_LIST, 2, 0);
    assert_eq!(u16::from_le_bytes([d[0], d[1]]), 0);
    assert!(attach(&mut h, 2, 0, &[0]).ok());
    assert_eq!(list(&mut h, cns::ACTIVE_NS_LIST), vec![1, 2]);
    let (_, d) = h.identify(cns::NS_CONTROLLER_LIST, 2, 0);
    assert_eq!(&d[0..4], &[1, 0, 0, 0], "one controller, CNTLID 0");
    let (_, d) = h.identify(cns::CONTROLLER_LIST, 0, 0);
    assert_eq!(&d[0..4], &[1, 0, 0, 0]);
    let (_, d) = h.identify(cns::CONTROLLER_LIST, 0, 0);
    assert_eq!(u16::from_le_bytes([d[0], d[1]]), 1);

    // Write, read back, copy within it.
    let data = pattern(8192, 3);
    h.write_mem(IO, &data);
    assert!(h.cmd(1, rw(io_op::WRITE, 2, 10, 2, IO, IO + 4096)).ok());
    assert_eq!(h.store_bytes(2, 10 * 4096, 8192), data);
    h.fill(IO, 8192, 0);
    assert!(h.cmd(1, rw(io_op::READ, 2, 10, 2, IO, IO + 4096)).ok());
    assert_eq!(h.read_mem(IO, 8192), data);
    let mut desc = vec![0u8; 32];
    desc[8..16].copy_from_slice(&10u64.to_le_bytes());
    desc[16..18].copy_from_slice(&1u16.to_le_bytes());
    h.write_mem(DATA, &desc);
    let c = h.cmd(
        1,
        Sqe {
            opcode: io_op::COPY,
            nsid: 2,
            dptr1: DATA,
            cdw10: 100,
            ..Default::default()
        },
    );
    assert!(c.ok(), "{c:?}");
    assert_eq!(h.store_bytes(2, 100 * 4096, 8192), data);

    // Format to 512-byte blocks (format 0, SES 1): erased, 2048 blocks, same nsid.
    let c = format(&mut h, 2, 1 << 9);
    assert!(c.ok(), "{c:?}");
    let (_, d) = h.identify(cns::NAMESPACE, 2, 0);
    assert_eq!((get_u64(&d, id_ns::NSZE), d[id_ns::FLBAS]), (2048, 0));
    assert_eq!(h.store_bytes(2, 100 * 4096, 8192), vec![0u8; 8192]);
    h.write_mem(IO, &data[..512]);
    assert!(h.cmd(1, rw(io_op::WRITE, 2, 2047, 1, IO, 0)).ok());
    assert_eq!(
        h.cmd(1, rw(io_op::WRITE, 2, 2048, 1, IO, 0)).sc(),
        (0, 0x80)
    );

    // Detach, delete; the capacity comes back.
    assert!(attach(&mut h, 2, 1, &[0]).ok());
    assert_eq!(list(&mut h, cns::ACTIVE_NS_LIST), vec![1]);
    assert!(delete(&mut h, 2).ok());
    assert_eq!(list(&mut h, cns::ALLOCATED_NS_LIST), vec![1]);
    assert_eq!(capacity(&mut h), (8 << 20, 7 << 20));
}

#[test]
fn bad_requests_get_the_spec_statuses() {
    let mut h = host();
    let cases: Vec<(&str, Cqe, (u8, u8))> = vec![
        ("format 8 of 8", create(&mut h, 8, 8, 8, 0), (1, 0x0a)),
        ("NSZE 0", create(&mut h, 0, 0, 0, 0), (0, 0x02)),
        ("NCAP above NSZE", create(&mut h, 8, 9, 0, 0), (0, 0x02)),
        ("NCAP below NSZE", create(&mut h, 8, 4, 0, 0), (1, 0x1b)),
        ("PI without metadata", create(&mut h, 8, 8, 0, 1), (1, 0x0a)),
        ("PI type 5", create(&mut h, 8, 8, 1, 5), (0, 0x02)),
        ("too big", create(&mut h, 1 << 40, 1 << 40, 0, 0), (1, 0x15)),
        ("delete nsid 0", delete(&mut h, 0), (0, 0x0b)),
        ("delete nsid above NN", delete(&mut h, 17), (0, 0x0b)),
        ("delete unallocated", delete(&mut h, 5), (0, 0x02)),
        ("attach attached", attach(&mut h, 1, 0, &[0]), (1, 0x18)),
        (
            "attach another controller",
            attach(&mut h, 1, 0, &[7]),
            (1, 0x1c),
        ),
        ("attach empty list", attach(&mut h, 1, 0, &[]), (1, 0x1c)),
        ("attach unallocated", attach(&mut h, 5, 0, &[0]), (0, 0x02)),
        (
            "attach FFFFFFFFh",
            attach(&mut h, NSID_ALL, 0, &[0]),
            (0, 0x02),
        ),
        ("attach reserved SEL", attach(&mut h, 1, 2, &[0]), (0, 0x02)),
        ("format LBA format 9", format(&mut h, 1, 9), (1, 0x0a)),
        ("format crypto erase", format(&mut h, 1, 2 << 9), (0, 0x02)),
        (
            "format PI without metadata",
            format(&mut h, 1, 1 << 5),
            (1, 0x0a),
        ),
        ("format inactive nsid", format(&mut h, 3, 0), (0, 0x02)),
        ("management reserved SEL", delete_sel(&mut h, 2), (0, 0x02)),
    ];
    for (what, c, want) in cases {
        assert_eq!(c.sc(), want, "{what}: {c:?}");
        assert!(c.status.is_dnr(), "{what}: DNR");
    }
    assert!(attach(&mut h, 1, 1, &[0]).ok());
    assert_eq!(
        attach(&mut h, 1, 1, &[0]).sc(),
        (1, 0x1a),
        "detach detached"
    );
    // All ids in use.
    assert!(delete(&mut h, NSID_ALL).ok());
    for i in 1..=16u32 {
        let c = create(&mut h, 8, 8, 0, 0);
        assert_eq!((c.sc(), c.dw0), ((0, 0), i));
    }
    assert_eq!(create(&mut h, 8, 8, 0, 0).sc(), (1, 0x16));
    assert_eq!(list(&mut h, cns::ALLOCATED_NS_LIST).len(), 16);
    assert!(delete(&mut h, NSID_ALL).ok());
    assert!(list(&mut h, cns::ALLOCATED_NS_LIST).is_empty());
    assert_eq!(capacity(&mut h), (8 << 20, 8 << 20));
}

fn delete_sel(h: &mut Host, sel: u32) -> Cqe {
    h.admin(Sqe {
        opcode: NS_MGMT,
        nsid: 1,
        cdw10: sel,
        ..Default::default()
    })
}

#[test]
fn every_change_of_an_attached_namespace_is_announced() {
    let mut h = host();
    assert!(h
        .admin(Sqe {
            opcode: admin_op::SET_FEATURES,
            cdw10: feat::ASYNC_EVENT_CONFIG as u32,
            cdw11: 1 << 8,
            ..Default::default()
        })
        .ok());
    let aer = Sqe {
        opcode: admin_op::ASYNC_EVENT_REQUEST,
        ..Default::default()
    };
    let expect_event = |h: &mut Host, nsids: &[u32]| {
        let cid = h.submit(0, aer);
        let c = h.reap(0);
        assert_eq!((c.cid, c.dw0), (cid, AerState::NS_ATTR_CHANGED_DW0));
        let (_, d) = get_log(h, log::CHANGED_NS_LIST, NSID_ALL, 4096, 0, false);
        let got: Vec<u32> = (0..8)
            .map(|i| get_u32(&d, i * 4))
            .take_while(|&n| n != 0)
            .collect();
        assert_eq!(got, nsids);
    };
    // Create: not attached, nothing to announce; attach is.
    assert!(create(&mut h, 16, 16, 0, 0).ok());
    assert!(attach(&mut h, 2, 0, &[0]).ok());
    expect_event(&mut h, &[2]);
    assert!(format(&mut h, 2, 4).ok(), "to 4096-byte blocks");
    expect_event(&mut h, &[2]);
    assert!(attach(&mut h, 2, 1, &[0]).ok());
    expect_event(&mut h, &[2]);
    // Deleting every namespace announces the one attached.
    assert!(delete(&mut h, NSID_ALL).ok());
    expect_event(&mut h, &[1]);
    let c = h.submit(0, aer);
    assert!(
        h.try_reap(0, Duration::from_millis(100)).is_none(),
        "no more events ({c})"
    );
}

#[test]
fn created_namespaces_get_new_uuids_and_files_in_the_directory() {
    let dir = std::env::temp_dir().join(format!("vnvme-nsdir-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = ControllerConfig {
        capacity: Some(8 << 20),
        ns_dir: Some(dir.clone()),
        ..ControllerConfig::default()
    };
    let mut h = Host::new(cfg, vec![]);
    let uuid = |h: &mut Host| {
        let (_, d) = h.identify(cns::NS_DESCRIPTORS, 1, 0);
        assert_eq!(d[0], nidt::UUID);
        d[4..20].to_vec()
    };
    assert!(create(&mut h, 64, 64, 0, 0).ok());
    assert!(attach(&mut h, 1, 0, &[0]).ok());
    let first = uuid(&mut h);
    let files: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert_eq!(files.len(), 1, "one sparse file");
    assert!(delete(&mut h, 1).ok());
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "removed on delete"
    );
    assert!(create(&mut h, 64, 64, 0, 0).ok());
    assert!(attach(&mut h, 1, 0, &[0]).ok());
    assert_ne!(uuid(&mut h), first, "a re-created nsid is a new namespace");
    assert!(delete(&mut h, NSID_ALL).ok());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn format_with_protection_information() {
    let mut h = host();
    // Format 1 is 512 + 8: Type 1 protection information.
    assert!(format(&mut h, 1, 1 | (1 << 5)).ok());
    let (_, d) = h.identify(cns::NAMESPACE, 1, 0);
    assert_eq!((d[id_ns::FLBAS], d[id_ns::DPS]), (1, 1));
    assert_eq!(get_u64(&d, id_ns::NSZE), (1 << 20) / 520);
    // A write without PRACT and without a tuple in the metadata buffer fails the guard.
    h.write_mem(IO, &pattern(512, 1));
    h.fill(IO + 4096, 8, 0);
    let mut w = rw(io_op::WRITE, 1, 0, 1, IO, 0);
    w.mptr = IO + 4096;
    w.cdw12 |= 0b100 << 26; // PRCHK guard
    assert_eq!(h.cmd(1, w).sc(), (2, 0x82));
    // Back to no metadata.
    assert!(format(&mut h, 1, 0).ok());
    let (_, d) = h.identify(cns::NAMESPACE, 1, 0);
    assert_eq!((d[id_ns::FLBAS], d[id_ns::DPS]), (0, 0));
}
