//! Experiment control end to end: the real binary with `--control` and `--trace`, driven
//! by the host-side NVMe driver over vfio-user and steered over the control socket.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::exp::*;
use common::nvme::*;
use common::TIMEOUT;

fn server(tag: &str, extra: &[&str]) -> BinServer {
    BinServer::start(tag, &["size=4M", "size=4M"], &["max_ioqpairs=2"], extra)
}

fn read_status(n: &mut Nvme, qid: u16, slba: u64) -> Cqe {
    let buf = n.alloc(PAGE);
    n.rw_prp(qid, Sqe::new(IO_READ, 1).lba(slba, 1), buf, LBS)
}

fn le16(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}

fn le32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

#[test]
fn every_command_replies() {
    let s = server("ctl-replies", &[]);
    let v = s.ok("query-version", json!({}));
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    let cmds = s.ok("query-commands", json!({}));
    let names: Vec<&str> = cmds["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for want in [
        "query-stats",
        "reset-stats",
        "query-namespaces",
        "set-copy-limits",
        "inject-fault",
        "query-faults",
        "clear-faults",
        "set-latency",
        "query-latency",
        "set-host-behavior",
        "query-host-behavior",
        "query-version",
        "help",
    ] {
        assert!(names.contains(&want), "{want} in {names:?}");
    }
    let h = s.ok("help", json!({}));
    assert!(h["commands"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["help"].is_string()));

    let ns = s.ok("query-namespaces", json!({}));
    let list = ns["namespaces"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["nsid"], 1);
    assert_eq!(list[1]["nsid"], 2);
    assert_eq!(list[0]["size"], 4 << 20);
    assert_eq!(list[0]["block_size"], 512);
    assert_eq!(list[0]["backing"], "memory");
    assert_eq!(list[0]["readonly"], false);
    assert_eq!(
        (&list[0]["mssrl"], &list[0]["mcl"], &list[0]["msrc"]),
        (&json!(128), &json!(128), &json!(127))
    );

    // Some I/O, then the counters.
    let mut n = Nvme::new(&s.server);
    n.create_io_queues(2, 16);
    put(&mut n, 1, 0, 8, 1);
    get(&mut n, 1, 0, 8);
    get(&mut n, 1, 8, 4);
    let st = s.ok("query-stats", json!({}));
    assert_eq!(st["1"]["opcodes"]["read"]["commands"], 2, "{st}");
    assert_eq!(st["1"]["opcodes"]["read"]["blocks"], 12, "{st}");
    assert_eq!(st["1"]["opcodes"]["write"]["commands"], 1, "{st}");
    assert_eq!(s.ok("reset-stats", json!({})), json!({}));
    let st = s.ok("query-stats", json!({}));
    let reads = st["1"]["opcodes"]["read"]["commands"].as_u64().unwrap_or(0);
    assert_eq!(reads, 0, "{st}");

    // Faults.
    let f = s.ok(
        "inject-fault",
        json!({"opcode": "read", "nsid": 2, "status": "0x0281", "count": 3}),
    );
    let id = f["id"].as_u64().expect("fault id");
    let f2 = s.ok(
        "inject-fault",
        json!({"opcode": 1, "status": 0x0280, "dnr": false}),
    );
    assert_ne!(f2["id"].as_u64().unwrap(), id);
    let q = s.ok("query-faults", json!({}));
    let faults = q["faults"].as_array().unwrap();
    assert_eq!(faults.len(), 2, "{q}");
    assert_eq!(faults[0]["id"].as_u64(), Some(id));
    assert_eq!(faults[0]["opcode"], 2);
    assert_eq!(faults[0]["opcode_name"], "read");
    assert_eq!(faults[0]["nsid"], 2);
    assert_eq!(faults[0]["status"], "0x4281");
    assert_eq!(faults[0]["count"], 3);
    assert_eq!(faults[1]["status"], "0x0280");
    assert_eq!(faults[1]["dnr"], false);
    assert_eq!(s.ok("clear-faults", json!({})), json!({}));
    assert_eq!(s.ok("query-faults", json!({}))["faults"], json!([]));

    // Latency.
    s.ok(
        "set-latency",
        json!({"opcode": "write", "fixed_us": 10, "per_block_us": 2}),
    );
    let l = s.ok("query-latency", json!({}));
    assert_eq!(
        l["latency"],
        json!([{"opcode": 1, "opcode_name": "write", "fixed_us": 10, "per_block_us": 2}])
    );
    s.ok(
        "set-latency",
        json!({"opcode": "write", "fixed_us": 0, "per_block_us": 0}),
    );
    assert_eq!(s.ok("query-latency", json!({}))["latency"], json!([]));

    // Copy limits.
    let c = s.ok("set-copy-limits", json!({"nsid": 2, "mssrl": 16}));
    assert_eq!(c, json!({"nsid": 2, "mssrl": 16, "mcl": 128, "msrc": 127}));
    let ns = s.ok("query-namespaces", json!({}));
    assert_eq!(ns["namespaces"][1]["mssrl"], 16);
    assert_eq!(ns["namespaces"][1]["configured"]["mssrl"], 128);
}

