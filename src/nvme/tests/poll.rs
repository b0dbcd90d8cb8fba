//! Poll mode (`--ctrl poll_us`): the doorbells are shared memory (the page a transport
//! lets the client map) and the queue workers poll it. Commands through the page, trapped
//! writes mirrored into it, invalid values as Error events (once per change), a command
//! after the workers went to nap, reset, and Bus Master Enable.

use std::time::{Duration, Instant};

use super::admin::get_log;
use super::*;
use crate::nvme::DoorbellMemory;

/// SQ 1 tail and CQ 1 head: doorbells 2 and 3.
const SQ1: usize = 2;
const CQ1: usize = 3;
/// Asynchronous Event completion Dword 0 for an invalid doorbell value.
const EVENT_INVALID_VALUE: u32 = 0x0001_0100;

fn polled(poll_us: u32) -> Host {
    let cfg = ControllerConfig {
        poll_us,
        ..Default::default()
    };
    let mut h = Host::polled(cfg, vec![memns(1, ns_cfg(16 << 20))]);
    h.io_pair(1, 32);
    h
}

fn page(h: &Host) -> Arc<crate::nvme::LocalDoorbells> {
    h.doorbells.clone().expect("a polled host")
}

fn aer() -> Sqe {
    Sqe {
        opcode: admin_op::ASYNC_EVENT_REQUEST,
        ..Default::default()
    }
}

#[test]
fn commands_through_the_doorbell_page_complete_and_data_round_trips() {
    let mut h = polled(200);
    let db = page(&h);
    let data = pattern(8 * 512, 3);
    h.write_mem(0x800000, &data);
    assert!(h.cmd(1, rw(io_op::WRITE, 1, 40, 8, 0x800000, 0)).ok());
    h.fill(0x810000, 8 * 512, 0);
    assert!(h.cmd(1, rw(io_op::READ, 1, 40, 8, 0x810000, 0)).ok());
    assert_eq!(h.read_mem(0x810000, 8 * 512), data);
    assert_eq!(h.store_bytes(1, 40 * 512, 8 * 512), data);
    // The driver rang only the page: the tail and the head it reaped up to are there.
    assert_eq!(db.load(SQ1), 2);
    assert_eq!(db.load(CQ1), 2);
    // A trapped doorbell write still works, and the page holds it too.
    let cid = h.push(1, rw(io_op::FLUSH, 1, 0, 1, 0, 0));
    h.ring_sq(1);
    assert_eq!(h.reap(1).cid, cid);
    assert_eq!(
        db.load(SQ1),
        3,
        "the trapped write is mirrored into the page"
    );
    // Many commands in a row, each rung through the page.
    for i in 0..100u64 {
        assert!(
            h.cmd(1, rw(io_op::READ, 1, i, 1, 0x810000, 0)).ok(),
            "read {i}"
        );
    }
}

#[test]
fn invalid_values_in_the_page_raise_one_error_event_per_change() {
    let mut h = polled(200);
    let db = page(&h);
    let cid = h.submit(0, aer());
    db.store(SQ1, 32); // SQ 1 has 32 entries: tail 32 is out of range
    let c = h.reap(0);
    assert_eq!((c.cid, c.dw0), (cid, EVENT_INVALID_VALUE));
    // The Error Information log has the entry; reading it unmasks Error events.
    let (c, log) = get_log(&mut h, log::ERROR_INFO, 0, 64, 0, false);
    assert!(c.ok());
    assert_eq!(get_u64(&log, 0), 1, "one error so far");
    // The bad value stays in the page, but it is taken once: no second event.
    let cid = h.submit(0, aer());
    assert!(h.try_reap(0, Duration::from_millis(100)).is_none());
    // A CQ head moved over entries never posted (CQ 1 is empty): the next event.
    db.store(CQ1, 17);
    let c = h.reap(0);
    assert_eq!((c.cid, c.dw0), (cid, EVENT_INVALID_VALUE));
    let (_, log) = get_log(&mut h, log::ERROR_INFO, 0, 64, 0, false);
    assert_eq!(get_u64(&log, 0), 2);
    // The queue goes on: the driver's next valid tail and head are taken.
    for i in 0..40u64 {
        assert!(h.cmd(1, rw(io_op::FLUSH, 1, i, 1, 0, 0)).ok(), "flush {i}");
    }
}

#[test]
fn a_command_after_the_workers_went_to_nap_completes() {
    let mut h = polled(50);
    assert!(h.cmd(1, rw(io_op::FLUSH, 1, 0, 1, 0, 0)).ok());
    // Past the poll window and long enough for the naps to reach their longest.
    std::thread::sleep(Duration::from_millis(100));
    let t = Instant::now();
    assert!(h.cmd(1, rw(io_op::FLUSH, 1, 0, 1, 0, 0)).ok());
    let took = t.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "a command after idle took {took:?}"
    );
    // Admin commands too (the admin worker polls its own doorbell).
    std::thread::sleep(Duration::from_millis(50));
    let (c, _) = h.identify(1, 0, 0);
    assert!(c.ok());
}

#[test]
fn reset_clears_the_page_and_the_queues_start_from_zero() {
    let mut h = polled(100);
    let db = page(&h);
    for _ in 0..5 {
        assert!(h.cmd(1, rw(io_op::FLUSH, 1, 0, 1, 0, 0)).ok());
    }
    assert_eq!(db.load(SQ1), 5);
    // Junk for a queue that does not exist: nothing watches it.
    db.store(20, 7);
    h.disable();
    assert!(
        (0..db.count()).all(|i| db.load(i) == 0),
        "registers reset to 0"
    );
    h.enable();
    db.store(SQ1, 9); // stale junk before the queue exists again
    h.io_pair(1, 32);
    assert_eq!(db.load(SQ1), 0, "a new queue's doorbell starts at 0");
    assert!(h.cmd(1, rw(io_op::FLUSH, 1, 0, 1, 0, 0)).ok());
    assert!(
        h.try_reap(1, Duration::from_millis(50)).is_none(),
        "nothing stale ran"
    );
}

#[test]
fn without_bus_master_entries_in_the_page_wait() {
    let mut h = polled(100);
    h.ctrl.set_bus_master(false);
    let cid = h.submit(1, rw(io_op::FLUSH, 1, 0, 1, 0, 0));
    assert!(h.try_reap(1, Duration::from_millis(100)).is_none());
    h.ctrl.set_bus_master(true);
    assert_eq!(h.reap(1).cid, cid);
}

/// A full completion queue learns the host's new head from the page (nothing rings):
/// six commands through a CQ with room for one entry complete in a few milliseconds,
/// not one 50 ms recheck per entry.
#[test]
fn a_full_completion_queue_sees_the_heads_in_the_page() {
    let mut h = polled(100);
    let base = 0x600000;
    assert!(h.create_cq(2, 2, base, 2, true).ok());
    assert!(h.create_sq(2, 8, base + 0x10000, 2).ok());
    let cids: Vec<u16> = (0..6)
        .map(|_| h.push(2, rw(io_op::FLUSH, 1, 0, 1, 0, 0)))
        .collect();
    let t = Instant::now();
    must(h.drv.ring_sq(2));
    for cid in cids {
        assert_eq!(h.reap(2).cid, cid);
    }
    let took = t.elapsed();
    assert!(
        took < Duration::from_millis(200),
        "six completions took {took:?}"
    );
}
