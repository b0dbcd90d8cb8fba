//! vfio-user wire format: the message header, the payload of every command we serve,
//! parsing with bounds checks and reply building.
//!
//! The protocol is QEMU's `docs/interop/vfio-user.rst` (version 0.0). All fields are in
//! host byte order. Nothing here does I/O; `server.rs` owns the socket.

use std::fmt;

/// Size of the common message header.
pub const HEADER_SIZE: usize = 16;

/// Protocol version we speak.
pub const MAJOR_VERSION: u16 = 0;
pub const MINOR_VERSION: u16 = 0;

/// Capabilities we announce.
pub const MAX_MSG_FDS: usize = 16;
pub const MAX_DATA_XFER_SIZE: usize = 1 << 20;
pub const PGSIZES: u64 = 4096;
/// DMA maps one client may hold. Every map change publishes a new guest-memory snapshot
/// (a copy of the region list), so a client could make the n-th map cost O(n): 65535 maps
/// took minutes. QEMU maps a handful (one per RAM section); 4096 is far beyond that.
pub const MAX_DMA_MAPS: u32 = 4096;

/// Largest message we accept: a region write of `MAX_DATA_XFER_SIZE` bytes, a version
/// message with a long capability string, or a set-irqs with a bool array all fit.
pub const MAX_MESSAGE_SIZE: usize = MAX_DATA_XFER_SIZE + 4096;

/// Flag bits of the header.
pub const FLAG_TYPE_MASK: u32 = 0xf;
pub const FLAG_TYPE_COMMAND: u32 = 0x0;
pub const FLAG_TYPE_REPLY: u32 = 0x1;
pub const FLAG_NO_REPLY: u32 = 0x10;
pub const FLAG_ERROR: u32 = 0x20;

/// `VFIO_USER_DMA_UNMAP` flag: unmap everything (QEMU uses bit 1, as the kernel's
/// `VFIO_DMA_UNMAP_FLAG_ALL`).
pub const DMA_UNMAP_FLAG_GET_DIRTY_BITMAP: u32 = 1 << 0;
pub const DMA_UNMAP_FLAG_ALL: u32 = 1 << 1;
/// `VFIO_USER_DMA_MAP` flags.
pub const DMA_MAP_FLAG_READ: u32 = 1 << 0;
pub const DMA_MAP_FLAG_WRITE: u32 = 1 << 1;

/// Command numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum Command {
    Version = 1,
    DmaMap = 2,
    DmaUnmap = 3,
    DeviceGetInfo = 4,
    DeviceGetRegionInfo = 5,
    DeviceGetRegionIoFds = 6,
    DeviceGetIrqInfo = 7,
    DeviceSetIrqs = 8,
    RegionRead = 9,
    RegionWrite = 10,
    DmaRead = 11,
    DmaWrite = 12,
    DeviceReset = 13,
    DirtyPages = 14,
    RegionWriteMulti = 15,
    DeviceFeature = 16,
    MigDataRead = 17,
    MigDataWrite = 18,
}

impl Command {
    pub fn from_u16(v: u16) -> Option<Command> {
        use Command::*;
        Some(match v {
            1 => Version,
            2 => DmaMap,
            3 => DmaUnmap,
            4 => DeviceGetInfo,
            5 => DeviceGetRegionInfo,
            6 => DeviceGetRegionIoFds,
            7 => DeviceGetIrqInfo,
            8 => DeviceSetIrqs,
            9 => RegionRead,
            10 => RegionWrite,
            11 => DmaRead,
            12 => DmaWrite,
            13 => DeviceReset,
            14 => DirtyPages,
            15 => RegionWriteMulti,
            16 => DeviceFeature,
            17 => MigDataRead,
            18 => MigDataWrite,
            _ => return None,
        })
    }
}

/// The 16-byte header in front of every message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Header {
    pub msg_id: u16,
    pub command: u16,
    /// Size of the whole message, header included.
    pub size: u32,
    pub flags: u32,
    pub error: u32,
}

impl Header {
    pub fn parse(buf: &[u8]) -> Result<Header, ParseError> {
        let mut r = Reader::new(buf);
        Ok(Header {
            msg_id: r.u16()?,
            command: r.u16()?,
            size: r.u32()?,
            flags: r.u32()?,
            error: r.u32()?,
        })
    }

