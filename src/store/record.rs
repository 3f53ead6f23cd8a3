//! How records are stored (schema 2): every value is one version byte
//! ([`RECORD_VERSION`]) followed by bincode with variable-length integers of
//! a private *stored form*, apart from the public structs the rest of canvass
//! sees (the conversion is here and nowhere else):
//!
//! - times as integers (seconds and nanoseconds since 1970: every instant
//!   reads back exactly as it was written), a day as days since 1970;
//! - strings of a small, closed vocabulary (regions, consultants, the survey
//!   id, question and option codes) as numbers through the `names` tree
//!   ([`Names`], kept in memory): a string that was never interned is stored
//!   inline, so encoding never fails and never writes;
//! - an invitation's three flags as one byte.
//!
//! Schema 1 stored the public structs themselves, in bincode's fixed-width
//! form with times as RFC 3339 text; `v1.rs` reads those for the migration.

use std::collections::HashMap;
use std::sync::RwLock;

use bincode::Options;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use super::jobs::JobState;
use super::responses::StoredResponse;
use super::withdraw::{Counted, WithdrawnRecord};
use super::{Delivery, IngestMark, Invitation, OutboxItem, Purpose, StoreError};
use crate::address::{Address, AddressKey};
use crate::answer::Value;
use crate::token::{TokenHash, TokenNonce};

/// The version byte of every record this canvass writes.
pub(super) const RECORD_VERSION: u8 = 2;

/// The tree of interned names: u32 (BE) → the name's UTF-8 bytes, dense from 0.
pub(super) const NAMES_TREE: &str = "names";

/// At most this many names are interned; past it a new name is stored
/// inline (a bound on memory whatever a store is fed).
const MAX_NAMES: usize = 1 << 16;

/// bincode with variable-length integers (what `bincode::serialize`, used by
/// schema 1, is not), little endian, trailing bytes refused.
fn options() -> impl Options {
    bincode::DefaultOptions::new()
}

/// A record with a stored form of its own.
pub(super) trait Record: Sized {
    type Stored: Serialize + DeserializeOwned;
    fn to_stored(&self, names: &Names) -> Self::Stored;
    /// `Err`: what is wrong with the stored value.
    fn from_stored(s: Self::Stored, names: &Names) -> Result<Self, String>;
}

pub(super) fn encode<T: Record>(v: &T, names: &Names) -> Vec<u8> {
    let mut out = vec![RECORD_VERSION];
    // Plain structs without maps or custom serializers: bincode cannot fail.
    options()
        .serialize_into(&mut out, &v.to_stored(names))
        .expect("encoding a store record: a bug");
    out
}

pub(super) fn decode<T: Record>(bytes: &[u8], what: &str, names: &Names) -> Result<T, StoreError> {
    let corrupt = |e: String| StoreError::Corrupt {
        what: format!("{what}: {e}"),
    };
    match bytes.split_first() {
        Some((&RECORD_VERSION, rest)) => {
            let stored = options()
                .deserialize(rest)
                .map_err(|e| corrupt(e.to_string()))?;
            T::from_stored(stored, names).map_err(corrupt)
        }
        Some((v, _)) => Err(corrupt(format!(
            "record version {v}, this canvass reads version {RECORD_VERSION}"
        ))),
        None => Err(corrupt("empty record".into())),
    }
}

/// An instant: seconds and nanoseconds since 1970 (exact, total).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(super) struct Ts(i64, u32);

impl From<&DateTime<Utc>> for Ts {
    fn from(t: &DateTime<Utc>) -> Ts {
        Ts(t.timestamp(), t.timestamp_subsec_nanos())
    }
}

impl Ts {
    fn time(self) -> Result<DateTime<Utc>, String> {
        DateTime::from_timestamp(self.0, self.1)
            .ok_or_else(|| format!("{}.{:09} s is not a time", self.0, self.1))
    }
}

fn day_number(d: &NaiveDate) -> i32 {
    (*d - NaiveDate::default()).num_days() as i32
}

fn day_of(n: i32) -> Result<NaiveDate, String> {
    NaiveDate::default()
        .checked_add_signed(chrono::Duration::days(i64::from(n)))
        .ok_or_else(|| format!("day {n} is not a date"))
}

/// A string of the closed vocabulary: its number in `names`, or itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) enum Name {
    Id(u32),
    Text(String),
}

#[derive(Default)]
struct Maps {
    ids: HashMap<String, u32>,
    names: Vec<String>,
}

/// The `names` tree, cached in memory: names are only ever added.
pub(crate) struct Names {
    tree: sled::Tree,
    maps: RwLock<Maps>,
}

