//! The feature values the host set with Set Features (and Host Behavior Support's CDFE,
//! which the device may set too). A controller reset brings them back to defaults.

use std::time::Instant;

use super::settings::WARNING_TEMPERATURE;
use super::ControllerConfig;

/// Size of the Host Behavior Support data structure.
pub const HOST_BEHAVIOR_SIZE: usize = 512;

/// Current feature values (reset to defaults by a controller reset).
#[derive(Debug, Clone)]
pub(crate) struct Features {
    pub arbitration: u32,
    pub power_management: u32,
    pub temp_over: u16,
    pub temp_under: u16,
    pub error_recovery: u32,
    pub interrupt_coalescing: u32,
    /// Coalescing Disable per interrupt vector.
    pub vector_cd: Vec<bool>,
    pub aec: u32,
    /// Write Atomicity Normal's Disable Normal bit (no effect: every write is atomic
    /// only up to AWUN = AWUPF = 0, one block, either way).
    pub write_atomicity: u32,
    /// LBA Status Information Attributes (LSIRI, LSIPI; no alert is ever sent).
    pub lba_status_attributes: u32,
    /// Timestamp set by the host: (milliseconds, when).
    pub timestamp: Option<(u64, Instant)>,
    pub host_behavior: [u8; HOST_BEHAVIOR_SIZE],
}

impl Features {
    /// The values after a reset; Host Behavior Support holds `cdfe` (0 unless the
    /// device was told otherwise: `--ctrl cdfe`, `set-host-behavior`).
    pub fn new(cfg: &ControllerConfig, cdfe: u16) -> Features {
        let mut host_behavior = [0; HOST_BEHAVIOR_SIZE];
        host_behavior[4..6].copy_from_slice(&cdfe.to_le_bytes());
        Features {
            arbitration: 0,
            power_management: 0,
            temp_over: WARNING_TEMPERATURE,
            temp_under: 0,
            error_recovery: 0,
            interrupt_coalescing: 0,
            vector_cd: vec![false; cfg.max_ioqpairs as usize + 1],
            aec: 0,
            write_atomicity: 0,
            lba_status_attributes: 0,
            timestamp: None,
            host_behavior,
        }
    }

    /// Copy Descriptor Formats Enable (Host Behavior Support bytes 5:4), for Copy.
    pub fn cdfe(&self) -> u16 {
        u16::from_le_bytes([self.host_behavior[4], self.host_behavior[5]])
    }

    /// Sets CDFE, leaving the rest of Host Behavior Support as the host set it.
    pub fn set_cdfe(&mut self, cdfe: u16) {
        self.host_behavior[4..6].copy_from_slice(&cdfe.to_le_bytes());
    }
}
