//! Anonymous answers. An answer is stored under a random key, apart from its
//! invitation: it carries no token, no address, no IP and no time finer than
//! the day. The invitation only learns "answered". Saving the answer and
//! marking the invitation are one transaction, so nobody can answer twice and
//! an acknowledged answer is never half-stored.

use chrono::NaiveDate;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sled::Transactional;

use super::{
    bump, counter, counter_key, decode, encode, record, tx_invitation_by_token, Store, StoreError,
};
use crate::answer::Answers;
use crate::token::LinkKey;

/// An answer as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredResponse {
    pub survey_id: String,
    pub survey_version: u32,
    /// The invitation's region, when the config keeps regions on answers.
    pub region: Option<String>,
    /// The day of the answer (Europe/Copenhagen); never a finer time.
    pub day: NaiveDate,
    pub answers: Answers,
}

/// What became of a submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubmitOutcome {
    Stored,
    AlreadyAnswered,
    UnknownToken,
    OptedOut,
}

impl Store {
    /// Stores `response` for the invitation behind `token` and marks it
    /// answered, in one transaction; then flushes to disk. Only after this
    /// returns `Stored` may the respondent be thanked.
    ///
    /// With `keep_region`, the invitation's region is kept on the answer (the
    /// agency reports per region); otherwise the answer has none.
    pub async fn submit_response(
        &self,
        token: impl Into<LinkKey>,
        response: StoredResponse,
        keep_region: bool,
    ) -> Result<SubmitOutcome, StoreError> {
        let token = token.into();
        let names = &self.names;
        record::intern_response(&response, names)?;
        let mut key = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut key);
        let trees = (
            &self.tokens,
            &self.invitations,
            &self.responses,
            &self.counters,
        );
        let outcome = trees.transaction(|(tok, inv, resp, cnt)| {
            let Some((id, mut invitation)) = tx_invitation_by_token(tok, inv, &token, names)?
            else {
                return Ok(SubmitOutcome::UnknownToken);
            };
            if invitation.answered {
                return Ok(SubmitOutcome::AlreadyAnswered);
            }
            // An opt-out stops reminders; the person may still answer.
            invitation.answered = true;
            inv.insert(&id, encode(&invitation, names))?;
            let stored = StoredResponse {
                region: keep_region.then(|| invitation.region.clone()),
                ..response.clone()
            };
            resp.insert(&key, encode(&stored, names))?;
            bump(cnt, &counter_key(&invitation.region, counter::ANSWERED), 1)?;
            Ok(SubmitOutcome::Stored)
        })?;
        if outcome == SubmitOutcome::Stored {
            self.flush().await?;
        }
        Ok(outcome)
    }

    /// Every stored answer, in key (random) order.
    pub fn responses(&self) -> impl Iterator<Item = Result<StoredResponse, StoreError>> + '_ {
        self.responses.iter().map(|kv| {
            let (_, v) = kv?;
            decode(&v, "response", &self.names)
        })
    }

    pub fn response_count(&self) -> usize {
        self.responses.len()
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::address::{parse, HmacKey};
    use crate::answer::Value;
    use crate::store::{IngestUnit, NewInvitation, Outgoing};
    use crate::token::Token;
    use chrono::Utc;

    /// One invitation to `addr` in Syddanmark; its link's token.
    pub(in crate::store) fn invite(store: &Store, addr: &str) -> Token {
        let key = HmacKey::from_bytes(&[3; 32]);
        let token = Token::generate();
        let address = parse(addr).unwrap();
        let unit = IngestUnit {
            region: "Syddanmark".into(),
            invitations: vec![NewInvitation {
                address_key: key.key_of(&address),
                token_hash: token.hash(),
                token_nonce: None,
                outgoing: Outgoing {
                    from: "s@siri.dk".into(),
                    to: vec![addr.into()],
                    message_id: "m".into(),
                    raw: vec![],
                    not_before: Utc::now(),
                },
                address,
            }],
            ..IngestUnit::at(Utc::now())
        };
        store
            .commit_ingest(&unit, &|_: &crate::store::CommitView| None)
            .unwrap();
        token
    }

    pub(in crate::store) fn response() -> StoredResponse {
        let mut answers = Answers::new();
        answers.insert(
            "kommentarer".into(),
            Value::Text {
                text: "Tak for hjælpen 👍 æøå".into(),
            },
        );
        StoredResponse {
            survey_id: "s".into(),
            survey_version: 1,
            region: None,
            day: NaiveDate::from_ymd_opt(2024, 8, 20).unwrap(),
            answers,
        }
    }

    #[tokio::test]
    async fn answer_once_then_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let token = invite(&store, "a@x.dk");
        assert_eq!(
            store
                .submit_response(&token.hash(), response(), true)
                .await
                .unwrap(),
            SubmitOutcome::Stored
        );
        assert_eq!(
            store
                .submit_response(&token.hash(), response(), true)
                .await
                .unwrap(),
            SubmitOutcome::AlreadyAnswered
        );
        assert_eq!(
            store
                .submit_response(&Token::generate().hash(), response(), true)
                .await
                .unwrap(),
            SubmitOutcome::UnknownToken
        );
        let stored: Vec<StoredResponse> = store.responses().map(|r| r.unwrap()).collect();
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].region.as_deref(), Some("Syddanmark"));
        assert_eq!(stored[0].answers, response().answers);
        assert!(
            store
                .invitation_by_token(&token.hash())
                .unwrap()
                .unwrap()
                .answered
        );
    }

    #[tokio::test]
    async fn region_can_be_left_off() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let token = invite(&store, "a@x.dk");
        store
            .submit_response(&token.hash(), response(), false)
            .await
            .unwrap();
        let stored: Vec<StoredResponse> = store.responses().map(|r| r.unwrap()).collect();
        assert_eq!(stored[0].region, None);
    }
}
