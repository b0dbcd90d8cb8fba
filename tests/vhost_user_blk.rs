//! vhost-user-blk over a real socket: a vhost-user front end (tests/common/virtio.rs)
//! against the library's disk server on a thread and against the `vnvme` binary: data,
//! flush, discard / write zeroes, GET_ID, hostile chains, reconnects, the NVMe view of
//! the same volume, options, and idle CPU.

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::nvme::{get, pattern, put, Nvme};
use common::virtio::*;
use common::{run_vnvme, wait_for_socket, TempDir, TestServer};

use vhost::vhost_user::VhostUserFrontend;
use vnvme::block::Volume;
use vnvme::hooks::NoHooks;
use vnvme::vhost_user_blk::{self as vub, Disk};

fn disk(bs: u64, size: u64, readonly: bool, queues: u16) -> Arc<Disk> {
    let v = Arc::new(Volume::memory("t", size, bs, false).unwrap());
    Arc::new(Disk::new(
        v,
        1,
        queues,
        readonly,
        vub::spec::device_id("TESTSER", 1),
    ))
}

fn serve(tag: &str, d: Arc<Disk>) -> (TempDir, std::path::PathBuf, vub::RunningDisk) {
    let _ = env_logger::builder().is_test(true).try_init();
    let dir = TempDir::new(tag);
    let sock = dir.path("blk.sock");
    let r = vub::spawn(d, &sock, Arc::new(NoHooks)).expect("spawn disk");
    (dir, sock, r)
}

#[test]
fn data_flush_discard_zeroes_and_id() {
    let (_dir, sock, _r) = serve("vub-data", disk(512, 4 << 20, false, 1));
    let mut v = VirtioBlk::connect(&sock, 0);
    for f in [F_VERSION_1, F_FLUSH, F_DISCARD, F_EVENT_IDX] {
        assert_ne!(v.features & f, 0, "feature {f:#x}");
    }
    assert_eq!(v.features & F_RO, 0);
    assert_eq!((v.capacity(), v.blk_size()), (8192, 512));
    let data = pattern(64 << 10, 7);
    assert_eq!(v.write(100, &data), S_OK);
    assert_eq!(v.read(100, data.len()), (S_OK, data.clone()));
    assert_eq!(v.bare(T_FLUSH), S_OK);
    // Discard 8 sectors at 100, write zeroes (plain and unmap) further on.
    assert_eq!(v.ranges(T_DISCARD, &[(100, 8, 0)]), S_OK);
    assert_eq!(v.ranges(T_WRITE_ZEROES, &[(108, 8, 0), (116, 16, 1)]), S_OK);
    let (s, back) = v.read(100, data.len());
    assert_eq!(s, S_OK);
    assert_eq!(&back[..32 * 512], &vec![0u8; 32 * 512][..]);
    assert_eq!(&back[32 * 512..], &data[32 * 512..]);
    let (s, id) = v.get_id();
    assert_eq!(s, S_OK);
    assert_eq!(&id[..10], b"TESTSER-1\0");
    assert_eq!(v.bare(99), S_UNSUPP);
    // Past the end, and partial sectors.
    assert_eq!(v.read(8192, 512).0, S_IOERR);
    assert_eq!(v.write(0, &[1u8; 100]), S_IOERR);
}

#[test]
fn block_size_4096_alignment() {
    let (_dir, sock, _r) = serve("vub-4k", disk(4096, 4 << 20, false, 1));
    let mut v = VirtioBlk::connect(&sock, 0);
    assert_eq!((v.capacity(), v.blk_size()), (8192, 4096));
    assert_eq!(v.write(8, &pattern(8192, 1)), S_OK);
    assert_eq!(v.write(9, &pattern(4096, 1)), S_IOERR);
    assert_eq!(v.write(8, &pattern(512, 1)), S_IOERR);
    assert_eq!(v.ranges(T_DISCARD, &[(4, 8, 0)]), S_IOERR);
    assert_eq!(v.read(8, 8192), (S_OK, pattern(8192, 1)));
}

