//! A namespace: NVMe identity (nsid, identifiers, Copy limits) over a shared block
//! [`Volume`]. The volume is opened by the wiring and may be shown by other front ends
//! too; the namespace only answers NVMe's questions about it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use super::protection::MetaFormat;
use super::spec::{status, Status, NSID_ALL};
use crate::block::Volume;
use crate::sync::read;

/// Current Copy limits of a namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyLimits {
    pub mssrl: u16,
    pub mcl: u32,
    pub msrc: u8,
}

/// Identifiers reported in the Namespace Identification Descriptor list and Identify
/// Namespace. `None`/zero means: derive (UUID) or report none (NGUID, EUI-64).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NamespaceIds {
    pub uuid: Option<[u8; 16]>,
    pub nguid: Option<[u8; 16]>,
    pub eui64: Option<[u8; 8]>,
}

pub struct Namespace {
    pub nsid: u32,
    volume: Arc<Volume>,
    ids: NamespaceIds,
    /// The limits the namespace was created with.
    initial_limits: CopyLimits,
    /// Current Copy limits, packed so that one load sees one consistent set:
    /// MSSRL in bits 15:0, MCL in 47:16, MSRC in 55:48. Changed at run time by
    /// `set_copy_limits`.
    copy_limits: AtomicU64,
    /// Metadata and protection information (none by default); the volume holds
    /// `meta.ms` bytes of metadata per block.
    meta: MetaFormat,
}

fn pack(l: CopyLimits) -> u64 {
    l.mssrl as u64 | (l.mcl as u64) << 16 | (l.msrc as u64) << 48
}

fn unpack(v: u64) -> CopyLimits {
    CopyLimits {
        mssrl: v as u16,
        mcl: (v >> 16) as u32,
        msrc: (v >> 48) as u8,
    }
}

impl std::fmt::Debug for Namespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Namespace")
            .field("nsid", &self.nsid)
            .field("volume", &self.volume)
            .finish()
    }
}

impl Namespace {
    /// A namespace over `volume` (whose block size is the LBA data size).
    pub fn new(nsid: u32, volume: Arc<Volume>, ids: NamespaceIds, limits: CopyLimits) -> Namespace {
        Namespace {
            nsid,
            volume,
            ids,
            initial_limits: limits,
            copy_limits: AtomicU64::new(pack(limits)),
            meta: MetaFormat::default(),
        }
    }

    /// The same namespace formatted with metadata and protection information `meta`;
    /// its volume must have been made with `meta.ms` bytes of metadata per block.
    pub fn with_meta(mut self, meta: MetaFormat) -> Namespace {
        debug_assert_eq!(self.volume.meta_size(), meta.ms as u64);
        self.meta = meta;
        self
    }

    /// How the namespace's blocks carry metadata and protection information.
    pub fn meta(&self) -> &MetaFormat {
        &self.meta
    }

    /// The Copy limits in force now (Identify Namespace and the Copy checks read these).
    pub fn copy_limits(&self) -> CopyLimits {
        unpack(self.copy_limits.load(Ordering::Acquire))
    }

    /// The Copy limits the namespace was created with.
    pub fn initial_copy_limits(&self) -> CopyLimits {
        self.initial_limits
    }

    /// Replaces the Copy limits (all three at once). The caller validates them.
    pub fn set_copy_limits(&self, l: CopyLimits) {
        self.copy_limits.store(pack(l), Ordering::Release);
    }

    /// The block volume behind the namespace.
    pub fn volume(&self) -> &Arc<Volume> {
        &self.volume
    }

    /// Logical block size in bytes.
    pub fn block_size(&self) -> u64 {
        self.volume.block_size()
    }

    /// LBADS: log2 of the logical block size.
    pub fn lbads(&self) -> u8 {
        self.block_size().trailing_zeros() as u8
    }

    /// Namespace size in logical blocks.
    pub fn nsze(&self) -> u64 {
        self.volume.blocks()
    }

    pub fn readonly(&self) -> bool {
        self.volume.read_only()
    }

    /// The byte store (tests and diagnostics).
    pub fn store(&self) -> &dyn crate::block::Store {
        self.volume.store()
    }

    /// True if `nlb` blocks from `slba` lie inside the namespace.
    pub fn in_range(&self, slba: u64, nlb: u64) -> bool {
        self.volume.in_range(slba, nlb)
    }

