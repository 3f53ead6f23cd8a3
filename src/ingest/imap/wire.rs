//! Pure helpers for the IMAP wire: where to resume, UID sets, FETCH and
//! SEARCH answers, INTERNALDATE, batch planning, mailbox names (quoting,
//! modified UTF-7) and the server's words from async-imap's responses and
//! errors. No I/O.

use async_imap::imap_proto::{
    AttributeValue, MessageSection, Response, ResponseCode, SectionPath, Status,
};
use chrono::{DateTime, Utc};

use super::session::Item;
use crate::ingest::Incoming;
use crate::store::IngestMark;

/// Where to read on from: `(last_uid, reset)`; reset when the mailbox's
/// UIDVALIDITY is not the stored one.
pub(super) fn resume_point(stored: Option<IngestMark>, uid_validity: u32) -> (u32, bool) {
    match stored {
        Some(m) if m.uid_validity == uid_validity => (m.last_uid, false),
        Some(_) => (0, true),
        None => (0, false),
    }
}

/// The UIDs above `last`, sorted, without repeats (`n:*` also matches the
/// highest message when its UID is below `n`).
pub(super) fn uids_above(found: Vec<u32>, last: u32) -> Vec<u32> {
    let mut v: Vec<u32> = found.into_iter().filter(|u| *u > last).collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// An IMAP sequence set for sorted UIDs: `1:3,7,9:10`.
pub(super) fn uid_set(uids: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < uids.len() {
        let start = uids[i];
        let mut end = start;
        while i + 1 < uids.len() && uids[i + 1] == end.wrapping_add(1) && uids[i + 1] > end {
            end = uids[i + 1];
            i += 1;
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

/// The UIDs of processed messages that belong to the current UIDVALIDITY,
/// sorted.
pub(super) fn uids_to_mark(done: &[Incoming], uid_validity: u32) -> Vec<u32> {
    let mut uids: Vec<u32> = done
        .iter()
        .filter(|m| m.mark.is_none_or(|k| k.uid_validity == uid_validity))
        .filter_map(|m| m.id.parse::<u32>().ok())
        .filter(|u| *u > 0)
        .collect();
    uids.sort_unstable();
    uids.dedup();
    uids
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Meta {
    pub(super) uid: u32,
    pub(super) size: u64,
    pub(super) received: Option<DateTime<Utc>>,
}

/// The messages to read this round, in order, with whether only the header
/// is read: stops before the bodies read pass `budget` (at least one message).
pub(super) fn plan_batch(metas: &[Meta], max_message_bytes: u64, budget: u64) -> Vec<(Meta, bool)> {
    let mut out = Vec::new();
    let mut total: u64 = 0;
    for m in metas {
        let headers_only = m.size > max_message_bytes;
        let cost = if headers_only { 64 * 1024 } else { m.size };
        if !out.is_empty() && total.saturating_add(cost) > budget {
            break;
        }
        total = total.saturating_add(cost);
        out.push((*m, headers_only));
    }
    out
}

pub(super) fn same_mailbox(a: &str, b: &str) -> bool {
    if a.eq_ignore_ascii_case("INBOX") || b.eq_ignore_ascii_case("INBOX") {
        a.eq_ignore_ascii_case(b)
    } else {
        a == b
    }
}

pub(super) struct Fetched {
    pub(super) uid: u32,
    pub(super) size: Option<u32>,
    pub(super) internal_date: Option<String>,
    pub(super) body: Option<Vec<u8>>,
    pub(super) header: Option<Vec<u8>>,
}

/// The parts of a FETCH response used here; `None` without a UID.
pub(super) fn parse_fetch(r: &Response<'_>) -> Option<Fetched> {
    let Response::Fetch(_, attrs) = r else {
        return None;
    };
    let mut f = Fetched {
        uid: 0,
        size: None,
        internal_date: None,
        body: None,
        header: None,
    };
    for a in attrs {
        match a {
            AttributeValue::Uid(u) => f.uid = *u,
            AttributeValue::Rfc822Size(s) => f.size = Some(*s),
            AttributeValue::InternalDate(d) => f.internal_date = Some(d.to_string()),
            AttributeValue::BodySection {
                section: None,
                data: Some(d),
                ..
            }
            | AttributeValue::Rfc822(Some(d)) => f.body = Some(d.to_vec()),
            AttributeValue::BodySection {
                section: Some(SectionPath::Full(MessageSection::Header)),
                data: Some(d),
                ..
            }
            | AttributeValue::Rfc822Header(Some(d)) => f.header = Some(d.to_vec()),
            _ => {}
        }
    }
    (f.uid != 0).then_some(f)
}

pub(super) fn uids_from_search(data: &[Item]) -> Vec<u32> {
    data.iter()
        .filter_map(|i| match i {
            Item::Search(v) => Some(v.iter().copied()),
            _ => None,
        })
        .flatten()
        .collect()
}

/// INTERNALDATE (`17-Jul-1996 02:44:25 -0700`, day possibly space-padded).
pub(super) fn parse_internal_date(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_str(s.trim(), "%d-%b-%Y %H:%M:%S %z")
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

/// The inside of an IMAP quoted string.
pub(super) fn quote_inner(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// A mailbox name as a command argument: modified UTF-7, quoted.
pub(super) fn mailbox_arg(name: &str) -> String {
    let enc = mutf7(name);
    format!("\"{}\"", quote_inner(&enc))
}

/// Modified UTF-7 (RFC 3501 5.1.3) for mailbox names.
pub(super) fn mutf7(s: &str) -> String {
    use base64::engine::{general_purpose::GeneralPurposeConfig, GeneralPurpose};
    use base64::Engine;
    const ENGINE: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::IMAP_MUTF7,
        GeneralPurposeConfig::new().with_encode_padding(false),
    );
    let mut out = String::new();
    let mut run: Vec<u16> = Vec::new();
    let flush = |run: &mut Vec<u16>, out: &mut String| {
        if run.is_empty() {
            return;
        }
        let bytes: Vec<u8> = run.iter().flat_map(|u| u.to_be_bytes()).collect();
        out.push('&');
        out.push_str(&ENGINE.encode(bytes));
        out.push('-');
        run.clear();
    };
    for c in s.chars() {
        if (' '..='~').contains(&c) {
            flush(&mut run, &mut out);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            let mut buf = [0u16; 2];
            run.extend_from_slice(c.encode_utf16(&mut buf));
        }
    }
    flush(&mut run, &mut out);
    out
}

pub(super) fn status_copy(s: &Status) -> Status {
    match s {
        Status::Ok => Status::Ok,
        Status::No => Status::No,
        Status::Bad => Status::Bad,
        Status::PreAuth => Status::PreAuth,
        Status::Bye => Status::Bye,
    }
}

pub(super) fn outcome_text(code: Option<&ResponseCode<'_>>, info: Option<&str>) -> String {
    let info = info.unwrap_or("").trim();
    match code {
        Some(ResponseCode::TryCreate) => format!("[TRYCREATE] {info}"),
        Some(c) => format!("[{c:?}] {info}"),
        None => info.to_string(),
    }
}

/// The server's words from async-imap's `No`/`Bad` error text, which reads
/// `code: Some(..), info: Some("...")`.
pub(super) fn server_text(s: &str) -> String {
    const INFO: &str = "info: Some(\"";
    const CODE: &str = "code: Some(";
    let Some(i) = s.find(INFO) else {
        return s.to_string();
    };
    let rest = s.get(i + INFO.len()..).unwrap_or("");
    let rest = rest.strip_suffix("\")").unwrap_or(rest);
    let text = rest.replace("\\\"", "\"").replace("\\\\", "\\");
    let code = s
        .get(..i)
        .and_then(|head| head.find(CODE).and_then(|j| head.get(j + CODE.len()..)))
        .map(|c| c.trim_end_matches([',', ' ', ')']));
    match code {
        Some(code) if !code.is_empty() => format!("[{code}] {text}"),
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_sets_are_compressed_ranges() {
        assert_eq!(uid_set(&[]), "");
        assert_eq!(uid_set(&[7]), "7");
        assert_eq!(uid_set(&[1, 2, 3, 5, 7, 8]), "1:3,5,7:8");
        assert_eq!(uid_set(&[u32::MAX - 1, u32::MAX]), "4294967294:4294967295");
        let many: Vec<u32> = (1..=10_000).collect();
        assert_eq!(uid_set(&many), "1:10000");
    }

    #[test]
    fn the_highest_message_matched_by_star_is_filtered() {
        // `UID SEARCH UID 11:*` with only UID 5..=10 answers 10.
        assert!(uids_above(vec![10], 10).is_empty());
        assert_eq!(uids_above(vec![15, 11, 12, 11, 3], 10), vec![11, 12, 15]);
        assert_eq!(uids_above(vec![2, 1], 0), vec![1, 2]);
    }

    #[test]
    fn the_mark_resets_when_uidvalidity_changes() {
        let m = |v, u| {
            Some(IngestMark {
                uid_validity: v,
                last_uid: u,
            })
        };
        assert_eq!(resume_point(None, 5), (0, false));
        assert_eq!(resume_point(m(5, 42), 5), (42, false));
        assert_eq!(resume_point(m(4, 42), 5), (0, true));
    }

    fn incoming(id: &str, validity: u32) -> Incoming {
        Incoming {
            id: id.into(),
            raw: Vec::new(),
            received: Utc::now(),
            mark: Some(IngestMark {
                uid_validity: validity,
                last_uid: id.parse().unwrap_or(0),
            }),
            headers_only: false,
        }
    }

    #[test]
    fn only_uids_of_the_current_validity_are_marked() {
        let done = [
            incoming("9", 1),
            incoming("3", 1),
            incoming("4", 2),
            incoming("x", 1),
            incoming("3", 1),
            incoming("0", 1),
        ];
        assert_eq!(uids_to_mark(&done, 1), vec![3, 9]);
        assert_eq!(uids_to_mark(&done, 2), vec![4]);
    }

    fn meta(uid: u32, size: u64) -> Meta {
        Meta {
            uid,
            size,
            received: None,
        }
    }

    #[test]
    fn a_batch_reads_large_messages_as_headers_and_stops_at_the_budget() {
        let metas = [meta(1, 10), meta(2, 500), meta(3, 40), meta(4, 60)];
        let plan = plan_batch(&metas, 100, 1_000_000);
        let flags: Vec<(u32, bool)> = plan.iter().map(|(m, h)| (m.uid, *h)).collect();
        assert_eq!(flags, vec![(1, false), (2, true), (3, false), (4, false)]);

        let plan = plan_batch(&metas, 1000, 520);
        assert_eq!(plan.iter().map(|p| p.0.uid).collect::<Vec<_>>(), vec![1, 2]);

        // Always at least one, even over the budget.
        let plan = plan_batch(&[meta(1, 5000)], 10_000, 100);
        assert_eq!(plan.len(), 1);
        assert!(plan_batch(&[], 10, 10).is_empty());
    }

    #[test]
    fn mailbox_names_are_modified_utf7_and_quoted() {
        assert_eq!(mutf7("INBOX"), "INBOX");
        assert_eq!(mutf7("Færdig"), "F&AOY-rdig");
        assert_eq!(mutf7("a&b"), "a&-b");
        // RFC 3501 5.1.3's example.
        assert_eq!(
            mutf7("~peter/mail/台北/日本語"),
            "~peter/mail/&U,BTFw-/&ZeVnLIqe-"
        );
        assert_eq!(mailbox_arg("Behandlet"), "\"Behandlet\"");
        assert_eq!(mailbox_arg("a\"b\\c"), "\"a\\\"b\\\\c\"");
        // Control characters are encoded too: never a raw line break.
        assert_eq!(mailbox_arg("x\r\ny"), "\"x&AA0ACg-y\"");
    }

    #[test]
    fn internal_dates_parse_to_utc() {
        let d = parse_internal_date("17-Jul-1996 02:44:25 -0700").expect("date");
        assert_eq!(d.to_rfc3339(), "1996-07-17T09:44:25+00:00");
        let d = parse_internal_date(" 7-Jul-1996 02:44:25 +0200").expect("date");
        assert_eq!(d.to_rfc3339(), "1996-07-07T00:44:25+00:00");
        assert!(parse_internal_date("yesterday").is_none());
        assert!(parse_internal_date("").is_none());
    }

    #[test]
    fn server_text_is_taken_from_async_imap_errors() {
        assert_eq!(
            server_text(
                "code: None, info: Some(\"[AUTHENTICATIONFAILED] Authentication failed.\")"
            ),
            "[AUTHENTICATIONFAILED] Authentication failed."
        );
        assert_eq!(
            server_text("code: Some(TryCreate), info: Some(\"Mailbox doesn't exist: X\")"),
            "[TryCreate] Mailbox doesn't exist: X"
        );
        assert_eq!(server_text("whatever"), "whatever");
        // Server text that looks like the wrapper does not confuse it.
        assert_eq!(
            server_text("code: None, info: Some(\"x code: Some(y\")"),
            "x code: Some(y"
        );
        assert_eq!(server_text("info: Some(\""), "");
    }

    #[test]
    fn inbox_is_case_insensitive() {
        assert!(same_mailbox("inbox", "INBOX"));
        assert!(!same_mailbox("INBOX", "Done"));
        assert!(!same_mailbox("Done", "done"));
    }

    #[test]
    fn fetch_responses_are_parsed() {
        let raw = b"* 3 FETCH (UID 12 RFC822.SIZE 44 INTERNALDATE \"01-Feb-2025 10:00:00 +0000\" BODY[] {5}\r\nHello)\r\n";
        let (_, r) = Response::parse(raw).expect("parse");
        let f = parse_fetch(&r).expect("fetch");
        assert_eq!(f.uid, 12);
        assert_eq!(f.size, Some(44));
        assert_eq!(f.body.as_deref(), Some(&b"Hello"[..]));
        assert!(f.header.is_none());
        let raw = b"* 3 FETCH (UID 12 BODY[HEADER] {4}\r\nA: b)\r\n";
        let (_, r) = Response::parse(raw).expect("parse");
        let f = parse_fetch(&r).expect("fetch");
        assert_eq!(f.header.as_deref(), Some(&b"A: b"[..]));
        // A flag update without UID is not ours.
        let (_, r) = Response::parse(b"* 3 FETCH (FLAGS (\\Seen))\r\n").expect("parse");
        assert!(parse_fetch(&r).is_none());
    }
}
