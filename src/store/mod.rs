//! The durable state, in sled. This is the only module that knows sled: the
//! rest of canvass sees plain records and a handful of operations, each of which
//! is one transaction when it touches more than one tree.
//!
//! Trees:
//! - `invitations`: id (u64 BE) → [`Invitation`]
//! - `recipients`: HMAC of the address → invitation id (nobody invited twice)
//! - `tokens`: SHA-256 of the token → invitation id
//! - `outbox`: id (u64 BE) → [`OutboxItem`] (queued before sending, removed once accepted)
//! - `ingest`: `mark:<source>` → [`IngestMark`], `seen:<hash>` → () (nothing processed twice)
//! - `counters`: `<region>\0<name>` → u64 BE (status without scanning)
//! - `msgids`: canvass Message-ID → invitation id
//! - `jobs`: job name → [`JobState`] (scheduled jobs' last completed slot)
//! - `responses`: random 128-bit key → [`StoredResponse`] (no link to the invitation)
//! - `meta`: `schema` → the schema version of the whole store
//!
//! Every stored value starts with a one-byte record version; a store written by
//! a newer canvass is refused at open, never misread.

use std::path::Path;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use sled::transaction::{
    ConflictableTransactionError, TransactionError, TransactionalTree, UnabortableTransactionError,
};
use sled::Transactional;

use crate::address::{Address, AddressKey};
use crate::token::{TokenHash, TokenNonce};

/// The layout version this canvass writes and reads.
pub const SCHEMA_VERSION: u8 = 1;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the store at {path} is in use by another canvass process (is the daemon running? use its control socket)")]
    Locked { path: String },
    #[error("the store at {path} was written by a newer canvass (schema {found}, this one reads {SCHEMA_VERSION}); upgrade canvass")]
    TooNew { path: String, found: u8 },
    #[error("the store at {path} has schema {found}, older than this canvass can migrate (it reads schema {reads} and migrates from schema {oldest} on); open it with the canvass that wrote it, or restore a newer backup")]
    TooOld {
        path: String,
        found: u8,
        reads: u8,
        oldest: u8,
    },
    #[error("migrating the store at {path} from schema {from} to {to} failed: {error}")]
    Migration {
        path: String,
        from: u8,
        to: u8,
        error: String,
    },
    #[error("a stored record is corrupt or of an unknown version ({what})")]
    Corrupt { what: String },
    #[error("storage error: {0}")]
    Sled(#[from] sled::Error),
}

impl StoreError {
    /// Disk full, I/O errors: the operation may succeed later.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Sled(sled::Error::Io(_)))
    }
}

impl From<TransactionError<StoreError>> for StoreError {
    fn from(e: TransactionError<StoreError>) -> Self {
        match e {
            TransactionError::Abort(e) => e,
            TransactionError::Storage(e) => StoreError::Sled(e),
        }
    }
}

type TxResult<T> = Result<T, ConflictableTransactionError<StoreError>>;

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    let mut out = vec![SCHEMA_VERSION];
    // bincode cannot fail on these plain structs.
    out.extend(bincode::serialize(v).unwrap_or_default());
    out
}

fn decode<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, StoreError> {
    match bytes.split_first() {
        Some((&SCHEMA_VERSION, rest)) => {
            bincode::deserialize(rest).map_err(|e| StoreError::Corrupt {
                what: format!("{what}: {e}"),
            })
        }
        Some((v, _)) => Err(StoreError::Corrupt {
            what: format!(
                "{what}: record version {v}, this canvass reads version {SCHEMA_VERSION}"
            ),
        }),
        None => Err(StoreError::Corrupt {
            what: format!("{what}: empty record"),
        }),
    }
}

fn tx_decode<T: DeserializeOwned>(bytes: &[u8], what: &str) -> TxResult<T> {
    decode(bytes, what).map_err(ConflictableTransactionError::Abort)
}

/// Where an invitation stands with the mail server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Delivery {
    /// In the outbox, not yet accepted by the server.
    Queued,
    /// Accepted by the server.
    Sent { at: DateTime<Utc> },
    /// Refused for good by the server (5xx), with its reply.
    Failed { at: DateTime<Utc>, reason: String },
}

/// One invitation: one contact, invited once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invitation {
    pub id: u64,
    pub address_key: AddressKey,
    /// The plain address, kept only as long as reminders and bounces need it.
    pub address: Option<Address>,
    pub region: String,
    pub consultant: Address,
    pub created_at: DateTime<Utc>,
    pub token_hash: TokenHash,
    /// With the secret key, gives the token again (reminders); erased with the address.
    pub token_nonce: Option<TokenNonce>,
    /// Message-ID of the invitation mail (without angle brackets).
    pub message_id: String,
    pub delivery: Delivery,
    /// The respondent submitted the form (the answer itself is stored apart).
    pub answered: bool,
    /// The invitee replied "afmeld" / used List-Unsubscribe, or complained.
    pub opted_out: bool,
    /// A permanent bounce, or a final delivery failure ("expired"), was
    /// matched to this invitation: it was never delivered.
    pub bounced: bool,
    /// Reminders queued so far.
    pub reminders: u32,
    pub last_reminder_at: Option<DateTime<Utc>>,
}

/// A message waiting to be sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxItem {
    pub id: u64,
    pub purpose: Purpose,
    pub from: String,
    pub to: Vec<String>,
    pub message_id: String,
    /// The whole RFC 5322 message, as it will be sent.
    pub raw: Vec<u8>,
    /// Not before this instant (delay, sending hours, backoff).
    pub next_attempt: DateTime<Utc>,
    pub attempts: u32,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Purpose {
    Invitation {
        invitation_id: u64,
    },
    /// The reply to a consultant's phone-contact mail.
    Confirmation,
    /// A reminder; dropped unsent if the invitee answered, opted out or bounced meanwhile.
    Reminder {
        invitation_id: u64,
    },
    /// A manager's digest.
    Digest,
    /// A human reply forwarded to the consultant.
    Forward,
}

