//! Privacy operations on the store, and its schema's life cycle:
//!
//! - [`Store::purge_addresses`]: retention. Every invitation's plain address
//!   and token nonce are erased; its region, dates, flags, token hash and the
//!   HMAC of the address stay (so dedup still works). Unsent invitations and
//!   reminders, which carry the address, are dropped from the outbox. One
//!   transaction per invitation; idempotent. The rules are in
//!   `src/retention.rs`.
//! - [`Store::forget`]: one person (GDPR art. 17): their invitation's address
//!   and nonce, its token entry (the link stops working) and the mail queued
//!   to them go, in one transaction. The HMAC of the address is *kept*, or
//!   added if they were never invited: it is what stops canvass from inviting
//!   them again, which is what someone who asks to be forgotten wants. It is a
//!   keyed hash and does not give the address back without the secret key.
//! - [`Store::backup`] / [`restore`]: a consistent snapshot of every tree,
//!   taken while the daemon runs, in a checksummed file; restored into a fresh
//!   store that then replaces the old one.
//! - [`migrate`]: called by [`Store::open`] for a store of an older schema;
//!   runs the steps in [`MIGRATIONS`] one schema at a time, or refuses.
//!
//! Erased values may survive in sled's log segments until sled reclaims them;
//! a backup and restore writes a store that holds none of them.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sled::transaction::ConflictableTransactionError;
use sled::Transactional;

use super::{
    bump, counter, counter_key, decode, encode, tx_decode, u64_from, Delivery, Invitation,
    OutboxItem, Purpose, Store, StoreError, SCHEMA_VERSION,
};
use crate::address::{Address, AddressKey};
use crate::retention::{self, ForgetReport, ForgottenInvitation, PurgeReport};

// ---------------------------------------------------------------------------
// Schema migrations.
// ---------------------------------------------------------------------------

/// The oldest schema this canvass migrates from. While no migration exists it
/// equals [`SCHEMA_VERSION`]: a store marked older is refused, never guessed at.
pub const OLDEST_MIGRATABLE: u8 = 1;

/// One step: turns a store of schema `n` into one of schema `n + 1` (rewrites
/// records, adds or renames trees). It runs before any tree is used, and must
/// be idempotent: a crash before the new marker is flushed runs it again.
pub type Migration = fn(&sled::Db) -> Result<(), StoreError>;

/// `MIGRATIONS[i]` migrates schema `OLDEST_MIGRATABLE + i` to the next one.
/// To change the layout: bump [`SCHEMA_VERSION`], append the step here.
pub const MIGRATIONS: &[Migration] = &[];

const _: () = assert!(
    MIGRATIONS.len() == (SCHEMA_VERSION - OLDEST_MIGRATABLE) as usize,
    "one migration per schema version between OLDEST_MIGRATABLE and SCHEMA_VERSION"
);

/// Brings a store marked with schema `found` (older than [`SCHEMA_VERSION`])
/// up to date, or refuses with the versions named.
pub(super) fn migrate(
    db: &sled::Db,
    meta: &sled::Tree,
    found: u8,
    path: &str,
) -> Result<(), StoreError> {
    run_migrations(
        db,
        meta,
        found,
        SCHEMA_VERSION,
        OLDEST_MIGRATABLE,
        MIGRATIONS,
        path,
    )
}

