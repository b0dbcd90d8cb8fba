//! A small host-side vfio-user client for the integration tests, plus helpers to start a
//! server on a temporary socket and to make shared guest memory.
#![allow(dead_code)]

pub mod exp;
pub mod nvme;
pub mod virtio;

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use vm_memory::{FileOffset, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

use vnvme::config::DeviceConfig;
use vnvme::vfio_user::protocol::{self as p, Command, Header, HEADER_SIZE};
use vnvme::vfio_user::sock;

/// How long any single wait in a test may take.
pub const TIMEOUT: Duration = Duration::from_secs(5);

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A fresh temporary directory for one test.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let d =
            std::env::temp_dir().join(format!("vnvme-test-{}-{}-{}", tag, std::process::id(), n));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("create temp dir");
        TempDir(d)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A device config with one small memory namespace and few queues.
/// Runs the vnvme binary to completion: (exit status, stdout, stderr).
pub fn run_vnvme(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vnvme"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run vnvme");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Waits (up to [`TIMEOUT`]) for a server to create its socket.
pub fn wait_for_socket(path: &Path) {
    let deadline = Instant::now() + TIMEOUT;
    while !path.exists() {
        assert!(Instant::now() < deadline, "no socket at {}", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn small_config() -> DeviceConfig {
    let args = vnvme::cli::RunArgs {
        socket: "unused".into(),
        ns: vec!["size=4M".into()],
        ctrl: vec!["max_ioqpairs=4".into()],
        print_qemu_args: false,
        ns_dir: None,
        capacity: None,
        lbafs: None,
    };
    args.device_config().expect("config")
}

/// Starts an in-process server on a temporary socket.
pub struct TestServer {
    pub dir: TempDir,
    pub socket: PathBuf,
    pub running: Option<vnvme::server::RunningServer>,
    pub bar0_size: u64,
    pub msix_vectors: u16,
}

impl TestServer {
    pub fn start(tag: &str, cfg: &DeviceConfig) -> TestServer {
        let _ = env_logger::builder().is_test(true).try_init();
        let dir = TempDir::new(tag);
        let socket = dir.path("vnvme.sock");
        let dev = vnvme::server::build(cfg).expect("build device");
        let bar0_size = vnvme::vfio_user::Device::region_size(&dev, 0);
        let msix_vectors = vnvme::vfio_user::Device::msix_vectors(&dev);
        let running = vnvme::server::spawn(dev, &socket).expect("spawn server");
        TestServer {
            dir,
            socket,
            running: Some(running),
            bar0_size,
            msix_vectors,
        }
    }

    pub fn client(&self) -> Client {
        Client::connect(&self.socket)
    }

    /// A client that has negotiated the version.
    pub fn negotiated(&self) -> Client {
        let mut c = self.client();
        c.negotiate();
        c
    }
}

/// A reply (or any message) read back from the server.
#[derive(Debug)]
pub struct Reply {
    pub hdr: Header,
    pub payload: Vec<u8>,
}

impl Reply {
    pub fn is_error(&self) -> bool {
        self.hdr.flags & p::FLAG_ERROR != 0
    }

    /// The errno of an error reply (panics on success, to keep tests short).
    pub fn errno(&self) -> i32 {
        assert!(
            self.is_error(),
            "expected an error reply, got {:?}",
            self.hdr
        );
        self.hdr.error as i32
    }

    pub fn ok(self) -> Reply {
        assert!(
            !self.is_error(),
            "command {} failed with errno {}",
            self.hdr.command,
            self.hdr.error
        );
        self
    }
}

/// The client end of a vfio-user connection.
pub struct Client {
    pub stream: UnixStream,
    next_id: u16,
}

impl Client {
    pub fn connect(path: &Path) -> Client {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            match UnixStream::connect(path) {
                Ok(stream) => {
                    stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
                    return Client { stream, next_id: 1 };
                }
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("connect {}: {e}", path.display()),
            }
        }
    }

    pub fn next_id(&mut self) -> u16 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        id
    }

    pub fn send_raw(&mut self, bytes: &[u8], fds: &[RawFd]) -> io::Result<()> {
        sock::send_with_fds(&self.stream, bytes, fds)
    }

    fn read_exact(&mut self, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> io::Result<()> {
        let mut got = 0;
        while got < buf.len() {
            let (n, _) = sock::recv_with_fds(&self.stream, &mut buf[got..], fds)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "server closed",
                ));
            }
            got += n;
        }
        Ok(())
    }

    /// Reads one whole message (descriptors sent with it are closed).
    pub fn recv(&mut self) -> io::Result<Reply> {
        self.recv_fds().map(|(r, _)| r)
    }

    /// Reads one whole message and the descriptors sent with it.
    pub fn recv_fds(&mut self) -> io::Result<(Reply, Vec<OwnedFd>)> {
        let mut fds = Vec::new();
        let mut hb = [0u8; HEADER_SIZE];
        self.read_exact(&mut hb, &mut fds)?;
        let hdr = Header::parse(&hb).map_err(|e| io::Error::other(e.to_string()))?;
        let mut payload = vec![0u8; (hdr.size as usize).saturating_sub(HEADER_SIZE)];
        self.read_exact(&mut payload, &mut fds)?;
        Ok((Reply { hdr, payload }, fds))
    }

    /// True if the server closed the connection (EOF, or a reset when it closed with
    /// our data unread, within the timeout).
    pub fn is_closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        let mut fds = Vec::new();
        match sock::recv_with_fds(&self.stream, &mut b, &mut fds) {
            Ok((0, _)) => true,
            Ok(_) => false,
            Err(e) => e.kind() == io::ErrorKind::ConnectionReset,
        }
    }

    /// Sends a command with `flags` and returns its id.
    pub fn send_cmd(&mut self, cmd: u16, flags: u32, payload: &[u8], fds: &[RawFd]) -> u16 {
        let id = self.next_id();
        let msg = p::build_message(id, cmd, flags, 0, payload);
        self.send_raw(&msg, fds).expect("send");
        id
    }

    /// Sends a command and waits for its reply.
    pub fn request(&mut self, cmd: Command, payload: &[u8], fds: &[RawFd]) -> Reply {
        let id = self.send_cmd(cmd as u16, 0, payload, fds);
        let r = self.recv().expect("reply");
        assert_eq!(r.hdr.msg_id, id, "reply id");
        assert_eq!(r.hdr.command, cmd as u16, "reply command");
        assert_eq!(r.hdr.flags & p::FLAG_TYPE_MASK, p::FLAG_TYPE_REPLY);
        r
    }

    /// Proposes version 0.0 with QEMU's capabilities; returns the server's JSON.
    pub fn negotiate(&mut self) -> serde_json::Value {
        let caps = r#"{"capabilities":{"migration":{"pgsize":4096,"max_bitmap_size":268435456},"max_msg_fds":16,"max_data_xfer_size":1048576,"pgsizes":4096,"max_dma_maps":65535,"write_multiple":true}}"#;
        let r = self
            .request(
                Command::Version,
                &p::Version {
                    major: 0,
                    minor: 0,
                    capabilities: caps.into(),
                }
                .to_payload(),
                &[],
            )
            .ok();
        let v = p::Version::parse(&r.payload).expect("version reply");
        assert_eq!((v.major, v.minor), (0, 0));
        assert_eq!(*r.payload.last().expect("nul"), 0, "JSON is NUL-terminated");
        serde_json::from_str(&v.capabilities).expect("json")
    }

    pub fn device_info(&mut self) -> p::DeviceInfo {
        let req = p::DeviceInfo {
            argsz: 16,
            flags: 0,
            num_regions: 0,
            num_irqs: 0,
        };
        let r = self
            .request(Command::DeviceGetInfo, &req.to_payload(), &[])
            .ok();
        p::DeviceInfo::parse(&r.payload).expect("device info")
    }

    /// GET_REGION_INFO with `argsz`; the reply and the descriptors it carried.
    pub fn region_info_fds(&mut self, index: u32, argsz: u32) -> (Reply, Vec<OwnedFd>) {
        let req = p::RegionInfo::request(index, argsz);
        let id = self.send_cmd(
            Command::DeviceGetRegionInfo as u16,
            0,
            &req.to_payload(),
            &[],
        );
        let (r, fds) = self.recv_fds().expect("reply");
        assert_eq!(r.hdr.msg_id, id, "reply id");
        (r.ok(), fds)
    }

    pub fn region_info_raw(&mut self, index: u32) -> Reply {
        let req = p::RegionInfo::request(index, 32);
        self.request(Command::DeviceGetRegionInfo, &req.to_payload(), &[])
    }

    pub fn region_info(&mut self, index: u32) -> p::RegionInfo {
        let r = self.region_info_raw(index).ok();
        p::RegionInfo::parse(&r.payload).expect("region info")
    }

    pub fn irq_info_raw(&mut self, index: u32) -> Reply {
        let req = p::IrqInfo {
            argsz: 16,
            flags: 0,
            index,
            count: 0,
        };
        self.request(Command::DeviceGetIrqInfo, &req.to_payload(), &[])
    }

    pub fn set_irqs_raw(
        &mut self,
        flags: u32,
        index: u32,
        start: u32,
        count: u32,
        data: &[u8],
        fds: &[RawFd],
    ) -> Reply {
        let req = p::IrqSet {
            argsz: (20 + data.len()) as u32,
            flags,
            index,
            start,
            count,
            data: data.to_vec(),
        };
        self.request(Command::DeviceSetIrqs, &req.to_payload(), fds)
    }

    /// Assigns eventfds to `start..`, in chunks of at most 16 as QEMU does.
    pub fn set_irq_eventfds(&mut self, index: u32, start: u32, fds: &[&EventFd]) {
        use vfio_bindings::bindings::vfio as vb;
        for (i, chunk) in fds.chunks(16).enumerate() {
            let raw: Vec<RawFd> = chunk.iter().map(|e| e.as_raw_fd()).collect();
            self.set_irqs_raw(
                vb::VFIO_IRQ_SET_DATA_EVENTFD | vb::VFIO_IRQ_SET_ACTION_TRIGGER,
                index,
                start + (i * 16) as u32,
                raw.len() as u32,
                &[],
                &raw,
            )
            .ok();
        }
    }

    pub fn region_read_raw(&mut self, region: u32, offset: u64, count: u32) -> Reply {
        let req = p::RegionAccess {
            offset,
            region,
            count,
            data: vec![],
        };
        self.request(Command::RegionRead, &req.to_payload(), &[])
    }

    pub fn region_read(&mut self, region: u32, offset: u64, count: u32) -> Vec<u8> {
        let r = self.region_read_raw(region, offset, count).ok();
        let a = p::RegionAccess::parse_write(&r.payload).expect("read reply");
        assert_eq!((a.offset, a.region, a.count), (offset, region, count));
        a.data
    }

    pub fn region_write_raw(&mut self, region: u32, offset: u64, data: &[u8]) -> Reply {
        let req = p::RegionAccess {
            offset,
            region,
            count: data.len() as u32,
            data: data.to_vec(),
        };
        self.request(Command::RegionWrite, &req.to_payload(), &[])
    }

    pub fn region_write(&mut self, region: u32, offset: u64, data: &[u8]) {
        let r = self.region_write_raw(region, offset, data).ok();
        assert_eq!(r.payload.len(), 16, "write reply carries no data");
    }

    /// A posted write: no reply expected.
    pub fn region_write_posted(&mut self, region: u32, offset: u64, data: &[u8]) {
        let req = p::RegionAccess {
            offset,
            region,
            count: data.len() as u32,
            data: data.to_vec(),
        };
        self.send_cmd(
            Command::RegionWrite as u16,
            p::FLAG_NO_REPLY,
            &req.to_payload(),
            &[],
        );
    }

    pub fn cfg_read32(&mut self, off: u64) -> u32 {
        let b = self.region_read(7, off, 4);
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }

    pub fn cfg_read16(&mut self, off: u64) -> u16 {
        let b = self.region_read(7, off, 2);
        u16::from_le_bytes([b[0], b[1]])
    }

    pub fn cfg_read8(&mut self, off: u64) -> u8 {
        self.region_read(7, off, 1)[0]
    }

    pub fn cfg_write32(&mut self, off: u64, v: u32) {
        self.region_write(7, off, &v.to_le_bytes());
    }

    pub fn cfg_write16(&mut self, off: u64, v: u16) {
        self.region_write(7, off, &v.to_le_bytes());
    }

    pub fn bar0_read32(&mut self, off: u64) -> u32 {
        let b = self.region_read(0, off, 4);
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }

    pub fn bar0_read64(&mut self, off: u64) -> u64 {
        let b = self.region_read(0, off, 8);
        let mut a = [0u8; 8];
        a.copy_from_slice(&b);
        u64::from_le_bytes(a)
    }

    pub fn bar0_write32(&mut self, off: u64, v: u32) {
        self.region_write(0, off, &v.to_le_bytes());
    }

    pub fn bar0_write64(&mut self, off: u64, v: u64) {
        self.region_write(0, off, &v.to_le_bytes());
    }

    pub fn dma_map_raw(&mut self, addr: u64, size: u64, offset: u64, fd: Option<RawFd>) -> Reply {
        let req = p::DmaMap {
            argsz: 32,
            flags: p::DMA_MAP_FLAG_READ | p::DMA_MAP_FLAG_WRITE,
            offset,
            addr,
            size,
        };
        let fds: Vec<RawFd> = fd.into_iter().collect();
        self.request(Command::DmaMap, &req.to_payload(), &fds)
    }

    pub fn dma_unmap_raw(&mut self, addr: u64, size: u64, flags: u32) -> Reply {
        let req = p::DmaUnmap {
            argsz: 24,
            flags,
            addr,
            size,
        };
        self.request(Command::DmaUnmap, &req.to_payload(), &[])
    }

    /// Maps all of `mem` (one region at `mem.base`) for DMA.
    pub fn map_guest(&mut self, mem: &GuestMem) {
        self.dma_map_raw(mem.base, mem.size, 0, Some(mem.file.as_raw_fd()))
            .ok();
    }
}

