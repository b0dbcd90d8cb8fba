//! `vnvme bench io`: block I/O through vnvme over the real vfio-user socket, against the
//! same pattern done natively with io_uring on the same file, in one run.
//!
//! The vnvme side is the shared host driver ([`Driver`]) on the library's vfio-user bus
//! ([`VfioUserBus`]), as QEMU's `vfio-user-pci` and a guest's NVMe driver would be: guest
//! RAM a shared memfd DMA-mapped to the server, N I/O queue pairs with QD commands kept in
//! flight on each, MSI-X on eventfds (or `--poll`), shadow doorbells (Doorbell Buffer
//! Config with EventIdx) on or off, completion heads rung once per reaped batch; with
//! `--device-poll-us N` the started vnvme runs in poll mode (`--ctrl poll_us=N`) and the
//! bus maps its doorbell page, so doorbells are memory stores, not messages. The
//! native side is one io_uring per job (N jobs × QD), O_DIRECT and buffered.
//!
//! Rounds alternate vnvme / native O_DIRECT / native buffered; the report gives the median
//! of each figure over the rounds. Every completion's status is checked; any error fails
//! the run (exit 1) after the report. Every wait is bounded.

#![forbid(unsafe_code)]

use super::rng::Rng;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use serde_json::{json, Value};
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::EventFd;

use vnvme::host::driver::{Cqe, Driver, DriverError};
use vnvme::host::{rw, BusOptions, VfioUserBus, PAGE};
use vnvme::nvme::spec::{id_ctrl, id_ns, io_op, CQE_SIZE, SQE_SIZE};

use super::uring::Ring;
use super::Failure;

/// How long any one command (vnvme or native) may take before the run fails.
const CMD_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest transfer of the untimed fill through vnvme.
const FILL_BS: u64 = 128 << 10;
/// Most guest RAM the bench asks for (queues × QD × buffer size and the rest).
const MAX_GUEST_RAM: u64 = 1 << 30;
/// The byte every written buffer holds (non-zero data).
const FILL_BYTE: u8 = 0xa5;
/// Clock ticks per second of /proc/PID/stat (USER_HZ, 100 on Linux).
const USER_HZ: f64 = 100.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Pattern {
    Randread,
    Randwrite,
    Seqread,
    Seqwrite,
}

