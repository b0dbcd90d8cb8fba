//! Unit tests on fake guest memory: descriptor chains built with virtio-queue's mock
//! split queue, run through `request::handle` (and through the back end's vring worker
//! for notifications, hooks and delays), well-formed and hostile.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vhost_user_backend::{VhostUserBackend, VringT};
use virtio_bindings::virtio_ring::{VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
use virtio_queue::mock::MockSplitQueue;
use vm_memory::{Bytes, GuestAddress, GuestAddressSpace, GuestMemoryAtomic, GuestMemoryMmap};
use vmm_sys_util::epoll::EventSet;

use crate::block::Volume;
use crate::hooks::{Completed, Hooks, Injection, NoHooks, Op, OpKind};

use super::backend::BlkBackend;
use super::completion::Vring;
use super::request::{handle, Exec, Mem, Outcome};
use super::spec::{self, S_IOERR, S_OK, S_UNSUPP};
use super::Disk;

const W: u16 = VRING_DESC_F_WRITE as u16;
const HDR: u64 = 0x10_0000;
const DATA: u64 = 0x20_0000;
const STATUS: u64 = 0x30_0000;
const MEM_SIZE: usize = 0x40_0000;

fn mem() -> Mem {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).unwrap()
}

fn disk(bs: u64, size: u64, read_only: bool) -> Disk {
    let v = Arc::new(Volume::memory("t", size, bs, false).unwrap());
    Disk::new(v, 1, 1, read_only, spec::device_id("SER", 1))
}

fn d(addr: u64, len: u32, flags: u16) -> RawDescriptor {
    RawDescriptor::from(SplitDescriptor::new(addr, len, flags, 0))
}

fn header(m: &Mem, rtype: u32, sector: u64) {
    let mut h = [0u8; 16];
    h[..4].copy_from_slice(&rtype.to_le_bytes());
    h[8..].copy_from_slice(&sector.to_le_bytes());
    m.write_slice(&h, GuestAddress(HDR)).unwrap();
    m.write_obj(0xffu8, GuestAddress(STATUS)).unwrap();
}

fn run_with(disk: &Disk, hooks: &dyn Hooks, m: &Mem, descs: &[RawDescriptor]) -> Outcome {
    let q = MockSplitQueue::new(m, 256);
    let chain = q.build_desc_chain(descs).unwrap();
    let x = Exec {
        disk,
        hooks,
        fua: false,
        queue: 0,
    };
    handle(&x, m, chain)
}

fn run(disk: &Disk, m: &Mem, descs: &[RawDescriptor]) -> Outcome {
    run_with(disk, &NoHooks, m, descs)
}

fn status(m: &Mem) -> u8 {
    m.read_obj(GuestAddress(STATUS)).unwrap()
}

/// A request with header, one data descriptor and status.
fn io(disk: &Disk, m: &Mem, rtype: u32, sector: u64, len: u32, data_flags: u16) -> Outcome {
    header(m, rtype, sector);
    run(
        disk,
        m,
        &[d(HDR, 16, 0), d(DATA, len, data_flags), d(STATUS, 1, W)],
    )
}

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed))
        .collect()
}

#[test]
fn write_then_read_back() {
    let (m, dk) = (mem(), disk(512, 1 << 20, false));
    let data = pattern(8192, 3);
    m.write_slice(&data, GuestAddress(DATA)).unwrap();
    let o = io(&dk, &m, spec::T_OUT, 16, 8192, 0);
    assert_eq!((o.status, o.used_len), (Some(S_OK), 1));
    assert_eq!(o.block, Some((16, 16)));
    assert_eq!(status(&m), S_OK);
    m.write_slice(&[0u8; 8192], GuestAddress(DATA)).unwrap();
    let o = io(&dk, &m, spec::T_IN, 16, 8192, W);
    assert_eq!((o.status, o.used_len), (Some(S_OK), 8193));
    let mut back = vec![0u8; 8192];
    m.read_slice(&mut back, GuestAddress(DATA)).unwrap();
    assert_eq!(back, data);
    // The volume holds it at byte 16 * 512.
    let mut stored = vec![0u8; 8192];
    dk.volume.store().read(16 * 512, &mut stored).unwrap();
    assert_eq!(stored, data);
}

