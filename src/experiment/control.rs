//! `--control PATH`: a unix socket that steers a running device (docs/control.md).
//!
//! One JSON request and one JSON reply per line, shaped like QMP:
//! `{"execute": "NAME", "arguments": {...}}` gets `{"return": {...}}` or
//! `{"error": {"class": "...", "desc": "..."}}`. Several clients may connect, each on its
//! own thread; the device keeps serving meanwhile. The commands map onto the
//! controller's experiment methods (`src/nvme/experiment.rs`).

use std::collections::BTreeSet;
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map, Value};

use super::lab::{Experiment, FaultInfo, FaultSpec, LatencySpec};
use crate::hooks::Transport;
use crate::nvme::names::{io_opcode_by_name, io_opcode_name};
use crate::nvme::namespace::{Namespace, Origin};
use crate::nvme::ns_table::{CreateSpec, FormatSpec};
use crate::nvme::zones::ZoneState;
use crate::nvme::Controller;

/// Longest request line accepted (bytes, without the newline).
pub const MAX_LINE: usize = 64 * 1024;

/// Longest `trace-mark` label, in characters.
pub const MAX_MARK_LABEL: usize = 200;

/// Most zones one `query-zones` reply lists (a namespace may have millions).
pub const MAX_ZONES_PER_QUERY: u32 = 1024;

/// An error reply: QMP's class names (`GenericError`, `CommandNotFound`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtlError {
    pub class: &'static str,
    pub desc: String,
}

impl CtlError {
    pub fn generic(desc: impl Into<String>) -> CtlError {
        CtlError {
            class: "GenericError",
            desc: desc.into(),
        }
    }
}

/// One command: its name, its arguments (required ones without `?`) and what it does.
pub struct CommandInfo {
    pub name: &'static str,
    pub args: &'static str,
    pub help: &'static str,
}

pub const COMMANDS: &[CommandInfo] = &[
    CommandInfo {
        name: "query-version",
        args: "",
        help: "vnvme's version",
    },
    CommandInfo {
        name: "query-commands",
        args: "",
        help: "the names of the commands",
    },
    CommandInfo {
        name: "help",
        args: "",
        help: "the commands with their arguments and a line of help",
    },
    CommandInfo {
        name: "query-stats",
        args: "",
        help: "counters per namespace and opcode (commands, blocks, errors by status, copy ranges)",
    },
    CommandInfo {
        name: "reset-stats",
        args: "",
        help: "zero every counter",
    },
    CommandInfo {
        name: "query-namespaces",
        args: "",
        help: "every allocated namespace (attached or not): configuration, LBA format, current copy limits; the NVM capacity and the LBA formats offered",
    },
    CommandInfo {
        name: "create-namespace",
        args: "blocks | size, lbaf?, pi?, pil?, mset?, attach?",
        help: "create a namespace as Namespace Management would (lowest free nsid; a file in --ns-dir or a memfd); attach=true also attaches it; returns the nsid",
    },
    CommandInfo {
        name: "delete-namespace",
        args: "nsid",
        help: "delete a namespace (nsid 0xffffffff: all) as Namespace Management would, with a Namespace Attribute Changed event if it was attached",
    },
    CommandInfo {
        name: "attach-namespace",
        args: "nsid",
        help: "attach an allocated namespace to the controller and post a Namespace Attribute Changed event",
    },
    CommandInfo {
        name: "detach-namespace",
        args: "nsid",
        help: "detach a namespace from the controller and post a Namespace Attribute Changed event",
    },
    CommandInfo {
        name: "format-namespace",
        args: "nsid, lbaf?, pi?, pil?, mset?, ses?",
        help: "Format NVM a namespace (nsid 0xffffffff: all attached) to LBA format lbaf, erasing it, with a Namespace Attribute Changed event",
    },
    CommandInfo {
        name: "mark-unreadable",
        args: "nsid, slba, blocks",
        help: "mark blocks of an attached namespace unreadable, as Write Uncorrectable does: reads fail with Unrecovered Read Error until the blocks are written",
    },
    CommandInfo {
        name: "trace-mark",
        args: "label",
        help: "write {\"time_us\", \"mark\": label} into the --trace stream between the records (label: 1-200 printable characters)",
    },
    CommandInfo {
        name: "query-zones",
        args: "nsid, zone?, count?",
        help: "a zoned namespace's geometry, open and active zone counts, and zones zone.. (default 0) as state, zslba, wp, cap; count 1-1024 (default 64)",
    },
    CommandInfo {
        name: "set-zone-state",
        args: "nsid, zone, state",
        help: "make zone number zone of a zoned namespace read-only or offline, as a controller does on its own (saved in the zone file); returns the state it left",
    },
    CommandInfo {
        name: "set-copy-limits",
        args: "nsid, mssrl?, mcl?, msrc?",
        help: "change a namespace's copy limits now (Identify Namespace, the Copy checks) and post a Namespace Attribute Changed event",
    },
    CommandInfo {
        name: "inject-fault",
        args: "opcode, status, nsid?, after?, count?, every?, probability?, seed?, dnr?, copy_range?, transport?",
        help: "complete matching I/O commands with status; returns the fault id",
    },
    CommandInfo {
        name: "query-faults",
        args: "",
        help: "the installed faults with how often they matched and injected",
    },
    CommandInfo {
        name: "clear-faults",
        args: "",
        help: "remove every fault",
    },
    CommandInfo {
        name: "set-latency",
        args: "opcode, fixed_us?, per_block_us?",
        help: "add fixed_us + per_block_us * NLB to each command of opcode (0/0 removes)",
    },
    CommandInfo {
        name: "query-latency",
        args: "",
        help: "the latency settings",
    },
    CommandInfo {
        name: "set-host-behavior",
        args: "cdfe",
        help: "set Host Behavior Support CDFE (bit n enables copy format n) now and after every reset, as if a host had set it",
    },
    CommandInfo {
        name: "query-host-behavior",
        args: "",
        help: "Host Behavior Support CDFE now (cdfe) and after a reset (reset_cdfe)",
    },
];

