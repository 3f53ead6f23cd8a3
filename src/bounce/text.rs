//! Reports without a DSN part, read from their text: qmail, Exchange's and
//! Gmail's text-only notices, a generic "address near a status code", and
//! failure wording without any code (Lotus Notes/Domino, IMail, SMTP32,
//! GroupWise, Exchange 2003, webmail, "addr: reason").

use super::*;

/// A recipient read from text: the status code (class 4 or 5) from the
/// diagnostic when it has one; permanent by that code, else by an SMTP code,
/// else by what the shape's wording says.
pub(super) fn text_recipient(
    written: &str,
    diagnostic_text: Option<&str>,
    default_permanent: bool,
) -> BouncedRecipient {
    let (address, _) = normalise(written);
    let diagnostic = diagnostic_text.map(diagnostic).filter(|d| !d.is_empty());
    let status = diagnostic
        .as_deref()
        .and_then(enhanced_code)
        .filter(|s| !s.starts_with('2'));
    let permanent = match &status {
        Some(s) => s.starts_with('5'),
        None => match diagnostic.as_deref().and_then(smtp_code) {
            Some(code) => code >= 500,
            None => default_permanent,
        },
    };
    let expired = !permanent
        && (status.as_deref() == Some("4.4.7") || diagnostic.as_deref().is_some_and(gave_up));
    BouncedRecipient {
        address,
        status,
        permanent,
        expired,
        diagnostic,
    }
}

/// Position of `needle` (ASCII, lower case) in `text`, ignoring ASCII case.
pub(super) fn find_ci(text: &str, needle: &str) -> Option<usize> {
    text.to_ascii_lowercase().find(needle)
}

/// The addresses written in one line of text, normalised, in order.
pub(super) fn addresses_in_line(line: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for word in line.split(|c: char| c.is_whitespace() || "<>()[],;\"'=:".contains(c)) {
        if !word.contains('@') {
            continue;
        }
        let (a, valid) = normalise(word.trim_end_matches('.'));
        if valid && !out.contains(&a) {
            out.push(a);
        }
    }
    out
}

// ---------------------------------------------------------------------------
// qmail.
// ---------------------------------------------------------------------------

/// qmail-send's bounce:
///
/// ```text
/// Hi. This is the qmail-send program at mail.example.dk.
/// I'm afraid I wasn't able to deliver your message to the following addresses.
/// This is a permanent error; I've given up. Sorry it didn't work out.
///
/// <jens@example.dk>:
/// Sorry, no mailbox here by that name. (#5.1.1)
///
/// --- Below this line is a copy of the message.
/// ```
pub(super) fn qmail(text: &str) -> Option<Vec<BouncedRecipient>> {
    let start = find_ci(text, "this is the qmail-send program")?;
    let body = &text[start..];
    let end = [
        "--- below this line is a copy",
        "--- enclosed are the original headers",
    ]
    .iter()
    .filter_map(|m| find_ci(body, m))
    .min()
    .unwrap_or(body.len());
    let body = &body[..end];
    // "I'm not going to try again; this message has been in the queue too
    // long." gives up on a host that did not answer: not a bad address.
    let permanent = find_ci(body, "permanent error").is_some();
    let mut out = Vec::new();
    let mut current: Option<(&str, Vec<&str>)> = None;
    let flush = |current: &mut Option<(&str, Vec<&str>)>, out: &mut Vec<BouncedRecipient>| {
        if let Some((addr, lines)) = current.take() {
            let diag = lines.join(" ");
            // "I'm not going to try again; this message has been in the
            // queue too long": qmail gave up on a host, the address may be good.
            out.push(text_recipient(
                addr,
                Some(&diag),
                permanent && !gave_up(&diag),
            ));
        }
    };
    for line in body.lines() {
        let t = line.trim();
        if let Some(addr) = t.strip_prefix('<').and_then(|r| r.strip_suffix(">:")) {
            flush(&mut current, &mut out);
            if !addr.trim().is_empty() {
                current = Some((addr, Vec::new()));
            }
        } else if t.is_empty() {
            flush(&mut current, &mut out);
        } else if let Some((_, lines)) = current.as_mut() {
            lines.push(t);
        }
    }
    flush(&mut current, &mut out);
    Some(out)
}

