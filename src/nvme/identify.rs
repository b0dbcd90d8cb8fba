//! The Identify command: which data structure a CNS (with its namespace id and CSI)
//! selects, and the structures themselves, built from the configuration and the
//! namespaces: Identify Controller, Identify Namespace, namespace lists, Namespace
//! Identification Descriptors, and the I/O-command-set specific and independent variants.

use std::sync::Arc;

use super::cmd::IdentifyCmd;
use super::namespace::{LbaFormat, Namespace};
use super::ns_table::CNTLID;
use super::prp::{to_host, Mem};
use super::settings::{AERL, CRITICAL_TEMPERATURE, WARNING_TEMPERATURE};
use super::state::Shared;
use super::ControllerConfig;

use super::spec::{
    cns, id_ctrl, id_ns, nidt, put_ascii, put_u16, put_u32, put_u64, status, Status, CSI_NVM,
    CSI_ZNS, NSID_ALL, NVME_VERSION,
};

/// Size of every Identify data structure.
pub const IDENTIFY_SIZE: usize = 4096;
/// Model number.
pub const MODEL: &str = "vnvme";
/// Firmware revision (8 ASCII characters at most).
pub const FIRMWARE_REVISION: &str = env!("CARGO_PKG_VERSION");

/// Optional NVM Command Support without Copy (`--ctrl copy=on` adds bit 8).
pub const ONCS_BASE: u16 = id_ctrl::ONCS_COMPARE
    | id_ctrl::ONCS_WRITE_UNCORRECTABLE
    | id_ctrl::ONCS_DSM
    | id_ctrl::ONCS_WRITE_ZEROES
    | id_ctrl::ONCS_FEATURES_SAVE_SELECT
    | id_ctrl::ONCS_TIMESTAMP
    | id_ctrl::ONCS_VERIFY;

/// Optional NVM Command Support as configured.
pub fn oncs(cfg: &ControllerConfig) -> u16 {
    if cfg.copy {
        ONCS_BASE | id_ctrl::ONCS_COPY
    } else {
        ONCS_BASE
    }
}

/// Optional Copy Formats Supported (see [`ControllerConfig::ocfs_supported`]).
pub fn ocfs(cfg: &ControllerConfig) -> u16 {
    cfg.ocfs_supported()
}

