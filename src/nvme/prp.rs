//! Data pointers: PRP1/PRP2 and PRP lists (chained across pages, with offsets) and SGLs
//! (data block, segment and last segment descriptors), walked into a list of guest
//! address ranges, then resolved against the current DMA maps into guest-memory slices.
//!
//! Resolution happens completely before any byte moves: a transfer that touches memory
//! outside the maps fails with Data Transfer Error and nothing is read or written.

use vm_memory::{
    Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion, VolatileSlice,
};

use super::spec::{sgl, status, Sqe, Status, PAGE_SIZE};

/// One snapshot of guest memory (as loaded from the transport's `GuestMemoryAtomic`).
pub type Mem = GuestMemoryMmap<()>;

/// Upper bound on SGL descriptors walked for one command (guards against cycles).
const MAX_SGL_DESCRIPTORS: usize = 1 << 16;

/// A guest-physical address range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub addr: u64,
    pub len: u64,
}

fn push(segs: &mut Vec<Segment>, addr: u64, len: u64) {
    if len == 0 {
        return;
    }
    if let Some(last) = segs.last_mut() {
        if last.addr.checked_add(last.len) == Some(addr) {
            last.len += len;
            return;
        }
    }
    segs.push(Segment { addr, len });
}

/// True if every byte of `addr..addr+len` lies in guest memory the client let the
/// device write (a read-only DMA map is mapped without write access, and a device
/// write there would fault: every controller-to-host transfer asks here first).
pub fn writable(mem: &Mem, addr: u64, len: u64) -> bool {
    let Some(end) = addr.checked_add(len) else {
        return false;
    };
    let mut a = addr;
    while a < end {
        let Some(r) = mem.find_region(GuestAddress(a)) else {
            return false;
        };
        if r.prot() & libc::PROT_WRITE == 0 {
            return false;
        }
        let Some(next) = r.start_addr().0.checked_add(r.len()) else {
            return true;
        };
        a = next;
    }
    true
}

/// A transfer to the host: every segment must be writable guest memory, or Data
/// Transfer Error (with a log line).
fn check_writable(mem: &Mem, segs: &[Segment]) -> Result<(), Status> {
    match segs.iter().find(|s| !writable(mem, s.addr, s.len)) {
        Some(s) => {
            log::warn!(
                "transfer to host memory {:#x}+{:#x}, which the client did not map writable",
                s.addr,
                s.len
            );
            Err(status::DATA_TRANSFER_ERROR.dnr())
        }
        None => Ok(()),
    }
}

fn read_guest(mem: &Mem, addr: u64, buf: &mut [u8]) -> Result<(), Status> {
    mem.read_slice(buf, GuestAddress(addr))
        .map_err(|_| status::DATA_TRANSFER_ERROR.dnr())
}

/// Walks PRP1/PRP2 (and PRP lists) for a transfer of `len` bytes.
pub fn walk_prp(mem: &Mem, prp1: u64, prp2: u64, len: u64) -> Result<Vec<Segment>, Status> {
    walk_prp_prefix(mem, prp1, prp2, len, len)
}

