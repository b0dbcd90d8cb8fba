//! Admin commands: Identify, Get Log Page, Get/Set Features, Create/Delete I/O SQ/CQ,
//! Asynchronous Event Request, Abort, Keep Alive and Doorbell Buffer Config, plus the
//! state they own (feature values, held event requests, the Changed Namespace List).

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::controller::{lock, CqParams, Inner, Outcome, SqParams};
use super::identify;
use super::prp::{Dma, Mem};
use super::spec::{admin_op, aer, cns, feat, log, status, Sqe, Status, CSI_NVM, NSID_ALL};
use crate::config::ControllerConfig;

/// Asynchronous Event Request Limit, 0's based (Identify Controller AERL).
pub const AERL: u8 = 3;
/// Composite temperature reported in the SMART log, in kelvins (50 °C).
pub const COMPOSITE_TEMPERATURE: u16 = 323;
/// Default over-temperature threshold (Identify WCTEMP), in kelvins.
pub const WARNING_TEMPERATURE: u16 = 343;
/// Critical composite temperature (Identify CCTEMP), in kelvins.
pub const CRITICAL_TEMPERATURE: u16 = 373;
/// Size of the Host Behavior Support data structure.
pub const HOST_BEHAVIOR_SIZE: usize = 512;
/// Size of the Changed Namespace List log page (1024 nsids).
const CHANGED_NS_LIST_SIZE: usize = 4096;

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

/// An Asynchronous Event Request completion now due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AerDue {
    pub cid: u16,
    pub dw0: u32,
    /// When the request was fetched.
    pub since: Instant,
}

/// Held Asynchronous Event Requests and events waiting for one.
#[derive(Debug, Default)]
pub(crate) struct AerState {
    /// Held requests: command id and when it was fetched (for the command record).
    outstanding: VecDeque<(u16, Instant)>,
    pending: VecDeque<u32>,
    /// A namespace notice was reported and the host has not read log page 4 yet.
    ns_notice_masked: bool,
    changed: Vec<u32>,
    changed_overflow: bool,
}

impl AerState {
    /// Event completion Dword 0 of a Namespace Attribute Changed notice.
    pub const NS_ATTR_CHANGED_DW0: u32 = aer::TYPE_NOTICE as u32
        | ((aer::INFO_NS_ATTR_CHANGED as u32) << 8)
        | ((log::CHANGED_NS_LIST as u32) << 16);

    fn deliver(&mut self) -> Vec<AerDue> {
        let mut out = Vec::new();
        while !self.outstanding.is_empty() && !self.pending.is_empty() {
            if let (Some((cid, since)), Some(dw0)) =
                (self.outstanding.pop_front(), self.pending.pop_front())
            {
                out.push(AerDue { cid, dw0, since });
            }
        }
        out
    }

    /// Holds a new request fetched at `since`. Returns the completions now due, or AER
    /// Limit Exceeded.
    pub fn request(&mut self, cid: u16, since: Instant) -> Result<Vec<AerDue>, Status> {
        if self.outstanding.len() > AERL as usize {
            return Err(status::AER_LIMIT_EXCEEDED.dnr());
        }
        self.outstanding.push_back((cid, since));
        Ok(self.deliver())
    }

    /// Records a changed namespace and, if `aec` enables the notice and it is not masked,
    /// queues the event. Returns the completions now due.
    pub fn namespace_changed(&mut self, nsid: u32, aec: u32) -> Vec<AerDue> {
        if !self.changed.contains(&nsid) {
            if self.changed.len() < CHANGED_NS_LIST_SIZE / 4 {
                self.changed.push(nsid);
            } else {
                self.changed_overflow = true;
            }
        }
        if aec & aer::AEC_NS_ATTR != 0 && !self.ns_notice_masked {
            self.ns_notice_masked = true;
            self.pending.push_back(Self::NS_ATTR_CHANGED_DW0);
        }
        self.deliver()
    }

    /// The Changed Namespace List log; cleared (and the notice unmasked) unless `rae`.
    fn changed_list(&mut self, rae: bool) -> Vec<u8> {
        let mut b = vec![0u8; CHANGED_NS_LIST_SIZE];
        if self.changed_overflow {
            b[..4].copy_from_slice(&NSID_ALL.to_le_bytes());
        } else {
            let mut list = self.changed.clone();
            list.sort_unstable();
            for (i, nsid) in list.iter().enumerate() {
                b[i * 4..i * 4 + 4].copy_from_slice(&nsid.to_le_bytes());
            }
        }
        if !rae {
            self.changed.clear();
            self.changed_overflow = false;
            self.ns_notice_masked = false;
        }
        b
    }