    pub fn to_bytes(&self) -> [u8; HEADER_SIZE] {
        let mut b = [0u8; HEADER_SIZE];
        b[0..2].copy_from_slice(&self.msg_id.to_ne_bytes());
        b[2..4].copy_from_slice(&self.command.to_ne_bytes());
        b[4..8].copy_from_slice(&self.size.to_ne_bytes());
        b[8..12].copy_from_slice(&self.flags.to_ne_bytes());
        b[12..16].copy_from_slice(&self.error.to_ne_bytes());
        b
    }

    pub fn is_command(&self) -> bool {
        self.flags & FLAG_TYPE_MASK == FLAG_TYPE_COMMAND
    }

    pub fn no_reply(&self) -> bool {
        self.flags & FLAG_NO_REPLY != 0
    }
}

/// Why a payload could not be parsed. Every variant maps to an errno for the reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// The payload is shorter than the fixed part of the message.
    Short { need: usize, have: usize },
    /// A length field disagrees with the message size.
    BadLength(String),
    /// A field has a value we do not accept.
    Invalid(String),
}

impl ParseError {
    pub fn errno(&self) -> i32 {
        libc::EINVAL
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Short { need, have } => {
                write!(f, "payload too short: need {need} bytes, have {have}")
            }
            ParseError::BadLength(s) => write!(f, "bad length: {s}"),
            ParseError::Invalid(s) => write!(f, "invalid: {s}"),
        }
    }
}

/// A bounds-checked little reader over a payload.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], ParseError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or(ParseError::Short {
                need: self.pos.saturating_add(n),
                have: self.buf.len(),
            })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], ParseError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.bytes(N)?);
        Ok(a)
    }

    pub fn u16(&mut self) -> Result<u16, ParseError> {
        Ok(u16::from_ne_bytes(self.array()?))
    }

    pub fn u32(&mut self) -> Result<u32, ParseError> {
        Ok(u32::from_ne_bytes(self.array()?))
    }

    pub fn u64(&mut self) -> Result<u64, ParseError> {
        Ok(u64::from_ne_bytes(self.array()?))
    }

    pub fn rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.pos..];
        self.pos = self.buf.len();
        s
    }
}

/// A little writer for replies (and for the test client's requests).
#[derive(Default)]
pub struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    pub fn new() -> Self {
        Writer::default()
    }
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.buf.extend_from_slice(&v.to_ne_bytes());
        self
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_ne_bytes());
        self
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_ne_bytes());
        self
    }
    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(v);
        self
    }
    pub fn into_vec(self) -> Vec<u8> {
        self.buf
    }
}

/// `VFIO_USER_VERSION` request and reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub major: u16,
    pub minor: u16,
    /// The JSON capability string, without its terminating NUL (empty if absent).
    pub capabilities: String,
}

impl Version {
    pub fn parse(payload: &[u8]) -> Result<Version, ParseError> {
        let mut r = Reader::new(payload);
        let major = r.u16()?;
        let minor = r.u16()?;
        let rest = r.rest();
        // The JSON is NUL-terminated; tolerate a missing terminator.
        let json = match rest.iter().position(|&b| b == 0) {
            Some(n) => &rest[..n],
            None => rest,
        };
        let capabilities = std::str::from_utf8(json)
            .map_err(|_| ParseError::Invalid("version capabilities are not UTF-8".into()))?
            .to_string();
        Ok(Version {
            major,
            minor,
            capabilities,
        })
    }

    pub fn to_payload(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u16(self.major).u16(self.minor);
        if !self.capabilities.is_empty() {
            w.bytes(self.capabilities.as_bytes()).bytes(&[0]);
        }
        w.into_vec()
    }
}

/// Capabilities found in a client's `VFIO_USER_VERSION` JSON.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientCaps {
    pub max_msg_fds: Option<u64>,
    pub max_data_xfer_size: Option<u64>,
    pub write_multiple: bool,
}