impl Pattern {
    fn write(self) -> bool {
        matches!(self, Pattern::Randwrite | Pattern::Seqwrite)
    }
    fn random(self) -> bool {
        matches!(self, Pattern::Randread | Pattern::Randwrite)
    }
    fn name(self) -> &'static str {
        match self {
            Pattern::Randread => "randread",
            Pattern::Randwrite => "randwrite",
            Pattern::Seqread => "seqread",
            Pattern::Seqwrite => "seqwrite",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Threads {
    /// One thread drives every queue (submits to each, reaps each, sleeps on all vectors).
    One,
    /// One thread per queue, sharing the driver (and its socket) under a lock.
    PerQueue,
}

#[derive(Debug, Args)]
pub struct IoArgs {
    /// A running vnvme's vfio-user socket (its namespace 1 is used). Default: the bench
    /// starts its own vnvme (this binary) and kills it at the end.
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Namespace file: the started vnvme serves it (created or extended to --size), and the
    /// native rounds run on it. With --socket: the file that vnvme serves, for the native
    /// rounds (else they run on a memfd of the namespace's size).
    #[arg(long, value_name = "PATH")]
    ns_file: Option<PathBuf>,
    /// The started vnvme's namespace lives in a memfd of SIZE (the default, 1G); the native
    /// rounds run on a memfd of the same size.
    #[arg(long, value_name = "SIZE")]
    memory: Option<String>,
    /// Size of the --ns-file namespace.
    #[arg(long, value_name = "SIZE", default_value = "1G")]
    size: String,
    /// Logical block size of the started vnvme's namespace (512 or 4096).
    #[arg(long, value_name = "BYTES", default_value_t = 4096)]
    lbs: u32,
    #[arg(long, value_enum, default_value_t = Pattern::Randread)]
    pattern: Pattern,
    /// Bytes per I/O (a multiple of 4096; K/M suffixes).
    #[arg(long, value_name = "SIZE", default_value = "4k")]
    bs: String,
    /// I/O queue pairs (native: jobs, one io_uring each).
    #[arg(long, value_name = "N", default_value_t = 4)]
    queues: u16,
    /// Commands kept in flight per queue (native: per ring).
    #[arg(long, value_name = "N", default_value_t = 32)]
    qd: u16,
    /// Seconds per measurement.
    #[arg(long, value_name = "S", default_value_t = 10)]
    secs: u64,
    /// Rounds; each runs vnvme, native O_DIRECT and native buffered, in that order.
    #[arg(long, value_name = "R", default_value_t = 3)]
    rounds: u32,
    /// Poll the completion queues instead of sleeping on MSI-X eventfds.
    #[arg(long)]
    poll: bool,
    /// Start vnvme in poll mode (`--ctrl poll_us=N`: the doorbells as a mapped page,
    /// polled N µs after each queue's last command); the bus maps the page.
    #[arg(long, value_name = "N")]
    device_poll_us: Option<u32>,
    /// Shadow doorbells (Doorbell Buffer Config with EventIdx, as Linux uses them).
    #[arg(long, value_enum, default_value_t = OnOff::On)]
    dbbuf: OnOff,
    /// How the vnvme side's driver threads are arranged.
    #[arg(long, value_enum, default_value_t = Threads::One)]
    threads: Threads,
    /// Skip the native rounds (vnvme only).
    #[arg(long)]
    no_native: bool,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

/// What the run was given, checked.
struct Plan {
    pattern: Pattern,
    bs: u64,
    queues: u16,
    qd: u16,
    secs: u64,
    rounds: u32,
}

fn usage(m: impl Into<String>) -> Failure {
    Failure::Usage(m.into())
}

fn run(m: impl Into<String>) -> Failure {
    Failure::Run(m.into())
}

fn drv_err(what: &str) -> impl FnOnce(DriverError) -> Failure + '_ {
    move |e| Failure::Run(format!("{what}: {e}"))
}

fn size_of(opt: &str, v: &str) -> Result<u64, Failure> {
    vnvme::cli::parse_size(opt, "", v).map_err(|e| usage(e.0.replace("  ", " ")))
}

/// Where one job (queue or ring) puts its I/Os: random over the whole region, or
/// sequential through its own stripe of it (wrapping, or once for the fill).
struct Offsets {
    rng: Rng,
    random: bool,
    bs: u64,
    /// Whole region in units of `bs`.
    units: u64,
    stripe: (u64, u64),
    next: u64,
    once: bool,
}

impl Offsets {
    fn new(random: bool, bs: u64, region: u64, job: u64, jobs: u64, once: bool) -> Offsets {
        let units = (region / bs).max(1);
        let per = units.div_ceil(jobs.max(1));
        let start = (job * per).min(units);
        let end = ((job + 1) * per).min(units);
        Offsets {
            rng: Rng(0x5eed ^ (job + 1).wrapping_mul(0x1000_0001)),
            random,
            bs,
            units,
            stripe: (start, end),
            next: start,
            once,
        }
    }
    fn next(&mut self) -> Option<u64> {
        if self.random {
            return Some(self.rng.next() % self.units * self.bs);
        }
        if self.next >= self.stripe.1 {
            if self.once || self.stripe.0 >= self.stripe.1 {
                return None;
            }
            self.next = self.stripe.0;
        }
        let o = self.next * self.bs;
        self.next += 1;
        Some(o)
    }
}

/// Latencies in nanoseconds, 64 buckets per power of two (about 1.5 % resolution),
/// bounded memory whatever the count.
#[derive(Clone)]
struct Hist {
    buckets: Vec<u64>,
    count: u64,
    sum_ns: u128,
}

impl Hist {
    fn new() -> Hist {
        Hist {
            buckets: vec![0; 64 * 60],
            count: 0,
            sum_ns: 0,
        }
    }
    fn index(v: u64) -> usize {
        if v < 64 {
            return v as usize;
        }
        let e = 63 - v.leading_zeros() as u64; // >= 6
        let sub = (v >> (e - 6)) & 63;
        ((e - 5) * 64 + sub) as usize
    }
    /// Lower edge of bucket `i`.
    fn value(i: usize) -> u64 {
        if i < 64 {
            return i as u64;
        }
        let (e, sub) = ((i / 64) as u64 + 5, (i % 64) as u64);
        (64 + sub) << (e - 6)
    }
    fn add(&mut self, d: Duration) {
        let ns = d.as_nanos().min(u64::MAX as u128) as u64;
        let i = Hist::index(ns).min(self.buckets.len() - 1);
        self.buckets[i] += 1;
        self.count += 1;
        self.sum_ns += ns as u128;
    }
    fn merge(&mut self, o: &Hist) {
        for (a, b) in self.buckets.iter_mut().zip(&o.buckets) {
            *a += b;
        }
        self.count += o.count;
        self.sum_ns += o.sum_ns;
    }
    fn mean_us(&self) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        self.sum_ns as f64 / self.count as f64 / 1000.0
    }
    fn quantile_us(&self, q: f64) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        let want = ((self.count as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, &n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= want {
                return Hist::value(i) as f64 / 1000.0;
            }
        }
        0.0
    }
}

/// What one measurement (one mode, one round) saw.
#[derive(Clone)]
struct Sample {
    ios: u64,
    errors: u64,
    first_error: Option<String>,
    secs: f64,
    hist: Hist,
    /// CPU seconds of the vnvme process (when the bench started it).
    device_cpu: Option<f64>,
    /// CPU seconds of this process (the driver, or io_uring's submitters).
    bench_cpu: f64,
    messages: u64,
    doorbells: u64,
    mapped_doorbells: u64,
    interrupts: u64,
}

impl Sample {
    fn new() -> Sample {
        Sample {
            ios: 0,
            errors: 0,
            first_error: None,
            secs: 0.0,
            hist: Hist::new(),
            device_cpu: None,
            bench_cpu: 0.0,
            messages: 0,
            doorbells: 0,
            mapped_doorbells: 0,
            interrupts: 0,
        }
    }
    fn error(&mut self, what: String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(what);
        }
    }
    fn merge(&mut self, o: &Sample) {
        self.ios += o.ios;
        self.errors += o.errors;
        if self.first_error.is_none() {
            self.first_error = o.first_error.clone();
        }
        self.hist.merge(&o.hist);
        self.interrupts += o.interrupts;
    }
    fn iops(&self) -> f64 {
        if self.secs > 0.0 {
            self.ios as f64 / self.secs
        } else {
            0.0
        }
    }
}

/// utime + stime of process `pid` in seconds, from /proc/PID/stat.
fn cpu_secs(pid: &str) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ut: u64 = f.get(11)?.parse().ok()?;
    let st: u64 = f.get(12)?.parse().ok()?;
    Some((ut + st) as f64 / USER_HZ)
}

// --- the vnvme server ---

/// A vnvme child process, killed (by its own id) and reaped when dropped.
struct ChildServer {
    child: Child,
    dir: PathBuf,
    log: PathBuf,
}

