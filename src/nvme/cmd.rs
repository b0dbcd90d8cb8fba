//! Submission queue entries decoded once into typed commands: [`decode_admin`] gives an
//! [`AdminCmd`], [`decode_io`] an [`IoCmd`]. Handlers (`admin`, `identify`, `io`, `copy`)
//! read only these fields, never the raw dwords.
//!
//! What the decoder rejects, and nothing else (every status is Invalid Field in Command
//! with DNR, 0x4002):
//!
//! - **FUSE != 0** (first or second command of a fused operation, or the reserved 11b)
//!   on every known opcode. NVMe Base 1.4 §4.12 (2.0 §3.4.2, Fused Operations): "If the
//!   FUSE field is set to a non-zero value and the controller does not support the
//!   requested fused operation, the controller should abort the command with a status of
//!   Invalid Field in Command"; FUSES in Identify Controller is 0 here (no Compare and
//!   Write). QEMU (hw/nvme/ctrl.c, `nvme_admin_cmd` / `nvme_io_cmd`) does the same, but
//!   only after its opcode check and without DNR; here an unknown opcode also still
//!   completes with Invalid Opcode, and DNR is set because resubmitting the same entry
//!   cannot succeed. Both halves of a fused pair fail the same way, so neither runs.
//! - **Doorbell Buffer Config with PSDT != 0** (its PRP1/PRP2 are buffer addresses, not
//!   a data pointer), as before.
//! - **Get Features SEL 100b-111b** (reserved values), as before.
//! - **Get Log Page LPO not dword aligned**, as before.
//!
//! PSDT: 00b is PRP, 01b/10b SGL; the reserved 11b decodes to [`DataPtr::Reserved`] and
//! fails with Invalid Field only when the command moves data (as before: a Flush with
//! PSDT 11b still succeeds). On admin commands any PSDT other than 00b is Invalid Field:
//! over PCIe admin commands use PRPs only (as QEMU does).
//!
//! Not checked, on purpose: reserved bits and dwords (CDW2/3, MPTR of commands without
//! metadata, reserved bits of CDW10-15). The specification asks hosts to clear them and
//! does not ask controllers to fail commands that do not, and Linux has sent non-zero
//! values in fields that later revisions defined; failing them could break a working
//! driver. Ignored fields: QPRIO and NVMSETID (Create I/O SQ), LR and directives
//! of I/O commands (PRINFO, the tags and MPTR are decoded always and used on namespaces
//! with metadata), DSM IDR/IDW hints, UUID indexes, Offset Type of Get Log Page.
//! Everything that depends on state (namespace, limits, features, queue table) is
//! checked by the handlers, in the order they always did.

use super::prp::DataPtr;
use super::spec::{admin_op, io_op, nvm_cmd, status, Sqe, Status};
use super::zones::{ZoneAction, ZoneFilter};
use crate::hooks::{AdminKey, OpKind, ZoneKey};

/// FUSE (CDW0 bits 9:8) of a command that is not part of a fused operation.
pub const FUSE_NORMAL: u8 = 0;

/// Parameters of Create I/O Completion Queue (the queue table still has its own copy of
/// this struct; `admin` converts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CqParams {
    /// QID (CDW10 15:0).
    pub qid: u16,
    /// Entries, 1-based (QSIZE, CDW10 31:16, is 0's based).
    pub size: u32,
    /// PRP1: the queue's base address.
    pub base: u64,
    /// PC (CDW11 bit 0).
    pub contiguous: bool,
    /// IEN (CDW11 bit 1).
    pub ien: bool,
    /// IV (CDW11 31:16).
    pub vector: u16,
}

/// Parameters of Create I/O Submission Queue (QPRIO is ignored: round robin only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqParams {
    /// QID (CDW10 15:0).
    pub qid: u16,
    /// Entries, 1-based (QSIZE, CDW10 31:16, is 0's based).
    pub size: u32,
    /// PRP1: the queue's base address.
    pub base: u64,
    /// PC (CDW11 bit 0).
    pub contiguous: bool,
    /// CQID (CDW11 31:16).
    pub cqid: u16,
}

/// Identify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdentifyCmd {
    pub nsid: u32,
    /// CNS (CDW10 7:0).
    pub cns: u8,
    /// CNTID (CDW10 31:16).
    pub cntid: u16,
    /// CNS Specific Identifier (CDW11 15:0).
    pub cnssid: u16,
    /// CSI (CDW11 31:24).
    pub csi: u8,
    pub dptr: DataPtr,
}

/// Get Log Page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogPageCmd {
    pub nsid: u32,
    /// LID (CDW10 7:0).
    pub lid: u8,
    /// LSP (CDW10 14:8).
    pub lsp: u8,
    /// Retain Asynchronous Event (CDW10 bit 15).
    pub rae: bool,
    /// Dwords to transfer, 1-based (NUMDU:NUMDL, CDW11 15:0 and CDW10 31:16, 0's based).
    pub numd: u64,
    /// LSI (CDW11 31:16).
    pub lsi: u16,
    /// Byte offset into the page (LPOU:LPOL, CDW13:CDW12), dword aligned.
    pub offset: u64,
    /// CSI (CDW14 31:24).
    pub csi: u8,
    pub dptr: DataPtr,
}

impl LogPageCmd {
    /// Bytes the host asked for.
    pub fn len(&self) -> u64 {
        self.numd * 4
    }

    /// Never true: NUMD is 0's based, so at least one dword is asked for.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// Set Features.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetFeaturesCmd {
    pub nsid: u32,
    /// FID (CDW10 7:0).
    pub fid: u8,
    /// SV: save across power cycles (CDW10 bit 31).
    pub save: bool,
    /// The feature's value (CDW11).
    pub value: u32,
    pub dptr: DataPtr,
}

