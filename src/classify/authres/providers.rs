//! Sender trust in a hosted mailbox: what Microsoft 365 and Google Workspace
//! stamp on the mail they deliver, read as their documentation describes it
//! (pure; called by [`super::trusted`]).
//!
//! **Microsoft 365 (Exchange Online).** A consultant's mail that stayed
//! inside the agency's tenant carries `X-MS-Exchange-Organization-AuthAs:
//! Internal` and `X-MS-Exchange-CrossTenant-Id: <tenant>`. Exchange removes
//! every `X-MS-Exchange-Organization-*` header a message brings into the
//! organisation, so no outsider can set the first one; the second says which
//! tenant. Mail from elsewhere is genuine when Exchange's own
//! `Authentication-Results` — written without an authserv-id, e.g.
//! `spf=pass (sender IP is 1.2.3.4) smtp.mailfrom=siri.dk; dkim=pass
//! (signature was verified) header.d=siri.dk;dmarc=pass action=none
//! header.from=siri.dk;compauth=pass reason=100` — says `dmarc=pass` or
//! `compauth=pass` for the consultant's domain. Only the topmost
//! `Authentication-Results` field is Exchange's: one written by anybody else
//! stands below it, or carries an authserv-id.
//!
//! **Google Workspace.** Gmail writes `Authentication-Results: mx.google.com;
//! …` above the `Received: … by mx.google.com` it adds, so the generic
//! reading with the authserv-id `mx.google.com` applies; where Google
//! re-delivered the message internally, its own result is in the topmost
//! `ARC-Authentication-Results: i=N; mx.google.com; …` instead.

/// Google's authserv-id.
const GOOGLE: &str = "mx.google.com";

/// Why a sender was trusted, or why not: what was read, for `explain`.
pub type Verdict = Result<String, String>;

