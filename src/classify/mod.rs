//! Deciding what a message asks of canvass. Pure: raw message + config in, a
//! [`Decision`] out; no store, no clock, no network. `canvass explain` prints
//! exactly this, so an operator sees the same reasoning the daemon used.
//!
//! The order of the checks is the policy:
//! 0. a spam complaint (an ARF report, a provider's notice returning a canvass
//!    Message-ID), not from a consultant → [`Decision::Complaint`];
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
//!      invitation's Message-ID, or its From passed DKIM/DMARC under
//!      `trust.authserv_id`), else a [`Decision::Reply`] a person reads;
//!    - else In-Reply-To/References name a canvass Message-ID → [`Decision::Reply`];
//!    - else refused, unknown sender;
//! 5. where a trusted `authserv-id` is configured, DKIM or DMARC must have passed for
//!    the consultant's domain → else refused;
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
//! What the store must answer (already invited? over the consultant's daily cap?) is
//! decided later, in [`crate::apply`], also by pure functions.

use std::borrow::Cow;
use std::collections::HashSet;

use chrono::{DateTime, Utc};
use mail_parser::{HeaderName, Message, MessageParser, MimeHeaders, PartType};
use serde::Serialize;

use crate::address::{self, Address};
use crate::bounce;
use crate::config::Config;
use crate::window::Position;

pub mod authres;

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

/// What a bounce says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BounceReport {
    /// The failed (or delayed) recipients.
    pub recipients: Vec<BouncedRecipient>,
    /// canvass Message-IDs found in the bounce (the returned original).
    pub message_ids: Vec<String>,
    /// Which shape was recognised: "rfc3464", "qmail", "exchange", "text", ...
    pub format: String,
    /// Why canvass may act on it (issue 14: a bounce must prove it is about
    /// an invitation). `None`: it proves nothing and changes nothing.
    pub proof: Option<Proof>,
}

/// What makes a bounce, complaint or opt-out about a given invitation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Proof {
    /// It carries the invitation's canvass Message-ID (random, unguessable):
    /// only that invitation may be changed.
    MessageId,
    /// A delivery report from canvass' own outbound server
    /// (`trust.outbound_reporting_mta`): matched by the address it names.
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
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BouncedRecipient {
    /// The normalised address (as written when it is not valid).
    pub address: String,
    /// The enhanced status code, e.g. "5.1.1".
    pub status: Option<String>,
    /// Permanent (5.x.x) rather than temporary (4.x.x / delayed): the address is bad.
    pub permanent: bool,
    /// Not permanent, but final: the MTA gave up (`Action: failed` with a
    /// 4.x.x status, 4.4.7, "giving up", "message expired", "not going to try
    /// again"). The invitation was never delivered ("expired").
    pub expired: bool,
    pub diagnostic: Option<String>,
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
    /// Beyond `sending.max_invitees_per_consultant_per_day` (decided in apply).
    OverDailyCap,
    /// Invited before, by anyone (decided in apply).
    AlreadyInvited,
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
    /// A trusted authserv-id is configured and it did not vouch for the sender.
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

/// A To/Cc entry that is not an address canvass writes to. mail-parser reads
/// `"a@b"@c.dk` as the display name `a@b` and the address `@c.dk`: put the
/// quoted local part back so the report shows what the consultant wrote.
fn invalid_header_address(name: Option<&str>, raw: &str, e: address::AddressError) -> InvalidLine {
    if let (Some(name), true) = (name, raw.starts_with('@')) {
        let line = format!("\"{name}\"{raw}");
        let error = match address::parse(&line) {
            Err(e) => e.to_string(),
            Ok(_) => e.to_string(),
        };
        return InvalidLine { line, error };
    }
    InvalidLine {
        line: raw.to_string(),
        error: e.to_string(),
    }
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

/// The headers in message order (top first), values raw (folded, undecoded),
/// decoded lossily so one 8-bit header does not hide the others.
fn raw_headers<'a>(msg: &'a Message<'_>) -> impl Iterator<Item = (&'a str, Cow<'a, str>)> + 'a {
    let raw = msg.raw_message();
    msg.headers().iter().map(move |h| {
        let value = raw
            .get(h.offset_start as usize..h.offset_end as usize)
            .map(String::from_utf8_lossy)
            .unwrap_or(Cow::Borrowed(""));
        (h.name.as_str(), value)
    })
}

fn header_values<'a>(msg: &'a Message<'_>, name: &'a str) -> impl Iterator<Item = String> + 'a {
    raw_headers(msg)
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| unfold(&v))
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
    } else if bounce::reporting_mta(msg)
        .is_some_and(|m| cfg.trust.outbound_reporting_mta.contains(&m))
    {
        Some(Proof::OutboundServer)
    } else {
        None
    };
    Decision::Bounce(report)
}

