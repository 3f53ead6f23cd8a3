//! Retention and erasure rules, as pure functions: when invitees' plain
//! addresses are erased, what erasing an invitation leaves, which queued mail
//! would carry an erased address, and the text `canvass purge` / `canvass
//! forget` print. The store operations that apply them are in
//! `src/store/privacy.rs`; the scheduler runs the purge once when it is due.
//!
//! What is erased: the plain address and the token nonce (with the secret key
//! it rebuilds the link for a reminder). What stays: region, dates, status
//! flags, the token's hash (a link already sent still opens the form until
//! `window.answers_until`) and the HMAC of the address, so that a contact CC'd
//! again is still "already invited". Answers carry nothing that links them to
//! an invitation and are never touched.

use std::collections::BTreeMap;
use std::fmt::Write;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::store::{Delivery, Invitation, OutboxItem, Purpose};
use crate::window::Window;

/// What an erased address is replaced with in kept text (an SMTP reply).
pub const ERASED: &str = "[erased]";

/// The reason recorded on an invitation whose unsent mail was dropped by the purge.
pub const DROPPED_BY_RETENTION: &str = "not sent: the address was erased (retention)";
/// The reason recorded on an invitation whose unsent mail was dropped by `forget`.
pub const DROPPED_BY_FORGET: &str = "not sent: the person asked to be forgotten";

/// When invitees' addresses are erased: `days` after the window closed
/// (midnight after `window.end`, Copenhagen).
pub fn erase_at(window: &Window, days: u32) -> DateTime<Utc> {
    window.closes_at() + Duration::days(i64::from(days))
}

/// Whether the purge is due at `now`.
pub fn is_due(window: &Window, days: u32, now: DateTime<Utc>) -> bool {
    now >= erase_at(window, days)
}

/// Whether the scheduled purge must run at `now`, given the deadline it last
/// completed (its job state). A later deadline (the window was extended by a
/// reload) runs again; the purge itself is idempotent.
pub fn job_due(
    window: &Window,
    days: u32,
    now: DateTime<Utc>,
    done: Option<DateTime<Utc>>,
) -> bool {
    let at = erase_at(window, days);
    now >= at && done.is_none_or(|d| d < at)
}

/// What the mailbox sweep removes from the survey mailbox's folders (canvass'
/// own sent copies, which carry live links and addresses, and processed
/// triggers, which carry contacts' addresses). Applied over IMAP by
/// `src/ingest/imap/purge.rs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailboxSweep {
    /// Retention: everything received before `before`.
    Retention { before: DateTime<Utc> },
    /// `forget`: the mail that names one person.
    Person { address: String },
}

/// The retention sweep's limit at `now`, or `None` while the purge is not
/// due: mail received before the later of the erasure date and `days` ago.
/// At the erasure date that is all the window's mail; afterwards, each run
/// also takes what has aged past `days` since (late triggers, digests).
pub fn mailbox_cutoff(window: &Window, days: u32, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let at = erase_at(window, days);
    (now >= at).then(|| at.max(now - Duration::days(i64::from(days))))
}

/// How often the scheduler sweeps the mailbox once the retention is due.
pub const MAILBOX_SWEEP_EVERY: Duration = Duration::days(1);

/// The scheduled mailbox sweep: `Ok(before)` when it must run at `now` (the
/// retention is due and the last completed sweep, if any, is a day old),
/// otherwise `Err(when)` it is next due.
pub fn mailbox_sweep_due(
    window: &Window,
    days: u32,
    now: DateTime<Utc>,
    last: Option<DateTime<Utc>>,
) -> Result<DateTime<Utc>, DateTime<Utc>> {
    let Some(before) = mailbox_cutoff(window, days, now) else {
        return Err(erase_at(window, days));
    };
    match last {
        Some(l) if now - l < MAILBOX_SWEEP_EVERY => Err(l + MAILBOX_SWEEP_EVERY),
        _ => Ok(before),
    }
}

/// Of the messages a folder search found (UID, INTERNALDATE), the UIDs the
/// sweep deletes: for retention those received before the limit (a message
/// without a readable date is kept), for a person all of them.
pub fn mailbox_selection(sweep: &MailboxSweep, found: &[(u32, Option<DateTime<Utc>>)]) -> Vec<u32> {
    let mut uids: Vec<u32> = found
        .iter()
        .filter(|(_, at)| match sweep {
            MailboxSweep::Retention { before } => at.is_some_and(|t| t < *before),
            MailboxSweep::Person { .. } => true,
        })
        .map(|(uid, _)| *uid)
        .collect();
    uids.sort_unstable();
    uids.dedup();
    uids
}

