//! Withdrawing an invitation that should never have been made: a forged
//! consultant sender before trust was set up, a wrong address, a colleague
//! CC'd by mistake (`canvass withdraw`).
//!
//! In one transaction: the invitation's address and nonce are erased, its
//! link becomes a tombstone that shows its own page, mail queued to the
//! person is dropped, and the invitation leaves every count (invited, sent,
//! failed, bounced, opted out, answered, its week) and is counted as
//! withdrawn instead, so a withdrawn invitation is never a non-response. The
//! HMAC of the address stays: the person is not invited again. A record in
//! the `withdrawn` tree (invitation id → reason and time) makes it
//! idempotent: withdrawing twice changes nothing the second time, and keeps
//! it out of the counts later: a bounce, opt-out or complaint that arrives
//! for it afterwards changes nothing (`ingest.rs`).
//!
//! Which counters an invitation is in is mostly told by its record (sent or
//! failed, answered, bounced, opted out); what the record does not tell is
//! kept in the `counted` tree by whoever bumps it: its week when it was
//! received in another week than it was created, `expired` instead of
//! `bounced`, `complained` instead of `opted_out`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionalTree};
use sled::Transactional;

use super::erase::{dropped_entry, take_queued, tombstone_link};
use super::{
    bump, counter, counter_key, encode, tx_decode, tx_u64_from, Delivery, Invitation, Names, Store,
    StoreError, TxResult,
};
use crate::address::{Address, AddressKey};
use crate::retention;

/// The tree of withdrawals: invitation id → [`WithdrawnRecord`].
pub(super) const TREE: &str = "withdrawn";
/// The tree of counters an invitation is in that its record does not tell:
/// invitation id → their names (see the module documentation).
pub(super) const COUNTED_TREE: &str = "counted";

/// Notes, inside a transaction, that invitation `id` was counted in `name`
/// (a counter its record does not tell).
pub(super) fn note_counted(
    tx: &TransactionalTree,
    id: u64,
    name: &str,
    dictionary: &Names,
) -> TxResult<()> {
    let mut names = noted(tx, id, dictionary)?;
    if !names.iter().any(|n| n == name) {
        names.push(name.to_string());
        tx.insert(&id.to_be_bytes(), encode(&Counted(names), dictionary))?;
    }
    Ok(())
}

/// What [`note_counted`] noted for invitation `id`.
fn noted(tx: &TransactionalTree, id: u64, names: &Names) -> TxResult<Vec<String>> {
    match tx.get(id.to_be_bytes())? {
        Some(v) => Ok(tx_decode::<Counted>(&v, "counted", names)?.0),
        None => Ok(Vec::new()),
    }
}

/// The counters noted for one invitation, as stored (`record.rs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Counted(pub(super) Vec<String>);

/// Whether invitation `id` was withdrawn, inside a transaction over the
/// `withdrawn` tree.
pub(super) fn tx_is_withdrawn(tx: &TransactionalTree, id: u64) -> TxResult<bool> {
    Ok(tx.get(id.to_be_bytes())?.is_some())
}

/// Why and when an invitation was withdrawn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct WithdrawnRecord {
    pub(super) reason: String,
    pub(super) at: DateTime<Utc>,
}

/// What `withdraw` did for one address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum WithdrawOutcome {
    /// No invitation was made to this address.
    NotInvited,
    /// It was withdrawn before; nothing changed.
    AlreadyWithdrawn {
        id: u64,
        region: String,
    },
    Withdrawn(Withdrawal),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Withdrawal {
    pub id: u64,
    pub region: String,
    pub created_at: DateTime<Utc>,
    /// The invitation had been accepted by the mail server.
    pub was_sent: bool,
    /// They had answered: the (anonymous) answer stays among the answers.
    pub was_answered: bool,
    /// Queued mail to them dropped unsent: (purpose, Message-ID).
    pub dropped: Vec<(String, String)>,
    /// The link's token entry now shows the "withdrawn" page.
    pub link_disabled: bool,
}

fn unbump(tx: &TransactionalTree, region: &str, name: &str, by: u64) -> TxResult<()> {
    let key = counter_key(region, name);
    let old = match tx.get(&key)? {
        Some(v) => tx_u64_from(&v, "counters", format_args!("{region}/{name}"))?,
        None => 0,
    };
    tx.insert(key, &old.saturating_sub(by).to_be_bytes())?;
    Ok(())
}

