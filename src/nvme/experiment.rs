//! Experiment hooks of the model: what each completed command looked like (for traces
//! and counters), injected faults, a latency model and copy limits changed at run time.
//!
//! CONTRACT (issue 5): the types and `Controller` methods below are the surface the
//! control socket and the trace writer use. STUB: bodies are filled in by the model work.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::Controller;

/// One source range of a Copy, as the trace shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeRecord {
    pub nsid: u32,
    pub slba: u64,
    /// Number of logical blocks, 1-based.
    pub nlb: u32,
}

/// Copy-specific part of a record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyRecord {
    pub sdlba: u64,
    pub format: u8,
    /// NR as in CDW12 (0's based).
    pub nr: u8,
    /// The ranges as parsed (empty if the range list could not be read).
    pub ranges: Vec<RangeRecord>,
}

/// One completed command (admin or I/O).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandRecord {
    /// Completion time in microseconds since the controller was created.
    pub time_us: u64,
    /// Submission queue id (0 = admin).
    pub qid: u16,
    pub cid: u16,
    pub opcode: u8,
    pub nsid: u32,
    /// Block commands (read, write, write zeroes, compare, verify): SLBA and 1-based NLB.
    pub slba: Option<u64>,
    pub nlb: Option<u32>,
    pub copy: Option<CopyRecord>,
    /// The CQE status field without the phase tag: DNR in bit 14, SCT 10:8, SC 7:0
    /// (the form nvme-cli prints, e.g. 0x4183).
    pub status: u16,
    pub dw0: u32,
    /// From fetching the SQE to posting the CQE, in microseconds.
    pub latency_us: u64,
}

/// Receives every completed command, on the thread that completed it. Must not block.
pub trait CommandObserver: Send + Sync {
    fn completed(&self, rec: &CommandRecord);
}

/// Counters of one opcode on one namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpcodeStats {
    pub commands: u64,
    /// Logical blocks moved (read, written, zeroed, copied...).
    pub blocks: u64,
    /// Errors by status (hex string "0x4183" -> count).
    pub errors: BTreeMap<String, u64>,
}

/// Copy-specific counters of one namespace (as destination).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyStats {
    pub ranges: u64,
    pub blocks_copied: u64,
    /// Number of ranges per command (1-based, as a decimal string) -> commands.
    pub ranges_histogram: BTreeMap<String, u64>,
}

/// Counters of one namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceStats {
    /// Opcode name ("read", "copy", ...) -> counters.
    pub opcodes: BTreeMap<String, OpcodeStats>,
    pub copy: CopyStats,
}

/// Counters of the whole controller: nsid (decimal string) -> counters. Admin commands
/// are counted under nsid "admin".
pub type StatsSnapshot = BTreeMap<String, NamespaceStats>;

/// Current Copy limits of a namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyLimits {
    pub mssrl: u16,
    pub mcl: u32,
    pub msrc: u8,
}

/// An injected fault: matching I/O commands complete with `status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// I/O opcode the fault applies to.
    pub opcode: u8,
    /// Only commands for this namespace (default: any).
    #[serde(default)]
    pub nsid: Option<u32>,
    /// Let this many matching commands pass before the first injection (default 0).
    #[serde(default)]
    pub after: u64,
    /// Inject at most this many times (default: no limit).
    #[serde(default)]
    pub count: Option<u64>,
    /// After `after`, inject into every Nth matching command (default 1: each).
    #[serde(default = "one")]
    pub every: u64,
    /// Probability of injecting into a command that qualifies (default 1.0).
    #[serde(default = "certain")]
    pub probability: f64,
    /// Seed of the fault's own random generator (default: fixed per fault id), so a
    /// run with a seed is reproducible exactly.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Status (SCT << 8 | SC); DNR is added from `dnr`.
    pub status: u16,
    /// Set Do Not Retry (default true).
    #[serde(default = "yes")]
    pub dnr: bool,
    /// Copy only: really copy ranges 0..k-1, then fail with `status` and Dword 0 = k.
    #[serde(default)]
    pub copy_range: Option<u32>,
}

fn one() -> u64 {
    1
}
fn certain() -> f64 {
    1.0
}
fn yes() -> bool {
    true
}

/// A fault as installed, with what it did so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultInfo {
    pub id: u32,
    pub spec: FaultSpec,
    /// Commands that matched opcode and nsid.
    pub matched: u64,
    /// Commands that got the injected status.
    pub injected: u64,
}

/// Added completion latency for one I/O opcode: `fixed_us + per_block_us * NLB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencySpec {
    pub opcode: u8,
    #[serde(default)]
    pub fixed_us: u64,
    #[serde(default)]
    pub per_block_us: u64,
}

/// I/O opcode names used by traces, counters and the control socket.
pub fn io_opcode_name(opcode: u8) -> &'static str {
    let _ = opcode;
    "unknown"
}

/// Admin opcode names.
pub fn admin_opcode_name(opcode: u8) -> &'static str {
    let _ = opcode;
    "unknown"
}

/// An I/O opcode by name ("read", "write", "copy", ...) or number ("25", "0x19").
pub fn io_opcode_by_name(name: &str) -> Option<u8> {
    let _ = name;
    None
}

/// A status's name ("success", "invalid-field", "command-size-limit-exceeded", ...),
/// ignoring DNR.
pub fn status_name(status: u16) -> &'static str {
    let _ = status;
    "unknown"
}

impl Controller {
    /// Installs (or removes) the observer every completion is reported to. With none,
    /// completions cost nothing extra.
    pub fn set_observer(&self, obs: Option<Arc<dyn CommandObserver>>) {
        let _ = obs;
    }

    /// Ids of the attached namespaces, in increasing order.
    pub fn namespace_ids(&self) -> Vec<u32> {
        Vec::new()
    }

    pub fn stats(&self) -> StatsSnapshot {
        StatsSnapshot::new()
    }

    pub fn reset_stats(&self) {}

    /// Current limits of a namespace.
    pub fn copy_limits(&self, nsid: u32) -> Option<CopyLimits> {
        let _ = nsid;
        None
    }

    /// Changes a namespace's Copy limits at once (Identify Namespace and the Copy checks)
    /// and posts a Namespace Attribute Changed event. Errors name the field (0 refused).
    pub fn set_copy_limits(
        &self,
        nsid: u32,
        mssrl: Option<u16>,
        mcl: Option<u32>,
        msrc: Option<u8>,
    ) -> Result<CopyLimits, String> {
        let _ = (nsid, mssrl, mcl, msrc);
        Err("not implemented".into())
    }

    /// Installs a fault; returns its id. Errors name the field.
    pub fn add_fault(&self, spec: FaultSpec) -> Result<u32, String> {
        let _ = spec;
        Err("not implemented".into())
    }

    pub fn faults(&self) -> Vec<FaultInfo> {
        Vec::new()
    }

    pub fn clear_faults(&self) {}

    /// Sets the latency of an opcode (0/0 removes it). Delays are served without blocking
    /// other commands, queues or the caller.
    pub fn set_latency(&self, spec: LatencySpec) -> Result<(), String> {
        let _ = spec;
        Err("not implemented".into())
    }

    pub fn latencies(&self) -> Vec<LatencySpec> {
        Vec::new()
    }
}
