//! `vnvme bench ...`: benchmarks and the stress run (timing lives here, never in tests).
//!
//! - `copy` ([`copy`]): device-side copy throughput on a namespace file.
//! - `stress` ([`stress`]): a running vnvme driven over its vfio-user socket with mixed
//!   I/O and data verification while faults, copy limits and resets are thrown at it;
//!   `--verify` reads back what the journal says must have survived ([`journal`]).
//! - `io` ([`io`]): block I/O through vnvme over its socket against native io_uring
//!   ([`uring`], the one module here with `unsafe`).

use std::ffi::OsString;

use clap::{Parser, Subcommand};

mod copy;
mod io;
mod journal;
mod rng;
mod stress;
mod uring;

#[derive(Debug, Parser)]
#[command(
    name = "vnvme bench",
    bin_name = "vnvme bench",
    about = "Benchmarks and the stress run (timing lives here, never in tests)"
)]
struct BenchCli {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Copy throughput: raw copy_file_range vs read+write vs vnvme's Copy command.
    Copy(copy::CopyArgs),
    /// Block I/O through vnvme over its vfio-user socket (N queues × QD) against the same
    /// pattern natively with io_uring (O_DIRECT and buffered) on the same file.
    Io(io::IoArgs),
    /// Mixed verified I/O against a running vnvme while faults, copy limit changes and
    /// controller resets are injected; --verify checks a journal after a crash.
    Stress(stress::StressArgs),
}

/// `vnvme bench ...` (`args[0]` is "bench"). Returns the exit status.
pub fn main(args: &[OsString]) -> i32 {
    let cli = match BenchCli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    let (name, result) = match cli.command {
        BenchCommand::Copy(a) => ("copy", copy::bench_copy(&a)),
        BenchCommand::Io(a) => ("io", io::main(&a)),
        BenchCommand::Stress(a) => ("stress", stress::main(&a)),
    };
    match result {
        Ok(()) => 0,
        Err(Failure::Usage(m)) => {
            eprintln!("vnvme bench {name}: {m}");
            2
        }
        Err(Failure::Run(m)) => {
            eprintln!("vnvme bench {name}: {m}");
            1
        }
    }
}

pub(crate) enum Failure {
    Usage(String),
    Run(String),
}

pub(crate) fn run_err<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> Failure + '_ {
    move |e| Failure::Run(format!("{what}: {e}"))
}
