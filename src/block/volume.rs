//! A volume: one store seen as numbered logical blocks, with the block operations every
//! front end needs (read, write with FUA, flush, discard, write zeroes, compare, verify,
//! copy) and one typed error, [`BlockError`], that each front end maps to its own status.
//!
//! The wiring opens each volume once and shares it as `Arc<Volume>`: an NVMe namespace
//! and a virtio-blk disk over the same volume are two views of the same bytes.
//! Durability is the caller's choice per operation (`fua`): the NVMe front end asks for
//! it on FUA or with its volatile write cache off, the virtio-blk front end when the
//! driver did not negotiate FLUSH.

#![forbid(unsafe_code)]

use std::io;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use vm_memory::VolatileSlice;

use super::file::OpenError;
use super::store::{move_within, same_file, CopyError, Store, BOUNCE_LIMIT};
use super::unreadable::{Full, Unreadable};
use super::{memfd, FileStore};

/// Why a block operation failed. Host-memory faults (the buffer the data moves to or
/// from is not accessible) are distinct from storage errors.
#[derive(Debug)]
pub enum BlockError {
    /// Some of the blocks lie outside the volume.
    OutOfRange { lba: u64, blocks: u64 },
    /// A write to a read-only volume.
    ReadOnly,
    /// The memory buffer could not be read or written (EFAULT: e.g. guest memory whose
    /// backing file shrank).
    HostMemory(io::Error),
    /// Reading the store failed.
    Read(io::Error),
    /// Writing the store failed (including making the write durable).
    Write(io::Error),
    /// Flush (fdatasync) failed.
    Flush(io::Error),
    /// Compare found different data.
    Miscompare,
    /// A metadata operation on a volume without metadata (a caller's bug).
    NoMetadata,
    /// The read reached a block marked unreadable ([`Volume::mark_unreadable`]); `lba`
    /// is the first such block.
    Unreadable { lba: u64 },
    /// Marking blocks unreadable needs more ranges than the volume keeps
    /// ([`super::unreadable::MAX_RANGES`]).
    TooManyUnreadable,
}

impl std::fmt::Display for BlockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BlockError::OutOfRange { lba, blocks } => {
                write!(f, "blocks {lba}+{blocks} are outside the volume")
            }
            BlockError::ReadOnly => f.write_str("the volume is read-only"),
            BlockError::HostMemory(e) => write!(f, "memory buffer not accessible: {e}"),
            BlockError::Read(e) => write!(f, "read failed: {e}"),
            BlockError::Write(e) => write!(f, "write failed: {e}"),
            BlockError::Flush(e) => write!(f, "flush failed: {e}"),
            BlockError::Miscompare => f.write_str("data differs"),
            BlockError::NoMetadata => f.write_str("the volume has no metadata"),
            BlockError::Unreadable { lba } => write!(f, "block {lba} is marked unreadable"),
            BlockError::TooManyUnreadable => write!(
                f,
                "more than {} ranges marked unreadable",
                super::unreadable::MAX_RANGES
            ),
        }
    }
}

impl std::error::Error for BlockError {}

fn is_fault(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EFAULT)
}

fn read_err(e: io::Error) -> BlockError {
    if is_fault(&e) {
        BlockError::HostMemory(e)
    } else {
        BlockError::Read(e)
    }
}

fn write_err(e: io::Error) -> BlockError {
    if is_fault(&e) {
        BlockError::HostMemory(e)
    } else {
        BlockError::Write(e)
    }
}

/// A store as logical blocks.
pub struct Volume {
    /// Names the volume in log lines (e.g. `file=/srv/a.img` or `memory`).
    name: String,
    /// The file or block device, if the store is one.
    path: Option<PathBuf>,
    store: Arc<dyn Store>,
    block_size: u64,
    blocks: u64,
    read_only: bool,
    /// Metadata bytes per block (0: none). With metadata the store holds the data of
    /// every block first, then the metadata of every block from `meta_base` (the layout
    /// of QEMU's nvme-ns), and metadata bytes are stored bitwise inverted so that bytes
    /// never written (a sparse file's holes, a fresh memfd) read as all ones.
    meta_size: u64,
    meta_base: u64,
    /// Blocks marked unreadable until written again (in memory only).
    unreadable: Unreadable,
}

