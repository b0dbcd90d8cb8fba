//! The stress run's journal: what every block must hold after a crash of the client (or
//! of vnvme), and the block contents it is checked with.
//!
//! Lines (text, one record each, `\n`-terminated; an unterminated last line is ignored):
//!
//! - `H vnvme-stress 1 <run id>`: header.
//! - `N <nsid> <block size> <blocks>`: a namespace the run used.
//! - `I <seq> <nsid> <slba> <contents>`: command `seq` will write these contents (a
//!   Write, Write Zeroes or Copy); written before its doorbell rings.
//! - `A <seq> <nsid> <slba> <contents>`: the same for a command that never becomes
//!   durable in this journal's sense (Dataset Management deallocate).
//! - `D <seq>`: command `seq` was acknowledged and is covered by a successful Flush
//!   (or was FUA); written before the client acts on that completion any further.
//! - `B <nsid> <lba> <durable> <seq>=<content>...` and `O <seq> <nsid> <slba> <contents>`:
//!   a snapshot's blocks and its still open intents (the journal is rewritten as a
//!   snapshot, renamed over the file, when it grows past a limit).
//!
//! Contents are runs, comma-separated: `z<n>` zeroes, `u<n>` unknown, `t<hex>+<n>` `n`
//! blocks tagged `hex`, `hex+1`, ... A block tagged `t` holds [`block_data`]`(t)`.
//!
//! A block must hold its last durable content or the content of any intent journaled
//! after it (a later write may have landed, acknowledged or not). Writes to one block
//! never overlap in time (the client locks blocks), so sequence numbers order them.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

/// What a block holds (or may hold).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Cont {
    Zero,
    Tag(u64),
    /// Anything (content not known to the client).
    Unknown,
}

/// What a read found in one block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    Zero,
    Tag(u64),
    /// Neither zeroes nor any tag's data.
    Garbage,
}