#[test]
fn bad_requests_get_errors_and_the_device_keeps_serving() {
    let s = server("ctl-bad", &[]);
    let mut n = Nvme::new(&s.server);
    n.create_io_queues(1, 16);
    put(&mut n, 1, 0, 1, 1);

    let conn = UnixStream::connect(&s.control).unwrap();
    conn.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut w = conn.try_clone().unwrap();
    let mut r = BufReader::new(conn);
    let mut ask = |line: &str| -> Value {
        w.write_all(line.as_bytes()).unwrap();
        w.write_all(b"\n").unwrap();
        let mut reply = String::new();
        r.read_line(&mut reply).unwrap();
        serde_json::from_str(&reply).unwrap_or_else(|e| panic!("{e}: {reply}"))
    };
    let long = format!("{{\"execute\":\"{}\"}}", "x".repeat(100 * 1024));
    for (req, class, needle) in [
        ("this is not json", "GenericError", "bad JSON"),
        ("[1,2]", "GenericError", "not a JSON object"),
        (
            r#"{"execute":"frobnicate"}"#,
            "CommandNotFound",
            "frobnicate",
        ),
        (
            r#"{"execute":"inject-fault","arguments":{"opcode":"nonsense","status":"0x281"}}"#,
            "GenericError",
            "opcode",
        ),
        (
            r#"{"execute":"inject-fault","arguments":{"opcode":"read","status":"0xzz"}}"#,
            "GenericError",
            "status",
        ),
        (
            r#"{"execute":"set-copy-limits","arguments":{"nsid":9,"mssrl":4}}"#,
            "GenericError",
            "set-copy-limits",
        ),
        (
            r#"{"execute":"set-copy-limits","arguments":{"nsid":1,"mssrl":0}}"#,
            "GenericError",
            "mssrl",
        ),
        (
            r#"{"execute":"set-latency","arguments":{"opcode":"read","fixed_us":-1}}"#,
            "GenericError",
            "fixed_us",
        ),
        (long.as_str(), "GenericError", "longer than"),
    ] {
        let v = ask(req);
        assert_eq!(v["error"]["class"], class, "{v}");
        let desc = v["error"]["desc"].as_str().unwrap();
        assert!(
            desc.contains(needle),
            "{}: {desc}",
            &req[..req.len().min(80)]
        );
        // The same connection still works.
        let v = ask(r#"{"execute":"query-version","id":"again"}"#);
        assert_eq!(v["id"], "again");
        assert!(v["return"].is_object());
    }
    // A second client at the same time; the device served the whole while.
    let other = s.ok("query-faults", json!({}));
    assert_eq!(other["faults"], json!([]));
    assert_eq!(get(&mut n, 1, 0, 1), pattern(512, 1));
}

#[test]
fn many_clients_at_once_while_the_device_serves() {
    let s = server("ctl-many", &[]);
    let mut n = Nvme::new(&s.server);
    n.create_io_queues(1, 16);
    let control = s.control.clone();
    let clients: Vec<_> = (0..8)
        .map(|i| {
            let control = control.clone();
            std::thread::spawn(move || {
                for j in 0..50 {
                    let req = if j % 2 == 0 {
                        json!({"execute": "query-stats", "id": [i, j]})
                    } else {
                        json!({"execute": "no-such-command", "id": [i, j]})
                    };
                    let r = vnvme::experiment::control::request(&control, &req, TIMEOUT).unwrap();
                    assert_eq!(r["id"], json!([i, j]));
                    assert_eq!(r.get("return").is_some(), j % 2 == 0, "{r}");
                }
            })
        })
        .collect();
    for i in 0..100 {
        put(&mut n, 1, i, 1, i as u8);
    }
    for c in clients {
        c.join().unwrap();
    }
    assert_eq!(get(&mut n, 1, 99, 1), pattern(512, 99));
    let st = s.ok("query-stats", json!({}));
    assert_eq!(st["1"]["opcodes"]["write"]["commands"], 100, "{st}");
}

#[test]
fn injected_status_is_seen_by_the_host() {
    let s = server("ctl-inject", &[]);
    let mut n = Nvme::new(&s.server);
    n.create_io_queues(1, 16);
    s.ok(
        "inject-fault",
        json!({"opcode": "0x2", "after": 1, "count": 1, "status": "0x0281"}),
    );
    let st: Vec<u16> = (0..4).map(|i| read_status(&mut n, 1, i).status).collect();
    assert_eq!(st, vec![0, 0x4281, 0, 0], "the second read fails, with DNR");
    let f = s.ok("query-faults", json!({}));
    assert_eq!(f["faults"][0]["injected"], 1, "{f}");
    assert_eq!(f["faults"][0]["matched"], 4, "{f}");
    // dnr=false: the status without DNR.
    s.ok("clear-faults", json!({}));
    s.ok(
        "inject-fault",
        json!({"opcode": "read", "count": 1, "status": 0x0280, "dnr": false}),
    );
    assert_eq!(read_status(&mut n, 1, 0).status, 0x0280);
    // Writes are untouched by a read fault.
    put(&mut n, 1, 0, 1, 3);
}

#[test]
fn copy_fault_at_range_k_copies_the_ranges_before_it() {
    let s = server("ctl-copy-k", &[]);
    let mut n = Nvme::new(&s.server);
    n.create_io_queues(1, 16);
    let a = put(&mut n, 1, 10, 4, 1);
    let b = put(&mut n, 1, 50, 4, 2);
    let _c = put(&mut n, 1, 90, 4, 3);
    let zero = get(&mut n, 1, 1008, 4);
    s.ok(
        "inject-fault",
        json!({"opcode": "copy", "count": 1, "status": "0x0281", "copy_range": 2}),
    );
    let c = copy_on(&mut n, 1, 1, 1000, &[(1, 10, 4), (1, 50, 4), (1, 90, 4)]);
    assert_eq!(c.status, 0x4281, "status with DNR");
    assert_eq!(c.dw0, 2, "Dword 0 = the first range not copied");
    assert_eq!(get(&mut n, 1, 1000, 4), a, "range 0 copied");
    assert_eq!(get(&mut n, 1, 1004, 4), b, "range 1 copied");
    assert_eq!(get(&mut n, 1, 1008, 4), zero, "range 2 not copied");
    // count=1: the next copy succeeds.
    let c = copy_on(&mut n, 1, 1, 2000, &[(1, 10, 4)]);
    assert_eq!((c.status, c.dw0), (0, 0));
}

#[test]
fn latency_delays_one_opcode_only() {
    let s = server("ctl-latency", &[]);
    let mut n = Nvme::new(&s.server);
    n.create_io_queues(2, 16);
    put(&mut n, 1, 0, 1, 1);
    s.ok(
        "set-latency",
        json!({"opcode": "read", "fixed_us": 1_000_000}),
    );
    let rbuf = n.alloc(PAGE);
    let (p1, p2) = n.prps(rbuf, LBS);
    let t0 = Instant::now();
    let rcid = n.submit(1, Sqe::new(IO_READ, 1).lba(0, 1).prp(p1, p2));
    // Meanwhile a write on another queue and the control socket answer at once.
    let wbuf = n.alloc(PAGE);
    let c = n.rw_prp(2, Sqe::new(IO_WRITE, 1).lba(100, 1), wbuf, LBS);
    assert_eq!(c.sc(), 0);
    s.ok("query-stats", json!({}));
    let fast = t0.elapsed();
    assert!(
        fast < Duration::from_millis(700),
        "the write waited {fast:?}"
    );
    let c = n.wait_cqe(1);
    let slow = t0.elapsed();
    assert_eq!((c.cid, c.sc()), (rcid, 0));
    assert!(
        slow >= Duration::from_millis(1000),
        "the read took {slow:?}"
    );
    assert_eq!(n.read_mem(rbuf, 512), pattern(512, 1));
    // The trace shows the delay in the read's latency.
    let io = s.wait_io_records(3);
    let read = io
        .iter()
        .find(|r| r["cid"] == rcid && r["opcode_name"] == "read")
        .expect("read record");
    assert!(read["latency_us"].as_u64().unwrap() >= 1_000_000, "{read}");
}

#[test]
fn copy_limits_change_identify_namespace() {
    let s = server("ctl-limits", &[]);
    let mut n = Nvme::new(&s.server);
    n.create_io_queues(1, 16);
    let id = n.identify(0, 1);
    assert_eq!((le16(&id, 74), le32(&id, 76), id[80]), (128, 128, 127));
    s.ok(
        "set-copy-limits",
        json!({"nsid": 1, "mssrl": 8, "mcl": 32, "msrc": 3}),
    );
    let id = n.identify(0, 1);
    assert_eq!((le16(&id, 74), le32(&id, 76), id[80]), (8, 32, 3));
    // The other namespace keeps its limits.
    let id2 = n.identify(0, 2);
    assert_eq!(le16(&id2, 74), 128);
    // The new MSSRL is enforced: 9 blocks in one range is over it.
    let c = copy_on(&mut n, 1, 1, 1000, &[(1, 0, 9)]);
    assert_eq!(
        c.sc(),
        0x0183,
        "Command Size Limit Exceeded: {:#x}",
        c.status
    );
    let c = copy_on(&mut n, 1, 1, 1000, &[(1, 0, 8)]);
    assert_eq!(c.sc(), 0);
}

#[test]
fn trace_marks_sit_between_the_records() {
    let mut s = server("ctl-mark", &[]);
    let mut n = Nvme::new(&s.server);
    n.create_io_queues(1, 16);
    let buf = n.alloc(PAGE);
    assert_eq!(
        n.rw_prp(1, Sqe::new(IO_WRITE, 1).lba(10, 1), buf, LBS).sc(),
        0
    );
    // A record is reported just after its completion is posted: wait for it.
    assert_eq!(s.wait_io_records(1).len(), 1);
    let m = s.ok("trace-mark", json!({"label": "point 1: mssrl=8"}));
    assert_eq!(m["traced"], true, "{m}");
    assert_eq!(
        n.rw_prp(1, Sqe::new(IO_READ, 1).lba(10, 1), buf, LBS).sc(),
        0
    );
    assert_eq!(s.wait_io_records(2).len(), 2);
    s.ok("trace-mark", json!({"label": "end"}));
    for bad in [
        json!({"label": ""}),
        json!({"label": "a\nb"}),
        json!({"label": "x".repeat(201)}),
        json!({}),
    ] {
        assert!(
            s.ctl("trace-mark", bad.clone()).get("error").is_some(),
            "{bad}"
        );
    }
    assert_eq!(s.stop(), 0);
    let lines = s.trace_lines();
    let at = |f: &dyn Fn(&Value) -> bool| {
        lines
            .iter()
            .position(f)
            .unwrap_or_else(|| panic!("{lines:#?}"))
    };
    let w = at(&|v| v["opcode_name"] == "write");
    let m1 = at(&|v| v["mark"] == "point 1: mssrl=8");
    let r = at(&|v| v["opcode_name"] == "read" && v["qid"] == 1);
    let m2 = at(&|v| v["mark"] == "end");
    assert!(w < m1 && m1 < r && r < m2, "{lines:#?}");
    assert_eq!(lines[m1]["time_us"], m["time_us"]);
    assert!(lines[m1]["time_us"].as_u64() >= lines[w]["time_us"].as_u64());
}

#[test]
fn trace_holds_exactly_the_commands_sent() {
    let mut s = server("ctl-trace", &[]);
    let mut n = Nvme::new(&s.server);
    n.create_io_queues(2, 16);
    let mut sent = Vec::new(); // (qid, cid, opcode, nsid, slba, nlb)
    for (qid, slba, nlb) in [(1u16, 4242u64, 3u32), (2, 777, 1)] {
        let buf = n.alloc(PAGE * 2);
        let c = n.rw_prp(
            qid,
            Sqe::new(IO_WRITE, 1).lba(slba, nlb),
            buf,
            nlb as u64 * LBS,
        );
        assert_eq!(c.sc(), 0);
        sent.push((qid, c.cid, 1u64, 1u64, Some(slba), Some(nlb as u64)));
    }
    let buf = n.alloc(PAGE);
    let c = n.rw_prp(2, Sqe::new(IO_READ, 2).lba(99, 2), buf, 2 * LBS);
    sent.push((2, c.cid, 2, 2, Some(99), Some(2)));
    let c = copy_on(&mut n, 1, 1, 3000, &[(1, 4242, 3), (1, 777, 1)]);
    assert_eq!(c.status, 0);
    sent.push((1, c.cid, 0x19, 1, None, None));
    // An error status, traced too.
    let c = n.rw_prp(1, Sqe::new(IO_READ, 1).lba(1 << 40, 1), buf, LBS);
    assert_ne!(c.status, 0);
    let err_status = c.status;
    sent.push((1, c.cid, 2, 1, Some(1 << 40), Some(1)));
    let _ = n.identify(0, 1);

    assert_eq!(s.stop(), 0, "clean exit on SIGTERM: {}", s.stderr_text());
    let lines = s.trace_lines();
    let io: Vec<&Value> = lines.iter().filter(|v| v["qid"] != 0).collect();
    assert_eq!(io.len(), sent.len(), "{lines:#?}");
    for (r, (qid, cid, op, nsid, slba, nlb)) in io.iter().zip(&sent) {
        assert_eq!(r["qid"], *qid, "{r}");
        assert_eq!(r["cid"], *cid, "{r}");
        assert_eq!(r["opcode"], *op, "{r}");
        assert_eq!(r["nsid"], *nsid, "{r}");
        assert_eq!(r["slba"].as_u64(), *slba, "{r}");
        assert_eq!(r["nlb"].as_u64(), *nlb, "{r}");
        assert!(r["time_us"].is_u64() && r["latency_us"].is_u64(), "{r}");
        assert!(r["status_name"].is_string(), "{r}");
    }
    assert_eq!(io[0]["opcode_name"], "write");
    assert_eq!(io[2]["opcode_name"], "read");
    assert_eq!(io[0]["status"], "0x0000");
    assert_eq!(io[0]["status_name"], "success");
    let copy = io[3];
    assert_eq!(copy["opcode_name"], "copy");
    assert_eq!(copy["sdlba"], 3000);
    assert_eq!(copy["format"], 0);
    assert_eq!(copy["nr"], 1);
    assert_eq!(
        copy["ranges"],
        json!([{"nsid": 1, "slba": 4242, "nlb": 3}, {"nsid": 1, "slba": 777, "nlb": 1}])
    );
    assert_eq!(io[4]["status"], format!("0x{err_status:04x}"));
    assert_ne!(io[4]["status_name"], "success");
    // Admin commands are there with qid 0 (the last one an Identify).
    let admin: Vec<&Value> = lines.iter().filter(|v| v["qid"] == 0).collect();
    assert!(!admin.is_empty());
    assert_eq!(admin.last().unwrap()["opcode"], 6);
    assert_eq!(admin.last().unwrap()["opcode_name"], "identify");
    assert!(lines.iter().all(|v| v.get("dropped").is_none()));
}

#[test]
fn vnvme_ctl_client() {
    let s = server("ctl-client", &[]);
    let ctl = |args: &[&str]| {
        let out = Command::new(BIN)
            .arg("ctl")
            .args(args)
            .output()
            .expect("run vnvme ctl");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let c = s.control.to_str().unwrap();
    let (code, out, _) = ctl(&["--control", c, "query-version"]);
    assert_eq!(code, 0, "{out}");
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["return"]["version"], env!("CARGO_PKG_VERSION"));
    let (code, out, _) = ctl(&[
        "--control",
        c,
        "inject-fault",
        "opcode=read",
        "after=0",
        "count=2",
        "status=0x0281",
        "dnr=false",
    ]);
    assert_eq!(code, 0, "{out}");
    let (code, out, _) = ctl(&[
        "--control",
        c,
        "--json",
        r#"{"nsid":1,"mssrl":32}"#,
        "set-copy-limits",
    ]);
    assert_eq!(code, 0, "{out}");
    let (code, out, _) = ctl(&["--control", c, "query-faults"]);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["return"]["faults"][0]["status"], "0x0281");
    assert_eq!(v["return"]["faults"][0]["count"], 2);
    let (code, out, _) = ctl(&["--control", c, "frobnicate"]);
    assert_eq!(code, 1, "{out}");
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["error"]["class"], "CommandNotFound");
    let (code, _, err) = ctl(&["--control", c, "inject-fault", "opcode"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = ctl(&["query-version"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = ctl(&["--control", c, "--json", "{", "help"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = ctl(&["--control", "/nonexistent/x.sock", "help"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("/nonexistent/x.sock"), "{err}");
}

#[test]
fn start_options_fault_and_latency() {
    let s = server(
        "ctl-start",
        &[
            "--fault",
            "opcode=read,count=1,status=0x0281",
            "--latency",
            "opcode=write,fixed_us=1000",
        ],
    );
    let f = s.ok("query-faults", json!({}));
    assert_eq!(f["faults"][0]["opcode_name"], "read");
    let l = s.ok("query-latency", json!({}));
    assert_eq!(l["latency"][0]["fixed_us"], 1000);
    let mut n = Nvme::new(&s.server);
    n.create_io_queues(1, 16);
    assert_eq!(read_status(&mut n, 1, 0).status, 0x4281);
    assert_eq!(read_status(&mut n, 1, 0).status, 0);

    for (bad, needle) in [
        (["--fault", "opcode=read,status=zz"], "--fault status"),
        (["--fault", "opcode=frob,status=0x281"], "--fault opcode"),
        (
            ["--latency", "opcode=read,fixed_us=soon"],
            "--latency fixed_us",
        ),
        (["--latency", "fixed_us=1"], "--latency opcode"),
    ] {
        let out = Command::new(BIN)
            .args(["--socket", "/nonexistent/never.sock", "--ns", "size=1M"])
            .args(bad)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {err}");
        assert!(err.contains(needle), "{bad:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
}

/// With a seed, which commands get the fault is the same run after run.
#[test]
fn seeded_faults_are_reproducible() {
    let run = || {
        let s = server(
            "ctl-seed",
            &[
                "--fault",
                "opcode=read,probability=0.5,seed=42,status=0x0281",
            ],
        );
        let mut n = Nvme::new(&s.server);
        n.create_io_queues(1, 16);
        (0..40)
            .map(|i| read_status(&mut n, 1, i).status != 0)
            .collect::<Vec<bool>>()
    };
    let a = run();
    let b = run();
    assert_eq!(a, b);
    let failed = a.iter().filter(|&&f| f).count();
    assert!(failed > 5 && failed < 35, "about half fail: {failed}");
}

#[test]
fn no_trace_without_the_option() {
    let dir = common::TempDir::new("ctl-notrace");
    let out = Command::new(BIN)
        .args(["--ns", "size=1M", "--print-qemu-args"])
        .current_dir(&dir.0)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(std::fs::read_dir(&dir.0).unwrap().count(), 0);
}

#[test]
fn trace_to_stderr() {
    let mut s = BinServer::start_with("ctl-stderr", &["size=1M"], &[], &["--trace", "-"], false);
    let mut n = Nvme::new(&s.server);
    n.create_io_queues(1, 16);
    let c = read_status(&mut n, 1, 1234);
    assert_eq!(c.status, 0);
    assert_eq!(s.stop(), 0);
    let err = s.stderr_text();
    let reads: Vec<Value> = err
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["opcode_name"] == "read" && v["qid"] == 1)
        .collect();
    assert_eq!(reads.len(), 1, "{err}");
    assert_eq!(reads[0]["slba"], 1234);
    assert_eq!(reads[0]["cid"], c.cid);
    assert!(!s.trace.exists());
}

/// A Copy of `ranges` with descriptor format `format` (0 or 2) into `nsid` at `sdlba`.
fn copy_format(
    n: &mut Nvme,
    nsid: u32,
    sdlba: u64,
    format: u32,
    ranges: &[(u32, u64, u16)],
) -> Cqe {
    let list = n.alloc(PAGE);
    n.write_mem(list, &copy_descriptors(ranges));
    n.exec(
        1,
        Sqe::new(IO_COPY, nsid)
            .prp(list, 0)
            .cdw(10, sdlba as u32)
            .cdw(11, (sdlba >> 32) as u32)
            .cdw(12, (ranges.len() as u32 - 1) | (format << 8)),
    )
}

#[test]
fn host_behavior_from_the_device_side() {
    // --ctrl cdfe=0xc: format 2 works with no Set Features from the host.
    let s = BinServer::start(
        "ctl-cdfe",
        &["size=4M", "size=4M"],
        &["max_ioqpairs=2", "cdfe=0xc"],
        &[],
    );
    assert_eq!(
        s.ok("query-host-behavior", json!({})),
        json!({"cdfe": 12, "reset_cdfe": 12})
    );
    let mut n = Nvme::new(&s.server);
    n.create_io_queues(1, 16);
    let a = put(&mut n, 2, 10, 4, 7);
    let c = copy_format(&mut n, 1, 100, 2, &[(2, 10, 4)]);
    assert_eq!((c.status, c.dw0), (0, 0), "format 2 with CDFE from --ctrl");
    assert_eq!(get(&mut n, 1, 100, 4), a, "ns 2 -> ns 1");
    // Cleared from the control socket: the next Copy is Invalid Field (with DNR).
    assert_eq!(
        s.ok("set-host-behavior", json!({"cdfe": 0})),
        json!({"cdfe": 0})
    );
    let c = copy_format(&mut n, 1, 200, 2, &[(2, 10, 4)]);
    assert_eq!(c.status, 0x4002);
    // Format 0 needs no enable.
    assert_eq!(copy_format(&mut n, 1, 200, 0, &[(1, 100, 4)]).status, 0);
    // A hex string works as well as a number.
    assert_eq!(
        s.ok("set-host-behavior", json!({"cdfe": "0x4"})),
        json!({"cdfe": 4})
    );
    assert_eq!(copy_format(&mut n, 1, 300, 2, &[(2, 10, 4)]).status, 0);
    assert_eq!(
        s.ok("query-host-behavior", json!({})),
        json!({"cdfe": 4, "reset_cdfe": 4})
    );
    // Bad values name the field and change nothing.
    for (args, needle) in [
        (
            json!({"cdfe": 16}),
            "set-host-behavior: cdfe: 0x10 is not a mask",
        ),
        (
            json!({"cdfe": "0x10000"}),
            "set-host-behavior: cdfe: 65536 is out of range",
        ),
        (json!({"cdfe": "lots"}), "set-host-behavior: cdfe:"),
        (json!({"cdfe": -1}), "set-host-behavior: cdfe:"),
        (json!({}), "set-host-behavior: cdfe: required"),
        (
            json!({"cdfe": 4, "acre": 1}),
            "set-host-behavior: unknown argument 'acre'",
        ),
    ] {
        let r = s.ctl("set-host-behavior", args.clone());
        let desc = r["error"]["desc"].as_str().unwrap_or_default();
        assert!(desc.starts_with(needle), "{args}: {r}");
        assert_eq!(r["error"]["class"], "GenericError");
    }
    assert_eq!(s.ok("query-host-behavior", json!({}))["cdfe"], 4);
    let r = s.ctl("query-host-behavior", json!({"cdfe": 1}));
    assert!(
        r["error"]["desc"]
            .as_str()
            .unwrap()
            .contains("unknown argument"),
        "{r}"
    );
    // The trace shows the admin commands' feature ids: the host never set feature 0x16.
    // (Records are in completion order: once the I/O ones are there, the admin ones are.)
    assert!(s.wait_io_records(6).len() >= 6);
    let recs = s.trace_lines();
    let fids: Vec<u64> = recs
        .iter()
        .filter(|r| r["opcode_name"] == "set-features")
        .filter_map(|r| r["fid"].as_u64())
        .collect();
    assert!(
        !fids.is_empty(),
        "the driver's Set Features are in the trace"
    );
    assert!(!fids.contains(&0x16), "{fids:?}");
    assert!(recs
        .iter()
        .filter(|r| r["opcode_name"] == "identify")
        .all(|r| r["cns"].is_u64() && r["csi"].is_u64() && r["cntid"].is_u64()));
}
