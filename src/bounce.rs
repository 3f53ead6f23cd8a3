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

use std::borrow::Cow;

use mail_parser::{HeaderName, Message, MessagePart, MimeHeaders, PartType};

use crate::address;
use crate::classify::{BounceReport, BouncedRecipient, MESSAGE_ID_PREFIX};
use crate::config::Config;

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

/// Every canvass Message-ID anywhere in the message, without angle
/// brackets, de-duplicated, in order of first appearance.
pub fn canvass_message_ids(msg: &Message<'_>, raw: &[u8], cfg: &Config) -> Vec<String> {
    let domain = cfg.survey_address.domain();
    let mut out = Vec::new();
    // The raw bytes first: the top-level headers (In-Reply-To, References) come
    // first, then everything sent 7bit or 8bit.
    scan_message_ids(&String::from_utf8_lossy(raw), domain, &mut out);
    // Then every decoded part: base64 and quoted-printable originals.
    part_message_ids(msg, domain, &mut out, 0);
    out
}

/// canvass Message-IDs in one header-ish text (In-Reply-To, References, a body).
pub fn scan_message_ids(text: &str, domain: &str, out: &mut Vec<String>) {
    let bytes = text.as_bytes();
    for (at, _) in text.match_indices(MESSAGE_ID_PREFIX) {
        if at > 0 {
            let prev = bytes[at - 1];
            if prev.is_ascii_alphanumeric() || b"._-+".contains(&prev) {
                continue;
            }
        }
        let rest = &text[at + MESSAGE_ID_PREFIX.len()..];
        let hex_len = rest
            .bytes()
            .take_while(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
            .count();
        if hex_len == 0 {
            continue;
        }
        let Some(after) = rest[hex_len..].strip_prefix('@') else {
            continue;
        };
        let after = after.as_bytes();
        if after.len() < domain.len()
            || !after[..domain.len()].eq_ignore_ascii_case(domain.as_bytes())
        {
            continue;
        }
        let tail = &after[domain.len()..];
        let domain_goes_on = match tail.first() {
            Some(c) if c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_' => true,
            Some(b'.') => tail.get(1).is_some_and(|c| c.is_ascii_alphanumeric()),
            _ => false,
        };
        if domain_goes_on {
            continue;
        }
        let id = format!("{MESSAGE_ID_PREFIX}{}@{domain}", &rest[..hex_len]);
        if !out.contains(&id) {
            out.push(id);
        }
    }
}

fn part_message_ids(msg: &Message<'_>, domain: &str, out: &mut Vec<String>, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    for part in &msg.parts {
        match &part.body {
            PartType::Text(t) | PartType::Html(t) => scan_message_ids(t, domain, out),
            PartType::Binary(b) | PartType::InlineBinary(b) => {
                scan_message_ids(&String::from_utf8_lossy(b), domain, out)
            }
            PartType::Message(m) => {
                scan_message_ids(&String::from_utf8_lossy(m.raw_message()), domain, out);
                part_message_ids(m, domain, out, depth + 1);
            }
            PartType::Multipart(_) => {}
        }
    }
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
    if !dsn_part {
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

// ---------------------------------------------------------------------------
// RFC 3464.
// ---------------------------------------------------------------------------

/// The blocks of `Name: value` fields, separated by blank lines, with folded
/// lines unfolded and names lower-cased. Lines that are not fields are skipped.
fn field_blocks(text: &str) -> Vec<Vec<(String, String)>> {
    let mut blocks = Vec::new();
    let mut current: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            if !current.is_empty() {
                blocks.push(std::mem::take(&mut current));
            }
            continue;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = current.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
            continue;
        }
        if let Some((name, value)) = line.split_once(':') {
            let is_name = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if is_name {
                current.push((name.to_ascii_lowercase(), value.trim().to_string()));
            }
        }
    }
    if !current.is_empty() {
        blocks.push(current);
    }
    blocks
}

