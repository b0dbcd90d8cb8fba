//! Set Features and Get Features, and the feature values they act on (reset to defaults
//! by a controller reset).

use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::nvme::cmd::{FeatureSel, GetFeaturesCmd, SetFeaturesCmd};
use crate::nvme::feature_values::{Features, HOST_BEHAVIOR_SIZE};
use crate::nvme::prp::{from_host, to_host, Mem};
use crate::nvme::spec::{feat, status, Status};
use crate::nvme::state::Shared;
use crate::sync::lock;

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
            | feat::WRITE_ATOMICITY
            | feat::ASYNC_EVENT_CONFIG
            | feat::TIMESTAMP
            | feat::LBA_STATUS_ATTRIBUTES
            | feat::HOST_BEHAVIOR_SUPPORT
    )
}

fn queues_dw0(inner: &Shared) -> u32 {
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

pub(super) fn set(inner: &Shared, mem: &Mem, c: &SetFeaturesCmd) -> Result<u32, Status> {
    if !known_feature(c.fid) {
        return Err(status::INVALID_FIELD.dnr());
    }
    if c.save {
        return Err(status::FEATURE_NOT_SAVEABLE.dnr());
    }
    let v = c.value;
    match c.fid {
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
                        crate::nvme::status::of_block(
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
            // The spec: after any I/O queue was created, Command Sequence Error.
            if inner.queues.io_queues_created() {
                return Err(status::COMMAND_SEQUENCE_ERROR.dnr());
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
        feat::WRITE_ATOMICITY => lock(&inner.features).write_atomicity = v & 1,
        feat::LBA_STATUS_ATTRIBUTES => lock(&inner.features).lba_status_attributes = v,
        feat::ASYNC_EVENT_CONFIG => lock(&inner.features).aec = v & 0x1ff,
        feat::TIMESTAMP => {
            let b = from_host(mem, &c.dptr, 8)?;
            let mut a = [0u8; 8];
            a[..6].copy_from_slice(&b[..6]);
            lock(&inner.features).timestamp = Some((u64::from_le_bytes(a), Instant::now()));
        }
        feat::HOST_BEHAVIOR_SUPPORT => {
            let b = from_host(mem, &c.dptr, HOST_BEHAVIOR_SIZE)?;
            let mut f = lock(&inner.features);
            f.host_behavior.copy_from_slice(&b);
        }
        _ => return Err(status::INVALID_FIELD.dnr()),
    }
    Ok(0)
}

pub(super) fn get(inner: &Shared, mem: &Mem, c: &GetFeaturesCmd) -> Result<u32, Status> {
    if !known_feature(c.fid) {
        return Err(status::INVALID_FIELD.dnr());
    }
    let f = match c.sel {
        FeatureSel::Current => lock(&inner.features).clone(),
        FeatureSel::Default | FeatureSel::Saved => inner.reset_features(),
        // Supported capabilities: changeable, not saveable, not namespace specific.
        FeatureSel::SupportedCapabilities => return Ok(1 << 2),
    };
    let v = c.value;
    Ok(match c.fid {
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
            if c.sel == FeatureSel::Current {
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
        feat::WRITE_ATOMICITY => f.write_atomicity,
        feat::LBA_STATUS_ATTRIBUTES => f.lba_status_attributes,
        feat::ASYNC_EVENT_CONFIG => f.aec,
        feat::TIMESTAMP => {
            to_host(mem, &c.dptr, &timestamp_bytes(&f, inner.started))?;
            0
        }
        feat::HOST_BEHAVIOR_SUPPORT => {
            to_host(mem, &c.dptr, &f.host_behavior)?;
            0
        }
        _ => return Err(status::INVALID_FIELD.dnr()),
    })
}
