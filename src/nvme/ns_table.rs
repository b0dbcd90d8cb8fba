//! The namespaces of the subsystem, allocated and attached: what Identify lists, what
//! commands address, and what Namespace Management, Namespace Attachment and Format NVM
//! change. The NVM capacity accounting (TNVMCAP, UNVMCAP) and the pool new namespaces
//! get their space from live here too. There is one controller (CNTLID 0), so
//! "attached" means attached to it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use super::namespace::{derived_uuid, CopyLimits, LbaFormat, Namespace, NamespaceIds, Origin};
use super::protection::{MetaFormat, PIF_16};
use super::spec::{status, Status, NSID_ALL};
use crate::block::StorePool;
use crate::sync::{lock, read, write};

/// The controller's identifier (Identify Controller CNTLID, the controller lists).
pub const CNTLID: u16 = 0;

struct Slot {
    ns: Arc<Namespace>,
    attached: bool,
}

/// What a host asks of a new namespace (the Namespace Management data structure).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreateSpec {
    pub nsze: u64,
    pub ncap: u64,
    /// Index into the LBA formats (FLBAS bits 3:0 and 6:5).
    pub format: u8,
    /// FLBAS bit 4: metadata at the end of each block's data.
    pub extended: bool,
    /// DPS bits 2:0 and bit 3.
    pub pi: u8,
    pub pi_first: bool,
    /// NMIC bit 0: may be attached to more than one controller.
    pub shared: bool,
}

/// What Format NVM asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FormatSpec {
    pub format: u8,
    pub extended: bool,
    pub pi: u8,
    pub pi_first: bool,
    /// SES: 0 no secure erase, 1 user data erase (2, cryptographic erase, is refused).
    pub ses: u8,
}

/// Settings of the table (from the controller configuration).
#[derive(Debug, Clone)]
pub struct TableSettings {
    /// Identify Controller NN: namespace ids are 1..=nn.
    pub nn: u32,
    /// Total NVM capacity in bytes; at least what the given namespaces take.
    pub capacity: u64,
    pub formats: Arc<[LbaFormat]>,
    pub serial: String,
    /// Copy limits of namespaces created at run time.
    pub limits: CopyLimits,
}

/// Allocated namespaces by nsid, each attached or not.
pub(crate) struct NamespaceTable {
    slots: RwLock<BTreeMap<u32, Slot>>,
    settings: TableSettings,
    pool: StorePool,
    /// Namespaces created so far (salts their UUIDs).
    created: AtomicU64,
    /// Serialises changes, so that a capacity check and the allocation it allows, or
    /// the choice of a free nsid and its use, are one step.
    change: Mutex<()>,
}

impl NamespaceTable {
    /// The table over the namespaces given at start, all allocated and attached.
    pub fn new(
        given: BTreeMap<u32, Arc<Namespace>>,
        settings: TableSettings,
        pool: StorePool,
    ) -> NamespaceTable {
        let max = given.keys().next_back().copied().unwrap_or(0);
        let used: u64 = given.values().map(|n| n.allocated_bytes()).sum();
        let settings = TableSettings {
            nn: settings.nn.max(max),
            capacity: settings.capacity.max(used),
            ..settings
        };
        let slots = given
            .into_iter()
            .map(|(id, ns)| (id, Slot { ns, attached: true }))
            .collect();
        NamespaceTable {
            slots: RwLock::new(slots),
            settings,
            pool,
            created: AtomicU64::new(0),
            change: Mutex::new(()),
        }
    }

    /// The namespace with this id, if attached.
    pub fn get(&self, nsid: u32) -> Option<Arc<Namespace>> {
        read(&self.slots)
            .get(&nsid)
            .filter(|s| s.attached)
            .map(|s| s.ns.clone())
    }

    /// The namespace with this id, if allocated (attached or not).
    pub fn allocated(&self, nsid: u32) -> Option<Arc<Namespace>> {
        read(&self.slots).get(&nsid).map(|s| s.ns.clone())
    }

    /// Whether the namespace is allocated and attached.
    pub fn is_attached(&self, nsid: u32) -> bool {
        read(&self.slots).get(&nsid).is_some_and(|s| s.attached)
    }

