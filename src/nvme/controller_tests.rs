//! Controller tests driven exactly like a host driver: registers through `mmio_write`,
//! commands written into fake guest memory, doorbells rung, completions polled with a
//! bounded timeout.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use vm_memory::{Bytes, GuestAddress, GuestAddressSpace, GuestMemoryAtomic};

use super::Controller;
use crate::config::{ControllerConfig, NamespaceConfig};
use crate::nvme::prp::Mem;
use crate::nvme::spec::*;
use crate::nvme::{GuestMemory, InterruptSink, Namespace};

/// Guest memory: one 16 MiB map at 0; everything above is outside the DMA maps.
pub const MEM_SIZE: u64 = 16 << 20;
pub const UNMAPPED: u64 = 0x4000_0000;
const ASQ: u64 = 0x10000;
const ACQ: u64 = 0x20000;
const ADMIN_SIZE: u32 = 32;
/// Scratch data buffers for admin commands.
pub const BUF: u64 = 0x100000;
const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Default)]
pub struct Irq {
    raised: Mutex<Vec<u16>>,
    cv: Condvar,
}

impl InterruptSink for Irq {
    fn raise(&self, vector: u16) {
        self.raised.lock().unwrap().push(vector);
        self.cv.notify_all();
    }
}

impl Irq {
    pub fn vectors(&self) -> Vec<u16> {
        self.raised.lock().unwrap().clone()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cqe {
    pub dw0: u32,
    pub sqhd: u16,
    pub sqid: u16,
    pub cid: u16,
    pub status: Status,
}

impl Cqe {
    /// SCT/SC without DNR.
    pub fn sc(&self) -> (u8, u8) {
        (self.status.sct(), self.status.sc())
    }
    pub fn ok(&self) -> bool {
        self.status.0 == 0
    }
}

struct HostQueue {
    sq_base: u64,
    sq_size: u32,
    tail: u32,
    cqid: u16,
}

struct HostCq {
    base: u64,
    size: u32,
    head: u32,
    phase: bool,
}

pub struct Host {
    pub ctrl: Arc<Controller>,
    /// Counters, faults, latencies and records the controller reports to.
    pub lab: Arc<crate::experiment::Experiment>,
    pub mem: GuestMemory,
    pub irq: Arc<Irq>,
    sqs: HashMap<u16, HostQueue>,
    cqs: HashMap<u16, HostCq>,
    next_cid: u16,
    /// Shadow doorbell and EventIdx buffers, when configured.
    pub dbbuf: Option<(u64, u64)>,
}

pub fn ns_cfg(size: u64) -> NamespaceConfig {
    NamespaceConfig {
        size: Some(size),
        ..Default::default()
    }
}

pub fn memns(nsid: u32, cfg: NamespaceConfig) -> Namespace {
    crate::server::open_namespace(&cfg, nsid).unwrap()
}

impl Host {
    pub fn new(cfg: ControllerConfig, namespaces: Vec<Namespace>) -> Host {
        let m = Mem::from_ranges(&[(GuestAddress(0), MEM_SIZE as usize)]).unwrap();
        let mem = GuestMemoryAtomic::new(m);
        let irq = Arc::new(Irq::default());
        let lab = Arc::new(crate::experiment::Experiment::new());
        let ctrl = Controller::new(&cfg, namespaces, lab.clone());
        ctrl.connect(mem.clone(), irq.clone());
        let mut h = Host {
            ctrl,
            lab,
            mem,
            irq,
            sqs: HashMap::new(),
            cqs: HashMap::new(),
            next_cid: 1,
            dbbuf: None,
        };
        h.enable();
        h
    }

    /// One 16 MiB memfd namespace (nsid 1) and the default controller.
    pub fn simple() -> Host {
        Host::new(
            ControllerConfig::default(),
            vec![memns(1, ns_cfg(16 << 20))],
        )
    }

    pub fn m(&self) -> impl std::ops::Deref<Target = Mem> + '_ {
        self.mem.memory()
    }

    pub fn w32(&self, off: u64, v: u32) {
        self.ctrl.mmio_write(off, &v.to_le_bytes());
    }

    pub fn r32(&self, off: u64) -> u32 {
        let mut b = [0u8; 4];
        self.ctrl.mmio_read(off, &mut b);
        u32::from_le_bytes(b)
    }

    pub fn r64(&self, off: u64) -> u64 {
        let mut b = [0u8; 8];
        self.ctrl.mmio_read(off, &mut b);
        u64::from_le_bytes(b)
    }

    pub fn wait_csts(&self, mask: u32, val: u32) -> bool {
        let start = Instant::now();
        while start.elapsed() < TIMEOUT {
            if self.r32(reg::CSTS) & mask == val {
                return true;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        false
    }

    pub fn enable(&mut self) {
        self.sqs.clear();
        self.cqs.clear();
        self.dbbuf = None;
        // Like a driver: fresh, zeroed completion queue memory.
        self.fill(ACQ, ADMIN_SIZE as usize * 16, 0);
        self.w32(reg::AQA, (ADMIN_SIZE - 1) | ((ADMIN_SIZE - 1) << 16));
        self.ctrl.mmio_write(reg::ASQ, &ASQ.to_le_bytes());
        self.ctrl.mmio_write(reg::ACQ, &ACQ.to_le_bytes());
        self.w32(reg::CC, 1 | (6 << 16) | (4 << 20));
        assert!(
            self.wait_csts(csts::RDY, csts::RDY),
            "controller did not become ready"
        );
        self.sqs.insert(
            0,
            HostQueue {
                sq_base: ASQ,
                sq_size: ADMIN_SIZE,
                tail: 0,
                cqid: 0,
            },
        );
        self.cqs.insert(
            0,
            HostCq {
                base: ACQ,
                size: ADMIN_SIZE,
                head: 0,
                phase: true,
            },
        );
    }

    pub fn disable(&mut self) {
        self.w32(reg::CC, 0);
        assert!(self.wait_csts(csts::RDY, 0));
        self.sqs.clear();
        self.cqs.clear();
    }

    /// Writes the SQE and advances the host tail, without ringing.
    pub fn push(&mut self, qid: u16, mut sqe: Sqe) -> u16 {
        let cid = self.next_cid;
        self.next_cid = self.next_cid.wrapping_add(1).max(1);
        sqe.cid = cid;
        let q = self.sqs.get_mut(&qid).expect("no such host SQ");
        let addr = q.sq_base + q.tail as u64 * 64;
        q.tail = (q.tail + 1) % q.sq_size;
        self.mem
            .memory()
            .write_slice(&sqe.to_bytes(), GuestAddress(addr))
            .unwrap();
        cid
    }

    pub fn sq_tail(&self, qid: u16) -> u32 {
        self.sqs[&qid].tail
    }

    pub fn ring_sq(&self, qid: u16) {
        self.w32(0x1000 + 8 * qid as u64, self.sqs[&qid].tail);
    }

    pub fn submit(&mut self, qid: u16, sqe: Sqe) -> u16 {
        let cid = self.push(qid, sqe);
        if qid != 0 {
            if let Some((db, _)) = self.dbbuf {
                let t = self.sqs[&qid].tail;
                self.m()
                    .write_obj(t, GuestAddress(db + 8 * qid as u64))
                    .unwrap();
            }
        }
        self.ring_sq(qid);
        cid
    }

    /// Polls CQ `cqid` for its next entry, if one arrives in time.
    pub fn try_reap(&mut self, cqid: u16, timeout: Duration) -> Option<Cqe> {
        let start = Instant::now();
        loop {
            let (addr, phase) = {
                let c = &self.cqs[&cqid];
                (c.base + c.head as u64 * 16, c.phase)
            };
            let dw3: u32 = self.m().read_obj(GuestAddress(addr + 12)).unwrap();
            if ((dw3 >> 16) & 1 == 1) == phase {
                let m = self.m();
                let dw0: u32 = m.read_obj(GuestAddress(addr)).unwrap();
                let dw2: u32 = m.read_obj(GuestAddress(addr + 8)).unwrap();
                drop(m);
                let c = self.cqs.get_mut(&cqid).unwrap();
                c.head = (c.head + 1) % c.size;
                if c.head == 0 {
                    c.phase = !c.phase;
                }
                let head = c.head;
                if let (Some((db, _)), true) = (self.dbbuf, cqid != 0) {
                    self.m()
                        .write_obj(head, GuestAddress(db + 8 * cqid as u64 + 4))
                        .unwrap();
                }
                self.w32(0x1000 + 8 * cqid as u64 + 4, head);
                return Some(Cqe {
                    dw0,
                    sqhd: dw2 as u16,
                    sqid: (dw2 >> 16) as u16,
                    cid: dw3 as u16,
                    status: Status((dw3 >> 17) as u16),
                });
            }
            if start.elapsed() > timeout {
                return None;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    pub fn reap(&mut self, cqid: u16) -> Cqe {
        self.try_reap(cqid, TIMEOUT)
            .unwrap_or_else(|| panic!("no completion on CQ {cqid} within {TIMEOUT:?}"))
    }

    /// Submits and waits for the completion of that command.
    pub fn cmd(&mut self, qid: u16, sqe: Sqe) -> Cqe {
        let cid = self.submit(qid, sqe);
        let cqid = self.sqs[&qid].cqid;
        let c = self.reap(cqid);
        assert_eq!(c.cid, cid, "completion for another command");
        assert_eq!(c.sqid, qid);
        c
    }

    pub fn admin(&mut self, sqe: Sqe) -> Cqe {
        self.cmd(0, sqe)
    }

    pub fn create_cq(&mut self, qid: u16, size: u32, base: u64, vector: u16, ien: bool) -> Cqe {
        self.fill(base, size as usize * 16, 0);
        let c = self.admin(Sqe {
            opcode: admin_op::CREATE_IO_CQ,
            dptr1: base,
            cdw10: qid as u32 | ((size - 1) << 16),
            cdw11: 1 | ((ien as u32) << 1) | ((vector as u32) << 16),
            ..Default::default()
        });
        if c.ok() {
            self.cqs.insert(
                qid,
                HostCq {
                    base,
                    size,
                    head: 0,
                    phase: true,
                },
            );
        }
        c
    }

    pub fn create_sq(&mut self, qid: u16, size: u32, base: u64, cqid: u16) -> Cqe {
        let c = self.admin(Sqe {
            opcode: admin_op::CREATE_IO_SQ,
            dptr1: base,
            cdw10: qid as u32 | ((size - 1) << 16),
            cdw11: 1 | ((cqid as u32) << 16),
            ..Default::default()
        });
        if c.ok() {
            self.sqs.insert(
                qid,
                HostQueue {
                    sq_base: base,
                    sq_size: size,
                    tail: 0,
                    cqid,
                },
            );
        }
        c
    }

    /// Creates I/O queue pair `qid` (SQ and CQ share the id) with `size` entries.
    pub fn io_pair(&mut self, qid: u16, size: u32) {
        let base = 0x200000 + qid as u64 * 0x20000;
        assert!(self.create_cq(qid, size, base, qid, true).ok());
        assert!(self.create_sq(qid, size, base + 0x10000, qid).ok());
    }

    pub fn forget_sq(&mut self, qid: u16) {
        self.sqs.remove(&qid);
    }

    pub fn forget_cq(&mut self, qid: u16) {
        self.cqs.remove(&qid);
    }

    pub fn identify(&mut self, cns: u8, nsid: u32, csi: u8) -> (Cqe, Vec<u8>) {
        self.fill(BUF, 4096, 0xee);
        let c = self.admin(Sqe {
            opcode: admin_op::IDENTIFY,
            nsid,
            dptr1: BUF,
            cdw10: cns as u32,
            cdw11: (csi as u32) << 24,
            ..Default::default()
        });
        (c, self.read_mem(BUF, 4096))
    }

    pub fn fill(&self, addr: u64, len: usize, byte: u8) {
        self.m()
            .write_slice(&vec![byte; len], GuestAddress(addr))
            .unwrap();
    }

    pub fn write_mem(&self, addr: u64, data: &[u8]) {
        self.m().write_slice(data, GuestAddress(addr)).unwrap();
    }

    pub fn read_mem(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut b = vec![0u8; len];
        self.m().read_slice(&mut b, GuestAddress(addr)).unwrap();
        b
    }

    /// Reads bytes straight from namespace `nsid`'s store.
    pub fn store_bytes(&self, nsid: u32, off: u64, len: usize) -> Vec<u8> {
        let mut b = vec![0u8; len];
        self.ctrl
            .namespace(nsid)
            .unwrap()
            .store()
            .read(off, &mut b)
            .unwrap();
        b
    }
}

pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 9) as u8)
        .collect()
}

/// An I/O command on `nsid` with a PRP data pointer.
pub fn rw(opcode: u8, nsid: u32, slba: u64, nlb: u32, prp1: u64, prp2: u64) -> Sqe {
    Sqe {
        opcode,
        nsid,
        dptr1: prp1,
        dptr2: prp2,
        cdw10: slba as u32,
        cdw11: (slba >> 32) as u32,
        cdw12: nlb - 1,
        ..Default::default()
    }
}

#[path = "controller_tests_admin.rs"]
mod admin_tests;
#[path = "controller_tests_copy.rs"]
mod copy_tests;
#[path = "controller_tests_exp.rs"]
mod exp_tests;
#[path = "controller_tests_io.rs"]
mod io_tests;

#[test]
fn controller_is_shareable_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Controller>();
    assert_send_sync::<Namespace>();
}
