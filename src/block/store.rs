//! Byte-addressed stores: the [`Store`] trait every backing (regular file, block device,
//! anonymous memfd) implements, and the copy helpers built on it.
//!
//! This layer knows nothing of NVMe or virtio. A [`Store`] reads and writes bytes at byte offsets,
//! either through ordinary buffers or directly into guest-memory slices (zero copy), and
//! offers the few whole-range operations a block device model needs: flush (fdatasync),
//! punch hole (deallocate), write zeroes and copy_range (for files: reflink, direct I/O
//! or copy_file_range, see `direct_copy.rs`; a bounded bounce buffer otherwise).
//!
#![forbid(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, RawFd};

use vm_memory::VolatileSlice;

/// Largest bounce buffer used by fallbacks (write zeroes, copy_range, verify).
pub const BOUNCE_LIMIT: usize = 1 << 20;

/// A byte-addressed store. All methods take `&self` and may be called from many threads.
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Size in bytes.
    fn size(&self) -> u64;

    /// Reads exactly `buf.len()` bytes at `offset`; bytes past the end of the backing read
    /// as zeroes.
    fn read(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;

    /// Writes all of `buf` at `offset`.
    fn write(&self, offset: u64, buf: &[u8]) -> io::Result<()>;

    /// Reads `slice.len()` bytes at `offset` straight into guest memory.
    fn read_to_slice(&self, offset: u64, slice: &VolatileSlice<'_>) -> io::Result<()>;

    /// Writes the bytes of `slice` (guest memory) at `offset`.
    fn write_from_slice(&self, offset: u64, slice: &VolatileSlice<'_>) -> io::Result<()>;

    /// Reads consecutive bytes at `offset` into several guest-memory slices in order.
    fn read_to_slices(&self, offset: u64, slices: &[VolatileSlice<'_>]) -> io::Result<()> {
        let mut off = offset;
        for s in slices {
            self.read_to_slice(off, s)?;
            off += s.len() as u64;
        }
        Ok(())
    }

    /// Writes several guest-memory slices, in order, as consecutive bytes at `offset`.
    fn write_from_slices(&self, offset: u64, slices: &[VolatileSlice<'_>]) -> io::Result<()> {
        let mut off = offset;
        for s in slices {
            self.write_from_slice(off, s)?;
            off += s.len() as u64;
        }
        Ok(())
    }

    /// Makes written data durable (fdatasync).
    fn flush(&self) -> io::Result<()>;

    /// Deallocates a range; it reads back as zeroes afterwards.
    fn punch_hole(&self, offset: u64, len: u64) -> io::Result<()>;

    /// Writes zeroes over a range (may or may not keep it allocated).
    fn write_zeroes(&self, offset: u64, len: u64) -> io::Result<()>;

    /// The file descriptor, when the store has one (lets `copy_range` use copy_file_range).
    fn raw_fd(&self) -> Option<RawFd>;

    /// A descriptor of the same file opened with O_DIRECT, when the store has one (lets
    /// `copy_range` copy large ranges past the page cache, see `direct_copy.rs`).
    fn direct_file(&self) -> Option<&std::fs::File> {
        None
    }

    /// Copies `len` bytes from `src` at `src_offset` to this store at `dst_offset`. The
    /// ranges must not overlap when both are the same file (callers handle overlap, see
    /// [`same_file`]).
    fn copy_range(
        &self,
        dst_offset: u64,
        src: &dyn Store,
        src_offset: u64,
        len: u64,
    ) -> Result<(), CopyError>;
}

/// Why a copy stopped: reading the source or writing the destination failed.
#[derive(Debug)]
pub enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

impl std::fmt::Display for CopyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CopyError::Read(e) => write!(f, "reading the source: {e}"),
            CopyError::Write(e) => write!(f, "writing the destination: {e}"),
        }
    }
}

impl std::error::Error for CopyError {}

/// Copies through a bounce buffer of at most [`BOUNCE_LIMIT`] bytes, front to back.
pub fn copy_range_bounce(
    src: &dyn Store,
    src_offset: u64,
    dst: &dyn Store,
    dst_offset: u64,
    len: u64,
) -> Result<(), CopyError> {
    let mut buf = vec![0u8; (len.min(BOUNCE_LIMIT as u64)) as usize];
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(buf.len() as u64) as usize;
        src.read(src_offset + done, &mut buf[..n])
            .map_err(CopyError::Read)?;
        dst.write(dst_offset + done, &buf[..n])
            .map_err(CopyError::Write)?;
        done += n as u64;
    }
    Ok(())
}

