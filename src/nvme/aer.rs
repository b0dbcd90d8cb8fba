//! Asynchronous Event Requests held by the controller, the events waiting for one, and
//! the Changed Namespace List they point the host to.

use std::collections::VecDeque;
use std::time::Instant;

use super::settings::AERL;
use crate::nvme::spec::{aer, log, status, Status, NSID_ALL};

/// Size of the Changed Namespace List log page (1024 nsids).
const CHANGED_NS_LIST_SIZE: usize = 4096;

/// Entries the Error Information log keeps (Identify Controller ELPE + 1).
pub(crate) const ERROR_LOG_ENTRIES: usize = 64;
const ERROR_ENTRY_SIZE: usize = 64;

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
    /// An error event was reported and the host has not read log page 1 yet.
    error_masked: bool,
    /// Error Information entries, newest last, at most [`ERROR_LOG_ENTRIES`].
    errors: VecDeque<[u8; ERROR_ENTRY_SIZE]>,
    /// Error Count of the last entry (never 0 for a used entry).
    error_count: u64,
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

    /// An Error status event with information `info` (always enabled; Asynchronous
    /// Event Configuration has no bit for it): an Error Information entry is recorded
    /// and, unless an error event is already waiting to be read, the event is queued.
    /// Returns the completions now due.
    pub fn error(&mut self, info: u8) -> Vec<AerDue> {
        self.error_count = self.error_count.wrapping_add(1).max(1);
        let mut e = [0u8; ERROR_ENTRY_SIZE];
        e[0..8].copy_from_slice(&self.error_count.to_le_bytes());
        // Not tied to a command: SQID and CID FFFFh, Parameter Error Location FFFFh.
        e[8..10].copy_from_slice(&0xffffu16.to_le_bytes());
        e[10..12].copy_from_slice(&0xffffu16.to_le_bytes());
        e[14..16].copy_from_slice(&0xffffu16.to_le_bytes());
        if self.errors.len() == ERROR_LOG_ENTRIES {
            self.errors.pop_front();
        }
        self.errors.push_back(e);
        if !self.error_masked {
            self.error_masked = true;
            self.pending.push_back(
                aer::TYPE_ERROR as u32 | ((info as u32) << 8) | ((log::ERROR_INFO as u32) << 16),
            );
        }
        self.deliver()
    }

    /// The Error Information log (newest entry first, unused entries zero); reading it
    /// without `rae` unmasks error events.
    pub(super) fn error_log(&mut self, rae: bool) -> Vec<u8> {
        let mut b = vec![0u8; ERROR_LOG_ENTRIES * ERROR_ENTRY_SIZE];
        for (i, e) in self.errors.iter().rev().enumerate() {
            b[i * ERROR_ENTRY_SIZE..(i + 1) * ERROR_ENTRY_SIZE].copy_from_slice(e);
        }
        if !rae {
            self.error_masked = false;
        }
        b
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
        self.error_masked = false;
    }
}