/// Whether an invitation still holds something the purge erases.
pub fn holds_personal_data(inv: &Invitation) -> bool {
    inv.address.is_some() || inv.token_nonce.is_some()
}

/// Erases an invitation's plain address and token nonce, and the address from
/// a kept failure reason (an SMTP reply often quotes the recipient). Region,
/// dates, flags, the token hash and the HMAC stay. Returns whether anything
/// changed.
pub fn erase(inv: &mut Invitation) -> bool {
    let mut changed = inv.token_nonce.take().is_some();
    if let Some(addr) = inv.address.take() {
        changed = true;
        if let Delivery::Failed { reason, .. } = &mut inv.delivery {
            *reason = scrub(reason, addr.as_str());
        }
    }
    changed
}

/// `text` with every occurrence of `address` (ASCII case-insensitively)
/// replaced by [`ERASED`].
pub fn scrub(text: &str, address: &str) -> String {
    if address.is_empty() {
        return text.to_string();
    }
    let hay = text.to_ascii_lowercase();
    let needle = address.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut from = 0;
    while let Some(pos) = hay[from..].find(&needle) {
        let start = from + pos;
        out.push_str(&text[from..start]);
        out.push_str(ERASED);
        from = start + needle.len();
    }
    out.push_str(&text[from..]);
    out
}

/// Whether `text` mentions `address` (ASCII case-insensitively).
pub fn mentions(text: &[u8], address: &str) -> bool {
    let needle = address.to_ascii_lowercase();
    !needle.is_empty()
        && text
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

/// The invitation a queued message carries the address of: the invitation
/// mail itself and reminders. Confirmations, digests and forwards go to staff.
pub fn carried_invitation(item: &OutboxItem) -> Option<u64> {
    match item.purpose {
        Purpose::Invitation { invitation_id } | Purpose::Reminder { invitation_id } => {
            Some(invitation_id)
        }
        Purpose::Confirmation | Purpose::Digest | Purpose::Forward => None,
    }
}

/// What a purge erased (or, in a dry run, would erase).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PurgeReport {
    /// Nothing was written (a dry run, or not due without `--now`).
    pub dry_run: bool,
    /// Invitations whose address and nonce were erased, per region.
    pub by_region: BTreeMap<String, u64>,
    pub erased: u64,
    /// Queued invitations dropped unsent (recorded as failed).
    pub dropped_invitations: u64,
    /// Queued reminders dropped.
    pub dropped_reminders: u64,
    /// Invitations that held nothing any more (erased before).
    pub already_erased: u64,
    /// Answers in the store: untouched.
    pub answers: u64,
}

