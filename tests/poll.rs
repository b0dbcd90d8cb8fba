//! Poll mode (`--ctrl poll_us=N`) over the real socket: GET_REGION_INFO offers BAR0's
//! doorbell area as a sparse-mmap area with a sealed memfd (and nothing without
//! `poll_us`), I/O with every doorbell a store into the mapped page (no message), invalid
//! values written there, and a polling device that goes idle after its poll window,
//! still serves the next command, and whose workers stop on reset and queue deletion.

mod common;

use std::fs::File;
use std::time::{Duration, Instant};

use common::exp::BinServer;
use common::{TestServer, TIMEOUT};
use vfio_bindings::bindings::vfio as vb;
use vnvme::host::data::rw;
use vnvme::host::driver::must;
use vnvme::host::{pattern, Bus, BusOptions, Driver, VfioUserBus, PAGE};
use vnvme::nvme::spec::{admin_op, io_op};
use vnvme::vfio_user::protocol::{self as p, SparseArea};

fn config(ctrl: &str) -> vnvme::config::DeviceConfig {
    vnvme::cli::RunArgs {
        socket: "unused".into(),
        ns: vec!["size=4M".into()],
        ctrl: vec![ctrl.into()],
        print_qemu_args: false,
        ns_dir: None,
        capacity: None,
        lbafs: None,
    }
    .device_config()
    .expect("config")
}

fn bus(socket: &std::path::Path, interrupts: bool) -> VfioUserBus {
    let opts = BusOptions {
        guest_size: 4 << 20,
        timeout: TIMEOUT,
        interrupts,
        ..Default::default()
    };
    VfioUserBus::connect(socket, &opts).expect("connect")
}

/// An enabled controller with `queues` I/O queue pairs of 16 entries.
fn driver(bus: VfioUserBus, queues: u16) -> Driver<VfioUserBus> {
    let ram = bus.ram();
    let mut d = Driver::new(bus, ram);
    d.timeout = TIMEOUT;
    must(d.reset_and_enable(16));
    must(d.create_io_queues(queues, 16));
    d
}

#[test]
fn poll_mode_offers_the_doorbell_area_as_a_sparse_mmap_area_with_a_sealed_memfd() {
    let s = TestServer::start("poll-regions", &config("max_ioqpairs=4,poll_us=100"));
    let mut c = s.negotiated();
    let rw_flags = vb::VFIO_REGION_INFO_FLAG_READ | vb::VFIO_REGION_INFO_FLAG_WRITE;
    let mmap_flags = vb::VFIO_REGION_INFO_FLAG_MMAP | vb::VFIO_REGION_INFO_FLAG_CAPS;
    // QEMU first asks with the fixed size: the reply names the size it needs. No CAPS
    // flag there: QEMU's client refuses CAPS with a cap_offset outside the reply.
    let (r, _) = c.region_info_fds(0, 32);
    assert_eq!(r.payload.len(), 32);
    let info = p::RegionInfo::parse(&r.payload).unwrap();
    assert_eq!(
        info.argsz, 64,
        "32 bytes of info + a sparse cap with one area"
    );
    assert_eq!(info.flags, rw_flags | vb::VFIO_REGION_INFO_FLAG_MMAP);
    assert_eq!(info.cap_offset, 0, "no capability in a short reply");
    // Then with that size: the capability and the file.
    let (r, mut fds) = c.region_info_fds(0, 64);
    let info = p::RegionInfo::parse(&r.payload).unwrap();
    assert_eq!(
        (info.argsz, info.flags, info.cap_offset),
        (64, rw_flags | mmap_flags, 32)
    );
    assert_eq!((info.size, info.offset), (s.bar0_size, 0));
    let areas = p::parse_sparse_areas(&r.payload)
        .unwrap()
        .expect("sparse cap");
    assert_eq!(
        areas,
        vec![SparseArea {
            offset: 0x1000,
            size: s.bar0_size - 0x1000
        }],
        "the doorbell area, from 0x1000 to the end of BAR0; the registers stay trapped"
    );
    assert_eq!(fds.len(), 1, "one descriptor with the reply");
    let file = File::from(fds.pop().unwrap());
    assert_eq!(file.metadata().unwrap().len(), s.bar0_size);
    assert!(vnvme::shm::cannot_shrink(&file), "sealed against shrinking");
    assert!(file.set_len(4096).is_err());
    // It maps, and it is the page the device reads: zeroes until the host writes.
    let page = vnvme::shm::SharedWords::map(&file, 0x1000, s.bar0_size - 0x1000).unwrap();
    assert_eq!(page.load(0x1000), Some(0));
    // The other regions stay trapped, with no descriptor.
    for index in [4u32, 7] {
        let (r, fds) = c.region_info_fds(index, 64);
        let info = p::RegionInfo::parse(&r.payload).unwrap();
        assert_eq!(
            (info.flags, info.cap_offset, info.argsz),
            (rw_flags, 0, 32),
            "region {index}"
        );
        assert!(fds.is_empty(), "region {index}");
    }
}

