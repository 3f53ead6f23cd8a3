//! `canvass status`: per region, how many were invited, sent, failed, are
//! waiting in the outbox, and how many triggers were refused or came outside
//! the window. Computed by a pure function from the store's counters, so it
//! costs the same with ten invitations or a million.

use serde::Serialize;

use crate::analysis::percent;
use crate::store::counter;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Row {
    pub region: String,
    pub triggers: u64,
    pub invited: u64,
    pub sent: u64,
    pub failed: u64,
    /// Created but not yet accepted by the server.
    pub waiting: u64,
    /// Sent and neither bounced nor expired.
    pub delivered: u64,
    pub bounced: u64,
    /// Never delivered: the mail server gave up (counted with the bounces).
    pub expired: u64,
    /// Spam complaints (the person is opted out, but not counted in `opted_out`).
    pub complained: u64,
    pub opted_out: u64,
    pub answered: u64,
    /// Refused triggers, every reason below but the window: the sum of the
    /// four `refused_*` fields.
    pub refused: u64,
    /// From a sender who is not a configured consultant (only on
    /// [`Status::no_region`]: such mail belongs to no region).
    pub refused_not_consultant: u64,
    /// From a consultant's address, but the trust setting did not vouch for it.
    pub refused_unauthenticated: u64,
    /// Over `sending.max_invitees_per_message` (the message's excess).
    pub refused_over_message_cap: u64,
    /// Over `sending.max_invitees_per_consultant_per_day`.
    pub refused_over_daily_cap: u64,
    /// Received outside the collection window.
    pub outside_window: u64,
    /// Invitations withdrawn by `canvass withdraw`: counted here and in no
    /// other column, so they are neither invited nor a non-response.
    pub withdrawn: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Status {
    pub regions: Vec<Row>,
    /// Mail from senders who are not consultants: it belongs to no region,
    /// so it has a line of its own; with it the columns add up to the total.
    pub no_region: Row,
    /// Refused triggers from senders who are not consultants (no region).
    pub refused_unknown_sender: u64,
    pub total: Row,
    /// Everything in the outbox (invitations and replies).
    pub outbox: u64,
    /// Set when most mail from consultants' addresses over the last day was
    /// refused as unauthenticated: the trust setting probably does not match
    /// this mailbox ([`trust_warning`]).
    pub trust_warning: Option<String>,
    /// What came back, by kind (issue 13).
    pub returns: Returns,
}

/// The return mail by outcome: the bounced, expired, complained and opted
/// out invitations (as in `total`), and the messages set aside.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Returns {
    pub bounced: u64,
    pub expired: u64,
    pub complained: u64,
    pub opted_out: u64,
    /// Automatic replies (out of office, ...) ignored.
    pub auto_replies_ignored: u64,
    /// Human replies forwarded to a consultant.
    pub replies_forwarded: u64,
    /// Unreadable messages moved to the quarantine.
    pub quarantined: u64,
    /// Bounces and complaints that proved nothing (no canvass Message-ID):
    /// they changed nothing.
    pub unproven: u64,
}

/// The line of mail from senders who are not consultants.
pub const NO_REGION: &str = "(ikke konsulent)";