// ---------------------------------------------------------------------------
// Exchange, text only.
// ---------------------------------------------------------------------------

/// The heading of an Exchange NDR, and whether it reports failure (rather
/// than delay). `lower` is one line, ASCII lower case.
pub(super) fn exchange_heading(lower: &str) -> Option<bool> {
    if lower.contains("delivery has failed to these recipients or groups") {
        return Some(true);
    }
    if lower.contains("delivery is delayed to these recipients or groups") {
        return Some(false);
    }
    // Danish Outlook/Exchange: "Leveringen til disse modtagere eller grupper
    // mislykkedes:" / "... er forsinket:".
    if lower.contains("modtagere eller grupper") {
        if lower.contains("mislykkedes") {
            return Some(true);
        }
        if lower.contains("forsinket") {
            return Some(false);
        }
    }
    None
}

/// Exchange 2010–2019 and Office 365 text-only NDRs:
///
/// ```text
/// Delivery has failed to these recipients or groups:
///
/// kontakt@odense.dk (kontakt@odense.dk)
/// The email address you entered couldn't be found. ...
///
/// Diagnostic information for administrators:
///
/// Generating server: EXCH01.siri.local
///
/// kontakt@odense.dk
/// Remote Server returned '550 5.1.1 RESOLVER.ADR.RecipNotFound; not found'
///
/// Original message headers:
/// ```
pub(super) fn exchange_text(text: &str) -> Option<Vec<BouncedRecipient>> {
    let mut lines = text.lines();
    let mut failed = None;
    for line in lines.by_ref() {
        if let Some(f) = exchange_heading(&line.to_ascii_lowercase()) {
            failed = Some(f);
            break;
        }
    }
    let failed = failed?;
    let mut listed: Vec<String> = Vec::new();
    let mut diagnostics: Vec<(String, Vec<&str>)> = Vec::new();
    let mut in_diagnostics = false;
    let mut current: Option<usize> = None;
    for line in lines {
        let t = line.trim();
        let lower = t.to_ascii_lowercase();
        if lower.starts_with("original message headers")
            || lower.starts_with("oprindelige meddelelsesheadere")
            || lower.starts_with("-----original message")
        {
            break;
        }
        if lower.starts_with("diagnostic information for administrators")
            || lower.starts_with("diagnosticeringsoplysninger")
            || lower.starts_with("diagnostiske oplysninger")
        {
            in_diagnostics = true;
            continue;
        }
        if t.is_empty() {
            current = None;
            continue;
        }
        if !in_diagnostics {
            if let Some(a) = addresses_in_line(t).into_iter().next() {
                if !listed.contains(&a) {
                    listed.push(a);
                }
            }
            continue;
        }
        if lower.starts_with("generating server") || lower.starts_with("genererende server") {
            continue;
        }
        // A line that is just an address starts its diagnostic.
        let found = addresses_in_line(t);
        if found.len() == 1 && !t.contains(char::is_whitespace) {
            diagnostics.push((found[0].clone(), Vec::new()));
            current = Some(diagnostics.len() - 1);
        } else if let Some(i) = current {
            diagnostics[i].1.push(t);
        }
    }
    let mut out: Vec<BouncedRecipient> = listed
        .iter()
        .map(|a| {
            let diag = diagnostics
                .iter()
                .find(|(d, _)| d == a)
                .map(|(_, l)| l.join(" "));
            text_recipient(a, diag.as_deref(), failed)
        })
        .collect();
    for (a, l) in &diagnostics {
        if !listed.contains(a) {
            out.push(text_recipient(a, Some(&l.join(" ")), failed));
        }
    }
    Some(out)
}