#[test]
fn scattered_data_descriptors() {
    let (m, dk) = (mem(), disk(4096, 1 << 20, false));
    let data = pattern(8192, 9);
    m.write_slice(&data[..4096], GuestAddress(DATA + 0x8000))
        .unwrap();
    m.write_slice(&data[4096..], GuestAddress(DATA)).unwrap();
    header(&m, spec::T_OUT, 8);
    let o = run(
        &dk,
        &m,
        &[
            d(HDR, 16, 0),
            d(DATA + 0x8000, 4096, 0),
            d(DATA, 4096, 0),
            d(STATUS, 1, W),
        ],
    );
    assert_eq!(o.status, Some(S_OK));
    assert_eq!(o.block, Some((1, 2)));
    let mut stored = vec![0u8; 8192];
    dk.volume.store().read(4096, &mut stored).unwrap();
    assert_eq!(stored, data);
}

#[test]
fn misaligned_and_out_of_range_are_ioerr() {
    let (m, dk) = (mem(), disk(4096, 1 << 20, false));
    assert_eq!(io(&dk, &m, spec::T_IN, 1, 4096, W).status, Some(S_IOERR));
    assert_eq!(io(&dk, &m, spec::T_IN, 8, 512, W).status, Some(S_IOERR));
    assert_eq!(io(&dk, &m, spec::T_OUT, 8, 1000, 0).status, Some(S_IOERR));
    // Last block is fine, one past is not; huge sectors do not overflow.
    assert_eq!(io(&dk, &m, spec::T_IN, 2040, 4096, W).status, Some(S_OK));
    assert_eq!(io(&dk, &m, spec::T_IN, 2048, 4096, W).status, Some(S_IOERR));
    assert_eq!(io(&dk, &m, spec::T_IN, 2040, 8192, W).status, Some(S_IOERR));
    assert_eq!(
        io(&dk, &m, spec::T_IN, u64::MAX - 7, 4096, W).status,
        Some(S_IOERR)
    );
    assert_eq!(status(&m), S_IOERR);
}

#[test]
fn flush_get_id_and_unknown_types() {
    let (m, dk) = (mem(), disk(512, 1 << 20, false));
    header(&m, spec::T_FLUSH, 0);
    let o = run(&dk, &m, &[d(HDR, 16, 0), d(STATUS, 1, W)]);
    assert_eq!(o.status, Some(S_OK));
    assert_eq!(o.op.map(|o| o.kind), Some(OpKind::Flush));
    let o = io(&dk, &m, spec::T_GET_ID, 0, 20, W);
    assert_eq!((o.status, o.used_len), (Some(S_OK), 21));
    let mut id = [0u8; 20];
    m.read_slice(&mut id, GuestAddress(DATA)).unwrap();
    assert_eq!(&id[..6], b"SER-1\0");
    // GET_ID into a readable buffer: IOERR.
    assert_eq!(io(&dk, &m, spec::T_GET_ID, 0, 20, 0).status, Some(S_IOERR));
    for t in [2u32, 14, 99, 0x8000_0000] {
        let o = io(&dk, &m, t, 0, 512, W);
        assert_eq!(o.status, Some(S_UNSUPP), "type {t}");
        assert_eq!(o.op.map(|o| o.kind), Some(OpKind::Other));
    }
}

fn segments(m: &Mem, segs: &[(u64, u32, u32)]) -> u32 {
    let mut b = Vec::new();
    for &(s, n, f) in segs {
        b.extend_from_slice(&s.to_le_bytes());
        b.extend_from_slice(&n.to_le_bytes());
        b.extend_from_slice(&f.to_le_bytes());
    }
    m.write_slice(&b, GuestAddress(DATA)).unwrap();
    b.len() as u32
}

