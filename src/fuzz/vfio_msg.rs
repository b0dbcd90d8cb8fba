//! Target `vfio_msg`: the vfio-user message parser and the server's per-message
//! dispatch.
//!
//! Part 1 feeds the input to every parse function of `vfio_user/protocol.rs`: none may
//! panic, and whatever parses must survive a round trip through its encoder. Part 2
//! talks to a real server (the NVMe PCI function of `server::build`, on a socket in a
//! temporary directory) and plays a client: a version negotiation (usually valid), then
//! a few messages with commands from the known list (or any), edgy fields, memfd and
//! eventfd descriptors, wrong sizes, posted writes, BAR0 writes that enable the
//! controller over the mapped memory, and so on. Every message that wants a reply gets
//! one (or a clean disconnect) within [`CMD_TIMEOUT`]; each reply names the message;
//! after the client leaves, a fresh client is negotiated and served a config-space read
//! within 1 s; the server thread never panics. One server serves every case (a device
//! outlives its clients); its controller is reset by each disconnect.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use vmm_sys_util::eventfd::EventFd;

use super::{Input, CMD_TIMEOUT};
use crate::vfio_user::protocol::{self as p, Command, Header, HEADER_SIZE};
use crate::vfio_user::server::{REGION_BAR0, REGION_CONFIG};
use crate::vfio_user::sock;

/// Part 1: every parser on the same bytes.
fn parse_all(b: &[u8]) {
    if let Ok(h) = Header::parse(b) {
        assert_eq!(Header::parse(&h.to_bytes()), Ok(h));
    }
    if let Ok(v) = p::Version::parse(b) {
        // The encoder appends a NUL only to a non-empty string.
        let again = p::Version::parse(&v.to_payload()).expect("version round trip");
        assert_eq!(again, v);
        let _ = p::parse_client_caps(&v.capabilities);
    }
    if let Ok(s) = std::str::from_utf8(b) {
        let _ = p::parse_client_caps(s);
    }
    if let Ok(m) = p::DmaMap::parse(b) {
        assert_eq!(m.to_payload(), b);
    }
    if let Ok(m) = p::DmaUnmap::parse(b) {
        assert_eq!(p::DmaUnmap::parse(&m.to_payload()), Ok(m));
    }
    if let Ok(m) = p::DeviceInfo::parse(b) {
        assert_eq!(m.to_payload(), b[..p::DeviceInfo::SIZE]);
    }
    if let Ok(m) = p::RegionInfo::parse(b) {
        assert_eq!(m.to_payload(), b[..p::RegionInfo::SIZE]);
    }
    if let Ok(m) = p::IrqInfo::parse(b) {
        assert_eq!(m.to_payload(), b[..p::IrqInfo::SIZE]);
    }
    if let Ok(m) = p::IrqSet::parse(b) {
        assert_eq!(m.to_payload(), b);
    }
    if let Ok(m) = p::RegionAccess::parse_read(b) {
        assert!(m.count as usize <= p::MAX_DATA_XFER_SIZE);
        assert_eq!(m.to_payload(), b);
    }
    if let Ok(m) = p::RegionAccess::parse_write(b) {
        assert_eq!(m.data.len(), m.count as usize);
        assert_eq!(m.to_payload(), b);
    }
    if let Ok(v) = p::parse_write_multi(b) {
        assert_eq!(v.len() * p::WriteOne::SIZE + 8, b.len());
        assert!(v.iter().all(|w| (1..=8).contains(&w.count)));
    }
}

