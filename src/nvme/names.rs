//! NVMe opcode and status names (the ones traces, counters and the control socket
//! show), and how NVMe I/O opcodes map to the transport-neutral operation kinds.

use super::spec::{admin_op, io_op};
use crate::hooks::OpKind;

/// I/O opcode names used by traces, counters and the control socket.
pub fn io_opcode_name(opcode: u8) -> &'static str {
    match opcode {
        io_op::FLUSH => "flush",
        io_op::WRITE => "write",
        io_op::READ => "read",
        0x04 => "write-uncorrectable",
        io_op::COMPARE => "compare",
        io_op::WRITE_ZEROES => "write-zeroes",
        io_op::DATASET_MANAGEMENT => "dsm",
        io_op::VERIFY => "verify",
        io_op::COPY => "copy",
        _ => "unknown",
    }
}

/// Admin opcode names.
pub fn admin_opcode_name(opcode: u8) -> &'static str {
    match opcode {
        admin_op::DELETE_IO_SQ => "delete-sq",
        admin_op::CREATE_IO_SQ => "create-sq",
        admin_op::GET_LOG_PAGE => "get-log-page",
        admin_op::DELETE_IO_CQ => "delete-cq",
        admin_op::CREATE_IO_CQ => "create-cq",
        admin_op::IDENTIFY => "identify",
        admin_op::ABORT => "abort",
        admin_op::SET_FEATURES => "set-features",
        admin_op::GET_FEATURES => "get-features",
        admin_op::ASYNC_EVENT_REQUEST => "async-event",
        0x0d => "namespace-management",
        0x10 => "firmware-commit",
        0x11 => "firmware-download",
        0x14 => "device-self-test",
        0x15 => "namespace-attachment",
        admin_op::KEEP_ALIVE => "keep-alive",
        0x19 => "directive-send",
        0x1a => "directive-receive",
        0x1c => "virtualization-management",
        0x1d => "nvme-mi-send",
        0x1e => "nvme-mi-receive",
        admin_op::DOORBELL_BUFFER_CONFIG => "doorbell-buffer-config",
        0x80 => "format-nvm",
        0x81 => "security-send",
        0x82 => "security-receive",
        0x84 => "sanitize",
        0x86 => "get-lba-status",
        _ => "unknown",
    }
}

/// An I/O opcode by name ("read", "write", "copy", ...) or number ("25", "0x19").
/// Names are matched ignoring case, with '_' taken as '-'.
pub fn io_opcode_by_name(name: &str) -> Option<u8> {
    let n = name.trim().to_ascii_lowercase().replace('_', "-");
    if let Some(hex) = n.strip_prefix("0x") {
        return u8::from_str_radix(hex, 16).ok();
    }
    if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) {
        return n.parse().ok();
    }
    (0..=u8::MAX).find(|&op| io_opcode_name(op) != "unknown" && io_opcode_name(op) == n)
}

/// A status's name ("success", "invalid-field", "command-size-limit-exceeded", ...),
/// ignoring DNR.
pub fn status_name(status: u16) -> &'static str {
    match status & 0x7ff {
        0x000 => "success",
        0x001 => "invalid-opcode",
        0x002 => "invalid-field",
        0x003 => "command-id-conflict",
        0x004 => "data-transfer-error",
        0x005 => "power-loss-abort",
        0x006 => "internal-error",
        0x007 => "abort-requested",
        0x008 => "sq-deletion-abort",
        0x00b => "invalid-namespace",
        0x00c => "command-sequence-error",
        0x00d => "invalid-sgl-segment",
        0x00e => "invalid-sgl-count",
        0x00f => "data-sgl-length-invalid",
        0x011 => "sgl-descriptor-type-invalid",
        0x013 => "invalid-prp-offset",
        0x020 => "namespace-write-protected",
        0x080 => "lba-out-of-range",
        0x081 => "capacity-exceeded",
        0x082 => "namespace-not-ready",
        0x083 => "reservation-conflict",
        0x100 => "completion-queue-invalid",
        0x101 => "invalid-queue-id",
        0x102 => "invalid-queue-size",
        0x105 => "aer-limit-exceeded",
        0x108 => "invalid-interrupt-vector",
        0x109 => "invalid-log-page",
        0x10a => "invalid-format",
        0x10c => "invalid-queue-deletion",
        0x10d => "feature-not-saveable",
        0x183 => "command-size-limit-exceeded",
        0x185 => "incompatible-namespace-or-format",
        0x280 => "write-fault",
        0x281 => "unrecovered-read-error",
        0x282 => "end-to-end-guard-check-error",
        0x285 => "compare-failure",
        0x286 => "access-denied",
        0x287 => "deallocated-or-unwritten-block",
        _ => "unknown",
    }
}

/// The operation kind of an I/O opcode.
pub fn io_kind(opcode: u8) -> OpKind {
    match opcode {
        io_op::FLUSH => OpKind::Flush,
        io_op::WRITE => OpKind::Write,
        io_op::READ => OpKind::Read,
        io_op::COMPARE => OpKind::Compare,
        io_op::WRITE_ZEROES => OpKind::WriteZeroes,
        io_op::DATASET_MANAGEMENT => OpKind::Discard,
        io_op::VERIFY => OpKind::Verify,
        io_op::COPY => OpKind::Copy,
        _ => OpKind::Other,
    }
}

/// The I/O opcode of an operation kind, if NVMe has one.
pub fn kind_io_opcode(kind: OpKind) -> Option<u8> {
    (0..=u8::MAX).find(|&op| io_kind(op) == kind && kind != OpKind::Other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for op in 0..=u8::MAX {
            let n = io_opcode_name(op);
            if n != "unknown" {
                assert_eq!(io_opcode_by_name(n), Some(op), "{n}");
            }
        }
        assert_eq!(io_opcode_by_name("copy"), Some(0x19));
        assert_eq!(io_opcode_by_name("Write_Zeroes"), Some(0x08));
        assert_eq!(io_opcode_by_name("25"), Some(25));
        assert_eq!(io_opcode_by_name("0x19"), Some(0x19));
        assert_eq!(io_opcode_by_name("0x1ff"), None);
        assert_eq!(io_opcode_by_name("256"), None);
    }

    #[test]
    fn kinds_map_both_ways() {
        for k in OpKind::ALL {
            if let Some(op) = kind_io_opcode(k) {
                assert_eq!(io_kind(op), k);
            }
        }
        assert_eq!(
            kind_io_opcode(OpKind::Discard),
            Some(io_op::DATASET_MANAGEMENT)
        );
        assert_eq!(kind_io_opcode(OpKind::GetId), None);
        assert_eq!(kind_io_opcode(OpKind::Other), None);
    }
}
