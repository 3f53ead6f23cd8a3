//! Backup and restore: [`Store::backup`] takes a consistent snapshot of
//! every tree while the daemon runs, in a checksummed file; [`restore`]
//! writes it into a fresh store that then replaces the old one. Also
//! [`write_private_file`], how canvass writes a file only its user may read.
//!
//! Values erased by `purge` or `forget` may survive in sled's log segments
//! until sled reclaims them; a backup and restore writes a store that holds
//! none of them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sled::transaction::ConflictableTransactionError;

use super::{u64_from, Store, StoreError, SCHEMA_VERSION};

/// The first bytes of a backup file.
pub const BACKUP_MAGIC: &[u8] = b"canvass-backup\n";
/// The layout of the backup file (not of the store: that is `schema`).
pub const BACKUP_FORMAT: u32 = 1;
/// How often a snapshot is retried when writes overlapped it.
const SNAPSHOT_ATTEMPTS: u32 = 40;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the store kept changing during {attempts} attempts at a consistent snapshot; try again when it is less busy")]
    Busy { attempts: u32 },
    #[error("{path} is not a canvass backup ({why})")]
    NotABackup { path: String, why: String },
    #[error("{path} was written by a newer canvass (backup format {found}, this one reads {BACKUP_FORMAT}); restore it with that version")]
    NewerFormat { path: String, found: u32 },
    #[error("{path} holds a store of schema {found}, newer than this canvass reads ({SCHEMA_VERSION}); restore it with the canvass that wrote it")]
    NewerSchema { path: String, found: u8 },
    #[error("the store at {path} is not empty ({invitations} invitation(s), {answers} answer(s)); restoring replaces all of it: add --force to do so")]
    NotEmpty {
        path: String,
        invitations: u64,
        answers: u64,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

/// A snapshot as written to a backup file.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct BackupBody {
    format: u32,
    /// The store's schema marker (`meta/schema`).
    schema: u8,
    taken_at: DateTime<Utc>,
    trees: Vec<TreeDump>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct TreeDump {
    name: Vec<u8>,
    entries: Vec<(Vec<u8>, Vec<u8>)>,
}

/// A backup read back and verified.
#[derive(Debug, Clone)]
pub struct Backup {
    body: BackupBody,
}

/// What a backup holds, for the operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupInfo {
    pub taken_at: DateTime<Utc>,
    pub schema: u8,
    pub bytes: u64,
    /// Records per tree (invitations, responses, outbox, …).
    pub records: BTreeMap<String, u64>,
}

impl BackupInfo {
    pub fn render(&self) -> String {
        let get = |n: &str| self.records.get(n).copied().unwrap_or(0);
        format!(
            "{} invitation(s), {} answer(s), {} queued message(s); schema {}, taken {} UTC, {} bytes",
            get("invitations"),
            get("responses"),
            get("outbox"),
            self.schema,
            self.taken_at.format("%Y-%m-%d %H:%M:%S"),
            self.bytes
        )
    }
}

impl Store {
    /// A consistent snapshot of every tree, as the bytes of a backup file.
    /// Safe while the daemon works: a snapshot that writes overlapped is
    /// retried (see [`Watch`]); after [`SNAPSHOT_ATTEMPTS`] it gives up.
    pub fn backup(&self) -> Result<(Vec<u8>, BackupInfo), BackupError> {
        let mut pause = Duration::from_millis(5);
        for attempt in 1..=SNAPSHOT_ATTEMPTS {
            if let Some(trees) = self.try_snapshot()? {
                // The marker of the store as read, never assumed: records
                // are read by it when the backup is restored.
                let schema = match trees
                    .iter()
                    .find(|t| t.name == b"meta")
                    .and_then(|t| t.entries.iter().find(|(k, _)| k == b"schema"))
                    .map(|(_, v)| v.as_slice())
                {
                    Some(&[schema]) => schema,
                    _ => {
                        return Err(StoreError::Corrupt {
                            what: "meta tree: no one-byte schema marker to back up".into(),
                        }
                        .into())
                    }
                };
                let body = BackupBody {
                    format: BACKUP_FORMAT,
                    schema,
                    taken_at: Utc::now(),
                    trees,
                };
                let bytes = encode_backup(&body);
                let info = info_of(&body, bytes.len() as u64);
                if attempt > 1 {
                    tracing::debug!(attempt, "consistent snapshot after retries");
                }
                return Ok((bytes, info));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(500));
        }
        Err(BackupError::Busy {
            attempts: SNAPSHOT_ATTEMPTS,
        })
    }

