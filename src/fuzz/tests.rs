//! The seeded random driver in `cargo test`: one test per target, each bounded by
//! `VNVME_FUZZ_ITERS` cases and `VNVME_FUZZ_SECS` seconds (short defaults), from
//! `VNVME_FUZZ_SEED`. `VNVME_FUZZ_CASE=hex` (with `VNVME_FUZZ_TARGET=name`) replays one
//! case instead. On a failure the seed and the case's bytes are printed.

use std::time::Duration;

use super::{drive, from_hex, run_case, target, to_hex, DEFAULT_SEED, TARGETS};

/// Default iterations and time budget per target (the whole default run stays
/// within about 10 s in a debug build on two cores).
const ITERS: u64 = 1_000_000;
const SECS: f64 = 2.0;

fn env_num<T: std::str::FromStr>(name: &str) -> Option<T> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    if let Some(h) = v.strip_prefix("0x") {
        return u64::from_str_radix(h, 16)
            .ok()
            .and_then(|x| x.to_string().parse().ok());
    }
    v.parse().ok()
}

fn fuzz(name: &str) {
    // RUST_LOG=warn shows what the device logs (off unless asked).
    let _ = env_logger::builder().is_test(true).try_init();
    let t = target(name).expect("target");
    if let Ok(hex) = std::env::var("VNVME_FUZZ_CASE") {
        let only = std::env::var("VNVME_FUZZ_TARGET").ok();
        if only.as_deref().is_some_and(|o| o != name) {
            return;
        }
        let case = from_hex(&hex).expect("VNVME_FUZZ_CASE is not hex");
        match run_case(t, &case) {
            Ok(()) => println!("fuzz {name}: replayed case of {} bytes: ok", case.len()),
            Err(m) => panic!("fuzz {name}: replayed case fails: {m}"),
        }
        return;
    }
    let seed = env_num("VNVME_FUZZ_SEED").unwrap_or(DEFAULT_SEED);
    let iters = env_num("VNVME_FUZZ_ITERS").unwrap_or(ITERS);
    let secs: f64 = env_num("VNVME_FUZZ_SECS").unwrap_or(SECS);
    let r = drive(t, seed, iters, Duration::from_secs_f64(secs));
    println!("{}", r.line());
    if let Some((case, msg)) = r.failure {
        panic!(
            "fuzz {name}: failure after {} execs, seed {seed}: {msg}\n  case ({} bytes): {}\n  \
             replay: VNVME_FUZZ_TARGET={name} VNVME_FUZZ_CASE={} cargo test --lib fuzz::tests::{name} -- --nocapture",
            r.execs,
            case.len(),
            to_hex(&case),
            to_hex(&case)
        );
    }
}

#[test]
fn vfio_msg() {
    fuzz("vfio_msg");
}

#[test]
fn sqe() {
    fuzz("sqe");
}

#[test]
fn copy() {
    fuzz("copy");
}

#[test]
fn admin_params() {
    fuzz("admin_params");
}

#[test]
fn every_target_has_a_test() {
    let names: Vec<&str> = TARGETS.iter().map(|t| t.name).collect();
    assert_eq!(names, ["vfio_msg", "sqe", "copy", "admin_params"]);
}

#[test]
fn hex_round_trip_and_short_inputs() {
    assert_eq!(from_hex(&to_hex(&[0, 1, 0xfe])), Some(vec![0, 1, 0xfe]));
    assert_eq!(from_hex("abc"), None);
    // The empty input is a valid case for every target.
    for t in TARGETS {
        run_case(t, &[]).unwrap_or_else(|m| panic!("{}: empty input: {m}", t.name));
    }
}