// --- argument conversion ------------------------------------------------------------------------

/// Arguments of one command; each conversion error reads "KEY: problem".
pub struct ArgMap<'a> {
    map: &'a Map<String, Value>,
}

/// A number from a JSON number or a string in decimal or 0x-hex.
pub fn value_u64(v: &Value) -> Result<u64, String> {
    match v {
        Value::Number(n) => n
            .as_u64()
            .ok_or_else(|| format!("{n} is not a non-negative integer")),
        Value::String(s) => parse_u64_str(s).ok_or_else(|| format!("'{s}' is not a number")),
        other => Err(format!("{other} is not a number")),
    }
}

/// A size in bytes: a number, or a string with a K/M/G/T suffix (powers of 1024).
pub fn value_size(v: &Value) -> Result<u64, String> {
    if let Value::String(s) = v {
        let t = s.trim();
        let (num, shift) = match t.chars().last().map(|c| c.to_ascii_uppercase()) {
            Some('K') => (&t[..t.len() - 1], 10),
            Some('M') => (&t[..t.len() - 1], 20),
            Some('G') => (&t[..t.len() - 1], 30),
            Some('T') => (&t[..t.len() - 1], 40),
            _ => (t, 0),
        };
        return parse_u64_str(num)
            .and_then(|n| n.checked_mul(1u64 << shift))
            .ok_or_else(|| format!("'{s}' is not a size (e.g. 4096, 64M)"));
    }
    value_u64(v)
}

fn parse_u64_str(s: &str) -> Option<u64> {
    let t = s.trim();
    match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => t.parse().ok(),
    }
}

/// A string.
fn value_str(v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        other => Err(format!("{other} is not a string")),
    }
}

/// The attached namespace `nsid`, or the error naming it.
fn attached(ctx: &Context, nsid: u32) -> Result<Arc<Namespace>, CtlError> {
    ctx.ctrl
        .namespace(nsid)
        .ok_or_else(|| CtlError::generic(format!("nsid: no attached namespace {nsid}")))
}

/// true/false (also on/off, yes/no, 1/0, as JSON or strings).
pub fn value_bool(v: &Value) -> Result<bool, String> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::Number(n) if n.as_u64() == Some(0) => Ok(false),
        Value::Number(n) if n.as_u64() == Some(1) => Ok(true),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "on" | "yes" | "1" => Ok(true),
            "false" | "off" | "no" | "0" => Ok(false),
            _ => Err(format!("'{s}' is not true or false")),
        },
        other => Err(format!("{other} is not true or false")),
    }
}

/// An I/O opcode by name ("read", "copy"...) or number (25, "25", "0x19").
pub fn value_opcode(v: &Value) -> Result<u8, String> {
    let n = match v {
        Value::String(s) => match parse_u64_str(s) {
            Some(n) => n,
            None => {
                return io_opcode_by_name(s.trim())
                    .ok_or_else(|| format!("'{s}' is not an I/O opcode name or number"))
            }
        },
        other => value_u64(other)?,
    };
    u8::try_from(n).map_err(|_| format!("{n} is not an opcode (0-255)"))
}

/// A status (SCT << 8 | SC, optionally with DNR in bit 14) as a number or a hex string
/// ("0x0281"). Returns (status without DNR, DNR given in the value).
pub fn value_status(v: &Value) -> Result<(u16, bool), String> {
    let n = match v {
        // A bare string of digits is hex, as nvme-cli prints statuses.
        Value::String(s) => {
            let t = s.trim();
            let h = t
                .strip_prefix("0x")
                .or_else(|| t.strip_prefix("0X"))
                .unwrap_or(t);
            u64::from_str_radix(h, 16).map_err(|_| format!("'{s}' is not a hex status"))?
        }
        other => value_u64(other)?,
    };
    if n > 0x7fff {
        return Err(format!("{n:#x} is not a status (at most 0x7fff)"));
    }
    if n & 0x3fff == 0 {
        return Err("0 (success) is not a fault".into());
    }
    Ok(((n & !0x4000) as u16, n & 0x4000 != 0))
}

fn int<T: TryFrom<u64>>(v: &Value) -> Result<T, String> {
    let n = value_u64(v)?;
    T::try_from(n).map_err(|_| format!("{n} is out of range"))
}

impl<'a> ArgMap<'a> {
    pub fn new(map: &'a Map<String, Value>) -> ArgMap<'a> {
        ArgMap { map }
    }

    /// Refuses keys outside `known`.
    pub fn only(&self, known: &[&str]) -> Result<(), String> {
        for k in self.map.keys() {
            if !known.contains(&k.as_str()) {
                return Err(format!(
                    "unknown argument '{k}' (known: {})",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ));
            }
        }
        Ok(())
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn opt<T>(
        &self,
        key: &str,
        f: impl Fn(&Value) -> Result<T, String>,
    ) -> Result<Option<T>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => f(v).map(Some).map_err(|e| format!("{key}: {e}")),
        }
    }

    fn req<T>(&self, key: &str, f: impl Fn(&Value) -> Result<T, String>) -> Result<T, String> {
        self.opt(key, f)?.ok_or_else(|| format!("{key}: required"))
    }
}

