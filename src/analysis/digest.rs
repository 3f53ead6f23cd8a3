//! The managers' digest: per region invited, delivered, bounced, opted out,
//! answered, the response rate (of invited and of delivered), the change since
//! the previous digest, invitations per week since the window opened (so a
//! vacation dip shows), days left, and refused triggers; then the totals.
//!
//! [`compute`] is pure: counters and the previous snapshot in, figures out.
//! Rendering gives a plain-text table for terminal mail clients and an HTML
//! table that references the bar chart by `cid:` ([`crate::analysis::chart`]).

use std::collections::BTreeMap;

use chrono::{Datelike, Duration, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::analysis::percent;
use crate::analysis::status::Status;
use crate::escape::html_escape;
use crate::store::counter;
use crate::window::Window;

/// What the previous digest showed, to print the change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// region → (invited, answered)
    pub regions: BTreeMap<String, (u64, u64)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Line {
    pub region: String,
    pub invited: u64,
    pub delivered: u64,
    pub bounced: u64,
    pub opted_out: u64,
    pub answered: u64,
    pub rate_invited: String,
    pub rate_delivered: String,
    /// Change since the previous digest: new invitations and new answers.
    pub new_invited: Option<u64>,
    pub new_answered: Option<u64>,
    pub refused: u64,
    pub outside_window: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Digest {
    pub today: NaiveDate,
    pub window: (NaiveDate, NaiveDate),
    /// Days left in the window including today; 0 once it closed.
    pub days_left: i64,
    pub lines: Vec<Line>,
    pub total: Line,
    pub refused_unknown_sender: u64,
    /// Invitations withdrawn as mistakes (`canvass withdraw`): in no other figure.
    pub withdrawn: u64,
    /// Refused triggers by reason, all regions and non-consultants together.
    pub refusals: Refusals,
    /// ISO weeks since the window opened: (label, invitations per region in `lines` order).
    pub weeks: Vec<(String, Vec<u64>)>,
    pub is_final: bool,
    /// Return mail by outcome, over all regions (issue 13).
    pub returns: crate::analysis::status::Returns,
}

/// Why triggers were refused (and how many came outside the window).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Refusals {
    pub not_consultant: u64,
    pub unauthenticated: u64,
    pub over_message_cap: u64,
    pub over_daily_cap: u64,
    pub outside_window: u64,
}

impl Refusals {
    fn of(total: &crate::analysis::status::Row) -> Refusals {
        Refusals {
            not_consultant: total.refused_not_consultant,
            unauthenticated: total.refused_unauthenticated,
            over_message_cap: total.refused_over_message_cap,
            over_daily_cap: total.refused_over_daily_cap,
            outside_window: total.outside_window,
        }
    }

    /// Every refusal but the window's.
    pub fn refused(&self) -> u64 {
        self.not_consultant + self.unauthenticated + self.over_message_cap + self.over_daily_cap
    }

    /// The digest's sentence on refused triggers (Danish).
    pub fn sentence(&self) -> String {
        format!(
            "Afviste henvendelser: {} i alt: {} fra afsendere, der ikke er sikkerhedskonsulenter, {} uden godkendt afsender (DKIM/DMARC), {} over grænsen pr. mail og {} over dagsgrænsen; {} uden for indsamlingsperioden.",
            self.refused(),
            self.not_consultant,
            self.unauthenticated,
            self.over_message_cap,
            self.over_daily_cap,
            self.outside_window
        )
    }
}

fn line(r: &crate::analysis::status::Row, prev: Option<&Snapshot>) -> Line {
    let before = prev.map(|p| p.regions.get(&r.region).copied().unwrap_or((0, 0)));
    Line {
        region: r.region.clone(),
        invited: r.invited,
        delivered: r.delivered,
        bounced: r.bounced,
        opted_out: r.opted_out,
        answered: r.answered,
        rate_invited: percent::of(r.answered, r.invited),
        rate_delivered: percent::of(r.answered, r.delivered),
        new_invited: before.map(|(i, _)| r.invited.saturating_sub(i)),
        new_answered: before.map(|(_, a)| r.answered.saturating_sub(a)),
        refused: r.refused,
        outside_window: r.outside_window,
    }
}

/// The heading of the weekly table: counted by the week the consultant's
/// mail reached the survey mailbox, not the week the invitation was sent.
pub const WEEKS_TITLE: &str = "Invitationer pr. uge, efter hvornår kontakten blev modtaget";

/// The most weeks a digest lists (the latest ones).
pub const MAX_WEEKS: usize = 12;

/// The ISO weeks from the window's start to `until` (inclusive), labelled;
/// only the latest [`MAX_WEEKS`] for a long window.
fn weeks_between(start: NaiveDate, until: NaiveDate) -> Vec<String> {
    let start = start.max(until - Duration::weeks(MAX_WEEKS as i64 + 1));
    let mut out = Vec::new();
    let mut d = start;
    while d <= until {
        let w = d.iso_week();
        out.push(format!("{}-W{:02}", w.year(), w.week()));
        d += Duration::days(7 - i64::from(d.weekday().num_days_from_monday()));
    }
    let skip = out.len().saturating_sub(MAX_WEEKS);
    out.split_off(skip)
}

/// Computes the digest for `regions` (a manager's regions; all when empty).
pub fn compute(
    status: &Status,
    counters: &[(String, String, u64)],
    previous: Option<&Snapshot>,
    window: &Window,
    today: NaiveDate,
    regions: &[String],
    is_final: bool,
) -> Digest {
    let rows: Vec<&crate::analysis::status::Row> = status
        .regions
        .iter()
        .filter(|r| regions.is_empty() || regions.contains(&r.region))
        .collect();
    let lines: Vec<Line> = rows.iter().map(|r| line(r, previous)).collect();
    // The total is the sum of the lines shown (a regional manager's regions),
    // so every column adds up.
    let mut sum = crate::analysis::status::Row {
        region: "I alt".to_string(),
        ..Default::default()
    };
    for r in &rows {
        sum.invited += r.invited;
        sum.delivered += r.delivered;
        sum.bounced += r.bounced;
        sum.opted_out += r.opted_out;
        sum.answered += r.answered;
        sum.refused += r.refused;
        sum.outside_window += r.outside_window;
    }
    let mut total = line(&sum, None);
    if let Some(p) = previous {
        let (i, a) = p
            .regions
            .iter()
            .filter(|(r, _)| regions.is_empty() || regions.contains(r))
            .fold((0, 0), |(i, a), (_, (x, y))| (i + x, a + y));
        total.new_invited = Some(sum.invited.saturating_sub(i));
        total.new_answered = Some(sum.answered.saturating_sub(a));
    }
    let until = today.min(window.end);
    let weeks = weeks_between(window.start, until)
        .into_iter()
        .map(|label| {
            let name = format!("{}{label}", counter::INVITED_WEEK);
            let per_region = lines
                .iter()
                .map(|l| {
                    counters
                        .iter()
                        .filter(|(r, n, _)| *r == l.region && *n == name)
                        .map(|c| c.2)
                        .sum()
                })
                .collect();
            (label, per_region)
        })
        .collect();
    Digest {
        today,
        window: (window.start, window.end),
        days_left: (window.end - today).num_days().clamp(-1, i64::MAX) + 1,
        lines,
        total,
        refused_unknown_sender: status.refused_unknown_sender,
        withdrawn: status.total.withdrawn,
        refusals: Refusals::of(&status.total),
        weeks,
        is_final,
        returns: status.returns.clone(),
    }
}

/// The return mail by outcome, one line per kind, in Danish; the labels
/// follow the table's ("Returneret" for bounced).
pub fn returns_lines(r: &crate::analysis::status::Returns) -> Vec<String> {
    vec![
        format!("Returneret (ukendt adresse): {}", r.bounced),
        format!("Returneret (udløbet, serveren opgav): {}", r.expired),
        format!("Spamklager (frameldt): {}", r.complained),
        format!("Frameldt: {}", r.opted_out),
        format!("Autosvar ignoreret: {}", r.auto_replies_ignored),
        format!("Svar videresendt til konsulenten: {}", r.replies_forwarded),
        format!("I karantæne (ulæselige): {}", r.quarantined),
    ]
}

/// What the next digest compares against.
pub fn snapshot(status: &Status) -> Snapshot {
    Snapshot {
        regions: status
            .regions
            .iter()
            .map(|r| (r.region.clone(), (r.invited, r.answered)))
            .collect(),
    }
}

fn change(v: Option<u64>) -> String {
    match v {
        Some(n) => format!("+{n}"),
        None => "–".to_string(),
    }
}

pub fn subject(d: &Digest) -> String {
    if d.is_final {
        format!(
            "Spørgeskemaundersøgelsen er afsluttet: {} svar ({})",
            d.total.answered, d.total.rate_invited
        )
    } else {
        format!(
            "Svarprocent uge {}: {} ({} svar)",
            d.today.iso_week().week(),
            d.total.rate_invited,
            d.total.answered
        )
    }
}

/// Plain text for a terminal mail client (fixed-width table).
pub fn render_text(d: &Digest) -> String {
    render_text_with_intro(d, &subject(d))
}

/// [`render_text`] opening with the agency's `digest_intro.txt` instead of
/// the subject line.
pub fn render_text_with_intro(d: &Digest, intro: &str) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "{}", intro.trim_end());
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "Indsamling {} til {}. {}",
        d.window.0,
        d.window.1,
        if d.days_left > 0 {
            format!("{} dag(e) tilbage.", d.days_left)
        } else {
            "Indsamlingen er slut.".to_string()
        }
    );
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "{:<13} {:>9} {:>9} {:>10} {:>8} {:>6} {:>12} {:>14} {:>7} {:>7}",
        "Region",
        "Inviteret",
        "Leveret",
        "Returneret",
        "Frameldt",
        "Svar",
        "Svar/invit.",
        "Svar/leveret",
        "Nye inv",
        "Nye svar"
    );
    let row = |s: &mut String, l: &Line| {
        let _ = writeln!(
            s,
            "{:<13} {:>9} {:>9} {:>10} {:>8} {:>6} {:>12} {:>14} {:>7} {:>7}",
            l.region,
            l.invited,
            l.delivered,
            l.bounced,
            l.opted_out,
            l.answered,
            l.rate_invited,
            l.rate_delivered,
            change(l.new_invited),
            change(l.new_answered)
        );
    };
    for l in &d.lines {
        row(&mut s, l);
    }
    let _ = writeln!(s, "{}", "-".repeat(105));
    let mut total = d.total.clone();
    total.region = "I alt".into();
    row(&mut s, &total);
    let _ = writeln!(s);
    let _ = writeln!(s, "{WEEKS_TITLE}:");
    let _ = write!(s, "{:<10}", "Uge");
    for l in &d.lines {
        let _ = write!(s, " {:>12}", l.region);
    }
    let _ = write!(s, " {:>12}", "I alt");
    let _ = writeln!(s);
    for (week, counts) in &d.weeks {
        let _ = write!(s, "{week:<10}");
        for c in counts {
            let _ = write!(s, " {c:>12}");
        }
        let _ = write!(s, " {:>12}", counts.iter().sum::<u64>());
        let _ = writeln!(s);
    }
    let _ = writeln!(s);
    let refused = d.refusals.refused();
    let _ = writeln!(s, "{}", d.refusals.sentence());
    if refused > 0 {
        let _ = writeln!(s, "Afviste henvendelser kan skyldes en forkert opsat konsulentadresse eller en forfalsket afsender: tjek `canvass status`.");
    }
    if d.withdrawn > 0 {
        let _ = writeln!(s, "{}", withdrawn_text(d.withdrawn));
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "Returpost:");
    for l in returns_lines(&d.returns) {
        let _ = writeln!(s, "  {l}");
    }
    s
}