// ---------------------------------------------------------------------------
// Gmail, text only.
// ---------------------------------------------------------------------------

/// Gmail's explanation (usually beside a DSN part, which is read first):
///
/// ```text
/// ** Address not found **
///
/// Your message wasn't delivered to mette@aarhus.dk because the address couldn't be found, ...
///
/// The response from the remote server was:
/// 550 5.1.1 The email account that you tried to reach does not exist.
/// ```
pub(super) fn gmail_text(text: &str) -> Option<Vec<BouncedRecipient>> {
    const PHRASES: [(&str, bool); 5] = [
        ("wasn't delivered to ", true),
        ("was not delivered to ", true),
        ("blev ikke leveret til ", true),
        ("temporary problem delivering your message to ", false),
        (
            "midlertidigt problem med at levere din meddelelse til ",
            false,
        ),
    ];
    let lower = text.to_ascii_lowercase();
    let mut named: Vec<(&str, bool)> = Vec::new();
    for (phrase, permanent) in PHRASES {
        for (at, _) in lower.match_indices(phrase) {
            let rest = &text[at + phrase.len()..];
            let word = rest.split_whitespace().next().unwrap_or("");
            let word = word.trim_end_matches(|c: char| ",.;:".contains(c));
            if word.contains('@') {
                named.push((word, permanent));
            }
        }
    }
    let recognised = !named.is_empty()
        || lower.contains("** address not found **")
        || lower.contains("** message not delivered **")
        || lower.contains("** adressen blev ikke fundet **");
    if !recognised {
        return None;
    }
    // The remote server's answer, shared by the recipients named.
    let mut response: Vec<&str> = Vec::new();
    let mut reading = false;
    for line in text.lines() {
        let t = line.trim();
        let l = t.to_ascii_lowercase();
        if reading {
            if t.is_empty() {
                if response.is_empty() {
                    continue;
                }
                break;
            }
            response.push(t);
        } else if l.starts_with("the response from the remote server was")
            || l.starts_with("the response was")
            || l.starts_with("svaret fra fjernserveren var")
            || l.starts_with("svaret var")
        {
            reading = true;
        }
    }
    let response = response.join(" ");
    Some(
        named
            .into_iter()
            .map(|(a, permanent)| {
                text_recipient(
                    a,
                    (!response.is_empty()).then_some(response.as_str()),
                    permanent,
                )
            })
            .collect(),
    )
}

// ---------------------------------------------------------------------------
// Anything else.
// ---------------------------------------------------------------------------

/// Where the returned original starts in the text of the common shapes.
pub(super) const ORIGINAL_MARKERS: [&str; 9] = [
    "--- below this line is a copy of the message",
    "this is a copy of the message",
    "original message headers",
    "original message follows",
    "-----original message-----",
    "----- original message -----",
    "------- returned message",
    "--- the header of the original message",
    "oprindelige meddelelsesheadere",
];