/// Walks the PRPs of a transfer of `len` bytes (which decides what PRP2 is: a data page
/// or a PRP list) for its first `want` bytes only: a command may move less data than the
/// host's buffer holds (a log page shorter than NUMD), and the rest of the host's PRP
/// list is neither read nor, above all, taken for data.
pub fn walk_prp_prefix(
    mem: &Mem,
    prp1: u64,
    prp2: u64,
    len: u64,
    want: u64,
) -> Result<Vec<Segment>, Status> {
    let mut segs = Vec::new();
    let mut wrem = want.min(len);
    if wrem == 0 {
        return Ok(segs);
    }
    // PRP1's offset must be dword aligned; the spec lets a controller either ignore
    // bits 1:0 or report PRP Offset Invalid. Using them as an offset (as this walk once
    // did) is neither.
    if prp1 & 3 != 0 {
        return Err(status::INVALID_PRP_OFFSET.dnr());
    }
    let first = len.min(PAGE_SIZE - (prp1 % PAGE_SIZE));
    let take = first.min(wrem);
    push(&mut segs, prp1, take);
    wrem -= take;
    let mut rem = len - first;
    if wrem == 0 {
        return Ok(segs);
    }
    if rem <= PAGE_SIZE {
        if !prp2.is_multiple_of(PAGE_SIZE) {
            return Err(status::INVALID_PRP_OFFSET.dnr());
        }
        push(&mut segs, prp2, wrem.min(rem));
        return Ok(segs);
    }
    // PRP2 points to a PRP list, which may start at an offset inside its page.
    if !prp2.is_multiple_of(8) {
        return Err(status::INVALID_PRP_OFFSET.dnr());
    }
    let mut list = prp2;
    let mut entries = vec![0u8; PAGE_SIZE as usize];
    while wrem > 0 {
        let slots = ((PAGE_SIZE - (list % PAGE_SIZE)) / 8) as usize;
        // Whether the last slot chains to another list page depends on the whole
        // transfer; how many entries are read, on what is wanted.
        let needed = rem.div_ceil(PAGE_SIZE) as usize;
        let chained = needed > slots;
        let n = if chained {
            slots.min(wrem.div_ceil(PAGE_SIZE) as usize + 1)
        } else {
            needed
        };
        let buf = &mut entries[..n * 8];
        read_guest(mem, list, buf)?;
        for i in 0..n {
            let mut e = [0u8; 8];
            e.copy_from_slice(&buf[i * 8..i * 8 + 8]);
            let ent = u64::from_le_bytes(e);
            if chained && i == slots - 1 {
                // Last slot of a full list page: pointer to the next list page.
                if ent % PAGE_SIZE != 0 {
                    return Err(status::INVALID_PRP_OFFSET.dnr());
                }
                list = ent;
                break;
            }
            if ent % PAGE_SIZE != 0 {
                return Err(status::INVALID_PRP_OFFSET.dnr());
            }
            let page = rem.min(PAGE_SIZE);
            let take = page.min(wrem);
            push(&mut segs, ent, take);
            rem -= page;
            wrem -= take;
            if wrem == 0 {
                return Ok(segs);
            }
        }
    }
    Ok(segs)
}

/// One decoded SGL descriptor.
#[derive(Debug, Clone, Copy)]
struct SglDesc {
    addr: u64,
    len: u32,
    kind: u8,
    subtype: u8,
}

impl SglDesc {
    fn parse(b: &[u8]) -> SglDesc {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[0..8]);
        let mut l = [0u8; 4];
        l.copy_from_slice(&b[8..12]);
        SglDesc {
            addr: u64::from_le_bytes(a),
            len: u32::from_le_bytes(l),
            kind: b[15] >> 4,
            subtype: b[15] & 0xf,
        }
    }
}

