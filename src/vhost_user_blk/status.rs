//! Block-layer errors and refused requests as virtio-blk status bytes: the one place
//! that decides a request's failure status, and logs it.
//!
//! Every [`BlockError`] is `VIRTIO_BLK_S_IOERR` (virtio-blk has no finer status: out of
//! range, read-only, host-memory faults and storage errors all read as I/O errors);
//! malformed requests are `IOERR`, unknown request types `UNSUPP`.

use crate::block::BlockError;

use super::spec::{S_IOERR, S_UNSUPP};

/// The status for a failed block operation; logs it with `what` (disk, queue, request).
pub fn of_block(err: &BlockError, what: &dyn std::fmt::Display) -> u8 {
    let status = match err {
        BlockError::OutOfRange { .. }
        | BlockError::ReadOnly
        | BlockError::HostMemory(_)
        | BlockError::Read(_)
        | BlockError::Write(_)
        | BlockError::Flush(_)
        | BlockError::Miscompare
        | BlockError::NoMetadata
        | BlockError::Unreadable { .. }
        | BlockError::TooManyUnreadable => S_IOERR,
    };
    log::warn!("{what}: {err}: status {}", name(status));
    status
}

/// A request refused before it reached the volume (malformed, unsupported, read-only
/// view, injected fault); logs `why` and returns `status`.
pub fn refuse(status: u8, what: &dyn std::fmt::Display, why: &dyn std::fmt::Display) -> u8 {
    log::warn!("{what}: {why}: status {}", name(status));
    status
}

/// The spec's name of a status byte.
pub fn name(status: u8) -> &'static str {
    match status {
        0 => "VIRTIO_BLK_S_OK",
        S_IOERR => "VIRTIO_BLK_S_IOERR",
        S_UNSUPP => "VIRTIO_BLK_S_UNSUPP",
        _ => "unknown",
    }
}