/// Builds the status from counters `(region, name, value)`; `regions` gives the
/// order (the config's), regions only in the counters follow.
pub fn compute(regions: &[&str], counters: &[(String, String, u64)], outbox: u64) -> Status {
    let mut rows: Vec<Row> = regions
        .iter()
        .map(|r| Row {
            region: r.to_string(),
            ..Default::default()
        })
        .collect();
    let mut unknown = 0;
    let mut returns = Returns::default();
    for (region, name, value) in counters {
        if region.is_empty() {
            match name.as_str() {
                counter::REFUSED_UNKNOWN_SENDER => unknown += value,
                counter::AUTO_REPLIES => returns.auto_replies_ignored += value,
                counter::REPLIES => returns.replies_forwarded += value,
                counter::QUARANTINED => returns.quarantined += value,
                counter::UNPROVEN => returns.unproven += value,
                _ => {}
            }
            continue;
        }
        let row = match rows.iter().position(|r| &r.region == region) {
            Some(i) => &mut rows[i],
            None => {
                rows.push(Row {
                    region: region.clone(),
                    ..Default::default()
                });
                let last = rows.len() - 1;
                &mut rows[last]
            }
        };
        match name.as_str() {
            counter::TRIGGERS => row.triggers += value,
            counter::INVITED => row.invited += value,
            counter::SENT => row.sent += value,
            counter::FAILED => row.failed += value,
            counter::BOUNCED => row.bounced += value,
            counter::EXPIRED => row.expired += value,
            counter::COMPLAINED => row.complained += value,
            counter::OPTED_OUT => row.opted_out += value,
            counter::ANSWERED => row.answered += value,
            counter::REFUSED_UNAUTHENTICATED => row.refused_unauthenticated += value,
            counter::REFUSED_OVER_MESSAGE_CAP => row.refused_over_message_cap += value,
            counter::REFUSED_OVER_CAP => row.refused_over_daily_cap += value,
            counter::OUTSIDE_WINDOW => row.outside_window += value,
            counter::WITHDRAWN => row.withdrawn += value,
            _ => {}
        }
    }
    let no_region = Row {
        region: NO_REGION.to_string(),
        refused: unknown,
        refused_not_consultant: unknown,
        ..Default::default()
    };
    let mut total = Row {
        region: "I alt".to_string(),
        refused: unknown,
        refused_not_consultant: unknown,
        ..Default::default()
    };
    for r in &mut rows {
        r.refused =
            r.refused_unauthenticated + r.refused_over_message_cap + r.refused_over_daily_cap;
        total.refused_unauthenticated += r.refused_unauthenticated;
        total.refused_over_message_cap += r.refused_over_message_cap;
        total.refused_over_daily_cap += r.refused_over_daily_cap;
        r.waiting = r.invited.saturating_sub(r.sent + r.failed);
        r.delivered = r.sent.saturating_sub(r.bounced + r.expired);
        total.triggers += r.triggers;
        total.delivered += r.delivered;
        total.bounced += r.bounced;
        total.expired += r.expired;
        total.complained += r.complained;
        total.opted_out += r.opted_out;
        total.answered += r.answered;
        total.invited += r.invited;
        total.sent += r.sent;
        total.failed += r.failed;
        total.waiting += r.waiting;
        total.refused += r.refused;
        total.outside_window += r.outside_window;
        total.withdrawn += r.withdrawn;
    }
    returns.bounced = total.bounced;
    returns.expired = total.expired;
    returns.complained = total.complained;
    returns.opted_out = total.opted_out;
    Status {
        regions: rows,
        no_region,
        refused_unknown_sender: unknown,
        trust_warning: None,
        total,
        outbox,
        returns,
    }
}

/// Mail from consultants' addresses the trust check looks at, at least.
const TRUST_WARNING_MIN: u64 = 3;

/// Whether the trust setting probably does not match the mailbox: over the
/// last day (`today` and the day before, Copenhagen dates) at least three
/// mails came from consultants' addresses and most of them were refused as
/// unauthenticated. `setting` names the setting to check, as written in the
/// config.
pub fn trust_warning(
    counters: &[(String, String, u64)],
    today: chrono::NaiveDate,
    setting: &str,
) -> Option<String> {
    let days = [today, today - chrono::Duration::days(1)].map(|d| d.to_string());
    let sum = |prefix: &str| -> u64 {
        counters
            .iter()
            .filter(|(region, name, _)| {
                region.is_empty()
                    && name
                        .strip_prefix(prefix)
                        .is_some_and(|d| days.iter().any(|x| x == d))
            })
            .map(|(_, _, v)| v)
            .sum()
    };
    let all = sum(counter::CONSULTANT_MAIL_DAY);
    let refused = sum(counter::UNAUTHENTICATED_DAY);
    (all >= TRUST_WARNING_MIN && refused * 2 > all).then(|| {
        format!(
            "{refused} of the {all} mails from consultants over the last day were refused as \
             unauthenticated: the trust setting ({setting}) probably does not match this \
             mailbox's Authentication-Results; run `canvass explain` on one of them"
        )
    })
}