impl std::fmt::Debug for Volume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Volume")
            .field("name", &self.name)
            .field("block_size", &self.block_size)
            .field("blocks", &self.blocks)
            .field("read_only", &self.read_only)
            .field("meta_size", &self.meta_size)
            .finish()
    }
}

/// Why a volume could not be made. The wiring adds the option it came from.
#[derive(Debug)]
pub enum VolumeError {
    /// Opening or creating the file failed.
    Open(OpenError),
    /// memfd_create or sizing it failed.
    Memory(io::Error),
    /// The block size is not a power of two between 512 and 65536.
    BlockSize(u64),
    /// The store is smaller than one block.
    TooSmall { size: u64, block_size: u64 },
}

impl std::fmt::Display for VolumeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VolumeError::Open(e) => write!(f, "{e}"),
            VolumeError::Memory(e) => write!(f, "cannot create memfd: {e}"),
            VolumeError::BlockSize(b) => {
                write!(f, "block size {b} is not a power of two from 512 to 65536")
            }
            VolumeError::TooSmall { size, block_size } => write!(
                f,
                "size {size} is smaller than one logical block ({block_size} bytes)"
            ),
        }
    }
}

impl std::error::Error for VolumeError {}

impl Volume {
    /// Opens (or creates sparse, with `size`) a file or block device.
    pub fn open_file(
        path: &Path,
        size: Option<u64>,
        block_size: u64,
        read_only: bool,
    ) -> Result<Volume, VolumeError> {
        let s = FileStore::open(path, size, read_only).map_err(VolumeError::Open)?;
        let mut v = Volume::new(
            format!("file={}", path.display()),
            Arc::new(s),
            block_size,
            read_only,
        )?;
        v.path = Some(path.to_path_buf());
        Ok(v)
    }

    /// An anonymous memfd of `size` bytes (data gone at exit).
    pub fn memory(
        name: &str,
        size: u64,
        block_size: u64,
        read_only: bool,
    ) -> Result<Volume, VolumeError> {
        let s = memfd::create(name, size).map_err(VolumeError::Memory)?;
        Volume::new("memory".into(), Arc::new(s), block_size, read_only)
    }

    /// A volume over an existing store (tests, or stores made elsewhere). The last
    /// partial block of the store, if any, is not part of the volume.
    pub fn new(
        name: String,
        store: Arc<dyn Store>,
        block_size: u64,
        read_only: bool,
    ) -> Result<Volume, VolumeError> {
        if !block_size.is_power_of_two() || !(512..=65536).contains(&block_size) {
            return Err(VolumeError::BlockSize(block_size));
        }
        let blocks = store.size() / block_size;
        if blocks == 0 {
            return Err(VolumeError::TooSmall {
                size: store.size(),
                block_size,
            });
        }
        Ok(Volume {
            name,
            path: None,
            store,
            block_size,
            blocks,
            read_only,
            meta_size: 0,
            meta_base: 0,
            unreadable: Unreadable::default(),
        })
    }

    /// The same store with `meta_size` bytes of metadata per block: the block count
    /// becomes size / (block size + metadata size), the data of every block comes first
    /// and the metadata of every block after it. 0 leaves the volume as it is.
    pub fn with_metadata(mut self, meta_size: u64) -> Result<Volume, VolumeError> {
        if meta_size == 0 {
            return Ok(self);
        }
        let per_block = self.block_size + meta_size;
        let blocks = self.store.size() / per_block;
        if blocks == 0 {
            return Err(VolumeError::TooSmall {
                size: self.store.size(),
                block_size: per_block,
            });
        }
        self.blocks = blocks;
        self.meta_size = meta_size;
        self.meta_base = blocks * self.block_size;
        Ok(self)
    }

    /// The same store seen with another geometry: `block_size`-byte blocks with
    /// `meta_size` bytes of metadata each (a format change). The contents are not
    /// touched; see [`Volume::erase_all`].
    pub fn reshaped(&self, block_size: u64, meta_size: u64) -> Result<Volume, VolumeError> {
        let mut v = Volume::new(
            self.name.clone(),
            self.store.clone(),
            block_size,
            self.read_only,
        )?
        .with_metadata(meta_size)?;
        v.path = self.path.clone();
        Ok(v)
    }

    /// Deallocates the whole store (data reads as zeroes, metadata as never written)
    /// and makes that durable.
    pub fn erase_all(&self) -> Result<(), BlockError> {
        if self.read_only {
            return Err(BlockError::ReadOnly);
        }
        self.store
            .punch_hole(0, self.store.size())
            .map_err(BlockError::Write)?;
        self.unreadable.clear_all();
        self.store.flush().map_err(BlockError::Write)
    }

