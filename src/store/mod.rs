//! The durable state, in sled. This is the only module that knows sled: the
//! rest of canvass sees plain records and a handful of operations, each of which
//! is one transaction when it touches more than one tree.
//!
//! Trees (schema 3):
//! - `invitations`: id (u64 BE) → [`Invitation`]. An invitation's id is
//!   derived from the HMAC of its address ([`keyed_id`]), so this one record
//!   is also what says the address was invited (nobody invited twice): a
//!   million invitations are a million keys, not two million (issue 16)
//! - `recipients`: HMAC of the address → invitation id, only where the id is
//!   not the address' [`keyed_id`]: invitations of schema 1 and 2 (whose ids
//!   came from sled's counter, and whose links carry them), the rare one
//!   whose keyed id was taken by another address; or `erase::FORGOTTEN_ONLY`
//!   for someone forgotten who was never invited
//! - `tokens`: SHA-256 of the token → a tombstone (`FORGOTTEN`, `WITHDRAWN`)
//!   once the link was disabled; for links without the invitation's id (of
//!   schema 1, or of an invitation without a nonce), → invitation id. A link
//!   carries its invitation's id (`Token::for_invitation`) and is opened by
//!   loading that invitation and comparing the token's hash ([`Store::link`])
//! - `outbox`: id (u64 BE) → [`OutboxItem`] (queued before sending, removed once accepted)
//! - `ingest`: `mark:<source>` → [`IngestMark`], `seen:<hash>` → () (nothing processed twice)
//! - `counters`: `<region>\0<name>` → u64 BE (status without scanning)
//! - `msgids`: legacy index, Message-ID → invitation id, for Message-IDs that
//!   do not carry their invitation's id (schema 1's, and any not of canvass'
//!   shape); an invitation's or reminder's Message-ID carries the id
//!   (`crate::message_id`) and is matched by loading that invitation
//! - `jobs`: job name → [`JobState`] (scheduled jobs' last completed slot)
//! - `responses`: random 128-bit key → [`StoredResponse`] (no link to the invitation)
//! - `withdrawn`: invitation id → why and when it was withdrawn (`withdraw.rs`)
//! - `counted`: invitation id → the counters it is in that its record does not
//!   tell (its week of receipt, `expired`, `complained`), for `withdraw.rs`
//! - `names`: u32 (BE) → a region, consultant, survey id or answer code,
//!   which records hold as that number (`record.rs`)
//! - `meta`: `schema` → the schema version of the whole store (`schema.rs`)
//!
//! Every stored value starts with a one-byte record version; a store written by
//! a newer canvass is refused at open, never misread. Records are stored in
//! compact forms of their own (times as integers, names as numbers,
//! variable-length integers: `record.rs`), not as the structs below.
//!
//! What lives where: this file holds the records (the public forms) and the
//! links (link → invitation); `open.rs` opening the store; `ingest.rs` the
//! ingest commit and effects; `outbox.rs` the outbox's operations;
//! `counter.rs` the counters; `flush.rs` the group flush;
//! `jobs.rs` scheduled jobs' state and reminders; `responses.rs` anonymous
//! answers; `optout.rs` the one-click opt-out; `erase.rs` the retention purge
//! and `forget` (and the erase steps `withdraw.rs` shares); `withdraw.rs`
//! withdrawing a mistaken invitation; `backup.rs` backup and restore;
//! `schema.rs` schema migrations; `record.rs` the stored form of records
//! and the `names` dictionary; `v1.rs` schema 1 and its migration;
//! `test_support.rs` probes for unit tests.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};

use crate::address::{Address, AddressKey};
use crate::token::{LinkKey, TokenHash, TokenNonce};

/// The layout version this canvass writes and reads.
pub const SCHEMA_VERSION: u8 = 3;

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

