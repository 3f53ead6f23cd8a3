//! From a [`Decision`] to what the store must do: tokens drawn, invitations
//! rendered, counters named, the consultant's daily cap keyed, all gathered in
//! one [`IngestUnit`] that the store commits as a single transaction.
//!
//! The rules here are pure and unit-tested: which counters a decision bumps,
//! and when an invitation may first be sent. What only the store can know
//! (already invited? over today's cap?) is decided inside its transaction.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::address::HmacKey;
use crate::classify::{
    BouncedRecipient, Decision, Ignored, Proof, Refusal, SkipReason, Trigger, TriggerKind,
};
use crate::compose::{self, ConfirmationFacts};
use crate::config::Config;
use crate::store::{
    self, counter, Committed, Effect, Failure, IngestMark, IngestUnit, NewInvitation, Store,
};
use crate::token::{Token, TokenNonce};
use crate::window;

/// What is known about the message besides the decision.
#[derive(Debug, Clone, Default)]
pub struct MessageFacts {
    pub message_id: Option<String>,
    pub subject: Option<String>,
    /// The message's identity for "processed once".
    pub seen_key: Option<[u8; 32]>,
    /// Advance this source's mark with the commit.
    pub mark: Option<(String, IngestMark)>,
    /// The text body, read only for replies (they are forwarded).
    pub body_text: Option<String>,
}

/// A stable identity for a message: its Message-ID, or its bytes without one.
pub fn seen_key(message_id: Option<&str>, raw: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    match message_id {
        Some(id) if !id.trim().is_empty() => {
            h.update(b"message-id:");
            h.update(id.trim().as_bytes());
        }
        _ => {
            h.update(b"raw:");
            h.update(raw);
        }
    }
    h.finalize().into()
}

/// The counters a decision bumps: (region, name). Region "" is global.
pub fn counters_for(decision: &Decision) -> Vec<(String, String)> {
    match decision {
        Decision::Invite(t) => {
            let mut c = vec![(t.region.clone(), counter::TRIGGERS.to_string())];
            if t.skipped
                .iter()
                .any(|s| s.why == SkipReason::OverMessageCap)
            {
                c.push((
                    t.region.clone(),
                    counter::REFUSED_OVER_MESSAGE_CAP.to_string(),
                ));
            }
            c
        }
        Decision::Refuse { reason, region, .. } => {
            let region = region.clone().unwrap_or_default();
            let name = match reason {
                Refusal::UnknownSender => counter::REFUSED_UNKNOWN_SENDER,
                Refusal::Unauthenticated { .. } => counter::REFUSED_UNAUTHENTICATED,
                Refusal::OutsideWindow { .. } => counter::OUTSIDE_WINDOW,
            };
            vec![(region, name.to_string())]
        }
        Decision::Ignore { reason } => {
            let name = match reason {
                Ignored::Unparseable => counter::QUARANTINED,
                Ignored::NoSender => "ignored_no_sender",
                Ignored::OwnMail => "ignored_own_mail",
                Ignored::Bounce => "ignored_bounce",
                Ignored::AutoReply { .. } => "ignored_auto_reply",
                Ignored::BulkOrList { .. } => "ignored_bulk",
            };
            vec![(String::new(), name.to_string())]
        }
        // Bounces and opt-outs are counted per region when they are matched
        // to an invitation (in the store); here only that one arrived.
        Decision::Bounce(b) => {
            let mut c = vec![(String::new(), "bounce_reports".to_string())];
            if b.proof.is_none() {
                c.push((String::new(), counter::UNPROVEN.to_string()));
            }
            c
        }
        Decision::Complaint(_) => vec![(String::new(), "complaint_reports".to_string())],
        Decision::OptOut { .. } => vec![(String::new(), "opt_out_requests".to_string())],
        Decision::Reply { .. } => vec![(String::new(), counter::REPLIES.to_string())],
    }
}