    /// Marks the blocks unreadable: reads of them fail ([`BlockError::Unreadable`])
    /// until they are written, zeroed, discarded, copied onto or erased. The marks live
    /// in memory only (not across a restart of the process).
    pub fn mark_unreadable(&self, lba: u64, blocks: u64) -> Result<(), BlockError> {
        self.check_writable(lba, blocks)?;
        self.unreadable
            .mark(lba, blocks)
            .map_err(|Full| BlockError::TooManyUnreadable)
    }

    /// The ranges marked unreadable within `blocks` blocks from `lba` (clipped to it),
    /// at most `max`, as (first block, blocks); and whether more were left out.
    pub fn unreadable_ranges(&self, lba: u64, blocks: u64, max: usize) -> (Vec<(u64, u64)>, bool) {
        self.unreadable.ranges_in(lba, blocks, max)
    }

    /// Blocks marked unreadable, and the number of changes to the marks so far.
    pub fn unreadable_summary(&self) -> (u64, u64) {
        (self.unreadable.blocks(), self.unreadable.generation())
    }

    /// Fails when a block of the range is marked unreadable.
    fn check_readable(&self, lba: u64, blocks: u64) -> Result<(), BlockError> {
        match self.unreadable.first_in(lba, blocks) {
            Some(lba) => Err(BlockError::Unreadable { lba }),
            None => Ok(()),
        }
    }

    /// Metadata bytes per block (0: none).
    pub fn meta_size(&self) -> u64 {
        self.meta_size
    }

    /// Byte offset and length of the metadata of `blocks` blocks from `lba` (in range).
    fn meta_range(&self, lba: u64, blocks: u64) -> Result<(u64, u64), BlockError> {
        self.check(lba, blocks)?;
        // In range, so lba + blocks <= self.blocks: no overflow.
        Ok((
            self.meta_base + lba * self.meta_size,
            blocks * self.meta_size,
        ))
    }

    /// Reads the metadata of the blocks from `lba` into `out` (a whole number of
    /// metadata units). Metadata never written reads as all ones.
    pub fn read_meta(&self, lba: u64, out: &mut [u8]) -> Result<(), BlockError> {
        if self.meta_size == 0 {
            return Err(BlockError::NoMetadata);
        }
        let (off, _) = self.meta_range(lba, out.len() as u64 / self.meta_size)?;
        self.store.read(off, out).map_err(BlockError::Read)?;
        out.iter_mut().for_each(|b| *b = !*b);
        Ok(())
    }

    /// Writes the metadata of the blocks from `lba` from `data` (a whole number of
    /// metadata units); with `fua` durable when this returns.
    pub fn write_meta(&self, lba: u64, data: &[u8], fua: bool) -> Result<(), BlockError> {
        if self.meta_size == 0 {
            return Err(BlockError::NoMetadata);
        }
        let (off, _) = self.meta_range(lba, data.len() as u64 / self.meta_size)?;
        if self.read_only {
            return Err(BlockError::ReadOnly);
        }
        let inverted: Vec<u8> = data.iter().map(|b| !b).collect();
        self.store
            .write(off, &inverted)
            .map_err(BlockError::Write)?;
        self.durable(fua)
    }

