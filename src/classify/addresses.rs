//! Addresses written by people: the phone contacts a consultant lists in a
//! body (one or more a line, names and Outlook's `<mailto:>` links around
//! them, quoted text and signatures not read), and a To/Cc entry that is not
//! an address canvass writes to, reported as written.

use std::borrow::Cow;
use std::collections::HashSet;

use super::InvalidLine;
use crate::address::{self, Address};

/// A To/Cc entry that is not an address canvass writes to. mail-parser reads
/// `"a@b"@c.dk` as the display name `a@b` and the address `@c.dk`: put the
/// quoted local part back so the report shows what the consultant wrote.
pub(super) fn invalid_header_address(
    name: Option<&str>,
    raw: &str,
    e: address::AddressError,
) -> InvalidLine {
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
pub(super) fn is_attribution(lower: &str) -> bool {
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
}
