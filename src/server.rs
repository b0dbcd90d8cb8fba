//! Wires one transport to one controller and its namespaces: the NVMe controller is
//! presented as a PCI function (config space, BAR0 registers, BAR4 MSI-X) and served
//! over vfio-user. In poll mode (`--ctrl poll_us`) each connection gets a fresh doorbell
//! page: a sealed memfd the size of BAR0 whose doorbell area the client may map (a
//! sparse-mmap area of BAR0) and the controller reads.

use std::collections::BTreeSet;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use crate::block::{memfd, Volume};
use crate::config::VhostUserBlkConfig;
use crate::config::{Backing, ConfigError, DeviceConfig, NamespaceConfig};
use crate::experiment::Experiment;
use crate::hooks::Hooks;
use crate::nvme::namespace::{CopyLimits, NamespaceIds, Origin};
use crate::nvme::spec::reg::DOORBELL_BASE;
use crate::nvme::DoorbellMemory;
use crate::nvme::{Controller, InterruptSink, Namespace};
use crate::pci::config_space::{COMMAND_BUS_MASTER, COMMAND_MEMORY};
use crate::pci::{BarLayout, ConfigSpace, Interrupts, PciIds};
use crate::shm::{sealed_memfd, SharedWords};
use crate::sync::lock;
use crate::vfio_user::protocol::SparseArea;
use crate::vfio_user::server::{REGION_BAR0, REGION_BAR4, REGION_CONFIG};
use crate::vfio_user::{Device, DmaMemory, RegionMmap, Server, StopHandle};

/// Class code of an NVM Express controller: mass storage, non-volatile memory, NVMe.
pub const NVME_CLASS: [u8; 3] = [0x01, 0x08, 0x02];

/// The NVMe controller as a PCI function.
pub struct NvmeFunction {
    ctrl: Arc<Controller>,
    /// Faults, latencies, counters and records: shared by every front end of the device.
    experiment: Arc<Experiment>,
    config: Mutex<ConfigSpace>,
    layout: BarLayout,
    irqs: Mutex<Option<Arc<Interrupts>>>,
    /// Poll mode (`--ctrl poll_us` > 0): BAR0's doorbell area is offered for mmap.
    poll: bool,
    /// The connected client's doorbell page (poll mode).
    doorbells: Mutex<Option<Arc<DoorbellPage>>>,
}

/// BAR0's doorbell area as shared memory: a sealed memfd of BAR0's size (file offset =
/// BAR0 offset), of which the doorbell area (from 0x1000 on) is mapped here and offered
/// to the client. Page 0 (the registers) stays trapped; the client could map it too,
/// but nothing here reads it.
struct DoorbellPage {
    file: std::fs::File,
    words: SharedWords,
}

impl DoorbellPage {
    fn new(bar0_size: u64) -> io::Result<DoorbellPage> {
        let file = sealed_memfd("vnvme-doorbells", bar0_size)?;
        let words = SharedWords::map(&file, DOORBELL_BASE, bar0_size - DOORBELL_BASE)?;
        Ok(DoorbellPage { file, words })
    }

    fn offset(i: usize) -> u64 {
        DOORBELL_BASE + 4 * i as u64
    }
}

impl DoorbellMemory for DoorbellPage {
    fn count(&self) -> usize {
        ((self.words.range().end - DOORBELL_BASE) / 4) as usize
    }
    fn load(&self, i: usize) -> u32 {
        self.words.load(Self::offset(i)).unwrap_or(0)
    }
    fn store(&self, i: usize, v: u32) {
        self.words.store(Self::offset(i), v);
    }
}

impl NvmeFunction {
    pub fn new(
        cfg: &DeviceConfig,
        ctrl: Arc<Controller>,
        experiment: Arc<Experiment>,
    ) -> NvmeFunction {
        let c = &cfg.controller;
        let layout = BarLayout {
            bar0_size: ctrl.bar0_size().next_power_of_two().max(16),
            msix_vectors: ctrl.msix_vectors().clamp(1, 2048),
        };
        let ids = PciIds {
            vendor_id: c.vendor_id,
            device_id: c.device_id,
            subsystem_vendor_id: c.subsystem_vendor_id,
            subsystem_id: c.subsystem_id,
            revision: 2,
            class: NVME_CLASS,
        };
        NvmeFunction {
            config: Mutex::new(ConfigSpace::new(&ids, layout)),
            ctrl,
            experiment,
            layout,
            irqs: Mutex::new(None),
            poll: c.poll_us > 0,
            doorbells: Mutex::new(None),
        }
    }

    /// The controller model (for the control socket and the trace).
    pub fn controller(&self) -> &Arc<Controller> {
        &self.ctrl
    }