/// Get Features SEL (CDW10 10:8); values 4-7 are reserved and refused by the decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeatureSel {
    Current,
    Default,
    Saved,
    SupportedCapabilities,
}

/// Get Features.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GetFeaturesCmd {
    pub nsid: u32,
    /// FID (CDW10 7:0).
    pub fid: u8,
    pub sel: FeatureSel,
    /// Feature specific input (CDW11: TMPSEL/THSEL, interrupt vector).
    pub value: u32,
    pub dptr: DataPtr,
}

/// One decoded admin command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminCmd {
    /// QID (CDW10 15:0).
    DeleteIoSq {
        qid: u16,
    },
    CreateIoSq(SqParams),
    GetLogPage(LogPageCmd),
    /// QID (CDW10 15:0).
    DeleteIoCq {
        qid: u16,
    },
    CreateIoCq(CqParams),
    Identify(IdentifyCmd),
    /// SQID (CDW10 15:0), CID (CDW10 31:16) of the command to abort.
    Abort {
        sqid: u16,
        cid: u16,
    },
    SetFeatures(SetFeaturesCmd),
    GetFeatures(GetFeaturesCmd),
    /// The request's own command id, for its deferred completion.
    AsyncEventRequest {
        cid: u16,
    },
    KeepAlive,
    /// PRP1: shadow doorbell buffer; PRP2: EventIdx buffer.
    DoorbellBufferConfig {
        shadow: u64,
        event_idx: u64,
    },
    NamespaceManagement(NsManagementCmd),
    NamespaceAttachment(NsAttachmentCmd),
    FormatNvm(FormatCmd),
    GetLbaStatus(LbaStatusCmd),
    /// Any other opcode: Invalid Opcode.
    Unknown(u8),
}

/// Get LBA Status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LbaStatusCmd {
    pub nsid: u32,
    /// SLBA (CDW11:CDW10).
    pub slba: u64,
    /// Dwords the host's buffer holds, 1-based (MNDW, CDW12, is 0's based).
    pub mndw: u64,
    /// ATYPE (CDW13 31:24).
    pub atype: u8,
    /// RL (CDW13 15:0): blocks from SLBA; 0 is the rest of the namespace.
    pub rl: u16,
    pub dptr: DataPtr,
}

/// Namespace Management.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NsManagementCmd {
    pub nsid: u32,
    /// SEL (CDW10 3:0): 0 create, 1 delete, other values reserved.
    pub sel: u8,
    /// CSI (CDW11 31:24) of the namespace to create.
    pub csi: u8,
    /// Create: the host's data structure (Identify Namespace layout, 4 KiB).
    pub dptr: DataPtr,
}

/// Namespace Attachment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NsAttachmentCmd {
    pub nsid: u32,
    /// SEL (CDW10 3:0): 0 attach, 1 detach, other values reserved.
    pub sel: u8,
    /// The controller list (4 KiB).
    pub dptr: DataPtr,
}

/// Format NVM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FormatCmd {
    pub nsid: u32,
    /// Format index: LBAFU (CDW10 13:12) above LBAFL (CDW10 3:0).
    pub lbaf: u8,
    /// MSET (CDW10 bit 4): metadata at the end of each block's data.
    pub mset: bool,
    /// PI (CDW10 7:5): protection information type.
    pub pi: u8,
    /// PIL (CDW10 bit 8): the tuple is in the first bytes of the metadata.
    pub pil: bool,
    /// SES (CDW10 11:9): secure erase settings.
    pub ses: u8,
}

impl AdminCmd {
    /// What the command asked for, for records: the feature, Identify or log page id.
    pub fn key(&self) -> Option<AdminKey> {
        match self {
            AdminCmd::SetFeatures(c) => Some(AdminKey::Feature { fid: c.fid }),
            AdminCmd::GetFeatures(c) => Some(AdminKey::Feature { fid: c.fid }),
            AdminCmd::Identify(c) => Some(AdminKey::Identify {
                cns: c.cns,
                cntid: c.cntid,
                csi: c.csi,
            }),
            AdminCmd::GetLogPage(c) => Some(AdminKey::LogPage { lid: c.lid }),
            AdminCmd::NamespaceManagement(c) => Some(AdminKey::Select { sel: c.sel }),
            AdminCmd::NamespaceAttachment(c) => Some(AdminKey::Select { sel: c.sel }),
            AdminCmd::FormatNvm(c) => Some(AdminKey::Format {
                lbaf: c.lbaf,
                ses: c.ses,
            }),
            _ => None,
        }
    }
}

/// The end-to-end protection fields of an NVM command (used on namespaces formatted
/// with protection information, ignored elsewhere).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PiFields {
    /// PRINFO (CDW12 29:26): PRACT, PRCHK guard / application / reference.
    pub prinfo: u8,
    /// Initial logical block reference tag: CDW14, with CDW3 15:0 as bits 47:32 (the
    /// 48-bit reference tag of the 64-bit guard format with no storage tag).
    pub ilbrt: u64,
    /// Logical block application tag (CDW15 15:0) and its mask (CDW15 31:16).
    pub lbat: u16,
    pub lbatm: u16,
}

/// Where a command's separate metadata buffer is (MPTR, CDW5:CDW4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MetaPtr {
    pub addr: u64,
    /// PSDT 10b: MPTR is the address of one SGL descriptor; else (PRP, PSDT 01b) of a
    /// contiguous buffer.
    pub sgl: bool,
}

