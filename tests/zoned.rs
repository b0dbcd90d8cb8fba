//! Zoned namespaces over the real sockets: the vnvme binary with a file-backed zoned
//! namespace, the host driver writing, appending and finishing zones, and the zone
//! states coming back after vnvme restarts (SIGKILL after a Flush, SIGTERM without
//! one) from the zone file beside the image, and after a client reconnect; a zone file of
//! another geometry refused; the control socket's zone commands.

mod common;

use common::exp::{BinServer, BIN};
use common::nvme::*;

const IO_ZONE_SEND: u8 = 0x79;
const IO_ZONE_RECV: u8 = 0x7a;
const IO_ZONE_APPEND: u8 = 0x7d;
/// Blocks per zone: 1 MiB of 512-byte blocks.
const ZONE: u64 = 2048;

fn zoned_ns(img: &std::path::Path, zone: &str) -> String {
    format!(
        "file={},size=4M,zoned=true,zoned.zone_size={zone},zoned.max_open=2",
        img.display()
    )
}

/// (state, write pointer) of every zone, from Zone Management Receive.
fn zones(n: &mut Nvme) -> Vec<(u8, u64)> {
    let buf = n.alloc(4096);
    let c = n.exec(
        1,
        Sqe::new(IO_ZONE_RECV, 1).prp(buf, 0).cdw(12, 4096 / 4 - 1),
    );
    assert_eq!(c.sc(), 0, "report zones");
    let r = n.read_mem(buf, 4096);
    let count = u64::from_le_bytes(r[0..8].try_into().unwrap()) as usize;
    (0..count)
        .map(|i| {
            let d = &r[64 + 64 * i..128 + 64 * i];
            (d[1] >> 4, u64::from_le_bytes(d[24..32].try_into().unwrap()))
        })
        .collect()
}

fn send(n: &mut Nvme, slba: u64, zsa: u32) -> u16 {
    n.exec(
        1,
        Sqe::new(IO_ZONE_SEND, 1)
            .lba(slba, 1)
            .cdw(12, 0)
            .cdw(13, zsa),
    )
    .sc()
}

