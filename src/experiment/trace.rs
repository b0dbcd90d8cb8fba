//! `--trace FILE`: one JSON object per completed command, in completion order
//! (docs/trace.md describes the schema).
//!
//! The observer runs on the queue worker threads and never blocks: it pushes a copy of
//! the record into a bounded queue (`sync_channel` + `try_send`). A writer thread drains
//! the queue into the file. When the queue is full the record is dropped and counted;
//! the writer then emits a `{"dropped":N,"dropped_total":M}` line as soon as it can.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Serialize;

use super::lab::{AdminKey, CommandObserver, CommandRecord, RangeRecord, Transport};
use crate::nvme::names::{admin_opcode_name, io_opcode_name, status_name};

/// Records the queue holds before new ones are dropped.
pub const DEFAULT_QUEUE_LEN: usize = 65536;

/// One trace line (field order is the documented order).
#[derive(Debug, Serialize)]
pub struct TraceLine {
    pub time_us: u64,
    /// "nvme" or "virtio-blk".
    pub transport: &'static str,
    pub qid: u16,
    pub cid: u16,
    pub opcode: u8,
    pub opcode_name: &'static str,
    pub nsid: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slba: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nlb: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sdlba: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nr: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ranges: Option<Vec<TraceRange>>,
    /// Zone Management Send / Receive: the action (`slba` is the command's SLBA), and
    /// Select All / Partial Report when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone_action: Option<&'static str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub select_all: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub partial: bool,
    /// Set/Get Features: the feature id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fid: Option<u8>,
    /// Identify: CNS, CNTID, CSI.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cns: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cntid: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub csi: Option<u8>,
    /// Get Log Page: the log page id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lid: Option<u8>,
    /// Namespace Management / Attachment: SEL (0 create or attach, 1 delete or detach).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sel: Option<u8>,
    /// Format NVM: the LBA format index and the secure erase setting.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lbaf: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ses: Option<u8>,
    pub status: String,
    pub status_name: &'static str,
    pub dw0: u32,
    /// Only when not zero (Zone Append: the high half of the LBA written).
    #[serde(skip_serializing_if = "is_zero")]
    pub dw1: u32,
    pub latency_us: u64,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

/// One Copy source range in a trace line.
#[derive(Debug, Serialize)]
pub struct TraceRange {
    pub nsid: u32,
    pub slba: u64,
    pub nlb: u32,
}

impl From<&RangeRecord> for TraceRange {
    fn from(r: &RangeRecord) -> TraceRange {
        TraceRange {
            nsid: r.nsid,
            slba: r.slba,
            nlb: r.nlb,
        }
    }
}

/// virtio-blk status byte names.
fn virtio_status_name(status: u16) -> &'static str {
    match status {
        0 => "ok",
        1 => "ioerr",
        2 => "unsupp",
        _ => "unknown",
    }
}

/// The name of an opcode on queue `qid` (0 = admin).
pub fn opcode_name(qid: u16, opcode: u8) -> &'static str {
    if qid == 0 {
        admin_opcode_name(opcode)
    } else {
        io_opcode_name(opcode)
    }
}

/// An admin command's key as the trace line's `fid`, `cns`, `cntid`, `csi`, `lid`.
#[derive(Default)]
struct AdminFields {
    fid: Option<u8>,
    cns: Option<u8>,
    cntid: Option<u16>,
    csi: Option<u8>,
    lid: Option<u8>,
    sel: Option<u8>,
    lbaf: Option<u8>,
    ses: Option<u8>,
}

impl AdminFields {
    fn of(k: Option<AdminKey>) -> AdminFields {
        match k {
            Some(AdminKey::Feature { fid }) => AdminFields {
                fid: Some(fid),
                ..Default::default()
            },
            Some(AdminKey::Identify { cns, cntid, csi }) => AdminFields {
                cns: Some(cns),
                cntid: Some(cntid),
                csi: Some(csi),
                ..Default::default()
            },
            Some(AdminKey::LogPage { lid }) => AdminFields {
                lid: Some(lid),
                ..Default::default()
            },
            Some(AdminKey::Select { sel }) => AdminFields {
                sel: Some(sel),
                ..Default::default()
            },
            Some(AdminKey::Format { lbaf, ses }) => AdminFields {
                lbaf: Some(lbaf),
                ses: Some(ses),
                ..Default::default()
            },
            None => AdminFields::default(),
        }
    }
}

