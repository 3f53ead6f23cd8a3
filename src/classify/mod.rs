//! Deciding what a message asks of canvass. Pure: raw message + config in, a
//! [`Decision`] out; no store, no clock, no network. `canvass explain` prints
//! exactly this, so an operator sees the same reasoning the daemon used.
//!
//! The order of the checks is the policy:
//! 0. a spam complaint (an ARF report, a provider's notice returning a canvass
//!    Message-ID, or one from an authenticated `trust.complaint_senders`
//!    naming only the invitee), not from a consultant → [`Decision::Complaint`];
//! 1. unreadable ([`unreadable`]: the ingest loop quarantines it), or our own
//!    mail → ignore (a delivery report is never our own mail: the bounce of an
//!    invitation comes from MAILER-DAEMON, not from us);
//! 2. a bounce (a DSN; a report sender: `<>`, MAILER-DAEMON, postmaster,
//!    mail.delivery.system, "Mail Delivery Subsystem"; a report subject in
//!    English or Danish; NDR headers or text shapes) → [`Decision::Bounce`],
//!    read by [`crate::bounce`] (recipients, permanent, expired or temporary,
//!    the canvass Message-IDs it returns) with its [`Proof`]: the returned
//!    Message-ID, or the configured outbound server's own report; without
//!    one it changes nothing;
//! 3. an auto-reply (out-of-office replies to invitations included: never an
//!    opt-out, never a reply), bulk or list mail → ignore (RFC 3834: never
//!    answer those); the one exception is the invitation's List-Unsubscribe
//!    mailto (subject "afmeld", to the survey address), read on (to 4) even
//!    when the mail program marks it `Auto-Submitted: auto-generated`;
//! 4. a sender who is not a configured consultant:
//!    - asks to opt out (see [`asks_to_opt_out`]: the subject or the first own
//!      lines of the body, never quoted text, since the invitation itself says
//!      "afmeld") and answers canvass mail or writes to the survey address
//!      alone → [`Decision::OptOut`] when it proves it (it answers the
//!      invitation's Message-ID, or the trust setting vouches for its From),
//!      else a [`Decision::Reply`] a person reads;
//!    - else In-Reply-To/References name a canvass Message-ID → [`Decision::Reply`];
//!    - else refused, unknown sender;
//! 5. where a trust setting is configured (`[mailbox] provider` microsoft365 or
//!    google: the provider's own headers; or `trust.authserv_id`), it must vouch
//!    for the consultant's domain ([`authres::trusted`]) → else refused;
//! 6. received inside the collection window → else refused (counted);
//! 7. recipients other than the survey address and the sender (valid or not) →
//!    a CC/BCC trigger, decided by the headers alone (the body, quoted text
//!    included, is never read); none → a phone-contact command whose body lists
//!    the addresses. One exception: when the only visible recipient is the
//!    consultant and the survey address is not in the headers ("To: myself,
//!    Bcc: everybody"), the contacts are hidden in Bcc: a BCC trigger that can
//!    name nobody, rather than guessing invitees from the body;
//! 8. invitees are the recipients minus the consultant, other consultants, the
//!    survey address and internal domains, de-duplicated; beyond the per-message cap
//!    they are refused.
//!
//! What only the store can answer (already invited? over the consultant's
//! daily cap?) is decided later, in the ingest transaction
//! (`Store::commit_ingest`), and comes back as [`crate::store::InviteOutcome`]s.
//!
//! What lives where:
//! - this file: the policy above, the [`Decision`] types, the trigger's
//!   recipients, bounce recognition and the proof of a bounce or opt-out;
//! - `auto_reply.rs`: RFC 3834 auto-replies, out-of-office subjects and
//!   bodies, bulk and list mail;
//! - `complaint.rs`: spam complaints, ARF (RFC 5965) or a provider's notice;
//! - `opt_out.rs`: the opt-out grammar and the List-Unsubscribe mailto;
//! - `addresses.rs`: addresses scraped from a phone contact's body, and
//!   invalid header entries as written;
//! - [`authres`]: sender trust, `Authentication-Results` (RFC 8601) and the
//!   Microsoft 365 and Google readings;
//! - a bounce's content ([`BounceReport`]) is read by [`crate::bounce`].

mod addresses;
pub mod authres;
mod auto_reply;
mod complaint;
mod opt_out;

use std::borrow::Cow;
use std::collections::HashSet;

use chrono::{DateTime, Utc};
use mail_parser::{HeaderName, Message, MessageParser};
use serde::Serialize;

use crate::address::{self, Address};
use crate::bounce;
pub use crate::bounce::{BounceReport, BouncedRecipient};
use crate::config::Config;
use crate::window::Position;

pub use addresses::addresses_in_body;
use addresses::invalid_header_address;
use auto_reply::{auto_reply, bulk};
use complaint::complaint;
use opt_out::is_unsubscribe_mailto;
pub use opt_out::{asks_to_opt_out, line_asks_opt_out, UNSUBSCRIBE_SUBJECT};

