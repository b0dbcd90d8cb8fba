//! Changing the model from the device side, while a host runs: Copy limits (with the
//! Namespace Attribute Changed event) and Host Behavior Support CDFE. Experiment control
//! calls these; they know nothing of sockets or JSON.

use std::sync::atomic::Ordering;

use super::namespace::CopyLimits;
use super::Controller;
use crate::sync::lock;

/// Largest Copy Descriptor Formats Enable mask: formats 0 to 3.
pub const MAX_CDFE: u16 = 0xf;

/// Host Behavior Support's Copy Descriptor Formats Enable, now and after a reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostBehavior {
    pub cdfe: u16,
    pub reset_cdfe: u16,
}

impl Controller {
    /// Ids of the attached namespaces, in increasing order.
    pub fn namespace_ids(&self) -> Vec<u32> {
        self.shared().namespaces().iter().map(|n| n.nsid).collect()
    }

    /// Current limits of a namespace.
    pub fn copy_limits(&self, nsid: u32) -> Option<CopyLimits> {
        self.namespace(nsid).map(|ns| ns.copy_limits())
    }

    /// Changes a namespace's Copy limits at once (Identify Namespace and the Copy checks)
    /// and posts a Namespace Attribute Changed event. Errors name the field (0 refused).
    /// A Copy already running keeps the limits it started with.
    pub fn set_copy_limits(
        &self,
        nsid: u32,
        mssrl: Option<u16>,
        mcl: Option<u32>,
        msrc: Option<u8>,
    ) -> Result<CopyLimits, String> {
        let ns = self
            .namespace(nsid)
            .ok_or_else(|| format!("nsid: no namespace {nsid}"))?;
        if mssrl == Some(0) {
            return Err("mssrl: must not be 0".into());
        }
        if mcl == Some(0) {
            return Err("mcl: must not be 0".into());
        }
        let old = ns.copy_limits();
        let new = CopyLimits {
            mssrl: mssrl.unwrap_or(old.mssrl),
            mcl: mcl.unwrap_or(old.mcl),
            msrc: msrc.unwrap_or(old.msrc),
        };
        ns.set_copy_limits(new);
        self.notify_namespace_changed(nsid);
        Ok(new)
    }

    /// Host Behavior Support as the device sees it: CDFE now, and after a reset.
    pub fn host_behavior(&self) -> HostBehavior {
        let inner = self.shared();
        HostBehavior {
            cdfe: lock(&inner.features).cdfe(),
            reset_cdfe: inner.reset_cdfe.load(Ordering::Acquire),
        }
    }

    /// Sets Copy Descriptor Formats Enable from the device's side, as if a host had sent
    /// Set Features Host Behavior Support: at once (the next Copy sees it) and for every
    /// later reset (like `--ctrl cdfe`). A host's Set Features still changes it until the
    /// next reset. The rest of the host's Host Behavior Support data is kept. Errors name
    /// the field.
    pub fn set_host_behavior(&self, cdfe: u16) -> Result<HostBehavior, String> {
        if cdfe > MAX_CDFE {
            return Err(format!(
                "cdfe: {cdfe:#x} is not a mask of copy formats 0-3 (0 to {MAX_CDFE:#x})"
            ));
        }
        let inner = self.shared();
        inner.reset_cdfe.store(cdfe, Ordering::Release);
        lock(&inner.features).set_cdfe(cdfe);
        log::info!("Host Behavior Support CDFE set to {cdfe:#x} by the device's control");
        Ok(self.host_behavior())
    }
}