fn stored(dk: &Disk, off: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    dk.volume.store().read(off, &mut v).unwrap();
    v
}

#[test]
fn discard_and_write_zeroes_read_back_zeroes() {
    let (m, dk) = (mem(), disk(4096, 1 << 20, false));
    dk.volume.store().write(0, &pattern(1 << 20, 1)).unwrap();
    let len = segments(&m, &[(8, 8, 0), (64, 16, 0)]);
    header(&m, spec::T_DISCARD, 0);
    let o = run(&dk, &m, &[d(HDR, 16, 0), d(DATA, len, 0), d(STATUS, 1, W)]);
    assert_eq!(o.status, Some(S_OK));
    assert_eq!((o.block, o.blocks), (Some((1, 1)), 3));
    assert_eq!(stored(&dk, 4096, 4096), vec![0u8; 4096]);
    assert_eq!(stored(&dk, 8 * 4096, 8192), vec![0u8; 8192]);
    assert_ne!(stored(&dk, 0, 4096), vec![0u8; 4096]);
    for flags in [0, spec::WRITE_ZEROES_FLAG_UNMAP] {
        let sector = if flags == 0 { 128 } else { 256 };
        let len = segments(&m, &[(sector, 8, flags)]);
        header(&m, spec::T_WRITE_ZEROES, 0);
        let o = run(&dk, &m, &[d(HDR, 16, 0), d(DATA, len, 0), d(STATUS, 1, W)]);
        assert_eq!(o.status, Some(S_OK));
        assert_eq!(stored(&dk, sector * 512, 4096), vec![0u8; 4096]);
    }
}

#[test]
fn bad_segments_touch_nothing() {
    let (m, dk) = (mem(), disk(4096, 1 << 20, false));
    let before = pattern(1 << 20, 5);
    dk.volume.store().write(0, &before).unwrap();
    type Case = (u32, Vec<(u64, u32, u32)>, u8);
    let cases: Vec<Case> = vec![
        // Second range outside the volume: the first is not run either.
        (spec::T_DISCARD, vec![(0, 8, 0), (2048, 8, 0)], S_IOERR),
        (
            spec::T_WRITE_ZEROES,
            vec![(0, 8, 0), (2040, 16, 0)],
            S_IOERR,
        ),
        // Unmap on discard and unknown flags: UNSUPP.
        (spec::T_DISCARD, vec![(0, 8, 1)], S_UNSUPP),
        (spec::T_WRITE_ZEROES, vec![(0, 8, 2)], S_UNSUPP),
        // Misaligned, too large, too many segments.
        (spec::T_DISCARD, vec![(1, 8, 0)], S_IOERR),
        (spec::T_DISCARD, vec![(0, 7, 0)], S_IOERR),
        (
            spec::T_DISCARD,
            vec![(0, spec::MAX_DISCARD_SECTORS + 8, 0)],
            S_IOERR,
        ),
        (spec::T_DISCARD, vec![(0, 8, 0); 33], S_IOERR),
        (spec::T_WRITE_ZEROES, vec![(u64::MAX - 7, 8, 0)], S_IOERR),
    ];
    for (t, segs, want) in cases {
        let len = segments(&m, &segs);
        header(&m, t, 0);
        let o = run(&dk, &m, &[d(HDR, 16, 0), d(DATA, len, 0), d(STATUS, 1, W)]);
        assert_eq!(o.status, Some(want), "{t} {segs:?}");
        assert_eq!(stored(&dk, 0, 1 << 20), before, "{t} {segs:?}");
    }
    // Not a multiple of 16, empty, writable segment buffer.
    for (len, flags) in [(15, 0), (0, 0), (17, 0), (16, W)] {
        segments(&m, &[(0, 8, 0), (0, 8, 0)]);
        header(&m, spec::T_DISCARD, 0);
        let o = run(
            &dk,
            &m,
            &[d(HDR, 16, 0), d(DATA, len, flags), d(STATUS, 1, W)],
        );
        assert_eq!(o.status, Some(S_IOERR), "len {len}");
    }
    assert_eq!(stored(&dk, 0, 1 << 20), before);
}