/// Read, Write and Compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RwCmd {
    pub nsid: u32,
    /// SLBA (CDW11:CDW10).
    pub slba: u64,
    /// Logical blocks, 1-based (NLB, CDW12 15:0, is 0's based).
    pub nlb: u32,
    /// Force Unit Access (CDW12 bit 30); Compare ignores it (nothing is cached).
    pub fua: bool,
    pub dptr: DataPtr,
    pub mptr: MetaPtr,
    pub pi: PiFields,
}

/// Zone Management Send (ZNS command set 1.1, 3.4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZoneSendCmd {
    pub nsid: u32,
    /// SLBA (CDW11:CDW10): the first LBA of the zone acted on (ignored with Select All).
    pub slba: u64,
    /// Zone Send Action (CDW13 7:0); `None`: a reserved value (Invalid Field).
    pub action: Option<ZoneAction>,
    /// Select All (CDW13 bit 8).
    pub select_all: bool,
    /// Set Zone Descriptor Extension's data.
    pub dptr: DataPtr,
}

/// Zone Receive Action (Zone Management Receive CDW13 7:0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZoneReceiveAction {
    Report,
    ExtendedReport,
}

/// Zone Management Receive (ZNS command set 1.1, 3.4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZoneReceiveCmd {
    pub nsid: u32,
    /// SLBA (CDW11:CDW10): the report starts at the zone holding it.
    pub slba: u64,
    /// Bytes of the host buffer: (NUMD, CDW12, 0's based dwords, + 1) * 4.
    pub bytes: u64,
    /// `None`: a reserved Zone Receive Action (Invalid Field).
    pub action: Option<ZoneReceiveAction>,
    /// Zone Receive Action Specific Field (CDW13 15:8); `None`: reserved.
    pub filter: Option<ZoneFilter>,
    /// Partial Report (CDW13 bit 16).
    pub partial: bool,
    pub dptr: DataPtr,
}

/// Copy (NVM Command Set 1.0 §3.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyCmd {
    /// Destination namespace.
    pub nsid: u32,
    /// SDLBA (CDW11:CDW10).
    pub sdlba: u64,
    /// NR (CDW12 7:0): source ranges, 0's based, as the records show it.
    pub nr: u8,
    /// Descriptor Format (CDW12 11:8).
    pub format: u8,
    /// PRINFOR (CDW12 15:12): how the source blocks' protection information is
    /// checked (PRACT: and stripped).
    pub prinfor: u8,
    /// PRINFOW (CDW12 29:26): how the destination's is checked (PRACT: generated).
    pub prinfow: u8,
    /// The destination's reference tag (CDW14, CDW3 15:0), application tag and mask
    /// (CDW15); `prinfo` of it is PRINFOW.
    pub dest_pi: PiFields,
    /// FUA (CDW12 bit 30). LR (bit 31) is accepted and has no effect: nothing retries.
    pub fua: bool,
    /// Where the source range descriptors are.
    pub dptr: DataPtr,
}

impl CopyCmd {
    /// Number of source ranges (NR + 1).
    pub fn ranges(&self) -> usize {
        self.nr as usize + 1
    }
}

/// One decoded NVM command set I/O command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoCmd {
    /// `nsid` may be FFFFFFFFh: every namespace.
    Flush {
        nsid: u32,
    },
    Write(RwCmd),
    Read(RwCmd),
    Compare(RwCmd),
    WriteZeroes {
        nsid: u32,
        slba: u64,
        /// 1-based.
        nlb: u32,
        /// FUA (CDW12 bit 30).
        fua: bool,
        /// Deallocate (CDW12 bit 25).
        deac: bool,
        pi: PiFields,
    },
    DatasetManagement {
        nsid: u32,
        /// Ranges, 1-based (NR, CDW10 7:0, is 0's based).
        nr: u16,
        /// Attribute – Deallocate (CDW11 bit 2); IDR/IDW hints are ignored.
        ad: bool,
        dptr: DataPtr,
    },
    Verify {
        nsid: u32,
        slba: u64,
        /// 1-based.
        nlb: u32,
        pi: PiFields,
    },
    Copy(CopyCmd),
    /// Marks blocks unreadable until written.
    WriteUncorrectable {
        nsid: u32,
        slba: u64,
        /// 1-based.
        nlb: u32,
    },
    /// Zoned namespaces: a zone action.
    ZoneSend(ZoneSendCmd),
    /// Zoned namespaces: a zone report.
    ZoneReceive(ZoneReceiveCmd),
    /// Zoned namespaces: a write at the zone's write pointer; `slba` is the zone's
    /// first LBA (ZSLBA).
    ZoneAppend(RwCmd),
    /// Any other opcode: Invalid Opcode.
    Unknown(u8),
}

impl IoCmd {
    /// SLBA and 1-based NLB of the commands that address one LBA range: Read, Write,
    /// Write Zeroes, Compare, Verify.
    pub fn block(&self) -> Option<(u64, u32)> {
        match *self {
            IoCmd::Read(c) | IoCmd::Write(c) | IoCmd::Compare(c) | IoCmd::ZoneAppend(c) => {
                Some((c.slba, c.nlb))
            }
            IoCmd::WriteZeroes { slba, nlb, .. }
            | IoCmd::Verify { slba, nlb, .. }
            | IoCmd::WriteUncorrectable { slba, nlb, .. } => Some((slba, nlb)),
            _ => None,
        }
    }

    /// What a Zone Management Send or Receive asks for (the trace's zone fields).
    pub fn zone(&self) -> Option<ZoneKey> {
        match *self {
            IoCmd::ZoneSend(c) => Some(ZoneKey {
                action: c.action.map_or("reserved", ZoneAction::name),
                slba: c.slba,
                select_all: c.select_all,
                partial: false,
            }),
            IoCmd::ZoneReceive(c) => Some(ZoneKey {
                action: match c.action {
                    Some(ZoneReceiveAction::Report) => "report",
                    Some(ZoneReceiveAction::ExtendedReport) => "extended-report",
                    None => "reserved",
                },
                slba: c.slba,
                select_all: false,
                partial: c.partial,
            }),
            _ => None,
        }
    }

