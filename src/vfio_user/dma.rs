//! Guest memory built from `VFIO_USER_DMA_MAP` file descriptors (vm-memory).
//!
//! Each fd-backed map becomes a `GuestRegionMmap`; the set of regions lives in a
//! `GuestMemoryAtomic` that is shared with the device model and swapped on every change.
//! A region is unmapped from this process when the last snapshot holding it is dropped,
//! so DMA in flight during an unmap finishes on valid memory.

use std::fmt;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use vm_memory::{
    FileOffset, GuestAddress, GuestAddressSpace, GuestMemoryAtomic, GuestMemoryMmap,
    GuestRegionMmap, MmapRegion,
};

use super::protocol::{DmaMap, DMA_MAP_FLAG_WRITE, MAX_DMA_MAPS, PGSIZES};

/// Guest memory as the device model sees it.
pub type DmaMemory = GuestMemoryAtomic<GuestMemoryMmap<()>>;

#[derive(Debug)]
pub enum DmaError {
    /// The new map overlaps an existing one.
    Overlap { addr: u64, size: u64 },
    /// No map lies in the range to unmap.
    NotFound { addr: u64, size: u64 },
    /// The range cuts through an existing map.
    Partial { addr: u64, size: u64 },
    /// Bad arguments (alignment, zero size, overflow, too many maps, ...).
    Invalid(String),
    /// mmap (or fstat) of the client's descriptor failed.
    Mmap(String),
}

impl DmaError {
    pub fn errno(&self) -> i32 {
        match self {
            DmaError::Overlap { .. } => libc::EEXIST,
            DmaError::NotFound { .. } => libc::ENOENT,
            DmaError::Partial { .. } | DmaError::Invalid(_) => libc::EINVAL,
            DmaError::Mmap(_) => libc::EFAULT,
        }
    }
}

impl fmt::Display for DmaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DmaError::Overlap { addr, size } => {
                write!(f, "DMA map {addr:#x}+{size:#x} overlaps an existing map")
            }
            DmaError::NotFound { addr, size } => {
                write!(f, "DMA unmap {addr:#x}+{size:#x}: no such map")
            }
            DmaError::Partial { addr, size } => {
                write!(f, "DMA unmap {addr:#x}+{size:#x} cuts through a map")
            }
            DmaError::Invalid(s) => write!(f, "DMA: {s}"),
            DmaError::Mmap(s) => write!(f, "DMA mmap: {s}"),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Mapping {
    addr: u64,
    size: u64,
    /// False for maps sent without a descriptor (only reachable through DMA_READ/WRITE,
    /// which this server does not use): recorded so unmap and overlap checks work.
    mmapped: bool,
}

impl Mapping {
    fn end(&self) -> u64 {
        self.addr + self.size
    }
}

/// The DMA maps of one client connection.
pub struct DmaMaps {
    mem: DmaMemory,
    maps: Vec<Mapping>,
}

impl Default for DmaMaps {
    fn default() -> Self {
        Self::new()
    }
}

impl DmaMaps {
    pub fn new() -> Self {
        DmaMaps {
            mem: GuestMemoryAtomic::new(GuestMemoryMmap::new()),
            maps: Vec::new(),
        }
    }

    /// The shared guest memory handle (clones see every later map change).
    pub fn memory(&self) -> DmaMemory {
        self.mem.clone()
    }