impl ChildServer {
    fn start(ns: &str, ctrl: Option<String>) -> Result<(ChildServer, PathBuf), Failure> {
        let dir = std::env::temp_dir().join(format!("vnvme-bench-io.{}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .map_err(|e| run(format!("creating {}: {e}", dir.display())))?;
        let socket = dir.join("vnvme.sock");
        let _ = std::fs::remove_file(&socket);
        let log = dir.join("vnvme.log");
        let log_file =
            File::create(&log).map_err(|e| run(format!("creating {}: {e}", log.display())))?;
        let exe = std::env::current_exe().map_err(|e| run(format!("this binary: {e}")))?;
        let mut cmd = Command::new(exe);
        cmd.arg("--socket").arg(&socket).arg("--ns").arg(ns);
        if let Some(c) = ctrl {
            cmd.arg("--ctrl").arg(c);
        }
        let child = cmd
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .map_err(|e| run(format!("starting vnvme: {e}")))?;
        Ok((ChildServer { child, dir, log }, socket))
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// Why the child is gone, if it is.
    fn gone(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(st)) => {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                let last = log.lines().last().unwrap_or("").to_string();
                Some(format!("vnvme exited ({st}): {last}"))
            }
            _ => None,
        }
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// --- the vnvme side ---

#[derive(Clone, Copy)]
struct Slot {
    buf: u64,
    prp_list: u64,
}

struct Queue {
    qid: u16,
    slots: Vec<Slot>,
    free: Vec<usize>,
    inflight: HashMap<u16, (usize, Instant)>,
    irq: Option<EventFd>,
}

/// The controller as set up: driver, namespace 1, queues.
struct Nvme {
    drv: Mutex<Driver<VfioUserBus>>,
    queues: Vec<Queue>,
    nsid: u32,
    lbs: u64,
    region: u64,
    max_bytes: u64,
}

/// Sleeps on the eventfds of a set of queues.
struct Waiter {
    ep: Epoll,
    events: Vec<EpollEvent>,
}

impl Waiter {
    fn new(queues: &[Queue]) -> Result<Option<Waiter>, Failure> {
        let fds: Vec<(usize, &EventFd)> = queues
            .iter()
            .enumerate()
            .filter_map(|(i, q)| q.irq.as_ref().map(|e| (i, e)))
            .collect();
        if fds.is_empty() {
            return Ok(None);
        }
        let ep = Epoll::new().map_err(|e| run(format!("epoll: {e}")))?;
        for &(i, e) in &fds {
            ep.ctl(
                ControlOperation::Add,
                e.as_raw_fd(),
                EpollEvent::new(EventSet::IN, i as u64),
            )
            .map_err(|e| run(format!("epoll: {e}")))?;
        }
        Ok(Some(Waiter {
            ep,
            events: vec![EpollEvent::default(); fds.len()],
        }))
    }

    /// Waits up to `ms` for any vector; consumes what fired; returns how many fired.
    fn wait(&mut self, queues: &[Queue], ms: i32) -> Result<u64, Failure> {
        let n = match self.ep.wait(ms, &mut self.events) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => 0,
            Err(e) => return Err(run(format!("waiting for interrupts: {e}"))),
        };
        let mut fired = 0;
        for ev in &self.events[..n] {
            if let Some(e) = queues.get(ev.data() as usize).and_then(|q| q.irq.as_ref()) {
                match e.read() {
                    Ok(k) => fired += k,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(run(format!("reading an interrupt eventfd: {e}"))),
                }
            }
        }
        Ok(fired)
    }
}

fn lock<'a>(
    m: &'a Mutex<Driver<VfioUserBus>>,
) -> Result<std::sync::MutexGuard<'a, Driver<VfioUserBus>>, Failure> {
    m.lock().map_err(|_| run("a driver thread panicked"))
}

fn le32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

fn le64(b: &[u8], o: usize) -> u64 {
    (le32(b, o) as u64) | ((le32(b, o + 4) as u64) << 32)
}

