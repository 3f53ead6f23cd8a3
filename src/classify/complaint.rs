//! Spam complaints: an ARF report (RFC 5965) or a provider's own notice,
//! about an invitation only when it returns that invitation's canvass
//! Message-ID, or (issue 13) when it comes from a configured feedback-loop
//! sender (`trust.complaint_senders`) whose From the configured trust
//! authenticated, naming the invitee's address. Anybody can write a report
//! naming an invitee (issue 14): from anyone else an address proves nothing.

use mail_parser::{Message, MessagePart, MimeHeaders, PartType};

use super::{authres, first_header, referenced_canvass_ids, ComplaintReport};
use crate::address::{self, Address};
use crate::bounce;
use crate::config::Config;

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
pub(super) fn complaint(msg: &Message<'_>, cfg: &Config) -> Option<ComplaintReport> {
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
        let report = feedback_part.map(part_text).unwrap_or_default();
        let feedback_type = field_values(&report, "feedback-type")
            .into_iter()
            .next()
            .map(|v| v.to_ascii_lowercase());
        let message_ids = bounce::canvass_message_ids(msg, raw, cfg);
        let (named, trusted_by) = if message_ids.is_empty() {
            // Original-Rcpt-To names the complainer; else the original's To.
            let mut named = addresses_in(field_values(&report, "original-rcpt-to"), cfg);
            if named.is_empty() {
                named = returned_to(msg, cfg, false);
            }
            let trusted_by = vouched_sender(msg, cfg).filter(|_| !named.is_empty());
            (named, trusted_by)
        } else {
            (Vec::new(), None)
        };
        return Some(ComplaintReport {
            format: "arf".into(),
            feedback_type,
            message_ids,
            named,
            trusted_by,
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
    if message_ids.is_empty() {
        // No Message-ID: only a configured, authenticated feedback-loop
        // sender's notice, naming the invitee, is a complaint.
        let named = returned_to(msg, cfg, true);
        let trusted_by = vouched_sender(msg, cfg).filter(|_| !named.is_empty())?;
        return Some(ComplaintReport {
            format: "notice".into(),
            feedback_type: None,
            message_ids,
            named,
            trusted_by: Some(trusted_by),
        });
    }
    if message_ids.iter().all(|m| referenced.contains(m)) {
        return None;
    }
    Some(ComplaintReport {
        format: "notice".into(),
        feedback_type: None,
        message_ids,
        named: Vec::new(),
        trusted_by: None,
    })
}

/// What vouches for a complaint that names only an address: its From is one
/// of `trust.complaint_senders` and the configured trust vouched for that
/// From's domain (what it read). `None` without a trust setting, from
/// anybody else, or when the trust did not vouch.
fn vouched_sender(msg: &Message<'_>, cfg: &Config) -> Option<String> {
    let from = msg
        .from()
        .and_then(|f| f.first())
        .and_then(|a| a.address())
        .and_then(|a| address::parse(a).ok())?;
    if !cfg.trust.is_complaint_sender(&from) {
        return None;
    }
    authres::trusted(msg, cfg, from.domain())?.ok()
}

/// A part's content as text (a report part, returned headers).
fn part_text(p: &MessagePart<'_>) -> String {
    match &p.body {
        PartType::Text(t) => t.to_string(),
        PartType::Binary(b) | PartType::InlineBinary(b) => String::from_utf8_lossy(b).into_owned(),
        PartType::Message(m) => String::from_utf8_lossy(m.raw_message()).into_owned(),
        _ => String::new(),
    }
}

/// The values of the header-like lines `name: value` in `text` (a report
/// part or a block of returned headers), with folded lines joined.
fn field_values(text: &str, name: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut in_field = false;
    for line in text.lines() {
        if in_field && line.starts_with([' ', '\t']) {
            if let Some(last) = out.last_mut() {
                last.push(' ');
                last.push_str(line.trim());
            }
            continue;
        }
        in_field = false;
        if let Some((n, v)) = line.split_once(':') {
            if n.trim_end().eq_ignore_ascii_case(name) && !n.starts_with([' ', '\t']) {
                out.push(v.trim().to_string());
                in_field = true;
            }
        }
    }
    out
}

/// The valid addresses in address-list values (`Name <a@b>, c@d`,
/// `rfc822; a@b`), de-duplicated, without the survey address.
fn addresses_in(values: Vec<String>, cfg: &Config) -> Vec<Address> {
    let mut out = Vec::new();
    for v in &values {
        for item in v.split(',') {
            let item = item.trim();
            let item = item
                .split_once(';')
                .filter(|(t, _)| t.trim().eq_ignore_ascii_case("rfc822"))
                .map_or(item, |(_, a)| a);
            let spec = match (item.rfind('<'), item.rfind('>')) {
                (Some(l), Some(r)) if l < r => &item[l + 1..r],
                _ => item,
            };
            if let Ok(a) = address::parse(spec) {
                if a != cfg.survey_address && !out.contains(&a) {
                    out.push(a);
                }
            }
        }
    }
    out
}

/// The `To` of the original a complaint returns: an attached
/// `message/rfc822`, or returned headers (`text/rfc822-headers`); with
/// `quoted`, else a block of headers quoted in the notice's text (a `To:`
/// line beside a `From:`, `Subject:` or `Message-ID:` line).
fn returned_to(msg: &Message<'_>, cfg: &Config, quoted: bool) -> Vec<Address> {
    let mut values = Vec::new();
    for p in &msg.parts {
        let headers = p.content_type().is_some_and(|ct| {
            ct.subtype()
                .is_some_and(|s| s.eq_ignore_ascii_case("rfc822-headers"))
        });
        match &p.body {
            PartType::Message(m) if !headers => {
                if let Some(list) = m.to() {
                    values.extend(list.iter().filter_map(|a| a.address()).map(str::to_string));
                }
            }
            _ if headers => values.extend(field_values(&part_text(p), "to")),
            _ => {}
        }
    }
    if values.is_empty() && quoted {
        let body = msg.body_text(0).unwrap_or_default().replace("\r\n", "\n");
        for block in body.split("\n\n") {
            let other = ["from", "subject", "message-id"]
                .iter()
                .any(|n| !field_values(block, n).is_empty());
            if other {
                values.extend(field_values(block, "to"));
            }
        }
    }
    addresses_in(values, cfg)
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};

    use super::super::{classify_raw, Decision};
    use super::*;

    fn config(name: &str) -> Config {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/classify")
            .join(name);
        match Config::load(&path) {
            Ok(c) => c,
            Err(e) => panic!("fixture config {name}: {e:?}"),
        }
    }

    /// `config-authserv.toml`: `trust.authserv_id = "mx.siri.dk"`,
    /// `complaint_senders = ["fbl@provider.example", "arf.mail.yahoo.com"]`.
    fn decide_with(cfg: &Config, raw: &str) -> Option<ComplaintReport> {
        let received = DateTime::parse_from_rfc3339("2024-08-13T10:00:00Z")
            .expect("a time")
            .with_timezone(&Utc);
        match classify_raw(raw.as_bytes(), received, cfg) {
            Decision::Complaint(c) => Some(c),
            _ => None,
        }
    }

    fn decide(raw: &str) -> Option<ComplaintReport> {
        decide_with(&config("config-authserv.toml"), raw)
    }

    /// The border's fields: its `Authentication-Results` (`results`) above
    /// the `Received` it added.
    fn border(results: &str) -> String {
        format!(
            "Received: from mx.siri.dk by imap.siri.dk; Tue, 13 Aug 2024 10:00:03 +0200\r\n\
             Authentication-Results: mx.siri.dk; {results}\r\n\
             Received: from mta.example by mx.siri.dk; Tue, 13 Aug 2024 10:00:02 +0200\r\n"
        )
    }

    /// An ARF report from `from` naming `rcpt` in Original-Rcpt-To, with
    /// the returned original's headers (`original`, maybe a Message-ID).
    fn arf(headers: &str, from: &str, rcpt: &str, original: &str) -> String {
        format!(
            "{headers}From: {from}\r\nTo: undersoegelse@siri.dk\r\nSubject: FW: spam\r\n\
             MIME-Version: 1.0\r\n\
             Content-Type: multipart/report; report-type=feedback-report; boundary=\"b\"\r\n\r\n\
             --b\r\nContent-Type: text/plain\r\n\r\nAn abuse report.\r\n\r\n\
             --b\r\nContent-Type: message/feedback-report\r\n\r\n\
             Feedback-Type: abuse\r\nVersion: 1\r\n{rcpt}\r\n\
             --b\r\nContent-Type: text/rfc822-headers\r\n\r\n{original}\r\n--b--\r\n"
        )
    }

    const YAHOO: &str = "feedback@arf.mail.yahoo.com";
    const YAHOO_PASS: &str = "dmarc=pass header.from=arf.mail.yahoo.com";
    const RCPT: &str = "Original-Rcpt-To: <Klager@Yahoo.dk>\r\n";
    const ORIGINAL: &str =
        "From: undersoegelse@siri.dk\r\nTo: klager@yahoo.dk\r\nSubject: Hvad synes du?\r\n";

    fn klager() -> Vec<Address> {
        vec![address::parse("klager@yahoo.dk").expect("valid")]
    }

    #[test]
    fn an_authenticated_configured_sender_naming_only_the_invitee_is_believed() {
        let c = decide(&arf(&border(YAHOO_PASS), YAHOO, RCPT, ORIGINAL)).expect("a complaint");
        assert!(c.message_ids.is_empty());
        assert_eq!(c.named, klager());
        assert!(
            c.trusted_by
                .as_deref()
                .is_some_and(|t| t.contains("dmarc=pass for arf.mail.yahoo.com")),
            "{c:?}"
        );
        // Without Original-Rcpt-To: the returned original's To.
        let c = decide(&arf(&border(YAHOO_PASS), YAHOO, "", ORIGINAL)).expect("a complaint");
        assert_eq!((c.named, c.trusted_by.is_some()), (klager(), true));
        // A configured address (not a domain) is that address only.
        let pass = border("dkim=pass header.d=provider.example");
        let c = decide(&arf(&pass, "fbl@provider.example", RCPT, ORIGINAL)).expect("a complaint");
        assert!(c.trusted_by.is_some(), "{c:?}");
        let c = decide(&arf(&pass, "abuse@provider.example", RCPT, ORIGINAL)).expect("a complaint");
        assert_eq!((c.named, c.trusted_by), (klager(), None));
    }

    #[test]
    fn a_forged_or_unconfigured_sender_naming_only_the_invitee_proves_nothing() {
        // No Authentication-Results of our border at all.
        let c = decide(&arf("", YAHOO, RCPT, ORIGINAL)).expect("a complaint");
        assert_eq!((c.named.clone(), c.trusted_by), (klager(), None));
        // The border says DMARC failed; a forged pass below its Received.
        let forged = format!(
            "{}Authentication-Results: mx.siri.dk; {YAHOO_PASS}\r\n",
            border("dmarc=fail header.from=arf.mail.yahoo.com")
        );
        let c = decide(&arf(&forged, YAHOO, RCPT, ORIGINAL)).expect("a complaint");
        assert_eq!(c.trusted_by, None);
        // Authenticated, but nobody configured it (nor a subdomain of a
        // configured domain).
        for (from, pass) in [
            ("abuse@evil.example", "dmarc=pass header.from=evil.example"),
            (
                "fbl@x.arf.mail.yahoo.com",
                "dmarc=pass header.from=x.arf.mail.yahoo.com",
            ),
        ] {
            let c = decide(&arf(&border(pass), from, RCPT, ORIGINAL)).expect("a complaint");
            assert_eq!(c.trusted_by, None, "{from}");
        }
        // No trust setting at all (config.toml): nothing is authenticated.
        let plain = config("config.toml");
        let c = decide_with(&plain, &arf(&border(YAHOO_PASS), YAHOO, RCPT, ORIGINAL))
            .expect("a complaint");
        assert_eq!(c.trusted_by, None);
    }

    #[test]
    fn a_returned_message_id_still_decides_alone() {
        let original =
            format!("{ORIGINAL}Message-ID: <canvass.0a1b2c3d4e5f607182930415@siri.dk>\r\n");
        let c = decide(&arf(&border(YAHOO_PASS), YAHOO, RCPT, &original)).expect("a complaint");
        assert_eq!(c.message_ids, ["canvass.0a1b2c3d4e5f607182930415@siri.dk"]);
        assert_eq!((c.named, c.trusted_by), (Vec::new(), None));
    }

    #[test]
    fn a_provider_notice_names_the_returned_originals_to() {
        let notice = |results: &str, from: &str, body: &str| {
            format!(
                "{}From: {from}\r\nTo: undersoegelse@siri.dk\r\n\
                 Subject: Complaint about a message from your domain\r\n\
                 Content-Type: text/plain; charset=utf-8\r\n\r\n{body}",
                border(results)
            )
        };
        let quoted = "A user reported this as spam.\r\n\r\n----- Original message headers -----\r\n\
                      From: undersoegelse@siri.dk\r\nTo: klager@provider.example\r\nSubject: Hvad synes du?\r\n";
        let pass = "dmarc=pass header.from=provider.example";
        let c = decide(&notice(pass, "fbl@provider.example", quoted)).expect("a complaint");
        assert_eq!(c.format, "notice");
        assert_eq!(
            c.named,
            [address::parse("klager@provider.example").expect("valid")]
        );
        assert!(c.trusted_by.is_some());
        // Forged, or from a sender nobody configured: no complaint at all,
        // as before (a notice needs a returned Message-ID).
        let fail = "dmarc=fail header.from=provider.example";
        assert_eq!(decide(&notice(fail, "fbl@provider.example", quoted)), None);
        assert_eq!(
            decide(&notice(pass, "abuse@provider.example", quoted)),
            None
        );
        // A `To:` line alone in the text is no returned header block.
        let prose = "A user reported this as spam.\r\nTo: klager@provider.example\r\n";
        assert_eq!(decide(&notice(pass, "fbl@provider.example", prose)), None);
    }

    #[test]
    fn header_fields_and_address_lists() {
        let text = "Original-Rcpt-To: rfc822; a@b.dk\r\noriginal-rcpt-to: <c@d.dk>,\r\n Name <e@f.dk>\r\nX-To: g@h.dk\r\n";
        let values = field_values(text, "original-rcpt-to");
        assert_eq!(values, ["rfc822; a@b.dk", "<c@d.dk>, Name <e@f.dk>"]);
        let cfg = config("config.toml");
        let mut with_survey = values.clone();
        with_survey.push("undersoegelse@siri.dk, not an address, a@b.dk".into());
        let named: Vec<String> = addresses_in(with_survey, &cfg)
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(named, ["a@b.dk", "c@d.dk", "e@f.dk"]);
    }
}
