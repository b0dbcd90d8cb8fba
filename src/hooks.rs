//! The experiment hooks: the one interface between the front ends (the NVMe model, the
//! virtio-blk transport) and experiment control (counters, faults, latency, records).
//!
//! A front end asks, for every operation, whether a fault is injected ([`Hooks::inject`])
//! and how long its completion is delayed ([`Hooks::delay`]), and reports every
//! completion it posts ([`Hooks::completed`]). Operations are named by a
//! transport-neutral [`OpKind`]; the front end's own opcode and status travel along so
//! that records stay exact. This module holds only types and the trait: no sockets, no
//! serde, no state. `src/experiment/` implements it.

#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

/// Which front end an operation came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Transport {
    /// The NVMe controller (over vfio-user).
    Nvme,
    /// A virtio-blk disk (over vhost-user-blk).
    VirtioBlk,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Transport::Nvme => "nvme",
            Transport::VirtioBlk => "virtio-blk",
        }
    }

    /// The front end [`Transport::name`] names.
    pub fn by_name(name: &str) -> Option<Transport> {
        [Transport::Nvme, Transport::VirtioBlk]
            .into_iter()
            .find(|t| t.name() == name)
    }
}

/// What an operation does, whatever front end it came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OpKind {
    Read,
    Write,
    Flush,
    /// Deallocate (NVMe Dataset Management with AD, virtio-blk DISCARD).
    Discard,
    WriteZeroes,
    Compare,
    Verify,
    Copy,
    /// NVMe Write Uncorrectable (mark blocks unreadable).
    WriteUncorrectable,
    /// NVMe Zone Management Send (zone actions).
    ZoneSend,
    /// NVMe Zone Management Receive (zone reports).
    ZoneReceive,
    /// NVMe Zone Append (a write whose LBA the device picks).
    ZoneAppend,
    /// virtio-blk GET_ID.
    GetId,
    /// An NVMe admin command.
    Admin,
    /// Anything else (an unknown or unsupported opcode).
    Other,
}

impl OpKind {
    /// Every kind, in a fixed order (for tables indexed by kind).
    pub const ALL: [OpKind; 15] = [
        OpKind::Read,
        OpKind::Write,
        OpKind::Flush,
        OpKind::Discard,
        OpKind::WriteZeroes,
        OpKind::Compare,
        OpKind::Verify,
        OpKind::Copy,
        OpKind::WriteUncorrectable,
        OpKind::ZoneSend,
        OpKind::ZoneReceive,
        OpKind::ZoneAppend,
        OpKind::GetId,
        OpKind::Admin,
        OpKind::Other,
    ];

    /// Position in [`OpKind::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        match self {
            OpKind::Read => "read",
            OpKind::Write => "write",
            OpKind::Flush => "flush",
            OpKind::Discard => "discard",
            OpKind::WriteZeroes => "write-zeroes",
            OpKind::Compare => "compare",
            OpKind::Verify => "verify",
            OpKind::Copy => "copy",
            OpKind::WriteUncorrectable => "write-uncorrectable",
            OpKind::ZoneSend => "zone-mgmt-send",
            OpKind::ZoneReceive => "zone-mgmt-recv",
            OpKind::ZoneAppend => "zone-append",
            OpKind::GetId => "get-id",
            OpKind::Admin => "admin",
            OpKind::Other => "other",
        }
    }

    pub fn by_name(name: &str) -> Option<OpKind> {
        OpKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// An operation about to run, as faults and latencies match it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Op {
    pub transport: Transport,
    pub kind: OpKind,
    /// The front end's own opcode (NVMe opcode; virtio-blk request type).
    pub opcode: u8,
    /// Namespace id of the volume it targets (for Copy: the destination); 0 if none.
    pub nsid: u32,
}

/// An injection decided for one operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Injection {
    /// The NVMe status field to complete with (DNR in bit 14, SCT 10:8, SC 7:0). The
    /// virtio-blk front end completes any injection with VIRTIO_BLK_S_IOERR.
    pub status: u16,
    /// Copy only: run ranges 0..k, then fail with `status` and Dword 0 = k.
    pub copy_range: Option<u32>,
}

/// One source range of a Copy, as records show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeRecord {
    pub nsid: u32,
    pub slba: u64,
    /// Number of logical blocks, 1-based.
    pub nlb: u32,
}