impl Nvme {
    fn connect(socket: &Path, p: &Plan, a: &IoArgs) -> Result<Nvme, Failure> {
        let entries = p.qd as u32 + 1;
        let slot_bytes = p.bs.max(FILL_BS);
        let per_queue = (entries as u64 * SQE_SIZE).next_multiple_of(PAGE)
            + (entries as u64 * CQE_SIZE).next_multiple_of(PAGE)
            + p.qd as u64 * (slot_bytes + PAGE);
        let need = p.queues as u64 * per_queue + 16 * PAGE;
        if need > MAX_GUEST_RAM {
            return Err(usage(format!(
                "--queues {} × --qd {} × --bs {} needs {} MiB of guest RAM, more than {} MiB",
                p.queues,
                p.qd,
                p.bs,
                need >> 20,
                MAX_GUEST_RAM >> 20
            )));
        }
        let opts = BusOptions {
            guest_size: need.next_multiple_of(1 << 20),
            timeout: CMD_TIMEOUT,
            interrupts: !a.poll,
            ..Default::default()
        };
        let bus = VfioUserBus::connect(socket, &opts)
            .map_err(|e| run(format!("--socket {}: {e}", socket.display())))?;
        let ram = bus.ram();
        let mut d = Driver::new(bus, ram);
        d.timeout = CMD_TIMEOUT;
        d.reset_and_enable(32)
            .map_err(drv_err("enabling the controller"))?;
        let scratch = d.alloc(PAGE).map_err(drv_err("guest RAM"))?;
        let (c, ctrl) = d
            .identify(1, 0, 0, scratch)
            .map_err(drv_err("Identify Controller"))?;
        c.success(0x06).map_err(drv_err("Identify Controller"))?;
        let mdts = ctrl[id_ctrl::MDTS];
        let max_bytes = if mdts == 0 { u64::MAX } else { PAGE << mdts };
        let nsid = 1;
        let (c, ns) = d
            .identify(0, nsid, 0, scratch)
            .map_err(drv_err("Identify Namespace 1"))?;
        c.success(0x06).map_err(drv_err("Identify Namespace 1"))?;
        let nsze = le64(&ns, id_ns::NSZE);
        let fmt = (ns[id_ns::FLBAS] & 0xf) as usize;
        let lbads = ns[id_ns::LBAF0 + 4 * fmt + 2];
        if !(9..=12).contains(&lbads) || nsze == 0 {
            return Err(run(format!(
                "namespace 1: LBADS {lbads}, NSZE {nsze} (512 to 4096-byte blocks needed)"
            )));
        }
        let lbs = 1u64 << lbads;
        let region = nsze * lbs;
        if !p.bs.is_multiple_of(lbs) {
            return Err(usage(format!(
                "--bs {}: not a multiple of the namespace's {lbs}-byte blocks",
                p.bs
            )));
        }
        if p.bs > max_bytes {
            return Err(usage(format!(
                "--bs {}: above the controller's MDTS ({max_bytes} bytes)",
                p.bs
            )));
        }
        if p.bs > region {
            return Err(usage(format!(
                "--bs {}: larger than the namespace ({region} bytes)",
                p.bs
            )));
        }
        let (sqs, cqs) = d
            .set_num_queues(p.queues)
            .map_err(drv_err("Set Features Number of Queues"))?;
        if sqs.min(cqs) < p.queues as u32 {
            return Err(run(format!(
                "the controller grants {sqs} SQs / {cqs} CQs, --queues {} asked for",
                p.queues
            )));
        }
        let irq = d.bus.has_interrupts();
        let mut queues = Vec::new();
        for qid in 1..=p.queues {
            let cq = d
                .alloc(entries as u64 * CQE_SIZE)
                .map_err(drv_err("guest RAM"))?;
            let sq = d
                .alloc(entries as u64 * SQE_SIZE)
                .map_err(drv_err("guest RAM"))?;
            d.create_cq(qid, entries, cq, qid, irq)
                .and_then(|c| c.success(0x05))
                .map_err(drv_err("Create I/O CQ"))?;
            d.create_sq(qid, entries, sq, qid)
                .and_then(|c| c.success(0x01))
                .map_err(drv_err("Create I/O SQ"))?;
            let mut slots = Vec::new();
            for _ in 0..p.qd {
                let buf = d.alloc(slot_bytes).map_err(drv_err("guest RAM"))?;
                d.fill(buf, slot_bytes as usize, FILL_BYTE)
                    .map_err(drv_err("guest RAM"))?;
                let prp_list = d.alloc(PAGE).map_err(drv_err("guest RAM"))?;
                let pages = slot_bytes / PAGE;
                let list: Vec<u8> = (1..pages)
                    .flat_map(|i| (buf + i * PAGE).to_le_bytes())
                    .collect();
                d.write_mem(prp_list, &list).map_err(drv_err("PRP list"))?;
                slots.push(Slot { buf, prp_list });
            }
            let irq = match d.bus.irq_eventfd(qid) {
                Some(Ok(e)) if irq => Some(e),
                Some(Err(e)) => return Err(run(format!("eventfd of vector {qid}: {e}"))),
                _ => None,
            };
            queues.push(Queue {
                qid,
                free: (0..slots.len()).rev().collect(),
                slots,
                inflight: HashMap::with_capacity(p.qd as usize * 2),
                irq,
            });
        }
        if a.dbbuf == OnOff::On {
            d.enable_dbbuf()
                .map_err(drv_err("Doorbell Buffer Config"))?;
        }
        Ok(Nvme {
            drv: Mutex::new(d),
            queues,
            nsid,
            lbs,
            region,
            max_bytes,
        })
    }

    /// (messages, posted doorbells, doorbells stored into the mapped page).
    fn counters(&self) -> Result<(u64, u64, u64), Failure> {
        let d = lock(&self.drv)?;
        let c = d.bus.counters;
        Ok((c.messages, c.posted_doorbells, c.mapped_doorbells))
    }

    /// True if the bus mapped the device's doorbell page.
    fn doorbells_mapped(&self) -> Result<bool, Failure> {
        Ok(!lock(&self.drv)?.bus.mapped_bar0().is_empty())
    }

    /// One measurement: `bs`-byte I/Os in `pattern` for `secs` (or once through the
    /// region with `once`), every queue kept `qd` deep.
    fn measure(
        &mut self,
        write: bool,
        random: bool,
        bs: u64,
        secs: Option<u64>,
        threads: Threads,
        device_pid: Option<&str>,
    ) -> Result<Sample, Failure> {
        let n = self.queues.len() as u64;
        let region = self.region;
        let mut offs: Vec<Offsets> = (0..n)
            .map(|j| Offsets::new(random, bs, region, j, n, secs.is_none()))
            .collect();
        let (m0, d0, p0) = self.counters()?;
        let dev0 = device_pid.and_then(cpu_secs);
        let me0 = cpu_secs("self").unwrap_or(0.0);
        let start = Instant::now();
        let deadline = secs.map(|s| start + Duration::from_secs(s));
        let ctx = Ctx {
            drv: &self.drv,
            nsid: self.nsid,
            lbs: self.lbs,
            bs,
            write,
            deadline,
        };
        let mut total = Sample::new();
        match threads {
            Threads::One => {
                total = ctx.drive(&mut self.queues, &mut offs)?;
            }
            Threads::PerQueue => {
                let results: Vec<Result<Sample, Failure>> = std::thread::scope(|s| {
                    let hs: Vec<_> = self
                        .queues
                        .chunks_mut(1)
                        .zip(offs.chunks_mut(1))
                        .map(|(q, o)| {
                            let ctx = &ctx;
                            s.spawn(move || ctx.drive(q, o))
                        })
                        .collect();
                    hs.into_iter()
                        .map(|h| {
                            h.join()
                                .unwrap_or_else(|_| Err(run("a driver thread panicked")))
                        })
                        .collect()
                });
                for r in results {
                    total.merge(&r?);
                }
            }
        }
        let end = deadline.unwrap_or_else(Instant::now);
        total.secs = end.saturating_duration_since(start).as_secs_f64();
        let (m1, d1, p1) = self.counters()?;
        total.messages = m1 - m0;
        total.doorbells = (d1 - d0) + (p1 - p0);
        total.mapped_doorbells = p1 - p0;
        total.device_cpu = match (dev0, device_pid.and_then(cpu_secs)) {
            (Some(a), Some(b)) => Some(b - a),
            _ => None,
        };
        total.bench_cpu = cpu_secs("self").unwrap_or(0.0) - me0;
        Ok(total)
    }
}

