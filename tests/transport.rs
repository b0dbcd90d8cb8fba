//! The vfio-user transport and the PCI function, driven over a real socket.

mod common;

use std::os::fd::AsRawFd;
use std::time::Duration;

use vfio_bindings::bindings::vfio as vb;
use vnvme::vfio_user::protocol::{self as p, Command};

use common::{eventfd, small_config, wait_eventfd, Client, GuestMem, TestServer};

const CONFIG: u32 = 7;
const BAR4: u32 = 4;
const SHORT: Duration = Duration::from_millis(100);

fn server(tag: &str) -> TestServer {
    TestServer::start(tag, &small_config())
}

#[test]
fn version_negotiation_announces_capabilities() {
    let s = server("version");
    let mut c = s.client();
    let caps = c.negotiate();
    let caps = &caps["capabilities"];
    assert_eq!(caps["max_msg_fds"], 16);
    assert_eq!(caps["max_data_xfer_size"], 1 << 20);
    assert_eq!(caps["pgsizes"], 4096);
    assert_eq!(caps["write_multiple"], true);
    assert!(caps.get("migration").is_none());
    // A second VERSION is refused but the connection stays usable.
    let r = c.request(
        Command::Version,
        &p::Version {
            major: 0,
            minor: 0,
            capabilities: String::new(),
        }
        .to_payload(),
        &[],
    );
    assert_eq!(r.errno(), libc::EINVAL);
    assert_eq!(c.device_info().num_regions, 9);
}

#[test]
fn version_without_write_multiple_is_not_echoed() {
    let s = server("version-nowm");
    let mut c = s.client();
    let r = c
        .request(
            Command::Version,
            &p::Version {
                major: 0,
                minor: 3,
                capabilities: String::new(),
            }
            .to_payload(),
            &[],
        )
        .ok();
    let v = p::Version::parse(&r.payload).unwrap();
    assert_eq!((v.major, v.minor), (0, 0), "minor is at most ours");
    let j: serde_json::Value = serde_json::from_str(&v.capabilities).unwrap();
    assert!(j["capabilities"].get("write_multiple").is_none());
}

#[test]
fn unknown_major_version_is_rejected_and_disconnected() {
    let s = server("major");
    let mut c = s.client();
    let r = c.request(
        Command::Version,
        &p::Version {
            major: 1,
            minor: 0,
            capabilities: String::new(),
        }
        .to_payload(),
        &[],
    );
    assert!(r.is_error());
    assert!(c.is_closed());
    // The server serves the next client.
    let mut c = s.client();
    c.negotiate();
    assert_eq!(c.device_info().num_irqs, 5);
}

#[test]
fn commands_before_version_are_refused() {
    let s = server("early");
    let mut c = s.client();
    let r = c.region_info_raw(0);
    assert_eq!(r.errno(), libc::EINVAL);
    c.negotiate();
    assert_eq!(c.region_info(0).size, s.bar0_size);
}

