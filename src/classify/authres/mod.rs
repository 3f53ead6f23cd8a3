//! `Authentication-Results` as RFC 8601 §5 says to read it (pure).
//!
//! A message may arrive carrying fields that claim to come from our own
//! server, written by anybody. Only the fields our border server added
//! count, and those stand above the `Received` field it added when it took
//! the message in. So:
//!
//! 1. the border's `Received` is the topmost one whose `by` names the
//!    trusted authserv-id (`by mx.siri.dk`); when none does, the topmost
//!    `Received` of all (stricter: a delivery hop above it hides the field);
//! 2. of the fields above it that carry the trusted authserv-id, only the
//!    topmost one is read; every field below it is ignored, whatever it says.
//!
//! A hosted mailbox is read as its provider stamps it ([`providers`]):
//! Microsoft 365 by its tenant headers and its authserv-id-less results,
//! Google by `mx.google.com` and its ARC results. [`trusted`] is what
//! `classify` (trusted consultants, authenticated opt-outs) calls: it picks
//! the reading from the config and says what it read.

use mail_parser::Message;

use crate::config::Config;
use crate::oauth::Provider;

mod providers;

/// Google's authserv-id, and the host its border `Received` names.
const GOOGLE: &str = "mx.google.com";

/// Header values with folding and runs of white space made single spaces.
fn normalised(headers: &[(String, String)]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(n, v)| {
            (
                n.clone(),
                v.split_whitespace().collect::<Vec<_>>().join(" "),
            )
        })
        .collect()
}

/// Whether the configured trust vouches for `domain` (the sender's), as the
/// mailbox's provider stamps it, and `Ok` says what vouched, `Err` why
/// nothing did (for `canvass explain` and the operator). `None`: no trust is
/// configured (a generic mailbox without `trust.authserv_id`).
pub fn trusted(msg: &Message<'_>, cfg: &Config, domain: &str) -> Option<Result<String, String>> {
    let authserv = cfg.trust.authserv_id.as_deref();
    if matches!(cfg.mailbox.provider, Provider::Generic) && authserv.is_none() {
        // Nothing to read: the header fields are not copied out for it.
        return None;
    }
    let headers = headers(msg);
    let by_authserv = |first: Result<String, String>| match (first, authserv) {
        (Ok(v), _) => Ok(v),
        (Err(e), Some(id)) => {
            verdict(headers.clone(), id, domain).map_err(|e2| format!("{e}; {e2}"))
        }
        (Err(e), None) => Err(e),
    };
    match cfg.mailbox.provider {
        Provider::Microsoft365 => Some(by_authserv(providers::microsoft365(
            &headers,
            cfg.mailbox.tenant_id.as_deref().unwrap_or(""),
            domain,
        ))),
        Provider::Google => Some(by_authserv(providers::google(
            &headers,
            border(&normalised(&headers), GOOGLE),
            domain,
        ))),
        Provider::Generic => authserv.map(|id| verdict(headers.clone(), id, domain)),
    }
}

/// The header fields as (name, raw value), in message order.
fn headers(msg: &Message<'_>) -> Vec<(String, String)> {
    let raw = msg.raw_message();
    msg.headers()
        .iter()
        .map(|h| {
            let value = raw
                .get(h.offset_start as usize..h.offset_end as usize)
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            (h.name.as_str().to_string(), value.into_owned())
        })
        .collect()
}

/// Whether the server named `authserv` vouched for `domain`: DKIM with that
/// signing domain, or DMARC for it, in the topmost field of that server
/// above its `Received` (RFC 8601 §5), over (name, raw value) pairs in
/// message order.
pub fn verdict(
    headers: impl IntoIterator<Item = (String, String)>,
    authserv: &str,
    domain: &str,
) -> Result<String, String> {
    let authserv = authserv.to_ascii_lowercase();
    let domain = domain.to_ascii_lowercase();
    let headers = normalised(&headers.into_iter().collect::<Vec<_>>());
    let border = border(&headers, &authserv);
    let ours = headers[..border].iter().find_map(|(n, v)| {
        if !n.eq_ignore_ascii_case("Authentication-Results") {
            return None;
        }
        let v = strip_comments(v);
        let (id, results) = v.split_once(';').unwrap_or((&v, ""));
        let id = id
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        (id == authserv).then(|| results.to_string())
    });
    let Some(results) = ours else {
        return Err(format!(
            "no Authentication-Results header from {authserv} above its Received header"
        ));
    };
    match vouches(&results, &domain) {
        Some(method) => Ok(format!(
            "Authentication-Results from {authserv}: {method} for {domain}"
        )),
        None => Err(format!(
            "Authentication-Results from {authserv} shows neither dkim=pass nor dmarc=pass for {domain}"
        )),
    }
}

