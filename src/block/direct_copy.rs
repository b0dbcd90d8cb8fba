//! How a large copy between two file descriptors is done, fastest first:
//!
//! 1. **reflink** (`FICLONERANGE`): on XFS, btrfs and other file systems that share
//!    extents, the copy is a metadata operation whatever its size; tried first so that such
//!    a file system never gets a real copy;
//! 2. **direct I/O** for large, 4 KiB-aligned ranges whose source is not in the page cache:
//!    O_DIRECT reads and writes through two bounded buffers, in big pieces, so the data
//!    never enters the page cache and the disk sees a few large requests. On a cold source
//!    on this machine's ext4 this was 4× faster than `copy_file_range`, which on a
//!    non-reflink file system pulls every page through the page cache behind a small
//!    readahead window and then throttles on its own write-back (docs/performance.md,
//!    "Large copies");
//! 3. the caller's `copy_file_range` (in the kernel, through the page cache) for the rest:
//!    small or unaligned ranges, a source already cached (copying cached pages is cheaper
//!    than reading the disk again), file systems without O_DIRECT, and whatever a direct
//!    pass left undone.
//!
//! Direct I/O stays coherent with the buffered descriptor the rest of the store uses: the
//! kernel writes dirty cached pages of a range back before an O_DIRECT read of it and drops
//! cached pages of a range an O_DIRECT write covers. Durability is unchanged: a Flush or FUA
//! is still an fdatasync of the file, which covers data written through either descriptor.
//!
//! This module owns the two system calls std does not wrap (the `FICLONERANGE` ioctl and
//! `preadv2` with `RWF_NOWAIT`).

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::FileExt;

/// Ranges shorter than this are left to copy_file_range (the page cache is fine for them).
pub const DIRECT_MIN: u64 = 4 << 20;
/// Bytes moved per direct read and write, and the size of each of a copy's two buffers.
pub const DIRECT_PIECE: usize = 8 << 20;
/// Offsets and lengths of a direct copy are multiples of this (the largest logical block
/// size of common disks, and the buffer's alignment).
pub const DIRECT_ALIGN: u64 = 4096;

/// `_IOW(0x94, 13, struct file_clone_range)`.
const FICLONERANGE: libc::c_ulong = 0x4020_940d;

/// `struct file_clone_range` of `<linux/fs.h>`.
#[repr(C)]
struct FileCloneRange {
    src_fd: i64,
    src_offset: u64,
    src_length: u64,
    dest_offset: u64,
}

/// Shares `len` bytes of `src_fd` at `src_offset` into `dst_fd` at `dst_offset` (reflink).
/// False when the file system cannot (EOPNOTSUPP, EXDEV, EINVAL for unaligned ranges,
/// ENOTTY, ...): nothing was changed then.
pub fn reflink(src_fd: RawFd, src_offset: u64, dst_fd: RawFd, dst_offset: u64, len: u64) -> bool {
    if len == 0 {
        // A zero length means "to the end of the file" to the ioctl.
        return true;
    }
    let arg = FileCloneRange {
        src_fd: src_fd as i64,
        src_offset,
        src_length: len,
        dest_offset: dst_offset,
    };
    loop {
        // SAFETY: FICLONERANGE reads one `struct file_clone_range`, which `arg` is (same
        // layout, repr(C)), and writes nothing through the pointer; both descriptors are
        // owned by live stores for the duration of the call.
        let r = unsafe { libc::ioctl(dst_fd, FICLONERANGE as _, &arg as *const FileCloneRange) };
        if r == 0 {
            return true;
        }
        if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return false;
        }
    }
}