    /// Controller reset: outstanding requests are gone, events are forgotten.
    pub fn reset(&mut self) {
        self.outstanding.clear();
        self.pending.clear();
        self.ns_notice_masked = false;
    }
}

/// Copies `data` to the host buffer described by the command's data pointer.
fn send(mem: &Mem, sqe: &Sqe, data: &[u8]) -> Result<(), Status> {
    let dma = Dma::map(mem, sqe, data.len() as u64)?;
    dma.write_from(data);
    Ok(())
}

/// Reads `len` bytes from the host buffer described by the command's data pointer.
fn receive(mem: &Mem, sqe: &Sqe, len: usize) -> Result<Vec<u8>, Status> {
    let dma = Dma::map(mem, sqe, len as u64)?;
    let mut buf = vec![0u8; len];
    dma.read_into(&mut buf);
    Ok(buf)
}

/// Runs one admin command.
pub(crate) fn execute(inner: &Arc<Inner>, mem: &Mem, sqe: &Sqe) -> Outcome {
    match sqe.opcode {
        admin_op::DELETE_IO_SQ => inner.delete_sq(sqe.cdw10 as u16).map(|_| 0).into(),
        admin_op::CREATE_IO_SQ => inner
            .create_sq(&SqParams {
                qid: sqe.cdw10 as u16,
                size: (sqe.cdw10 >> 16) + 1,
                base: sqe.dptr1,
                contiguous: sqe.cdw11 & 1 != 0,
                cqid: (sqe.cdw11 >> 16) as u16,
            })
            .map(|_| 0)
            .into(),
        admin_op::GET_LOG_PAGE => get_log_page(inner, mem, sqe).map(|_| 0).into(),
        admin_op::DELETE_IO_CQ => inner.delete_cq(sqe.cdw10 as u16).map(|_| 0).into(),
        admin_op::CREATE_IO_CQ => inner
            .create_cq(&CqParams {
                qid: sqe.cdw10 as u16,
                size: (sqe.cdw10 >> 16) + 1,
                base: sqe.dptr1,
                contiguous: sqe.cdw11 & 1 != 0,
                ien: sqe.cdw11 & 2 != 0,
                vector: (sqe.cdw11 >> 16) as u16,
            })
            .map(|_| 0)
            .into(),
        admin_op::IDENTIFY => identify(inner, mem, sqe).map(|_| 0).into(),
        // Commands run to completion as soon as they are fetched: nothing can be aborted.
        admin_op::ABORT => Outcome::ok(1),
        admin_op::SET_FEATURES => set_features(inner, mem, sqe).into(),
        admin_op::GET_FEATURES => get_features(inner, mem, sqe).into(),
        admin_op::ASYNC_EVENT_REQUEST => {
            let due = lock(&inner.aer).request(sqe.cid, Instant::now());
            match due {
                Ok(due) => {
                    let mut own = None;
                    for d in due {
                        if d.cid == sqe.cid {
                            // Completed at once by a pending event: posted by our worker.
                            own = Some(d.dw0);
                        } else {
                            inner.complete_admin(d, status::SUCCESS);
                        }
                    }
                    own.map_or(Outcome::Deferred, Outcome::ok)
                }
                Err(s) => Outcome::err(s),
            }
        }
        admin_op::KEEP_ALIVE => Outcome::ok(0),
        admin_op::DOORBELL_BUFFER_CONFIG => {
            if sqe.psdt != 0 {
                return Outcome::err(status::INVALID_FIELD.dnr());
            }
            inner.set_dbbuf(mem, sqe.dptr1, sqe.dptr2).map(|_| 0).into()
        }
        _ => Outcome::err(status::INVALID_OPCODE.dnr()),
    }
}

