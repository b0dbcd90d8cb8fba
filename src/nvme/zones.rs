//! The zones of a zoned namespace (NVMe Zoned Namespace command set, ZNS 1.1): every
//! zone's state and write pointer, the open and active resource limits, and the rules a
//! write, a read, a zone action and a zone report follow. Pure state: no data moves
//! here. The I/O paths ask this table before they touch the volume and get back what to
//! do (the LBA a Zone Append writes at, the ranges a reset deallocates).
//!
//! Every zone is a sequential-write-required zone (ZT 2h). A write reserves its blocks
//! when its checks pass: the write pointer moves before the data is written, so
//! concurrent Zone Appends get distinct LBAs; a write whose data then fails still moved
//! the pointer (the blocks hold whatever reached the store), as in QEMU.

use std::collections::VecDeque;
use std::sync::Mutex;

use super::spec::{put_u64, status, Status};

/// Zone states, as Zone Descriptor ZS (bits 7:4 of byte 1) encodes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZoneState {
    Empty = 0x1,
    ImplicitlyOpen = 0x2,
    ExplicitlyOpen = 0x3,
    Closed = 0x4,
    ReadOnly = 0xd,
    Full = 0xe,
    Offline = 0xf,
}

impl ZoneState {
    pub fn name(self) -> &'static str {
        match self {
            ZoneState::Empty => "empty",
            ZoneState::ImplicitlyOpen => "implicitly-open",
            ZoneState::ExplicitlyOpen => "explicitly-open",
            ZoneState::Closed => "closed",
            ZoneState::ReadOnly => "read-only",
            ZoneState::Full => "full",
            ZoneState::Offline => "offline",
        }
    }

    pub fn from_code(c: u8) -> Option<ZoneState> {
        Some(match c {
            0x1 => ZoneState::Empty,
            0x2 => ZoneState::ImplicitlyOpen,
            0x3 => ZoneState::ExplicitlyOpen,
            0x4 => ZoneState::Closed,
            0xd => ZoneState::ReadOnly,
            0xe => ZoneState::Full,
            0xf => ZoneState::Offline,
            _ => return None,
        })
    }

    fn is_open(self) -> bool {
        matches!(self, ZoneState::ImplicitlyOpen | ZoneState::ExplicitlyOpen)
    }

    fn is_active(self) -> bool {
        self.is_open() || self == ZoneState::Closed
    }
}

/// Zone Send Action (Zone Management Send CDW13 bits 7:0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZoneAction {
    Close,
    Finish,
    Open,
    Reset,
    Offline,
    /// Set Zone Descriptor Extension, with the extension's bytes.
    SetExtension,
}

impl ZoneAction {
    pub fn from_code(c: u8) -> Option<ZoneAction> {
        Some(match c {
            0x01 => ZoneAction::Close,
            0x02 => ZoneAction::Finish,
            0x03 => ZoneAction::Open,
            0x04 => ZoneAction::Reset,
            0x05 => ZoneAction::Offline,
            0x10 => ZoneAction::SetExtension,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            ZoneAction::Close => "close",
            ZoneAction::Finish => "finish",
            ZoneAction::Open => "open",
            ZoneAction::Reset => "reset",
            ZoneAction::Offline => "offline",
            ZoneAction::SetExtension => "set-extension",
        }
    }
}

/// Zone Receive Action Specific Field (Zone Management Receive CDW13 bits 15:8): which
/// zones a report lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZoneFilter {
    All,
    Only(ZoneState),
}

impl ZoneFilter {
    pub fn from_code(c: u8) -> Option<ZoneFilter> {
        Some(match c {
            0 => ZoneFilter::All,
            1 => ZoneFilter::Only(ZoneState::Empty),
            2 => ZoneFilter::Only(ZoneState::ImplicitlyOpen),
            3 => ZoneFilter::Only(ZoneState::ExplicitlyOpen),
            4 => ZoneFilter::Only(ZoneState::Closed),
            5 => ZoneFilter::Only(ZoneState::Full),
            6 => ZoneFilter::Only(ZoneState::ReadOnly),
            7 => ZoneFilter::Only(ZoneState::Offline),
            _ => return None,
        })
    }

    fn matches(self, s: ZoneState) -> bool {
        match self {
            ZoneFilter::All => true,
            ZoneFilter::Only(t) => t == s,
        }
    }
}

