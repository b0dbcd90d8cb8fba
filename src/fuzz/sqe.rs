//! Target `sqe`: submission queue entries and their data pointers.
//!
//! Three parts per case: (1) `decode_admin`/`decode_io` on an entry built from the
//! input (opcodes from the known lists, edgy fields), which must not panic and may only
//! refuse with a named status; (2) `walk_prp`/`walk_sgl` and resolution on generated
//! PRP lists and SGL chains in the rig's fake guest memory: a well-formed pointer must
//! walk to exactly the buffer the host built and resolve, and a resolved buffer is all
//! guest memory; (3) a few such commands run through the controller on the admin queue
//! and I/O queue 1 with the rig's checks (bounded completion, named status, no write
//! outside the described buffers, the controller healthy afterwards).

use super::rig::{self, Dptr, Rig, A_END, B_END, B_START, FAR, PAGE};
use super::{status_is_named, Input};
use crate::nvme::cmd::{decode_admin, decode_io, ADMIN_OPCODES};
use crate::nvme::prp::{walk, DataPtr, Dma, Segment};
use crate::nvme::spec::{admin_op, get_u64, io_op, Sqe};
use std::ops::Range;
use vm_memory::GuestAddressSpace;

use crate::nvme::cmd::IO_OPCODES;

/// An entry with edgy fields for `opcode`.
pub fn entry(inp: &mut Input, opcode: u8) -> Sqe {
    let ends = [255u64, 256, 63, 64, 15, 16, 31, 32, 0xffff_ffff, 1 << 32];
    let slba = inp.edgy(64, &ends);
    Sqe {
        opcode,
        fuse: if inp.one_in(16) { inp.u8() & 3 } else { 0 },
        psdt: 0,
        cid: 0,
        nsid: rig::nsid(inp),
        cdw2: if inp.one_in(8) { inp.u32() } else { 0 },
        cdw3: 0,
        mptr: if inp.one_in(8) { inp.u64() } else { 0 },
        dptr1: 0,
        dptr2: 0,
        cdw10: slba as u32,
        cdw11: (slba >> 32) as u32,
        cdw12: {
            let nlb = inp.edgy(16, &[7, 8, 127, 128, 255]) as u32;
            let flags = if inp.bool() {
                inp.u32() & 0xffff_0000
            } else {
                0
            };
            nlb | flags
        },
        cdw13: if inp.bool() { inp.u32() } else { 0 },
        cdw14: if inp.one_in(4) { inp.u32() } else { 0 },
        cdw15: if inp.one_in(4) { inp.u32() } else { 0 },
    }
}

fn coalesce(v: &[(u64, u64)]) -> Vec<Segment> {
    let mut out: Vec<Segment> = Vec::new();
    for &(addr, len) in v {
        if len == 0 {
            continue;
        }
        if let Some(l) = out.last_mut() {
            if l.addr.checked_add(l.len) == Some(addr) {
                l.len += len;
                continue;
            }
        }
        out.push(Segment { addr, len });
    }
    out
}

fn data_ptr(d: &Dptr) -> DataPtr {
    let mut s = Sqe::default();
    d.apply(&mut s);
    DataPtr::of(&s)
}

/// Part 2: walk and resolve a generated pointer.
fn walk_check(rig: &Rig, d: &Dptr, len: u64) {
    let mem = rig.mem.memory();
    let dp = data_ptr(d);
    match walk(&mem, &dp, len) {
        Ok(segs) => {
            let total: u64 = segs.iter().map(|s| s.len).sum();
            assert_eq!(total, len, "walk of {d:x?} for {len} bytes gave {segs:x?}");
            if let Some(layout) = &d.layout {
                assert_eq!(
                    coalesce(&segs.iter().map(|s| (s.addr, s.len)).collect::<Vec<_>>()),
                    coalesce(layout),
                    "walk of a well-formed pointer {d:x?} ({len} bytes)"
                );
            }
            match Dma::resolve(&mem, &segs) {
                Ok(dma) => {
                    assert_eq!(dma.len(), len);
                    for s in &segs {
                        assert!(
                            rig.mapped(s.addr, s.len),
                            "resolved a segment {s:x?} outside guest memory"
                        );
                    }
                }
                Err(st) => {
                    assert!(status_is_named(st.0));
                    assert!(
                        d.layout.is_none(),
                        "a well-formed, mapped pointer {d:x?} failed to resolve: {:#x}",
                        st.0
                    );
                }
            }
        }
        Err(st) => {
            assert!(status_is_named(st.0), "walk status {:#x} unnamed", st.0);
            assert!(
                d.layout.is_none() || len == 0,
                "a well-formed pointer {d:x?} for {len} bytes failed: {:#x}",
                st.0
            );
        }
    }
}