/// What every driver thread of one measurement shares.
struct Ctx<'a> {
    drv: &'a Mutex<Driver<VfioUserBus>>,
    nsid: u32,
    lbs: u64,
    bs: u64,
    write: bool,
    /// None: each queue goes once through its stripe (the fill).
    deadline: Option<Instant>,
}

impl Ctx<'_> {
    /// Keeps `queues` full until the deadline (or their stripes are done), reaps, sleeps
    /// on their vectors when nothing completed; then drains what is in flight.
    fn drive(&self, queues: &mut [Queue], offs: &mut [Offsets]) -> Result<Sample, Failure> {
        let mut s = Sample::new();
        let mut waiter = Waiter::new(queues)?;
        let mut cqes: Vec<Cqe> = Vec::with_capacity(256);
        let mut last_progress = Instant::now();
        let op = if self.write {
            io_op::WRITE
        } else {
            io_op::READ
        };
        let nlb = (self.bs / self.lbs) as u32;
        let mut done_submitting = vec![false; queues.len()];
        loop {
            let now = Instant::now();
            let submitting = self.deadline.is_none_or(|d| now < d);
            let inflight: usize = queues.iter().map(|q| q.inflight.len()).sum();
            if inflight == 0 && (!submitting || done_submitting.iter().all(|&d| d)) {
                break;
            }
            let mut got = 0;
            {
                let mut d = lock(self.drv)?;
                if submitting {
                    for (qi, q) in queues.iter_mut().enumerate() {
                        let mut pushed = false;
                        while let Some(&slot) = q.free.last() {
                            let Some(off) = offs[qi].next() else {
                                done_submitting[qi] = true;
                                break;
                            };
                            let sl = q.slots[slot];
                            let pages = self.bs.div_ceil(PAGE);
                            let prp2 = match pages {
                                0 | 1 => 0,
                                2 => sl.buf + PAGE,
                                _ => sl.prp_list,
                            };
                            let sqe = rw(op, self.nsid, off / self.lbs, nlb, sl.buf, prp2);
                            let cid = d
                                .push(q.qid, sqe)
                                .map_err(|e| run(format!("queue {}: {e}", q.qid)))?;
                            q.free.pop();
                            if q.inflight.insert(cid, (slot, Instant::now())).is_some() {
                                return Err(run(format!(
                                    "queue {}: the driver reused cid {cid} in flight",
                                    q.qid
                                )));
                            }
                            pushed = true;
                        }
                        if pushed {
                            d.ring_sq(q.qid).map_err(drv_err("SQ doorbell"))?;
                        }
                    }
                }
                for q in queues.iter_mut() {
                    cqes.clear();
                    d.reap_batch(q.qid, usize::MAX, &mut cqes)
                        .map_err(|e| run(format!("CQ {}: {e}", q.qid)))?;
                    let t = Instant::now();
                    for c in &cqes {
                        got += 1;
                        let Some((slot, t0)) = q.inflight.remove(&c.cid) else {
                            s.error(format!(
                                "CQ {}: completion of cid {} that is not in flight",
                                q.qid, c.cid
                            ));
                            continue;
                        };
                        q.free.push(slot);
                        if c.sqid != q.qid {
                            s.error(format!("CQ {}: completion names SQ {}", q.qid, c.sqid));
                        } else if !c.ok() {
                            s.error(format!(
                                "queue {} cid {}: status {:#x}",
                                q.qid, c.cid, c.status.0
                            ));
                        }
                        if self.deadline.is_none_or(|d| t <= d) {
                            s.ios += 1;
                            s.hist.add(t - t0);
                        }
                    }
                }
            }
            if got > 0 {
                last_progress = Instant::now();
                continue;
            }
            if last_progress.elapsed() > CMD_TIMEOUT {
                return Err(run(format!(
                    "no completion for {} s with {inflight} commands in flight",
                    CMD_TIMEOUT.as_secs()
                )));
            }
            match waiter.as_mut() {
                Some(w) => s.interrupts += w.wait(queues, 10)?,
                None => std::thread::yield_now(),
            }
        }
        Ok(s)
    }
}

// --- the native side ---

/// One native measurement: `jobs` threads, one io_uring of `qd` each, on `file`.
fn native(file: &Arc<File>, p: &Plan, region: u64) -> Result<Sample, Failure> {
    let jobs = p.queues as u64;
    let me0 = cpu_secs("self").unwrap_or(0.0);
    let start = Instant::now();
    let deadline = start + Duration::from_secs(p.secs);
    let results: Vec<Result<Sample, Failure>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..jobs)
            .map(|j| {
                let file = file.clone();
                s.spawn(move || {
                    let offs = Offsets::new(p.pattern.random(), p.bs, region, j, jobs, false);
                    native_job(file, p, offs, deadline)
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(run("a native job panicked")))
            })
            .collect()
    });
    let mut total = Sample::new();
    for r in results {
        total.merge(&r?);
    }
    total.secs = (deadline - start).as_secs_f64();
    total.bench_cpu = cpu_secs("self").unwrap_or(0.0) - me0;
    Ok(total)
}

