//! vnvme: parse options, build the device, run the server.

use clap::Parser;

use vnvme::cli::{Cli, Command, RunArgs};

mod bench;

fn main() {
    // Before any thread exists: SIGINT/SIGTERM then stop the server in order.
    if let Err(e) = vnvme::server::signals::block() {
        eprintln!("vnvme: blocking signals: {e}");
    }
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    // `vnvme bench ...` has its own options (src/bench.rs).
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if argv.get(1).is_some_and(|a| a == "bench") {
        std::process::exit(bench::main(&argv[1..]));
    }
    let code = match Cli::parse().into_command() {
        Command::Run(args) => run(&args),
        Command::Bench { args } => {
            let mut argv = vec![std::ffi::OsString::from("bench")];
            argv.extend(args);
            bench::main(&argv)
        }
    };
    std::process::exit(code);
}

/// `vnvme [run]`: exit status 2 for a bad configuration, 1 for a runtime failure.
fn run(args: &RunArgs) -> i32 {
    let cfg = match args.device_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("vnvme: {e}");
            return 2;
        }
    };
    if args.print_qemu_args {
        println!("{}", vnvme::cli::qemu_args(&args.socket));
        return 0;
    }
    let dev = match vnvme::server::build(&cfg) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("vnvme: {e}");
            return 2;
        }
    };
    let server = match vnvme::vfio_user::Server::bind(&args.socket) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("vnvme: --socket {}: {e}", args.socket.display());
            return 1;
        }
    };
    if let Err(e) = server
        .stop_handle()
        .and_then(vnvme::server::signals::stop_on_signal)
    {
        eprintln!("vnvme: {e}");
        return 1;
    }
    match server.run(&dev) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("vnvme: {e}");
            1
        }
    }
}
