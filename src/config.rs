//! Validated configuration of one vnvme device: the controller and its namespaces.
//!
//! These are plain types shared by the command line (`cli.rs`) and the server; the
//! controller's own settings are the model's [`ControllerConfig`], re-exported here. Parsing of `key=value` lists lives in `cli.rs`; validation that needs no I/O
//! lives here, and every error is one line naming the option.

use std::fmt;
use std::path::PathBuf;

/// A configuration error: one line naming the option at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// Where a namespace keeps its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backing {
    /// A regular file or a block device. A missing file is created sparse with `size`.
    File(PathBuf),
    /// An anonymous memfd (the embedded default): data is gone at exit.
    Memory,
}

/// One namespace (`--ns file=PATH,...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceConfig {
    pub backing: Backing,
    /// Size in bytes; `None` means the size of the existing file or device.
    pub size: Option<u64>,
    /// Namespace id (1-based); `None` means the next free id.
    pub nsid: Option<u32>,
    /// 512 or 4096.
    pub logical_block_size: u32,
    /// Maximum Single Source Range Length (blocks). QEMU's default 128.
    pub mssrl: u16,
    /// Maximum Copy Length (blocks). QEMU's default 128.
    pub mcl: u32,
    /// Maximum Source Range Count, 0's based. QEMU's default 127.
    pub msrc: u8,
    pub readonly: bool,
    pub uuid: Option<[u8; 16]>,
    pub nguid: Option<[u8; 16]>,
    pub eui64: Option<[u8; 8]>,
    /// Metadata bytes per block (QEMU's `ms`; 0: none). With metadata, `size` is the
    /// whole store: the data of every block, then the metadata of every block.
    pub ms: u16,
    /// QEMU's `mset`: 1 = metadata at the end of each block's data (extended LBA),
    /// 0 = in a separate buffer.
    pub mset: u8,
    /// QEMU's `pi`: protection information type 0 (none) to 3.
    pub pi: u8,
    /// QEMU's `pil`: 1 = the tuple in the first bytes of the metadata, 0 = the last.
    pub pil: u8,
    /// QEMU's `pif`: 0 = 16-bit guard, 2 = 64-bit guard.
    pub pif: u8,
    /// `owned=on`: deleting the namespace (Namespace Management) removes its file.
    pub owned: bool,
    /// `zoned=true` and its `zoned.*` keys: a zoned namespace (docs/zoned.md).
    pub zoned: Option<ZonedConfig>,
}

/// A zoned namespace's options, with QEMU's nvme-ns names and defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZonedConfig {
    /// `zoned.zone_size` in bytes (QEMU's default 128 MiB).
    pub zone_size: u64,
    /// `zoned.zone_capacity` in bytes; 0: the zone size.
    pub zone_capacity: u64,
    /// `zoned.max_open`: open zones at once; 0: no limit.
    pub max_open: u32,
    /// `zoned.max_active`: active zones at once; 0: no limit.
    pub max_active: u32,
    /// `zoned.cross_read`: reads may cross zone boundaries.
    pub cross_read: bool,
    /// `zoned.zasl`: Zone Append Size Limit, a power of two in 4 KiB pages; 0: MDTS.
    pub zasl: u8,
    /// `zoned.descr_ext_size`: Zone Descriptor Extension bytes, a multiple of 64.
    pub descr_ext_size: u32,
}

impl Default for ZonedConfig {
    fn default() -> Self {
        ZonedConfig {
            zone_size: 128 << 20,
            zone_capacity: 0,
            max_open: 0,
            max_active: 0,
            cross_read: false,
            zasl: 0,
            descr_ext_size: 0,
        }
    }
}

/// At most this many zones per namespace: the zone table lives in memory (16 bytes a
/// zone) and some commands walk it.
pub const MAX_ZONES: u64 = 1 << 22;

impl ZonedConfig {
    /// QEMU's checks of the zone geometry over a namespace of `blocks` blocks of
    /// `block_size` bytes, and the geometry they give (zones in blocks; the namespace
    /// ends at its last whole zone).
    pub fn geometry(
        &self,
        block_size: u64,
        blocks: u64,
    ) -> Result<crate::nvme::zones::ZoneGeometry, ConfigError> {
        let cap = if self.zone_capacity == 0 {
            self.zone_size
        } else {
            self.zone_capacity
        };
        if cap > self.zone_size {
            return Err(ConfigError(format!(
                "--ns zoned.zone_capacity: {cap} bytes exceeds the zone size {} bytes",
                self.zone_size
            )));
        }
        if self.zone_size < block_size || !self.zone_size.is_multiple_of(block_size) {
            return Err(ConfigError(format!(
                "--ns zoned.zone_size: {} bytes is not a whole number of {block_size}-byte blocks",
                self.zone_size
            )));
        }
        if cap < block_size || !cap.is_multiple_of(block_size) {
            return Err(ConfigError(format!(
                "--ns zoned.zone_capacity: {cap} bytes is not a whole number of {block_size}-byte blocks"
            )));
        }
        let zone_size = self.zone_size / block_size;
        let nr_zones = blocks / zone_size;
        if nr_zones == 0 {
            return Err(ConfigError(format!(
                "--ns zoned.zone_size: {} bytes is larger than the namespace ({} bytes)",
                self.zone_size,
                blocks * block_size
            )));
        }
        if nr_zones > MAX_ZONES {
            return Err(ConfigError(format!(
                "--ns zoned.zone_size: {nr_zones} zones, at most {MAX_ZONES}; use larger zones"
            )));
        }
        if self.max_open as u64 > nr_zones {
            return Err(ConfigError(format!(
                "--ns zoned.max_open: {} exceeds the number of zones {nr_zones}",
                self.max_open
            )));
        }
        if self.max_active as u64 > nr_zones {
            return Err(ConfigError(format!(
                "--ns zoned.max_active: {} exceeds the number of zones {nr_zones}",
                self.max_active
            )));
        }
        let mut max_open = self.max_open;
        if self.max_active != 0 {
            if max_open > self.max_active {
                return Err(ConfigError(format!(
                    "--ns zoned.max_open: {max_open} exceeds zoned.max_active {}",
                    self.max_active
                )));
            }
            if max_open == 0 {
                max_open = self.max_active;
            }
        }
        if !self.descr_ext_size.is_multiple_of(64) || self.descr_ext_size / 64 > 0xff {
            return Err(ConfigError(format!(
                "--ns zoned.descr_ext_size: {} is not a multiple of 64 up to 16320",
                self.descr_ext_size
            )));
        }
        if self.zasl > 15 {
            return Err(ConfigError(format!(
                "--ns zoned.zasl: {} is too large (at most 15: 4 KiB << 15 = 128 MiB)",
                self.zasl
            )));
        }
        Ok(crate::nvme::zones::ZoneGeometry {
            zone_size,
            zone_cap: cap / block_size,
            nr_zones: nr_zones as u32,
            max_open,
            max_active: self.max_active,
            cross_read: self.cross_read,
            ext_size: self.descr_ext_size,
            zasl: self.zasl,
        })
    }
}

