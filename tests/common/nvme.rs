//! A small NVMe host driver over the vfio-user test client: enables the controller,
//! identifies, creates I/O queues, reads and writes with PRP lists or SGLs, waits for
//! MSI-X interrupts on eventfds, and can switch to shadow doorbells (Doorbell Buffer
//! Config) the way Linux does.

use std::time::{Duration, Instant};

use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::eventfd::EventFd;

use super::{eventfd, wait_eventfd, Client, GuestMem, TestServer, TIMEOUT};

pub const PAGE: u64 = 4096;
/// Logical block size of the test namespaces.
pub const LBS: u64 = 512;

/// Deterministic data for `len` bytes.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 9) as u8)
        .collect()
}

/// Format 0/2 source range descriptors for (snsid, slba, nlb 1-based).
pub fn copy_descriptors(ranges: &[(u32, u64, u16)]) -> Vec<u8> {
    let mut d = vec![0u8; 32 * ranges.len()];
    for (i, (snsid, slba, nlb)) in ranges.iter().enumerate() {
        let e = &mut d[i * 32..i * 32 + 32];
        e[0..4].copy_from_slice(&snsid.to_le_bytes());
        e[8..16].copy_from_slice(&slba.to_le_bytes());
        e[16..18].copy_from_slice(&(nlb - 1).to_le_bytes());
    }
    d
}

/// Writes `nlb` blocks of `pattern(.., seed)` at `slba` through I/O queue 1; returns the data.
pub fn put(n: &mut Nvme, nsid: u32, slba: u64, nlb: u32, seed: u8) -> Vec<u8> {
    let len = nlb as u64 * LBS;
    let buf = n.alloc(len);
    let data = pattern(len as usize, seed);
    n.write_mem(buf, &data);
    let c = n.rw_prp(1, Sqe::new(IO_WRITE, nsid).lba(slba, nlb), buf, len);
    assert_eq!(c.sc(), 0, "write at {slba}");
    data
}

/// Reads `nlb` blocks at `slba` through I/O queue 1.
pub fn get(n: &mut Nvme, nsid: u32, slba: u64, nlb: u32) -> Vec<u8> {
    let len = nlb as u64 * LBS;
    let buf = n.alloc(len);
    let c = n.rw_prp(1, Sqe::new(IO_READ, nsid).lba(slba, nlb), buf, len);
    assert_eq!(c.sc(), 0, "read at {slba}");
    n.read_mem(buf, len as usize)
}

/// BAR0 registers.
pub const REG_CAP: u64 = 0x00;
pub const REG_VS: u64 = 0x08;
pub const REG_CC: u64 = 0x14;
pub const REG_CSTS: u64 = 0x1c;
pub const REG_AQA: u64 = 0x24;
pub const REG_ASQ: u64 = 0x28;
pub const REG_ACQ: u64 = 0x30;
pub const DOORBELL_BASE: u64 = 0x1000;

/// Opcodes.
pub const ADMIN_DELETE_SQ: u8 = 0x00;
pub const ADMIN_CREATE_SQ: u8 = 0x01;
pub const ADMIN_DELETE_CQ: u8 = 0x04;
pub const ADMIN_CREATE_CQ: u8 = 0x05;
pub const ADMIN_IDENTIFY: u8 = 0x06;
pub const ADMIN_SET_FEATURES: u8 = 0x09;
pub const ADMIN_DBBUF: u8 = 0x7c;
pub const IO_FLUSH: u8 = 0x00;
pub const IO_WRITE: u8 = 0x01;
pub const IO_READ: u8 = 0x02;
pub const IO_COPY: u8 = 0x19;

/// A submission queue entry as 16 dwords.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sqe(pub [u32; 16]);

