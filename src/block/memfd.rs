//! The embedded default store: an anonymous memfd (1 GiB unless sized), whose data is gone
//! when the process exits. Pages are allocated on first write; punch hole frees them.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::FromRawFd;

use super::file::{FileKind, FileStore};

/// Size of a memory namespace when none is given.
pub const DEFAULT_SIZE: u64 = 1 << 30;

/// Creates an anonymous memfd store of `size` bytes.
pub fn create(name: &str, size: u64) -> io::Result<FileStore> {
    let cname = CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: `cname` is a valid NUL-terminated string that outlives the call.
    let fd = unsafe { libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: memfd_create just returned this descriptor and nothing else owns it.
    let file = unsafe { File::from_raw_fd(fd) };
    file.set_len(size)?;
    Ok(FileStore::from_file(file, size, FileKind::Memfd))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::Store;

    #[test]
    fn memfd_reads_zero_and_round_trips() {
        let s = create("t", 1 << 20).unwrap();
        assert_eq!(s.size(), 1 << 20);
        assert_eq!(s.kind(), FileKind::Memfd);
        let mut b = [1u8; 64];
        s.read(1000, &mut b).unwrap();
        assert_eq!(b, [0u8; 64]);
        s.write(1000, &[5u8; 64]).unwrap();
        s.read(1000, &mut b).unwrap();
        assert_eq!(b, [5u8; 64]);
        s.write_zeroes(1000, 32).unwrap();
        s.read(1000, &mut b).unwrap();
        assert_eq!(&b[..32], &[0u8; 32]);
        assert_eq!(&b[32..], &[5u8; 32]);
    }
}
