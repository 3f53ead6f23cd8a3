//! One-click opt-out (RFC 8058): the person behind a link says they do not
//! want to take part. The same `opted_out` mark and counter as an "afmeld"
//! reply (`Effect::OptOut`), set in one transaction and flushed before the
//! page says it is done.

use sled::Transactional;

use super::{bump, counter, counter_key, encode, tx_decode, u64_from, Invitation, Store, StoreError, WITHDRAWN};
use crate::token::TokenHash;

/// What a one-click opt-out did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptOutOutcome {
    OptedOut,
    /// Opted out before (by reply or link): nothing changed.
    AlreadyOptedOut,
    /// The link is unknown or withdrawn (`forget`).
    Unknown,
}

impl Store {
    /// Marks the invitation behind `token` opted out, counted once per
    /// invitation, and flushes.
    pub async fn opt_out_by_token(&self, token: &TokenHash) -> Result<OptOutOutcome, StoreError> {
        let trees = (&self.tokens, &self.invitations, &self.counters);
        let outcome = trees.transaction(|(tok, inv, cnt)| {
            let Some(id) = tok.get(token.0)? else {
                return Ok(OptOutOutcome::Unknown);
            };
            if u64_from(&id) == WITHDRAWN {
                return Ok(OptOutOutcome::Unknown);
            }
            let Some(v) = inv.get(&id)? else {
                return Ok(OptOutOutcome::Unknown);
            };
            let mut invitation: Invitation = tx_decode(&v, "invitation")?;
            if invitation.opted_out {
                return Ok(OptOutOutcome::AlreadyOptedOut);
            }
            invitation.opted_out = true;
            inv.insert(&id, encode(&invitation))?;
            bump(cnt, &counter_key(&invitation.region, counter::OPTED_OUT), 1)?;
            Ok(OptOutOutcome::OptedOut)
        })?;
        if outcome == OptOutOutcome::OptedOut {
            self.flush().await?;
        }
        Ok(outcome)
    }
}
