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
use minijinja::{context, Value};
use serde::{Deserialize, Serialize};

use crate::analysis::percent;
use crate::analysis::status::Status;
use crate::store::counter;
use crate::texts::Texts;
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
    /// Returned: bounced or given up on (expired); delivered + returned = sent.
    pub returned: u64,
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
}

fn line(r: &crate::analysis::status::Row, prev: Option<&Snapshot>) -> Line {
    let before = prev.map(|p| p.regions.get(&r.region).copied().unwrap_or((0, 0)));
    Line {
        region: r.region.clone(),
        invited: r.invited,
        delivered: r.delivered,
        bounced: r.bounced,
        returned: r.bounced + r.expired,
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
        sum.expired += r.expired;
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

/// What `digest_subject.txt` gets besides the mail's common variables.
pub fn subject_context(d: &Digest) -> Value {
    context! {
        week => d.today.iso_week().week(),
        rate => d.total.rate_invited,
        answered => d.total.answered,
        is_final => d.is_final,
    }
}

/// The built-in subject (`digest_subject.txt`), on one line.
pub fn subject(d: &Digest) -> String {
    Texts::builtin()
        .render("digest_subject.txt", subject_context(d))
        .map(|s| crate::compose::one_line(&s))
        .expect("the built-in digest_subject.txt renders every digest: a bug")
}

/// The digest's figures as its templates (`digest.txt`, `digest.html`) see
/// them, beside the agency's `intro` and the mail's `subject`; `chart_cid`
/// names the attached chart, if any.
pub fn context(d: &Digest, subject: &str, intro: &str, chart_cid: Option<&str>) -> Value {
    let weeks: Vec<Value> = d
        .weeks
        .iter()
        .map(|(label, counts)| {
            context! { label => label, counts => counts, total => counts.iter().sum::<u64>() }
        })
        .collect();
    let r = &d.refusals;
    context! {
        subject => subject,
        intro => intro.trim_end(),
        chart_cid => chart_cid,
        today => d.today.to_string(),
        window_start => d.window.0.to_string(),
        window_end => d.window.1.to_string(),
        days_left => d.days_left,
        is_final => d.is_final,
        lines => Value::from_serialize(&d.lines),
        total => Value::from_serialize(&d.total),
        weeks => weeks,
        refusals => context! {
            refused => r.refused(),
            not_consultant => r.not_consultant,
            unauthenticated => r.unauthenticated,
            over_message_cap => r.over_message_cap,
            over_daily_cap => r.over_daily_cap,
            outside_window => r.outside_window,
        },
        withdrawn => d.withdrawn,
        returns => Value::from_serialize(&d.returns),
    }
}

/// Renders `digest.txt` or `digest.html` of `texts` with `ctx` ([`context`]
/// and the mail's common variables); the text ends with a newline.
pub fn render(texts: &Texts, name: &str, ctx: Value) -> Result<String, minijinja::Error> {
    let mut out = texts.render(name, ctx)?;
    if !out.ends_with('\n') {
        out.push('\n');
    }
    Ok(out)
}

/// The built-in plain text, opening with `intro`.
pub fn render_text_with_intro(d: &Digest, intro: &str) -> String {
    render(
        &Texts::builtin(),
        "digest.txt",
        context(d, &subject(d), intro, None),
    )
    .expect("the built-in digest.txt renders every digest: a bug")
}

/// The built-in plain text, opening with the subject line.
pub fn render_text(d: &Digest) -> String {
    render_text_with_intro(d, &subject(d))
}

/// The built-in HTML; the chart is `cid:<chart_cid>`.
pub fn render_html(d: &Digest, chart_cid: Option<&str>) -> String {
    let subject = subject(d);
    render(
        &Texts::builtin(),
        "digest.html",
        context(d, &subject, &subject, chart_cid),
    )
    .expect("the built-in digest.html renders every digest: a bug")
}

/// A digest with every part shown, for `canvass preview digest` and the
/// templates' validation: two regions with a change since the previous
/// digest, a vacation week, refusals, a withdrawn invitation, return mail.
pub fn sample() -> Digest {
    let c = |region: &str, name: &str, v: u64| (region.to_string(), name.to_string(), v);
    let counters = vec![
        c("Syddanmark", counter::INVITED, 35),
        c("Syddanmark", counter::SENT, 35),
        c("Syddanmark", counter::BOUNCED, 2),
        c("Syddanmark", counter::EXPIRED, 1),
        c("Syddanmark", counter::COMPLAINED, 1),
        c("Syddanmark", counter::ANSWERED, 20),
        c("Syddanmark", counter::REFUSED_UNAUTHENTICATED, 3),
        c("Syddanmark", counter::REFUSED_OVER_MESSAGE_CAP, 1),
        c("Syddanmark", counter::REFUSED_OVER_CAP, 2),
        c("Syddanmark", counter::OUTSIDE_WINDOW, 4),
        c("Syddanmark", counter::WITHDRAWN, 1),
        c(
            "Syddanmark",
            &format!("{}2024-W32", counter::INVITED_WEEK),
            10,
        ),
        c(
            "Syddanmark",
            &format!("{}2024-W34", counter::INVITED_WEEK),
            25,
        ),
        c("Sjælland", counter::INVITED, 30),
        c("Sjælland", counter::SENT, 30),
        c("Sjælland", counter::ANSWERED, 12),
        c("Sjælland", counter::OPTED_OUT, 1),
        c(
            "Sjælland",
            &format!("{}2024-W32", counter::INVITED_WEEK),
            30,
        ),
        c("", counter::REFUSED_UNKNOWN_SENDER, 2),
        c("", counter::AUTO_REPLIES, 5),
        c("", counter::REPLIES, 3),
        c("", counter::QUARANTINED, 1),
    ];
    let st = crate::analysis::status::compute(&["Sjælland", "Syddanmark"], &counters, 0);
    let prev = Snapshot {
        regions: [
            ("Syddanmark".to_string(), (30, 15)),
            ("Sjælland".to_string(), (30, 12)),
        ]
        .into(),
    };
    let ymd = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).expect("a valid sample date");
    let window = Window::new(ymd(2024, 8, 7), ymd(2024, 9, 20));
    compute(
        &st,
        &counters,
        Some(&prev),
        &window,
        ymd(2024, 8, 26),
        &[],
        false,
    )
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

    /// The digest as mailed, byte for byte, beside its golden file
    /// (`CANVASS_BLESS=1` rewrites them; read the diff before committing).
    #[test]
    fn the_builtin_digest_reads_as_its_golden_files() {
        let d = sample();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/digest");
        let intro = "Kære ledere\n\nHer er ugens tal & lidt <mere>.";
        for (file, got) in [
            ("full.txt", render_text_with_intro(&d, intro)),
            (
                "full.html",
                render(
                    &Texts::builtin(),
                    "digest.html",
                    context(&d, &subject(&d), intro, Some("chart")),
                )
                .unwrap(),
            ),
            ("plain.html", render_html(&d, None)),
        ] {
            let path = dir.join(file);
            if std::env::var_os("CANVASS_BLESS").is_some() {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&path, &got).unwrap();
            }
            let want = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e} (CANVASS_BLESS=1 writes it)", path.display()));
            assert_eq!(got, want, "{file} differs from its golden file");
        }
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
