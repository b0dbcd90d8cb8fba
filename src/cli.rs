//! Command-line definitions: clap for the options, QEMU-style `key=value,...` lists for
//! `--ns` and `--ctrl`, turned into a validated [`DeviceConfig`].

use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};

use crate::config::VhostUserBlkConfig;
use crate::config::{Backing, ConfigError, ControllerConfig, DeviceConfig, NamespaceConfig};
use crate::nvme::namespace::{LbaFormat, MAX_LBA_FORMATS};

/// Size of the namespace made when no `--ns` is given.
pub const DEFAULT_NS_SIZE: u64 = 1 << 30;

#[derive(Debug, Parser)]
#[command(
    name = "vnvme",
    version,
    about = "NVMe controller emulator served over vfio-user, built for testing NVMe Simple Copy",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub run: RunArgs,

    #[command(flatten)]
    pub experiment: ExperimentArgs,

    #[command(flatten)]
    pub vhost: VhostUserBlkArgs,
}

impl Cli {
    /// The command to run; no subcommand means `run`.
    pub fn into_command(self) -> Command {
        self.command.unwrap_or(Command::Run {
            args: self.run,
            experiment: self.experiment,
            vhost: self.vhost,
        })
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the device on a vfio-user socket (the default).
    Run {
        #[command(flatten)]
        args: RunArgs,
        #[command(flatten)]
        experiment: ExperimentArgs,
        #[command(flatten)]
        vhost: VhostUserBlkArgs,
    },
    /// Send one command to a running vnvme's --control socket and print the JSON reply
    /// (exit 0 on "return", 1 on "error", 2 on a usage error).
    Ctl(CtlArgs),
    /// Benchmarks: `vnvme bench copy --help`.
    #[command(disable_help_flag = true)]
    Bench {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Path of the vfio-user unix socket.
    #[arg(long, value_name = "PATH", default_value = "vnvme.sock")]
    pub socket: PathBuf,

    /// A namespace: file=PATH[,size=SIZE][,nsid=N][,logical_block_size=512|4096][,mssrl=N]
    /// [,mcl=N][,msrc=N][,readonly=on|off][,uuid=..][,nguid=..][,eui64=..]
    /// [,ms=BYTES][,mset=0|1][,pi=0-3][,pil=0|1][,pif=0|2] (metadata and protection
    /// information, QEMU's nvme-ns names; docs/configuration.md)
    /// [,zoned=on][,zoned.zone_size=SIZE][,zoned.zone_capacity=SIZE][,zoned.max_open=N]
    /// [,zoned.max_active=N][,zoned.cross_read=on|off][,zoned.zasl=N]
    /// [,zoned.descr_ext_size=N] (a zoned namespace, QEMU's names; docs/zoned.md).
    /// Without file= the namespace lives in memory (size= required). Repeatable; with no
    /// --ns, one 1 GiB memory namespace.
    #[arg(long = "ns", value_name = "KEY=VALUE,...")]
    pub ns: Vec<String>,

    /// The controller: serial=..,mdts=..,max_ioqpairs=..,mqes=..,vendor_id=..,device_id=..,
    /// subsystem_vendor_id=..,subsystem_id=..,copy=on|off,ocfs=MASK (copy formats, 0-0xf),
    /// cdfe=MASK (Host Behavior Support CDFE after every reset, 0-0xf, e.g. 0xc),
    /// poll_us=N (poll mode: the doorbells as a mappable page, polled N µs after a
    /// queue's last command; 0 = off, at most 1000000)
    #[arg(long = "ctrl", value_name = "KEY=VALUE,...")]
    pub ctrl: Vec<String>,

    /// Where namespaces a host creates (Namespace Management, or the control socket's
    /// create-namespace) get their sparse files; without it they live in memfds.
    #[arg(long = "ns-dir", value_name = "DIR")]
    pub ns_dir: Option<PathBuf>,

    /// Total NVM capacity (Identify Controller TNVMCAP) that the --ns namespaces and the
    /// ones created at run time share, e.g. 4G; default: what the --ns namespaces take.
    #[arg(long, value_name = "SIZE")]
    pub capacity: Option<String>,

    /// The LBA formats every namespace offers, as BLOCK_SIZE:METADATA_BYTES,... (block
    /// sizes 512 to 65536, powers of two); default QEMU's eight,
    /// 512:0,512:8,512:16,512:64,4096:0,4096:8,4096:16,4096:64. A --ns whose own format
    /// is not listed has it added at the end.
    #[arg(long, value_name = "LIST")]
    pub lbafs: Option<String>,

    /// Print the QEMU options that attach this device, then exit.
    #[arg(long)]
    pub print_qemu_args: bool,
}

/// virtio-blk disks over vhost-user (docs/vhost-user-blk.md).
#[derive(Debug, Clone, Default, Args)]
pub struct VhostUserBlkArgs {
    /// A virtio-blk view of a namespace for QEMU's vhost-user-blk-pci:
    /// socket=PATH,ns=NSID[,queues=N (1-16, default 1)][,readonly=on|off]. Repeatable.
    /// Without --socket, only these are served (no vfio-user NVMe controller).
    #[arg(long = "vhost-user-blk", value_name = "KEY=VALUE,...")]
    pub vhost_user_blk: Vec<String>,
}

impl VhostUserBlkArgs {
    /// The disks, checked against the namespaces of `cfg` and against each other (and
    /// the vfio-user socket, if one is served).
    pub fn disks(
        &self,
        cfg: &DeviceConfig,
        vfio_socket: Option<&Path>,
    ) -> Result<Vec<VhostUserBlkConfig>, ConfigError> {
        let opt = "--vhost-user-blk";
        let nsids: Vec<u32> = cfg.namespaces.iter().filter_map(|n| n.nsid).collect();
        let mut out: Vec<VhostUserBlkConfig> = Vec::new();
        for spec in &self.vhost_user_blk {
            let d = parse_vhost_user_blk(spec)?;
            if !nsids.contains(&d.nsid) {
                let list: Vec<String> = nsids.iter().map(|n| n.to_string()).collect();
                return Err(ConfigError(format!(
                    "{opt} ns: no namespace {} (the --ns list has {})",
                    d.nsid,
                    list.join(", ")
                )));
            }
            if out.iter().any(|o| o.socket == d.socket) || vfio_socket == Some(&*d.socket) {
                return Err(ConfigError(format!(
                    "{opt} socket: {} is used twice",
                    d.socket.display()
                )));
            }
            out.push(d);
        }
        Ok(out)
    }
}

/// Parses one `--vhost-user-blk` list.
pub fn parse_vhost_user_blk(spec: &str) -> Result<VhostUserBlkConfig, ConfigError> {
    let opt = "--vhost-user-blk";
    let (mut socket, mut nsid) = (None, None);
    let mut d = VhostUserBlkConfig {
        socket: PathBuf::new(),
        nsid: 0,
        queues: 1,
        readonly: false,
    };
    let mut seen = std::collections::HashSet::new();
    for (k, v) in split_kv(opt, spec)? {
        if !seen.insert(k.clone()) {
            return Err(ConfigError(format!("{opt} {k}: given twice")));
        }
        match k.as_str() {
            "socket" => {
                if v.is_empty() {
                    return Err(ConfigError(format!("{opt} socket: empty path")));
                }
                socket = Some(PathBuf::from(v));
            }
            "ns" => nsid = Some(parse_int::<u32>(opt, &k, &v)?),
            "queues" => {
                let q: u16 = parse_int(opt, &k, &v)
                    .map_err(|_| ConfigError(format!("{opt} queues: '{v}' is not 1 to 16")))?;
                if !(1..=crate::vhost_user_blk::spec::MAX_QUEUES).contains(&q) {
                    return Err(ConfigError(format!("{opt} queues: {q} is not 1 to 16")));
                }
                d.queues = q;
            }
            "readonly" => d.readonly = parse_bool(opt, &k, &v)?,
            _ => {
                return Err(ConfigError(format!(
                    "{opt}: unknown key '{k}' (known: socket, ns, queues, readonly)"
                )))
            }
        }
    }
    d.socket = socket.ok_or_else(|| ConfigError(format!("{opt} socket: required")))?;
    d.nsid = nsid.ok_or_else(|| ConfigError(format!("{opt} ns: required")))?;
    Ok(d)
}

/// Parses the process's arguments (exits on a usage error, as `Cli::parse` does) and
/// tells whether `--socket` was given on the command line (not defaulted).
pub fn parse_args() -> (Cli, bool) {
    use clap::{CommandFactory, FromArgMatches};
    let m = Cli::command().get_matches();
    let given = |m: &clap::ArgMatches| {
        m.try_contains_id("socket").unwrap_or(false)
            && m.value_source("socket") == Some(clap::parser::ValueSource::CommandLine)
    };
    let socket_given = given(&m) || m.subcommand_matches("run").is_some_and(given);
    match Cli::from_arg_matches(&m) {
        Ok(cli) => (cli, socket_given),
        Err(e) => e.exit(),
    }
}

/// Watching and steering the device (docs/control.md, docs/trace.md).
#[derive(Debug, Clone, Default, Args)]
pub struct ExperimentArgs {
    /// Write one JSON line per completed command to FILE (`-` = stderr); docs/trace.md.
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,

    /// Serve the JSON control protocol (docs/control.md) on this unix socket.
    #[arg(long, value_name = "PATH")]
    pub control: Option<PathBuf>,

    /// A fault installed at start: opcode=NAME|N,status=HEX[,nsid=N][,after=N][,count=N]
    /// [,every=N][,probability=P][,seed=N][,dnr=true|false][,copy_range=K]. Repeatable.
    #[arg(long = "fault", value_name = "KEY=VALUE,...")]
    pub fault: Vec<String>,

    /// A latency set at start: opcode=NAME|N[,fixed_us=N][,per_block_us=N]. Repeatable.
    #[arg(long = "latency", value_name = "KEY=VALUE,...")]
    pub latency: Vec<String>,
}

impl ExperimentArgs {
    /// The `--fault` and `--latency` lists, parsed; the error names the option.
    pub fn specs(
        &self,
    ) -> Result<
        (
            Vec<crate::experiment::FaultSpec>,
            Vec<crate::experiment::LatencySpec>,
        ),
        ConfigError,
    > {
        let mut faults = Vec::new();
        for f in &self.fault {
            faults.push(crate::experiment::control::fault_option(f).map_err(ConfigError)?);
        }
        let mut lat = Vec::new();
        for l in &self.latency {
            lat.push(crate::experiment::control::latency_option(l).map_err(ConfigError)?);
        }
        Ok((faults, lat))
    }
}

/// `vnvme ctl --control PATH COMMAND [KEY=VALUE ...]`.
#[derive(Debug, Clone, Args)]
pub struct CtlArgs {
    /// The control socket (vnvme --control PATH).
    #[arg(long, value_name = "PATH")]
    pub control: PathBuf,

    /// The arguments as one JSON object (KEY=VALUE pairs are added to it).
    #[arg(long, value_name = "JSON")]
    pub json: Option<String>,

    /// The command (e.g. query-stats, inject-fault; `help` lists them).
    pub command: String,

    /// Arguments: numbers, 0x-hex, true/false, else strings (e.g. opcode=copy status=0x0281).
    #[arg(value_name = "KEY=VALUE")]
    pub args: Vec<String>,
}

impl CtlArgs {
    /// The request these options describe; errors are usage errors.
    pub fn request(&self) -> Result<serde_json::Value, String> {
        let mut args = match &self.json {
            None => serde_json::Map::new(),
            Some(j) => match serde_json::from_str(j) {
                Ok(serde_json::Value::Object(m)) => m,
                Ok(_) => return Err("--json: not a JSON object".into()),
                Err(e) => return Err(format!("--json: {e}")),
            },
        };
        for kv in &self.args {
            let Some((k, v)) = kv.split_once('=') else {
                return Err(format!("'{kv}' is not of the form KEY=VALUE"));
            };
            if k.is_empty() {
                return Err(format!("'{kv}': empty key"));
            }
            args.insert(k.to_string(), crate::experiment::control::cli_value(v));
        }
        Ok(serde_json::json!({"execute": self.command, "arguments": args}))
    }
}

impl RunArgs {
    /// The validated device configuration these options describe.
    pub fn device_config(&self) -> Result<DeviceConfig, ConfigError> {
        let mut controller = ControllerConfig::default();
        for spec in &self.ctrl {
            parse_ctrl(spec, &mut controller)?;
        }
        if let Some(dir) = &self.ns_dir {
            if !dir.is_dir() {
                return Err(ConfigError(format!(
                    "--ns-dir {}: not a directory",
                    dir.display()
                )));
            }
            controller.ns_dir = Some(dir.clone());
        }
        if let Some(c) = &self.capacity {
            controller.capacity = Some(parse_size("--capacity", "", c)?);
        }
        if let Some(l) = &self.lbafs {
            controller.lbafs = parse_lbafs(l)?;
        }
        controller.validate().map_err(ConfigError)?;
        let mut namespaces = Vec::new();
        for spec in &self.ns {
            namespaces.push(parse_ns(spec)?);
        }
        if namespaces.is_empty() {
            namespaces.push(NamespaceConfig {
                backing: Backing::Memory,
                size: Some(DEFAULT_NS_SIZE),
                ..NamespaceConfig::default()
            });
        }
        let ids = crate::server::assign_nsids(&namespaces)?;
        for (ns, id) in namespaces.iter_mut().zip(ids) {
            ns.nsid = Some(id);
        }
        Ok(DeviceConfig {
            controller,
            namespaces,
        })
    }
}

/// Splits `a=b,c=d` into pairs; `,,` stands for a literal comma (as in QEMU).
pub fn split_kv(opt: &str, spec: &str) -> Result<Vec<(String, String)>, ConfigError> {
    crate::kv::split(opt, spec).map_err(ConfigError)
}

/// A number in decimal or 0x-hex.
pub fn parse_number(opt: &str, key: &str, v: &str) -> Result<u64, ConfigError> {
    let v = v.trim();
    let r = match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16),
        None => v.parse::<u64>(),
    };
    r.map_err(|_| ConfigError(format!("{opt} {key}: '{v}' is not a number")))
}