/// True if the 4 KiB at `offset` of `fd` are in the page cache: a `preadv2` with
/// `RWF_NOWAIT` returns data instead of EAGAIN. False when unknown (the flag unsupported).
pub fn cached(fd: RawFd, offset: u64) -> bool {
    let Ok(off) = libc::off_t::try_from(offset) else {
        return false;
    };
    let mut buf = [0u8; DIRECT_ALIGN as usize];
    let iov = libc::iovec {
        iov_base: buf.as_mut_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: the one iovec describes `buf`, a live local the kernel writes at most
    // `buf.len()` bytes into; the descriptor is owned by a live store.
    let r = unsafe { libc::preadv2(fd, &iov, 1, off, libc::RWF_NOWAIT) };
    r > 0
}

/// True if the source range looks cached: its middle or its last 4 KiB is in the page
/// cache. (Not its first: readahead of whatever read the bytes before it, e.g. the copy of
/// the previous range, often spills a few hundred KiB into it.)
pub fn source_cached(fd: RawFd, offset: u64, len: u64) -> bool {
    let mid = offset + len / 2 / DIRECT_ALIGN * DIRECT_ALIGN;
    cached(fd, mid) || cached(fd, offset + len.saturating_sub(DIRECT_ALIGN))
}

/// True if a range of `len` bytes from `src_offset` to `dst_offset` may be copied with
/// direct I/O: long enough and aligned at both ends.
pub fn direct_eligible(src_offset: u64, dst_offset: u64, len: u64) -> bool {
    len >= DIRECT_MIN
        && src_offset.is_multiple_of(DIRECT_ALIGN)
        && dst_offset.is_multiple_of(DIRECT_ALIGN)
        && len.is_multiple_of(DIRECT_ALIGN)
}

/// A buffer aligned for O_DIRECT.
struct Aligned {
    storage: Vec<u8>,
    start: usize,
    len: usize,
}

impl Aligned {
    fn new(len: usize) -> Aligned {
        let storage = vec![0u8; len + DIRECT_ALIGN as usize];
        let start = storage.as_ptr().align_offset(DIRECT_ALIGN as usize);
        Aligned {
            storage,
            start,
            len,
        }
    }

    /// The first `n` bytes (at most the buffer's length).
    fn bytes(&mut self, n: usize) -> &mut [u8] {
        let n = n.min(self.len);
        &mut self.storage[self.start..self.start + n]
    }
}

/// Reads the piece of at most `want` bytes at `offset` into `buf`; returns the bytes read,
/// cut to whole [`DIRECT_ALIGN`] blocks (0 on an error or at the end of the file).
fn read_piece(src: &File, buf: &mut Aligned, offset: u64, want: usize) -> usize {
    match src.read_at(buf.bytes(want), offset) {
        Ok(k) => k - k % DIRECT_ALIGN as usize,
        Err(e) => {
            log::debug!("direct copy: read at {offset}: {e}");
            0
        }
    }
}

fn write_piece(dst: &File, buf: &mut Aligned, offset: u64, n: usize) -> bool {
    match dst.write_all_at(buf.bytes(n), offset) {
        Ok(()) => true,
        Err(e) => {
            log::debug!("direct copy: write at {offset}: {e}");
            false
        }
    }
}

/// Copies up to `len` bytes from `src` at `src_offset` to `dst` at `dst_offset` (both
/// opened with O_DIRECT) in pieces of at most [`DIRECT_PIECE`] bytes. Stops at the first
/// error or short read (end of the source file) and returns the bytes copied, a multiple of
/// [`DIRECT_ALIGN`]; the caller copies the rest another way, which also reports any real
/// I/O error with its own path.
///
/// With more than one piece, a reader thread reads the next piece while this thread writes
/// the last one (two buffers, so at most 2 × [`DIRECT_PIECE`] bytes per copy): the disk
/// sees a read and a write in flight, not one after the other. If the thread cannot be
/// started, the pieces go one after the other.
pub fn copy_direct(src: &File, src_offset: u64, dst: &File, dst_offset: u64, len: u64) -> u64 {
    let piece = len.min(DIRECT_PIECE as u64) as usize;
    if len > piece as u64 {
        if let Some(done) = copy_pipelined(src, src_offset, dst, dst_offset, len, piece) {
            return done;
        }
    }
    let mut buf = Aligned::new(piece);
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(piece as u64) as usize;
        let got = read_piece(src, &mut buf, src_offset + done, n);
        if got == 0 || !write_piece(dst, &mut buf, dst_offset + done, got) {
            return done;
        }
        done += got as u64;
        if got < n {
            return done;
        }
    }
    done
}

