//! `canvass explain FILE.eml...`: what canvass decides for raw messages and
//! why, with no store and no network. It runs the very [`classify`] the daemon
//! runs; "received" is the file's modification time unless given.

use std::path::Path;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::classify::{self, Decision, Refusal, SkipReason, TriggerKind};
use crate::config::Config;

#[derive(Debug, Serialize)]
pub struct Explanation {
    pub file: String,
    pub received: String,
    #[serde(flatten)]
    pub decision: Decision,
}

/// Explains one file. An unreadable file is an error naming the file.
pub fn explain_file(
    path: &Path,
    received: Option<DateTime<Utc>>,
    cfg: &Config,
) -> anyhow::Result<Explanation> {
    use anyhow::Context;
    let raw = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let received = match received {
        Some(r) => r,
        None => std::fs::metadata(path)
            .and_then(|m| m.modified())
            .map(DateTime::<Utc>::from)
            .unwrap_or_else(|_| Utc::now()),
    };
    Ok(Explanation {
        file: path.display().to_string(),
        received: received.to_rfc3339(),
        decision: classify::classify_raw(&raw, received, cfg),
    })
}

fn skip_words(why: SkipReason) -> &'static str {
    match why {
        SkipReason::Sender => "the sending consultant",
        SkipReason::Consultant => "a consultant",
        SkipReason::SurveyAddress => "the survey address",
        SkipReason::InternalDomain => "a colleague (internal domain)",
        SkipReason::OverMessageCap => "over sending.max_invitees_per_message",
    }
}