/// What canvass does with one message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// Invite these contacts (those not invited before) on behalf of a consultant.
    Invite(Trigger),
    /// A would-be trigger that canvass refuses; counted in `status`.
    Refuse {
        reason: Refusal,
        /// The From address, when there was one.
        sender: Option<String>,
        /// The consultant's region, when the sender is a consultant.
        region: Option<String>,
    },
    /// Nothing to do, and nothing to count.
    Ignore { reason: Ignored },
    /// A delivery status notification about mail canvass sent.
    Bounce(BounceReport),
    /// A spam complaint: an ARF feedback report (RFC 5965) or a provider's
    /// complaint notice about canvass mail. The person is opted out.
    Complaint(ComplaintReport),
    /// An invitee asks to hear no more ("afmeld", "unsubscribe", List-Unsubscribe).
    OptOut {
        from: Address,
        /// canvass Message-IDs the message refers to (In-Reply-To, References).
        message_ids: Vec<String>,
        /// What shows it is about an invitation: the Message-ID it answers
        /// (that invitation is opted out), or an authenticated From (the
        /// invitation of that address is).
        proof: Proof,
    },
    /// A human reply to mail canvass sent: forwarded so no question is lost.
    Reply {
        from: Address,
        message_ids: Vec<String>,
        subject: Option<String>,
    },
}

/// What makes a bounce, complaint or opt-out about a given invitation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Proof {
    /// It carries the invitation's canvass Message-ID (random, unguessable):
    /// only that invitation may be changed.
    MessageId,
    /// A delivery report from canvass' own outbound server: its
    /// `Reporting-MTA` is one of `trust.outbound_reporting_mta`, and its From
    /// (on that host) is vouched for by the configured trust; matched by the
    /// address it names.
    OutboundServer,
    /// An opt-out whose From passed DMARC (or DKIM for its domain) under the
    /// configured `trust.authserv_id`: matched by that address.
    Authenticated,
}

/// What a spam complaint says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ComplaintReport {
    /// "arf" (RFC 5965) or "notice" (a provider's own text).
    pub format: String,
    /// The feedback type (`abuse`, `fraud`, ...), for ARF.
    pub feedback_type: Option<String>,
    /// canvass Message-IDs in the report: the complained-about invitation.
    pub message_ids: Vec<String>,
    /// Without a canvass Message-ID: the invitees the report names (ARF's
    /// `Original-Rcpt-To`, else the returned original's `To`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub named: Vec<Address>,
    /// What proves `named`: the report comes from one of
    /// `trust.complaint_senders` and the configured trust vouched for its
    /// From (the header read). Absent: `named` changes nothing (anybody can
    /// write a complaint naming an invitee).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trusted_by: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Trigger {
    pub kind: TriggerKind,
    pub consultant: Address,
    pub region: String,
    /// Candidates in the order they appeared, de-duplicated.
    pub invitees: Vec<Address>,
    /// Recipients that are not invited, with the reason.
    pub skipped: Vec<Skipped>,
    /// Phone contacts: body lines that looked like addresses but were not valid.
    pub invalid: Vec<InvalidLine>,
    /// What vouched for the consultant under the configured trust (the
    /// header read); absent when no trust is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trusted_by: Option<String>,
    /// A phone contact too large to read (over `max_message_bytes`, this many
    /// MB): only its headers were read, so its addresses are unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unread_over_mb: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerKind {
    /// The survey address was in To or Cc.
    Cc,
    /// The survey address was not in the headers: it was a Bcc.
    Bcc,
    /// Sent to the survey address alone; the body lists the contacts.
    PhoneContact,
    /// Entered by an operator with `canvass invite`.
    Manual,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub address: String,
    pub why: SkipReason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// The sending consultant.
    Sender,
    /// Another configured consultant.
    Consultant,
    /// The survey address itself.
    SurveyAddress,
    /// A colleague: one of the configured internal domains.
    InternalDomain,
    /// Beyond `sending.max_invitees_per_message`.
    OverMessageCap,
}

impl SkipReason {
    /// The reason's name in the confirmation template (`confirmation.txt`).
    pub fn key(self) -> &'static str {
        match self {
            SkipReason::Sender => "sender",
            SkipReason::Consultant => "consultant",
            SkipReason::SurveyAddress => "survey_address",
            SkipReason::InternalDomain => "internal_domain",
            SkipReason::OverMessageCap => "over_message_cap",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InvalidLine {
    pub line: String,
    pub error: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "why", rename_all = "snake_case")]
pub enum Refusal {
    /// From is not a configured consultant.
    UnknownSender,
    /// A trust setting is configured (the provider's headers or
    /// `trust.authserv_id`) and it did not vouch for the sender; `detail`
    /// says which header was read and why.
    Unauthenticated { detail: String },
    /// Received before or after the collection window.
    OutsideWindow {
        position: Position,
        received: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "why", rename_all = "snake_case")]
pub enum Ignored {
    /// Not a parseable message at all.
    Unparseable,
    /// No usable From address.
    NoSender,
    /// Sent by canvass itself.
    OwnMail,
    /// A delivery status notification (bounces are matched elsewhere).
    Bounce,
    /// An automatic reply (RFC 3834), e.g. out of office.
    AutoReply { header: String },
    /// Bulk or mailing-list mail.
    BulkOrList { header: String },
}

impl Decision {
    /// A short word for logs and counters.
    pub fn label(&self) -> &'static str {
        match self {
            Decision::Invite(t) => match t.kind {
                TriggerKind::Cc => "trigger_cc",
                TriggerKind::Bcc => "trigger_bcc",
                TriggerKind::PhoneContact => "phone_contact",
                TriggerKind::Manual => "manual",
            },
            Decision::Refuse { reason, .. } => match reason {
                Refusal::UnknownSender => "refused_unknown_sender",
                Refusal::Unauthenticated { .. } => "refused_unauthenticated",
                Refusal::OutsideWindow { .. } => "outside_window",
            },
            Decision::Ignore { reason } => match reason {
                Ignored::Unparseable => "ignored_unparseable",
                Ignored::NoSender => "ignored_no_sender",
                Ignored::OwnMail => "ignored_own_mail",
                Ignored::Bounce => "ignored_bounce",
                Ignored::AutoReply { .. } => "ignored_auto_reply",
                Ignored::BulkOrList { .. } => "ignored_bulk",
            },
            Decision::Bounce(_) => "bounce",
            Decision::Complaint(_) => "complaint",
            Decision::OptOut { .. } => "opt_out",
            Decision::Reply { .. } => "reply",
        }
    }
}