/// Runs Identify: builds the structure CNS selects and sends it to the host.
pub(crate) fn execute(inner: &Shared, mem: &Mem, c: &IdentifyCmd) -> Result<(), Status> {
    let (nsid, csi) = (c.nsid, c.csi);
    let nn = inner.nn();
    // For CNS values addressing one namespace: Invalid Namespace for 0 or > NN, all
    // zeroes for a valid but inactive id.
    let one_ns = || -> Result<Option<Arc<Namespace>>, Status> {
        if nsid == 0 || nsid > nn {
            return Err(status::INVALID_NAMESPACE.dnr());
        }
        Ok(inner.namespace(nsid))
    };
    let data = match c.cns {
        cns::NAMESPACE => {
            if nsid == NSID_ALL {
                namespace_common(inner)
            } else {
                match one_ns()? {
                    Some(ns) => namespace(&ns),
                    None => zeroes(),
                }
            }
        }
        cns::ALLOCATED_NAMESPACE => {
            if nsid == NSID_ALL {
                namespace_common(inner)
            } else {
                one_ns()?;
                match inner.namespaces.allocated(nsid) {
                    Some(ns) => namespace(&ns),
                    None => zeroes(),
                }
            }
        }
        cns::CONTROLLER => controller(inner),
        cns::ACTIVE_NS_LIST | cns::ALLOCATED_NS_LIST => {
            if nsid >= NSID_ALL - 1 {
                return Err(status::INVALID_NAMESPACE.dnr());
            }
            if c.cns == cns::ACTIVE_NS_LIST {
                ns_list(inner.namespaces().iter().map(|n| n.nsid), nsid)
            } else {
                let all = inner.namespaces.all_allocated();
                ns_list(all.iter().map(|(n, _)| n.nsid), nsid)
            }
        }
        cns::NS_CONTROLLER_LIST => {
            one_ns()?;
            let attached = inner.namespaces.is_attached(nsid);
            controller_list(attached, c.cntid)
        }
        cns::CONTROLLER_LIST => controller_list(true, c.cntid),
        cns::NS_DESCRIPTORS => match one_ns()? {
            Some(ns) => ns_descriptors(&ns, &inner.cfg.serial),
            None => return Err(status::INVALID_NAMESPACE.dnr()),
        },
        cns::CS_NAMESPACE => match (csi, one_ns()?) {
            (CSI_NVM, Some(ns)) => nvm_namespace(&ns),
            (CSI_ZNS, Some(ns)) if ns.zones().is_some() => zoned_namespace(&ns),
            // A namespace of another command set (QEMU: Invalid Field).
            (CSI_ZNS, Some(_)) => return Err(status::INVALID_FIELD.dnr()),
            (CSI_NVM | CSI_ZNS, None) => zeroes(),
            _ => return Err(status::INVALID_FIELD.dnr()),
        },
        cns::CS_CONTROLLER => match csi {
            CSI_NVM => nvm_controller(),
            CSI_ZNS => zoned_controller(inner),
            _ => return Err(status::INVALID_FIELD.dnr()),
        },
        cns::CS_ACTIVE_NS_LIST => {
            if csi != CSI_NVM && csi != CSI_ZNS {
                return Err(status::INVALID_FIELD.dnr());
            }
            if nsid >= NSID_ALL - 1 {
                return Err(status::INVALID_NAMESPACE.dnr());
            }
            // Namespaces of the NVM command set and those of command sets built on it
            // (zoned) for CSI 0; the zoned ones for CSI 2.
            let all = inner.namespaces();
            ns_list(
                all.iter()
                    .filter(|n| csi == CSI_NVM || n.csi() == csi)
                    .map(|n| n.nsid),
                nsid,
            )
        }
        cns::IO_COMMAND_SET => io_command_sets(),
        cns::CS_INDEPENDENT_NAMESPACE => match one_ns()? {
            Some(ns) => cs_independent_namespace(&ns),
            None => zeroes(),
        },
        _ => return Err(status::INVALID_FIELD.dnr()),
    };
    to_host(mem, &c.dptr, &data)
}

pub fn zeroes() -> Vec<u8> {
    vec![0u8; IDENTIFY_SIZE]
}

