//! Protection information over the real vfio-user socket: a namespace configured with
//! `--ns ms=8,pi=1` and one with `ms=16,pi=1,pif=2,mset=1`, driven as a host driver
//! would (MPTR buffers, extended LBAs, PRINFO), and hostile metadata pointers: outside
//! the DMA maps, wrapping the address space, an SGL descriptor of the wrong type.

mod common;

use common::nvme::*;
use common::TestServer;

fn server(tag: &str) -> TestServer {
    let args = vnvme::cli::RunArgs {
        socket: "unused".into(),
        ns: vec![
            "size=4M,ms=8,pi=1".into(),
            "size=8M,logical_block_size=4096,ms=16,pi=1,pif=2,mset=1".into(),
        ],
        ctrl: vec!["max_ioqpairs=2".into()],
        print_qemu_args: false,
        ns_dir: None,
        capacity: None,
        lbafs: None,
    };
    TestServer::start(tag, &args.device_config().expect("config"))
}

const PRACT: u32 = 8;
const PRCHK: u32 = 7;

/// A Read/Write with PRINFO `pr`, reference tag `rt`, application tag/mask, MPTR.
#[allow(clippy::too_many_arguments)]
fn pi_rw(op: u8, nsid: u32, slba: u64, nlb: u32, pr: u32, rt: u32, at: u16, mptr: u64) -> Sqe {
    let s = Sqe::new(op, nsid).lba(slba, nlb);
    let cdw12 = s.0[12] | pr << 26;
    s.cdw(12, cdw12)
        .cdw(4, mptr as u32)
        .cdw(5, (mptr >> 32) as u32)
        .cdw(14, rt)
        .cdw(15, at as u32 | 0xffff << 16)
}

#[test]
fn separate_metadata_tuples_made_by_pract_are_checked_and_returned() {
    let s = server("pi-separate");
    let mut n = Nvme::new(&s);
    n.create_io_queues(1, 16);
    let id = n.identify(0, 1);
    assert_eq!(
        (id[26], id[29]),
        (0x01, 0x01),
        "FLBAS separate (format 1, 512+8), DPS Type 1"
    );
    assert_eq!(
        u32::from_le_bytes(id[132..136].try_into().unwrap()) & 0xffff,
        8,
        "LBAF0 MS"
    );
    let data = pattern(1024, 7);
    let buf = n.alloc(4096);
    n.write_mem(buf, &data);
    let c = n.exec(
        1,
        pi_rw(IO_WRITE, 1, 50, 2, PRACT, 50, 0x1234, 0).prp(buf, 0),
    );
    assert_eq!(c.status, 0, "PRACT write");
    let meta = n.alloc(4096);
    let rbuf = n.alloc(4096);
    let c = n.exec(
        1,
        pi_rw(IO_READ, 1, 50, 2, PRCHK, 50, 0x1234, meta).prp(rbuf, 0),
    );
    assert_eq!(c.status, 0, "checked read");
    assert_eq!(n.read_mem(rbuf, 1024), data);
    let m = n.read_mem(meta, 16);
    assert_eq!(&m[2..8], &[0x12, 0x34, 0, 0, 0, 50]);
    assert_eq!(&m[10..16], &[0x12, 0x34, 0, 0, 0, 51]);
    // A wrong expected application tag: 0x283 with DNR.
    let c = n.exec(
        1,
        pi_rw(IO_READ, 1, 50, 2, 2, 50, 0x1235, meta).prp(rbuf, 0),
    );
    assert_eq!(c.status, 0x4283);
}

#[test]
fn extended_lbas_carry_the_64_bit_tuple_in_the_data_buffer() {
    let s = server("pi-extended");
    let mut n = Nvme::new(&s);
    n.create_io_queues(1, 16);
    let id = n.identify(0, 2);
    assert_eq!(
        (id[26], id[29]),
        (0x16, 0x01),
        "FLBAS extended, format 6 (4096+16), DPS Type 1"
    );
    // 4096 + 16 bytes: two pages; PRACT writes take data only (the tuple is all of it).
    let data = pattern(4096, 9);
    let buf = n.alloc(8192);
    n.write_mem(buf, &data);
    let c = n.exec(1, pi_rw(IO_WRITE, 2, 3, 1, PRACT, 3, 0x0bad, 0).prp(buf, 0));
    assert_eq!(c.status, 0);
    let rbuf = n.alloc(8192);
    let c = n.exec(
        1,
        pi_rw(IO_READ, 2, 3, 1, PRCHK, 3, 0x0bad, 0).prp(rbuf, rbuf + 4096),
    );
    assert_eq!(c.status, 0, "checked extended read");
    let got = n.read_mem(rbuf, 4112);
    assert_eq!(&got[..4096], &data[..]);
    assert_eq!(&got[4104..4112], &[0x0b, 0xad, 0, 0, 0, 0, 0, 3]);
}

#[test]
fn hostile_metadata_pointers_get_data_transfer_or_sgl_errors_and_the_server_goes_on() {
    let s = server("pi-hostile");
    let mut n = Nvme::new(&s);
    n.create_io_queues(1, 16);
    let buf = n.alloc(4096);
    n.write_mem(buf, &pattern(512, 1));
    // MPTR outside every DMA map, and one that wraps the address space.
    for mptr in [0x7fff_0000_0000u64, u64::MAX - 3] {
        let c = n.exec(1, pi_rw(IO_WRITE, 1, 7, 1, 0, 7, 0, mptr).prp(buf, 0));
        assert_eq!(c.sc(), 0x0004, "MPTR {mptr:#x}: Data Transfer Error");
        let c = n.exec(1, pi_rw(IO_READ, 1, 7, 1, 0, 7, 0, mptr).prp(buf, 0));
        assert_eq!(c.sc(), 0x0004, "MPTR {mptr:#x} on a read");
    }
    // PSDT 10b: MPTR names an SGL descriptor; a reserved descriptor type is refused.
    let desc = n.alloc(4096);
    let mut d = [0u8; 16];
    d[15] = 0xf0;
    n.write_mem(desc, &d);
    let sgl_data = {
        let mut dd = [0u8; 16];
        dd[0..8].copy_from_slice(&buf.to_le_bytes());
        dd[8..12].copy_from_slice(&512u32.to_le_bytes());
        dd
    };
    let mut sqe = pi_rw(IO_WRITE, 1, 7, 1, 0, 7, 0, desc);
    sqe.0[0] |= 2 << 14;
    for (i, w) in sgl_data.chunks(4).enumerate() {
        sqe.0[6 + i] = u32::from_le_bytes(w.try_into().unwrap());
    }
    let c = n.exec(1, sqe);
    assert_ne!(c.sc(), 0, "a reserved SGL descriptor type for the metadata");
    // A good MPTR SGL data block descriptor works.
    let meta = n.alloc(4096);
    n.write_mem(meta, &[0u8; 8]);
    let mut d = [0u8; 16];
    d[0..8].copy_from_slice(&meta.to_le_bytes());
    d[8..12].copy_from_slice(&8u32.to_le_bytes());
    n.write_mem(desc, &d);
    let c = n.exec(1, sqe);
    assert_eq!(c.status, 0, "MPTR through an SGL data block descriptor");
    // The queue still works.
    let c = n.exec(1, pi_rw(IO_READ, 1, 7, 1, 0, 7, 0, meta).prp(buf, 0));
    assert_eq!(c.status, 0);
}