/// Parses the client's capability JSON. An empty string means "no capabilities".
pub fn parse_client_caps(json: &str) -> Result<ClientCaps, ParseError> {
    if json.trim().is_empty() {
        return Ok(ClientCaps::default());
    }
    let v: serde_json::Value = serde_json::from_str(json)
        .map_err(|e| ParseError::Invalid(format!("version capabilities: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| ParseError::Invalid("version capabilities: not an object".into()))?;
    let mut caps = ClientCaps::default();
    if let Some(c) = obj.get("capabilities") {
        let c = c.as_object().ok_or_else(|| {
            ParseError::Invalid("version capabilities: \"capabilities\" is not an object".into())
        })?;
        caps.max_msg_fds = c.get("max_msg_fds").and_then(|v| v.as_u64());
        caps.max_data_xfer_size = c.get("max_data_xfer_size").and_then(|v| v.as_u64());
        caps.write_multiple = c
            .get("write_multiple")
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
    }
    Ok(caps)
}

/// The capability JSON of our reply. `write_multiple` is echoed only if the client offered it.
pub fn server_caps_json(write_multiple: bool) -> String {
    let mut caps = serde_json::Map::new();
    caps.insert("max_msg_fds".into(), MAX_MSG_FDS.into());
    caps.insert("max_data_xfer_size".into(), MAX_DATA_XFER_SIZE.into());
    caps.insert("pgsizes".into(), PGSIZES.into());
    caps.insert("max_dma_maps".into(), MAX_DMA_MAPS.into());
    if write_multiple {
        caps.insert("write_multiple".into(), true.into());
    }
    let mut top = serde_json::Map::new();
    top.insert("capabilities".into(), serde_json::Value::Object(caps));
    serde_json::Value::Object(top).to_string()
}

/// `VFIO_USER_DMA_MAP` request (32 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DmaMap {
    pub argsz: u32,
    pub flags: u32,
    pub offset: u64,
    pub addr: u64,
    pub size: u64,
}

impl DmaMap {
    pub const SIZE: usize = 32;

    pub fn parse(payload: &[u8]) -> Result<DmaMap, ParseError> {
        let mut r = Reader::new(payload);
        let m = DmaMap {
            argsz: r.u32()?,
            flags: r.u32()?,
            offset: r.u64()?,
            addr: r.u64()?,
            size: r.u64()?,
        };
        if payload.len() != Self::SIZE {
            return Err(ParseError::BadLength(format!(
                "DMA_MAP payload is {} bytes, expected {}",
                payload.len(),
                Self::SIZE
            )));
        }
        Ok(m)
    }

    pub fn to_payload(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u32(self.argsz)
            .u32(self.flags)
            .u64(self.offset)
            .u64(self.addr)
            .u64(self.size);
        w.into_vec()
    }
}

/// `VFIO_USER_DMA_UNMAP` request and reply (24 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DmaUnmap {
    pub argsz: u32,
    pub flags: u32,
    pub addr: u64,
    pub size: u64,
}

impl DmaUnmap {
    pub const SIZE: usize = 24;

    pub fn parse(payload: &[u8]) -> Result<DmaUnmap, ParseError> {
        let mut r = Reader::new(payload);
        let m = DmaUnmap {
            argsz: r.u32()?,
            flags: r.u32()?,
            addr: r.u64()?,
            size: r.u64()?,
        };
        if m.flags & DMA_UNMAP_FLAG_GET_DIRTY_BITMAP == 0 && payload.len() != Self::SIZE {
            return Err(ParseError::BadLength(format!(
                "DMA_UNMAP payload is {} bytes, expected {}",
                payload.len(),
                Self::SIZE
            )));
        }
        Ok(m)
    }

    pub fn to_payload(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u32(self.argsz)
            .u32(self.flags)
            .u64(self.addr)
            .u64(self.size);
        w.into_vec()
    }
}

/// `VFIO_USER_DEVICE_GET_INFO` reply (16 bytes); the request carries the same layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceInfo {
    pub argsz: u32,
    pub flags: u32,
    pub num_regions: u32,
    pub num_irqs: u32,
}

impl DeviceInfo {
    pub const SIZE: usize = 16;

    pub fn parse(payload: &[u8]) -> Result<DeviceInfo, ParseError> {
        let mut r = Reader::new(payload);
        Ok(DeviceInfo {
            argsz: r.u32()?,
            flags: r.u32()?,
            num_regions: r.u32()?,
            num_irqs: r.u32()?,
        })
    }

    pub fn to_payload(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u32(self.argsz)
            .u32(self.flags)
            .u32(self.num_regions)
            .u32(self.num_irqs);
        w.into_vec()
    }
}

/// `VFIO_USER_DEVICE_GET_REGION_INFO` request and reply (32 bytes, no capabilities).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegionInfo {
    pub argsz: u32,
    pub flags: u32,
    pub index: u32,
    pub cap_offset: u32,
    pub size: u64,
    pub offset: u64,
}

