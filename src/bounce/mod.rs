//! Reading bounces: what a delivery status notification says about mail
//! canvass sent. Pure: a parsed message and its raw bytes in, a
//! [`BounceReport`] out; [`crate::classify`] decides *whether* a message is a
//! bounce, this module reads it.
//!
//! The shapes, tried in this order (the first that names a recipient wins):
//! 1. RFC 3464: `message/delivery-status` (or RFC 6533 `global-delivery-status`)
//!    parts, whatever their transfer encoding (mail-parser decodes them).
//!    Postfix, Exim, Exchange/Office 365 and Gmail all send one;
//! 2. the same fields found in the raw text, when MIME parsing missed the part;
//! 3. qmail ("Hi. This is the qmail-send program at ...", `<addr>:` paragraphs);
//! 4. Exchange text-only NDRs ("Delivery has failed to these recipients or groups:");
//! 5. Gmail text ("Your message wasn't delivered to X because ...");
//! 6. a generic fallback: an address in a paragraph holding an SMTP reply code
//!    or an enhanced status code, in the text above the returned original;
//! 7. Exim's `X-Failed-Recipients` header.
//!
//! Permanent means the address is bad: a 5.x.x status (or, without one, a 5xx
//! SMTP code; without either, `Action: failed` or the shape's own wording).
//! Whenever a status code is given, `permanent` is exactly "its class is 5".
//!
//! canvass Message-IDs (`canvass.<hex>@<survey domain>`) are collected from
//! anywhere in the bounce: its own In-Reply-To/References, the returned
//! original (`message/rfc822`, `text/rfc822-headers`) or quoted text, in any
//! transfer encoding.
//!
//! What lives where: this file has the report types, [`parse`], what makes a
//! message look like a report (sender, subject, text shape, "gave up") and
//! the order the shapes are tried in; `dsn.rs` the RFC 3464 fields and the
//! status codes; `text.rs` the shapes without a DSN (3 to 6 above, and
//! failure wording without a code); `message_ids.rs` the canvass
//! Message-IDs a bounce returns.

mod dsn;
mod message_ids;
mod text;

use std::borrow::Cow;

use mail_parser::{HeaderName, Message, MessagePart, MimeHeaders, PartType};
use serde::Serialize;

use crate::address;
use crate::classify::{Proof, MESSAGE_ID_PREFIX};
use crate::config::Config;

use dsn::{diagnostic, dsn_fields, field_blocks, normalise, strip_type};
pub use dsn::{enhanced_code, smtp_code};
pub use message_ids::{canvass_message_ids, scan_message_ids};
use text::{
    exchange_heading, exchange_text, failure_text, generic_text, gmail_text, qmail, text_recipient,
};

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

/// One recipient a bounce names, and what happened to it.
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

/// Diagnostics are cut to this many characters (they end up in logs).
const MAX_DIAGNOSTIC: usize = 300;

/// How deep nested `message/rfc822` parts are searched for Message-IDs.
const MAX_DEPTH: usize = 4;

/// Reads a bounce. `None` when no known shape is recognised (the caller may
/// still treat the message as a bounce, from its headers, and report no
/// recipient).
pub fn parse(msg: &Message<'_>, raw: &[u8], cfg: &Config) -> Option<BounceReport> {
    let (mut recipients, format) = recipients(msg, raw, cfg)?;
    // A text report that says the MTA gave up makes its temporary failures
    // final (a DSN says so per recipient, with `Action:`).
    if format != "rfc3464" && gave_up(&body_text(msg)) {
        for r in recipients.iter_mut().filter(|r| !r.permanent) {
            r.expired = true;
        }
    }
    Some(BounceReport {
        recipients,
        message_ids: canvass_message_ids(msg, raw, cfg),
        format: format.to_string(),
        proof: None,
    })
}

/// The shape of a bounce's human-readable text, when its first lines are one
/// only a mail system writes (qmail's greeting, Exchange's NDR heading).
/// `classify` uses it to recognise bounces that carry no other sign.
pub fn text_shape(text: &str) -> Option<&'static str> {
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .take(3)
    {
        let lower = line.to_ascii_lowercase();
        if lower.contains("this is the qmail-send program") {
            return Some("qmail");
        }
        if exchange_heading(&lower).is_some() {
            return Some("exchange");
        }
    }
    None
}

/// Whether a text says the MTA gave up for good on a delivery it could not
/// make in time ("giving up", "message expired", "not going to try again",
/// 4.4.7): the invitation was never delivered, though the address may be good.
pub fn gave_up(text: &str) -> bool {
    let l = text.to_lowercase();
    [
        "giving up",
        "gave up",
        "given up",
        "message expired",
        "not going to try again",
        "4.4.7",
        "retry timeout exceeded",
        "retry time exceeded",
        "too long in the queue",
        "in the queue too long",
        "delivery time expired",
        "levering opgivet",
        "er udløbet",
    ]
    .iter()
    .any(|p| l.contains(p))
}

