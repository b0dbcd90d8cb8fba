//! virtio-blk on the wire: request types, status bytes, feature bits, the limits this
//! device advertises and the configuration space layout (virtio 1.2, section 5.2).
//!
//! The numbers come from `virtio-bindings`; the configuration space is written out
//! field by field in little-endian so no `unsafe` byte view is needed.

use virtio_bindings::virtio_blk as blk;
use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::virtio_ring::{VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC};

/// Request types (`type` in the request header).
pub const T_IN: u32 = blk::VIRTIO_BLK_T_IN;
pub const T_OUT: u32 = blk::VIRTIO_BLK_T_OUT;
pub const T_FLUSH: u32 = blk::VIRTIO_BLK_T_FLUSH;
pub const T_GET_ID: u32 = blk::VIRTIO_BLK_T_GET_ID;
pub const T_DISCARD: u32 = blk::VIRTIO_BLK_T_DISCARD;
pub const T_WRITE_ZEROES: u32 = blk::VIRTIO_BLK_T_WRITE_ZEROES;

/// Status bytes.
pub const S_OK: u8 = blk::VIRTIO_BLK_S_OK as u8;
pub const S_IOERR: u8 = blk::VIRTIO_BLK_S_IOERR as u8;
pub const S_UNSUPP: u8 = blk::VIRTIO_BLK_S_UNSUPP as u8;

/// The write-zeroes flag that lets the device deallocate.
pub const WRITE_ZEROES_FLAG_UNMAP: u32 = blk::VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP;

/// Sector size of every virtio-blk address and count.
pub const SECTOR: u64 = 512;
/// Size of the request header (type, ioprio, sector).
pub const HEADER_LEN: u32 = 16;
/// Size of one discard / write-zeroes segment (sector, num_sectors, flags).
pub const SEGMENT_LEN: usize = 16;
/// Length of the GET_ID string.
pub const ID_LEN: usize = blk::VIRTIO_BLK_ID_BYTES as usize;

/// Data descriptors per request (`seg_max`): fits a 128-entry ring without indirect
/// descriptors, as QEMU's own virtio-blk does (queue size - 2).
pub const SEG_MAX: u32 = 126;
/// Descriptors per chain: header + `SEG_MAX` data + status.
pub const MAX_DESCRIPTORS: usize = SEG_MAX as usize + 2;
/// Ring size offered (the driver may choose any power of two up to it).
pub const MAX_QUEUE_SIZE: usize = 1024;
/// Most virtqueues a disk may have (`queues=`).
pub const MAX_QUEUES: u16 = 16;
/// Sectors per discard / write-zeroes segment (2 GiB; a multiple of every block size).
pub const MAX_DISCARD_SECTORS: u32 = 1 << 22;
pub const MAX_WRITE_ZEROES_SECTORS: u32 = 1 << 22;
/// Segments per discard / write-zeroes request.
pub const MAX_DISCARD_SEG: u32 = 32;
pub const MAX_WRITE_ZEROES_SEG: u32 = 32;

/// Size of the configuration space we answer for (through `write_zeroes_may_unmap` and
/// its padding); reads past it up to `CONFIG_SPACE_LIMIT` return zeroes.
pub const CONFIG_LEN: usize = 60;
/// Largest configuration space a front end may read (the vhost-user limit).
pub const CONFIG_SPACE_LIMIT: usize = 256;

const fn bit(b: u32) -> u64 {
    1u64 << b
}

/// The virtio feature bits offered for a disk (`read_only`: VIRTIO_BLK_F_RO, and no
/// discard or write zeroes).
pub fn features(read_only: bool) -> u64 {
    let mut f = bit(VIRTIO_F_VERSION_1)
        | bit(VIRTIO_RING_F_EVENT_IDX)
        | bit(VIRTIO_RING_F_INDIRECT_DESC)
        | bit(blk::VIRTIO_BLK_F_SEG_MAX)
        | bit(blk::VIRTIO_BLK_F_BLK_SIZE)
        | bit(blk::VIRTIO_BLK_F_FLUSH)
        | bit(blk::VIRTIO_BLK_F_MQ);
    if read_only {
        f |= bit(blk::VIRTIO_BLK_F_RO);
    } else {
        f |= bit(blk::VIRTIO_BLK_F_DISCARD) | bit(blk::VIRTIO_BLK_F_WRITE_ZEROES);
    }
    f
}

/// True if `features` (acked) include VIRTIO_BLK_F_FLUSH.
pub fn has_flush(features: u64) -> bool {
    features & bit(blk::VIRTIO_BLK_F_FLUSH) != 0
}

/// What the configuration space shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Capacity in 512-byte sectors.
    pub capacity: u64,
    pub blk_size: u32,
    pub num_queues: u16,
}

