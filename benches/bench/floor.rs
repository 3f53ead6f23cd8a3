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

/// The record sizes of a canvass store (a built scale store read tree by
/// tree): key bytes, value bytes.
const INVITATION: (usize, usize) = (8, 304);
const INDEX_HASH: (usize, usize) = (32, 8); // tokens, recipients
const MESSAGE_ID: (usize, usize) = (42, 8); // msgids
const ANSWER: (usize, usize) = (16, 507);

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
    let trees = ["invitations", "tokens", "recipients", "msgids", "responses"]
        .map(|name| db.open_tree(name).expect("tree"));
    const BATCH: usize = 10_000;
    let mut i = 0;
    while i < n {
        let end = (i + BATCH).min(n);
        let mut batches: [sled::Batch; 5] = Default::default();
        for id in i..end {
            // The invitation: its ids and hashes (random), then text.
            let mut v = random(&mut rng, 80);
            let text = format!(
                "Kontakt {id} <k{id}@kommune.test> Hovedstaden mette.larsen@siri.test \
                 2026-11-25T19:02:33.123456789Z canvass.{id:016x}.{:08x}@siri.test Sent",
                rng.gen::<u32>()
            );
            v.extend_from_slice(text.as_bytes());
            v.resize(INVITATION.1, 0);
            batches[0].insert(&(id as u64).to_be_bytes(), v);
            let id_value = (id as u64).to_be_bytes();
            batches[1].insert(random(&mut rng, INDEX_HASH.0), &id_value);
            batches[2].insert(random(&mut rng, INDEX_HASH.0), &id_value);
            let mut mid =
                format!("canvass.{id:016x}.{:08x}@siri.test", rng.gen::<u32>()).into_bytes();
            mid.resize(MESSAGE_ID.0, b'x');
            batches[3].insert(mid, &id_value);
            if id % 2 == 0 {
                // Answers are keyed at random (nothing in the key points
                // back to an invitation); the bench's answers are all alike.
                let mut a = b"survey=siri-2025;v=1;day=2026-11-25;".to_vec();
                while a.len() < ANSWER.1 {
                    a.extend_from_slice(b"q_tilfreds=4;q_nytte=5;q_anbefale=ja;");
                }
                a.truncate(ANSWER.1);
                batches[4].insert(random(&mut rng, ANSWER.0), a);
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
    for name in ["invitations", "tokens", "recipients", "msgids", "responses"] {
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
