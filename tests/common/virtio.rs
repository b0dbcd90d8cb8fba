//! A small vhost-user front end (what QEMU's vhost-user-blk-pci does) for the
//! integration tests: negotiates over the real socket with the `vhost` crate's
//! `Frontend`, hands over shared guest memory and one split virtqueue, and submits
//! virtio-blk requests one at a time, polling the used ring.

use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Instant;

use vhost::vhost_user::message::{VhostUserConfigFlags, VhostUserProtocolFeatures};
use vhost::vhost_user::{Frontend, VhostUserFrontend};
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};
use vmm_sys_util::eventfd::EventFd;

use super::{eventfd, GuestMem, TIMEOUT};

pub const T_IN: u32 = 0;
pub const T_OUT: u32 = 1;
pub const T_FLUSH: u32 = 4;
pub const T_GET_ID: u32 = 8;
pub const T_DISCARD: u32 = 11;
pub const T_WRITE_ZEROES: u32 = 13;
pub const S_OK: u8 = 0;
pub const S_IOERR: u8 = 1;
pub const S_UNSUPP: u8 = 2;
pub const F_WRITE: u16 = 2;
const F_NEXT: u16 = 1;

/// virtio feature bits the tests look at.
pub const F_RO: u64 = 1 << 5;
pub const F_FLUSH: u64 = 1 << 9;
pub const F_DISCARD: u64 = 1 << 13;
pub const F_EVENT_IDX: u64 = 1 << 29;
pub const F_VERSION_1: u64 = 1 << 32;

pub const QSIZE: u16 = 256;
const DESC: u64 = 0x0;
const AVAIL: u64 = 0x1000;
const USED: u64 = 0x2000;
pub const HDR: u64 = 0x1_0000;
pub const STATUS: u64 = 0x2_0000;
pub const DATA: u64 = 0x10_0000;
pub const MEM_SIZE: u64 = 16 << 20;

/// One descriptor as a test writes it: guest address, length, flags (F_WRITE).
#[derive(Debug, Clone, Copy)]
pub struct Desc(pub u64, pub u32, pub u16);

/// A connected, set-up virtio-blk front end with one virtqueue (queue 0).
pub struct VirtioBlk {
    pub fe: Frontend,
    pub g: GuestMem,
    pub kick: EventFd,
    pub call: EventFd,
    pub features: u64,
    pub config: Vec<u8>,
    avail_idx: u16,
    used_idx: u16,
}

impl VirtioBlk {
    /// Connects to `socket` and sets up queue 0 (all offered features acked except
    /// `drop_features`).
    pub fn connect(socket: &Path, drop_features: u64) -> VirtioBlk {
        let mut fe = Frontend::connect(socket, 16).expect("connect vhost-user socket");
        fe.set_owner().expect("set owner");
        let offered = fe.get_features().expect("get features");
        let features = offered & !drop_features;
        fe.set_features(features).expect("set features");
        let pf = fe.get_protocol_features().expect("get protocol features");
        let want = VhostUserProtocolFeatures::CONFIG
            | VhostUserProtocolFeatures::MQ
            | VhostUserProtocolFeatures::REPLY_ACK;
        assert!(pf.contains(want), "protocol features {pf:?}");
        fe.set_protocol_features(want)
            .expect("set protocol features");
        let (_, config) = fe
            .get_config(0, 60, VhostUserConfigFlags::WRITABLE, &[0u8; 60])
            .expect("get config");
        let g = GuestMem::new(0, MEM_SIZE);
        let host = g
            .mem
            .get_host_address(GuestAddress(0))
            .expect("host address") as u64;
        let region = VhostUserMemoryRegionInfo {
            guest_phys_addr: 0,
            memory_size: MEM_SIZE,
            userspace_addr: host,
            mmap_offset: 0,
            mmap_handle: g.file.as_raw_fd(),
        };
        fe.set_mem_table(&[region]).expect("set mem table");
        let (kick, call) = (eventfd(), eventfd());
        fe.set_vring_num(0, QSIZE).expect("vring num");
        fe.set_vring_addr(
            0,
            &VringConfigData {
                queue_max_size: QSIZE,
                queue_size: QSIZE,
                flags: 0,
                desc_table_addr: host + DESC,
                used_ring_addr: host + USED,
                avail_ring_addr: host + AVAIL,
                log_addr: None,
            },
        )
        .expect("vring addr");
        fe.set_vring_base(0, 0).expect("vring base");
        fe.set_vring_call(0, &call).expect("vring call");
        fe.set_vring_kick(0, &kick).expect("vring kick");
        fe.set_vring_enable(0, true).expect("vring enable");
        VirtioBlk {
            fe,
            g,
            kick,
            call,
            features,
            config: config.to_vec(),
            avail_idx: 0,
            used_idx: 0,
        }
    }

    pub fn capacity(&self) -> u64 {
        u64::from_le_bytes(self.config[0..8].try_into().unwrap())
    }

    pub fn blk_size(&self) -> u32 {
        u32::from_le_bytes(self.config[20..24].try_into().unwrap())
    }

    pub fn write_mem(&self, addr: u64, data: &[u8]) {
        self.g.mem.write_slice(data, GuestAddress(addr)).unwrap();
    }