fn tx_decode<T: Record>(bytes: &[u8], what: &str, names: &Names) -> TxResult<T> {
    decode(bytes, what, names).map_err(ConflictableTransactionError::Abort)
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

impl Invitation {
    /// What its link is looked up by (the link carries the id).
    pub fn link_key(&self) -> LinkKey {
        LinkKey {
            hash: self.token_hash,
            invitation: Some(self.id),
        }
    }
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

/// Everything one incoming message changes, committed all or nothing (the
/// ingest loop commits a batch of them in one transaction:
/// [`Store::commit_ingest_all`]).
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
    /// A spam complaint naming only the invitees' addresses, from a
    /// configured feedback-loop sender the trust setting authenticated
    /// (`trust.complaint_senders`): the invitations of those address keys
    /// are opted out, counted "complained".
    ComplaintByAddress { keys: Vec<AddressKey> },
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

pub mod backup;
pub mod counter;
mod erase;
mod flush;
mod ingest;
mod jobs;
mod open;
mod optout;
mod outbox;
mod record;
mod responses;
pub mod schema;
mod v1;
mod withdraw;
use counter::{bump, counter_key};
pub use ingest::Responder;
pub use jobs::JobState;
use open::open_db;
pub use optout::OptOutOutcome;
use outbox::outbox_item;
use record::{decode, encode, Names, Record};
pub use responses::{StoredResponse, SubmitOutcome};
pub use withdraw::{WithdrawOutcome, Withdrawal};

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
    /// Legacy: Message-ID → invitation id for Message-IDs that do not carry
    /// the id (schema 1's); bounces and replies are matched on it too.
    msgids: sled::Tree,
    /// Withdrawn invitations (withdraw.rs).
    withdrawn: sled::Tree,
    /// Counters an invitation is in that its record does not tell (withdraw.rs).
    counted: sled::Tree,
    /// The `names` tree in memory (record.rs).
    names: std::sync::Arc<Names>,
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

/// A number stored as 8 bytes big-endian (ids, counters). Any other length is
/// a corrupt record, named by its tree and key (`key` never shows a token hash
/// or an address key, only what it is).
fn u64_from(v: &[u8], tree: &str, key: impl std::fmt::Display) -> Result<u64, StoreError> {
    match <[u8; 8]>::try_from(v) {
        Ok(b) => Ok(u64::from_be_bytes(b)),
        Err(_) => Err(StoreError::Corrupt {
            what: format!(
                "{tree} tree, {key}: {} bytes where an 8-byte number belongs",
                v.len()
            ),
        }),
    }
}

/// [`u64_from`] inside a transaction.
fn tx_u64_from(v: &[u8], tree: &str, key: impl std::fmt::Display) -> TxResult<u64> {
    u64_from(v, tree, key).map_err(ConflictableTransactionError::Abort)
}

impl Store {
    /// Makes everything written so far durable (fsync). Concurrent callers
    /// share one flush (group commit); sled's `flush_async` is never used:
    /// it deadlocks when several run at once (flush.rs).
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.flush_gate.flush(&self.db).await?;
        Ok(())
    }

    /// Makes everything written so far durable, blocking the calling thread
    /// (sled's own flush, not shared with other callers as [`Store::flush`] is).
    pub fn flush_blocking(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    pub fn invitation_by_token(
        &self,
        key: impl Into<LinkKey>,
    ) -> Result<Option<Invitation>, StoreError> {
        match self.link(key)? {
            Link::Invitation(i) => Ok(Some(*i)),
            Link::Forgotten | Link::Withdrawn | Link::Unknown => Ok(None),
        }
    }

    /// What a personal link leads to.
    /// A link carrying its invitation's id (schema 2) is that invitation
    /// when the token's hash is the invitation's, unless a tombstone in
    /// `tokens` disabled it; one without (schema 1) is looked up in `tokens`.
    pub fn link(&self, key: impl Into<LinkKey>) -> Result<Link, StoreError> {
        let key = key.into();
        if let Some(id) = key.invitation {
            let Some(i) = self.invitation(id)?.filter(|i| i.token_hash == key.hash) else {
                return Ok(Link::Unknown);
            };
            return Ok(match self.tokens.get(key.hash.0)? {
                Some(v) => match u64_from(&v, "tokens", "a link")? {
                    FORGOTTEN => Link::Forgotten,
                    WITHDRAWN => Link::Withdrawn,
                    _ => Link::Invitation(Box::new(i)),
                },
                None => Link::Invitation(Box::new(i)),
            });
        }
        let Some(id) = self.tokens.get(key.hash.0)? else {
            return Ok(Link::Unknown);
        };
        match u64_from(&id, "tokens", "a link")? {
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
            .map(|v| decode(&v, "invitation", &self.names))
            .transpose()
    }

    pub fn invitation_by_address(
        &self,
        key: &AddressKey,
    ) -> Result<Option<Invitation>, StoreError> {
        match self.invitation(keyed_id(key))? {
            Some(i) if i.address_key == *key => return Ok(Some(i)),
            _ => {}
        }
        let Some(id) = self.recipients.get(key.0)? else {
            return Ok(None);
        };
        self.invitation(u64_from(&id, "recipients", "an address key")?)
    }

    /// Every invitation, in the order of their ids (those of schema 1 and 2
    /// in creation order, then those keyed by their address, in no order).
    pub fn invitations(&self) -> impl Iterator<Item = Result<Invitation, StoreError>> + '_ {
        self.invitations.iter().map(|kv| {
            let (_, v) = kv?;
            decode(&v, "invitation", &self.names)
        })
    }

    pub fn invitation_count(&self) -> usize {
        self.invitations.len()
    }
}

/// Where a keyed id starts: ids from sled's counter (schema 1 and 2, and
/// the fallback of [`keyed_id`]) stay far below it, and the sentinels
/// `FORGOTTEN`, `WITHDRAWN` and `erase::FORGOTTEN_ONLY` far above.
pub(crate) const KEYED_ID_BASE: u64 = 1 << 62;

/// The id of a new invitation to the address whose HMAC is `key` (schema
/// 3): 62 bits of the HMAC, in `[2^62, 2^63)`. It is also the key of its
/// record, so finding whether an address was invited reads that one key
/// ([`tx_standing`]). Two addresses share a keyed id with a chance of
/// about n²/2⁶³ (10⁻⁷ at a million): the second gets an id from sled's
/// counter and a `recipients` entry instead. The id says nothing about the
/// address without the secret key, as the HMAC does not.
pub(crate) fn keyed_id(key: &AddressKey) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&key.0[..8]);
    (u64::from_be_bytes(b) & (KEYED_ID_BASE - 1)) | KEYED_ID_BASE
}

