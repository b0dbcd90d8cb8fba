//! The integration tests' NVMe host driver: the library's shared driver
//! ([`vnvme::host::Driver`]) on a vfio-user bus over the real socket: BAR0 through
//! REGION_READ/WRITE (doorbells posted, as QEMU sends them), guest memory a shared file
//! DMA-mapped to the server, MSI-X (or INTx) interrupts on eventfds given with SET_IRQS.
//! [`Nvme`] wraps it with the tests' panicking conveniences: enable, identify, I/O
//! queues, reads and writes with PRP lists or SGLs, interrupts, shadow doorbells.

use std::ops::{Deref, DerefMut};
use std::time::Duration;

use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::eventfd::EventFd;

use vnvme::host::driver::must;
use vnvme::host::{Bus, BusError, Driver};
use vnvme::nvme::spec;

use super::{eventfd, wait_eventfd, Client, GuestMem, TestServer, TIMEOUT};

pub use vnvme::host::{copy_descriptors, pattern, PAGE};
/// Logical block size of the test namespaces.
pub const LBS: u64 = 512;

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
    pub fn to_bytes(self) -> [u8; 64] {
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
    pub dw1: u32,
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

impl From<vnvme::host::Cqe> for Cqe {
    fn from(c: vnvme::host::Cqe) -> Cqe {
        Cqe {
            dw0: c.dw0,
            dw1: c.dw1,
            sq_head: c.sqhd,
            sq_id: c.sqid,
            cid: c.cid,
            status: c.status.0,
        }
    }
}

/// The vfio-user bus: the test client, the shared guest memory, one eventfd per vector.
pub struct SocketBus {
    pub c: Client,
    pub g: GuestMem,
    /// One eventfd per MSI-X vector, or the INTx eventfd alone.
    pub irq: Vec<EventFd>,
    pub msix: bool,
    /// How many doorbell writes went over MMIO (for the shadow doorbell test).
    pub mmio_doorbells: u64,
}

fn refused(what: &str, offset: u64, r: &super::Reply) -> BusError {
    BusError(format!("{what} at BAR0 {offset:#x}: errno {}", r.hdr.error))
}

fn mem_error(addr: u64, e: impl std::fmt::Display) -> BusError {
    BusError(format!("guest memory at {addr:#x}: {e}"))
}

impl Bus for SocketBus {
    fn mmio_read(&mut self, offset: u64, data: &mut [u8]) -> Result<(), BusError> {
        let r = self.c.region_read_raw(0, offset, data.len() as u32);
        if r.is_error() {
            return Err(refused("read", offset, &r));
        }
        let a = vnvme::vfio_user::protocol::RegionAccess::parse_write(&r.payload)
            .map_err(|e| BusError(format!("read reply: {e}")))?;
        if a.data.len() != data.len() {
            return Err(BusError(format!("read reply of {} bytes", a.data.len())));
        }
        data.copy_from_slice(&a.data);
        Ok(())
    }

    fn mmio_write(&mut self, offset: u64, data: &[u8]) -> Result<(), BusError> {
        let r = self.c.region_write_raw(0, offset, data);
        if r.is_error() {
            return Err(refused("write", offset, &r));
        }
        Ok(())
    }

    fn doorbell(&mut self, offset: u64, value: u32) -> Result<(), BusError> {
        self.mmio_doorbells += 1;
        self.c.region_write_posted(0, offset, &value.to_le_bytes());
        Ok(())
    }

    fn mem_read(&self, addr: u64, data: &mut [u8]) -> Result<(), BusError> {
        self.g
            .mem
            .read_slice(data, GuestAddress(addr))
            .map_err(|e| mem_error(addr, e))
    }

    fn mem_write(&self, addr: u64, data: &[u8]) -> Result<(), BusError> {
        self.g
            .mem
            .write_slice(data, GuestAddress(addr))
            .map_err(|e| mem_error(addr, e))
    }

    fn wait_irq(&mut self, vector: u16, timeout: Duration) -> Result<bool, BusError> {
        let fd = if self.msix {
            self.irq.get(vector as usize)
        } else {
            self.irq.first()
        };
        match fd {
            Some(e) => Ok(wait_eventfd(e, timeout).is_some()),
            None => {
                std::thread::sleep(timeout);
                Ok(false)
            }
        }
    }
}

/// The driver on the socket bus. Dereferences to the bus (`n.c`, `n.irq`, `n.g`,
/// `n.mmio_doorbells`); `n.drv` is the driver itself.
pub struct Nvme {
    pub drv: Driver<SocketBus>,
    /// CAP as read at the last enable.
    pub cap: u64,
    /// (shadow doorbell buffer, EventIdx buffer) once Doorbell Buffer Config is on.
    pub dbbuf: Option<(u64, u64)>,
}

impl Deref for Nvme {
    type Target = SocketBus;
    fn deref(&self) -> &SocketBus {
        &self.drv.bus
    }
}

impl DerefMut for Nvme {
    fn deref_mut(&mut self) -> &mut SocketBus {
        &mut self.drv.bus
    }
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
        let mut c = s.negotiated();
        let g = GuestMem::new(GUEST_BASE, GUEST_SIZE);
        c.map_guest(&g);
        // PCI: memory space + bus master.
        c.cfg_write16(0x04, 0x0006);
        let irq: Vec<EventFd> = if msix {
            // MSI-X on; one eventfd per vector.
            let msix_ctrl = c.cfg_read16(0x52);
            c.cfg_write16(0x52, msix_ctrl | 0x8000);
            (0..s.msix_vectors).map(|_| eventfd()).collect()
        } else {
            vec![eventfd()]
        };
        let refs: Vec<&EventFd> = irq.iter().collect();
        c.set_irq_eventfds(if msix { 2 } else { 0 }, 0, &refs);
        let bus = SocketBus {
            c,
            g,
            irq,
            msix,
            mmio_doorbells: 0,
        };
        let mut drv = Driver::new(bus, GUEST_BASE..GUEST_BASE + GUEST_SIZE);
        drv.timeout = TIMEOUT;
        let mut n = Nvme {
            drv,
            cap: 0,
            dbbuf: None,
        };
        n.enable(32);
        n
    }

    /// Allocates zeroed, page-aligned guest memory.
    pub fn alloc(&mut self, bytes: u64) -> u64 {
        must(self.drv.alloc(bytes))
    }

    pub fn write_mem(&self, addr: u64, data: &[u8]) {
        must(self.drv.write_mem(addr, data));
    }

    pub fn read_mem(&self, addr: u64, len: usize) -> Vec<u8> {
        must(self.drv.read_mem(addr, len))
    }

    /// Disables, sets up the admin queue of `entries`, enables.
    pub fn enable(&mut self, entries: u16) {
        must(self.drv.reset_and_enable(entries as u32));
        self.cap = self.drv.cap;
        self.dbbuf = None;
    }

    /// Writes an SQE to queue `qid` and rings its doorbell; returns the command id.
    pub fn submit(&mut self, qid: u16, sqe: Sqe) -> u16 {
        must(self.drv.submit_raw(qid, sqe.to_bytes()))
    }

    /// Polls the completion queue once.
    pub fn poll_cqe(&mut self, qid: u16) -> Option<Cqe> {
        must(self.drv.poll(qid)).map(Cqe::from)
    }

    /// Waits for the next completion on `qid`; returns it and whether its interrupt
    /// vector fired while waiting (or fires shortly after the entry appears).
    pub fn wait_cqe_irq(&mut self, qid: u16) -> (Cqe, bool) {
        let (c, fired) = must(self.drv.wait(qid, TIMEOUT, true));
        (c.into(), fired)
    }

    /// Waits for the next completion on `qid`, the interrupt only waking the wait.
    pub fn wait_cqe(&mut self, qid: u16) -> Cqe {
        must(self.drv.wait(qid, TIMEOUT, false)).0.into()
    }

    /// Submits and waits; returns the completion (status not checked).
    pub fn exec(&mut self, qid: u16, sqe: Sqe) -> Cqe {
        must(self.drv.cmd_raw(qid, sqe.to_bytes())).into()
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
        let (c, page) = must(self.drv.identify(cns, nsid, 0, buf));
        assert!(c.ok(), "identify CNS {cns:#x}: status {:#x}", c.status.0);
        page
    }

    /// Sets the number of queues and creates `n` I/O queue pairs of `entries`, pair i on
    /// MSI-X vector i.
    pub fn create_io_queues(&mut self, n: u16, entries: u16) {
        must(self.drv.create_io_queues(n, entries as u32));
    }

    /// Turns on shadow doorbells (Doorbell Buffer Config).
    pub fn enable_dbbuf(&mut self) {
        self.dbbuf = Some(must(self.drv.enable_dbbuf()));
    }

    /// Builds PRP1/PRP2 for a buffer of `len` bytes (PRP lists if needed).
    pub fn prps(&mut self, buf: u64, len: u64) -> (u64, u64) {
        must(self.drv.prps(buf, len))
    }

    /// An I/O command (`sqe`, e.g. from [`Sqe::lba`]) on a page-aligned buffer, with PRPs.
    pub fn rw_prp(&mut self, qid: u16, sqe: Sqe, buf: u64, len: u64) -> Cqe {
        let (p1, p2) = self.prps(buf, len);
        self.exec(qid, sqe.prp(p1, p2))
    }

    /// An I/O command whose data is described by an SGL: the first descriptor is a Last
    /// Segment pointing at a list of data block descriptors, one per `(addr, len)`.
    pub fn rw_sgl(&mut self, qid: u16, sqe: Sqe, parts: &[(u64, u32)]) -> Cqe {
        let mut s = spec::Sqe::parse(&sqe.to_bytes());
        must(self.drv.set_sgl(&mut s, parts));
        must(self.drv.cmd(qid, s)).into()
    }
}