/// Moves `len` bytes inside one store from `src` to `dst` like memmove (the ranges may
/// overlap; the result is the original source bytes), through a buffer of at most
/// [`BOUNCE_LIMIT`] bytes.
pub fn move_within(store: &dyn Store, src: u64, dst: u64, len: u64) -> Result<(), CopyError> {
    if src == dst || len == 0 {
        return Ok(());
    }
    let mut buf = vec![0u8; len.min(BOUNCE_LIMIT as u64) as usize];
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(buf.len() as u64);
        // Forward when moving down, backward when moving up: no byte is overwritten
        // before it has been read.
        let off = if dst < src { done } else { len - done - n };
        store
            .read(src + off, &mut buf[..n as usize])
            .map_err(CopyError::Read)?;
        store
            .write(dst + off, &buf[..n as usize])
            .map_err(CopyError::Write)?;
        done += n;
    }
    Ok(())
}

/// (device, inode) of a store's file, when it has a descriptor.
fn file_id(s: &dyn Store) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let fd = s.raw_fd()?;
    // stat through /proc follows the descriptor to its inode (memfds included).
    let m = std::fs::metadata(format!("/proc/self/fd/{fd}")).ok()?;
    Some((m.dev(), m.ino()))
}

/// True if both stores are the same file (the same object, or two stores opened on one
/// path), so that byte ranges in them can overlap.
pub fn same_file(a: &dyn Store, b: &dyn Store) -> bool {
    if std::ptr::addr_eq(a as *const dyn Store, b as *const dyn Store) {
        return true;
    }
    match (file_id(a), file_id(b)) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

/// Returns the raw fd of anything that has one (a helper for implementations).
pub(crate) fn fd_of<T: AsRawFd>(t: &T) -> RawFd {
    t.as_raw_fd()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::{memfd, FileStore};

    #[test]
    fn memmove_both_directions() {
        let s = memfd::create("mv", 1 << 22).unwrap();
        let data: Vec<u8> = (0..(3 << 20)).map(|i| (i % 253) as u8).collect();
        s.write(0, &data).unwrap();
        // Move up by 1000 bytes (overlapping, backward copy needed).
        move_within(&s, 0, 1000, data.len() as u64).unwrap();
        let mut back = vec![0u8; data.len()];
        s.read(1000, &mut back).unwrap();
        assert_eq!(back, data);
        // And down again.
        move_within(&s, 1000, 0, data.len() as u64).unwrap();
        s.read(0, &mut back).unwrap();
        assert_eq!(back, data);
    }

    #[test]
    fn same_file_sees_through_two_opens() {
        let p = std::env::temp_dir().join(format!("vnvme-same-{}", std::process::id()));
        let _ = std::fs::remove_file(&p);
        let a = FileStore::open(&p, Some(4096), false).unwrap();
        let b = FileStore::open(&p, None, false).unwrap();
        let m = memfd::create("m", 4096).unwrap();
        assert!(same_file(&a, &a));
        assert!(same_file(&a, &b));
        assert!(!same_file(&a, &m));
        assert!(same_file(&m, &m));
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn bounce_copy_between_memfds() {
        let a = memfd::create("a", 3 << 20).unwrap();
        let b = memfd::create("b", 3 << 20).unwrap();
        let data: Vec<u8> = (0..(2 << 20) + 17).map(|i| (i % 251) as u8).collect();
        a.write(5, &data).unwrap();
        copy_range_bounce(&a, 5, &b, 100, data.len() as u64).unwrap();
        let mut back = vec![0u8; data.len()];
        b.read(100, &mut back).unwrap();
        assert_eq!(back, data);
    }
}