/// The digest's line on withdrawn invitations.
fn withdrawn_text(n: u64) -> String {
    format!(
        "Trukket tilbage: {n} invitation(er), sendt ved en fejl; de indgår ikke i tallene ovenfor."
    )
}

/// HTML with the same table; the chart, when there is one, is the image
/// `cid:<chart_cid>` (the digest mail attaches it as [`crate::compose::CHART_CID`]).
pub fn render_html(d: &Digest, chart_cid: Option<&str>) -> String {
    render_html_with_intro(d, chart_cid, &subject(d), &subject(d))
}

/// [`render_html`] with the agency's `digest_intro.txt` under the heading
/// (left out when it is just the subject, the built-in).
pub fn render_html_with_intro(
    d: &Digest,
    chart_cid: Option<&str>,
    subject: &str,
    intro: &str,
) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = write!(
        s,
        "<!DOCTYPE html><html lang=\"da\"><head><meta charset=\"utf-8\"><title>{}</title></head><body style=\"font-family: Arial, Helvetica, sans-serif; color: #1a1a1a;\">",
        html_escape(subject)
    );
    let _ = write!(
        s,
        "<h1 style=\"font-size: 20px;\">{}</h1>",
        html_escape(subject)
    );
    if intro.trim() != subject {
        for p in intro.trim().split("\n\n") {
            let _ = write!(s, "<p>{}</p>", html_escape(p.trim()));
        }
    }
    let _ = write!(
        s,
        "<p>Indsamling {} til {}. {}</p>",
        d.window.0,
        d.window.1,
        if d.days_left > 0 {
            format!("{} dag(e) tilbage.", d.days_left)
        } else {
            "Indsamlingen er slut.".to_string()
        }
    );
    if let Some(cid) = chart_cid {
        let _ = write!(s, "<p><img src=\"cid:{cid}\" alt=\"Svarprocent pr. region\" width=\"640\" height=\"320\"></p>");
    }
    let th = "style=\"text-align: right; padding: 4px 8px; border-bottom: 2px solid #444;\"";
    let td = "style=\"text-align: right; padding: 4px 8px; border-bottom: 1px solid #ccc;\"";
    let _ = write!(s, "<table style=\"border-collapse: collapse;\"><caption style=\"text-align: left; font-weight: bold;\">Svar pr. region</caption><thead><tr>");
    for h in [
        "Region",
        "Inviteret",
        "Leveret",
        "Returneret",
        "Frameldt",
        "Svar",
        "Svar / inviteret",
        "Svar / leveret",
        "Nye invitationer",
        "Nye svar",
    ] {
        let _ = write!(s, "<th scope=\"col\" {th}>{h}</th>");
    }
    let _ = write!(s, "</tr></thead><tbody>");
    let row = |s: &mut String, l: &Line, bold: bool| {
        let b = if bold { "font-weight: bold; " } else { "" };
        let _ = write!(
            s,
            "<tr><th scope=\"row\" style=\"{b}text-align: left; padding: 4px 8px;\">{}</th>",
            html_escape(&l.region)
        );
        for v in [
            l.invited.to_string(),
            l.delivered.to_string(),
            l.bounced.to_string(),
            l.opted_out.to_string(),
            l.answered.to_string(),
            l.rate_invited.clone(),
            l.rate_delivered.clone(),
            change(l.new_invited),
            change(l.new_answered),
        ] {
            let _ = write!(s, "<td {td}>{}</td>", html_escape(&v));
        }
        let _ = write!(s, "</tr>");
    };
    for l in &d.lines {
        row(&mut s, l, false);
    }
    let mut total = d.total.clone();
    total.region = "I alt".into();
    row(&mut s, &total, true);
    let _ = write!(s, "</tbody></table>");
    let _ = write!(s, "<h2 style=\"font-size: 16px;\">{WEEKS_TITLE}</h2><table style=\"border-collapse: collapse;\"><thead><tr><th scope=\"col\" {th}>Uge</th>");
    for l in &d.lines {
        let _ = write!(s, "<th scope=\"col\" {th}>{}</th>", html_escape(&l.region));
    }
    let _ = write!(s, "<th scope=\"col\" {th}>I alt</th>");
    let _ = write!(s, "</tr></thead><tbody>");
    for (week, counts) in &d.weeks {
        let _ = write!(
            s,
            "<tr><th scope=\"row\" style=\"text-align: left; padding: 4px 8px;\">{week}</th>"
        );
        for c in counts {
            let _ = write!(s, "<td {td}>{c}</td>");
        }
        let _ = write!(s, "<td {td}>{}</td>", counts.iter().sum::<u64>());
        let _ = write!(s, "</tr>");
    }
    let _ = write!(s, "</tbody></table>");
    let _ = write!(s, "<p>{}</p>", d.refusals.sentence());
    if d.withdrawn > 0 {
        let _ = write!(s, "<p>{}</p>", withdrawn_text(d.withdrawn));
    }
    let _ = write!(s, "<h2 style=\"font-size: 16px;\">Returpost</h2><ul>");
    for l in returns_lines(&d.returns) {
        let _ = write!(s, "<li>{}</li>", html_escape(&l));
    }
    let _ = write!(s, "</ul></body></html>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::status::compute as status;

    fn c(region: &str, name: &str, v: u64) -> (String, String, u64) {
        (region.into(), name.into(), v)
    }

    fn window() -> Window {
        Window::new(
            NaiveDate::from_ymd_opt(2024, 8, 7).unwrap(),
            NaiveDate::from_ymd_opt(2024, 9, 20).unwrap(),
        )
    }

    #[test]
    fn figures_rates_and_change() {
        let counters = vec![
            c("Syddanmark", "invited", 35),
            c("Syddanmark", "sent", 35),
            c("Syddanmark", "bounced", 2),
            c("Syddanmark", "answered", 20),
            c("Syddanmark", "invited_week:2024-W32", 10),
            c("Syddanmark", "invited_week:2024-W34", 25),
            c("Sjælland", "invited", 30),
            c("Sjælland", "sent", 30),
            c("Sjælland", "answered", 12),
            c("Sjælland", "opted_out", 1),
            c("", "refused_unknown_sender", 2),
        ];
        let st = status(&["Sjælland", "Syddanmark"], &counters, 0);
        let prev = Snapshot {
            regions: [
                ("Syddanmark".to_string(), (30, 15)),
                ("Sjælland".to_string(), (30, 12)),
            ]
            .into(),
        };
        let today = NaiveDate::from_ymd_opt(2024, 8, 26).unwrap();
        let d = compute(&st, &counters, Some(&prev), &window(), today, &[], false);
        let syd = &d.lines[1];
        assert_eq!(syd.rate_invited, "57\u{a0}%");
        assert_eq!(syd.delivered, 33);
        assert_eq!(syd.rate_delivered, "61\u{a0}%");
        assert_eq!(syd.new_invited, Some(5));
        assert_eq!(syd.new_answered, Some(5));
        assert_eq!(d.lines[0].rate_invited, "40\u{a0}%");
        assert_eq!(d.total.answered, 32);
        assert_eq!(d.total.new_answered, Some(5));
        assert_eq!(d.days_left, 26);
        // Weeks 32..35; the vacation dip (week 33) shows as 0.
        let labels: Vec<&str> = d.weeks.iter().map(|w| w.0.as_str()).collect();
        assert_eq!(labels, ["2024-W32", "2024-W33", "2024-W34", "2024-W35"]);
        assert_eq!(d.weeks[1].1, vec![0, 0]);
        assert_eq!(d.weeks[2].1, vec![0, 25]);
        let text = render_text(&d);
        assert!(text.contains("57\u{a0}%"));
        assert!(text.contains("2 fra afsendere"));
        let html = render_html(&d, Some("chart"));
        assert!(html.contains("cid:chart"));
        assert!(html.contains("<th scope=\"row\""));
    }

    #[test]
    fn a_long_window_lists_the_latest_weeks() {
        let w = weeks_between(
            NaiveDate::from_ymd_opt(2025, 1, 1).unwrap(),
            NaiveDate::from_ymd_opt(2026, 11, 25).unwrap(),
        );
        assert_eq!(w.len(), MAX_WEEKS);
        assert_eq!(w.last().unwrap(), "2026-W48");
    }

    #[test]
    fn a_regional_manager_sees_the_region_and_totals() {
        let counters = vec![c("Syddanmark", "invited", 3), c("Sjælland", "invited", 4)];
        let st = status(&["Sjælland", "Syddanmark"], &counters, 0);
        let today = NaiveDate::from_ymd_opt(2024, 9, 30).unwrap();
        let d = compute(
            &st,
            &counters,
            None,
            &window(),
            today,
            &["Sjælland".to_string()],
            true,
        );
        assert_eq!(d.lines.len(), 1);
        // The total is of the lines shown: it adds up.
        assert_eq!(d.total.invited, 4);
        assert_eq!(d.days_left, 0);
        assert_eq!(d.lines[0].new_invited, None);
        assert!(subject(&d).contains("afsluttet"));
    }
}