/// [`copy_direct`] with a reader thread; None if the thread could not be started (nothing
/// was copied then).
fn copy_pipelined(
    src: &File,
    src_offset: u64,
    dst: &File,
    dst_offset: u64,
    len: u64,
    piece: usize,
) -> Option<u64> {
    use std::sync::mpsc;
    std::thread::scope(|scope| {
        // Filled buffers go to the writer (this thread), empty ones back to the reader.
        let (full_tx, full_rx) = mpsc::sync_channel::<(Aligned, usize)>(1);
        let (empty_tx, empty_rx) = mpsc::channel::<Aligned>();
        for _ in 0..2 {
            let _ = empty_tx.send(Aligned::new(piece));
        }
        let reader = move || {
            let mut off = 0u64;
            while off < len {
                let Ok(mut buf) = empty_rx.recv() else {
                    return;
                };
                let n = (len - off).min(piece as u64) as usize;
                let got = read_piece(src, &mut buf, src_offset + off, n);
                if full_tx.send((buf, got)).is_err() || got < n {
                    return;
                }
                off += got as u64;
            }
        };
        let spawned = std::thread::Builder::new()
            .name("vnvme-copy-read".into())
            .spawn_scoped(scope, reader);
        if let Err(e) = spawned {
            log::debug!("direct copy: no reader thread ({e}); one piece after the other");
            return None;
        }
        let mut done = 0u64;
        for (mut buf, got) in full_rx.iter() {
            if got == 0 || !write_piece(dst, &mut buf, dst_offset + done, got) {
                break;
            }
            done += got as u64;
            // The reader may already be done (it read the last piece): no one to take it.
            let _ = empty_tx.send(buf);
        }
        // Dropping both channel ends (after the last piece or a failed write) ends the
        // reader, whether it waits for an empty buffer or to hand over a full one.
        drop(full_rx);
        drop(empty_tx);
        Some(done)
    })
}