fn parse_int<T: TryFrom<u64>>(opt: &str, key: &str, v: &str) -> Result<T, ConfigError> {
    let n = parse_number(opt, key, v)?;
    T::try_from(n).map_err(|_| ConfigError(format!("{opt} {key}: {n} is out of range")))
}

/// A size with an optional binary suffix: 4096, 64K, 1M, 2G, 1T (KiB/MiB/... also accepted).
pub fn parse_size(opt: &str, key: &str, v: &str) -> Result<u64, ConfigError> {
    let bad = || {
        ConfigError(format!(
            "{opt} {key}: '{v}' is not a size (use e.g. 4096, 64K, 1G)"
        ))
    };
    let t = v.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    let (num, shift) = match t.chars().last() {
        Some('k' | 'K') => (&t[..t.len() - 1], 10),
        Some('m' | 'M') => (&t[..t.len() - 1], 20),
        Some('g' | 'G') => (&t[..t.len() - 1], 30),
        Some('t' | 'T') => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    if num.is_empty() || !num.chars().all(|c| c.is_ascii_digit()) {
        return Err(bad());
    }
    let n: u64 = num.parse().map_err(|_| bad())?;
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| ConfigError(format!("{opt} {key}: '{v}' is too large")))
}

fn parse_bool(opt: &str, key: &str, v: &str) -> Result<bool, ConfigError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" | "1" => Ok(true),
        "off" | "false" | "no" | "0" => Ok(false),
        _ => Err(ConfigError(format!("{opt} {key}: '{v}' is not on or off"))),
    }
}