/// Where an address stands in the store ([`tx_standing`]).
enum Standing {
    /// Invited, under this id (or `erase::FORGOTTEN_ONLY`: forgotten, never invited).
    Held(u64),
    /// Never invited; whether its keyed id is free for its invitation.
    New { keyed_id_free: bool },
}

/// Inside a transaction: where the address whose HMAC is `key` stands —
/// its record under the keyed id, else the `recipients` entry — read once,
/// so that a new invitation learns from the same read whether it can take
/// its keyed id.
fn tx_standing(
    key: &AddressKey,
    inv: &TransactionalTree,
    rcp: &TransactionalTree,
    names: &Names,
) -> TxResult<Standing> {
    let id = keyed_id(key);
    let keyed_id_free = match inv.get(id.to_be_bytes())? {
        Some(v) => {
            let i: Invitation = tx_decode(&v, "invitation", names)?;
            if i.address_key == *key {
                return Ok(Standing::Held(id));
            }
            false
        }
        None => true,
    };
    match rcp.get(key.0)? {
        Some(v) => Ok(Standing::Held(tx_u64_from(
            &v,
            "recipients",
            "an address key",
        )?)),
        None => Ok(Standing::New { keyed_id_free }),
    }
}

/// [`tx_standing`] as the id of the address' invitation, if it has one.
fn tx_invitation_of(
    key: &AddressKey,
    inv: &TransactionalTree,
    rcp: &TransactionalTree,
    names: &Names,
) -> TxResult<Option<u64>> {
    Ok(match tx_standing(key, inv, rcp, names)? {
        Standing::Held(id) => Some(id),
        Standing::New { .. } => None,
    })
}

