//! Guest RAM for a host-side client: an anonymous memfd sealed against shrinking and
//! growing (as QEMU's `memory-backend-memfd` seals it), so the server that maps it can
//! never see its pages vanish.
//!
//! This module owns the `unsafe` the client needs (memfd_create, fcntl seals); the
//! mapping itself is vm-memory's.

#![allow(unsafe_code)]

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};

/// A memfd of `size` bytes, sealed with F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL.
pub fn sealed(name: &str, size: u64) -> io::Result<File> {
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
    let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
    // SAFETY: F_ADD_SEALS takes an int argument and touches no memory of ours; the
    // descriptor is open (owned by `file`).
    let r = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, seals) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    #[test]
    fn sealed_memfd_cannot_shrink() {
        let f = super::sealed("t", 1 << 20).unwrap();
        assert_eq!(f.metadata().unwrap().len(), 1 << 20);
        assert!(f.set_len(4096).is_err());
        assert!(f.set_len(2 << 20).is_err());
    }
}