impl RegionInfo {
    pub const SIZE: usize = 32;

    /// The request a client sends for region `index`, with room for `argsz` bytes of
    /// reply (every other field zero).
    pub fn request(index: u32, argsz: u32) -> RegionInfo {
        RegionInfo {
            argsz,
            flags: 0,
            index,
            cap_offset: 0,
            size: 0,
            offset: 0,
        }
    }

    pub fn parse(payload: &[u8]) -> Result<RegionInfo, ParseError> {
        let mut r = Reader::new(payload);
        Ok(RegionInfo {
            argsz: r.u32()?,
            flags: r.u32()?,
            index: r.u32()?,
            cap_offset: r.u32()?,
            size: r.u64()?,
            offset: r.u64()?,
        })
    }

    pub fn to_payload(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u32(self.argsz)
            .u32(self.flags)
            .u32(self.index)
            .u32(self.cap_offset)
            .u64(self.size)
            .u64(self.offset);
        w.into_vec()
    }
}

/// A part of a region the client may mmap (`struct vfio_region_sparse_mmap_area`):
/// region offset and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SparseArea {
    pub offset: u64,
    pub size: u64,
}

/// `VFIO_REGION_INFO_CAP_SPARSE_MMAP` (id 1), version 1.
pub const CAP_SPARSE_MMAP: u16 = 1;
const CAP_SPARSE_MMAP_VERSION: u16 = 1;
/// Most sparse areas a reply may list that we accept (a client-side bound).
pub const MAX_SPARSE_AREAS: usize = 64;
/// Most capabilities we walk in one region info reply (a client-side bound).
const MAX_CAPS: usize = 16;

/// Bytes of a sparse mmap capability with `n` areas: header (8), nr_areas and
/// reserved (8), 16 per area.
pub fn sparse_cap_size(n: usize) -> usize {
    16 + 16 * n
}

/// A `VFIO_USER_DEVICE_GET_REGION_INFO` reply with one sparse mmap capability listing
/// `areas`, for a client that allows `argsz` bytes: the whole reply (flags MMAP and
/// CAPS) if it fits, else only the fixed part with `argsz` = the size needed, MMAP but
/// not CAPS and `cap_offset` 0, and the client asks again. (The kernel's VFIO sets CAPS
/// in the short reply too; QEMU's vfio-user client refuses CAPS with a `cap_offset`
/// outside the reply, so the short reply leaves it out, as libvfio-user does.)
pub fn region_info_sparse(info: &RegionInfo, areas: &[SparseArea], argsz: u32) -> Vec<u8> {
    use vfio_bindings::bindings::vfio as vb;
    let need = RegionInfo::SIZE + sparse_cap_size(areas.len());
    let mut head = RegionInfo {
        argsz: need as u32,
        flags: info.flags | vb::VFIO_REGION_INFO_FLAG_MMAP,
        cap_offset: 0,
        ..*info
    };
    if (argsz as usize) < need {
        return head.to_payload();
    }
    head.flags |= vb::VFIO_REGION_INFO_FLAG_CAPS;
    head.cap_offset = RegionInfo::SIZE as u32;
    let mut out = head.to_payload();
    let mut w = Writer::new();
    w.u16(CAP_SPARSE_MMAP)
        .u16(CAP_SPARSE_MMAP_VERSION)
        .u32(0)
        .u32(areas.len() as u32)
        .u32(0);
    for a in areas {
        w.u64(a.offset).u64(a.size);
    }
    out.extend_from_slice(&w.into_vec());
    out
}