#[test]
fn read_only_view_refuses_writes() {
    let (m, dk) = (mem(), disk(512, 1 << 20, true));
    assert!(dk.read_only && !dk.volume.read_only());
    dk.volume.store().write(0, &[7u8; 4096]).unwrap();
    assert_eq!(io(&dk, &m, spec::T_OUT, 0, 4096, 0).status, Some(S_IOERR));
    let len = segments(&m, &[(0, 8, 0)]);
    for t in [spec::T_DISCARD, spec::T_WRITE_ZEROES] {
        header(&m, t, 0);
        let o = run(&dk, &m, &[d(HDR, 16, 0), d(DATA, len, 0), d(STATUS, 1, W)]);
        assert_eq!(o.status, Some(S_IOERR));
    }
    assert_eq!(stored(&dk, 0, 4096), vec![7u8; 4096]);
    assert_eq!(io(&dk, &m, spec::T_IN, 0, 4096, W).status, Some(S_OK));
    header(&m, spec::T_FLUSH, 0);
    let o = run(&dk, &m, &[d(HDR, 16, 0), d(STATUS, 1, W)]);
    assert_eq!(o.status, Some(S_OK));
}

#[test]
fn hostile_chains_get_ioerr_or_are_dropped() {
    let (m, dk) = (mem(), disk(512, 1 << 20, false));
    let far = 0xffff_0000_0000u64;
    let ioerr: Vec<(&str, Vec<RawDescriptor>)> = vec![
        (
            "writable header",
            vec![d(HDR, 16, W), d(DATA, 512, W), d(STATUS, 1, W)],
        ),
        (
            "short header",
            vec![d(HDR, 8, 0), d(DATA, 512, W), d(STATUS, 1, W)],
        ),
        ("long header", vec![d(HDR, 528, 0), d(STATUS, 1, W)]),
        ("no header", vec![d(STATUS, 1, W)]),
        (
            "header outside memory",
            vec![d(far, 16, 0), d(STATUS, 1, W)],
        ),
        (
            "data outside memory",
            vec![d(HDR, 16, 0), d(far, 512, W), d(STATUS, 1, W)],
        ),
        (
            "data crossing the end of memory",
            vec![
                d(HDR, 16, 0),
                d(MEM_SIZE as u64 - 512, 1024, W),
                d(STATUS, 1, W),
            ],
        ),
        (
            "read into readable data",
            vec![d(HDR, 16, 0), d(DATA, 512, 0), d(STATUS, 1, W)],
        ),
        (
            "status of 2 bytes",
            vec![d(HDR, 16, 0), d(DATA, 512, W), d(STATUS - 1, 2, W)],
        ),
    ];
    for (what, descs) in ioerr {
        header(&m, spec::T_IN, 0);
        let o = run(&dk, &m, &descs);
        assert_eq!(o.status, Some(S_IOERR), "{what}");
        assert_eq!(o.used_len, 1, "{what}");
        assert_eq!(status(&m), S_IOERR, "{what}");
    }
    // Too many descriptors: seg_max + 3 of them.
    header(&m, spec::T_IN, 0);
    let mut descs = vec![d(HDR, 16, 0)];
    descs.extend((0..spec::SEG_MAX + 1).map(|i| d(DATA + 512 * i as u64, 512, W)));
    descs.push(d(STATUS, 1, W));
    assert_eq!(run(&dk, &m, &descs).status, Some(S_IOERR));
    // Exactly seg_max data descriptors are fine.
    descs.remove(1);
    assert_eq!(run(&dk, &m, &descs).status, Some(S_OK));

    let dropped: Vec<(&str, Vec<RawDescriptor>)> = vec![
        (
            "readable status",
            vec![d(HDR, 16, 0), d(DATA, 512, W), d(STATUS, 1, 0)],
        ),
        (
            "empty status",
            vec![d(HDR, 16, 0), d(DATA, 512, W), d(STATUS, 0, W)],
        ),
        (
            "status outside memory",
            vec![d(HDR, 16, 0), d(DATA, 512, W), d(far, 1, W)],
        ),
        (
            "status address overflows",
            vec![d(HDR, 16, 0), d(u64::MAX, 2, W)],
        ),
    ];
    for (what, descs) in dropped {
        header(&m, spec::T_IN, 0);
        let o = run(&dk, &m, &descs);
        assert_eq!((o.status, o.used_len), (None, 0), "{what}");
        assert_eq!(status(&m), 0xff, "{what}");
    }
}

