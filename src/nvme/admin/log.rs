//! Get Log Page: Error Information, SMART / Health Information, Firmware Slot
//! Information, Changed Namespace List, Commands Supported and Effects and LBA Status
//! Information (built in [`super::lba_status`]).

use std::sync::atomic::Ordering;

use crate::nvme::cmd::{LogPageCmd, ADMIN_OPCODES};
use crate::nvme::identify;
use crate::nvme::prp::{to_host_prefix, Mem};
use crate::nvme::settings::COMPOSITE_TEMPERATURE;
use crate::nvme::spec::Status;
use crate::nvme::spec::{
    admin_op, io_op, log, put_ascii, put_u16, put_u32, put_u64, status, CSI_NVM, CSI_ZNS,
};
use crate::nvme::state::Shared;
use crate::nvme::ControllerConfig;
use crate::sync::lock;

pub(super) fn get_log_page(inner: &Shared, mem: &Mem, c: &LogPageCmd) -> Result<(), Status> {
    if super::over_mdts(inner, c.len()) {
        return Err(status::INVALID_FIELD.dnr());
    }
    let data = match c.lid {
        log::ERROR_INFO => lock(&inner.aer).error_log(c.rae),
        log::SMART => smart_log(inner),
        log::FIRMWARE_SLOT => firmware_slot_log(),
        log::CHANGED_NS_LIST => lock(&inner.aer).changed_list(c.rae),
        log::COMMANDS_EFFECTS => effects_log(&inner.cfg, c.csi)?,
        log::LBA_STATUS => super::lba_status::log_page(inner),
        _ => return Err(status::INVALID_LOG_PAGE.dnr()),
    };
    let Ok(start) = usize::try_from(c.offset) else {
        return Err(status::INVALID_FIELD.dnr());
    };
    if start > data.len() {
        return Err(status::INVALID_FIELD.dnr());
    }
    let end = (start as u64 + c.len()).min(data.len() as u64) as usize;
    // The host's buffer is NUMD dwords even when the log is shorter: its PRPs describe
    // that many bytes (PRP2 may be a list), and only the log's bytes are written.
    to_host_prefix(mem, &c.dptr, c.len(), &data[start..end])
}

fn data_units(bytes: u64) -> u64 {
    (bytes / 512).div_ceil(1000)
}

fn smart_log(inner: &Shared) -> Vec<u8> {
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
    put_ascii(&mut b, 8, 8, identify::FIRMWARE_REVISION);
    b
}

/// Commands Supported and Effects: CSUPP for every command we run, LBCC for the ones
/// that change logical block content. Copy is listed only when `--ctrl copy=on`.
/// Namespace Management and Attachment change the namespace inventory (NIC) and Format
/// NVM a namespace's capabilities (NCC), so that a host rescans when they complete;
/// Format also wants no other command to its namespace meanwhile (CSE 001b).
/// For CSI 2 (zoned) the I/O part also lists Zone Management Send (LBCC: a reset
/// deallocates), Zone Management Receive and Zone Append (LBCC); another CSI gets
/// Invalid Field.
fn effects_log(cfg: &ControllerConfig, csi: u8) -> Result<Vec<u8>, Status> {
    if csi != CSI_NVM && csi != CSI_ZNS {
        return Err(status::INVALID_FIELD.dnr());
    }
    const CSUPP: u32 = 1;
    const LBCC: u32 = 1 << 1;
    const NCC: u32 = 1 << 2;
    const NIC: u32 = 1 << 3;
    const CSE_NAMESPACE: u32 = 1 << 16;
    let mut b = vec![0u8; 4096];
    for op in ADMIN_OPCODES {
        let fx = match op {
            admin_op::NAMESPACE_MANAGEMENT | admin_op::NAMESPACE_ATTACHMENT => NIC | NCC,
            admin_op::FORMAT_NVM => LBCC | NCC | CSE_NAMESPACE,
            _ => 0,
        };
        put_u32(&mut b, op as usize * 4, CSUPP | fx);
    }
    for (op, fx) in crate::nvme::io::SUPPORTED {
        if *op == io_op::COPY && !cfg.copy {
            continue;
        }
        let v = CSUPP | if *fx { LBCC } else { 0 };
        put_u32(&mut b, 1024 + *op as usize * 4, v);
    }
    if csi == CSI_ZNS {
        for (op, fx) in crate::nvme::zoned::SUPPORTED {
            let v = CSUPP | if *fx { LBCC } else { 0 };
            put_u32(&mut b, 1024 + *op as usize * 4, v);
        }
    }
    Ok(b)
}
