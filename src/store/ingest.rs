//! What the ingest loop writes: the sources' marks, and the commit of a batch
//! of processed messages — their invitations with the queued mail, counters,
//! the "seen" notes and marks, and their effects on invitations already sent
//! (bounces, opt-outs, complaints, replies), matched by canvass Message-ID or
//! address key. All of a batch in one transaction.

use chrono::NaiveDate;
use sled::transaction::TransactionalTree;
use sled::Transactional;

use super::withdraw::{note_counted, tx_is_withdrawn};
use super::{
    bump, counter, counter_key, decode, encode, keyed_id, outbox_item, tx_decode, tx_invitation_of,
    tx_standing, tx_u64_from, CommitView, Committed, Delivery, Effect, EffectOutcome, Failure,
    IngestMark, IngestUnit, Invitation, InviteOutcome, Names, Outgoing, Purpose, Standing, Store,
    StoreError, TxResult,
};
use crate::address::AddressKey;

impl Store {
    /// The mark of a mail source.
    pub fn ingest_mark(&self, source: &str) -> Result<Option<IngestMark>, StoreError> {
        self.ingest
            .get(format!("mark:{source}"))?
            .map(|v| decode(&v, "ingest mark", &self.names))
            .transpose()
    }

    /// Resets a source's mark (UIDVALIDITY changed).
    pub fn set_ingest_mark(&self, source: &str, mark: IngestMark) -> Result<(), StoreError> {
        self.ingest
            .insert(format!("mark:{source}"), encode(&mark, &self.names))?;
        Ok(())
    }

    /// Commits one processed message: its invitations (those never invited
    /// before, within the daily cap) with their queued messages, its counters, the
    /// source mark and the "seen" note, all or nothing. `respond` renders the
    /// reply (the consultant's confirmation, or the answer to an effect's
    /// sender) from what was committed; it is queued in the same transaction.
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
            &self.withdrawn,
            &self.counted,
        );
        // The names the new invitations use, before the transaction (record.rs).
        for (unit, _) in units {
            if unit.invitations.is_empty() {
                continue;
            }
            self.names.intern(&unit.region)?;
            if let Some(c) = &unit.consultant {
                self.names.intern(c.as_str())?;
            }
            for new in &unit.invitations {
                if let Some((_, domain)) = new.outgoing.message_id.split_once('@') {
                    self.names.intern(domain)?;
                }
            }
        }
        let names = &*self.names;
        let result = trees.transaction(|(inv, rcp, tok, out, ing, cnt, mid, wd, ctd)| {
            let t = IngestTrees {
                names,
                inv,
                rcp,
                tok,
                out,
                ing,
                cnt,
                mid,
                wd,
                ctd,
            };
            let mut all = Vec::with_capacity(units.len());
            for (unit, respond) in units {
                all.push(ingest_one(&t, unit, *respond)?);
            }
            Ok(all)
        });
        result.map_err(StoreError::from)
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
    names: &'a Names,
    inv: &'a TransactionalTree,
    rcp: &'a TransactionalTree,
    tok: &'a TransactionalTree,
    out: &'a TransactionalTree,
    ing: &'a TransactionalTree,
    cnt: &'a TransactionalTree,
    mid: &'a TransactionalTree,
    /// Withdrawn invitations: no effect changes them (withdraw.rs).
    wd: &'a TransactionalTree,
    /// Counters an invitation is in that its record does not tell (withdraw.rs).
    ctd: &'a TransactionalTree,
}

