//! A small file beside a volume's backing file, for state a front end keeps with the
//! data (the NVMe model keeps zone states and write pointers in `FILE.zones`). It holds
//! bytes at offsets; what they mean is the front end's.

#![forbid(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

pub struct SideFile {
    file: File,
    path: PathBuf,
}

impl SideFile {
    /// Opens `path` for reading and writing, creating it empty if it does not exist.
    pub fn open(path: &Path) -> io::Result<SideFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        Ok(SideFile {
            file,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    pub fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Fills `buf` from `off`; a file too short for it is an error.
    pub fn read_at(&self, off: u64, buf: &mut [u8]) -> io::Result<()> {
        self.file.read_exact_at(buf, off)
    }

    pub fn write_at(&self, off: u64, data: &[u8]) -> io::Result<()> {
        self.file.write_all_at(data, off)
    }

    /// Makes every completed write durable (fdatasync).
    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_read_back_and_short_reads_fail() {
        let dir = std::env::temp_dir().join(format!("vnvme-side-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("a.zones");
        let _ = std::fs::remove_file(&p);
        let f = SideFile::open(&p).unwrap();
        assert!(f.is_empty().unwrap());
        f.write_at(4, b"abcd").unwrap();
        f.sync().unwrap();
        let g = SideFile::open(&p).unwrap();
        let mut b = [0u8; 8];
        g.read_at(0, &mut b).unwrap();
        assert_eq!(&b, b"\0\0\0\0abcd");
        assert!(g.read_at(6, &mut b).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