/// Subjects of providers' complaint notices.
const COMPLAINT_SUBJECTS: [&str; 8] = [
    "complaint",
    "abuse report",
    "spam report",
    "feedback loop",
    "fbl report",
    "klage over spam",
    "spamklage",
    "klage:",
];

/// A spam complaint: an ARF report (`multipart/report;
/// report-type=feedback-report` or a `message/feedback-report` part, RFC
/// 5965), or a provider's complaint notice (from abuse@/fbl@/..., or a
/// subject saying "complaint" / "abuse report") that returns a canvass
/// Message-ID. The Message-ID is the proof; without it nobody is opted out.
fn complaint(msg: &Message<'_>, cfg: &Config) -> Option<ComplaintReport> {
    let ctype = first_header(msg, "Content-Type")
        .unwrap_or_default()
        .to_ascii_lowercase();
    let feedback_part = msg.parts.iter().find(|p| {
        p.content_type().is_some_and(|ct| {
            ct.ctype().eq_ignore_ascii_case("message")
                && ct
                    .subtype()
                    .is_some_and(|s| s.eq_ignore_ascii_case("feedback-report"))
        })
    });
    let arf = (ctype.starts_with("multipart/report") && ctype.contains("feedback-report"))
        || feedback_part.is_some();
    let raw = msg.raw_message();
    if arf {
        let feedback_type = feedback_part.and_then(|p| {
            let text = match &p.body {
                PartType::Text(t) => t.to_string(),
                PartType::Binary(b) | PartType::InlineBinary(b) => {
                    String::from_utf8_lossy(b).into_owned()
                }
                PartType::Message(m) => String::from_utf8_lossy(m.raw_message()).into_owned(),
                _ => String::new(),
            };
            text.lines().find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.trim()
                    .eq_ignore_ascii_case("feedback-type")
                    .then(|| value.trim().to_ascii_lowercase())
            })
        });
        return Some(ComplaintReport {
            format: "arf".into(),
            feedback_type,
            message_ids: bounce::canvass_message_ids(msg, raw, cfg),
        });
    }
    let local = msg
        .from()
        .and_then(|f| f.first())
        .and_then(|a| a.address())
        .unwrap_or("")
        .to_ascii_lowercase();
    let local = local.split('@').next().unwrap_or("");
    let from_complaints = [
        "abuse",
        "fbl",
        "feedbackloop",
        "feedback-loop",
        "complaints",
        "scomp",
        "spamreport",
    ]
    .contains(&local);
    let subject = msg.subject().unwrap_or("").to_lowercase();
    let says_complaint = COMPLAINT_SUBJECTS.iter().any(|p| subject.contains(p));
    if !(from_complaints || says_complaint) {
        return None;
    }
    let message_ids = bounce::canvass_message_ids(msg, raw, cfg);
    // A person's In-Reply-To/References name our mail too: only a returned
    // copy (a quoted header block, an attached original) is a notice's.
    let referenced = referenced_canvass_ids(msg, cfg);
    if message_ids.iter().all(|m| referenced.contains(m)) {
        return None;
    }
    Some(ComplaintReport {
        format: "notice".into(),
        feedback_type: None,
        message_ids,
    })
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
            bounce::scan_message_ids(&value, cfg.survey_address.domain(), &mut ids);
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

/// The subject the invitation's `List-Unsubscribe: <mailto:...?subject=afmeld>`
/// puts on the message (see [`crate::compose`]).
pub const UNSUBSCRIBE_SUBJECT: &str = "afmeld";