#[test]
fn device_region_and_irq_info() {
    let s = server("info");
    let mut c = s.negotiated();
    let d = c.device_info();
    assert_eq!(d.argsz, 16);
    assert_eq!(
        d.flags,
        vb::VFIO_DEVICE_FLAGS_PCI | vb::VFIO_DEVICE_FLAGS_RESET
    );
    assert_eq!((d.num_regions, d.num_irqs), (9, 5));

    let rw = vb::VFIO_REGION_INFO_FLAG_READ | vb::VFIO_REGION_INFO_FLAG_WRITE;
    let bar0 = c.region_info(0);
    assert_eq!((bar0.index, bar0.size, bar0.flags), (0, s.bar0_size, rw));
    assert!(bar0.size.is_power_of_two());
    let bar4 = c.region_info(4);
    assert_eq!(bar4.flags, rw);
    assert!(bar4.size >= s.msix_vectors as u64 * 16 + 8);
    assert!(bar4.size.is_power_of_two());
    let cfg = c.region_info(7);
    assert_eq!((cfg.size, cfg.flags), (4096, rw));
    for i in [1, 2, 3, 5, 6, 8] {
        let r = c.region_info(i);
        assert_eq!((r.size, r.flags), (0, 0), "region {i}");
    }
    assert_eq!(c.region_info_raw(9).errno(), libc::EINVAL);
    // argsz smaller than the reply structure.
    let req = p::RegionInfo::request(0, 8);
    let r = c.request(Command::DeviceGetRegionInfo, &req.to_payload(), &[]);
    assert_eq!(r.errno(), libc::EINVAL);

    let expect = [
        (
            0,
            1,
            vb::VFIO_IRQ_INFO_EVENTFD | vb::VFIO_IRQ_INFO_MASKABLE | vb::VFIO_IRQ_INFO_AUTOMASKED,
        ),
        (1, 1, vb::VFIO_IRQ_INFO_EVENTFD),
        (2, s.msix_vectors as u32, vb::VFIO_IRQ_INFO_EVENTFD),
        (3, 1, vb::VFIO_IRQ_INFO_EVENTFD),
        (4, 1, vb::VFIO_IRQ_INFO_EVENTFD),
    ];
    for (index, count, flags) in expect {
        let r = c.irq_info_raw(index).ok();
        let i = p::IrqInfo::parse(&r.payload).unwrap();
        assert_eq!((i.index, i.count, i.flags), (index, count, flags));
    }
    assert_eq!(c.irq_info_raw(5).errno(), libc::EINVAL);
}

#[test]
fn config_space_header_and_capabilities() {
    let s = server("config");
    let mut c = s.negotiated();
    assert_eq!(c.cfg_read16(0x00), 0x1b36);
    assert_eq!(c.cfg_read16(0x02), 0x0010);
    assert_eq!(c.cfg_read16(0x2c), 0x1af4);
    assert_eq!(c.cfg_read16(0x2e), 0x1100);
    assert_eq!(c.cfg_read32(0x08) >> 8, 0x01_08_02, "class NVMe");
    assert_eq!(c.cfg_read8(0x0e), 0, "type-0 header");
    assert_ne!(c.cfg_read16(0x06) & (1 << 4), 0, "capabilities list");
    assert_eq!(c.cfg_read32(0x10) & 0xf, 0x4, "BAR0 64-bit memory");
    assert_eq!(c.cfg_read32(0x20) & 0xf, 0x0, "BAR4 32-bit memory");
    assert_eq!(c.cfg_read8(0x3d), 1, "INTA");

    // Walk the capability list.
    let mut caps = Vec::new();
    let mut ptr = c.cfg_read8(0x34) as u64;
    while ptr != 0 && caps.len() < 16 {
        let id = c.cfg_read8(ptr);
        caps.push((id, ptr));
        ptr = c.cfg_read8(ptr + 1) as u64;
    }
    let ids: Vec<u8> = caps.iter().map(|c| c.0).collect();
    assert_eq!(ids, vec![0x01, 0x11, 0x10], "PM, MSI-X, PCIe");

    let msix = caps[1].1;
    let ctrl = c.cfg_read16(msix + 2);
    assert_eq!((ctrl & 0x7ff) + 1, s.msix_vectors);
    assert_eq!(ctrl & 0xc000, 0, "MSI-X disabled at reset");
    let table = c.cfg_read32(msix + 4);
    assert_eq!(table, 4, "table in BAR4 at offset 0");
    let pba = c.cfg_read32(msix + 8);
    assert_eq!(pba & 7, 4, "PBA in BAR4");
    assert!(
        (pba & !7) as u64 >= s.msix_vectors as u64 * 16,
        "PBA after the table"
    );

    let pcie = caps[2].1;
    assert_eq!(c.cfg_read16(pcie + 2) & 0xf0, 0, "endpoint");
    assert_eq!(c.cfg_read16(pcie + 2) & 0xf, 2, "capability version 2");
    // Extended configuration space is empty.
    assert_eq!(c.cfg_read32(0x100), 0);

    // MSI-X enable is writable, the table size is not.
    c.cfg_write16(msix + 2, 0xffff);
    assert_eq!(c.cfg_read16(msix + 2), 0xc000 | (s.msix_vectors - 1));
    // Vendor id is read-only; command register keeps only its writable bits.
    c.cfg_write32(0, 0);
    assert_eq!(c.cfg_read16(0), 0x1b36);
    c.cfg_write16(0x04, 0xffff);
    assert_eq!(c.cfg_read16(0x04), 0x0546);
    // Reads past the end of config space are refused.
    assert_eq!(c.region_read_raw(CONFIG, 4094, 4).errno(), libc::EINVAL);
}