/// The sparse mmap areas in a region info reply (`payload` is the whole reply: the
/// fixed part and its capabilities). `None` if there is no such capability. The chain
/// is walked with bounds: at most 16 capabilities, each inside the payload and after the
/// previous one; at most [`MAX_SPARSE_AREAS`] areas.
pub fn parse_sparse_areas(payload: &[u8]) -> Result<Option<Vec<SparseArea>>, ParseError> {
    let info = RegionInfo::parse(payload)?;
    let mut off = info.cap_offset as usize;
    if off == 0 {
        return Ok(None);
    }
    for _ in 0..MAX_CAPS {
        if off < RegionInfo::SIZE || off >= payload.len() {
            return Err(ParseError::Invalid(format!(
                "capability at {off} outside the {}-byte reply",
                payload.len()
            )));
        }
        let mut r = Reader::new(&payload[off..]);
        let id = r.u16()?;
        let _version = r.u16()?;
        let next = r.u32()? as usize;
        if id == CAP_SPARSE_MMAP {
            let n = r.u32()? as usize;
            let _reserved = r.u32()?;
            if n > MAX_SPARSE_AREAS {
                return Err(ParseError::Invalid(format!("{n} sparse mmap areas")));
            }
            let mut areas = Vec::with_capacity(n);
            for _ in 0..n {
                areas.push(SparseArea {
                    offset: r.u64()?,
                    size: r.u64()?,
                });
            }
            return Ok(Some(areas));
        }
        if next == 0 {
            return Ok(None);
        }
        if next <= off {
            return Err(ParseError::Invalid(format!(
                "capability chain goes back from {off} to {next}"
            )));
        }
        off = next;
    }
    Err(ParseError::Invalid("more than 16 capabilities".into()))
}

/// `VFIO_USER_DEVICE_GET_IRQ_INFO` request and reply (16 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IrqInfo {
    pub argsz: u32,
    pub flags: u32,
    pub index: u32,
    pub count: u32,
}

impl IrqInfo {
    pub const SIZE: usize = 16;

    pub fn parse(payload: &[u8]) -> Result<IrqInfo, ParseError> {
        let mut r = Reader::new(payload);
        Ok(IrqInfo {
            argsz: r.u32()?,
            flags: r.u32()?,
            index: r.u32()?,
            count: r.u32()?,
        })
    }

    pub fn to_payload(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u32(self.argsz)
            .u32(self.flags)
            .u32(self.index)
            .u32(self.count);
        w.into_vec()
    }
}

/// `VFIO_USER_DEVICE_SET_IRQS` request (20 bytes + optional bool array).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IrqSet {
    pub argsz: u32,
    pub flags: u32,
    pub index: u32,
    pub start: u32,
    pub count: u32,
    /// The bool array of `VFIO_IRQ_SET_DATA_BOOL`, empty otherwise.
    pub data: Vec<u8>,
}

impl IrqSet {
    pub const SIZE: usize = 20;

    pub fn parse(payload: &[u8]) -> Result<IrqSet, ParseError> {
        let mut r = Reader::new(payload);
        Ok(IrqSet {
            argsz: r.u32()?,
            flags: r.u32()?,
            index: r.u32()?,
            start: r.u32()?,
            count: r.u32()?,
            data: r.rest().to_vec(),
        })
    }

    pub fn to_payload(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u32(self.argsz)
            .u32(self.flags)
            .u32(self.index)
            .u32(self.start)
            .u32(self.count)
            .bytes(&self.data);
        w.into_vec()
    }
}

/// `VFIO_USER_REGION_READ` / `VFIO_USER_REGION_WRITE` (16 bytes + data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionAccess {
    pub offset: u64,
    pub region: u32,
    pub count: u32,
    pub data: Vec<u8>,
}

impl RegionAccess {
    pub const SIZE: usize = 16;

    /// A read request carries no data.
    pub fn parse_read(payload: &[u8]) -> Result<RegionAccess, ParseError> {
        let mut r = Reader::new(payload);
        let a = RegionAccess {
            offset: r.u64()?,
            region: r.u32()?,
            count: r.u32()?,
            data: Vec::new(),
        };
        if payload.len() != Self::SIZE {
            return Err(ParseError::BadLength(format!(
                "REGION_READ payload is {} bytes, expected {}",
                payload.len(),
                Self::SIZE
            )));
        }
        a.check_count()?;
        Ok(a)
    }

    /// A write request carries exactly `count` bytes of data.
    pub fn parse_write(payload: &[u8]) -> Result<RegionAccess, ParseError> {
        let mut r = Reader::new(payload);
        let offset = r.u64()?;
        let region = r.u32()?;
        let count = r.u32()?;
        let data = r.rest();
        if data.len() != count as usize {
            return Err(ParseError::BadLength(format!(
                "REGION_WRITE count {count} but {} data bytes",
                data.len()
            )));
        }
        let a = RegionAccess {
            offset,
            region,
            count,
            data: data.to_vec(),
        };
        a.check_count()?;
        Ok(a)
    }

    fn check_count(&self) -> Result<(), ParseError> {
        if self.count as usize > MAX_DATA_XFER_SIZE {
            return Err(ParseError::Invalid(format!(
                "count {} exceeds max_data_xfer_size",
                self.count
            )));
        }
        Ok(())
    }

