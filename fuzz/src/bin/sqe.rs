//! AFL++ binary for the `sqe` fuzz target (src/fuzz/). A panic anywhere, the device's
//! own threads included, aborts the process: AFL records a crash.

fn main() {
    let t = vnvme::fuzz::target("sqe").expect("target");
    afl::fuzz!(|data: &[u8]| {
        (t.run)(data);
    });
}