#[test]
fn bar_sizing_reports_size_masks() {
    let s = server("barsize");
    let mut c = s.negotiated();
    c.cfg_write32(0x10, 0xffff_ffff);
    c.cfg_write32(0x14, 0xffff_ffff);
    let lo = c.cfg_read32(0x10);
    let hi = c.cfg_read32(0x14);
    let mask = ((hi as u64) << 32) | (lo & !0xf) as u64;
    assert_eq!(lo & 0xf, 0x4);
    assert_eq!(!mask + 1, s.bar0_size, "BAR0 size from sizing");
    c.cfg_write32(0x10, 0xfe00_0000);
    c.cfg_write32(0x14, 0);
    assert_eq!(c.cfg_read32(0x10), 0xfe00_0004);

    let bar4_size = c.region_info(4).size;
    c.cfg_write32(0x20, 0xffff_ffff);
    let m = c.cfg_read32(0x20);
    assert_eq!((!(m & !0xf)).wrapping_add(1) as u64, bar4_size);
    // Unimplemented BARs stay zero.
    for off in [0x18, 0x1c, 0x24, 0x30] {
        c.cfg_write32(off, 0xffff_ffff);
        assert_eq!(c.cfg_read32(off), 0, "offset {off:#x}");
    }
}

#[test]
fn dma_map_and_unmap() {
    let s = server("dma");
    let mut c = s.negotiated();
    let g = GuestMem::new(0x10_0000, 0x40_0000);
    c.map_guest(&g);
    // Overlaps are refused with EEXIST.
    let fd = g.file.as_raw_fd();
    assert_eq!(
        c.dma_map_raw(0x20_0000, 0x1000, 0, Some(fd)).errno(),
        libc::EEXIST
    );
    assert_eq!(
        c.dma_map_raw(0x0f_f000, 0x2000, 0, Some(fd)).errno(),
        libc::EEXIST
    );
    // Misaligned, zero-sized and beyond-the-file maps are refused.
    assert_eq!(
        c.dma_map_raw(0x100_0000, 0x800, 0, Some(fd)).errno(),
        libc::EINVAL
    );
    assert_eq!(
        c.dma_map_raw(0x100_0000, 0, 0, Some(fd)).errno(),
        libc::EINVAL
    );
    assert_eq!(
        c.dma_map_raw(0x100_0000, 0x1000, 0x40_0000, Some(fd))
            .errno(),
        libc::EINVAL
    );
    // A second, disjoint map of the same file at an offset works.
    c.dma_map_raw(0x100_0000, 0x1000, 0x1000, Some(fd)).ok();
    // A map without a descriptor is recorded (the device cannot reach it).
    c.dma_map_raw(0x200_0000, 0x1000, 0, None).ok();
    // Unmap of an unknown range or a range cutting a map fails.
    assert_eq!(c.dma_unmap_raw(0x300_0000, 0x1000, 0).errno(), libc::ENOENT);
    assert_eq!(c.dma_unmap_raw(0x10_0000, 0x1000, 0).errno(), libc::EINVAL);
    // Exact unmap echoes the request.
    let r = c.dma_unmap_raw(0x100_0000, 0x1000, 0).ok();
    let u = p::DmaUnmap::parse(&r.payload).unwrap();
    assert_eq!((u.addr, u.size), (0x100_0000, 0x1000));
    assert_eq!(c.dma_unmap_raw(0x100_0000, 0x1000, 0).errno(), libc::ENOENT);
    // Unmap-all is bit 1, as QEMU sends it.
    c.dma_unmap_raw(0, 0, p::DMA_UNMAP_FLAG_ALL).ok();
    assert_eq!(
        c.dma_unmap_raw(0x10_0000, 0x40_0000, 0).errno(),
        libc::ENOENT
    );
    // Dirty bitmaps are not supported; unknown flags are invalid.
    assert_eq!(
        c.dma_unmap_raw(0x10_0000, 0x1000, p::DMA_UNMAP_FLAG_GET_DIRTY_BITMAP)
            .errno(),
        libc::ENOTSUP
    );
    assert_eq!(
        c.dma_unmap_raw(0x10_0000, 0x1000, 1 << 5).errno(),
        libc::EINVAL
    );
    // Memory can be mapped again after unmap-all.
    c.map_guest(&g);
    c.dma_unmap_raw(g.base, g.size, 0).ok();
}

