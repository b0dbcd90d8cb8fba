//! The controller's settings (`--ctrl key=value,...`), named after QEMU's `-device nvme`
//! properties. The wiring parses them; the model reads them.

#![forbid(unsafe_code)]

pub use super::doorbell_page::MAX_POLL_US;

// Fixed properties of this controller model.

/// Asynchronous Event Request Limit, 0's based (Identify Controller AERL).
pub const AERL: u8 = 3;
/// Composite temperature reported in the SMART log, in kelvins (50 °C).
pub const COMPOSITE_TEMPERATURE: u16 = 323;
/// Default over-temperature threshold (Identify WCTEMP), in kelvins.
pub const WARNING_TEMPERATURE: u16 = 343;
/// Critical composite temperature (Identify CCTEMP), in kelvins.
pub const CRITICAL_TEMPERATURE: u16 = 373;

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
    /// Poll mode (`poll_us=N`, 0 = off, at most [`MAX_POLL_US`]): the transport offers
    /// the doorbell registers to the client as shared memory, and each queue worker
    /// polls them for N µs after its last command before it naps.
    pub poll_us: u32,
    /// Identify Controller NN (`nn=N`): namespace ids are 1..=N (raised to the largest
    /// `--ns` nsid), and the most namespaces a host can create.
    pub nn: u32,
    /// Total NVM capacity in bytes (`--capacity`; TNVMCAP), which namespaces created at
    /// run time share with the given ones; `None`: what the given ones take.
    pub capacity: Option<u64>,
    /// The LBA formats every namespace offers (`--lbafs`).
    pub lbafs: Vec<super::namespace::LbaFormat>,
    /// Where created namespaces get their files (`--ns-dir`); `None`: memfds.
    pub ns_dir: Option<std::path::PathBuf>,
    /// Copy limits of namespaces created at run time (those of a default `--ns`).
    pub created_limits: super::namespace::CopyLimits,
}

/// Most namespaces `nn` may allow.
pub const MAX_NN: u32 = 1024;

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
            poll_us: 0,
            nn: 256,
            capacity: None,
            lbafs: super::namespace::DEFAULT_LBA_FORMATS.to_vec(),
            ns_dir: None,
            created_limits: super::namespace::CopyLimits {
                mssrl: 128,
                mcl: 128,
                msrc: 127,
            },
        }
    }
}

impl ControllerConfig {
    /// Optional Copy Formats Supported: `--ctrl ocfs` (default 0xF, formats 0-3), 0 when
    /// Copy is off. Formats 2 and 3 also need the host to enable them through Host
    /// Behavior Support CDFE; 1 and 3 need 16-byte guard protection information, which
    /// no namespace here has, so they fail with Invalid Format.
    pub fn ocfs_supported(&self) -> u16 {
        if self.copy {
            self.ocfs & 0xf
        } else {
            0
        }
    }

    /// Checks the ranges the spec and the model allow.
    pub fn validate(&self) -> Result<(), String> {
        if self.serial.is_empty() || self.serial.len() > 20 || !self.serial.is_ascii() {
            return Err("--ctrl serial: must be 1 to 20 ASCII characters".into());
        }
        if self.max_ioqpairs == 0 || self.max_ioqpairs > 1024 {
            return Err("--ctrl max_ioqpairs: must be between 1 and 1024".into());
        }
        if !(2..=65536).contains(&self.mqes) {
            return Err("--ctrl mqes: must be between 2 and 65536".into());
        }
        if self.ocfs > 0xf {
            return Err(format!(
                "--ctrl ocfs: {:#x} is not a mask of copy formats 0-3 (0 to 0xf)",
                self.ocfs
            ));
        }
        if self.cdfe > 0xf {
            return Err(format!(
                "--ctrl cdfe: {:#x} is not a mask of copy formats 0-3 (0 to 0xf)",
                self.cdfe
            ));
        }
        if self.nn == 0 || self.nn > MAX_NN {
            return Err(format!("--ctrl nn: must be between 1 and {MAX_NN}"));
        }
        if self.lbafs.is_empty() || self.lbafs.len() > super::namespace::MAX_LBA_FORMATS {
            return Err(format!(
                "--lbafs: between 1 and {} formats",
                super::namespace::MAX_LBA_FORMATS
            ));
        }
        if self.poll_us > MAX_POLL_US {
            return Err(format!(
                "--ctrl poll_us: {} is more than {MAX_POLL_US} (microseconds of polling after a queue's last command; 0 = off)",
                self.poll_us
            ));
        }
        Ok(())
    }
}
