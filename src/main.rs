//! vnvme: parse options, build the device, run the server.

fn main() {
    eprintln!("vnvme: not yet wired");
    std::process::exit(2);
}