    /// All attached namespaces, by increasing nsid.
    pub fn all(&self) -> Vec<Arc<Namespace>> {
        read(&self.slots)
            .values()
            .filter(|s| s.attached)
            .map(|s| s.ns.clone())
            .collect()
    }

    /// All allocated namespaces with whether each is attached, by increasing nsid.
    pub fn all_allocated(&self) -> Vec<(Arc<Namespace>, bool)> {
        read(&self.slots)
            .values()
            .map(|s| (s.ns.clone(), s.attached))
            .collect()
    }

    /// The namespace a command that addresses one namespace names (I/O commands, and the
    /// source namespace of a Copy descriptor), by the NSID rules of NVMe Base 2.x
    /// §3.2.1 (table in docs/hostile-host.md):
    /// - 0, or above NN and not the broadcast value: an invalid NSID, Invalid Namespace
    ///   or Format;
    /// - 1..=NN without an active namespace (an inactive NSID, which includes an
    ///   allocated namespace that is not attached): Invalid Field in Command;
    /// - FFFFFFFFh where the command does not take the broadcast value: Invalid Field in
    ///   Command (callers that do take it, Flush, handle it before asking).
    pub fn lookup(&self, nsid: u32) -> Result<Arc<Namespace>, Status> {
        if let Some(ns) = self.get(nsid) {
            return Ok(ns);
        }
        if nsid == NSID_ALL {
            return Err(status::INVALID_FIELD.dnr());
        }
        if nsid == 0 || nsid > self.nn() {
            return Err(status::INVALID_NAMESPACE.dnr());
        }
        Err(status::INVALID_FIELD.dnr())
    }

    /// Identify Controller NN: the largest valid nsid.
    pub fn nn(&self) -> u32 {
        self.settings.nn
    }

    /// The LBA formats a created namespace may use (Identify Namespace FFFFFFFFh).
    pub fn formats(&self) -> &Arc<[LbaFormat]> {
        &self.settings.formats
    }

    /// TNVMCAP: bytes of NVM in all.
    pub fn capacity(&self) -> u64 {
        self.settings.capacity
    }

    /// UNVMCAP: bytes no namespace takes.
    pub fn unallocated(&self) -> u64 {
        let used: u64 = read(&self.slots)
            .values()
            .map(|s| s.ns.allocated_bytes())
            .sum();
        self.settings.capacity.saturating_sub(used)
    }

    /// An nsid that is valid and not allocated (Invalid Namespace for 0, above NN or
    /// FFFFFFFFh; Invalid Field for one not allocated) checked for commands that take
    /// one allocated namespace.
    fn check_allocated(&self, nsid: u32) -> Result<Arc<Namespace>, Status> {
        if nsid == 0 || (nsid > self.nn() && nsid != NSID_ALL) {
            return Err(status::INVALID_NAMESPACE.dnr());
        }
        if nsid == NSID_ALL {
            return Err(status::INVALID_FIELD.dnr());
        }
        self.allocated(nsid).ok_or(status::INVALID_FIELD.dnr())
    }

    /// Back to exactly `namespaces`, all attached (the fuzz rig's reuse of controllers).
    #[cfg(any(test, feature = "fuzz"))]
    pub fn restore(&self, namespaces: &[Arc<Namespace>]) {
        let _g = lock(&self.change);
        *write(&self.slots) = namespaces
            .iter()
            .map(|ns| {
                let slot = Slot {
                    ns: ns.clone(),
                    attached: true,
                };
                (ns.nsid, slot)
            })
            .collect();
    }

