//! One-click opt-out (RFC 8058): the person behind a link says they do not
//! want to take part. The same `opted_out` mark and counter as an "afmeld"
//! reply (`Effect::OptOut`), set in one transaction and flushed before the
//! page says it is done.

use sled::Transactional;

use super::{bump, counter, counter_key, encode, tx_invitation_by_token, Store, StoreError};
use crate::token::LinkKey;

/// What a one-click opt-out did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptOutOutcome {
    OptedOut,
    /// Opted out before (by reply or link): nothing changed.
    AlreadyOptedOut,
    /// The link is unknown, forgotten (`forget`) or withdrawn (`withdraw`).
    Unknown,
}

impl Store {
    /// Marks the invitation behind `token` opted out, counted once per
    /// invitation, and flushes.
    pub async fn opt_out_by_token(
        &self,
        token: impl Into<LinkKey>,
    ) -> Result<OptOutOutcome, StoreError> {
        let token = token.into();
        let trees = (&self.tokens, &self.invitations, &self.counters);
        let outcome = trees.transaction(|(tok, inv, cnt)| {
            let Some((id, mut invitation)) = tx_invitation_by_token(tok, inv, &token, &self.names)?
            else {
                return Ok(OptOutOutcome::Unknown);
            };
            if invitation.opted_out {
                return Ok(OptOutOutcome::AlreadyOptedOut);
            }
            invitation.opted_out = true;
            inv.insert(&id, encode(&invitation, &self.names))?;
            bump(cnt, &counter_key(&invitation.region, counter::OPTED_OUT), 1)?;
            Ok(OptOutOutcome::OptedOut)
        })?;
        if outcome == OptOutOutcome::OptedOut {
            self.flush().await?;
        }
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::responses::tests::invite;
    use crate::token::Token;

    #[tokio::test]
    async fn opting_out_by_link_marks_and_counts_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let token = invite(&store, "a@kommune.dk");
        let h = token.hash();
        assert_eq!(
            store.opt_out_by_token(&h).await.unwrap(),
            OptOutOutcome::OptedOut
        );
        assert_eq!(
            store.opt_out_by_token(&h).await.unwrap(),
            OptOutOutcome::AlreadyOptedOut
        );
        assert_eq!(
            store
                .opt_out_by_token(&Token::generate().hash())
                .await
                .unwrap(),
            OptOutOutcome::Unknown
        );
        let n: u64 = store
            .counters()
            .unwrap()
            .iter()
            .filter(|(r, n, _)| r == "Syddanmark" && n == counter::OPTED_OUT)
            .map(|c| c.2)
            .sum();
        assert_eq!(n, 1);
    }
}
