//! The checks every block command on a namespace makes (MDTS, write protection, LBA
//! range) and its read/write counters, shared by the NVM commands ([`super::io`]) and
//! the zoned ones ([`super::zoned`]).

use std::sync::atomic::Ordering;

use super::io_context::IoCtx;
use super::namespace::Namespace;
use super::spec::{status, Status};

pub(crate) fn check_mdts(ctx: &IoCtx, len: u64) -> Result<(), Status> {
    match ctx.mdts_bytes() {
        Some(max) if len > max => Err(status::INVALID_FIELD.dnr()),
        _ => Ok(()),
    }
}

pub(crate) fn check_writable(ns: &Namespace) -> Result<(), Status> {
    if ns.readonly() {
        Err(status::NAMESPACE_WRITE_PROTECTED.dnr())
    } else {
        Ok(())
    }
}

pub(crate) fn check_range(ns: &Namespace, slba: u64, nlb: u64) -> Result<(), Status> {
    if ns.in_range(slba, nlb) {
        Ok(())
    } else {
        Err(status::LBA_OUT_OF_RANGE.dnr())
    }
}

pub(crate) fn count_rw(ctx: &IoCtx, is_write: bool, len: u64) {
    let st = ctx.stats;
    if is_write {
        st.write_commands.fetch_add(1, Ordering::Relaxed);
        st.bytes_written.fetch_add(len, Ordering::Relaxed);
    } else {
        st.read_commands.fetch_add(1, Ordering::Relaxed);
        st.bytes_read.fetch_add(len, Ordering::Relaxed);
    }
}