#[test]
fn hostile_chains_then_the_device_still_works() {
    let (_dir, sock, _r) = serve("vub-hostile", disk(512, 4 << 20, false, 1));
    let mut v = VirtioBlk::connect(&sock, 0);
    let far = 0xffff_0000_0000u64;
    let ioerr: Vec<Vec<Desc>> = vec![
        vec![
            Desc(HDR, 16, F_WRITE),
            Desc(DATA, 512, F_WRITE),
            Desc(STATUS, 1, F_WRITE),
        ],
        vec![Desc(HDR, 4, 0), Desc(STATUS, 1, F_WRITE)],
        vec![
            Desc(HDR, 16, 0),
            Desc(far, 512, F_WRITE),
            Desc(STATUS, 1, F_WRITE),
        ],
        vec![
            Desc(HDR, 16, 0),
            Desc(DATA, 512, 0),
            Desc(STATUS, 1, F_WRITE),
        ],
        vec![Desc(STATUS, 1, F_WRITE)],
        vec![
            Desc(HDR, 16, 0),
            Desc(MEM_SIZE - 256, 512, F_WRITE),
            Desc(STATUS, 1, F_WRITE),
        ],
    ];
    for c in &ioerr {
        v.header(T_IN, 0);
        assert_eq!(v.submit(c), (S_IOERR, 1), "{c:?}");
    }
    // Too many descriptors (seg_max 126 + 3 data).
    v.header(T_IN, 0);
    let mut c = vec![Desc(HDR, 16, 0)];
    c.extend((0..129).map(|i| Desc(DATA + 512 * i, 512, F_WRITE)));
    c.push(Desc(STATUS, 1, F_WRITE));
    assert_eq!(v.submit(&c).0, S_IOERR);
    // No status byte: returned with used length 0, nothing written.
    for c in [
        vec![
            Desc(HDR, 16, 0),
            Desc(DATA, 512, F_WRITE),
            Desc(STATUS, 1, 0),
        ],
        vec![Desc(HDR, 16, 0), Desc(far, 1, F_WRITE)],
    ] {
        v.header(T_IN, 0);
        assert_eq!(v.submit(&c), (0xff, 0), "{c:?}");
    }
    // A next index past the ring, and a descriptor loop.
    v.header(T_IN, 0);
    v.put_desc(0, HDR, 16, 1, 500);
    assert_eq!(v.publish(0), (0xff, 0));
    v.put_desc(0, HDR, 16, 1, 1);
    v.put_desc(1, STATUS, 1, F_WRITE | 1, 0);
    assert_eq!(v.publish(0), (0xff, 0));
    // Still serving.
    let data = pattern(4096, 3);
    assert_eq!(v.write(0, &data), S_OK);
    assert_eq!(v.read(0, 4096), (S_OK, data));
}

#[test]
fn without_flush_writes_are_durable_and_read_only_views_refuse() {
    let (_dir, sock, _r) = serve("vub-ro", disk(512, 1 << 20, true, 1));
    let mut v = VirtioBlk::connect(&sock, 0);
    assert_ne!(v.features & F_RO, 0);
    assert_eq!(v.features & F_DISCARD, 0);
    assert_eq!(v.write(0, &[1u8; 512]), S_IOERR);
    assert_eq!(v.ranges(T_DISCARD, &[(0, 8, 0)]), S_IOERR);
    assert_eq!(v.read(0, 512), (S_OK, vec![0u8; 512]));
    drop(v);
    // Flush not negotiated on a writable disk: writes still complete (made durable).
    let (_dir2, sock2, _r2) = serve("vub-nof", disk(512, 1 << 20, false, 1));
    let mut v = VirtioBlk::connect(&sock2, F_FLUSH);
    assert_eq!(v.features & F_FLUSH, 0);
    assert_eq!(v.write(8, &[2u8; 1024]), S_OK);
    assert_eq!(v.read(8, 1024), (S_OK, vec![2u8; 1024]));
}

#[test]
fn multiqueue_is_announced() {
    let (_dir, sock, _r) = serve("vub-mq", disk(512, 1 << 20, false, 4));
    let mut v = VirtioBlk::connect(&sock, 0);
    assert_eq!(v.fe.get_queue_num().unwrap(), 4);
    assert_eq!(u16::from_le_bytes(v.config[34..36].try_into().unwrap()), 4);
    assert_eq!(v.write(0, &[3u8; 512]), S_OK);
}