    pub fn read_mem(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.g.mem.read_slice(&mut v, GuestAddress(addr)).unwrap();
        v
    }

    /// Writes a request header at HDR and a 0xff canary as the status byte.
    pub fn header(&self, rtype: u32, sector: u64) {
        let mut h = [0u8; 16];
        h[..4].copy_from_slice(&rtype.to_le_bytes());
        h[8..].copy_from_slice(&sector.to_le_bytes());
        self.write_mem(HDR, &h);
        self.write_mem(STATUS, &[0xff]);
    }

    /// Submits `descs` as one chain (head 0) and waits for its used entry: returns
    /// (status byte at STATUS, used length).
    pub fn submit(&mut self, descs: &[Desc]) -> (u8, u32) {
        for (i, d) in descs.iter().enumerate() {
            let last = i + 1 == descs.len();
            let flags = d.2 | if last { 0 } else { F_NEXT };
            let next = if last { 0 } else { i as u16 + 1 };
            self.put_desc(i as u16, d.0, d.1, flags, next);
        }
        self.publish(0)
    }

    /// Writes raw descriptor `i`.
    pub fn put_desc(&self, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&addr.to_le_bytes());
        b[8..12].copy_from_slice(&len.to_le_bytes());
        b[12..14].copy_from_slice(&flags.to_le_bytes());
        b[14..16].copy_from_slice(&next.to_le_bytes());
        self.write_mem(DESC + 16 * i as u64, &b);
    }

    /// Makes `head` available, kicks, waits for the used entry.
    pub fn publish(&mut self, head: u16) -> (u8, u32) {
        let slot = self.avail_idx % QSIZE;
        self.write_mem(AVAIL + 4 + 2 * slot as u64, &head.to_le_bytes());
        self.avail_idx = self.avail_idx.wrapping_add(1);
        // used_event: notify us at every completion.
        self.write_mem(AVAIL + 4 + 2 * QSIZE as u64, &self.used_idx.to_le_bytes());
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        self.write_mem(AVAIL + 2, &self.avail_idx.to_le_bytes());
        self.kick.write(1).unwrap();
        let t0 = Instant::now();
        loop {
            let idx = u16::from_le_bytes(self.read_mem(USED + 2, 2).try_into().unwrap());
            if idx != self.used_idx {
                break;
            }
            assert!(t0.elapsed() < TIMEOUT, "no used entry for head {head}");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let slot = self.used_idx % QSIZE;
        let e = self.read_mem(USED + 4 + 8 * slot as u64, 8);
        self.used_idx = self.used_idx.wrapping_add(1);
        let id = u32::from_le_bytes(e[0..4].try_into().unwrap());
        assert_eq!(id, head as u32, "used entry for another head");
        let len = u32::from_le_bytes(e[4..8].try_into().unwrap());
        (self.read_mem(STATUS, 1)[0], len)
    }

    /// Writes `data` at `sector`; returns the status.
    pub fn write(&mut self, sector: u64, data: &[u8]) -> u8 {
        self.header(T_OUT, sector);
        self.write_mem(DATA, data);
        self.submit(&[
            Desc(HDR, 16, 0),
            Desc(DATA, data.len() as u32, 0),
            Desc(STATUS, 1, F_WRITE),
        ])
        .0
    }

    /// Reads `len` bytes at `sector`.
    pub fn read(&mut self, sector: u64, len: usize) -> (u8, Vec<u8>) {
        self.header(T_IN, sector);
        self.write_mem(DATA, &vec![0xeeu8; len]);
        let (s, used) = self.submit(&[
            Desc(HDR, 16, 0),
            Desc(DATA, len as u32, F_WRITE),
            Desc(STATUS, 1, F_WRITE),
        ]);
        if s == S_OK {
            assert_eq!(used as usize, len + 1, "used length of a read");
        }
        (s, self.read_mem(DATA, len))
    }

    /// A request without data (FLUSH, or an unknown type).
    pub fn bare(&mut self, rtype: u32) -> u8 {
        self.header(rtype, 0);
        self.submit(&[Desc(HDR, 16, 0), Desc(STATUS, 1, F_WRITE)]).0
    }

    /// DISCARD or WRITE_ZEROES over (sector, sectors, flags) segments.
    pub fn ranges(&mut self, rtype: u32, segs: &[(u64, u32, u32)]) -> u8 {
        let mut b = Vec::new();
        for &(s, n, f) in segs {
            b.extend_from_slice(&s.to_le_bytes());
            b.extend_from_slice(&n.to_le_bytes());
            b.extend_from_slice(&f.to_le_bytes());
        }
        self.header(rtype, 0);
        self.write_mem(DATA, &b);
        self.submit(&[
            Desc(HDR, 16, 0),
            Desc(DATA, b.len() as u32, 0),
            Desc(STATUS, 1, F_WRITE),
        ])
        .0
    }

    pub fn get_id(&mut self) -> (u8, Vec<u8>) {
        self.header(T_GET_ID, 0);
        let (s, _) = self.submit(&[
            Desc(HDR, 16, 0),
            Desc(DATA, 20, F_WRITE),
            Desc(STATUS, 1, F_WRITE),
        ]);
        (s, self.read_mem(DATA, 20))
    }
}