impl Names {
    /// Reads the `names` tree of `db` (created empty when missing).
    pub(super) fn load(db: &sled::Db) -> Result<Names, StoreError> {
        let tree = db.open_tree(NAMES_TREE)?;
        let mut maps = Maps::default();
        for kv in tree.iter() {
            let (k, v) = kv?;
            let corrupt = |why: String| StoreError::Corrupt {
                what: format!("names tree: {why}"),
            };
            let id = <[u8; 4]>::try_from(k.as_ref())
                .map(u32::from_be_bytes)
                .map_err(|_| corrupt(format!("a key of {} bytes", k.len())))?;
            if id as usize != maps.names.len() {
                return Err(corrupt(format!(
                    "name {id} where {} belongs",
                    maps.names.len()
                )));
            }
            let name = String::from_utf8(v.to_vec())
                .map_err(|_| corrupt(format!("name {id} is not UTF-8")))?;
            maps.ids.insert(name.clone(), id);
            maps.names.push(name);
        }
        Ok(Names {
            tree,
            maps: RwLock::new(maps),
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Maps> {
        self.maps.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Gives `name` a number (written to the tree) unless it has one. Called
    /// outside transactions, before the records that use it are written: a
    /// transaction that then fails leaves an unused name, which is harmless.
    pub(super) fn intern(&self, name: &str) -> Result<(), StoreError> {
        if self.read().ids.contains_key(name) {
            return Ok(());
        }
        let mut maps = self.maps.write().unwrap_or_else(|p| p.into_inner());
        if maps.ids.contains_key(name) || maps.names.len() >= MAX_NAMES {
            return Ok(());
        }
        let id = maps.names.len() as u32;
        self.tree.insert(id.to_be_bytes(), name.as_bytes())?;
        maps.ids.insert(name.to_string(), id);
        maps.names.push(name.to_string());
        Ok(())
    }

    /// How many names are interned.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.read().names.len()
    }

    fn name(&self, name: &str) -> Name {
        match self.read().ids.get(name) {
            Some(id) => Name::Id(*id),
            None => Name::Text(name.to_string()),
        }
    }

    fn text(&self, name: Name) -> Result<String, String> {
        match name {
            Name::Id(id) => self
                .read()
                .names
                .get(id as usize)
                .cloned()
                .ok_or_else(|| format!("name {id} is not in the names tree")),
            Name::Text(s) => Ok(s),
        }
    }
}

/// An address as stored (it was checked when it was first written).
fn address(s: String) -> Result<Address, String> {
    use serde::de::IntoDeserializer;
    let de: serde::de::value::StringDeserializer<serde::de::value::Error> = s.into_deserializer();
    Address::deserialize(de).map_err(|e| e.to_string())
}

#[derive(Serialize, Deserialize)]
pub(super) enum DeliveryV2 {
    Queued,
    Sent(Ts),
    Failed(Ts, String),
}

/// An invitation's Message-ID: when it carries the invitation's id
/// (`message_id.rs`), only its random half and its domain's name.
#[derive(Serialize, Deserialize)]
pub(super) enum MessageIdV2 {
    Carried([u8; 12], Name),
    Text(String),
}

const ANSWERED: u8 = 1;
const OPTED_OUT: u8 = 2;
const BOUNCED: u8 = 4;

#[derive(Serialize, Deserialize)]
pub(super) struct InvitationV2 {
    id: u64,
    address_key: AddressKey,
    address: Option<Address>,
    region: Name,
    consultant: Name,
    created_at: Ts,
    token_hash: TokenHash,
    token_nonce: Option<TokenNonce>,
    message_id: MessageIdV2,
    delivery: DeliveryV2,
    flags: u8,
    reminders: u32,
    last_reminder_at: Option<Ts>,
}

impl Record for Invitation {
    type Stored = InvitationV2;
    fn to_stored(&self, names: &Names) -> InvitationV2 {
        let flag = |set: bool, bit: u8| if set { bit } else { 0 };
        InvitationV2 {
            id: self.id,
            address_key: self.address_key,
            address: self.address.clone(),
            region: names.name(&self.region),
            consultant: names.name(self.consultant.as_str()),
            created_at: (&self.created_at).into(),
            token_hash: self.token_hash,
            token_nonce: self.token_nonce,
            message_id: match crate::message_id::compact(&self.message_id, self.id) {
                Some((random, domain)) => MessageIdV2::Carried(random, names.name(domain)),
                None => MessageIdV2::Text(self.message_id.clone()),
            },
            delivery: match &self.delivery {
                Delivery::Queued => DeliveryV2::Queued,
                Delivery::Sent { at } => DeliveryV2::Sent(at.into()),
                Delivery::Failed { at, reason } => DeliveryV2::Failed(at.into(), reason.clone()),
            },
            flags: flag(self.answered, ANSWERED)
                | flag(self.opted_out, OPTED_OUT)
                | flag(self.bounced, BOUNCED),
            reminders: self.reminders,
            last_reminder_at: self.last_reminder_at.as_ref().map(Ts::from),
        }
    }
    fn from_stored(s: InvitationV2, names: &Names) -> Result<Invitation, String> {
        if s.flags & !(ANSWERED | OPTED_OUT | BOUNCED) != 0 {
            return Err(format!("unknown flags {:#04x}", s.flags));
        }
        Ok(Invitation {
            id: s.id,
            address_key: s.address_key,
            address: s.address,
            region: names.text(s.region)?,
            consultant: address(names.text(s.consultant)?)?,
            created_at: s.created_at.time()?,
            token_hash: s.token_hash,
            token_nonce: s.token_nonce,
            message_id: match s.message_id {
                MessageIdV2::Carried(random, domain) => {
                    crate::message_id::expand(s.id, &random, &names.text(domain)?)
                }
                MessageIdV2::Text(m) => m,
            },
            delivery: match s.delivery {
                DeliveryV2::Queued => Delivery::Queued,
                DeliveryV2::Sent(at) => Delivery::Sent { at: at.time()? },
                DeliveryV2::Failed(at, reason) => Delivery::Failed {
                    at: at.time()?,
                    reason,
                },
            },
            answered: s.flags & ANSWERED != 0,
            opted_out: s.flags & OPTED_OUT != 0,
            bounced: s.flags & BOUNCED != 0,
            reminders: s.reminders,
            last_reminder_at: s.last_reminder_at.map(Ts::time).transpose()?,
        })
    }
}

/// The names an invitation's record uses: its region, and its consultant
/// (unless that is the invitee's own address, which must not outlive the
/// invitation's erasure in a tree that is never purged).
pub(super) fn intern_invitation(i: &Invitation, names: &Names) -> Result<(), StoreError> {
    names.intern(&i.region)?;
    if let Some((_, domain)) = i.message_id.split_once('@') {
        names.intern(domain)?;
    }
    if i.address.as_ref() != Some(&i.consultant) {
        names.intern(i.consultant.as_str())?;
    }
    Ok(())
}

#[derive(Serialize, Deserialize)]
pub(super) struct OutboxItemV2 {
    id: u64,
    purpose: Purpose,
    from: String,
    to: Vec<String>,
    message_id: String,
    raw: Vec<u8>,
    next_attempt: Ts,
    attempts: u32,
    last_error: Option<String>,
}

impl Record for OutboxItem {
    type Stored = OutboxItemV2;
    fn to_stored(&self, _: &Names) -> OutboxItemV2 {
        OutboxItemV2 {
            id: self.id,
            purpose: self.purpose,
            from: self.from.clone(),
            to: self.to.clone(),
            message_id: self.message_id.clone(),
            raw: self.raw.clone(),
            next_attempt: (&self.next_attempt).into(),
            attempts: self.attempts,
            last_error: self.last_error.clone(),
        }
    }
    fn from_stored(s: OutboxItemV2, _: &Names) -> Result<OutboxItem, String> {
        Ok(OutboxItem {
            id: s.id,
            purpose: s.purpose,
            from: s.from,
            to: s.to,
            message_id: s.message_id,
            raw: s.raw,
            next_attempt: s.next_attempt.time()?,
            attempts: s.attempts,
            last_error: s.last_error,
        })
    }
}

#[derive(Serialize, Deserialize)]
pub(super) enum ValueV2 {
    Single {
        code: Name,
        other: Option<String>,
    },
    Multi {
        codes: Vec<Name>,
        other: Option<String>,
    },
    Text {
        text: String,
    },
}

#[derive(Serialize, Deserialize)]
pub(super) struct ResponseV2 {
    survey_id: Name,
    survey_version: u32,
    region: Option<Name>,
    day: i32,
    answers: Vec<(Name, ValueV2)>,
}

impl Record for StoredResponse {
    type Stored = ResponseV2;
    fn to_stored(&self, names: &Names) -> ResponseV2 {
        ResponseV2 {
            survey_id: names.name(&self.survey_id),
            survey_version: self.survey_version,
            region: self.region.as_deref().map(|r| names.name(r)),
            day: day_number(&self.day),
            answers: self
                .answers
                .iter()
                .map(|(q, v)| {
                    let v = match v {
                        Value::Single { code, other } => ValueV2::Single {
                            code: names.name(code),
                            other: other.clone(),
                        },
                        Value::Multi { codes, other } => ValueV2::Multi {
                            codes: codes.iter().map(|c| names.name(c)).collect(),
                            other: other.clone(),
                        },
                        Value::Text { text } => ValueV2::Text { text: text.clone() },
                    };
                    (names.name(q), v)
                })
                .collect(),
        }
    }
    fn from_stored(s: ResponseV2, names: &Names) -> Result<StoredResponse, String> {
        let mut answers = crate::answer::Answers::new();
        for (q, v) in s.answers {
            let v = match v {
                ValueV2::Single { code, other } => Value::Single {
                    code: names.text(code)?,
                    other,
                },
                ValueV2::Multi { codes, other } => Value::Multi {
                    codes: codes
                        .into_iter()
                        .map(|c| names.text(c))
                        .collect::<Result<_, _>>()?,
                    other,
                },
                ValueV2::Text { text } => Value::Text { text },
            };
            answers.insert(names.text(q)?, v);
        }
        Ok(StoredResponse {
            survey_id: names.text(s.survey_id)?,
            survey_version: s.survey_version,
            region: s.region.map(|r| names.text(r)).transpose()?,
            day: day_of(s.day)?,
            answers,
        })
    }
}

/// The names an answer's record uses: the survey, its region, the question
/// and option codes (never the free text).
pub(super) fn intern_response(r: &StoredResponse, names: &Names) -> Result<(), StoreError> {
    names.intern(&r.survey_id)?;
    if let Some(region) = &r.region {
        names.intern(region)?;
    }
    for (q, v) in &r.answers {
        names.intern(q)?;
        match v {
            Value::Single { code, .. } => names.intern(code)?,
            Value::Multi { codes, .. } => {
                for c in codes {
                    names.intern(c)?;
                }
            }
            Value::Text { .. } => {}
        }
    }
    Ok(())
}

#[derive(Serialize, Deserialize)]
pub(super) struct JobStateV2 {
    last: Option<Ts>,
    data: Option<String>,
}

impl Record for JobState {
    type Stored = JobStateV2;
    fn to_stored(&self, _: &Names) -> JobStateV2 {
        JobStateV2 {
            last: self.last.as_ref().map(Ts::from),
            data: self.data.clone(),
        }
    }
    fn from_stored(s: JobStateV2, _: &Names) -> Result<JobState, String> {
        Ok(JobState {
            last: s.last.map(Ts::time).transpose()?,
            data: s.data,
        })
    }
}

#[derive(Serialize, Deserialize)]
pub(super) struct WithdrawnV2 {
    reason: String,
    at: Ts,
}

impl Record for WithdrawnRecord {
    type Stored = WithdrawnV2;
    fn to_stored(&self, _: &Names) -> WithdrawnV2 {
        WithdrawnV2 {
            reason: self.reason.clone(),
            at: (&self.at).into(),
        }
    }
    fn from_stored(s: WithdrawnV2, _: &Names) -> Result<WithdrawnRecord, String> {
        Ok(WithdrawnRecord {
            reason: s.reason,
            at: s.at.time()?,
        })
    }
}

impl Record for Counted {
    type Stored = Vec<String>;
    fn to_stored(&self, _: &Names) -> Vec<String> {
        self.0.clone()
    }
    fn from_stored(s: Vec<String>, _: &Names) -> Result<Counted, String> {
        Ok(Counted(s))
    }
}

impl Record for IngestMark {
    type Stored = IngestMark;
    fn to_stored(&self, _: &Names) -> IngestMark {
        *self
    }
    fn from_stored(s: IngestMark, _: &Names) -> Result<IngestMark, String> {
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_days_read_back_exactly() {
        let t = DateTime::parse_from_rfc3339("2026-12-01T22:47:03.123456789Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(Ts::from(&t).time().unwrap(), t);
        let old = DateTime::parse_from_rfc3339("1969-07-20T20:17:40.5Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(Ts::from(&old).time().unwrap(), old);
        for d in ["2026-12-01", "1970-01-01", "1900-02-28"] {
            let d: NaiveDate = d.parse().unwrap();
            assert_eq!(day_of(day_number(&d)).unwrap(), d);
        }
        assert!(Ts(i64::MAX, 0).time().is_err());
    }

    #[test]
    fn names_are_numbered_once_and_survive_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let names = Names::load(&db).unwrap();
        names.intern("Sjælland").unwrap();
        names.intern("Fyn").unwrap();
        names.intern("Sjælland").unwrap();
        assert_eq!(names.len(), 2);
        assert!(matches!(names.name("Fyn"), Name::Id(1)));
        assert!(matches!(names.name("Bornholm"), Name::Text(_)));
        let again = Names::load(&db).unwrap();
        assert_eq!(again.text(Name::Id(0)).unwrap(), "Sjælland");
        assert!(again.text(Name::Id(9)).is_err());
        // A gap in the numbers is a corrupt tree, not a shifted dictionary.
        db.open_tree(NAMES_TREE)
            .unwrap()
            .insert(7u32.to_be_bytes(), "x")
            .unwrap();
        assert!(matches!(Names::load(&db), Err(StoreError::Corrupt { .. })));
    }
}
