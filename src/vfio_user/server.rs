//! The vfio-user server: a unix socket listener serving one client at a time.
//!
//! Per connection: version negotiation, device/region/irq information (with the parts of
//! a region the client may mmap, and the descriptor behind them, when the device offers
//! any), interrupt eventfds, region reads and writes (posted writes get no reply), DMA
//! maps, reset.
//! A malformed message gets an error reply (or, when the stream cannot be trusted any
//! more, a clean disconnect) and a `log::warn!`; nothing a client sends can panic the
//! server. When the client goes, its DMA maps and eventfds are dropped, the device is
//! told, and the next client is accepted.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use vfio_bindings::bindings::vfio as vb;
use vmm_sys_util::eventfd::EventFd;

use super::dma::{DmaMaps, DmaMemory};
use super::protocol::{self as p, Command, Header, ParseError, SparseArea, HEADER_SIZE};
use super::sock;
use crate::pci::msix::{self, Interrupts};

/// VFIO PCI region indexes.
pub const REGION_BAR0: u32 = vb::VFIO_PCI_BAR0_REGION_INDEX;
pub const REGION_BAR4: u32 = vb::VFIO_PCI_BAR4_REGION_INDEX;
pub const REGION_CONFIG: u32 = vb::VFIO_PCI_CONFIG_REGION_INDEX;
pub const NUM_REGIONS: u32 = vb::VFIO_PCI_NUM_REGIONS;

/// How long a client may take to send the rest of a message it started, or to make
/// room for a reply.
const MESSAGE_TIMEOUT: Duration = Duration::from_secs(5);

/// The parts of a region a client may mmap, and the file behind them: region offset `o`
/// is file offset `file_offset + o`. Everything outside the areas stays trapped.
pub struct RegionMmap {
    pub file: OwnedFd,
    pub file_offset: u64,
    pub areas: Vec<SparseArea>,
}

/// What the transport needs from the PCI function it serves.
pub trait Device: Send + Sync {
    /// Size of a VFIO region (0: the region does not exist).
    fn region_size(&self, index: u32) -> u64;
    /// The mappable parts of a region for the connected client (a sparse mmap area,
    /// offered in GET_REGION_INFO with its descriptor). Default: none, all trapped.
    fn region_mmap(&self, _index: u32) -> Option<RegionMmap> {
        None
    }
    /// Reads `data.len()` bytes at `offset` of a region; the server checks the bounds.
    fn region_read(&self, index: u32, offset: u64, data: &mut [u8]);
    /// Writes `data` at `offset` of a region; the server checks the bounds.
    fn region_write(&self, index: u32, offset: u64, data: &[u8]);
    /// Number of MSI-X vectors.
    fn msix_vectors(&self) -> u16;
    /// A client arrived: its guest memory and interrupt vectors.
    fn connect(&self, mem: DmaMemory, irqs: Arc<Interrupts>);
    /// The client left: stop using its memory and interrupts.
    fn disconnect(&self);
    /// Function-level reset requested by the client.
    fn reset(&self);
}

/// A bound vfio-user socket.
pub struct Server {
    listener: UnixListener,
    path: PathBuf,
    stop: EventFd,
}

/// Asks a running [`Server::run`] to return.
pub struct StopHandle(EventFd);

impl StopHandle {
    pub fn stop(&self) {
        let _ = self.0.write(1);
    }
}