static DIRS: AtomicUsize = AtomicUsize::new(0);

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let n = DIRS.fetch_add(1, Ordering::SeqCst);
        let d = std::env::temp_dir().join(format!("vnvme-fuzz-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("temp dir");
        TempDir(d)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A file to DMA-map: in /dev/shm when there is one, unlinked, `size` bytes filled
/// with `fill` repeated.
fn guest_file(dir: &TempDir, size: u64, fill: &[u8]) -> File {
    let n = DIRS.fetch_add(1, Ordering::SeqCst);
    let base = if std::path::Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        dir.0.clone()
    };
    let path = base.join(format!("vnvme-fuzz-mem-{}-{n}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .expect("guest memory file");
    let _ = std::fs::remove_file(&path);
    if !fill.is_empty() {
        let page: Vec<u8> = fill.iter().cycle().take(4096).copied().collect();
        for _ in 0..size / 4096 {
            f.write_all(&page).expect("fill guest memory");
        }
    }
    f.set_len(size).expect("size guest memory");
    f
}

struct Client {
    s: UnixStream,
    next_id: u16,
}

enum Got {
    Reply(Header, Vec<u8>),
    Closed,
}

impl Client {
    fn connect(path: &std::path::Path) -> Client {
        let s = UnixStream::connect(path).expect("connect");
        s.set_read_timeout(Some(CMD_TIMEOUT)).expect("timeout");
        s.set_write_timeout(Some(CMD_TIMEOUT)).expect("timeout");
        Client { s, next_id: 1 }
    }

    fn send(&mut self, bytes: &[u8], fds: &[RawFd]) -> bool {
        sock::send_with_fds(&self.s, bytes, fds).is_ok()
    }

    /// The next message from the server, within the timeout; a timeout panics.
    fn recv(&mut self, what: &str) -> Got {
        let mut h = [0u8; HEADER_SIZE];
        match read_full(&mut self.s, &mut h) {
            Ok(true) => {}
            Ok(false) => return Got::Closed,
            Err(e) if is_timeout(&e) => panic!("{what}: no reply within {CMD_TIMEOUT:?}"),
            Err(_) => return Got::Closed,
        }
        let hdr = Header::parse(&h).expect("header");
        assert!(
            hdr.size as usize >= HEADER_SIZE && hdr.size as usize <= p::MAX_MESSAGE_SIZE,
            "{what}: reply size {}",
            hdr.size
        );
        let mut payload = vec![0u8; hdr.size as usize - HEADER_SIZE];
        match read_full(&mut self.s, &mut payload) {
            Ok(true) => {}
            Ok(false) if payload.is_empty() => {}
            Ok(false) => panic!("{what}: reply cut short"),
            Err(e) if is_timeout(&e) => panic!("{what}: reply cut short (timeout)"),
            Err(_) => return Got::Closed,
        }
        Got::Reply(hdr, payload)
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

fn read_full(s: &mut UnixStream, buf: &mut [u8]) -> std::io::Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        match s.read(&mut buf[got..]) {
            Ok(0) => return Ok(false),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

fn version_payload(inp: &mut Input) -> Vec<u8> {
    let major = if inp.one_in(8) { inp.u16() } else { 0 };
    let minor = inp.u16();
    let json = match inp.u8() % 8 {
        0 => String::new(),
        1 => "{".into(),
        2 => "[1]".into(),
        3 => format!(
            "{{\"capabilities\":{{\"max_msg_fds\":{},\"max_data_xfer_size\":{},\"write_multiple\":{}}}}}",
            inp.edgy(64, &[16, 1 << 20]),
            inp.edgy(64, &[1 << 20]),
            inp.bool()
        ),
        4 => String::from_utf8_lossy(inp.bytes(32)).into_owned(),
        _ => r#"{"capabilities":{"max_msg_fds":16,"max_data_xfer_size":1048576,"write_multiple":true,"migration":{"pgsize":4096}}}"#.into(),
    };
    let mut w = p::Writer::new();
    w.u16(major).u16(minor).bytes(json.as_bytes());
    if !inp.one_in(4) {
        w.bytes(&[0]);
    }
    if inp.one_in(16) {
        w.bytes(&[0xff, 0xfe]);
    }
    w.into_vec()
}

const BAR0_OFFSETS: [u64; 12] = [
    0x00, 0x08, 0x0c, 0x10, 0x14, 0x1c, 0x24, 0x28, 0x30, 0x1000, 0x1004, 0x1008,
];

/// One message: (command, flags, payload, descriptors to send, whether the size field
/// is to be wrong).
fn message(
    inp: &mut Input,
    dir: &TempDir,
    keep: &mut Vec<File>,
    efds: &mut Vec<EventFd>,
) -> (u16, u32, Vec<u8>, Vec<RawFd>) {
    let cmd = if inp.one_in(16) {
        inp.u16()
    } else {
        1 + inp.below(18) as u16
    };
    let flags = match inp.u8() % 12 {
        0 => p::FLAG_NO_REPLY,
        1 => p::FLAG_TYPE_REPLY,
        2 => inp.u32(),
        _ => 0,
    };
    let argsz = |inp: &mut Input, size: usize| -> u32 {
        if inp.one_in(8) {
            inp.edgy(32, &[size as u64]) as u32
        } else {
            size as u32
        }
    };
    let mut w = p::Writer::new();
    let mut fds = Vec::new();
    match Command::from_u16(cmd) {
        Some(Command::Version) => return (cmd, flags, version_payload(inp), fds),
        Some(Command::DmaMap) => {
            let size = inp.pick(&[0x1_0000u64, 0x1_0000, 0x1000, 0, 0x2_0000, u64::MAX]);
            let addr = inp.pick(&[0u64, 0, 0x1_0000, 0x1000, u64::MAX - 0xfff, 0x123]);
            let offset = inp.pick(&[0u64, 0, 0x1000, 0x1_0000, u64::MAX]);
            let fl = inp.pick(&[3u32, 3, 1, 2, 0, 0xff]);
            w.u32(argsz(inp, 32))
                .u32(fl)
                .u64(offset)
                .u64(addr)
                .u64(size);
            if !inp.one_in(8) {
                let fill = inp.bytes(64).to_vec();
                let f = guest_file(dir, 0x1_0000, &fill);
                fds.push(f.as_raw_fd());
                if inp.one_in(16) {
                    fds.push(f.as_raw_fd());
                }
                keep.push(f);
            }
        }
        Some(Command::DmaUnmap) => {
            w.u32(argsz(inp, 24))
                .u32(inp.pick(&[0u32, 0, 2, 1, 4, 0xffff_ffff]))
                .u64(inp.pick(&[0u64, 0x1_0000, 0x1000, u64::MAX]))
                .u64(inp.pick(&[0x1_0000u64, 0, 0x1000, u64::MAX]));
        }
        Some(Command::DeviceGetInfo) => {
            w.u32(argsz(inp, 16)).u32(0).u32(0).u32(0);
        }
        Some(Command::DeviceGetRegionInfo) => {
            w.u32(argsz(inp, 32))
                .u32(0)
                .u32(inp.edgy(32, &[7, 8, 9]) as u32)
                .u32(0)
                .u64(0)
                .u64(0);
        }
        Some(Command::DeviceGetIrqInfo) => {
            w.u32(argsz(inp, 16))
                .u32(0)
                .u32(inp.edgy(32, &[2, 4, 5]) as u32)
                .u32(0);
        }
        Some(Command::DeviceSetIrqs) => {
            let data = inp.pick(&[1u32, 2, 4, 4, 4, 3, 0]);
            let action = inp.pick(&[0x20u32, 0x20, 0x8, 0x10, 0x18, 0]);
            let index = inp.edgy(32, &[0, 2, 4, 5]) as u32;
            let start = inp.edgy(32, &[0, 1, 64, 65, 0xffff_fff0]) as u32;
            let count = inp.edgy(32, &[0, 1, 2, 16, 65, 0x7fff_ffff]) as u32;
            w.u32(argsz(inp, 20 + if data == 2 { count as usize } else { 0 }))
                .u32(data | action)
                .u32(index)
                .u32(start)
                .u32(count);
            if data == 2 {
                let n = if inp.bool() {
                    count.min(64) as usize
                } else {
                    inp.below(8)
                };
                for _ in 0..n {
                    w.bytes(&[inp.u8() & 1]);
                }
            }
            if data == 4 && !inp.one_in(4) {
                let n = if inp.bool() {
                    count.min(16) as usize
                } else {
                    inp.below(17)
                };
                for _ in 0..n {
                    let e = EventFd::new(libc::EFD_NONBLOCK).expect("eventfd");
                    fds.push(e.as_raw_fd());
                    efds.push(e);
                }
            }
        }
        Some(Command::RegionRead) => {
            let region = inp.edgy(32, &[REGION_BAR0 as u64, 4, REGION_CONFIG as u64, 9]) as u32;
            let offset = match inp.u8() % 4 {
                0 => inp.pick(&BAR0_OFFSETS),
                _ => inp.edgy(64, &[0x1000, 0x4000, 4096, 0x100]),
            };
            let count = inp.edgy(32, &[4, 8, 4096, 1 << 20, (1 << 20) + 1]) as u32;
            w.u64(offset).u32(region).u32(count);
        }
        Some(Command::RegionWrite) if inp.one_in(3) => {
            // PCI Command: Memory Space (BAR0 decoded) and Bus Master (DMA) enable, or
            // edgy values.
            let v = if inp.one_in(4) { inp.u16() } else { 0x0006 };
            w.u64(4).u32(REGION_CONFIG).u32(2).bytes(&v.to_le_bytes());
        }
        Some(Command::RegionWrite) => {
            let region = if inp.bool() {
                REGION_BAR0
            } else {
                inp.edgy(32, &[4, REGION_CONFIG as u64, 9]) as u32
            };
            let offset = match inp.u8() % 3 {
                0 | 1 => inp.pick(&BAR0_OFFSETS),
                _ => inp.edgy(64, &[0x1000, 0x4000, 4096, 4, 0x100]),
            };
            let count = inp.pick(&[4u32, 4, 8, 2, 1, 0, 3, 16]);
            // Values that matter to the registers: CC.EN with the usual sizes, queue
            // sizes and addresses inside the mapped window, doorbells.
            let v = match inp.u8() % 6 {
                0 => 0x0046_0001u64,
                1 => 0x001f_001f,
                2 => inp.pick(&[0x1000u64, 0x2000, 0, 0xf000]),
                3 => inp.u8() as u64 % 40,
                _ => inp.u64(),
            };
            w.u64(offset).u32(region).u32(count);
            let bytes = v.to_le_bytes();
            for i in 0..count as usize {
                w.bytes(&[bytes.get(i).copied().unwrap_or(0)]);
            }
            if inp.one_in(16) {
                w.bytes(&[0]);
            }
        }
        Some(Command::RegionWriteMulti) => {
            let n = inp.pick(&[1u64, 2, 0, 3, u64::MAX]);
            w.u64(n);
            for _ in 0..n.min(4) {
                let count = inp.pick(&[4u32, 8, 0, 9]);
                w.u64(inp.pick(&BAR0_OFFSETS))
                    .u32(inp.pick(&[REGION_BAR0, REGION_CONFIG, 9]))
                    .u32(count)
                    .u64(inp.u64());
            }
        }
        Some(Command::DeviceReset) => {
            if inp.one_in(8) {
                w.u32(0);
            }
        }
        _ => {
            let n = inp.u8() as usize;
            let b = inp.bytes(n);
            w.bytes(b);
        }
    }
    (cmd, flags, w.into_vec(), fds)
}

/// The server every session talks to: one per process, as a device lives (a server
/// per case would leak its controller, see docs/fuzzing.md). A disconnect resets the
/// controller completely.
struct Shared {
    dir: TempDir,
    socket: PathBuf,
    vendor_id: u16,
    _running: crate::server::RunningServer,
}

static SERVER: Mutex<Option<Shared>> = Mutex::new(None);

fn server() -> MutexGuard<'static, Option<Shared>> {
    let mut g = SERVER.lock().unwrap_or_else(|p| p.into_inner());
    if g.is_none() {
        let dir = TempDir::new();
        let socket = dir.0.join("fuzz.sock");
        let args = crate::cli::RunArgs {
            socket: socket.clone(),
            ns: vec!["size=1M".into()],
            ctrl: vec!["max_ioqpairs=2".into()],
            print_qemu_args: false,
            ns_dir: None,
            capacity: None,
            lbafs: None,
        };
        let cfg = args.device_config().expect("device config");
        let dev = crate::server::build(&cfg).expect("build device");
        let running = crate::server::spawn(dev, &socket).expect("spawn server");
        *g = Some(Shared {
            dir,
            socket,
            vendor_id: cfg.controller.vendor_id,
            _running: running,
        });
    }
    g
}

/// Part 2: a client session against the server.
fn session(inp: &mut Input) {
    let g = server();
    let srv = g.as_ref().expect("server");
    let (dir, socket) = (&srv.dir, srv.socket.clone());
    {
        let mut keep = Vec::new();
        let mut efds = Vec::new();
        let mut c = Client::connect(&socket);
        let mut posted: Vec<u16> = Vec::new();
        let n = 1 + inp.below(8);
        let mut first = true;
        for i in 0..n {
            let (cmd, flags, payload, fds) = if first && !inp.one_in(8) {
                (Command::Version as u16, 0, version_payload(inp), Vec::new())
            } else {
                message(inp, dir, &mut keep, &mut efds)
            };
            first = false;
            let id = c.next_id;
            c.next_id = c.next_id.wrapping_add(1);
            let mut msg = p::build_message(id, cmd, flags, 0, &payload);
            // A wrong size field, only on the last message (the client then stops
            // writing, so a server waiting for more sees the end of the stream).
            let last = i == n - 1;
            let wrong = last && inp.one_in(8);
            if wrong {
                let size = inp.edgy(32, &[0, 15, 16, msg.len() as u64 + 1]) as u32;
                msg[4..8].copy_from_slice(&size.to_le_bytes());
            }
            if !c.send(&msg, &fds) {
                break;
            }
            if wrong {
                let _ = c.s.shutdown(std::net::Shutdown::Write);
            }
            let hdr = Header::parse(&msg).expect("own header");
            let wants_reply = hdr.is_command() && !hdr.no_reply() && !wrong;
            if !hdr.is_command() || hdr.no_reply() {
                posted.push(id);
            }
            if !wants_reply {
                continue;
            }
            let what = format!("message {id} (command {cmd}, flags {flags:#x})");
            let mut closed = false;
            loop {
                match c.recv(&what) {
                    Got::Closed => {
                        closed = true;
                        break;
                    }
                    Got::Reply(h, _) if h.msg_id != id && posted.contains(&h.msg_id) => continue,
                    Got::Reply(h, pl) => {
                        assert_eq!(h.msg_id, id, "{what}: reply to another message");
                        assert_eq!(h.command, cmd, "{what}: reply names another command");
                        assert_eq!(
                            h.flags & p::FLAG_TYPE_MASK,
                            p::FLAG_TYPE_REPLY,
                            "{what}: not a reply"
                        );
                        if h.flags & p::FLAG_ERROR != 0 {
                            assert!(h.error != 0, "{what}: error reply without errno");
                            assert!(pl.is_empty(), "{what}: error reply with a payload");
                        }
                        break;
                    }
                }
            }
            if closed {
                break;
            }
        }
        drop(c);
    }
    // A fresh client is served within 1 s, at the first attempt (the server used to
    // refuse it now and then as "a second client" although the previous one had closed:
    // docs/fuzzing.md, finding 3).
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    let mut c = Client::connect(&socket);
    let left = deadline.saturating_duration_since(std::time::Instant::now());
    c.s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
        .expect("timeout");
    let mut w = p::Writer::new();
    w.u16(0).u16(0);
    let v = p::build_message(1, Command::Version as u16, 0, 0, &w.into_vec());
    assert!(c.send(&v, &[]), "fresh client: send version");
    match c.recv("fresh client: version") {
        Got::Reply(h, _) => assert_eq!(h.flags & p::FLAG_ERROR, 0, "fresh client: version"),
        Got::Closed => panic!("fresh client: server closed the connection"),
    }
    let mut r = p::Writer::new();
    r.u64(0).u32(REGION_CONFIG).u32(2);
    let m = p::build_message(2, Command::RegionRead as u16, 0, 0, &r.into_vec());
    assert!(c.send(&m, &[]), "fresh client: send region read");
    match c.recv("fresh client: config read") {
        Got::Reply(h, pl) => {
            assert_eq!(
                h.flags & p::FLAG_ERROR,
                0,
                "fresh client: config read failed"
            );
            assert_eq!(pl.len(), 16 + 2, "fresh client: config read payload");
            assert_eq!(
                u16::from_le_bytes([pl[16], pl[17]]),
                srv.vendor_id,
                "fresh client: vendor id"
            );
        }
        Got::Closed => panic!("fresh client: closed before the config read"),
    }
    drop(c);
}

pub fn run(data: &[u8]) {
    parse_all(data);
    let mut inp = Input::new(data);
    if inp.one_in(4) {
        // Parser only (cheap), on the rest of the input.
        parse_all(inp.bytes(usize::MAX));
        return;
    }
    session(&mut inp);
}