/// Identify Controller (CNS 1).
pub(crate) fn controller(inner: &Shared) -> Vec<u8> {
    let cfg = &inner.cfg;
    let mut b = zeroes();
    put_u16(&mut b, id_ctrl::VID, cfg.vendor_id);
    put_u16(&mut b, id_ctrl::SSVID, cfg.subsystem_vendor_id);
    put_ascii(&mut b, id_ctrl::SN, 20, &cfg.serial);
    put_ascii(&mut b, id_ctrl::MN, 40, MODEL);
    put_ascii(&mut b, id_ctrl::FR, 8, FIRMWARE_REVISION);
    b[id_ctrl::RAB] = 6;
    // IEEE OUI left zero: no vendor OUI.
    b[id_ctrl::MDTS] = cfg.mdts;
    put_u16(&mut b, id_ctrl::CNTLID, CNTLID);
    put_u32(&mut b, id_ctrl::VER, NVME_VERSION);
    put_u32(&mut b, id_ctrl::OAES, id_ctrl::OAES_NS_ATTR);
    // Extended LBA formats (Identify CNS 05h tells each format's guard), advertised only
    // when a namespace has a guard other than the 16-bit one: a Linux driver that sees
    // ELBAS sends Host Behavior Support (LBAFEE) at every start, which also clears CDFE.
    let elbas = inner.namespaces().iter().any(|ns| ns.meta().pif != 0);
    put_u32(
        &mut b,
        id_ctrl::CTRATT,
        if elbas { id_ctrl::CTRATT_ELBAS } else { 0 },
    );
    b[id_ctrl::CNTRLTYPE] = 1; // I/O controller
    put_u16(
        &mut b,
        id_ctrl::OACS,
        id_ctrl::OACS_DBBUF
            | id_ctrl::OACS_FORMAT
            | id_ctrl::OACS_NS_MGMT
            | id_ctrl::OACS_GET_LBA_STATUS,
    );
    b[id_ctrl::ACL] = 3;
    b[id_ctrl::AERL] = AERL;
    b[id_ctrl::FRMW] = 0x03; // one slot, slot 1 read-only
    b[id_ctrl::LPA] = (1 << 1) | (1 << 2); // effects log, extended data
    b[id_ctrl::ELPE] = (crate::nvme::aer::ERROR_LOG_ENTRIES - 1) as u8;
    b[id_ctrl::NPSS] = 0;
    put_u16(&mut b, id_ctrl::WCTEMP, WARNING_TEMPERATURE);
    put_u16(&mut b, id_ctrl::CCTEMP, CRITICAL_TEMPERATURE);
    let table = &inner.namespaces;
    b[id_ctrl::TNVMCAP..id_ctrl::TNVMCAP + 8].copy_from_slice(&table.capacity().to_le_bytes());
    b[id_ctrl::UNVMCAP..id_ctrl::UNVMCAP + 8].copy_from_slice(&table.unallocated().to_le_bytes());
    // FNA 0: Format NVM and its erase apply to the namespace named (or all with
    // FFFFFFFFh); no cryptographic erase.
    b[id_ctrl::FNA] = 0;
    b[id_ctrl::SQES] = 0x66;
    b[id_ctrl::CQES] = 0x44;
    put_u16(&mut b, id_ctrl::MAXCMD, 0);
    put_u32(&mut b, id_ctrl::NN, inner.nn());
    put_u16(&mut b, id_ctrl::ONCS, oncs(cfg));
    b[id_ctrl::VWC] = 0x07; // volatile write cache; Flush takes NSID FFFFFFFFh (bits 2:1 = 11b)
    put_u16(&mut b, id_ctrl::OCFS, ocfs(cfg));
    put_u32(&mut b, id_ctrl::SGLS, 1); // SGLs supported, no alignment requirement
    let nqn = format!("nqn.2024-01.io.github.vnvme:{}", cfg.serial);
    let n = nqn.len().min(256);
    b[id_ctrl::SUBNQN..id_ctrl::SUBNQN + n].copy_from_slice(&nqn.as_bytes()[..n]);
    // Power state 0: 25 W, entry/exit latency 16 us.
    put_u16(&mut b, id_ctrl::PSD0, 2500);
    put_u32(&mut b, id_ctrl::PSD0 + 4, 16);
    put_u32(&mut b, id_ctrl::PSD0 + 8, 16);
    b
}

/// NLBAF and the LBA format list (MS, LBADS, RP = 0: best performance).
fn put_lbafs(b: &mut [u8], formats: &[LbaFormat]) {
    b[id_ns::NLBAF] = formats.len().saturating_sub(1) as u8;
    for (i, f) in formats.iter().enumerate() {
        put_u32(
            b,
            id_ns::LBAF0 + 4 * i,
            (f.lbads as u32) << 16 | f.ms as u32,
        );
    }
}

/// MC and DPC: what the formats offered allow (both ways of carrying metadata, as
/// QEMU says; Types 1 to 3, PI first or last, when a format has room for a tuple).
fn put_capabilities(b: &mut [u8], formats: &[LbaFormat], tuple: usize) {
    if formats.iter().any(|f| f.ms != 0) {
        b[id_ns::MC] = 0x03;
    }
    if formats.iter().any(|f| f.ms as usize >= tuple) {
        b[id_ns::DPC] = 0x1f;
    }
}