#[test]
fn reconnect_keeps_data() {
    let (_dir, sock, r) = serve("vub-reconnect", disk(512, 1 << 20, false, 1));
    let data = pattern(8192, 11);
    {
        let mut v = VirtioBlk::connect(&sock, 0);
        assert_eq!(v.write(40, &data), S_OK);
    }
    // A front end that goes away half-way through setup.
    {
        let fe = vhost::vhost_user::Frontend::connect(&sock, 1).unwrap();
        vhost::VhostBackend::set_owner(&fe).unwrap();
    }
    for _ in 0..3 {
        let mut v = VirtioBlk::connect(&sock, 0);
        assert_eq!(v.read(40, 8192), (S_OK, data.clone()));
    }
    r.stop();
    assert!(!sock.exists(), "socket removed at stop");
}

/// The same namespace through vfio-user (NVMe) and vhost-user-blk: one volume.
#[test]
fn nvme_and_virtio_views_share_the_volume() {
    let _ = env_logger::builder().is_test(true).try_init();
    let dir = TempDir::new("vub-two");
    let img = dir.path("ns.img");
    let vsock = dir.path("blk.sock");
    let args = vnvme::cli::RunArgs {
        socket: dir.path("vnvme.sock"),
        ns: vec![format!("file={},size=4M", img.display())],
        ctrl: vec!["max_ioqpairs=4".into()],
        print_qemu_args: false,
        ns_dir: None,
        capacity: None,
        lbafs: None,
    };
    let cfg = args.device_config().unwrap();
    let vh = vnvme::cli::VhostUserBlkArgs {
        vhost_user_blk: vec![format!("socket={},ns=1", vsock.display())],
    };
    let disks = vh.disks(&cfg, Some(&args.socket)).unwrap();
    let volumes = vnvme::server::open_volumes(&cfg).unwrap();
    let dev = vnvme::server::build_on(&cfg, &volumes).unwrap();
    let bar0_size = vnvme::vfio_user::Device::region_size(&dev, 0);
    let msix_vectors = vnvme::vfio_user::Device::msix_vectors(&dev);
    let running = vnvme::server::spawn(dev, &args.socket).unwrap();
    let _disk =
        vnvme::server::spawn_vhost_user_blk(&cfg, &disks[0], &volumes, Arc::new(NoHooks)).unwrap();
    let s = TestServer {
        dir,
        socket: args.socket.clone(),
        running: Some(running),
        bar0_size,
        msix_vectors,
    };
    let mut v = VirtioBlk::connect(&vsock, 0);
    let mut n = Nvme::new(&s);
    n.create_io_queues(1, 32);
    // virtio -> NVMe.
    let data = pattern(16 * 512, 21);
    assert_eq!(v.write(64, &data), S_OK);
    assert_eq!(v.bare(T_FLUSH), S_OK);
    assert_eq!(get(&mut n, 1, 64, 16), data);
    // NVMe -> virtio.
    let nd = put(&mut n, 1, 200, 8, 33);
    assert_eq!(v.read(200, 8 * 512), (S_OK, nd));
    // Discard through virtio reads back zeroes through NVMe.
    assert_eq!(v.ranges(T_DISCARD, &[(64, 8, 0)]), S_OK);
    let back = get(&mut n, 1, 64, 16);
    assert_eq!(&back[..4096], &[0u8; 4096][..]);
    assert_eq!(&back[4096..], &data[4096..]);
}