    /// The experiment state (faults, latencies, counters, the trace observer).
    pub fn experiment(&self) -> &Arc<Experiment> {
        &self.experiment
    }

    fn config(&self) -> MutexGuard<'_, ConfigSpace> {
        lock(&self.config)
    }

    /// PCI Command bit 1, Memory Space Enable.
    fn memory_enabled(&self) -> bool {
        self.config().command() & COMMAND_MEMORY != 0
    }

    fn irqs(&self) -> Option<Arc<Interrupts>> {
        lock(&self.irqs).clone()
    }
}

impl Device for NvmeFunction {
    fn region_size(&self, index: u32) -> u64 {
        match index {
            REGION_BAR0 => self.layout.bar0_size,
            REGION_BAR4 => self.layout.bar4_size(),
            REGION_CONFIG => crate::pci::config_space::CONFIG_SPACE_SIZE as u64,
            _ => 0,
        }
    }

    fn region_mmap(&self, index: u32) -> Option<RegionMmap> {
        if index != REGION_BAR0 {
            return None;
        }
        let page = lock(&self.doorbells).clone()?;
        let file = match page.file.try_clone() {
            Ok(f) => f.into(),
            Err(e) => {
                log::warn!("doorbell page: {e}; BAR0 stays trapped");
                return None;
            }
        };
        let range = page.words.range();
        Some(RegionMmap {
            file,
            file_offset: 0,
            areas: vec![SparseArea {
                offset: range.start,
                size: range.end - range.start,
            }],
        })
    }

    fn region_read(&self, index: u32, offset: u64, data: &mut [u8]) {
        match index {
            // PCI: with Memory Space Enable clear the function does not decode its BARs;
            // a read gets all ones (as an unclaimed access does), a write is dropped.
            REGION_BAR0 if !self.memory_enabled() => {
                log::debug!("BAR0 read at {offset:#x} with memory space disabled");
                data.fill(0xff);
            }
            REGION_BAR0 => self.ctrl.mmio_read(offset, data),
            REGION_BAR4 => {
                // The client emulates the MSI-X table; the PBA shows our pending bits.
                data.fill(0);
                let pba = self.layout.pba_offset();
                if let Some(irqs) = self.irqs() {
                    let end = offset + data.len() as u64;
                    let pba_end = pba + self.layout.pba_size();
                    let lo = offset.max(pba);
                    let hi = end.min(pba_end);
                    if lo < hi {
                        let s = (lo - offset) as usize;
                        let e = (hi - offset) as usize;
                        irqs.read_pba(lo - pba, &mut data[s..e]);
                    }
                }
            }
            REGION_CONFIG => self.config().read(offset, data),
            _ => data.fill(0),
        }
    }

    fn region_write(&self, index: u32, offset: u64, data: &[u8]) {
        match index {
            REGION_BAR0 if !self.memory_enabled() => {
                log::debug!("BAR0 write at {offset:#x} dropped: memory space disabled");
            }
            REGION_BAR0 => self.ctrl.mmio_write(offset, data),
            REGION_CONFIG => {
                let bme = {
                    let mut c = self.config();
                    c.write(offset, data);
                    c.command() & COMMAND_BUS_MASTER != 0
                };
                self.ctrl.set_bus_master(bme);
            }
            _ => {}
        }
    }

    fn msix_vectors(&self) -> u16 {
        self.layout.msix_vectors
    }

    fn connect(&self, mem: DmaMemory, irqs: Arc<Interrupts>) {
        *lock(&self.irqs) = Some(irqs.clone());
        let sink: Arc<dyn InterruptSink> = irqs;
        // A fresh page per client: a previous client that kept its mapping cannot ring
        // this one's doorbells.
        let page = if self.poll {
            match DoorbellPage::new(self.layout.bar0_size) {
                Ok(p) => Some(Arc::new(p)),
                Err(e) => {
                    log::warn!("doorbell page for poll mode: {e}; doorbells stay trapped");
                    None
                }
            }
        } else {
            None
        };
        *lock(&self.doorbells) = page.clone();
        let db = page.map(|p| p as Arc<dyn DoorbellMemory>);
        self.ctrl.connect_with_doorbells(mem, sink, db);
        // A new client starts with Bus Master Enable as the config space has it (clear
        // after a reset): no DMA until it sets the bit, as PCIe requires.
        let bme = self.config().command() & COMMAND_BUS_MASTER != 0;
        self.ctrl.set_bus_master(bme);
    }

    fn disconnect(&self) {
        self.ctrl.disconnect();
        self.config().reset();
        *lock(&self.irqs) = None;
        *lock(&self.doorbells) = None;
    }