/// A status as `0x%04x` (DNR bit 14 included).
pub fn status_hex(status: u16) -> String {
    format!("0x{status:04x}")
}

impl TraceLine {
    pub fn new(r: &CommandRecord) -> TraceLine {
        let a = AdminFields::of(r.admin);
        let nvme = r.transport == Transport::Nvme;
        TraceLine {
            time_us: r.time_us,
            transport: r.transport.name(),
            qid: r.qid,
            cid: r.cid,
            opcode: r.opcode,
            opcode_name: if nvme {
                opcode_name(r.qid, r.opcode)
            } else {
                r.kind.name()
            },
            nsid: r.nsid,
            slba: r.slba.or(r.zone.map(|z| z.slba)),
            nlb: r.nlb,
            sdlba: r.copy.as_ref().map(|c| c.sdlba),
            format: r.copy.as_ref().map(|c| c.format),
            nr: r.copy.as_ref().map(|c| c.nr),
            ranges: r
                .copy
                .as_ref()
                .map(|c| c.ranges.iter().map(TraceRange::from).collect()),
            zone_action: r.zone.map(|z| z.action),
            select_all: r.zone.is_some_and(|z| z.select_all),
            partial: r.zone.is_some_and(|z| z.partial),
            fid: a.fid,
            cns: a.cns,
            cntid: a.cntid,
            csi: a.csi,
            lid: a.lid,
            sel: a.sel,
            lbaf: a.lbaf,
            ses: a.ses,
            status: status_hex(r.status),
            status_name: if nvme {
                status_name(r.status & 0x3fff)
            } else {
                virtio_status_name(r.status)
            },
            dw0: r.dw0,
            dw1: r.dw1,
            latency_us: r.latency_us,
        }
    }
}

/// The JSON line of one record (without the newline).
pub fn format_record(r: &CommandRecord) -> String {
    serde_json::to_string(&TraceLine::new(r)).unwrap_or_else(|_| "{}".into())
}

/// The line that reports dropped records.
pub fn format_dropped(n: u64, total: u64) -> String {
    format!("{{\"dropped\":{n},\"dropped_total\":{total}}}")
}

struct Shared {
    dropped: AtomicU64,
    stop: AtomicBool,
}

/// What the writer thread receives: a record, or a mark between records.
enum Item {
    Record(CommandRecord),
    Mark { time_us: u64, label: String },
}

impl Item {
    fn line(&self) -> String {
        match self {
            Item::Record(r) => format_record(r),
            Item::Mark { time_us, label } => format_mark(*time_us, label),
        }
    }
}

/// The line of a mark: `{"time_us":N,"mark":"LABEL"}`.
pub fn format_mark(time_us: u64, label: &str) -> String {
    serde_json::json!({"time_us": time_us, "mark": label}).to_string()
}

/// The observer installed in the controller: never blocks.
pub struct TraceObserver {
    tx: SyncSender<Item>,
    shared: Arc<Shared>,
}

