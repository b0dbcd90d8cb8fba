//! Validated configuration of one vnvme device: the controller and its namespaces.
//!
//! These are plain types shared by the command line (`cli.rs`), the NVMe model and the
//! server. Parsing of `key=value` lists lives in `cli.rs`; validation that needs no I/O
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
        }
    }
}

/// The controller (`--ctrl key=value,...`), named after QEMU's `-device nvme` properties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerConfig {
    /// Serial number (Identify Controller SN), at most 20 ASCII characters.
    pub serial: String,
    /// Maximum Data Transfer Size as a power of two of the minimum page size; 0 = no limit.
    pub mdts: u8,
    /// Number of I/O queue pairs offered (Number of Queues feature).
    pub max_ioqpairs: u16,
    /// Maximum Queue Entries Supported (CAP.MQES is this minus one).
    pub mqes: u32,
    /// PCI vendor / device / subsystem vendor / subsystem ids.
    pub vendor_id: u16,
    pub device_id: u16,
    pub subsystem_vendor_id: u16,
    pub subsystem_id: u16,
    /// Copy command supported (`copy=on|off`): ONCS bit 8 and opcode 19h. Off makes
    /// Copy an Invalid Command Opcode and drops it from the Commands Supported and
    /// Effects log.
    pub copy: bool,
    /// Optional Copy Formats Supported (`ocfs=MASK`, 0 to 0xF): one bit per source
    /// range descriptor format. A format whose bit is clear is Invalid Field.
    pub ocfs: u16,
    /// Copy Descriptor Formats Enable the controller comes out of every reset with
    /// (`cdfe=MASK`, 0 to 0xF, bit n = format n), as if a host had set Host Behavior
    /// Support. The spec's value after reset is 0; kernels since 6.12.117 refuse to let
    /// user space set the feature, so this is the way to enable formats 2 and 3 there.
    pub cdfe: u16,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            serial: "VNVME0001".to_string(),
            mdts: 7,
            max_ioqpairs: 64,
            mqes: 2048,
            vendor_id: 0x1b36,
            device_id: 0x0010,
            subsystem_vendor_id: 0x1af4,
            subsystem_id: 0x1100,
            copy: true,
            ocfs: 0xf,
            cdfe: 0,
        }
    }
}

impl ControllerConfig {
    /// Checks the ranges the spec and the model allow.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.serial.is_empty() || self.serial.len() > 20 || !self.serial.is_ascii() {
            return Err(ConfigError(
                "--ctrl serial: must be 1 to 20 ASCII characters".into(),
            ));
        }
        if self.max_ioqpairs == 0 || self.max_ioqpairs > 1024 {
            return Err(ConfigError(
                "--ctrl max_ioqpairs: must be between 1 and 1024".into(),
            ));
        }
        if !(2..=65536).contains(&self.mqes) {
            return Err(ConfigError(
                "--ctrl mqes: must be between 2 and 65536".into(),
            ));
        }
        if self.ocfs > 0xf {
            return Err(ConfigError(format!(
                "--ctrl ocfs: {:#x} is not a mask of copy formats 0-3 (0 to 0xf)",
                self.ocfs
            )));
        }
        if self.cdfe > 0xf {
            return Err(ConfigError(format!(
                "--ctrl cdfe: {:#x} is not a mask of copy formats 0-3 (0 to 0xf)",
                self.cdfe
            )));
        }
        Ok(())
    }
}

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
        if let Some(size) = self.size {
            if size == 0 || size % self.logical_block_size as u64 != 0 {
                return Err(ConfigError(format!(
                    "--ns size: must be a non-zero multiple of the block size {}",
                    self.logical_block_size
                )));
            }
        }
        Ok(())
    }
}

/// The whole device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceConfig {
    pub controller: ControllerConfig,
    pub namespaces: Vec<NamespaceConfig>,
}
