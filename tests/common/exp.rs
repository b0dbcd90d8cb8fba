//! The real `vnvme` binary started with `--control` and `--trace`, for the experiment
//! control tests: a [`TestServer`] whose device lives in a child process, so the host
//! driver in `common::nvme` drives it unchanged.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::nvme::{copy_descriptors, Cqe, Nvme, Sqe, IO_COPY, PAGE};
use super::{TempDir, TestServer, TIMEOUT};

pub const BIN: &str = env!("CARGO_BIN_EXE_vnvme");

/// A vnvme child process (killed by its own id when dropped) and its sockets.
pub struct BinServer {
    pub child: Child,
    pub server: TestServer,
    pub control: PathBuf,
    pub trace: PathBuf,
    pub stderr: PathBuf,
}

impl BinServer {
    /// Starts `vnvme --socket .. --control .. --trace ..` with `--ns` lists `ns`, `--ctrl`
    /// lists `ctrl` and further options `extra`; waits for the vfio-user socket.
    pub fn start(tag: &str, ns: &[&str], ctrl: &[&str], extra: &[&str]) -> BinServer {
        Self::start_with(tag, ns, ctrl, extra, true)
    }

    /// Like [`start`]; without `--trace FILE` when `trace` is false (`extra` may then
    /// give its own `--trace`).
    pub fn start_with(
        tag: &str,
        ns: &[&str],
        ctrl: &[&str],
        extra: &[&str],
        trace_file: bool,
    ) -> BinServer {
        let dir = TempDir::new(tag);
        let socket = dir.path("vnvme.sock");
        let control = dir.path("control.sock");
        let trace = dir.path("trace.jsonl");
        let stderr = dir.path("stderr.log");
        let mut args: Vec<String> = vec![
            "--socket".into(),
            socket.to_string_lossy().into(),
            "--control".into(),
            control.to_string_lossy().into(),
        ];
        if trace_file {
            args.push("--trace".into());
            args.push(trace.to_string_lossy().into());
        }
        for n in ns {
            args.push("--ns".into());
            args.push(n.to_string());
        }
        for c in ctrl {
            args.push("--ctrl".into());
            args.push(c.to_string());
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        // The same device built here gives the MSI-X vector count the driver needs.
        let cfg = vnvme::cli::RunArgs {
            socket: "unused".into(),
            ns: ns.iter().map(|s| s.to_string()).collect(),
            ctrl: ctrl.iter().map(|s| s.to_string()).collect(),
            print_qemu_args: false,
            ns_dir: None,
            capacity: None,
            lbafs: None,
        }
        .device_config()
        .expect("config");
        let dev = vnvme::server::build(&cfg).expect("build");
        let bar0_size = vnvme::vfio_user::Device::region_size(&dev, 0);
        let msix_vectors = vnvme::vfio_user::Device::msix_vectors(&dev);
        drop(dev);
        let child = Command::new(BIN)
            .args(&args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).expect("stderr file"))
            .spawn()
            .expect("spawn vnvme");
        let mut b = BinServer {
            child,
            server: TestServer {
                dir,
                socket: socket.clone(),
                running: None,
                bar0_size,
                msix_vectors,
            },
            control,
            trace,
            stderr,
        };
        let deadline = Instant::now() + TIMEOUT;
        while !socket.exists() {
            if let Ok(Some(st)) = b.child.try_wait() {
                panic!("vnvme exited with {st}: {}", b.stderr_text());
            }
            assert!(Instant::now() < deadline, "no socket from vnvme");
            std::thread::sleep(Duration::from_millis(20));
        }
        b
    }

    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// One control request; the whole reply.
    pub fn request(&self, req: &Value) -> Value {
        vnvme::experiment::control::request(&self.control, req, TIMEOUT).expect("control request")
    }

    /// `execute` with `arguments`; the reply.
    pub fn ctl(&self, execute: &str, arguments: Value) -> Value {
        self.request(&json!({"execute": execute, "arguments": arguments}))
    }

    /// Like [`ctl`], panicking on an error reply; the "return" value.
    pub fn ok(&self, execute: &str, arguments: Value) -> Value {
        let r = self.ctl(execute, arguments.clone());
        match r.get("return") {
            Some(v) => v.clone(),
            None => panic!("{execute} {arguments}: {r}"),
        }
    }

    /// SIGTERM, then waits for the exit (the trace is flushed by then).
    pub fn stop(&mut self) -> i32 {
        // SAFETY: plain kill(2) of our own child by its id.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(st) = self.child.try_wait().expect("wait") {
                return st.code().unwrap_or(-1);
            }
            assert!(Instant::now() < deadline, "vnvme did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The trace's lines as JSON.
    pub fn trace_lines(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.trace)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    /// Waits (bounded) until the trace holds at least `n` records with qid != 0.
    pub fn wait_io_records(&self, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let io: Vec<Value> = self
                .trace_lines()
                .into_iter()
                .filter(|v| v["qid"].as_u64().is_some_and(|q| q != 0))
                .collect();
            if io.len() >= n || Instant::now() > deadline {
                return io;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for BinServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A format 0 Copy of `ranges` into `nsid` at `sdlba` on queue `qid`; (cid, completion).
pub fn copy_on(n: &mut Nvme, qid: u16, nsid: u32, sdlba: u64, ranges: &[(u32, u64, u16)]) -> Cqe {
    let list = n.alloc(PAGE);
    n.write_mem(list, &copy_descriptors(ranges));
    let nr = ranges.len() as u32 - 1;
    n.exec(
        qid,
        Sqe::new(IO_COPY, nsid)
            .prp(list, 0)
            .cdw(10, sdlba as u32)
            .cdw(11, (sdlba >> 32) as u32)
            .cdw(12, nr),
    )
}