/// The table for a terminal.
pub fn render_text(s: &Status) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    const HEAD: [&str; 12] = [
        "region",
        "triggers",
        "invited",
        "sent",
        "failed",
        "waiting",
        "bounced",
        "opted out",
        "answered",
        "rate",
        "refused",
        "outside",
    ];
    let _ = writeln!(
        out,
        "{:<16} {:>8} {:>7} {:>6} {:>6} {:>7} {:>7} {:>9} {:>8} {:>5} {:>7} {:>7}",
        HEAD[0],
        HEAD[1],
        HEAD[2],
        HEAD[3],
        HEAD[4],
        HEAD[5],
        HEAD[6],
        HEAD[7],
        HEAD[8],
        HEAD[9],
        HEAD[10],
        HEAD[11]
    );
    let line = |out: &mut String, r: &Row| {
        let _ = writeln!(
            out,
            "{:<16} {:>8} {:>7} {:>6} {:>6} {:>7} {:>7} {:>9} {:>8} {:>5} {:>7} {:>7}",
            r.region,
            r.triggers,
            r.invited,
            r.sent,
            r.failed,
            r.waiting,
            r.bounced,
            r.opted_out,
            r.answered,
            percent::for_terminal(&percent::of(r.answered, r.invited)),
            r.refused,
            r.outside_window
        );
    };
    for r in &s.regions {
        line(&mut out, r);
    }
    line(&mut out, &s.no_region);
    let _ = writeln!(out, "{}", "-".repeat(104));
    line(&mut out, &s.total);
    let t = &s.total;
    let _ = writeln!(
        out,
        "\nrefused, by reason: not a consultant {}, not authenticated {}, over the per-message cap {}, over the daily cap {}; outside the window {}",
        t.refused_not_consultant,
        t.refused_unauthenticated,
        t.refused_over_message_cap,
        t.refused_over_daily_cap,
        t.outside_window
    );
    let _ = writeln!(out, "messages in the outbox: {}", s.outbox);
    if let Some(w) = &s.trust_warning {
        let _ = writeln!(out, "\nwarning: {w}");
    }
    if s.total.withdrawn > 0 {
        let by_region: Vec<String> = s
            .regions
            .iter()
            .filter(|r| r.withdrawn > 0)
            .map(|r| format!("{} {}", r.region, r.withdrawn))
            .collect();
        let _ = writeln!(
            out,
            "withdrawn invitations (in no other column): {} ({})",
            s.total.withdrawn,
            by_region.join(", ")
        );
    }
    let r = &s.returns;
    let _ = writeln!(
        out,
        "\nreturn mail by outcome:\n  bounced              {:>6}\n  expired              {:>6}  (the mail server gave up; counted with the bounces)\n  complained           {:>6}  (spam complaints; opted out)\n  opted out            {:>6}\n  auto-replies ignored {:>6}\n  replies forwarded    {:>6}\n  quarantined          {:>6}  (unreadable; see the quarantine folder, `canvass explain`)\n  unproven             {:>6}  (bounces without a canvass Message-ID: nothing changed)",
        r.bounced, r.expired, r.complained, r.opted_out, r.auto_replies_ignored, r.replies_forwarded, r.quarantined, r.unproven
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(region: &str, name: &str, v: u64) -> (String, String, u64) {
        (region.into(), name.into(), v)
    }

    #[test]
    fn rows_and_totals() {
        let counters = vec![
            c("Sjælland", "invited", 10),
            c("Sjælland", "sent", 7),
            c("Sjælland", "failed", 1),
            c("Sjælland", "triggers", 9),
            c("Sjælland", "answered", 4),
            c("Sjælland", "bounced", 1),
            c("Syddanmark", "invited", 4),
            c("Syddanmark", "sent", 4),
            c("Syddanmark", "outside_window", 2),
            c("Syddanmark", "refused_over_cap", 1),
            c("", "refused_unknown_sender", 3),
            c("", "daily:abc:2024-08-07", 5),
            c("Sjælland", "expired", 1),
            c("Syddanmark", "complained", 2),
            c("", "ignored_auto_reply", 4),
            c("", "replies", 6),
            c("", "quarantined", 1),
        ];
        let s = compute(&["Hovedstaden", "Sjælland", "Syddanmark"], &counters, 2);
        assert_eq!(
            s.regions[0],
            Row {
                region: "Hovedstaden".into(),
                ..Default::default()
            }
        );
        assert_eq!(s.regions[1].waiting, 2);
        assert_eq!(
            s.regions[1].delivered, 5,
            "sent minus bounced minus expired"
        );
        assert_eq!(s.total.expired, 1);
        assert_eq!(
            s.returns,
            Returns {
                bounced: 1,
                expired: 1,
                complained: 2,
                opted_out: 0,
                auto_replies_ignored: 4,
                replies_forwarded: 6,
                quarantined: 1,
                unproven: 0,
            }
        );
        assert_eq!(s.regions[1].answered, 4);
        assert_eq!(s.total.answered, 4);
        assert_eq!(s.regions[2].outside_window, 2);
        assert_eq!(s.regions[2].refused, 1);
        assert_eq!(s.total.invited, 14);
        assert_eq!(s.total.sent, 11);
        assert_eq!(s.total.waiting, 2);
        assert_eq!(s.total.refused, 4);
        assert_eq!(s.refused_unknown_sender, 3);
        let text = render_text(&s);
        let sj = text.lines().find(|l| l.starts_with("Sjælland")).unwrap();
        let cells: Vec<&str> = sj.split_whitespace().collect();
        // triggers invited sent failed waiting bounced opted-out answered rate
        assert_eq!(
            cells[1..11],
            ["9", "10", "7", "1", "2", "1", "0", "4", "40", "%"],
            "{text}"
        );
        assert!(text.lines().next().unwrap().contains("answered"));
        assert!(text.contains("Sjælland"));
        assert!(text.contains("I alt"));
        assert!(text.contains("quarantined               1"), "{text}");
    }

    #[test]
    fn refusals_by_reason_add_up_with_a_line_for_non_consultants() {
        let counters = vec![
            c("Sjælland", "refused_unauthenticated", 4),
            c("Sjælland", "refused_over_message_cap", 2),
            c("Syddanmark", "refused_over_cap", 1),
            c("Syddanmark", "outside_window", 5),
            c("", "refused_unknown_sender", 3),
        ];
        let s = compute(&["Sjælland", "Syddanmark"], &counters, 0);
        assert_eq!(s.regions[0].refused, 6);
        assert_eq!(s.regions[1].refused, 1);
        assert_eq!(s.regions[1].refused_over_daily_cap, 1);
        assert_eq!(
            (
                s.no_region.region.as_str(),
                s.no_region.refused,
                s.no_region.refused_not_consultant
            ),
            (NO_REGION, 3, 3)
        );
        let column: u64 = s.regions.iter().map(|r| r.refused).sum::<u64>() + s.no_region.refused;
        assert_eq!(column, s.total.refused, "the column adds up to its total");
        let t = &s.total;
        assert_eq!(
            [
                t.refused_not_consultant,
                t.refused_unauthenticated,
                t.refused_over_message_cap,
                t.refused_over_daily_cap,
                t.outside_window
            ],
            [3, 4, 2, 1, 5]
        );
        let text = render_text(&s);
        assert!(text.contains("refused, by reason: not a consultant 3, not authenticated 4, over the per-message cap 2, over the daily cap 1; outside the window 5"), "{text}");
        let own = text
            .lines()
            .find(|l| l.starts_with(NO_REGION))
            .expect("its own line");
        assert_eq!(own.split_whitespace().nth(11), Some("3"), "{own}");
    }

    #[test]
    fn a_trust_setting_refusing_most_consultants_mail_is_named() {
        let today = chrono::NaiveDate::from_ymd_opt(2024, 8, 13).unwrap();
        let setting = "[trust] authserv_id = \"mx.siri.dk\"";
        let day = |name: &str, d: &str, v| c("", &format!("{name}:{d}"), v);
        // Yesterday and today: 5 of 6 refused.
        let bad = vec![
            day("consultant_mail_day", "2024-08-12", 4),
            day("unauthenticated_day", "2024-08-12", 4),
            day("consultant_mail_day", "2024-08-13", 2),
            day("unauthenticated_day", "2024-08-13", 1),
        ];
        let w = trust_warning(&bad, today, setting).expect("a warning");
        assert!(w.starts_with("5 of the 6 mails from consultants"), "{w}");
        assert!(w.contains(setting), "{w}");
        // Half is not most; two mails are too few; older days do not count.
        let half = vec![
            day("consultant_mail_day", "2024-08-13", 4),
            day("unauthenticated_day", "2024-08-13", 2),
        ];
        assert_eq!(trust_warning(&half, today, setting), None);
        let few = vec![
            day("consultant_mail_day", "2024-08-13", 2),
            day("unauthenticated_day", "2024-08-13", 2),
        ];
        assert_eq!(trust_warning(&few, today, setting), None);
        let old = vec![
            day("consultant_mail_day", "2024-08-10", 9),
            day("unauthenticated_day", "2024-08-10", 9),
        ];
        assert_eq!(trust_warning(&old, today, setting), None);
    }
}