/// The counters an invitation is counted in, as it stands, and by how much:
/// its record, and what `noted` (the `counted` tree) says its record does
/// not tell. Without a note (a store written before the tree): its week of
/// creation, `bounced`, `opted_out`.
fn counted_in(inv: &Invitation, noted: &[String]) -> Vec<(String, u64)> {
    let has = |name: &str| noted.iter().any(|n| n == name);
    let week = noted
        .iter()
        .find(|n| n.starts_with(counter::INVITED_WEEK))
        .cloned()
        .unwrap_or_else(|| counter::invited_week(inv.created_at));
    let mut names = vec![counter::INVITED.to_string(), week];
    match inv.delivery {
        Delivery::Sent { .. } => names.push(counter::SENT.to_string()),
        Delivery::Failed { .. } => names.push(counter::FAILED.to_string()),
        Delivery::Queued => {}
    }
    let bounced = if has(counter::EXPIRED) {
        counter::EXPIRED
    } else {
        counter::BOUNCED
    };
    let opted_out = if has(counter::COMPLAINED) {
        counter::COMPLAINED
    } else {
        counter::OPTED_OUT
    };
    for (flag, name) in [
        (inv.bounced, bounced),
        (inv.opted_out, opted_out),
        (inv.answered, counter::ANSWERED),
    ] {
        if flag {
            names.push(name.to_string());
        }
    }
    let mut counts: Vec<(String, u64)> = names.into_iter().map(|n| (n, 1)).collect();
    if inv.reminders > 0 {
        counts.push((counter::REMINDED.to_string(), u64::from(inv.reminders)));
    }
    counts
}