/// How many bytes a command moves, as the host means it (for building its pointer).
fn transfer_len(rig: &Rig, qid: u16, sqe: &Sqe) -> u64 {
    let spec = current_format(rig, sqe.nsid);
    let mut bs = spec.map_or(512, |s| s.0);
    // Extended LBAs: each block's metadata follows its data in the data buffer.
    if let Some(m) = spec.map(|s| s.1).filter(|m| m.extended) {
        if m.transfers_meta(((sqe.cdw12 >> 26) & 0xf) as u8) {
            bs += m.ms as u64;
        }
    }
    if qid == 0 {
        return match sqe.opcode {
            admin_op::GET_LOG_PAGE => {
                ((((sqe.cdw11 & 0xffff) << 16) | (sqe.cdw10 >> 16)) as u64 + 1) * 4
            }
            admin_op::SET_FEATURES | admin_op::GET_FEATURES => 512,
            admin_op::GET_LBA_STATUS => (sqe.cdw12 as u64 + 1) * 4,
            _ => PAGE,
        };
    }
    match sqe.opcode {
        io_op::READ | io_op::WRITE | io_op::COMPARE => ((sqe.cdw12 & 0xffff) as u64 + 1) * bs,
        io_op::DATASET_MANAGEMENT => ((sqe.cdw10 & 0xff) as u64 + 1) * 16,
        io_op::COPY => ((sqe.cdw12 & 0xff) as u64 + 1) * 40,
        io_op::ZONE_APPEND => ((sqe.cdw12 & 0xffff) as u64 + 1) * bs,
        io_op::ZONE_MGMT_RECV => (sqe.cdw12 as u64 + 1) * 4,
        io_op::ZONE_MGMT_SEND => 64,
        _ => 0,
    }
}

/// The block size and metadata format of namespace `nsid` as it is now (a Format NVM
/// earlier in the case may have changed them), if it is attached.
fn current_format(rig: &Rig, nsid: u32) -> Option<(u64, crate::nvme::protection::MetaFormat)> {
    rig.ctrl
        .namespace(nsid)
        .map(|ns| (ns.block_size(), *ns.meta()))
}

