//! Erasing personal data from the store:
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
//!
//! Erased values may survive in sled's log segments until sled reclaims them;
//! a backup and restore (`backup.rs`) writes a store that holds none of them.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sled::transaction::{ConflictableTransactionError, TransactionalTree};
use sled::Transactional;

use super::{
    bump, counter, counter_key, decode, encode, tx_decode, tx_invitation_of, tx_u64_from, Delivery,
    Invitation, Names, OutboxItem, Purpose, Store, StoreError,
};
use crate::address::{Address, AddressKey};
use crate::retention::{self, ForgetReport, ForgottenInvitation, PurgeReport};
use crate::token::TokenHash;

/// The id under which `forget` records the HMAC of someone never invited
/// (no invitation has it: ids come from sled's counter or are keyed ids,
/// below 2^63).
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
        Ok(self.invitation_by_address(key)?.map(|i| i.id))
    }

    /// Mail queued to one person, by invitation and by recipient (belt and
    /// braces): (outbox id, purpose); and the purposes of other queued mail
    /// that names them (to staff: a confirmation, a forwarded reply).
    pub(super) fn queued_for(
        &self,
        id: Option<u64>,
        address: &Address,
    ) -> Result<QueuedFor, StoreError> {
        let names = &self.names;
        let mut items = Vec::new();
        let mut mentioned = Vec::new();
        for kv in self.outbox.iter() {
            let (_, v) = kv?;
            let item: OutboxItem = decode(&v, "outbox item", names)?;
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
                let trees = (&self.outbox, &self.invitations, &self.recipients);
                let (dropped, was_held) = trees
                    .transaction(|(out, inv, rcp)| {
                        let dropped: Vec<_> = take_queued(out, &items, &self.names)?
                            .into_iter()
                            .map(dropped_entry)
                            .collect();
                        let was_held = tx_invitation_of(key, inv, rcp, &self.names)?.is_some();
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
        let names = &self.names;
        for kv in self.outbox.iter() {
            let (_, v) = kv?;
            let item: OutboxItem = decode(&v, "outbox item", names)?;
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
        let names = &self.names;
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
                let mut invitation: Invitation = tx_decode(&v, "invitation", names)?;
                let had_address = invitation.address.is_some();
                let had_nonce = invitation.token_nonce.is_some();
                let mut changed = retention::erase(&mut invitation);
                let mut e = Erasure {
                    erased: changed,
                    ..Default::default()
                };
                for item in take_queued(out, items, names)? {
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
                    e.dropped.push(dropped_entry(item));
                }
                // A tombstone, so the link shows "forgotten" rather than
                // "unknown" (and is not rate-limited).
                let link_disabled = disable_link
                    && tombstone_link(tok, &invitation.token_hash, id, super::FORGOTTEN)?;
                if changed {
                    inv.insert(&key, encode(&invitation, names))?;
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

/// Removes the queued mail `items` from the outbox and returns what it
/// removed (an item sent meanwhile is gone already and skipped). Shared by
/// `purge`, `forget` and `withdraw`.
pub(super) fn take_queued(
    out: &TransactionalTree,
    items: &[(u64, Purpose)],
    names: &Names,
) -> Result<Vec<OutboxItem>, TxError> {
    let mut taken = Vec::new();
    for (oid, _) in items {
        if let Some(v) = out.remove(&oid.to_be_bytes())? {
            taken.push(tx_decode(&v, "outbox item", names)?);
        }
    }
    Ok(taken)
}

/// How dropped mail is reported: (purpose, Message-ID).
pub(super) fn dropped_entry(item: OutboxItem) -> (String, String) {
    (item.purpose.name().to_string(), item.message_id)
}

/// Points the link `hash` of invitation `id` at `marker` (`FORGOTTEN` or
/// `WITHDRAWN`), so it shows that page; false when the link is not (or no
/// longer) that invitation's (`hash` is the invitation's token hash).
pub(super) fn tombstone_link(
    tok: &TransactionalTree,
    hash: &TokenHash,
    id: u64,
    marker: u64,
) -> Result<bool, TxError> {
    // No entry: a link that carries its id (schema 2), whose tombstone is
    // the only entry it gets.
    if let Some(owner) = tok.get(hash.0)? {
        if tx_u64_from(&owner, "tokens", "a link")? != id {
            return Ok(false);
        }
    }
    tok.insert(&hash.0, &marker.to_be_bytes())?;
    Ok(true)
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
#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::address::{parse, HmacKey};
    use crate::store::{CommitView, Committed, IngestUnit, InviteOutcome, NewInvitation, Outgoing};
    use crate::token::{Token, TokenNonce};

    pub(in crate::store) fn key() -> HmacKey {
        HmacKey::from_bytes(&[9; 32])
    }

    pub(in crate::store) fn unit(addrs: &[&str], seen: u8, region: &str) -> IngestUnit {
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

    /// Every invitation, in the order they were made: the store keeps them
    /// in the order of their keyed ids, and these tests' Message-IDs
    /// (`canvass.<address>`) sort as their addresses were given.
    pub(in crate::store) fn all(store: &Store) -> Vec<Invitation> {
        let mut all: Vec<Invitation> = store.invitations().map(|i| i.unwrap()).collect();
        all.sort_by(|a, b| a.message_id.cmp(&b.message_id));
        all
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
            .invitation_by_token(after[1].link_key())
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
                .invitation_by_token(a_inv.link_key())
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
}