/// The explanation for a person.
pub fn render_text(e: &Explanation, cfg: &Config) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "{}", e.file);
    let _ = writeln!(s, "  received  {}", e.received);
    match &e.decision {
        Decision::Invite(t) => {
            let how = match t.kind {
                TriggerKind::Cc => "trigger: the survey address was in To/Cc",
                TriggerKind::Bcc => "trigger: the survey address was a Bcc",
                TriggerKind::PhoneContact => "phone contact: addresses read from the body; the consultant gets a confirmation reply",
                TriggerKind::Manual => "entered with `canvass invite`",
            };
            let _ = writeln!(s, "  decision  INVITE ({how})");
            let _ = writeln!(s, "  on behalf of {} (region {})", t.consultant, t.region);
            match &t.trusted_by {
                Some(what) => {
                    let _ = writeln!(s, "  trusted   {what} ({})", trust_setting(cfg));
                }
                None if t.kind != TriggerKind::Manual => {
                    let _ = writeln!(s, "  trusted   without a check: {}", trust_setting(cfg));
                }
                None => {}
            }
            if t.invitees.is_empty() {
                let _ = writeln!(s, "  invites   nobody");
            }
            for a in &t.invitees {
                let _ = writeln!(s, "  invites   {a}  (unless invited before, or over the consultant's daily cap of {})", cfg.sending.max_invitees_per_consultant_per_day);
            }
            for sk in &t.skipped {
                let _ = writeln!(s, "  skips     {}  ({})", sk.address, skip_words(sk.why));
            }
            for l in &t.invalid {
                let _ = writeln!(s, "  invalid   {:?}: {}", l.line, l.error);
            }
        }
        Decision::Refuse {
            reason,
            sender,
            region,
        } => {
            let why = match reason {
                Refusal::UnknownSender => format!(
                    "{} is not a configured consultant (add it under [[regions]] consultants if it should be)",
                    sender.as_deref().unwrap_or("the sender")
                ),
                Refusal::Unauthenticated { detail } => format!(
                    "the sender could not be authenticated: {detail} ({})",
                    trust_setting(cfg)
                ),
                Refusal::OutsideWindow { position, received } => format!(
                    "received {received}, {} the collection window {} to {} (Europe/Copenhagen, inclusive)",
                    match position {
                        crate::window::Position::Before => "before",
                        _ => "after",
                    },
                    cfg.window.start,
                    cfg.window.end
                ),
            };
            let _ = writeln!(s, "  decision  REFUSED: {why}");
            if let Some(r) = region {
                let _ = writeln!(s, "  region    {r}");
            }
            let _ = writeln!(s, "  counted   yes, in `canvass status`");
        }
        Decision::Ignore { reason } => {
            let why = match reason {
                classify::Ignored::Unparseable => "not a readable message: the daemon moves it to the quarantine (Maildir `quarantine/`, IMAP `inbound.imap.quarantine`) and counts it; look at it, fix or delete it".to_string(),
                classify::Ignored::NoSender => "no usable From address".to_string(),
                classify::Ignored::OwnMail => "sent by canvass itself".to_string(),
                classify::Ignored::Bounce => "a delivery status notification (bounce)".to_string(),
                classify::Ignored::AutoReply { header } => {
                    format!("an automatic reply ({header}); never answered (RFC 3834)")
                }
                classify::Ignored::BulkOrList { header } => format!("bulk or list mail ({header})"),
            };
            let _ = writeln!(s, "  decision  IGNORED: {why}");
        }
        Decision::Bounce(b) => {
            let _ = writeln!(s, "  decision  BOUNCE ({} report)", b.format);
            if b.recipients.is_empty() {
                let _ = writeln!(s, "  failed    no recipient could be read from it");
            }
            for r in &b.recipients {
                let _ = writeln!(
                    s,
                    "  failed    {}  {} {}{}",
                    if r.address.is_empty() {
                        "(named by the returned Message-ID)"
                    } else {
                        &r.address
                    },
                    if r.permanent {
                        "PERMANENT"
                    } else if r.expired {
                        "EXPIRED (the mail server gave up)"
                    } else {
                        "temporary"
                    },
                    r.status.as_deref().unwrap_or("(no status code)"),
                    r.diagnostic
                        .as_deref()
                        .map(|d| format!(": {d}"))
                        .unwrap_or_default()
                );
            }
            for id in &b.message_ids {
                let _ = writeln!(s, "  original  <{id}>");
            }
            let effect = match b.proof {
                Some(classify::Proof::MessageId) => "permanent and expired failures mark the invitation of the returned Message-ID undelivered (counted bounced / expired); temporary ones change nothing",
                Some(_) => "a report of our own outbound server: permanent and expired failures mark the invitation of the named address undelivered; temporary ones change nothing",
                None => "none: the report carries no canvass Message-ID and is no authenticated report of trust.outbound_reporting_mta (its Reporting-MTA line alone is the sender's word), so it proves nothing (it may be forged); counted as unproven",
            };
            let _ = writeln!(s, "  effect    {effect}");
        }
        Decision::Complaint(c) => {
            let _ = writeln!(
                s,
                "  decision  SPAM COMPLAINT ({} report{})",
                c.format,
                c.feedback_type
                    .as_deref()
                    .map(|t| format!(", feedback type {t}"))
                    .unwrap_or_default()
            );
            for id in &c.message_ids {
                let _ = writeln!(s, "  original  <{id}>");
            }
            for a in &c.named {
                let _ = writeln!(s, "  names     {a}");
            }
            if let Some(t) = &c.trusted_by {
                let _ = writeln!(s, "  trust     {t}");
            }
            let _ = writeln!(
                s,
                "  effect    {}",
                if !c.message_ids.is_empty() {
                    "the invitation of the returned Message-ID is opted out (no reminders), counted as complained; never a trigger"
                } else if c.trusted_by.is_some() {
                    "from a configured trust.complaint_senders sender the trust setting authenticated: the invitation of the named address is opted out (no reminders), counted as complained; never a trigger"
                } else if !c.named.is_empty() {
                    "none: it returns no canvass Message-ID, and the address it names is believed only from an authenticated trust.complaint_senders sender (anybody can write one); never a trigger"
                } else {
                    "none: it returns no canvass Message-ID (never a trigger)"
                }
            );
        }
        Decision::OptOut {
            from,
            message_ids,
            proof,
        } => {
            let _ = writeln!(s, "  decision  OPT-OUT from {from}");
            for id in message_ids {
                let _ = writeln!(s, "  refers to <{id}>");
            }
            let whose = match proof {
                classify::Proof::MessageId => "the invitation it answers".to_string(),
                _ => format!("the invitation of {from} (its From was authenticated)"),
            };
            let _ = writeln!(s, "  effect    {whose} is marked opted out: no reminders; the link offers to answer anyway");
        }
        Decision::Reply {
            from, message_ids, ..
        } => {
            let _ = writeln!(s, "  decision  REPLY from {from}");
            for id in message_ids {
                let _ = writeln!(s, "  refers to <{id}>");
            }
            let _ = writeln!(s, "  effect    forwarded to the consultant who triggered the invitation (or [replies] forward_to)");
        }
    }
    s
}

/// The trust setting in force, as the operator finds it in the config.
fn trust_setting(cfg: &Config) -> String {
    crate::control::trust_setting(cfg)
}