/// Shared "guest" memory: a file mapped here and passed to the server by descriptor.
pub struct GuestMem {
    pub file: File,
    pub mem: GuestMemoryMmap<()>,
    pub base: u64,
    pub size: u64,
}

impl GuestMem {
    pub fn new(base: u64, size: u64) -> GuestMem {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let path = dir.join(format!("vnvme-guest-{}-{}", std::process::id(), n));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .expect("guest memory file");
        let _ = std::fs::remove_file(&path);
        file.set_len(size).expect("size guest memory");
        let fo = FileOffset::new(file.try_clone().expect("dup"), 0);
        let mem = GuestMemoryMmap::from_ranges_with_files([(
            GuestAddress(base),
            size as usize,
            Some(fo),
        )])
        .expect("map guest memory");
        GuestMem {
            file,
            mem,
            base,
            size,
        }
    }
}

/// Reads an eventfd's counter, waiting up to `timeout`; `None` if it never fired.
pub fn wait_eventfd(e: &EventFd, timeout: Duration) -> Option<u64> {
    let deadline = Instant::now() + timeout;
    loop {
        match e.read() {
            Ok(v) => return Some(v),
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    return None;
                }
                let left = deadline.saturating_duration_since(Instant::now());
                let ms = left.as_millis().min(50) as i32;
                let _ = sock::poll_readable(&[e.as_raw_fd()], ms.max(1));
            }
            Err(err) => panic!("eventfd read: {err}"),
        }
    }
}

/// A non-blocking eventfd for interrupts.
pub fn eventfd() -> EventFd {
    EventFd::new(libc::EFD_NONBLOCK).expect("eventfd")
}
