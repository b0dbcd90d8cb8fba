//! Wire structures and constants of the NVMe specifications (Base 2.0, NVM Command Set
//! 1.0): submission and completion queue entries, status codes, opcodes, register bits,
//! Identify field offsets, log page and feature identifiers, and the Copy descriptor
//! formats. Nothing here does I/O; it only names what the bytes mean.

/// Size of a memory page (CC.MPS = 0, CAP.MPSMIN = CAP.MPSMAX = 0).
pub const PAGE_SIZE: u64 = 4096;
/// Size of a submission queue entry (SQES = 6).
pub const SQE_SIZE: u64 = 64;
/// Size of a completion queue entry (CQES = 4).
pub const CQE_SIZE: u64 = 16;
/// NVMe version 2.0.
pub const NVME_VERSION: u32 = 0x0002_0000;
/// Broadcast namespace id.
pub const NSID_ALL: u32 = 0xffff_ffff;

/// One submission queue entry, decoded from its 64 little-endian bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sqe {
    pub opcode: u8,
    /// FUSE (bits 9:8 of CDW0).
    pub fuse: u8,
    /// PSDT (bits 15:14 of CDW0): 0 PRP, 1 or 2 SGL.
    pub psdt: u8,
    pub cid: u16,
    pub nsid: u32,
    pub cdw2: u32,
    pub cdw3: u32,
    pub mptr: u64,
    /// PRP1, or the first 8 bytes of SGL1.
    pub dptr1: u64,
    /// PRP2, or the last 8 bytes of SGL1.
    pub dptr2: u64,
    pub cdw10: u32,
    pub cdw11: u32,
    pub cdw12: u32,
    pub cdw13: u32,
    pub cdw14: u32,
    pub cdw15: u32,
}

fn le32(b: &[u8], off: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[off..off + 4]);
    u32::from_le_bytes(a)
}

fn le64(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(a)
}

impl Sqe {
    pub fn parse(b: &[u8; 64]) -> Sqe {
        let cdw0 = le32(b, 0);
        Sqe {
            opcode: (cdw0 & 0xff) as u8,
            fuse: ((cdw0 >> 8) & 3) as u8,
            psdt: ((cdw0 >> 14) & 3) as u8,
            cid: (cdw0 >> 16) as u16,
            nsid: le32(b, 4),
            cdw2: le32(b, 8),
            cdw3: le32(b, 12),
            mptr: le64(b, 16),
            dptr1: le64(b, 24),
            dptr2: le64(b, 32),
            cdw10: le32(b, 40),
            cdw11: le32(b, 44),
            cdw12: le32(b, 48),
            cdw13: le32(b, 52),
            cdw14: le32(b, 56),
            cdw15: le32(b, 60),
        }
    }

    /// Encodes the entry (used by tests acting as a host driver).
    pub fn to_bytes(&self) -> [u8; 64] {
        let mut b = [0u8; 64];
        let cdw0 = self.opcode as u32
            | ((self.fuse as u32 & 3) << 8)
            | ((self.psdt as u32 & 3) << 14)
            | ((self.cid as u32) << 16);
        let dws = [cdw0, self.nsid, self.cdw2, self.cdw3];
        for (i, d) in dws.iter().enumerate() {
            b[i * 4..i * 4 + 4].copy_from_slice(&d.to_le_bytes());
        }
        b[16..24].copy_from_slice(&self.mptr.to_le_bytes());
        b[24..32].copy_from_slice(&self.dptr1.to_le_bytes());
        b[32..40].copy_from_slice(&self.dptr2.to_le_bytes());
        let tail = [
            self.cdw10, self.cdw11, self.cdw12, self.cdw13, self.cdw14, self.cdw15,
        ];
        for (i, d) in tail.iter().enumerate() {
            b[40 + i * 4..44 + i * 4].copy_from_slice(&d.to_le_bytes());
        }
        b
    }