/// Identify Namespace (CNS 0 / 0x11).
pub fn namespace(ns: &Namespace) -> Vec<u8> {
    let mut b = zeroes();
    let nsze = ns.nsze();
    put_u64(&mut b, id_ns::NSZE, nsze);
    put_u64(&mut b, id_ns::NCAP, nsze);
    put_u64(&mut b, id_ns::NUSE, nsze);
    b[id_ns::NSFEAT] = 0;
    let meta = ns.meta();
    put_lbafs(&mut b, ns.formats());
    // The format in use (bits 3:0 and 6:5); bit 4: metadata at the end of each block's
    // data (extended LBA).
    let i = ns.format_index();
    b[id_ns::FLBAS] = (i & 0xf) | ((i & 0x30) << 1) | if meta.extended { 1 << 4 } else { 0 };
    put_capabilities(&mut b, ns.formats(), meta.tuple_size());
    b[id_ns::DPS] = meta.pi | (meta.pi_first as u8) << 3;
    b[id_ns::DLFEAT] = id_ns::DLFEAT_VALUE;
    let bytes = nsze * ns.lba_format().bytes_per_block();
    b[id_ns::NVMCAP..id_ns::NVMCAP + 8].copy_from_slice(&bytes.to_le_bytes());
    let limits = ns.copy_limits();
    put_u16(&mut b, id_ns::MSSRL, limits.mssrl);
    put_u32(&mut b, id_ns::MCL, limits.mcl);
    b[id_ns::MSRC] = limits.msrc;
    b[id_ns::NSATTR] = ns.readonly() as u8;
    b[id_ns::NGUID..id_ns::NGUID + 16].copy_from_slice(&ns.nguid());
    b[id_ns::EUI64..id_ns::EUI64 + 8].copy_from_slice(&ns.eui64());
    b
}

/// Identify Namespace for NSID FFFFFFFFh: capabilities common to all namespaces, and
/// the LBA formats a namespace created at run time may use.
pub(crate) fn namespace_common(inner: &Shared) -> Vec<u8> {
    let mut b = zeroes();
    b[id_ns::DLFEAT] = id_ns::DLFEAT_VALUE;
    let formats = inner.namespaces.formats();
    put_lbafs(&mut b, formats);
    put_capabilities(&mut b, formats, 8);
    b
}

/// A namespace list: the ids greater than `after`, ascending, 1024 at most.
pub(crate) fn ns_list(ids: impl Iterator<Item = u32>, after: u32) -> Vec<u8> {
    let mut b = zeroes();
    for (i, id) in ids
        .filter(|&id| id > after)
        .take(IDENTIFY_SIZE / 4)
        .enumerate()
    {
        put_u32(&mut b, i * 4, id);
    }
    b
}

/// A controller list (CNS 12h, 13h): the number of identifiers, then the identifiers
/// not below `from` in ascending order. There is one controller; `present` says
/// whether it belongs in the list.
// CNTLID is 0 today, which makes `CNTLID >= from` look absurd to clippy; the test is
// what the spec says whatever the identifier.
#[allow(clippy::absurd_extreme_comparisons)]
pub(crate) fn controller_list(present: bool, from: u16) -> Vec<u8> {
    let mut b = zeroes();
    if present && CNTLID >= from {
        put_u16(&mut b, 0, 1);
        put_u16(&mut b, 2, CNTLID);
    }
    b
}

