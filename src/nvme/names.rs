//! NVMe opcode and status names (the ones traces, counters and the control socket
//! show), and how NVMe I/O opcodes map to the transport-neutral operation kinds.

use super::spec::{admin_op, io_op, status};
use crate::hooks::OpKind;

/// I/O opcode names used by traces, counters and the control socket.
pub fn io_opcode_name(opcode: u8) -> &'static str {
    match opcode {
        io_op::FLUSH => "flush",
        io_op::WRITE => "write",
        io_op::READ => "read",
        io_op::WRITE_UNCORRECTABLE => "write-uncorrectable",
        io_op::COMPARE => "compare",
        io_op::WRITE_ZEROES => "write-zeroes",
        io_op::DATASET_MANAGEMENT => "dsm",
        io_op::VERIFY => "verify",
        io_op::COPY => "copy",
        io_op::ZONE_MGMT_SEND => "zone-mgmt-send",
        io_op::ZONE_MGMT_RECV => "zone-mgmt-recv",
        io_op::ZONE_APPEND => "zone-append",
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
        admin_op::GET_LBA_STATUS => "get-lba-status",
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
/// ignoring DNR, from the one status table ([`status::TABLE`]).
pub fn status_name(st: u16) -> &'static str {
    status::TABLE
        .iter()
        .find(|(s, _)| s.0 == st & 0x7ff)
        .map_or("unknown", |(_, n)| n)
}

/// The operation kind of an I/O opcode.
pub fn io_kind(opcode: u8) -> OpKind {
    match opcode {
        io_op::FLUSH => OpKind::Flush,
        io_op::WRITE => OpKind::Write,
        io_op::READ => OpKind::Read,
        io_op::WRITE_UNCORRECTABLE => OpKind::WriteUncorrectable,
        io_op::COMPARE => OpKind::Compare,
        io_op::WRITE_ZEROES => OpKind::WriteZeroes,
        io_op::DATASET_MANAGEMENT => OpKind::Discard,
        io_op::VERIFY => OpKind::Verify,
        io_op::COPY => OpKind::Copy,
        io_op::ZONE_MGMT_SEND => OpKind::ZoneSend,
        io_op::ZONE_MGMT_RECV => OpKind::ZoneReceive,
        io_op::ZONE_APPEND => OpKind::ZoneAppend,
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
