//! `vnvme bench copy`: device-side copy throughput for large copies on a namespace file.
//!
//! One run measures, on the same file and the same byte count:
//! (a) raw copy_file_range(2) between two regions of the file,
//! (b) read + write (pread/pwrite through a 1 MiB buffer),
//! (c) vnvme's Copy command: the real controller model driven through its public API
//!     (fake guest memory, admin queue, one I/O queue pair, Copy commands with
//!     maximum-size ranges), as a guest driver would.
//!
//! The source is the first half of the file (non-zero data), the destination the second
//! half. An untimed copy runs first (the first pass over fresh data is slower whatever
//! does it). Before each measurement the destination is deallocated (punch hole) and the file
//! is written back and dropped from the page cache (fdatasync + POSIX_FADV_DONTNEED), so
//! every measurement reads from the device and allocates fresh blocks; each measurement
//! ends with fdatasync (an NVMe Flush for vnvme), included in its time.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use vm_memory::{Bytes, GuestAddress, GuestAddressSpace, GuestMemoryAtomic, GuestMemoryMmap};

use vnvme::block::file::{fs_type, RAMFS_MAGIC, TMPFS_MAGIC};
use vnvme::block::{FileStore, Store, Volume, BOUNCE_LIMIT};
use vnvme::config::{ControllerConfig, NamespaceConfig};
use vnvme::nvme::spec::{admin_op, io_op, Sqe};
use vnvme::nvme::{Controller, GuestMemory, InterruptSink};

use super::{run_err, Failure};

/// Logical block size of the benchmark namespace.
const LBS: u64 = 4096;
/// Largest source range (MSSRL) the benchmark advertises.
const MSSRL: u16 = 65535;
/// Most ranges per command (MSRC + 1) the spec allows, and the default.
const MAX_RANGES: usize = 256;
const DEFAULT_RANGES: usize = 128;

#[derive(Debug, Args)]
pub struct CopyArgs {
    /// Namespace file (created if missing, kept afterwards; its first 2 × SIZE bytes are
    /// overwritten).
    /// Default: a temporary file in the current directory (or /var/tmp when that is a
    /// memory file system), removed at the end.
    #[arg(long, value_name = "PATH")]
    file: Option<PathBuf>,
    /// Bytes copied per measurement (a multiple of 4096; K/M/G suffixes).
    #[arg(long, value_name = "SIZE", default_value = "1G")]
    size: String,
    /// Blocks (4096 bytes) per source range of the Copy commands, 1 to 65535 (MSSRL).
    #[arg(long, value_name = "BLOCKS", default_value_t = MSSRL)]
    chunk: u16,
    /// Source ranges per Copy command, 1 to 256 (MSRC + 1; MCL is ranges × chunk).
    /// The guest workload of `scripts/guest-bench copy-large` is `--size 4294901760
    /// --chunk 65535 --ranges 4`.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_RANGES)]
    ranges: usize,
    /// Seconds to wait after each preparation (and after the fill) before measuring: a
    /// virtual disk gives freshly written data back faster for a while (docs/performance.md).
    #[arg(long, value_name = "SECONDS", default_value_t = 0)]
    settle: u64,
    /// Times each measurement runs (the order rotates between repeats); the reported rate
    /// is total bytes over total time.
    #[arg(long, value_name = "N", default_value_t = 3)]
    repeat: u32,
}

/// Removes a temporary benchmark file when dropped.
struct TempFile(Option<PathBuf>);

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn default_dir() -> PathBuf {
    let on_device = |p: &Path| {
        fs_type(p).is_ok_and(|t| t != TMPFS_MAGIC && t != RAMFS_MAGIC)
            && std::fs::metadata(p).is_ok_and(|m| !m.permissions().readonly())
    };
    match std::env::current_dir() {
        Ok(d) if on_device(&d) => d,
        _ => PathBuf::from("/var/tmp"),
    }
}

fn fs_name(path: &Path) -> String {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
    match fs_type(dir.unwrap_or(Path::new("."))) {
        Ok(0xef53) => "ext4".into(),
        Ok(0x5846_5342) => "xfs".into(),
        Ok(0x9123_683e) => "btrfs".into(),
        Ok(TMPFS_MAGIC) => "tmpfs".into(),
        Ok(t) => format!("fs type {t:#x}"),
        Err(_) => "unknown fs".into(),
    }
}

fn mbps(bytes: u64, t: Duration) -> f64 {
    bytes as f64 / 1e6 / t.as_secs_f64().max(1e-9)
}

