//! A namespace: its id, LBA format, Copy limits, identifiers and backing store.
//!
//! `Namespace::open` turns a [`NamespaceConfig`] into a store (a file, a block device or a
//! memfd) and answers the questions the command handlers ask: how many blocks, is this
//! range inside, where in the store does LBA n live.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::experiment::CopyLimits;
use crate::config::{Backing, ConfigError, NamespaceConfig};
use crate::storage::{memfd, FileStore, Store};

pub struct Namespace {
    pub nsid: u32,
    pub cfg: NamespaceConfig,
    store: Arc<dyn Store>,
    /// Logical block size in bytes (512 or 4096).
    lbs: u64,
    /// Namespace size in logical blocks (NSZE).
    nsze: u64,
    /// Current Copy limits, packed so that one load sees one consistent set:
    /// MSSRL in bits 15:0, MCL in 47:16, MSRC in 55:48. Starts from `cfg` (which keeps
    /// the configured values); changed at run time by `set_copy_limits`.
    copy_limits: AtomicU64,
}

fn pack(l: CopyLimits) -> u64 {
    l.mssrl as u64 | (l.mcl as u64) << 16 | (l.msrc as u64) << 48
}

fn unpack(v: u64) -> CopyLimits {
    CopyLimits {
        mssrl: v as u16,
        mcl: (v >> 16) as u32,
        msrc: (v >> 48) as u8,
    }
}

impl std::fmt::Debug for Namespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Namespace")
            .field("nsid", &self.nsid)
            .field("lbs", &self.lbs)
            .field("nsze", &self.nsze)
            .finish()
    }
}

impl Namespace {
    /// Opens (or creates) the backing store. Errors name the option at fault.
    pub fn open(cfg: &NamespaceConfig, nsid: u32) -> Result<Namespace, ConfigError> {
        cfg.validate()?;
        let store: Arc<dyn Store> = match &cfg.backing {
            Backing::File(path) => {
                let s = FileStore::open(path, cfg.size, cfg.readonly)
                    .map_err(|e| ConfigError(format!("--ns file={}: {}", path.display(), e)))?;
                Arc::new(s)
            }
            Backing::Memory => {
                let size = cfg.size.unwrap_or(memfd::DEFAULT_SIZE);
                let s = memfd::create(&format!("vnvme-ns{nsid}"), size).map_err(|e| {
                    ConfigError(format!("--ns nsid={nsid}: cannot create memfd: {e}"))
                })?;
                Arc::new(s)
            }
        };
        Namespace::with_store(cfg, nsid, store)
    }

    /// Builds a namespace on an existing store (tests, or stores made elsewhere).
    pub fn with_store(
        cfg: &NamespaceConfig,
        nsid: u32,
        store: Arc<dyn Store>,
    ) -> Result<Namespace, ConfigError> {
        cfg.validate()?;
        let lbs = cfg.logical_block_size as u64;
        let nsze = store.size() / lbs;
        if nsze == 0 {
            return Err(ConfigError(format!(
                "--ns nsid={nsid}: size is smaller than one logical block ({lbs} bytes)"
            )));
        }
        let limits = CopyLimits {
            mssrl: cfg.mssrl,
            mcl: cfg.mcl,
            msrc: cfg.msrc,
        };
        Ok(Namespace {
            nsid,
            cfg: cfg.clone(),
            store,
            lbs,
            nsze,
            copy_limits: AtomicU64::new(pack(limits)),
        })
    }

    /// The Copy limits in force now (Identify Namespace and the Copy checks read these).
    pub fn copy_limits(&self) -> CopyLimits {
        unpack(self.copy_limits.load(Ordering::Acquire))
    }

    /// Replaces the Copy limits (all three at once). The caller validates them.
    pub fn set_copy_limits(&self, l: CopyLimits) {
        self.copy_limits.store(pack(l), Ordering::Release);
    }

    /// Logical block size in bytes.
    pub fn block_size(&self) -> u64 {
        self.lbs
    }

    /// LBADS: log2 of the logical block size.
    pub fn lbads(&self) -> u8 {
        self.lbs.trailing_zeros() as u8
    }

    /// Namespace size in logical blocks.
    pub fn nsze(&self) -> u64 {
        self.nsze
    }

    pub fn readonly(&self) -> bool {
        self.cfg.readonly
    }