impl TraceObserver {
    fn send(&self, item: Item) {
        match self.tx.try_send(item) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl CommandObserver for TraceObserver {
    fn completed(&self, rec: &CommandRecord) {
        self.send(Item::Record(rec.clone()));
    }

    fn mark(&self, time_us: u64, label: &str) {
        self.send(Item::Mark {
            time_us,
            label: label.to_string(),
        });
    }
}

/// The writer thread and its observer.
pub struct Tracer {
    observer: Arc<TraceObserver>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

/// Where the trace goes: `-` is stderr.
pub fn open_output(path: &Path) -> io::Result<Box<dyn Write + Send>> {
    if path == Path::new("-") {
        Ok(Box::new(io::stderr()))
    } else {
        Ok(Box::new(File::create(path)?))
    }
}

impl Tracer {
    /// Starts the writer thread on `out` with a queue of `queue_len` records.
    pub fn start(out: Box<dyn Write + Send>, queue_len: usize) -> io::Result<Tracer> {
        let (tx, rx) = sync_channel(queue_len.max(1));
        let shared = Arc::new(Shared {
            dropped: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        let s2 = shared.clone();
        let thread = std::thread::Builder::new()
            .name("trace".into())
            .spawn(move || {
                let r = write_loop(rx, out, &s2);
                if let Err(e) = &r {
                    // From here on every record counts as dropped; the queue never blocks.
                    log::error!("--trace: writing the trace failed: {e}; tracing stops");
                }
                r
            })?;
        Ok(Tracer {
            observer: Arc::new(TraceObserver {
                tx,
                shared: shared.clone(),
            }),
            shared,
            thread: Some(thread),
        })
    }

    /// Opens `path` (`-` = stderr) and starts the writer.
    pub fn open(path: &Path) -> io::Result<Tracer> {
        Tracer::start(open_output(path)?, DEFAULT_QUEUE_LEN)
    }

    /// The observer to install with `Controller::set_observer`.
    pub fn observer(&self) -> Arc<dyn CommandObserver> {
        self.observer.clone()
    }

    /// Records dropped so far that the writer has not reported yet.
    pub fn pending_dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Drains what is queued, writes it, flushes and stops the writer. Uninstall the
    /// observer first so nothing new arrives.
    pub fn finish(mut self) -> io::Result<()> {
        self.finish_inner()
    }

    fn finish_inner(&mut self) -> io::Result<()> {
        self.shared.stop.store(true, Ordering::SeqCst);
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| io::Error::other("trace writer panicked"))?,
            None => Ok(()),
        }
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        let _ = self.finish_inner();
    }
}

fn report_dropped(w: &mut impl Write, shared: &Shared, total: &mut u64) -> io::Result<()> {
    let n = shared.dropped.swap(0, Ordering::Relaxed);
    if n > 0 {
        *total += n;
        writeln!(w, "{}", format_dropped(n, *total))?;
    }
    Ok(())
}

fn write_loop(rx: Receiver<Item>, out: Box<dyn Write + Send>, shared: &Shared) -> io::Result<()> {
    let mut w = BufWriter::with_capacity(1 << 16, out);
    let mut total = 0u64;
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(item) => {
                writeln!(w, "{}", item.line())?;
                // Write what else is queued, then flush once: lines reach the file
                // promptly, and in batches under load.
                while let Ok(item) = rx.try_recv() {
                    writeln!(w, "{}", item.line())?;
                }
                report_dropped(&mut w, shared, &mut total)?;
                w.flush()?;
            }
            Err(RecvTimeoutError::Timeout) => {
                report_dropped(&mut w, shared, &mut total)?;
                w.flush()?;
                if shared.stop.load(Ordering::SeqCst) {
                    break;
                }
            }
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if shared.stop.load(Ordering::SeqCst) {
            while let Ok(item) = rx.try_recv() {
                writeln!(w, "{}", item.line())?;
            }
            break;
        }
    }
    report_dropped(&mut w, shared, &mut total)?;
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::CopyRecord;
    use crate::hooks::ZoneKey;
    use std::sync::Mutex;

    fn read_rec() -> CommandRecord {
        CommandRecord {
            time_us: 1234,
            transport: Transport::Nvme,
            kind: crate::hooks::OpKind::Read,
            qid: 1,
            cid: 7,
            opcode: 2,
            nsid: 1,
            slba: Some(100),
            nlb: Some(8),
            copy: None,
            admin: None,
            zone: None,
            status: 0,
            dw0: 0,
            dw1: 0,
            latency_us: 15,
        }
    }

    fn copy_rec() -> CommandRecord {
        CommandRecord {
            time_us: 99,
            transport: Transport::Nvme,
            kind: crate::hooks::OpKind::Copy,
            qid: 2,
            cid: 3,
            opcode: 0x19,
            nsid: 1,
            slba: None,
            nlb: None,
            copy: Some(CopyRecord {
                sdlba: 4096,
                format: 0,
                nr: 1,
                ranges: vec![
                    RangeRecord {
                        nsid: 1,
                        slba: 0,
                        nlb: 8,
                    },
                    RangeRecord {
                        nsid: 1,
                        slba: 64,
                        nlb: 4,
                    },
                ],
            }),
            admin: None,
            zone: None,
            status: 0x4281,
            dw0: 1,
            dw1: 0,
            latency_us: 40,
        }
    }

    #[test]
    fn read_record_schema() {
        assert_eq!(
            format_record(&read_rec()),
            r#"{"time_us":1234,"transport":"nvme","qid":1,"cid":7,"opcode":2,"opcode_name":"read","nsid":1,"slba":100,"nlb":8,"status":"0x0000","status_name":"success","dw0":0,"latency_us":15}"#
        );
    }

    #[test]
    fn virtio_record_names_kind_and_status() {
        let mut r = read_rec();
        r.transport = Transport::VirtioBlk;
        r.kind = crate::hooks::OpKind::Discard;
        r.opcode = 11;
        r.status = 1;
        assert_eq!(
            format_record(&r),
            r#"{"time_us":1234,"transport":"virtio-blk","qid":1,"cid":7,"opcode":11,"opcode_name":"discard","nsid":1,"slba":100,"nlb":8,"status":"0x0001","status_name":"ioerr","dw0":0,"latency_us":15}"#
        );
    }

    #[test]
    fn copy_record_schema() {
        let line = format_record(&copy_rec());
        assert_eq!(
            line,
            r#"{"time_us":99,"transport":"nvme","qid":2,"cid":3,"opcode":25,"opcode_name":"copy","nsid":1,"sdlba":4096,"format":0,"nr":1,"ranges":[{"nsid":1,"slba":0,"nlb":8},{"nsid":1,"slba":64,"nlb":4}],"status":"0x4281","status_name":"unrecovered-read-error","dw0":1,"latency_us":40}"#
        );
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["ranges"][1]["slba"], 64);
    }

    #[test]
    fn admin_names_come_from_the_admin_table() {
        let mut r = read_rec();
        r.qid = 0;
        r.opcode = 6;
        r.slba = None;
        r.nlb = None;
        let v: serde_json::Value = serde_json::from_str(&format_record(&r)).unwrap();
        assert_eq!(v["opcode_name"], "identify");
        assert!(v.get("slba").is_none());
    }

    #[test]
    fn admin_records_name_their_key_field() {
        let mut r = read_rec();
        r.qid = 0;
        r.slba = None;
        r.nlb = None;
        r.opcode = 9;
        r.admin = Some(AdminKey::Feature { fid: 0x16 });
        let v: serde_json::Value = serde_json::from_str(&format_record(&r)).unwrap();
        assert_eq!(v["opcode_name"], "set-features");
        assert_eq!(v["fid"], 0x16);
        assert!(v.get("cns").is_none() && v.get("lid").is_none());
        r.opcode = 6;
        r.admin = Some(AdminKey::Identify {
            cns: 0x06,
            cntid: 0,
            csi: 0,
        });
        let line = format_record(&r);
        assert!(line.contains(r#""cns":6,"cntid":0,"csi":0,"#), "{line}");
        assert!(!line.contains("fid"), "{line}");
        r.opcode = 2;
        r.admin = Some(AdminKey::LogPage { lid: 4 });
        let v: serde_json::Value = serde_json::from_str(&format_record(&r)).unwrap();
        assert_eq!(v["lid"], 4);
    }

    #[test]
    fn zone_records_carry_action_slba_and_flags() {
        let mut r = read_rec();
        r.opcode = 0x79;
        r.slba = None;
        r.nlb = None;
        r.zone = Some(ZoneKey {
            action: "reset",
            slba: 4096,
            select_all: true,
            partial: false,
        });
        let v: serde_json::Value = serde_json::from_str(&format_record(&r)).unwrap();
        assert_eq!(v["opcode_name"], "zone-mgmt-send");
        assert_eq!(
            (&v["zone_action"], &v["slba"]),
            (&"reset".into(), &4096.into())
        );
        assert_eq!(v["select_all"], true);
        assert!(v.get("partial").is_none() && v.get("nlb").is_none());
        r.opcode = 0x7a;
        r.zone = Some(ZoneKey {
            action: "report",
            slba: 0,
            select_all: false,
            partial: true,
        });
        let v: serde_json::Value = serde_json::from_str(&format_record(&r)).unwrap();
        assert_eq!(
            (&v["zone_action"], &v["partial"]),
            (&"report".into(), &true.into())
        );
        assert!(v.get("select_all").is_none());
        r.zone = None;
        assert!(!format_record(&r).contains("zone_action"));
    }

    /// A writer that blocks until released (a slow trace file).
    #[derive(Clone)]
    struct Gate {
        open: Arc<(Mutex<bool>, std::sync::Condvar)>,
        data: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for Gate {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            let (m, cv) = &*self.open;
            let mut g = m.lock().unwrap();
            while !*g {
                g = cv.wait(g).unwrap();
            }
            self.data.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn slow_file_drops_and_counts_without_blocking() {
        let gate = Gate {
            open: Arc::new((Mutex::new(false), std::sync::Condvar::new())),
            data: Arc::new(Mutex::new(Vec::new())),
        };
        let t = Tracer::start(Box::new(gate.clone()), 4).unwrap();
        let obs = t.observer();
        let start = std::time::Instant::now();
        for _ in 0..1000 {
            obs.completed(&read_rec());
        }
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "the observer never blocks"
        );
        // The writer is stuck in a write, so most records were dropped (it buffers up to
        // 64 KiB before writing through, plus the queue's 4).
        assert!(t.pending_dropped() > 0);
        {
            let (m, cv) = &*gate.open;
            *m.lock().unwrap() = true;
            cv.notify_all();
        }
        drop(obs);
        t.finish().unwrap();
        let text = String::from_utf8(gate.data.lock().unwrap().clone()).unwrap();
        let mut records = 0u64;
        let mut dropped = 0u64;
        let mut last_total = 0u64;
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            if let Some(n) = v.get("dropped") {
                dropped += n.as_u64().unwrap();
                last_total = v["dropped_total"].as_u64().unwrap();
            } else {
                assert_eq!(v["slba"], 100);
                records += 1;
            }
        }
        assert_eq!(records + dropped, 1000, "{text}");
        assert_eq!(last_total, dropped);
        assert!(dropped > 0 && records < 1000, "{records}");
    }

    #[test]
    fn finish_writes_everything_queued() {
        let buf = Gate {
            open: Arc::new((Mutex::new(true), std::sync::Condvar::new())),
            data: Arc::new(Mutex::new(Vec::new())),
        };
        let t = Tracer::start(Box::new(buf.clone()), 1024).unwrap();
        let obs = t.observer();
        for i in 0..100 {
            let mut r = read_rec();
            r.cid = i;
            obs.completed(&r);
        }
        t.finish().unwrap();
        let text = String::from_utf8(buf.data.lock().unwrap().clone()).unwrap();
        let cids: Vec<u64> = text
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["cid"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(cids, (0..100).collect::<Vec<u64>>(), "in completion order");
    }

    /// What tracing costs a queue thread per completion (run with
    /// `cargo test --release --lib observer_cost -- --ignored --nocapture`).
    #[test]
    #[ignore]
    fn observer_cost() {
        let t = Tracer::start(Box::new(io::sink()), DEFAULT_QUEUE_LEN).unwrap();
        let obs = t.observer();
        let recs = [read_rec(), copy_rec()];
        // Batches smaller than the queue, with time to drain between them (not timed).
        let (batches, per) = (20u32, 50_000u32);
        let n = batches * per;
        let mut el = Duration::ZERO;
        for _ in 0..batches {
            let start = std::time::Instant::now();
            for i in 0..per {
                obs.completed(&recs[(i & 1) as usize]);
            }
            el += start.elapsed();
            std::thread::sleep(Duration::from_millis(500));
        }
        let dropped = t.pending_dropped();
        t.finish().unwrap();
        println!(
            "observer: {:.0} ns per completion ({n} records, {dropped} dropped by a full queue)",
            el.as_nanos() as f64 / n as f64
        );
    }
}
