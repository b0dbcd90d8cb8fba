//! Stores backed by a file descriptor: regular files (created sparse when missing and a
//! size is given), block devices (sized with BLKGETSIZE64) and, through
//! `memfd.rs`, anonymous memfds. I/O is positional (pread/pwrite), so one store is
//! shared by every queue without a lock.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::Path;
use std::sync::OnceLock;

use vm_memory::VolatileSlice;

use super::direct_copy;
use super::store::{copy_range_bounce, fd_of, CopyError, Store, BOUNCE_LIMIT};

/// `_IOR(0x12, 114, size_t)`: size of a block device in bytes.
const BLKGETSIZE64: libc::c_ulong = 0x8008_1272;

/// What kind of object the descriptor refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Regular,
    BlockDevice,
    Memfd,
}

/// A store on a file descriptor.
#[derive(Debug)]
pub struct FileStore {
    file: File,
    size: u64,
    kind: FileKind,
    /// A second descriptor with O_DIRECT for large copies, opened on first use (None
    /// inside when it cannot be had).
    direct: OnceLock<Option<File>>,
}

/// Why a file store could not be opened: a short phrase, ready to follow the option name.
#[derive(Debug)]
pub struct OpenError(pub String);

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl FileStore {
    /// Wraps an already open descriptor of a known size.
    pub fn from_file(file: File, size: u64, kind: FileKind) -> FileStore {
        FileStore {
            file,
            size,
            kind,
            direct: OnceLock::new(),
        }
    }

    /// Opens `path`. A missing file is created sparse when `size` is given. An existing
    /// regular file smaller than `size` is extended; without `size` its length is used.
    /// A block device is used up to `size` (or whole).
    pub fn open(path: &Path, size: Option<u64>, readonly: bool) -> Result<FileStore, OpenError> {
        let meta = match std::fs::metadata(path) {
            Ok(m) => Some(m),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(OpenError(format!("cannot open: {e}"))),
        };
        let Some(meta) = meta else {
            let Some(size) = size else {
                return Err(OpenError(
                    "cannot open: file does not exist and no size was given".into(),
                ));
            };
            if readonly {
                return Err(OpenError(
                    "cannot open: file does not exist and the namespace is read-only".into(),
                ));
            }
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(path)
                .map_err(|e| OpenError(format!("cannot create: {e}")))?;
            file.set_len(size)
                .map_err(|e| OpenError(format!("cannot set size: {e}")))?;
            return Ok(FileStore::from_file(file, size, FileKind::Regular));
        };
        let ft = meta.file_type();
        let kind = if ft.is_block_device() {
            FileKind::BlockDevice
        } else if ft.is_file() {
            FileKind::Regular
        } else {
            return Err(OpenError(
                "cannot open: not a regular file or block device".into(),
            ));
        };
        let file = OpenOptions::new()
            .read(true)
            .write(!readonly)
            .open(path)
            .map_err(|e| OpenError(format!("cannot open: {e}")))?;
        let have = match kind {
            FileKind::BlockDevice => block_device_size(&file)
                .map_err(|e| OpenError(format!("cannot read the device size: {e}")))?,
            _ => meta.len(),
        };
        let size = match (size, kind) {
            (None, _) if have == 0 => {
                return Err(OpenError(
                    "cannot use: it is empty and no size was given".into(),
                ))
            }
            (None, _) => have,
            (Some(want), FileKind::BlockDevice) if want > have => {
                return Err(OpenError(format!(
                    "size {want} is larger than the device ({have} bytes)"
                )))
            }
            (Some(want), _) if want > have => {
                if readonly {
                    return Err(OpenError(format!(
                        "size {want} is larger than the read-only file ({have} bytes)"
                    )));
                }
                file.set_len(want)
                    .map_err(|e| OpenError(format!("cannot extend: {e}")))?;
                want
            }
            (Some(want), _) => want,
        };
        Ok(FileStore::from_file(file, size, kind))
    }

    pub fn kind(&self) -> FileKind {
        self.kind
    }

    fn fallocate(&self, mode: libc::c_int, offset: u64, len: u64) -> io::Result<()> {
        let off = libc::off_t::try_from(offset)
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        let len =
            libc::off_t::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        loop {
            // SAFETY: fallocate only reads its integer arguments; the fd is owned by `self`.
            let r = unsafe { libc::fallocate(self.file.as_raw_fd(), mode, off, len) };
            if r == 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    fn zero_by_writing(&self, offset: u64, len: u64) -> io::Result<()> {
        let buf = vec![0u8; len.min(BOUNCE_LIMIT as u64) as usize];
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(buf.len() as u64) as usize;
            self.write(offset + done, &buf[..n])?;
            done += n as u64;
        }
        Ok(())
    }
}

/// Most iovecs passed to one preadv/pwritev (Linux IOV_MAX).
const IOV_MAX: usize = 1024;

impl FileStore {
    /// preadv/pwritev straight between the file and guest memory, resuming after short
    /// transfers. Reads past the end of the file fill the rest with zeroes.
    fn vectored(&self, offset: u64, slices: &[VolatileSlice<'_>], write: bool) -> io::Result<()> {
        let guards: Vec<_> = slices.iter().map(|s| s.ptr_guard_mut()).collect();
        let mut idx = 0usize; // first slice not completely transferred
        let mut skip = 0usize; // bytes of slices[idx] already transferred
        let mut off = offset;
        let mut iov: Vec<libc::iovec> = Vec::with_capacity(slices.len().min(IOV_MAX));
        while idx < slices.len() {
            iov.clear();
            for (k, (s, g)) in slices[idx..].iter().zip(&guards[idx..]).enumerate() {
                if iov.len() == IOV_MAX {
                    break;
                }
                let start = if k == 0 { skip } else { 0 };
                iov.push(libc::iovec {
                    // SAFETY: `start <= s.len()`, so the pointer stays inside the slice's
                    // mapping, which `g` keeps valid for the whole call.
                    iov_base: unsafe { g.as_ptr().add(start) } as *mut libc::c_void,
                    iov_len: s.len() - start,
                });
            }
            let cnt = iov.len() as libc::c_int;
            // SAFETY: every iovec describes memory inside a live guest-memory slice (see
            // above); the kernel reads from or writes to at most those bytes.
            let r = unsafe {
                if write {
                    libc::pwritev(self.file.as_raw_fd(), iov.as_ptr(), cnt, to_off(off)?)
                } else {
                    libc::preadv(self.file.as_raw_fd(), iov.as_ptr(), cnt, to_off(off)?)
                }
            };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if r == 0 {
                if write {
                    return Err(io::Error::from(io::ErrorKind::WriteZero));
                }
                // End of file: the rest reads as zeroes.
                let zeroes = vec![0u8; 4096];
                for (k, s) in slices[idx..].iter().enumerate() {
                    let mut pos = if k == 0 { skip } else { 0 };
                    while pos < s.len() {
                        let n = (s.len() - pos).min(zeroes.len());
                        s.subslice(pos, n)
                            .map_err(|_| io::Error::from_raw_os_error(libc::EFAULT))?
                            .copy_from(&zeroes[..n]);
                        pos += n;
                    }
                }
                return Ok(());
            }
            let mut n = r as usize;
            off += n as u64;
            while n > 0 && idx < slices.len() {
                let avail = slices[idx].len() - skip;
                if n >= avail {
                    n -= avail;
                    idx += 1;
                    skip = 0;
                } else {
                    skip += n;
                    n = 0;
                }
            }
            // Skip empty slices so that a finished transfer ends the loop.
            while idx < slices.len() && slices[idx].len() == skip {
                idx += 1;
                skip = 0;
            }
        }
        Ok(())
    }
}

fn unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) | Some(libc::EINVAL) | Some(libc::ENODEV)
    )
}