    pub fn map(&mut self, m: &DmaMap, fd: Option<OwnedFd>) -> Result<(), DmaError> {
        let pg = PGSIZES;
        if m.size == 0 {
            return Err(DmaError::Invalid("map of size 0".into()));
        }
        if !m.addr.is_multiple_of(pg) || !m.size.is_multiple_of(pg) || !m.offset.is_multiple_of(pg)
        {
            return Err(DmaError::Invalid(format!(
                "map {:#x}+{:#x} (offset {:#x}) is not {pg}-byte aligned",
                m.addr, m.size, m.offset
            )));
        }
        let end = m
            .addr
            .checked_add(m.size)
            .ok_or_else(|| DmaError::Invalid("map address + size overflows".into()))?;
        if m.offset.checked_add(m.size).is_none() || usize::try_from(m.size).is_err() {
            return Err(DmaError::Invalid("map offset + size overflows".into()));
        }
        if self.maps.len() >= MAX_DMA_MAPS as usize {
            return Err(DmaError::Invalid("too many DMA maps".into()));
        }
        if self.maps.iter().any(|x| m.addr < x.end() && x.addr < end) {
            return Err(DmaError::Overlap {
                addr: m.addr,
                size: m.size,
            });
        }
        let Some(fd) = fd else {
            // QEMU maps ROM and device memory this way; only a DMA into it would matter.
            log::debug!(
                "DMA map {:#x}+{:#x} has no file descriptor; the device cannot reach it",
                m.addr,
                m.size
            );
            self.maps.push(Mapping {
                addr: m.addr,
                size: m.size,
                mmapped: false,
            });
            return Ok(());
        };
        let file = File::from(fd);
        let meta = file
            .metadata()
            .map_err(|e| DmaError::Mmap(format!("fstat: {e}")))?;
        if meta.is_file() && m.offset + m.size > meta.len() {
            return Err(DmaError::Invalid(format!(
                "map offset {:#x} + size {:#x} is beyond the end of the file ({:#x})",
                m.offset,
                m.size,
                meta.len()
            )));
        }
        // A read-only map is mapped without write access; the model checks every write
        // into guest memory against it (`nvme::prp::writable`) and fails the command
        // with Data Transfer Error instead of writing.
        let prot = if m.flags & DMA_MAP_FLAG_WRITE != 0 {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_READ
        };
        let region = MmapRegion::build(
            Some(FileOffset::new(file, m.offset)),
            m.size as usize,
            prot,
            libc::MAP_SHARED | libc::MAP_NORESERVE,
        )
        .map_err(|e| DmaError::Mmap(e.to_string()))?;
        let region = GuestRegionMmap::new(region, GuestAddress(m.addr))
            .ok_or_else(|| DmaError::Invalid("region address overflows".into()))?;
        let guard = self
            .mem
            .lock()
            .map_err(|_| DmaError::Mmap("guest memory lock poisoned".into()))?;
        let new = self
            .mem
            .memory()
            .insert_region(Arc::new(region))
            .map_err(|e| DmaError::Invalid(e.to_string()))?;
        guard.replace(new);
        self.maps.push(Mapping {
            addr: m.addr,
            size: m.size,
            mmapped: true,
        });
        Ok(())
    }

    /// Removes every map lying inside `addr..addr+size` (normally exactly one).
    pub fn unmap(&mut self, addr: u64, size: u64) -> Result<(), DmaError> {
        let end = addr
            .checked_add(size)
            .ok_or_else(|| DmaError::Invalid("unmap address + size overflows".into()))?;
        if size == 0 {
            return Err(DmaError::Invalid("unmap of size 0".into()));
        }
        if self
            .maps
            .iter()
            .any(|x| x.addr < end && addr < x.end() && !(addr <= x.addr && x.end() <= end))
        {
            return Err(DmaError::Partial { addr, size });
        }
        let (gone, keep): (Vec<Mapping>, Vec<Mapping>) = self
            .maps
            .iter()
            .partition(|x| addr <= x.addr && x.end() <= end);
        if gone.is_empty() {
            return Err(DmaError::NotFound { addr, size });
        }
        let guard = self
            .mem
            .lock()
            .map_err(|_| DmaError::Mmap("guest memory lock poisoned".into()))?;
        let mut cur: GuestMemoryMmap<()> = (*self.mem.memory()).clone();
        for g in gone.iter().filter(|g| g.mmapped) {
            match cur.remove_region(GuestAddress(g.addr), g.size) {
                Ok((next, _region)) => cur = next,
                Err(e) => log::warn!("DMA unmap {:#x}+{:#x}: {e}", g.addr, g.size),
            }
        }
        guard.replace(cur);
        self.maps = keep;
        Ok(())
    }

    /// Drops every map.
    pub fn unmap_all(&mut self) {
        match self.mem.lock() {
            Ok(guard) => guard.replace(GuestMemoryMmap::new()),
            Err(p) => p.into_inner().replace(GuestMemoryMmap::new()),
        }
        self.maps.clear();
    }
}