    /// One attempt: every tree read while no write completed. `None`: a
    /// write overlapped the reading.
    fn try_snapshot(&self) -> Result<Option<Vec<TreeDump>>, StoreError> {
        let mut names = self.db.tree_names();
        names.sort();
        let trees: Vec<(Vec<u8>, sled::Tree)> = names
            .iter()
            .map(|n| Ok((n.to_vec(), self.db.open_tree(n)?)))
            .collect::<Result<_, sled::Error>>()?;
        let watch = Watch::start(&trees);
        // A transaction takes sled's global write lock: once it has run, no
        // write that started before the watch is still in flight.
        self.barrier()?;
        let before = watch.settle();
        let mut dumps = Vec::with_capacity(trees.len());
        for (name, tree) in &trees {
            let mut entries = Vec::with_capacity(tree.len());
            for kv in tree.iter() {
                let (k, v) = kv?;
                entries.push((k.to_vec(), v.to_vec()));
            }
            if !entries.is_empty() {
                dumps.push(TreeDump {
                    name: name.clone(),
                    entries,
                });
            }
        }
        self.barrier()?;
        let after = watch.settle();
        watch.stop();
        let unchanged = before.is_some() && before == after;
        Ok((unchanged && self.db.tree_names().len() == names.len()).then_some(dumps))
    }

    /// Waits until every write in flight has completed (an empty transaction
    /// takes sled's global write lock).
    fn barrier(&self) -> Result<(), StoreError> {
        let meta = self.db.open_tree("meta")?;
        meta.transaction(|_| Ok::<(), ConflictableTransactionError<()>>(()))
            .map_err(|e| match e {
                sled::transaction::TransactionError::Storage(e) => StoreError::Sled(e),
                sled::transaction::TransactionError::Abort(()) => StoreError::Corrupt {
                    what: "an empty transaction aborted".into(),
                },
            })
    }
}