fn block_device_size(file: &File) -> io::Result<u64> {
    let mut size: u64 = 0;
    // SAFETY: BLKGETSIZE64 writes one u64 through the pointer, which points to a live local.
    let r = unsafe { libc::ioctl(file.as_raw_fd(), BLKGETSIZE64 as _, &mut size as *mut u64) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(size)
}

fn to_off(offset: u64) -> io::Result<libc::off_t> {
    libc::off_t::try_from(offset).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

impl Store for FileStore {
    fn size(&self) -> u64 {
        self.size
    }

    fn read(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let mut done = 0usize;
        while done < buf.len() {
            match self.file.read_at(&mut buf[done..], offset + done as u64) {
                Ok(0) => {
                    buf[done..].fill(0);
                    break;
                }
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn write(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        self.file.write_all_at(buf, offset)
    }

    fn read_to_slice(&self, offset: u64, slice: &VolatileSlice<'_>) -> io::Result<()> {
        let guard = slice.ptr_guard_mut();
        let base = guard.as_ptr();
        let len = slice.len();
        let mut done = 0usize;
        while done < len {
            // SAFETY: `base..base+len` is a live guest-memory mapping held by `slice` (and
            // its guard) for the whole call; pread writes at most `len - done` bytes at
            // `base + done`. Guest memory is shared with the guest, which is why it is only
            // ever touched through raw pointers or volatile accesses.
            let r = unsafe {
                libc::pread(
                    self.file.as_raw_fd(),
                    base.add(done) as *mut libc::c_void,
                    len - done,
                    to_off(offset + done as u64)?,
                )
            };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if r == 0 {
                // Past the end of the backing file: the rest reads as zeroes.
                let zeroes = vec![0u8; (len - done).min(BOUNCE_LIMIT)];
                while done < len {
                    let n = (len - done).min(zeroes.len());
                    let sub = slice
                        .subslice(done, n)
                        .map_err(|_| io::Error::from_raw_os_error(libc::EFAULT))?;
                    sub.copy_from(&zeroes[..n]);
                    done += n;
                }
                break;
            }
            done += r as usize;
        }
        Ok(())
    }

    fn write_from_slice(&self, offset: u64, slice: &VolatileSlice<'_>) -> io::Result<()> {
        let guard = slice.ptr_guard();
        let base = guard.as_ptr();
        let len = slice.len();
        let mut done = 0usize;
        while done < len {
            // SAFETY: `base..base+len` is a live guest-memory mapping held by `slice` for
            // the whole call; pwrite reads at most `len - done` bytes from `base + done`.
            let r = unsafe {
                libc::pwrite(
                    self.file.as_raw_fd(),
                    base.add(done) as *const libc::c_void,
                    len - done,
                    to_off(offset + done as u64)?,
                )
            };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if r == 0 {
                return Err(io::Error::from(io::ErrorKind::WriteZero));
            }
            done += r as usize;
        }
        Ok(())
    }

    fn read_to_slices(&self, offset: u64, slices: &[VolatileSlice<'_>]) -> io::Result<()> {
        self.vectored(offset, slices, false)
    }

    fn write_from_slices(&self, offset: u64, slices: &[VolatileSlice<'_>]) -> io::Result<()> {
        self.vectored(offset, slices, true)
    }

    fn flush(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn punch_hole(&self, offset: u64, len: u64) -> io::Result<()> {
        if len == 0 {
            return Ok(());
        }
        match self.fallocate(
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            offset,
            len,
        ) {
            Ok(()) => Ok(()),
            Err(e) if unsupported(&e) => self.zero_by_writing(offset, len),
            Err(e) => Err(e),
        }
    }

    fn write_zeroes(&self, offset: u64, len: u64) -> io::Result<()> {
        if len == 0 {
            return Ok(());
        }
        match self.fallocate(
            libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE,
            offset,
            len,
        ) {
            Ok(()) => Ok(()),
            Err(e) if unsupported(&e) => self.zero_by_writing(offset, len),
            Err(e) => Err(e),
        }
    }

    fn raw_fd(&self) -> Option<RawFd> {
        Some(fd_of(&self.file))
    }

    fn direct_file(&self) -> Option<&File> {
        if self.kind == FileKind::Memfd {
            return None;
        }
        self.direct
            .get_or_init(|| direct_copy::reopen_direct(&self.file))
            .as_ref()
    }

    /// In order (`direct_copy.rs` says why), for a large aligned range: a reflink where
    /// the file system shares extents, else direct I/O if its source is not in the page
    /// cache; copy_file_range(2) in the kernel for the rest (which reflinks by itself
    /// where it can), resuming after short copies.
    /// When that cannot be used (EXDEV, ENOSYS, EOPNOTSUPP, EINVAL — e.g. overlapping
    /// ranges of one file — or any other error), the rest goes through a bounded bounce
    /// buffer, which also tells a read failure from a write failure.
    fn copy_range(
        &self,
        dst_offset: u64,
        src: &dyn Store,
        src_offset: u64,
        len: u64,
    ) -> Result<(), CopyError> {
        let Some(src_fd) = src.raw_fd() else {
            return copy_range_bounce(src, src_offset, self, dst_offset, len);
        };
        let mut done = 0;
        // Only a range direct I/O could take needs the explicit reflink: for the others
        // copy_file_range itself shares extents where the file system can.
        if direct_copy::direct_eligible(src_offset, dst_offset, len) {
            let dst_fd = self.file.as_raw_fd();
            if direct_copy::reflink(src_fd, src_offset, dst_fd, dst_offset, len) {
                return Ok(());
            }
            if let (Some(s), Some(d)) = (src.direct_file(), self.direct_file()) {
                if !direct_copy::source_cached(src_fd, src_offset, len) {
                    done = direct_copy::copy_direct(s, src_offset, d, dst_offset, len);
                }
            }
        }
        done += self.kernel_copy(src_fd, src_offset + done, dst_offset + done, len - done);
        if done < len {
            copy_range_bounce(src, src_offset + done, self, dst_offset + done, len - done)?;
        }
        Ok(())
    }
}

impl FileStore {
    /// copy_file_range(2) from `src_fd` until `len` bytes are copied or the kernel
    /// refuses; returns how many bytes were copied (no fallback).
    pub fn kernel_copy(&self, src_fd: RawFd, src_offset: u64, dst_offset: u64, len: u64) -> u64 {
        let (Ok(mut off_in), Ok(mut off_out)) = (to_off(src_offset), to_off(dst_offset)) else {
            return 0;
        };
        let mut done = 0u64;
        while done < len {
            let want = (len - done).min(1 << 30) as usize;
            // SAFETY: both offsets point to live locals that copy_file_range updates; the
            // descriptors are owned by live stores for the duration of the call.
            let r = unsafe {
                libc::copy_file_range(
                    src_fd,
                    &mut off_in,
                    self.file.as_raw_fd(),
                    &mut off_out,
                    want,
                    0,
                )
            };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                if !(unsupported(&e) || e.raw_os_error() == Some(libc::EXDEV)) {
                    log::debug!("copy_file_range failed ({e}); using the bounce buffer");
                }
                break;
            }
            if r == 0 {
                break;
            }
            done += r as u64;
        }
        done
    }

    /// Writes back and drops this file's pages from the page cache (fdatasync, then
    /// POSIX_FADV_DONTNEED), so that the next reads come from the device.
    pub fn drop_cache(&self) -> io::Result<()> {
        self.file.sync_data()?;
        // SAFETY: posix_fadvise only reads its integer arguments; the fd is owned by self.
        let r =
            unsafe { libc::posix_fadvise(self.file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        if r != 0 {
            return Err(io::Error::from_raw_os_error(r));
        }
        Ok(())
    }
}

/// The file system type (statfs f_type) holding `path`.
pub fn fs_type(path: &Path) -> io::Result<i64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let mut st = std::mem::MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: `c` is NUL-terminated and outlives the call; statfs fills the struct `st`
    // points to, which is large enough for it.
    let r = unsafe { libc::statfs(c.as_ptr(), st.as_mut_ptr()) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statfs succeeded, so it initialised the struct (it was zeroed anyway).
    let st = unsafe { st.assume_init() };
    // f_type's width differs between architectures.
    #[allow(clippy::unnecessary_cast)]
    Ok(st.f_type as i64)
}

/// statfs f_type of tmpfs and ramfs: memory, not a device.
pub const TMPFS_MAGIC: i64 = 0x0102_1994;
pub const RAMFS_MAGIC: i64 = 0x8584_58f6;

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!(
            "vnvme-file-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn creates_sparse_file_of_size() {
        let d = tmpdir().join("create");
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join("ns.img");
        let s = FileStore::open(&p, Some(1 << 30), false).unwrap();
        assert_eq!(s.size(), 1 << 30);
        let meta = std::fs::metadata(&p).unwrap();
        assert_eq!(meta.len(), 1 << 30);
        use std::os::unix::fs::MetadataExt;
        assert!(meta.blocks() * 512 < 1 << 20, "file must be sparse");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn open_rules() {
        let d = tmpdir().join("rules");
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join("x");
        let e = FileStore::open(&p, None, false).unwrap_err();
        assert!(e.0.contains("no size"), "{}", e.0);
        std::fs::write(&p, vec![1u8; 8192]).unwrap();
        assert_eq!(FileStore::open(&p, None, false).unwrap().size(), 8192);
        let s = FileStore::open(&p, Some(16384), false).unwrap();
        assert_eq!(s.size(), 16384);
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 16384);
        assert_eq!(FileStore::open(&p, Some(4096), true).unwrap().size(), 4096);
        assert!(FileStore::open(&p, Some(1 << 20), true).is_err());
        assert!(FileStore::open(&d, None, false)
            .unwrap_err()
            .0
            .contains("not a regular"));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn rw_punch_zero_copy_flush() {
        let d = tmpdir().join("ops");
        std::fs::create_dir_all(&d).unwrap();
        let s = FileStore::open(&d.join("a"), Some(1 << 20), false).unwrap();
        let t = FileStore::open(&d.join("b"), Some(1 << 20), false).unwrap();
        s.write(4096, &[7u8; 8192]).unwrap();
        s.punch_hole(4096, 4096).unwrap();
        let mut b = vec![9u8; 8192];
        s.read(4096, &mut b).unwrap();
        assert!(b[..4096].iter().all(|&x| x == 0));
        assert!(b[4096..].iter().all(|&x| x == 7));
        s.write_zeroes(8192, 100).unwrap();
        s.read(8192, &mut b[..200]).unwrap();
        assert!(b[..100].iter().all(|&x| x == 0));
        assert!(b[100..200].iter().all(|&x| x == 7));
        t.copy_range(0, &s, 8192, 4096).unwrap();
        t.read(0, &mut b[..4096]).unwrap();
        assert!(b[..100].iter().all(|&x| x == 0));
        assert!(b[100..4096].iter().all(|&x| x == 7));
        s.flush().unwrap();
        std::fs::remove_dir_all(&d).unwrap();
    }

    /// Large aligned ranges: a cold source goes by direct I/O (between two files, and
    /// within one), a cached one by copy_file_range; the bytes are the same either way,
    /// the buffered descriptor sees them at once, and the bytes around are untouched.
    #[test]
    fn large_copies_cold_and_cached_give_the_source_bytes() {
        let d = tmpdir().join("large");
        std::fs::create_dir_all(&d).unwrap();
        let len = direct_copy::DIRECT_PIECE as u64 + (5 << 20);
        let a = FileStore::open(&d.join("a"), Some(3 * len), false).unwrap();
        let b = FileStore::open(&d.join("b"), Some(3 * len), false).unwrap();
        let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8 + 1).collect();
        a.write(0, &data).unwrap();
        b.write(0, &vec![0xEEu8; (3 * len) as usize]).unwrap();
        let mut back = vec![0u8; len as usize];
        for cold in [true, false] {
            if cold {
                // Dropping is best effort in the kernel (pages under writeback or busy
                // stay): a few tries, as a loaded machine may need (a CI run failed
                // here once with a single try).
                let dropped = (0..10).any(|_| {
                    a.drop_cache().unwrap();
                    b.drop_cache().unwrap();
                    let gone = !direct_copy::source_cached(fd_of(&a.file), 0, len);
                    if !gone {
                        std::thread::sleep(std::time::Duration::from_millis(100));
                    }
                    gone
                });
                assert!(dropped, "the source still cached after ten drops");
            } else {
                a.read(0, &mut back).unwrap(); // now cached
                assert!(direct_copy::source_cached(fd_of(&a.file), 0, len));
            }
            b.copy_range(len, &a, 0, len).unwrap();
            b.read(len, &mut back).unwrap();
            assert!(back == data, "file to file (cold {cold}) differs");
            a.copy_range(2 * len, &a, 0, len).unwrap();
            a.read(2 * len, &mut back).unwrap();
            assert!(back == data, "within one file (cold {cold}) differs");
            let mut edge = vec![0u8; 4096];
            b.read(len - 4096, &mut edge).unwrap();
            assert!(
                edge.iter().all(|&x| x == 0xEE),
                "bytes before the range changed"
            );
            b.read(2 * len, &mut edge).unwrap();
            assert!(
                edge.iter().all(|&x| x == 0xEE),
                "bytes after the range changed"
            );
        }
        assert!(a.direct_file().is_some(), "no O_DIRECT descriptor on ext4");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn copy_range_between_files_memfds_and_within_one_file() {
        let d = tmpdir().join("copy");
        std::fs::create_dir_all(&d).unwrap();
        let f = FileStore::open(&d.join("f"), Some(4 << 20), false).unwrap();
        let m = super::super::memfd::create("m", 4 << 20).unwrap();
        let data: Vec<u8> = (0..(3 << 20) + 512).map(|i| (i % 249) as u8 + 1).collect();
        f.write(0, &data).unwrap();
        let n = data.len() as u64;
        let mut back = vec![0u8; data.len()];
        // File to memfd, memfd to memfd, memfd to file: copy_file_range or fallback.
        m.copy_range(4096, &f, 0, n).unwrap();
        m.read(4096, &mut back).unwrap();
        assert!(back == data, "file -> memfd");
        let m2 = super::super::memfd::create("m2", 4 << 20).unwrap();
        m2.copy_range(0, &m, 4096, n).unwrap();
        m2.read(0, &mut back).unwrap();
        assert!(back == data, "memfd -> memfd");
        let g = FileStore::open(&d.join("g"), Some(4 << 20), false).unwrap();
        g.copy_range(512, &m2, 0, n).unwrap();
        g.read(512, &mut back).unwrap();
        assert!(back == data, "memfd -> file");
        // Within one file, not overlapping.
        f.copy_range(n, &f, 0, 1 << 20).unwrap();
        f.read(n, &mut back[..1 << 20]).unwrap();
        assert!(back[..1 << 20] == data[..1 << 20], "same file");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn drop_cache_and_fs_type() {
        let d = tmpdir().join("cache");
        std::fs::create_dir_all(&d).unwrap();
        let f = FileStore::open(&d.join("f"), Some(1 << 20), false).unwrap();
        f.write(0, &[1u8; 4096]).unwrap();
        f.drop_cache().unwrap();
        let mut b = [0u8; 4096];
        f.read(0, &mut b).unwrap();
        assert_eq!(b, [1u8; 4096]);
        assert!(fs_type(&d).is_ok());
        assert!(fs_type(&d.join("missing")).is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn vectored_io_into_guest_memory() {
        use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};
        let d = tmpdir().join("vec");
        std::fs::create_dir_all(&d).unwrap();
        let m = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        // 1500 scattered 100-byte slices: more than one preadv (IOV_MAX) worth.
        let parts: Vec<u64> = (0..1500u64).map(|i| (i * 613) % 10000 * 100).collect();
        let mut sorted = parts.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), parts.len(), "slices must not overlap");
        let slices: Vec<_> = parts
            .iter()
            .map(|a| m.get_slice(GuestAddress(*a), 100).unwrap())
            .collect();
        let data: Vec<u8> = (0..150_000u32).map(|i| (i % 251) as u8).collect();
        for (k, a) in parts.iter().enumerate() {
            m.write_slice(&data[k * 100..k * 100 + 100], GuestAddress(*a))
                .unwrap();
        }
        let s = FileStore::open(&d.join("f"), Some(1 << 20), false).unwrap();
        s.write_from_slices(7, &slices).unwrap();
        let mut back = vec![0u8; data.len()];
        s.read(7, &mut back).unwrap();
        assert_eq!(back, data);
        for a in &parts {
            m.write_slice(&[0u8; 100], GuestAddress(*a)).unwrap();
        }
        s.read_to_slices(7, &slices).unwrap();
        for (k, a) in parts.iter().enumerate() {
            let mut b = [0u8; 100];
            m.read_slice(&mut b, GuestAddress(*a)).unwrap();
            assert_eq!(&b[..], &data[k * 100..k * 100 + 100], "slice {k}");
        }
        // A store larger than its file: bytes past the end read as zeroes.
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(d.join("short"))
            .unwrap();
        f.write_all_at(&[5u8; 150], 0).unwrap();
        let short = FileStore::from_file(f, 4096, FileKind::Regular);
        for a in &parts[..3] {
            m.write_slice(&[9u8; 100], GuestAddress(*a)).unwrap();
        }
        short.read_to_slices(0, &slices[..3]).unwrap();
        let mut b = [0u8; 100];
        m.read_slice(&mut b, GuestAddress(parts[1])).unwrap();
        assert_eq!(&b[..50], &[5u8; 50]);
        assert_eq!(&b[50..], &[0u8; 50]);
        m.read_slice(&mut b, GuestAddress(parts[2])).unwrap();
        assert_eq!(b, [0u8; 100]);
        std::fs::remove_dir_all(&d).unwrap();
    }

    /// Needs root and loop devices: `cargo test -- --ignored block_device`.
    #[test]
    #[ignore]
    fn block_device_via_loop() {
        let d = tmpdir().join("loop");
        std::fs::create_dir_all(&d).unwrap();
        let img = d.join("img");
        std::fs::write(&img, vec![0u8; 4 << 20]).unwrap();
        let out = std::process::Command::new("losetup")
            .args(["-f", "--show"])
            .arg(&img)
            .output()
            .unwrap();
        assert!(out.status.success(), "losetup failed");
        let dev = String::from_utf8(out.stdout).unwrap().trim().to_string();
        let result = std::panic::catch_unwind(|| {
            let s = FileStore::open(Path::new(&dev), None, false).unwrap();
            assert_eq!(s.kind(), FileKind::BlockDevice);
            assert_eq!(s.size(), 4 << 20);
            let e = FileStore::open(Path::new(&dev), Some(8 << 20), false).unwrap_err();
            assert!(e.0.contains("larger than the device"), "{}", e.0);
            assert_eq!(
                FileStore::open(Path::new(&dev), Some(1 << 20), false)
                    .unwrap()
                    .size(),
                1 << 20
            );
            s.write(8192, &[3u8; 8192]).unwrap();
            s.punch_hole(8192, 4096).unwrap();
            s.write_zeroes(12288, 512).unwrap();
            s.flush().unwrap();
            let mut b = vec![9u8; 8192];
            s.read(8192, &mut b).unwrap();
            assert!(b[..4096 + 512].iter().all(|&x| x == 0));
            assert!(b[4096 + 512..].iter().all(|&x| x == 3));
        });
        let _ = std::process::Command::new("losetup")
            .arg("-d")
            .arg(&dev)
            .status();
        std::fs::remove_dir_all(&d).unwrap();
        if let Err(p) = result {
            std::panic::resume_unwind(p);
        }
    }
}