#[test]
fn msix_eventfds_trigger_mask_and_disable() {
    let s = server("msix");
    let mut c = s.negotiated();
    let n = s.msix_vectors as usize;
    let efds: Vec<_> = (0..n).map(|_| eventfd()).collect();
    let refs: Vec<_> = efds.iter().collect();
    // Like QEMU: first vector 0 with "no descriptor" (enables MSI-X), then all vectors.
    let none = vb::VFIO_IRQ_SET_DATA_EVENTFD | vb::VFIO_IRQ_SET_ACTION_TRIGGER;
    c.set_irqs_raw(none, 2, 0, 1, &[], &[]).ok();
    c.set_irq_eventfds(2, 0, &refs);

    // Client-triggered interrupt (DATA_NONE) on the last vector.
    let trig = vb::VFIO_IRQ_SET_DATA_NONE | vb::VFIO_IRQ_SET_ACTION_TRIGGER;
    c.set_irqs_raw(trig, 2, (n - 1) as u32, 1, &[], &[]).ok();
    assert_eq!(wait_eventfd(&efds[n - 1], common::TIMEOUT), Some(1));
    // DATA_BOOL selects vectors.
    let trig_bool = vb::VFIO_IRQ_SET_DATA_BOOL | vb::VFIO_IRQ_SET_ACTION_TRIGGER;
    c.set_irqs_raw(trig_bool, 2, 0, 2, &[0, 1], &[]).ok();
    assert_eq!(wait_eventfd(&efds[1], common::TIMEOUT), Some(1));
    assert_eq!(wait_eventfd(&efds[0], SHORT), None);

    // Masked: the trigger becomes pending (visible in the PBA), unmask delivers it.
    let mask = vb::VFIO_IRQ_SET_DATA_NONE | vb::VFIO_IRQ_SET_ACTION_MASK;
    let unmask = vb::VFIO_IRQ_SET_DATA_NONE | vb::VFIO_IRQ_SET_ACTION_UNMASK;
    c.set_irqs_raw(mask, 2, 0, 1, &[], &[]).ok();
    c.set_irqs_raw(trig, 2, 0, 1, &[], &[]).ok();
    assert_eq!(wait_eventfd(&efds[0], SHORT), None);
    let msix_cap = 0x50;
    let pba_off = (c.cfg_read32(msix_cap + 8) & !7) as u64;
    assert_eq!(
        c.region_read(BAR4, pba_off, 8)[0] & 1,
        1,
        "PBA bit 0 pending"
    );
    assert_eq!(
        c.region_read(BAR4, 0, 16),
        vec![0; 16],
        "table reads as zeros"
    );
    c.region_write(BAR4, 0, &[0xff; 4]); // accepted, ignored
    c.set_irqs_raw(unmask, 2, 0, 1, &[], &[]).ok();
    assert_eq!(wait_eventfd(&efds[0], common::TIMEOUT), Some(1));
    assert_eq!(c.region_read(BAR4, pba_off, 8)[0] & 1, 0, "PBA bit cleared");

    // Errors: wrong fd count, out-of-range vectors, both data types, bool size.
    let e1 = eventfd();
    let e2 = eventfd();
    let r = c.set_irqs_raw(none, 2, 0, 1, &[], &[e1.as_raw_fd(), e2.as_raw_fd()]);
    assert_eq!(r.errno(), libc::EINVAL);
    let r = c.set_irqs_raw(none, 2, n as u32, 1, &[], &[e1.as_raw_fd()]);
    assert_eq!(r.errno(), libc::EINVAL);
    let both =
        vb::VFIO_IRQ_SET_DATA_NONE | vb::VFIO_IRQ_SET_DATA_BOOL | vb::VFIO_IRQ_SET_ACTION_TRIGGER;
    assert_eq!(
        c.set_irqs_raw(both, 2, 0, 1, &[], &[]).errno(),
        libc::EINVAL
    );
    assert_eq!(
        c.set_irqs_raw(trig_bool, 2, 0, 2, &[1], &[]).errno(),
        libc::EINVAL
    );
    assert_eq!(
        c.set_irqs_raw(trig, 9, 0, 1, &[], &[]).errno(),
        libc::EINVAL
    );
    assert_eq!(
        c.set_irqs_raw(trig, 2, 0, 1, &[], &[e1.as_raw_fd()])
            .errno(),
        libc::EINVAL
    );

    // count 0 + DATA_NONE disables the index: triggers go nowhere.
    c.set_irqs_raw(trig, 2, 0, 0, &[], &[]).ok();
    c.set_irqs_raw(trig, 2, 1, 1, &[], &[]).ok();
    assert_eq!(wait_eventfd(&efds[1], SHORT), None);
}

