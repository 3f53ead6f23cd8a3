//! The outbox's operations: queueing a stand-alone message, reading what is
//! due, and finishing an item — sent (removed, its invitation marked and
//! counted), failed for good, or rescheduled after a transient failure.

use chrono::{DateTime, Utc};
use sled::Transactional;

use super::{
    bump, counter, counter_key, decode, encode, tx_decode, Delivery, Invitation, OutboxItem,
    Outgoing, Purpose, Store, StoreError,
};

impl Store {
    /// Queues a stand-alone message (not tied to an invitation).
    pub fn enqueue(&self, purpose: Purpose, outgoing: &Outgoing) -> Result<u64, StoreError> {
        let id = self.db.generate_id()?;
        self.outbox.insert(
            id.to_be_bytes(),
            encode(&outbox_item(id, purpose, outgoing), &self.names),
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
        let names = &self.names;
        for kv in self.outbox.iter() {
            let (_, v) = kv?;
            let item: OutboxItem = decode(&v, "outbox item", names)?;
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

    /// The server accepted the message: it leaves the outbox, and its
    /// invitation, if it is one, is recorded and counted as sent.
    pub fn mark_sent(&self, item: &OutboxItem, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.finish(item, Delivery::Sent { at }, counter::SENT)
    }

    /// The server refused the message for good: it leaves the outbox, and
    /// its invitation, if it is one, is recorded and counted as failed.
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
        let names = &self.names;
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
                        let mut invitation: Invitation = tx_decode(&v, "invitation", names)?;
                        invitation.delivery = delivery.clone();
                        inv.insert(&ikey, encode(&invitation, names))?;
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
            let _ = self.outbox.compare_and_swap(
                key,
                Some(cur),
                Some(encode(&updated, &self.names)),
            )?;
        }
        Ok(())
    }
}

pub(super) fn outbox_item(id: u64, purpose: Purpose, o: &Outgoing) -> OutboxItem {
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