/// Namespace Identification Descriptor list (CNS 3): EUI64 and NGUID when configured,
/// the UUID, and the Command Set Identifier.
pub fn ns_descriptors(ns: &Namespace, serial: &str) -> Vec<u8> {
    let mut b = zeroes();
    let mut off = 0usize;
    let mut add = |b: &mut Vec<u8>, kind: u8, id: &[u8]| {
        b[off] = kind;
        b[off + 1] = id.len() as u8;
        b[off + 4..off + 4 + id.len()].copy_from_slice(id);
        off += 4 + id.len();
    };
    let eui = ns.eui64();
    if eui != [0; 8] {
        add(&mut b, nidt::EUI64, &eui);
    }
    let nguid = ns.nguid();
    if nguid != [0; 16] {
        add(&mut b, nidt::NGUID, &nguid);
    }
    add(&mut b, nidt::UUID, &ns.uuid(serial));
    add(&mut b, nidt::CSI, &[ns.csi()]);
    b
}

/// I/O Command Set data structure (CNS 1Ch): one combination, index 0, of the NVM
/// (bit 0) and Zoned Namespace (bit 2) command sets; the I/O Command Set Profile
/// feature selects index 0.
pub fn io_command_sets() -> Vec<u8> {
    let mut b = zeroes();
    put_u64(&mut b, 0, 1 | 1 << CSI_ZNS);
    b
}

/// Zoned Namespace command set Identify Namespace (CNS 5, CSI 2): ZOC 0, OZCS RAZB
/// (cross_read), MAR and MOR (0's based; FFFFFFFFh: no limit), no reset or finish
/// recommendations, and for every LBA format of the namespace's block size without
/// metadata the zone size (ZSZE) and the descriptor extension size (ZDES, 64-byte
/// units).
pub fn zoned_namespace(ns: &Namespace) -> Vec<u8> {
    const OZCS: usize = 2;
    const MAR: usize = 4;
    const MOR: usize = 8;
    const LBAFE: usize = 2816;
    let mut b = zeroes();
    let Some(z) = ns.zones() else {
        return b;
    };
    let g = z.geometry();
    put_u16(&mut b, OZCS, g.cross_read as u16);
    let zero_based = |n: u32| if n == 0 { u32::MAX } else { n - 1 };
    put_u32(&mut b, MAR, zero_based(g.max_active));
    put_u32(&mut b, MOR, zero_based(g.max_open));
    for (i, f) in ns.formats().iter().enumerate() {
        if f.block_size() == ns.block_size() && f.ms == 0 {
            put_u64(&mut b, LBAFE + 16 * i, g.zone_size);
            b[LBAFE + 16 * i + 8] = (g.ext_size / 64) as u8;
        }
    }
    b
}

/// Zoned Namespace command set Identify Controller (CNS 6, CSI 2): ZASL, the smallest
/// Zone Append Size Limit of the zoned namespaces (0: MDTS).
pub(crate) fn zoned_controller(inner: &Shared) -> Vec<u8> {
    let mut b = zeroes();
    b[0] = super::zoned::zasl(&inner.namespaces());
    b
}

/// I/O Command Set specific Identify Namespace for the NVM command set (CNS 5, CSI 0):
/// LBSTM 0 and PIC 0 (no storage tags), and the extended LBA format of format 0: STS 0
/// (bits 6:0), the protection information format (PIF, bits 8:7).
pub fn nvm_namespace(ns: &Namespace) -> Vec<u8> {
    let mut b = zeroes();
    for i in 0..ns.formats().len() {
        put_u32(&mut b, id_ns::ELBAF0 + 4 * i, (ns.meta().pif as u32) << 7);
    }
    b
}

/// I/O Command Set specific Identify Controller for the NVM command set (CNS 6, CSI 0):
/// VSL, WZSL, WUSL, DMRL, DMRSL, DMSL all zero (no limits beyond MDTS).
pub fn nvm_controller() -> Vec<u8> {
    zeroes()
}

/// I/O Command Set Independent Identify Namespace (CNS 8).
pub fn cs_independent_namespace(ns: &Namespace) -> Vec<u8> {
    let mut b = zeroes();
    b[0] = 0; // NSFEAT
    b[8] = ns.readonly() as u8; // NSATTR: write protected
    b[13] = 1; // NSTAT: namespace ready
    b
}
