//! Counters: their names, their keys (`<region>\0<name>`), bumping one
//! inside a transaction or on its own, and reading them all. `status`, the
//! digest and the report read these instead of scanning the invitations.

use sled::transaction::TransactionalTree;

use super::{tx_u64_from, u64_from, Store, StoreError, TxResult};

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

pub(super) fn counter_key(region: &str, name: &str) -> Vec<u8> {
    let mut k = region.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(name.as_bytes());
    k
}

pub(super) fn bump(tx: &TransactionalTree, key: &[u8], by: u64) -> TxResult<u64> {
    let old = match tx.get(key)? {
        Some(v) => tx_u64_from(&v, "counters", counter_name(key))?,
        None => 0,
    };
    let new = old.saturating_add(by);
    tx.insert(key, &new.to_be_bytes())?;
    Ok(new)
}

/// How a counter's key is named in an error: `region/name`.
pub(super) fn counter_name(key: &[u8]) -> String {
    String::from_utf8_lossy(key).replace('\0', "/")
}

impl Store {
    /// All counters: (region, name, value). Region "" holds global counters.
    pub fn counters(&self) -> Result<Vec<(String, String, u64)>, StoreError> {
        let mut out = Vec::new();
        for kv in self.counters.iter() {
            let (k, v) = kv?;
            let Some(pos) = k.iter().position(|b| *b == 0) else {
                return Err(StoreError::Corrupt {
                    what: format!(
                        "counters tree, {:?}: a key without a region",
                        counter_name(&k)
                    ),
                });
            };
            let region = String::from_utf8_lossy(&k[..pos]).into_owned();
            let name = String::from_utf8_lossy(&k[pos + 1..]).into_owned();
            let n = u64_from(&v, "counters", counter_name(&k))?;
            out.push((region, name, n));
        }
        Ok(out)
    }

    /// Bumps a counter outside any other change (refusals, ignored mail).
    pub fn bump_counter(&self, region: &str, name: &str) -> Result<(), StoreError> {
        let key = counter_key(region, name);
        let mut corrupt = None;
        self.counters.update_and_fetch(&key, |old| {
            match old.map(|v| u64_from(v, "counters", counter_name(&key))) {
                None => Some(1u64.to_be_bytes().to_vec()),
                Some(Ok(n)) => Some(n.saturating_add(1).to_be_bytes().to_vec()),
                // Left as it is, and reported.
                Some(Err(e)) => {
                    corrupt = Some(e);
                    old.map(<[u8]>::to_vec)
                }
            }
        })?;
        corrupt.map_or(Ok(()), Err)
    }
}
