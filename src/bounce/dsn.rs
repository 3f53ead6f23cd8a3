//! RFC 3464 delivery status notifications: the `Name: value` field blocks
//! (from a `message/delivery-status` part or found in raw text), the
//! recipient each names, its diagnostic, and the status codes (RFC 3463
//! enhanced codes, SMTP reply codes) every shape is judged by.

use super::*;

/// The blocks of `Name: value` fields, separated by blank lines, with folded
/// lines unfolded and names lower-cased. Lines that are not fields are skipped.
pub(super) fn field_blocks(text: &str) -> Vec<Vec<(String, String)>> {
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
pub(super) fn dsn_fields(text: &str) -> Vec<BouncedRecipient> {
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
pub(super) fn typed_address(value: &str) -> (String, bool) {
    let written = match value.split_once(';') {
        Some((_, a)) => a,
        None => value,
    };
    normalise(written)
}

pub(super) fn normalise(written: &str) -> (String, bool) {
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
pub(super) fn strip_type(value: &str) -> &str {
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
pub(super) fn diagnostic(text: &str) -> String {
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
    // `.` and one to three digits at `at`: where they end.
    let dotted_number = |at: usize| {
        let n = digits(at + 1);
        (b.get(at) == Some(&b'.') && (1..=3).contains(&n)).then_some(at + 1 + n)
    };
    for i in 0..b.len() {
        if !matches!(b[i], b'2' | b'4' | b'5') {
            continue;
        }
        if i > 0 && (b[i - 1].is_ascii_digit() || b[i - 1] == b'.') {
            continue;
        }
        let Some(j) = dotted_number(i + 1).and_then(dotted_number) else {
            continue;
        };
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