/// The fault an `inject-fault` (or `--fault`) describes.
pub fn parse_fault(map: &Map<String, Value>) -> Result<FaultSpec, String> {
    let a = ArgMap::new(map);
    a.only(&[
        "opcode",
        "nsid",
        "after",
        "count",
        "every",
        "probability",
        "seed",
        "status",
        "dnr",
        "copy_range",
        "transport",
    ])?;
    let opcode = a.req("opcode", value_opcode)?;
    let (status, dnr_in_status) = a.req("status", value_status)?;
    let probability = a
        .opt("probability", |v| {
            let p = match v {
                Value::Number(n) => n.as_f64(),
                Value::String(s) => s.trim().parse::<f64>().ok(),
                _ => None,
            }
            .ok_or_else(|| format!("{v} is not a number"))?;
            if (0.0..=1.0).contains(&p) {
                Ok(p)
            } else {
                Err(format!("{p} is not between 0 and 1"))
            }
        })?
        .unwrap_or(1.0);
    let dnr = a.opt("dnr", value_bool)?;
    if dnr == Some(false) && dnr_in_status {
        return Err("dnr: false, but the status has the DNR bit (0x4000) set".into());
    }
    let every = a.opt("every", int::<u64>)?.unwrap_or(1);
    if every == 0 {
        return Err("every: 0 is not allowed (1 = every matching command)".into());
    }
    Ok(FaultSpec {
        opcode,
        nsid: a.opt("nsid", int::<u32>)?,
        after: a.opt("after", int::<u64>)?.unwrap_or(0),
        count: a.opt("count", int::<u64>)?,
        every,
        probability,
        seed: a.opt("seed", int::<u64>)?,
        status,
        dnr: dnr.unwrap_or(true),
        copy_range: a.opt("copy_range", int::<u32>)?,
        transport: a.opt("transport", |v| match v {
            Value::String(t) if Transport::by_name(t).is_some() => Ok(t.clone()),
            _ => Err(format!("{v} is not \"nvme\" or \"virtio-blk\"")),
        })?,
    })
}

/// The latency a `set-latency` (or `--latency`) describes.
pub fn parse_latency(map: &Map<String, Value>) -> Result<LatencySpec, String> {
    let a = ArgMap::new(map);
    a.only(&["opcode", "fixed_us", "per_block_us"])?;
    Ok(LatencySpec {
        opcode: a.req("opcode", value_opcode)?,
        fixed_us: a.opt("fixed_us", int::<u64>)?.unwrap_or(0),
        per_block_us: a.opt("per_block_us", int::<u64>)?.unwrap_or(0),
    })
}

/// `key=value,...` (as `--fault`/`--latency` take it) as a map of strings.
pub fn kv_map(opt: &str, spec: &str) -> Result<Map<String, Value>, String> {
    let mut map = Map::new();
    for (k, v) in crate::kv::split(opt, spec)? {
        if map.insert(k.clone(), Value::String(v)).is_some() {
            return Err(format!("{opt} {k}: given twice"));
        }
    }
    Ok(map)
}

/// `--fault KEY=VALUE,...`: errors name the option.
pub fn fault_option(spec: &str) -> Result<FaultSpec, String> {
    parse_fault(&kv_map("--fault", spec)?).map_err(|e| format!("--fault {e}"))
}

/// `--latency KEY=VALUE,...`: errors name the option.
pub fn latency_option(spec: &str) -> Result<LatencySpec, String> {
    parse_latency(&kv_map("--latency", spec)?).map_err(|e| format!("--latency {e}"))
}

/// A `vnvme ctl` KEY=VALUE value: numbers, true/false, else a string (hex stays a string;
/// the server reads "0x.." wherever it takes a number).
pub fn cli_value(v: &str) -> Value {
    if let Ok(n) = v.parse::<u64>() {
        return json!(n);
    }
    if let Ok(n) = v.parse::<i64>() {
        return json!(n);
    }
    match v {
        "true" => return Value::Bool(true),
        "false" => return Value::Bool(false),
        _ => {}
    }
    if !v.starts_with("0x") && !v.starts_with("0X") {
        if let Ok(f) = v.parse::<f64>() {
            if f.is_finite() {
                return json!(f);
            }
        }
    }
    Value::String(v.to_string())
}

// --- requests -----------------------------------------------------------------------------------

/// A parsed request line.
#[derive(Debug, PartialEq)]
pub struct Request {
    pub execute: String,
    pub arguments: Map<String, Value>,
    /// QMP's optional "id", echoed in the reply.
    pub id: Option<Value>,
}

pub fn parse_request(line: &str) -> Result<Request, CtlError> {
    let v: Value =
        serde_json::from_str(line).map_err(|e| CtlError::generic(format!("bad JSON: {e}")))?;
    let Value::Object(mut obj) = v else {
        return Err(CtlError::generic("the request is not a JSON object"));
    };
    let id = obj.remove("id");
    let execute = match obj.remove("execute") {
        Some(Value::String(s)) => s,
        Some(_) => return Err(CtlError::generic("'execute' is not a string")),
        None => return Err(CtlError::generic("no 'execute' in the request")),
    };
    let arguments = match obj.remove("arguments") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m,
        Some(_) => return Err(CtlError::generic("'arguments' is not a JSON object")),
    };
    if let Some(k) = obj.keys().next() {
        return Err(CtlError::generic(format!(
            "unknown key '{k}' in the request (known: execute, arguments, id)"
        )));
    }
    Ok(Request {
        execute,
        arguments,
        id,
    })
}

/// What the commands act on.
pub struct Context {
    /// The NVMe model (copy limits, CDFE, namespaces).
    pub ctrl: Arc<Controller>,
    /// Counters, faults, latencies (shared by every front end).
    pub lab: Arc<Experiment>,
}

fn fault_json(f: &FaultInfo) -> Value {
    let s = &f.spec;
    json!({
        "id": f.id,
        "opcode": s.opcode,
        "opcode_name": io_opcode_name(s.opcode),
        "nsid": s.nsid,
        "after": s.after,
        "count": s.count,
        "every": s.every,
        "probability": s.probability,
        "seed": s.seed,
        "status": format!("0x{:04x}", s.status | if s.dnr { 0x4000 } else { 0 }),
        "dnr": s.dnr,
        "copy_range": s.copy_range,
        "transport": s.transport,
        "matched": f.matched,
        "injected": f.injected,
    })
}

