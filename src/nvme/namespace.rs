//! A namespace: NVMe identity (nsid, identifiers, LBA formats, Copy limits) over a
//! shared block [`Volume`]. The volume is opened by the wiring (or made when a host
//! creates the namespace) and may be shown by other front ends too; the namespace only
//! answers NVMe's questions about it. The table of a controller's namespaces is in
//! [`super::ns_table`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::protection::MetaFormat;
use super::zone_file::ZoneFile;
use super::zones::{ZoneGeometry, Zones};
use crate::block::Volume;

/// One LBA format: the data size (LBADS, a power of two) and metadata bytes per block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LbaFormat {
    pub lbads: u8,
    pub ms: u16,
}

impl LbaFormat {
    pub const fn new(block_size: u32, ms: u16) -> LbaFormat {
        LbaFormat {
            lbads: block_size.trailing_zeros() as u8,
            ms,
        }
    }

    pub fn block_size(&self) -> u64 {
        1 << self.lbads
    }

    /// Data and metadata bytes of one block.
    pub fn bytes_per_block(&self) -> u64 {
        self.block_size() + self.ms as u64
    }
}

/// The LBA formats every namespace offers unless `--lbafs` says otherwise: QEMU's
/// eight (512 and 4096 bytes, each with 0, 8, 16 and 64 bytes of metadata).
pub const DEFAULT_LBA_FORMATS: [LbaFormat; 8] = [
    LbaFormat::new(512, 0),
    LbaFormat::new(512, 8),
    LbaFormat::new(512, 16),
    LbaFormat::new(512, 64),
    LbaFormat::new(4096, 0),
    LbaFormat::new(4096, 8),
    LbaFormat::new(4096, 16),
    LbaFormat::new(4096, 64),
];

/// Identify Namespace has room for 64 LBA formats (NLBAF is 0's based, at most 63).
pub const MAX_LBA_FORMATS: usize = 64;