fn native_job(
    file: Arc<File>,
    p: &Plan,
    mut offs: Offsets,
    deadline: Instant,
) -> Result<Sample, Failure> {
    let write = p.pattern.write();
    let qd = p.qd as usize;
    let mut ring =
        Ring::new(file, qd, p.bs as usize, FILL_BYTE).map_err(|e| run(format!("io_uring: {e}")))?;
    let mut s = Sample::new();
    let mut started: Vec<Instant> = vec![Instant::now(); qd];
    let mut free: Vec<usize> = (0..qd).rev().collect();
    let mut last_progress = Instant::now();
    let bs = p.bs as i32;
    loop {
        let now = Instant::now();
        if now < deadline {
            while let Some(slot) = free.pop() {
                let Some(off) = offs.next() else { break };
                ring.push(slot, write, off)
                    .map_err(|e| run(format!("io_uring: {e}")))?;
                started[slot] = Instant::now();
            }
        } else if ring.inflight() == 0 {
            break;
        }
        let mut done: Vec<(usize, i32)> = Vec::with_capacity(qd);
        let n = ring
            .wait(1, Duration::from_millis(100), |slot, res| {
                done.push((slot, res))
            })
            .map_err(|e| run(format!("io_uring: {e}")))?;
        let t = Instant::now();
        for (slot, res) in done {
            if res != bs {
                s.error(format!("io_uring: result {res} for {bs} bytes"));
            }
            if let Some(t0) = started.get(slot) {
                if t <= deadline {
                    s.ios += 1;
                    s.hist.add(t - *t0);
                }
            }
            free.push(slot);
        }
        if n > 0 {
            last_progress = t;
        } else if last_progress.elapsed() > CMD_TIMEOUT {
            return Err(run(format!(
                "io_uring: no completion for {} s with {} in flight",
                CMD_TIMEOUT.as_secs(),
                ring.inflight()
            )));
        }
    }
    Ok(s)
}

/// Fills `len` bytes of `file` with non-zero data (untimed) and writes them back.
fn fill_file(file: &File, len: u64) -> Result<(), Failure> {
    let chunk = vec![FILL_BYTE; 1 << 20];
    let mut off = 0;
    while off < len {
        let n = (len - off).min(chunk.len() as u64) as usize;
        file.write_all_at(&chunk[..n], off)
            .map_err(|e| run(format!("filling the namespace file: {e}")))?;
        off += n as u64;
    }
    file.sync_data()
        .map_err(|e| run(format!("filling the namespace file: {e}")))
}

/// The native target: the namespace file, or a memfd of the namespace's size.
struct NativeTarget {
    what: String,
    buffered: Arc<File>,
    /// O_DIRECT, or why not.
    direct: Result<Arc<File>, String>,
}

fn open_direct(path: &Path, write: bool) -> Result<Arc<File>, String> {
    OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .map(Arc::new)
        .map_err(|e| format!("O_DIRECT open: {e}"))
}

fn native_target(file: Option<&Path>, region: u64, write: bool) -> Result<NativeTarget, Failure> {
    match file {
        Some(p) => {
            let f = OpenOptions::new()
                .read(true)
                .write(write)
                .open(p)
                .map_err(|e| run(format!("--ns-file {}: {e}", p.display())))?;
            Ok(NativeTarget {
                what: p.display().to_string(),
                buffered: Arc::new(f),
                direct: open_direct(p, write),
            })
        }
        None => {
            let f = vnvme::host::memfd::sealed("vnvme-bench-native", region)
                .map_err(|e| run(format!("native memfd: {e}")))?;
            fill_file(&f, region)?;
            let path = PathBuf::from(format!("/proc/self/fd/{}", f.as_raw_fd()));
            let direct = open_direct(&path, write);
            Ok(NativeTarget {
                what: format!("memfd of {region} bytes"),
                buffered: Arc::new(f),
                direct,
            })
        }
    }
}

// --- the report ---

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// The medians of one mode's rounds.
fn summary(samples: &[Sample], bs: u64) -> Value {
    let per = |f: &dyn Fn(&Sample) -> f64| median(samples.iter().map(f).collect());
    let iops = per(&|s| s.iops());
    let per_io = |f: &dyn Fn(&Sample) -> Option<f64>| -> Option<f64> {
        let v: Vec<f64> = samples
            .iter()
            .filter(|s| s.ios > 0)
            .filter_map(|s| f(s).map(|x| x / s.ios as f64))
            .collect();
        (v.len() == samples.len() && !v.is_empty()).then(|| median(v))
    };
    json!({
        "iops": iops.round(),
        "mib_s": round2(iops * bs as f64 / (1u64 << 20) as f64),
        "mean_us": round2(per(&|s| s.hist.mean_us())),
        "p99_us": round2(per(&|s| s.hist.quantile_us(0.99))),
        "device_cpu_us_per_io": per_io(&|s| s.device_cpu).map(|x| round2(x * 1e6)),
        "bench_cpu_us_per_io": per_io(&|s| Some(s.bench_cpu)).map(|x| round2(x * 1e6)),
        "ios": samples.iter().map(|s| s.ios).sum::<u64>(),
        "errors": samples.iter().map(|s| s.errors).sum::<u64>(),
        "rounds_iops": samples.iter().map(|s| s.iops().round()).collect::<Vec<_>>(),
    })
}

fn with_messages(mut v: Value, samples: &[Sample]) -> Value {
    let per = |f: &dyn Fn(&Sample) -> u64| {
        median(
            samples
                .iter()
                .filter(|s| s.ios > 0)
                .map(|s| f(s) as f64 / s.ios as f64)
                .collect(),
        )
    };
    v["messages_per_io"] = json!((per(&|s| s.messages) * 1000.0).round() / 1000.0);
    v["doorbells_per_io"] = json!((per(&|s| s.doorbells) * 1000.0).round() / 1000.0);
    v["mapped_doorbells_per_io"] = json!((per(&|s| s.mapped_doorbells) * 1000.0).round() / 1000.0);
    v["interrupts_per_io"] = json!((per(&|s| s.interrupts) * 1000.0).round() / 1000.0);
    v
}

fn fmt_opt(v: &Value, digits: usize) -> String {
    match v.as_f64() {
        Some(x) => format!("{x:.digits$}"),
        None => "-".into(),
    }
}