#[test]
fn without_poll_us_bar0_is_trapped_whole_and_doorbells_are_messages() {
    let s = TestServer::start("poll-off", &config("max_ioqpairs=4"));
    let mut c = s.negotiated();
    let (r, fds) = c.region_info_fds(0, 4096);
    let info = p::RegionInfo::parse(&r.payload).unwrap();
    assert_eq!(r.payload.len(), 32);
    assert_eq!(
        (info.flags, info.cap_offset, info.argsz),
        (
            vb::VFIO_REGION_INFO_FLAG_READ | vb::VFIO_REGION_INFO_FLAG_WRITE,
            0,
            32
        )
    );
    assert!(fds.is_empty());
    drop(c);
    let mut d = driver(bus(&s.socket, true), 1);
    assert!(d.bus.mapped_bar0().is_empty());
    let buf = must(d.alloc(PAGE));
    assert!(must(d.cmd(1, rw(io_op::READ, 1, 0, 8, buf, 0))).ok());
    assert!(d.bus.counters.posted_doorbells > 0);
    assert_eq!(d.bus.counters.mapped_doorbells, 0);
}

/// Data written and read back with every doorbell (admin and I/O, SQ tails and CQ
/// heads) a store into the mapped page: not one message once the queues exist.
fn io_through_the_mapped_page(interrupts: bool) {
    let s = TestServer::start("poll-io", &config("max_ioqpairs=4,poll_us=200"));
    let b = bus(&s.socket, interrupts);
    assert_eq!(b.mapped_bar0(), vec![0x1000..s.bar0_size]);
    assert_eq!(b.has_interrupts(), interrupts);
    let mut d = driver(b, 2);
    let buf = must(d.alloc(4 * PAGE));
    let m0 = d.bus.counters.messages;
    for i in 0..100u64 {
        let qid = 1 + (i % 2) as u16;
        let data = pattern(8192, i as u8);
        must(d.write_mem(buf, &data));
        let c = must(d.cmd(qid, rw(io_op::WRITE, 1, 16 * i, 16, buf, buf + PAGE)));
        assert!(c.ok(), "write {i}: {:#x}", c.status.0);
        must(d.fill(buf + 2 * PAGE, 8192, 0));
        let c = must(d.cmd(
            qid,
            rw(io_op::READ, 1, 16 * i, 16, buf + 2 * PAGE, buf + 3 * PAGE),
        ));
        assert!(c.ok(), "read {i}: {:#x}", c.status.0);
        assert_eq!(must(d.read_mem(buf + 2 * PAGE, 8192)), data, "data {i}");
    }
    assert_eq!(
        d.bus.counters.messages - m0,
        0,
        "no message for 200 commands"
    );
    assert_eq!(d.bus.counters.posted_doorbells, 0, "not even during setup");
    assert!(
        d.bus.counters.mapped_doorbells >= 400,
        "{:?}",
        d.bus.counters
    );
}

#[test]
fn io_with_msix_and_every_doorbell_in_the_mapped_page() {
    io_through_the_mapped_page(true);
}

#[test]
fn io_polling_completions_and_every_doorbell_in_the_mapped_page() {
    io_through_the_mapped_page(false);
}