/// What a bounced recipient means for the invitation.
pub fn failure(r: &BouncedRecipient) -> Failure {
    if r.permanent {
        Failure::Permanent
    } else if r.expired {
        Failure::Expired
    } else {
        Failure::Temporary
    }
}

/// Per-day counts of mail from consultants' addresses and of the part refused
/// as unauthenticated (region ""), from which `status` and the scheduler see
/// that a trust setting does not match the mailbox (`status::trust_warning`).
pub fn trust_day_counters(decision: &Decision, received: DateTime<Utc>) -> Vec<(String, String)> {
    let day = |prefix: &str| (String::new(), counter::day(prefix, received));
    match decision {
        Decision::Invite(_) => vec![day(counter::CONSULTANT_MAIL_DAY)],
        Decision::Refuse {
            reason: Refusal::Unauthenticated { .. },
            ..
        } => vec![
            day(counter::CONSULTANT_MAIL_DAY),
            day(counter::UNAUTHENTICATED_DAY),
        ],
        _ => Vec::new(),
    }
}

/// A unit ready to commit, and what the confirmation reply needs.
pub struct Plan {
    pub unit: IngestUnit,
    pub confirmation: Option<ConfirmationFacts>,
    /// A human reply to forward (to the consultant of the matched invitation).
    pub forward: Option<compose::ForwardFacts>,
    /// Invitees whose invitation could not be rendered (address lettre refuses).
    pub unrenderable: Vec<(String, String)>,
}

/// Builds the unit for a decision. Draws a token for every candidate invitee;
/// the store keeps only the hashes of those actually invited.
pub fn plan(
    decision: &Decision,
    facts: &MessageFacts,
    received: DateTime<Utc>,
    now: DateTime<Utc>,
    cfg: &Config,
    key: &HmacKey,
) -> Plan {
    let mut unit = IngestUnit {
        seen_key: facts.seen_key,
        mark: facts.mark.clone(),
        counters: counters_for(decision)
            .into_iter()
            .chain(trust_day_counters(decision, received))
            .collect(),
        created_at: Some(now),
        received_at: Some(received),
        ..Default::default()
    };
    let mut unrenderable = Vec::new();
    let mut confirmation = None;
    let mut forward = None;
    match decision {
        // A bounce that proves nothing changes nothing (issue 14).
        Decision::Bounce(b) if b.proof.is_some() => {
            unit.effect = Some(Effect::Bounce {
                recipients: b
                    .recipients
                    .iter()
                    .map(|r| {
                        (
                            crate::address::parse(&r.address)
                                .ok()
                                .map(|a| key.key_of(&a)),
                            failure(r),
                        )
                    })
                    .collect(),
                message_ids: b.message_ids.clone(),
                by_address: b.proof == Some(Proof::OutboundServer),
            });
        }
        Decision::Complaint(c) => {
            unit.effect = Some(Effect::Complaint {
                message_ids: c.message_ids.clone(),
            });
        }
        Decision::OptOut {
            from, message_ids, ..
        } => {
            unit.effect = Some(Effect::OptOut {
                from: key.key_of(from),
                message_ids: message_ids.clone(),
            });
        }
        Decision::Reply {
            from,
            message_ids,
            subject,
        } => {
            unit.effect = Some(Effect::Reply {
                from: key.key_of(from),
                message_ids: message_ids.clone(),
            });
            forward = Some(compose::ForwardFacts {
                from: from.clone(),
                subject: subject.clone(),
                text: facts.body_text.clone().unwrap_or_default(),
                in_reply_to: facts.message_id.clone(),
            });
        }
        _ => {}
    }
    if let Decision::Invite(t) = decision {
        unit.region = t.region.clone();
        unit.consultant = Some(t.consultant.clone());
        if t.kind != TriggerKind::Manual {
            let day = received.with_timezone(&window::TZ).date_naive();
            unit.daily_cap = Some((
                Store::daily_key(&key.key_of(&t.consultant), day),
                cfg.sending.max_invitees_per_consultant_per_day,
            ));
        }
        let not_before =
            window::first_send_time(now, cfg.sending.delay_minutes, cfg.sending.hours.as_ref());
        for addr in &t.invitees {
            let nonce = TokenNonce::generate();
            let token = Token::derive(key, &nonce);
            // Queued without its body; the outbox renders it from the
            // invitation when it sends it.
            match compose::deferred_invitation(cfg, addr, not_before) {
                Ok(outgoing) => unit.invitations.push(NewInvitation {
                    address: addr.clone(),
                    address_key: key.key_of(addr),
                    token_hash: token.hash(),
                    token_nonce: Some(nonce),
                    outgoing,
                }),
                Err(e) => unrenderable.push((addr.to_string(), e.to_string())),
            }
        }
        match t.kind {
            TriggerKind::PhoneContact => {
                confirmation = Some(confirmation_facts(t, facts, &unrenderable));
            }
            // A CC/BCC trigger is answered only when part of it was refused
            // (compose decides once the store has applied the daily cap).
            TriggerKind::Cc | TriggerKind::Bcc => {
                confirmation = Some(ConfirmationFacts {
                    only_if_refused: true,
                    ..confirmation_facts(t, facts, &unrenderable)
                });
            }
            TriggerKind::Manual => {}
        }
    }
    // A consultant's trigger outside the window (it passed the trust check,
    // which comes first): told that nobody was invited, and why. A refused
    // unauthenticated mail is never answered: that would be backscatter.
    if let Decision::Refuse {
        reason: Refusal::OutsideWindow { .. },
        sender: Some(sender),
        region: Some(_),
    } = decision
    {
        if let Ok(consultant) = crate::address::parse(sender) {
            confirmation = Some(ConfirmationFacts {
                consultant: Some(consultant),
                subject: facts.subject.clone(),
                in_reply_to: facts.message_id.clone(),
                skipped: Vec::new(),
                invalid: Vec::new(),
                only_if_refused: false,
                refused_in_part: true,
                note: Some(compose::outside_window_note(cfg, received)),
            });
        }
    }
    Plan {
        unit,
        confirmation,
        forward,
        unrenderable,
    }
}

