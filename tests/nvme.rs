//! End-to-end NVMe over vfio-user: a host driver in the test talks to the controller
//! model through the real socket, DMA maps and eventfds.

mod common;

use std::time::Duration;

use vfio_bindings::bindings::vfio as vb;
use vnvme::vfio_user::protocol::Command;

use common::nvme::*;
use common::{run_vnvme, small_config, wait_eventfd, TestServer};

fn server(tag: &str) -> TestServer {
    TestServer::start(tag, &small_config())
}

fn le16(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}

fn le32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

fn le64(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(a)
}

#[test]
fn enable_and_identify() {
    let s = server("nvme-identify");
    let mut n = Nvme::new(&s);
    assert!((n.cap & 0xffff) >= 1, "MQES");
    assert_ne!(n.cap & (1 << 37), 0, "NVM command set");
    assert!(n.c.bar0_read32(REG_VS) >= 0x0001_0400, "NVMe 1.4 or later");

    let id = n.identify(1, 0);
    assert_eq!(le16(&id, 0), 0x1b36, "VID");
    assert_eq!(le16(&id, 2), 0x1af4, "SSVID");
    assert_eq!(&id[4..13], b"VNVME0001", "serial");
    assert_ne!(
        le16(&id, 256) & (1 << 8),
        0,
        "OACS advertises Doorbell Buffer Config"
    );
    assert!(le32(&id, 516) >= 1, "NN");

    let ns = n.identify(0, 1);
    assert_eq!(le64(&ns, 0), (4 << 20) / LBS, "NSZE");
    assert_eq!(le16(&ns, 74), 128, "MSSRL");
    assert_eq!(le32(&ns, 76), 128, "MCL");
    assert_eq!(ns[80], 127, "MSRC");

    let list = n.identify(2, 0);
    assert_eq!(le32(&list, 0), 1);
    assert_eq!(le32(&list, 4), 0);
}

#[test]
fn read_write_with_prp_lists_and_msix_interrupts() {
    let s = server("nvme-prp");
    let mut n = Nvme::new(&s);
    n.create_io_queues(2, 16);
    for (pages, slba, seed) in [(1u64, 0u64, 1u8), (2, 100, 2), (16, 1000, 3), (64, 2000, 4)] {
        let len = pages * PAGE;
        let nlb = (len / LBS) as u32;
        let wbuf = n.alloc(len);
        let data = pattern(len as usize, seed);
        n.write_mem(wbuf, &data);
        let (p1, p2) = n.prps(wbuf, len);
        let cid = n.submit(1, Sqe::new(IO_WRITE, 1).lba(slba, nlb).prp(p1, p2));
        let (c, fired) = n.wait_cqe_irq(1);
        assert_eq!((c.cid, c.sc()), (cid, 0), "write {pages} pages");
        assert!(fired, "MSI-X vector 1 fired for queue 1");

        let rbuf = n.alloc(len);
        let c = n.rw_prp(2, Sqe::new(IO_READ, 1).lba(slba, nlb), rbuf, len);
        assert_eq!(c.sc(), 0);
        assert_eq!(
            n.read_mem(rbuf, len as usize),
            data,
            "{pages} pages read back"
        );
    }
    // Vector 2 (queue 2) fired, vector 1 did not fire for queue 2's completions.
    assert!(wait_eventfd(&n.irq[1], Duration::from_millis(50)).is_none());
}

