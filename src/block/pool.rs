//! Backing space for volumes made at run time (namespaces a host creates): a new sparse
//! file in a directory the user named (`--ns-dir`), or an anonymous memfd when none was
//! named. Releasing a file-backed volume removes its file.

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::file::OpenError;
use super::{Volume, VolumeError};

/// Where new volumes get their space.
#[derive(Debug)]
pub struct StorePool {
    dir: Option<PathBuf>,
    /// Names files uniquely within this process (with its pid).
    next: AtomicU64,
}

impl StorePool {
    /// Files in `dir`, or memfds when `None`.
    pub fn new(dir: Option<PathBuf>) -> StorePool {
        StorePool {
            dir,
            next: AtomicU64::new(1),
        }
    }

    /// The directory new files go to, if any.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// A new zero-filled volume of `bytes` bytes with `block_size`-byte blocks and
    /// `meta_size` bytes of metadata per block. `tag` goes into the file's name
    /// (`vnvme-<pid>-<tag>-<n>.img`) or the memfd's.
    pub fn create(
        &self,
        tag: &str,
        bytes: u64,
        block_size: u64,
        meta_size: u64,
    ) -> Result<Volume, VolumeError> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let v = match &self.dir {
            Some(dir) => {
                let path = dir.join(format!("vnvme-{}-{tag}-{n}.img", std::process::id()));
                if path.exists() {
                    return Err(VolumeError::Open(OpenError(format!(
                        "{} already exists",
                        path.display()
                    ))));
                }
                Volume::open_file(&path, Some(bytes), block_size, false)?
            }
            None => Volume::memory(&format!("vnvme-{tag}"), bytes, block_size, false)?,
        };
        v.with_metadata(meta_size)
    }

    /// Removes the file behind `volume` (a volume this pool or the user made; memfds
    /// need nothing). The data stays readable through open descriptors until the last
    /// one closes.
    pub fn remove_file(volume: &Volume) -> std::io::Result<()> {
        match volume.path() {
            Some(p) => std::fs::remove_file(p),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_made_sparse_and_removed() {
        let dir = std::env::temp_dir().join(format!("vnvme-pool-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pool = StorePool::new(Some(dir.clone()));
        let v = pool.create("ns1", 1 << 20, 4096, 0).unwrap();
        assert_eq!(v.blocks(), 256);
        let p = v.path().unwrap().to_path_buf();
        assert!(p.starts_with(&dir));
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 1 << 20);
        let w = pool.create("ns1", 1 << 20, 512, 8).unwrap();
        assert_ne!(w.path(), v.path(), "every volume gets its own file");
        assert_eq!(w.blocks(), (1 << 20) / 520);
        StorePool::remove_file(&v).unwrap();
        assert!(!p.exists());
        StorePool::remove_file(&w).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn memory_without_a_directory() {
        let pool = StorePool::new(None);
        let v = pool.create("ns2", 1 << 16, 512, 0).unwrap();
        assert!(v.path().is_none());
        assert_eq!(v.blocks(), 128);
        StorePool::remove_file(&v).unwrap();
    }
}
