//! canvass Message-IDs anywhere in a bounce: its own In-Reply-To and
//! References, the returned original (`message/rfc822`,
//! `text/rfc822-headers`) or quoted text, in any transfer encoding. They are
//! a bounce's proof that it is about an invitation.

use super::*;

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

pub(super) fn part_message_ids(
    msg: &Message<'_>,
    domain: &str,
    out: &mut Vec<String>,
    depth: usize,
) {
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