fn parse_hex<const N: usize>(opt: &str, key: &str, v: &str) -> Result<[u8; N], ConfigError> {
    let digits: String = v
        .chars()
        .filter(|c| !matches!(c, '-' | ':'))
        .collect::<String>();
    let bad = || ConfigError(format!("{opt} {key}: '{v}' is not {} hex digits", N * 2));
    if digits.len() != N * 2 || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(bad());
    }
    let mut out = [0u8; N];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&digits[i * 2..i * 2 + 2], 16).map_err(|_| bad())?;
    }
    Ok(out)
}

const NS_KEYS: &str = "file, size, nsid, logical_block_size, mssrl, mcl, msrc, readonly, uuid, \
     nguid, eui64, ms, mset, pi, pil, pif, owned, zoned, zoned.zone_size, zoned.zone_capacity, \
     zoned.max_open, zoned.max_active, zoned.cross_read, zoned.zasl, zoned.descr_ext_size";

/// Parses `--lbafs 512:0,4096:8,...`.
pub fn parse_lbafs(list: &str) -> Result<Vec<LbaFormat>, ConfigError> {
    let opt = "--lbafs";
    let mut out: Vec<LbaFormat> = Vec::new();
    for item in list.split(',').map(str::trim) {
        let Some((bs, ms)) = item.split_once(':') else {
            return Err(ConfigError(format!(
                "{opt}: '{item}' is not BLOCK_SIZE:METADATA_BYTES"
            )));
        };
        let bs: u32 = parse_int(opt, "block size", bs)?;
        let ms: u16 = parse_int(opt, "metadata bytes", ms)?;
        if !bs.is_power_of_two() || !(512..=65536).contains(&bs) {
            return Err(ConfigError(format!(
                "{opt}: block size {bs} is not a power of two from 512 to 65536"
            )));
        }
        let f = LbaFormat::new(bs, ms);
        if out.contains(&f) {
            return Err(ConfigError(format!("{opt}: {bs}:{ms} given twice")));
        }
        out.push(f);
    }
    if out.len() > MAX_LBA_FORMATS {
        return Err(ConfigError(format!(
            "{opt}: {} formats, at most {MAX_LBA_FORMATS}",
            out.len()
        )));
    }
    Ok(out)
}