impl Sqe {
    pub fn new(opcode: u8, nsid: u32) -> Sqe {
        let mut s = Sqe::default();
        s.0[0] = opcode as u32;
        s.0[1] = nsid;
        s
    }
    pub fn prp(mut self, prp1: u64, prp2: u64) -> Sqe {
        self.0[6] = prp1 as u32;
        self.0[7] = (prp1 >> 32) as u32;
        self.0[8] = prp2 as u32;
        self.0[9] = (prp2 >> 32) as u32;
        self
    }
    /// Starting LBA and number of blocks (1-based here, 0's based on the wire).
    pub fn lba(self, slba: u64, nlb: u32) -> Sqe {
        self.cdw(10, slba as u32)
            .cdw(11, (slba >> 32) as u32)
            .cdw(12, nlb - 1)
    }
    pub fn cdw(mut self, n: usize, v: u32) -> Sqe {
        self.0[n] = v;
        self
    }
    fn to_bytes(self) -> [u8; 64] {
        let mut b = [0u8; 64];
        for (i, d) in self.0.iter().enumerate() {
            b[i * 4..i * 4 + 4].copy_from_slice(&d.to_le_bytes());
        }
        b
    }
}

/// A completion queue entry.
#[derive(Debug, Clone, Copy)]
pub struct Cqe {
    pub dw0: u32,
    pub sq_head: u16,
    pub sq_id: u16,
    pub cid: u16,
    /// Status field without the phase bit: SCT << 8 | SC, plus DNR/More in bits 14/13.
    pub status: u16,
}

impl Cqe {
    /// Status code type and status code (SCT << 8 | SC).
    pub fn sc(&self) -> u16 {
        self.status & 0x7ff
    }
}

struct Queue {
    qid: u16,
    size: u16,
    sq: u64,
    cq: u64,
    sq_tail: u16,
    cq_head: u16,
    phase: bool,
    vector: u16,
}

/// The driver.
pub struct Nvme {
    pub c: Client,
    pub g: GuestMem,
    next_page: u64,
    pub cap: u64,
    stride: u64,
    admin: Queue,
    io: Vec<Queue>,
    /// One eventfd per MSI-X vector.
    pub irq: Vec<EventFd>,
    cid: u16,
    /// (shadow doorbell buffer, EventIdx buffer) once Doorbell Buffer Config is on.
    pub dbbuf: Option<(u64, u64)>,
    /// How many doorbell writes went over MMIO (for the shadow doorbell test).
    pub mmio_doorbells: u64,
}

pub const GUEST_BASE: u64 = 0x1_0000_0000;
pub const GUEST_SIZE: u64 = 16 << 20;

impl Nvme {
    /// Connects, maps guest memory, wires MSI-X and enables the controller.
    pub fn new(s: &TestServer) -> Nvme {
        Self::with_irqs(s, true)
    }

    /// Like [`Nvme::new`]; without MSI-X, `irq[0]` is the INTx eventfd.
    pub fn with_irqs(s: &TestServer, msix: bool) -> Nvme {
        let c = s.negotiated();
        let g = GuestMem::new(GUEST_BASE, GUEST_SIZE);
        let mut n = Nvme {
            c,
            g,
            next_page: GUEST_BASE,
            cap: 0,
            stride: 4,
            admin: Queue {
                qid: 0,
                size: 0,
                sq: 0,
                cq: 0,
                sq_tail: 0,
                cq_head: 0,
                phase: true,
                vector: 0,
            },
            io: Vec::new(),
            irq: Vec::new(),
            cid: 0,
            dbbuf: None,
            mmio_doorbells: 0,
        };
        n.c.map_guest(&n.g);
        // PCI: memory space + bus master.
        n.c.cfg_write16(0x04, 0x0006);
        if msix {
            // MSI-X on; one eventfd per vector.
            let msix_ctrl = n.c.cfg_read16(0x52);
            n.c.cfg_write16(0x52, msix_ctrl | 0x8000);
            let vectors = s.msix_vectors as usize;
            n.irq = (0..vectors).map(|_| eventfd()).collect();
            let refs: Vec<&EventFd> = n.irq.iter().collect();
            n.c.set_irq_eventfds(2, 0, &refs);
        } else {
            n.irq = vec![eventfd()];
            let refs: Vec<&EventFd> = n.irq.iter().collect();
            n.c.set_irq_eventfds(0, 0, &refs);
        }
        n.enable(32);
        n
    }