    pub fn to_payload(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u64(self.offset)
            .u32(self.region)
            .u32(self.count)
            .bytes(&self.data);
        w.into_vec()
    }
}

/// One write of `VFIO_USER_REGION_WRITE_MULTI` (24 bytes, at most 8 data bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteOne {
    pub offset: u64,
    pub region: u32,
    pub count: u32,
    pub data: [u8; 8],
}

impl WriteOne {
    pub const SIZE: usize = 24;

    pub fn bytes(&self) -> &[u8] {
        &self.data[..(self.count as usize).min(8)]
    }
}

/// `VFIO_USER_REGION_WRITE_MULTI` request: a count and an array of small writes.
pub fn parse_write_multi(payload: &[u8]) -> Result<Vec<WriteOne>, ParseError> {
    let mut r = Reader::new(payload);
    let n = r.u64()?;
    let need = (n as u128) * WriteOne::SIZE as u128 + 8;
    if need != payload.len() as u128 {
        return Err(ParseError::BadLength(format!(
            "REGION_WRITE_MULTI wr_cnt {n} needs {need} bytes, payload is {}",
            payload.len()
        )));
    }
    let mut out = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let offset = r.u64()?;
        let region = r.u32()?;
        let count = r.u32()?;
        let mut data = [0u8; 8];
        data.copy_from_slice(r.bytes(8)?);
        if count == 0 || count > 8 {
            return Err(ParseError::Invalid(format!(
                "REGION_WRITE_MULTI entry count {count} not in 1..=8"
            )));
        }
        out.push(WriteOne {
            offset,
            region,
            count,
            data,
        });
    }
    Ok(out)
}

/// Builds a whole message (header + payload).
pub fn build_message(msg_id: u16, command: u16, flags: u32, error: u32, payload: &[u8]) -> Vec<u8> {
    let size = (HEADER_SIZE + payload.len()) as u32;
    let hdr = Header {
        msg_id,
        command,
        size,
        flags,
        error,
    };
    let mut v = Vec::with_capacity(size as usize);
    v.extend_from_slice(&hdr.to_bytes());
    v.extend_from_slice(payload);
    v
}

/// A success reply to `req` carrying `payload`.
pub fn reply(req: &Header, payload: &[u8]) -> Vec<u8> {
    build_message(req.msg_id, req.command, FLAG_TYPE_REPLY, 0, payload)
}