/// Walks an SGL whose first descriptor is SGL1 (DPTR) for a transfer of `len` bytes.
/// The data blocks must describe exactly `len` bytes: less, or more (SGLS does not set
/// bit 18, "SGL longer than the data transferred supported"), is Data SGL Length
/// Invalid. Segment descriptors after the data is complete are not fetched.
pub fn walk_sgl(mem: &Mem, dptr1: u64, dptr2: u64, len: u64) -> Result<Vec<Segment>, Status> {
    let mut raw = [0u8; 16];
    raw[..8].copy_from_slice(&dptr1.to_le_bytes());
    raw[8..].copy_from_slice(&dptr2.to_le_bytes());
    let mut desc = SglDesc::parse(&raw);
    let mut segs = Vec::new();
    let mut rem = len;
    let mut walked = 0usize;
    loop {
        if desc.subtype != 0 {
            return Err(status::SGL_DESCRIPTOR_TYPE_INVALID.dnr());
        }
        match desc.kind {
            sgl::DATA_BLOCK => {
                data_block(&mut segs, &mut rem, &desc)?;
                break;
            }
            sgl::SEGMENT | sgl::LAST_SEGMENT => {
                if rem == 0 {
                    break;
                }
                if desc.len == 0 || !(desc.len as u64).is_multiple_of(sgl::DESCRIPTOR_SIZE) {
                    return Err(status::INVALID_SGL_SEGMENT.dnr());
                }
                let n = (desc.len as u64 / sgl::DESCRIPTOR_SIZE) as usize;
                walked += n;
                if walked > MAX_SGL_DESCRIPTORS {
                    return Err(status::INVALID_SGL_COUNT.dnr());
                }
                let mut buf = vec![0u8; n * 16];
                read_guest(mem, desc.addr, &mut buf)?;
                let is_last = desc.kind == sgl::LAST_SEGMENT;
                let mut next = None;
                for i in 0..n {
                    let d = SglDesc::parse(&buf[i * 16..i * 16 + 16]);
                    if d.subtype != 0 {
                        return Err(status::SGL_DESCRIPTOR_TYPE_INVALID.dnr());
                    }
                    match d.kind {
                        sgl::DATA_BLOCK => data_block(&mut segs, &mut rem, &d)?,
                        sgl::SEGMENT | sgl::LAST_SEGMENT => {
                            if is_last || i != n - 1 {
                                return Err(status::INVALID_SGL_SEGMENT.dnr());
                            }
                            next = Some(d);
                        }
                        _ => return Err(status::SGL_DESCRIPTOR_TYPE_INVALID.dnr()),
                    }
                }
                match next {
                    Some(d) => desc = d,
                    None => break,
                }
            }
            sgl::BIT_BUCKET => return Err(status::SGL_DESCRIPTOR_TYPE_INVALID.dnr()),
            _ => return Err(status::SGL_DESCRIPTOR_TYPE_INVALID.dnr()),
        }
    }
    if rem > 0 {
        return Err(status::DATA_SGL_LENGTH_INVALID.dnr());
    }
    Ok(segs)
}

/// Takes one SGL Data Block descriptor into `segs`; a block reaching past the transfer
/// (or past the end of the address space) is Data SGL Length Invalid.
fn data_block(segs: &mut Vec<Segment>, rem: &mut u64, d: &SglDesc) -> Result<(), Status> {
    let len = d.len as u64;
    if len > *rem || d.addr.checked_add(len).is_none() {
        return Err(status::DATA_SGL_LENGTH_INVALID.dnr());
    }
    push(segs, d.addr, len);
    *rem -= len;
    Ok(())
}

/// A command's data pointer (DPTR) as PSDT (CDW0 bits 15:14) says to read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataPtr {
    /// PSDT 00b: PRP1 and PRP2.
    Prp { prp1: u64, prp2: u64 },
    /// PSDT 01b or 10b: SGL1, the first descriptor (bytes 7:0 and 15:8). The two values
    /// differ only in how MPTR is read, and no namespace here has separate metadata.
    Sgl { dptr1: u64, dptr2: u64 },
    /// PSDT 11b, reserved: Invalid Field in Command once data has to move.
    Reserved,
}

impl DataPtr {
    pub fn of(sqe: &Sqe) -> DataPtr {
        match sqe.psdt {
            0 => DataPtr::Prp {
                prp1: sqe.dptr1,
                prp2: sqe.dptr2,
            },
            1 | 2 => DataPtr::Sgl {
                dptr1: sqe.dptr1,
                dptr2: sqe.dptr2,
            },
            _ => DataPtr::Reserved,
        }
    }
}

/// Walks a data pointer (PRP or SGL) for `len` bytes.
pub fn walk(mem: &Mem, dptr: &DataPtr, len: u64) -> Result<Vec<Segment>, Status> {
    match *dptr {
        DataPtr::Prp { prp1, prp2 } => walk_prp(mem, prp1, prp2, len),
        DataPtr::Sgl { dptr1, dptr2 } => walk_sgl(mem, dptr1, dptr2, len),
        DataPtr::Reserved => Err(status::INVALID_FIELD.dnr()),
    }
}

/// A data buffer resolved into guest-memory slices, all inside the current DMA maps.
pub struct Dma<'a> {
    slices: Vec<VolatileSlice<'a>>,
    len: u64,
}