#[test]
fn intx_is_automasked_until_unmask() {
    let s = server("intx");
    let mut c = s.negotiated();
    let e = eventfd();
    c.set_irq_eventfds(0, 0, &[&e]);
    let trig = vb::VFIO_IRQ_SET_DATA_NONE | vb::VFIO_IRQ_SET_ACTION_TRIGGER;
    c.set_irqs_raw(trig, 0, 0, 1, &[], &[]).ok();
    assert_eq!(wait_eventfd(&e, common::TIMEOUT), Some(1));
    // Automasked: a second assertion waits for UNMASK.
    c.set_irqs_raw(trig, 0, 0, 1, &[], &[]).ok();
    assert_eq!(wait_eventfd(&e, SHORT), None);
    let unmask = vb::VFIO_IRQ_SET_DATA_NONE | vb::VFIO_IRQ_SET_ACTION_UNMASK;
    c.set_irqs_raw(unmask, 0, 0, 1, &[], &[]).ok();
    assert_eq!(wait_eventfd(&e, common::TIMEOUT), Some(1));
    // ERR and REQ take an eventfd too.
    let err = eventfd();
    c.set_irq_eventfds(3, 0, &[&err]);
    c.set_irqs_raw(trig, 3, 0, 1, &[], &[]).ok();
    assert_eq!(wait_eventfd(&err, common::TIMEOUT), Some(1));
}

#[test]
fn posted_writes_get_no_reply() {
    let s = server("posted");
    let mut c = s.negotiated();
    // Posted write to the interrupt line register, then a read that must see it.
    c.region_write_posted(CONFIG, 0x3c, &[0x0b]);
    c.region_write_posted(CONFIG, 0x0c, &[0x10]);
    let id = c.send_cmd(
        Command::RegionRead as u16,
        0,
        &p::RegionAccess {
            offset: 0x3c,
            region: CONFIG,
            count: 1,
            data: vec![],
        }
        .to_payload(),
        &[],
    );
    let r = c.recv().unwrap().ok();
    assert_eq!(r.hdr.msg_id, id, "the first reply is the read's");
    assert_eq!(r.payload[16], 0x0b);
    assert_eq!(c.cfg_read8(0x0c), 0x10);
    // A posted write that fails gets no reply either; the next request is answered.
    c.region_write_posted(CONFIG, 0x2000, &[1]);
    assert_eq!(c.device_info().num_regions, 9);
}

