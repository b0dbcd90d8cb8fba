//! Namespace management over the real sockets: the vnvme binary with `--capacity` and
//! `--ns-dir`, a namespace created from the control socket and seen by the host
//! driver, formatted, detached by the host's own Namespace Attachment, deleted; the
//! trace and counters show the commands; hostile data structures get the spec's
//! statuses and touch nothing.

mod common;

use common::exp::BinServer;
use common::nvme::*;
use serde_json::json;

const NS_MGMT: u8 = 0x0d;
const NS_ATTACH: u8 = 0x15;
const FORMAT: u8 = 0x80;

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
}

fn active(n: &mut Nvme) -> Vec<u32> {
    let d = n.identify(2, 0);
    (0..1024)
        .map(|i| u32::from_le_bytes(d[i * 4..i * 4 + 4].try_into().unwrap()))
        .take_while(|&x| x != 0)
        .collect()
}

#[test]
fn control_socket_and_host_share_one_namespace_table() {
    let dir = std::env::temp_dir().join(format!("vnvme-t-nsdir-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.to_string_lossy().to_string();
    let mut s = BinServer::start(
        "ns-mgmt",
        &["size=4M"],
        &["max_ioqpairs=2"],
        &["--capacity", "12M", "--ns-dir", &d],
    );
    let mut n = Nvme::new(&s.server);
    n.create_io_queues(1, 16);
    let id = n.identify(1, 0);
    assert_eq!((u64_at(&id, 280), u64_at(&id, 296)), (12 << 20, 8 << 20));

    // Created and attached from the device side: the host sees a second namespace.
    let r = s.ok(
        "create-namespace",
        json!({"size": 4 << 20, "lbaf": 4, "attach": true}),
    );
    assert_eq!(r, json!({"nsid": 2, "attached": true}));
    assert_eq!(active(&mut n), vec![1, 2]);
    let ns = n.identify(0, 2);
    assert_eq!((u64_at(&ns, 0), ns[26]), (1024, 4), "4096-byte blocks");
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        1,
        "its file is in --ns-dir"
    );
    let q = s.ok("query-namespaces", json!({}));
    assert_eq!(
        q["capacity"],
        json!({"total": 12 << 20, "unallocated": 4 << 20})
    );
    assert_eq!(q["namespaces"][1]["origin"], json!("created"));
    assert_eq!(q["namespaces"][1]["lbaf"], json!(4));
    let buf = n.alloc(8192);
    let data = pattern(8192, 5);
    n.write_mem(buf, &data);
    assert_eq!(
        n.rw_prp(1, Sqe::new(IO_WRITE, 2).lba(7, 2), buf, 8192).sc(),
        0
    );
    let back = n.alloc(8192);
    assert_eq!(
        n.rw_prp(1, Sqe::new(IO_READ, 2).lba(7, 2), back, 8192).sc(),
        0
    );
    assert_eq!(n.read_mem(back, 8192), data);

    // Formatted from the device side to 512-byte blocks: erased, 8192 blocks.
    assert_eq!(
        s.ok("format-namespace", json!({"nsid": 2, "lbaf": 0, "ses": 1})),
        json!({"formatted": [2]})
    );
    let ns = n.identify(0, 2);
    assert_eq!((u64_at(&ns, 0), ns[26]), (8192, 0));
    assert_eq!(get(&mut n, 2, 56, 16), vec![0u8; 16 * 512]);

    // The host detaches it with its own command; the device side deletes it.
    let buf = n.alloc(4096);
    n.write_mem(buf, &[1, 0, 0, 0]);
    let c = n.exec(0, Sqe::new(NS_ATTACH, 2).prp(buf, 0).cdw(10, 1));
    assert_eq!(c.sc(), 0);
    assert_eq!(active(&mut n), vec![1]);
    let r = s.ctl("detach-namespace", json!({"nsid": 2}));
    assert!(
        r["error"]["desc"]
            .as_str()
            .unwrap()
            .contains("namespace-not-attached"),
        "{r}"
    );
    assert_eq!(
        s.ok("delete-namespace", json!({"nsid": 2})),
        json!({"detached": []})
    );
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "removed");
    let r = s.ctl("create-namespace", json!({"size": 64 << 20}));
    assert!(
        r["error"]["desc"]
            .as_str()
            .unwrap()
            .contains("namespace-insufficient-capacity"),
        "{r}"
    );

    // The trace has the host's Namespace Attachment with its SEL; the counters count it.
    s.stop();
    let lines = s.trace_lines();
    let att: Vec<_> = lines
        .iter()
        .filter(|l| l["opcode_name"] == "namespace-attachment")
        .collect();
    assert_eq!(att.len(), 1);
    assert_eq!(
        (att[0]["sel"].clone(), att[0]["nsid"].clone()),
        (json!(1), json!(2))
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn hostile_management_commands_get_statuses_and_touch_nothing() {
    let s = BinServer::start(
        "ns-hostile",
        &["size=4M"],
        &["max_ioqpairs=2"],
        &["--capacity", "8M"],
    );
    let mut n = Nvme::new(&s.server);
    n.create_io_queues(1, 16);
    let data = put(&mut n, 1, 0, 8, 9);
    let buf = n.alloc(4096);
    let mut b = vec![0u8; 4096];
    // Controller list with 65535 entries (the page holds 2047).
    b[0..2].copy_from_slice(&0xffffu16.to_le_bytes());
    n.write_mem(buf, &b);
    let c = n.exec(0, Sqe::new(NS_ATTACH, 1).prp(buf, 0).cdw(10, 1));
    assert_eq!(c.sc(), 0x011c);
    // Create of 2^64-1 blocks: no capacity for it (no overflow, no allocation).
    b[0..16].copy_from_slice(&[0xff; 16]);
    n.write_mem(buf, &b);
    let c = n.exec(0, Sqe::new(NS_MGMT, 0).prp(buf, 0));
    assert_eq!(c.sc(), 0x0115);
    // Data pointers outside the DMA maps: nothing is read.
    let c = n.exec(0, Sqe::new(NS_MGMT, 0).prp(0xdead_0000_0000, 0));
    assert_ne!(c.sc(), 0);
    let c = n.exec(
        0,
        Sqe::new(NS_ATTACH, 1).prp(0xdead_0000_0000, 0).cdw(10, 1),
    );
    assert_ne!(c.sc(), 0);
    // Format NVM of every namespace with a format that does not exist: nothing changes.
    let c = n.exec(0, Sqe::new(FORMAT, 0xffff_ffff).cdw(10, 0x3f | (3 << 12)));
    assert_eq!(c.sc(), 0x010a);
    assert_eq!(get(&mut n, 1, 0, 8), data, "namespace 1 untouched");
    assert_eq!(active(&mut n), vec![1]);
}
