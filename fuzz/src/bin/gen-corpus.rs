//! Writes the seed corpora for AFL: the first cases the seeded random driver generates
//! for each target, as `DIR/TARGET/seed-NNN` (default DIR: `corpus`, 16 per target).

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(args.next().unwrap_or_else(|| "corpus".into()));
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(16);
    for t in vnvme::fuzz::TARGETS {
        let d = dir.join(t.name);
        std::fs::create_dir_all(&d).expect("corpus directory");
        for (i, case) in vnvme::fuzz::corpus(t, vnvme::fuzz::DEFAULT_SEED, n)
            .iter()
            .enumerate()
        {
            std::fs::write(d.join(format!("seed-{i:03}")), case).expect("write seed");
        }
        println!("{}: {n} seeds in {}", t.name, d.display());
    }
}