    /// Allocates zeroed, page-aligned guest memory.
    pub fn alloc(&mut self, bytes: u64) -> u64 {
        let pages = bytes.div_ceil(PAGE).max(1);
        let a = self.next_page;
        self.next_page += pages * PAGE;
        assert!(
            self.next_page <= GUEST_BASE + GUEST_SIZE,
            "test guest memory exhausted"
        );
        self.write_mem(a, &vec![0u8; (pages * PAGE) as usize]);
        a
    }

    pub fn write_mem(&self, addr: u64, data: &[u8]) {
        self.g
            .mem
            .write_slice(data, GuestAddress(addr))
            .expect("guest write");
    }

    pub fn read_mem(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.g
            .mem
            .read_slice(&mut v, GuestAddress(addr))
            .expect("guest read");
        v
    }

    fn read_u32(&self, addr: u64) -> u32 {
        self.g
            .mem
            .read_obj::<u32>(GuestAddress(addr))
            .expect("read")
    }

    fn wait_csts_rdy(&mut self, rdy: bool) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let csts = self.c.bar0_read32(REG_CSTS);
            assert_eq!(csts & 2, 0, "controller fatal status (CSTS {csts:#x})");
            if (csts & 1 == 1) == rdy {
                return;
            }
            assert!(Instant::now() < deadline, "CSTS.RDY never became {rdy}");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Disables, sets up the admin queue of `entries`, enables.
    pub fn enable(&mut self, entries: u16) {
        self.cap = self.c.bar0_read64(REG_CAP);
        self.stride = 4 << ((self.cap >> 32) & 0xf);
        self.c.bar0_write32(REG_CC, 0);
        self.wait_csts_rdy(false);
        let sq = self.alloc(entries as u64 * 64);
        let cq = self.alloc(entries as u64 * 16);
        self.admin = Queue {
            qid: 0,
            size: entries,
            sq,
            cq,
            sq_tail: 0,
            cq_head: 0,
            phase: true,
            vector: 0,
        };
        self.io.clear();
        self.dbbuf = None;
        let aqa = ((entries as u32 - 1) << 16) | (entries as u32 - 1);
        self.c.bar0_write32(REG_AQA, aqa);
        self.c.bar0_write64(REG_ASQ, sq);
        self.c.bar0_write64(REG_ACQ, cq);
        // EN, CSS=NVM, MPS=4K, AMS=RR, IOSQES=6, IOCQES=4.
        self.c.bar0_write32(REG_CC, 1 | (6 << 16) | (4 << 20));
        self.wait_csts_rdy(true);
    }

    fn queue(&mut self, qid: u16) -> &mut Queue {
        if qid == 0 {
            &mut self.admin
        } else {
            self.io
                .iter_mut()
                .find(|q| q.qid == qid)
                .expect("no such queue")
        }
    }

    fn ring(&mut self, qid: u16, is_cq: bool, value: u16, old: u16) {
        let idx = 2 * qid as u64 + is_cq as u64;
        if let Some((db, ei)) = self.dbbuf {
            if qid != 0 {
                // Linux: update the shadow, ring MMIO only when EventIdx asks for it.
                let off = idx * self.stride;
                self.g
                    .mem
                    .write_obj::<u32>(value as u32, GuestAddress(db + off))
                    .expect("shadow");
                std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
                let event_idx = self.read_u32(ei + off) as u16;
                let need = value.wrapping_sub(event_idx).wrapping_sub(1) < value.wrapping_sub(old);
                if !need {
                    return;
                }
            }
        }
        self.mmio_doorbells += 1;
        // Doorbell writes are posted, as QEMU sends them.
        self.c.region_write_posted(
            0,
            DOORBELL_BASE + idx * self.stride,
            &(value as u32).to_le_bytes(),
        );
    }