/// Parses and classifies a raw message received at `received` (IMAP INTERNALDATE
/// or the file's time: never the forgeable Date header).
pub fn classify_raw(raw: &[u8], received: DateTime<Utc>, cfg: &Config) -> Decision {
    match MessageParser::default().parse(raw) {
        Some(msg) if unreadable(&msg).is_none() => classify(&msg, received, cfg),
        _ => Decision::Ignore {
            reason: Ignored::Unparseable,
        },
    }
}

/// Why a message is no mail canvass can read (and goes to the quarantine,
/// never marked processed as if it were handled): `None` when it is one. A
/// message has at least one of From, Sender, To, Cc, Subject, Date,
/// Message-ID or Received: a file cut off before its headers, or bytes that
/// are no message at all, has none.
pub fn unreadable(msg: &Message<'_>) -> Option<&'static str> {
    if msg.raw_message().iter().all(u8::is_ascii_whitespace) {
        return Some("empty");
    }
    let known = msg.headers().iter().any(|h| {
        matches!(
            h.name,
            HeaderName::From
                | HeaderName::Sender
                | HeaderName::To
                | HeaderName::Cc
                | HeaderName::Subject
                | HeaderName::Date
                | HeaderName::MessageId
                | HeaderName::Received
        )
    });
    (!known).then_some("no header fields")
}

/// Classifies a parsed message. See the module documentation for the order.
pub fn classify(msg: &Message<'_>, received: DateTime<Utc>, cfg: &Config) -> Decision {
    let ignore = |reason| Decision::Ignore { reason };

    let sender = sender(msg);
    let from_consultant = sender.as_ref().is_some_and(|s| cfg.is_consultant(s));
    // A spam complaint is about our mail and is never a trigger, whoever
    // sends it (a consultant forwarding one is writing to us).
    if !from_consultant {
        if let Some(c) = complaint(msg, cfg) {
            return Decision::Complaint(c);
        }
    }
    let sign = bounce_sign(msg, from_consultant);
    // Only a null Return-Path says "bounce": RFC 3834 auto-replies are sent
    // that way too, and their own headers say which they are.
    let is_bounce = match sign {
        Some(BounceSign::Report | BounceSign::Strong) => true,
        Some(BounceSign::Weak) => auto_reply(msg).is_none(),
        None => false,
    };

    let Some(sender) = sender else {
        if is_bounce {
            return bounce_decision(msg, cfg);
        }
        return ignore(Ignored::NoSender);
    };
    // canvass never sends delivery reports or NDRs: one is never our own
    // mail, even when an MTA copied our Message-ID or address onto it.
    if !matches!(sign, Some(BounceSign::Report | BounceSign::Strong))
        && (sender == cfg.survey_address || is_own_message_id(msg, cfg))
    {
        return ignore(Ignored::OwnMail);
    }
    if is_bounce {
        return bounce_decision(msg, cfg);
    }
    let region = cfg.consultant_region(&sender);
    if let Some(header) = auto_reply(msg) {
        // The invitation's List-Unsubscribe mailto is generated by the
        // invitee's mail program, which may say so: that alone is waived.
        let waived = region.is_none() && is_unsubscribe_mailto(msg, cfg);
        if !waived {
            return ignore(Ignored::AutoReply { header });
        }
    }
    if let Some(header) = bulk(msg) {
        return ignore(Ignored::BulkOrList { header });
    }

    let Some(region) = region else {
        return from_non_consultant(msg, sender, cfg);
    };
    let refuse = |reason| Decision::Refuse {
        reason,
        sender: Some(sender.to_string()),
        region: Some(region.name.clone()),
    };
    let trusted_by = match authres::trusted(msg, cfg, sender.domain()) {
        Some(Err(detail)) => return refuse(Refusal::Unauthenticated { detail }),
        Some(Ok(what)) => Some(what),
        None => None,
    };
    let position = cfg.window.position(received);
    if position != Position::Inside {
        return refuse(Refusal::OutsideWindow {
            position,
            received: received.to_rfc3339(),
        });
    }

    // Who else the message went to, by the headers alone.
    let mut survey_in_headers = false;
    let mut any_recipient = false;
    let mut recipients = Vec::new();
    let mut invalid = Vec::new();
    for list in msg.all_to().chain(msg.all_cc()) {
        for a in list.iter() {
            let Some(raw) = a.address() else { continue };
            any_recipient = true;
            match address::parse(raw) {
                Ok(addr) if addr == cfg.survey_address => survey_in_headers = true,
                Ok(addr) => recipients.push(addr),
                Err(e) => invalid.push(invalid_header_address(a.name(), raw, e)),
            }
        }
    }
    let others = !invalid.is_empty() || recipients.iter().any(|a| *a != sender);

    let kind = if others {
        if survey_in_headers {
            TriggerKind::Cc
        } else {
            TriggerKind::Bcc
        }
    } else if survey_in_headers || !any_recipient {
        // To the survey address alone (in To/Cc, or as the only Bcc with no
        // visible recipient at all), perhaps with a copy to the consultant.
        let body = msg.body_text(0).unwrap_or_default();
        let (found, bad) = addresses_in_body(&body);
        recipients = found;
        invalid = bad;
        TriggerKind::PhoneContact
    } else {
        // "To: myself, Bcc: the contacts and the survey address": the contacts
        // cannot be seen. The body is a letter to them, not a list: not read.
        TriggerKind::Bcc
    };

    Decision::Invite(Trigger {
        trusted_by,
        ..select_invitees(cfg, &sender, &region.name, kind, recipients, invalid)
    })
}

/// Step 8 of the policy, shared with `canvass invite`: the candidates minus the
/// consultant, other consultants, the survey address and internal domains,
/// de-duplicated in order of appearance, at most
/// `sending.max_invitees_per_message` of them.
pub fn select_invitees(
    cfg: &Config,
    consultant: &Address,
    region: &str,
    kind: TriggerKind,
    candidates: Vec<Address>,
    invalid: Vec<InvalidLine>,
) -> Trigger {
    let mut trigger = Trigger {
        kind,
        consultant: consultant.clone(),
        region: region.to_string(),
        invitees: Vec::new(),
        skipped: Vec::new(),
        invalid,
        trusted_by: None,
        unread_over_mb: None,
    };
    let mut seen = HashSet::new();
    for addr in candidates {
        if !seen.insert(addr.clone()) {
            continue;
        }
        let why = if addr == cfg.survey_address {
            Some(SkipReason::SurveyAddress)
        } else if addr == *consultant {
            Some(SkipReason::Sender)
        } else if cfg.is_consultant(&addr) {
            Some(SkipReason::Consultant)
        } else if cfg.is_internal(&addr) {
            Some(SkipReason::InternalDomain)
        } else if trigger.invitees.len() >= cfg.sending.max_invitees_per_message {
            Some(SkipReason::OverMessageCap)
        } else {
            None
        };
        match why {
            Some(why) => trigger.skipped.push(Skipped {
                address: addr.to_string(),
                why,
            }),
            None => trigger.invitees.push(addr),
        }
    }
    trigger
}

/// The author: the From address. A message whose From headers name more than
/// one mailbox (two From headers, as a forger may add, or several authors) has
/// no single author canvass could act for: none.
fn sender(msg: &Message<'_>) -> Option<Address> {
    let mut author: Option<Address> = None;
    for h in msg.headers() {
        if h.name != HeaderName::From {
            continue;
        }
        let Some(list) = h.value.as_address() else {
            continue;
        };
        for a in list.iter() {
            let Some(raw) = a.address() else { continue };
            let addr = address::parse(raw).ok()?;
            match &author {
                None => author = Some(addr),
                Some(first) if *first == addr => {}
                Some(_) => return None,
            }
        }
    }
    author
}

/// The values of the header fields named `name`, in message order (top
/// first), unfolded; raw (undecoded) and read lossily, so one 8-bit field
/// does not hide the others. Only the fields asked for are read.
fn header_values<'a>(msg: &'a Message<'_>, name: &'a str) -> impl Iterator<Item = String> + 'a {
    let raw = msg.raw_message();
    msg.headers()
        .iter()
        .filter(move |h| h.name.as_str().eq_ignore_ascii_case(name))
        .map(move |h| {
            let value = raw
                .get(h.offset_start as usize..h.offset_end as usize)
                .map(String::from_utf8_lossy)
                .unwrap_or(Cow::Borrowed(""));
            unfold(&value)
        })
}