/// The zone layout and limits of a zoned namespace, in logical blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZoneGeometry {
    /// Blocks per zone (ZSZE).
    pub zone_size: u64,
    /// Writable blocks per zone (ZCAP), at most `zone_size`.
    pub zone_cap: u64,
    pub nr_zones: u32,
    /// Open zones allowed at once; 0: no limit.
    pub max_open: u32,
    /// Active (open or closed) zones allowed at once; 0: no limit.
    pub max_active: u32,
    /// Reads may cross zone boundaries (OZCS RAZB).
    pub cross_read: bool,
    /// Zone Descriptor Extension size in bytes (a multiple of 64; 0: none).
    pub ext_size: u32,
    /// Zone Append Size Limit: a power of two in 4 KiB pages; 0: MDTS.
    pub zasl: u8,
}

/// Zone Descriptor size, and the report header before the descriptors.
pub const DESCRIPTOR_SIZE: usize = 64;
pub const REPORT_HEADER_SIZE: usize = 64;
/// Zone Attributes bit 7: Zone Descriptor Extension Valid.
const ZA_ZDEV: u8 = 1 << 7;

#[derive(Debug, Clone, Copy)]
struct Zone {
    state: ZoneState,
    /// Absolute LBA of the next write (valid in Empty, open and Closed states).
    wp: u64,
    za: u8,
}

struct Table {
    zones: Vec<Zone>,
    open: u32,
    active: u32,
    /// Implicitly opened zones, oldest first (the one an implicit open closes when the
    /// open limit is reached).
    implicit: VecDeque<u32>,
    /// Zone Descriptor Extensions, `ext_size` bytes per zone (empty without them).
    ext: Vec<u8>,
    /// Zones whose state, attributes or write pointer changed since the last
    /// `take_dirty` (a bit per zone, and their indices), for the zone file.
    dirty_bits: Vec<u64>,
    dirty: Vec<u32>,
}

impl Table {
    fn mark(&mut self, i: usize) {
        let (w, b) = (i / 64, 1u64 << (i % 64));
        if self.dirty_bits[w] & b == 0 {
            self.dirty_bits[w] |= b;
            self.dirty.push(i as u32);
        }
    }
}

/// What the zone file keeps of one zone: state code, attributes, write pointer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZoneRecord {
    pub index: u32,
    pub state: ZoneState,
    pub za: u8,
    pub wp: u64,
}

/// One zoned namespace's zones.
pub struct Zones {
    geo: ZoneGeometry,
    table: Mutex<Table>,
}

/// One zone as a report or a snapshot shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZoneInfo {
    pub zslba: u64,
    pub state: ZoneState,
    pub wp: u64,
    pub cap: u64,
    pub ext_valid: bool,
}

/// What a zone action did: the ranges (slba, blocks) whose data must now be deallocated
/// (reset zones), for the caller to pass to the volume.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ActionDone {
    pub deallocate: Vec<(u64, u64)>,
    /// Zones whose state changed.
    pub zones_changed: u32,
}

impl Zones {
    /// All zones empty.
    pub fn new(geo: ZoneGeometry) -> Zones {
        let zones = (0..geo.nr_zones as u64)
            .map(|i| Zone {
                state: ZoneState::Empty,
                wp: i * geo.zone_size,
                za: 0,
            })
            .collect();
        Zones {
            geo,
            table: Mutex::new(Table {
                zones,
                open: 0,
                active: 0,
                implicit: VecDeque::new(),
                ext: vec![0; geo.ext_size as usize * geo.nr_zones as usize],
                dirty_bits: vec![0; (geo.nr_zones as usize).div_ceil(64)],
                dirty: Vec::new(),
            }),
        }
    }

