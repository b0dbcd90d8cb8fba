//! The library's vfio-user bus (`vnvme::host::VfioUserBus`) under the shared host driver,
//! and a short `vnvme bench stress` run with its journal verified (docs/stress.md).

mod common;

use std::process::Command;
use std::time::Duration;

use common::exp::{BinServer, BIN};
use common::{small_config, TestServer};
use vnvme::host::data::rw;
use vnvme::host::driver::must;
use vnvme::host::{pattern, BusOptions, Driver, VfioUserBus, PAGE};
use vnvme::nvme::spec::io_op;

#[test]
fn the_library_bus_drives_the_controller() {
    let s = TestServer::start("libbus", &small_config());
    let opts = BusOptions {
        guest_size: 4 << 20,
        timeout: Duration::from_secs(5),
        ..Default::default()
    };
    let bus = VfioUserBus::connect(&s.socket, &opts).expect("connect");
    assert!(bus.has_interrupts(), "MSI-X wired");
    let ram = bus.ram();
    let mut d = Driver::new(bus, ram);
    must(d.reset_and_enable(16));
    must(d.create_io_queues(2, 16));
    let buf = must(d.alloc(2 * PAGE));
    let data = pattern(8192, 9);
    must(d.write_mem(buf, &data));
    let c = must(d.cmd(2, rw(io_op::WRITE, 1, 40, 16, buf, buf + PAGE)));
    assert!(c.ok(), "write: {:#x}", c.status.0);
    must(d.fill(buf, 8192, 0));
    // The completion comes with its interrupt.
    let cid = must(d.submit(1, rw(io_op::READ, 1, 40, 16, buf, buf + PAGE)));
    let (c, fired) = must(d.wait(1, Duration::from_secs(5), true));
    assert_eq!((c.cid, c.ok()), (cid, true));
    assert!(fired, "MSI-X vector 1 fired");
    assert_eq!(must(d.read_mem(buf, 8192)), data);
    assert!(d.bus.counters.posted_doorbells > 0);
    // A BAR0 access outside the BAR is an error, not a panic.
    let mut b = [0u8; 4];
    assert!(vnvme::host::Bus::mmio_read(&mut d.bus, u64::MAX - 2, &mut b).is_err());
}

#[test]
fn the_library_bus_polls_without_interrupts() {
    let s = TestServer::start("libbus-poll", &small_config());
    let opts = BusOptions {
        guest_size: 4 << 20,
        interrupts: false,
        ..Default::default()
    };
    let bus = VfioUserBus::connect(&s.socket, &opts).expect("connect");
    assert!(!bus.has_interrupts());
    let ram = bus.ram();
    let mut d = Driver::new(bus, ram);
    must(d.reset_and_enable(16));
    let buf = must(d.alloc(PAGE));
    let (c, page) = must(d.identify(1, 0, 0, buf));
    assert!(c.ok());
    assert_ne!(page[..4], [0, 0, 0, 0], "VID/SSVID");
}

#[test]
fn a_short_stress_run_verifies_and_its_journal_holds() {
    let mut b = BinServer::start_with("stress", &["size=8M", "size=4M"], &["cdfe=0x4"], &[], false);
    let journal = b.server.dir.path("journal");
    let run = |extra: &[&str]| {
        let mut args = vec![
            "bench".to_string(),
            "stress".into(),
            "--socket".into(),
            b.server.socket.to_string_lossy().into(),
            "--control".into(),
            b.control.to_string_lossy().into(),
            "--journal".into(),
            journal.to_string_lossy().into(),
            "--blocks".into(),
            "2048".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        Command::new(BIN)
            .args(&args)
            .env("RUST_LOG", "warn")
            .output()
            .expect("run vnvme bench stress")
    };
    let out = run(&[
        "--secs",
        "3",
        "--seed",
        "11",
        "--reset-every",
        "1",
        "--fault-every",
        "0.5",
        "--limits-every",
        "0.7",
        "--json",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stress: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(text.trim()).expect("one JSON object");
    let c = &v["counts"];
    assert_eq!(c["mismatches"], 0);
    assert!(c["resets"].as_u64().unwrap_or(0) >= 1, "{c}");
    assert!(c["blocks_verified"].as_u64().unwrap_or(0) > 0, "{c}");
    for kind in ["read", "write", "copy", "flush"] {
        assert!(c["commands"][kind].as_u64().unwrap_or(0) > 0, "{kind}: {c}");
    }
    let out = run(&["--verify", "--json"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "verify: {text}");
    let v: serde_json::Value = serde_json::from_str(text.trim()).expect("one JSON object");
    assert_eq!(v["counts"]["lost_acknowledged_writes"], 0);
    assert!(
        v["counts"]["blocks_verified"].as_u64().unwrap_or(0) > 0,
        "{v}"
    );
    b.stop();
}
