//! [`IoCtx`]: the narrow state an NVM command set I/O command (and Copy) may touch.

use super::health::Stats;
use super::namespace::Namespace;
use super::ns_table::NamespaceTable;
use super::spec::{Status, PAGE_SIZE};
use super::ControllerConfig;
use crate::hooks::Hooks;
use std::sync::Arc;

/// Built for each command by the controller's dispatcher from its shared state.
pub(crate) struct IoCtx<'a> {
    pub namespaces: &'a NamespaceTable,
    /// MDTS, Copy support, OCFS.
    pub cfg: &'a ControllerConfig,
    /// Volatile Write Cache enabled: when off every write is made durable.
    pub write_cache: bool,
    /// CC.CSS 110b: the zoned command set is enabled (with 000b a zoned namespace takes
    /// the NVM command set's commands only, as QEMU does).
    pub all_command_sets: bool,
    /// Host Behavior Support Copy Descriptor Formats Enable when the command started.
    pub cdfe: u16,
    pub stats: &'a Stats,
    pub hooks: &'a dyn Hooks,
}

impl IoCtx<'_> {
    /// The namespace with this id, or the status the NSID rules name
    /// ([`NamespaceTable::lookup`](super::ns_table::NamespaceTable::lookup)).
    pub fn namespace(&self, nsid: u32) -> Result<Arc<Namespace>, Status> {
        self.namespaces.lookup(nsid)
    }

    /// Maximum data transfer in bytes, `None` for no limit.
    pub fn mdts_bytes(&self) -> Option<u64> {
        match self.cfg.mdts {
            0 => None,
            m => PAGE_SIZE.checked_shl(m as u32),
        }
    }

    /// Durability a write asks for: FUA, or every write while the write cache is off.
    pub fn durable(&self, fua: bool) -> bool {
        fua || !self.write_cache
    }
}
