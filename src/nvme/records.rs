//! The experiment hooks' record of a fetched NVMe command, before it is decoded: queue,
//! command id, opcode, nsid and the operation kind its opcode names. The dispatcher adds
//! what the typed command says (block range, admin key) and what a Copy did.

use std::time::Instant;

use super::names::io_kind;
use super::spec::Sqe;
use crate::hooks::{Completed, OpKind, Transport};

/// The record of a fetched command, before it runs (status and Dword 0 filled in when
/// it completes).
pub(crate) fn fetched(qid: u16, sqe: &Sqe, fetched: Option<Instant>) -> Completed {
    let kind = if qid == 0 {
        OpKind::Admin
    } else {
        io_kind(sqe.opcode)
    };
    Completed {
        transport: Transport::Nvme,
        kind,
        queue: qid,
        tag: sqe.cid,
        opcode: sqe.opcode,
        nsid: sqe.nsid,
        block: None,
        copy: None,
        admin: None,
        zone: None,
        status: 0,
        dw0: 0,
        dw1: 0,
        fetched,
    }
}