/// Whether a text is a warning that delivery is only delayed (and will be
/// tried again): such a notice never marks anybody.
pub fn only_delayed(text: &str) -> bool {
    let l = text.to_lowercase();
    [
        "delivery is delayed",
        "has been delayed",
        "delivery delayed",
        "will continue trying",
        "will be retried",
        "will retry",
        "still trying",
        "continue delivery attempts",
        "this is a warning only",
        "warning: message",
        "not yet been delivered",
        "delayed mail",
        "(delay)",
        "forsinket",
    ]
    .iter()
    .any(|p| l.contains(p))
        && !gave_up(text)
}

/// Local parts and display names of the senders of delivery reports
/// (issue 13: MAILER-DAEMON, postmaster, mail.delivery.system, "Mail
/// Delivery Subsystem", MDaemon). An empty address (`<>`) is one, too.
pub fn is_report_sender(address: Option<&str>, name: Option<&str>) -> bool {
    let addr = address.unwrap_or("").trim().to_ascii_lowercase();
    let local = addr.split('@').next().unwrap_or("");
    if address.is_some() && addr.trim_matches(['<', '>', ' ']).is_empty() {
        return true;
    }
    if [
        "mailer-daemon",
        "mailerdaemon",
        "mailer_daemon",
        "mail-daemon",
        "maildaemon",
        "mdaemon",
        "postmaster",
        "mail.delivery.system",
        "mail-delivery-system",
        "maildeliverysystem",
        "microsoftexchange",
    ]
    .iter()
    .any(|p| local == *p || (*p == "microsoftexchange" && local.starts_with(p)))
    {
        return true;
    }
    let name = name.unwrap_or("").trim().to_ascii_lowercase();
    [
        "mail delivery subsystem",
        "mail delivery system",
        "mailer-daemon",
        "postmaster",
        "mail administrator",
        "system administrator",
    ]
    .iter()
    .any(|p| name == *p || name.starts_with(&format!("{p} ")))
}

/// A subject that only a delivery report has, in English and Danish (and the
/// other Scandinavian languages): "Undeliverable: ...", "Delivery Status
/// Notification (Failure)", "Returned mail", "Ikke-leverbar", "Kunne ikke
/// leveres". A reply ("SV: Undeliverable?") is a person writing.
pub fn is_report_subject(subject: &str) -> bool {
    let l = subject.trim().to_lowercase();
    if ["re:", "sv:", "aw:", "fw:", "fwd:", "vs:", "vb:", "antw:"]
        .iter()
        .any(|p| l.starts_with(p))
    {
        return false;
    }
    [
        "undeliverable",
        "undelivered mail",
        "undelivered message",
        "delivery status notification (failure)",
        "delivery status notification (delay)",
        "delivery notification",
        "returned mail",
        "mail returned",
        "returned to sender",
        "delivery failure",
        "delivery failed",
        "delivery has failed",
        "permanent delivery failure",
        "failure notice",
        "failed delivery",
        "mail delivery failed",
        "mail delivery failure",
        "message delivery failure",
        "could not be delivered",
        "couldn't be delivered",
        "not delivered",
        "nondeliverable",
        "non-deliverable",
        "non remis",
        "nicht zustellbar",
        "unzustellbar",
        "user unknown",
        "mail system error",
        "delivery problem",
        "non-delivery",
        "ikke-leverbar",
        "ikke leverbar",
        "kunne ikke leveres",
        "kan ikke leveres",
        "kunne ikke afleveres",
        "leveringsfejl",
        "returneret post",
        "returpost",
        "olevererbart",
        "kunde inte levereras",
        "kunne ikke leveres",
        "ikke levert",
        "leveringsfeil",
    ]
    .iter()
    .any(|p| l.contains(p))
}

// ---------------------------------------------------------------------------
// Recipients.
// ---------------------------------------------------------------------------

