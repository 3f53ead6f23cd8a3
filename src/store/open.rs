//! Opening the store: the directory made private whatever the umask, sled
//! opened with canvass' settings (page cache, zstd), the schema checked and
//! an older one migrated (`schema.rs`).

use std::path::Path;

use super::{schema, Names, Store, StoreError, SCHEMA_VERSION};

/// sled's page cache: what the daemon reads is the counters, the recent
/// invitations and the outbox; the rest of a large store stays on disk
/// (sled's default, 1 GiB, would let a long-running daemon grow to that).
const CACHE_BYTES: u64 = 16 << 20;

/// zstd's level for sled's pages: level 5 (sled's default) made the store 3 %
/// smaller than level 1 at the same CPU cost per write (BENCHMARKS.md).
const ZSTD_LEVEL: i32 = 1;

/// Opens the sled database at `path` with canvass' settings.
///
/// Pages are compressed with zstd: a store holds text (addresses, regions,
/// consultants, answer codes), and sled's log keeps several copies of a page
/// until it reclaims a segment: at 100,000 invitations the store on disk is
/// 166 MiB instead of 282 MiB, for ~100 µs more CPU per ingest transaction
/// (BENCHMARKS.md, target 5). sled refuses to open a
/// store with another compression setting than it was created with, so a
/// store keeps the setting it has (sled writes it to `conf` beside the data).
pub(super) fn open_db(path: &Path) -> Result<sled::Db, StoreError> {
    // (`conf` is text lines followed by a binary checksum.)
    let compressed = match std::fs::read(path.join("conf")) {
        Ok(conf) => String::from_utf8_lossy(&conf)
            .lines()
            .any(|l| l.trim() == "use_compression: true"),
        Err(_) => true,
    };
    sled::Config::new()
        .path(path)
        .mode(sled::Mode::HighThroughput)
        .cache_capacity(CACHE_BYTES)
        .use_compression(compressed)
        .compression_factor(ZSTD_LEVEL)
        .open()
        .map_err(|e| match e {
            sled::Error::Io(ref io)
                if io.kind() == std::io::ErrorKind::WouldBlock
                    || io.to_string().contains("lock") =>
            {
                StoreError::Locked {
                    path: path.display().to_string(),
                }
            }
            e => StoreError::Sled(e),
        })
}

impl Store {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let p = path.display().to_string();
        // Private whatever the umask: created 0700; one readable by others
        // is repaired with a warning, and so are the files sled just made.
        let io = |e| StoreError::Sled(sled::Error::Io(e));
        if !path.exists() {
            crate::private::create_private_dir(path).map_err(io)?;
        }
        crate::private::repair_and_warn(path, "the store").map_err(io)?;
        let db = open_db(path)?;
        crate::private::repair(path).map_err(io)?;
        let meta = db.open_tree("meta")?;
        match meta.get("schema")? {
            None => {
                meta.insert("schema", &[SCHEMA_VERSION])?;
            }
            Some(v) if v.as_ref() == [SCHEMA_VERSION] => {}
            Some(v) => {
                let [found] = *v.as_ref() else {
                    return Err(StoreError::Corrupt {
                        what: format!(
                            "meta tree, schema: {} bytes where a one-byte version belongs",
                            v.len()
                        ),
                    });
                };
                if found > SCHEMA_VERSION {
                    return Err(StoreError::TooNew { path: p, found });
                }
                // An older schema: migrated step by step, or refused (schema.rs).
                schema::migrate(&db, &meta, found, &p)?;
            }
        }
        let store = Store {
            invitations: db.open_tree("invitations")?,
            recipients: db.open_tree("recipients")?,
            tokens: db.open_tree("tokens")?,
            outbox: db.open_tree("outbox")?,
            ingest: db.open_tree("ingest")?,
            counters: db.open_tree("counters")?,
            responses: db.open_tree("responses")?,
            jobs: db.open_tree("jobs")?,
            msgids: db.open_tree("msgids")?,
            names: std::sync::Arc::new(Names::load(&db)?),
            withdrawn: db.open_tree(super::withdraw::TREE)?,
            counted: db.open_tree(super::withdraw::COUNTED_TREE)?,
            flush_gate: Default::default(),
            db,
        };
        release_free_memory();
        Ok(store)
    }
}

/// Hands the memory malloc holds free back to the system. sled reads its
/// log since the last snapshot at open, in buffers it then frees; glibc
/// keeps freed memory in the middle of its heaps resident, so a daemon that
/// opened a large store stayed that much larger for its whole life
/// (BENCHMARKS.md, target 5h).
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim(3) only returns free pages of glibc's own heaps to
    // the kernel; it touches no memory in use and cannot fail.
    unsafe {
        libc::malloc_trim(0);
    }
}
