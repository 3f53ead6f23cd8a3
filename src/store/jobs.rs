//! Scheduled jobs' persisted state, and the invitation changes they make
//! (reminders). A job records its last completed slot so a restart neither
//! skips nor repeats it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sled::Transactional;

use super::{
    bump, counter, counter_key, decode, encode, outbox_item, tx_decode, Invitation, Outgoing,
    Purpose, Store, StoreError,
};

/// What a scheduled job remembers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobState {
    /// The last slot completed (or the instant the job was first seen).
    pub last: Option<DateTime<Utc>>,
    /// Job-specific data (the digest's snapshot), as JSON.
    pub data: Option<String>,
}

impl Store {
    pub fn job_state(&self, name: &str) -> Result<JobState, StoreError> {
        Ok(self
            .jobs
            .get(name)?
            .map(|v| decode(&v, "job state", &self.names))
            .transpose()?
            .unwrap_or_default())
    }

    /// Records a completed slot; flushed, so a crash after this never repeats it.
    pub async fn set_job_state(&self, name: &str, state: &JobState) -> Result<(), StoreError> {
        self.jobs.insert(name, encode(state, &self.names))?;
        self.flush().await
    }

    /// Queues a reminder for an invitation if it is still due one (not
    /// answered, opted out or bounced; fewer than `max` before), counting it.
    /// Returns whether it was queued.
    pub fn queue_reminder(
        &self,
        invitation_id: u64,
        outgoing: &Outgoing,
        max: u32,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let trees = (
            &self.invitations,
            &self.outbox,
            &self.counters,
            &self.msgids,
        );
        let names = &self.names;
        trees
            .transaction(|(inv, out, cnt, mid)| {
                let key = invitation_id.to_be_bytes();
                let Some(v) = inv.get(key)? else {
                    return Ok(false);
                };
                let mut invitation: Invitation = tx_decode(&v, "invitation", names)?;
                if invitation.answered
                    || invitation.opted_out
                    || invitation.bounced
                    || invitation.reminders >= max
                {
                    return Ok(false);
                }
                invitation.reminders += 1;
                invitation.last_reminder_at = Some(now);
                inv.insert(&key, encode(&invitation, names))?;
                let id = out.generate_id()?;
                let item = outbox_item(id, Purpose::Reminder { invitation_id }, outgoing);
                out.insert(&id.to_be_bytes(), encode(&item, names))?;
                // A reminder's Message-ID carries the invitation's id and
                // its number (message_id.rs); one of another shape is indexed.
                let carried = crate::message_id::named(&outgoing.message_id)
                    .is_some_and(|n| n.invitation_id == invitation_id && n.reminder > 0);
                if !carried {
                    mid.insert(outgoing.message_id.as_bytes(), &key)?;
                }
                bump(cnt, &counter_key(&invitation.region, counter::REMINDED), 1)?;
                Ok(true)
            })
            .map_err(StoreError::from)
    }

    /// Drops an outbox item without sending it (a reminder no longer due).
    pub fn drop_outbox_item(&self, id: u64) -> Result<(), StoreError> {
        self.outbox.remove(id.to_be_bytes())?;
        Ok(())
    }
}
