//! Personal links out of forwarded replies, in every shape they come in (pure).
//!
//! A reply often quotes the invitation, and with it the respondent's
//! personal link. Forwarding that to a consultant hands over the link. The
//! link is not found by its exact `{base_url}/s/` prefix (issue 14: without
//! the scheme, in upper case, percent-encoded, or wrapped by Microsoft 365
//! Safe Links or Proofpoint it came through), but by the token itself:
//!
//! - every word of the text is looked at as written, percent-decoded (up to
//!   three times: wrappers encode the URL inside their own query) and
//!   Proofpoint-v2-decoded (`-XX` for `%XX`, `_` for `/`);
//! - a word is a link when any of those holds `/s/` or `/u/` (any case) followed by
//!   22 token characters, or a token on its own (22 base64url characters
//!   that decode to 128 bits);
//! - such a word is replaced whole by [`REDACTED`], wrapper and all.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// What a personal link is replaced with.
pub const REDACTED: &str = "[link fjernet]";

const TOKEN_LEN: usize = 22;

/// `text` with every word that carries a personal link replaced.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    for c in text.chars() {
        if c.is_whitespace() {
            flush(&mut out, &mut word);
            out.push(c);
        } else {
            word.push(c);
        }
    }
    flush(&mut out, &mut word);
    out
}

fn flush(out: &mut String, word: &mut String) {
    if !word.is_empty() {
        if holds_link(word) {
            out.push_str(REDACTED);
        } else {
            out.push_str(word);
        }
        word.clear();
    }
}

/// Whether one whitespace-free word carries a token, in any of its decodings.
pub fn holds_link(word: &str) -> bool {
    variants(word)
        .iter()
        .any(|v| has_link_path(v) || has_bare_token(v))
}

fn variants(word: &str) -> Vec<String> {
    let mut out = vec![word.to_string()];
    let mut current = word.to_string();
    for _ in 0..3 {
        let decoded = percent_encoding::percent_decode_str(&current)
            .decode_utf8_lossy()
            .into_owned();
        if decoded == current {
            break;
        }
        out.push(decoded.clone());
        current = decoded;
    }
    // Proofpoint v2: `u=https-3A__host_s_TOKEN` (`-` stands for `%`, `_` for `/`).
    let v2 = word.replace('-', "%").replace('_', "/");
    out.push(
        percent_encoding::percent_decode_str(&v2)
            .decode_utf8_lossy()
            .into_owned(),
    );
    out
}

fn is_token_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'-' || c == b'_'
}

/// `/s/` (the form) or `/u/` (one-click opt-out), in any case, followed by
/// 22 token characters.
fn has_link_path(s: &str) -> bool {
    let b = s.as_bytes();
    (0..b.len().saturating_sub(2)).any(|i| {
        b[i] == b'/'
            && (b[i + 1].eq_ignore_ascii_case(&b's') || b[i + 1].eq_ignore_ascii_case(&b'u'))
            && b[i + 2] == b'/'
            && b.len() >= i + 3 + TOKEN_LEN
            && b[i + 3..i + 3 + TOKEN_LEN]
                .iter()
                .all(|c| is_token_char(*c))
    })
}

/// A run of exactly 22 token characters that decodes to 128 bits.
fn has_bare_token(s: &str) -> bool {
    s.as_bytes()
        .split(|c| !is_token_char(*c))
        .filter(|run| run.len() == TOKEN_LEN)
        .any(|run| {
            URL_SAFE_NO_PAD
                .decode(run)
                .map(|b| b.len() == 16)
                .unwrap_or(false)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "q3Zr8xYbT0uLw2mNc5VdAg";

    fn leaks(text: &str) -> bool {
        let out = redact(text);
        let lower = out.to_lowercase();
        lower.contains(&TOKEN.to_lowercase())
            || lower.contains(&TOKEN[..11].to_lowercase())
            || percent_encoding::percent_decode_str(&out)
                .decode_utf8_lossy()
                .contains(TOKEN)
    }

    #[test]
    fn every_shape_of_the_link_is_redacted() {
        let pct: String = TOKEN.bytes().map(|b| format!("%{b:02X}")).collect();
        let v2: String = format!("https://survey.siri.dk/s/{TOKEN}")
            .bytes()
            .map(|b| match b {
                b'/' => "_".to_string(),
                b':' => "-3A".to_string(),
                b'-' => "-2D".to_string(),
                b'_' => "-5F".to_string(),
                b => (b as char).to_string(),
            })
            .collect();
        let shapes = [
            format!("Her er linket: https://survey.siri.dk/s/{TOKEN}"),
            format!("survey.siri.dk/s/{TOKEN}."),
            format!("HTTPS://SURVEY.SIRI.DK/S/{}", TOKEN.to_uppercase()),
            format!("<http://127.0.0.1:8080/s/{TOKEN}>"),
            format!("https://survey.siri.dk/s/{pct}"),
            format!("https://survey.siri.dk%2Fs%2F{TOKEN}"),
            format!("https://eur02.safelinks.protection.outlook.com/?url=http%3A%2F%2Fsurvey.siri.dk%2Fs%2F{TOKEN}&data=05%7C02&reserved=0"),
            format!("https://eur02.safelinks.protection.outlook.com/?url=http%253A%252F%252Fsurvey.siri.dk%252Fs%252F{TOKEN}&data=x"),
            format!("https://urldefense.proofpoint.com/v2/url?u={v2}&d=DwMFaQ&c=abc&r=def"),
            format!("https://urldefense.com/v3/__https://survey.siri.dk/s/{TOKEN}__;!!Nmw4Hv0!abc$"),
            format!("(min kode er {TOKEN})"),
            format!("Afmeld: https://survey.siri.dk/u/{TOKEN}"),
        ];
        for s in &shapes {
            assert!(!leaks(s), "leaked: {s} -> {}", redact(s));
            assert!(redact(s).contains(REDACTED), "{s}");
        }
    }

    #[test]
    fn ordinary_text_is_left_alone() {
        let text = "Hej\n\nTak for mailen. Se https://www.siri.dk/om-os/kontakt og\n  ring på 72 21 74 00.\nArbejdsmiljøkonsulenterne_i_Region_Sjælland";
        assert_eq!(redact(text), text);
    }
}