    /// The transport-neutral kind (Dataset Management is Discard).
    pub fn kind(&self) -> OpKind {
        match self {
            IoCmd::Flush { .. } => OpKind::Flush,
            IoCmd::Write(_) => OpKind::Write,
            IoCmd::Read(_) => OpKind::Read,
            IoCmd::Compare(_) => OpKind::Compare,
            IoCmd::WriteZeroes { .. } => OpKind::WriteZeroes,
            IoCmd::DatasetManagement { .. } => OpKind::Discard,
            IoCmd::Verify { .. } => OpKind::Verify,
            IoCmd::Copy(_) => OpKind::Copy,
            IoCmd::WriteUncorrectable { .. } => OpKind::WriteUncorrectable,
            IoCmd::ZoneSend(_) => OpKind::ZoneSend,
            IoCmd::ZoneReceive(_) => OpKind::ZoneReceive,
            IoCmd::ZoneAppend(_) => OpKind::ZoneAppend,
            IoCmd::Unknown(_) => OpKind::Other,
        }
    }
}

/// The one failure status of the decoder.
const INVALID_FIELD: Status = status::INVALID_FIELD.dnr();

fn check_fuse(sqe: &Sqe) -> Result<(), Status> {
    if sqe.fuse == FUSE_NORMAL {
        Ok(())
    } else {
        Err(INVALID_FIELD)
    }
}

/// Logical blocks of an NVM command, 1-based (CDW12 15:0 is 0's based).
fn nlb(sqe: &Sqe) -> u32 {
    (sqe.cdw12 & 0xffff) + 1
}

fn pi_fields(sqe: &Sqe) -> PiFields {
    PiFields {
        prinfo: ((sqe.cdw12 >> nvm_cmd::PRINFO_SHIFT) & 0xf) as u8,
        ilbrt: sqe.cdw14 as u64 | ((sqe.cdw3 & 0xffff) as u64) << 32,
        lbat: sqe.cdw15 as u16,
        lbatm: (sqe.cdw15 >> 16) as u16,
    }
}

fn rw(sqe: &Sqe) -> RwCmd {
    RwCmd {
        nsid: sqe.nsid,
        slba: sqe.slba(),
        nlb: nlb(sqe),
        fua: sqe.cdw12 & nvm_cmd::FUA != 0,
        dptr: DataPtr::of(sqe),
        mptr: MetaPtr {
            addr: sqe.mptr,
            sgl: sqe.psdt == 2,
        },
        pi: pi_fields(sqe),
    }
}

/// The NVM command set opcodes [`decode_io`] knows.
pub const IO_OPCODES: [u8; 12] = [
    io_op::FLUSH,
    io_op::WRITE,
    io_op::READ,
    io_op::WRITE_UNCORRECTABLE,
    io_op::COMPARE,
    io_op::WRITE_ZEROES,
    io_op::DATASET_MANAGEMENT,
    io_op::VERIFY,
    io_op::COPY,
    io_op::ZONE_MGMT_SEND,
    io_op::ZONE_MGMT_RECV,
    io_op::ZONE_APPEND,
];

/// The admin opcodes [`decode_admin`] knows (the Commands Supported and Effects log
/// lists these).
pub const ADMIN_OPCODES: [u8; 16] = [
    admin_op::DELETE_IO_SQ,
    admin_op::CREATE_IO_SQ,
    admin_op::GET_LOG_PAGE,
    admin_op::DELETE_IO_CQ,
    admin_op::CREATE_IO_CQ,
    admin_op::IDENTIFY,
    admin_op::ABORT,
    admin_op::SET_FEATURES,
    admin_op::GET_FEATURES,
    admin_op::ASYNC_EVENT_REQUEST,
    admin_op::KEEP_ALIVE,
    admin_op::DOORBELL_BUFFER_CONFIG,
    admin_op::NAMESPACE_MANAGEMENT,
    admin_op::NAMESPACE_ATTACHMENT,
    admin_op::FORMAT_NVM,
    admin_op::GET_LBA_STATUS,
];