/// The message the List-Unsubscribe mailto makes: subject "afmeld", to the
/// survey address alone, and generated (`Auto-Submitted: auto-generated`)
/// rather than an automatic reply (no other auto-reply header).
fn is_unsubscribe_mailto(msg: &Message<'_>, cfg: &Config) -> bool {
    // "afmeld", or "afmeld <canvass Message-ID>" (the mailto carries it).
    let subject_ok = msg.subject().is_some_and(|s| {
        let mut w = s.split_whitespace();
        w.next()
            .is_some_and(|f| f.eq_ignore_ascii_case(UNSUBSCRIBE_SUBJECT))
            && w.next()
                .is_none_or(|id| id.trim_matches(['<', '>']).starts_with(MESSAGE_ID_PREFIX))
            && w.next().is_none()
    });
    let generated = first_header(msg, "Auto-Submitted")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("auto-generated"));
    let replied = ["X-Autoreply", "X-Autorespond", "X-Autogenerated"]
        .iter()
        .any(|h| first_header(msg, h).is_some());
    subject_ok && generated && !replied && only_to_us(msg, cfg)
}

/// Whether a message asks to hear no more: its subject (reply prefixes
/// removed), or one of the first two lines the sender wrote, asks to opt out
/// (see [`line_asks_opt_out`]). The body is read from the top down to the
/// first quote mark, attribution line ("Den ... skrev:"), quoted header block
/// ("Fra:", "-----Original Message-----", "________"), signature ("-- ") or
/// sign-off ("Med venlig hilsen"); greetings ("Hej", "Kære Anne") and blank
/// lines do not count among the two.
pub fn asks_to_opt_out(msg: &Message<'_>) -> bool {
    let subject = strip_reply_prefixes(msg.subject().unwrap_or(""));
    if line_asks_opt_out(subject) {
        return true;
    }
    let body = msg.body_text(0).unwrap_or_default();
    let mut counted = 0;
    for line in body.lines() {
        let trimmed = line.trim();
        let lower = trimmed.to_lowercase();
        if line == "-- "
            || trimmed == "--"
            || trimmed.starts_with("-----")
            || trimmed.starts_with("________")
            || ["fra:", "from:", "sendt:", "sent:"]
                .iter()
                .any(|p| lower.starts_with(p))
            || is_attribution(&lower)
            || is_sign_off(&lower)
        {
            break;
        }
        if trimmed.is_empty() || trimmed.starts_with('>') {
            continue;
        }
        if line_asks_opt_out(trimmed) {
            return true;
        }
        if !is_greeting(&lower) {
            counted += 1;
            if counted == 2 {
                break;
            }
        }
    }
    false
}

/// "SV: Re: [EKSTERN] afmeld" → "afmeld".
fn strip_reply_prefixes(subject: &str) -> &str {
    const PREFIXES: [&str; 12] = [
        "re",
        "sv",
        "aw",
        "vs",
        "fw",
        "fwd",
        "antw",
        "wg",
        "tr",
        "vb",
        "svar",
        "videresend",
    ];
    let mut s = subject.trim();
    loop {
        if let Some(rest) = s.strip_prefix('[') {
            if let Some((_, after)) = rest.split_once(']') {
                s = after.trim_start();
                continue;
            }
        }
        match s.split_once(':') {
            Some((p, rest)) if PREFIXES.contains(&p.trim().to_lowercase().as_str()) => {
                s = rest.trim_start();
            }
            _ => return s,
        }
    }
}