impl Purpose {
    /// A short word for logs, metrics and reports: "invitation",
    /// "confirmation", "reminder", "digest", "forward".
    pub fn name(&self) -> &'static str {
        match self {
            Purpose::Invitation { .. } => "invitation",
            Purpose::Confirmation => "confirmation",
            Purpose::Reminder { .. } => "reminder",
            Purpose::Digest => "digest",
            Purpose::Forward => "forward",
        }
    }
}

/// A message prepared for the outbox (before it has an id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub from: String,
    pub to: Vec<String>,
    pub message_id: String,
    pub raw: Vec<u8>,
    pub not_before: DateTime<Utc>,
}

/// How far a mail source has been read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestMark {
    pub uid_validity: u32,
    pub last_uid: u32,
}

/// An invitation to create, with its message.
#[derive(Debug, Clone)]
pub struct NewInvitation {
    pub address: Address,
    pub address_key: AddressKey,
    pub token_hash: TokenHash,
    pub token_nonce: Option<TokenNonce>,
    pub outgoing: Outgoing,
}

/// Everything one incoming message changes, committed as one transaction.
#[derive(Debug, Clone)]
pub struct IngestUnit {
    /// Identifies the message; a message seen before is not processed again.
    pub seen_key: Option<[u8; 32]>,
    /// Advances the source's mark in the same transaction.
    pub mark: Option<(String, IngestMark)>,
    /// Counters to bump by one: (region, name).
    pub counters: Vec<(String, String)>,
    /// The invitations to create, if their addresses were never invited.
    pub invitations: Vec<NewInvitation>,
    pub region: String,
    pub consultant: Option<Address>,
    /// The consultant's daily cap: (key of consultant and day, cap).
    pub daily_cap: Option<(String, u32)>,
    /// When the message was processed: the invitations' creation time
    /// (required: the store never reads the clock for it).
    pub created_at: DateTime<Utc>,
    /// When the mailbox received the message (the digest's weekly count is
    /// by this week, not by when it was processed); default `created_at`.
    pub received_at: Option<DateTime<Utc>>,
    /// What the message says about invitations already sent.
    pub effect: Option<Effect>,
}

impl IngestUnit {
    /// A unit processed at `created_at` that changes nothing yet.
    pub fn at(created_at: DateTime<Utc>) -> IngestUnit {
        IngestUnit {
            seen_key: None,
            mark: None,
            counters: Vec::new(),
            invitations: Vec::new(),
            region: String::new(),
            consultant: None,
            daily_cap: None,
            created_at,
            received_at: None,
            effect: None,
        }
    }
}

/// What a delivery report says of one recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The address is bad: counted "bounced".
    Permanent,
    /// The MTA gave up: counted "expired".
    Expired,
    /// Only delayed: changes nothing.
    Temporary,
}

/// A message's effect on existing invitations, matched in the transaction by
/// canvass Message-ID (what the message refers to) or by address key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Failed recipients: (address key when the address is valid, failure).
    /// Without `by_address` only the invitations of `message_ids` may be
    /// marked (the Message-ID is the proof); with it (a report of canvass'
    /// own outbound server) the named addresses are matched.
    Bounce {
        recipients: Vec<(Option<AddressKey>, Failure)>,
        message_ids: Vec<String>,
        by_address: bool,
    },
    /// With `message_ids`, the invitation answered is opted out; without,
    /// (an authenticated From) the invitation of `from`.
    OptOut {
        from: AddressKey,
        message_ids: Vec<String>,
    },
    /// A spam complaint about the invitations of `message_ids`: opted out,
    /// counted "complained".
    Complaint { message_ids: Vec<String> },
    /// A human reply: forwarded (the forward is rendered by the caller's
    /// `respond` with the matched invitation).
    Reply {
        from: AddressKey,
        message_ids: Vec<String>,
    },
}

/// What the transaction tells the caller's `respond` callback.
#[derive(Debug)]
pub struct CommitView<'a> {
    pub outcomes: &'a [InviteOutcome],
    /// The invitation a reply or opt-out was matched to.
    pub matched: Option<&'a Invitation>,
}

/// What an [`Effect`] changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EffectOutcome {
    /// Invitations newly marked bounced / opted out.
    pub marked: u32,
    /// Recipients or senders no invitation matched.
    pub unmatched: u32,
}

/// What became of one would-be invitee.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", content = "address", rename_all = "snake_case")]
pub enum InviteOutcome {
    Invited(Address),
    AlreadyInvited(Address),
    OverDailyCap(Address),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Committed {
    /// The message had been processed before: nothing was changed.
    AlreadyProcessed,
    Done(Vec<InviteOutcome>),
    /// A bounce, opt-out or reply was applied.
    Effect(EffectOutcome),
}

/// Counter names.
mod flush;
mod jobs;
mod optout;
pub mod privacy;
mod responses;
mod withdraw;
pub use jobs::JobState;
pub use optout::OptOutOutcome;
pub use responses::{StoredResponse, SubmitOutcome};
pub use withdraw::{WithdrawOutcome, Withdrawal};

pub mod counter {
    pub const INVITED: &str = "invited";
    pub const SENT: &str = "sent";
    pub const FAILED: &str = "failed";
    pub const REFUSED_UNKNOWN_SENDER: &str = "refused_unknown_sender";
    pub const REFUSED_UNAUTHENTICATED: &str = "refused_unauthenticated";
    /// Over the consultant's daily cap (before the split of the two caps,
    /// also over the per-message cap).
    pub const REFUSED_OVER_CAP: &str = "refused_over_cap";
    /// Messages with more invitees than `sending.max_invitees_per_message`.
    pub const REFUSED_OVER_MESSAGE_CAP: &str = "refused_over_message_cap";
    /// Prefix of the per-day count of mail from consultants' addresses.
    pub const CONSULTANT_MAIL_DAY: &str = "consultant_mail_day:";
    /// Prefix of the per-day count of that mail refused as unauthenticated.
    pub const UNAUTHENTICATED_DAY: &str = "unauthenticated_day:";

