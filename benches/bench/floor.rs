//! Target 5's floor: what sled 0.34 itself needs for a store of the size the
//! scale scenario builds, with no canvass code in the way.
//!
//! For each size N, a bare sled database (with the settings of
//! `canvass::store`: zstd level 1, 16 MiB cache) gets the keys and values
//! a canvass store holds at N invitations and N/2 answers, with their sizes
//! and kinds of content (random hashes, text), written once, in large
//! batches, in key order where canvass' keys are ordered: the cheapest way
//! sled can be given that data. Measured: its size on disk, and, in a fresh
//! process, the time to open it and the memory (RSS) after opening it and
//! reading one key of each tree (what an idle daemon has done).
//!
//! Whatever canvass does, its store cannot be smaller or cheaper to open than
//! this with sled 0.34; where this floor is above a target, the library is
//! the limit.

use std::path::Path;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

use crate::util::{self, Figure, Opts};

/// The record sizes of a canvass store of schema 3: key bytes, value bytes
/// (`store::v1::tests::compact_records_are_much_smaller` prints them for
/// the scale bench's invitation and answer). No `msgids` or `tokens` entry:
/// a Message-ID and a link carry their invitation's id; no `recipients`
/// entry: an invitation is keyed by its address (`store::keyed_id`). The
/// `names` tree holds a few dozen short strings whatever N is, and is left
/// out.
const INVITATION: (usize, usize) = (8, 159);
/// Of an invitation's value: address key, token hash, nonce and the
/// Message-ID's random half.
const INVITATION_RANDOM: usize = 92;
const ANSWER: (usize, usize) = (16, 148);

/// The trees that grow with N (schema 3).
const TREES: [&str; 2] = ["invitations", "responses"];

/// `canvass::store`'s sled settings (src/store/mod.rs, `open_db`).
fn config(path: &Path) -> sled::Config {
    sled::Config::new()
        .path(path)
        .mode(sled::Mode::HighThroughput)
        .cache_capacity(16 << 20)
        .use_compression(true)
        .compression_factor(1)
}

pub fn run(opts: &Opts, figures: &mut Vec<Figure>) {
    eprintln!(
        "== 5'. sled alone, the same data written once ({:?})",
        opts.scale
    );
    let mut rows = Vec::new();
    for &n in &opts.scale {
        let dir = opts.dir.join(format!("floor-{n}"));
        let _ = std::fs::remove_dir_all(&dir);
        let t = Instant::now();
        write(&dir, n);
        let write_s = t.elapsed().as_secs_f64();
        let disk = util::disk_usage(&dir);
        let (open_ms, rss_kib) = open_in_child(&dir);
        eprintln!(
            "  {n}: written in {write_s:.0} s, {:.0} MiB on disk, opened in {open_ms:.0} ms, RSS {:.1} MiB",
            util::mib(disk),
            rss_kib as f64 / 1024.0
        );
        rows.push(format!(
            "{} on disk ({:.0} B per invitation); opened in {open_ms:.0} ms; RSS after opening {:.1} MiB",
            human(disk),
            disk as f64 / n as f64,
            rss_kib as f64 / 1024.0
        ));
        util::report(
            figures,
            Figure::info(
                &format!("5i@{}", crate::scale::label(n)),
                "sled alone, the same keys and values written once in bulk (the floor)",
                rows.last().cloned().unwrap_or_default(),
            ),
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

fn human(bytes: u64) -> String {
    if bytes >= 1 << 30 {
        format!("{:.2} GB", bytes as f64 / 1e9)
    } else {
        format!("{:.0} MiB", util::mib(bytes))
    }
}

/// Writes the data of a canvass store at `n` invitations.
fn write(dir: &Path, n: usize) {
    let db = config(dir).open().expect("open a sled database");
    let mut rng = rand::rngs::StdRng::seed_from_u64(n as u64);
    let trees = TREES.map(|name| db.open_tree(name).expect("tree"));
    // Keyed ids (62 bits of an HMAC), written in key order.
    let mut keys: Vec<u64> = (0..n).map(|_| rng.gen::<u64>() >> 2 | 1 << 62).collect();
    keys.sort_unstable();
    const BATCH: usize = 10_000;
    let mut i = 0;
    while i < n {
        let end = (i + BATCH).min(n);
        let mut batches: [sled::Batch; 2] = Default::default();
        for (id, key) in keys.iter().enumerate().take(end).skip(i) {
            // The invitation: its hashes, nonce and the Message-ID's random
            // half (random), the address (text), then small numbers (id,
            // names, times, flags as varints).
            let mut v = random(&mut rng, INVITATION_RANDOM);
            v.extend_from_slice(format!("\x1bkontakt+{id}@kommune.test").as_bytes());
            v.extend_from_slice(&key.to_le_bytes()[..8]);
            v.extend_from_slice(&[0, 1, 0, 2, 0, 3, 252]);
            v.extend_from_slice(&1_764_097_353u32.to_le_bytes());
            v.extend_from_slice(&rng.gen::<u32>().to_le_bytes());
            v.resize(INVITATION.1, 0);
            batches[0].insert(&key.to_be_bytes(), v);
            if id % 2 == 0 {
                // Answers are keyed at random (nothing in the key points
                // back to an invitation); the bench's answers are all alike:
                // names as small numbers, then the free text.
                let mut a = vec![0, 0, 1, 1, 0, 1, 253, 0x8c, 0x4f, 9];
                for q in 1u8..=8 {
                    a.extend_from_slice(&[0, q + 2, 0, 0, q + 12, 0]);
                }
                a.extend_from_slice("Netværk på tværs – æøå ÆØÅ 🙂".as_bytes());
                a.extend_from_slice("Rigtig god hjælp, tak! Søren & Åse <3 🎉".as_bytes());
                a.resize(ANSWER.1, 0);
                batches[1].insert(random(&mut rng, ANSWER.0), a);
            }
        }
        for (tree, batch) in trees.iter().zip(batches) {
            tree.apply_batch(batch).expect("apply a batch");
        }
        i = end;
    }
    db.flush().expect("flush");
}

fn random(rng: &mut impl Rng, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rng.fill(v.as_mut_slice());
    v
}

/// Opens the database in a fresh process (this program, `__sled-open`).
fn open_in_child(dir: &Path) -> (f64, u64) {
    let exe = std::env::current_exe().expect("the bench program");
    let (_, out, err) = util::run_timed(
        &exe.display().to_string(),
        &["__sled-open".to_string(), dir.display().to_string()],
        Duration::from_secs(600),
    );
    let mut words = out.split_whitespace();
    let open_ms: f64 = words
        .next()
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("__sled-open said {out:?} {err:?}"));
    let rss: u64 = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
    (open_ms, rss)
}

/// The child: open, read one key of each tree, print "open_ms rss_kib".
pub fn child_open(dir: &Path) {
    let t = Instant::now();
    let db = config(dir).open().expect("open");
    for name in TREES {
        let tree = db.open_tree(name).expect("tree");
        let _ = tree.first().expect("read");
    }
    let open_ms = t.elapsed().as_secs_f64() * 1000.0;
    std::thread::sleep(Duration::from_millis(200));
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("0")
        .to_string();
    println!("{open_ms:.1} {rss}");
}
