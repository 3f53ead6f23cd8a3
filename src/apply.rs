//! From a [`Decision`] to what the store must do: tokens and Message-IDs
//! drawn from the caller's RNG, invitations queued without their body (the
//! outbox renders them when it sends them), counters named, the consultant's
//! daily cap keyed, all gathered in one [`IngestUnit`] that the store commits
//! as a single transaction.
//!
//! [`plan`] is pure: plain data in, plain data out (its randomness is passed
//! in, its clock is `now`; golden tests pin it). [`reply`] says which reply
//! the transaction queues from what it found and renders it with `compose`,
//! which draws the reply's Message-ID and dates it. Nothing here writes the
//! store or logs: the pipeline commits (`Store::commit_ingest_all`) and logs
//! once the transaction committed. What only the store can know (already
//! invited? over today's cap?) is decided inside its transaction.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::address::HmacKey;
use crate::classify::{
    BouncedRecipient, Decision, Ignored, Proof, Refusal, SkipReason, Trigger, TriggerKind,
};
use crate::compose::{self, ConfirmationFacts};
use crate::config::Config;
use crate::store::{
    self, counter, Effect, Failure, IngestMark, IngestUnit, NewInvitation, Purpose, Store,
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
        // A refusal or an ignored message is counted under its label (one
        // mapping: `Decision::label`, whose names are `store::counter`'s);
        // an unreadable message is counted as quarantined.
        Decision::Refuse { region, .. } => {
            vec![(
                region.clone().unwrap_or_default(),
                decision.label().to_string(),
            )]
        }
        Decision::Ignore {
            reason: Ignored::Unparseable,
        } => vec![(String::new(), counter::QUARANTINED.to_string())],
        Decision::Ignore { .. } => vec![(String::new(), decision.label().to_string())],
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
#[derive(Debug, Clone)]
pub struct Plan {
    pub unit: IngestUnit,
    pub confirmation: Option<ConfirmationFacts>,
    /// A human reply to forward (to the consultant of the matched invitation).
    pub forward: Option<compose::ForwardFacts>,
    /// Invitees whose invitation could not be rendered (address lettre refuses).
    pub unrenderable: Vec<(String, String)>,
}

/// Builds the unit for a decision. Draws a token nonce and a Message-ID for
/// every candidate invitee from `rng` (the OS RNG in production, a seeded
/// one in tests); the store keeps only the hashes of those actually invited.
/// Pure: the same arguments and RNG state give the same plan.
pub fn plan(
    decision: &Decision,
    facts: &MessageFacts,
    received: DateTime<Utc>,
    now: DateTime<Utc>,
    cfg: &Config,
    key: &HmacKey,
    rng: &mut dyn rand::RngCore,
) -> Plan {
    let mut unit = IngestUnit {
        seen_key: facts.seen_key,
        mark: facts.mark.clone(),
        counters: counters_for(decision)
            .into_iter()
            .chain(trust_day_counters(decision, received))
            .collect(),
        received_at: Some(received),
        ..IngestUnit::at(now)
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
        // Named addresses count only when the sender was vouched for
        // (`trusted_by`); anything else is matched by Message-ID, as always.
        Decision::Complaint(c) if c.message_ids.is_empty() && c.trusted_by.is_some() => {
            unit.effect = Some(Effect::ComplaintByAddress {
                keys: c.named.iter().map(|a| key.key_of(a)).collect(),
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
            let nonce = TokenNonce::from_rng(rng);
            let message_id = compose::message_id_from(cfg, rng);
            let token = Token::derive(key, &nonce);
            // Queued without its body; the outbox renders it from the
            // invitation when it sends it.
            match compose::deferred_invitation(cfg, addr, message_id, not_before) {
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
                note: Some(compose::Note::outside_window(cfg, received)),
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
    let mut skipped: Vec<compose::NotInvited> = t
        .skipped
        .iter()
        .map(|s| compose::NotInvited {
            address: s.address.clone(),
            reason: s.why.key(),
            detail: None,
        })
        .collect();
    skipped.extend(unrenderable.iter().map(|(a, e)| compose::NotInvited {
        address: a.clone(),
        reason: compose::NotInvited::UNRENDERABLE,
        detail: Some(e.clone()),
    }));
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
        note: t.unread_over_mb.map(|mb| compose::Note::TooLarge { mb }),
    }
}

/// Why the reply a plan asks for was not queued; the pipeline logs it once
/// the transaction committed (a retried transaction asks again).
#[derive(Debug, thiserror::Error)]
pub enum ReplyProblem {
    #[error("cannot render the confirmation reply: {0}")]
    Confirmation(compose::ComposeError),
    #[error("a reply matches no invitation and [replies] forward_to is not set; it stays in the mailbox")]
    NoForwardAddress,
    #[error("cannot render the forwarded reply; it stays in the mailbox: {0}")]
    Forward(compose::ComposeError),
}

/// The reply a plan asks for (confirmation, forward), from what the
/// transaction found: run inside it by the store, so it neither writes nor
/// logs. The reply is rendered here, under a fresh Message-ID (OS RNG) and
/// the current Date: not pure, unlike [`plan`].
pub fn reply(
    plan: &Plan,
    cfg: &Config,
    view: &store::CommitView,
    now: DateTime<Utc>,
) -> Result<Option<(Purpose, store::Outgoing)>, ReplyProblem> {
    if let Some(facts) = &plan.confirmation {
        return compose::confirmation(cfg, facts, view.outcomes, now)
            .map(|o| o.map(|o| (Purpose::Confirmation, o)))
            .map_err(ReplyProblem::Confirmation);
    }
    let Some(forward) = plan.forward.as_ref() else {
        return Ok(None);
    };
    let to = view
        .matched
        .map(|i| i.consultant.clone())
        .filter(|c| *c != cfg.survey_address)
        .or_else(|| cfg.replies_forward_to.clone())
        .ok_or(ReplyProblem::NoForwardAddress)?;
    compose::forward(cfg, &to, forward, view.matched, now)
        .map(|o| Some((Purpose::Forward, o)))
        .map_err(ReplyProblem::Forward)
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
            unread_over_mb: None,
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

    /// Golden plans: a decision in, the plan out, as plain data. The RNG is
    /// seeded and the clock passed in, so a plan is the same on every run;
    /// the expected text is `tests/fixtures/plans/<name>.txt` (write it
    /// again with `CANVASS_UPDATE_GOLDEN=1` and review the diff).
    mod golden {
        use super::*;
        use crate::classify::{BounceReport, Skipped};
        use rand::SeedableRng;

        fn cfg() -> Config {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/classify/config.toml");
            Config::load(&path).expect("fixture config")
        }

        fn at(s: &str) -> DateTime<Utc> {
            DateTime::parse_from_rfc3339(s)
                .expect("a test date")
                .with_timezone(&Utc)
        }

        fn addr(s: &str) -> crate::address::Address {
            crate::address::parse(s).expect("a test address")
        }

        fn facts() -> MessageFacts {
            MessageFacts {
                message_id: Some("trigger-1@siri.dk".into()),
                subject: Some("Opfølgning på vores samtale".into()),
                seen_key: Some([1; 32]),
                mark: Some((
                    "imap:INBOX".into(),
                    IngestMark {
                        uid_validity: 7,
                        last_uid: 42,
                    },
                )),
                body_text: None,
            }
        }

        /// The plan for `decision`, received Monday 12 August 2024 10:00
        /// Copenhagen time and planned a second later, with a seeded RNG.
        fn plan_of(decision: &Decision, facts: &MessageFacts) -> Plan {
            let received = at("2024-08-12T08:00:00Z");
            let now = at("2024-08-12T08:00:01Z");
            let key = HmacKey::from_bytes(&[7; 32]);
            let mut rng = rand::rngs::StdRng::seed_from_u64(10);
            plan(decision, facts, received, now, &cfg(), &key, &mut rng)
        }

        fn check(name: &str, plan: &Plan) {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/plans")
                .join(format!("{name}.txt"));
            let got = compact(&format!("{plan:#?}\n"));
            if std::env::var_os("CANVASS_UPDATE_GOLDEN").is_some() {
                std::fs::create_dir_all(path.parent().expect("a folder")).expect("mkdir");
                std::fs::write(&path, &got).expect("write the golden plan");
            }
            let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
                panic!(
                    "{}: {e} (CANVASS_UPDATE_GOLDEN=1 writes it)",
                    path.display()
                )
            });
            assert!(got == want, "{name}: the plan changed; got:\n{got}");
        }

        /// `{:#?}` with byte arrays (keys, hashes) on one line, in hex.
        fn compact(debug: &str) -> String {
            let mut out = String::new();
            let mut lines = debug.lines().peekable();
            while let Some(line) = lines.next() {
                let is_byte = |l: &str| l.trim().trim_end_matches(',').parse::<u8>().is_ok();
                if line.trim_end().ends_with('[') && lines.peek().is_some_and(|l| is_byte(l)) {
                    let mut hex = String::new();
                    while let Some(l) = lines.next_if(|l| is_byte(l)) {
                        let b: u8 = l.trim().trim_end_matches(',').parse().expect("a byte");
                        hex.push_str(&format!("{b:02x}"));
                    }
                    let close = lines.next().unwrap_or_default().trim();
                    out.push_str(&format!(
                        "{}0x{hex}{}\n",
                        line.trim_end().trim_end_matches('['),
                        close.trim_start_matches(']')
                    ));
                } else {
                    out.push_str(line);
                    out.push('\n');
                }
            }
            out
        }

        fn cc(invitees: &[&str], skipped: Vec<Skipped>) -> Decision {
            Decision::Invite(Trigger {
                kind: TriggerKind::Cc,
                consultant: addr("anne.hansen@siri.dk"),
                region: "Sjælland".into(),
                invitees: invitees.iter().map(|a| addr(a)).collect(),
                skipped,
                invalid: vec![],
                trusted_by: Some("dmarc=pass".into()),
                unread_over_mb: None,
            })
        }

        /// A complaint naming only an address is matched by its key when the
        /// sender was vouched for (`trusted_by`), else by Message-ID as
        /// always, which with none changes nothing.
        #[test]
        fn a_complaint_naming_only_an_address_is_matched_by_it_only_when_vouched_for() {
            let complaint = |trusted_by: Option<&str>, message_ids: Vec<String>| {
                Decision::Complaint(crate::classify::ComplaintReport {
                    format: "arf".into(),
                    feedback_type: Some("abuse".into()),
                    message_ids,
                    named: vec![addr("klager@yahoo.dk")],
                    trusted_by: trusted_by.map(str::to_string),
                })
            };
            let key = HmacKey::from_bytes(&[7; 32]);
            let vouched = plan_of(&complaint(Some("dmarc=pass"), vec![]), &facts());
            assert_eq!(
                vouched.unit.effect,
                Some(Effect::ComplaintByAddress {
                    keys: vec![key.key_of(&addr("klager@yahoo.dk"))]
                })
            );
            let forged = plan_of(&complaint(None, vec![]), &facts());
            assert_eq!(
                forged.unit.effect,
                Some(Effect::Complaint {
                    message_ids: vec![]
                })
            );
            let id = "canvass.0a1b@siri.dk".to_string();
            let by_id = plan_of(&complaint(Some("dmarc=pass"), vec![id.clone()]), &facts());
            assert_eq!(
                by_id.unit.effect,
                Some(Effect::Complaint {
                    message_ids: vec![id]
                })
            );
        }

        #[test]
        fn a_cc_trigger_draws_a_nonce_and_message_id_per_invitee_and_keys_the_daily_cap() {
            let d = cc(
                &["kontakt@kommune.dk", "leder@firma.dk"],
                vec![Skipped {
                    address: "nummer21@firma.dk".into(),
                    why: SkipReason::OverMessageCap,
                }],
            );
            check("cc-trigger", &plan_of(&d, &facts()));
        }

        #[test]
        fn a_phone_contact_is_always_confirmed() {
            let Decision::Invite(mut t) = cc(&["kontakt@kommune.dk"], vec![]) else {
                unreachable!()
            };
            t.kind = TriggerKind::PhoneContact;
            t.invalid = vec![crate::classify::InvalidLine {
                line: "kontakt@".into(),
                error: "no domain".into(),
            }];
            check("phone-contact", &plan_of(&Decision::Invite(t), &facts()));
        }

        #[test]
        fn a_manual_invitation_has_no_daily_cap_and_no_confirmation() {
            let Decision::Invite(mut t) = cc(&["kontakt@kommune.dk"], vec![]) else {
                unreachable!()
            };
            t.kind = TriggerKind::Manual;
            let p = plan_of(&Decision::Invite(t), &MessageFacts::default());
            assert!(p.unit.daily_cap.is_none() && p.confirmation.is_none());
            check("manual", &p);
        }

        #[test]
        fn a_trigger_outside_the_window_is_answered_with_the_reason() {
            let d = Decision::Refuse {
                reason: Refusal::OutsideWindow {
                    position: window::Position::After,
                    received: "2024-09-23T10:00:00+02:00".into(),
                },
                sender: Some("anne.hansen@siri.dk".into()),
                region: Some("Sjælland".into()),
            };
            check("outside-window", &plan_of(&d, &facts()));
        }

        #[test]
        fn an_unauthenticated_trigger_is_counted_and_never_answered() {
            let d = Decision::Refuse {
                reason: Refusal::Unauthenticated {
                    detail: "dmarc=fail".into(),
                },
                sender: Some("anne.hansen@siri.dk".into()),
                region: Some("Sjælland".into()),
            };
            let p = plan_of(&d, &facts());
            assert!(p.confirmation.is_none());
            check("unauthenticated", &p);
        }

        #[test]
        fn a_proven_bounce_names_its_effect_and_an_unproven_one_changes_nothing() {
            let report = |proof| {
                Decision::Bounce(BounceReport {
                    recipients: vec![BouncedRecipient {
                        address: "kontakt@kommune.dk".into(),
                        status: Some("5.1.1".into()),
                        permanent: true,
                        expired: false,
                        diagnostic: Some("550 5.1.1 unknown user".into()),
                    }],
                    message_ids: vec!["canvass.0011@siri.dk".into()],
                    format: "rfc3464".into(),
                    proof,
                })
            };
            check(
                "bounce-proven",
                &plan_of(&report(Some(Proof::MessageId)), &facts()),
            );
            let unproven = plan_of(&report(None), &facts());
            assert!(unproven.unit.effect.is_none());
            check("bounce-unproven", &unproven);
        }

        #[test]
        fn a_reply_is_forwarded_and_an_opt_out_marks() {
            let reply = Decision::Reply {
                from: addr("kontakt@kommune.dk"),
                message_ids: vec!["canvass.0011@siri.dk".into()],
                subject: Some("Re: Spørgeskema".into()),
            };
            let with_body = MessageFacts {
                body_text: Some("Tak, jeg svarer i morgen.".into()),
                ..facts()
            };
            check("reply", &plan_of(&reply, &with_body));
            let opt_out = Decision::OptOut {
                from: addr("kontakt@kommune.dk"),
                message_ids: vec!["canvass.0011@siri.dk".into()],
                proof: Proof::MessageId,
            };
            check("opt-out", &plan_of(&opt_out, &facts()));
        }

        #[test]
        fn an_unreadable_message_is_quarantined_without_a_seen_note() {
            let d = Decision::Ignore {
                reason: Ignored::Unparseable,
            };
            let unreadable = MessageFacts {
                seen_key: None,
                ..facts()
            };
            check("unreadable", &plan_of(&d, &unreadable));
        }

        #[test]
        fn the_same_rng_gives_the_same_plan_and_another_gives_other_draws() {
            let d = cc(&["kontakt@kommune.dk"], vec![]);
            let one = plan_of(&d, &facts());
            assert_eq!(format!("{one:?}"), format!("{:?}", plan_of(&d, &facts())));
            let key = HmacKey::from_bytes(&[7; 32]);
            let mut other = rand::rngs::StdRng::seed_from_u64(11);
            let two = plan(
                &d,
                &facts(),
                one.unit.received_at.expect("received"),
                one.unit.created_at,
                &cfg(),
                &key,
                &mut other,
            );
            let (a, b) = (&one.unit.invitations[0], &two.unit.invitations[0]);
            assert_ne!(a.token_hash, b.token_hash);
            assert_ne!(a.outgoing.message_id, b.outgoing.message_id);
        }
    }

    #[test]
    fn refusals_and_ignored_mail_are_counted_under_the_store_s_names() {
        let refused = |reason| Decision::Refuse {
            reason,
            sender: None,
            region: None,
        };
        let name = |d: &Decision| counters_for(d)[0].1.clone();
        assert_eq!(
            name(&refused(Refusal::UnknownSender)),
            counter::REFUSED_UNKNOWN_SENDER
        );
        assert_eq!(
            name(&refused(Refusal::Unauthenticated { detail: "x".into() })),
            counter::REFUSED_UNAUTHENTICATED
        );
        assert_eq!(
            name(&refused(Refusal::OutsideWindow {
                position: window::Position::Before,
                received: String::new(),
            })),
            counter::OUTSIDE_WINDOW
        );
        let ignored = |reason| Decision::Ignore { reason };
        assert_eq!(name(&ignored(Ignored::Unparseable)), counter::QUARANTINED);
        assert_eq!(
            name(&ignored(Ignored::AutoReply { header: "x".into() })),
            counter::AUTO_REPLIES
        );
        assert_eq!(name(&ignored(Ignored::NoSender)), "ignored_no_sender");
        assert_eq!(name(&ignored(Ignored::OwnMail)), "ignored_own_mail");
        assert_eq!(name(&ignored(Ignored::Bounce)), "ignored_bounce");
        assert_eq!(
            name(&ignored(Ignored::BulkOrList { header: "x".into() })),
            "ignored_bulk"
        );
    }

    #[test]
    fn seen_key_prefers_message_id() {
        assert_eq!(seen_key(Some("a@b"), b"one"), seen_key(Some("a@b"), b"two"));
        assert_ne!(seen_key(None, b"one"), seen_key(None, b"two"));
    }
}