/// Decodes an entry of the admin submission queue.
pub fn decode_admin(sqe: &Sqe) -> Result<AdminCmd, Status> {
    let (cdw10, cdw11) = (sqe.cdw10, sqe.cdw11);
    let cmd = match sqe.opcode {
        admin_op::DELETE_IO_SQ => AdminCmd::DeleteIoSq { qid: cdw10 as u16 },
        admin_op::CREATE_IO_SQ => AdminCmd::CreateIoSq(SqParams {
            qid: cdw10 as u16,
            size: (cdw10 >> 16) + 1,
            base: sqe.dptr1,
            contiguous: cdw11 & 1 != 0,
            cqid: (cdw11 >> 16) as u16,
        }),
        admin_op::GET_LOG_PAGE => {
            let offset = sqe.cdw12 as u64 | ((sqe.cdw13 as u64) << 32);
            check_fuse(sqe)?;
            if !offset.is_multiple_of(4) {
                return Err(INVALID_FIELD);
            }
            AdminCmd::GetLogPage(LogPageCmd {
                nsid: sqe.nsid,
                lid: cdw10 as u8,
                lsp: ((cdw10 >> 8) & 0x7f) as u8,
                rae: cdw10 & (1 << 15) != 0,
                numd: (((cdw11 & 0xffff) << 16) | (cdw10 >> 16)) as u64 + 1,
                lsi: (cdw11 >> 16) as u16,
                offset,
                csi: (sqe.cdw14 >> 24) as u8,
                dptr: DataPtr::of(sqe),
            })
        }
        admin_op::DELETE_IO_CQ => AdminCmd::DeleteIoCq { qid: cdw10 as u16 },
        admin_op::CREATE_IO_CQ => AdminCmd::CreateIoCq(CqParams {
            qid: cdw10 as u16,
            size: (cdw10 >> 16) + 1,
            base: sqe.dptr1,
            contiguous: cdw11 & 1 != 0,
            ien: cdw11 & 2 != 0,
            vector: (cdw11 >> 16) as u16,
        }),
        admin_op::IDENTIFY => AdminCmd::Identify(IdentifyCmd {
            nsid: sqe.nsid,
            cns: cdw10 as u8,
            cntid: (cdw10 >> 16) as u16,
            cnssid: cdw11 as u16,
            csi: (cdw11 >> 24) as u8,
            dptr: DataPtr::of(sqe),
        }),
        admin_op::ABORT => AdminCmd::Abort {
            sqid: cdw10 as u16,
            cid: (cdw10 >> 16) as u16,
        },
        admin_op::SET_FEATURES => AdminCmd::SetFeatures(SetFeaturesCmd {
            nsid: sqe.nsid,
            fid: cdw10 as u8,
            save: cdw10 & (1 << 31) != 0,
            value: cdw11,
            dptr: DataPtr::of(sqe),
        }),
        admin_op::GET_FEATURES => {
            check_fuse(sqe)?;
            let sel = match (cdw10 >> 8) & 7 {
                0 => FeatureSel::Current,
                1 => FeatureSel::Default,
                2 => FeatureSel::Saved,
                3 => FeatureSel::SupportedCapabilities,
                _ => return Err(INVALID_FIELD),
            };
            AdminCmd::GetFeatures(GetFeaturesCmd {
                nsid: sqe.nsid,
                fid: cdw10 as u8,
                sel,
                value: cdw11,
                dptr: DataPtr::of(sqe),
            })
        }
        admin_op::ASYNC_EVENT_REQUEST => AdminCmd::AsyncEventRequest { cid: sqe.cid },
        admin_op::KEEP_ALIVE => AdminCmd::KeepAlive,
        admin_op::DOORBELL_BUFFER_CONFIG => {
            check_fuse(sqe)?;
            if sqe.psdt != 0 {
                return Err(INVALID_FIELD);
            }
            AdminCmd::DoorbellBufferConfig {
                shadow: sqe.dptr1,
                event_idx: sqe.dptr2,
            }
        }
        admin_op::NAMESPACE_MANAGEMENT => AdminCmd::NamespaceManagement(NsManagementCmd {
            nsid: sqe.nsid,
            sel: (cdw10 & 0xf) as u8,
            csi: (cdw11 >> 24) as u8,
            dptr: DataPtr::of(sqe),
        }),
        admin_op::NAMESPACE_ATTACHMENT => AdminCmd::NamespaceAttachment(NsAttachmentCmd {
            nsid: sqe.nsid,
            sel: (cdw10 & 0xf) as u8,
            dptr: DataPtr::of(sqe),
        }),
        admin_op::FORMAT_NVM => AdminCmd::FormatNvm(FormatCmd {
            nsid: sqe.nsid,
            lbaf: ((cdw10 & 0xf) | ((cdw10 >> 8) & 0x30)) as u8,
            mset: cdw10 & (1 << 4) != 0,
            pi: ((cdw10 >> 5) & 7) as u8,
            pil: cdw10 & (1 << 8) != 0,
            ses: ((cdw10 >> 9) & 7) as u8,
        }),
        admin_op::GET_LBA_STATUS => AdminCmd::GetLbaStatus(LbaStatusCmd {
            nsid: sqe.nsid,
            slba: cdw10 as u64 | (cdw11 as u64) << 32,
            mndw: sqe.cdw12 as u64 + 1,
            atype: (sqe.cdw13 >> 24) as u8,
            rl: sqe.cdw13 as u16,
            dptr: DataPtr::of(sqe),
        }),
        op => return Ok(AdminCmd::Unknown(op)),
    };
    check_fuse(sqe)?;
    // NVMe over PCIe: admin commands use PRPs only (PSDT shall be 00b).
    if sqe.psdt != 0 {
        return Err(INVALID_FIELD);
    }
    Ok(cmd)
}