fn render(r: &Value) -> String {
    let mut out = String::new();
    let cfg = &r["config"];
    out += &format!(
        "vnvme bench io: {} bs {} × {} queues × QD {}, {} s × {} rounds, {}, dbbuf {}, threads {}{}\n",
        cfg["pattern"].as_str().unwrap_or(""),
        cfg["bs"],
        cfg["queues"],
        cfg["qd"],
        cfg["secs"],
        cfg["rounds"],
        if cfg["poll"] == true { "polling" } else { "MSI-X" },
        cfg["dbbuf"].as_str().unwrap_or(""),
        cfg["threads"].as_str().unwrap_or(""),
        match cfg["device_poll_us"].as_u64() {
            Some(n) => format!(
                ", device polling {n} µs (doorbell page {})",
                if r["doorbells_mapped"] == true { "mapped" } else { "not mapped" }
            ),
            None => String::new(),
        },
    );
    out += &format!(
        "namespace: {} ({} bytes, {}-byte blocks); native on: {}\n",
        r["namespace"]["kind"].as_str().unwrap_or(""),
        r["namespace"]["bytes"],
        r["namespace"]["lbs"],
        r["native_target"].as_str().unwrap_or("-"),
    );
    out += "| mode | IOPS | MiB/s | mean µs | p99 µs | device CPU µs/IO | bench CPU µs/IO | msgs/IO | IOPS per round |\n";
    out += "|---|---:|---:|---:|---:|---:|---:|---:|---|\n";
    for mode in ["vnvme", "native_direct", "native_buffered"] {
        let m = &r["modes"][mode];
        if m.is_null() {
            continue;
        }
        if let Some(why) = m["skipped"].as_str() {
            out += &format!("| {mode} | skipped: {why} | | | | | | | |\n");
            continue;
        }
        let rounds: Vec<String> = m["rounds_iops"]
            .as_array()
            .map(|a| a.iter().map(|x| fmt_opt(x, 0)).collect())
            .unwrap_or_default();
        out += &format!(
            "| {mode} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            fmt_opt(&m["iops"], 0),
            fmt_opt(&m["mib_s"], 1),
            fmt_opt(&m["mean_us"], 1),
            fmt_opt(&m["p99_us"], 1),
            fmt_opt(&m["device_cpu_us_per_io"], 2),
            fmt_opt(&m["bench_cpu_us_per_io"], 2),
            fmt_opt(&m["messages_per_io"], 3),
            rounds.join(", "),
        );
    }
    let ra = &r["ratios"];
    out += &format!(
        "vnvme / native O_DIRECT: {}   vnvme / native buffered: {}   errors: {}\n",
        fmt_opt(&ra["vnvme_over_native_direct"], 2),
        fmt_opt(&ra["vnvme_over_native_buffered"], 2),
        r["errors"]
    );
    out
}

// --- the run ---