    fn reset(&self) {
        self.ctrl.reset();
        self.config().reset();
    }
}

/// Namespace ids for a list of namespaces: explicit ids first, then the lowest free ones.
pub fn assign_nsids(namespaces: &[NamespaceConfig]) -> Result<Vec<u32>, ConfigError> {
    let mut used = BTreeSet::new();
    for ns in namespaces {
        if let Some(id) = ns.nsid {
            if !used.insert(id) {
                return Err(ConfigError(format!(
                    "--ns nsid: namespace id {id} is given twice"
                )));
            }
        }
    }
    let mut next = 1u32;
    let mut out = Vec::with_capacity(namespaces.len());
    for ns in namespaces {
        let id = match ns.nsid {
            Some(id) => id,
            None => {
                while used.contains(&next) {
                    next += 1;
                }
                used.insert(next);
                next
            }
        };
        out.push(id);
    }
    Ok(out)
}

/// Opens the namespaces and builds the controller and its PCI function.
pub fn build(cfg: &DeviceConfig) -> Result<NvmeFunction, ConfigError> {
    cfg.controller.validate().map_err(ConfigError)?;
    build_on(cfg, &open_volumes(cfg)?)
}

/// Opens every `--ns` volume once, in order, with its namespace id: the wiring gives
/// the same `Arc<Volume>` to every view of a namespace (NVMe, virtio-blk).
pub fn open_volumes(cfg: &DeviceConfig) -> Result<Vec<(u32, Arc<Volume>)>, ConfigError> {
    let ids = assign_nsids(&cfg.namespaces)?;
    let mut out = Vec::with_capacity(ids.len());
    for (ns, id) in cfg.namespaces.iter().zip(ids) {
        out.push((id, open_volume(ns, id)?));
    }
    Ok(out)
}

/// As [`build`], over volumes already opened by [`open_volumes`] (shared with other
/// views of the same namespaces).
pub fn build_on(
    cfg: &DeviceConfig,
    volumes: &[(u32, Arc<Volume>)],
) -> Result<NvmeFunction, ConfigError> {
    cfg.controller.validate().map_err(ConfigError)?;
    let mut namespaces = Vec::with_capacity(volumes.len());
    for (ns, (id, v)) in cfg.namespaces.iter().zip(volumes) {
        namespaces.push(namespace_on(ns, *id, v.clone())?);
    }
    let taken: u64 = volumes.iter().map(|(_, v)| v.store().size()).sum();
    if let Some(c) = cfg.controller.capacity {
        if c < taken {
            return Err(ConfigError(format!(
                "--capacity: {c} bytes is less than the {taken} bytes the --ns namespaces take"
            )));
        }
    }
    let experiment = Arc::new(Experiment::new());
    let ctrl = Controller::new(&cfg.controller, namespaces, experiment.clone());
    Ok(NvmeFunction::new(cfg, ctrl, experiment))
}

/// Serves one `--vhost-user-blk` disk over its namespace's volume (from
/// [`open_volumes`]) on its own thread; `hooks` sees every request. Errors name the
/// option.
pub fn spawn_vhost_user_blk(
    cfg: &DeviceConfig,
    disk: &VhostUserBlkConfig,
    volumes: &[(u32, Arc<Volume>)],
    hooks: Arc<dyn Hooks>,
) -> Result<crate::vhost_user_blk::RunningDisk, ConfigError> {
    let Some((_, volume)) = volumes.iter().find(|(id, _)| *id == disk.nsid) else {
        return Err(ConfigError(format!(
            "--vhost-user-blk ns: no namespace {}",
            disk.nsid
        )));
    };
    let zoned = volumes
        .iter()
        .zip(&cfg.namespaces)
        .any(|((id, _), ns)| *id == disk.nsid && ns.zoned.is_some());
    if zoned {
        // virtio-blk writes would bypass the zone rules (write pointers, states).
        return Err(ConfigError(format!(
            "--vhost-user-blk ns: namespace {} is zoned; a virtio-blk view of a zoned namespace is not offered",
            disk.nsid
        )));
    }
    let id = crate::vhost_user_blk::spec::device_id(&cfg.controller.serial, disk.nsid);
    let d =
        crate::vhost_user_blk::Disk::new(volume.clone(), disk.nsid, disk.queues, disk.readonly, id);
    crate::vhost_user_blk::spawn(Arc::new(d), &disk.socket, hooks).map_err(|e| {
        ConfigError(format!(
            "--vhost-user-blk socket={}: {e}",
            disk.socket.display()
        ))
    })
}

