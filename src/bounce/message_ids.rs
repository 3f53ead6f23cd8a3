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
    scan_message_ids(raw, domain, &mut out);
    // Then every decoded part: base64 and quoted-printable originals.
    part_message_ids(msg, domain, &mut out, 0);
    out
}

/// canvass Message-IDs in one header-ish text (In-Reply-To, References, a
/// body), read as bytes: only ASCII makes up a Message-ID, and reading the
/// whole message as UTF-8 first was a tenth of classifying it (BENCHMARKS.md,
/// target 3b).
pub fn scan_message_ids(text: &[u8], domain: &str, out: &mut Vec<String>) {
    let prefix = MESSAGE_ID_PREFIX.as_bytes();
    for at in memchr::memmem::find_iter(text, prefix) {
        if at > 0 {
            let prev = text[at - 1];
            if prev.is_ascii_alphanumeric() || b"._-+".contains(&prev) {
                continue;
            }
        }
        let rest = &text[at + prefix.len()..];
        let hex_len = rest
            .iter()
            .take_while(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
            .count();
        if hex_len == 0 {
            continue;
        }
        let Some(after) = rest[hex_len..].strip_prefix(b"@") else {
            continue;
        };
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
        // (Hex digits only: always UTF-8.)
        let Ok(hex) = std::str::from_utf8(&rest[..hex_len]) else {
            continue;
        };
        let id = format!("{MESSAGE_ID_PREFIX}{hex}@{domain}");
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
            PartType::Text(t) | PartType::Html(t) => scan_message_ids(t.as_bytes(), domain, out),
            PartType::Binary(b) | PartType::InlineBinary(b) => scan_message_ids(b, domain, out),
            PartType::Message(m) => {
                scan_message_ids(m.raw_message(), domain, out);
                part_message_ids(m, domain, out, depth + 1);
            }
            PartType::Multipart(_) => {}
        }
    }
}