/// Decodes an entry of an I/O submission queue (NVM command set).
pub fn decode_io(sqe: &Sqe) -> Result<IoCmd, Status> {
    let nsid = sqe.nsid;
    let cmd = match sqe.opcode {
        io_op::FLUSH => IoCmd::Flush { nsid },
        io_op::WRITE => IoCmd::Write(rw(sqe)),
        io_op::READ => IoCmd::Read(rw(sqe)),
        io_op::COMPARE => IoCmd::Compare(rw(sqe)),
        io_op::WRITE_UNCORRECTABLE => IoCmd::WriteUncorrectable {
            nsid,
            slba: sqe.slba(),
            nlb: nlb(sqe),
        },
        io_op::WRITE_ZEROES => IoCmd::WriteZeroes {
            nsid,
            slba: sqe.slba(),
            nlb: nlb(sqe),
            fua: sqe.cdw12 & nvm_cmd::FUA != 0,
            deac: sqe.cdw12 & nvm_cmd::DEAC != 0,
            pi: pi_fields(sqe),
        },
        io_op::DATASET_MANAGEMENT => IoCmd::DatasetManagement {
            nsid,
            nr: (sqe.cdw10 & 0xff) as u16 + 1,
            ad: sqe.cdw11 & nvm_cmd::DSM_AD != 0,
            dptr: DataPtr::of(sqe),
        },
        io_op::VERIFY => IoCmd::Verify {
            nsid,
            slba: sqe.slba(),
            nlb: nlb(sqe),
            pi: pi_fields(sqe),
        },
        io_op::COPY => IoCmd::Copy(CopyCmd {
            nsid,
            sdlba: sqe.slba(),
            nr: sqe.cdw12 as u8,
            format: ((sqe.cdw12 >> 8) & 0xf) as u8,
            prinfor: ((sqe.cdw12 >> nvm_cmd::PRINFOR_SHIFT) & 0xf) as u8,
            prinfow: ((sqe.cdw12 >> nvm_cmd::PRINFO_SHIFT) & 0xf) as u8,
            dest_pi: pi_fields(sqe),
            fua: sqe.cdw12 & nvm_cmd::FUA != 0,
            dptr: DataPtr::of(sqe),
        }),
        io_op::ZONE_MGMT_SEND => IoCmd::ZoneSend(ZoneSendCmd {
            nsid,
            slba: sqe.slba(),
            action: ZoneAction::from_code(sqe.cdw13 as u8),
            select_all: sqe.cdw13 & (1 << 8) != 0,
            dptr: DataPtr::of(sqe),
        }),
        io_op::ZONE_MGMT_RECV => IoCmd::ZoneReceive(ZoneReceiveCmd {
            nsid,
            slba: sqe.slba(),
            bytes: (sqe.cdw12 as u64 + 1) * 4,
            action: match sqe.cdw13 as u8 {
                0 => Some(ZoneReceiveAction::Report),
                1 => Some(ZoneReceiveAction::ExtendedReport),
                _ => None,
            },
            filter: ZoneFilter::from_code((sqe.cdw13 >> 8) as u8),
            partial: sqe.cdw13 & (1 << 16) != 0,
            dptr: DataPtr::of(sqe),
        }),
        io_op::ZONE_APPEND => IoCmd::ZoneAppend(rw(sqe)),
        op => return Ok(IoCmd::Unknown(op)),
    };
    check_fuse(sqe)?;
    Ok(cmd)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIELD: u16 = 0x4002;

    fn sqe(opcode: u8) -> Sqe {
        Sqe {
            opcode,
            cid: 0x1234,
            nsid: 3,
            dptr1: 0x1000,
            dptr2: 0x2000,
            ..Default::default()
        }
    }

    const PRP: DataPtr = DataPtr::Prp {
        prp1: 0x1000,
        prp2: 0x2000,
    };

    #[test]
    fn data_pointer_follows_psdt() {
        let mut s = sqe(io_op::READ);
        assert!(matches!(decode_io(&s), Ok(IoCmd::Read(c)) if c.dptr == PRP));
        for psdt in [1, 2] {
            s.psdt = psdt;
            let want = DataPtr::Sgl {
                dptr1: 0x1000,
                dptr2: 0x2000,
            };
            assert!(matches!(decode_io(&s), Ok(IoCmd::Read(c)) if c.dptr == want));
        }
        s.psdt = 3;
        assert!(matches!(decode_io(&s), Ok(IoCmd::Read(c)) if c.dptr == DataPtr::Reserved));
        // PSDT 11b fails only when data moves: a Flush decodes.
        let mut f = sqe(io_op::FLUSH);
        f.psdt = 3;
        assert_eq!(decode_io(&f), Ok(IoCmd::Flush { nsid: 3 }));
    }

    #[test]
    fn read_write_compare() {
        let mut s = sqe(io_op::WRITE);
        s.cdw10 = 0x10;
        s.cdw11 = 0x2;
        s.cdw12 = (1 << 30) | (1 << 31) | (0xd << 26) | 0x7;
        s.cdw3 = 0xffff_0012;
        s.cdw14 = 0x3456_789a;
        s.cdw15 = 0xf0f0_1234;
        s.mptr = 0x5000;
        let want = RwCmd {
            nsid: 3,
            slba: (2 << 32) | 0x10,
            nlb: 8,
            fua: true,
            dptr: PRP,
            mptr: MetaPtr {
                addr: 0x5000,
                sgl: false,
            },
            // PRINFO 0xd; the reference tag's bits 47:32 from CDW3 15:0.
            pi: PiFields {
                prinfo: 0xd,
                ilbrt: 0x0012_3456_789a,
                lbat: 0x1234,
                lbatm: 0xf0f0,
            },
        };
        assert_eq!(decode_io(&s), Ok(IoCmd::Write(want)));
        s.opcode = io_op::READ;
        s.cdw12 = 0xffff;
        let want = RwCmd {
            nlb: 0x10000,
            fua: false,
            pi: PiFields {
                prinfo: 0,
                ..want.pi
            },
            ..want
        };
        assert_eq!(decode_io(&s), Ok(IoCmd::Read(want)));
        assert_eq!(
            decode_io(&s).unwrap().block(),
            Some(((2 << 32) | 0x10, 0x10000))
        );
        s.opcode = io_op::COMPARE;
        assert_eq!(decode_io(&s), Ok(IoCmd::Compare(want)));
        assert_eq!(decode_io(&s).unwrap().kind(), OpKind::Compare);
    }

    #[test]
    fn write_zeroes_verify_flush_dsm() {
        let mut s = sqe(io_op::WRITE_ZEROES);
        s.cdw10 = 5;
        s.cdw12 = (1 << 25) | 3;
        let c = decode_io(&s).unwrap();
        assert_eq!(
            c,
            IoCmd::WriteZeroes {
                nsid: 3,
                slba: 5,
                nlb: 4,
                fua: false,
                deac: true,
                pi: PiFields::default(),
            }
        );
        assert_eq!((c.block(), c.kind()), (Some((5, 4)), OpKind::WriteZeroes));
        s.cdw12 = 1 << 30;
        assert!(matches!(
            decode_io(&s),
            Ok(IoCmd::WriteZeroes {
                fua: true,
                deac: false,
                nlb: 1,
                ..
            })
        ));
        s.opcode = io_op::VERIFY;
        let c = decode_io(&s).unwrap();
        assert_eq!(
            c,
            IoCmd::Verify {
                nsid: 3,
                slba: 5,
                nlb: 1,
                pi: PiFields::default(),
            }
        );
        assert_eq!((c.block(), c.kind()), (Some((5, 1)), OpKind::Verify));

        let c = decode_io(&sqe(io_op::FLUSH)).unwrap();
        assert_eq!((c.block(), c.kind()), (None, OpKind::Flush));

        let mut s = sqe(io_op::DATASET_MANAGEMENT);
        s.cdw10 = 0xff;
        s.cdw11 = 0x4 | 0x3;
        let c = decode_io(&s).unwrap();
        assert_eq!(
            c,
            IoCmd::DatasetManagement {
                nsid: 3,
                nr: 256,
                ad: true,
                dptr: PRP
            }
        );
        assert_eq!((c.block(), c.kind()), (None, OpKind::Discard));
        s.cdw11 = 0x3;
        assert!(matches!(
            decode_io(&s),
            Ok(IoCmd::DatasetManagement { ad: false, .. })
        ));
    }

    #[test]
    fn copy_fields() {
        let mut s = sqe(io_op::COPY);
        s.cdw10 = 100;
        s.cdw11 = 1;
        // NR 7, format 2, PRINFOR 0x5, PRINFOW 0xa, FUA, LR.
        s.cdw12 = 7 | (2 << 8) | (0x5 << 12) | (0xa << 26) | (1 << 30) | (1 << 31);
        let c = decode_io(&s).unwrap();
        let want = CopyCmd {
            nsid: 3,
            sdlba: (1 << 32) | 100,
            nr: 7,
            format: 2,
            prinfor: 5,
            prinfow: 0xa,
            dest_pi: PiFields {
                prinfo: 0xa,
                ..PiFields::default()
            },
            fua: true,
            dptr: PRP,
        };
        assert_eq!(c, IoCmd::Copy(want));
        assert_eq!((c.block(), c.kind()), (None, OpKind::Copy));
        assert_eq!(want.ranges(), 8);
        s.cdw12 = 0xff | (0xf << 8);
        assert!(matches!(
            decode_io(&s),
            Ok(IoCmd::Copy(CopyCmd {
                nr: 0xff,
                format: 0xf,
                fua: false,
                ..
            }))
        ));
    }

    #[test]
    fn zone_management_commands_name_their_action() {
        let mut s = sqe(io_op::ZONE_MGMT_SEND);
        s.cdw10 = 0x800;
        s.cdw11 = 1;
        s.cdw13 = 0x04 | (1 << 8);
        let c = decode_io(&s).unwrap();
        let want = ZoneKey {
            action: "reset",
            slba: (1 << 32) | 0x800,
            select_all: true,
            partial: false,
        };
        assert_eq!((c.zone(), c.block()), (Some(want), None));
        s.cdw13 = 0x77;
        assert_eq!(
            decode_io(&s).unwrap().zone().map(|z| z.action),
            Some("reserved")
        );
        let mut s = sqe(io_op::ZONE_MGMT_RECV);
        s.cdw13 = 1 | (1 << 16);
        let z = decode_io(&s).unwrap().zone().unwrap();
        assert_eq!(
            (z.action, z.partial, z.select_all),
            ("extended-report", true, false)
        );
        assert_eq!(decode_io(&sqe(io_op::READ)).unwrap().zone(), None);
    }

    #[test]
    fn unknown_opcodes() {
        let c = decode_io(&sqe(0x7f)).unwrap();
        assert_eq!(
            (c, c.kind(), c.block()),
            (IoCmd::Unknown(0x7f), OpKind::Other, None)
        );
        assert_eq!(decode_admin(&sqe(0x7f)), Ok(AdminCmd::Unknown(0x7f)));
        // Invalid Opcode wins over FUSE, as in QEMU.
        let mut s = sqe(0x7f);
        s.fuse = 1;
        assert_eq!(decode_io(&s), Ok(IoCmd::Unknown(0x7f)));
        assert_eq!(decode_admin(&s), Ok(AdminCmd::Unknown(0x7f)));
    }

    #[test]
    fn fuse_is_refused_on_every_known_opcode() {
        let io = IO_OPCODES;
        let admin = ADMIN_OPCODES;
        for fuse in 1..=3 {
            for op in io {
                let mut s = sqe(op);
                s.fuse = fuse;
                assert_eq!(decode_io(&s).map_err(|e| e.0), Err(FIELD), "io {op:#x}");
                s.fuse = 0;
                assert!(decode_io(&s).is_ok());
            }
            for op in admin {
                let mut s = sqe(op);
                s.fuse = fuse;
                assert_eq!(
                    decode_admin(&s).map_err(|e| e.0),
                    Err(FIELD),
                    "admin {op:#x}"
                );
                s.fuse = 0;
                assert!(decode_admin(&s).is_ok(), "admin {op:#x}");
            }
        }
    }

    #[test]
    fn queue_commands() {
        let mut s = sqe(admin_op::CREATE_IO_CQ);
        s.cdw10 = (63 << 16) | 2;
        s.cdw11 = (5 << 16) | 3;
        assert_eq!(
            decode_admin(&s),
            Ok(AdminCmd::CreateIoCq(CqParams {
                qid: 2,
                size: 64,
                base: 0x1000,
                contiguous: true,
                ien: true,
                vector: 5
            }))
        );
        s.opcode = admin_op::CREATE_IO_SQ;
        s.cdw11 = (4 << 16) | (2 << 1);
        assert_eq!(
            decode_admin(&s),
            Ok(AdminCmd::CreateIoSq(SqParams {
                qid: 2,
                size: 64,
                base: 0x1000,
                contiguous: false,
                cqid: 4
            }))
        );
        s.opcode = admin_op::DELETE_IO_SQ;
        assert_eq!(decode_admin(&s), Ok(AdminCmd::DeleteIoSq { qid: 2 }));
        s.opcode = admin_op::DELETE_IO_CQ;
        assert_eq!(decode_admin(&s), Ok(AdminCmd::DeleteIoCq { qid: 2 }));
        s.opcode = admin_op::ABORT;
        s.cdw10 = (0x55 << 16) | 1;
        assert_eq!(decode_admin(&s), Ok(AdminCmd::Abort { sqid: 1, cid: 0x55 }));
        let c = decode_admin(&s).unwrap();
        assert_eq!(c.key(), None);
    }

    #[test]
    fn identify_fields_and_key() {
        let mut s = sqe(admin_op::IDENTIFY);
        s.cdw10 = (0x21 << 16) | 0x05;
        s.cdw11 = (2 << 24) | 0x77;
        let c = decode_admin(&s).unwrap();
        assert_eq!(
            c,
            AdminCmd::Identify(IdentifyCmd {
                nsid: 3,
                cns: 5,
                cntid: 0x21,
                cnssid: 0x77,
                csi: 2,
                dptr: PRP
            })
        );
        assert_eq!(
            c.key(),
            Some(AdminKey::Identify {
                cns: 5,
                cntid: 0x21,
                csi: 2
            })
        );
    }

    #[test]
    fn log_page_fields_and_offset_alignment() {
        let mut s = sqe(admin_op::GET_LOG_PAGE);
        s.cdw10 = (0x3ff << 16) | (1 << 15) | (0x2a << 8) | 0x04;
        s.cdw11 = (0x9 << 16) | 0x1;
        s.cdw12 = 8;
        s.cdw13 = 1;
        s.cdw14 = 0x3 << 24;
        let c = decode_admin(&s).unwrap();
        let want = LogPageCmd {
            nsid: 3,
            lid: 4,
            lsp: 0x2a,
            rae: true,
            numd: 0x1_03ff + 1,
            lsi: 9,
            offset: (1 << 32) | 8,
            csi: 3,
            dptr: PRP,
        };
        assert_eq!(c, AdminCmd::GetLogPage(want));
        assert_eq!(want.len(), (0x1_03ff + 1) * 4);
        assert_eq!(c.key(), Some(AdminKey::LogPage { lid: 4 }));
        s.cdw10 = 0x02;
        s.cdw11 = 0;
        assert!(matches!(
            decode_admin(&s),
            Ok(AdminCmd::GetLogPage(LogPageCmd {
                numd: 1,
                rae: false,
                lsp: 0,
                ..
            }))
        ));
        s.cdw12 = 6;
        assert_eq!(decode_admin(&s).map_err(|e| e.0), Err(FIELD));
    }

    #[test]
    fn features_fields_and_sel() {
        let mut s = sqe(admin_op::SET_FEATURES);
        s.cdw10 = (1 << 31) | 0x16;
        s.cdw11 = 0xabcd;
        let c = decode_admin(&s).unwrap();
        assert_eq!(
            c,
            AdminCmd::SetFeatures(SetFeaturesCmd {
                nsid: 3,
                fid: 0x16,
                save: true,
                value: 0xabcd,
                dptr: PRP
            })
        );
        assert_eq!(c.key(), Some(AdminKey::Feature { fid: 0x16 }));
        s.opcode = admin_op::GET_FEATURES;
        let sels = [
            FeatureSel::Current,
            FeatureSel::Default,
            FeatureSel::Saved,
            FeatureSel::SupportedCapabilities,
        ];
        for (v, sel) in sels.into_iter().enumerate() {
            s.cdw10 = ((v as u32) << 8) | 0x04;
            let c = decode_admin(&s).unwrap();
            assert_eq!(
                c,
                AdminCmd::GetFeatures(GetFeaturesCmd {
                    nsid: 3,
                    fid: 4,
                    sel,
                    value: 0xabcd,
                    dptr: PRP
                })
            );
            assert_eq!(c.key(), Some(AdminKey::Feature { fid: 4 }));
        }
        for v in 4..8 {
            s.cdw10 = (v << 8) | 0x04;
            assert_eq!(decode_admin(&s).map_err(|e| e.0), Err(FIELD));
        }
    }

    #[test]
    fn aer_keep_alive_dbbuf() {
        assert_eq!(
            decode_admin(&sqe(admin_op::ASYNC_EVENT_REQUEST)),
            Ok(AdminCmd::AsyncEventRequest { cid: 0x1234 })
        );
        assert_eq!(
            decode_admin(&sqe(admin_op::KEEP_ALIVE)),
            Ok(AdminCmd::KeepAlive)
        );
        let mut s = sqe(admin_op::DOORBELL_BUFFER_CONFIG);
        assert_eq!(
            decode_admin(&s),
            Ok(AdminCmd::DoorbellBufferConfig {
                shadow: 0x1000,
                event_idx: 0x2000
            })
        );
        s.psdt = 1;
        assert_eq!(decode_admin(&s).map_err(|e| e.0), Err(FIELD));
    }
}
