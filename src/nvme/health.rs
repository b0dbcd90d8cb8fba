//! Counters the SMART / Health Information log reports (data units and commands read and
//! written), kept by the I/O handlers.

use std::sync::atomic::AtomicU64;

/// Counters reported in the SMART / Health log.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub bytes_read: AtomicU64,
    pub bytes_written: AtomicU64,
    pub read_commands: AtomicU64,
    pub write_commands: AtomicU64,
}