#[test]
fn broken_links_are_dropped() {
    let (m, dk) = (mem(), disk(512, 1 << 20, false));
    let q = MockSplitQueue::new(&m, 16);
    let x = Exec {
        disk: &dk,
        hooks: &NoHooks,
        fua: false,
        queue: 0,
    };
    let next = VRING_DESC_F_NEXT as u16;
    let raw =
        |addr, len, flags, nx| RawDescriptor::from(SplitDescriptor::new(addr, len, flags, nx));
    // A loop (0 -> 1 -> 0 ...), a next index past the table, a zero-length indirect
    // table, an indirect table outside memory.
    let chains: Vec<Vec<RawDescriptor>> = vec![
        vec![raw(HDR, 16, next, 1), raw(STATUS, 1, W | next, 0)],
        vec![raw(HDR, 16, next, 200)],
        vec![raw(HDR, 0, VRING_DESC_F_INDIRECT as u16, 0)],
        vec![raw(0xffff_0000_0000, 64, VRING_DESC_F_INDIRECT as u16, 0)],
    ];
    for c in chains {
        header(&m, spec::T_IN, 0);
        let chain = q.build_multiple_desc_chains(&c).unwrap();
        let o = handle(&x, &m, chain);
        assert_eq!((o.status, o.used_len), (None, 0), "{c:?}");
        assert_eq!(status(&m), 0xff);
    }
}

#[test]
fn indirect_table_works() {
    let (m, dk) = (mem(), disk(512, 1 << 20, false));
    let q = MockSplitQueue::new(&m, 16);
    let table = 0x5000u64;
    let next = VRING_DESC_F_NEXT as u16;
    let entries = [
        SplitDescriptor::new(HDR, 16, next, 1),
        SplitDescriptor::new(DATA, 512, W | next, 2),
        SplitDescriptor::new(STATUS, 1, W, 0),
    ];
    for (i, e) in entries.iter().enumerate() {
        m.write_obj(RawDescriptor::from(*e), GuestAddress(table + 16 * i as u64))
            .unwrap();
    }
    dk.volume.store().write(0, &[0x5au8; 512]).unwrap();
    header(&m, spec::T_IN, 0);
    let chain = q
        .build_multiple_desc_chains(&[RawDescriptor::from(SplitDescriptor::new(
            table,
            48,
            VRING_DESC_F_INDIRECT as u16,
            0,
        ))])
        .unwrap();
    let x = Exec {
        disk: &dk,
        hooks: &NoHooks,
        fua: false,
        queue: 0,
    };
    let o = handle(&x, &m, chain);
    assert_eq!(o.status, Some(S_OK));
    let mut back = [0u8; 512];
    m.read_slice(&mut back, GuestAddress(DATA)).unwrap();
    assert_eq!(back, [0x5au8; 512]);
}

