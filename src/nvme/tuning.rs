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

/// A namespace as the control socket lists it: allocated, and attached or not.
#[derive(Debug, Clone)]
pub struct AllocatedNamespace {
    pub ns: std::sync::Arc<super::Namespace>,
    pub attached: bool,
}

/// Why a namespace change from the device side failed: the NVMe status a host would
/// have got for the same request, by name.
fn refused(s: super::spec::Status) -> String {
    format!(
        "refused with {} ({:#06x})",
        super::names::status_name(s.0 & 0x3fff),
        s.0
    )
}

impl Controller {
    /// Makes `namespaces` (as they were when the controller was built) the only ones,
    /// all attached, whatever a host created, deleted, detached or formatted since: the
    /// fuzz rig reuses controllers across cases. No events.
    #[cfg(any(test, feature = "fuzz"))]
    pub(crate) fn restore_namespaces(&self, namespaces: &[std::sync::Arc<super::Namespace>]) {
        self.shared().namespaces.restore(namespaces);
    }

    /// Every allocated namespace, attached or not, by increasing nsid.
    pub fn allocated_namespaces(&self) -> Vec<AllocatedNamespace> {
        self.shared()
            .namespaces
            .all_allocated()
            .into_iter()
            .map(|(ns, attached)| AllocatedNamespace { ns, attached })
            .collect()
    }

    /// TNVMCAP and UNVMCAP: bytes of NVM in all, and not taken by a namespace.
    pub fn nvm_capacity(&self) -> (u64, u64) {
        let t = &self.shared().namespaces;
        (t.capacity(), t.unallocated())
    }

    /// The LBA formats a created namespace may use.
    pub fn lba_formats(&self) -> Vec<super::namespace::LbaFormat> {
        self.shared().namespaces.formats().to_vec()
    }

    /// Creates a namespace as Namespace Management would (not attached). Returns its nsid.
    pub fn create_namespace(&self, spec: &super::ns_table::CreateSpec) -> Result<u32, String> {
        self.shared().create_namespace(spec).map_err(refused)
    }

    /// Deletes namespace `nsid` (FFFFFFFFh: all), as Namespace Management would, with the
    /// event for each attached one. Returns the nsids that were attached.
    pub fn delete_namespace(&self, nsid: u32) -> Result<Vec<u32>, String> {
        self.shared().delete_namespace(nsid).map_err(refused)
    }

    /// Attaches or detaches namespace `nsid` for this controller, with the event.
    pub fn attach_namespace(&self, nsid: u32, attach: bool) -> Result<(), String> {
        self.shared()
            .attach_namespace(nsid, attach, &[super::ns_table::CNTLID])
            .map_err(refused)
    }

    /// Formats namespace `nsid` (FFFFFFFFh: all attached) as Format NVM would, with the
    /// event for each. Returns the nsids formatted.
    pub fn format_namespace(
        &self,
        nsid: u32,
        spec: &super::ns_table::FormatSpec,
    ) -> Result<Vec<u32>, String> {
        self.shared().format_namespace(nsid, spec).map_err(refused)
    }
}