    /// A per-day counter: `prefix` and the Copenhagen date of `at`.
    pub fn day(prefix: &str, at: chrono::DateTime<chrono::Utc>) -> String {
        format!(
            "{prefix}{}",
            at.with_timezone(&crate::window::TZ).date_naive()
        )
    }
    pub const OUTSIDE_WINDOW: &str = "outside_window";
    pub const TRIGGERS: &str = "triggers";
    pub const ANSWERED: &str = "answered";
    pub const BOUNCED: &str = "bounced";
    /// Final delivery failures (the MTA gave up), per region.
    pub const EXPIRED: &str = "expired";
    /// Spam complaints matched to an invitation, per region.
    pub const COMPLAINED: &str = "complained";
    pub const OPTED_OUT: &str = "opted_out";
    /// Global: auto-replies set aside, replies forwarded, unreadable
    /// messages quarantined.
    pub const AUTO_REPLIES: &str = "ignored_auto_reply";
    pub const REPLIES: &str = "replies";
    pub const QUARANTINED: &str = "quarantined";
    /// Global: bounces and opt-outs that proved nothing (no canvass
    /// Message-ID, no trusted server): they changed nothing.
    pub const UNPROVEN: &str = "unproven";
    pub const REMINDED: &str = "reminded";
    /// Invitations withdrawn by `canvass withdraw`: out of every other count.
    pub const WITHDRAWN: &str = "withdrawn";
    /// Prefix of the per-week invitation counters (`invited_week:2024-W32`).
    pub const INVITED_WEEK: &str = "invited_week:";

    /// The counter of invitations whose contact was received in the ISO
    /// week (Copenhagen) of `at`.
    pub fn invited_week(at: chrono::DateTime<chrono::Utc>) -> String {
        use chrono::Datelike;
        let w = at.with_timezone(&crate::window::TZ).iso_week();
        format!("{INVITED_WEEK}{}-W{:02}", w.year(), w.week())
    }
}

/// The open store.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    invitations: sled::Tree,
    recipients: sled::Tree,
    tokens: sled::Tree,
    outbox: sled::Tree,
    ingest: sled::Tree,
    counters: sled::Tree,
    responses: sled::Tree,
    jobs: sled::Tree,
    /// canvass Message-ID → invitation id (bounces and replies are matched on it).
    msgids: sled::Tree,
    /// Group commit for [`Store::flush`] (flush.rs).
    flush_gate: std::sync::Arc<flush::FlushGate>,
}

/// The token tree's value for the link of a person forgotten by `canvass forget`.
pub(crate) const FORGOTTEN: u64 = u64::MAX;
/// The token tree's value for the link of an invitation withdrawn by `canvass withdraw`.
pub(crate) const WITHDRAWN: u64 = u64::MAX - 1;

/// What a personal link leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    Invitation(Box<Invitation>),
    /// The person asked to be forgotten: the link no longer opens the form.
    Forgotten,
    /// The invitation should never have been made (`canvass withdraw`).
    Withdrawn,
    Unknown,
}

fn counter_key(region: &str, name: &str) -> Vec<u8> {
    let mut k = region.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(name.as_bytes());
    k
}

