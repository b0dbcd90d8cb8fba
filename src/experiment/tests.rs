//! Experiment control through the model: counters, the observer's records, injected
//! faults, the latency model and Copy limits changed at run time.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::nvme::tests::admin::{feat_sqe, get_log};
use crate::nvme::tests::copy::{block, copy_cmd, copy_host, limited, seed, seeded, set_cdfe, DATA};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::experiment::*;
use crate::hooks::{AdminKey, RangeRecord};
use crate::nvme::aer::AerState;
use crate::nvme::namespace::CopyLimits;
use crate::nvme::spec::*;
use crate::nvme::tests::*;
use crate::nvme::ControllerConfig;

/// A read buffer, away from every other scratch area.
const RBUF: u64 = 0xa00000;

#[derive(Default)]
struct Recorder(Mutex<Vec<CommandRecord>>);

impl CommandObserver for Recorder {
    fn completed(&self, rec: &CommandRecord) {
        self.0.lock().unwrap().push(rec.clone());
    }
}

impl Recorder {
    /// Waits (bounded) until `n` records arrived: a record follows its CQE.
    fn wait(&self, n: usize) -> Vec<CommandRecord> {
        let start = Instant::now();
        loop {
            let r = self.0.lock().unwrap().clone();
            if r.len() >= n || start.elapsed() > TIMEOUT {
                return r;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

fn observe(h: &Host) -> Arc<Recorder> {
    let r = Arc::new(Recorder::default());
    h.lab.set_observer(Some(r.clone()));
    r
}

fn read(nsid: u32, slba: u64, nlb: u32) -> Sqe {
    rw(io_op::READ, nsid, slba, nlb, RBUF, RBUF + 4096)
}

fn write(nsid: u32, slba: u64, nlb: u32) -> Sqe {
    rw(io_op::WRITE, nsid, slba, nlb, DATA, DATA + 4096)
}

fn two_ns_host() -> Host {
    let mut h = Host::new(
        ControllerConfig::default(),
        vec![memns(1, limited(16, 64, 7)), memns(2, limited(16, 64, 7))],
    );
    h.io_pair(1, 32);
    h
}

fn fault(opcode: u8, status: u16) -> FaultSpec {
    FaultSpec::new(opcode, status)
}

fn op<'a>(s: &'a StatsSnapshot, ns: &str, name: &str) -> &'a OpcodeStats {
    s.get(ns)
        .and_then(|n| n.opcodes.get(name))
        .unwrap_or_else(|| panic!("no counters for {ns}/{name}: {s:?}"))
}

// ---------------------------------------------------------------------------------------
// Counters

#[test]
fn counters_per_namespace_and_opcode() {
    let mut h = two_ns_host();
    h.lab.reset_stats();
    seed(&mut h, 1, 8);
    assert!(h.cmd(1, read(1, 0, 4)).ok());
    assert!(h.cmd(1, read(1, 2, 2)).ok());
    let c = h.cmd(1, read(2, 2047, 2));
    assert_eq!(c.status.0, 0x4080);
    let wz = Sqe {
        cdw12: 3,
        ..rw(io_op::WRITE_ZEROES, 2, 10, 1, 0, 0)
    };
    assert!(h.cmd(1, wz).ok());
    assert!(h.cmd(1, rw(io_op::VERIFY, 1, 0, 5, 0, 0)).ok());
    assert!(h.cmd(1, rw(io_op::COMPARE, 1, 0, 1, DATA, 0)).ok());
    assert!(h.cmd(1, rw(io_op::FLUSH, 1, 0, 1, 0, 0)).ok());
    assert_eq!(h.cmd(1, rw(0x7f, 1, 0, 1, 0, 0)).status.0, 0x4001);
    let c = copy_cmd(&mut h, 1, 100, 0, &[(0, 0, 2), (0, 4, 3)]);
    assert!(c.ok());
    let c = copy_cmd(&mut h, 1, 200, 0, &[(0, 0, 1)]);
    assert!(c.ok());
    // Range 1 is beyond MSSRL 16: range 0 (2 blocks) is copied.
    let c = copy_cmd(&mut h, 2, 300, 0, &[(0, 0, 2), (0, 0, 17), (0, 0, 1)]);
    assert_eq!((c.status.0, c.dw0), (0x4183, 1));
    h.identify(cns::CONTROLLER, 0, 0);

    let s = h.lab.stats();
    let w = op(&s, "1", "write");
    assert_eq!((w.commands, w.blocks), (1, 8));
    let r = op(&s, "1", "read");
    assert_eq!((r.commands, r.blocks), (2, 6));
    assert!(r.errors.is_empty());
    let r2 = op(&s, "2", "read");
    assert_eq!((r2.commands, r2.blocks), (1, 0));
    assert_eq!(r2.errors, BTreeMap::from([("0x4080".to_string(), 1)]));
    assert_eq!(op(&s, "2", "write-zeroes").blocks, 4);
    assert_eq!(op(&s, "1", "verify").blocks, 5);
    assert_eq!(op(&s, "1", "compare").blocks, 1);
    assert_eq!(op(&s, "1", "flush").commands, 1);
    let u = op(&s, "1", "0x7f");
    assert_eq!(u.errors, BTreeMap::from([("0x4001".to_string(), 1)]));
    let cp = op(&s, "1", "copy");
    assert_eq!((cp.commands, cp.blocks), (2, 6));
    assert_eq!(
        s["1"].copy,
        CopyStats {
            ranges: 3,
            blocks_copied: 6,
            ranges_histogram: BTreeMap::from([("1".into(), 1), ("2".into(), 1)]),
            formats: BTreeMap::from([("0".into(), 2)]),
            max_range_blocks: 3,
            max_command_blocks: 5,
        }
    );
    let cp2 = op(&s, "2", "copy");
    assert_eq!((cp2.commands, cp2.blocks), (1, 2));
    assert_eq!(cp2.errors, BTreeMap::from([("0x4183".to_string(), 1)]));
    assert_eq!(s["2"].copy.ranges, 3);
    assert_eq!(s["2"].copy.blocks_copied, 2);
    assert_eq!(s["2"].copy.ranges_histogram["3"], 1);
    // What was asked for, also when refused: the 17-block range over MSSRL 16 shows.
    assert_eq!(
        (s["2"].copy.max_range_blocks, s["2"].copy.max_command_blocks),
        (17, 20)
    );
    // Admin commands are counted under "admin" (the queue creation before the reset is
    // not, the Identify after it is).
    let a = op(&s, "admin", "identify");
    assert_eq!(a.commands, 1);
    assert!(!s["admin"].opcodes.contains_key("create-sq"));

    h.lab.reset_stats();
    let s = h.lab.stats();
    assert!(s
        .values()
        .all(|n| n.opcodes.values().all(|o| o.commands == 0) && n.copy.ranges == 0));
}

// ---------------------------------------------------------------------------------------
// Observer

#[test]
fn observer_sees_exactly_the_commands_with_their_fields() {
    let mut h = two_ns_host();
    seed(&mut h, 1, 8);
    seed(&mut h, 2, 8);
    set_cdfe(&mut h, 0b0100);
    let rec = observe(&h);
    let before = Instant::now();
    let rd = h.cmd(1, read(1, 3, 2));
    let bad = h.cmd(1, read(2, 4096, 1));
    let c0 = copy_cmd(&mut h, 1, 100, 0, &[(0, 5, 2), (0, 1, 1)]);
    let c2 = copy_cmd(&mut h, 1, 200, 2, &[(2, 6, 1), (1, 7, 2)]);
    let (id, _) = h.identify(cns::NAMESPACE, 2, 0);
    assert!(rd.ok() && c0.ok() && c2.ok() && id.ok());
    let recs = rec.wait(5);
    let elapsed = before.elapsed().as_micros() as u64;
    assert_eq!(recs.len(), 5, "{recs:#?}");
    // Records of different queues may arrive in either order: look them up by cid.
    let by = |cid: u16| {
        recs.iter()
            .find(|r| r.cid == cid)
            .unwrap_or_else(|| panic!("no record of cid {cid}: {recs:#?}"))
    };

    let r = by(rd.cid);
    assert_eq!(
        (r.qid, r.opcode, r.nsid, r.slba, r.nlb, r.status, r.dw0),
        (1, io_op::READ, 1, Some(3), Some(2), 0, 0)
    );
    assert!(r.copy.is_none());
    let r = by(bad.cid);
    assert_eq!(
        (r.nsid, r.slba, r.nlb, r.status),
        (2, Some(4096), Some(1), 0x4080)
    );
    let r = by(c0.cid);
    assert_eq!((r.opcode, r.nsid, r.slba, r.nlb), (0x19, 1, None, None));
    assert_eq!(
        r.copy,
        Some(CopyRecord {
            sdlba: 100,
            format: 0,
            nr: 1,
            ranges: vec![
                RangeRecord {
                    nsid: 1,
                    slba: 5,
                    nlb: 2
                },
                RangeRecord {
                    nsid: 1,
                    slba: 1,
                    nlb: 1
                },
            ],
        })
    );
    let r = by(c2.cid);
    assert_eq!(r.status, 0);
    assert_eq!(
        r.copy,
        Some(CopyRecord {
            sdlba: 200,
            format: 2,
            nr: 1,
            ranges: vec![
                RangeRecord {
                    nsid: 2,
                    slba: 6,
                    nlb: 1
                },
                RangeRecord {
                    nsid: 1,
                    slba: 7,
                    nlb: 2
                },
            ],
        })
    );
    let r = by(id.cid);
    assert_eq!(
        (r.qid, r.opcode, r.nsid, r.slba, r.copy.is_none()),
        (0, admin_op::IDENTIFY, 2, None, true)
    );
    // Latencies fit in the test's run time; the queue's own records come in order.
    assert!(recs.iter().all(|r| r.latency_us <= elapsed));
    assert!(by(rd.cid).time_us <= by(c2.cid).time_us);

    // Removed: no more records.
    h.lab.set_observer(None);
    assert!(h.cmd(1, read(1, 0, 1)).ok());
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(rec.0.lock().unwrap().len(), 5);
}

// ---------------------------------------------------------------------------------------
// Faults

/// Runs `n` one-block reads of `nsid` and returns which failed, with what status.
fn reads(h: &mut Host, nsid: u32, n: usize) -> Vec<Option<u16>> {
    (0..n)
        .map(|i| {
            h.fill(RBUF, 512, 0xee);
            let c = h.cmd(1, read(nsid, i as u64, 1));
            if c.ok() {
                None
            } else {
                assert_eq!(
                    h.read_mem(RBUF, 512),
                    vec![0xee; 512],
                    "an injected read moves no data"
                );
                Some(c.status.0)
            }
        })
        .collect()
}

fn failed(p: &[Option<u16>]) -> Vec<usize> {
    p.iter()
        .enumerate()
        .filter(|(_, s)| s.is_some())
        .map(|(i, _)| i)
        .collect()
}

#[test]
fn fault_after_every_count() {
    let mut h = two_ns_host();
    let id = h
        .lab
        .add_fault(FaultSpec {
            after: 2,
            every: 3,
            count: Some(2),
            ..fault(io_op::READ, 0x0281)
        })
        .unwrap();
    let p = reads(&mut h, 1, 12);
    assert_eq!(failed(&p), vec![2, 5]);
    assert_eq!(p[2], Some(0x4281));
    let f = h.lab.faults();
    assert_eq!(f.len(), 1);
    assert_eq!((f[0].id, f[0].matched, f[0].injected), (id, 12, 2));
    // Writes do not match a read fault.
    assert!(h.cmd(1, write(1, 0, 1)).ok());
    assert_eq!(h.lab.faults()[0].matched, 12);
}

#[test]
fn fault_on_write_leaves_the_data_alone() {
    let mut h = two_ns_host();
    h.lab.add_fault(fault(io_op::WRITE, 0x0280)).unwrap();
    h.write_mem(DATA, &pattern(4096, 3));
    let c = h.cmd(1, write(1, 0, 8));
    assert_eq!(c.status.0, 0x4280);
    assert_eq!(h.store_bytes(1, 0, 4096), vec![0u8; 4096]);
}

#[test]
fn fault_probability_is_reproducible_with_a_seed() {
    let run = |seed: Option<u64>| {
        let mut h = two_ns_host();
        h.lab
            .add_fault(FaultSpec {
                probability: 0.5,
                seed,
                ..fault(io_op::READ, 0x0281)
            })
            .unwrap();
        let p = failed(&reads(&mut h, 1, 40));
        assert_eq!(h.lab.faults()[0].injected, p.len() as u64);
        p
    };
    let a = run(Some(7));
    assert_eq!(a, run(Some(7)), "same seed, same injections");
    assert_ne!(a, run(Some(8)), "another seed, other injections");
    assert!((5..=35).contains(&a.len()), "about half: {a:?}");
    // Without a seed, the first fault of a controller always draws the same.
    assert_eq!(run(None), run(None));
}

#[test]
fn fault_nsid_filter_and_dnr_off() {
    let mut h = two_ns_host();
    h.lab
        .add_fault(FaultSpec {
            nsid: Some(2),
            dnr: false,
            ..fault(io_op::READ, 0x0281)
        })
        .unwrap();
    assert_eq!(failed(&reads(&mut h, 1, 3)), Vec::<usize>::new());
    let p = reads(&mut h, 2, 3);
    assert_eq!(p, vec![Some(0x0281); 3], "no DNR");
    assert_eq!(h.lab.faults()[0].matched, 3);
}

#[test]
fn several_faults_lowest_id_wins_all_count_and_clear() {
    let mut h = two_ns_host();
    let a = h
        .lab
        .add_fault(FaultSpec {
            every: 2,
            ..fault(io_op::READ, 0x0281)
        })
        .unwrap();
    let b = h.lab.add_fault(fault(io_op::READ, 0x0006)).unwrap();
    assert!(b > a);
    let p = reads(&mut h, 1, 4);
    assert_eq!(
        p,
        vec![Some(0x4281), Some(0x4006), Some(0x4281), Some(0x4006)]
    );
    let f = h.lab.faults();
    assert_eq!((f[0].matched, f[0].injected), (4, 2));
    assert_eq!((f[1].matched, f[1].injected), (4, 2));
    h.lab.clear_faults();
    assert!(h.lab.faults().is_empty());
    assert_eq!(failed(&reads(&mut h, 1, 4)), Vec::<usize>::new());
    // Ids keep increasing after a clear.
    assert!(h.lab.add_fault(fault(io_op::READ, 0x0281)).unwrap() > b);
}

#[test]
fn fault_errors_name_the_field() {
    let h = two_ns_host();
    for (spec, field) in [
        (
            FaultSpec {
                every: 0,
                ..fault(io_op::READ, 0x0281)
            },
            "every",
        ),
        (
            FaultSpec {
                probability: 2.0,
                ..fault(io_op::READ, 0x0281)
            },
            "probability",
        ),
        (fault(io_op::READ, 0x0981), "status"),
        (fault(0x7e, 0x0281), "opcode"),
        (
            FaultSpec {
                copy_range: Some(1),
                ..fault(io_op::READ, 0x0281)
            },
            "copy_range",
        ),
    ] {
        let e = h.lab.add_fault(spec).unwrap_err();
        assert!(e.starts_with(field), "{field}: {e}");
    }
    assert!(h.lab.faults().is_empty());
}

#[test]
fn copy_fault_at_range_k() {
    let mut h = copy_host(vec![memns(1, limited(16, 64, 7))]);
    seed(&mut h, 1, 16);
    let rec = observe(&h);
    h.lab
        .add_fault(FaultSpec {
            copy_range: Some(2),
            count: Some(1),
            ..fault(io_op::COPY, 0x0280)
        })
        .unwrap();
    let c = copy_cmd(
        &mut h,
        1,
        100,
        0,
        &[(0, 3, 1), (0, 5, 2), (0, 9, 1), (0, 11, 1)],
    );
    assert_eq!((c.status.0, c.dw0), (0x4280, 2));
    assert_eq!(block(&h, 1, 100), seeded(3));
    assert_eq!(block(&h, 1, 101), seeded(5));
    assert_eq!(block(&h, 1, 102), seeded(6));
    assert!(
        block(&h, 1, 103).iter().all(|&b| b == 0),
        "range 2 untouched"
    );
    assert!(
        block(&h, 1, 104).iter().all(|&b| b == 0),
        "range 3 untouched"
    );
    let s = h.lab.stats();
    assert_eq!(s["1"].copy.blocks_copied, 3);
    let r = rec.wait(1);
    assert_eq!(r[0].copy.as_ref().map(|c| c.ranges.len()), Some(4));
    assert_eq!((r[0].status, r[0].dw0), (0x4280, 2));

    // k at or beyond the number of ranges: everything is copied, still the status.
    h.lab.clear_faults();
    h.lab
        .add_fault(FaultSpec {
            copy_range: Some(5),
            ..fault(io_op::COPY, 0x0280)
        })
        .unwrap();
    let c = copy_cmd(&mut h, 1, 200, 0, &[(0, 3, 1), (0, 4, 1)]);
    assert_eq!((c.status.0, c.dw0), (0x4280, 5));
    assert_eq!(
        (block(&h, 1, 200), block(&h, 1, 201)),
        (seeded(3), seeded(4))
    );
    // A real failure before k wins: range 1 is beyond MSSRL.
    let c = copy_cmd(&mut h, 1, 300, 0, &[(0, 3, 1), (0, 4, 17), (0, 5, 1)]);
    assert_eq!((c.status.0, c.dw0), (0x4183, 1));
    assert_eq!(block(&h, 1, 300), seeded(3));
    // So does a command-level one.
    let c = copy_cmd(&mut h, 1, 300, 1, &[(0, 3, 1)]);
    assert_eq!((c.status.0, c.dw0), (0x410a, 0));
}

#[test]
fn copy_fault_without_range_copies_nothing() {
    let mut h = copy_host(vec![memns(1, limited(16, 64, 7))]);
    seed(&mut h, 1, 8);
    let rec = observe(&h);
    h.lab.add_fault(fault(io_op::COPY, 0x0281)).unwrap();
    let c = copy_cmd(&mut h, 1, 100, 0, &[(0, 3, 1), (0, 5, 2)]);
    assert_eq!((c.status.0, c.dw0), (0x4281, 0));
    assert!(block(&h, 1, 100).iter().all(|&b| b == 0));
    let r = rec.wait(1);
    let cr = r[0].copy.as_ref().unwrap();
    assert_eq!(
        cr.ranges,
        vec![
            RangeRecord {
                nsid: 1,
                slba: 3,
                nlb: 1
            },
            RangeRecord {
                nsid: 1,
                slba: 5,
                nlb: 2
            },
        ]
    );
    assert_eq!(h.lab.stats()["1"].copy.blocks_copied, 0);
}

// ---------------------------------------------------------------------------------------
// Latency

#[test]
fn latency_entries() {
    let h = two_ns_host();
    assert!(h.lab.latencies().is_empty());
    let l = LatencySpec {
        opcode: io_op::READ,
        fixed_us: 100,
        per_block_us: 2,
    };
    h.lab.set_latency(l).unwrap();
    h.lab
        .set_latency(LatencySpec {
            opcode: io_op::COPY,
            fixed_us: 0,
            per_block_us: 5,
        })
        .unwrap();
    assert_eq!(h.lab.latencies().len(), 2);
    assert_eq!(h.lab.latencies()[0], l);
    h.lab
        .set_latency(LatencySpec {
            opcode: io_op::READ,
            fixed_us: 0,
            per_block_us: 0,
        })
        .unwrap();
    assert_eq!(h.lab.latencies()[0].opcode, io_op::COPY);
    let e = h
        .lab
        .set_latency(LatencySpec {
            opcode: 0x7e,
            fixed_us: 1,
            per_block_us: 0,
        })
        .unwrap_err();
    assert!(e.starts_with("opcode"), "{e}");
    let e = h
        .lab
        .set_latency(LatencySpec {
            opcode: io_op::READ,
            fixed_us: MAX_LATENCY_US + 1,
            per_block_us: 0,
        })
        .unwrap_err();
    assert!(e.starts_with("fixed_us"), "{e}");
}

fn slow_reads(h: &Host, ms: u64) {
    h.lab
        .set_latency(LatencySpec {
            opcode: io_op::READ,
            fixed_us: ms * 1000,
            per_block_us: 0,
        })
        .unwrap();
}

#[test]
fn delayed_read_does_not_hold_up_its_queue_or_others() {
    let mut h = two_ns_host();
    h.io_pair(2, 16);
    let rec = observe(&h);
    // Long enough that the other commands finish first even on a loaded machine.
    slow_reads(&h, 1500);
    let rd = h.submit(1, read(1, 0, 1));
    let wr = h.submit(1, write(1, 8, 1));
    let wr2 = h.submit(2, write(1, 9, 1));
    let c = h.reap(1);
    assert_eq!(
        c.cid, wr,
        "the later write on the same queue completes first"
    );
    let c2 = h.reap(2);
    assert_eq!(c2.cid, wr2);
    assert!(c2.ok());
    // The read may still be finishing in the queue's io_uring; it must reach the
    // delay timer and stay there.
    let held = poll_until(Duration::from_millis(500), Duration::from_millis(1), || {
        Ok::<_, ()>(h.ctrl.delayed_completions() == 1)
    });
    assert_eq!(held, Ok(true), "the read is held by the latency model");
    let c = h.reap(1);
    assert_eq!(c.cid, rd);
    assert!(c.ok());
    assert_eq!(c.sqhd, 2, "SQ head at posting time");
    let r = rec.wait(3);
    let read_rec = r.iter().find(|r| r.opcode == io_op::READ).unwrap();
    assert!(read_rec.latency_us >= 1_500_000, "{read_rec:?}");
    assert_eq!(r.last().unwrap().cid, rd, "recorded when posted");
}

#[test]
fn per_block_latency_and_copy_blocks() {
    let mut h = copy_host(vec![memns(1, limited(16, 64, 7))]);
    seed(&mut h, 1, 8);
    let rec = observe(&h);
    h.lab
        .set_latency(LatencySpec {
            opcode: io_op::COPY,
            fixed_us: 0,
            per_block_us: 50_000,
        })
        .unwrap();
    let c = copy_cmd(&mut h, 1, 100, 0, &[(0, 0, 2), (0, 4, 2)]);
    assert!(c.ok());
    let r = rec.wait(1);
    // Four blocks at 50 ms each.
    assert!(r[0].latency_us >= 200_000, "{:?}", r[0]);
    assert!(r[0].latency_us < 5_000_000, "{:?}", r[0]);
}

#[test]
fn delayed_completions_wait_for_room_in_a_full_completion_queue() {
    let mut h = two_ns_host();
    // CQ 3 has room for one entry; SQs 3 and 4 both complete there.
    assert!(h.create_cq(3, 2, 0x600000, 3, true).ok());
    assert!(h.create_sq(3, 8, 0x610000, 3).ok());
    assert!(h.create_sq(4, 8, 0x620000, 3).ok());
    slow_reads(&h, 50);
    let a = h.submit(3, read(1, 0, 1));
    let b = h.submit(4, read(1, 1, 1));
    // Do not reap until both are due: one is posted, the other waits for room (the
    // ring holds one entry) and is posted once the host moves the head.
    std::thread::sleep(Duration::from_millis(200));
    let first = h.reap(3).cid;
    let second = h.reap(3).cid;
    let mut got = vec![first, second];
    got.sort_unstable();
    let mut want = vec![a, b];
    want.sort_unstable();
    assert_eq!(got, want);
    assert_eq!(h.ctrl.delayed_completions(), 0);
}

#[test]
fn reset_and_queue_deletion_drop_pending_delayed_completions() {
    let mut h = two_ns_host();
    h.io_pair(2, 16);
    let rec = observe(&h);
    // Long enough for the deletion and the reset to come first even on a loaded machine.
    const DELAY: Duration = Duration::from_millis(1000);
    slow_reads(&h, DELAY.as_millis() as u64);
    let wait_held = |h: &Host| {
        let start = Instant::now();
        while h.ctrl.delayed_completions() == 0 && start.elapsed() < TIMEOUT {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(h.ctrl.delayed_completions(), 1);
    };
    // Deleting the SQ drops its delayed completion; the CQ stays and gets nothing.
    h.submit(2, read(1, 0, 1));
    wait_held(&h);
    let c = h.admin(Sqe {
        opcode: admin_op::DELETE_IO_SQ,
        cdw10: 2,
        ..Default::default()
    });
    assert!(c.ok());
    h.forget_sq(2);
    assert_eq!(h.ctrl.delayed_completions(), 0);
    // A controller reset drops them as well.
    let submitted = Instant::now();
    h.submit(1, read(1, 0, 1));
    wait_held(&h);
    h.disable();
    assert_eq!(h.ctrl.delayed_completions(), 0);
    h.enable();
    h.io_pair(1, 32);
    // Past both deadlines: the new queue holds nothing from before the reset, and the
    // deleted SQ's completion queue got nothing (the host forgot CQ 2 with the reset, so
    // look at its memory: CQ 2 was at 0x240000 and its first entry is still zero).
    let past =
        (submitted + DELAY + Duration::from_millis(300)).saturating_duration_since(Instant::now());
    assert!(h.try_reap(1, past).is_none());
    assert_eq!(
        h.read_mem(0x240000, 16),
        vec![0u8; 16],
        "nothing posted in CQ 2"
    );
    slow_reads(&h, 0);
    assert!(h.cmd(1, read(1, 0, 1)).ok());
    let r = rec.wait(1);
    assert!(
        r.iter()
            .all(|r| r.opcode != io_op::READ || r.latency_us < 1_000_000),
        "no dropped read was reported: {r:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Copy limits at run time

fn id_limits(h: &mut Host, nsid: u32) -> (u16, u32, u8) {
    let (c, d) = h.identify(cns::NAMESPACE, nsid, 0);
    assert!(c.ok());
    (
        u16::from_le_bytes([d[id_ns::MSSRL], d[id_ns::MSSRL + 1]]),
        get_u32(&d, id_ns::MCL),
        d[id_ns::MSRC],
    )
}

#[test]
fn set_copy_limits_changes_identify_and_checks_and_raises_the_event() {
    let mut h = copy_host(vec![
        memns(1, limited(16, 64, 7)),
        memns(2, limited(16, 64, 7)),
    ]);
    seed(&mut h, 1, 16);
    assert_eq!(h.ctrl.namespace_ids(), vec![1, 2]);
    assert_eq!(
        h.ctrl.copy_limits(1),
        Some(CopyLimits {
            mssrl: 16,
            mcl: 64,
            msrc: 7
        })
    );
    assert_eq!(id_limits(&mut h, 1), (16, 64, 7));
    let ranges = [(0u32, 0u64, 4u32), (0, 4, 4)];
    assert!(copy_cmd(&mut h, 1, 100, 0, &ranges).ok());

    // Namespace attribute notices on, one request held.
    assert!(h
        .admin(feat_sqe(
            admin_op::SET_FEATURES,
            feat::ASYNC_EVENT_CONFIG,
            1 << 8
        ))
        .ok());
    let rec = observe(&h);
    let aer = h.submit(
        0,
        Sqe {
            opcode: admin_op::ASYNC_EVENT_REQUEST,
            ..Default::default()
        },
    );
    assert!(h.try_reap(0, Duration::from_millis(50)).is_none());

    let l = h.ctrl.set_copy_limits(1, Some(3), None, Some(0)).unwrap();
    assert_eq!(
        l,
        CopyLimits {
            mssrl: 3,
            mcl: 64,
            msrc: 0
        }
    );
    assert_eq!(h.ctrl.copy_limits(1), Some(l));
    assert_eq!(h.ctrl.copy_limits(2).unwrap().mssrl, 16, "only nsid 1");
    let c = h.reap(0);
    assert_eq!((c.cid, c.dw0), (aer, AerState::NS_ATTR_CHANGED_DW0));
    let r = rec.wait(1);
    assert_eq!(
        (r[0].qid, r[0].cid, r[0].opcode, r[0].dw0),
        (
            0,
            aer,
            admin_op::ASYNC_EVENT_REQUEST,
            AerState::NS_ATTR_CHANGED_DW0
        )
    );
    let (c, d) = get_log(&mut h, log::CHANGED_NS_LIST, NSID_ALL, 4096, 0, false);
    assert!(c.ok());
    assert_eq!((get_u32(&d, 0), get_u32(&d, 4)), (1, 0));

    assert_eq!(id_limits(&mut h, 1), (3, 64, 0));
    assert_eq!(id_limits(&mut h, 2), (16, 64, 7));
    // Two ranges now exceed MSRC 0; one of four blocks exceeds MSSRL 3.
    let c = copy_cmd(&mut h, 1, 100, 0, &ranges);
    assert_eq!((c.status.0, c.dw0), (0x4183, 0));
    let c = copy_cmd(&mut h, 1, 100, 0, &ranges[..1]);
    assert_eq!((c.status.0, c.dw0), (0x4183, 0));
    assert!(copy_cmd(&mut h, 1, 100, 0, &[(0, 0, 3)]).ok());
    // MCL below one range's length.
    h.ctrl.set_copy_limits(1, None, Some(2), None).unwrap();
    let c = copy_cmd(&mut h, 1, 100, 0, &[(0, 0, 3)]);
    assert_eq!((c.status.0, c.dw0), (0x4183, 0));
    assert_eq!(id_limits(&mut h, 1), (3, 2, 0));

    for (r, field) in [
        (h.ctrl.set_copy_limits(1, Some(0), None, None), "mssrl"),
        (h.ctrl.set_copy_limits(1, None, Some(0), None), "mcl"),
        (h.ctrl.set_copy_limits(9, Some(1), None, None), "nsid"),
    ] {
        let e = r.unwrap_err();
        assert!(e.starts_with(field), "{field}: {e}");
    }
    assert_eq!(
        id_limits(&mut h, 1),
        (3, 2, 0),
        "refused changes change nothing"
    );
}

#[test]
fn an_earlier_deadline_added_later_is_served_first() {
    let mut h = two_ns_host();
    h.io_pair(2, 16);
    // The timer sleeps towards the first deadline, far away...
    slow_reads(&h, 3000);
    let slow = h.submit(1, read(1, 0, 1));
    let start = Instant::now();
    while h.ctrl.delayed_completions() == 0 && start.elapsed() < TIMEOUT {
        std::thread::sleep(Duration::from_millis(1));
    }
    // ...and a nearer one wakes it.
    slow_reads(&h, 20);
    let fast = h.submit(2, read(1, 1, 1));
    let c = h.reap(2);
    assert_eq!(c.cid, fast);
    assert_eq!(
        h.ctrl.delayed_completions(),
        1,
        "the slow read is still held"
    );
    assert!(h.try_reap(1, Duration::from_millis(10)).is_none());
    let c = h.reap(1);
    assert_eq!(c.cid, slow);
    assert_eq!(h.ctrl.delayed_completions(), 0);
}

#[test]
fn admin_records_carry_feature_identify_and_log_page_keys() {
    let mut h = two_ns_host();
    let r = observe(&h);
    set_cdfe(&mut h, 0b0100);
    h.identify(0x06, 0, 0);
    h.identify(0x05, 1, 0);
    get_log(&mut h, 4, 0, 4096, 0, false);
    let recs = r.wait(4);
    let keys: Vec<_> = recs.iter().map(|r| (r.qid, r.opcode, r.admin)).collect();
    assert_eq!(
        keys,
        vec![
            (
                0,
                admin_op::SET_FEATURES,
                Some(AdminKey::Feature { fid: 0x16 })
            ),
            (
                0,
                admin_op::IDENTIFY,
                Some(AdminKey::Identify {
                    cns: 6,
                    cntid: 0,
                    csi: 0
                })
            ),
            (
                0,
                admin_op::IDENTIFY,
                Some(AdminKey::Identify {
                    cns: 5,
                    cntid: 0,
                    csi: 0
                })
            ),
            (
                0,
                admin_op::GET_LOG_PAGE,
                Some(AdminKey::LogPage { lid: 4 })
            ),
        ]
    );
    // I/O commands have no admin key.
    seed(&mut h, 1, 1);
    let recs = r.wait(5);
    assert_eq!(recs[4].admin, None);
}