/// What a Copy asked for and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyDone {
    pub sdlba: u64,
    /// Source range descriptor format.
    pub format: u8,
    /// NR as in CDW12 (0's based).
    pub nr: u8,
    /// The ranges as parsed (empty if the list was never read).
    pub ranges: Vec<RangeRecord>,
    /// Blocks really written to the destination.
    pub blocks_copied: u64,
}

impl CopyDone {
    /// Total blocks of the parsed ranges.
    pub fn total_blocks(&self) -> u64 {
        self.ranges.iter().map(|r| r.nlb as u64).sum()
    }
}

/// What a Zone Management Send or Receive asked for: the trace's `zone_action`, `slba`,
/// `select_all` and `partial`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZoneKey {
    /// The action's name (`reset`, `report`, ...), `reserved` for a reserved code.
    pub action: &'static str,
    /// The command's SLBA (CDW11:CDW10).
    pub slba: u64,
    /// Zone Management Send's Select All (CDW13 bit 8).
    pub select_all: bool,
    /// Zone Management Receive's Partial Report (CDW13 bit 16).
    pub partial: bool,
}

/// The field that says what an NVMe admin command asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminKey {
    /// Set Features / Get Features: Feature Identifier (CDW10 7:0).
    Feature { fid: u8 },
    /// Identify: CNS (CDW10 7:0), CNTID (CDW10 31:16), CSI (CDW11 31:24).
    Identify { cns: u8, cntid: u16, csi: u8 },
    /// Get Log Page: Log Page Identifier (CDW10 7:0).
    LogPage { lid: u8 },
    /// Namespace Management (0 create, 1 delete) / Namespace Attachment (0 attach,
    /// 1 detach): SEL (CDW10 3:0).
    Select { sel: u8 },
    /// Format NVM: the LBA format index and the secure erase setting.
    Format { lbaf: u8, ses: u8 },
}

/// One completed operation, reported after its completion was posted.
#[derive(Debug, Clone)]
pub struct Completed {
    pub transport: Transport,
    pub kind: OpKind,
    /// Queue (NVMe submission queue id, 0 = admin; virtio-blk virtqueue index).
    pub queue: u16,
    /// NVMe command id; virtio-blk descriptor chain head.
    pub tag: u16,
    pub opcode: u8,
    pub nsid: u32,
    /// Block operations: first LBA and 1-based block count.
    pub block: Option<(u64, u32)>,
    pub copy: Option<CopyDone>,
    pub admin: Option<AdminKey>,
    /// Zone Management Send / Receive: what they asked for.
    pub zone: Option<ZoneKey>,
    /// NVMe status field without the phase tag; for virtio-blk the status byte
    /// (0 OK, 1 IOERR, 2 UNSUPP).
    pub status: u16,
    pub dw0: u32,
    /// NVMe completion Dword 1 (Zone Append: the high half of the LBA it wrote at).
    pub dw1: u32,
    /// When the operation was fetched (taken only while [`Hooks::observing`]).
    pub fetched: Option<Instant>,
}

impl Completed {
    /// True if the operation succeeded.
    pub fn ok(&self) -> bool {
        match self.transport {
            Transport::Nvme => self.status & 0x7ff == 0,
            Transport::VirtioBlk => self.status == 0,
        }
    }

    /// Blocks the latency model charges for.
    pub fn delay_blocks(&self) -> u64 {
        match (&self.block, &self.copy) {
            (Some((_, nlb)), _) => *nlb as u64,
            (None, Some(c)) => c.total_blocks(),
            _ => 0,
        }
    }
}

/// What experiment control offers a front end. Every method must be cheap when nothing
/// is configured and must never block on I/O.
pub trait Hooks: Send + Sync {
    /// True while someone records completions: front ends then take timestamps.
    fn observing(&self) -> bool {
        false
    }

    /// A fault injected into this operation, if any (counts the match).
    fn inject(&self, _op: &Op) -> Option<Injection> {
        None
    }

    /// How long to delay this operation's completion (`blocks`: its size).
    fn delay(&self, _op: &Op, _blocks: u64) -> Option<Duration> {
        None
    }

    /// An operation completed (its completion is already posted).
    fn completed(&self, _done: Completed) {}
}

/// Hooks that do nothing (tests, tools).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoHooks;

impl Hooks for NoHooks {}