fn bump(tx: &TransactionalTree, key: &[u8], by: u64) -> Result<u64, UnabortableTransactionError> {
    let old = tx.get(key)?.map(|v| u64_from(&v)).unwrap_or(0);
    let new = old.saturating_add(by);
    tx.insert(key, &new.to_be_bytes())?;
    Ok(new)
}

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
fn open_db(path: &Path) -> Result<sled::Db, StoreError> {
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

fn u64_from(v: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    if v.len() == 8 {
        b.copy_from_slice(v);
    }
    u64::from_be_bytes(b)
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
                let found = v.first().copied().unwrap_or(0);
                if found > SCHEMA_VERSION {
                    return Err(StoreError::TooNew { path: p, found });
                }
                // An older schema: migrated step by step, or refused (privacy.rs).
                privacy::migrate(&db, &meta, found, &p)?;
            }
        }
        Ok(Store {
            invitations: db.open_tree("invitations")?,
            recipients: db.open_tree("recipients")?,
            tokens: db.open_tree("tokens")?,
            outbox: db.open_tree("outbox")?,
            ingest: db.open_tree("ingest")?,
            counters: db.open_tree("counters")?,
            responses: db.open_tree("responses")?,
            jobs: db.open_tree("jobs")?,
            msgids: db.open_tree("msgids")?,
            flush_gate: Default::default(),
            db,
        })
    }

    /// Makes everything written so far durable (fsync). Concurrent callers
    /// share one flush (group commit); sled's `flush_async` is never used:
    /// it deadlocks when several run at once (flush.rs).
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.flush_gate.flush(&self.db).await?;
        Ok(())
    }

    pub fn flush_blocking(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    /// The mark of a mail source.
    pub fn ingest_mark(&self, source: &str) -> Result<Option<IngestMark>, StoreError> {
        self.ingest
            .get(format!("mark:{source}"))?
            .map(|v| decode(&v, "ingest mark"))
            .transpose()
    }

    /// Resets a source's mark (UIDVALIDITY changed).
    pub fn set_ingest_mark(&self, source: &str, mark: IngestMark) -> Result<(), StoreError> {
        self.ingest
            .insert(format!("mark:{source}"), encode(&mark))?;
        Ok(())
    }

    /// Commits one processed message: its invitations (those never invited
    /// before, within the daily cap) with their queued messages, its counters, the
    /// source mark and the "seen" note, all or nothing. `confirm` renders the
    /// reply to the consultant from the outcomes, queued in the same transaction.
    pub fn commit_ingest(
        &self,
        unit: &IngestUnit,
        respond: &dyn Fn(&CommitView) -> Option<(Purpose, Outgoing)>,
    ) -> Result<Committed, StoreError> {
        let mut all = self.commit_ingest_all(&[(unit, respond)])?;
        Ok(all.pop().expect("one outcome per unit"))
    }

    /// [`Store::commit_ingest`] for several messages in one transaction: all
    /// of them or none, in order (a later message sees what an earlier one
    /// did: the same contact twice is invited once). The ingest loop commits
    /// a fetched batch this way; a sled transaction costs two log-buffer
    /// writes whatever its size, so one per message was most of the cost of
    /// reading a backlog (BENCHMARKS.md, target 1).
    pub fn commit_ingest_all(
        &self,
        units: &[(&IngestUnit, Responder<'_>)],
    ) -> Result<Vec<Committed>, StoreError> {
        let trees = (
            &self.invitations,
            &self.recipients,
            &self.tokens,
            &self.outbox,
            &self.ingest,
            &self.counters,
            &self.msgids,
        );
        let result = trees.transaction(|(inv, rcp, tok, out, ing, cnt, mid)| {
            let t = IngestTrees {
                inv,
                rcp,
                tok,
                out,
                ing,
                cnt,
                mid,
            };
            let mut all = Vec::with_capacity(units.len());
            for (unit, respond) in units {
                all.push(ingest_one(&t, unit, *respond)?);
            }
            Ok(all)
        });
        result.map_err(StoreError::from)
    }

    /// Queues a stand-alone message (not tied to an invitation).
    pub fn enqueue(&self, purpose: Purpose, outgoing: &Outgoing) -> Result<u64, StoreError> {
        let id = self.db.generate_id()?;
        self.outbox.insert(
            id.to_be_bytes(),
            encode(&outbox_item(id, purpose, outgoing)),
        )?;
        Ok(id)
    }

    /// Outbox items due at `now`, oldest first, at most `limit`; and the
    /// earliest time a not-yet-due item becomes due.
    pub fn outbox_due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<(Vec<OutboxItem>, Option<DateTime<Utc>>), StoreError> {
        let mut due = Vec::new();
        let mut next: Option<DateTime<Utc>> = None;
        for kv in self.outbox.iter() {
            let (_, v) = kv?;
            let item: OutboxItem = decode(&v, "outbox item")?;
            if item.next_attempt <= now {
                if due.len() < limit {
                    due.push(item);
                } else {
                    // More is due now: nothing later can be earlier, so the
                    // rest of the outbox need not be read (and decoded).
                    next = Some(now);
                    break;
                }
            } else {
                next = Some(next.map_or(item.next_attempt, |n| n.min(item.next_attempt)));
            }
        }
        Ok((due, next))
    }

    pub fn outbox_len(&self) -> usize {
        self.outbox.len()
    }

    /// The server accepted the message: forget its body (it holds a token) and
    /// record the invitation as sent.
    pub fn mark_sent(&self, item: &OutboxItem, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.finish(item, Delivery::Sent { at }, counter::SENT)
    }

    /// The server refused the message for good.
    pub fn mark_failed(
        &self,
        item: &OutboxItem,
        at: DateTime<Utc>,
        reason: &str,
    ) -> Result<(), StoreError> {
        self.finish(
            item,
            Delivery::Failed {
                at,
                reason: reason.to_string(),
            },
            counter::FAILED,
        )
    }

    /// [`Store::mark_sent`] for several accepted messages, in one
    /// transaction (the outbox marks a group before one flush: a sled
    /// transaction costs two log-buffer writes, whatever its size).
    pub fn mark_sent_all(&self, items: &[OutboxItem], at: DateTime<Utc>) -> Result<(), StoreError> {
        let items: Vec<&OutboxItem> = items.iter().collect();
        self.finish_all(&items, Delivery::Sent { at }, counter::SENT)
    }

    fn finish(&self, item: &OutboxItem, delivery: Delivery, name: &str) -> Result<(), StoreError> {
        self.finish_all(&[item], delivery, name)
    }

    fn finish_all(
        &self,
        items: &[&OutboxItem],
        delivery: Delivery,
        name: &str,
    ) -> Result<(), StoreError> {
        if items.is_empty() {
            return Ok(());
        }
        let trees = (&self.outbox, &self.invitations, &self.counters);
        trees
            .transaction(|(out, inv, cnt)| {
                for item in items {
                    let key = item.id.to_be_bytes();
                    if out.remove(&key)?.is_none() {
                        continue; // finished before (a resend after a crash)
                    }
                    if let Purpose::Invitation { invitation_id } = item.purpose {
                        let ikey = invitation_id.to_be_bytes();
                        let Some(v) = inv.get(ikey)? else {
                            continue;
                        };
                        let mut invitation: Invitation = tx_decode(&v, "invitation")?;
                        invitation.delivery = delivery.clone();
                        inv.insert(&ikey, encode(&invitation))?;
                        bump(cnt, &counter_key(&invitation.region, name), 1)?;
                    }
                }
                Ok(())
            })
            .map_err(StoreError::from)
    }

    /// A transient failure: try again at `next`.
    pub fn reschedule(
        &self,
        item: &OutboxItem,
        next: DateTime<Utc>,
        error: &str,
    ) -> Result<(), StoreError> {
        let key = item.id.to_be_bytes();
        let mut updated = item.clone();
        updated.attempts += 1;
        updated.next_attempt = next;
        updated.last_error = Some(error.to_string());
        // Only if still queued (compare-and-swap against what was read).
        let current = self.outbox.get(key)?;
        if let Some(cur) = current {
            let _ = self
                .outbox
                .compare_and_swap(key, Some(cur), Some(encode(&updated)))?;
        }
        Ok(())
    }

    /// All counters: (region, name, value). Region "" holds global counters.
    pub fn counters(&self) -> Result<Vec<(String, String, u64)>, StoreError> {
        let mut out = Vec::new();
        for kv in self.counters.iter() {
            let (k, v) = kv?;
            let Some(pos) = k.iter().position(|b| *b == 0) else {
                continue;
            };
            let region = String::from_utf8_lossy(&k[..pos]).into_owned();
            let name = String::from_utf8_lossy(&k[pos + 1..]).into_owned();
            out.push((region, name, u64_from(&v)));
        }
        Ok(out)
    }

    /// Bumps a counter outside any other change (refusals, ignored mail).
    pub fn bump_counter(&self, region: &str, name: &str) -> Result<(), StoreError> {
        let key = counter_key(region, name);
        self.counters.update_and_fetch(key, |old| {
            let n = old.map(u64_from).unwrap_or(0) + 1;
            Some(n.to_be_bytes().to_vec())
        })?;
        Ok(())
    }

    pub fn invitation_by_token(&self, hash: &TokenHash) -> Result<Option<Invitation>, StoreError> {
        match self.link(hash)? {
            Link::Invitation(i) => Ok(Some(*i)),
            Link::Forgotten | Link::Withdrawn | Link::Unknown => Ok(None),
        }
    }

    /// What a personal link leads to.
    pub fn link(&self, hash: &TokenHash) -> Result<Link, StoreError> {
        let Some(id) = self.tokens.get(hash.0)? else {
            return Ok(Link::Unknown);
        };
        match u64_from(&id) {
            FORGOTTEN => Ok(Link::Forgotten),
            WITHDRAWN => Ok(Link::Withdrawn),
            id => Ok(self
                .invitation(id)?
                .map_or(Link::Unknown, |i| Link::Invitation(Box::new(i)))),
        }
    }

    pub fn invitation(&self, id: u64) -> Result<Option<Invitation>, StoreError> {
        self.invitations
            .get(id.to_be_bytes())?
            .map(|v| decode(&v, "invitation"))
            .transpose()
    }

    pub fn invitation_by_address(
        &self,
        key: &AddressKey,
    ) -> Result<Option<Invitation>, StoreError> {
        let Some(id) = self.recipients.get(key.0)? else {
            return Ok(None);
        };
        self.invitation(u64_from(&id))
    }

    /// Every invitation, in creation order.
    pub fn invitations(&self) -> impl Iterator<Item = Result<Invitation, StoreError>> + '_ {
        self.invitations.iter().map(|kv| {
            let (_, v) = kv?;
            decode(&v, "invitation")
        })
    }

    pub fn invitation_count(&self) -> usize {
        self.invitations.len()
    }

    /// The day key for a consultant's daily cap.
    pub fn daily_key(consultant: &AddressKey, day: NaiveDate) -> String {
        format!("daily:{}:{}", hex::encode(&consultant.0[..8]), day)
    }
}

/// What [`Store::commit_ingest`] calls to render a reply from the outcome.
pub type Responder<'a> = &'a dyn Fn(&CommitView) -> Option<(Purpose, Outgoing)>;

/// The trees an ingest transaction writes.
struct IngestTrees<'a> {
    inv: &'a TransactionalTree,
    rcp: &'a TransactionalTree,
    tok: &'a TransactionalTree,
    out: &'a TransactionalTree,
    ing: &'a TransactionalTree,
    cnt: &'a TransactionalTree,
    mid: &'a TransactionalTree,
}