/// The invitation behind a link, inside a transaction: its key in
/// `invitations` and the record; `None` when the link is unknown, forgotten
/// or withdrawn. Shared by the answer and the one-click opt-out.
fn tx_invitation_by_token(
    tok: &TransactionalTree,
    inv: &TransactionalTree,
    key: &LinkKey,
    names: &Names,
) -> TxResult<Option<(sled::IVec, Invitation)>> {
    let entry = tok.get(key.hash.0)?;
    let id = match (key.invitation, entry) {
        (_, Some(e)) if matches!(tx_u64_from(&e, "tokens", "a link")?, FORGOTTEN | WITHDRAWN) => {
            return Ok(None)
        }
        (Some(id), _) => sled::IVec::from(&id.to_be_bytes()),
        (None, Some(id)) => id,
        (None, None) => return Ok(None),
    };
    let Some(v) = inv.get(&id)? else {
        return Ok(None);
    };
    let i: Invitation = tx_decode(&v, "invitation", names)?;
    // A link carrying an id is that invitation's only with its token.
    let theirs = key.invitation.is_none() || i.token_hash == key.hash;
    Ok(theirs.then_some((id, i)))
}

#[cfg(test)]
pub(in crate::store) mod tests {
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

    /// Every invitation, by address (the store keeps them in the order of
    /// their keyed ids; these tests give their addresses in order, and some
    /// have Message-IDs that carry the keyed id, so `erase::tests::all`'s
    /// order by Message-ID would not do).
    fn by_address(store: &Store) -> Vec<Invitation> {
        let mut all: Vec<Invitation> = store.invitations().map(|i| i.unwrap()).collect();
        all.sort_by_key(|i| i.address.as_ref().map(|a| a.to_string()));
        all
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

    /// An invitation is keyed by its address (schema 3): one record, no
    /// `recipients` entry. Two addresses whose keys share a keyed id (forced
    /// here; about once in 10⁷ at a million invitations) are both invited,
    /// the second under an id from sled's counter found through
    /// `recipients`, and neither is invited again nor confused with the
    /// other.
    #[test]
    fn invitations_are_keyed_by_their_address_and_a_shared_keyed_id_falls_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let key = HmacKey::from_bytes(&[7; 32]);
        let mut u = unit(&key, &["a@x.dk", "b@x.dk"], 1);
        // b's HMAC made to begin as a's: the same keyed id.
        let a_key = u.invitations[0].address_key;
        let mut b_key = u.invitations[1].address_key;
        b_key.0[..8].copy_from_slice(&a_key.0[..8]);
        u.invitations[1].address_key = b_key;
        assert_eq!(keyed_id(&a_key), keyed_id(&b_key));
        store.commit_ingest(&u, &|_: &CommitView| None).unwrap();
        let a = store.invitation_by_address(&a_key).unwrap().unwrap();
        let b = store.invitation_by_address(&b_key).unwrap().unwrap();
        assert_eq!(a.id, keyed_id(&a_key));
        assert!(a.id >= KEYED_ID_BASE);
        assert!(b.id < KEYED_ID_BASE, "from sled's counter: {}", b.id);
        assert_eq!(a.address.as_ref().map(|x| x.as_str()), Some("a@x.dk"));
        assert_eq!(b.address.as_ref().map(|x| x.as_str()), Some("b@x.dk"));
        assert_eq!(store.recipients.len(), 1, "only b's fallback is indexed");
        // Neither is invited again, in either order.
        let mut again = unit(&key, &["b@x.dk", "a@x.dk"], 2);
        again.invitations[0].address_key = b_key;
        match store.commit_ingest(&again, &|_: &CommitView| None).unwrap() {
            Committed::Done(o) => assert!(
                o.iter()
                    .all(|o| matches!(o, InviteOutcome::AlreadyInvited(_))),
                "{o:?}"
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!(store.invitation_count(), 2);
        // A bounce naming b by address marks b, not a.
        let o = effect(
            &store,
            Effect::Bounce {
                recipients: vec![(Some(b_key), Failure::Permanent)],
                message_ids: vec![],
                by_address: true,
            },
            3,
        );
        assert_eq!(o.marked, 1);
        assert!(store.invitation(b.id).unwrap().unwrap().bounced);
        assert!(!store.invitation(a.id).unwrap().unwrap().bounced);
        // Someone else, whose keyed id is free: keyed, no entry.
        let c = new_inv(&key, "c@x.dk");
        let c_key = c.address_key;
        let mut u = unit(&key, &[], 4);
        u.invitations.push(c);
        store.commit_ingest(&u, &|_: &CommitView| None).unwrap();
        let c = store.invitation_by_address(&c_key).unwrap().unwrap();
        assert_eq!(c.id, keyed_id(&c_key));
        assert_eq!(store.recipients.len(), 1);
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
        let invs = by_address(&store);
        assert!(matches!(invs[0].delivery, Delivery::Sent { .. }));
        assert!(
            matches!(invs[1].delivery, Delivery::Failed { ref reason, .. } if reason.contains("550"))
        );
    }

    /// Commits `effect` as the message `seen` (a fresh seen key per byte).
    pub(in crate::store) fn effect(store: &Store, effect: Effect, seen: u8) -> EffectOutcome {
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
        // Names the Message-ID's invitee, only delayed, and someone else
        // failed for good: the name that agrees with the Message-ID decides
        // (e@x.dk is not marked), never the worst failure of another.
        store
            .commit_ingest(&unit(&key, &["e@x.dk"], 6), &|_: &CommitView| None)
            .unwrap();
        let o = effect(
            &store,
            Effect::Bounce {
                recipients: vec![
                    (k("f@x.dk"), Failure::Permanent),
                    (k("e@x.dk"), Failure::Temporary),
                ],
                message_ids: vec!["canvass.e@x.dk".into()],
                by_address: false,
            },
            7,
        );
        assert_eq!(o.marked, 0);
        let bounced: Vec<String> = by_address(&store)
            .into_iter()
            .filter(|i| i.bounced)
            .map(|i| i.address.unwrap().to_string())
            .collect();
        assert_eq!(bounced, ["a@x.dk", "c@x.dk", "d@x.dk"]);
        assert_eq!(counter_of(&store, counter::BOUNCED), 2);
        assert_eq!(counter_of(&store, counter::EXPIRED), 1);
    }

    /// A Message-ID of canvass' shape carries the invitation's id: no
    /// `msgids` entry is written, and only the whole Message-ID (random part
    /// included), or one of its reminders', leads to the invitation.
    #[test]
    fn a_message_id_carries_its_invitation_and_proves_it_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let key = HmacKey::from_bytes(&[7; 32]);
        let mut u = unit(&key, &["a@x.dk", "b@x.dk"], 1);
        for (n, i) in u.invitations.iter_mut().enumerate() {
            i.outgoing.message_id = format!("canvass.{n:024x}@siri.dk");
        }
        store.commit_ingest(&u, &|_: &CommitView| None).unwrap();
        assert_eq!(store.msgids.len(), 0);
        let invs = by_address(&store);
        let (due, _) = store.outbox_due(Utc::now(), 10).unwrap();
        for (i, item) in invs.iter().zip(&due) {
            assert_eq!(
                crate::message_id::named(&i.message_id).map(|n| n.invitation_id),
                Some(i.id)
            );
            assert_eq!(item.message_id, i.message_id, "queued under the same");
        }
        let complain = |m: &str, seen: u8| {
            effect(
                &store,
                Effect::Complaint {
                    message_ids: vec![m.to_string()],
                },
                seen,
            )
            .marked
        };
        // b's id with a guessed random part: nothing.
        let forged = crate::message_id::of_invitation(
            "canvass.ffffffffffffffffffffffff@siri.dk",
            invs[1].id,
        )
        .unwrap();
        assert_eq!(complain(&forged, 2), 0);
        // a's first reminder before any was queued: nothing.
        let reminder = crate::message_id::of_reminder(&invs[0].message_id, 1).unwrap();
        assert_eq!(complain(&reminder, 3), 0);
        let outgoing = Outgoing {
            from: "s@siri.dk".into(),
            to: vec!["a@x.dk".into()],
            message_id: reminder.clone(),
            raw: b"Subject: husk\r\n\r\n".to_vec(),
            not_before: Utc::now(),
        };
        assert!(store
            .queue_reminder(invs[0].id, &outgoing, 1, Utc::now())
            .unwrap());
        assert_eq!(store.msgids.len(), 0);
        assert_eq!(complain(&reminder, 4), 1);
        // b's own, its domain in any case: b.
        assert_eq!(
            complain(&invs[1].message_id.replace("siri.dk", "SIRI.dk"), 6),
            1
        );
        let out: Vec<bool> = store.invitations().map(|i| i.unwrap().opted_out).collect();
        assert_eq!(out, [true, true]);
    }

    /// A link carrying its invitation's id needs no `tokens` entry; it
    /// opens that invitation only with its own token, and forget / withdraw
    /// still disable it.
    #[tokio::test]
    async fn a_link_carries_its_invitation() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let key = HmacKey::from_bytes(&[7; 32]);
        let nonce = TokenNonce::generate();
        let token = Token::derive(&key, &nonce);
        let mut u = unit(&key, &["a@x.dk", "b@x.dk", "c@x.dk"], 1);
        for i in &mut u.invitations {
            i.token_nonce = Some(TokenNonce::generate());
        }
        u.invitations[0].token_hash = token.hash();
        u.invitations[0].token_nonce = Some(nonce);
        store.commit_ingest(&u, &|_: &CommitView| None).unwrap();
        assert_eq!(store.tokens.len(), 0);
        let invs = by_address(&store);
        let link = token.for_invitation(invs[0].id);
        assert!(matches!(store.link(&link).unwrap(), Link::Invitation(i) if i.id == invs[0].id));
        // Without the id, or with another invitation's: unknown.
        assert_eq!(store.link(&token).unwrap(), Link::Unknown);
        let elsewhere = token.for_invitation(invs[1].id);
        assert_eq!(store.link(&elsewhere).unwrap(), Link::Unknown);
        assert_eq!(
            store
                .submit_response(&elsewhere, responses::tests::response(), false)
                .await
                .unwrap(),
            SubmitOutcome::UnknownToken
        );
        assert_eq!(
            store.opt_out_by_token(&elsewhere).await.unwrap(),
            OptOutOutcome::Unknown
        );
        assert_eq!(
            store
                .submit_response(&link, responses::tests::response(), false)
                .await
                .unwrap(),
            SubmitOutcome::Stored
        );
        // Forgotten and withdrawn: their pages, through a tombstone entry.
        let b = parse("b@x.dk").unwrap();
        store.forget(&key.key_of(&b), &b).unwrap();
        assert_eq!(store.link(invs[1].link_key()).unwrap(), Link::Forgotten);
        let c = parse("c@x.dk").unwrap();
        store
            .withdraw(&key.key_of(&c), &c, "by mistake", Utc::now())
            .unwrap();
        assert_eq!(store.link(invs[2].link_key()).unwrap(), Link::Withdrawn);
        assert_eq!(store.tokens.len(), 2);
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
        let out: Vec<String> = by_address(&store)
            .into_iter()
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
    fn a_number_of_the_wrong_length_is_corrupt_not_zero() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.bump_counter("Fyn", counter::INVITED).unwrap();
        let key = counter_key("Fyn", counter::INVITED);
        store.counters.insert(&key, &[1u8, 2, 3]).unwrap();
        let err = store.counters().unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{text}");
        assert!(
            text.contains("counters tree, Fyn/invited: 3 bytes"),
            "{text}"
        );
        // Bumping it is refused too, and leaves the value for a look.
        assert!(matches!(
            store.bump_counter("Fyn", counter::INVITED),
            Err(StoreError::Corrupt { .. })
        ));
        assert_eq!(
            store.counters.get(&key).unwrap().unwrap().as_ref(),
            &[1, 2, 3]
        );
        // Inside a transaction: an ingest that counts the region aborts.
        let unit = IngestUnit {
            counters: vec![("Fyn".into(), counter::INVITED.into())],
            ..IngestUnit::at(Utc::now())
        };
        assert!(matches!(
            store.commit_ingest(&unit, &|_: &CommitView| None),
            Err(StoreError::Corrupt { .. })
        ));
        // A link whose entry is not an id is an error, not invitation 0.
        let hash = crate::token::Token::generate().hash();
        store.tokens.insert(hash.0, &[7u8]).unwrap();
        assert!(matches!(store.link(&hash), Err(StoreError::Corrupt { .. })));
    }

    #[test]
    fn a_schema_marker_of_the_wrong_length_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled::open(dir.path()).unwrap();
            db.open_tree("meta").unwrap().insert("schema", &[]).unwrap();
            db.flush().unwrap();
        }
        let err = Store::open(dir.path()).err().expect("refused");
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
        assert!(
            err.to_string().contains("meta tree, schema: 0 bytes"),
            "{err}"
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
