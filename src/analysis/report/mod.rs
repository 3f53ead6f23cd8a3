//! The agency's analysis of the answers (the survey note's figures), computed
//! from the survey definition and the stored answers; then rendered as
//! terminal tables or as one self-contained HTML page.
//!
//! Pure functions over plain data: the caller passes the answers and the
//! invitation counts per region (from the store's counters).
//!
//! Where things live:
//!
//! - `compute.rs`: the figures ([`compute`] → [`Report`]), plain data in,
//!   numbers out;
//! - `text.rs`: [`render_text`], the terminal tables;
//! - `html.rs`: [`render_html`], the page, from the minijinja template
//!   `src/templates/report.html`;
//! - `svg.rs`: the page's charts, one function per figure;
//! - here: the wording the text and the page share (headings, notes).
//!
//! What the report shows, by the question codes of the shipped survey:
//!
//! - response rate overall and per region (invited, answered, rate);
//! - figure 1: respondents by type of organisation (`organisation`);
//! - figure 2: number of cases (`antal_sager`) by type of organisation;
//! - the share whose cases concerned children (`boern`);
//! - the share who got more than one kind of advice (`raadgivning`), overall
//!   and among those with one case;
//! - figure 3: kinds of advice by type of organisation (multiple choice: a row
//!   does not add up to 100 %);
//! - figure 4: satisfaction (`tilgaengelighed`, `hjulpet_videre`, `anbefale`)
//!   as the share of "I meget høj grad" + "I høj grad", with the full
//!   distributions; options marked `not_applicable` are left out of the base.
//!
//! A figure whose question is missing from the definition (or has another
//! kind) is skipped with a note. Percentages are whole, rounded half up and
//! computed with integers ("–" when there is nothing to divide by), as
//! [`crate::analysis::percent`] writes them everywhere. Every
//! group or base with fewer than [`SMALL_GROUP`] answers is marked `*`, never
//! hidden.

mod compute;
mod html;
mod svg;
mod text;

pub use compute::*;
pub use html::render_html;
pub use text::render_text;

// ---------------------------------------------------------------------------
// Shared wording

const H_RATE: &str = "Svarprocent";
const H_FIG1: &str = "Figur 1. Respondenter fordelt på type af organisation";
const H_FIG2: &str = "Figur 2. Antal sager fordelt på type af organisation";
const H_CHILDREN: &str = "Sager der vedrører børn";
const H_MULTI: &str = "Mere end én type rådgivning";
const H_FIG3: &str = "Figur 3. Typer af rådgivning fordelt på type af organisation";
const H_FIG4: &str = "Figur 4. Tilfredshed med sikkerhedskonsulentordningen";
const MULTI_NOTE: &str = "Der kan sættes flere krydser, så procenterne summer ikke til 100 %.";

fn mark(small: bool) -> &'static str {
    if small {
        SMALL_MARK
    } else {
        ""
    }
}

fn skipped_text(reason: &str) -> String {
    format!("Kan ikke vises: {reason}.")
}

fn period(r: &Report) -> Option<String> {
    match (r.first_day, r.last_day) {
        (Some(a), Some(b)) if a == b => Some(format!("svar fra {}", a.format("%Y-%m-%d"))),
        (Some(a), Some(b)) => Some(format!(
            "svar fra {} til {}",
            a.format("%Y-%m-%d"),
            b.format("%Y-%m-%d")
        )),
        _ => None,
    }
}

fn top_label(top: &[Category]) -> String {
    top.iter()
        .map(|c| format!("«{}»", c.label))
        .collect::<Vec<_>>()
        .join(" + ")
}

fn count_of(s: &Share) -> String {
    format!("{} af {}", s.count, s.base)
}

/// `s` shortened to at most `max` characters at a word boundary, with "…".
fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out = String::new();
    for w in s.split_whitespace() {
        let len = out.chars().count() + usize::from(!out.is_empty()) + w.chars().count();
        if len + 1 > max {
            break;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(w);
    }
    if out.is_empty() {
        out = s.chars().take(max.saturating_sub(1)).collect();
    }
    out.push('…');
    out
}