#[test]
fn read_write_with_sgls() {
    let s = server("nvme-sgl");
    let mut n = Nvme::new(&s);
    let id = n.identify(1, 0);
    assert_ne!(le32(&id, 536) & 3, 0, "SGLS advertised");
    n.create_io_queues(1, 8);
    // 8 blocks scattered over three buffers of odd sizes.
    let a = n.alloc(PAGE);
    let b = n.alloc(PAGE);
    let c = n.alloc(PAGE);
    let data = pattern(4096, 9);
    n.write_mem(a + 100, &data[..1024]);
    n.write_mem(b + 7, &data[1024..3072]);
    n.write_mem(c, &data[3072..]);
    let r = n.rw_sgl(
        1,
        Sqe::new(IO_WRITE, 1).lba(40, 8),
        &[(a + 100, 1024), (b + 7, 2048), (c, 1024)],
    );
    assert_eq!(r.sc(), 0, "SGL write");
    // Read back with PRPs.
    let rb = n.alloc(PAGE);
    assert_eq!(
        n.rw_prp(1, Sqe::new(IO_READ, 1).lba(40, 8), rb, 4096).sc(),
        0
    );
    assert_eq!(n.read_mem(rb, 4096), data);
    // Read back with an SGL into two pieces.
    let x = n.alloc(PAGE);
    let y = n.alloc(PAGE);
    let r = n.rw_sgl(
        1,
        Sqe::new(IO_READ, 1).lba(40, 8),
        &[(x + 1, 512), (y, 3584)],
    );
    assert_eq!(r.sc(), 0, "SGL read");
    let mut got = n.read_mem(x + 1, 512);
    got.extend(n.read_mem(y, 3584));
    assert_eq!(got, data);
    // An SGL shorter than the transfer is refused (Data SGL Length Invalid, 0x0f).
    let r = n.rw_sgl(1, Sqe::new(IO_READ, 1).lba(40, 8), &[(x, 512)]);
    assert_ne!(r.sc(), 0);
}

#[test]
fn out_of_range_lba_is_an_error() {
    let s = server("nvme-lba");
    let mut n = Nvme::new(&s);
    n.create_io_queues(1, 4);
    let buf = n.alloc(PAGE);
    let nsze = (4 << 20) / LBS;
    let c = n.rw_prp(1, Sqe::new(IO_READ, 1).lba(nsze - 1, 2), buf, 1024);
    assert_eq!(c.sc(), 0x80, "LBA Out of Range");
    assert_ne!(c.status & (1 << 14), 0, "DNR");
    // NSID 7 is valid (<= NN) but inactive: Invalid Field; 0 is an invalid NSID.
    let c = n.rw_prp(1, Sqe::new(IO_READ, 7).lba(0, 1), buf, 512);
    assert_eq!(c.sc(), 0x02, "Invalid Field in Command");
    let c = n.rw_prp(1, Sqe::new(IO_READ, 0).lba(0, 1), buf, 512);
    assert_eq!(c.sc(), 0x0b, "Invalid Namespace or Format");
    // The queue still works.
    assert_eq!(
        n.rw_prp(1, Sqe::new(IO_READ, 1).lba(0, 1), buf, 512).sc(),
        0
    );
}

#[test]
fn masked_msix_vector_is_pending_until_unmasked() {
    let s = server("nvme-mask");
    let mut n = Nvme::new(&s);
    n.create_io_queues(1, 4);
    let mask = vb::VFIO_IRQ_SET_DATA_NONE | vb::VFIO_IRQ_SET_ACTION_MASK;
    let unmask = vb::VFIO_IRQ_SET_DATA_NONE | vb::VFIO_IRQ_SET_ACTION_UNMASK;
    n.c.set_irqs_raw(mask, 2, 1, 1, &[], &[]).ok();
    let buf = n.alloc(PAGE);
    n.submit(1, Sqe::new(IO_READ, 1).prp(buf, 0).cdw(12, 0));
    // The completion arrives, the interrupt does not.
    let deadline = std::time::Instant::now() + common::TIMEOUT;
    let cqe = loop {
        if let Some(c) = n.poll_cqe(1) {
            break c;
        }
        assert!(std::time::Instant::now() < deadline, "no completion");
        std::thread::sleep(Duration::from_millis(2));
    };
    assert_eq!(cqe.sc(), 0);
    assert!(wait_eventfd(&n.irq[1], Duration::from_millis(100)).is_none());
    let pba_off = (n.c.cfg_read32(0x58) & !7) as u64;
    assert_eq!(n.c.region_read(4, pba_off, 1)[0] & 0b10, 0b10, "PBA bit 1");
    n.c.set_irqs_raw(unmask, 2, 1, 1, &[], &[]).ok();
    assert!(wait_eventfd(&n.irq[1], common::TIMEOUT).is_some());
    assert_eq!(n.c.region_read(4, pba_off, 1)[0] & 0b10, 0);
}

