//! AFL++ binary for the `admin_params` fuzz target (src/fuzz/). A panic anywhere, the device's
//! own threads included, aborts the process: AFL records a crash.

fn main() {
    let t = vnvme::fuzz::target("admin_params").expect("target");
    afl::fuzz!(|data: &[u8]| {
        (t.run)(data);
    });
}