/// Counts the writes to a set of trees, through sled subscribers drained by
/// one thread each (so that a writer never waits on a full channel).
///
/// A write reserves its event before it changes the tree and completes it
/// after; an event that cannot be read as completed (sled drops the
/// reservation of a no-op write) marks the watch "tainted", which counts as a
/// change. The snapshot is consistent when no event completed between the
/// two settles around the reading.
struct Watch {
    subs: Vec<Arc<Mutex<Option<sled::Subscriber>>>>,
    events: Arc<AtomicU64>,
    tainted: Arc<AtomicBool>,
    paused: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Watch {
    fn start(trees: &[(Vec<u8>, sled::Tree)]) -> Watch {
        let mut w = Watch {
            subs: Vec::new(),
            events: Arc::new(AtomicU64::new(0)),
            tainted: Arc::new(AtomicBool::new(false)),
            paused: Arc::new(AtomicBool::new(false)),
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
        };
        for (_, tree) in trees {
            let sub = Arc::new(Mutex::new(Some(tree.watch_prefix(vec![]))));
            w.subs.push(sub.clone());
            let (events, tainted, paused, stop) = (
                w.events.clone(),
                w.tainted.clone(),
                w.paused.clone(),
                w.stop.clone(),
            );
            let spawned = std::thread::Builder::new()
                .name("canvass-backup-watch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Acquire) {
                        if paused.load(Ordering::Acquire) {
                            std::thread::sleep(Duration::from_millis(1));
                            continue;
                        }
                        let mut guard = sub.lock().unwrap_or_else(|p| p.into_inner());
                        let Some(s) = guard.as_mut() else { break };
                        match s.next_timeout(Duration::from_millis(10)) {
                            Ok(_) => {
                                events.fetch_add(1, Ordering::AcqRel);
                            }
                            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                                tainted.store(true, Ordering::Release);
                                *guard = None; // unsubscribe at once
                                break;
                            }
                        }
                    }
                });
            match spawned {
                Ok(t) => w.threads.push(t),
                Err(_) => w.tainted.store(true, Ordering::Release),
            }
        }
        w
    }

    /// Counts every completed event still queued; `None` once tainted.
    fn settle(&self) -> Option<u64> {
        self.paused.store(true, Ordering::Release);
        for sub in &self.subs {
            let mut guard = sub.lock().unwrap_or_else(|p| p.into_inner());
            let Some(s) = guard.as_mut() else {
                self.tainted.store(true, Ordering::Release);
                continue;
            };
            loop {
                match s.next_timeout(Duration::ZERO) {
                    Ok(_) => {
                        self.events.fetch_add(1, Ordering::AcqRel);
                    }
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => break,
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                        self.tainted.store(true, Ordering::Release);
                        *guard = None;
                        break;
                    }
                }
            }
        }
        self.paused.store(false, Ordering::Release);
        (!self.tainted.load(Ordering::Acquire)).then(|| self.events.load(Ordering::Acquire))
    }

    fn stop(mut self) {
        self.stop.store(true, Ordering::Release);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

fn encode_backup(body: &BackupBody) -> Vec<u8> {
    let mut out = BACKUP_MAGIC.to_vec();
    // bincode cannot fail on these plain structs.
    out.extend(bincode::serialize(body).expect("encoding a backup: a bug"));
    let sum = Sha256::digest(&out);
    out.extend_from_slice(&sum);
    out
}

fn info_of(body: &BackupBody, bytes: u64) -> BackupInfo {
    BackupInfo {
        taken_at: body.taken_at,
        schema: body.schema,
        bytes,
        records: body
            .trees
            .iter()
            .filter(|t| t.name != b"meta" && !t.name.starts_with(b"__sled"))
            .map(|t| {
                (
                    String::from_utf8_lossy(&t.name).into_owned(),
                    t.entries.len() as u64,
                )
            })
            .collect(),
    }
}

impl Backup {
    /// Reads and verifies a backup file's bytes (`path` names it in errors).
    pub fn from_bytes(bytes: &[u8], path: &str) -> Result<Backup, BackupError> {
        let not = |why: &str| BackupError::NotABackup {
            path: path.to_string(),
            why: why.to_string(),
        };
        if !bytes.starts_with(BACKUP_MAGIC) {
            return Err(not("it does not start like one"));
        }
        if bytes.len() < BACKUP_MAGIC.len() + 32 {
            return Err(not("it is truncated"));
        }
        let (content, sum) = bytes.split_at(bytes.len() - 32);
        if Sha256::digest(content).as_slice() != sum {
            return Err(not("its checksum does not match: truncated or altered"));
        }
        let payload = &content[BACKUP_MAGIC.len()..];
        // The format number comes first; check it before the rest.
        let format: u32 = bincode::deserialize(payload).map_err(|e| not(&e.to_string()))?;
        if format != BACKUP_FORMAT {
            return Err(BackupError::NewerFormat {
                path: path.to_string(),
                found: format,
            });
        }
        let body: BackupBody = bincode::deserialize(payload).map_err(|e| not(&e.to_string()))?;
        Ok(Backup { body })
    }

    pub fn read(path: &Path) -> Result<Backup, BackupError> {
        let bytes = std::fs::read(path).map_err(|source| BackupError::Io {
            what: format!("cannot read {}", path.display()),
            source,
        })?;
        Backup::from_bytes(&bytes, &path.display().to_string())
    }

    pub fn info(&self) -> BackupInfo {
        let bytes = encode_backup(&self.body).len() as u64;
        info_of(&self.body, bytes)
    }
}

/// Records written per sled batch by `restore`.
const RESTORE_BATCH: usize = 10_000;

/// Opens a store this process has just closed. sled releases its file lock
/// only when its background I/O threads let go of the file, shortly after
/// the last handle is dropped: "locked" is retried for up to five seconds.
pub(super) fn open_after_drop(path: &Path) -> Result<Store, StoreError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut pause = std::time::Duration::from_millis(5);
    loop {
        match Store::open(path) {
            Err(StoreError::Locked { .. }) if std::time::Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(std::time::Duration::from_millis(200));
            }
            other => return other,
        }
    }
}