fn words(s: &str) -> Vec<String> {
    s.to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// Whether one line (a subject, or a line of the body) asks to opt out:
/// - the line is just "stop";
/// - or a sentence in it holds, as a whole word, "afmeld…" or "frameld…"
///   (afmeld, afmeld mig, afmelde, afmeldes, afmeldt, afmelding), "unsubscribe",
///   "opt out"/"opt-out"/"optout", "remove me" or "fjern(e) mig", case-insensitive,
/// - not negated by "ikke", "ej", "aldrig", "not", "never", "don't", ... among
///   the three words before it ("Jeg ønsker ikke at blive afmeldt"),
/// - and the sentence is no question, unless it is a request to us ("Kan I
///   afmelde mig?", "Could you unsubscribe me?") without an "if"/"hvis":
///   "Hvad sker der, hvis jeg afmelder mig?" is a question for a person, and
///   goes to one as a reply.
pub fn line_asks_opt_out(line: &str) -> bool {
    if words(line) == ["stop"] {
        return true;
    }
    const NEGATIONS: [&str; 11] = [
        "ikke", "ej", "aldrig", "not", "never", "don", "dont", "didn", "doesn", "won", "shouldn",
    ];
    const REQUESTS: [(&str, &str); 10] = [
        ("kan", "i"),
        ("kan", "du"),
        ("vil", "i"),
        ("vil", "du"),
        ("må", "jeg"),
        ("can", "you"),
        ("could", "you"),
        ("would", "you"),
        ("will", "you"),
        ("please", ""),
    ];
    let mut sentences: Vec<(String, bool)> = Vec::new();
    let mut current = String::new();
    for c in line.chars() {
        if matches!(c, '.' | '!' | '?') {
            sentences.push((std::mem::take(&mut current), c == '?'));
        } else {
            current.push(c);
        }
    }
    sentences.push((current, false));
    sentences.iter().any(|(sentence, question)| {
        let w = words(sentence);
        // "Jeg ønsker ikke at deltage", "slet venligst min e-mailadresse":
        // the negation or the verb is the request itself.
        let phrase = (0..w.len()).find(|&k| {
            let next = |n: usize| w.get(k + n).map(String::as_str).unwrap_or("");
            let wants_not = matches!(
                w[k].as_str(),
                "ønsker" | "vil" | "ønsker," | "wish" | "want"
            ) && matches!(next(1), "ikke" | "not")
                && (1..=4).any(|n| {
                    let x = next(n);
                    x.starts_with("deltage")
                        || x.starts_with("modtage")
                        || x == "participate"
                        || x == "receive"
                        || x == "kontaktes"
                });
            let delete_me = (w[k] == "slet" || w[k] == "slette" || w[k] == "delete")
                && (1..=2).any(|n| matches!(next(n), "min" | "mig" | "mit" | "my" | "me"));
            let remove_mine = w[k].starts_with("fjern")
                && (1..=2).any(|n| matches!(next(n), "min" | "mit" | "mine"));
            wants_not || delete_me || remove_mine
        });
        let word = || {
            (0..w.len()).find(|&k| {
                let next = w.get(k + 1).map(String::as_str).unwrap_or("");
                w[k].starts_with("afmeld")
                    || w[k].starts_with("frameld")
                    || w[k] == "unsubscribe"
                    || w[k] == "optout"
                    || (w[k] == "opt" && next == "out")
                    || (w[k] == "remove" && next == "me")
                    || (w[k].starts_with("fjern") && next == "mig")
            })
        };
        if phrase.is_none() {
            let Some(at) = word() else {
                return false;
            };
            if w[at.saturating_sub(3)..at]
                .iter()
                .any(|x| NEGATIONS.contains(&x.as_str()))
            {
                return false;
            }
        }
        if !question {
            return true;
        }
        let first = w.first().map(String::as_str).unwrap_or("");
        let second = w.get(1).map(String::as_str).unwrap_or("");
        let request = REQUESTS
            .iter()
            .any(|(a, b)| *a == first && (b.is_empty() || *b == second));
        request && !w.iter().any(|x| x == "hvis" || x == "if")
    })
}

fn is_greeting(lower: &str) -> bool {
    let w = words(lower);
    w.len() <= 4
        && w.first().is_some_and(|f| {
            [
                "hej",
                "hejsa",
                "hey",
                "hi",
                "hello",
                "dear",
                "kære",
                "goddag",
                "godmorgen",
                "davs",
                "halløj",
                "til",
            ]
            .contains(&f.as_str())
        })
}

fn is_sign_off(lower: &str) -> bool {
    let t = lower.trim_end_matches([',', '.', '!']);
    [
        "mvh",
        "vh",
        "med venlig hilsen",
        "venlig hilsen",
        "hilsen",
        "de bedste hilsner",
        "bedste hilsner",
        "best regards",
        "kind regards",
        "regards",
        "best",
        "cheers",
    ]
    .contains(&t)
        || t.starts_with("sendt fra min")
        || t.starts_with("sent from my")
}

/// RFC 3834 and the de-facto headers of Exchange and others.
fn auto_reply(msg: &Message<'_>) -> Option<String> {
    // A read receipt (RFC 8098 MDN) is generated, never written.
    let lower = first_header(msg, "Content-Type")
        .unwrap_or_default()
        .to_ascii_lowercase();
    if lower.starts_with("multipart/report") && lower.contains("disposition-notification") {
        return Some("Content-Type: multipart/report; report-type=disposition-notification".into());
    }
    if let Some(v) = first_header(msg, "Auto-Submitted") {
        if !v.to_ascii_lowercase().starts_with("no") {
            return Some(format!("Auto-Submitted: {v}"));
        }
    }
    for name in [
        "X-Autoreply",
        "X-Autorespond",
        "X-Autogenerated",
        "X-Autoresponder",
        "X-MS-Exchange-Inbox-Rules-Loop",
    ] {
        if let Some(v) = first_header(msg, name) {
            return Some(format!("{name}: {v}"));
        }
    }
    if let Some(v) = first_header(msg, "Precedence") {
        if v.trim().eq_ignore_ascii_case("auto_reply") {
            return Some(format!("Precedence: {v}"));
        }
    }
    let subject = msg.subject().unwrap_or("");
    if is_ooo_subject(&subject.to_lowercase()) {
        if let Some(v) = first_header(msg, "X-Auto-Response-Suppress") {
            // Exchange out-of-office replies carry "All" together with an OOF subject.
            if v.eq_ignore_ascii_case("all") {
                return Some(format!("X-Auto-Response-Suppress: {v}"));
            }
        }
        return Some(format!("Subject: {subject}"));
    }
    // A webmail autoresponder that says nothing in its headers: its first
    // own lines say the person is away.
    if let Some(line) = away_line(msg) {
        return Some(format!("body: {line}"));
    }
    None
}

/// The first own line of a message that says its author is away ("Jeg er
/// på ferie", "I am out of the office"), when the message is short and asks
/// nothing: what an autoresponder writes.
fn away_line(msg: &Message<'_>) -> Option<String> {
    const AWAY: [&str; 22] = [
        "jeg er på ferie",
        "jeg holder ferie",
        "jeg er fraværende",
        "jeg er ikke på kontoret",
        "jeg er ude af huset",
        "jeg er væk fra kontoret",
        "jeg har ferie",
        "er på ferie til",
        "tak for din mail. jeg er",
        "tak for din henvendelse. jeg er",
        "jag är på semester",
        "jag är inte på kontoret",
        "jag är ledig",
        "jeg er på ferie",
        "jeg er ikke på kontoret",
        "i am out of the office",
        "i am out of office",
        "i'm out of the office",
        "i am on vacation",
        "i am on holiday",
        "i'm on vacation",
        "i am currently away",
    ];
    let body = msg.body_text(0)?;
    let own: Vec<&str> = body
        .lines()
        .map(str::trim)
        .take_while(|l| {
            !l.starts_with('>') && !l.starts_with("-----") && !l.starts_with("________")
        })
        .filter(|l| !l.is_empty())
        .take(4)
        .collect();
    if own.iter().any(|l| l.contains('?')) {
        return None;
    }
    own.iter()
        .find(|l| {
            let l = l.to_lowercase().replace('\u{2019}', "'");
            AWAY.iter().any(|p| l.contains(p))
        })
        .map(|l| l.chars().take(80).collect())
}

/// The subject prefixes mail programs put on automatic replies. The phrase
/// must be the whole subject or be followed by a colon: "Fraværende elev på
/// Bakkeskolen" is a consultant's subject, "Fraværende: Møde" is not.
fn is_ooo_subject(subject: &str) -> bool {
    [
        // Danish
        "automatisk svar",
        "autosvar",
        "fraværsbesked",
        "fraværsmeddelelse",
        "fraværende",
        "fravær",
        "ferie",
        "på ferie",
        "ude af kontoret",
        // Swedish
        "automatiskt svar",
        "frånvaromeddelande",
        "frånvarande",
        "frånvaro",
        "semester",
        // Norwegian
        "fraværsmelding",
        "automatisk melding",
        // English
        "out of office autoreply",
        "out of office",
        "out of the office",
        "automatic reply",
        "autoreply",
        "auto-reply",
        "auto reply",
        "auto-response",
        "autoresponse",
        "away from the office",
        "on vacation",
        "vacation",
        "on holiday",
    ]
    .iter()
    .any(|p| {
        subject
            .trim_start()
            .strip_prefix(p)
            .map(|rest| {
                let rest = rest.trim_start();
                rest.is_empty() || rest.starts_with(':')
            })
            .unwrap_or(false)
    })
}

fn bulk(msg: &Message<'_>) -> Option<String> {
    if let Some(v) = first_header(msg, "Precedence") {
        let l = v.to_ascii_lowercase();
        if ["bulk", "list", "junk"].contains(&l.as_str()) {
            return Some(format!("Precedence: {v}"));
        }
    }
    if let Some(v) = first_header(msg, "List-Id") {
        return Some(format!("List-Id: {v}"));
    }
    None
}

fn unfold(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Removes RFC 5322 comments, `(2048-bit key; unprotected)` as OpenDKIM writes
/// them: their semicolons would otherwise split a result in two.
pub(crate) fn strip_comments(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut depth = 0usize;
    let mut quoted = false;
    let mut escaped = false;
    for c in s.chars() {
        if escaped {
            escaped = false;
            if depth == 0 {
                out.push(c);
            }
            continue;
        }
        match c {
            '\\' => {
                escaped = true;
                if depth == 0 {
                    out.push(c);
                }
            }
            '"' if depth == 0 => {
                quoted = !quoted;
                out.push(c);
            }
            '(' if !quoted => depth += 1,
            ')' if !quoted && depth > 0 => {
                depth -= 1;
                if depth == 0 {
                    out.push(' ');
                }
            }
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// Phone contacts: every line of the body that holds an `@` names contacts.
/// Quoted text, signatures and the quoted original of a reply are not read.
pub fn addresses_in_body(body: &str) -> (Vec<Address>, Vec<InvalidLine>) {
    let mut found = Vec::new();
    let mut seen = HashSet::new();
    let mut invalid = Vec::new();
    for line in body.lines() {
        let trimmed = line.trim();
        if line == "-- " || trimmed.starts_with("-----") || trimmed.starts_with("________") {
            break; // signature or the quoted original
        }
        let lower = trimmed.to_lowercase();
        if lower.starts_with("fra:") || lower.starts_with("from:") {
            break; // Outlook's quoted header block
        }
        if is_attribution(&lower) {
            break; // "Den 12. aug. 2024 kl. 10.00 skrev Mette <m@x.dk>:"
        }
        if trimmed.starts_with('>') || !trimmed.contains('@') {
            continue;
        }
        let unlinked = unlink_mailto(trimmed);
        let mut line_ok = false;
        let mut line_err = None;
        for word in unlinked.split(|c: char| c.is_whitespace() || c == ',' || c == ';') {
            if !word.contains('@') {
                continue;
            }
            let word = word.trim_matches(|c: char| "()[]\"'.:".contains(c));
            let inner = match (word.find('<'), word.rfind('>')) {
                (Some(a), Some(b)) if a < b => &word[a + 1..b],
                _ => word,
            };
            match address::parse(inner) {
                Ok(a) => {
                    line_ok = true;
                    if seen.insert(a.clone()) {
                        found.push(a);
                    }
                }
                Err(e) => line_err = Some((inner.to_string(), e.to_string())),
            }
        }
        if let Some((word, e)) = line_err {
            invalid.push(InvalidLine {
                line: if line_ok { word } else { trimmed.to_string() },
                error: e,
            });
        }
    }
    (found, invalid)
}

/// The line a mail program writes above a quoted original, in Danish or
/// English ("Den 12.08.2024 kl. 11.30 skrev Mette Larsen <m@x.dk>:"), also
/// when it is wrapped before the author's address.
fn is_attribution(lower: &str) -> bool {
    if lower.ends_with("skrev:") || lower.ends_with("wrote:") {
        return true;
    }
    (lower.starts_with("den ") || lower.starts_with("on "))
        && (lower.contains(" skrev") || lower.contains(" wrote"))
        && lower.chars().any(|c| c.is_ascii_digit())
}

/// Outlook's plain-text part writes a linked address as
/// `anne@x.dk<mailto:anne@x.dk>`: make that two words, `anne@x.dk <anne@x.dk>`.
fn unlink_mailto(line: &str) -> Cow<'_, str> {
    const LINK: &str = "<mailto:";
    let lower = line.to_ascii_lowercase();
    if !lower.contains(LINK) {
        return Cow::Borrowed(line);
    }
    let mut out = String::with_capacity(line.len() + 8);
    let mut rest = 0;
    // `to_ascii_lowercase` keeps every byte offset, so `lower`'s apply to `line`.
    for (at, _) in lower.match_indices(LINK) {
        out.push_str(&line[rest..at]);
        out.push_str(" <");
        rest = at + LINK.len();
    }
    out.push_str(&line[rest..]);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_addresses_with_names_and_noise() {
        let body = "Hej\n\nanne@kommune.dk\nBo Berg <BO@politi.dk>, c@x.dk\nikke en adresse@\n> q@quoted.dk\n-- \nsig@siri.dk\n";
        let (found, invalid) = addresses_in_body(body);
        let found: Vec<&str> = found.iter().map(|a| a.as_str()).collect();
        assert_eq!(found, ["anne@kommune.dk", "bo@politi.dk", "c@x.dk"]);
        assert_eq!(invalid.len(), 1);
        assert_eq!(invalid[0].line, "ikke en adresse@");
    }

    #[test]
    fn outlook_mailto_links_are_one_address() {
        let body = "Camilla <camilla@x.dk<mailto:camilla@x.dk>>\nbo@y.dk<MAILTO:bo@y.dk>\nSkriv til Ib<mailto:ib@z.dk>\n";
        let (found, invalid) = addresses_in_body(body);
        let found: Vec<&str> = found.iter().map(|a| a.as_str()).collect();
        assert_eq!(found, ["camilla@x.dk", "bo@y.dk", "ib@z.dk"]);
        assert!(invalid.is_empty(), "{invalid:?}");
    }

    #[test]
    fn attribution_lines_end_the_list() {
        for attribution in [
            "Den 12.08.2024 kl. 11.30 skrev Mette Larsen <mette@aarhus.dk>:",
            "Den tir. 13. aug. 2024 kl. 09.12 skrev Mette Larsen <",
            "On Tue, 13 Aug 2024 at 09:12, Mette <mette@aarhus.dk> wrote:",
            "mette@aarhus.dk skrev:",
        ] {
            let (found, _) =
                addresses_in_body(&format!("a@x.dk\n{attribution}\nmette@aarhus.dk>:\n"));
            let found: Vec<&str> = found.iter().map(|a| a.as_str()).collect();
            assert_eq!(found, ["a@x.dk"], "{attribution}");
        }
        // A plain sentence that starts with "Den" is not an attribution.
        let (found, _) = addresses_in_body("Den borger ringede fra b@y.dk\n");
        assert_eq!(found.len(), 1);
    }

    #[test]
    fn auto_reply_subjects_need_the_colon() {
        assert!(is_ooo_subject("automatisk svar: møde"));
        assert!(is_ooo_subject("fraværende: bekræftelse"));
        assert!(is_ooo_subject("out of office autoreply: x"));
        assert!(is_ooo_subject("autosvar"));
        assert!(!is_ooo_subject("fraværende elev på bakkeskolen"));
        assert!(!is_ooo_subject("sv: automatisk svar: møde"));
        assert!(!is_ooo_subject("autosvaret virker ikke"));
    }

    #[test]
    fn comments_do_not_split_results() {
        assert_eq!(
            unfold(&strip_comments(
                "mx; dkim=pass (2048-bit key; unprotected) header.d=siri.dk"
            )),
            "mx; dkim=pass header.d=siri.dk"
        );
        assert_eq!(strip_comments("a (b (c; d) e) f \"(q)\""), "a   f \"(q)\"");
    }

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

    fn body_asks(body: &str) -> bool {
        let raw = format!("From: a@b.dk\r\nSubject: SV: Hvad synes du?\r\n\r\n{body}");
        let msg = MessageParser::default()
            .parse(raw.as_bytes())
            .expect("a message");
        asks_to_opt_out(&msg)
    }

    #[test]
    fn opt_out_lines() {
        for yes in [
            "afmeld",
            "Afmeld.",
            "AFMELD MIG",
            "afmeld mig tak",
            "Jeg vil gerne afmeldes",
            "Jeg ønsker at framelde mig undersøgelsen",
            "Please unsubscribe me",
            "unsubscribe",
            "Opt-out",
            "Remove me from this list",
            "Fjern mig fra listen",
            "STOP",
            "Stop!",
            "Kan I afmelde mig?",
            "Could you unsubscribe me, please?",
            "Hvad er det her? Afmeld mig.",
            "Jeg vil ikke have flere mails, afmeld mig",
            "Jeg ønsker ikke at deltage i undersøgelsen",
            "Jeg ønsker ikke at deltage … slet venligst min e-mailadresse",
            "Slet venligst min e-mailadresse.",
            "Fjern venligst min mail fra jeres liste",
            "Fjern min adresse",
            "Jeg ønsker ikke at modtage flere mails",
            "Kan I slette min adresse?",
            "Frameld",
        ] {
            assert!(line_asks_opt_out(yes), "{yes:?} asks to opt out");
        }
        for no in [
            "",
            "Tak for invitationen",
            "Jeg ønsker ikke at blive afmeldt",
            "Please don't unsubscribe me",
            "Hvordan afmelder jeg mig?",
            "Hvad sker der, hvis jeg afmelder mig?",
            "Kan I afmelde mig, hvis jeg ikke når at svare?",
            "Stop venligst med at ringe",
            "Vi stoppede samarbejdet",
            "I unsubscribed last week",
            "Hvad sker der, hvis jeg ikke ønsker at deltage?",
            "Vil du slette min gamle adresse, hvis jeg sender en ny?",
            "Hvorfor ønsker I ikke at modtage mit svar?",
        ] {
            assert!(!line_asks_opt_out(no), "{no:?} does not ask to opt out");
        }
        // Every word that starts "afmeld" counts, the past tense too: a sender
        // who says they opted out wants out.
        assert!(line_asks_opt_out("Jeg afmeldte mig i går"));
    }

    #[test]
    fn reply_prefixes_are_removed() {
        assert_eq!(strip_reply_prefixes("SV: Re: [EKSTERN] afmeld"), "afmeld");
        assert_eq!(strip_reply_prefixes("AW:stop"), "stop");
        assert_eq!(
            strip_reply_prefixes("Svar på spørgsmål: x"),
            "Svar på spørgsmål: x"
        );
    }

    #[test]
    fn only_own_lines_of_the_body_count() {
        assert!(body_asks("Afmeld\r\n"));
        assert!(body_asks("Hej SIRI\r\n\r\nAfmeld venligst\r\n"));
        assert!(body_asks(
            "Kære Anne,\r\nTak for mailen.\r\nJeg vil gerne afmeldes.\r\n"
        ));
        // Quoted text, however it is marked, never counts.
        assert!(!body_asks(
            "Tak\r\n> Ønsker du ikke at deltage, svar \"afmeld\".\r\n"
        ));
        assert!(!body_asks("> afmeld\r\n"));
        assert!(!body_asks(
            "Hej\r\n\r\nDen 12. aug. 2024 kl. 12.00 skrev SIRI <undersoegelse@siri.dk>:\r\nafmeld\r\n"
        ));
        assert!(!body_asks("Ok\r\n\r\nFra: SIRI\r\nafmeld\r\n"));
        assert!(!body_asks("Ok\r\n-----Original Message-----\r\nafmeld\r\n"));
        assert!(!body_asks(
            "Ok\r\n________________________________\r\nafmeld\r\n"
        ));
        // Only the first two lines the sender wrote, down to the sign-off.
        assert!(!body_asks(
            "Tak for mailen.\r\nJeg har travlt.\r\nAfmeld.\r\n"
        ));
        assert!(!body_asks(
            "Tak\r\nMvh\r\nJens\r\nunsubscribe from our newsletter\r\n"
        ));
        assert!(!body_asks("Tak\r\n-- \r\nunsubscribe\r\n"));
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