/// One processed message inside an ingest transaction.
fn ingest_one(
    t: &IngestTrees<'_>,
    unit: &IngestUnit,
    respond: Responder<'_>,
) -> TxResult<Committed> {
    let IngestTrees {
        inv,
        rcp,
        tok,
        out,
        ing,
        cnt,
        mid,
    } = *t;
    if let Some(seen) = &unit.seen_key {
        let mut key = b"seen:".to_vec();
        key.extend_from_slice(seen);
        if ing.get(&key)?.is_some() {
            return Ok(Committed::AlreadyProcessed);
        }
        ing.insert(key, &[])?;
    }
    if let Some((source, mark)) = &unit.mark {
        ing.insert(format!("mark:{source}").as_bytes(), encode(mark))?;
    }
    for (region, name) in &unit.counters {
        bump(cnt, &counter_key(region, name), 1)?;
    }
    if let Some(effect) = &unit.effect {
        let (outcome, matched) = apply_effect(effect, inv, rcp, cnt, mid)?;
        if let Some((purpose, msg)) = respond(&CommitView {
            outcomes: &[],
            matched: matched.as_ref(),
        }) {
            let outbox_id = out.generate_id()?;
            let item = outbox_item(outbox_id, purpose, &msg);
            out.insert(&outbox_id.to_be_bytes(), encode(&item))?;
        }
        return Ok(Committed::Effect(outcome));
    }
    let mut used_today = match &unit.daily_cap {
        Some((key, _)) => cnt
            .get(counter_key("", key))?
            .map(|v| u64_from(&v))
            .unwrap_or(0),
        None => 0,
    };
    let mut outcomes = Vec::with_capacity(unit.invitations.len());
    let mut over_cap = false;
    for new in &unit.invitations {
        if rcp.get(new.address_key.0)?.is_some() {
            outcomes.push(InviteOutcome::AlreadyInvited(new.address.clone()));
            continue;
        }
        if let Some((_, cap)) = &unit.daily_cap {
            if used_today >= u64::from(*cap) {
                over_cap = true;
                outcomes.push(InviteOutcome::OverDailyCap(new.address.clone()));
                continue;
            }
        }
        used_today += 1;
        let id = inv.generate_id()?;
        let outbox_id = out.generate_id()?;
        let invitation = Invitation {
            id,
            address_key: new.address_key,
            address: Some(new.address.clone()),
            region: unit.region.clone(),
            consultant: unit
                .consultant
                .clone()
                .unwrap_or_else(|| new.address.clone()),
            created_at: unit.created_at,
            token_hash: new.token_hash,
            token_nonce: new.token_nonce,
            message_id: new.outgoing.message_id.clone(),
            delivery: Delivery::Queued,
            answered: false,
            opted_out: false,
            bounced: false,
            reminders: 0,
            last_reminder_at: None,
        };
        inv.insert(&id.to_be_bytes(), encode(&invitation))?;
        rcp.insert(&new.address_key.0, &id.to_be_bytes())?;
        tok.insert(&new.token_hash.0, &id.to_be_bytes())?;
        mid.insert(new.outgoing.message_id.as_bytes(), &id.to_be_bytes())?;
        let item = outbox_item(
            outbox_id,
            Purpose::Invitation { invitation_id: id },
            &new.outgoing,
        );
        out.insert(&outbox_id.to_be_bytes(), encode(&item))?;
        bump(cnt, &counter_key(&unit.region, counter::INVITED), 1)?;
        bump(
            cnt,
            &counter_key(
                &unit.region,
                &counter::invited_week(unit.received_at.unwrap_or(invitation.created_at)),
            ),
            1,
        )?;
        outcomes.push(InviteOutcome::Invited(new.address.clone()));
    }
    if let Some((key, _)) = &unit.daily_cap {
        cnt.insert(counter_key("", key), &used_today.to_be_bytes())?;
    }
    if over_cap {
        bump(
            cnt,
            &counter_key(&unit.region, counter::REFUSED_OVER_CAP),
            1,
        )?;
    }
    if let Some((purpose, reply)) = respond(&CommitView {
        outcomes: &outcomes,
        matched: None,
    }) {
        let outbox_id = out.generate_id()?;
        let item = outbox_item(outbox_id, purpose, &reply);
        out.insert(&outbox_id.to_be_bytes(), encode(&item))?;
    }
    Ok(Committed::Done(outcomes))
}