/// Opens a second descriptor of the object `file` refers to with O_DIRECT (read-write, or
/// read-only when that is refused), through `/proc/self/fd`. None when that is not
/// possible (no /proc, a file system without O_DIRECT, ...).
pub fn reopen_direct(file: &File) -> Option<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = format!("/proc/self/fd/{}", file.as_raw_fd());
    let open = |write: bool| {
        std::fs::OpenOptions::new()
            .read(true)
            .write(write)
            .custom_flags(libc::O_DIRECT)
            .open(&path)
    };
    match open(true).or_else(|_| open(false)) {
        Ok(f) => Some(f),
        Err(e) => {
            log::debug!("no O_DIRECT descriptor for large copies ({e}); using copy_file_range");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn tmp(name: &str) -> std::path::PathBuf {
        // Not tmpfs where it can be avoided: O_DIRECT is what is tested.
        let d = std::path::PathBuf::from("/var/tmp")
            .join(format!("vnvme-direct-copy-{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&d);
        d
    }

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) | 1)
            .collect()
    }

    #[test]
    fn eligibility_needs_size_and_alignment() {
        assert!(direct_eligible(0, 8192, DIRECT_MIN));
        assert!(!direct_eligible(0, 8192, DIRECT_MIN - DIRECT_ALIGN));
        assert!(!direct_eligible(512, 8192, DIRECT_MIN));
        assert!(!direct_eligible(0, 8192 + 512, DIRECT_MIN));
        assert!(!direct_eligible(0, 0, DIRECT_MIN + 512));
    }

    #[test]
    fn direct_copy_moves_the_bytes_in_pieces_and_stops_at_the_end_of_the_source() {
        let p = tmp("pieces");
        let len = DIRECT_PIECE + 3 * DIRECT_ALIGN as usize;
        let data = pattern(len, 7);
        {
            let mut f = File::create(&p).unwrap();
            f.write_all(&data).unwrap();
            f.set_len(2 * len as u64 + DIRECT_ALIGN).unwrap();
        }
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&p)
            .unwrap();
        let Some(d) = reopen_direct(&f) else {
            // Said, not silent: this file system refuses O_DIRECT.
            eprintln!("skipped: /var/tmp has no O_DIRECT here");
            let _ = std::fs::remove_file(&p);
            return;
        };
        let dst = len as u64 + DIRECT_ALIGN;
        assert_eq!(copy_direct(&d, 0, &d, dst, len as u64), len as u64);
        let mut back = vec![0u8; len];
        f.read_exact_at(&mut back, dst).unwrap();
        assert!(back == data, "the copy differs from the source");
        // Coherent with the buffered descriptor: a buffered write, then a direct copy of it.
        f.write_all_at(&pattern(4096, 99), 0).unwrap();
        assert_eq!(copy_direct(&d, 0, &d, dst, 4096), 4096);
        f.read_exact_at(&mut back[..4096], dst).unwrap();
        assert!(back[..4096] == pattern(4096, 99)[..]);
        // Past the end of the file: a short read ends the direct pass at what was copied.
        let size = 2 * len as u64 + DIRECT_ALIGN;
        assert_eq!(
            copy_direct(&d, size - 2 * DIRECT_ALIGN, &d, 0, 4 * DIRECT_ALIGN),
            2 * DIRECT_ALIGN
        );
        // A destination that refuses writes (read-only descriptor): the pipelined copy stops
        // at the first piece, reports 0 and its reader thread ends (no hang).
        let ro = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_DIRECT)
                .open(&p)
                .unwrap()
        };
        assert_eq!(copy_direct(&d, 0, &ro, dst, len as u64), 0);
        // Less than one aligned block: nothing is copied (O_DIRECT refuses such a length,
        // or the piece is cut to whole blocks), the caller does it another way.
        assert_eq!(copy_direct(&d, 0, &d, dst, 100), 0);
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn reflink_is_refused_without_changing_anything_where_unsupported_or_unaligned() {
        let p = tmp("reflink");
        std::fs::write(&p, pattern(64 << 10, 3)).unwrap();
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&p)
            .unwrap();
        let fd = f.as_raw_fd();
        // Unaligned ranges are refused by every file system that reflinks at all.
        assert!(!reflink(fd, 512, fd, 32 << 10, 4096));
        let mut b = vec![0u8; 4096];
        f.read_exact_at(&mut b, 32 << 10).unwrap();
        assert!(b == pattern(64 << 10, 3)[32 << 10..(32 << 10) + 4096]);
        // An aligned reflink works only where the file system shares extents; either way the
        // destination then holds either the source bytes or its old bytes, never others.
        let ok = reflink(fd, 0, fd, 32 << 10, 4096);
        f.read_exact_at(&mut b, 32 << 10).unwrap();
        let want = if ok {
            &pattern(64 << 10, 3)[..4096]
        } else {
            &pattern(64 << 10, 3)[32 << 10..(32 << 10) + 4096]
        };
        assert!(
            b == want,
            "reflink returned {ok} but the bytes do not match that"
        );
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn cached_tells_a_page_in_the_cache() {
        let p = tmp("cached");
        std::fs::write(&p, pattern(8192, 1)).unwrap();
        let f = File::open(&p).unwrap();
        // Just written: in the page cache (ext4, XFS and btrfs take RWF_NOWAIT reads).
        assert!(cached(f.as_raw_fd(), 0));
        // Past the end of the file there is nothing to read, cached or not.
        assert!(!cached(f.as_raw_fd(), 1 << 20));
        // Written back and dropped from the cache: not cached.
        let fd = f.as_raw_fd();
        let store = super::super::file::FileStore::from_file(
            f,
            8192,
            super::super::file::FileKind::Regular,
        );
        // Dropping is best effort in the kernel (a page still under writeback, or busy,
        // stays): a few tries, as a loaded machine may need.
        let dropped = (0..5).any(|_| {
            store.drop_cache().unwrap();
            let gone = !cached(fd, 0);
            if !gone {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            gone
        });
        assert!(dropped, "page 0 still reported cached after five drops");
        std::fs::remove_file(&p).unwrap();
    }
}