#[test]
fn region_write_multi() {
    let s = server("multi");
    let mut c = s.negotiated();
    let mut w = p::Writer::new();
    w.u64(2);
    w.u64(0x3c)
        .u32(CONFIG)
        .u32(1)
        .bytes(&[0x0a, 0, 0, 0, 0, 0, 0, 0]);
    w.u64(0x0c)
        .u32(CONFIG)
        .u32(1)
        .bytes(&[0x20, 0, 0, 0, 0, 0, 0, 0]);
    // Posted, as QEMU sends it.
    c.send_cmd(
        Command::RegionWriteMulti as u16,
        p::FLAG_NO_REPLY,
        &w.buf,
        &[],
    );
    assert_eq!(c.cfg_read8(0x3c), 0x0a);
    assert_eq!(c.cfg_read8(0x0c), 0x20);
    // With a reply: the count of writes.
    let r = c.request(Command::RegionWriteMulti, &w.buf, &[]).ok();
    assert_eq!(r.payload, 2u64.to_ne_bytes());
    // A count that does not match the payload is refused.
    let r = c.request(Command::RegionWriteMulti, &w.buf[..w.buf.len() - 8], &[]);
    assert_eq!(r.errno(), libc::EINVAL);
}

#[test]
fn device_reset_restores_config_space() {
    let s = server("reset");
    let mut c = s.negotiated();
    c.cfg_write16(0x04, 0x0006);
    assert_eq!(c.cfg_read16(0x04), 0x0006);
    c.request(Command::DeviceReset, &[], &[]).ok();
    assert_eq!(c.cfg_read16(0x04), 0);
    assert_eq!(
        c.request(Command::DeviceReset, &[1, 2], &[]).errno(),
        libc::EINVAL
    );
}