    /// Writes an SQE to queue `qid` and rings its doorbell; returns the command id.
    pub fn submit(&mut self, qid: u16, mut sqe: Sqe) -> u16 {
        self.cid = self.cid.wrapping_add(1);
        let cid = self.cid;
        sqe.0[0] = (sqe.0[0] & 0xffff) | ((cid as u32) << 16);
        let q = self.queue(qid);
        let addr = q.sq + q.sq_tail as u64 * 64;
        let old = q.sq_tail;
        q.sq_tail = (q.sq_tail + 1) % q.size;
        let tail = q.sq_tail;
        self.write_mem(addr, &sqe.to_bytes());
        self.ring(qid, false, tail, old);
        cid
    }

    /// Polls the completion queue once.
    pub fn poll_cqe(&mut self, qid: u16) -> Option<Cqe> {
        let (addr, phase) = {
            let q = self.queue(qid);
            (q.cq + q.cq_head as u64 * 16, q.phase)
        };
        let b = self.read_mem(addr, 16);
        let dw3 = u32::from_le_bytes([b[12], b[13], b[14], b[15]]);
        let status = (dw3 >> 16) as u16;
        if (status & 1 == 1) != phase {
            return None;
        }
        let cqe = Cqe {
            dw0: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            sq_head: u16::from_le_bytes([b[8], b[9]]),
            sq_id: u16::from_le_bytes([b[10], b[11]]),
            cid: dw3 as u16,
            status: status >> 1,
        };
        let q = self.queue(qid);
        let old = q.cq_head;
        q.cq_head = (q.cq_head + 1) % q.size;
        if q.cq_head == 0 {
            q.phase = !q.phase;
        }
        let head = q.cq_head;
        self.ring(qid, true, head, old);
        Some(cqe)
    }

    /// Waits for the next completion on `qid`; returns it and whether its interrupt
    /// vector fired while waiting (or fires shortly after the entry appears).
    pub fn wait_cqe_irq(&mut self, qid: u16) -> (Cqe, bool) {
        self.wait(qid, true)
    }

    /// Waits for the next completion on `qid`, the interrupt only waking the wait.
    pub fn wait_cqe(&mut self, qid: u16) -> Cqe {
        self.wait(qid, false).0
    }