fn recipients(
    msg: &Message<'_>,
    raw: &[u8],
    cfg: &Config,
) -> Option<(Vec<BouncedRecipient>, &'static str)> {
    // 1. RFC 3464 parts.
    let mut dsn_part = false;
    let mut found = Vec::new();
    for part in msg.parts.iter().filter(|p| is_dsn_part(p)) {
        dsn_part = true;
        found.extend(dsn_fields(&part_text(part)));
    }
    if !found.is_empty() {
        return Some((dedup(found), "rfc3464"));
    }
    // 2. The fields in the raw text (a DSN part MIME parsing did not find).
    if !dsn_part && may_hold_dsn_fields(raw) {
        let found = dsn_fields(&String::from_utf8_lossy(raw));
        if !found.is_empty() {
            return Some((dedup(found), "rfc3464"));
        }
    }

    // 3.-6. The human-readable text.
    let text = body_text(msg);
    let mut shape: Option<&'static str> = dsn_part.then_some("rfc3464");
    type Reader = fn(&str) -> Option<Vec<BouncedRecipient>>;
    let readers: [(&'static str, Reader); 3] = [
        ("qmail", qmail),
        ("exchange", exchange_text),
        ("gmail", gmail_text),
    ];
    for (name, read) in readers {
        if let Some(found) = read(&text) {
            if !found.is_empty() {
                return Some((dedup(found), name));
            }
            shape = shape.or(Some(name));
        }
    }
    // The generic readers: an address near a code, and the failure
    // wording; what both find, the first with its code.
    let exclude = own_addresses(msg);
    let mut found = generic_text(&text, cfg);
    found.extend(failure_text(
        &text,
        msg.subject().unwrap_or(""),
        &exclude,
        cfg,
    ));
    found.retain(|r| !exclude.contains(&r.address));
    if !found.is_empty() {
        return Some((dedup(found), shape.unwrap_or("text")));
    }

    // 7. Exim names the failed recipients in a header.
    let mut found = Vec::new();
    for (name, value) in msg.headers_raw() {
        if !name.eq_ignore_ascii_case("X-Failed-Recipients") {
            continue;
        }
        for a in value.split(',') {
            if !a.trim().is_empty() {
                found.push(text_recipient(a, None, true));
            }
        }
    }
    if !found.is_empty() {
        return Some((dedup(found), shape.unwrap_or("x-failed-recipients")));
    }
    shape.map(|s| (Vec::new(), s))
}

/// The addresses in the report's own From, To, Cc, Reply-To and Sender: the
/// mail system and the envelope sender, never a failed recipient.
fn own_addresses(msg: &Message<'_>) -> Vec<String> {
    let mut out = Vec::new();
    for h in msg.headers() {
        if !matches!(
            h.name,
            HeaderName::From
                | HeaderName::To
                | HeaderName::Cc
                | HeaderName::ReplyTo
                | HeaderName::Sender
        ) {
            continue;
        }
        if let Some(list) = h.value.as_address() {
            for a in list.iter() {
                if let Some(raw) = a.address() {
                    let (a, valid) = normalise(raw);
                    if valid {
                        out.push(a);
                    }
                }
            }
        }
    }
    out
}

/// The `Reporting-MTA` of the report's DSN part (`dns; mx.siri.dk` →
/// `mx.siri.dk`), lower case, without a trailing dot.
pub fn reporting_mta(msg: &Message<'_>) -> Option<String> {
    msg.parts.iter().filter(|p| is_dsn_part(p)).find_map(|p| {
        field_blocks(&part_text(p))
            .into_iter()
            .flatten()
            .find_map(|(n, v)| {
                (n == "reporting-mta").then(|| {
                    strip_type(&v)
                        .trim()
                        .trim_end_matches('.')
                        .to_ascii_lowercase()
                })
            })
    })
}

/// Whether the message has an RFC 3464 `message/delivery-status` part.
pub fn has_dsn_part(msg: &Message<'_>) -> bool {
    msg.parts.iter().any(is_dsn_part)
}

fn is_dsn_part(part: &MessagePart<'_>) -> bool {
    part.content_type().is_some_and(|ct| {
        ct.ctype().eq_ignore_ascii_case("message")
            && ct.subtype().is_some_and(|s| {
                s.eq_ignore_ascii_case("delivery-status")
                    || s.eq_ignore_ascii_case("global-delivery-status")
            })
    })
}

/// Whether `raw` may hold a DSN's recipient field (`Final-Recipient`,
/// `Original-Recipient`, in any case), without which [`dsn_fields`] finds
/// nothing: most mail does not, and is not read as text for it.
fn may_hold_dsn_fields(raw: &[u8]) -> bool {
    memchr::memchr_iter(b'-', raw).any(|i| {
        raw.get(i + 1..i + 10)
            .is_some_and(|w| w.eq_ignore_ascii_case(b"recipient"))
    })
}

fn part_text<'a>(part: &'a MessagePart<'_>) -> Cow<'a, str> {
    match &part.body {
        PartType::Text(t) | PartType::Html(t) => Cow::Borrowed(t.as_ref()),
        PartType::Binary(b) | PartType::InlineBinary(b) => String::from_utf8_lossy(b),
        PartType::Message(m) => String::from_utf8_lossy(m.raw_message()),
        PartType::Multipart(_) => Cow::Borrowed(""),
    }
}

/// The explanation a person reads: the first text body (HTML made text).
fn body_text(msg: &Message<'_>) -> String {
    let text = msg.body_text(0).map(|t| t.into_owned()).unwrap_or_default();
    // Gmail and Exchange write "wasn’t" with a typographic apostrophe, too.
    text.replace(['\u{2019}', '\u{2018}'], "'")
}

/// One recipient per address: the first mention wins, a later one fills in
/// what it lacks.
/// Merges repeated recipients; drops those with nothing left of an address
/// (`X-Failed-Recipients: '` — found by tests/it/classify_props.rs).
fn dedup(found: Vec<BouncedRecipient>) -> Vec<BouncedRecipient> {
    let mut out: Vec<BouncedRecipient> = Vec::new();
    for r in found.into_iter().filter(|r| !r.address.is_empty()) {
        match out.iter_mut().find(|o| o.address == r.address) {
            Some(o) => {
                if o.status.is_none() && r.status.is_some() {
                    o.status = r.status;
                    o.permanent = r.permanent;
                }
                if o.diagnostic.is_none() {
                    o.diagnostic = r.diagnostic;
                }
            }
            None => out.push(r),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_parser::MessageParser;

    fn cfg() -> Config {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/classify/config.toml");
        match Config::load(&path) {
            Ok(c) => c,
            Err(e) => panic!("fixture config: {e:?}"),
        }
    }

    fn read(raw: &str) -> Option<BounceReport> {
        let cfg = cfg();
        let msg = MessageParser::default()
            .parse(raw.as_bytes())
            .expect("a message");
        parse(&msg, raw.as_bytes(), &cfg)
    }

    fn one(r: &BounceReport) -> &BouncedRecipient {
        assert_eq!(r.recipients.len(), 1, "{r:#?}");
        &r.recipients[0]
    }

    const ID: &str = "canvass.0a1b2c3d4e5f60718293a4b5@siri.dk";

    #[test]
    fn enhanced_codes() {
        assert_eq!(enhanced_code("Status: 5.1.1").as_deref(), Some("5.1.1"));
        assert_eq!(
            enhanced_code("550 5.1.10 RESOLVER").as_deref(),
            Some("5.1.10")
        );
        assert_eq!(enhanced_code("(#5.1.1)").as_deref(), Some("5.1.1"));
        assert_eq!(enhanced_code("4.4.7 (delayed)").as_deref(), Some("4.4.7"));
        assert_eq!(
            enhanced_code("end of sentence 5.7.1.").as_deref(),
            Some("5.7.1")
        );
        // Not parts of longer dotted numbers, not classes other than 2, 4, 5.
        assert_eq!(enhanced_code("[193.162.86.20]"), None);
        assert_eq!(enhanced_code("10.5.1.1"), None);
        assert_eq!(enhanced_code("15.20.7849.013"), None);
        assert_eq!(enhanced_code("3.1.1"), None);
        assert_eq!(enhanced_code("5.1.1234"), None);
        assert_eq!(enhanced_code("5.1"), None);
    }

    #[test]
    fn smtp_codes() {
        assert_eq!(smtp_code("said: 550 5.1.1 <x@y.dk>"), Some(550));
        assert_eq!(smtp_code("#550 5.1.1"), Some(550));
        assert_eq!(smtp_code("'452-4.2.2 over quota'"), Some(452));
        assert_eq!(smtp_code("smtp;554 rejected"), Some(554));
        assert_eq!(smtp_code("[193.162.86.20] 10:00:02 2024"), None);
        assert_eq!(smtp_code("host:550"), None);
        assert_eq!(smtp_code("4WjK9i0j1Kz9sZ1 Ring 112"), None);
        assert_eq!(smtp_code("5500 kr."), None);
    }

    #[test]
    fn message_ids_anywhere_once() {
        let mut out = Vec::new();
        let text = format!(
            "References: <{ID}>\r\n> Message-ID: <{ID}>\r\n&lt;canvass.ff00@siri.dk&gt; \
             <canvass.abc@siri.dk.evil.example> <xcanvass.abc@siri.dk> <canvass.abc@other.dk> \
             <canvass.XYZ@siri.dk> <canvass.12@SIRI.DK>"
        );
        scan_message_ids(text.as_bytes(), "siri.dk", &mut out);
        assert_eq!(out, [ID, "canvass.ff00@siri.dk", "canvass.12@siri.dk"]);
        // Bytes that are no UTF-8 around one (an 8-bit original) hide nothing.
        let mut out = Vec::new();
        let mut raw = b"Subject: \xe6\xf8\xe5 \xff<".to_vec();
        raw.extend_from_slice(ID.as_bytes());
        raw.extend_from_slice(b">\xfe\xff canvass.");
        scan_message_ids(&raw, "siri.dk", &mut out);
        assert_eq!(out, [ID]);
    }

    #[test]
    fn rfc3464_blocks_prefer_the_original_recipient() {
        let dsn = "Reporting-MTA: dns; mx.siri.dk\r\n\r\n\
                   Final-Recipient: rfc822; mette.larsen@mail.aarhus.dk\r\n\
                   Original-Recipient: rfc822;Mette@Aarhus.dk\r\n\
                   Action: failed\r\n\
                   Status: 5.1.1 (bad mailbox)\r\n\
                   Diagnostic-Code: smtp; 550 5.1.1 <mette.larsen@mail.aarhus.dk>:\r\n\
                   \x20   Recipient address rejected\r\n\r\n\
                   Final-Recipient: rfc822; bo@kommune.dk\r\n\
                   Action: delayed\r\n\
                   Status: 4.4.1\r\n\r\n\
                   Final-Recipient: rfc822; ok@kommune.dk\r\n\
                   Action: relayed\r\n\
                   Status: 2.0.0\r\n\r\n\
                   Final-Recipient: x400; /C=DK/O=SIRI/\r\n\
                   Action: failed\r\n";
        let r = dsn_fields(dsn);
        assert_eq!(r.len(), 3, "{r:#?}");
        assert_eq!(r[0].address, "mette@aarhus.dk");
        assert_eq!(r[0].status.as_deref(), Some("5.1.1"));
        assert!(r[0].permanent);
        assert_eq!(
            r[0].diagnostic.as_deref(),
            Some("550 5.1.1 <mette.larsen@mail.aarhus.dk>: Recipient address rejected")
        );
        assert_eq!(r[1].address, "bo@kommune.dk");
        assert_eq!(r[1].status.as_deref(), Some("4.4.1"));
        assert!(!r[1].permanent);
        // Not an address canvass could have written to: kept as written.
        assert_eq!(r[2].address, "/C=DK/O=SIRI/");
        assert_eq!(r[2].status, None);
        assert!(r[2].permanent, "failed with no code is permanent");
    }

    #[test]
    fn rfc3464_status_from_the_diagnostic_when_missing() {
        let r = dsn_fields(
            "Final-Recipient: rfc822;a@b.dk\nAction: failed\nDiagnostic-Code: smtp; 452 4.2.2 Mailbox full\n",
        );
        assert_eq!(r[0].status.as_deref(), Some("4.2.2"));
        assert!(
            !r[0].permanent,
            "4.x.x is temporary even when the MTA gave up"
        );
    }

    fn report(parts: &str) -> String {
        format!(
            "From: MAILER-DAEMON@mx.siri.dk\r\nTo: undersoegelse@siri.dk\r\nSubject: Undelivered\r\n\
             MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\r\n\
             {parts}--B--\r\n"
        )
    }

    #[test]
    fn base64_and_quoted_printable_dsn_parts() {
        use base64::Engine;
        let dsn = "Reporting-MTA: dns; mx.kommune.dk\r\n\r\nFinal-Recipient: rfc822; jens@kommune.dk\r\nAction: failed\r\nStatus: 5.2.2\r\nDiagnostic-Code: smtp; 552 5.2.2 Mailbox full\r\n";
        let b64 = base64::engine::general_purpose::STANDARD.encode(dsn);
        let raw = report(&format!(
            "--B\r\nContent-Type: text/plain\r\n\r\nSorry.\r\n\
             --B\r\nContent-Type: message/delivery-status\r\nContent-Transfer-Encoding: base64\r\n\r\n{b64}\r\n\
             --B\r\nContent-Type: text/rfc822-headers\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
             Message-ID: <canvass.0a1b2c3d4e5f60718293a4b5@siri.d=\r\nk>\r\n"
        ));
        let r = read(&raw).expect("a DSN");
        assert_eq!(r.format, "rfc3464");
        let rec = one(&r);
        assert_eq!(rec.address, "jens@kommune.dk");
        assert_eq!(rec.status.as_deref(), Some("5.2.2"));
        assert!(rec.permanent);
        // Only the decoded part has the whole Message-ID.
        assert_eq!(r.message_ids, [ID]);
    }

    #[test]
    fn message_rfc822_original_and_in_reply_to() {
        let raw = report(&format!(
            "--B\r\nContent-Type: message/delivery-status\r\n\r\nFinal-Recipient: rfc822; a@b.dk\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n\
             --B\r\nContent-Type: message/rfc822\r\n\r\nFrom: undersoegelse@siri.dk\r\nMessage-ID: <{ID}>\r\nSubject: x\r\n\r\nKære modtager\r\n\r\n"
        ))
        .replace(
            "Subject: Undelivered\r\n",
            "Subject: Undelivered\r\nIn-Reply-To: <canvass.99@siri.dk>\r\n",
        );
        let r = read(&raw).expect("a DSN");
        assert_eq!(r.message_ids, ["canvass.99@siri.dk", ID]);
    }

    #[test]
    fn dsn_fields_in_raw_text_when_the_mime_is_broken() {
        // No boundary parameter: MIME parsing sees one text part.
        let raw = "From: MAILER-DAEMON@mx.siri.dk\r\nContent-Type: multipart/report; report-type=delivery-status\r\n\r\n\
                   --B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; x\r\n\r\n\
                   Final-Recipient: rfc822; a@b.dk\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n--B--\r\n";
        let r = read(raw).expect("fields in the raw text");
        assert_eq!(r.format, "rfc3464");
        assert_eq!(one(&r).address, "a@b.dk");
    }

    #[test]
    fn qmail_permanent_and_given_up() {
        let raw = format!(
            "From: MAILER-DAEMON@mail.kommune.dk\r\nSubject: failure notice\r\n\r\n\
             Hi. This is the qmail-send program at mail.kommune.dk.\r\n\
             I'm afraid I wasn't able to deliver your message to the following addresses.\r\n\
             This is a permanent error; I've given up. Sorry it didn't work out.\r\n\r\n\
             <Jens@Kommune.dk>:\r\nSorry, no mailbox here by that name. (#5.1.1)\r\n\r\n\
             <bo@kommune.dk>:\r\n193.162.86.20 does not like recipient.\r\n\
             Remote host said: 550 Requested action not taken\r\nGiving up on 193.162.86.20.\r\n\r\n\
             <ib@kommune.dk>:\r\nMailbox quota exceeded (#4.2.2)\r\n\r\n\
             --- Below this line is a copy of the message.\r\n\r\n\
             Message-ID: <{ID}>\r\nTo: <nobody@kommune.dk>:\r\n"
        );
        let r = read(&raw).expect("qmail");
        assert_eq!(r.format, "qmail");
        let got: Vec<_> = r
            .recipients
            .iter()
            .map(|x| (x.address.as_str(), x.status.as_deref(), x.permanent))
            .collect();
        assert_eq!(
            got,
            [
                ("jens@kommune.dk", Some("5.1.1"), true),
                ("bo@kommune.dk", None, true),
                ("ib@kommune.dk", Some("4.2.2"), false),
            ]
        );
        assert_eq!(
            r.recipients[1].diagnostic.as_deref(),
            Some("193.162.86.20 does not like recipient. Remote host said: 550 Requested action not taken Giving up on 193.162.86.20.")
        );
        assert_eq!(r.message_ids, [ID]);

        let timeout = "From: MAILER-DAEMON@x.dk\r\n\r\nHi. This is the qmail-send program at x.dk.\r\n\
                       I'm not going to try again; this message has been in the queue too long.\r\n\r\n\
                       <a@b.dk>:\r\nConnection timed out.\r\n";
        let r = read(timeout).expect("qmail");
        assert!(
            !one(&r).permanent,
            "a host that did not answer is not a bad address"
        );
    }

    #[test]
    fn exchange_text_only_with_diagnostics() {
        let raw = format!(
            "From: postmaster@kommune.dk\r\nSubject: Undeliverable: Hvad synes du?\r\nContent-Type: text/plain\r\n\r\n\
             Delivery has failed to these recipients or groups:\r\n\r\n\
             Kontakt Person (kontakt@odense.dk)<mailto:kontakt@odense.dk>\r\n\
             The e-mail address you entered couldn't be found.\r\n\r\n\
             ib@odense.dk\r\nThe recipient's mailbox is full.\r\n\r\n\
             Diagnostic information for administrators:\r\n\r\n\
             Generating server: EXCH01.odense.local\r\n\r\n\
             kontakt@odense.dk\r\n#550 5.1.1 RESOLVER.ADR.RecipNotFound; not found ##\r\n\r\n\
             ib@odense.dk\r\nRemote Server returned '554 5.2.2 mailbox full'\r\n\r\n\
             Original message headers:\r\n\r\nTo: <other@odense.dk>\r\nMessage-ID: <{ID}>\r\n"
        );
        let r = read(&raw).expect("exchange");
        assert_eq!(r.format, "exchange");
        assert_eq!(r.recipients.len(), 2, "{r:#?}");
        assert_eq!(r.recipients[0].address, "kontakt@odense.dk");
        assert_eq!(r.recipients[0].status.as_deref(), Some("5.1.1"));
        assert_eq!(
            r.recipients[0].diagnostic.as_deref(),
            Some("#550 5.1.1 RESOLVER.ADR.RecipNotFound; not found ##")
        );
        assert_eq!(r.recipients[1].status.as_deref(), Some("5.2.2"));
        assert_eq!(r.message_ids, [ID]);

        let delayed = "From: postmaster@x.dk\r\n\r\nDelivery is delayed to these recipients or groups:\r\n\r\na@b.dk\r\n";
        let r = read(delayed).expect("exchange");
        assert!(!one(&r).permanent);
        assert_eq!(one(&r).status, None);

        let danish = "From: postmaster@x.dk\r\n\r\nLeveringen til disse modtagere eller grupper mislykkedes:\r\n\r\nA@B.dk\r\n";
        let r = read(danish).expect("exchange");
        assert_eq!(one(&r).address, "a@b.dk");
        assert!(one(&r).permanent);
    }

    #[test]
    fn gmail_text_without_a_dsn_part() {
        let raw = "From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>\r\n\
                   Content-Type: text/plain; charset=UTF-8\r\n\r\n\
                   ** Address not found **\r\n\r\n\
                   Your message wasn\u{2019}t delivered to Mette.Larsen@aarhus.dk because the address couldn't be found, or is unable to receive mail.\r\n\r\n\
                   The response from the remote server was:\r\n\
                   550 5.1.1 The email account that you tried to reach does not exist.\r\n\r\n";
        let r = read(raw).expect("gmail");
        assert_eq!(r.format, "gmail");
        let rec = one(&r);
        assert_eq!(rec.address, "mette.larsen@aarhus.dk");
        assert_eq!(rec.status.as_deref(), Some("5.1.1"));
        assert_eq!(
            rec.diagnostic.as_deref(),
            Some("550 5.1.1 The email account that you tried to reach does not exist.")
        );

        let temp = "From: mailer-daemon@googlemail.com\r\n\r\n** Message not delivered **\r\n\r\n\
                    There was a temporary problem delivering your message to a@b.dk. Gmail will retry for 47 more hours.\r\n";
        let r = read(temp).expect("gmail");
        assert_eq!(one(&r).address, "a@b.dk");
        assert!(!one(&r).permanent);
    }

    #[test]
    fn generic_text_near_a_code() {
        let raw = "From: MAILER-DAEMON@mx.siri.dk\r\nSubject: Returned mail\r\n\r\n\
                   The original message was sent by undersoegelse@siri.dk.\r\n\r\n\
                   ----- Transcript of session follows -----\r\n\
                   ... while talking to mx.kommune.dk.:\r\n\
                   >>> RCPT To:<Per@Kommune.dk>\r\n\
                   <<< 550 5.1.1 <per@kommune.dk>... User unknown\r\n\r\n\
                   Contact postmaster@kommune.dk for help.\r\n\
                   ----- Original message follows -----\r\n\
                   To: other@kommune.dk\r\nX-Error: 550 5.1.1\r\n";
        let r = read(raw).expect("text");
        assert_eq!(r.format, "text");
        let rec = one(&r);
        assert_eq!(rec.address, "per@kommune.dk");
        assert_eq!(rec.status.as_deref(), Some("5.1.1"));
        assert!(rec.permanent);
    }

    #[test]
    fn exim_failed_recipients_header() {
        let raw = "From: Mail Delivery System <Mailer-Daemon@x.dk>\r\nX-Failed-Recipients: A@b.dk, c@d.dk, '\r\n\r\n\
                   This message was created automatically by mail delivery software.\r\n";
        let r = read(raw).expect("header");
        assert_eq!(r.format, "x-failed-recipients");
        let got: Vec<_> = r.recipients.iter().map(|x| x.address.as_str()).collect();
        assert_eq!(got, ["a@b.dk", "c@d.dk"]);
    }

    #[test]
    fn report_senders_and_subjects() {
        for (addr, name) in [
            (Some(""), Some("MAILER-DAEMON")),
            (Some("<>"), None),
            (Some("postmaster@kommune.dk"), None),
            (Some("Mail.Delivery.System@x.dk"), None),
            (Some("x@y.dk"), Some("Mail Delivery Subsystem")),
            (Some("MDaemon@receive.example.com"), None),
        ] {
            assert!(is_report_sender(addr, name), "{addr:?} {name:?}");
        }
        assert!(!is_report_sender(Some("mette@aarhus.dk"), Some("Mette")));
        assert!(!is_report_sender(None, Some("Mette")));
        for s in [
            "Undeliverable: Hvad synes du?",
            "Delivery Status Notification (Failure)",
            "Returned mail: see transcript for details",
            "Ikke-leverbar: Hvad synes du?",
            "Kunne ikke leveres",
        ] {
            assert!(is_report_subject(s), "{s}");
        }
        for s in ["SV: Undeliverable?", "Hvad synes du?", "Re: returned mail"] {
            assert!(!is_report_subject(s), "{s}");
        }
    }

    #[test]
    fn giving_up_is_final_and_a_delay_is_not() {
        for t in [
            "delivery temporarily suspended ... message expired",
            "I'm not going to try again; this message has been in the queue too long.",
            "Status: 4.4.7",
            "Giving up on 10.0.0.1.",
        ] {
            assert!(gave_up(t), "{t}");
        }
        assert!(!gave_up(
            "Delivery is delayed to these recipients or groups"
        ));
        assert!(only_delayed(
            "This is a warning only. The mail system will continue delivery attempts."
        ));
        assert!(!only_delayed("Warning: message expired, giving up"));
        // A DSN's `Action: failed` with 4.x.x is expired, `delayed` is not.
        let r = dsn_fields("Final-Recipient: rfc822; a@b.dk\nAction: failed\nStatus: 4.4.1\n\nFinal-Recipient: rfc822; c@b.dk\nAction: delayed\nStatus: 4.4.1\n");
        assert!(r[0].expired && !r[0].permanent);
        assert!(!r[1].expired && !r[1].permanent);
    }

    #[test]
    fn failure_wording_without_a_code() {
        let cfg = cfg();
        let none: &[String] = &[];
        let got = |text: &str, subject: &str| -> Vec<String> {
            failure_text(text, subject, none, &cfg)
                .into_iter()
                .map(|r| r.address)
                .collect()
        };
        assert_eq!(
            got("kijitora@example.org: Domain does not exist\n", ""),
            ["kijitora@example.org"]
        );
        assert_eq!(
            got("Your message\n\n  Subject: x\n\ndid not reach the following recipient(s):\n\nbo@kommune.dk on Mon\n", ""),
            ["bo@kommune.dk"]
        );
        assert_eq!(
            got("<jens@x.dk>:\nSorry, no such mailbox\n", ""),
            ["jens@x.dk"]
        );
        assert_eq!(got("Hello\n", "Undeliverable: per@x.dk"), ["per@x.dk"]);
        // The survey address, the mail system and the quoted original are not recipients.
        assert!(got(
            "The message from undersoegelse@siri.dk failed. Contact postmaster@x.dk.\n\n----- Original message -----\nTo: anne@x.dk user unknown\n",
            ""
        )
        .is_empty());
    }

    #[test]
    fn nothing_recognised() {
        assert_eq!(
            read("From: MAILER-DAEMON@x.dk\r\nSubject: hmm\r\n\r\nSomething happened.\r\n"),
            None
        );
    }

    #[test]
    fn text_shapes_only_at_the_top() {
        assert_eq!(
            text_shape("\r\nHi. This is the qmail-send program at x.dk.\r\n"),
            Some("qmail")
        );
        assert_eq!(
            text_shape("Delivery has failed to these recipients or groups:\n\na@b.dk\n"),
            Some("exchange")
        );
        assert_eq!(
            text_shape(
                "Hej\n\nSe nedenfor\n\nTak\nDelivery has failed to these recipients or groups:\n"
            ),
            None
        );
    }

    #[test]
    fn multiline_smtp_replies_are_joined() {
        assert_eq!(
            diagnostic("550-5.1.1 The account does\n not exist. Please try\n 550-5.1.1 again or\n 550 5.1.1 https://x - gsmtp"),
            "550 5.1.1 The account does not exist. Please try again or https://x - gsmtp"
        );
        assert_eq!(
            diagnostic("452-4.2.2 The inbox\n 452 4.2.2 is full"),
            "452 4.2.2 The inbox is full"
        );
        // One line, or not a reply at all: as written.
        assert_eq!(diagnostic("550 5.1.1 550 again"), "550 5.1.1 550 again");
        assert_eq!(diagnostic("x-1 550-5.1.1"), "x-1 550-5.1.1");
    }

    #[test]
    fn long_diagnostics_are_cut() {
        let d = diagnostic(&"ø".repeat(1000));
        assert_eq!(d.chars().count(), MAX_DIAGNOSTIC + 1);
        assert!(d.ends_with('…'));
    }
}