#[test]
fn malformed_messages_leave_the_server_serving() {
    let s = server("malformed");
    let mut c = s.negotiated();

    // Wrong payload size for a fixed-size message.
    let r = c.request(Command::DmaMap, &[0u8; 20], &[]);
    assert_eq!(r.errno(), libc::EINVAL);
    let r = c.request(Command::DeviceGetIrqInfo, &[0u8; 4], &[]);
    assert_eq!(r.errno(), libc::EINVAL);
    // Region write whose count disagrees with its data.
    let mut w = p::Writer::new();
    w.u64(0).u32(CONFIG).u32(8).bytes(&[1, 2, 3, 4]);
    assert_eq!(
        c.request(Command::RegionWrite, &w.buf, &[]).errno(),
        libc::EINVAL
    );
    // Read beyond a region, of a missing region, of a region that does not exist.
    assert_eq!(
        c.region_read_raw(0, s.bar0_size - 2, 4).errno(),
        libc::EINVAL
    );
    assert_eq!(c.region_read_raw(2, 0, 4).errno(), libc::EINVAL);
    assert_eq!(c.region_read_raw(42, 0, 4).errno(), libc::EINVAL);
    assert_eq!(c.region_read_raw(0, u64::MAX, 4).errno(), libc::EINVAL);
    // More than max_data_xfer_size.
    assert_eq!(c.region_read_raw(0, 0, (1 << 20) + 1).errno(), libc::EINVAL);
    // Unknown and unsupported commands.
    let id = c.send_cmd(99, 0, &[], &[]);
    let r = c.recv().unwrap();
    assert_eq!((r.hdr.msg_id, r.errno()), (id, libc::ENOSYS));
    let r = c.request(Command::DeviceGetRegionIoFds, &[0u8; 16], &[]);
    assert_eq!(r.errno(), libc::ENOTSUP);
    let r = c.request(Command::DmaRead, &[0u8; 16], &[]);
    assert_eq!(r.errno(), libc::ENOTSUP);
    // Descriptors where none belong.
    let e = eventfd();
    let mut w = p::Writer::new();
    w.u64(0).u32(CONFIG).u32(4);
    let r = c.request(Command::RegionRead, &w.buf, &[e.as_raw_fd()]);
    assert_eq!(r.errno(), libc::EINVAL);
    // Two descriptors for one DMA map.
    let g = GuestMem::new(0, 0x1000);
    let req = p::DmaMap {
        argsz: 32,
        flags: 3,
        offset: 0,
        addr: 0,
        size: 0x1000,
    };
    let r = c.request(
        Command::DmaMap,
        &req.to_payload(),
        &[g.file.as_raw_fd(), g.file.as_raw_fd()],
    );
    assert_eq!(r.errno(), libc::EINVAL);
    // A message that is not a command (a reply) is ignored.
    let stray = p::build_message(
        77,
        Command::DeviceGetInfo as u16,
        p::FLAG_TYPE_REPLY,
        0,
        &[],
    );
    c.send_raw(&stray, &[]).unwrap();
    // After all of that the same connection still works.
    assert_eq!(c.device_info().num_irqs, 5);
    assert_eq!(c.cfg_read16(0), 0x1b36);

    // Header size smaller than a header: error reply, then disconnect.
    let mut bad = p::Header {
        msg_id: 5,
        command: Command::DeviceGetInfo as u16,
        size: 8,
        flags: 0,
        error: 0,
    }
    .to_bytes()
    .to_vec();
    c.send_raw(&bad, &[]).unwrap();
    let r = c.recv().unwrap();
    assert_eq!(r.errno(), libc::EINVAL);
    assert!(c.is_closed());

    // Oversized message: E2BIG, then disconnect.
    let mut c = s.negotiated();
    bad[4..8].copy_from_slice(&(64u32 << 20).to_ne_bytes());
    c.send_raw(&bad, &[]).unwrap();
    assert_eq!(c.recv().unwrap().errno(), libc::E2BIG);
    assert!(c.is_closed());

    // More descriptors than the server accepts in one message: disconnect, fds closed.
    let mut c = s.negotiated();
    let many: Vec<_> = (0..40).map(|_| eventfd()).collect();
    let raw: Vec<_> = many.iter().map(|e| e.as_raw_fd()).collect();
    let req = p::IrqSet {
        argsz: 20,
        flags: vb::VFIO_IRQ_SET_DATA_EVENTFD | vb::VFIO_IRQ_SET_ACTION_TRIGGER,
        index: 2,
        start: 0,
        count: 40,
        data: vec![],
    };
    c.send_cmd(Command::DeviceSetIrqs as u16, 0, &req.to_payload(), &raw);
    assert!(c.is_closed());

    // Short header, then the client goes away.
    let mut c = s.client();
    c.send_raw(&[1, 0, 4, 0], &[]).unwrap();
    drop(c);

    // Header promising a payload that never fully comes.
    let mut c = s.negotiated();
    let mut msg = p::build_message(9, Command::RegionWrite as u16, 0, 0, &[0u8; 64]);
    msg.truncate(40);
    c.send_raw(&msg, &[]).unwrap();
    drop(c);

    // The server is alive and serves the next client.
    let mut c = s.negotiated();
    assert_eq!(c.device_info().num_regions, 9);
}

#[test]
fn disconnect_drops_maps_and_reconnect_works() {
    let s = server("reconnect");
    let g = GuestMem::new(0x10_0000, 0x10_0000);
    let e = eventfd();
    {
        let mut c = s.negotiated();
        c.map_guest(&g);
        c.set_irq_eventfds(2, 0, &[&e]);
        c.cfg_write16(0x04, 0x0006);
    }
    let mut c = s.negotiated();
    // The old map is gone (so mapping it again works), config space is back to reset.
    c.map_guest(&g);
    assert_eq!(c.cfg_read16(0x04), 0);
    // The old eventfd is no longer wired: a trigger goes nowhere.
    let trig = vb::VFIO_IRQ_SET_DATA_NONE | vb::VFIO_IRQ_SET_ACTION_TRIGGER;
    c.set_irqs_raw(trig, 2, 0, 1, &[], &[]).ok();
    assert_eq!(wait_eventfd(&e, SHORT), None);
    drop(c);
    for _ in 0..3 {
        let mut c = s.negotiated();
        assert_eq!(c.device_info().num_regions, 9);
    }
}