fn normalise(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The `method=result` clauses of an Authentication-Results value (comments
/// stripped), each as lower-case words.
fn clauses(value: &str) -> Vec<Vec<String>> {
    super::strip_comments(value)
        .split(';')
        .map(|c| {
            c.split_whitespace()
                .map(|w| w.to_ascii_lowercase())
                .collect::<Vec<_>>()
        })
        .filter(|w| !w.is_empty())
        .collect()
}

fn prop(words: &[String], key: &str) -> Option<String> {
    words
        .iter()
        .find_map(|w| w.strip_prefix(key).map(|v| v.trim_matches('"').to_string()))
}

/// Microsoft 365: inside the tenant, or Exchange's own DMARC/compauth pass
/// for `domain`.
pub fn microsoft365(headers: &[(String, String)], tenant_id: &str, domain: &str) -> Verdict {
    let domain = domain.to_ascii_lowercase();
    let auth_as = header(headers, "X-MS-Exchange-Organization-AuthAs").map(normalise);
    let tenant = header(headers, "X-MS-Exchange-CrossTenant-Id").map(normalise);
    if auth_as
        .as_deref()
        .is_some_and(|a| a.eq_ignore_ascii_case("Internal"))
    {
        match tenant.as_deref() {
            Some(t) if t.eq_ignore_ascii_case(tenant_id.trim()) => {
                return Ok(format!(
                    "X-MS-Exchange-Organization-AuthAs: Internal and X-MS-Exchange-CrossTenant-Id {t}: the mail stayed inside the tenant"
                ))
            }
            Some(t) => {
                return Err(format!(
                    "X-MS-Exchange-CrossTenant-Id is {t}, not the configured mailbox.tenant_id {tenant_id}"
                ))
            }
            None => {}
        }
    }
    let Some(top) = header(headers, "Authentication-Results") else {
        return Err(
            "neither X-MS-Exchange-Organization-AuthAs: Internal nor an Authentication-Results header from Exchange Online"
                .into(),
        );
    };
    let found = clauses(top);
    let Some(first) = found.first() else {
        return Err("Exchange's Authentication-Results header is empty".into());
    };
    if !first[0].contains('=') {
        return Err(format!(
            "the topmost Authentication-Results header carries the authserv-id {:?}: Exchange Online writes none, so it is not Exchange's",
            first[0]
        ));
    }
    let from = found.iter().find_map(|c| prop(c, "header.from="));
    let for_domain = from.as_deref() == Some(domain.as_str());
    for c in &found {
        let method = c[0].as_str();
        if for_domain && (method == "dmarc=pass" || method == "compauth=pass") {
            return Ok(format!(
                "Exchange Online's Authentication-Results: {method} for header.from={domain}"
            ));
        }
    }
    Err(format!(
        "Exchange Online's Authentication-Results shows neither dmarc=pass nor compauth=pass for {domain} (header.from={})",
        from.unwrap_or_else(|| "none".into())
    ))
}

/// Google Workspace. Gmail writes its `Authentication-Results:
/// mx.google.com; …` just *below* the `Received: … by mx.google.com` it adds
/// (so RFC 8601 §5's "above the border" cannot be applied to it), and an ARC
/// set with its own results *above* it. Read, in that order:
///
/// - the topmost `ARC-Authentication-Results` from mx.google.com above the
///   border (`border`: the index of that `Received`): a sender's own fields
///   always stand below the border;
/// - the topmost `Authentication-Results` from mx.google.com: Gmail stamps
///   one on every message it takes in, above whatever the message brought.
pub fn google(headers: &[(String, String)], border: usize, domain: &str) -> Verdict {
    let domain = domain.to_ascii_lowercase();
    // The results of a field from mx.google.com (`ARC-…: i=N; mx.google.com; …`).
    let from_google = |name: &str, v: &str| -> Option<String> {
        let v = super::strip_comments(v);
        let mut rest = v.as_str();
        if name.eq_ignore_ascii_case("ARC-Authentication-Results") {
            rest = rest.split_once(';')?.1;
        }
        let (id, results) = rest.split_once(';').unwrap_or((rest, ""));
        id.trim()
            .eq_ignore_ascii_case(GOOGLE)
            .then(|| results.to_string())
    };
    let arc = headers[..border.min(headers.len())]
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("ARC-Authentication-Results"))
        .find_map(|(n, v)| from_google(n, v));
    if let Some(method) = arc.as_deref().and_then(|r| super::vouches(r, &domain)) {
        return Ok(format!(
            "ARC-Authentication-Results from mx.google.com: {method} for {domain}"
        ));
    }
    let plain = headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("Authentication-Results"))
        .find_map(|(n, v)| from_google(n, v));
    if let Some(method) = plain.as_deref().and_then(|r| super::vouches(r, &domain)) {
        return Ok(format!(
            "Authentication-Results from mx.google.com: {method} for {domain}"
        ));
    }
    Err(match (arc, plain) {
        (None, None) => "no Authentication-Results or ARC-Authentication-Results from mx.google.com".to_string(),
        _ => format!(
            "mx.google.com's Authentication-Results shows neither dkim=pass nor dmarc=pass for {domain}"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TENANT: &str = "5b2c1a9e-3f47-4d0b-9c2e-7a1d4e6f8b30";

    fn h(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    const EXCHANGE_PASS: (&str, &str) = (
        "Authentication-Results",
        "spf=pass (sender IP is 1.2.3.4) smtp.mailfrom=siri.dk; dkim=pass (signature was verified) header.d=siri.dk;dmarc=pass action=none header.from=siri.dk;compauth=pass reason=100",
    );

    #[test]
    fn inside_the_tenant_needs_authas_internal_and_our_tenant() {
        let inside = h(&[
            ("X-MS-Exchange-Organization-AuthAs", "Internal"),
            ("X-MS-Exchange-CrossTenant-Id", TENANT),
        ]);
        let v = microsoft365(&inside, TENANT, "siri.dk").unwrap();
        assert!(v.contains("stayed inside the tenant"), "{v}");
        // The tenant id is compared without regard to case.
        assert!(microsoft365(&inside, &TENANT.to_uppercase(), "siri.dk").is_ok());
        let other = h(&[
            ("X-MS-Exchange-Organization-AuthAs", "Internal"),
            (
                "X-MS-Exchange-CrossTenant-Id",
                "0d1e2f3a-4b5c-4d6e-8f70-8192a3b4c5d6",
            ),
        ]);
        let e = microsoft365(&other, TENANT, "siri.dk").unwrap_err();
        assert!(e.contains("not the configured mailbox.tenant_id"), "{e}");
        // Anonymous (from outside) with our tenant id: not inside; no AR: refused.
        let anonymous = h(&[
            ("X-MS-Exchange-Organization-AuthAs", "Anonymous"),
            ("X-MS-Exchange-CrossTenant-Id", TENANT),
        ]);
        assert!(microsoft365(&anonymous, TENANT, "siri.dk").is_err());
    }

    #[test]
    fn exchanges_authserv_less_results_vouch_by_dmarc_or_compauth() {
        let v = microsoft365(&h(&[EXCHANGE_PASS]), TENANT, "siri.dk").unwrap();
        assert!(v.contains("dmarc=pass for header.from=siri.dk"), "{v}");
        let compauth_only = h(&[(
            "Authentication-Results",
            "spf=pass smtp.mailfrom=siri.dk; dkim=none; dmarc=bestguesspass action=none header.from=siri.dk;compauth=pass reason=109",
        )]);
        let v = microsoft365(&compauth_only, TENANT, "siri.dk").unwrap();
        assert!(v.contains("compauth=pass"), "{v}");
        // Another domain's pass is not the consultant's.
        let e = microsoft365(&h(&[EXCHANGE_PASS]), TENANT, "kommune.dk").unwrap_err();
        assert!(e.contains("for kommune.dk"), "{e}");
    }

    #[test]
    fn a_forged_pass_below_exchanges_fail_or_with_an_authserv_id_is_not_exchanges() {
        let forged = h(&[
            (
                "Authentication-Results",
                "spf=fail (sender IP is 203.0.113.66) smtp.mailfrom=siri.dk; dkim=none (message not signed) header.d=none;dmarc=fail action=quarantine header.from=siri.dk;compauth=fail reason=000",
            ),
            EXCHANGE_PASS,
        ]);
        assert!(microsoft365(&forged, TENANT, "siri.dk").is_err());
        let named = h(&[(
            "Authentication-Results",
            "mx.evil.example; dmarc=pass header.from=siri.dk",
        )]);
        let e = microsoft365(&named, TENANT, "siri.dk").unwrap_err();
        assert!(e.contains("authserv-id"), "{e}");
    }

    #[test]
    fn google_reads_its_arc_results_above_the_border_and_its_topmost_results() {
        const BORDER: (&str, &str) = (
            "Received",
            "from mail-sor-f41.google.com by mx.google.com with SMTPS id x",
        );
        let arc = (
            "ARC-Authentication-Results",
            "i=1; mx.google.com; dkim=pass header.i=@siri.dk header.s=google; dmarc=pass (p=QUARANTINE) header.from=siri.dk",
        );
        let ar_pass = (
            "Authentication-Results",
            "mx.google.com; dkim=pass header.i=@siri.dk; dmarc=pass (p=QUARANTINE sp=QUARANTINE dis=NONE) header.from=siri.dk",
        );
        let ar_fail = (
            "Authentication-Results",
            "mx.google.com; spf=fail smtp.mailfrom=siri.dk; dmarc=fail (p=QUARANTINE) header.from=siri.dk",
        );
        // Gmail's shape: ARC above the border, its results just below it.
        let genuine = h(&[arc, BORDER, ar_pass]);
        let v = google(&genuine, 1, "siri.dk").unwrap();
        assert!(
            v.starts_with("ARC-Authentication-Results from mx.google.com: dkim=pass"),
            "{v}"
        );
        // Without an ARC set, Gmail's own (topmost) results.
        let v = google(&h(&[BORDER, ar_pass]), 0, "siri.dk").unwrap();
        assert!(
            v.starts_with("Authentication-Results from mx.google.com: dkim=pass"),
            "{v}"
        );
        // Forged: Gmail says fail; a pass the sender wrote below it, and an
        // ARC field the sender wrote below the border, count for nothing.
        let forged = h(&[BORDER, ar_fail, ar_pass, arc]);
        let e = google(&forged, 0, "siri.dk").unwrap_err();
        assert!(e.contains("neither dkim=pass nor dmarc=pass"), "{e}");
        // Another domain's pass is not the consultant's.
        assert!(google(&genuine, 1, "kommune.dk").is_err());
        assert!(google(&h(&[]), 0, "siri.dk").is_err());
    }
}