impl NamespaceConfig {
    /// The metadata and protection format these options give.
    pub fn meta_format(&self) -> crate::nvme::protection::MetaFormat {
        crate::nvme::protection::MetaFormat {
            ms: self.ms,
            extended: self.mset == 1,
            pi: self.pi,
            pi_first: self.pil == 1,
            pif: self.pif,
        }
    }
}

impl Default for NamespaceConfig {
    fn default() -> Self {
        NamespaceConfig {
            backing: Backing::Memory,
            size: None,
            nsid: None,
            logical_block_size: 512,
            mssrl: 128,
            mcl: 128,
            msrc: 127,
            readonly: false,
            uuid: None,
            nguid: None,
            eui64: None,
            ms: 0,
            mset: 0,
            pi: 0,
            pil: 0,
            pif: 0,
            owned: false,
            zoned: None,
        }
    }
}

pub use crate::nvme::ControllerConfig;

impl NamespaceConfig {
    /// Checks what can be checked without touching the backing file.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.logical_block_size != 512 && self.logical_block_size != 4096 {
            return Err(ConfigError(
                "--ns logical_block_size: must be 512 or 4096".into(),
            ));
        }
        if self.mssrl == 0 {
            return Err(ConfigError(
                "--ns mssrl: must not be 0 (the spec forbids it on a namespace that supports Copy)"
                    .into(),
            ));
        }
        if self.mcl == 0 {
            return Err(ConfigError(
                "--ns mcl: must not be 0 (the spec forbids it on a namespace that supports Copy)"
                    .into(),
            ));
        }
        if self.nsid == Some(0) || self.nsid == Some(u32::MAX) {
            return Err(ConfigError(
                "--ns nsid: must be between 1 and 4294967294".into(),
            ));
        }
        self.validate_meta()?;
        if self.zoned.is_some() && self.ms != 0 {
            return Err(ConfigError(
                "--ns zoned: a zoned namespace cannot have metadata (ms) yet".into(),
            ));
        }
        if let Some(size) = self.size {
            if self.ms == 0 && (size == 0 || size % self.logical_block_size as u64 != 0) {
                return Err(ConfigError(format!(
                    "--ns size: must be a non-zero multiple of the block size {}",
                    self.logical_block_size
                )));
            }
            let per_block = self.logical_block_size as u64 + self.ms as u64;
            if self.ms != 0 && size < per_block {
                return Err(ConfigError(format!(
                    "--ns size: must hold at least one block and its metadata ({per_block} bytes)"
                )));
            }
        }
        Ok(())
    }

    /// QEMU's checks of ms, mset, pi, pil and pif (the same limits, one line each).
    fn validate_meta(&self) -> Result<(), ConfigError> {
        if self.mset > 1 {
            return Err(ConfigError("--ns mset: must be 0 or 1".into()));
        }
        if self.pi > 3 {
            return Err(ConfigError("--ns pi: must be 0, 1, 2 or 3".into()));
        }
        if self.pil > 1 {
            return Err(ConfigError("--ns pil: must be 0 or 1".into()));
        }
        if self.pif != 0 && self.pif != 2 {
            return Err(ConfigError(
                "--ns pif: must be 0 (16-bit guard) or 2 (64-bit guard)".into(),
            ));
        }
        let tuple = if self.pif == 2 { 16 } else { 8 };
        if self.pi != 0 && (self.ms as usize) < tuple {
            return Err(ConfigError(format!(
                "--ns ms: at least {tuple} bytes of metadata required to enable protection information (pi={}, pif={})",
                self.pi, self.pif
            )));
        }
        Ok(())
    }
}

/// One virtio-blk disk over vhost-user (`--vhost-user-blk socket=PATH,ns=NSID,...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VhostUserBlkConfig {
    /// The vhost-user unix socket QEMU connects to.
    pub socket: PathBuf,
    /// The namespace (of the `--ns` list) the disk shows.
    pub nsid: u32,
    /// Number of virtqueues, 1 to 16.
    pub queues: u16,
    /// This view is read-only (VIRTIO_BLK_F_RO) even if the namespace is writable.
    pub readonly: bool,
}

/// The whole device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceConfig {
    pub controller: ControllerConfig,
    pub namespaces: Vec<NamespaceConfig>,
}
