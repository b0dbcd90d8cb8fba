//! Block-layer errors as NVMe statuses, in one function.

use super::spec::{status, Status};
use crate::block::BlockError;

/// The status an I/O command completes with when its block operation fails. Storage and
/// host-memory failures are logged here (with what failed); range and write-protect
/// errors are the guest's and logged at debug level.
pub fn of_block(what: &str, e: &BlockError) -> Status {
    let st = match e {
        BlockError::OutOfRange { .. } => status::LBA_OUT_OF_RANGE,
        BlockError::ReadOnly => status::NAMESPACE_WRITE_PROTECTED,
        BlockError::HostMemory(_) => status::DATA_TRANSFER_ERROR,
        BlockError::Read(_) | BlockError::Unreadable { .. } => status::UNRECOVERED_READ_ERROR,
        BlockError::TooManyUnreadable => status::INTERNAL_ERROR,
        BlockError::Write(_) => status::WRITE_FAULT,
        BlockError::Flush(_) | BlockError::NoMetadata => status::INTERNAL_ERROR,
        BlockError::Miscompare => status::COMPARE_FAILURE,
    }
    .dnr();
    match e {
        BlockError::OutOfRange { .. }
        | BlockError::ReadOnly
        | BlockError::Miscompare
        | BlockError::Unreadable { .. } => {
            log::debug!("{what}: {e} (status {:#06x})", st.0)
        }
        _ => log::warn!("{what}: {e} (status {:#06x})", st.0),
    }
    st
}