/// Parses one `--ns` list.
pub fn parse_ns(spec: &str) -> Result<NamespaceConfig, ConfigError> {
    let opt = "--ns";
    let mut ns = NamespaceConfig::default();
    let (mut zoned_on, mut zoned) = (false, crate::config::ZonedConfig::default());
    let mut file = None;
    let mut seen = std::collections::HashSet::new();
    for (k, v) in split_kv(opt, spec)? {
        if !seen.insert(k.clone()) {
            return Err(ConfigError(format!("{opt} {k}: given twice")));
        }
        match k.as_str() {
            "file" => {
                if v.is_empty() {
                    return Err(ConfigError(format!("{opt} file: empty path")));
                }
                file = Some(PathBuf::from(v));
            }
            "size" => ns.size = Some(parse_size(opt, &k, &v)?),
            "nsid" => ns.nsid = Some(parse_int(opt, &k, &v)?),
            "logical_block_size" | "lbs" => ns.logical_block_size = parse_int(opt, &k, &v)?,
            "mssrl" => ns.mssrl = parse_int(opt, &k, &v)?,
            "mcl" => ns.mcl = parse_int(opt, &k, &v)?,
            "msrc" => ns.msrc = parse_int(opt, &k, &v)?,
            "readonly" => ns.readonly = parse_bool(opt, &k, &v)?,
            "uuid" => ns.uuid = Some(parse_hex::<16>(opt, &k, &v)?),
            "nguid" => ns.nguid = Some(parse_hex::<16>(opt, &k, &v)?),
            "eui64" => ns.eui64 = Some(parse_hex::<8>(opt, &k, &v)?),
            "ms" => ns.ms = parse_int(opt, &k, &v)?,
            "mset" => ns.mset = parse_int(opt, &k, &v)?,
            "pi" => ns.pi = parse_int(opt, &k, &v)?,
            "pil" => ns.pil = parse_int(opt, &k, &v)?,
            "pif" => ns.pif = parse_int(opt, &k, &v)?,
            "owned" => ns.owned = parse_bool(opt, &k, &v)?,
            "zoned" => zoned_on = parse_bool(opt, &k, &v)?,
            "zoned.zone_size" => zoned.zone_size = parse_size(opt, &k, &v)?,
            "zoned.zone_capacity" => zoned.zone_capacity = parse_size(opt, &k, &v)?,
            "zoned.max_open" => zoned.max_open = parse_int(opt, &k, &v)?,
            "zoned.max_active" => zoned.max_active = parse_int(opt, &k, &v)?,
            "zoned.cross_read" => zoned.cross_read = parse_bool(opt, &k, &v)?,
            "zoned.zasl" => zoned.zasl = parse_int(opt, &k, &v)?,
            "zoned.descr_ext_size" => zoned.descr_ext_size = parse_int(opt, &k, &v)?,
            _ => {
                return Err(ConfigError(format!(
                    "{opt}: unknown key '{k}' (known: {NS_KEYS})"
                )))
            }
        }
    }
    if zoned_on {
        ns.zoned = Some(zoned);
    } else if let Some(k) = seen.iter().find(|k| k.starts_with("zoned.")) {
        return Err(ConfigError(format!("{opt} {k}: needs zoned=true")));
    }
    match file {
        Some(f) => ns.backing = Backing::File(f),
        None => {
            ns.backing = Backing::Memory;
            if ns.size.is_none() {
                return Err(ConfigError(format!(
                    "{opt} size: required for a memory namespace (no file=)"
                )));
            }
        }
    }
    ns.validate()?;
    Ok(ns)
}

