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
//! [`authenticated`] is what `classify` (trusted consultants) and anything
//! else that needs a verified sender call.

use mail_parser::Message;

/// Whether the trusted server vouched for `domain` (the sender's): DKIM
/// with that signing domain, or DMARC for it. `Err` says why not, for the
/// operator.
pub fn authenticated(msg: &Message<'_>, authserv: &str, domain: &str) -> Result<(), String> {
    let raw = msg.raw_message();
    let headers = msg.headers().iter().map(|h| {
        let value = raw
            .get(h.offset_start as usize..h.offset_end as usize)
            .map(String::from_utf8_lossy)
            .unwrap_or_default();
        (h.name.as_str().to_string(), value.into_owned())
    });
    verdict(headers, authserv, domain)
}

/// [`authenticated`] over (name, raw value) pairs in message order.
pub fn verdict(
    headers: impl IntoIterator<Item = (String, String)>,
    authserv: &str,
    domain: &str,
) -> Result<(), String> {
    let authserv = authserv.to_ascii_lowercase();
    let domain = domain.to_ascii_lowercase();
    let headers: Vec<(String, String)> = headers
        .into_iter()
        .map(|(n, v)| (n, v.split_whitespace().collect::<Vec<_>>().join(" ")))
        .collect();
    let is_received = |n: &str| n.eq_ignore_ascii_case("Received");
    let border = headers
        .iter()
        .position(|(n, v)| is_received(n) && received_by(v).as_deref() == Some(&authserv))
        .or_else(|| headers.iter().position(|(n, _)| is_received(n)))
        .unwrap_or(headers.len());
    let ours = headers[..border].iter().find_map(|(n, v)| {
        if !n.eq_ignore_ascii_case("Authentication-Results") {
            return None;
        }
        let v = crate::classify::strip_comments(v);
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
            return Ok(());
        }
        if method == "dmarc=pass" && pass_for_domain(prop("header.from=")) {
            return Ok(());
        }
    }
    Err(format!(
        "Authentication-Results from {authserv} shows neither dkim=pass nor dmarc=pass for {domain}"
    ))
}

/// The host a `Received` field names after `by`, lower case.
fn received_by(value: &str) -> Option<String> {
    let mut words = value.split_whitespace();
    words.find(|w| w.eq_ignore_ascii_case("by"))?;
    words
        .next()
        .map(|h| h.trim_end_matches(';').to_ascii_lowercase())
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
        assert_eq!(verdict(genuine, "mx.siri.dk", "siri.dk"), Ok(()));
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
        assert_eq!(verdict(top, "mx.siri.dk", "siri.dk"), Ok(()));
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
}