fn splitmix(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The data of a block tagged `tag` (`len` a multiple of 8, at least 16): the tag, its
/// complement, then a stream seeded by the tag. It never is all zeroes.
pub fn block_data(tag: u64, out: &mut [u8]) {
    let mut s = tag;
    for (i, c) in out.chunks_exact_mut(8).enumerate() {
        let v = match i {
            0 => tag,
            1 => !tag,
            _ => splitmix(&mut s),
        };
        c.copy_from_slice(&v.to_le_bytes());
    }
}

/// Decodes one block read back.
pub fn decode(b: &[u8]) -> Seen {
    if b.iter().all(|&x| x == 0) {
        return Seen::Zero;
    }
    if b.len() < 16 {
        return Seen::Garbage;
    }
    let mut t = [0u8; 8];
    t.copy_from_slice(&b[..8]);
    let tag = u64::from_le_bytes(t);
    let mut want = vec![0u8; b.len()];
    block_data(tag, &mut want);
    if want == b {
        Seen::Tag(tag)
    } else {
        Seen::Garbage
    }
}

impl Seen {
    pub fn cont(self) -> Option<Cont> {
        match self {
            Seen::Zero => Some(Cont::Zero),
            Seen::Tag(t) => Some(Cont::Tag(t)),
            Seen::Garbage => None,
        }
    }
}

/// Run-length text of `c`.
pub fn encode(c: &[Cont]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < c.len() {
        let mut j = i + 1;
        match c[i] {
            Cont::Zero => {
                while j < c.len() && c[j] == Cont::Zero {
                    j += 1;
                }
                out.push(format!("z{}", j - i));
            }
            Cont::Unknown => {
                while j < c.len() && c[j] == Cont::Unknown {
                    j += 1;
                }
                out.push(format!("u{}", j - i));
            }
            Cont::Tag(t) => {
                while j < c.len() && c[j] == Cont::Tag(t.wrapping_add((j - i) as u64)) {
                    j += 1;
                }
                out.push(format!("t{t:x}+{}", j - i));
            }
        }
        i = j;
    }
    out.join(",")
}

/// Parses [`encode`]'s text; at most `limit` blocks.
pub fn parse_runs(s: &str, limit: usize) -> Option<Vec<Cont>> {
    let mut v = Vec::new();
    for run in s.split(',') {
        let (kind, rest) = run.split_at_checked(1)?;
        let (c, n) = match kind {
            "z" => (Cont::Zero, rest.parse::<usize>().ok()?),
            "u" => (Cont::Unknown, rest.parse::<usize>().ok()?),
            "t" => {
                let (t, n) = rest.split_once('+')?;
                (Cont::Tag(u64::from_str_radix(t, 16).ok()?), n.parse().ok()?)
            }
            _ => return None,
        };
        if n == 0 || v.len() + n > limit {
            return None;
        }
        for k in 0..n {
            v.push(match c {
                Cont::Tag(t) => Cont::Tag(t.wrapping_add(k as u64)),
                other => other,
            });
        }
    }
    Some(v)
}

fn cont_text(c: Cont) -> String {
    encode(&[c])
}

fn parse_cont(s: &str) -> Option<Cont> {
    parse_runs(s, 1).and_then(|v| v.first().copied())
}

/// One block as the journal has it.
#[derive(Debug, Clone, Default)]
pub struct BlockView {
    /// The last durable write: its sequence number and content.
    pub durable: Option<(u64, Cont)>,
    /// Intents journaled after it: (seq, content).
    pub later: Vec<(u64, Cont)>,
}

impl BlockView {
    /// The contents the block may hold, or `None` when it cannot be checked (no durable
    /// write, or something unknown may be there).
    pub fn accept(&self) -> Option<Vec<Cont>> {
        let (s, c) = self.durable?;
        let mut v = vec![c];
        v.extend(self.later.iter().filter(|(q, _)| *q > s).map(|(_, c)| *c));
        if v.contains(&Cont::Unknown) {
            return None;
        }
        v.sort();
        v.dedup();
        Some(v)
    }
}

/// An intent that may still become durable.
type Open = Vec<(u32, u64, Vec<Cont>)>;

/// The state the journal describes.
#[derive(Debug, Default)]
pub struct View {
    pub run: String,
    /// nsid -> (block size, blocks).
    pub namespaces: BTreeMap<u32, (u64, u64)>,
    pub blocks: BTreeMap<(u32, u64), BlockView>,
    open: HashMap<u64, Open>,
    /// Records read or applied.
    pub records: u64,
    pub durable_records: u64,
    /// The largest sequence number seen.
    pub max_seq: u64,
}

impl View {
    pub fn intent(&mut self, seq: u64, nsid: u32, slba: u64, c: &[Cont], may_be_durable: bool) {
        self.max_seq = self.max_seq.max(seq);
        for (i, &x) in c.iter().enumerate() {
            let b = self.blocks.entry((nsid, slba + i as u64)).or_default();
            b.later.push((seq, x));
        }
        if may_be_durable {
            self.open
                .entry(seq)
                .or_default()
                .push((nsid, slba, c.to_vec()));
        }
        self.records += 1;
    }

    pub fn durable(&mut self, seq: u64) {
        self.records += 1;
        self.durable_records += 1;
        let Some(ranges) = self.open.remove(&seq) else {
            return;
        };
        for (nsid, slba, c) in ranges {
            for (i, &x) in c.iter().enumerate() {
                let b = self.blocks.entry((nsid, slba + i as u64)).or_default();
                if b.durable.is_some_and(|(s, _)| s > seq) {
                    continue;
                }
                b.durable = Some((seq, x));
                b.later.retain(|(s, _)| *s > seq);
            }
        }
    }

    /// Drops an intent that will never be durable (it failed); its content stays
    /// acceptable on its blocks.
    pub fn forget(&mut self, seq: u64) {
        self.open.remove(&seq);
    }

    /// Blocks with a durable write.
    pub fn durable_blocks(&self) -> usize {
        self.blocks.values().filter(|b| b.durable.is_some()).count()
    }

    fn apply_line(&mut self, line: &str) -> Result<(), String> {
        let f: Vec<&str> = line.split(' ').collect();
        let num = |i: usize| -> Result<u64, String> {
            f.get(i)
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| format!("bad field {i}"))
        };
        let limit = 1 << 20;
        match f.first().copied() {
            Some("H") => self.run = f.get(3).unwrap_or(&"").to_string(),
            Some("N") => {
                self.namespaces.insert(num(1)? as u32, (num(2)?, num(3)?));
            }
            Some(k @ ("I" | "A" | "O")) => {
                let (seq, nsid, slba) = (num(1)?, num(2)? as u32, num(3)?);
                let c = f
                    .get(4)
                    .and_then(|s| parse_runs(s, limit))
                    .ok_or("bad contents")?;
                if k == "O" {
                    self.max_seq = self.max_seq.max(seq);
                    self.open.entry(seq).or_default().push((nsid, slba, c));
                } else {
                    self.intent(seq, nsid, slba, &c, k == "I");
                }
            }
            Some("D") => self.durable(num(1)?),
            Some("Q") => self.max_seq = self.max_seq.max(num(1)?),
            Some("B") => {
                let key = (num(1)? as u32, num(2)?);
                let mut b = BlockView::default();
                let d = f.get(3).ok_or("no durable field")?;
                if *d != "-" {
                    let (s, c) = d.split_once('=').ok_or("bad durable")?;
                    let s: u64 = s.parse().map_err(|_| "bad durable seq")?;
                    self.max_seq = self.max_seq.max(s);
                    b.durable = Some((s, parse_cont(c).ok_or("bad durable content")?));
                }
                for l in f.iter().skip(4) {
                    let (s, c) = l.split_once('=').ok_or("bad later")?;
                    let s: u64 = s.parse().map_err(|_| "bad later seq")?;
                    self.max_seq = self.max_seq.max(s);
                    b.later.push((s, parse_cont(c).ok_or("bad later content")?));
                }
                self.blocks.insert(key, b);
            }
            _ => return Err("unknown record".into()),
        }
        Ok(())
    }

    /// Reads a journal file.
    pub fn load(path: &Path) -> io::Result<View> {
        let mut v = View::default();
        let mut r = BufReader::new(File::open(path)?);
        let mut line = String::new();
        let mut n = 0u64;
        loop {
            line.clear();
            if r.read_line(&mut line)? == 0 {
                break;
            }
            n += 1;
            let Some(text) = line.strip_suffix('\n') else {
                break; // cut short by a crash while writing: never acted on
            };
            v.apply_line(text).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} line {n}: {e}: {text:?}", path.display()),
                )
            })?;
        }
        if v.run.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: no header", path.display()),
            ));
        }
        Ok(v)
    }

    /// The whole state as snapshot lines.
    fn snapshot(&self) -> String {
        let mut s = format!("H vnvme-stress 1 {}\nQ {}\n", self.run, self.max_seq);
        for (nsid, (lbs, blocks)) in &self.namespaces {
            s += &format!("N {nsid} {lbs} {blocks}\n");
        }
        for ((nsid, lba), b) in &self.blocks {
            if b.durable.is_none() && b.later.is_empty() {
                continue;
            }
            s += &format!("B {nsid} {lba} ");
            match b.durable {
                Some((q, c)) => s += &format!("{q}={}", cont_text(c)),
                None => s += "-",
            }
            for (q, c) in &b.later {
                s += &format!(" {q}={}", cont_text(*c));
            }
            s.push('\n');
        }
        let mut seqs: Vec<&u64> = self.open.keys().collect();
        seqs.sort();
        for q in seqs {
            for (nsid, slba, c) in &self.open[q] {
                s += &format!("O {q} {nsid} {slba} {}\n", encode(c));
            }
        }
        s
    }
}