fn identify(inner: &Arc<Inner>, mem: &Mem, sqe: &Sqe) -> Result<(), Status> {
    let cns_v = (sqe.cdw10 & 0xff) as u8;
    let csi = (sqe.cdw11 >> 24) as u8;
    let nsid = sqe.nsid;
    let nn = inner.nn();
    // For CNS values addressing one namespace: Invalid Namespace for 0 or > NN, all
    // zeroes for a valid but inactive id.
    let one_ns = |allow_all: bool| -> Result<Option<Arc<super::Namespace>>, Status> {
        if nsid == NSID_ALL && allow_all {
            return Ok(None);
        }
        if nsid == 0 || nsid > nn {
            return Err(status::INVALID_NAMESPACE.dnr());
        }
        Ok(inner.namespace(nsid))
    };
    let data = match cns_v {
        cns::NAMESPACE | cns::ALLOCATED_NAMESPACE => {
            if nsid == NSID_ALL {
                identify::namespace_common(inner)
            } else {
                match one_ns(false)? {
                    Some(ns) => identify::namespace(&ns),
                    None => identify::zeroes(),
                }
            }
        }
        cns::CONTROLLER => identify::controller(inner),
        cns::ACTIVE_NS_LIST | cns::ALLOCATED_NS_LIST => {
            if nsid >= NSID_ALL - 1 {
                return Err(status::INVALID_NAMESPACE.dnr());
            }
            identify::ns_list(inner, nsid)
        }
        cns::NS_DESCRIPTORS => match one_ns(false)? {
            Some(ns) => identify::ns_descriptors(&ns, &inner.cfg.serial),
            None => return Err(status::INVALID_NAMESPACE.dnr()),
        },
        cns::CS_NAMESPACE => {
            if csi != CSI_NVM {
                return Err(status::INVALID_FIELD.dnr());
            }
            one_ns(false)?;
            identify::nvm_namespace()
        }
        cns::CS_CONTROLLER => {
            if csi != CSI_NVM {
                return Err(status::INVALID_FIELD.dnr());
            }
            identify::nvm_controller()
        }
        cns::CS_ACTIVE_NS_LIST => {
            if csi != CSI_NVM {
                return Err(status::INVALID_FIELD.dnr());
            }
            if nsid >= NSID_ALL - 1 {
                return Err(status::INVALID_NAMESPACE.dnr());
            }
            identify::ns_list(inner, nsid)
        }
        cns::CS_INDEPENDENT_NAMESPACE => match one_ns(false)? {
            Some(ns) => identify::cs_independent_namespace(&ns),
            None => identify::zeroes(),
        },
        _ => return Err(status::INVALID_FIELD.dnr()),
    };
    send(mem, sqe, &data)
}

fn get_log_page(inner: &Arc<Inner>, mem: &Mem, sqe: &Sqe) -> Result<(), Status> {
    let lid = (sqe.cdw10 & 0xff) as u8;
    let rae = sqe.cdw10 & (1 << 15) != 0;
    let numd = ((sqe.cdw11 & 0xffff) << 16 | (sqe.cdw10 >> 16)) as u64 + 1;
    let len = numd * 4;
    let lpo = sqe.cdw12 as u64 | ((sqe.cdw13 as u64) << 32);
    if !lpo.is_multiple_of(4) {
        return Err(status::INVALID_FIELD.dnr());
    }
    let data = match lid {
        log::ERROR_INFO => vec![0u8; 64],
        log::SMART => smart_log(inner),
        log::FIRMWARE_SLOT => firmware_slot_log(),
        log::CHANGED_NS_LIST => lock(&inner.aer).changed_list(rae),
        log::COMMANDS_EFFECTS => effects_log(&inner.cfg),
        _ => return Err(status::INVALID_LOG_PAGE.dnr()),
    };
    let Ok(start) = usize::try_from(lpo) else {
        return Err(status::INVALID_FIELD.dnr());
    };
    if start > data.len() {
        return Err(status::INVALID_FIELD.dnr());
    }
    let end = (start as u64 + len).min(data.len() as u64) as usize;
    send(mem, sqe, &data[start..end])
}

fn data_units(bytes: u64) -> u64 {
    (bytes / 512).div_ceil(1000)
}

fn smart_log(inner: &Inner) -> Vec<u8> {
    use super::spec::{put_u16, put_u64};
    let mut b = vec![0u8; 512];
    let f = lock(&inner.features).clone();
    let mut warning = 0u8;
    if COMPOSITE_TEMPERATURE >= f.temp_over || COMPOSITE_TEMPERATURE <= f.temp_under {
        warning |= 1 << 1;
    }
    b[0] = warning;
    put_u16(&mut b, 1, COMPOSITE_TEMPERATURE);
    b[3] = 100; // available spare
    b[4] = 10; // available spare threshold
    let s = &inner.stats;
    put_u64(&mut b, 32, data_units(s.bytes_read.load(Ordering::Relaxed)));
    put_u64(
        &mut b,
        48,
        data_units(s.bytes_written.load(Ordering::Relaxed)),
    );
    put_u64(&mut b, 64, s.read_commands.load(Ordering::Relaxed));
    put_u64(&mut b, 80, s.write_commands.load(Ordering::Relaxed));
    put_u64(&mut b, 112, 1); // power cycles
    put_u64(&mut b, 128, inner.started.elapsed().as_secs() / 3600);
    b
}