/// Finds the invitation an effect is about: by address key first, then by
/// the canvass Message-IDs the message refers to.
fn match_invitation(
    key: Option<&AddressKey>,
    message_ids: &[String],
    inv: &TransactionalTree,
    rcp: &TransactionalTree,
    mid: &TransactionalTree,
) -> TxResult<Option<(u64, Invitation)>> {
    let mut id = match key {
        Some(k) => rcp.get(k.0)?.map(|v| u64_from(&v)),
        None => None,
    };
    if id.is_none() {
        for m in message_ids {
            if let Some(v) = mid.get(m.as_bytes())? {
                id = Some(u64_from(&v));
                break;
            }
        }
    }
    let Some(id) = id else { return Ok(None) };
    match inv.get(id.to_be_bytes())? {
        Some(v) => Ok(Some((id, tx_decode(&v, "invitation")?))),
        None => Ok(None),
    }
}

fn apply_effect(
    effect: &Effect,
    inv: &TransactionalTree,
    rcp: &TransactionalTree,
    cnt: &TransactionalTree,
    mid: &TransactionalTree,
) -> TxResult<(EffectOutcome, Option<Invitation>)> {
    let mut outcome = EffectOutcome::default();
    let mut last = None;
    match effect {
        Effect::Bounce {
            recipients,
            message_ids,
            by_address,
        } => {
            if *by_address {
                for (key, failure) in recipients {
                    match match_invitation(key.as_ref(), &[], inv, rcp, mid)? {
                        Some((id, mut i)) => {
                            if mark_failed(&mut i, *failure, cnt)? {
                                inv.insert(&id.to_be_bytes(), encode(&i))?;
                                outcome.marked += 1;
                            }
                            last = Some(i);
                        }
                        None => outcome.unmatched += 1,
                    }
                }
            } else {
                // The Message-ID names the invitation; a named recipient
                // that agrees with it gives the failure, else (the report
                // names nobody, or an address the mail was forwarded to)
                // the worst failure the report names.
                let worst = recipients.iter().map(|(_, f)| *f).min_by_key(|f| match f {
                    Failure::Permanent => 0,
                    Failure::Expired => 1,
                    Failure::Temporary => 2,
                });
                let mut done = Vec::new();
                for m in message_ids {
                    let Some((id, mut i)) =
                        match_invitation(None, std::slice::from_ref(m), inv, rcp, mid)?
                    else {
                        outcome.unmatched += 1;
                        continue;
                    };
                    if done.contains(&id) {
                        continue;
                    }
                    done.push(id);
                    let named = recipients
                        .iter()
                        .find(|(k, _)| k.as_ref() == Some(&i.address_key))
                        .map(|(_, f)| *f);
                    if let Some(failure) = named.or(worst) {
                        if mark_failed(&mut i, failure, cnt)? {
                            inv.insert(&id.to_be_bytes(), encode(&i))?;
                            outcome.marked += 1;
                        }
                    }
                    last = Some(i);
                }
            }
        }
        Effect::OptOut { from, message_ids } => {
            // Proven by the Message-ID it answers: that invitation, whatever
            // the From says; else by an authenticated From: that address's.
            let key = message_ids.is_empty().then_some(from);
            match match_invitation(key, message_ids, inv, rcp, mid)? {
                Some((id, mut i)) => {
                    if !i.opted_out {
                        i.opted_out = true;
                        inv.insert(&id.to_be_bytes(), encode(&i))?;
                        bump(cnt, &counter_key(&i.region, counter::OPTED_OUT), 1)?;
                        outcome.marked += 1;
                    }
                    last = Some(i);
                }
                None => outcome.unmatched += 1,
            }
        }
        Effect::Complaint { message_ids } => {
            let mut done = Vec::new();
            for m in message_ids {
                let Some((id, mut i)) =
                    match_invitation(None, std::slice::from_ref(m), inv, rcp, mid)?
                else {
                    continue;
                };
                if done.contains(&id) {
                    continue;
                }
                done.push(id);
                if !i.opted_out {
                    i.opted_out = true;
                    inv.insert(&id.to_be_bytes(), encode(&i))?;
                    bump(cnt, &counter_key(&i.region, counter::COMPLAINED), 1)?;
                    outcome.marked += 1;
                }
                last = Some(i);
            }
            if done.is_empty() {
                outcome.unmatched += 1;
            }
        }
        Effect::Reply { from, message_ids } => {
            // A reply is about the message it answers: Message-ID first.
            let found = match match_invitation(None, message_ids, inv, rcp, mid)? {
                Some(f) => Some(f),
                None => match_invitation(Some(from), &[], inv, rcp, mid)?,
            };
            match found {
                Some((_, i)) => last = Some(i),
                None => outcome.unmatched += 1,
            }
        }
    }
    Ok((outcome, last))
}