/// What a restore did.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
    pub store: PathBuf,
    pub backup: BackupInfo,
    /// The store that was there before held data (and was replaced).
    pub replaced: bool,
}

/// Replaces the store at `store_path` with `backup`. Refuses while another
/// process holds the store, and refuses a store holding data unless `force`.
/// The backup is written into a fresh store beside it, checked (and
/// migrated) by [`Store::open`], and only then swapped in.
pub fn restore(
    store_path: &Path,
    backup: &Backup,
    force: bool,
) -> Result<RestoreReport, BackupError> {
    let body = &backup.body;
    if body.schema > SCHEMA_VERSION {
        return Err(BackupError::NewerSchema {
            path: store_path.display().to_string(),
            found: body.schema,
        });
    }
    let io = |what: String| move |source| BackupError::Io { what, source };
    // Holding the old store's lock keeps a daemon from starting meanwhile.
    let old = if store_path.exists() {
        // Without the schema check: the store is replaced.
        let db = super::open_db(store_path)?;
        let count = |name: &str| -> Result<u64, StoreError> {
            Ok(if db.tree_names().iter().any(|n| n == name.as_bytes()) {
                db.open_tree(name)?.len() as u64
            } else {
                0
            })
        };
        let mut holds_data = false;
        for name in db.tree_names() {
            if name == b"meta" || name.starts_with(b"__sled") {
                continue;
            }
            if !db.open_tree(&name).map_err(StoreError::from)?.is_empty() {
                holds_data = true;
            }
        }
        if holds_data && !force {
            return Err(BackupError::NotEmpty {
                path: store_path.display().to_string(),
                invitations: count("invitations")?,
                answers: count("responses")?,
            });
        }
        Some((db, holds_data))
    } else {
        None
    };
    let fresh = sibling(store_path, "restoring");
    if fresh.exists() {
        std::fs::remove_dir_all(&fresh)
            .map_err(io(format!("cannot remove {}", fresh.display())))?;
    }
    if let Some(parent) = store_path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(io(format!("cannot create {}", parent.display())))?;
    }
    {
        let db = super::open_db(&fresh)?;
        let mut max_id: Option<u64> = None;
        for t in &body.trees {
            let tree = db.open_tree(&t.name).map_err(StoreError::from)?;
            // In batches of a bounded size: one batch of a million entries
            // took sled minutes (the fresh store is swapped in only once
            // complete, so nothing needs them to be one batch).
            for chunk in t.entries.chunks(RESTORE_BATCH) {
                let mut batch = sled::Batch::default();
                for (k, v) in chunk {
                    batch.insert(k.as_slice(), v.as_slice());
                }
                tree.apply_batch(batch).map_err(StoreError::from)?;
            }
            // Outbox items and invitations of schema 1 and 2 are keyed by
            // sled's id counter, which a fresh store starts at 0: move it
            // past every such id in use (not to a keyed id: those are
            // derived from an address, `keyed_id`, and far above).
            if t.name == b"invitations" || t.name == b"outbox" {
                for (k, _) in &t.entries {
                    if k.len() == 8 {
                        let id = u64_from(k, "invitations or outbox", "an id")?;
                        if id < super::KEYED_ID_BASE {
                            max_id = Some(max_id.map_or(id, |m| m.max(id)));
                        }
                    }
                }
            }
        }
        if let Some(max) = max_id {
            while db.generate_id().map_err(StoreError::from)? <= max {}
        }
        // The backup's own schema, whatever its `meta` dump holds: the
        // records are of that schema, and [`Store::open`] migrates them.
        db.open_tree("meta")
            .map_err(StoreError::from)?
            .insert("schema", &[body.schema])
            .map_err(StoreError::from)?;
        db.flush().map_err(StoreError::from)?;
    }
    // The schema check and any migration, on the fresh store. sled's I/O
    // threads may hold the file lock a moment after the handle above is
    // dropped: this process is the only one that knows the fresh store.
    drop(open_after_drop(&fresh)?);
    let replaced = old.as_ref().is_some_and(|(_, held)| *held);
    match old {
        Some((db, _)) => {
            let aside = sibling(store_path, "replaced");
            if aside.exists() {
                std::fs::remove_dir_all(&aside)
                    .map_err(io(format!("cannot remove {}", aside.display())))?;
            }
            std::fs::rename(store_path, &aside)
                .map_err(io(format!("cannot move {} aside", store_path.display())))?;
            std::fs::rename(&fresh, store_path).map_err(io(format!(
                "cannot move the restored store to {}",
                store_path.display()
            )))?;
            drop(db);
            std::fs::remove_dir_all(&aside)
                .map_err(io(format!("cannot remove {}", aside.display())))?;
        }
        None => std::fs::rename(&fresh, store_path).map_err(io(format!(
            "cannot move the restored store to {}",
            store_path.display()
        )))?,
    }
    Ok(RestoreReport {
        store: store_path.to_path_buf(),
        backup: backup.info(),
        replaced,
    })
}