/// One processed message inside an ingest transaction.
fn ingest_one(
    t: &IngestTrees<'_>,
    unit: &IngestUnit,
    respond: Responder<'_>,
) -> TxResult<Committed> {
    let IngestTrees {
        names,
        inv,
        rcp,
        tok,
        out,
        ing,
        cnt,
        mid,
        ctd,
        ..
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
        ing.insert(format!("mark:{source}").as_bytes(), encode(mark, names))?;
    }
    for (region, name) in &unit.counters {
        bump(cnt, &counter_key(region, name), 1)?;
    }
    if let Some(effect) = &unit.effect {
        let (outcome, matched) = apply_effect(effect, t)?;
        if let Some((purpose, msg)) = respond(&CommitView {
            outcomes: &[],
            matched: matched.as_ref(),
        }) {
            let outbox_id = out.generate_id()?;
            let item = outbox_item(outbox_id, purpose, &msg);
            out.insert(&outbox_id.to_be_bytes(), encode(&item, names))?;
        }
        return Ok(Committed::Effect(outcome));
    }
    let mut used_today = match &unit.daily_cap {
        Some((key, _)) => match cnt.get(counter_key("", key))? {
            Some(v) => tx_u64_from(&v, "counters", key)?,
            None => 0,
        },
        None => 0,
    };
    let mut outcomes = Vec::with_capacity(unit.invitations.len());
    let mut over_cap = false;
    for new in &unit.invitations {
        let keyed_id_free = match tx_standing(&new.address_key, inv, rcp, names)? {
            Standing::Held(_) => {
                outcomes.push(InviteOutcome::AlreadyInvited(new.address.clone()));
                continue;
            }
            Standing::New { keyed_id_free } => keyed_id_free,
        };
        if let Some((_, cap)) = &unit.daily_cap {
            if used_today >= u64::from(*cap) {
                over_cap = true;
                outcomes.push(InviteOutcome::OverDailyCap(new.address.clone()));
                continue;
            }
        }
        used_today += 1;
        // Keyed by the address (mod.rs, `keyed_id`); if another address
        // holds that id already (about once in 10⁷ at a million), an id from
        // sled's counter, found through `recipients`.
        let id = if keyed_id_free {
            keyed_id(&new.address_key)
        } else {
            let id = inv.generate_id()?;
            rcp.insert(&new.address_key.0, &id.to_be_bytes())?;
            id
        };
        let outbox_id = out.generate_id()?;
        // The Message-ID carries the id (message_id.rs): found without an
        // index. One of another shape (never canvass' own) is indexed.
        let carried = crate::message_id::of_invitation(&new.outgoing.message_id, id);
        let outgoing = Outgoing {
            message_id: carried
                .clone()
                .unwrap_or_else(|| new.outgoing.message_id.clone()),
            ..new.outgoing.clone()
        };
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
            message_id: outgoing.message_id.clone(),
            delivery: Delivery::Queued,
            answered: false,
            opted_out: false,
            bounced: false,
            reminders: 0,
            last_reminder_at: None,
        };
        inv.insert(&id.to_be_bytes(), encode(&invitation, names))?;
        // The link carries the invitation's id (`Token::for_invitation`):
        // no index. An invitation without a nonce, whose link canvass cannot
        // write again (tests and tools hand its token out), keeps the index.
        if new.token_nonce.is_none() {
            tok.insert(&new.token_hash.0, &id.to_be_bytes())?;
        }
        if carried.is_none() {
            mid.insert(outgoing.message_id.as_bytes(), &id.to_be_bytes())?;
        }
        let item = outbox_item(
            outbox_id,
            Purpose::Invitation { invitation_id: id },
            &outgoing,
        );
        out.insert(&outbox_id.to_be_bytes(), encode(&item, names))?;
        bump(cnt, &counter_key(&unit.region, counter::INVITED), 1)?;
        let week = counter::invited_week(unit.received_at.unwrap_or(invitation.created_at));
        bump(cnt, &counter_key(&unit.region, &week), 1)?;
        if week != counter::invited_week(invitation.created_at) {
            note_counted(ctd, id, &week, names)?;
        }
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
        out.insert(&outbox_id.to_be_bytes(), encode(&item, names))?;
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
    names: &Names,
) -> TxResult<Option<(u64, Invitation)>> {
    let mut id = match key {
        Some(k) => tx_invitation_of(k, inv, rcp, names)?,
        None => None,
    };
    if id.is_none() {
        for m in message_ids {
            if let Some(found) = by_message_id(m, inv, names)? {
                return Ok(Some(found));
            }
            // A Message-ID of schema 1: the legacy index.
            if let Some(v) = mid.get(m.as_bytes())? {
                id = Some(tx_u64_from(&v, "msgids", "a Message-ID")?);
                break;
            }
        }
    }
    let Some(id) = id else { return Ok(None) };
    match inv.get(id.to_be_bytes())? {
        Some(v) => Ok(Some((id, tx_decode(&v, "invitation", names)?))),
        None => Ok(None),
    }
}