/// A child process killed (by its own id) when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn cpu_ticks(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces) start after ')'.
    let rest = &s[s.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 (1-based), i.e. 11 and 12 after ')'.
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

#[test]
fn binary_serves_reconnects_and_idles() {
    let dir = TempDir::new("vub-bin");
    let sock = dir.path("blk.sock");
    let img = dir.path("d.img");
    let child = Command::new(env!("CARGO_BIN_EXE_vnvme"))
        .current_dir(&dir.0)
        .args([
            "--ns",
            &format!("file={},size=8M", img.display()),
            "--vhost-user-blk",
            &format!("socket={},ns=1,queues=2", sock.display()),
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn vnvme");
    let p = Proc(child);
    wait_for_socket(&sock);
    // Without --socket there is no vfio-user socket.
    assert!(!dir.path("vnvme.sock").exists());
    let data = pattern(32 << 10, 5);
    {
        let mut v = VirtioBlk::connect(&sock, 0);
        assert_eq!(v.write(2048, &data), S_OK);
        assert_eq!(v.bare(T_FLUSH), S_OK);
    }
    let mut v = VirtioBlk::connect(&sock, 0);
    assert_eq!(v.read(2048, data.len()), (S_OK, data.clone()));
    // Idle with a front end connected: CPU time over 10 s.
    std::thread::sleep(Duration::from_millis(200));
    let pid = p.0.id();
    let t0 = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(10));
    let ticks = cpu_ticks(pid) - t0;
    let hz = 100.0; // USER_HZ on Linux
    let pct = ticks as f64 / hz / 10.0 * 100.0;
    eprintln!("vhost-user-blk idle CPU over 10 s: {ticks} ticks = {pct:.3}% of a core");
    assert!(ticks <= 1, "idle CPU {pct}% of a core");
    // Data reached the file.
    drop(v);
    let mut f = vec![0u8; data.len()];
    use std::os::unix::fs::FileExt;
    std::fs::File::open(&img)
        .unwrap()
        .read_exact_at(&mut f, 2048 * 512)
        .unwrap();
    assert_eq!(f, data);
    // SIGTERM ends it (vhost-user-blk only: the signal's default action).
    let st = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let mut p = p;
    let t0 = std::time::Instant::now();
    loop {
        if p.0.try_wait().unwrap().is_some() {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "vnvme ignored SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn options_and_qemu_args() {
    for (args, needle) in [
        (
            vec![
                "--ns",
                "size=1M",
                "--vhost-user-blk",
                "socket=/tmp/x.sock,ns=7",
            ],
            "--vhost-user-blk ns: no namespace 7 (the --ns list has 1)",
        ),
        (
            vec![
                "--ns",
                "size=1M",
                "--ns",
                "size=1M",
                "--vhost-user-blk",
                "socket=/tmp/x.sock,ns=3",
            ],
            "--vhost-user-blk ns: no namespace 3 (the --ns list has 1, 2)",
        ),
        (
            vec!["--vhost-user-blk", "socket=/tmp/x.sock,ns=1,queues=17"],
            "--vhost-user-blk queues: 17 is not 1 to 16",
        ),
        (
            vec!["--vhost-user-blk", "socket=/tmp/x.sock,ns=1,queues=0"],
            "--vhost-user-blk queues",
        ),
        (
            vec!["--vhost-user-blk", "ns=1"],
            "--vhost-user-blk socket: required",
        ),
        (
            vec!["--vhost-user-blk", "socket=/tmp/x.sock"],
            "--vhost-user-blk ns: required",
        ),
        (
            vec!["--vhost-user-blk", "socket=/tmp/x.sock,ns=1,colour=red"],
            "--vhost-user-blk: unknown key 'colour'",
        ),
        (
            vec!["--vhost-user-blk", "socket=/tmp/x.sock,ns=1,readonly=maybe"],
            "--vhost-user-blk readonly",
        ),
        (
            vec![
                "--vhost-user-blk",
                "socket=/tmp/x.sock,ns=1",
                "--vhost-user-blk",
                "socket=/tmp/x.sock,ns=1",
            ],
            "--vhost-user-blk socket: /tmp/x.sock is used twice",
        ),
    ] {
        let (code, _, err) = run_vnvme(&args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
    }
    let (code, out, _) = run_vnvme(&[
        "--vhost-user-blk",
        "socket=/run/b.sock,ns=1,queues=4",
        "--print-qemu-args",
    ]);
    assert_eq!(code, 0);
    assert!(out.contains("memory-backend-memfd"), "{out}");
    assert!(out.contains("share=on"), "{out}");
    assert!(out.contains("'socket,id=vub0,path=/run/b.sock'"), "{out}");
    assert!(
        out.contains("-device vhost-user-blk-pci,chardev=vub0,num-queues=4"),
        "{out}"
    );
    assert!(!out.contains("vfio-user-pci"), "{out}");
    let (code, out, _) = run_vnvme(&[
        "--socket",
        "/run/n.sock",
        "--vhost-user-blk",
        "socket=/run/b.sock,ns=1",
        "--print-qemu-args",
    ]);
    assert_eq!(code, 0);
    assert!(
        out.contains("vfio-user-pci") && out.contains("vhost-user-blk-pci"),
        "{out}"
    );
}

fn ctl(path: &std::path::Path, req: serde_json::Value) -> serde_json::Value {
    vnvme::experiment::control::request(path, &req, Duration::from_secs(10)).expect("control")
}

/// The binary gives its disks the same experiment state as the NVMe controller: a
/// fault installed on the control socket fails a virtio-blk read (IOERR, no data
/// touched), `transport` narrows a fault to one front end, a latency delays virtio
/// reads, counters appear under "virtio-blk:1" and the trace holds virtio-blk records.
#[test]
fn experiment_hooks_apply_to_the_virtio_view() {
    let dir = TempDir::new("vub-exp");
    let sock = dir.path("blk.sock");
    let control = dir.path("ctl.sock");
    let trace = dir.path("trace.jsonl");
    let child = Command::new(env!("CARGO_BIN_EXE_vnvme"))
        .current_dir(&dir.0)
        .args([
            "--ns",
            "size=8M",
            "--vhost-user-blk",
            &format!("socket={},ns=1", sock.display()),
            "--control",
            &control.display().to_string(),
            "--trace",
            &trace.display().to_string(),
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn vnvme");
    let p = Proc(child);
    wait_for_socket(&sock);
    wait_for_socket(&control);
    let mut v = VirtioBlk::connect(&sock, 0);
    let data = pattern(8 << 10, 9);
    assert_eq!(v.write(64, &data), S_OK);

    // A read fault for both front ends: the first read fails, the second succeeds.
    let r = ctl(
        &control,
        serde_json::json!({"execute":"inject-fault","arguments":{"opcode":"read","count":1,"status":"0x0281"}}),
    );
    assert_eq!(r["return"]["id"], 1, "{r}");
    let (st, _) = v.read(64, data.len());
    assert_eq!(st, S_IOERR, "the injected fault fails the virtio read");
    assert_eq!(v.read(64, data.len()), (S_OK, data.clone()));

    // A fault narrowed to NVMe leaves virtio alone.
    ctl(
        &control,
        serde_json::json!({"execute":"inject-fault","arguments":{"opcode":"write","status":"0x0280","transport":"nvme"}}),
    );
    assert_eq!(v.write(128, &data), S_OK);
    let r = ctl(&control, serde_json::json!({"execute":"query-faults"}));
    let faults = r["return"]["faults"].as_array().expect("faults").clone();
    assert_eq!(faults[0]["injected"], 1, "{r}");
    assert_eq!(faults[1]["matched"], 0, "{r}");

    // A read latency delays virtio reads too.
    ctl(
        &control,
        serde_json::json!({"execute":"set-latency","arguments":{"opcode":"read","fixed_us":200000}}),
    );
    let t0 = std::time::Instant::now();
    assert_eq!(v.read(64, 512).0, S_OK);
    assert!(
        t0.elapsed() >= Duration::from_millis(200),
        "{:?}",
        t0.elapsed()
    );
    ctl(
        &control,
        serde_json::json!({"execute":"set-latency","arguments":{"opcode":"read","fixed_us":0}}),
    );

    // Counters: the virtio disk under "virtio-blk:1", by operation kind.
    let s = ctl(&control, serde_json::json!({"execute":"query-stats"}));
    let ops = &s["return"]["virtio-blk:1"]["opcodes"];
    assert_eq!(ops["read"]["commands"], 3, "{s}");
    assert_eq!(ops["read"]["errors"]["0x0001"], 1, "{s}");
    assert_eq!(ops["write"]["commands"], 2, "{s}");
    assert!(s["return"].get("1").is_none(), "no NVMe traffic: {s}");

    drop(v);
    // The trace writer drains its queue in the background: wait (bounded) for the
    // records, then stop the process.
    let t0 = std::time::Instant::now();
    let mut text = String::new();
    while t0.elapsed() < Duration::from_secs(10) {
        text = std::fs::read_to_string(&trace).unwrap_or_default();
        if text.matches(r#""opcode_name":"read""#).count() >= 3 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(p);
    // The trace: virtio-blk records with kind names and status bytes.
    let lines: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|v: &serde_json::Value| v.get("transport").is_some())
        .collect();
    let reads: Vec<_> = lines
        .iter()
        .filter(|l| l["transport"] == "virtio-blk" && l["opcode_name"] == "read")
        .collect();
    assert_eq!(reads.len(), 3, "{text}");
    assert_eq!(reads[0]["status_name"], "ioerr");
    assert_eq!(reads[0]["slba"], 64 * 512 / 512);
    assert_eq!(reads[1]["status_name"], "ok");
    assert!(reads[2]["latency_us"].as_u64().unwrap_or(0) >= 200_000);
}