fn firmware_slot_log() -> Vec<u8> {
    let mut b = vec![0u8; 512];
    b[0] = 1; // slot 1 active
    super::spec::put_ascii(&mut b, 8, 8, identify::FIRMWARE_REVISION);
    b
}

/// Commands Supported and Effects: CSUPP for every command we run, LBCC for the ones
/// that change logical block content. Copy is listed only when `--ctrl copy=on`.
fn effects_log(cfg: &ControllerConfig) -> Vec<u8> {
    const CSUPP: u32 = 1;
    const LBCC: u32 = 1 << 1;
    let mut b = vec![0u8; 4096];
    let admin = [
        admin_op::DELETE_IO_SQ,
        admin_op::CREATE_IO_SQ,
        admin_op::GET_LOG_PAGE,
        admin_op::DELETE_IO_CQ,
        admin_op::CREATE_IO_CQ,
        admin_op::IDENTIFY,
        admin_op::ABORT,
        admin_op::SET_FEATURES,
        admin_op::GET_FEATURES,
        admin_op::ASYNC_EVENT_REQUEST,
        admin_op::KEEP_ALIVE,
        admin_op::DOORBELL_BUFFER_CONFIG,
    ];
    for op in admin {
        super::spec::put_u32(&mut b, op as usize * 4, CSUPP);
    }
    for (op, fx) in super::io::SUPPORTED {
        if *op == super::spec::io_op::COPY && !cfg.copy {
            continue;
        }
        let v = CSUPP | if *fx { LBCC } else { 0 };
        super::spec::put_u32(&mut b, 1024 + *op as usize * 4, v);
    }
    b
}

/// Which features the host may change, and whether Get Features has data to send.
fn known_feature(fid: u8) -> bool {
    matches!(
        fid,
        feat::ARBITRATION
            | feat::POWER_MANAGEMENT
            | feat::TEMPERATURE_THRESHOLD
            | feat::ERROR_RECOVERY
            | feat::VOLATILE_WRITE_CACHE
            | feat::NUMBER_OF_QUEUES
            | feat::INTERRUPT_COALESCING
            | feat::INTERRUPT_VECTOR_CONFIG
            | feat::ASYNC_EVENT_CONFIG
            | feat::TIMESTAMP
            | feat::HOST_BEHAVIOR_SUPPORT
    )
}

fn queues_dw0(inner: &Inner) -> u32 {
    let n = inner.cfg.max_ioqpairs as u32 - 1;
    n | (n << 16)
}

fn timestamp_bytes(f: &Features, started: Instant) -> [u8; 8] {
    let (ms, origin) = match f.timestamp {
        Some((base, at)) => (base + at.elapsed().as_millis() as u64, 1u8),
        None => (started.elapsed().as_millis() as u64, 0u8),
    };
    let mut b = [0u8; 8];
    b[..6].copy_from_slice(&ms.to_le_bytes()[..6]);
    b[6] = origin << 1;
    b
}