fn latency_json(l: &LatencySpec) -> Value {
    json!({
        "opcode": l.opcode,
        "opcode_name": io_opcode_name(l.opcode),
        "fixed_us": l.fixed_us,
        "per_block_us": l.per_block_us,
    })
}

/// One namespace in `query-namespaces`.
/// A volume's unreadable blocks: their count and the first ranges (at most 64).
fn unreadable_json(v: &crate::block::Volume) -> Value {
    let (blocks, _) = v.unreadable_summary();
    let (ranges, more) = v.unreadable_ranges(0, u64::MAX, 64);
    let ranges: Vec<Value> = ranges.iter().map(|&(s, n)| json!([s, n])).collect();
    json!({"blocks": blocks, "ranges": ranges, "more": more})
}

fn namespace_json(ns: &Namespace, attached: bool) -> Value {
    let v = ns.volume();
    let (backing, file) = match v.path() {
        Some(p) => ("file", Some(p.to_string_lossy().into_owned())),
        None => ("memory", None),
    };
    let (limits, initial) = (ns.copy_limits(), ns.initial_copy_limits());
    let m = ns.meta();
    let origin = match ns.origin() {
        Origin::Configured { owned } => json!({"configured": {"owned": owned}}),
        Origin::Created => json!("created"),
    };
    json!({
        "nsid": ns.nsid,
        "attached": attached,
        "origin": origin,
        "backing": backing,
        "file": file,
        "size": v.blocks() * v.block_size(),
        "block_size": v.block_size(),
        "blocks": v.blocks(),
        "lbaf": ns.format_index(),
        "readonly": v.read_only(),
        "mssrl": limits.mssrl,
        "mcl": limits.mcl,
        "msrc": limits.msrc,
        "configured": {"mssrl": initial.mssrl, "mcl": initial.mcl, "msrc": initial.msrc},
        "metadata": {"ms": m.ms, "mset": m.extended as u8, "pi": m.pi, "pil": m.pi_first as u8, "pif": m.pif},
        "unreadable": unreadable_json(v),
    })
}

fn no_args(a: &ArgMap) -> Result<(), CtlError> {
    a.only(&[]).map_err(CtlError::generic)
}

