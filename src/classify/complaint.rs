//! Spam complaints: an ARF report (RFC 5965) or a provider's own notice,
//! about an invitation only when it returns that invitation's canvass
//! Message-ID.

use mail_parser::{Message, MimeHeaders, PartType};

use super::{first_header, referenced_canvass_ids, ComplaintReport};
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