const CTRL_KEYS: &str = "serial, mdts, max_ioqpairs, mqes, vendor_id, device_id, \
     subsystem_vendor_id, subsystem_id, copy, ocfs, cdfe, poll_us, nn";

/// Parses one `--ctrl` list into `c`.
pub fn parse_ctrl(spec: &str, c: &mut ControllerConfig) -> Result<(), ConfigError> {
    let opt = "--ctrl";
    for (k, v) in split_kv(opt, spec)? {
        match k.as_str() {
            "serial" => c.serial = v,
            "mdts" => c.mdts = parse_int(opt, &k, &v)?,
            "max_ioqpairs" => c.max_ioqpairs = parse_int(opt, &k, &v)?,
            "mqes" => c.mqes = parse_int(opt, &k, &v)?,
            "vendor_id" => c.vendor_id = parse_int(opt, &k, &v)?,
            "device_id" => c.device_id = parse_int(opt, &k, &v)?,
            "subsystem_vendor_id" => c.subsystem_vendor_id = parse_int(opt, &k, &v)?,
            "subsystem_id" => c.subsystem_id = parse_int(opt, &k, &v)?,
            "copy" => c.copy = parse_bool(opt, &k, &v)?,
            "ocfs" => c.ocfs = parse_int(opt, &k, &v)?,
            "cdfe" => c.cdfe = parse_int(opt, &k, &v)?,
            "poll_us" => c.poll_us = parse_int(opt, &k, &v)?,
            "nn" => c.nn = parse_int(opt, &k, &v)?,
            _ => {
                return Err(ConfigError(format!(
                    "{opt}: unknown key '{k}' (known: {CTRL_KEYS})"
                )))
            }
        }
    }
    Ok(())
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

fn absolute(socket: &Path) -> PathBuf {
    if socket.is_absolute() {
        socket.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(socket))
            .unwrap_or_else(|_| socket.to_path_buf())
    }
}

/// The QEMU options that attach the vfio-user device on `vfio` (if served) and every
/// vhost-user-blk disk (`-chardev socket` + `-device vhost-user-blk-pci` each), with
/// the shared guest memory both need. Socket paths are made absolute.
pub fn qemu_args_all(vfio: Option<&Path>, disks: &[VhostUserBlkConfig]) -> String {
    let mut s = match vfio {
        Some(p) => qemu_args(p),
        None => {
            "-m 1G -object memory-backend-memfd,id=mem,size=1G,share=on -machine memory-backend=mem"
                .to_string()
        }
    };
    for (i, d) in disks.iter().enumerate() {
        // QEMU option values escape ',' as ',,'.
        let path = absolute(&d.socket).to_string_lossy().replace(',', ",,");
        s.push_str(&format!(
            " -chardev {} -device vhost-user-blk-pci,chardev=vub{i},num-queues={}",
            shell_quote(&format!("socket,id=vub{i},path={path}")),
            d.queues
        ));
    }
    s
}