/// Runs one command.
pub fn execute(ctx: &Context, name: &str, args: &Map<String, Value>) -> Result<Value, CtlError> {
    let a = ArgMap::new(args);
    let g = |e: String| CtlError::generic(format!("{name}: {e}"));
    match name {
        "query-version" => {
            no_args(&a)?;
            Ok(json!({
                "version": env!("CARGO_PKG_VERSION"),
                "package": env!("CARGO_PKG_NAME"),
            }))
        }
        "query-commands" => {
            no_args(&a)?;
            let names: Vec<Value> = COMMANDS.iter().map(|c| json!({"name": c.name})).collect();
            Ok(json!({ "commands": names }))
        }
        "help" => {
            no_args(&a)?;
            let cmds: Vec<Value> = COMMANDS
                .iter()
                .map(|c| json!({"name": c.name, "args": c.args, "help": c.help}))
                .collect();
            Ok(json!({ "commands": cmds }))
        }
        "query-stats" => {
            no_args(&a)?;
            serde_json::to_value(ctx.lab.stats()).map_err(|e| g(e.to_string()))
        }
        "reset-stats" => {
            no_args(&a)?;
            ctx.lab.reset_stats();
            Ok(json!({}))
        }
        "query-namespaces" => {
            no_args(&a)?;
            let mut out = Vec::new();
            for n in ctx.ctrl.allocated_namespaces() {
                out.push(namespace_json(&n.ns, n.attached));
            }
            let (total, free) = ctx.ctrl.nvm_capacity();
            let formats: Vec<Value> = ctx
                .ctrl
                .lba_formats()
                .iter()
                .map(|f| json!({"block_size": f.block_size(), "ms": f.ms}))
                .collect();
            Ok(json!({
                "namespaces": out,
                "capacity": {"total": total, "unallocated": free},
                "lba_formats": formats,
            }))
        }
        "create-namespace" => {
            a.only(&["blocks", "size", "lbaf", "pi", "pil", "mset", "attach"])
                .map_err(g)?;
            let lbaf = a.opt("lbaf", int::<u8>).map_err(g)?.unwrap_or(0);
            let formats = ctx.ctrl.lba_formats();
            let Some(f) = formats.get(lbaf as usize) else {
                return Err(g(format!(
                    "lbaf: {lbaf} is not one of the {} LBA formats",
                    formats.len()
                )));
            };
            let blocks = match (
                a.opt("blocks", value_u64).map_err(g)?,
                a.opt("size", value_size).map_err(g)?,
            ) {
                (Some(b), None) => b,
                (None, Some(sz)) => sz / f.bytes_per_block(),
                _ => return Err(g("give one of blocks, size".into())),
            };
            let spec = CreateSpec {
                nsze: blocks,
                ncap: blocks,
                format: lbaf,
                extended: a.opt("mset", value_bool).map_err(g)?.unwrap_or(false),
                pi: a.opt("pi", int::<u8>).map_err(g)?.unwrap_or(0),
                pi_first: a.opt("pil", value_bool).map_err(g)?.unwrap_or(false),
                shared: false,
            };
            let nsid = ctx.ctrl.create_namespace(&spec).map_err(g)?;
            let attach = a.opt("attach", value_bool).map_err(g)?.unwrap_or(false);
            if attach {
                ctx.ctrl.attach_namespace(nsid, true).map_err(g)?;
            }
            Ok(json!({"nsid": nsid, "attached": attach}))
        }
        "delete-namespace" => {
            a.only(&["nsid"]).map_err(g)?;
            let nsid = a.req("nsid", int::<u32>).map_err(g)?;
            let detached = ctx.ctrl.delete_namespace(nsid).map_err(g)?;
            Ok(json!({ "detached": detached }))
        }
        "attach-namespace" | "detach-namespace" => {
            a.only(&["nsid"]).map_err(g)?;
            let nsid = a.req("nsid", int::<u32>).map_err(g)?;
            ctx.ctrl
                .attach_namespace(nsid, name == "attach-namespace")
                .map_err(g)?;
            Ok(json!({}))
        }
        "format-namespace" => {
            a.only(&["nsid", "lbaf", "pi", "pil", "mset", "ses"])
                .map_err(g)?;
            let nsid = a.req("nsid", int::<u32>).map_err(g)?;
            let spec = FormatSpec {
                format: a.opt("lbaf", int::<u8>).map_err(g)?.unwrap_or(0),
                extended: a.opt("mset", value_bool).map_err(g)?.unwrap_or(false),
                pi: a.opt("pi", int::<u8>).map_err(g)?.unwrap_or(0),
                pi_first: a.opt("pil", value_bool).map_err(g)?.unwrap_or(false),
                ses: a.opt("ses", int::<u8>).map_err(g)?.unwrap_or(0),
            };
            let done = ctx.ctrl.format_namespace(nsid, &spec).map_err(g)?;
            Ok(json!({ "formatted": done }))
        }
        "mark-unreadable" => {
            a.only(&["nsid", "slba", "blocks"]).map_err(g)?;
            let nsid = a.req("nsid", int::<u32>).map_err(g)?;
            let slba = a.req("slba", value_u64).map_err(g)?;
            let blocks = a.req("blocks", value_u64).map_err(g)?;
            let ns = ctx
                .ctrl
                .namespace(nsid)
                .ok_or_else(|| g(format!("nsid: no attached namespace {nsid}")))?;
            ns.volume()
                .mark_unreadable(slba, blocks)
                .map_err(|e| g(format!("slba/blocks: {e}")))?;
            Ok(json!({"unreadable_blocks": ns.volume().unreadable_summary().0}))
        }
        "trace-mark" => {
            a.only(&["label"]).map_err(g)?;
            let label = a.req("label", value_str).map_err(g)?;
            if label.is_empty()
                || label.chars().count() > MAX_MARK_LABEL
                || label.chars().any(|c| c.is_control())
            {
                return Err(g(format!(
                    "label: must be 1-{MAX_MARK_LABEL} printable characters"
                )));
            }
            let (time_us, traced) = ctx.lab.mark(&label);
            Ok(json!({"time_us": time_us, "traced": traced}))
        }
        "query-zones" => {
            a.only(&["nsid", "zone", "count"]).map_err(g)?;
            let nsid = a.req("nsid", int::<u32>).map_err(g)?;
            let first = a.opt("zone", int::<u32>).map_err(g)?.unwrap_or(0);
            let count = a.opt("count", int::<u32>).map_err(g)?.unwrap_or(64);
            if !(1..=MAX_ZONES_PER_QUERY).contains(&count) {
                return Err(g(format!("count: {count} is not 1-{MAX_ZONES_PER_QUERY}")));
            }
            let ns = attached(ctx, nsid)?;
            let Some(z) = ns.zones() else {
                return Err(g(format!("nsid: namespace {nsid} is not zoned")));
            };
            let geo = z.geometry();
            let (open, active) = z.counts();
            let zones: Vec<Value> = z
                .snapshot_range(first as usize, count as usize)
                .iter()
                .enumerate()
                .map(|(k, i)| {
                    json!({"zone": first as u64 + k as u64, "state": i.state.name(),
                        "zslba": i.zslba, "wp": i.wp, "cap": i.cap})
                })
                .collect();
            Ok(json!({
                "nsid": nsid,
                "nr_zones": geo.nr_zones,
                "zone_size": geo.zone_size,
                "zone_capacity": geo.zone_cap,
                "max_open": geo.max_open,
                "max_active": geo.max_active,
                "open": open,
                "active": active,
                "zones": zones,
            }))
        }
        "set-zone-state" => {
            a.only(&["nsid", "zone", "state"]).map_err(g)?;
            let nsid = a.req("nsid", int::<u32>).map_err(g)?;
            let zone = a.req("zone", int::<u32>).map_err(g)?;
            let state = match a.req("state", value_str).map_err(g)?.as_str() {
                "read-only" => ZoneState::ReadOnly,
                "offline" => ZoneState::Offline,
                other => return Err(g(format!("state: {other:?} is not read-only or offline"))),
            };
            let ns = attached(ctx, nsid)?;
            let Some(z) = ns.zones() else {
                return Err(g(format!("nsid: namespace {nsid} is not zoned")));
            };
            let before = z.force_state(zone as usize, state).map_err(g)?;
            log::info!(
                "control: namespace {nsid} zone {zone}: {} -> {}",
                before.name(),
                state.name()
            );
            ns.save_zones()
                .map_err(|e| g(format!("saving the zone file: {e}")))?;
            Ok(json!({"nsid": nsid, "zone": zone, "was": before.name(), "state": state.name()}))
        }
        "set-copy-limits" => {
            a.only(&["nsid", "mssrl", "mcl", "msrc"]).map_err(g)?;
            let nsid = a.req("nsid", int::<u32>).map_err(g)?;
            let mssrl = a.opt("mssrl", int::<u16>).map_err(g)?;
            let mcl = a.opt("mcl", int::<u32>).map_err(g)?;
            let msrc = a.opt("msrc", int::<u8>).map_err(g)?;
            if mssrl.is_none() && mcl.is_none() && msrc.is_none() {
                return Err(g("give at least one of mssrl, mcl, msrc".into()));
            }
            let l = ctx
                .ctrl
                .set_copy_limits(nsid, mssrl, mcl, msrc)
                .map_err(g)?;
            Ok(json!({"nsid": nsid, "mssrl": l.mssrl, "mcl": l.mcl, "msrc": l.msrc}))
        }
        "inject-fault" => {
            let spec = parse_fault(args).map_err(g)?;
            let id = ctx.lab.add_fault(spec).map_err(g)?;
            Ok(json!({ "id": id }))
        }
        "query-faults" => {
            no_args(&a)?;
            let faults: Vec<Value> = ctx.lab.faults().iter().map(fault_json).collect();
            Ok(json!({ "faults": faults }))
        }
        "clear-faults" => {
            no_args(&a)?;
            ctx.lab.clear_faults();
            Ok(json!({}))
        }
        "set-latency" => {
            let spec = parse_latency(args).map_err(g)?;
            ctx.lab.set_latency(spec).map_err(g)?;
            Ok(json!({}))
        }
        "query-latency" => {
            no_args(&a)?;
            let l: Vec<Value> = ctx.lab.latencies().iter().map(latency_json).collect();
            Ok(json!({ "latency": l }))
        }
        "set-host-behavior" => {
            a.only(&["cdfe"]).map_err(g)?;
            let cdfe = a.req("cdfe", int::<u16>).map_err(g)?;
            let hb = ctx.ctrl.set_host_behavior(cdfe).map_err(g)?;
            Ok(json!({ "cdfe": hb.cdfe }))
        }
        "query-host-behavior" => {
            no_args(&a)?;
            let hb = ctx.ctrl.host_behavior();
            Ok(json!({ "cdfe": hb.cdfe, "reset_cdfe": hb.reset_cdfe }))
        }
        _ => Err(CtlError {
            class: "CommandNotFound",
            desc: format!("the command {name} has not been found (try help)"),
        }),
    }
}