    /// Makes the metadata of the blocks read as never written (all ones).
    fn forget_meta(&self, lba: u64, blocks: u64) -> Result<(), BlockError> {
        if self.meta_size == 0 {
            return Ok(());
        }
        let (off, len) = self.meta_range(lba, blocks)?;
        self.store.punch_hole(off, len).map_err(BlockError::Write)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The file or block device behind the volume (`None` for a memfd or a store made
    /// elsewhere).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Logical block size in bytes.
    pub fn block_size(&self) -> u64 {
        self.block_size
    }

    /// Number of logical blocks.
    pub fn blocks(&self) -> u64 {
        self.blocks
    }

    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// The store underneath (for front ends that need its fd, e.g. benchmarks).
    pub fn store(&self) -> &dyn Store {
        &*self.store
    }

    /// Where `blocks` blocks from `lba` live, for a caller that moves the bytes itself
    /// with requests in flight ([`super::uring::AsyncIo`]): the store's descriptor and the
    /// byte offset. `None` when the store has no descriptor (the caller then uses
    /// [`read`](Self::read) / [`write`](Self::write)). A write checks read-only. The
    /// descriptor stays open as long as this volume lives.
    pub fn direct(
        &self,
        lba: u64,
        blocks: u64,
        write: bool,
    ) -> Result<Option<(RawFd, u64)>, BlockError> {
        let (off, _) = if write {
            self.check_writable(lba, blocks)?
        } else {
            self.check(lba, blocks)?
        };
        let fd = self.store.raw_fd();
        if fd.is_some() {
            if write {
                // The caller writes them (a failed write leaves them unmarked).
                self.unreadable.clear(lba, blocks);
            } else {
                self.check_readable(lba, blocks)?;
            }
        }
        Ok(fd.map(|fd| (fd, off)))
    }

    /// True if `blocks` blocks from `lba` lie inside the volume.
    pub fn in_range(&self, lba: u64, blocks: u64) -> bool {
        lba.checked_add(blocks)
            .is_some_and(|end| end <= self.blocks)
    }

    /// Checks the range; returns its byte offset and length.
    pub fn check(&self, lba: u64, blocks: u64) -> Result<(u64, u64), BlockError> {
        if !self.in_range(lba, blocks) {
            return Err(BlockError::OutOfRange { lba, blocks });
        }
        // In range, so lba + blocks <= self.blocks and these cannot overflow.
        Ok((lba * self.block_size, blocks * self.block_size))
    }

    fn check_writable(&self, lba: u64, blocks: u64) -> Result<(u64, u64), BlockError> {
        let r = self.check(lba, blocks)?;
        if self.read_only {
            return Err(BlockError::ReadOnly);
        }
        Ok(r)
    }

    fn durable(&self, fua: bool) -> Result<(), BlockError> {
        if fua {
            self.store.flush().map_err(BlockError::Write)?;
        }
        Ok(())
    }

    /// Reads the blocks from `lba` into `slices` (memory), which hold exactly the bytes
    /// to read; their total must be a whole number of blocks.
    pub fn read(&self, lba: u64, slices: &[VolatileSlice<'_>]) -> Result<(), BlockError> {
        let blocks = self.blocks_of(slices);
        let (off, _) = self.check(lba, blocks)?;
        self.check_readable(lba, blocks)?;
        self.store.read_to_slices(off, slices).map_err(read_err)
    }

    /// Writes `slices` at `lba`; with `fua` the data is durable when this returns.
    pub fn write(
        &self,
        lba: u64,
        slices: &[VolatileSlice<'_>],
        fua: bool,
    ) -> Result<(), BlockError> {
        let blocks = self.blocks_of(slices);
        let (off, _) = self.check_writable(lba, blocks)?;
        self.store
            .write_from_slices(off, slices)
            .map_err(write_err)?;
        self.unreadable.clear(lba, blocks);
        self.durable(fua)
    }

    /// Reads whole blocks from `lba` into `buf` (bounce buffers of callers that look at
    /// the bytes).
    pub fn read_buf(&self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        let blocks = (buf.len() as u64).div_ceil(self.block_size);
        let (off, _) = self.check(lba, blocks)?;
        self.check_readable(lba, blocks)?;
        self.store.read(off, buf).map_err(BlockError::Read)
    }

    /// Writes whole blocks at `lba` from `buf`; with `fua` durable when this returns.
    pub fn write_buf(&self, lba: u64, buf: &[u8], fua: bool) -> Result<(), BlockError> {
        let blocks = (buf.len() as u64).div_ceil(self.block_size);
        let (off, _) = self.check_writable(lba, blocks)?;
        self.store.write(off, buf).map_err(BlockError::Write)?;
        self.unreadable.clear(lba, blocks);
        self.durable(fua)
    }

    /// Blocks covered by `slices` (a partial last block counts as one, so the range
    /// check covers every byte).
    fn blocks_of(&self, slices: &[VolatileSlice<'_>]) -> u64 {
        let bytes: u64 = slices.iter().map(|s| s.len() as u64).sum();
        bytes.div_ceil(self.block_size)
    }

    /// Makes every completed write durable (fdatasync).
    pub fn flush(&self) -> Result<(), BlockError> {
        self.store.flush().map_err(BlockError::Flush)
    }

    /// Deallocates the blocks; they read back as zeroes (their metadata as all ones).
    pub fn discard(&self, lba: u64, blocks: u64) -> Result<(), BlockError> {
        let (off, len) = self.check_writable(lba, blocks)?;
        if len == 0 {
            return Ok(());
        }
        self.store.punch_hole(off, len).map_err(BlockError::Write)?;
        self.unreadable.clear(lba, blocks);
        self.forget_meta(lba, blocks)
    }

    /// Writes zeroes over the blocks; `unmap` lets the store deallocate them instead
    /// (their metadata then reads as never written, all ones). Without `unmap` the
    /// metadata is left as it is: the caller writes what it should hold.
    pub fn write_zeroes(
        &self,
        lba: u64,
        blocks: u64,
        unmap: bool,
        fua: bool,
    ) -> Result<(), BlockError> {
        let (off, len) = self.check_writable(lba, blocks)?;
        let r = if unmap {
            self.store.punch_hole(off, len)
        } else {
            self.store.write_zeroes(off, len)
        };
        r.map_err(BlockError::Write)?;
        self.unreadable.clear(lba, blocks);
        if unmap {
            self.forget_meta(lba, blocks)?;
        }
        self.durable(fua)
    }

    /// Compares the blocks at `lba` with `slices`, through bounded buffers.
    pub fn compare(&self, lba: u64, slices: &[VolatileSlice<'_>]) -> Result<(), BlockError> {
        let blocks = self.blocks_of(slices);
        let (mut off, len) = self.check(lba, blocks)?;
        self.check_readable(lba, blocks)?;
        let mut stored = vec![0u8; (len as usize).min(BOUNCE_LIMIT)];
        let mut host = vec![0u8; stored.len()];
        for s in slices {
            let mut done = 0usize;
            while done < s.len() {
                let n = (s.len() - done).min(stored.len());
                let sub = s.subslice(done, n).map_err(|_| {
                    BlockError::HostMemory(io::Error::from_raw_os_error(libc::EFAULT))
                })?;
                self.store
                    .read(off, &mut stored[..n])
                    .map_err(BlockError::Read)?;
                sub.copy_to(&mut host[..n]);
                if stored[..n] != host[..n] {
                    return Err(BlockError::Miscompare);
                }
                done += n;
                off += n as u64;
            }
        }
        Ok(())
    }

    /// Reads the blocks without transferring them (Verify), through a bounded buffer.
    pub fn verify(&self, lba: u64, blocks: u64) -> Result<(), BlockError> {
        let (off, len) = self.check(lba, blocks)?;
        self.check_readable(lba, blocks)?;
        let mut buf = vec![0u8; (len as usize).min(BOUNCE_LIMIT)];
        let mut done = 0u64;
        while done < len {
            let n = ((len - done) as usize).min(buf.len());
            self.store
                .read(off + done, &mut buf[..n])
                .map_err(BlockError::Read)?;
            done += n as u64;
        }
        Ok(())
    }

    /// Copies `blocks` blocks from `src` at `src_lba` to this volume at `dst_lba`, as if
    /// the whole source were read before anything is written (ranges in one file may
    /// overlap). Block sizes must match (the caller checks and reports its own status).
    /// When both volumes have metadata of the same size, the metadata moves too.
    pub fn copy_from(
        self: &Arc<Self>,
        dst_lba: u64,
        src: &Arc<Volume>,
        src_lba: u64,
        blocks: u64,
        fua: bool,
    ) -> Result<(), BlockError> {
        let (s, _) = src.check(src_lba, blocks)?;
        let (d, len) = self.check_writable(dst_lba, blocks)?;
        src.check_readable(src_lba, blocks)?;
        let overlap = s < d + len && d < s + len;
        let r = if overlap && (Arc::ptr_eq(self, src) || same_file(src.store(), self.store())) {
            move_within(self.store(), s, d, len)
        } else {
            self.store.copy_range(d, src.store(), s, len)
        };
        let copy_err = |e| match e {
            CopyError::Read(e) => BlockError::Read(e),
            CopyError::Write(e) => BlockError::Write(e),
        };
        r.map_err(copy_err)?;
        if self.meta_size != 0 && self.meta_size == src.meta_size {
            let (s, _) = src.meta_range(src_lba, blocks)?;
            let (d, len) = self.meta_range(dst_lba, blocks)?;
            let overlap = s < d + len && d < s + len;
            let r = if overlap && (Arc::ptr_eq(self, src) || same_file(src.store(), self.store())) {
                move_within(self.store(), s, d, len)
            } else {
                self.store.copy_range(d, src.store(), s, len)
            };
            r.map_err(copy_err)?;
        }
        self.unreadable.clear(dst_lba, blocks);
        self.durable(fua)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vol(size: u64, bs: u64) -> Arc<Volume> {
        Arc::new(Volume::memory("t", size, bs, false).unwrap())
    }

    #[test]
    fn ranges_and_read_only() {
        let v = vol(1 << 20, 4096);
        assert_eq!(v.blocks(), 256);
        assert!(v.in_range(0, 256));
        assert!(!v.in_range(1, 256));
        assert!(!v.in_range(u64::MAX, 2));
        assert!(matches!(
            v.discard(250, 7),
            Err(BlockError::OutOfRange {
                lba: 250,
                blocks: 7
            })
        ));
        let ro = Volume::new(
            "ro".into(),
            Arc::new(memfd::create("r", 8192).unwrap()),
            512,
            true,
        )
        .unwrap();
        assert!(matches!(
            ro.write_zeroes(0, 1, false, false),
            Err(BlockError::ReadOnly)
        ));
        assert!(matches!(ro.discard(0, 1), Err(BlockError::ReadOnly)));
        assert!(ro.verify(0, 16).is_ok());
    }

    #[test]
    fn bad_geometry_is_refused() {
        let s: Arc<dyn Store> = Arc::new(memfd::create("g", 4096).unwrap());
        assert!(matches!(
            Volume::new("g".into(), s.clone(), 1000, false),
            Err(VolumeError::BlockSize(1000))
        ));
        assert!(matches!(
            Volume::new("g".into(), s, 8192, false),
            Err(VolumeError::TooSmall { .. })
        ));
    }

    #[test]
    fn copy_overlapping_within_one_volume_is_memmove() {
        let v = vol(1 << 20, 512);
        let data: Vec<u8> = (0..8 * 512).map(|i| (i % 251) as u8).collect();
        v.store().write(0, &data).unwrap();
        v.copy_from(2, &v, 0, 8, true).unwrap();
        let mut back = vec![0u8; data.len()];
        v.store().read(1024, &mut back).unwrap();
        assert_eq!(back, data);
        assert!(matches!(
            v.copy_from(2047, &v, 0, 2, false),
            Err(BlockError::OutOfRange { .. })
        ));
    }

    #[test]
    fn metadata_lives_after_the_data_and_reads_all_ones_until_written() {
        let v = Volume::memory("m", 1 << 20, 512, false)
            .unwrap()
            .with_metadata(8)
            .unwrap();
        // 1 MiB holds 2016 blocks of 512 + 8 bytes.
        assert_eq!((v.blocks(), v.meta_size()), (2016, 8));
        let v = Arc::new(v);
        let mut m = [0u8; 16];
        v.read_meta(10, &mut m).unwrap();
        assert_eq!(m, [0xff; 16]);
        v.write_meta(10, &[1, 2, 3, 4, 5, 6, 7, 8], false).unwrap();
        v.read_meta(10, &mut m[..8]).unwrap();
        assert_eq!(&m[..8], &[1, 2, 3, 4, 5, 6, 7, 8]);
        // Where it is in the store: after 2016 data blocks, inverted.
        let mut raw = [0u8; 8];
        v.store().read(2016 * 512 + 10 * 8, &mut raw).unwrap();
        assert_eq!(raw, [!1u8, !2, !3, !4, !5, !6, !7, !8]);
        // A copy moves it with the data; a discard forgets it.
        v.write_buf(10, &[9u8; 512], false).unwrap();
        v.copy_from(100, &v, 10, 1, false).unwrap();
        v.read_meta(100, &mut m[..8]).unwrap();
        assert_eq!(&m[..8], &[1, 2, 3, 4, 5, 6, 7, 8]);
        v.discard(100, 1).unwrap();
        v.read_meta(100, &mut m[..8]).unwrap();
        assert_eq!(&m[..8], &[0xff; 8]);
        assert!(matches!(
            v.read_meta(2016, &mut m[..8]),
            Err(BlockError::OutOfRange { .. })
        ));
        let plain = vol(1 << 20, 512);
        assert!(matches!(
            plain.read_meta(0, &mut m),
            Err(BlockError::NoMetadata)
        ));
    }
}