pub fn bench_copy(a: &CopyArgs) -> Result<(), Failure> {
    let size =
        vnvme::cli::parse_size("bench copy", "--size", &a.size).map_err(|e| Failure::Usage(e.0))?;
    if size == 0 || size % LBS != 0 {
        return Err(Failure::Usage(format!(
            "--size: {size} is not a non-zero multiple of {LBS}"
        )));
    }
    if a.chunk == 0 {
        return Err(Failure::Usage("--chunk: must be 1 to 65535".into()));
    }
    if a.repeat == 0 {
        return Err(Failure::Usage("--repeat: must be at least 1".into()));
    }
    if !(1..=MAX_RANGES).contains(&a.ranges) {
        return Err(Failure::Usage(format!(
            "--ranges: {} is not 1 to {MAX_RANGES}",
            a.ranges
        )));
    }
    let (path, _guard) = match &a.file {
        Some(p) => (p.clone(), TempFile(None)),
        None => {
            let p = default_dir().join(format!("vnvme-bench-{}.img", std::process::id()));
            (p.clone(), TempFile(Some(p)))
        }
    };
    let store = Arc::new(
        FileStore::open(&path, Some(2 * size), false)
            .map_err(|e| Failure::Run(format!("--file {}: {e}", path.display())))?,
    );
    println!(
        "vnvme bench copy: {} ({}), {:.1} MiB per copy, repeat {}",
        path.display(),
        fs_name(&path),
        size as f64 / (1u64 << 20) as f64,
        a.repeat
    );
    println!(
        "cache: one untimed warm-up copy first; before each measurement the destination is \
         deallocated and the file is written back and dropped from the page cache \
         (fdatasync + POSIX_FADV_DONTNEED); each measurement ends with fdatasync \
         (vnvme: NVMe Flush), included in its time; {} s of rest after each preparation",
        a.settle
    );
    let settle = || std::thread::sleep(Duration::from_secs(a.settle));
    fill(&store, size).map_err(run_err("filling the source"))?;
    settle();
    // The first pass over freshly written data is slower whatever does it (the host's
    // write-back of the fill, allocation): one untimed pass first.
    prepare(&store, size).map_err(run_err("preparing"))?;
    raw_copy(
        &store,
        size,
        a.chunk as u64 * LBS,
        a.ranges,
        &mut Vec::new(),
    )?;

    let mut dev = Device::new(store.clone(), size, a.chunk, a.ranges)?;
    let mut times = [Duration::ZERO; 3];
    // Per command: each vnvme Copy, and each group of `ranges` raw calls (the same bytes).
    let (mut raw_cmds, mut dev_cmds) = (Vec::new(), Vec::new());
    let piece = a.chunk as u64 * LBS;
    for r in 0..a.repeat as usize {
        // Rotate the order between repeats so that none always runs first.
        for k in (0..3).map(|i| (i + r) % 3) {
            prepare(&store, size).map_err(run_err("preparing"))?;
            settle();
            let start = Instant::now();
            match k {
                0 => raw_copy(&store, size, piece, a.ranges, &mut raw_cmds)?,
                1 => read_write(&store, size).map_err(run_err("read+write"))?,
                _ => dev.copy_all(&mut dev_cmds)?,
            }
            times[k] += start.elapsed();
            verify(&store, size).map_err(|m| Failure::Run(format!("measurement {k}: {m}")))?;
        }
    }
    let total = size * a.repeat as u64;
    let [raw, rw, vn] = times.map(|t| mbps(total, t));
    println!(
        "raw copy_file_range:        {raw:9.1} MB/s  ({:.3} s; calls of {} bytes)",
        times[0].as_secs_f64(),
        piece
    );
    println!(
        "read+write (1 MiB buffer):  {rw:9.1} MB/s  ({:.3} s)",
        times[1].as_secs_f64()
    );
    println!(
        "vnvme Copy:                 {vn:9.1} MB/s  ({:.3} s; {} command(s) of up to {} ranges of {} blocks of {LBS} B per copy)",
        times[2].as_secs_f64(),
        dev.commands_per_copy(),
        a.ranges,
        a.chunk
    );
    println!(
        "per command ({} ranges): raw copy_file_range median {:.3} ms, p99 {:.3} ms; \
         vnvme Copy (model, fetch to completion) median {:.3} ms, p99 {:.3} ms",
        a.ranges,
        quantile_ms(&mut raw_cmds, 0.5),
        quantile_ms(&mut raw_cmds, 0.99),
        quantile_ms(&mut dev_cmds, 0.5),
        quantile_ms(&mut dev_cmds, 0.99)
    );
    println!(
        "ratios: vnvme/raw {:.2}, vnvme/read+write {:.2}",
        vn / raw,
        vn / rw
    );
    Ok(())
}

