//! vnvme: parse options, build the device, run the server.

use std::sync::Arc;
use std::time::Duration;

use vnvme::cli::{Command, CtlArgs, ExperimentArgs, RunArgs, VhostUserBlkArgs};

mod bench;

fn main() {
    // Before any thread exists: SIGINT/SIGTERM then stop the server in order.
    if let Err(e) = vnvme::signals::block() {
        eprintln!("vnvme: blocking signals: {e}");
    }
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    // `vnvme bench ...` has its own options (src/bench.rs).
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if argv.get(1).is_some_and(|a| a == "bench") {
        std::process::exit(bench::main(&argv[1..]));
    }
    let (cli, socket_given) = vnvme::cli::parse_args();
    let code = match cli.into_command() {
        Command::Run {
            args,
            experiment,
            vhost,
        } => run(&args, &experiment, &vhost, socket_given),
        Command::Ctl(args) => ctl(&args),
        Command::Bench { args } => {
            let mut argv = vec![std::ffi::OsString::from("bench")];
            argv.extend(args);
            bench::main(&argv)
        }
    };
    std::process::exit(code);
}

/// `vnvme ctl`: 0 on a "return" reply, 1 on an "error" reply or no reply, 2 on usage.
fn ctl(args: &CtlArgs) -> i32 {
    let req = match args.request() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("vnvme ctl: {e}");
            return 2;
        }
    };
    match vnvme::experiment::control::request(&args.control, &req, Duration::from_secs(60)) {
        Ok(reply) => {
            println!("{reply}");
            if reply.get("return").is_some() {
                0
            } else {
                1
            }
        }
        Err(e) => {
            eprintln!("vnvme ctl: --control {}: {e}", args.control.display());
            1
        }
    }
}

/// `vnvme [run]`: exit status 2 for a bad configuration, 1 for a runtime failure.
/// Without --vhost-user-blk the vfio-user socket is always served (default
/// vnvme.sock); with it, only if --socket is given.
fn run(args: &RunArgs, exp: &ExperimentArgs, vhost: &VhostUserBlkArgs, socket_given: bool) -> i32 {
    let cfg = match args.device_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("vnvme: {e}");
            return 2;
        }
    };
    let serve_vfio = socket_given || vhost.vhost_user_blk.is_empty();
    let disks = match vhost.disks(&cfg, serve_vfio.then_some(args.socket.as_path())) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("vnvme: {e}");
            return 2;
        }
    };
    let (faults, latencies) = match exp.specs() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("vnvme: {e}");
            return 2;
        }
    };
    if args.print_qemu_args {
        if disks.is_empty() {
            println!("{}", vnvme::cli::qemu_args(&args.socket));
        } else {
            let vfio = serve_vfio.then_some(args.socket.as_path());
            println!("{}", vnvme::cli::qemu_args_all(vfio, &disks));
        }
        return 0;
    }
    // With virtio-blk views, every volume is opened once and shared by both views.
    let volumes = if disks.is_empty() {
        Vec::new()
    } else {
        match vnvme::server::open_volumes(&cfg) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("vnvme: {e}");
                return 2;
            }
        }
    };
    let built = if disks.is_empty() {
        vnvme::server::build(&cfg)
    } else {
        vnvme::server::build_on(&cfg, &volumes)
    };
    let dev = match built {
        Ok(d) => d,
        Err(e) => {
            eprintln!("vnvme: {e}");
            return 2;
        }
    };
    let ctrl = dev.controller().clone();
    let lab = dev.experiment().clone();
    // Faults and latencies before any client can connect.
    for f in faults {
        if let Err(e) = lab.add_fault(f) {
            eprintln!("vnvme: --fault: {e}");
            return 2;
        }
    }
    for l in latencies {
        if let Err(e) = lab.set_latency(l) {
            eprintln!("vnvme: --latency: {e}");
            return 2;
        }
    }
    let tracer = match &exp.trace {
        None => None,
        Some(p) => match vnvme::experiment::trace::Tracer::open(p) {
            Ok(t) => {
                lab.set_observer(Some(t.observer()));
                Some(t)
            }
            Err(e) => {
                eprintln!("vnvme: --trace {}: {e}", p.display());
                return 1;
            }
        },
    };
    // The control socket exists before the vfio-user socket: whoever waits for the
    // latter finds the former.
    let control = match &exp.control {
        None => None,
        Some(p) => {
            let ctx = Arc::new(vnvme::experiment::control::Context {
                ctrl: ctrl.clone(),
                lab: lab.clone(),
            });
            match vnvme::experiment::control::spawn(p, ctx) {
                Ok(c) => Some(c),
                Err(e) => {
                    eprintln!("vnvme: --control {}: {e}", p.display());
                    return 1;
                }
            }
        }
    };
    let mut running = Vec::with_capacity(disks.len());
    for d in &disks {
        // The same experiment state as the NVMe controller: one set of faults,
        // latencies, counters and one trace for both views.
        let hooks: Arc<dyn vnvme::hooks::Hooks> = lab.clone();
        match vnvme::server::spawn_vhost_user_blk(&cfg, d, &volumes, hooks) {
            Ok(r) => running.push(r),
            Err(e) => {
                eprintln!("vnvme: {e}");
                return 1;
            }
        }
    }
    let code = if serve_vfio {
        serve(args, &dev)
    } else {
        serve_vhost_only()
    };
    // Disks stop before the volumes are dropped; their sockets are removed.
    drop(running);
    drop(control);
    if let Some(t) = tracer {
        lab.set_observer(None);
        if let Err(e) = t.finish() {
            eprintln!("vnvme: --trace: {e}");
            return 1;
        }
    }
    code
}

/// Only vhost-user-blk disks are served (their own threads): SIGINT/SIGTERM are
/// unblocked here and end the process by their default action (the disks' sockets are
/// left behind and replaced as stale at the next start).
fn serve_vhost_only() -> i32 {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        if let Err(e) = vmm_sys_util::signal::unblock_signal(sig) {
            eprintln!("vnvme: unblocking signal {sig}: {e}");
            return 1;
        }
    }
    loop {
        std::thread::park();
    }
}

fn serve(args: &RunArgs, dev: &vnvme::server::NvmeFunction) -> i32 {
    let server = match vnvme::vfio_user::Server::bind(&args.socket) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("vnvme: --socket {}: {e}", args.socket.display());
            return 1;
        }
    };
    if let Err(e) = server
        .stop_handle()
        .and_then(vnvme::signals::stop_on_signal)
    {
        eprintln!("vnvme: {e}");
        return 1;
    }
    match server.run(dev) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("vnvme: {e}");
            1
        }
    }
}
