//! Target `admin_params`: Identify, Get Log Page, Set Features and Get Features
//! parameters through the controller.
//!
//! A case is a short sequence of these commands (with the odd Asynchronous Event
//! Request or Keep Alive between them, so that Set Features can change what later
//! commands see): CNS from the known list or any, CNTID, CNS-specific id, CSI; LID
//! known or any, LSP, RAE, NUMD edgy (1 dword, a page, MDTS, beyond), offsets edgy
//! (0, dword steps, the end of the page, past it, unaligned, huge); FID known or any,
//! SEL 0-7, SV, CDW11 values edgy; NSIDs 0/1/inactive/NN/NN+1/FFFFFFFFh; buffers behind
//! PRPs (offsets, crossing pages, the hole, far away). The rig's checks apply to every
//! command and the health check to the case.

use super::rig::{self, Rig, PAGE};
use super::Input;
use crate::nvme::spec::{admin_op, cns, feat, log, Sqe};

const CNS: [u8; 10] = [
    cns::NAMESPACE,
    cns::CONTROLLER,
    cns::ACTIVE_NS_LIST,
    cns::NS_DESCRIPTORS,
    cns::CS_NAMESPACE,
    cns::CS_CONTROLLER,
    cns::CS_ACTIVE_NS_LIST,
    cns::CS_INDEPENDENT_NAMESPACE,
    cns::ALLOCATED_NS_LIST,
    cns::ALLOCATED_NAMESPACE,
];

const LIDS: [u8; 8] = [
    log::ERROR_INFO,
    log::SMART,
    log::FIRMWARE_SLOT,
    log::CHANGED_NS_LIST,
    log::COMMANDS_EFFECTS,
    0x00,
    0x06,
    0x80,
];

const FIDS: [u8; 13] = [
    feat::ARBITRATION,
    feat::POWER_MANAGEMENT,
    feat::TEMPERATURE_THRESHOLD,
    feat::ERROR_RECOVERY,
    feat::VOLATILE_WRITE_CACHE,
    feat::NUMBER_OF_QUEUES,
    feat::INTERRUPT_COALESCING,
    feat::INTERRUPT_VECTOR_CONFIG,
    feat::ASYNC_EVENT_CONFIG,
    feat::TIMESTAMP,
    feat::HOST_BEHAVIOR_SUPPORT,
    0x00,
    0x0f,
];

fn identify(inp: &mut Input) -> (Sqe, u64) {
    let c = if inp.one_in(8) {
        inp.u8()
    } else {
        inp.pick(&CNS)
    };
    let cntid = if inp.one_in(4) { inp.u16() } else { 0 };
    let csi = if inp.one_in(4) {
        inp.pick(&[1u8, 2, 0xff])
    } else {
        0
    };
    let sqe = Sqe {
        opcode: admin_op::IDENTIFY,
        nsid: rig::nsid(inp),
        cdw10: c as u32 | ((cntid as u32) << 16),
        cdw11: ((inp.edgy(16, &[]) as u32 & 0xffff) * inp.one_in(4) as u32) | ((csi as u32) << 24),
        ..Default::default()
    };
    (sqe, PAGE)
}

fn get_log(inp: &mut Input, mdts: u8) -> (Sqe, u64) {
    let lid = if inp.one_in(8) {
        inp.u8()
    } else {
        inp.pick(&LIDS)
    };
    let mdts_dw = if mdts == 0 {
        1 << 20
    } else {
        (PAGE << mdts) / 4
    };
    // NUMD is 0's based.
    let numd = inp.edgy(
        32,
        &[0, 1, 127, 128, 1023, 1024, mdts_dw - 1, mdts_dw, 16383],
    ) as u32;
    let lpo = inp.edgy(64, &[4, 64, 508, 512, 4092, PAGE, 1 << 32]);
    let lsp = if inp.one_in(4) { inp.u8() & 0x7f } else { 0 };
    let rae = inp.bool() as u32;
    let sqe = Sqe {
        opcode: admin_op::GET_LOG_PAGE,
        nsid: rig::nsid(inp),
        cdw10: lid as u32 | ((lsp as u32) << 8) | (rae << 15) | ((numd & 0xffff) << 16),
        cdw11: (numd >> 16) | ((inp.one_in(4)) as u32 * ((inp.u16() as u32) << 16)),
        cdw12: lpo as u32,
        cdw13: (lpo >> 32) as u32,
        cdw14: if inp.one_in(8) { inp.u32() } else { 0 },
        ..Default::default()
    };
    // Keep the host buffer bounded: a transfer beyond 64 KiB is refused or truncated
    // by the device, and the pointer then covers what the host really has.
    let len = ((numd as u64 + 1) * 4).min(16 * PAGE);
    (sqe, len)
}

fn features(inp: &mut Input, set: bool) -> (Sqe, u64) {
    let fid = if inp.one_in(8) {
        inp.u8()
    } else {
        inp.pick(&FIDS)
    };
    let sel = if set {
        0
    } else if inp.one_in(4) {
        inp.u8() as u32 & 7
    } else {
        0
    };
    let sv = (inp.one_in(8)) as u32;
    let value = inp.edgy(32, &[0x10001, 0x3f003f, 0x1_0000, 0x1ff, 0x157]) as u32;
    let sqe = Sqe {
        opcode: if set {
            admin_op::SET_FEATURES
        } else {
            admin_op::GET_FEATURES
        },
        nsid: if inp.bool() { 0 } else { rig::nsid(inp) },
        cdw10: fid as u32 | (sel << 8) | (sv << 31),
        cdw11: value,
        ..Default::default()
    };
    (sqe, 512)
}

pub fn run(data: &[u8]) {
    let mut inp = Input::new(data);
    let cfg = rig::config(&mut inp);
    let mdts = cfg.mdts;
    let ns = rig::namespaces(&mut inp);
    let has_b = !inp.one_in(4);
    let mut rig = Rig::new(cfg, ns, has_b);
    for _ in 0..1 + inp.below(8) {
        let (mut sqe, len, to_host) = match inp.u8() % 10 {
            0..=2 => {
                let (s, l) = identify(&mut inp);
                (s, l, true)
            }
            3..=5 => {
                let (s, l) = get_log(&mut inp, mdts);
                (s, l, true)
            }
            6 | 7 => {
                let (s, l) = features(&mut inp, true);
                (s, l, false)
            }
            8 => {
                let (s, l) = features(&mut inp, false);
                (s, l, true)
            }
            _ => {
                if inp.bool() {
                    rig.aer();
                } else {
                    let sqe = Sqe {
                        opcode: admin_op::KEEP_ALIVE,
                        ..Default::default()
                    };
                    if rig.cmd(0, sqe, &[], "Keep Alive").is_none() {
                        break;
                    }
                }
                continue;
            }
        };
        rig.recanary();
        let d = rig::dptr(&rig, &mut inp, len);
        if !to_host {
            // Host Behavior Support and Timestamp read a structure from the host.
            let buf: Vec<u8> = (0..len).map(|_| inp.u8() * (inp.u8() % 2)).collect();
            d.fill(&rig, &buf);
        }
        d.apply(&mut sqe);
        let allowed = if to_host {
            d.writable.clone()
        } else {
            Vec::new()
        };
        let what = format!(
            "admin opcode {:#04x} cdw10 {:#x} cdw11 {:#x} nsid {:#x}",
            sqe.opcode, sqe.cdw10, sqe.cdw11, sqe.nsid
        );
        if rig.cmd(0, sqe, &allowed, &what).is_none() {
            break;
        }
        if inp.is_empty() {
            break;
        }
    }
    rig.health();
}
