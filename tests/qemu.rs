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
            .env("RUST_LOG", "warn")
            .args(["--socket", sock.to_str().unwrap()])
            .args(["--ns", &format!("file={}", disk.display())])
            .stdout(Stdio::null())
            .spawn()
            .expect("vnvme"),
    );
    common::wait_for_socket(&sock);
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

/// A newc cpio archive (what the kernel unpacks as its initramfs).
struct Cpio {
    out: Vec<u8>,
    ino: u32,
}

impl Cpio {
    fn new() -> Cpio {
        Cpio {
            out: Vec::new(),
            ino: 1,
        }
    }

    fn pad(&mut self) {
        while !self.out.len().is_multiple_of(4) {
            self.out.push(0);
        }
    }

    fn entry(&mut self, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) {
        let fields = [
            self.ino,
            mode,
            0,
            0,
            1,
            0,
            data.len() as u32,
            0,
            0,
            rdev.0,
            rdev.1,
            name.len() as u32 + 1,
            0,
        ];
        self.ino += 1;
        self.out.extend(b"070701");
        for f in fields {
            self.out.extend(format!("{f:08x}").as_bytes());
        }
        self.out.extend(name.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend(data);
        self.pad();
    }

    fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, (0, 0), &[]);
        self.out
    }
}

/// First boot: direct I/O round trip, a marker in sector 0, reboot (QEMU resets the
/// device). Second boot: the marker is still there, interrupts work, power off.
const GUEST_INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for i in $(seq 1 20); do [ -e /sys/block/nvme0n1 ] && break; sleep 0.5; done
m=$(dd if=/dev/nvme0n1 bs=512 count=1 iflag=direct 2>/dev/null | head -c 5)
if [ "$m" = "BOOT1" ]; then
  echo "SECOND BOOT sees the marker"
  grep nvme0q /proc/interrupts
  echo GUEST-DONE
  poweroff -f
fi
echo "SIZE $(cat /sys/block/nvme0n1/size)"
echo "SERIAL $(cat /sys/class/nvme/nvme0/serial)"
dd if=/dev/urandom of=/tmp/a bs=4096 count=256 2>/dev/null
dd if=/tmp/a of=/dev/nvme0n1 bs=4096 count=256 seek=100 oflag=direct 2>/dev/null
dd if=/dev/nvme0n1 of=/tmp/b bs=4096 count=256 skip=100 iflag=direct 2>/dev/null
cmp /tmp/a /tmp/b && echo GUEST-IO-OK
printf BOOT1 | dd of=/dev/nvme0n1 bs=512 count=1 conv=sync oflag=direct 2>/dev/null
reboot -f
"#;

#[test]
#[ignore = "needs QEMU >= 10.1, a Linux kernel with NVMe built in and a static busybox: \
            set VNVME_QEMU, VNVME_GUEST_KERNEL, VNVME_GUEST_BUSYBOX and run with --ignored"]
fn linux_guest_does_io_with_msix_and_survives_a_reboot() {
    linux_guest("max_ioqpairs=4,serial=GUESTTEST", |_| {});
}

/// Poll mode (`--ctrl poll_us`): QEMU maps the doorbell page vnvme offers (its memfd shows
/// in QEMU's mappings) and the same guest runs on it: its doorbell writes are stores into
/// that page.
#[test]
#[ignore = "needs QEMU >= 10.1, a Linux kernel with NVMe built in and a static busybox: \
            set VNVME_QEMU, VNVME_GUEST_KERNEL, VNVME_GUEST_BUSYBOX and run with --ignored"]
fn linux_guest_runs_on_the_mapped_doorbell_page() {
    let mut mapped = false;
    let text = linux_guest("max_ioqpairs=4,serial=GUESTTEST,poll_us=200", |pid| {
        let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
        mapped |= maps.contains("memfd:vnvme-doorbells");
    });
    assert!(mapped, "QEMU never mapped the doorbell page:\n{text}");
}

/// Boots the guest of [`GUEST_INIT`] against a vnvme started with `--ctrl ctrl`, calling
/// `watch` with QEMU's pid while the guest runs; checks what both boots print and
/// returns the console.
fn linux_guest(ctrl: &str, mut watch: impl FnMut(u32)) -> String {
    let qemu = std::env::var("VNVME_QEMU").expect("VNVME_QEMU");
    let kernel = std::env::var("VNVME_GUEST_KERNEL").expect("VNVME_GUEST_KERNEL");
    let busybox = std::env::var("VNVME_GUEST_BUSYBOX").expect("VNVME_GUEST_BUSYBOX");
    let dir = TempDir::new("qemu-linux");
    let mut cpio = Cpio::new();
    for d in ["bin", "proc", "sys", "dev", "tmp"] {
        cpio.entry(d, 0o040755, (0, 0), &[]);
    }
    cpio.entry("dev/console", 0o020600, (5, 1), &[]);
    cpio.entry(
        "bin/busybox",
        0o100755,
        (0, 0),
        &std::fs::read(&busybox).unwrap(),
    );
    cpio.entry("init", 0o100755, (0, 0), GUEST_INIT.as_bytes());
    let initrd = dir.path("initrd.cpio");
    std::fs::write(&initrd, cpio.finish()).unwrap();

    let sock = dir.path("v.sock");
    let console = dir.path("console.log");
    let _server = Proc(
        Command::new(env!("CARGO_BIN_EXE_vnvme"))
            .env("RUST_LOG", "warn")
            .args(["--socket", sock.to_str().unwrap()])
            .args(["--ns", "size=64M", "--ctrl", ctrl])
            .stdout(Stdio::null())
            .spawn()
            .expect("vnvme"),
    );
    common::wait_for_socket(&sock);
    let dev = format!(
        r#"{{"driver":"vfio-user-pci","socket":{{"path":"{}","type":"unix"}}}}"#,
        sock.display()
    );
    let mut qemu = Proc(
        Command::new(qemu)
            .args(["-accel", "tcg", "-m", "512M"])
            .args(["-object", "memory-backend-memfd,id=mem,size=512M,share=on"])
            .args(["-machine", "q35,memory-backend=mem"])
            .args(["-device", &dev])
            .args(["-display", "none", "-monitor", "none"])
            .args(["-serial", &format!("file:{}", console.display())])
            .args(["-kernel", &kernel, "-initrd", initrd.to_str().unwrap()])
            .args(["-append", "console=ttyS0 panic=-1"])
            .stdout(Stdio::null())
            .spawn()
            .expect("qemu"),
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    let text = loop {
        let text = std::fs::read_to_string(&console).unwrap_or_default();
        if text.contains("GUEST-DONE") {
            break text;
        }
        if let Ok(Some(st)) = qemu.0.try_wait() {
            panic!("QEMU exited ({st}) before the guest finished:\n{text}");
        }
        watch(qemu.0.id());
        assert!(Instant::now() < deadline, "guest did not finish:\n{text}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(text.contains("SIZE 131072"), "{text}");
    assert!(text.contains("SERIAL GUESTTEST"), "{text}");
    assert!(text.contains("GUEST-IO-OK"), "{text}");
    assert!(text.contains("SECOND BOOT sees the marker"), "{text}");
    // Both the admin and an I/O queue took MSI-X interrupts.
    let irq_lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("PCI-MSIX") && l.contains("nvme0q"))
        .collect();
    assert!(irq_lines.len() >= 2, "MSI-X vectors in use:\n{text}");
    for l in irq_lines {
        let count: u64 = l.split_whitespace().nth(1).unwrap().parse().unwrap();
        assert!(count > 0, "{l}");
    }
    text
}