/// Non-zero source data: a pseudo-random MiB, stamped with its index per MiB.
fn fill(store: &FileStore, size: u64) -> std::io::Result<()> {
    let mut buf = vec![0u8; BOUNCE_LIMIT];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for b in buf.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = (x as u8) | 1;
    }
    let mut off = 0u64;
    while off < size {
        let n = (size - off).min(buf.len() as u64) as usize;
        buf[..8].copy_from_slice(&(off | 1).to_le_bytes());
        store.write(off, &buf[..n])?;
        off += n as u64;
    }
    store.drop_cache()
}

fn prepare(store: &FileStore, size: u64) -> std::io::Result<()> {
    store.punch_hole(size, size)?;
    store.drop_cache()
}

/// The `q` quantile of `v` in milliseconds (0 when empty).
fn quantile_ms(v: &mut [Duration], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort();
    let i = ((v.len() - 1) as f64 * q).round() as usize;
    v[i].as_secs_f64() * 1e3
}

/// (a) copy_file_range between the two halves in pieces of `piece` bytes (the size of
/// one Copy source range, so that both issue the same system calls), then fdatasync.
/// Pushes the time of every `ranges` pieces (one Copy command's worth) to `per_command`.
fn raw_copy(
    store: &FileStore,
    size: u64,
    piece: u64,
    ranges: usize,
    per_command: &mut Vec<Duration>,
) -> Result<(), Failure> {
    let fd = store.raw_fd().unwrap_or(-1);
    let mut off = 0u64;
    let mut group = (Instant::now(), 0usize);
    while off < size {
        if group.1 == ranges {
            per_command.push(group.0.elapsed());
            group = (Instant::now(), 0);
        }
        group.1 += 1;
        let n = (size - off).min(piece);
        let done = store.kernel_copy(fd, off, size + off, n);
        if done < n {
            return Err(Failure::Run(format!(
                "copy_file_range stopped at byte {} of {size} (not supported here?)",
                off + done
            )));
        }
        off += n;
    }
    per_command.push(group.0.elapsed());
    store.flush().map_err(run_err("fdatasync"))
}

/// (b) pread + pwrite through a 1 MiB buffer, then fdatasync.
fn read_write(store: &FileStore, size: u64) -> std::io::Result<()> {
    let mut buf = vec![0u8; BOUNCE_LIMIT];
    let mut off = 0u64;
    while off < size {
        let n = (size - off).min(buf.len() as u64) as usize;
        store.read(off, &mut buf[..n])?;
        store.write(size + off, &buf[..n])?;
        off += n as u64;
    }
    store.flush()
}

/// Compares samples of the source and the destination (and checks they are not zero).
fn verify(store: &FileStore, size: u64) -> Result<(), String> {
    let mut s = vec![0u8; LBS as usize];
    let mut d = vec![0u8; LBS as usize];
    let blocks = size / LBS;
    for i in 0..=16u64 {
        let off = (blocks - 1) * i / 16 * LBS;
        store.read(off, &mut s).map_err(|e| e.to_string())?;
        store.read(size + off, &mut d).map_err(|e| e.to_string())?;
        if s != d || s.iter().all(|&b| b == 0) {
            return Err(format!("destination differs from the source at byte {off}"));
        }
    }
    Ok(())
}

/// Interrupts are not used: completions are polled.
struct NoInterrupts;

impl InterruptSink for NoInterrupts {
    fn raise(&self, _vector: u16) {}
}

/// Guest memory layout of the benchmark host.
const ASQ: u64 = 0x1000;
const ACQ: u64 = 0x2000;
const IOCQ: u64 = 0x3000;
const IOSQ: u64 = 0x4000;
const RANGE_LIST: u64 = 0x10000;
const QUEUE_SIZE: u32 = 8;
const MEM_SIZE: usize = 1 << 20;
const TIMEOUT: Duration = Duration::from_secs(600);