/// `store` → `store.<suffix>` in the same folder.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{suffix}"));
    path.with_file_name(name)
}

/// Writes `bytes` to `path` atomically and privately: a temporary file in the
/// same folder (mode 0600), fsynced, renamed over `path`, folder fsynced.
pub fn write_private_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(path.file_name().unwrap_or_default());
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::erase::tests::{all, invite, unit};
    use crate::store::CommitView;

    type Dump = Vec<(Vec<u8>, Vec<(Vec<u8>, Vec<u8>)>)>;

    fn dump(store: &Store) -> Dump {
        let mut names = store.db.tree_names();
        names.sort();
        names
            .into_iter()
            .filter(|n| !n.starts_with(b"__sled"))
            .map(|n| {
                let t = store.db.open_tree(&n).unwrap();
                let e = t
                    .iter()
                    .map(|kv| kv.unwrap())
                    .map(|(k, v)| (k.to_vec(), v.to_vec()))
                    .collect();
                (n.to_vec(), e)
            })
            .filter(|(_, e): &(Vec<u8>, Vec<_>)| !e.is_empty())
            .collect()
    }

    /// [`restore`] of a store this process dropped a moment ago: sled's
    /// background threads let go of its lock a little later (as
    /// [`open_after_drop`] waits for it).
    fn restore_after_drop(
        path: &Path,
        backup: &Backup,
        force: bool,
    ) -> Result<RestoreReport, BackupError> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            match restore(path, backup, force) {
                Err(BackupError::Store(StoreError::Locked { .. }))
                    if std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => return other,
            }
        }
    }

    #[test]
    fn backup_and_restore_round_trip_and_ids_move_on() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("a")).unwrap();
        invite(&store, &["a@x.dk", "b@x.dk"], 1);
        store.bump_counter("Sjælland", "triggers").unwrap();
        let (bytes, info) = store.backup().unwrap();
        assert_eq!(info.records.get("invitations"), Some(&2));
        assert_eq!(info.schema, SCHEMA_VERSION);
        let backup = Backup::from_bytes(&bytes, "b").unwrap();
        assert_eq!(backup.info(), info);

        let target = dir.path().join("b");
        let report = restore(&target, &backup, false).unwrap();
        assert!(!report.replaced);
        let restored = open_after_drop(&target).unwrap();
        assert_eq!(dump(&restored), dump(&store));
        // A new invitation is keyed by its address; sled's counter (outbox
        // items, and an invitation whose keyed id is taken) moves past every
        // id the backup holds, so no queued item's id is used again.
        let queued = |s: &Store| -> Vec<(u64, Vec<String>)> {
            let far = chrono::Utc::now() + chrono::Duration::days(1);
            let (due, _) = s.outbox_due(far, 10).unwrap();
            due.into_iter().map(|i| (i.id, i.to)).collect()
        };
        let restored_items = queued(&restored);
        assert_eq!(restored_items.len(), 2);
        invite(&restored, &["c@x.dk"], 2);
        let new = all(&restored)
            .into_iter()
            .find(|i| i.message_id == "canvass.c@x.dk")
            .unwrap();
        assert_eq!(new.id, crate::store::keyed_id(&new.address_key));
        let (c_item, _) = queued(&restored)
            .into_iter()
            .find(|(_, to)| to == &["c@x.dk"])
            .unwrap();
        assert!(
            restored_items.iter().all(|(id, _)| *id < c_item),
            "{restored_items:?} then {c_item}"
        );
        assert_eq!(restored.invitation_count(), 3);
        drop(restored);

        // A store holding data is not overwritten without force.
        match restore_after_drop(&target, &backup, false) {
            Err(BackupError::NotEmpty { invitations: 3, .. }) => {}
            other => panic!("{other:?}"),
        }
        let report = restore_after_drop(&target, &backup, true).unwrap();
        assert!(report.replaced);
        assert_eq!(open_after_drop(&target).unwrap().invitation_count(), 2);
        assert!(!dir.path().join("b.restoring").exists());
        assert!(!dir.path().join("b.replaced").exists());

        // Held by another process (here: this one): refused.
        let held = open_after_drop(&target).unwrap();
        assert!(matches!(
            restore(&target, &backup, true),
            Err(BackupError::Store(StoreError::Locked { .. }))
        ));
        drop(held);
    }

    /// A backup of a schema-1 store (what the schema-1 canvass wrote: its
    /// trees as they are, marked schema 1) restores into a store of the
    /// current schema that reads the same; the backup's schema is the one
    /// its records are read by, even when its `meta` dump lacks the marker.
    #[tokio::test]
    async fn a_schema_1_backup_restores_migrated() {
        use crate::store::v1::tests::{open_db_again, reopen_as_v1, rich_store, seen};
        let dir = tempfile::tempdir().unwrap();
        let before = rich_store(&dir.path().join("a")).await;
        reopen_as_v1(&dir.path().join("a"), 1);
        let db = open_db_again(&dir.path().join("a"));
        let mut trees = Vec::new();
        let mut names = db.tree_names();
        names.sort();
        for n in names {
            let entries: Vec<(Vec<u8>, Vec<u8>)> = db
                .open_tree(&n)
                .unwrap()
                .iter()
                .map(|kv| kv.unwrap())
                .map(|(k, v)| (k.to_vec(), v.to_vec()))
                .collect();
            if !entries.is_empty() {
                trees.push(TreeDump {
                    name: n.to_vec(),
                    entries,
                });
            }
        }
        drop(db);
        let mut body = BackupBody {
            format: BACKUP_FORMAT,
            schema: 1,
            taken_at: Utc::now(),
            trees,
        };
        let backup = Backup::from_bytes(&encode_backup(&body), "v1").unwrap();
        assert_eq!(backup.info().schema, 1);
        restore(&dir.path().join("b"), &backup, false).unwrap();
        let restored = open_after_drop(&dir.path().join("b")).unwrap();
        assert_eq!(seen(&restored), before);
        drop(restored);
        // Without the marker in its `meta` dump: still read as schema 1.
        for t in &mut body.trees {
            if t.name == b"meta" {
                t.entries.retain(|(k, _)| k != b"schema");
            }
        }
        let backup = Backup::from_bytes(&encode_backup(&body), "v1").unwrap();
        restore(&dir.path().join("c"), &backup, false).unwrap();
        let restored = open_after_drop(&dir.path().join("c")).unwrap();
        assert_eq!(seen(&restored), before);
        // A store without a marker is not backed up under a guessed one.
        restored
            .db
            .open_tree("meta")
            .unwrap()
            .remove("schema")
            .unwrap();
        let err = restored.backup().unwrap_err().to_string();
        assert!(err.contains("schema marker"), "{err}");
    }

    #[test]
    fn damaged_or_foreign_backups_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        invite(&store, &["a@x.dk"], 1);
        let (bytes, _) = store.backup().unwrap();
        let mut cut = bytes.clone();
        cut.truncate(bytes.len() - 10);
        assert!(matches!(
            Backup::from_bytes(&cut, "f"),
            Err(BackupError::NotABackup { .. })
        ));
        let mut flipped = bytes.clone();
        let mid = bytes.len() / 2;
        flipped[mid] ^= 1;
        let err = Backup::from_bytes(&flipped, "f").unwrap_err().to_string();
        assert!(err.contains("checksum"), "{err}");
        assert!(Backup::from_bytes(b"PK\x03\x04", "f").is_err());
        // A newer store schema inside a good file.
        let mut body = Backup::from_bytes(&bytes, "f").unwrap().body;
        body.schema = SCHEMA_VERSION + 1;
        let newer = Backup::from_bytes(&encode_backup(&body), "f").unwrap();
        let err = restore(&dir.path().join("x"), &newer, false).unwrap_err();
        assert!(matches!(err, BackupError::NewerSchema { .. }), "{err}");
        // A newer file format.
        body.format = BACKUP_FORMAT + 1;
        let err = Backup::from_bytes(&encode_backup(&body), "f").unwrap_err();
        assert!(matches!(err, BackupError::NewerFormat { .. }), "{err}");
    }

    /// Backups taken while transactions run are consistent: every invitation
    /// in a snapshot has its dedup entry, its token, its outbox item and its
    /// counter, and nothing else.
    #[test]
    fn snapshots_under_concurrent_writes_are_consistent() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (store, stop) = (store.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut n: u32 = 0;
                while !stop.load(Ordering::Acquire) && n < 2000 {
                    let a = format!("p{n}@x.dk");
                    let seen = [n as u8; 32];
                    let mut u = unit(&[a.as_str()], 0, "Sjælland");
                    u.seen_key = Some({
                        let mut s = seen;
                        s[..4].copy_from_slice(&n.to_be_bytes());
                        s
                    });
                    store.commit_ingest(&u, &|_: &CommitView| None).unwrap();
                    n += 1;
                    if n.is_multiple_of(7) {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            })
        };
        let mut checked = 0;
        for _ in 0..10 {
            let (bytes, _) = store.backup().unwrap();
            let backup = Backup::from_bytes(&bytes, "b").unwrap();
            let tree = |name: &str| -> Vec<(Vec<u8>, Vec<u8>)> {
                backup
                    .body
                    .trees
                    .iter()
                    .find(|t| t.name == name.as_bytes())
                    .map(|t| t.entries.clone())
                    .unwrap_or_default()
            };
            let invs = tree("invitations");
            // Invitations keyed by their address (schema 3): no recipients
            // entries; links carry their invitation's id: no token entries.
            assert_eq!(tree("recipients").len(), 0);
            assert_eq!(tree("tokens").len(), 0);
            assert_eq!(tree("outbox").len(), invs.len());
            assert_eq!(tree("msgids").len(), invs.len());
            let invited = tree("counters")
                .iter()
                .find(|(k, _)| k.ends_with(b"\0invited"))
                .map(|(_, v)| u64_from(v, "counters", "invited").unwrap())
                .unwrap_or(0);
            assert_eq!(invited, invs.len() as u64);
            checked += 1;
        }
        stop.store(true, Ordering::Release);
        writer.join().unwrap();
        assert_eq!(checked, 10);
    }

    #[test]
    fn private_files_are_written_atomically_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("backup.bin");
        write_private_file(&p, b"one").unwrap();
        write_private_file(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary file left");
    }
}
