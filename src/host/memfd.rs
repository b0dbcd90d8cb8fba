//! Guest RAM for a host-side client: an anonymous memfd sealed against shrinking and
//! growing (as QEMU's `memory-backend-memfd` seals it), so the server that maps it can
//! never see its pages vanish. The memfd (and its `unsafe`) is [`crate::shm`]'s; the
//! mapping is vm-memory's.

use std::fs::File;
use std::io;

/// A memfd of `size` bytes, sealed with F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL.
pub fn sealed(name: &str, size: u64) -> io::Result<File> {
    crate::shm::sealed_memfd(name, size)
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
