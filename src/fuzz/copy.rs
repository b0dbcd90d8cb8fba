//! Target `copy`: the Copy command's range-list parser and checker, driven through the
//! controller.
//!
//! Each case configures the controller (copy on/off, OCFS, CDFE, MDTS) and the
//! namespaces' limits (MSSRL, MCL, MSRC) from the input, sometimes sets Host Behavior
//! Support, then sends a few Copy commands: format 0-3 or a reserved one, NR edgy
//! against MSRC, ranges at LBA 0, the end, past the end, overflowing, NLB edgy against
//! MSSRL and MCL, source NSIDs 0/1/inactive/4 KiB/read-only/NN/NN+1/FFFFFFFFh, the
//! destination likewise, the descriptor list behind PRPs or SGLs (crossing pages, in the
//! hole, malformed). Besides the rig's checks, the data must follow the documented
//! semantics: with a well-formed list, success means every range was copied in order
//! (memmove-like per range); a failure with Dword 0 = k means ranges 0..k were copied
//! and nothing else; other namespaces never change.

use super::rig::{self, Rig, PAGE};
use super::Input;
use crate::nvme::spec::{admin_op, feat, io_op, Sqe};

struct Range {
    snsid: u32,
    slba: u64,
    nlb: u64,
}

fn descriptor(inp: &mut Input, rig: &Rig, dest: u32, size: usize) -> (Vec<u8>, Range) {
    let snsid = if inp.bool() { dest } else { rig::nsid(inp) };
    let blocks = rig
        .ns
        .iter()
        .find(|s| s.nsid == snsid)
        .map_or(256, |s| s.blocks);
    let slba = match inp.u8() % 8 {
        0 => 0,
        1 => blocks - 1,
        2 => blocks,
        3 => u64::MAX,
        4 => u64::MAX - 1,
        _ => inp.u64() % (blocks + 2),
    };
    let nlb0 = match inp.u8() % 8 {
        0 => 0,
        1 => 0xffff,
        2 => inp.pick(&[1, 7, 8, 15, 127, 128, 255]),
        _ => inp.u8() as u64 % 16,
    };
    let mut d = vec![0u8; size];
    d[0..4].copy_from_slice(&snsid.to_le_bytes());
    d[8..16].copy_from_slice(&slba.to_le_bytes());
    d[16..18].copy_from_slice(&(nlb0 as u16).to_le_bytes());
    if inp.one_in(8) {
        // Reserved and PI fields.
        let i = 4 + inp.below(size - 4);
        if !(8..18).contains(&i) {
            d[i] = inp.u8();
        }
    }
    (
        d,
        Range {
            snsid,
            slba,
            nlb: nlb0 + 1,
        },
    )
}

/// Copies one range in the model; false if it cannot be modelled (out of range).
fn model_range(
    model: &mut [(u32, u64, Vec<u8>)],
    dest: u32,
    src: u32,
    slba: u64,
    dlba: u64,
    nlb: u64,
) -> bool {
    let Some(s) = model.iter().find(|m| m.0 == src) else {
        return false;
    };
    let bs = s.1;
    let (Some(so), Some(n)) = (slba.checked_mul(bs), nlb.checked_mul(bs)) else {
        return false;
    };
    let (so, n) = (so as usize, n as usize);
    if so.checked_add(n).is_none_or(|e| e > s.2.len()) {
        return false;
    }
    let data = s.2[so..so + n].to_vec();
    let Some(d) = model.iter_mut().find(|m| m.0 == dest) else {
        return false;
    };
    let Some(dof) = dlba.checked_mul(d.1) else {
        return false;
    };
    let dof = dof as usize;
    if d.1 != bs || dof.checked_add(n).is_none_or(|e| e > d.2.len()) {
        return false;
    }
    d.2[dof..dof + n].copy_from_slice(&data);
    true
}