    /// Namespace Management create: allocates the lowest free nsid and its space,
    /// detached. Returns the nsid.
    pub fn create(&self, spec: &CreateSpec) -> Result<u32, Status> {
        let _g = lock(&self.change);
        let formats = &self.settings.formats;
        let Some(&f) = formats.get(spec.format as usize) else {
            log::info!(
                "namespace create: LBA format {} is not one of the {} offered",
                spec.format,
                formats.len()
            );
            return Err(status::INVALID_FORMAT.dnr());
        };
        if spec.nsze == 0 || spec.ncap > spec.nsze {
            log::info!(
                "namespace create: NSZE {} / NCAP {} (NSZE 0 or NCAP above NSZE)",
                spec.nsze,
                spec.ncap
            );
            return Err(status::INVALID_FIELD.dnr());
        }
        if spec.ncap != spec.nsze {
            log::info!(
                "namespace create: NCAP {} below NSZE {}: no thin provisioning",
                spec.ncap,
                spec.nsze
            );
            return Err(status::THIN_PROVISIONING_NOT_SUPPORTED.dnr());
        }
        if spec.shared {
            // CMIC is 0: one controller, no shared namespaces.
            log::info!(
                "namespace create: NMIC asks for a shared namespace; there is one controller"
            );
            return Err(status::INVALID_FIELD.dnr());
        }
        let meta = meta_format(f, spec.extended, spec.pi, spec.pi_first, PIF_16)?;
        let bytes = spec.nsze.saturating_mul(f.bytes_per_block());
        let free = self.unallocated();
        if bytes > free {
            log::info!(
                "namespace create: {} blocks of {} bytes need {bytes} bytes, {free} unallocated",
                spec.nsze,
                f.bytes_per_block()
            );
            return Err(status::NS_INSUFFICIENT_CAPACITY.dnr());
        }
        let nsid = {
            let slots = read(&self.slots);
            (1..=self.nn()).find(|id| !slots.contains_key(id))
        };
        let Some(nsid) = nsid else {
            log::info!(
                "namespace create: all {} namespace ids are in use",
                self.nn()
            );
            return Err(status::NS_ID_UNAVAILABLE.dnr());
        };
        let volume = self
            .pool
            .create(&format!("ns{nsid}"), bytes, f.block_size(), f.ms as u64)
            .map_err(|e| {
                log::error!("namespace create: no backing space for namespace {nsid}: {e}");
                status::INTERNAL_ERROR
            })?;
        let generation = self.created.fetch_add(1, Ordering::Relaxed) + 1;
        let ids = NamespaceIds {
            uuid: Some(derived_uuid(&self.settings.serial, nsid, generation)),
            ..NamespaceIds::default()
        };
        let ns = Namespace::new(nsid, Arc::new(volume), ids, self.settings.limits)
            .with_meta(meta)
            .with_formats(&self.settings.formats)
            .with_origin(Origin::Created);
        log::info!(
            "namespace {nsid} created: {} blocks of {} bytes + {} metadata ({})",
            ns.nsze(),
            f.block_size(),
            f.ms,
            ns.volume().name()
        );
        write(&self.slots).insert(
            nsid,
            Slot {
                ns: Arc::new(ns),
                attached: false,
            },
        );
        Ok(nsid)
    }

    /// Namespace Management delete of `nsid` (FFFFFFFFh: every allocated namespace).
    /// Returns the nsids that were attached (their hosts are told).
    pub fn delete(&self, nsid: u32) -> Result<Vec<u32>, Status> {
        let _g = lock(&self.change);
        let ids: Vec<u32> = if nsid == NSID_ALL {
            read(&self.slots).keys().copied().collect()
        } else {
            vec![self.check_allocated(nsid)?.nsid]
        };
        let mut was_attached = Vec::new();
        for id in ids {
            let Some(slot) = write(&self.slots).remove(&id) else {
                continue;
            };
            if slot.attached {
                was_attached.push(id);
            }
            let remove = match slot.ns.origin() {
                Origin::Created => true,
                Origin::Configured { owned } => owned,
            };
            let name = slot.ns.volume().name().to_string();
            if remove {
                if let Err(e) = StorePool::remove_file(slot.ns.volume()) {
                    log::warn!("namespace {id} deleted, but removing {name} failed: {e}");
                }
                log::info!("namespace {id} deleted ({name} removed)");
            } else {
                log::info!("namespace {id} deleted ({name} kept)");
            }
        }
        Ok(was_attached)
    }

    /// Namespace Attachment: attaches (`attach`) or detaches `nsid` for the controllers
    /// in `controllers` (which must name this controller and no other).
    pub fn attach(&self, nsid: u32, attach: bool, controllers: &[u16]) -> Result<(), Status> {
        let _g = lock(&self.change);
        self.check_allocated(nsid)?;
        if controllers.is_empty() || controllers.iter().any(|&c| c != CNTLID) {
            log::info!(
                "namespace attachment: controller list {controllers:?} does not name controller {CNTLID} alone"
            );
            return Err(status::CONTROLLER_LIST_INVALID.dnr());
        }
        let mut slots = write(&self.slots);
        let Some(slot) = slots.get_mut(&nsid) else {
            return Err(status::INVALID_FIELD.dnr());
        };
        match (attach, slot.attached) {
            (true, true) => {
                log::info!("namespace attachment: namespace {nsid} is already attached");
                Err(status::NS_ALREADY_ATTACHED.dnr())
            }
            (false, false) => {
                log::info!("namespace attachment: namespace {nsid} is not attached");
                Err(status::NS_NOT_ATTACHED.dnr())
            }
            _ => {
                slot.attached = attach;
                log::info!(
                    "namespace {nsid} {}",
                    if attach { "attached" } else { "detached" }
                );
                Ok(())
            }
        }
    }

