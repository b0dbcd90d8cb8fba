//! `vnvme bench io` end to end: the bench starts its own vnvme (memfd and file
//! namespaces), drives it over the vfio-user socket, runs the native io_uring rounds, and
//! prints one JSON object with every field. No timing assertions: only that I/O happened
//! and nothing failed.

use std::path::PathBuf;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_vnvme");

fn bench(args: &[&str]) -> (i32, serde_json::Value, String) {
    let out = Command::new(BIN)
        .args(["bench", "io", "--json"])
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run vnvme bench io");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let v = serde_json::from_str(stdout.trim()).unwrap_or(serde_json::Value::Null);
    (out.status.code().unwrap_or(-1), v, stderr)
}

fn check_mode(v: &serde_json::Value, mode: &str) {
    let m = &v["modes"][mode];
    assert!(m["iops"].as_f64().unwrap_or(0.0) > 0.0, "{mode}: {m}");
    assert!(m["mib_s"].as_f64().unwrap_or(0.0) > 0.0, "{mode}: {m}");
    assert!(m["mean_us"].as_f64().unwrap_or(0.0) > 0.0, "{mode}: {m}");
    assert!(
        m["p99_us"].as_f64().unwrap_or(0.0) >= m["mean_us"].as_f64().unwrap_or(0.0) * 0.5,
        "{mode}: {m}"
    );
    assert!(m["ios"].as_u64().unwrap_or(0) > 0, "{mode}: {m}");
    assert_eq!(m["errors"], 0, "{mode}: {m}");
    assert_eq!(
        m["rounds_iops"].as_array().map(|a| a.len()),
        Some(2),
        "{mode}: {m}"
    );
}

#[test]
fn bench_io_on_a_memfd_namespace_reports_every_mode() {
    let (code, v, err) = bench(&[
        "--memory", "16M", "--secs", "1", "--rounds", "2", "--queues", "2", "--qd", "8",
    ]);
    assert_eq!(code, 0, "{err}\n{v}");
    assert_eq!(v["errors"], 0, "{v}");
    assert_eq!(v["config"]["pattern"], "randread");
    assert_eq!(v["namespace"]["kind"], "memfd");
    assert_eq!(v["namespace"]["bytes"], 16 << 20);
    assert_eq!(v["server"]["started"], true);
    check_mode(&v, "vnvme");
    check_mode(&v, "native_buffered");
    let m = &v["modes"]["vnvme"];
    assert!(m["device_cpu_us_per_io"].as_f64().is_some(), "{m}");
    let msgs = m["messages_per_io"].as_f64().unwrap_or(-1.0);
    assert!(msgs > 0.0 && msgs <= 3.0, "messages per I/O {msgs}");
    assert!(
        v["ratios"]["vnvme_over_native_buffered"]
            .as_f64()
            .unwrap_or(0.0)
            > 0.0
    );
    // O_DIRECT on a memfd depends on the kernel: measured, or skipped with the reason.
    let d = &v["modes"]["native_direct"];
    if d["skipped"].is_null() {
        check_mode(&v, "native_direct");
    }
}

#[test]
fn bench_io_on_a_file_namespace_writes_and_polls() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let file = dir.join(format!("bench-io-{}.img", std::process::id()));
    let path = file.to_string_lossy().to_string();
    let (code, v, err) = bench(&[
        "--ns-file",
        &path,
        "--size",
        "8M",
        "--pattern",
        "randwrite",
        "--secs",
        "1",
        "--rounds",
        "2",
        "--queues",
        "2",
        "--qd",
        "4",
        "--poll",
        "--dbbuf",
        "off",
        "--threads",
        "per-queue",
    ]);
    let _ = std::fs::remove_file(&file);
    assert_eq!(code, 0, "{err}\n{v}");
    assert_eq!(v["namespace"]["kind"], "file");
    assert_eq!(v["config"]["dbbuf"], "off");
    assert_eq!(v["config"]["poll"], true);
    check_mode(&v, "vnvme");
    check_mode(&v, "native_buffered");
    // Polling: no interrupts; without shadow doorbells every batch rings MMIO.
    assert_eq!(v["modes"]["vnvme"]["interrupts_per_io"], 0.0);
    assert!(
        v["modes"]["vnvme"]["doorbells_per_io"]
            .as_f64()
            .unwrap_or(0.0)
            > 0.0
    );
}

/// `--device-poll-us`: the started vnvme runs in poll mode and the bus maps its doorbell
/// page: doorbells are memory stores, so (almost) no message per I/O.
#[test]
fn bench_io_with_device_polling_maps_the_doorbells() {
    let (code, v, err) = bench(&[
        "--memory",
        "16M",
        "--secs",
        "1",
        "--rounds",
        "2",
        "--queues",
        "2",
        "--qd",
        "8",
        "--no-native",
        "--device-poll-us",
        "100",
    ]);
    assert_eq!(code, 0, "{err}\n{v}");
    assert_eq!(v["config"]["device_poll_us"], 100);
    assert_eq!(v["doorbells_mapped"], true, "{v}");
    check_mode(&v, "vnvme");
    let m = &v["modes"]["vnvme"];
    assert_eq!(m["messages_per_io"], 0.0, "{m}");
    assert!(
        m["mapped_doorbells_per_io"].as_f64().unwrap_or(0.0) > 0.0,
        "{m}"
    );
    assert!(v["modes"]["native_buffered"].is_null());
}

#[test]
fn bench_io_refuses_bad_options_naming_them() {
    for (args, name) in [
        (&["--bs", "3k"][..], "--bs"),
        (&["--qd", "0"][..], "--qd"),
        (&["--memory", "1M", "--ns-file", "/tmp/x"][..], "--memory"),
        (&["--pattern", "sideways"][..], "--pattern"),
        (&["--device-poll-us", "0"][..], "--device-poll-us"),
        (&["--device-poll-us", "2000000"][..], "--device-poll-us"),
        (
            &["--device-poll-us", "50", "--socket", "/tmp/x.sock"][..],
            "--device-poll-us",
        ),
    ] {
        let (code, _, err) = bench(args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(name), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count().min(1), 1);
    }
    let (code, _, err) = bench(&["--socket", "/nonexistent/vnvme.sock", "--secs", "1"]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}