#[test]
fn second_client_is_refused_while_one_is_served() {
    let s = server("second");
    let mut first = s.negotiated();
    let mut second = Client::connect(&s.socket);
    assert!(second.is_closed(), "second client is turned away");
    assert_eq!(first.device_info().num_regions, 9);
    drop(first);
    let mut third = s.negotiated();
    assert_eq!(third.device_info().num_irqs, 5);
}

/// A tiny deterministic generator (xorshift64*), so failures replay.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Sends a ping (DEVICE_GET_INFO) and reads until its reply; false if the connection
/// ended instead.
fn ping(c: &mut Client) -> bool {
    let req = p::DeviceInfo {
        argsz: 16,
        flags: 0,
        num_regions: 0,
        num_irqs: 0,
    };
    let id = 0xfff0;
    let msg = p::build_message(id, Command::DeviceGetInfo as u16, 0, 0, &req.to_payload());
    if c.send_raw(&msg, &[]).is_err() {
        return false;
    }
    loop {
        match c.recv() {
            Ok(r) if r.hdr.msg_id == id && r.hdr.command == Command::DeviceGetInfo as u16 => {
                return !r.is_error();
            }
            Ok(_) => continue,
            Err(_) => return false,
        }
    }
}

/// A negotiated client that gives up on a reply after a short while.
fn fuzz_client(s: &TestServer) -> Client {
    let c = s.negotiated();
    c.stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    c
}

#[test]
fn random_messages_never_break_the_server() {
    let s = server("fuzz");
    // VNVME_FUZZ_SEED / VNVME_FUZZ_ITERS run other (or longer) sequences.
    let env = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let mut rng = Rng(env("VNVME_FUZZ_SEED", 0x5eed_1234_abcd_0001) | 1);
    let iters = env("VNVME_FUZZ_ITERS", 1500);
    let efd = eventfd();
    let g = GuestMem::new(0x10_0000, 0x1_0000);
    let mut c = fuzz_client(&s);
    let mut reconnects = 0;
    for i in 0..iters {
        let cmd = rng.below(20) as u16;
        // Plausible sizes for each command most of the time, anything otherwise.
        let len = match rng.below(4) {
            0 => rng.below(64) as usize,
            1 => [0usize, 4, 8, 16, 20, 24, 32][rng.below(7) as usize],
            2 => 16 + rng.below(16) as usize,
            _ => rng.below(300) as usize,
        };
        let mut payload: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        // Keep region accesses mostly small and in the first regions.
        if (cmd == 9 || cmd == 10) && payload.len() >= 16 && rng.below(2) == 0 {
            payload[8..12].copy_from_slice(&(rng.below(9) as u32).to_ne_bytes());
            payload[12..16].copy_from_slice(&(rng.below(9) as u32).to_ne_bytes());
            payload[0..8].copy_from_slice(&rng.below(0x5000).to_ne_bytes());
        }
        let flags = match rng.below(8) {
            0 => p::FLAG_NO_REPLY,
            1 => rng.next() as u32,
            _ => 0,
        };
        let fds = match rng.below(10) {
            0 => vec![efd.as_raw_fd()],
            1 => vec![g.file.as_raw_fd()],
            2 => vec![efd.as_raw_fd(); 3],
            _ => vec![],
        };
        let mut msg = p::build_message(i as u16, cmd, flags, 0, &payload);
        if rng.below(10) == 0 {
            // A size field that lies (short of the bytes sent): the stream desynchronises.
            let lie = rng.below(msg.len() as u64) as u32;
            msg[4..8].copy_from_slice(&lie.to_ne_bytes());
        }
        let sent = c.send_raw(&msg, &fds).is_ok();
        if !sent || !ping(&mut c) {
            // The server may end a connection it cannot trust, or wait for bytes that
            // never come; either way it must serve the next client.
            reconnects += 1;
            drop(c);
            c = fuzz_client(&s);
        }
    }
    assert!(ping(&mut c), "server answers after the random messages");
    eprintln!("{reconnects} reconnects");
    assert!(reconnects < iters);
    drop(c);
    let mut c2 = s.negotiated();
    assert_eq!(c2.device_info().num_regions, 9);
}