/// Hooks that inject into one kind, delay everything, and record completions.
#[derive(Default)]
struct Recorder {
    inject: Option<OpKind>,
    delay_ms: u64,
    done: Mutex<Vec<Completed>>,
    delays_asked: AtomicU32,
}

impl Hooks for Recorder {
    fn observing(&self) -> bool {
        true
    }
    fn inject(&self, op: &Op) -> Option<Injection> {
        (Some(op.kind) == self.inject).then_some(Injection {
            status: 0x4006,
            copy_range: None,
        })
    }
    fn delay(&self, _op: &Op, _blocks: u64) -> Option<Duration> {
        self.delays_asked.fetch_add(1, Ordering::Relaxed);
        (self.delay_ms > 0).then(|| Duration::from_millis(self.delay_ms))
    }
    fn completed(&self, done: Completed) {
        self.done.lock().unwrap().push(done);
    }
}

#[test]
fn injected_fault_touches_no_data() {
    let (m, dk) = (mem(), disk(512, 1 << 20, false));
    let hooks = Recorder {
        inject: Some(OpKind::Write),
        ..Default::default()
    };
    m.write_slice(&[9u8; 512], GuestAddress(DATA)).unwrap();
    header(&m, spec::T_OUT, 0);
    let o = run_with(
        &dk,
        &hooks,
        &m,
        &[d(HDR, 16, 0), d(DATA, 512, 0), d(STATUS, 1, W)],
    );
    assert_eq!(o.status, Some(S_IOERR));
    assert_eq!(stored(&dk, 0, 512), vec![0u8; 512]);
    header(&m, spec::T_IN, 0);
    let o = run_with(
        &dk,
        &hooks,
        &m,
        &[d(HDR, 16, 0), d(DATA, 512, W), d(STATUS, 1, W)],
    );
    assert_eq!(o.status, Some(S_OK));
}

/// A vring over the mock queue's rings, as the vhost-user handler would set it up.
fn vring(m: &GuestMemoryAtomic<Mem>, q: &MockSplitQueue<'_, Mem>) -> Vring {
    let v = Vring::new(m.clone(), 256).unwrap();
    v.set_queue_size(16);
    v.set_queue_info(q.desc_table_addr().0, q.avail_addr().0, q.used_addr().0)
        .unwrap();
    v.set_queue_ready(true);
    v.set_enabled(true);
    v
}

#[test]
fn worker_posts_used_entries_reports_and_delays() {
    let gm = GuestMemoryAtomic::new(mem());
    let m = gm.memory();
    let q = MockSplitQueue::new(&*m, 16);
    let dk = Arc::new(disk(512, 1 << 20, false));
    let hooks = Arc::new(Recorder {
        delay_ms: 150,
        ..Default::default()
    });
    let be = BlkBackend::new(dk.clone(), hooks.clone(), gm.clone());
    let vr = vring(&gm, &q);
    header(&m, spec::T_FLUSH, 0);
    q.add_desc_chains(
        &[
            RawDescriptor::from(SplitDescriptor::new(HDR, 16, VRING_DESC_F_NEXT as u16, 1)),
            RawDescriptor::from(SplitDescriptor::new(STATUS, 1, W, 0)),
        ],
        0,
    )
    .unwrap();
    be.handle_event(0, EventSet::IN, std::slice::from_ref(&vr), 0)
        .unwrap();
    // Run at once, completion held back.
    assert_eq!(status(&m), S_OK);
    assert_eq!(q.used().idx().load(), 0);
    assert_eq!(hooks.delays_asked.load(Ordering::Relaxed), 1);
    let t0 = std::time::Instant::now();
    while q.used().idx().load() == 0 && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(q.used().idx().load(), 1);
    assert!(t0.elapsed() >= Duration::from_millis(100));
    // Give the timer thread the moment between posting and reporting.
    std::thread::sleep(Duration::from_millis(20));
    let done = hooks.done.lock().unwrap().clone();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].kind, OpKind::Flush);
    assert_eq!((done[0].status, done[0].tag, done[0].queue), (0, 0, 0));
    assert!(done[0].fetched.is_some());
    be.disconnect();
}