/// An error reply to `req`: header only, error bit set, `errno` in the error field.
pub fn error_reply(req: &Header, errno: i32) -> Vec<u8> {
    build_message(
        req.msg_id,
        req.command,
        FLAG_TYPE_REPLY | FLAG_ERROR,
        errno as u32,
        &[],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        let h = Header {
            msg_id: 7,
            command: 9,
            size: 32,
            flags: FLAG_NO_REPLY,
            error: 0,
        };
        assert_eq!(Header::parse(&h.to_bytes()).unwrap(), h);
        assert!(Header::parse(&[0u8; 15]).is_err());
    }

    #[test]
    fn short_payloads_are_rejected() {
        assert!(DmaMap::parse(&[0u8; 31]).is_err());
        assert!(DmaMap::parse(&[0u8; 33]).is_err());
        assert!(DmaUnmap::parse(&[0u8; 23]).is_err());
        assert!(RegionInfo::parse(&[0u8; 8]).is_err());
        assert!(IrqSet::parse(&[0u8; 19]).is_err());
        assert!(RegionAccess::parse_read(&[0u8; 15]).is_err());
    }

    #[test]
    fn region_write_count_must_match() {
        let mut p = RegionAccess {
            offset: 0,
            region: 0,
            count: 4,
            data: vec![1, 2, 3, 4],
        }
        .to_payload();
        assert!(RegionAccess::parse_write(&p).is_ok());
        p.pop();
        assert!(RegionAccess::parse_write(&p).is_err());
    }

    #[test]
    fn write_multi_parses() {
        let mut w = Writer::new();
        w.u64(2);
        for i in 0..2u64 {
            w.u64(0x1000 + i * 4).u32(0).u32(4).bytes(&[i as u8; 8]);
        }
        let v = parse_write_multi(&w.buf).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[1].offset, 0x1004);
        assert_eq!(v[1].bytes(), &[1, 1, 1, 1]);
        assert!(parse_write_multi(&w.buf[..w.buf.len() - 1]).is_err());
        // A huge count must not allocate or overflow.
        let mut w = Writer::new();
        w.u64(u64::MAX);
        assert!(parse_write_multi(&w.buf).is_err());
    }

    #[test]
    fn caps_json() {
        let c = parse_client_caps(
            r#"{"capabilities":{"max_msg_fds":16,"max_data_xfer_size":1048576,"write_multiple":true,"migration":{"pgsize":4096}}}"#,
        )
        .unwrap();
        assert_eq!(c.max_msg_fds, Some(16));
        assert!(c.write_multiple);
        assert!(parse_client_caps("[1]").is_err());
        assert!(parse_client_caps("{").is_err());
        let s = server_caps_json(true);
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["capabilities"]["max_msg_fds"], 16);
        assert_eq!(v["capabilities"]["pgsizes"], 4096);
        assert!(v["capabilities"].get("migration").is_none());
    }

    #[test]
    fn sparse_mmap_capability_round_trip_and_short_argsz() {
        use vfio_bindings::bindings::vfio as vb;
        let info = RegionInfo {
            argsz: 0,
            flags: vb::VFIO_REGION_INFO_FLAG_READ | vb::VFIO_REGION_INFO_FLAG_WRITE,
            index: 0,
            cap_offset: 0,
            size: 0x4000,
            offset: 0,
        };
        let areas = [SparseArea {
            offset: 0x1000,
            size: 0x3000,
        }];
        let full = region_info_sparse(&info, &areas, 64);
        assert_eq!(full.len(), 64);
        let h = RegionInfo::parse(&full).unwrap();
        assert_eq!((h.argsz, h.cap_offset, h.size), (64, 32, 0x4000));
        assert_eq!(
            h.flags & vb::VFIO_REGION_INFO_FLAG_MMAP,
            vb::VFIO_REGION_INFO_FLAG_MMAP
        );
        assert_eq!(
            h.flags & vb::VFIO_REGION_INFO_FLAG_CAPS,
            vb::VFIO_REGION_INFO_FLAG_CAPS
        );
        // The capability as <linux/vfio.h> lays it out: id 1, version 1, next 0.
        assert_eq!(&full[32..40], &[1, 0, 1, 0, 0, 0, 0, 0]);
        assert_eq!(parse_sparse_areas(&full).unwrap(), Some(areas.to_vec()));
        // A client allowing only the fixed part learns the size it needs.
        let short = region_info_sparse(&info, &areas, 32);
        assert_eq!(short.len(), 32);
        let h = RegionInfo::parse(&short).unwrap();
        assert_eq!((h.argsz, h.cap_offset), (64, 0));
        assert_eq!(
            h.flags & vb::VFIO_REGION_INFO_FLAG_MMAP,
            vb::VFIO_REGION_INFO_FLAG_MMAP
        );
        assert_eq!(
            h.flags & vb::VFIO_REGION_INFO_FLAG_CAPS,
            0,
            "QEMU refuses CAPS at 0"
        );
        assert_eq!(parse_sparse_areas(&short).unwrap(), None);
    }

    #[test]
    fn hostile_capability_chains_are_refused_not_followed() {
        let info = RegionInfo {
            argsz: 64,
            flags: 0,
            index: 0,
            cap_offset: 32,
            size: 0x4000,
            offset: 0,
        };
        let with_cap = |cap: &[u8]| {
            let mut b = info.to_payload();
            b.extend_from_slice(cap);
            b
        };
        // Another capability (id 2) whose next points back at itself: a loop.
        let looped = with_cap(&[2, 0, 1, 0, 32, 0, 0, 0]);
        assert!(parse_sparse_areas(&looped).is_err());
        // Pointing past the reply.
        let mut far = info;
        far.cap_offset = 4096;
        assert!(parse_sparse_areas(&far.to_payload()).is_err());
        // Too many areas, or areas cut short.
        let many = with_cap(&[1, 0, 1, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0, 0, 0]);
        assert!(parse_sparse_areas(&many).is_err());
        let cut = with_cap(&[1, 0, 1, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3]);
        assert!(parse_sparse_areas(&cut).is_err());
        // A chain that ends without a sparse capability.
        let other = with_cap(&[2, 0, 1, 0, 0, 0, 0, 0]);
        assert_eq!(parse_sparse_areas(&other).unwrap(), None);
    }
}
