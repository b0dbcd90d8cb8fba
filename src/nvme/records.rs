//! The experiment hooks' record of an NVMe command: what kind of operation it is, its
//! block range or admin key, and what a Copy did.

use std::time::Instant;

use super::names::io_kind;
use super::spec::{admin_op, io_op, Sqe};
use crate::hooks::{AdminKey, Completed, OpKind, Transport};

/// The record of a fetched command, before it runs (status and Dword 0 filled in when
/// it completes).
pub(crate) fn fetched(qid: u16, sqe: &Sqe, fetched: Option<Instant>) -> Completed {
    let kind = if qid == 0 {
        OpKind::Admin
    } else {
        io_kind(sqe.opcode)
    };
    let block = (qid != 0
        && matches!(
            sqe.opcode,
            io_op::READ | io_op::WRITE | io_op::WRITE_ZEROES | io_op::COMPARE | io_op::VERIFY
        ))
    .then(|| (sqe.slba(), sqe.nlb() as u32));
    Completed {
        transport: Transport::Nvme,
        kind,
        queue: qid,
        tag: sqe.cid,
        opcode: sqe.opcode,
        nsid: sqe.nsid,
        block,
        copy: None,
        admin: if qid == 0 { admin_key(sqe) } else { None },
        status: 0,
        dw0: 0,
        fetched,
    }
}

/// The key of an admin command, if its opcode has one.
pub(crate) fn admin_key(sqe: &Sqe) -> Option<AdminKey> {
    let low = (sqe.cdw10 & 0xff) as u8;
    match sqe.opcode {
        admin_op::SET_FEATURES | admin_op::GET_FEATURES => Some(AdminKey::Feature { fid: low }),
        admin_op::IDENTIFY => Some(AdminKey::Identify {
            cns: low,
            cntid: (sqe.cdw10 >> 16) as u16,
            csi: (sqe.cdw11 >> 24) as u8,
        }),
        admin_op::GET_LOG_PAGE => Some(AdminKey::LogPage { lid: low }),
        _ => None,
    }
}