/// Where a Read on a namespace with separate metadata may write its metadata: MPTR's
/// contiguous buffer (PSDT 00b/01b), or the SGL MPTR points to (PSDT 10b), walked as
/// the spec says (the model's walker: a descriptor list it refuses is written nowhere).
fn metadata_writable(rig: &Rig, sqe: &Sqe) -> Vec<Range<u64>> {
    let Some((_, m)) = current_format(rig, sqe.nsid) else {
        return Vec::new();
    };
    let prinfo = ((sqe.cdw12 >> 26) & 0xf) as u8;
    if sqe.opcode != io_op::READ || m.extended || !m.transfers_meta(prinfo) {
        return Vec::new();
    }
    let len = ((sqe.cdw12 & 0xffff) as u64 + 1) * m.ms as u64;
    if sqe.psdt != 2 {
        return std::iter::once(sqe.mptr..sqe.mptr.saturating_add(len)).collect();
    }
    let d = rig.read(sqe.mptr, 16);
    let (d1, d2) = (get_u64(&d, 0), get_u64(&d, 8));
    let mem = rig.mem.memory();
    match crate::nvme::prp::walk_sgl(&mem, d1, d2, len) {
        Ok(segs) => segs
            .iter()
            .map(|g| g.addr..g.addr.saturating_add(g.len))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Does the command write host memory (through its data pointer)?
fn to_host(qid: u16, opcode: u8) -> bool {
    if qid == 0 {
        matches!(
            opcode,
            admin_op::IDENTIFY
                | admin_op::GET_LOG_PAGE
                | admin_op::GET_FEATURES
                | admin_op::GET_LBA_STATUS
        )
    } else {
        matches!(opcode, io_op::READ | io_op::ZONE_MGMT_RECV)
    }
}

/// An address for a queue or buffer the host hands the device by itself.
fn queue_base(inp: &mut Input) -> u64 {
    inp.pick(&[
        0x8000,
        0x9000,
        A_END - PAGE,
        A_END,
        B_START,
        B_END - 0x100,
        FAR,
        0,
        0x8004,
    ])
}

/// Part 3: one command through the controller.
fn run_one(rig: &mut Rig, inp: &mut Input) -> bool {
    let admin = rig.io_dead || inp.one_in(3);
    let qid = if admin { 0 } else { 1 };
    let opcode = match inp.u8() % 16 {
        0 => inp.u8(),
        _ if admin => inp.pick(&ADMIN_OPCODES),
        _ => inp.pick(&IO_OPCODES),
    };
    let mut sqe = entry(inp, opcode);
    if admin && opcode == admin_op::ASYNC_EVENT_REQUEST {
        rig.aer();
        return true;
    }
    let mut allowed = Vec::new();
    if admin
        && matches!(
            opcode,
            admin_op::CREATE_IO_CQ | admin_op::CREATE_IO_SQ | admin_op::DOORBELL_BUFFER_CONFIG
        )
    {
        sqe.dptr1 = queue_base(inp);
        sqe.dptr2 = queue_base(inp);
        sqe.cdw10 =
            inp.pick(&[0u32, 1, 2, 3, 4, 5, 0xffff]) | (inp.edgy(16, &[63, 64]) as u32) << 16;
        sqe.cdw11 = inp.pick(&[1u32, 3, 0, 2]) | (inp.pick(&[0u32, 1, 2, 0xffff]) << 16);
        if opcode == admin_op::DOORBELL_BUFFER_CONFIG {
            sqe.psdt = if inp.one_in(8) { 1 } else { 0 };
            // The device writes the EventIdx buffer (PRP2) and seeds the shadow doorbells
            // (PRP1) of existing queues with their current values (queues.rs set_dbbuf).
            allowed.push(sqe.dptr2..sqe.dptr2.saturating_add(PAGE));
            allowed.push(sqe.dptr1..sqe.dptr1.saturating_add(PAGE));
        }
    } else if admin && matches!(opcode, admin_op::DELETE_IO_CQ | admin_op::DELETE_IO_SQ) {
        sqe.cdw10 = inp.pick(&[0u32, 1, 2, 5, 0xffff]);
    } else {
        rig.recanary();
        let len = transfer_len(rig, qid, &sqe).min(8 << 20);
        let d = rig::dptr(rig, inp, len);
        if d.layout.is_some() {
            let data: Vec<u8> = (0..len).map(|i| (i as u8) ^ 0x3c).collect();
            d.fill(rig, &data);
        }
        d.apply(&mut sqe);
        if to_host(qid, opcode) {
            allowed = d.writable.clone();
            allowed.extend(metadata_writable(rig, &sqe));
        }
    }
    let what = format!("SQ {qid} opcode {opcode:#04x}");
    let Some(c) = rig.cmd(qid, sqe, &allowed, &what) else {
        return false;
    };
    if admin && c.ok() {
        match opcode {
            admin_op::CREATE_IO_CQ => {
                let size = (sqe.cdw10 >> 16) as u64 + 1;
                rig.device_owns(sqe.dptr1, size * 16);
            }
            admin_op::CREATE_IO_SQ => {
                let size = (sqe.cdw10 >> 16) as u64 + 1;
                if !rig.mapped(sqe.dptr1, size * 64) {
                    rig.cfs_legit = true;
                }
            }
            admin_op::DELETE_IO_CQ | admin_op::DELETE_IO_SQ if sqe.cdw10 as u16 == 1 => {
                rig.io_dead = true;
            }
            admin_op::DOORBELL_BUFFER_CONFIG => {
                // The I/O queues' doorbells now come from a buffer this host does not
                // keep: queue 1 may stall, by the host's doing.
                rig.device_owns(sqe.dptr2, PAGE);
                rig.device_owns(sqe.dptr1, PAGE);
                if !rig.mapped(sqe.dptr1, PAGE) {
                    rig.cfs_legit = true;
                }
                rig.io_dead = true;
            }
            _ => {}
        }
    }
    true
}

/// Part 1: the decoders on one raw entry.
fn decode_check(inp: &mut Input) {
    let opcode = match inp.u8() % 4 {
        0 => inp.pick(&ADMIN_OPCODES),
        1 => inp.pick(&IO_OPCODES),
        _ => inp.u8(),
    };
    let mut sqe = entry(inp, opcode);
    sqe.psdt = inp.u8() & 3;
    sqe.dptr1 = inp.u64();
    sqe.dptr2 = inp.u64();
    sqe.cid = inp.u16();
    let raw = sqe.to_bytes();
    assert_eq!(Sqe::parse(&raw), sqe, "SQE round trip");
    for r in [decode_admin(&sqe).map(|_| ()), decode_io(&sqe).map(|_| ())] {
        if let Err(st) = r {
            assert!(status_is_named(st.0), "decoder status {:#x} unnamed", st.0);
            assert!(!st.is_success(), "decoder failed with success");
        }
    }
}

pub fn run(data: &[u8]) {
    let mut inp = Input::new(data);
    decode_check(&mut inp);
    let cfg = rig::config(&mut inp);
    let ns = rig::namespaces(&mut inp);
    let has_b = !inp.one_in(4);
    let mut rig = Rig::new(cfg, ns, has_b);
    // Walks of a few pointers.
    for _ in 0..1 + inp.below(3) {
        let len = match inp.u8() % 6 {
            0 => inp.pick(&[0, 1, 4, 512, PAGE - 1, PAGE, PAGE + 1]),
            1 => 2 * PAGE,
            2 => inp.pick(&[3 * PAGE, 513 * PAGE, 1024 * PAGE]),
            _ => 1 + inp.u32() as u64 % (64 * PAGE),
        };
        rig.recanary();
        let d = rig::dptr(&rig, &mut inp, len);
        walk_check(&rig, &d, len);
    }
    // Commands through the controller.
    for _ in 0..1 + inp.below(6) {
        if !run_one(&mut rig, &mut inp) {
            break;
        }
        if inp.is_empty() {
            break;
        }
    }
    rig.health();
}