#[test]
fn intx_without_msix() {
    let s = server("nvme-intx");
    let mut n = Nvme::with_irqs(&s, false);
    let buf = n.alloc(PAGE);
    let identify = Sqe::new(ADMIN_IDENTIFY, 0).prp(buf, 0).cdw(10, 1);
    n.submit(0, identify);
    let (c, fired) = n.wait_cqe_irq(0);
    assert_eq!(c.sc(), 0);
    assert!(fired, "INTx fired");
    // Automasked: the next completion raises nothing until the client unmasks (QEMU
    // does so at EOI); then the pending assertion is delivered.
    n.submit(0, identify);
    let (c, fired) = n.wait_cqe_irq(0);
    assert_eq!(c.sc(), 0);
    assert!(!fired, "INTx stays masked");
    let unmask = vb::VFIO_IRQ_SET_DATA_NONE | vb::VFIO_IRQ_SET_ACTION_UNMASK;
    n.c.set_irqs_raw(unmask, 0, 0, 1, &[], &[]).ok();
    assert!(
        wait_eventfd(&n.irq[0], common::TIMEOUT).is_some(),
        "pending INTx delivered on unmask"
    );
}

#[test]
fn shadow_doorbells() {
    let s = server("nvme-dbbuf");
    let mut n = Nvme::new(&s);
    n.create_io_queues(2, 8);
    n.enable_dbbuf();
    let (_, ei) = n.dbbuf.unwrap();
    // Many commands, wrapping both queues several times; queue 1 ends at tail 42 % 8.
    for i in 0..41u64 {
        let q = 1 + (i % 2) as u16;
        let buf = n.alloc(PAGE);
        let data = pattern(4096, i as u8);
        n.write_mem(buf, &data);
        assert_eq!(
            n.rw_prp(q, Sqe::new(IO_WRITE, 1).lba(i * 8, 8), buf, 4096)
                .sc(),
            0
        );
        let rb = n.alloc(PAGE);
        assert_eq!(
            n.rw_prp(q, Sqe::new(IO_READ, 1).lba(i * 8, 8), rb, 4096)
                .sc(),
            0
        );
        assert_eq!(n.read_mem(rb, 4096), data, "command {i}");
    }
    // The controller publishes EventIdx (= the SQ head it reached) before it sleeps.
    let deadline = std::time::Instant::now() + common::TIMEOUT;
    loop {
        let ev = n.read_mem(ei, 64);
        if le32(&ev, 8) == 42 % 8 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "EventIdx of SQ 1 never reached 2: {:?}",
            &ev[..24]
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // The tail is taken from the shadow buffer: ring MMIO with a stale value.
    let before = n.mmio_doorbells;
    let buf = n.alloc(PAGE);
    let cid = n.submit(1, Sqe::new(IO_READ, 1).prp(buf, 0).cdw(12, 0));
    if n.mmio_doorbells == before {
        n.c.region_write_posted(0, DOORBELL_BASE + 8, &0u32.to_le_bytes());
    }
    let c = n.wait_cqe(1);
    assert_eq!((c.cid, c.sc()), (cid, 0));
}

#[test]
fn reconnect_keeps_namespace_data() {
    let s = server("nvme-reconnect");
    let data = pattern(8192, 77);
    {
        let mut n = Nvme::new(&s);
        n.create_io_queues(1, 4);
        let buf = n.alloc(8192);
        n.write_mem(buf, &data);
        assert_eq!(
            n.rw_prp(1, Sqe::new(IO_WRITE, 1).lba(500, 16), buf, 8192)
                .sc(),
            0
        );
        // Leave the controller enabled with queues live: the disconnect must clean up.
    }
    let mut c = s.negotiated();
    // A new client finds config space at power-on: memory space off, BAR0 reads all ones.
    assert_eq!(c.bar0_read32(REG_CSTS), u32::MAX, "memory space disabled");
    c.cfg_write16(0x04, 0x0002);
    assert_eq!(
        c.bar0_read32(REG_CSTS) & 1,
        0,
        "controller disabled after disconnect"
    );
    drop(c);
    let mut n = Nvme::new(&s);
    n.create_io_queues(1, 4);
    let buf = n.alloc(8192);
    assert_eq!(
        n.rw_prp(1, Sqe::new(IO_READ, 1).lba(500, 16), buf, 8192)
            .sc(),
        0
    );
    assert_eq!(n.read_mem(buf, 8192), data);
}

#[test]
fn device_reset_disables_the_controller() {
    let s = server("nvme-reset");
    let mut n = Nvme::new(&s);
    assert_eq!(n.c.bar0_read32(REG_CSTS) & 1, 1);
    n.c.request(Command::DeviceReset, &[], &[]).ok();
    // The reset clears the PCI Command register too: BAR0 is not decoded until the
    // host enables memory space again.
    assert_eq!(n.c.bar0_read32(REG_CSTS), u32::MAX);
    n.c.cfg_write16(0x04, 0x0002);
    assert_eq!(n.c.bar0_read32(REG_CSTS) & 1, 0);
    assert_eq!(n.c.bar0_read32(REG_CC), 0);
    // It can be enabled again.
    n.c.cfg_write16(0x04, 0x0006);
    n.enable(8);
    n.identify(1, 0);
}

#[test]
fn simple_copy_end_to_end() {
    let s = server("nvme-copy");
    let mut n = Nvme::new(&s);
    let id = n.identify(1, 0);
    assert_ne!(le16(&id, 520) & (1 << 8), 0, "ONCS advertises Copy");
    assert_ne!(le16(&id, 534) & 1, 0, "OCFS advertises format 0");
    n.create_io_queues(1, 4);
    let a = pattern(2048, 5);
    let b = pattern(1024, 6);
    let buf = n.alloc(PAGE);
    n.write_mem(buf, &a);
    assert_eq!(
        n.rw_prp(1, Sqe::new(IO_WRITE, 1).lba(10, 4), buf, 2048)
            .sc(),
        0
    );
    n.write_mem(buf, &b);
    assert_eq!(
        n.rw_prp(1, Sqe::new(IO_WRITE, 1).lba(50, 2), buf, 1024)
            .sc(),
        0
    );
    // Format 0, two ranges: 10..14 then 50..52, to 200.
    let ranges = n.alloc(PAGE);
    let mut d = vec![0u8; 64];
    d[8..16].copy_from_slice(&10u64.to_le_bytes());
    d[16..18].copy_from_slice(&3u16.to_le_bytes());
    d[32 + 8..32 + 16].copy_from_slice(&50u64.to_le_bytes());
    d[32 + 16..32 + 18].copy_from_slice(&1u16.to_le_bytes());
    n.write_mem(ranges, &d);
    let c = n.exec(
        1,
        Sqe::new(IO_COPY, 1).prp(ranges, 0).cdw(10, 200).cdw(12, 1), // NR = 2 ranges (0's based), format 0
    );
    assert_eq!(c.sc(), 0, "copy status {:#x}", c.status);
    let rb = n.alloc(PAGE);
    assert_eq!(
        n.rw_prp(1, Sqe::new(IO_READ, 1).lba(200, 6), rb, 3072).sc(),
        0
    );
    let mut want = a.clone();
    want.extend(&b);
    assert_eq!(n.read_mem(rb, 3072), want);
}

#[test]
fn file_backed_namespaces_see_guest_writes() {
    let dir = common::TempDir::new("nvme-file");
    let f512 = dir.path("a.img");
    let f4k = dir.path("b.img");
    let args = vnvme::cli::RunArgs {
        socket: "unused".into(),
        ns: vec![
            format!("file={},size=1M", f512.display()),
            format!(
                "file={},size=2M,nsid=5,logical_block_size=4096",
                f4k.display()
            ),
        ],
        ctrl: vec!["max_ioqpairs=2".into()],
        print_qemu_args: false,
        ns_dir: None,
        capacity: None,
        lbafs: None,
    };
    let s = TestServer::start("nvme-file", &args.device_config().unwrap());
    let mut n = Nvme::new(&s);
    let list = n.identify(2, 0);
    assert_eq!((le32(&list, 0), le32(&list, 4), le32(&list, 8)), (1, 5, 0));
    let ns5 = n.identify(0, 5);
    assert_eq!(le64(&ns5, 0), (2 << 20) / 4096, "NSZE in 4 KiB blocks");
    let flbas = (ns5[26] & 0xf) as usize;
    let lbaf = le32(&ns5, 128 + 4 * flbas);
    assert_eq!((lbaf >> 16) & 0xff, 12, "LBADS = 4096");

    n.create_io_queues(1, 4);
    let buf = n.alloc(2 * PAGE);
    let a = pattern(1024, 21);
    n.write_mem(buf, &a);
    assert_eq!(
        n.rw_prp(1, Sqe::new(IO_WRITE, 1).lba(3, 2), buf, 1024).sc(),
        0
    );
    let b = pattern(8192, 22);
    n.write_mem(buf, &b);
    assert_eq!(
        n.rw_prp(1, Sqe::new(IO_WRITE, 5).lba(7, 2), buf, 8192).sc(),
        0
    );
    assert_eq!(n.exec(1, Sqe::new(IO_FLUSH, 1)).sc(), 0);
    assert_eq!(n.exec(1, Sqe::new(IO_FLUSH, 5)).sc(), 0);

    let on_disk = std::fs::read(&f512).unwrap();
    assert_eq!(on_disk.len(), 1 << 20);
    assert_eq!(&on_disk[3 * 512..5 * 512], &a[..]);
    let on_disk = std::fs::read(&f4k).unwrap();
    assert_eq!(&on_disk[7 * 4096..9 * 4096], &b[..]);
}

// ---------------------------------------------------------------------------------------
// Simple Copy over the real socket.

/// A Copy of `ranges` into `nsid` at `sdlba`.
fn copy(n: &mut Nvme, nsid: u32, sdlba: u64, format: u32, ranges: &[(u32, u64, u16)]) -> Cqe {
    let list = n.alloc(PAGE);
    n.write_mem(list, &copy_descriptors(ranges));
    let nr = ranges.len() as u32 - 1;
    n.exec(
        1,
        Sqe::new(IO_COPY, nsid)
            .prp(list, 0)
            .cdw(10, sdlba as u32)
            .cdw(11, (sdlba >> 32) as u32)
            .cdw(12, nr | (format << 8)),
    )
}

/// Two 4 MiB memory namespaces with the given extra `--ns` keys.
fn copy_server(tag: &str, ns_keys: &str) -> TestServer {
    let args = vnvme::cli::RunArgs {
        socket: "unused".into(),
        ns: vec![format!("size=4M{ns_keys}"), format!("size=4M{ns_keys}")],
        ctrl: vec!["max_ioqpairs=2".into()],
        print_qemu_args: false,
        ns_dir: None,
        capacity: None,
        lbafs: None,
    };
    TestServer::start(tag, &args.device_config().unwrap())
}

#[test]
fn copy_format0_several_ranges() {
    let s = copy_server("nvme-copy0", "");
    let mut n = Nvme::new(&s);
    n.create_io_queues(1, 8);
    let a = put(&mut n, 1, 10, 4, 1);
    let b = put(&mut n, 1, 50, 8, 2);
    let c = put(&mut n, 1, 90, 1, 3);
    // Out of order, one range twice, a partial range: 50..58, 10..14, 90, 12..14.
    let r = copy(
        &mut n,
        1,
        1000,
        0,
        &[(0, 50, 8), (0, 10, 4), (0, 90, 1), (0, 12, 2)],
    );
    assert_eq!((r.sc(), r.dw0), (0, 0), "status {:#x}", r.status);
    let mut want = b.clone();
    want.extend(&a);
    want.extend(&c);
    want.extend(&a[1024..]);
    assert_eq!(get(&mut n, 1, 1000, 15), want);
    // The block after the destination is untouched.
    assert_eq!(get(&mut n, 1, 1015, 1), vec![0u8; 512]);
}

#[test]
fn copy_format2_across_namespaces_after_cdfe() {
    let s = copy_server("nvme-copy2", "");
    let mut n = Nvme::new(&s);
    let id = n.identify(1, 0);
    assert_eq!(le16(&id, 534), 0xf, "OCFS");
    n.create_io_queues(1, 8);
    let a = put(&mut n, 1, 0, 4, 11);
    let b = put(&mut n, 2, 100, 2, 12);
    // Format 2 is refused until the host enables it.
    let r = copy(&mut n, 1, 500, 2, &[(2, 100, 2)]);
    assert_eq!(r.sc(), 0x002, "Invalid Field before CDFE");
    assert_ne!(r.status & (1 << 14), 0, "DNR");
    let hbs = n.alloc(PAGE);
    let mut v = vec![0u8; 512];
    v[4] = 1 << 2; // CDFE: format 2
    n.write_mem(hbs, &v);
    n.exec_ok(0, Sqe::new(ADMIN_SET_FEATURES, 0).prp(hbs, 0).cdw(10, 0x16));
    // ns 2, ns 1, ns 2 into ns 1.
    let r = copy(&mut n, 1, 500, 2, &[(2, 100, 2), (1, 0, 4), (2, 101, 1)]);
    assert_eq!((r.sc(), r.dw0), (0, 0), "status {:#x}", r.status);
    let mut want = b.clone();
    want.extend(&a);
    want.extend(&b[512..]);
    assert_eq!(get(&mut n, 1, 500, 7), want);
}

#[test]
fn copy_over_limit_and_failure_at_range_k() {
    let s = copy_server("nvme-copy-limits", ",mssrl=4,mcl=12,msrc=3");
    let mut n = Nvme::new(&s);
    let ns = n.identify(0, 1);
    assert_eq!((le16(&ns, 74), le32(&ns, 76), ns[80]), (4, 12, 3));
    n.create_io_queues(1, 8);
    let a = put(&mut n, 1, 0, 16, 21);
    // Range 1 has 5 blocks > MSSRL 4: Command Size Limit Exceeded, DNR, Dword 0 = 1.
    let r = copy(&mut n, 1, 100, 0, &[(0, 0, 4), (0, 4, 5)]);
    assert_eq!((r.sc(), r.dw0), (0x183, 1), "status {:#x}", r.status);
    assert_ne!(r.status & (1 << 14), 0, "DNR");
    // Five ranges > MSRC 3 + 1: refused as a whole.
    let five = [(0, 0, 1), (0, 1, 1), (0, 2, 1), (0, 3, 1), (0, 4, 1)];
    let r = copy(&mut n, 1, 200, 0, &five);
    assert_eq!((r.sc(), r.dw0), (0x183, 0));
    assert_ne!(r.status & (1 << 14), 0, "DNR");
    // Exactly MCL (12 blocks) is fine, 13 blocks are refused as a whole.
    let r = copy(&mut n, 1, 200, 0, &[(0, 0, 4), (0, 4, 4), (0, 8, 4)]);
    assert_eq!(r.sc(), 0, "exactly MCL");
    assert_eq!(get(&mut n, 1, 200, 12), a[..12 * 512].to_vec());
    let r = copy(
        &mut n,
        1,
        300,
        0,
        &[(0, 0, 4), (0, 4, 4), (0, 8, 4), (0, 12, 1)],
    );
    assert_eq!((r.sc(), r.dw0), (0x183, 0));
    assert_ne!(r.status & (1 << 14), 0, "DNR");
    assert_eq!(get(&mut n, 1, 300, 1), vec![0u8; 512], "nothing copied");
    let nsze = (4 << 20) / LBS;
    // Range 2 reads past the end: LBA Out of Range, Dword 0 = 2; ranges 0 and 1 written.
    let r = copy(
        &mut n,
        1,
        400,
        0,
        &[(0, 8, 2), (0, 0, 3), (0, nsze - 1, 2), (0, 5, 1)],
    );
    assert_eq!((r.sc(), r.dw0), (0x080, 2), "status {:#x}", r.status);
    assert_ne!(r.status & (1 << 14), 0, "DNR");
    let mut want = a[8 * 512..10 * 512].to_vec();
    want.extend(&a[..3 * 512]);
    assert_eq!(get(&mut n, 1, 400, 5), want);
    assert_eq!(
        get(&mut n, 1, 405, 2),
        vec![0u8; 1024],
        "range 2 and 3 not written"
    );
}

// ---------------------------------------------------------------------------------------
// The binary: Copy options at start-up, `vnvme bench copy`.

#[test]
fn copy_options_are_checked_at_start_up() {
    for (args, needle) in [
        (vec!["--ns", "size=1M,mssrl=0"], "--ns mssrl: must not be 0"),
        (vec!["--ns", "size=1M,mcl=0"], "--ns mcl: must not be 0"),
        (vec!["--ns", "size=1M,msrc=256"], "--ns msrc"),
        (vec!["--ctrl", "ocfs=0x10"], "--ctrl ocfs"),
        (vec!["--ctrl", "ocfs=four"], "--ctrl ocfs"),
        (vec!["--ctrl", "copy=perhaps"], "--ctrl copy"),
    ] {
        let mut all = args.clone();
        all.extend(["--print-qemu-args"]);
        let (code, _, err) = run_vnvme(&all);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
    }
    let (code, _, err) = run_vnvme(&["--ctrl", "copy=off,ocfs=0x1", "--print-qemu-args"]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn bench_copy_runs_and_prints_three_measurements() {
    let dir = common::TempDir::new("bench");
    let file = dir.path("bench.img");
    let (code, out, err) = run_vnvme(&[
        "bench",
        "copy",
        "--size",
        "16M",
        "--file",
        file.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    for prefix in ["raw copy_file_range", "read+write", "vnvme Copy"] {
        let n = out.lines().filter(|l| l.starts_with(prefix)).count();
        assert_eq!(n, 1, "one '{prefix}' line:\n{out}");
        let line = out.lines().find(|l| l.starts_with(prefix)).unwrap();
        assert!(line.contains("MB/s"), "{line}");
    }
    assert!(out.contains("vnvme/raw"), "{out}");
    assert!(out.contains("vnvme/read+write"), "{out}");
    assert!(file.exists(), "a --file given by the user is kept");
    let (code, _, err) = run_vnvme(&["bench", "copy", "--size", "lots"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--size"), "{err}");
}

#[test]
fn many_commands_in_flight_on_several_queues() {
    let s = server("nvme-qd");
    let mut n = Nvme::new(&s);
    n.create_io_queues(3, 16);
    let mut expect = Vec::new();
    let mut cids = std::collections::HashSet::new();
    // 10 writes on each of 3 queues before reaping anything.
    for i in 0..30u64 {
        let q = 1 + (i % 3) as u16;
        let buf = n.alloc(PAGE);
        let data = pattern(4096, 100 + i as u8);
        n.write_mem(buf, &data);
        let cid = n.submit(q, Sqe::new(IO_WRITE, 1).lba(i * 8, 8).prp(buf, 0));
        cids.insert((q, cid));
        expect.push((i * 8, data));
    }
    for _ in 0..10 {
        for q in 1..=3 {
            let c = n.wait_cqe(q);
            assert_eq!(c.sc(), 0);
            assert!(cids.remove(&(q, c.cid)), "unexpected completion {c:?}");
        }
    }
    assert!(cids.is_empty());
    for (slba, data) in expect {
        let rb = n.alloc(PAGE);
        assert_eq!(
            n.rw_prp(2, Sqe::new(IO_READ, 1).lba(slba, 8), rb, 4096)
                .sc(),
            0
        );
        assert_eq!(n.read_mem(rb, 4096), data, "LBA {slba}");
    }
}