pub fn run(data: &[u8]) {
    let mut inp = Input::new(data);
    let cfg = rig::config(&mut inp);
    let ns = rig::namespaces(&mut inp);
    let has_b = !inp.one_in(4);
    let mut rig = Rig::new(cfg, ns, has_b);
    let mut model: Vec<(u32, u64, Vec<u8>)> = rig
        .ns
        .clone()
        .iter()
        .map(|s| (s.nsid, s.block_size, rig.ns_bytes(s.nsid)))
        .collect();
    for _ in 0..1 + inp.below(4) {
        if inp.one_in(6) {
            // Host Behavior Support: CDFE (bytes 5:4 of the 512-byte structure).
            let mut hbs = vec![0u8; 512];
            let cdfe = inp.pick(&[0u16, 0x4, 0xc, 0xf, 0xffff]);
            hbs[4..6].copy_from_slice(&cdfe.to_le_bytes());
            rig.recanary();
            let d = rig::dptr(&rig, &mut inp, 512);
            d.fill(&rig, &hbs);
            let mut sqe = Sqe {
                opcode: admin_op::SET_FEATURES,
                cdw10: feat::HOST_BEHAVIOR_SUPPORT as u32,
                ..Default::default()
            };
            d.apply(&mut sqe);
            if rig.cmd(0, sqe, &[], "Set Features Host Behavior").is_none() {
                break;
            }
        }
        let dest = if inp.one_in(4) {
            rig::nsid(&mut inp)
        } else {
            1
        };
        let format = match inp.u8() % 8 {
            0..=2 => 0,
            3 | 4 => 2,
            5 => inp.pick(&[1, 3]),
            _ => inp.u8() & 0xf,
        };
        let size = if format & 1 == 1 { 40 } else { 32 };
        let nr0 = match inp.u8() % 6 {
            0 => 0,
            1 => 255,
            2 => inp.pick(&[1, 2, 3, 127, 128]),
            _ => inp.u8() % 4,
        };
        let mut list = Vec::new();
        let mut ranges = Vec::new();
        for _ in 0..=nr0 as usize {
            let (d, r) = descriptor(&mut inp, &rig, dest, size);
            list.extend_from_slice(&d);
            ranges.push(r);
        }
        let len = list.len() as u64;
        rig.recanary();
        let d = rig::dptr(&rig, &mut inp, len.min(16 * PAGE));
        d.fill(&rig, &list);
        let sdlba = match inp.u8() % 6 {
            0 => 0,
            1 => 255,
            2 => 250,
            3 => u64::MAX,
            _ => inp.u8() as u64,
        };
        let fua = inp.one_in(4);
        let mut sqe = Sqe {
            opcode: io_op::COPY,
            nsid: dest,
            cdw10: sdlba as u32,
            cdw11: (sdlba >> 32) as u32,
            cdw12: nr0 as u32 | ((format as u32) << 8) | ((fua as u32) << 30),
            ..Default::default()
        };
        if inp.one_in(16) {
            sqe.cdw12 |= inp.u32() & 0x3c00_f000; // PRINFOR/PRINFOW
        }
        d.apply(&mut sqe);
        let what = format!("Copy format {format} nr {nr0} to ns {dest}");
        let Some(c) = rig.cmd(1, sqe, &[], &what) else {
            break;
        };
        let copied = if c.ok() { ranges.len() } else { c.dw0 as usize };
        assert!(
            copied <= ranges.len(),
            "{what}: failed with Dword 0 = {} > {} ranges",
            c.dw0,
            ranges.len()
        );
        if d.layout.is_some() && sqe.cdw12 & 0x3c00_f000 == 0 {
            // The device saw exactly `list`: model ranges 0..copied.
            let mut dlba = sdlba;
            for r in &ranges[..copied] {
                let src = if format >= 2 { r.snsid } else { dest };
                assert!(
                    model_range(&mut model, dest, src, r.slba, dlba, r.nlb),
                    "{what}: range {{snsid {src}, slba {}, nlb {}}} to LBA {dlba} reported copied \
                     but it is outside the namespaces (status {:#x}, dw0 {})",
                    r.slba,
                    r.nlb,
                    c.status.0,
                    c.dw0
                );
                dlba += r.nlb;
            }
            for m in &model {
                let now = rig.ns_bytes(m.0);
                if now != m.2 {
                    let at = now.iter().zip(m.2.iter()).position(|(a, b)| a != b);
                    panic!(
                        "{what}: namespace {} differs from the model at byte {at:?} (status {:#x}, dw0 {})",
                        m.0, c.status.0, c.dw0
                    );
                }
            }
        } else {
            // Unknown list as the device read it: only the destination may change.
            for m in model.iter_mut() {
                let now = rig.ns_bytes(m.0);
                if m.0 != dest {
                    assert!(
                        now == m.2,
                        "{what}: namespace {} changed, not the destination",
                        m.0
                    );
                }
                m.2 = now;
            }
        }
    }
    rig.health();
}