/// Opens (or creates) the volume of one `--ns`. Errors name the option at fault.
pub fn open_volume(cfg: &NamespaceConfig, nsid: u32) -> Result<Arc<Volume>, ConfigError> {
    cfg.validate()?;
    let bs = cfg.logical_block_size as u64;
    let v = match &cfg.backing {
        Backing::File(path) => Volume::open_file(path, cfg.size, bs, cfg.readonly)
            .and_then(|v| v.with_metadata(cfg.ms as u64))
            .map_err(|e| ConfigError(format!("--ns file={}: {e}", path.display())))?,
        Backing::Memory => {
            let size = cfg.size.unwrap_or(memfd::DEFAULT_SIZE);
            Volume::memory(&format!("vnvme-ns{nsid}"), size, bs, cfg.readonly)
                .and_then(|v| v.with_metadata(cfg.ms as u64))
                .map_err(|e| ConfigError(format!("--ns nsid={nsid}: {e}")))?
        }
    };
    Ok(Arc::new(v))
}

/// The NVMe namespace of one `--ns` over an already opened volume (zoned with its
/// `zoned.*` geometry, checked against the volume here).
pub fn namespace_on(
    cfg: &NamespaceConfig,
    nsid: u32,
    volume: Arc<Volume>,
) -> Result<Namespace, ConfigError> {
    let zones = match &cfg.zoned {
        Some(z) => Some(z.geometry(volume.block_size(), volume.blocks())?),
        None => None,
    };
    let ids = NamespaceIds {
        uuid: cfg.uuid,
        nguid: cfg.nguid,
        eui64: cfg.eui64,
    };
    let limits = CopyLimits {
        mssrl: cfg.mssrl,
        mcl: cfg.mcl,
        msrc: cfg.msrc,
    };
    let ns = Namespace::new(nsid, volume, ids, limits)
        .with_meta(cfg.meta_format())
        .with_origin(Origin::Configured { owned: cfg.owned });
    let Some(g) = zones else {
        return Ok(ns);
    };
    let ns = ns.with_zones(g);
    match &cfg.backing {
        // The zone states live beside the file (docs/zoned.md).
        Backing::File(path) => {
            let mut side = path.clone().into_os_string();
            side.push(".zones");
            ns.with_zone_file(std::path::Path::new(&side))
                .map_err(|e| ConfigError(format!("--ns file={}: {e}", path.display())))
        }
        Backing::Memory => Ok(ns),
    }
}

/// Opens the volume of one `--ns` and makes it namespace `nsid`.
pub fn open_namespace(cfg: &NamespaceConfig, nsid: u32) -> Result<Namespace, ConfigError> {
    namespace_on(cfg, nsid, open_volume(cfg, nsid)?)
}

/// A server running on its own thread (for tests and embedding). Stops when dropped.
pub struct RunningServer {
    stop: StopHandle,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl RunningServer {
    /// Stops the server and waits for its thread.
    pub fn stop(mut self) -> io::Result<()> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> io::Result<()> {
        self.stop.stop();
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| io::Error::other("server thread panicked"))?,
            None => Ok(()),
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        let _ = self.stop_inner();
    }
}

/// Binds `socket` and serves `dev` on a new thread.
pub fn spawn(dev: NvmeFunction, socket: &Path) -> io::Result<RunningServer> {
    let server = Server::bind(socket)?;
    let stop = server.stop_handle()?;
    let thread = std::thread::Builder::new()
        .name("vfio-user".into())
        .spawn(move || server.run(&dev))?;
    Ok(RunningServer {
        stop,
        thread: Some(thread),
    })
}

#[cfg(test)]
mod open_tests {
    use super::*;

    #[test]
    fn file_errors_name_the_option() {
        let cfg = NamespaceConfig {
            backing: Backing::File("/nonexistent-dir-vnvme/x.img".into()),
            size: Some(1 << 20),
            ..Default::default()
        };
        let e = open_namespace(&cfg, 1).unwrap_err();
        assert!(
            e.0.starts_with("--ns file=/nonexistent-dir-vnvme/x.img: cannot create:"),
            "{}",
            e.0
        );
        assert!(!e.0.contains('\n'));
    }

    #[test]
    fn file_namespace_sized_from_file() {
        let p = std::env::temp_dir().join(format!("vnvme-srv-ns-{}.img", std::process::id()));
        let _ = std::fs::remove_file(&p);
        std::fs::write(&p, vec![0u8; 1 << 16]).unwrap();
        let cfg = NamespaceConfig {
            backing: Backing::File(p.clone()),
            logical_block_size: 4096,
            readonly: true,
            ..Default::default()
        };
        let ns = open_namespace(&cfg, 3).unwrap();
        assert_eq!((ns.nsze(), ns.lbads(), ns.readonly()), (16, 12, true));
        std::fs::remove_file(&p).unwrap();
    }
}