/// Invalid values stored into the mapped page raise the Error events a trapped write
/// would (docs/hostile-host.md); a store to the doorbell of a queue that does not exist
/// goes unnoticed there (nothing watches it), while the same write trapped is reported.
#[test]
fn invalid_values_in_the_mapped_page_raise_error_events() {
    let s = TestServer::start("poll-hostile", &config("max_ioqpairs=4,poll_us=100"));
    let mut d = driver(bus(&s.socket, true), 1);
    let aer = || vnvme::nvme::spec::Sqe {
        opcode: admin_op::ASYNC_EVENT_REQUEST,
        ..Default::default()
    };
    let unmask = |d: &mut Driver<VfioUserBus>| {
        let buf = must(d.alloc(PAGE));
        let c = must(d.cmd(
            0,
            vnvme::nvme::spec::Sqe {
                opcode: admin_op::GET_LOG_PAGE,
                nsid: 0xffff_ffff,
                dptr1: buf,
                cdw10: 0x01 | (15 << 16),
                ..Default::default()
            },
        ));
        assert!(c.ok());
    };
    const SQ1_TAIL: u64 = 0x1008;
    const CQ1_HEAD: u64 = 0x100c;
    const SQ3_TAIL: u64 = 0x1018;
    for (reg, value) in [(SQ1_TAIL, 16u32), (SQ1_TAIL, 0xffff_ffff), (CQ1_HEAD, 5)] {
        let cid = must(d.submit(0, aer()));
        // In the mapped area: a memory store, no message.
        let m0 = d.bus.counters.messages;
        must(
            d.bus
                .mmio_write(reg, &value.to_le_bytes())
                .map_err(Into::into),
        );
        assert_eq!(d.bus.counters.messages, m0);
        let (c, _) = must(d.wait(0, TIMEOUT, false));
        assert_eq!((c.cid, c.dw0), (cid, 0x0001_0100), "{reg:#x} = {value:#x}");
        unmask(&mut d);
        // The queue goes on (the driver's next tail and head are valid again).
        let buf = must(d.alloc(PAGE));
        assert!(must(d.cmd(1, rw(io_op::READ, 1, 0, 1, buf, 0))).ok());
    }
    // SQ 3 does not exist: through the page nothing notices...
    let cid = must(d.submit(0, aer()));
    must(
        d.bus
            .mmio_write(SQ3_TAIL, &1u32.to_le_bytes())
            .map_err(Into::into),
    );
    assert!(must(d.try_reap(0, Duration::from_millis(300))).is_none());
    // ... trapped (a REGION_WRITE message) it is an invalid register, as without polling.
    must(
        d.bus
            .region_write(0, SQ3_TAIL, &1u32.to_le_bytes())
            .map_err(Into::into),
    );
    let (c, _) = must(d.wait(0, TIMEOUT, false));
    assert_eq!((c.cid, c.dw0), (cid, 0x0001_0000));
}

/// utime + stime of `pid` in clock ticks (USER_HZ, 100 a second).
fn cpu_ticks(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let rest = &s[s.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// The names of `pid`'s queue worker threads.
fn workers(pid: u32) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("tasks")
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|c| c.trim().to_string())
        .filter(|c| c.starts_with("vnvme-sq"))
        .collect();
    v.sort();
    v
}

/// Waits (bounded) until `pid`'s queue workers are `want`.
fn wait_workers(pid: u32, want: &[&str]) {
    let deadline = Instant::now() + TIMEOUT;
    while workers(pid) != want {
        assert!(
            Instant::now() < deadline,
            "workers {:?}, expected {want:?}",
            workers(pid)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// CPU ticks `pid` uses over `secs` seconds.
fn ticks_over(pid: u32, secs: u64) -> u64 {
    let t0 = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(secs));
    cpu_ticks(pid) - t0
}

/// After the poll window the workers nap: the process is (nearly) idle — a worker that
/// kept polling would use a whole core, ~200 ticks in 2 s. The next command still
/// completes, at once. Reset and deleting a queue end their workers.
#[test]
fn a_polling_device_goes_idle_serves_after_idle_and_stops_its_workers() {
    let b = BinServer::start_with(
        "poll-idle",
        &["size=8M"],
        &["max_ioqpairs=4,poll_us=20000"],
        &[],
        false,
    );
    let pid = b.child.id();
    let mut d = driver(bus(&b.server.socket, true), 2);
    assert!(!d.bus.mapped_bar0().is_empty());
    wait_workers(pid, &["vnvme-sq0", "vnvme-sq1", "vnvme-sq2"]);
    let buf = must(d.alloc(2 * PAGE));
    for i in 0..50 {
        assert!(must(d.cmd(1 + i % 2, rw(io_op::READ, 1, 0, 16, buf, buf + PAGE))).ok());
    }
    // While polling (20 ms after the last command) a worker uses its CPU; once the
    // window is over (and the naps have grown), the process is idle.
    std::thread::sleep(Duration::from_millis(300));
    let ticks = ticks_over(pid, 2);
    eprintln!("poll mode, idle: {ticks} ticks in 2 s with 3 queue workers");
    assert!(
        ticks <= 10,
        "idle CPU {ticks} ticks in 2 s (a polling worker would use ~200)"
    );
    // A command after idle: found within the longest nap (10 ms), well under a second.
    let t = Instant::now();
    assert!(must(d.cmd(2, rw(io_op::READ, 1, 0, 16, buf, buf + PAGE))).ok());
    let took = t.elapsed();
    eprintln!("poll mode: a command after 2.3 s idle took {took:?}");
    assert!(took < Duration::from_secs(1), "{took:?}");
    // Deleting a queue ends its worker; so does a controller reset, for all of them.
    assert!(must(d.delete_sq(2)).ok());
    wait_workers(pid, &["vnvme-sq0", "vnvme-sq1"]);
    must(d.disable());
    wait_workers(pid, &[]);
    let ticks = ticks_over(pid, 1);
    assert!(ticks <= 5, "after reset: {ticks} ticks in 1 s");
}
