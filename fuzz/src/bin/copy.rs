//! AFL++ binary for the `copy` fuzz target (src/fuzz/). A panic anywhere, the device's
//! own threads included, aborts the process: AFL records a crash.

fn main() {
    let t = vnvme::fuzz::target("copy").expect("target");
    afl::fuzz!(|data: &[u8]| {
        (t.run)(data);
    });
}