    /// Format NVM of the attached namespace `nsid` (FFFFFFFFh: every attached one).
    /// Returns the nsids formatted.
    pub fn format(&self, nsid: u32, spec: &FormatSpec) -> Result<Vec<u32>, Status> {
        let _g = lock(&self.change);
        let targets: Vec<Arc<Namespace>> = if nsid == NSID_ALL {
            self.all()
        } else {
            vec![self.lookup(nsid)?]
        };
        if spec.ses > 1 {
            // FNA bit 2 is 0: no cryptographic erase.
            log::info!("format: secure erase setting {} is not supported", spec.ses);
            return Err(status::INVALID_FIELD.dnr());
        }
        // Check every target before changing any.
        let mut made = Vec::with_capacity(targets.len());
        for ns in &targets {
            let Some(&f) = ns.formats().get(spec.format as usize) else {
                log::info!(
                    "format: namespace {} has no LBA format {}",
                    ns.nsid,
                    spec.format
                );
                return Err(status::INVALID_FORMAT.dnr());
            };
            if ns.readonly() {
                log::info!("format: namespace {} is read-only", ns.nsid);
                return Err(status::NAMESPACE_WRITE_PROTECTED.dnr());
            }
            if ns.zones().is_some() && (f.block_size() != ns.block_size() || f.ms != 0) {
                log::info!(
                    "format: zoned namespace {} keeps its block size and has no metadata",
                    ns.nsid
                );
                return Err(status::INVALID_FORMAT.dnr());
            }
            let meta = meta_format(f, spec.extended, spec.pi, spec.pi_first, ns.meta().pif)?;
            let new = ns.reformatted(spec.format, meta).map_err(|e| {
                log::info!("format: namespace {}: {e}", ns.nsid);
                status::INVALID_FORMAT.dnr()
            })?;
            made.push(new);
        }
        let mut done = Vec::with_capacity(made.len());
        for new in made {
            // Every setting erases: a new block size leaves old data meaningless, and
            // SES 0 allows any contents.
            if let Err(e) = new.volume().erase_all() {
                log::error!("format: erasing namespace {} failed: {e}", new.nsid);
                return Err(status::INTERNAL_ERROR);
            }
            // Every zone empty again, in the zone file too.
            if new.save_zones().is_err() {
                return Err(status::INTERNAL_ERROR);
            }
            let id = new.nsid;
            log::info!(
                "namespace {id} formatted: LBA format {} ({} bytes + {} metadata), PI type {}, {} blocks",
                spec.format,
                new.block_size(),
                new.meta().ms,
                new.meta().pi,
                new.nsze()
            );
            if let Some(slot) = write(&self.slots).get_mut(&id) {
                slot.ns = Arc::new(new);
            }
            done.push(id);
        }
        Ok(done)
    }
}

/// The metadata format of LBA format `f` with these protection settings, or the status
/// the spec gives a create or format that asks for an impossible one.
fn meta_format(
    f: LbaFormat,
    extended: bool,
    pi: u8,
    pi_first: bool,
    pif: u8,
) -> Result<MetaFormat, Status> {
    if pi > 3 {
        log::info!("protection information type {pi} does not exist");
        return Err(status::INVALID_FIELD.dnr());
    }
    let meta = MetaFormat {
        ms: f.ms,
        extended: extended && f.ms != 0,
        pi,
        pi_first,
        pif,
    };
    if pi != 0 && (f.ms as usize) < meta.tuple_size() {
        log::info!(
            "protection information type {pi} needs {} bytes of metadata; the format has {}",
            meta.tuple_size(),
            f.ms
        );
        return Err(status::INVALID_FORMAT.dnr());
    }
    Ok(meta)
}