/// Marks an invitation undelivered for a permanent or final failure, counted
/// "bounced" or "expired"; whether it changed.
fn mark_failed(i: &mut Invitation, failure: Failure, cnt: &TransactionalTree) -> TxResult<bool> {
    let name = match failure {
        Failure::Permanent => counter::BOUNCED,
        Failure::Expired => counter::EXPIRED,
        Failure::Temporary => return Ok(false),
    };
    if i.bounced {
        return Ok(false);
    }
    i.bounced = true;
    bump(cnt, &counter_key(&i.region, name), 1)?;
    Ok(true)
}

fn outbox_item(id: u64, purpose: Purpose, o: &Outgoing) -> OutboxItem {
    OutboxItem {
        id,
        purpose,
        from: o.from.clone(),
        to: o.to.clone(),
        message_id: o.message_id.clone(),
        raw: o.raw.clone(),
        next_attempt: o.not_before,
        attempts: 0,
        last_error: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::{parse, HmacKey};
    use crate::token::Token;

    fn new_inv(key: &HmacKey, addr: &str) -> NewInvitation {
        let address = parse(addr).unwrap();
        NewInvitation {
            address_key: key.key_of(&address),
            token_hash: Token::generate().hash(),
            token_nonce: None,
            outgoing: Outgoing {
                from: "s@siri.dk".into(),
                to: vec![address.to_string()],
                message_id: format!("canvass.{addr}"),
                raw: b"Subject: x\r\n\r\nbody".to_vec(),
                not_before: Utc::now(),
            },
            address,
        }
    }

    fn unit(key: &HmacKey, addrs: &[&str], seen: u8) -> IngestUnit {
        IngestUnit {
            seen_key: Some([seen; 32]),
            region: "Sjælland".into(),
            invitations: addrs.iter().map(|a| new_inv(key, a)).collect(),
            ..IngestUnit::at(Utc::now())
        }
    }

    #[test]
    fn nobody_is_invited_twice() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let key = HmacKey::from_bytes(&[7; 32]);
        let r1 = store
            .commit_ingest(&unit(&key, &["a@x.dk", "b@x.dk"], 1), &|_: &CommitView| {
                None
            })
            .unwrap();
        let r2 = store
            .commit_ingest(&unit(&key, &["B@X.dk", "c@x.dk"], 2), &|_: &CommitView| {
                None
            })
            .unwrap();
        assert!(
            matches!(r1, Committed::Done(ref o) if o.iter().all(|o| matches!(o, InviteOutcome::Invited(_))))
        );
        match r2 {
            Committed::Done(o) => {
                assert!(matches!(o[0], InviteOutcome::AlreadyInvited(_)));
                assert!(matches!(o[1], InviteOutcome::Invited(_)));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(store.invitation_count(), 3);
        assert_eq!(store.outbox_len(), 3);
        // The same message again changes nothing.
        assert_eq!(
            store
                .commit_ingest(&unit(&key, &["d@x.dk"], 2), &|_: &CommitView| None)
                .unwrap(),
            Committed::AlreadyProcessed
        );
        assert_eq!(store.invitation_count(), 3);
    }

    #[test]
    fn daily_cap_refuses_the_excess() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let key = HmacKey::from_bytes(&[7; 32]);
        let mut u = unit(&key, &["a@x.dk", "b@x.dk", "c@x.dk"], 1);
        u.daily_cap = Some(("daily:anne:2024-08-07".into(), 2));
        let Committed::Done(o) = store.commit_ingest(&u, &|_: &CommitView| None).unwrap() else {
            panic!()
        };
        assert!(matches!(o[2], InviteOutcome::OverDailyCap(_)));
        assert_eq!(store.invitation_count(), 2);
    }

    #[test]
    fn sent_and_failed_update_invitation_and_counters() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let key = HmacKey::from_bytes(&[7; 32]);
        store
            .commit_ingest(&unit(&key, &["a@x.dk", "b@x.dk"], 1), &|_: &CommitView| {
                None
            })
            .unwrap();
        let (due, _) = store.outbox_due(Utc::now(), 10).unwrap();
        assert_eq!(due.len(), 2);
        store.mark_sent(&due[0], Utc::now()).unwrap();
        store
            .mark_failed(&due[1], Utc::now(), "550 no such user")
            .unwrap();
        store.mark_sent(&due[0], Utc::now()).unwrap(); // idempotent
        assert_eq!(store.outbox_len(), 0);
        let c = store.counters().unwrap();
        let get = |n: &str| c.iter().find(|(_, k, _)| k == n).map(|x| x.2);
        assert_eq!(get("invited"), Some(2));
        assert_eq!(get("sent"), Some(1));
        assert_eq!(get("failed"), Some(1));
        let invs: Vec<Invitation> = store.invitations().map(|i| i.unwrap()).collect();
        assert!(matches!(invs[0].delivery, Delivery::Sent { .. }));
        assert!(
            matches!(invs[1].delivery, Delivery::Failed { ref reason, .. } if reason.contains("550"))
        );
    }

    fn effect(store: &Store, effect: Effect, seen: u8) -> EffectOutcome {
        let u = IngestUnit {
            seen_key: Some([seen; 32]),
            effect: Some(effect),
            ..IngestUnit::at(Utc::now())
        };
        match store.commit_ingest(&u, &|_: &CommitView| None).unwrap() {
            Committed::Effect(o) => o,
            other => panic!("{other:?}"),
        }
    }

    fn counter_of(store: &Store, name: &str) -> u64 {
        store
            .counters()
            .unwrap()
            .iter()
            .filter(|(_, k, _)| k == name)
            .map(|x| x.2)
            .sum()
    }

    #[test]
    fn a_bounce_proven_by_message_id_marks_only_that_invitation() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let key = HmacKey::from_bytes(&[7; 32]);
        store
            .commit_ingest(
                &unit(&key, &["a@x.dk", "b@x.dk", "c@x.dk", "d@x.dk"], 1),
                &|_: &CommitView| None,
            )
            .unwrap();
        let k = |a: &str| Some(key.key_of(&parse(a).unwrap()));
        // Names b@x.dk, but returns a@x.dk's Message-ID: only a@x.dk is
        // marked (a name alone proves nothing; the Message-ID does).
        let o = effect(
            &store,
            Effect::Bounce {
                recipients: vec![(k("b@x.dk"), Failure::Permanent)],
                message_ids: vec!["canvass.a@x.dk".into()],
                by_address: false,
            },
            2,
        );
        assert_eq!(o.marked, 1);
        // Names nobody: the Message-ID's invitation, as expired.
        effect(
            &store,
            Effect::Bounce {
                recipients: vec![(None, Failure::Expired)],
                message_ids: vec!["canvass.c@x.dk".into()],
                by_address: false,
            },
            3,
        );
        // Only delayed: nothing.
        effect(
            &store,
            Effect::Bounce {
                recipients: vec![(k("d@x.dk"), Failure::Temporary)],
                message_ids: vec!["canvass.d@x.dk".into()],
                by_address: false,
            },
            4,
        );
        // The outbound server's own report: by the address it names.
        effect(
            &store,
            Effect::Bounce {
                recipients: vec![(k("d@x.dk"), Failure::Permanent)],
                message_ids: vec![],
                by_address: true,
            },
            5,
        );
        let bounced: Vec<String> = store
            .invitations()
            .map(|i| i.unwrap())
            .filter(|i| i.bounced)
            .map(|i| i.address.unwrap().to_string())
            .collect();
        assert_eq!(bounced, ["a@x.dk", "c@x.dk", "d@x.dk"]);
        assert_eq!(counter_of(&store, counter::BOUNCED), 2);
        assert_eq!(counter_of(&store, counter::EXPIRED), 1);
    }

    #[test]
    fn opt_outs_and_complaints_follow_their_proof() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let key = HmacKey::from_bytes(&[7; 32]);
        store
            .commit_ingest(
                &unit(&key, &["a@x.dk", "b@x.dk", "c@x.dk"], 1),
                &|_: &CommitView| None,
            )
            .unwrap();
        let k = |a: &str| key.key_of(&parse(a).unwrap());
        // Answering a@x.dk's invitation with From: b@x.dk opts out a@x.dk.
        effect(
            &store,
            Effect::OptOut {
                from: k("b@x.dk"),
                message_ids: vec!["canvass.a@x.dk".into()],
            },
            2,
        );
        // A complaint about c@x.dk's invitation.
        let o = effect(
            &store,
            Effect::Complaint {
                message_ids: vec!["canvass.c@x.dk".into()],
            },
            3,
        );
        assert_eq!(o.marked, 1);
        let out: Vec<String> = store
            .invitations()
            .map(|i| i.unwrap())
            .filter(|i| i.opted_out)
            .map(|i| i.address.unwrap().to_string())
            .collect();
        assert_eq!(out, ["a@x.dk", "c@x.dk"]);
        assert_eq!(counter_of(&store, counter::OPTED_OUT), 1);
        assert_eq!(counter_of(&store, counter::COMPLAINED), 1);
    }

    #[test]
    fn reopened_store_keeps_everything() {
        let dir = tempfile::tempdir().unwrap();
        let key = HmacKey::from_bytes(&[7; 32]);
        {
            let store = Store::open(dir.path()).unwrap();
            store
                .commit_ingest(&unit(&key, &["a@x.dk"], 1), &|_: &CommitView| None)
                .unwrap();
            store
                .set_ingest_mark(
                    "imap",
                    IngestMark {
                        uid_validity: 9,
                        last_uid: 42,
                    },
                )
                .unwrap();
            store.flush_blocking().unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.invitation_count(), 1);
        assert_eq!(
            store.ingest_mark("imap").unwrap(),
            Some(IngestMark {
                uid_validity: 9,
                last_uid: 42
            })
        );
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled::open(dir.path()).unwrap();
            db.open_tree("meta")
                .unwrap()
                .insert("schema", &[SCHEMA_VERSION + 1])
                .unwrap();
            db.flush().unwrap();
        }
        assert!(matches!(
            Store::open(dir.path()),
            Err(StoreError::TooNew { .. })
        ));
    }

    /// The digest's weekly chart counts an invitation in the week its
    /// contact was received, not the week it was processed (a backlog or a
    /// replay lands in the right week; issue 15).
    #[test]
    fn the_weekly_counter_is_by_week_of_receipt() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let key = HmacKey::from_bytes(&[7; 32]);
        let received = Utc::now() - chrono::Duration::weeks(3);
        let u = IngestUnit {
            created_at: Utc::now(),
            received_at: Some(received),
            ..unit(&key, &["a@x.dk"], 1)
        };
        store.commit_ingest(&u, &|_: &CommitView| None).unwrap();
        let weeks: Vec<(String, u64)> = store
            .counters()
            .unwrap()
            .into_iter()
            .filter(|(_, n, _)| n.starts_with(counter::INVITED_WEEK))
            .map(|(_, n, v)| (n, v))
            .collect();
        assert_eq!(weeks, [(counter::invited_week(received), 1)]);
    }
}

#[cfg(test)]
mod test_support;