/// The journal being written: records go to the file (one write(2) per batch, before
/// the client acts on them) and to an in-memory [`View`].
pub struct Journal {
    path: PathBuf,
    file: File,
    pending: String,
    written: u64,
    /// Rewrite as a snapshot beyond this many bytes.
    limit: u64,
    pub view: View,
    pub snapshots: u64,
}

impl Journal {
    pub fn create(path: &Path, run: &str, namespaces: &[(u32, u64, u64)]) -> io::Result<Journal> {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        let mut j = Journal {
            path: path.to_path_buf(),
            file,
            pending: String::new(),
            written: 0,
            limit: 64 << 20,
            view: View {
                run: run.to_string(),
                ..Default::default()
            },
            snapshots: 0,
        };
        j.pending += &format!("H vnvme-stress 1 {run}\n");
        for &(nsid, lbs, blocks) in namespaces {
            j.view.namespaces.insert(nsid, (lbs, blocks));
            j.pending += &format!("N {nsid} {lbs} {blocks}\n");
        }
        j.commit()?;
        Ok(j)
    }

    /// Continues the journal at `path` (a run killed before): its records are loaded and
    /// kept, new ones appended after a header of run `run`. Sequence numbers go on from
    /// the largest one there.
    pub fn resume(path: &Path, run: &str, namespaces: &[(u32, u64, u64)]) -> io::Result<Journal> {
        let mut view = View::load(path)?;
        view.run = run.to_string();
        let mut file = OpenOptions::new().append(true).open(path)?;
        // A record cut short by the kill: end it so the next one starts on its own line.
        let len = file.metadata()?.len();
        if len > 0 {
            let mut last = [0u8; 1];
            use std::io::{Read, Seek, SeekFrom};
            let mut r = File::open(path)?;
            r.seek(SeekFrom::Start(len - 1))?;
            r.read_exact(&mut last)?;
            if last[0] != b'\n' {
                file.write_all(b"\n")?;
            }
        }
        let mut j = Journal {
            path: path.to_path_buf(),
            file,
            pending: String::new(),
            written: len,
            limit: (64u64 << 20).max(len * 2),
            view,
            snapshots: 0,
        };
        j.pending += &format!("H vnvme-stress 1 {run}\n");
        for &(nsid, lbs, blocks) in namespaces {
            j.view.namespaces.insert(nsid, (lbs, blocks));
            j.pending += &format!("N {nsid} {lbs} {blocks}\n");
        }
        j.commit()?;
        Ok(j)
    }

