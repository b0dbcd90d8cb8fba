//! Experiment control: steering and watching a running device from outside the guest.
//!
//! - [`lab`]: the experiment state (counters, faults, latencies, the record observer);
//!   it implements [`crate::hooks::Hooks`] for every front end.
//! - [`control`]: the control socket's JSON protocol (QMP-like), over the experiment
//!   state and the NVMe model's run-time knobs (copy limits, CDFE).
//! - [`trace`]: the command trace file (one JSON line per completion).
//!
//! This layer sits above the front ends: it may use the NVMe model's types; the model
//! and the transports know it only through the hooks trait.

#![forbid(unsafe_code)]

pub mod control;
pub mod lab;
pub mod trace;

#[cfg(test)]
mod tests;

pub use lab::{
    CommandObserver, CommandRecord, CopyRecord, CopyStats, Experiment, FaultInfo, FaultSpec,
    LatencySpec, NamespaceStats, OpcodeStats, StatsSnapshot, MAX_LATENCY_US,
};
