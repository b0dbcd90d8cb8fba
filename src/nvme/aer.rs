//! Asynchronous Event Requests held by the controller, the events waiting for one, and
//! the Changed Namespace List they point the host to.

use std::collections::VecDeque;
use std::time::Instant;

use super::settings::AERL;
use crate::nvme::spec::{aer, log, status, Status, NSID_ALL};

/// Size of the Changed Namespace List log page (1024 nsids).
const CHANGED_NS_LIST_SIZE: usize = 4096;

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
    pub(super) fn changed_list(&mut self, rae: bool) -> Vec<u8> {
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
