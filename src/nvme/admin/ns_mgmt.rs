//! Namespace Management (create, delete), Namespace Attachment (attach, detach) and
//! Format NVM: the host's data structures decoded here, the changes made by the
//! namespace table ([`crate::nvme::ns_table`]), and a Namespace Attribute Changed event
//! for every attached namespace that appears, disappears or changes format.

use crate::nvme::cmd::{FormatCmd, NsAttachmentCmd, NsManagementCmd};
use crate::nvme::ns_table::{CreateSpec, FormatSpec};
use crate::nvme::prp::{from_host, Mem};
use crate::nvme::spec::{id_ns, status, Status, CSI_NVM};
use crate::nvme::state::Shared;

/// Size of the host's data structure for create, and of a controller list.
const DATA_SIZE: usize = 4096;
/// A controller list holds at most 2047 identifiers.
const MAX_CONTROLLERS: usize = 2047;

const SEL_CREATE: u8 = 0;
const SEL_DELETE: u8 = 1;
const SEL_ATTACH: u8 = 0;
const SEL_DETACH: u8 = 1;

fn u64_at(b: &[u8], off: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(v)
}

/// The create parameters in an Identify-Namespace-shaped host structure.
pub(crate) fn create_spec(b: &[u8]) -> CreateSpec {
    let flbas = b[id_ns::FLBAS];
    CreateSpec {
        nsze: u64_at(b, id_ns::NSZE),
        ncap: u64_at(b, id_ns::NCAP),
        format: (flbas & 0xf) | ((flbas >> 1) & 0x30),
        extended: flbas & (1 << 4) != 0,
        pi: b[id_ns::DPS] & 7,
        pi_first: b[id_ns::DPS] & (1 << 3) != 0,
        shared: b[id_ns::NMIC] & 1 != 0,
    }
}

/// Namespace Management. Create returns the new nsid (completion Dword 0).
pub(super) fn manage(inner: &Shared, mem: &Mem, c: &NsManagementCmd) -> Result<u32, Status> {
    match c.sel {
        SEL_CREATE => {
            if c.csi != CSI_NVM {
                log::info!("namespace create: command set {} is not supported", c.csi);
                return Err(status::INVALID_FIELD.dnr());
            }
            let b = from_host(mem, &c.dptr, DATA_SIZE)?;
            inner.create_namespace(&create_spec(&b))
        }
        SEL_DELETE => inner.delete_namespace(c.nsid).map(|_| 0),
        sel => {
            log::info!("namespace management: SEL {sel} is reserved");
            Err(status::INVALID_FIELD.dnr())
        }
    }
}

/// The controller identifiers of a controller list (count, then identifiers).
pub(crate) fn controller_list(b: &[u8]) -> Result<Vec<u16>, Status> {
    let n = u16::from_le_bytes([b[0], b[1]]) as usize;
    if n > MAX_CONTROLLERS {
        log::info!(
            "namespace attachment: controller list of {n} entries (at most {MAX_CONTROLLERS})"
        );
        return Err(status::CONTROLLER_LIST_INVALID.dnr());
    }
    Ok((0..n)
        .map(|i| u16::from_le_bytes([b[2 + 2 * i], b[3 + 2 * i]]))
        .collect())
}

/// Namespace Attachment.
pub(super) fn attach(inner: &Shared, mem: &Mem, c: &NsAttachmentCmd) -> Result<u32, Status> {
    let attach = match c.sel {
        SEL_ATTACH => true,
        SEL_DETACH => false,
        sel => {
            log::info!("namespace attachment: SEL {sel} is reserved");
            return Err(status::INVALID_FIELD.dnr());
        }
    };
    let b = from_host(mem, &c.dptr, DATA_SIZE)?;
    let list = controller_list(&b)?;
    inner.attach_namespace(c.nsid, attach, &list).map(|_| 0)
}

/// Format NVM.
pub(super) fn format(inner: &Shared, c: &FormatCmd) -> Result<u32, Status> {
    let spec = FormatSpec {
        format: c.lbaf,
        extended: c.mset,
        pi: c.pi,
        pi_first: c.pil,
        ses: c.ses,
    };
    inner.format_namespace(c.nsid, &spec).map(|_| 0)
}