pub fn main(a: &IoArgs) -> Result<(), Failure> {
    let bs = size_of("--bs", &a.bs)?;
    if bs == 0 || !bs.is_multiple_of(4096) {
        return Err(usage(format!(
            "--bs {}: must be a non-zero multiple of 4096",
            a.bs
        )));
    }
    if a.queues == 0 || a.queues > 1024 {
        return Err(usage("--queues must be 1 to 1024"));
    }
    if a.qd == 0 || a.qd > 2047 {
        return Err(usage("--qd must be 1 to 2047"));
    }
    if a.secs == 0 {
        return Err(usage("--secs must be at least 1"));
    }
    if a.rounds == 0 {
        return Err(usage("--rounds must be at least 1"));
    }
    if a.lbs != 512 && a.lbs != 4096 {
        return Err(usage("--lbs must be 512 or 4096"));
    }
    if a.memory.is_some() && a.ns_file.is_some() {
        return Err(usage("--memory and --ns-file exclude each other"));
    }
    if a.device_poll_us.is_some() && a.socket.is_some() {
        return Err(usage(
            "--device-poll-us sets up a vnvme the bench starts; with --socket start it with --ctrl poll_us=N yourself",
        ));
    }
    if let Some(n) = a.device_poll_us {
        if n == 0 || n > vnvme::nvme::settings::MAX_POLL_US {
            return Err(usage(format!(
                "--device-poll-us {n}: must be 1 to {} (microseconds)",
                vnvme::nvme::settings::MAX_POLL_US
            )));
        }
    }
    if a.memory.is_some() && a.socket.is_some() {
        return Err(usage(
            "--memory sizes the namespace of a vnvme the bench starts; with --socket the running vnvme has its own",
        ));
    }
    let p = Plan {
        pattern: a.pattern,
        bs,
        queues: a.queues,
        qd: a.qd,
        secs: a.secs,
        rounds: a.rounds,
    };
    let file_size = size_of("--size", &a.size)?;
    let mem_size = match &a.memory {
        Some(m) => size_of("--memory", m)?,
        None => 1 << 30,
    };
    let write = p.pattern.write();

    // The server: the given one, or our own child on a file or a memfd.
    let mut filled_natively = false;
    let (child, socket, kind) = match &a.socket {
        Some(s) => (None, s.clone(), "running vnvme"),
        None => {
            let size = if a.ns_file.is_some() {
                file_size
            } else {
                mem_size
            };
            if size == 0 || !size.is_multiple_of(a.lbs as u64) || size < bs {
                return Err(usage(format!(
                    "--{}: must be a non-zero multiple of --lbs and at least --bs",
                    if a.ns_file.is_some() {
                        "size"
                    } else {
                        "memory"
                    }
                )));
            }
            let ns = match &a.ns_file {
                Some(f) => {
                    let file = OpenOptions::new()
                        .read(true)
                        .write(true)
                        .create(true)
                        .truncate(false)
                        .open(f)
                        .map_err(|e| run(format!("--ns-file {}: {e}", f.display())))?;
                    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
                    if len < size {
                        file.set_len(size)
                            .map_err(|e| run(format!("--ns-file {}: {e}", f.display())))?;
                    }
                    if !write {
                        fill_file(&file, size)?;
                        filled_natively = true;
                    }
                    if f.to_string_lossy().contains(',') {
                        return Err(usage("--ns-file: a path with ',' cannot be passed to --ns"));
                    }
                    format!(
                        "file={},size={size},logical_block_size={}",
                        f.display(),
                        a.lbs
                    )
                }
                None => format!("size={size},logical_block_size={}", a.lbs),
            };
            let ctrl = a.device_poll_us.map(|n| format!("poll_us={n}"));
            let (c, s) = ChildServer::start(&ns, ctrl)?;
            (
                Some(c),
                s,
                if a.ns_file.is_some() { "file" } else { "memfd" },
            )
        }
    };
    let mut child = child;
    let pid = child.as_ref().map(|c| c.pid());
    let mut nvme = match Nvme::connect(&socket, &p, a) {
        Ok(n) => n,
        Err(e) => {
            if let Some(why) = child.as_mut().and_then(|c| c.gone()) {
                return Err(run(why));
            }
            return Err(e);
        }
    };
    let region = nvme.region;
    let doorbells_mapped = nvme.doorbells_mapped()?;
    if !write && !filled_natively {
        // Fill the namespace through vnvme once, untimed.
        let fill_bs = FILL_BS.min(nvme.max_bytes).min(region) / nvme.lbs * nvme.lbs;
        let s = nvme.measure(true, false, fill_bs, None, Threads::One, None)?;
        if s.errors > 0 {
            return Err(run(format!(
                "filling the namespace: {} errors, first: {}",
                s.errors,
                s.first_error.unwrap_or_default()
            )));
        }
    }
    let target = if a.no_native {
        None
    } else {
        let f = a.ns_file.as_deref();
        if let Some(path) = f {
            let len = std::fs::metadata(path)
                .map_err(|e| run(format!("--ns-file {}: {e}", path.display())))?
                .len();
            if len < region {
                return Err(run(format!(
                    "--ns-file {} holds {len} bytes, the namespace {region}",
                    path.display()
                )));
            }
        }
        Some(native_target(f, region, write)?)
    };

    let mut vn = Vec::new();
    let mut nd = Vec::new();
    let mut nb = Vec::new();
    for round in 0..p.rounds {
        let s = nvme.measure(
            write,
            p.pattern.random(),
            bs,
            Some(p.secs),
            a.threads,
            pid.as_deref(),
        )?;
        if let Some(why) = child.as_mut().and_then(|c| c.gone()) {
            return Err(run(why));
        }
        if !a.json {
            eprintln!(
                "vnvme bench io: round {}: vnvme {:.0} IOPS",
                round + 1,
                s.iops()
            );
        }
        vn.push(s);
        if let Some(t) = &target {
            if let Ok(f) = &t.direct {
                let s = native(f, &p, region)?;
                if !a.json {
                    eprintln!(
                        "vnvme bench io: round {}: native O_DIRECT {:.0} IOPS",
                        round + 1,
                        s.iops()
                    );
                }
                nd.push(s);
            }
            let s = native(&t.buffered, &p, region)?;
            if !a.json {
                eprintln!(
                    "vnvme bench io: round {}: native buffered {:.0} IOPS",
                    round + 1,
                    s.iops()
                );
            }
            nb.push(s);
        }
    }
    let lbs = nvme.lbs;
    drop(nvme);
    drop(child);

    let vsum = with_messages(summary(&vn, bs), &vn);
    let ratio = |n: &[Sample]| -> Value {
        if n.is_empty() {
            return Value::Null;
        }
        let d = summary(n, bs)["iops"].as_f64().unwrap_or(0.0);
        let v = vsum["iops"].as_f64().unwrap_or(0.0);
        if d > 0.0 {
            json!(round2(v / d))
        } else {
            Value::Null
        }
    };
    let direct = match &target {
        None => Value::Null,
        Some(t) => match &t.direct {
            Ok(_) => summary(&nd, bs),
            Err(why) => json!({ "skipped": why }),
        },
    };
    let buffered = match &target {
        None => Value::Null,
        Some(_) => summary(&nb, bs),
    };
    let errors: u64 = vn
        .iter()
        .chain(&nd)
        .chain(&nb)
        .map(|s| s.errors)
        .sum::<u64>();
    let first_error = vn
        .iter()
        .chain(&nd)
        .chain(&nb)
        .find_map(|s| s.first_error.clone());
    let report = json!({
        "config": {
            "pattern": p.pattern.name(),
            "bs": bs,
            "queues": p.queues,
            "qd": p.qd,
            "secs": p.secs,
            "rounds": p.rounds,
            "poll": a.poll,
            "device_poll_us": a.device_poll_us,
            "dbbuf": if a.dbbuf == OnOff::On { "on" } else { "off" },
            "threads": match a.threads { Threads::One => "one", Threads::PerQueue => "per-queue" },
        },
        "namespace": {
            "kind": kind,
            "file": a.ns_file.as_ref().map(|f| f.display().to_string()),
            "bytes": region,
            "lbs": lbs,
        },
        "server": { "started": pid.is_some(), "pid": pid },
        "doorbells_mapped": doorbells_mapped,
        "native_target": target.as_ref().map(|t| t.what.clone()),
        "modes": {
            "vnvme": vsum,
            "native_direct": direct,
            "native_buffered": buffered,
        },
        "ratios": {
            "vnvme_over_native_direct": ratio(&nd),
            "vnvme_over_native_buffered": ratio(&nb),
        },
        "errors": errors,
        "first_error": first_error,
    });
    if a.json {
        println!("{report}");
    } else {
        print!("{}", render(&report));
    }
    let _ = std::io::stdout().flush();
    if errors > 0 {
        return Err(run(format!(
            "{errors} I/O errors, first: {}",
            report["first_error"].as_str().unwrap_or("")
        )));
    }
    Ok(())
}