    /// Starting LBA of NVM commands (CDW10-11).
    pub fn slba(&self) -> u64 {
        self.cdw10 as u64 | ((self.cdw11 as u64) << 32)
    }

    /// Number of logical blocks, 0's based in CDW12 bits 15:0; returned 1-based.
    pub fn nlb(&self) -> u64 {
        (self.cdw12 & 0xffff) as u64 + 1
    }
}

/// A completion status: Status Code Type in bits 10:8, Status Code in bits 7:0, and
/// Do Not Retry in bit 14 — the layout of the CQE status field without the phase tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status(pub u16);

impl Status {
    pub const DNR: u16 = 1 << 14;

    pub const fn new(sct: u8, sc: u8) -> Status {
        Status(((sct as u16) << 8) | sc as u16)
    }
    /// The same status with Do Not Retry set.
    pub const fn dnr(self) -> Status {
        Status(self.0 | Self::DNR)
    }
    pub fn sct(self) -> u8 {
        ((self.0 >> 8) & 7) as u8
    }
    pub fn sc(self) -> u8 {
        (self.0 & 0xff) as u8
    }
    pub fn is_dnr(self) -> bool {
        self.0 & Self::DNR != 0
    }
    pub fn is_success(self) -> bool {
        self.0 & 0x7ff == 0
    }
}

/// Status Code Types.
pub mod sct {
    pub const GENERIC: u8 = 0;
    pub const COMMAND_SPECIFIC: u8 = 1;
    pub const MEDIA: u8 = 2;
}

/// Status values (without DNR; errors are sent with [`Status::dnr`]), each with the name
/// traces, counters and the control socket show: the one status table.
pub mod status {
    use super::sct::*;
    use super::Status;