fn first_header(msg: &Message<'_>, name: &str) -> Option<String> {
    header_values(msg, name).next()
}

/// Canvass marks every message it sends with a Message-ID of its own shape.
pub const MESSAGE_ID_PREFIX: &str = "canvass.";

fn is_own_message_id(msg: &Message<'_>, cfg: &Config) -> bool {
    msg.message_id()
        .map(|id| {
            id.starts_with(MESSAGE_ID_PREFIX)
                && id.ends_with(&format!("@{}", cfg.survey_address.domain()))
        })
        .unwrap_or(false)
}

/// How sure the headers and shape make us that a message is a bounce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BounceSign {
    /// An RFC 3464 report: `multipart/report; report-type=delivery-status`, or
    /// a `message/delivery-status` part.
    Report,
    /// MAILER-DAEMON, postmaster with a report or an NDR text, Exchange's and
    /// Exim's NDR headers, qmail's or Exchange's text at the top of the body.
    Strong,
    /// Only a null Return-Path: auto-replies are sent that way, too.
    Weak,
}

/// A delivery status notification, standard (RFC 3464) or in the common shapes.
pub fn is_bounce(msg: &Message<'_>) -> bool {
    bounce_sign(msg, false).is_some()
}

/// The sign of a bounce. The text shapes are not believed of a consultant: a
/// consultant who forwards an NDR ("this one bounced, the right address is
/// ...") is writing to canvass, not bouncing.
fn bounce_sign(msg: &Message<'_>, from_consultant: bool) -> Option<BounceSign> {
    let ctype = first_header(msg, "Content-Type")
        .unwrap_or_default()
        .to_ascii_lowercase();
    if (ctype.starts_with("multipart/report") && ctype.contains("delivery-status"))
        || bounce::has_dsn_part(msg)
    {
        return Some(BounceSign::Report);
    }
    let first_from = msg.from().and_then(|f| f.first());
    let from = first_from
        .and_then(|a| a.address())
        .unwrap_or("")
        .to_ascii_lowercase();
    let local = from.split('@').next().unwrap_or("");
    if local == "mailer-daemon" {
        return Some(BounceSign::Strong);
    }
    // The senders of delivery reports (MAILER-DAEMON, postmaster,
    // mail.delivery.system, "Mail Delivery Subsystem", an empty `<>`), and
    // the subjects only reports have, English and Danish: never a trigger.
    if !from_consultant {
        if let Some(f) = first_from {
            let address = Some(f.address().unwrap_or(""));
            if bounce::is_report_sender(address, f.name()) {
                return Some(BounceSign::Strong);
            }
        }
        if msg.subject().is_some_and(bounce::is_report_subject) {
            return Some(BounceSign::Strong);
        }
        // `From: <>` (or `From: "" <>`) parses to no mailbox at all: only
        // the header as written says it is the null sender.
        if first_from.and_then(|a| a.address()).is_none()
            && first_header(msg, "From").is_some_and(|v| {
                let v: String = v.chars().filter(|c| !c.is_whitespace()).collect();
                v.is_empty() || v.ends_with("<>")
            })
        {
            return Some(BounceSign::Strong);
        }
    }
    if first_header(msg, "X-MS-Exchange-Message-Is-Ndr").is_some()
        || first_header(msg, "X-Failed-Recipients").is_some()
    {
        return Some(BounceSign::Strong);
    }
    let text_shape = || {
        msg.body_text(0)
            .is_some_and(|t| bounce::text_shape(&t).is_some())
    };
    if local == "postmaster" && (ctype.contains("report") || text_shape()) {
        return Some(BounceSign::Strong);
    }
    if !from_consultant && text_shape() {
        return Some(BounceSign::Strong);
    }
    if let Some(rp) = first_header(msg, "Return-Path") {
        let rp = rp.trim().to_ascii_lowercase();
        if rp == "<>" || rp.starts_with("<mailer-daemon@") {
            return Some(BounceSign::Weak);
        }
    }
    None
}