#[test]
fn worker_without_delay_and_bad_avail_index() {
    let gm = GuestMemoryAtomic::new(mem());
    let m = gm.memory();
    let q = MockSplitQueue::new(&*m, 16);
    let dk = Arc::new(disk(512, 1 << 20, false));
    let hooks = Arc::new(Recorder::default());
    let be = BlkBackend::new(dk, hooks.clone(), gm.clone());
    be.set_event_idx(true);
    let vr = vring(&gm, &q);
    vr.set_queue_event_idx(true);
    header(&m, spec::T_GET_ID, 0);
    let next = VRING_DESC_F_NEXT as u16;
    q.add_desc_chains(
        &[
            RawDescriptor::from(SplitDescriptor::new(HDR, 16, next, 1)),
            RawDescriptor::from(SplitDescriptor::new(DATA, 20, W | next, 2)),
            RawDescriptor::from(SplitDescriptor::new(STATUS, 1, W, 0)),
        ],
        0,
    )
    .unwrap();
    be.handle_event(0, EventSet::IN, std::slice::from_ref(&vr), 0)
        .unwrap();
    assert_eq!(q.used().idx().load(), 1);
    let used = q.used().ring().ref_at(0).unwrap().load();
    assert_eq!((used.id(), used.len()), (0, 21));
    assert_eq!(hooks.done.lock().unwrap()[0].kind, OpKind::GetId);
    // A hostile avail index (far ahead of the ring): the worker returns, no spin.
    q.avail().idx().store(u16::MAX / 2);
    let t0 = std::time::Instant::now();
    be.handle_event(0, EventSet::IN, std::slice::from_ref(&vr), 0)
        .unwrap();
    assert!(t0.elapsed() < Duration::from_secs(1));
    assert_eq!(q.used().idx().load(), 1);
    // Unexpected events and vring indexes are logged, not errors.
    be.handle_event(5, EventSet::IN, std::slice::from_ref(&vr), 0)
        .unwrap();
    be.handle_event(0, EventSet::OUT, std::slice::from_ref(&vr), 0)
        .unwrap();
}

#[test]
fn features_and_config() {
    let dk = Arc::new(disk(4096, 1 << 20, false));
    let be = BlkBackend::new(dk, Arc::new(NoHooks), GuestMemoryAtomic::new(mem()));
    assert_eq!(be.num_queues(), 1);
    assert_eq!(be.queues_per_thread(), vec![1]);
    let c = be.get_config(0, 60);
    assert_eq!(u64::from_le_bytes(c[0..8].try_into().unwrap()), 2048);
    assert_eq!(u32::from_le_bytes(c[20..24].try_into().unwrap()), 4096);
    assert!(be.get_config(200, 100).is_empty());
    assert!(be.set_config(0, &[1]).is_err());
    assert_ne!(be.features() & (1 << 32), 0);
}

#[test]
fn blocks_marked_unreadable_fail_reads_until_written() {
    // The mark is the NVMe view's Write Uncorrectable on the shared volume.
    let (m, dk) = (mem(), disk(512, 1 << 20, false));
    dk.volume.mark_unreadable(20, 1).unwrap();
    let o = io(&dk, &m, spec::T_IN, 16, 4096, W);
    assert_eq!(o.status, Some(S_IOERR));
    assert_eq!(io(&dk, &m, spec::T_IN, 0, 4096, W).status, Some(S_OK));
    let o = io(&dk, &m, spec::T_OUT, 20, 512, 0);
    assert_eq!(o.status, Some(S_OK));
    assert_eq!(io(&dk, &m, spec::T_IN, 16, 4096, W).status, Some(S_OK));
}
