//! Admin commands: each decoded [`AdminCmd`] runs here. Queue creation and deletion and
//! Doorbell Buffer Config go to the controller's queue table, Identify to
//! [`super::identify`], log pages to [`log`], features to [`features`], Get LBA Status
//! to [`lba_status`], and event requests to [`aer`], which also holds the state they own.

mod features;
mod lba_status;
mod log;
pub(crate) mod ns_mgmt;

use std::sync::Arc;
use std::time::Instant;

use super::cmd::AdminCmd;
use super::identify;
use super::prp::Mem;
use super::queues::Outcome;
use super::spec::{status, PAGE_SIZE};
use super::state::Shared;
use crate::sync::lock;

/// A transfer larger than MDTS is Invalid Field, for admin commands too.
fn over_mdts(inner: &Shared, len: u64) -> bool {
    inner.cfg.mdts != 0
        && PAGE_SIZE
            .checked_shl(inner.cfg.mdts as u32)
            .is_some_and(|max| len > max)
}

/// Runs one decoded admin command.
pub(crate) fn run(inner: &Arc<Shared>, mem: &Mem, cmd: &AdminCmd) -> Outcome {
    match cmd {
        AdminCmd::DeleteIoSq { qid } => inner.delete_sq(*qid).map(|_| 0).into(),
        AdminCmd::CreateIoSq(p) => inner.create_sq(p).map(|_| 0).into(),
        AdminCmd::GetLogPage(c) => log::get_log_page(inner, mem, c).map(|_| 0).into(),
        AdminCmd::DeleteIoCq { qid } => inner.delete_cq(*qid).map(|_| 0).into(),
        AdminCmd::CreateIoCq(p) => inner.create_cq(p).map(|_| 0).into(),
        AdminCmd::Identify(c) => identify::execute(inner, mem, c).map(|_| 0).into(),
        // Commands run to completion as soon as they are fetched: nothing can be aborted.
        AdminCmd::Abort { .. } => Outcome::ok(1),
        AdminCmd::SetFeatures(c) => features::set(inner, mem, c).into(),
        AdminCmd::GetFeatures(c) => features::get(inner, mem, c).into(),
        AdminCmd::AsyncEventRequest { cid } => {
            let due = lock(&inner.aer).request(*cid, Instant::now());
            match due {
                Ok(due) => {
                    let mut own = None;
                    for d in due {
                        if d.cid == *cid {
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
        AdminCmd::KeepAlive => Outcome::ok(0),
        AdminCmd::DoorbellBufferConfig { shadow, event_idx } => {
            inner.set_dbbuf(mem, *shadow, *event_idx).map(|_| 0).into()
        }
        AdminCmd::NamespaceManagement(c) => ns_mgmt::manage(inner, mem, c).into(),
        AdminCmd::NamespaceAttachment(c) => ns_mgmt::attach(inner, mem, c).into(),
        AdminCmd::FormatNvm(c) => ns_mgmt::format(inner, c).into(),
        AdminCmd::GetLbaStatus(c) => lba_status::get_lba_status(inner, mem, c).map(|_| 0).into(),
        AdminCmd::Unknown(_) => Outcome::err(status::INVALID_OPCODE.dnr()),
    }
}