/// The bounce, read; when no shape is recognised still a bounce, naming no
/// recipient (and the canvass Message-IDs it returns, if any).
///
/// A report that names nobody but returns a canvass Message-ID is about that
/// invitation: it gets one recipient with an empty address, permanent unless
/// the text says delivery is only delayed, or expired when it says the MTA
/// gave up. Proof (issue 14): the canvass Message-ID, or a report of the
/// configured outbound server; without either the report changes nothing.
fn bounce_decision(msg: &Message<'_>, cfg: &Config) -> Decision {
    let raw = msg.raw_message();
    let mut report = bounce::parse(msg, raw, cfg).unwrap_or_else(|| BounceReport {
        recipients: Vec::new(),
        message_ids: bounce::canvass_message_ids(msg, raw, cfg),
        format: "unknown".to_string(),
        proof: None,
    });
    if report.recipients.is_empty() && !report.message_ids.is_empty() {
        let text = format!(
            "{}\n{}",
            msg.subject().unwrap_or(""),
            msg.body_text(0).unwrap_or_default()
        );
        let status = bounce::enhanced_code(&text).filter(|c| !c.starts_with('2'));
        let gave_up = bounce::gave_up(&text) || status.as_deref() == Some("4.4.7");
        // A status code decides permanence, as everywhere; without one, the
        // wording: gave up (expired), delayed (temporary), else permanent.
        let permanent = match &status {
            Some(s) => s.starts_with('5'),
            None => !gave_up && !bounce::only_delayed(&text),
        };
        let expired = !permanent && gave_up;
        report.recipients.push(BouncedRecipient {
            address: String::new(),
            status,
            permanent,
            expired,
            diagnostic: None,
        });
    }
    report.proof = if !report.message_ids.is_empty() {
        Some(Proof::MessageId)
    } else if from_outbound_server(msg, cfg) {
        Some(Proof::OutboundServer)
    } else {
        None
    };
    Decision::Bounce(report)
}

/// Whether a report is one of canvass' own outbound server. Its
/// `Reporting-MTA` naming one of `trust.outbound_reporting_mta` is not
/// enough: that line is the report's own text, which anybody can write (the
/// server's name is in every invitation's `Received`). The report must also
/// come from it: its From is on that host or a parent domain of it
/// (`MAILER-DAEMON@smtp.siri.dk`), and the configured trust vouches for that
/// domain (DKIM or DMARC, read as [`authres::trusted`] reads it).
fn from_outbound_server(msg: &Message<'_>, cfg: &Config) -> bool {
    let Some(mta) =
        bounce::reporting_mta(msg).filter(|m| cfg.trust.outbound_reporting_mta.contains(m))
    else {
        return false;
    };
    let Some(domain) = msg
        .from()
        .and_then(|f| f.first())
        .and_then(|a| a.address())
        .and_then(|a| a.rsplit_once('@'))
        .map(|(_, d)| d.trim().trim_end_matches('.').to_ascii_lowercase())
    else {
        return false;
    };
    let on_the_host =
        domain.contains('.') && (mta == domain || mta.ends_with(&format!(".{domain}")));
    on_the_host && authres::trusted(msg, cfg, &domain).is_some_and(|v| v.is_ok())
}