/// The invitation a Message-ID carrying its id names (message_id.rs): only
/// when the whole Message-ID is the invitation's (or one of its reminders'),
/// random part included.
fn by_message_id(
    m: &str,
    inv: &TransactionalTree,
    names: &Names,
) -> TxResult<Option<(u64, Invitation)>> {
    let Some(named) = crate::message_id::named(m) else {
        return Ok(None);
    };
    let Some(v) = inv.get(named.invitation_id.to_be_bytes())? else {
        return Ok(None);
    };
    let i: Invitation = tx_decode(&v, "invitation", names)?;
    let own = crate::message_id::of_invitation(&i.message_id, i.id);
    let same = own.is_some_and(|o| o.eq_ignore_ascii_case(&named.invitation_message_id));
    Ok((same && named.reminder <= i.reminders).then_some((i.id, i)))
}

/// A bounce, opt-out, complaint or reply matched to its invitation. A
/// withdrawn invitation is matched (the message is about it) but never
/// changed or counted: it is in no count any more.
fn apply_effect(
    effect: &Effect,
    t: &IngestTrees<'_>,
) -> TxResult<(EffectOutcome, Option<Invitation>)> {
    let IngestTrees {
        names,
        inv,
        rcp,
        cnt,
        mid,
        wd,
        ctd,
        ..
    } = *t;
    let live = |id: u64| -> TxResult<bool> { Ok(!tx_is_withdrawn(wd, id)?) };
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
                    match match_invitation(key.as_ref(), &[], inv, rcp, mid, names)? {
                        Some((id, mut i)) => {
                            if live(id)? && mark_failed(id, &mut i, *failure, cnt, ctd, names)? {
                                inv.insert(&id.to_be_bytes(), encode(&i, names))?;
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
                        match_invitation(None, std::slice::from_ref(m), inv, rcp, mid, names)?
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
                    if let (Some(failure), true) = (named.or(worst), live(id)?) {
                        if mark_failed(id, &mut i, failure, cnt, ctd, names)? {
                            inv.insert(&id.to_be_bytes(), encode(&i, names))?;
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
            match match_invitation(key, message_ids, inv, rcp, mid, names)? {
                Some((id, mut i)) => {
                    if !i.opted_out && live(id)? {
                        i.opted_out = true;
                        inv.insert(&id.to_be_bytes(), encode(&i, names))?;
                        bump(cnt, &counter_key(&i.region, counter::OPTED_OUT), 1)?;
                        outcome.marked += 1;
                    }
                    last = Some(i);
                }
                None => outcome.unmatched += 1,
            }
        }
        Effect::Complaint { .. } | Effect::ComplaintByAddress { .. } => {
            // By the returned Message-ID, or (an authenticated configured
            // feedback-loop sender) by the address key.
            let proofs: Vec<(Option<&AddressKey>, &[String])> = match effect {
                Effect::Complaint { message_ids } => message_ids
                    .iter()
                    .map(|m| (None, std::slice::from_ref(m)))
                    .collect(),
                Effect::ComplaintByAddress { keys } => {
                    keys.iter().map(|k| (Some(k), &[][..])).collect()
                }
                _ => Vec::new(),
            };
            let mut done = Vec::new();
            for (key, ids) in proofs {
                let Some((id, mut i)) = match_invitation(key, ids, inv, rcp, mid, names)? else {
                    continue;
                };
                if done.contains(&id) {
                    continue;
                }
                done.push(id);
                if !i.opted_out && live(id)? {
                    i.opted_out = true;
                    inv.insert(&id.to_be_bytes(), encode(&i, names))?;
                    bump(cnt, &counter_key(&i.region, counter::COMPLAINED), 1)?;
                    note_counted(ctd, id, counter::COMPLAINED, names)?;
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
            let found = match match_invitation(None, message_ids, inv, rcp, mid, names)? {
                Some(f) => Some(f),
                None => match_invitation(Some(from), &[], inv, rcp, mid, names)?,
            };
            match found {
                Some((_, i)) => last = Some(i),
                None => outcome.unmatched += 1,
            }
        }
    }
    Ok((outcome, last))
}

/// Marks invitation `id` undelivered for a permanent or final failure,
/// counted "bounced" or "expired" (the latter noted in `ctd`, as its record
/// does not tell); whether it changed.
fn mark_failed(
    id: u64,
    i: &mut Invitation,
    failure: Failure,
    cnt: &TransactionalTree,
    ctd: &TransactionalTree,
    names: &Names,
) -> TxResult<bool> {
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
    if name == counter::EXPIRED {
        note_counted(ctd, id, name, names)?;
    }
    Ok(true)
}