    pub fn store(&self) -> &dyn Store {
        &*self.store
    }

    /// True if `nlb` blocks from `slba` lie inside the namespace.
    pub fn in_range(&self, slba: u64, nlb: u64) -> bool {
        slba.checked_add(nlb).is_some_and(|end| end <= self.nsze)
    }

    /// Byte offset of `lba` in the store.
    pub fn byte_offset(&self, lba: u64) -> u64 {
        lba * self.lbs
    }

    /// The UUID reported in the descriptor list: the configured one, or one derived from
    /// `serial` and the nsid so that it is stable across runs and differs per namespace.
    pub fn uuid(&self, serial: &str) -> [u8; 16] {
        if let Some(u) = self.cfg.uuid {
            return u;
        }
        let mut h1: u64 = 0xcbf2_9ce4_8422_2325;
        let mut h2: u64 = 0x8422_2325_cbf2_9ce4;
        for b in serial.bytes().chain(self.nsid.to_le_bytes()) {
            h1 = (h1 ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
            h2 = (h2 ^ b as u64)
                .wrapping_mul(0x0000_0100_0000_01b3)
                .rotate_left(7);
        }
        let mut u = [0u8; 16];
        u[..8].copy_from_slice(&h1.to_be_bytes());
        u[8..].copy_from_slice(&h2.to_be_bytes());
        u[6] = (u[6] & 0x0f) | 0x40; // version 4 layout
        u[8] = (u[8] & 0x3f) | 0x80; // RFC 4122 variant
        u
    }

    pub fn nguid(&self) -> [u8; 16] {
        self.cfg.nguid.unwrap_or([0; 16])
    }

    pub fn eui64(&self) -> [u8; 8] {
        self.cfg.eui64.unwrap_or([0; 8])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_namespace_defaults_to_1gib() {
        let ns = Namespace::open(&NamespaceConfig::default(), 1).unwrap();
        assert_eq!(ns.nsze(), (1u64 << 30) / 512);
        assert_eq!(ns.lbads(), 9);
        assert!(ns.in_range(0, ns.nsze()));
        assert!(!ns.in_range(1, ns.nsze()));
        assert!(!ns.in_range(u64::MAX, 2));
    }

    #[test]
    fn copy_limits_start_from_the_config_and_change_together() {
        let cfg = NamespaceConfig {
            size: Some(1 << 20),
            mssrl: 7,
            mcl: 0x1234_5678,
            msrc: 200,
            ..Default::default()
        };
        let ns = Namespace::open(&cfg, 1).unwrap();
        let l = ns.copy_limits();
        assert_eq!((l.mssrl, l.mcl, l.msrc), (7, 0x1234_5678, 200));
        let n = CopyLimits {
            mssrl: u16::MAX,
            mcl: u32::MAX,
            msrc: 0,
        };
        ns.set_copy_limits(n);
        assert_eq!(ns.copy_limits(), n);
        assert_eq!(ns.cfg.mssrl, 7, "the configuration keeps the initial value");
    }

    #[test]
    fn file_errors_name_the_option() {
        let cfg = NamespaceConfig {
            backing: Backing::File("/nonexistent-dir-vnvme/x.img".into()),
            size: Some(1 << 20),
            ..Default::default()
        };
        let e = Namespace::open(&cfg, 1).unwrap_err();
        assert!(
            e.0.starts_with("--ns file=/nonexistent-dir-vnvme/x.img: cannot create:"),
            "{}",
            e.0
        );
        assert!(!e.0.contains('\n'));
    }

    #[test]
    fn file_namespace_sized_from_file() {
        let p = std::env::temp_dir().join(format!("vnvme-ns-{}.img", std::process::id()));
        let _ = std::fs::remove_file(&p);
        std::fs::write(&p, vec![0u8; 1 << 16]).unwrap();
        let cfg = NamespaceConfig {
            backing: Backing::File(p.clone()),
            logical_block_size: 4096,
            ..Default::default()
        };
        let ns = Namespace::open(&cfg, 3).unwrap();
        assert_eq!(ns.nsze(), 16);
        assert_eq!(ns.lbads(), 12);
        let u = ns.uuid("SN");
        assert_ne!(u, Namespace::open(&cfg, 4).unwrap().uuid("SN"));
        assert_eq!(u[6] >> 4, 4);
        std::fs::remove_file(&p).unwrap();
    }
}