/// A sender who is not a consultant: an opt-out, a reply to canvass mail, or
/// refused. Auto-replies, bulk mail and bounces were set aside before.
fn from_non_consultant(msg: &Message<'_>, sender: Address, cfg: &Config) -> Decision {
    let message_ids = referenced_canvass_ids(msg, cfg);
    // Somebody in a consultant's thread who answers everybody ("SV:
    // Afmelding af mødet", with the survey address in Cc) is not opting out
    // of a survey: only an answer to canvass mail, or a message to the survey
    // address alone, is.
    if (!message_ids.is_empty() || only_to_us(msg, cfg)) && asks_to_opt_out(msg) {
        // Proof (issue 14): the invitation's Message-ID it answers, or a From
        // the trusted server authenticated. Anything else may be forged: a
        // person reads it instead.
        if !message_ids.is_empty() {
            return Decision::OptOut {
                from: sender,
                message_ids,
                proof: Proof::MessageId,
            };
        }
        if authres::trusted(msg, cfg, sender.domain()).is_some_and(|v| v.is_ok()) {
            return Decision::OptOut {
                from: sender,
                message_ids,
                proof: Proof::Authenticated,
            };
        }
        return Decision::Reply {
            from: sender,
            message_ids,
            subject: msg.subject().map(str::to_string),
        };
    }
    if !message_ids.is_empty() {
        return Decision::Reply {
            from: sender,
            message_ids,
            subject: msg.subject().map(str::to_string),
        };
    }
    Decision::Refuse {
        reason: Refusal::UnknownSender,
        sender: Some(sender.to_string()),
        region: None,
    }
}

/// The canvass Message-IDs in In-Reply-To and References (and the Subject,
/// where the invitation's List-Unsubscribe mailto puts it), without brackets.
fn referenced_canvass_ids(msg: &Message<'_>, cfg: &Config) -> Vec<String> {
    let mut ids = Vec::new();
    for name in ["In-Reply-To", "References", "Subject"] {
        for value in header_values(msg, name) {
            bounce::scan_message_ids(value.as_bytes(), cfg.survey_address.domain(), &mut ids);
        }
    }
    ids
}

/// To and Cc name nobody but the survey address (or the configured Reply-To).
fn only_to_us(msg: &Message<'_>, cfg: &Config) -> bool {
    msg.all_to().chain(msg.all_cc()).all(|list| {
        list.iter().all(|a| {
            a.address()
                .and_then(|raw| address::parse(raw).ok())
                .is_some_and(|addr| {
                    addr == cfg.survey_address || cfg.reply_to.as_ref() == Some(&addr)
                })
        })
    })
}