/// The label without a trailing parenthesis of examples, for charts.
fn chart_label(s: &str) -> &str {
    match s.find(" (") {
        Some(i) if i > 0 && s.ends_with(')') => &s[..i],
        _ => s,
    }
}
/// Which answers are left out of the base of figure 4, from the definition.
fn not_applicable_note(items: &[&SatisfactionItem]) -> Option<String> {
    let parts: Vec<String> = items
        .iter()
        .flat_map(|i| {
            i.distribution
                .not_applicable
                .iter()
                .map(move |n| format!("«{}» (spørgsmål {})", n.category.label, i.question.nr))
        })
        .collect();
    if parts.is_empty() {
        None
    } else {
        Some(format!("Svaret {} indgår ikke i n.", parts.join(" og ")))
    }
}

#[cfg(test)]
mod tests {
    use super::svg::wrap;
    use super::*;
    use crate::analysis::percent;
    use crate::answer::{Answers, Value};
    use crate::store::StoredResponse;
    use crate::survey::{Kind, Survey};
    use chrono::NaiveDate;
    use std::path::Path;

    fn shipped() -> Survey {
        Survey::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("config/survey.da.toml"))
            .expect("the shipped survey loads")
    }

    fn single(code: &str) -> Value {
        Value::Single {
            code: code.into(),
            other: None,
        }
    }

    fn multi(codes: &[&str]) -> Value {
        Value::Multi {
            codes: codes.iter().map(|c| c.to_string()).collect(),
            other: None,
        }
    }

    fn resp(values: Vec<(&str, Value)>) -> StoredResponse {
        let answers: Answers = values
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        StoredResponse {
            survey_id: "siri-sikkerhedskonsulentordningen".into(),
            survey_version: 1,
            region: None,
            day: NaiveDate::from_ymd_opt(2024, 8, 7).expect("a valid day"),
            answers,
        }
    }

    /// Invitations and answers per region as in the agency's note: 157
    /// invited, 79 answered (50 %), Syddanmark 57 %, Sjælland 40 %.
    fn seed_rates() -> Vec<(String, u64, u64)> {
        [
            ("Hovedstaden", 50, 25),
            ("Sjælland", 20, 8),
            ("Syddanmark", 21, 12),
            ("Midtjylland", 40, 20),
            ("Nordjylland", 26, 14),
        ]
        .into_iter()
        .map(|(r, i, a)| (r.to_string(), i, a))
        .collect()
    }

    const OPM: &str = "opmaerksomhed";
    const RIS: &str = "risiko";
    const SIK: &str = "sikkerhed";
    const GEN: &str = "genopdragelsesrejser";
    const SAM: &str = "samarbejdspartnere";
    const AND: &str = "andet";

    /// 79 synthetic answers built so that the agency's published figures
    /// come out: (how many, organisation, number of cases, kinds of advice).
    fn seed_answers() -> Vec<StoredResponse> {
        let spec: &[(usize, &str, &str, &[&str])] = &[
            // Kommune (51): 31 with one case, 10 of them one kind of advice.
            (10, "kommune", "1", &[RIS]),
            (13, "kommune", "1", &[OPM, RIS, SAM]),
            (8, "kommune", "1", &[OPM, SIK]),
            (5, "kommune", "2_5", &[RIS]),
            (1, "kommune", "2_5", &[OPM, SIK]),
            (7, "kommune", "2_5", &[RIS, SIK, SAM]),
            (1, "kommune", "2_5", &[OPM, AND]),
            (4, "kommune", "6_10", &[OPM, RIS, SIK, SAM]),
            (2, "kommune", "over_10", &[OPM, RIS, SIK, SAM]),
            // Krisecenter (13).
            (1, "krisecenter", "1", &[RIS]),
            (2, "krisecenter", "1", &[SIK, OPM, RIS]),
            (6, "krisecenter", "2_5", &[SIK, OPM, RIS]),
            (2, "krisecenter", "2_5", &[SIK, SAM]),
            (1, "krisecenter", "2_5", &[OPM, SAM]),
            (1, "krisecenter", "6_10", &[OPM, SAM]),
            // Politi (9): 8 of 9 with two or more cases.
            (1, "politi", "1", &[SIK, GEN, RIS]),
            (4, "politi", "2_5", &[SIK, GEN, RIS]),
            (2, "politi", "6_10", &[SIK, SAM]),
            (1, "politi", "6_10", &[OPM, SAM]),
            (1, "politi", "over_10", &[OPM, SAM]),
            // Skole (3), private (2), andet (1).
            (1, "skole", "1", &[RIS]),
            (1, "skole", "1", &[OPM, RIS]),
            (1, "skole", "2_5", &[OPM, SAM]),
            (1, "privat_civilsamfund", "1", &[OPM, RIS, SAM]),
            (1, "privat_civilsamfund", "2_5", &[SIK, AND]),
            (1, "andet", "2_5", &[RIS, AND]),
        ];
        let scale5 = |i: usize, cuts: [usize; 4]| -> &'static str {
            match i {
                i if i < cuts[0] => "meget_hoej",
                i if i < cuts[1] => "hoej",
                i if i < cuts[2] => "nogen",
                i if i < cuts[3] => "lav",
                _ => "meget_lav",
            }
        };
        let mut out = Vec::new();
        for (n, org, cases, advice) in spec {
            for _ in 0..*n {
                let i = out.len();
                // Question 5: the first 20 had no urgent cases; of the 59
                // others, 55 answer high or very high (93 %).
                let q5 = if i < 20 {
                    "ikke_relevant"
                } else {
                    scale5(i - 20, [35, 55, 58, 59])
                };
                out.push(resp(vec![
                    (
                        "organisation",
                        Value::Single {
                            code: org.to_string(),
                            other: (*org == "andet").then(|| "Frivillig".to_string()),
                        },
                    ),
                    ("antal_sager", single(cases)),
                    ("boern", single(if i < 58 { "ja" } else { "nej" })),
                    ("raadgivning", multi(advice)),
                    ("tilgaengelighed", single(q5)),
                    ("hjulpet_videre", single(scale5(i, [40, 71, 77, 79]))),
                    ("anbefale", single(scale5(i, [60, 77, 79, 79]))),
                ]));
            }
        }
        assert_eq!(out.len(), 79);
        out
    }

    fn seed_report() -> Report {
        compute(&shipped(), &seed_answers(), &seed_rates())
    }

    fn pct_of(rows: &[DistRow], code: &str) -> Option<u64> {
        rows.iter()
            .find(|r| r.category.code == code)
            .and_then(|r| r.share.percent)
    }

    fn cell<'a>(t: &'a CrossTab, group: &str, column: &str) -> &'a Share {
        let g = t
            .rows
            .iter()
            .chain(std::iter::once(&t.total))
            .find(|g| g.group.code == group && (!group.is_empty() || g.group.label == "Alle"))
            .unwrap_or_else(|| panic!("no group {group}"));
        let c = t
            .columns
            .iter()
            .position(|c| c.code == column)
            .unwrap_or_else(|| panic!("no column {column}"));
        &g.cells[c]
    }

    #[test]
    fn whole_percent_rounded_half_up() {
        assert_eq!(percent::whole(79, 157), Some(50));
        assert_eq!(percent::whole(12, 21), Some(57));
        assert_eq!(percent::whole(8, 20), Some(40));
        assert_eq!(percent::whole(1, 8), Some(13)); // 12.5 → 13
        assert_eq!(percent::whole(1, 40), Some(3)); // 2.5 → 3
        assert_eq!(percent::whole(2, 79), Some(3));
        assert_eq!(percent::whole(0, 3), Some(0));
        assert_eq!(percent::whole(3, 3), Some(100));
        assert_eq!(percent::whole(u64::MAX, u64::MAX), Some(100));
        assert_eq!(percent::whole(1, 0), None);
        assert_eq!(percent::format(None), "–");
        assert_eq!(percent::format(Some(50)), "50\u{a0}%");
    }

    #[test]
    fn response_rates_like_the_agency() {
        let r = seed_report();
        let rr = r.response_rate.shown().expect("rates");
        assert_eq!(rr.total.invited, 157);
        assert_eq!(rr.total.answered, 79);
        assert_eq!(rr.total.rate.percent, Some(50));
        let rate = |name: &str| {
            rr.regions
                .iter()
                .find(|x| x.region == name)
                .and_then(|x| x.rate.percent)
        };
        assert_eq!(rate("Syddanmark"), Some(57));
        assert_eq!(rate("Sjælland"), Some(40));
        let names: Vec<&str> = rr.regions.iter().map(|x| x.region.as_str()).collect();
        assert_eq!(
            names,
            [
                "Hovedstaden",
                "Sjælland",
                "Syddanmark",
                "Midtjylland",
                "Nordjylland"
            ]
        );
        let text = render_text(&r);
        assert!(!text.contains("Syddanmark*"));
        let line = |name: &str| {
            text.lines()
                .find(|l| l.starts_with(name))
                .unwrap_or_else(|| panic!("no line {name}"))
                .to_string()
        };
        assert!(
            line("Syddanmark").ends_with("21    12         57 %"),
            "{}",
            line("Syddanmark")
        );
        assert!(line("Sjælland").ends_with("40 %"));
        assert!(line("I alt").contains("157") && line("I alt").ends_with("50 %"));
        let html = render_html(&r);
        assert!(html.contains("Syddanmark 57\u{a0}% (12 af 21)"));
        assert!(html.contains("Sjælland 40\u{a0}% (8 af 20)"));
    }

    #[test]
    fn response_rates_edge_cases() {
        let rates = vec![
            ("Nordjylland".to_string(), 0, 0),
            ("Sjælland".to_string(), 3, 1),
            ("Sjælland".to_string(), 2, 1),
            ("Midtjylland".to_string(), 40, 20),
        ];
        let r = compute(&shipped(), &[], &rates);
        let rr = r.response_rate.shown().expect("rates");
        assert_eq!(rr.regions.len(), 3, "the same region is summed");
        assert!(!rr.regions[2].small);
        assert_eq!(rr.total.invited, 45);
        assert_eq!(rr.regions[0].rate.percent, None);
        assert!(rr.regions[0].small);
        assert_eq!(rr.regions[1].invited, 5);
        assert_eq!(rr.regions[1].rate.percent, Some(40));
        assert!(rr.regions[1].small, "two answers");
        let text = render_text(&r);
        assert!(text.contains("Nordjylland*"));
        assert!(text
            .lines()
            .any(|l| l.starts_with("Nordjylland*") && l.ends_with('–')));
        let none = compute(&shipped(), &[], &[]);
        assert!(matches!(none.response_rate, Figure::Skipped { .. }));
    }

    #[test]
    fn figure_1_organisations() {
        let r = seed_report();
        let d = r.organisations.shown().expect("figure 1");
        assert_eq!(d.base, 79);
        assert_eq!(pct_of(&d.rows, "kommune"), Some(65));
        assert_eq!(pct_of(&d.rows, "krisecenter"), Some(16));
        assert_eq!(pct_of(&d.rows, "politi"), Some(11));
        assert_eq!(pct_of(&d.rows, "skole"), Some(4));
        assert_eq!(pct_of(&d.rows, "privat_civilsamfund"), Some(3));
        assert_eq!(pct_of(&d.rows, "andet"), Some(1));
        let small: Vec<&str> = d
            .rows
            .iter()
            .filter(|r| r.small_group)
            .map(|r| r.category.code.as_str())
            .collect();
        assert_eq!(small, ["skole", "privat_civilsamfund", "andet"]);
        let text = render_text(&r);
        assert!(text.contains("Figur 1. Respondenter fordelt på type af organisation (n=79)"));
        assert!(text.contains("Skole eller uddannelsesinstitution*"));
        assert!(text.contains("* færre end 5 svar — læses med stor forsigtighed"));
        assert!(!text.contains("Kommune*"));
    }

    #[test]
    fn figure_2_cases_by_organisation() {
        let r = seed_report();
        let t = r.cases_by_organisation.shown().expect("figure 2");
        assert_eq!(t.total.n, 79);
        assert_eq!(cell(t, "", "1").percent, Some(48));
        assert_eq!(cell(t, "", "2_5").percent, Some(38));
        assert_eq!(cell(t, "", "over_10").percent, Some(4));
        assert_eq!(cell(t, "kommune", "1").percent, Some(61));
        let politi = t
            .rows
            .iter()
            .find(|g| g.group.code == "politi")
            .expect("politi");
        assert_eq!(politi.n, 9);
        assert_eq!(
            politi.n - politi.cells[0].count,
            8,
            "8 of 9 with two or more"
        );
        // Row percentages of a single-choice question add up to the row.
        for g in &t.rows {
            assert_eq!(g.cells.iter().map(|s| s.count).sum::<u64>(), g.n);
        }
        let skole = t
            .rows
            .iter()
            .find(|g| g.group.code == "skole")
            .expect("skole");
        assert!(skole.small);
        assert!(!t.multiple);
    }

    #[test]
    fn children_and_more_than_one_kind() {
        let r = seed_report();
        let c = r.children.shown().expect("children");
        assert_eq!(c.option.code, "ja");
        assert_eq!(c.share.percent, Some(73));
        let m = r.multiple_advice.shown().expect("multiple");
        assert_eq!(m.overall, Share::new(62, 79));
        assert_eq!(m.overall.percent, Some(78));
        let one = m.one_case.shown().expect("one case");
        assert_eq!(one.option.label, "1 sag");
        assert_eq!(one.share, Share::new(26, 38));
        assert_eq!(one.share.percent, Some(68));
        let text = render_text(&r);
        assert!(text.contains("73 % har svaret «Ja» (58 af 79)."));
        assert!(text.contains("78 % har fået mere end én type rådgivning (62 af 79)."));
        assert!(text.contains("68 % af dem, der har svaret «1 sag»"));
    }

    #[test]
    fn figure_3_advice_by_organisation() {
        let r = seed_report();
        let t = r.advice_by_organisation.shown().expect("figure 3");
        assert!(t.multiple);
        assert_eq!(cell(t, "", RIS).percent, Some(75));
        assert_eq!(cell(t, "", OPM).percent, Some(56));
        assert_eq!(cell(t, "", SIK).percent, Some(51));
        assert_eq!(cell(t, "", SAM).percent, Some(46));
        assert_eq!(cell(t, "", AND).count, 3);
        assert_eq!(cell(t, "krisecenter", SIK).percent, Some(77));
        assert_eq!(cell(t, "politi", SIK).percent, Some(78));
        assert_eq!(cell(t, "politi", GEN).percent, Some(56));
        // Multiple choice: a row adds up to more than 100 %.
        let sum: u64 = t.total.cells.iter().filter_map(|s| s.percent).sum();
        assert!(sum > 100);
        let text = render_text(&r);
        assert!(text.contains("summer ikke til 100"));
        assert!(text.contains("Politi (n=9)"));
        assert!(text.contains("Andet, angiv venligst* (n=1)"));
    }

    #[test]
    fn figure_4_satisfaction_without_not_applicable() {
        let r = seed_report();
        let s = r.satisfaction.shown().expect("figure 4");
        let items: Vec<&SatisfactionItem> = s.items.iter().filter_map(Figure::shown).collect();
        assert_eq!(items.len(), 3);
        let q5 = items[0];
        assert_eq!(q5.question.code, "tilgaengelighed");
        assert_eq!(
            q5.distribution.base, 59,
            "not applicable left out of the base"
        );
        assert_eq!(q5.distribution.not_applicable[0].count, 20);
        assert_eq!(q5.share, Share::new(55, 59));
        assert_eq!(q5.share.percent, Some(93));
        assert!(!q5
            .distribution
            .rows
            .iter()
            .any(|r| r.category.code == "ikke_relevant"));
        assert_eq!(items[1].share.percent, Some(90));
        assert_eq!(items[2].share.percent, Some(97));
        let top: Vec<&str> = q5.top.iter().map(|c| c.label.as_str()).collect();
        assert_eq!(top, ["I meget høj grad", "I høj grad"]);
        // The full distribution is there, and adds up to the base.
        assert_eq!(
            q5.distribution
                .rows
                .iter()
                .map(|r| r.share.count)
                .sum::<u64>(),
            59
        );
        let text = render_text(&r);
        assert!(text.contains("Jeg har ikke været i kontakt om akutte sager"));
        assert!(text.contains("indgår ikke"));
    }

    #[test]
    fn small_bases_are_marked_not_hidden() {
        let survey = shipped();
        let answers = vec![
            resp(vec![
                ("organisation", single("politi")),
                ("tilgaengelighed", single("hoej")),
                ("raadgivning", multi(&[RIS, SIK])),
            ]),
            resp(vec![
                ("organisation", single("politi")),
                ("tilgaengelighed", single("ikke_relevant")),
            ]),
            resp(vec![("tilgaengelighed", single("lav"))]),
        ];
        let r = compute(&survey, &answers, &[]);
        let d = r.organisations.shown().expect("figure 1");
        assert_eq!(d.base, 2);
        assert!(d.small_base);
        assert_eq!(d.unanswered, 1);
        // Every option is shown, even with nobody in it.
        assert_eq!(d.rows.len(), 6);
        assert_eq!(pct_of(&d.rows, "kommune"), Some(0));
        let t = r.cases_by_organisation.shown().expect("figure 2");
        let uoplyst = t.rows.last().expect("a row");
        assert_eq!(uoplyst.group.label, "Uoplyst");
        assert_eq!(uoplyst.n, 0);
        assert_eq!(uoplyst.cells[0].percent, None);
        let q5 = r
            .satisfaction
            .shown()
            .and_then(|s| s.items[0].shown())
            .expect("q5");
        assert_eq!(q5.share, Share::new(1, 2));
        assert!(q5.share.small_base);
        let text = render_text(&r);
        assert!(text.contains(SMALL_NOTE));
        assert!(text.contains("Kommune*"));
        assert!(text.contains("Uoplyst*"));
        assert!(text.contains("(n=2)"));
        let html = render_html(&r);
        assert!(html.contains("færre end 5 svar"));
        assert!(html.contains("Uoplyst"));
    }

    #[test]
    fn missing_questions_skip_their_figures() {
        let mut survey = shipped();
        survey
            .questions
            .retain(|q| q.code != "organisation" && q.code != "anbefale");
        let r = compute(&survey, &seed_answers(), &seed_rates());
        assert!(matches!(r.organisations, Figure::Skipped { .. }));
        assert!(matches!(r.cases_by_organisation, Figure::Skipped { .. }));
        assert!(matches!(r.advice_by_organisation, Figure::Skipped { .. }));
        assert!(r.children.shown().is_some());
        assert!(r.multiple_advice.shown().is_some());
        let s = r.satisfaction.shown().expect("two of three");
        assert!(matches!(s.items[2], Figure::Skipped { .. }));
        let text = render_text(&r);
        assert!(text.contains("Kan ikke vises: spørgsmålet «organisation» findes ikke"));
        let html = render_html(&r);
        assert!(html.contains("Kan ikke vises: spørgsmålet «anbefale» findes ikke"));

        // A question of another kind is skipped too.
        let mut survey = shipped();
        for q in &mut survey.questions {
            if q.code == "raadgivning" {
                q.kind = Kind::Single;
            }
        }
        let r = compute(&survey, &seed_answers(), &[]);
        assert!(matches!(r.multiple_advice, Figure::Skipped { .. }));

        // No satisfaction question at all.
        let mut survey = shipped();
        survey.questions.truncate(4);
        let r = compute(&survey, &seed_answers(), &[]);
        assert!(matches!(r.satisfaction, Figure::Skipped { .. }));
        let _ = render_html(&r);
        let _ = render_text(&r);
    }

    #[test]
    fn other_versions_and_unknown_codes_do_not_crash() {
        let mut a = resp(vec![
            ("organisation", single("ngo")),
            ("raadgivning", multi(&[RIS, "jura"])),
            (
                "antal_sager",
                Value::Text {
                    text: "mange".into(),
                },
            ),
            ("gammelt", single("x")),
        ]);
        a.survey_version = 2;
        let mut b = resp(vec![("organisation", single("kommune"))]);
        b.survey_id = "et-andet-skema".into();
        let r = compute(&shipped(), &[a, b], &[]);
        assert_eq!(r.respondents, 1);
        assert_eq!(r.versions.get(&2), Some(&1));
        assert_eq!(r.notes.len(), 3, "{:?}", r.notes);
        let d = r.organisations.shown().expect("figure 1");
        let ngo = d.rows.last().expect("a row");
        assert_eq!(
            (ngo.category.label.as_str(), ngo.category.known),
            ("ngo", false)
        );
        let t = r.advice_by_organisation.shown().expect("figure 3");
        assert!(t
            .columns
            .iter()
            .any(|c| c.code == "jura" && c.label == "jura"));
        let text = render_text(&r);
        assert!(text.contains("version 2"));
        let html = render_html(&r);
        assert!(html.contains("ngo"));
        // Nothing at all.
        let empty = compute(&shipped(), &[], &[]);
        assert_eq!(empty.respondents, 0);
        assert!(render_text(&empty).contains('–'));
        let _ = render_html(&empty);
    }

    #[test]
    fn html_is_self_contained_and_accessible() {
        let html = render_html(&seed_report());
        assert!(html.starts_with("<!DOCTYPE html>\n<html lang=\"da\">"));
        assert!(!html.contains("http://"));
        assert!(!html.contains("https://"));
        assert!(!html.to_ascii_lowercase().contains("<script"));
        assert!(!html.contains(" src="));
        assert!(!html.contains("<link"));
        assert!(!html.contains("url("));
        // Every chart has a role and a text alternative.
        let svgs = html.matches("<svg ").count();
        assert_eq!(
            svgs,
            1 + 1 + 1 + 7 + 1,
            "one chart each, seven for figure 3"
        );
        assert_eq!(
            html.matches("<svg role=\"img\" aria-label=\"").count(),
            svgs
        );
        assert_eq!(html.matches("<title>").count(), svgs + 1);
        assert!(html.contains(
            "Figur 1. Respondenter fordelt på type af organisation (n=79): Kommune 65\u{a0}% (51)"
        ));
        // Tables have captions and header scopes.
        assert_eq!(
            html.matches("<table>").count(),
            html.matches("<caption>").count()
        );
        assert!(html.contains("<th scope=\"col\""));
        assert!(html.contains("<th scope=\"row\""));
        assert!(html.contains("@media print"));
        // Balanced elements.
        for tag in ["svg", "table", "section", "figure", "text", "p"] {
            assert_eq!(
                html.matches(&format!("<{tag}>")).count()
                    + html.matches(&format!("<{tag} ")).count(),
                html.matches(&format!("</{tag}>")).count(),
                "<{tag}> balanced"
            );
        }
        // Data from the survey and the caller is escaped.
        let mut survey = shipped();
        survey.title = "<b>Tom & \"Jerry\"</b>".into();
        let r = compute(&survey, &[], &[("<script>".into(), 1, 0)]);
        let html = render_html(&r);
        assert!(html.contains("&lt;b&gt;Tom &amp; &quot;Jerry&quot;&lt;/b&gt;"));
        assert!(!html.contains("<script>"));
    }

    #[test]
    fn report_serialises() {
        let r = seed_report();
        let j = serde_json::to_value(&r).expect("serialisable");
        assert_eq!(j["response_rate"]["shown"]["total"]["rate"]["percent"], 50);
        assert_eq!(j["small_group_note"], SMALL_NOTE);
    }

    #[test]
    fn text_helpers() {
        assert_eq!(shorten("kort", 10), "kort");
        assert_eq!(shorten("en lang sætning med ord", 12), "en lang…");
        assert_eq!(
            chart_label("Rådgivning om noget (som fx det her)"),
            "Rådgivning om noget"
        );
        assert_eq!(chart_label("Andet (uddyb)"), "Andet");
        let lines = wrap("a b c d e f g h", 3, 2);
        assert_eq!(lines.len(), 2);
        assert!(lines[1].ends_with('…'));
    }
}