    /// The UUID reported in the descriptor list: the configured one, or one derived from
    /// `serial` and the nsid so that it is stable across runs and differs per namespace.
    pub fn uuid(&self, serial: &str) -> [u8; 16] {
        if let Some(u) = self.ids.uuid {
            return u;
        }
        let mut h1: u64 = 0xcbf2_9ce4_8422_2325;
        let mut h2: u64 = 0x8422_2325_cbf2_9ce4;
        for b in serial.bytes().chain(self.nsid.to_le_bytes()) {
            h1 = (h1 ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
            h2 = (h2 ^ b as u64)
                .wrapping_mul(0x0000_0100_0000_01b3)
                .rotate_left(7);
        }
        let mut u = [0u8; 16];
        u[..8].copy_from_slice(&h1.to_be_bytes());
        u[8..].copy_from_slice(&h2.to_be_bytes());
        u[6] = (u[6] & 0x0f) | 0x40; // version 4 layout
        u[8] = (u[8] & 0x3f) | 0x80; // RFC 4122 variant
        u
    }

    pub fn nguid(&self) -> [u8; 16] {
        self.ids.nguid.unwrap_or([0; 16])
    }

    pub fn eui64(&self) -> [u8; 8] {
        self.ids.eui64.unwrap_or([0; 8])
    }
}

/// The attached namespaces of a controller, by nsid.
pub(crate) struct NamespaceTable(RwLock<BTreeMap<u32, Arc<Namespace>>>);

impl NamespaceTable {
    pub fn new(map: BTreeMap<u32, Arc<Namespace>>) -> NamespaceTable {
        NamespaceTable(RwLock::new(map))
    }

    /// The namespace with this id, if attached.
    pub fn get(&self, nsid: u32) -> Option<Arc<Namespace>> {
        read(&self.0).get(&nsid).cloned()
    }

    /// All attached namespaces, by increasing nsid.
    pub fn all(&self) -> Vec<Arc<Namespace>> {
        read(&self.0).values().cloned().collect()
    }

    /// The namespace a command that addresses one namespace names (I/O commands, and the
    /// source namespace of a Copy descriptor), by the NSID rules of NVMe Base 2.x
    /// §3.2.1 (table in docs/hostile-host.md):
    /// - 0, or above NN and not the broadcast value: an invalid NSID, Invalid Namespace
    ///   or Format;
    /// - 1..=NN without an active namespace (an inactive NSID): Invalid Field in Command;
    /// - FFFFFFFFh where the command does not take the broadcast value: Invalid Field in
    ///   Command (callers that do take it, Flush, handle it before asking).
    pub fn lookup(&self, nsid: u32) -> Result<Arc<Namespace>, Status> {
        if let Some(ns) = self.get(nsid) {
            return Ok(ns);
        }
        if nsid == NSID_ALL {
            return Err(status::INVALID_FIELD.dnr());
        }
        if nsid == 0 || nsid > self.nn() {
            return Err(status::INVALID_NAMESPACE.dnr());
        }
        Err(status::INVALID_FIELD.dnr())
    }

    /// Identify Controller NN: the largest valid nsid (at least 256).
    pub fn nn(&self) -> u32 {
        let max = read(&self.0).keys().next_back().copied().unwrap_or(0);
        max.max(256)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(nsid: u32, size: u64, bs: u64, limits: CopyLimits) -> Namespace {
        let v = Arc::new(Volume::memory("t", size, bs, false).unwrap());
        Namespace::new(nsid, v, NamespaceIds::default(), limits)
    }

    const L: CopyLimits = CopyLimits {
        mssrl: 7,
        mcl: 0x1234_5678,
        msrc: 200,
    };

    #[test]
    fn geometry_comes_from_the_volume() {
        let n = ns(1, 1 << 20, 512, L);
        assert_eq!(n.nsze(), 2048);
        assert_eq!(n.lbads(), 9);
        assert!(n.in_range(0, n.nsze()));
        assert!(!n.in_range(1, n.nsze()));
        assert!(!n.in_range(u64::MAX, 2));
        assert_eq!(ns(1, 1 << 16, 4096, L).lbads(), 12);
    }

    #[test]
    fn copy_limits_start_from_the_config_and_change_together() {
        let n = ns(1, 1 << 20, 512, L);
        assert_eq!(n.copy_limits(), L);
        let m = CopyLimits {
            mssrl: u16::MAX,
            mcl: u32::MAX,
            msrc: 0,
        };
        n.set_copy_limits(m);
        assert_eq!(n.copy_limits(), m);
        assert_eq!(n.initial_copy_limits(), L, "the initial value is kept");
    }

    #[test]
    fn derived_uuid_is_stable_and_differs_per_namespace() {
        let (a, b) = (ns(3, 1 << 16, 512, L), ns(4, 1 << 16, 512, L));
        let u = a.uuid("SN");
        assert_eq!(u, a.uuid("SN"));
        assert_ne!(u, b.uuid("SN"));
        assert_eq!(u[6] >> 4, 4);
    }
}
