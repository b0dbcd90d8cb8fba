//! Memory shared with the peer process: sealed memfds, and a shared mapping of part of
//! one read and written as 32-bit words with atomic loads and stores.
//!
//! Both ends of vfio-user use it: the server's doorbell page (BAR0's doorbell area
//! offered to the client as a sparse-mmap area, `--ctrl poll_us`) and the host client's
//! guest RAM and its mapping of that area. The memfd is sealed against shrinking and
//! growing, so the peer that holds the descriptor can never make the pages vanish under
//! this process (which would be a SIGBUS). This module owns the `unsafe` it needs
//! (memfd_create, fcntl seals); the mapping itself is vm-memory's (MAP_SHARED).

#![deny(unsafe_code)]

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::sync::atomic::Ordering;

use vm_memory::{Bytes, FileOffset, GuestAddress, GuestMemoryMmap};

/// The seals a shared memfd must carry: it can neither shrink nor grow, and the seals
/// themselves are final.
const SEALS: libc::c_int = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;

/// A memfd of `size` bytes (zero-filled, pages allocated on first touch), sealed with
/// F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL.
#[allow(unsafe_code)]
pub fn sealed_memfd(name: &str, size: u64) -> io::Result<File> {
    let cname = CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: `cname` is a valid NUL-terminated string that outlives the call.
    let fd =
        unsafe { libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: memfd_create just returned this descriptor and nothing else owns it.
    let file = unsafe { File::from_raw_fd(fd) };
    file.set_len(size)?;
    // SAFETY: F_ADD_SEALS takes an int argument and touches no memory of ours; the
    // descriptor is open (owned by `file`).
    let r = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, SEALS) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(file)
}

/// True if `file` is a memfd that can no longer shrink (a peer's descriptor is safe to
/// map for as long as its size says).
#[allow(unsafe_code)]
pub fn cannot_shrink(file: &File) -> bool {
    // SAFETY: F_GET_SEALS takes no argument and touches no memory of ours; the
    // descriptor is open (owned by `file`). Any file that is not a memfd gives -1.
    let seals = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GET_SEALS) };
    seals >= 0 && seals & libc::F_SEAL_SHRINK != 0
}

/// Bytes `[start, start + len)` of a file, mapped shared in this process; its 32-bit
/// words are accessed with atomic loads and stores (the peer writes them concurrently).
/// Offsets are file offsets.
pub struct SharedWords {
    mem: GuestMemoryMmap<()>,
    start: u64,
    len: u64,
}

impl SharedWords {
    /// Maps `[start, start + len)` of `file`. `start` and `len` must be multiples of the
    /// 4 KiB page and lie inside the file.
    pub fn map(file: &File, start: u64, len: u64) -> io::Result<SharedWords> {
        let inval = |why: String| io::Error::new(io::ErrorKind::InvalidInput, why);
        if len == 0 || !start.is_multiple_of(4096) || !len.is_multiple_of(4096) {
            return Err(inval(format!(
                "shared mapping {start:#x}+{len:#x} is not whole pages"
            )));
        }
        let size = file.metadata()?.len();
        if start.checked_add(len).is_none_or(|end| end > size) {
            return Err(inval(format!(
                "shared mapping {start:#x}+{len:#x} is past the end of the file ({size:#x})"
            )));
        }
        let len_usize = usize::try_from(len).map_err(|_| inval("mapping too large".into()))?;
        let fo = FileOffset::new(file.try_clone()?, start);
        let mem =
            GuestMemoryMmap::from_ranges_with_files([(GuestAddress(start), len_usize, Some(fo))])
                .map_err(|e| io::Error::other(format!("mapping {start:#x}+{len:#x}: {e}")))?;
        Ok(SharedWords { mem, start, len })
    }

    /// The mapped file range.
    pub fn range(&self) -> std::ops::Range<u64> {
        self.start..self.start + self.len
    }

    /// True if the 32-bit word at file offset `off` is mapped (and `off` is aligned).
    pub fn contains(&self, off: u64) -> bool {
        off.is_multiple_of(4) && off >= self.start && off < self.start + self.len
    }

    /// The word at file offset `off` (acquire), `None` outside the mapping or unaligned.
    pub fn load(&self, off: u64) -> Option<u32> {
        if !self.contains(off) {
            return None;
        }
        self.mem
            .load::<u32>(GuestAddress(off), Ordering::Acquire)
            .ok()
    }

    /// Stores `v` at file offset `off` (release); false outside the mapping or unaligned.
    pub fn store(&self, off: u64, v: u32) -> bool {
        self.contains(off)
            && self
                .mem
                .store(v, GuestAddress(off), Ordering::Release)
                .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_memfd_cannot_change_size() {
        let f = sealed_memfd("t", 1 << 20).unwrap();
        assert_eq!(f.metadata().unwrap().len(), 1 << 20);
        assert!(f.set_len(4096).is_err());
        assert!(f.set_len(2 << 20).is_err());
        assert!(cannot_shrink(&f));
        let plain = File::open("/proc/self/stat").unwrap();
        assert!(!cannot_shrink(&plain));
    }

    #[test]
    fn two_mappings_of_one_memfd_see_each_others_words() {
        let f = sealed_memfd("t", 0x4000).unwrap();
        let a = SharedWords::map(&f, 0x1000, 0x3000).unwrap();
        let b = SharedWords::map(&f, 0x2000, 0x1000).unwrap();
        assert_eq!(a.range(), 0x1000..0x4000);
        assert_eq!(a.load(0x2008), Some(0), "a fresh memfd reads zero");
        assert!(a.store(0x2008, 0xdead_beef));
        assert_eq!(b.load(0x2008), Some(0xdead_beef));
        assert!(b.store(0x2ffc, 7));
        assert_eq!(a.load(0x2ffc), Some(7));
        // Outside the mapping, or unaligned: refused, not a fault.
        assert_eq!(b.load(0x1000), None);
        assert_eq!(b.load(0x3000), None);
        assert_eq!(a.load(0x2009), None);
        assert!(!a.store(0x4000, 1));
        assert!(!a.store(0x0ffc, 1));
    }

    #[test]
    fn mappings_must_be_whole_pages_inside_the_file() {
        let f = sealed_memfd("t", 0x4000).unwrap();
        assert!(
            SharedWords::map(&f, 0x1000, 0x4000).is_err(),
            "past the end"
        );
        assert!(
            SharedWords::map(&f, 0x800, 0x1000).is_err(),
            "unaligned start"
        );
        assert!(SharedWords::map(&f, 0x1000, 0x10).is_err(), "partial page");
        assert!(SharedWords::map(&f, 0x1000, 0).is_err(), "empty");
        assert!(
            SharedWords::map(&f, u64::MAX - 0xfff, 0x1000).is_err(),
            "wraps"
        );
    }
}