    pub fn geometry(&self) -> &ZoneGeometry {
        &self.geo
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The zone index holding `lba`, if it is inside the zoned area.
    fn index(&self, lba: u64) -> Option<usize> {
        let i = lba / self.geo.zone_size;
        (i < self.geo.nr_zones as u64).then_some(i as usize)
    }

    fn zslba(&self, i: usize) -> u64 {
        i as u64 * self.geo.zone_size
    }

    /// A Read, Compare, Verify or Copy source range `slba`..+`nlb` (already inside the
    /// namespace): an offline zone in it gives Zone Is Offline; crossing a zone
    /// boundary without RAZB gives Zone Boundary Error.
    pub fn check_read(&self, slba: u64, nlb: u64) -> Result<(), Status> {
        if nlb == 0 {
            return Ok(());
        }
        let (Some(first), Some(last)) = (self.index(slba), self.index(slba + nlb - 1)) else {
            return Err(status::LBA_OUT_OF_RANGE.dnr());
        };
        let t = self.lock();
        if t.zones[first].state == ZoneState::Offline {
            return Err(status::ZONE_IS_OFFLINE.dnr());
        }
        if last != first {
            if !self.geo.cross_read {
                return Err(status::ZONE_BOUNDARY_ERROR.dnr());
            }
            if t.zones[first + 1..=last]
                .iter()
                .any(|z| z.state == ZoneState::Offline)
            {
                return Err(status::ZONE_IS_OFFLINE.dnr());
            }
        }
        Ok(())
    }

    /// The checks of a write of `nlb` blocks — Write, Write Zeroes, Write Uncorrectable,
    /// a Copy's destination (`slba` its first LBA), or a Zone Append to the zone
    /// starting at `slba` (`append`) — in the order QEMU and the ZNS write rules give
    /// them: the zone's state (Full, Read Only, Offline), the write pointer (Zone
    /// Invalid Write; an append must name the zone's first LBA: Invalid Field), the
    /// zone's capacity (Zone Boundary Error), then the resources an implicit open needs
    /// (Too Many Active / Open Zones). On success the blocks are reserved: the write
    /// pointer moves past them (the zone becomes Full at its capacity) and the LBA the
    /// data goes to is returned.
    pub fn begin_write(&self, slba: u64, nlb: u64, append: bool) -> Result<u64, Status> {
        let i = self.index(slba).ok_or(status::LBA_OUT_OF_RANGE.dnr())?;
        if append && slba != self.zslba(i) {
            return Err(status::INVALID_FIELD.dnr());
        }
        let mut t = self.lock();
        let z = t.zones[i];
        match z.state {
            ZoneState::Full => return Err(status::ZONE_IS_FULL.dnr()),
            ZoneState::ReadOnly => return Err(status::ZONE_IS_READ_ONLY.dnr()),
            ZoneState::Offline => return Err(status::ZONE_IS_OFFLINE.dnr()),
            _ => {}
        }
        let start = if append { z.wp } else { slba };
        if start != z.wp {
            return Err(status::ZONE_INVALID_WRITE.dnr());
        }
        let boundary = self.zslba(i) + self.geo.zone_cap;
        if start.checked_add(nlb).is_none_or(|end| end > boundary) {
            return Err(status::ZONE_BOUNDARY_ERROR.dnr());
        }
        if nlb == 0 {
            return Ok(start);
        }
        self.open_zone(&mut t, i, false)?;
        t.zones[i].wp = start + nlb;
        if start + nlb == boundary {
            self.set_state(&mut t, i, ZoneState::Full);
        }
        t.mark(i);
        Ok(start)
    }

    /// Moves zone `i` into an open state: implicitly for a write (`explicit` false),
    /// explicitly for Zone Management Send Open. An Empty zone needs an active and an
    /// open resource, a Closed one an open resource; at the open limit an implicit open
    /// first closes the oldest implicitly opened zone (QEMU's auto transition).
    fn open_zone(&self, t: &mut Table, i: usize, explicit: bool) -> Result<(), Status> {
        let state = t.zones[i].state;
        let (need_active, need_open) = match state {
            ZoneState::Empty => (1, 1),
            ZoneState::Closed => (0, 1),
            ZoneState::ImplicitlyOpen => {
                if explicit {
                    self.set_state(t, i, ZoneState::ExplicitlyOpen);
                }
                return Ok(());
            }
            ZoneState::ExplicitlyOpen => return Ok(()),
            _ => return Err(status::INVALID_ZONE_STATE_TRANSITION.dnr()),
        };
        if self.geo.max_active != 0 && t.active + need_active > self.geo.max_active {
            return Err(status::TOO_MANY_ACTIVE_ZONES.dnr());
        }
        if self.geo.max_open != 0 && t.open + need_open > self.geo.max_open {
            match t.implicit.front().copied() {
                Some(oldest) => self.set_state(t, oldest as usize, ZoneState::Closed),
                None => return Err(status::TOO_MANY_OPEN_ZONES.dnr()),
            }
        }
        let to = if explicit {
            ZoneState::ExplicitlyOpen
        } else {
            ZoneState::ImplicitlyOpen
        };
        self.set_state(t, i, to);
        Ok(())
    }

    /// Changes a zone's state, keeping the open and active counts and the list of
    /// implicitly opened zones.
    fn set_state(&self, t: &mut Table, i: usize, to: ZoneState) {
        let from = t.zones[i].state;
        if from == to {
            return;
        }
        if from.is_open() {
            t.open -= 1;
        }
        if from.is_active() {
            t.active -= 1;
        }
        if from == ZoneState::ImplicitlyOpen {
            t.implicit.retain(|&z| z as usize != i);
        }
        if to.is_open() {
            t.open += 1;
        }
        if to.is_active() {
            t.active += 1;
        }
        if to == ZoneState::ImplicitlyOpen {
            t.implicit.push_back(i as u32);
        }
        t.zones[i].state = to;
        t.mark(i);
    }

    /// Zone Management Send: `action` on the zone starting at `slba`, or with
    /// `select_all` on every zone in a state the action applies to (the others are left
    /// alone). Without Select All, `slba` must be a zone's first LBA (Invalid Field).
    /// `ext` is the Zone Descriptor Extension of Set Zone Descriptor Extension.
    pub fn send(
        &self,
        action: ZoneAction,
        slba: u64,
        select_all: bool,
        ext: &[u8],
    ) -> Result<ActionDone, Status> {
        let mut t = self.lock();
        let mut done = ActionDone::default();
        if select_all {
            if action == ZoneAction::SetExtension {
                return Err(status::INVALID_FIELD.dnr());
            }
            for i in 0..t.zones.len() {
                let s = t.zones[i].state;
                let applies = match action {
                    ZoneAction::Close => s.is_open(),
                    ZoneAction::Finish => s.is_active(),
                    // Open all: the closed zones (ZNS 1.1, 4.3.1.3).
                    ZoneAction::Open => s == ZoneState::Closed,
                    ZoneAction::Reset => s.is_active() || s == ZoneState::Full,
                    ZoneAction::Offline => s == ZoneState::ReadOnly,
                    ZoneAction::SetExtension => false,
                };
                if applies {
                    self.act(&mut t, i, action, ext, &mut done)?;
                }
            }
            return Ok(done);
        }
        let i = self.index(slba).ok_or(status::LBA_OUT_OF_RANGE.dnr())?;
        if slba != self.zslba(i) {
            return Err(status::INVALID_FIELD.dnr());
        }
        self.act(&mut t, i, action, ext, &mut done)?;
        Ok(done)
    }

    fn act(
        &self,
        t: &mut Table,
        i: usize,
        action: ZoneAction,
        ext: &[u8],
        done: &mut ActionDone,
    ) -> Result<(), Status> {
        use ZoneState::*;
        let before = t.zones[i].state;
        let invalid = Err(status::INVALID_ZONE_STATE_TRANSITION.dnr());
        match action {
            ZoneAction::Open => self.open_zone(t, i, true)?,
            ZoneAction::Close => match before {
                ImplicitlyOpen | ExplicitlyOpen => self.set_state(t, i, Closed),
                Closed => {}
                _ => return invalid,
            },
            ZoneAction::Finish => match before {
                Empty | ImplicitlyOpen | ExplicitlyOpen | Closed => {
                    // Finishing an Empty zone makes it active on the way (QEMU checks
                    // the active limit for it).
                    if before == Empty
                        && self.geo.max_active != 0
                        && t.active + 1 > self.geo.max_active
                    {
                        return Err(status::TOO_MANY_ACTIVE_ZONES.dnr());
                    }
                    t.zones[i].wp = self.zslba(i) + self.geo.zone_cap;
                    self.set_state(t, i, Full);
                    t.mark(i);
                }
                Full => {}
                _ => return invalid,
            },
            ZoneAction::Reset => match before {
                ImplicitlyOpen | ExplicitlyOpen | Closed | Full | Empty => {
                    let zslba = self.zslba(i);
                    if before != Empty || t.zones[i].wp != zslba {
                        done.deallocate.push((zslba, self.geo.zone_size));
                    }
                    t.zones[i].wp = zslba;
                    t.zones[i].za &= !ZA_ZDEV;
                    self.clear_ext(t, i);
                    self.set_state(t, i, Empty);
                    t.mark(i);
                }
                _ => return invalid,
            },
            ZoneAction::Offline => match before {
                ReadOnly => self.take_offline(t, i),
                Offline => {}
                _ => return invalid,
            },
            ZoneAction::SetExtension => {
                if self.geo.ext_size == 0 {
                    return Err(status::INVALID_FIELD.dnr());
                }
                if before != Empty {
                    return invalid;
                }
                if self.geo.max_active != 0 && t.active + 1 > self.geo.max_active {
                    return Err(status::TOO_MANY_ACTIVE_ZONES.dnr());
                }
                let n = self.geo.ext_size as usize;
                let at = i * n;
                let take = ext.len().min(n);
                t.ext[at..at + take].copy_from_slice(&ext[..take]);
                t.ext[at + take..at + n].fill(0);
                t.zones[i].za |= ZA_ZDEV;
                self.set_state(t, i, Closed);
                t.mark(i);
            }
        }
        if t.zones[i].state != before {
            done.zones_changed += 1;
        }
        Ok(())
    }

    fn clear_ext(&self, t: &mut Table, i: usize) {
        let n = self.geo.ext_size as usize;
        t.ext[i * n..(i + 1) * n].fill(0);
    }

    /// Zone Management Receive: the report for zones from the one holding `slba` on,
    /// those `filter` selects, for a host buffer of `len` bytes (header, then a
    /// descriptor and, with `extended`, its extension per zone). The header counts
    /// every matching zone, or with `partial` only those that fit. The report returned
    /// is only as long as what it holds (at most `len` bytes): the rest of the host's
    /// buffer is not written, and nothing here grows with `len` itself.
    pub fn report(
        &self,
        slba: u64,
        filter: ZoneFilter,
        extended: bool,
        partial: bool,
        len: usize,
    ) -> Result<Vec<u8>, Status> {
        if extended && self.geo.ext_size == 0 {
            return Err(status::INVALID_FIELD.dnr());
        }
        let first = self.index(slba).ok_or(status::LBA_OUT_OF_RANGE.dnr())?;
        let per = DESCRIPTOR_SIZE
            + if extended {
                self.geo.ext_size as usize
            } else {
                0
            };
        let t = self.lock();
        let room = (len.saturating_sub(REPORT_HEADER_SIZE) / per).min(t.zones.len() - first);
        let mut out = vec![0u8; REPORT_HEADER_SIZE + room * per];
        let mut listed = 0usize;
        let mut matching = 0u64;
        for i in first..t.zones.len() {
            let z = t.zones[i];
            if !filter.matches(z.state) {
                continue;
            }
            matching += 1;
            if listed < room {
                let at = REPORT_HEADER_SIZE + listed * per;
                self.describe(&t, i, &mut out[at..at + DESCRIPTOR_SIZE]);
                if extended {
                    let n = self.geo.ext_size as usize;
                    out[at + DESCRIPTOR_SIZE..at + per].copy_from_slice(&t.ext[i * n..(i + 1) * n]);
                }
                listed += 1;
            } else if partial {
                break;
            }
        }
        let count = if partial { listed as u64 } else { matching };
        put_u64(&mut out, 0, count);
        out.truncate((REPORT_HEADER_SIZE + listed * per).min(len));
        Ok(out)
    }

    /// One Zone Descriptor: ZT 2h (sequential write required), ZS, ZA, ZCAP, ZSLBA and
    /// WP. The write pointer of a Full, Read Only or Offline zone is not valid (ZNS
    /// 1.1): all ones, as QEMU reports it.
    fn describe(&self, t: &Table, i: usize, d: &mut [u8]) {
        let z = t.zones[i];
        d[0] = 0x2;
        d[1] = (z.state as u8) << 4;
        d[2] = z.za;
        put_u64(d, 8, self.geo.zone_cap);
        put_u64(d, 16, self.zslba(i));
        let wp = match z.state {
            ZoneState::Full | ZoneState::ReadOnly | ZoneState::Offline => u64::MAX,
            _ => z.wp,
        };
        put_u64(d, 24, wp);
    }

    /// Every zone (tests; the control socket takes [`Zones::snapshot_range`]).
    pub fn snapshot(&self) -> Vec<ZoneInfo> {
        self.snapshot_range(0, usize::MAX)
    }

    /// Zones `first`.. , at most `max` of them (none when `first` is past the last).
    pub fn snapshot_range(&self, first: usize, max: usize) -> Vec<ZoneInfo> {
        let t = self.lock();
        t.zones
            .iter()
            .enumerate()
            .skip(first)
            .take(max)
            .map(|(i, z)| ZoneInfo {
                zslba: self.zslba(i),
                state: z.state,
                wp: z.wp,
                cap: self.geo.zone_cap,
                ext_valid: z.za & ZA_ZDEV != 0,
            })
            .collect()
    }

    /// (open, active) zone counts.
    pub fn counts(&self) -> (u32, u32) {
        let t = self.lock();
        (t.open, t.active)
    }

    /// The zones changed since the last call, as the zone file keeps them.
    pub fn take_dirty(&self) -> Vec<ZoneRecord> {
        let mut t = self.lock();
        let dirty = std::mem::take(&mut t.dirty);
        dirty
            .into_iter()
            .map(|i| {
                let i = i as usize;
                t.dirty_bits[i / 64] &= !(1u64 << (i % 64));
                let z = t.zones[i];
                ZoneRecord {
                    index: i as u32,
                    state: z.state,
                    za: z.za,
                    wp: z.wp,
                }
            })
            .collect()
    }

    /// Marks zone `i` changed again (a save of it failed).
    pub fn mark_dirty(&self, i: u32) {
        let mut t = self.lock();
        if (i as usize) < t.zones.len() {
            t.mark(i as usize);
        }
    }

    /// Marks every zone changed (a fresh zone file, or a format).
    pub fn mark_all_dirty(&self) {
        let mut t = self.lock();
        for i in 0..t.zones.len() {
            t.mark(i);
        }
    }

    /// A transition the controller makes on its own (the control socket's
    /// `set-zone-state`): zone `i` becomes Read Only or Offline from any state, giving up
    /// its open and active resources; an Offline zone loses its descriptor extension.
    /// Returns the state it left.
    pub fn force_state(&self, i: usize, to: ZoneState) -> Result<ZoneState, String> {
        if !matches!(to, ZoneState::ReadOnly | ZoneState::Offline) {
            return Err(format!(
                "state: {} is not one the controller enters on its own (read-only, offline)",
                to.name()
            ));
        }
        let mut t = self.lock();
        if i >= t.zones.len() {
            return Err(format!(
                "zone: {i} does not exist ({} zones)",
                t.zones.len()
            ));
        }
        let before = t.zones[i].state;
        if to == ZoneState::Offline {
            self.take_offline(&mut t, i);
        } else {
            self.set_state(&mut t, i, to);
        }
        Ok(before)
    }

    /// Zone `i` goes Offline: its descriptor extension is gone with it.
    fn take_offline(&self, t: &mut Table, i: usize) {
        t.zones[i].za &= !ZA_ZDEV;
        self.clear_ext(t, i);
        self.set_state(t, i, ZoneState::Offline);
    }

    /// Puts zone `i` into `state` with write pointer `wp` (a restored sidecar). Open states come back as
    /// Closed (a restart closes every zone, as a power cycle does); a write pointer
    /// outside the zone's capacity is refused.
    pub fn restore_zone(&self, i: usize, state: ZoneState, wp: u64) -> Result<(), String> {
        let mut t = self.lock();
        if i >= t.zones.len() {
            return Err(format!("zone {i} does not exist ({} zones)", t.zones.len()));
        }
        let zslba = self.zslba(i);
        let cap_end = zslba + self.geo.zone_cap;
        let state = match state {
            ZoneState::ImplicitlyOpen | ZoneState::ExplicitlyOpen => ZoneState::Closed,
            s => s,
        };
        let wp = match state {
            ZoneState::Empty => zslba,
            ZoneState::Full => cap_end,
            _ if !(zslba..=cap_end).contains(&wp) => {
                return Err(format!(
                    "zone {i}: write pointer {wp} outside {zslba}..={cap_end}"
                ))
            }
            _ => wp,
        };
        // A closed zone with nothing written is empty (descriptor extensions are not
        // kept across a restart).
        t.zones[i].za = 0;
        if state == ZoneState::Closed && wp == zslba {
            self.set_state(&mut t, i, ZoneState::Empty);
        } else {
            self.set_state(&mut t, i, state);
        }
        t.zones[i].wp = wp;
        t.mark(i);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zones(max_open: u32, max_active: u32) -> Zones {
        Zones::new(ZoneGeometry {
            zone_size: 16,
            zone_cap: 12,
            nr_zones: 4,
            max_open,
            max_active,
            cross_read: false,
            ext_size: 64,
            zasl: 0,
        })
    }

    fn state(z: &Zones, i: usize) -> ZoneState {
        z.snapshot()[i].state
    }

    #[test]
    fn writes_follow_the_write_pointer_and_fill_the_zone() {
        let z = zones(0, 0);
        assert_eq!(z.begin_write(0, 4, false), Ok(0));
        assert_eq!(state(&z, 0), ZoneState::ImplicitlyOpen);
        assert_eq!(
            z.begin_write(0, 1, false),
            Err(status::ZONE_INVALID_WRITE.dnr())
        );
        assert_eq!(
            z.begin_write(4, 9, false),
            Err(status::ZONE_BOUNDARY_ERROR.dnr())
        );
        assert_eq!(
            z.begin_write(0, 8, true),
            Ok(4),
            "append lands at the pointer"
        );
        assert_eq!(state(&z, 0), ZoneState::Full);
        assert_eq!(z.counts(), (0, 0));
        assert_eq!(z.begin_write(0, 1, true), Err(status::ZONE_IS_FULL.dnr()));
        assert_eq!(z.begin_write(17, 1, true), Err(status::INVALID_FIELD.dnr()));
        assert_eq!(
            z.begin_write(64, 1, false),
            Err(status::LBA_OUT_OF_RANGE.dnr())
        );
    }

    #[test]
    fn open_limit_closes_the_oldest_implicit_zone_but_not_explicit_ones() {
        let z = zones(2, 3);
        z.begin_write(0, 1, false).unwrap();
        z.begin_write(16, 1, false).unwrap();
        z.begin_write(32, 1, false).unwrap();
        assert_eq!(state(&z, 0), ZoneState::Closed);
        assert_eq!(z.counts(), (2, 3));
        // A fourth active zone is one too many.
        assert_eq!(
            z.begin_write(48, 1, false),
            Err(status::TOO_MANY_ACTIVE_ZONES.dnr())
        );
        // Explicitly open both open zones: no implicit one left to close.
        z.send(ZoneAction::Open, 16, false, &[]).unwrap();
        z.send(ZoneAction::Open, 32, false, &[]).unwrap();
        assert_eq!(
            z.begin_write(1, 1, false),
            Err(status::TOO_MANY_OPEN_ZONES.dnr())
        );
        z.send(ZoneAction::Close, 16, false, &[]).unwrap();
        assert_eq!(z.begin_write(1, 1, false), Ok(1));
    }

    #[test]
    fn zone_actions_and_their_invalid_transitions() {
        let z = zones(0, 0);
        let bad = Err(status::INVALID_ZONE_STATE_TRANSITION.dnr());
        assert_eq!(z.send(ZoneAction::Close, 0, false, &[]).map(|_| ()), bad);
        assert_eq!(z.send(ZoneAction::Offline, 0, false, &[]).map(|_| ()), bad);
        assert_eq!(
            z.send(ZoneAction::Open, 1, false, &[]).map(|_| ()),
            Err(status::INVALID_FIELD.dnr())
        );
        z.begin_write(0, 3, false).unwrap();
        let done = z.send(ZoneAction::Finish, 0, false, &[]).unwrap();
        assert_eq!(done.zones_changed, 1);
        assert_eq!(state(&z, 0), ZoneState::Full);
        assert_eq!(z.send(ZoneAction::Open, 0, false, &[]).map(|_| ()), bad);
        let done = z.send(ZoneAction::Reset, 0, false, &[]).unwrap();
        assert_eq!(done.deallocate, vec![(0, 16)]);
        assert_eq!(state(&z, 0), ZoneState::Empty);
        assert_eq!(z.snapshot()[0].wp, 0);
        // Select all: reset only touches zones that are not empty.
        z.begin_write(16, 1, false).unwrap();
        let done = z.send(ZoneAction::Reset, 0, true, &[]).unwrap();
        assert_eq!(done.deallocate, vec![(16, 16)]);
        // Extension: an Empty zone becomes Closed with ZDEV.
        z.send(ZoneAction::SetExtension, 32, false, &[7; 64])
            .unwrap();
        assert_eq!(state(&z, 2), ZoneState::Closed);
        assert!(z.snapshot()[2].ext_valid);
        assert_eq!(
            z.send(ZoneAction::SetExtension, 32, false, &[7; 64])
                .map(|_| ()),
            bad
        );
    }

    #[test]
    fn reads_across_zones_and_offline_zones() {
        let z = zones(0, 0);
        assert_eq!(z.check_read(0, 16), Ok(()));
        assert_eq!(z.check_read(15, 2), Err(status::ZONE_BOUNDARY_ERROR.dnr()));
        z.restore_zone(1, ZoneState::ReadOnly, 16).unwrap();
        assert_eq!(
            z.begin_write(16, 1, false),
            Err(status::ZONE_IS_READ_ONLY.dnr())
        );
        z.send(ZoneAction::Offline, 16, false, &[]).unwrap();
        assert_eq!(z.check_read(16, 1), Err(status::ZONE_IS_OFFLINE.dnr()));
        assert_eq!(
            z.begin_write(16, 1, false),
            Err(status::ZONE_IS_OFFLINE.dnr())
        );
    }

    #[test]
    fn reports_count_all_or_only_listed_zones() {
        let z = zones(0, 0);
        z.begin_write(16, 2, false).unwrap();
        // Room for one descriptor.
        let r = z.report(0, ZoneFilter::All, false, false, 128).unwrap();
        assert_eq!(u64::from_le_bytes(r[0..8].try_into().unwrap()), 4);
        assert_eq!(r[64 + 1] >> 4, ZoneState::Empty as u8);
        let r = z.report(0, ZoneFilter::All, false, true, 128).unwrap();
        assert_eq!(u64::from_le_bytes(r[0..8].try_into().unwrap()), 1);
        let r = z
            .report(
                0,
                ZoneFilter::Only(ZoneState::ImplicitlyOpen),
                false,
                false,
                4096,
            )
            .unwrap();
        assert_eq!(u64::from_le_bytes(r[0..8].try_into().unwrap()), 1);
        assert_eq!(
            u64::from_le_bytes(r[64 + 16..64 + 24].try_into().unwrap()),
            16
        );
        assert_eq!(
            u64::from_le_bytes(r[64 + 24..64 + 32].try_into().unwrap()),
            18
        );
        let r = z.report(0, ZoneFilter::All, true, false, 64 + 128).unwrap();
        assert_eq!(r.len(), 192);
        // A huge buffer gets only what the report holds.
        let r = z
            .report(16, ZoneFilter::All, false, false, 1 << 40)
            .unwrap();
        assert_eq!(r.len(), 64 + 3 * 64);
        // A buffer smaller than the header still gets the count's first bytes.
        assert_eq!(
            z.report(0, ZoneFilter::All, false, false, 4).unwrap(),
            vec![4, 0, 0, 0]
        );
    }

    #[test]
    fn forced_read_only_and_offline_zones_free_their_resources() {
        let z = zones(2, 2);
        z.begin_write(0, 4, false).unwrap();
        z.send(ZoneAction::Open, 16, false, &[]).unwrap();
        assert_eq!(z.counts(), (2, 2));
        assert_eq!(
            z.force_state(0, ZoneState::ReadOnly),
            Ok(ZoneState::ImplicitlyOpen)
        );
        assert_eq!(z.counts(), (1, 1));
        assert_eq!(
            z.begin_write(4, 1, false),
            Err(status::ZONE_IS_READ_ONLY.dnr())
        );
        assert_eq!(z.check_read(0, 4), Ok(()));
        // Reset of a Read Only zone is not a transition the host may ask for.
        assert_eq!(
            z.send(ZoneAction::Reset, 0, false, &[]).map(|_| ()),
            Err(status::INVALID_ZONE_STATE_TRANSITION.dnr())
        );
        assert_eq!(
            z.force_state(1, ZoneState::Offline),
            Ok(ZoneState::ExplicitlyOpen)
        );
        assert_eq!(z.counts(), (0, 0));
        assert_eq!(z.check_read(16, 1), Err(status::ZONE_IS_OFFLINE.dnr()));
        assert!(z.force_state(0, ZoneState::Full).is_err());
        assert!(z.force_state(99, ZoneState::Offline).is_err());
        let some = z.snapshot_range(1, 2);
        assert_eq!((some.len(), some[0].state), (2, ZoneState::Offline));
        assert!(z.snapshot_range(99, 5).is_empty());
    }

    #[test]
    fn restore_closes_open_zones_and_checks_the_pointer() {
        let z = zones(0, 0);
        z.restore_zone(0, ZoneState::ImplicitlyOpen, 5).unwrap();
        assert_eq!(state(&z, 0), ZoneState::Closed);
        assert_eq!(z.counts(), (0, 1));
        z.restore_zone(1, ZoneState::Closed, 16).unwrap();
        assert_eq!(state(&z, 1), ZoneState::Empty);
        assert!(z.restore_zone(2, ZoneState::Closed, 60).is_err());
        assert!(z.restore_zone(9, ZoneState::Empty, 0).is_err());
    }
}