fn run_migrations(
    db: &sled::Db,
    meta: &sled::Tree,
    found: u8,
    target: u8,
    oldest: u8,
    steps: &[Migration],
    path: &str,
) -> Result<(), StoreError> {
    if found < oldest || usize::from(target.saturating_sub(oldest)) != steps.len() {
        return Err(StoreError::TooOld {
            path: path.to_string(),
            found,
            reads: target,
            oldest,
        });
    }
    for from in found..target {
        let step = steps[usize::from(from - oldest)];
        step(db).map_err(|e| StoreError::Migration {
            path: path.to_string(),
            from,
            to: from + 1,
            error: e.to_string(),
        })?;
        meta.insert("schema", &[from + 1])?;
        db.flush()?;
        tracing::info!(
            store = path,
            from,
            to = from + 1,
            "store migrated to a newer schema"
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Retention and erasure.
// ---------------------------------------------------------------------------

/// The id under which `forget` records the HMAC of someone never invited
/// (no invitation has it: ids come from sled's counter).
pub const FORGOTTEN_ONLY: u64 = u64::MAX;

type TxError = ConflictableTransactionError<StoreError>;

/// Mail queued to one person (outbox id, purpose), and the purposes of other
/// queued mail that names them.
pub(super) type QueuedFor = (Vec<(u64, Purpose)>, Vec<String>);

impl Store {
    /// Erases the plain address and token nonce of every invitation that
    /// still holds them, and drops their unsent invitations and reminders from
    /// the outbox (an invitation dropped unsent is recorded as failed). With
    /// `dry_run`, only counts. Idempotent; one transaction per invitation.
    /// The caller flushes.
    pub fn purge_addresses(&self, dry_run: bool) -> Result<PurgeReport, StoreError> {
        let queued = self.queued_by_invitation()?;
        let mut report = PurgeReport {
            dry_run,
            answers: self.responses.len() as u64,
            ..Default::default()
        };
        let holding: Vec<Invitation> = self
            .invitations()
            .filter_map(|i| match i {
                Ok(i) if retention::holds_personal_data(&i) => Some(Ok(i)),
                Ok(_) => {
                    report.already_erased += 1;
                    None
                }
                Err(e) => Some(Err(e)),
            })
            .collect::<Result<_, _>>()?;
        for inv in holding {
            let items = queued.get(&inv.id).map(Vec::as_slice).unwrap_or(&[]);
            let (erased, dropped_inv, dropped_rem) = if dry_run {
                let inv_items = items
                    .iter()
                    .filter(|(_, p)| matches!(p, Purpose::Invitation { .. }))
                    .count() as u64;
                (true, inv_items, items.len() as u64 - inv_items)
            } else {
                self.erase_invitation(inv.id, items, retention::DROPPED_BY_RETENTION, false)?
                    .map(|e| (e.erased, e.dropped_invitations, e.dropped_reminders))
                    .unwrap_or((false, 0, 0))
            };
            if erased {
                report.erased += 1;
                *report.by_region.entry(inv.region.clone()).or_insert(0) += 1;
            }
            report.dropped_invitations += dropped_inv;
            report.dropped_reminders += dropped_rem;
        }
        Ok(report)
    }

    /// The invitation held under an address key, if any (not a `forget`
    /// marker of someone never invited).
    pub(super) fn invitation_id_of(&self, key: &AddressKey) -> Result<Option<u64>, StoreError> {
        Ok(self
            .recipients
            .get(key.0)?
            .map(|v| u64_from(&v))
            .filter(|id| *id != FORGOTTEN_ONLY))
    }

    /// Mail queued to one person, by invitation and by recipient (belt and
    /// braces): (outbox id, purpose); and the purposes of other queued mail
    /// that names them (to staff: a confirmation, a forwarded reply).
    pub(super) fn queued_for(
        &self,
        id: Option<u64>,
        address: &Address,
    ) -> Result<QueuedFor, StoreError> {
        let mut items = Vec::new();
        let mut mentioned = Vec::new();
        for kv in self.outbox.iter() {
            let (_, v) = kv?;
            let item: OutboxItem = decode(&v, "outbox item")?;
            let to_them = item
                .to
                .iter()
                .any(|t| crate::address::parse(t).is_ok_and(|a| &a == address));
            let carried = retention::carried_invitation(&item);
            if carried.is_some() && (carried == id || to_them) {
                items.push((item.id, item.purpose));
            } else if retention::mentions(&item.raw, address.as_str()) {
                mentioned.push(item.purpose.name().to_string());
            }
        }
        Ok((items, mentioned))
    }

    /// Erases what is held about one person: the address and nonce on their
    /// invitation, its token entry, the invitation and reminders queued to
    /// them. Keeps (or adds) the HMAC entry, so they are never invited again.
    /// The caller flushes.
    pub fn forget(&self, key: &AddressKey, address: &Address) -> Result<ForgetReport, StoreError> {
        let mut report = ForgetReport {
            address: address.to_string(),
            ..Default::default()
        };
        let id = self.invitation_id_of(key)?;
        let (items, mentioned_in) = self.queued_for(id, address)?;
        report.mentioned_in = mentioned_in;
        match id {
            Some(id) => {
                if let Some(e) =
                    self.erase_invitation(id, &items, retention::DROPPED_BY_FORGET, true)?
                {
                    report.invitation = Some(e.invitation);
                    report.dropped = e.dropped;
                }
                report.key_was_held = true;
            }
            None => {
                // Never invited: queued mail to them can only be stray; drop it,
                // and record the HMAC so that nobody invites them later.
                let trees = (&self.outbox, &self.recipients);
                let (dropped, was_held) = trees
                    .transaction(|(out, rcp)| {
                        let mut dropped = Vec::new();
                        for (oid, _) in &items {
                            if let Some(v) = out.remove(&oid.to_be_bytes())? {
                                let item: OutboxItem = tx_decode(&v, "outbox item")?;
                                dropped.push((item.purpose.name().to_string(), item.message_id));
                            }
                        }
                        let was_held = rcp.get(key.0)?.is_some();
                        if !was_held {
                            rcp.insert(&key.0, &FORGOTTEN_ONLY.to_be_bytes())?;
                        }
                        Ok::<_, TxError>((dropped, was_held))
                    })
                    .map_err(StoreError::from)?;
                report.dropped = dropped;
                report.key_was_held = was_held;
            }
        }
        Ok(report)
    }

    /// Outbox items that carry an invitee's address, by invitation.
    fn queued_by_invitation(&self) -> Result<HashMap<u64, Vec<(u64, Purpose)>>, StoreError> {
        let mut out: HashMap<u64, Vec<(u64, Purpose)>> = HashMap::new();
        for kv in self.outbox.iter() {
            let (_, v) = kv?;
            let item: OutboxItem = decode(&v, "outbox item")?;
            if let Some(inv) = retention::carried_invitation(&item) {
                out.entry(inv).or_default().push((item.id, item.purpose));
            }
        }
        Ok(out)
    }

    /// One invitation's erasure, with its queued mail, as one transaction.
    /// `None`: the invitation does not exist.
    fn erase_invitation(
        &self,
        id: u64,
        items: &[(u64, Purpose)],
        dropped_reason: &str,
        disable_link: bool,
    ) -> Result<Option<Erasure>, StoreError> {
        let trees = (
            &self.invitations,
            &self.outbox,
            &self.counters,
            &self.tokens,
        );
        trees
            .transaction(|(inv, out, cnt, tok)| {
                let key = id.to_be_bytes();
                let Some(v) = inv.get(key)? else {
                    return Ok(None);
                };
                let mut invitation: Invitation = tx_decode(&v, "invitation")?;
                let had_address = invitation.address.is_some();
                let had_nonce = invitation.token_nonce.is_some();
                let mut changed = retention::erase(&mut invitation);
                let mut e = Erasure {
                    erased: changed,
                    ..Default::default()
                };
                for (oid, _) in items {
                    let Some(v) = out.remove(&oid.to_be_bytes())? else {
                        continue; // sent meanwhile
                    };
                    let item: OutboxItem = tx_decode(&v, "outbox item")?;
                    match item.purpose {
                        Purpose::Invitation { .. } => {
                            e.dropped_invitations += 1;
                            if invitation.delivery == Delivery::Queued {
                                invitation.delivery = Delivery::Failed {
                                    at: Utc::now(),
                                    reason: dropped_reason.to_string(),
                                };
                                bump(cnt, &counter_key(&invitation.region, counter::FAILED), 1)?;
                                changed = true;
                            }
                        }
                        _ => e.dropped_reminders += 1,
                    }
                    e.dropped
                        .push((item.purpose.name().to_string(), item.message_id));
                }
                let mut link_disabled = false;
                if disable_link {
                    if let Some(owner) = tok.get(invitation.token_hash.0)? {
                        if u64_from(&owner) == id {
                            // A tombstone, so the link shows "forgotten"
                            // rather than "unknown" (and is not rate-limited).
                            tok.insert(&invitation.token_hash.0, &super::FORGOTTEN.to_be_bytes())?;
                            link_disabled = true;
                        }
                    }
                }
                if changed {
                    inv.insert(&key, encode(&invitation))?;
                }
                e.invitation = ForgottenInvitation {
                    id,
                    region: invitation.region.clone(),
                    created_at: invitation.created_at,
                    erased_address: had_address,
                    erased_nonce: had_nonce,
                    link_disabled,
                };
                Ok::<_, TxError>(Some(e))
            })
            .map_err(StoreError::from)
    }
}

#[derive(Debug)]
struct Erasure {
    erased: bool,
    dropped_invitations: u64,
    dropped_reminders: u64,
    dropped: Vec<(String, String)>,
    invitation: ForgottenInvitation,
}

impl Default for Erasure {
    fn default() -> Self {
        Erasure {
            erased: false,
            dropped_invitations: 0,
            dropped_reminders: 0,
            dropped: Vec::new(),
            invitation: ForgottenInvitation {
                id: 0,
                region: String::new(),
                created_at: DateTime::<Utc>::MIN_UTC,
                erased_address: false,
                erased_nonce: false,
                link_disabled: false,
            },
        }
    }
}

// ---------------------------------------------------------------------------
// Backup and restore.
// ---------------------------------------------------------------------------

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
                let schema = trees
                    .iter()
                    .find(|t| t.name == b"meta")
                    .and_then(|t| t.entries.iter().find(|(k, _)| k == b"schema"))
                    .and_then(|(_, v)| v.first().copied())
                    .unwrap_or(SCHEMA_VERSION);
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
    out.extend(bincode::serialize(body).unwrap_or_default());
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
fn open_after_drop(path: &Path) -> Result<Store, StoreError> {
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
            // Invitations and outbox items are keyed by sled's id counter,
            // which a fresh store starts at 0: move it past every id in use.
            if t.name == b"invitations" || t.name == b"outbox" {
                for (k, _) in &t.entries {
                    if k.len() == 8 {
                        let id = u64_from(k);
                        max_id = Some(max_id.map_or(id, |m| m.max(id)));
                    }
                }
            }
        }
        if let Some(max) = max_id {
            while db.generate_id().map_err(StoreError::from)? <= max {}
        }
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
pub(super) mod tests {
    use super::*;
    use crate::address::{parse, HmacKey};
    use crate::store::{CommitView, Committed, IngestUnit, InviteOutcome, NewInvitation, Outgoing};
    use crate::token::{Token, TokenNonce};

    pub(in crate::store) fn key() -> HmacKey {
        HmacKey::from_bytes(&[9; 32])
    }

    fn unit(addrs: &[&str], seen: u8, region: &str) -> IngestUnit {
        let k = key();
        IngestUnit {
            seen_key: Some([seen; 32]),
            region: region.into(),
            invitations: addrs
                .iter()
                .map(|a| {
                    let address = parse(a).unwrap();
                    NewInvitation {
                        address_key: k.key_of(&address),
                        token_hash: Token::generate().hash(),
                        token_nonce: Some(TokenNonce::generate()),
                        outgoing: Outgoing {
                            from: "s@siri.dk".into(),
                            to: vec![address.to_string()],
                            message_id: format!("canvass.{a}"),
                            raw: format!("To: {a}\r\n\r\nbody").into_bytes(),
                            not_before: Utc::now(),
                        },
                        address,
                    }
                })
                .collect(),
            ..IngestUnit::at(Utc::now())
        }
    }

    pub(in crate::store) fn invite(store: &Store, addrs: &[&str], seen: u8) -> Committed {
        store
            .commit_ingest(&unit(addrs, seen, "Sjælland"), &|_: &CommitView| None)
            .unwrap()
    }

    fn all(store: &Store) -> Vec<Invitation> {
        store.invitations().map(|i| i.unwrap()).collect()
    }

    #[test]
    fn purge_erases_addresses_keeps_dedup_and_drops_unsent_mail() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        invite(&store, &["a@x.dk", "b@x.dk", "c@x.dk"], 1);
        // a's invitation was sent; b's and c's wait; c also has a reminder queued.
        let (due, _) = store.outbox_due(Utc::now(), 10).unwrap();
        let a = due.iter().find(|i| i.to == ["a@x.dk"]).unwrap();
        store.mark_sent(a, Utc::now()).unwrap();
        let c_id = all(&store)
            .iter()
            .find(|i| i.message_id == "canvass.c@x.dk")
            .unwrap()
            .id;
        let reminder = Outgoing {
            from: "s@siri.dk".into(),
            to: vec!["c@x.dk".into()],
            message_id: "canvass.rem".into(),
            raw: b"To: c@x.dk\r\n\r\nreminder".to_vec(),
            not_before: Utc::now(),
        };
        assert!(store
            .queue_reminder(c_id, &reminder, 1, Utc::now())
            .unwrap());
        let before: Vec<Invitation> = all(&store);

        let dry = store.purge_addresses(true).unwrap();
        assert_eq!(
            (dry.erased, dry.dropped_invitations, dry.dropped_reminders),
            (3, 2, 1)
        );
        assert_eq!(all(&store), before, "a dry run changes nothing");
        assert_eq!(store.outbox_len(), 3);

        let r = store.purge_addresses(false).unwrap();
        assert_eq!(
            (r.erased, r.dropped_invitations, r.dropped_reminders),
            (3, 2, 1)
        );
        assert_eq!(r.by_region.get("Sjælland"), Some(&3));
        assert_eq!(
            store.outbox_len(),
            0,
            "nothing left that carries an address"
        );
        for (old, new) in before.iter().zip(all(&store)) {
            assert_eq!(new.address, None);
            assert_eq!(new.token_nonce, None);
            assert_eq!(new.address_key, old.address_key);
            assert_eq!(new.token_hash, old.token_hash);
            assert_eq!(
                (new.region.as_str(), new.created_at),
                (old.region.as_str(), old.created_at)
            );
        }
        let after = all(&store);
        assert!(matches!(after[0].delivery, Delivery::Sent { .. }));
        assert!(
            matches!(&after[1].delivery, Delivery::Failed { reason, .. } if reason == retention::DROPPED_BY_RETENTION),
            "an invitation dropped unsent is recorded as failed"
        );
        let counters = store.counters().unwrap();
        let get = |n: &str| counters.iter().find(|(_, k, _)| k == n).map(|x| x.2);
        assert_eq!(get("failed"), Some(2), "so that nothing shows as waiting");
        // The link still finds its invitation (answers may come until answers_until).
        assert!(store
            .invitation_by_token(&after[1].token_hash)
            .unwrap()
            .is_some());

        // Idempotent.
        let again = store.purge_addresses(false).unwrap();
        assert_eq!((again.erased, again.already_erased), (0, 3));
        assert_eq!(all(&store), after);

        // Dedup still works on the HMAC: a CC of a purged contact is "already invited".
        match invite(&store, &["B@X.dk", "d@x.dk"], 2) {
            Committed::Done(o) => {
                assert!(matches!(o[0], InviteOutcome::AlreadyInvited(_)));
                assert!(matches!(o[1], InviteOutcome::Invited(_)));
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn purge_leaves_answers_untouched() {
        use crate::answer::{Answers, Value};
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        invite(&store, &["a@x.dk"], 1);
        let inv = &all(&store)[0];
        // The token hash is what the form looks up; make one whose hash we know.
        let token = Token::generate();
        store
            .tokens
            .insert(token.hash().0, &inv.id.to_be_bytes())
            .unwrap();
        let mut answers = Answers::new();
        answers.insert(
            "kommentarer".into(),
            Value::Text {
                text: "æøå".into()
            },
        );
        let response = crate::store::StoredResponse {
            survey_id: "s".into(),
            survey_version: 1,
            region: None,
            day: chrono::NaiveDate::from_ymd_opt(2024, 8, 20).unwrap(),
            answers,
        };
        store
            .submit_response(&token.hash(), response, true)
            .await
            .unwrap();
        let before: Vec<_> = store.responses().map(|r| r.unwrap()).collect();
        let r = store.purge_addresses(false).unwrap();
        assert_eq!(r.answers, 1);
        let after: Vec<_> = store.responses().map(|r| r.unwrap()).collect();
        assert_eq!(before, after);
        assert!(all(&store)[0].answered, "flags stay");
    }

    #[test]
    fn forget_erases_one_person_and_keeps_their_hmac() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        invite(&store, &["a@x.dk", "b@x.dk"], 1);
        // A confirmation to the consultant names a@x.dk: kept, reported.
        store
            .enqueue(
                Purpose::Confirmation,
                &Outgoing {
                    from: "s@siri.dk".into(),
                    to: vec!["anne@siri.dk".into()],
                    message_id: "canvass.conf".into(),
                    raw: b"Subject: Re\r\n\r\ninvited: A@x.dk\r\n".to_vec(),
                    not_before: Utc::now(),
                },
            )
            .unwrap();
        let a = parse("a@x.dk").unwrap();
        let a_inv = store
            .invitation_by_address(&key().key_of(&a))
            .unwrap()
            .unwrap();
        let r = store.forget(&key().key_of(&a), &a).unwrap();
        let i = r.invitation.as_ref().expect("their invitation");
        assert_eq!(i.id, a_inv.id);
        assert!(i.erased_address && i.erased_nonce && i.link_disabled);
        assert_eq!(r.dropped.len(), 1);
        assert_eq!(r.dropped[0].0, "invitation");
        assert_eq!(r.mentioned_in, vec!["confirmation".to_string()]);
        assert!(r.key_was_held);
        let after = store.invitation(a_inv.id).unwrap().unwrap();
        assert_eq!((after.address.as_ref(), after.token_nonce), (None, None));
        assert!(
            store
                .invitation_by_token(&a_inv.token_hash)
                .unwrap()
                .is_none(),
            "the link is dead"
        );
        // b is untouched; b's invitation still queued.
        let b = parse("b@x.dk").unwrap();
        assert!(store
            .invitation_by_address(&key().key_of(&b))
            .unwrap()
            .unwrap()
            .address
            .is_some());
        assert_eq!(store.outbox_len(), 2);
        // Never invited again.
        match invite(&store, &["a@x.dk"], 2) {
            Committed::Done(o) => assert!(matches!(o[0], InviteOutcome::AlreadyInvited(_))),
            other => panic!("{other:?}"),
        }
        // Forgetting again: nothing left, says so.
        let again = store.forget(&key().key_of(&a), &a).unwrap();
        let i = again.invitation.unwrap();
        assert!(!i.erased_address && !i.erased_nonce && !i.link_disabled);
        assert!(again.dropped.is_empty());
    }

    #[test]
    fn forgetting_someone_never_invited_keeps_them_from_being_invited() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let z = parse("z@x.dk").unwrap();
        let r = store.forget(&key().key_of(&z), &z).unwrap();
        assert!(r.invitation.is_none());
        assert!(!r.key_was_held, "added now");
        assert!(store
            .invitation_by_address(&key().key_of(&z))
            .unwrap()
            .is_none());
        match invite(&store, &["z@x.dk"], 1) {
            Committed::Done(o) => assert!(matches!(o[0], InviteOutcome::AlreadyInvited(_))),
            other => panic!("{other:?}"),
        }
        assert_eq!(store.invitation_count(), 0);
        assert!(store.forget(&key().key_of(&z), &z).unwrap().key_was_held);
    }

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
        // New invitations in the restored store never reuse an id.
        let ids: Vec<u64> = all(&restored).iter().map(|i| i.id).collect();
        invite(&restored, &["c@x.dk"], 2);
        let new = all(&restored)
            .into_iter()
            .find(|i| i.message_id == "canvass.c@x.dk")
            .unwrap();
        assert!(ids.iter().all(|i| *i < new.id), "{ids:?} then {}", new.id);
        assert_eq!(restored.invitation_count(), 3);
        drop(restored);

        // A store holding data is not overwritten without force.
        match restore(&target, &backup, false) {
            Err(BackupError::NotEmpty { invitations: 3, .. }) => {}
            other => panic!("{other:?}"),
        }
        let report = restore(&target, &backup, true).unwrap();
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
            assert_eq!(tree("recipients").len(), invs.len());
            assert_eq!(tree("tokens").len(), invs.len());
            assert_eq!(tree("outbox").len(), invs.len());
            assert_eq!(tree("msgids").len(), invs.len());
            let invited = tree("counters")
                .iter()
                .find(|(k, _)| k.ends_with(b"\0invited"))
                .map(|(_, v)| u64_from(v))
                .unwrap_or(0);
            assert_eq!(invited, invs.len() as u64);
            checked += 1;
        }
        stop.store(true, Ordering::Release);
        writer.join().unwrap();
        assert_eq!(checked, 10);
    }

    fn raw_store_with_schema(path: &Path, schema: u8) {
        let db = sled::open(path).unwrap();
        db.open_tree("meta")
            .unwrap()
            .insert("schema", &[schema])
            .unwrap();
        db.flush().unwrap();
    }

    #[test]
    fn an_older_schema_is_refused_naming_the_versions() {
        let dir = tempfile::tempdir().unwrap();
        raw_store_with_schema(dir.path(), 0);
        let err = Store::open(dir.path()).err().expect("refused");
        assert!(matches!(err, StoreError::TooOld { found: 0, .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains("schema 0"), "{text}");
        assert!(text.contains(&format!("schema {SCHEMA_VERSION}")), "{text}");
    }

    #[test]
    fn the_current_schema_opens_as_is() {
        let dir = tempfile::tempdir().unwrap();
        raw_store_with_schema(dir.path(), SCHEMA_VERSION);
        Store::open(dir.path()).unwrap();
    }

    fn step_1_to_2(db: &sled::Db) -> Result<(), StoreError> {
        db.open_tree("steps")?.insert("1to2", b"done")?;
        Ok(())
    }

    fn step_2_to_3(db: &sled::Db) -> Result<(), StoreError> {
        let steps = db.open_tree("steps")?;
        if steps.get("1to2")?.is_none() {
            return Err(StoreError::Corrupt {
                what: "2→3 before 1→2".into(),
            });
        }
        steps.insert("2to3", b"done")?;
        Ok(())
    }

    fn failing_step(_: &sled::Db) -> Result<(), StoreError> {
        Err(StoreError::Corrupt {
            what: "cannot".into(),
        })
    }

    #[test]
    fn migrations_run_one_schema_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let meta = db.open_tree("meta").unwrap();
        meta.insert("schema", &[1]).unwrap();
        let steps: &[Migration] = &[step_1_to_2, step_2_to_3];
        run_migrations(&db, &meta, 1, 3, 1, steps, "s").unwrap();
        assert_eq!(meta.get("schema").unwrap().unwrap().as_ref(), &[3]);
        let done = db.open_tree("steps").unwrap();
        assert!(done.get("1to2").unwrap().is_some() && done.get("2to3").unwrap().is_some());
        // From the middle: only the missing step.
        let db2 = sled::open(dir.path().join("two")).unwrap();
        let meta2 = db2.open_tree("meta").unwrap();
        db2.open_tree("steps")
            .unwrap()
            .insert("1to2", b"done")
            .unwrap();
        run_migrations(&db2, &meta2, 2, 3, 1, steps, "s").unwrap();
        assert_eq!(meta2.get("schema").unwrap().unwrap().as_ref(), &[3]);
        // Older than the oldest step: refused, naming the versions.
        let err = run_migrations(&db2, &meta2, 0, 3, 1, steps, "s").unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::TooOld {
                    found: 0,
                    reads: 3,
                    oldest: 1,
                    ..
                }
            ),
            "{err}"
        );
        // A failing step names where it failed and leaves the old marker.
        let meta3 = db2.open_tree("meta3").unwrap();
        let err = run_migrations(&db2, &meta3, 1, 2, 1, &[failing_step], "s").unwrap_err();
        assert!(
            matches!(err, StoreError::Migration { from: 1, to: 2, .. }),
            "{err}"
        );
        assert!(meta3.get("schema").unwrap().is_none());
    }

    #[test]
    fn a_record_of_an_unknown_version_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        invite(&store, &["a@x.dk"], 1);
        let id = all(&store)[0].id;
        let mut raw = store
            .invitations
            .get(id.to_be_bytes())
            .unwrap()
            .unwrap()
            .to_vec();
        raw[0] = SCHEMA_VERSION + 7;
        store.invitations.insert(id.to_be_bytes(), raw).unwrap();
        let err = store.invitation(id).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{text}");
        assert!(
            text.contains(&format!("version {}", SCHEMA_VERSION + 7)),
            "{text}"
        );
        // Never silently skipped by the operations that must see everything.
        assert!(store.purge_addresses(true).is_err());
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