/// A minimal host driving the controller model: registers through mmio, commands in
/// fake guest memory, completions polled.
struct Device {
    ctrl: Arc<Controller>,
    mem: GuestMemory,
    tails: [u32; 2],
    heads: [u32; 2],
    phases: [bool; 2],
    /// Copy commands (range descriptors, destination LBA) that copy the whole source.
    commands: Vec<(Vec<u8>, u64)>,
    /// First destination LBA: the middle of the namespace.
    dest_base: u64,
}

impl Device {
    fn new(store: Arc<FileStore>, size: u64, chunk: u16, ranges: usize) -> Result<Device, Failure> {
        let cfg = NamespaceConfig {
            logical_block_size: LBS as u32,
            mssrl: MSSRL,
            mcl: MSSRL as u32 * ranges as u32,
            msrc: (ranges - 1) as u8,
            ..Default::default()
        };
        let volume = Volume::new("bench".into(), store, LBS, false)
            .map_err(|e| Failure::Run(e.to_string()))?;
        let ns = vnvme::server::namespace_on(&cfg, 1, Arc::new(volume))
            .map_err(|e| Failure::Run(e.to_string()))?;
        let ccfg = ControllerConfig {
            max_ioqpairs: 1,
            ..Default::default()
        };
        let ctrl = Controller::new(&ccfg, vec![ns], Arc::new(vnvme::hooks::NoHooks));
        let m = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), MEM_SIZE)])
            .map_err(run_err("guest memory"))?;
        let mem = GuestMemoryAtomic::new(m);
        ctrl.connect(mem.clone(), Arc::new(NoInterrupts));
        let mut d = Device {
            ctrl,
            mem,
            tails: [0; 2],
            heads: [0; 2],
            phases: [true; 2],
            commands: Vec::new(),
            dest_base: size / LBS,
        };
        d.enable()?;
        d.commands = plan(size / LBS, chunk as u64, ranges);
        Ok(d)
    }

    fn w32(&self, off: u64, v: u32) {
        self.ctrl.mmio_write(off, &v.to_le_bytes());
    }

    fn enable(&mut self) -> Result<(), Failure> {
        let q = QUEUE_SIZE - 1;
        self.w32(0x24, q | (q << 16)); // AQA
        self.ctrl.mmio_write(0x28, &ASQ.to_le_bytes());
        self.ctrl.mmio_write(0x30, &ACQ.to_le_bytes());
        self.w32(0x14, 1 | (6 << 16) | (4 << 20)); // CC: EN, IOSQES 6, IOCQES 4
        let start = Instant::now();
        while self.ctrl.csts() & 1 == 0 {
            if start.elapsed() > Duration::from_secs(5) {
                return Err(Failure::Run("the controller did not become ready".into()));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let qsize = (QUEUE_SIZE - 1) << 16;
        self.command(
            0,
            Sqe {
                opcode: admin_op::CREATE_IO_CQ,
                dptr1: IOCQ,
                cdw10: 1 | qsize,
                cdw11: 1, // physically contiguous, no interrupts
                ..Default::default()
            },
        )?;
        self.command(
            0,
            Sqe {
                opcode: admin_op::CREATE_IO_SQ,
                dptr1: IOSQ,
                cdw10: 1 | qsize,
                cdw11: 1 | (1 << 16),
                ..Default::default()
            },
        )?;
        Ok(())
    }

    /// Submits one command on queue `qid` and waits for its completion.
    fn command(&mut self, qid: usize, mut sqe: Sqe) -> Result<u32, Failure> {
        let (sq, cq) = if qid == 0 { (ASQ, ACQ) } else { (IOSQ, IOCQ) };
        sqe.cid = self.tails[qid] as u16;
        let m = self.mem.memory();
        m.write_slice(
            &sqe.to_bytes(),
            GuestAddress(sq + self.tails[qid] as u64 * 64),
        )
        .map_err(run_err("guest memory"))?;
        self.tails[qid] = (self.tails[qid] + 1) % QUEUE_SIZE;
        self.w32(0x1000 + 8 * qid as u64, self.tails[qid]);
        let entry = cq + self.heads[qid] as u64 * 16;
        let start = Instant::now();
        let mut spins = 0u32;
        loop {
            let dw3: u32 = m
                .read_obj(GuestAddress(entry + 12))
                .map_err(run_err("guest memory"))?;
            if ((dw3 >> 16) & 1 == 1) == self.phases[qid] {
                let dw0: u32 = m
                    .read_obj(GuestAddress(entry))
                    .map_err(run_err("guest memory"))?;
                self.heads[qid] = (self.heads[qid] + 1) % QUEUE_SIZE;
                if self.heads[qid] == 0 {
                    self.phases[qid] = !self.phases[qid];
                }
                self.w32(0x1000 + 8 * qid as u64 + 4, self.heads[qid]);
                let status = (dw3 >> 17) & 0x7fff;
                if status != 0 {
                    return Err(Failure::Run(format!(
                        "opcode {:#x} failed with status {status:#x} (Dword 0 {dw0})",
                        sqe.opcode
                    )));
                }
                return Ok(dw0);
            }
            if start.elapsed() > TIMEOUT {
                return Err(Failure::Run(format!(
                    "no completion for opcode {:#x}",
                    sqe.opcode
                )));
            }
            spins += 1;
            if spins < 1000 {
                std::hint::spin_loop();
            } else {
                std::thread::sleep(Duration::from_micros(50));
            }
        }
    }

    fn commands_per_copy(&self) -> usize {
        self.commands.len()
    }

    /// (c) The whole source copied to the destination by Copy commands, then a Flush.
    /// Pushes each Copy command's time (submission to completion) to `per_command`.
    fn copy_all(&mut self, per_command: &mut Vec<Duration>) -> Result<(), Failure> {
        let dest_base = self.dest_base;
        for i in 0..self.commands.len() {
            let (list, dlba) = &self.commands[i];
            let nr = (list.len() / 32 - 1) as u32;
            let sdlba = dest_base + dlba;
            self.mem
                .memory()
                .write_slice(list, GuestAddress(RANGE_LIST))
                .map_err(run_err("guest memory"))?;
            let start = Instant::now();
            self.command(
                1,
                Sqe {
                    opcode: io_op::COPY,
                    nsid: 1,
                    dptr1: RANGE_LIST,
                    cdw10: sdlba as u32,
                    cdw11: (sdlba >> 32) as u32,
                    cdw12: nr, // format 0
                    ..Default::default()
                },
            )?;
            per_command.push(start.elapsed());
        }
        self.command(
            1,
            Sqe {
                opcode: io_op::FLUSH,
                nsid: 1,
                ..Default::default()
            },
        )?;
        Ok(())
    }
}

/// Splits `blocks` source blocks into ranges of `chunk` blocks, `ranges` ranges per
/// command. Returns each command's descriptor list (format 0) and its destination offset.
fn plan(blocks: u64, chunk: u64, ranges: usize) -> Vec<(Vec<u8>, u64)> {
    let mut out = Vec::new();
    let mut lba = 0u64;
    while lba < blocks {
        let start = lba;
        let mut list = Vec::new();
        while lba < blocks && list.len() < ranges * 32 {
            let n = (blocks - lba).min(chunk);
            let mut d = [0u8; 32];
            d[8..16].copy_from_slice(&lba.to_le_bytes());
            d[16..18].copy_from_slice(&((n - 1) as u16).to_le_bytes());
            list.extend_from_slice(&d);
            lba += n;
        }
        out.push((list, start));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (slba, blocks) of each descriptor of a planned command.
    fn ranges_of(list: &[u8]) -> Vec<(u64, u64)> {
        list.chunks_exact(32)
            .map(|d| {
                let slba = u64::from_le_bytes(d[8..16].try_into().unwrap_or([0; 8]));
                (slba, u16::from_le_bytes([d[16], d[17]]) as u64 + 1)
            })
            .collect()
    }

    #[test]
    fn plan_cuts_ranges_of_chunk_blocks_and_commands_of_n_ranges() {
        let p = plan(10, 3, 2);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].1, 0);
        assert_eq!(ranges_of(&p[0].0), vec![(0, 3), (3, 3)]);
        assert_eq!(p[1].1, 6);
        assert_eq!(ranges_of(&p[1].0), vec![(6, 3), (9, 1)]);
        // The guest workload: 4 commands of 4 ranges of 65535 blocks.
        let p = plan(16 * 65535, 65535, 4);
        assert_eq!(p.len(), 4);
        assert!(p.iter().all(|(l, _)| ranges_of(l).len() == 4));
        assert_eq!(p[3].1, 12 * 65535);
    }

    #[test]
    fn quantiles_of_durations() {
        let mut v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile_ms(&mut v, 0.5), 51.0);
        assert_eq!(quantile_ms(&mut v, 0.99), 99.0);
        assert_eq!(quantile_ms(&mut [], 0.5), 0.0);
    }
}
