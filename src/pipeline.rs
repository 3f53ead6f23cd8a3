//! What the loops share: the store, the HMAC key, the current config, the
//! outbox's wake-up and the metrics; and [`Pipeline::process`], the unit of
//! ingest work: classify → plan (pure, `apply::plan` with the OS RNG) →
//! commit (the store's transaction, `apply::reply` inside it) → log (once,
//! after the commit), for one message; and [`Pipeline::ready_to_send`], a
//! queued invitation rendered for the outbox.

use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use mail_parser::MessageParser;
use tokio::sync::Notify;

use crate::address::HmacKey;
use crate::apply::{self, MessageFacts};
use crate::classify::{self, Decision, Ignored};
use crate::compose::{self, ComposeError};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::{Committed, IngestMark, InviteOutcome, OutboxItem, Purpose, Store, StoreError};
use crate::token::Token;

pub struct Pipeline {
    pub store: Store,
    pub key: HmacKey,
    config: RwLock<Arc<Config>>,
    /// Rung by [`Pipeline::set_config`] for the loops that sleep long.
    reloaded: Notify,
    outbox_wake: Arc<Notify>,
    pub metrics: Arc<Metrics>,
    /// When each consultant was last sent a confirmation (memory only: a
    /// loop runs in seconds), for [`crate::loops::too_fast`].
    last_confirmation:
        std::sync::Mutex<std::collections::HashMap<crate::address::Address, DateTime<Utc>>>,
}

/// One message for [`Pipeline::process_all`].
#[derive(Debug, Clone)]
pub struct ToProcess<'a> {
    pub raw: &'a [u8],
    pub received: DateTime<Utc>,
    pub mark: Option<(String, IngestMark)>,
    pub headers_only: bool,
}

/// A message classified and planned, not yet committed.
struct Prepared {
    decision: Decision,
    facts: MessageFacts,
    plan: apply::Plan,
    received: DateTime<Utc>,
    now: DateTime<Utc>,
    headers_only: bool,
}

/// A phone contact larger than `max_message_bytes` was read without its
/// body, so its addresses are unknown: the consultant is told it was too
/// large, not that it named nobody (issue 14).
fn too_large_for_a_phone_contact(decision: &mut Decision, cfg: &Config) {
    if let Decision::Invite(t) = decision {
        if t.kind == classify::TriggerKind::PhoneContact {
            let max = match &cfg.inbound {
                crate::config::Inbound::Imap(i) => i.max_message_bytes,
                crate::config::Inbound::Maildir(m) => m.max_message_bytes,
            };
            t.unread_over_mb = Some(max / (1024 * 1024));
        }
    }
}

/// A queued item, made ready to send by [`Pipeline::ready_to_send`].
#[derive(Debug)]
pub enum Ready {
    /// With its body.
    Send(OutboxItem),
    /// An invitation whose address (or token nonce) was erased meanwhile:
    /// nothing to send.
    Gone(OutboxItem),
    /// An invitation that cannot be rendered (say, after a config change).
    Unrenderable(OutboxItem, ComposeError),
}

/// The result of processing one message, for callers that report it.
#[derive(Debug, Clone)]
pub struct Processed {
    pub decision: Decision,
    pub committed: Committed,
}

impl Pipeline {
    pub fn new(store: Store, key: HmacKey, config: Arc<Config>, metrics: Arc<Metrics>) -> Pipeline {
        Pipeline {
            store,
            key,
            config: RwLock::new(config),
            reloaded: Notify::new(),
            outbox_wake: Arc::new(Notify::new()),
            metrics,
            last_confirmation: Default::default(),
        }
    }