/// The QEMU options that attach a vfio-user device on `socket` (made absolute).
pub fn qemu_args(socket: &Path) -> String {
    let abs = absolute(socket);
    let dev = serde_json::json!({
        "driver": "vfio-user-pci",
        "socket": {"path": abs.to_string_lossy(), "type": "unix"},
    });
    format!(
        "-m 1G -object memory-backend-memfd,id=mem,size=1G,share=on -machine memory-backend=mem -device {}",
        shell_quote(&dev.to_string())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(ns: &[&str], ctrl: &[&str]) -> RunArgs {
        RunArgs {
            socket: "x.sock".into(),
            ns: ns.iter().map(|s| s.to_string()).collect(),
            ctrl: ctrl.iter().map(|s| s.to_string()).collect(),
            print_qemu_args: false,
            ns_dir: None,
            capacity: None,
            lbafs: None,
        }
    }

    #[test]
    fn experiment_options() {
        let cli = Cli::try_parse_from([
            "vnvme",
            "--trace",
            "-",
            "--control",
            "c.sock",
            "--fault",
            "opcode=copy,status=0x281",
            "--fault",
            "opcode=2,status=0x4281,after=1",
            "--latency",
            "opcode=0x2,fixed_us=5",
        ])
        .unwrap();
        let Command::Run { experiment, .. } = cli.into_command() else {
            panic!("run expected");
        };
        assert_eq!(experiment.trace, Some(PathBuf::from("-")));
        assert_eq!(experiment.control, Some(PathBuf::from("c.sock")));
        assert_eq!(experiment.fault.len(), 2);
        // Opcode names come from the model's table; numbers always work.
        let e = ExperimentArgs {
            fault: vec!["opcode=2,status=zz".into()],
            ..Default::default()
        };
        let err = e.specs().unwrap_err();
        assert!(err.0.starts_with("--fault status:"), "{err}");
        let e = ExperimentArgs {
            latency: vec!["opcode=2,fixed_us=1,per_block_us=2".into()],
            fault: vec!["opcode=0x19,status=0x4281,after=2,count=1".into()],
            ..Default::default()
        };
        let (f, l) = e.specs().unwrap();
        assert_eq!((f[0].opcode, f[0].status, f[0].dnr), (0x19, 0x281, true));
        assert_eq!((l[0].fixed_us, l[0].per_block_us), (1, 2));
        let cli = Cli::try_parse_from(["vnvme", "run", "--trace", "t.json"]).unwrap();
        assert!(matches!(
            cli.into_command(),
            Command::Run {
                experiment: ExperimentArgs { trace: Some(_), .. },
                ..
            }
        ));
    }

    #[test]
    fn ctl_requests() {
        let cli = Cli::try_parse_from([
            "vnvme",
            "ctl",
            "--control",
            "c.sock",
            "inject-fault",
            "opcode=copy",
            "after=2",
            "status=0x0281",
            "dnr=false",
        ])
        .unwrap();
        let Some(Command::Ctl(c)) = cli.command else {
            panic!("ctl expected");
        };
        assert_eq!(
            c.request().unwrap(),
            serde_json::json!({"execute": "inject-fault", "arguments":
                {"opcode": "copy", "after": 2, "status": "0x0281", "dnr": false}})
        );
        let c = CtlArgs {
            control: "x".into(),
            json: Some(r#"{"nsid": 1, "mssrl": 4}"#.into()),
            command: "set-copy-limits".into(),
            args: vec!["mcl=8".into()],
        };
        assert_eq!(
            c.request().unwrap()["arguments"],
            serde_json::json!({"nsid": 1, "mssrl": 4, "mcl": 8})
        );
        let bad = CtlArgs {
            json: Some("[1]".into()),
            ..c.clone()
        };
        assert!(bad.request().unwrap_err().contains("--json"));
        let bad = CtlArgs {
            json: None,
            args: vec!["mcl".into()],
            ..c
        };
        assert!(bad.request().unwrap_err().contains("KEY=VALUE"));
        assert!(Cli::try_parse_from(["vnvme", "ctl", "query-stats"]).is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("--ns", "size", "4096").unwrap(), 4096);
        assert_eq!(parse_size("--ns", "size", "64K").unwrap(), 65536);
        assert_eq!(parse_size("--ns", "size", "1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("--ns", "size", "2MiB").unwrap(), 2 << 20);
        assert_eq!(parse_size("--ns", "size", "1t").unwrap(), 1 << 40);
        assert!(parse_size("--ns", "size", "12Q").is_err());
        assert!(parse_size("--ns", "size", "G").is_err());
        assert!(parse_size("--ns", "size", "99999999999T").is_err());
    }

    #[test]
    fn default_namespace() {
        let c = args(&[], &[]).device_config().unwrap();
        assert_eq!(c.namespaces.len(), 1);
        assert_eq!(c.namespaces[0].backing, Backing::Memory);
        assert_eq!(c.namespaces[0].size, Some(DEFAULT_NS_SIZE));
        assert_eq!(c.namespaces[0].nsid, Some(1));
    }

    #[test]
    fn namespaces_and_ids() {
        let c = args(
            &[
                "file=/tmp/a,,b.img,size=1M,nsid=2,logical_block_size=4096,mssrl=8,mcl=16,msrc=0,readonly=on",
                "size=64K,eui64=01:02:03:04:05:06:07:08,uuid=12345678-1234-1234-1234-123456789abc",
            ],
            &["serial=ABC,mdts=5,max_ioqpairs=4,vendor_id=0x1234"],
        )
        .device_config()
        .unwrap();
        let a = &c.namespaces[0];
        assert_eq!(a.backing, Backing::File("/tmp/a,b.img".into()));
        assert_eq!((a.size, a.nsid), (Some(1 << 20), Some(2)));
        assert_eq!(
            (a.logical_block_size, a.mssrl, a.mcl, a.msrc),
            (4096, 8, 16, 0)
        );
        assert!(a.readonly);
        let b = &c.namespaces[1];
        assert_eq!(b.nsid, Some(1));
        assert_eq!(b.eui64, Some([1, 2, 3, 4, 5, 6, 7, 8]));
        assert_eq!(b.uuid.unwrap()[0], 0x12);
        assert_eq!(c.controller.serial, "ABC");
        assert_eq!(c.controller.vendor_id, 0x1234);
        assert_eq!(c.controller.max_ioqpairs, 4);
    }

    #[test]
    fn errors_name_the_option() {
        let e = args(&["size=1M,nsid=1", "size=1M,nsid=1"], &[])
            .device_config()
            .unwrap_err();
        assert!(e.0.contains("--ns nsid"), "{e}");
        let e = args(&["size=1M,colour=red"], &[])
            .device_config()
            .unwrap_err();
        assert!(e.0.contains("unknown key 'colour'"), "{e}");
        let e = args(&["size=1M,mssrl=lots"], &[])
            .device_config()
            .unwrap_err();
        assert!(e.0.contains("--ns mssrl"), "{e}");
        let e = args(&["size=1M,msrc=300"], &[])
            .device_config()
            .unwrap_err();
        assert!(e.0.contains("--ns msrc"), "{e}");
        let e = args(&[], &["mdts=x"]).device_config().unwrap_err();
        assert!(e.0.contains("--ctrl mdts"), "{e}");
        let e = args(&[], &["bogus=1"]).device_config().unwrap_err();
        assert!(e.0.contains("--ctrl: unknown key"), "{e}");
        let e = args(&["file=/x"], &[]).device_config();
        assert!(e.is_ok());
        let e = args(&["nsid=3"], &[]).device_config().unwrap_err();
        assert!(e.0.contains("--ns size"), "{e}");
    }

    #[test]
    fn copy_keys() {
        let c = args(&[], &[]).device_config().unwrap();
        assert!(c.controller.copy);
        assert_eq!(c.controller.ocfs, 0xf);
        let c = args(&[], &["copy=off,ocfs=0x5"]).device_config().unwrap();
        assert!(!c.controller.copy);
        assert_eq!(c.controller.ocfs, 5);
        let c = args(&[], &["ocfs=0"]).device_config().unwrap();
        assert_eq!(c.controller.ocfs, 0);
        assert_eq!(args(&[], &[]).device_config().unwrap().controller.cdfe, 0);
        let c = args(&[], &["cdfe=0xc"]).device_config().unwrap();
        assert_eq!(c.controller.cdfe, 0xc);
        let c = args(&[], &["cdfe=4"]).device_config().unwrap();
        assert_eq!(c.controller.cdfe, 4);
        assert_eq!(
            args(&[], &[]).device_config().unwrap().controller.poll_us,
            0
        );
        let c = args(&[], &["poll_us=50"]).device_config().unwrap();
        assert_eq!(c.controller.poll_us, 50);
        let c = args(&[], &["poll_us=1000000"]).device_config().unwrap();
        assert_eq!(c.controller.poll_us, 1_000_000);
        for (bad, needle) in [
            (
                "cdfe=0x10",
                "--ctrl cdfe: 0x10 is not a mask of copy formats 0-3",
            ),
            ("cdfe=many", "--ctrl cdfe: 'many' is not a number"),
            ("cdfe=0x10000", "--ctrl cdfe: 65536 is out of range"),
            ("ocfs=0x10", "--ctrl ocfs: 0x10 is not a mask"),
            ("ocfs=16", "--ctrl ocfs: 0x10 is not a mask"),
            ("ocfs=lots", "--ctrl ocfs: 'lots' is not a number"),
            ("ocfs=0x10000", "--ctrl ocfs: 65536 is out of range"),
            ("ocfs=-1", "--ctrl ocfs"),
            ("copy=maybe", "--ctrl copy: 'maybe' is not on or off"),
            (
                "poll_us=1000001",
                "--ctrl poll_us: 1000001 is more than 1000000",
            ),
            ("poll_us=lots", "--ctrl poll_us: 'lots' is not a number"),
            (
                "poll_us=5000000000",
                "--ctrl poll_us: 5000000000 is out of range",
            ),
            ("copy=", "--ctrl copy"),
        ] {
            let e = args(&[], &[bad]).device_config().unwrap_err();
            assert!(e.0.contains(needle), "{bad}: {e}");
            assert!(!e.0.contains('\n'), "{bad}: {e}");
        }
        // Copy limits of 0 are refused (the spec forbids them with Copy supported).
        for (bad, needle) in [("mssrl=0", "--ns mssrl"), ("mcl=0", "--ns mcl")] {
            let e = args(&[&format!("size=1M,{bad}")], &[])
                .device_config()
                .unwrap_err();
            assert!(e.0.starts_with(needle), "{bad}: {e}");
        }
    }

    #[test]
    fn metadata_options_take_qemus_names_and_refuse_what_qemu_refuses() {
        let c = parse_ns("size=1M,ms=16,mset=1,pi=3,pil=1,pif=2").unwrap();
        let f = c.meta_format();
        assert_eq!(
            (f.ms, f.extended, f.pi, f.pi_first, f.pif),
            (16, true, 3, true, 2)
        );
        assert_eq!(parse_ns("size=1M").unwrap().meta_format().ms, 0);
        for (bad, needle) in [
            ("ms=8,pi=4", "--ns pi"),
            ("ms=8,pif=1", "--ns pif"),
            ("ms=8,mset=2", "--ns mset"),
            ("ms=8,pil=2", "--ns pil"),
            ("ms=4,pi=1", "--ns ms"),
            ("ms=8,pi=1,pif=2", "--ns ms"),
            ("ms=lots", "--ns ms"),
        ] {
            let e = parse_ns(&format!("size=1M,{bad}")).unwrap_err();
            assert!(e.0.starts_with(needle), "{bad}: {e}");
            assert_eq!(e.0.lines().count(), 1);
        }
        // With metadata, size is the whole store and need not be a block multiple.
        assert!(parse_ns("size=1000000,ms=8").is_ok());
        assert!(parse_ns("size=500,ms=8").is_err());
    }

    #[test]
    fn zoned_options_take_qemus_names_defaults_and_checks() {
        let c = parse_ns("size=64M,zoned=true").unwrap();
        let z = c.zoned.unwrap();
        assert_eq!(z, crate::config::ZonedConfig::default());
        assert_eq!(z.zone_size, 128 << 20, "QEMU's default zone size");
        let c = parse_ns(
            "size=64M,lbs=4096,zoned=on,zoned.zone_size=8M,zoned.zone_capacity=6M,\
             zoned.max_open=3,zoned.max_active=5,zoned.cross_read=on,zoned.zasl=2,\
             zoned.descr_ext_size=128",
        )
        .unwrap();
        let g = c.zoned.unwrap().geometry(4096, (64 << 20) / 4096).unwrap();
        assert_eq!((g.zone_size, g.zone_cap, g.nr_zones), (2048, 1536, 8));
        assert_eq!(
            (g.max_open, g.max_active, g.cross_read, g.ext_size),
            (3, 5, true, 128)
        );
        // max_open defaults to max_active.
        let c = parse_ns("size=64M,zoned=on,zoned.zone_size=8M,zoned.max_active=4").unwrap();
        assert_eq!(c.zoned.unwrap().geometry(512, 131072).unwrap().max_open, 4);
        let e = parse_ns("size=64M,zoned.zone_size=8M").unwrap_err();
        assert_eq!(e.0, "--ns zoned.zone_size: needs zoned=true");
        assert!(parse_ns("size=64M,zoned=on,ms=8")
            .unwrap_err()
            .0
            .starts_with("--ns zoned"));
        let blocks = (64u64 << 20) / 512;
        for (bad, needle) in [
            (
                "zoned.zone_size=8M,zoned.zone_capacity=9M",
                "--ns zoned.zone_capacity",
            ),
            ("zoned.zone_size=100", "--ns zoned.zone_size"),
            ("zoned.zone_size=128M", "--ns zoned.zone_size"),
            ("zoned.zone_size=8M,zoned.max_open=9", "--ns zoned.max_open"),
            (
                "zoned.zone_size=8M,zoned.max_active=9",
                "--ns zoned.max_active",
            ),
            (
                "zoned.zone_size=8M,zoned.max_open=3,zoned.max_active=2",
                "--ns zoned.max_open",
            ),
            (
                "zoned.zone_size=8M,zoned.descr_ext_size=65",
                "--ns zoned.descr_ext_size",
            ),
            ("zoned.zone_size=8M,zoned.zasl=16", "--ns zoned.zasl"),
        ] {
            let c = parse_ns(&format!("size=64M,zoned=on,{bad}")).unwrap();
            let e = c.zoned.unwrap().geometry(512, blocks).unwrap_err();
            assert!(e.0.starts_with(needle), "{bad}: {e}");
            assert_eq!(e.0.lines().count(), 1);
        }
    }

    #[test]
    fn qemu_args_are_absolute_json() {
        let s = qemu_args(Path::new("/run/x.sock"));
        assert!(s.contains("memory-backend-memfd"));
        assert!(s.contains("share=on"));
        assert!(
            s.contains(
                r#"'{"driver":"vfio-user-pci","socket":{"path":"/run/x.sock","type":"unix"}}'"#
            ),
            "{s}"
        );
        let s = qemu_args(Path::new("rel.sock"));
        assert!(!s.contains("\"path\":\"rel.sock\""));
    }
}