/// What `canvass purge` prints, with the rule it applied.
pub fn render_purge(
    r: &PurgeReport,
    days: u32,
    erase_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> String {
    let mut s = String::new();
    let local = |t: DateTime<Utc>| t.with_timezone(&crate::window::TZ).format("%Y-%m-%d %H:%M");
    let due = now >= erase_at;
    let _ = writeln!(
        s,
        "retention: addresses are erased {days} day(s) after the window closed: from {} (Copenhagen){}",
        local(erase_at),
        if due { "; due now" } else { "; not due yet" }
    );
    let verb = if r.dry_run { "would erase" } else { "erased" };
    if r.erased == 0 {
        let _ = writeln!(
            s,
            "{verb} nothing: no invitation holds a plain address ({} erased before)",
            r.already_erased
        );
    } else {
        let regions: Vec<String> = r
            .by_region
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let _ = writeln!(
            s,
            "{verb} the address and link nonce of {} invitation(s) ({})",
            r.erased,
            regions.join(", ")
        );
    }
    let drop_verb = if r.dry_run { "would drop" } else { "dropped" };
    if r.dropped_invitations + r.dropped_reminders > 0 {
        let _ = writeln!(
            s,
            "{drop_verb} {} queued invitation(s) and {} reminder(s) that carried an erased address (never sent)",
            r.dropped_invitations, r.dropped_reminders
        );
    }
    let _ = writeln!(
        s,
        "kept: region, dates, status flags and the HMAC dedup key of every invitation (a contact CC'd again is still \"already invited\"); {} answer(s) untouched",
        r.answers
    );
    if r.dry_run && !due {
        let _ = writeln!(
            s,
            "nothing was changed; `canvass purge --now` erases before the deadline"
        );
    } else if r.dry_run {
        let _ = writeln!(s, "nothing was changed (dry run)");
    }
    s
}

/// What `canvass forget` did about one person.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ForgetReport {
    /// The address as given (normalised).
    pub address: String,
    /// Their invitation, if they were invited.
    pub invitation: Option<ForgottenInvitation>,
    /// Queued mail to them that was dropped unsent: (purpose, Message-ID).
    pub dropped: Vec<(String, String)>,
    /// Other queued mail that names them (to staff: a confirmation, a
    /// forwarded reply): kept, sent to its staff recipient, then deleted.
    pub mentioned_in: Vec<String>,
    /// Their HMAC dedup key was already in the store (invited before or
    /// forgotten before); otherwise it was added now.
    pub key_was_held: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ForgottenInvitation {
    pub id: u64,
    pub region: String,
    pub created_at: DateTime<Utc>,
    /// The plain address was still held (not erased by retention before).
    pub erased_address: bool,
    pub erased_nonce: bool,
    /// The link's token entry was removed: the link no longer opens the form.
    pub link_disabled: bool,
}

/// What `canvass forget` prints.
pub fn render_forget(r: &ForgetReport) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "forget {}:", r.address);
    match &r.invitation {
        Some(i) => {
            let what = match (i.erased_address, i.erased_nonce) {
                (true, true) => "erased   the plain address and the link nonce",
                (true, false) => "erased   the plain address",
                (false, true) => "erased   the link nonce (the address had been erased before)",
                (false, false) => "held     no plain address any more (erased before)",
            };
            let _ = writeln!(
                s,
                "  {what} of invitation {} (region {}, invited {})",
                i.id,
                i.region,
                i.created_at.with_timezone(&crate::window::TZ).date_naive()
            );
            if i.link_disabled {
                let _ = writeln!(
                    s,
                    "  disabled their personal link (it no longer opens the form)"
                );
            }
        }
        None => {
            let _ = writeln!(s, "  held     no invitation: they were never invited");
        }
    }
    if r.dropped.is_empty() {
        let _ = writeln!(
            s,
            "  dropped  no queued mail (nothing was waiting for them)"
        );
    } else {
        for (purpose, mid) in &r.dropped {
            let _ = writeln!(
                s,
                "  dropped  the queued {purpose} to them, unsent (<{mid}>)"
            );
        }
    }
    for purpose in &r.mentioned_in {
        let _ = writeln!(
            s,
            "  note     a queued {purpose} to staff names them; it is kept, sent and then deleted"
        );
    }
    let _ = writeln!(
        s,
        "  kept     the HMAC of the address{}: they are never invited again, whoever CCs them.",
        if r.key_was_held { "" } else { " (added now)" }
    );
    let _ = writeln!(
        s,
        "           It is a keyed hash; without the secret key it does not give the address back."
    );
    let _ = writeln!(
        s,
        "  kept     any answer they gave: answers are anonymous and cannot be linked to them"
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::{parse, AddressKey};
    use crate::token::{TokenHash, TokenNonce};
    use chrono::NaiveDate;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn window() -> Window {
        Window::new(
            NaiveDate::from_ymd_opt(2024, 8, 7).unwrap(),
            NaiveDate::from_ymd_opt(2024, 9, 20).unwrap(),
        )
    }

    fn inv() -> Invitation {
        Invitation {
            id: 7,
            address_key: AddressKey([1; 32]),
            address: Some(parse("Kontakt@Kommune.dk").unwrap()),
            region: "Sjælland".into(),
            consultant: parse("anne@siri.dk").unwrap(),
            created_at: utc("2024-08-12T08:00:00Z"),
            token_hash: TokenHash([2; 32]),
            token_nonce: Some(TokenNonce([3; 16])),
            message_id: "canvass.x@siri.dk".into(),
            delivery: Delivery::Failed {
                at: utc("2024-08-12T08:01:00Z"),
                reason: "550 5.1.1 <KONTAKT@kommune.dk>: Recipient address rejected".into(),
            },
            answered: false,
            opted_out: true,
            bounced: true,
            reminders: 1,
            last_reminder_at: None,
        }
    }

    #[test]
    fn the_mailbox_cutoff_is_the_erasure_date_then_follows_the_retention() {
        let w = window();
        let at = erase_at(&w, 30); // 2024-10-20T22:00Z
        assert_eq!(mailbox_cutoff(&w, 30, at - Duration::seconds(1)), None);
        assert_eq!(mailbox_cutoff(&w, 30, at), Some(at));
        // Ten days later, still everything before the erasure date.
        let later = at + Duration::days(10);
        assert_eq!(mailbox_cutoff(&w, 30, later), Some(at));
        // Once the erasure date is more than 30 days back: 30 days ago.
        let much_later = at + Duration::days(45);
        assert_eq!(
            mailbox_cutoff(&w, 30, much_later),
            Some(much_later - Duration::days(30))
        );
    }

    #[test]
    fn the_mailbox_sweep_runs_daily_once_due_and_says_when_next() {
        let w = window();
        let at = erase_at(&w, 30);
        let early = at - Duration::days(2);
        assert_eq!(mailbox_sweep_due(&w, 30, early, None), Err(at));
        assert_eq!(mailbox_sweep_due(&w, 30, at, None), Ok(at));
        let ran = at + Duration::hours(1);
        assert_eq!(
            mailbox_sweep_due(&w, 30, ran + Duration::hours(5), Some(ran)),
            Err(ran + MAILBOX_SWEEP_EVERY)
        );
        assert_eq!(
            mailbox_sweep_due(&w, 30, ran + Duration::days(1), Some(ran)),
            Ok(at)
        );
    }

    #[test]
    fn the_mailbox_selection_keeps_recent_and_undated_mail_for_retention() {
        let before = utc("2024-10-20T22:00:00Z");
        let found = [
            (9, Some(utc("2024-08-12T08:00:00Z"))),
            (3, Some(utc("2024-10-20T21:59:59Z"))),
            (4, Some(before)),
            (5, None),
            (3, Some(utc("2024-10-20T21:59:59Z"))),
        ];
        let sweep = MailboxSweep::Retention { before };
        assert_eq!(mailbox_selection(&sweep, &found), vec![3, 9]);
        let person = MailboxSweep::Person {
            address: "a@x.dk".into(),
        };
        assert_eq!(mailbox_selection(&person, &found), vec![3, 4, 5, 9]);
    }

    #[test]
    fn due_thirty_days_after_the_window_closed_copenhagen_time() {
        let w = window();
        // The window closes at midnight after 20 September, Copenhagen (22:00 UTC, summer time).
        assert_eq!(erase_at(&w, 0), utc("2024-09-20T22:00:00Z"));
        // 30 days later it is winter time, but the rule counts whole days from the close.
        assert_eq!(erase_at(&w, 30), utc("2024-10-20T22:00:00Z"));
        assert!(!is_due(&w, 30, utc("2024-10-20T21:59:59Z")));
        assert!(is_due(&w, 30, utc("2024-10-20T22:00:00Z")));
        assert!(is_due(&w, 0, utc("2024-09-21T00:00:00Z")));
    }

    #[test]
    fn the_job_runs_once_per_deadline() {
        let w = window();
        let at = erase_at(&w, 30);
        let later = at + Duration::hours(1);
        assert!(
            !job_due(&w, 30, at - Duration::seconds(1), None),
            "not before"
        );
        assert!(job_due(&w, 30, later, None), "due, never done");
        assert!(!job_due(&w, 30, later, Some(at)), "done for this deadline");
        // The window was extended by a reload: a later deadline runs again.
        let extended = Window::new(w.start, NaiveDate::from_ymd_opt(2024, 10, 20).unwrap());
        let at2 = erase_at(&extended, 30);
        assert!(!job_due(&extended, 30, later, Some(at)));
        assert!(job_due(&extended, 30, at2, Some(at)));
        assert!(!job_due(&extended, 30, at2, Some(at2)));
    }

    #[test]
    fn erasing_keeps_region_dates_flags_hash_and_hmac() {
        let before = inv();
        let mut after = before.clone();
        assert!(holds_personal_data(&after));
        assert!(erase(&mut after));
        assert!(!holds_personal_data(&after));
        assert_eq!(after.address, None);
        assert_eq!(after.token_nonce, None);
        assert_eq!(
            after.address_key, before.address_key,
            "the HMAC stays (dedup)"
        );
        assert_eq!(after.token_hash, before.token_hash);
        assert_eq!(after.region, before.region);
        assert_eq!(after.created_at, before.created_at);
        assert_eq!(
            (
                after.answered,
                after.opted_out,
                after.bounced,
                after.reminders
            ),
            (false, true, true, 1)
        );
        match &after.delivery {
            Delivery::Failed { reason, .. } => {
                assert_eq!(reason, "550 5.1.1 <[erased]>: Recipient address rejected");
            }
            other => panic!("{other:?}"),
        }
        // Erasing again changes nothing.
        let mut again = after.clone();
        assert!(!erase(&mut again));
        assert_eq!(again, after);
    }

    #[test]
    fn scrub_and_mentions_ignore_ascii_case() {
        assert_eq!(
            scrub("to a@x.dk and A@X.DK.", "a@x.dk"),
            "to [erased] and [erased]."
        );
        assert_eq!(scrub("nothing here", "a@x.dk"), "nothing here");
        assert_eq!(scrub("æøå a@x.dk æøå", "a@x.dk"), "æøå [erased] æøå");
        assert_eq!(scrub("x", ""), "x");
        assert!(mentions(b"To: <A@x.dk>\r\n", "a@x.dk"));
        assert!(!mentions(b"To: <b@x.dk>\r\n", "a@x.dk"));
        assert!(!mentions(b"", "a@x.dk"));
    }

    #[test]
    fn only_invitations_and_reminders_carry_an_invitees_address() {
        let item = |purpose| OutboxItem {
            id: 1,
            purpose,
            from: "s@siri.dk".into(),
            to: vec!["a@x.dk".into()],
            message_id: "m".into(),
            raw: vec![],
            next_attempt: Utc::now(),
            attempts: 0,
            last_error: None,
        };
        assert_eq!(
            carried_invitation(&item(Purpose::Invitation { invitation_id: 4 })),
            Some(4)
        );
        assert_eq!(
            carried_invitation(&item(Purpose::Reminder { invitation_id: 5 })),
            Some(5)
        );
        for p in [Purpose::Confirmation, Purpose::Digest, Purpose::Forward] {
            assert_eq!(carried_invitation(&item(p)), None);
        }
    }

    #[test]
    fn purge_text_says_what_was_erased_and_what_stays() {
        let w = window();
        let mut r = PurgeReport {
            erased: 3,
            dropped_invitations: 1,
            answers: 9,
            ..Default::default()
        };
        r.by_region.insert("Sjælland".into(), 2);
        r.by_region.insert("Hovedstaden".into(), 1);
        let at = erase_at(&w, 30);
        let text = render_purge(&r, 30, at, at);
        assert!(
            text.contains("from 2024-10-21 00:00 (Copenhagen); due now"),
            "{text}"
        );
        assert!(
            text.contains(
                "erased the address and link nonce of 3 invitation(s) (Hovedstaden 1, Sjælland 2)"
            ),
            "{text}"
        );
        assert!(
            text.contains("dropped 1 queued invitation(s) and 0 reminder(s)"),
            "{text}"
        );
        assert!(text.contains("9 answer(s) untouched"), "{text}");
        r.dry_run = true;
        let text = render_purge(&r, 30, at, at - Duration::days(1));
        assert!(text.contains("would erase"), "{text}");
        assert!(text.contains("not due yet"), "{text}");
        assert!(text.contains("--now"), "{text}");
    }

    #[test]
    fn forget_text_is_clear_about_the_hmac() {
        let r = ForgetReport {
            address: "a@x.dk".into(),
            invitation: Some(ForgottenInvitation {
                id: 3,
                region: "Sjælland".into(),
                created_at: utc("2024-08-12T08:00:00Z"),
                erased_address: true,
                erased_nonce: true,
                link_disabled: true,
            }),
            dropped: vec![("reminder".into(), "canvass.r@siri.dk".into())],
            mentioned_in: vec![],
            key_was_held: true,
        };
        let text = render_forget(&r);
        assert!(
            text.contains("erased   the plain address and the link nonce of invitation 3"),
            "{text}"
        );
        assert!(
            text.contains("dropped  the queued reminder to them"),
            "{text}"
        );
        assert!(text.contains("never invited again"), "{text}");
        assert!(text.contains("answers are anonymous"), "{text}");
        assert!(!text.contains("(added now)"));
        let none = render_forget(&ForgetReport {
            address: "b@x.dk".into(),
            ..Default::default()
        });
        assert!(none.contains("never invited"), "{none}");
        assert!(none.contains("(added now)"), "{none}");
    }
}