/// Where a namespace came from, which decides what deleting it does to its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Given with `--ns`; `owned` (`--ns ...,owned=on`): its file is removed on delete,
    /// else kept.
    Configured { owned: bool },
    /// Created by Namespace Management (or the control socket); its file, if any, is
    /// removed on delete.
    Created,
}

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
    /// The LBA formats offered (Identify Namespace LBAF0..), and the one in use.
    formats: Arc<[LbaFormat]>,
    format_index: u8,
    origin: Origin,
    /// The zones of a zoned namespace (Zoned Namespace command set); `None`: NVM.
    zones: Option<Arc<Zones>>,
    /// Where the zones are kept across restarts (file-backed zoned namespaces).
    zone_file: Option<Arc<ZoneFile>>,
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
    /// It offers one LBA format, its own, until [`Namespace::with_formats`].
    pub fn new(nsid: u32, volume: Arc<Volume>, ids: NamespaceIds, limits: CopyLimits) -> Namespace {
        let own = LbaFormat {
            lbads: volume.block_size().trailing_zeros() as u8,
            ms: volume.meta_size() as u16,
        };
        Namespace {
            nsid,
            volume,
            ids,
            initial_limits: limits,
            copy_limits: AtomicU64::new(pack(limits)),
            meta: MetaFormat::default(),
            formats: Arc::from([own]),
            format_index: 0,
            origin: Origin::Configured { owned: false },
            zones: None,
            zone_file: None,
        }
    }

    /// The same namespace formatted with metadata and protection information `meta`;
    /// its volume must have been made with `meta.ms` bytes of metadata per block.
    pub fn with_meta(mut self, meta: MetaFormat) -> Namespace {
        debug_assert_eq!(self.volume.meta_size(), meta.ms as u64);
        self.meta = meta;
        self
    }

    /// The same namespace offering `formats`; its own format is added at the end when
    /// it is not one of them (and there is room).
    pub fn with_formats(mut self, formats: &Arc<[LbaFormat]>) -> Namespace {
        let own = self.lba_format();
        match formats.iter().position(|f| *f == own) {
            Some(i) => {
                self.formats = formats.clone();
                self.format_index = i as u8;
            }
            None if formats.len() < MAX_LBA_FORMATS => {
                let mut v = formats.to_vec();
                v.push(own);
                self.format_index = (v.len() - 1) as u8;
                self.formats = Arc::from(v);
            }
            None => {}
        }
        self
    }

    /// The same namespace with `origin` (what deleting it does to its file).
    pub fn with_origin(mut self, origin: Origin) -> Namespace {
        self.origin = origin;
        self
    }

    /// The same namespace, zoned with `geo` (every zone empty). The namespace ends at
    /// its last whole zone.
    pub fn with_zones(mut self, geo: ZoneGeometry) -> Namespace {
        self.zones = Some(Arc::new(Zones::new(geo)));
        self
    }

    /// The same zoned namespace keeping its zones in the zone file at `path` (created,
    /// or read back into the zones). Errors name the file.
    pub fn with_zone_file(mut self, path: &std::path::Path) -> Result<Namespace, String> {
        if let Some(z) = &self.zones {
            let f = ZoneFile::open(path, z, self.block_size())?;
            self.zone_file = Some(Arc::new(f));
        }
        Ok(self)
    }

    /// Writes the zones changed since the last save to the zone file, durably (nothing
    /// to do without one).
    pub fn save_zones(&self) -> std::io::Result<()> {
        match (&self.zones, &self.zone_file) {
            (Some(z), Some(f)) => f.save(z).inspect_err(|e| {
                log::error!(
                    "namespace {}: saving its zones to {} failed: {e}",
                    self.nsid,
                    f.path().display()
                )
            }),
            _ => Ok(()),
        }
    }

    /// The zones, if the namespace is zoned.
    pub fn zones(&self) -> Option<&Arc<Zones>> {
        self.zones.as_ref()
    }

    /// The namespace's command set: CSI 2 (zoned) or 0 (NVM).
    pub fn csi(&self) -> u8 {
        if self.zones.is_some() {
            super::spec::CSI_ZNS
        } else {
            super::spec::CSI_NVM
        }
    }

    pub fn origin(&self) -> Origin {
        self.origin
    }

    /// The format in use.
    pub fn lba_format(&self) -> LbaFormat {
        LbaFormat {
            lbads: self.lbads(),
            ms: self.meta.ms,
        }
    }

    /// The LBA formats offered, in Identify order.
    pub fn formats(&self) -> &[LbaFormat] {
        &self.formats
    }

    /// Index of the format in use (FLBAS).
    pub fn format_index(&self) -> u8 {
        self.format_index
    }

    /// This namespace formatted with format `index` and `meta` over the same store:
    /// same nsid, identifiers, formats and current Copy limits, a new geometry (the
    /// block count is the store's size over the new block and metadata size). The
    /// caller checks `index` and `meta`; the contents are not touched. A zoned
    /// namespace comes back with every zone empty (the caller erases the store).
    pub fn reformatted(
        &self,
        index: u8,
        meta: MetaFormat,
    ) -> Result<Namespace, crate::block::VolumeError> {
        let f = self.formats[index as usize];
        let volume = Arc::new(self.volume.reshaped(f.block_size(), f.ms as u64)?);
        let limits = self.copy_limits();
        Ok(Namespace {
            nsid: self.nsid,
            volume,
            ids: self.ids,
            initial_limits: self.initial_limits,
            copy_limits: AtomicU64::new(pack(limits)),
            meta,
            formats: self.formats.clone(),
            format_index: index,
            origin: self.origin,
            zones: self.zones.as_ref().map(|z| {
                let fresh = Zones::new(*z.geometry());
                fresh.mark_all_dirty();
                Arc::new(fresh)
            }),
            zone_file: self.zone_file.clone(),
        })
    }

    /// Bytes of NVM the namespace takes (its store).
    pub fn allocated_bytes(&self) -> u64 {
        self.volume.store().size()
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
        match &self.zones {
            Some(z) => {
                let g = z.geometry();
                (g.nr_zones as u64 * g.zone_size).min(self.volume.blocks())
            }
            None => self.volume.blocks(),
        }
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
        match &self.zones {
            Some(_) => slba.checked_add(nlb).is_some_and(|end| end <= self.nsze()),
            None => self.volume.in_range(slba, nlb),
        }
    }

    /// The UUID reported in the descriptor list: the configured one, or one derived from
    /// `serial` and the nsid so that it is stable across runs and differs per namespace.
    pub fn uuid(&self, serial: &str) -> [u8; 16] {
        match self.ids.uuid {
            Some(u) => u,
            None => derived_uuid(serial, self.nsid, 0),
        }
    }

    pub fn nguid(&self) -> [u8; 16] {
        self.ids.nguid.unwrap_or([0; 16])
    }

    pub fn eui64(&self) -> [u8; 8] {
        self.ids.eui64.unwrap_or([0; 8])
    }
}

/// A version-4-layout UUID derived from `serial`, `nsid` and `generation` (0 for the
/// namespaces given at start, so theirs stay what they always were; the creation count
/// for namespaces a host creates, so a re-created nsid gets a new UUID).
pub fn derived_uuid(serial: &str, nsid: u32, generation: u64) -> [u8; 16] {
    {
        let mut h1: u64 = 0xcbf2_9ce4_8422_2325;
        let mut h2: u64 = 0x8422_2325_cbf2_9ce4;
        let salt = if generation == 0 {
            Vec::new()
        } else {
            generation.to_le_bytes().to_vec()
        };
        for b in serial.bytes().chain(nsid.to_le_bytes()).chain(salt) {
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