/// An address in a paragraph that holds a failure code (SMTP 4xx/5xx or an
/// enhanced status code) at or below it: the address line and at most five
/// more, up to a blank line (the paragraph is the diagnostic), in the text
/// above the returned original. The
/// survey address and the mail system's own addresses are not recipients.
///
/// ```text
/// <mette@aarhus.dk>: host mail.aarhus.dk[193.162.86.20] said: 550 5.1.1      (Postfix)
///   line.bech@ishoej.dk                                                       (Exim)
///     host ishoej-dk.mail.protection.outlook.com [52.101.68.3]
///     SMTP error from remote mail server after RCPT TO:<line.bech@ishoej.dk>:
///     550 5.4.1 Recipient address rejected: Access denied.
/// ```
pub(super) fn generic_text(text: &str, cfg: &Config) -> Vec<BouncedRecipient> {
    const PARAGRAPH: usize = 6;
    let lower = text.to_ascii_lowercase();
    let end = ORIGINAL_MARKERS
        .iter()
        .filter_map(|m| lower.find(m))
        .min()
        .unwrap_or(text.len());
    let lines: Vec<&str> = text[..end].lines().map(str::trim_end).collect();
    let ours = |a: &str| {
        a == cfg.survey_address.as_str()
            || cfg.reply_to.as_ref().is_some_and(|r| r.as_str() == a)
            || ["mailer-daemon@", "postmaster@"]
                .iter()
                .any(|p| a.starts_with(p))
    };
    let has_code =
        |l: &str| enhanced_code(l).is_some_and(|c| !c.starts_with('2')) || smtp_code(l).is_some();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let found: Vec<String> = addresses_in_line(line)
            .into_iter()
            .filter(|a| !ours(a))
            .collect();
        if found.is_empty() {
            continue;
        }
        let paragraph: Vec<&str> = lines[i..]
            .iter()
            .take(PARAGRAPH)
            .take_while(|l| !l.trim().is_empty())
            .copied()
            .collect();
        if !paragraph.iter().any(|l| has_code(l)) {
            continue;
        }
        let diag = paragraph.join(" ");
        for a in found {
            out.push(text_recipient(&a, Some(&diag), true));
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Text without a known shape: Lotus Notes/Domino, IMail, SMTP32, GroupWise,
// Exchange 2003, webmail, "addr: reason".
// ---------------------------------------------------------------------------

/// Words a line of a delivery report uses for a recipient that failed.
pub(super) const FAILURE_WORDS: [&str; 65] = [
    "invalid",
    "delivery problem",
    "aborted",
    "could not find",
    "non-delivery",
    "did not receive",
    "did not exactly match",
    "did not match",
    "intended recipient",
    "doesn't have",
    "does not have",
    "exceeding",
    "could not be found",
    "user unknown",
    "unknown user",
    "no such user",
    "no such recipient",
    "no such mailbox",
    "unknown recipient",
    "recipient unknown",
    "unknown address",
    "address unknown",
    "unknown local",
    "not known",
    "does not exist",
    "doesn't exist",
    "not exist",
    "non-existent",
    "nonexistent",
    "invalid recipient",
    "invalid address",
    "invalid mailbox",
    "not a valid",
    "mailbox unavailable",
    "mailbox not found",
    "mailbox is disabled",
    "account is disabled",
    "no mailbox",
    "not found",
    "not listed",
    "rejected",
    "refused",
    "undeliverable",
    "could not be delivered",
    "couldn't be delivered",
    "cannot be delivered",
    "can't be delivered",
    "not delivered",
    "did not reach",
    "unable to deliver",
    "could not deliver",
    "delivery failed",
    "delivery failure",
    "failed",
    "fatal",
    "permanent",
    "bad destination",
    "host unknown",
    "unrouteable",
    "inactive",
    "deactivated",
    "no longer",
    "kunne ikke leveres",
    "findes ikke",
    "ukendt",
];

/// Where the returned original begins in a report's text, besides
/// [`ORIGINAL_MARKERS`]: the copy, never the report, may hold any address.
pub(super) const COPY_MARKERS: [&str; 8] = [
    "unsent message below",
    "----- the following is a copy",
    "------ this is a copy",
    "--- original message",
    "------ original message",
    "message headers follow",
    "the header and text of the original",
    "below is a copy",
];

pub(super) fn says_failed(lower: &str) -> bool {
    FAILURE_WORDS.iter().any(|w| lower.contains(w))
        || enhanced_code(lower).is_some_and(|c| !c.starts_with('2'))
        || smtp_code(lower).is_some()
}

/// The failed addresses of a report with no known shape: an address in a
/// paragraph that says it failed ("kijitora@example.org: Domain does not
/// exist", "<addr>: user unknown", "Recipient address rejected", "mailbox
/// unavailable"), or listed in the paragraph right after a heading that says
/// so ("did not reach the following recipient(s):", "The following addresses
/// had permanent fatal errors"), or named in a subject that says so
/// ("Undeliverable: addr", "Your message to addr could not be delivered").
/// Only the text above the returned original is read; the survey address,
/// the mail system's own addresses and `exclude` (the report's own From, To,
/// Cc) are never recipients.
pub(super) fn failure_text(
    text: &str,
    subject: &str,
    exclude: &[String],
    cfg: &Config,
) -> Vec<BouncedRecipient> {
    let lower = text.to_lowercase();
    let end = ORIGINAL_MARKERS
        .iter()
        .chain(COPY_MARKERS.iter())
        .filter_map(|m| lower.find(m))
        .min()
        .unwrap_or(text.len());
    let text = text.get(..end).unwrap_or(text);
    let ours = |a: &str| {
        a == cfg.survey_address.as_str()
            || cfg.reply_to.as_ref().is_some_and(|r| r.as_str() == a)
            || exclude.iter().any(|e| e == a)
            || [
                "mailer-daemon@",
                "postmaster@",
                "mdaemon@",
                "abuse@",
                "hostmaster@",
                "webmaster@",
            ]
            .iter()
            .any(|p| a.starts_with(p))
    };
    let mut out = Vec::new();
    let permanent_of = |para: &str| !only_delayed(para) && !gave_up(para);
    let paragraphs: Vec<Vec<&str>> = text
        .split("\n\n")
        .flat_map(|p| p.split("\r\n\r\n"))
        .map(|p| {
            p.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
        })
        .filter(|p| !p.is_empty())
        .collect();
    for (i, para) in paragraphs.iter().enumerate() {
        let joined = para.join(" ");
        let low = joined.to_lowercase();
        // Quoted headers of the original ("To: x", "From: y") are not the report.
        let lines: Vec<&&str> = para
            .iter()
            .filter(|l| {
                let l = l.to_ascii_lowercase();
                ![
                    "from:",
                    "to:",
                    "cc:",
                    "reply-to:",
                    "sender:",
                    "return-path:",
                    "received:",
                    "message-id:",
                    "date:",
                    "subject:",
                    "envelope-from",
                ]
                .iter()
                .any(|h| l.starts_with(h))
            })
            .collect();
        let found: Vec<String> = lines
            .iter()
            .flat_map(|l| addresses_in_line(l))
            .filter(|a| !ours(a))
            .collect();
        // "<addr>: reason" / "addr: reason" (Postfix, qmail, sbcglobal):
        // the line is the failure.
        let addr_colon = para.iter().any(|l| {
            let t = l.trim_start_matches('<');
            t.split_once(':').is_some_and(|(head, _)| {
                let head = head.trim_end_matches('>');
                !head.contains(char::is_whitespace) && addresses_in_line(head).len() == 1
            })
        });
        if !says_failed(&low) && !addr_colon {
            continue;
        }
        if !found.is_empty() {
            for a in found {
                out.push(text_recipient(&a, Some(&joined), permanent_of(&joined)));
            }
            continue;
        }
        // A heading: the addresses follow in the next paragraph.
        if para
            .last()
            .is_some_and(|l| l.ends_with(':') || l.to_lowercase().contains("following"))
        {
            if let Some(next) = paragraphs.get(i + 1) {
                let diag = next.join(" ");
                for l in next {
                    if let Some(a) = addresses_in_line(l).into_iter().find(|a| !ours(a)) {
                        out.push(text_recipient(&a, Some(&diag), permanent_of(&joined)));
                    }
                }
            }
        }
    }
    if out.is_empty() {
        let low = subject.to_lowercase();
        if is_report_subject(subject) || says_failed(&low) {
            for a in addresses_in_line(subject).into_iter().filter(|a| !ours(a)) {
                out.push(text_recipient(&a, Some(subject), !only_delayed(subject)));
            }
        }
    }
    out
}