/// The configuration space (`struct virtio_blk_config`), `CONFIG_SPACE_LIMIT` bytes
/// with everything after the fields we fill zero.
pub fn config_space(g: &Geometry) -> [u8; CONFIG_SPACE_LIMIT] {
    let mut c = [0u8; CONFIG_SPACE_LIMIT];
    let mut put = |off: usize, bytes: &[u8]| c[off..off + bytes.len()].copy_from_slice(bytes);
    put(0, &g.capacity.to_le_bytes()); // capacity
    put(8, &0u32.to_le_bytes()); // size_max (not offered)
    put(12, &SEG_MAX.to_le_bytes()); // seg_max
    put(16, &[0u8; 4]); // geometry (not offered)
    put(20, &g.blk_size.to_le_bytes()); // blk_size
    put(24, &[0u8; 8]); // topology (not offered)
    put(32, &[0u8; 2]); // wce, unused
    put(34, &g.num_queues.to_le_bytes()); // num_queues
    let align = g.blk_size / SECTOR as u32;
    put(36, &MAX_DISCARD_SECTORS.to_le_bytes()); // max_discard_sectors
    put(40, &MAX_DISCARD_SEG.to_le_bytes()); // max_discard_seg
    put(44, &align.to_le_bytes()); // discard_sector_alignment
    put(48, &MAX_WRITE_ZEROES_SECTORS.to_le_bytes()); // max_write_zeroes_sectors
    put(52, &MAX_WRITE_ZEROES_SEG.to_le_bytes()); // max_write_zeroes_seg
    put(56, &[1u8, 0, 0, 0]); // write_zeroes_may_unmap, unused1[3]
    c
}

/// The bytes `[offset, offset + size)` of the configuration space, or `None` if that
/// range is outside it.
pub fn config_read(g: &Geometry, offset: u32, size: u32) -> Option<Vec<u8>> {
    let start = offset as usize;
    let end = start.checked_add(size as usize)?;
    if end > CONFIG_SPACE_LIMIT {
        return None;
    }
    Some(config_space(g)[start..end].to_vec())
}

/// The GET_ID string: `SERIAL-NSID` if that fits in 20 bytes, else `vnvme-nsNSID`;
/// zero-padded (no terminating zero when it is exactly 20 bytes long).
pub fn device_id(serial: &str, nsid: u32) -> [u8; ID_LEN] {
    let mut s = format!("{}-{nsid}", serial.trim());
    if s.len() > ID_LEN || !s.is_ascii() {
        s = format!("vnvme-ns{nsid}");
    }
    let mut id = [0u8; ID_LEN];
    let n = s.len().min(ID_LEN);
    id[..n].copy_from_slice(&s.as_bytes()[..n]);
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_layout() {
        let g = Geometry {
            capacity: 2048,
            blk_size: 4096,
            num_queues: 3,
        };
        let c = config_space(&g);
        assert_eq!(u64::from_le_bytes(c[0..8].try_into().unwrap()), 2048);
        assert_eq!(u32::from_le_bytes(c[12..16].try_into().unwrap()), SEG_MAX);
        assert_eq!(u32::from_le_bytes(c[20..24].try_into().unwrap()), 4096);
        assert_eq!(u16::from_le_bytes(c[34..36].try_into().unwrap()), 3);
        assert_eq!(u32::from_le_bytes(c[44..48].try_into().unwrap()), 8);
        assert_eq!(c[56], 1);
        assert_eq!(config_read(&g, 34, 2).unwrap(), vec![3, 0]);
        assert!(config_read(&g, 250, 7).is_none());
        assert!(config_read(&g, u32::MAX, u32::MAX).is_none());
        assert_eq!(config_read(&g, 0, 256).unwrap().len(), 256);
    }

    #[test]
    fn ids() {
        assert_eq!(&device_id("VNVME0001", 1)[..12], b"VNVME0001-1\0");
        let long = device_id("ABCDEFGHIJKLMNOPQRST", 4294967294);
        assert_eq!(&long[..18], b"vnvme-ns4294967294");
        let exact = device_id("ABCDEFGHIJKLMNOPQR", 7);
        assert_eq!(&exact, b"ABCDEFGHIJKLMNOPQR-7");
    }

    #[test]
    fn read_only_features() {
        let ro = features(true);
        assert_ne!(ro & bit(blk::VIRTIO_BLK_F_RO), 0);
        assert_eq!(ro & bit(blk::VIRTIO_BLK_F_DISCARD), 0);
        let rw = features(false);
        assert_eq!(rw & bit(blk::VIRTIO_BLK_F_RO), 0);
        assert!(has_flush(rw));
    }
}
