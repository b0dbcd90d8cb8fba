//! The `vnvme` binary: options, exit statuses, the socket, serving a client.

mod common;

use std::process::{Child, Command, Stdio};

use common::{run_vnvme, Client, TempDir};

const BIN: &str = env!("CARGO_BIN_EXE_vnvme");

/// A child process killed (by its own id) when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(socket: &std::path::Path) -> Proc {
    Proc(
        Command::new(BIN)
            .args(["--socket", socket.to_str().unwrap(), "--ns", "size=1M"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn vnvme"),
    )
}

#[test]
fn print_qemu_args_gives_absolute_socket() {
    let (code, out, _) = run_vnvme(&["--socket", "rel/dir/x.sock", "--print-qemu-args"]);
    assert_eq!(code, 0);
    let cwd = std::env::current_dir().unwrap();
    let abs = cwd.join("rel/dir/x.sock");
    assert!(out.contains("memory-backend-memfd"), "{out}");
    assert!(out.contains("share=on"), "{out}");
    assert!(out.contains("\"driver\":\"vfio-user-pci\""), "{out}");
    assert!(
        out.contains(&format!("\"path\":\"{}\"", abs.display())),
        "{out}"
    );
    let (code, out, _) = run_vnvme(&["run", "--print-qemu-args"]);
    assert_eq!(code, 0);
    assert!(out.contains("vnvme.sock"), "{out}");
}

#[test]
fn bad_options_exit_2_with_one_line() {
    for (args, needle) in [
        (vec!["--ns", "size=1M,colour=red"], "unknown key 'colour'"),
        (
            vec!["--ns", "size=1M,nsid=1", "--ns", "size=1M,nsid=1"],
            "--ns nsid",
        ),
        (vec!["--ns", "size=12Q"], "--ns size"),
        (
            vec!["--ns", "size=1M,logical_block_size=1000"],
            "--ns logical_block_size",
        ),
        (vec!["--ctrl", "mdts=lots"], "--ctrl mdts"),
        (vec!["--ctrl", "max_ioqpairs=0"], "--ctrl max_ioqpairs"),
        (vec!["--ctrl", "nonsense=1"], "--ctrl: unknown key"),
        (
            vec!["--ctrl", "poll_us=1000001"],
            "--ctrl poll_us: 1000001 is more than 1000000",
        ),
        (
            vec!["--ctrl", "poll_us=soon"],
            "--ctrl poll_us: 'soon' is not a number",
        ),
        (vec!["--ctrl", "poll_us=-5"], "--ctrl poll_us"),
    ] {
        let (code, _, err) = run_vnvme(&args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
    }
}

#[test]
fn binary_serves_and_guards_its_socket() {
    let dir = TempDir::new("cli-serve");
    let sock = dir.path("v.sock");
    let first = spawn(&sock);
    let mut c = Client::connect(&sock);
    c.negotiate();
    assert_eq!(c.device_info().num_regions, 9);
    drop(c);

    // A second instance refuses the live socket.
    let (code, _, err) = run_vnvme(&["--socket", sock.to_str().unwrap(), "--ns", "size=1M"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("another process is listening"), "{err}");

    // Kill the first: its socket file stays behind, stale; a new instance replaces it.
    drop(first);
    assert!(sock.exists(), "stale socket left behind by a killed server");
    let _second = spawn(&sock);
    // Client::connect retries while the file is stale (connection refused).
    let mut c = Client::connect(&sock);
    c.negotiate();
    assert_eq!(c.device_info().num_irqs, 5);
}

#[test]
fn sigterm_stops_cleanly_and_removes_the_socket() {
    let dir = TempDir::new("cli-sigterm");
    let sock = dir.path("v.sock");
    let mut p = spawn(&sock);
    // Serving a connected client does not delay the stop.
    let mut c = Client::connect(&sock);
    c.negotiate();
    let st = Command::new("kill")
        .args(["-TERM", &p.0.id().to_string()])
        .status()
        .expect("kill");
    assert!(st.success());
    let deadline = std::time::Instant::now() + common::TIMEOUT;
    let status = loop {
        if let Some(s) = p.0.try_wait().expect("wait") {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "vnvme did not stop on SIGTERM"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    assert_eq!(status.code(), Some(0));
    assert!(!sock.exists(), "socket removed on exit");
    assert!(c.is_closed());
}