/// The reply line (without the newline) to one request line.
pub fn handle_line(ctx: &Context, line: &str) -> String {
    let (id, result) = match parse_request(line) {
        Ok(req) => (req.id.clone(), execute(ctx, &req.execute, &req.arguments)),
        Err(e) => (None, Err(e)),
    };
    reply_line(id, result)
}

fn reply_line(id: Option<Value>, result: Result<Value, CtlError>) -> String {
    let mut obj = Map::new();
    match result {
        Ok(v) => {
            obj.insert("return".into(), v);
        }
        Err(e) => {
            obj.insert("error".into(), json!({"class": e.class, "desc": e.desc}));
        }
    }
    if let Some(id) = id {
        obj.insert("id".into(), id);
    }
    Value::Object(obj).to_string()
}

// --- the socket ---------------------------------------------------------------------------------

/// The control socket's listener thread. Dropping it removes the socket.
pub struct ControlServer {
    path: PathBuf,
    stop: Arc<AtomicBool>,
}

/// Binds `path` (a stale socket there is replaced) and serves it on its own threads.
pub fn spawn(path: &Path, ctx: Arc<Context>) -> io::Result<ControlServer> {
    if let Ok(m) = std::fs::symlink_metadata(path) {
        if m.file_type().is_socket() && UnixStream::connect(path).is_err() {
            std::fs::remove_file(path)?;
        }
    }
    let listener = UnixListener::bind(path)?;
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                match conn {
                    Ok(s) => {
                        let ctx = ctx.clone();
                        let r = std::thread::Builder::new()
                            .name("control-conn".into())
                            .spawn(move || {
                                if let Err(e) = serve_conn(&ctx, s) {
                                    log::debug!("control connection: {e}");
                                }
                            });
                        if let Err(e) = r {
                            log::warn!("control: cannot start a connection thread: {e}");
                        }
                    }
                    Err(e) => {
                        log::warn!("control: accept: {e}");
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            }
        })?;
    Ok(ControlServer {
        path: path.to_path_buf(),
        stop,
    })
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = UnixStream::connect(&self.path);
        let _ = std::fs::remove_file(&self.path);
    }
}

/// What reading one line gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    Eof,
    Line(Vec<u8>),
    /// Longer than the limit; the rest up to the newline was skipped.
    TooLong,
}

/// Reads one `\n`-terminated line of at most `max` bytes.
pub fn read_line_limited(r: &mut impl BufRead, max: usize) -> io::Result<Line> {
    let mut buf = Vec::new();
    let mut too_long = false;
    loop {
        let avail = r.fill_buf()?;
        if avail.is_empty() {
            return Ok(if too_long {
                Line::TooLong
            } else if buf.is_empty() {
                Line::Eof
            } else {
                Line::Line(buf)
            });
        }
        let (take, done) = match avail.iter().position(|&b| b == b'\n') {
            Some(i) => (i, true),
            None => (avail.len(), false),
        };
        if !too_long {
            if buf.len() + take > max {
                too_long = true;
                buf = Vec::new();
            } else {
                buf.extend_from_slice(&avail[..take]);
            }
        }
        r.consume(if done { take + 1 } else { take });
        if done {
            return Ok(if too_long {
                Line::TooLong
            } else {
                Line::Line(buf)
            });
        }
    }
}

fn serve_conn(ctx: &Context, stream: UnixStream) -> io::Result<()> {
    let mut w = stream.try_clone()?;
    let mut r = BufReader::new(stream);
    loop {
        let reply = match read_line_limited(&mut r, MAX_LINE)? {
            Line::Eof => return Ok(()),
            Line::TooLong => reply_line(
                None,
                Err(CtlError::generic(format!(
                    "request line longer than {MAX_LINE} bytes"
                ))),
            ),
            Line::Line(b) => {
                let text = String::from_utf8_lossy(&b);
                let text = text.trim();
                if text.is_empty() {
                    continue;
                }
                handle_line(ctx, text)
            }
        };
        w.write_all(reply.as_bytes())?;
        w.write_all(b"\n")?;
    }
}

