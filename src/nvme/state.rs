//! The state the command handlers of one controller share: its settings, namespaces,
//! feature values, asynchronous events, SMART counters, the experiment hooks and its
//! queues. The controller (registers, CC) owns one; the admin handlers take it whole
//! (they manage the controller), the I/O handlers only the narrow [`IoCtx`] built from
//! it for each command.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::aer::{AerDue, AerState};
use super::cmd::{CqParams, SqParams};
use super::feature_values::Features;
use super::health::Stats;
use super::io_context::IoCtx;
use super::namespace::Namespace;
use super::ns_table::{CreateSpec, FormatSpec, NamespaceTable, TableSettings};
use super::prp::Mem;
use super::queues::Queues;
use super::spec::{status, Status};
use super::ControllerConfig;
use crate::hooks::Hooks;
use crate::sync::lock;

pub(crate) struct Shared {
    pub cfg: ControllerConfig,
    pub namespaces: NamespaceTable,
    pub features: Mutex<Features>,
    /// Host Behavior Support CDFE after a reset (`--ctrl cdfe`, `set-host-behavior`).
    pub reset_cdfe: AtomicU16,
    pub aer: Mutex<AerState>,
    /// Volatile Write Cache enabled (feature 6); when off every write is made durable.
    pub write_cache: AtomicBool,
    /// CC.CSS was 110b at the last enable (every I/O command set CAP.CSS names: the
    /// zoned commands on a zoned namespace); 000b enables the NVM command set only.
    pub all_command_sets: AtomicBool,
    pub stats: Stats,
    pub started: Instant,
    /// Experiment control: faults, latencies, counters and records (outside the model).
    pub hooks: Arc<dyn Hooks>,
    /// Queue table, workers, posting, the delay timer.
    pub queues: Arc<Queues>,
}

impl Shared {
    pub fn new(
        cfg: &ControllerConfig,
        namespaces: BTreeMap<u32, Arc<Namespace>>,
        hooks: Arc<dyn Hooks>,
        queues: Arc<Queues>,
    ) -> Shared {
        Shared {
            cfg: cfg.clone(),
            namespaces: NamespaceTable::new(
                namespaces,
                TableSettings {
                    nn: cfg.nn,
                    capacity: cfg.capacity.unwrap_or(0),
                    formats: std::sync::Arc::from(cfg.lbafs.clone()),
                    serial: cfg.serial.clone(),
                    limits: cfg.created_limits,
                },
                crate::block::StorePool::new(cfg.ns_dir.clone()),
            ),
            features: Mutex::new(Features::new(cfg, cfg.cdfe)),
            reset_cdfe: AtomicU16::new(cfg.cdfe),
            aer: Mutex::new(AerState::default()),
            write_cache: AtomicBool::new(true),
            all_command_sets: AtomicBool::new(false),
            stats: Stats::default(),
            started: Instant::now(),
            hooks,
            queues,
        }
    }

    /// The namespace with this id, if attached.
    pub fn namespace(&self, nsid: u32) -> Option<Arc<Namespace>> {
        self.namespaces.get(nsid)
    }

    /// All attached namespaces, by increasing nsid.
    pub fn namespaces(&self) -> Vec<Arc<Namespace>> {
        self.namespaces.all()
    }

    /// Identify Controller NN: the largest valid nsid.
    pub fn nn(&self) -> u32 {
        self.namespaces.nn()
    }

    /// Feature values as a reset leaves them.
    pub fn reset_features(&self) -> Features {
        Features::new(&self.cfg, self.reset_cdfe.load(Ordering::Acquire))
    }

    /// Back to the state after a controller reset (queues are reset by the caller).
    pub fn reset(&self) {
        lock(&self.aer).reset();
        *lock(&self.features) = self.reset_features();
        self.write_cache.store(true, Ordering::Release);
    }

    /// What an I/O command may touch, as of now.
    pub fn io_ctx(&self) -> IoCtx<'_> {
        IoCtx {
            namespaces: &self.namespaces,
            cfg: &self.cfg,
            write_cache: self.write_cache.load(Ordering::Acquire),
            all_command_sets: self.all_command_sets.load(Ordering::Acquire),
            cdfe: lock(&self.features).cdfe(),
            stats: &self.stats,
            hooks: &*self.hooks,
        }
    }

    /// Posts a completion for an admin command completed outside the admin worker (AER).
    pub fn complete_admin(&self, due: AerDue, st: Status) {
        let AerDue { cid, dw0, since } = due;
        self.queues.complete_admin(cid, dw0, since, st);
    }

    /// An Error status event (information value `info`, log page Error Information).
    pub fn error_event(&self, info: u8) {
        let deliveries = lock(&self.aer).error(info);
        for d in deliveries {
            self.complete_admin(d, status::SUCCESS);
        }
    }

    /// A Namespace Attribute Changed event for `nsid`.
    pub fn namespace_changed(&self, nsid: u32) {
        let aec = lock(&self.features).aec;
        let deliveries = lock(&self.aer).namespace_changed(nsid, aec);
        for d in deliveries {
            self.complete_admin(d, status::SUCCESS);
        }
    }

    /// Namespace Management create (the new namespace is not attached: no event).
    pub fn create_namespace(&self, spec: &CreateSpec) -> Result<u32, Status> {
        self.namespaces.create(spec)
    }

    /// Namespace Management delete; the attached namespaces it removes are announced.
    pub fn delete_namespace(&self, nsid: u32) -> Result<Vec<u32>, Status> {
        let gone = self.namespaces.delete(nsid)?;
        for id in &gone {
            self.namespace_changed(*id);
        }
        Ok(gone)
    }

    /// Namespace Attachment for this controller, announced.
    pub fn attach_namespace(&self, nsid: u32, attach: bool, ctrls: &[u16]) -> Result<(), Status> {
        self.namespaces.attach(nsid, attach, ctrls)?;
        self.namespace_changed(nsid);
        Ok(())
    }

    /// Format NVM, announced for every namespace formatted.
    pub fn format_namespace(&self, nsid: u32, spec: &FormatSpec) -> Result<Vec<u32>, Status> {
        let done = self.namespaces.format(nsid, spec)?;
        for id in &done {
            self.namespace_changed(*id);
        }
        Ok(done)
    }

    pub fn create_cq(&self, p: &CqParams) -> Result<(), Status> {
        self.queues.create_cq(p)
    }

    pub fn create_sq(&self, p: &SqParams) -> Result<(), Status> {
        self.queues.create_sq(p)
    }

    pub fn delete_sq(&self, qid: u16) -> Result<(), Status> {
        self.queues.delete_sq(qid)
    }

    pub fn delete_cq(&self, qid: u16) -> Result<(), Status> {
        self.queues.delete_cq(qid)
    }

    /// Doorbell Buffer Config (see [`Queues::set_dbbuf`]).
    pub fn set_dbbuf(&self, mem: &Mem, db: u64, ei: u64) -> Result<(), Status> {
        self.queues.set_dbbuf(mem, db, ei)
    }
}