    fn wait(&mut self, qid: u16, want_irq: bool) -> (Cqe, bool) {
        let deadline = Instant::now() + TIMEOUT;
        let vector = self.queue(qid).vector as usize;
        let mut fired = false;
        loop {
            if let Some(c) = self.poll_cqe(qid) {
                // The interrupt may trail the entry slightly.
                if want_irq && !fired {
                    fired = wait_eventfd(&self.irq[vector], Duration::from_millis(500)).is_some();
                }
                return (c, fired);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no completion on queue {qid}");
            if wait_eventfd(&self.irq[vector], left.min(Duration::from_millis(100))).is_some() {
                fired = true;
            }
        }
    }

    /// Submits and waits; returns the completion (status not checked).
    pub fn exec(&mut self, qid: u16, sqe: Sqe) -> Cqe {
        let cid = self.submit(qid, sqe);
        let c = self.wait_cqe(qid);
        assert_eq!(c.cid, cid, "completion for another command");
        assert_eq!(c.sq_id, qid);
        c
    }

    /// Submits and waits; panics unless the command succeeded.
    pub fn exec_ok(&mut self, qid: u16, sqe: Sqe) -> Cqe {
        let c = self.exec(qid, sqe);
        assert_eq!(
            c.sc(),
            0,
            "opcode {:#x} failed: status {:#x}",
            sqe.0[0] & 0xff,
            c.status
        );
        c
    }

    /// Identify (CNS, NSID) into a fresh page.
    pub fn identify(&mut self, cns: u8, nsid: u32) -> Vec<u8> {
        let buf = self.alloc(PAGE);
        self.exec_ok(
            0,
            Sqe::new(ADMIN_IDENTIFY, nsid)
                .prp(buf, 0)
                .cdw(10, cns as u32),
        );
        self.read_mem(buf, 4096)
    }

    /// Sets the number of queues and creates `n` I/O queue pairs of `entries`, pair i on
    /// MSI-X vector i.
    pub fn create_io_queues(&mut self, n: u16, entries: u16) {
        let nq = (n as u32 - 1) | ((n as u32 - 1) << 16);
        let c = self.exec_ok(0, Sqe::new(ADMIN_SET_FEATURES, 0).cdw(10, 0x07).cdw(11, nq));
        assert!((c.dw0 & 0xffff) + 1 >= n as u32, "got {:#x}", c.dw0);
        for qid in 1..=n {
            let cq = self.alloc(entries as u64 * 16);
            let sq = self.alloc(entries as u64 * 64);
            let q = ((entries as u32 - 1) << 16) | qid as u32;
            self.exec_ok(
                0,
                Sqe::new(ADMIN_CREATE_CQ, 0)
                    .prp(cq, 0)
                    .cdw(10, q)
                    .cdw(11, ((qid as u32) << 16) | 0b11),
            );
            self.exec_ok(
                0,
                Sqe::new(ADMIN_CREATE_SQ, 0)
                    .prp(sq, 0)
                    .cdw(10, q)
                    .cdw(11, ((qid as u32) << 16) | 1),
            );
            self.io.push(Queue {
                qid,
                size: entries,
                sq,
                cq,
                sq_tail: 0,
                cq_head: 0,
                phase: true,
                vector: qid,
            });
        }
    }

    /// Turns on shadow doorbells (Doorbell Buffer Config).
    pub fn enable_dbbuf(&mut self) {
        let db = self.alloc(PAGE);
        let ei = self.alloc(PAGE);
        self.exec_ok(0, Sqe::new(ADMIN_DBBUF, 0).prp(db, ei));
        // Shadow values start at the current doorbell values.
        for q in &self.io {
            let sq_off = 2 * q.qid as u64 * self.stride;
            let cq_off = sq_off + self.stride;
            let _ = self
                .g
                .mem
                .write_obj::<u32>(q.sq_tail as u32, GuestAddress(db + sq_off));
            let _ = self
                .g
                .mem
                .write_obj::<u32>(q.cq_head as u32, GuestAddress(db + cq_off));
        }
        self.dbbuf = Some((db, ei));
    }

    /// Builds PRP1/PRP2 for a page-aligned buffer of `len` bytes (PRP list if needed).
    pub fn prps(&mut self, buf: u64, len: u64) -> (u64, u64) {
        let pages = len.div_ceil(PAGE);
        match pages {
            0 | 1 => (buf, 0),
            2 => (buf, buf + PAGE),
            _ => {
                assert!(pages - 1 <= 512, "one PRP list page only");
                let list = self.alloc(PAGE);
                let entries: Vec<u8> = (1..pages)
                    .flat_map(|i| (buf + i * PAGE).to_le_bytes())
                    .collect();
                self.write_mem(list, &entries);
                (buf, list)
            }
        }
    }

    /// An I/O command (`sqe`, e.g. from [`Sqe::lba`]) on a page-aligned buffer, with PRPs.
    pub fn rw_prp(&mut self, qid: u16, sqe: Sqe, buf: u64, len: u64) -> Cqe {
        let (p1, p2) = self.prps(buf, len);
        self.exec(qid, sqe.prp(p1, p2))
    }

    /// An I/O command whose data is described by an SGL: the first descriptor is a Last
    /// Segment pointing at a list of data block descriptors, one per `(addr, len)`.
    pub fn rw_sgl(&mut self, qid: u16, sqe: Sqe, parts: &[(u64, u32)]) -> Cqe {
        let seg = self.alloc(PAGE);
        let mut list = Vec::new();
        for &(a, l) in parts {
            list.extend_from_slice(&a.to_le_bytes());
            list.extend_from_slice(&l.to_le_bytes());
            list.extend_from_slice(&[0, 0, 0, 0x00]); // Data Block, address sub-type
        }
        self.write_mem(seg, &list);
        let seg_len = list.len() as u32;
        let mut sqe = sqe;
        sqe.0[0] |= 1 << 14; // PSDT = SGL, MPTR an address
        sqe.0[6] = seg as u32;
        sqe.0[7] = (seg >> 32) as u32;
        sqe.0[8] = seg_len;
        sqe.0[9] = 0x30 << 24; // Last Segment descriptor
        self.exec(qid, sqe)
    }
}