    macro_rules! statuses {
        ($($(#[$m:meta])* $name:ident = ($sct:ident, $sc:literal, $text:literal);)*) => {
            $($(#[$m])* pub const $name: Status = Status::new($sct, $sc);)*
            /// Every status with its name.
            pub const TABLE: &[(Status, &str)] = &[$(($name, $text)),*];
        };
    }

    statuses! {
        SUCCESS = (GENERIC, 0x00, "success");
        INVALID_OPCODE = (GENERIC, 0x01, "invalid-opcode");
        INVALID_FIELD = (GENERIC, 0x02, "invalid-field");
        COMMAND_ID_CONFLICT = (GENERIC, 0x03, "command-id-conflict");
        DATA_TRANSFER_ERROR = (GENERIC, 0x04, "data-transfer-error");
        POWER_LOSS_ABORT = (GENERIC, 0x05, "power-loss-abort");
        INTERNAL_ERROR = (GENERIC, 0x06, "internal-error");
        ABORT_REQUESTED = (GENERIC, 0x07, "abort-requested");
        SQ_DELETION_ABORT = (GENERIC, 0x08, "sq-deletion-abort");
        INVALID_NAMESPACE = (GENERIC, 0x0b, "invalid-namespace");
        COMMAND_SEQUENCE_ERROR = (GENERIC, 0x0c, "command-sequence-error");
        INVALID_SGL_SEGMENT = (GENERIC, 0x0d, "invalid-sgl-segment");
        INVALID_SGL_COUNT = (GENERIC, 0x0e, "invalid-sgl-count");
        DATA_SGL_LENGTH_INVALID = (GENERIC, 0x0f, "data-sgl-length-invalid");
        SGL_DESCRIPTOR_TYPE_INVALID = (GENERIC, 0x11, "sgl-descriptor-type-invalid");
        INVALID_PRP_OFFSET = (GENERIC, 0x13, "invalid-prp-offset");
        NAMESPACE_WRITE_PROTECTED = (GENERIC, 0x20, "namespace-write-protected");
        LBA_OUT_OF_RANGE = (GENERIC, 0x80, "lba-out-of-range");
        CAPACITY_EXCEEDED = (GENERIC, 0x81, "capacity-exceeded");
        NAMESPACE_NOT_READY = (GENERIC, 0x82, "namespace-not-ready");
        RESERVATION_CONFLICT = (GENERIC, 0x83, "reservation-conflict");

        COMPLETION_QUEUE_INVALID = (COMMAND_SPECIFIC, 0x00, "completion-queue-invalid");
        INVALID_QUEUE_ID = (COMMAND_SPECIFIC, 0x01, "invalid-queue-id");
        INVALID_QUEUE_SIZE = (COMMAND_SPECIFIC, 0x02, "invalid-queue-size");
        AER_LIMIT_EXCEEDED = (COMMAND_SPECIFIC, 0x05, "aer-limit-exceeded");
        INVALID_INTERRUPT_VECTOR = (COMMAND_SPECIFIC, 0x08, "invalid-interrupt-vector");
        INVALID_LOG_PAGE = (COMMAND_SPECIFIC, 0x09, "invalid-log-page");
        INVALID_FORMAT = (COMMAND_SPECIFIC, 0x0a, "invalid-format");
        INVALID_QUEUE_DELETION = (COMMAND_SPECIFIC, 0x0c, "invalid-queue-deletion");
        FEATURE_NOT_SAVEABLE = (COMMAND_SPECIFIC, 0x0d, "feature-not-saveable");
        /// Namespace Management create: not enough unallocated NVM capacity.
        NS_INSUFFICIENT_CAPACITY = (COMMAND_SPECIFIC, 0x15, "namespace-insufficient-capacity");
        /// Namespace Management create: every namespace identifier is in use.
        NS_ID_UNAVAILABLE = (COMMAND_SPECIFIC, 0x16, "namespace-identifier-unavailable");
        /// Namespace Attachment attach: the namespace is already attached.
        NS_ALREADY_ATTACHED = (COMMAND_SPECIFIC, 0x18, "namespace-already-attached");
        /// Namespace Attachment: a private namespace and more than one controller.
        NS_IS_PRIVATE = (COMMAND_SPECIFIC, 0x19, "namespace-is-private");
        /// Namespace Attachment detach: the namespace is not attached.
        NS_NOT_ATTACHED = (COMMAND_SPECIFIC, 0x1a, "namespace-not-attached");
        /// Namespace Management create: NCAP below NSZE without thin provisioning.
        THIN_PROVISIONING_NOT_SUPPORTED = (COMMAND_SPECIFIC, 0x1b, "thin-provisioning-not-supported");
        /// Namespace Attachment: the controller list names no controller here.
        CONTROLLER_LIST_INVALID = (COMMAND_SPECIFIC, 0x1c, "controller-list-invalid");
        /// Read, Write, Compare, Verify, Write Zeroes, Copy: Invalid Protection
        /// Information (PRINFO inconsistent with the namespace's protection settings).
        INVALID_PROTECTION_INFO = (COMMAND_SPECIFIC, 0x81, "invalid-protection-information");
        /// Copy: Command Size Limit Exceeded.
        COMMAND_SIZE_LIMIT_EXCEEDED = (COMMAND_SPECIFIC, 0x83, "command-size-limit-exceeded");
        /// Copy: Incompatible Namespace or Format.
        INCOMPATIBLE_NS_OR_FORMAT = (COMMAND_SPECIFIC, 0x85, "incompatible-namespace-or-format");
        /// Zoned Namespace command set (ZNS 1.1 figure "Status Code - Command Specific
        /// Status Values"): an access crosses a zone boundary it may not cross.
        ZONE_BOUNDARY_ERROR = (COMMAND_SPECIFIC, 0xb8, "zone-boundary-error");
        /// A write to a zone in the ZSF:Full state.
        ZONE_IS_FULL = (COMMAND_SPECIFIC, 0xb9, "zone-is-full");
        /// A write to a zone in the ZSRO:Read Only state.
        ZONE_IS_READ_ONLY = (COMMAND_SPECIFIC, 0xba, "zone-is-read-only");
        /// An access to a zone in the ZSO:Offline state.
        ZONE_IS_OFFLINE = (COMMAND_SPECIFIC, 0xbb, "zone-is-offline");
        /// A write that does not start at the zone's write pointer.
        ZONE_INVALID_WRITE = (COMMAND_SPECIFIC, 0xbc, "zone-invalid-write");
        /// The write or zone action needs an active zone beyond MAR.
        TOO_MANY_ACTIVE_ZONES = (COMMAND_SPECIFIC, 0xbd, "too-many-active-zones");
        /// The write or zone action needs an open zone beyond MOR.
        TOO_MANY_OPEN_ZONES = (COMMAND_SPECIFIC, 0xbe, "too-many-open-zones");
        /// Zone Management Send: the zone's state does not allow the action.
        INVALID_ZONE_STATE_TRANSITION = (COMMAND_SPECIFIC, 0xbf, "invalid-zone-state-transition");

        WRITE_FAULT = (MEDIA, 0x80, "write-fault");
        UNRECOVERED_READ_ERROR = (MEDIA, 0x81, "unrecovered-read-error");
        GUARD_CHECK_ERROR = (MEDIA, 0x82, "end-to-end-guard-check-error");
        APP_TAG_CHECK_ERROR = (MEDIA, 0x83, "end-to-end-application-tag-check-error");
        REF_TAG_CHECK_ERROR = (MEDIA, 0x84, "end-to-end-reference-tag-check-error");
        COMPARE_FAILURE = (MEDIA, 0x85, "compare-failure");
        ACCESS_DENIED = (MEDIA, 0x86, "access-denied");
        DEALLOCATED_OR_UNWRITTEN = (MEDIA, 0x87, "deallocated-or-unwritten-block");
    }
}

/// Admin command opcodes.
pub mod admin_op {
    pub const DELETE_IO_SQ: u8 = 0x00;
    pub const CREATE_IO_SQ: u8 = 0x01;
    pub const GET_LOG_PAGE: u8 = 0x02;
    pub const DELETE_IO_CQ: u8 = 0x04;
    pub const CREATE_IO_CQ: u8 = 0x05;
    pub const IDENTIFY: u8 = 0x06;
    pub const ABORT: u8 = 0x08;
    pub const SET_FEATURES: u8 = 0x09;
    pub const GET_FEATURES: u8 = 0x0a;
    pub const ASYNC_EVENT_REQUEST: u8 = 0x0c;
    pub const NAMESPACE_MANAGEMENT: u8 = 0x0d;
    pub const NAMESPACE_ATTACHMENT: u8 = 0x15;
    pub const KEEP_ALIVE: u8 = 0x18;
    pub const DOORBELL_BUFFER_CONFIG: u8 = 0x7c;
    pub const FORMAT_NVM: u8 = 0x80;
    pub const GET_LBA_STATUS: u8 = 0x86;
}

/// NVM command set I/O opcodes.
pub mod io_op {
    pub const FLUSH: u8 = 0x00;
    pub const WRITE: u8 = 0x01;
    pub const READ: u8 = 0x02;
    /// Write Uncorrectable: marks blocks so that reads of them fail until written.
    pub const WRITE_UNCORRECTABLE: u8 = 0x04;
    pub const COMPARE: u8 = 0x05;
    pub const WRITE_ZEROES: u8 = 0x08;
    pub const DATASET_MANAGEMENT: u8 = 0x09;
    pub const VERIFY: u8 = 0x0c;
    /// Copy.
    pub const COPY: u8 = 0x19;
    /// Zoned Namespace command set: Zone Management Send (zone actions).
    pub const ZONE_MGMT_SEND: u8 = 0x79;
    /// Zoned Namespace command set: Zone Management Receive (zone reports).
    pub const ZONE_MGMT_RECV: u8 = 0x7a;
    /// Zoned Namespace command set: Zone Append (the controller picks the LBA).
    pub const ZONE_APPEND: u8 = 0x7d;
}

/// Bits of NVM command set command dwords.
pub mod nvm_cmd {
    /// CDW12 bit 30 of Read, Write, Compare, Write Zeroes, Verify and Copy: Force Unit
    /// Access.
    pub const FUA: u32 = 1 << 30;
    /// CDW12 bit 31 of the same commands: Limited Retry (accepted, no effect here).
    pub const LR: u32 = 1 << 31;
    /// CDW12 bits 29:26 of Read, Write, Compare, Write Zeroes and Verify: PRINFO
    /// (also PRINFOW of Copy).
    pub const PRINFO_SHIFT: u32 = 26;
    /// CDW12 bits 15:12 of Copy: PRINFOR.
    pub const PRINFOR_SHIFT: u32 = 12;
    /// CDW12 bit 25 of Write Zeroes: Deallocate.
    pub const DEAC: u32 = 1 << 25;
    /// CDW11 bit 2 of Dataset Management: Attribute - Deallocate.
    pub const DSM_AD: u32 = 1 << 2;
}

/// Controller register offsets in BAR0.
pub mod reg {
    pub const CAP: u64 = 0x00;
    pub const VS: u64 = 0x08;
    pub const INTMS: u64 = 0x0c;
    pub const INTMC: u64 = 0x10;
    pub const CC: u64 = 0x14;
    pub const CSTS: u64 = 0x1c;
    pub const NSSR: u64 = 0x20;
    pub const AQA: u64 = 0x24;
    pub const ASQ: u64 = 0x28;
    pub const ACQ: u64 = 0x30;
    /// First doorbell: SQ y tail at 0x1000 + 8y, CQ y head at 0x1000 + 8y + 4 (DSTRD = 0).
    pub const DOORBELL_BASE: u64 = 0x1000;
}

/// CC fields.
pub mod cc {
    pub const EN: u32 = 1;
    pub fn css(cc: u32) -> u32 {
        (cc >> 4) & 7
    }
    pub fn mps(cc: u32) -> u32 {
        (cc >> 7) & 0xf
    }
    pub fn ams(cc: u32) -> u32 {
        (cc >> 11) & 7
    }
    pub fn shn(cc: u32) -> u32 {
        (cc >> 14) & 3
    }
    pub fn iosqes(cc: u32) -> u32 {
        (cc >> 16) & 0xf
    }
    pub fn iocqes(cc: u32) -> u32 {
        (cc >> 20) & 0xf
    }
}

/// CSTS bits.
pub mod csts {
    pub const RDY: u32 = 1;
    pub const CFS: u32 = 1 << 1;
    pub const SHST_MASK: u32 = 3 << 2;
    pub const SHST_COMPLETE: u32 = 2 << 2;
}

/// Log page identifiers.
pub mod log {
    pub const ERROR_INFO: u8 = 0x01;
    pub const SMART: u8 = 0x02;
    pub const FIRMWARE_SLOT: u8 = 0x03;
    pub const CHANGED_NS_LIST: u8 = 0x04;
    pub const COMMANDS_EFFECTS: u8 = 0x05;
    /// LBA Status Information.
    pub const LBA_STATUS: u8 = 0x0e;
}

/// Feature identifiers.
pub mod feat {
    pub const ARBITRATION: u8 = 0x01;
    pub const POWER_MANAGEMENT: u8 = 0x02;
    pub const TEMPERATURE_THRESHOLD: u8 = 0x04;
    pub const ERROR_RECOVERY: u8 = 0x05;
    pub const VOLATILE_WRITE_CACHE: u8 = 0x06;
    pub const NUMBER_OF_QUEUES: u8 = 0x07;
    pub const INTERRUPT_COALESCING: u8 = 0x08;
    pub const INTERRUPT_VECTOR_CONFIG: u8 = 0x09;
    /// Write Atomicity Normal: DW11 bit 0, Disable Normal (only AWUPF then applies).
    pub const WRITE_ATOMICITY: u8 = 0x0a;
    pub const ASYNC_EVENT_CONFIG: u8 = 0x0b;
    pub const TIMESTAMP: u8 = 0x0e;
    /// LBA Status Information Attributes: LSIRI (DW11 15:0) and LSIPI (31:16).
    pub const LBA_STATUS_ATTRIBUTES: u8 = 0x15;
    pub const HOST_BEHAVIOR_SUPPORT: u8 = 0x16;
}

/// Asynchronous event types and information.
pub mod aer {
    /// Asynchronous Event Type Error status, with its information values.
    pub const TYPE_ERROR: u8 = 0;
    /// A doorbell of a queue that does not exist was written.
    pub const INFO_INVALID_DOORBELL_REGISTER: u8 = 0x00;
    /// A doorbell was written with a value out of range (SQ tail >= size, CQ head >= size
    /// or past the entries posted).
    pub const INFO_INVALID_DOORBELL_VALUE: u8 = 0x01;
    pub const TYPE_NOTICE: u8 = 2;
    pub const INFO_NS_ATTR_CHANGED: u8 = 0;
    /// Async Event Configuration bit enabling Namespace Attribute Notices.
    pub const AEC_NS_ATTR: u32 = 1 << 8;
}

/// Identify CNS values.
pub mod cns {
    pub const NAMESPACE: u8 = 0x00;
    pub const CONTROLLER: u8 = 0x01;
    pub const ACTIVE_NS_LIST: u8 = 0x02;
    pub const NS_DESCRIPTORS: u8 = 0x03;
    pub const CS_NAMESPACE: u8 = 0x05;
    pub const CS_CONTROLLER: u8 = 0x06;
    pub const CS_ACTIVE_NS_LIST: u8 = 0x07;
    pub const CS_INDEPENDENT_NAMESPACE: u8 = 0x08;
    pub const ALLOCATED_NS_LIST: u8 = 0x10;
    pub const ALLOCATED_NAMESPACE: u8 = 0x11;
    /// Controllers attached to a namespace.
    pub const NS_CONTROLLER_LIST: u8 = 0x12;
    /// Controllers in the subsystem.
    pub const CONTROLLER_LIST: u8 = 0x13;
    /// I/O Command Set data structure (the command set combinations).
    pub const IO_COMMAND_SET: u8 = 0x1c;
}

/// Command Set Identifier of the NVM command set.
pub const CSI_NVM: u8 = 0;
/// Command Set Identifier of the Zoned Namespace command set.
pub const CSI_ZNS: u8 = 2;

/// Byte offsets in the Identify Controller structure.
pub mod id_ctrl {
    pub const VID: usize = 0;
    pub const SSVID: usize = 2;
    pub const SN: usize = 4;
    pub const MN: usize = 24;
    pub const FR: usize = 64;
    pub const RAB: usize = 72;
    pub const IEEE: usize = 73;
    pub const MDTS: usize = 77;
    pub const CNTLID: usize = 78;
    pub const VER: usize = 80;
    pub const OAES: usize = 92;
    pub const CTRATT: usize = 96;
    pub const CNTRLTYPE: usize = 111;
    pub const OACS: usize = 256;
    pub const ACL: usize = 258;
    pub const AERL: usize = 259;
    pub const FRMW: usize = 260;
    pub const LPA: usize = 261;
    pub const ELPE: usize = 262;
    pub const NPSS: usize = 263;
    pub const WCTEMP: usize = 266;
    pub const CCTEMP: usize = 268;
    pub const TNVMCAP: usize = 280;
    pub const UNVMCAP: usize = 296;
    pub const SQES: usize = 512;
    pub const CQES: usize = 513;
    pub const MAXCMD: usize = 514;
    pub const NN: usize = 516;
    pub const ONCS: usize = 520;
    /// Format NVM Attributes.
    pub const FNA: usize = 524;
    pub const VWC: usize = 525;
    pub const OCFS: usize = 534;
    pub const SGLS: usize = 536;
    pub const SUBNQN: usize = 768;
    pub const PSD0: usize = 2048;

    /// CTRATT bit 15: Extended LBA Formats Supported (Identify CNS 05h has ELBAF).
    pub const CTRATT_ELBAS: u32 = 1 << 15;
    /// OACS bit 8: Doorbell Buffer Config supported.
    pub const OACS_DBBUF: u16 = 1 << 8;
    /// Format NVM supported.
    pub const OACS_FORMAT: u16 = 1 << 1;
    /// Namespace Management and Namespace Attachment supported.
    pub const OACS_NS_MGMT: u16 = 1 << 3;
    /// OACS bit 9: Get LBA Status capability.
    pub const OACS_GET_LBA_STATUS: u16 = 1 << 9;
    /// OAES bit 8: Namespace Attribute Notices.
    pub const OAES_NS_ATTR: u32 = 1 << 8;
    pub const ONCS_COMPARE: u16 = 1 << 0;
    pub const ONCS_WRITE_UNCORRECTABLE: u16 = 1 << 1;
    pub const ONCS_DSM: u16 = 1 << 2;
    pub const ONCS_WRITE_ZEROES: u16 = 1 << 3;
    pub const ONCS_FEATURES_SAVE_SELECT: u16 = 1 << 4;
    pub const ONCS_TIMESTAMP: u16 = 1 << 6;
    pub const ONCS_VERIFY: u16 = 1 << 7;
    /// ONCS bit 8: Copy (set by the Copy issue).
    pub const ONCS_COPY: u16 = 1 << 8;
}

/// Byte offsets in the Identify Namespace structure (NVM command set).
pub mod id_ns {
    pub const NSZE: usize = 0;
    pub const NCAP: usize = 8;
    pub const NUSE: usize = 16;
    pub const NSFEAT: usize = 24;
    pub const NLBAF: usize = 25;
    pub const FLBAS: usize = 26;
    /// Metadata Capabilities: bit 0 extended LBA, bit 1 separate buffer.
    pub const MC: usize = 27;
    /// End-to-end Data Protection Capabilities.
    pub const DPC: usize = 28;
    /// End-to-end Data Protection Type Settings: type in 2:0, bit 3 PI first.
    pub const DPS: usize = 29;
    /// Namespace Multi-path I/O and Namespace Sharing Capabilities.
    pub const NMIC: usize = 30;
    pub const DLFEAT: usize = 33;
    pub const NVMCAP: usize = 48;
    pub const MSSRL: usize = 74;
    pub const MCL: usize = 76;
    pub const MSRC: usize = 80;
    pub const NSATTR: usize = 99;
    pub const NGUID: usize = 104;
    pub const EUI64: usize = 120;
    pub const LBAF0: usize = 128;
    /// The NVM command set specific Identify Namespace (CNS 05h): extended LBA format 0.
    pub const ELBAF0: usize = 12;
    /// Deallocated blocks read as zeroes (bits 2:0 = 1) and Write Zeroes can deallocate
    /// (bit 3).
    pub const DLFEAT_VALUE: u8 = 0x09;
}

/// Namespace Identification Descriptor types (Identify CNS 3).
pub mod nidt {
    pub const EUI64: u8 = 1;
    pub const NGUID: u8 = 2;
    pub const UUID: u8 = 3;
    pub const CSI: u8 = 4;
}

/// SGL descriptor types (byte 15 bits 7:4).
pub mod sgl {
    pub const DATA_BLOCK: u8 = 0x0;
    pub const BIT_BUCKET: u8 = 0x1;
    pub const SEGMENT: u8 = 0x2;
    pub const LAST_SEGMENT: u8 = 0x3;
    pub const DESCRIPTOR_SIZE: u64 = 16;
}

/// Copy command (opcode 0x19) source range descriptor formats.
pub mod copy {
    /// Format 0: 32 bytes, SLBA at 15:8, NLB (0's based) at 17:16.
    pub const FORMAT_0: u8 = 0;
    /// Format 1: 40 bytes, for namespaces with the 64-bit guard (80-bit ELBST/EILBRT).
    pub const FORMAT_1: u8 = 1;
    /// Format 2: 32 bytes, source NSID at 3:0.
    pub const FORMAT_2: u8 = 2;
    /// Format 3: 40 bytes, source NSID, for the 64-bit guard.
    pub const FORMAT_3: u8 = 3;
    pub const SLBA_OFFSET: usize = 8;
    pub const NLB_OFFSET: usize = 16;
    pub const SNSID_OFFSET: usize = 0;
    /// Formats 0 and 2: EILBRT (32 bits, little-endian), ELBAT, ELBATM.
    pub const EILBRT_F0: usize = 24;
    pub const ELBAT_F0: usize = 28;
    pub const ELBATM_F0: usize = 30;
    /// Formats 1 and 3: ELBST/EILBRT, 80 bits, most significant byte first (the
    /// reference tag in its low-order bytes; docs/copy.md says why), then ELBAT, ELBATM.
    pub const ELBT_F1: usize = 26;
    pub const ELBT_F1_LEN: usize = 10;
    pub const ELBAT_F1: usize = 36;
    pub const ELBATM_F1: usize = 38;

    /// Size of one source range descriptor of `format`, or `None` if unknown.
    pub fn descriptor_size(format: u8) -> Option<usize> {
        match format {
            FORMAT_0 | FORMAT_2 => Some(32),
            FORMAT_1 | FORMAT_3 => Some(40),
            _ => None,
        }
    }
}

/// Writes `v` little-endian into `buf` at `off` (Identify and log page builders).
pub fn put_u16(buf: &mut [u8], off: usize, v: u16) {
    buf[off..off + 2].copy_from_slice(&v.to_le_bytes());
}
pub fn put_u32(buf: &mut [u8], off: usize, v: u32) {
    buf[off..off + 4].copy_from_slice(&v.to_le_bytes());
}
pub fn put_u64(buf: &mut [u8], off: usize, v: u64) {
    buf[off..off + 8].copy_from_slice(&v.to_le_bytes());
}
/// Copies an ASCII string space-padded into `buf[off..off + len]`.
pub fn put_ascii(buf: &mut [u8], off: usize, len: usize, s: &str) {
    let field = &mut buf[off..off + len];
    field.fill(b' ');
    let n = s.len().min(len);
    field[..n].copy_from_slice(&s.as_bytes()[..n]);
}
pub fn get_u32(buf: &[u8], off: usize) -> u32 {
    le32(buf, off)
}
pub fn get_u64(buf: &[u8], off: usize) -> u64 {
    le64(buf, off)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqe_round_trip() {
        let s = Sqe {
            opcode: 0x02,
            psdt: 1,
            cid: 0xbeef,
            nsid: 7,
            dptr1: 0x1234_5000,
            dptr2: 0xffff_0000_0000_0001,
            cdw10: 10,
            cdw11: 1,
            cdw12: 0x4000_0007,
            ..Default::default()
        };
        let p = Sqe::parse(&s.to_bytes());
        assert_eq!(p, s);
        assert_eq!(p.slba(), (1u64 << 32) | 10);
        assert_eq!(p.nlb(), 8);
    }

    #[test]
    fn status_fields() {
        let st = status::COMPARE_FAILURE.dnr();
        assert_eq!(st.sct(), 2);
        assert_eq!(st.sc(), 0x85);
        assert!(st.is_dnr());
        assert!(!st.is_success());
        assert!(status::SUCCESS.is_success());
    }
}