impl Server {
    /// Binds `path`. Refuses if another process is listening there; removes a stale socket.
    pub fn bind(path: &Path) -> io::Result<Server> {
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if !meta.file_type().is_socket() {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} exists and is not a socket", path.display()),
                ));
            }
            match UnixStream::connect(path) {
                Ok(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::AddrInUse,
                        format!("another process is listening on {}", path.display()),
                    ))
                }
                Err(_) => {
                    log::info!("removing stale socket {}", path.display());
                    std::fs::remove_file(path)?;
                }
            }
        }
        let listener = UnixListener::bind(path)?;
        Ok(Server {
            listener,
            path: path.to_path_buf(),
            stop: EventFd::new(libc::EFD_NONBLOCK)?,
        })
    }

    pub fn stop_handle(&self) -> io::Result<StopHandle> {
        Ok(StopHandle(self.stop.try_clone()?))
    }

    /// Serves clients one after the other until stopped.
    pub fn run(&self, dev: &dyn Device) -> io::Result<()> {
        // A client shrinking the file behind its guest memory must not kill the device.
        crate::guest_faults::install();
        log::info!("listening on {}", self.path.display());
        loop {
            let rev = sock::poll_readable(&[self.listener.as_raw_fd(), self.stop.as_raw_fd()], -1)?;
            if rev[1] != 0 {
                return Ok(());
            }
            if rev[0] == 0 {
                continue;
            }
            let stream = match self.listener.accept() {
                Ok((s, _)) => s,
                Err(e) => {
                    log::warn!("accept: {e}");
                    continue;
                }
            };
            log::info!("client connected");
            let mut conn = Connection::new(stream, dev);
            let stopped = conn.serve(&self.listener, &self.stop);
            conn.close();
            log::info!("client disconnected");
            if stopped {
                return Ok(());
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// How long a second client waits for the current one to show it has gone before it is
/// refused (milliseconds).
const SECOND_CLIENT_GRACE_MS: i32 = 200;

/// A whole message read from the socket.
struct Message {
    hdr: Header,
    payload: Vec<u8>,
    fds: Vec<OwnedFd>,
}

/// Why a connection ends.
enum End {
    /// The client closed the socket.
    Closed,
    /// The stream cannot be trusted any more (already logged).
    Broken,
}

/// The state of one client connection.
struct Connection<'a> {
    stream: UnixStream,
    dev: &'a dyn Device,
    dma: DmaMaps,
    irqs: Arc<Interrupts>,
    negotiated: bool,
    /// Descriptors to send with the next reply (a mappable region's file).
    reply_fds: Vec<OwnedFd>,
}

impl<'a> Connection<'a> {
    fn new(stream: UnixStream, dev: &'a dyn Device) -> Self {
        Connection {
            stream,
            dev,
            dma: DmaMaps::new(),
            irqs: Arc::new(Interrupts::new(dev.msix_vectors())),
            negotiated: false,
            reply_fds: Vec::new(),
        }
    }

    /// Serves until the client leaves; returns true if the server was stopped.
    fn serve(&mut self, listener: &UnixListener, stop: &EventFd) -> bool {
        // A client that stalls mid-message, or stops reading replies, is dropped.
        let _ = self.stream.set_read_timeout(Some(MESSAGE_TIMEOUT));
        let _ = self.stream.set_write_timeout(Some(MESSAGE_TIMEOUT));
        loop {
            let fds = [
                self.stream.as_raw_fd(),
                listener.as_raw_fd(),
                stop.as_raw_fd(),
            ];
            let rev = match sock::poll_readable(&fds, -1) {
                Ok(r) => r,
                Err(e) => {
                    log::warn!("poll: {e}");
                    return false;
                }
            };
            if rev[2] != 0 {
                return true;
            }
            // The current client comes first: if it has just hung up, the next client
            // waiting on the listener is served rather than refused.
            if rev[1] != 0 && rev[0] == 0 {
                // A client that closes and at once connects anew can be seen in that
                // order by this poll: give the current one a moment to show its hang-up
                // (or its next message) before refusing the newcomer.
                let current = [self.stream.as_raw_fd()];
                let now_ready = matches!(
                    sock::poll_readable(&current, SECOND_CLIENT_GRACE_MS),
                    Ok(r) if r[0] != 0
                );
                if now_ready {
                    continue;
                }
                if let Ok((extra, _)) = listener.accept() {
                    log::warn!("refusing a second client: one client at a time");
                    drop(extra);
                }
            }
            if rev[0] == 0 {
                continue;
            }
            let ended = match self.read_message() {
                Ok(msg) => {
                    let end = self.handle(msg).is_err();
                    crate::guest_faults::report();
                    end
                }
                Err(End::Closed) => true,
                Err(End::Broken) => true,
            };
            if ended {
                return false;
            }
        }
    }

    /// Reads exactly `buf.len()` bytes, collecting descriptors. `Ok(false)` at a clean
    /// end of stream before the first byte.
    fn read_full(&mut self, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> Result<bool, End> {
        let mut got = 0;
        while got < buf.len() {
            match sock::recv_with_fds(&self.stream, &mut buf[got..], fds) {
                Ok((0, _)) => {
                    if got == 0 {
                        return Ok(false);
                    }
                    log::warn!(
                        "client closed the socket in the middle of a message ({got} of {} bytes)",
                        buf.len()
                    );
                    return Err(End::Broken);
                }
                Ok((n, truncated)) => {
                    if truncated {
                        log::warn!("client sent more file descriptors than we accept");
                        return Err(End::Broken);
                    }
                    got += n;
                }
                Err(e) => {
                    log::warn!("reading from client: {e}");
                    return Err(End::Broken);
                }
            }
        }
        Ok(true)
    }

    fn read_message(&mut self) -> Result<Message, End> {
        let mut fds = Vec::new();
        let mut hb = [0u8; HEADER_SIZE];
        if !self.read_full(&mut hb, &mut fds)? {
            return Err(End::Closed);
        }
        let hdr = Header::parse(&hb).map_err(|_| End::Broken)?;
        let size = hdr.size as usize;
        if size < HEADER_SIZE {
            log::warn!(
                "message {} (command {}) has size {} < header size: disconnecting",
                hdr.msg_id,
                hdr.command,
                hdr.size
            );
            self.send(&p::error_reply(&hdr, libc::EINVAL));
            return Err(End::Broken);
        }
        if size > p::MAX_MESSAGE_SIZE {
            log::warn!(
                "message {} (command {}) has size {} > {}: disconnecting",
                hdr.msg_id,
                hdr.command,
                hdr.size,
                p::MAX_MESSAGE_SIZE
            );
            self.send(&p::error_reply(&hdr, libc::E2BIG));
            return Err(End::Broken);
        }
        let mut payload = vec![0u8; size - HEADER_SIZE];
        if !payload.is_empty() && !self.read_full(&mut payload, &mut fds)? {
            log::warn!("client closed the socket after a message header");
            return Err(End::Broken);
        }
        Ok(Message { hdr, payload, fds })
    }

    fn send(&mut self, msg: &[u8]) -> bool {
        // Descriptors go with the reply they belong to, and only with it.
        let fds = std::mem::take(&mut self.reply_fds);
        let raw: Vec<i32> = fds.iter().map(|f| f.as_raw_fd()).collect();
        match sock::send_with_fds(&self.stream, msg, &raw) {
            Ok(()) => true,
            Err(e) => {
                log::warn!("writing to client: {e}");
                false
            }
        }
    }

    /// Handles one message; `Err` ends the connection.
    fn handle(&mut self, msg: Message) -> Result<(), End> {
        let hdr = msg.hdr;
        if !hdr.is_command() {
            log::warn!(
                "ignoring message {} (command {}) that is not a command (flags {:#x})",
                hdr.msg_id,
                hdr.command,
                hdr.flags
            );
            return Ok(());
        }
        self.reply_fds.clear();
        let result = self.dispatch(msg);
        if !matches!(result, Ok(Some(_))) || hdr.no_reply() {
            self.reply_fds.clear();
        }
        let out = match result {
            Ok(Some(payload)) => p::reply(&hdr, &payload),
            Ok(None) => return Ok(()),
            Err(Failure { errno, why, fatal }) => {
                log::warn!(
                    "message {} (command {}): {why} (errno {errno}){}",
                    hdr.msg_id,
                    hdr.command,
                    if fatal { ": disconnecting" } else { "" }
                );
                if hdr.no_reply() && !fatal {
                    return Ok(());
                }
                let sent = self.send(&p::error_reply(&hdr, errno));
                if fatal || !sent {
                    return Err(End::Broken);
                }
                return Ok(());
            }
        };
        if hdr.no_reply() {
            return Ok(());
        }
        if self.send(&out) {
            Ok(())
        } else {
            Err(End::Broken)
        }
    }

    /// Runs one command. `Ok(None)`: nothing to send back (posted write handled).
    fn dispatch(&mut self, msg: Message) -> Result<Option<Vec<u8>>, Failure> {
        let Message { hdr, payload, fds } = msg;
        let Some(cmd) = Command::from_u16(hdr.command) else {
            return Err(Failure::new(
                libc::ENOSYS,
                format!("unknown command {}", hdr.command),
            ));
        };
        let takes_fds = matches!(cmd, Command::DmaMap | Command::DeviceSetIrqs);
        if !takes_fds && !fds.is_empty() {
            return Err(Failure::new(
                libc::EINVAL,
                format!("{cmd:?} carries {} unexpected file descriptors", fds.len()),
            ));
        }
        if cmd != Command::Version && !self.negotiated {
            return Err(Failure::new(
                libc::EINVAL,
                format!("{cmd:?} before version negotiation"),
            ));
        }
        match cmd {
            Command::Version => self.version(&payload).map(Some),
            Command::DeviceGetInfo => self.device_info(&payload).map(Some),
            Command::DeviceGetRegionInfo => self.region_info(&payload).map(Some),
            Command::DeviceGetIrqInfo => self.irq_info(&payload).map(Some),
            Command::DeviceSetIrqs => self.set_irqs(&payload, fds).map(|_| Some(Vec::new())),
            Command::RegionRead => self.region_read(&payload).map(Some),
            Command::RegionWrite => self.region_write(&payload).map(Some),
            Command::RegionWriteMulti => self.write_multi(&payload).map(Some),
            Command::DmaMap => self.dma_map(&payload, fds).map(|_| Some(Vec::new())),
            Command::DmaUnmap => self.dma_unmap(&payload).map(Some),
            Command::DeviceReset => {
                if !payload.is_empty() {
                    return Err(Failure::new(libc::EINVAL, "DEVICE_RESET with a payload"));
                }
                log::info!("device reset");
                self.dev.reset();
                self.irqs.reset();
                Ok(Some(Vec::new()))
            }
            other => Err(Failure::new(
                libc::ENOTSUP,
                format!("unsupported command {other:?}"),
            )),
        }
    }

    fn version(&mut self, payload: &[u8]) -> Result<Vec<u8>, Failure> {
        if self.negotiated {
            return Err(Failure::new(libc::EINVAL, "version already negotiated"));
        }
        let v = p::Version::parse(payload)?;
        if v.major != p::MAJOR_VERSION {
            return Err(Failure::fatal(
                libc::ENOTSUP,
                format!("unsupported protocol major version {}", v.major),
            ));
        }
        let caps = p::parse_client_caps(&v.capabilities)?;
        log::info!(
            "client speaks vfio-user {}.{} (max_msg_fds {:?}, max_data_xfer_size {:?}, write_multiple {})",
            v.major,
            v.minor,
            caps.max_msg_fds,
            caps.max_data_xfer_size,
            caps.write_multiple
        );
        self.negotiated = true;
        self.dev.connect(self.dma.memory(), self.irqs.clone());
        Ok(p::Version {
            major: p::MAJOR_VERSION,
            // Our minor is 0, never above the client's.
            minor: p::MINOR_VERSION,
            capabilities: p::server_caps_json(caps.write_multiple),
        }
        .to_payload())
    }

    fn device_info(&mut self, payload: &[u8]) -> Result<Vec<u8>, Failure> {
        let req = p::DeviceInfo::parse(payload)?;
        check_argsz("DEVICE_GET_INFO", req.argsz, p::DeviceInfo::SIZE)?;
        Ok(p::DeviceInfo {
            argsz: p::DeviceInfo::SIZE as u32,
            flags: vb::VFIO_DEVICE_FLAGS_PCI | vb::VFIO_DEVICE_FLAGS_RESET,
            num_regions: NUM_REGIONS,
            num_irqs: msix::NUM_IRQ_INDEXES,
        }
        .to_payload())
    }

    fn region_info(&mut self, payload: &[u8]) -> Result<Vec<u8>, Failure> {
        let req = p::RegionInfo::parse(payload)?;
        check_argsz("GET_REGION_INFO", req.argsz, p::RegionInfo::SIZE)?;
        if req.index >= NUM_REGIONS {
            return Err(Failure::new(
                libc::EINVAL,
                format!("no region {}", req.index),
            ));
        }
        let size = self.dev.region_size(req.index);
        let flags = if size > 0 {
            vb::VFIO_REGION_INFO_FLAG_READ | vb::VFIO_REGION_INFO_FLAG_WRITE
        } else {
            0
        };
        let mut info = p::RegionInfo {
            argsz: p::RegionInfo::SIZE as u32,
            flags,
            index: req.index,
            cap_offset: 0,
            size,
            offset: 0,
        };
        let Some(mm) = self.dev.region_mmap(req.index).filter(|_| size > 0) else {
            return Ok(info.to_payload());
        };
        // Mappable in part: MMAP + a sparse mmap capability, and the file with the
        // reply (also with a reply too short for the capability: QEMU's client closes
        // it and asks again with the argsz we name).
        info.offset = mm.file_offset;
        self.reply_fds = vec![mm.file];
        Ok(p::region_info_sparse(&info, &mm.areas, req.argsz))
    }

    fn irq_info(&mut self, payload: &[u8]) -> Result<Vec<u8>, Failure> {
        let req = p::IrqInfo::parse(payload)?;
        check_argsz("GET_IRQ_INFO", req.argsz, p::IrqInfo::SIZE)?;
        if req.index >= msix::NUM_IRQ_INDEXES {
            return Err(Failure::new(
                libc::EINVAL,
                format!("no interrupt index {}", req.index),
            ));
        }
        let mut flags = vb::VFIO_IRQ_INFO_EVENTFD;
        if req.index == msix::INTX {
            flags |= vb::VFIO_IRQ_INFO_MASKABLE | vb::VFIO_IRQ_INFO_AUTOMASKED;
        }
        Ok(p::IrqInfo {
            argsz: p::IrqInfo::SIZE as u32,
            flags,
            index: req.index,
            count: self.irqs.count(req.index),
        }
        .to_payload())
    }

    fn set_irqs(&mut self, payload: &[u8], fds: Vec<OwnedFd>) -> Result<(), Failure> {
        let req = p::IrqSet::parse(payload)?;
        let data = req.flags & vb::VFIO_IRQ_SET_DATA_TYPE_MASK;
        let action = req.flags & vb::VFIO_IRQ_SET_ACTION_TYPE_MASK;
        let inval = |why: String| Err(Failure::new(libc::EINVAL, why));
        if req.flags & !(vb::VFIO_IRQ_SET_DATA_TYPE_MASK | vb::VFIO_IRQ_SET_ACTION_TYPE_MASK) != 0
            || data.count_ones() != 1
            || action.count_ones() != 1
        {
            return inval(format!("SET_IRQS flags {:#x} invalid", req.flags));
        }
        if req.index >= msix::NUM_IRQ_INDEXES {
            return inval(format!("SET_IRQS: no interrupt index {}", req.index));
        }
        if (req.argsz as usize) < p::IrqSet::SIZE {
            return inval(format!("SET_IRQS argsz {} too small", req.argsz));
        }
        // The range against the index's real vector count, before anything is sized by
        // the client's count.
        let vectors = self.irqs.count(req.index);
        if req.count != 0
            && req
                .start
                .checked_add(req.count)
                .is_none_or(|end| end > vectors)
        {
            return inval(format!(
                "SET_IRQS vectors {}+{} out of range for index {} ({vectors} vectors)",
                req.start, req.count, req.index
            ));
        }
        let bools = match data {
            vb::VFIO_IRQ_SET_DATA_BOOL => {
                if req.data.len() != req.count as usize {
                    return inval(format!(
                        "SET_IRQS DATA_BOOL count {} with {} bytes of data",
                        req.count,
                        req.data.len()
                    ));
                }
                Some(req.data.as_slice())
            }
            _ => {
                if !req.data.is_empty() {
                    return inval(format!(
                        "SET_IRQS carries {} unexpected data bytes",
                        req.data.len()
                    ));
                }
                None
            }
        };
        if data != vb::VFIO_IRQ_SET_DATA_EVENTFD && !fds.is_empty() {
            return inval(format!(
                "SET_IRQS without DATA_EVENTFD carries {} file descriptors",
                fds.len()
            ));
        }
        let irq_err = |e: msix::IrqError| Failure::new(libc::EINVAL, e.0);
        match (action, data) {
            (vb::VFIO_IRQ_SET_ACTION_TRIGGER, vb::VFIO_IRQ_SET_DATA_EVENTFD) => {
                if req.count == 0 {
                    if !fds.is_empty() {
                        return inval("SET_IRQS count 0 with file descriptors".into());
                    }
                    self.irqs.disable(req.index);
                    return Ok(());
                }
                let fds: Vec<Option<OwnedFd>> = if fds.is_empty() {
                    // De-assign (QEMU sends -1 descriptors as "no descriptors").
                    (0..req.count).map(|_| None).collect()
                } else if fds.len() == req.count as usize {
                    fds.into_iter().map(Some).collect()
                } else {
                    return inval(format!(
                        "SET_IRQS count {} but {} file descriptors",
                        req.count,
                        fds.len()
                    ));
                };
                self.irqs
                    .set_trigger_fds(req.index, req.start, fds)
                    .map_err(irq_err)
            }
            (vb::VFIO_IRQ_SET_ACTION_TRIGGER, _) => {
                if req.count == 0 && data == vb::VFIO_IRQ_SET_DATA_NONE {
                    self.irqs.disable(req.index);
                    return Ok(());
                }
                self.irqs
                    .trigger(req.index, req.start, req.count, bools)
                    .map_err(irq_err)
            }
            (_, vb::VFIO_IRQ_SET_DATA_EVENTFD) => Err(Failure::new(
                libc::ENOTSUP,
                "SET_IRQS mask/unmask eventfds are not supported",
            )),
            (a, _) => {
                let masked = a == vb::VFIO_IRQ_SET_ACTION_MASK;
                self.irqs
                    .set_masked(req.index, req.start, req.count, bools, masked)
                    .map_err(irq_err)
            }
        }
    }

    fn check_region(&self, region: u32, offset: u64, count: u64) -> Result<(), Failure> {
        if region >= NUM_REGIONS {
            return Err(Failure::new(libc::EINVAL, format!("no region {region}")));
        }
        let size = self.dev.region_size(region);
        match offset.checked_add(count) {
            Some(end) if end <= size => Ok(()),
            _ => Err(Failure::new(
                libc::EINVAL,
                format!("access {offset:#x}+{count:#x} outside region {region} (size {size:#x})"),
            )),
        }
    }

    fn region_read(&mut self, payload: &[u8]) -> Result<Vec<u8>, Failure> {
        let mut req = p::RegionAccess::parse_read(payload)?;
        self.check_region(req.region, req.offset, req.count as u64)?;
        req.data = vec![0u8; req.count as usize];
        self.dev.region_read(req.region, req.offset, &mut req.data);
        Ok(req.to_payload())
    }

    fn region_write(&mut self, payload: &[u8]) -> Result<Vec<u8>, Failure> {
        let mut req = p::RegionAccess::parse_write(payload)?;
        self.check_region(req.region, req.offset, req.count as u64)?;
        self.dev.region_write(req.region, req.offset, &req.data);
        req.data.clear();
        Ok(req.to_payload())
    }

    fn write_multi(&mut self, payload: &[u8]) -> Result<Vec<u8>, Failure> {
        let writes = p::parse_write_multi(payload)?;
        for w in &writes {
            if let Err(f) = self.check_region(w.region, w.offset, w.count as u64) {
                log::warn!("REGION_WRITE_MULTI entry skipped: {}", f.why);
                continue;
            }
            self.dev.region_write(w.region, w.offset, w.bytes());
        }
        let mut out = p::Writer::new();
        out.u64(writes.len() as u64);
        Ok(out.into_vec())
    }

    fn dma_map(&mut self, payload: &[u8], mut fds: Vec<OwnedFd>) -> Result<(), Failure> {
        let req = p::DmaMap::parse(payload)?;
        if fds.len() > 1 {
            return Err(Failure::new(
                libc::EINVAL,
                format!("DMA_MAP with {} file descriptors", fds.len()),
            ));
        }
        let fd = fds.pop();
        self.dma
            .map(&req, fd)
            .map_err(|e| Failure::new(e.errno(), e.to_string()))?;
        log::debug!(
            "DMA map {:#x}+{:#x} offset {:#x} flags {:#x}",
            req.addr,
            req.size,
            req.offset,
            req.flags
        );
        Ok(())
    }

    fn dma_unmap(&mut self, payload: &[u8]) -> Result<Vec<u8>, Failure> {
        let req = p::DmaUnmap::parse(payload)?;
        if req.flags & p::DMA_UNMAP_FLAG_GET_DIRTY_BITMAP != 0 {
            return Err(Failure::new(
                libc::ENOTSUP,
                "DMA_UNMAP dirty bitmaps are not supported",
            ));
        }
        if req.flags & !p::DMA_UNMAP_FLAG_ALL != 0 {
            return Err(Failure::new(
                libc::EINVAL,
                format!("DMA_UNMAP flags {:#x} invalid", req.flags),
            ));
        }
        if req.flags & p::DMA_UNMAP_FLAG_ALL != 0 {
            log::debug!("DMA unmap all");
            self.dma.unmap_all();
        } else {
            self.dma
                .unmap(req.addr, req.size)
                .map_err(|e| Failure::new(e.errno(), e.to_string()))?;
            log::debug!("DMA unmap {:#x}+{:#x}", req.addr, req.size);
        }
        Ok(req.to_payload())
    }

    /// Drops everything the client gave us and tells the device.
    fn close(&mut self) {
        if self.negotiated {
            self.dev.disconnect();
        }
        self.dma.unmap_all();
        self.irqs.clear();
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}

/// A reply structure must fit in the `argsz` the client allows.
fn check_argsz(what: &str, argsz: u32, need: usize) -> Result<(), Failure> {
    if (argsz as usize) < need {
        return Err(Failure::new(
            libc::EINVAL,
            format!("{what} argsz {argsz} too small (need {need})"),
        ));
    }
    Ok(())
}

/// A failed command: the errno to reply with, why (for the log), and whether the
/// connection must end.
struct Failure {
    errno: i32,
    why: String,
    fatal: bool,
}

impl Failure {
    fn new(errno: i32, why: impl Into<String>) -> Failure {
        Failure {
            errno,
            why: why.into(),
            fatal: false,
        }
    }

    fn fatal(errno: i32, why: impl Into<String>) -> Failure {
        Failure {
            errno,
            why: why.into(),
            fatal: true,
        }
    }
}

impl From<ParseError> for Failure {
    fn from(e: ParseError) -> Failure {
        Failure::new(e.errno(), e.to_string())
    }
}