fn unfold(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture_config() -> Config {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/classify/config.toml");
        match Config::load(&path) {
            Ok(c) => c,
            Err(e) => panic!("fixture config: {e:?}"),
        }
    }

    fn decide(raw: &str) -> Decision {
        let received = DateTime::parse_from_rfc3339("2024-08-12T10:00:00Z")
            .expect("a time")
            .with_timezone(&Utc);
        classify_raw(raw.as_bytes(), received, &fixture_config())
    }

    const STRANGER: &str = "From: Mette Larsen <mette.larsen@aarhus.dk>\r\n";
    const REF: &str = "In-Reply-To: <canvass.0a1b2c3d4e5f60718293a4b5@siri.dk>\r\n";

    #[test]
    fn strangers_opt_out_reply_or_are_refused() {
        // "afmeld" to the survey address, answering nothing: it proves
        // nothing (anyone can write From: the invitee), so a person reads it.
        let forged = decide(&format!(
            "{STRANGER}To: undersoegelse@siri.dk\r\nSubject: afmeld\r\n\r\n"
        ));
        assert_eq!(forged.label(), "reply", "{forged:?}");
        // The List-Unsubscribe mailto, marked auto-generated by the mail
        // program; it carries the invitation's Message-ID in the subject.
        let generated = decide(&format!(
            "{STRANGER}To: undersoegelse@siri.dk\r\nAuto-Submitted: auto-generated\r\nSubject: afmeld canvass.0a1b@siri.dk\r\n\r\n"
        ));
        assert_eq!(generated.label(), "opt_out", "{generated:?}");
        // Without it, the same proves nothing.
        let bare = decide(&format!(
            "{STRANGER}To: undersoegelse@siri.dk\r\nAuto-Submitted: auto-generated\r\nSubject: afmeld\r\n\r\n"
        ));
        assert_eq!(bare.label(), "reply", "{bare:?}");
        // An automatic *reply* to it is not.
        let replied = decide(&format!(
            "{STRANGER}To: undersoegelse@siri.dk\r\nAuto-Submitted: auto-replied\r\nSubject: afmeld\r\n\r\n"
        ));
        assert_eq!(replied.label(), "ignored_auto_reply", "{replied:?}");
        // "afmeld" to the survey address and somebody else, answering nothing of ours.
        let thread = decide(&format!(
            "{STRANGER}To: anne.hansen@siri.dk\r\nCc: undersoegelse@siri.dk\r\nSubject: afmeld\r\n\r\n"
        ));
        assert_eq!(thread.label(), "refused_unknown_sender", "{thread:?}");
        // The same, answering an invitation: an opt-out.
        let answered = decide(&format!(
            "{STRANGER}{REF}To: anne.hansen@siri.dk\r\nCc: undersoegelse@siri.dk\r\nSubject: afmeld\r\n\r\n"
        ));
        assert_eq!(
            answered,
            Decision::OptOut {
                from: address::parse("mette.larsen@aarhus.dk").expect("valid"),
                message_ids: vec!["canvass.0a1b2c3d4e5f60718293a4b5@siri.dk".into()],
                proof: Proof::MessageId,
            }
        );
        let reply = decide(&format!(
            "{STRANGER}{REF}References: <x@y.dk>\r\n <canvass.ff@siri.dk>\r\nTo: undersoegelse@siri.dk\r\nSubject: Re: Hvad synes du?\r\n\r\nJa tak\r\n"
        ));
        assert_eq!(
            reply,
            Decision::Reply {
                from: address::parse("mette.larsen@aarhus.dk").expect("valid"),
                message_ids: vec![
                    "canvass.0a1b2c3d4e5f60718293a4b5@siri.dk".into(),
                    "canvass.ff@siri.dk".into()
                ],
                subject: Some("Re: Hvad synes du?".into()),
            }
        );
    }

    #[test]
    fn a_consultant_never_opts_out_or_replies() {
        let d = decide(&format!(
            "From: anne.hansen@siri.dk\r\n{REF}To: undersoegelse@siri.dk\r\nSubject: afmeld\r\n\r\nafmeld\r\n"
        ));
        assert_eq!(d.label(), "phone_contact", "{d:?}");
    }

    #[test]
    fn bounces_before_own_mail_and_auto_replies() {
        let report = "MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n\r\n\
                      --b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; x\r\n\r\n\
                      Final-Recipient: rfc822; a@b.dk\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n--b--\r\n";
        // An MTA that copied our Message-ID, or wrote our address as From.
        for head in [
            "From: MAILER-DAEMON@mx.siri.dk\r\nMessage-ID: <canvass.0a1b@siri.dk>\r\n",
            "From: undersoegelse@siri.dk\r\n",
        ] {
            let d = decide(&format!("{head}{report}"));
            assert_eq!(d.label(), "bounce", "{head}: {d:?}");
        }
        let d = decide(
            "From: MAILER-DAEMON@mx.siri.dk\r\nMessage-ID: <canvass.0a1b@siri.dk>\r\n\r\nfailed\r\n",
        );
        assert_eq!(d.label(), "bounce", "{d:?}");
        // Our own mail with a null Return-Path is still our own mail.
        let d = decide("Return-Path: <>\r\nFrom: undersoegelse@siri.dk\r\nSubject: x\r\n\r\nx\r\n");
        assert_eq!(d.label(), "ignored_own_mail", "{d:?}");
        // MAILER-DAEMON without a domain: no sender, still a bounce.
        let d = decide("From: Mail Delivery Subsystem <MAILER-DAEMON>\r\nSubject: x\r\n\r\nHi\r\n");
        let Decision::Bounce(b) = d else {
            panic!("expected a bounce, got {d:?}");
        };
        assert!(b.recipients.is_empty());
        assert_eq!(b.format, "unknown");
        // Only a null Return-Path: an auto-reply when it says so, else a bounce.
        let d = decide(&format!(
            "Return-Path: <>\r\n{STRANGER}Auto-Submitted: auto-replied\r\nSubject: Ferie\r\n\r\nFerie\r\n"
        ));
        assert_eq!(d.label(), "ignored_auto_reply", "{d:?}");
        let d = decide(&format!(
            "Return-Path: <>\r\n{STRANGER}Subject: x\r\n\r\nx\r\n"
        ));
        assert_eq!(d.label(), "bounce", "{d:?}");
    }

    /// Issue 13, point 2: a report without a DSN is recognised by each of
    /// its senders (an empty `<>`, MAILER-DAEMON, postmaster,
    /// mail.delivery.system, "Mail Delivery Subsystem", `Return-Path: <>`)
    /// or its subject (English and Danish), is never a refused trigger, and
    /// the failed address is read from each common text shape, with or
    /// without a code.
    #[test]
    fn every_report_sender_and_text_shape_names_the_failed_address() {
        const PER: &str = "per.hansen@kommune.dk";
        let heads = [
            "From: MAILER-DAEMON <>\r\nSubject: Besked\r\n".to_string(),
            "From: <>\r\nSubject: Besked\r\n".to_string(),
            "From: MAILER-DAEMON@mx.kommune.dk\r\nSubject: Besked\r\n".to_string(),
            "From: postmaster@kommune.dk\r\nSubject: Besked\r\n".to_string(),
            "From: mail.delivery.system@kommune.dk\r\nSubject: Besked\r\n".to_string(),
            "From: Mail Delivery Subsystem <noreply@kommune.dk>\r\nSubject: Besked\r\n".to_string(),
            "Return-Path: <>\r\nFrom: noreply@kommune.dk\r\nSubject: Besked\r\n".to_string(),
        ]
        .into_iter()
        .chain(
            [
                "Undeliverable: Hvad synes du?",
                "Delivery Status Notification (Failure)",
                "Returned mail: see transcript for details",
                "Ikke-leverbar: Hvad synes du?",
                "Kunne ikke leveres: Hvad synes du?",
            ]
            .map(|s| format!("From: noreply@kommune.dk\r\nSubject: {s}\r\n")),
        );
        // (shape, without a code, with a code)
        let shapes = [
            (
                "addr: reason",
                format!("{PER}: Domain does not exist\r\n"),
                format!("{PER}: 550 5.1.2 Domain does not exist\r\n"),
            ),
            (
                "<addr>:",
                format!("<{PER}>:\r\nSorry, no mailbox here by that name.\r\n"),
                format!("<{PER}>:\r\n550 5.1.1 Sorry, no mailbox here by that name.\r\n"),
            ),
            (
                "did not reach the following recipient(s)",
                format!(
                    "Your message\r\n\r\n  Subject: Hvad synes du?\r\n\r\ndid not reach the following recipient(s):\r\n\r\n{PER} on 12-08-2024 10:00\r\n  The e-mail account does not exist at the organization this message was sent to.\r\n"
                ),
                format!(
                    "Your message\r\n\r\n  Subject: Hvad synes du?\r\n\r\ndid not reach the following recipient(s):\r\n\r\n{PER} on 12-08-2024 10:00\r\n  550 5.1.1 The e-mail account does not exist.\r\n"
                ),
            ),
            (
                "Recipient address rejected",
                format!("The mail system\r\n\r\n{PER} (Recipient address rejected: User unknown in local recipient table)\r\n"),
                format!("The mail system\r\n\r\nhost mx.kommune.dk said: 550 5.1.1 <{PER}>: Recipient address rejected: User unknown\r\n"),
            ),
            (
                "user unknown",
                format!("----- Transcript of session follows -----\r\n\r\n{PER}... User unknown\r\n"),
                format!("----- Transcript of session follows -----\r\n\r\n550 {PER}... User unknown\r\n"),
            ),
            (
                "mailbox unavailable",
                format!("Delivery to the following recipient failed.\r\n\r\nRequested action not taken: mailbox unavailable for {PER}\r\n"),
                format!("Delivery to the following recipient failed.\r\n\r\n550 Requested action not taken: mailbox unavailable <{PER}>\r\n"),
            ),
        ];
        for head in heads {
            for (shape, plain, coded) in &shapes {
                for (body, code) in [(plain, false), (coded, true)] {
                    let raw = format!("{head}To: undersoegelse@siri.dk\r\n\r\n{body}");
                    let d = decide(&raw);
                    let Decision::Bounce(b) = &d else {
                        panic!("{shape} (code: {code}) from {head:?}: not a bounce: {d:?}");
                    };
                    let named: Vec<&str> =
                        b.recipients.iter().map(|r| r.address.as_str()).collect();
                    assert_eq!(named, [PER], "{shape} (code: {code}) from {head:?}: {b:#?}");
                    assert!(
                        b.recipients[0].permanent,
                        "{shape} (code: {code}) from {head:?}: {b:#?}"
                    );
                    if code {
                        assert!(
                            b.recipients[0].status.is_some()
                                || b.recipients[0]
                                    .diagnostic
                                    .as_deref()
                                    .is_some_and(|d| d.contains("550")),
                            "{shape} from {head:?}: the code is kept: {b:#?}"
                        );
                    }
                }
            }
        }
    }

    /// Issue 13, point 5: an auto-reply to an invitation (it answers the
    /// invitation's Message-ID, so it would be forwarded as a reply) is
    /// recognised by each listed header and subject, and never forwarded.
    #[test]
    fn every_auto_reply_header_and_subject_is_ignored_not_forwarded() {
        let reply = |extra: &str, subject: &str| {
            decide(&format!(
                "{STRANGER}{REF}To: undersoegelse@siri.dk\r\n{extra}Subject: {subject}\r\n\r\nTak for din mail.\r\n"
            ))
        };
        // Without any sign it is a reply a person reads.
        assert_eq!(reply("", "Re: Hvad synes du?").label(), "reply");
        for header in [
            "X-MS-Exchange-Inbox-Rules-Loop: mette.larsen@aarhus.dk\r\n",
            "X-Autoreply: yes\r\n",
            "X-Autorespond: Hvad synes du?\r\n",
            "Precedence: auto_reply\r\n",
            "Auto-Submitted: auto-replied\r\n",
        ] {
            let d = reply(header, "Re: Hvad synes du?");
            assert_eq!(d.label(), "ignored_auto_reply", "{header}: {d:?}");
        }
        for subject in [
            "=?utf-8?q?Frav=C3=A6rsbesked=3A_Hvad_synes_du=3F?=",
            "=?utf-8?q?Frav=C3=A6rende=3A_Hvad_synes_du=3F?=",
            "Autosvar: Hvad synes du?",
            "Automatisk svar: Hvad synes du?",
            "Ferie",
            "=?utf-8?q?Fr=C3=A5nvaro=3A_Hvad_synes_du=3F?=",
            "Automatiskt svar: Hvad synes du?",
            "=?utf-8?q?Frav=C3=A6rsmelding=3A_Hvad_synes_du=3F?=",
            "Automatic reply: Hvad synes du?",
            "Out of Office: Hvad synes du?",
        ] {
            let d = reply("", subject);
            assert_eq!(d.label(), "ignored_auto_reply", "{subject}: {d:?}");
        }
    }

    #[test]
    fn a_consultant_forwarding_an_ndr_is_not_bouncing() {
        let body = "Delivery has failed to these recipients or groups:\r\n\r\nbo@kommune.dk\r\n";
        let d = decide(&format!(
            "From: anne.hansen@siri.dk\r\nTo: undersoegelse@siri.dk\r\nSubject: Fwd: Undeliverable\r\n\r\n{body}"
        ));
        assert_eq!(d.label(), "phone_contact", "{d:?}");
        let d = decide(&format!(
            "From: MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e@kommune.dk\r\nTo: undersoegelse@siri.dk\r\nSubject: Undeliverable\r\n\r\n{body}"
        ));
        assert_eq!(d.label(), "bounce", "{d:?}");
    }

    #[test]
    fn quoted_local_part_is_reported() {
        let (found, invalid) = addresses_in_body("\"a@b\"@c\n");
        assert!(found.is_empty());
        assert_eq!(invalid.len(), 1);
    }
}
