//! A [`Bus`] over a real vfio-user socket, as QEMU's `vfio-user-pci` is one: version
//! negotiation, guest RAM as a sealed memfd DMA-mapped to the server, BAR0 through
//! `REGION_READ`/`REGION_WRITE` (doorbells posted, as QEMU sends them), MSI-X interrupts
//! on eventfds given with `SET_IRQS` (or polling when the device offers none or the
//! caller asks for none). When the server offers parts of BAR0 for mmap (sparse-mmap
//! areas with a descriptor: vnvme's doorbell page, `--ctrl poll_us`), they are mapped,
//! as QEMU maps them, and accesses there (the doorbells) are plain memory stores with no
//! message.
//!
//! Everything the server sends is checked: a short, malformed, mismatched or error reply
//! is a [`BusError`], never a panic. Every read from the socket is bounded by the bus's
//! timeout.

use std::io;
use std::ops::Range;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use vfio_bindings::bindings::vfio as vb;
use vm_memory::{Bytes, FileOffset, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

use super::bus::{Bus, BusError};
use super::memfd;
use crate::shm::{self, SharedWords};
use crate::vfio_user::protocol::{self as p, Command, Header, HEADER_SIZE};
use crate::vfio_user::sock;

/// PCI configuration space region index.
const CONFIG_REGION: u32 = 7;
/// MSI-X interrupt index.
const MSIX_INDEX: u32 = 2;
/// Largest reply payload accepted (a region read of max_data_xfer_size, with room).
const MAX_REPLY: usize = p::MAX_MESSAGE_SIZE;
/// Largest region info reply (fixed part and capabilities) the bus asks for.
const MAX_REGION_INFO: u32 = 4096;
/// QEMU's capabilities as its vfio-user client proposes them.
const CLIENT_CAPS: &str = r#"{"capabilities":{"max_msg_fds":16,"max_data_xfer_size":1048576,"pgsizes":4096,"max_dma_maps":65535,"write_multiple":true}}"#;

/// How a [`VfioUserBus`] is set up.
#[derive(Debug, Clone)]
pub struct BusOptions {
    /// Guest-physical base of the guest RAM.
    pub guest_base: u64,
    /// Bytes of guest RAM (a multiple of 4096).
    pub guest_size: u64,
    /// How long connecting and each reply may take.
    pub timeout: Duration,
    /// Wire MSI-X vectors to eventfds (false: the caller polls).
    pub interrupts: bool,
    /// Map the parts of BAR0 the server offers for mmap (false: every access is a
    /// message, as a client without mmap support would send).
    pub map_sparse: bool,
}

impl Default for BusOptions {
    fn default() -> BusOptions {
        BusOptions {
            guest_base: 0x1_0000_0000,
            guest_size: 64 << 20,
            timeout: Duration::from_secs(10),
            interrupts: true,
            map_sparse: true,
        }
    }
}

/// What the bus did, for reports.
#[derive(Debug, Clone, Copy, Default)]
pub struct BusCounters {
    /// Messages sent (requests and posted writes).
    pub messages: u64,
    /// Doorbell writes sent posted.
    pub posted_doorbells: u64,
    /// Doorbell writes stored into a mapped area of BAR0 (no message).
    pub mapped_doorbells: u64,
    /// Replies to messages that wanted none (errors to posted writes), skipped.
    pub stray_replies: u64,
}

/// The client end of one vfio-user connection, with its guest RAM and interrupts.
pub struct VfioUserBus {
    stream: UnixStream,
    next_id: u16,
    /// The memfd behind guest RAM (kept open for the mapping and the server).
    _ram_file: std::fs::File,
    ram: GuestMemoryMmap<()>,
    base: u64,
    size: u64,
    /// One eventfd per MSI-X vector; empty when polling.
    irqs: Vec<EventFd>,
    bar0_size: u64,
    /// The parts of BAR0 mapped from the server's descriptor: (BAR0 range, mapping).
    bar0_mapped: Vec<(Range<u64>, SharedWords)>,
    max_msg_fds: usize,
    timeout: Duration,
    pub counters: BusCounters,
}

fn err(what: impl std::fmt::Display) -> BusError {
    BusError(what.to_string())
}

impl VfioUserBus {
    /// Connects to the server at `path` (retrying until the timeout while the socket is
    /// missing or refuses), negotiates the version, maps guest RAM, turns on memory
    /// space and bus mastering and wires MSI-X (if asked and offered).
    pub fn connect(path: &Path, opts: &BusOptions) -> Result<VfioUserBus, BusError> {
        if opts.guest_size == 0
            || !opts.guest_size.is_multiple_of(4096)
            || !opts.guest_base.is_multiple_of(4096)
        {
            return Err(err("guest RAM must be a non-empty multiple of 4096 bytes"));
        }
        let deadline = Instant::now() + opts.timeout;
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) if Instant::now() >= deadline => {
                    return Err(err(format!("connect {}: {e}", path.display())))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        stream
            .set_read_timeout(Some(opts.timeout))
            .and_then(|_| stream.set_write_timeout(Some(opts.timeout)))
            .map_err(|e| err(format!("socket timeouts: {e}")))?;
        let file = memfd::sealed("vnvme-guest-ram", opts.guest_size)
            .map_err(|e| err(format!("guest RAM memfd: {e}")))?;
        let fo = FileOffset::new(
            file.try_clone()
                .map_err(|e| err(format!("guest RAM: {e}")))?,
            0,
        );
        let ram = GuestMemoryMmap::from_ranges_with_files([(
            GuestAddress(opts.guest_base),
            opts.guest_size as usize,
            Some(fo),
        )])
        .map_err(|e| err(format!("mapping guest RAM: {e}")))?;
        let mut bus = VfioUserBus {
            stream,
            next_id: 1,
            _ram_file: file,
            ram,
            base: opts.guest_base,
            size: opts.guest_size,
            irqs: Vec::new(),
            bar0_size: 0,
            bar0_mapped: Vec::new(),
            max_msg_fds: 1,
            timeout: opts.timeout,
            counters: BusCounters::default(),
        };
        bus.negotiate()?;
        let (info, areas, file) = bus.region_info_full(0)?;
        bus.bar0_size = info.size;
        if bus.bar0_size < 0x2000 {
            return Err(err(format!("BAR0 of {} bytes", bus.bar0_size)));
        }
        if opts.map_sparse {
            if let (Some(areas), Some(file)) = (areas, file) {
                bus.map_bar0(&info, &areas, file)?;
            }
        }
        bus.dma_map()?;
        // Memory space + bus master.
        let cmd = bus.cfg_read16(0x04)?;
        bus.cfg_write16(0x04, cmd | 0x0006)?;
        if opts.interrupts {
            bus.wire_msix()?;
        }
        Ok(bus)
    }

    /// Guest RAM as a guest-physical range (for the driver's heap).
    pub fn ram(&self) -> Range<u64> {
        self.base..self.base + self.size
    }

    /// True when completions raise interrupts on eventfds (else the caller polls).
    pub fn has_interrupts(&self) -> bool {
        !self.irqs.is_empty()
    }

    /// A duplicate of vector `v`'s eventfd (non-blocking), to wait on it outside the bus,
    /// e.g. from another thread; `None` when the vector is not wired.
    pub fn irq_eventfd(&self, v: u16) -> Option<io::Result<EventFd>> {
        self.irqs.get(v as usize).map(|e| e.try_clone())
    }

    /// MSI-X vectors wired (0 when polling).
    pub fn vectors(&self) -> usize {
        self.irqs.len()
    }

    /// The parts of BAR0 mapped from the server (empty: every access is a message).
    pub fn mapped_bar0(&self) -> Vec<Range<u64>> {
        self.bar0_mapped.iter().map(|(r, _)| r.clone()).collect()
    }

    /// Maps the sparse areas the server offered for BAR0, after checking them: inside
    /// the region, whole pages, and a sealed memfd large enough (so the server can
    /// never make the pages vanish under us).
    fn map_bar0(
        &mut self,
        info: &p::RegionInfo,
        areas: &[p::SparseArea],
        file: OwnedFd,
    ) -> Result<(), BusError> {
        let file = std::fs::File::from(file);
        if !shm::cannot_shrink(&file) {
            return Err(err(
                "BAR0's mmap descriptor is not a memfd sealed against shrinking",
            ));
        }
        for a in areas {
            let inside = a
                .offset
                .checked_add(a.size)
                .is_some_and(|end| end <= info.size);
            let start = info.offset.checked_add(a.offset);
            let (true, Some(start)) = (inside && a.size > 0, start) else {
                return Err(err(format!(
                    "BAR0 sparse area {:#x}+{:#x} outside the {:#x}-byte region",
                    a.offset, a.size, info.size
                )));
            };
            let words = SharedWords::map(&file, start, a.size).map_err(|e| {
                err(format!(
                    "mapping BAR0 area {:#x}+{:#x}: {e}",
                    a.offset, a.size
                ))
            })?;
            self.bar0_mapped.push((a.offset..a.offset + a.size, words));
        }
        Ok(())
    }

    /// The mapping holding the 4-byte word at BAR0 `offset`, and its file offset.
    fn mapped_word(&self, offset: u64) -> Option<(&SharedWords, u64)> {
        self.bar0_mapped
            .iter()
            .find(|(r, _)| r.contains(&offset))
            .map(|(r, w)| (w, w.range().start + (offset - r.start)))
    }

    fn send(
        &mut self,
        cmd: u16,
        flags: u32,
        payload: &[u8],
        fds: &[RawFd],
    ) -> Result<u16, BusError> {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let msg = p::build_message(id, cmd, flags, 0, payload);
        sock::send_with_fds(&self.stream, &msg, fds)
            .map_err(|e| err(format!("sending command {cmd}: {e}")))?;
        self.counters.messages += 1;
        Ok(id)
    }

    /// Reads exactly `buf.len()` bytes, keeping any descriptors sent with them.
    fn read_exact(&mut self, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> Result<(), BusError> {
        let mut got = 0;
        while got < buf.len() {
            match sock::recv_with_fds(&self.stream, &mut buf[got..], fds) {
                Ok((0, _)) => return Err(err("the server closed the connection")),
                Ok((_, true)) => return Err(err("the server sent too many descriptors")),
                Ok((n, false)) => got += n,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(err(format!("no reply within {:?}", self.timeout)))
                }
                Err(e) => return Err(err(format!("reading a reply: {e}"))),
            }
        }
        Ok(())
    }

    fn recv(&mut self) -> Result<(Header, Vec<u8>, Vec<OwnedFd>), BusError> {
        let mut fds = Vec::new();
        let mut hb = [0u8; HEADER_SIZE];
        self.read_exact(&mut hb, &mut fds)?;
        let hdr = Header::parse(&hb).map_err(|e| err(format!("reply header: {e}")))?;
        let len = (hdr.size as usize)
            .checked_sub(HEADER_SIZE)
            .ok_or_else(|| err(format!("reply size {}", hdr.size)))?;
        if len > MAX_REPLY {
            return Err(err(format!("reply of {len} bytes")));
        }
        let mut payload = vec![0u8; len];
        self.read_exact(&mut payload, &mut fds)?;
        Ok((hdr, payload, fds))
    }

    /// Sends `cmd` and waits for its reply; an error reply is an error naming the errno.
    /// Replies to earlier posted writes (which only come as errors) are skipped.
    fn request(
        &mut self,
        cmd: Command,
        payload: &[u8],
        fds: &[RawFd],
    ) -> Result<Vec<u8>, BusError> {
        // Descriptors nobody asked for are closed here.
        self.request_fds(cmd, payload, fds).map(|(p, _)| p)
    }

    /// As [`VfioUserBus::request`], with the descriptors the reply carried.
    fn request_fds(
        &mut self,
        cmd: Command,
        payload: &[u8],
        fds: &[RawFd],
    ) -> Result<(Vec<u8>, Vec<OwnedFd>), BusError> {
        let id = self.send(cmd as u16, 0, payload, fds)?;
        loop {
            let (hdr, payload, fds) = self.recv()?;
            if hdr.msg_id != id {
                self.counters.stray_replies += 1;
                continue;
            }
            if hdr.command != cmd as u16 || hdr.flags & p::FLAG_TYPE_MASK != p::FLAG_TYPE_REPLY {
                return Err(err(format!(
                    "reply to {cmd:?} is command {} flags {:#x}",
                    hdr.command, hdr.flags
                )));
            }
            if hdr.flags & p::FLAG_ERROR != 0 {
                return Err(err(format!("{cmd:?} refused: errno {}", hdr.error)));
            }
            return Ok((payload, fds));
        }
    }

    fn negotiate(&mut self) -> Result<(), BusError> {
        let req = p::Version {
            major: p::MAJOR_VERSION,
            minor: p::MINOR_VERSION,
            capabilities: CLIENT_CAPS.into(),
        };
        let r = self.request(Command::Version, &req.to_payload(), &[])?;
        let v = p::Version::parse(&r).map_err(|e| err(format!("version reply: {e}")))?;
        if v.major != p::MAJOR_VERSION {
            return Err(err(format!(
                "server speaks version {}.{}",
                v.major, v.minor
            )));
        }
        let caps: serde_json::Value = serde_json::from_str(&v.capabilities)
            .map_err(|e| err(format!("server capabilities: {e}")))?;
        self.max_msg_fds = caps
            .pointer("/capabilities/max_msg_fds")
            .and_then(|v| v.as_u64())
            .unwrap_or(1)
            .clamp(1, 16) as usize;
        Ok(())
    }

    /// Region `index`'s info, asked as QEMU asks: with the fixed size first, again with
    /// the size the reply names if it has capabilities. Returns the info, its sparse
    /// mmap areas (if any) and the descriptor to map them from (if sent).
    #[allow(clippy::type_complexity)]
    fn region_info_full(
        &mut self,
        index: u32,
    ) -> Result<(p::RegionInfo, Option<Vec<p::SparseArea>>, Option<OwnedFd>), BusError> {
        use vfio_bindings::bindings::vfio as vb;
        let mut argsz = p::RegionInfo::SIZE as u32;
        for _ in 0..2 {
            let req = p::RegionInfo::request(index, argsz);
            let (r, mut fds) =
                self.request_fds(Command::DeviceGetRegionInfo, &req.to_payload(), &[])?;
            let info = p::RegionInfo::parse(&r).map_err(|e| err(format!("region info: {e}")))?;
            let caps = info.flags & vb::VFIO_REGION_INFO_FLAG_CAPS != 0;
            // A reply naming a larger size than we allowed left something out (the
            // capabilities): ask again with that size, as QEMU does.
            if info.argsz > argsz {
                if info.argsz > MAX_REGION_INFO {
                    return Err(err(format!("region info of {} bytes", info.argsz)));
                }
                argsz = info.argsz;
                continue;
            }
            let areas = if caps {
                p::parse_sparse_areas(&r).map_err(|e| err(format!("region info: {e}")))?
            } else {
                None
            };
            let mmap = info.flags & vb::VFIO_REGION_INFO_FLAG_MMAP != 0;
            if fds.len() > 1 || (!fds.is_empty() && !mmap) {
                return Err(err(format!(
                    "region {index} info came with {} descriptors",
                    fds.len()
                )));
            }
            return Ok((info, areas, fds.pop().filter(|_| mmap)));
        }
        Err(err(format!(
            "region {index} info: the size needed keeps growing"
        )))
    }

    fn irq_count(&mut self, index: u32) -> Result<u32, BusError> {
        let req = p::IrqInfo {
            argsz: p::IrqInfo::SIZE as u32,
            flags: 0,
            index,
            count: 0,
        };
        let r = self.request(Command::DeviceGetIrqInfo, &req.to_payload(), &[])?;
        Ok(p::IrqInfo::parse(&r)
            .map_err(|e| err(format!("irq info: {e}")))?
            .count)
    }

    fn dma_map(&mut self) -> Result<(), BusError> {
        let req = p::DmaMap {
            argsz: p::DmaMap::SIZE as u32,
            flags: p::DMA_MAP_FLAG_READ | p::DMA_MAP_FLAG_WRITE,
            offset: 0,
            addr: self.base,
            size: self.size,
        };
        let fd = self._ram_file.as_raw_fd();
        self.request(Command::DmaMap, &req.to_payload(), &[fd])?;
        Ok(())
    }

    /// Finds the MSI-X capability, enables it, and hands one eventfd per vector to the
    /// server in chunks of its max_msg_fds. No MSI-X: stays polling.
    fn wire_msix(&mut self) -> Result<(), BusError> {
        let count = self.irq_count(MSIX_INDEX)?.min(2048);
        let mut cap = self.cfg_read8(0x34)? & 0xfc;
        let mut seen = 0;
        let msix = loop {
            if cap == 0 || seen > 48 {
                break None;
            }
            if self.cfg_read8(cap as u64)? == 0x11 {
                break Some(cap);
            }
            cap = self.cfg_read8(cap as u64 + 1)? & 0xfc;
            seen += 1;
        };
        let (Some(cap), true) = (msix, count > 0) else {
            return Ok(());
        };
        let ctrl = self.cfg_read16(cap as u64 + 2)?;
        self.cfg_write16(cap as u64 + 2, (ctrl | 0x8000) & !0x4000)?;
        let mut fds = Vec::with_capacity(count as usize);
        for _ in 0..count {
            fds.push(
                EventFd::new(libc::EFD_NONBLOCK | libc::EFD_CLOEXEC)
                    .map_err(|e| err(format!("eventfd: {e}")))?,
            );
        }
        let chunk = self.max_msg_fds;
        for (i, part) in fds.chunks(chunk).enumerate() {
            let raw: Vec<RawFd> = part.iter().map(|e| e.as_raw_fd()).collect();
            let req = p::IrqSet {
                argsz: p::IrqSet::SIZE as u32,
                flags: vb::VFIO_IRQ_SET_DATA_EVENTFD | vb::VFIO_IRQ_SET_ACTION_TRIGGER,
                index: MSIX_INDEX,
                start: (i * chunk) as u32,
                count: raw.len() as u32,
                data: Vec::new(),
            };
            self.request(Command::DeviceSetIrqs, &req.to_payload(), &raw)?;
        }
        self.irqs = fds;
        Ok(())
    }

    /// Reads `len` bytes of region `region` at `offset`.
    pub fn region_read(
        &mut self,
        region: u32,
        offset: u64,
        len: usize,
    ) -> Result<Vec<u8>, BusError> {
        let req = p::RegionAccess {
            offset,
            region,
            count: len as u32,
            data: Vec::new(),
        };
        let r = self.request(Command::RegionRead, &req.to_payload(), &[])?;
        let a = p::RegionAccess::parse_write(&r).map_err(|e| err(format!("read reply: {e}")))?;
        if a.offset != offset || a.region != region || a.data.len() != len {
            return Err(err(format!(
                "read reply for region {} offset {:#x} count {}, asked {region} {offset:#x} {len}",
                a.region, a.offset, a.count
            )));
        }
        Ok(a.data)
    }

    /// Writes `data` to region `region` at `offset` and waits for the reply.
    pub fn region_write(&mut self, region: u32, offset: u64, data: &[u8]) -> Result<(), BusError> {
        let req = p::RegionAccess {
            offset,
            region,
            count: data.len() as u32,
            data: data.to_vec(),
        };
        self.request(Command::RegionWrite, &req.to_payload(), &[])?;
        Ok(())
    }

    /// Writes without asking for a reply (a posted write, as QEMU sends doorbells).
    pub fn region_write_posted(
        &mut self,
        region: u32,
        offset: u64,
        data: &[u8],
    ) -> Result<(), BusError> {
        let req = p::RegionAccess {
            offset,
            region,
            count: data.len() as u32,
            data: data.to_vec(),
        };
        self.send(
            Command::RegionWrite as u16,
            p::FLAG_NO_REPLY,
            &req.to_payload(),
            &[],
        )?;
        Ok(())
    }

    pub fn cfg_read8(&mut self, off: u64) -> Result<u8, BusError> {
        Ok(self.region_read(CONFIG_REGION, off, 1)?[0])
    }

    pub fn cfg_read16(&mut self, off: u64) -> Result<u16, BusError> {
        let b = self.region_read(CONFIG_REGION, off, 2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    pub fn cfg_write16(&mut self, off: u64, v: u16) -> Result<(), BusError> {
        self.region_write(CONFIG_REGION, off, &v.to_le_bytes())
    }

    /// Waits up to `timeout` for any of `vectors`; returns those that fired (consumed).
    /// Without interrupts it sleeps a little (at most `timeout`) and returns none.
    pub fn wait_any(&mut self, vectors: &[u16], timeout: Duration) -> Result<Vec<u16>, BusError> {
        let fds: Vec<(u16, RawFd)> = vectors
            .iter()
            .filter_map(|&v| self.irqs.get(v as usize).map(|e| (v, e.as_raw_fd())))
            .collect();
        if fds.is_empty() {
            std::thread::sleep(timeout.min(Duration::from_micros(200)));
            return Ok(Vec::new());
        }
        let raw: Vec<RawFd> = fds.iter().map(|&(_, fd)| fd).collect();
        let ms = timeout.as_millis().clamp(0, i32::MAX as u128) as i32;
        let revents =
            sock::poll_readable(&raw, ms).map_err(|e| err(format!("poll on eventfds: {e}")))?;
        let mut fired = Vec::new();
        for (&(v, _), &re) in fds.iter().zip(&revents) {
            if re != 0 && self.take_irq(v)? {
                fired.push(v);
            }
        }
        Ok(fired)
    }

    /// Consumes vector `v`'s eventfd if it fired.
    fn take_irq(&mut self, v: u16) -> Result<bool, BusError> {
        match self.irqs.get(v as usize).map(|e| e.read()) {
            Some(Ok(_)) => Ok(true),
            Some(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Some(Err(e)) => Err(err(format!("eventfd of vector {v}: {e}"))),
            None => Ok(false),
        }
    }

    fn check_bar0(&self, offset: u64, len: usize) -> Result<(), BusError> {
        match offset.checked_add(len as u64) {
            Some(end) if end <= self.bar0_size => Ok(()),
            _ => Err(err(format!(
                "BAR0 access {offset:#x}+{len} outside the BAR"
            ))),
        }
    }
}

impl Bus for VfioUserBus {
    fn mmio_read(&mut self, offset: u64, data: &mut [u8]) -> Result<(), BusError> {
        self.check_bar0(offset, data.len())?;
        if let Some((w, off)) = self.mapped_word(offset) {
            // Mapped: memory, as the guest's load would be (aligned 32-bit words only).
            let v = w.load(off).filter(|_| data.len() == 4).ok_or_else(|| {
                err(format!(
                    "BAR0 read {offset:#x}+{} in the mapped area",
                    data.len()
                ))
            })?;
            data.copy_from_slice(&v.to_le_bytes());
            return Ok(());
        }
        let b = self.region_read(0, offset, data.len())?;
        data.copy_from_slice(&b);
        Ok(())
    }

    fn mmio_write(&mut self, offset: u64, data: &[u8]) -> Result<(), BusError> {
        self.check_bar0(offset, data.len())?;
        if let Some((w, off)) = self.mapped_word(offset) {
            let v = <[u8; 4]>::try_from(data).map(u32::from_le_bytes);
            return match v {
                Ok(v) if w.store(off, v) => Ok(()),
                _ => Err(err(format!(
                    "BAR0 write {offset:#x}+{} in the mapped area",
                    data.len()
                ))),
            };
        }
        self.region_write(0, offset, data)
    }

    fn doorbell(&mut self, offset: u64, value: u32) -> Result<(), BusError> {
        self.check_bar0(offset, 4)?;
        if let Some((w, off)) = self.mapped_word(offset) {
            // The store is ordered after the entries written before it (release).
            if w.store(off, value) {
                self.counters.mapped_doorbells += 1;
                return Ok(());
            }
            return Err(err(format!(
                "doorbell at {offset:#x} is not an aligned word"
            )));
        }
        self.counters.posted_doorbells += 1;
        self.region_write_posted(0, offset, &value.to_le_bytes())
    }

    fn mem_read(&self, addr: u64, data: &mut [u8]) -> Result<(), BusError> {
        self.ram
            .read_slice(data, GuestAddress(addr))
            .map_err(|e| err(format!("guest memory at {addr:#x}: {e}")))
    }

    fn mem_write(&self, addr: u64, data: &[u8]) -> Result<(), BusError> {
        self.ram
            .write_slice(data, GuestAddress(addr))
            .map_err(|e| err(format!("guest memory at {addr:#x}: {e}")))
    }

    fn wait_irq(&mut self, vector: u16, timeout: Duration) -> Result<bool, BusError> {
        if self.irqs.get(vector as usize).is_none() {
            std::thread::sleep(timeout);
            return Ok(false);
        }
        if self.take_irq(vector)? {
            return Ok(true);
        }
        Ok(!self.wait_any(&[vector], timeout)?.is_empty())
    }
}