    /// The largest sequence number the journal holds.
    pub fn max_seq(&self) -> u64 {
        self.view.max_seq
    }

    pub fn intent(&mut self, seq: u64, nsid: u32, slba: u64, c: &[Cont], may_be_durable: bool) {
        let k = if may_be_durable { 'I' } else { 'A' };
        self.pending += &format!("{k} {seq} {nsid} {slba} {}\n", encode(c));
        self.view.intent(seq, nsid, slba, c, may_be_durable);
    }

    pub fn durable(&mut self, seq: u64) {
        self.pending += &format!("D {seq}\n");
        self.view.durable(seq);
    }

    /// Writes what is pending (one write_all); rewrites the file as a snapshot when it
    /// grew past its limit.
    pub fn commit(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.file.write_all(self.pending.as_bytes())?;
        self.written += self.pending.len() as u64;
        self.pending.clear();
        if self.written > self.limit {
            self.rotate()?;
        }
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        let tmp = self.path.with_extension("snapshot");
        let snap = self.view.snapshot();
        {
            let mut f = File::create(&tmp)?;
            f.write_all(snap.as_bytes())?;
        }
        std::fs::rename(&tmp, &self.path)?;
        self.file = OpenOptions::new().append(true).open(&self.path)?;
        self.written = snap.len() as u64;
        // A snapshot that is itself large: allow growth beyond it.
        self.limit = self.limit.max(self.written * 2);
        self.snapshots += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_round_trip() {
        let c = vec![
            Cont::Tag(5),
            Cont::Tag(6),
            Cont::Zero,
            Cont::Zero,
            Cont::Unknown,
            Cont::Tag(9),
        ];
        let s = encode(&c);
        assert_eq!(s, "t5+2,z2,u1,t9+1");
        assert_eq!(parse_runs(&s, 100), Some(c));
        assert_eq!(parse_runs("t5+2", 1), None);
    }

    #[test]
    fn block_data_decodes() {
        let mut b = vec![0u8; 512];
        block_data(0x1234, &mut b);
        assert_eq!(decode(&b), Seen::Tag(0x1234));
        b[100] ^= 1;
        assert_eq!(decode(&b), Seen::Garbage);
        assert_eq!(decode(&[0u8; 512]), Seen::Zero);
    }

    #[test]
    fn durable_and_later_writes_are_accepted() {
        let mut v = View::default();
        v.intent(1, 1, 10, &[Cont::Tag(100), Cont::Tag(101)], true);
        v.durable(1);
        v.intent(2, 1, 11, &[Cont::Tag(200)], true);
        v.intent(3, 1, 10, &[Cont::Zero], false);
        assert_eq!(
            v.blocks[&(1, 10)].accept(),
            Some(vec![Cont::Zero, Cont::Tag(100)])
        );
        assert_eq!(
            v.blocks[&(1, 11)].accept(),
            Some(vec![Cont::Tag(101), Cont::Tag(200)])
        );
        v.durable(2);
        assert_eq!(v.blocks[&(1, 11)].accept(), Some(vec![Cont::Tag(200)]));
        // An older durable record after a newer one changes nothing.
        v.intent(4, 1, 12, &[Cont::Tag(7)], true);
        v.intent(5, 1, 12, &[Cont::Tag(8)], true);
        v.durable(5);
        v.durable(4);
        assert_eq!(v.blocks[&(1, 12)].accept(), Some(vec![Cont::Tag(8)]));
    }

    #[test]
    fn a_snapshot_loads_as_the_same_view() {
        let dir = std::env::temp_dir().join(format!("vnvme-journal-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("j");
        let mut j = Journal::create(&path, "r1", &[(1, 512, 64)]).unwrap();
        j.intent(1, 1, 0, &[Cont::Tag(1), Cont::Tag(2)], true);
        j.durable(1);
        j.intent(2, 1, 1, &[Cont::Unknown], true);
        j.intent(3, 1, 5, &[Cont::Tag(9)], true);
        j.commit().unwrap();
        j.rotate().unwrap();
        j.durable(3);
        j.commit().unwrap();
        let v = View::load(&path).unwrap();
        assert_eq!(v.run, "r1");
        assert_eq!(v.blocks[&(1, 0)].accept(), Some(vec![Cont::Tag(1)]));
        assert_eq!(v.blocks[&(1, 1)].accept(), None);
        assert_eq!(v.blocks[&(1, 5)].accept(), Some(vec![Cont::Tag(9)]));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
