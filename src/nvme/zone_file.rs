//! The zone file: a zoned namespace's zone states and write pointers kept next to its
//! backing file (`FILE.zones`), so that they survive a vnvme restart. Layout (little
//! endian): a 64-byte header — magic `VNVMEZNS`, version 1 (u32), block size (u32),
//! zone size and zone capacity in blocks (u64 each), zone count (u32) — then 16 bytes
//! per zone: state code (ZS, 1 byte), zone attributes (1 byte), 6 reserved bytes, write
//! pointer (u64, an absolute LBA).
//!
//! Changed zones are written when the data they describe is made durable: at Flush, at
//! a write with FUA (or any write with the volatile write cache off), after every Zone
//! Management Send, after Format NVM, at shutdown and when vnvme exits. A zone that was
//! open comes back closed (a restart is a power cycle to the host).

use super::zones::{ZoneGeometry, ZoneState, Zones};
use crate::block::SideFile;
use crate::sync::lock;
use std::path::Path;
use std::sync::Mutex;

const MAGIC: &[u8; 8] = b"VNVMEZNS";
const VERSION: u32 = 1;
const HEADER: u64 = 64;
const RECORD: u64 = 16;

pub struct ZoneFile {
    side: Mutex<SideFile>,
}

fn header(geo: &ZoneGeometry, block_size: u64) -> [u8; 64] {
    let mut h = [0u8; 64];
    h[0..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&(block_size as u32).to_le_bytes());
    h[16..24].copy_from_slice(&geo.zone_size.to_le_bytes());
    h[24..32].copy_from_slice(&geo.zone_cap.to_le_bytes());
    h[32..36].copy_from_slice(&geo.nr_zones.to_le_bytes());
    h
}

impl ZoneFile {
    /// Opens (or creates) the zone file at `path` for `zones` (every zone empty) of a
    /// namespace with `block_size`-byte blocks, and puts the states it holds into
    /// `zones`. A file made for another geometry, or holding a state or write pointer
    /// that cannot be, is refused with a line naming it.
    pub fn open(path: &Path, zones: &Zones, block_size: u64) -> Result<ZoneFile, String> {
        let p = path.display();
        let side = SideFile::open(path).map_err(|e| format!("zone file {p}: {e}"))?;
        let geo = zones.geometry();
        let want = header(geo, block_size);
        let f = ZoneFile {
            side: Mutex::new(side),
        };
        let empty = lock(&f.side)
            .is_empty()
            .map_err(|e| format!("zone file {p}: {e}"))?;
        if empty {
            lock(&f.side)
                .write_at(0, &want)
                .map_err(|e| format!("zone file {p}: {e}"))?;
            zones.mark_all_dirty();
            f.save(zones).map_err(|e| format!("zone file {p}: {e}"))?;
            return Ok(f);
        }
        let mut have = [0u8; 64];
        let mut records = vec![0u8; (geo.nr_zones as u64 * RECORD) as usize];
        let unreadable =
            |e: std::io::Error| format!("zone file {p}: {e} (remove it to start with empty zones)");
        lock(&f.side).read_at(0, &mut have).map_err(unreadable)?;
        if have != want {
            return Err(format!(
                "zone file {p} was made for another zone geometry or block size (remove it to start with empty zones)"
            ));
        }
        lock(&f.side)
            .read_at(HEADER, &mut records)
            .map_err(unreadable)?;
        for (i, r) in records.chunks_exact(RECORD as usize).enumerate() {
            let state = ZoneState::from_code(r[0])
                .ok_or_else(|| format!("zone file {p}: zone {i} has state code {:#x}", r[0]))?;
            let wp = u64::from_le_bytes(r[8..16].try_into().unwrap_or([0; 8]));
            zones
                .restore_zone(i, state, wp)
                .map_err(|e| format!("zone file {p}: {e}"))?;
        }
        // What the file holds now (open zones became closed).
        f.save(zones).map_err(|e| format!("zone file {p}: {e}"))?;
        Ok(f)
    }

    /// Writes the zones changed since the last save and makes them durable.
    pub fn save(&self, zones: &Zones) -> std::io::Result<()> {
        let dirty = zones.take_dirty();
        if dirty.is_empty() {
            return Ok(());
        }
        let side = lock(&self.side);
        let r = dirty.iter().try_for_each(|r| {
            let mut b = [0u8; RECORD as usize];
            b[0] = r.state as u8;
            b[1] = r.za;
            b[8..16].copy_from_slice(&r.wp.to_le_bytes());
            side.write_at(HEADER + r.index as u64 * RECORD, &b)
        });
        let r = r.and_then(|()| side.sync());
        if r.is_err() {
            // Written again at the next save.
            for d in &dirty {
                zones.mark_dirty(d.index);
            }
        }
        r
    }

    pub fn path(&self) -> std::path::PathBuf {
        lock(&self.side).path().to_path_buf()
    }
}
