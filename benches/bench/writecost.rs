//! Target 1g's floor in the store: what sled 0.34 itself spends, in CPU and
//! on disk, on the writes of one invitation's life, with no canvass code in
//! the way.
//!
//! A bare sled database (canvass' settings: high-throughput mode, 16 MiB
//! cache, zstd level 1 or no compression) gets, per invitation, the writes
//! the daemon makes: at ingest, 25 invitations to a transaction, each with
//! its record, its index entries, its queued outbox item and a "seen" key,
//! plus the counter and the source mark, then a flush (as the ingest loop
//! commits); at sending, the outbox item removed and the invitation
//! rewritten in groups of 8, each flushed (as the outbox's group commit
//! does). Measured: this process' CPU (user + system, sled's own threads
//! included) and the disk used, per invitation; for the layout of schema 1
//! (`invitations` of 304 bytes, `recipients`, `tokens`, `msgids`, `outbox`,
//! `ingest`, `counters`), for schema 2's (records of 159 bytes, no
//! `tokens` and `msgids` entries) and for schema 3's (the same record keyed
//! by an id derived from the address' HMAC, so in no order, and no
//! `recipients` entry), each with and without compression.

use std::path::Path;
use std::time::Instant;

use rand::{RngCore, SeedableRng};
use sled::Transactional;

use crate::util::{self, Figure, Opts};

/// An outbox item (an invitation is queued without its body): ~100 bytes.
const OUTBOX: usize = 100;

struct Layout {
    name: &'static str,
    /// Writes the token and Message-ID indexes.
    indexes: bool,
    /// One record per invitation, keyed by an id derived from the address'
    /// HMAC (random order), with no `recipients` entry.
    one_record: bool,
    /// The invitation record's bytes (about 40 % of it random: hashes,
    /// nonces; the rest text or small numbers).
    record: usize,
}

const LAYOUTS: [Layout; 3] = [
    Layout {
        name: "schema 1 (4 keys, 304-byte record)",
        indexes: true,
        one_record: false,
        record: 304,
    },
    Layout {
        name: "schema 2 (2 keys, 159-byte record)",
        indexes: false,
        one_record: false,
        record: 159,
    },
    Layout {
        name: "schema 3 (1 key, keyed by the address, 159-byte record)",
        indexes: false,
        one_record: true,
        record: 159,
    },
];

pub fn run(opts: &Opts, figures: &mut Vec<Figure>) {
    let n = if opts.quick { 5_000 } else { 50_000 };
    eprintln!("== 1g'. sled alone, one invitation's writes ({n} invitations per run)");
    let mut rows = Vec::new();
    for layout in &LAYOUTS {
        for compression in [true, false] {
            let dir = opts.dir.join(format!(
                "writecost-{}-{}-{}",
                layout.indexes,
                layout.one_record,
                if compression { "zstd" } else { "plain" }
            ));
            let _ = std::fs::remove_dir_all(&dir);
            let (cpu_us, wall_us) = write(&dir, n, layout, compression);
            let disk = util::disk_usage(&dir) as f64 / n as f64;
            eprintln!(
                "  {}, {}: CPU {cpu_us:.0} µs, wall {wall_us:.0} µs, disk {disk:.0} B per invitation",
                layout.name,
                if compression { "zstd" } else { "no compression" },
            );
            rows.push(format!(
                "{}, {}: CPU {cpu_us:.0} µs, disk {disk:.0} B per invitation",
                layout.name,
                if compression {
                    "zstd level 1"
                } else {
                    "no compression"
                }
            ));
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    figures.push(Figure::info(
        "1g'",
        "sled alone, one invitation's writes (ingest 25 to a transaction + flush; sent in groups of 8 + flush)",
        rows.join("; "),
    ));
}

/// Writes `n` invitations' life; returns (CPU µs, wall µs) per invitation.
fn write(dir: &Path, n: usize, layout: &Layout, compression: bool) -> (f64, f64) {
    let db = sled::Config::new()
        .path(dir)
        .mode(sled::Mode::HighThroughput)
        .cache_capacity(16 << 20)
        .use_compression(compression)
        .compression_factor(1)
        .open()
        .expect("open a bare sled");
    let tree = |name: &str| db.open_tree(name).expect("open a tree");
    let (inv, rcp, tok, mid) = (
        tree("invitations"),
        tree("recipients"),
        tree("tokens"),
        tree("msgids"),
    );
    let (out, ing, cnt) = (tree("outbox"), tree("ingest"), tree("counters"));
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut record = |fill: u8, len: usize| {
        let mut v = vec![fill; len];
        rng.fill_bytes(&mut v[..len * 2 / 5]);
        v
    };
    let pid = std::process::id();
    let cpu0 = util::proc_cpu_seconds(pid);
    let t = Instant::now();
    let mut next_id = 0u64;
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n / 25 {
        let batch: Vec<(u64, u64, Vec<u8>, Vec<u8>)> = (0..25)
            .map(|_| {
                next_id += 1;
                let rec = record(b'a', layout.record);
                let id = if layout.one_record {
                    u64::from_be_bytes(rec[..8].try_into().expect("8 bytes")) >> 2
                } else {
                    next_id
                };
                ids.push((id, next_id));
                (id, next_id, rec, record(b'o', OUTBOX))
            })
            .collect();
        (&inv, &rcp, &tok, &mid, &out, &ing, &cnt)
            .transaction(|(inv, rcp, tok, mid, out, ing, cnt)| {
                for (id, seq, rec, item) in &batch {
                    let key = id.to_be_bytes();
                    inv.insert(&key, rec.as_slice())?;
                    if !layout.one_record {
                        rcp.insert(&rec[..32], &key)?;
                    }
                    if layout.indexes {
                        tok.insert(&rec[32..64], &key)?;
                        mid.insert(format!("canvass.{id:024x}@siri.dk").as_bytes(), &key)?;
                    }
                    out.insert(&seq.to_be_bytes(), item.as_slice())?;
                    ing.insert(&rec[64..96], &[])?;
                }
                cnt.insert("Syddanmark\0invited", &next_id.to_be_bytes())?;
                ing.insert("mark:imap", &next_id.to_be_bytes())?;
                Ok::<_, sled::transaction::ConflictableTransactionError<()>>(())
            })
            .expect("ingest transaction");
        db.flush().expect("flush");
    }
    for group in ids.chunks(8) {
        let sent = record(b's', layout.record);
        (&inv, &out)
            .transaction(|(inv, out)| {
                for (id, seq) in group {
                    out.remove(&seq.to_be_bytes())?;
                    inv.insert(&id.to_be_bytes(), sent.as_slice())?;
                }
                Ok::<_, sled::transaction::ConflictableTransactionError<()>>(())
            })
            .expect("sent transaction");
        db.flush().expect("flush");
    }
    let wall = t.elapsed().as_secs_f64();
    let cpu = util::proc_cpu_seconds(pid) - cpu0;
    drop(db);
    let per = |s: f64| s * 1e6 / next_id as f64;
    (per(cpu), per(wall))
}
