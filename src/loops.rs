//! No confirmation loops (pure).
//!
//! A phone contact gets a confirmation ("Re: Telefonkontakt"). An
//! autoresponder without `Auto-Submitted` or an out-of-office subject
//! answers it, that answer is again a mail from the consultant to the survey
//! address alone, and canvass confirmed again: "Re: Re: Re: Re: …" (issue
//! 14). The same holds for the replies to a partly refused CC trigger or one
//! outside the window. So a consultant's message that answers canvass' own
//! mail gets no confirmation of its own (at most one per original message);
//! what it asks for is still done, and the message is counted as a loop.
//!
//! It answers canvass mail when
//! - its `In-Reply-To` / `References` name a canvass Message-ID (two of them
//!   are a loop under way), or
//! - its subject answers an answer (`Re: Re:`, `SV: Re:`, …) or a canvass
//!   receipt: autoresponders that keep no references still keep the subject,
//! - or it came faster than a human would ([`too_fast`]): less than 30 s
//!   after canvass confirmed to the same consultant (a second phone contact
//!   that quick is still invited, only not confirmed).

use mail_parser::Message;

use crate::classify::MESSAGE_ID_PREFIX;
use crate::config::Config;

/// The store counter (per region) of messages taken for a loop.
pub const COUNTER: &str = "loops";

/// Why a message is taken for an answer to canvass' own mail, if it is.
pub fn answers_canvass(msg: &Message<'_>, cfg: &Config) -> Option<String> {
    let domain = format!("@{}", cfg.survey_address.domain());
    let raw = msg.raw_message();
    let ours = msg
        .headers()
        .iter()
        .filter(|h| {
            let n = h.name.as_str();
            n.eq_ignore_ascii_case("In-Reply-To") || n.eq_ignore_ascii_case("References")
        })
        .filter_map(|h| raw.get(h.offset_start as usize..h.offset_end as usize))
        .flat_map(|v| message_ids(&String::from_utf8_lossy(v)))
        .filter(|id| id.starts_with(MESSAGE_ID_PREFIX) && id.ends_with(&domain))
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    if ours > 0 {
        return Some(format!("it refers to {ours} message(s) canvass sent"));
    }
    let subject = msg.subject().unwrap_or("");
    // The subject itself is not repeated: it may name people, and this goes to the log.
    answers_by_subject(subject).then(|| "its subject answers an answer (Re: Re: …)".to_string())
}

/// Faster than any human reads a confirmation and writes back.
pub const HUMAN_DELAY: chrono::Duration = chrono::Duration::seconds(30);

/// A phone contact received less than [`HUMAN_DELAY`] after canvass queued
/// a confirmation to the same consultant: an autoresponder that keeps
/// neither references nor subject.
pub fn too_fast(
    last_confirmation: Option<chrono::DateTime<chrono::Utc>>,
    received: chrono::DateTime<chrono::Utc>,
) -> Option<String> {
    let gap = received - last_confirmation?;
    // IMAP's INTERNALDATE has whole seconds: an answer may look received a
    // little before the confirmation it answers was queued.
    (gap > chrono::Duration::seconds(-2) && gap < HUMAN_DELAY).then(|| {
        format!(
            "it came {} s after canvass' confirmation to the same consultant",
            gap.num_seconds()
        )
    })
}

/// The ids (`<…>`) in a header value, without their brackets.
fn message_ids(value: &str) -> Vec<String> {
    value
        .split('<')
        .skip(1)
        .filter_map(|s| s.split_once('>').map(|(id, _)| id.trim().to_string()))
        .collect()
}

/// `Re: Re: x`, `SV: RE: x`, `Re: Kvittering: …`: two reply prefixes, or a
/// reply to canvass' receipt subject.
pub fn answers_by_subject(subject: &str) -> bool {
    let mut rest = subject.trim();
    let mut replies = 0;
    while let Some((prefix, after)) = rest.split_once(':') {
        let p = prefix.trim().to_ascii_lowercase();
        // `Re`, `SV`, `AW`, `VS`, `Antw`, and counted forms like `Re[2]`.
        let word = p.split('[').next().unwrap_or("");
        if !matches!(word, "re" | "sv" | "aw" | "vs" | "antw" | "r" | "ynt") {
            break;
        }
        replies += if p.contains('[') { 2 } else { 1 };
        rest = after.trim_start();
    }
    replies >= 2 || (replies >= 1 && rest.to_lowercase().starts_with("kvittering:"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_to_replies_are_told_by_their_subject() {
        for s in [
            "Re: Re: Telefonkontakt",
            "SV: RE: Telefonkontakt",
            "Re[2]: Telefonkontakt",
            "Re: Re: Re: Re: Re: Re: Re: Telefonkontakt",
            "Re: Kvittering: telefonkontakter til spørgeskemaet",
        ] {
            assert!(answers_by_subject(s), "{s}");
        }
        for s in [
            "Telefonkontakt",
            "Re: Telefonkontakt",
            "SV: møde",
            "Referat: Re: x",
            "",
        ] {
            assert!(!answers_by_subject(s), "{s}");
        }
    }

    #[test]
    fn faster_than_a_human_is_a_loop() {
        let t = chrono::DateTime::parse_from_rfc3339("2024-08-12T10:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let s = chrono::Duration::seconds;
        assert!(too_fast(Some(t), t + s(3)).is_some());
        assert!(too_fast(Some(t), t + s(29)).is_some());
        assert!(too_fast(Some(t), t + s(30)).is_none());
        assert!(too_fast(Some(t), t - s(1)).is_some(), "whole seconds");
        assert!(too_fast(Some(t), t - s(5)).is_none(), "received before it");
        assert!(too_fast(None, t).is_none());
    }

    #[test]
    fn references_to_canvass_mail_are_found() {
        let cfg = crate::config::Config::load(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/classify/config.toml"),
        )
        .unwrap();
        let raw = b"From: a@siri.dk\r\nTo: undersoegelse@siri.dk\r\nIn-Reply-To: <canvass.0a1b@siri.dk>\r\nReferences: <orig@siri.dk>\r\n <canvass.0a1b@siri.dk>\r\nSubject: Re: Telefonkontakt\r\n\r\nx\r\n";
        let msg = mail_parser::MessageParser::default()
            .parse(&raw[..])
            .unwrap();
        let why = answers_canvass(&msg, &cfg).unwrap();
        assert!(why.contains("1 message"), "{why}");
        let raw = b"From: a@siri.dk\r\nTo: undersoegelse@siri.dk\r\nReferences: <orig@siri.dk>\r\nSubject: Re: Telefonkontakt\r\n\r\nx\r\n";
        let msg = mail_parser::MessageParser::default()
            .parse(&raw[..])
            .unwrap();
        assert_eq!(answers_canvass(&msg, &cfg), None);
    }
}