impl Store {
    /// Withdraws the invitation made to `address` (see the module
    /// documentation). The caller flushes.
    pub fn withdraw(
        &self,
        key: &AddressKey,
        address: &Address,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<WithdrawOutcome, StoreError> {
        let Some(id) = self.invitation_id_of(key)? else {
            return Ok(WithdrawOutcome::NotInvited);
        };
        let (items, _) = self.queued_for(Some(id), address)?;
        let names = &self.names;
        let trees = (
            &self.invitations,
            &self.outbox,
            &self.counters,
            &self.tokens,
            &self.withdrawn,
            &self.counted,
        );
        trees
            .transaction(|(inv, out, cnt, tok, wd, ctd)| {
                let ikey = id.to_be_bytes();
                let Some(v) = inv.get(ikey)? else {
                    return Ok(WithdrawOutcome::NotInvited);
                };
                let mut invitation: Invitation = tx_decode(&v, "invitation", names)?;
                if wd.get(ikey)?.is_some() {
                    return Ok(WithdrawOutcome::AlreadyWithdrawn {
                        id,
                        region: invitation.region,
                    });
                }
                let region = invitation.region.clone();
                for (name, by) in counted_in(&invitation, &noted(ctd, id, names)?) {
                    unbump(cnt, &region, &name, by)?;
                }
                bump(cnt, &counter_key(&region, counter::WITHDRAWN), 1)?;
                let dropped = take_queued(out, &items, names)?
                    .into_iter()
                    .map(dropped_entry)
                    .collect();
                let link_disabled =
                    tombstone_link(tok, &invitation.token_hash, id, super::WITHDRAWN)?;
                let outcome = Withdrawal {
                    id,
                    region,
                    created_at: invitation.created_at,
                    was_sent: matches!(invitation.delivery, Delivery::Sent { .. }),
                    was_answered: invitation.answered,
                    dropped,
                    link_disabled,
                };
                retention::erase(&mut invitation);
                inv.insert(&ikey, encode(&invitation, names))?;
                let record = WithdrawnRecord {
                    reason: reason.to_string(),
                    at,
                };
                wd.insert(&ikey, encode(&record, names))?;
                Ok::<_, ConflictableTransactionError<StoreError>>(WithdrawOutcome::Withdrawn(
                    outcome,
                ))
            })
            .map_err(StoreError::from)
    }

    /// Whether the invitation `id` was withdrawn.
    pub fn is_withdrawn(&self, id: u64) -> Result<bool, StoreError> {
        Ok(self.withdrawn.contains_key(id.to_be_bytes())?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::parse;
    use crate::store::erase::tests::{invite, key};
    use crate::store::tests::effect;
    use crate::store::{CommitView, Committed, Effect, Failure, IngestUnit, InviteOutcome, Link};

    fn count(store: &Store, name: &str) -> u64 {
        store
            .counters()
            .unwrap()
            .iter()
            .filter(|(r, n, _)| r == "Sjælland" && n == name)
            .map(|(_, _, v)| *v)
            .sum()
    }

    fn counts(store: &Store) -> [u64; 4] {
        [
            count(store, counter::INVITED),
            count(store, counter::SENT),
            count(store, counter::ANSWERED),
            count(store, counter::WITHDRAWN),
        ]
    }

    #[tokio::test]
    async fn a_withdrawn_invitation_leaves_every_count_and_its_link_and_queue() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        invite(&store, &["a@x.dk", "b@x.dk", "c@x.dk"], 1);
        // a was sent and answered; b waits in the outbox; c was sent.
        let (due, _) = store.outbox_due(Utc::now(), 10).unwrap();
        for to in ["a@x.dk", "c@x.dk"] {
            let item = due.iter().find(|i| i.to == [to]).unwrap();
            store.mark_sent(item, Utc::now()).unwrap();
        }
        let a = parse("a@x.dk").unwrap();
        let a_inv = store
            .invitation_by_address(&key().key_of(&a))
            .unwrap()
            .unwrap();
        let week = counter::invited_week(a_inv.created_at);
        let answer = crate::store::StoredResponse {
            survey_id: "s".into(),
            survey_version: 1,
            region: None,
            day: a_inv.created_at.date_naive(),
            answers: Default::default(),
        };
        let stored = store.submit_response(a_inv.link_key(), answer, false).await;
        assert_eq!(stored.unwrap(), crate::store::SubmitOutcome::Stored);
        assert_eq!(counts(&store), [3, 2, 1, 0]);
        assert_eq!(count(&store, &week), 3);

        let at = Utc::now();
        let WithdrawOutcome::Withdrawn(w) = store
            .withdraw(&key().key_of(&a), &a, "forged sender", at)
            .unwrap()
        else {
            panic!("withdrawn")
        };
        assert!(w.was_sent && w.was_answered && w.link_disabled && w.dropped.is_empty());
        assert_eq!(
            counts(&store),
            [2, 1, 0, 1],
            "out of invited, sent and answered"
        );
        assert_eq!(count(&store, &week), 2, "and out of its week");
        assert_eq!(store.link(a_inv.link_key()).unwrap(), Link::Withdrawn);
        let after = store.invitation(a_inv.id).unwrap().unwrap();
        assert_eq!((after.address, after.token_nonce), (None, None));
        assert!(store.is_withdrawn(a_inv.id).unwrap());

        // Twice: nothing changes.
        assert_eq!(
            store.withdraw(&key().key_of(&a), &a, "again", at).unwrap(),
            WithdrawOutcome::AlreadyWithdrawn {
                id: a_inv.id,
                region: "Sjælland".into()
            }
        );
        assert_eq!(counts(&store), [2, 1, 0, 1]);

        // b's queued invitation is dropped unsent.
        let b = parse("b@x.dk").unwrap();
        let WithdrawOutcome::Withdrawn(w) = store
            .withdraw(&key().key_of(&b), &b, "wrong address", at)
            .unwrap()
        else {
            panic!("withdrawn")
        };
        assert!(!w.was_sent);
        assert_eq!(w.dropped.len(), 1);
        assert_eq!(w.dropped[0].0, "invitation");
        assert_eq!(store.outbox_len(), 0);
        assert_eq!(counts(&store), [1, 1, 0, 2]);

        // Never invited again; someone never invited has nothing to withdraw.
        match invite(&store, &["a@x.dk", "b@x.dk"], 2) {
            Committed::Done(o) => assert!(o
                .iter()
                .all(|o| matches!(o, InviteOutcome::AlreadyInvited(_)))),
            other => panic!("{other:?}"),
        }
        let z = parse("z@x.dk").unwrap();
        assert_eq!(
            store.withdraw(&key().key_of(&z), &z, "x", at).unwrap(),
            WithdrawOutcome::NotInvited
        );
    }

    /// Sjælland's counters that are not zero.
    fn nonzero(store: &Store) -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> = store
            .counters()
            .unwrap()
            .into_iter()
            .filter(|(r, _, v)| r == "Sjælland" && *v > 0)
            .map(|(_, n, v)| (n, v))
            .collect();
        v.sort();
        v
    }

    fn withdraw(store: &Store, a: &str) {
        let addr = parse(a).unwrap();
        let outcome = store
            .withdraw(&key().key_of(&addr), &addr, "mistake", Utc::now())
            .unwrap();
        assert!(
            matches!(outcome, WithdrawOutcome::Withdrawn(_)),
            "{outcome:?}"
        );
    }

    /// The counters an invitation's record does not tell (its week of
    /// receipt, expired rather than bounced, complained rather than opted
    /// out) are the ones withdrawing takes it out of; and return mail that
    /// arrives for it afterwards counts it nowhere again.
    #[test]
    fn a_withdrawn_invitation_leaves_exactly_its_counts_and_later_return_mail_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        // a was received eight days before it was read: counted in that week.
        let received = Utc::now() - chrono::Duration::days(8);
        let late = IngestUnit {
            received_at: Some(received),
            ..crate::store::erase::tests::unit(&["a@x.dk"], 1, "Sjælland")
        };
        store.commit_ingest(&late, &|_: &CommitView| None).unwrap();
        invite(&store, &["b@x.dk", "c@x.dk", "d@x.dk"], 2);
        let (due, _) = store.outbox_due(Utc::now(), 10).unwrap();
        store.mark_sent_all(&due, Utc::now()).unwrap();
        // b's mail server gave up (expired); c complained of spam.
        let mid = |a: &str| vec![format!("canvass.{a}")];
        effect(
            &store,
            Effect::Bounce {
                recipients: vec![(None, Failure::Expired)],
                message_ids: mid("b@x.dk"),
                by_address: false,
            },
            3,
        );
        effect(
            &store,
            Effect::Complaint {
                message_ids: mid("c@x.dk"),
            },
            4,
        );
        let counted = nonzero(&store);
        for (name, n) in [
            (counter::invited_week(received), 1),
            (counter::EXPIRED.to_string(), 1),
            (counter::COMPLAINED.to_string(), 1),
            (counter::SENT.to_string(), 4),
        ] {
            assert!(counted.contains(&(name.clone(), n)), "{name}: {counted:?}");
        }
        assert!(!counted
            .iter()
            .any(|(n, _)| n == counter::BOUNCED || n == counter::OPTED_OUT));

        for a in ["a@x.dk", "b@x.dk", "c@x.dk", "d@x.dk"] {
            withdraw(&store, a);
        }
        assert_eq!(
            nonzero(&store),
            [(counter::WITHDRAWN.to_string(), 4)],
            "in no count but withdrawn"
        );

        // Afterwards: d's bounce (by Message-ID and by address), an opt-out
        // and a complaint are about a withdrawn invitation: nothing changes.
        let d = key().key_of(&parse("d@x.dk").unwrap());
        for (n, e) in [
            Effect::Bounce {
                recipients: vec![(Some(d), Failure::Permanent)],
                message_ids: mid("d@x.dk"),
                by_address: false,
            },
            Effect::Bounce {
                recipients: vec![(Some(d), Failure::Expired)],
                message_ids: vec![],
                by_address: true,
            },
            Effect::OptOut {
                from: d,
                message_ids: mid("d@x.dk"),
            },
            Effect::Complaint {
                message_ids: mid("d@x.dk"),
            },
        ]
        .into_iter()
        .enumerate()
        {
            let o = effect(&store, e, 10 + n as u8);
            assert_eq!(o.marked, 0, "effect {n}");
        }
        assert_eq!(nonzero(&store), [(counter::WITHDRAWN.to_string(), 4)]);
        let inv = store.invitation_by_address(&d).unwrap().unwrap();
        assert!(!inv.bounced && !inv.opted_out);
    }
}