/// Sends one request to a control socket and returns the reply.
pub fn request(path: &Path, req: &Value, timeout: Duration) -> io::Result<Value> {
    let s = UnixStream::connect(path)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let mut w = s.try_clone()?;
    w.write_all(format!("{req}\n").as_bytes())?;
    let mut r = BufReader::new(s);
    match read_line_limited(&mut r, 64 << 20)? {
        Line::Line(b) => serde_json::from_slice(&b)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("bad reply: {e}"))),
        _ => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the server closed the connection without a reply",
        )),
    }
}

/// Names of the commands (for tests and completion).
pub fn command_names() -> BTreeSet<&'static str> {
    COMMANDS.iter().map(|c| c.name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn requests() {
        let r = parse_request(r#"{"execute":"query-stats"}"#).unwrap();
        assert_eq!(r.execute, "query-stats");
        assert!(r.arguments.is_empty());
        let r = parse_request(r#"{"execute":"x","arguments":{"a":1},"id":"t1"}"#).unwrap();
        assert_eq!(r.arguments["a"], 1);
        assert_eq!(r.id, Some(json!("t1")));
        for (bad, needle) in [
            ("{", "bad JSON"),
            ("[1]", "not a JSON object"),
            (r#"{"arguments":{}}"#, "no 'execute'"),
            (r#"{"execute":3}"#, "'execute' is not a string"),
            (
                r#"{"execute":"a","arguments":[1]}"#,
                "'arguments' is not a JSON object",
            ),
            (
                r#"{"execute":"a","argumnets":{}}"#,
                "unknown key 'argumnets'",
            ),
        ] {
            let e = parse_request(bad).unwrap_err();
            assert_eq!(e.class, "GenericError");
            assert!(e.desc.contains(needle), "{bad}: {}", e.desc);
        }
    }

    #[test]
    fn numbers_bools_opcodes_statuses() {
        assert_eq!(value_u64(&json!(25)), Ok(25));
        assert_eq!(value_u64(&json!("25")), Ok(25));
        assert_eq!(value_u64(&json!("0x19")), Ok(25));
        assert!(value_u64(&json!(-1)).is_err());
        assert!(value_u64(&json!(1.5)).is_err());
        assert!(value_u64(&json!("lots")).unwrap_err().contains("'lots'"));
        assert!(value_u64(&json!(true)).is_err());
        assert_eq!(value_bool(&json!(false)), Ok(false));
        assert_eq!(value_bool(&json!("on")), Ok(true));
        assert_eq!(value_bool(&json!("false")), Ok(false));
        assert!(value_bool(&json!("maybe")).is_err());
        assert_eq!(value_opcode(&json!(25)), Ok(0x19));
        assert_eq!(value_opcode(&json!("0x19")), Ok(0x19));
        assert_eq!(value_opcode(&json!("2")), Ok(2));
        assert_eq!(value_opcode(&json!("copy")), Ok(0x19));
        assert_eq!(value_opcode(&json!("read")), Ok(2));
        assert_eq!(value_opcode(&json!("Write_Zeroes")), Ok(8));
        assert!(value_opcode(&json!(256)).unwrap_err().contains("256"));
        assert!(value_opcode(&json!("frobnicate"))
            .unwrap_err()
            .contains("'frobnicate'"));
        assert_eq!(value_status(&json!("0x0281")), Ok((0x0281, false)));
        assert_eq!(value_status(&json!("0281")), Ok((0x0281, false)));
        assert_eq!(value_status(&json!("0x4183")), Ok((0x0183, true)));
        assert_eq!(value_status(&json!(0x281)), Ok((0x0281, false)));
        assert!(value_status(&json!("0x8000")).is_err());
        assert!(value_status(&json!("0")).unwrap_err().contains("success"));
        assert!(value_status(&json!("zz")).is_err());
    }

    #[test]
    fn fault_arguments() {
        let f = parse_fault(&m(
            json!({"opcode": 25, "after": 2, "count": 1, "status": "0x0281"}),
        ))
        .unwrap();
        assert_eq!(
            f,
            FaultSpec {
                opcode: 0x19,
                nsid: None,
                after: 2,
                count: Some(1),
                every: 1,
                probability: 1.0,
                seed: None,
                status: 0x0281,
                dnr: true,
                copy_range: None,
                transport: None,
            }
        );
        let f = parse_fault(&m(json!({"opcode": "0x2", "status": 0x0281, "dnr": false,
            "probability": 0.25, "seed": 7, "every": "3", "nsid": 2, "copy_range": 1})))
        .unwrap();
        assert_eq!(
            (f.dnr, f.probability, f.seed, f.every, f.nsid, f.copy_range),
            (false, 0.25, Some(7), 3, Some(2), Some(1))
        );
        for (bad, needle) in [
            (json!({"status": "0x281"}), "opcode: required"),
            (json!({"opcode": 2}), "status: required"),
            (
                json!({"opcode": 2, "status": "0x281", "colour": 1}),
                "unknown argument 'colour'",
            ),
            (
                json!({"opcode": 2, "status": "0x281", "probability": 2}),
                "probability: 2",
            ),
            (
                json!({"opcode": 2, "status": "0x281", "every": 0}),
                "every: 0",
            ),
            (json!({"opcode": 2, "status": "0x281", "nsid": -1}), "nsid:"),
            (
                json!({"opcode": 2, "status": "0x281", "dnr": "perhaps"}),
                "dnr:",
            ),
        ] {
            let e = parse_fault(&m(bad.clone())).unwrap_err();
            assert!(e.contains(needle), "{bad}: {e}");
        }
    }

    #[test]
    fn start_options_name_the_option() {
        let f = fault_option("opcode=0x19,after=2,count=1,status=0x0281").unwrap();
        assert_eq!(
            (f.opcode, f.after, f.count, f.status),
            (0x19, 2, Some(1), 0x0281)
        );
        let l = latency_option("opcode=2,fixed_us=100,per_block_us=3").unwrap();
        assert_eq!(
            l,
            LatencySpec {
                opcode: 2,
                fixed_us: 100,
                per_block_us: 3
            }
        );
        for (bad, needle) in [
            ("opcode=2,status=zz", "--fault status: 'zz'"),
            ("opcode=2", "--fault status: required"),
            (
                "opcode=2,status=0x281,status=0x281",
                "--fault status: given twice",
            ),
            ("opcode", "--fault: 'opcode' is not of the form key=value"),
        ] {
            let e = fault_option(bad).unwrap_err();
            assert!(e.starts_with(needle), "{bad}: {e}");
            assert!(!e.contains('\n'));
        }
        let e = latency_option("opcode=2,fixed_us=soon").unwrap_err();
        assert!(e.starts_with("--latency fixed_us: 'soon'"), "{e}");
        let e = latency_option("fixed_us=1").unwrap_err();
        assert!(e.starts_with("--latency opcode: required"), "{e}");
    }

    #[test]
    fn cli_values() {
        assert_eq!(cli_value("25"), json!(25));
        assert_eq!(cli_value("0x19"), json!("0x19"));
        assert_eq!(cli_value("true"), json!(true));
        assert_eq!(cli_value("false"), json!(false));
        assert_eq!(cli_value("0.5"), json!(0.5));
        assert_eq!(cli_value("copy"), json!("copy"));
        assert_eq!(cli_value("-1"), json!(-1));
    }

    #[test]
    fn long_lines_are_refused_and_skipped() {
        let mut data = vec![b'x'; 100];
        data.push(b'\n');
        data.extend_from_slice(b"ok\nlast");
        let mut r = io::Cursor::new(data);
        assert_eq!(read_line_limited(&mut r, 10).unwrap(), Line::TooLong);
        assert_eq!(
            read_line_limited(&mut r, 10).unwrap(),
            Line::Line(b"ok".to_vec())
        );
        assert_eq!(
            read_line_limited(&mut r, 10).unwrap(),
            Line::Line(b"last".to_vec())
        );
        assert_eq!(read_line_limited(&mut r, 10).unwrap(), Line::Eof);
        // Exactly the limit is fine.
        let mut r = io::Cursor::new(b"0123456789\n".to_vec());
        assert_eq!(
            read_line_limited(&mut r, 10).unwrap(),
            Line::Line(b"0123456789".to_vec())
        );
    }

    fn ctx() -> Context {
        use crate::block::Volume;
        use crate::nvme::namespace::{CopyLimits, NamespaceIds};
        use crate::nvme::Namespace;
        let v = Arc::new(Volume::memory("ctl", 1 << 20, 512, false).unwrap());
        let limits = CopyLimits {
            mssrl: 128,
            mcl: 128,
            msrc: 127,
        };
        let ns = Namespace::new(1, v, NamespaceIds::default(), limits);
        let lab = Arc::new(Experiment::new());
        let cfg = crate::nvme::ControllerConfig::default();
        Context {
            ctrl: Controller::new(&cfg, vec![ns], lab.clone()),
            lab,
        }
    }

    fn reply(ctx: &Context, line: &str) -> Value {
        serde_json::from_str(&handle_line(ctx, line)).unwrap()
    }

    #[test]
    fn replies() {
        let c = ctx();
        let v = reply(&c, r#"{"execute":"query-version","id":5}"#);
        assert_eq!(v["return"]["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(v["id"], 5);
        let v = reply(&c, r#"{"execute":"query-commands"}"#);
        let names: BTreeSet<String> = v["return"]["commands"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(names.len(), COMMANDS.len());
        assert!(names.contains("inject-fault"));
        let v = reply(&c, r#"{"execute":"help"}"#);
        assert!(v["return"]["commands"][0]["help"].is_string());
        let v = reply(&c, r#"{"execute":"frobnicate"}"#);
        assert_eq!(v["error"]["class"], "CommandNotFound");
        assert!(v["error"]["desc"].as_str().unwrap().contains("frobnicate"));
        let v = reply(&c, "not json");
        assert_eq!(v["error"]["class"], "GenericError");
        let v = reply(&c, r#"{"execute":"query-stats","arguments":{"x":1}}"#);
        assert!(v["error"]["desc"]
            .as_str()
            .unwrap()
            .contains("unknown argument 'x'"));
        let v = reply(&c, r#"{"execute":"inject-fault","arguments":{"opcode":2}}"#);
        assert_eq!(v["error"]["desc"], "inject-fault: status: required", "{v}");
        let v = reply(
            &c,
            r#"{"execute":"set-copy-limits","arguments":{"nsid":1}}"#,
        );
        assert!(v["error"]["desc"]
            .as_str()
            .unwrap()
            .contains("at least one"));
        let v = reply(&c, r#"{"execute":"query-namespaces"}"#);
        let ns = &v["return"]["namespaces"][0];
        assert_eq!(ns["nsid"], 1);
        assert_eq!(ns["backing"], "memory");
        assert_eq!(ns["size"], 1 << 20);
        assert_eq!(ns["block_size"], 512);
        assert_eq!(ns["configured"]["mssrl"], 128);
        assert_eq!(ns["metadata"]["ms"], 0);
        assert_eq!(ns["metadata"]["pi"], 0);
    }
}