/// The per-recipient blocks of a delivery-status body. Recipients that were
/// delivered, relayed or expanded are no failure and are left out.
fn dsn_fields(text: &str) -> Vec<BouncedRecipient> {
    let mut out = Vec::new();
    for block in field_blocks(text) {
        let get = |name: &str| {
            block
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        let original = get("original-recipient").map(typed_address);
        let final_ = get("final-recipient").map(typed_address);
        // canvass wrote the original recipient; the final one may be an alias
        // the receiving side expanded it to.
        let address = match (original, final_) {
            (Some((a, true)), _) | (_, Some((a, true))) => a,
            (_, Some((a, false))) | (Some((a, false)), None) => a,
            (None, None) => continue,
        };
        if address.is_empty() {
            continue;
        }
        let action = get("action")
            .and_then(|a| a.split_whitespace().next())
            .unwrap_or("")
            .to_ascii_lowercase();
        if matches!(action.as_str(), "delivered" | "relayed" | "expanded") {
            continue;
        }
        let diagnostic = get("diagnostic-code").map(|d| diagnostic(strip_type(d)));
        let status = get("status")
            .and_then(enhanced_code)
            .or_else(|| diagnostic.as_deref().and_then(enhanced_code));
        if status.as_deref().is_some_and(|s| s.starts_with('2')) {
            continue;
        }
        let permanent = match &status {
            Some(s) => s.starts_with('5'),
            None => match diagnostic.as_deref().and_then(smtp_code) {
                Some(code) => code >= 500,
                None => action == "failed",
            },
        };
        // `Action: failed` with a 4.x.x status: the MTA gave up (RFC 3464
        // §2.3.3 "failed": no further attempts). Not a bad address, but the
        // invitation was never delivered.
        let expired = !permanent
            && (action == "failed"
                || status.as_deref() == Some("4.4.7")
                || diagnostic.as_deref().is_some_and(gave_up));
        out.push(BouncedRecipient {
            address,
            status,
            permanent,
            expired,
            diagnostic,
        });
    }
    out
}

/// `rfc822; Anne@X.dk` → (`anne@x.dk`, valid). An address that is not valid
/// is kept as written.
fn typed_address(value: &str) -> (String, bool) {
    let written = match value.split_once(';') {
        Some((_, a)) => a,
        None => value,
    };
    normalise(written)
}

fn normalise(written: &str) -> (String, bool) {
    let written = written
        .trim()
        .trim_matches(|c: char| "\"'(),;:[]".contains(c))
        .trim();
    match address::parse(written) {
        Ok(a) => (a.to_string(), true),
        Err(_) => (written.to_string(), false),
    }
}

/// `smtp; 550 5.1.1 ...` → `550 5.1.1 ...`.
fn strip_type(value: &str) -> &str {
    match value.split_once(';') {
        Some((kind, rest))
            if !kind.trim().is_empty() && !kind.trim().contains(char::is_whitespace) =>
        {
            rest
        }
        _ => value,
    }
}

/// A diagnostic as one line of at most [`MAX_DIAGNOSTIC`] characters. A
/// multi-line SMTP reply (`550-5.1.1 The email account ... 550-5.1.1 double-checking
/// ... 550 5.1.1 https://...`, as Gmail writes it) is joined into one sentence
/// under one code.
fn diagnostic(text: &str) -> String {
    let mut words: Vec<&str> = text.split_whitespace().collect();
    let multiline = words.first().and_then(|w| {
        let b = w.as_bytes();
        (b.len() > 4 && b[..3].iter().all(u8::is_ascii_digit) && b[3] == b'-')
            .then(|| (&w[..3], &w[4..]))
    });
    let joined;
    if let Some((code, enhanced)) = multiline {
        let continued = format!("{code}-");
        let mut kept = Vec::with_capacity(words.len());
        let mut i = 1;
        while i < words.len() {
            let w = words[i];
            if w.starts_with(&continued) {
                i += 1;
            } else if w == code && words.get(i + 1) == Some(&enhanced) {
                i += 2;
            } else {
                kept.push(w);
                i += 1;
            }
        }
        joined = format!("{code} {enhanced}");
        words = std::iter::once(joined.as_str()).chain(kept).collect();
    }
    let one_line = words.join(" ");
    match one_line.char_indices().nth(MAX_DIAGNOSTIC) {
        Some((cut, _)) => format!("{}…", &one_line[..cut]),
        None => one_line,
    }
}

/// The first RFC 3463 enhanced status code (`5.1.1`, `4.4.7`, `5.1.10`) in a
/// text: class 2, 4 or 5, then two numbers of one to three digits, not part of
/// a longer dotted number (an IP address, a version).
pub fn enhanced_code(text: &str) -> Option<String> {
    let b = text.as_bytes();
    let digits = |from: usize| {
        b[from.min(b.len())..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count()
    };
    for i in 0..b.len() {
        if !matches!(b[i], b'2' | b'4' | b'5') {
            continue;
        }
        if i > 0 && (b[i - 1].is_ascii_digit() || b[i - 1] == b'.') {
            continue;
        }
        let mut j = i + 1;
        if b.get(j) != Some(&b'.') {
            continue;
        }
        j += 1;
        let n = digits(j);
        if n == 0 || n > 3 {
            continue;
        }
        j += n;
        if b.get(j) != Some(&b'.') {
            continue;
        }
        j += 1;
        let n = digits(j);
        if n == 0 || n > 3 {
            continue;
        }
        j += n;
        let goes_on = match b.get(j) {
            Some(c) if c.is_ascii_digit() => true,
            Some(b'.') => b.get(j + 1).is_some_and(|c| c.is_ascii_digit()),
            _ => false,
        };
        if !goes_on {
            return Some(text[i..j].to_string());
        }
    }
    None
}

/// The first SMTP reply code of a failure (`550`, `452`) standing alone in a text.
pub fn smtp_code(text: &str) -> Option<u16> {
    let b = text.as_bytes();
    for i in 0..b.len().saturating_sub(2) {
        if !matches!(b[i], b'4' | b'5')
            || !matches!(b[i + 1], b'0'..=b'5')
            || !b[i + 2].is_ascii_digit()
        {
            continue;
        }
        if i > 0 && (b[i - 1].is_ascii_alphanumeric() || b"._-:/".contains(&b[i - 1])) {
            continue;
        }
        if b.get(i + 3)
            .is_some_and(|c| c.is_ascii_alphanumeric() || b"._/".contains(c))
        {
            continue;
        }
        return Some(
            u16::from(b[i] - b'0') * 100
                + u16::from(b[i + 1] - b'0') * 10
                + u16::from(b[i + 2] - b'0'),
        );
    }
    None
}

/// A recipient read from text: the status code (class 4 or 5) from the
/// diagnostic when it has one; permanent by that code, else by an SMTP code,
/// else by what the shape's wording says.
fn text_recipient(
    written: &str,
    diagnostic_text: Option<&str>,
    default_permanent: bool,
) -> BouncedRecipient {
    let (address, _) = normalise(written);
    let diagnostic = diagnostic_text.map(diagnostic).filter(|d| !d.is_empty());
    let status = diagnostic
        .as_deref()
        .and_then(enhanced_code)
        .filter(|s| !s.starts_with('2'));
    let permanent = match &status {
        Some(s) => s.starts_with('5'),
        None => match diagnostic.as_deref().and_then(smtp_code) {
            Some(code) => code >= 500,
            None => default_permanent,
        },
    };
    let expired = !permanent
        && (status.as_deref() == Some("4.4.7") || diagnostic.as_deref().is_some_and(gave_up));
    BouncedRecipient {
        address,
        status,
        permanent,
        expired,
        diagnostic,
    }
}

/// Position of `needle` (ASCII, lower case) in `text`, ignoring ASCII case.
fn find_ci(text: &str, needle: &str) -> Option<usize> {
    text.to_ascii_lowercase().find(needle)
}

/// The addresses written in one line of text, normalised, in order.
fn addresses_in_line(line: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for word in line.split(|c: char| c.is_whitespace() || "<>()[],;\"'=:".contains(c)) {
        if !word.contains('@') {
            continue;
        }
        let (a, valid) = normalise(word.trim_end_matches('.'));
        if valid && !out.contains(&a) {
            out.push(a);
        }
    }
    out
}

// ---------------------------------------------------------------------------
// qmail.
// ---------------------------------------------------------------------------

/// qmail-send's bounce:
///
/// ```text
/// Hi. This is the qmail-send program at mail.example.dk.
/// I'm afraid I wasn't able to deliver your message to the following addresses.
/// This is a permanent error; I've given up. Sorry it didn't work out.
///
/// <jens@example.dk>:
/// Sorry, no mailbox here by that name. (#5.1.1)
///
/// --- Below this line is a copy of the message.
/// ```
fn qmail(text: &str) -> Option<Vec<BouncedRecipient>> {
    let start = find_ci(text, "this is the qmail-send program")?;
    let body = &text[start..];
    let end = [
        "--- below this line is a copy",
        "--- enclosed are the original headers",
    ]
    .iter()
    .filter_map(|m| find_ci(body, m))
    .min()
    .unwrap_or(body.len());
    let body = &body[..end];
    // "I'm not going to try again; this message has been in the queue too
    // long." gives up on a host that did not answer: not a bad address.
    let permanent = find_ci(body, "permanent error").is_some();
    let mut out = Vec::new();
    let mut current: Option<(&str, Vec<&str>)> = None;
    let flush = |current: &mut Option<(&str, Vec<&str>)>, out: &mut Vec<BouncedRecipient>| {
        if let Some((addr, lines)) = current.take() {
            let diag = lines.join(" ");
            // "I'm not going to try again; this message has been in the
            // queue too long": qmail gave up on a host, the address may be good.
            out.push(text_recipient(
                addr,
                Some(&diag),
                permanent && !gave_up(&diag),
            ));
        }
    };
    for line in body.lines() {
        let t = line.trim();
        if let Some(addr) = t.strip_prefix('<').and_then(|r| r.strip_suffix(">:")) {
            flush(&mut current, &mut out);
            if !addr.trim().is_empty() {
                current = Some((addr, Vec::new()));
            }
        } else if t.is_empty() {
            flush(&mut current, &mut out);
        } else if let Some((_, lines)) = current.as_mut() {
            lines.push(t);
        }
    }
    flush(&mut current, &mut out);
    Some(out)
}

// ---------------------------------------------------------------------------
// Exchange, text only.
// ---------------------------------------------------------------------------

/// The heading of an Exchange NDR, and whether it reports failure (rather
/// than delay). `lower` is one line, ASCII lower case.
fn exchange_heading(lower: &str) -> Option<bool> {
    if lower.contains("delivery has failed to these recipients or groups") {
        return Some(true);
    }
    if lower.contains("delivery is delayed to these recipients or groups") {
        return Some(false);
    }
    // Danish Outlook/Exchange: "Leveringen til disse modtagere eller grupper
    // mislykkedes:" / "... er forsinket:".
    if lower.contains("modtagere eller grupper") {
        if lower.contains("mislykkedes") {
            return Some(true);
        }
        if lower.contains("forsinket") {
            return Some(false);
        }
    }
    None
}

/// Exchange 2010–2019 and Office 365 text-only NDRs:
///
/// ```text
/// Delivery has failed to these recipients or groups:
///
/// kontakt@odense.dk (kontakt@odense.dk)
/// The email address you entered couldn't be found. ...
///
/// Diagnostic information for administrators:
///
/// Generating server: EXCH01.siri.local
///
/// kontakt@odense.dk
/// Remote Server returned '550 5.1.1 RESOLVER.ADR.RecipNotFound; not found'
///
/// Original message headers:
/// ```
fn exchange_text(text: &str) -> Option<Vec<BouncedRecipient>> {
    let mut lines = text.lines();
    let mut failed = None;
    for line in lines.by_ref() {
        if let Some(f) = exchange_heading(&line.to_ascii_lowercase()) {
            failed = Some(f);
            break;
        }
    }
    let failed = failed?;
    let mut listed: Vec<String> = Vec::new();
    let mut diagnostics: Vec<(String, Vec<&str>)> = Vec::new();
    let mut in_diagnostics = false;
    let mut current: Option<usize> = None;
    for line in lines {
        let t = line.trim();
        let lower = t.to_ascii_lowercase();
        if lower.starts_with("original message headers")
            || lower.starts_with("oprindelige meddelelsesheadere")
            || lower.starts_with("-----original message")
        {
            break;
        }
        if lower.starts_with("diagnostic information for administrators")
            || lower.starts_with("diagnosticeringsoplysninger")
            || lower.starts_with("diagnostiske oplysninger")
        {
            in_diagnostics = true;
            continue;
        }
        if t.is_empty() {
            current = None;
            continue;
        }
        if !in_diagnostics {
            if let Some(a) = addresses_in_line(t).into_iter().next() {
                if !listed.contains(&a) {
                    listed.push(a);
                }
            }
            continue;
        }
        if lower.starts_with("generating server") || lower.starts_with("genererende server") {
            continue;
        }
        // A line that is just an address starts its diagnostic.
        let found = addresses_in_line(t);
        if found.len() == 1 && !t.contains(char::is_whitespace) {
            diagnostics.push((found[0].clone(), Vec::new()));
            current = Some(diagnostics.len() - 1);
        } else if let Some(i) = current {
            diagnostics[i].1.push(t);
        }
    }
    let mut out: Vec<BouncedRecipient> = listed
        .iter()
        .map(|a| {
            let diag = diagnostics
                .iter()
                .find(|(d, _)| d == a)
                .map(|(_, l)| l.join(" "));
            text_recipient(a, diag.as_deref(), failed)
        })
        .collect();
    for (a, l) in &diagnostics {
        if !listed.contains(a) {
            out.push(text_recipient(a, Some(&l.join(" ")), failed));
        }
    }
    Some(out)
}

// ---------------------------------------------------------------------------
// Gmail, text only.
// ---------------------------------------------------------------------------

/// Gmail's explanation (usually beside a DSN part, which is read first):
///
/// ```text
/// ** Address not found **
///
/// Your message wasn't delivered to mette@aarhus.dk because the address couldn't be found, ...
///
/// The response from the remote server was:
/// 550 5.1.1 The email account that you tried to reach does not exist.
/// ```
fn gmail_text(text: &str) -> Option<Vec<BouncedRecipient>> {
    const PHRASES: [(&str, bool); 5] = [
        ("wasn't delivered to ", true),
        ("was not delivered to ", true),
        ("blev ikke leveret til ", true),
        ("temporary problem delivering your message to ", false),
        (
            "midlertidigt problem med at levere din meddelelse til ",
            false,
        ),
    ];
    let lower = text.to_ascii_lowercase();
    let mut named: Vec<(&str, bool)> = Vec::new();
    for (phrase, permanent) in PHRASES {
        for (at, _) in lower.match_indices(phrase) {
            let rest = &text[at + phrase.len()..];
            let word = rest.split_whitespace().next().unwrap_or("");
            let word = word.trim_end_matches(|c: char| ",.;:".contains(c));
            if word.contains('@') {
                named.push((word, permanent));
            }
        }
    }
    let recognised = !named.is_empty()
        || lower.contains("** address not found **")
        || lower.contains("** message not delivered **")
        || lower.contains("** adressen blev ikke fundet **");
    if !recognised {
        return None;
    }
    // The remote server's answer, shared by the recipients named.
    let mut response: Vec<&str> = Vec::new();
    let mut reading = false;
    for line in text.lines() {
        let t = line.trim();
        let l = t.to_ascii_lowercase();
        if reading {
            if t.is_empty() {
                if response.is_empty() {
                    continue;
                }
                break;
            }
            response.push(t);
        } else if l.starts_with("the response from the remote server was")
            || l.starts_with("the response was")
            || l.starts_with("svaret fra fjernserveren var")
            || l.starts_with("svaret var")
        {
            reading = true;
        }
    }
    let response = response.join(" ");
    Some(
        named
            .into_iter()
            .map(|(a, permanent)| {
                text_recipient(
                    a,
                    (!response.is_empty()).then_some(response.as_str()),
                    permanent,
                )
            })
            .collect(),
    )
}

// ---------------------------------------------------------------------------
// Anything else.
// ---------------------------------------------------------------------------

/// Where the returned original starts in the text of the common shapes.
const ORIGINAL_MARKERS: [&str; 9] = [
    "--- below this line is a copy of the message",
    "this is a copy of the message",
    "original message headers",
    "original message follows",
    "-----original message-----",
    "----- original message -----",
    "------- returned message",
    "--- the header of the original message",
    "oprindelige meddelelsesheadere",
];

/// An address in a paragraph that holds a failure code (SMTP 4xx/5xx or an
/// enhanced status code) at or below it: the address line and at most five
/// more, up to a blank line (the paragraph is the diagnostic), in the text
/// above the returned original. The
/// survey address and the mail system's own addresses are not recipients.
///
/// ```text
/// <mette@aarhus.dk>: host mail.aarhus.dk[193.162.86.20] said: 550 5.1.1      (Postfix)
///   line.bech@ishoej.dk                                                       (Exim)
///     host ishoej-dk.mail.protection.outlook.com [52.101.68.3]
///     SMTP error from remote mail server after RCPT TO:<line.bech@ishoej.dk>:
///     550 5.4.1 Recipient address rejected: Access denied.
/// ```
fn generic_text(text: &str, cfg: &Config) -> Vec<BouncedRecipient> {
    const PARAGRAPH: usize = 6;
    let lower = text.to_ascii_lowercase();
    let end = ORIGINAL_MARKERS
        .iter()
        .filter_map(|m| lower.find(m))
        .min()
        .unwrap_or(text.len());
    let lines: Vec<&str> = text[..end].lines().map(str::trim_end).collect();
    let ours = |a: &str| {
        a == cfg.survey_address.as_str()
            || cfg.reply_to.as_ref().is_some_and(|r| r.as_str() == a)
            || ["mailer-daemon@", "postmaster@"]
                .iter()
                .any(|p| a.starts_with(p))
    };
    let has_code =
        |l: &str| enhanced_code(l).is_some_and(|c| !c.starts_with('2')) || smtp_code(l).is_some();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let found: Vec<String> = addresses_in_line(line)
            .into_iter()
            .filter(|a| !ours(a))
            .collect();
        if found.is_empty() {
            continue;
        }
        let paragraph: Vec<&str> = lines[i..]
            .iter()
            .take(PARAGRAPH)
            .take_while(|l| !l.trim().is_empty())
            .copied()
            .collect();
        if !paragraph.iter().any(|l| has_code(l)) {
            continue;
        }
        let diag = paragraph.join(" ");
        for a in found {
            out.push(text_recipient(&a, Some(&diag), true));
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Text without a known shape: Lotus Notes/Domino, IMail, SMTP32, GroupWise,
// Exchange 2003, webmail, "addr: reason".
// ---------------------------------------------------------------------------

/// Words a line of a delivery report uses for a recipient that failed.
const FAILURE_WORDS: [&str; 65] = [
    "invalid",
    "delivery problem",
    "aborted",
    "could not find",
    "non-delivery",
    "did not receive",
    "did not exactly match",
    "did not match",
    "intended recipient",
    "doesn't have",
    "does not have",
    "exceeding",
    "could not be found",
    "user unknown",
    "unknown user",
    "no such user",
    "no such recipient",
    "no such mailbox",
    "unknown recipient",
    "recipient unknown",
    "unknown address",
    "address unknown",
    "unknown local",
    "not known",
    "does not exist",
    "doesn't exist",
    "not exist",
    "non-existent",
    "nonexistent",
    "invalid recipient",
    "invalid address",
    "invalid mailbox",
    "not a valid",
    "mailbox unavailable",
    "mailbox not found",
    "mailbox is disabled",
    "account is disabled",
    "no mailbox",
    "not found",
    "not listed",
    "rejected",
    "refused",
    "undeliverable",
    "could not be delivered",
    "couldn't be delivered",
    "cannot be delivered",
    "can't be delivered",
    "not delivered",
    "did not reach",
    "unable to deliver",
    "could not deliver",
    "delivery failed",
    "delivery failure",
    "failed",
    "fatal",
    "permanent",
    "bad destination",
    "host unknown",
    "unrouteable",
    "inactive",
    "deactivated",
    "no longer",
    "kunne ikke leveres",
    "findes ikke",
    "ukendt",
];

/// Where the returned original begins in a report's text, besides
/// [`ORIGINAL_MARKERS`]: the copy, never the report, may hold any address.
const COPY_MARKERS: [&str; 8] = [
    "unsent message below",
    "----- the following is a copy",
    "------ this is a copy",
    "--- original message",
    "------ original message",
    "message headers follow",
    "the header and text of the original",
    "below is a copy",
];

fn says_failed(lower: &str) -> bool {
    FAILURE_WORDS.iter().any(|w| lower.contains(w))
        || enhanced_code(lower).is_some_and(|c| !c.starts_with('2'))
        || smtp_code(lower).is_some()
}

/// The failed addresses of a report with no known shape: an address in a
/// paragraph that says it failed ("kijitora@example.org: Domain does not
/// exist", "<addr>: user unknown", "Recipient address rejected", "mailbox
/// unavailable"), or listed in the paragraph right after a heading that says
/// so ("did not reach the following recipient(s):", "The following addresses
/// had permanent fatal errors"), or named in a subject that says so
/// ("Undeliverable: addr", "Your message to addr could not be delivered").
/// Only the text above the returned original is read; the survey address,
/// the mail system's own addresses and `exclude` (the report's own From, To,
/// Cc) are never recipients.
fn failure_text(
    text: &str,
    subject: &str,
    exclude: &[String],
    cfg: &Config,
) -> Vec<BouncedRecipient> {
    let lower = text.to_lowercase();
    let end = ORIGINAL_MARKERS
        .iter()
        .chain(COPY_MARKERS.iter())
        .filter_map(|m| lower.find(m))
        .min()
        .unwrap_or(text.len());
    let text = text.get(..end).unwrap_or(text);
    let ours = |a: &str| {
        a == cfg.survey_address.as_str()
            || cfg.reply_to.as_ref().is_some_and(|r| r.as_str() == a)
            || exclude.iter().any(|e| e == a)
            || [
                "mailer-daemon@",
                "postmaster@",
                "mdaemon@",
                "abuse@",
                "hostmaster@",
                "webmaster@",
            ]
            .iter()
            .any(|p| a.starts_with(p))
    };
    let mut out = Vec::new();
    let permanent_of = |para: &str| !only_delayed(para) && !gave_up(para);
    let paragraphs: Vec<Vec<&str>> = text
        .split("\n\n")
        .flat_map(|p| p.split("\r\n\r\n"))
        .map(|p| {
            p.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
        })
        .filter(|p| !p.is_empty())
        .collect();
    for (i, para) in paragraphs.iter().enumerate() {
        let joined = para.join(" ");
        let low = joined.to_lowercase();
        // Quoted headers of the original ("To: x", "From: y") are not the report.
        let lines: Vec<&&str> = para
            .iter()
            .filter(|l| {
                let l = l.to_ascii_lowercase();
                ![
                    "from:",
                    "to:",
                    "cc:",
                    "reply-to:",
                    "sender:",
                    "return-path:",
                    "received:",
                    "message-id:",
                    "date:",
                    "subject:",
                    "envelope-from",
                ]
                .iter()
                .any(|h| l.starts_with(h))
            })
            .collect();
        let found: Vec<String> = lines
            .iter()
            .flat_map(|l| addresses_in_line(l))
            .filter(|a| !ours(a))
            .collect();
        // "<addr>: reason" / "addr: reason" (Postfix, qmail, sbcglobal):
        // the line is the failure.
        let addr_colon = para.iter().any(|l| {
            let t = l.trim_start_matches('<');
            t.split_once(':').is_some_and(|(head, _)| {
                let head = head.trim_end_matches('>');
                !head.contains(char::is_whitespace) && addresses_in_line(head).len() == 1
            })
        });
        if !says_failed(&low) && !addr_colon {
            continue;
        }
        if !found.is_empty() {
            for a in found {
                out.push(text_recipient(&a, Some(&joined), permanent_of(&joined)));
            }
            continue;
        }
        // A heading: the addresses follow in the next paragraph.
        if para
            .last()
            .is_some_and(|l| l.ends_with(':') || l.to_lowercase().contains("following"))
        {
            if let Some(next) = paragraphs.get(i + 1) {
                let diag = next.join(" ");
                for l in next {
                    if let Some(a) = addresses_in_line(l).into_iter().find(|a| !ours(a)) {
                        out.push(text_recipient(&a, Some(&diag), permanent_of(&joined)));
                    }
                }
            }
        }
    }
    if out.is_empty() {
        let low = subject.to_lowercase();
        if is_report_subject(subject) || says_failed(&low) {
            for a in addresses_in_line(subject).into_iter().filter(|a| !ours(a)) {
                out.push(text_recipient(&a, Some(subject), !only_delayed(subject)));
            }
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
        scan_message_ids(&text, "siri.dk", &mut out);
        assert_eq!(out, [ID, "canvass.ff00@siri.dk", "canvass.12@siri.dk"]);
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