fn set_features(inner: &Arc<Inner>, mem: &Mem, sqe: &Sqe) -> Result<u32, Status> {
    let fid = (sqe.cdw10 & 0xff) as u8;
    if !known_feature(fid) {
        return Err(status::INVALID_FIELD.dnr());
    }
    if sqe.cdw10 & (1 << 31) != 0 {
        return Err(status::FEATURE_NOT_SAVEABLE.dnr());
    }
    let v = sqe.cdw11;
    match fid {
        feat::ARBITRATION => lock(&inner.features).arbitration = v,
        feat::POWER_MANAGEMENT => {
            if v & 0x1f != 0 {
                return Err(status::INVALID_FIELD.dnr());
            }
            lock(&inner.features).power_management = v & 0xff;
        }
        feat::TEMPERATURE_THRESHOLD => {
            let tmpth = (v & 0xffff) as u16;
            let tmpsel = (v >> 16) & 0xf;
            let thsel = (v >> 20) & 3;
            if tmpsel != 0 {
                return Err(status::INVALID_FIELD.dnr());
            }
            let mut f = lock(&inner.features);
            match thsel {
                0 => f.temp_over = tmpth,
                1 => f.temp_under = tmpth,
                _ => return Err(status::INVALID_FIELD.dnr()),
            }
        }
        feat::ERROR_RECOVERY => {
            if v & (1 << 16) != 0 {
                // DULBE: deallocated blocks read as zeroes, never as errors.
                return Err(status::INVALID_FIELD.dnr());
            }
            lock(&inner.features).error_recovery = v & 0xffff;
        }
        feat::VOLATILE_WRITE_CACHE => {
            let on = v & 1 != 0;
            let was = inner.write_cache.swap(on, Ordering::AcqRel);
            if was && !on {
                for ns in inner.namespaces() {
                    ns.volume().flush().map_err(|e| {
                        super::status::of_block(
                            &format!("write cache off: flush of namespace {}", ns.nsid),
                            &e,
                        )
                    })?;
                }
            }
        }
        feat::NUMBER_OF_QUEUES => {
            if v & 0xffff == 0xffff || v >> 16 == 0xffff {
                return Err(status::INVALID_FIELD.dnr());
            }
            return Ok(queues_dw0(inner));
        }
        feat::INTERRUPT_COALESCING => lock(&inner.features).interrupt_coalescing = v & 0xffff,
        feat::INTERRUPT_VECTOR_CONFIG => {
            let iv = (v & 0xffff) as usize;
            let mut f = lock(&inner.features);
            match f.vector_cd.get_mut(iv) {
                Some(cd) => *cd = v & (1 << 16) != 0,
                None => return Err(status::INVALID_FIELD.dnr()),
            }
        }
        feat::ASYNC_EVENT_CONFIG => lock(&inner.features).aec = v & 0x1ff,
        feat::TIMESTAMP => {
            let b = receive(mem, sqe, 8)?;
            let mut a = [0u8; 8];
            a[..6].copy_from_slice(&b[..6]);
            lock(&inner.features).timestamp = Some((u64::from_le_bytes(a), Instant::now()));
        }
        feat::HOST_BEHAVIOR_SUPPORT => {
            let b = receive(mem, sqe, HOST_BEHAVIOR_SIZE)?;
            let mut f = lock(&inner.features);
            f.host_behavior.copy_from_slice(&b);
        }
        _ => return Err(status::INVALID_FIELD.dnr()),
    }
    Ok(0)
}

fn get_features(inner: &Arc<Inner>, mem: &Mem, sqe: &Sqe) -> Result<u32, Status> {
    let fid = (sqe.cdw10 & 0xff) as u8;
    let sel = (sqe.cdw10 >> 8) & 7;
    if !known_feature(fid) {
        return Err(status::INVALID_FIELD.dnr());
    }
    match sel {
        0..=2 => {}
        // Supported capabilities: changeable, not saveable, not namespace specific.
        3 => return Ok(1 << 2),
        _ => return Err(status::INVALID_FIELD.dnr()),
    }
    let f = if sel == 0 {
        lock(&inner.features).clone()
    } else {
        inner.reset_features()
    };
    let v = sqe.cdw11;
    Ok(match fid {
        feat::ARBITRATION => f.arbitration,
        feat::POWER_MANAGEMENT => f.power_management,
        feat::TEMPERATURE_THRESHOLD => {
            if (v >> 16) & 0xf != 0 {
                return Err(status::INVALID_FIELD.dnr());
            }
            match (v >> 20) & 3 {
                0 => f.temp_over as u32,
                1 => f.temp_under as u32,
                _ => return Err(status::INVALID_FIELD.dnr()),
            }
        }
        feat::ERROR_RECOVERY => f.error_recovery,
        feat::VOLATILE_WRITE_CACHE => {
            if sel == 0 {
                inner.write_cache.load(Ordering::Acquire) as u32
            } else {
                1
            }
        }
        feat::NUMBER_OF_QUEUES => queues_dw0(inner),
        feat::INTERRUPT_COALESCING => f.interrupt_coalescing,
        feat::INTERRUPT_VECTOR_CONFIG => {
            let iv = (v & 0xffff) as usize;
            match f.vector_cd.get(iv) {
                Some(cd) => iv as u32 | ((*cd as u32) << 16),
                None => return Err(status::INVALID_FIELD.dnr()),
            }
        }
        feat::ASYNC_EVENT_CONFIG => f.aec,
        feat::TIMESTAMP => {
            send(mem, sqe, &timestamp_bytes(&f, inner.started))?;
            0
        }
        feat::HOST_BEHAVIOR_SUPPORT => {
            send(mem, sqe, &f.host_behavior)?;
            0
        }
        _ => return Err(status::INVALID_FIELD.dnr()),
    })
}