fn confirmation_facts(
    t: &Trigger,
    facts: &MessageFacts,
    unrenderable: &[(String, String)],
) -> ConfirmationFacts {
    let mut skipped: Vec<(String, String)> = t
        .skipped
        .iter()
        .map(|s| {
            (
                s.address.clone(),
                compose::skip_reason_da(s.why).to_string(),
            )
        })
        .collect();
    skipped.extend(unrenderable.iter().map(|(a, e)| (a.clone(), e.clone())));
    ConfirmationFacts {
        consultant: Some(t.consultant.clone()),
        subject: facts.subject.clone(),
        in_reply_to: facts.message_id.clone(),
        skipped,
        invalid: t.invalid.clone(),
        only_if_refused: false,
        refused_in_part: t
            .skipped
            .iter()
            .any(|s| s.why == SkipReason::OverMessageCap),
        note: None,
    }
}

/// Commits a plan: one transaction, confirmation included.
pub fn commit(
    store: &Store,
    plan: &Plan,
    cfg: &Config,
    now: DateTime<Utc>,
) -> Result<Committed, store::StoreError> {
    store.commit_ingest(&plan.unit, &responder(plan, cfg, now))
}

/// Commits several plans in one transaction, in order (the ingest loop's
/// batch; see [`Store::commit_ingest_all`]).
pub fn commit_all(
    store: &Store,
    plans: &[&Plan],
    cfg: &Config,
    now: DateTime<Utc>,
) -> Result<Vec<Committed>, store::StoreError> {
    let responders: Vec<_> = plans.iter().map(|p| responder(p, cfg, now)).collect();
    let units: Vec<(&store::IngestUnit, store::Responder<'_>)> = plans
        .iter()
        .zip(&responders)
        .map(|(p, r)| (&p.unit, r as store::Responder<'_>))
        .collect();
    store.commit_ingest_all(&units)
}

/// Renders the reply a plan asks for (confirmation, forward) from what the
/// transaction found.
fn responder<'a>(
    plan: &'a Plan,
    cfg: &'a Config,
    now: DateTime<Utc>,
) -> impl Fn(&store::CommitView) -> Option<(store::Purpose, store::Outgoing)> + 'a {
    move |view: &store::CommitView| -> Option<(store::Purpose, store::Outgoing)> {
        if let Some(facts) = &plan.confirmation {
            return match compose::confirmation(cfg, facts, view.outcomes, now) {
                Ok(o) => o.map(|o| (store::Purpose::Confirmation, o)),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot render the confirmation reply");
                    None
                }
            };
        }
        let forward = plan.forward.as_ref()?;
        let to = view
            .matched
            .map(|i| i.consultant.clone())
            .filter(|c| *c != cfg.survey_address)
            .or_else(|| cfg.replies_forward_to.clone());
        let Some(to) = to else {
            tracing::warn!("a reply matches no invitation and [replies] forward_to is not set; it stays in the mailbox");
            return None;
        };
        match compose::forward(cfg, &to, forward, view.matched, now) {
            Ok(o) => Some((store::Purpose::Forward, o)),
            Err(e) => {
                tracing::warn!(error = %e, "cannot render the forwarded reply; it stays in the mailbox");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::Skipped;

    fn trigger(skipped: Vec<Skipped>) -> Decision {
        Decision::Invite(Trigger {
            kind: TriggerKind::Cc,
            consultant: crate::address::parse("anne@siri.dk").unwrap(),
            region: "Sjælland".into(),
            invitees: vec![],
            skipped,
            invalid: vec![],
            trusted_by: None,
        })
    }

    #[test]
    fn counters_follow_the_decision() {
        assert_eq!(
            counters_for(&trigger(vec![])),
            vec![("Sjælland".into(), "triggers".into())]
        );
        let capped = trigger(vec![Skipped {
            address: "x@y.dk".into(),
            why: SkipReason::OverMessageCap,
        }]);
        assert_eq!(
            counters_for(&capped)[1],
            ("Sjælland".into(), "refused_over_message_cap".into())
        );
        let refused = Decision::Refuse {
            reason: Refusal::UnknownSender,
            sender: Some("x@y.dk".into()),
            region: None,
        };
        assert_eq!(
            counters_for(&refused),
            vec![(String::new(), "refused_unknown_sender".into())]
        );
    }

    #[test]
    fn consultants_mail_is_counted_per_copenhagen_day_for_the_trust_check() {
        let at = DateTime::parse_from_rfc3339("2024-08-12T22:30:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            trust_day_counters(&trigger(vec![]), at),
            vec![(String::new(), "consultant_mail_day:2024-08-13".into())]
        );
        let unauthenticated = Decision::Refuse {
            reason: Refusal::Unauthenticated {
                detail: "no Authentication-Results".into(),
            },
            sender: Some("anne@siri.dk".into()),
            region: Some("Sjælland".into()),
        };
        assert_eq!(
            trust_day_counters(&unauthenticated, at),
            vec![
                (String::new(), "consultant_mail_day:2024-08-13".into()),
                (String::new(), "unauthenticated_day:2024-08-13".into())
            ]
        );
        let unknown = Decision::Refuse {
            reason: Refusal::UnknownSender,
            sender: Some("x@y.dk".into()),
            region: None,
        };
        assert!(trust_day_counters(&unknown, at).is_empty());
    }

    #[test]
    fn seen_key_prefers_message_id() {
        assert_eq!(seen_key(Some("a@b"), b"one"), seen_key(Some("a@b"), b"two"));
        assert_ne!(seen_key(None, b"one"), seen_key(None, b"two"));
    }
}
