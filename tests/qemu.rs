//! QEMU (>= 10.1, `vfio-user-pci`) as the client: SeaBIOS finds the controller, reads the
//! boot sector through it and runs it. Needs a QEMU binary, so it is ignored by default:
//!
//! ```text
//! VNVME_QEMU=/path/to/qemu-system-x86_64 cargo test --test qemu -- --ignored
//! ```
//!
//! `VNVME_QEMU` may be a wrapper script (e.g. one that runs QEMU from a Debian trixie root
//! through its own loader with `-L` pointing at its firmware).

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::TempDir;

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A boot sector that writes "VNVME-BOOT-OK" to the debug console (port 0x402) and halts.
fn boot_sector() -> Vec<u8> {
    let mut code = vec![0xfa, 0x31, 0xc0, 0x8e, 0xd8, 0xfc]; // cli; ds=0; cld
    let si = code.len();
    code.extend([0xbe, 0, 0]); // mov si, msg
    code.extend([0xba, 0x02, 0x04]); // mov dx, 0x402
    let lp = code.len();
    code.extend([0xac, 0x84, 0xc0, 0x74, 0x03, 0xee]); // lodsb; test; jz done; out
    code.extend([0xeb, (lp as i32 - (code.len() as i32 + 2)) as u8]);
    let done = code.len();
    code.push(0xf4); // hlt
    code.extend([0xeb, (done as i32 - (code.len() as i32 + 2)) as u8]);
    let msg = 0x7c00 + code.len() as u16;
    code[si + 1..si + 3].copy_from_slice(&msg.to_le_bytes());
    code.extend(b"VNVME-BOOT-OK\n\0");
    let mut sector = vec![0u8; 512];
    sector[..code.len()].copy_from_slice(&code);
    sector[510] = 0x55;
    sector[511] = 0xaa;
    sector
}

#[test]
#[ignore = "needs QEMU >= 10.1: set VNVME_QEMU and run with --ignored"]
fn seabios_boots_from_the_controller() {
    let qemu = std::env::var("VNVME_QEMU").expect("VNVME_QEMU=path to qemu-system-x86_64");
    let dir = TempDir::new("qemu");
    let disk = dir.path("disk.img");
    let mut img = boot_sector();
    img.resize(1 << 20, 0);
    std::fs::write(&disk, &img).unwrap();
    let sock = dir.path("v.sock");
    let log = dir.path("debugcon.log");
    let _server = Proc(
        Command::new(env!("CARGO_BIN_EXE_vnvme"))
            .args(["--socket", sock.to_str().unwrap()])
            .args(["--ns", &format!("file={}", disk.display())])
            .stdout(Stdio::null())
            .spawn()
            .expect("vnvme"),
    );
    let deadline = Instant::now() + common::TIMEOUT;
    while !sock.exists() {
        assert!(Instant::now() < deadline, "vnvme did not create its socket");
        std::thread::sleep(Duration::from_millis(20));
    }
    let dev = format!(
        r#"{{"driver":"vfio-user-pci","socket":{{"path":"{}","type":"unix"}}}}"#,
        sock.display()
    );
    let _qemu = Proc(
        Command::new(qemu)
            .args(["-accel", "tcg", "-m", "256M"])
            .args(["-object", "memory-backend-memfd,id=mem,size=256M,share=on"])
            .args(["-machine", "pc,memory-backend=mem"])
            .args(["-device", &dev])
            .args(["-display", "none", "-monitor", "none", "-serial", "none"])
            .args(["-chardev", &format!("file,id=dbg,path={}", log.display())])
            .args([
                "-device",
                "isa-debugcon,iobase=0x402,chardev=dbg",
                "-no-reboot",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("qemu"),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("VNVME-BOOT-OK") {
            assert!(text.contains("id=1b36:0010"), "SeaBIOS saw the function");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no boot message from the guest; debug console:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