#[test]
fn zone_states_survive_restarts() {
    let dir = std::env::temp_dir().join(format!("vnvme-t-zoned-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let img = dir.join("z.img");
    let ns = zoned_ns(&img, "1M");
    let mut s = BinServer::start("zoned", &[&ns], &["max_ioqpairs=2"], &[]);
    let mut n = Nvme::new(&s.server);
    n.create_io_queues(1, 16);
    assert_eq!(
        zones(&mut n),
        vec![(1, 0), (1, ZONE), (1, 2 * ZONE), (1, 3 * ZONE)]
    );
    let data = put(&mut n, 1, 0, 8, 5);
    // Zone Append: the LBA in Dwords 0 and 1.
    let buf = n.alloc(2048);
    n.write_mem(buf, &[0x77; 2048]);
    let c = n.exec(1, Sqe::new(IO_ZONE_APPEND, 1).lba(ZONE, 4).prp(buf, 0));
    assert_eq!((c.sc(), c.dw0, c.dw1), (0, ZONE as u32, 0));
    assert_eq!(send(&mut n, 2 * ZONE, 2), 0, "finish zone 2");
    // Off the write pointer: Zone Invalid Write.
    let w = n.alloc(512);
    let c = n.exec(1, Sqe::new(IO_WRITE, 1).lba(3, 1).prp(w, 0));
    assert_eq!(c.sc(), 0x1bc);
    assert_eq!(n.exec(1, Sqe::new(IO_FLUSH, 1)).sc(), 0);
    let before = zones(&mut n);
    assert_eq!(before[..3], [(2, 8), (2, ZONE + 4), (0xe, u64::MAX)]);
    drop(n);
    // A client that reconnects (a QEMU restart) finds the zones as they were.
    let mut n = Nvme::new(&s.server);
    n.create_io_queues(1, 16);
    assert_eq!(zones(&mut n), before, "after a reconnect");
    drop(n);
    // SIGKILL after the Flush: the open zones come back closed, pointers kept.
    let _ = s.child.kill();
    let _ = s.child.wait();
    let mut s = BinServer::start("zoned2", &[&ns], &["max_ioqpairs=2"], &[]);
    let mut n = Nvme::new(&s.server);
    n.create_io_queues(1, 16);
    assert_eq!(
        zones(&mut n),
        vec![(4, 8), (4, ZONE + 4), (0xe, u64::MAX), (1, 3 * ZONE)]
    );
    assert_eq!(get(&mut n, 1, 0, 8), data);
    // Writing on at the pointer opens the zone again; then SIGTERM without a Flush.
    put(&mut n, 1, 8, 8, 6);
    assert_eq!(send(&mut n, 3 * ZONE, 3), 0, "explicitly open zone 3");
    drop(n);
    assert_eq!(s.stop(), 0);
    // The trace names the zone action and the zone.
    let open = s
        .trace_lines()
        .into_iter()
        .find(|l| l["opcode_name"] == "zone-mgmt-send")
        .expect("a zone-mgmt-send line in the trace");
    assert_eq!(
        (&open["zone_action"], &open["slba"]),
        (&"open".into(), &(3 * ZONE).into()),
        "{open}"
    );
    assert!(open.get("select_all").is_none(), "{open}");
    let s = BinServer::start("zoned3", &[&ns], &["max_ioqpairs=2"], &[]);
    let mut n = Nvme::new(&s.server);
    n.create_io_queues(1, 16);
    assert_eq!(
        zones(&mut n),
        vec![(4, 16), (4, ZONE + 4), (0xe, u64::MAX), (1, 3 * ZONE)],
        "an opened zone with nothing written comes back empty"
    );
    drop(n);
    drop(s);
    // Another zone size over the same image: the zone file is refused, by name.
    let out = std::process::Command::new(BIN)
        .args(["--socket", dir.join("x.sock").to_str().unwrap(), "--ns"])
        .arg(zoned_ns(&img, "512K"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("z.img.zones") && err.contains("geometry"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The control socket's zone commands: query-zones lists states and pointers (bounded),
/// set-zone-state makes a zone read-only (writes then fail with Zone Is Read Only, reads
/// work, the host may only take it offline) or offline (reads fail with Zone Is Offline),
/// and both states come back from the zone file after a restart.
#[test]
fn control_socket_zone_states() {
    let dir = std::env::temp_dir().join(format!("vnvme-t-zonectl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let img = dir.join("z.img");
    let ns = zoned_ns(&img, "1M");
    let mut s = BinServer::start("zonectl", &[&ns], &["max_ioqpairs=2"], &[]);
    let mut n = Nvme::new(&s.server);
    n.create_io_queues(1, 16);
    let data = put(&mut n, 1, 0, 8, 9);
    let q = s.ok("query-zones", serde_json::json!({"nsid": 1}));
    assert_eq!(
        (&q["nr_zones"], &q["open"], &q["active"]),
        (&4.into(), &1.into(), &1.into()),
        "{q}"
    );
    assert_eq!(
        (&q["zones"][0]["state"], &q["zones"][0]["wp"]),
        (&"implicitly-open".into(), &8.into()),
        "{q}"
    );
    let q = s.ok(
        "query-zones",
        serde_json::json!({"nsid": 1, "zone": 3, "count": 5}),
    );
    assert_eq!(q["zones"].as_array().unwrap().len(), 1, "{q}");
    assert_eq!(q["zones"][0]["zslba"], 3 * ZONE);
    for bad in [
        serde_json::json!({"nsid": 1, "count": 0}),
        serde_json::json!({"nsid": 1, "count": 1025}),
        serde_json::json!({"nsid": 7}),
        serde_json::json!({"nsid": 1, "zone": 9, "state": "offline"}),
        serde_json::json!({"nsid": 1, "zone": 1, "state": "full"}),
    ] {
        let cmd = if bad.get("state").is_some() {
            "set-zone-state"
        } else {
            "query-zones"
        };
        assert!(
            s.ctl(cmd, bad.clone()).get("error").is_some(),
            "{cmd} {bad}"
        );
    }
    let r = s.ok(
        "set-zone-state",
        serde_json::json!({"nsid": 1, "zone": 0, "state": "read-only"}),
    );
    assert_eq!(
        (&r["was"], &r["state"]),
        (&"implicitly-open".into(), &"read-only".into()),
        "{r}"
    );
    let q = s.ok("query-zones", serde_json::json!({"nsid": 1, "count": 1}));
    assert_eq!((&q["open"], &q["active"]), (&0.into(), &0.into()), "{q}");
    let w = n.alloc(512);
    let c = n.exec(1, Sqe::new(IO_WRITE, 1).lba(8, 1).prp(w, 0));
    assert_eq!(c.status, 0x41ba, "write to a read-only zone, with DNR");
    assert_eq!(get(&mut n, 1, 0, 8), data, "a read-only zone reads");
    assert_eq!(send(&mut n, 0, 4), 0x1bf, "reset of a read-only zone");
    s.ok(
        "set-zone-state",
        serde_json::json!({"nsid": 1, "zone": 2, "state": "offline"}),
    );
    let r = n.alloc(512);
    let c = n.exec(1, Sqe::new(IO_READ, 1).lba(2 * ZONE, 1).prp(r, 0));
    assert_eq!(c.status, 0x41bb, "read of an offline zone, with DNR");
    drop(n);
    assert_eq!(s.stop(), 0);
    let s = BinServer::start("zonectl2", &[&ns], &["max_ioqpairs=2"], &[]);
    let mut n = Nvme::new(&s.server);
    n.create_io_queues(1, 16);
    let z = zones(&mut n);
    assert_eq!(
        (z[0].0, z[2].0),
        (0xd, 0xf),
        "read-only and offline after a restart: {z:?}"
    );
    // The host may take a read-only zone offline.
    assert_eq!(send(&mut n, 0, 5), 0, "offline the read-only zone");
    assert_eq!(zones(&mut n)[0].0, 0xf);
    drop(n);
    drop(s);
    std::fs::remove_dir_all(&dir).unwrap();
}
