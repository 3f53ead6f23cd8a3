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
//! idempotent: withdrawing twice changes nothing the second time.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionalTree};
use sled::Transactional;

use super::erase::{dropped_entry, take_queued, tombstone_link};
use super::{
    bump, counter, counter_key, encode, tx_decode, tx_u64_from, Delivery, Invitation, Store,
    StoreError, TxResult,
};
use crate::address::{Address, AddressKey};
use crate::retention;

/// The tree of withdrawals: invitation id → [`WithdrawnRecord`].
pub(super) const TREE: &str = "withdrawn";

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

fn unbump(tx: &TransactionalTree, region: &str, name: &str) -> TxResult<()> {
    let key = counter_key(region, name);
    let old = match tx.get(&key)? {
        Some(v) => tx_u64_from(&v, "counters", format_args!("{region}/{name}"))?,
        None => 0,
    };
    tx.insert(key, &old.saturating_sub(1).to_be_bytes())?;
    Ok(())
}

/// The counters an invitation is counted in, as it stands.
fn counted_in(inv: &Invitation) -> Vec<String> {
    let mut names = vec![
        counter::INVITED.to_string(),
        counter::invited_week(inv.created_at),
    ];
    match inv.delivery {
        Delivery::Sent { .. } => names.push(counter::SENT.to_string()),
        Delivery::Failed { .. } => names.push(counter::FAILED.to_string()),
        Delivery::Queued => {}
    }
    for (flag, name) in [
        (inv.bounced, counter::BOUNCED),
        (inv.opted_out, counter::OPTED_OUT),
        (inv.answered, counter::ANSWERED),
    ] {
        if flag {
            names.push(name.to_string());
        }
    }
    names
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
        let withdrawn = self.db.open_tree(TREE)?;
        let names = &self.names;
        let trees = (
            &self.invitations,
            &self.outbox,
            &self.counters,
            &self.tokens,
            &withdrawn,
        );
        trees
            .transaction(|(inv, out, cnt, tok, wd)| {
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
                for name in counted_in(&invitation) {
                    unbump(cnt, &region, &name)?;
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
        Ok(self.db.open_tree(TREE)?.contains_key(id.to_be_bytes())?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::parse;
    use crate::store::erase::tests::{invite, key};
    use crate::store::{Committed, InviteOutcome, Link};

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
}