    /// The config in force.
    pub fn config(&self) -> Arc<Config> {
        match self.config.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replaces the config (SIGHUP), for the next message on; the outbox and
    /// the scheduler are woken to look again under the new one.
    pub fn set_config(&self, cfg: Arc<Config>) {
        match self.config.write() {
            Ok(mut c) => *c = cfg,
            Err(poisoned) => *poisoned.into_inner() = cfg,
        }
        self.reloaded.notify_waiters();
        self.wake_outbox();
    }

    /// Resolves at the next [`Pipeline::set_config`] (a reload).
    pub async fn config_changed(&self) {
        self.reloaded.notified().await
    }

    pub fn outbox_wake(&self) -> Arc<Notify> {
        self.outbox_wake.clone()
    }

    pub fn wake_outbox(&self) {
        self.outbox_wake.notify_one();
    }

    /// Classifies one raw message and commits what it asks for.
    pub fn process(
        &self,
        raw: &[u8],
        received: DateTime<Utc>,
        mark: Option<(String, IngestMark)>,
        headers_only: bool,
    ) -> Result<Processed, StoreError> {
        let cfg = self.config();
        let p = self.prepare(&cfg, raw, received, mark, headers_only);
        let committed = self.commit(&[&p.plan], &cfg, p.now)?;
        Ok(self.finish(p, one(committed)))
    }

    /// A queued item as it will be sent: an invitation queued without its
    /// body (`compose::deferred_invitation`) is rendered from its invitation
    /// (address, token nonce) with the Message-ID it was queued with, under
    /// the current config; anything else already has its body.
    pub fn ready_to_send(&self, mut item: OutboxItem) -> Result<Ready, StoreError> {
        let Purpose::Invitation { invitation_id } = item.purpose else {
            return Ok(Ready::Send(item));
        };
        if !item.raw.is_empty() {
            return Ok(Ready::Send(item));
        }
        let invitation = self.store.invitation(invitation_id)?;
        let Some((to, nonce)) = invitation.and_then(|i| Some((i.address?, i.token_nonce?))) else {
            return Ok(Ready::Gone(item));
        };
        // The link carries the invitation's id: found without an index.
        let token = Token::derive(&self.key, &nonce).for_invitation(invitation_id);
        let rendered = compose::invitation_with_id(
            &self.config(),
            &to,
            &token,
            item.message_id.clone(),
            item.next_attempt,
        );
        Ok(match rendered {
            Ok(o) => {
                item.raw = o.raw;
                Ready::Send(item)
            }
            Err(e) => Ready::Unrenderable(item, e),
        })
    }

    /// [`Pipeline::process`] for several messages, committed in one
    /// transaction (all or none; in order). The ingest loop's batch.
    pub fn process_all(&self, messages: &[ToProcess<'_>]) -> Result<Vec<Processed>, StoreError> {
        let cfg = self.config();
        let prepared: Vec<Prepared> = messages
            .iter()
            .map(|m| self.prepare(&cfg, m.raw, m.received, m.mark.clone(), m.headers_only))
            .collect();
        let plans: Vec<&apply::Plan> = prepared.iter().map(|p| &p.plan).collect();
        let committed = self.commit(&plans, &cfg, Utc::now())?;
        Ok(prepared
            .into_iter()
            .zip(committed)
            .map(|(p, c)| self.finish(p, c))
            .collect())
    }

    /// Classify and plan (no store access).
    fn prepare(
        &self,
        cfg: &Config,
        raw: &[u8],
        received: DateTime<Utc>,
        mark: Option<(String, IngestMark)>,
        headers_only: bool,
    ) -> Prepared {
        let parsed = MessageParser::default()
            .parse(raw)
            .filter(|m| classify::unreadable(m).is_none());
        let (decision, facts) = match &parsed {
            Some(msg) => {
                let message_id = msg.message_id().map(str::to_string);
                let mut decision = classify::classify(msg, received, cfg);
                if headers_only {
                    too_large_for_a_phone_contact(&mut decision, cfg);
                }
                let body_text = match decision {
                    Decision::Reply { .. } => msg.body_text(0).map(|b| b.into_owned()),
                    _ => None,
                };
                let facts = MessageFacts {
                    seen_key: Some(apply::seen_key(message_id.as_deref(), raw)),
                    message_id,
                    subject: msg.subject().map(str::to_string),
                    mark,
                    body_text,
                };
                (decision, facts)
            }
            // Unreadable: counted and its source mark kept, but no "seen"
            // note: the ingest loop moves it to the quarantine, and a
            // repaired copy is read again.
            None => (
                Decision::Ignore {
                    reason: Ignored::Unparseable,
                },
                MessageFacts {
                    message_id: header_message_id(raw),
                    seen_key: None,
                    mark,
                    ..Default::default()
                },
            ),
        };
        let now = Utc::now();
        let mut plan = apply::plan(
            &decision,
            &facts,
            received,
            now,
            cfg,
            &self.key,
            &mut rand::rngs::OsRng,
        );
        // A consultant's mail that answers canvass' own mail, or came faster
        // than a human would, gets no confirmation: no loops (src/loops.rs).
        // What it asks for is still done.
        let answers_canvass = parsed
            .as_ref()
            .and_then(|m| crate::loops::answers_canvass(m, cfg));
        let consultant = plan
            .confirmation
            .as_ref()
            .and_then(|c| c.consultant.clone());
        let loop_sign = consultant.and_then(|c| {
            answers_canvass.or_else(|| {
                let last = self
                    .last_confirmation
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&c)
                    .copied();
                crate::loops::too_fast(last, received)
            })
        });
        if let Some(why) = loop_sign {
            let region = match &decision {
                Decision::Invite(t) => t.region.clone(),
                Decision::Refuse {
                    region: Some(r), ..
                } => r.clone(),
                _ => String::new(),
            };
            tracing::warn!(message_id = facts.message_id.as_deref().unwrap_or("-"), why, "a consultant's mail answers canvass' own mail (an autoresponder?): no confirmation, counted as a loop");
            plan.confirmation = None;
            plan.unit
                .counters
                .push((region, crate::loops::COUNTER.to_string()));
            self.metrics.looped();
        }
        Prepared {
            decision,
            facts,
            plan,
            received,
            now,
            headers_only,
        }
    }

    /// Commits plans in one transaction, in order, each with the reply
    /// `apply::reply` renders from what the transaction found. Why a reply
    /// was not queued is logged here, after the commit, once: a retried
    /// transaction runs the replies again (only the last run counts).
    fn commit(
        &self,
        plans: &[&apply::Plan],
        cfg: &Config,
        now: DateTime<Utc>,
    ) -> Result<Vec<Committed>, StoreError> {
        let problems: Vec<std::sync::Mutex<Option<apply::ReplyProblem>>> =
            plans.iter().map(|_| Default::default()).collect();
        let responders: Vec<_> = plans
            .iter()
            .zip(&problems)
            .map(|(plan, problem)| {
                move |view: &crate::store::CommitView| {
                    let (reply, failed) = match apply::reply(plan, cfg, view, now) {
                        Ok(reply) => (reply, None),
                        Err(e) => (None, Some(e)),
                    };
                    *problem.lock().unwrap_or_else(|p| p.into_inner()) = failed;
                    reply
                }
            })
            .collect();
        let units: Vec<(&crate::store::IngestUnit, crate::store::Responder<'_>)> = plans
            .iter()
            .zip(&responders)
            .map(|(p, r)| (&p.unit, r as crate::store::Responder<'_>))
            .collect();
        let committed = self.store.commit_ingest_all(&units)?;
        for problem in problems {
            if let Some(e) = problem.into_inner().unwrap_or_else(|p| p.into_inner()) {
                tracing::warn!(error = %e, "reply not queued");
            }
        }
        Ok(committed)
    }

    /// Log and count what was committed.
    fn finish(&self, p: Prepared, committed: Committed) -> Processed {
        if let (Some(c), Committed::Done(outcomes)) = (&p.plan.confirmation, &committed) {
            // Whether a confirmation went out (compose's rule for CC/BCC).
            let sent = !c.only_if_refused
                || c.refused_in_part
                || outcomes
                    .iter()
                    .any(|o| matches!(o, InviteOutcome::OverDailyCap(_)));
            if let (true, Some(consultant)) = (sent, &c.consultant) {
                self.last_confirmation
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(consultant.clone(), p.now);
            }
        }
        log_decision(
            &p.decision,
            &p.facts,
            &committed,
            &p.plan.unrenderable,
            p.headers_only,
        );
        let invited = match &committed {
            Committed::Done(o) => o
                .iter()
                .filter(|o| matches!(o, InviteOutcome::Invited(_)))
                .count(),
            _ => 0,
        };
        self.metrics.ingested(invited as u64);
        self.metrics
            .set_ingest_lag_ms((p.now - p.received).num_milliseconds().max(0) as u64);
        Processed {
            decision: p.decision,
            committed,
        }
    }
}

/// The one outcome of a one-plan commit.
fn one(mut committed: Vec<Committed>) -> Committed {
    committed.pop().expect("one outcome per plan: a bug")
}

/// The Message-ID of a message mail-parser cannot read, from its raw header
/// lines, for the log.
pub fn header_message_id(raw: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(&raw[..raw.len().min(64 * 1024)]);
    text.lines()
        .take_while(|l| !l.trim().is_empty())
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("message-id")
                .then(|| value.trim().trim_matches(['<', '>']).to_string())
        })
        .filter(|v| !v.is_empty())
}

/// One structured line per decision: ids and counts, never a token, never an
/// invitee's address.
fn log_decision(
    decision: &Decision,
    facts: &MessageFacts,
    committed: &Committed,
    unrenderable: &[(String, String)],
    headers_only: bool,
) {
    let message_id = facts.message_id.as_deref().unwrap_or("-");
    let (invited, already, over_cap) = match committed {
        Committed::Done(o) => (
            o.iter()
                .filter(|o| matches!(o, InviteOutcome::Invited(_)))
                .count(),
            o.iter()
                .filter(|o| matches!(o, InviteOutcome::AlreadyInvited(_)))
                .count(),
            o.iter()
                .filter(|o| matches!(o, InviteOutcome::OverDailyCap(_)))
                .count(),
        ),
        Committed::AlreadyProcessed => {
            tracing::info!(message_id, "already processed before; skipped");
            return;
        }
        Committed::Effect(e) => {
            tracing::info!(
                message_id,
                decision = decision.label(),
                marked = e.marked,
                unmatched = e.unmatched,
                "applied to invitations"
            );
            return;
        }
    };
    match decision {
        Decision::Invite(t) => tracing::info!(
            message_id,
            decision = decision.label(),
            consultant = %t.consultant,
            region = %t.region,
            invited,
            already_invited = already,
            over_daily_cap = over_cap,
            skipped = t.skipped.len(),
            invalid = t.invalid.len(),
            unrenderable = unrenderable.len(),
            headers_only,
            "trigger"
        ),
        Decision::Refuse {
            reason,
            sender,
            region,
        } => tracing::warn!(
            message_id,
            decision = decision.label(),
            sender = sender.as_deref().unwrap_or("-"),
            region = region.as_deref().unwrap_or("-"),
            reason = ?reason,
            "trigger refused"
        ),
        Decision::Ignore { reason } => tracing::info!(
            message_id,
            decision = decision.label(),
            reason = ?reason,
            "ignored"
        ),
        Decision::Bounce(b) => tracing::info!(
            message_id,
            decision = decision.label(),
            format = %b.format,
            permanent = b.recipients.iter().filter(|r| r.permanent).count(),
            temporary = b.recipients.iter().filter(|r| !r.permanent).count(),
            "bounce"
        ),
        Decision::Complaint(c) => tracing::warn!(
            message_id,
            decision = decision.label(),
            format = %c.format,
            "spam complaint"
        ),
        Decision::OptOut { .. } => {
            tracing::info!(message_id, decision = decision.label(), "opt-out")
        }
        Decision::Reply { .. } => tracing::info!(message_id, decision = decision.label(), "reply"),
    }
}

/// What `canvass invite` did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ManualInvite {
    pub region: String,
    pub outcomes: Vec<InviteOutcome>,
    pub skipped: Vec<classify::Skipped>,
    pub invalid: Vec<classify::InvalidLine>,
}

/// Why `canvass invite` did nothing.
#[derive(Debug, thiserror::Error)]
pub enum ManualInviteError {
    #[error("unknown region {given:?}; configured regions: {known}")]
    UnknownRegion { given: String, known: String },
    #[error(
        "today ({today}) is outside the collection window {start} to {end}; nobody was invited"
    )]
    OutsideWindow {
        today: chrono::NaiveDate,
        start: chrono::NaiveDate,
        end: chrono::NaiveDate,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Pipeline {
    /// The phone-contact case from the command line: the same rules as a
    /// consultant's mail, on behalf of the region, judged by today's date.
    pub fn invite_manual(
        &self,
        addresses: &[String],
        region: &str,
    ) -> Result<ManualInvite, ManualInviteError> {
        let cfg = self.config();
        let Some(region) = cfg.region(region) else {
            return Err(ManualInviteError::UnknownRegion {
                given: region.to_string(),
                known: cfg.region_names().join(", "),
            });
        };
        let now = Utc::now();
        if !cfg.window.contains(now) {
            return Err(ManualInviteError::OutsideWindow {
                today: now.with_timezone(&crate::window::TZ).date_naive(),
                start: cfg.window.start,
                end: cfg.window.end,
            });
        }
        let mut valid = Vec::new();
        let mut invalid = Vec::new();
        for a in addresses {
            match crate::address::parse(a) {
                Ok(addr) => valid.push(addr),
                Err(e) => invalid.push(classify::InvalidLine {
                    line: a.clone(),
                    error: e.to_string(),
                }),
            }
        }
        let trigger = classify::select_invitees(
            &cfg,
            &cfg.survey_address,
            &region.name,
            classify::TriggerKind::Manual,
            valid,
            invalid,
        );
        let decision = Decision::Invite(trigger.clone());
        let plan = apply::plan(
            &decision,
            &MessageFacts::default(),
            now,
            now,
            &cfg,
            &self.key,
            &mut rand::rngs::OsRng,
        );
        let committed = one(self.commit(&[&plan], &cfg, now)?);
        self.store.flush_blocking()?;
        self.wake_outbox();
        let outcomes = match committed {
            Committed::Done(o) => o,
            _ => Vec::new(),
        };
        self.metrics.invited(
            outcomes
                .iter()
                .filter(|o| matches!(o, InviteOutcome::Invited(_)))
                .count() as u64,
        );
        let mut invalid = trigger.invalid;
        invalid.extend(
            plan.unrenderable
                .into_iter()
                .map(|(line, error)| classify::InvalidLine { line, error }),
        );
        tracing::info!(
            decision = "manual",
            region = %region.name,
            invited = outcomes.iter().filter(|o| matches!(o, InviteOutcome::Invited(_))).count(),
            "invite from the command line"
        );
        Ok(ManualInvite {
            region: region.name.clone(),
            outcomes,
            skipped: trigger.skipped,
            invalid,
        })
    }
}

impl Pipeline {
    /// A pipeline over the store without a daemon (for `canvass status` and
    /// `canvass invite` when no daemon runs). Mail it queues is sent by the
    /// daemon when it starts.
    pub fn open_offline(cfg: Config) -> anyhow::Result<Pipeline> {
        let key = HmacKey::load(&cfg.hmac_key_file)?;
        let store = Store::open(&cfg.store_path)?;
        Ok(Pipeline::new(
            store,
            key,
            Arc::new(cfg),
            Arc::new(Metrics::default()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::Mutex;

    /// Log lines, as tracing's text format writes them.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .expect("the log buffer")
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A reply that matches no invitation, with no `[replies] forward_to`:
    /// nothing is queued, and why is logged once, after the commit (the store
    /// runs the reply inside its transaction, which sled may retry).
    #[test]
    fn a_reply_that_cannot_be_forwarded_is_logged_once_after_the_commit() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let cfg = Config::load(&root.join("tests/fixtures/classify/config.toml"))
            .expect("fixture config");
        assert!(cfg.replies_forward_to.is_none());
        let raw = std::fs::read(
            root.join("tests/fixtures/classify/reply-question-quoting-invitation.eml"),
        )
        .expect("fixture mail");
        let dir = tempfile::tempdir().expect("a temp dir");
        let pipeline = Pipeline::new(
            Store::open(dir.path()).expect("a store"),
            HmacKey::from_bytes(&[5; 32]),
            Arc::new(cfg),
            Arc::new(Metrics::default()),
        );
        let log = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer({
                let log = log.clone();
                move || log.clone()
            })
            .with_ansi(false)
            .finish();
        let processed = tracing::subscriber::with_default(subscriber, || {
            pipeline.process(&raw, Utc::now(), None, false)
        })
        .expect("committed");
        assert!(matches!(processed.decision, Decision::Reply { .. }));
        assert!(matches!(processed.committed, Committed::Effect(_)));
        assert_eq!(pipeline.store.outbox_len(), 0);
        let text = String::from_utf8(log.0.lock().expect("the log").clone()).expect("UTF-8");
        let warnings: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("reply not queued"))
            .collect();
        assert_eq!(warnings.len(), 1, "{text}");
        assert!(warnings[0].contains("forward_to is not set"), "{text}");
        // Logged once the commit returned, before the decision's own line.
        let reply = text.find("reply not queued").expect("the warning");
        let decision = text.find("applied to invitations").expect("the decision");
        assert!(reply < decision, "{text}");
    }
}