impl<'a> Dma<'a> {
    /// Resolves segments into slices; any byte outside the maps is Data Transfer Error.
    pub fn resolve(mem: &'a Mem, segs: &[Segment]) -> Result<Dma<'a>, Status> {
        let mut slices = Vec::with_capacity(segs.len());
        let mut len = 0u64;
        for s in segs {
            let n = usize::try_from(s.len).map_err(|_| status::DATA_TRANSFER_ERROR.dnr())?;
            for sl in GuestMemoryBackend::get_slices(mem, GuestAddress(s.addr), n) {
                let sl = sl.map_err(|_| status::DATA_TRANSFER_ERROR.dnr())?;
                slices.push(sl);
            }
            len += s.len;
        }
        Ok(Dma { slices, len })
    }

    /// Walks a command's data pointer for `len` bytes and resolves it, for a transfer
    /// from the host (the device only reads the buffer).
    pub fn map(mem: &'a Mem, dptr: &DataPtr, len: u64) -> Result<Dma<'a>, Status> {
        let segs = walk(mem, dptr, len)?;
        Dma::resolve(mem, &segs)
    }

    /// As [`Dma::map`], for a transfer to the host: every byte must also be writable
    /// (not in a read-only DMA map), or the command gets Data Transfer Error.
    pub fn map_to_host(mem: &'a Mem, dptr: &DataPtr, len: u64) -> Result<Dma<'a>, Status> {
        let segs = walk(mem, dptr, len)?;
        check_writable(mem, &segs)?;
        Dma::resolve(mem, &segs)
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn slices(&self) -> &[VolatileSlice<'a>] {
        &self.slices
    }

    /// Copies `data` into the buffer (at most its length).
    pub fn write_from(&self, data: &[u8]) {
        let mut off = 0usize;
        for s in &self.slices {
            if off >= data.len() {
                break;
            }
            let n = s.len().min(data.len() - off);
            if let Ok(sub) = s.subslice(0, n) {
                sub.copy_from(&data[off..off + n]);
            }
            off += n;
        }
    }

    /// Copies the next `out.len()` bytes of the buffer from `cur` on into `out`, and
    /// moves `cur` past them (fewer if the buffer ends first: the rest of `out` is left
    /// as it is). Sequential, so walking a buffer block by block costs its length.
    pub fn read_seq(&self, cur: &mut Cursor, out: &mut [u8]) {
        let mut done = 0usize;
        while done < out.len() && cur.slice < self.slices.len() {
            let s = &self.slices[cur.slice];
            let n = (s.len() - cur.off).min(out.len() - done);
            if let Ok(sub) = s.subslice(cur.off, n) {
                sub.copy_to(&mut out[done..done + n]);
            }
            done += n;
            cur.advance(n, s.len());
        }
    }

    /// As [`Dma::read_seq`], copying `data` into the buffer.
    pub fn write_seq(&self, cur: &mut Cursor, data: &[u8]) {
        let mut done = 0usize;
        while done < data.len() && cur.slice < self.slices.len() {
            let s = &self.slices[cur.slice];
            let n = (s.len() - cur.off).min(data.len() - done);
            if let Ok(sub) = s.subslice(cur.off, n) {
                sub.copy_from(&data[done..done + n]);
            }
            done += n;
            cur.advance(n, s.len());
        }
    }

    /// Copies the buffer into `out` (at most its length).
    pub fn read_into(&self, out: &mut [u8]) {
        let mut off = 0usize;
        for s in &self.slices {
            if off >= out.len() {
                break;
            }
            let n = s.len().min(out.len() - off);
            s.copy_to(&mut out[off..off + n]);
            off += n;
        }
    }
}

/// A position in a [`Dma`] buffer for sequential copies.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cursor {
    slice: usize,
    off: usize,
}

impl Cursor {
    fn advance(&mut self, n: usize, slice_len: usize) {
        self.off += n;
        if self.off >= slice_len {
            self.slice += 1;
            self.off = 0;
        }
    }
}

/// Resolves a command's separate metadata buffer of `len` bytes: at MPTR, contiguous
/// (PSDT 00b and 01b), or described by the one SGL descriptor MPTR points to (PSDT
/// 10b). `to_host`: the device writes it (every byte must be writable).
pub fn map_metadata<'a>(
    mem: &'a Mem,
    mptr: u64,
    sgl: bool,
    len: u64,
    to_host: bool,
) -> Result<Dma<'a>, Status> {
    let segs = if sgl {
        let mut d = [0u8; 16];
        read_guest(mem, mptr, &mut d)?;
        walk_sgl(
            mem,
            super::spec::get_u64(&d, 0),
            super::spec::get_u64(&d, 8),
            len,
        )?
    } else {
        if mptr.checked_add(len).is_none() {
            return Err(status::DATA_TRANSFER_ERROR.dnr());
        }
        vec![Segment { addr: mptr, len }]
    };
    if to_host {
        check_writable(mem, &segs)?;
    }
    Dma::resolve(mem, &segs)
}

/// Copies `data` to the host buffer a command's data pointer describes (Identify, log
/// pages, Get Features).
pub fn to_host(mem: &Mem, dptr: &DataPtr, data: &[u8]) -> Result<(), Status> {
    Dma::map_to_host(mem, dptr, data.len() as u64)?.write_from(data);
    Ok(())
}

/// Copies `data` into the first bytes of a host buffer of `host_len` bytes (a log page
/// shorter than the transfer the host asked for). Admin commands carry PRPs only; the
/// PRPs are read as describing `host_len` bytes, and only the pages `data` needs are
/// walked and written.
pub fn to_host_prefix(mem: &Mem, dptr: &DataPtr, host_len: u64, data: &[u8]) -> Result<(), Status> {
    let DataPtr::Prp { prp1, prp2 } = *dptr else {
        return to_host(mem, dptr, data);
    };
    let want = (data.len() as u64).min(host_len);
    let segs = walk_prp_prefix(mem, prp1, prp2, host_len, want)?;
    check_writable(mem, &segs)?;
    Dma::resolve(mem, &segs)?.write_from(data);
    Ok(())
}

/// Reads `len` bytes from the host buffer a command's data pointer describes.
pub fn from_host(mem: &Mem, dptr: &DataPtr, len: usize) -> Result<Vec<u8>, Status> {
    let dma = Dma::map(mem, dptr, len as u64)?;
    let mut buf = vec![0u8; len];
    dma.read_into(&mut buf);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mem() -> Mem {
        // Two maps with a hole between them: [0, 1 MiB) and [2 MiB, 3 MiB).
        Mem::from_ranges(&[(GuestAddress(0), 1 << 20), (GuestAddress(2 << 20), 1 << 20)]).unwrap()
    }

    fn put_u64s(m: &Mem, addr: u64, v: &[u64]) {
        for (i, x) in v.iter().enumerate() {
            m.write_obj(*x, GuestAddress(addr + 8 * i as u64)).unwrap();
        }
    }

    #[test]
    fn prp_prefix_reads_prp2_as_the_whole_transfer_says() {
        let m = mem();
        // 12 KiB from 0x1000: PRP2 is a list (at 0x9000) of 0x5000, 0x7000.
        put_u64s(&m, 0x9000, &[0x5000, 0x7000]);
        let segs = walk_prp_prefix(&m, 0x1000, 0x9000, 3 * 4096, 5000).unwrap();
        assert_eq!(
            segs,
            vec![
                Segment {
                    addr: 0x1000,
                    len: 4096
                },
                Segment {
                    addr: 0x5000,
                    len: 904
                }
            ]
        );
        // Only PRP1 needed: PRP2 is not even read.
        let segs = walk_prp_prefix(&m, 0x1000, 0xdead_0000, 3 * 4096, 100).unwrap();
        assert_eq!(
            segs,
            vec![Segment {
                addr: 0x1000,
                len: 100
            }]
        );
        // A list whose first page has one slot left: it chains to 0xa000.
        put_u64s(&m, 0x9ff8, &[0xa000]);
        put_u64s(&m, 0xa000, &[0x6000, 0x8000]);
        let segs = walk_prp_prefix(&m, 0x1000, 0x9ff8, 3 * 4096, 4097).unwrap();
        assert_eq!(
            segs,
            vec![
                Segment {
                    addr: 0x1000,
                    len: 4096
                },
                Segment {
                    addr: 0x6000,
                    len: 1
                }
            ]
        );
        // The whole walk agrees with walk_prp.
        assert_eq!(
            walk_prp_prefix(&m, 0x1000, 0x9ff8, 3 * 4096, 3 * 4096).unwrap(),
            walk_prp(&m, 0x1000, 0x9ff8, 3 * 4096).unwrap()
        );
    }

    #[test]
    fn prp_simple_and_two_entries() {
        let m = mem();
        assert_eq!(
            walk_prp(&m, 0x1100, 0, 0x100).unwrap(),
            vec![Segment {
                addr: 0x1100,
                len: 0x100
            }]
        );
        assert_eq!(
            walk_prp(&m, 0x1800, 0x5000, 0x1000).unwrap(),
            vec![
                Segment {
                    addr: 0x1800,
                    len: 0x800
                },
                Segment {
                    addr: 0x5000,
                    len: 0x800
                }
            ]
        );
        assert_eq!(
            walk_prp(&m, 0x1800, 0x5010, 0x1000).unwrap_err(),
            status::INVALID_PRP_OFFSET.dnr()
        );
    }

    #[test]
    fn prp_list_chained_across_pages_with_offsets() {
        let m = mem();
        // PRP1 at offset 0x200; 0x200 bytes... then 3 full pages + 0x100 bytes via a list
        // that starts in the last two slots of page 0x10000 and chains to page 0x20000.
        let len = 0xe00 + 3 * 0x1000 + 0x100;
        put_u64s(&m, 0x10ff0, &[0x30000, 0x20000]);
        put_u64s(&m, 0x20000, &[0x50000, 0x70000, 0x90000]);
        let segs = walk_prp(&m, 0x40200, 0x10ff0, len).unwrap();
        assert_eq!(
            segs,
            vec![
                Segment {
                    addr: 0x40200,
                    len: 0xe00
                },
                Segment {
                    addr: 0x30000,
                    len: 0x1000
                },
                Segment {
                    addr: 0x50000,
                    len: 0x1000
                },
                Segment {
                    addr: 0x70000,
                    len: 0x1000
                },
                Segment {
                    addr: 0x90000,
                    len: 0x100
                },
            ]
        );
        let total: u64 = segs.iter().map(|s| s.len).sum();
        assert_eq!(total, len);
        // A misaligned data entry is Invalid PRP Offset.
        put_u64s(&m, 0x20000, &[0x50008]);
        assert_eq!(
            walk_prp(&m, 0x40200, 0x10ff0, len).unwrap_err(),
            status::INVALID_PRP_OFFSET.dnr()
        );
        // A list outside the maps is a data transfer error.
        assert_eq!(
            walk_prp(&m, 0x40200, 0x180000, len).unwrap_err(),
            status::DATA_TRANSFER_ERROR.dnr()
        );
    }

    #[test]
    fn contiguous_entries_are_merged() {
        let m = mem();
        put_u64s(&m, 0x8000, &[0x2000, 0x3000]);
        assert_eq!(
            walk_prp(&m, 0x1000, 0x8000, 0x3000).unwrap(),
            vec![Segment {
                addr: 0x1000,
                len: 0x3000
            }]
        );
    }

    fn sgl_desc(addr: u64, len: u32, kind: u8) -> [u8; 16] {
        let mut d = [0u8; 16];
        d[..8].copy_from_slice(&addr.to_le_bytes());
        d[8..12].copy_from_slice(&len.to_le_bytes());
        d[15] = kind << 4;
        d
    }

    fn dptr(d: [u8; 16]) -> (u64, u64) {
        let mut a = [0u8; 8];
        a.copy_from_slice(&d[..8]);
        let mut b = [0u8; 8];
        b.copy_from_slice(&d[8..]);
        (u64::from_le_bytes(a), u64::from_le_bytes(b))
    }

    #[test]
    fn sgl_data_block_segment_last_segment() {
        let m = mem();
        let (a, b) = dptr(sgl_desc(0x1234, 100, sgl::DATA_BLOCK));
        assert_eq!(
            walk_sgl(&m, a, b, 100).unwrap(),
            vec![Segment {
                addr: 0x1234,
                len: 100
            }]
        );
        assert_eq!(
            walk_sgl(&m, a, b, 101).unwrap_err(),
            status::DATA_SGL_LENGTH_INVALID.dnr()
        );
        // Segment at 0x9000: two data blocks and a last segment pointer to 0xa000.
        let mut seg = Vec::new();
        seg.extend_from_slice(&sgl_desc(0x100, 10, sgl::DATA_BLOCK));
        seg.extend_from_slice(&sgl_desc(0x300, 20, sgl::DATA_BLOCK));
        seg.extend_from_slice(&sgl_desc(0xa000, 16, sgl::LAST_SEGMENT));
        m.write_slice(&seg, GuestAddress(0x9000)).unwrap();
        m.write_slice(&sgl_desc(0x500, 30, sgl::DATA_BLOCK), GuestAddress(0xa000))
            .unwrap();
        let (a, b) = dptr(sgl_desc(0x9000, 48, sgl::SEGMENT));
        assert_eq!(
            walk_sgl(&m, a, b, 60).unwrap(),
            vec![
                Segment {
                    addr: 0x100,
                    len: 10
                },
                Segment {
                    addr: 0x300,
                    len: 20
                },
                Segment {
                    addr: 0x500,
                    len: 30
                }
            ]
        );
        // A segment pointer that is not last in its segment is invalid.
        let mut bad = Vec::new();
        bad.extend_from_slice(&sgl_desc(0xa000, 16, sgl::LAST_SEGMENT));
        bad.extend_from_slice(&sgl_desc(0x100, 10, sgl::DATA_BLOCK));
        m.write_slice(&bad, GuestAddress(0xb000)).unwrap();
        let (a, b) = dptr(sgl_desc(0xb000, 32, sgl::SEGMENT));
        assert_eq!(
            walk_sgl(&m, a, b, 40).unwrap_err(),
            status::INVALID_SGL_SEGMENT.dnr()
        );
        // Bit bucket descriptors are not supported.
        let (a, b) = dptr(sgl_desc(0, 10, sgl::BIT_BUCKET));
        assert_eq!(
            walk_sgl(&m, a, b, 10).unwrap_err(),
            status::SGL_DESCRIPTOR_TYPE_INVALID.dnr()
        );
        // A segment length that is not a multiple of 16 is invalid.
        let (a, b) = dptr(sgl_desc(0x9000, 40, sgl::SEGMENT));
        assert_eq!(
            walk_sgl(&m, a, b, 60).unwrap_err(),
            status::INVALID_SGL_SEGMENT.dnr()
        );
    }

    #[test]
    fn sgl_self_loop_is_bounded() {
        let m = mem();
        m.write_slice(&sgl_desc(0xc000, 16, sgl::SEGMENT), GuestAddress(0xc000))
            .unwrap();
        let (a, b) = dptr(sgl_desc(0xc000, 16, sgl::SEGMENT));
        assert_eq!(
            walk_sgl(&m, a, b, 10).unwrap_err(),
            status::INVALID_SGL_COUNT.dnr()
        );
    }

    #[test]
    fn resolve_rejects_holes_and_copies() {
        let m = mem();
        let segs = [Segment {
            addr: (1 << 20) - 8,
            len: 16,
        }];
        assert_eq!(
            Dma::resolve(&m, &segs).err().unwrap(),
            status::DATA_TRANSFER_ERROR.dnr()
        );
        let segs = [
            Segment {
                addr: 0x100,
                len: 4,
            },
            Segment {
                addr: (2 << 20) + 8,
                len: 4,
            },
        ];
        let d = Dma::resolve(&m, &segs).unwrap();
        assert_eq!(d.len(), 8);
        d.write_from(&[1, 2, 3, 4, 5, 6, 7, 8]);
        let mut out = [0u8; 8];
        d.read_into(&mut out);
        assert_eq!(out, [1, 2, 3, 4, 5, 6, 7, 8]);
        let mut w = [0u8; 4];
        m.read_slice(&mut w, GuestAddress((2 << 20) + 8)).unwrap();
        assert_eq!(w, [5, 6, 7, 8]);
    }
}