/// Which result in `results` (the part after the authserv-id) vouches for
/// `domain` (lower case): `dkim=pass` with that signing domain (`header.d`
/// or `header.i`), or `dmarc=pass` for it (`header.from`).
pub(crate) fn vouches(results: &str, domain: &str) -> Option<&'static str> {
    for result in results.split(';') {
        let words: Vec<String> = result
            .split_whitespace()
            .map(|w| w.to_ascii_lowercase())
            .collect();
        let Some(method) = words.first() else {
            continue;
        };
        let prop = |key: &str| {
            words
                .iter()
                .find_map(|w| w.strip_prefix(key).map(|v| v.trim_matches('"').to_string()))
        };
        let pass_for_domain = |d: Option<String>| {
            d.map(|d| d.trim_start_matches('@') == domain || d.ends_with(&format!("@{domain}")))
                .unwrap_or(false)
        };
        if method == "dkim=pass"
            && (pass_for_domain(prop("header.d=")) || pass_for_domain(prop("header.i=")))
        {
            return Some("dkim=pass");
        }
        if method == "dmarc=pass" && pass_for_domain(prop("header.from=")) {
            return Some("dmarc=pass");
        }
    }
    None
}

/// The topmost `Received` whose `by` names `host`, else the topmost of all
/// (the border's, RFC 8601 §5); `headers.len()` without any.
fn border(headers: &[(String, String)], host: &str) -> usize {
    let is_received = |n: &str| n.eq_ignore_ascii_case("Received");
    headers
        .iter()
        .position(|(n, v)| is_received(n) && received_by(v).as_deref() == Some(host))
        .or_else(|| headers.iter().position(|(n, _)| is_received(n)))
        .unwrap_or(headers.len())
}

/// The host a `Received` field names after `by`, lower case.
fn received_by(value: &str) -> Option<String> {
    let mut words = value.split_whitespace();
    words.find(|w| w.eq_ignore_ascii_case("by"))?;
    words
        .next()
        .map(|h| h.trim_end_matches(';').to_ascii_lowercase())
}

/// Removes RFC 5322 comments, `(2048-bit key; unprotected)` as OpenDKIM writes
/// them: their semicolons would otherwise split a result in two.
fn strip_comments(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut depth = 0usize;
    let mut quoted = false;
    let mut escaped = false;
    for c in s.chars() {
        if escaped {
            escaped = false;
            if depth == 0 {
                out.push(c);
            }
            continue;
        }
        match c {
            '\\' => {
                escaped = true;
                if depth == 0 {
                    out.push(c);
                }
            }
            '"' if depth == 0 => {
                quoted = !quoted;
                out.push(c);
            }
            '(' if !quoted => depth += 1,
            ')' if !quoted && depth > 0 => {
                depth -= 1;
                if depth == 0 {
                    out.push(' ');
                }
            }
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    const LMTP: (&str, &str) = ("Received", "from mx.siri.dk by imap.siri.dk with LMTP");
    const BORDER: (&str, &str) = ("Received", "from evil.example by mx.siri.dk with ESMTPS");
    const PASS: (&str, &str) = (
        "Authentication-Results",
        "mx.siri.dk; dkim=pass header.d=siri.dk; dmarc=pass header.from=siri.dk",
    );
    const FAIL: (&str, &str) = (
        "Authentication-Results",
        "mx.siri.dk; dkim=none; dmarc=fail",
    );

    #[test]
    fn the_topmost_field_above_the_border_wins() {
        // Ours says fail; a forged pass right below it (the attack).
        let forged = h(&[LMTP, FAIL, PASS, BORDER]);
        assert!(verdict(forged, "mx.siri.dk", "siri.dk").is_err());
        // Ours says pass; a forged fail below does not spoil it.
        let genuine = h(&[LMTP, PASS, FAIL, BORDER]);
        assert!(verdict(genuine, "mx.siri.dk", "siri.dk").is_ok());
    }

    #[test]
    fn a_field_below_the_border_received_never_counts() {
        // Our server added none (its milter was down); the forged one sits
        // below the Received our border added.
        let forged = h(&[LMTP, BORDER, PASS]);
        let e = verdict(forged, "mx.siri.dk", "siri.dk").unwrap_err();
        assert!(e.contains("above its Received"), "{e}");
        // Above a delivery hop's Received is above the border's too.
        let top = h(&[PASS, LMTP, BORDER]);
        assert!(verdict(top, "mx.siri.dk", "siri.dk").is_ok());
        // An authserv-id that is not a host: the topmost Received is the border.
        let below = h(&[
            ("Received", "from a by b"),
            (
                "Authentication-Results",
                "siri-auth; dkim=pass header.d=siri.dk",
            ),
        ]);
        assert!(verdict(below, "siri-auth", "siri.dk").is_err());
    }

    #[test]
    fn comments_do_not_split_results() {
        assert_eq!(
            crate::classify::unfold(&strip_comments(
                "mx; dkim=pass (2048-bit key; unprotected) header.d=siri.dk"
            )),
            "mx; dkim=pass header.d=siri.dk"
        );
        assert_eq!(strip_comments("a (b (c; d) e) f \"(q)\""), "a   f \"(q)\"");
    }
}
